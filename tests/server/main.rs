//! `raiz serve` as a real process, driven through `raiz-client` and raw sockets.

mod admin;
mod badinput;
mod harness;
mod locks;
mod model;
mod readahead;
mod security;

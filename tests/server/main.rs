//! `raiz serve` as a real process, driven through `raiz-client` and raw sockets.

mod abuse;
mod admin;
mod badinput;
mod harness;
mod locks;
mod model;
mod readahead;
mod rights;
mod security;
mod xbase;

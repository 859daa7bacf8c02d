//! `raiz serve` as a real process, driven through `raiz-client` and raw sockets.

mod abuse;
mod admin;
mod app_api;
mod backup;
mod badinput;
mod cache;
mod cache_bound;
mod cache_nodes;
mod cache_restart;
mod harness;
mod interleaved;
mod locks;
mod metrics;
mod model;
mod order_entry;
mod readahead;
mod rights;
mod security;
mod sql;
mod xbase;

//! raiz cluster members.
//!
//! A cluster is three (or five) `raiz serve --cluster` members, each with its
//! own rootpath, that agree on one ordered log of committed transactions
//! with Raft. This crate holds what a member keeps of that agreement; the
//! pieces land in the order they build on each other:
//!
//! - [`log`]: the member's Raft log on disk — entries appended in index
//!   order and made durable by one sync per batch, the suffix a new leader
//!   overrules cut off, the prefix a snapshot covers dropped, and the vote,
//!   the committed index and the purge point kept beside it. The log is the
//!   durable record of a committed transaction on every member (ARCHITECTURE.md,
//!   "Cluster").
//! - [`log_store`]: that log as openraft's log storage (`RaftLogStorage`),
//!   entries and vote encoded with postcard, an append durable before openraft
//!   is told.

pub mod error;
pub mod log;
pub mod log_store;
pub mod member;
pub mod network;
pub mod state;
pub mod types;

pub use error::{Error, Result};
pub use log::{LogMeta, RaftLog, RaftLogOptions};
pub use log_store::LogStore;
pub use member::{ClusterConfig, ClusterMember, Status};
pub use state::{StateMachine, META_TABLE};
pub use types::{Command, Member, Outcome, Raiz};

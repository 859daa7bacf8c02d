//! raiz cluster members.
//!
//! A cluster is three (or five) `raiz serve --cluster` members, each with its
//! own rootpath, that agree on one ordered log of committed transactions
//! with Raft (openraft). ARCHITECTURE.md ("Cluster") tells how the pieces fit:
//!
//! - [`log`]: the member's Raft log on disk — entries appended in index
//!   order and made durable by one sync per batch, the suffix a new leader
//!   overrules cut off, the prefix a snapshot covers dropped, and the vote,
//!   the committed index and the purge point kept beside it.
//! - [`log_store`]: that log as openraft's log storage.
//! - [`types`]: what an entry carries ([`Command`]) and what a member is.
//! - [`state`]: the state machine — committed entries applied to the
//!   member's rootpath in order, each with its position in the same engine
//!   commit.
//! - [`snapshot`]: consistent copies of a member's rootpath, built while it
//!   serves, streamed to a member that is new or fell behind the log, and
//!   installed into its live database record by record.
//! - [`network`]: the members' Raft traffic over TCP.
//! - [`member`]: a running member, and the replicator its database's
//!   sessions commit through.

pub mod error;
pub mod log;
pub mod log_store;
pub mod member;
pub mod network;
pub mod snapshot;
pub mod state;
pub mod types;

pub use error::{Error, Result};
pub use log::{LogMeta, RaftLog, RaftLogOptions};
pub use log_store::LogStore;
pub use member::{ClusterConfig, ClusterMember, Status};
pub use state::{StateMachine, META_TABLE};
pub use types::{Command, Member, Outcome, Raiz};

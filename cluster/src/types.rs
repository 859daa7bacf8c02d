//! What the members of a raiz cluster agree on: the entries of the group's
//! log and the members themselves, as openraft's type configuration.

use std::fmt;

use openraft::{Entry, TokioRuntime};
use raiz_engine::db::Ddl;
use raiz_engine::feed::TableChanges;
use serde::{Deserialize, Serialize};

/// What an entry of the group's log carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A transaction's changes, as the leader's session made them.
    Commit {
        /// Per table, in order.
        changes: Vec<TableChanges>,
    },
    /// A change to the set of tables.
    Ddl(Ddl),
    /// Names the group's history: the epoch its members' change feeds
    /// carry, drawn by the first leader (see `raiz_engine::feed`).
    Genesis {
        /// A random number, never 0.
        epoch: u64,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Commit { changes } => {
                let n: usize = changes.iter().map(|t| t.changes.len()).sum();
                write!(f, "commit of {n} changes to {} tables", changes.len())
            }
            Command::Ddl(d) => write!(f, "{d:?}"),
            Command::Genesis { epoch } => write!(f, "genesis of epoch {epoch:016x}"),
        }
    }
}

/// What applying an entry came to, the same on every member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Why the entry was refused (a unique key taken meanwhile): nothing of
    /// it was applied, on any member.
    pub refused: Option<String>,
}

/// A member as the others know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where its Raft listener is (for the other members).
    pub raft: String,
    /// Where its clients connect (`raiz serve`'s listen address), told to a
    /// client that wrote to a follower.
    pub client: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft {} client {}", self.raft, self.client)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for a raiz cluster.
    pub Raiz:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = Member,
        Entry = Entry<Raiz>,
        SnapshotData = crate::snapshot::SnapshotFile,
        AsyncRuntime = TokioRuntime,
);

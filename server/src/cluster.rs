//! `raiz serve --cluster`: the server as one member of a group that agrees
//! on its commits through Raft (see `raiz_cluster`).
//!
//! The `[cluster]` section says who the members are; the server opens its
//! rootpath as usual, then starts its member over it, which from then on
//! orders every commit of every session with the group. A rootpath that has
//! been a member's (its `_raiz_cluster` table exists) is refused by a plain
//! `raiz serve`: commits made there alone would be commits the others lack.

use std::collections::BTreeMap;
use std::sync::Arc;

use raiz_cluster::{ClusterConfig, ClusterMember, Member, META_TABLE};
use raiz_engine::Database;

use crate::config::parse_member;
use crate::{Config, Error};

fn invalid(message: String) -> Error {
    Error::Invalid {
        path: None,
        message,
    }
}

/// The member's settings from `[cluster]`.
pub fn member_config(config: &Config, db: &Database) -> Result<ClusterConfig, Error> {
    let id = config
        .cluster_id
        .ok_or_else(|| invalid("--cluster needs [cluster] id (this member's id)".into()))?;
    let list = config.cluster_members.as_ref().ok_or_else(|| {
        invalid(
            "--cluster needs [cluster] members (\"ID RAFT_HOST:PORT CLIENT_HOST:PORT\" each)"
                .into(),
        )
    })?;
    let mut members: BTreeMap<u64, Member> = BTreeMap::new();
    for m in list {
        let (mid, member) = parse_member(m).map_err(invalid)?;
        if members.insert(mid, member).is_some() {
            return Err(invalid(format!(
                "[cluster] members: member {mid} is listed twice"
            )));
        }
    }
    if !members.contains_key(&id) {
        return Err(invalid(format!(
            "[cluster] id {id} is not among the members {:?}",
            members.keys().collect::<Vec<_>>()
        )));
    }
    let log_dir = config
        .cluster_log_dir
        .clone()
        .unwrap_or_else(|| db.root().join("raft"));
    let mut c = ClusterConfig::new(id, members, log_dir);
    if let Some(l) = &config.cluster_listen {
        c.listen = l.clone();
    }
    c.join = config.cluster_join.unwrap_or(false);
    if let Some(n) = config.cluster_snapshot_every {
        c.snapshot_every = n;
    }
    if let Some(n) = config.cluster_keep_after_snapshot {
        c.keep_after_snapshot = n;
    }
    if let Some(path) = &config.cluster_secret_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        c.secret = text.trim().to_owned();
    } else {
        tracing::warn!("no [cluster] secret_file: any process that reaches the Raft port can speak to this member");
    }
    Ok(c)
}

/// Starts the member when `--cluster` was given; refuses a member's rootpath
/// without it.
pub fn start(config: &Config, db: &Database) -> Result<Option<Arc<ClusterMember>>, Error> {
    if !config.cluster {
        if db.table_exists(META_TABLE)? {
            return Err(invalid(format!(
                "{} is a cluster member's rootpath: serve it with --cluster (commits made here alone would be missing from the other members)",
                db.root().display()
            )));
        }
        return Ok(None);
    }
    let c = member_config(config, db)?;
    let member = ClusterMember::start(c, db.clone()).map_err(|e| Error::Cluster(e.to_string()))?;
    Ok(Some(member))
}

/// The member's view of its group, as the protocol carries it.
pub fn status(m: &ClusterMember) -> raiz_client::proto::ClusterStatus {
    use raiz_engine::db::Replicator;
    let s = m.status();
    raiz_client::proto::ClusterStatus {
        id: s.id,
        role: s.role,
        term: s.term,
        leader: s.leader,
        last_log: s.last_log,
        applied: s.applied,
        snapshot: s.snapshot,
        writable: m.writable().is_ok(),
        members: s
            .members
            .iter()
            .map(|(id, n)| raiz_client::proto::ClusterMemberInfo {
                id: *id,
                raft: n.raft.clone(),
                client: n.client.clone(),
                matched: s.matched.get(id).copied().flatten(),
            })
            .collect(),
    }
}

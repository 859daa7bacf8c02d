//! `raiz cluster status`: a cluster as its members see it; `raiz cluster
//! add` and `remove`: its membership.
//!
//! The member given answers with its view (term, leader, members); then
//! each member is asked for its own (role, last log entry, applied entry)
//! with the same user, so the table shows every member's applied index and
//! its lag behind the leader. A member that does not answer is shown down.

use raiz_client::proto::ClusterStatus;
use raiz_client::{Connection, ConnectionString};
use serde::Serialize;

use crate::error::{CliError, CliResult};

#[derive(Debug, Serialize)]
struct Row {
    id: u64,
    client: String,
    raft: String,
    role: String,
    term: Option<u64>,
    last_log: Option<u64>,
    applied: Option<u64>,
    snapshot: Option<u64>,
    lag: Option<u64>,
    writable: bool,
}

/// The connection string `connect` with its host and port replaced by
/// `addr` (`host:port`).
fn at(connect: &ConnectionString, addr: &str) -> Option<ConnectionString> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    match connect.clone() {
        ConnectionString::Tcp {
            user,
            password,
            tls,
            ca,
            ..
        } => Some(ConnectionString::Tcp {
            user,
            password,
            host: host.trim_matches(|c| c == '[' || c == ']').to_owned(),
            port,
            tls,
            ca,
        }),
        _ => None,
    }
}

fn ask(cs: &ConnectionString) -> Option<ClusterStatus> {
    Connection::open(cs)
        .and_then(|c| c.session())
        .and_then(|s| s.cluster_status())
        .ok()
}

pub fn status(connect: &str, json: bool) -> CliResult {
    let cs: ConnectionString = connect.parse().map_err(CliError::from)?;
    let first = Connection::open(&cs)
        .and_then(|c| c.session())
        .and_then(|s| s.cluster_status())
        .map_err(CliError::from)?;
    let mut rows: Vec<Row> = first
        .members
        .iter()
        .map(|m| {
            let st = if m.id == first.id {
                Some(first.clone())
            } else {
                at(&cs, &m.client).and_then(|c| ask(&c))
            };
            Row {
                id: m.id,
                client: m.client.clone(),
                raft: m.raft.clone(),
                role: st.as_ref().map_or("down".to_owned(), |s| {
                    if s.writable {
                        "leader".to_owned()
                    } else {
                        s.role.clone()
                    }
                }),
                term: st.as_ref().map(|s| s.term),
                last_log: st.as_ref().and_then(|s| s.last_log),
                applied: st.as_ref().and_then(|s| s.applied),
                snapshot: st.as_ref().and_then(|s| s.snapshot),
                lag: None,
                writable: st.as_ref().is_some_and(|s| s.writable),
            }
        })
        .collect();
    let top = rows
        .iter()
        .find(|r| r.writable)
        .and_then(|r| r.applied)
        .or_else(|| rows.iter().filter_map(|r| r.applied).max());
    for r in &mut rows {
        r.lag = match (top, r.applied) {
            (Some(t), Some(a)) => Some(t.saturating_sub(a)),
            (Some(t), None) if r.role != "down" => Some(t),
            _ => None,
        };
    }
    if json {
        let out = serde_json::json!({
            "asked": first.id,
            "term": first.term,
            "leader": first.leader,
            "members": rows,
        });
        println!("{out}");
        return Ok(());
    }
    let leader = first.leader.map_or("none known".to_owned(), |l| {
        let client = rows.iter().find(|r| r.id == l).map(|r| r.client.clone());
        format!("member {l} ({})", client.unwrap_or_default())
    });
    println!(
        "cluster: term {}, leader {leader}, {} members (asked member {})",
        first.term,
        rows.len(),
        first.id
    );
    let dash = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    println!(
        "{:>4}  {:<10} {:<22} {:<22} {:>6} {:>10} {:>10} {:>10} {:>8}",
        "id", "role", "client", "raft", "term", "last_log", "applied", "snapshot", "lag"
    );
    for r in &rows {
        println!(
            "{:>4}  {:<10} {:<22} {:<22} {:>6} {:>10} {:>10} {:>10} {:>8}",
            r.id,
            r.role,
            r.client,
            r.raft,
            dash(r.term),
            dash(r.last_log),
            dash(r.applied),
            dash(r.snapshot),
            dash(r.lag)
        );
    }
    let up = rows.iter().filter(|r| r.role != "down").count();
    if up * 2 <= rows.len() {
        println!(
            "no quorum: {up} of {} members answer; writes are refused until a majority is back",
            rows.len()
        );
    }
    Ok(())
}

/// `raiz cluster add`: member "ID RAFT CLIENT" joins the group.
pub fn add(connect: &str, member: &str) -> CliResult {
    let (id, m) = raiz_server::config::parse_member(member).map_err(CliError::Usage)?;
    let s = Connection::connect(connect)
        .and_then(|c| c.session())
        .map_err(CliError::from)?;
    let st = s
        .cluster_add_member(id, &m.raft, &m.client)
        .map_err(CliError::from)?;
    println!(
        "member {id} added: the group has {} members (term {})",
        st.members.len(),
        st.term
    );
    Ok(())
}

/// `raiz cluster snapshot`: the member builds a snapshot now.
pub fn snapshot(connect: &str) -> CliResult {
    let s = Connection::connect(connect)
        .and_then(|c| c.session())
        .map_err(CliError::from)?;
    let started = std::time::Instant::now();
    let st = s.cluster_snapshot().map_err(CliError::from)?;
    println!(
        "member {}: snapshot of entry {} built in {:.1} s",
        st.id,
        st.snapshot.map_or("-".to_owned(), |i| i.to_string()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `raiz cluster remove`: member `id` leaves the group.
pub fn remove(connect: &str, id: u64) -> CliResult {
    let s = Connection::connect(connect)
        .and_then(|c| c.session())
        .map_err(CliError::from)?;
    let st = s.cluster_remove_member(id).map_err(CliError::from)?;
    println!(
        "member {id} removed: the group has {} members (term {})",
        st.members.len(),
        st.term
    );
    Ok(())
}

//! A group of three `raiz serve --cluster` members against one `raiz serve`,
//! in the same run: durable 1-record inserts from 1, 8 and 32 connections
//! (the cost of replication), failover time (the leader stopped → the first
//! write a member acknowledges), and the catch-up of a member that was down
//! while the others took writes.
//!
//! Everything runs in this process: each member is a `raiz_server::start`
//! with its own rootpath, runtime and Raft; a stopped member is stopped as
//! a server is (its Raft ends; its followers hear nothing more), then started
//! again on the same rootpath.

use std::time::{Duration, Instant};

use raiz_client::Connection;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};
use raiz_server::ServerHandle;

use super::report::{Better, Report};
use super::server::{fresh_key, rate, RaizClient, CONNS};
use super::{Result, Spec};

/// Column of one server.
pub const SINGLE: &str = "raiz serve (one server)";
/// Column of the group.
pub const GROUP: &str = "raiz serve --cluster (3 members)";

/// Ports handed out in this run: two members never get the same one.
static GIVEN: parking_lot::Mutex<std::collections::BTreeSet<u16>> =
    parking_lot::Mutex::new(std::collections::BTreeSet::new());

/// A free address below the ephemeral port range: a member stopped and
/// started again must find its ports free, and an ephemeral port may
/// meanwhile be the local end of some client's connection.
fn free_addr() -> Result<String> {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port: u16 = rng.random_range(20_000..32_000);
        if GIVEN.lock().insert(port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(format!("127.0.0.1:{port}"));
        }
    }
    Err("no free port in 20000..32000".into())
}

struct Member {
    config: raiz_server::Config,
    client: String,
    handle: Option<ServerHandle>,
}

fn prepare_root(root: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(root)?;
    let mut users = raiz_server::users::Users::default();
    users.add("bench", "bench", vec![], true)?;
    users.save(root)?;
    Ok(())
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("KEY", FieldType::Binary(24)),
        Field::new("VAL", FieldType::Binary(150)),
    ])
}

fn create(url: &str) -> Result<()> {
    let s = Connection::connect(url)?.session()?;
    s.create_table("kv", &schema(), TableOptions::default())?;
    let mut t = s.open_table("kv")?;
    t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())?;
    Ok(())
}

fn inserts(url: &str, column: &str, spec: &Spec, report: &mut Report) -> Result<()> {
    let connect = || -> Result<RaizClient> {
        let session = Connection::connect(url)?.session()?;
        let t = session.open_table("kv")?;
        Ok(RaizClient {
            _session: session,
            t,
        })
    };
    for (n, conns) in CONNS.into_iter().enumerate() {
        tracing::info!(column, conns, "durable inserts");
        let r = rate(conns, spec.server_secs, &connect, &|c, i| {
            use super::server::Client;
            c.insert(&fresh_key(0xe0 + n as u8, i), &[7u8; 150])
        })?;
        report.add(
            &format!("replicated durable 1-record insert, {conns} connection(s)"),
            "requests/s",
            Better::Higher,
            column,
            r,
        );
    }
    Ok(())
}

fn start_group(dir: &std::path::Path) -> Result<Vec<Member>> {
    let clients: Vec<String> = (0..3).map(|_| free_addr()).collect::<Result<_>>()?;
    let rafts: Vec<String> = (0..3).map(|_| free_addr()).collect::<Result<_>>()?;
    let list: Vec<String> = (0..3)
        .map(|i| format!("{} {} {}", i + 1, rafts[i], clients[i]))
        .collect();
    let mut members = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let root = dir.join(format!("m{}", i + 1));
        prepare_root(&root)?;
        let mut config = raiz_server::Config::default();
        config.root = Some(root);
        config.listen = Some(client.clone());
        config.cluster = true;
        config.cluster_id = Some(i as u64 + 1);
        config.cluster_members = Some(list.clone());
        // A snapshot drops all but the last 10 entries behind it (the
        // catch-up by snapshot below); none is built unless asked for.
        config.cluster_keep_after_snapshot = Some(10);
        members.push(Member {
            config,
            client: client.clone(),
            handle: None,
        });
    }
    for m in &mut members {
        m.handle = Some(raiz_server::start(m.config.clone(), false)?);
    }
    Ok(members)
}

/// The position of the member that takes writes, waiting up to 20 s.
fn leader(members: &[Member]) -> Result<usize> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        for (i, m) in members.iter().enumerate() {
            if m.handle.is_none() {
                continue;
            }
            let st = Connection::connect(&format!("raiz://bench:bench@{}", m.client))
                .and_then(|c| c.session())
                .and_then(|s| s.cluster_status());
            if st.is_ok_and(|s| s.writable) {
                return Ok(i);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("no leader within 20 s".into())
}

fn applied(m: &Member) -> Option<u64> {
    Connection::connect(&format!("raiz://bench:bench@{}", m.client))
        .and_then(|c| c.session())
        .and_then(|s| s.cluster_status())
        .ok()
        .and_then(|s| s.applied)
}

/// Waits until member `i` has applied what the leader has; returns how long.
fn catch_up(members: &[Member], i: usize, leader: usize) -> Result<Duration> {
    let start = Instant::now();
    let target = applied(&members[leader]).ok_or("the leader does not answer")?;
    while applied(&members[i]) < Some(target) {
        if start.elapsed() > Duration::from_secs(300) {
            return Err("a member did not catch up within 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(start.elapsed())
}

/// Stops the leader; returns how long until another member acknowledged a
/// write, and the stopped member's position.
fn failover(members: &mut [Member], run: u64) -> Result<(Duration, usize)> {
    let l = leader(members)?;
    let handle = members[l].handle.take().ok_or("no leader handle")?;
    let stopped = Instant::now();
    handle.stop()?;
    let mut n = 0u64;
    loop {
        if stopped.elapsed() > Duration::from_secs(30) {
            return Err("no write acknowledged within 30 s of the leader stopping".into());
        }
        for (i, m) in members.iter().enumerate() {
            if i == l {
                continue;
            }
            n += 1;
            let ok = Connection::connect(&format!("raiz://bench:bench@{}", m.client))
                .and_then(|c| c.session())
                .and_then(|s| s.open_table("kv"))
                .and_then(|mut t| {
                    t.append(&[
                        Value::Binary(fresh_key(0xd0, run << 32 | n).to_vec()),
                        Value::Binary(vec![1; 150]),
                    ])
                });
            if ok.is_ok() {
                return Ok((stopped.elapsed(), l));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The section's rows (see the module docs).
pub fn run(spec: &Spec, quick: bool, report: &mut Report) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // One server, the reference.
    let root = dir.path().join("single");
    prepare_root(&root)?;
    let mut config = raiz_server::Config::default();
    config.root = Some(root);
    config.listen = Some("127.0.0.1:0".into());
    let single = raiz_server::start(config, false)?;
    let url = format!(
        "raiz://bench:bench@{}",
        single.tcp.ok_or("the server has no TCP address")?
    );
    create(&url)?;
    inserts(&url, SINGLE, spec, report)?;
    single.stop()?;

    let mut members = start_group(dir.path())?;
    let l = leader(&members)?;
    let hosts: Vec<String> = members.iter().map(|m| m.client.clone()).collect();
    let group_url: String = format!("raiz://bench:bench@{}", hosts.join(","));
    create(&format!("raiz://bench:bench@{}", members[l].client))?;
    inserts(&group_url, GROUP, spec, report)?;

    // Failover, again and again: each time the stopped member comes back and
    // catches up before the next.
    let runs = if quick { 3 } else { 20 };
    let mut times = Vec::new();
    for run in 0..runs {
        let (took, stopped) = failover(&mut members, run)?;
        times.push(took.as_secs_f64());
        members[stopped].handle = Some(raiz_server::start(members[stopped].config.clone(), false)?);
        let l = leader(&members)?;
        catch_up(&members, stopped, l)?;
    }
    let p50 = percentile(&mut times, 0.5);
    let max = percentile(&mut times, 1.0);
    report.add(
        &format!("failover: leader stopped → first write acknowledged, p50 of {runs}"),
        "s",
        Better::Lower,
        GROUP,
        p50,
    );
    report.add(
        &format!("failover: leader stopped → first write acknowledged, max of {runs}"),
        "s",
        Better::Lower,
        GROUP,
        max,
    );

    // A follower down while the others take writes from 8 connections.
    let down_for = if quick { 3.0 } else { 60.0 };
    let l = leader(&members)?;
    let f = (l + 1) % 3;
    members[f].handle.take().ok_or("no follower")?.stop()?;
    let connect = || -> Result<RaizClient> {
        let session = Connection::connect(&group_url)?.session()?;
        let t = session.open_table("kv")?;
        Ok(RaizClient {
            _session: session,
            t,
        })
    };
    let rate_down = rate(8, down_for, &connect, &|c, i| {
        use super::server::Client;
        c.insert(&fresh_key(0xc0, i), &[9u8; 150])
    })?;
    let behind = (rate_down * down_for) as u64;
    members[f].handle = Some(raiz_server::start(members[f].config.clone(), false)?);
    let l = leader(&members)?;
    let took = catch_up(&members, f, l)?;
    report.add(
        &format!(
            "catch-up of a member down {down_for:.0} s under 8 writing connections (≈{behind} commits behind)"
        ),
        "s",
        Better::Lower,
        GROUP,
        took.as_secs_f64(),
    );
    snapshot_catch_up(&mut members, spec, quick, report)?;
    for m in &mut members {
        if let Some(h) = m.handle.take() {
            h.stop()?;
        }
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A follower away while a table is loaded; the leader builds a snapshot
/// and drops the log behind it, so the follower is brought up by the
/// snapshot (streamed, then installed into its live database).
fn snapshot_catch_up(
    members: &mut [Member],
    spec: &Spec,
    quick: bool,
    report: &mut Report,
) -> Result<()> {
    let n = if quick {
        20_000
    } else {
        spec.records.min(1_000_000)
    } as u64;
    let l = leader(members)?;
    let f = (l + 1) % 3;
    members[f].handle.take().ok_or("no follower")?.stop()?;
    let s = Connection::connect(&format!("raiz://bench:bench@{}", members[l].client))?.session()?;
    s.create_table("big", &schema(), TableOptions::default())?;
    let mut t = s.open_table("big")?;
    t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())?;
    let mut i = 0u64;
    while i < n {
        s.begin()?;
        for _ in 0..10_000.min(n - i) {
            t.append(&[
                Value::Binary(fresh_key(0xb0, i).to_vec()),
                Value::Binary(vec![5; 150]),
            ])?;
            i += 1;
        }
        s.commit()?;
    }
    let root = members[l].config.root.clone().ok_or("no root")?;
    let mb = du(&root) as f64 / (1 << 20) as f64;
    let started = Instant::now();
    let st = s.cluster_snapshot()?;
    let built = started.elapsed();
    let term = st.term;
    members[f].handle = Some(raiz_server::start(members[f].config.clone(), false)?);
    let took = catch_up(members, f, l)?;
    let after = Connection::connect(&format!("raiz://bench:bench@{}", members[l].client))?
        .session()?
        .cluster_status()?;
    if after.term != term {
        tracing::warn!(
            before = term,
            after = after.term,
            "a new term began while the member was brought up by the snapshot"
        );
    }
    report.add(
        &format!("snapshot built while serving ({n} records more, rootpath {mb:.0} MB)"),
        "s",
        Better::Lower,
        GROUP,
        built.as_secs_f64(),
    );
    report.add(
        &format!("catch-up by snapshot of a member behind the kept log ({n} records more)"),
        "s",
        Better::Lower,
        GROUP,
        took.as_secs_f64(),
    );
    Ok(())
}

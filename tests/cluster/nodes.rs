//! Cache nodes on a cluster: a node whose member goes away moves to another
//! and keeps its copy (the members number their changes by the group's log,
//! under the group's epoch); a node whose position no other member still
//! holds reloads.

use std::time::{Duration, Instant};

use raiz_client::cache::{CacheConfig, CacheNode, CacheStatus};
use raiz_client::{ConnectOptions, Session};
use raiz_engine::Value;

use crate::group::Group;
use crate::harness::PASSWORD;
use crate::history::create_tables;

fn append_orders(s: &Session, from: i64, n: i64) {
    let mut t = s.open_table("orders").unwrap();
    for k in from..from + n {
        t.append(&[
            Value::Char(format!("o{k}")),
            Value::Int64(k),
            Value::Int64(0),
        ])
        .unwrap();
    }
}

/// Every order as the node's copy holds it, read without a round trip.
fn cached_orders(node: &CacheNode) -> Vec<(u64, Vec<Value>)> {
    let s = node.connection().session().unwrap();
    let t = s.open_table("orders").unwrap();
    let before = s.round_trips();
    let out = (1..=t.record_count().unwrap())
        .map(|r| (r, t.read(r).unwrap().values().to_vec()))
        .collect();
    assert_eq!(s.round_trips(), before, "cached reads made round trips");
    out
}

fn server_orders(s: &Session) -> Vec<(u64, Vec<Value>)> {
    let t = s.open_table("orders").unwrap();
    (1..=t.record_count().unwrap())
        .map(|r| (r, t.read(r).unwrap().values().to_vec()))
        .collect()
}

fn start_node(g: &Group, order: &[usize], dir: &std::path::Path) -> CacheNode {
    let hosts: Vec<&str> = order
        .iter()
        .map(|&i| g.members[i].client.as_str())
        .collect();
    let server = format!("raiz://admin@{}?read=any", hosts.join(","));
    let options = ConnectOptions {
        password: Some(PASSWORD.into()),
        ..Default::default()
    };
    let config = CacheConfig::new(&server, &["orders"])
        .unwrap()
        .dir(dir)
        .stale_after(Duration::from_secs(10))
        .options(options);
    let node = CacheNode::start(config).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    node
}

fn caught_up(node: &CacheNode, g: &Group, member: usize) {
    let pos = g.session(member).unwrap().feed_position().unwrap();
    assert!(
        node.wait_applied(pos, Duration::from_secs(20)),
        "the node did not catch up with member {}: {:?}",
        member + 1,
        node.status()
    );
}

fn counts(st: &CacheStatus) -> (u64, u64) {
    (st.reloads, st.catch_ups)
}

#[test]
fn a_cache_node_moves_to_another_member_keeping_its_copy_and_reloads_only_when_it_must() {
    let _one = crate::scenarios::ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut g = Group::start_with(3, &["server.window_mb=1"]);
    let (l, _) = g.leader(&[], Duration::from_secs(20));
    let leader = g.session(l).unwrap();
    create_tables(&leader);
    append_orders(&leader, 0, 30);
    g.converge(l, &[]);
    // The node follows a follower first, then the other follower, then the
    // leader.
    let (f, o) = ((l + 1) % 3, (l + 2) % 3);
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_node(&g, &[f, o, l], dir.path());
    caught_up(&node, &g, f);
    let before = counts(&node.status());
    // The group had its epoch before the first write: the node loaded once.
    assert_eq!(before.0, 1, "{:?}", node.status().events);

    // Its member is killed; writes go on through the leader.
    g.kill(f);
    append_orders(&leader, 30, 30);
    g.converge(l, &[f]);
    let start = Instant::now();
    loop {
        let st = node.status();
        if st.connected && st.catch_ups > before.1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the node is not on another member: {st:?}\n{}",
            (0..3)
                .flat_map(|i| g
                    .log_of(i)
                    .lines()
                    .filter(|l| l.contains("subscription") || l.contains("epoch"))
                    .map(|l| format!("m{}: {l}", i + 1))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    caught_up(&node, &g, o);
    let st = node.status();
    assert_eq!(
        counts(&st),
        (before.0, before.1 + 1),
        "the node reloaded instead of catching up: {:?}",
        st.events
    );
    assert_eq!(cached_orders(&node), server_orders(&leader));
    assert_eq!(cached_orders(&node).len(), 60);

    // The node stops; more than the members' windows hold is committed
    // meanwhile (one transaction larger than 1 MiB of changes): at its
    // restart no member has its position any more, and it reloads.
    node.stop();
    g.spawn(f);
    leader.begin().unwrap();
    append_orders(&leader, 60, 20_000);
    leader.commit().unwrap();
    g.converge(l, &[]);
    node = start_node(&g, &[o, f, l], dir.path());
    caught_up(&node, &g, o);
    let st = node.status();
    assert!(
        st.catch_ups == 0
            && st
                .events
                .iter()
                .any(|e| e.contains("no longer in the server's window")),
        "the node kept a copy no member could bring up to date: {:?}",
        st.events
    );
    assert_eq!(cached_orders(&node), server_orders(&leader));
    node.stop();
}

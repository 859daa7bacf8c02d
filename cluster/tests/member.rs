//! Three members in one process, on loopback: commits through the leader,
//! applied on every member in the same order; refusals the same everywhere;
//! followers refuse writes; a stopped leader is replaced.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use raiz_cluster::{ClusterConfig, Member};
use raiz_engine::{Database, Error, TableOptions, Value};

#[test]
fn commits_go_through_the_leader_and_reach_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = group(dir.path(), 3);
    let l = leader(&nodes, &[]);
    let ldb = &nodes[l].db;
    with_index(ldb);
    let s = ldb.session();
    let mut t = s.open_table("items").unwrap();
    // Rewrites are not replicated yet: refused on a member.
    let e = t.pack().unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    // Outside a transaction.
    assert_eq!(t.append(&[code("A"), Value::Int64(1)]).unwrap(), 1);
    // A transaction that commits, one that rolls back, one that commits.
    s.begin().unwrap();
    t.append(&[code("B"), Value::Int64(2)]).unwrap();
    t.update(1, &[code("A"), Value::Int64(10)]).unwrap();
    s.commit().unwrap();
    s.begin().unwrap();
    assert_eq!(t.append(&[code("X"), Value::Int64(9)]).unwrap(), 3);
    s.rollback().unwrap();
    s.begin().unwrap();
    assert_eq!(t.append(&[code("C"), Value::Int64(3)]).unwrap(), 4);
    t.delete(2).unwrap();
    s.commit().unwrap();
    // What the leader's session sees is committed: it reads it back.
    assert_eq!(t.read(1).unwrap().values()[1], Value::Int64(10));
    converge(&nodes, l, &[]);
    let expect = contents(ldb, "items");
    assert_eq!(expect.0.len(), 4);
    assert!(expect.0[2].1, "the rolled-back recno is a deleted blank");
    for n in &nodes {
        assert_eq!(contents(&n.db, "items"), expect);
    }
    // A follower refuses writes and names the leader.
    let f = (l + 1) % 3;
    let fs = nodes[f].db.session();
    let mut ft = fs.open_table("items").unwrap();
    match ft.append(&[code("Z"), Value::Int64(0)]) {
        Err(Error::NotLeader { leader: Some(addr) }) => {
            assert_eq!(addr, format!("db{}.example:7070", l + 1))
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
    let e = nodes[f]
        .db
        .create_table("other", &schema(), TableOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::NotLeader { .. }), "{e}");
    for n in &nodes {
        n.member.shutdown();
    }
}

#[test]
fn a_unique_key_taken_meanwhile_is_refused_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = group(dir.path(), 3);
    let l = leader(&nodes, &[]);
    with_index(&nodes[l].db);
    let s1 = nodes[l].db.session();
    let s2 = nodes[l].db.session();
    let mut t1 = s1.open_table("items").unwrap();
    let mut t2 = s2.open_table("items").unwrap();
    s1.begin().unwrap();
    s2.begin().unwrap();
    assert_eq!(t1.append(&[code("K"), Value::Int64(1)]).unwrap(), 1);
    assert_eq!(t2.append(&[code("K"), Value::Int64(2)]).unwrap(), 2);
    t2.append(&[code("L"), Value::Int64(3)]).unwrap();
    s1.commit().unwrap();
    let e = s2.commit().unwrap_err();
    assert!(matches!(e, Error::DuplicateKey { .. }), "{e}");
    // The session goes on: its next commit works.
    assert_eq!(t2.append(&[code("M"), Value::Int64(4)]).unwrap(), 4);
    converge(&nodes, l, &[]);
    let expect = contents(&nodes[l].db, "items");
    let live: Vec<u64> = expect.0.iter().filter(|r| !r.1).map(|r| r.0).collect();
    assert_eq!(live, vec![1, 4]);
    // Deleted blank records (blank keys) first, then K and M.
    assert_eq!(expect.1[2..], [1, 4]);
    for n in &nodes {
        assert_eq!(contents(&n.db, "items"), expect);
    }
    // A member's own table is not the clients'.
    let e = nodes[l]
        .db
        .drop_table(raiz_cluster::META_TABLE)
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    for n in &nodes {
        n.member.shutdown();
    }
}

#[test]
fn writers_through_a_leader_that_stops_lose_nothing_acknowledged() {
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap as Map;
    use std::sync::Mutex;
    let seed: u64 = std::env::var("RAIZ_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (RAIZ_CLUSTER_SEED={seed} repeats it)");
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = group(dir.path(), 3);
    let l = leader(&nodes, &[]);
    with_index(&nodes[l].db);
    // code -> qty of every acknowledged commit; codes whose commit got a
    // replication error (outcome unknown).
    let acked: Arc<Mutex<Map<String, i64>>> = Arc::default();
    let unknown: Arc<Mutex<Map<String, i64>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(600);
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let db = nodes[l].db.clone();
            let acked = acked.clone();
            let unknown = unknown.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ w);
                let s = db.session();
                let mut t = s.open_table("items").unwrap();
                for n in 0.. {
                    let c = format!("w{w}-{n}");
                    let qty = rng.random_range(0..1000);
                    let r: Result<bool, Error> = (|| {
                        s.begin()?;
                        t.append(&[code(&c), Value::Int64(qty)])?;
                        if rng.random_bool(0.2) {
                            s.rollback()?;
                            return Ok(false);
                        }
                        s.commit()?;
                        Ok(true)
                    })();
                    match r {
                        Ok(true) => {
                            acked.lock().unwrap().insert(c, qty);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            let _ = s.rollback();
                            assert!(e.is_replication(), "writer {w}: {e}");
                            unknown.lock().unwrap().insert(c, qty);
                            if Instant::now() > stop_at {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    if Instant::now() > stop_at + Duration::from_millis(400) {
                        return;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    nodes[l].member.shutdown();
    let l2 = leader(&nodes, &[l]);
    let failover = stopped.elapsed();
    println!("failover: a new leader took writes {failover:?} after the leader stopped");
    assert!(failover < Duration::from_secs(5), "{failover:?}");
    for w in writers {
        w.join().unwrap();
    }
    // The old leader takes no write any more.
    {
        let s = nodes[l].db.session();
        let mut t = s.open_table("items").unwrap();
        let e = t.append(&[code("late"), Value::Int64(0)]).unwrap_err();
        assert!(e.is_replication(), "{e}");
    }
    {
        let s = nodes[l2].db.session();
        let mut t = s.open_table("items").unwrap();
        t.append(&[code("after"), Value::Int64(7)]).unwrap();
        acked.lock().unwrap().insert("after".into(), 7);
    }
    converge(&nodes, l2, &[l]);
    let check = |db: &Database| {
        let (records, _) = contents(db, "items");
        let found: Map<String, i64> = records
            .iter()
            .filter(|r| !r.1)
            .map(|r| {
                let Value::Char(c) = &r.2[0] else { panic!() };
                let Value::Int64(q) = r.2[1] else { panic!() };
                (c.trim_end().to_owned(), q)
            })
            .collect();
        for (c, q) in acked.lock().unwrap().iter() {
            assert_eq!(found.get(c), Some(q), "acknowledged {c} (seed {seed})");
        }
        let unknown = unknown.lock().unwrap();
        for (c, q) in &found {
            if !acked.lock().unwrap().contains_key(c) {
                assert_eq!(
                    unknown.get(c),
                    Some(q),
                    "{c} was never acknowledged nor in doubt (seed {seed})"
                );
            }
        }
    };
    let expect = contents(&nodes[l2].db, "items");
    check(&nodes[l2].db);
    for (i, n) in nodes.iter().enumerate() {
        if i != l {
            assert_eq!(
                contents(&n.db, "items"),
                expect,
                "member {} (seed {seed})",
                i + 1
            );
        }
    }
    // The old leader comes back as a follower and catches up.
    let config = nodes[l].config.clone();
    drop(nodes.remove(l));
    nodes.insert(l, Node::start(config));
    let l3 = leader(&nodes, &[]);
    {
        let s = nodes[l3].db.session();
        let mut t = s.open_table("items").unwrap();
        t.append(&[code("back"), Value::Int64(8)]).unwrap();
        acked.lock().unwrap().insert("back".into(), 8);
    }
    converge(&nodes, l3, &[]);
    let expect = contents(&nodes[l3].db, "items");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            contents(&n.db, "items"),
            expect,
            "member {} after rejoining (seed {seed})",
            i + 1
        );
        check(&n.db);
    }
    for n in &nodes {
        n.member.shutdown();
    }
}

#[test]
fn the_raft_port_refuses_strangers_and_the_group_goes_on() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let nodes = group(dir.path(), 3);
    let l = leader(&nodes, &[]);
    let port = nodes[l].config.members[&(l as u64 + 1)].raft.clone();
    let closed = |mut s: std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(0) | Err(_))
    };
    // A hello with the wrong secret.
    let mut s = std::net::TcpStream::connect(&port).unwrap();
    let mut hello = b"RZRAFT\x00\x01wrong".to_vec();
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.append(&mut hello);
    s.write_all(&frame).unwrap();
    assert!(closed(s), "a wrong secret is refused");
    // A frame announcing 200 MiB before any hello.
    let mut s = std::net::TcpStream::connect(&port).unwrap();
    s.write_all(&(200u32 << 20).to_be_bytes()).unwrap();
    assert!(closed(s), "an oversized hello is refused");
    // Garbage.
    let mut s = std::net::TcpStream::connect(&port).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed(s), "not a member: refused");
    // The group still commits.
    with_index(&nodes[l].db);
    let s = nodes[l].db.session();
    let mut t = s.open_table("items").unwrap();
    t.append(&[code("A"), Value::Int64(1)]).unwrap();
    for n in &nodes {
        n.member.shutdown();
    }
}

#[test]
fn a_member_joins_catches_up_votes_and_another_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = group(dir.path(), 3);
    let l = leader(&nodes, &[]);
    with_index(&nodes[l].db);
    {
        let s = nodes[l].db.session();
        let mut t = s.open_table("items").unwrap();
        for k in 0..50 {
            t.append(&[code(&format!("c{k}")), Value::Int64(k)])
                .unwrap();
        }
    }
    // A fourth member, told it joins: it waits to be added.
    let mut members = nodes[0].config.members.clone();
    members.insert(
        4,
        Member {
            raft: free_port(),
            client: "db4.example:7070".into(),
        },
    );
    let root = dir.path().join("m4");
    let mut cfg = ClusterConfig::new(4, members.clone(), root.join("raft"));
    cfg.secret = "s3cret".into();
    cfg.join = true;
    nodes.push(Node::start(cfg));
    nodes[l].member.add_member(4, members[&4].clone()).unwrap();
    assert_eq!(nodes[l].member.status().members.len(), 4);
    converge(&nodes, l, &[]);
    let expect = contents(&nodes[l].db, "items");
    assert_eq!(
        contents(&nodes[3].db, "items"),
        expect,
        "the new member caught up"
    );
    // One of four stops: three of four still make a majority.
    let gone = (l + 1) % 3;
    nodes[gone].member.shutdown();
    let l2 = leader(&nodes, &[gone]);
    {
        let s = nodes[l2].db.session();
        let mut t = s.open_table("items").unwrap();
        t.append(&[code("after"), Value::Int64(99)]).unwrap();
    }
    nodes[l2].member.remove_member(gone as u64 + 1).unwrap();
    let st = nodes[l2].member.status();
    assert_eq!(st.members.len(), 3, "{st:?}");
    assert!(!st.members.contains_key(&(gone as u64 + 1)));
    converge(&nodes, l2, &[gone]);
    let expect = contents(&nodes[l2].db, "items");
    for (i, n) in nodes.iter().enumerate() {
        if i != gone {
            assert_eq!(contents(&n.db, "items"), expect, "member {}", i + 1);
        }
    }
    // A follower cannot change the membership.
    let f = (0..4).find(|&i| i != l2 && i != gone).unwrap();
    assert!(matches!(
        nodes[f].member.remove_member(1),
        Err(Error::NotLeader { .. })
    ));
    for (i, n) in nodes.iter().enumerate() {
        if i != gone {
            n.member.shutdown();
        }
    }
}

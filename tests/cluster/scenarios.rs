//! The faults: the leader killed, the leader cut off, a follower cut off, a
//! majority killed. Each runs under writers, then heals and checks every
//! member (see `history`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use raiz_client::ErrorKind;
use raiz_engine::Value;

use crate::group::{http_get, Group};
use crate::history::{check, contents, create_tables, in_doubt, History, Outcome, Writers};

/// One scenario at a time: three members and their writers are what two
/// cores can run with timings that mean something.
pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("RAIZ_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let rounds: u64 = std::env::var("RAIZ_CLUSTER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    (0..rounds).map(|_| rand::random()).collect()
}

fn setup(seed: u64) -> (Group, Writers) {
    setup_with(seed, &[])
}

fn setup_with(seed: u64, settings: &[&str]) -> (Group, Writers) {
    println!("seed {seed} (RAIZ_CLUSTER_SEED={seed} replays it)");
    let g = Group::start_with(3, settings);
    let (l, took) = g.leader(&[], Duration::from_secs(20));
    println!("first leader: member {} after {took:?}", l + 1);
    create_tables(&g.session(l).unwrap());
    let addrs = g.members.iter().map(|m| m.client.clone()).collect();
    let w = Writers::start(addrs, 3, seed);
    (g, w)
}

/// Waits for the first write acknowledged by a member other than `except`
/// (recorded in `h`); returns how long it took from `since`.
fn first_write(
    g: &Group,
    h: &History,
    except: &[usize],
    since: Instant,
    limit: Duration,
) -> Duration {
    let mut n = 0;
    loop {
        assert!(
            since.elapsed() < limit,
            "no write acknowledged within {limit:?}:\n{}",
            g.logs()
        );
        for i in 0..g.members.len() {
            if !g.running(i) || except.contains(&i) {
                continue;
            }
            let Ok(s) = g.session(i) else { continue };
            n += 1;
            let ok = s.open_table("orders").and_then(|mut t| {
                t.append(&[
                    Value::Char(format!("probe{n}")),
                    Value::Int64(0),
                    Value::Int64(0),
                ])
            });
            let code = format!("probe{n}");
            match ok {
                Ok(_) => {
                    h.record(&code, 0, 0, Outcome::Acked);
                    return since.elapsed();
                }
                Err(e) if in_doubt(e.kind()) => h.record(&code, 0, 0, Outcome::InDoubt),
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops the writers, heals, restarts every member, waits for them to
/// agree, and checks each.
/// Heals, restarts, and compares every member with the leader; returns
/// the group for a last look.
fn finish(mut g: Group, w: Writers, seed: u64) -> Group {
    std::thread::sleep(Duration::from_millis(300));
    let h = w.stop();
    g.heal();
    for i in 0..g.members.len() {
        if !g.running(i) {
            g.spawn(i);
        }
    }
    let (l, _) = g.leader(&[], Duration::from_secs(20));
    // A write in this term makes every member's log end in it.
    first_write(&g, &h, &[], Instant::now(), Duration::from_secs(20));
    g.converge(l, &[]);
    let reference = contents(&g.session(l).unwrap());
    for i in 0..g.members.len() {
        let c = contents(&g.session(i).unwrap());
        check(&c, &h, &format!("member {}", i + 1), seed);
        if let Some(d) = c.raw.iter().zip(&reference.raw).find(|(a, b)| a != b) {
            panic!(
                "member {} differs from the leader (seed {seed}): {} vs {}",
                i + 1,
                d.0,
                d.1
            );
        }
        assert_eq!(c.raw.len(), reference.raw.len(), "member {}", i + 1);
    }
    println!(
        "checked: {} commits acknowledged, {} in doubt, {} orders on every member",
        h.acked.load(std::sync::atomic::Ordering::Relaxed),
        h.in_doubt.load(std::sync::atomic::Ordering::Relaxed),
        reference.orders.len()
    );
    g
}

#[test]
fn the_leader_killed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for seed in seeds() {
        let (mut g, w) = setup(seed);
        std::thread::sleep(Duration::from_millis(700));
        let (l, _) = g.leader(&[], Duration::from_secs(5));
        let killed = Instant::now();
        g.kill(l);
        let took = first_write(&g, &w.history, &[l], killed, Duration::from_secs(15));
        println!(
            "failover: member {} killed, first write acknowledged by another after {took:?}",
            l + 1
        );
        assert!(took < Duration::from_secs(5), "failover took {took:?}");
        std::thread::sleep(Duration::from_millis(500));
        // The old leader comes back as a follower.
        g.spawn(l);
        finish(g, w, seed);
    }
}

#[test]
fn the_leader_cut_off_acknowledges_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for seed in seeds() {
        let (g, w) = setup(seed);
        std::thread::sleep(Duration::from_millis(500));
        let (l, _) = g.leader(&[], Duration::from_secs(5));
        // A client of the old leader keeps writing through the partition.
        let old = g.session(l).unwrap();
        let mut t = old.open_table("orders").unwrap();
        let cut = Instant::now();
        g.isolate(l);
        let took = first_write(&g, &w.history, &[l], cut, Duration::from_secs(15));
        println!(
            "partition: member {} cut off, the majority's first write after {took:?}",
            l + 1
        );
        assert!(took < Duration::from_secs(5), "failover took {took:?}");
        for k in 0..3 {
            let r = t.append(&[
                Value::Char(format!("cut{k}")),
                Value::Int64(1),
                Value::Int64(0),
            ]);
            let e = r.expect_err("the cut-off leader acknowledged a write");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::NoQuorum | ErrorKind::Failover | ErrorKind::NotLeader
                ),
                "{e}"
            );
        }
        // Its own view, once it noticed: not writable.
        assert!(crate::harness::eventually(Duration::from_secs(10), || {
            g.status(l).is_some_and(|s| !s.writable)
        }));
        drop(t);
        drop(old);
        finish(g, w, seed);
    }
}

#[test]
fn a_follower_cut_off_catches_up() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for seed in seeds() {
        // Snapshots every 200 entries, 20 kept behind one: a follower cut
        // off for a few hundred commits is behind the log the group keeps
        // and catches up by a snapshot.
        let (g, w) = setup_with(
            seed,
            &[
                "cluster.snapshot_every=200",
                "cluster.keep_after_snapshot=20",
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
        let (l, _) = g.leader(&[], Duration::from_secs(5));
        let f = (l + 1) % 3;
        let before = w.history.acked.load(std::sync::atomic::Ordering::Relaxed);
        g.isolate(f);
        let cut = Instant::now();
        let during = loop {
            std::thread::sleep(Duration::from_millis(100));
            let during = w.history.acked.load(std::sync::atomic::Ordering::Relaxed) - before;
            if during >= 600 || cut.elapsed() > Duration::from_secs(30) {
                break during;
            }
        };
        println!(
            "follower {} cut off: {during} commits acknowledged meanwhile",
            f + 1
        );
        assert!(
            during >= 600,
            "writes stopped while only a follower was cut off"
        );
        let member = finish(g, w, seed);
        assert!(
            member.log_of(f).contains("snapshot installed"),
            "member {} caught up without a snapshot: {}",
            f + 1,
            member.logs()
        );
    }
}

#[test]
fn a_majority_killed_refuses_writes_with_no_quorum() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for seed in seeds() {
        let (mut g, w) = setup(seed);
        std::thread::sleep(Duration::from_millis(500));
        let (l, _) = g.leader(&[], Duration::from_secs(5));
        let f = (l + 1) % 3;
        let survivor = (l + 2) % 3;
        g.kill(l);
        g.kill(f);
        let s = g.session(survivor).unwrap();
        let mut t = s.open_table("orders").unwrap();
        let mut last = None;
        let saw = crate::harness::eventually(Duration::from_secs(10), || {
            let e = t
                .append(&[
                    Value::Char("lonely".into()),
                    Value::Int64(1),
                    Value::Int64(0),
                ])
                .expect_err("one member of three acknowledged a write");
            last = Some(e.kind());
            e.kind() == ErrorKind::NoQuorum
        });
        assert!(saw, "the survivor's writes end in {last:?}, not NoQuorum");
        drop(t);
        drop(s);
        finish(g, w, seed);
    }
}

#[test]
fn a_link_dropping_one_way_keeps_the_group_safe() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for seed in seeds() {
        let (g, w) = setup(seed);
        std::thread::sleep(Duration::from_millis(300));
        let (l, _) = g.leader(&[], Duration::from_secs(5));
        let f = (l + 1) % 3;
        // What the leader sends that follower vanishes; the follower's own
        // messages still arrive.
        g.relays[&(g.members[l].id, g.members[f].id)].cut_forward();
        std::thread::sleep(Duration::from_millis(2000));
        finish(g, w, seed);
    }
}

#[test]
fn status_roles_and_a_lost_majority_as_operators_see_them() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Group::start(3);
    let (l, _) = g.leader(&[], Duration::from_secs(20));
    let status = |g: &Group, i: usize| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(["cluster", "status", "--json", "--connect"])
            .arg(format!("raiz://admin@{}", g.members[i].client))
            .env("RAIZ_PASSWORD", crate::harness::PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let f = (l + 1) % 3;
    let v = status(&g, f);
    assert_eq!(v["leader"], serde_json::json!(l + 1));
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let roles: Vec<&str> = members
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{v}");
    assert_eq!(roles.iter().filter(|r| **r == "follower").count(), 2, "{v}");
    // The load balancer's view: /leader answers 200 on the leader alone.
    for i in 0..3 {
        let (code, body) = http_get(g.members[i].metrics.as_ref().unwrap(), "/leader");
        assert_eq!(
            code,
            if i == l { 200 } else { 503 },
            "member {}: {body}",
            i + 1
        );
        let (code, body) = http_get(g.members[i].metrics.as_ref().unwrap(), "/role");
        assert_eq!(code, 200);
        assert!(
            body.starts_with(if i == l { "leader" } else { "follower" }),
            "{body}"
        );
    }
    // One member down: shown so, the others carry on.
    g.kill(f);
    let v = status(&g, l);
    let down: Vec<u64> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "down")
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(down, vec![f as u64 + 1]);
    // A majority down: the text says so.
    let other = (l + 2) % 3;
    g.kill(other);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["cluster", "status", "--connect"])
        .arg(format!("raiz://admin@{}", g.members[l].client))
        .env("RAIZ_PASSWORD", crate::harness::PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no quorum"), "{text}");
    // And the old leader stops claiming the role.
    assert!(crate::harness::eventually(Duration::from_secs(10), || {
        http_get(g.members[l].metrics.as_ref().unwrap(), "/leader").0 == 503
    }));
}

#[test]
fn a_session_on_the_cluster_string_follows_the_leader() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Group::start(3);
    let (l, _) = g.leader(&[], Duration::from_secs(20));
    create_tables(&g.session(l).unwrap());
    let url = format!(
        "raiz://admin:{}@{}",
        crate::harness::PASSWORD,
        g.members
            .iter()
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    );
    let s = raiz_client::Connection::connect(&url)
        .and_then(|c| c.session())
        .unwrap();
    assert!(
        s.cluster_status().unwrap().writable,
        "the session went to the leader"
    );
    let mut t = s.open_table("orders").unwrap();
    for k in 0..5 {
        t.append(&[
            Value::Char(format!("k{k}")),
            Value::Int64(k),
            Value::Int64(0),
        ])
        .unwrap();
    }
    t.set_order(Some("code")).unwrap();
    assert!(t.seek(&[Value::Char("k2".into())]).unwrap());
    let on = t.recno();
    // The leader dies under an open transaction (written through another
    // handle: an append moves its handle to the new record).
    let mut w = s.open_table("orders").unwrap();
    s.begin().unwrap();
    w.append(&[Value::Char("lost".into()), Value::Int64(9), Value::Int64(0)])
        .unwrap();
    g.kill(l);
    let e = s.commit().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Failover, "{e}");
    s.rollback().unwrap();
    // The session carries on at the new leader: same handle, same order,
    // same record.
    assert!(s.cluster_status().unwrap().writable);
    assert_eq!(t.recno(), on);
    assert!(t.next().unwrap());
    assert_eq!(
        t.record().unwrap().values()[0],
        Value::Char(format!("{:<12}", "k3"))
    );
    s.begin().unwrap();
    w.append(&[
        Value::Char("after".into()),
        Value::Int64(10),
        Value::Int64(0),
    ])
    .unwrap();
    s.commit().unwrap();
    // Nothing acknowledged was lost; the commit that got Failover is either
    // there whole or not at all.
    let mut codes = Vec::new();
    let mut at = t.first().unwrap();
    while at {
        let r = t.record().unwrap();
        if !r.is_deleted() {
            if let Value::Char(c) = &r.values()[0] {
                codes.push(c.trim_end().to_owned());
            }
        }
        at = t.next().unwrap();
    }
    for k in ["k0", "k1", "k2", "k3", "k4", "after"] {
        assert!(codes.iter().any(|c| c == k), "{k} missing from {codes:?}");
    }
    g.spawn(l);
}

#[test]
fn a_member_added_and_one_removed_with_the_command_line() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Group::start(3);
    let (l, _) = g.leader(&[], Duration::from_secs(20));
    create_tables(&g.session(l).unwrap());
    let h = History::default();
    first_write(&g, &h, &[], Instant::now(), Duration::from_secs(10));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(args)
            .env("RAIZ_PASSWORD", crate::harness::PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "raiz {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A snapshot on request, on any member.
    let f_url = format!("raiz://admin@{}", g.members[(l + 1) % 3].client);
    let out = cli(&["cluster", "snapshot", "--connect", &f_url]);
    assert!(out.contains("snapshot of entry"), "{out}");
    let st = g.status((l + 1) % 3).unwrap();
    assert!(st.snapshot.is_some() && st.snapshot <= st.applied, "{st:?}");
    let out = cli(&["cluster", "status", "--connect", &f_url]);
    assert!(out.contains("snapshot"), "{out}");
    let n = g.spawn_joining();
    let new = format!(
        "{} {} {}",
        g.members[n].id, g.members[n].raft, g.members[n].client
    );
    let leader_url = format!("raiz://admin@{}", g.members[l].client);
    let out = cli(&["cluster", "add", "--connect", &leader_url, &new]);
    assert!(out.contains("4 members"), "{out}");
    g.converge(l, &[]);
    // Three of four still decide: one original member goes.
    let gone = (l + 1) % 3;
    g.kill(gone);
    first_write(&g, &h, &[gone], Instant::now(), Duration::from_secs(10));
    let (l2, _) = g.leader(&[gone], Duration::from_secs(10));
    let url = format!("raiz://admin@{}", g.members[l2].client);
    let out = cli(&[
        "cluster",
        "remove",
        "--connect",
        &url,
        &(gone + 1).to_string(),
    ]);
    assert!(out.contains("3 members"), "{out}");
    first_write(&g, &h, &[gone], Instant::now(), Duration::from_secs(10));
    g.converge(l2, &[gone]);
    let reference = contents(&g.session(l2).unwrap());
    for i in 0..g.members.len() {
        if i != gone {
            let c = contents(&g.session(i).unwrap());
            check(&c, &h, &format!("member {}", i + 1), 0);
            assert_eq!(c.raw, reference.raw, "member {}", i + 1);
        }
    }
}

#[test]
fn a_cache_node_on_a_follower_sees_the_leaders_commits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let g = Group::start(3);
    let (l, _) = g.leader(&[], Duration::from_secs(20));
    create_tables(&g.session(l).unwrap());
    let f = (l + 1) % 3;
    let url = format!(
        "raiz+cache://admin:{}@{}?tables=orders&stale=10",
        crate::harness::PASSWORD,
        g.members[f].client
    );
    let conn = raiz_client::Connection::connect(&url).unwrap();
    let node = conn.cache_node().unwrap();
    let cached = conn.session().unwrap();
    let leader = g.session(l).unwrap();
    let mut t = leader.open_table("orders").unwrap();
    for k in 0..20 {
        t.append(&[
            Value::Char(format!("o{k}")),
            Value::Int64(k),
            Value::Int64(0),
        ])
        .unwrap();
    }
    g.converge(l, &[]);
    let pos = g.session(f).unwrap().feed_position().unwrap();
    assert!(
        node.wait_applied(pos, Duration::from_secs(10)),
        "the node did not catch up"
    );
    let c = cached.open_table("orders").unwrap();
    let before = cached.round_trips();
    assert_eq!(c.record_count().unwrap(), 20);
    let r = c.read(7).unwrap();
    assert_eq!(r.values()[1], Value::Int64(6));
    assert_eq!(
        cached.round_trips(),
        before,
        "cached reads made round trips"
    );
    // Writes through a node on a follower are refused by the follower.
    let mut w = cached.open_table("orders").unwrap();
    let e = w
        .append(&[Value::Char("x".into()), Value::Int64(0), Value::Int64(0)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotLeader, "{e}");
}

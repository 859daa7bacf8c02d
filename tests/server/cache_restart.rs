//! A node's dbCache across restarts: a warm restart applies exactly the
//! changes since its mark; a copy of another node's dbCache works on a new
//! node; a new server epoch, a position out of the server's window, a
//! discarded or damaged copy each make the node reload — never serve wrong
//! data. A node that stops reading is cut off without holding the server's
//! memory.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use raiz_client::proto::{self, Envelope, Request};
use raiz_engine::Value;

use crate::cache::{create_dictionary, picture, row};
use crate::cache_nodes::{NodeProc, Relay};
use crate::harness::{make_users, Server, PASSWORD};

fn events(n: &NodeProc) -> Vec<String> {
    n.status()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn writes(server: &Server, from: u64, n: u64) {
    let s = server.session("ana");
    let mut t = s.open_table("sx3").unwrap();
    for i in from..from + n {
        t.append(&row(i)).unwrap();
        t.update_fields(i % 50 + 1, &[("X3_ORDEM", Value::Int64(i as i64 % 97))])
            .unwrap();
    }
}

fn compare(server: &Server, n: &NodeProc) {
    let direct = server.session("ana");
    let want = picture(&direct, "sx3");
    assert_eq!(n.copy_pictures(&["sx3"])[0], want, "{}", n.log());
}

#[test]
fn a_warm_restart_catches_up_and_a_copied_dbcache_works_on_a_new_node() {
    let server = Server::start(&[]);
    create_dictionary(&server.session("ana"), "sx3", 2000);
    let dirs = tempfile::tempdir().unwrap();
    let mut n = NodeProc::start(&dirs.path().join("a"), &server.addr, &["sx3"]);
    writes(&server, 10_000, 20);
    let pos = server.session("ana").feed_position().unwrap();
    n.caught_up(pos);
    n.terminate();
    let applied_before = pos;
    // Changes while the node is down.
    writes(&server, 20_000, 15);
    n.restart();
    let pos = server.session("ana").feed_position().unwrap();
    n.caught_up(pos);
    let st = n.status();
    // Only the changes since the mark were applied: no load at all.
    assert_eq!(st["reloads"], 0, "{st}");
    assert_eq!(st["catch_ups"], 1, "{st}");
    assert!(events(&n)
        .iter()
        .any(|e| e == &format!("catching up from {applied_before}")));
    // 15 appends and 15 updates.
    assert_eq!(st["applied_changes"], 30, "{st}");
    n.terminate();
    compare(&server, &n);

    // A new node given a copy of that dbCache: it catches up too, and its
    // own lock and status stay its own.
    let b = dirs.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    copy_dir(&dirs.path().join("a").join("dbCache"), &b.join("dbCache"));
    writes(&server, 30_000, 5);
    let mut m = NodeProc::start(&b, &server.addr, &["sx3"]);
    let pos = server.session("ana").feed_position().unwrap();
    m.caught_up(pos);
    assert_eq!(m.status()["reloads"], 0);
    m.terminate();
    compare(&server, &m);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_new_epoch_a_position_out_of_the_window_a_discard_and_a_damaged_copy_reload() {
    // A server with a tiny window (1 MiB), reached through a relay so that
    // another server can take its place.
    let server = Server::start(&["--window-mb", "1"]);
    create_dictionary(&server.session("ana"), "sx3", 500);
    let relay = Relay::start(&server.addr);
    let dirs = tempfile::tempdir().unwrap();
    let dir = dirs.path().join("n");
    let mut n = NodeProc::start(&dir, &relay.addr, &["sx3"]);
    let reloads = |n: &NodeProc| n.status()["reloads"].as_u64().unwrap();
    assert_eq!(reloads(&n), 1, "the first load");

    // Out of the window: more than 1 MiB of changes while the node is down.
    n.terminate();
    {
        let s = server.session("ana");
        let mut t = s.open_table("sx3").unwrap();
        for i in 0..60 {
            t.update_fields(
                i + 1,
                &[(
                    "X3_HELP",
                    raiz_engine::Value::Memo(raiz_engine::Memo::Data(vec![b'w'; 40_000])),
                )],
            )
            .unwrap();
        }
    }
    n.restart();
    n.caught_up(server.session("ana").feed_position().unwrap());
    assert!(
        events(&n)
            .iter()
            .any(|e| e.contains("no longer in the server's window")),
        "{:?}",
        events(&n)
    );
    assert_eq!(reloads(&n), 1, "reloaded once since the restart");
    n.terminate();
    compare(&server, &n);

    // discard: the next start loads afresh.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["cache", "discard", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("dbCache").exists());
    n.restart();
    assert!(
        events(&n).iter().any(|e| e.contains("first start")),
        "{:?}",
        events(&n)
    );
    n.terminate();

    // A damaged mark: the state table's file cut short. The node notices,
    // throws the copy away and loads again — never serves what it held.
    let state = dir.join("dbCache").join("raiz_node.rzd");
    let len = std::fs::metadata(&state).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&state)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    n.restart();
    assert!(
        events(&n).iter().any(|e| e.contains("first start")),
        "{:?}\n{}",
        events(&n),
        n.log()
    );
    n.caught_up(server.session("ana").feed_position().unwrap());
    n.terminate();
    compare(&server, &n);

    // A new epoch: another rootpath behind the same address (a restored
    // backup, a failover to another server).
    let other = Server::start(&[]);
    create_dictionary(&other.session("ana"), "sx3", 77);
    relay.retarget(&other.addr);
    n.restart();
    n.caught_up(other.session("ana").feed_position().unwrap());
    assert!(
        events(&n).iter().any(|e| e.contains("epoch changed")),
        "{:?}",
        events(&n)
    );
    n.terminate();
    compare(&other, &n);
}

/// A subscriber that never reads: the server cuts it off once it falls out
/// of the window, its memory stays bounded, and commits go on.
#[test]
fn a_stuck_node_is_cut_off_without_slowing_commits_or_holding_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    make_users(&root);
    let server = Server::start_in(dir, &["--window-mb", "2"]);
    create_dictionary(&server.session("admin"), "sx3", 10);
    // A raw subscription that is never read.
    let mut sock = std::net::TcpStream::connect(&server.addr).unwrap();
    let mut pro = [0u8; 8];
    sock.write_all(&proto::prologue(proto::VERSION, 0)).unwrap();
    sock.read_exact(&mut pro).unwrap();
    let send = |s: &mut std::net::TcpStream, id: u64, r: Request| {
        let body = postcard::to_allocvec(&Envelope { id, body: r }).unwrap();
        s.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
        s.write_all(&body).unwrap();
    };
    send(
        &mut sock,
        1,
        Request::Hello {
            user: "ana".into(),
            password: PASSWORD.into(),
            client: "stuck".into(),
        },
    );
    send(
        &mut sock,
        2,
        Request::Subscribe {
            tables: vec!["sx3".into()],
            after: None,
        },
    );
    let admin = server.session("admin");
    let listed = || admin.list_subscriptions().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed() == 0 {
        assert!(Instant::now() < deadline, "never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = || {
        let s = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let before = rss();
    // 40 MiB of changes: twenty times the window.
    let s = server.session("admin");
    let mut t = s.open_table("sx3").unwrap();
    let start = Instant::now();
    for i in 0..400u64 {
        t.update_fields(
            i % 10 + 1,
            &[(
                "X3_HELP",
                Value::Memo(raiz_engine::Memo::Data(vec![i as u8; 100_000])),
            )],
        )
        .unwrap();
    }
    let took = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed() > 0 {
        assert!(
            Instant::now() < deadline,
            "the stuck node was never cut off"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let grew = rss().saturating_sub(before);
    assert!(
        grew < 24 * 1024,
        "the server grew {grew} KiB for a 2 MiB window and a stuck node"
    );
    assert!(
        server.log().contains("cut off from the change stream"),
        "{}",
        server.log()
    );
    eprintln!("400 commits of 100 KB with a stuck node: {took:?}, server grew {grew} KiB");
}

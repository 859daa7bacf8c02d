//! Bound clients: other processes connect to a `raiz cache` node over its
//! Unix socket with the ordinary client and read the node's one copy. The
//! same random sequence of operations — moves, seeks, scopes, batches,
//! ranges, writes, transactions, locks — gives exactly what it gives
//! embedded, and reads keep working from the copy while the server is
//! silent.

use std::time::Duration;

use raiz_client::{ConnectOptions, Connection, ConnectionString, ErrorKind};
use raiz_engine::Value;

use crate::cache_nodes::NodeProc;
use crate::harness::{signal, Server, PASSWORD};

fn bound(sock: &std::path::Path) -> Connection {
    let cs: ConnectionString = format!("raiz+unix://ana@{}", sock.display())
        .parse()
        .unwrap();
    Connection::open_with(
        &cs,
        ConnectOptions {
            password: Some(PASSWORD.into()),
            ..ConnectOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn bound_clients_get_exactly_what_embedded_gives_and_read_the_copy() {
    let server = Server::start(&[]);
    let threads: usize = std::env::var("RAIZ_BOUND_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let ops: usize = std::env::var("RAIZ_SERVER_MODEL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let names: Vec<String> = (0..threads).map(|i| format!("bound{i}")).collect();
    {
        let s = server.session("ana");
        for n in &names {
            crate::model::create(&s, n);
        }
    }
    let dirs = tempfile::tempdir().unwrap();
    let sock = dirs.path().join("node.sock");
    let tables: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut node = NodeProc::start_with(
        &dirs.path().join("node"),
        &server.addr,
        &tables,
        &["--listen", &format!("unix:{}", sock.display())],
    );
    let seed: u64 = std::env::var("RAIZ_SERVER_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("bound clients: seed {seed} (RAIZ_SERVER_MODEL_SEED), {ops} operations (RAIZ_SERVER_MODEL_OPS)");
    let remote: Vec<Vec<String>> = std::thread::scope(|scope| {
        let hs: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let conn = bound(&sock);
                scope.spawn(move || {
                    let s = conn.session().unwrap();
                    crate::model::run_ops(&s, name, seed + i as u64, ops)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::connect(&format!("file:{}", dir.path().display())).unwrap();
    for (i, (name, remote)) in names.iter().zip(&remote).enumerate() {
        let s = conn.session().unwrap();
        crate::model::create(&s, name);
        let local = crate::model::run_ops(&s, name, seed + i as u64, ops);
        assert_eq!(remote.len(), local.len());
        for (k, (r, l)) in remote.iter().zip(&local).enumerate() {
            if r != l {
                for j in k.saturating_sub(6)..k {
                    eprintln!("R {}\nL {}", remote[j], local[j]);
                }
            }
            if r != l {
                let log = node.log();
                let t: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains(&format!("TRACE {name} ")))
                    .collect();
                std::fs::write("/tmp/btrace.txt", t.join("\n")).unwrap();
                std::fs::write("/tmp/nodelog.txt", &log).unwrap();
            }
            assert_eq!(r, l, "{name}: bound and embedded differ");
        }
    }
    // (The status file is written every second.)
    let start = std::time::Instant::now();
    while node.status()["local_reads"].as_u64().unwrap() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            node.status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Reads come from the copy: they go on while the server says nothing.
    let c = bound(&sock);
    let s = c.session().unwrap();
    let mut t = s.open_table(&names[0]).unwrap();
    t.set_order(Some("code")).unwrap();
    let before = t.key_count().unwrap();
    signal(server.pid(), "STOP");
    let mut n = 0;
    let mut more = t.first().unwrap();
    while more {
        n += 1;
        more = t.next().unwrap();
    }
    let read = t.read(1).map(|r| r.recno());
    signal(server.pid(), "CONT");
    assert_eq!(n, before);
    assert_eq!(read.unwrap(), 1);
    // A write goes to the server and is read back from the copy at once.
    let r = t
        .append(&[
            Value::from("ZZZ999"),
            Value::from("zed"),
            Value::Int64(1),
            Value::Memo(raiz_engine::Memo::Empty),
        ])
        .unwrap();
    assert!(t.seek(&[Value::from("ZZZ999")]).unwrap());
    assert_eq!(t.recno(), r);
    // A user the server does not know cannot log in through the node.
    let cs: ConnectionString = format!("raiz+unix://nobody@{}", sock.display())
        .parse()
        .unwrap();
    let e = Connection::open_with(
        &cs,
        ConnectOptions {
            password: Some("x".into()),
            ..ConnectOptions::default()
        },
    )
    .and_then(|c| c.session())
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    node.terminate();
}

//! `raiz monitor` (list and end sessions), idle sessions, and graceful
//! shutdown leaving a cleanly closed rootpath.

use std::process::Command;
use std::time::Duration;

use raiz_client::ErrorKind;
use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};

use crate::harness::{eventually, Server};

fn items(s: &raiz_client::Session) {
    let schema = Schema::new(vec![Field::new("CODE", FieldType::Char(8))]);
    s.create_table("items", &schema, TableOptions::default())
        .unwrap();
}

fn monitor(server: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["monitor", "--connect", &server.url("admin")])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn monitor_lists_sessions_and_ends_idle_and_busy_ones() {
    let server = Server::start(&[]);
    let ana = server.session("ana");
    items(&ana);
    let t = ana.open_table("items").unwrap();
    let mut tw = ana.open_table("items").unwrap();
    tw.append(&[Value::Char("A".into())]).unwrap();
    ana.begin().unwrap();
    t.lock(1, Duration::ZERO).unwrap();
    let admin = server.session("admin");
    let list = admin.list_sessions().unwrap();
    let mine = list.iter().find(|s| s.id == ana.id()).expect("ana listed");
    assert_eq!(mine.user, "ana");
    assert!(mine.address.starts_with("127.0.0.1:"), "{mine:?}");
    assert_eq!(mine.tables, vec!["items", "items"]);
    assert_eq!(mine.locks, vec!["record 1 of table items"]);
    assert!(mine.transaction_secs.is_some());
    assert!(mine.requests >= 5 && mine.bytes_in > 0 && mine.bytes_out > 0);
    assert!(list.iter().any(|s| s.id == admin.id()));
    // The same through the command line.
    let (ok, text) = monitor(&server, &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("ana") && text.contains("record 1 of table items"),
        "{text}"
    );
    // Non-admins may not.
    assert_eq!(
        ana.list_sessions().unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    // End ana's idle session: at once; her transaction is rolled back and the
    // lock released.
    let (ok, text) = monitor(&server, &["--end", &ana.id().to_string()]);
    assert!(ok, "{text}");
    let bo = server.session("bo");
    let tb = bo.open_table("items").unwrap();
    tb.lock(1, Duration::from_secs(5)).unwrap();
    let e = t.read(1).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    assert!(eventually(Duration::from_secs(5), || admin
        .list_sessions()
        .unwrap()
        .iter()
        .all(|s| s.id != ana.id())));
    // A busy session (waiting for a lock) ends after its request.
    let cy = server.session("ana");
    let tc = cy.open_table("items").unwrap();
    let cy_id = cy.id();
    let waiter = std::thread::spawn(move || {
        let r = tc.lock(1, Duration::from_millis(1500));

        let after = tc.read(1);
        (r.map_err(|e| e.kind()), after.map_err(|e| e.kind()), cy)
    });
    assert!(
        eventually(Duration::from_secs(5), || admin
            .list_sessions()
            .unwrap()
            .iter()
            .any(|s| s.id == cy_id && s.busy)),
        "{:?}",
        admin.list_sessions()
    );
    assert!(admin.end_session(cy_id).unwrap());
    let (r, after, _cy) = waiter.join().unwrap();
    assert_eq!(r, Err(ErrorKind::LockTimeout), "the busy request finished");
    assert!(
        matches!(after, Err(ErrorKind::Closed | ErrorKind::Io)),
        "{after:?}"
    );
    assert!(!admin.end_session(999_999).unwrap());
    let (ok, _) = monitor(&server, &["--end", "999999"]);
    assert!(!ok);
}

#[test]
fn idle_sessions_are_ended() {
    let server = Server::start(&["--idle-secs", "1"]);
    let ana = server.session("ana");
    items(&ana);
    let t = ana.open_table("items").unwrap();
    ana.begin().unwrap();
    t.lock_file(Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let e = ana.ping().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    let bo = server.session("bo");
    bo.open_table("items")
        .unwrap()
        .lock_file(Duration::from_secs(2))
        .unwrap();
    assert!(server.log().contains("idle timeout"), "{}", server.log());
}

#[test]
fn graceful_shutdown_closes_the_rootpath_cleanly() {
    let server = Server::start(&[]);
    let ana = server.session("ana");
    items(&ana);
    let mut t = ana.open_table("items").unwrap();
    for i in 0..100 {
        t.append(&[Value::Char(format!("K{i}"))]).unwrap();
    }
    let bo = server.session("bo");
    let mut tb = bo.open_table("items").unwrap();
    bo.begin().unwrap();
    tb.append(&[Value::Char("UNCOMMIT".into())]).unwrap();
    let (status, dir) = server.terminate();
    assert!(status.success(), "{status:?}");
    // The client learns its server went away.
    assert!(matches!(
        ana.ping().unwrap_err().kind(),
        ErrorKind::Closed | ErrorKind::Io
    ));
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("shutting down") && log.contains("closed"),
        "{log}"
    );
    assert!(!dir.path().join("raiz.sock").exists());
    let db = Database::open(dir.path().join("root")).unwrap();
    assert_eq!(db.recovery().commits, 0, "{:?}", db.recovery());
    let s = db.session();
    let t = s.open_table("items").unwrap();
    assert!(db.repairs().is_empty(), "{:?}", db.repairs());
    let live: Vec<_> = t
        .snapshot()
        .unwrap()
        .into_iter()
        .filter(|r| !r.is_deleted())
        .collect();
    assert_eq!(live.len(), 100);
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn raiz_toml_configures_the_server_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    crate::harness::make_users(&root);
    let config = dir.path().join("raiz.toml");
    // The file's listen address is overridden by the harness's flag; its idle
    // timeout applies.
    std::fs::write(
        &config,
        format!(
            "root = '{}'\nlisten = '127.0.0.1:1'\nidle_secs = 1\n",
            root.display()
        ),
    )
    .unwrap();
    let server = Server::start_in(dir, &["--config", config.to_str().unwrap()]);
    let ana = server.session("ana");
    ana.ping().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ana.ping().is_err());
    // A broken file is refused with its name.
    let bad = server.dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 7070\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["serve", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

fn serve_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_server_that_cannot_start_says_why_and_touches_nothing() {
    let server = Server::start(&[]);
    let root = server.root();
    let root = root.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let other_root = dir.path().join("other");
    let other_root = other_root.to_str().unwrap();
    // TLS files: missing, half given, not PEM.
    let e = serve_fails(&[
        "--root",
        other_root,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
    ]);
    assert!(e.contains("missing.pem"), "{e}");
    let e = serve_fails(&[
        "--root",
        other_root,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        missing,
    ]);
    assert!(e.contains("go together"), "{e}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let e = serve_fails(&[
        "--root",
        other_root,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        junk,
        "--tls-key",
        junk,
    ]);
    assert!(
        e.contains("junk.pem") && e.contains("no certificate"),
        "{e}"
    );
    // A second server on the same rootpath: refused, naming the owner.
    let e = serve_fails(&["--root", root, "--listen", "127.0.0.1:0"]);
    assert!(e.contains(&server.pid().to_string()), "{e}");
    // A second server on the same Unix socket (another rootpath).
    let sock = server.socket();
    let e = serve_fails(&["--root", other_root, "--unix", sock.to_str().unwrap()]);
    assert!(e.contains("another server answers"), "{e}");
    // An address that is taken.
    let e = serve_fails(&["--root", other_root, "--listen", &server.addr]);
    assert!(e.contains("cannot listen on"), "{e}");
    // The running server was not disturbed.
    server.session("ana").ping().unwrap();
}

#[test]
fn cluster_requests_on_a_plain_server_are_refused_clearly() {
    let server = Server::start(&[]);
    let admin = server.session("admin");
    let e = admin.cluster_status().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("not a cluster member"), "{e}");
    let e = admin
        .cluster_add_member(4, "127.0.0.1:7171", "127.0.0.1:7170")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = admin.cluster_snapshot().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // A handle asked for by number: never 0, never one in use.
    let raw = raiz_client::RawSession::connect(
        &server.url("admin").parse().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let t = |handle| raiz_client::proto::Request::OpenTableAs {
        name: "items".into(),
        handle,
    };
    items(&admin);
    for bad in [0, 7] {
        if bad == 7 {
            assert!(matches!(
                raw.call(&t(7)).unwrap(),
                Ok(raiz_client::proto::Reply::Opened { handle: 7, .. })
            ));
        }
        let e = raw.call(&t(bad)).unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{}", e.message);
    }
    // The next handle given out is past the one asked for.
    match raw
        .call(&raiz_client::proto::Request::OpenTable("items".into()))
        .unwrap()
    {
        Ok(raiz_client::proto::Reply::Opened { handle, .. }) => assert!(handle > 7),
        other => panic!("{other:?}"),
    }
    // Membership changes are an admin's.
    let ana = server.session("ana");
    let e = ana.cluster_remove_member(2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = ana.cluster_snapshot().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // A rootpath that was a member's is refused without --cluster.
    let (_, dir) = server.terminate();
    let db = Database::open(dir.path().join("root")).unwrap();
    db.create_table(
        "_raiz_cluster",
        &Schema::new(vec![Field::new("X", FieldType::Int64)]),
        TableOptions::default(),
    )
    .unwrap();
    drop(db);
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["serve", "--root"])
        .arg(dir.path().join("root"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("serve it with --cluster"), "{text}");
}

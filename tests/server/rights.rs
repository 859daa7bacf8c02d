//! Rights that follow the user while the server runs, sessions that hold
//! locks others wait for while sending nothing, and smaller holes: the Unix
//! socket path, locks on records that do not exist, admin-only checkpoints,
//! named-lock limits, the table list, temporary tables.

use std::process::Command;
use std::time::{Duration, Instant};

use raiz_client::{Connection, ErrorKind, Session};
use raiz_engine::{Durability, Field, FieldType, Schema, TableOptions, Value};
use raiz_server::users::Users;

use crate::harness::{eventually, Server};

fn items(s: &Session) {
    let schema = Schema::new(vec![Field::new("CODE", FieldType::Char(8))]);
    s.create_table("items", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("items").unwrap();
    t.append(&[Value::Char("A".into())]).unwrap();
}

fn raiz_user(server: &Server, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .arg("user")
        .args(args)
        .arg("--root")
        .arg(server.root())
        .env("RAIZ_NEW_PASSWORD", crate::harness::PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn removing_a_user_or_changing_groups_applies_to_open_sessions() {
    let server = Server::start(&[]);
    let ana = server.session("ana");
    items(&ana); // ana:erp rwdx:rwd-:r---
    let mut perms = ana.permissions("items").unwrap();
    perms.other_rights = raiz_client::Rights::NONE;
    ana.set_permissions("items", perms).unwrap();
    let bo = server.session("bo"); // group erp
    let tb = bo.open_table("items").unwrap();
    assert_eq!(tb.read(1).unwrap().recno(), 1);
    raiz_user(&server, &["add", "boss", "--admin"]);
    let boss = Connection::connect(&server.url("boss"))
        .unwrap()
        .session()
        .unwrap();
    assert_eq!(boss.list_sessions().unwrap().len(), 3);

    // bo leaves group erp: his open handle loses the group's rights.
    let mut users = Users::load(&server.root()).unwrap();
    users
        .users
        .iter_mut()
        .find(|u| u.name == "bo")
        .unwrap()
        .groups = vec!["ops".into()];
    users.save(&server.root()).unwrap();
    assert!(eventually(Duration::from_secs(3), || tb
        .read(1)
        .is_err_and(|e| e.kind() == ErrorKind::PermissionDenied)));
    // boss is no longer an admin.
    let mut users = Users::load(&server.root()).unwrap();
    users
        .users
        .iter_mut()
        .find(|u| u.name == "boss")
        .unwrap()
        .admin = false;
    users.save(&server.root()).unwrap();
    assert!(eventually(Duration::from_secs(3), || boss
        .list_sessions()
        .is_err_and(|e| e.kind() == ErrorKind::PermissionDenied)));

    // ana is removed: her idle session ends, and says why.
    raiz_user(&server, &["remove", "ana"]);
    let admin = server.session("admin");
    assert!(eventually(Duration::from_secs(3), || admin
        .list_sessions()
        .unwrap()
        .iter()
        .all(|s| s.user != "ana")));
    let e = ana.ping().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.to_string().contains("user ana was removed"), "{e}");
    assert!(server.log().contains("the user was removed"));
    // She cannot log in again; the others go on.
    assert_eq!(
        Connection::connect(&server.url("ana"))
            .and_then(|c| c.session())
            .unwrap_err()
            .kind(),
        ErrorKind::Auth
    );
    bo.ping().unwrap();
}

#[test]
fn a_session_holding_locks_others_wait_for_is_ended_when_idle() {
    let server = Server::start(&["--lock-idle-secs", "1"]);
    let ana = server.session("ana");
    items(&ana);
    let ta = ana.open_table("items").unwrap();
    ana.begin().unwrap();
    ta.lock(1, Duration::ZERO).unwrap();
    // ana now sends nothing, as a client frozen by SIGSTOP.
    let bo = server.session("bo");
    let bo_id = bo.id();
    let tb = bo.open_table("items").unwrap();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let r = tb.lock(1, Duration::from_secs(20));
        (r.map_err(|e| e.to_string()), start.elapsed(), bo, tb)
    });
    // The monitor shows who waits on whom.
    let admin = server.session("admin");
    let ana_id = ana.id();
    let mut seen = false;
    eventually(Duration::from_secs(5), || {
        let list = admin.list_sessions().unwrap();
        seen |= list.iter().any(|s| {
            s.id == bo_id
                && s.waiting_for.as_deref() == Some("record 1 of table items")
                && s.blocked_by == vec![ana_id]
        });
        seen || list.iter().all(|s| s.id != ana_id)
    });
    let (r, waited, _bo, _tb) = waiter.join().unwrap();
    r.unwrap();
    assert!(seen, "the waits-for was shown");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    let e = ana.ping().unwrap_err();
    assert!(e.to_string().contains("waited for"), "{e}");
    // Without waiters, an idle lock holder is left alone.
    let cy = server.session("cy");
    cy.lock_name("report").unwrap();
    std::thread::sleep(Duration::from_millis(2200));
    cy.ping().unwrap();
}

#[test]
fn smaller_holes_are_closed() {
    // --unix never deletes a file that is not a socket.
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, b"keep me").unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["serve", "--root"])
        .arg(&root)
        .arg("--unix")
        .arg(&precious)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");

    let server = Server::start(&[]);
    let ana = server.session("ana");
    items(&ana);
    // A lock on a record that does not exist, remote and embedded.
    let t = ana.open_table("items").unwrap();
    assert_eq!(
        t.lock(99, Duration::ZERO).unwrap_err().kind(),
        ErrorKind::NoSuchRecord
    );
    let local_dir = tempfile::tempdir().unwrap();
    let local = Connection::connect(&format!("file:{}", local_dir.path().display()))
        .unwrap()
        .session()
        .unwrap();
    items(&local);
    let lt = local.open_table("items").unwrap();
    assert_eq!(
        lt.lock(99, Duration::ZERO).unwrap_err().kind(),
        ErrorKind::NoSuchRecord
    );
    // Checkpoints need an admin.
    assert_eq!(
        ana.checkpoint().unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    server.session("admin").checkpoint().unwrap();
    // Named locks: bounded in length and number per session.
    assert_eq!(
        ana.lock_name(&"n".repeat(300)).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    for i in 0..1024 {
        ana.lock_name(&format!("job-{i}")).unwrap();
    }
    let e = ana.lock_name("one-more").unwrap_err();
    assert!(e.to_string().contains("1024 named locks"), "{e}");
    assert!(ana.unlock_name("job-0").unwrap());
    ana.lock_name("one-more").unwrap();
    // The table list shows only what the user may read.
    let mut perms = ana.permissions("items").unwrap();
    perms.other_rights = raiz_client::Rights::NONE;
    ana.set_permissions("items", perms).unwrap();
    let cy = server.session("cy");
    assert!(cy.list_tables().unwrap().is_empty());
    assert_eq!(ana.list_tables().unwrap(), vec!["items"]);
    // cy's temporary "items" is cy's own: every right, whatever the real
    // table of that name allows.
    let schema = Schema::new(vec![Field::new("CODE", FieldType::Char(8))]);
    cy.create_table(
        "items",
        &schema,
        TableOptions::default().durability(Durability::Temporary),
    )
    .unwrap();
    let mut tc = cy.open_table("items").unwrap();
    tc.append(&[Value::Char("T".into())]).unwrap();
    tc.create_index(&raiz_engine::index::IndexDef::new(
        "code",
        vec![raiz_engine::index::Segment::field("CODE")],
    ))
    .unwrap();
    assert_eq!(tc.record_count().unwrap(), 1);
    // … and gives no right on the real one.
    assert_eq!(
        cy.drop_table("items").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
}

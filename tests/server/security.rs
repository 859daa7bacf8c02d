//! Authentication, TLS, the Unix socket, table permissions and names that try
//! to leave the rootpath.

use std::time::Instant;

use raiz_client::{ConnectOptions, Connection, ConnectionString, ErrorKind, Rights};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};

use crate::harness::{Server, PASSWORD};

/// Connects with `opts` and makes one round trip.
fn ping_with(cs: &ConnectionString, opts: ConnectOptions) {
    Connection::open_with(cs, opts)
        .and_then(|c| c.session())
        .and_then(|s| s.ping())
        .unwrap_or_else(|e| panic!("{cs:?}: {e}"));
}

fn schema() -> Schema {
    Schema::new(vec![Field::new("CODE", FieldType::Char(8))])
}

#[test]
fn authentication_succeeds_and_fails_clearly() {
    let server = Server::start(&[]);
    server.session("ana").ping().unwrap();
    for url in [
        format!("raiz://ana:wrong@{}", server.addr),
        format!("raiz://nobody:{PASSWORD}@{}", server.addr),
        format!("raiz://ana@{}", server.addr),
    ] {
        let start = Instant::now();
        let e = Connection::connect(&url)
            .and_then(|c| c.session())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{url}: {e}");
        assert!(e.to_string().contains("authentication failed"), "{e}");
        assert!(
            start.elapsed().as_millis() >= 500,
            "failures are slowed down"
        );
    }
    assert!(server.log().contains("authentication failed"));
    // The password can come from the options instead of the string.
    let cs: ConnectionString = format!("raiz://bo@{}", server.addr).parse().unwrap();
    ping_with(
        &cs,
        ConnectOptions {
            password: Some(PASSWORD.into()),
            ..ConnectOptions::default()
        },
    );
    // The Unix socket serves the same API.
    let unix = format!("raiz+unix://ana:{PASSWORD}@{}", server.socket().display());
    let s = Connection::connect(&unix).unwrap().session().unwrap();
    s.create_table("viaunix", &schema(), TableOptions::default())
        .unwrap();
    assert_eq!(server.session("bo").list_tables().unwrap(), vec!["viaunix"]);
}

#[test]
fn tls_connections_work_and_need_the_right_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = dir.path().join("server.pem");
    let key_pem = dir.path().join("server.key");
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.key_pair.serialize_pem()).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert_pem.to_str().unwrap(),
        "--tls-key",
        key_pem.to_str().unwrap(),
    ]);
    let port = server.addr.rsplit_once(':').unwrap().1;
    let url = format!(
        "raizs://ana:{PASSWORD}@localhost:{port}?ca={}",
        cert_pem.display()
    );
    let s = Connection::connect(&url).unwrap().session().unwrap();
    s.create_table("secret", &schema(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table("secret").unwrap();
    t.append(&[Value::Char("X".into())]).unwrap();
    assert_eq!(
        t.read(1).unwrap().get("CODE"),
        Some(&Value::Char("X       ".into()))
    );
    // A CA that did not sign the server's certificate is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, other.cert.pem()).unwrap();
    let bad = format!(
        "raizs://ana:{PASSWORD}@localhost:{port}?ca={}",
        other_pem.display()
    );
    let e = Connection::connect(&bad)
        .and_then(|c| c.session())
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Closed), "{e}");
    // Loopback may still connect without TLS.
    server.session("bo").ping().unwrap();
    // A server without a certificate says so to a TLS client.
    let plain = Server::start(&[]);
    let port = plain.addr.rsplit_once(':').unwrap().1;
    let e = Connection::connect(&format!(
        "raizs://ana:{PASSWORD}@localhost:{port}?ca={}",
        cert_pem.display()
    ))
    .and_then(|c| c.session())
    .unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
}

#[test]
fn table_permissions_are_checked_on_every_request() {
    let server = Server::start(&[]);
    let ana = server.session("ana"); // owner, group erp
    let bo = server.session("bo"); // group erp
    let cy = server.session("cy"); // others
    let admin = server.session("admin");
    ana.create_table("ledger", &schema(), TableOptions::default())
        .unwrap();
    let p = ana.permissions("ledger").unwrap();
    assert_eq!(p.to_string(), "ana:erp rwdx:rwd-:r---");
    let mut ta = ana.open_table("ledger").unwrap();
    ta.append(&[Value::Char("A".into())]).unwrap();
    ta.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]))
        .unwrap();
    // Group: read, write, delete; not define.
    let mut tb = bo.open_table("ledger").unwrap();
    tb.append(&[Value::Char("B".into())]).unwrap();
    tb.delete(2).unwrap();
    let e = tb.drop_index("code").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        e.to_string().contains("bo may not define table ledger"),
        "{e}"
    );
    assert_eq!(
        bo.drop_table("ledger").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    // Others: read only.
    let mut tc = cy.open_table("ledger").unwrap();
    assert_eq!(tc.read(1).unwrap().recno(), 1);
    assert!(tc.first().unwrap());
    for e in [
        tc.append(&[Value::Char("C".into())]).unwrap_err(),
        tc.update(1, &[Value::Char("C".into())]).unwrap_err(),
        tc.delete(1).unwrap_err(),
        tc.lock(1, std::time::Duration::ZERO).unwrap_err(),
        tc.pack().unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }
    // Only the owner or an admin changes permissions.
    let mut closed = p.clone();
    closed.other_rights = Rights::NONE;
    assert_eq!(
        cy.set_permissions("ledger", closed.clone())
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    ana.set_permissions("ledger", closed).unwrap();
    assert_eq!(tc.read(1).unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        cy.open_table("ledger").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    // Admins bypass; the file survives a restart of the permission list.
    let mut tadm = admin.open_table("ledger").unwrap();
    tadm.drop_index("code").unwrap();
    assert!(std::fs::read_to_string(server.root().join("raiz.acl"))
        .unwrap()
        .contains("rwdx:rwd-:----"));
    // Dropping the table drops its entry.
    drop((ta, tb, tc, tadm));
    ana.drop_table("ledger").unwrap();
    assert_eq!(ana.permissions("ledger").unwrap().owner, "");
}

#[test]
fn table_names_cannot_leave_the_rootpath() {
    let server = Server::start(&[]);
    let s = server.session("admin");
    let outside = server.dir.path().join("evil.rzd");
    for name in [
        "../evil",
        "..",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "x\0y",
        "",
        &"n".repeat(300),
    ] {
        let e = s
            .create_table(name, &schema(), TableOptions::default())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{name:?}: {e}");
        assert_eq!(
            s.open_table(name).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            s.drop_table(name).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            s.table_exists(name).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            s.permissions(name).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
    }
    assert!(!outside.exists());
    assert!(s.list_tables().unwrap().is_empty());
    let entries: Vec<_> = std::fs::read_dir(server.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for e in &entries {
        assert!(
            ["root", "raiz.sock", "server.log"].contains(&e.as_str()),
            "unexpected file {e} beside the rootpath"
        );
    }
}

/// This machine's address on its default route, if it has one that is not
/// loopback (no packet is sent: a UDP connect only picks the source address).
fn external_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.254:9")
        .or_else(|_| s.connect("10.255.255.254:9"))
        .ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn other_machines_must_use_tls_once_the_server_has_a_certificate() {
    let Some(ip) = external_address() else {
        eprintln!("no non-loopback address on this machine: nothing to connect from");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = dir.path().join("server.pem");
    let key_pem = dir.path().join("server.key");
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.key_pair.serialize_pem()).unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root_dir.path().join("root")).unwrap();
    crate::harness::make_users(&root_dir.path().join("root"));
    let server = Server::start_listening(
        root_dir,
        "0.0.0.0:0",
        &[
            "--tls-cert",
            cert_pem.to_str().unwrap(),
            "--tls-key",
            key_pem.to_str().unwrap(),
        ],
    );
    let port = server.addr.rsplit_once(':').unwrap().1.to_owned();
    // In the clear from a non-loopback address: refused with a clear reason.
    let e = Connection::connect(&format!("raiz://ana:{PASSWORD}@{ip}:{port}"))
        .and_then(|c| c.session())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("requires TLS"), "{e}");
    // With TLS from the same address: served.
    let cs: ConnectionString = format!("raizs://ana:{PASSWORD}@{ip}:{port}")
        .parse()
        .unwrap();
    ping_with(
        &cs,
        ConnectOptions {
            ca_file: Some(cert_pem.clone()),
            server_name: Some("localhost".into()),
            ..ConnectOptions::default()
        },
    );
    // Loopback may still skip TLS.
    Connection::connect(&format!("raiz://ana:{PASSWORD}@127.0.0.1:{port}"))
        .unwrap()
        .session()
        .unwrap()
        .ping()
        .unwrap();
}

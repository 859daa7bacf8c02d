//! Bad peers on raw sockets: garbage, wrong versions, truncated, oversized and
//! undecodable frames, unknown requests, wrong types, huge keys and a
//! slowloris. Each gets an error or a closed connection; the server keeps
//! serving everyone else and the data stays intact.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use raiz_client::proto::{self, Envelope, Reply, Request, Response, Status, TableOp};
use raiz_client::ErrorKind;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};

use crate::harness::{Server, PASSWORD};

pub fn raw(server: &Server) -> TcpStream {
    let s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

pub fn prologue(s: &mut TcpStream, version: u16) -> (u16, u16) {
    s.write_all(&proto::prologue(version, 0)).unwrap();
    let mut b = [0u8; 8];
    s.read_exact(&mut b).unwrap();
    proto::parse_prologue(&b).unwrap()
}

pub fn send(s: &mut TcpStream, id: u64, req: &Request) {
    let payload = proto::encode(&Envelope { id, body: req });
    proto::write_frame(s, &payload).unwrap();
}

pub fn recv(s: &mut TcpStream) -> Response {
    proto::decode(&proto::read_frame(s, proto::DEFAULT_MAX_FRAME).unwrap()).unwrap()
}

/// A raw, authenticated connection.
pub fn login(server: &Server) -> TcpStream {
    let mut s = raw(server);
    assert_eq!(prologue(&mut s, proto::VERSION).1, Status::Ok as u16);
    send(
        &mut s,
        1,
        &Request::Hello {
            user: "ana".into(),
            password: PASSWORD.into(),
            client: "raw".into(),
        },
    );
    assert!(matches!(recv(&mut s).body, Ok(Reply::Welcome { .. })));
    s
}

/// True when the server closed the connection (EOF or reset).
pub fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

pub fn table(server: &Server) -> raiz_client::Session {
    let s = server.session("ana");
    let schema = Schema::new(vec![
        Field::new("CODE", FieldType::Char(10)),
        Field::new("N", FieldType::Int64),
    ]);
    s.create_table("t", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("t").unwrap();
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    for i in 0..50 {
        t.append(&[Value::Char(format!("K{i:03}")), Value::Int64(i)])
            .unwrap();
    }
    s
}

pub fn intact(server: &Server) {
    let s = server.session("bo");
    let t = s.open_table("t").unwrap();
    assert_eq!(t.record_count().unwrap(), 50);
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn garbage_and_wrong_versions_are_refused_clearly() {
    let server = Server::start(&[]);
    table(&server);
    // An HTTP client.
    let mut s = raw(&server);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut b = [0u8; 8];
    s.read_exact(&mut b).unwrap();
    assert_eq!(proto::parse_prologue(&b).unwrap().1, Status::NotRaiz as u16);
    assert!(closed(&mut s));
    // A future client version.
    let mut s = raw(&server);
    assert_eq!(
        prologue(&mut s, proto::VERSION + 1),
        (proto::VERSION, Status::VersionMismatch as u16)
    );
    assert!(closed(&mut s));
    // A request before authenticating.
    let mut s = raw(&server);
    prologue(&mut s, proto::VERSION);
    send(&mut s, 7, &Request::ListTables);
    let r = recv(&mut s);
    assert_eq!(r.body.unwrap_err().kind, ErrorKind::BadRequest);
    assert!(closed(&mut s));
    // Random bytes after the prologue.
    let mut s = raw(&server);
    prologue(&mut s, proto::VERSION);
    s.write_all(&[9, 0, 0, 0, 0xff, 0xfe, 0xfd, 1, 2, 3, 4, 5, 6])
        .unwrap();
    assert!(closed(&mut s));
    intact(&server);
}

#[test]
fn bad_frames_get_errors_and_the_server_keeps_serving() {
    let server = Server::start(&["--frame-secs", "1"]);
    let ana = table(&server);
    // An unknown request (enum tag 200) under a valid id: BadRequest, and the
    // connection goes on.
    let mut s = login(&server);
    // id 5 (a one-byte varint), then request tag 200 (no such request).
    let payload = vec![5u8, 200];
    proto::write_frame(&mut s, &payload).unwrap();
    let r = recv(&mut s);
    assert_eq!(r.id, 5);
    assert_eq!(r.body.unwrap_err().kind, ErrorKind::BadRequest);
    // A Char value that is not UTF-8: BadRequest.
    let good = proto::encode(&Envelope {
        id: 6u64,
        body: Request::TableExists("abc".into()),
    });
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] = 0xff;
    proto::write_frame(&mut s, &bad).unwrap();
    let r = recv(&mut s);
    assert_eq!((r.id, r.body.unwrap_err().kind), (6, ErrorKind::BadRequest));
    send(&mut s, 8, &Request::Ping);
    assert_eq!(recv(&mut s).body, Ok(Reply::Done));
    // A handle never opened.
    send(
        &mut s,
        9,
        &Request::Table {
            handle: 77,
            sync: None,
            op: TableOp::Read(1),
        },
    );
    assert_eq!(recv(&mut s).body.unwrap_err().kind, ErrorKind::BadRequest);
    // A frame over the limit: an error, then the connection closes.
    s.write_all(&(u32::MAX - 1).to_le_bytes()).unwrap();
    let r = recv(&mut s);
    assert_eq!(r.id, 0);
    assert!(r.body.unwrap_err().message.contains("exceeds the limit"));
    assert!(closed(&mut s));
    // A truncated frame, then the peer goes away.
    let mut s = login(&server);
    s.write_all(&100u32.to_le_bytes()).unwrap();
    s.write_all(&[1, 2, 3]).unwrap();
    drop(s);
    // A slowloris: starts a frame and trickles.
    let mut slow = login(&server);
    let start = Instant::now();
    slow.write_all(&[40, 0]).unwrap();
    // Everyone else is served meanwhile.
    let t = ana.open_table("t").unwrap();
    assert_eq!(t.read(3).unwrap().recno(), 3);
    std::thread::sleep(Duration::from_millis(400));
    let _ = slow.write_all(&[0]);
    assert!(closed(&mut slow));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(server.log().contains("frame not completed in time"));
    intact(&server);
}

#[test]
fn wrong_types_and_huge_values_are_typed_errors() {
    let server = Server::start(&[]);
    let s = table(&server);
    let mut t = s.open_table("t").unwrap();
    t.set_order(Some("code")).unwrap();
    let cases = [
        t.append(&[Value::Int64(1), Value::Int64(1)]).unwrap_err(),
        t.append(&[Value::Char("x".repeat(10 << 20)), Value::Int64(1)])
            .unwrap_err(),
        t.append(&[Value::Char("x".into())]).unwrap_err(),
        t.update(1, &[Value::Char("K001".into()), Value::Float64(1.5)])
            .unwrap_err(),
        t.seek(&[Value::Char("k".repeat(5000))]).unwrap_err(),
        t.seek(&[Value::Int64(5)]).unwrap_err(),
        t.read(10_000).unwrap_err(),
        t.read_memo(1, "NOPE").unwrap_err(),
        t.set_order(Some("nope")).unwrap_err(),
        t.append(&[Value::Char("K001".into()), Value::Int64(1)])
            .unwrap_err(),
    ];
    let kinds: Vec<_> = cases.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            ErrorKind::InvalidValue,
            ErrorKind::InvalidValue,
            ErrorKind::FieldCount,
            ErrorKind::InvalidValue,
            ErrorKind::InvalidValue,
            ErrorKind::InvalidValue,
            ErrorKind::NoSuchRecord,
            ErrorKind::NoSuchField,
            ErrorKind::NoSuchIndex,
            ErrorKind::DuplicateKey,
        ],
        "{cases:?}"
    );
    assert!(cases[9].to_string().contains("K001"), "{}", cases[9]);
    // The session still works and nothing changed.
    assert!(t.seek(&[Value::Char("K010".into())]).unwrap());
    intact(&server);
}

/// A peer on the port that is not a raiz server, or speaks another version:
/// the client says so instead of misreading bytes.
#[test]
fn clients_refuse_foreign_and_incompatible_servers() {
    let fake = |answer: Vec<u8>| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 8];
            let _ = s.read_exact(&mut b);
            let _ = s.write_all(&answer);
        });
        format!("raiz://ana:x@{addr}")
    };
    let e = raiz_client::Connection::connect(&fake(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()))
        .and_then(|c| c.session())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("not a raiz server"), "{e}");
    let e = raiz_client::Connection::connect(&fake(
        proto::prologue(9, Status::VersionMismatch as u16).to_vec(),
    ))
    .and_then(|c| c.session())
    .unwrap_err();
    assert!(e.to_string().contains("protocol version 9"), "{e}");
    // Nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = raiz_client::Connection::connect(&format!("raiz://ana:x@127.0.0.1:{port}"))
        .and_then(|c| c.session())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

#[test]
fn requests_naming_what_does_not_exist_are_typed_errors() {
    let server = Server::start(&[]);
    table(&server);
    let mut s = login(&server);
    let cases: [(Request, ErrorKind); 4] = [
        (
            Request::RangeNext {
                iter: 99,
                max: 5,
                resume: None,
            },
            ErrorKind::BadRequest,
        ),
        (Request::RollbackTo(7), ErrorKind::Transaction),
        (
            Request::Table {
                handle: 1,
                sync: None,
                op: TableOp::Info,
            },
            ErrorKind::BadRequest,
        ),
        (Request::EndSession(1), ErrorKind::PermissionDenied),
    ];
    for (i, (req, kind)) in cases.into_iter().enumerate() {
        let id = 10 + i as u64;
        send(&mut s, id, &req);
        let r = recv(&mut s);
        assert_eq!(r.id, id);
        assert_eq!(r.body.unwrap_err().kind, kind, "{req:?}");
    }
    // Permissions: names that are not user or group names, a table that does
    // not exist, and a table someone else owns.
    let admin = server.session("admin");
    let mut p = admin.permissions("t").unwrap();
    let good = p.clone();
    p.owner = "../root".into();
    assert_eq!(
        admin.set_permissions("t", p).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    assert_eq!(
        admin
            .set_permissions("nosuch", good.clone())
            .unwrap_err()
            .kind(),
        ErrorKind::TableNotFound
    );
    assert_eq!(
        server
            .session("bo")
            .set_permissions("t", good.clone())
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(admin.permissions("t").unwrap(), good);
    intact(&server);
}

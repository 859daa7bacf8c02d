//! SQL over the PostgreSQL protocol against a real `raiz serve`: psql and a
//! Rust PostgreSQL driver log in with raiz's users, query the live tables
//! (prepared statements included), see only what they may read, cannot
//! write, can cancel, and show up in the session list.

use std::process::Command;
use std::time::{Duration, Instant};

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Decimal, Field, FieldType, Schema, TableOptions, Value};

use crate::harness::{make_users, Server, PASSWORD};

/// A rootpath with `customers` (30) and `orders` (300), made embedded.
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    make_users(&root);
    let db = Database::open(&root).unwrap();
    let s = db.session();
    db.create_table(
        "customers",
        &Schema::new(vec![
            Field::new("CODE", FieldType::Char(6)),
            Field::new("NAME", FieldType::Char(20)),
            Field::new("SINCE", FieldType::Date),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    db.create_table(
        "orders",
        &Schema::new(vec![
            Field::new("NUM", FieldType::Int64),
            Field::new("CUST", FieldType::Char(6)),
            Field::new("TOTAL", FieldType::Numeric { len: 12, dec: 2 }),
            Field::new("PAID", FieldType::Logical),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    let mut c = s.open_table("customers").unwrap();
    c.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    for i in 0..30 {
        c.append(&[
            Value::from(format!("C{i:03}").as_str()),
            Value::from(format!("Customer {i}").as_str()),
            Value::Date(raiz_engine::Date::ymd(2020, 1 + (i % 12) as u8, 1)),
        ])
        .unwrap();
    }
    let mut o = s.open_table("orders").unwrap();
    o.create_index(&IndexDef::new("num", vec![Segment::field("NUM")]).unique())
        .unwrap();
    for n in 0..300i64 {
        o.append(&[
            Value::Int64(n),
            Value::from(format!("C{:03}", n % 30).as_str()),
            Value::Numeric(Decimal::new(i128::from(n) * 125, 2)),
            Value::Logical(n % 2 == 0),
        ])
        .unwrap();
    }
    drop((c, o, s));
    drop(db);
    dir
}

fn start() -> Server {
    Server::start_in(prepared(), &["--sql-listen", "127.0.0.1:0"])
}

fn pg(server: &Server, user: &str, password: &str) -> Result<postgres::Client, postgres::Error> {
    let (host, port) = server.sql.as_deref().unwrap().rsplit_once(':').unwrap();
    postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user(user)
        .password(password)
        .dbname("raiz")
        .connect(postgres::NoTls)
}

fn psql(server: &Server, user: &str, password: &str, sql: &str) -> std::process::Output {
    let (host, port) = server.sql.as_deref().unwrap().rsplit_once(':').unwrap();
    Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            "raiz",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (postgresql-client) must be installed: .ci/run installs it")
}

#[test]
fn psql_logs_in_and_runs_reports() {
    let server = start();
    let out = psql(
        &server,
        "ana",
        PASSWORD,
        "SELECT c.code, count(*), sum(o.total) FROM customers c JOIN orders o ON o.cust = c.code \
         WHERE c.code < 'C003' GROUP BY c.code ORDER BY c.code",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Orders n ≡ k (mod 30): n = k, k+30, …, k+270; totals 1.25 × n.
    let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    for (k, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split('|').collect();
        let sum: f64 = (0..10).map(|j| 1.25 * (k + 30 * j) as f64).sum();
        assert_eq!(f[0], format!("C{k:03}"));
        assert_eq!(f[1], "10");
        assert_eq!(f[2].parse::<f64>().unwrap(), sum, "{line}");
    }
    // Catalog: the tables listed.
    let out = psql(
        &server,
        "ana",
        PASSWORD,
        "SELECT table_name FROM information_schema.tables ORDER BY 1",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "customers\norders"
    );
    // A wrong password and a write are refused, with PostgreSQL's messages.
    let out = psql(&server, "ana", "wrong", "SELECT 1");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));
    let out = psql(&server, "ana", PASSWORD, "DELETE FROM orders");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{out:?}"
    );
    let out = psql(&server, "ana", PASSWORD, "SELECT count(*) FROM orders");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300");
}

#[test]
fn a_driver_uses_prepared_statements_and_typed_results() {
    let server = start();
    let mut c = pg(&server, "bo", PASSWORD).unwrap();
    let by_customer = c
        .prepare_typed(
            "SELECT num, total, paid FROM orders WHERE cust = $1 AND num >= $2 ORDER BY num",
            &[postgres::types::Type::TEXT, postgres::types::Type::INT8],
        )
        .unwrap();
    for k in [0i64, 7, 29] {
        let rows = c
            .query(&by_customer, &[&format!("C{k:03}"), &100i64])
            .unwrap();
        let nums: Vec<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
        let want: Vec<i64> = (0..10).map(|j| k + 30 * j).filter(|&n| n >= 100).collect();
        assert_eq!(nums, want);
        for r in &rows {
            let n: i64 = r.get(0);
            assert_eq!(r.get::<_, f64>(1), 1.25 * n as f64);
            assert_eq!(r.get::<_, bool>(2), n % 2 == 0);
        }
    }
    // Text columns come without the blank padding; dates as ISO text.
    let row = c
        .query_one(
            "SELECT code, name, since FROM customers WHERE code = $1",
            &[&"C005"],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "Customer 5");
    assert_eq!(row.get::<_, String>(2), "2020-06-01");
    // A parameterless statement's computed columns are typed from its values.
    let row = c
        .query_one("SELECT count(*), max(total) FROM orders", &[])
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 300);
    assert_eq!(row.get::<_, f64>(1), 373.75);
    // Errors carry SQLSTATEs.
    let e = c.execute("UPDATE orders SET paid = 1", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
    let e = c.query("SELECT * FROM nowhere", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e}");
    let e = c.query("SELEKT 1", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42601"), "{e}");
    // Session statements drivers send are accepted.
    c.batch_execute("SET extra_float_digits = 3").unwrap();
    // The connection is still good after every error.
    assert_eq!(
        c.query_one("SELECT 41 + 1", &[]).unwrap().get::<_, i64>(0),
        42
    );
}

#[test]
fn permissions_sessions_and_cancel() {
    let server = start();
    // Only ana's group may read `orders` now.
    let admin = server.session("admin");
    let mut p = admin.permissions("orders").unwrap();
    p.owner = "ana".into();
    p.group = "erp".into();
    p.owner_rights = raiz_client::Rights::parse("rwdx").unwrap();
    p.group_rights = raiz_client::Rights::parse("r---").unwrap();
    p.other_rights = raiz_client::Rights::parse("----").unwrap();
    admin.set_permissions("orders", p).unwrap();
    let mut cy = pg(&server, "cy", PASSWORD).unwrap();
    let e = cy.query("SELECT count(*) FROM orders", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e}");
    let listed = cy
        .query(
            "SELECT table_name FROM information_schema.tables ORDER BY 1",
            &[],
        )
        .unwrap();
    let names: Vec<String> = listed.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["customers".to_owned()]);
    let mut bo = pg(&server, "bo", PASSWORD).unwrap();
    assert_eq!(
        bo.query_one("SELECT count(*) FROM orders", &[])
            .unwrap()
            .get::<_, i64>(0),
        300
    );
    // A revoked right holds from the next statement, on an open connection.
    let mut p = admin.permissions("orders").unwrap();
    p.group_rights = raiz_client::Rights::parse("----").unwrap();
    admin.set_permissions("orders", p).unwrap();
    assert!(bo.query("SELECT count(*) FROM orders", &[]).is_err());

    // Each SQL connection is a session in the list.
    let sessions = admin.list_sessions().unwrap();
    assert!(
        sessions.iter().any(|s| s.user == "cy" && s.client == "sql"),
        "{sessions:?}"
    );
    assert!(
        sessions.iter().any(|s| s.user == "bo" && s.client == "sql"),
        "{sessions:?}"
    );

    // A statement that would run for minutes is cancelled.
    let token = cy.cancel_token();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        token.cancel_query(postgres::NoTls).unwrap();
    });
    let started = Instant::now();
    let e = cy
        .query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000)
             SELECT count(*) FROM n",
            &[],
        )
        .unwrap_err();
    canceller.join().unwrap();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(cy.query_one("SELECT 1", &[]).unwrap().get::<_, i64>(0), 1);

    // An idle connection lets its tables go: an ISAM client can drop one.
    std::thread::sleep(Duration::from_secs(3));
    let ana = server.session("ana");
    ana.drop_table("orders").unwrap();
    let e = bo.query("SELECT count(*) FROM orders", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e}");

    // Ending a session in the monitor closes its connection.
    let id = admin
        .list_sessions()
        .unwrap()
        .into_iter()
        .find(|s| s.user == "cy" && s.client == "sql")
        .unwrap()
        .id;
    admin.end_session(id).unwrap();
    assert!(cy.query("SELECT 1", &[]).is_err());
}

#[test]
fn raiz_sql_reads_through_the_sql_listener() {
    let server = start();
    let url = format!("postgresql://ana@{}", server.sql.as_deref().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["sql", "--connect", &url, "--json", "-c"])
        .arg("SELECT cust, count(*) AS n, sum(total) AS t FROM orders WHERE num < 60 GROUP BY cust ORDER BY cust LIMIT 2")
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"cust\":\"C000\",\"n\":2,\"t\":37.5}\n{\"cust\":\"C001\",\"n\":2,\"t\":40.0}\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["sql", "--connect", &url, "-c", "SELECT 1"])
        .env("PGPASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn malformed_and_flooding_clients_leave_the_sql_listener_serving() {
    use std::io::{Read, Write};
    let server = Server::start_in(prepared(), &["--sql-listen", "127.0.0.1:0"]);
    let addr = server.sql.clone().unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0], // a 2 GiB startup packet
        vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], // SSL request, then nothing
        vec![0, 0, 0, 3],                         // a length below its own size
        vec![
            0, 0, 0, 16, 0, 3, 0, 0, b'u', b's', b'e', b'r', 0, 0xff, 0xfe, 0,
        ], // bad UTF-8 user
        vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2], // cancel with a wrong key
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..40 {
        let n = (x % 300) as usize + 1;
        junk.push(
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        );
    }
    for bytes in &junk {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(bytes);
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    // Connections that never log in: past the per-address limit the
    // listener refuses more, and it still serves a real client.
    let idle: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = pg(&server, "ana", PASSWORD).unwrap();
    assert_eq!(
        c.query_one("SELECT count(*) FROM customers", &[])
            .unwrap()
            .get::<_, i64>(0),
        30
    );
    // A password guessed again and again is throttled, not crashed on.
    for _ in 0..3 {
        assert!(pg(&server, "ana", "guess").is_err());
    }
    assert!(
        server.log().contains("at max_connections") || server.log().contains("logging in"),
        "the flood was not refused"
    );
}

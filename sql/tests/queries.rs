//! Reports over ERP-shaped raiz tables give, row for row, what SQLite gives
//! over the same data in its own tables; keyed queries read a handful of
//! records; SQL cannot write, attach files, or see tables it may not read.

mod common;

use std::sync::Arc;

use raiz_engine::Database;
use raiz_sql::{Error, Options, SqlSession, SqlValue};

use common::*;

/// The report set: joins, aggregates, grouping, ordering, ranges on every
/// type, memos, empty dates, parameters.
const REPORTS: &[&str] = &[
    "SELECT c.code, c.name, count(*), sum(o.total) FROM customers c
       JOIN orders o ON o.cust = c.code GROUP BY c.code ORDER BY c.code",
    "SELECT o.cust, strftime('%Y-%m', o.issued) AS month, count(*), round(sum(i.qty * i.price), 2)
       FROM orders o JOIN items i ON i.ordnum = o.num
       GROUP BY o.cust, month ORDER BY o.cust, month",
    "SELECT product, round(sum(qty * price), 2) AS value, count(*) FROM items
       GROUP BY product ORDER BY value DESC, product LIMIT 10",
    "SELECT city, count(*), avg(credit), min(since), max(since) FROM customers
       GROUP BY city ORDER BY city",
    "SELECT num, total FROM orders WHERE issued BETWEEN '2024-03-01' AND '2024-06-30' ORDER BY num",
    "SELECT code, name FROM customers WHERE name >= 'M' AND name < 'P' ORDER BY code",
    "SELECT code FROM customers WHERE city = 'RIO' AND name > 'K' ORDER BY code",
    "SELECT num FROM orders WHERE total > 2500.5 AND total <= 2600 ORDER BY num",
    "SELECT ordnum, line, product, qty, weight FROM items WHERE ordnum BETWEEN 100 AND 130 ORDER BY 1, 2",
    "SELECT ordnum, line FROM items WHERE ordnum = 77 AND line >= 2 ORDER BY 1, 2",
    "SELECT num, note FROM orders WHERE note LIKE '%urgent%' ORDER BY num",
    "SELECT num, typeof(note), length(note) FROM orders WHERE num < 40 ORDER BY num",
    "SELECT count(*) FROM customers WHERE since IS NULL",
    "SELECT count(*), sum(active) FROM customers",
    "SELECT alias, field, title, kind, size FROM sx3 WHERE alias = 'SC5' ORDER BY field",
    "SELECT s.alias, count(*) FROM sx3 s WHERE s.kind IN ('C', 'N') GROUP BY s.alias ORDER BY 1",
    "SELECT c.code, o.num FROM customers c LEFT JOIN orders o ON o.cust = c.code AND o.total > 4900
       ORDER BY c.code, o.num",
    "SELECT code FROM customers WHERE code IN ('C00003', 'C00010', 'C99999') ORDER BY code",
    "SELECT code, recno FROM customers WHERE recno = 5 OR recno = 26 ORDER BY recno",
    "SELECT product FROM items WHERE product LIKE 'P00%' GROUP BY product ORDER BY product",
    "SELECT num FROM orders WHERE cust = 'C00002' ORDER BY issued, num",
    "SELECT code FROM customers WHERE credit = 100 OR code < 'C00002' ORDER BY code",
];

fn open(db: &Database) -> SqlSession {
    SqlSession::open(db, raiz_sql::everything(), Options::default()).unwrap()
}

#[test]
fn reports_match_sqlite_row_for_row() {
    let seed = seed();
    let data = generate(seed, 300);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    load_raiz(&db, &data);
    let native = load_sqlite(&data);
    let mut sql = open(&db);
    for q in REPORTS {
        let got = sql.query(q, &[]).unwrap();
        let want = sqlite_rows(&native, q, &[]);
        assert!(got.consistent, "{q}");
        assert_eq!(got.rows.len(), want.len(), "rows of {q}");
        assert_eq!(got.rows, want, "{q}");
    }
    // Parameters, as prepared statements pass them.
    let q = "SELECT o.num, i.line, i.product FROM orders o JOIN items i ON i.ordnum = o.num
             WHERE o.cust = ?1 AND o.issued >= ?2 ORDER BY 1, 2";
    for c in 0..20 {
        let p = [
            SqlValue::Text(format!("C{c:05}")),
            SqlValue::Text("2024-07-01".into()),
        ];
        assert_eq!(
            sql.query(q, &p).unwrap().rows,
            sqlite_rows(&native, q, &p),
            "{p:?}"
        );
    }
    // Deleted records are hidden unless the query asks for them.
    let all = sql
        .query(
            "SELECT count(*) FROM orders WHERE deleted OR NOT deleted",
            &[],
        )
        .unwrap();
    let dead = sql
        .query("SELECT count(*) FROM orders WHERE deleted", &[])
        .unwrap();
    let live = sql.query("SELECT count(*) FROM orders", &[]).unwrap();
    let n = data[1].1.len() as i64;
    assert_eq!(all.rows[0][0], SqlValue::Integer(n));
    assert_eq!(dead.rows[0][0], SqlValue::Integer(n / 13));
    assert_eq!(live.rows[0][0], SqlValue::Integer(n - n / 13));
}

#[test]
fn keyed_queries_read_a_handful_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let data = generate(7, 2_000);
    load_raiz(&db, &data);
    // A million items: one transaction, the bulk path.
    let session = db.session();
    let mut t = session.open_table("items").unwrap();
    session.begin().unwrap();
    for i in 0..1_000_000i64 {
        t.append(&[
            raiz_engine::Value::Int64(100_000 + i / 10),
            raiz_engine::Value::Int64(i % 10),
            raiz_engine::Value::from(format!("X{:07}", i % 100_000).as_str()),
            raiz_engine::Value::Numeric(raiz_engine::Decimal::new(1000, 3)),
            raiz_engine::Value::Numeric(raiz_engine::Decimal::new(250, 2)),
            raiz_engine::Value::Float64(1.0),
        ])
        .unwrap();
    }
    session.commit().unwrap();
    let mut sql = open(&db);
    let cases: &[(&str, usize, u64)] = &[
        ("SELECT * FROM items WHERE ordnum = 150000 AND line = 3", 1, 2),
        ("SELECT count(*) FROM items WHERE ordnum = 150000", 1, 12),
        ("SELECT * FROM items WHERE product = 'X0012345' ORDER BY ordnum", 10, 12),
        ("SELECT * FROM items WHERE ordnum BETWEEN 150000 AND 150002", 30, 32),
        ("SELECT * FROM items WHERE recno = 500000", 1, 1),
        (
            "SELECT o.num, c.name FROM orders o JOIN customers c ON c.code = o.cust WHERE o.num = 4321",
            1,
            4,
        ),
    ];
    for &(q, rows, max_read) in cases {
        let before = sql.records_read();
        let r = sql.query(q, &[]).unwrap();
        let read = sql.records_read() - before;
        assert_eq!(r.rows.len(), rows, "{q}");
        assert!(read <= max_read, "{q} read {read} records");
    }
    // And without a usable index, a scan reads them all.
    let before = sql.records_read();
    sql.query("SELECT count(*) FROM items WHERE weight = 2.0", &[])
        .unwrap();
    assert!(sql.records_read() - before > 1_000_000);
}

#[test]
fn sql_cannot_write_attach_or_see_what_it_may_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    load_raiz(&db, &generate(1, 20));
    let mut sql = open(&db);
    for q in [
        "DELETE FROM customers",
        "UPDATE orders SET total = 0",
        "INSERT INTO sx3(alias) VALUES ('X')",
        "CREATE TABLE t(a)",
        "DROP TABLE customers",
    ] {
        match sql.query(q, &[]) {
            Err(Error::ReadOnly(_)) | Err(Error::Sql(_)) => {}
            other => panic!("{q}: {other:?}"),
        }
    }
    let escape = dir.path().join("x.db");
    let attach = format!("ATTACH DATABASE '{}' AS x", escape.display());
    assert!(sql.query(&attach, &[]).is_err());
    assert!(!escape.exists(), "ATTACH created a file");
    assert!(matches!(
        sql.query("SELECT 1; SELECT 2", &[]),
        Err(Error::Sql(_))
    ));
    assert!(matches!(
        sql.query("SELECT * FROM _raiz_cluster", &[]),
        Err(Error::NoTable(_))
    ));
    assert!(matches!(
        sql.query("SELECT * FROM nothing_here", &[]),
        Err(Error::NoTable(_))
    ));
    // Data is intact.
    let r = sql
        .query(
            "SELECT count(*) FROM customers WHERE deleted OR NOT deleted",
            &[],
        )
        .unwrap();
    assert_eq!(r.rows[0][0], SqlValue::Integer(20));

    // A user who may read only `sx3` sees only it, also in the catalogs.
    let access: raiz_sql::Access = Arc::new(|t: &str| t == "sx3");
    let mut narrow = SqlSession::open(&db, access, Options::default()).unwrap();
    assert!(matches!(
        narrow.query("SELECT * FROM customers", &[]),
        Err(Error::NoTable(_))
    ));
    assert_eq!(
        narrow.query("SELECT count(*) FROM sx3", &[]).unwrap().rows[0][0],
        SqlValue::Integer(93)
    );
    let listed = narrow
        .query(
            "SELECT table_name FROM information_schema.tables ORDER BY 1",
            &[],
        )
        .unwrap();
    assert_eq!(listed.rows, vec![vec![SqlValue::Text("sx3".into())]]);
    let cols = narrow
        .query(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_name = 'sx3' ORDER BY ordinal_position",
            &[],
        )
        .unwrap();
    assert_eq!(
        cols.rows[0],
        vec![
            SqlValue::Text("alias".into()),
            SqlValue::Text("character varying".into())
        ]
    );
    assert_eq!(cols.rows.len(), 7);
}

#[test]
fn tables_created_dropped_and_redefined_are_followed() {
    use raiz_engine::{Field, FieldType, Schema, Value};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    load_raiz(&db, &generate(2, 10));
    let mut sql = open(&db);
    assert_eq!(
        sql.query("SELECT count(*) FROM sx3", &[]).unwrap().rows[0][0],
        SqlValue::Integer(93)
    );
    // The session keeps its tables open, as an ISAM session does, until it
    // lets them go.
    assert!(matches!(
        db.drop_table("sx3"),
        Err(raiz_engine::Error::TableInUse { .. })
    ));
    sql.release_tables();
    db.drop_table("sx3").unwrap();
    assert!(matches!(
        sql.query("SELECT count(*) FROM sx3", &[]),
        Err(Error::NoTable(_))
    ));
    let ints = Schema::new(vec![Field::new("X", FieldType::Int64)]);
    db.create_table("sx3", &ints, Default::default()).unwrap();
    db.session()
        .open_table("sx3")
        .unwrap()
        .append(&[Value::Int64(9)])
        .unwrap();
    let r = sql.query("SELECT x FROM sx3", &[]).unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Integer(9)]]);
    assert_eq!(r.columns[0].declared.as_deref(), Some("BIGINT"));
    // Redefined between two statements of a session that knew it.
    sql.release_tables();
    db.drop_table("sx3").unwrap();
    let texts = Schema::new(vec![Field::new("Y", FieldType::Char(3))]);
    db.create_table("sx3", &texts, Default::default()).unwrap();
    db.session()
        .open_table("sx3")
        .unwrap()
        .append(&[Value::from("abc")])
        .unwrap();
    let r = sql.query("SELECT * FROM sx3", &[]).unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Text("abc".into())]]);
    assert!(sql.query("SELECT x FROM sx3", &[]).is_err());
}

/// Random comparisons on every indexed column — values near stored ones,
/// of the column's type and of others, strings with blanks and control
/// characters — give exactly SQLite's rows over its own tables.
#[test]
fn random_ranges_through_indexes_match_sqlite() {
    use rand::{Rng, SeedableRng};
    let seed = seed();
    let data = generate(seed, 200);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    load_raiz(&db, &data);
    let native = load_sqlite(&data);
    let mut sql = open(&db);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let columns: &[(&str, &str, &str)] = &[
        ("customers", "code", "text"),
        ("customers", "city", "text"),
        ("customers", "name", "text"),
        ("orders", "num", "int"),
        ("orders", "cust", "text"),
        ("orders", "issued", "date"),
        ("items", "ordnum", "int"),
        ("items", "line", "int"),
        ("items", "product", "text"),
        ("sx3", "alias", "text"),
        ("sx3", "field", "text"),
    ];
    let ops = ["=", "<", "<=", ">", ">=", "BETWEEN"];
    for round in 0..400 {
        let (table, col, kind) = columns[rng.random_range(0..columns.len())];
        // A value stored in the column, perturbed.
        let stored = sqlite_rows(
            &native,
            &format!("SELECT {col} FROM {table} ORDER BY random() LIMIT 1"),
            &[],
        );
        let base = stored[0][0].clone();
        let value = |rng: &mut rand::rngs::StdRng| match (kind, &base, rng.random_range(0..6)) {
            (_, SqlValue::Text(t), 0) => SqlValue::Text(format!("{t}\t")),
            (_, SqlValue::Text(t), 1) => {
                SqlValue::Text(t.chars().take(rng.random_range(0..=t.len())).collect())
            }
            (_, SqlValue::Text(t), 2) => SqlValue::Text(format!("{t} \u{1}")),
            (_, SqlValue::Integer(i), 0) => SqlValue::Real(*i as f64 + 0.5),
            (_, SqlValue::Integer(i), 1) => SqlValue::Text(i.to_string()),
            (_, SqlValue::Integer(i), 2) => SqlValue::Integer(i + rng.random_range(-3..4)),
            ("date", SqlValue::Text(t), 3) => SqlValue::Text(t[..7].to_owned()),
            ("text", _, 3) => SqlValue::Integer(rng.random_range(0..100)),
            (_, v, _) => v.clone(),
        };
        let op = ops[rng.random_range(0..ops.len())];
        let (q, params) = if op == "BETWEEN" {
            let (a, b) = (value(&mut rng), value(&mut rng));
            (
                format!("SELECT recno FROM {table} WHERE {col} BETWEEN ?1 AND ?2 ORDER BY recno"),
                vec![a, b],
            )
        } else {
            (
                format!("SELECT recno FROM {table} WHERE {col} {op} ?1 ORDER BY recno"),
                vec![value(&mut rng)],
            )
        };
        let got = sql.query(&q, &params).unwrap().rows;
        let want = sqlite_rows(&native, &q, &params);
        assert_eq!(got, want, "round {round}: {q} with {params:?}");
    }
}

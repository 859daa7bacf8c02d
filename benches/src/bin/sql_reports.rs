//! ERP reports through raiz's SQL, through SQLite over its own tables and
//! through PostgreSQL, on the same data in the same run; and raiz's durable
//! commit rate with and without a report running beside it.
//!
//! `cargo run --profile bench -p raiz-benches --bin sql_reports -- [--items N]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_benches::compare::server::{pg_bin, start_pg};
use raiz_benches::compare::Result;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Date, Decimal, Field, FieldType, Schema, TableOptions, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const REPORTS: &[(&str, &str)] = &[
    (
        "sales by customer and month",
        "SELECT o.cust, substr(o.issued, 1, 7) AS month, count(*), sum(i.qty * i.price)
           FROM orders o JOIN items i ON i.ordnum = o.num
          GROUP BY o.cust, month ORDER BY o.cust, month",
    ),
    (
        "top 20 products by value",
        "SELECT product, sum(qty * price) AS value FROM items
          GROUP BY product ORDER BY value DESC LIMIT 20",
    ),
];

/// A keyed lookup join, run for many order numbers.
const LOOKUP: &str = "SELECT c.name, o.issued, i.line, i.product, i.qty * i.price
   FROM orders o JOIN customers c ON c.code = o.cust JOIN items i ON i.ordnum = o.num
  WHERE o.num = $1 ORDER BY i.line";

struct Data {
    customers: Vec<(String, String, String)>,
    orders: Vec<(i64, String, Date)>,
    items: Vec<(i64, i64, String, i64, i64)>,
}

fn generate(items: usize) -> Data {
    let mut rng = StdRng::seed_from_u64(42);
    let n_orders = items / 10;
    let n_customers = (items / 100).max(10);
    let customers = (0..n_customers)
        .map(|i| {
            (
                format!("C{i:06}"),
                format!("Customer {i}"),
                format!("CITY{}", i % 50),
            )
        })
        .collect();
    let mut orders = Vec::with_capacity(n_orders);
    let mut its = Vec::with_capacity(items);
    for num in 0..n_orders as i64 {
        orders.push((
            num,
            format!("C{:06}", rng.random_range(0..n_customers)),
            Date::ymd(2025, rng.random_range(1..=12), rng.random_range(1..=28)),
        ));
        for line in 0..10 {
            its.push((
                num,
                line,
                format!("P{:05}", rng.random_range(0..5_000)),
                rng.random_range(1..100),
                rng.random_range(100..100_000),
            ));
        }
    }
    Data {
        customers,
        orders,
        items: its,
    }
}

fn load_raiz(db: &Database, d: &Data) -> Result<()> {
    let s = db.session();
    let create =
        |name: &str, fields: Vec<Field>, idx: Vec<IndexDef>| -> Result<raiz_engine::Table> {
            db.create_table(name, &Schema::new(fields), TableOptions::default())?;
            let mut t = s.open_table(name)?;
            for i in &idx {
                t.create_index(i)?;
            }
            Ok(t)
        };
    let mut c = create(
        "customers",
        vec![
            Field::new("CODE", FieldType::Char(7)),
            Field::new("NAME", FieldType::Char(30)),
            Field::new("CITY", FieldType::Char(10)),
        ],
        vec![IndexDef::new("code", vec![Segment::field("CODE")]).unique()],
    )?;
    let mut o = create(
        "orders",
        vec![
            Field::new("NUM", FieldType::Int64),
            Field::new("CUST", FieldType::Char(7)),
            Field::new("ISSUED", FieldType::Date),
        ],
        vec![
            IndexDef::new("num", vec![Segment::field("NUM")]).unique(),
            IndexDef::new("cust", vec![Segment::field("CUST")]),
        ],
    )?;
    let mut i = create(
        "items",
        vec![
            Field::new("ORDNUM", FieldType::Int64),
            Field::new("LINE", FieldType::Int64),
            Field::new("PRODUCT", FieldType::Char(6)),
            Field::new("QTY", FieldType::Numeric { len: 6, dec: 0 }),
            Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
        ],
        vec![IndexDef::new(
            "ordline",
            vec![Segment::field("ORDNUM"), Segment::field("LINE")],
        )
        .unique()],
    )?;
    s.begin()?;
    for (code, name, city) in &d.customers {
        c.append(&[
            Value::from(code.as_str()),
            Value::from(name.as_str()),
            Value::from(city.as_str()),
        ])?;
    }
    for (num, cust, date) in &d.orders {
        o.append(&[
            Value::Int64(*num),
            Value::from(cust.as_str()),
            Value::Date(*date),
        ])?;
    }
    for (num, line, product, qty, price) in &d.items {
        i.append(&[
            Value::Int64(*num),
            Value::Int64(*line),
            Value::from(product.as_str()),
            Value::Numeric(Decimal::new(i128::from(*qty), 0)),
            Value::Numeric(Decimal::new(i128::from(*price), 2)),
        ])?;
    }
    s.commit()?;
    Ok(())
}

fn load_sqlite(conn: &rusqlite::Connection, d: &Data) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE customers(code TEXT PRIMARY KEY, name TEXT, city TEXT);
         CREATE TABLE orders(num INTEGER PRIMARY KEY, cust TEXT, issued TEXT);
         CREATE INDEX orders_cust ON orders(cust);
         CREATE TABLE items(ordnum INTEGER, line INTEGER, product TEXT, qty INTEGER, price REAL,
                            PRIMARY KEY (ordnum, line));
         BEGIN;",
    )?;
    for (a, b, c) in &d.customers {
        conn.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3)",
            rusqlite::params![a, b, c],
        )?;
    }
    for (num, cust, date) in &d.orders {
        conn.execute(
            "INSERT INTO orders VALUES (?1, ?2, ?3)",
            rusqlite::params![num, cust, date.to_string()],
        )?;
    }
    let mut st = conn.prepare("INSERT INTO items VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (num, line, product, qty, price) in &d.items {
        st.execute(rusqlite::params![
            num,
            line,
            product,
            qty,
            *price as f64 / 100.0
        ])?;
    }
    conn.execute_batch("COMMIT; ANALYZE;")?;
    Ok(())
}

fn load_pg(c: &mut postgres::Client, d: &Data) -> Result<()> {
    use std::io::Write;
    c.batch_execute(
        "CREATE TABLE customers(code text PRIMARY KEY, name text, city text);
         CREATE TABLE orders(num bigint PRIMARY KEY, cust text, issued text);
         CREATE INDEX orders_cust ON orders(cust);
         CREATE TABLE items(ordnum bigint, line bigint, product text, qty bigint, price numeric(10,2),
                            PRIMARY KEY (ordnum, line));",
    )?;
    let mut w = c.copy_in("COPY customers FROM STDIN")?;
    for (a, b, cc) in &d.customers {
        writeln!(w, "{a}\t{b}\t{cc}")?;
    }
    w.finish()?;
    let mut w = c.copy_in("COPY orders FROM STDIN")?;
    for (num, cust, date) in &d.orders {
        writeln!(w, "{num}\t{cust}\t{date}")?;
    }
    w.finish()?;
    let mut w = c.copy_in("COPY items FROM STDIN")?;
    for (num, line, product, qty, price) in &d.items {
        writeln!(
            w,
            "{num}\t{line}\t{product}\t{qty}\t{}.{:02}",
            price / 100,
            price % 100
        )?;
    }
    w.finish()?;
    c.batch_execute("VACUUM ANALYZE")?;
    Ok(())
}

/// Best of three runs of `f`, in seconds.
fn best(mut f: impl FnMut() -> Result<usize>) -> Result<(f64, usize)> {
    let mut best = f64::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        rows = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, rows))
}

/// Durable one-record commits per second for `secs`, while `busy` runs.
fn commit_rate(db: &Database, secs: f64, prefix: char) -> Result<f64> {
    let s = db.session();
    let mut t = s.open_table("customers")?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        t.append(&[
            Value::from(format!("{prefix}{n:06}").as_str()),
            Value::from("x"),
            Value::from("y"),
        ])?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let mut items = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--items" {
            items = args.next().ok_or("--items N")?.parse()?;
        }
    }
    let lookups = 2_000i64;
    let d = generate(items);
    println!(
        "# SQL reports over {} customers, {} orders, {} order items\n",
        d.customers.len(),
        d.orders.len(),
        d.items.len()
    );
    let dir = tempfile::tempdir()?;
    let db = Database::open(dir.path().join("raiz"))?;
    let t = Instant::now();
    load_raiz(&db, &d)?;
    eprintln!("raiz loaded in {:.1} s", t.elapsed().as_secs_f64());
    let mut sql = raiz_sql::SqlSession::open(&db, raiz_sql::everything(), Default::default())?;
    let lite = rusqlite::Connection::open(dir.path().join("native.db"))?;
    load_sqlite(&lite, &d)?;
    let pg_server = match pg_bin() {
        Some(bin) => Some(start_pg(bin, 256 << 20)?),
        None => None,
    };
    let mut pg = match &pg_server {
        Some(s) => {
            let mut c = postgres::Client::connect(
                &format!("host=127.0.0.1 port={} user=raiz dbname=postgres", s.port),
                postgres::NoTls,
            )?;
            load_pg(&mut c, &d)?;
            Some(c)
        }
        None => None,
    };
    println!("| report | raiz SQL | SQLite (own tables) | PostgreSQL | rows | raiz ÷ SQLite | raiz ÷ PostgreSQL |");
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, r: f64, l: f64, p: Option<f64>, rows: usize| {
        let p_text = p.map_or("—".into(), |p| format!("{:.3} s", p));
        let ratio = p.map_or("—".into(), |p| format!("{:.2}×", p / r));
        println!(
            "| {name} | {r:.3} s | {l:.3} s | {p_text} | {rows} | {:.2}× | {ratio} |",
            l / r
        );
    };
    for (name, q) in REPORTS {
        let (r, rows) = best(|| Ok(sql.query(q, &[])?.rows.len()))?;
        let (l, _) = best(|| {
            let mut st = lite.prepare(q)?;
            let mut rs = st.query([])?;
            let mut n = 0;
            while rs.next()?.is_some() {
                n += 1;
            }
            Ok(n)
        })?;
        let p = match pg.as_mut() {
            Some(c) => Some(best(|| Ok(c.query(*q, &[])?.len()))?.0),
            None => None,
        };
        row(name, r, l, p, rows);
    }
    let n_orders = d.orders.len() as i64;
    let pick = |k: i64| (k * 7919) % n_orders;
    let lite_q = LOOKUP.replace("$1", "?1");
    let (r, rows) = best(|| {
        let mut n = 0;
        for k in 0..lookups {
            n += sql
                .query(&lite_q, &[raiz_sql::SqlValue::Integer(pick(k))])?
                .rows
                .len();
        }
        Ok(n)
    })?;
    let (l, _) = best(|| {
        let mut st = lite.prepare(&lite_q)?;
        let mut n = 0;
        for k in 0..lookups {
            let mut rs = st.query([pick(k)])?;
            while rs.next()?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    })?;
    let p = match pg.as_mut() {
        Some(c) => {
            let st = c.prepare(LOOKUP)?;
            Some(
                best(|| {
                    let mut n = 0;
                    for k in 0..lookups {
                        n += c.query(&st, &[&pick(k)])?.len();
                    }
                    Ok(n)
                })?
                .0,
            )
        }
        None => None,
    };
    row(&format!("keyed lookup join × {lookups}"), r, l, p, rows);
    let reads_before = sql.records_read();
    sql.query(&lite_q, &[raiz_sql::SqlValue::Integer(pick(1))])?;
    println!(
        "\nOne keyed lookup join read {} records (of {} in the three tables).",
        sql.records_read() - reads_before,
        d.customers.len() + d.orders.len() + d.items.len()
    );

    // raiz's durable commit rate alone, then with the first report running
    // over and over on another thread.
    let alone = commit_rate(&db, 3.0, 'Y')?;
    let stop = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicU64::new(0));
    let reporter = {
        let (db, stop, ran) = (db.clone(), stop.clone(), ran.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut s =
                raiz_sql::SqlSession::open(&db, raiz_sql::everything(), Default::default())?;
            while !stop.load(Ordering::Relaxed) {
                s.query(REPORTS[0].1, &[])?;
                ran.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let busy = commit_rate(&db, 3.0, 'Z')?;
    stop.store(true, Ordering::Relaxed);
    reporter.join().map_err(|_| "report thread")??;
    println!(
        "\nDurable 1-record commits: {alone:.0}/s alone, {busy:.0}/s while the first report ran {} times beside them ({:.2}×).",
        ran.load(Ordering::Relaxed),
        busy / alone
    );
    drop(pg);
    drop(pg_server);
    Ok(())
}

//! `raiz demo`: the whole system on a throw-away rootpath, with no set-up.
//!
//! 1. **Embedded**: an ERP-like dataset — the SX3 field dictionary (the kind
//!    of table application servers cache), SYP free texts, SA1 customers,
//!    SC5/SC6 orders and their items, with indexes and memos — built, read
//!    back, navigated, deleted and recalled, with the rate of each step.
//! 2. **Remote**: a server started in this process on loopback (a user
//!    created in the rootpath), and several client sessions running a mixed
//!    order-entry workload against it.
//! 3. **Cached**: two cache nodes in this process following the server's
//!    SX3; reads through a node make no round trip; dictionary rows changed
//!    through one node are timed until they arrive at the other.
//! 4. A summary of the measured rates. Nothing is left running; the rootpath
//!    is removed unless `--keep` (or `--root`) asks to keep it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use raiz_client::cache::{CacheConfig, CacheNode};
use raiz_client::Connection;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Date, Decimal, Error, Field, FieldType, Memo, Options, RecordFormat, Schema,
    TableOptions, Value,
};

use crate::error::{CliError, CliResult};

const TYPES: [&str; 5] = ["C", "N", "D", "L", "M"];
const TABLES: [&str; 8] = ["SA1", "SA2", "SB1", "SC5", "SC6", "SD1", "SE1", "SF2"];

fn dictionary() -> Schema {
    Schema::new(vec![
        Field::new("X3_ARQUIVO", FieldType::Char(3)),
        Field::new("X3_ORDEM", FieldType::Char(3)),
        Field::new("X3_CAMPO", FieldType::Char(10)),
        Field::new("X3_TIPO", FieldType::Char(1)),
        Field::new("X3_TAMANHO", FieldType::Numeric { len: 3, dec: 0 }),
        Field::new("X3_DECIMAL", FieldType::Numeric { len: 1, dec: 0 }),
        Field::new("X3_TITULO", FieldType::Char(12)),
        Field::new("X3_DESCRIC", FieldType::Char(25)),
        Field::new("X3_PICTURE", FieldType::Char(45)),
        Field::new("X3_VALID", FieldType::Memo),
        Field::new("X3_USADO", FieldType::Logical),
        Field::new("X3_NIVEL", FieldType::Int64),
        Field::new("X3_PESO", FieldType::Float64),
        Field::new("X3_DTALT", FieldType::Date),
        Field::new("X3_HASH", FieldType::Binary(16)),
    ])
}

fn validation(i: u64) -> Vec<u8> {
    let clauses = 1 + i % 12;
    (0..clauses)
        .map(|c| {
            format!(
                "ExistCpo('{}',M->X3_CAMPO{c}) .And. Positivo() ",
                TABLES[(i + c) as usize % 8]
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn campo(i: u64) -> String {
    format!("{}_F{:05}", &TABLES[(i % 8) as usize][1..], i / 8 % 100_000)
}

fn row(i: u64) -> Vec<Value> {
    let table = TABLES[(i % 8) as usize];
    let ty = TYPES[(i % 5) as usize];
    let memo = if i.is_multiple_of(3) {
        Memo::Data(validation(i))
    } else {
        Memo::Empty
    };
    vec![
        Value::from(table),
        Value::from(format!("{:03}", (i / 8) % 1000).as_str()),
        Value::from(campo(i).as_str()),
        Value::from(ty),
        Value::Numeric(Decimal::new(i128::from((i % 250) as u16 + 1), 0)),
        Value::Numeric(Decimal::new(i128::from((i % 4) as u8), 0)),
        Value::from(format!("Campo {}", i % 9999).as_str()),
        Value::from(format!("Descricao do campo {}", i % 999_999).as_str()),
        Value::from("@!"),
        Value::Memo(memo),
        Value::Logical(!i.is_multiple_of(7)),
        Value::Int64((i % 9) as i64),
        Value::Float64(i as f64 * 0.25),
        Value::Date(Date::ymd(
            2020 + (i % 6) as u16,
            (i % 12 + 1) as u8,
            (i % 28 + 1) as u8,
        )),
        Value::Binary(
            (i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .to_le_bytes()
                .repeat(2),
        ),
    ]
}

fn rate(label: &str, n: u64, unit: &str, started: Instant) -> f64 {
    let secs = started.elapsed().as_secs_f64();
    let per_sec = n as f64 / secs.max(1e-9);
    println!("  {label:<34} {n:>9} {unit:<8} {secs:>8.3} s {per_sec:>12.0} {unit}/s");
    per_sec
}

fn bar(n: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("  {msg:<34} [{bar:30}] {pos}/{len}")
            .expect("static template"),
    );
    pb.set_message(what.to_owned());
    pb
}

/// What `raiz demo` does.
pub struct DemoOptions {
    /// Rows of the dictionary (the other tables scale with it).
    pub rows: u64,
    /// Use (and keep) this rootpath.
    pub root: Option<PathBuf>,
    /// Keep the throw-away rootpath and say how to explore it.
    pub keep: bool,
    /// Buffer pool of the database and of each cache node.
    pub pool_bytes: usize,
    /// Dictionary changes timed from one cache node to the other.
    pub changes: u64,
    /// Seconds of each timed workload (remote sessions, cached reads).
    pub secs: f64,
}

/// The rates the summary repeats.
#[derive(Default)]
struct Summary {
    append: f64,
    read: f64,
    seek: f64,
    order_load: f64,
    remote_txns: f64,
    remote_reads: f64,
    remote_sessions: u64,
    node_load: f64,
    cached_reads: f64,
    cached_round_trips: u64,
    remote_read_rate: f64,
    delays: Vec<Duration>,
}

pub fn run(o: DemoOptions) -> CliResult {
    let mut tmp = None;
    let root = match &o.root {
        Some(r) => r.clone(),
        None => {
            let t = tempfile::Builder::new()
                .prefix("raiz-demo-")
                .tempdir()
                .map_err(|e| CliError::io(std::env::temp_dir().display(), e))?;
            let p = t.path().to_path_buf();
            tmp = Some(t);
            p
        }
    };
    let started = Instant::now();
    println!("raiz demo — rootpath {}", root.display());
    println!("  buffer pool {} MiB\n", o.pool_bytes >> 20);
    let mut summary = Summary::default();
    {
        let db = Database::open_with(&root, Options::default().pool_bytes(o.pool_bytes))?;
        dictionary_part(&db, o.rows, &mut summary)?;
        erp_part(&db, o.rows, &mut summary)?;
    }
    let system = system_part(&root, &o, &mut summary);
    report(&summary, started.elapsed());
    system?;
    match (o.root.is_some(), tmp) {
        (false, Some(t)) if o.keep => {
            let kept = t.keep();
            println!(
                "\nthe rootpath is kept: explore it with\n  raiz shell --root {}",
                kept.display()
            );
        }
        (false, _) => println!("\nthe throw-away rootpath is removed (raiz demo --keep keeps it)"),
        (true, _) => println!(
            "\nexplore the rootpath with\n  raiz shell --root {}",
            root.display()
        ),
    }
    Ok(())
}

/// The field dictionary: built, read back, navigated, deleted, recalled.
fn dictionary_part(db: &Database, rows: u64, summary: &mut Summary) -> Result<(), Error> {
    if db.table_exists("sx3")? {
        db.drop_table("sx3")?;
    }
    db.create_table("sx3", &dictionary(), TableOptions::default())?;
    println!("SX3 field dictionary: 15 fields, fixed-length records, validations in a memo");

    let session = db.session();
    let mut t = session.open_table("sx3")?;
    let started = Instant::now();
    let pb = bar(rows, "appending");
    session.begin()?;
    for i in 0..rows {
        t.append(&row(i))?;
        if i % 1000 == 999 {
            session.commit()?;
            session.begin()?;
            pb.set_position(i);
        }
    }
    session.commit()?;
    pb.finish_and_clear();
    summary.append = rate(
        "append, logged, commit every 1000",
        rows,
        "records",
        started,
    );
    let started = Instant::now();
    t.close()?;
    rate("flush and clean close", rows, "records", started);

    let mut t = session.open_table("sx3")?;
    let info = t.info();
    println!(
        "  reopened: {} records, {} data pages + {} memo pages of {} bytes",
        info.record_count, info.data_pages, info.blob_pages, info.page_size
    );

    let started = Instant::now();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let recno = x % rows + 1;
        let rec = t.read(recno)?;
        if rec.values()[11] != Value::Int64(((recno - 1) % 9) as i64) {
            return Err(Error::CorruptRecord {
                table: "sx3".into(),
                recno,
                reason: "demo read back a different record".into(),
            });
        }
    }
    summary.read = rate("random read by recno", rows, "records", started);

    let started = Instant::now();
    let mut seen = 0;
    let mut ok = t.first()?;
    while ok {
        t.record()?;
        seen += 1;
        ok = t.next()?;
    }
    rate("physical scan (first/next, read)", seen, "records", started);

    let started = Instant::now();
    let mut bytes = 0u64;
    let mut memos = 0;
    for recno in (1..=rows).step_by(3) {
        bytes += t.read_memo(recno, "X3_VALID")?.len() as u64;
        memos += 1;
    }
    rate("memo read on demand", memos, "memos", started);
    println!("  {:<34} {bytes:>9} bytes", "memo bytes read");

    let started = Instant::now();
    t.create_index(&IndexDef::new("x3_campo", vec![Segment::field("X3_CAMPO")]).unique())?;
    rate("index build (unique X3_CAMPO)", rows, "records", started);
    let started = Instant::now();
    t.create_index(&IndexDef::new(
        "x3_ordem",
        vec![Segment::field("X3_ARQUIVO"), Segment::field("X3_ORDEM")],
    ))?;
    rate(
        "index build (X3_ARQUIVO+X3_ORDEM)",
        rows,
        "records",
        started,
    );
    t.set_order(Some("x3_campo"))?;
    let started = Instant::now();
    for _ in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % rows;
        if !t.seek(&[Value::from(campo(i).as_str())])? || t.recno() != i + 1 {
            return Err(Error::CorruptRecord {
                table: "sx3".into(),
                recno: i + 1,
                reason: "demo seek found another record".into(),
            });
        }
        t.record()?;
    }
    summary.seek = rate("random seek by X3_CAMPO + read", rows, "seeks", started);
    t.set_order(Some("x3_ordem"))?;
    let started = Instant::now();
    let mut seen = 0;
    let mut ok = t.first()?;
    while ok {
        t.record()?;
        seen += 1;
        ok = t.next()?;
    }
    rate(
        "ordered scan by X3_ARQUIVO+X3_ORDEM",
        seen,
        "records",
        started,
    );
    let sb1 = [Value::from("SB1")];
    t.set_scope(Some(&sb1), Some(&sb1))?;
    let in_scope = t.count_range(Some(&sb1), Some(&sb1))?;
    println!(
        "  {:<34} {in_scope:>9} records in scope",
        "scope X3_ARQUIVO = SB1"
    );
    t.clear_scope();
    t.set_order(None)?;

    let started = Instant::now();
    let mut deleted = 0;
    session.begin()?;
    for recno in (1..=rows).step_by(10) {
        t.delete(recno)?;
        deleted += 1;
    }
    session.commit()?;
    rate(
        "logical delete (every 10th), 1 txn",
        deleted,
        "records",
        started,
    );
    session.set_hide_deleted(true);
    let mut visible = 0;
    let mut ok = t.first()?;
    while ok {
        visible += 1;
        ok = t.next()?;
    }
    println!(
        "  {:<34} {visible:>9} of {} visible, deleted ones hidden",
        "SET DELETED ON scan",
        t.record_count()
    );
    session.begin()?;
    for recno in (1..=rows).step_by(20) {
        t.recall(recno)?;
    }
    session.commit()?;
    println!(
        "  {:<34} {:>9} deleted after recalling every 20th",
        "recall",
        t.deleted_count()
    );
    let started = Instant::now();
    let report = t.check(10)?;
    rate("check (records and 2 indexes)", rows, "records", started);
    let verdict = if report.is_ok() { "ok" } else { "PROBLEMS" };
    println!("  {:<34} {verdict:>9}", "check result");
    t.close()?;

    db.create_table(
        "syp",
        &Schema::new(vec![
            Field::new("YP_CHAVE", FieldType::Char(6)),
            Field::new("YP_TEXTO", FieldType::Char(4000)),
        ]),
        TableOptions::default().format(RecordFormat::Variable),
    )?;
    let mut v = session.open_table("syp")?;
    let started = Instant::now();
    let n = rows / 4;
    session.begin()?;
    for i in 0..n {
        let text = "Texto livre da tabela ".repeat((i % 40) as usize + 1);
        v.append(&[
            Value::from(format!("{i:06}").as_str()),
            Value::from(text.as_str()),
        ])?;
    }
    session.commit()?;
    v.close()?;
    rate("append, variable-length records", n, "records", started);

    let commits = (rows / 100).clamp(50, 500);
    let mut t = session.open_table("sx3")?;
    let started = Instant::now();
    for i in 0..commits {
        let mut values = t.read(i + 1)?.into_values();
        values[11] = Value::Int64((i % 9) as i64);
        t.update(i + 1, &values)?;
    }
    rate("durable single-record commits", commits, "commits", started);
    let threads = 8;
    let syncs = db.log_syncs();
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..threads {
            let session = db.session();
            s.spawn(move || -> Result<(), Error> {
                let mut t = session.open_table("sx3")?;
                for i in 0..commits / threads {
                    let recno = 1 + w + i * threads;
                    let mut values = t.read(recno)?.into_values();
                    values[12] = Value::Float64(i as f64);
                    t.update(recno, &values)?;
                }
                Ok(())
            });
        }
    });
    let done = commits / threads * threads;
    rate("durable commits from 8 threads", done, "commits", started);
    println!(
        "  {:<34} {:>9} log syncs for {done} commits (group commit)",
        "",
        db.log_syncs() - syncs
    );
    t.close()?;

    let stats = db.pool_stats();
    println!(
        "  buffer pool: {} hits, {} misses, {} evictions, {} write-backs",
        stats.hits, stats.misses, stats.evictions, stats.writebacks
    );
    Ok(())
}

const CITIES: [(&str, &str); 6] = [
    ("SAO PAULO", "SP"),
    ("CAMPINAS", "SP"),
    ("CURITIBA", "PR"),
    ("PORTO ALEGRE", "RS"),
    ("BELO HORIZONTE", "MG"),
    ("RECIFE", "PE"),
];

fn money(cents: i64) -> Value {
    Value::Numeric(Decimal::new(i128::from(cents), 2))
}

fn customer_key(i: u64) -> [Value; 2] {
    [
        Value::from(format!("{:06}", i + 1).as_str()),
        Value::from("01"),
    ]
}

/// Customers (SA1), orders (SC5) and their items (SC6), with indexes and
/// memos, loaded embedded.
fn erp_part(db: &Database, rows: u64, summary: &mut Summary) -> Result<(), Error> {
    for t in ["sa1", "sc5", "sc6"] {
        if db.table_exists(t)? {
            db.drop_table(t)?;
        }
    }
    let customers = (rows / 8).max(50);
    let orders = (rows / 8).max(50);
    db.create_table(
        "sa1",
        &Schema::new(vec![
            Field::new("A1_COD", FieldType::Char(6)),
            Field::new("A1_LOJA", FieldType::Char(2)),
            Field::new("A1_NOME", FieldType::Char(40)),
            Field::new("A1_MUN", FieldType::Char(20)),
            Field::new("A1_EST", FieldType::Char(2)),
            Field::new("A1_LC", FieldType::Numeric { len: 14, dec: 2 }),
            Field::new("A1_SALDO", FieldType::Numeric { len: 14, dec: 2 }),
            Field::new("A1_OBS", FieldType::Memo),
        ]),
        TableOptions::default(),
    )?;
    db.create_table(
        "sc5",
        &Schema::new(vec![
            Field::new("C5_NUM", FieldType::Char(6)),
            Field::new("C5_CLIENTE", FieldType::Char(6)),
            Field::new("C5_LOJA", FieldType::Char(2)),
            Field::new("C5_EMISSAO", FieldType::Date),
            Field::new("C5_TOTAL", FieldType::Numeric { len: 14, dec: 2 }),
            Field::new("C5_OBS", FieldType::Memo),
        ]),
        TableOptions::default(),
    )?;
    db.create_table(
        "sc6",
        &Schema::new(vec![
            Field::new("C6_NUM", FieldType::Char(6)),
            Field::new("C6_ITEM", FieldType::Char(2)),
            Field::new("C6_PRODUTO", FieldType::Char(15)),
            Field::new("C6_QTDVEN", FieldType::Numeric { len: 9, dec: 2 }),
            Field::new("C6_PRCVEN", FieldType::Numeric { len: 12, dec: 2 }),
            Field::new("C6_VALOR", FieldType::Numeric { len: 14, dec: 2 }),
        ]),
        TableOptions::default(),
    )?;
    println!("\nSA1 customers, SC5 orders, SC6 items: indexes on codes and names, notes in memos");
    let s = db.session();
    let mut sa1 = s.open_table("sa1")?;
    sa1.create_index(
        &IndexDef::new(
            "sa1_1",
            vec![Segment::field("A1_COD"), Segment::field("A1_LOJA")],
        )
        .unique(),
    )?;
    sa1.create_index(&IndexDef::new(
        "sa1_2",
        vec![Segment::field("A1_NOME").upper()],
    ))?;
    let mut sc5 = s.open_table("sc5")?;
    sc5.create_index(&IndexDef::new("sc5_1", vec![Segment::field("C5_NUM")]).unique())?;
    sc5.create_index(&IndexDef::new(
        "sc5_2",
        vec![Segment::field("C5_CLIENTE"), Segment::field("C5_EMISSAO")],
    ))?;
    let mut sc6 = s.open_table("sc6")?;
    sc6.create_index(
        &IndexDef::new(
            "sc6_1",
            vec![Segment::field("C6_NUM"), Segment::field("C6_ITEM")],
        )
        .unique(),
    )?;
    let started = Instant::now();
    s.begin()?;
    for i in 0..customers {
        let (city, state) = CITIES[(i % 6) as usize];
        let [cod, loja] = customer_key(i);
        let obs = if i % 5 == 0 {
            Memo::Data(format!("Cliente desde {}; visita mensal", 2000 + i % 24).into_bytes())
        } else {
            Memo::Empty
        };
        sa1.append(&[
            cod,
            loja,
            Value::from(format!("CLIENTE {:05} COMERCIO LTDA", (i * 7919) % 100_000).as_str()),
            Value::from(city),
            Value::from(state),
            money(((i % 50) as i64 + 1) * 1_000_000),
            money(0),
            Value::Memo(obs),
        ])?;
        if i % 1000 == 999 {
            s.commit()?;
            s.begin()?;
        }
    }
    s.commit()?;
    rate("customers, 2 indexes, memos", customers, "records", started);
    let started = Instant::now();
    s.begin()?;
    for n in 0..orders {
        let num = format!("{:06}", n + 1);
        let cust = (n * 31) % customers;
        let mut total = 0i64;
        for item in 0..3 {
            let qty = (n + item) % 9 + 1;
            let price = ((n * 13 + item * 7) % 5000 + 100) as i64;
            total += qty as i64 * price;
            sc6.append(&[
                Value::from(num.as_str()),
                Value::from(format!("{:02}", item + 1).as_str()),
                Value::from(format!("PROD{:05}", (n + item * 17) % 3000).as_str()),
                Value::Numeric(Decimal::new(i128::from(qty) * 100, 2)),
                money(price),
                money(qty as i64 * price),
            ])?;
        }
        let [cod, loja] = customer_key(cust);
        sc5.append(&[
            Value::from(num.as_str()),
            cod,
            loja,
            Value::Date(Date::ymd(2024, (n % 12 + 1) as u8, (n % 28 + 1) as u8)),
            money(total),
            Value::Memo(Memo::Data(
                format!("Pedido {num}: entrega normal").into_bytes(),
            )),
        ])?;
        if n % 300 == 299 {
            s.commit()?;
            s.begin()?;
        }
    }
    s.commit()?;
    summary.order_load = rate(
        "orders with 3 items each, 3 indexes",
        orders,
        "orders",
        started,
    );
    let started = Instant::now();
    let mut found = 0;
    sa1.set_order(Some("sa1_2"))?;
    for i in 0..customers.min(5000) {
        let prefix = format!("CLIENTE {:03}", (i * 37) % 1000);
        if sa1.seek(&[Value::from(prefix.as_str())])? {
            found += 1;
        }
    }
    rate(
        "partial seek by customer name",
        customers.min(5000),
        "seeks",
        started,
    );
    println!("  {:<34} {found:>9} names found", "");
    for t in [sa1, sc5, sc6] {
        let report = t.check(5)?;
        if !report.is_ok() {
            return Err(Error::CorruptRecord {
                table: t.name(),
                recno: 0,
                reason: format!("demo check failed: {:?}", report.problems),
            });
        }
        t.close()?;
    }
    Ok(())
}

const USER: &str = "demo";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One client session's mixed workload for `secs`: order entry
/// transactions, customer seeks, order lookups. Returns (transactions,
/// reads).
fn client_workload(
    url: &str,
    id: u64,
    customers: u64,
    next_order: &AtomicU64,
    stop: &AtomicBool,
) -> raiz_client::Result<(u64, u64)> {
    let s = Connection::connect(url)?.session()?;
    s.set_lock_timeout(Duration::from_secs(2))?;
    let mut sa1 = s.open_table("sa1")?;
    sa1.set_order(Some("sa1_1"))?;
    let mut sc5 = s.open_table("sc5")?;
    sc5.set_order(Some("sc5_1"))?;
    let mut sc6 = s.open_table("sc6")?;
    let (mut txns, mut reads) = (0u64, 0u64);
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (id + 1);
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 10 {
            0..=3 => {
                // Order entry: lock the customer, add the order and its
                // items, raise the balance — one transaction.
                let cust = (x >> 8) % customers;
                let num = format!("{:06}", next_order.fetch_add(1, Ordering::Relaxed));
                let key = customer_key(cust);
                s.transaction(|s| {
                    let Some(rec) = sa1.seek_lock(&key)? else {
                        return Ok(());
                    };
                    let mut total = 0i64;
                    for item in 0..3u64 {
                        let price = ((x >> (item * 4)) % 5000 + 100) as i64;
                        total += price;
                        sc6.append(&[
                            Value::from(num.as_str()),
                            Value::from(format!("{:02}", item + 1).as_str()),
                            Value::from(format!("PROD{:05}", (x >> 16) % 3000).as_str()),
                            Value::Numeric(Decimal::new(100, 2)),
                            money(price),
                            money(price),
                        ])?;
                    }
                    sc5.append(&[
                        Value::from(num.as_str()),
                        key[0].clone(),
                        key[1].clone(),
                        Value::Date(Date::ymd(2024, 6, 1)),
                        money(total),
                        Value::Memo(Memo::Empty),
                    ])?;
                    let saldo = match &rec.values()[6] {
                        Value::Numeric(d) => d.mantissa(),
                        _ => 0,
                    };
                    sa1.update_fields(
                        sa1.recno(),
                        &[(
                            "A1_SALDO",
                            Value::Numeric(Decimal::new(saldo + i128::from(total), 2)),
                        )],
                    )?;
                    let _ = s;
                    Ok(())
                })?;
                txns += 1;
            }
            4..=7 => {
                let cust = (x >> 8) % customers;
                if sa1.seek(&customer_key(cust))? {
                    sa1.record()?;
                }
                reads += 1;
            }
            _ => {
                let num = format!("{:06}", (x >> 8) % (customers.max(2)) + 1);
                if sc5.seek(&[Value::from(num.as_str())])? {
                    sc5.record()?;
                }
                reads += 1;
            }
        }
    }
    Ok((txns, reads))
}

/// The server, its client sessions, and two cache nodes.
fn system_part(root: &std::path::Path, o: &DemoOptions, summary: &mut Summary) -> CliResult {
    let password = format!("demo-{:016x}", rand_u64());
    let mut users = raiz_server::users::Users::load(root)?;
    if users.get(USER).is_some() {
        users.remove(USER)?;
    }
    users.add(USER, &password, vec!["erp".into()], true)?;
    users.save(root)?;
    let mut config = raiz_server::Config::default();
    config.root = Some(root.to_path_buf());
    config.listen = Some("127.0.0.1:0".into());
    config.pool_mb = Some((o.pool_bytes >> 20).max(1) as u64);
    let server = raiz_server::start(config, false)?;
    let addr = server
        .tcp
        .ok_or_else(|| CliError::Io("the demo server has no TCP address".into()))?;
    let url = format!("raiz://{USER}:{password}@{addr}");
    println!("\nraiz serve in this process on {addr} (user {USER}); client sessions over loopback");
    let result = (|| -> CliResult {
        remote_part(&url, o, summary)?;
        cache_part(&url, o, summary)
    })();
    server.stop()?;
    result
}

fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ u64::from(std::process::id())).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn remote_part(url: &str, o: &DemoOptions, summary: &mut Summary) -> CliResult {
    let customers = (o.rows / 8).max(50);
    let sessions = 4u64;
    let next_order = AtomicU64::new((o.rows / 8).max(50) + 1);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let results: Vec<raiz_client::Result<(u64, u64)>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..sessions)
            .map(|id| {
                let (next_order, stop) = (&next_order, &stop);
                sc.spawn(move || client_workload(url, id, customers, next_order, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(o.secs));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(raiz_client::Error::Cache("a demo session panicked".into()))
                })
            })
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let (mut txns, mut reads) = (0, 0);
    for r in results {
        let (t, r) = r?;
        txns += t;
        reads += r;
    }
    summary.remote_sessions = sessions;
    summary.remote_txns = txns as f64 / secs;
    summary.remote_reads = reads as f64 / secs;
    println!(
        "  {:<34} {txns:>9} txns    {secs:>8.3} s {:>12.0} txns/s",
        format!("order entry, {sessions} sessions"),
        summary.remote_txns
    );
    println!(
        "  {:<34} {reads:>9} seeks   {secs:>8.3} s {:>12.0} seeks/s",
        "customer and order seeks (same)", summary.remote_reads
    );
    let s = Connection::connect(url)?.session()?;
    let sc5 = s.open_table("sc5")?;
    let check = sc5.check(5)?;
    println!(
        "  {:<34} {:>9} orders, check {}",
        "SC5 after the workload",
        check.records,
        if check.is_ok() { "ok" } else { "PROBLEMS" }
    );
    Ok(())
}

fn cache_part(url: &str, o: &DemoOptions, summary: &mut Summary) -> CliResult {
    println!("\ntwo cache nodes in this process, each holding SX3 in memory");
    let started = Instant::now();
    let config = |_: u8| -> CliResult<CacheConfig> {
        Ok(CacheConfig::new(url, &["sx3"])?.pool_bytes(o.pool_bytes))
    };
    let a = CacheNode::start(config(0)?)?;
    let b = CacheNode::start(config(1)?)?;
    a.wait_ready(Duration::from_secs(120))?;
    b.wait_ready(Duration::from_secs(120))?;
    summary.node_load = started.elapsed().as_secs_f64();
    let st = a.status();
    let (rows, memory) = st
        .tables
        .iter()
        .fold((0, 0), |(r, m), t| (r + t.rows, m + t.memory_bytes));
    println!(
        "  {:<34} {rows:>9} records {:>8.3} s   {:.1} MiB in memory per node",
        "both nodes loaded SX3",
        summary.node_load,
        memory as f64 / (1u64 << 20) as f64
    );

    // Reads through a node: no round trip. The same reads from the server.
    let sa = a.connection().session()?;
    let ta = sa.open_table("sx3")?;
    let count = ta.record_count()?;
    let round_trips = sa.round_trips();
    let timed = |t: &raiz_client::Table| -> CliResult<(u64, f64)> {
        let started = Instant::now();
        let mut n = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        while started.elapsed().as_secs_f64() < o.secs / 2.0 {
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.read(x % count + 1)?;
                n += 1;
            }
        }
        Ok((n, n as f64 / started.elapsed().as_secs_f64()))
    };
    let (n, cached) = timed(&ta)?;
    summary.cached_reads = cached;
    summary.cached_round_trips = sa.round_trips() - round_trips;
    println!(
        "  {:<34} {n:>9} reads   {:>10} round trips {:>8.0} reads/s",
        "random reads through a node", summary.cached_round_trips, cached
    );
    let remote = Connection::connect(url)?.session()?;
    let tr = remote.open_table("sx3")?;
    let before = remote.round_trips();
    let (n, plain) = timed(&tr)?;
    summary.remote_read_rate = plain;
    println!(
        "  {:<34} {n:>9} reads   {:>10} round trips {:>8.0} reads/s",
        "the same reads from the server",
        remote.round_trips() - before,
        plain
    );

    // Dictionary rows changed through node A, timed until node B has them.
    let sb = b.connection().session()?;
    let tb = sb.open_table("sx3")?;
    let mut ta = sa.open_table("sx3")?;
    let mut delays = Vec::new();
    let mut after_ack = Vec::new();
    let mut x = 0x1234_5678_9abc_def1u64;
    let pb = bar(o.changes, "changes through node A");
    for i in 0..o.changes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let recno = x % count + 1;
        let title = format!("Chg {i:05}");
        let written = Instant::now();
        ta.update_fields(recno, &[("X3_TITULO", Value::from(title.as_str()))])?;
        let acknowledged = Instant::now();
        let seq = sa.feed_position()?;
        if !b.wait_applied(seq, Duration::from_secs(10)) {
            return Err(CliError::Data(format!(
                "node B did not receive change {seq} within 10 s"
            )));
        }
        delays.push(written.elapsed());
        after_ack.push(acknowledged.elapsed());
        let shown = tb.read(recno)?.values()[6].clone();
        if !matches!(&shown, Value::Char(t) if t.trim_end() == title) {
            return Err(CliError::Data(format!(
                "node B shows another title for record {recno}"
            )));
        }
        pb.set_position(i + 1);
    }
    pb.finish_and_clear();
    delays.sort();
    after_ack.sort();
    println!(
        "  {:<34} {:>9} changes  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        "write at node A → applied at B",
        delays.len(),
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.99)),
        ms(delays.last().copied().unwrap_or_default())
    );
    println!(
        "  {:<34} {:>9} changes  p50 {:.2} ms  p99 {:.2} ms",
        "… counted from A's acknowledgment",
        after_ack.len(),
        ms(percentile(&after_ack, 0.5)),
        ms(percentile(&after_ack, 0.99)),
    );
    summary.delays = delays;
    drop((ta, tb, sa, sb));
    a.stop();
    b.stop();
    Ok(())
}

fn report(s: &Summary, took: Duration) {
    println!(
        "\nsummary (this machine, this run; {:.1} s in all)",
        took.as_secs_f64()
    );
    println!(
        "  embedded  {:>10.0} appends/s  {:>10.0} reads/s by recno  {:>10.0} seeks/s  {:>8.0} orders/s loaded",
        s.append, s.read, s.seek, s.order_load
    );
    if s.remote_sessions > 0 {
        println!(
            "  remote    {:>10.0} order-entry transactions/s and {:.0} seeks/s from {} sessions over loopback",
            s.remote_txns, s.remote_reads, s.remote_sessions
        );
    }
    if s.cached_reads > 0.0 {
        println!(
            "  cached    {:>10.0} reads/s through a node ({} round trips) against {:.0} reads/s from the server",
            s.cached_reads, s.cached_round_trips, s.remote_read_rate
        );
    }
    if !s.delays.is_empty() {
        println!(
            "  changes   node to node in {:.2} ms (p50), {:.2} ms (p99) from the write, over {} dictionary updates",
            ms(percentile(&s.delays, 0.5)),
            ms(percentile(&s.delays, 0.99)),
            s.delays.len()
        );
    }
}

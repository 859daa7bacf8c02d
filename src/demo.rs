//! `raiz demo`: an ERP-like field dictionary (the kind of table application servers
//! cache) built, read back and navigated, with the rate of each step.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Date, Decimal, Error, Field, FieldType, Memo, Options, RecordFormat, Schema,
    TableOptions, Value,
};

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

fn rate(label: &str, n: u64, unit: &str, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {label:<34} {n:>9} {unit:<8} {secs:>8.3} s {:>12.0} {unit}/s",
        n as f64 / secs.max(1e-9)
    );
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

pub fn run(rows: u64, root: Option<PathBuf>, pool_bytes: usize) -> Result<(), Error> {
    let tmp;
    let root = match root {
        Some(r) => r,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("raiz-demo-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            tmp.path().to_path_buf()
        }
    };
    println!("raiz demo — rootpath {}", root.display());
    println!("  buffer pool {} MiB\n", pool_bytes >> 20);
    let db = Database::open_with(&root, Options::default().pool_bytes(pool_bytes))?;
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
    rate(
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
    rate("random read by recno", rows, "records", started);

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
    rate("random seek by X3_CAMPO + read", rows, "seeks", started);
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
        "\nbuffer pool: {} hits, {} misses, {} evictions, {} write-backs",
        stats.hits, stats.misses, stats.evictions, stats.writebacks
    );
    Ok(())
}

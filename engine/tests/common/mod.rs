//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use raiz_engine::storage::{FaultStorage, MemoryStorage, Storage};
use raiz_engine::{Database, Date, Field, FieldType, Memo, Options, Schema, Value};

/// A schema with every field type.
pub fn all_types() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(8)),
        Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
        Field::new("WIDE", FieldType::Numeric { len: 30, dec: 6 }),
        Field::new("DAY", FieldType::Date),
        Field::new("ACTIVE", FieldType::Logical),
        Field::new("NOTES", FieldType::Memo),
        Field::new("QTY", FieldType::Int64),
        Field::new("RATIO", FieldType::Float64),
        Field::new("RAW", FieldType::Binary(6)),
    ])
}

/// A record for [`all_types`] derived from `i`.
pub fn all_types_row(i: u64, memo: Option<Vec<u8>>) -> Vec<Value> {
    vec![
        Value::from(format!("C{i:06}").as_str()),
        Value::Numeric(raiz_engine::Decimal::new(i as i128 * 7 - 500, 2)),
        Value::Numeric(raiz_engine::Decimal::new(-(i as i128) * 1_000_001, 6)),
        Value::Date(Date::ymd(
            2000 + (i % 30) as u16,
            (i % 12 + 1) as u8,
            (i % 28 + 1) as u8,
        )),
        Value::Logical(i.is_multiple_of(3)),
        Value::Memo(memo.map_or(Memo::Empty, Memo::Data)),
        Value::Int64(i as i64 - 1000),
        Value::Float64(i as f64 / 3.0),
        Value::Binary(vec![i as u8; (i % 7) as usize]),
    ]
}

/// A database in memory with a small pool.
pub fn mem_db(pool: usize) -> (MemoryStorage, Database) {
    let s = MemoryStorage::new();
    let db = open_on(Arc::new(s.clone()), pool);
    (s, db)
}

/// Opens `/root` on `storage`.
pub fn open_on(storage: Arc<dyn Storage>, pool: usize) -> Database {
    Database::open_with(
        "/root",
        Options::default().storage(storage).pool_bytes(pool),
    )
    .expect("open")
}

/// A fault-injecting storage and a database on it.
pub fn fault_db(pool: usize) -> (FaultStorage, Database) {
    let s = FaultStorage::new();
    let db = open_on(Arc::new(s.clone()), pool);
    (s, db)
}

/// Char values are read back blank-padded to the field width.
pub fn pad(s: &str, n: usize) -> Value {
    Value::Char(format!("{s:<n$}"))
}

/// A bank: accounts moved between by numbered transfers, each logged with a memo,
/// so that the state after any number of transfers is known exactly.
pub mod bank {
    use raiz_engine::index::{IndexDef, Segment};
    use raiz_engine::{
        Database, Field, FieldType, Memo, RecordFormat, Schema, Session, TableOptions, Value,
    };

    /// Accounts in the bank.
    pub const ACCOUNTS: u64 = 20;

    pub fn setup(db: &Database) {
        let acc = Schema::new(vec![
            Field::new("ID", FieldType::Int64),
            Field::new("BAL", FieldType::Int64),
        ]);
        db.create_table("acc", &acc, TableOptions::default().page_size(4096))
            .unwrap();
        let log = Schema::new(vec![
            Field::new("K", FieldType::Int64),
            Field::new("NOTE", FieldType::Char(30)),
            Field::new("M", FieldType::Memo),
        ]);
        db.create_table(
            "log",
            &log,
            TableOptions::default()
                .page_size(4096)
                .format(RecordFormat::Variable),
        )
        .unwrap();
        let s = db.session();
        let mut a = s.open_table("acc").unwrap();
        a.create_index(&IndexDef::new("by_id", vec![Segment::field("ID")]).unique())
            .unwrap();
        a.create_index(&IndexDef::new(
            "by_bal",
            vec![Segment::field("BAL").descending()],
        ))
        .unwrap();
        let mut l = s.open_table("log").unwrap();
        l.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]).unique())
            .unwrap();
        s.begin().unwrap();
        for i in 0..ACCOUNTS {
            a.append(&[Value::Int64(i as i64), Value::Int64(1000)])
                .unwrap();
        }
        s.commit().unwrap();
    }

    /// Commit `k` (1-based): moves k from one account to another and logs it.
    pub fn transfer(s: &Session, k: u64) -> raiz_engine::Result<()> {
        let mut a = s.open_table("acc")?;
        let mut l = s.open_table("log")?;
        s.begin()?;
        let (from, to) = (k % ACCOUNTS + 1, (k * 7 + 3) % ACCOUNTS + 1);
        let r = (|| {
            let fb = a
                .read(from)?
                .get("BAL")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            a.update(
                from,
                &[Value::Int64(from as i64 - 1), Value::Int64(fb - k as i64)],
            )?;
            let tb = a.read(to)?.get("BAL").and_then(Value::as_i64).unwrap_or(0);
            a.update(
                to,
                &[Value::Int64(to as i64 - 1), Value::Int64(tb + k as i64)],
            )?;
            l.append(&[
                Value::Int64(k as i64),
                Value::from(format!("t{k}").as_str()),
                Value::Memo(Memo::Data(vec![k as u8; 50 + (k as usize * 131) % 3000])),
            ])?;
            Ok(())
        })();
        match r {
            Ok(()) => s.commit(),
            Err(e) => {
                let _ = s.rollback();
                Err(e)
            }
        }
    }

    /// Balances after the first `j` transfers.
    pub fn model(j: u64) -> Vec<i64> {
        let mut b = vec![1000i64; ACCOUNTS as usize];
        for k in 1..=j {
            let (from, to) = ((k % ACCOUNTS) as usize, ((k * 7 + 3) % ACCOUNTS) as usize);
            b[from] -= k as i64;
            b[to] += k as i64;
        }
        b
    }

    /// Checks the database holds exactly the first `j` transfers; returns `j`.
    pub fn committed_prefix(db: &Database) -> u64 {
        let s = db.session();
        let a = s.open_table("acc").unwrap();
        let l = s.open_table("log").unwrap();
        // A transfer that failed leaves its reserved log recno as a deleted blank.
        let logs: Vec<_> = l
            .snapshot()
            .unwrap()
            .into_iter()
            .filter(|r| !r.is_deleted())
            .collect();
        let j = logs.len() as u64;
        for (i, rec) in logs.iter().enumerate() {
            assert_eq!(
                rec.get("K"),
                Some(&Value::Int64(i as i64 + 1)),
                "log record {}",
                i + 1
            );
            let memo = l.read_memo(rec.recno(), "M").unwrap();
            let k = i + 1;
            assert_eq!(
                memo,
                vec![k as u8; 50 + (k * 131) % 3000],
                "memo of transfer {k}"
            );
        }
        let bals: Vec<i64> = a
            .snapshot()
            .unwrap()
            .iter()
            .map(|r| r.get("BAL").unwrap().as_i64().unwrap())
            .collect();
        assert_eq!(
            bals,
            model(j),
            "balances match exactly the first {j} transfers"
        );
        assert!(a.check(5).unwrap().is_ok(), "{:?}", a.check(5).unwrap());
        assert!(l.check(5).unwrap().is_ok(), "{:?}", l.check(5).unwrap());
        j
    }
}

/// A tiny xorshift generator for seeded schedules.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

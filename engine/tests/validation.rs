//! Every value and definition the engine refuses, each with a typed error naming
//! what it concerns, and the data left exactly as it was.

mod common;

use raiz_engine::schema::MAX_VAR_FIELD;
use raiz_engine::{
    Database, Date, Decimal, Durability, Error, Field, FieldType, Memo, RecordFormat, Schema,
    TableOptions, Value,
};

fn setup(format: RecordFormat) -> (Database, raiz_engine::Table) {
    let (_s, db) = common::mem_db(1 << 20);
    db.create_table(
        "items",
        &common::all_types(),
        TableOptions::default().format(format),
    )
    .unwrap();
    let mut t = db.session().open_table("items").unwrap();
    for i in 0..3 {
        t.append(&common::all_types_row(i, Some(b"memo".to_vec())))
            .unwrap();
    }
    (db, t)
}

fn snapshot(t: &raiz_engine::Table) -> Vec<(Vec<Value>, bool, Vec<u8>)> {
    (1..=t.record_count())
        .map(|r| {
            let rec = t.read(r).unwrap();
            (
                rec.values().to_vec(),
                rec.is_deleted(),
                t.read_memo(r, "NOTES").unwrap(),
            )
        })
        .collect()
}

/// Applies `bad` at field `field` as an append and as an update of record 2;
/// both must fail with an InvalidValue naming table and field, changing nothing.
fn refused(field: usize, bad: Value, reason_part: &str) {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let (_db, mut t) = setup(format);
        let before = snapshot(&t);
        let mut v = common::all_types_row(9, None);
        v[field] = bad.clone();
        for result in [t.append(&v).map(|_| ()), t.update(2, &v)] {
            match result {
                Err(Error::InvalidValue {
                    table,
                    field: f,
                    reason,
                    value,
                }) => {
                    assert_eq!(table, "items");
                    assert_eq!(f, common::all_types().fields()[field].name);
                    assert!(reason.contains(reason_part), "{reason} / {value}");
                }
                other => panic!("{bad:?}: expected InvalidValue, got {other:?}"),
            }
        }
        assert_eq!(snapshot(&t), before, "{bad:?} changed the data");
    }
}

#[test]
fn too_wide_text_is_refused() {
    refused(0, Value::from("ABCDEFGHI"), "do not fit in Char(8)");
    refused(0, Value::from("çççççç"), "do not fit in Char(8)");
}

#[test]
fn numbers_that_do_not_fit_their_precision_are_refused() {
    refused(
        1,
        Value::Numeric("1234567890.00".parse().unwrap()),
        "holds 12",
    );
    refused(1, Value::Numeric("1.005".parse().unwrap()), "round");
    refused(
        1,
        Value::Numeric("-123456789.99".parse().unwrap()),
        "holds 12",
    );
    refused(2, Value::Numeric("1.0000001".parse().unwrap()), "round");
}

#[test]
fn impossible_dates_are_refused() {
    refused(
        3,
        Value::Date(Date::ymd(2023, 2, 29)),
        "not a real calendar date",
    );
    refused(
        3,
        Value::Date(Date::ymd(2024, 0, 10)),
        "not a real calendar date",
    );
    refused(
        3,
        Value::Date(Date::from_yyyymmdd(99_999_999)),
        "not a real calendar date",
    );
}

#[test]
fn wrong_types_are_refused() {
    refused(0, Value::Int64(5), "cannot be stored in a Char(8)");
    refused(
        1,
        Value::Float64(1.5),
        "cannot be stored in a Numeric(12,2)",
    );
    refused(3, Value::from("20240101"), "cannot be stored in a Date");
    refused(4, Value::Int64(1), "cannot be stored in a Logical");
    refused(5, Value::from("text"), "cannot be stored in a Memo");
    refused(
        6,
        Value::Numeric(Decimal::new(1, 0)),
        "cannot be stored in a Int64",
    );
    refused(7, Value::Float64(f64::INFINITY), "finite");
    refused(8, Value::Binary(vec![0; 7]), "do not fit in Binary(6)");
}

#[test]
fn exact_conversions_are_accepted() {
    let (_db, mut t) = setup(RecordFormat::Fixed);
    let mut v = common::all_types_row(1, None);
    v[1] = Value::Int64(-99_999_999); // -99999999.00 is 12 wide
    v[0] = Value::from("ABCDEFGH      "); // excess is blanks only
    v[1 + 1] = Value::Numeric("12.5".parse().unwrap());
    let r = t.append(&v).unwrap();
    let rec = t.read(r).unwrap();
    assert_eq!(rec.values()[0], Value::from("ABCDEFGH"));
    assert_eq!(
        rec.values()[1],
        Value::Numeric(Decimal::new(-9_999_999_900, 2))
    );
    assert_eq!(
        rec.values()[2].as_decimal().unwrap().to_string(),
        "12.500000"
    );
}

#[test]
fn wrong_field_count_is_refused() {
    let (_db, mut t) = setup(RecordFormat::Fixed);
    let before = snapshot(&t);
    let v = common::all_types_row(1, None);
    assert!(matches!(
        t.append(&v[..3]),
        Err(Error::FieldCount {
            expected: 9,
            found: 3,
            ..
        })
    ));
    assert!(matches!(t.update(1, &[]), Err(Error::FieldCount { .. })));
    assert_eq!(snapshot(&t), before);
}

#[test]
fn missing_records_are_errors_not_appends() {
    let (_db, mut t) = setup(RecordFormat::Fixed);
    let before = snapshot(&t);
    let v = common::all_types_row(1, None);
    for recno in [0, 4, u64::MAX] {
        assert!(matches!(
            t.update(recno, &v),
            Err(Error::NoSuchRecord { count: 3, .. })
        ));
        assert!(matches!(t.delete(recno), Err(Error::NoSuchRecord { .. })));
        assert!(matches!(t.recall(recno), Err(Error::NoSuchRecord { .. })));
        assert!(matches!(t.read(recno), Err(Error::NoSuchRecord { .. })));
        assert!(matches!(
            t.read_memo(recno, "NOTES"),
            Err(Error::NoSuchRecord { .. })
        ));
    }
    assert_eq!(snapshot(&t), before);
    assert!(matches!(
        t.read_memo(1, "NOPE"),
        Err(Error::NoSuchField { .. })
    ));
    assert!(matches!(
        t.read_memo(1, "CODE"),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn delete_keeps_the_record_readable_and_recall_restores_it() {
    let (_db, mut t) = setup(RecordFormat::Variable);
    let before = t.read(2).unwrap();
    t.delete(2).unwrap();
    t.delete(2).unwrap();
    assert_eq!(t.deleted_count(), 1);
    let del = t.read(2).unwrap();
    assert!(del.is_deleted());
    assert_eq!(del.values(), before.values());
    assert_eq!(t.read_memo(2, "NOTES").unwrap(), b"memo");
    t.recall(2).unwrap();
    t.recall(2).unwrap();
    assert_eq!(t.deleted_count(), 0);
    assert!(!t.read(2).unwrap().is_deleted());
}

#[test]
fn bad_definitions_are_refused() {
    let (_s, db) = common::mem_db(1 << 20);
    let one = |ty| Schema::new(vec![Field::new("F", ty)]);
    let cases: Vec<(Schema, TableOptions, &str)> = vec![
        (
            Schema::new(vec![]),
            TableOptions::default(),
            "at least one field",
        ),
        (one(FieldType::Char(0)), TableOptions::default(), "width 0"),
        (
            one(FieldType::Numeric { len: 39, dec: 0 }),
            TableOptions::default(),
            "outside 1..=38",
        ),
        (
            one(FieldType::Numeric { len: 3, dec: 2 }),
            TableOptions::default(),
            "no room",
        ),
        (
            one(FieldType::Char(9000)),
            TableOptions::default(),
            "does not fit in a page",
        ),
        (
            one(FieldType::Char(MAX_VAR_FIELD + 1)),
            TableOptions::default().format(RecordFormat::Variable),
            "limit",
        ),
        (
            one(FieldType::Int64),
            TableOptions::default().page_size(5000),
            "page size",
        ),
        (
            Schema::new(vec![
                Field::new("A", FieldType::Int64),
                Field::new("a", FieldType::Int64),
            ]),
            TableOptions::default(),
            "defined twice",
        ),
    ];
    for (schema, opts, part) in cases {
        match db.create_table("bad", &schema, opts) {
            Err(Error::InvalidSchema { table, reason }) => {
                assert_eq!(table, "bad");
                assert!(reason.contains(part), "{reason}");
            }
            other => panic!("expected InvalidSchema({part}), got {other:?}"),
        }
        assert!(
            !db.table_exists("bad").unwrap(),
            "a refused create leaves nothing"
        );
    }
    for bad_name in ["", "1X", "A B", "a-b", "ñ"] {
        let s = Schema::new(vec![Field::new(bad_name, FieldType::Int64)]);
        assert!(matches!(
            db.create_table("bad", &s, TableOptions::default()),
            Err(Error::InvalidName { what: "field", .. })
        ));
    }
    let many: Vec<Field> = (0..400)
        .map(|i| Field::new(format!("FIELD_WITH_A_LONG_NAME_{i:05}"), FieldType::Logical))
        .collect();
    match db.create_table(
        "wide",
        &Schema::new(many),
        TableOptions::default().page_size(4096),
    ) {
        Err(Error::InvalidSchema { reason, .. }) => {
            assert!(reason.contains("larger page size"), "{reason}")
        }
        other => panic!("expected a header-size error, got {other:?}"),
    }
    // Temporary tables belong to a session.
    match db.create_table(
        "later",
        &one(FieldType::Int64),
        TableOptions::default().durability(Durability::Temporary),
    ) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("Session::create_table"), "{msg}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // A serial field must be an Int64 of the table.
    for (field, ty) in [("NOPE", FieldType::Int64), ("F", FieldType::Char(3))] {
        let s = Schema::new(vec![Field::new("F", ty)]);
        assert!(db
            .create_table("ser", &s, TableOptions::default().serial(field))
            .is_err());
    }
}

#[test]
fn variable_records_reach_sixteen_mebibytes_and_refuse_beyond_the_limit() {
    let (_s, db) = common::mem_db(1 << 20);
    let schema = Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("BIG", FieldType::Binary(MAX_VAR_FIELD)),
        Field::new("TXT", FieldType::Char(MAX_VAR_FIELD)),
        Field::new("MORE", FieldType::Binary(MAX_VAR_FIELD)),
        Field::new("EVEN", FieldType::Binary(MAX_VAR_FIELD)),
        Field::new("LAST", FieldType::Binary(MAX_VAR_FIELD)),
    ]);
    db.create_table(
        "big",
        &schema,
        TableOptions::default().format(RecordFormat::Variable),
    )
    .unwrap();
    let mut t = db.session().open_table("big").unwrap();
    let big: Vec<u8> = (0..MAX_VAR_FIELD as usize)
        .map(|i| (i % 251) as u8)
        .collect();
    let small = |id| {
        vec![
            Value::Int64(id),
            Value::Binary(vec![]),
            Value::from(""),
            Value::Binary(vec![]),
            Value::Binary(vec![]),
            Value::Binary(vec![]),
        ]
    };
    t.append(&small(1)).unwrap();
    let mut v = small(2);
    v[1] = Value::Binary(big.clone());
    let r = t.append(&v).unwrap();
    t.append(&small(3)).unwrap();
    let rec = t.read(r).unwrap();
    assert_eq!(rec.values()[1], Value::Binary(big.clone()));
    // Five full fields exceed the 64 MiB record limit.
    let full = Value::Binary(big.clone());
    let v = vec![
        Value::Int64(4),
        full.clone(),
        Value::from("x"),
        full.clone(),
        full.clone(),
        full,
    ];
    assert!(matches!(t.append(&v), Err(Error::RecordTooLarge { .. })));
    assert_eq!(t.record_count(), 3);
    assert_eq!(t.read(3).unwrap().values()[0], Value::Int64(3));
    t.close().unwrap();
    let t = db.session().open_table("big").unwrap();
    assert_eq!(t.read(2).unwrap().values()[1], Value::Binary(big));
}

#[test]
fn stored_memo_reference_keeps_the_memo_and_empty_clears_it() {
    let (_db, mut t) = setup(RecordFormat::Fixed);
    let mut v = t.read(1).unwrap().into_values();
    v[6] = Value::Int64(77);
    t.update(1, &v).unwrap();
    assert_eq!(t.read_memo(1, "NOTES").unwrap(), b"memo");
    v[5] = Value::Memo(Memo::Empty);
    t.update(1, &v).unwrap();
    assert!(t.read_memo(1, "NOTES").unwrap().is_empty());
}

//! What xBase application code is written with, on real tables: folded name
//! indexes, typed field access, records built by field name, seek errors that
//! name the field and the index, and numeric decimal equality.

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::schema::{RecordBuilder, Rounding};
use raiz_engine::{
    Database, Date, Decimal, Error, Field, FieldType, Memo, RecordFormat, Schema, Table,
    TableOptions, Value,
};

fn customers(db: &Database, format: RecordFormat) -> Table {
    let schema = Schema::new(vec![
        Field::new("A1_COD", FieldType::Char(6)),
        Field::new("A1_NOME", FieldType::Char(12)),
        Field::new("A1_LC", FieldType::Numeric { len: 14, dec: 2 }),
        Field::new("A1_DTCAD", FieldType::Date),
        Field::new("A1_MSBLQL", FieldType::Logical),
        Field::new("A1_OBS", FieldType::Memo),
        Field::new("A1_SEQ", FieldType::Int64),
    ]);
    db.create_table("sa1", &schema, TableOptions::default().format(format))
        .unwrap();
    let mut t = db.session().open_table("sa1").unwrap();
    t.create_index(&IndexDef::new("sa1_1", vec![Segment::field("A1_COD")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "sa1_2",
        vec![Segment::field("A1_NOME").fold(), Segment::field("A1_COD")],
    ))
    .unwrap();
    t
}

const NAMES: [&str; 8] = [
    "ZULMIRA", "Ângela", "Érico", "andré", "ANGELA", "João", "Joana", "Çelik",
];

fn fill(t: &mut Table) {
    for (i, name) in NAMES.iter().enumerate() {
        let b = RecordBuilder::new(t.schema())
            .set("A1_COD", format!("{:06}", i + 1))
            .unwrap()
            .set("A1_NOME", *name)
            .unwrap()
            .set("A1_LC", Decimal::new(i as i128 * 1050, 2))
            .unwrap()
            .set("A1_DTCAD", Date::ymd(2024, 1, i as u8 + 1))
            .unwrap()
            .set("A1_SEQ", i as i64)
            .unwrap();
        t.append(b.values()).unwrap();
    }
}

fn names_in_order(t: &mut Table) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = t.first().unwrap();
    while more {
        out.push(t.record().unwrap().string("A1_NOME").unwrap());
        more = t.next().unwrap();
    }
    out
}

#[test]
fn a_folded_name_index_sorts_and_seeks_without_accents() {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::open(dir.path()).unwrap();
            let mut t = customers(&db, format);
            fill(&mut t);
            t.set_order(Some("sa1_2")).unwrap();
            assert_eq!(
                names_in_order(&mut t),
                ["andré", "Ângela", "ANGELA", "Çelik", "Érico", "Joana", "João", "ZULMIRA"],
                "{format:?}"
            );
            t.close().unwrap();
        }
        // The folded definition is stored in the header and survives reopening.
        let db = Database::open(dir.path()).unwrap();
        let mut t = db.session().open_table("sa1").unwrap();
        let info = t.info();
        let def = info
            .indexes
            .iter()
            .map(|(d, _)| d)
            .find(|d| d.name == "sa1_2")
            .unwrap();
        assert!(def.segments[0].fold && !def.segments[1].fold);
        t.set_order(Some("sa1_2")).unwrap();
        // With and without accents, in any case, both "Ângela"s are found.
        for sought in ["angela", "ÂNGELA", "Ângela", "ANGELA"] {
            assert!(t.seek(&[Value::from(sought)]).unwrap(), "{sought}");
            assert_eq!(t.record().unwrap().str("A1_COD").unwrap(), "000002");
            assert!(t.next().unwrap());
            assert_eq!(t.record().unwrap().str("A1_NOME").unwrap(), "ANGELA");
        }
        // A prefix, and a whole key with its second segment.
        assert!(t.seek(&[Value::from("JOÃ")]).unwrap());
        assert_eq!(t.record().unwrap().str("A1_NOME").unwrap(), "Joana");
        assert!(t.seek(&[Value::from("joao")]).unwrap());
        assert_eq!(t.record().unwrap().str("A1_NOME").unwrap(), "João");
        assert!(t
            .seek(&[Value::from("erico"), Value::from("000003")])
            .unwrap());
        assert!(!t.seek(&[Value::from("Erica")]).unwrap());
        assert_eq!(
            t.count_range(
                Some(&[Value::from("ANGELA")]),
                Some(&[Value::from("ângela")])
            )
            .unwrap(),
            2
        );
        // A rewrite keeps the definition and the order.
        t.pack().unwrap();
        t.set_order(Some("sa1_2")).unwrap();
        assert_eq!(names_in_order(&mut t)[..2], ["andré", "Ângela"]);
    }
}

#[test]
fn a_seek_error_names_the_field_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let mut t = customers(&db, RecordFormat::Fixed);
    t.set_order(Some("sa1_1")).unwrap();
    let e = t.seek(&[Value::Int64(1)]).unwrap_err();
    let Error::InvalidValue {
        table,
        field,
        reason,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((table.as_str(), field.as_str()), ("sa1", "A1_COD"));
    assert_eq!(
        reason,
        "index sa1_1, segment A1_COD: a Int64 value cannot seek a Char(6) segment"
    );
}

#[test]
fn typed_access_and_updates_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let mut t = customers(&db, RecordFormat::Fixed);
    fill(&mut t);
    let r = t.read(2).unwrap();
    assert_eq!(r.str("A1_NOME").unwrap(), "Ângela");
    assert_eq!(r.string("a1_cod").unwrap(), "000002");
    assert_eq!(r.dec("A1_LC").unwrap().to_string(), "10.50");
    assert_eq!(r.dec("A1_SEQ").unwrap(), Decimal::ONE);
    assert_eq!(r.int("A1_SEQ").unwrap(), 1);
    assert_eq!(r.date("A1_DTCAD").unwrap(), Date::ymd(2024, 1, 2));
    assert!(!r.bool("A1_MSBLQL").unwrap());
    assert_eq!(r.memo("A1_OBS").unwrap(), &Memo::Empty);
    let e = r.int("A1_LC").unwrap_err();
    assert!(
        e.to_string()
            .contains("field A1_LC: is Numeric(14,2) and has decimals"),
        "{e}"
    );
    let e = r.dec("A1_NOME").unwrap_err();
    assert!(
        e.to_string()
            .contains("field A1_NOME: is Char(12), not a number"),
        "{e}"
    );

    // An order of business: raise the limit by 10%, rounded as xBase Round().
    let lc = r.dec("A1_LC").unwrap();
    let raised = lc.try_mul("1.1".parse().unwrap()).unwrap().round(2);
    assert_eq!(raised.to_string(), "11.55");
    let b = r
        .to_builder()
        .set("A1_LC", raised)
        .unwrap()
        .set("A1_OBS", "raised")
        .unwrap()
        .set("A1_MSBLQL", true)
        .unwrap();
    t.update(2, b.values()).unwrap();
    let r = t.read(2).unwrap();
    assert_eq!(r.dec("A1_LC").unwrap(), "11.55".parse().unwrap());
    assert!(r.bool("A1_MSBLQL").unwrap());
    assert_eq!(t.read_memo(2, "A1_OBS").unwrap(), b"raised");
    assert_eq!(r.str("A1_NOME").unwrap(), "Ângela");

    // The stored memo is kept by a later update that does not set it.
    let b = r.to_builder().set("A1_LC", 0).unwrap();
    t.update(2, b.values()).unwrap();
    assert_eq!(t.read_memo(2, "A1_OBS").unwrap(), b"raised");

    // Average limit: a division at a chosen scale.
    let mut total = Decimal::ZERO;
    let mut n = 0;
    let mut more = t.first().unwrap();
    while more {
        total = total
            .try_add(t.record().unwrap().dec("A1_LC").unwrap())
            .unwrap();
        n += 1;
        more = t.next().unwrap();
    }
    let avg = total
        .try_div(Decimal::from(n), 2, Rounding::HalfUp)
        .unwrap();
    assert_eq!(total.to_string(), "283.50"); // 10.50 × (0+2+3+…+7): record 2 now 0
    assert_eq!(avg.to_string(), "35.44"); // 35.4375
}

#[test]
fn decimal_values_compare_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let mut t = customers(&db, RecordFormat::Fixed);
    let b = t
        .schema()
        .blank()
        .set("A1_COD", "X")
        .unwrap()
        .set("A1_LC", Decimal::new(15, 1))
        .unwrap();
    let r = t.append(&b.into_values()).unwrap();
    // Stored at the field's scale (1.50), equal to the 1.5 written.
    let got = t.read(r).unwrap();
    assert_eq!(got.get("A1_LC"), Some(&Value::Numeric(Decimal::new(15, 1))));
    assert_eq!(got.dec("A1_LC").unwrap().scale(), 2);
    // A value written with fewer decimals than its field still seeks and ranges.
    t.create_index(&IndexDef::new("by_lc", vec![Segment::field("A1_LC")]))
        .unwrap();
    t.set_order(Some("by_lc")).unwrap();
    assert!(t.seek(&[Value::Numeric("1.5".parse().unwrap())]).unwrap());
    assert!(t.seek(&[Value::Numeric("1.500".parse().unwrap())]).unwrap());
}

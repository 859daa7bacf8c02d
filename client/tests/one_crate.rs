//! An application written against `raiz_client` alone: the engine's data
//! types come re-exported, and their errors keep their kinds.

use raiz_client::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_client::{
    Connection, Date, Decimal, DecimalError, Durability, Error, ErrorKind, Field, FieldType, Memo,
    RecordBuilder, RecordFormat, Rounding, Schema, TableOptions, Value,
};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("B1_COD", FieldType::Char(8)),
        Field::new("B1_DESC", FieldType::Char(30)),
        Field::new("B1_PRV", FieldType::Numeric { len: 12, dec: 2 }),
        Field::new("B1_ESTOQ", FieldType::Int64),
        Field::new("B1_ATIVO", FieldType::Logical),
        Field::new("B1_OBS", FieldType::Memo),
        Field::new("B1_DTINC", FieldType::Date),
    ])
}

#[test]
fn an_application_needs_only_raiz_client() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let conn = Connection::connect(&format!("file:{}", dir.path().display()))?;
    let s = conn.session()?;
    let opts = TableOptions {
        format: RecordFormat::Variable,
        durability: Durability::Logged,
        ..TableOptions::default()
    };
    s.create_table("sb1", &schema(), opts)?;
    let mut t = s.open_table("sb1")?;
    t.create_index(&IndexDef::new("sb1_1", vec![Segment::field("B1_COD")]).unique())?;
    t.create_index(
        &IndexDef::new("sb1_2", vec![Segment::field("B1_DESC").fold()]).when(Condition::cmp(
            "B1_ATIVO",
            CmpOp::Eq,
            Literal::Logical(true),
        )),
    )?;

    let items = [
        ("P001", "Pão de açúcar", "4.99", 10),
        ("P002", "PAO FRANCES", "0.75", 300),
        ("P003", "Água mineral", "2.50", 48),
        ("P004", "açaí", "12.90", 5),
    ];
    for (cod, desc, prv, estoq) in items {
        let b = RecordBuilder::new(t.schema())
            .set("B1_COD", cod)?
            .set("B1_DESC", desc)?
            .set("B1_PRV", prv.parse::<Decimal>()?)?
            .set("B1_ESTOQ", estoq)?
            .set("B1_ATIVO", true)?
            .set("B1_OBS", format!("{desc}: notes"))?
            .set("B1_DTINC", Date::ymd(2024, 3, 1))?;
        t.append(b.values())?;
    }

    t.set_order(Some("sb1_2"))?;
    let mut descs = Vec::new();
    let mut more = t.first()?;
    while more {
        descs.push(t.record()?.string("B1_DESC")?);
        more = t.next()?;
    }
    assert_eq!(
        descs,
        ["açaí", "Água mineral", "Pão de açúcar", "PAO FRANCES"]
    );
    assert!(t.seek(&[Value::from("pao")])?);
    assert_eq!(t.record()?.str("B1_COD")?, "P001");

    // Stock value of everything, exact.
    let mut total = Decimal::ZERO;
    for rec in t.range(None, None)? {
        let rec = rec?;
        let line = rec
            .dec("B1_PRV")?
            .try_mul(Decimal::from(rec.int("B1_ESTOQ")?))?;
        total = total.try_add(line)?;
    }
    assert_eq!(total.to_string(), "459.40"); // 49.90 + 225.00 + 120.00 + 64.50

    // An update by name: the record's values with two fields changed.
    t.seek(&[Value::from("AGUA")])?;
    let rec = t.record()?;
    let b = rec
        .to_builder()
        .set("B1_ESTOQ", rec.int("B1_ESTOQ")? - 8)?
        .set(
            "B1_PRV",
            rec.dec("B1_PRV")?.try_mul("1.07".parse()?)?.round(2),
        )?;
    t.update(rec.recno(), b.values())?;
    let rec = t.read(rec.recno())?;
    assert_eq!(
        (rec.int("B1_ESTOQ")?, rec.dec("B1_PRV")?.to_string()),
        (40, "2.68".into())
    );
    assert!(matches!(rec.memo("B1_OBS")?, Memo::Stored(_)));
    assert_eq!(
        t.read_memo(rec.recno(), "B1_OBS")?,
        "Água mineral: notes".as_bytes()
    );

    // Engine errors keep their kinds through the client's error type.
    let dec = |name: &str| -> raiz_client::Result<Decimal> { Ok(rec.dec(name)?) };
    let kind = |r: raiz_client::Result<Decimal>| r.map_err(|e: Error| e.kind()).unwrap_err();
    assert_eq!(kind(dec("B1_DESC")), ErrorKind::InvalidValue);
    assert_eq!(kind(dec("B1_NOPE")), ErrorKind::NoSuchField);
    let e = t.seek(&[Value::Int64(1)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    assert!(
        e.to_string()
            .contains("field B1_DESC: index sb1_2, segment B1_DESC"),
        "{e}"
    );

    // Decimal errors are typed too.
    let e = Decimal::ONE
        .try_div(Decimal::ZERO, 2, Rounding::HalfUp)
        .unwrap_err();
    assert!(matches!(e, DecimalError::DivisionByZero { .. }));
    Ok(())
}

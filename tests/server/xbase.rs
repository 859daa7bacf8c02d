//! xBase navigation through `raiz-client`, embedded and against a real
//! `raiz serve`: every behaviour is one scenario run in both modes with the same
//! assertions — the phantom record, `goto` out of range, a new handle on the
//! first record, skips from the empty position, scopes per order, `found()`,
//! key count and position, soft last-seeks, dates sought as text — with reads
//! ahead in between, so the remote handle must agree step by step after them.

use raiz_client::{Connection, Session, Table};
use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_engine::{Date, Field, FieldType, Memo, Schema, TableOptions, Value};

use crate::harness::Server;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("KEY", FieldType::Char(4)),
        Field::new("N", FieldType::Int64),
        Field::new("DAY", FieldType::Date),
        Field::new("NOTE", FieldType::Memo),
    ])
}

fn row(key: &str, n: i64) -> Vec<Value> {
    vec![
        Value::from(key),
        Value::Int64(n),
        Value::Date(Date::ymd(2020 + n as u16 % 5, 1 + n as u8 % 12, 1)),
        Value::Memo(Memo::Data(vec![b'm'; n as usize % 3])),
    ]
}

/// A fresh table `name` of `rows`, with indexes on KEY, N and DAY.
fn table(s: &Session, name: &str, rows: &[(&str, i64)]) -> Table {
    s.create_table(name, &schema(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table(name).unwrap();
    for (k, n) in rows {
        t.append(&row(k, *n)).unwrap();
    }
    for (i, f) in [("by_key", "KEY"), ("by_n", "N"), ("by_day", "DAY")] {
        t.create_index(&IndexDef::new(i, vec![Segment::field(f)]))
            .unwrap();
    }
    drop(t);
    s.open_table(name).unwrap()
}

fn text(t: &Table) -> String {
    match t.record().unwrap().get("KEY") {
        Some(Value::Char(s)) => s.trim_end().to_owned(),
        other => panic!("KEY is {other:?}"),
    }
}

fn at(t: &Table) -> (u64, bool, bool, bool) {
    (t.recno(), t.bof(), t.eof(), t.found())
}

fn phantom_record(s: &Session) {
    let mut t = table(s, "ph", &[("A", 1), ("B", 2), ("C", 3)]);
    assert_eq!(at(&t), (1, false, false, false), "open: the first record");
    // A scan that reads ahead runs into the phantom.
    while t.next().unwrap() {}
    assert_eq!(at(&t), (4, false, true, false));
    assert!(!t.on_record());
    let rec = t.record().unwrap();
    assert_eq!(rec.recno(), 4);
    assert_eq!(rec.values(), &schema().empty_record()[..]);
    assert!(t.read(4).is_err());
    // Back from it: the last record.
    assert!(t.skip(-1).unwrap());
    assert_eq!(text(&t), "C");
}

fn goto_out_of_range(s: &Session) {
    let mut t = table(s, "go", &[("A", 1), ("B", 2)]);
    s.set_hide_deleted(true).unwrap();
    t.delete(2).unwrap();
    t.goto(2).unwrap();
    assert_eq!(at(&t), (2, false, false, false), "goto ignores SET DELETED");
    for out in [0, 3, 50] {
        t.goto(out).unwrap();
        assert_eq!(at(&t), (3, true, true, false), "goto({out})");
        assert!(!t.on_record());
    }
    assert!(!t.skip(1).unwrap());
    assert_eq!(at(&t), (3, false, true, false), "a forward skip clears bof");
    t.goto(0).unwrap();
    assert!(t.skip(-1).unwrap(), "back from the phantom");
    assert_eq!(at(&t), (1, false, false, false), "record 2 is hidden");
    s.set_hide_deleted(false).unwrap();
}

fn open_and_pack_go_top(s: &Session) {
    let mut t = table(s, "op", &[("B", 1), ("A", 2), ("C", 3)]);
    let mut n = 0;
    while !t.eof() {
        n += 1;
        t.skip(1).unwrap();
    }
    assert_eq!(n, 3);
    t.delete(1).unwrap();
    t.goto(3).unwrap();
    t.pack().unwrap();
    assert_eq!(at(&t), (1, false, false, false));
    assert_eq!(text(&t), "A");
    s.create_table("op_empty", &schema(), TableOptions::default())
        .unwrap();
    let e = s.open_table("op_empty").unwrap();
    assert_eq!(at(&e), (1, true, true, false));
}

fn scopes_per_order(s: &Session) {
    let mut t = table(s, "sc", &[("A", 5), ("B", 4), ("C", 3), ("D", 2), ("E", 1)]);
    t.set_order(Some("by_key")).unwrap();
    t.set_scope(Some(&[Value::from("B")]), Some(&[Value::from("C")]))
        .unwrap();
    t.set_order(Some("by_n")).unwrap();
    assert_eq!(t.key_count().unwrap(), 5);
    t.set_order(Some("by_key")).unwrap();
    assert!(t.first().unwrap());
    let mut seen = vec![text(&t)];
    while t.skip(1).unwrap() {
        seen.push(text(&t));
    }
    assert_eq!(seen, ["B", "C"], "by_key's scope is in force again");
    assert!(t.eof());
}

fn found_flag(s: &Session) {
    let mut t = table(s, "fo", &[("A", 1), ("B", 2), ("C", 3)]);
    t.set_order(Some("by_key")).unwrap();
    assert!(t.seek(&[Value::from("B")]).unwrap());
    assert!(t.found());
    // A seek reads ahead; stepping through it clears found.
    assert!(t.next().unwrap());
    assert!(!t.found());
    assert!(t.seek(&[Value::from("A")]).unwrap());
    t.set_order(Some("by_n")).unwrap();
    assert!(t.found(), "changing the order is not a move");
    t.skip(0).unwrap();
    assert!(!t.found());
    t.set_order(Some("by_key")).unwrap();
    assert!(!t.seek(&[Value::from("Z")]).unwrap());
    assert_eq!(at(&t), (4, false, true, false));
}

fn key_count_and_position(s: &Session) {
    let rows: Vec<(String, i64)> = (0..90).map(|i| (format!("K{:02}", i % 30), i)).collect();
    let refs: Vec<(&str, i64)> = rows.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let mut t = table(s, "kc", &refs);
    assert_eq!(t.key_count().unwrap(), 90);
    t.set_order(Some("by_key")).unwrap();
    t.set_scope(Some(&[Value::from("K1")]), Some(&[Value::from("K1")]))
        .unwrap();
    assert_eq!(t.key_count().unwrap(), 30);
    assert!(t.seek(&[Value::from("K15")]).unwrap());
    assert_eq!(t.key_no().unwrap(), 16);
    // Read ahead, then ask: the server is put back where the handle is.
    for _ in 0..4 {
        assert!(t.next().unwrap());
    }
    assert_eq!(t.key_no().unwrap(), 20);
    t.set_filter(Some(&Condition::cmp("N", CmpOp::Lt, Literal::Int64(30))))
        .unwrap();
    assert_eq!(t.key_count().unwrap(), 10);
    t.goto(0).unwrap();
    assert_eq!(t.key_no().unwrap(), 0);
}

fn soft_last_seek(s: &Session) {
    let mut t = table(s, "sl", &[("A", 1), ("B", 2), ("B", 3), ("D", 4)]);
    t.set_order(Some("by_key")).unwrap();
    assert!(t.seek_last_soft(&[Value::from("B")]).unwrap());
    assert_eq!((t.recno(), t.found()), (3, true));
    assert!(!t.seek_last_soft(&[Value::from("C")]).unwrap());
    assert_eq!(at(&t), (3, false, false, false));
    assert!(t.prev().unwrap());
    assert_eq!(t.recno(), 2);
    assert!(!t.seek_last_soft(&[Value::from("0")]).unwrap());
    assert!(t.eof());
}

fn dates_as_text(s: &Session) {
    let mut t = table(s, "dt", &[("A", 7), ("B", 2), ("C", 3), ("D", 0)]);
    t.set_order(Some("by_day")).unwrap();
    assert!(t.seek(&[Value::from("2022")]).unwrap());
    assert_eq!(text(&t), "B");
    assert!(t.next().unwrap());
    assert_eq!(text(&t), "A");
    assert!(t.seek_last(&[Value::from("2022")]).unwrap());
    assert_eq!(text(&t), "A");
    assert!(t.seek(&[Value::from("x")]).is_err());
}

fn all(s: &Session) {
    phantom_record(s);
    goto_out_of_range(s);
    open_and_pack_go_top(s);
    scopes_per_order(s);
    found_flag(s);
    key_count_and_position(s);
    soft_last_seek(s);
    dates_as_text(s);
}

#[test]
fn xbase_navigation_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::connect(&format!("file:{}", dir.path().display())).unwrap();
    all(&conn.session().unwrap());
}

#[test]
fn xbase_navigation_against_a_server() {
    let server = Server::start(&[]);
    all(&server.session("ana"));
}

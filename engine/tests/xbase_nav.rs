//! xBase navigation, exactly (DBFCDX / c-tree ISAM semantics): the phantom
//! record at eof, `goto` out of range, a new handle on the first record, bof
//! and eof after skips from the empty position, scopes that belong to their
//! order, `found()`, key count and key position, soft last-seeks and dates
//! sought as `DTOS()` text. One test per behaviour, then a property test that
//! runs random sequences against a small reference model of xBase navigation
//! (`model` below) and compares recno, bof, eof, found, the fields read — at
//! eof included — and the key count and position after every step.

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_engine::{
    Database, Date, Field, FieldType, Memo, Schema, Session, Table, TableOptions, Value,
};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("KEY", FieldType::Char(4)),
        Field::new("N", FieldType::Int64),
        Field::new("DAY", FieldType::Date),
        Field::new("OK", FieldType::Logical),
        Field::new("NOTE", FieldType::Memo),
    ])
}

fn row(key: &str, n: i64) -> Vec<Value> {
    vec![
        Value::from(key),
        Value::Int64(n),
        Value::Date(Date::ymd(2020 + n as u16 % 5, 1 + n as u8 % 12, 1)),
        Value::Logical(n % 2 == 0),
        Value::Memo(Memo::Data(vec![b'm'; n as usize % 3])),
    ]
}

/// A table of `rows` with indexes on KEY, on N and on DAY.
fn table(rows: &[(&str, i64)]) -> (Database, Session) {
    let (_s, db) = common::mem_db(1 << 20);
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    for (k, n) in rows {
        t.append(&row(k, *n)).unwrap();
    }
    t.create_index(&IndexDef::new("by_key", vec![Segment::field("KEY")]))
        .unwrap();
    t.create_index(&IndexDef::new("by_n", vec![Segment::field("N")]))
        .unwrap();
    t.create_index(&IndexDef::new("by_day", vec![Segment::field("DAY")]))
        .unwrap();
    (db, s)
}

fn text(v: &Value) -> String {
    match v {
        Value::Char(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn key_of(t: &Table) -> String {
    text(t.record().unwrap().get("KEY").unwrap())
}

#[test]
fn at_eof_the_handle_stands_on_a_blank_phantom_record() {
    let (_db, s) = table(&[("A", 1), ("B", 2)]);
    let mut t = s.open_table("t").unwrap();
    assert!(!t.skip(5).unwrap());
    assert!(t.eof() && !t.on_record());
    let phantom = t.record().unwrap();
    assert_eq!(phantom.recno(), 3, "lastrec + 1");
    assert_eq!(phantom.values(), &schema().empty_record()[..]);
    assert_eq!(phantom.get("KEY"), Some(&Value::from("    ")));
    assert_eq!(phantom.get("DAY"), Some(&Value::Date(Date::EMPTY)));
    assert_eq!(phantom.get("OK"), Some(&Value::Logical(false)));
    assert!(!phantom.is_deleted());
    assert!(t.read_memo(2, "NOTE").is_ok());
    assert!(t.read(3).is_err(), "read(recno) stays strict");
}

#[test]
fn goto_out_of_range_is_the_phantom_with_bof_and_eof() {
    let (_db, s) = table(&[("A", 1), ("B", 2), ("C", 3)]);
    let mut t = s.open_table("t").unwrap();
    t.delete(2).unwrap();
    s.set_hide_deleted(true);
    t.set_filter_condition(Some(&Condition::cmp("N", CmpOp::Ne, Literal::Int64(1))))
        .unwrap();
    t.goto(2).unwrap();
    assert_eq!((t.recno(), t.bof(), t.eof()), (2, false, false));
    assert!(t.on_record(), "goto ignores SET DELETED and the filter");
    t.goto(1).unwrap();
    assert_eq!(t.recno(), 1);
    for out in [0, 4, 99] {
        t.goto(out).unwrap();
        assert_eq!(
            (t.recno(), t.bof(), t.eof()),
            (4, true, true),
            "goto({out})"
        );
        assert!(!t.on_record());
    }
}

#[test]
fn a_new_handle_and_a_packed_table_stand_on_the_first_record() {
    let (_db, s) = table(&[("B", 1), ("A", 2), ("C", 3)]);
    let mut t = s.open_table("t").unwrap();
    assert_eq!((t.recno(), t.bof(), t.eof()), (1, false, false));
    let mut n = 0;
    while !t.eof() {
        n += 1;
        t.skip(1).unwrap();
    }
    assert_eq!(n, 3, "while !eof() needs no first()");
    t.delete(1).unwrap();
    t.goto(3).unwrap();
    t.pack().unwrap();
    assert_eq!((t.recno(), t.bof(), t.eof()), (1, false, false));
    assert_eq!(key_of(&t), "A   ");
    // An empty table: the new handle is on the phantom, bof and eof.
    s.create_table("e", &schema(), TableOptions::default())
        .unwrap();
    let e = s.open_table("e").unwrap();
    assert_eq!((e.recno(), e.bof(), e.eof()), (1, true, true));
    // Creating an index keeps the order and the position (documented).
    t.goto(2).unwrap();
    t.create_index(&IndexDef::new("k2", vec![Segment::field("N")]))
        .unwrap();
    assert_eq!((t.order(), t.recno()), (None, 2));
}

#[test]
fn a_forward_skip_from_the_empty_position_clears_bof_and_a_backward_one_clears_eof() {
    let (_db, s) = table(&[("A", 1), ("B", 2)]);
    let mut t = s.open_table("t").unwrap();
    t.goto(0).unwrap();
    assert!(t.bof() && t.eof());
    assert!(!t.skip(1).unwrap());
    assert!(t.eof() && !t.bof());
    t.goto(0).unwrap();
    assert!(
        t.skip(-1).unwrap(),
        "back from the phantom: the last record"
    );
    assert_eq!((t.recno(), t.bof(), t.eof()), (2, false, false));
    // Nothing visible: a backward skip is bof on the phantom, not eof.
    s.set_hide_deleted(true);
    t.delete(1).unwrap();
    t.delete(2).unwrap();
    t.goto(0).unwrap();
    assert!(!t.skip(-1).unwrap());
    assert_eq!((t.recno(), t.bof(), t.eof()), (3, true, false));
    assert!(!t.on_record());
}

#[test]
fn each_order_keeps_its_own_scope() {
    let (_db, s) = table(&[("A", 5), ("B", 4), ("C", 3), ("D", 2), ("E", 1)]);
    let mut t = s.open_table("t").unwrap();
    t.set_order(Some("by_key")).unwrap();
    t.set_scope(Some(&[Value::from("B")]), Some(&[Value::from("C")]))
        .unwrap();
    t.set_order(Some("by_n")).unwrap();
    assert_eq!(t.key_count().unwrap(), 5, "by_n has no scope");
    t.set_scope(Some(&[Value::Int64(4)]), None).unwrap();
    t.set_order(Some("by_key")).unwrap();
    t.set_order(Some("by_key")).unwrap();
    assert!(t.first().unwrap());
    assert_eq!(key_of(&t), "B   ", "back in by_key, its scope is in force");
    let mut seen = vec![key_of(&t)];
    while t.skip(1).unwrap() {
        seen.push(key_of(&t));
    }
    assert_eq!(seen, ["B   ", "C   "]);
    t.set_order(Some("by_n")).unwrap();
    assert!(t.first().unwrap());
    assert_eq!(t.record().unwrap().get("N"), Some(&Value::Int64(4)));
    assert_eq!(t.key_count().unwrap(), 2);
    t.clear_scope();
    assert_eq!(t.key_count().unwrap(), 5);
    t.set_order(Some("by_key")).unwrap();
    assert_eq!(
        t.key_count().unwrap(),
        2,
        "clearing by_n's scope kept by_key's"
    );
}

#[test]
fn found_is_set_by_the_last_seek_and_cleared_by_any_other_move() {
    let (_db, s) = table(&[("A", 1), ("B", 2), ("C", 3)]);
    let mut t = s.open_table("t").unwrap();
    t.set_order(Some("by_key")).unwrap();
    assert!(t.seek(&[Value::from("B")]).unwrap());
    assert!(t.found());
    t.update(2, &row("B", 7)).unwrap();
    assert!(t.found(), "writing is not a move");
    t.set_order(Some("by_n")).unwrap();
    assert!(t.found(), "changing the order is not a move");
    t.skip(0).unwrap();
    assert!(!t.found(), "skip 0 clears it");
    t.set_order(Some("by_key")).unwrap();
    assert!(!t.seek(&[Value::from("Z")]).unwrap());
    assert!(!t.found() && t.eof());
    assert!(t.seek(&[Value::from("A")]).unwrap());
    for mv in 0..5 {
        assert!(t.seek(&[Value::from("A")]).unwrap());
        match mv {
            0 => drop(t.skip(1).unwrap()),
            1 => drop(t.first().unwrap()),
            2 => drop(t.last().unwrap()),
            3 => t.goto(1).unwrap(),
            _ => drop(t.append(&row("D", 4)).unwrap()),
        }
        assert!(!t.found(), "move {mv} clears found");
    }
}

#[test]
fn key_count_and_key_position_honour_the_scope_deleted_records_and_the_filter() {
    let rows: Vec<(String, i64)> = (0..300).map(|i| (format!("K{:03}", i % 100), i)).collect();
    let refs: Vec<(&str, i64)> = rows.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let (_db, s) = table(&refs);
    let mut t = s.open_table("t").unwrap();
    assert_eq!(t.key_count().unwrap(), 300);
    assert_eq!(t.key_no().unwrap(), 1);
    t.set_order(Some("by_key")).unwrap();
    assert_eq!(t.key_count().unwrap(), 300);
    t.set_scope(Some(&[Value::from("K01")]), Some(&[Value::from("K02")]))
        .unwrap();
    assert_eq!(t.key_count().unwrap(), 60, "K010..K029, three each");
    assert!(t.seek(&[Value::from("K015")]).unwrap());
    assert_eq!(t.key_no().unwrap(), 16);
    t.goto(1).unwrap();
    assert_eq!(t.key_no().unwrap(), 0, "outside the scope");
    assert!(t.seek(&[Value::from("K015")]).unwrap());
    let r = t.recno();
    t.delete(r).unwrap();
    assert_eq!(
        t.key_count().unwrap(),
        60,
        "deleted records count until hidden"
    );
    s.set_hide_deleted(true);
    assert_eq!(t.key_count().unwrap(), 59);
    assert_eq!(t.key_no().unwrap(), 0, "a hidden record has no position");
    assert!(t.skip(1).unwrap());
    assert_eq!(t.key_no().unwrap(), 16);
    t.set_filter_condition(Some(&Condition::cmp("N", CmpOp::Lt, Literal::Int64(100))))
        .unwrap();
    assert_eq!(t.key_count().unwrap(), 19);
    t.set_order(None).unwrap();
    assert_eq!(t.key_count().unwrap(), 99);
    t.goto(50).unwrap();
    assert_eq!(t.key_no().unwrap(), 49, "record 16 is deleted and hidden");
    t.goto(0).unwrap();
    assert_eq!(t.key_no().unwrap(), 0);
}

#[test]
fn a_soft_last_seek_lands_on_the_last_key_before_a_missing_one() {
    let (_db, s) = table(&[("A", 1), ("B", 2), ("B", 3), ("D", 4)]);
    let mut t = s.open_table("t").unwrap();
    t.set_order(Some("by_key")).unwrap();
    assert!(t.seek_last_soft(&[Value::from("B")]).unwrap());
    assert_eq!(t.recno(), 3, "the last B");
    assert!(t.found());
    assert!(!t.seek_last_soft(&[Value::from("C")]).unwrap());
    assert_eq!(t.recno(), 3, "the last key before C");
    assert!(!t.found() && !t.eof() && !t.bof());
    assert!(!t.seek_last_soft(&[Value::from("0")]).unwrap());
    assert!(t.eof(), "no key at or before it");
    assert!(!t.seek_last(&[Value::from("C")]).unwrap());
    assert!(t.eof(), "an exact last-seek is eof when missing");
}

#[test]
fn a_date_segment_is_sought_by_its_dtos_text() {
    let (_db, s) = table(&[("A", 7), ("B", 2), ("C", 3), ("D", 0)]);
    let mut t = s.open_table("t").unwrap();
    t.set_order(Some("by_day")).unwrap();
    // Days: 2022-08-01, 2022-03-01, 2023-04-01, 2020-01-01.
    assert!(t.seek(&[Value::from("2022")]).unwrap());
    assert_eq!(key_of(&t), "B   ", "the first day of 2022");
    assert!(t.seek(&[Value::from("202208")]).unwrap());
    assert_eq!(key_of(&t), "A   ");
    assert!(t.seek(&[Value::from("20230401")]).unwrap());
    assert_eq!(key_of(&t), "C   ");
    assert!(t.seek(&[Value::Date(Date::ymd(2020, 1, 1))]).unwrap());
    assert!(!t.seek(&[Value::from("2021")]).unwrap());
    assert!(t.seek_soft(&[Value::from("2021")]).is_ok());
    assert_eq!(key_of(&t), "B   ");
    assert!(t.seek_last(&[Value::from("2022")]).unwrap());
    assert_eq!(key_of(&t), "A   ");
    assert!(t.seek(&[Value::from("20x2")]).is_err(), "digits only");
}

// ---- the reference model ----

/// A small model of xBase navigation (Harbour's DBFCDX) over records with a
/// Char key and a number, physical order or an index on either.
mod model {
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    pub struct Rec {
        pub key: String,
        pub n: i64,
        pub deleted: bool,
    }

    pub type Scope = (Option<String>, Option<String>);

    #[derive(Debug, Clone)]
    pub struct Nav {
        pub recs: Vec<Rec>,
        pub hide: bool,
        pub filter: bool,
        /// 0 physical, 1 by_key, 2 by_n.
        pub order: usize,
        pub scopes: HashMap<usize, Scope>,
        pub recno: u64,
        pub bof: bool,
        pub eof: bool,
        pub found: bool,
        pub on: bool,
    }

    /// The key of a record in order 1 or 2, as comparable text.
    pub fn sort_key(order: usize, r: &Rec) -> String {
        if order == 1 {
            format!("{:<4}", r.key)
        } else {
            format!("{:020}", r.n)
        }
    }

    impl Nav {
        pub fn new(recs: Vec<Rec>, hide: bool) -> Nav {
            let mut m = Nav {
                recs,
                hide,
                filter: false,
                order: 0,
                scopes: HashMap::new(),
                recno: 0,
                bof: false,
                eof: false,
                found: false,
                on: false,
            };
            m.first();
            m
        }

        fn count(&self) -> u64 {
            self.recs.len() as u64
        }

        fn scope(&self) -> Scope {
            self.scopes
                .get(&self.order)
                .cloned()
                .unwrap_or((None, None))
        }

        fn in_lower(&self, k: &str) -> bool {
            match self.scope().0 {
                Some(lo) => k[..lo.len().min(k.len())] >= *lo,
                None => true,
            }
        }

        fn in_upper(&self, k: &str) -> bool {
            match self.scope().1 {
                Some(hi) => k[..hi.len().min(k.len())] <= *hi,
                None => true,
            }
        }

        pub fn visible(&self, recno: u64) -> bool {
            let r = &self.recs[recno as usize - 1];
            let hidden = self.hide && r.deleted;
            let filtered = self.filter && r.n == 0;
            !hidden && !filtered
        }

        /// Every recno in the order (the raw entries), with its key.
        fn raw(&self) -> Vec<(String, u64)> {
            let mut v: Vec<(String, u64)> = (1..=self.count())
                .map(|r| {
                    let k = if self.order == 0 {
                        format!("{r:020}")
                    } else {
                        sort_key(self.order, &self.recs[r as usize - 1])
                    };
                    (k, r)
                })
                .collect();
            v.sort();
            v
        }

        fn in_scope(&self, k: &str) -> bool {
            self.order == 0 || (self.in_lower(k) && self.in_upper(k))
        }

        fn visible_in_scope(&self) -> Vec<(String, u64)> {
            self.raw()
                .into_iter()
                .filter(|(k, r)| self.in_scope(k) && self.visible(*r))
                .collect()
        }

        fn land(&mut self, r: Option<u64>) {
            match r {
                Some(r) => {
                    self.recno = r;
                    self.bof = false;
                    self.eof = false;
                    self.on = true;
                }
                None => {
                    self.recno = self.count() + 1;
                    self.eof = true;
                    self.on = false;
                }
            }
        }

        pub fn first(&mut self) -> bool {
            self.found = false;
            let r = self.visible_in_scope().first().map(|e| e.1);
            self.land(r);
            if r.is_none() {
                self.bof = true;
            }
            r.is_some()
        }

        pub fn last(&mut self) -> bool {
            self.found = false;
            let r = self.visible_in_scope().last().map(|e| e.1);
            self.land(r);
            if r.is_none() {
                self.bof = true;
            }
            r.is_some()
        }

        fn pos(&self, raw: &[(String, u64)]) -> usize {
            raw.iter()
                .position(|e| e.1 == self.recno)
                .expect("positioned")
        }

        pub fn next(&mut self) -> bool {
            self.found = false;
            if !self.on {
                self.land(None);
                self.bof = false;
                return false;
            }
            let raw = self.raw();
            let mut hit = None;
            for (k, r) in &raw[self.pos(&raw) + 1..] {
                if self.order != 0 && !self.in_upper(k) {
                    break;
                }
                if self.in_scope(k) && self.visible(*r) {
                    hit = Some(*r);
                    break;
                }
            }
            self.land(hit);
            self.bof = false;
            hit.is_some()
        }

        pub fn prev(&mut self) -> bool {
            self.found = false;
            let hit = if !self.on {
                self.visible_in_scope().last().map(|e| e.1)
            } else {
                let raw = self.raw();
                let mut hit = None;
                for (k, r) in raw[..self.pos(&raw)].iter().rev() {
                    if !self.in_scope(k) {
                        break;
                    }
                    if self.visible(*r) {
                        hit = Some(*r);
                        break;
                    }
                }
                hit
            };
            if hit.is_some() {
                self.land(hit);
                return true;
            }
            let top = self.visible_in_scope().first().map(|e| e.1);
            self.land(top);
            self.bof = true;
            self.eof = false;
            false
        }

        pub fn skip(&mut self, n: i64) -> bool {
            if n == 0 {
                self.found = false;
                return !self.bof && !self.eof;
            }
            for _ in 0..n.unsigned_abs() {
                let moved = if n > 0 { self.next() } else { self.prev() };
                if !moved {
                    return false;
                }
            }
            !self.bof && !self.eof
        }

        pub fn goto(&mut self, r: u64) {
            self.found = false;
            if r >= 1 && r <= self.count() {
                self.land(Some(r));
            } else {
                self.land(None);
                self.bof = true;
            }
        }

        /// A seek of `prefix` (in the order's key text).
        pub fn seek(&mut self, prefix: &str, soft: bool, last: bool) -> bool {
            let raw = self.raw();
            let le_end = |k: &str| k < prefix || k.starts_with(prefix);
            let mut hit = None;
            if !last {
                let start = match self.scope().0 {
                    Some(lo) if lo.as_str() > prefix => lo,
                    _ => prefix.to_owned(),
                };
                for (k, r) in raw.iter().filter(|(k, _)| k.as_str() >= start.as_str()) {
                    if !self.in_upper(k) {
                        break;
                    }
                    if self.in_lower(k) && self.visible(*r) {
                        hit = Some((k.clone(), *r));
                        break;
                    }
                }
            } else {
                for (k, r) in raw.iter().rev().filter(|(k, _)| le_end(k)) {
                    if !self.in_scope(k) {
                        break;
                    }
                    if self.visible(*r) {
                        hit = Some((k.clone(), *r));
                        break;
                    }
                }
                if hit.is_none() && soft {
                    let raw_last = raw.iter().rev().find(|(k, _)| le_end(k));
                    if raw_last.is_some_and(|(k, _)| self.in_upper(k)) {
                        hit = self.visible_in_scope().first().cloned();
                    }
                }
            }
            let exact = hit.as_ref().is_some_and(|(k, _)| k.starts_with(prefix));
            match hit {
                Some((_, r)) if exact || soft => self.land(Some(r)),
                _ => self.land(None),
            }
            self.bof = false;
            self.found = exact;
            exact
        }

        pub fn set_order(&mut self, order: usize) {
            self.order = order;
        }

        pub fn set_scope(&mut self, s: Scope) {
            if s == (None, None) {
                self.scopes.remove(&self.order);
            } else {
                self.scopes.insert(self.order, s);
            }
        }

        pub fn key_count(&self) -> u64 {
            self.visible_in_scope().len() as u64
        }

        pub fn key_no(&self) -> u64 {
            if !self.on {
                return 0;
            }
            self.visible_in_scope()
                .iter()
                .position(|e| e.1 == self.recno)
                .map_or(0, |p| p as u64 + 1)
        }
    }
}

/// One step of a random sequence.
#[derive(Debug, Clone)]
enum Op {
    Open,
    Order(usize),
    Scope(Option<usize>, Option<usize>),
    First,
    Last,
    Skip(i64),
    Goto(u64),
    Seek(usize, bool, bool),
    Delete(u64),
    Recall(u64),
    Append(usize, i64),
    HideDeleted(bool),
    Filter(bool),
}

const KEYS: [&str; 6] = ["A", "AB", "B", "BA", "C", "D"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Open),
        (0usize..3).prop_map(Op::Order),
        (
            proptest::option::of(0usize..KEYS.len()),
            proptest::option::of(0usize..KEYS.len())
        )
            .prop_map(|(a, b)| Op::Scope(a, b)),
        Just(Op::First),
        Just(Op::Last),
        (-3i64..=3).prop_map(Op::Skip),
        (0u64..14).prop_map(Op::Goto),
        (0usize..KEYS.len(), any::<bool>(), any::<bool>()).prop_map(|(k, s, l)| Op::Seek(k, s, l)),
        (1u64..13).prop_map(Op::Delete),
        (1u64..13).prop_map(Op::Recall),
        (0usize..KEYS.len(), 0i64..4).prop_map(|(k, n)| Op::Append(k, n)),
        any::<bool>().prop_map(Op::HideDeleted),
        any::<bool>().prop_map(Op::Filter),
    ]
}

const ORDERS: [Option<&str>; 3] = [None, Some("by_key"), Some("by_n")];

/// The seek key of KEYS[k] in `order` (by_n takes the digit count as a number).
fn seek_parts(order: usize, k: usize) -> (Vec<Value>, String) {
    if order == 2 {
        let n = k as i64 % 4;
        (vec![Value::Int64(n)], format!("{n:020}"))
    } else {
        (vec![Value::from(KEYS[k])], KEYS[k].to_owned())
    }
}

fn compare(t: &Table, m: &model::Nav, step: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        (t.recno(), t.bof(), t.eof(), t.found(), t.on_record()),
        (m.recno, m.bof, m.eof, m.found, m.on),
        "after {}",
        step
    );
    let rec = t.record().unwrap();
    prop_assert_eq!(rec.recno(), m.recno, "record number after {}", step);
    let (key, n, deleted) = if m.on {
        let r = &m.recs[m.recno as usize - 1];
        (format!("{:<4}", r.key), r.n, r.deleted)
    } else {
        ("    ".to_owned(), 0, false)
    };
    prop_assert_eq!(text(rec.get("KEY").unwrap()), key, "KEY after {}", step);
    prop_assert_eq!(rec.get("N"), Some(&Value::Int64(n)), "N after {}", step);
    prop_assert_eq!(rec.is_deleted(), deleted, "deleted flag after {}", step);
    prop_assert_eq!(
        t.key_count().unwrap(),
        m.key_count(),
        "key count after {}",
        step
    );
    prop_assert_eq!(t.key_no().unwrap(), m.key_no(), "key no after {}", step);
    Ok(())
}

fn run(initial: Vec<(usize, i64, bool)>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rows: Vec<(&str, i64)> = initial.iter().map(|(k, n, _)| (KEYS[*k], *n)).collect();
    let (_db, s) = table(&rows);
    let mut setup = s.open_table("t").unwrap();
    for (i, (_, _, del)) in initial.iter().enumerate() {
        if *del {
            setup.delete(i as u64 + 1).unwrap();
        }
    }
    drop(setup);
    let recs: Vec<model::Rec> = initial
        .iter()
        .map(|(k, n, d)| model::Rec {
            key: KEYS[*k].to_owned(),
            n: *n,
            deleted: *d,
        })
        .collect();
    let mut t = s.open_table("t").unwrap();
    let mut m = model::Nav::new(recs, false);
    compare(&t, &m, "open")?;
    let no_filter = Condition::cmp("N", CmpOp::Ne, Literal::Int64(0));
    let mut scopes: HashMap<usize, model::Scope> = HashMap::new();
    for (i, op) in ops.into_iter().enumerate() {
        let step = format!("step {i}: {op:?}");
        match op {
            Op::Open => {
                t = s.open_table("t").unwrap();
                let hide = m.hide;
                m = model::Nav::new(m.recs.clone(), hide);
                scopes.clear();
            }
            Op::Order(o) => {
                t.set_order(ORDERS[o]).unwrap();
                m.set_order(o);
            }
            Op::Scope(lo, hi) => {
                if m.order == 0 {
                    continue;
                }
                let part = |k: Option<usize>| k.map(|k| seek_parts(m.order, k));
                let (lo, hi) = (part(lo), part(hi));
                t.set_scope(
                    lo.as_ref().map(|p| p.0.as_slice()),
                    hi.as_ref().map(|p| p.0.as_slice()),
                )
                .unwrap();
                let sc = (lo.map(|p| p.1), hi.map(|p| p.1));
                scopes.insert(m.order, sc.clone());
                m.set_scope(sc);
            }
            Op::First => prop_assert_eq!(t.first().unwrap(), m.first(), "{}", step),
            Op::Last => prop_assert_eq!(t.last().unwrap(), m.last(), "{}", step),
            Op::Skip(n) => prop_assert_eq!(t.skip(n).unwrap(), m.skip(n), "{}", step),
            Op::Goto(r) => {
                t.goto(r).unwrap();
                m.goto(r);
            }
            Op::Seek(k, soft, last) => {
                if m.order == 0 {
                    continue;
                }
                let (key, text) = seek_parts(m.order, k);
                let got = match (soft, last) {
                    (false, false) => t.seek(&key),
                    (true, false) => t.seek_soft(&key),
                    (false, true) => t.seek_last(&key),
                    (true, true) => t.seek_last_soft(&key),
                }
                .unwrap();
                prop_assert_eq!(got, m.seek(&text, soft, last), "{}", step);
            }
            Op::Delete(r) | Op::Recall(r) => {
                if r as usize > m.recs.len() {
                    continue;
                }
                let del = matches!(op, Op::Delete(_));
                if del {
                    t.delete(r).unwrap();
                } else {
                    t.recall(r).unwrap();
                }
                m.recs[r as usize - 1].deleted = del;
            }
            Op::Append(k, n) => {
                let r = t.append(&row(KEYS[k], n)).unwrap();
                m.recs.push(model::Rec {
                    key: KEYS[k].to_owned(),
                    n,
                    deleted: false,
                });
                prop_assert_eq!(r, m.recs.len() as u64);
                m.found = false;
                m.land_on(r);
            }
            Op::HideDeleted(on) => {
                s.set_hide_deleted(on);
                m.hide = on;
            }
            Op::Filter(on) => {
                t.set_filter_condition(on.then_some(&no_filter)).unwrap();
                m.filter = on;
            }
        }
        compare(&t, &m, &step)?;
    }
    let report = t.check(5).unwrap();
    prop_assert!(report.is_ok(), "{:?}", report);
    Ok(())
}

impl model::Nav {
    fn land_on(&mut self, r: u64) {
        self.recno = r;
        self.bof = false;
        self.eof = false;
        self.on = true;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_navigation_follows_the_xbase_model(
        initial in proptest::collection::vec((0usize..KEYS.len(), 0i64..4, any::<bool>()), 0..10),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(initial, ops)?;
    }
}

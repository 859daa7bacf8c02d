//! How a query reads a table: the plan `best_index` chooses and the index
//! bounds a cursor derives from the query's values.
//!
//! Invariant: a plan only ever narrows what is read to a superset of the rows
//! the constraints admit. No constraint is marked omitted, so SQLite checks
//! every one again on each row the cursor returns; the bounds may therefore be
//! loose (a Char prefix, a decimal rounded outward) but never too tight. A
//! value that cannot be turned into a safe bound (a text compared with a
//! number, a decimal wider than the field) drops that bound.

use raiz_engine::index::IndexDef;
use raiz_engine::{Date, Decimal, FieldType, Rounding, Value};
use rusqlite::types::ValueRef;

/// The comparison a constraint makes, as far as plans care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `>` or `>=` (both read as `>=`)
    Lower,
    /// `<` or `<=` (both read as `<=`)
    Upper,
}

/// An index a plan may use: the fields of its usable leading segments.
#[derive(Debug, Clone)]
pub struct IndexShape {
    /// The index's name.
    pub name: String,
    /// Column and type of each leading segment that is a whole field in
    /// ascending order, as stored (no case folding, no part of a field).
    pub segments: Vec<(usize, FieldType)>,
    /// Segments of the key in all (usable or not).
    pub all_segments: usize,
    /// Unique among live records.
    pub unique: bool,
    /// Entries in the index.
    pub entries: u64,
}

impl IndexShape {
    /// The usable shape of `def`, if its records are all the table's (an
    /// index with a condition holds only some of them) and its first segment
    /// is usable. `column` finds a field's column.
    pub fn of(
        def: &IndexDef,
        entries: u64,
        column: impl Fn(&str) -> Option<(usize, FieldType)>,
    ) -> Option<IndexShape> {
        if def.condition.is_some() {
            return None;
        }
        let mut segments = Vec::new();
        for s in &def.segments {
            let Some((col, ty)) = column(&s.field) else {
                break;
            };
            let whole = match ty {
                FieldType::Char(n) => s.offset == 0 && s.len.is_none_or(|l| l >= n),
                _ => true,
            };
            if !whole || s.upper || s.fold || s.descending {
                break;
            }
            segments.push((col, ty));
        }
        (!segments.is_empty()).then(|| IndexShape {
            name: def.name.clone(),
            segments,
            all_segments: def.segments.len(),
            unique: def.unique,
            entries,
        })
    }
}

/// How a cursor reads its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every record in recno order.
    Scan,
    /// One record by its recno (the argument).
    Recno,
    /// An index range: `eq` equal leading segments, then optionally a lower
    /// and an upper bound on the next one. Arguments come in that order.
    Index {
        /// Position of the index in the table's list of shapes.
        index: usize,
        /// Leading segments given by equality.
        eq: usize,
        /// A lower bound follows the equalities.
        lower: bool,
        /// An upper bound follows.
        upper: bool,
    },
}

impl Plan {
    /// The plan as `best_index`'s string, read back by [`Plan::decode`].
    pub fn encode(&self) -> String {
        match self {
            Plan::Scan => "scan".into(),
            Plan::Recno => "recno".into(),
            Plan::Index {
                index,
                eq,
                lower,
                upper,
            } => format!(
                "index {index} {eq} {} {}",
                u8::from(*lower),
                u8::from(*upper)
            ),
        }
    }

    /// Reads a plan written by [`Plan::encode`].
    pub fn decode(s: &str) -> Option<Plan> {
        let mut parts = s.split(' ');
        match parts.next()? {
            "scan" => Some(Plan::Scan),
            "recno" => Some(Plan::Recno),
            "index" => {
                let mut n = || parts.next()?.parse::<usize>().ok();
                Some(Plan::Index {
                    index: n()?,
                    eq: n()?,
                    lower: n()? == 1,
                    upper: n()? == 1,
                })
            }
            _ => None,
        }
    }
}

/// A usable constraint offered to `best_index`: its position in SQLite's
/// list, its column (`None` for the rowid / recno) and comparison.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// Position in SQLite's constraint list.
    pub at: usize,
    /// The column (`None`: the recno).
    pub column: Option<usize>,
    /// The comparison.
    pub op: Op,
}

/// The chosen plan, the constraints it takes arguments from (in argument
/// order), its estimated rows and cost.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The plan.
    pub plan: Plan,
    /// Positions (in SQLite's list) of the constraints whose values the
    /// cursor receives, in order.
    pub args: Vec<usize>,
    /// Estimated rows.
    pub rows: f64,
    /// Estimated cost (records read, an index descent counted as a few).
    pub cost: f64,
}

/// Chooses how to read a table of `records` records with `indexes`, given
/// the usable constraints.
pub fn choose(records: u64, indexes: &[IndexShape], offers: &[Offer]) -> Choice {
    let n = records.max(1) as f64;
    let descent = n.log2().max(1.0);
    let mut best = Choice {
        plan: Plan::Scan,
        args: Vec::new(),
        rows: n,
        cost: n + 1.0,
    };
    if let Some(o) = offers.iter().find(|o| o.column.is_none() && o.op == Op::Eq) {
        return Choice {
            plan: Plan::Recno,
            args: vec![o.at],
            rows: 1.0,
            cost: 1.0,
        };
    }
    let find = |col: usize, op: Op| {
        offers
            .iter()
            .find(|o| o.column == Some(col) && o.op == op)
            .map(|o| o.at)
    };
    for (i, shape) in indexes.iter().enumerate() {
        let mut args = Vec::new();
        for &(col, _) in &shape.segments {
            match find(col, Op::Eq) {
                Some(at) => args.push(at),
                None => break,
            }
        }
        let eq = args.len();
        let (mut lower, mut upper) = (false, false);
        if let Some(&(col, ty)) = shape.segments.get(eq) {
            if ty != FieldType::Logical {
                if let Some(at) = find(col, Op::Lower) {
                    args.push(at);
                    lower = true;
                }
                if let Some(at) = find(col, Op::Upper) {
                    args.push(at);
                    upper = true;
                }
            }
        }
        if eq == 0 && !lower && !upper {
            continue;
        }
        let entries = shape.entries.max(1) as f64;
        let mut rows = if shape.unique && eq == shape.all_segments {
            1.0
        } else {
            // Each equal segment keeps a share of the entries: the whole
            // key's equality about √n of n (a foreign key's fan-out).
            entries.powf(1.0 - eq as f64 / (shape.all_segments as f64 + 1.0))
        };
        if eq == 0 {
            rows = entries;
        }
        if lower {
            rows /= 4.0;
        }
        if upper {
            rows /= 4.0;
        }
        let rows = rows.max(1.0);
        // An index read costs a descent, then a record read per entry (in
        // key order, not recno order: a little dearer than a scan's).
        let cost = descent + rows * 1.5;
        if cost < best.cost {
            best = Choice {
                plan: Plan::Index {
                    index: i,
                    eq,
                    lower,
                    upper,
                },
                args,
                rows,
                cost,
            };
        }
    }
    best
}

/// The engine value that bounds a segment of type `ty`, from the query's
/// value `v`, for comparison `op` — loosened outward where the types differ
/// (see the module's invariant), `None` when no safe bound exists.
pub fn bound(ty: FieldType, v: ValueRef<'_>, op: Op) -> Option<Value> {
    match (ty, v) {
        (FieldType::Char(_), ValueRef::Text(t)) => {
            let text = std::str::from_utf8(t).ok()?;
            match op {
                // As a key's last part a Char is a prefix, so `text` bounds
                // from below every string SQL orders at or after it.
                Op::Eq | Op::Lower => Some(Value::Char(text.to_owned())),
                // Stored keys are blank-padded: a string shorter than the
                // bound sorts by its blanks, which only order it correctly
                // against characters from the blank up. Cut the bound before
                // its first character below the blank; as a prefix bound it
                // still admits every string SQL orders at or before it.
                Op::Upper => {
                    let cut = text.find(|c: char| c < ' ').unwrap_or(text.len());
                    Some(Value::Char(text[..cut].to_owned()))
                }
            }
        }
        (FieldType::Numeric { dec, .. }, v) => {
            let d = match v {
                ValueRef::Integer(i) => Decimal::new(i128::from(i), 0),
                ValueRef::Real(f) if f.is_finite() => format!("{f}").parse::<Decimal>().ok()?,
                _ => return None,
            };
            match op {
                Op::Eq => d.rescale(dec).map(Value::Numeric),
                Op::Lower => Some(Value::Numeric(d.round_with(dec, Rounding::Floor))),
                Op::Upper => Some(Value::Numeric(d.round_with(dec, Rounding::Ceiling))),
            }
        }
        (FieldType::Int64, ValueRef::Integer(i)) => Some(Value::Int64(i)),
        (FieldType::Int64, ValueRef::Real(f)) if f.is_finite() => {
            let r = match op {
                Op::Eq if f.fract() != 0.0 => return None,
                Op::Eq => f,
                Op::Lower => f.floor(),
                Op::Upper => f.ceil(),
            };
            // Outside i64's range (or at its edge, where the float rounds)
            // no bound is safe: leave it open.
            (r > -9.2e18 && r < 9.2e18).then_some(Value::Int64(r as i64))
        }
        (FieldType::Float64, ValueRef::Real(f)) if f.is_finite() => Some(Value::Float64(f)),
        (FieldType::Float64, ValueRef::Integer(i)) if i.unsigned_abs() <= 1 << 53 => {
            Some(Value::Float64(i as f64))
        }
        (FieldType::Date, ValueRef::Text(t)) => {
            // Only a whole ISO date orders as the date does.
            let s = std::str::from_utf8(t).ok()?;
            let b = s.as_bytes();
            let iso = b.len() == 10 && b[4] == b'-' && b[7] == b'-';
            let d = Date::parse(s).filter(|d| iso && !d.is_empty())?;
            Some(Value::Date(d))
        }
        (FieldType::Logical, ValueRef::Integer(i)) if op == Op::Eq && (i == 0 || i == 1) => {
            Some(Value::Logical(i == 1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(segs: usize, unique: bool, entries: u64) -> IndexShape {
        IndexShape {
            name: "i".into(),
            segments: (0..segs).map(|c| (c, FieldType::Int64)).collect(),
            all_segments: segs,
            unique,
            entries,
        }
    }

    #[test]
    fn plans_round_trip() {
        for p in [
            Plan::Scan,
            Plan::Recno,
            Plan::Index {
                index: 3,
                eq: 2,
                lower: true,
                upper: false,
            },
        ] {
            assert_eq!(Plan::decode(&p.encode()), Some(p));
        }
        assert_eq!(Plan::decode("index 1"), None);
        assert_eq!(Plan::decode("nonsense"), None);
    }

    #[test]
    fn a_unique_key_beats_a_scan_and_a_recno_beats_all() {
        let idx = [shape(1, false, 1_000_000), shape(2, true, 1_000_000)];
        let offers = [
            Offer {
                at: 0,
                column: Some(0),
                op: Op::Eq,
            },
            Offer {
                at: 1,
                column: Some(1),
                op: Op::Eq,
            },
        ];
        let c = choose(1_000_000, &idx, &offers);
        assert_eq!(
            c.plan,
            Plan::Index {
                index: 1,
                eq: 2,
                lower: false,
                upper: false
            }
        );
        assert_eq!(c.args, vec![0, 1]);
        assert_eq!(c.rows, 1.0);
        let mut with_recno = offers.to_vec();
        with_recno.push(Offer {
            at: 2,
            column: None,
            op: Op::Eq,
        });
        assert_eq!(choose(1_000_000, &idx, &with_recno).plan, Plan::Recno);
        // No usable constraint: a scan.
        assert_eq!(choose(1_000_000, &idx, &[]).plan, Plan::Scan);
        // A range on the first segment.
        let c = choose(
            1_000_000,
            &idx,
            &[
                Offer {
                    at: 0,
                    column: Some(0),
                    op: Op::Lower,
                },
                Offer {
                    at: 1,
                    column: Some(0),
                    op: Op::Upper,
                },
            ],
        );
        assert_eq!(
            c.plan,
            Plan::Index {
                index: 0,
                eq: 0,
                lower: true,
                upper: true
            }
        );
    }

    #[test]
    fn char_bounds_are_never_too_tight() {
        // Every pair drawn from strings with control characters, blanks and
        // letters: the bound admits each string SQL admits.
        let alphabet = ["", "\t", " ", "A", "B", "\u{1}"];
        let mut strings = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for s in &strings {
                for a in alphabet {
                    next.push(format!("{s}{a}"));
                }
            }
            strings.extend(next);
        }
        strings.sort();
        strings.dedup();
        let width = 4usize;
        let pad = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            b.resize(width.max(b.len()), b' ');
            b.truncate(width);
            b
        };
        let stored: Vec<&String> = strings
            .iter()
            .filter(|s| s.len() <= width && !s.ends_with(' '))
            .collect();
        for b in &strings {
            let Some(Value::Char(lo)) =
                bound(FieldType::Char(4), ValueRef::Text(b.as_bytes()), Op::Lower)
            else {
                panic!()
            };
            let Some(Value::Char(hi)) =
                bound(FieldType::Char(4), ValueRef::Text(b.as_bytes()), Op::Upper)
            else {
                panic!()
            };
            let (lo, hi) = (lo.as_bytes(), hi.as_bytes());
            for s in &stored {
                let key = pad(s);
                if s.as_str() >= b.as_str() {
                    let l = &lo[..lo.len().min(width)];
                    assert!(
                        key.as_slice() >= l,
                        "{s:?} >= {b:?} but its key is below the bound"
                    );
                }
                if s.as_str() <= b.as_str() {
                    let h = &hi[..hi.len().min(width)];
                    assert!(
                        &key[..h.len().min(key.len())] <= h,
                        "{s:?} <= {b:?} but its key is past the bound"
                    );
                }
            }
        }
    }

    #[test]
    fn numeric_and_integer_bounds_round_outward() {
        let num = FieldType::Numeric { len: 10, dec: 2 };
        let v = |f: f64, op| match bound(num, ValueRef::Real(f), op) {
            Some(Value::Numeric(d)) => d.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(v(10.555, Op::Lower), "10.55");
        assert_eq!(v(10.555, Op::Upper), "10.56");
        assert_eq!(v(-10.555, Op::Lower), "-10.56");
        assert_eq!(v(10.5, Op::Eq), "10.50");
        assert_eq!(v(10.555, Op::Eq), "None");
        assert_eq!(
            bound(FieldType::Int64, ValueRef::Real(2.5), Op::Lower),
            Some(Value::Int64(2))
        );
        assert_eq!(
            bound(FieldType::Int64, ValueRef::Real(2.5), Op::Upper),
            Some(Value::Int64(3))
        );
        assert_eq!(bound(FieldType::Int64, ValueRef::Real(2.5), Op::Eq), None);
        assert_eq!(
            bound(FieldType::Int64, ValueRef::Real(1e300), Op::Lower),
            None
        );
        assert_eq!(bound(FieldType::Int64, ValueRef::Text(b"5"), Op::Eq), None);
        assert_eq!(
            bound(FieldType::Char(4), ValueRef::Integer(5), Op::Eq),
            None
        );
        assert_eq!(
            bound(FieldType::Date, ValueRef::Text(b"2026-01"), Op::Lower),
            None
        );
        assert_eq!(
            bound(FieldType::Date, ValueRef::Text(b"2026-01-31"), Op::Lower),
            Some(Value::Date(Date::ymd(2026, 1, 31)))
        );
        assert_eq!(
            bound(FieldType::Date, ValueRef::Text(b"20260131"), Op::Lower),
            None
        );
    }
}

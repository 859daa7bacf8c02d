//! `raiz import` and `raiz export` as users run them: real files, a real
//! rootpath, a real server; every value of every type kept, bad input named
//! by line and field, all or nothing; DBF files written by an independent
//! writer (Python's `dbf` package, installed into a virtual environment).

#[allow(dead_code)]
#[path = "server/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use raiz_engine::{Database, Date, Decimal, Field, FieldType, Memo, Schema, TableOptions, Value};

fn raiz(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(args)
        .env("RAIZ_PASSWORD", harness::PASSWORD)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = raiz(args);
    assert_eq!(code, 0, "raiz {}: {err}", args.join(" "));
    out
}

fn every_type() -> Schema {
    Schema::new(vec![
        Field::new("NAME", FieldType::Char(12)),
        Field::new("PRICE", FieldType::Numeric { len: 18, dec: 3 }),
        Field::new("QTY", FieldType::Int64),
        Field::new("RATIO", FieldType::Float64),
        Field::new("DAY", FieldType::Date),
        Field::new("OK", FieldType::Logical),
        Field::new("NOTE", FieldType::Memo),
        Field::new("RAW", FieldType::Binary(8)),
    ])
}

/// Rows that try every corner: blanks, signs, scales, extremes, unicode,
/// quotes and separators, line breaks, bytes that are not UTF-8, a memo
/// that looks like base64, leading blanks.
fn tricky_rows() -> Vec<(Vec<Value>, bool)> {
    let memo = |b: &[u8]| Value::Memo(Memo::Data(b.to_vec()));
    let dec = |s: &str| Value::Numeric(s.parse::<Decimal>().unwrap());
    vec![
        (
            vec![
                Value::from("Ângela, \"A\""),
                dec("-12345678901.5"),
                Value::Int64(i64::MIN),
                Value::Float64(0.1),
                Value::Date(Date::ymd(2024, 2, 29)),
                Value::Logical(true),
                memo("line one\nline two; \"quoted\", too\r\n".as_bytes()),
                Value::Binary(vec![0, 1, 2, 255]),
            ],
            false,
        ),
        (
            vec![
                Value::from("  lead"),
                dec("0.001"),
                Value::Int64(i64::MAX),
                Value::Float64(-1e300),
                Value::Date(Date::EMPTY),
                Value::Logical(false),
                memo(&[0xff, 0xfe, 0x00, 0x41]),
                Value::Binary(vec![]),
            ],
            true,
        ),
        (
            vec![
                Value::from(""),
                dec("0"),
                Value::Int64(0),
                Value::Float64(2.5e-308),
                Value::Date(Date::ymd(1, 1, 1)),
                Value::Logical(false),
                memo(b"base64:not what it seems"),
                Value::Binary(vec![7; 8]),
            ],
            false,
        ),
        (
            vec![
                Value::from("日本"),
                dec("99999999999.999"),
                Value::Int64(-1),
                Value::Float64(123456789.125),
                Value::Date(Date::ymd(9999, 12, 31)),
                Value::Logical(true),
                Value::Memo(Memo::Empty),
                Value::Binary(b"=,\n\"".to_vec()),
            ],
            true,
        ),
    ]
}

/// Creates `table` in `root` with the tricky rows.
fn make_table(root: &Path, table: &str) {
    let db = Database::open(root).unwrap();
    db.create_table(table, &every_type(), TableOptions::default())
        .unwrap();
    let mut t = db.session().open_table(table).unwrap();
    for (values, deleted) in tricky_rows() {
        let r = t.append(&values).unwrap();
        if deleted {
            t.delete(r).unwrap();
        }
    }
}

/// Every record of `table`: recno order, values with memos read, deleted flag.
fn contents(root: &Path, table: &str) -> Vec<(Vec<Value>, bool)> {
    let db = Database::open(root).unwrap();
    let t = db.session().open_table(table).unwrap();
    (1..=t.record_count())
        .map(|r| {
            let rec = t.read(r).unwrap();
            let values = rec
                .values()
                .iter()
                .zip(t.schema().fields())
                .map(|(v, f)| match v {
                    Value::Memo(Memo::Stored(_) | Memo::Empty) => {
                        Value::Memo(Memo::Data(t.read_memo(r, &f.name).unwrap()))
                    }
                    other => other.clone(),
                })
                .collect();
            (values, rec.is_deleted())
        })
        .collect()
}

/// The tricky rows as a table stores them (Char padded, memos as bytes).
fn stored(rows: Vec<(Vec<Value>, bool)>, schema: &Schema) -> Vec<(Vec<Value>, bool)> {
    rows.into_iter()
        .map(|(values, d)| {
            let v = values
                .into_iter()
                .zip(schema.fields())
                .map(|(v, f)| match (v, f.ty) {
                    (Value::Char(s), FieldType::Char(n)) => {
                        let pad = (n as usize).saturating_sub(s.len());
                        Value::Char(s + &" ".repeat(pad))
                    }
                    (Value::Memo(Memo::Empty), _) => Value::Memo(Memo::Data(vec![])),
                    (Value::Numeric(d), FieldType::Numeric { dec, .. }) => {
                        Value::Numeric(d.rescale(dec).unwrap())
                    }
                    (v, _) => v,
                })
                .collect();
            (v, d)
        })
        .collect()
}

fn assert_same(got: &[(Vec<Value>, bool)], want: &[(Vec<Value>, bool)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: record count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.1, w.1, "{what}: deleted flag of record {}", i + 1);
        for (k, (gv, wv)) in g.0.iter().zip(&w.0).enumerate() {
            // Decimals compare numerically; the scale must match too.
            let same = match (gv, wv) {
                (Value::Numeric(a), Value::Numeric(b)) => a == b && a.scale() == b.scale(),
                (Value::Float64(a), Value::Float64(b)) => a.to_bits() == b.to_bits(),
                (a, b) => a == b,
            };
            assert!(same, "{what}: record {} field {k}: {gv:?} != {wv:?}", i + 1);
        }
    }
}

#[test]
fn every_value_of_every_type_round_trips_through_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    make_table(&root, "src");
    let want = stored(tricky_rows(), &every_type());
    assert_same(&contents(&root, "src"), &want, "the source table");
    for format in ["csv", "jsonl"] {
        // With the types: --create makes exactly the same table.
        let file = dir.path().join(format!("all.{format}"));
        let f = file.to_str().unwrap();
        let out = ok(&[
            "export",
            "--root",
            r,
            "src",
            "--format",
            format,
            "--deleted",
            "--types",
            "--out",
            f,
        ]);
        assert_eq!(out, format!("exported 4 records of src to {f}\n"));
        let copy = format!("typed_{format}");
        let out = ok(&[
            "import", "--root", r, &copy, "--from", f, "--format", format, "--create",
        ]);
        assert!(
            out.starts_with(&format!("imported 4 rows (2 deleted) into {copy} in ")),
            "{out}"
        );
        assert!(out.trim_end().ends_with("rows/s"), "{out}");
        assert_same(&contents(&root, &copy), &want, &copy);
        let (_, info, _) = raiz(&["info", "--root", r, &copy]);
        assert!(
            info.contains("PRICE        Numeric(18,3)") && info.contains("RAW          Binary(8)"),
            "{info}"
        );

        // Without the types, into a table that has the schema.
        let plain = dir.path().join(format!("plain.{format}"));
        let p = plain.to_str().unwrap();
        ok(&[
            "export",
            "--root",
            r,
            "src",
            "--format",
            format,
            "--deleted",
            "--out",
            p,
        ]);
        let into = format!("into_{format}");
        let schema =
            "NAME C(12), PRICE N(18,3), QTY I, RATIO F, DAY D, OK L, NOTE M, RAW Binary(8)";
        ok(&[
            "import", "--root", r, &into, "--from", p, "--format", format, "--create", "--schema",
            schema,
        ]);
        assert_same(&contents(&root, &into), &want, &into);
        // Again into the same table: it now holds everything twice.
        ok(&[
            "import", "--root", r, &into, "--from", p, "--format", format,
        ]);
        let mut twice = want.clone();
        twice.extend(want.clone());
        assert_same(&contents(&root, &into), &twice, "appended");

        // Without --deleted the deleted records stay behind.
        let live = dir.path().join(format!("live.{format}"));
        let l = live.to_str().unwrap();
        ok(&["export", "--root", r, "src", "--format", format, "--out", l]);
        let text = std::fs::read_to_string(&live).unwrap();
        assert!(
            !text.contains("@deleted") && !text.contains("lead"),
            "{text}"
        );
    }
    // An export in an index's order.
    let db = Database::open(&root).unwrap();
    db.session()
        .open_table("src")
        .unwrap()
        .create_index(&raiz_engine::index::IndexDef::new(
            "by_qty",
            vec![raiz_engine::index::Segment::field("QTY")],
        ))
        .unwrap();
    drop(db);
    let out = ok(&[
        "export",
        "--root",
        r,
        "src",
        "--format",
        "jsonl",
        "--order",
        "by_qty",
        "--deleted",
    ]);
    let qty: Vec<&str> = out
        .lines()
        .map(|l| {
            l.split("\"QTY\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        qty,
        ["-9223372036854775808", "-1", "0", "9223372036854775807"]
    );
}

#[test]
fn import_and_export_work_against_a_server() {
    let server = harness::Server::start(&[]);
    let url = format!("raiz://ana@{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "CODE,PRICE,@deleted\nA1,1.50,\nB2,-0.25,true\n\"C,3\",7,\n",
    )
    .unwrap();
    let c = csv.to_str().unwrap();
    let out = ok(&[
        "import",
        "--connect",
        &url,
        "items",
        "--from",
        c,
        "--format",
        "csv",
        "--create",
    ]);
    assert!(
        out.starts_with("imported 3 rows (1 deleted) into items"),
        "{out}"
    );
    let out = ok(&[
        "export",
        "--connect",
        &url,
        "items",
        "--format",
        "jsonl",
        "--deleted",
        "--types",
    ]);
    assert_eq!(
        out,
        "{\"@schema\":\"CODE C(3), PRICE N(5,2)\"}\n\
         {\"CODE\":\"A1\",\"PRICE\":1.50}\n\
         {\"CODE\":\"B2\",\"PRICE\":-0.25,\"@deleted\":true}\n\
         {\"CODE\":\"C,3\",\"PRICE\":7.00}\n"
    );
    let out = ok(&["export", "--connect", &url, "items", "--format", "csv"]);
    assert_eq!(out, "CODE,PRICE\nA1,1.50\n\"C,3\",7.00\n");
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_rows_are_named_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    let schema = "CODE C(4), PRICE N(6,2), DAY D, OK L, QTY I";
    let mut text = b"CODE,PRICE,DAY,OK,QTY\n\
A1,1.50,2024-01-31,T,3\n\
TOOLONG,1,,,\n\
B2,1.234,,,\n\
C3,abc,,,\n\
D4,1,2023-02-29,,\n\
E5,1,,maybe,\n\
F6,1,,,1.5\n\
G7,1,,\n\
H8,9999,,,\n"
        .to_vec();
    text.extend_from_slice(b"\xff\xfe,1,,,\n");
    let csv = write(dir.path(), "bad.csv", &text);
    let c = csv.to_str().unwrap();
    let (code, out, err) = raiz(&[
        "import", "--root", r, "t", "--from", c, "--format", "csv", "--create", "--schema", schema,
    ]);
    assert_eq!(code, 3, "{out}{err}");
    for want in [
        "line 3, field CODE: \"TOOLONG\": 7 bytes do not fit in Char(4)",
        "line 4, field PRICE: 1.234: has more than 2 decimal places",
        "line 5, field PRICE: \"abc\" is not a decimal number",
        "line 6, field DAY: \"2023-02-29\" is not a date",
        "line 7, field OK: \"maybe\" is not a logical",
        "line 8, field QTY: 1.5 is not a whole number",
        "line 9: 4 fields, the header has 5",
        "line 10, field PRICE: 9999: needs 7 characters; Numeric(6,2) holds 6",
        "line 11: field 1 is not UTF-8 text",
        "9 bad row(s) in",
        "nothing imported (--keep-going imports the others)",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let (_, tables, _) = raiz(&["tables", "--root", r]);
    assert_eq!(tables, "", "no table was created");

    // --dry-run: the schema and the count, nothing made.
    let (code, out, _) = raiz(&[
        "import",
        "--root",
        r,
        "t",
        "--from",
        c,
        "--format",
        "csv",
        "--create",
        "--schema",
        schema,
        "--dry-run",
        "--keep-going",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "schema (given): CODE C(4), PRICE N(6,2), DAY D, OK L, QTY I\n\
         1 rows (0 deleted) would be imported into t; 9 bad\n"
    );
    assert_eq!(raiz(&["tables", "--root", r]).1, "");

    // --keep-going: the good row goes in, the bad ones are told.
    let (code, out, err) = raiz(&[
        "import",
        "--root",
        r,
        "t",
        "--from",
        c,
        "--format",
        "csv",
        "--create",
        "--schema",
        schema,
        "--keep-going",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("imported 1 rows (0 deleted) into t") && out.contains("9 bad row(s) skipped"),
        "{out}"
    );
    assert!(err.contains("line 5, field PRICE"), "{err}");
    let rows = contents(&root, "t");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0[1], Value::Numeric("1.50".parse().unwrap()));

    // JSON lines: the line and the field of each bad one.
    let jsonl = write(
        dir.path(),
        "bad.jsonl",
        b"{\"CODE\":\"Z1\",\"PRICE\":2}\n\
[1,2]\n\
{\"CODE\":\"Z2\",\"PRICE\":\"x\"}\n\
{\"CODE\":\"Z3\",\"NOPE\":1}\n\
\n\
{\"CODE\":{\"base64\":\"!!\"}}\n\
{\"CODE\":\"Z4\",\"@deleted\":\"perhaps\"}\n\
{\"CODE\":\"Z5\",\"PRICE\":[1]}\n\
{\"CODE\":\"Z6\"\n",
    );
    let j = jsonl.to_str().unwrap();
    let (code, _, err) = raiz(&["import", "--root", r, "t", "--from", j, "--format", "jsonl"]);
    assert_eq!(code, 3, "{err}");
    for want in [
        "line 2: not a JSON object",
        "line 3, field PRICE: \"x\" is not a decimal number",
        "line 4: \"NOPE\" is no field of table t",
        "line 6, field CODE: \"!!\" is not base64",
        "line 7, field @deleted: \"perhaps\" is not true or false",
        "line 8, field PRICE: an array is no field value",
        "line 9: not a JSON object",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert_eq!(contents(&root, "t").len(), 1, "nothing was added");
}

#[test]
fn a_row_the_table_refuses_rolls_the_import_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    let db = Database::open(&root).unwrap();
    db.create_table(
        "t",
        &Schema::new(vec![Field::new("CODE", FieldType::Char(6))]),
        TableOptions::default(),
    )
    .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    t.append(&[Value::from("A")]).unwrap();
    t.create_index(
        &raiz_engine::index::IndexDef::new(
            "code",
            vec![raiz_engine::index::Segment::field("CODE")],
        )
        .unique(),
    )
    .unwrap();
    drop(t);
    drop(db);
    // 1,200 rows (more than one request's worth); line 1002 repeats A.
    let mut text = String::from("CODE\n");
    for i in 0..1200 {
        text.push_str(&if i == 1000 {
            "A\n".to_owned()
        } else {
            format!("K{i}\n")
        });
    }
    let csv = write(dir.path(), "dup.csv", text.as_bytes());
    let c = csv.to_str().unwrap();
    let (code, _, err) = raiz(&["import", "--root", r, "t", "--from", c, "--format", "csv"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("line 1002") && err.contains("already holds key CODE=\"A\""),
        "{err}"
    );
    assert!(err.contains("nothing imported"), "{err}");
    let (_, out, _) = raiz(&["shell", "--root", r, "-c", "use t; set deleted on; count"]);
    assert!(
        out.ends_with("\n1\n"),
        "only the first record is live: {out}"
    );
    let (code, _, _) = raiz(&["check", "--root", r, "t"]);
    assert_eq!(code, 0);
    // --batch commits as it goes: the first 512-row request is kept.
    let (code, _, err) = raiz(&[
        "import", "--root", r, "t", "--from", c, "--format", "csv", "--batch", "100",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("line 1002"), "{err}");
    let (_, out, _) = raiz(&["shell", "--root", r, "-c", "use t; set deleted on; count"]);
    assert!(out.ends_with("\n513\n"), "1 + 512 live: {out}");
    ok(&["shell", "--root", r, "-c", "drop table t"]);
    let db = Database::open(&root).unwrap();
    db.create_table(
        "t",
        &Schema::new(vec![Field::new("CODE", FieldType::Char(6))]),
        TableOptions::default(),
    )
    .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    t.append(&[Value::from("A")]).unwrap();
    t.create_index(
        &raiz_engine::index::IndexDef::new(
            "code",
            vec![raiz_engine::index::Segment::field("CODE")],
        )
        .unique(),
    )
    .unwrap();
    drop(t);
    drop(db);
    // --keep-going skips it.
    let (code, out, err) = raiz(&[
        "import",
        "--root",
        r,
        "t",
        "--from",
        c,
        "--format",
        "csv",
        "--keep-going",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("imported 1199 rows") && out.contains("1 refused by the table"),
        "{out}"
    );
    assert!(err.contains("line 1002"), "{err}");
}

#[test]
fn a_schema_is_inferred_from_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("root");
    let r = r.to_str().unwrap();
    let csv = write(
        dir.path(),
        "in.csv",
        "Code,Unit Price,Qty,When,Active,Note,Ratio\n\
         007,10.5,3,2024-05-01,T,short,1e-3\n\
         012,-2.25,-40,,false,\"two\nlines\",2.5\n"
            .as_bytes(),
    );
    let c = csv.to_str().unwrap();
    let (code, out, err) = raiz(&[
        "import",
        "--root",
        r,
        "t",
        "--from",
        c,
        "--format",
        "csv",
        "--create",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "schema (inferred): Code C(3), Unit_Price N(6,2), Qty I, When D, Active L, Note M, Ratio F\n\
         2 rows (0 deleted) would be imported into t; 0 bad\n"
    );
    ok(&[
        "import", "--root", r, "t", "--from", c, "--format", "csv", "--create",
    ]);
    let out = ok(&["export", "--root", r, "t", "--format", "csv"]);
    assert_eq!(
        out,
        "Code,Unit_Price,Qty,When,Active,Note,Ratio\n\
         007,10.50,3,2024-05-01,true,short,0.001\n\
         012,-2.25,-40,,false,\"two\nlines\",2.5\n"
    );
}

#[test]
fn usage_data_and_io_errors_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("root");
    let r = r.to_str().unwrap();
    let csv = write(dir.path(), "in.csv", b"A\nx\n");
    let c = csv.to_str().unwrap();
    // Usage: an unknown format, a bad schema, --schema for an existing table.
    assert_eq!(
        raiz(&["import", "--root", r, "t", "--from", c, "--format", "xls"]).0,
        2
    );
    let (code, _, err) = raiz(&[
        "import", "--root", r, "t", "--from", c, "--format", "csv", "--create", "--schema",
        "A Q(1)",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"Q(1)\" is not a field type"), "{err}");
    // Data: a missing table, one that exists, a column the table lacks.
    let (code, _, err) = raiz(&["import", "--root", r, "t", "--from", c, "--format", "csv"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("table t does not exist: --create makes it"),
        "{err}"
    );
    ok(&[
        "import", "--root", r, "t", "--from", c, "--format", "csv", "--create",
    ]);
    let (code, _, err) = raiz(&[
        "import", "--root", r, "t", "--from", c, "--format", "csv", "--create",
    ]);
    assert_eq!(code, 3);
    assert!(err.contains("table t exists"), "{err}");
    assert_eq!(
        raiz(&["import", "--root", r, "t", "--from", c, "--format", "csv", "--schema", "A C(1)"]).0,
        2
    );
    let other = write(dir.path(), "other.csv", b"A,B\nx,y\n");
    let (code, _, err) = raiz(&[
        "import",
        "--root",
        r,
        "t",
        "--from",
        other.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(code, 3);
    assert!(err.contains("column(s) B are no field of table t"), "{err}");
    assert_eq!(
        raiz(&["export", "--root", r, "nosuch", "--format", "csv"]).0,
        3
    );
    // I/O: a missing file, an unwritable output, an unreachable server.
    let (code, _, err) = raiz(&[
        "import",
        "--root",
        r,
        "t",
        "--from",
        "/nonexistent/x.csv",
        "--format",
        "csv",
    ]);
    assert_eq!(code, 4);
    assert!(err.contains("/nonexistent/x.csv"), "{err}");
    assert_eq!(
        raiz(&[
            "export",
            "--root",
            r,
            "t",
            "--format",
            "csv",
            "--out",
            "/nonexistent/dir/x.csv"
        ])
        .0,
        4
    );
    assert_eq!(
        raiz(&[
            "export",
            "--connect",
            "raiz://ana@127.0.0.1:1",
            "t",
            "--format",
            "csv"
        ])
        .0,
        4
    );
    // A DBF that is not one.
    let (code, _, err) = raiz(&[
        "import", "--root", r, "d", "--from", c, "--format", "dbf", "--create",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a DBF file"), "{err}");
}

/// A Python with the `dbf` package: a virtual environment kept in the
/// target directory between runs. pip needs PyPI; without it this fails.
fn python_with_dbf() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dbf-venv");
    let python = venv.join("bin/python");
    let has_dbf = |p: &Path| {
        Command::new(p)
            .args(["-c", "import dbf"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_dbf(&python) {
        return python;
    }
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 is needed to write the DBF test files");
    assert!(
        out.status.success(),
        "python3 -m venv failed (install python3-venv): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "dbf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install dbf failed — PyPI must be reachable for this test: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has_dbf(&python), "dbf is not importable after pip install");
    python
}

#[test]
fn dbf_files_from_another_writer_keep_code_pages_memos_and_deleted_rows() {
    let python = python_with_dbf();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/make_dbf.py"
        ))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The files really are in their code pages, not UTF-8.
    let raw = std::fs::read(dir.path().join("clientes.dbf")).unwrap();
    assert_eq!(raw[29], 0x02, "cp850's language driver byte");
    assert!(
        raw.windows(2).any(|w| w == [0xb6, b'n']),
        "Â is 0xB6 in cp850"
    );
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    let dbf = |name: &str| {
        dir.path()
            .join(format!("{name}.dbf"))
            .to_str()
            .unwrap()
            .to_owned()
    };

    let out = ok(&[
        "import",
        "--root",
        r,
        "clientes",
        "--from",
        &dbf("clientes"),
        "--format",
        "dbf",
        "--create",
        "--dry-run",
    ]);
    assert_eq!(
        out,
        "schema (from the DBF header): CODIGO C(6), NOME C(20), LIMITE N(12,2), QTD N(5), CADASTRO D, ATIVO L, OBS M\n\
         4 rows (1 deleted) would be imported into clientes; 0 bad\n"
    );
    assert_eq!(
        raiz(&["tables", "--root", r]).1,
        "",
        "a dry run makes nothing"
    );
    let expect = [
        ("clientes", "{\"@schema\":\"CODIGO C(6), NOME C(20), LIMITE N(12,2), QTD N(5), CADASTRO D, ATIVO L, OBS M\"}\n\
{\"CODIGO\":\"000001\",\"NOME\":\"Ângela Souza\",\"LIMITE\":5000.50,\"QTD\":3,\"CADASTRO\":\"2024-05-01\",\"ATIVO\":true,\"OBS\":\"Cliente desde 1998.\\nPaga em dia.\"}\n\
{\"CODIGO\":\"000002\",\"NOME\":\"José Gonçalves\",\"LIMITE\":-12.25,\"QTD\":0,\"CADASTRO\":\"\",\"ATIVO\":false,\"OBS\":\"\"}\n\
{\"CODIGO\":\"000003\",\"NOME\":\"Müller & Cia\",\"LIMITE\":0.00,\"QTD\":99999,\"CADASTRO\":\"1999-12-31\",\"ATIVO\":false,\"OBS\":\"ação çà\"}\n\
{\"CODIGO\":\"000004\",\"NOME\":\"Removido\",\"LIMITE\":1.00,\"QTD\":1,\"CADASTRO\":\"2000-01-01\",\"ATIVO\":true,\"OBS\":\"apagado\",\"@deleted\":true}\n"),
        ("itens", "{\"@schema\":\"ITEM C(10), VALOR N(9,2), NOTA M\"}\n\
{\"ITEM\":\"Açúcar\",\"VALOR\":4.99,\"NOTA\":\"cristal\\n1 kg\"}\n\
{\"ITEM\":\"Óleo\",\"VALOR\":12.00,\"NOTA\":\"\",\"@deleted\":true}\n"),
        ("produtos", "{\"@schema\":\"COD C(4), PRECO N(10,3), ESTOQUE I, PESO F, CUSTO N(20,4), ALTERADO C(19), NOTA M\"}\n\
{\"COD\":\"P001\",\"PRECO\":19.900,\"ESTOQUE\":42,\"PESO\":0.1,\"CUSTO\":1234.5678,\"ALTERADO\":\"2024-05-01 13:45:10\",\"NOTA\":\"café\"}\n\
{\"COD\":\"P002\",\"PRECO\":0.001,\"ESTOQUE\":-7,\"PESO\":1e300,\"CUSTO\":-0.0001,\"ALTERADO\":\"\",\"NOTA\":\"\",\"@deleted\":true}\n"),
    ];
    for (name, want) in expect {
        let out = ok(&[
            "import",
            "--root",
            r,
            name,
            "--from",
            &dbf(name),
            "--format",
            "dbf",
            "--create",
        ]);
        assert!(out.starts_with("imported "), "{out}");
        let got = ok(&[
            "export",
            "--root",
            r,
            name,
            "--format",
            "jsonl",
            "--deleted",
            "--types",
        ]);
        assert_eq!(got, want, "{name}");
    }
    // A float field, and a memo longer than a memo block.
    ok(&[
        "import",
        "--root",
        r,
        "notas",
        "--from",
        &dbf("notas"),
        "--format",
        "dbf",
        "--create",
    ]);
    let got = ok(&[
        "export",
        "--root",
        r,
        "notas",
        "--format",
        "jsonl",
        "--deleted",
    ]);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines[0],
        "{\"NUM\":1,\"TAXA\":1.5000,\"TEXTO\":\"première\",\"@deleted\":true}"
    );
    assert_eq!(
        lines[1],
        format!(
            "{{\"NUM\":2,\"TAXA\":-0.0625,\"TEXTO\":\"{}\"}}",
            "x".repeat(600)
        )
    );
    // Into an existing table: the DBF's fields by name.
    ok(&[
        "shell",
        "--root",
        r,
        "-c",
        "create table sa1 (NOME C(30), CODIGO C(6), EXTRA N(3))",
    ]);
    let (code, _, err) = raiz(&[
        "import",
        "--root",
        r,
        "sa1",
        "--from",
        &dbf("clientes"),
        "--format",
        "dbf",
    ]);
    assert_eq!(code, 3);
    assert!(
        err.contains("column(s) LIMITE, QTD, CADASTRO, ATIVO, OBS are no field of table sa1"),
        "{err}"
    );
    ok(&["shell", "--root", r, "-c", "create table sa2 (OBS M, NOME C(30), CODIGO C(6), LIMITE N(14,2), QTD I, CADASTRO D, ATIVO L, EXTRA N(3))"]);
    ok(&[
        "import",
        "--root",
        r,
        "sa2",
        "--from",
        &dbf("clientes"),
        "--format",
        "dbf",
    ]);
    let got = ok(&["export", "--root", r, "sa2", "--format", "csv", "--deleted"]);
    assert!(
        got.contains("\n,José Gonçalves,000002,-12.25,0,,false,0,\n"),
        "{got}"
    );
    // A memo file that is gone: an I/O error naming it.
    std::fs::remove_file(dir.path().join("itens.fpt")).unwrap();
    let (code, _, err) = raiz(&[
        "import",
        "--root",
        r,
        "x",
        "--from",
        &dbf("itens"),
        "--format",
        "dbf",
        "--create",
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("itens.fpt"), "{err}");
}

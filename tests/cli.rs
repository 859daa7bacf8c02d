//! The `raiz` command as users run it: a real process on a real rootpath.

use std::process::Command;

fn raiz(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_builds_the_dictionary_and_info_describes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let (ok, out, err) = raiz(&[
        "demo",
        "--rows",
        "3000",
        "--root",
        root,
        "--changes",
        "40",
        "--secs",
        "0.5",
    ]);
    assert!(ok, "{err}");
    for line in [
        "append",
        "random read by recno",
        "memo read on demand",
        "SET DELETED ON scan",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.contains("2700 of 3000 visible"), "{out}");
    let (ok, out, _) = raiz(&["tables", "--root", root]);
    assert!(ok);
    // The dictionary and its texts, and the customers and orders the
    // demo's server and cache nodes worked on.
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["sa1", "sc5", "sc6", "sx3", "syp"]
    );
    let (ok, out, err) = raiz(&["info", "--root", root, "SX3"]);
    assert!(ok, "{err}");
    assert!(out.contains("records      3000 (150 deleted)"), "{out}");
    assert!(out.contains("X3_VALID     Memo"), "{out}");
    assert!(out.contains("durability   logged"), "{out}");
}

#[test]
fn demo_shows_the_whole_system_and_keeps_its_rootpath_when_asked() {
    let (ok, out, err) = raiz(&[
        "demo",
        "--rows",
        "2000",
        "--changes",
        "60",
        "--secs",
        "0.5",
        "--keep",
    ]);
    assert!(ok, "{err}");
    for line in [
        "SA1 customers, SC5 orders, SC6 items",
        "raiz serve in this process on 127.0.0.1:",
        "order entry, 4 sessions",
        "SC5 after the workload",
        "both nodes loaded SX3",
        "random reads through a node",
        "write at node A → applied at B",
        "60 changes  p50",
        "summary (this machine, this run;",
        "  embedded ",
        "  remote ",
        "  cached ",
        "  changes   node to node in",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let cached = out
        .lines()
        .find(|l| l.contains("random reads through a node"))
        .unwrap();
    assert!(
        cached.contains(" 0 round trips"),
        "reads through a node make no round trip: {cached}"
    );
    let kept = out
        .lines()
        .skip_while(|l| !l.contains("the rootpath is kept"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("raiz shell --root "))
        .unwrap_or_else(|| panic!("no shell command in\n{out}"))
        .to_owned();
    let (ok, tables, err) = raiz(&["tables", "--root", &kept]);
    assert!(ok, "{err}");
    assert_eq!(tables.lines().count(), 5, "{tables}");
    let (ok, out, err) = raiz(&["check", "--root", &kept, "sc6"]);
    assert!(ok, "{out}{err}");
    std::fs::remove_dir_all(&kept).unwrap();
}

#[test]
fn config_file_supplies_the_rootpath() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("raiz.toml");
    std::fs::write(
        &cfg,
        format!("root = {:?}\npool_mb = 8\n", dir.path().join("data")),
    )
    .unwrap();
    let (ok, out, err) = raiz(&["--config", cfg.to_str().unwrap(), "tables"]);
    assert!(ok, "{err}");
    assert!(out.is_empty());
    std::fs::write(&cfg, "rooot = 1\n").unwrap();
    let (ok, _, err) = raiz(&["--config", cfg.to_str().unwrap(), "tables"]);
    assert!(!ok);
    assert!(err.contains("raiz.toml"), "{err}");
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let (ok, _, err) = raiz(&["info", "--root", root, "nope"]);
    assert!(!ok);
    assert!(err.contains("table nope does not exist"), "{err}");
    let (ok, _, err) = raiz(&["info", "--root", root, "../etc"]);
    assert!(!ok);
    assert!(err.contains("invalid table name"), "{err}");
    let (ok, _, err) = raiz(&["tables"]);
    assert!(!ok);
    assert!(err.contains("no rootpath"), "{err}");
}

#[test]
fn maintenance_commands_work_on_a_real_rootpath() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let (ok, _, err) = raiz(&[
        "demo",
        "--rows",
        "2000",
        "--root",
        root,
        "--changes",
        "10",
        "--secs",
        "0.2",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = raiz(&[
        "index",
        "create",
        "--root",
        root,
        "syp",
        "by_key",
        "--seg",
        "YP_CHAVE,desc",
        "--unique",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("index by_key created"), "{out}");
    let (ok, out, _) = raiz(&["info", "--root", root, "syp"]);
    assert!(ok);
    assert!(
        out.contains("by_key") && out.contains("YP_CHAVE desc  unique  (500 entries)"),
        "{out}"
    );
    let (ok, out, err) = raiz(&["check", "--root", root, "sx3"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("2000 records, 2 indexes checked") && out.contains("ok"),
        "{out}"
    );

    // Damage a data page: check fails with the page named, rebuild recovers.
    let data = dir.path().join("sx3.rzd");
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x77; 4], 3 * 8192 + 99).unwrap();
    drop(f);
    let (ok, out, err) = raiz(&["check", "--root", root, "sx3"]);
    assert!(!ok);
    assert!(out.contains("page 3"), "{out}");
    assert!(err.contains("raiz rebuild"), "{err}");
    let (ok, out, err) = raiz(&["rebuild", "--root", root, "sx3"]);
    assert!(ok, "{err}");
    assert!(out.contains("unreadable kept as deleted blanks"), "{out}");
    let (ok, _, err) = raiz(&["check", "--root", root, "sx3"]);
    assert!(ok, "{err}");

    let (ok, out, err) = raiz(&["pack", "--root", root, "sx3"]);
    assert!(ok, "{err}");
    assert!(out.contains("packed sx3: 2000 records in"), "{out}");
    let (ok, _, err) = raiz(&[
        "alter",
        "--root",
        root,
        "sx3",
        "--add",
        "X3_NOVO:Numeric(5,1)",
        "--retype",
        "X3_ORDEM:Numeric(3,0)",
        "--drop",
        "X3_PESO",
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = raiz(&["info", "--root", root, "sx3"]);
    assert!(ok);
    assert!(
        out.contains("X3_NOVO      Numeric(5,1)") && out.contains("X3_ORDEM     Numeric(3,0)"),
        "{out}"
    );
    assert!(!out.contains("X3_PESO"), "{out}");
    let (ok, _, err) = raiz(&["alter", "--root", root, "sx3", "--retype", "X3_CAMPO:Int64"]);
    assert!(!ok);
    assert!(err.contains("X3_CAMPO"), "{err}");
    let (ok, _, err) = raiz(&["alter", "--root", root, "sx3", "--add", "BAD:Text(3)"]);
    assert!(!ok);
    assert!(err.contains("not a field type"), "{err}");
    let (ok, _, _) = raiz(&["check", "--root", root, "sx3"]);
    assert!(ok);
}

#[test]
fn user_add_passwd_remove_and_list() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let add = |name: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(["user", "add", "--root", root, name])
            .args(extra)
            .env("RAIZ_NEW_PASSWORD", "first")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(add("admin", &["--admin"]).0);
    assert!(add("ana", &["--group", "fin", "--group", "erp"]).0);
    let (ok, err) = add("ana", &[]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, err) = add("../x", &[]);
    assert!(!ok && err.contains("invalid user name"), "{err}");
    let (ok, out, _) = raiz(&["user", "list", "--root", root]);
    assert!(ok);
    assert_eq!(out, "admin\t\tadmin\nana\tfin,erp\t\n");
    // passwd reads the new password from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["user", "passwd", "--root", root, "ana"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"second\n").unwrap();
    assert!(child.wait().unwrap().success());
    let users = raiz_server::users::Users::load(dir.path()).unwrap();
    assert!(users.verify("ana", "second").is_some());
    assert!(users.verify("ana", "first").is_none());
    let text = std::fs::read_to_string(dir.path().join("raiz.users")).unwrap();
    assert!(!text.contains("second") && !text.contains("first"));
    assert!(raiz(&["user", "remove", "--root", root, "ana"]).0);
    let (ok, _, err) = raiz(&["user", "remove", "--root", root, "ana"]);
    assert!(!ok && err.contains("no user ana"), "{err}");
    let (ok, _, err) = raiz(&["user", "list", "--root", "/nonexistent/raiz"]);
    assert!(!ok && err.contains("not a directory"), "{err}");
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &[],
        &["demo"],
        &["tables"],
        &["info"],
        &["check"],
        &["rebuild"],
        &["pack"],
        &["alter"],
        &["index"],
        &["serve"],
        &["user"],
        &["monitor"],
        &["perms"],
        &["shell"],
        &["import"],
        &["export"],
        &["backup"],
        &["restore"],
        &["config"],
        &["config", "check"],
        &["completions"],
    ];
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let (ok, out, err) = raiz(&args);
        assert!(ok, "raiz {}: {err}", args.join(" "));
        let want = if c.is_empty() {
            "Exit codes"
        } else {
            "Example"
        };
        assert!(
            out.contains(want),
            "raiz {} has no {want}:\n{out}",
            args.join(" ")
        );
        assert!(out.contains("raiz "), "{out}");
    }
}

#[test]
fn exit_codes_tell_usage_data_and_io_errors_apart() {
    let code = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    assert_eq!(code(&["frobnicate"]), Some(2));
    assert_eq!(code(&["info", "--root", root]), Some(2), "missing TABLE");
    assert_eq!(code(&["tables"]), Some(2), "no rootpath");
    assert_eq!(code(&["info", "--root", root, "nope"]), Some(3));
    assert_eq!(
        code(&["alter", "--root", root, "t", "--add", "X"]),
        Some(3),
        "no table t"
    );
    assert_eq!(
        code(&["monitor", "--connect", "raiz://admin@127.0.0.1:1"]),
        Some(4)
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    assert_eq!(code(&["tables", "--root", file.to_str().unwrap()]), Some(4));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef raiz"),
        ("fish", "complete -c raiz"),
    ] {
        let (ok, out, err) = raiz(&["completions", shell]);
        assert!(ok, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("import") && out.contains("shell"), "{shell}");
    }
    assert!(!raiz(&["completions", "cmd"]).0);
}

#[test]
fn logs_go_to_standard_error_as_text_or_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    assert!(
        raiz(&[
            "demo",
            "--rows",
            "100",
            "--root",
            root,
            "--changes",
            "5",
            "--secs",
            "0.2"
        ])
        .0
    );
    for (format, check) in [
        (
            "json",
            (|l: &str| l.starts_with('{') && l.contains("\"level\"")) as fn(&str) -> bool,
        ),
        ("text", |l: &str| {
            !l.starts_with('{') && (l.contains("INFO") || l.contains("DEBUG"))
        }),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(["--log-format", format, "check", "--root", root, "sx3"])
            .env("RAIZ_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert!(!lines.is_empty(), "{format}: no log lines");
        assert!(lines.iter().all(|l| check(l)), "{format}:\n{err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("\"level\""));
    }
    assert!(!raiz(&["--log-format", "xml", "tables", "--root", root]).0);
}

#[test]
fn sql_runs_reports_embedded_as_a_table_and_as_json() {
    use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let schema = Schema::new(vec![
            Field::new("CITY", FieldType::Char(12)),
            Field::new("SALES", FieldType::Numeric { len: 10, dec: 2 }),
        ]);
        db.create_table("shops", &schema, TableOptions::default())
            .unwrap();
        let mut t = db.session().open_table("shops").unwrap();
        for (c, s) in [("RIO", "10.50"), ("RECIFE", "3.25"), ("RIO", "1.00")] {
            t.append(&[Value::from(c), Value::Numeric(s.parse().unwrap())])
                .unwrap();
        }
    }
    let q =
        "SELECT city, count(*) AS n, sum(sales) AS total FROM shops GROUP BY city ORDER BY city";
    let (ok, out, err) = raiz(&["sql", "--root", root, "-c", q]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "city   | n | total\n-------+---+------\nRECIFE | 1 |  3.25\nRIO    | 2 |  11.5\n(2 rows)\n"
    );
    let (ok, out, err) = raiz(&["sql", "--root", root, "--json", "-c", q]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "{\"city\":\"RECIFE\",\"n\":1,\"total\":3.25}\n{\"city\":\"RIO\",\"n\":2,\"total\":11.5}\n"
    );
    // Statements from standard input; a write is refused with exit code 3.
    let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["sql", "--root", root, "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n\n  FROM shops;\nDELETE FROM shops;\nSELECT max(sales) AS m FROM shops;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"n\":3}\n{\"m\":10.5}\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
}

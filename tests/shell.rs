//! `raiz shell` as users run it: the examples of docs/shell.md run on an
//! embedded rootpath and against a real `raiz serve`, and must print exactly
//! what the page shows; scripts, errors and exit codes.

#[allow(dead_code)]
#[path = "server/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use harness::{Server, PASSWORD};

/// Runs `raiz shell ARGS` with `input` on standard input; returns the exit
/// code and standard output and error merged in the order written.
fn shell(args: &[&str], input: &str) -> (i32, String) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .arg("shell")
        .args(args)
        .env("RAIZ_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    feeder.join().unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), out)
}

/// Standard output and error apart, and the exit code.
fn shell_apart(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .arg("shell")
        .args(args)
        .env("RAIZ_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A transcript block of docs/shell.md.
struct Example {
    line: usize,
    json: bool,
    text: String,
}

fn examples() -> Vec<Example> {
    let doc = include_str!("../docs/shell.md");
    let mut out = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        let json = match l {
            "```raiz" => false,
            "```raiz json" => true,
            _ => continue,
        };
        let mut text = String::new();
        for (_, l) in lines.by_ref() {
            if l == "```" {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        out.push(Example {
            line: i + 1,
            json,
            text,
        });
    }
    out
}

/// Runs every example of docs/shell.md in order on `target` (`--root DIR`
/// or `--connect URL`) and compares.
fn run_examples(target: &[&str]) {
    let examples = examples();
    assert!(examples.len() >= 8, "docs/shell.md lost its examples");
    for ex in examples {
        let input: String = ex
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("raiz> "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut args = target.to_vec();
        args.push("--echo");
        if ex.json {
            args.push("--json");
        }
        let (code, out) = shell(&args, &input);
        if out != ex.text {
            let diff: Vec<String> = ex
                .text
                .lines()
                .zip(out.lines().chain(std::iter::repeat("<missing>")))
                .filter(|(want, got)| want != got)
                .take(5)
                .map(|(want, got)| format!("  doc: {want}\n  got: {got}"))
                .collect();
            panic!(
                "docs/shell.md line {} ({}) prints otherwise:\n{}\nwhole output:\n{out}",
                ex.line,
                target.join(" "),
                diff.join("\n")
            );
        }
        let errors = ex
            .text
            .lines()
            .any(|l| l.starts_with("error: ") || l.starts_with("{\"error\""));
        assert_eq!(
            code != 0,
            errors,
            "docs/shell.md line {}: exit code {code}",
            ex.line
        );
    }
}

#[test]
fn the_documented_examples_run_on_a_rootpath() {
    let dir = tempfile::tempdir().unwrap();
    run_examples(&["--root", dir.path().to_str().unwrap()]);
}

#[test]
fn the_documented_examples_run_against_a_server() {
    let server = Server::start(&[]);
    let url = format!("raiz://admin@{}", server.addr);
    run_examples(&["--connect", &url]);
}

#[test]
fn scripts_go_on_after_errors_and_exit_with_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let (code, out, err) = shell_apart(
        &["--root", root],
        "create table t (K C(3), N N(5,2))\nuse t\nappend K=abc N=1.5\nappend N=1.234\nfrobnicate\ncount\n",
    );
    assert_eq!(code, 3, "the first failure is a data error\n{out}\n{err}");
    assert!(out.ends_with("1\n"), "count ran after the errors:\n{out}");
    assert_eq!(
        err,
        "error: field N: 1.234: has more than 2 decimal places; Numeric(5,2) would have to round it\n\
         error: unknown command \"frobnicate\"; `help` lists the commands\n"
    );
    // A command the shell does not understand first: exit 2.
    let (code, out, _) = shell_apart(&["--root", root, "-c", "use t; skip x; count"], "");
    assert_eq!(code, 2);
    assert!(out.ends_with("1\n"), "{out}");
    // --stop-on-error stops there.
    let (code, out, err) = shell_apart(
        &[
            "--root",
            root,
            "--stop-on-error",
            "-c",
            "use t; append K=toolong; count",
        ],
        "",
    );
    assert_eq!(code, 3);
    assert_eq!(out, "t: 1 record\n", "count did not run");
    assert!(
        err.contains("field K: \"toolong\": 7 bytes do not fit in Char(3)"),
        "{err}"
    );
    // A transaction left open is rolled back, and said so.
    let (code, _, err) = shell_apart(&["--root", root, "-c", "use t; begin; append K=new"], "");
    assert_eq!(code, 0);
    assert!(
        err.contains("the open transaction was rolled back"),
        "{err}"
    );
    let (_, out, _) = shell_apart(&["--root", root, "-c", "use t; set deleted on; count"], "");
    assert!(out.ends_with("1\n"), "the append was rolled back: {out}");
    // `quit` ends a script (the rolled-back append left a deleted blank).
    let (code, out, _) = shell_apart(&["--root", root], "use t\nquit\ncount\n");
    assert_eq!((code, out.as_str()), (0, "t: 2 records\n"));
}

#[test]
fn json_output_is_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let (code, out, err) = shell_apart(
        &["--root", root, "--json"],
        "create table t (K C(4), N N(8,3), D D, L L, M M, F F, B Binary(4))\n\
         use t\nappend K=\"a\\\"b\" N=-1.5 D=20240229 L=y M=\"x\\ny\" F=2.5e-300 B=AQID\n\
         browse; count; info; help; tables; nosuch\n",
    );
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 10);
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"));
        assert!(v.is_object(), "{l}");
    }
    let rec: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(rec["K"], "a\"b");
    assert_eq!(rec["N"].to_string(), "-1.5");
    assert_eq!(rec["D"], "2024-02-29");
    assert_eq!(rec["L"], true);
    assert_eq!(rec["M"], "x\ny");
    assert_eq!(rec["F"].as_f64(), Some(2.5e-300));
    assert_eq!(rec["B"], "AQID");
    assert_eq!(rec["@recno"], 1);
    let e: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("unknown command"),
        "{err}"
    );
}

#[test]
fn the_shell_reaches_a_server_over_its_unix_socket_and_reports_connection_errors() {
    let server = Server::start(&[]);
    let url = format!("raiz+unix://ana@{}", server.socket().display());
    let (code, out, err) = shell_apart(
        &[
            "--connect",
            &url,
            "-c",
            "create table t (K C(2)); use t; append K=ok; lock; count",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("record 1 locked") && out.ends_with("1\n"),
        "{out}"
    );
    // Nobody listens on port 1: a connection error, exit code 4.
    let (code, _, err) = shell_apart(&["--connect", "raiz://ana@127.0.0.1:1", "-c", "tables"], "");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    // A wrong password: refused, exit code 4.
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args([
            "shell",
            "--connect",
            &format!("raiz://ana@{}", server.addr),
            "-c",
            "tables",
        ])
        .env("RAIZ_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    // A malformed connection string is a usage error.
    let (code, _, err) = shell_apart(&["--connect", "nonsense", "-c", "tables"], "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn two_shells_see_each_others_locks_on_a_server() {
    let server = Server::start(&[]);
    let url = format!("raiz://ana@{}", server.addr);
    let (code, _, err) = shell_apart(
        &[
            "--connect",
            &url,
            "-c",
            "create table t (K C(2)); use t; append K=a",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    // The first shell holds record 1 and the name while the second tries.
    let mut first = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["shell", "--connect", &url])
        .env("RAIZ_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    stdin
        .write_all(b"use t\ngoto 1\nlock\nlock name order-1\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut stdout = first.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("name order-1 locked") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the first shell ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let (code, out, err) = shell_apart(
        &[
            "--connect",
            &url,
            "-c",
            "use t; goto 1; lock; replace K=b; lock name order-1; display",
        ],
        "",
    );
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(err.matches("error: ").count(), 3, "{err}");
    assert!(err.contains("ana@"), "the holder is named: {err}");
    assert!(out.ends_with("    1       a\n"), "still a: {out}");
    drop(stdin);
    assert!(first.wait().unwrap().success());
}

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
    let (ok, out, err) = raiz(&["demo", "--rows", "3000", "--root", root]);
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
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["sx3", "syp"]);
    let (ok, out, err) = raiz(&["info", "--root", root, "SX3"]);
    assert!(ok, "{err}");
    assert!(out.contains("records      3000 (150 deleted)"), "{out}");
    assert!(out.contains("X3_VALID     Memo"), "{out}");
    assert!(out.contains("durability   unlogged"), "{out}");
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

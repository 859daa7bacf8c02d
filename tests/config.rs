//! Configuration as users meet it: `raiz config check` naming each mistake
//! with its line, `raiz config show`, and the order in force — flags over
//! environment variables over the file — seen in what commands do.

use std::process::Command;

fn raiz(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_raiz"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_names_every_mistake_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[general]\nroot = '/data/erp'\npool_mb = 256\n\n[server]\nlisten = '0.0.0.0:7070'\n\
         metrics_listen = '127.0.0.1:9470'\nmax_connections = 100\n\n[cache]\n\
         server = 'raiz://node@db1:7070'\ntables = ['sx3', 'sx2']\nstale_secs = 2.5\n\n\
         [log]\nlevel = 'info'\nformat = 'json'\n",
    )
    .unwrap();
    let (code, out, err) = raiz(&["config", "check", good.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("good.toml: ok\n"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "pool_mb = 'lots'\n[server]\nlisten = '0.0.0.0'\nmax_frame_mb = 5000\nwindow = 64\n\
         [cache]\ntables = 'sx3, ../etc'\n[loging]\nlevel = 'info'\n",
    )
    .unwrap();
    let (code, out, _) = raiz(&["config", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let expect = [
        "line 1: pool_mb: expected a whole number from 1 to 1048576, found text",
        "line 3: server.listen: \"0.0.0.0\" is not host:port",
        "line 4: server.max_frame_mb: 5000 is out of range",
        "line 5: server.window: unknown key in [server]",
        "line 7: cache.tables: \"../etc\" is not a table name",
        "line 8: [loging]: unknown section",
    ];
    assert_eq!(lines.len(), expect.len(), "{out}");
    for (line, want) in lines.iter().zip(expect) {
        assert!(line.contains(want), "{line:?} should say {want:?}\n{out}");
        assert!(line.contains("bad.toml"), "{line}");
    }

    // The environment is checked too, by variable name.
    let (code, out, _) = raiz(
        &["config", "check", good.to_str().unwrap()],
        &[("RAIZ_SERVER_MAX_CONNECTIONS", "many")],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("environment: RAIZ_SERVER_MAX_CONNECTIONS: \"many\" is not a whole number"),
        "{out}"
    );
    // Any other command refuses a bad configuration with exit code 2.
    let (code, _, err) = raiz(&["--config", bad.to_str().unwrap(), "tables"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("line 3: server.listen"), "{err}");
    let (code, _, err) = raiz(&["tables"], &[("RAIZ_GENERAL_POOL_MB", "0")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("RAIZ_GENERAL_POOL_MB: 0 is out of range"),
        "{err}"
    );
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for (root, table) in [(&a, "from_file"), (&b, "from_env"), (&c, "from_flag")] {
        let (code, _, err) = raiz(
            &[
                "shell",
                "--root",
                root.to_str().unwrap(),
                "-c",
                &format!("create table {table} (A C(4))"),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
    }
    let cfg = dir.path().join("raiz.toml");
    std::fs::write(
        &cfg,
        format!(
            "[general]\nroot = {:?}\npool_mb = 8\n[server]\nmax_connections = 10\n",
            a
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let env_root = [("RAIZ_GENERAL_ROOT", b.to_str().unwrap())];
    // What `tables` lists says which rootpath won.
    assert_eq!(raiz(&["--config", cfg, "tables"], &[]).1, "from_file\n");
    assert_eq!(
        raiz(&["--config", cfg, "tables"], &env_root).1,
        "from_env\n"
    );
    assert_eq!(
        raiz(
            &["--config", cfg, "tables", "--root", c.to_str().unwrap()],
            &env_root
        )
        .1,
        "from_flag\n"
    );
    assert_eq!(
        raiz(
            &[
                "--config",
                cfg,
                "--set",
                &format!("general.root={}", c.display()),
                "tables"
            ],
            &env_root
        )
        .1,
        "from_flag\n"
    );
    // config show prints what is in force, in sections.
    let (code, out, err) = raiz(
        &[
            "--config",
            cfg,
            "--set",
            "general.pool_mb=32",
            "config",
            "show",
        ],
        &[
            ("RAIZ_GENERAL_POOL_MB", "16"),
            ("RAIZ_SERVER_MAX_CONNECTIONS", "20"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[general]\n"), "{out}");
    assert!(out.contains("pool_mb = 32\n"), "--set wins: {out}");
    assert!(
        out.contains("max_connections = 20\n"),
        "the environment wins over the file: {out}"
    );
    let (_, out, _) = raiz(&["--config", cfg, "config", "show"], &[]);
    assert!(
        out.contains("pool_mb = 8\n") && out.contains("max_connections = 10\n"),
        "{out}"
    );
}

#[test]
fn log_format_and_level_come_from_the_file_the_environment_or_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let cfg = dir.path().join("raiz.toml");
    std::fs::write(&cfg, "[log]\nlevel = 'info'\nformat = 'json'\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let create = |n: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["--config", cfg];
        args.extend_from_slice(extra);
        let cmd = format!("create table {n} (A C(4))");
        args.extend_from_slice(&["shell", "--root", root.to_str().unwrap(), "-c", &cmd]);
        let (code, _, err) = raiz(&args, env);
        assert_eq!(code, 0, "{err}");
        err
    };
    // The file: info, as JSON.
    let err = create("t1", &[], &[]);
    let line = err
        .lines()
        .find(|l| l.contains("table created"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_ok(),
        "{line}"
    );
    // The environment: text.
    let err = create("t2", &[], &[("RAIZ_LOG_FORMAT", "text")]);
    let line = err
        .lines()
        .find(|l| l.contains("table created"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(!line.starts_with('{'), "{line}");
    // The flag over the environment: JSON again; a level that hides it.
    let err = create(
        "t3",
        &["--log-format", "json"],
        &[("RAIZ_LOG_FORMAT", "text")],
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with('{') && l.contains("table created")),
        "{err}"
    );
    let err = create("t4", &["--log-level", "warn"], &[]);
    assert!(!err.contains("table created"), "{err}");
    let (code, _, err) = raiz(&["--log-level", "loud!", "tables", "--root", "/tmp"], &[]);
    assert_eq!(code, 2, "{err}");
}

//! Starting and stopping a real `raiz serve` process on a temporary rootpath.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use raiz_client::{Connection, Session};
use raiz_server::users::Users;

pub const PASSWORD: &str = "pw-for-tests";

/// Users every test rootpath has: admin (admin), ana and bo (group erp),
/// cy (group ops).
pub fn make_users(root: &Path) {
    let mut u = Users::default();
    u.add("admin", PASSWORD, vec![], true).unwrap();
    u.add("ana", PASSWORD, vec!["erp".into()], false).unwrap();
    u.add("bo", PASSWORD, vec!["erp".into()], false).unwrap();
    u.add("cy", PASSWORD, vec!["ops".into()], false).unwrap();
    u.save(root).unwrap();
}

pub struct Server {
    child: Option<Child>,
    pub addr: String,
    /// The health and metrics address, when served (`--metrics-listen`).
    pub metrics: Option<String>,
    /// The SQL address, when served (`--sql-listen`).
    pub sql: Option<String>,
    pub dir: tempfile::TempDir,
    pub stderr: PathBuf,
}

impl Server {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("raiz.sock")
    }

    /// A fresh rootpath with the test users, served with `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        make_users(&root);
        Server::start_in(dir, extra)
    }

    /// Serves `dir/root` (already prepared).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::start_listening(dir, "127.0.0.1:0", extra)
    }

    /// Serves `dir/root` on the TCP address `listen`.
    pub fn start_listening(dir: tempfile::TempDir, listen: &str, extra: &[&str]) -> Server {
        let root = dir.path().join("root");
        let stderr = dir.path().join("server.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
            .arg("serve")
            .arg("--root")
            .arg(&root)
            .args(["--listen", listen, "--unix"])
            .arg(dir.path().join("raiz.sock"))
            .args(extra)
            .env("RAIZ_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || {
            lines.next().and_then(Result::ok).unwrap_or_else(|| {
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
        };
        let mut first = next();
        let mut metrics = None;
        if let Some(m) = first.strip_prefix("raiz serve: metrics on ") {
            metrics = Some(m.to_owned());
            first = next();
        }
        let addr = first
            .strip_prefix("raiz serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        let mut sql = None;
        if extra.contains(&"--sql-listen") {
            while sql.is_none() {
                sql = next()
                    .strip_prefix("raiz serve: SQL (PostgreSQL protocol) on ")
                    .map(str::to_owned);
            }
        }
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child: Some(child),
            addr,
            metrics,
            sql,
            dir,
            stderr,
        }
    }

    pub fn url(&self, user: &str) -> String {
        format!("raiz://{user}:{PASSWORD}@{}", self.addr)
    }

    pub fn session(&self, user: &str) -> Session {
        Connection::connect(&self.url(user))
            .and_then(|c| c.session())
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, tempfile::TempDir) {
        signal(self.pid(), "TERM");
        let status = wait(self.child.as_mut().unwrap(), Duration::from_secs(60));
        self.child = None;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    // The shell's builtin `kill`: present even where procps is not installed.
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

pub fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "process did not exit in {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it is true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `Threads`…), as a number (kB
/// for sizes).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The server's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS")
}

impl Server {
    /// A fresh rootpath with the test users, served with `config` as its
    /// raiz.toml and `extra` flags.
    pub fn with_config(config: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        make_users(&root);
        let path = dir.path().join("raiz.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_str().unwrap().to_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        Server::start_in(dir, &args)
    }
}

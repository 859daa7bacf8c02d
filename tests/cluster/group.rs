//! Three (or five) `raiz serve --cluster` processes on loopback, each link
//! between two members through a [`Relay`] the test controls.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raiz_client::proto::ClusterStatus;
use raiz_client::{Connection, Session};

use crate::harness::{make_users, PASSWORD};
use crate::relay::Relay;

/// Ports handed out in this process: two members never get the same one.
static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free port below the ephemeral range: a member killed and started again
/// must find its ports free, and an ephemeral one may meanwhile be the local
/// end of some client's connection.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if GIVEN.lock().unwrap().insert(port)
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

pub struct MemberProc {
    pub id: u64,
    pub root: PathBuf,
    pub client: String,
    pub raft: String,
    /// Health, metrics and role over HTTP.
    pub metrics: Option<String>,
    child: Option<Child>,
    log: PathBuf,
}

pub struct Group {
    pub dir: tempfile::TempDir,
    pub members: Vec<MemberProc>,
    /// (from, to) → the relay `from` reaches `to` through.
    pub relays: BTreeMap<(u64, u64), Relay>,
    /// Settings every member is started with.
    extra: Vec<String>,
}

impl Group {
    pub fn start(n: u64) -> Group {
        Group::start_with(n, &[])
    }

    /// `n` members, each started with the `--set` settings `extra`.
    pub fn start_with(n: u64, extra: &[&str]) -> Group {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "cluster-secret\n").unwrap();
        let members: Vec<MemberProc> = (1..=n)
            .map(|id| {
                let root = dir.path().join(format!("m{id}"));
                std::fs::create_dir_all(&root).unwrap();
                make_users(&root);
                MemberProc {
                    id,
                    log: dir.path().join(format!("m{id}.log")),
                    root,
                    client: format!("127.0.0.1:{}", free_port()),
                    raft: format!("127.0.0.1:{}", free_port()),
                    metrics: None,
                    child: None,
                }
            })
            .collect();
        let mut relays = BTreeMap::new();
        for a in &members {
            for b in &members {
                if a.id != b.id {
                    relays.insert((a.id, b.id), Relay::start(b.raft.clone()));
                }
            }
        }
        let mut g = Group {
            dir,
            members,
            relays,
            extra: extra
                .iter()
                .flat_map(|e| ["--set".to_owned(), e.to_string()])
                .collect(),
        };
        for i in 0..g.members.len() {
            g.spawn(i);
        }
        g
    }

    /// Member `i`'s list of members: the others through its relays.
    fn members_setting(&self, i: usize) -> String {
        let me = self.members[i].id;
        self.members
            .iter()
            .map(|m| {
                let raft = if m.id == me {
                    m.raft.clone()
                } else {
                    self.relays[&(me, m.id)].addr.clone()
                };
                format!("{} {raft} {}", m.id, m.client)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A new member, started to join (its links direct, not through
    /// relays); returns its position. Add it with `raiz cluster add`.
    pub fn spawn_joining(&mut self) -> usize {
        let id = self.members.len() as u64 + 1;
        let root = self.dir.path().join(format!("m{id}"));
        std::fs::create_dir_all(&root).unwrap();
        make_users(&root);
        self.members.push(MemberProc {
            id,
            log: self.dir.path().join(format!("m{id}.log")),
            root,
            client: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            metrics: None,
            child: None,
        });
        let i = self.members.len() - 1;
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{} {} {}", m.id, m.raft, m.client))
            .collect();
        self.spawn_with(i, &members.join(","), &["--set", "cluster.join=true"]);
        i
    }

    pub fn spawn(&mut self, i: usize) {
        let members = self.members_setting(i);
        self.spawn_with(i, &members, &[]);
    }

    fn spawn_with(&mut self, i: usize, members: &str, extra: &[&str]) {
        let secret = self.dir.path().join("secret");
        let extra_all = self.extra.clone();
        let m = &mut self.members[i];
        assert!(m.child.is_none());
        let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
            .arg("serve")
            .arg("--root")
            .arg(&m.root)
            .args(["--listen", &m.client, "--cluster"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--set")
            .arg(format!("cluster.id={}", m.id))
            .arg("--set")
            .arg(format!("cluster.members={members}"))
            .arg("--set")
            .arg(format!("cluster.listen={}", m.raft))
            .arg("--set")
            .arg(format!("cluster.secret_file={}", secret.display()))
            .args(extra)
            .args(&extra_all)
            .env("RAIZ_LOG", "info,openraft=warn,raiz_server::stream=debug")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&m.log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("raiz serve: listening on") => break,
                Some(Ok(l)) if l.starts_with("raiz serve: metrics on ") => {
                    m.metrics = Some(l["raiz serve: metrics on ".len()..].to_owned())
                }
                Some(Ok(_)) => {}
                _ => panic!(
                    "member {} did not start: {}",
                    m.id,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                ),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        m.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    pub fn session(&self, i: usize) -> raiz_client::Result<Session> {
        Connection::connect(&format!(
            "raiz://admin:{PASSWORD}@{}",
            self.members[i].client
        ))
        .and_then(|c| c.session())
    }

    pub fn status(&self, i: usize) -> Option<ClusterStatus> {
        self.session(i).ok()?.cluster_status().ok()
    }

    /// Waits for a member that takes writes (among the running ones not
    /// in `except`); returns its position and how long it took.
    pub fn leader(&self, except: &[usize], limit: Duration) -> (usize, Duration) {
        let start = Instant::now();
        loop {
            for i in 0..self.members.len() {
                if !self.running(i) || except.contains(&i) {
                    continue;
                }
                if self.status(i).is_some_and(|s| s.writable) {
                    return (i, start.elapsed());
                }
            }
            assert!(
                start.elapsed() < limit,
                "no member takes writes after {limit:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until every running member (but `except`) has applied what
    /// member `leader` has.
    pub fn converge(&self, leader: usize, except: &[usize]) {
        let target = self.status(leader).unwrap().applied;
        let start = Instant::now();
        for i in 0..self.members.len() {
            if !self.running(i) || except.contains(&i) {
                continue;
            }
            while self.status(i).and_then(|s| s.applied) < target {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "member {} did not catch up with {target:?}:\n{}",
                    i + 1,
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Cuts every link of member `i` (a partition: it on one side).
    pub fn isolate(&self, i: usize) {
        let id = self.members[i].id;
        for ((a, b), r) in &self.relays {
            if *a == id || *b == id {
                r.cut();
            }
        }
    }

    pub fn heal(&self) {
        for r in self.relays.values() {
            r.heal();
        }
    }

    /// Member `i`'s log so far.
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            // Errors first (the first of them is usually the cause), then the tail.
            let errors: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("ERROR"))
                .take(10)
                .collect();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- member {} ---\n", m.id));
            for l in errors {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("...\n");
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `GET path` on `addr`: the status code and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

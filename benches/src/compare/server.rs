//! `raiz serve` against PostgreSQL, both on loopback with the same table
//! (24-byte key with a unique index, 150-byte value): point reads by key and
//! durable single-record inserts from 1, 8 and 32 connections, and a
//! 20,000-record sequential scan — raiz with read-ahead, raiz forced to one
//! record per round trip, PostgreSQL through a cursor fetching 1,000 rows at a
//! time.
//!
//! PostgreSQL comes from the distribution's packages (`benches/compare.sh`
//! installs it); it runs from a fresh `initdb` in a temporary directory with
//! `fsync=on`, `synchronous_commit=on` and the run's cache budget as
//! `shared_buffers`. When its binaries are missing its rows are skipped and the
//! report says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raiz_client::Connection;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};

use super::data::Dataset;
use super::report::{Better, Report};
use super::{Result, Spec};

/// Column of raiz serve.
pub const RAIZ: &str = "raiz serve";
/// Column of the forced one-record-per-round-trip scan.
pub const RAIZ_ONE: &str = "raiz serve, 1 record per round trip";
/// Column of PostgreSQL.
pub const PG: &str = "PostgreSQL";
/// Column of PostgreSQL measured by its own client, pgbench (`-M prepared`),
/// a cross-check of the harness's client.
pub const PGBENCH: &str = "PostgreSQL (pgbench)";
/// The row of the machine's raw loopback round trip.
pub const LOOPBACK: &str = "loopback TCP round trip (64-byte ping-pong, 1 connection)";

pub(super) const CONNS: [usize; 3] = [1, 8, 32];

/// A client of either server, one per connection.
pub(super) trait Client: Send {
    fn get(&mut self, key: &[u8]) -> Result<bool>;
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
}

/// Runs `op` on `conns` clients for `secs`; returns operations per second.
pub(super) fn rate<C: Client>(
    conns: usize,
    secs: f64,
    connect: &(dyn Fn() -> Result<C> + Sync),
    op: &(dyn Fn(&mut C, u64) -> Result<()> + Sync),
) -> Result<f64> {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(connect()?);
    }
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(c, mut client)| {
                let (stop, done) = (&stop, &done);
                s.spawn(move || -> Result<()> {
                    let mut i = c as u64 * 1_000_003;
                    while !stop.load(Ordering::Relaxed) {
                        op(&mut client, i)?;
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().map_err(|_| "client panicked")??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

pub(super) struct RaizClient {
    pub(super) _session: raiz_client::Session,
    pub(super) t: raiz_client::Table,
}

impl Client for RaizClient {
    fn get(&mut self, key: &[u8]) -> Result<bool> {
        if !self.t.seek(&[Value::Binary(key.to_vec())])? {
            return Ok(false);
        }
        std::hint::black_box(self.t.record()?);
        Ok(true)
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.t
            .append(&[Value::Binary(key.to_vec()), Value::Binary(value.to_vec())])?;
        Ok(())
    }
}

/// A PostgreSQL connection with its two statements prepared once, as an
/// application (or pgbench `-M prepared`) does: each request is then one
/// round trip, as raiz's are. (`query` with SQL text would prepare the
/// statement again on every call, a second round trip.)
struct PgClient {
    c: postgres::Client,
    get: postgres::Statement,
    insert: postgres::Statement,
}

impl PgClient {
    fn connect(dsn: &str) -> Result<PgClient> {
        let mut c = postgres::Client::connect(dsn, postgres::NoTls)?;
        let get = c.prepare("SELECT v FROM kv WHERE k = $1")?;
        let insert = c.prepare("INSERT INTO kv (k, v) VALUES ($1, $2)")?;
        Ok(PgClient { c, get, insert })
    }
}

impl Client for PgClient {
    fn get(&mut self, key: &[u8]) -> Result<bool> {
        let rows = self.c.query(&self.get, &[&key])?;
        Ok(std::hint::black_box(rows).len() == 1)
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.c.execute(&self.insert, &[&key, &value])?;
        Ok(())
    }
}

pub(super) fn fresh_key(tag: u8, i: u64) -> [u8; 24] {
    let mut k = [tag; 24];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k
}

fn measure<C: Client>(
    name: &str,
    spec: &Spec,
    data: &Dataset,
    keys: usize,
    connect: &(dyn Fn() -> Result<C> + Sync),
    report: &mut Report,
) -> Result<()> {
    for conns in CONNS {
        tracing::info!(server = name, conns, "point reads");
        let r = rate(conns, spec.server_secs, connect, &|c, i| {
            let k = &data.probe[(i as usize * 7919) % keys.min(data.probe.len())];
            if !c.get(k)? {
                return Err("a loaded key was not found".into());
            }
            Ok(())
        })?;
        report.add(
            &format!("point read by key, {conns} connection(s)"),
            "requests/s",
            Better::Higher,
            name,
            r,
        );
    }
    for (n, conns) in CONNS.into_iter().enumerate() {
        tracing::info!(server = name, conns, "durable inserts");
        let r = rate(conns, spec.server_secs, connect, &|c, i| {
            c.insert(&fresh_key(0xf0 + n as u8, i), &[7u8; 150])
        })?;
        report.add(
            &format!("durable 1-record insert, {conns} connection(s)"),
            "requests/s",
            Better::Higher,
            name,
            r,
        );
    }
    Ok(())
}

const SCAN: &str = "sequential scan over the network";

/// Rows as raiz values (KEY, VAL).
fn values(rows: &[super::data::Row]) -> Vec<Vec<Value>> {
    rows.iter()
        .map(|r| {
            vec![
                Value::Binary(r.key.to_vec()),
                Value::Binary(r.value.to_vec()),
            ]
        })
        .collect()
}

/// The first `keys` loaded keys as a dataset of probes only.
fn probes(data: &Dataset, keys: usize) -> Dataset {
    Dataset {
        rows: Vec::new(),
        probe: data.rows[..keys].iter().map(|r| r.key).collect(),
        extra: Vec::new(),
        group: Vec::new(),
        isam: Vec::new(),
    }
}

fn raiz_rows(spec: &Spec, data: &Dataset, report: &mut Report) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root)?;
    let mut users = raiz_server::users::Users::default();
    users.add("bench", "bench", vec![], true)?;
    users.save(&root)?;
    let mut config = raiz_server::Config::default();
    config.root = Some(root);
    config.listen = Some("127.0.0.1:0".into());
    config.pool_mb = Some((spec.cache_bytes >> 20) as u64);
    let server = raiz_server::start(config, false)?;
    let url = format!(
        "raiz://bench:bench@{}",
        server.tcp.ok_or("the server has no TCP address")?
    );
    let conn = Connection::connect(&url)?;
    let s = conn.session()?;
    let schema = Schema::new(vec![
        Field::new("KEY", FieldType::Binary(24)),
        Field::new("VAL", FieldType::Binary(150)),
    ]);
    s.create_table("kv", &schema, TableOptions::default())?;
    let mut t = s.open_table("kv")?;
    let keys = data.rows.len().min(100_000);
    s.begin()?;
    for chunk in data.rows[..keys].chunks(5000) {
        t.append_many(&values(chunk))?;
    }
    s.commit()?;
    t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())?;
    drop(t);
    let data_small = probes(data, keys);
    let connect = || -> Result<RaizClient> {
        let session = conn.session()?;
        let mut t = session.open_table("kv")?;
        t.set_order(Some("key"))?;
        Ok(RaizClient {
            _session: session,
            t,
        })
    };
    measure(RAIZ, spec, &data_small, keys, &connect, report)?;

    // The scan table.
    s.create_table("scan", &schema, TableOptions::default())?;
    let mut t = s.open_table("scan")?;
    s.begin()?;
    let rows = values(&data.rows[..spec.scan_records.min(data.rows.len())]);
    t.append_many(&rows)?;
    s.commit()?;
    for (column, ahead) in [(RAIZ, raiz_client::MAX_READ_AHEAD), (RAIZ_ONE, 0)] {
        t.set_read_ahead(ahead);
        let mut best = f64::MAX;
        let mut trips = 0;
        for _ in 0..3 {
            let before = s.round_trips();
            let start = Instant::now();
            let mut n = 0;
            let mut more = t.first()?;
            while more {
                std::hint::black_box(t.record()?);
                n += 1;
                more = t.next()?;
            }
            if n != rows.len() {
                return Err(format!("remote scan saw {n} of {} records", rows.len()).into());
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
            trips = s.round_trips() - before;
        }
        report.add(
            &format!("{SCAN} of {} records (warm)", rows.len()),
            "ms",
            Better::Lower,
            column,
            best,
        );
        report.add(
            &format!("{SCAN}: round trips"),
            "round trips",
            Better::Lower,
            column,
            trips as f64,
        );
    }
    drop(t);
    drop(s);
    server.stop()?;
    Ok(())
}

/// The newest installed PostgreSQL's binaries, if any.
pub fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as the postgres user when we are root (the
/// server refuses to run as root).
fn pg(bin: &Path, tool: &str, args: &[&str]) -> Result<()> {
    pg_output(bin, tool, args).map(drop)
}

/// [`pg`], returning what the tool printed.
fn pg_output(bin: &Path, tool: &str, args: &[&str]) -> Result<String> {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PostgreSQL server from a fresh `initdb`, stopped when dropped.
pub struct PgServer {
    bin: PathBuf,
    data: String,
    _dir: tempfile::TempDir,
    /// Its loopback port (user `raiz`, database `postgres`, trust).
    pub port: u16,
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = pg(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data, "-m", "fast", "stop"],
        );
    }
}

/// Starts a PostgreSQL server with `cache` bytes of shared buffers.
pub fn start_pg(bin: PathBuf, cache: usize) -> Result<PgServer> {
    let dir = tempfile::tempdir()?;
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()?
            .success();
        if !ok {
            return Err("chown to postgres failed".into());
        }
    }
    let data = dir.path().join("data").display().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    pg(
        &bin,
        "initdb",
        &["-D", &data, "--auth=trust", "-U", "raiz", "-E", "UTF8"],
    )?;
    let opts = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
         -c shared_buffers={}MB -c fsync=on -c synchronous_commit=on -c max_connections=100",
        dir.path().display(),
        (cache >> 20).max(16)
    );
    let log = dir.path().join("pg.log").display().to_string();
    pg(
        &bin,
        "pg_ctl",
        &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
    )?;
    Ok(PgServer {
        bin,
        data,
        _dir: dir,
        port,
    })
}

fn pg_rows(spec: &Spec, data: &Dataset, report: &mut Report) -> Result<()> {
    let Some(bin) = pg_bin() else {
        report
            .notes
            .push("PostgreSQL is not installed here: its rows were skipped (benches/compare.sh installs it).".into());
        return Ok(());
    };
    let server = start_pg(bin.clone(), spec.cache_bytes)?;
    let dsn = format!(
        "host=127.0.0.1 port={} user=raiz dbname=postgres",
        server.port
    );
    let mut c = postgres::Client::connect(&dsn, postgres::NoTls)?;
    c.batch_execute(
        "CREATE TABLE kv (k bytea PRIMARY KEY, v bytea NOT NULL);
         CREATE TABLE scan (k bytea PRIMARY KEY, v bytea NOT NULL);",
    )?;
    let keys = data.rows.len().min(100_000);
    let mut tx = c.transaction()?;
    let st = tx.prepare("INSERT INTO kv (k, v) VALUES ($1, $2)")?;
    for r in &data.rows[..keys] {
        tx.execute(&st, &[&&r.key[..], &&r.value[..]])?;
    }
    let st = tx.prepare("INSERT INTO scan (k, v) VALUES ($1, $2)")?;
    let scan_rows = spec.scan_records.min(data.rows.len());
    for r in &data.rows[..scan_rows] {
        tx.execute(&st, &[&&r.key[..], &&r.value[..]])?;
    }
    tx.commit()?;
    c.batch_execute("ANALYZE")?;
    let data_small = probes(data, keys);
    let connect = || -> Result<PgClient> { PgClient::connect(&dsn) };
    measure(PG, spec, &data_small, keys, &connect, report)?;
    if let Err(e) = pgbench_rows(&server, &mut c, spec, report) {
        tracing::warn!(error = %e, "pgbench rows skipped");
        report.notes.push(format!(
            "pgbench could not be run here ({e}); its rows were skipped."
        ));
    }
    let mut best = f64::MAX;
    let mut trips = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let mut tx = c.transaction()?;
        let portal = tx.bind("SELECT k, v FROM scan ORDER BY k", &[])?;
        let mut n = 0;
        let mut fetches = 0;
        loop {
            let rows = tx.query_portal(&portal, 1000)?;
            fetches += 1;
            if rows.is_empty() {
                break;
            }
            n += rows.len();
            std::hint::black_box(rows);
        }
        tx.commit()?;
        if n != scan_rows {
            return Err(format!("PostgreSQL scan saw {n} of {scan_rows}").into());
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
        trips = fetches + 2;
    }
    report.add(
        &format!("{SCAN} of {scan_rows} records (warm)"),
        "ms",
        Better::Lower,
        PG,
        best,
    );
    report.add(
        &format!("{SCAN}: round trips"),
        "round trips",
        Better::Lower,
        PG,
        trips as f64,
    );
    drop(c);
    drop(server);
    Ok(())
}

/// Measures both servers.
/// The machine's loopback round trip, as requests per second from one
/// connection: the ceiling of any one-round-trip request.
fn loopback(spec: &Spec, report: &mut Report) -> Result<()> {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            if s.read_exact(&mut buf).is_err() {
                return Ok(());
            }
            s.write_all(&buf)?;
        }
    });
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < spec.server_secs {
        for _ in 0..100 {
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
        }
        n += 100;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(c);
    let _ = echo.join();
    report.add(
        LOOPBACK,
        "round trips/s",
        Better::Higher,
        super::machine::COLUMN,
        rate,
    );
    Ok(())
}

/// PostgreSQL's own client on the same server: point reads of a 100,000-row
/// table by a bigint key and durable inserts of a random 24-byte key with a
/// 150-byte value, prepared statements, at 1, 8 and 32 connections.
fn pgbench_rows(
    server: &PgServer,
    c: &mut postgres::Client,
    spec: &Spec,
    report: &mut Report,
) -> Result<()> {
    if !server.bin.join("pgbench").exists() {
        return Err("pgbench is not installed".into());
    }
    c.batch_execute(
        "CREATE TABLE pgb (k bigint PRIMARY KEY, v bytea NOT NULL);
         INSERT INTO pgb SELECT g, decode(repeat('07', 150), 'hex') FROM generate_series(1, 100000) g;
         CREATE TABLE pgi (k bytea PRIMARY KEY, v bytea NOT NULL);
         ANALYZE;",
    )?;
    let dir = server._dir.path();
    let read = dir.join("read.sql");
    let insert = dir.join("insert.sql");
    std::fs::write(
        &read,
        "\\set k random(1, 100000)\nSELECT v FROM pgb WHERE k = :k;\n",
    )?;
    std::fs::write(
        &insert,
        "INSERT INTO pgi (k, v) VALUES (decode(md5(random()::text) || substr(md5(random()::text), 1, 16), 'hex'), decode(repeat('07', 150), 'hex'));\n",
    )?;
    if is_root() {
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&read)
            .arg(&insert)
            .status()?;
    }
    let secs = spec.server_secs.round().max(1.0).to_string();
    let port = server.port.to_string();
    for (what, script) in [
        ("point read by key", &read),
        ("durable 1-record insert", &insert),
    ] {
        for conns in CONNS {
            let (c, j) = (conns.to_string(), conns.min(8).to_string());
            let out = pg_output(
                &server.bin,
                "pgbench",
                &[
                    "-n",
                    "-M",
                    "prepared",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "raiz",
                    "-c",
                    &c,
                    "-j",
                    &j,
                    "-T",
                    &secs,
                    "-f",
                    &script.display().to_string(),
                    "postgres",
                ],
            )?;
            // "tps = 11234.5 (without initial connection time)"; older
            // versions print an "including connections" line first.
            let tps = out
                .lines()
                .rfind(|l| l.trim_start().starts_with("tps = "))
                .and_then(|l| l.trim_start()["tps = ".len()..].split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("no tps in pgbench's output: {out}"))?;
            report.add(
                &format!("{what}, {conns} connection(s)"),
                "requests/s",
                Better::Higher,
                PGBENCH,
                tps,
            );
        }
    }
    Ok(())
}

pub fn run(spec: &Spec, data: &Dataset, report: &mut Report) -> Result<()> {
    loopback(spec, report)?;
    raiz_rows(spec, data, report)?;
    // PostgreSQL is a peer, not the subject: when it cannot be set up here
    // (no packages, no postgres user, a sandbox that forbids it) the report
    // says so instead of the whole run failing.
    if let Err(e) = pg_rows(spec, data, report) {
        tracing::warn!(error = %e, "PostgreSQL rows skipped");
        report.notes.push(format!(
            "PostgreSQL could not be run here ({e}); its rows were skipped."
        ));
    }
    Ok(())
}

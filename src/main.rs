//! The `raiz` command.

mod backup;
mod cache;
mod cluster;
mod commands;
mod demo;
mod error;
mod export;
mod import;
mod net;
mod progress;
mod shell;
mod sql;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use raiz_client::Connection;
use raiz_engine::{Database, Options};
use raiz_server::Config;

use error::{CliError, CliResult};

const EXIT_CODES: &str = "\
Exit codes: 0 success, 2 usage error, 3 data error (bad input, failed check,
refused write), 4 I/O or connection error.";

#[derive(Parser)]
#[command(
    name = "raiz",
    version,
    about = "raiz: a transactional ISAM storage engine",
    after_help = EXIT_CODES
)]
struct Cli {
    // (Help given as text: it names variables and sections rustdoc would
    // read as HTML tags and links.)
    #[arg(
        long,
        global = true,
        help = "Configuration file (raiz.toml); RAIZ_<SECTION>_<KEY> variables override it, and flags override both"
    )]
    config: Option<PathBuf>,
    /// Set any setting, SECTION.KEY=VALUE (repeat), e.g.
    /// --set server.max_frame_mb=8; overrides the file and the environment.
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    #[arg(
        long,
        global = true,
        value_enum,
        help = "Log format on standard error (default text; [log] format, RAIZ_LOG_FORMAT)"
    )]
    log_format: Option<LogFormat>,
    #[arg(
        long,
        global = true,
        help = "What is logged: error, warn, info, debug, trace, or a filter such as raiz=debug ([log] level, RAIZ_LOG_LEVEL or RAIZ_LOG)"
    )]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// Where a command finds its data: a rootpath or a connection string.
#[derive(clap::Args, Clone, Default)]
struct Target {
    /// The rootpath (embedded).
    #[arg(long, conflicts_with = "connect")]
    root: Option<PathBuf>,
    /// A connection string: file:/dir, raiz://user@host:port, raizs://…,
    /// raiz+unix://user@/path (the password from RAIZ_PASSWORD).
    #[arg(long)]
    connect: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The whole system on a throw-away rootpath: an ERP dataset built
    /// embedded, a server in this process with client sessions, two cache
    /// nodes, and the measured rates.
    #[command(after_help = "Examples:
  raiz demo
  raiz demo --keep                      # keep the rootpath and print how to explore it
  raiz demo --rows 100000 --root /tmp/erp")]
    Demo {
        /// Rows in the dictionary table (the other tables scale with it).
        #[arg(long, default_value_t = 40_000)]
        rows: u64,
        /// Use (and keep) this rootpath instead of a temporary one.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Keep the temporary rootpath and print the shell command to explore it.
        #[arg(long)]
        keep: bool,
        /// Buffer pool in MiB.
        #[arg(long)]
        pool_mb: Option<u64>,
        /// Dictionary changes timed from one cache node to the other.
        #[arg(long, default_value_t = 300)]
        changes: u64,
        /// Seconds of each timed workload (client sessions, cached reads).
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Run read-only SQL (joins, aggregates, GROUP BY, ORDER BY) over the
    /// live tables: embedded on a rootpath, or through a server's SQL
    /// listener (`raiz serve --sql-listen`).
    #[command(after_help = "Examples:
  raiz sql --root /data/erp -c \"SELECT city, count(*) FROM customers GROUP BY city\"
  raiz sql --connect postgresql://ana@127.0.0.1:5432 --json -c \"SELECT * FROM sx3 WHERE alias = 'SA1'\"
  raiz sql --root /data/erp < report.sql     # statements each ended by ; at a line's end")]
    Sql {
        /// The rootpath (embedded).
        #[arg(long, conflicts_with = "connect")]
        root: Option<PathBuf>,
        /// A server's SQL listener: `postgresql://user:password@host:port`
        /// (the password from PGPASSWORD or RAIZ_PASSWORD).
        #[arg(long)]
        connect: Option<String>,
        /// The statement; without it, statements are read from standard input.
        #[arg(short = 'c', long)]
        command: Option<String>,
        /// One JSON object per row instead of an aligned table.
        #[arg(long)]
        json: bool,
    },
    /// List the tables of a rootpath.
    #[command(after_help = "Example:\n  raiz tables --root /data/erp")]
    Tables {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Show what a table's header says (schema, format, counts, indexes, repairs).
    #[command(after_help = "Example:\n  raiz info --root /data/erp sa1")]
    Info {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
    /// Verify a table: every record readable, every index exactly right.
    #[command(
        after_help = "Example:\n  raiz check --root /data/erp sa1      # exit code 3 when a problem is found"
    )]
    Check {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
        /// Stop after this many problems.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Re-create every index from the data, recovering what damaged pages still hold.
    #[command(after_help = "Example:\n  raiz rebuild --root /data/erp sa1")]
    Rebuild {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
    /// Remove deleted records for good (renumbers the rest).
    #[command(after_help = "Example:\n  raiz pack --root /data/erp sa1")]
    Pack {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
    /// Change a table's fields; values are converted where the data allows.
    #[command(
        after_help = "Example:\n  raiz alter --root /data/erp sb1 --add B1_PESO:Numeric(11,4) --drop B1_OLD"
    )]
    Alter {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
        /// Add a field: NAME:TYPE, e.g. B1_PESO:Numeric(11,4).
        #[arg(long)]
        add: Vec<String>,
        /// Remove a field.
        #[arg(long)]
        drop: Vec<String>,
        /// Change a field's type or width: NAME:TYPE.
        #[arg(long)]
        retype: Vec<String>,
    },
    /// Create or drop an index.
    #[command(
        after_help = "Example:\n  raiz index create --root /data/erp sa1 sa1_2 --seg A1_FILIAL --seg A1_NOME,fold"
    )]
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Serve the rootpath to clients until SIGINT/SIGTERM.
    #[command(
        after_help = "Example:\n  raiz serve --root /data/erp --listen 0.0.0.0:7070 --unix /run/raiz.sock"
    )]
    Serve {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// TCP address, e.g. 0.0.0.0:7070 (port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
        /// Unix socket path.
        #[arg(long)]
        unix: Option<PathBuf>,
        /// TLS certificate chain (PEM).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// End sessions idle for this many seconds.
        #[arg(long)]
        idle_secs: Option<u64>,
        /// Seconds a client has to finish a frame it started.
        #[arg(long)]
        frame_secs: Option<u64>,
        /// Connections served at once; the excess is refused (default 4096).
        #[arg(long)]
        max_connections: Option<u64>,
        /// End a session that holds locks others wait for and has sent
        /// nothing for this many seconds (default 60).
        #[arg(long)]
        lock_idle_secs: Option<u64>,
        /// MiB of recent changes kept for cache nodes to catch up from
        /// (default 64).
        #[arg(long)]
        window_mb: Option<u64>,
        /// Serve /healthz, /readyz and /metrics (Prometheus) on this
        /// address, e.g. 127.0.0.1:9470.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Serve read-only SQL over the PostgreSQL protocol on this address
        /// (psql, BI tools, PostgreSQL drivers), e.g. 127.0.0.1:5432.
        #[arg(long)]
        sql_listen: Option<String>,
        /// Run as one member of the cluster [cluster] describes (id,
        /// members, secret_file): commits are acknowledged once a majority
        /// of the members holds them; only the leader takes writes.
        #[arg(long)]
        cluster: bool,
    },
    /// Manage the users of a rootpath (argon2 hashes in raiz.users).
    #[command(
        after_help = "Example:\n  RAIZ_NEW_PASSWORD=secret raiz user add --root /data/erp ana --group fin"
    )]
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Run a cache node: chosen tables of a server kept in this machine's
    /// memory, current through the changes the server pushes.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:
  RAIZ_PASSWORD=secret raiz cache --server raiz://ana@db1:7070 --tables sx3,sx2,six --dir /var/cache/raiz --listen unix:/run/raiz-cache.sock
  raiz cache status --dir /var/cache/raiz
  raiz cache discard --dir /var/cache/raiz"
    )]
    Cache {
        #[command(subcommand)]
        action: Option<CacheAction>,
        /// The server, e.g. raiz://user@host:7070 (password from RAIZ_PASSWORD).
        #[arg(long)]
        server: Option<String>,
        /// Tables to cache, separated by commas.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Where the node keeps its copy (DIR/dbCache) and status; without
        /// it the copy lives in memory only and loads at every start.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Refuse reads once the server has been silent this many seconds
        /// (default 5).
        #[arg(long)]
        stale_secs: Option<f64>,
        /// Buffer pool of the copy in MiB (default 1024): at least the size
        /// of the cached tables.
        #[arg(long)]
        pool_mb: Option<u64>,
        /// Serve bound clients (other processes of this machine, with the
        /// ordinary client) on `unix:PATH` or a loopback `HOST:PORT`;
        /// repeatable.
        #[arg(long)]
        listen: Vec<String>,
        /// Serve /healthz, /readyz and /metrics (Prometheus) on this
        /// address, e.g. 127.0.0.1:9471.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Check a configuration file, or show the settings in force.
    #[command(after_help = "Examples:
  raiz config check /etc/raiz/raiz.toml      # each mistake with its line; exit code 2 if any
  RAIZ_SERVER_LISTEN=0.0.0.0:7070 raiz --config /etc/raiz/raiz.toml config show")]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// A cluster of `raiz serve --cluster` members: its state.
    #[command(
        after_help = "Example:\n  RAIZ_PASSWORD=secret raiz cluster status --connect raiz://admin@db1:7070"
    )]
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// List a server's sessions, or end one (admin user).
    #[command(
        after_help = "Example:\n  RAIZ_PASSWORD=secret raiz monitor --connect raiz://admin@db1:7070"
    )]
    Monitor {
        /// Connection string of the server, e.g. raiz://admin@host:7070.
        #[arg(long)]
        connect: String,
        /// End this session.
        #[arg(long)]
        end: Option<u64>,
    },
    /// Show or set a table's permissions on a server.
    #[command(
        after_help = "Example:\n  raiz perms --connect raiz://admin@db1:7070 ledger --group fin --rights rwdx:rwd-:----"
    )]
    Perms {
        /// Connection string of the server.
        #[arg(long)]
        connect: String,
        /// The table.
        table: String,
        /// New owner.
        #[arg(long)]
        owner: Option<String>,
        /// New group.
        #[arg(long)]
        group: Option<String>,
        /// New rights, owner:group:others, e.g. rwdx:rwd-:r---.
        #[arg(long)]
        rights: Option<String>,
    },
    /// An interactive and scriptable shell: navigate, seek, edit, lock, transact.
    #[command(after_help = "Examples:
  raiz shell --root /data/erp
  raiz shell --connect raiz://ana@db1:7070 -c 'use sa1; order sa1_1; seek 000001'
  raiz shell --root /data/erp --json < script.txt

Commands are documented in docs/shell.md (`help` lists them).")]
    Shell {
        #[command(flatten)]
        target: Target,
        /// Run these commands (separated by `;` or new lines) and exit.
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// One JSON object per line instead of aligned tables.
        #[arg(long)]
        json: bool,
        /// Print each command after a `raiz> ` prompt before its output.
        #[arg(long)]
        echo: bool,
        /// Stop at the first failing command (else the exit code tells of
        /// the first failure at the end).
        #[arg(long)]
        stop_on_error: bool,
    },
    /// Import rows from CSV, JSON lines or a DBF file, all or nothing.
    #[command(after_help = "Examples:
  raiz import --root /data/erp sa1 --from sa1.csv --format csv
  raiz import --root /data/erp items --from items.jsonl --format jsonl --create --schema \"CODE C(6), PRICE N(12,2), QTY I\"
  raiz import --root /data/erp sa1 --from SA1.DBF --format dbf --create --dry-run")]
    Import {
        #[command(flatten)]
        target: Target,
        /// The table.
        table: String,
        /// The input file.
        #[arg(long)]
        from: PathBuf,
        /// Input format.
        #[arg(long, value_enum)]
        format: import::Format,
        /// Create the table (from --schema, the DBF header or the data).
        #[arg(long)]
        create: bool,
        /// The table's fields, `FIELD TYPE, …` (C(n), N(len,dec), I, F, D, L, M, Binary(n)).
        #[arg(long)]
        schema: Option<String>,
        /// Print the schema and check every row; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Report bad rows and skip them instead of importing nothing.
        #[arg(long)]
        keep_going: bool,
        /// Commit every N rows to bound memory (the import is then all or
        /// nothing only into a table it creates, which a failure drops).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        batch: Option<u64>,
    },
    /// Export a table as CSV or JSON lines.
    #[command(after_help = "Examples:
  raiz export --root /data/erp sa1 --format csv --out sa1.csv
  raiz export --root /data/erp sa1 --format jsonl --order sa1_2 --deleted --types")]
    Export {
        #[command(flatten)]
        target: Target,
        /// The table.
        table: String,
        /// Output format.
        #[arg(long, value_enum)]
        format: export::Format,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// In this index's order (default: record number order).
        #[arg(long)]
        order: Option<String>,
        /// Include deleted records, marked by an @deleted column.
        #[arg(long)]
        deleted: bool,
        /// Write each field's type (CSV: NAME:TYPE headers; JSON lines: a first
        /// {"@schema": …} line) so an import recreates the table exactly.
        #[arg(long)]
        types: bool,
    },
    /// Take an online backup: through a server (an admin user), or of a
    /// rootpath no server holds. Sessions go on reading and committing.
    #[command(after_help = "Examples:
  RAIZ_PASSWORD=secret raiz backup --connect raiz://admin@db1:7070 --to /backup/erp-2024-06-01
  raiz backup --root /data/erp --to /backup/erp-2024-06-01

Through a server the directory is on the server's machine. It must be empty
(or new) and outside the rootpath; it is complete once it holds raiz.backup.")]
    Backup {
        #[command(flatten)]
        target: Target,
        /// The backup directory (created; must be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into a new rootpath (a new epoch), replaying the log
    /// it holds and checking every table.
    #[command(
        after_help = "Example:\n  raiz restore --from /backup/erp-2024-06-01 --root /data/erp-restored   # exit code 3 if a table fails its check"
    )]
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The new rootpath (created; must be empty).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Problems reported per table at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a completion script for a shell.
    #[command(after_help = "Example:\n  raiz completions bash > /etc/bash_completion.d/raiz")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `raiz config` subcommands.
#[derive(Subcommand)]
enum ConfigAction {
    /// Check a file (and the RAIZ_ variables): unknown sections and keys,
    /// wrong types, values out of range, keys set twice — each with its line.
    #[command(after_help = "Example:\n  raiz config check /etc/raiz/raiz.toml")]
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the settings in force: the file, then the environment, then
    /// --set, as TOML.
    #[command(
        after_help = "Example:\n  raiz --config /etc/raiz/raiz.toml --set general.pool_mb=512 config show"
    )]
    Show,
}

/// What `raiz cache` does besides running a node.
#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Members, leader, term, and each member's last log entry, applied
    /// entry and lag behind the leader.
    Status {
        /// Connection string of any member, e.g. raiz://admin@db1:7070
        /// (password from RAIZ_PASSWORD); the others are asked with the
        /// same user at their client addresses.
        #[arg(long)]
        connect: String,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Adds a member (started with [cluster] join = true): it catches up
    /// with the log as a learner, then votes. Ask the leader.
    Add {
        /// Connection string of the leader (an admin user).
        #[arg(long)]
        connect: String,
        /// The new member: "ID RAFT_HOST:PORT CLIENT_HOST:PORT".
        member: String,
    },
    /// Removes a member from the group (ask the leader).
    Remove {
        /// Connection string of the leader (an admin user).
        #[arg(long)]
        connect: String,
        /// The member's id.
        id: u64,
    },
    /// Builds a snapshot of a member's database now (any member; an admin
    /// user); the log before it, but the last keep_after_snapshot entries,
    /// may then be dropped.
    Snapshot {
        /// Connection string of the member.
        #[arg(long)]
        connect: String,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Show the status a node last reported (lag, reads, tables, memory).
    #[command(after_help = "Example:\n  raiz cache status --dir /var/cache/raiz --json")]
    Status {
        /// The node's directory.
        #[arg(long)]
        dir: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Throw a stopped node's copy away: its next start loads everything
    /// afresh (after a failover to a server whose data is behind the copy).
    #[command(after_help = "Example:\n  raiz cache discard --dir /var/cache/raiz")]
    Discard {
        /// The node's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum UserAction {
    /// Add a user; the password is read from RAIZ_NEW_PASSWORD or the first line of stdin.
    Add {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Login name.
        name: String,
        /// A group (repeat); the first owns the tables the user creates.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// May list and end sessions and bypasses table permissions.
        #[arg(long)]
        admin: bool,
    },
    /// Change a user's password (read like `add`).
    Passwd {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Login name.
        name: String,
    },
    /// Remove a user.
    Remove {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Login name.
        name: String,
    },
    /// List users, groups and admins.
    List {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum IndexAction {
    /// Create an index, built from the table's records.
    Create {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
        /// The index's name.
        name: String,
        /// A segment: `FIELD[,upper][,desc][,part=OFFSET:LEN]`; repeat in key order.
        #[arg(long = "seg", required = true)]
        segs: Vec<String>,
        /// Unique among live records.
        #[arg(long)]
        unique: bool,
    },
    /// Drop an index.
    Drop {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
        /// The index's name.
        name: String,
    },
}

fn open(config: &Config, root: Option<PathBuf>) -> CliResult<Database> {
    let root = root.or_else(|| config.root.clone()).ok_or_else(|| {
        CliError::Usage("no rootpath: pass --root or set root in the config file".into())
    })?;
    let options = Options::default()
        .pool_bytes(config.pool_bytes())
        .log(config.log_options());
    Ok(Database::open_with(&root, options)?)
}

/// The connection a command works on: `--connect`, else the rootpath.
fn connection(config: &Config, target: Target) -> CliResult<Connection> {
    match target.connect {
        Some(c) => Ok(Connection::connect(&c)?),
        None => Ok(Connection::embedded(open(config, target.root)?)),
    }
}

fn mistakes(list: Vec<raiz_server::config::Mistake>) -> CliError {
    CliError::Usage(
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The settings in force: the file, then the environment, then `--set`,
/// then the log flags (each command's own flags come last).
fn load_config(cli: &Cli) -> CliResult<Config> {
    let mut config = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    config.apply_env(std::env::vars()).map_err(mistakes)?;
    for s in &cli.set {
        config
            .apply_set(s)
            .map_err(|m| CliError::Usage(m.to_string()))?;
    }
    if let Some(f) = cli.log_format {
        config.log_format = Some(
            match f {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .into(),
        );
    }
    if let Some(l) = &cli.log_level {
        config
            .apply_set(&format!("log.level={l}"))
            .map_err(|m| CliError::Usage(format!("--log-level {l}: {}", m.message)))?;
    }
    Ok(config)
}

/// `raiz config check FILE`: every mistake of the file and of the RAIZ_
/// variables, each on a line of its own.
fn config_check(file: &std::path::Path) -> CliResult {
    let text = std::fs::read_to_string(file).map_err(|e| CliError::io(file.display(), e))?;
    let mut found = Vec::new();
    let mut config = match Config::check(&text) {
        Ok(c) => c,
        Err(m) => {
            found.extend(m.iter().map(|m| format!("{}: {m}", file.display())));
            Config::default()
        }
    };
    if let Err(m) = config.apply_env(std::env::vars()) {
        found.extend(m.iter().map(|m| format!("environment: {m}")));
    }
    if found.is_empty() {
        println!("{}: ok", file.display());
        return Ok(());
    }
    for f in &found {
        println!("{f}");
    }
    Err(CliError::Usage(format!(
        "{} mistake{} in the configuration",
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    )))
}

fn run(cli: Cli, mut config: Config) -> CliResult {
    match cli.command {
        Command::Demo {
            rows,
            root,
            keep,
            pool_mb,
            changes,
            secs,
        } => {
            if pool_mb.is_some() {
                config.pool_mb = pool_mb;
            }
            if !(secs > 0.0 && secs <= 600.0) {
                return Err(CliError::Usage(format!(
                    "--secs {secs}: give a number of seconds above 0, at most 600"
                )));
            }
            demo::run(demo::DemoOptions {
                rows: rows.max(100),
                root,
                keep,
                pool_bytes: config.pool_bytes(),
                changes,
                secs,
            })
        }
        Command::Sql {
            root,
            connect,
            command,
            json,
        } => {
            let format = if json {
                sql::Output::Json
            } else {
                sql::Output::Aligned
            };
            let source = match connect {
                Some(url) => sql::Source::connect(&url)?,
                None => {
                    let db = open(&config, root)?;
                    let s =
                        raiz_sql::SqlSession::open(&db, raiz_sql::everything(), Default::default())
                            .map_err(|e| CliError::Data(e.to_string()))?;
                    sql::Source::Embedded(Box::new(s))
                }
            };
            sql::run(source, command, format)
        }
        Command::Tables { root } => {
            let db = open(&config, root)?;
            for t in db.list_tables()? {
                println!("{t}");
            }
            Ok(())
        }
        Command::Info { root, table } => commands::info(&open(&config, root)?, &table),
        Command::Check { root, table, limit } => {
            commands::check(&open(&config, root)?, &table, limit)
        }
        Command::Rebuild { root, table } => commands::rebuild(&open(&config, root)?, &table),
        Command::Pack { root, table } => commands::pack(&open(&config, root)?, &table),
        Command::Alter {
            root,
            table,
            add,
            drop,
            retype,
        } => commands::alter(&open(&config, root)?, &table, &add, &drop, &retype),
        Command::Index { action } => match action {
            IndexAction::Create {
                root,
                table,
                name,
                segs,
                unique,
            } => commands::index_create(&open(&config, root)?, &table, &name, &segs, unique),
            IndexAction::Drop { root, table, name } => {
                commands::index_drop(&open(&config, root)?, &table, &name)
            }
        },
        Command::Serve {
            root,
            listen,
            unix,
            tls_cert,
            tls_key,
            idle_secs,
            frame_secs,
            max_connections,
            lock_idle_secs,
            window_mb,
            metrics_listen,
            sql_listen,
            cluster,
        } => {
            config.cluster = cluster;
            config.metrics_listen = metrics_listen.or(config.metrics_listen);
            config.sql_listen = sql_listen.or(config.sql_listen);
            config.root = root.or(config.root);
            config.listen = listen.or(config.listen);
            config.unix = unix.or(config.unix);
            config.tls_cert = tls_cert.or(config.tls_cert);
            config.tls_key = tls_key.or(config.tls_key);
            config.idle_secs = idle_secs.or(config.idle_secs);
            config.frame_secs = frame_secs.or(config.frame_secs);
            config.max_connections = max_connections.or(config.max_connections);
            config.lock_idle_secs = lock_idle_secs.or(config.lock_idle_secs);
            config.window_mb = window_mb.or(config.window_mb);
            if config.listen.is_none() && config.unix.is_none() {
                config.listen = Some(format!("127.0.0.1:{}", raiz_client::DEFAULT_PORT));
            }
            Ok(raiz_server::run(config)?)
        }
        Command::User { action } => net::user(&config, action),
        Command::Monitor { connect, end } => net::monitor(&connect, end),
        Command::Cluster { action } => match action {
            ClusterAction::Status { connect, json } => cluster::status(&connect, json),
            ClusterAction::Add { connect, member } => cluster::add(&connect, &member),
            ClusterAction::Remove { connect, id } => cluster::remove(&connect, id),
            ClusterAction::Snapshot { connect } => cluster::snapshot(&connect),
        },
        Command::Cache {
            action,
            server,
            tables,
            dir,
            stale_secs,
            pool_mb,
            listen,
            metrics_listen,
        } => match action {
            Some(CacheAction::Status { dir, json }) => cache::status(&dir, json),
            Some(CacheAction::Discard { dir }) => cache::discard(&dir),
            None => {
                let server = server.or(config.cache_server).ok_or_else(|| {
                    CliError::Usage(
                        "raiz cache needs --server or [cache] server (or a subcommand: status, discard)".into(),
                    )
                })?;
                let tables = if tables.is_empty() {
                    config.cache_tables.unwrap_or_default()
                } else {
                    tables
                };
                cache::run(cache::RunOptions {
                    server,
                    tables,
                    dir: dir.or(config.cache_dir),
                    stale_secs: stale_secs.or(config.cache_stale_secs),
                    pool_mb: pool_mb.or(config.cache_pool_mb),
                    listen: match listen.is_empty() {
                        true => config.cache_listen.clone().unwrap_or_default(),
                        false => listen,
                    },
                    metrics_listen: metrics_listen.or(config.cache_metrics_listen),
                })
            }
        },
        Command::Perms {
            connect,
            table,
            owner,
            group,
            rights,
        } => net::perms(&connect, &table, owner, group, rights),
        Command::Shell {
            target,
            command,
            json,
            echo,
            stop_on_error,
        } => shell::run(
            &connection(&config, target)?,
            &shell::Options {
                json,
                echo,
                stop_on_error,
                commands: command,
            },
        ),
        Command::Import {
            target,
            table,
            from,
            format,
            create,
            schema,
            dry_run,
            keep_going,
            batch,
        } => {
            let schema = schema
                .map(|s| values::parse_schema(&s).map_err(|e| CliError::Usage(e.to_string())))
                .transpose()?;
            import::run(
                &connection(&config, target)?,
                &import::Options {
                    table,
                    from,
                    format,
                    create,
                    schema,
                    dry_run,
                    keep_going,
                    batch,
                },
            )
        }
        Command::Export {
            target,
            table,
            format,
            out,
            order,
            deleted,
            types,
        } => export::run(
            &connection(&config, target)?,
            &export::Options {
                table,
                format,
                out,
                order,
                deleted,
                types,
            },
        ),
        Command::Config { action } => match action {
            ConfigAction::Check { file } => config_check(&file),
            ConfigAction::Show => {
                print!("{}", config.to_toml());
                Ok(())
            }
        },
        Command::Backup { target, to } => backup::backup(&config, target, &to),
        Command::Restore { from, root, limit } => backup::restore(&config, &from, root, limit),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "raiz", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn fail(e: CliError) -> ExitCode {
    eprintln!("raiz: {e}");
    e.exit_code()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `config check` reports what is wrong with a configuration itself.
    let checking = matches!(
        cli.command,
        Command::Config {
            action: ConfigAction::Check { .. }
        }
    );
    let config = if checking {
        Config::default()
    } else {
        match load_config(&cli) {
            Ok(c) => c,
            Err(e) => return fail(e),
        }
    };
    // A server or a node logs its sessions; other commands only what goes wrong.
    let level = if matches!(cli.command, Command::Serve { .. } | Command::Cache { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(
        config.log_level.as_deref().unwrap_or(level),
    ) {
        Ok(f) => f,
        Err(e) => return fail(CliError::Usage(format!("log level: {e}"))),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format.as_deref() == Some("json") {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Reported(code)) => ExitCode::from(code),
        Err(e) => fail(e),
    }
}

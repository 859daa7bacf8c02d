//! The `raiz` command.

mod commands;
mod demo;
mod net;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raiz_engine::{Database, Options};
use raiz_server::Config;

#[derive(Parser)]
#[command(
    name = "raiz",
    version,
    about = "raiz: a transactional ISAM storage engine"
)]
struct Cli {
    /// Configuration file (raiz.toml); flags override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an ERP-like field dictionary in a throw-away rootpath and show the rates.
    Demo {
        /// Rows in the dictionary table.
        #[arg(long, default_value_t = 40_000)]
        rows: u64,
        /// Use (and keep) this rootpath instead of a temporary one.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Buffer pool in MiB.
        #[arg(long)]
        pool_mb: Option<u64>,
    },
    /// List the tables of a rootpath.
    Tables {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Show what a table's header says (schema, format, counts, indexes, repairs).
    Info {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
    /// Verify a table: every record readable, every index exactly right.
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
    Rebuild {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
    /// Remove deleted records for good (renumbers the rest).
    Pack {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
    /// Change a table's fields; values are converted where the data allows.
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
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Serve the rootpath to clients until SIGINT/SIGTERM.
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
    },
    /// Manage the users of a rootpath (argon2 hashes in raiz.users).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// List a server's sessions, or end one (admin user).
    Monitor {
        /// Connection string of the server, e.g. raiz://admin@host:7070.
        #[arg(long)]
        connect: String,
        /// End this session.
        #[arg(long)]
        end: Option<u64>,
    },
    /// Show or set a table's permissions on a server.
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

fn open(config: &Config, root: Option<PathBuf>) -> Result<Database, String> {
    let root = root
        .or_else(|| config.root.clone())
        .ok_or("no rootpath: pass --root or set root in the config file")?;
    let options = Options::default()
        .pool_bytes(config.pool_bytes())
        .log(config.log_options());
    Database::open_with(&root, options).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    let mut config = match &cli.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    match cli.command {
        Command::Demo {
            rows,
            root,
            pool_mb,
        } => {
            if pool_mb.is_some() {
                config.pool_mb = pool_mb;
            }
            demo::run(rows, root, config.pool_bytes()).map_err(|e| e.to_string())
        }
        Command::Tables { root } => {
            let db = open(&config, root)?;
            for t in db.list_tables().map_err(|e| e.to_string())? {
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
        } => {
            config.root = root.or(config.root);
            config.listen = listen.or(config.listen);
            config.unix = unix.or(config.unix);
            config.tls_cert = tls_cert.or(config.tls_cert);
            config.tls_key = tls_key.or(config.tls_key);
            config.idle_secs = idle_secs.or(config.idle_secs);
            config.frame_secs = frame_secs.or(config.frame_secs);
            config.max_connections = max_connections.or(config.max_connections);
            config.lock_idle_secs = lock_idle_secs.or(config.lock_idle_secs);
            if config.listen.is_none() && config.unix.is_none() {
                config.listen = Some(format!("127.0.0.1:{}", raiz_client::DEFAULT_PORT));
            }
            raiz_server::run(config).map_err(|e| e.to_string())
        }
        Command::User { action } => net::user(&config, action),
        Command::Monitor { connect, end } => net::monitor(&connect, end),
        Command::Perms {
            connect,
            table,
            owner,
            group,
            rights,
        } => net::perms(&connect, &table, owner, group, rights),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs its sessions; other commands only what goes wrong.
    let level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAIZ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raiz: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `raiz` command.

mod demo;

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
    /// Show what a table's header says (schema, format, counts, repairs).
    Info {
        /// The rootpath.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The table.
        table: String,
    },
}

fn open(config: &Config, root: Option<PathBuf>) -> Result<Database, String> {
    let root = root
        .or_else(|| config.root.clone())
        .ok_or("no rootpath: pass --root or set root in the config file")?;
    Database::open_with(&root, Options::default().pool_bytes(config.pool_bytes()))
        .map_err(|e| e.to_string())
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
        Command::Info { root, table } => {
            let db = open(&config, root)?;
            let t = db.session().open_table(&table).map_err(|e| e.to_string())?;
            let i = t.info();
            println!("table        {}", i.name);
            println!("file         {}", i.path);
            println!("file id      {:032x}", i.file_id);
            println!("format       {:?}, page size {}", i.format, i.page_size);
            println!("durability   {}", i.durability);
            println!(
                "records      {} ({} deleted)",
                i.record_count, i.deleted_count
            );
            println!("pages        {} data, {} blob", i.data_pages, i.blob_pages);
            println!(
                "repairs      {} unclean opens, {} moves, {} header copies, {} lost slots",
                i.stats.unclean_opens,
                i.stats.moves,
                i.stats.header_repairs,
                i.stats.lost_slots_restored
            );
            println!("fields");
            for f in i.schema.fields() {
                println!("  {:<12} {}", f.name, f.ty);
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAIZ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raiz: {e}");
            ExitCode::FAILURE
        }
    }
}

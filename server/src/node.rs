//! `raiz cache`: a cache node as a process of its own. It follows its server
//! until SIGTERM or SIGINT, reporting its status as it goes, then closes its
//! copy cleanly (a restart then catches up from where it stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_client::cache::{CacheConfig, CacheNode, CacheStatus};

use crate::Error;

/// Runs a node until a termination signal, calling `report` with its status
/// every `every` and once more at the end.
pub fn run(
    config: CacheConfig,
    listen: &[String],
    every: Duration,
    mut report: impl FnMut(&CacheStatus),
) -> Result<(), Error> {
    let stop = termination_flag()?;
    let node = CacheNode::start(config)?;
    tracing::info!(target: "raiz::cache", "cache node started");
    // Bound clients: `unix:PATH` or a loopback `HOST:PORT`.
    let mut bound = Vec::new();
    for l in listen {
        let server = match l.strip_prefix("unix:") {
            Some(path) => {
                crate::bound::start(node.clone(), Some(std::path::Path::new(path)), None)?
            }
            None => crate::bound::start(node.clone(), None, Some(l))?,
        };
        if let Some(p) = &server.unix {
            tracing::info!(target: "raiz::cache", socket = %p.display(), "serving bound clients");
        }
        if let Some(a) = &server.tcp {
            tracing::info!(target: "raiz::cache", address = %a, "serving bound clients");
        }
        bound.push(server);
    }
    let mut last = Instant::now() - every;
    while !stop.load(Ordering::Relaxed) {
        if last.elapsed() >= every {
            report(&node.status());
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!(target: "raiz::cache", "stopping: the copy is closed cleanly");
    drop(bound);
    report(&node.status());
    node.stop();
    Ok(())
}

/// A flag set by SIGTERM or SIGINT.
fn termination_flag() -> Result<Arc<AtomicBool>, Error> {
    let flag = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Listen {
            address: "signals".into(),
            source,
        })?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let f = flag.clone();
    std::thread::Builder::new()
        .name("raiz-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    let _ = ready_tx.send(false);
                    return;
                };
                let _ = ready_tx.send(true);
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                f.store(true, Ordering::Relaxed);
            })
        })
        .map_err(|source| Error::Listen {
            address: "signals".into(),
            source,
        })?;
    match ready_rx.recv() {
        Ok(true) => Ok(flag),
        _ => Err(Error::Listen {
            address: "signals".into(),
            source: std::io::Error::other("cannot install signal handlers"),
        }),
    }
}

//! Health and metrics over HTTP, on an address of their own
//! (`--metrics-listen`): `GET /healthz` (the process answers), `GET /readyz`
//! (200 once it serves: for a server, recovery done and the listeners up;
//! for a cache node, every table loaded and the server connected; 503 with
//! the reason before), `GET /metrics` (Prometheus / OpenMetrics text), and on
//! a cluster member `GET /role` (its role, term and leader) and `GET /leader`
//! (200 only on the member that takes writes: a load balancer's or a
//! Kubernetes probe's way to route writes).
//!
//! Invariants:
//! - **Nothing on the request path but counters.** A request adds to a
//!   counter and a histogram of its kind; everything else (engine counters,
//!   the buffer pool, sessions, a node's tables) is read when `/metrics` is
//!   scraped, from counters the engine already keeps (`Database::stats`,
//!   relaxed atomics) or from `CacheNode::status()`.
//! - **Bounded.** The endpoint serves at most [`MAX_CONNECTIONS`]
//!   connections at once, each with a header timeout, so a client of the
//!   metrics port cannot tie up the server.
//! - **Stable names.** Every metric is prefixed `raiz_`; counters end in
//!   `_total`, durations are seconds, sizes bytes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use raiz_engine::stats::HistogramSnapshot;
use tokio::sync::watch;

use crate::Error;

/// Connections the endpoint serves at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoint reports on.
pub trait Source: Send + Sync + 'static {
    /// Ok when ready to serve, else why not.
    fn readiness(&self) -> Result<(), String>;
    /// The metrics, as OpenMetrics text.
    fn metrics(&self) -> String;
    /// On a cluster member: its role as text, and whether it takes writes.
    fn role(&self) -> Option<(String, bool)> {
        None
    }
}

// ---- building metrics at scrape time ----

/// A value read at scrape time.
#[derive(Debug, Clone)]
pub enum Value {
    /// A counter (monotonic).
    Counter(f64),
    /// A gauge.
    Gauge(f64),
    /// A histogram: bucket bounds and per-bucket counts (the last above
    /// every bound), and the sum.
    Histogram(HistogramSnapshot),
}

/// One metric read at scrape time, with its samples by label set.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Name (without `_total`; the encoder adds it to counters).
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Samples: labels and value (all of one type).
    pub samples: Vec<(Vec<(&'static str, String)>, Value)>,
}

impl Metric {
    /// A metric with one unlabelled sample.
    pub fn one(name: &'static str, help: &'static str, v: Value) -> Metric {
        Metric {
            name,
            help,
            samples: vec![(Vec::new(), v)],
        }
    }
}

fn encode_value(v: &Value, enc: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
    match v {
        Value::Counter(c) => ConstCounter::new(*c).encode(enc),
        Value::Gauge(g) => ConstGauge::new(*g).encode(enc),
        Value::Histogram(h) => {
            let mut enc = enc;
            let buckets: Vec<(f64, u64)> = h
                .bounds
                .iter()
                .copied()
                .chain(std::iter::once(f64::MAX))
                .zip(h.counts.iter().copied())
                .collect();
            enc.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum,
                h.count(),
                &buckets,
                None,
            )
        }
    }
}

/// A collector that reads its metrics when scraped.
struct Snapshot<F>(F);

impl<F> std::fmt::Debug for Snapshot<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

impl<F: Fn() -> Vec<Metric> + Send + Sync + 'static> Collector for Snapshot<F> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for m in (self.0)() {
            let Some((_, first)) = m.samples.first() else {
                continue;
            };
            let kind = match first {
                Value::Counter(_) => MetricType::Counter,
                Value::Gauge(_) => MetricType::Gauge,
                Value::Histogram(_) => MetricType::Histogram,
            };
            let mut family = encoder.encode_descriptor(m.name, m.help, None, kind)?;
            match m.samples.as_slice() {
                [(labels, v)] if labels.is_empty() => encode_value(v, family)?,
                samples => {
                    for (labels, v) in samples {
                        encode_value(v, family.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Registers `read` to be called at each scrape.
pub fn register_snapshot(
    registry: &mut Registry,
    read: impl Fn() -> Vec<Metric> + Send + Sync + 'static,
) {
    registry.register_collector(Box::new(Snapshot(read)));
}

/// Encodes a registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    out
}

/// The engine's counters as metrics.
pub fn engine_metrics(db: &raiz_engine::Database) -> Vec<Metric> {
    let s = db.stats();
    let c = |n: u64| Value::Counter(n as f64);
    let g = |n: u64| Value::Gauge(n as f64);
    vec![
        Metric::one("raiz_commits", "Transactions committed.", c(s.commits)),
        Metric::one(
            "raiz_log_syncs",
            "Log syncs (each covers every commit written before it).",
            c(s.log_syncs),
        ),
        Metric::one(
            "raiz_log_bytes",
            "Bytes written to the log since the rootpath was opened.",
            c(s.log_bytes),
        ),
        Metric::one(
            "raiz_group_commit_batch",
            "Commits covered by one log sync (group commit).",
            Value::Histogram(s.group_commit),
        ),
        Metric::one(
            "raiz_checkpoint_seconds",
            "How long each checkpoint held commits back.",
            Value::Histogram(s.checkpoints),
        ),
        Metric::one(
            "raiz_pool_hits",
            "Page requests served from the buffer pool.",
            c(s.pool.hits),
        ),
        Metric::one(
            "raiz_pool_misses",
            "Page requests that read the disk.",
            c(s.pool.misses),
        ),
        Metric::one(
            "raiz_pool_evictions",
            "Pages evicted from the buffer pool.",
            c(s.pool.evictions),
        ),
        Metric::one(
            "raiz_pool_writebacks",
            "Changed pages written back to the table files.",
            c(s.pool.writebacks),
        ),
        Metric::one(
            "raiz_pool_cached_bytes",
            "Bytes of pages in the buffer pool.",
            g(s.pool.cached_bytes),
        ),
        Metric::one(
            "raiz_pool_capacity_bytes",
            "The buffer pool's budget.",
            g(s.pool.capacity_bytes),
        ),
        Metric::one(
            "raiz_lock_waits",
            "Lock requests that waited for another session.",
            c(s.lock_waits),
        ),
        Metric::one(
            "raiz_lock_wait_seconds",
            "Time spent waiting for locks.",
            Value::Counter(s.lock_wait_seconds),
        ),
        Metric::one(
            "raiz_lock_timeouts",
            "Lock waits that timed out.",
            c(s.lock_timeouts),
        ),
        Metric::one(
            "raiz_deadlocks",
            "Deadlocks detected (a requester refused).",
            c(s.deadlocks),
        ),
        Metric::one("raiz_open_tables", "Tables open.", g(s.open_tables)),
        Metric::one("raiz_backups", "Online backups taken.", c(s.backups)),
        Metric::one(
            "raiz_feed_seq",
            "The change feed's last sequence number.",
            g(db.feed().last_seq()),
        ),
    ]
}

// ---- the server ----

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// A request kind's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Requests by kind and outcome, and their latency: what the session
/// threads record.
#[derive(Debug)]
pub struct Requests {
    count: Family<RequestLabels, Counter>,
    latency: Family<KindLabel, Histogram, fn() -> Histogram>,
    outcomes: Mutex<HashMap<raiz_client::ErrorKind, &'static str>>,
}

fn latency_histogram() -> Histogram {
    // 50 µs … 13 s.
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            count: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            outcomes: Mutex::new(HashMap::new()),
        }
    }
}

impl Requests {
    /// Records one request: its kind, its error kind (None: it succeeded)
    /// and how long it ran.
    pub fn record(
        &self,
        kind: &'static str,
        error: Option<raiz_client::ErrorKind>,
        took: Duration,
    ) {
        let outcome = match error {
            None => "ok",
            Some(k) => *self.outcomes.lock().entry(k).or_insert_with(|| {
                // A handful of kinds, each named once for the process's life.
                Box::leak(snake(&format!("{k:?}")).into_boxed_str())
            }),
        };
        self.count
            .get_or_create(&RequestLabels { kind, outcome })
            .inc();
        self.latency
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a server is in its life, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading its users, binding.
    Starting = 0,
    /// Opening the rootpath: replaying the log.
    Recovering = 1,
    /// Serving.
    Serving = 2,
    /// Shutting down.
    Stopping = 3,
}

/// What a server's endpoint reports on: its phase, its requests, and —
/// once the rootpath is open — its engine and sessions.
pub struct ServerProbe {
    phase: AtomicU8,
    requests: Arc<Requests>,
    shared: OnceLock<Weak<crate::Shared>>,
    registry: OnceLock<Registry>,
}

impl std::fmt::Debug for ServerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProbe")
            .field("phase", &self.phase())
            .finish()
    }
}

impl ServerProbe {
    /// A probe for a server that is starting.
    pub(crate) fn new(requests: Arc<Requests>) -> Arc<ServerProbe> {
        Arc::new(ServerProbe {
            phase: AtomicU8::new(Phase::Starting as u8),
            requests,
            shared: OnceLock::new(),
            registry: OnceLock::new(),
        })
    }

    /// The server's phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Recovering,
            2 => Phase::Serving,
            _ => Phase::Stopping,
        }
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    /// The rootpath is open: engine and session metrics can be read.
    pub(crate) fn attach(self: &Arc<Self>, shared: &Arc<crate::Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
        let mut registry = Registry::default();
        registry.register(
            "raiz_requests",
            "Requests by kind and outcome (ok or the error kind).",
            self.requests.count.clone(),
        );
        registry.register(
            "raiz_request_seconds",
            "Time to execute a request, by kind.",
            self.requests.latency.clone(),
        );
        let me = Arc::downgrade(self);
        register_snapshot(&mut registry, move || {
            let Some(probe) = me.upgrade() else {
                return Vec::new();
            };
            let Some(shared) = probe.shared.get().and_then(Weak::upgrade) else {
                return Vec::new();
            };
            let mut out = engine_metrics(&shared.db);
            out.push(Metric::one(
                "raiz_sessions",
                "Sessions logged in.",
                Value::Gauge(shared.registry.len() as f64),
            ));
            if let Some(m) = &shared.cluster {
                let st = crate::cluster::status(m);
                out.push(Metric::one(
                    "raiz_cluster_writable",
                    "1 on the cluster's leader while it takes writes, else 0.",
                    Value::Gauge(f64::from(u8::from(st.writable))),
                ));
                out.push(Metric::one(
                    "raiz_cluster_term",
                    "The cluster's current term as this member knows it.",
                    Value::Gauge(st.term as f64),
                ));
                out.push(Metric::one(
                    "raiz_cluster_last_log_index",
                    "The last entry of this member's Raft log.",
                    Value::Gauge(st.last_log.unwrap_or(0) as f64),
                ));
                out.push(Metric::one(
                    "raiz_cluster_applied_index",
                    "The last entry this member applied to its tables.",
                    Value::Gauge(st.applied.unwrap_or(0) as f64),
                ));
            }
            out.push(Metric::one(
                "raiz_cache_subscriptions",
                "Cache nodes following the change stream.",
                Value::Gauge(shared.stream.subscriptions().len() as f64),
            ));
            out.push(Metric::one(
                "raiz_connections",
                "Connections open, logged in or not.",
                Value::Gauge(shared.limits.open() as f64),
            ));
            out
        });
        let _ = self.registry.set(registry);
    }
}

impl Source for ServerProbe {
    fn role(&self) -> Option<(String, bool)> {
        let shared = self.shared.get().and_then(Weak::upgrade)?;
        let m = shared.cluster.as_ref()?;
        let st = crate::cluster::status(m);
        let leader = match st.leader {
            Some(l) => st
                .members
                .iter()
                .find(|x| x.id == l)
                .map_or(format!("member {l}"), |x| {
                    format!("member {l} at {}", x.client)
                }),
            None => "none".into(),
        };
        let role = if st.writable {
            "leader".to_owned()
        } else {
            st.role.clone()
        };
        Some((
            format!(
                "{role} (member {}, term {}, leader {leader}, applied {})",
                st.id,
                st.term,
                st.applied.map_or("none".into(), |a| a.to_string())
            ),
            st.writable,
        ))
    }

    fn readiness(&self) -> Result<(), String> {
        match self.phase() {
            Phase::Serving => Ok(()),
            Phase::Starting => Err("starting".into()),
            Phase::Recovering => Err("opening the rootpath (replaying the log)".into()),
            Phase::Stopping => Err("shutting down".into()),
        }
    }

    fn metrics(&self) -> String {
        let ready = Metric::one(
            "raiz_ready",
            "1 when serving (recovery done, listening), else 0.",
            Value::Gauge(f64::from(u8::from(self.phase() == Phase::Serving))),
        );
        let mut head = Registry::default();
        register_snapshot(&mut head, move || vec![ready.clone()]);
        let mut text = encode(&head);
        if let Some(r) = self.registry.get() {
            // One exposition: drop the first part's end marker.
            if let Some(t) = text.strip_suffix("# EOF\n") {
                text = t.to_owned();
            }
            text.push_str(&encode(r));
        }
        text
    }
}

// ---- a cache node ----

/// The metrics of a cache node, from its status.
pub fn node_metrics(st: &raiz_client::cache::CacheStatus) -> Vec<Metric> {
    let g = |v: f64| Value::Gauge(v);
    let c = |v: u64| Value::Counter(v as f64);
    let per_table = |f: &dyn Fn(&raiz_client::cache::CachedTableStatus) -> f64| {
        st.tables
            .iter()
            .map(|t| (vec![("table", t.name.clone())], Value::Gauge(f(t))))
            .collect::<Vec<_>>()
    };
    let mut out = vec![
        Metric::one(
            "raiz_node_connected",
            "1 while connected to the server.",
            g(f64::from(u8::from(st.connected))),
        ),
        Metric::one(
            "raiz_node_ready",
            "1 when every table is loaded and the server connected.",
            g(f64::from(u8::from(node_ready(st).is_ok()))),
        ),
        Metric::one(
            "raiz_node_applied_seq",
            "The last change applied.",
            g(st.applied as f64),
        ),
        Metric::one(
            "raiz_node_server_seq",
            "The server's last change, as last heard.",
            g(st.server_last as f64),
        ),
        Metric::one(
            "raiz_node_lag_changes",
            "Changes the node is behind the server.",
            g(st.lag_changes as f64),
        ),
        Metric::one(
            "raiz_node_lag_seconds",
            "Age of the server's last message when it arrived.",
            g(st.lag_ms as f64 / 1e3),
        ),
        Metric::one(
            "raiz_node_local_reads",
            "Reads served from the node's memory.",
            c(st.local_reads),
        ),
        Metric::one(
            "raiz_node_passed_reads",
            "Reads passed to the server.",
            c(st.passed_reads),
        ),
        Metric::one(
            "raiz_node_loads",
            "Tables loaded (first loads and reloads).",
            c(st.reloads),
        ),
        Metric::one(
            "raiz_node_catch_ups",
            "Times the node caught up from its position.",
            c(st.catch_ups),
        ),
        Metric::one(
            "raiz_node_applied_changes",
            "Record changes applied.",
            c(st.applied_changes),
        ),
    ];
    if let Some(s) = st.silent_ms {
        out.push(Metric::one(
            "raiz_node_silent_seconds",
            "Since the server last said anything.",
            g(s as f64 / 1e3),
        ));
    }
    if !st.tables.is_empty() {
        out.push(Metric {
            name: "raiz_node_table_rows",
            help: "Records of each cached table.",
            samples: per_table(&|t| t.rows as f64),
        });
        out.push(Metric {
            name: "raiz_node_table_memory_bytes",
            help: "Memory of each cached table (data, memos, indexes).",
            samples: per_table(&|t| t.memory_bytes as f64),
        });
        out.push(Metric {
            name: "raiz_node_table_disk_bytes",
            help: "Size of each cached table on the server's disk, as last loaded.",
            samples: per_table(&|t| t.disk_bytes as f64),
        });
        out.push(Metric {
            name: "raiz_node_table_ready",
            help: "1 when the table is loaded, 0 while loading.",
            samples: per_table(&|t| f64::from(u8::from(t.status != "loading"))),
        });
    }
    out
}

/// A node is ready when connected and no table is loading.
pub fn node_ready(st: &raiz_client::cache::CacheStatus) -> Result<(), String> {
    if !st.connected {
        return Err(format!("not connected to {}", st.server));
    }
    let loading: Vec<&str> = st
        .tables
        .iter()
        .filter(|t| t.status == "loading")
        .map(|t| t.name.as_str())
        .collect();
    if !loading.is_empty() {
        return Err(format!("loading {}", loading.join(", ")));
    }
    Ok(())
}

/// A node's status as its endpoint last saw it.
#[derive(Default)]
pub struct NodeProbe {
    status: Mutex<Option<raiz_client::cache::CacheStatus>>,
    read: OnceLock<Box<dyn Fn() -> raiz_client::cache::CacheStatus + Send + Sync>>,
}

impl std::fmt::Debug for NodeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeProbe")
    }
}

impl NodeProbe {
    /// A probe that knows nothing yet (not ready).
    pub fn new() -> Arc<NodeProbe> {
        Arc::new(NodeProbe::default())
    }

    /// Reads the node's status at each request from now on.
    pub fn follow(
        &self,
        read: impl Fn() -> raiz_client::cache::CacheStatus + Send + Sync + 'static,
    ) {
        let _ = self.read.set(Box::new(read));
    }

    /// Records the status reported last (when the probe does not follow a
    /// node in this process).
    pub fn report(&self, st: &raiz_client::cache::CacheStatus) {
        *self.status.lock() = Some(st.clone());
    }

    fn current(&self) -> Option<raiz_client::cache::CacheStatus> {
        match self.read.get() {
            Some(read) => Some(read()),
            None => self.status.lock().clone(),
        }
    }
}

impl Source for NodeProbe {
    fn readiness(&self) -> Result<(), String> {
        match self.current() {
            Some(st) => node_ready(&st),
            None => Err("starting".into()),
        }
    }

    fn metrics(&self) -> String {
        let st = self.current();
        let mut registry = Registry::default();
        register_snapshot(&mut registry, move || match &st {
            Some(st) => node_metrics(st),
            None => vec![Metric::one(
                "raiz_node_ready",
                "1 when every table is loaded and the server connected.",
                Value::Gauge(0.0),
            )],
        });
        encode(&registry)
    }
}

// ---- HTTP ----

fn respond(source: &dyn Source, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    let text = "text/plain; charset=utf-8";
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, text, "GET only\n".into());
    }
    match path {
        "/healthz" => reply(StatusCode::OK, text, "ok\n".into()),
        "/readyz" => match source.readiness() {
            Ok(()) => reply(StatusCode::OK, text, "ready\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => reply(StatusCode::OK, CONTENT_TYPE, source.metrics()),
        "/role" | "/leader" => match source.role() {
            None => reply(StatusCode::NOT_FOUND, text, "not a cluster member\n".into()),
            Some((role, _)) if path == "/role" => reply(StatusCode::OK, text, role + "\n"),
            Some((role, true)) => reply(StatusCode::OK, text, role + "\n"),
            Some((role, false)) => reply(StatusCode::SERVICE_UNAVAILABLE, text, role + "\n"),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            text,
            "not found: /healthz, /readyz, /metrics, /role or /leader\n".into(),
        ),
    }
}

/// Serves the endpoint on `listener` until `stop` turns true.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Source>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: too many at once
        };
        let source = source.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(respond(&*source, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(60), conn).await {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

/// Binds the endpoint's address (so a mistake is reported at once).
pub fn bind(address: &str) -> Result<std::net::TcpListener, Error> {
    let lerr = |source| Error::Listen {
        address: address.to_owned(),
        source,
    };
    let l = std::net::TcpListener::bind(address).map_err(lerr)?;
    l.set_nonblocking(true).map_err(lerr)?;
    Ok(l)
}

/// An endpoint on a thread of its own (for a process without a runtime,
/// such as `raiz cache`). Stops when dropped.
#[derive(Debug)]
pub struct Endpoint {
    /// The address it serves (the real port when 0 was asked for).
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Endpoint {
    /// Serves `source` on `address`.
    pub fn start(address: &str, source: Arc<dyn Source>) -> Result<Endpoint, Error> {
        let std_listener = bind(address)?;
        let local = std_listener.local_addr().map_err(|source| Error::Listen {
            address: address.to_owned(),
            source,
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Listen {
                address: "metrics runtime".into(),
                source,
            })?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("raiz-metrics".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => serve_http(l, source, stop_rx).await,
                        Err(e) => tracing::error!(error = %e, "metrics listener"),
                    }
                })
            })
            .map_err(|source| Error::Listen {
                address: "metrics thread".into(),
                source,
            })?;
        Ok(Endpoint {
            address: local,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kind of a request, as its metrics label.
pub fn request_kind(r: &raiz_client::proto::Request) -> &'static str {
    use raiz_client::proto::{Request as R, TableOp as T};
    match r {
        R::Hello { .. } => "hello",
        R::Ping => "ping",
        R::ListTables => "list_tables",
        R::TableExists(_) => "table_exists",
        R::CreateTable { .. } => "create_table",
        R::DropTable(_) => "drop_table",
        R::OpenTable(_) => "open_table",
        R::Begin => "begin",
        R::InTransaction => "in_transaction",
        R::Commit => "commit",
        R::Rollback => "rollback",
        R::Savepoint => "savepoint",
        R::RollbackTo(_) => "rollback_to",
        R::LockName(_) => "lock_name",
        R::UnlockName(_) => "unlock_name",
        R::Checkpoint => "checkpoint",
        R::Backup { .. } => "backup",
        R::RangeNext { .. } => "range_next",
        R::RangeClose(_) => "range_close",
        R::ListSessions => "list_sessions",
        R::EndSession(_) => "end_session",
        R::Subscribe { .. } => "subscribe",
        R::Table { op, .. } => match op {
            T::Close => "close",
            T::Info => "info",
            T::Append(_) => "append",
            T::Read(_) => "read",
            T::ReadMemo { .. } => "read_memo",
            T::Update { .. } => "update",
            T::UpdateFields { .. } => "update_fields",
            T::Insert(_) => "insert",
            T::Delete(_) => "delete",
            T::Recall(_) => "recall",
            T::Lock { .. } => "lock",
            T::Unlock(_) => "unlock",
            T::LockFile { .. } => "lock_file",
            T::UnlockFile => "unlock_file",
            T::Nav { .. } => "navigate",
            T::SeekLock(_) => "seek_lock",
            T::Range { .. } => "range",
            T::Batch(_) => "batch",
            T::Snapshot => "snapshot",
            T::Dump { .. } => "dump",
            T::Check { .. } => "check",
            T::Rebuild | T::Pack | T::Alter(_) | T::CreateIndex(_) | T::DropIndex(_) => "define",
            _ => "table_other",
        },
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_become_snake_case_labels() {
        assert_eq!(snake("LockTimeout"), "lock_timeout");
        assert_eq!(snake("Io"), "io");
    }

    #[test]
    fn a_snapshot_collector_encodes_counters_gauges_and_histograms() {
        let mut r = Registry::default();
        register_snapshot(&mut r, || {
            vec![
                Metric::one("raiz_x", "X.", Value::Counter(3.0)),
                Metric {
                    name: "raiz_t",
                    help: "T.",
                    samples: vec![(vec![("table", "sx3".into())], Value::Gauge(2.0))],
                },
                Metric::one(
                    "raiz_h",
                    "H.",
                    Value::Histogram(HistogramSnapshot {
                        bounds: vec![1.0, 2.0],
                        counts: vec![1, 0, 2],
                        sum: 7.0,
                    }),
                ),
            ]
        });
        let text = encode(&r);
        assert!(text.contains("raiz_x_total 3"), "{text}");
        assert!(text.contains("raiz_t{table=\"sx3\"} 2"), "{text}");
        assert!(text.contains("raiz_h_bucket{le=\"2.0\"} 1"), "{text}");
        assert!(text.contains("raiz_h_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

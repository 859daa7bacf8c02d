//! A cluster member: its Raft (log, state machine, network) and the
//! replicator through which its database's sessions commit.
//!
//! [`ClusterMember::start`] opens the member's Raft log, the state machine
//! over its database, listens for the other members, and joins the group:
//! a member whose log is empty initializes the group with the configured
//! members (every member may do so with the same list; openraft makes one
//! group of them). Then it installs itself as the database's
//! [`Replicator`]: from then on a session writes only on the leader, and its
//! commit returns once the group has committed the change set and this
//! member has applied it.
//!
//! What a session on a member gets:
//! - on a follower, or a leader that has not yet applied its term's first
//!   entry: [`EngineError::NotLeader`], naming the leader's client address
//!   when known;
//! - when no leader is known, or the leader has heard from no majority for
//!   longer than an election takes: [`EngineError::NoQuorum`];
//! - when a commit is not confirmed within the commit timeout, or the
//!   leadership moved during it, or the transaction's writes were taken in
//!   an earlier term: [`EngineError::Failover`] — the outcome of that commit
//!   is unknown here (it may yet be committed by the group): look before
//!   retrying.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use raiz_engine::db::{Ddl, Replicator};
use raiz_engine::feed::TableChanges;
use raiz_engine::{Database, Error as EngineError};

use crate::log::{RaftLog, RaftLogOptions};
use crate::log_store::LogStore;
use crate::network::{self, Network};
use crate::snapshot::Snapshots;
use crate::state::{self, Applied, StateMachine};
use crate::types::{Command, Member, Raiz};

/// How long each member after the first waits before forming the group
/// itself (see `ClusterMember::start`).
const INIT_STAGGER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a membership change may take (a new member catching up with
/// the log first).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(300);

/// Entries between snapshots by default: at a few hundred bytes an entry,
/// a log of a few hundred MiB, and a copy of the rootpath no more often than
/// that.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1_000_000;

/// Entries kept in the log behind a snapshot by default.
pub const DEFAULT_KEEP_AFTER_SNAPSHOT: u64 = 100_000;

/// How long the last chunk of a snapshot may take to be acknowledged: the
/// receiver installs the snapshot before it answers.
const INSTALL_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a member is set up.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This member's id (one of `members`).
    pub id: u64,
    /// Every member of the group, by id.
    pub members: BTreeMap<u64, Member>,
    /// Where this member's Raft log lives.
    pub log_dir: PathBuf,
    /// Where this member listens for the others (usually its own
    /// `members[id].raft`; a test puts relays in between).
    pub listen: String,
    /// Shared by the members; a connection that does not present it is
    /// refused.
    pub secret: String,
    /// Leader heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears no heartbeat for a random time in this range
    /// starts an election.
    pub election: (Duration, Duration),
    /// A commit not confirmed by a majority within this gets
    /// [`EngineError::Failover`].
    pub commit_timeout: Duration,
    /// A member joining a running group: it never forms a group itself; the
    /// leader adds it (`raiz cluster add`).
    pub join: bool,
    /// A snapshot is built once this many entries were applied since the
    /// last one; 0: never (the log grows without end).
    pub snapshot_every: u64,
    /// Entries a snapshot covers that are kept in the log anyway, so that a
    /// member a little behind catches up from the log rather than by a
    /// snapshot.
    pub keep_after_snapshot: u64,
}

impl ClusterConfig {
    /// A member with the default timings: heartbeats every 100 ms, elections
    /// after 0.5–1 s of silence, commits confirmed within 5 s.
    pub fn new(id: u64, members: BTreeMap<u64, Member>, log_dir: PathBuf) -> ClusterConfig {
        let listen = members.get(&id).map(|m| m.raft.clone()).unwrap_or_default();
        ClusterConfig {
            id,
            members,
            log_dir,
            listen,
            secret: String::new(),
            heartbeat: Duration::from_millis(100),
            election: (Duration::from_millis(400), Duration::from_millis(800)),
            commit_timeout: Duration::from_secs(5),
            join: false,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            keep_after_snapshot: DEFAULT_KEEP_AFTER_SNAPSHOT,
        }
    }
}

/// A running member (see the module docs).
pub struct ClusterMember {
    /// The task serving the other members (ended by `shutdown`).
    listening: tokio::task::JoinHandle<()>,
    /// The term and last log index this member resumed as leader with, if
    /// it did (see `start`).
    resumed: Option<(u64, Option<u64>)>,
    id: u64,
    raft: Raft<Raiz>,
    applied: Arc<Applied>,
    /// Taken at drop (see there).
    runtime: Option<tokio::runtime::Runtime>,
    commit_timeout: Duration,
    election_max: Duration,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A member's view of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This member.
    pub id: u64,
    /// Leader, follower, candidate, learner.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<u64>,
    /// The last entry in this member's log.
    pub last_log: Option<u64>,
    /// The last entry applied here.
    pub applied: Option<u64>,
    /// The last entry this member's current snapshot covers.
    pub snapshot: Option<u64>,
    /// On the leader: each member's last entry known replicated.
    pub matched: BTreeMap<u64, Option<u64>>,
    /// The members, by id.
    pub members: BTreeMap<u64, Member>,
}

/// Until the group has an epoch: when this member leads (and has applied its
/// term's first entry), it proposes one (see `raiz_engine::feed`). Two
/// leaders in a row may both propose; the first committed wins everywhere.
async fn genesis(raft: Raft<Raiz>, applied: Arc<Applied>, id: u64) {
    // Writes wait for it (see `writable`): look often until it is there.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while applied.epoch.load(Ordering::SeqCst) == 0 {
        tick.tick().await;
        let term = {
            let m = raft.metrics();
            let m = m.borrow();
            if m.current_leader != Some(id) || m.state != ServerState::Leader {
                continue;
            }
            m.current_term
        };
        if applied.ready_term.load(Ordering::SeqCst) != term {
            continue;
        }
        let epoch = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u64(id);
            h.finish().max(1)
        };
        match raft.client_write(Command::Genesis { epoch }).await {
            Ok(_) => tracing::info!(
                epoch = format!("{epoch:016x}"),
                "the group's epoch proposed"
            ),
            Err(e) => tracing::debug!(error = %e, "the group's epoch not proposed yet"),
        }
    }
}

impl ClusterMember {
    /// Starts member `config.id` over `db` (see the module docs).
    pub fn start(config: ClusterConfig, db: Database) -> crate::Result<Arc<ClusterMember>> {
        if !config.members.contains_key(&config.id) {
            return Err(crate::Error::Config(format!(
                "member {} is not among the members {:?}",
                config.id,
                config.members.keys().collect::<Vec<_>>()
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("raiz-raft-{}", config.id))
            .enable_all()
            .build()
            .map_err(crate::error::io(&config.log_dir))?;
        let log = RaftLog::open(
            db.storage().clone(),
            &config.log_dir,
            RaftLogOptions::default(),
        )?;
        // A member that was the leader when it stopped resumes as the leader
        // of the same term (openraft restores a committed vote of its own),
        // with no new first entry of the term: it takes writes once it has
        // applied every entry its log held (earlier sessions' appends among
        // them).
        let resumed = log
            .meta()
            .vote
            .as_deref()
            .and_then(|b| postcard::from_bytes::<openraft::Vote<u64>>(b).ok())
            .filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(config.id))
            .map(|v| (v.leader_id().get_term(), log.last_index()));
        if let Some((term, last)) = resumed {
            tracing::info!(term, last_log = ?last, "resuming as the leader of the term this member led when it stopped");
        }
        let log_had_entries = log.last_index().is_some() || log.meta().vote.is_some();
        let store = LogStore::<Raiz>::new(log);
        let snapshots = Snapshots::open(db.storage().clone(), &config.log_dir)?;
        let sm = StateMachine::open(config.id, db.clone(), snapshots)?;
        let applied = sm.shared();
        let raft_config = Config {
            cluster_name: "raiz".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election.0.as_millis() as u64,
            election_timeout_max: config.election.1.as_millis() as u64,
            snapshot_policy: match config.snapshot_every {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
            max_in_snapshot_log_to_keep: config.keep_after_snapshot,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT.as_millis() as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| crate::Error::Config(e.to_string()))?;
        let secret: Arc<str> = config.secret.as_str().into();
        let (raft, listening) = runtime.block_on(async {
            // A member restarted in the same process may find its port
            // still held a moment by the one before.
            let mut tries = 0;
            let listener = loop {
                match tokio::net::TcpListener::bind(&config.listen).await {
                    Ok(l) => break l,
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 60 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(source) => {
                        return Err(crate::Error::Listen {
                            addr: config.listen.clone(),
                            source,
                        })
                    }
                }
            };
            let raft = Raft::new(
                config.id,
                Arc::new(raft_config),
                Network::new(
                    &secret,
                    config
                        .members
                        .iter()
                        .map(|(id, m)| (*id, m.raft.clone()))
                        .collect(),
                ),
                store,
                sm,
            )
            .await
            .map_err(|e| crate::Error::Raft(e.to_string()))?;
            let r = raft.clone();
            let _ = applied
                .elections
                .set(Box::new(move |on| r.runtime_config().elect(on)));
            // A member that comes back stands for election only if the
            // leader has not reached it within two election timeouts: one
            // that stood at once, its log behind, would win nothing and its
            // higher term would unseat the leader.
            if log_had_entries && resumed.is_none() {
                let quiet = applied.quiet();
                let grace = config.election.1 * 2;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    drop(quiet);
                });
            }
            let listening = tokio::spawn(network::serve(listener, raft.clone(), secret.clone()));
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| crate::Error::Raft(e.to_string()))?;
            if !initialized && !config.join {
                // The member with the lowest id forms the group at once; the
                // others only if they have heard from nobody after a while
                // (it may be down). Members forming it at the same moment
                // all stand for election in the first term, and the losers'
                // votes stand in the way of the winner's entries until they
                // time out and disrupt it with a second election.
                let rank = config
                    .members
                    .keys()
                    .position(|id| *id == config.id)
                    .unwrap_or(0) as u32;
                let wait = INIT_STAGGER * rank;
                let (raft, members) = (raft.clone(), config.members.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if raft.is_initialized().await.unwrap_or(true) {
                        return;
                    }
                    match raft.initialize(members).await {
                        Ok(()) => tracing::info!("cluster formed by this member"),
                        // Another member's initialization reached us first.
                        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                        Err(e) => tracing::error!(error = %e, "forming the cluster failed"),
                    }
                });
            }
            tokio::spawn(genesis(raft.clone(), applied.clone(), config.id));
            Ok::<_, crate::Error>((raft, listening))
        })?;
        let member = Arc::new(ClusterMember {
            listening,
            resumed,
            id: config.id,
            raft,
            applied,
            runtime: Some(runtime),
            commit_timeout: config.commit_timeout,
            election_max: config.election.1,
        });
        db.set_replicator(member.clone())?;
        tracing::info!(id = config.id, members = config.members.len(), listen = %config.listen, "cluster member started");
        Ok(member)
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// openraft's handle on this member.
    pub fn raft(&self) -> &Raft<Raiz> {
        &self.raft
    }

    /// This member's view of the group.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics();
        let m = m.borrow();
        Status {
            id: self.id,
            role: format!("{:?}", m.state).to_lowercase(),
            term: m.current_term,
            leader: m.current_leader,
            last_log: m.last_log_index,
            applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
                .unwrap_or_default(),
            members: m
                .membership_config
                .nodes()
                .map(|(id, n)| (*id, n.clone()))
                .collect(),
        }
    }

    /// Stops the member's Raft (the database stays open; its sessions get
    /// `NoQuorum` from then on). The member and its database hold each other
    /// until then: call it before letting the database go.
    pub fn shutdown(&self) {
        self.listening.abort();
        if let Err(e) = self.runtime().block_on(self.raft.shutdown()) {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// Builds a snapshot of this member's database now (whatever the policy)
    /// and returns the last entry it covers, once it is the current one.
    pub fn snapshot(&self) -> Result<Option<u64>, EngineError> {
        let raft = self.raft.clone();
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
        self.runtime().block_on(async move {
            raft.trigger()
                .snapshot()
                .await
                .map_err(|e| EngineError::Unsupported(format!("snapshot: {e}")))?;
            let done = raft
                .wait(Some(MEMBERSHIP_TIMEOUT))
                .metrics(|m| m.snapshot.map(|l| l.index) >= applied, "snapshot built")
                .await
                .map_err(|e| EngineError::Unsupported(format!("snapshot: {e}")))?;
            Ok(done.snapshot.map(|l| l.index))
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("taken only at drop")
    }

    /// Adds a member to the group (on the leader): it first follows as a
    /// learner until it has caught up with the log, then votes. Returns
    /// once the group's new membership is committed.
    pub fn add_member(&self, id: u64, member: Member) -> Result<(), EngineError> {
        self.writable()?;
        let addr = |a: &str| {
            a.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        };
        if id == 0 || !addr(&member.raft) || !addr(&member.client) {
            return Err(EngineError::Unsupported(format!(
                "member {id} ({member}): an id from 1 and HOST:PORT addresses are needed"
            )));
        }
        if self.status().members.contains_key(&id) {
            return Err(EngineError::Unsupported(format!(
                "member {id} is a member already"
            )));
        }
        let raft = self.raft.clone();
        self.run_change(async move {
            raft.add_learner(id, member, true).await?;
            let mut voters: std::collections::BTreeSet<u64> = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            voters.insert(id);
            raft.change_membership(voters, false).await
        })
    }

    /// Removes a member from the group (on the leader). Returns once the
    /// group's new membership is committed; the member stops taking part.
    pub fn remove_member(&self, id: u64) -> Result<(), EngineError> {
        self.writable()?;
        let voters: std::collections::BTreeSet<u64> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != id)
            .collect();
        if voters.is_empty() {
            return Err(EngineError::Unsupported(
                "removing the last member of a group".into(),
            ));
        }
        let raft = self.raft.clone();
        self.run_change(async move { raft.change_membership(voters, false).await })
    }

    fn run_change<F>(&self, change: F) -> Result<(), EngineError>
    where
        F: std::future::Future<
                Output = Result<
                    openraft::raft::ClientWriteResponse<Raiz>,
                    RaftError<u64, ClientWriteError<u64, Member>>,
                >,
            > + Send
            + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let r = tokio::time::timeout(MEMBERSHIP_TIMEOUT, change).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))))) => {
                Err(EngineError::NotLeader { leader: None })
            }
            Ok(Ok(Err(e))) => Err(EngineError::Unsupported(format!(
                "the membership change was refused: {e}"
            ))),
            Ok(Err(_)) => Err(EngineError::Failover {
                reason: format!(
                    "the membership change did not complete within {MEMBERSHIP_TIMEOUT:?} (is the new member reachable?); look at raiz cluster status"
                ),
            }),
            Err(_) => Err(EngineError::Failover {
                reason: "the member is shutting down".into(),
            }),
        }
    }

    fn leader_address(&self, leader: u64) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let found = m
            .membership_config
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, n)| n.client.clone());
        found
    }

    fn propose(&self, token: u64, command: Command) -> Result<(), EngineError> {
        let now = self.writable()?;
        if now != token {
            return Err(state_failover(token, now));
        }
        let raft = self.raft.clone();
        let timeout = self.commit_timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let r = tokio::time::timeout(timeout, raft.client_write(command)).await;
            let _ = tx.send(r);
        });
        let reply = rx.recv().map_err(|_| EngineError::Failover {
            reason: "the member is shutting down; the commit's outcome is unknown".into(),
        })?;
        match reply {
            Ok(Ok(resp)) => match resp.data.refused {
                None => Ok(()),
                Some(message) => Err(self
                    .applied
                    .take_refusal(resp.log_id.index)
                    .unwrap_or(EngineError::Unsupported(message))),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(EngineError::Failover {
                    reason: format!(
                        "the leadership moved to {} during the commit; its outcome is unknown here",
                        f.leader_id
                            .map_or("another member".to_owned(), |l| format!("member {l}"))
                    ),
                })
            }
            Ok(Err(e)) => Err(EngineError::Failover {
                reason: format!("the commit could not be made ({e}); its outcome is unknown here"),
            }),
            Err(_) => Err(EngineError::Failover {
                reason: format!(
                    "no majority confirmed the commit within {timeout:?}; its outcome is unknown here"
                ),
            }),
        }
    }
}

impl Drop for ClusterMember {
    fn drop(&mut self) {
        // The last handle on the database may go inside one of the runtime's
        // own tasks (the state machine's, as Raft stops): a runtime cannot
        // wait for itself there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn state_failover(was: u64, now: u64) -> EngineError {
    EngineError::Failover {
        reason: format!(
            "the leader changed (term {was} to {now}) while the transaction was open; its locks are gone: roll back and retry"
        ),
    }
}

impl Replicator for ClusterMember {
    fn writable(&self) -> Result<u64, EngineError> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if let Err(e) = &m.running_state {
            return Err(EngineError::NoQuorum {
                reason: format!("this member's Raft stopped: {e}"),
            });
        }
        if m.state == ServerState::Leader && m.current_leader == Some(self.id) {
            let silent = m.millis_since_quorum_ack.unwrap_or(u64::MAX);
            if silent > 2 * self.election_max.as_millis() as u64 {
                return Err(EngineError::NoQuorum {
                    reason: format!(
                        "the leader has heard from no majority of the members for {silent} ms"
                    ),
                });
            }
            // A leader that resumed its term after a restart has applied
            // all its log held (its first entry of the term, applied again
            // on the way, is not enough: entries after it may hold appends
            // a new session would collide with); any other leader has
            // applied its term's first entry (every entry before it too,
            // and the reservations of earlier terms settled).
            let ready = match self.resumed {
                Some((term, last)) if term == m.current_term => {
                    m.last_applied.map(|l| l.index) >= last
                }
                _ => self.applied.ready_term.load(Ordering::SeqCst) == m.current_term,
            };
            // And the group has its epoch (committed once, by the first
            // leader, before any write): a change made before it would be
            // numbered under an epoch cache nodes must throw away.
            if ready && self.applied.epoch.load(Ordering::SeqCst) != 0 {
                return Ok(m.current_term);
            }
            return Err(EngineError::NotLeader { leader: None });
        }
        let leader = m.current_leader;
        drop(m);
        match leader {
            Some(l) if l != self.id => {
                Err(EngineError::NotLeader {
                    leader: self.leader_address(l),
                })
            }
            _ => Err(EngineError::NoQuorum {
                reason: "no leader is elected (fewer than a majority of the members can reach each other)".into(),
            }),
        }
    }

    fn commit(&self, token: u64, changes: Vec<TableChanges>) -> Result<(), EngineError> {
        if let Some(t) = changes.iter().find(|t| state::is_internal(&t.table)) {
            return Err(EngineError::Unsupported(format!(
                "table {} belongs to the cluster member",
                t.table
            )));
        }
        self.propose(token, Command::Commit { changes })
    }

    fn ddl(&self, token: u64, op: Ddl) -> Result<(), EngineError> {
        self.propose(token, Command::Ddl(op))
    }
}

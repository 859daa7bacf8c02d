//! Three `raiz serve --cluster` processes on loopback, every link through a
//! relay the test controls. Writers commit transactions across two tables at
//! random (some rolled back) and record every acknowledged commit; the test
//! kills, partitions and cuts members; afterwards every member's tables are
//! compared through the client API and checked against the history: every
//! acknowledged write is there, nothing is there that was never written,
//! no transaction is there in part.
//!
//! `RAIZ_CLUSTER_ROUNDS` (default 1) repeats each scenario with new seeds;
//! `RAIZ_CLUSTER_SEED` replays one.

#[allow(dead_code)]
#[path = "../server/harness.rs"]
mod harness;

mod group;
mod history;
mod nodes;
mod relay;
mod scenarios;

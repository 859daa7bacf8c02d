//! Logins: password checks on a small pool of dedicated threads, and failure
//! throttling per peer address and per user name.
//!
//! An argon2 check needs its memory cost in working memory (19 MiB with the
//! default parameters). Each pool thread allocates that once and reuses it
//! for every check, so logins cost a fixed amount of memory whatever their
//! number: no allocator arena per login thread keeps freed 19 MiB blocks.
//! The pool has one thread per two cores (at least one, at most four), so a
//! storm of logins leaves cores to the established sessions; checks wait in
//! a bounded queue.
//!
//! Throttling: every failed login adds one to a score of its address and of
//! its user name; scores halve every [`HALF_LIFE`]. Once a score passes
//! [`FREE_FAILURES`], the next login from that address or for that user waits
//! before its check, doubling with each further failure up to [`MAX_DELAY`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::users::{User, UserDb};

/// Failures an address or a user may have before logins are slowed.
pub const FREE_FAILURES: f64 = 3.0;
/// Time in which a failure score halves.
pub const HALF_LIFE: Duration = Duration::from_secs(30);
/// Longest wait imposed before a check.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// Wait before a failure is answered.
pub const FAILURE_DELAY: Duration = Duration::from_millis(750);
/// Highest failure score kept (the delay reaches [`MAX_DELAY`] below it).
const MAX_SCORE: f64 = FREE_FAILURES + 6.0;
/// Password checks waiting for a pool thread.
const QUEUE: usize = 64;
/// Largest argon2 memory cost a stored hash may ask for (256 MiB).
const MAX_BLOCKS: usize = 256 << 10;
/// Throttling entries kept before decayed ones are dropped.
const MAX_ENTRIES: usize = 16_384;

/// What a password check found.
#[derive(Debug)]
pub enum Verdict {
    /// The user, authenticated.
    Ok(User),
    /// Wrong user or password.
    Denied,
    /// The server could not check (its pool has stopped).
    Unavailable,
}

struct Job {
    user: String,
    password: String,
    reply: oneshot::Sender<Verdict>,
}

/// The password-check pool and the failure throttle.
pub struct Auth {
    jobs: mpsc::Sender<Job>,
    throttle: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Auth {
    /// Starts the pool's threads, checking against `users`.
    pub fn start(users: Arc<UserDb>) -> std::io::Result<Auth> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (cores / 2).clamp(1, 4);
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let users = users.clone();
            std::thread::Builder::new()
                .name(format!("raiz-auth-{i}"))
                .spawn(move || check_loop(&rx, &users))?;
        }
        Ok(Auth {
            jobs: tx,
            throttle: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a password on the pool.
    pub async fn verify(&self, user: String, password: String) -> Verdict {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            user,
            password,
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return Verdict::Unavailable;
        }
        answer.await.unwrap_or(Verdict::Unavailable)
    }

    fn score(map: &HashMap<String, (f64, Instant)>, key: &str, now: Instant) -> f64 {
        map.get(key).map_or(0.0, |&(s, at)| decay(s, now - at))
    }

    /// How long a login from `address` for `user` waits before its check.
    pub fn delay(&self, address: &str, user: &str) -> Duration {
        let now = Instant::now();
        let map = self.throttle.lock();
        let s =
            Self::score(&map, &addr_key(address), now).max(Self::score(&map, &user_key(user), now));
        drop(map);
        // (A score just decayed from FREE_FAILURES still counts as reached.)
        if s < FREE_FAILURES - 0.1 {
            return Duration::ZERO;
        }
        let factor = 2f64.powf((s - FREE_FAILURES).clamp(0.0, 16.0));
        Duration::from_millis(250).mul_f64(factor).min(MAX_DELAY)
    }

    /// Notes a failed login.
    pub fn failed(&self, address: &str, user: &str) {
        let now = Instant::now();
        let mut map = self.throttle.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, &mut (s, at)| decay(s, now - at) > 0.1);
            if map.len() >= MAX_ENTRIES {
                // A flood of distinct names: forget the oldest half.
                let mut ages: Vec<Instant> = map.values().map(|&(_, at)| at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, &mut (_, at)| at > cut);
            }
        }
        for key in [addr_key(address), user_key(user)] {
            // Capped where the delay is at its longest, so an address or a
            // user is free again within a minute or so after a storm.
            let s = (Self::score(&map, &key, now) + 1.0).min(MAX_SCORE);
            map.insert(key, (s, now));
        }
    }
}

fn decay(score: f64, age: Duration) -> f64 {
    score * 0.5f64.powf(age.as_secs_f64() / HALF_LIFE.as_secs_f64())
}

/// The throttling key of a peer: its IP address without the port.
fn addr_key(address: &str) -> String {
    let ip = address
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| address.to_owned(), |a| a.ip().to_string());
    format!("a:{ip}")
}

fn user_key(user: &str) -> String {
    // Names are at most 64 bytes when valid; longer ones are cut.
    let end = user
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&e| e <= 64)
        .last()
        .unwrap_or(0);
    format!("u:{}", &user[..end])
}

fn check_loop(rx: &Mutex<mpsc::Receiver<Job>>, users: &UserDb) {
    let mut memory: Vec<Block> = Vec::new();
    let decoy = decoy_hash();
    loop {
        let Some(job) = rx.lock().blocking_recv() else {
            return;
        };
        users.refresh();
        let list = users.current();
        let user = list.get(&job.user);
        // Unknown names cost the same check, so timing tells no names.
        let hash = user.map_or(decoy.as_str(), |u| u.hash.as_str());
        let ok = check(&mut memory, hash, job.password.as_bytes());
        let verdict = match (ok, user) {
            (true, Some(u)) => Verdict::Ok(u.clone()),
            _ => Verdict::Denied,
        };
        let _ = job.reply.send(verdict);
    }
}

/// A well-formed hash with the default parameters that no password matches.
fn decoy_hash() -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = ParamsString::try_from(&Params::default()).unwrap_or_default();
    PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Output::new(&[0u8; 32]).ok(),
    }
    .to_string()
}

/// Checks `password` against a PHC string, in `memory` (grown to the hash's
/// memory cost once, then reused).
pub fn check(memory: &mut Vec<Block>, phc: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        tracing::warn!(
            blocks,
            "a stored password hash asks for more than 256 MiB; refused"
        );
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_match_argon2_and_reuse_memory() {
        let hash = crate::users::hash_password("s3cret").unwrap();
        let mut memory = Vec::new();
        assert!(check(&mut memory, &hash, b"s3cret"));
        let len = memory.len();
        assert_eq!(len, Params::default().block_count());
        assert!(!check(&mut memory, &hash, b"wrong"));
        assert_eq!(memory.len(), len, "the memory is reused");
        assert!(!check(&mut memory, &decoy_hash(), b"decoy"));
        assert!(!check(&mut memory, "not a hash", b"x"));
    }

    #[test]
    fn failures_slow_down_by_address_and_by_user() {
        let (tx, _rx) = mpsc::channel(1);
        let auth = Auth {
            jobs: tx,
            throttle: Mutex::new(HashMap::new()),
        };
        assert_eq!(auth.delay("10.0.0.1:5000", "ana"), Duration::ZERO);
        for _ in 0..3 {
            auth.failed("10.0.0.1:5000", "ana");
        }
        let d = auth.delay("10.0.0.1:6000", "bo");
        assert!(d >= Duration::from_millis(200), "same address: {d:?}");
        let d = auth.delay("10.0.0.2:1", "ana");
        assert!(d >= Duration::from_millis(200), "same user: {d:?}");
        assert_eq!(auth.delay("10.0.0.2:1", "bo"), Duration::ZERO);
        for _ in 0..40 {
            auth.failed("10.0.0.1:5000", "ana");
        }
        assert_eq!(auth.delay("10.0.0.1:1", "x"), MAX_DELAY);
        assert!(decay(8.0, HALF_LIFE * 3) < 1.01);
    }
}

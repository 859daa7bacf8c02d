//! Users of a served rootpath: `raiz.users` in the rootpath, a TOML list of
//! names, argon2id password hashes (PHC strings: salt and parameters
//! included), groups and an admin flag. Only hashes are stored. The file is
//! replaced atomically (write, sync, rename) so a crash leaves the old or the
//! new list, never half of one. A running server keeps the list in a
//! [`UserDb`], which re-reads the file when its metadata changes (checked at
//! every login and by a watcher twice a second), so `raiz user add`, `remove`
//! or a change of groups take effect without a restart — for open sessions
//! too, which re-validate their user when the list's generation moved.

use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::Error;

/// File name of the user list inside the rootpath.
pub const USERS_FILE: &str = "raiz.users";

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// argon2id PHC string.
    pub hash: String,
    /// Groups; the first is the group of the tables the user creates.
    #[serde(default)]
    pub groups: Vec<String>,
    /// May list and end sessions and bypasses table permissions.
    #[serde(default)]
    pub admin: bool,
}

impl User {
    /// The group new tables of this user get.
    pub fn primary_group(&self) -> &str {
        self.groups
            .first()
            .map_or(self.name.as_str(), String::as_str)
    }
}

/// The user list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    /// Users, in the order added.
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

fn users_path(root: &Path) -> PathBuf {
    root.join(USERS_FILE)
}

/// Checks a user or group name: 1–64 of letters, digits, `_`, `-`, `.`.
pub fn validate_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Users(format!(
            "invalid {what} name {name:?}: use 1-64 letters, digits, _ - ."
        )))
    }
}

/// Hashes a password with argon2id and a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, Error> {
    if password.is_empty() {
        return Err(Error::Users("a password may not be empty".into()));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Users(format!("hashing the password: {e}")))
}

impl Users {
    /// Reads the list of `root` (empty when the file does not exist).
    pub fn load(root: &Path) -> Result<Users, Error> {
        let path = users_path(root);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::Invalid {
                path: Some(path),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Writes the list atomically.
    pub fn save(&self, root: &Path) -> Result<(), Error> {
        let path = users_path(root);
        let text = toml::to_string(self).map_err(|e| Error::Users(e.to_string()))?;
        crate::write_atomically(&path, text.as_bytes())
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Adds a user.
    pub fn add(
        &mut self,
        name: &str,
        password: &str,
        groups: Vec<String>,
        admin: bool,
    ) -> Result<(), Error> {
        validate_name("user", name)?;
        for g in &groups {
            validate_name("group", g)?;
        }
        if self.get(name).is_some() {
            return Err(Error::Users(format!("user {name} already exists")));
        }
        self.users.push(User {
            name: name.to_owned(),
            hash: hash_password(password)?,
            groups,
            admin,
        });
        Ok(())
    }

    /// Changes a user's password.
    pub fn passwd(&mut self, name: &str, password: &str) -> Result<(), Error> {
        let hash = hash_password(password)?;
        let u = self
            .users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| Error::Users(format!("no user {name}")))?;
        u.hash = hash;
        Ok(())
    }

    /// Removes a user.
    pub fn remove(&mut self, name: &str) -> Result<(), Error> {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        if self.users.len() == before {
            return Err(Error::Users(format!("no user {name}")));
        }
        Ok(())
    }

    /// The user, if `password` is theirs. Takes argon2's time whether or not
    /// the user exists, so a probe cannot tell names from timing.
    pub fn verify(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.get(name);
        // A hash to spend the same effort on for unknown names.
        static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let decoy = DECOY.get_or_init(|| hash_password("decoy").unwrap_or_default());
        let hash = user.map_or(decoy.as_str(), |u| u.hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        if ok {
            user
        } else {
            None
        }
    }
}

/// What identifies a version of the user file: replaced atomically, each
/// version is a new inode.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The user list of a running server, re-read when the file changes.
#[derive(Debug)]
pub struct UserDb {
    root: PathBuf,
    current: parking_lot::RwLock<std::sync::Arc<Users>>,
    stamp: parking_lot::Mutex<Stamp>,
    generation: std::sync::atomic::AtomicU64,
}

impl UserDb {
    /// Reads the list of `root`.
    pub fn open(root: &Path) -> Result<UserDb, Error> {
        let path = users_path(root);
        let st = stamp(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        Ok(UserDb {
            root: root.to_path_buf(),
            current: parking_lot::RwLock::new(std::sync::Arc::new(Users::load(root)?)),
            stamp: parking_lot::Mutex::new(st),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The list as last read.
    pub fn current(&self) -> std::sync::Arc<Users> {
        self.current.read().clone()
    }

    /// Bumped each time a changed list is read.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Re-reads the file if its metadata changed (one `stat` otherwise);
    /// true when a new list was read. A list that does not parse is logged
    /// and the previous one kept.
    pub fn refresh(&self) -> bool {
        let path = users_path(&self.root);
        let mut seen = self.stamp.lock();
        let now = match stamp(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot stat the user list");
                return false;
            }
        };
        if now == *seen {
            return false;
        }
        match Users::load(&self.root) {
            Ok(users) => {
                *seen = now;
                *self.current.write() = std::sync::Arc::new(users);
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                tracing::info!(path = %path.display(), "user list changed; re-read");
                true
            }
            Err(e) => {
                *seen = now;
                tracing::error!(error = %e, "the changed user list is invalid; keeping the previous one");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_verify_passwd_remove_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = Users::load(dir.path()).unwrap();
        assert!(u.users.is_empty());
        u.add("ana", "s3cret", vec!["erp".into()], true).unwrap();
        assert!(u.add("ana", "x", vec![], false).is_err());
        assert!(u.add("../x", "x", vec![], false).is_err());
        assert!(u.add("bo", "", vec![], false).is_err());
        u.save(dir.path()).unwrap();
        let mut u = Users::load(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!text.contains("s3cret") && text.contains("$argon2id$"));
        assert_eq!(u.verify("ana", "s3cret").unwrap().primary_group(), "erp");
        assert!(u.verify("ana", "wrong").is_none());
        assert!(u.verify("nobody", "s3cret").is_none());
        u.passwd("ana", "n3w").unwrap();
        assert!(u.verify("ana", "s3cret").is_none());
        assert!(u.verify("ana", "n3w").is_some());
        u.remove("ana").unwrap();
        assert!(u.remove("ana").is_err());
        std::fs::write(dir.path().join(USERS_FILE), "[[user]]\nnam = 1\n").unwrap();
        assert!(Users::load(dir.path()).is_err());
    }

    #[test]
    fn the_user_db_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        assert!(db.current().users.is_empty());
        assert!(!db.refresh());
        let mut u = Users::default();
        u.add("ana", "pw", vec![], false).unwrap();
        u.save(dir.path()).unwrap();
        assert!(db.refresh());
        assert_eq!(db.generation(), 1);
        assert!(db.current().get("ana").is_some());
        assert!(!db.refresh());
        std::fs::write(dir.path().join(USERS_FILE), "[[user]]\nnam = 1\n").unwrap();
        assert!(!db.refresh());
        assert!(
            db.current().get("ana").is_some(),
            "a bad file keeps the old list"
        );
        u.remove("ana").unwrap();
        u.save(dir.path()).unwrap();
        assert!(db.refresh());
        assert!(db.current().get("ana").is_none());
    }
}

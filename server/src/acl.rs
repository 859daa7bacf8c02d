//! Table permissions: `raiz.acl` in the rootpath maps table names to an owner,
//! a group and the rights of owner, group members and others (read, write,
//! delete, define). A table created through the server is owned by its
//! creator (group: the creator's first group) with `rwdx` for the owner, `rwd-`
//! for the group and `r---` for others. A table with no entry (created
//! embedded, before the server) grants `rwd-` to everyone and `define` to
//! admins only. Admins bypass every check. Entries are kept in memory and
//! written through atomically on each change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use raiz_client::{Permissions, Rights};
use serde::{Deserialize, Serialize};

use crate::users::User;
use crate::Error;

/// File name of the permission list inside the rootpath.
pub const ACL_FILE: &str = "raiz.acl";

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Read and navigate.
    Read,
    /// Append, update, recall, lock.
    Write,
    /// Delete records.
    Delete,
    /// Change the definition.
    Define,
}

impl Right {
    fn granted(self, r: Rights) -> bool {
        match self {
            Right::Read => r.read,
            Right::Write => r.write,
            Right::Delete => r.delete,
            Right::Define => r.define,
        }
    }

    /// The right's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Delete => "delete",
            Right::Define => "define",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    owner: String,
    group: String,
    rights: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AclFile {
    #[serde(default)]
    tables: BTreeMap<String, Entry>,
}

/// The permissions of every table, loaded from the rootpath.
#[derive(Debug)]
pub struct Acl {
    path: PathBuf,
    tables: RwLock<BTreeMap<String, Permissions>>,
    writer: parking_lot::Mutex<()>,
}

/// Permissions of a table that has no entry.
pub fn unlisted() -> Permissions {
    Permissions {
        owner: String::new(),
        group: String::new(),
        owner_rights: Rights::ALL,
        group_rights: Rights::parse("rwd-").unwrap_or(Rights::NONE),
        other_rights: Rights::parse("rwd-").unwrap_or(Rights::NONE),
    }
}

fn parse_entry(path: &Path, table: &str, e: &Entry) -> Result<Permissions, Error> {
    let bad = || Error::Invalid {
        path: Some(path.to_path_buf()),
        message: format!(
            "table {table}: rights {:?} are not owner:group:others like rwdx:rwd-:r---",
            e.rights
        ),
    };
    let parts: Vec<&str> = e.rights.split(':').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    Ok(Permissions {
        owner: e.owner.clone(),
        group: e.group.clone(),
        owner_rights: Rights::parse(parts[0]).ok_or_else(bad)?,
        group_rights: Rights::parse(parts[1]).ok_or_else(bad)?,
        other_rights: Rights::parse(parts[2]).ok_or_else(bad)?,
    })
}

impl Acl {
    /// Loads `raiz.acl` of `root` (empty when absent).
    pub fn load(root: &Path) -> Result<Acl, Error> {
        let path = root.join(ACL_FILE);
        let file: AclFile = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::Invalid {
                path: Some(path.clone()),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AclFile::default(),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let mut tables = BTreeMap::new();
        for (t, e) in &file.tables {
            tables.insert(t.clone(), parse_entry(&path, t, e)?);
        }
        Ok(Acl {
            path,
            tables: RwLock::new(tables),
            writer: parking_lot::Mutex::new(()),
        })
    }

    fn save(&self, tables: &BTreeMap<String, Permissions>) -> Result<(), Error> {
        let file = AclFile {
            tables: tables
                .iter()
                .map(|(t, p)| {
                    (
                        t.clone(),
                        Entry {
                            owner: p.owner.clone(),
                            group: p.group.clone(),
                            rights: format!(
                                "{}:{}:{}",
                                p.owner_rights, p.group_rights, p.other_rights
                            ),
                        },
                    )
                })
                .collect(),
        };
        let text = toml::to_string(&file).map_err(|e| Error::Users(e.to_string()))?;
        crate::write_atomically(&self.path, text.as_bytes())
    }

    /// The permissions of `table`.
    pub fn get(&self, table: &str) -> Permissions {
        self.tables
            .read()
            .get(key(table).as_ref())
            .cloned()
            .unwrap_or_else(unlisted)
    }

    /// Sets (or, with None, removes) the entry of `table`. The file is written
    /// outside the map's lock, so permission checks — one per request — never
    /// wait for a disk write; `writer` keeps concurrent changes in order.
    pub fn set(&self, table: &str, p: Option<Permissions>) -> Result<(), Error> {
        let _writer = self.writer.lock();
        let key = key(table).into_owned();
        let mut next = self.tables.read().clone();
        match p {
            Some(p) => next.insert(key, p),
            None => next.remove(&key),
        };
        self.save(&next)?;
        *self.tables.write() = next;
        Ok(())
    }

    /// Whether `user` holds `right` on `table` (checked on every request: no
    /// allocation, a read lock held for a map lookup).
    pub fn allows(&self, user: &User, table: &str, right: Right) -> bool {
        if user.admin {
            return true;
        }
        let tables = self.tables.read();
        let Some(p) = tables.get(key(table).as_ref()) else {
            // Unlisted: everyone reads, writes and deletes; only admins define.
            return right != Right::Define && right.granted(unlisted().other_rights);
        };
        let rights = if p.owner == user.name {
            p.owner_rights
        } else if user.groups.contains(&p.group) {
            p.group_rights
        } else {
            p.other_rights
        };
        right.granted(rights)
    }
}

/// The map key of a table name: lower case, as the engine stores names (so
/// already-lower names, the common case, are not copied).
fn key(table: &str) -> std::borrow::Cow<'_, str> {
    if table.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(table.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(table)
    }
}

/// Permissions of a table `user` creates.
pub fn for_new_table(user: &User) -> Permissions {
    Permissions {
        owner: user.name.clone(),
        group: user.primary_group().to_owned(),
        owner_rights: Rights::ALL,
        group_rights: Rights::parse("rwd-").unwrap_or(Rights::NONE),
        other_rights: Rights::parse("r---").unwrap_or(Rights::NONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str], admin: bool) -> User {
        User {
            name: name.into(),
            hash: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
        }
    }

    #[test]
    fn owner_group_others_and_admin() {
        let dir = tempfile::tempdir().unwrap();
        let acl = Acl::load(dir.path()).unwrap();
        let ana = user("ana", &["fin"], false);
        let bo = user("bo", &["fin"], false);
        let cy = user("cy", &["ops"], false);
        let root = user("root", &[], true);
        // Unlisted: everyone reads, writes, deletes; only admins define.
        assert!(acl.allows(&cy, "t", Right::Delete));
        assert!(!acl.allows(&cy, "t", Right::Define));
        assert!(acl.allows(&root, "t", Right::Define));
        acl.set("t", Some(for_new_table(&ana))).unwrap();
        let acl = Acl::load(dir.path()).unwrap();
        assert!(acl.allows(&ana, "T", Right::Define));
        assert!(acl.allows(&bo, "t", Right::Delete));
        assert!(!acl.allows(&bo, "t", Right::Define));
        assert!(acl.allows(&cy, "t", Right::Read));
        assert!(!acl.allows(&cy, "t", Right::Write));
        assert!(acl.allows(&root, "t", Right::Define));
        acl.set("t", None).unwrap();
        assert!(acl.allows(&cy, "t", Right::Write));
        std::fs::write(
            dir.path().join(ACL_FILE),
            "[tables.x]\nowner='a'\ngroup='g'\nrights='rw'\n",
        )
        .unwrap();
        assert!(Acl::load(dir.path()).is_err());
    }
}

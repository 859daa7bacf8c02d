//! `raiz user`, `raiz monitor` and `raiz perms`: the commands around a server.

use std::io::BufRead;
use std::path::PathBuf;

use raiz_client::{Connection, Rights};
use raiz_server::users::Users;
use raiz_server::Config;

use crate::error::{CliError, CliResult};
use crate::UserAction;

fn root_of(config: &Config, root: Option<PathBuf>) -> CliResult<PathBuf> {
    let root = root.or_else(|| config.root.clone()).ok_or_else(|| {
        CliError::Usage("no rootpath: pass --root or set root in the config file".into())
    })?;
    if !root.is_dir() {
        return Err(CliError::Io(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    Ok(root)
}

/// The new password: RAIZ_NEW_PASSWORD, else the first line of stdin.
fn new_password() -> CliResult<String> {
    if let Ok(p) = std::env::var("RAIZ_NEW_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::io("reading the password from stdin", e))?;
    let p = line.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        return Err(CliError::Usage(
            "no password: set RAIZ_NEW_PASSWORD or give it on stdin".into(),
        ));
    }
    Ok(p)
}

pub fn user(config: &Config, action: UserAction) -> CliResult {
    let s = CliError::from;
    match action {
        UserAction::Add {
            root,
            name,
            groups,
            admin,
        } => {
            let root = root_of(config, root)?;
            let mut users = Users::load(&root).map_err(s)?;
            users
                .add(&name, &new_password()?, groups, admin)
                .map_err(s)?;
            users.save(&root).map_err(s)?;
            println!("user {name} added{}", if admin { " (admin)" } else { "" });
        }
        UserAction::Passwd { root, name } => {
            let root = root_of(config, root)?;
            let mut users = Users::load(&root).map_err(s)?;
            users.passwd(&name, &new_password()?).map_err(s)?;
            users.save(&root).map_err(s)?;
            println!("password of {name} changed");
        }
        UserAction::Remove { root, name } => {
            let root = root_of(config, root)?;
            let mut users = Users::load(&root).map_err(s)?;
            users.remove(&name).map_err(s)?;
            users.save(&root).map_err(s)?;
            println!("user {name} removed");
        }
        UserAction::List { root } => {
            let root = root_of(config, root)?;
            for u in Users::load(&root).map_err(s)?.users {
                println!(
                    "{}\t{}\t{}",
                    u.name,
                    u.groups.join(","),
                    if u.admin { "admin" } else { "" }
                );
            }
        }
    }
    Ok(())
}

pub fn monitor(connect: &str, end: Option<u64>) -> CliResult {
    let s = CliError::from;
    let session = Connection::connect(connect)
        .and_then(|c| c.session())
        .map_err(s)?;
    if let Some(id) = end {
        return if session.end_session(id).map_err(s)? {
            println!("session {id} ended");
            Ok(())
        } else {
            Err(CliError::Data(format!("no session {id}")))
        };
    }
    println!(
        "{:>6}  {:<12} {:<22} {:>5} {:>6} {:>8} {:>10} {:>10}  {:<20} locks",
        "id", "user", "address", "busy", "idle_s", "txn_s", "bytes_in", "bytes_out", "tables"
    );
    for i in session.list_sessions().map_err(s)? {
        println!(
            "{:>6}  {:<12} {:<22} {:>5} {:>6} {:>8} {:>10} {:>10}  {:<20} {}",
            i.id,
            i.user,
            i.address,
            if i.busy { "yes" } else { "no" },
            i.idle_secs,
            i.transaction_secs
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            i.bytes_in,
            i.bytes_out,
            if i.tables.is_empty() {
                "-".to_owned()
            } else {
                i.tables.join(",")
            },
            if i.locks.is_empty() {
                "-".to_owned()
            } else {
                i.locks.join("; ")
            },
        );
        if let (true, Some(lock)) = (i.busy, &i.waiting_for) {
            if !i.blocked_by.is_empty() {
                let by: Vec<String> = i.blocked_by.iter().map(u64::to_string).collect();
                println!(
                    "{:>6}  waits for {lock}, held by session {}",
                    "",
                    by.join(", ")
                );
            }
        }
    }
    let nodes = session.list_subscriptions().map_err(s)?;
    if !nodes.is_empty() {
        println!();
        println!(
            "{:>6}  {:<12} {:<22} {:>10} {:>10} {:>8} {:>10}  tables",
            "node", "user", "address", "sent", "last", "lag", "unread"
        );
        for n in nodes {
            println!(
                "{:>6}  {:<12} {:<22} {:>10} {:>10} {:>8} {:>10}  {}",
                n.session,
                n.user,
                n.peer,
                n.sent,
                n.last,
                n.last.saturating_sub(n.sent),
                n.unread,
                n.tables.join(",")
            );
        }
    }
    Ok(())
}

pub fn perms(
    connect: &str,
    table: &str,
    owner: Option<String>,
    group: Option<String>,
    rights: Option<String>,
) -> CliResult {
    let s = CliError::from;
    let session = Connection::connect(connect)
        .and_then(|c| c.session())
        .map_err(s)?;
    let mut p = session.permissions(table).map_err(s)?;
    if owner.is_some() || group.is_some() || rights.is_some() {
        if let Some(o) = owner {
            p.owner = o;
        }
        if let Some(g) = group {
            p.group = g;
        }
        if let Some(r) = rights {
            let parts: Vec<&str> = r.split(':').collect();
            let parsed: Option<Vec<Rights>> = (parts.len() == 3)
                .then(|| parts.iter().map(|x| Rights::parse(x)).collect())
                .flatten();
            let Some(v) = parsed else {
                return Err(CliError::Usage(format!(
                    "rights {r:?}: expected owner:group:others like rwdx:rwd-:r---"
                )));
            };
            (p.owner_rights, p.group_rights, p.other_rights) = (v[0], v[1], v[2]);
        }
        session.set_permissions(table, p.clone()).map_err(s)?;
    }
    println!("{table}: {p}");
    Ok(())
}

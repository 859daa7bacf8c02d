//! The shell's command language: lines split into commands at `;`, commands
//! into words (with `"…"` and `'…'` quoting), words into a [`Cmd`].

use raiz_engine::index::Segment;
use raiz_engine::{Durability, RecordFormat, Schema, TableOptions};

use crate::values::parse_schema;

/// Why a command does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// How a seek looks for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekMode {
    /// Exact (a partial key matches its prefix).
    Exact,
    /// The first key at or after the given one (SOFTSEEK).
    Soft,
    /// The last key with the prefix.
    Last,
    /// The last key with the prefix, else the last one before it.
    LastSoft,
}

/// What `lock` and `unlock` take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTarget {
    /// The current record.
    Record,
    /// The current table.
    File,
    /// A named lock.
    Name(String),
}

/// One shell command.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// `tables`
    Tables,
    /// `create table NAME (FIELD TYPE, …) [variable] [unlogged|temporary] [serial FIELD]`
    CreateTable {
        /// The table.
        name: String,
        /// Its fields.
        schema: Schema,
        /// Format, durability, serial field.
        options: TableOptions,
    },
    /// `drop table NAME`
    DropTable(String),
    /// `create index TABLE NAME on SEG[+SEG…] [unique]`
    CreateIndex {
        /// The table.
        table: String,
        /// The index.
        name: String,
        /// Its segments.
        segments: Vec<Segment>,
        /// Unique among live records.
        unique: bool,
    },
    /// `drop index [TABLE] NAME`
    DropIndex {
        /// The table (None: the current one).
        table: Option<String>,
        /// The index.
        name: String,
    },
    /// `use TABLE`
    Use(String),
    /// `order INDEX|none`
    Order(Option<String>),
    /// `first`
    First,
    /// `last`
    Last,
    /// `skip [n]`
    Skip(i64),
    /// `goto n`
    Goto(u64),
    /// `seek [soft|last|last soft] KEY…`
    Seek(SeekMode, Vec<String>),
    /// `browse [n]`
    Browse(u64),
    /// `display`
    Display,
    /// `count`
    Count,
    /// `scope LO HI`, `scope LO… .. HI…`, `scope off`
    Scope(Option<(Vec<String>, Vec<String>)>),
    /// `append FIELD=value …`
    Append(Vec<(String, String)>),
    /// `replace FIELD=value …`
    Replace(Vec<(String, String)>),
    /// `delete`
    Delete,
    /// `recall`
    Recall,
    /// `set deleted on|off`
    SetDeleted(bool),
    /// `set timeout MS`
    SetTimeout(u64),
    /// `lock`, `lock file`, `lock name X`
    Lock(LockTarget),
    /// `unlock`, `unlock file`, `unlock name X`
    Unlock(LockTarget),
    /// `begin`
    Begin,
    /// `commit`
    Commit,
    /// `rollback`
    Rollback,
    /// `savepoint`
    Savepoint,
    /// `rollback to N`
    RollbackTo(usize),
    /// `info [TABLE]`
    Info(Option<String>),
    /// `check [TABLE]`
    Check(Option<String>),
    /// `help`
    Help,
    /// `quit`, `exit`
    Quit,
}

/// Splits a line into commands at the `;` outside quotes; a `#` or `--`
/// at the start of a command comments out the rest of the line.
pub fn split_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => {
                    quote = Some(c);
                    cur.push(c);
                }
                ';' => out.push(std::mem::take(&mut cur)),
                '#' if cur.trim().is_empty() => {
                    cur.clear();
                    break;
                }
                '-' if cur.trim().is_empty() && chars.peek() == Some(&'-') => {
                    cur.clear();
                    break;
                }
                c => cur.push(c),
            },
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

/// Splits a command into words; quoted parts join the word they touch
/// (`NAME="Ana Lima"` is one word, `NAME=Ana Lima`).
pub fn words(cmd: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return err(format!("unclosed \" in {cmd:?}")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some(o) => cur.push(o),
                            None => return err(format!("unclosed \" in {cmd:?}")),
                        },
                        Some(o) => cur.push(o),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return err(format!("unclosed ' in {cmd:?}")),
                        Some('\'') => break,
                        Some(o) => cur.push(o),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(what: &str, w: &str) -> Result<T, ParseError> {
    w.parse()
        .map_err(|_| ParseError(format!("{what}: {w:?} is not a number")))
}

fn assignments(cmd: &str, ws: &[String]) -> Result<Vec<(String, String)>, ParseError> {
    if ws.is_empty() {
        return err(format!("{cmd} needs FIELD=value …"));
    }
    ws.iter()
        .map(|w| match w.split_once('=') {
            Some((f, v)) if !f.is_empty() => Ok((f.to_owned(), v.to_owned())),
            _ => err(format!("{cmd}: {w:?} is not FIELD=value")),
        })
        .collect()
}

fn lock_target(cmd: &str, ws: &[String]) -> Result<LockTarget, ParseError> {
    match ws {
        [] => Ok(LockTarget::Record),
        [f] if f.eq_ignore_ascii_case("file") => Ok(LockTarget::File),
        [n, name] if n.eq_ignore_ascii_case("name") => Ok(LockTarget::Name(name.clone())),
        _ => err(format!("usage: {cmd} | {cmd} file | {cmd} name NAME")),
    }
}

fn one_name<'a>(usage: &str, ws: &'a [String]) -> Result<&'a str, ParseError> {
    match ws {
        [n] => Ok(n),
        _ => err(format!("usage: {usage}")),
    }
}

fn opt_name(usage: &str, ws: &[String]) -> Result<Option<String>, ParseError> {
    match ws {
        [] => Ok(None),
        [n] => Ok(Some(n.clone())),
        _ => err(format!("usage: {usage}")),
    }
}

/// `NAME (FIELD TYPE, …) [variable] [unlogged|temporary] [serial FIELD]`
fn create_table(rest: &str) -> Result<Cmd, ParseError> {
    const USAGE: &str =
        "usage: create table NAME (FIELD TYPE, …) [variable] [unlogged|temporary] [serial FIELD]";
    let open = rest.find('(').ok_or_else(|| ParseError(USAGE.into()))?;
    let name = rest[..open].trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return err(USAGE);
    }
    let mut depth = 0;
    let mut close = None;
    for (i, c) in rest[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| ParseError(format!("unclosed ( in {rest:?}")))?;
    let schema = parse_schema(&rest[open + 1..close]).map_err(|e| ParseError(e.to_string()))?;
    let mut options = TableOptions::default();
    let opts = words(&rest[close + 1..])?;
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        match o.to_ascii_lowercase().as_str() {
            "variable" => options.format = RecordFormat::Variable,
            "fixed" => options.format = RecordFormat::Fixed,
            "logged" => options.durability = Durability::Logged,
            "unlogged" => options.durability = Durability::Unlogged,
            "temporary" => options.durability = Durability::Temporary,
            "serial" => {
                let f = it
                    .next()
                    .ok_or_else(|| ParseError("serial needs a field name".into()))?;
                options.serial = Some(f.clone());
            }
            other => {
                return err(format!(
                    "create table: unknown option {other:?} (variable, unlogged, temporary, serial FIELD)"
                ))
            }
        }
    }
    Ok(Cmd::CreateTable {
        name: name.to_owned(),
        schema,
        options,
    })
}

/// `TABLE NAME on SEG[+SEG…] [unique]`
fn create_index(ws: &[String]) -> Result<Cmd, ParseError> {
    const USAGE: &str =
        "usage: create index TABLE NAME on FIELD[,upper|fold|desc|part=OFF:LEN][+FIELD…] [unique]";
    let [table, name, on, rest @ ..] = ws else {
        return err(USAGE);
    };
    if !on.eq_ignore_ascii_case("on") || rest.is_empty() {
        return err(USAGE);
    }
    let (key, unique) = match rest.last() {
        Some(u) if u.eq_ignore_ascii_case("unique") => (&rest[..rest.len() - 1], true),
        _ => (rest, false),
    };
    let key: String = key.concat();
    if key.is_empty() {
        return err(USAGE);
    }
    let segments = key
        .split('+')
        .map(|s| crate::commands::segment(s).map_err(|e| ParseError(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cmd::CreateIndex {
        table: table.clone(),
        name: name.clone(),
        segments,
        unique,
    })
}

/// Parses one command (as [`split_commands`] gives it).
pub fn parse(cmd: &str) -> Result<Cmd, ParseError> {
    let ws = words(cmd)?;
    let Some(first) = ws.first() else {
        return err("empty command");
    };
    let verb = first.to_ascii_lowercase();
    let args = &ws[1..];
    let second = args.first().map(|s| s.to_ascii_lowercase());
    Ok(match (verb.as_str(), second.as_deref()) {
        ("tables", _) if args.is_empty() => Cmd::Tables,
        ("create", Some("table")) => {
            // The raw text after `create table`: types hold parentheses and commas.
            let lower = cmd.to_ascii_lowercase();
            let at = lower.find("table").map_or(0, |i| i + "table".len());
            create_table(cmd[at..].trim())?
        }
        ("create", Some("index")) => create_index(&args[1..])?,
        ("drop", Some("table")) => Cmd::DropTable(one_name("drop table NAME", &args[1..])?.into()),
        ("drop", Some("index")) => match &args[1..] {
            [n] => Cmd::DropIndex {
                table: None,
                name: n.clone(),
            },
            [t, n] => Cmd::DropIndex {
                table: Some(t.clone()),
                name: n.clone(),
            },
            _ => return err("usage: drop index [TABLE] NAME"),
        },
        ("use", _) => Cmd::Use(one_name("use TABLE", args)?.into()),
        ("order", _) => {
            let n = one_name("order INDEX|none", args)?;
            Cmd::Order((!n.eq_ignore_ascii_case("none")).then(|| n.to_owned()))
        }
        ("first" | "top", None) => Cmd::First,
        ("last" | "bottom", None) => Cmd::Last,
        ("skip", _) => match args {
            [] => Cmd::Skip(1),
            [n] => Cmd::Skip(number("skip", n)?),
            _ => return err("usage: skip [n]"),
        },
        ("goto" | "go", _) => Cmd::Goto(number("goto", one_name("goto RECNO", args)?)?),
        ("seek", _) => {
            let (mode, key) = match (
                second.as_deref(),
                args.get(1).map(|s| s.to_ascii_lowercase()),
            ) {
                (Some("last"), Some(s)) if s == "soft" => (SeekMode::LastSoft, &args[2..]),
                (Some("soft"), _) => (SeekMode::Soft, &args[1..]),
                (Some("last"), _) => (SeekMode::Last, &args[1..]),
                _ => (SeekMode::Exact, args),
            };
            if key.is_empty() {
                return err("usage: seek [soft|last|last soft] KEY…");
            }
            Cmd::Seek(mode, key.to_vec())
        }
        ("browse" | "list", _) => match args {
            [] => Cmd::Browse(20),
            [n] => Cmd::Browse(number("browse", n)?),
            _ => return err("usage: browse [n]"),
        },
        ("display" | "record", None) => Cmd::Display,
        ("count", None) => Cmd::Count,
        ("scope", Some("off")) if args.len() == 1 => Cmd::Scope(None),
        ("scope", _) => {
            if let Some(i) = args.iter().position(|w| w == "..") {
                Cmd::Scope(Some((args[..i].to_vec(), args[i + 1..].to_vec())))
            } else if let [lo, hi] = args {
                Cmd::Scope(Some((vec![lo.clone()], vec![hi.clone()])))
            } else {
                return err("usage: scope LO HI | scope LO… .. HI… | scope off");
            }
        }
        ("append", _) => Cmd::Append(assignments("append", args)?),
        ("replace", _) => Cmd::Replace(assignments("replace", args)?),
        ("delete", None) => Cmd::Delete,
        ("recall", None) => Cmd::Recall,
        ("set", Some("deleted")) => match args.get(1).map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("on") if args.len() == 2 => Cmd::SetDeleted(true),
            Some("off") if args.len() == 2 => Cmd::SetDeleted(false),
            _ => return err("usage: set deleted on|off"),
        },
        ("set", Some("timeout")) => match &args[1..] {
            [ms] => Cmd::SetTimeout(number("set timeout", ms)?),
            _ => return err("usage: set timeout MILLISECONDS"),
        },
        ("lock", _) => Cmd::Lock(lock_target("lock", args)?),
        ("unlock", _) => Cmd::Unlock(lock_target("unlock", args)?),
        ("begin", None) => Cmd::Begin,
        ("commit", None) => Cmd::Commit,
        ("rollback", None) => Cmd::Rollback,
        ("rollback", Some("to")) => match &args[1..] {
            [n] => Cmd::RollbackTo(number("rollback to", n)?),
            _ => return err("usage: rollback to SAVEPOINT"),
        },
        ("savepoint", None) => Cmd::Savepoint,
        ("info", _) => Cmd::Info(opt_name("info [TABLE]", args)?),
        ("check", _) => Cmd::Check(opt_name("check [TABLE]", args)?),
        ("help" | "?", _) => Cmd::Help,
        ("quit" | "exit", None) => Cmd::Quit,
        _ => {
            return err(format!(
                "unknown command {cmd:?}; `help` lists the commands"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_semicolons_outside_quotes() {
        assert_eq!(
            split_commands(r#"first; append N="a;b" ; skip 2"#),
            vec!["first", r#"append N="a;b""#, "skip 2"]
        );
        assert!(split_commands("  # a comment; still").is_empty());
        assert!(split_commands("-- a comment").is_empty());
        assert_eq!(split_commands("skip -1"), vec!["skip -1"]);
    }

    #[test]
    fn words_join_quoted_parts() {
        assert_eq!(
            words(r#"append NOME="Ana Lima" OBS='it''s' X=\"#).unwrap(),
            vec!["append", "NOME=Ana Lima", "OBS=its", "X=\\"]
        );
        assert!(words(r#"seek "open"#).is_err());
        assert_eq!(words(r#"seek """#).unwrap(), vec!["seek", ""]);
    }

    #[test]
    fn commands_parse_or_say_how() {
        assert!(matches!(
            parse("create table t (A C(3), B N(12,2)) variable unlogged").unwrap(),
            Cmd::CreateTable { ref name, ref schema, options }
                if name == "t" && schema.len() == 2
                    && options.format == RecordFormat::Variable
                    && options.durability == Durability::Unlogged
        ));
        assert!(matches!(
            parse("create index t by_ab on A,upper + B,desc unique").unwrap(),
            Cmd::CreateIndex { ref segments, unique: true, .. } if segments.len() == 2
        ));
        assert!(
            matches!(parse("SEEK LAST SOFT 1 2").unwrap(), Cmd::Seek(SeekMode::LastSoft, ref k) if k.len() == 2)
        );
        assert!(
            matches!(parse("scope 1 .. ").unwrap(), Cmd::Scope(Some((ref lo, ref hi))) if lo.len() == 1 && hi.is_empty())
        );
        for bad in [
            "skip x",
            "frobnicate",
            "create table t",
            "create table t (A Q)",
            "lock name",
            "set deleted maybe",
            "goto",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

//! Snapshots: a member that fell behind the log the group keeps, and a new
//! member, are brought up to date by a snapshot; a member whose database is
//! behind its own current snapshot installs it at start; a damaged or cut
//! snapshot file is refused whole.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use raiz_cluster::snapshot::{archive, SnapshotFile};
use raiz_cluster::{ClusterConfig, Member};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::schema::Memo;
use raiz_engine::storage::{MemoryStorage, OpenMode, Storage};
use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};

fn small_log(cfg: &mut ClusterConfig) {
    // Snapshots only when asked; 5 entries kept behind one.
    cfg.snapshot_every = 0;
    cfg.keep_after_snapshot = 5;
}

fn notes_schema() -> Schema {
    Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("BODY", FieldType::Memo),
    ])
}

/// Every table of `db` but the member's own: name, records, and each index's
/// order (deleted records shown), checked clean.
fn all_tables(db: &Database) -> Vec<(String, Records, Vec<Vec<u64>>)> {
    let s = db.session();
    s.set_hide_deleted(false);
    let mut out = Vec::new();
    let mut names: Vec<String> = db
        .list_tables()
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with("_raiz_"))
        .collect();
    names.sort();
    for name in names {
        let mut t = s.open_table(&name).unwrap();
        let mut records = Vec::new();
        for recno in 1..=t.record_count() {
            let r = t.read(recno).unwrap();
            let mut values = r.values().to_vec();
            for (i, f) in t.schema().fields().iter().enumerate() {
                if matches!(values[i], Value::Memo(Memo::Stored(_))) {
                    values[i] = Value::Memo(Memo::Data(t.read_memo(recno, &f.name).unwrap()));
                }
            }
            records.push((recno, r.is_deleted(), values));
        }
        let mut orders = Vec::new();
        for (def, _) in t.info().indexes {
            t.set_order(Some(&def.name)).unwrap();
            let mut order = Vec::new();
            let mut at = t.first().unwrap();
            while at {
                order.push(t.recno());
                at = t.next().unwrap();
            }
            orders.push(order);
        }
        let check = t.check(10).unwrap();
        assert!(check.is_ok(), "check on {name}: {check:?}");
        out.push((name, records, orders));
    }
    out
}

fn purged(n: &Node) -> Option<u64> {
    n.member.raft().metrics().borrow().purged.map(|l| l.index)
}

/// Writes that move unique keys between records, memos, deletes and
/// recalls, and changes to the set of tables.
fn churn(db: &Database, round: i64) {
    let s = db.session();
    let mut t = s.open_table("items").unwrap();
    for k in 0..40 {
        t.append(&[code(&format!("r{round}k{k}")), Value::Int64(k)])
            .unwrap();
    }
    let base = t.record_count() - 40;
    // Key moves: the key of one record freed and taken by another, in one
    // transaction and across commits.
    s.begin().unwrap();
    t.delete(base + 1).unwrap();
    t.update(base + 2, &[code(&format!("r{round}k0")), Value::Int64(-1)])
        .unwrap();
    s.commit().unwrap();
    t.update(base + 3, &[code(&format!("r{round}x")), Value::Int64(3)])
        .unwrap();
    t.update(base + 4, &[code(&format!("r{round}k2")), Value::Int64(4)])
        .unwrap();
    // Its key is another record's now.
    assert!(t.recall(base + 1).is_err());
    // A rolled-back append: a deleted blank record.
    s.begin().unwrap();
    t.append(&[code(&format!("r{round}gone")), Value::Int64(0)])
        .unwrap();
    s.rollback().unwrap();
    let mut n = s.open_table("notes").unwrap();
    for k in 0..10 {
        let body = format!("note {round}/{k} ").repeat(k as usize * 50);
        n.append(&[
            Value::Int64(round * 100 + k),
            Value::Memo(Memo::Data(body.into_bytes())),
        ])
        .unwrap();
    }
    n.delete(n.record_count()).unwrap();
}

fn create_notes(db: &Database) {
    db.create_table("notes", &notes_schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut n = s.open_table("notes").unwrap();
    n.create_index(&IndexDef::new("id", vec![Segment::field("ID")]))
        .unwrap();
}

#[test]
fn a_member_behind_the_kept_log_is_brought_up_by_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = group_with(dir.path(), 3, small_log);
    let l = leader(&nodes, &[]);
    with_index(&nodes[l].db);
    create_notes(&nodes[l].db);
    nodes[l]
        .db
        .create_table("gone", &schema(), TableOptions::default())
        .unwrap();
    nodes[l]
        .db
        .create_table("redefined", &schema(), TableOptions::default())
        .unwrap();
    churn(&nodes[l].db, 1);
    converge(&nodes, l, &[]);

    // One follower stops; the group goes on, changes its tables, and drops
    // the log behind a snapshot.
    let behind = (l + 1) % 3;
    nodes[behind].member.shutdown();
    let config = nodes[behind].config.clone();
    let stopped_at = nodes[behind].member.status().last_log.unwrap();
    let l = leader(&nodes, &[behind]);
    for round in 2..6 {
        churn(&nodes[l].db, round);
    }
    nodes[l].db.drop_table("gone").unwrap();
    nodes[l].db.drop_table("redefined").unwrap();
    nodes[l]
        .db
        .create_table("redefined", &notes_schema(), TableOptions::default())
        .unwrap();
    nodes[l]
        .db
        .create_table("later", &schema(), TableOptions::default())
        .unwrap();
    {
        let s = nodes[l].db.session();
        let mut t = s.open_table("later").unwrap();
        t.append(&[code("late"), Value::Int64(1)]).unwrap();
    }
    let covered = nodes[l].member.snapshot().unwrap().unwrap();
    assert_eq!(nodes[l].member.status().snapshot, Some(covered));
    // The group's log before the snapshot is gone: only a snapshot helps.
    let start = std::time::Instant::now();
    let p = loop {
        match purged(&nodes[l]) {
            Some(p) if p > stopped_at => break p,
            other => assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the leader did not drop its log: purged {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        p > stopped_at,
        "purged to {p}, the member stopped at {stopped_at}"
    );

    // The member comes back: it gets the snapshot, then the entries after.
    drop(nodes.remove(behind));
    nodes.insert(behind, Node::start(config.clone()));
    {
        let s = nodes[l].db.session();
        let mut t = s.open_table("later").unwrap();
        t.append(&[code("after"), Value::Int64(2)]).unwrap();
    }
    converge(&nodes, l, &[]);
    assert!(nodes[behind].member.status().snapshot >= Some(covered));
    let expect = all_tables(&nodes[l].db);
    assert_eq!(
        expect.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["items", "later", "notes", "redefined"]
    );
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(all_tables(&n.db), expect, "member {}", i + 1);
    }

    // Its state is durable: stopped and started again, it holds the same
    // and goes on from the log.
    nodes[behind].member.shutdown();
    drop(nodes.remove(behind));
    nodes.insert(behind, Node::start(config));
    churn(&nodes[l].db, 9);
    converge(&nodes, l, &[]);
    let expect = all_tables(&nodes[l].db);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(all_tables(&n.db), expect, "member {} after restart", i + 1);
    }
    for n in &nodes {
        n.member.shutdown();
    }
}

#[test]
fn a_new_member_joins_from_a_snapshot_and_one_behind_its_snapshot_installs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = group_with(dir.path(), 3, small_log);
    let l = leader(&nodes, &[]);
    with_index(&nodes[l].db);
    create_notes(&nodes[l].db);
    for round in 1..4 {
        churn(&nodes[l].db, round);
    }
    nodes[l].member.snapshot().unwrap();
    assert!(purged(&nodes[l]).is_some());

    // A fourth member with an empty rootpath: the log it would need is gone.
    let mut members = nodes[0].config.members.clone();
    members.insert(
        4,
        Member {
            raft: free_port(),
            client: "db4.example:7070".into(),
        },
    );
    let mut cfg = ClusterConfig::new(4, members.clone(), dir.path().join("m4").join("raft"));
    cfg.secret = "s3cret".into();
    cfg.join = true;
    small_log(&mut cfg);
    nodes.push(Node::start(cfg));
    nodes[l].member.add_member(4, members[&4].clone()).unwrap();
    churn(&nodes[l].db, 4);
    converge(&nodes, l, &[]);
    let expect = all_tables(&nodes[l].db);
    assert_eq!(all_tables(&nodes[3].db), expect, "the new member");

    // A follower whose database is behind its own current snapshot (as
    // after a crash during an installation) installs it before it starts:
    // give a stopped follower the leader's snapshot.
    let f = (l + 1) % 3;
    nodes[f].member.shutdown();
    let config = nodes[f].config.clone();
    for round in 5..7 {
        churn(&nodes[l].db, round);
    }
    nodes[l].member.snapshot().unwrap();
    let theirs = nodes[l].config.log_dir.join("snapshots");
    let mine = config.log_dir.join("snapshots");
    drop(nodes.remove(f));
    copy_dir(&theirs, &mine);
    let node = Node::start(config);
    let applied_at_start = node.member.status().applied;
    let snap = node.member.status().snapshot;
    assert!(
        snap.is_some() && applied_at_start >= snap,
        "{applied_at_start:?} {snap:?}"
    );
    nodes.insert(f, node);
    converge(&nodes, l, &[]);
    let expect = all_tables(&nodes[l].db);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(all_tables(&n.db), expect, "member {}", i + 1);
    }
    for n in &nodes {
        n.member.shutdown();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(to).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::remove_file(p).unwrap();
        }
    }
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn a_damaged_or_cut_snapshot_is_refused_whole() {
    let storage = Arc::new(MemoryStorage::new());
    let root = Path::new("/db");
    {
        let db = Database::open_with(
            root,
            raiz_engine::Options::default().storage(storage.clone()),
        )
        .unwrap();
        db.create_table("t", &schema(), TableOptions::default())
            .unwrap();
        let s = db.session();
        let mut t = s.open_table("t").unwrap();
        for k in 0..100 {
            t.append(&[code(&format!("k{k}")), Value::Int64(k)])
                .unwrap();
        }
    }
    let out = Path::new("/snap");
    let f = storage.open(out, OpenMode::CreateNew).unwrap();
    let len = archive::pack(storage.as_ref(), root, f.as_ref(), out).unwrap();
    // Whole, it unpacks into a rootpath that opens with the records.
    archive::unpack(storage.as_ref(), f.as_ref(), out, Path::new("/copy")).unwrap();
    let copy = Database::open_with(
        "/copy",
        raiz_engine::Options::default().storage(storage.clone()),
    )
    .unwrap();
    assert_eq!(copy.session().open_table("t").unwrap().record_count(), 100);
    drop(copy);
    let mut whole = vec![0u8; len as usize];
    f.read_at(0, &mut whole).unwrap();
    let mut n = 0;
    let mut try_bytes = |bytes: &[u8], what: &str| {
        n += 1;
        let p = Path::new("/bad").join(n.to_string());
        let g = storage.open(&p, OpenMode::CreateNew).unwrap();
        g.write_at(0, bytes).unwrap();
        let to = Path::new("/out").join(n.to_string());
        let e = archive::unpack(storage.as_ref(), g.as_ref(), &p, &to).expect_err(what);
        assert!(
            matches!(e, raiz_cluster::Error::Corrupt { .. }),
            "{what}: {e}"
        );
    };
    // Cut anywhere.
    for cut in [0, 5, 12, 20, len as usize / 2, len as usize - 1] {
        try_bytes(&whole[..cut], &format!("cut at {cut}"));
    }
    // One byte flipped in a file's bytes, in the magic, in the count.
    for at in [3, len as usize / 2, len as usize - 2] {
        let mut b = whole.clone();
        b[at] ^= 0x40;
        try_bytes(&b, &format!("byte {at} flipped"));
    }
    // Trailing bytes.
    let mut b = whole.clone();
    b.extend_from_slice(b"extra");
    try_bytes(&b, "trailing bytes");
    // A name that climbs out of the rootpath.
    let mut evil = Vec::new();
    evil.extend_from_slice(b"RAIZSNAP");
    evil.extend_from_slice(&1u32.to_le_bytes());
    let name = b"../escape";
    evil.extend_from_slice(&(name.len() as u16).to_le_bytes());
    evil.extend_from_slice(name);
    evil.extend_from_slice(&1u64.to_le_bytes());
    evil.extend_from_slice(&crc32fast::hash(b"x").to_le_bytes());
    evil.push(b'x');
    evil.extend_from_slice(&0u16.to_le_bytes());
    evil.extend_from_slice(&1u64.to_le_bytes());
    try_bytes(&evil, "a name with ..");
    // A snapshot file read through openraft's stream is the file.
    let sf = SnapshotFile::open(storage.as_ref(), out, OpenMode::Existing).unwrap();
    assert_eq!(sf.path(), out);
}

//! Fewer round trips: a remote scan reads ahead; ranges and batches return
//! many records per reply. Counted with the client's round-trip counter.

use std::time::Duration;

use raiz_client::{BatchAction, BatchRequest, ErrorKind};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, TableOptions, Value};

use crate::harness::Server;

const N: i64 = 20_000;

#[test]
fn a_remote_scan_of_20000_records_takes_few_round_trips() {
    let server = Server::start(&[]);
    let s = server.session("ana");
    let schema = Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("GRP", FieldType::Char(4)),
        Field::new("NOTE", FieldType::Memo),
    ]);
    s.create_table("big", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("big").unwrap();
    let rows: Vec<Vec<Value>> = (0..N)
        .map(|i| {
            vec![
                Value::Int64(i),
                Value::Char(format!("G{}", i % 10)),
                Value::Memo(if i % 1000 == 0 {
                    Memo::Data(vec![b'x'; 5000])
                } else {
                    Memo::Empty
                }),
            ]
        })
        .collect();
    let before = s.round_trips();
    s.begin().unwrap();
    let recnos = t.append_many(&rows).unwrap();
    s.commit().unwrap();
    assert_eq!(recnos, (1..=N as u64).collect::<Vec<_>>());
    let pipelined = s.round_trips() - before;
    assert!(
        pipelined < 100,
        "appends pipelined: {pipelined} round trips"
    );
    t.create_index(&IndexDef::new(
        "grp",
        vec![Segment::field("GRP"), Segment::field("ID")],
    ))
    .unwrap();

    let scan = |t: &mut raiz_client::Table| -> (Vec<i64>, u64) {
        let start = s.round_trips();
        let mut ids = Vec::new();
        let mut more = t.first().unwrap();
        while more {
            ids.push(t.record().unwrap().get("ID").unwrap().as_i64().unwrap());
            more = t.next().unwrap();
        }
        assert!(t.eof());
        (ids, s.round_trips() - start)
    };
    let (fast, fast_trips) = scan(&mut t);
    assert_eq!(fast, (0..N).collect::<Vec<_>>());
    t.set_read_ahead(0);
    let (slow, slow_trips) = scan(&mut t);
    assert_eq!(slow, fast);
    assert!(slow_trips >= N as u64, "one per record: {slow_trips}");
    assert!(
        fast_trips * 50 < slow_trips,
        "read-ahead: {fast_trips} round trips vs {slow_trips}"
    );
    println!("scan of {N}: {fast_trips} round trips with read-ahead, {slow_trips} without");
    t.set_read_ahead(raiz_client::MAX_READ_AHEAD);

    // Index order, backwards, with a memo read in the middle of the scan.
    t.set_order(Some("grp")).unwrap();
    let start = s.round_trips();
    assert!(t.seek_last(&[Value::Char("G3".into())]).unwrap());
    let mut n = 0;
    let mut memo_bytes = 0;
    loop {
        let r = t.record().unwrap();
        assert_eq!(r.get("GRP"), Some(&Value::Char("G3  ".into())));
        if let Some(Value::Memo(Memo::Stored(m))) = r.get("NOTE") {
            assert!(!m.is_empty());
            memo_bytes += t.read_memo(r.recno(), "NOTE").unwrap().len();
        }
        n += 1;
        if !t.prev().unwrap() || t.record().unwrap().get("GRP") != Some(&Value::Char("G3  ".into()))
        {
            break;
        }
    }
    assert_eq!(n, N / 10);
    assert_eq!(memo_bytes, 0, "G3 holds no id divisible by 1000");
    assert!(s.round_trips() - start < 60, "{}", s.round_trips() - start);

    // A range iterator: a few replies for 2,000 records.
    let start = s.round_trips();
    let ids: Vec<u64> = t
        .range(
            Some(&[Value::Char("G7".into())]),
            Some(&[Value::Char("G7".into())]),
        )
        .unwrap()
        .map(|r| r.unwrap().recno())
        .collect();
    assert_eq!(ids.len(), (N / 10) as usize);
    assert!(s.round_trips() - start < 10, "{}", s.round_trips() - start);

    // A batch: one request reads and locks a whole group, another updates one.
    let start = s.round_trips();
    let out = t
        .batch(&BatchRequest::prefix(
            vec![Value::Char("G1".into())],
            BatchAction::Read { lock_ms: Some(0) },
        ))
        .unwrap();
    assert_eq!(out.count, (N / 10) as u64);
    assert_eq!(s.round_trips() - start, 1);
    let other = server.session("bo");
    let tb = other.open_table("big").unwrap();
    assert_eq!(
        tb.lock(out.records[5].recno(), Duration::ZERO)
            .unwrap_err()
            .kind(),
        ErrorKind::LockConflict
    );
    let n = t
        .batch(&BatchRequest::prefix(
            vec![Value::Char("G2".into())],
            BatchAction::Update(vec![(
                "NOTE".into(),
                Value::Memo(Memo::Data(b"two".to_vec())),
            )]),
        ))
        .unwrap()
        .count;
    assert_eq!(n, (N / 10) as u64);
    assert_eq!(tb.read_memo(3, "NOTE").unwrap(), b"two");
    let n = t
        .batch(&BatchRequest::prefix(
            vec![Value::Char("G9".into())],
            BatchAction::Delete,
        ))
        .unwrap()
        .count;
    assert_eq!(n, (N / 10) as u64);
    assert_eq!(tb.deleted_count().unwrap(), (N / 10) as u64);
}

#[test]
fn read_ahead_is_dropped_when_the_session_writes() {
    let server = Server::start(&[]);
    let s = server.session("ana");
    let schema = Schema::new(vec![Field::new("N", FieldType::Int64)]);
    s.create_table("w", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("w").unwrap();
    let mut u = s.open_table("w").unwrap();
    for i in 0..100 {
        t.append(&[Value::Int64(i)]).unwrap();
    }
    assert!(t.first().unwrap());
    assert!(t.next().unwrap()); // record 2; 3.. are read ahead
    u.update(5, &[Value::Int64(-5)]).unwrap(); // through another handle
    for _ in 0..3 {
        assert!(t.next().unwrap());
    }
    assert_eq!(t.recno(), 5);
    assert_eq!(t.record().unwrap().get("N"), Some(&Value::Int64(-5)));
    // Updating the current record through the handle keeps it there.
    t.update(5, &[Value::Int64(55)]).unwrap();
    assert!(t.next().unwrap());
    assert_eq!(t.recno(), 6);
    assert!(t.prev().unwrap());
    assert_eq!(t.record().unwrap().get("N"), Some(&Value::Int64(55)));
}

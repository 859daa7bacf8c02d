//! Records a request returns beyond the one it asks for: read-ahead after a
//! move (the cursor ends on the last record read, every passed position is
//! saved so a client's `sync` puts it back exactly) and batches of a range.

use raiz_client::proto::{NavOp, Reply, TableOut, WireRecord};
use raiz_engine::db::{CursorState, RangeIter};
use raiz_engine::Table;

use crate::worker::{engine, position, R};

/// A read-ahead reply stops growing past this many bytes of record data.
const MAX_AHEAD_BYTES: usize = 1 << 20;
/// Records one request may read ahead or return from a range.
pub const MAX_AHEAD: u32 = 4096;

fn approx_size(w: &WireRecord) -> usize {
    w.values
        .iter()
        .map(|v| match v {
            raiz_engine::Value::Char(s) => s.len() + 2,
            raiz_engine::Value::Binary(b) => b.len() + 2,
            _ => 12,
        })
        .sum::<usize>()
        + 12
}

/// A range iterator a client reads in batches, with what it needs to put it
/// back after the client's own writes.
pub struct Range {
    pub it: RangeIter,
    /// The iterator's position before the last batch.
    before: Option<Vec<u8>>,
    /// The key of each record of the last batch.
    keys: Vec<Vec<u8>>,
}

impl Range {
    pub fn new(it: RangeIter) -> Range {
        Range {
            it,
            before: None,
            keys: Vec::new(),
        }
    }

    /// Puts the iterator just after the `used`-th record of the last batch
    /// (its position before the batch when 0).
    pub fn resume(&mut self, used: u32) {
        let key = match used {
            0 => self.before.clone(),
            n => self
                .keys
                .get(n as usize - 1)
                .cloned()
                .or_else(|| self.keys.last().cloned())
                .or_else(|| self.before.clone()),
        };
        self.it.restart_after(key);
    }

    /// The next batch of at most `max` records; true when the range is done.
    pub fn take(&mut self, max: u32) -> R<(Vec<WireRecord>, bool)> {
        self.before = self.it.last_key();
        self.keys.clear();
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max as usize && bytes < MAX_AHEAD_BYTES {
            match self.it.next() {
                Some(r) => {
                    let w: WireRecord = r.map_err(engine)?.into();
                    bytes += approx_size(&w);
                    out.push(w);
                    self.keys.extend(self.it.last_key());
                }
                None => return Ok((out, true)),
            }
        }
        Ok((out, false))
    }
}

/// On a real record the read-ahead can start from (at bof the handle stands
/// on the first record, but a backward read-ahead has nowhere to go).
fn on_record(t: &Table) -> bool {
    t.on_record() && !t.eof()
}

pub fn nav(t: &mut Table, op: NavOp, ahead: u32, passed: &mut Vec<CursorState>) -> R<Reply> {
    let forward = op.forward();
    let found = match op {
        NavOp::First => t.first(),
        NavOp::Last => t.last(),
        NavOp::Next => t.next(),
        NavOp::Prev => t.prev(),
        NavOp::Skip(n) => t.skip(n),
        NavOp::Goto(r) => t.goto(r).map(|_| true),
        NavOp::Seek(k) => t.seek(&k),
        NavOp::SeekSoft(k) => t.seek_soft(&k),
        NavOp::SeekLast(k) => t.seek_last(&k),
        NavOp::SeekLastSoft(k) => t.seek_last_soft(&k),
    }
    .map_err(engine)?;
    let at = position(t);
    let mut current = None;
    let mut more = Vec::new();
    let mut end = None;
    if on_record(t) {
        current = Some(WireRecord::from(t.record().map_err(engine)?));
        if ahead > 0 {
            passed.push(t.cursor_state());
        }
        let mut bytes = 0;
        while more.len() < ahead.min(MAX_AHEAD) as usize && bytes < MAX_AHEAD_BYTES {
            let moved = if forward { t.next() } else { t.prev() }.map_err(engine)?;
            if !moved || !on_record(t) {
                end = Some(position(t));
                break;
            }
            let w = WireRecord::from(t.record().map_err(engine)?);
            bytes += approx_size(&w);
            more.push(w);
            passed.push(t.cursor_state());
        }
    }
    Ok(Reply::Table {
        at,
        out: TableOut::Moved {
            found,
            current,
            ahead: more,
            end,
        },
    })
}

//! The records every engine gets, generated once per run from a fixed seed.

use crate::XorShift;

use super::Spec;

/// A 24-byte random key and a 150-byte value.
#[derive(Debug, Clone)]
pub struct Row {
    /// Key.
    pub key: [u8; 24],
    /// Value.
    pub value: [u8; 150],
}

/// An ISAM record: unique key, a group code and a day (second index), a name
/// (third index), and the rest of the record.
#[derive(Debug, Clone)]
pub struct IsamRow {
    /// Unique key.
    pub key: [u8; 24],
    /// Group code (ASCII).
    pub group: [u8; 8],
    /// Day number.
    pub day: u32,
    /// Name (ASCII).
    pub name: [u8; 20],
    /// The rest of the record.
    pub rest: [u8; 100],
}

impl IsamRow {
    /// The record as peers store it under its key.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(152);
        v.extend_from_slice(&self.group);
        v.extend_from_slice(&self.day.to_be_bytes());
        v.extend_from_slice(&self.name);
        v.extend_from_slice(&self.rest);
        v
    }

    /// Second-index entry key for peers: group, day, then the unique key.
    pub fn index2(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(36);
        v.extend_from_slice(&self.group);
        v.extend_from_slice(&self.day.to_be_bytes());
        v.extend_from_slice(&self.key);
        v
    }

    /// Third-index entry key for peers: name, then the unique key.
    pub fn index3(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(44);
        v.extend_from_slice(&self.name);
        v.extend_from_slice(&self.key);
        v
    }
}

/// Everything a run writes and reads.
#[derive(Debug)]
pub struct Dataset {
    /// Loaded in one transaction.
    pub rows: Vec<Row>,
    /// Keys read by the point and range reads (all present).
    pub probe: Vec<[u8; 24]>,
    /// Rows of the individual commits, then of the batches.
    pub extra: Vec<Row>,
    /// Rows of the group-commit rows (1, 4 and 16 threads).
    pub group: Vec<Row>,
    /// ISAM rows.
    pub isam: Vec<IsamRow>,
}

fn fill(rng: &mut XorShift, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let v = rng.next_in(u64::MAX - 1).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn ascii(rng: &mut XorShift, out: &mut [u8], alphabet: u64) {
    for b in out {
        *b = b'A' + (rng.next_in(alphabet) - 1) as u8;
    }
}

fn row(rng: &mut XorShift) -> Row {
    let mut r = Row {
        key: [0; 24],
        value: [0; 150],
    };
    fill(rng, &mut r.key);
    fill(rng, &mut r.value);
    r
}

impl Dataset {
    /// Generates the data of `spec`.
    pub fn new(spec: &Spec) -> Dataset {
        let mut rng = XorShift(0x5EED_1234_ABCD_0001);
        let rows: Vec<Row> = (0..spec.records).map(|_| row(&mut rng)).collect();
        let probe = (0..spec.reads)
            .map(|_| rows[rng.next_in(rows.len() as u64) as usize - 1].key)
            .collect();
        let extra = (0..spec.commits + spec.batches * spec.batch)
            .map(|_| row(&mut rng))
            .collect();
        let group = (0..3 * spec.group_commits).map(|_| row(&mut rng)).collect();
        let isam = (0..spec.isam_records)
            .map(|_| {
                let mut r = IsamRow {
                    key: [0; 24],
                    group: [b' '; 8],
                    day: 20_000 + rng.next_in(3650) as u32,
                    name: [b' '; 20],
                    rest: [0; 100],
                };
                fill(&mut rng, &mut r.key);
                ascii(&mut rng, &mut r.group[..4], 26);
                ascii(&mut rng, &mut r.name[..12], 26);
                ascii(&mut rng, &mut r.rest, 26);
                r
            })
            .collect();
        Dataset {
            rows,
            probe,
            extra,
            group,
            isam,
        }
    }
}

//! Requests, replies and the types they carry.

use raiz_engine::index::{Condition, IndexDef};
use raiz_engine::table::{CheckReport, RewriteReport};
use raiz_engine::{Schema, TableInfo, TableOptions, Value};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// A request or a reply with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the client, echoed by the server.
    pub id: u64,
    /// The message.
    pub body: T,
}

/// What the server answers to a request.
pub type Response = Envelope<Result<Reply, WireError>>;

/// A refusal, with the same kind the embedded API would report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The kind.
    pub kind: ErrorKind,
    /// The full message (names the table, record, key… concerned).
    pub message: String,
}

/// Requests. Table operations go through [`Request::Table`] on a handle the
/// session opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Authentication; the first request of a connection.
    Hello {
        /// User name.
        user: String,
        /// Password.
        password: String,
        /// What the client calls itself (shown by `raiz monitor`).
        client: String,
    },
    /// Does nothing (keepalive, round-trip measurement).
    Ping,
    /// Table names of the rootpath.
    ListTables,
    /// Whether a table exists.
    TableExists(String),
    /// Creates a table.
    CreateTable {
        /// Name.
        name: String,
        /// Fields.
        schema: Schema,
        /// Format, page size, durability, serial field.
        options: TableOptions,
    },
    /// Drops a table.
    DropTable(String),
    /// Opens a handle on a table.
    OpenTable(String),
    /// Begins a transaction.
    Begin,
    /// Whether a transaction is open.
    InTransaction,
    /// Commits the transaction.
    Commit,
    /// Rolls the transaction back.
    Rollback,
    /// Marks a savepoint.
    Savepoint,
    /// Rolls back to a savepoint.
    RollbackTo(u64),
    /// Takes a named lock (session timeout).
    LockName(String),
    /// Releases a named lock.
    UnlockName(String),
    /// xBase `SET DELETED ON/OFF` for this session.
    SetHideDeleted(bool),
    /// Lock wait timeout, in milliseconds.
    SetLockTimeout(u64),
    /// Delayed durability for this session's commits.
    SetDelayedDurability(bool),
    /// Asks for a checkpoint.
    Checkpoint,
    /// An operation on an open table handle.
    Table {
        /// The handle, from [`Reply::Opened`].
        handle: u32,
        /// Put the handle back where the application is first (its record,
        /// bof, eof and found): the client read ahead and the server's cursor
        /// is further on than the application's.
        sync: Option<Position>,
        /// The operation.
        op: TableOp,
    },
    /// More records from a range iterator.
    RangeNext {
        /// The iterator, from [`TableOut::Range`].
        iter: u32,
        /// At most this many.
        max: u32,
        /// The client's session wrote since the last batch, of which the
        /// application used this many records: go on after the last of those
        /// (the rest of the batch may be stale).
        resume: Option<u32>,
    },
    /// Drops a range iterator.
    RangeClose(u32),
    /// Sessions of the server (admin).
    ListSessions,
    /// Ends a session (admin): an idle one at once, a busy one when its
    /// current request finishes.
    EndSession(u64),
    /// Reads a table's permissions.
    GetPermissions(String),
    /// Sets a table's permissions (its owner or an admin).
    SetPermissions {
        /// The table.
        table: String,
        /// The new permissions.
        permissions: Permissions,
    },
    /// The client sends this session's writes inside a transaction without
    /// waiting for their replies: a write that fails then makes the
    /// transaction's commit fail (and roll back) with that write's error.
    SetDeferredWrites(bool),
    /// Turns the connection into a change stream for `tables` (a cache node):
    /// answered [`Reply::Subscribed`], then [`Reply::Changes`] under the same
    /// id until the connection ends. `after`: where the node's copy is (its
    /// epoch and the last sequence number it applied), to catch up from.
    Subscribe {
        /// Tables to follow (read right needed on each).
        tables: Vec<String>,
        /// The node's position, if it has a copy.
        after: Option<StreamPos>,
    },
    /// The change feed's position now: every commit this session saw
    /// acknowledged is at or before it ([`Reply::Count`]).
    FeedPosition,
    /// Nodes subscribed to the change stream (admin).
    ListSubscriptions,
    /// An online backup of the rootpath into a directory on the server's
    /// machine (admin): answered with `Reply::Backup`.
    Backup {
        /// The directory (absolute, or relative to the server's working
        /// directory); created, must be empty and outside the rootpath.
        to: String,
    },
    /// The cluster as this member sees it (a `raiz serve --cluster`
    /// member): answered with `Reply::ClusterStatus`.
    ClusterStatus,
    /// Opens a table under a handle number the client chooses (one not in
    /// use): a session moved to a new leader opens its tables again under
    /// the handles it had. Answered like [`Request::OpenTable`].
    OpenTableAs {
        /// The table.
        name: String,
        /// The handle it gets.
        handle: u32,
    },
    /// Adds a member to the cluster (admin, on the leader): it follows as a
    /// learner until it caught up, then votes. Answered with
    /// `Reply::ClusterStatus` once the new membership is committed.
    ClusterAddMember {
        /// Its id.
        id: u64,
        /// Where the members reach it.
        raft: String,
        /// Where its clients connect.
        client: String,
    },
    /// Removes a member from the cluster (admin, on the leader).
    ClusterRemoveMember {
        /// Its id.
        id: u64,
    },
    /// Builds a snapshot of the member's database now (admin, on any
    /// member), after which the log it covers may be dropped. Answered with
    /// `Reply::ClusterStatus` once it is the member's current snapshot.
    ClusterSnapshot,
}

/// A position in a server's change stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPos {
    /// The server's epoch.
    pub epoch: u64,
    /// The last sequence number applied.
    pub seq: u64,
}

/// A cluster member's view of its group (`raiz cluster status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The member answering.
    pub id: u64,
    /// Its role: leader, follower, candidate, learner, shutdown.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader, when known.
    pub leader: Option<u64>,
    /// The last entry of the member's log.
    pub last_log: Option<u64>,
    /// The last entry applied to its tables.
    pub applied: Option<u64>,
    /// The last entry its current snapshot covers (the log before it may be
    /// dropped).
    pub snapshot: Option<u64>,
    /// Whether it takes writes now (the leader, caught up with its term,
    /// hearing from a majority).
    pub writable: bool,
    /// Every member.
    pub members: Vec<ClusterMemberInfo>,
}

/// One member of a cluster, as a member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMemberInfo {
    /// Its id.
    pub id: u64,
    /// Where the members reach it.
    pub raft: String,
    /// Where its clients connect.
    pub client: String,
    /// On the leader: its last log entry known to be held by that member.
    pub matched: Option<u64>,
}

/// A node following the change stream, as `raiz monitor` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// Its session.
    pub session: u64,
    /// Its user.
    pub user: String,
    /// Its address.
    pub peer: String,
    /// Tables it follows.
    pub tables: Vec<String>,
    /// The last sequence number sent to it.
    pub sent: u64,
    /// The stream's last sequence number.
    pub last: u64,
    /// Bytes sent and not yet read by it.
    pub unread: u64,
}

/// An operation on a table handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TableOp {
    /// Closes the handle.
    Close,
    /// Header information and counts.
    Info,
    /// Appends a record; answers its recno.
    Append(Vec<Value>),
    /// Reads a record.
    Read(u64),
    /// Reads a memo field's bytes.
    ReadMemo {
        /// Record.
        recno: u64,
        /// Field.
        field: String,
    },
    /// Replaces a record's values.
    Update {
        /// Record.
        recno: u64,
        /// New values.
        values: Vec<Value>,
    },
    /// Logically deletes a record.
    Delete(u64),
    /// Undeletes a record.
    Recall(u64),
    /// Whether a record is deleted.
    IsDeleted(u64),
    /// Locks a record; answers it as of the lock.
    Lock {
        /// Record.
        recno: u64,
        /// Wait at most this long (`u64::MAX`: the session's lock timeout).
        timeout_ms: u64,
    },
    /// Unlocks a record.
    Unlock(u64),
    /// Locks the whole table.
    LockFile {
        /// Wait at most this long.
        timeout_ms: u64,
    },
    /// Unlocks the table.
    UnlockFile,
    /// Writes the table's dirty pages.
    Flush,
    /// Every record, in recno order.
    Snapshot,
    /// Creates an index.
    CreateIndex(IndexDef),
    /// Drops an index.
    DropIndex(String),
    /// Verifies the table and its indexes.
    Check {
        /// Report at most this many problems.
        limit: u32,
    },
    /// Rebuilds the table from its data pages.
    Rebuild,
    /// Removes deleted records.
    Pack,
    /// Changes the fields.
    Alter(Schema),
    /// Chooses the order (None: physical).
    SetOrder(Option<String>),
    /// Restricts navigation to a key range of the current order.
    SetScope {
        /// Lower partial key.
        lower: Option<Vec<Value>>,
        /// Upper partial key.
        upper: Option<Vec<Value>>,
    },
    /// Removes the scope.
    ClearScope,
    /// Shows only records satisfying a condition.
    SetFilter(Option<Condition>),
    /// Moves the handle, then reads up to `ahead` further records in the same
    /// direction (the server's cursor ends on the last of them).
    Nav {
        /// The move.
        op: NavOp,
        /// Records to read ahead.
        ahead: u32,
    },
    /// The record the handle is on.
    Current,
    /// Only the handle's position (in the reply's `at`).
    Position,
    /// Exact count of a key range of the current order.
    CountRange {
        /// Lower partial key.
        lower: Option<Vec<Value>>,
        /// Upper partial key.
        upper: Option<Vec<Value>>,
    },
    /// Estimated count of a key range.
    EstimateRange {
        /// Lower partial key.
        lower: Option<Vec<Value>>,
        /// Upper partial key.
        upper: Option<Vec<Value>>,
    },
    /// Opens a range iterator and returns its first records.
    Range {
        /// Lower partial key.
        lower: Option<Vec<Value>>,
        /// Upper partial key.
        upper: Option<Vec<Value>>,
        /// Records in this reply.
        first: u32,
    },
    /// Reads, deletes or updates every record of a key range in one request.
    Batch(BatchRequest),
    /// Records visible through the current order (xBase `ordKeyCount()`).
    KeyCount,
    /// Seeks a key exactly and, when found, locks the record (session lock
    /// timeout) and returns it as of the lock.
    SeekLock(Vec<Value>),
    /// Replaces only the named fields of a record.
    UpdateFields {
        /// Record.
        recno: u64,
        /// Field names and their new values.
        fields: Vec<(String, Value)>,
    },
    /// Appends a record without moving the handle; answers its recno.
    Insert(Vec<Value>),
    /// The current record's position among them (xBase `ordKeyNo()`).
    KeyNo,
    /// Records after `after` in recno order, memo contents included, for a
    /// cache node's load ([`TableOut::Dump`]). Each batch reads under the
    /// table's lock; batches are not one snapshot.
    Dump {
        /// The last recno already read (0 at first).
        after: u64,
        /// At most this many records.
        max: u32,
    },
}

/// A move of a table handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NavOp {
    /// First record of the order.
    First,
    /// Last record.
    Last,
    /// Next record.
    Next,
    /// Previous record.
    Prev,
    /// Moves n records (negative: backwards).
    Skip(i64),
    /// Goes to a recno.
    Goto(u64),
    /// Exact seek.
    Seek(Vec<Value>),
    /// Soft seek (first key ≥ the given one).
    SeekSoft(Vec<Value>),
    /// Last record with the given key or prefix.
    SeekLast(Vec<Value>),
    /// Last record with the given key or prefix, or the last key before it.
    SeekLastSoft(Vec<Value>),
}

impl NavOp {
    /// True when read-ahead for this move goes forwards.
    pub fn forward(&self) -> bool {
        match self {
            NavOp::Last | NavOp::Prev | NavOp::SeekLast(_) | NavOp::SeekLastSoft(_) => false,
            NavOp::Skip(n) => *n >= 0,
            _ => true,
        }
    }
}

/// A key-range batch over the handle's current order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Lower partial key (inclusive), None for the start.
    pub lower: Option<Vec<Value>>,
    /// Upper partial key (inclusive), None for the end.
    pub upper: Option<Vec<Value>>,
    /// What to do with each record.
    pub action: BatchAction,
    /// At most this many records.
    pub limit: Option<u64>,
}

impl BatchRequest {
    /// Every record whose key starts with `prefix`.
    pub fn prefix(prefix: Vec<Value>, action: BatchAction) -> BatchRequest {
        BatchRequest {
            lower: Some(prefix.clone()),
            upper: Some(prefix),
            action,
            limit: None,
        }
    }
}

/// What a batch does to each record it selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BatchAction {
    /// Returns the records, locking each first when a timeout (ms) is given.
    Read {
        /// Lock each record, waiting at most this many milliseconds.
        lock_ms: Option<u64>,
    },
    /// Deletes them.
    Delete,
    /// Sets these fields on each.
    Update(Vec<(String, Value)>),
}

/// What a batch did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchOutcome {
    /// Records selected (and deleted or updated).
    pub count: u64,
    /// The records, for a read.
    pub records: Vec<raiz_engine::Record>,
}

/// Where a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Current recno (count + 1 on the phantom record).
    pub recno: u64,
    /// Before the first record.
    pub bof: bool,
    /// Past the last record.
    pub eof: bool,
    /// The last seek found its key (cleared by any other move).
    pub found: bool,
    /// On a real record, not the phantom.
    pub on_record: bool,
}

/// A record on the wire (memo fields hold references; bytes travel only when
/// read with [`TableOp::ReadMemo`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRecord {
    /// Recno.
    pub recno: u64,
    /// Logically deleted.
    pub deleted: bool,
    /// Values in schema order.
    pub values: Vec<Value>,
}

impl From<raiz_engine::Record> for WireRecord {
    fn from(r: raiz_engine::Record) -> Self {
        WireRecord {
            recno: r.recno(),
            deleted: r.is_deleted(),
            values: r.into_values(),
        }
    }
}

/// Replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Authenticated: the session's id.
    Welcome {
        /// Session id (as `raiz monitor` shows it).
        session: u64,
        /// Server version.
        server: String,
    },
    /// Done, nothing to return.
    Done,
    /// A yes/no answer.
    Bool(bool),
    /// A number.
    Count(u64),
    /// Table names.
    Tables(Vec<String>),
    /// A table handle.
    Opened {
        /// Handle id for [`Request::Table`].
        handle: u32,
        /// Table name.
        name: String,
        /// Its fields.
        schema: Schema,
        /// Where the new handle is.
        at: Position,
    },
    /// A savepoint.
    Savepoint(u64),
    /// A table operation's result and where the handle is afterwards.
    Table {
        /// The handle's position when the operation completed (before any
        /// read-ahead).
        at: Position,
        /// The result.
        out: TableOut,
    },
    /// More records of a range iterator (`done` when it is exhausted and was
    /// dropped).
    RangeMore {
        /// Records.
        records: Vec<WireRecord>,
        /// Exhausted.
        done: bool,
    },
    /// Sessions.
    Sessions(Vec<SessionInfo>),
    /// A table's permissions.
    Permissions(Permissions),
    /// A change stream starts: its entries follow with this reply's id.
    Subscribed {
        /// The server's epoch.
        epoch: u64,
        /// The stream carries the entries after this sequence number.
        start: u64,
        /// Tables whose changes up to `start` the node does not have (a new
        /// epoch, changes no longer in the server's window, a table newly
        /// followed): load them afresh, consistent with some number at or
        /// after `start`, and apply the stream's later entries.
        reload: Vec<String>,
    },
    /// Entries of a change stream: every entry for the node's tables with a
    /// sequence number in `after+1..=upto`, in order (none: a heartbeat).
    Changes {
        /// Where the previous message ended (a node checks it has that).
        after: u64,
        /// Where this one ends.
        upto: u64,
        /// The entries.
        entries: Vec<raiz_engine::feed::FeedEntry>,
        /// The server's clock (ms since the Unix epoch) when sent.
        now_ms: u64,
    },
    /// Subscribed nodes.
    Subscriptions(Vec<SubscriptionInfo>),
    /// What a backup did.
    Backup(raiz_engine::backup::BackupReport),
    /// A cluster member's view of its group.
    ClusterStatus(ClusterStatus),
}

/// The result of a table operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TableOut {
    /// Nothing to return.
    Done,
    /// A yes/no answer.
    Bool(bool),
    /// A number (recno, count).
    Count(u64),
    /// Table information.
    Info(Box<TableInfo>),
    /// One record.
    Record(WireRecord),
    /// Several records.
    Records(Vec<WireRecord>),
    /// Memo bytes.
    Memo(Vec<u8>),
    /// A check report.
    Check(CheckReport),
    /// A rewrite report.
    Rewrite(RewriteReport),
    /// A move: whether it found what it looked for, the record it landed on,
    /// the records read ahead, and — when the read-ahead ran off the end —
    /// the position the server's cursor ended at.
    Moved {
        /// The move's boolean result.
        found: bool,
        /// The record the handle is on, if any.
        current: Option<WireRecord>,
        /// Records after it in the move's direction.
        ahead: Vec<WireRecord>,
        /// Where the cursor stopped when read-ahead reached the end.
        end: Option<Position>,
    },
    /// A range iterator's first records.
    Range {
        /// Iterator id for [`Request::RangeNext`] (kept until
        /// [`Request::RangeClose`], so a client can resume it after its own
        /// writes).
        iter: Option<u32>,
        /// Records.
        records: Vec<WireRecord>,
        /// The range has no more records (for now).
        done: bool,
    },
    /// A batch's result.
    Batch {
        /// Records selected.
        count: u64,
        /// Records read.
        records: Vec<WireRecord>,
    },
    /// The record an append stored (the handle is on it).
    Appended(WireRecord),
    /// The record a [`TableOp::SeekLock`] found and locked (None: not found).
    Locked(Option<WireRecord>),
    /// Records of a [`TableOp::Dump`] (memos as `Memo::Data`).
    Dump {
        /// The records; recnos between them are reserved and empty.
        records: Vec<WireRecord>,
        /// The table's record count when read.
        count: u64,
        /// No record after these.
        done: bool,
    },
}

/// A session as `raiz monitor` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: u64,
    /// Authenticated user.
    pub user: String,
    /// Peer address.
    pub address: String,
    /// Client name from the hello.
    pub client: String,
    /// Open tables (one entry per handle).
    pub tables: Vec<String>,
    /// Locks held, described.
    pub locks: Vec<String>,
    /// Seconds since the open transaction began, if one is open.
    pub transaction_secs: Option<u64>,
    /// Seconds since the last request arrived.
    pub idle_secs: u64,
    /// A request is being executed.
    pub busy: bool,
    /// Requests served.
    pub requests: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// The lock the current request waits for, if it may be waiting.
    pub waiting_for: Option<String>,
    /// Sessions holding that lock.
    pub blocked_by: Vec<u64>,
}

/// Access rights of one class of users on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rights {
    /// Read records and navigate.
    pub read: bool,
    /// Append, update, recall, lock.
    pub write: bool,
    /// Delete records.
    pub delete: bool,
    /// Change the definition: indexes, alter, pack, rebuild, drop.
    pub define: bool,
}

impl Rights {
    /// Every right.
    pub const ALL: Rights = Rights {
        read: true,
        write: true,
        delete: true,
        define: true,
    };
    /// No right.
    pub const NONE: Rights = Rights {
        read: false,
        write: false,
        delete: false,
        define: false,
    };

    /// Parses `rwdx`-style text (`-` for a missing right): `rwd-`, `r---`.
    pub fn parse(s: &str) -> Option<Rights> {
        let b = s.as_bytes();
        if b.len() != 4 {
            return None;
        }
        let bit = |i: usize, c: u8| match b[i] {
            x if x == c => Some(true),
            b'-' => Some(false),
            _ => None,
        };
        Some(Rights {
            read: bit(0, b'r')?,
            write: bit(1, b'w')?,
            delete: bit(2, b'd')?,
            define: bit(3, b'x')?,
        })
    }
}

impl std::fmt::Display for Rights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.delete, 'd'),
            c(self.define, 'x')
        )
    }
}

/// A table's owner, group and the rights of owner, group members and others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Owning user.
    pub owner: String,
    /// Owning group.
    pub group: String,
    /// Rights of the owner.
    pub owner_rights: Rights,
    /// Rights of the group's members.
    pub group_rights: Rights,
    /// Rights of everyone else.
    pub other_rights: Rights,
}

impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} {}:{}:{}",
            self.owner, self.group, self.owner_rights, self.group_rights, self.other_rights
        )
    }
}

//! The embedded store: one redb file holding the series data (see `tsdb`), the state of
//! pending and firing alerts, the notification outbox, silences and history.
//!
//! Only this module imports redb. Keys use redb's fixed-width integer encodings (little-endian,
//! ordered numerically) and UTF-8 strings; records are a one-byte record version followed by
//! JSON, so a record written by an older sloguard is recognised, never misread. The file's
//! format version is written on creation and checked on every open.
//!
//! Every write is one redb transaction committed with `Durability::Immediate`: when a write
//! call returns, what it wrote survives `kill -9` and power loss.
//!
//! The daemon opens the file as redb's single writer; any number of other processes (`sloguard
//! query`) may open it read-only at the same time and see its commits.

pub mod bucket;
pub mod chunk;
pub mod distinct;
pub mod logs;
pub mod tsdb;
mod unsaved;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    TableDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::series::{Sample, SeriesKey};
use tsdb::{CHUNKS, DISTS, HEADS, Heads, ROLLUPS, SERIES, SERIES_IDS, WATERMARKS};
pub use tsdb::{CompactStats, Dropped, Kind, Layout, SeriesInfo, Snapshot, Tier};
pub use unsaved::UnsavedCounts;
use unsaved::{Change, Records, Unsaved};

/// The data file's name inside the data directory.
pub const FILE_NAME: &str = "sloguard.redb";
/// The layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Version 1 kept one row per point; it is converted on open.
const FORMAT_V1: u32 = 1;
/// The page cache redb may use. Queries read few pages, and most of the daemon's reads are of
/// the pages it has just written; a small cache keeps the daemon's memory small.
const CACHE_BYTES: usize = 16 << 20;
/// The version byte in front of every JSON record.
const RECORD_VERSION: u8 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Format version 1's points, one row each; read only to convert them.
const V1_POINTS: TableDefinition<(u64, i64), f64> = TableDefinition::new("points");
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const SILENCES: TableDefinition<u64, &[u8]> = TableDefinition::new("silences");
/// Alert history: (time ms, sequence) → event record.
const HISTORY: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("history");
/// Report name → the scheduled time (ms) of its last run.
const REPORT_RUNS: TableDefinition<&str, i64> = TableDefinition::new("report_runs");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data file {path} is in use by another process (is a sloguard daemon already running with this data directory?)"
    )]
    Locked { path: PathBuf },
    #[error("cannot open the data file {path}: {source}")]
    Open { path: PathBuf, source: redb::Error },
    #[error(
        "the data file {path} has format version {found}, but this sloguard reads version {FORMAT_VERSION}; run the sloguard release that wrote it, or move the file away to start afresh"
    )]
    UnknownVersion { path: PathBuf, found: u32 },
    #[error("the data file {path} has no valid format version; it was not written by sloguard")]
    NotOurs { path: PathBuf },
    #[error(
        "the data file {path} has format version 1; start the sloguard daemon once to convert it, then query it"
    )]
    NeedsUpgrade { path: PathBuf },
    #[error(
        "the data file {path} was not closed cleanly and no sloguard daemon has it open; start the daemon (or run this command again while it runs) so that it is recovered first"
    )]
    NeedsRecovery { path: PathBuf },
    #[error("data file error: {0}; if it repeats, stop sloguard and check the disk")]
    Db(#[from] redb::Error),
    #[error("a stored record cannot be read: {0}")]
    Record(String),
    #[error(
        "the data file {path} cannot be written ({reason}); alerts and notifications are kept in memory until it can"
    )]
    Unavailable { path: PathBuf, reason: String },
}

impl StoreError {
    /// The reason, when this error means the file cannot be written or read (a full disk, an
    /// I/O error): the handle has to be opened again before it can.
    fn io_reason(&self) -> Option<String> {
        match self {
            StoreError::Db(redb::Error::Io(e)) => Some(e.to_string()),
            StoreError::Db(redb::Error::PreviousIo | redb::Error::DatabaseClosed) => {
                Some("an earlier write failed".into())
            }
            _ => None,
        }
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

/// Records by id, each decoded on its own: a row that cannot be read is its reason.
pub type Rows<T> = Vec<(u64, Result<T, StoreError>)>;

/// Encodes a record as its version byte and JSON.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Serialising plain data structs to a Vec cannot fail.
    serde_json::to_writer(&mut out, value).unwrap_or_default();
    out
}

/// Decodes a record written by [`encode`]; any bytes give a record or an error, never a
/// panic (the fuzz target `records` holds it to that).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| StoreError::Record(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Record(format!("unknown record version {v}"))),
        None => Err(StoreError::Record("empty record".into())),
    }
}

/// What one commit writes: points, observations, alert state changes, outbox entries and
/// history events, atomically.
#[derive(Default)]
pub struct Batch<'a> {
    /// Points of gauge series, each newer than the last stored point of its series.
    pub samples: &'a [Sample],
    /// Observations of distribution series (one request's latency each), in any order.
    pub observations: &'a [Sample],
    /// Interval summaries of distribution series, merged into the stored intervals.
    pub events: &'a [(SeriesKey, bucket::Bucket)],
    /// Log positions to set (`Some`) or forget (`None`), by (source, device, inode).
    pub checkpoints: Vec<(logs::CheckpointKey, Option<Vec<u8>>)>,
    /// Error types seen by log sources, added to the stored counts.
    pub errors: &'a [logs::ErrorSeen],
    /// Alert states to insert or replace, by fingerprint.
    pub put_alerts: Vec<(String, Vec<u8>)>,
    /// Alert states to delete, by fingerprint.
    pub delete_alerts: Vec<String>,
    /// Outbox entries to append.
    pub outbox: Vec<Vec<u8>>,
    /// History events to append, with their times.
    pub history: Vec<(i64, Vec<u8>)>,
    /// Reports run: name → the scheduled time of the run.
    pub report_runs: Vec<(String, i64)>,
    /// Error types kept per log source, where not `logs::MAX_ERROR_TYPES`.
    pub max_error_types: Vec<(String, usize)>,
    /// Sketches of the distinct values of labels, merged into the stored hours.
    pub distinct: &'a [distinct::DistinctSeen],
}

impl Batch<'_> {
    pub fn put_alert<T: Serialize>(&mut self, fingerprint: String, state: &T) {
        self.put_alerts.push((fingerprint, encode(state)));
    }
    pub fn push_outbox<T: Serialize>(&mut self, entry: &T) {
        self.outbox.push(encode(entry));
    }
    pub fn push_history<T: Serialize>(&mut self, at_ms: i64, event: &T) {
        self.history.push((at_ms, encode(event)));
    }
    /// Whether the batch carries series data, log positions or error types (anything besides
    /// records).
    pub fn carries_data(&self) -> bool {
        !(self.samples.is_empty()
            && self.observations.is_empty()
            && self.events.is_empty()
            && self.checkpoints.is_empty()
            && self.errors.is_empty()
            && self.distinct.is_empty())
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
            && self.observations.is_empty()
            && self.events.is_empty()
            && self.checkpoints.is_empty()
            && self.errors.is_empty()
            && self.put_alerts.is_empty()
            && self.delete_alerts.is_empty()
            && self.outbox.is_empty()
    }
}

/// The next sequence number of a history event (it orders events of the same millisecond).
fn next_history_seq(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    Ok(match meta.get("next_history_seq")? {
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_le_bytes)
            .unwrap_or(0),
        None => 0,
    })
}

/// Reads the format version; `None` for a new, empty file.
fn format_version(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
) -> Result<Option<u32>, StoreError> {
    match meta.get("format_version")? {
        None => Ok(None),
        Some(v) => {
            let arr: [u8; 4] = v.value().try_into().map_err(|_| StoreError::NotOurs {
                path: path.to_path_buf(),
            })?;
            Ok(Some(u32::from_le_bytes(arr)))
        }
    }
}

fn read_layout(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Layout, StoreError> {
    let Some(v) = meta.get("layout")? else {
        return Ok(Layout::default());
    };
    let layout: Layout = decode(v.value())?;
    let mut previous = layout.distribution_interval_ms;
    let mut sane = layout.raw_retention_ms > 0 && previous > 0;
    for tier in &layout.tiers {
        sane &= tier.step_ms > previous && tier.step_ms % previous == 0 && tier.retention_ms > 0;
        previous = tier.step_ms.max(1);
    }
    if sane {
        Ok(layout)
    } else {
        Err(StoreError::Record(format!(
            "the recorded retention and tiers are not valid: {layout:?}"
        )))
    }
}

/// Writes the alert, outbox and history parts of `batch`; returns the new outbox ids.
/// Creates the data directory (0700) and an empty data file (0600) where they do not exist,
/// whatever the umask: the file holds alert texts, client data and notification payloads.
/// Existing ones keep their modes (an operator's or a package's choice).
fn create_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(FILE_NAME))
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How every handle opens the file: a small page cache, one writer beside any readers.
fn builder() -> Builder {
    let mut b = Builder::new();
    b.set_cache_size(CACHE_BYTES)
        .set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    let path = path.to_path_buf();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        redb::DatabaseError::RepairAborted => StoreError::NeedsRecovery { path },
        e => StoreError::Open {
            path,
            source: e.into(),
        },
    }
}

/// History events since `since_ms`, oldest or newest first, at most `limit`.
fn history_in<T: DeserializeOwned>(
    read: &redb::ReadTransaction,
    since_ms: i64,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<T>, StoreError> {
    history_raw(read, since_ms, limit, newest_first)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

/// A history event as stored: (time, sequence number) and its record.
type HistoryRow = ((i64, u64), Vec<u8>);

/// History events at or after `since_ms` as stored, with their keys, at most `limit`.
fn history_raw(
    read: &redb::ReadTransaction,
    since_ms: i64,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<HistoryRow>, StoreError> {
    let table = read.open_table(HISTORY)?;
    let range = table.range((since_ms, 0u64)..)?;
    let entries: Box<dyn Iterator<Item = _>> = if newest_first {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    let mut out = Vec::new();
    for entry in entries {
        let (k, v) = entry?;
        out.push((k.value(), v.value().to_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Report runs; none in a file written before reports existed.
fn report_runs_in(
    read: &redb::ReadTransaction,
) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
    let mut out = std::collections::BTreeMap::new();
    let table = match read.open_table(REPORT_RUNS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.insert(k.value().to_string(), v.value());
    }
    Ok(out)
}

/// A read-only handle for another process (`sloguard query`): it shares the file with a
/// running daemon and sees its commits.
pub struct ReadOnlyStore {
    db: ReadOnlyDatabase,
    layout: Layout,
}

impl ReadOnlyStore {
    pub fn open(dir: &Path) -> Result<ReadOnlyStore, StoreError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Err(StoreError::Open {
                path,
                source: redb::Error::Io(std::io::Error::from(std::io::ErrorKind::NotFound)),
            });
        }
        let db = builder()
            .open_read_only(&path)
            .map_err(|e| open_error(&path, e))?;
        let read = db.begin_read()?;
        let meta = read.open_table(META)?;
        match format_version(&meta, &path)? {
            Some(FORMAT_VERSION) => {}
            Some(FORMAT_V1) => return Err(StoreError::NeedsUpgrade { path }),
            Some(found) => return Err(StoreError::UnknownVersion { path, found }),
            None => return Err(StoreError::NotOurs { path }),
        }
        let layout = read_layout(&meta)?;
        drop(meta);
        drop(read);
        Ok(ReadOnlyStore { db, layout })
    }

    /// A consistent view of the series data as of the writer's last commit.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let layout = match txn.open_table(META) {
            Ok(meta) => read_layout(&meta)?,
            Err(_) => self.layout.clone(),
        };
        Snapshot::new(&txn, None, layout)
    }

    /// The error types of log sources, as of the last commit.
    pub fn errors(&self) -> Result<logs::ErrorSnapshot, StoreError> {
        Ok(logs::ErrorSnapshot(self.db.begin_read()?))
    }

    /// Alert history since `since_ms`, oldest first, at most `limit` events.
    pub fn history<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        history_in(&self.db.begin_read()?, since_ms, limit, false)
    }

    /// The newest `limit` history events since `since_ms`, newest first.
    pub fn history_newest<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        history_in(&self.db.begin_read()?, since_ms, limit, true)
    }

    /// When each report last ran.
    pub fn report_runs(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        report_runs_in(&self.db.begin_read()?)
    }
}

/// What the commands read with: the file shared with a running daemon, or, when no daemon
/// holds it and it needs recovery or conversion, the file opened for writing (which does it).
pub enum Reader {
    Shared(ReadOnlyStore),
    Own(Box<Store>),
}

impl Reader {
    pub fn open(dir: &Path) -> Result<Reader, StoreError> {
        match ReadOnlyStore::open(dir) {
            Ok(store) => Ok(Reader::Shared(store)),
            Err(StoreError::NeedsRecovery { .. }) | Err(StoreError::NeedsUpgrade { .. }) => {
                Ok(Reader::Own(Box::new(Store::open(dir)?)))
            }
            Err(e) => Err(e),
        }
    }

    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        match self {
            Reader::Shared(s) => s.snapshot(),
            Reader::Own(s) => s.snapshot(),
        }
    }

    pub fn errors(&self) -> Result<logs::ErrorSnapshot, StoreError> {
        match self {
            Reader::Shared(s) => s.errors(),
            Reader::Own(s) => s.errors(),
        }
    }

    /// The newest `limit` history events since `since_ms`, newest first.
    pub fn history_newest<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Reader::Shared(s) => s.history_newest(since_ms, limit),
            Reader::Own(s) => s.history_newest(since_ms, limit),
        }
    }
}

/// The first wait before the file is opened again after an I/O error; it doubles with each
/// failure, up to [`REOPEN_MAX`].
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// Why the file cannot be written, since when, and when to open it again.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    since_ms: i64,
    retry_at: Instant,
    backoff: Duration,
}

/// The store's view of its file, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteState {
    /// Why the file cannot be written, and since when (ms); `None` while it can.
    pub failing: Option<(String, i64)>,
    /// Operations that failed with an I/O error since the store was opened.
    pub errors: u64,
    /// What is kept in memory meanwhile.
    pub unsaved: UnsavedCounts,
}

/// A handle to the data file; cheap to share behind an `Arc`.
///
/// After an I/O error (a full disk) redb refuses every later operation on the handle, so the
/// store drops it and opens the file again, after a wait that doubles from [`REOPEN_FIRST`] to
/// [`REOPEN_MAX`]. Meanwhile record changes (alert states, the outbox, history) are kept in
/// memory (`unsaved`) and read with the file's; series data is refused, and its writer keeps it.
pub struct Store {
    /// The open handle; `None` after an I/O error until it is opened again.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    heads: Mutex<Heads>,
    unsaved: Mutex<Unsaved>,
    failure: Mutex<Option<Failure>>,
    /// Held by the one thread opening the file again.
    reopening: Mutex<()>,
    io_errors: AtomicU64,
    /// `unsaved`'s counts, readable while a commit holds it.
    unsaved_records: AtomicU64,
    records_lost: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Opens (or creates) the file at `path` as the single writer, repairing it after an
/// unclean stop.
fn open_writer(path: &Path) -> Result<Database, StoreError> {
    let mut b = builder();
    // After an unclean stop the file is repaired first (its whole length is read).
    b.set_repair_callback(|session| {
        tracing::warn!(
            progress = format!("{:.0} %", session.progress() * 100.0),
            "Repairing the data file: it was not closed cleanly"
        );
    });
    b.create(path).map_err(|e| open_error(path, e))
}

/// The id counters kept in the file.
fn read_counters(db: &Database) -> Result<(u64, u64), StoreError> {
    let read = db.begin_read()?;
    let meta = read.open_table(META)?;
    let outbox = match meta.get("next_outbox_id")? {
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_le_bytes)
            .unwrap_or(1),
        None => 1,
    };
    Ok((outbox.max(1), next_history_seq(&meta)?))
}

impl Store {
    /// Opens (or creates) `dir/sloguard.redb`, checking its format version and converting a
    /// version 1 file.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = open_writer(&path)?;
        let txn = db.begin_write()?;
        let mut convert = false;
        {
            let mut meta = txn.open_table(META)?;
            match format_version(&meta, &path)? {
                None => {
                    meta.insert("format_version", FORMAT_VERSION.to_le_bytes().as_slice())?;
                }
                Some(FORMAT_VERSION) => {}
                Some(FORMAT_V1) => convert = true,
                Some(found) => return Err(StoreError::UnknownVersion { path, found }),
            }
            // Create every table so that readers never meet a missing one.
            txn.open_table(SERIES_IDS)?;
            txn.open_table(SERIES)?;
            txn.open_table(HEADS)?;
            txn.open_table(CHUNKS)?;
            txn.open_table(DISTS)?;
            txn.open_table(ROLLUPS)?;
            txn.open_table(WATERMARKS)?;
            txn.open_table(ALERTS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(DEAD_LETTERS)?;
            txn.open_table(SILENCES)?;
            txn.open_table(HISTORY)?;
            txn.open_table(REPORT_RUNS)?;
            logs::create_tables(&txn)?;
            distinct::create_table(&txn)?;
        }
        txn.commit()?;
        let heads = Heads::load(&db.begin_read()?)?;
        let (next_outbox_id, next_history_seq) = read_counters(&db)?;
        let store = Store {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            heads: Mutex::new(heads),
            unsaved: Mutex::new(Unsaved::new(next_outbox_id, next_history_seq)),
            failure: Mutex::new(None),
            reopening: Mutex::new(()),
            io_errors: AtomicU64::new(0),
            unsaved_records: AtomicU64::new(0),
            records_lost: AtomicU64::new(0),
        };
        if convert {
            store.convert_v1()?;
        }
        {
            let read = store.db()?.begin_read()?;
            let layout = read_layout(&read.open_table(META)?)?;
            store.lock().layout = layout;
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Heads> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_unsaved(&self) -> std::sync::MutexGuard<'_, Unsaved> {
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of what is kept in memory, taken before the file is read: a commit in between
    /// only puts the same changes in the file, so the two read together miss nothing.
    /// Readers do not wait for commits; the copy is empty (and free) but after an I/O error.
    fn kept(&self) -> Unsaved {
        self.lock_unsaved().copy()
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open handle, or the file opened again when an I/O error closed it and its wait is
    /// over; `Unavailable` meanwhile.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(db) = self.db.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        self.reopen()
    }

    fn unavailable(&self) -> StoreError {
        self.unavailable_locked(&self.lock_failure())
    }

    fn reopen(&self) -> Result<Arc<Database>, StoreError> {
        let due = self
            .lock_failure()
            .as_ref()
            .is_none_or(|f| Instant::now() >= f.retry_at);
        if !due {
            return Err(self.unavailable());
        }
        // One thread opens; the others are told the file is unavailable rather than wait
        // (a repair reads the whole file).
        let Ok(_opening) = self.reopening.try_lock() else {
            return Err(self.unavailable());
        };
        if let Some(db) = self.db.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        // The id counters need no reading: they only grow in memory, and the file has the
        // values of its last commit.
        match open_writer(&self.path) {
            Ok(db) => {
                tracing::info!(path = %self.path.display(), "Opened the data file again after an I/O error");
                let db = Arc::new(db);
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db.clone());
                Ok(db)
            }
            Err(e) => {
                let reason = match &e {
                    StoreError::Open { source, .. } => source.to_string(),
                    e => e.io_reason().unwrap_or_else(|| e.to_string()),
                };
                let mut failure = self.lock_failure();
                let f = failure.get_or_insert_with(|| Failure {
                    reason: reason.clone(),
                    since_ms: crate::clock::now_ms(),
                    retry_at: Instant::now(),
                    backoff: REOPEN_FIRST,
                });
                f.backoff = (f.backoff * 2).min(REOPEN_MAX);
                f.retry_at = Instant::now() + f.backoff;
                tracing::warn!(
                    path = %self.path.display(),
                    error = %reason,
                    retry_in_s = f.backoff.as_secs(),
                    "Cannot open the data file again"
                );
                Err(self.unavailable_locked(&failure))
            }
        }
    }

    fn unavailable_locked(&self, failure: &Option<Failure>) -> StoreError {
        StoreError::Unavailable {
            path: self.path.clone(),
            reason: failure
                .as_ref()
                .map(|f| f.reason.clone())
                .unwrap_or_else(|| "it is being opened again".into()),
        }
    }

    /// Notes the outcome of an operation: an I/O error closes the handle (it is opened again
    /// after a wait); a commit that succeeded ends a failure.
    fn note<T>(&self, result: &Result<T, StoreError>, committed: bool) {
        match result {
            Ok(_) if committed => {
                if let Some(f) = self.lock_failure().take() {
                    tracing::info!(
                        path = %self.path.display(),
                        after = %crate::format::format_span(crate::clock::now_ms() - f.since_ms),
                        "The data file can be written again"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                let Some(reason) = e.io_reason() else { return };
                self.io_errors.fetch_add(1, Ordering::Relaxed);
                self.db.write().unwrap_or_else(|p| p.into_inner()).take();
                let mut failure = self.lock_failure();
                match failure.as_mut() {
                    // A later error after opening again: wait longer; the first reason stays
                    // unless this one says more.
                    Some(f) => {
                        if matches!(e, StoreError::Db(redb::Error::Io(_))) {
                            f.reason = reason;
                        }
                        f.backoff = (f.backoff * 2).min(REOPEN_MAX);
                        f.retry_at = Instant::now() + f.backoff;
                    }
                    None => {
                        tracing::error!(
                            path = %self.path.display(),
                            error = %reason,
                            "Cannot write the data file; keeping alerts and notifications in memory and opening it again shortly"
                        );
                        *failure = Some(Failure {
                            reason,
                            since_ms: crate::clock::now_ms(),
                            retry_at: Instant::now() + REOPEN_FIRST,
                            backoff: REOPEN_FIRST,
                        });
                    }
                }
            }
        }
    }

    /// Runs a read on the handle.
    fn read<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = self.db().and_then(|db| f(&db));
        self.note(&result, false);
        result
    }

    /// Runs a write on the handle: `f` commits.
    fn commit<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.db().and_then(|db| f(&db));
        self.note(&result, true);
        result
    }

    /// Whether the file can be written, what failed, and what is kept in memory meanwhile.
    pub fn write_state(&self) -> WriteState {
        WriteState {
            failing: self
                .lock_failure()
                .as_ref()
                .map(|f| (f.reason.clone(), f.since_ms)),
            errors: self.io_errors.load(Ordering::Relaxed),
            unsaved: UnsavedCounts {
                records: self.unsaved_records.load(Ordering::Relaxed),
                lost: self.records_lost.load(Ordering::Relaxed),
            },
        }
    }

    /// Moves format version 1's one-row-per-point table into chunks, in one transaction.
    fn convert_v1(&self) -> Result<(), StoreError> {
        let mut heads = self.lock();
        let txn = self.db()?.begin_write()?;
        let mut samples = Vec::new();
        {
            let points = txn.open_table(V1_POINTS)?;
            let by_id: std::collections::HashMap<u64, SeriesKey> =
                heads.infos.iter().map(|i| (i.id, i.key.clone())).collect();
            for entry in points.iter()? {
                let (k, v) = entry?;
                let (id, ts_ms) = k.value();
                if let Some(series) = by_id.get(&id) {
                    samples.push(Sample {
                        series: series.clone(),
                        ts_ms,
                        value: v.value(),
                        note: None,
                    });
                }
            }
        }
        let touched = heads.write(&txn, &samples, &[], &[], crate::clock::now_ms())?;
        txn.delete_table(V1_POINTS)?;
        txn.open_table(META)?
            .insert("format_version", FORMAT_VERSION.to_le_bytes().as_slice())?;
        if let Err(e) = txn.commit() {
            heads.forget(&touched);
            return Err(e.into());
        }
        tracing::info!(
            points = samples.len(),
            path = %self.path.display(),
            "Converted the data file to format version 2"
        );
        Ok(())
    }

    /// Rewrites the file without its free pages (redb's compaction), so that it takes no more
    /// disk than its data needs; for offline use, as it needs the only handle.
    pub fn shrink(&mut self) -> Result<bool, StoreError> {
        let slot = self.db.get_mut().unwrap_or_else(|p| p.into_inner());
        let Some(db) = slot.as_mut().and_then(Arc::get_mut) else {
            return Err(StoreError::Unavailable {
                path: self.path.clone(),
                reason: "the file is in use".into(),
            });
        };
        db.compact()
            .map_err(|e| StoreError::Db(redb::Error::from(e)))
    }

    /// The path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets retention and resolutions (from the configuration); recorded in the file for
    /// readers in other processes.
    pub fn set_layout(&self, layout: Layout) -> Result<(), StoreError> {
        let mut heads = self.lock();
        if heads.layout == layout {
            return Ok(());
        }
        self.commit(|db| {
            let txn = db.begin_write()?;
            txn.open_table(META)?
                .insert("layout", encode(&layout).as_slice())?;
            txn.commit()?;
            Ok(())
        })?;
        heads.layout = layout;
        Ok(())
    }

    /// The layout in effect.
    pub fn layout(&self) -> Layout {
        self.lock().layout.clone()
    }

    /// What writes have not kept since the store was opened.
    pub fn dropped(&self) -> Dropped {
        self.lock().dropped
    }

    /// Commits `batch` in one durable transaction and returns the ids of its outbox entries.
    ///
    /// When the file cannot be written, the batch's records (alert states, outbox entries,
    /// history, report runs) are kept in memory and committed by the next write that succeeds;
    /// its series data, log positions and error types are not kept: a batch that carries any
    /// is answered `Unavailable`, and its writer keeps that data to write it again. A batch of
    /// records only is answered as written.
    pub fn write(&self, batch: &Batch<'_>) -> Result<Vec<u64>, StoreError> {
        let mut heads = self.lock();
        let mut unsaved = self.lock_unsaved();
        let mut records = Records {
            alerts: batch
                .delete_alerts
                .iter()
                .map(|fp| (fp.clone(), None))
                .chain(
                    batch
                        .put_alerts
                        .iter()
                        .map(|(fp, rec)| (fp.clone(), Some(rec.clone()))),
                )
                .collect(),
            report_runs: batch.report_runs.clone(),
            ..Records::default()
        };
        let mut ids = Vec::with_capacity(batch.outbox.len());
        for rec in &batch.outbox {
            let id = unsaved.outbox_id();
            ids.push(id);
            records.outbox.push((id, Change::Put(rec.clone())));
        }
        for (at, rec) in &batch.history {
            records
                .history
                .push((unsaved.history_key(*at), rec.clone()));
        }
        if heads.stale {
            // Read what a failed write left out of the cache; without the file, no data.
            if let Err(e) = self.read(|db| self.reload_heads(db, &mut heads)) {
                return self
                    .keep_records(&mut unsaved, records, batch, e)
                    .map(|()| ids);
            }
        }
        let result = self.commit(|db| self.write_locked(db, &mut heads, &unsaved, &records, batch));
        match result {
            Ok(()) => {
                unsaved.clear();
                self.publish(&unsaved);
                Ok(ids)
            }
            Err(e) => {
                // The transaction was dropped uncommitted: what the cache took from it (open
                // chunks, new series) is not in the file. Read it all again, or make sure the
                // next write does.
                heads.stale = true;
                if e.io_reason().is_none() {
                    let _ = self.read(|db| self.reload_heads(db, &mut heads));
                }
                self.keep_records(&mut unsaved, records, batch, e)
                    .map(|()| ids)
            }
        }
    }

    /// After a failed write: keeps its records in memory when the file cannot be written (and
    /// answers `Unavailable` if the batch carried data); passes any other error on.
    fn keep_records(
        &self,
        unsaved: &mut Unsaved,
        records: Records,
        batch: &Batch<'_>,
        e: StoreError,
    ) -> Result<(), StoreError> {
        if !matches!(e, StoreError::Unavailable { .. }) && e.io_reason().is_none() {
            return Err(e);
        }
        unsaved.keep(records);
        self.publish(unsaved);
        if batch.carries_data() {
            Err(self.unavailable())
        } else {
            Ok(())
        }
    }

    /// Makes what is kept in memory readable without the lock (which a commit holds).
    fn publish(&self, unsaved: &Unsaved) {
        let counts = unsaved.counts();
        self.unsaved_records
            .store(counts.records, Ordering::Relaxed);
        self.records_lost.store(counts.lost, Ordering::Relaxed);
    }

    /// Applies record changes: committed with whatever is kept in memory, or kept in memory
    /// with it when the file cannot be written.
    fn change(&self, records: Records) -> Result<(), StoreError> {
        let mut unsaved = self.lock_unsaved();
        let result = self.commit(|db| {
            let txn = db.begin_write()?;
            unsaved.write(&txn, &records)?;
            txn.commit()?;
            Ok(())
        });
        match result {
            Ok(()) => {
                unsaved.clear();
                self.publish(&unsaved);
                Ok(())
            }
            Err(e) => self.keep_records(&mut unsaved, records, &Batch::default(), e),
        }
    }

    fn reload_heads(&self, db: &Database, heads: &mut Heads) -> Result<(), StoreError> {
        heads.stale = true;
        let read = db.begin_read()?;
        let mut fresh = Heads::load(&read)?;
        fresh.layout = heads.layout.clone();
        fresh.dropped = heads.dropped;
        *heads = fresh;
        Ok(())
    }

    fn write_locked(
        &self,
        db: &Database,
        heads: &mut Heads,
        unsaved: &Unsaved,
        records: &Records,
        batch: &Batch<'_>,
    ) -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        heads.write(
            &txn,
            batch.samples,
            batch.observations,
            batch.events,
            crate::clock::now_ms(),
        )?;
        logs::write(&txn, batch)?;
        distinct::write(&txn, batch.distinct)?;
        unsaved.write(&txn, records)?;
        txn.commit()?;
        Ok(())
    }

    /// Commits what is kept in memory, if anything, or, while the file cannot be written,
    /// tries it again when its wait is over; whether the file can be written now.
    pub fn flush(&self) -> bool {
        let failing = self.lock_failure().is_some();
        if failing || self.unsaved_records.load(Ordering::Relaxed) > 0 {
            let _ = self.change(Records::default());
        }
        self.lock_failure().is_none()
    }

    /// A consistent view of the series data as of the last commit.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let heads = self.lock();
        self.read(|db| {
            let txn = db.begin_read()?;
            Snapshot::new(&txn, Some(heads.infos.clone()), heads.layout.clone())
        })
    }

    /// Rolls up closed intervals and deletes what is past retention, a few series per
    /// transaction so that writers never wait long. `now_ms` is the time to measure ages from.
    pub fn compact(&self, now_ms: i64) -> Result<CompactStats, StoreError> {
        let snap = self.snapshot()?;
        let mut stats = CompactStats::default();
        for group in snap.series().chunks(tsdb::COMPACT_GROUP_SIZE) {
            self.commit(|db| {
                let txn = db.begin_write()?;
                tsdb::compact_group(&txn, &snap, group, now_ms, &mut stats)?;
                txn.commit()?;
                Ok(())
            })?;
        }
        // A gauge series that stopped long ago: its open chunk is past retention too.
        let cutoff = now_ms - snap.layout().raw_retention_ms;
        drop(snap);
        let mut heads = self.lock();
        let stale = self.commit(|db| {
            let txn = db.begin_write()?;
            let mut stale = Vec::new();
            {
                let mut table = txn.open_table(HEADS)?;
                let mut old = Vec::new();
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    let last = chunk::decode(v.value())
                        .map_err(|e| StoreError::Record(e.to_string()))?
                        .last()
                        .map(|p| p.0);
                    if last.is_some_and(|t| t < cutoff) {
                        old.push(k.value());
                    }
                }
                for id in old {
                    table.remove(id)?;
                    stale.push(id);
                }
            }
            txn.commit()?;
            Ok(stale)
        })?;
        heads.forget(&stale);
        stats.heads_removed = stale.len() as u64;
        Ok(stats)
    }

    /// Appends samples (one durable commit).
    pub fn append(&self, samples: &[Sample]) -> Result<(), StoreError> {
        self.write(&Batch {
            samples,
            ..Batch::default()
        })
        .map(|_| ())
    }

    /// Every known series.
    pub fn series(&self) -> Vec<SeriesKey> {
        let mut out: Vec<SeriesKey> = self.lock().infos.iter().map(|i| i.key.clone()).collect();
        out.sort();
        out
    }

    /// The points of gauge series `key` with `from_ms <= t < to_ms`, oldest first.
    pub fn points(
        &self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let snap = self.snapshot()?;
        match snap.series().iter().find(|i| &i.key == key) {
            Some(info) => snap.points(info.id, from_ms, to_ms),
            None => Ok(Vec::new()),
        }
    }

    /// Deletes history events older than `before_ms`; returns how many were removed.
    pub fn prune_history(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.commit(|db| {
            let txn = db.begin_write()?;
            let mut removed = 0u64;
            {
                let mut history = txn.open_table(HISTORY)?;
                history.retain_in((i64::MIN, 0u64)..(before_ms, 0u64), |_, _| {
                    removed += 1;
                    false
                })?;
            }
            txn.commit()?;
            Ok(removed)
        })
    }

    /// Deletes the distinct-value sketches of hours before `before_ms`, in small
    /// transactions; returns how many.
    pub fn prune_distinct(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.commit(|db| distinct::prune(db, before_ms))
    }

    /// Deletes error counts and error types older than `before_ms`; returns how many.
    /// A thousand rows per transaction, so that a large prune never holds the writer long.
    pub fn prune_errors(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let found = self.read(|db| logs::expired(&db.begin_read()?, before_ms))?;
            let Some(expired) = found else {
                return Ok(removed);
            };
            let n = self.commit(|db| {
                let txn = db.begin_write()?;
                let n = logs::prune(&txn, &expired)?;
                txn.commit()?;
                Ok(n)
            })?;
            removed += n;
            if n == 0 {
                // Found but already gone (a concurrent prune): nothing more to do now.
                return Ok(removed);
            }
        }
    }

    /// Forgets the file positions of log sources other than `keep` (sources no longer
    /// configured); returns how many were deleted.
    pub fn forget_log_sources(&self, keep: &[String]) -> Result<u64, StoreError> {
        self.commit(|db| {
            let txn = db.begin_write()?;
            let removed = logs::forget_sources(&txn, keep)?;
            txn.commit()?;
            Ok(removed)
        })
    }

    /// The stored positions of log source `source`'s files: ((device, inode), record).
    pub fn log_checkpoints<T: DeserializeOwned>(
        &self,
        source: &str,
    ) -> Result<Vec<(logs::FileKey, T)>, StoreError> {
        let rows = self.read(|db| logs::checkpoints(&db.begin_read()?, source))?;
        let mut out = Vec::new();
        for (k, v) in rows {
            match decode(&v) {
                Ok(cp) => out.push((k, cp)),
                // Without it the file is read as a new one; better than not at all.
                Err(e) => tracing::warn!(
                    source,
                    device = k.0,
                    inode = k.1,
                    error = %e,
                    "A stored log position cannot be read; skipping it"
                ),
            }
        }
        Ok(out)
    }

    /// The error types of log sources, as of the last commit.
    pub fn errors(&self) -> Result<logs::ErrorSnapshot, StoreError> {
        self.read(|db| Ok(logs::ErrorSnapshot(db.begin_read()?)))
    }

    /// Every alert state: the file's, with the changes kept in memory applied.
    pub fn alerts<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let unsaved = self.kept();
        let file = self.read(|db| {
            let read = db.begin_read()?;
            let table = read.open_table(ALERTS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        unsaved
            .alerts_view(file)
            .iter()
            .map(|bytes| decode(bytes))
            .collect()
    }

    /// Every pending outbox entry, oldest first.
    pub fn outbox<T: DeserializeOwned>(&self) -> Result<Vec<(u64, T)>, StoreError> {
        self.outbox_rows()?
            .into_iter()
            .map(|(id, row)| row.map(|t| (id, t)))
            .collect()
    }

    /// Every outbox entry in order, each decoded on its own: a row that cannot be read (one
    /// written by a newer version, say) is an `Err` with the reason, and stops no other.
    /// While the file cannot be read, the entries kept in memory (a page that fired since)
    /// are still answered.
    pub fn outbox_rows<T: DeserializeOwned>(&self) -> Result<Rows<T>, StoreError> {
        let unsaved = self.kept();
        let file = match self.read(|db| raw_rows(db, OUTBOX)) {
            Ok(rows) => Some(rows),
            Err(e) if unsaved.is_empty() => return Err(e),
            Err(_) => None,
        };
        Ok(unsaved
            .outbox_view(file)
            .into_iter()
            .map(|(id, bytes)| (id, decode(&bytes)))
            .collect())
    }

    /// Moves outbox row `id` to the dead letters as it is (it cannot be read); whether it
    /// was still there.
    pub fn outbox_bury_raw(&self, id: u64) -> Result<bool, StoreError> {
        let there = self.read(|db| Ok(db.begin_read()?.open_table(OUTBOX)?.get(id)?.is_some()))?;
        if there {
            self.change(Records {
                outbox: vec![(id, Change::BuryRaw)],
                ..Records::default()
            })?;
        }
        Ok(there)
    }

    /// How many entries the outbox holds, without reading them (a report's entry carries
    /// its charts).
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        let unsaved = self.kept();
        if !unsaved.is_empty() {
            let ids = match self.read(|db| raw_ids(db, OUTBOX)) {
                Ok(ids) => Some(ids.into_iter().map(|id| (id, Vec::new())).collect()),
                Err(_) => None,
            };
            return Ok(unsaved.outbox_view(ids).len() as u64);
        }
        self.read(|db| {
            let read = db.begin_read()?;
            Ok(redb::ReadableTableMetadata::len(&read.open_table(OUTBOX)?)?)
        })
    }

    /// Replaces outbox entry `id` (after a failed attempt).
    pub fn outbox_update<T: Serialize>(&self, id: u64, entry: &T) -> Result<(), StoreError> {
        self.change(Records {
            outbox: vec![(id, Change::Put(encode(entry)))],
            ..Records::default()
        })
    }

    /// Replaces entry `id` and removes `others` in one transaction: several entries become
    /// one grouped message.
    pub fn outbox_merge<T: Serialize>(
        &self,
        id: u64,
        entry: &T,
        others: &[u64],
    ) -> Result<(), StoreError> {
        let mut outbox = vec![(id, Change::Put(encode(entry)))];
        outbox.extend(others.iter().map(|o| (*o, Change::Remove)));
        self.change(Records {
            outbox,
            ..Records::default()
        })
    }

    /// Removes a delivered outbox entry.
    pub fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        self.change(Records {
            outbox: vec![(id, Change::Remove)],
            ..Records::default()
        })
    }

    /// Moves an outbox entry that cannot be delivered to the dead letters, kept for the operator.
    pub fn outbox_bury<T: Serialize>(&self, id: u64, entry: &T) -> Result<(), StoreError> {
        self.change(Records {
            outbox: vec![(id, Change::Bury(encode(entry)))],
            ..Records::default()
        })
    }

    /// Stores a silence under a new id, which it returns.
    pub fn add_silence<T: Serialize>(
        &self,
        make: impl FnOnce(u64) -> T,
    ) -> Result<u64, StoreError> {
        self.commit(|db| {
            let txn = db.begin_write()?;
            let id;
            {
                let mut table = txn.open_table(SILENCES)?;
                id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                table.insert(id, encode(&make(id)).as_slice())?;
            }
            txn.commit()?;
            Ok(id)
        })
    }

    /// Replaces silence `id` (to expire it).
    pub fn put_silence<T: Serialize>(&self, id: u64, silence: &T) -> Result<(), StoreError> {
        self.commit(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SILENCES)?;
                table.insert(id, encode(silence).as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Every silence, oldest first.
    pub fn silences<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.read(|db| raw_rows(db, SILENCES))?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }

    /// Appends one history event (outside a pipeline batch).
    pub fn append_history<T: Serialize>(&self, at_ms: i64, event: &T) -> Result<(), StoreError> {
        let key = self.lock_unsaved().history_key(at_ms);
        self.change(Records {
            history: vec![(key, encode(event))],
            ..Records::default()
        })
    }

    /// History events at or after `since_ms`, oldest first, at most `limit`.
    pub fn history<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        self.history_from(since_ms, limit, false)
    }

    /// When each report last ran (its scheduled time, ms).
    pub fn report_runs(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let unsaved = self.kept();
        let file = self.read(|db| report_runs_in(&db.begin_read()?))?;
        Ok(unsaved.report_runs_view(file))
    }

    /// The newest `limit` history events since `since_ms`, newest first.
    pub fn history_newest<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        self.history_from(since_ms, limit, true)
    }

    fn history_from<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<T>, StoreError> {
        let unsaved = self.kept();
        let file = self.read(|db| history_raw(&db.begin_read()?, since_ms, limit, newest_first))?;
        let kept = unsaved.history_since(since_ms);
        let kept: Vec<((i64, u64), &[u8])> = if newest_first {
            kept.rev()
                .take(limit)
                .map(|(k, v)| (*k, v.as_slice()))
                .collect()
        } else {
            kept.take(limit).map(|(k, v)| (*k, v.as_slice())).collect()
        };
        let mut all: Vec<((i64, u64), &[u8])> = file
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .chain(kept)
            .collect();
        all.sort_by_key(|(k, _)| *k);
        if newest_first {
            all.reverse();
        }
        all.dedup_by_key(|(k, _)| *k);
        all.into_iter()
            .take(limit)
            .map(|(_, v)| decode(v))
            .collect()
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters<T: DeserializeOwned>(&self) -> Result<Rows<T>, StoreError> {
        let unsaved = self.kept();
        let file = self.read(|db| raw_rows(db, DEAD_LETTERS))?;
        Ok(unsaved
            .dead_view(file)
            .into_iter()
            .map(|(id, bytes)| (id, decode(&bytes)))
            .collect())
    }
}

/// Every row of a table keyed by id, in order, as stored.
fn raw_rows(
    db: &Database,
    definition: TableDefinition<u64, &[u8]>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let read = db.begin_read()?;
    let table = read.open_table(definition)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push((k.value(), v.value().to_vec()));
    }
    Ok(out)
}

/// The ids of a table keyed by id.
fn raw_ids(db: &Database, definition: TableDefinition<u64, &[u8]>) -> Result<Vec<u64>, StoreError> {
    let read = db.begin_read()?;
    let table = read.open_table(definition)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        out.push(entry?.0.value());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: &str, t: i64, v: f64) -> Sample {
        Sample {
            series: SeriesKey::new("probe_up", &[("target", target)]),
            ts_ms: t,
            value: v,
            note: None,
        }
    }

    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;

    fn obs(t: i64, v: f64) -> Sample {
        Sample {
            series: SeriesKey::new("latency_ms", &[("route", "/api")]),
            ts_ms: t,
            value: v,
            note: None,
        }
    }

    #[test]
    fn points_survive_reopen_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let a = SeriesKey::new("probe_up", &[("target", "a")]);
        let n = tsdb::CHUNK_POINTS as i64 * 3 + 17;
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..n {
                store
                    .append(&[sample("a", i * 10_000, (i % 3) as f64), sample("b", i, 1.0)])
                    .unwrap();
            }
            // Out of order and duplicate points are counted, not stored.
            store
                .append(&[sample("a", 5, 9.0), sample("a", (n - 1) * 10_000, 9.0)])
                .unwrap();
            assert_eq!(store.dropped().out_of_order, 2);
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.points(&a, 0, i64::MAX).unwrap();
        assert_eq!(all.len(), n as usize);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, p)| *p == (i as i64 * 10_000, (i % 3) as f64))
        );
        // A range inside one closed chunk, and one across a chunk boundary and the head.
        assert_eq!(
            store.points(&a, 10_000, 30_000).unwrap(),
            vec![(10_000, 1.0), (20_000, 2.0)]
        );
        let tail = store.points(&a, (n - 600) * 10_000, i64::MAX).unwrap();
        assert_eq!(tail.len(), 600);
        assert_eq!(store.series().len(), 2);
        // Appending after reopen continues the open chunk.
        store.append(&[sample("a", n * 10_000, 7.0)]).unwrap();
        assert_eq!(
            store.points(&a, n * 10_000, i64::MAX).unwrap(),
            vec![(n * 10_000, 7.0)]
        );
    }

    #[test]
    fn a_point_from_the_future_is_refused_and_does_not_block_the_series() {
        // Regression guard: a point dated far ahead made every later point "out of order".
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = crate::clock::now_ms();
        store
            .append(&[
                sample("a", now - 1000, 1.0),
                sample("a", now + 365 * DAY, 9.0),
            ])
            .unwrap();
        store.append(&[sample("a", now, 0.0)]).unwrap();
        let a = SeriesKey::new("probe_up", &[("target", "a")]);
        assert_eq!(
            store.points(&a, 0, i64::MAX).unwrap(),
            vec![(now - 1000, 1.0), (now, 0.0)]
        );
        assert_eq!(store.dropped().future, 1);
        assert_eq!(store.dropped().out_of_order, 0);
    }

    #[test]
    fn log_positions_and_error_types_are_kept_merged_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let seen = |source: &str, count: u64, last_ms: i64| logs::ErrorSeen {
            source: source.into(),
            id: 7,
            pattern: "timeout after # ms".into(),
            last_message: format!("timeout after {count} ms"),
            first_ms: last_ms - 10,
            last_ms,
            count,
            windows: vec![(0, count)],
        };
        for (source, n) in [("app", 3), ("app", 4), ("web", 1)] {
            let errors = [seen(source, n, n as i64 * 1000)];
            store
                .write(&Batch {
                    checkpoints: vec![((source.into(), 1, n), Some(encode(&n)))],
                    errors: &errors,
                    ..Batch::default()
                })
                .unwrap();
        }
        let app = store.errors().unwrap().types(Some("app")).unwrap();
        assert_eq!(app.len(), 1);
        assert_eq!(
            (app[0].count, app[0].first_ms, app[0].last_ms),
            (7, 2990, 4000)
        );
        assert_eq!(app[0].last_message, "timeout after 4 ms");
        assert_eq!(
            store.errors().unwrap().windows("app", 7, 0, 1).unwrap(),
            vec![(0, 7)]
        );
        assert_eq!(store.errors().unwrap().types(None).unwrap().len(), 2);
        assert_eq!(store.log_checkpoints::<u64>("app").unwrap().len(), 2);
        assert_eq!(store.forget_log_sources(&["web".into()]).unwrap(), 2);
        assert!(store.log_checkpoints::<u64>("app").unwrap().is_empty());
        assert_eq!(
            store.log_checkpoints::<u64>("web").unwrap(),
            vec![((1, 1), 1)]
        );
        // Past the retention, types and hourly counts go.
        assert_eq!(store.prune_errors(5000).unwrap(), 4);
        assert!(store.errors().unwrap().types(None).unwrap().is_empty());
    }

    /// The data directory and file are private to the daemon's user whatever the umask.
    #[test]
    fn a_new_data_dir_and_file_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        // A permissive umask for this process (restored below; tests in this binary do not
        // depend on it).
        use nix::sys::stat::{Mode, umask};
        let old = umask(Mode::empty());
        let opened = Store::open(&data);
        umask(old);
        drop(opened.unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&data.join(FILE_NAME)), 0o600);
    }

    /// Made-up messages from a public capture path: a source keeps at most its cap of error
    /// types, the rest count as one `other` type; the newest error is one read; a large
    /// prune goes in pieces and takes the newest-error entry with the last type.
    #[test]
    fn error_types_stop_at_the_cap_and_prune_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let seen = |source: &str, id: u64, at: i64| logs::ErrorSeen {
            source: source.into(),
            id,
            pattern: format!("pattern {id}"),
            last_message: format!("message {id}"),
            first_ms: at,
            last_ms: at,
            count: 1,
            windows: vec![(at.div_euclid(logs::WINDOW_MS) * logs::WINDOW_MS, 1)],
        };
        // 1 200 types in three batches for "capture", 5 for "app" with a cap of 3.
        for round in 0..3 {
            let errors: Vec<logs::ErrorSeen> = (0..400)
                .map(|i| seen("capture", round * 400 + i, 1_000 + (round * 400 + i) as i64))
                .chain((0..5).map(|i| seen("app", 10 + i, 2_000_000 + i as i64)))
                .collect();
            store
                .write(&Batch {
                    errors: &errors,
                    max_error_types: vec![("app".into(), 3)],
                    ..Batch::default()
                })
                .unwrap();
        }
        let e = store.errors().unwrap();
        let capture = e.types(Some("capture")).unwrap();
        assert_eq!(capture.len(), logs::MAX_ERROR_TYPES + 1);
        let other = capture.iter().find(|t| t.id == logs::OTHER_ID).unwrap();
        assert_eq!(other.count, 200);
        assert!(
            other.pattern.starts_with("other error types"),
            "{}",
            other.pattern
        );
        let app = e.types(Some("app")).unwrap();
        assert_eq!(app.len(), 4);
        assert_eq!(
            app.iter().find(|t| t.id == logs::OTHER_ID).unwrap().count,
            6
        );
        // The newest of each source, without a scan.
        let newest = e.newest(None).unwrap();
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[0].source, "app");
        assert_eq!(newest[0].last_ms, 2_000_004);
        assert_eq!(e.newest(Some("capture")).unwrap()[0].last_ms, 1_000 + 1199);
        drop(e);
        // Everything of "capture" expires: 1 001 types and their 1 001 hourly rows, in
        // pieces of a thousand; "app" keeps its types (seen later) but loses its 4 hourly
        // rows of the first hour.
        let removed = store.prune_errors(1_000_000).unwrap();
        assert_eq!(removed, 1001 + 1001 + 4);
        let e = store.errors().unwrap();
        assert!(e.types(Some("capture")).unwrap().is_empty());
        assert!(e.newest(Some("capture")).unwrap().is_empty());
        assert_eq!(e.newest(None).unwrap().len(), 1);
    }

    #[test]
    fn distributions_keep_one_sketch_per_interval_and_merge_late_observations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Vec::new();
        for i in 0..600 {
            batch.push(obs(i * 100, (i % 100) as f64));
        }
        store
            .write(&Batch {
                observations: &batch,
                ..Batch::default()
            })
            .unwrap();
        // A late observation for the first interval, and a NaN.
        store
            .write(&Batch {
                observations: &[obs(5, 1000.0), obs(6, f64::NAN)],
                ..Batch::default()
            })
            .unwrap();
        let snap = store.snapshot().unwrap();
        let info = &snap.series()[0];
        assert_eq!(info.kind, Kind::Distribution);
        let buckets = snap.dist_buckets(info.id, 0, i64::MAX).unwrap();
        // 60 s of observations in 10 s intervals.
        assert_eq!(buckets.len(), 6);
        assert_eq!(buckets[0].count, 101.0);
        assert_eq!(buckets[0].max, 1000.0);
        assert_eq!(store.dropped().invalid, 1);
        // The same name written as a gauge is refused, not mixed.
        store.append(&[obs(70_000, 1.0)]).unwrap();
        assert_eq!(store.dropped().invalid, 2);
    }

    #[test]
    fn compaction_rolls_up_into_tiers_and_expires_each_tier() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_layout(Layout {
                raw_retention_ms: DAY,
                distribution_interval_ms: 10_000,
                tiers: vec![
                    Tier {
                        step_ms: MIN,
                        retention_ms: 3 * DAY,
                    },
                    Tier {
                        step_ms: 60 * MIN,
                        retention_ms: 10 * DAY,
                    },
                ],
            })
            .unwrap();
        let t0 = 100 * DAY;
        // Four days of 10 s points and latency observations, compacted every 6 hours.
        let mut t = t0;
        let mut total = 0usize;
        while t < t0 + 4 * DAY {
            let end = t + 6 * 3_600_000;
            let mut samples = Vec::new();
            let mut observations = Vec::new();
            while t < end {
                samples.push(sample(
                    "a",
                    t,
                    if (t / 10_000) % 50 == 0 { 0.0 } else { 1.0 },
                ));
                observations.push(obs(t, ((t / 10_000) % 200) as f64 + 10.0));
                t += 10_000;
                total += 1;
            }
            store
                .write(&Batch {
                    samples: &samples,
                    observations: &observations,
                    ..Batch::default()
                })
                .unwrap();
            store.compact(t).unwrap();
        }
        let now = t;
        let snap = store.snapshot().unwrap();
        let up = snap
            .series()
            .iter()
            .find(|i| i.kind == Kind::Gauge)
            .unwrap()
            .clone();
        let lat = snap
            .series()
            .iter()
            .find(|i| i.kind == Kind::Distribution)
            .unwrap()
            .clone();
        // Raw data older than a day is gone (up to one merged chunk of slack).
        let raw = snap.points(up.id, 0, i64::MAX).unwrap();
        assert!(
            raw.first().unwrap().0 >= now - DAY - tsdb::MERGED_CHUNK_SPAN_MS,
            "{}",
            raw[0].0
        );
        assert!(raw.len() <= total / 2);
        assert!(snap.dist_buckets(lat.id, 0, now - DAY).unwrap().is_empty());
        // Minute buckets for the last three days, complete up to the watermark.
        let wm = snap.watermark(up.id, MIN).unwrap().unwrap();
        assert_eq!(wm, (now - tsdb::ROLLUP_GRACE_MS) / MIN * MIN);
        let minutes = snap.rollups(up.id, MIN, now - 2 * DAY, wm).unwrap();
        assert_eq!(minutes.len() as i64, 2 * DAY / MIN - (now - wm) / MIN);
        assert!(minutes.iter().all(|b| b.count == 6.0));
        assert!(
            snap.rollups(
                up.id,
                MIN,
                0,
                now - 3 * DAY - i64::from(tsdb::BLOCK_BUCKETS) * MIN
            )
            .unwrap()
            .is_empty()
        );
        // Hour buckets since the start: sums agree with the raw data they came from.
        let hours = snap.rollups(up.id, 60 * MIN, 0, i64::MAX).unwrap();
        assert_eq!(hours.first().unwrap().start, t0);
        assert_eq!(
            hours.len() as i64,
            (now - tsdb::ROLLUP_GRACE_MS - t0) / (60 * MIN)
        );
        for b in &hours {
            let ones = (0..360)
                .filter(|i| ((b.start + i * 10_000) / 10_000) % 50 != 0)
                .count();
            assert_eq!(
                (b.count, b.sum, b.min, b.max),
                (360.0, ones as f64, 0.0, 1.0)
            );
        }
        let dh = snap.rollups(lat.id, 60 * MIN, 0, i64::MAX).unwrap();
        let sk = dh[0].sketch.as_ref().unwrap();
        assert_eq!(sk.count(), 360);
        assert_eq!(dh[0].max, 209.0);
    }

    #[test]
    fn the_file_stops_growing_under_steady_load_once_retention_applies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_layout(Layout {
                raw_retention_ms: 6 * 3_600_000,
                distribution_interval_ms: 10_000,
                tiers: vec![
                    Tier {
                        step_ms: MIN,
                        retention_ms: 12 * 3_600_000,
                    },
                    Tier {
                        step_ms: 60 * MIN,
                        retention_ms: DAY,
                    },
                ],
            })
            .unwrap();
        let size = || std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        // Four simulated days of 50 series every 10 s, written ten minutes at a time and
        // compacted every half hour; the file size is taken at the end of each day.
        let mut sizes = Vec::new();
        let mut t = 0i64;
        for _day in 0..4 {
            for round in 0..144 {
                let mut samples = Vec::new();
                let mut observations = Vec::new();
                for k in 0..60 {
                    let ts = t + k * 10_000;
                    for s in 0..50 {
                        let v = ((ts / 10_000 + s) % 13) as f64 * 3.5;
                        samples.push(sample(&s.to_string(), ts, v));
                    }
                    observations.push(obs(ts, (ts % 977) as f64));
                }
                store
                    .write(&Batch {
                        samples: &samples,
                        observations: &observations,
                        ..Batch::default()
                    })
                    .unwrap();
                t += 10 * MIN;
                if round % 3 == 2 {
                    store.compact(t).unwrap();
                }
            }
            sizes.push(size());
        }
        // Retention reaches its steady state within the first day (the longest tier keeps a
        // day): from then on freed pages are reused. Without retention the file doubles
        // (redb grows it in steps) by the second day.
        let steady = sizes[0];
        assert!(
            sizes.iter().all(|s| *s as f64 <= steady as f64 * 1.15),
            "file sizes by day: {sizes:?}"
        );
        eprintln!("file sizes by day: {sizes:?}");
    }

    #[test]
    fn a_tier_removed_from_the_layout_is_deleted_and_a_new_one_filled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let samples: Vec<Sample> = (0..720).map(|i| sample("a", i * 10_000, 1.0)).collect();
        store.append(&samples).unwrap();
        store.compact(2 * 3_600_000).unwrap();
        let id = store.snapshot().unwrap().series()[0].id;
        assert!(
            !store
                .snapshot()
                .unwrap()
                .rollups(id, MIN, 0, i64::MAX)
                .unwrap()
                .is_empty()
        );
        store
            .set_layout(Layout {
                tiers: vec![Tier {
                    step_ms: 5 * MIN,
                    retention_ms: DAY,
                }],
                ..Layout::default()
            })
            .unwrap();
        store.compact(2 * 3_600_000).unwrap();
        let snap = store.snapshot().unwrap();
        assert!(snap.rollups(id, MIN, 0, i64::MAX).unwrap().is_empty());
        assert_eq!(snap.watermark(id, MIN).unwrap(), None);
        let five = snap.rollups(id, 5 * MIN, 0, i64::MAX).unwrap();
        assert_eq!(five.len(), 23);
        assert!(five.iter().all(|b| b.count == 30.0));
    }

    /// Observations that arrive after their interval was rolled up (a backlog, a client that
    /// was offline, a session dated at its last event, a clock that stepped back) count in every
    /// tier, and once: a long window, read from the rollups, sees them.
    #[test]
    fn late_observations_are_merged_into_the_rollups_they_belong_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_layout(Layout {
                raw_retention_ms: 30 * DAY,
                distribution_interval_ms: 10_000,
                tiers: vec![
                    Tier {
                        step_ms: MIN,
                        retention_ms: 30 * DAY,
                    },
                    Tier {
                        step_ms: 60 * MIN,
                        retention_ms: 30 * DAY,
                    },
                ],
            })
            .unwrap();
        let obs = |ts: i64| Sample {
            series: SeriesKey::new("lat", &[]),
            ts_ms: ts,
            value: 10.0,
            note: None,
        };
        let write = |o: Vec<Sample>| {
            store
                .write(&Batch {
                    observations: &o,
                    ..Batch::default()
                })
                .unwrap()
        };
        // Three hours, one observation every 10 s; rolled up to 2 h 59 min (minutes) and 2 h
        // (hours).
        write((0..3 * 360).map(|i| obs(i * 10_000)).collect());
        store.compact(3 * 60 * MIN).unwrap();
        // Late: two in the minute at 30 min (in both tiers' rolled-up past), one at 2 h 30 min
        // 5 s (rolled up into minutes, not yet into hours).
        write(vec![obs(30 * MIN + 1_000), obs(30 * MIN + 2_000)]);
        write(vec![obs(150 * MIN + 5_000)]);
        let snap = store.snapshot().unwrap();
        let id = snap.series()[0].id;
        let minutes = snap.rollups(id, MIN, 30 * MIN, 31 * MIN).unwrap();
        assert_eq!(minutes.len(), 1);
        assert_eq!(minutes[0].count, 8.0, "6 in time, 2 late");
        let hours = snap.rollups(id, 60 * MIN, 0, 60 * MIN).unwrap();
        assert_eq!(hours[0].count, 362.0);
        // Read as a long window is (the minutes up to their watermark, raw data after it),
        // every observation counts once.
        let count = |snap: &Snapshot| -> f64 {
            let wm = snap.watermark(id, MIN).unwrap().unwrap();
            let tiers: f64 = snap
                .rollups(id, MIN, 0, wm)
                .unwrap()
                .iter()
                .map(|b| b.count)
                .sum();
            let raw: f64 = snap
                .dist_buckets(id, wm, i64::MAX)
                .unwrap()
                .iter()
                .map(|b| b.count)
                .sum();
            tiers + raw
        };
        assert_eq!(count(&snap), 3.0 * 360.0 + 3.0);
        // Compaction goes on from its watermark and counts none of them twice.
        store.compact(4 * 60 * MIN).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(count(&snap), 3.0 * 360.0 + 3.0);
        let hours = snap.rollups(id, 60 * MIN, 0, 3 * 60 * MIN).unwrap();
        assert_eq!(
            hours.iter().map(|b| b.count).collect::<Vec<_>>(),
            [362.0, 360.0, 361.0]
        );
    }

    /// Two days of one series every 10 s, written and compacted hour by hour.
    fn hourly(store: &Store, days: i64) -> i64 {
        let mut t = 0;
        while t < days * DAY {
            let samples: Vec<Sample> = (0..360).map(|i| sample("a", t + i * 10_000, 1.0)).collect();
            store.append(&samples).unwrap();
            t += 60 * MIN;
            store.compact(t).unwrap();
        }
        t
    }

    #[test]
    fn a_fine_tier_kept_briefly_still_feeds_the_coarse_one_in_full() {
        // Regression: the minute tier was expired before the hour tier had read it.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_layout(Layout {
                raw_retention_ms: 60 * MIN,
                distribution_interval_ms: 10_000,
                tiers: vec![
                    Tier {
                        step_ms: MIN,
                        retention_ms: MIN,
                    },
                    Tier {
                        step_ms: 60 * MIN,
                        retention_ms: 30 * DAY,
                    },
                ],
            })
            .unwrap();
        let end = hourly(&store, 2);
        let snap = store.snapshot().unwrap();
        let id = snap.series()[0].id;
        let hours = snap.rollups(id, 60 * MIN, 0, end).unwrap();
        assert_eq!(hours.len(), 47);
        assert!(hours.iter().all(|b| b.count == 360.0), "{hours:?}");
        // Minute blocks go whole once the hour tier has read them: the first day's is gone.
        assert!(snap.rollups(id, MIN, 0, DAY).unwrap().is_empty());
    }

    #[test]
    fn changing_a_tier_keeps_its_history_in_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tiers = |coarse: i64| Layout {
            raw_retention_ms: 60 * MIN,
            distribution_interval_ms: 10_000,
            tiers: vec![
                Tier {
                    step_ms: MIN,
                    retention_ms: 2 * 60 * MIN,
                },
                Tier {
                    step_ms: coarse,
                    retention_ms: 30 * DAY,
                },
            ],
        };
        store.set_layout(tiers(60 * MIN)).unwrap();
        let end = hourly(&store, 2);
        // From hours to days: the days are made from the hours the minutes no longer cover.
        store.set_layout(tiers(DAY)).unwrap();
        store.compact(end).unwrap();
        let snap = store.snapshot().unwrap();
        let id = snap.series()[0].id;
        let days = snap.rollups(id, DAY, 0, i64::MAX).unwrap();
        assert_eq!(days.len(), 1, "{days:?}");
        assert_eq!(days[0].count, 8640.0);
        assert!(snap.rollups(id, 60 * MIN, 0, i64::MAX).unwrap().is_empty());
        assert_eq!(snap.watermark(id, 60 * MIN).unwrap(), None);
    }

    #[test]
    fn a_reader_in_another_handle_sees_the_writers_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(&[sample("a", 1, 1.0)]).unwrap();
        let reader = ReadOnlyStore::open(dir.path()).unwrap();
        let snap = reader.snapshot().unwrap();
        assert_eq!(
            snap.points(snap.series()[0].id, 0, 10).unwrap(),
            vec![(1, 1.0)]
        );
        store.append(&[sample("a", 2, 0.0)]).unwrap();
        let snap = reader.snapshot().unwrap();
        assert_eq!(snap.points(snap.series()[0].id, 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_version_1_file_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("format_version", 1u32.to_le_bytes().as_slice())
                    .unwrap();
                let rec = tsdb::SeriesRecord {
                    name: "probe_up".into(),
                    labels: [("target".to_string(), "a".to_string())].into(),
                    kind: Kind::Gauge,
                };
                txn.open_table(SERIES)
                    .unwrap()
                    .insert(1, encode(&rec).as_slice())
                    .unwrap();
                let mut points = txn.open_table(V1_POINTS).unwrap();
                for i in 0..1000i64 {
                    points.insert((1, i * 1000), 1.0).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        assert!(matches!(
            ReadOnlyStore::open(dir.path()).err(),
            Some(StoreError::NeedsUpgrade { .. })
        ));
        let store = Store::open(dir.path()).unwrap();
        let a = SeriesKey::new("probe_up", &[("target", "a")]);
        assert_eq!(store.points(&a, 0, i64::MAX).unwrap().len(), 1000);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.points(&a, 0, 5000).unwrap().len(), 5);
    }

    #[test]
    fn unknown_format_version_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let txn = store.db().unwrap().begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format_version", 99u32.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownVersion { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("format version 99"));
    }

    #[test]
    fn outbox_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::default();
        b.push_outbox(&"one");
        b.push_outbox(&"two");
        let ids = store.write(&b).unwrap();
        assert_eq!(ids, vec![1, 2]);
        store.outbox_remove(2).unwrap();
        store.outbox_bury(1, &"one").unwrap();
        let mut b = Batch::default();
        b.push_outbox(&"three");
        assert_eq!(store.write(&b).unwrap(), vec![3]);
        let pending: Vec<(u64, String)> = store.outbox().unwrap();
        assert_eq!(pending, vec![(3, "three".to_string())]);
    }
}

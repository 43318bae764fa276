//! Following files: globs are matched again on every poll, files are known by their identity
//! (device and inode, checked against a fingerprint of their first bytes), so a file renamed
//! by rotation is read to its end under its new name or after it left the globs, a file
//! truncated in place (copytruncate) is read again from its start, and a file that appears
//! later is read from its beginning.
//!
//! A new file whose first bytes are those of a followed file is a copy of it (logrotate's
//! copytruncate, or an operator's `cp`): it is held at the original's position while the
//! original lives on untruncated (its lines are read there), and read on from where the
//! original was once the original is truncated or gone. Copies made while the source was not
//! running are recognised by the fingerprints in the checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::extract::Extractor;
use crate::config::StartAt;
use crate::metrics::Reject;

/// The fingerprint covers up to this many first bytes of a file.
const FINGERPRINT_BYTES: usize = 1024;
/// A new file is taken for a copy of another only when this many first bytes match; a
/// shorter new file whose bytes begin a followed file waits until it tells which it is.
const MIN_COPY_BYTES: usize = 64;
/// One read takes up to this many bytes.
const READ_BYTES: usize = 256 * 1024;
/// A file that left the globs (renamed away, deleted) is kept open this long after it
/// last grew, for the lines its writer still adds before reopening.
const GONE_GRACE: Duration = Duration::from_secs(2);
/// How long the first bytes of a truncated file are remembered, to recognise a copy of it
/// that appears later.
const TRUNCATED_MEMORY: Duration = Duration::from_secs(60);

/// The identity under which a source records that it has run (no file has inode 0).
pub const MARKER: FileId = FileId { dev: 0, ino: 0 };

/// A file's identity on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// How far a file has been read: stored with the series its lines made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub path: String,
    /// How many first bytes `fingerprint` covers.
    pub fingerprint_len: u64,
    pub fingerprint: u64,
    /// Bytes read as whole lines.
    pub offset: u64,
}

/// What the tailer counts besides lines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TailEvents {
    pub rotations: u64,
    pub truncations: u64,
    pub read_errors: u64,
}

struct Tracked {
    path: PathBuf,
    file: File,
    /// The file's first bytes (up to [`FINGERPRINT_BYTES`]), as read.
    prefix: Vec<u8>,
    /// SHA-256 (first 8 bytes) of `prefix`.
    fingerprint: u64,
    /// Bytes consumed as whole lines (or skipped as part of an over-long one).
    offset: u64,
    /// Bytes read past `offset` that do not end in a newline yet.
    partial: Vec<u8>,
    /// Inside an over-long line: drop bytes up to the next newline.
    skipping: bool,
    /// Where the over-long line being skipped began (what a checkpoint records meanwhile).
    skip_start: u64,
    /// No longer matched by the globs; dropped once read to its end and quiet.
    gone_since: Option<Instant>,
    /// A copy of this followed file: held at its position until it is truncated or gone.
    copy_of: Option<FileId>,
}

impl Tracked {
    fn set_prefix(&mut self, prefix: Vec<u8>) {
        self.fingerprint = hash(&prefix);
        self.prefix = prefix;
    }
}

/// A file seen truncated: its first bytes and how far it had been read.
struct Truncated {
    prefix: Vec<u8>,
    offset: u64,
    at: Instant,
}

pub struct Tailer {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    start_at: StartAt,
    follow_symlinks: bool,
    max_line_bytes: usize,
    files: BTreeMap<FileId, Tracked>,
    /// Checkpoints this tailer started from, still to be matched to their files.
    resume: BTreeMap<FileId, Checkpoint>,
    /// Every checkpoint this tailer started from, to recognise copies made meanwhile.
    started_from: BTreeMap<FileId, Checkpoint>,
    /// Whether the source ran before (then every new file is read from its start).
    resumed: bool,
    first_scan: bool,
    /// Files dropped since the last `take_dropped`.
    dropped: Vec<FileId>,
    truncated: Vec<Truncated>,
    pub events: TailEvents,
    /// Paths that could not be opened (warned about once).
    unreadable: BTreeSet<PathBuf>,
    /// Symbolic links matched and not followed (warned about once).
    links: BTreeSet<PathBuf>,
    buf: Vec<u8>,
}

impl Tailer {
    pub fn new(
        include: &[String],
        exclude: &[String],
        start_at: StartAt,
        follow_symlinks: bool,
        max_line_bytes: usize,
        mut checkpoints: BTreeMap<FileId, Checkpoint>,
    ) -> Tailer {
        let resumed = !checkpoints.is_empty();
        checkpoints.remove(&MARKER);
        Tailer {
            include: include.to_vec(),
            exclude: exclude
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
            start_at,
            follow_symlinks,
            max_line_bytes,
            files: BTreeMap::new(),
            resumed,
            started_from: checkpoints.clone(),
            resume: checkpoints,
            first_scan: true,
            dropped: Vec::new(),
            truncated: Vec::new(),
            events: TailEvents::default(),
            unreadable: BTreeSet::new(),
            links: BTreeSet::new(),
            buf: vec![0; READ_BYTES],
        }
    }

    pub fn watched(&self) -> usize {
        self.files.len()
    }

    /// The position of every open file.
    pub fn checkpoints(&self) -> BTreeMap<FileId, Checkpoint> {
        self.files
            .iter()
            .map(|(id, t)| {
                (
                    *id,
                    Checkpoint {
                        path: t.path.to_string_lossy().into_owned(),
                        fingerprint_len: t.prefix.len() as u64,
                        fingerprint: t.fingerprint,
                        // An over-long line is skipped again from its start after a restart.
                        offset: if t.skipping { t.skip_start } else { t.offset },
                    },
                )
            })
            .collect()
    }

    /// Files dropped (deleted or rotated away, read to their end) since the last call.
    pub fn take_dropped(&mut self) -> Vec<FileId> {
        std::mem::take(&mut self.dropped)
    }

    /// Matches the globs again and opens, renames, truncates or drops files to suit.
    pub fn scan(&mut self) {
        let mut found: BTreeMap<FileId, PathBuf> = BTreeMap::new();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                if self.exclude.iter().any(|e| e.matches_path(&path)) {
                    continue;
                }
                // A link planted where the application writes its logs could make us read
                // any file the daemon may read; links are followed only when asked.
                if !self.follow_symlinks
                    && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
                {
                    if self.links.insert(path.clone()) {
                        tracing::warn!(path = %path.display(), "A matched log path is a symbolic link; not read (set follow_symlinks = true to read it)");
                    }
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let id = FileId {
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                found.entry(id).or_insert(path);
            }
        }
        let now = Instant::now();
        for (id, t) in &mut self.files {
            match found.remove(id) {
                Some(path) => {
                    if path != t.path {
                        tracing::debug!(from = %t.path.display(), to = %path.display(), "A followed file was renamed");
                        self.events.rotations += 1;
                        t.path = path;
                    }
                    t.gone_since = None;
                }
                None => {
                    if t.gone_since.is_none() {
                        tracing::debug!(path = %t.path.display(), "A followed file left the globs; reading it to its end");
                        self.events.rotations += 1;
                        t.gone_since = Some(now);
                    }
                }
            }
        }
        let found_ids: BTreeSet<FileId> = found.keys().copied().collect();
        // Files with a checkpoint of their own first: whether they continue decides what a
        // copy of them is.
        let mut new: Vec<(FileId, PathBuf)> = found.into_iter().collect();
        new.sort_by_key(|(id, _)| !self.resume.contains_key(id));
        for (id, path) in new {
            match self.open(id, &path) {
                Ok(Some(t)) => {
                    if self.unreadable.remove(&path) {
                        tracing::info!(path = %path.display(), "A log file can be read now");
                    }
                    self.files.insert(id, t);
                }
                Ok(None) => {}
                Err(e) => {
                    self.events.read_errors += 1;
                    // Said once per file; tried again quietly at every poll.
                    if self.unreadable.insert(path.clone()) {
                        tracing::warn!(path = %path.display(), error = %e, "Cannot open a log file; trying again at every poll");
                    }
                }
            }
        }
        if self.first_scan {
            // Checkpoints of files that are gone; those of files found but not opened yet
            // wait for them.
            let gone: Vec<FileId> = self
                .resume
                .keys()
                .filter(|id| !found_ids.contains(id))
                .copied()
                .collect();
            for id in gone {
                self.resume.remove(&id);
                self.dropped.push(id);
            }
            self.first_scan = false;
        }
    }

    /// Opens a newly found file at the position it is to be read from; `None` while it is
    /// too short to tell whether it is a copy of a followed file.
    fn open(&mut self, id: FileId, path: &Path) -> io::Result<Option<Tracked>> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        // The path may have been replaced between the glob and the open.
        let id_now = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if id_now != id {
            return Err(io::Error::other("the file changed while it was opened"));
        }
        let len = meta.len();
        let prefix = read_prefix(&file, len.min(FINGERPRINT_BYTES as u64) as usize)?;
        let mut t = Tracked {
            path: path.to_path_buf(),
            file,
            prefix: Vec::new(),
            fingerprint: 0,
            offset: 0,
            partial: Vec::new(),
            skipping: false,
            skip_start: 0,
            gone_since: None,
            copy_of: None,
        };
        // Its own checkpoint, if it still holds what was read.
        if let Some(cp) = self.resume.remove(&id)
            && continues(&prefix, len, &cp)
        {
            tracing::debug!(path = %path.display(), offset = cp.offset, "Resuming a log file at its checkpoint");
            t.offset = cp.offset;
            t.set_prefix(prefix);
            return Ok(Some(t));
        }
        let begins = |orig: &[u8]| {
            let n = prefix.len().min(orig.len());
            prefix[..n] == orig[..n]
        };
        // A copy of a followed file: held at its position.
        let mut undecided = false;
        for (oid, o) in &self.files {
            if o.prefix.is_empty() || !begins(&o.prefix) {
                continue;
            }
            if prefix.len().min(o.prefix.len()) < MIN_COPY_BYTES {
                undecided = true;
                continue;
            }
            tracing::debug!(path = %path.display(), original = %o.path.display(), "A new log file is a copy of a followed one; reading it only once that one is truncated or gone");
            t.offset = o.offset;
            t.copy_of = Some(*oid);
            t.set_prefix(prefix);
            return Ok(Some(t));
        }
        // A copy of a file truncated a moment ago: read on from where that one was.
        self.truncated
            .retain(|tr| tr.at.elapsed() < TRUNCATED_MEMORY);
        for tr in &self.truncated {
            if !begins(&tr.prefix) {
                continue;
            }
            if prefix.len().min(tr.prefix.len()) < MIN_COPY_BYTES {
                undecided = true;
                continue;
            }
            tracing::debug!(path = %path.display(), offset = tr.offset, "A new log file is a copy of a truncated one; reading it from where that one was");
            t.offset = tr.offset;
            t.set_prefix(prefix);
            return Ok(Some(t));
        }
        // A copy made while the source was not running, of a file in the checkpoints.
        for (cid, cp) in &self.started_from {
            if *cid == id
                || (cp.fingerprint_len as usize) < MIN_COPY_BYTES
                || !continues(&prefix, len, cp)
            {
                continue;
            }
            let covered = &prefix[..cp.fingerprint_len as usize];
            match self.files.get(cid) {
                // The original is followed on from that checkpoint: the copy waits on it.
                Some(o) if o.copy_of.is_none() && o.prefix.starts_with(covered) => {
                    t.offset = o.offset;
                    t.copy_of = Some(*cid);
                }
                _ => t.offset = cp.offset,
            }
            tracing::debug!(path = %path.display(), offset = t.offset, "A new log file is a copy of one read before; reading it on from that file's checkpoint");
            t.set_prefix(prefix);
            return Ok(Some(t));
        }
        if undecided {
            return Ok(None);
        }
        if self.first_scan && !self.resumed && self.start_at == StartAt::End {
            t.offset = len;
        }
        t.set_prefix(prefix);
        Ok(Some(t))
    }

    /// Reads what is new in every file, up to `budget` bytes in all, feeding whole lines to
    /// `x`. Returns the bytes read; less than `budget` means every file is at its end.
    pub fn read(&mut self, x: &mut Extractor, now_ms: i64, budget: usize) -> usize {
        // Truncations first: a copy waiting on a truncated file reads on from where that
        // file was.
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        let mut released: Vec<(FileId, u64)> = Vec::new();
        for id in &ids {
            let Some(t) = self.files.get_mut(id) else {
                continue;
            };
            if t.copy_of.is_some() {
                continue;
            }
            match check_truncated(t) {
                Ok(Some(old)) => {
                    tracing::info!(path = %t.path.display(), "A log file was truncated; reading it again from its start");
                    self.events.truncations += 1;
                    released.push((*id, old.offset));
                    self.truncated.push(old);
                }
                Ok(None) => {}
                Err(e) => {
                    self.events.read_errors += 1;
                    tracing::debug!(path = %t.path.display(), error = %e, "Cannot check a log file");
                }
            }
        }
        let positions: BTreeMap<FileId, u64> =
            self.files.iter().map(|(id, t)| (*id, t.offset)).collect();
        for t in self.files.values_mut() {
            let Some(orig) = t.copy_of else { continue };
            if let Some((_, offset)) = released.iter().find(|(id, _)| *id == orig) {
                t.offset = *offset;
                t.copy_of = None;
            } else if let Some(offset) = positions.get(&orig) {
                t.offset = *offset;
            } else {
                // The original was read to its end and dropped.
                t.copy_of = None;
            }
        }

        let mut total = 0;
        let mut finished: BTreeSet<FileId> = BTreeSet::new();
        for id in ids {
            let Some(t) = self.files.get_mut(&id) else {
                continue;
            };
            if t.copy_of.is_some() {
                continue;
            }
            loop {
                if total >= budget {
                    return total;
                }
                let pos = t.offset + t.partial.len() as u64;
                let n = match t.file.read_at(&mut self.buf, pos) {
                    Ok(n) => n,
                    Err(e) => {
                        self.events.read_errors += 1;
                        tracing::debug!(path = %t.path.display(), error = %e, "Cannot read a log file");
                        break;
                    }
                };
                if n == 0 {
                    break;
                }
                total += n;
                if t.gone_since.is_some() {
                    t.gone_since = Some(Instant::now());
                }
                let data = &self.buf[..n];
                // The first bytes, from what was read (a second read could see a newer file).
                if pos == t.prefix.len() as u64 && t.prefix.len() < FINGERPRINT_BYTES {
                    let mut prefix = std::mem::take(&mut t.prefix);
                    prefix.extend_from_slice(&data[..n.min(FINGERPRINT_BYTES - prefix.len())]);
                    t.set_prefix(prefix);
                }
                feed(t, data, x, self.max_line_bytes, now_ms);
            }
            if let Some(since) = t.gone_since
                && since.elapsed() >= GONE_GRACE
            {
                // A last line without its newline will not get one now.
                if !t.partial.is_empty() {
                    let line = std::mem::take(&mut t.partial);
                    if !t.skipping {
                        x.line(&line, now_ms);
                    }
                    t.offset += line.len() as u64;
                }
                finished.insert(id);
            }
        }
        for id in finished {
            self.files.remove(&id);
            self.dropped.push(id);
        }
        total
    }
}

/// Splits `data` (read right after `t.partial`) into lines for `x`.
fn feed(t: &mut Tracked, data: &[u8], x: &mut Extractor, max: usize, now_ms: i64) {
    let mut rest = data;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let (head, tail) = (&rest[..nl], &rest[nl + 1..]);
        if t.skipping {
            t.skipping = false;
            t.offset += (t.partial.len() + nl + 1) as u64;
            t.partial.clear();
        } else if t.partial.is_empty() {
            x.line(head, now_ms);
            t.offset += (nl + 1) as u64;
        } else {
            t.partial.extend_from_slice(head);
            let line = std::mem::take(&mut t.partial);
            x.line(&line, now_ms);
            t.offset += (line.len() + 1) as u64;
            t.partial = line;
            t.partial.clear();
        }
        rest = tail;
    }
    if t.skipping {
        // Still inside an over-long line: its bytes are consumed without being kept.
        t.offset += rest.len() as u64;
    } else if t.partial.len() + rest.len() > max {
        x.reject(Reject::TooLong);
        t.skipping = true;
        t.skip_start = t.offset;
        t.offset += (t.partial.len() + rest.len()) as u64;
        t.partial.clear();
    } else {
        t.partial.extend_from_slice(rest);
    }
}

/// Whether the file was truncated (shorter than what was read, or its first bytes changed);
/// if so, starts it again from its beginning and returns what it was.
fn check_truncated(t: &mut Tracked) -> io::Result<Option<Truncated>> {
    let len = t.file.metadata()?.len();
    let read = t.offset + t.partial.len() as u64;
    let truncated = len < read
        || (!t.prefix.is_empty()
            && len >= t.prefix.len() as u64
            && read_prefix(&t.file, t.prefix.len())? != t.prefix);
    if !truncated {
        return Ok(None);
    }
    let old = Truncated {
        prefix: std::mem::take(&mut t.prefix),
        offset: if t.skipping { t.skip_start } else { t.offset },
        at: Instant::now(),
    };
    t.offset = 0;
    t.partial.clear();
    t.skipping = false;
    t.set_prefix(Vec::new());
    Ok(Some(old))
}

/// Whether a file beginning with `prefix` and `len` bytes long holds what `cp` was read
/// from: as long, with the same first bytes.
fn continues(prefix: &[u8], len: u64, cp: &Checkpoint) -> bool {
    let n = cp.fingerprint_len;
    n <= prefix.len() as u64 && cp.offset <= len && hash(&prefix[..n as usize]) == cp.fingerprint
}

/// The first `len` bytes of `file` (fewer if it is shorter).
fn read_prefix(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// SHA-256 (first 8 bytes) of `bytes`: stable across versions and machines.
fn hash(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

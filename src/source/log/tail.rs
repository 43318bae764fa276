//! Following files: globs are matched again on every poll, files are known by their identity
//! (device and inode, checked against a fingerprint of their first bytes), so a file renamed
//! by rotation is read to its end under its new name or after it left the globs, a file
//! truncated in place (copytruncate) is read again from its start, and a file that appears
//! later is read from its beginning.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::extract::{Extractor, Reject};
use crate::config::StartAt;

/// The fingerprint covers up to this many first bytes of a file.
const FINGERPRINT_BYTES: u64 = 1024;
/// A new file is taken for a copy of another only when this many first bytes match.
const MIN_COPY_FINGERPRINT: u64 = 64;
/// One read takes up to this many bytes.
const READ_BYTES: usize = 256 * 1024;
/// A file that left the globs (renamed away, deleted) is kept open this long after it
/// last grew, for the lines its writer still adds before reopening.
const GONE_GRACE: Duration = Duration::from_secs(2);

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
    fingerprint_len: u64,
    fingerprint: u64,
    /// Bytes consumed as whole lines (or skipped as part of an over-long one).
    offset: u64,
    /// Bytes read past `offset` that do not end in a newline yet.
    partial: Vec<u8>,
    /// Inside an over-long line: drop bytes up to the next newline.
    skipping: bool,
    /// No longer matched by the globs; dropped once read to its end and quiet.
    gone_since: Option<Instant>,
}

pub struct Tailer {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    start_at: StartAt,
    max_line_bytes: usize,
    files: BTreeMap<FileId, Tracked>,
    /// Checkpoints this tailer started from, still to be matched to files.
    resume: BTreeMap<FileId, Checkpoint>,
    /// Whether the source ever ran before (then every new file is read from its start).
    resumed: bool,
    first_scan: bool,
    /// Files dropped since the last `take_dropped`.
    dropped: Vec<FileId>,
    pub events: TailEvents,
    /// Paths that could not be opened (warned about once).
    unreadable: BTreeSet<PathBuf>,
    buf: Vec<u8>,
}

impl Tailer {
    pub fn new(
        include: &[String],
        exclude: &[String],
        start_at: StartAt,
        max_line_bytes: usize,
        checkpoints: BTreeMap<FileId, Checkpoint>,
    ) -> Tailer {
        Tailer {
            include: include.to_vec(),
            exclude: exclude
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
            start_at,
            max_line_bytes,
            files: BTreeMap::new(),
            resumed: !checkpoints.is_empty(),
            resume: checkpoints,
            first_scan: true,
            dropped: Vec::new(),
            events: TailEvents::default(),
            unreadable: BTreeSet::new(),
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
                        fingerprint_len: t.fingerprint_len,
                        fingerprint: t.fingerprint,
                        offset: t.offset,
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
        for (id, path) in found {
            match self.open(id, &path) {
                Ok(t) => {
                    if self.unreadable.remove(&path) {
                        tracing::info!(path = %path.display(), "A log file can be read now");
                    }
                    self.files.insert(id, t);
                }
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
            // Checkpoints of files that are gone for good.
            self.dropped.extend(self.resume.keys().copied());
            self.resume.clear();
            self.first_scan = false;
        }
    }

    fn open(&mut self, id: FileId, path: &Path) -> io::Result<Tracked> {
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
        let (fp_len, fp) = fingerprint(&file, len.min(FINGERPRINT_BYTES))?;
        let offset = match self.resume.remove(&id) {
            Some(cp) if continues(&file, len, &cp)? => {
                tracing::debug!(path = %path.display(), offset = cp.offset, "Resuming a log file at its checkpoint");
                cp.offset
            }
            _ => match self.copy_of(&file, len)? {
                // A copy of a followed file (logrotate's copytruncate): its lines up to
                // where the original was read are counted already.
                Some(offset) => {
                    tracing::debug!(path = %path.display(), offset, "A new log file is a copy of a followed one; reading it from where that one was");
                    offset
                }
                None if self.first_scan && !self.resumed && self.start_at == StartAt::End => len,
                None => 0,
            },
        };
        Ok(Tracked {
            path: path.to_path_buf(),
            file,
            fingerprint_len: fp_len,
            fingerprint: fp,
            offset,
            partial: Vec::new(),
            skipping: false,
            gone_since: None,
        })
    }

    /// Where to start a new file whose first bytes are those of a followed file or of a
    /// file in the checkpoints: it is a copy, read as far as the original was.
    fn copy_of(&self, file: &File, len: u64) -> io::Result<Option<u64>> {
        let followed = self.files.values().map(|t| Checkpoint {
            path: String::new(),
            fingerprint_len: t.fingerprint_len,
            fingerprint: t.fingerprint,
            offset: t.offset,
        });
        for cp in followed.chain(self.resume.values().cloned()) {
            if cp.fingerprint_len >= MIN_COPY_FINGERPRINT && continues(file, len, &cp)? {
                return Ok(Some(cp.offset));
            }
        }
        Ok(None)
    }

    /// Reads what is new in every file, up to `budget` bytes in all, feeding whole lines to
    /// `x`. Returns the bytes read; less than `budget` means every file is at its end.
    pub fn read(&mut self, x: &mut Extractor, now_ms: i64, budget: usize) -> usize {
        let mut total = 0;
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        let mut finished: BTreeSet<FileId> = BTreeSet::new();
        for id in ids {
            let Some(t) = self.files.get_mut(&id) else {
                continue;
            };
            match check_truncated(t) {
                Ok(true) => {
                    tracing::info!(path = %t.path.display(), "A log file was truncated; reading it again from its start");
                    self.events.truncations += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    self.events.read_errors += 1;
                    tracing::warn!(path = %t.path.display(), error = %e, "Cannot check a log file");
                    continue;
                }
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
                        tracing::warn!(path = %t.path.display(), error = %e, "Cannot read a log file");
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
                feed(t, &self.buf[..n], x, self.max_line_bytes, now_ms);
                if t.fingerprint_len < FINGERPRINT_BYTES
                    && let Ok((len, fp)) =
                        fingerprint(&t.file, (pos + n as u64).min(FINGERPRINT_BYTES))
                {
                    t.fingerprint_len = len;
                    t.fingerprint = fp;
                }
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
        t.offset += (t.partial.len() + rest.len()) as u64;
        t.partial.clear();
    } else {
        t.partial.extend_from_slice(rest);
    }
}

/// Whether the file was truncated (shorter than what was read, or its first bytes
/// changed); if so, starts it again from its beginning.
fn check_truncated(t: &mut Tracked) -> io::Result<bool> {
    let len = t.file.metadata()?.len();
    let read = t.offset + t.partial.len() as u64;
    let truncated = len < read
        || (t.fingerprint_len > 0
            && len >= t.fingerprint_len
            && fingerprint(&t.file, t.fingerprint_len)?.1 != t.fingerprint);
    if truncated {
        t.offset = 0;
        t.partial.clear();
        t.skipping = false;
        let (flen, fp) = fingerprint(&t.file, len.min(FINGERPRINT_BYTES))?;
        t.fingerprint_len = flen;
        t.fingerprint = fp;
    }
    Ok(truncated)
}

/// Whether `file` (of `len` bytes) holds what `cp` was read from: as long, with the same
/// first bytes.
fn continues(file: &File, len: u64, cp: &Checkpoint) -> io::Result<bool> {
    Ok(cp.offset <= len
        && cp.fingerprint_len <= len
        && fingerprint(file, cp.fingerprint_len)?.1 == cp.fingerprint)
}

/// SHA-256 (first 8 bytes) of the first `len` bytes of `file`, and the length it covers.
fn fingerprint(file: &File, len: u64) -> io::Result<(u64, u64)> {
    let mut buf = vec![0; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    let d = Sha256::digest(&buf[..got]);
    Ok((
        got as u64,
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]),
    ))
}

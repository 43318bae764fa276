//! Log sources: lines from files (followed across rotation) or from a command's output,
//! turned into counters, distributions, gauges and error types by `[[logs.metric]]` and
//! `[[logs.errors]]` rules.
//!
//! Exactly once: a file source hands the pipeline a batch of series together with the file
//! positions its lines end at, and the pipeline commits both in one transaction. Within one
//! process, the next run of a source (after a reload) starts from what the previous run
//! handed over, and waits for that run to end first. When the pipeline starts (the daemon
//! starts, or the pipeline is restarted after a failed commit) it begins a new *generation*:
//! batches of an older generation are dropped, and every file source starts again from the
//! positions committed in the store.

pub mod errors;
pub mod extract;
pub mod sessions;
pub mod tail;

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{Config, LogInput, LogSource};
use crate::metrics::Reject;
use crate::metrics::{Metrics, SourceLabels, SourceReasonLabels};
use crate::store::Store;
use extract::{Extracted, Extractor};
use tail::{Checkpoint, FileId, MARKER, Tailer};

/// A batch is handed over at least this often while lines arrive.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// ... or after this many lines.
const FLUSH_LINES: u64 = 200_000;
/// Bytes read from files between checks for a flush.
const READ_BUDGET: usize = 4 << 20;
/// A command that keeps failing is started again after at most this long.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Lines a command writes to its standard error are logged cut to this many bytes.
const STDERR_LINE_BYTES: usize = 1024;

/// What a log source hands the pipeline.
#[derive(Debug)]
pub struct LogBatch {
    pub source: String,
    /// The generation the batch was read under; `None` for a command's output, which cannot
    /// be read again and is never dropped.
    pub generation: Option<u64>,
    pub data: Extracted,
    /// File positions to store (`Some`) or forget (`None`).
    pub checkpoints: Vec<(FileId, Option<Checkpoint>)>,
    /// The source read everything there was: nothing more is coming soon, so the batch is
    /// committed at once instead of waiting for the group commit.
    pub caught_up: bool,
    /// Told once the batch is committed (ingest answers its client then); dropped unsent when
    /// the commit fails or the batch is dropped.
    pub committed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LogBatch {
    /// The store's form of the checkpoints.
    pub fn checkpoint_records(&self) -> Vec<(crate::store::logs::CheckpointKey, Option<Vec<u8>>)> {
        self.checkpoints
            .iter()
            .map(|(id, cp)| {
                (
                    (self.source.clone(), id.dev, id.ino),
                    cp.as_ref().map(crate::store::encode),
                )
            })
            .collect()
    }
}

/// Positions handed to the pipeline by the runs of one file source.
struct Handed {
    generation: u64,
    positions: BTreeMap<FileId, Checkpoint>,
}

/// Carries file positions from one run of a source to the next, and the generation.
pub struct Handover {
    generation: watch::Sender<u64>,
    sources: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Handed>>>>,
}

impl Default for Handover {
    fn default() -> Self {
        Handover {
            generation: watch::Sender::new(0),
            sources: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl Handover {
    /// Starts a new generation: what is in flight is dropped and read again from the store's
    /// positions. Called by the pipeline when it starts.
    pub fn new_generation(&self) -> u64 {
        self.generation.send_modify(|g| *g += 1);
        *self.generation.borrow()
    }

    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    fn slot(&self, source: &str) -> Arc<tokio::sync::Mutex<Handed>> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources
            .entry(source.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Handed {
                    generation: 0,
                    positions: BTreeMap::new(),
                }))
            })
            .clone()
    }
}

/// Runs every `[[logs]]` source of the current configuration, restarting those whose
/// configuration changed.
pub async fn run(
    config: watch::Receiver<Arc<Config>>,
    store: Arc<Store>,
    handover: Arc<Handover>,
    tx: mpsc::Sender<LogBatch>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    super::manager::run_keyed(
        "log source",
        config,
        shutdown,
        |cfg: &Config| {
            let interval = cfg.store.distribution_interval.as_millis() as i64;
            cfg.logs
                .iter()
                .map(|l| (l.name.clone(), (l.clone(), interval)))
                .collect::<BTreeMap<_, _>>()
        },
        |_name, (cfg, interval): &(LogSource, i64), token| {
            let (cfg, interval) = (cfg.clone(), *interval);
            let tx = tx.clone();
            let metrics = metrics.clone();
            match &cfg.input {
                LogInput::Files { .. } => {
                    let store = store.clone();
                    let handover = handover.clone();
                    Some(Box::pin(async move {
                        run_files(cfg, interval, store, handover, tx, metrics, token).await
                    })
                        as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>)
                }
                LogInput::Command { .. } => Some(Box::pin(async move {
                    run_command(cfg, interval, tx, metrics, token).await
                })),
                // Its events arrive through the HTTP server (`crate::source::ingest`).
                LogInput::Posthog { .. } => None,
            }
        },
    )
    .await
}

async fn run_files(
    cfg: LogSource,
    interval_ms: i64,
    store: Arc<Store>,
    handover: Arc<Handover>,
    tx: mpsc::Sender<LogBatch>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) {
    // The previous run of this source (before a reload) must end before this one reads.
    let handed = tokio::select! {
        h = handover.slot(&cfg.name).lock_owned() => h,
        _ = token.cancelled() => return,
    };
    let mut generation = handover.generation.subscribe();
    let name = cfg.name.clone();
    let files = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Handle::current();
        follow_files(
            &cfg,
            interval_ms,
            &store,
            &mut generation,
            handed,
            &tx,
            &metrics,
            &token,
            &rt,
        )
    });
    match files.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(source = %name, error = %e, "A log source stopped"),
        Err(e) => tracing::error!(source = %name, error = %e, "A log source failed"),
    }
}

/// The blocking loop of a file source: scan, read, hand over, sleep.
#[allow(clippy::too_many_arguments)]
fn follow_files(
    cfg: &LogSource,
    interval_ms: i64,
    store: &Store,
    generation: &mut watch::Receiver<u64>,
    mut handed: tokio::sync::OwnedMutexGuard<Handed>,
    tx: &mpsc::Sender<LogBatch>,
    metrics: &Metrics,
    token: &CancellationToken,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let LogInput::Files {
        include,
        exclude,
        start_at,
        poll_interval,
        follow_symlinks,
    } = &cfg.input
    else {
        return Ok(());
    };
    let labels = SourceLabels {
        source: cfg.name.clone(),
    };
    'generation: loop {
        // Until the pipeline has started, nothing is known of what was committed.
        let generation_now = rt.block_on(async {
            tokio::select! {
                g = generation.wait_for(|g| *g >= 1) => g.map(|g| *g).ok(),
                _ = token.cancelled() => None,
            }
        });
        let Some(generation_now) = generation_now else {
            return Ok(());
        };
        if handed.generation != generation_now {
            handed.positions = store
                .log_checkpoints::<Checkpoint>(&cfg.name)?
                .into_iter()
                .map(|((dev, ino), cp)| (FileId { dev, ino }, cp))
                .collect();
            handed.generation = generation_now;
        }
        // The first hand-over records that the source has run: from then on, files it has
        // not seen are read from their beginning, whatever `start_at` says.
        let marker = Checkpoint {
            path: String::new(),
            fingerprint_len: 0,
            fingerprint: 0,
            offset: 0,
        };
        let mut tailer = Tailer::new(
            include,
            exclude,
            *start_at,
            *follow_symlinks,
            cfg.max_line_bytes,
            handed.positions.clone(),
        );
        let mut x = Extractor::new(cfg, interval_ms);
        let mut last_flush = Instant::now();
        let mut rotations = tailer.events.clone();
        loop {
            if token.is_cancelled() {
                return Ok(());
            }
            if *generation.borrow() != generation_now {
                tracing::info!(source = %cfg.name, "Reading the log files again from their committed positions");
                continue 'generation;
            }
            tailer.scan();
            loop {
                let n = tailer.read(&mut x, now_ms(), READ_BUDGET);
                let at_end = n < READ_BUDGET;
                if at_end || x.pending_lines() >= FLUSH_LINES || last_flush.elapsed() >= FLUSH_EVERY
                {
                    if *generation.borrow() != generation_now {
                        // The pipeline would drop this batch: read it again from the store's
                        // positions instead of reading on.
                        continue 'generation;
                    }
                    x.tick(now_ms());
                    let data = x.flush();
                    let mut checkpoints: Vec<(FileId, Option<Checkpoint>)> = tailer
                        .checkpoints()
                        .into_iter()
                        .filter(|(id, cp)| handed.positions.get(id) != Some(cp))
                        .map(|(id, cp)| (id, Some(cp)))
                        .collect();
                    if !handed.positions.contains_key(&MARKER) {
                        checkpoints.push((MARKER, Some(marker.clone())));
                    }
                    checkpoints.extend(
                        tailer
                            .take_dropped()
                            .into_iter()
                            .filter(|id| handed.positions.contains_key(id))
                            .map(|id| (id, None)),
                    );
                    last_flush = Instant::now();
                    if !data.is_empty() || !checkpoints.is_empty() || data.counts.lines > 0 {
                        let handing = checkpoints.clone();
                        let batch = LogBatch {
                            source: cfg.name.clone(),
                            generation: Some(generation_now),
                            data,
                            checkpoints,
                            caught_up: at_end,
                            committed: None,
                        };
                        let sent = rt.block_on(async {
                            tokio::select! {
                                r = tx.send(batch) => r.is_ok(),
                                _ = token.cancelled() => false,
                            }
                        });
                        if !sent {
                            return Ok(());
                        }
                        // Handed over: the next run of this source starts from here.
                        for (id, cp) in handing {
                            match cp {
                                Some(cp) => handed.positions.insert(id, cp),
                                None => handed.positions.remove(&id),
                            };
                        }
                    }
                }
                if at_end || token.is_cancelled() {
                    break;
                }
            }
            metrics
                .log_files
                .get_or_create(&labels)
                .set(tailer.watched() as i64);
            for (reason, now, before) in [
                ("rotated", tailer.events.rotations, rotations.rotations),
                (
                    "truncated",
                    tailer.events.truncations,
                    rotations.truncations,
                ),
            ] {
                if now > before {
                    metrics
                        .log_rotations
                        .get_or_create(&SourceReasonLabels {
                            source: cfg.name.clone(),
                            reason: reason.to_string(),
                        })
                        .inc_by(now - before);
                }
            }
            rotations = tailer.events.clone();
            rt.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep(*poll_interval) => {}
                    _ = token.cancelled() => {}
                    _ = generation.changed() => {}
                }
            });
        }
    }
}

async fn run_command(
    cfg: LogSource,
    interval_ms: i64,
    tx: mpsc::Sender<LogBatch>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) {
    let LogInput::Command { argv } = &cfg.input else {
        return;
    };
    let labels = SourceLabels {
        source: cfg.name.clone(),
    };
    let mut x = Extractor::new(&cfg, interval_ms);
    // The wait before the next start: 1 s, doubling to a minute while the command keeps
    // failing, back to 1 s after a run of a minute or more.
    let mut backoff = Duration::ZERO;
    loop {
        if !backoff.is_zero() {
            metrics.log_command_restarts.get_or_create(&labels).inc();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = token.cancelled() => return,
            }
        }
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&argv[0]);
        // A cleared environment and the few variables a log reader needs: the daemon's own
        // environment holds its `env:` secrets, which a wrapper that prints its environment
        // would put in the journal.
        command.env_clear();
        for (name, value) in std::env::vars_os() {
            if passed_to_commands(&name.to_string_lossy()) {
                command.env(name, value);
            }
        }
        let child = command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so that stopping it stops what it started too
            // (`sh -c "a | b"`).
            .process_group(0)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                backoff = next_backoff(backoff);
                tracing::error!(source = %cfg.name, command = %argv[0], error = %e, retry_in = ?backoff, "Cannot start the log command");
                continue;
            }
        };
        let group = child.id();
        tracing::info!(source = %cfg.name, pid = group, "Started the log command");
        if let Some(stderr) = child.stderr.take() {
            let name = cfg.name.clone();
            tokio::spawn(async move {
                let mut lines = LineReader::new(stderr, STDERR_LINE_BYTES);
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(line) => {
                            tracing::warn!(source = %name, "{}", String::from_utf8_lossy(line))
                        }
                        Err(()) => tracing::warn!(
                            source = %name,
                            "The log command wrote a line over {STDERR_LINE_BYTES} bytes to its standard error"
                        ),
                    }
                }
            });
        }
        let Some(stdout) = child.stdout.take() else {
            continue;
        };
        let mut lines = LineReader::new(stdout, cfg.max_line_bytes);
        let mut last_flush = Instant::now();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let stopped = loop {
            tokio::select! {
                line = lines.next() => match line {
                    Some(Ok(line)) => x.line(line, now_ms()),
                    Some(Err(())) => x.reject(Reject::TooLong),
                    None => break false,
                },
                _ = tick.tick() => {}
                _ = token.cancelled() => break true,
            }
            if x.pending_lines() >= FLUSH_LINES || last_flush.elapsed() >= FLUSH_EVERY {
                x.tick(now_ms());
                if !send(&cfg.name, &mut x, &tx).await {
                    return;
                }
                last_flush = Instant::now();
            }
        };
        if stopped {
            let _ = kill_group(group, &mut child).await;
            send(&cfg.name, &mut x, &tx).await;
            return;
        }
        // Its output ended: whatever it still runs (it may have closed its standard output
        // and gone on) is of no use. Signalled before the command is reaped, so that the
        // group's number cannot have been reused.
        let status = kill_group(group, &mut child).await;
        send(&cfg.name, &mut x, &tx).await;
        backoff = if started.elapsed() >= MAX_BACKOFF {
            Duration::from_secs(1)
        } else {
            next_backoff(backoff)
        };
        match status {
            Ok(s) => {
                tracing::warn!(source = %cfg.name, status = %s, restart_in = ?backoff, "The log command exited")
            }
            Err(e) => {
                tracing::warn!(source = %cfg.name, error = %e, restart_in = ?backoff, "The log command is gone")
            }
        }
    }
}

/// Stops the command's process group (SIGKILL: a log reader has nothing to save) and reaps
/// the command; its exit status (its own, if it had exited already).
async fn kill_group(
    group: Option<u32>,
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = group.and_then(|p| i32::try_from(p).ok()) {
        // The group may be gone already.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.start_kill();
    child.wait().await
}

fn next_backoff(b: Duration) -> Duration {
    (b * 2).clamp(Duration::from_secs(1), MAX_BACKOFF)
}

/// Hands over what `x` gathered; false when the pipeline is gone.
async fn send(source: &str, x: &mut Extractor, tx: &mpsc::Sender<LogBatch>) -> bool {
    if !x.has_pending() {
        return true;
    }
    let data = x.flush();
    tx.send(LogBatch {
        source: source.to_string(),
        generation: None,
        data,
        checkpoints: Vec::new(),
        caught_up: false,
        committed: None,
    })
    .await
    .is_ok()
}

/// Reads lines of at most `max` bytes from a pipe; a longer line is skipped whole and
/// reported once as `Err(())`.
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    max: usize,
    skipping: bool,
    eof: bool,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            max,
            skipping: false,
            eof: false,
        }
    }

    async fn next(&mut self) -> Option<Result<&[u8], ()>> {
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let begin = self.start;
                self.start += nl + 1;
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                return Some(Ok(&self.buf[begin..begin + nl]));
            }
            if self.buf.len() - self.start > self.max && !self.skipping {
                self.skipping = true;
                self.buf.clear();
                self.start = 0;
                return Some(Err(()));
            }
            if self.eof {
                let rest = self.buf.len() - self.start;
                if rest == 0 || self.skipping {
                    return None;
                }
                let begin = self.start;
                self.start = self.buf.len();
                return Some(Ok(&self.buf[begin..]));
            }
            // Keep the buffer small: drop what was read, then read more.
            if self.skipping {
                self.buf.clear();
            } else {
                self.buf.drain(..self.start);
            }
            self.start = 0;
            let mut chunk = [0u8; 16 * 1024];
            match self.inner.read(&mut chunk).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
/// The variables of the daemon's environment a `command` source gets: where programs are,
/// who and where it runs, language and time zone, and what `journalctl` and a PaaS CLI read
/// for their own configuration. Nothing else: no secret the configuration reads by `env:`.
fn passed_to_commands(name: &str) -> bool {
    const NAMES: [&str; 10] = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TZ",
        "LANG",
        "TMPDIR",
        "XDG_RUNTIME_DIR",
        "SYSTEMD_COLORS",
    ];
    NAMES.contains(&name) || name.starts_with("LC_")
}

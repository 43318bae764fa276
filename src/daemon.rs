//! The daemon: opens the store, starts the supervised tasks (probes, pipeline, outbox,
//! compaction, watchdog), and handles signals: SIGHUP reloads, SIGTERM and SIGINT stop
//! gracefully, flushing the store and draining due notifications.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{self, Config};
use crate::notify::outbox;
use crate::pipeline::Pipeline;
use crate::source::probe;
use crate::store::Store;
use crate::supervisor::Supervisor;

/// How often old points are pruned.

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `[daemon].data_dir`.
    pub data_dir: Option<PathBuf>,
    /// A socket already bound for the HTTP server, used instead of binding
    /// `[server].listen` (the demo binds its port before it starts the daemon).
    pub listener: Option<Arc<std::net::TcpListener>>,
}

/// Tells systemd about a state change; a no-op without `$NOTIFY_SOCKET`.
fn sd_notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "Cannot notify systemd");
    }
}

/// How much longer systemd is asked to wait, again and again, while the data file opens.
const OPEN_EXTEND: Duration = Duration::from_secs(30);

/// Runs the daemon with `config` until SIGTERM, SIGINT or `shutdown`.
pub async fn run(
    config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let data_dir = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| config.daemon.data_dir.clone());
    // Opening the data file after an unclean stop repairs it, which reads the whole file:
    // meanwhile systemd is told every 10 s that start-up goes on, so that a large file's
    // repair is not cut short by the unit's start timeout.
    let opening = tokio::spawn(async {
        loop {
            sd_notify(&[
                sd_notify::NotifyState::ExtendTimeoutUsec(OPEN_EXTEND.as_micros() as u32),
                sd_notify::NotifyState::Status("opening the data file"),
            ]);
            tokio::time::sleep(OPEN_EXTEND / 3).await;
        }
    });
    let store = {
        let dir = data_dir.clone();
        let layout = config.store.layout();
        let opened = tokio::task::spawn_blocking(move || {
            let store = Store::open(&dir)?;
            store.set_layout(layout)?;
            Ok::<_, crate::store::StoreError>(store)
        })
        .await;
        opening.abort();
        Arc::new(opened??)
    };
    // Install the signal handlers before READY: an early SIGHUP must reload, not kill.
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let signals_handle = signals.handle();

    let config_path = config.path.clone();
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (samples_tx, samples_rx) = mpsc::channel::<Vec<crate::series::Sample>>(1024);
    let samples_rx = Arc::new(Mutex::new(samples_rx));
    let (logs_tx, logs_rx) = mpsc::channel::<crate::source::log::LogBatch>(16);
    let logs_rx = Arc::new(Mutex::new(logs_rx));
    let handover = Arc::new(crate::source::log::Handover::default());
    let (commands_tx, commands_rx) = mpsc::channel::<crate::pipeline::Command>(64);
    let commands_rx = Arc::new(Mutex::new(commands_rx));
    let wake = Arc::new(Notify::new());
    let heartbeat = Arc::new(AtomicI64::new(now_ms()));
    let metrics = Arc::new(crate::metrics::Metrics::new());
    metrics.last_reload_success.set(now_ms() as f64 / 1000.0);

    // Each stage stops on its own token, in data-flow order: sources, then the pipeline
    // (which commits what they produced), then the outbox (which delivers what is due).
    let probes_stop = CancellationToken::new();
    let pipeline_stop = CancellationToken::new();
    let outbox_stop = CancellationToken::new();
    let rest_stop = CancellationToken::new();
    let mut sup = Supervisor::new(metrics.clone());
    let probes_done = {
        let (cfg, tx, token) = (config_rx.clone(), samples_tx.clone(), probes_stop.clone());
        sup.spawn("probes", probes_stop.clone(), move || {
            probe::run(cfg.clone(), tx.clone(), token.clone())
        })
    };
    let databases_done = {
        let (cfg, tx, token) = (config_rx.clone(), samples_tx.clone(), probes_stop.clone());
        sup.spawn("databases", probes_stop.clone(), move || {
            crate::source::database::run(cfg.clone(), tx.clone(), token.clone())
        })
    };
    let scrapes_done = {
        let (cfg, tx, token) = (config_rx.clone(), samples_tx.clone(), probes_stop.clone());
        sup.spawn("scrapes", probes_stop.clone(), move || {
            crate::source::scrape::run(cfg.clone(), tx.clone(), token.clone())
        })
    };
    let logs_done = {
        let (cfg, tx, token) = (config_rx.clone(), logs_tx.clone(), probes_stop.clone());
        let (s, h, m) = (store.clone(), handover.clone(), metrics.clone());
        sup.spawn("logs", probes_stop.clone(), move || {
            crate::source::log::run(
                cfg.clone(),
                s.clone(),
                h.clone(),
                tx.clone(),
                m.clone(),
                token.clone(),
            )
        })
    };
    let heartbeat_done = {
        let (tx, token) = (samples_tx.clone(), probes_stop.clone());
        sup.spawn("heartbeat", probes_stop.clone(), move || {
            heartbeat_samples(tx.clone(), token.clone())
        })
    };
    drop(samples_tx);
    // The server keeps a sender for ingested events; the pipeline runs until told to stop.
    let ingest = Arc::new(crate::source::ingest::Ingest::new(
        config_rx.clone(),
        logs_tx,
        metrics.clone(),
    ));
    let sessions_done = {
        let (i, token) = (ingest.clone(), probes_stop.clone());
        sup.spawn("ingest-sessions", probes_stop.clone(), move || {
            let (i, token) = (i.clone(), token.clone());
            async move { i.end_idle_sessions(token).await }
        })
    };
    let pipeline_done = {
        let pipeline = Arc::new(Pipeline {
            store: store.clone(),
            config: config_rx.clone(),
            samples: samples_rx,
            logs: logs_rx,
            handover: handover.clone(),
            wake: wake.clone(),
            commands: commands_rx,
            metrics: metrics.clone(),
            silences: Arc::new(Mutex::new(Vec::new())),
            heartbeat: heartbeat.clone(),
            degraded: Default::default(),
            shutdown: pipeline_stop.clone(),
        });
        sup.spawn("pipeline", pipeline_stop.clone(), move || {
            let p = pipeline.clone();
            async move { p.run().await }
        })
    };
    let outbox_done = {
        let (s, cfg, w, m, token) = (
            store.clone(),
            config_rx.clone(),
            wake.clone(),
            metrics.clone(),
            outbox_stop.clone(),
        );
        sup.spawn("outbox", outbox_stop.clone(), move || {
            outbox::run(s.clone(), cfg.clone(), w.clone(), m.clone(), token.clone())
        })
    };
    {
        let api = crate::server::Api {
            config: config_rx.clone(),
            commands: commands_tx.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            ingest,
            heartbeat: heartbeat.clone(),
            heavy: Arc::new(tokio::sync::Semaphore::new(crate::server::HEAVY_READS)),
        };
        let token = rest_stop.clone();
        // Bound before "started" and READY, so that the API answers once they are said; a
        // port taken by another process is retried by the server task while monitoring goes on.
        let bound = opts.listener.clone().or_else(|| {
            let listen = config_rx.borrow().server.listen;
            std::net::TcpListener::bind(listen)
                .inspect_err(|e| tracing::error!(address = %listen, error = %e, "Cannot listen yet; retrying"))
                .ok()
                .map(Arc::new)
        });
        sup.spawn("server", rest_stop.clone(), move || {
            crate::server::run(api.clone(), bound.clone(), token.clone())
        });
    }
    {
        let (s, cfg, w, token) = (
            store.clone(),
            config_rx.clone(),
            wake.clone(),
            rest_stop.clone(),
        );
        sup.spawn("reports", rest_stop.clone(), move || {
            crate::report::schedule::run(cfg.clone(), s.clone(), w.clone(), token.clone())
        });
    }
    {
        let (s, cfg, token) = (store.clone(), config_rx.clone(), rest_stop.clone());
        let m = metrics.clone();
        sup.spawn("compaction", rest_stop.clone(), move || {
            compaction(s.clone(), cfg.clone(), m.clone(), token.clone())
        });
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let (hb, token) = (heartbeat.clone(), rest_stop.clone());
        sup.spawn("watchdog", rest_stop.clone(), move || {
            watchdog(interval, hb.clone(), token.clone())
        });
    }

    {
        let cfg = config_rx.borrow();
        tracing::info!(
            config = %config_path.display(),
            data = %store.path().display(),
            targets = cfg.targets.len(),
            logs = cfg.logs.len(),
            rules = cfg.rules.len(),
            channels = cfg.channels.len(),
            version = env!("CARGO_PKG_VERSION"),
            "sloguard started"
        );
    }
    sd_notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);

    loop {
        tokio::select! {
            sig = signals.next() => match sig {
                Some(SIGHUP) => reload(&config_tx, &opts, &metrics),
                Some(sig) => {
                    tracing::info!(signal = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }, "Stopping");
                    break;
                }
                None => break,
            },
            _ = shutdown.cancelled() => {
                tracing::info!("Stopping");
                break;
            }
        }
    }
    sd_notify(&[sd_notify::NotifyState::Stopping]);
    probes_stop.cancel();
    wait_done(probes_done, Duration::from_secs(5), "probes").await;
    wait_done(databases_done, Duration::from_secs(5), "databases").await;
    wait_done(scrapes_done, Duration::from_secs(5), "scrapes").await;
    wait_done(logs_done, Duration::from_secs(5), "logs").await;
    wait_done(heartbeat_done, Duration::from_secs(5), "heartbeat").await;
    wait_done(sessions_done, Duration::from_secs(5), "ingest-sessions").await;
    pipeline_stop.cancel();
    wait_done(pipeline_done, Duration::from_secs(10), "pipeline").await;
    outbox_stop.cancel();
    let outbox_timeout = config_rx.borrow().outbox.timeout;
    wait_done(
        outbox_done,
        outbox::DRAIN_GRACE + outbox_timeout + Duration::from_secs(1),
        "outbox",
    )
    .await;
    rest_stop.cancel();
    sup.wait(Duration::from_secs(2)).await;
    signals_handle.close();
    drop(store);
    tracing::info!("sloguard stopped");
    Ok(())
}

/// Waits until a supervised task has finished, or `limit` passed.
async fn wait_done(mut done: watch::Receiver<bool>, limit: Duration, task: &str) {
    if tokio::time::timeout(limit, done.wait_for(|d| *d))
        .await
        .is_err()
    {
        tracing::warn!(task, "Task did not stop in time");
    }
}

/// Re-reads the configuration; a file with problems is rejected and the running one kept.
fn reload(tx: &watch::Sender<Arc<Config>>, opts: &RunOptions, metrics: &crate::metrics::Metrics) {
    let result = |r: &str| crate::metrics::ResultLabels {
        result: r.to_string(),
    };
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(mono) => sd_notify(&[sd_notify::NotifyState::Reloading, mono]),
        Err(_) => sd_notify(&[sd_notify::NotifyState::Reloading]),
    }
    let current = tx.borrow().clone();
    tracing::info!(config = %current.path.display(), "Reloading the configuration");
    match config::load(&current.path) {
        Ok(new) => {
            metrics.reloads.get_or_create(&result("success")).inc();
            metrics.last_reload_success.set(now_ms() as f64 / 1000.0);
            if opts.data_dir.is_none() && new.daemon.data_dir != current.daemon.data_dir {
                tracing::warn!(
                    "daemon.data_dir changed; the new data directory is used only after a restart"
                );
            }
            if new.server.listen != current.server.listen {
                tracing::warn!("server.listen takes effect only after a restart");
            }
            if new.server.max_connections != current.server.max_connections {
                tracing::warn!("server.max_connections takes effect only after a restart");
            }
            for warning in new.warnings() {
                tracing::warn!("{warning}");
            }
            if new.daemon.log_format != current.daemon.log_format
                || new.daemon.log_level != current.daemon.log_level
            {
                tracing::warn!(
                    "daemon.log_format and daemon.log_level take effect only after a restart"
                );
            }
            if *current == new {
                tracing::info!("Configuration unchanged");
            } else {
                tracing::info!(
                    targets = new.targets.len(),
                    rules = new.rules.len(),
                    channels = new.channels.len(),
                    "Configuration reloaded"
                );
                tx.send_replace(Arc::new(new));
            }
        }
        Err(e) => {
            metrics.reloads.get_or_create(&result("failure")).inc();
            for p in &e.problems {
                tracing::error!(
                    file = %e.file.display(),
                    line = p.line.map(|l| l as u64),
                    path = %p.path,
                    "{}", p.message
                );
            }
            tracing::error!(
                problems = e.problems.len(),
                "Configuration reload rejected; the previous configuration keeps running"
            );
        }
    }
    sd_notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
}

/// Applies the configured layout, then makes rollups and deletes what is past retention every
/// `[store].compact_interval`, in small transactions on the blocking pool.
async fn compaction(
    store: Arc<Store>,
    mut config: watch::Receiver<Arc<Config>>,
    metrics: Arc<crate::metrics::Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let (store_cfg, error_horizon) = {
            let cfg = config.borrow_and_update();
            (cfg.store.clone(), cfg.error_type_horizon())
        };
        let s = store.clone();
        let layout = store_cfg.layout();
        tokio::task::spawn_blocking(move || s.set_layout(layout)).await??;
        let s = store.clone();
        let history_before = now_ms() - store_cfg.history_retention.as_millis() as i64;
        let errors_before = now_ms() - error_horizon.as_millis() as i64;
        let started = std::time::Instant::now();
        let (stats, history) = tokio::task::spawn_blocking(move || {
            let stats = s.compact(now_ms())?;
            let history = s.prune_history(history_before)?
                + s.prune_errors(errors_before)?
                + s.prune_distinct(history_before)?;
            Ok::<_, crate::store::StoreError>((stats, history))
        })
        .await??;
        metrics.compactions.inc();
        metrics
            .compaction_seconds
            .inc_by(started.elapsed().as_secs_f64());
        metrics.rollup_buckets.inc_by(stats.rollup_buckets);
        tracing::debug!(
            rollup_buckets = stats.rollup_buckets,
            chunks_merged = stats.chunks_merged,
            series_skipped = stats.series_skipped,
            chunks_removed = stats.chunks_removed,
            dist_buckets_removed = stats.dist_buckets_removed,
            blocks_removed = stats.blocks_removed,
            history_removed = history,
            took_ms = started.elapsed().as_millis() as u64,
            "Compacted the store"
        );
        tokio::select! {
            _ = tokio::time::sleep(store_cfg.compact_interval) => {}
            changed = config.changed() => if changed.is_err() { return Ok(()) },
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Records that sloguard runs: a `sloguard_up` point every minute, from which reports tell
/// when it was down.
async fn heartbeat_samples(
    tx: tokio::sync::mpsc::Sender<Vec<crate::series::Sample>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(crate::report::HEARTBEAT_EVERY);
    let key = crate::series::SeriesKey::new(crate::report::HEARTBEAT_METRIC, &[]);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let sample = crate::series::Sample {
            series: key.clone(),
            ts_ms: now_ms(),
            value: 1.0,
            note: None,
        };
        if tx.send(vec![sample]).await.is_err() {
            return Ok(());
        }
    }
}

/// Pings systemd's watchdog only while the pipeline is turning, so a wedged daemon is restarted.
async fn watchdog(
    interval: Duration,
    heartbeat: Arc<AtomicI64>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let age = now_ms() - heartbeat.load(Ordering::Relaxed);
        if age < interval.as_millis() as i64 {
            sd_notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(
                stalled_ms = age,
                "The pipeline has stalled; withholding the watchdog ping"
            );
        }
    }
}

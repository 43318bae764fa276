//! The pipeline: samples from the sources are committed to the store together with the alert
//! transitions they cause and the notifications those transitions owe, in one transaction;
//! then the outbox is woken. Rules are evaluated the moment a sample arrives.
//!
//! A firing alert's record keeps the notification it sent and the channels it went to, so
//! its resolve reaches exactly those channels, reads the same, and can still be sent when a
//! reload or a restart has removed the rule.
//!
//! `plan.rs` decides, without I/O, what a set of transitions writes; `compose.rs` words the
//! notification; `record.rs` holds the alert records kept in the store; `command.rs` answers
//! the HTTP API's requests; this file runs the loop and commits.

mod command;
mod compose;
mod degraded;
mod plan;
mod record;

pub use command::{AlertView, Command};
pub use compose::notification;
pub use degraded::{Degraded, STORE_ALERT};
pub use plan::{Plan, plan, tick_plan, upgrade_plan};
pub use record::{Ack, Fired, StoredAlert};

use plan::{TARGET_GONE, probe_target_gone, suppression};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{Config, RuleKind};
use crate::rules::{
    AlertState, AlertStatus, Engine, Transition, TransitionKind, WindowMemory, window_values,
};
use crate::series::Sample;
use crate::silence::Silence;
use crate::source::log::{Handover, LogBatch};
use crate::store::{Batch, Store, StoreError};
use degraded::Flat;

/// The most samples committed in one transaction.
const MAX_BATCH: usize = 10_000;

/// How long samples that change no alert may wait to be committed together. Each commit
/// costs an fsync; grouping a few hundred milliseconds of probe results into one cuts the
/// daemon's CPU and disk work several times over. What changes an alert is committed at once.
const GROUP_COMMIT: Duration = Duration::from_millis(500);

/// Log batches committed in one transaction at most.
const MAX_LOG_BATCHES: usize = 16;

/// What was evaluated but not yet committed.
#[derive(Default)]
pub(super) struct Pending {
    samples: Vec<Sample>,
    logs: Vec<LogBatch>,
}

/// When a window rule turns next, and what its last turn saw.
struct RuleTurn {
    at: i64,
    memory: WindowMemory,
}

impl Pending {
    fn is_full(&self) -> bool {
        self.samples.len() >= MAX_BATCH || self.logs.len() >= MAX_LOG_BATCHES
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub struct Pipeline {
    pub store: Arc<Store>,
    pub config: watch::Receiver<Arc<Config>>,
    pub samples: Arc<Mutex<mpsc::Receiver<Vec<Sample>>>>,
    /// Batches of the log sources.
    pub logs: Arc<Mutex<mpsc::Receiver<LogBatch>>>,
    pub handover: Arc<Handover>,
    pub wake: Arc<Notify>,
    pub commands: Arc<Mutex<mpsc::Receiver<Command>>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The run-time silences, loaded from the store when the pipeline starts.
    pub silences: Arc<Mutex<Vec<Silence>>>,
    /// Milliseconds since the epoch of the pipeline's last loop turn, for the watchdog.
    pub heartbeat: Arc<AtomicI64>,
    /// What is held while the store cannot write its file.
    pub degraded: std::sync::Mutex<Degraded>,
    pub shutdown: CancellationToken,
}

impl Pipeline {
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut config = self.config.clone();
        let mut cfg = config.borrow_and_update().clone();
        let store = self.store.clone();
        let restored: Vec<StoredAlert> =
            tokio::task::spawn_blocking(move || store.alerts()).await??;
        if !restored.is_empty() {
            tracing::info!(
                alerts = restored.len(),
                "Restored pending and firing alerts from the store"
            );
        }
        let store = self.store.clone();
        let mut silences: Vec<Silence> =
            tokio::task::spawn_blocking(move || store.silences()).await??;
        // Silences that ended over a week ago no longer matter for matching.
        let week_ago = now_ms() - 7 * 24 * 3600 * 1000;
        silences.retain(|s| s.ends_ms > week_ago);
        *self.silences.lock().await = silences;
        let mut fired: HashMap<String, Fired> = HashMap::new();
        let mut states = Vec::with_capacity(restored.len());
        for a in restored {
            if let Some(f) = a.fired {
                fired.insert(a.state.fingerprint(), f);
            }
            states.push(a.state);
        }
        let now = now_ms();
        let (mut engine, mut transitions) = Engine::restore(cfg.rules.clone(), states, now);
        transitions.extend(engine.retire(probe_target_gone(&cfg), now, TARGET_GONE));
        self.commit(&cfg, &mut fired, Pending::default(), transitions)
            .await?;

        let mut rx = self.samples.lock().await;
        let mut logs = self.logs.lock().await;
        let mut commands = self.commands.lock().await;
        // From here on, log batches read before this start are dropped: their sources read
        // them again from the positions in the store.
        let generation = self.handover.new_generation();
        if generation == 1 {
            // At the daemon's start: positions of log sources no longer configured go.
            let store = self.store.clone();
            let keep: Vec<String> = cfg.logs.iter().map(|l| l.name.clone()).collect();
            let removed =
                tokio::task::spawn_blocking(move || store.forget_log_sources(&keep)).await??;
            if removed > 0 {
                tracing::info!(
                    files = removed,
                    "Forgot the file positions of log sources no longer configured"
                );
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // When each threshold rule is evaluated next.
        let mut turns: HashMap<String, RuleTurn> = HashMap::new();
        // Samples evaluated but not yet committed, and when the oldest of them arrived.
        let mut pending = Pending::default();
        // Log sources reading a backlog: their batch that catches up is committed at once.
        let mut catching_up: std::collections::BTreeSet<String> = Default::default();
        let mut pending_since: Option<Instant> = None;
        loop {
            self.heartbeat.store(now_ms(), Ordering::Relaxed);
            let flush_at = pending_since.map(|t| t + GROUP_COMMIT);
            tokio::select! {
                // The sources stop (and close the channels) before the pipeline is told to:
                // it keeps turning until then, so that it is not taken for failed.
                Some(mut samples) = rx.recv() => {
                    while samples.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(more) => samples.extend(more),
                            Err(_) => break,
                        }
                    }
                    let now = now_ms();
                    let started = std::time::Instant::now();
                    let mut transitions = Vec::new();
                    for s in &samples {
                        transitions.extend(engine.observe(s, now));
                        self.metrics.observe(s);
                    }
                    self.metrics.rule_evaluation_seconds.inc_by(started.elapsed().as_secs_f64());
                    if !transitions.is_empty() {
                        self.count_alerts(&engine);
                    }
                    pending.samples.extend(samples);
                    pending_since.get_or_insert_with(Instant::now);
                    // A state change is committed (and notified) at once; plain samples wait
                    // for the group commit.
                    if !transitions.is_empty() || pending.is_full() {
                        pending_since = None;
                        self.commit(&cfg, &mut fired, std::mem::take(&mut pending), transitions).await?;
                    }
                }
                Some(batch) = logs.recv(), if self.degraded().takes_logs() => {
                    if batch.generation.is_some_and(|g| g != generation) {
                        continue;
                    }
                    let now = now_ms();
                    let mut transitions = Vec::new();
                    // A capture client waits for its batch's commit (it is answered then):
                    // that batch is committed at once, with the batches queued behind it,
                    // instead of after the group-commit wait. A trickle of lines waits for
                    // the group commit like probe results; the end of a backlog is committed
                    // at once.
                    let waited = batch.committed.is_some();
                    let mut done_catching_up = false;
                    let mut next = Some(batch);
                    while let Some(batch) = next.take() {
                        if batch.generation.is_none_or(|g| g == generation) {
                            for s in &batch.data.gauges {
                                transitions.extend(engine.observe(s, now));
                            }
                            done_catching_up |= if batch.caught_up {
                                catching_up.remove(&batch.source)
                            } else {
                                catching_up.insert(batch.source.clone());
                                false
                            };
                            pending.logs.push(batch);
                        }
                        if waited && !pending.is_full() {
                            next = logs.try_recv().ok();
                        }
                    }
                    if !transitions.is_empty() {
                        self.count_alerts(&engine);
                    }
                    pending_since.get_or_insert_with(Instant::now);
                    if !transitions.is_empty() || done_catching_up || waited || pending.is_full() {
                        pending_since = None;
                        self.commit(&cfg, &mut fired, std::mem::take(&mut pending), transitions).await?;
                    }
                }
                _ = sleep_until_opt(flush_at) => {
                    pending_since = None;
                    self.commit(&cfg, &mut fired, std::mem::take(&mut pending), Vec::new()).await?;
                }
                changed = config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let new = config.borrow_and_update().clone();
                    let now = now_ms();
                    let mut transitions = engine.reload(new.rules.clone(), now);
                    transitions.extend(engine.retire(probe_target_gone(&new), now, TARGET_GONE));
                    if new.targets != cfg.targets {
                        self.metrics.forget_probes();
                    }
                    cfg = new;
                    pending_since = None;
                    self.commit(&cfg, &mut fired, std::mem::take(&mut pending), transitions).await?;
                    self.count_alerts(&engine);
                    let firing: Vec<AlertState> = engine
                        .alerts()
                        .filter(|a| a.status == AlertStatus::Firing)
                        .cloned()
                        .collect();
                    let upgrades = upgrade_plan(&cfg, &firing, &mut fired, now);
                    self.write(Pending::default(), upgrades).await?;
                }
                Some(cmd) = commands.recv() => {
                    self.handle(cmd, &engine, &cfg, &mut fired).await?;
                }
                _ = tick.tick() => {
                    self.retry_unwritten().await?;
                    let transitions = self.evaluate_windows(&cfg, &mut engine, &mut turns).await?;
                    if !transitions.is_empty() {
                        self.count_alerts(&engine);
                        pending_since = None;
                        self.commit(&cfg, &mut fired, std::mem::take(&mut pending), transitions).await?;
                    }
                    self.on_tick(&engine, &cfg, &mut fired).await?;
                }
                _ = self.shutdown.cancelled() => break,
            }
        }
        // Commit what is pending and what the sources delivered before they stopped.
        let now = now_ms();
        let mut transitions = Vec::new();
        while let Ok(more) = rx.try_recv() {
            for s in &more {
                transitions.extend(engine.observe(s, now));
            }
            pending.samples.extend(more);
        }
        while let Ok(batch) = logs.try_recv() {
            if batch.generation.is_some_and(|g| g != generation) {
                continue;
            }
            for s in &batch.data.gauges {
                transitions.extend(engine.observe(s, now));
            }
            pending.logs.push(batch);
        }
        self.commit(&cfg, &mut fired, pending, transitions).await?;
        Ok(())
    }

    /// Writes samples, alert changes and owed notifications in one transaction, off the
    /// async threads, then wakes the outbox.
    async fn commit(
        &self,
        cfg: &Config,
        fired: &mut HashMap<String, Fired>,
        pending: Pending,
        transitions: Vec<Transition>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let silences = self.silences.lock().await.clone();
        let mut firing_rules: std::collections::BTreeSet<String> = fired
            .values()
            .map(|f| f.notification.rule.clone())
            .collect();
        firing_rules.extend(
            transitions
                .iter()
                .filter(|t| t.kind == TransitionKind::Firing)
                .map(|t| t.alert.rule.clone()),
        );
        let silenced = suppression(cfg, &silences, &firing_rules, now);
        let plan = plan(cfg, fired, &transitions, now, &silenced);
        self.write(pending, plan).await
    }

    /// Evaluates the window rules that are due against the store (what was committed;
    /// samples waiting for the group commit are at most half a second behind).
    async fn evaluate_windows(
        &self,
        cfg: &Config,
        engine: &mut Engine,
        turns: &mut HashMap<String, RuleTurn>,
    ) -> anyhow::Result<Vec<Transition>> {
        let now = now_ms();
        turns.retain(|name, _| cfg.rules.iter().any(|r| &r.name == name));
        let mut due = Vec::new();
        for rule in &cfg.rules {
            let RuleKind::Window(th) = &rule.kind else {
                continue;
            };
            let turn = turns.entry(rule.name.clone()).or_insert_with(|| RuleTurn {
                at: now,
                memory: WindowMemory::default(),
            });
            if turn.at <= now {
                turn.at = now + th.every.as_millis().min(i64::MAX as u128) as i64;
                let memory = std::mem::take(&mut turn.memory);
                due.push((rule.name.clone(), th.clone(), memory));
            }
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let results = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<_>> {
            let read = store
                .snapshot()
                .and_then(|snap| Ok((snap, store.errors()?)));
            let (snap, errors) = match read {
                Ok(read) => read,
                // The file cannot be read now (it is being opened again after an I/O
                // error): the rules keep their state and are evaluated at their next turn.
                Err(e @ StoreError::Unavailable { .. }) => {
                    tracing::debug!(error = %e, "Window rules not evaluated this turn");
                    return Ok(due
                        .into_iter()
                        .map(|(name, _, memory)| (name, None, memory))
                        .collect());
                }
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for (name, th, mut memory) in due {
                // One rule that cannot be evaluated must not stop the others.
                let values = window_values(&errors, &snap, &th, now, &mut memory)
                    .inspect_err(
                        |e| tracing::error!(rule = %name, error = %e, "Cannot evaluate a rule"),
                    )
                    .ok();
                out.push((name, values, memory));
            }
            Ok(out)
        })
        .await??;
        let mut transitions = Vec::new();
        for (name, values, memory) in results {
            if let Some(turn) = turns.get_mut(&name) {
                turn.memory = memory;
            }
            if let Some(values) = values {
                transitions.extend(engine.evaluate(&name, &values, now));
            }
        }
        self.metrics
            .rule_evaluation_seconds
            .inc_by(started.elapsed().as_secs_f64());
        Ok(transitions)
    }

    /// Sets the alerts-by-state gauges.
    fn count_alerts(&self, engine: &Engine) {
        let firing = engine
            .alerts()
            .filter(|a| a.status == AlertStatus::Firing)
            .count() as i64;
        let all = engine.alerts().count() as i64;
        self.metrics.set_alerts(all - firing, firing);
    }

    fn degraded(&self) -> std::sync::MutexGuard<'_, Degraded> {
        self.degraded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `pending` and `plan`, with the data kept from commits that failed before.
    /// While the store cannot write its file, the plan's records are kept by the store and
    /// delivered from memory; the data is kept here (bounded), and capture clients waiting
    /// for it are answered that it was not stored.
    pub(super) async fn write(&self, pending: Pending, plan: Plan) -> anyhow::Result<()> {
        let kept = std::mem::take(&mut self.degraded().kept);
        if kept.is_empty()
            && pending.samples.is_empty()
            && pending.logs.is_empty()
            && plan.is_empty()
        {
            return Ok(());
        }
        let notified = plan.outbox.len();
        let Pending { samples, logs } = pending;
        let mut flat = Flat {
            samples,
            ..Flat::default()
        };
        // Capture requests wait for this commit; their data goes last, so that it can be
        // taken back if the commit fails.
        let mut committed = Vec::new();
        let mut captured = Flat::default();
        for mut b in logs {
            match b.committed.take() {
                Some(tell) => {
                    committed.push(tell);
                    captured.take_batch(&mut b);
                }
                None => flat.take_batch(&mut b),
            }
        }
        let mut all = kept;
        all.append(flat);
        let before_capture = all.mark();
        all.append(captured);
        let flat = all;
        let max_error_types: Vec<(String, usize)> = if flat.errors.is_empty() {
            Vec::new()
        } else {
            let cfg = self.config.borrow();
            cfg.logs
                .iter()
                .map(|l| (l.name.clone(), l.max_error_types))
                .collect()
        };
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let (result, flat) = tokio::task::spawn_blocking(move || {
            let mut batch = Batch {
                samples: &flat.samples,
                events: &flat.events,
                errors: &flat.errors,
                distinct: &flat.distinct,
                checkpoints: flat.checkpoints.clone(),
                max_error_types,
                ..Batch::default()
            };
            for (fp, rec) in &plan.put {
                batch.put_alert(fp.clone(), rec);
            }
            batch.delete_alerts = plan.delete;
            for e in &plan.outbox {
                batch.push_outbox(e);
            }
            for h in &plan.history {
                batch.push_history(h.at_ms, h);
            }
            let result = store.write(&batch);
            drop(batch);
            (result, flat)
        })
        .await?;
        match result {
            Ok(_) => {
                self.metrics.store_commits.inc();
                self.metrics
                    .store_commit_seconds
                    .inc_by(started.elapsed().as_secs_f64());
                // Lines are counted once committed: a batch dropped for a new generation is
                // read again, and counted then.
                for (source, counts) in &flat.counted {
                    self.metrics.log_counts(source, counts);
                }
                for tell in committed {
                    let _ = tell.send(());
                }
                self.metrics.samples.inc_by(flat.samples.len() as u64);
            }
            Err(StoreError::Unavailable { .. }) => {
                // Capture clients are answered 503 (`committed` dropped) and send again, so
                // their events are not kept: kept, they would count twice.
                drop(committed);
                let mut flat = flat;
                flat.truncate(before_capture);
                let dropped = self.degraded().keep(flat);
                if dropped > 0 {
                    self.metrics
                        .store_dropped
                        .get_or_create(&crate::metrics::ReasonLabels {
                            reason: "unwritable".into(),
                        })
                        .inc_by(dropped);
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.tell_critical_route().await?;
        if notified > 0 {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    /// Once a second while the store cannot write its file, or holds records in memory: tries
    /// again (the store opens the file again when its wait is over).
    async fn retry_unwritten(&self) -> anyhow::Result<()> {
        if !self.degraded().kept.is_empty() {
            return self.write(Pending::default(), Plan::default()).await;
        }
        let state = self.store.write_state();
        if state.failing.is_none() && state.unsaved.records == 0 && self.degraded().alert.is_none()
        {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await?;
        self.wake.notify_waiters();
        self.tell_critical_route().await
    }

    /// Fires the built-in alert when the store cannot write its file, straight to the
    /// critical route, and resolves it once the file took everything kept meanwhile.
    async fn tell_critical_route(&self) -> anyhow::Result<()> {
        let state = self.store.write_state();
        let now = now_ms();
        let path = self.store.path().display().to_string();
        let plan = {
            let mut d = self.degraded();
            match (&state.failing, d.alert.take()) {
                (Some((reason, since)), None) => {
                    let n = degraded::store_alert(&path, reason, *since, now);
                    let cfg = self.config.borrow();
                    let channels: Vec<String> = cfg
                        .routing
                        .channels_for(crate::vocab::Severity::Critical)
                        .iter()
                        .filter(|c| cfg.channels.contains_key(*c))
                        .cloned()
                        .collect();
                    tracing::error!(
                        rule = degraded::STORE_ALERT,
                        reason = %reason,
                        channels = %channels.join(","),
                        "Alert firing"
                    );
                    let event = crate::history::Event::new(
                        now,
                        &n.fingerprint,
                        degraded::STORE_ALERT,
                        crate::history::EventKind::Firing,
                    )
                    .detail(reason)
                    .severity(crate::vocab::Severity::Critical);
                    let plan = degraded::store_alert_plan(&n, &channels, event, now);
                    d.alert = Some((n, channels));
                    plan
                }
                (None, Some((mut n, channels))) if d.kept.is_empty() => {
                    n.status = crate::notify::Status::Resolved;
                    n.ended_at_ms = Some(now);
                    n.value_text = format!(
                        "Data file {path} writable again; what was kept in memory is stored"
                    );
                    tracing::info!(rule = degraded::STORE_ALERT, channels = %channels.join(","), "Alert resolved");
                    let event = crate::history::Event::new(
                        now,
                        &n.fingerprint,
                        degraded::STORE_ALERT,
                        crate::history::EventKind::Resolved,
                    )
                    .detail(format!(
                        "lasted {}",
                        crate::format::format_span(now - n.fired_at_ms)
                    ));
                    degraded::store_alert_plan(&n, &channels, event, now)
                }
                (_, alert) => {
                    d.alert = alert;
                    return Ok(());
                }
            }
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Batch::default();
            for e in &plan.outbox {
                batch.push_outbox(e);
            }
            for h in &plan.history {
                batch.push_history(h.at_ms, h);
            }
            store.write(&batch)
        })
        .await??;
        self.wake.notify_waiters();
        Ok(())
    }

    /// Once a second: held-back firings whose silence ended, escalation steps that came
    /// due, and reminders.
    async fn on_tick(
        &self,
        engine: &Engine,
        cfg: &Config,
        fired: &mut HashMap<String, Fired>,
    ) -> anyhow::Result<()> {
        if fired.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let silences = self.silences.lock().await.clone();
        let firing_rules: std::collections::BTreeSet<String> = fired
            .values()
            .map(|f| f.notification.rule.clone())
            .collect();
        let silenced = suppression(cfg, &silences, &firing_rules, now);
        let firing: Vec<AlertState> = engine
            .alerts()
            .filter(|a| a.status == AlertStatus::Firing)
            .cloned()
            .collect();
        let mut plan = tick_plan(cfg, &firing, fired, now, &silenced);
        // A severity can also rise without a reload (rules with two thresholds); catch it here.
        let up = upgrade_plan(cfg, &firing, fired, now);
        plan.put.extend(up.put);
        plan.outbox.extend(up.outbox);
        plan.history.extend(up.history);
        self.write(Pending::default(), plan).await
    }
}

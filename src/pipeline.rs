//! The pipeline: samples from the sources are committed to the store together with the alert
//! transitions they cause and the notifications those transitions owe, in one transaction;
//! then the outbox is woken. Rules are evaluated the moment a sample arrives.
//!
//! A firing alert's record keeps the notification it sent and the channels it went to, so
//! its resolve reaches exactly those channels, reads the same, and can still be sent when a
//! reload or a restart has removed the rule.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{Config, Rule, RuleKind, Severity};
use crate::format::format_value;
use crate::history::Event;
use crate::notify::outbox::Entry;
use crate::notify::{Notification, Status};
use crate::rules::{AlertState, AlertStatus, Engine, Transition, TransitionKind, window_values};
use crate::series::{Labels, Sample, SeriesKey};
use crate::silence::{Matchers, Silence};
use crate::source::log::{Handover, LogBatch};
use crate::store::{Batch, Store};

/// The most silences active at once; more is a mistake, and each costs every check.
const MAX_ACTIVE_SILENCES: usize = 1000;

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
struct Pending {
    samples: Vec<Sample>,
    logs: Vec<LogBatch>,
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

/// What the store keeps for one pending or firing alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub state: AlertState,
    /// Set once the alert fired.
    pub fired: Option<Fired>,
}

/// The firing notification, where it went, and who acknowledged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    pub channels: Vec<String>,
    pub notification: Notification,
    #[serde(default)]
    pub ack: Option<Ack>,
    /// The silence or maintenance window that kept the firing from being sent; it is sent
    /// when that ends, if the alert still fires.
    #[serde(default)]
    pub suppressed_by: Option<String>,
    /// How many escalation steps have been taken.
    #[serde(default)]
    pub escalated: usize,
    /// When a reminder (or the firing) was last sent; 0 before any.
    #[serde(default)]
    pub last_sent_ms: i64,
    /// When the firing was last re-sent to each Alertmanager channel.
    #[serde(default)]
    pub resent_ms: BTreeMap<String, i64>,
    /// When people were first told (later than the firing when a silence held it back).
    #[serde(default)]
    pub notified_at_ms: i64,
}

/// An acknowledgement: someone is on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
    pub comment: Option<String>,
}

/// A request to the pipeline, which owns the alert states (from the HTTP API).
#[derive(Debug)]
pub enum Command {
    /// Every pending and firing alert.
    Alerts(oneshot::Sender<Vec<AlertView>>),
    /// Every silence, with whether it is active.
    Silences(oneshot::Sender<Vec<Silence>>),
    /// Add a silence from now for `duration`.
    AddSilence {
        matchers: Matchers,
        duration: std::time::Duration,
        reason: String,
        by: String,
        reply: oneshot::Sender<Result<Silence, String>>,
    },
    /// End a silence now.
    ExpireSilence {
        id: u64,
        reply: oneshot::Sender<Result<Silence, String>>,
    },
    /// Acknowledge the firing alerts whose fingerprint or rule name is `alert`; the answer is
    /// the fingerprints acknowledged now, or why none matched.
    Ack {
        alert: String,
        by: String,
        comment: Option<String>,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
}

/// An alert as the API and `sloguard status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub fingerprint: String,
    pub rule: String,
    pub labels: Labels,
    pub severity: crate::config::Severity,
    /// `pending` or `firing`.
    pub status: String,
    pub since: String,
    pub fired_at: Option<String>,
    pub value: f64,
    pub reason: Option<String>,
    pub summary: Option<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub comment: Option<String>,
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
    pub shutdown: CancellationToken,
}

/// Whether an alert watches a probe series of a target the configuration no longer has.
fn probe_target_gone(cfg: &Config) -> impl Fn(&Rule, &Labels) -> bool + '_ {
    move |rule, labels| {
        rule.kind
            .selects()
            .is_some_and(|(metric, _)| metric.starts_with("probe_"))
            && labels
                .get("target")
                .is_some_and(|t| !cfg.targets.iter().any(|x| &x.name == t))
    }
}

const TARGET_GONE: &str = "the probe target was removed from the configuration";

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
        let mut next_evaluation: HashMap<String, i64> = HashMap::new();
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
                Some(batch) = logs.recv() => {
                    if batch.generation.is_some_and(|g| g != generation) {
                        continue;
                    }
                    let now = now_ms();
                    let mut transitions = Vec::new();
                    for s in &batch.data.gauges {
                        transitions.extend(engine.observe(s, now));
                    }
                    if !transitions.is_empty() {
                        self.count_alerts(&engine);
                    }
                    // A trickle of lines waits for the group commit like probe results; the
                    // end of a backlog is committed at once.
                    let done_catching_up = if batch.caught_up {
                        catching_up.remove(&batch.source)
                    } else {
                        catching_up.insert(batch.source.clone());
                        false
                    };
                    pending.logs.push(batch);
                    pending_since.get_or_insert_with(Instant::now);
                    if !transitions.is_empty() || done_catching_up || pending.is_full() {
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
                    let transitions = self.evaluate_thresholds(&cfg, &mut engine, &mut next_evaluation).await?;
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

    /// Evaluates the threshold rules that are due against the store (what was committed;
    /// samples waiting for the group commit are at most half a second behind).
    async fn evaluate_thresholds(
        &self,
        cfg: &Config,
        engine: &mut Engine,
        next: &mut HashMap<String, i64>,
    ) -> anyhow::Result<Vec<Transition>> {
        let now = now_ms();
        next.retain(|name, _| cfg.rules.iter().any(|r| &r.name == name));
        let mut due = Vec::new();
        for rule in &cfg.rules {
            let RuleKind::Threshold(th) = &rule.kind else {
                continue;
            };
            let at = next.entry(rule.name.clone()).or_insert(now);
            if *at <= now {
                *at = now + th.every.as_millis().min(i64::MAX as u128) as i64;
                due.push((rule.name.clone(), th.clone()));
            }
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let results = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<_>> {
            let snap = store.snapshot()?;
            let errors = store.errors()?;
            let mut out = Vec::new();
            for (name, th) in due {
                // One rule that cannot be evaluated must not stop the others.
                match window_values(&errors, &snap, &th, now) {
                    Ok(values) => out.push((name, values)),
                    Err(e) => tracing::error!(rule = %name, error = %e, "Cannot evaluate a rule"),
                }
            }
            Ok(out)
        })
        .await??;
        let mut transitions = Vec::new();
        for (name, values) in results {
            transitions.extend(engine.evaluate(&name, &values, now));
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

    async fn write(&self, pending: Pending, plan: Plan) -> anyhow::Result<()> {
        if pending.samples.is_empty() && pending.logs.is_empty() && plan.is_empty() {
            return Ok(());
        }
        let notified = plan.outbox.len();
        let Pending { mut samples, logs } = pending;
        let mut events = Vec::new();
        let mut errors = Vec::new();
        let mut checkpoints = Vec::new();
        let mut committed = Vec::new();
        let mut counted = Vec::new();
        for mut b in logs {
            committed.extend(b.committed.take());
            counted.push((b.source.clone(), std::mem::take(&mut b.data.counts)));
            checkpoints.extend(b.checkpoint_records());
            samples.append(&mut b.data.gauges);
            events.append(&mut b.data.events);
            errors.append(&mut b.data.errors);
        }
        let written = samples.len() as u64;
        let store = self.store.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            let mut batch = Batch {
                samples: &samples,
                events: &events,
                errors: &errors,
                checkpoints,
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
            store.write(&batch)
        })
        .await??;
        self.metrics.store_commits.inc();
        self.metrics
            .store_commit_seconds
            .inc_by(started.elapsed().as_secs_f64());
        // Lines are counted once committed: a batch dropped for a new generation is read
        // again, and counted then.
        for (source, counts) in &counted {
            self.metrics.log_counts(source, counts);
        }
        for tell in committed {
            let _ = tell.send(());
        }
        self.metrics.samples.inc_by(written);
        if notified > 0 {
            self.wake.notify_waiters();
        }
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

    async fn handle(
        &self,
        cmd: Command,
        engine: &Engine,
        cfg: &Config,
        fired: &mut HashMap<String, Fired>,
    ) -> anyhow::Result<()> {
        match cmd {
            Command::Silences(reply) => {
                let _ = reply.send(self.silences.lock().await.clone());
            }
            Command::AddSilence {
                matchers,
                duration,
                reason,
                by,
                reply,
            } => {
                let now = now_ms();
                let active = self
                    .silences
                    .lock()
                    .await
                    .iter()
                    .filter(|s| s.active(now))
                    .count();
                if active >= MAX_ACTIVE_SILENCES {
                    let _ = reply.send(Err(format!(
                        "{active} silences are active already; expire some first (`sloguard silence list`)"
                    )));
                    return Ok(());
                }
                let ends = now.saturating_add(duration.as_millis().min(i64::MAX as u128) as i64);
                let store = self.store.clone();
                let made = tokio::task::spawn_blocking(move || {
                    let mut silence = None;
                    let id = store.add_silence(|id| {
                        let s = Silence {
                            id,
                            matchers,
                            starts_ms: now,
                            ends_ms: ends,
                            reason,
                            by,
                        };
                        silence = Some(s.clone());
                        s
                    })?;
                    Ok::<_, crate::store::StoreError>((id, silence))
                })
                .await?;
                match made {
                    Ok((_, Some(s))) => {
                        tracing::info!(id = s.id, by = %s.by, reason = %s.reason, until = %crate::format::rfc3339(s.ends_ms), "Silence added");
                        self.silences.lock().await.push(s.clone());
                        let _ = reply.send(Ok(s));
                    }
                    Ok((_, None)) => {
                        let _ = reply.send(Err("the silence was not stored".into()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("the silence could not be stored: {e}")));
                    }
                }
            }
            Command::ExpireSilence { id, reply } => {
                let now = now_ms();
                let mut list = self.silences.lock().await;
                let Some(s) = list.iter_mut().find(|s| s.id == id) else {
                    let _ = reply.send(Err(format!(
                        "no silence #{id}; `sloguard silence list` shows them"
                    )));
                    return Ok(());
                };
                s.ends_ms = s.ends_ms.min(now);
                let copy = s.clone();
                drop(list);
                let store = self.store.clone();
                let saved = copy.clone();
                match tokio::task::spawn_blocking(move || store.put_silence(id, &saved)).await? {
                    Ok(()) => {
                        tracing::info!(id, "Silence expired");
                        let _ = reply.send(Ok(copy));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("the silence could not be stored: {e}")));
                    }
                }
                // A released alert notifies at the next tick.
            }
            Command::Alerts(reply) => {
                let views = engine
                    .alerts()
                    .map(|a| view(a, fired.get(&a.fingerprint())))
                    .collect();
                let _ = reply.send(views);
            }
            Command::Ack {
                alert,
                by,
                comment,
                reply,
            } => {
                let matching: Vec<AlertState> = engine
                    .alerts()
                    .filter(|a| a.status == AlertStatus::Firing)
                    .filter(|a| a.fingerprint() == alert || a.rule == alert)
                    .cloned()
                    .collect();
                if matching.is_empty() {
                    let _ = reply.send(Err(format!(
                        "no firing alert is named `{alert}`; `sloguard status` lists them"
                    )));
                    return Ok(());
                }
                let now = now_ms();
                let mut plan = Plan::default();
                let mut acked = Vec::new();
                for state in matching {
                    let fp = state.fingerprint();
                    let rule = state.rule.clone();
                    let Some(f) = fired.get_mut(&fp) else {
                        continue;
                    };
                    if f.ack.is_some() {
                        continue;
                    }
                    f.ack = Some(Ack {
                        by: by.clone(),
                        at_ms: now,
                        comment: comment.clone(),
                    });
                    tracing::info!(alert = %fp, by = %by, comment = comment.as_deref().unwrap_or(""), "Alert acknowledged");
                    // PagerDuty acknowledges the incident; other channels hear nothing new.
                    for ch in &f.channels {
                        if matches!(
                            cfg.channels.get(ch).map(|c| &c.kind),
                            Some(crate::config::ChannelKind::PagerDuty { .. })
                        ) {
                            let n = Notification {
                                status: Status::Acknowledged,
                                ..f.notification.clone()
                            };
                            plan.outbox.push(Entry::new(ch, n, now));
                        }
                    }
                    plan.put.push((
                        fp.clone(),
                        StoredAlert {
                            state,
                            fired: Some(f.clone()),
                        },
                    ));
                    let detail = match &comment {
                        Some(c) => format!("by {by}: {c}"),
                        None => format!("by {by}"),
                    };
                    plan.history
                        .push(Event::new(now, &fp, &rule, "acknowledged").detail(detail));
                    acked.push(fp);
                }
                match self.write(Pending::default(), plan).await {
                    Ok(()) => {
                        let _ = reply.send(Ok(acked));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!(
                            "the acknowledgement could not be stored: {e:#}"
                        )));
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The API's view of an alert.
fn view(a: &AlertState, fired: Option<&Fired>) -> AlertView {
    let ack = fired.and_then(|f| f.ack.as_ref());
    AlertView {
        fingerprint: a.fingerprint(),
        rule: a.rule.clone(),
        labels: a.labels.clone(),
        severity: a.severity,
        status: match a.status {
            AlertStatus::Pending => "pending".into(),
            AlertStatus::Firing => "firing".into(),
        },
        since: crate::format::rfc3339(a.since_ms),
        fired_at: a.fired_at_ms.map(crate::format::rfc3339),
        value: a.value,
        reason: a.note.clone(),
        summary: fired.map(|f| f.notification.summary.clone()),
        acknowledged_by: ack.map(|k| k.by.clone()),
        acknowledged_at: ack.map(|k| crate::format::rfc3339(k.at_ms)),
        comment: ack.and_then(|k| k.comment.clone()),
    }
}

/// The store changes a set of transitions calls for.
#[derive(Debug, Default)]
pub struct Plan {
    pub put: Vec<(String, StoredAlert)>,
    pub delete: Vec<String>,
    pub outbox: Vec<Entry>,
    pub history: Vec<Event>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.put.is_empty()
            && self.delete.is_empty()
            && self.outbox.is_empty()
            && self.history.is_empty()
    }
}

/// Decides, without I/O, what `transitions` write: alert records, deletions, and one outbox
/// entry per notification and channel. Logs each state change. Updates `fired`.
pub fn plan(
    cfg: &Config,
    fired: &mut HashMap<String, Fired>,
    transitions: &[Transition],
    now: i64,
    silenced: &dyn Fn(&str, &Labels) -> Option<String>,
) -> Plan {
    let mut plan = Plan::default();
    for t in transitions {
        let fp = t.alert.fingerprint();
        let rule = cfg.rules.iter().find(|r| r.name == t.alert.rule);
        let labels = SeriesKey {
            name: String::new(),
            labels: t.alert.labels.clone(),
        }
        .to_string();
        match t.kind {
            TransitionKind::Pending => {
                tracing::info!(rule = %t.alert.rule, labels = %labels, "Alert pending");
                plan.put.push((
                    fp,
                    StoredAlert {
                        state: t.alert.clone(),
                        fired: None,
                    },
                ));
            }
            TransitionKind::Cleared => {
                tracing::info!(rule = %t.alert.rule, labels = %labels, "Alert cleared before firing");
                fired.remove(&fp);
                plan.delete.push(fp);
            }
            TransitionKind::Firing => {
                let Some(rule) = rule else { continue };
                let n = notification(rule, t);
                let suppressed_by = silenced(&t.alert.rule, &t.alert.labels);
                let suppressed = suppressed_by.is_some();
                // A silenced alert is recorded and notifies no one, until its silence ends.
                let channels: Vec<String> = match suppressed_by {
                    Some(_) => Vec::new(),
                    None => routed(cfg, rule, &t.alert.labels, t.alert.severity),
                };
                tracing::info!(
                    rule = %t.alert.rule,
                    labels = %labels,
                    severity = %t.alert.severity,
                    reason = t.alert.note.as_deref().unwrap_or(""),
                    channels = %channels.join(","),
                    silenced_by = suppressed_by.as_deref().unwrap_or(""),
                    "Alert firing"
                );
                for ch in &channels {
                    plan.outbox.push(Entry::new(ch, n.clone(), now));
                }
                let mut detail = t.alert.note.clone().unwrap_or_default();
                if let Some(why) = &suppressed_by {
                    detail = format!("{detail} (held back: {why})");
                }
                plan.history.push(
                    Event::new(now, &fp, &t.alert.rule, "firing")
                        .detail(detail.trim())
                        .severity(t.alert.severity),
                );
                let f = Fired {
                    channels,
                    notification: n,
                    ack: None,
                    suppressed_by,
                    escalated: 0,
                    last_sent_ms: now,
                    resent_ms: BTreeMap::new(),
                    notified_at_ms: if suppressed { 0 } else { now },
                };
                fired.insert(fp.clone(), f.clone());
                plan.put.push((
                    fp,
                    StoredAlert {
                        state: t.alert.clone(),
                        fired: Some(f),
                    },
                ));
            }
            TransitionKind::Resolved => {
                plan.delete.push(fp.clone());
                let earlier = fired.remove(&fp);
                // The resolve goes where the firing went, and reads like it.
                let (n, channels) = match (earlier, rule) {
                    (Some(f), rule) => {
                        let mut n = match rule {
                            Some(rule) => notification(rule, t),
                            None => resolved_from(&f.notification, t),
                        };
                        n.fired_at_ms = f.notification.fired_at_ms;
                        (n, f.channels)
                    }
                    (None, Some(rule)) => (
                        notification(rule, t),
                        routed(cfg, rule, &t.alert.labels, t.alert.severity),
                    ),
                    (None, None) => {
                        tracing::warn!(rule = %t.alert.rule, labels = %labels, "Alert resolved; its rule and firing record are gone, so no resolve is sent");
                        continue;
                    }
                };
                let (deliverable, lost): (Vec<String>, Vec<String>) = channels
                    .into_iter()
                    .partition(|c| cfg.channels.contains_key(c));
                if !lost.is_empty() {
                    tracing::warn!(rule = %t.alert.rule, channels = %lost.join(","), "The resolve cannot go to channels removed from the configuration");
                }
                tracing::info!(
                    rule = %t.alert.rule,
                    labels = %labels,
                    severity = %t.alert.severity,
                    note = t.reason.as_deref().unwrap_or(""),
                    channels = %deliverable.join(","),
                    "Alert resolved"
                );
                for ch in &deliverable {
                    plan.outbox.push(Entry::new(ch, n.clone(), now));
                }
                let lasted = format!(
                    "lasted {}",
                    crate::format::format_span(t.at_ms - t.alert.since_ms)
                );
                let detail = match &t.reason {
                    Some(r) => format!("{lasted}; {r}"),
                    None => lasted,
                };
                plan.history
                    .push(Event::new(now, &fp, &t.alert.rule, "resolved").detail(detail));
            }
        }
    }
    plan
}

/// What time owes the firing alerts at `now`, without I/O: the held-back firing of alerts
/// whose silence ended, escalation steps that came due (to channels not yet notified; the
/// resolve will go there too), and reminders every `repeat_interval`. Acknowledged and
/// silenced alerts get neither escalations nor reminders.
pub fn tick_plan(
    cfg: &Config,
    firing: &[AlertState],
    fired: &mut HashMap<String, Fired>,
    now: i64,
    silenced: &dyn Fn(&str, &Labels) -> Option<String>,
) -> Plan {
    let mut plan = Plan::default();
    for state in firing {
        let fp = state.fingerprint();
        let Some(f) = fired.get_mut(&fp) else {
            continue;
        };
        let mut changed = false;
        if f.suppressed_by.is_some() {
            if silenced(&state.rule, &state.labels).is_some() {
                continue;
            }
            let Some(rule) = cfg.rules.iter().find(|r| r.name == state.rule) else {
                continue;
            };
            f.channels = routed(cfg, rule, &state.labels, state.severity);
            if state.severity > f.notification.severity {
                // Raised while held back: it goes out once, as it is now.
                f.notification.severity = state.severity;
                refresh_figures(&mut f.notification, rule, state, now);
            }
            tracing::info!(alert = %fp, was = f.suppressed_by.as_deref().unwrap_or(""), channels = %f.channels.join(","), "Silence over; sending the firing alert");
            plan.history.push(
                Event::new(now, &fp, &state.rule, "released")
                    .detail(f.suppressed_by.clone().unwrap_or_default()),
            );
            f.suppressed_by = None;
            f.last_sent_ms = now;
            f.notified_at_ms = now;
            for ch in &f.channels {
                plan.outbox
                    .push(Entry::new(ch, f.notification.clone(), now));
                if is_alertmanager(cfg, ch) {
                    // The release is this interval's send.
                    f.resent_ms.insert(ch.clone(), now);
                }
                // Acknowledged while held back: PagerDuty learns it right after the trigger.
                if f.ack.is_some() && is_pagerduty(cfg, ch) {
                    let n = Notification {
                        status: Status::Acknowledged,
                        ..f.notification.clone()
                    };
                    plan.outbox.push(Entry::new(ch, n, now));
                }
            }
            changed = true;
        } else if f.ack.is_none() && silenced(&state.rule, &state.labels).is_none() {
            // Escalation counts from when people were first told, not from a held-back firing.
            let fired_at = if f.notified_at_ms > 0 {
                f.notified_at_ms
            } else {
                f.notification.fired_at_ms
            };
            let steps: Vec<&crate::config::EscalationStep> = cfg
                .routing
                .escalation
                .iter()
                .filter(|s| s.severity == state.severity)
                .collect();
            while let Some(step) = steps.get(f.escalated) {
                if fired_at.saturating_add(step.after.as_millis() as i64) > now {
                    break;
                }
                f.escalated += 1;
                changed = true;
                let new: Vec<String> = step
                    .channels
                    .iter()
                    .filter(|c| cfg.channels.contains_key(*c) && !f.channels.contains(*c))
                    .cloned()
                    .collect();
                let n = Notification {
                    note: Some(format!(
                        "Escalated: unacknowledged for {}",
                        crate::format::format_span(step.after.as_millis() as i64)
                    )),
                    ..f.notification.clone()
                };
                tracing::info!(alert = %fp, after = %humantime::format_duration(step.after), channels = %new.join(","), "Alert escalated");
                for ch in &new {
                    plan.outbox.push(Entry::new(ch, n.clone(), now));
                }
                plan.history.push(
                    Event::new(now, &fp, &state.rule, "escalated").detail(format!(
                        "after {}: {}",
                        humantime::format_duration(step.after),
                        new.join(", ")
                    )),
                );
                f.channels.extend(new);
            }
            if let Some(every) = cfg.routing.repeat_interval {
                let last = if f.last_sent_ms > 0 {
                    f.last_sent_ms
                } else {
                    fired_at
                };
                if now.saturating_sub(last) >= every.as_millis() as i64 {
                    f.last_sent_ms = now;
                    changed = true;
                    let n = Notification {
                        note: Some(format!(
                            "Reminder: still firing, unacknowledged, after {}",
                            crate::format::format_span(now - fired_at)
                        )),
                        ..f.notification.clone()
                    };
                    tracing::info!(alert = %fp, "Alert reminder");
                    // PagerDuty keeps its own incident and Alertmanager gets its re-sends; a
                    // reminder would add nothing there.
                    for ch in f
                        .channels
                        .iter()
                        .filter(|c| !is_pagerduty(cfg, c) && !is_alertmanager(cfg, c))
                    {
                        plan.outbox.push(Entry::new(ch, n.clone(), now));
                    }
                }
            }
        }
        // Alertmanager forgets an alert that is not re-sent; keep it alive while it fires.
        for ch in &f.channels {
            let Some(crate::config::ChannelKind::Alertmanager {
                resend_interval, ..
            }) = cfg.channels.get(ch).map(|c| &c.kind)
            else {
                continue;
            };
            let last = f
                .resent_ms
                .get(ch)
                .copied()
                .unwrap_or(f.notification.fired_at_ms);
            if now.saturating_sub(last) >= resend_interval.as_millis() as i64 {
                f.resent_ms.insert(ch.clone(), now);
                plan.outbox
                    .push(Entry::new(ch, f.notification.clone(), now));
                changed = true;
            }
        }
        if changed {
            plan.put.push((
                fp,
                StoredAlert {
                    state: state.clone(),
                    fired: Some(f.clone()),
                },
            ));
        }
    }
    plan
}

/// Why an alert must not notify now, if it must not: a silence, a maintenance window, or a
/// rule it `depends_on` that fires (inhibition).
fn suppression<'a>(
    cfg: &'a Config,
    silences: &'a [Silence],
    firing_rules: &'a std::collections::BTreeSet<String>,
    now: i64,
) -> impl Fn(&str, &Labels) -> Option<String> + 'a {
    move |rule: &str, labels: &Labels| {
        crate::silence::silenced_by(silences, &cfg.maintenance, rule, labels, now).or_else(|| {
            let r = cfg.rules.iter().find(|r| r.name == rule)?;
            r.depends_on
                .iter()
                .find(|d| firing_rules.contains(*d))
                .map(|d| format!("rule {d}, which fires"))
        })
    }
}

/// Puts the alert's figures of now (value, reason) into its notification.
fn refresh_figures(n: &mut Notification, rule: &Rule, state: &AlertState, now: i64) {
    let fresh = notification(
        rule,
        &Transition {
            kind: TransitionKind::Firing,
            alert: state.clone(),
            at_ms: now,
            reason: None,
        },
    );
    n.value_text = fresh.value_text;
    n.reason = fresh.reason;
}

/// Firing alerts whose severity went up (a reload made their rule critical) are news at
/// once: the firing goes out again with the new severity, to every channel of the new route
/// and those told before, with a note; the resolve will reach all of them.
pub fn upgrade_plan(
    cfg: &Config,
    firing: &[AlertState],
    fired: &mut HashMap<String, Fired>,
    now: i64,
) -> Plan {
    let mut plan = Plan::default();
    for state in firing {
        let fp = state.fingerprint();
        let Some(f) = fired.get_mut(&fp) else {
            continue;
        };
        let before = f.notification.severity;
        if state.severity <= before || f.suppressed_by.is_some() {
            continue;
        }
        let Some(rule) = cfg.rules.iter().find(|r| r.name == state.rule) else {
            continue;
        };
        f.notification.severity = state.severity;
        for ch in routed(cfg, rule, &state.labels, state.severity) {
            if !f.channels.contains(&ch) {
                f.channels.push(ch);
            }
        }
        // The figures that raised it, not those it fired with.
        refresh_figures(&mut f.notification, rule, state, now);
        let n = Notification {
            note: Some(format!(
                "Severity raised from {before} to {}",
                state.severity
            )),
            ..f.notification.clone()
        };
        tracing::info!(alert = %fp, from = %before, to = %state.severity, channels = %f.channels.join(","), "Alert severity raised");
        for ch in &f.channels {
            plan.outbox.push(Entry::new(ch, n.clone(), now));
        }
        plan.history.push(
            Event::new(now, &fp, &state.rule, "upgraded")
                .detail(format!("{before} → {}", state.severity))
                .severity(state.severity),
        );
        plan.put.push((
            fp,
            StoredAlert {
                state: state.clone(),
                fired: Some(f.clone()),
            },
        ));
    }
    plan
}

fn is_pagerduty(cfg: &Config, channel: &str) -> bool {
    matches!(
        cfg.channels.get(channel).map(|c| &c.kind),
        Some(crate::config::ChannelKind::PagerDuty { .. })
    )
}

fn is_alertmanager(cfg: &Config, channel: &str) -> bool {
    matches!(
        cfg.channels.get(channel).map(|c| &c.kind),
        Some(crate::config::ChannelKind::Alertmanager { .. })
    )
}

/// The configured channels a rule's notifications go to.
fn routed(cfg: &Config, rule: &Rule, labels: &Labels, severity: Severity) -> Vec<String> {
    rule.route_as(&cfg.routing, labels, severity)
        .iter()
        .filter(|c| cfg.channels.contains_key(*c))
        .cloned()
        .collect()
}

/// A resolve built from the firing notification, for an alert whose rule is gone.
fn resolved_from(firing: &Notification, t: &Transition) -> Notification {
    Notification {
        status: Status::Resolved,
        ended_at_ms: Some(t.at_ms),
        note: t.reason.clone(),
        reason: t.alert.note.clone(),
        ..firing.clone()
    }
}

/// Fills `{label}` placeholders of a rule's summary.
fn render_summary(summary: &str, labels: &Labels) -> String {
    let mut out = summary.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The notification a firing or resolved transition owes.
pub fn notification(rule: &Rule, t: &Transition) -> Notification {
    let a = &t.alert;
    let value_text = match &rule.kind {
        RuleKind::Consecutive(c) if c.metric == "probe_up" && c.condition.to_string() == "< 1" => {
            format!(
                "Consecutive failed probes: {} (threshold: {})",
                a.breaches, c.fire_after
            )
        }
        RuleKind::Consecutive(c) => format!(
            "{}: {} (threshold: {}; {} consecutive sample{}, fires after {})",
            c.metric,
            format_value(a.value),
            c.condition,
            a.breaches,
            if a.breaches == 1 { "" } else { "s" },
            c.fire_after
        ),
        RuleKind::Threshold(th) => {
            use crate::config::WindowInput;
            let hold = if th.hold.is_zero() {
                String::new()
            } else {
                format!(", for {}", humantime::format_duration(th.hold))
            };
            let d = humantime::format_duration;
            match &th.input {
                WindowInput::Series {
                    metric,
                    agg,
                    window,
                    ..
                } => format!(
                    "{} of {metric} over {}: {} (threshold: {}{hold})",
                    crate::query::agg_name(*agg),
                    d(*window),
                    format_value(a.value),
                    th.condition,
                ),
                WindowInput::Ratio {
                    numerator,
                    denominator,
                    window,
                    ..
                } => format!(
                    "{} / {} over {}: {} (threshold: {}{hold})",
                    numerator.0,
                    denominator.0,
                    d(*window),
                    format_value(a.value),
                    th.condition,
                ),
                WindowInput::Growth {
                    metric,
                    window,
                    per_sample,
                    ..
                } => format!(
                    "{metric} grew by {} {} (threshold: {}{hold})",
                    format_value(a.value),
                    if *per_sample {
                        "since its previous point".to_string()
                    } else {
                        format!("over {}", d(*window))
                    },
                    th.condition,
                ),
                WindowInput::Stale {
                    metric, max_age, ..
                } => format!("No new point of {metric} for more than {}", d(*max_age)),
                WindowInput::Slo {
                    objective, period, ..
                } => format!(
                    "SLO {}% over {}: the error budget burns too fast",
                    format_value(objective * 100.0),
                    d(*period)
                ),
                WindowInput::NewErrors { quiet, .. } => format!(
                    "A new error type, not seen in the {} before: {}",
                    d(*quiet),
                    a.labels.get("pattern").map(String::as_str).unwrap_or("")
                ),
            }
        }
    };
    let resolved = t.kind == TransitionKind::Resolved;
    Notification {
        status: if resolved {
            Status::Resolved
        } else {
            Status::Firing
        },
        rule: rule.name.clone(),
        fingerprint: a.fingerprint(),
        severity: a.severity,
        summary: render_summary(&rule.summary, &a.labels),
        labels: a.labels.clone(),
        value_text,
        reason: a.note.clone(),
        note: t.reason.clone(),
        started_at_ms: a.since_ms,
        fired_at_ms: a.fired_at_ms.unwrap_or(t.at_ms),
        ended_at_ms: resolved.then_some(t.at_ms),
        runbook_url: rule.runbook_url.clone(),
        dashboard_url: rule.dashboard_url.clone(),
        grouped: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::series::SeriesKey;

    #[test]
    fn a_new_error_type_fires_once_stays_firing_while_it_happens_and_then_resolves() {
        let text = r#"
[routing]
warning = ["hook"]
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[logs]]
name = "app"
files = ["/var/log/app.log"]
[[logs.errors]]
message = "error"
[[rules]]
name = "new_errors"
kind = "new_error_type"
source = "app"
severity = "warning"
summary = "New error"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let RuleKind::Threshold(th) = &cfg.rules[0].kind else {
            panic!()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = 3_600_000;
        let start = crate::clock::now_ms() / hour * hour - 10 * hour;
        let seen = |at: i64| crate::store::logs::ErrorSeen {
            source: "app".into(),
            id: 7,
            pattern: "timeout after # ms".into(),
            last_message: format!("timeout after {} ms", at % 1000),
            first_ms: at,
            last_ms: at,
            count: 1,
            windows: vec![(at / hour * hour, 1)],
        };
        // Seen every hour for four hours from `start`, then no more.
        for h in 0..4 {
            store
                .write(&Batch {
                    errors: &[seen(start + h * hour + 60_000)],
                    ..Batch::default()
                })
                .unwrap();
        }
        let (mut engine, _) = Engine::restore(cfg.rules.clone(), vec![], start);
        let mut log = Vec::new();
        for step in 0..16 {
            // Every 30 minutes from the first sighting on.
            let t = start + 120_000 + step * hour / 2;
            let values =
                window_values(&store.errors().unwrap(), &store.snapshot().unwrap(), th, t).unwrap();
            for tr in engine.evaluate("new_errors", &values, t) {
                log.push((step, tr.kind));
            }
        }
        // Fires at the first sighting, goes on through the next three hours, and resolves
        // once a whole hour's count since the window's start shows none: the last sighting
        // was at 3 h 1 min, the window of 1 h reaches back to the start of its hour, so the
        // resolve comes at 5 h 2 min (counts are per hour).
        assert_eq!(
            log,
            vec![(0, TransitionKind::Firing), (10, TransitionKind::Resolved)],
            "{log:?}"
        );
    }

    #[test]
    fn an_slo_burning_slowly_warns_and_one_burning_fast_pages() {
        let text = r#"
[routing]
warning = ["hook"]
critical = ["hook"]
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[rules]]
name = "availability"
kind = "slo"
objective = 99.9
up = { metric = "probe_up", match = { target = "api" } }
summary = "SLO"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let RuleKind::Threshold(th) = &cfg.rules[0].kind else {
            panic!()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = crate::clock::now_ms() / 60_000 * 60_000;
        let key = SeriesKey::new("probe_up", &[("target", "api")]);
        // Three days of a probe a minute, one failure in 300 (0.33 %: the budget of 0.1 %
        // burns 3.3× too fast), none in the last 10 minutes.
        let n = 3 * 24 * 60;
        let samples: Vec<Sample> = (0..n)
            .map(|i| Sample {
                series: key.clone(),
                ts_ms: now - (n - i) * 60_000,
                value: if i % 300 == 150 && i < n - 10 {
                    0.0
                } else {
                    1.0
                },
                note: None,
            })
            .collect();
        store.append(&samples).unwrap();
        let values = |at: i64| {
            window_values(&store.errors().unwrap(), &store.snapshot().unwrap(), th, at).unwrap()
        };
        let slow = values(now);
        assert_eq!(slow[0].value, Some(1.0), "{slow:?}");
        let note = slow[0].note.clone().unwrap();
        assert!(note.contains("over 3days and"), "{note}");
        assert!(note.contains("budget left"), "{note}");
        let (mut engine, _) = Engine::restore(cfg.rules.clone(), vec![], now);
        let t = engine.evaluate("availability", &slow, now);
        assert_eq!(t[0].alert.severity, Severity::Warning);
        // Then the API fails for five minutes: 14.4× over 1h and 5m pages.
        let down: Vec<Sample> = (0..5)
            .map(|i| Sample {
                series: key.clone(),
                ts_ms: now + i * 60_000,
                value: 0.0,
                note: None,
            })
            .collect();
        store.append(&down).unwrap();
        let fast = values(now + 5 * 60_000);
        assert_eq!(fast[0].value, Some(2.0), "{fast:?}");
        engine.evaluate("availability", &fast, now + 5 * 60_000);
        assert_eq!(engine.alerts().next().unwrap().severity, Severity::Critical);
    }

    fn cfg(extra_rule: &str, routing_critical: &str) -> Config {
        let text = format!(
            r#"
[routing]
critical = [{routing_critical}]
[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/slack"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[targets]]
name = "web"
url = "http://127.0.0.1:9/"
{extra_rule}
"#
        );
        config::parse(&text, std::path::Path::new("test.toml")).unwrap()
    }

    const RULE: &str = r#"
[[rules]]
name = "down"
kind = "consecutive"
match = { target = "web" }
fire_after = 1
severity = "critical"
summary = "Web down"
"#;

    fn fail(t: i64) -> Sample {
        Sample {
            series: SeriesKey::new("probe_up", &[("target", "web")]),
            ts_ms: t,
            value: 0.0,
            note: Some("HTTP 500".into()),
        }
    }

    fn outbox_channels(p: &Plan) -> Vec<(&str, Status)> {
        p.outbox
            .iter()
            .map(|e| (e.channel.as_str(), e.notification.status))
            .collect()
    }

    #[test]
    fn a_resolve_goes_where_the_firing_went_even_after_routing_changed() {
        let before = cfg(RULE, r#""slack", "hook""#);
        let (mut engine, _) = Engine::restore(before.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(1), 1);
        let p = plan(&before, &mut fired, &ts, 1, &|_, _| None);
        assert_eq!(
            outbox_channels(&p),
            vec![("slack", Status::Firing), ("hook", Status::Firing)]
        );
        // A reload routes critical to Slack only; the rule itself is then removed.
        let after = cfg("", r#""slack""#);
        let ts = engine.reload(after.rules.clone(), 5);
        let p = plan(&after, &mut fired, &ts, 5, &|_, _| None);
        assert_eq!(
            outbox_channels(&p),
            vec![("slack", Status::Resolved), ("hook", Status::Resolved)]
        );
        let n = &p.outbox[0].notification;
        assert_eq!(n.summary, "Web down");
        assert_eq!(n.fired_at_ms, 1);
        assert!(n.note.as_deref().unwrap_or("").contains("removed"));
        assert_eq!(p.delete, vec![r#"down{target="web"}"#.to_string()]);
    }

    #[test]
    fn a_firing_alert_of_a_removed_target_resolves() {
        let c = cfg(RULE, r#""slack""#);
        let (mut engine, _) = Engine::restore(c.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(1), 1);
        plan(&c, &mut fired, &ts, 1, &|_, _| None);
        let mut without = c.clone();
        without.targets.clear();
        let ts = engine.retire(probe_target_gone(&without), 9, TARGET_GONE);
        let p = plan(&without, &mut fired, &ts, 9, &|_, _| None);
        assert_eq!(outbox_channels(&p), vec![("slack", Status::Resolved)]);
        assert_eq!(p.outbox[0].notification.note.as_deref(), Some(TARGET_GONE));
    }

    #[test]
    fn escalation_and_reminders_follow_the_clock_until_acknowledged() {
        let mut c = cfg(RULE, r#""slack""#);
        c.routing.repeat_interval = Some(std::time::Duration::from_secs(3600));
        c.routing.escalation = vec![
            crate::config::EscalationStep {
                severity: crate::config::Severity::Critical,
                after: std::time::Duration::from_secs(30 * 60),
                channels: vec!["hook".into()],
            },
            crate::config::EscalationStep {
                severity: crate::config::Severity::Warning,
                after: std::time::Duration::from_secs(60),
                channels: vec!["hook".into()],
            },
        ];
        let (mut engine, _) = Engine::restore(c.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(0), 0);
        plan(&c, &mut fired, &ts, 0, &|_, _| None);
        let firing: Vec<AlertState> = engine.alerts().cloned().collect();
        let min = 60_000;
        let mut timeline = Vec::new();
        // Three simulated hours, one tick a minute.
        for m in 1..=180 {
            let p = tick_plan(&c, &firing, &mut fired, m * min, &|_, _| None);
            for e in p.outbox {
                timeline.push((m, e.channel, e.notification.note.unwrap_or_default()));
            }
        }
        let expect = |m: i64, ch: &str, note: &str| (m, ch.to_string(), note.to_string());
        assert_eq!(
            timeline,
            vec![
                expect(30, "hook", "Escalated: unacknowledged for 30m"),
                expect(
                    60,
                    "slack",
                    "Reminder: still firing, unacknowledged, after 1h"
                ),
                expect(
                    60,
                    "hook",
                    "Reminder: still firing, unacknowledged, after 1h"
                ),
                expect(
                    120,
                    "slack",
                    "Reminder: still firing, unacknowledged, after 2h"
                ),
                expect(
                    120,
                    "hook",
                    "Reminder: still firing, unacknowledged, after 2h"
                ),
                expect(
                    180,
                    "slack",
                    "Reminder: still firing, unacknowledged, after 3h"
                ),
                expect(
                    180,
                    "hook",
                    "Reminder: still firing, unacknowledged, after 3h"
                ),
            ]
        );
        // Acknowledged: nothing more.
        fired.values_mut().for_each(|f| {
            f.ack = Some(Ack {
                by: "alice".into(),
                at_ms: 0,
                comment: None,
            })
        });
        let p = tick_plan(&c, &firing, &mut fired, 400 * min, &|_, _| None);
        assert!(p.outbox.is_empty());
    }

    #[test]
    fn a_silenced_alert_raised_meanwhile_is_sent_once_at_its_new_severity() {
        let text = r#"
[routing]
warning = ["slack"]
critical = ["slack", "hook"]
[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/slack"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[targets]]
name = "web"
url = "http://127.0.0.1:9/health"
[[rules]]
name = "down"
kind = "consecutive"
match = { target = "web" }
fire_after = 1
severity = "warning"
summary = "Web down"
"#;
        let c = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let (mut engine, _) = Engine::restore(c.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(1), 1);
        let held = plan(&c, &mut fired, &ts, 1, &|_, _| {
            Some("silence 1".to_string())
        });
        assert!(held.outbox.is_empty(), "held back by the silence");
        // Raised to critical while held back; then the silence ends.
        let mut firing: Vec<AlertState> = engine.alerts().cloned().collect();
        firing[0].severity = crate::config::Severity::Critical;
        let released = tick_plan(&c, &firing, &mut fired, 2, &|_, _| None);
        let raised = upgrade_plan(&c, &firing, &mut fired, 2);
        let sent: Vec<(&str, crate::config::Severity, Option<String>)> = released
            .outbox
            .iter()
            .chain(&raised.outbox)
            .map(|e| {
                (
                    e.channel.as_str(),
                    e.notification.severity,
                    e.notification.note.clone(),
                )
            })
            .collect();
        use crate::config::Severity::Critical;
        assert_eq!(
            sent,
            vec![("slack", Critical, None), ("hook", Critical, None)],
            "one firing each, at the new severity; no second 'raised' message"
        );
    }

    #[test]
    fn label_routes_decide_before_the_severity_lists() {
        let text = r#"
[routing]
critical = ["slack"]
[[routing.route]]
match = { target = "staging" }
channels = ["hook"]
[[routing.route]]
match = { rule = "down", target = "web" }
severity = "warning"
channels = ["hook"]
[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/slack"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[rules]]
name = "down"
kind = "consecutive"
severity = "critical"
summary = "{target} down"
"#;
        let c = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let rule = &c.rules[0];
        let labels = |t: &str| -> Labels { [("target".to_string(), t.to_string())].into() };
        assert_eq!(
            rule.route(&c.routing, &labels("staging")),
            ["hook".to_string()]
        );
        // The second route is for warnings only; this rule is critical.
        assert_eq!(
            rule.route(&c.routing, &labels("web")),
            ["slack".to_string()]
        );
    }

    #[test]
    fn values_print_short() {
        assert_eq!(format_value(9.5), "9.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.12345), "0.123");
        assert_eq!(format_value(-0.0001), "0");
        assert_eq!(format_value(1200.0), "1200");
    }
}

//! The durable outbox: every notification is committed to the store (in the same transaction
//! as the alert transition that caused it) before anything is sent; one worker per channel
//! delivers its entries, each alert's in order but the most severe due entry first, retrying
//! with exponential backoff and jitter, honouring `Retry-After` (up to `max_retry_after`)
//! for that entry alone, and deleting an entry only after the channel accepted it. What is
//! pending at a restart is delivered after it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Notification, SendError, send};
use crate::clock::now_ms;
use crate::config::{Channel, Config, OutboxConfig};
use crate::history::{Event, EventKind};
use crate::store::Store;

/// How long a stopping daemon keeps delivering entries that are due.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One notification on its way to one channel. On disk: an outbox (or dead-letter) record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub channel: String,
    pub notification: Notification,
    /// A report's mail, for an email channel; the notification then only names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Box<super::email::ReportMail>>,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

impl Entry {
    pub fn new(channel: &str, notification: Notification, now_ms: i64) -> Entry {
        Entry {
            channel: channel.to_string(),
            notification,
            report: None,
            created_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
        }
    }
}

/// The delay before retry number `attempt` (1-based): exponential with ±20 % jitter, capped
/// at `max_backoff`, and never shorter than the channel's `Retry-After` (itself honoured up
/// to `max_retry_after`).
pub fn backoff(
    cfg: &OutboxConfig,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = cfg
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    let jittered = exp.mul_f64((1.0 + jitter.clamp(-0.2, 0.2)).max(0.0));
    let base = jittered.min(cfg.max_backoff);
    match retry_after.map(|ra| ra.min(cfg.max_retry_after)) {
        Some(ra) if ra > base => ra,
        _ => base,
    }
}

/// Runs `f` on the store off the async threads.
async fn on_store<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

/// A running worker and what it was started with.
struct Running {
    channel: Channel,
    cfg: OutboxConfig,
    group_wait: Duration,
    replaced: CancellationToken,
    id: tokio::task::Id,
}

/// Runs one delivery worker per configured channel, following configuration reloads. A worker
/// that panics is reported and started again; a worker whose channel or `[outbox]` settings
/// changed is replaced at once, without draining, so the old settings send nothing more.
pub async fn run(
    store: Arc<Store>,
    mut config: watch::Receiver<Arc<Config>>,
    wake: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("sloguard/", env!("CARGO_PKG_VERSION")))
        .build()?;
    // Dropping the set (when this task ends or panics) aborts every worker.
    let mut set: JoinSet<()> = JoinSet::new();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    // One lock per channel name, held by its worker for its whole life: a replacement waits
    // for the worker it replaces (which may be finishing a send), so no entry is ever being
    // sent by two workers at once.
    let mut locks: BTreeMap<String, Arc<tokio::sync::Mutex<()>>> = BTreeMap::new();
    let mut restart_due: Option<Instant> = None;
    loop {
        let cfg = config.borrow_and_update().clone();
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| {
                cfg.channels.get(*name) != Some(&r.channel)
                    || cfg.outbox != r.cfg
                    || cfg.routing.group_wait != r.group_wait
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                r.replaced.cancel();
            }
        }
        for (name, ch) in &cfg.channels {
            if running.contains_key(name) {
                continue;
            }
            let replaced = CancellationToken::new();
            let lock = locks.entry(name.clone()).or_default().clone();
            let worker = Worker {
                metrics: metrics.clone(),
                lock,
                store: store.clone(),
                client: client.clone(),
                channel: ch.clone(),
                cfg: cfg.outbox.clone(),
                group_wait: cfg.routing.group_wait,
                wake: wake.clone(),
                shutdown: shutdown.clone(),
                replaced: replaced.clone(),
            };
            let id = set.spawn(worker.run()).id();
            running.insert(
                name.clone(),
                Running {
                    channel: ch.clone(),
                    cfg: cfg.outbox.clone(),
                    group_wait: cfg.routing.group_wait,
                    replaced,
                    id,
                },
            );
        }
        // Judge orphans by the newest configuration: the pipeline may already route to a
        // channel this loop has not started yet. Looking again now and then catches an entry
        // the pipeline wrote for a channel just before a reload removed it.
        let latest = config.borrow().clone();
        if let Err(e) = on_store(&store, move |s| bury_orphans(s, &latest)).await {
            tracing::error!(
                error = format!("{e:#}"),
                "Cannot check the outbox for orphaned notifications"
            );
        }
        let restart_in = restart_due
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(ended) = set.join_next_with_id() => {
                let (id, outcome) = match ended {
                    Ok((id, ())) => (id, None),
                    Err(e) => (e.id(), Some(e)),
                };
                let name = running.iter().find(|(_, r)| r.id == id).map(|(n, _)| n.clone());
                if let Some(name) = name {
                    // A worker ends on its own only by failing: start it again shortly.
                    if !shutdown.is_cancelled() {
                        match outcome {
                            Some(e) => tracing::error!(channel = %name, error = %e, "Delivery worker panicked; restarting it"),
                            None => tracing::error!(channel = %name, "Delivery worker stopped unexpectedly; restarting it"),
                        }
                        running.remove(&name);
                        restart_due = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            _ = tokio::time::sleep(restart_in) => {
                restart_due = None;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

/// Entries for a channel that no longer exists can never be delivered: keep them as dead
/// letters and say so, rather than retry forever or drop them silently.
fn bury_orphans(store: &Store, cfg: &Config) -> Result<(), crate::store::StoreError> {
    // Rows that cannot be read are the workers' to bury (`channel_entries`).
    for (id, entry) in store.outbox_rows::<Entry>()? {
        let Ok(mut entry) = entry else { continue };
        if !cfg.channels.contains_key(&entry.channel) {
            tracing::error!(
                channel = %entry.channel,
                rule = %entry.notification.rule,
                "Notification moved to dead letters: its channel is no longer configured"
            );
            entry.last_error = Some("channel removed from the configuration".into());
            store.outbox_bury(id, &entry)?;
        }
    }
    Ok(())
}

/// The entries of `channel`, in outbox order. A row that cannot be read (written by another
/// version) goes to the dead letters as it is, with its reason in the log: it holds up no
/// channel.
fn channel_entries(
    store: &Store,
    channel: &str,
) -> Result<Vec<(u64, Entry)>, crate::store::StoreError> {
    let mut mine = Vec::new();
    for (id, row) in store.outbox_rows::<Entry>()? {
        match row {
            Ok(e) if e.channel == channel => mine.push((id, e)),
            Ok(_) => {}
            Err(reason) => {
                if store.outbox_bury_raw(id)? {
                    tracing::error!(
                        id,
                        error = %reason,
                        "An outbox entry cannot be read (written by another version?); moved to dead letters"
                    );
                }
            }
        }
    }
    Ok(mine)
}

/// What a channel's worker does next.
#[derive(Debug, PartialEq)]
enum Next {
    /// Deliver the entry at this place in the list now.
    Send(usize),
    /// Nothing can go before this time (ms since the epoch).
    Wait(i64),
    /// Nothing to deliver.
    Idle,
}

/// Picks the entry a channel sends next. Each alert's messages go in order (an entry waits
/// while an earlier message of one of its alerts is still in the outbox), but a wait (a
/// receiver's `Retry-After`, a backoff) holds only that alert's messages, never another
/// alert's. Among the entries due, the most severe goes first, then the oldest.
///
/// Due times are wall-clock (they outlive the process). An entry due more than `horizon_ms`
/// ahead, the longest wait the outbox ever sets, was scheduled before the clock stepped back:
/// it is due now, not in an hour.
fn next(entries: &[(u64, Entry)], now_ms: i64, horizon_ms: i64) -> Next {
    let mut seen = std::collections::HashSet::new();
    let mut best: Option<(usize, crate::vocab::Severity)> = None;
    let mut soonest: Option<i64> = None;
    for (i, (_, e)) in entries.iter().enumerate() {
        let n = &e.notification;
        let alerts: Vec<&str> = if n.grouped.is_empty() {
            vec![n.fingerprint.as_str()]
        } else {
            n.grouped.iter().map(|m| m.fingerprint.as_str()).collect()
        };
        let blocked = alerts.iter().any(|a| seen.contains(a));
        seen.extend(alerts);
        if blocked {
            continue;
        }
        if e.next_attempt_ms <= now_ms || e.next_attempt_ms > now_ms.saturating_add(horizon_ms) {
            if best.is_none_or(|(_, b)| n.severity > b) {
                best = Some((i, n.severity));
            }
        } else {
            soonest = Some(soonest.map_or(e.next_attempt_ms, |t| t.min(e.next_attempt_ms)));
        }
    }
    match (best, soonest) {
        (Some((i, _)), _) => Next::Send(i),
        (None, Some(at)) => Next::Wait(at),
        (None, None) => Next::Idle,
    }
}

struct Worker {
    metrics: Arc<crate::metrics::Metrics>,
    /// Held for the worker's life; see `run`.
    lock: Arc<tokio::sync::Mutex<()>>,
    store: Arc<Store>,
    client: reqwest::Client,
    channel: Channel,
    cfg: OutboxConfig,
    group_wait: Duration,
    wake: Arc<Notify>,
    /// The daemon stops: deliver what is due, for up to [`DRAIN_GRACE`], then exit.
    shutdown: CancellationToken,
    /// A reload replaced this worker: exit now, send nothing more with these settings.
    replaced: CancellationToken,
}

/// How long a worker waits after the store failed it, so a broken disk is not hammered and
/// a message is not resent in a tight loop.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// One history event per alert a (possibly grouped) notification was about.
fn history_events(n: &Notification, kind: EventKind, channel: &str, detail: String) -> Vec<Event> {
    let now = now_ms();
    let event = |fp: &str| {
        Event::new(now, fp, &n.rule, kind)
            .channel(channel)
            .detail(detail.clone())
    };
    if n.grouped.is_empty() {
        vec![event(&n.fingerprint)]
    } else {
        n.grouped.iter().map(|m| event(&m.fingerprint)).collect()
    }
}

/// The most alerts in one grouped message.
const MAX_GROUP: usize = 100;

impl Worker {
    /// Whether this channel sends grouped messages.
    fn groups(&self) -> bool {
        !self.group_wait.is_zero() && self.channel.kind.groups()
    }

    fn min_gap(&self) -> Duration {
        self.channel.kind.min_gap()
    }

    /// Sleeps for `d`, or less if the worker is replaced or (unless draining) stopped.
    async fn pause(&self, d: Duration, draining: bool) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.replaced.cancelled() => {}
            _ = self.shutdown.cancelled(), if !draining => {}
        }
    }

    async fn run(self) {
        let lock = self.lock.clone();
        let _only_worker = tokio::select! {
            guard = lock.lock() => guard,
            _ = self.replaced.cancelled() => return,
        };
        let name = self.channel.name.clone();
        let mut drain_until: Option<Instant> = None;
        let mut last_send: Option<Instant> = None;
        // Delivered entries whose removal from the store failed: never send them again.
        let mut delivered: Vec<u64> = Vec::new();
        loop {
            if self.replaced.is_cancelled() {
                break;
            }
            // Register interest before looking, so a wake between the look and the wait is kept.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shutdown.is_cancelled() && drain_until.is_none() {
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            let draining = drain_until.is_some();
            if drain_until.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if !delivered.is_empty() {
                let ids = delivered.clone();
                match on_store(&self.store, move |s| {
                    ids.iter().try_for_each(|id| s.outbox_remove(*id))
                })
                .await
                {
                    Ok(()) => delivered.clear(),
                    Err(e) => {
                        tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot remove delivered notifications from the outbox");
                        self.pause(STORE_ERROR_PAUSE, draining).await;
                        continue;
                    }
                }
            }
            let me = name.clone();
            let mine = on_store(&self.store, move |s| channel_entries(s, &me)).await;
            let mine = match mine {
                Ok(mine) => mine,
                Err(e) => {
                    tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot read the outbox");
                    self.pause(STORE_ERROR_PAUSE, draining).await;
                    continue;
                }
            };
            let i = match next(&mine, now_ms(), self.cfg.longest_wait().as_millis() as i64) {
                Next::Send(i) => i,
                // Nothing due before the daemon stops; what waits stays in the outbox for the
                // next start.
                _ if draining => break,
                waiting => {
                    let wait = match waiting {
                        Next::Wait(at) => Duration::from_millis((at - now_ms()).max(1) as u64),
                        _ => Duration::from_secs(30),
                    };
                    // Until the first waiting entry is due, a new entry arrives (woken), or,
                    // in case a wake was missed, a while.
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => {}
                        _ = self.replaced.cancelled() => {}
                    }
                    continue;
                }
            };
            let (id, mut entry) = mine.into_iter().nth(i).expect("picked from the list");
            // Grouping: a first attempt waits `group_wait` for alerts of the same rule, then
            // takes them along in one message.
            if self.groups()
                && entry.attempts == 0
                && entry.report.is_none()
                && entry.notification.grouped.is_empty()
                && entry.notification.note.is_none()
            {
                let due = entry.created_ms + self.group_wait.as_millis() as i64;
                let wait = due - now_ms();
                // Longer than `group_wait`: the clock stepped back since; do not wait for it.
                if wait > 0 && wait <= self.group_wait.as_millis() as i64 && !draining {
                    self.pause(Duration::from_millis(wait as u64), false).await;
                    continue;
                }
                let (me, head) = (name.clone(), entry.notification.clone());
                let siblings = on_store(&self.store, move |s| {
                    // Entries of this channel in order. An alert already seen (the head's, or
                    // any later entry's) is never taken from behind its earlier message, so
                    // one alert's firing and resolve keep their order.
                    let mut seen = std::collections::BTreeSet::from([head.fingerprint.clone()]);
                    let mut taken = Vec::new();
                    for (other, e) in s.outbox_rows::<Entry>()? {
                        let Ok(e) = e else { continue };
                        if other == id || e.channel != me {
                            continue;
                        }
                        let n = &e.notification;
                        let fits = e.attempts == 0
                            && e.report.is_none()
                            && n.rule == head.rule
                            && n.status == head.status
                            && n.note.is_none()
                            && n.grouped.is_empty();
                        if fits && !seen.contains(&n.fingerprint) && taken.len() < MAX_GROUP - 1 {
                            taken.push((other, e.clone()));
                        }
                        seen.insert(e.notification.fingerprint.clone());
                    }
                    Ok(taken)
                })
                .await;
                if let Ok(siblings) = siblings
                    && !siblings.is_empty()
                {
                    let mut grouped = vec![super::Member::of(&entry.notification)];
                    grouped.extend(
                        siblings
                            .iter()
                            .map(|(_, e)| super::Member::of(&e.notification)),
                    );
                    entry.notification.grouped = grouped;
                    let ids: Vec<u64> = siblings.iter().map(|(i, _)| *i).collect();
                    let merged = entry.clone();
                    if let Err(e) =
                        on_store(&self.store, move |s| s.outbox_merge(id, &merged, &ids)).await
                    {
                        tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot group notifications in the outbox");
                        self.pause(STORE_ERROR_PAUSE, draining).await;
                        continue;
                    }
                    tracing::info!(channel = %name, rule = %entry.notification.rule, alerts = entry.notification.grouped.len(), "Grouped alerts into one message");
                }
            }
            if let Some(prev) = last_send {
                let gap = self.min_gap().saturating_sub(prev.elapsed());
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
            last_send = Some(Instant::now());
            let result = match (&entry.report, &self.channel.kind) {
                (Some(r), crate::config::ChannelKind::Email(cfg)) => {
                    super::email::send_report(cfg, r, self.cfg.timeout).await
                }
                (Some(_), _) => Err(super::SendError::Permanent {
                    message: format!("channel {name} is not an email channel; a report is mailed"),
                }),
                (None, _) => {
                    send(
                        &self.client,
                        &self.channel,
                        &entry.notification,
                        self.cfg.timeout,
                    )
                    .await
                }
            };
            entry.attempts += 1;
            let n = entry.notification.clone();
            match result {
                Ok(answer) => {
                    self.metrics.notification(&name, "delivered");
                    tracing::info!(
                        channel = %name,
                        rule = %n.rule,
                        alert = %n.fingerprint,
                        status = n.status.as_str(),
                        http_status = answer.status,
                        attempts = entry.attempts,
                        "Notification delivered"
                    );
                    let events = history_events(
                        &n,
                        EventKind::Notified,
                        &name,
                        format!(
                            "{} {} {} after {} attempt{}",
                            n.status.as_str(),
                            answer.protocol,
                            answer.status,
                            entry.attempts,
                            if entry.attempts == 1 { "" } else { "s" }
                        ),
                    );
                    if let Err(e) = on_store(&self.store, move |s| {
                        s.outbox_remove(id)?;
                        events
                            .iter()
                            .try_for_each(|ev| s.append_history(ev.at_ms, ev))
                    })
                    .await
                    {
                        tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot remove a delivered notification from the outbox");
                        delivered.push(id);
                    }
                }
                Err(SendError::Retryable {
                    message,
                    retry_after,
                }) => {
                    self.metrics.notification(&name, "retried");
                    let age = Duration::from_millis((now_ms() - entry.created_ms).max(0) as u64);
                    if age >= self.cfg.give_up_after {
                        self.metrics.notification(&name, "failed");
                        tracing::error!(
                            channel = %name,
                            rule = %n.rule,
                            alert = %n.fingerprint,
                            attempts = entry.attempts,
                            error = %message,
                            "Notification given up after retrying for {}; kept in dead letters",
                            humantime::format_duration(self.cfg.give_up_after)
                        );
                        let events = history_events(
                            &n,
                            EventKind::Failed,
                            &name,
                            format!("given up: {message}"),
                        );
                        entry.last_error = Some(message);
                        if let Err(e) = on_store(&self.store, move |s| {
                            s.outbox_bury(id, &entry)?;
                            events
                                .iter()
                                .try_for_each(|ev| s.append_history(ev.at_ms, ev))
                        })
                        .await
                        {
                            tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot move a notification to dead letters");
                            self.pause(STORE_ERROR_PAUSE, draining).await;
                        }
                        continue;
                    }
                    let jitter = rand::rng().random_range(-0.2..=0.2);
                    let delay = backoff(&self.cfg, entry.attempts, retry_after, jitter);
                    tracing::warn!(
                        channel = %name,
                        rule = %n.rule,
                        attempts = entry.attempts,
                        error = %message,
                        retry_in_ms = delay.as_millis() as u64,
                        "Notification not delivered; will retry"
                    );
                    entry.next_attempt_ms = now_ms() + delay.as_millis() as i64;
                    entry.last_error = Some(message);
                    if let Err(e) =
                        on_store(&self.store, move |s| s.outbox_update(id, &entry)).await
                    {
                        tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot record a failed attempt in the outbox");
                        // Keep the backoff even though the store could not record it.
                        self.pause(delay.max(STORE_ERROR_PAUSE), draining).await;
                    }
                }
                Err(SendError::Permanent { message }) => {
                    self.metrics.notification(&name, "failed");
                    tracing::error!(
                        channel = %name,
                        rule = %n.rule,
                        alert = %n.fingerprint,
                        error = %message,
                        "Channel {name} refused the notification; not retrying. Check the channel's configuration (sloguard test-notify --channel {name}); the message is kept in dead letters"
                    );
                    let events =
                        history_events(&n, EventKind::Failed, &name, format!("refused: {message}"));
                    entry.last_error = Some(message);
                    if let Err(e) = on_store(&self.store, move |s| {
                        s.outbox_bury(id, &entry)?;
                        events
                            .iter()
                            .try_for_each(|ev| s.append_history(ev.at_ms, ev))
                    })
                    .await
                    {
                        tracing::error!(channel = %name, error = format!("{e:#}"), "Cannot move a notification to dead letters");
                        self.pause(STORE_ERROR_PAUSE, draining).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OutboxConfig {
        OutboxConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// The longest wait of the tests' outbox: its `max_retry_after` and a second.
    const HORIZON: i64 = 61_000;

    /// An entry of alert `alert` at `severity`, due at `due_ms`.
    fn entry(alert: &str, severity: crate::vocab::Severity, due_ms: i64) -> Entry {
        let mut n = crate::notify::Notification::test("hook", 0);
        n.fingerprint = alert.into();
        n.severity = severity;
        let mut e = Entry::new("hook", n, 0);
        e.next_attempt_ms = due_ms;
        e
    }

    #[test]
    fn a_wait_holds_only_its_alert_and_the_most_severe_due_entry_goes_first() {
        use crate::vocab::Severity::{Critical, Warning};
        let list = |es: Vec<Entry>| -> Vec<(u64, Entry)> {
            es.into_iter()
                .enumerate()
                .map(|(i, e)| (i as u64, e))
                .collect()
        };
        // A warning throttled for a minute, its resolve behind it, then a critical alert.
        let throttled = list(vec![
            entry("w", Warning, 60_000),
            entry("w", Warning, 0),
            entry("c", Critical, 0),
        ]);
        assert_eq!(next(&throttled, 1000, HORIZON), Next::Send(2));
        // The critical alert is gone: the resolve waits for the firing before it.
        assert_eq!(next(&throttled[..2], 1000, HORIZON), Next::Wait(60_000));
        // Both due: critical before an older warning; equals in order.
        let due = list(vec![entry("a", Warning, 0), entry("b", Critical, 0)]);
        assert_eq!(next(&due, 1000, HORIZON), Next::Send(1));
        let same = list(vec![entry("a", Warning, 0), entry("b", Warning, 0)]);
        assert_eq!(next(&same, 1000, HORIZON), Next::Send(0));
        assert_eq!(next(&[], 1000, HORIZON), Next::Idle);
        // A grouped message holds the later messages of each of its alerts.
        let mut group = entry("g", Warning, 60_000);
        group.notification.grouped = ["x", "y"]
            .iter()
            .map(|f| {
                let mut m = crate::notify::Member::of(&group.notification);
                m.fingerprint = f.to_string();
                m
            })
            .collect();
        let grouped = list(vec![group, entry("y", Critical, 0), entry("z", Warning, 0)]);
        assert_eq!(next(&grouped, 1000, HORIZON), Next::Send(2));
    }

    /// The wall clock stepped an hour back after entries were scheduled: they are due now,
    /// not an hour later; a wait within the horizon still holds.
    #[test]
    fn entries_scheduled_before_the_clock_stepped_back_are_due_at_once() {
        use crate::vocab::Severity::Warning;
        let hour = 3_600_000;
        let back = vec![(0, entry("a", Warning, 1000 + hour))];
        assert_eq!(next(&back, 1000, HORIZON), Next::Send(0));
        let waiting = vec![(0, entry("a", Warning, 1000 + HORIZON))];
        assert_eq!(next(&waiting, 1000, HORIZON), Next::Wait(1000 + HORIZON));
        assert_eq!(cfg().longest_wait(), Duration::from_secs(61));
    }

    /// A row written by another version blocks no channel: it goes to the dead letters as
    /// it is, and the entries around it are delivered.
    #[test]
    fn an_unreadable_row_goes_to_dead_letters_and_blocks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = crate::store::Batch {
            outbox: vec![b"\x09{from a newer version}".to_vec()],
            ..Default::default()
        };
        batch.push_outbox(&entry("a", crate::vocab::Severity::Critical, 0));
        store.write(&batch).unwrap();
        let mine = channel_entries(&store, "hook").unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].1.notification.fingerprint, "a");
        assert_eq!(store.outbox_rows::<Entry>().unwrap().len(), 1);
        let dead = store.dead_letters::<Entry>().unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0]
                .1
                .as_ref()
                .is_err_and(|e| e.to_string().contains("version")),
            "{dead:?}"
        );
        // Once is enough: the next look finds the same one entry and nothing more to move.
        assert_eq!(channel_entries(&store, "hook").unwrap().len(), 1);
        assert_eq!(store.dead_letters::<Entry>().unwrap().len(), 1);
    }

    #[test]
    fn a_long_retry_after_is_honoured_up_to_max_retry_after() {
        let c = cfg();
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(86_400)), 0.0),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let c = cfg();
        let secs: Vec<u64> = (1..=8)
            .map(|a| backoff(&c, a, None, 0.0).as_secs())
            .collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff(&c, 6, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(32)
        );
        assert_eq!(backoff(&c, 1, None, 0.2), Duration::from_millis(1200));
        assert_eq!(backoff(&c, 1, None, 5.0), Duration::from_millis(1200));
        // Jitter never takes a delay past the cap.
        assert_eq!(backoff(&c, 7, None, 0.2), Duration::from_secs(60));
    }
}

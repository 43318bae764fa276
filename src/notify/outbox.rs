//! The durable outbox: every notification is committed to the store (in the same transaction
//! as the alert transition that caused it) before anything is sent; one worker per channel
//! delivers its entries in order, retrying with exponential backoff and jitter, honouring
//! `Retry-After`, and deleting an entry only after the channel accepted it. What is pending at
//! a restart is delivered after it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Notification, SendError, send};
use crate::clock::now_ms;
use crate::config::{Channel, Config, OutboxConfig};
use crate::store::Store;

/// How long a stopping daemon keeps delivering entries that are due.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One notification on its way to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub channel: String,
    pub notification: Notification,
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
            created_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
        }
    }
}

/// The delay before retry number `attempt` (1-based): exponential, capped, with ±20 % jitter,
/// and never shorter than the channel's `Retry-After`.
pub fn backoff(
    cfg: &OutboxConfig,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = cfg
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    let base = exp.min(cfg.max_backoff);
    let jittered = base.mul_f64((1.0 + jitter.clamp(-0.2, 0.2)).max(0.0));
    match retry_after {
        Some(ra) if ra > jittered => ra,
        _ => jittered,
    }
}

/// Runs one delivery worker per configured channel, following configuration reloads.
pub async fn run(
    store: Arc<Store>,
    mut config: watch::Receiver<Arc<Config>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("sloguard/", env!("CARGO_PKG_VERSION")))
        .build()?;
    // Dropping the map (when this task ends or panics) aborts every worker.
    let mut workers: BTreeMap<String, (Channel, CancellationToken, AbortOnDropHandle<()>)> =
        BTreeMap::new();
    loop {
        let cfg = config.borrow_and_update().clone();
        // Stop workers whose channel is gone or changed.
        let stale: Vec<String> = workers
            .iter()
            .filter(|(name, (ch, _, _))| cfg.channels.get(*name) != Some(ch))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, token, handle)) = workers.remove(&name) {
                token.cancel();
                let _ = handle.await;
            }
        }
        for (name, ch) in &cfg.channels {
            if workers.contains_key(name) {
                continue;
            }
            let token = shutdown.child_token();
            let worker = Worker {
                store: store.clone(),
                client: client.clone(),
                channel: ch.clone(),
                cfg: cfg.outbox.clone(),
                wake: wake.clone(),
                stop: token.clone(),
            };
            let handle = AbortOnDropHandle::new(tokio::spawn(worker.run()));
            workers.insert(name.clone(), (ch.clone(), token, handle));
        }
        // Judge orphans by the newest configuration: the pipeline may already route to a
        // channel this loop has not started yet. Looking again now and then catches an entry
        // the pipeline wrote for a channel just before a reload removed it.
        bury_orphans(&store, &config.borrow().clone())?;
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, (_, _, handle)) in workers {
        let _ = handle.await;
    }
    Ok(())
}

/// Entries for a channel that no longer exists can never be delivered: keep them as dead
/// letters and say so, rather than retry forever or drop them silently.
fn bury_orphans(store: &Store, cfg: &Config) -> anyhow::Result<()> {
    for (id, mut entry) in store.outbox::<Entry>()? {
        if !cfg.channels.contains_key(&entry.channel) {
            tracing::error!(
                channel = %entry.channel,
                rule = %entry.notification.rule,
                "Notification dropped into dead letters: its channel is no longer configured"
            );
            entry.last_error = Some("channel removed from the configuration".into());
            store.outbox_bury(id, &entry)?;
        }
    }
    Ok(())
}

struct Worker {
    store: Arc<Store>,
    client: reqwest::Client,
    channel: Channel,
    cfg: OutboxConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Worker {
    /// The minimum gap between two messages: Slack allows one per second per webhook.
    fn min_gap(&self) -> Duration {
        match self.channel.kind {
            crate::config::ChannelKind::Slack { .. } => Duration::from_secs(1),
            _ => Duration::ZERO,
        }
    }

    fn head(&self) -> Option<(u64, Entry)> {
        match self.store.outbox::<Entry>() {
            Ok(all) => all
                .into_iter()
                .find(|(_, e)| e.channel == self.channel.name),
            Err(e) => {
                tracing::error!(channel = %self.channel.name, error = %e, "Cannot read the outbox");
                None
            }
        }
    }

    async fn run(self) {
        let name = self.channel.name.clone();
        let mut drain_until: Option<Instant> = None;
        let mut last_send: Option<Instant> = None;
        loop {
            // Register interest before looking, so a wake between the look and the wait is kept.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stop.is_cancelled() && drain_until.is_none() {
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            if drain_until.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let Some((id, mut entry)) = self.head() else {
                if drain_until.is_some() {
                    break;
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = self.stop.cancelled() => {}
                    // Re-read the store now and then in case a wake was missed.
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                continue;
            };
            let wait_ms = entry.next_attempt_ms - now_ms();
            if wait_ms > 0 {
                if drain_until.is_some() {
                    // Not due before the daemon stops; it stays in the outbox for the next start.
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                    _ = self.stop.cancelled() => {}
                }
                continue;
            }
            if let Some(prev) = last_send {
                let gap = self.min_gap().saturating_sub(prev.elapsed());
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
            last_send = Some(Instant::now());
            let result = send(
                &self.client,
                &self.channel,
                &entry.notification,
                self.cfg.timeout,
            )
            .await;
            entry.attempts += 1;
            let n = &entry.notification;
            match result {
                Ok(answer) => {
                    tracing::info!(
                        channel = %name,
                        rule = %n.rule,
                        alert = %n.fingerprint,
                        status = n.status.as_str(),
                        http_status = answer.status,
                        attempts = entry.attempts,
                        "Notification delivered"
                    );
                    if let Err(e) = self.store.outbox_remove(id) {
                        tracing::error!(channel = %name, error = %e, "Cannot remove a delivered notification from the outbox");
                    }
                }
                Err(SendError::Retryable {
                    message,
                    retry_after,
                }) => {
                    let age = Duration::from_millis((now_ms() - entry.created_ms).max(0) as u64);
                    if age >= self.cfg.give_up_after {
                        tracing::error!(
                            channel = %name,
                            rule = %n.rule,
                            alert = %n.fingerprint,
                            attempts = entry.attempts,
                            error = %message,
                            "Notification given up after retrying for {}; kept in dead letters",
                            humantime::format_duration(self.cfg.give_up_after)
                        );
                        entry.last_error = Some(message);
                        let _ = self.store.outbox_bury(id, &entry);
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
                    if let Err(e) = self.store.outbox_update(id, &entry) {
                        tracing::error!(channel = %name, error = %e, "Cannot record a failed attempt in the outbox");
                    }
                }
                Err(SendError::Permanent { message }) => {
                    tracing::error!(
                        channel = %name,
                        rule = %n.rule,
                        alert = %n.fingerprint,
                        error = %message,
                        "Channel {name} refused the notification; not retrying. Check the channel's configuration (sloguard test-notify --channel {name}); the message is kept in dead letters"
                    );
                    entry.last_error = Some(message);
                    if let Err(e) = self.store.outbox_bury(id, &entry) {
                        tracing::error!(channel = %name, error = %e, "Cannot move a notification to dead letters");
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
        }
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
    }
}

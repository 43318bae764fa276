//! The pipeline: samples from the sources are committed to the store together with the alert
//! transitions they cause and the notifications those transitions owe, in one transaction;
//! then the outbox is woken. Rules are evaluated the moment a sample arrives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{Config, Rule, RuleKind};
use crate::notify::outbox::Entry;
use crate::notify::{Notification, Status};
use crate::rules::{AlertState, Engine, Transition, TransitionKind};
use crate::series::Sample;
use crate::store::{Batch, Store};

/// The most samples committed in one transaction.
const MAX_BATCH: usize = 10_000;

pub struct Pipeline {
    pub store: Arc<Store>,
    pub config: watch::Receiver<Arc<Config>>,
    pub samples: Arc<Mutex<mpsc::Receiver<Vec<Sample>>>>,
    pub wake: Arc<Notify>,
    /// Milliseconds since the epoch of the pipeline's last loop turn, for the watchdog.
    pub heartbeat: Arc<AtomicI64>,
    pub shutdown: CancellationToken,
}

impl Pipeline {
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut config = self.config.clone();
        let mut cfg = config.borrow_and_update().clone();
        let restored: Vec<AlertState> = self.store.alerts()?;
        let firing = restored.len();
        let (mut engine, transitions) = Engine::restore(cfg.rules.clone(), restored, now_ms());
        if firing > 0 {
            tracing::info!(
                alerts = firing,
                "Restored pending and firing alerts from the store"
            );
        }
        self.commit(&cfg, &cfg, &[], transitions)?;
        let mut rx = self.samples.lock().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.heartbeat.store(now_ms(), Ordering::Relaxed);
            tokio::select! {
                got = rx.recv() => {
                    let Some(mut samples) = got else { break };
                    while samples.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(more) => samples.extend(more),
                            Err(_) => break,
                        }
                    }
                    self.evaluate(&mut engine, &cfg, &samples)?;
                }
                changed = config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let new = config.borrow_and_update().clone();
                    let transitions = engine.reload(new.rules.clone(), now_ms());
                    self.commit(&cfg, &new, &[], transitions)?;
                    cfg = new;
                }
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        // Commit what the sources delivered before they stopped.
        let mut rest = Vec::new();
        while let Ok(more) = rx.try_recv() {
            rest.extend(more);
        }
        if !rest.is_empty() {
            self.evaluate(&mut engine, &cfg, &rest)?;
        }
        Ok(())
    }

    fn evaluate(
        &self,
        engine: &mut Engine,
        cfg: &Config,
        samples: &[Sample],
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let mut transitions = Vec::new();
        for s in samples {
            transitions.extend(engine.observe(s, now));
        }
        self.commit(cfg, cfg, samples, transitions)
    }

    /// Writes samples, alert changes and owed notifications in one transaction. `old` is the
    /// configuration the transitions' rules come from (it differs from `new` on reload).
    fn commit(
        &self,
        old: &Config,
        new: &Config,
        samples: &[Sample],
        transitions: Vec<Transition>,
    ) -> anyhow::Result<()> {
        let mut batch = Batch {
            samples,
            ..Batch::default()
        };
        let now = now_ms();
        let mut notified = 0;
        for t in &transitions {
            let fp = t.alert.fingerprint();
            let rule = new
                .rules
                .iter()
                .find(|r| r.name == t.alert.rule)
                .or_else(|| old.rules.iter().find(|r| r.name == t.alert.rule));
            let labels = crate::series::SeriesKey {
                name: String::new(),
                labels: t.alert.labels.clone(),
            }
            .to_string();
            match t.kind {
                TransitionKind::Pending => {
                    tracing::info!(rule = %t.alert.rule, labels = %labels, "Alert pending");
                    batch.put_alert(fp, &t.alert);
                }
                TransitionKind::Cleared => {
                    tracing::info!(rule = %t.alert.rule, labels = %labels, "Alert cleared before firing");
                    batch.delete_alerts.push(fp);
                }
                TransitionKind::Firing | TransitionKind::Resolved => {
                    let firing = t.kind == TransitionKind::Firing;
                    if firing {
                        batch.put_alert(fp, &t.alert);
                    } else {
                        batch.delete_alerts.push(fp);
                    }
                    let Some(rule) = rule else { continue };
                    let n = notification(rule, t);
                    let channels: Vec<&String> = rule
                        .route(&new.routing)
                        .iter()
                        .filter(|c| new.channels.contains_key(*c))
                        .collect();
                    tracing::info!(
                        rule = %t.alert.rule,
                        labels = %labels,
                        severity = %t.alert.severity,
                        reason = t.alert.note.as_deref().unwrap_or(""),
                        channels = channels.len(),
                        "{}",
                        if firing { "Alert firing" } else { "Alert resolved" }
                    );
                    for ch in channels {
                        batch.push_outbox(&Entry::new(ch, n.clone(), now));
                        notified += 1;
                    }
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.store.write(&batch)?;
        if notified > 0 {
            self.wake.notify_waiters();
        }
        Ok(())
    }
}

/// Fills `{label}` placeholders of a rule's summary.
fn render_summary(summary: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = summary.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The notification a firing or resolved transition owes.
pub fn notification(rule: &Rule, t: &Transition) -> Notification {
    let a = &t.alert;
    let RuleKind::Consecutive(c) = &rule.kind;
    let value_text = if c.metric == "probe_up" && c.condition.to_string() == "< 1" {
        format!(
            "Consecutive failed probes: {} (threshold: {})",
            a.breaches, c.fire_after
        )
    } else {
        format!(
            "{}: {} (threshold: {}; {} consecutive sample{}, fires after {})",
            c.metric,
            format_value(a.value),
            c.condition,
            a.breaches,
            if a.breaches == 1 { "" } else { "s" },
            c.fire_after
        )
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
    }
}

/// A value with at most three decimals and no trailing zeros: `9.5`, `0.123`, `3`.
pub fn format_value(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn values_print_short() {
        assert_eq!(format_value(9.5), "9.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.12345), "0.123");
        assert_eq!(format_value(-0.0001), "0");
        assert_eq!(format_value(1200.0), "1200");
    }
}

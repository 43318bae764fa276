//! Requests to the pipeline from the HTTP API (list, acknowledge, silence), answered by the
//! pipeline, which owns the alert states, so that there is one writer.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{Ack, Fired, Pending, Pipeline, Plan, StoredAlert};
use crate::clock::now_ms;
use crate::config::Config;
use crate::history::{Event, EventKind};
use crate::notify::outbox::Entry;
use crate::notify::{Notification, Status};
use crate::rules::{AlertState, AlertStatus, Engine};
use crate::series::Labels;
use crate::silence::{Matchers, Silence};

/// The most silences active at once; more is a mistake, and each costs every check.
const MAX_ACTIVE_SILENCES: usize = 1000;

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

impl Pipeline {
    pub(super) async fn handle(
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
                        if cfg
                            .channels
                            .get(ch)
                            .is_some_and(|c| c.kind.hears_acknowledgement())
                        {
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
                        .push(Event::new(now, &fp, &rule, EventKind::Acknowledged).detail(detail));
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

//! Reports on their schedules, in the daemon. Each run is recorded in the store (report →
//! the scheduled time it ran for) in the same transaction that puts its mail in the outbox,
//! so a report is sent once per scheduled time, and retried like any notification until the
//! SMTP server takes it. A run missed while the daemon was down is made when it starts again:
//! one run, for the latest scheduled time missed. A report seen for the first time starts
//! with its next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Report};
use crate::store::{Batch, Store};

/// How often due reports are looked for.
const CHECK_EVERY: Duration = Duration::from_secs(20);
/// A run missed longer ago than this is not made up.
const CATCH_UP_WITHIN: chrono::Duration = chrono::Duration::days(400);

/// The scheduled time a report is due for at `now`, if it has not run for it: the latest
/// occurrence at or before `now` that is later than `last`.
pub fn due(report: &Report, last: Option<i64>, now: chrono::DateTime<Utc>) -> Option<i64> {
    let local = now.with_timezone(&report.timezone);
    let latest = report
        .schedule
        .latest_in(&local, CATCH_UP_WITHIN)?
        .timestamp_millis();
    match last {
        Some(last) if latest <= last => None,
        _ => Some(latest),
    }
}

/// Where the history a report reads begins: the start of its previous window.
pub fn history_from(report: &Report, at_ms: i64) -> anyhow::Result<i64> {
    let at = chrono::DateTime::<Utc>::from_timestamp_millis(at_ms)
        .ok_or_else(|| anyhow::anyhow!("time {at_ms} is out of range"))?;
    Ok(super::windows(report.window, report.timezone, at).1.from_ms)
}

/// The report for a run at `at_ms`, from a snapshot and the history since `history_from`.
pub fn make(
    cfg: &Config,
    report: &Report,
    snap: &crate::store::Snapshot,
    history: &[crate::history::Event],
    at_ms: i64,
) -> anyhow::Result<super::ReportData> {
    let at = chrono::DateTime::<Utc>::from_timestamp_millis(at_ms)
        .ok_or_else(|| anyhow::anyhow!("time {at_ms} is out of range"))?;
    Ok(super::build(cfg, report, snap, history, at)?)
}

/// History events read for a report, at most.
pub const HISTORY_LIMIT: usize = 200_000;

/// Runs every configured report when it is due, until `stop`.
pub async fn run(
    config: watch::Receiver<Arc<Config>>,
    store: Arc<Store>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let cfg = config.borrow().clone();
        if !cfg.reports.is_empty() {
            let (s, c, w) = (store.clone(), cfg.clone(), wake.clone());
            match tokio::task::spawn_blocking(move || check(&c, &s, &w)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "Cannot run the reports"),
                Err(e) => tracing::error!(error = %e, "Cannot run the reports"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Makes and queues every report that is due now.
fn check(cfg: &Config, store: &Store, wake: &Notify) -> anyhow::Result<()> {
    let runs = store.report_runs()?;
    let now = Utc::now();
    for report in &cfg.reports {
        let last = runs.get(&report.name).copied();
        let Some(at) = due(report, last, now) else {
            continue;
        };
        if last.is_none() {
            // New: the first run is the next scheduled time, not one already past.
            store.write(&Batch {
                report_runs: vec![(report.name.clone(), at)],
                ..Batch::default()
            })?;
            tracing::info!(report = %report.name, schedule = %report.schedule.text, "Report scheduled");
            continue;
        }
        let late = now.timestamp_millis() - at;
        let made = history_from(report, at).and_then(|from| {
            let history: Vec<crate::history::Event> = store.history(from, HISTORY_LIMIT)?;
            let snap = store.snapshot()?;
            make(cfg, report, &snap, &history, at)
        });
        let mail = match made {
            Ok(data) => super::render::mail(&data, &report.to),
            Err(e) => {
                tracing::error!(report = %report.name, error = format!("{e:#}"), "Cannot make the report");
                continue;
            }
        };
        let notification = crate::notify::Notification::report(
            &report.name,
            &mail.subject,
            now.timestamp_millis(),
        );
        let mut entry = crate::notify::outbox::Entry::new(
            &report.channel,
            notification,
            now.timestamp_millis(),
        );
        entry.report = Some(Box::new(mail));
        let mut batch = Batch {
            report_runs: vec![(report.name.clone(), at)],
            ..Batch::default()
        };
        batch.push_outbox(&entry);
        batch.push_history(
            now.timestamp_millis(),
            &crate::history::Event::new(
                now.timestamp_millis(),
                &format!("report:{}", report.name),
                &format!("report:{}", report.name),
                "report",
            )
            .detail(format!("for {}", crate::notify::rfc3339(at))),
        );
        store.write(&batch)?;
        wake.notify_waiters();
        if late > 2 * CHECK_EVERY.as_millis() as i64 {
            tracing::info!(report = %report.name, scheduled = %crate::notify::rfc3339(at), "Report made for a run missed while sloguard was down");
        } else {
            tracing::info!(report = %report.name, "Report made");
        }
    }
    Ok(())
}

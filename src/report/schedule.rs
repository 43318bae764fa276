//! Reports on their schedules, in the daemon. Each run is recorded in the store (report →
//! the scheduled time it ran for) in the same transaction that puts its mail in the outbox,
//! so a report is sent once per scheduled time, and retried like any notification until the
//! SMTP server takes it. A run missed while the daemon was down is made when it starts again:
//! one run, for the latest scheduled time missed. A report seen for the first time starts
//! with its next scheduled time. A window already mailed (the schedule was moved within it)
//! is not mailed again; a scheduled time that falls in a spring-forward gap of its time zone
//! does not happen that day (the cron crate skips local times that do not exist).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Report};
use crate::history::{Event, EventKind};
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
    let failed = Arc::new(std::sync::Mutex::new(HashMap::new()));
    loop {
        let cfg = config.borrow().clone();
        if !cfg.reports.is_empty() {
            let (s, c, w, f) = (store.clone(), cfg.clone(), wake.clone(), failed.clone());
            match tokio::task::spawn_blocking(move || {
                let mut failed = f.lock().unwrap_or_else(|p| p.into_inner());
                check(&c, &s, &w, &mut failed)
            })
            .await
            {
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

/// The key under which the end of the window a report last covered is kept.
fn window_key(name: &str) -> String {
    format!("{name}#window")
}

/// A report that could not be made is tried again after this long.
const RETRY_FAILED_MS: i64 = 5 * 60_000;

/// The alert history since `from`, oldest first: the newest `HISTORY_LIMIT` events.
pub fn history_since(store: &Store, from: i64) -> anyhow::Result<Vec<crate::history::Event>> {
    let mut events: Vec<crate::history::Event> = store.history_newest(from, HISTORY_LIMIT)?;
    events.reverse();
    Ok(events)
}

/// Makes and queues every report that is due now. `failed`: when a report could not be
/// made, by name.
fn check(
    cfg: &Config,
    store: &Store,
    wake: &Notify,
    failed: &mut HashMap<String, i64>,
) -> anyhow::Result<()> {
    let runs = store.report_runs()?;
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    for report in &cfg.reports {
        let Some(last) = runs.get(&report.name).copied() else {
            // New: its first run is its next scheduled time, not one already past.
            store.write(&Batch {
                report_runs: vec![(report.name.clone(), now_ms)],
                ..Batch::default()
            })?;
            tracing::info!(report = %report.name, schedule = %report.schedule.text, "Report scheduled");
            continue;
        };
        let Some(at) = due(report, Some(last), now) else {
            continue;
        };
        if failed
            .get(&report.name)
            .is_some_and(|t| now_ms - t < RETRY_FAILED_MS)
        {
            continue;
        }
        let Some(at_time) = chrono::DateTime::<Utc>::from_timestamp_millis(at) else {
            continue;
        };
        let (window, previous) = super::windows(report.window, report.timezone, at_time);
        if runs.get(&window_key(&report.name)) == Some(&window.to_ms) {
            // The schedule changed (another hour, another zone): this window was mailed.
            store.write(&Batch {
                report_runs: vec![(report.name.clone(), at)],
                ..Batch::default()
            })?;
            tracing::info!(report = %report.name, "Report's window was already mailed; not again");
            continue;
        }
        let late = now_ms - at;
        let made = history_since(store, previous.from_ms).and_then(|history| {
            let snap = store.snapshot()?;
            make(cfg, report, &snap, &history, at)
        });
        let mail = match made {
            Ok(data) => super::render::mail(&data, &report.to),
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(report = %report.name, error = %e, "Cannot make the report; trying again in 5 minutes");
                failed.insert(report.name.clone(), now_ms);
                let name = format!("report:{}", report.name);
                store.append_history(
                    now_ms,
                    &Event::new(now_ms, &name, &name, EventKind::Report)
                        .detail(format!("failed: {e}")),
                )?;
                continue;
            }
        };
        failed.remove(&report.name);
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
            report_runs: vec![
                (report.name.clone(), at),
                (window_key(&report.name), window.to_ms),
            ],
            ..Batch::default()
        };
        batch.push_outbox(&entry);
        batch.push_history(
            now.timestamp_millis(),
            &Event::new(
                now.timestamp_millis(),
                &format!("report:{}", report.name),
                &format!("report:{}", report.name),
                EventKind::Report,
            )
            .detail(format!("for {}", crate::format::rfc3339(at))),
        );
        store.write(&batch)?;
        wake.notify_waiters();
        if late > 2 * CHECK_EVERY.as_millis() as i64 {
            tracing::info!(report = %report.name, scheduled = %crate::format::rfc3339(at), "Report made for a run missed while sloguard was down");
        } else {
            tracing::info!(report = %report.name, "Report made");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn report(schedule: &str, tz: &str) -> Report {
        let text = format!(
            r#"
[[channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = 2525
tls = "none"
from = "sloguard@example.com"
to = ["team@example.com"]

[[reports]]
name = "weekly"
schedule = "{schedule}"
timezone = "{tz}"
channel = "mail"
window = "last_week"
"#
        );
        let cfg = crate::config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.reports[0].clone()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn a_crontab_line_runs_at_its_local_time_across_a_change_of_clocks() {
        // Europe/Berlin leaves summer time on Sunday 2026-10-25.
        let r = report("0 9 * * MON", "Europe/Berlin");
        let before = due(&r, None, utc(2026, 10, 19, 7, 30)).unwrap();
        assert_eq!(
            before,
            utc(2026, 10, 19, 7, 0).timestamp_millis(),
            "09:00 CEST"
        );
        let after = due(&r, None, utc(2026, 10, 26, 8, 30)).unwrap();
        assert_eq!(
            after,
            utc(2026, 10, 26, 8, 0).timestamp_millis(),
            "09:00 CET"
        );
        // Not yet 09:00 on Monday: last week's run is the latest.
        let early = due(&r, None, utc(2026, 10, 26, 7, 59)).unwrap();
        assert_eq!(early, before);
    }

    #[test]
    fn six_and_seven_field_expressions_and_utc() {
        let six = report("0 30 6 * * *", "UTC");
        assert_eq!(
            due(&six, None, utc(2026, 11, 26, 7, 0)),
            Some(utc(2026, 11, 26, 6, 30).timestamp_millis())
        );
        let seven = report("0 0 8 1 * * 2026", "UTC");
        assert_eq!(
            due(&seven, None, utc(2026, 11, 26, 7, 0)),
            Some(utc(2026, 11, 1, 8, 0).timestamp_millis())
        );
        assert!(crate::silence::Schedule::parse("0 9 * *").is_err());
    }

    #[test]
    fn a_run_is_due_once_per_scheduled_time_and_a_missed_one_is_made_up_once() {
        let r = report("0 9 * * *", "UTC");
        let monday = utc(2026, 11, 23, 9, 0).timestamp_millis();
        // It ran Monday; on Monday afternoon nothing is due.
        assert_eq!(due(&r, Some(monday), utc(2026, 11, 23, 15, 0)), None);
        // Down from Monday evening to Thursday noon: one run, for Thursday 09:00.
        let thursday = utc(2026, 11, 26, 9, 0).timestamp_millis();
        assert_eq!(
            due(&r, Some(monday), utc(2026, 11, 26, 12, 0)),
            Some(thursday)
        );
        assert_eq!(due(&r, Some(thursday), utc(2026, 11, 26, 12, 1)), None);
    }

    #[test]
    fn calendar_windows_follow_the_time_zone() {
        use crate::config::ReportWindow;
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // Run on Monday 2026-10-26 09:00 CET: last week is Mon 19 00:00 CEST to Mon 26
        // 00:00 CET, one hour longer than seven days.
        let (w, p) = super::super::windows(ReportWindow::LastWeek, tz, utc(2026, 10, 26, 8, 0));
        assert_eq!(w.from_ms, utc(2026, 10, 18, 22, 0).timestamp_millis());
        assert_eq!(w.to_ms, utc(2026, 10, 25, 23, 0).timestamp_millis());
        assert_eq!(p.to_ms, w.from_ms);
        assert_eq!(p.from_ms, utc(2026, 10, 11, 22, 0).timestamp_millis());
        // Last month, run on 2026-11-01 08:00 UTC: October, in Berlin time.
        let (w, p) = super::super::windows(ReportWindow::LastMonth, tz, utc(2026, 11, 1, 8, 0));
        assert_eq!(w.from_ms, utc(2026, 9, 30, 22, 0).timestamp_millis());
        assert_eq!(w.to_ms, utc(2026, 10, 31, 23, 0).timestamp_millis());
        assert_eq!(p.from_ms, utc(2026, 8, 31, 22, 0).timestamp_millis());
        // January's previous month is December of the year before.
        let (w, _) = super::super::windows(
            ReportWindow::LastMonth,
            chrono_tz::UTC,
            utc(2027, 1, 3, 0, 0),
        );
        assert_eq!(w.from_ms, utc(2026, 12, 1, 0, 0).timestamp_millis());
    }
}

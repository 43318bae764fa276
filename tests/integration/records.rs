//! The records sloguard keeps besides its series — an alert with its firing notification and
//! acknowledgement, an outbox entry carrying a report's mail, history events of every kind and
//! a silence — are a file format too. `tests/fixtures/records-v2` was written by an earlier
//! release and must keep reading back the same: renaming a field of a stored type, or turning a
//! string into an enum without accepting what was written before, fails here.

use std::collections::BTreeMap;

use sloguard::history::Event;
use sloguard::notify::email::ReportMail;
use sloguard::notify::outbox::Entry;
use sloguard::notify::{Notification, Status};
use sloguard::pipeline::{Ack, Fired, StoredAlert};
use sloguard::rules::{AlertState, AlertStatus};
use sloguard::silence::Silence;
use sloguard::store::{Batch, Store};
use sloguard::vocab::Severity;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/records-v2");
const T0: i64 = 1_790_000_000_000; // 2026-09-21
const FP: &str = r#"api_down{target="api"}"#;

fn labels() -> BTreeMap<String, String> {
    [("target".to_string(), "api".to_string())].into()
}

fn alert() -> StoredAlert {
    let state = AlertState {
        rule: "api_down".into(),
        labels: labels(),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        breaches: 5,
        clears: 0,
        since_ms: T0,
        fired_at_ms: Some(T0 + 20_000),
        value: 0.0,
        note: Some("HTTP 503 Service Unavailable".into()),
    };
    let notification = Notification {
        status: Status::Firing,
        rule: "api_down".into(),
        fingerprint: FP.into(),
        severity: Severity::Critical,
        summary: "Segmentation API down".into(),
        labels: labels(),
        value_text: "Consecutive failed probes: 5 (threshold: 5)".into(),
        reason: Some("HTTP 503 Service Unavailable".into()),
        note: None,
        started_at_ms: T0,
        fired_at_ms: T0 + 20_000,
        ended_at_ms: None,
        runbook_url: Some("https://runbooks.example/api-down".into()),
        dashboard_url: None,
        grouped: Vec::new(),
    };
    StoredAlert {
        state,
        fired: Some(Fired {
            channels: vec!["slack".into(), "pagerduty".into()],
            notification,
            ack: Some(Ack {
                by: "alice".into(),
                at_ms: T0 + 120_000,
                comment: Some("on it".into()),
            }),
            suppressed_by: None,
            escalated: 1,
            last_sent_ms: T0 + 20_000,
            resent_ms: [("am".to_string(), T0 + 80_000)].into(),
            notified_at_ms: T0 + 20_000,
        }),
    }
}

fn report_entry() -> Entry {
    let mut entry = Entry::new(
        "email",
        Notification::report("weekly", "Weekly usage report", T0 + 600_000),
        T0 + 600_000,
    );
    entry.report = Some(Box::new(ReportMail {
        subject: "Weekly usage report".into(),
        to: vec!["product@example.com".into()],
        text: "Weekly usage report\n".into(),
        html: "<h1>Weekly usage report</h1><img src=\"cid:chart0\">".into(),
        images: vec![("chart0".into(), "iVBORw0KGgo=".into())],
    }));
    entry
}

fn silence() -> Silence {
    Silence {
        id: 1,
        matchers: [("rule".to_string(), "api_down".to_string())].into(),
        starts_ms: T0,
        ends_ms: T0 + 3_600_000,
        reason: "deploy".into(),
        by: "bob".into(),
    }
}

/// Writes the fixture: `SLOGUARD_WRITE_FIXTURE=1 cargo test --test integration records -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures/records-v2; run by hand when the format version changes"]
fn write_records_fixture() {
    if std::env::var("SLOGUARD_WRITE_FIXTURE").is_err() {
        return;
    }
    let _ = std::fs::remove_dir_all(FIXTURE);
    let store = Store::open(std::path::Path::new(FIXTURE)).unwrap();
    let at = |s: i64| T0 + s * 1000;
    let history = vec![
        Event::new(at(20), FP, "api_down", "firing")
            .detail("HTTP 503 Service Unavailable (held back: silence #1 (deploy))")
            .severity(Severity::Warning),
        Event::new(at(60), FP, "api_down", "released").detail("silence #1 (deploy)"),
        Event::new(at(61), FP, "api_down", "notified")
            .channel("slack")
            .detail("firing HTTP 200 after 1 attempt"),
        Event::new(at(62), FP, "api_down", "failed")
            .channel("pagerduty")
            .detail("refused: HTTP 400"),
        Event::new(at(90), FP, "api_down", "upgraded")
            .detail("warning → critical")
            .severity(Severity::Critical),
        Event::new(at(120), FP, "api_down", "acknowledged").detail("by alice: on it"),
        Event::new(at(1800), FP, "api_down", "escalated").detail("after 30m: email"),
        Event::new(at(1900), FP, "api_down", "resolved").detail("probe succeeded"),
        Event::new(at(2000), FP, "api_down", "firing")
            .detail("HTTP 502 Bad Gateway")
            .severity(Severity::Critical),
        Event::new(at(2100), "report:weekly", "report:weekly", "report")
            .detail("for 2026-09-21T00:00:00.000Z"),
    ];
    let mut batch = Batch::default();
    batch.put_alert(FP.to_string(), &alert());
    batch.push_outbox(&report_entry());
    for e in &history {
        batch.push_history(e.at_ms, e);
    }
    store.write(&batch).unwrap();
    store.put_silence(1, &silence()).unwrap();
    drop(store);
}

//! The records sloguard keeps besides its series — an alert with its firing notification and
//! acknowledgement, an outbox entry carrying a report's mail, history events of every kind and
//! a silence — are a file format too. `tests/fixtures/records-v2` was written by an earlier
//! release and must keep reading back the same: renaming a field of a stored type, or turning a
//! string into an enum without accepting what was written before, fails here.

use std::collections::BTreeMap;

use sloguard::history::{Event, EventKind};
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

/// The history of one alert through every kind of event, and a report's.
fn history() -> Vec<Event> {
    let at = |s: i64| T0 + s * 1000;
    vec![
        Event::new(at(20), FP, "api_down", EventKind::Firing)
            .detail("HTTP 503 Service Unavailable")
            .held_back(Some("silence #1 (deploy)"))
            .severity(Severity::Warning),
        Event::new(at(60), FP, "api_down", EventKind::Released).detail("silence #1 (deploy)"),
        Event::new(at(61), FP, "api_down", EventKind::Notified)
            .channel("slack")
            .detail("firing HTTP 200 after 1 attempt"),
        Event::new(at(62), FP, "api_down", EventKind::Failed)
            .channel("pagerduty")
            .detail("refused: HTTP 400"),
        Event::new(at(90), FP, "api_down", EventKind::Upgraded)
            .detail("warning → critical")
            .severity(Severity::Critical),
        Event::new(at(120), FP, "api_down", EventKind::Acknowledged).detail("by alice: on it"),
        Event::new(at(1800), FP, "api_down", EventKind::Escalated).detail("after 30m: email"),
        Event::new(at(1900), FP, "api_down", EventKind::Resolved).detail("probe succeeded"),
        Event::new(at(2000), FP, "api_down", EventKind::Firing)
            .detail("HTTP 502 Bad Gateway")
            .severity(Severity::Critical),
        Event::new(
            at(2100),
            "report:weekly",
            "report:weekly",
            EventKind::Report,
        )
        .detail("for 2026-09-21T00:00:00.000Z"),
    ]
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
    let mut batch = Batch::default();
    batch.put_alert(FP.to_string(), &alert());
    batch.push_outbox(&report_entry());
    for e in &history() {
        batch.push_history(e.at_ms, e);
    }
    store.write(&batch).unwrap();
    store.put_silence(1, &silence()).unwrap();
}

#[test]
fn records_written_by_an_earlier_release_read_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{FIXTURE}/sloguard.redb"),
        dir.path().join("sloguard.redb"),
    )
    .expect("the fixture file is checked in");
    let store = Store::open(dir.path()).unwrap();

    let alerts: Vec<StoredAlert> = store.alerts().unwrap();
    assert_eq!(alerts, vec![alert()]);

    let outbox: Vec<(u64, Entry)> = store.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].1, report_entry());
    let mail = outbox[0].1.report.as_deref().expect("the report's mail");
    assert_eq!(mail.images[0].0, "chart0");

    let events: Vec<Event> = store.history(0, 1000).unwrap();
    let expected = history();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        expected.iter().map(|e| e.event).collect::<Vec<_>>(),
        "every kind of event reads back as the kind it was"
    );
    assert!(!kinds.contains(&EventKind::Other));
    for (old, new) in events.iter().zip(&expected) {
        // The earlier release said "held back" only in the detail; the event still tells.
        assert_eq!(old.held_back_by(), new.held_back_by(), "{old:?}");
        let without_field = Event {
            held_back: None,
            ..new.clone()
        };
        assert_eq!(old, &without_field);
    }
    assert_eq!(events[0].held_back_by(), Some("silence #1 (deploy)"));
    assert_eq!(events[0].severity, Some(Severity::Warning));
    assert_eq!(events[4].severity, Some(Severity::Critical));
    assert_eq!(events[8].held_back_by(), None);

    let silences: Vec<Silence> = store.silences().unwrap();
    assert_eq!(silences, vec![silence()]);
}

//! The HTTP API's bodies: what `server` reads and answers under `/api/v1/`, and what the
//! command line sends and reads back, one type for each, so that a field renamed on one side
//! fails to compile on the other instead of printing nothing.
//!
//! The answers that were first built as JSON maps (silences, dead letters) keep their fields in
//! alphabetical order, the order those maps wrote them in, so the bytes on the wire are the same.
//! Nothing here reads the store or asks the pipeline; it only names and converts.

use serde::{Deserialize, Serialize};

use crate::notify::Status;
use crate::notify::outbox::Entry;
use crate::silence::{Matchers, Silence};

/// `GET /api/v1/alerts` answers a list of these: the pending and firing alerts.
pub use crate::pipeline::AlertView;

/// `GET /api/v1/history` answers a list of these, oldest first.
pub use crate::history::Event;

/// The answer of every request that failed, with its HTTP status: what went wrong, in words
/// that say what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// The body of `POST /api/v1/alerts/ack`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// A fingerprint (`rule{labels}`) or a rule name (all its firing alerts).
    pub alert: String,
    pub by: String,
    pub comment: Option<String>,
}

/// The answer of `POST /api/v1/alerts/ack`: the fingerprints acknowledged now (none when they
/// all were already).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub acknowledged: Vec<String>,
}

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// `rule` and label equality matchers; at least one.
    pub matchers: Matchers,
    /// How long, e.g. `2h`.
    pub duration: String,
    pub reason: String,
    pub by: String,
}

/// `GET /api/v1/silences` answers a list of these. Fields in alphabetical order (see the module
/// doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceView {
    /// Whether it silences now.
    pub active: bool,
    pub by: String,
    /// RFC 3339.
    pub ends_at: String,
    pub id: u64,
    pub matchers: Matchers,
    pub reason: String,
    /// RFC 3339.
    pub starts_at: String,
}

impl SilenceView {
    pub fn new(s: &Silence, now_ms: i64) -> SilenceView {
        SilenceView {
            active: s.active(now_ms),
            by: s.by.clone(),
            ends_at: crate::format::rfc3339(s.ends_ms),
            id: s.id,
            matchers: s.matchers.clone(),
            reason: s.reason.clone(),
            starts_at: crate::format::rfc3339(s.starts_ms),
        }
    }
}

/// The answer of `POST /api/v1/silences` (201) and `POST /api/v1/silences/{id}/expire`: the
/// silence and when it ends. Fields in alphabetical order (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceEnd {
    /// RFC 3339.
    pub ends_at: String,
    pub id: u64,
}

impl SilenceEnd {
    pub fn new(s: &Silence) -> SilenceEnd {
        SilenceEnd {
            ends_at: crate::format::rfc3339(s.ends_ms),
            id: s.id,
        }
    }
}

/// `GET /api/v1/dead-letters` answers a list of these: notifications that could not be
/// delivered. Fields in alphabetical order (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The alert's fingerprint.
    pub alert: String,
    pub attempts: u32,
    pub channel: String,
    /// RFC 3339: when the notification was made.
    pub created_at: String,
    /// Why the last attempt failed; `null` when none was recorded.
    pub error: Option<String>,
    pub id: u64,
    /// What the notification announced; `null` for a record that could not be read.
    pub status: Option<Status>,
}

impl DeadLetter {
    pub fn new(id: u64, e: &Entry) -> DeadLetter {
        DeadLetter {
            alert: e.notification.fingerprint.clone(),
            attempts: e.attempts,
            channel: e.channel.clone(),
            created_at: crate::format::rfc3339(e.created_ms),
            error: e.last_error.clone(),
            id,
            status: Some(e.notification.status),
        }
    }

    /// A dead letter whose record could not be read (written by another version): its id
    /// and why.
    pub fn unreadable(id: u64, reason: &str) -> DeadLetter {
        DeadLetter {
            alert: String::new(),
            attempts: 0,
            channel: String::new(),
            created_at: String::new(),
            error: Some(format!("unreadable record: {reason}")),
            id,
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes each answer had when the server built it with `serde_json::json!`.
    #[test]
    fn answers_keep_their_bytes_on_the_wire() {
        let silence = Silence {
            id: 1,
            matchers: [("rule", "web_down"), ("target", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_ms: 0,
            ends_ms: 3_600_000,
            reason: "deploy".into(),
            by: "alice".into(),
        };
        assert_eq!(
            serde_json::to_string(&vec![SilenceView::new(&silence, 1000)]).unwrap(),
            r#"[{"active":true,"by":"alice","ends_at":"1970-01-01T01:00:00.000Z","id":1,"matchers":{"rule":"web_down","target":"web"},"reason":"deploy","starts_at":"1970-01-01T00:00:00.000Z"}]"#
        );
        assert_eq!(
            serde_json::to_string(&SilenceEnd::new(&silence)).unwrap(),
            r#"{"ends_at":"1970-01-01T01:00:00.000Z","id":1}"#
        );
        let letter = DeadLetter {
            alert: r#"web_down{target="web"}"#.into(),
            attempts: 1,
            channel: "slack".into(),
            created_at: "2026-12-05T12:55:00.191Z".into(),
            error: Some("HTTP 404: no_service".into()),
            id: 1,
            status: Some(Status::Firing),
        };
        assert_eq!(
            serde_json::to_string(&vec![letter.clone()]).unwrap(),
            r#"[{"alert":"web_down{target=\"web\"}","attempts":1,"channel":"slack","created_at":"2026-12-05T12:55:00.191Z","error":"HTTP 404: no_service","id":1,"status":"firing"}]"#
        );
        let unrecorded = DeadLetter {
            error: None,
            ..letter
        };
        assert!(
            serde_json::to_string(&unrecorded)
                .unwrap()
                .contains(r#""error":null"#)
        );
        assert_eq!(
            serde_json::to_string(&Acknowledged {
                acknowledged: vec![]
            })
            .unwrap(),
            r#"{"acknowledged":[]}"#
        );
        assert_eq!(
            serde_json::to_string(&ApiError {
                error: "missing or wrong bearer token".into()
            })
            .unwrap(),
            r#"{"error":"missing or wrong bearer token"}"#
        );
    }

    #[test]
    fn answers_read_back_as_they_were_written() {
        let wire = r#"[{"alert":"a","attempts":3,"channel":"pd","created_at":"t","error":null,"id":7,"status":"resolved"}]"#;
        let letters: Vec<DeadLetter> = serde_json::from_str(wire).unwrap();
        assert_eq!(letters[0].status, Some(Status::Resolved));
        assert_eq!(letters[0].error, None);
        assert_eq!(serde_json::to_string(&letters).unwrap(), wire);
    }
}

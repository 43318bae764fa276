//! The alert records the pipeline keeps in the store: one per pending or firing alert, with
//! the firing notification, where it went and who acknowledged it. On disk: a renamed field
//! changes the data file's format (`tests/integration/fixture.rs` reads a file written by an
//! earlier release).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::notify::Notification;
use crate::rules::AlertState;

/// What the store keeps for one pending or firing alert. On disk: an `alerts` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub state: AlertState,
    /// Set once the alert fired.
    pub fired: Option<Fired>,
}

/// The firing notification, where it went, and who acknowledged it. On disk.
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

/// An acknowledgement: someone is on it. On disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
    pub comment: Option<String>,
}

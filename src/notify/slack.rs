//! Slack incoming webhooks: `{"text": ...}`, answered by HTTP 200 `ok`.

use std::time::Duration;

use super::{Delivered, Notification, SendError, post_json};
use crate::config::Secret;

/// Slack wants `&`, `<` and `>` escaped in message text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON body sent to the webhook.
pub fn payload(n: &Notification) -> serde_json::Value {
    serde_json::json!({ "text": escape(&n.text()) })
}

pub async fn send(
    client: &reqwest::Client,
    url: &Secret,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    post_json(client, url, &[], &[], &payload(n), timeout).await
}

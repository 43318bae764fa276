//! Integration tests: a real `sloguard` child process against real HTTP servers on 127.0.0.1.

mod ack;
mod attacks;
mod channels;
mod chaos;
mod check;
mod crash;
mod dashboard;
mod demo;
mod disk_full;
mod e2e;
mod example_rules;
mod fixture;
mod ingest;
mod layers;
mod logs;
mod outbox;
mod postgres;
mod probes;
mod prometheus;
mod query;
mod records;
mod reload;
mod reports;
mod scrape;
mod secrets;
mod systemd;
mod tls;
mod util;

use util::Target;

/// A configuration with one target probed every second, a rule firing after 3 failures and
/// resolving after 2 successes, routed to a Slack stand-in and a generic webhook.
pub fn base_config(target: &Target, slack_url: &str, webhook_url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[outbox]
initial_backoff = "200ms"
max_backoff = "2s"
timeout = "2s"

[routing]
warning = ["slack"]
critical = ["slack", "ops-webhook"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack_url}"

[[channels]]
name = "ops-webhook"
type = "webhook"
url = "{webhook_url}"

[[targets]]
name = "web"
url = "{target_url}"
interval = "1s"
timeout = "1s"

[[rules]]
name = "web_down"
kind = "consecutive"
match = {{ target = "web" }}
fire_after = 3
resolve_after = 2
severity = "critical"
summary = "Web down"
runbook_url = "https://runbooks.example.com/web-down"
dashboard_url = "http://127.0.0.1:9797/"
"#,
        target_url = target.url()
    )
}

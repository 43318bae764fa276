//! The commands that talk to the running daemon through its HTTP API: `status`, `ack`,
//! `silence`, `history` and `dead-letters`. The daemon is found through the configuration's
//! `[server]` section; its answers are read into the types of `crate::api`, the ones the
//! server writes them from.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::{SilenceAction, UsageError, load, runtime};
use crate::api::{
    AckRequest, Acknowledged, AlertView, ApiError, DeadLetter, Event, SilenceEnd, SilenceRequest,
    SilenceView,
};

/// The running daemon's HTTP API.
struct Daemon {
    client: reqwest::Client,
    /// `http://host:port`.
    base: String,
    /// `[server].token`, which the write endpoints ask for.
    token: Option<String>,
}

impl Daemon {
    fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    /// A write, with the bearer token when the configuration has one (without it the daemon
    /// answers why).
    fn post(&self, path: &str) -> RequestBuilder {
        let call = self.client.post(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => call.bearer_auth(t),
            None => call,
        }
    }
}

/// Runs `f` against the running daemon's HTTP API, found through the configuration at
/// `config`. A daemon that refuses the connection is reported as not running.
fn with_daemon<T>(
    config: &Path,
    f: impl AsyncFnOnce(&Daemon) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let cfg = load(config)?;
    let addr = cfg.server.listen;
    if addr.port() == 0 {
        anyhow::bail!(
            "[server].listen in {} has port 0; give the daemon a fixed port to reach it",
            config.display()
        );
    }
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let base = format!("http://{host}");
    let token = cfg.server.token.as_ref().map(|t| t.expose().to_string());
    let result = runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        let daemon = Daemon {
            client,
            base: base.clone(),
            token,
        };
        f(&daemon).await
    });
    result.map_err(|e| match e.downcast_ref::<reqwest::Error>() {
        Some(re) if re.is_connect() => {
            anyhow::anyhow!("cannot reach the daemon at {base}: is it running?")
        }
        _ => e,
    })
}

/// Reads an answer: `T` from a success; from a failure, the daemon's `error`, or `otherwise`
/// when the body has none (a proxy's page, or a body the daemon could not read).
async fn answer<T: DeserializeOwned>(
    resp: Response,
    otherwise: impl FnOnce(StatusCode) -> String,
) -> anyhow::Result<T> {
    let status = resp.status();
    if !status.is_success() {
        let why = match resp.json::<ApiError>().await {
            Ok(e) => e.error,
            Err(_) => otherwise(status),
        };
        anyhow::bail!("{why}");
    }
    Ok(resp.json().await?)
}

fn http_status(status: StatusCode) -> String {
    format!("the daemon answered HTTP {}", status.as_u16())
}

/// `--by`, else `$USER`.
fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `sloguard status`: the pending and firing alerts.
pub(super) fn status(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    with_daemon(config, async |d| {
        let resp = d.get("/api/v1/alerts").send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            anyhow::bail!(
                "the daemon answered HTTP {}: {}",
                status.as_u16(),
                body.trim()
            );
        }
        let alerts: Vec<AlertView> = serde_json::from_str(&body)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&alerts)?);
        } else {
            print_status(&alerts);
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_status(alerts: &[AlertView]) {
    if alerts.is_empty() {
        println!("no pending or firing alerts");
        return;
    }
    println!(
        "{:<8} {:<9} {:<48} {:<20} ACKNOWLEDGED",
        "STATUS", "SEVERITY", "ALERT", "SINCE"
    );
    for a in alerts {
        let ack = match (&a.acknowledged_by, &a.comment) {
            (Some(by), Some(c)) => format!("{by}: {c}"),
            (Some(by), None) => by.clone(),
            _ => "-".into(),
        };
        println!(
            "{:<8} {:<9} {:<48} {:<20} {ack}",
            a.status,
            a.severity.as_str(),
            a.fingerprint,
            a.since.get(..19).unwrap_or(&a.since).replace('T', " ")
        );
    }
}

/// `sloguard ack`: acknowledges a firing alert, or every firing alert of a rule.
pub(super) fn ack(
    alert: String,
    by: Option<String>,
    comment: Option<String>,
    config: &Path,
) -> anyhow::Result<ExitCode> {
    let req = AckRequest {
        alert,
        by: who(by),
        comment,
    };
    with_daemon(config, async |d| {
        let resp = d.post("/api/v1/alerts/ack").json(&req).send().await?;
        let Acknowledged { acknowledged } =
            answer(resp, |_| "the daemon refused".to_string()).await?;
        if acknowledged.is_empty() {
            println!("already acknowledged");
        }
        for fp in acknowledged {
            println!("acknowledged {fp}");
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `sloguard silence add|list|expire`.
pub(super) fn silence(action: SilenceAction) -> anyhow::Result<ExitCode> {
    match action {
        SilenceAction::Add {
            matchers,
            duration,
            reason,
            by,
            config,
        } => silence_add(&matchers, duration, reason, by, &config),
        SilenceAction::List { config } => silence_list(&config),
        SilenceAction::Expire { id, config } => silence_expire(id, &config),
    }
}

fn silence_add(
    matchers: &[String],
    duration: String,
    reason: String,
    by: Option<String>,
    config: &Path,
) -> anyhow::Result<ExitCode> {
    let mut map = crate::silence::Matchers::new();
    for m in matchers {
        match m.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(UsageError(format!(
                    "`--match {m}` is not KEY=VALUE, e.g. `--match rule=api_down`"
                ))
                .into());
            }
        }
    }
    let req = SilenceRequest {
        matchers: map,
        duration,
        reason,
        by: who(by),
    };
    with_daemon(config, async |d| {
        let resp = d.post("/api/v1/silences").json(&req).send().await?;
        let made: SilenceEnd = answer(resp, http_status).await?;
        println!("silence #{} until {}", made.id, made.ends_at);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn silence_list(config: &Path) -> anyhow::Result<ExitCode> {
    with_daemon(config, async |d| {
        let resp = d.get("/api/v1/silences").send().await?;
        let list: Vec<SilenceView> = answer(resp, http_status).await?;
        if list.is_empty() {
            println!("no silences");
        }
        for s in list {
            let matchers: Vec<String> =
                s.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "#{} {} until {} by {}: {} [{}]",
                s.id,
                if s.active { "active " } else { "expired" },
                s.ends_at,
                s.by,
                s.reason,
                matchers.join(", ")
            );
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn silence_expire(id: u64, config: &Path) -> anyhow::Result<ExitCode> {
    with_daemon(config, async |d| {
        let resp = d
            .post(&format!("/api/v1/silences/{id}/expire"))
            .send()
            .await?;
        let _ended: SilenceEnd = answer(resp, http_status).await?;
        println!("silence #{id} expired");
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `sloguard history`: what happened to alerts since `--since`.
pub(super) fn history(since: &str, json: bool, config: &Path) -> anyhow::Result<ExitCode> {
    with_daemon(config, async |d| {
        let resp = d
            .get("/api/v1/history")
            .query(&[("since", since), ("limit", "10000")])
            .send()
            .await?;
        let events: Vec<Event> = answer(resp, http_status).await?;
        if json {
            // Through a JSON map, whose keys print sorted, as this always printed them.
            let value = serde_json::to_value(&events)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        if events.is_empty() {
            println!("nothing happened");
        }
        for e in events {
            let at = e.at.get(..19).unwrap_or(&e.at).replace('T', " ");
            let channel = e.channel.map(|c| format!(" [{c}]")).unwrap_or_default();
            let detail = e.detail.map(|d| format!(": {d}")).unwrap_or_default();
            println!("{at}  {:<12} {}{channel}{detail}", e.event, e.alert);
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `sloguard dead-letters`: notifications that could not be delivered.
pub(super) fn dead_letters(config: &Path) -> anyhow::Result<ExitCode> {
    with_daemon(config, async |d| {
        let resp = d.get("/api/v1/dead-letters").send().await?;
        let list: Vec<DeadLetter> = answer(resp, http_status).await?;
        if list.is_empty() {
            println!("no dead letters");
        }
        for l in list {
            println!(
                "#{} {} [{}] {} {}: {} attempt(s), {}",
                l.id,
                l.created_at.get(..19).unwrap_or_default().replace('T', " "),
                l.channel,
                l.status.map_or("unreadable", |s| s.as_str()),
                l.alert,
                l.attempts,
                l.error.as_deref().unwrap_or("no error recorded")
            );
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

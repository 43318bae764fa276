//! HTTP uptime probes: one task per target, all sharing one HTTP client (connection reuse).
//!
//! Each probe produces `probe_up` (1/0), `probe_duration_seconds`, `probe_http_status_code`
//! (when there was an answer) and, for HTTPS, `probe_tls_cert_expiry_days`, all labelled
//! `target=<name>`. A failed probe carries a human-readable reason (`timeout after 5s`,
//! `connection refused`, `HTTP 503 Service Unavailable`, `TLS error: ...`) for alert texts.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{CaFile, Config, Target};
use crate::series::{Sample, SeriesKey};

/// The most of a response body a probe reads when it must look inside it.
const MAX_BODY: usize = 1 << 20;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub up: bool,
    pub duration: Duration,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub cert_expiry_days: Option<f64>,
}

impl ProbeResult {
    /// The samples this result becomes.
    pub fn samples(&self, target: &str, ts_ms: i64) -> Vec<Sample> {
        let key = |name: &str| SeriesKey::new(name, &[("target", target)]);
        let note: Option<Arc<str>> = self.reason.as_deref().map(Arc::from);
        let mut out = vec![Sample {
            series: key("probe_up"),
            ts_ms,
            value: if self.up { 1.0 } else { 0.0 },
            note: note.clone(),
        }];
        out.push(Sample {
            series: key("probe_duration_seconds"),
            ts_ms,
            value: self.duration.as_secs_f64(),
            note: None,
        });
        if let Some(code) = self.status {
            out.push(Sample {
                series: key("probe_http_status_code"),
                ts_ms,
                value: f64::from(code),
                note: None,
            });
        }
        if let Some(days) = self.cert_expiry_days {
            out.push(Sample {
                series: key("probe_tls_cert_expiry_days"),
                ts_ms,
                value: days,
                note: None,
            });
        }
        out
    }
}

/// A probe client: system and built-in roots plus `ca`, certificate details kept for the
/// expiry series. Targets without their own CA share one client, and so its connections.
pub fn client(ca: Option<&CaFile>, follow_redirects: bool) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!(
            "sloguard/",
            env!("CARGO_PKG_VERSION"),
            " (uptime probe)"
        ))
        .tls_info(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    if let Some(ca) = ca {
        for cert in reqwest::Certificate::from_pem_bundle(&ca.pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build()
}

/// Probes `target` once.
pub async fn probe(client: &reqwest::Client, target: &Target) -> ProbeResult {
    let start = Instant::now();
    let mut req = client
        .request(target.method.clone(), target.url.clone())
        .timeout(target.timeout);
    for (k, v) in &target.headers {
        req = req.header(k.as_str(), v.expose());
    }
    let fail = |reason: String, status: Option<u16>, cert: Option<f64>| ProbeResult {
        up: false,
        duration: start.elapsed(),
        status,
        reason: Some(reason),
        cert_expiry_days: cert,
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let reason = if e.is_timeout() {
                format!(
                    "timeout after {}",
                    humantime::format_duration(target.timeout)
                )
            } else {
                describe_transport_error(&e)
            };
            return fail(reason, None, None);
        }
    };
    let cert = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .and_then(|der| cert_days_left(der, now_ms()));
    let status = resp.status();
    let code = status.as_u16();
    let expected = match &target.expect_status {
        Some(codes) => codes.contains(&code),
        None => status.is_success(),
    };
    if !expected {
        let phrase = status
            .canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        return fail(format!("HTTP {code}{phrase}"), Some(code), cert);
    }
    if let Some(needle) = &target.body_contains {
        let mut resp = resp;
        let mut body = Vec::new();
        let deadline = target.timeout.saturating_sub(start.elapsed());
        let read = tokio::time::timeout(deadline, async {
            while let Some(chunk) = resp.chunk().await? {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
            Ok::<(), reqwest::Error>(())
        })
        .await;
        match read {
            Err(_) => {
                return fail(
                    format!(
                        "timeout after {} reading the body",
                        humantime::format_duration(target.timeout)
                    ),
                    Some(code),
                    cert,
                );
            }
            Ok(Err(e)) => {
                return fail(
                    format!("body read failed: {}", describe_transport_error(&e)),
                    Some(code),
                    cert,
                );
            }
            Ok(Ok(())) => {}
        }
        if !String::from_utf8_lossy(&body).contains(needle.as_str()) {
            return fail(
                format!("response body does not contain {needle:?}"),
                Some(code),
                cert,
            );
        }
    }
    ProbeResult {
        up: true,
        duration: start.elapsed(),
        status: Some(code),
        reason: None,
        cert_expiry_days: cert,
    }
}

/// Names the root cause of a transport error in an operator's words, never quoting the URL.
pub fn describe_transport_error(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut deepest = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset by peer".into(),
                std::io::ErrorKind::TimedOut => return "connection timed out".into(),
                _ => {}
            }
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return format!("TLS error: {tls}");
        }
        deepest = Some(s.to_string());
        source = next_cause(s);
    }
    let detail = deepest.unwrap_or_else(|| strip_url(e));
    if detail.contains("dns error") || detail.contains("failed to lookup address") {
        format!("DNS lookup failed: {detail}")
    } else if e.is_connect() {
        format!("connection failed: {detail}")
    } else {
        detail
    }
}

/// The error `e` wraps. An `io::Error`'s `source()` skips the error it wraps (rustls puts its
/// certificate errors there, sometimes two io::Errors deep), so step into it instead.
fn next_cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return Some(inner);
    }
    e.source()
}

/// Days until the certificate's `notAfter`, negative once expired.
pub fn cert_days_left(der: &[u8], now_ms: i64) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some((not_after as f64 - now_ms as f64 / 1000.0) / 86_400.0)
}

/// Runs the probes of the current configuration, restarting a target's task when its
/// configuration changes.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Vec<Sample>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Clients by TLS and redirect settings: targets with the same settings share one client,
    // and so its connection pool.
    let mut clients: HashMap<(Option<CaFile>, bool), reqwest::Client> = HashMap::new();
    // Dropping the set (when this task ends or panics) aborts every probe task.
    let mut set: JoinSet<()> = JoinSet::new();
    let mut running: BTreeMap<String, (Target, CancellationToken, tokio::task::Id)> =
        BTreeMap::new();
    let mut restart_due: Option<Instant> = None;
    loop {
        let cfg = config.borrow_and_update().clone();
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, (t, _, _))| cfg.targets.iter().find(|n| &n.name == *name) != Some(t))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, token, _)) = running.remove(&name) {
                token.cancel();
            }
        }
        for target in &cfg.targets {
            if running.contains_key(&target.name) {
                continue;
            }
            let key = (target.ca.clone(), target.follow_redirects);
            let client = match clients.get(&key) {
                Some(c) => c.clone(),
                None => match client(target.ca.as_ref(), target.follow_redirects) {
                    Ok(c) => {
                        clients.insert(key, c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::error!(
                            target = %target.name,
                            error = %e,
                            "Cannot build the probe's HTTP client; not probing this target"
                        );
                        continue;
                    }
                },
            };
            let token = shutdown.child_token();
            let id = set
                .spawn(probe_loop(
                    client,
                    target.clone(),
                    tx.clone(),
                    token.clone(),
                ))
                .id();
            running.insert(target.name.clone(), (target.clone(), token, id));
        }
        let restart_in = restart_due
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(ended) = set.join_next_with_id() => {
                let (id, panic) = match ended {
                    Ok((id, ())) => (id, None),
                    Err(e) => (e.id(), Some(e)),
                };
                let name = running.iter().find(|(_, r)| r.2 == id).map(|(n, _)| n.clone());
                if let Some(name) = name
                    && !shutdown.is_cancelled()
                {
                    match panic {
                        Some(e) => tracing::error!(target = %name, error = %e, "Probe task panicked; restarting it"),
                        None => tracing::error!(target = %name, "Probe task stopped unexpectedly; restarting it"),
                    }
                    running.remove(&name);
                    restart_due = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            _ = tokio::time::sleep(restart_in) => {
                restart_due = None;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, (_, token, _)) in running {
        token.cancel();
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=max.as_millis() as u64))
}

async fn probe_loop(
    client: reqwest::Client,
    target: Target,
    tx: mpsc::Sender<Vec<Sample>>,
    stop: CancellationToken,
) {
    let mut next = Instant::now() + jitter(target.jitter);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        let ts = now_ms();
        let result = tokio::select! {
            r = probe(&client, &target) => r,
            _ = stop.cancelled() => return,
        };
        match &result.reason {
            Some(reason) => tracing::debug!(target = %target.name, %reason, "Probe failed"),
            None => {
                tracing::debug!(target = %target.name, ms = result.duration.as_millis() as u64, "Probe succeeded")
            }
        }
        if tx.send(result.samples(&target.name, ts)).await.is_err() {
            return;
        }
        next = started + target.interval + jitter(target.jitter);
    }
}

/// The error's own text without the URL that reqwest appends.
fn strip_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(u) => text
            .replace(&format!(" ({u})"), "")
            .replace(u.as_str(), "<url>"),
        None => text,
    }
}

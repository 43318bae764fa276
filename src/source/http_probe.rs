//! HTTP(S) probes: a request with a timeout, checks on the status and the body, and the
//! server certificate's days to expiry. Failure reasons are written for alert texts:
//! `timeout after 5s`, `connection refused`, `HTTP 503 Service Unavailable`,
//! `TLS error: ...`, `response body does not match ...`, `$['status'] is "down", ...`.

use std::time::Duration;

use tokio::time::Instant;

use super::probe::ProbeResult;
use crate::clock::now_ms;
use crate::config::{CaFile, HttpCheck};
use crate::format::describe_transport_error;

/// The most of a response body a probe reads when it must look inside it.
const MAX_BODY: usize = 1 << 20;

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

/// Probes once.
pub async fn probe(client: &reqwest::Client, check: &HttpCheck, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let mut req = client
        .request(check.method.clone(), check.url.clone())
        .timeout(timeout);
    for (k, v) in &check.headers {
        req = req.header(k.as_str(), v.expose());
    }
    let fail = |reason: String, status: Option<u16>, cert: Option<f64>| ProbeResult {
        up: false,
        duration: start.elapsed(),
        status,
        reason: Some(reason),
        cert_expiry_days: cert,
        rows: None,
        value: None,
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let reason = if e.is_timeout() {
                format!("timeout after {}", humantime::format_duration(timeout))
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
    let expected = match &check.expect_status {
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
    if check.reads_body() {
        let mut resp = resp;
        let mut body = Vec::new();
        let deadline = timeout.saturating_sub(start.elapsed());
        let read = tokio::time::timeout(deadline, async {
            while let Some(chunk) = resp.chunk().await? {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_BODY {
                    body.truncate(MAX_BODY);
                    break;
                }
            }
            Ok::<(), reqwest::Error>(())
        })
        .await;
        match read {
            Err(_) => {
                let t = humantime::format_duration(timeout);
                return fail(
                    format!("timeout after {t} reading the body"),
                    Some(code),
                    cert,
                );
            }
            Ok(Err(e)) => {
                let why = describe_transport_error(&e);
                return fail(format!("body read failed: {why}"), Some(code), cert);
            }
            Ok(Ok(())) => {}
        }
        if let Err(reason) = check_body(check, &body) {
            return fail(reason, Some(code), cert);
        }
    }
    ProbeResult {
        up: true,
        duration: start.elapsed(),
        status: Some(code),
        reason: None,
        cert_expiry_days: cert,
        rows: None,
        value: None,
    }
}

/// Applies the body assertions; the error is the failure reason.
fn check_body(check: &HttpCheck, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if let Some(needle) = &check.body_contains
        && !text.contains(needle.as_str())
    {
        return Err(format!("response body does not contain {needle:?}"));
    }
    if let Some(re) = &check.body_regex
        && !re.0.is_match(&text)
    {
        return Err(format!("response body does not match /{}/", re.0.as_str()));
    }
    if !check.body_json.is_empty() {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("response body is not JSON ({e})"))?;
        for a in &check.body_json {
            a.check(&json)?;
        }
    }
    Ok(())
}

/// Days until the certificate's `notAfter`, negative once expired.
pub fn cert_days_left(der: &[u8], now_ms: i64) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some((not_after as f64 - now_ms as f64 / 1000.0) / 86_400.0)
}

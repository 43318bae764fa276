//! TCP connect probes: a database port, an SMTP port. Up means the connection was accepted
//! within the timeout; the connection is closed at once.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::probe::ProbeResult;
use crate::config::TcpCheck;

/// Connects once.
pub async fn probe(check: &TcpCheck, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let addr = (check.host.as_str(), check.port);
    let reason = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => None,
        Ok(Err(e)) => Some(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
            std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
            _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
                format!("DNS lookup failed: {e}")
            }
            _ => format!("connection failed: {e}"),
        }),
        Err(_) => Some(format!(
            "timeout after {}",
            humantime::format_duration(timeout)
        )),
    };
    ProbeResult {
        up: reason.is_none(),
        duration: start.elapsed(),
        status: None,
        reason,
        cert_expiry_days: None,
        rows: None,
        value: None,
    }
}

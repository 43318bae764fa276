//! Text formatting shared by every layer: numbers, times and spans as the operator reads
//! them, and the wording of a transport error. A leaf: it imports nothing from the crate.

use std::error::Error as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A value with at most three decimals and no trailing zeros: `9.5`, `0.123`, `3`.
pub fn format_value(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// How many characters of a client-reported string an alert quotes.
pub const CLIENT_CHARS: usize = 64;

/// A string a public client sent (a label value, an error message), as an alert quotes
/// it: control characters as spaces (no forged lines), at most [`CLIENT_CHARS`]
/// characters, with `…` where it was cut.
pub fn client_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(CLIENT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(CLIENT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A client-reported message as a note quotes it: cut, and marked as what it is.
pub fn client_note(s: &str) -> String {
    format!("{} (client-reported)", client_text(s))
}

/// `2026-02-06 14:32:00 UTC`.
pub fn format_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// RFC 3339 with seconds, for machine-readable payloads.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A configured duration as people read it, a space between number and unit: `7 days`,
/// `1 h 30 min`, `5 min`, `30 s`, `500 ms`.
pub fn duration_words(d: Duration) -> String {
    let text = humantime::format_duration(d).to_string();
    text.split(' ')
        .map(|part| {
            let digits = part.bytes().take_while(u8::is_ascii_digit).count();
            let (n, unit) = part.split_at(digits);
            let unit = match unit {
                "m" => "min",
                "us" => "µs",
                "day" | "days" if n == "1" => "day",
                "month" | "months" if n == "1" => "month",
                "year" | "years" if n == "1" => "year",
                other => other,
            };
            format!("{n} {unit}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A span rounded to whole seconds, e.g. `1h 2m 3s`.
pub fn format_span(ms: i64) -> String {
    let secs = (ms.max(0) + 500) / 1000;
    humantime::format_duration(Duration::from_secs(secs as u64)).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_a_space_before_each_unit() {
        let s = Duration::from_secs;
        assert_eq!(duration_words(s(7 * 86_400)), "7 days");
        assert_eq!(duration_words(s(86_400)), "1 day");
        assert_eq!(duration_words(s(5400)), "1 h 30 min");
        assert_eq!(duration_words(s(30)), "30 s");
        assert_eq!(duration_words(Duration::from_millis(500)), "500 ms");
        assert_eq!(duration_words(s(30 * 86_400)), "30 days");
    }

    #[test]
    fn values_print_short() {
        assert_eq!(format_value(9.5), "9.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.12345), "0.123");
        assert_eq!(format_value(-0.0001), "0");
        assert_eq!(format_value(1200.0), "1200");
    }
}

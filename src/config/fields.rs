//! Fields that many sections have, each read with its problem: durations, secrets, names,
//! URLs, request headers, CA files, regular expressions, metric names, aggregates and
//! conditions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Secret;
use super::problems::{Problems, Site};
use crate::vocab::Condition;

/// No duration means more than ten years here; capping keeps time arithmetic exact.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Parses a duration such as `30s`, `5m`, `1h30m` or `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. `30s`, `5m`, `1h`, `30d`")
    })
}

/// A compiled regular expression, equal to another with the same source.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A PEM bundle of CA certificates, read when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

/// A metric and label matchers: `{ metric = "app_requests", match = { event = "…" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    /// The metric name.
    pub metric: String,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
}

pub(super) fn duration_field(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    raw: Option<&String>,
    default: Duration,
    min: Duration,
) -> Duration {
    let Some(text) = raw else { return default };
    match parse_duration(text) {
        Ok(d) if d > MAX_DURATION => {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                "must be at most 3650d",
            );
            default
        }
        Ok(d) if d < min => {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("must be at least {}", humantime::format_duration(min)),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            problems.push(Some(site.span_of(key)), site.field(key), e);
            default
        }
    }
}

/// A duration inside an element of an array table (`escalation[0].after`): parsed and within
/// `range`, or a problem at the array's line saying `out_of_range`.
pub(super) fn nested_duration(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    (array, field): (&str, &str),
    text: &str,
    range: std::ops::RangeInclusive<Duration>,
    out_of_range: &str,
) -> Option<Duration> {
    let problem = match parse_duration(text) {
        Ok(d) if range.contains(&d) => return Some(d),
        Ok(_) => out_of_range.to_string(),
        Err(e) => e,
    };
    problems.push(Some(site.span_of(array)), site.field(field), problem);
    None
}

/// Resolves a secret given as `key` (literal or `env:NAME`) or `key_file`.
pub(super) fn secret_field(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base_dir: &Path,
) -> Option<Secret> {
    let file_key = format!("{key}_file");
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.push(
                Some(site.key_span(&file_key)),
                site.field(&file_key),
                format!("give either `{key}` or `{file_key}`, not both"),
            );
            None
        }
        (None, None) => {
            problems.push(
                Some(site.span.clone()),
                site.field(key),
                format!("missing: set `{key}` (a value or `env:NAME`) or `{file_key}`"),
            );
            None
        }
        (Some(text), None) => match Secret::from_text(text) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(Some(site.span_of(key)), site.field(key), e);
                None
            }
        },
        (None, Some(path)) => {
            let path = base_dir.join(path);
            match Secret::from_file(&path) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(Some(site.span_of(&file_key)), site.field(&file_key), e);
                    None
                }
            }
        }
    }
}

pub(super) fn check_name(problems: &mut Problems<'_>, site: &Site<'_, '_>, name: &str) -> bool {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        problems.push(
            Some(site.span_of("name")),
            site.field("name"),
            format!("`{name}` is not a valid name; use letters, digits, `_`, `-` and `.`"),
        );
    }
    ok
}

/// The `url` field as an http(s) URL with a host.
pub(super) fn http_url(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    text: &str,
) -> Option<url::Url> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            problems.push(
                Some(site.span_of("url")),
                site.field("url"),
                "must be an http:// or https:// URL",
            );
            None
        }
        Err(e) => {
            problems.push(
                Some(site.span_of("url")),
                site.field("url"),
                format!("`{text}` is not a valid URL ({e})"),
            );
            None
        }
    }
}

/// Whether `url` reaches this machine only: a loopback address or `localhost`.
pub(super) fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => is_loopback_name(d),
        None => false,
    }
}

/// Whether a host name or address names this machine: a loopback address or `localhost`.
pub(super) fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// Refuses an `http://` URL to another machine where what is sent carries a secret (the
/// URL itself, a key, a password): it would cross the network unencrypted.
pub(super) fn plaintext_refused(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    url: &url::Url,
    what: &str,
) -> bool {
    if url.scheme() == "https" || is_loopback_url(url) {
        return false;
    }
    problems.push(
        Some(site.span_of(key)),
        site.field(key),
        format!(
            "an http:// URL to another machine would send {what} unencrypted; use https:// \
             (plain http:// is taken for 127.0.0.1, ::1 and localhost only)"
        ),
    );
    true
}

/// Request headers whose values may be secrets (`env:NAME`).
pub(super) fn headers_field(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    raw: BTreeMap<String, String>,
) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for (k, v) in raw {
        let path = site.field(&format!("headers.{k}"));
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            problems.push(
                Some(site.span_of("headers")),
                path,
                "not a valid HTTP header name",
            );
            continue;
        }
        match Secret::from_text(&v) {
            Ok(s) if reqwest::header::HeaderValue::from_str(s.expose()).is_ok() => out.push((k, s)),
            Ok(s) => problems.push(
                Some(site.span_of("headers")),
                path,
                format!(
                    "the value from {} is not a valid HTTP header value",
                    s.origin()
                ),
            ),
            Err(e) => problems.push(Some(site.span_of("headers")), path, e),
        }
    }
    out
}

pub(super) fn ca_file(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    raw: Option<&str>,
    base_dir: &Path,
) -> Option<CaFile> {
    let path = base_dir.join(raw?);
    let problem = match std::fs::read(&path) {
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => return Some(CaFile { path, pem }),
            Ok(_) => format!("{} holds no PEM certificate", path.display()),
            Err(e) => format!("{} is not a PEM certificate bundle: {e}", path.display()),
        },
        Err(e) => format!("cannot read {}: {e}", path.display()),
    };
    problems.push(
        Some(site.span_of("ca_file")),
        site.field("ca_file"),
        problem,
    );
    None
}

pub(super) fn metric_name(problems: &mut Problems<'_>, site: &Site<'_, '_>, metric: &str) {
    if !crate::series::valid_metric_name(metric) {
        problems.push(
            Some(site.span_of("metric")),
            site.field("metric"),
            format!("`{metric}` is not a metric name (letters, digits, `_` and `:`)"),
        );
    }
}

pub(super) fn agg_field(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    text: &str,
) -> Option<crate::query::Agg> {
    match text.parse::<crate::query::Agg>() {
        Ok(a) => Some(a),
        Err(e) => {
            problems.push(Some(site.span_of("agg")), site.field("agg"), e.to_string());
            None
        }
    }
}

pub(super) fn condition_field(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    text: &str,
) -> Option<Condition> {
    match Condition::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(Some(site.span_of(key)), site.field(key), e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    /// The forms docs/configuration.md lists, and what they mean.
    #[test]
    fn the_documented_duration_forms_parse_as_documented() {
        let s = Duration::from_secs;
        for (text, want) in [
            ("500ms", Duration::from_millis(500)),
            ("500 msec", Duration::from_millis(500)),
            ("30s", s(30)),
            ("5 sec", s(5)),
            ("5 seconds", s(5)),
            ("5m", s(300)),
            ("5 mins", s(300)),
            ("1h30m", s(5400)),
            ("1h 30m", s(5400)),
            ("2 hrs", s(7200)),
            ("30d", s(30 * 86_400)),
            ("2 weeks", s(14 * 86_400)),
            ("1M", s(2_630_016)),
            ("1y", s(31_557_600)),
        ] {
            assert_eq!(super::parse_duration(text), Ok(want), "{text}");
        }
        assert!(super::parse_duration("5").is_err());
        assert!(super::parse_duration("five minutes").is_err());
    }

    use crate::config::testing::{expect, expect_one};

    const TARGET: &str = "[[targets]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/\"\n";

    const THRESHOLD: &str = r#"[[rules]]
name = "slow"
kind = "threshold"
metric = "http_ms"
agg = "p95"
window = "5m"
condition = "> 500"
severity = "info"
summary = "Slow"
"#;

    #[test]
    fn durations() {
        expect(&[
            (
                "[outbox]\ntimeout = \"30 parsecs\"\n",
                "outbox.timeout",
                2,
                "`30 parsecs` is not a duration (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write e.g. `30s`, `5m`, `1h`, `30d`",
            ),
            (
                "[outbox]\n\ntimeout = \"500000d\"\n",
                "outbox.timeout",
                3,
                "must be at most 3650d",
            ),
            (
                "[outbox]\ntimeout = \"1ms\"\n",
                "outbox.timeout",
                2,
                "must be at least 10ms",
            ),
        ]);
    }

    #[test]
    fn durations_in_arrays_are_placed_at_the_array() {
        expect(&[
            (
                "[store]\nrollup = [\n  { step = \"a minute\", retention = \"1d\" },\n]\n",
                "store.rollup[0].step",
                2,
                "`a minute` is not a duration",
            ),
            (
                "[store]\nrollup = [{ step = \"10s\", retention = \"1d\" }]\n",
                "store.rollup[0].step",
                2,
                "must be between 1m and 3650d",
            ),
        ]);
    }

    #[test]
    fn secrets() {
        let server = "[server]\ntoken = \"0123456789abcdef0123\"\n";
        expect(&[
            (
                &format!("{server}token_file = \"token\"\n"),
                "server.token_file",
                3,
                "give either `token` or `token_file`, not both",
            ),
            (
                "[[channels]]\nname = \"slack\"\ntype = \"slack\"\n",
                "channels[0].webhook_url",
                1,
                "missing: set `webhook_url` (a value or `env:NAME`) or `webhook_url_file`",
            ),
            (
                "[server]\ntoken = \"env:SLOGUARD_TEST_SURELY_UNSET_VAR\"\n",
                "server.token",
                2,
                "environment variable SLOGUARD_TEST_SURELY_UNSET_VAR is not set",
            ),
            (
                "[server]\ntoken = \"env: \"\n",
                "server.token",
                2,
                "`env:` needs a variable name, e.g. `env:SLACK_WEBHOOK_URL`",
            ),
            (
                "[server]\ntoken_file = \"/nonexistent/sloguard/token\"\n",
                "server.token_file",
                2,
                "cannot read secret file /nonexistent/sloguard/token: No such file or directory",
            ),
        ]);
        let empty = tempfile::NamedTempFile::new().unwrap();
        let path = empty.path().display();
        expect_one(
            &format!("[server]\ntoken_file = \"{path}\"\n"),
            "server.token_file",
            2,
            &format!("secret file {path} is empty"),
        );
    }

    #[test]
    fn names() {
        expect(&[(
            "[[scrapes]]\nname = \"my app\"\nurl = \"http://127.0.0.1:9/metrics\"\n",
            "scrapes[0].name",
            2,
            "`my app` is not a valid name; use letters, digits, `_`, `-` and `.`",
        )]);
    }

    #[test]
    fn http_urls() {
        expect(&[
            (
                "[[targets]]\nname = \"web\"\nurl = \"ftp://127.0.0.1/\"\n",
                "targets[0].url",
                3,
                "must be an http:// or https:// URL",
            ),
            (
                "[[targets]]\nname = \"web\"\nurl = \"example.com/health\"\n",
                "targets[0].url",
                3,
                "`example.com/health` is not a valid URL (relative URL without a base)",
            ),
        ]);
    }

    #[test]
    fn headers() {
        expect(&[
            (
                &format!("{TARGET}headers = {{ \"X Key\" = \"1\" }}\n"),
                "targets[0].headers.X Key",
                4,
                "not a valid HTTP header name",
            ),
            (
                &format!("{TARGET}headers = {{ X-Key = \"a\\nb\" }}\n"),
                "targets[0].headers.X-Key",
                4,
                "the value from inline is not a valid HTTP header value",
            ),
            (
                &format!(
                    "{TARGET}headers = {{ X-Key = \"env:SLOGUARD_TEST_SURELY_UNSET_VAR\" }}\n"
                ),
                "targets[0].headers.X-Key",
                4,
                "environment variable SLOGUARD_TEST_SURELY_UNSET_VAR is not set",
            ),
        ]);
    }

    #[test]
    fn ca_files() {
        expect(&[(
            &format!("{TARGET}ca_file = \"/nonexistent/sloguard/ca.pem\"\n"),
            "targets[0].ca_file",
            4,
            "cannot read /nonexistent/sloguard/ca.pem: No such file or directory",
        )]);
        let mut none = tempfile::NamedTempFile::new().unwrap();
        none.write_all(b"no certificate here\n").unwrap();
        let path = none.path().display();
        expect_one(
            &format!("{TARGET}ca_file = \"{path}\"\n"),
            "targets[0].ca_file",
            4,
            &format!("{path} holds no PEM certificate"),
        );
        let mut broken = tempfile::NamedTempFile::new().unwrap();
        broken
            .write_all(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
            .unwrap();
        let path = broken.path().display();
        expect_one(
            &format!("{TARGET}ca_file = \"{path}\"\n"),
            "targets[0].ca_file",
            4,
            &format!("{path} is not a PEM certificate bundle: "),
        );
    }

    #[test]
    fn metric_names_aggregates_and_conditions() {
        expect(&[
            (
                &THRESHOLD.replace("\"http_ms\"", "\"http ms\""),
                "rules[0].metric",
                4,
                "`http ms` is not a metric name (letters, digits, `_` and `:`)",
            ),
            (
                &THRESHOLD.replace("\"p95\"", "\"p101\""),
                "rules[0].agg",
                5,
                "`p101` is not an aggregation; use avg, min, max, sum, count, rate, increase, last or a percentile such as p95 or p99.9",
            ),
            (
                &THRESHOLD.replace("\"> 500\"", "\"above 500\""),
                "rules[0].condition",
                7,
                "`above 500` is not a condition; write an operator (<, <=, >, >=, ==, !=) and a number, e.g. `< 1`",
            ),
            (
                &THRESHOLD.replace("\"> 500\"", "\"> lots\""),
                "rules[0].condition",
                7,
                "`> lots`: `lots` is not a number; write e.g. `< 1` or `> 0.5`",
            ),
        ]);
    }
}

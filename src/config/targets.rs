//! `[[targets]]`: what is probed (HTTP(S), TCP, SQL) and when, each type as written,
//! validated and defaulted; and the JSON body assertions of HTTP probes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::databases::Database;
use super::fields::{
    CaFile, Pattern, ca_file, check_name, duration_field, headers_field, http_url,
};
use super::problems::{Problems, Site, declared_names, element, keywords, tables, tag};

// Defaults; docs/configuration.md lists the same. `retry_interval` defaults to `interval`.

fn probe_method() -> &'static str {
    "GET"
}
fn probe_timeout() -> Duration {
    Duration::from_secs(5)
}
fn probe_interval() -> Duration {
    Duration::from_secs(30)
}
fn probe_jitter() -> Duration {
    Duration::ZERO
}

keywords! {
    /// The `type` of a `[[targets]]` entry; `http` when it has none.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum TargetTag {
        Http = "http",
        Tcp = "tcp",
        Sql = "sql",
    }
}

/// `[[targets]]` with `type = "http"` (the default): an HTTP(S) uptime probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTarget {
    /// The tag, `http` when given, already read by validation.
    #[serde(rename = "type")]
    pub _tag: Option<serde::de::IgnoredAny>,
    /// Unique target name; becomes the `target` label of the probe series.
    pub name: String,
    /// The URL to probe.
    pub url: String,
    /// HTTP method.
    pub method: Option<String>,
    /// Request headers; values may be `env:NAME` secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether redirects are followed (up to 10). Default: true.
    pub follow_redirects: Option<bool>,
    /// Status codes counted as up. Default: any 2xx.
    pub expect_status: Option<Vec<u16>>,
    /// A substring the response body must contain.
    pub body_contains: Option<String>,
    /// A regular expression the response body must match.
    pub body_regex: Option<String>,
    /// Assertions on the JSON body, each `JSONPATH OP VALUE`, e.g. `$.status == "ok"`.
    #[serde(default)]
    pub body_json: Vec<String>,
    /// A PEM file of CA certificates trusted for this target, besides the system's.
    pub ca_file: Option<String>,
    /// Timeout of one probe.
    pub timeout: Option<String>,
    /// Time between probes.
    pub interval: Option<String>,
    /// Time between probes after a result that contradicts the target's confirmed state,
    /// until the change is confirmed or dismissed.
    pub retry_interval: Option<String>,
    /// Random extra delay added to each interval, to spread probes.
    pub jitter: Option<String>,
}

/// `[[targets]]` with `type = "tcp"`: a TCP connect probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcpTarget {
    /// The tag, `tcp`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique target name; becomes the `target` label of the probe series.
    pub name: String,
    /// `host:port` to connect to.
    pub address: String,
    /// Timeout of one probe.
    pub timeout: Option<String>,
    /// Time between probes.
    pub interval: Option<String>,
    /// Time between probes after a result that contradicts the target's confirmed state,
    /// until the change is confirmed or dismissed.
    pub retry_interval: Option<String>,
    /// Random extra delay added to each interval, to spread probes.
    pub jitter: Option<String>,
}

/// `[[targets]]` with `type = "sql"`: a timed SQL query against a `[[databases]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSqlTarget {
    /// The tag, `sql`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique target name; becomes the `target` label of the probe series.
    pub name: String,
    /// The `[[databases]]` entry to run it on.
    pub database: String,
    /// The query, with `$1`, `$2`... for `params`.
    pub sql: String,
    /// Parameters: TOML integers are sent as bigint, floats as double precision, strings as
    /// text, booleans as boolean.
    pub params: Option<Vec<toml::Value>>,
    /// Record the first column of the first row as `probe_value` (a number).
    pub value: Option<bool>,
    /// Timeout of one probe (connecting and the query).
    pub timeout: Option<String>,
    /// Time between probes.
    pub interval: Option<String>,
    /// Time between probes while a change is being confirmed.
    pub retry_interval: Option<String>,
    /// Random extra delay added to each interval.
    pub jitter: Option<String>,
}

/// One probe target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub check: Check,
    pub timing: Timing,
}

/// When a target is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub timeout: Duration,
    pub interval: Duration,
    /// The interval while a result contradicts the confirmed state (a failure of an up
    /// target, a success of a down one), until the change is confirmed or dismissed.
    pub retry_interval: Duration,
    pub jitter: Duration,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http(Box<HttpCheck>),
    Tcp(TcpCheck),
    Sql(Box<SqlCheck>),
}

/// A timed query on a database.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCheck {
    pub database: Database,
    pub sql: String,
    pub params: Vec<SqlParam>,
    /// Record the first column of the first row as `probe_value`.
    pub value: bool,
}

/// A query parameter, typed from its TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub url: url::Url,
    pub method: reqwest::Method,
    /// Request headers; values may be secrets (`env:NAME`).
    pub headers: Vec<(String, Secret)>,
    /// Whether redirects are followed (up to 10).
    pub follow_redirects: bool,
    /// `None` means any 2xx.
    pub expect_status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Pattern>,
    pub body_json: Vec<JsonAssert>,
    /// Extra CA certificates trusted for this target.
    pub ca: Option<CaFile>,
}

impl HttpCheck {
    /// Whether the probe must read the body.
    pub fn reads_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some() || !self.body_json.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpCheck {
    pub host: String,
    pub port: u16,
}

/// `JSONPATH OP VALUE`, e.g. `$.status == "ok"` or `$.queue.depth < 100`.
#[derive(Debug, Clone)]
pub struct JsonAssert {
    pub text: String,
    pub path: serde_json_path::JsonPath,
    pub op: crate::vocab::Op,
    pub value: serde_json::Value,
}

impl JsonAssert {
    pub fn parse(text: &str) -> Result<JsonAssert, String> {
        use crate::vocab::Op;
        let ops = [
            (" == ", Op::Eq),
            (" != ", Op::Ne),
            (" <= ", Op::Le),
            (" >= ", Op::Ge),
            (" < ", Op::Lt),
            (" > ", Op::Gt),
        ];
        let found = ops
            .iter()
            .filter_map(|(sym, op)| text.find(sym).map(|at| (at, sym.len(), *op)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, len, op)) = found else {
            return Err(format!(
                "`{text}` is not an assertion; write `JSONPATH OP VALUE` with spaces around the operator, e.g. `$.status == \"ok\"`"
            ));
        };
        let path_text = text[..at].trim();
        let value_text = text[at + len..].trim();
        let path = serde_json_path::JsonPath::parse(path_text)
            .map_err(|e| format!("`{path_text}` is not a JSONPath: {e}"))?;
        let value: serde_json::Value = serde_json::from_str(value_text).map_err(|_| {
            format!("`{value_text}` is not a JSON value; quote strings: `\"{value_text}\"`")
        })?;
        if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && !value.is_number() {
            return Err(format!("`{text}`: `{}` compares numbers only", op.as_str()));
        }
        Ok(JsonAssert {
            text: text.to_string(),
            path,
            op,
            value,
        })
    }

    /// Checks `body`; the error is the failure reason for the alert.
    pub fn check(&self, body: &serde_json::Value) -> Result<(), String> {
        use crate::vocab::Op;
        let nodes = self.path.query(body).all();
        let got = match nodes.as_slice() {
            [] => return Err(format!("{} matched nothing in the JSON body", self.path)),
            [one] => *one,
            many => {
                return Err(format!(
                    "{} matched {} values in the JSON body; it must select one",
                    self.path,
                    many.len()
                ));
            }
        };
        let ok = match (got.as_f64(), self.value.as_f64()) {
            (Some(a), Some(b)) => match self.op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
            },
            _ => match self.op {
                Op::Eq => got == &self.value,
                Op::Ne => got != &self.value,
                _ => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} is {}, expected {} {}",
                self.path,
                got,
                self.op.as_str(),
                self.value
            ))
        }
    }
}

impl PartialEq for JsonAssert {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// `[[targets]]`, validated; an entry without a `type` is an HTTP target.
pub(super) fn targets(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    base_dir: &Path,
    databases: &[Database],
) -> Vec<Target> {
    declared_names(problems, value, "targets", "target");
    let mut targets: Vec<Target> = Vec::new();
    for (value, site) in tables(problems, value, "targets") {
        let has_tag = site.table.is_some_and(|t| t.get("type").is_some());
        let kind = if has_tag {
            tag(problems, &site, "type")
        } else {
            Some(TargetTag::Http)
        };
        let target = match kind {
            Some(TargetTag::Tcp) => element::<RawTcpTarget>(problems, value, &site)
                .and_then(|raw| tcp_target(problems, raw, &site)),
            Some(TargetTag::Sql) => element::<RawSqlTarget>(problems, value, &site)
                .and_then(|raw| sql_target(problems, raw, &site, databases)),
            Some(TargetTag::Http) => element::<RawHttpTarget>(problems, value, &site)
                .and_then(|raw| http_target(problems, raw, &site, base_dir)),
            None => None,
        };
        if let Some(t) = target
            && !targets.iter().any(|o| o.name == t.name)
        {
            targets.push(t);
        }
    }
    targets
}

/// The timing of a target: `retry_interval` defaults to `interval` (no fast retries) and
/// may not exceed it.
fn timing(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    timeout: Option<&String>,
    interval: Option<&String>,
    retry_interval: Option<&String>,
    jitter: Option<&String>,
) -> Timing {
    let ms = Duration::from_millis;
    let timeout = duration_field(problems, site, "timeout", timeout, probe_timeout(), ms(10));
    let interval = duration_field(
        problems,
        site,
        "interval",
        interval,
        probe_interval(),
        ms(100),
    );
    let retry_interval = duration_field(
        problems,
        site,
        "retry_interval",
        retry_interval,
        interval,
        ms(100),
    );
    if retry_interval > interval {
        problems.push(
            Some(site.span_of("retry_interval")),
            site.field("retry_interval"),
            format!(
                "must not be longer than interval ({})",
                humantime::format_duration(interval)
            ),
        );
    }
    let jitter = duration_field(
        problems,
        site,
        "jitter",
        jitter,
        probe_jitter(),
        Duration::ZERO,
    );
    Timing {
        timeout,
        interval,
        retry_interval,
        jitter,
    }
}

fn sql_target(
    problems: &mut Problems<'_>,
    raw: RawSqlTarget,
    site: &Site<'_, '_>,
    databases: &[Database],
) -> Option<Target> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let timing = timing(
        problems,
        site,
        raw.timeout.as_ref(),
        raw.interval.as_ref(),
        raw.retry_interval.as_ref(),
        raw.jitter.as_ref(),
    );
    let database = databases.iter().find(|d| d.name == raw.database);
    if database.is_none() {
        let known: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
        problems.push(
            Some(site.span_of("database")),
            site.field("database"),
            format!(
                "`{}` is not a [[databases]] entry (known: {})",
                raw.database,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    let mut params = Vec::new();
    for (i, p) in raw.params.unwrap_or_default().into_iter().enumerate() {
        params.push(match p {
            toml::Value::Integer(n) => SqlParam::Int(n),
            toml::Value::Float(f) => SqlParam::Float(f),
            toml::Value::String(s) => SqlParam::Text(s),
            toml::Value::Boolean(b) => SqlParam::Bool(b),
            other => {
                problems.push(
                    Some(site.span_of("params")),
                    site.field(&format!("params[{i}]")),
                    format!(
                        "a {} cannot be a parameter; use a number, a string or a boolean (and cast in SQL: `$1::uuid`)",
                        other.type_str()
                    ),
                );
                continue;
            }
        });
    }
    if raw.sql.trim().is_empty() {
        problems.push(Some(site.span_of("sql")), site.field("sql"), "is empty");
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Target {
        name: raw.name,
        check: Check::Sql(Box::new(SqlCheck {
            database: database?.clone(),
            sql: raw.sql,
            params,
            value: raw.value.unwrap_or(false),
        })),
        timing,
    })
}

fn tcp_target(
    problems: &mut Problems<'_>,
    raw: RawTcpTarget,
    site: &Site<'_, '_>,
) -> Option<Target> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let timing = timing(
        problems,
        site,
        raw.timeout.as_ref(),
        raw.interval.as_ref(),
        raw.retry_interval.as_ref(),
        raw.jitter.as_ref(),
    );
    // `host:port`, with IPv6 hosts in brackets.
    let parsed = raw.address.rsplit_once(':').and_then(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().ok()?;
        (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
    });
    let Some((host, port)) = parsed else {
        problems.push(
            Some(site.span_of("address")),
            site.field("address"),
            format!(
                "`{}` is not `host:port`, e.g. `db.example.com:5432`",
                raw.address
            ),
        );
        return None;
    };
    if problems.list.len() > before {
        return None;
    }
    Some(Target {
        name: raw.name,
        check: Check::Tcp(TcpCheck { host, port }),
        timing,
    })
}

fn http_target(
    problems: &mut Problems<'_>,
    raw: RawHttpTarget,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Target> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let url = http_url(problems, site, &raw.url);
    let method_text = raw
        .method
        .as_deref()
        .unwrap_or(probe_method())
        .to_ascii_uppercase();
    let method = match reqwest::Method::from_bytes(method_text.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            problems.push(
                Some(site.span_of("method")),
                site.field("method"),
                format!("`{method_text}` is not an HTTP method"),
            );
            reqwest::Method::GET
        }
    };
    let headers = headers_field(problems, site, raw.headers);
    if let Some(codes) = &raw.expect_status
        && (codes.is_empty() || codes.iter().any(|c| !(100..=599).contains(c)))
    {
        problems.push(
            Some(site.span_of("expect_status")),
            site.field("expect_status"),
            "must list HTTP status codes between 100 and 599",
        );
    }
    let body_regex = match raw.body_regex.as_deref().map(regex::Regex::new) {
        None => None,
        Some(Ok(re)) => Some(Pattern(re)),
        Some(Err(e)) => {
            problems.push(
                Some(site.span_of("body_regex")),
                site.field("body_regex"),
                format!("not a regular expression: {e}"),
            );
            None
        }
    };
    let mut body_json = Vec::new();
    for (i, text) in raw.body_json.iter().enumerate() {
        match JsonAssert::parse(text) {
            Ok(a) => body_json.push(a),
            Err(e) => problems.push(
                Some(site.span_of("body_json")),
                site.field(&format!("body_json[{i}]")),
                e,
            ),
        }
    }
    let timing = timing(
        problems,
        site,
        raw.timeout.as_ref(),
        raw.interval.as_ref(),
        raw.retry_interval.as_ref(),
        raw.jitter.as_ref(),
    );
    let ca = ca_file(problems, site, raw.ca_file.as_deref(), base_dir);
    if problems.list.len() > before {
        return None;
    }
    Some(Target {
        name: raw.name,
        check: Check::Http(Box::new(HttpCheck {
            url: url?,
            method,
            headers,
            follow_redirects: raw.follow_redirects.unwrap_or(true),
            expect_status: raw.expect_status,
            body_contains: raw.body_contains,
            body_regex,
            body_json,
            ca,
        })),
        timing,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Check, HttpCheck, JsonAssert, SqlCheck, SqlParam, TcpCheck, Timing};
    use crate::config::testing::{config, expect};

    const DATABASE: &str =
        "[[databases]]\nname = \"db\"\nurl = \"postgres://u:p@127.0.0.1:5432/db\"\n\n";
    const HTTP: &str = "[[targets]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/health\"\n";
    const TCP: &str = "[[targets]]\ntype = \"tcp\"\nname = \"pg\"\n";
    const SQL: &str = "[[targets]]\ntype = \"sql\"\nname = \"q\"\ndatabase = \"db\"\n";

    #[test]
    fn each_type_as_written_with_its_defaults() {
        let c = config(&format!(
            r#"{DATABASE}{HTTP}
[[targets]]
type = "tcp"
name = "pg"
address = "[::1]:5432"
interval = "10s"
retry_interval = "2s"
jitter = "1s"

[[targets]]
type = "sql"
name = "q"
database = "db"
sql = "SELECT count(*) FROM jobs WHERE state = $1 AND age > $2"
params = ["stuck", 3, 1.5, true]
value = true
"#
        ));
        let secs = Duration::from_secs;
        let web = &c.targets[0];
        assert_eq!(
            web.timing,
            Timing {
                timeout: secs(5),
                interval: secs(30),
                retry_interval: secs(30),
                jitter: Duration::ZERO,
            }
        );
        assert_eq!(
            web.check,
            Check::Http(Box::new(HttpCheck {
                url: "http://127.0.0.1:9/health".parse().unwrap(),
                method: reqwest::Method::GET,
                headers: Vec::new(),
                follow_redirects: true,
                expect_status: None,
                body_contains: None,
                body_regex: None,
                body_json: Vec::new(),
                ca: None,
            }))
        );
        let pg = &c.targets[1];
        assert_eq!(
            pg.check,
            Check::Tcp(TcpCheck {
                host: "::1".into(),
                port: 5432
            })
        );
        assert_eq!(
            pg.timing,
            Timing {
                timeout: secs(5),
                interval: secs(10),
                retry_interval: secs(2),
                jitter: secs(1),
            }
        );
        let Check::Sql(sql) = &c.targets[2].check else {
            panic!("{:?}", c.targets[2]);
        };
        assert_eq!(
            **sql,
            SqlCheck {
                database: c.databases[0].clone(),
                sql: "SELECT count(*) FROM jobs WHERE state = $1 AND age > $2".into(),
                params: vec![
                    SqlParam::Text("stuck".into()),
                    SqlParam::Int(3),
                    SqlParam::Float(1.5),
                    SqlParam::Bool(true),
                ],
                value: true,
            }
        );
    }

    #[test]
    fn the_type_tag() {
        expect(&[
            (
                "[[targets]]\nname = \"x\"\ntype = \"icmp\"\n",
                "targets[0].type",
                3,
                "unknown type `icmp`; expected one of: http, tcp, sql",
            ),
            (
                "[[targets]]\nname = \"x\"\ntype = [\"tcp\"]\n",
                "targets[0].type",
                3,
                "unknown type `(not a string)`; expected one of: http, tcp, sql",
            ),
        ]);
    }

    #[test]
    fn problems() {
        expect(&[
            (
                &format!("{HTTP}interval = \"10s\"\nretry_interval = \"20s\"\n"),
                "targets[0].retry_interval",
                5,
                "must not be longer than interval (10s)",
            ),
            (
                &format!("{HTTP}timeout = \"5ms\"\n"),
                "targets[0].timeout",
                4,
                "must be at least 10ms",
            ),
            (
                &format!("{HTTP}interval = \"50ms\"\n"),
                "targets[0].interval",
                4,
                "must be at least 100ms",
            ),
            (
                &format!("{HTTP}jitter = \"soon\"\n"),
                "targets[0].jitter",
                4,
                "`soon` is not a duration",
            ),
            (
                &format!("{HTTP}method = \"get it\"\n"),
                "targets[0].method",
                4,
                "`GET IT` is not an HTTP method",
            ),
            (
                &format!("{HTTP}expect_status = []\n"),
                "targets[0].expect_status",
                4,
                "must list HTTP status codes between 100 and 599",
            ),
            (
                &format!("{HTTP}expect_status = [200, 600]\n"),
                "targets[0].expect_status",
                4,
                "must list HTTP status codes between 100 and 599",
            ),
            (
                &format!("{HTTP}body_regex = \"(ok\"\n"),
                "targets[0].body_regex",
                4,
                "not a regular expression: regex parse error:",
            ),
            (
                &format!("{HTTP}body_json = [\"$.status == \\\"ok\\\"\", \"$.status == ok\"]\n"),
                "targets[0].body_json[1]",
                4,
                "`ok` is not a JSON value; quote strings: `\"ok\"`",
            ),
            (
                &format!("{TCP}address = \"db.example.com\"\n"),
                "targets[0].address",
                4,
                "`db.example.com` is not `host:port`, e.g. `db.example.com:5432`",
            ),
            (
                &format!("{TCP}address = \"db.example.com:0\"\n"),
                "targets[0].address",
                4,
                "`db.example.com:0` is not `host:port`",
            ),
            (
                &format!("{SQL}sql = \"SELECT 1\"\n"),
                "targets[0].database",
                4,
                "`db` is not a [[databases]] entry (known: none)",
            ),
            (
                &format!("{DATABASE}{SQL}sql = \"SELECT 1\"\n")
                    .replace("database = \"db\"", "database = \"dv\""),
                "targets[0].database",
                8,
                "`dv` is not a [[databases]] entry (known: db)",
            ),
            (
                &format!("{DATABASE}{SQL}sql = \" \"\n"),
                "targets[0].sql",
                9,
                "is empty",
            ),
            (
                &format!("{DATABASE}{SQL}sql = \"SELECT $1\"\nparams = [1979-05-27]\n"),
                "targets[0].params[0]",
                10,
                "a datetime cannot be a parameter; use a number, a string or a boolean (and cast in SQL: `$1::uuid`)",
            ),
            (
                &format!("{DATABASE}{SQL}sql = \"SELECT $1\"\nparams = [[1]]\n"),
                "targets[0].params[0]",
                10,
                "a array cannot be a parameter",
            ),
        ]);
    }

    #[test]
    fn json_assertions() {
        let body = serde_json::json!({"status": "ok", "db": {"latency_ms": 120}, "items": [1, 2]});
        let ok = |t: &str| JsonAssert::parse(t).unwrap().check(&body);
        assert_eq!(ok(r#"$.status == "ok""#), Ok(()));
        assert_eq!(ok("$.db.latency_ms < 200"), Ok(()));
        assert_eq!(
            ok("$.db.latency_ms != 120.0"),
            Err("$.db.latency_ms is 120, expected != 120.0".into())
        );
        assert_eq!(
            ok(r#"$.status == "degraded""#),
            Err(r#"$.status is "ok", expected == "degraded""#.into())
        );
        assert_eq!(
            ok("$.missing == 1"),
            Err("$.missing matched nothing in the JSON body".into())
        );
        assert_eq!(
            ok(r#"$.status < 3"#),
            Err(r#"$.status is "ok", expected < 3"#.into())
        );
        assert!(JsonAssert::parse("$.status==ok").is_err());
        assert!(
            JsonAssert::parse("$.status == ok")
                .unwrap_err()
                .contains("quote strings")
        );
        assert!(JsonAssert::parse(r#"$.status > "a""#).is_err());
        assert!(
            JsonAssert::parse("status == 1")
                .unwrap_err()
                .contains("not a JSONPath")
        );
    }
}

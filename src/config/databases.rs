//! `[[databases]]`: the PostgreSQL databases whose statistics are collected (and that SQL
//! targets query), as written, validated and defaulted.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::fields::{
    CaFile, Pattern, ca_file, check_name, duration_field, nested_duration, secret_field,
};
use super::problems::{Keyword, Problems, Site, keywords, named_elements};

// Defaults; docs/configuration.md lists the same. `tls` defaults to `verify-full`.

fn database_interval() -> Duration {
    Duration::from_secs(30)
}
fn database_timeout() -> Duration {
    Duration::from_secs(5)
}
fn statements_schema() -> &'static str {
    "public"
}
fn statements_top() -> u32 {
    10
}
fn sql_metric_interval() -> Duration {
    Duration::from_secs(3600)
}
fn sql_metric_max_rows() -> u32 {
    1000
}

/// The most rows a `[[databases.metric]]` may allow.
pub const MAX_SQL_METRIC_ROWS: u32 = 100_000;

/// `[[databases]]`, validated.
pub(super) fn databases(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    base_dir: &Path,
) -> Vec<Database> {
    named_elements::<RawDatabase, _>(
        problems,
        value,
        ("databases", "database"),
        |problems, raw, site| database(problems, raw, site, base_dir),
        |d| &d.name,
    )
}

/// `[[databases]]`: a PostgreSQL database whose statistics are collected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    /// Unique name; becomes the `database` label.
    pub name: String,
    /// Connection string (`postgres://user:password@host:5432/db`), a secret.
    pub url: Option<String>,
    /// A file whose content is the connection string.
    pub url_file: Option<String>,
    /// `disable`, `require` or `verify-full`.
    pub tls: Option<String>,
    /// Extra CA certificates (PEM) for `verify-full`, e.g. Supabase's.
    pub ca_file: Option<String>,
    /// Time between collections.
    pub interval: Option<String>,
    /// Timeout of connecting and of each statistics query.
    pub timeout: Option<String>,
    /// Collect `pg_stat_statements` (default true).
    pub statements: Option<bool>,
    /// The schema holding `pg_stat_statements` (`public`; `extensions` on Supabase).
    pub statements_schema: Option<String>,
    /// How many queries by total execution time to keep per collection, for reports.
    pub top: Option<u32>,
    /// Collect `pg_stat_database` and connection counts (default true).
    pub database_stats: Option<bool>,
    /// Count the monitoring role's own statements (its SQL probes, its statistics queries)
    /// in `pg_stat_statements` figures (default false).
    pub include_own_statements: Option<bool>,
    /// Named queries of `pg_stat_statements`, each a series of its own.
    pub query: Option<Vec<RawStatementMatcher>>,
    /// Labelled series from the app's own tables.
    pub metric: Option<Vec<RawSqlMetric>>,
}

/// `[[databases.metric]]`: a query whose rows become series, one per row and value column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSqlMetric {
    /// The metric name (with `values`, the prefix of each column's).
    pub name: String,
    /// One `SELECT`, run read-only.
    pub sql: String,
    /// Columns whose text becomes a label of the same name.
    pub labels: Option<Vec<String>>,
    /// The one column holding the value (the series is `name`).
    pub value: Option<String>,
    /// Several value columns: one series `name_COLUMN` each.
    pub values: Option<Vec<String>>,
    /// Time between runs.
    pub interval: Option<String>,
    /// The statement's time limit (`statement_timeout`); the database's `timeout` if unset.
    pub timeout: Option<String>,
    /// Rows read at most; beyond them the answer is cut and that is reported.
    pub max_rows: Option<u32>,
}

/// `[[databases.query]]`: statements selected by their text or id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatementMatcher {
    /// Becomes the `query` label.
    pub name: String,
    /// A regex over the normalised query text.
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    /// Or the statement's `queryid`.
    pub queryid: Option<i64>,
}

keywords! {
    /// How the connection to a database is protected.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TlsMode {
        /// Plaintext.
        Disable = "disable",
        /// TLS, the server's certificate not checked.
        Require = "require",
        /// TLS, the certificate checked against the system roots and `ca_file`, and the host
        /// name.
        VerifyFull = "verify-full",
    }
}

/// A `[[databases]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub name: String,
    /// The connection string without `sslmode`, a secret.
    pub url: Secret,
    pub tls: TlsMode,
    pub ca: Option<CaFile>,
    pub interval: Duration,
    pub timeout: Duration,
    /// `Some(schema)` to collect `pg_stat_statements` from `schema`.
    pub statements: Option<String>,
    pub top: u32,
    pub database_stats: bool,
    /// Whether the statements of the role sloguard connects as count too.
    pub include_own_statements: bool,
    pub queries: Vec<StatementMatcher>,
    pub metrics: Vec<SqlMetric>,
}

/// A `[[databases.metric]]`: rows of a query as labelled series.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlMetric {
    pub name: String,
    /// The statement as written, without a trailing `;`.
    pub sql: String,
    pub labels: Vec<String>,
    pub values: SqlValues,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_rows: u32,
}

/// Which columns of a `[[databases.metric]]` hold values, and how their series are named.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValues {
    /// Neither `value` nor `values`: the one column that is not a label, as `name`.
    Rest,
    /// `value = "col"`: that column, as `name`.
    One(String),
    /// `values = [...]`: each column `c` as `name_c`.
    Each(Vec<String>),
}

impl SqlMetric {
    /// The series name of value column `column`.
    pub fn series_name(&self, column: &str) -> String {
        match &self.values {
            SqlValues::Each(_) => format!("{}_{column}", self.name),
            _ => self.name.clone(),
        }
    }
}

/// Statements of `pg_stat_statements` that make one `query` series.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementMatcher {
    pub name: String,
    pub pattern: Option<Pattern>,
    pub queryid: Option<i64>,
}

/// Takes `sslmode` out of a connection string (URL or `key=value` form), returning the
/// string without it and the mode it named.
fn split_sslmode(conn: &str) -> (String, Option<String>) {
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        if let Ok(mut u) = url::Url::parse(conn) {
            let mut mode = None;
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .filter_map(|(k, v)| {
                    if k == "sslmode" {
                        mode = Some(v.into_owned());
                        None
                    } else {
                        Some((k.into_owned(), v.into_owned()))
                    }
                })
                .collect();
            if mode.is_some() {
                if pairs.is_empty() {
                    u.set_query(None);
                } else {
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
            }
            return (u.to_string(), mode);
        }
        return (conn.to_string(), None);
    }
    let mut mode = None;
    let kept: Vec<&str> = conn
        .split_whitespace()
        .filter(|part| match part.strip_prefix("sslmode=") {
            Some(m) => {
                mode = Some(m.trim_matches('\'').to_string());
                false
            }
            None => true,
        })
        .collect();
    (kept.join(" "), mode)
}

fn database(
    problems: &mut Problems<'_>,
    raw: RawDatabase,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Database> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let url = secret_field(
        problems,
        site,
        "url",
        raw.url.as_deref(),
        raw.url_file.as_deref(),
        base_dir,
    );
    let mut tls = match raw.tls.as_deref() {
        None => None,
        Some(t) => match TlsMode::parse(t) {
            Some(m) => Some(m),
            None => {
                problems.push(
                    Some(site.span_of("tls")),
                    site.field("tls"),
                    format!("`{t}` is not a TLS mode; use `disable`, `require` or `verify-full`"),
                );
                None
            }
        },
    };
    let url = url.and_then(|url| {
        let what = match url.origin() {
            "inline" => "the connection string".to_string(),
            origin => format!("the connection string from {origin}"),
        };
        let (rest, mode) = split_sslmode(url.expose());
        if let Some(mode) = mode {
            match TlsMode::parse(&mode) {
                Some(m) if tls.is_none_or(|t| t == m) => tls = Some(m),
                Some(_) => problems.push(
                    Some(site.span_of("tls")),
                    site.field("tls"),
                    format!("{what} says sslmode={mode}, which contradicts `tls`"),
                ),
                None => problems.push(
                    Some(site.span_of("url")),
                    site.field("url"),
                    format!(
                        "{what} says sslmode={mode}; sloguard never falls back to plaintext: use `disable`, `require` or `verify-full`"
                    ),
                ),
            }
        }
        match rest.parse::<tokio_postgres::Config>() {
            Ok(cfg) if !cfg.get_hosts().is_empty() => Some(url.map(|_| rest)),
            Ok(_) => {
                problems.push(
                    Some(site.span_of("url")),
                    site.field("url"),
                    format!("{what} names no host"),
                );
                None
            }
            Err(_) => {
                problems.push(
                    Some(site.span_of("url")),
                    site.field("url"),
                    format!(
                        "{what} is not a PostgreSQL connection string, e.g. postgres://monitor:PASSWORD@db.example.com:5432/postgres"
                    ),
                );
                None
            }
        }
    });
    let ca = ca_file(problems, site, raw.ca_file.as_deref(), base_dir);
    let ms = Duration::from_millis;
    let interval = duration_field(
        problems,
        site,
        "interval",
        raw.interval.as_ref(),
        database_interval(),
        ms(100),
    );
    let timeout = duration_field(
        problems,
        site,
        "timeout",
        raw.timeout.as_ref(),
        database_timeout(),
        ms(10),
    );
    let schema = raw
        .statements_schema
        .unwrap_or_else(|| statements_schema().to_string());
    if schema.is_empty()
        || !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        problems.push(
            Some(site.span_of("statements_schema")),
            site.field("statements_schema"),
            format!("`{schema}` is not a schema name"),
        );
    }
    let mut queries = Vec::new();
    for (i, q) in raw.query.unwrap_or_default().into_iter().enumerate() {
        let field = format!("query[{i}]");
        let pattern = match q.pattern.as_deref().map(regex::Regex::new) {
            None => None,
            Some(Ok(r)) => Some(Pattern(r)),
            Some(Err(e)) => {
                problems.push(
                    Some(site.span_of("query")),
                    site.field(&format!("{field}.match")),
                    format!("not a valid regex: {e}"),
                );
                continue;
            }
        };
        if pattern.is_none() == q.queryid.is_none() {
            problems.push(
                Some(site.span_of("query")),
                site.field(&field),
                "give either `match` (a regex over the query text) or `queryid`",
            );
            continue;
        }
        if queries.iter().any(|o: &StatementMatcher| o.name == q.name) {
            problems.push(
                Some(site.span_of("query")),
                site.field(&format!("{field}.name")),
                format!("`{}` is used twice", q.name),
            );
            continue;
        }
        queries.push(StatementMatcher {
            name: q.name,
            pattern,
            queryid: q.queryid,
        });
    }
    let mut metrics: Vec<SqlMetric> = Vec::new();
    for (i, m) in raw.metric.unwrap_or_default().into_iter().enumerate() {
        let Some(m) = sql_metric(problems, site, i, m, timeout) else {
            continue;
        };
        if metrics.iter().any(|o| o.name == m.name) {
            problems.push(
                Some(site.span_of("metric")),
                site.field(&format!("metric[{i}].name")),
                format!("`{}` is used twice", m.name),
            );
            continue;
        }
        metrics.push(m);
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Database {
        name: raw.name,
        url: url?,
        tls: tls.unwrap_or(TlsMode::VerifyFull),
        ca,
        interval,
        timeout,
        statements: raw.statements.unwrap_or(true).then_some(schema),
        top: raw.top.unwrap_or(statements_top()),
        database_stats: raw.database_stats.unwrap_or(true),
        include_own_statements: raw.include_own_statements.unwrap_or(false),
        queries,
        metrics,
    })
}

/// A label name: letters, digits and `_`, not starting with a digit or `__`.
fn valid_label(name: &str) -> bool {
    crate::series::valid_metric_name(name) && !name.contains(':') && !name.starts_with("__")
}

/// One `[[databases.metric]]`, validated; problems are reported at the array's line.
fn sql_metric(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    i: usize,
    raw: RawSqlMetric,
    db_timeout: Duration,
) -> Option<SqlMetric> {
    let before = problems.list.len();
    let field = |key: &str| site.field(&format!("metric[{i}].{key}"));
    let mut problem = |key: &str, text: String| {
        problems.push(Some(site.span_of("metric")), field(key), text);
    };
    if !crate::series::valid_metric_name(&raw.name) {
        problem(
            "name",
            format!(
                "`{}` is not a metric name (letters, digits, `_` and `:`)",
                raw.name
            ),
        );
    }
    let sql = raw.sql.trim().trim_end_matches(';').trim_end().to_string();
    if sql.is_empty() {
        problem("sql", "is empty: write one SELECT".into());
    } else if sql.contains(';') {
        problem(
            "sql",
            "holds more than one statement: write one SELECT (it runs as a subquery)".into(),
        );
    }
    let labels = raw.labels.unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for l in &labels {
        if !valid_label(l) {
            problem(
                "labels",
                format!("`{l}` is not a valid label name; use letters, digits and `_`"),
            );
        } else if l == "database" {
            problem(
                "labels",
                "`database` is the label sloguard sets to the database's name; rename the column (`AS db_name`)".into(),
            );
        } else if !seen.insert(l.as_str()) {
            problem("labels", format!("`{l}` is listed twice"));
        }
    }
    let values = match (raw.value, raw.values) {
        (Some(_), Some(_)) => {
            problem(
                "value",
                "give `value` (one column) or `values` (several), not both".into(),
            );
            SqlValues::Rest
        }
        (Some(v), None) => SqlValues::One(v),
        (None, Some(vs)) if vs.is_empty() => {
            problem("values", "is empty: name the value columns".into());
            SqlValues::Rest
        }
        (None, Some(vs)) => SqlValues::Each(vs),
        (None, None) => SqlValues::Rest,
    };
    let columns: Vec<&String> = match &values {
        SqlValues::Rest => Vec::new(),
        SqlValues::One(v) => vec![v],
        SqlValues::Each(vs) => vs.iter().collect(),
    };
    for c in columns {
        let key = if matches!(values, SqlValues::One(_)) {
            "value"
        } else {
            "values"
        };
        if !valid_label(c) {
            problem(
                key,
                format!("`{c}` is not a column name sloguard can use (letters, digits and `_`)"),
            );
        } else if labels.contains(c) {
            problem(key, format!("`{c}` is a label column too"));
        }
    }
    let max_rows = raw.max_rows.unwrap_or(sql_metric_max_rows());
    if !(1..=MAX_SQL_METRIC_ROWS).contains(&max_rows) {
        problem(
            "max_rows",
            format!("must be between 1 and {MAX_SQL_METRIC_ROWS}"),
        );
    }
    let duration = |problems: &mut Problems<'_>, key: &str, text: Option<&String>, default, min| {
        let Some(text) = text else { return default };
        nested_duration(
            problems,
            site,
            ("metric", &format!("metric[{i}].{key}")),
            text,
            min..=Duration::from_secs(3650 * 86_400),
            &format!("must be at least {}", humantime::format_duration(min)),
        )
        .unwrap_or(default)
    };
    let interval = duration(
        problems,
        "interval",
        raw.interval.as_ref(),
        sql_metric_interval(),
        Duration::from_secs(1),
    );
    let timeout = duration(
        problems,
        "timeout",
        raw.timeout.as_ref(),
        db_timeout,
        Duration::from_millis(10),
    );
    if problems.list.len() > before {
        return None;
    }
    Some(SqlMetric {
        name: raw.name,
        sql,
        labels,
        values,
        interval,
        timeout,
        max_rows,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::{Database, SqlMetric, SqlValues, StatementMatcher, TlsMode};
    use crate::config::Secret;
    use crate::config::testing::{config, expect, expect_one};

    const DB: &str = "[[databases]]\nname = \"db\"\nurl = \"postgres://u:p@127.0.0.1:5432/db\"\n";

    #[test]
    fn as_written_with_its_defaults() {
        let c = config(DB);
        assert_eq!(
            c.databases,
            [Database {
                name: "db".into(),
                url: Secret::literal("postgres://u:p@127.0.0.1:5432/db"),
                tls: TlsMode::VerifyFull,
                ca: None,
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(5),
                statements: Some("public".into()),
                top: 10,
                database_stats: true,
                include_own_statements: false,
                queries: Vec::new(),
                metrics: Vec::new(),
            }]
        );
        // `sslmode` in the connection string is taken out of it and becomes the mode.
        let c = config(
            r#"[[databases]]
name = "db"
url = "postgres://u:p@127.0.0.1:5432/db?sslmode=require&application_name=x"
statements = false
statements_schema = "extensions"
top = 3
database_stats = false

[[databases.query]]
name = "jobs"
match = "FROM jobs"

[[databases.query]]
name = "one"
queryid = -42
"#,
        );
        let d = &c.databases[0];
        assert_eq!(d.tls, TlsMode::Require);
        assert_eq!(
            d.url,
            Secret::literal("postgres://u:p@127.0.0.1:5432/db?application_name=x")
        );
        assert_eq!(
            (d.statements.as_deref(), d.top, d.database_stats),
            (None, 3, false)
        );
        assert_eq!(d.queries[0].name, "jobs");
        assert_eq!(
            d.queries[0].pattern.as_ref().map(|p| p.0.as_str()),
            Some("FROM jobs")
        );
        assert_eq!(
            d.queries[1],
            StatementMatcher {
                name: "one".into(),
                pattern: None,
                queryid: Some(-42),
            }
        );
        let kv = config(
            "[[databases]]\nname = \"db\"\nurl = \"host=127.0.0.1 dbname=app sslmode=disable\"\n",
        );
        assert_eq!(kv.databases[0].tls, TlsMode::Disable);
        assert_eq!(
            kv.databases[0].url,
            Secret::literal("host=127.0.0.1 dbname=app")
        );
    }

    #[test]
    fn problems() {
        let url = |u: &str| format!("[[databases]]\nname = \"db\"\nurl = \"{u}\"\n");
        expect(&[
            (
                &format!("{DB}tls = \"verify-ca\"\n"),
                "databases[0].tls",
                4,
                "`verify-ca` is not a TLS mode; use `disable`, `require` or `verify-full`",
            ),
            (
                &format!(
                    "{}tls = \"disable\"\n",
                    url("postgres://u:p@127.0.0.1/db?sslmode=require")
                ),
                "databases[0].tls",
                4,
                "the connection string says sslmode=require, which contradicts `tls`",
            ),
            (
                &url("postgres://u:p@127.0.0.1/db?sslmode=prefer"),
                "databases[0].url",
                3,
                "the connection string says sslmode=prefer; sloguard never falls back to plaintext: use `disable`, `require` or `verify-full`",
            ),
            (
                &url("dbname=app user=monitor"),
                "databases[0].url",
                3,
                "the connection string names no host",
            ),
            (
                &url("mysql://u:p@127.0.0.1/db"),
                "databases[0].url",
                3,
                "the connection string is not a PostgreSQL connection string, e.g. postgres://monitor:PASSWORD@db.example.com:5432/postgres",
            ),
            (
                "[[databases]]\nname = \"db\"\n",
                "databases[0].url",
                1,
                "missing: set `url` (a value or `env:NAME`) or `url_file`",
            ),
            (
                &format!("{DB}statements_schema = \"pg-stat\"\n"),
                "databases[0].statements_schema",
                4,
                "`pg-stat` is not a schema name",
            ),
            (
                &format!("{DB}interval = \"50ms\"\n"),
                "databases[0].interval",
                4,
                "must be at least 100ms",
            ),
            (
                &format!("{DB}timeout = \"1ms\"\n"),
                "databases[0].timeout",
                4,
                "must be at least 10ms",
            ),
            (
                &format!("{DB}\n[[databases.query]]\nname = \"x\"\nmatch = \"(jobs\"\n"),
                "databases[0].query[0].match",
                5,
                "not a valid regex: regex parse error:",
            ),
            (
                &format!("{DB}\n[[databases.query]]\nname = \"x\"\n"),
                "databases[0].query[0]",
                5,
                "give either `match` (a regex over the query text) or `queryid`",
            ),
            (
                &format!(
                    "{DB}\n[[databases.query]]\nname = \"x\"\nmatch = \"jobs\"\nqueryid = 1\n"
                ),
                "databases[0].query[0]",
                5,
                "give either `match` (a regex over the query text) or `queryid`",
            ),
            (
                &format!(
                    "{DB}\n[[databases.query]]\nname = \"x\"\nqueryid = 1\n\n[[databases.query]]\nname = \"x\"\nqueryid = 2\n"
                ),
                "databases[0].query[1].name",
                5,
                "`x` is used twice",
            ),
        ]);
    }

    #[test]
    fn sql_metrics_as_written_with_their_defaults() {
        let c = config(&format!(
            r#"{DB}timeout = "7s"

[[databases.metric]]
name = "app_tier"
sql = """
SELECT tier, count(*) AS customers, sum(revenue) AS revenue_usd
FROM customers GROUP BY tier;
"""
labels = ["tier"]
values = ["customers", "revenue_usd"]
interval = "15m"
timeout = "30s"
max_rows = 50

[[databases.metric]]
name = "app_agencies"
sql = "SELECT count(*) FROM agencies"
"#
        ));
        let m = &c.databases[0].metrics;
        assert_eq!(
            m[0],
            SqlMetric {
                name: "app_tier".into(),
                sql: "SELECT tier, count(*) AS customers, sum(revenue) AS revenue_usd\nFROM customers GROUP BY tier".into(),
                labels: vec!["tier".into()],
                values: SqlValues::Each(vec!["customers".into(), "revenue_usd".into()]),
                interval: Duration::from_secs(900),
                timeout: Duration::from_secs(30),
                max_rows: 50,
            }
        );
        assert_eq!(m[0].series_name("customers"), "app_tier_customers");
        // Defaults: hourly, the database's timeout, 1 000 rows, the one other column.
        assert_eq!(
            (m[1].interval, m[1].timeout, m[1].max_rows, &m[1].values),
            (
                Duration::from_secs(3600),
                Duration::from_secs(7),
                1000,
                &SqlValues::Rest
            )
        );
        assert_eq!(m[1].series_name("count"), "app_agencies");
    }

    #[test]
    fn sql_metric_problems() {
        let metric = |body: &str| format!("{DB}\n[[databases.metric]]\n{body}");
        let sql = "sql = \"SELECT 1\"\n";
        expect(&[
            (
                &metric(&format!("name = \"app tier\"\n{sql}")),
                "databases[0].metric[0].name",
                5,
                "`app tier` is not a metric name (letters, digits, `_` and `:`)",
            ),
            (
                &metric("name = \"x\"\nsql = \"SELECT 1; DELETE FROM t\"\n"),
                "databases[0].metric[0].sql",
                5,
                "holds more than one statement: write one SELECT (it runs as a subquery)",
            ),
            (
                &metric("name = \"x\"\nsql = \" ; \"\n"),
                "databases[0].metric[0].sql",
                5,
                "is empty: write one SELECT",
            ),
            (
                &metric(&format!("name = \"x\"\n{sql}labels = [\"database\"]\n")),
                "databases[0].metric[0].labels",
                5,
                "`database` is the label sloguard sets to the database's name; rename the column (`AS db_name`)",
            ),
            (
                &metric(&format!("name = \"x\"\n{sql}labels = [\"a\", \"a\"]\n")),
                "databases[0].metric[0].labels",
                5,
                "`a` is listed twice",
            ),
            (
                &metric(&format!(
                    "name = \"x\"\n{sql}labels = [\"tier\"]\nvalue = \"tier\"\n"
                )),
                "databases[0].metric[0].value",
                5,
                "`tier` is a label column too",
            ),
            (
                &metric(&format!(
                    "name = \"x\"\n{sql}value = \"a\"\nvalues = [\"b\"]\n"
                )),
                "databases[0].metric[0].value",
                5,
                "give `value` (one column) or `values` (several), not both",
            ),
            (
                &metric(&format!("name = \"x\"\n{sql}max_rows = 0\n")),
                "databases[0].metric[0].max_rows",
                5,
                "must be between 1 and 100000",
            ),
            (
                &metric(&format!("name = \"x\"\n{sql}interval = \"10ms\"\n")),
                "databases[0].metric[0].interval",
                5,
                "must be at least 1s",
            ),
            (
                &format!(
                    "{}\n[[databases.metric]]\nname = \"x\"\n{sql}",
                    metric(&format!("name = \"x\"\n{sql}"))
                ),
                "databases[0].metric[1].name",
                5,
                "`x` is used twice",
            ),
        ]);
    }

    /// A connection string from a file is named by the file, never quoted.
    #[test]
    fn a_bad_connection_string_from_a_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"mysql://u:SECRETPW@127.0.0.1/db\n")
            .unwrap();
        let path = file.path().display().to_string();
        let text = format!("[[databases]]\nname = \"db\"\nurl_file = \"{path}\"\n");
        expect_one(
            &text,
            "databases[0].url",
            1,
            &format!(
                "the connection string from file:{path} is not a PostgreSQL connection string"
            ),
        );
        let all = format!("{:?}", crate::config::testing::problems(&text));
        assert!(!all.contains("SECRETPW"), "{all}");
    }
}

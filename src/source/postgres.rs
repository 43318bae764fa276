//! PostgreSQL: connections (TLS through rustls, never a silent fall back to plaintext), the
//! `pg_stat_statements` and `pg_stat_database` collectors of a `[[databases]]` entry, and
//! the timed queries of `type = "sql"` targets.
//!
//! Every statement goes through the simple query protocol or `query_typed` (unnamed
//! statements), so a transaction-mode pooler (Supavisor, PgBouncer) works. Every network step
//! has a timeout; a database that hangs stalls only its own task. A failure is data: `pg_up`
//! (or `probe_up`) 0 with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::config::{Database, SqlCheck, SqlMetric, SqlParam, SqlValues, TlsMode};
use crate::series::{Sample, SeriesKey};

/// An open connection; the connection task ends when this is dropped.
pub struct Connection {
    pub client: Client,
    task: tokio::task::JoinHandle<()>,
    /// The TLS connector the connection was made with, for cancel requests.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Connection {
    /// Whether the server closed it (or it failed).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Asks the server to stop the running statement (after a client-side timeout), so that a
    /// slow query does not go on holding the database; best effort, in the background.
    fn cancel(&self) {
        let token = self.client.cancel_token();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let sent = match tls {
                Some(tls) => token.cancel_query(tls).await,
                None => token.cancel_query(tokio_postgres::NoTls).await,
            };
            match sent {
                Ok(()) => tracing::debug!("Cancel request sent"),
                Err(e) => tracing::debug!(error = %reason(&e), "Cancel request not sent"),
            }
        });
    }
}

mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    use crate::config::{CaFile, TlsMode};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// `require`: encrypted, the server's certificate not checked (libpq's `require`).
    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The TLS client configuration for `mode`, or why there is none.
    pub fn config(mode: TlsMode, ca: Option<&CaFile>) -> Result<rustls::ClientConfig, String> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        Ok(match mode {
            TlsMode::VerifyFull => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                if let Some(ca) = ca {
                    for cert in CertificateDer::pem_slice_iter(&ca.pem) {
                        let cert = cert.map_err(|e| format!("{}: {e}", ca.path.display()))?;
                        roots
                            .add(cert)
                            .map_err(|e| format!("{}: {e}", ca.path.display()))?;
                    }
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsMode::Require | TlsMode::Disable => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        })
    }
}

/// Why an operation failed, in words for an alert: no secrets, no connection string.
pub fn reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    // Walk the source chain for the cause an operator can act on (refused, TLS, DNS).
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Connects to `db` within its timeout.
pub async fn connect(db: &Database) -> Result<Connection, String> {
    let mut cfg: tokio_postgres::Config = db
        .url
        .expose()
        .parse()
        .map_err(|_| "the connection string cannot be parsed".to_string())?;
    cfg.connect_timeout(db.timeout);
    cfg.application_name("sloguard");
    let fut = async {
        match db.tls {
            TlsMode::Disable => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = cfg
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| reason(&e))?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection {
                    client,
                    task,
                    tls: None,
                })
            }
            mode => {
                // `Require` refuses a server without TLS: no fall back to plaintext.
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::config(
                    mode,
                    db.ca.as_ref(),
                )?);
                let (client, conn) = cfg.connect(tls.clone()).await.map_err(|e| reason(&e))?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection {
                    client,
                    task,
                    tls: Some(tls),
                })
            }
        }
    };
    match tokio::time::timeout(db.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "timeout after {} connecting",
            humantime::format_duration(db.timeout)
        )),
    }
}

/// The rows of a simple-protocol query, as text columns.
async fn simple(
    conn: &Connection,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let messages = match tokio::time::timeout(timeout, conn.client.simple_query(sql)).await {
        Ok(r) => r.map_err(|e| reason(&e))?,
        Err(_) => {
            conn.cancel();
            return Err(format!(
                "timeout after {}",
                humantime::format_duration(timeout)
            ));
        }
    };
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

fn num(v: &Option<String>) -> Option<f64> {
    v.as_deref().and_then(|s| s.parse().ok())
}

/// Cumulative counters of one `pg_stat_statements` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counters {
    calls: f64,
    exec_ms: f64,
    rows: f64,
}

/// One entry's activity in an interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub queryid: i64,
    pub query: String,
    pub calls: f64,
    pub exec_ms: f64,
    pub rows: f64,
}

/// What the collector remembers between collections.
#[derive(Default)]
pub struct StatementsState {
    /// By (userid, queryid).
    previous: Option<HashMap<(String, i64), Counters>>,
    stats_reset: Option<String>,
    /// pg_stat_database counters and when they were read.
    database: Option<(Instant, [f64; 5])>,
    statements_at: Option<Instant>,
}

/// Deltas of cumulative counters: a drop is a reset (counted from zero), an entry seen for
/// the first time counts whole (it was created, or evicted and created again, since the last
/// collection), and a reset of the whole view (`stats_reset` changed) counts every entry
/// whole. The first collection only sets the baseline.
fn deltas(
    previous: Option<&HashMap<(String, i64), Counters>>,
    current: &HashMap<(String, i64), (Counters, String)>,
    view_reset: bool,
) -> Vec<Activity> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ((user, queryid), (now, query)) in current {
        let before = if view_reset {
            None
        } else {
            previous.get(&(user.clone(), *queryid))
        };
        let d = match before {
            Some(b) if now.calls >= b.calls && now.exec_ms >= b.exec_ms => Counters {
                calls: now.calls - b.calls,
                exec_ms: now.exec_ms - b.exec_ms,
                rows: (now.rows - b.rows).max(0.0),
            },
            _ => *now,
        };
        if d.calls > 0.0 {
            out.push(Activity {
                queryid: *queryid,
                query: query.clone(),
                calls: d.calls,
                exec_ms: d.exec_ms,
                rows: d.rows,
            });
        }
    }
    out
}

/// One collection of a database's statistics: samples, and the top statements by execution
/// time in the interval.
pub struct Collected {
    pub samples: Vec<Sample>,
    pub top: Vec<Activity>,
}

fn sample(name: &str, labels: &[(&str, &str)], ts: i64, value: f64) -> Sample {
    Sample {
        series: SeriesKey::new(name, labels),
        ts_ms: ts,
        value,
        note: None,
    }
}

/// Collects `pg_stat_database` and `pg_stat_statements` of `db` over `conn`.
pub async fn collect(
    db: &Database,
    conn: &Connection,
    state: &mut StatementsState,
    ts: i64,
) -> Result<Collected, String> {
    let name = db.name.as_str();
    let labels = [("database", name)];
    let mut samples = Vec::new();
    let mut top = Vec::new();
    if db.database_stats {
        let rows = simple(
            conn,
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
             current_setting('max_connections'), xact_commit, xact_rollback, deadlocks, \
             blks_hit, blks_read, temp_bytes, pg_database_size(datname) \
             FROM pg_stat_database WHERE datname = current_database()",
            db.timeout,
        )
        .await?;
        let row = rows
            .first()
            .ok_or("pg_stat_database has no row for this database")?;
        let v: Vec<f64> = row.iter().map(|c| num(c).unwrap_or(0.0)).collect();
        if v.len() == 9 {
            let (connections, max) = (v[0], v[1]);
            samples.push(sample("pg_connections", &labels, ts, connections));
            samples.push(sample("pg_max_connections", &labels, ts, max));
            if max > 0.0 {
                samples.push(sample(
                    "pg_connections_used_ratio",
                    &labels,
                    ts,
                    connections / max,
                ));
            }
            samples.push(sample("pg_database_size_bytes", &labels, ts, v[8]));
            let counters = [v[2], v[3], v[4], v[5], v[6]];
            let now = Instant::now();
            let temp_bytes = v[7];
            if let Some((then, before)) = state.database {
                let secs = now.duration_since(then).as_secs_f64().max(1e-3);
                let d = |i: usize| (counters[i] - before[i]).max(0.0);
                samples.push(sample("pg_commits_per_second", &labels, ts, d(0) / secs));
                samples.push(sample("pg_rollbacks_per_second", &labels, ts, d(1) / secs));
                samples.push(sample("pg_deadlocks", &labels, ts, d(2)));
                let (hit, read) = (d(3), d(4));
                if hit + read > 0.0 {
                    samples.push(sample(
                        "pg_cache_hit_ratio",
                        &labels,
                        ts,
                        hit / (hit + read),
                    ));
                }
            }
            samples.push(sample("pg_temp_bytes_total", &labels, ts, temp_bytes));
            state.database = Some((now, counters));
        }
    }
    if let Some(schema) = &db.statements {
        let version = simple(conn, "SHOW server_version_num", db.timeout)
            .await?
            .first()
            .and_then(|r| num(&r[0]))
            .unwrap_or(0.0);
        // Nested statements (toplevel = false) are counted inside their callers already.
        let toplevel = if version >= 140000.0 {
            " AND toplevel"
        } else {
            ""
        };
        // sloguard's own statements (its SQL probes, these queries) are not the app's.
        let own = if db.include_own_statements {
            ""
        } else {
            " AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        };
        let rows = simple(
            conn,
            &format!(
                "SELECT userid::text, queryid, calls, total_exec_time, rows, query \
                 FROM {schema}.pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND queryid IS NOT NULL{toplevel}{own}"
            ),
            db.timeout,
        )
        .await?;
        let reset = if version >= 140000.0 {
            simple(
                conn,
                &format!("SELECT stats_reset::text FROM {schema}.pg_stat_statements_info"),
                db.timeout,
            )
            .await?
            .first()
            .and_then(|r| r[0].clone())
        } else {
            None
        };
        let mut current: HashMap<(String, i64), (Counters, String)> = HashMap::new();
        for row in &rows {
            let (Some(user), Some(queryid)) = (
                row[0].clone(),
                row[1].as_deref().and_then(|q| q.parse::<i64>().ok()),
            ) else {
                continue;
            };
            let c = Counters {
                calls: num(&row[2]).unwrap_or(0.0),
                exec_ms: num(&row[3]).unwrap_or(0.0),
                rows: num(&row[4]).unwrap_or(0.0),
            };
            current.insert((user, queryid), (c, row[5].clone().unwrap_or_default()));
        }
        let view_reset = state.stats_reset.is_some() && reset != state.stats_reset;
        let activity = deltas(state.previous.as_ref(), &current, view_reset);
        let now = Instant::now();
        if let Some(then) = state.statements_at {
            let secs = now.duration_since(then).as_secs_f64().max(1e-3);
            let total_calls: f64 = activity.iter().map(|a| a.calls).fold(0.0, |t, v| t + v);
            let total_ms: f64 = activity.iter().map(|a| a.exec_ms).fold(0.0, |t, v| t + v);
            samples.push(sample(
                "pg_statements_calls_per_second",
                &labels,
                ts,
                total_calls / secs,
            ));
            samples.push(sample(
                "pg_statements_exec_seconds_per_second",
                &labels,
                ts,
                total_ms / 1000.0 / secs,
            ));
            for m in &db.queries {
                let picked: Vec<&Activity> = activity
                    .iter()
                    .filter(|a| match (&m.pattern, m.queryid) {
                        (_, Some(id)) => a.queryid == id,
                        (Some(p), None) => p.0.is_match(&a.query),
                        (None, None) => false,
                    })
                    .collect();
                let calls: f64 = picked.iter().map(|a| a.calls).fold(0.0, |t, v| t + v);
                let q = [("database", name), ("query", m.name.as_str())];
                samples.push(sample("pg_query_calls_per_second", &q, ts, calls / secs));
                samples.push(sample("pg_query_calls", &q, ts, calls));
                if calls > 0.0 {
                    let ms: f64 = picked.iter().map(|a| a.exec_ms).fold(0.0, |t, v| t + v);
                    let rows: f64 = picked.iter().map(|a| a.rows).fold(0.0, |t, v| t + v);
                    samples.push(sample("pg_query_exec_ms", &q, ts, ms));
                    let mut mean = sample("pg_query_mean_exec_ms", &q, ts, ms / calls);
                    mean.note = Some(Arc::from(
                        format!("{calls} calls averaged {:.1} ms", ms / calls).as_str(),
                    ));
                    samples.push(mean);
                    samples.push(sample("pg_query_rows_per_call", &q, ts, rows / calls));
                }
            }
            top = activity;
            top.sort_by(|a, b| b.exec_ms.total_cmp(&a.exec_ms));
            top.truncate(db.top as usize);
        }
        state.previous = Some(current.into_iter().map(|(k, (c, _))| (k, c)).collect());
        state.stats_reset = reset;
        state.statements_at = Some(now);
    }
    Ok(Collected { samples, top })
}

/// One row of a `[[databases.metric]]` answer.
#[derive(Debug, PartialEq)]
pub struct MetricRow {
    /// The label values, in the order of `labels`.
    pub labels: Vec<String>,
    /// (series name, value) per value column that was not NULL.
    pub values: Vec<(String, f64)>,
}

/// The answer of a `[[databases.metric]]` query.
#[derive(Debug, Default, PartialEq)]
pub struct MetricRows {
    pub rows: Vec<MetricRow>,
    /// The answer had more rows than `max_rows`; the rest were not read.
    pub cut: bool,
    /// Values that were NULL (or NaN), left out.
    pub nulls: u64,
}

/// The longest label value kept from a row; longer ones are cut.
const MAX_LABEL_CHARS: usize = 200;

/// Runs a `[[databases.metric]]` query on `conn`: read-only, within `statement_timeout`, as a
/// subquery (so one `SELECT` and nothing else), at most `max_rows` rows read. After an error
/// the connection is in an aborted transaction: the caller drops it.
pub async fn query_metric(conn: &Connection, m: &SqlMetric) -> Result<MetricRows, String> {
    let sql = format!(
        "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = {}; \
         SELECT * FROM ({}\n) AS sloguard_metric LIMIT {}; COMMIT",
        m.timeout.as_millis().max(1),
        m.sql,
        u64::from(m.max_rows) + 1
    );
    // The server stops the statement at its timeout; this only guards against a server that
    // does not answer at all.
    let guard = m.timeout + Duration::from_secs(2);
    let messages = match tokio::time::timeout(guard, conn.client.simple_query(&sql)).await {
        Ok(r) => r.map_err(|e| reason(&e))?,
        Err(_) => {
            conn.cancel();
            return Err(format!(
                "timeout after {}",
                humantime::format_duration(m.timeout)
            ));
        }
    };
    let mut columns: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for msg in messages {
        match msg {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => rows.push(row),
            _ => {}
        }
    }
    metric_rows(
        m,
        &columns,
        rows.iter().map(|r| {
            (0..r.len())
                .map(|i| r.get(i))
                .collect::<Vec<Option<&str>>>()
        }),
    )
}

/// Turns the text rows of a metric's answer into labels and values.
fn metric_rows<'a>(
    m: &SqlMetric,
    columns: &[String],
    rows: impl Iterator<Item = Vec<Option<&'a str>>>,
) -> Result<MetricRows, String> {
    let index = |name: &str| -> Result<usize, String> {
        columns.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "the answer has no column `{name}` (it has {})",
                columns
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    let labels: Vec<usize> = m
        .labels
        .iter()
        .map(|l| index(l))
        .collect::<Result<_, _>>()?;
    let values: Vec<(usize, String)> = match &m.values {
        SqlValues::One(c) => vec![(index(c)?, m.series_name(c))],
        SqlValues::Each(cs) => cs
            .iter()
            .map(|c| Ok((index(c)?, m.series_name(c))))
            .collect::<Result<_, String>>()?,
        SqlValues::Rest => {
            let rest: Vec<usize> = (0..columns.len()).filter(|i| !labels.contains(i)).collect();
            match rest.as_slice() {
                [one] => vec![(*one, m.name.clone())],
                _ => {
                    return Err(format!(
                        "the answer has {} columns besides its labels ({}); name the value column with `value`, or several with `values`",
                        rest.len(),
                        rest.iter()
                            .map(|i| format!("`{}`", columns[*i]))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    };
    let mut out = MetricRows::default();
    let mut seen = std::collections::HashSet::new();
    for (n, row) in rows.enumerate() {
        if n >= m.max_rows as usize {
            out.cut = true;
            break;
        }
        let label_values: Vec<String> = labels
            .iter()
            .map(|i| {
                let v = row.get(*i).copied().flatten().unwrap_or("");
                match v.char_indices().nth(MAX_LABEL_CHARS) {
                    Some((cut, _)) => v[..cut].to_string(),
                    None => v.to_string(),
                }
            })
            .collect();
        if !seen.insert(label_values.clone()) {
            let shown: Vec<String> = m
                .labels
                .iter()
                .zip(&label_values)
                .map(|(l, v)| format!("{l}={v}"))
                .collect();
            return Err(format!(
                "two rows have the same labels ({}): add the column that tells them apart to `labels`",
                shown.join(", ")
            ));
        }
        let mut numbers = Vec::new();
        for (i, series) in &values {
            let text = row.get(*i).copied().flatten();
            let v = match text {
                None => None,
                Some("t") => Some(1.0),
                Some("f") => Some(0.0),
                Some(t) => Some(t.trim().parse::<f64>().map_err(|_| {
                    format!(
                        "column `{}` is not a number: `{}`",
                        columns[*i],
                        t.chars().take(40).collect::<String>()
                    )
                })?),
            };
            match v {
                Some(v) if v.is_finite() => numbers.push((series.clone(), v)),
                _ => out.nulls += 1,
            }
        }
        out.rows.push(MetricRow {
            labels: label_values,
            values: numbers,
        });
    }
    Ok(out)
}

/// The outcome of one SQL probe.
pub struct SqlResult {
    pub rows: usize,
    /// The first column of the first row, when asked for and numeric.
    pub value: Option<f64>,
}

/// Runs a SQL probe's query once on `conn`, within `left` of the probe's `timeout` (which the
/// failure names).
pub async fn run_check(
    conn: &Connection,
    check: &SqlCheck,
    left: Duration,
    timeout: Duration,
) -> Result<SqlResult, String> {
    let params: Vec<(&(dyn ToSql + Sync), Type)> = check
        .params
        .iter()
        .map(|p| -> (&(dyn ToSql + Sync), Type) {
            match p {
                SqlParam::Int(n) => (n, Type::INT8),
                SqlParam::Float(f) => (f, Type::FLOAT8),
                SqlParam::Text(s) => (s, Type::TEXT),
                SqlParam::Bool(b) => (b, Type::BOOL),
            }
        })
        .collect();
    let rows = match tokio::time::timeout(left, conn.client.query_typed(&check.sql, &params)).await
    {
        Ok(r) => r.map_err(|e| reason(&e))?,
        Err(_) => {
            conn.cancel();
            return Err(format!(
                "timeout after {}",
                humantime::format_duration(timeout)
            ));
        }
    };
    let value = if check.value {
        let first = rows.first().ok_or("the query returned no row")?;
        if first.is_empty() {
            return Err("the query returned no column".into());
        }
        let col = first.columns()[0].type_().clone();
        let v: Option<f64> = match col {
            Type::INT2 => first
                .try_get::<_, Option<i16>>(0)
                .ok()
                .flatten()
                .map(f64::from),
            Type::INT4 => first
                .try_get::<_, Option<i32>>(0)
                .ok()
                .flatten()
                .map(f64::from),
            Type::INT8 => first
                .try_get::<_, Option<i64>>(0)
                .ok()
                .flatten()
                .map(|n| n as f64),
            Type::FLOAT4 => first
                .try_get::<_, Option<f32>>(0)
                .ok()
                .flatten()
                .map(f64::from),
            Type::FLOAT8 => first.try_get::<_, Option<f64>>(0).ok().flatten(),
            other => {
                return Err(format!(
                    "the first column is {other}, not a number; cast it, e.g. `::float8`"
                ));
            }
        };
        Some(v.ok_or("the first column is NULL")?)
    } else {
        None
    };
    Ok(SqlResult {
        rows: rows.len(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(labels: &[&str], values: SqlValues, max_rows: u32) -> SqlMetric {
        SqlMetric {
            name: "app_tier".into(),
            sql: "SELECT 1".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            values,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            max_rows,
        }
    }

    fn answer(
        m: &SqlMetric,
        columns: &[&str],
        rows: &[&[Option<&'static str>]],
    ) -> Result<MetricRows, String> {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        metric_rows(m, &columns, rows.iter().map(|r| r.to_vec()))
    }

    #[test]
    fn metric_rows_become_labelled_values() {
        let each = SqlValues::Each(vec!["customers".into(), "revenue".into()]);
        let m = metric(&["tier"], each, 10);
        let got = answer(
            &m,
            &["tier", "customers", "revenue"],
            &[
                &[Some("gold"), Some("12"), Some("3400.50")],
                &[None, Some("3"), None],
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            MetricRows {
                rows: vec![
                    MetricRow {
                        labels: vec!["gold".into()],
                        values: vec![
                            ("app_tier_customers".into(), 12.0),
                            ("app_tier_revenue".into(), 3400.5)
                        ]
                    },
                    MetricRow {
                        labels: vec!["".into()],
                        values: vec![("app_tier_customers".into(), 3.0)]
                    },
                ],
                cut: false,
                nulls: 1,
            }
        );
        // The one column besides the labels; booleans as 1 and 0.
        let m = metric(&["tier"], SqlValues::Rest, 10);
        let got = answer(&m, &["tier", "active"], &[&[Some("gold"), Some("t")]]).unwrap();
        assert_eq!(got.rows[0].values, [("app_tier".to_string(), 1.0)]);
    }

    #[test]
    fn metric_answers_that_cannot_be_read_say_why() {
        let m = metric(&["tier"], SqlValues::Rest, 10);
        assert_eq!(
            answer(&m, &["tier", "a", "b"], &[]),
            Err("the answer has 2 columns besides its labels (`a`, `b`); name the value column with `value`, or several with `values`".into())
        );
        assert_eq!(
            answer(&m, &["segment", "n"], &[]),
            Err("the answer has no column `tier` (it has `segment`, `n`)".into())
        );
        assert_eq!(
            answer(&m, &["tier", "n"], &[&[Some("gold"), Some("many")]]),
            Err("column `n` is not a number: `many`".into())
        );
        assert_eq!(
            answer(
                &m,
                &["tier", "n"],
                &[&[Some("gold"), Some("1")], &[Some("gold"), Some("2")]]
            ),
            Err("two rows have the same labels (tier=gold): add the column that tells them apart to `labels`".into())
        );
    }

    #[test]
    fn metric_answers_are_cut_at_max_rows() {
        let m = metric(&["n"], SqlValues::One("v".into()), 2);
        let rows: Vec<[Option<&str>; 2]> = ["1", "2", "3"]
            .iter()
            .map(|n| [Some(*n), Some("1")])
            .collect();
        let rows: Vec<&[Option<&str>]> = rows.iter().map(|r| r.as_slice()).collect();
        let got = answer(&m, &["n", "v"], &rows).unwrap();
        assert_eq!(got.rows.len(), 2);
        assert!(got.cut);
        let long = "x".repeat(300);
        let m = metric(&["n"], SqlValues::One("v".into()), 2);
        let columns = vec!["n".to_string(), "v".to_string()];
        let got = metric_rows(
            &m,
            &columns,
            std::iter::once(vec![Some(long.as_str()), Some("1")]),
        )
        .unwrap();
        assert_eq!(got.rows[0].labels[0].chars().count(), MAX_LABEL_CHARS);
    }

    fn view(entries: &[(&str, i64, f64, f64)]) -> HashMap<(String, i64), (Counters, String)> {
        entries
            .iter()
            .map(|(u, q, calls, ms)| {
                (
                    (u.to_string(), *q),
                    (
                        Counters {
                            calls: *calls,
                            exec_ms: *ms,
                            rows: *calls,
                        },
                        format!("q{q}"),
                    ),
                )
            })
            .collect()
    }

    fn plain(v: &HashMap<(String, i64), (Counters, String)>) -> HashMap<(String, i64), Counters> {
        v.iter().map(|(k, (c, _))| (k.clone(), *c)).collect()
    }

    #[test]
    fn deltas_survive_resets_evictions_and_new_entries() {
        let first = view(&[("10", 1, 100.0, 50.0), ("10", 2, 5.0, 5.0)]);
        // The first collection is a baseline only.
        assert!(deltas(None, &first, false).is_empty());
        // 1 grew; 2 was evicted and came back smaller; 3 is new.
        let second = view(&[
            ("10", 1, 130.0, 80.0),
            ("10", 2, 2.0, 1.0),
            ("10", 3, 4.0, 8.0),
        ]);
        let mut d = deltas(Some(&plain(&first)), &second, false);
        d.sort_by_key(|a| a.queryid);
        let got: Vec<(i64, f64, f64)> = d.iter().map(|a| (a.queryid, a.calls, a.exec_ms)).collect();
        assert_eq!(got, vec![(1, 30.0, 30.0), (2, 2.0, 1.0), (3, 4.0, 8.0)]);
        // pg_stat_statements_reset(): every entry counts from zero, never negative.
        let third = view(&[("10", 1, 3.0, 1.5)]);
        let d = deltas(Some(&plain(&second)), &third, true);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].calls, d[0].exec_ms), (3.0, 1.5));
        assert!(d.iter().all(|a| a.calls >= 0.0 && a.exec_ms >= 0.0));
    }
}

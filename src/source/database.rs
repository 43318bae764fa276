//! The `[[databases]]` collectors: one task per database, collecting `pg_stat_database` and
//! `pg_stat_statements` every `interval` over one long-lived connection (connected again
//! after any failure), producing:
//!
//! - `pg_up{database}`: 1 after a good collection, 0 with the reason after a failed one;
//! - `pg_connections`, `pg_max_connections`, `pg_connections_used_ratio`,
//!   `pg_commits_per_second`, `pg_rollbacks_per_second`, `pg_deadlocks` (in the interval),
//!   `pg_cache_hit_ratio` (in the interval), `pg_temp_bytes_total`, `pg_database_size_bytes`;
//! - `pg_statements_calls_per_second`, `pg_statements_exec_seconds_per_second`;
//! - per `[[databases.query]]`: `pg_query_calls` (in the interval),
//!   `pg_query_calls_per_second`, `pg_query_mean_exec_ms`, `pg_query_rows_per_call`,
//!   labelled `query=<name>`;
//! - the top statements by execution time in the interval: `pg_statement_exec_ms` and
//!   `pg_statement_calls`, labelled `queryid` and `query` (the text, cut at 200 characters).
//!
//! Beside it, when the entry has `[[databases.metric]]`s, a second task runs each on its own
//! interval over a connection of its own, opened for the run and closed after it (an hourly
//! query must not hold a pooler's connection all hour): one series per row and value column,
//! labelled `database` and the label columns, and per metric `pg_metric_up` (0 with the
//! reason when it failed), `pg_metric_rows` and `pg_metric_rows_cut` (1 when the answer had
//! more than `max_rows` rows).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::postgres::{self, Connection, StatementsState};
use crate::clock::now_ms;
use crate::config::{Config, Database};
use crate::series::{Sample, SeriesKey};

/// Runs one collector per configured database.
pub async fn run(
    config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Vec<Sample>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let plans = |cfg: &Config| -> BTreeMap<String, Database> {
        cfg.databases
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect()
    };
    let start = |_: &str, db: &Database, token: CancellationToken| {
        let (db, tx) = (db.clone(), tx.clone());
        Some(async move {
            tokio::join!(
                collect_loop(db.clone(), tx.clone(), token.clone()),
                metrics_loop(db, tx, token)
            );
        })
    };
    super::manager::run_keyed("database", config, shutdown, plans, start).await
}

fn cut(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

async fn collect_loop(db: Database, tx: mpsc::Sender<Vec<Sample>>, stop: CancellationToken) {
    let mut conn: Option<Connection> = None;
    let mut state = StatementsState::default();
    let mut was_up: Option<bool> = None;
    // Spread the first collections of several databases over the interval.
    let spread = rand::rng().random_range(0..=db.interval.as_millis().min(5000) as u64);
    let mut next = Instant::now() + std::time::Duration::from_millis(spread);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        next = started + db.interval;
        let ts = now_ms();
        let outcome = tokio::select! {
            r = collect_once(&db, &mut conn, &mut state, ts) => r,
            _ = stop.cancelled() => return,
        };
        let key = |name: &str| SeriesKey::new(name, &[("database", db.name.as_str())]);
        let mut samples = Vec::new();
        let up = match outcome {
            Ok(collected) => {
                samples.extend(collected.samples);
                for a in collected.top {
                    let id = a.queryid.to_string();
                    let query = cut(&a.query, 200);
                    let labels = [
                        ("database", db.name.as_str()),
                        ("queryid", id.as_str()),
                        ("query", query.as_str()),
                    ];
                    samples.push(Sample {
                        series: SeriesKey::new("pg_statement_exec_ms", &labels),
                        ts_ms: ts,
                        value: a.exec_ms,
                        note: None,
                    });
                    samples.push(Sample {
                        series: SeriesKey::new("pg_statement_calls", &labels),
                        ts_ms: ts,
                        value: a.calls,
                        note: None,
                    });
                }
                samples.push(Sample {
                    series: key("pg_up"),
                    ts_ms: ts,
                    value: 1.0,
                    note: None,
                });
                true
            }
            Err(reason) => {
                // Start clean: the next collection connects again.
                conn = None;
                if was_up != Some(false) {
                    tracing::warn!(database = %db.name, %reason, "Database collection failed");
                }
                samples.push(Sample {
                    series: key("pg_up"),
                    ts_ms: ts,
                    value: 0.0,
                    note: Some(Arc::from(reason.as_str())),
                });
                false
            }
        };
        if up && was_up == Some(false) {
            tracing::info!(database = %db.name, "Database collection works again");
        }
        was_up = Some(up);
        samples.push(Sample {
            series: key("pg_collect_duration_seconds"),
            ts_ms: ts,
            value: started.elapsed().as_secs_f64(),
            note: None,
        });
        if tx.send(samples).await.is_err() {
            return;
        }
    }
}

async fn collect_once(
    db: &Database,
    conn: &mut Option<Connection>,
    state: &mut StatementsState,
    ts: i64,
) -> Result<postgres::Collected, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(postgres::connect(db).await?);
    }
    let c = conn.as_ref().ok_or("not connected")?;
    postgres::collect(db, c, state, ts).await
}

/// Runs the entry's `[[databases.metric]]`s, each on its own interval (the first runs within
/// five seconds of the start).
async fn metrics_loop(db: Database, tx: mpsc::Sender<Vec<Sample>>, stop: CancellationToken) {
    if db.metrics.is_empty() {
        return;
    }
    let start = Instant::now();
    let mut next: Vec<Instant> = db
        .metrics
        .iter()
        .map(|_| start + std::time::Duration::from_millis(rand::rng().random_range(0..=5000)))
        .collect();
    let mut cut_before: Vec<bool> = vec![false; db.metrics.len()];
    loop {
        let Some(soonest) = next.iter().min().copied() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(soonest) => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let due: Vec<usize> = (0..next.len()).filter(|i| next[*i] <= now).collect();
        for i in &due {
            next[*i] = now + db.metrics[*i].interval;
        }
        let samples = tokio::select! {
            s = run_metrics(&db, &due, &mut cut_before) => s,
            _ = stop.cancelled() => return,
        };
        if tx.send(samples).await.is_err() {
            return;
        }
    }
}

/// One run of the metrics `due`, over one connection (connected again after a failure, whose
/// transaction is left aborted).
async fn run_metrics(db: &Database, due: &[usize], cut_before: &mut [bool]) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut conn: Option<Connection> = None;
    for &i in due {
        let m = &db.metrics[i];
        let ts = now_ms();
        let started = Instant::now();
        let labels = [("database", db.name.as_str()), ("metric", m.name.as_str())];
        let outcome = async {
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                conn = Some(postgres::connect(db).await?);
            }
            let c = conn.as_ref().ok_or("not connected")?;
            postgres::query_metric(c, m).await
        }
        .await;
        let meta = |name: &str, value: f64| Sample {
            series: SeriesKey::new(name, &labels),
            ts_ms: ts,
            value,
            note: None,
        };
        match outcome {
            Ok(answer) => {
                if answer.cut && !cut_before[i] {
                    tracing::warn!(
                        database = %db.name,
                        metric = %m.name,
                        max_rows = m.max_rows,
                        "The metric's query answers more rows than max_rows; the rest are left out"
                    );
                }
                cut_before[i] = answer.cut;
                samples.push(meta("pg_metric_rows", answer.rows.len() as f64));
                samples.push(meta("pg_metric_rows_cut", f64::from(u8::from(answer.cut))));
                for row in answer.rows {
                    let mut row_labels: Vec<(&str, &str)> = vec![("database", db.name.as_str())];
                    row_labels.extend(
                        m.labels
                            .iter()
                            .map(String::as_str)
                            .zip(row.labels.iter().map(String::as_str)),
                    );
                    for (series, value) in row.values {
                        samples.push(Sample {
                            series: SeriesKey::new(&series, &row_labels),
                            ts_ms: ts,
                            value,
                            note: None,
                        });
                    }
                }
                samples.push(meta("pg_metric_up", 1.0));
            }
            Err(reason) => {
                conn = None;
                tracing::warn!(database = %db.name, metric = %m.name, %reason, "The metric's query failed");
                let mut up = meta("pg_metric_up", 0.0);
                up.note = Some(Arc::from(reason.as_str()));
                samples.push(up);
            }
        }
        samples.push(meta(
            "pg_metric_duration_seconds",
            started.elapsed().as_secs_f64(),
        ));
    }
    samples
}

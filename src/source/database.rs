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
        Some(collect_loop(db.clone(), tx.clone(), token))
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

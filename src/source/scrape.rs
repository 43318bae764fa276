//! `[[scrapes]]`: endpoints in the Prometheus text format or OpenMetrics (Supabase's
//! privileged metrics endpoint, node or postgres exporters, sloguard's own `/metrics`).
//!
//! Lines are parsed by the `prometheus-parse` crate; the families' types come from their
//! `# TYPE` lines, read here too, because OpenMetrics names a counter family without the
//! `_total` its samples carry. Kept samples become series with the sample's labels plus
//! `scrape=<name>` (an exported `scrape` label is kept as `exported_scrape`):
//! - gauges, untyped samples and summary quantiles as they are;
//! - counters as per-second rates between scrapes, named `<family>_per_second` (a counter
//!   that went down was reset and counts from zero; the first scrape only sets the baseline);
//! - histogram and summary `_sum` and `_count` as rates (`<family>_sum_per_second`,
//!   `<family>_count_per_second`); histogram buckets are not kept.
//!
//! Each scrape also writes `scrape_up` (with the reason when it failed),
//! `scrape_duration_seconds` and `scrape_samples` (kept samples), labelled `scrape`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{Config, Scrape, ScrapeAuth};
use crate::series::{Labels, Sample, SeriesKey, valid_metric_name};

/// The largest answer read.
const MAX_BODY: usize = 16 << 20;

/// Runs one scraper per configured endpoint.
pub async fn run(
    config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Vec<Sample>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let plans = |cfg: &Config| -> BTreeMap<String, Scrape> {
        cfg.scrapes
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect()
    };
    let start = |name: &str, sc: &Scrape, token: CancellationToken| match super::http_probe::client(
        sc.ca.as_ref(),
        true,
    ) {
        Ok(client) => Some(scrape_loop(client, sc.clone(), tx.clone(), token)),
        Err(e) => {
            tracing::error!(scrape = %name, error = %e, "Cannot build the HTTP client; not scraping");
            None
        }
    };
    super::manager::run_keyed("scrape", config, shutdown, plans, start).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// The `# TYPE` of every family in `text`.
fn family_types(text: &str) -> HashMap<&str, Family> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            let name = parts.next()?;
            let kind = match parts.next()? {
                "counter" => Family::Counter,
                "gauge" => Family::Gauge,
                "histogram" | "gaugehistogram" => Family::Histogram,
                "summary" => Family::Summary,
                _ => Family::Untyped,
            };
            Some((name, kind))
        })
        .collect()
}

/// What one parsed sample becomes: its series name (`None`: not kept) and whether it is a
/// counter to turn into a rate.
fn classify<'t>(name: &'t str, types: &HashMap<&str, Family>) -> (&'t str, Option<(String, bool)>) {
    if let Some(kind) = types.get(name) {
        return match kind {
            Family::Counter => (
                name,
                Some((
                    format!("{}_per_second", name.strip_suffix("_total").unwrap_or(name)),
                    true,
                )),
            ),
            _ => (name, Some((name.to_string(), false))),
        };
    }
    for suffix in ["_total", "_created", "_bucket", "_sum", "_count", "_info"] {
        let Some(family) = name.strip_suffix(suffix) else {
            continue;
        };
        let Some(kind) = types.get(family) else {
            continue;
        };
        return match (kind, suffix) {
            (_, "_created") | (Family::Histogram, "_bucket") => (family, None),
            (Family::Counter, "_total") => (family, Some((format!("{family}_per_second"), true))),
            (Family::Histogram | Family::Summary, "_sum" | "_count") => {
                (family, Some((format!("{name}_per_second"), true)))
            }
            _ => (family, Some((name.to_string(), false))),
        };
    }
    (name, Some((name.to_string(), false)))
}

/// The previous value of every counter series, to make rates.
type Previous = HashMap<SeriesKey, (f64, Instant)>;

/// Parses an exposition as a scrape of `sc` does, without a previous scrape; how many samples
/// it keeps. For the fuzz target (`fuzz/`): the parse a peer's answer goes through.
pub fn parse_exposition(sc: &Scrape, text: &str) -> Result<usize, String> {
    to_samples(sc, text, 0, Instant::now(), &mut Previous::new()).map(|(s, _)| s.len())
}

/// Parses an exposition into samples at `ts`, keeping `sc.keep` families, rating counters
/// against `previous`.
fn to_samples(
    sc: &Scrape,
    text: &str,
    ts: i64,
    now: Instant,
    previous: &mut Previous,
) -> Result<(Vec<Sample>, usize), String> {
    let types = family_types(text);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("the answer is not in the Prometheus text format: {e}"))?;
    let mut out = Vec::new();
    let mut dropped = 0usize;
    let mut seen: Previous = HashMap::new();
    for s in scrape.samples {
        let (family, target) = classify(&s.metric, &types);
        let Some((name, is_counter)) = target else {
            continue;
        };
        if !sc.keep.is_empty()
            && !sc
                .keep
                .iter()
                .any(|k| k.0.is_match(family) || k.0.is_match(&s.metric))
        {
            continue;
        }
        if !valid_metric_name(&name) {
            dropped += 1;
            continue;
        }
        let mut labels: Labels = s
            .labels
            .iter()
            .map(|(k, v)| {
                let k = if k == "scrape" {
                    "exported_scrape".to_string()
                } else {
                    k.clone()
                };
                (k, v.clone())
            })
            .collect();
        labels.insert("scrape".into(), sc.name.clone());
        let values: Vec<(Labels, f64)> = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => vec![(labels, *v)],
            prometheus_parse::Value::Summary(qs) => qs
                .iter()
                .map(|q| {
                    let mut l = labels.clone();
                    l.insert("quantile".into(), q.quantile.to_string());
                    (l, q.count)
                })
                .collect(),
            // Buckets are not kept; the parser groups them here only when the family is
            // named exactly.
            prometheus_parse::Value::Histogram(_) => Vec::new(),
        };
        for (labels, v) in values {
            if out.len() >= sc.max_samples {
                dropped += 1;
                continue;
            }
            let series = SeriesKey {
                name: name.clone(),
                labels,
            };
            if is_counter {
                let rate = previous.get(&series).map(|(before, then)| {
                    let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
                    if v >= *before {
                        (v - before) / secs
                    } else {
                        v / secs
                    }
                });
                seen.insert(series.clone(), (v, now));
                if let Some(rate) = rate {
                    out.push(Sample {
                        series,
                        ts_ms: ts,
                        value: rate,
                        note: None,
                    });
                }
            } else {
                out.push(Sample {
                    series,
                    ts_ms: ts,
                    value: v,
                    note: None,
                });
            }
        }
    }
    // Counters that disappeared are forgotten, so the map cannot grow without bound.
    *previous = seen;
    Ok((out, dropped))
}

async fn fetch(client: &reqwest::Client, sc: &Scrape) -> Result<String, String> {
    let mut req = client.get(sc.url.clone()).timeout(sc.timeout).header(
        reqwest::header::ACCEPT,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    );
    req = match &sc.auth {
        ScrapeAuth::None => req,
        ScrapeAuth::Basic { username, password } => {
            req.basic_auth(username, Some(password.expose()))
        }
        ScrapeAuth::Bearer(token) => req.bearer_auth(token.expose()),
    };
    let mut resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("timeout after {}", humantime::format_duration(sc.timeout))
        } else if e.is_connect() {
            "connection failed (refused or unreachable)".to_string()
        } else {
            "the request failed".to_string()
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| "the answer was cut off".to_string())?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("the answer is larger than 16 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_string())
}

async fn scrape_loop(
    client: reqwest::Client,
    sc: Scrape,
    tx: mpsc::Sender<Vec<Sample>>,
    stop: CancellationToken,
) {
    let mut previous: Previous = HashMap::new();
    let mut next = Instant::now();
    let mut was_up: Option<bool> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        next = started + sc.interval;
        let ts = now_ms();
        let fetched = tokio::select! {
            r = fetch(&client, &sc) => r,
            _ = stop.cancelled() => return,
        };
        let outcome =
            fetched.and_then(|text| to_samples(&sc, &text, ts, Instant::now(), &mut previous));
        let key = |name: &str| SeriesKey::new(name, &[("scrape", sc.name.as_str())]);
        let mut samples = Vec::new();
        let up = match outcome {
            Ok((kept, dropped)) => {
                if dropped > 0 {
                    tracing::warn!(scrape = %sc.name, dropped, "Samples over max_samples or with invalid names were not kept");
                }
                samples.push(Sample {
                    series: key("scrape_samples"),
                    ts_ms: ts,
                    value: kept.len() as f64,
                    note: None,
                });
                samples.extend(kept);
                true
            }
            Err(reason) => {
                if was_up != Some(false) {
                    tracing::warn!(scrape = %sc.name, %reason, "Scrape failed");
                }
                samples.push(Sample {
                    series: key("scrape_up"),
                    ts_ms: ts,
                    value: 0.0,
                    note: Some(Arc::from(reason.as_str())),
                });
                false
            }
        };
        if up {
            samples.push(Sample {
                series: key("scrape_up"),
                ts_ms: ts,
                value: 1.0,
                note: None,
            });
        }
        was_up = Some(up);
        samples.push(Sample {
            series: key("scrape_duration_seconds"),
            ts_ms: ts,
            value: started.elapsed().as_secs_f64(),
            note: None,
        });
        if tx.send(samples).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scrape(keep: &[&str]) -> Scrape {
        Scrape {
            name: "db".into(),
            url: "http://127.0.0.1:9/metrics".parse().unwrap(),
            auth: ScrapeAuth::None,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            keep: keep
                .iter()
                .map(|k| crate::config::Pattern(regex::Regex::new(&format!("^(?:{k})$")).unwrap()))
                .collect(),
            max_samples: 100,
            ca: None,
        }
    }

    /// The shape of Supabase's endpoint (text format 0.0.4).
    const SUPABASE: &str = r#"# HELP pg_up Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).
# TYPE pg_up gauge
pg_up{service_type="db",supabase_project_ref="abcd"} 1
# HELP pg_stat_database_xact_commit_total Number of transactions in this database that have been committed
# TYPE pg_stat_database_xact_commit_total counter
pg_stat_database_xact_commit_total{datname="postgres",service_type="db",supabase_project_ref="abcd"} 1000
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes{service_type="db",supabase_project_ref="abcd"} 5.12e+08
# TYPE supavisor_connections_active untyped
supavisor_connections_active{tenant="abcd"} 7
# TYPE http_server_duration_milliseconds histogram
http_server_duration_milliseconds_bucket{le="10"} 5
http_server_duration_milliseconds_bucket{le="+Inf"} 9
http_server_duration_milliseconds_sum 120
http_server_duration_milliseconds_count 9
"#;

    #[test]
    fn gauges_are_kept_counters_become_rates_and_keep_filters() {
        let sc = scrape(&[
            "pg_.*",
            "node_memory_MemAvailable_bytes",
            "http_server_duration_milliseconds",
        ]);
        let mut prev = Previous::new();
        let t0 = Instant::now();
        let (first, _) = to_samples(&sc, SUPABASE, 1, t0, &mut prev).unwrap();
        let names: Vec<&str> = first.iter().map(|s| s.series.name.as_str()).collect();
        // No rate yet on the first scrape; the untyped supavisor family is not kept.
        assert!(names.contains(&"pg_up") && names.contains(&"node_memory_MemAvailable_bytes"));
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with("_per_second") || n.starts_with("supavisor"))
        );
        let up = first.iter().find(|s| s.series.name == "pg_up").unwrap();
        assert_eq!(up.series.labels["scrape"], "db");
        assert_eq!(up.series.labels["supabase_project_ref"], "abcd");
        // A minute later: 60 more commits, 6 more requests; a reset counter counts from zero.
        let later = SUPABASE
            .replace("} 1000", "} 1060")
            .replace("_sum 120", "_sum 180")
            .replace("_count 9", "_count 15");
        let (second, _) =
            to_samples(&sc, &later, 2, t0 + Duration::from_secs(60), &mut prev).unwrap();
        let rate = |n: &str| second.iter().find(|s| s.series.name == n).map(|s| s.value);
        assert_eq!(rate("pg_stat_database_xact_commit_per_second"), Some(1.0));
        assert_eq!(
            rate("http_server_duration_milliseconds_count_per_second"),
            Some(0.1)
        );
        assert_eq!(
            rate("http_server_duration_milliseconds_sum_per_second"),
            Some(1.0)
        );
        let reset = SUPABASE.replace("} 1000", "} 30");
        let (third, _) =
            to_samples(&sc, &reset, 3, t0 + Duration::from_secs(90), &mut prev).unwrap();
        let r = third
            .iter()
            .find(|s| s.series.name == "pg_stat_database_xact_commit_per_second")
            .unwrap();
        assert_eq!(r.value, 1.0);
        assert!(!third.iter().any(|s| s.series.name.contains("_bucket")));
    }

    #[test]
    fn openmetrics_counters_named_without_total_are_counters() {
        let text = "# TYPE sloguard_notifications counter\nsloguard_notifications_total{channel=\"slack\"} 4\nsloguard_notifications_created{channel=\"slack\"} 1.7e9\n# EOF\n";
        let sc = scrape(&[]);
        let mut prev = Previous::new();
        let t0 = Instant::now();
        to_samples(&sc, text, 1, t0, &mut prev).unwrap();
        let (out, _) = to_samples(
            &sc,
            &text.replace("} 4", "} 10"),
            2,
            t0 + Duration::from_secs(2),
            &mut prev,
        )
        .unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].series.name, "sloguard_notifications_per_second");
        assert_eq!(out[0].value, 3.0);
    }
}

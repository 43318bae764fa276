//! `sloguard query` reads the data directory of a running daemon, and `GET /api/v1/query`
//! answers the same from inside it.

use std::time::Duration;

use crate::util::{Daemon, Target, free_port, sloguard, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_reads_a_running_daemons_data_in_every_format() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let port = free_port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[targets]]
name = "web"
url = "{url}"
interval = "200ms"
timeout = "1s"

[[targets]]
name = "api"
url = "{url}"
interval = "200ms"
timeout = "1s"
"#,
        url = target.url()
    );
    let mut daemon = Daemon::start(dir.path(), &config, &[]).await;
    // Up for a while, then down for a while; samples are group-committed every 500 ms.
    tokio::time::sleep(Duration::from_secs(3)).await;
    target.answer(500).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let q = |extra: &[&str]| {
        let mut args = vec!["query", "probe_up", "--data-dir", data];
        args.extend_from_slice(extra);
        let out = sloguard(&args, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), stdout, stderr)
    };

    // Raw points, JSON: both series, with ones then zeros, while the daemon is running.
    let (ok, out, err) = q(&["--since", "1m", "--format", "json"]);
    assert!(ok, "{err}");
    assert!(daemon.alive());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let series = json.as_array().unwrap();
    assert_eq!(series.len(), 2, "{out}");
    let web = series
        .iter()
        .find(|s| s["labels"]["target"] == "web")
        .unwrap();
    let values: Vec<f64> = web["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert!(values.len() >= 15, "{values:?}");
    assert!(
        values.first() == Some(&1.0) && values.last() == Some(&0.0),
        "{values:?}"
    );
    let ones = values.iter().filter(|v| **v == 1.0).count() as f64;

    // An aggregate narrowed by a matcher, as a table: the share of successful probes.
    let (ok, out, err) = q(&["--match", "target=web", "--since", "1m", "--agg", "avg"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with(r#"probe_up{target="web"}"#), "{out}");
    let avg: f64 = lines[0].split_whitespace().last().unwrap().parse().unwrap();
    // The daemon kept probing after the JSON query; the average can only have fallen.
    assert!(
        avg > 0.2 && avg <= ones / values.len() as f64 + 1e-9,
        "{avg}"
    );

    // Stepped, CSV, with a regex matcher.
    let (ok, out, err) = q(&[
        "--match",
        "target=~w.b",
        "--since",
        "1m",
        "--step",
        "1s",
        "--agg",
        "max",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("series,time,timestamp_ms,value"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 5, "{out}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with(r#""probe_up{target=""web""}""#)),
        "{out}"
    );

    // Every metric listed, with its series and labels; a name that is not there, or
    // matchers that select nothing, fail and say why.
    let out = sloguard(&["query", "--data-dir", data, "--format", "json"], &[]);
    assert!(out.status.success());
    let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let up = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "probe_up")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(up["series"], 2);
    assert_eq!(up["labels"], serde_json::json!(["target"]));
    let out = sloguard(&["query", "probe_upp", "--data-dir", data], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no metric `probe_upp` in the data file; did you mean `probe_up`?"),
        "{err}"
    );
    let (ok, _, err) = q(&["--match", "target=db"]);
    assert!(!ok);
    assert!(
        err.contains("no series of `probe_up` match target=db; its labels: target"),
        "{err}"
    );

    // Mistakes are named.
    let (ok, _, err) = q(&["--match", "target", "--since", "1m"]);
    assert!(!ok);
    assert!(err.contains("`target` is not a label matcher"), "{err}");
    let (ok, _, err) = q(&["--agg", "median"]);
    assert!(
        !ok && err.contains("`median` is not an aggregation"),
        "{err}"
    );
    let out = sloguard(
        &["query", "probe_up", "--data-dir", "/nonexistent/sloguard"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sloguard"));

    // The HTTP API gives the same shape.
    let resp = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/query?metric=probe_up&match=target%3Dapi&since=1m&agg=count"
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body[0]["labels"]["target"], "api");
    assert!(body[0]["value"].as_f64().unwrap() >= 15.0, "{body}");
    let resp = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/query?metric=probe_up&agg=p1000"
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);

    // `compact` needs the file to itself, and says so.
    let config_path = daemon.config.to_str().unwrap().to_string();
    let out = sloguard(
        &["compact", "--config", &config_path, "--data-dir", data],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");

    daemon.stop().await;
    // With the daemon stopped, the file is read the same way...
    let (ok, out, err) = q(&["--since", "1m", "--agg", "count"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // ...and can be compacted, keeping every point.
    let (_, before, _) = q(&["--since", "1h", "--agg", "count", "--format", "json"]);
    let out = sloguard(
        &["compact", "--config", &config_path, "--data-dir", data],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("MiB ->"), "{stdout}");
    let (_, after, _) = q(&["--since", "1h", "--agg", "count", "--format", "json"]);
    assert_eq!(before, after);
}

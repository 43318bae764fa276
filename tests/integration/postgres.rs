//! PostgreSQL against a real private cluster: statistics that match a known workload, a
//! statistics reset, a server that stops and comes back, timed SQL probes, and TLS.

use std::time::Duration;

use crate::util::{Daemon, Postgres, Receiver, query_agg, query_values, sloguard, tempdir};

/// The seed's table: 1 000 rows for each of three agencies.
async fn seed(pg: &Postgres) {
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             CREATE ROLE monitor LOGIN PASSWORD 'monitor-secret' IN ROLE pg_monitor;
             CREATE TABLE customer_insights (
                 id serial PRIMARY KEY, agency_id int NOT NULL, segment text,
                 updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO customer_insights (agency_id, segment, updated_at)
                 SELECT a, 'segment-' || (i % 7), now() - interval '2 minutes'
                 FROM generate_series(1, 3) a, generate_series(1, 1000) i;
             CREATE INDEX ON customer_insights (agency_id);
             GRANT SELECT ON customer_insights TO monitor;",
        )
        .await
        .unwrap();
}

/// sloguard's own timed lookup, every 200 ms, whose query the named query's regex matches.
const OWN_LOOKUP: &str = r#"
[[targets]]
type = "sql"
name = "lookup"
database = "app"
sql = "SELECT * FROM customer_insights WHERE agency_id = $1"
params = [1]
interval = "200ms"
"#;

fn config(pg: &Postgres, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[databases]]
name = "app"
url = "{url}"
tls = "disable"
interval = "500ms"
timeout = "2s"

[[databases.query]]
name = "customer_insights_by_agency"
match = 'FROM customer_insights\b.*WHERE agency_id'
{extra}
"#,
        url = pg.url("monitor", "monitor-secret")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_statistics_match_a_known_workload_across_a_reset() {
    let dir = tempdir();
    let pg = Postgres::start(dir.path(), false).await;
    seed(&pg).await;
    // sloguard's own timed lookup, which the named query's regex matches too: as the
    // monitoring role's statement it is not counted with the app's.
    let probe = OWN_LOOKUP;
    let daemon = Daemon::start(dir.path(), &config(&pg, probe), &[]).await;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // Two collections: the baseline and one more.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The workload: 120 lookups, each at least 20 ms on the server (the sleep runs once per
    // lookup, not per row).
    let app = pg.admin().await.unwrap();
    let sql = "WITH pause AS MATERIALIZED (SELECT pg_sleep(0.02)) \
               SELECT c.* FROM customer_insights c, pause WHERE agency_id = $1";
    for i in 0..60 {
        let agency = 1 + i % 3;
        let rows = app
            .query_typed(sql, &[(&agency, tokio_postgres::types::Type::INT4)])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1000);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A reset of the statistics in the middle, then the second half.
    app.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..60 {
        let agency = 1 + i % 3;
        let rows = app
            .query_typed(sql, &[(&agency, tokio_postgres::types::Type::INT4)])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1000);
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let q = ["query=customer_insights_by_agency"];
    let calls = query_values(data, "pg_query_calls", &q);
    // Every lookup is counted once; no interval goes negative across the reset.
    assert!(calls.iter().all(|c| *c >= 0.0), "{calls:?}");
    assert_eq!(calls.iter().sum::<f64>(), 120.0, "{calls:?}");
    let means = query_values(data, "pg_query_mean_exec_ms", &q);
    // pg_sleep(0.02) plus reading 1 000 rows: 20 ms to (generously) 60 ms on the server.
    // An interval's mean averages whole lookups, so it stays inside these bounds too.
    assert!(!means.is_empty());
    assert!(means.iter().all(|m| (20.0..60.0).contains(m)), "{means:?}");
    let rows = query_values(data, "pg_query_rows_per_call", &q);
    assert!(rows.iter().all(|r| *r == 1000.0), "{rows:?}");
    // The top statements carry their text.
    let out = sloguard(
        &[
            "query",
            "pg_statement_exec_ms",
            "--data-dir",
            data,
            "--since",
            "1h",
            "--agg",
            "sum",
        ],
        &[],
    );
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(
        top.contains("FROM customer_insights c, pause WHERE agency_id"),
        "{top}"
    );
    // Database statistics.
    let used = query_values(data, "pg_connections_used_ratio", &["database=app"]);
    assert!(used.iter().all(|u| *u > 0.0 && *u < 1.0), "{used:?}");
    let size = query_values(data, "pg_database_size_bytes", &[]);
    assert!(size.iter().all(|s| *s > 1e6), "{size:?}");
    assert!(!query_values(data, "pg_commits_per_second", &[]).is_empty());
    assert!(query_values(data, "pg_up", &[]).iter().all(|u| *u == 1.0));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_fires_with_its_reason_and_resolves_when_back() {
    let dir = tempdir();
    let mut pg = Postgres::start(dir.path(), false).await;
    seed(&pg).await;
    let hook = Receiver::start().await;
    let extra = format!(
        r#"
[routing]
critical = ["hook"]

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"

[[targets]]
type = "sql"
name = "freshness"
database = "app"
sql = "SELECT EXTRACT(EPOCH FROM now() - max(updated_at))::float8 FROM customer_insights WHERE agency_id = $1"
params = [2]
value = true
interval = "500ms"
timeout = "2s"

# A query slower than its timeout: failed, and stopped on the server.
[[targets]]
type = "sql"
name = "slow"
database = "app"
sql = "SELECT pg_sleep(30)"
interval = "1s"
timeout = "500ms"

[[rules]]
name = "database_down"
kind = "consecutive"
metric = "pg_up"
fire_after = 2
resolve_after = 1
severity = "critical"
summary = "Database {{database}} unreachable"
"#,
        hook = hook.url("/hook")
    );
    let daemon = Daemon::start(dir.path(), &config(&pg, &extra), &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // The SQL probe: up, one row, the data's age (about two minutes).
    assert!(
        query_values(data, "probe_up", &["target=freshness"])
            .iter()
            .all(|v| *v == 1.0)
    );
    let ages = query_values(data, "probe_value", &["target=freshness"]);
    assert!(ages.iter().all(|a| (100.0..600.0).contains(a)), "{ages:?}");
    assert!(
        query_values(data, "probe_rows", &["target=freshness"])
            .iter()
            .all(|r| *r == 1.0)
    );

    // The slow query timed out, said so, and the server was told to cancel it.
    let slow = query_values(data, "probe_up", &["target=slow"]);
    assert!(
        !slow.is_empty() && slow.iter().all(|v| *v == 0.0),
        "{slow:?}"
    );
    // Probe failures are logged (at debug level, which the tests turn on) with the reason.
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("target=slow") && l.contains("timeout after 500ms")),
        "{log}"
    );
    let admin = pg.admin().await.unwrap();
    let running = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    // At most the one running right now (probes every second, each cancelled at 500 ms).
    let detail: Vec<String> = admin
        .query(
            "SELECT pid::text || ' ' || state || ' ' || (now() - query_start)::text || ' ' || application_name FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(
        running <= 1,
        "{running} slow queries still running: {detail:?}\n{}",
        daemon.log_text()
    );
    drop(admin);

    pg.stop();
    let got = hook.wait_delivered(1, Duration::from_secs(15)).await;
    let firing = got[0].body.clone();
    let text = firing.to_string();
    assert!(text.contains("Database app unreachable"), "{text}");
    assert!(
        text.to_lowercase().contains("connection refused")
            || text.to_lowercase().contains("error connecting"),
        "{text}"
    );
    assert!(!text.contains("monitor-secret"), "{text}");
    // The SQL probe fails too, with a reason.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let up = query_values(data, "probe_up", &["target=freshness"]);
    assert_eq!(up.last(), Some(&0.0), "{up:?}");

    pg.spawn().await;
    let got = hook.wait_delivered(2, Duration::from_secs(15)).await;
    let resolved = got[1].body.clone();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_never_falls_back_to_plaintext() {
    let dir = tempdir();
    let tls_pg = Postgres::start(&dir.path().join("tls"), true).await;
    seed(&tls_pg).await;
    let plain_pg = Postgres::start(&dir.path().join("plain"), false).await;
    seed(&plain_pg).await;
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (hung, held) = (hung.try_clone().unwrap(), held.clone());
        std::thread::spawn(move || {
            for conn in hung.incoming().flatten() {
                held.lock().unwrap().push(conn);
            }
        });
    }
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, tls_pg.ca_pem.as_ref().unwrap()).unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

# Verified against the test CA.
[[databases]]
name = "verified"
url = "{tls_url}"
tls = "verify-full"
ca_file = "{ca}"
interval = "500ms"
statements = false

# The same server, but the CA is not trusted.
[[databases]]
name = "untrusted"
url = "{tls_url}"
tls = "verify-full"
interval = "500ms"
statements = false

# TLS required from a server without it: refused, not plaintext.
[[databases]]
name = "no_fallback"
url = "{plain_url}?sslmode=require"
interval = "500ms"
statements = false

# A wrong password.
[[databases]]
name = "bad_password"
url = "{bad_url}"
tls = "disable"
interval = "500ms"
statements = false

# A server that accepts connections and never answers: only this entry waits.
[[databases]]
name = "hung"
url = "postgres://monitor:monitor-secret@127.0.0.1:{hung_port}/postgres"
tls = "disable"
interval = "500ms"
timeout = "1s"
statements = false
"#,
        hung_port = hung.local_addr().unwrap().port(),
        tls_url = tls_pg.url("monitor", "monitor-secret"),
        plain_url = plain_pg.url("monitor", "monitor-secret"),
        bad_url = plain_pg.url("monitor", "wrong"),
        ca = ca.display(),
    );
    let daemon = Daemon::start(dir.path(), &config, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let up = |db: &str| query_values(data, "pg_up", &[&format!("database={db}")]);
    assert!(!up("verified").is_empty() && up("verified").iter().all(|u| *u == 1.0));
    for db in ["untrusted", "no_fallback", "bad_password", "hung"] {
        let u = up(db);
        assert!(!u.is_empty() && u.iter().all(|v| *v == 0.0), "{db}: {u:?}");
    }
    // Each failure names its reason, never the password.
    let log = daemon.log_text();
    let reason = |db: &str| {
        log.lines()
            .find(|l| {
                l.contains("Database collection failed") && l.contains(&format!("database={db}"))
            })
            .unwrap_or_else(|| panic!("no failure logged for {db}:\n{log}"))
            .to_string()
    };
    assert!(
        reason("untrusted").contains("certificate"),
        "{}",
        reason("untrusted")
    );
    assert!(
        reason("no_fallback").contains("does not support TLS"),
        "{}",
        reason("no_fallback")
    );
    assert!(
        reason("bad_password").contains("password authentication failed"),
        "{}",
        reason("bad_password")
    );
    assert!(
        !log.contains("monitor-secret") && !log.contains("wrong@"),
        "{log}"
    );
    // The plaintext server never saw a login from the TLS-only entry.
    let log = std::fs::read_to_string(dir.path().join("plain/pg/postgres.log")).unwrap_or_default();
    assert!(!log.contains("connection authorized: user=monitor database=postgres application_name=sloguard SSL enabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_and_sql_probes_work_through_a_transaction_mode_pooler() {
    let dir = tempdir();
    let pg = Postgres::start(dir.path(), false).await;
    seed(&pg).await;
    let bouncer = crate::util::PgBouncer::start(dir.path(), &pg, "monitor", "monitor-secret").await;
    let url = format!(
        "postgres://monitor:monitor-secret@127.0.0.1:{}/postgres",
        bouncer.port
    );
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[databases]]
name = "pooled"
url = "{url}"
tls = "disable"
interval = "500ms"

[[targets]]
type = "sql"
name = "lookup"
database = "pooled"
sql = "SELECT * FROM customer_insights WHERE agency_id = $1"
params = [3]
interval = "300ms"
timeout = "2s"
"#
    );
    let daemon = Daemon::start(dir.path(), &config, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let up = query_values(data, "pg_up", &["database=pooled"]);
    assert!(
        up.len() >= 3 && up.iter().all(|u| *u == 1.0),
        "{up:?}\n{}",
        daemon.log_text()
    );
    let probe = query_values(data, "probe_up", &["target=lookup"]);
    assert!(
        probe.len() >= 5 && probe.iter().all(|u| *u == 1.0),
        "{probe:?}\n{}",
        daemon.log_text()
    );
    let rows = query_values(data, "probe_rows", &["target=lookup"]);
    assert!(rows.iter().all(|r| *r == 1000.0), "{rows:?}");
}

/// `[[databases.metric]]` against the sample schema of docs/configuration.md: each row a
/// series with its labels, exactly; a query that cannot finish in time, one that writes, and
/// one that answers 100 000 rows are each cut or failed and say why, and the others of the
/// same run still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_metrics_become_labelled_series_read_only_bounded_and_timed() {
    let dir = tempdir();
    let pg = Postgres::start(dir.path(), false).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE monitor LOGIN PASSWORD 'monitor-secret' IN ROLE pg_monitor;
             CREATE TABLE agencies (id bigint PRIMARY KEY, name text NOT NULL);
             CREATE TABLE customer_insights (
                 id bigserial PRIMARY KEY, agency_id bigint NOT NULL REFERENCES agencies,
                 segment text NOT NULL, service_tier text NOT NULL,
                 annual_revenue numeric, satisfaction numeric,
                 updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO agencies VALUES (1, 'North'), (2, 'South'), (3, 'East');
             INSERT INTO customer_insights
                 (agency_id, segment, service_tier, annual_revenue, satisfaction) VALUES
                 (1, 'Elite', 'white-glove', 1000, 5), (2, 'Elite', 'white-glove', 2000.5, 4),
                 (1, 'Premium', 'priority', 500, 3),
                 (3, 'Entry', 'self-service', NULL, NULL), (3, 'Entry', 'self-service', NULL, NULL),
                 (2, 'Entry', 'self-service', 100, NULL);
             CREATE SEQUENCE ticket;
             GRANT SELECT ON agencies, customer_insights TO monitor;
             GRANT USAGE ON SEQUENCE ticket TO monitor;",
        )
        .await
        .unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[databases]]
name = "app"
url = "{url}"
tls = "disable"
interval = "1s"
timeout = "2s"
statements = false

# Failing first: the runs after them in the same turn connect again and work.
[[databases.metric]]
name = "app_slow"
sql = "SELECT 1 AS v FROM pg_sleep(10)"
interval = "1s"
timeout = "300ms"

[[databases.metric]]
name = "app_ticket"
sql = "SELECT nextval('ticket')"
interval = "1s"

[[databases.metric]]
name = "app_big"
sql = "SELECT g AS n, 1 AS v FROM generate_series(1, 100000) g"
labels = ["n"]
value = "v"
max_rows = 100
interval = "1s"

[[databases.metric]]
name = "app_agencies"
sql = "SELECT count(*) FROM agencies;"
interval = "1s"

[[databases.metric]]
name = "app_segment"
sql = """
SELECT segment, count(*) AS customers,
       coalesce(sum(annual_revenue), 0) AS revenue_usd,
       avg(satisfaction) AS satisfaction
FROM customer_insights GROUP BY segment
"""
labels = ["segment"]
values = ["customers", "revenue_usd", "satisfaction"]
interval = "1s"
"#,
        url = pg.url("monitor", "monitor-secret")
    );
    let daemon = Daemon::start(dir.path(), &config, &[]).await;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let last = |metric: &str| -> std::collections::BTreeMap<String, f64> {
        query_agg(data, metric, "1h", "last", &[])
            .into_iter()
            .collect()
    };
    // Every metric has run at least once (the first runs come within 5 s of the start).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while last("pg_metric_up").len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every metric ran: {:?}\n{}",
            last("pg_metric_up"),
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let labels = |metric: &str| format!(r#"{{"database":"app","metric":"{metric}"}}"#);
    let up = last("pg_metric_up");
    for (metric, want) in [
        ("app_slow", 0.0),
        ("app_ticket", 0.0),
        ("app_big", 1.0),
        ("app_agencies", 1.0),
        ("app_segment", 1.0),
    ] {
        assert_eq!(up.get(&labels(metric)), Some(&want), "{metric}: {up:?}");
    }
    let log = daemon.log_text();
    for reason in [
        "metric=app_slow reason=ERROR: canceling statement due to statement timeout",
        "metric=app_ticket reason=ERROR: cannot execute nextval() in a read-only transaction",
    ] {
        assert!(log.contains(reason), "{reason} not logged:\n{log}");
    }

    // Exactly the rows, labelled by their label columns; NULL averages left out.
    let segment = |s: &str| format!(r#"{{"database":"app","segment":"{s}"}}"#);
    let expect = |pairs: &[(&str, f64)]| -> std::collections::BTreeMap<String, f64> {
        pairs.iter().map(|(s, v)| (segment(s), *v)).collect()
    };
    assert_eq!(
        last("app_segment_customers"),
        expect(&[("Elite", 2.0), ("Entry", 3.0), ("Premium", 1.0)])
    );
    assert_eq!(
        last("app_segment_revenue_usd"),
        expect(&[("Elite", 3000.5), ("Entry", 100.0), ("Premium", 500.0)])
    );
    assert_eq!(
        last("app_segment_satisfaction"),
        expect(&[("Elite", 4.5), ("Premium", 3.0)])
    );
    assert_eq!(
        last("app_agencies"),
        [(r#"{"database":"app"}"#.to_string(), 3.0)].into()
    );
    assert!(
        last("app_ticket").is_empty(),
        "a read-only run wrote a value"
    );
    assert!(last("app_slow").is_empty());

    // 100 000 rows: the first 100 read, the cut reported.
    assert_eq!(last("app_big").len(), 100);
    assert_eq!(last("pg_metric_rows").get(&labels("app_big")), Some(&100.0));
    assert_eq!(
        last("pg_metric_rows_cut"),
        [
            (labels("app_agencies"), 0.0),
            (labels("app_big"), 1.0),
            (labels("app_segment"), 0.0)
        ]
        .into()
    );
    assert_eq!(
        log.matches("answers more rows than max_rows").count(),
        1,
        "the cut is logged once, not at every run"
    );

    // Nothing of the monitor's is left running on the server.
    let running: i64 = pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(10)%' AND state = 'active' AND usename = 'monitor'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(running <= 1, "{running} slow metric queries still running");
}

/// With `include_own_statements`, the monitoring role's statements count: its SQL probe
/// alone, with no app workload at all, shows as calls of the named query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_roles_statements_count_only_when_asked() {
    let dir = tempdir();
    let pg = Postgres::start(dir.path(), false).await;
    seed(&pg).await;
    let extra = OWN_LOOKUP;
    let cfg = config(&pg, extra).replace(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\ninclude_own_statements = true\n",
    );
    assert!(cfg.contains("include_own_statements = true"));
    let _daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let data = dir.path().join("data");
    let calls = query_values(
        data.to_str().unwrap(),
        "pg_query_calls",
        &["query=customer_insights_by_agency"],
    );
    assert!(
        calls.iter().sum::<f64>() >= 5.0,
        "the probe's lookups, every 200 ms, counted: {calls:?}"
    );
}

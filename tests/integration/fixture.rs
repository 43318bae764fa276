//! A store file written by this version of sloguard is checked in (`tests/fixtures/store-v2`)
//! and must keep opening and reading back the same data: a change to the on-disk layout that
//! forgets to bump the format version (and convert old files) fails here.

use sloguard::query::{Agg, Request, Selector, aggregate};
use sloguard::series::{Sample, SeriesKey};
use sloguard::store::{Batch, Layout, ReadOnlyStore, Store, Tier};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v2");
const T0: i64 = 1_790_000_000_000; // 2026-09-21
const MIN: i64 = 60_000;

fn up(t: i64) -> f64 {
    if (t / 10_000) % 17 == 0 { 0.0 } else { 1.0 }
}

/// Writes the fixture: `SLOGUARD_WRITE_FIXTURE=1 cargo test --test integration fixture -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures/store-v2; run by hand when the format version changes"]
fn write_fixture() {
    if std::env::var("SLOGUARD_WRITE_FIXTURE").is_err() {
        return;
    }
    let _ = std::fs::remove_dir_all(FIXTURE);
    let mut store = Store::open(std::path::Path::new(FIXTURE)).unwrap();
    store
        .set_layout(Layout {
            raw_retention_ms: 3650 * 86_400_000,
            distribution_interval_ms: 10_000,
            tiers: vec![Tier {
                step_ms: MIN,
                retention_ms: 3650 * 86_400_000,
            }],
        })
        .unwrap();
    let mut samples = Vec::new();
    let mut observations = Vec::new();
    for i in 0..2000i64 {
        let t = T0 + i * 10_000;
        samples.push(Sample {
            series: SeriesKey::new("probe_up", &[("target", "web")]),
            ts_ms: t,
            value: up(t),
            note: None,
        });
        observations.push(Sample {
            series: SeriesKey::new("request_duration_ms", &[("route", "/api/segments")]),
            ts_ms: t,
            value: (100 + i % 50) as f64,
            note: None,
        });
    }
    store
        .write(&Batch {
            samples: &samples,
            observations: &observations,
            ..Batch::default()
        })
        .unwrap();
    store.compact(T0 + 2000 * 10_000).unwrap();
    store.shrink().unwrap();
}

#[test]
fn the_checked_in_store_file_still_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{FIXTURE}/sloguard.redb"),
        dir.path().join("sloguard.redb"),
    )
    .expect("the fixture file is checked in");
    let end = T0 + 2000 * 10_000;
    // Read-only, as `sloguard query` does, and then for writing, as the daemon does.
    {
        let ro = ReadOnlyStore::open(dir.path()).unwrap();
        let snap = ro.snapshot().unwrap();
        assert_eq!(snap.series().len(), 2);
        let sel = Selector::new("probe_up", vec!["target=web".parse().unwrap()]);
        let points = sloguard::query::range(&snap, &sel, 0, sloguard::query::MAX_TIME_MS).unwrap();
        assert_eq!(points[0].points.len(), 2000);
        assert!(points[0].points.iter().all(|(t, v)| *v == up(*t)));
        let avg = aggregate(&snap, &sel, Agg::Avg, T0, end).unwrap()[0]
            .value
            .unwrap();
        let exact = points[0].points.iter().map(|p| p.1).sum::<f64>() / 2000.0;
        assert!((avg - exact).abs() < 1e-12);
        // Minute rollups and merged sketches.
        let info = snap
            .series()
            .iter()
            .find(|i| i.key.name == "probe_up")
            .unwrap();
        let minutes = snap.rollups(info.id, MIN, 0, i64::MAX).unwrap();
        assert_eq!(minutes.len() as i64, (end - MIN - T0) / MIN);
        let lat = Request::parse(
            "request_duration_ms",
            &["route=/api/segments".to_string()],
            "2026-09-21T00:00:00Z",
            "2026-09-23T00:00:00Z",
            Some("p95"),
            None,
            end,
        )
        .unwrap();
        let json = lat.run(&snap).unwrap().to_json();
        let p95 = json[0]["value"].as_f64().unwrap();
        assert!((p95 - 147.0).abs() <= 1.5, "{p95}");
    }
    let store = Store::open(dir.path()).unwrap();
    let key = SeriesKey::new("probe_up", &[("target", "web")]);
    assert_eq!(store.points(&key, T0, T0 + 60_000).unwrap().len(), 6);
    // And it takes new points where the old ones end.
    store
        .append(&[Sample {
            series: key.clone(),
            ts_ms: end,
            value: 1.0,
            note: None,
        }])
        .unwrap();
    assert_eq!(store.points(&key, 0, i64::MAX).unwrap().len(), 2001);
}

#[test]
fn a_file_from_a_future_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sloguard.redb");
    std::fs::copy(format!("{FIXTURE}/sloguard.redb"), &file).unwrap();
    {
        // What a later sloguard would have written.
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("format_version", 3u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let out = crate::util::sloguard(
        &[
            "query",
            "probe_up",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has format version 3, but this sloguard reads version 2"),
        "{err}"
    );
    assert!(err.contains(&file.display().to_string()), "{err}");
    // The daemon refuses it too, and leaves it as it was.
    assert!(matches!(
        Store::open(dir.path()).unwrap_err(),
        sloguard::store::StoreError::UnknownVersion { found: 3, .. }
    ));
}

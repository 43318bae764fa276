//! `sloguard demo`, the first command a new user runs, shows an alert firing and resolving.

use crate::util::sloguard;

#[test]
fn the_demo_shows_an_alert_firing_and_resolving_within_a_minute() {
    let out = sloguard(&["demo", "--duration", "30s"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let firing = stdout
        .find("│ 🔴 CRITICAL: Segmentation API down")
        .expect(&stdout);
    let resolved = stdout
        .find("│ ✅ RESOLVED: Segmentation API down")
        .expect(&stdout);
    assert!(firing < resolved);
    assert!(
        stdout.contains("│ Reason: HTTP 503 Service Unavailable"),
        "{stdout}"
    );
    // The log's heap reports fire a warning and resolve it.
    let heap = stdout.find("│ ⚠️ Client heap above 150 MB").expect(&stdout);
    let heap_resolved = stdout
        .find("│ ✅ RESOLVED: Client heap above 150 MB")
        .expect(&stdout);
    assert!(heap < heap_resolved);
    // The latency spike in the log fires a threshold rule over its p95, and resolves it.
    let slow = stdout
        .find("│ ⚠️ API p95 latency above 600 ms")
        .expect(&stdout);
    let slow_resolved = stdout
        .find("│ ✅ RESOLVED: API p95 latency above 600 ms")
        .expect(&stdout);
    assert!(slow < slow_resolved);
    assert!(
        stdout.contains("p95 of app_request_duration_ms over 3 s:"),
        "{stdout}"
    );
    // It quotes the customers of the requests in its window (the demo's 1200–1249).
    assert!(
        stdout.contains("│ Reason: app_customers max over 3 s: 12"),
        "{stdout}"
    );
    // The outage's errors in the log: a ratio alert that resolves, and a new error type.
    let ratio = stdout
        .find("│ ⚠️ API error rate above 50 %")
        .expect(&stdout);
    let ratio_resolved = stdout
        .find("│ ✅ RESOLVED: API error rate above 50 %")
        .expect(&stdout);
    assert!(ratio < ratio_resolved);
    assert!(
        stdout.contains("│ ⚠️ New API error: Cannot connect to database at #.#.#.#:#"),
        "{stdout}"
    );
    // The outage burns the availability SLO's budget: it pages, saying how fast.
    assert!(
        stdout.contains("│ 🔴 CRITICAL: Segmentation API availability SLO at risk"),
        "{stdout}"
    );
    assert!(stdout.contains("error budget burning"), "{stdout}");
    // The heap's jump from about 100 to 182 MB between two reports pages, and resolves.
    let growth = stdout
        .find("│ 🔴 CRITICAL: Client heap grew more than 50 MB in one refresh (user demo-user)")
        .expect(&stdout);
    let growth_resolved = stdout
        .find("│ ✅ RESOLVED: Client heap grew more than 50 MB in one refresh (user demo-user)")
        .expect(&stdout);
    assert!(growth < growth_resolved);
    // Seven alerts, five of which resolve within the demo (the SLO's budget stays burnt, the
    // new error type stays new): twelve messages. On a busy machine the app's log may stall
    // for longer than the error-rate rule's 4 s window, which resolves it for want of data
    // and fires it again; so each alert's messages alternate, firing first, and nothing else
    // is sent.
    let titles: Vec<&str> = stdout
        .split("Slack message received")
        .skip(1)
        .filter_map(|m| m.lines().nth(1))
        .map(|l| l.trim_start_matches('│').trim())
        .collect();
    let mut open: std::collections::BTreeMap<&str, bool> = Default::default();
    for t in &titles {
        match t.strip_prefix("✅ RESOLVED: ") {
            Some(name) => {
                assert_eq!(open.insert(name, false), Some(true), "{t}: {titles:?}")
            }
            None => {
                let name = t.split_once(' ').map_or(*t, |(_, n)| n);
                let name = name.strip_prefix("CRITICAL: ").unwrap_or(name);
                assert_ne!(open.insert(name, true), Some(true), "{t}: {titles:?}");
            }
        }
    }
    let still: Vec<&str> = open.iter().filter(|(_, f)| **f).map(|(n, _)| *n).collect();
    assert_eq!(open.len(), 7, "{titles:?}");
    assert_eq!(
        still,
        [
            "New API error: Cannot connect to database at #.#.#.#:#",
            "Segmentation API availability SLO at risk"
        ],
        "{titles:?}"
    );
    assert!((12..=16).contains(&titles.len()), "{titles:?}");
    // The log's requests: errors while the app was down, one error type, a latency spike.
    assert!(
        stdout.contains(r#"error type "Cannot connect to database at #.#.#.#:#""#),
        "{stdout}"
    );
    let p95: Vec<f64> = stdout
        .lines()
        .find(|l| l.contains("request latency p95 in ms, per 5 s:"))
        .expect(&stdout)
        .split_whitespace()
        .filter_map(|w| w.split_once("s:").and_then(|(_, v)| v.parse().ok()))
        .collect();
    let (lo, hi) = (
        p95.iter().copied().fold(f64::INFINITY, f64::min),
        p95.iter().copied().fold(0.0, f64::max),
    );
    assert!(hi > 3.0 * lo, "no latency spike in {p95:?}\n{stdout}");
    // Then it reads back what the store kept: the outage shows in the availability (down
    // about 12 s of 30) and in the timeline.
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("segmentation-api ") && l.contains("availability"))
        .expect(&stdout);
    let availability: f64 = line
        .split("availability")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.trim().parse().ok())
        .expect(line);
    assert!((20.0..90.0).contains(&availability), "{line}");
    let timeline = stdout
        .lines()
        .find(|l| l.contains("segmentation-api up, per 5 s:"))
        .expect(&stdout);
    assert!(
        timeline.contains('▇') && timeline.contains('_'),
        "{timeline}"
    );
}

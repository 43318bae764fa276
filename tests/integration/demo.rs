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
    assert_eq!(
        stdout.matches("Slack message received").count(),
        2,
        "{stdout}"
    );
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

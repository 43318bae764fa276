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
}

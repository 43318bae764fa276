//! Every default of the configuration, in one place. `docs/configuration.md` lists the same.

use std::time::Duration;

pub const CONFIG_PATH: &str = "/etc/sloguard/config.toml";
const DAY: u64 = 24 * 3600;

pub fn consecutive_metric() -> &'static str {
    "probe_up"
}
pub fn consecutive_condition() -> &'static str {
    "< 1"
}
pub fn consecutive_fire_after() -> u32 {
    3
}
pub fn consecutive_resolve_after() -> u32 {
    1
}
pub fn threshold_every() -> Duration {
    Duration::from_secs(30)
}
/// The SRE workbook's burn-rate alerts: (long, short, factor, critical).
pub fn slo_burns() -> Vec<(Duration, Duration, f64, bool)> {
    let (m, h) = (60, 3600);
    vec![
        (
            Duration::from_secs(h),
            Duration::from_secs(5 * m),
            14.4,
            true,
        ),
        (
            Duration::from_secs(6 * h),
            Duration::from_secs(30 * m),
            6.0,
            true,
        ),
        (
            Duration::from_secs(3 * DAY),
            Duration::from_secs(6 * h),
            1.0,
            false,
        ),
    ]
}
pub fn slo_period() -> Duration {
    Duration::from_secs(30 * DAY)
}

/// The dashboard's range when none is picked: the plan's "last 24 hours".
pub fn dashboard_range() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// How often an open dashboard reloads itself.
pub fn dashboard_refresh() -> Duration {
    Duration::from_secs(60)
}

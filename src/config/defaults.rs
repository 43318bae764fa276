//! Every default of the configuration, in one place. `docs/configuration.md` lists the same.

use std::time::Duration;

pub const CONFIG_PATH: &str = "/etc/sloguard/config.toml";

/// The dashboard's range when none is picked: the plan's "last 24 hours".
pub fn dashboard_range() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// How often an open dashboard reloads itself.
pub fn dashboard_refresh() -> Duration {
    Duration::from_secs(60)
}

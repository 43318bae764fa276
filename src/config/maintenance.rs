//! `[[maintenance]]`: recurring windows in which matching alerts notify no one, as written
//! and validated into `silence::MaintenanceWindow`s.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::fields::{check_name, duration_field};
use super::problems::{Problems, Site, declared_names, element, tables};
use crate::silence::MaintenanceWindow;

/// `[[maintenance]]`, validated.
pub(super) fn maintenance(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
) -> Vec<MaintenanceWindow> {
    declared_names(problems, value, "maintenance", "maintenance window");
    let mut maintenance = Vec::new();
    for (value, site) in tables(problems, value, "maintenance") {
        if let Some(w) = element::<RawMaintenance>(problems, value, &site)
            .and_then(|raw| maintenance_window(problems, raw, &site))
        {
            maintenance.push(w);
        }
    }
    maintenance
}

/// `[[maintenance]]`: a recurring window in which matching alerts notify no one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    /// The window's name, shown in logs.
    pub name: String,
    /// When it opens: a crontab line (`0 2 * * SUN`) or a 6/7-field cron expression, in UTC.
    pub schedule: String,
    /// How long it stays open.
    pub duration: String,
    /// Which alerts it silences: `rule` and label equality; empty means every alert.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
}

fn maintenance_window(
    problems: &mut Problems<'_>,
    raw: RawMaintenance,
    site: &Site<'_, '_>,
) -> Option<MaintenanceWindow> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let schedule = match crate::silence::Schedule::parse(&raw.schedule) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Some(site.span_of("schedule")), site.field("schedule"), e);
            None
        }
    };
    let duration = duration_field(
        problems,
        site,
        "duration",
        Some(&raw.duration),
        Duration::ZERO,
        Duration::from_secs(60),
    );
    if problems.list.len() > before {
        return None;
    }
    Some(MaintenanceWindow {
        name: raw.name,
        schedule: schedule?,
        duration,
        matchers: raw.matchers,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{config, expect};

    const WINDOW: &str =
        "[[maintenance]]\nname = \"backup\"\nschedule = \"0 2 * * SUN\"\nduration = \"2h\"\n";

    #[test]
    fn a_window_as_written() {
        let c = config(&format!("{WINDOW}match = {{ rule = \"db_slow\" }}\n"));
        let w = &c.maintenance[0];
        assert_eq!(w.name, "backup");
        assert_eq!(w.duration, Duration::from_secs(7200));
        assert_eq!(w.matchers["rule"], "db_slow");
    }

    #[test]
    fn problems() {
        expect(&[
            (
                &WINDOW.replace("0 2 * * SUN", "0 2 * *"),
                "maintenance[0].schedule",
                3,
                "`0 2 * *` has 4 fields; write a crontab line (`min hour day month weekday`, e.g. `0 2 * * SUN`)",
            ),
            (
                &WINDOW.replace("0 2 * * SUN", "0 25 * * SUN"),
                "maintenance[0].schedule",
                3,
                "`0 25 * * SUN` is not a cron schedule: ",
            ),
            (
                &WINDOW.replace("\"2h\"", "\"30s\""),
                "maintenance[0].duration",
                4,
                "must be at least 1m",
            ),
            (
                &WINDOW.replace("\"backup\"", "\"nightly backup\""),
                "maintenance[0].name",
                2,
                "`nightly backup` is not a valid name",
            ),
            (
                &format!("{WINDOW}{WINDOW}"),
                "maintenance[1].name",
                6,
                "duplicate maintenance window name `backup`",
            ),
        ]);
    }
}

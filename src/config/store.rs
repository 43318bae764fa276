//! `[store]`: how long measurements are kept and at which resolutions, as written, validated
//! and defaulted.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::fields::{MAX_DURATION, duration_field, nested_duration};
use super::problems::{Problems, Site, single};

// Defaults; docs/configuration.md lists the same.

const DAY: u64 = 24 * 3600;
fn raw_retention() -> Duration {
    Duration::from_secs(7 * DAY)
}
fn distribution_interval() -> Duration {
    Duration::from_secs(10)
}
fn history_retention() -> Duration {
    Duration::from_secs(400 * DAY)
}
fn compact_interval() -> Duration {
    Duration::from_secs(60)
}
/// Rollup tiers as (step, retention): one minute for 90 days, one hour for two years.
fn rollups() -> Vec<(Duration, Duration)> {
    vec![
        (Duration::from_secs(60), Duration::from_secs(90 * DAY)),
        (Duration::from_secs(3600), Duration::from_secs(730 * DAY)),
    ]
}

/// `[store]`: how long measurements are kept and at which resolutions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// How long every raw point and distribution interval is kept, e.g. `7d`.
    pub raw_retention: Option<String>,
    /// The interval of one sketch of a distribution series, e.g. `10s`.
    pub distribution_interval: Option<String>,
    /// How long alert history is kept, e.g. `400d`.
    pub history_retention: Option<String>,
    /// How often rollups are made and old data deleted.
    pub compact_interval: Option<String>,
    /// Rollup tiers, finest first; replaces the default tiers when given.
    pub rollup: Option<Vec<RawRollup>>,
}

/// `[[store.rollup]]`: one rollup tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollup {
    /// Bucket width, e.g. `1m`.
    pub step: String,
    /// How long the tier is kept, e.g. `90d`.
    pub retention: String,
}

/// `[store]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub raw_retention: Duration,
    pub distribution_interval: Duration,
    pub history_retention: Duration,
    pub compact_interval: Duration,
    /// (step, retention), finest first; each step a multiple of the one before.
    pub rollups: Vec<(Duration, Duration)>,
}

impl StoreConfig {
    /// The store's view of these settings.
    pub fn layout(&self) -> crate::store::Layout {
        let ms = |d: &Duration| d.as_millis() as i64;
        crate::store::Layout {
            raw_retention_ms: ms(&self.raw_retention),
            distribution_interval_ms: ms(&self.distribution_interval),
            tiers: self
                .rollups
                .iter()
                .map(|(step, keep)| crate::store::Tier {
                    step_ms: ms(step),
                    retention_ms: ms(keep),
                })
                .collect(),
        }
    }
}

/// `[store]`, validated; the defaults when it is absent (or broken, with a problem).
pub(super) fn store(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    root_span: &Range<usize>,
) -> StoreConfig {
    single::<RawStore>(problems, value, "store", root_span)
        .map(|(raw, site)| store_config(problems, raw, &site))
        .unwrap_or_else(default_store)
}

fn default_store() -> StoreConfig {
    StoreConfig {
        raw_retention: raw_retention(),
        distribution_interval: distribution_interval(),
        history_retention: history_retention(),
        compact_interval: compact_interval(),
        rollups: rollups(),
    }
}

fn store_config(problems: &mut Problems<'_>, raw: RawStore, site: &Site<'_, '_>) -> StoreConfig {
    let second = Duration::from_secs(1);
    let d = default_store();
    let distribution_interval = duration_field(
        problems,
        site,
        "distribution_interval",
        raw.distribution_interval.as_ref(),
        d.distribution_interval,
        second,
    );
    let mut rollups = Vec::new();
    match raw.rollup {
        None => rollups = d.rollups,
        Some(list) => {
            let mut previous = distribution_interval;
            for (i, r) in list.iter().enumerate() {
                let path = format!("rollup[{i}]");
                let Some(step) = nested_duration(
                    problems,
                    site,
                    ("rollup", &format!("{path}.step")),
                    &r.step,
                    Duration::from_secs(60)..=MAX_DURATION,
                    "must be between 1m and 3650d",
                ) else {
                    continue;
                };
                if step.as_millis() % previous.as_millis().max(1) != 0 || step <= previous {
                    problems.push(
                        Some(site.span_of("rollup")),
                        site.field(&format!("{path}.step")),
                        format!(
                            "must be a larger multiple of {} (the step before it, or distribution_interval)",
                            humantime::format_duration(previous)
                        ),
                    );
                    continue;
                }
                let Some(keep) = nested_duration(
                    problems,
                    site,
                    ("rollup", &format!("{path}.retention")),
                    &r.retention,
                    step..=MAX_DURATION,
                    "must be at least the step and at most 3650d",
                ) else {
                    continue;
                };
                previous = step;
                rollups.push((step, keep));
            }
        }
    }
    StoreConfig {
        raw_retention: duration_field(
            problems,
            site,
            "raw_retention",
            raw.raw_retention.as_ref(),
            d.raw_retention,
            Duration::from_secs(3600),
        ),
        distribution_interval,
        history_retention: duration_field(
            problems,
            site,
            "history_retention",
            raw.history_retention.as_ref(),
            d.history_retention,
            Duration::from_secs(3600),
        ),
        compact_interval: duration_field(
            problems,
            site,
            "compact_interval",
            raw.compact_interval.as_ref(),
            d.compact_interval,
            second,
        ),
        rollups,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::StoreConfig;
    use crate::config::testing::{config, expect};

    #[test]
    fn rollup_tiers_replace_the_defaults() {
        let c = config(
            r#"[store]
raw_retention = "2d"
distribution_interval = "15s"
history_retention = "30d"
compact_interval = "5m"
rollup = [
  { step = "1m", retention = "30d" },
  { step = "15m", retention = "1y" },
]
"#,
        );
        let (m, d) = (60, 86400);
        let secs = Duration::from_secs;
        assert_eq!(
            c.store,
            StoreConfig {
                raw_retention: secs(2 * d),
                distribution_interval: secs(15),
                history_retention: secs(30 * d),
                compact_interval: secs(5 * m),
                rollups: vec![(secs(m), secs(30 * d)), (secs(15 * m), secs(31_557_600))],
            }
        );
        let layout = c.store.layout();
        assert_eq!(layout.raw_retention_ms, 2 * 86_400_000);
        assert_eq!(layout.distribution_interval_ms, 15_000);
        assert_eq!(layout.tiers[1].step_ms, 900_000);
    }

    #[test]
    fn problems() {
        expect(&[
            (
                "[store]\nrollup = [{ step = \"95s\", retention = \"1d\" }]\n",
                "store.rollup[0].step",
                2,
                "must be a larger multiple of 10s (the step before it, or distribution_interval)",
            ),
            (
                "[store]\nrollup = [\n  { step = \"1m\", retention = \"1d\" },\n  { step = \"1m\", retention = \"2d\" },\n]\n",
                "store.rollup[1].step",
                2,
                "must be a larger multiple of 1m (the step before it, or distribution_interval)",
            ),
            (
                "[store]\ndistribution_interval = \"7s\"\nrollup = [{ step = \"1m\", retention = \"1d\" }]\n",
                "store.rollup[0].step",
                3,
                "must be a larger multiple of 7s",
            ),
            (
                "[store]\nrollup = [{ step = \"1h\", retention = \"30m\" }]\n",
                "store.rollup[0].retention",
                2,
                "must be at least the step and at most 3650d",
            ),
            (
                "[store]\nrollup = [{ step = \"1h\", retention = \"forever\" }]\n",
                "store.rollup[0].retention",
                2,
                "`forever` is not a duration",
            ),
            (
                "[store]\nraw_retention = \"30m\"\n",
                "store.raw_retention",
                2,
                "must be at least 1h",
            ),
            (
                "[store]\nhistory_retention = \"59m\"\n",
                "store.history_retention",
                2,
                "must be at least 1h",
            ),
            (
                "[store]\ndistribution_interval = \"500ms\"\n",
                "store.distribution_interval",
                2,
                "must be at least 1s",
            ),
            (
                "[store]\ncompact_interval = \"0s\"\n",
                "store.compact_interval",
                2,
                "must be at least 1s",
            ),
        ]);
    }
}

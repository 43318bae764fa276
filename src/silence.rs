//! Silences and maintenance windows: an alert that matches one still fires and is recorded,
//! but notifies no one until the silence ends (then its firing is sent, if it still fires).
//! A resolve for an alert that was notified is always sent.
//!
//! A silence is added at run time (`sloguard silence add`, the HTTP API) and kept in the
//! store; a maintenance window is a recurring silence in the configuration: a cron schedule
//! (5-field crontab lines are accepted) and a duration.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::series::Labels;

/// Matchers: label equality; the key `rule` matches the rule's name.
pub type Matchers = BTreeMap<String, String>;

/// Whether `matchers` select the alert of `rule` with `labels`.
pub fn matches(matchers: &Matchers, rule: &str, labels: &Labels) -> bool {
    matchers.iter().all(|(k, v)| match k.as_str() {
        "rule" | "alertname" => rule == v,
        _ => labels.get(k) == Some(v),
    })
}

/// A silence added at run time. On disk: a `silences` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    pub matchers: Matchers,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub reason: String,
    pub by: String,
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }
}

/// A cron schedule; 5-field crontab lines are accepted and converted.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    schedule: cron::Schedule,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let converted = match fields.len() {
            // A crontab line: add seconds, and shift numeric days of week (crontab: Sunday is
            // 0 or 7; the cron crate: Sunday is 1).
            5 => format!(
                "0 {} {} {} {} {}",
                fields[0],
                fields[1],
                fields[2],
                fields[3],
                crontab_dow(fields[4])?
            ),
            6 | 7 => text.to_string(),
            _ if text.trim_start().starts_with('@') => text.trim().to_string(),
            n => {
                return Err(format!(
                    "`{text}` has {n} fields; write a crontab line (`min hour day month weekday`, e.g. `0 2 * * SUN`)"
                ));
            }
        };
        let schedule = cron::Schedule::from_str(&converted)
            .map_err(|e| format!("`{text}` is not a cron schedule: {e}"))?;
        Ok(Schedule {
            text: text.to_string(),
            schedule,
        })
    }

    /// The latest occurrence at or before `t`, looking back at most `within`.
    pub fn latest_before(
        &self,
        t: DateTime<Utc>,
        within: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        self.latest_in(&t, within)
    }

    /// The latest occurrence at or before `t`, in `t`'s time zone (so `0 9 * * MON` is 09:00
    /// there, whatever the offset that day), looking back at most `within`. Walks backwards
    /// from a second after `t` (occurrences are whole seconds, `t` may not be), past the
    /// occurrence in that second if there is one, so it costs a step or two however dense the
    /// schedule is.
    pub fn latest_in<Tz: chrono::TimeZone>(
        &self,
        t: &DateTime<Tz>,
        within: chrono::Duration,
    ) -> Option<DateTime<Tz>> {
        let latest = self
            .schedule
            .after(&(t.clone() + chrono::Duration::seconds(1)))
            .rev()
            .take(2)
            .find(|o| o <= t)?;
        (latest >= t.clone() - within).then_some(latest)
    }

    /// The next occurrence after `t`, in `t`'s time zone.
    pub fn next_in<Tz: chrono::TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.schedule.after(t).next()
    }
}

/// Converts crontab's day-of-week field (0–7, Sunday 0 and 7; ranges, lists, steps) to the
/// cron crate's (1–7, Sunday 1) as an explicit list, so that ranges through Sunday (`5-7`,
/// `0-7`) keep their meaning. Names (`MON`, `SUN-SAT`) pass unchanged.
fn crontab_dow(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let num = |n: &str| -> Result<Option<u8>, String> {
        match n.parse::<u8>() {
            Ok(d @ 0..=7) => Ok(Some(d)),
            Ok(_) => Err(format!("day of week `{n}` is out of 0–7")),
            Err(_) => Ok(None),
        }
    };
    let mut days = std::collections::BTreeSet::new();
    let mut names = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u8>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{part}`: bad step"))?,
            ),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (Some(0), Some(6)),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let d = num(r)?;
                    (d, if step > 1 { Some(6) } else { d })
                }
            },
        };
        match (from, to) {
            (Some(a), Some(b)) if a <= b => {
                for d in (a..=b).step_by(step as usize) {
                    days.insert(d % 7);
                }
            }
            (Some(a), Some(b)) => {
                return Err(format!("day-of-week range `{a}-{b}` runs backwards"));
            }
            _ => names.push(part.to_string()),
        }
    }
    let mut out: Vec<String> = days.iter().map(|d| (d + 1).to_string()).collect();
    out.extend(names);
    Ok(out.join(","))
}

/// A recurring silence from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub schedule: Schedule,
    pub duration: std::time::Duration,
    pub matchers: Matchers,
}

impl MaintenanceWindow {
    /// Whether a window is open at `now`.
    pub fn active(&self, now_ms: i64) -> bool {
        let Some(now) = DateTime::<Utc>::from_timestamp_millis(now_ms) else {
            return false;
        };
        let Ok(len) = chrono::Duration::from_std(self.duration) else {
            return false;
        };
        self.schedule
            .latest_before(now, len)
            .is_some_and(|start| now < start + len)
    }
}

/// Why an alert is silenced now, if it is: `silence #3 (deploy)` or `maintenance window nightly`.
pub fn silenced_by(
    silences: &[Silence],
    windows: &[MaintenanceWindow],
    rule: &str,
    labels: &Labels,
    now_ms: i64,
) -> Option<String> {
    if let Some(s) = silences
        .iter()
        .find(|s| s.active(now_ms) && matches(&s.matchers, rule, labels))
    {
        return Some(format!("silence #{} ({})", s.id, s.reason));
    }
    windows
        .iter()
        .find(|w| w.active(now_ms) && matches(&w.matchers, rule, labels))
        .map(|w| format!("maintenance window {}", w.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    /// In the last second before an occurrence, the one before is still the latest: a window
    /// opening every minute for two minutes is open then too.
    #[test]
    fn the_latest_occurrence_in_the_second_before_the_next() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        let t = DateTime::parse_from_rfc3339("2026-12-05T22:10:59.570Z")
            .unwrap()
            .with_timezone(&Utc);
        let start = DateTime::parse_from_rfc3339("2026-12-05T22:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            every_minute.latest_before(t, chrono::Duration::minutes(2)),
            Some(start)
        );
        // An occurrence exactly at `t` is the latest.
        assert_eq!(
            every_minute.latest_before(start, chrono::Duration::minutes(2)),
            Some(start)
        );
    }

    #[test]
    fn crontab_lines_are_accepted_with_their_days_of_week() {
        // Sunday 02:00 in crontab's numbering (0) and by name.
        for line in ["0 2 * * 0", "0 2 * * 7", "0 2 * * SUN", "0 0 2 * * SUN"] {
            let w = MaintenanceWindow {
                name: "nightly".into(),
                schedule: Schedule::parse(line).unwrap(),
                duration: std::time::Duration::from_secs(3600),
                matchers: Matchers::new(),
            };
            // 2026-11-29 is a Sunday.
            assert!(w.active(at("2026-11-29T02:30:00Z")), "{line}");
            assert!(!w.active(at("2026-11-29T03:00:00Z")), "{line}");
            assert!(!w.active(at("2026-11-29T01:59:59Z")), "{line}");
            assert!(!w.active(at("2026-11-30T02:30:00Z")), "{line} on a Monday");
        }
        // Weekdays 1-5 are Monday to Friday.
        let s = Schedule::parse("30 1 * * 1-5").unwrap();
        let w = MaintenanceWindow {
            name: "w".into(),
            schedule: s,
            duration: std::time::Duration::from_secs(600),
            matchers: Matchers::new(),
        };
        assert!(w.active(at("2026-11-30T01:35:00Z")), "Monday");
        assert!(!w.active(at("2026-11-29T01:35:00Z")), "Sunday");
        assert!(Schedule::parse("* * *").is_err());
        assert!(Schedule::parse("0 2 * * 9").is_err());
        // Ranges through Sunday keep their meaning.
        assert_eq!(crontab_dow("0-7").unwrap(), "1,2,3,4,5,6,7");
        assert_eq!(crontab_dow("5-7").unwrap(), "1,6,7");
        assert_eq!(crontab_dow("1-5/2").unwrap(), "2,4,6");
        assert_eq!(crontab_dow("SAT,SUN").unwrap(), "SAT,SUN");
        let weekend = Schedule::parse("0 3 * * 6-7").unwrap();
        let w = MaintenanceWindow {
            name: "w".into(),
            schedule: weekend,
            duration: std::time::Duration::from_secs(600),
            matchers: Matchers::new(),
        };
        assert!(w.active(at("2026-11-29T03:05:00Z")), "Sunday");
        assert!(w.active(at("2026-11-28T03:05:00Z")), "Saturday");
        assert!(!w.active(at("2026-11-27T03:05:00Z")), "Friday");
        // A dense schedule with a long window answers at once.
        let dense = MaintenanceWindow {
            name: "d".into(),
            schedule: Schedule::parse("* * * * * *").unwrap(),
            duration: std::time::Duration::from_secs(3650 * 24 * 3600),
            matchers: Matchers::new(),
        };
        assert!(dense.active(at("2026-11-29T03:05:00Z")));
    }

    #[test]
    fn matchers_select_by_rule_and_labels() {
        let mut labels = Labels::new();
        labels.insert("target".into(), "web".into());
        let m: Matchers = [
            ("rule".to_string(), "down".to_string()),
            ("target".to_string(), "web".to_string()),
        ]
        .into();
        assert!(matches(&m, "down", &labels));
        assert!(!matches(&m, "slow", &labels));
        labels.insert("target".into(), "api".into());
        assert!(!matches(&m, "down", &labels));
    }
}

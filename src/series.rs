//! The vocabulary every layer shares: a series is a metric name plus a set of labels; a sample
//! is one value of one series at one time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Labels, kept sorted so that equal sets print and compare equal.
pub type Labels = BTreeMap<String, String>;

/// A metric name and its labels: the identity of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Labels,
}

/// The label value of the series that takes every label set past a metric's `max_series`.
/// It mixes many clients' values, so no per-series rule (`consecutive`, `growth`) evaluates it.
pub const OVERFLOW: &str = "__overflow__";

impl SeriesKey {
    pub fn new(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether every matcher `(label, value)` holds for this series.
    /// Whether this is a metric's overflow series (some label is `__overflow__`).
    pub fn is_overflow(&self) -> bool {
        self.labels.values().any(|v| v == OVERFLOW)
    }

    pub fn matches(&self, name: &str, matchers: &Labels) -> bool {
        self.name == name
            && matchers
                .iter()
                .all(|(k, v)| self.labels.get(k).is_some_and(|have| have == v))
    }
}

/// Prometheus' text form: `name{a="x",b="y"}`, label values escaped.
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        write_labels(f, &self.labels)
    }
}

/// Writes `{a="x",b="y"}` (nothing for an empty set), escaping `\`, `"` and newlines.
pub fn write_labels(f: &mut impl fmt::Write, labels: &Labels) -> fmt::Result {
    if labels.is_empty() {
        return Ok(());
    }
    f.write_char('{')?;
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            f.write_char(',')?;
        }
        write!(f, "{k}=\"")?;
        for c in v.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')?;
    }
    f.write_char('}')
}

/// One measurement. `note` is transient context for alert texts (a probe's failure reason);
/// it is not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub series: SeriesKey,
    pub ts_ms: i64,
    pub value: f64,
    pub note: Option<Arc<str>>,
}

/// Whether `name` is a valid Prometheus metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_escapes_label_values() {
        let k = SeriesKey::new("probe_up", &[("target", "a\"b\\c\nd"), ("a", "1")]);
        assert_eq!(k.to_string(), r#"probe_up{a="1",target="a\"b\\c\nd"}"#);
    }

    #[test]
    fn metric_names() {
        assert!(valid_metric_name("probe_up"));
        assert!(valid_metric_name("a:b_1"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("probe-up"));
        assert!(!valid_metric_name(""));
    }
}

//! Turns log lines into series: parses a line (JSON, or text through a regex with named
//! captures), applies the `[[logs.metric]]` and `[[logs.errors]]` rules, and aggregates until
//! the next flush. Nothing here allocates per line on the common path: series are found by
//! their label values in a scratch buffer, events go into the open interval's sketch.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::errors::{self, ErrorSeen};
use crate::config::{
    FieldMatch, FieldPath, LineParse, LogMetricKind, LogSource, Pattern, TimeFormat,
};
use crate::series::{Labels, Sample, SeriesKey};
use crate::store::bucket::Bucket;

/// The label value of the series that takes every label set past a metric's `max_series`.
pub const OVERFLOW: &str = "__overflow__";
/// Label values and error messages are cut to this many bytes.
const MAX_LABEL_BYTES: usize = 256;

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    TooLong,
    NotUtf8,
    NotJson,
    NoPatternMatch,
}

impl Reject {
    pub const ALL: [Reject; 4] = [
        Reject::TooLong,
        Reject::NotUtf8,
        Reject::NotJson,
        Reject::NoPatternMatch,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::TooLong => "too_long",
            Reject::NotUtf8 => "not_utf8",
            Reject::NotJson => "not_json",
            Reject::NoPatternMatch => "no_pattern_match",
        }
    }
}

/// Counts since the last flush.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub lines: u64,
    pub rejected: [u64; 4],
    /// Timestamps that could not be read (the arrival time was used).
    pub bad_timestamps: u64,
    /// Values that were missing or not numbers (that metric skipped the line).
    pub bad_values: u64,
    /// Lines whose label set went to a metric's overflow series.
    pub overflowed: u64,
    /// Occurrences of error types not kept because a flush had too many distinct ones.
    pub errors_dropped: u64,
}

impl Counts {
    pub fn reject(&mut self, why: Reject) {
        self.rejected[why as usize] += 1;
    }
    pub fn rejected(&self, why: Reject) -> u64 {
        self.rejected[why as usize]
    }
}

/// What a flush hands to the store.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Interval summaries of counter and distribution series, merged into the store's.
    pub events: Vec<(SeriesKey, Bucket)>,
    /// The newest value of each gauge series.
    pub gauges: Vec<Sample>,
    pub errors: Vec<ErrorSeen>,
    pub counts: Counts,
}

impl Extracted {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.gauges.is_empty() && self.errors.is_empty()
    }
}

/// A field's value, borrowed from the line where it can be.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl<'a> Val<'a> {
    /// Text of a string, or the JSON text of anything else; `None` for null.
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Text(t) => Some(Cow::Borrowed(t)),
            Val::Json(raw) => {
                let s = raw.get();
                match s.as_bytes().first() {
                    Some(b'"') => match serde_json::from_str::<&'a str>(s) {
                        Ok(t) => Some(Cow::Borrowed(t)),
                        // Escapes need an owned copy.
                        Err(_) => serde_json::from_str::<String>(s).ok().map(Cow::Owned),
                    },
                    Some(b'n') => None,
                    _ => Some(Cow::Borrowed(s)),
                }
            }
        }
    }

    fn number(self) -> Option<f64> {
        let v = match self {
            Val::Text(t) => t.trim().parse::<f64>().ok(),
            Val::Json(raw) => {
                let s = raw.get();
                if s.starts_with('"') {
                    self.text()?.trim().parse::<f64>().ok()
                } else {
                    s.parse::<f64>().ok()
                }
            }
        }?;
        v.is_finite().then_some(v)
    }
}

/// A JSON object key, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Collects the wanted keys of a JSON object (or all of them when `wanted` is `None`),
/// skipping the other values without keeping them.
struct Collect<'w, 'a> {
    wanted: Option<&'w [String]>,
    out: &'w mut Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de, 'w> DeserializeSeed<'de> for Collect<'w, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'w> Visitor<'de> for Collect<'w, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if self.wanted.is_none_or(|w| w.iter().any(|x| *x == *k)) {
                let v: &'de RawValue = map.next_value()?;
                self.out.push((k, v));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Parses `text` as a JSON object into `out`; false when it is not one.
fn collect_object<'a>(
    text: &'a str,
    wanted: Option<&[String]>,
    out: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
) -> bool {
    out.clear();
    let mut de = serde_json::Deserializer::from_str(text);
    Collect {
        wanted,
        out: &mut *out,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .is_ok()
}

/// The fields of one parsed line.
enum Doc<'a> {
    Json(Vec<(Cow<'a, str>, &'a RawValue)>),
    Text(Vec<(&'a str, &'a str)>),
}

impl<'a> Doc<'a> {
    fn top(&self, key: &str) -> Option<Val<'a>> {
        match self {
            Doc::Json(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| Val::Json(v)),
            Doc::Text(fields) => fields
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| Val::Text(v)),
        }
    }

    fn get(&self, path: &FieldPath) -> Option<Val<'a>> {
        let (first, rest) = path.0.split_first()?;
        let mut v = self.top(first)?;
        for key in rest {
            let Val::Json(raw) = v else { return None };
            v = Val::Json(child(raw, key)?);
        }
        Some(v)
    }
}

/// `raw[key]` for an object, `raw[index]` for an array.
fn child<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let mut fields = Vec::new();
            let wanted = [key.to_string()];
            collect_object(text, Some(&wanted), &mut fields);
            fields.into_iter().next().map(|(_, v)| v)
        }
        Some(b'[') => {
            let index: usize = key.parse().ok()?;
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(index).copied()
        }
        _ => None,
    }
}

/// Looks a field up in the inner document (`json_in`) first, then in the line itself.
struct Fields<'d, 'a, 'b> {
    outer: &'d Doc<'a>,
    inner: Option<&'d Doc<'b>>,
}

impl Fields<'_, '_, '_> {
    fn get(&self, path: &FieldPath) -> Option<Val<'_>> {
        if let Some(inner) = self.inner
            && let Some(v) = inner.get(path)
        {
            return Some(v);
        }
        self.outer.get(path)
    }

    fn matches(&self, conditions: &[FieldMatch]) -> bool {
        conditions.iter().all(|c| match c {
            FieldMatch::Equals(path, want) => self
                .get(path)
                .and_then(Val::text)
                .is_some_and(|t| t == want.as_str()),
            FieldMatch::EqualsNumber(path, want) => self
                .get(path)
                .and_then(Val::number)
                .is_some_and(|n| n == *want),
            FieldMatch::Regex(path, Pattern(re)) => self
                .get(path)
                .and_then(Val::text)
                .is_some_and(|t| re.is_match(&t)),
        })
    }
}

/// One series a metric made: its key, open intervals (events) or newest value (gauges).
struct Series {
    key: SeriesKey,
    buckets: Vec<Bucket>,
    gauge: Option<(i64, f64)>,
}

struct MetricState {
    slots: FxHashMap<Box<str>, usize>,
    overflow: Option<usize>,
}

/// One log source's rules and what they gathered since the last flush.
pub struct Extractor {
    source: Arc<str>,
    cfg: Arc<LogSource>,
    /// First keys of every field path the rules read (the only ones parsed).
    wanted: Vec<String>,
    interval_ms: i64,
    metrics: Vec<MetricState>,
    series: Vec<Series>,
    /// Series with something to flush.
    dirty: Vec<usize>,
    errors: FxHashMap<Box<str>, ErrorSeen>,
    counts: Counts,
    scratch: String,
}

impl Extractor {
    /// `interval_ms` is the store's distribution interval: events are summed per interval.
    pub fn new(cfg: &LogSource, interval_ms: i64) -> Extractor {
        let mut wanted: Vec<String> = Vec::new();
        let mut want = |p: &FieldPath| {
            if let Some(first) = p.0.first()
                && !wanted.contains(first)
            {
                wanted.push(first.clone());
            }
        };
        let conditions = |m: &[FieldMatch]| -> Vec<FieldPath> {
            m.iter()
                .map(|c| match c {
                    FieldMatch::Equals(p, _)
                    | FieldMatch::EqualsNumber(p, _)
                    | FieldMatch::Regex(p, _) => p.clone(),
                })
                .collect()
        };
        for m in &cfg.metrics {
            conditions(&m.matches).iter().for_each(&mut want);
            m.value.iter().for_each(&mut want);
            m.labels.iter().for_each(|(_, p)| want(p));
        }
        for e in &cfg.errors {
            conditions(&e.matches).iter().for_each(&mut want);
            want(&e.message);
        }
        cfg.timestamp.iter().for_each(|(p, _)| want(p));
        cfg.json_in.iter().for_each(&mut want);
        Extractor {
            source: Arc::from(cfg.name.as_str()),
            metrics: cfg
                .metrics
                .iter()
                .map(|_| MetricState {
                    slots: FxHashMap::default(),
                    overflow: None,
                })
                .collect(),
            cfg: Arc::new(cfg.clone()),
            wanted,
            interval_ms: interval_ms.max(1),
            series: Vec::new(),
            dirty: Vec::new(),
            errors: FxHashMap::default(),
            counts: Counts::default(),
            scratch: String::new(),
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Lines since the last flush.
    pub fn pending_lines(&self) -> u64 {
        self.counts.lines
    }

    pub fn reject(&mut self, why: Reject) {
        self.counts.lines += 1;
        self.counts.reject(why);
    }

    /// Reads one line (without its newline). `arrival_ms` stands in for a missing time.
    pub fn line(&mut self, bytes: &[u8], arrival_ms: i64) {
        self.counts.lines += 1;
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.len() > self.cfg.max_line_bytes {
            self.counts.reject(Reject::TooLong);
            return;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.counts.reject(Reject::NotUtf8);
            return;
        };
        let cfg = self.cfg.clone();
        let mut fields = Vec::with_capacity(self.wanted.len());
        let doc = match &cfg.parse {
            LineParse::Json => {
                if !collect_object(text, Some(&self.wanted), &mut fields) {
                    self.counts.reject(Reject::NotJson);
                    return;
                }
                Doc::Json(fields)
            }
            LineParse::Text(Pattern(re)) => {
                let Some(caps) = re.captures(text) else {
                    self.counts.reject(Reject::NoPatternMatch);
                    return;
                };
                let found = re
                    .capture_names()
                    .flatten()
                    .filter_map(|n| caps.name(n).map(|m| (n, m.as_str())))
                    .collect();
                Doc::Text(found)
            }
        };
        // A JSON document inside a field: its own text, parsed after unescaping.
        let inner_text: Option<Cow<'_, str>> = cfg
            .json_in
            .as_ref()
            .and_then(|p| doc.get(p))
            .and_then(Val::text);
        let inner = inner_text.as_deref().and_then(|t| {
            let mut f = Vec::new();
            collect_object(t, Some(&self.wanted), &mut f).then_some(Doc::Json(f))
        });
        let view = Fields {
            outer: &doc,
            inner: inner.as_ref(),
        };
        let ts = self.time(&view, arrival_ms);
        for (m, metric) in cfg.metrics.iter().enumerate() {
            if !view.matches(&metric.matches) {
                continue;
            }
            let value = match &metric.value {
                None => 1.0,
                Some(p) => match view.get(p).and_then(Val::number) {
                    Some(v) => v,
                    None => {
                        self.counts.bad_values += 1;
                        continue;
                    }
                },
            };
            let slot = self.slot(m, &view);
            let interval = self.interval_ms;
            let s = &mut self.series[slot];
            let fresh = s.buckets.is_empty() && s.gauge.is_none();
            if metric.kind == LogMetricKind::Gauge {
                if s.gauge.is_none_or(|(t, _)| ts >= t) {
                    s.gauge = Some((ts, value));
                }
            } else {
                let start = ts.div_euclid(interval) * interval;
                let b = match s.buckets.iter().rposition(|b| b.start == start) {
                    Some(i) => &mut s.buckets[i],
                    None => {
                        s.buckets.push(Bucket::empty(start, true));
                        s.buckets.last_mut().expect("just pushed")
                    }
                };
                b.observe(value);
            }
            if fresh {
                self.dirty.push(slot);
            }
        }
        for rule in &cfg.errors {
            if !view.matches(&rule.matches) {
                continue;
            }
            let Some(message) = view.get(&rule.message).and_then(Val::text) else {
                continue;
            };
            let message = cut(&message, errors::MAX_MESSAGE_BYTES);
            let pattern = errors::normalise(message);
            let room = self.errors.len() < errors::MAX_PER_FLUSH;
            match self.errors.entry(pattern.into_boxed_str()) {
                Entry::Occupied(mut o) => o.get_mut().add(message, ts),
                Entry::Vacant(v) => {
                    if room {
                        let seen = errors::first_seen(&self.source, v.key(), message, ts);
                        v.insert(seen);
                    } else {
                        self.counts.errors_dropped += 1;
                    }
                }
            }
        }
    }

    fn time(&mut self, view: &Fields<'_, '_, '_>, arrival_ms: i64) -> i64 {
        let Some((path, format)) = &self.cfg.timestamp else {
            return arrival_ms;
        };
        match view.get(path).and_then(|v| parse_time(v, *format)) {
            Some(t) => t,
            None => {
                self.counts.bad_timestamps += 1;
                arrival_ms
            }
        }
    }

    /// The series of metric `m` for this line's label values.
    fn slot(&mut self, m: usize, view: &Fields<'_, '_, '_>) -> usize {
        let cfg = self.cfg.clone();
        let metric = &cfg.metrics[m];
        self.scratch.clear();
        for (_, path) in &metric.labels {
            if let Some(v) = view.get(path).and_then(Val::text) {
                self.scratch.push_str(cut(&v, MAX_LABEL_BYTES));
            }
            self.scratch.push('\u{0}');
        }
        let state = &mut self.metrics[m];
        if let Some(&slot) = state.slots.get(self.scratch.as_str()) {
            return slot;
        }
        let labels: Labels = if state.slots.len() >= metric.max_series {
            self.counts.overflowed += 1;
            if let Some(slot) = state.overflow {
                return slot;
            }
            metric
                .labels
                .iter()
                .map(|(name, _)| (name.clone(), OVERFLOW.to_string()))
                .collect()
        } else {
            metric
                .labels
                .iter()
                .zip(self.scratch.split('\u{0}'))
                .filter(|(_, v)| !v.is_empty())
                .map(|((name, _), v)| (name.clone(), v.to_string()))
                .collect()
        };
        let slot = self.series.len();
        self.series.push(Series {
            key: SeriesKey {
                name: metric.name.clone(),
                labels,
            },
            buckets: Vec::new(),
            gauge: None,
        });
        if state.slots.len() >= metric.max_series {
            state.overflow = Some(slot);
        } else {
            state.slots.insert(self.scratch.as_str().into(), slot);
        }
        slot
    }

    /// Hands over what was gathered since the last flush.
    pub fn flush(&mut self) -> Extracted {
        let mut out = Extracted::default();
        for slot in self.dirty.drain(..) {
            let s = &mut self.series[slot];
            for b in s.buckets.drain(..) {
                out.events.push((s.key.clone(), b));
            }
            if let Some((ts_ms, value)) = s.gauge.take() {
                out.gauges.push(Sample {
                    series: s.key.clone(),
                    ts_ms,
                    value,
                    note: None,
                });
            }
        }
        out.errors = self.errors.drain().map(|(_, e)| e).collect();
        out.counts = std::mem::take(&mut self.counts);
        out
    }

    /// Drops what was gathered since the last flush (it will be read again).
    pub fn discard(&mut self) {
        for slot in self.dirty.drain(..) {
            self.series[slot].buckets.clear();
            self.series[slot].gauge = None;
        }
        self.errors.clear();
        self.counts = Counts::default();
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Milliseconds since 1970 from a field, or `None` when it is not a time.
fn parse_time(v: Val<'_>, format: TimeFormat) -> Option<i64> {
    let from_number = |n: f64, format: TimeFormat| -> Option<i64> {
        let scale = match format {
            TimeFormat::UnixS => 1e3,
            TimeFormat::UnixMs => 1.0,
            TimeFormat::UnixUs => 1e-3,
            TimeFormat::UnixNs => 1e-6,
            _ => match n.abs() {
                a if a < 1e11 => 1e3,
                a if a < 1e14 => 1.0,
                a if a < 1e17 => 1e-3,
                _ => 1e-6,
            },
        };
        let ms = (n * scale).floor();
        // Years 1970 to 9999.
        (0.0..253_402_300_800_000.0)
            .contains(&ms)
            .then_some(ms as i64)
    };
    match format {
        TimeFormat::Rfc3339 => rfc3339(&v.text()?),
        TimeFormat::Auto => match v.number() {
            Some(n) => from_number(n, format),
            None => rfc3339(&v.text()?),
        },
        f => from_number(v.number()?, f),
    }
}

fn rfc3339(text: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let ms = t.timestamp_millis();
    (0..253_402_300_800_000).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(toml: &str) -> LogSource {
        let text = format!(
            "[[logs]]\nname = \"app\"\nfiles = [\"/var/log/app.log\"]\n{toml}\n[[channels]]\nname = \"s\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n[routing]\ncritical = [\"s\"]\nwarning = [\"s\"]\n"
        );
        let cfg = crate::config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.logs[0].clone()
    }

    const SEED: &str = r#"
timestamp = "timestamp"
[[logs.metric]]
name = "app_requests"
kind = "counter"
match_regex = { event = "^api_segmentation_" }
labels = { event = "event" }
[[logs.metric]]
name = "app_request_duration_ms"
kind = "distribution"
value = "duration_ms"
match_regex = { event = "^api_segmentation_" }
[[logs.metric]]
name = "app_customers"
kind = "gauge"
value = "customer_count"
match = { event = "api_segmentation_success" }
[[logs.errors]]
match = { event = "api_segmentation_error" }
message = "error"
"#;

    #[test]
    fn the_seed_line_format_makes_counts_latencies_gauges_and_errors() {
        let mut x = Extractor::new(&source(SEED), 10_000);
        let lines = [
            r#"{"event":"api_segmentation_success","duration_ms":412,"customer_count":1200,"timestamp":"2026-11-26T06:00:01.500Z"}"#,
            r#"{"event":"api_segmentation_success","duration_ms":100,"customer_count":1300,"timestamp":"2026-11-26T06:00:02Z"}"#,
            r#"{"event":"api_segmentation_error","duration_ms":87,"error":"Cannot connect to database at 10.0.0.7","timestamp":"2026-11-26T06:00:12Z"}"#,
            r#"{"event":"api_segmentation_error","duration_ms":90,"error":"Cannot connect to database at 10.0.0.9","timestamp":"2026-11-26T06:00:13Z"}"#,
            r#"{"event":"health","timestamp":"2026-11-26T06:00:13Z"}"#,
            r#"{"event":"api_segmentation_succ"#,
            "plain text",
        ];
        for l in lines {
            x.line(l.as_bytes(), 0);
        }
        let out = x.flush();
        assert_eq!(out.counts.lines, 7);
        assert_eq!(out.counts.rejected(Reject::NotJson), 2);
        let t0 = rfc3339("2026-11-26T06:00:00Z").unwrap();
        let count = |name: &str, event: Option<&str>, start: i64| -> f64 {
            out.events
                .iter()
                .filter(|(k, b)| {
                    k.name == name
                        && k.labels.get("event").map(String::as_str) == event
                        && b.start == start
                })
                .map(|(_, b)| b.count)
                .sum()
        };
        assert_eq!(
            count("app_requests", Some("api_segmentation_success"), t0),
            2.0
        );
        assert_eq!(
            count("app_requests", Some("api_segmentation_error"), t0 + 10_000),
            2.0
        );
        assert_eq!(count("app_request_duration_ms", None, t0), 2.0);
        let d = out
            .events
            .iter()
            .find(|(k, b)| k.name == "app_request_duration_ms" && b.start == t0)
            .unwrap();
        assert_eq!((d.1.min, d.1.max, d.1.sum), (100.0, 412.0, 512.0));
        assert_eq!(out.gauges.len(), 1);
        assert_eq!(out.gauges[0].value, 1300.0);
        assert_eq!(out.gauges[0].ts_ms, t0 + 2_000);
        assert_eq!(out.errors.len(), 1);
        let e = &out.errors[0];
        assert_eq!(e.pattern, "Cannot connect to database at #.#.#.#");
        assert_eq!(e.count, 2);
        assert_eq!(e.last_message, "Cannot connect to database at 10.0.0.9");
        assert_eq!((e.first_ms, e.last_ms), (t0 + 12_000, t0 + 13_000));
        // Nothing is left for the next flush.
        assert!(x.flush().is_empty());
    }

    #[test]
    fn journald_lines_carry_the_app_line_in_message() {
        let mut x = Extractor::new(
            &source(
                r#"
json_in = "MESSAGE"
timestamp = "__REALTIME_TIMESTAMP"
timestamp_format = "unix_us"
[[logs.metric]]
name = "app_request_duration_ms"
kind = "distribution"
value = "duration_ms"
labels = { unit = "_SYSTEMD_UNIT", event = "event" }
"#,
            ),
            10_000,
        );
        let line = r#"{"__REALTIME_TIMESTAMP":"1795932001500000","_SYSTEMD_UNIT":"app.service","MESSAGE":"{\"event\":\"api_segmentation_success\",\"duration_ms\":412}"}"#;
        x.line(line.as_bytes(), 0);
        let out = x.flush();
        assert_eq!(out.events.len(), 1, "{out:?}");
        let (k, b) = &out.events[0];
        assert_eq!(
            k.to_string(),
            r#"app_request_duration_ms{event="api_segmentation_success",unit="app.service"}"#
        );
        assert_eq!(b.sum, 412.0);
        assert_eq!(b.start, 1_795_932_000_000);
    }

    #[test]
    fn nested_paths_text_lines_and_numbers_as_text() {
        let mut x = Extractor::new(
            &source(
                r#"
[[logs.metric]]
name = "db_ms"
kind = "distribution"
value = "req.timings.1"
match = { "req.status" = 500, "req.ok" = false }
"#,
            ),
            10_000,
        );
        x.line(
            br#"{"req":{"status":500,"ok":false,"timings":[3,7.5]}}"#,
            42_000,
        );
        x.line(
            br#"{"req":{"status":200,"ok":false,"timings":[3,7.5]}}"#,
            42_000,
        );
        let out = x.flush();
        assert_eq!(out.events.len(), 1);
        assert_eq!((out.events[0].1.sum, out.events[0].1.start), (7.5, 40_000));

        let mut x = Extractor::new(
            &source(
                r#"
format = "text"
pattern = '^(?P<ts>\S+) (?P<method>[A-Z]+) \S+ (?P<status>\d{3}) (?P<ms>\d+)ms$'
timestamp = "ts"
[[logs.metric]]
name = "http_requests"
kind = "counter"
labels = { status = "status" }
"#,
            ),
            10_000,
        );
        x.line(b"2026-11-26T06:00:00Z GET /a 200 12ms", 0);
        x.line(b"2026-11-26T06:00:01Z GET /a 503 12ms", 0);
        x.line(b"garbage", 0);
        let out = x.flush();
        assert_eq!(out.counts.rejected(Reject::NoPatternMatch), 1);
        assert_eq!(out.events.len(), 2);
    }

    #[test]
    fn label_sets_past_the_cap_go_to_one_overflow_series() {
        let mut x = Extractor::new(
            &source(
                r#"
[[logs.metric]]
name = "hits"
kind = "counter"
labels = { user = "user" }
max_series = 3
"#,
            ),
            10_000,
        );
        for i in 0..10 {
            x.line(format!(r#"{{"user":"u{i}"}}"#).as_bytes(), 1_000);
        }
        let out = x.flush();
        assert_eq!(out.events.len(), 4);
        let overflow = out
            .events
            .iter()
            .find(|(k, _)| k.labels["user"] == OVERFLOW)
            .unwrap();
        assert_eq!(overflow.1.count, 7.0);
        assert_eq!(out.counts.overflowed, 7);
    }

    #[test]
    fn timestamps_in_every_format() {
        let t = |text: &str, f| parse_time(Val::Json(serde_json::from_str(text).unwrap()), f);
        assert_eq!(t("1795932001", TimeFormat::Auto), Some(1_795_932_001_000));
        assert_eq!(t("1795932001.5", TimeFormat::Auto), Some(1_795_932_001_500));
        assert_eq!(
            t("1795932001500", TimeFormat::Auto),
            Some(1_795_932_001_500)
        );
        assert_eq!(
            t("\"1795932001500000\"", TimeFormat::Auto),
            Some(1_795_932_001_500)
        );
        assert_eq!(
            t("1795932001500000000", TimeFormat::Auto),
            Some(1_795_932_001_500)
        );
        assert_eq!(
            t("1795932001500", TimeFormat::UnixMs),
            Some(1_795_932_001_500)
        );
        assert_eq!(
            t("\"2026-11-26T06:00:01.5+01:00\"", TimeFormat::Auto),
            Some(1_795_669_201_500)
        );
        assert_eq!(t("\"yesterday\"", TimeFormat::Auto), None);
        assert_eq!(t("-5", TimeFormat::UnixS), None);
        assert_eq!(t("1e300", TimeFormat::Auto), None);
    }
}

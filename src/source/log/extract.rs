//! Turns log lines into series: parses a line (JSON, or text through a regex with named
//! captures), applies the `[[logs.metric]]` and `[[logs.errors]]` rules, and aggregates until
//! the next flush. Nothing here allocates per line on the common path: series are found by
//! their label values in a scratch buffer, events go into the open interval's sketch.

use std::borrow::Cow;
use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;
use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use smallvec::SmallVec;

use super::errors::{self, ErrorSeen};
use crate::config::{
    FieldMatch, FieldPath, LineParse, LogMetric, LogMetricKind, LogSource, Pattern, TimeFormat,
};
use crate::metrics::{LogCounts, Reject};
use crate::series::{Labels, OVERFLOW, Sample, SeriesKey};
use crate::store::bucket::Bucket;
use crate::store::distinct::{DistinctSeen, HOUR_MS, Sketch};

use super::sessions::SessionState;

/// An error sighting is dated at most this far after the line's arrival (the store refuses
/// points further ahead too).
const MAX_AHEAD_MS: i64 = 3_600_000;
/// Label values and error messages are cut to this many bytes.
const MAX_LABEL_BYTES: usize = 256;

/// What a flush hands to the store.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Interval summaries of counter and distribution series, merged into the store's.
    pub events: Vec<(SeriesKey, Bucket)>,
    /// The newest value of each gauge series.
    pub gauges: Vec<Sample>,
    pub errors: Vec<ErrorSeen>,
    /// The distinct values of sketched labels, per hour.
    pub distinct: Vec<DistinctSeen>,
    pub counts: LogCounts,
}

impl Extracted {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.gauges.is_empty()
            && self.errors.is_empty()
            && self.distinct.is_empty()
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
                    Some(b'"') => {
                        // The parser checked the string; without escapes it is its own text.
                        let inner = &s[1..s.len() - 1];
                        if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
                            Some(Cow::Borrowed(inner))
                        } else {
                            serde_json::from_str::<String>(s).ok().map(Cow::Owned)
                        }
                    }
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

/// Collects the values of the wanted keys of a JSON object, skipping the others without
/// keeping them.
struct Collect<'w, 'a> {
    wanted: &'w [String],
    out: &'w mut Fields<'a>,
}

/// The wanted fields of a JSON object, by their place in the wanted list; most lines have a
/// handful, kept off the heap.
type Fields<'a> = SmallVec<[(usize, &'a RawValue); 8]>;

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
            match self.wanted.iter().position(|x| *x == *k) {
                Some(i) => {
                    let v: &'de RawValue = map.next_value()?;
                    self.out.push((i, v));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Parses `text` as a JSON object into `out`; false when it is not one.
fn collect_object<'a>(text: &'a str, wanted: &[String], out: &mut Fields<'a>) -> bool {
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
    Json(Fields<'a>),
    Text(SmallVec<[(&'a str, &'a str); 8]>),
}

impl<'a> Doc<'a> {
    /// The field at `path`; `wanted` is the place of the path's first key in the list the
    /// line was parsed with, which finds it without comparing names.
    fn get(&self, path: &FieldPath, wanted: usize) -> Option<Val<'a>> {
        let (first, rest) = path.0.split_first()?;
        let mut v = match self {
            Doc::Json(fields) => fields
                .iter()
                .find(|(i, _)| *i == wanted)
                .map(|(_, v)| Val::Json(v))?,
            Doc::Text(fields) => fields
                .iter()
                .find(|(k, _)| *k == first)
                .map(|(_, v)| Val::Text(v))?,
        };
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
            let mut fields = Fields::new();
            let wanted = [key.to_string()];
            collect_object(text, &wanted, &mut fields);
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

/// A condition on one field, by the field's number in [`Plan::paths`].
enum Test {
    Text(String),
    Number(f64),
    Regex(regex::Regex),
    /// A regex that is a plain literal after `^`: tested without the regex engine.
    Prefix(String),
    /// A regex that is a plain literal.
    Contains(Box<memchr::memmem::Finder<'static>>),
}

impl Test {
    /// The cheapest test equal to matching `re`.
    fn of_regex(re: &regex::Regex) -> Test {
        use regex_syntax::hir::{HirKind, Look};
        let literal = |h: &regex_syntax::hir::Hir| match h.kind() {
            HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().map(str::to_string),
            _ => None,
        };
        let Ok(hir) = regex_syntax::Parser::new().parse(re.as_str()) else {
            return Test::Regex(re.clone());
        };
        match hir.kind() {
            HirKind::Literal(_) => match literal(&hir) {
                Some(l) => Test::Contains(Box::new(
                    memchr::memmem::Finder::new(l.as_bytes()).into_owned(),
                )),
                None => Test::Regex(re.clone()),
            },
            HirKind::Concat(parts)
                if parts.len() == 2 && matches!(parts[0].kind(), HirKind::Look(Look::Start)) =>
            {
                match literal(&parts[1]) {
                    Some(l) => Test::Prefix(l),
                    None => Test::Regex(re.clone()),
                }
            }
            _ => Test::Regex(re.clone()),
        }
    }

    fn same(&self, other: &Test) -> bool {
        match (self, other) {
            (Test::Text(a), Test::Text(b)) | (Test::Prefix(a), Test::Prefix(b)) => a == b,
            (Test::Number(a), Test::Number(b)) => a == b,
            (Test::Regex(a), Test::Regex(b)) => a.as_str() == b.as_str(),
            (Test::Contains(a), Test::Contains(b)) => a.needle() == b.needle(),
            _ => false,
        }
    }
}

/// A metric's conditions, value and label fields, by number.
struct PlannedMetric {
    conds: Vec<usize>,
    value: Option<usize>,
    labels: Vec<usize>,
}

/// The rules with every distinct field path and condition numbered once, so that a line
/// reads each field and tests each condition at most once however many rules use it.
struct Plan {
    paths: Vec<FieldPath>,
    conds: Vec<(usize, Test)>,
    metrics: Vec<PlannedMetric>,
    /// (conditions, message field) of each `[[logs.errors]]`.
    errors: Vec<(Vec<usize>, usize)>,
    timestamp: Option<(usize, TimeFormat)>,
    /// `[logs.sessions]`: the session id field, and the conditions of each `count`.
    sessions: Option<(usize, Vec<Vec<usize>>)>,
}

impl Plan {
    fn new(cfg: &LogSource) -> Plan {
        let mut plan = Plan {
            paths: Vec::new(),
            conds: Vec::new(),
            metrics: Vec::new(),
            errors: Vec::new(),
            timestamp: None,
            sessions: None,
        };
        for m in &cfg.metrics {
            let conds = plan.conds_of(&m.matches);
            let value = m.value.as_ref().map(|p| plan.path(p));
            let labels = m.labels.iter().map(|(_, p)| plan.path(p)).collect();
            plan.metrics.push(PlannedMetric {
                conds,
                value,
                labels,
            });
        }
        for e in &cfg.errors {
            let conds = plan.conds_of(&e.matches);
            let message = plan.path(&e.message);
            plan.errors.push((conds, message));
        }
        plan.timestamp = cfg.timestamp.as_ref().map(|(p, f)| (plan.path(p), *f));
        if let Some(s) = &cfg.sessions {
            let id = plan.path(&s.id);
            let counts = s.counts.iter().map(|c| plan.conds_of(&c.matches)).collect();
            plan.sessions = Some((id, counts));
        }
        plan
    }

    fn path(&mut self, p: &FieldPath) -> usize {
        match self.paths.iter().position(|q| q == p) {
            Some(i) => i,
            None => {
                self.paths.push(p.clone());
                self.paths.len() - 1
            }
        }
    }

    fn conds_of(&mut self, matches: &[FieldMatch]) -> Vec<usize> {
        matches
            .iter()
            .map(|c| {
                let (path, test) = match c {
                    FieldMatch::Equals(p, t) => (self.path(p), Test::Text(t.clone())),
                    FieldMatch::EqualsNumber(p, n) => (self.path(p), Test::Number(*n)),
                    FieldMatch::Regex(p, Pattern(r)) => (self.path(p), Test::of_regex(r)),
                };
                let same = |(q, t): &(usize, Test)| *q == path && t.same(&test);
                match self.conds.iter().position(same) {
                    Some(i) => i,
                    None => {
                        self.conds.push((path, test));
                        self.conds.len() - 1
                    }
                }
            })
            .collect()
    }
}

/// The fields of one line as the rules read them: looked up in the inner document
/// (`json_in`) first, then in the line itself. Finding a field again costs less than
/// remembering it; conditions (regexes) are remembered.
struct View<'v, 'a: 'v, 'b: 'v, 'd> {
    outer: &'d Doc<'a>,
    inner: Option<&'d Doc<'b>>,
    paths: &'d [FieldPath],
    /// Per path: the place of its first key in the wanted list.
    first: &'d [usize],
    /// Bit `c`: condition `c` was tested (the first 64 conditions are remembered).
    tested: u64,
    /// Bit `c`: condition `c` holds.
    held: u64,
    _v: std::marker::PhantomData<&'v ()>,
}

impl<'v> View<'v, '_, '_, '_> {
    fn val(&self, i: usize) -> Option<Val<'v>> {
        let (path, w) = (&self.paths[i], self.first[i]);
        let inner: Option<Val<'v>> = self.inner.and_then(|d| d.get(path, w));
        inner.or_else(|| self.outer.get(path, w))
    }

    fn text(&self, i: usize) -> Option<Cow<'v, str>> {
        self.val(i).and_then(Val::text)
    }

    fn holds(&mut self, plan: &Plan, conds: &[usize]) -> bool {
        conds.iter().all(|&c| {
            let bit = 1u64.checked_shl(c as u32).unwrap_or(0);
            if self.tested & bit != 0 {
                return self.held & bit != 0;
            }
            let (path, test) = &plan.conds[c];
            let ok = match test {
                Test::Text(want) => self.text(*path).is_some_and(|t| t == want.as_str()),
                Test::Regex(re) => self.text(*path).is_some_and(|t| re.is_match(&t)),
                Test::Prefix(p) => self.text(*path).is_some_and(|t| t.starts_with(p.as_str())),
                Test::Contains(f) => self
                    .text(*path)
                    .is_some_and(|t| f.find(t.as_bytes()).is_some()),
                Test::Number(want) => self
                    .val(*path)
                    .and_then(Val::number)
                    .is_some_and(|n| n == *want),
            };
            self.tested |= bit;
            if ok {
                self.held |= bit;
            }
            ok
        })
    }
}

/// A label set not seen for this long is forgotten (its series stays in the store), so that
/// a burst of made-up label values does not hold `max_series` for good.
const SERIES_IDLE_MS: i64 = 3_600_000;
/// How often idle label sets are looked for.
const SWEEP_EVERY_MS: i64 = 60_000;

/// One series a metric made: its key, open intervals (events) or newest value (gauges).
struct Series {
    key: SeriesKey,
    /// Its label values as `MetricState::slots` knows them (`\0`-separated); empty for an
    /// overflow series or a free slot.
    label_key: Box<str>,
    /// When a line last fed it (arrival time).
    seen_ms: i64,
    buckets: Vec<Bucket>,
    /// Lines per interval start of a counter without `value` (each counts 1): kept as
    /// numbers, made into buckets at the flush.
    ones: Vec<(i64, u64)>,
    gauge: Option<(i64, f64)>,
}

#[derive(Default)]
struct MetricState {
    slots: FxHashMap<Box<str>, usize>,
    overflow: Option<usize>,
    /// Slots to evict when the metric is full, least recently seen last, each with the time
    /// it was seen when chosen (a slot seen since is no longer a candidate).
    victims: Vec<(usize, i64)>,
    /// The label values and series of the last line: most lines repeat them.
    last: Option<(String, usize)>,
}

/// The last RFC 3339 time read without its fraction of a second, and its milliseconds:
/// lines of one second share it.
#[derive(Default)]
struct TimeCache {
    key: String,
    ms: i64,
}

/// One log source's rules and what they gathered since the last flush.
pub struct Extractor {
    cfg: LogSource,
    plan: Plan,
    /// First keys of every field path the rules read (the only ones parsed).
    wanted: Vec<String>,
    /// Per path of the plan: the place of its first key in `wanted`.
    first: Vec<usize>,
    /// The place of `json_in`'s first key in `wanted`.
    json_in_first: usize,
    interval_ms: i64,
    metrics: Vec<MetricState>,
    series: Vec<Series>,
    /// Series with something to flush.
    dirty: Vec<usize>,
    errors: FxHashMap<Box<str>, ErrorSeen>,
    /// Sketches of labels' distinct values since the last flush: (metric, label's place
    /// among the metric's labels, hour start).
    sketches: FxHashMap<(usize, usize, i64), Sketch>,
    counts: LogCounts,
    scratch: String,
    time_cache: TimeCache,
    /// Slots of series forgotten for being idle, to be reused.
    free: Vec<usize>,
    /// The newest arrival time seen, and when idle label sets were last looked for.
    newest_ms: i64,
    swept_ms: i64,
    sessions: Option<SessionState>,
}

impl Extractor {
    /// `interval_ms` is the store's distribution interval: events are summed per interval.
    pub fn new(cfg: &LogSource, interval_ms: i64) -> Extractor {
        let plan = Plan::new(cfg);
        let mut wanted: Vec<String> = Vec::new();
        for p in plan.paths.iter().chain(&cfg.json_in) {
            if let Some(first) = p.0.first()
                && !wanted.contains(first)
            {
                wanted.push(first.clone());
            }
        }
        let place = |p: &FieldPath| {
            p.0.first()
                .and_then(|k| wanted.iter().position(|w| w == k))
                .unwrap_or(usize::MAX)
        };
        let first = plan.paths.iter().map(place).collect();
        let json_in_first = cfg.json_in.as_ref().map(place).unwrap_or(usize::MAX);
        Extractor {
            first,
            json_in_first,
            metrics: cfg.metrics.iter().map(|_| MetricState::default()).collect(),
            cfg: cfg.clone(),
            plan,
            wanted,
            interval_ms: interval_ms.max(1),
            series: Vec::new(),
            dirty: Vec::new(),
            errors: FxHashMap::default(),
            sketches: FxHashMap::default(),
            counts: LogCounts::default(),
            scratch: String::new(),
            time_cache: TimeCache::default(),
            free: Vec::new(),
            newest_ms: 0,
            swept_ms: 0,
            sessions: cfg
                .sessions
                .as_ref()
                .map(|s| SessionState::new(s, interval_ms)),
        }
    }

    /// Lines since the last flush.
    pub fn pending_lines(&self) -> u64 {
        self.counts.lines
    }

    /// Whether a flush would hand over anything: lines, or sessions that ended.
    pub fn has_pending(&self) -> bool {
        self.counts.lines > 0 || self.sessions.as_ref().is_some_and(SessionState::has_ended)
    }

    /// Ends the sessions idle by the wall clock `now`, once the source has had no line for
    /// their idle time; the next flush writes them.
    pub fn tick(&mut self, now: i64) {
        if let Some(s) = &mut self.sessions {
            s.tick(now, self.newest_ms);
        }
    }

    pub fn reject(&mut self, why: Reject) {
        self.counts.lines += 1;
        self.counts.reject(why);
    }

    /// Reads one line (without its newline). `arrival_ms` stands in for a missing time.
    pub fn line(&mut self, bytes: &[u8], arrival_ms: i64) {
        let Extractor {
            cfg,
            plan,
            wanted,
            first,
            json_in_first,
            interval_ms,
            metrics: states,
            series,
            dirty,
            errors,
            sketches,
            counts,
            scratch,
            time_cache,
            free,
            newest_ms,
            swept_ms: _,
            sessions,
        } = self;
        counts.lines += 1;
        *newest_ms = (*newest_ms).max(arrival_ms);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.len() > cfg.max_line_bytes {
            counts.reject(Reject::TooLong);
            return;
        }
        // One check of the whole line (with SIMD) costs less than the parser's checks of each
        // string.
        let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
            counts.reject(Reject::NotUtf8);
            return;
        };
        let doc = match &cfg.parse {
            LineParse::Json => {
                let mut fields = Fields::new();
                if !collect_object(text, wanted, &mut fields) {
                    counts.reject(Reject::NotJson);
                    return;
                }
                Doc::Json(fields)
            }
            LineParse::Text(Pattern(re)) => {
                let Some(caps) = re.captures(text) else {
                    counts.reject(Reject::NoPatternMatch);
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
            .and_then(|p| doc.get(p, *json_in_first))
            .and_then(Val::text);
        let inner = inner_text.as_deref().and_then(|t| {
            let mut f = Fields::new();
            collect_object(t, wanted, &mut f).then_some(Doc::Json(f))
        });
        let mut view = View {
            outer: &doc,
            inner: inner.as_ref(),
            paths: &plan.paths,
            first,
            tested: 0,
            held: 0,
            _v: std::marker::PhantomData,
        };
        let ts = match plan.timestamp {
            None => arrival_ms,
            Some((path, format)) => match view
                .val(path)
                .and_then(|v| parse_time(v, format, time_cache))
            {
                Some(t) => t,
                None => {
                    counts.bad_timestamps += 1;
                    arrival_ms
                }
            },
        };
        let mut built_for: Option<&[usize]> = None;
        for (m, planned) in plan.metrics.iter().enumerate() {
            if !view.holds(plan, &planned.conds) {
                continue;
            }
            let value = match planned.value {
                None => 1.0,
                Some(p) => match view.val(p).and_then(Val::number) {
                    Some(v) => v,
                    None => {
                        counts.bad_values += 1;
                        continue;
                    }
                },
            };
            let metric = &cfg.metrics[m];
            // The series of this line's label values (often those of the metric before).
            if built_for != Some(&planned.labels[..]) {
                build_key(&mut view, &planned.labels, scratch);
                built_for = Some(&planned.labels[..]);
            }
            // Every value of a label a report counts, whether or not it keeps a series.
            if !metric.sketch.is_empty() {
                let hour = ts.div_euclid(HOUR_MS) * HOUR_MS;
                for &i in &metric.sketch {
                    if let Some(v) = scratch.split('\u{0}').nth(i).filter(|v| !v.is_empty()) {
                        sketches.entry((m, i, hour)).or_default().insert(v);
                    }
                }
            }
            let state = &mut states[m];
            let slot = match &mut state.last {
                Some((key, slot)) if key == scratch => {
                    if state.overflow == Some(*slot) {
                        counts.overflowed += 1;
                    }
                    *slot
                }
                _ => {
                    let slot = match state.slots.get(scratch.as_str()) {
                        Some(&slot) => slot,
                        None => new_series(metric, state, series, free, scratch, counts),
                    };
                    let (key, last) = state.last.get_or_insert_with(Default::default);
                    key.clone_from(scratch);
                    *last = slot;
                    slot
                }
            };
            let s = &mut series[slot];
            s.seen_ms = arrival_ms;
            let fresh = s.buckets.is_empty() && s.ones.is_empty() && s.gauge.is_none();
            if metric.kind == LogMetricKind::Gauge {
                if s.gauge.is_none_or(|(t, _)| ts >= t) {
                    s.gauge = Some((ts, value));
                }
            } else if planned.value.is_none() {
                let start = ts.div_euclid(*interval_ms) * *interval_ms;
                match s.ones.iter_mut().rev().find(|(t, _)| *t == start) {
                    Some((_, n)) => *n += 1,
                    None => s.ones.push((start, 1)),
                }
            } else {
                let start = ts.div_euclid(*interval_ms) * *interval_ms;
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
                dirty.push(slot);
            }
        }
        if let (Some(state), Some((id, count_conds))) = (sessions.as_mut(), &plan.sessions)
            && let Some(session) = view.text(*id).filter(|s| !s.is_empty())
        {
            let session = cut(&session, MAX_LABEL_BYTES).to_string();
            let hits: Vec<bool> = count_conds.iter().map(|c| view.holds(plan, c)).collect();
            state.event(&session, ts, &hits, counts);
        }
        for (conds, message) in &plan.errors {
            if !view.holds(plan, conds) {
                continue;
            }
            let Some(message) = view.text(*message) else {
                continue;
            };
            let message = cut(&message, errors::MAX_MESSAGE_BYTES);
            let pattern = errors::normalise(message);
            // A line dated far ahead would hold the type's last sighting there for good.
            let ts = ts.min(arrival_ms.saturating_add(MAX_AHEAD_MS));
            let room = errors.len() < errors::MAX_PER_FLUSH;
            match errors.entry(pattern.into_boxed_str()) {
                Entry::Occupied(mut o) => o.get_mut().add(message, ts),
                Entry::Vacant(v) if room => {
                    let seen = errors::first_seen(&cfg.name, v.key(), message, ts);
                    v.insert(seen);
                }
                Entry::Vacant(_) => counts.errors_dropped += 1,
            }
        }
    }

    /// Hands over what was gathered since the last flush.
    pub fn flush(&mut self) -> Extracted {
        let mut out = Extracted::default();
        for slot in self.dirty.drain(..) {
            let s = &mut self.series[slot];
            for b in s.buckets.drain(..) {
                out.events.push((s.key.clone(), b));
            }
            for (start, n) in s.ones.drain(..) {
                out.events
                    .push((s.key.clone(), Bucket::repeated(start, 1.0, n)));
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
        for ((m, i, hour_ms), sketch) in self.sketches.drain() {
            let metric = &self.cfg.metrics[m];
            out.distinct.push(DistinctSeen {
                metric: metric.name.clone(),
                label: metric.labels[i].0.clone(),
                hour_ms,
                sketch,
            });
        }
        if let Some(sessions) = &mut self.sessions {
            self.counts.sessions_open = Some(sessions.flush(&mut out.events));
        }
        out.counts = std::mem::take(&mut self.counts);
        if self.newest_ms.saturating_sub(self.swept_ms) >= SWEEP_EVERY_MS {
            self.swept_ms = self.newest_ms;
            self.forget_idle();
        }
        out
    }

    /// Forgets the label sets not seen for `SERIES_IDLE_MS`; their slots are reused. Runs
    /// right after a flush, when no series holds data.
    fn forget_idle(&mut self) {
        let before = self.newest_ms.saturating_sub(SERIES_IDLE_MS);
        for state in &mut self.metrics {
            let series = &self.series;
            let idle: Vec<usize> = state
                .slots
                .values()
                .copied()
                .filter(|&slot| series[slot].seen_ms < before)
                .collect();
            for slot in idle {
                state.slots.remove(&self.series[slot].label_key);
                if state.last.as_ref().is_some_and(|(_, l)| *l == slot) {
                    state.last = None;
                }
                self.series[slot].label_key = Box::from("");
                self.free.push(slot);
            }
            state.victims.clear();
        }
    }
}

/// Writes the label values of `labels` into `key`, each followed by NUL (a NUL inside a
/// value becomes U+FFFD).
fn build_key(view: &mut View<'_, '_, '_, '_>, labels: &[usize], key: &mut String) {
    key.clear();
    for &p in labels {
        if let Some(v) = view.text(p) {
            let v = cut(&v, MAX_LABEL_BYTES);
            if v.as_bytes().contains(&0) {
                key.push_str(&v.replace('\u{0}', "\u{FFFD}"));
            } else {
                key.push_str(v);
            }
        }
        key.push('\u{0}');
    }
}

/// Makes the series of `metric` for the label values in `scratch` (`\0`-separated). Once the
/// metric has `max_series`, the least recently seen label set that holds no unflushed data
/// makes room; only when every one does (more label sets in one flush than `max_series`)
/// does the line go to the overflow series.
fn new_series(
    metric: &LogMetric,
    state: &mut MetricState,
    series: &mut Vec<Series>,
    free: &mut Vec<usize>,
    scratch: &str,
    counts: &mut LogCounts,
) -> usize {
    let labels = |values: &str| -> Labels {
        metric
            .labels
            .iter()
            .zip(values.split('\u{0}'))
            .filter(|(_, v)| !v.is_empty())
            .map(|((name, _), v)| (name.clone(), v.to_string()))
            .collect()
    };
    let holds_data = |s: &Series| !(s.buckets.is_empty() && s.ones.is_empty() && s.gauge.is_none());
    if state.slots.len() >= metric.max_series {
        let victim = evict(state, series, &holds_data);
        let Some(slot) = victim else {
            counts.overflowed += 1;
            if let Some(slot) = state.overflow {
                return slot;
            }
            let slot = series.len();
            series.push(Series {
                key: SeriesKey {
                    name: metric.name.clone(),
                    labels: metric
                        .labels
                        .iter()
                        .map(|(name, _)| (name.clone(), OVERFLOW.to_string()))
                        .collect(),
                },
                label_key: Box::from(""),
                seen_ms: 0,
                buckets: Vec::new(),
                ones: Vec::new(),
                gauge: None,
            });
            state.overflow = Some(slot);
            return slot;
        };
        counts.evicted += 1;
        let s = &mut series[slot];
        s.key.labels = labels(scratch);
        s.label_key = scratch.into();
        state.slots.insert(scratch.into(), slot);
        return slot;
    }
    let key = SeriesKey {
        name: metric.name.clone(),
        labels: labels(scratch),
    };
    let slot = match free.pop() {
        Some(slot) => {
            let s = &mut series[slot];
            s.key = key;
            s.label_key = scratch.into();
            slot
        }
        None => {
            series.push(Series {
                key,
                label_key: scratch.into(),
                seen_ms: 0,
                buckets: Vec::new(),
                ones: Vec::new(),
                gauge: None,
            });
            series.len() - 1
        }
    };
    state.slots.insert(scratch.into(), slot);
    slot
}

/// Takes the least recently seen label set of a full metric out of its map, and gives its
/// slot; `None` when every one holds unflushed data. Candidates are chosen a sixteenth of
/// the metric at a time, so a stream of new label sets costs one scan per many evictions.
fn evict(
    state: &mut MetricState,
    series: &[Series],
    holds_data: &dyn Fn(&Series) -> bool,
) -> Option<usize> {
    for _ in 0..2 {
        while let Some((slot, seen)) = state.victims.pop() {
            let s = &series[slot];
            // Seen again since it was chosen, or holding data now: not this one.
            if s.seen_ms != seen || holds_data(s) || state.slots.get(&s.label_key) != Some(&slot) {
                continue;
            }
            state.slots.remove(&s.label_key);
            if state.last.as_ref().is_some_and(|(_, l)| *l == slot) {
                state.last = None;
            }
            return Some(slot);
        }
        let mut candidates: Vec<(usize, i64)> = state
            .slots
            .values()
            .map(|&slot| (slot, series[slot].seen_ms))
            .filter(|&(slot, _)| !holds_data(&series[slot]))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let take = (state.slots.len() / 16).max(1).min(candidates.len());
        candidates.select_nth_unstable_by_key(take - 1, |&(_, seen)| seen);
        candidates.truncate(take);
        // Least recently seen last, for `pop`.
        candidates.sort_unstable_by_key(|&(_, seen)| std::cmp::Reverse(seen));
        state.victims = candidates;
    }
    None
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
fn parse_time(v: Val<'_>, format: TimeFormat, cache: &mut TimeCache) -> Option<i64> {
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
        (0.0..MAX_MS as f64).contains(&ms).then_some(ms as i64)
    };
    match format {
        TimeFormat::Rfc3339 => rfc3339_cached(&v.text()?, cache),
        TimeFormat::Auto => {
            let text = v.text()?;
            match text.as_bytes().get(4) {
                // `2026-…`: a date, not a number.
                Some(b'-') => rfc3339_cached(&text, cache),
                _ => match v.number() {
                    Some(n) => from_number(n, format),
                    None => rfc3339_cached(&text, cache),
                },
            }
        }
        f => from_number(v.number()?, f),
    }
}

/// The end of year 9999 in milliseconds since 1970.
const MAX_MS: i64 = 253_402_300_800_000;

fn rfc3339(text: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let ms = t.timestamp_millis();
    (0..MAX_MS).contains(&ms).then_some(ms)
}

/// [`rfc3339`], parsing the date, time and zone of `YYYY-MM-DDTHH:MM:SS.fff…zone` once per
/// second and zone: only the fraction differs between the lines of one second.
fn rfc3339_cached(text: &str, cache: &mut TimeCache) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() > 20 && b[19] == b'.' && text.is_char_boundary(19) {
        let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            let zone = &text[20 + digits..];
            let mut frac: i64 = 0;
            for d in b[20..20 + digits.min(3)].iter() {
                frac = frac * 10 + i64::from(d - b'0');
            }
            for _ in digits..3 {
                frac *= 10;
            }
            let hit = cache.key.len() == 19 + zone.len()
                && cache.key.as_bytes()[..19] == b[..19]
                && cache.key.as_bytes()[19..] == *zone.as_bytes();
            if !hit {
                cache.key.clear();
                cache.key.push_str(&text[..19]);
                cache.key.push_str(zone);
                match rfc3339(&cache.key) {
                    Some(ms) => cache.ms = ms,
                    None => {
                        cache.key.clear();
                        return None;
                    }
                }
            }
            let ms = cache.ms + frac;
            return (ms < MAX_MS).then_some(ms);
        }
    }
    rfc3339(text)
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
        // Arriving a minute after the lines' own times.
        let arrival = rfc3339("2026-11-26T06:01:00Z").unwrap();
        for l in lines {
            x.line(l.as_bytes(), arrival);
        }
        x.line(b"{\"event\":\"api_segmentation_\xff\"}", arrival);
        let out = x.flush();
        assert_eq!(out.counts.lines, 8);
        assert_eq!(out.counts.rejected(Reject::NotJson), 2);
        assert_eq!(out.counts.rejected(Reject::NotUtf8), 1);
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
    fn literal_regexes_skip_the_regex_engine_and_mean_the_same() {
        let re = |p: &str| regex::Regex::new(p).unwrap();
        assert!(
            matches!(Test::of_regex(&re("^api_segmentation_")), Test::Prefix(p) if p == "api_segmentation_")
        );
        assert!(matches!(Test::of_regex(&re("timeout")), Test::Contains(_)));
        assert!(matches!(Test::of_regex(&re("^api_(a|b)")), Test::Regex(_)));
        assert!(matches!(Test::of_regex(&re("(?i)^api")), Test::Regex(_)));
        assert!(matches!(Test::of_regex(&re("^a.b")), Test::Regex(_)));
        assert!(matches!(Test::of_regex(&re("(?m)^api")), Test::Regex(_)));
        assert!(matches!(Test::of_regex(&re("api$")), Test::Regex(_)));
    }

    /// Made-up label values fill a metric once; later label sets take the place of the
    /// least recently seen instead of landing in the overflow series for good.
    #[test]
    fn a_full_metric_forgets_its_least_recently_seen_label_set() {
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
        let users = |out: &Extracted| -> Vec<String> {
            let mut u: Vec<String> = out
                .events
                .iter()
                .map(|(k, _)| k.labels["user"].clone())
                .collect();
            u.sort();
            u
        };
        for u in ["u0", "u1", "u2"] {
            x.line(format!(r#"{{"user":"{u}"}}"#).as_bytes(), 1_000);
        }
        x.flush();
        x.line(br#"{"user":"u0"}"#, 2_000);
        x.line(br#"{"user":"u2"}"#, 2_500);
        x.flush();
        // u1 was seen least recently: u3 takes its place.
        x.line(br#"{"user":"u3"}"#, 3_000);
        x.line(br#"{"user":"u0"}"#, 3_000);
        let out = x.flush();
        assert_eq!(users(&out), ["u0", "u3"]);
        assert_eq!(out.counts.evicted, 1);
        assert_eq!(out.counts.overflowed, 0);
        // u1 comes back: u2 is now the least recently seen.
        x.line(br#"{"user":"u1"}"#, 4_000);
        let out = x.flush();
        assert_eq!(users(&out), ["u1"]);
        assert_eq!(out.counts.evicted, 1);
        assert_eq!(x.metrics[0].slots.len(), 3);
        let known: Vec<&str> = {
            let mut k: Vec<&str> = x.metrics[0]
                .slots
                .keys()
                .map(|k| k.trim_end_matches('\u{0}'))
                .collect();
            k.sort();
            k
        };
        assert_eq!(known, ["u0", "u1", "u3"]);
    }

    /// Label sets not seen for an hour are forgotten, and their room is free again.
    #[test]
    fn idle_label_sets_expire() {
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
        for u in ["u0", "u1", "u2"] {
            x.line(format!(r#"{{"user":"{u}"}}"#).as_bytes(), 1_000);
        }
        x.flush();
        let later = 1_000 + SERIES_IDLE_MS + SWEEP_EVERY_MS;
        x.line(br#"{"user":"u0"}"#, later);
        x.flush();
        assert_eq!(x.metrics[0].slots.len(), 1, "u1 and u2 expired");
        for u in ["u4", "u5"] {
            x.line(format!(r#"{{"user":"{u}"}}"#).as_bytes(), later + 1);
        }
        let out = x.flush();
        assert_eq!((out.counts.evicted, out.counts.overflowed), (0, 0));
        assert_eq!(out.events.len(), 2);
        assert_eq!(x.series.len(), 3, "the expired slots were reused");
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
        let mut cache = TimeCache::default();
        let mut t = |text: &str, f| {
            parse_time(
                Val::Json(serde_json::from_str(text).unwrap()),
                f,
                &mut cache,
            )
        };
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
        // The cache of a second: fractions and zones of one second, then another second.
        for (text, want) in [
            ("2026-11-26T06:00:01.5Z", 1_795_672_801_500),
            ("2026-11-26T06:00:01.25Z", 1_795_672_801_250),
            ("2026-11-26T06:00:01.123456Z", 1_795_672_801_123),
            ("2026-11-26T06:00:01.5+01:00", 1_795_669_201_500),
            ("2026-11-26T06:00:02.5Z", 1_795_672_802_500),
            ("2026-11-26T06:00:02Z", 1_795_672_802_000),
            ("2026-11-26T06:00:02.Z", -1),
            ("2026-11-26T06:00:61.5Z", -1),
        ] {
            let got = t(&format!("\"{text}\""), TimeFormat::Auto).unwrap_or(-1);
            assert_eq!(got, want, "{text}");
        }
    }
}

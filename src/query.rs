//! The one way to read measurements back: raw ranges, aggregates over a window and stepped
//! series, over the series a [`Selector`] matches. Rules, the HTTP API, reports and `sloguard
//! query` all call these functions on a store [`Snapshot`].
//!
//! A query reads the coarsest rollup tier that still answers it: for a stepped query, a tier
//! whose step divides the requested step; for a window aggregate, a tier much finer than the
//! window. The aligned middle of the window comes from that tier, the edges from finer tiers
//! and finally from raw data, so a percentile over a day merges a few dozen sketches rather
//! than thousands. Raw data is preferred for short windows it still covers.
//!
//! Pure functions of the snapshot and the time range: nothing here writes or looks at a clock.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde_json::{Value, json};

use crate::series::SeriesKey;
use crate::store::bucket::{Bucket, new_sketch};
use crate::store::{Kind, SeriesInfo, Snapshot, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "`{0}` is not a label matcher; write `label=value`, `label!=value`, `label=~regex` or `label!~regex`"
    )]
    Matcher(String),
    #[error("`{text}` is not a valid regex: {error}")]
    Regex { text: String, error: String },
    #[error(
        "`{0}` is not an aggregation; use avg, min, max, sum, count, rate, increase, last or a percentile such as p95 or p99.9"
    )]
    Agg(String),
    #[error("the time range is empty: `since` must be before `until`")]
    EmptyRange,
    #[error("times must lie between 1970 and the year 9999")]
    OutOfTime,
    #[error(
        "the range holds more than 5000000 raw points; narrow it, or ask for one value per step (--step)"
    )]
    TooManyPoints,
    #[error("the step must be between 1s and 3650d and give at most 11000 points over the range")]
    Step,
    #[error(
        "`{0}` is not a time; write `now`, a duration ago such as `24h`, or a time such as `2026-11-26T10:00:00Z`"
    )]
    Time(String),
    #[error("`{0}` is not a metric name")]
    Metric(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A query as the CLI and the HTTP API take it.
#[derive(Clone, Debug)]
pub struct Request {
    pub selector: Selector,
    pub from: i64,
    pub to: i64,
    pub agg: Option<Agg>,
    pub step: Option<i64>,
}

/// `now`, a duration ago (`24h`) or an RFC 3339 time, in ms since the epoch.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, QueryError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    if let Ok(d) = humantime::parse_duration(text) {
        // Further back than the epoch means from the epoch.
        return Ok(now_ms
            .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64)
            .max(0));
    }
    let t = humantime::parse_rfc3339_weak(text).map_err(|_| QueryError::Time(text.to_string()))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| QueryError::Time(text.to_string()))?
        .as_millis();
    Ok(ms.min(i64::MAX as u128) as i64)
}

impl Request {
    /// Parses the parts of a query: matchers as `label=value` etc., times as [`parse_time`],
    /// `agg` as [`Agg`], `step` as a duration.
    pub fn parse(
        metric: &str,
        matchers: &[String],
        since: &str,
        until: &str,
        agg: Option<&str>,
        step: Option<&str>,
        now_ms: i64,
    ) -> Result<Request, QueryError> {
        if !crate::series::valid_metric_name(metric) {
            return Err(QueryError::Metric(metric.to_string()));
        }
        let matchers = matchers
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<Matcher>, _>>()?;
        let step = match step {
            None => None,
            Some(s) => Some(
                humantime::parse_duration(s.trim())
                    .map_err(|_| QueryError::Step)?
                    .as_millis()
                    .min(i64::MAX as u128) as i64,
            ),
        };
        Ok(Request {
            selector: Selector::new(metric, matchers),
            from: parse_time(since, now_ms)?,
            to: parse_time(until, now_ms)?,
            agg: agg.map(str::parse).transpose()?,
            step,
        })
    }

    /// Runs the query: raw points without `agg` and `step`, one value per series with `agg`
    /// only, a stepped series with `step` (average unless `agg` says otherwise).
    pub fn run(&self, snap: &Snapshot) -> Result<Answer, QueryError> {
        let (sel, from, to) = (&self.selector, self.from, self.to);
        Ok(match (self.agg, self.step) {
            (None, None) => Answer::Points(range(snap, sel, from, to)?),
            (Some(agg), None) => Answer::Values(aggregate(snap, sel, agg, from, to)?),
            (agg, Some(step)) => {
                Answer::Points(stepped(snap, sel, agg.unwrap_or(Agg::Avg), from, to, step)?)
            }
        })
    }
}

/// What a query returns.
#[derive(Clone, Debug)]
pub enum Answer {
    Points(Vec<SeriesPoints>),
    Values(Vec<SeriesValue>),
}

impl Answer {
    pub fn to_json(&self) -> Value {
        match self {
            Answer::Points(p) => points_json(p),
            Answer::Values(v) => values_json(v),
        }
    }
}

/// How a label is matched.
#[derive(Clone, Debug)]
pub enum MatchOp {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

/// One condition on a label; a missing label has the value "".
#[derive(Clone, Debug)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
}

impl Matcher {
    fn holds(&self, key: &SeriesKey) -> bool {
        let value = key
            .labels
            .get(&self.label)
            .map(String::as_str)
            .unwrap_or("");
        match &self.op {
            MatchOp::Eq(v) => value == v,
            MatchOp::Ne(v) => value != v,
            MatchOp::Re(r) => r.is_match(value),
            MatchOp::NotRe(r) => !r.is_match(value),
        }
    }
}

fn anchored(text: &str) -> Result<Regex, QueryError> {
    Regex::new(&format!("^(?:{text})$")).map_err(|e| QueryError::Regex {
        text: text.to_string(),
        error: e.to_string(),
    })
}

impl FromStr for Matcher {
    type Err = QueryError;

    /// `label=value`, `label!=value`, `label=~regex` or `label!~regex`; regexes match the whole
    /// value, as in Prometheus.
    fn from_str(s: &str) -> Result<Matcher, QueryError> {
        let bad = || QueryError::Matcher(s.to_string());
        // A label name, then the operator right after it.
        let end = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map(|(i, _)| i)
            .ok_or_else(bad)?;
        let (label, rest) = s.split_at(end);
        let op = if let Some(v) = rest.strip_prefix("!=") {
            MatchOp::Ne(v.to_string())
        } else if let Some(v) = rest.strip_prefix("=~") {
            MatchOp::Re(anchored(v)?)
        } else if let Some(v) = rest.strip_prefix("!~") {
            MatchOp::NotRe(anchored(v)?)
        } else if let Some(v) = rest.strip_prefix('=') {
            MatchOp::Eq(v.to_string())
        } else {
            return Err(bad());
        };
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Matcher {
            label: label.to_string(),
            op,
        })
    }
}

/// A metric name and label matchers.
#[derive(Clone, Debug)]
pub struct Selector {
    pub name: String,
    pub matchers: Vec<Matcher>,
}

impl Selector {
    pub fn new(name: &str, matchers: Vec<Matcher>) -> Selector {
        Selector {
            name: name.to_string(),
            matchers,
        }
    }

    pub fn matches(&self, key: &SeriesKey) -> bool {
        key.name == self.name && self.matchers.iter().all(|m| m.holds(key))
    }

    /// The series of `snap` this selector picks.
    pub fn select<'s>(&self, snap: &'s Snapshot) -> Vec<&'s SeriesInfo> {
        let mut out: Vec<&SeriesInfo> = snap
            .series()
            .iter()
            .filter(|i| self.matches(&i.key))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// What to compute over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    /// Per second: the counter increase (gauges) or the observations (distributions).
    Rate,
    /// The counter increase, resets counted from zero (gauges), or the observations
    /// (distributions).
    Increase,
    Last,
    /// A quantile between 0 and 1.
    Quantile(f64),
}

/// The name `Agg` is written as in a query or a rule: `avg`, `increase`, `p95`.
pub fn agg_name(agg: Agg) -> String {
    match agg {
        Agg::Avg => "avg".into(),
        Agg::Min => "min".into(),
        Agg::Max => "max".into(),
        Agg::Sum => "sum".into(),
        Agg::Count => "count".into(),
        Agg::Rate => "rate".into(),
        Agg::Increase => "increase".into(),
        Agg::Last => "last".into(),
        Agg::Quantile(q) => format!("p{}", q * 100.0),
    }
}

impl FromStr for Agg {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Agg, QueryError> {
        Ok(match s {
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "sum" => Agg::Sum,
            "count" => Agg::Count,
            "rate" => Agg::Rate,
            "increase" => Agg::Increase,
            "last" => Agg::Last,
            p if p.starts_with('p') => {
                let q: f64 = p[1..].parse().map_err(|_| QueryError::Agg(s.to_string()))?;
                if !(0.0..=100.0).contains(&q) {
                    return Err(QueryError::Agg(s.to_string()));
                }
                Agg::Quantile(q / 100.0)
            }
            _ => return Err(QueryError::Agg(s.to_string())),
        })
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agg::Avg => f.write_str("avg"),
            Agg::Min => f.write_str("min"),
            Agg::Max => f.write_str("max"),
            Agg::Sum => f.write_str("sum"),
            Agg::Count => f.write_str("count"),
            Agg::Rate => f.write_str("rate"),
            Agg::Increase => f.write_str("increase"),
            Agg::Last => f.write_str("last"),
            Agg::Quantile(q) => write!(f, "p{}", q * 100.0),
        }
    }
}

/// The points of one series in a result.
#[derive(Clone, Debug)]
pub struct SeriesPoints {
    pub series: SeriesKey,
    /// (time ms, value), oldest first.
    pub points: Vec<(i64, f64)>,
}

/// One value per series.
#[derive(Clone, Debug)]
pub struct SeriesValue {
    pub series: SeriesKey,
    /// `None` when the series has no data in the window.
    pub value: Option<f64>,
}

/// `[{"metric", "labels", "points": [[ms, value], ...]}]`; a value that is not finite is null.
pub fn points_json(result: &[SeriesPoints]) -> Value {
    Value::Array(
        result
            .iter()
            .map(|s| {
                json!({
                    "metric": s.series.name,
                    "labels": s.series.labels,
                    "points": s.points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// `[{"metric", "labels", "value"}]`; no data, or a value that is not finite, is null.
pub fn values_json(result: &[SeriesValue]) -> Value {
    Value::Array(
        result
            .iter()
            .map(|s| json!({"metric": s.series.name, "labels": s.series.labels, "value": s.value}))
            .collect(),
    )
}

/// Data of one series gathered for a time range: raw points and buckets from rollups or
/// distribution intervals.
#[derive(Default)]
struct Gathered {
    points: Vec<(i64, f64)>,
    buckets: Vec<Bucket>,
    /// The last value before the range, from which a counter's increase is measured.
    prev: Option<f64>,
}

impl Gathered {
    /// The last value in time order: a point's, or a bucket's last.
    fn last_value(&self) -> Option<f64> {
        let p = self.points.last();
        let b = self.buckets.last();
        match (p, b) {
            (Some(p), Some(b)) if b.start > p.0 => Some(b.last),
            (Some(p), _) => Some(p.1),
            (None, Some(b)) => Some(b.last),
            (None, None) => None,
        }
    }
}

/// The last value of a gauge series before `from`, looking back an hour or one step of the
/// coarsest tier in use.
fn value_before(
    snap: &Snapshot,
    info: &SeriesInfo,
    raw_start: Option<i64>,
    from: i64,
    tiers: &[i64],
) -> Result<Option<f64>, StoreError> {
    let lookback = tiers.last().copied().unwrap_or(0).max(3_600_000);
    Ok(gather(
        snap,
        info,
        raw_start,
        from.saturating_sub(lookback),
        from,
        tiers,
    )?
    .last_value())
}

/// Tiers a query over a series whose raw data starts at `raw_start` may use, finest first.
fn usable_tiers(
    snap: &Snapshot,
    raw_start: Option<i64>,
    from: i64,
    to: i64,
    step: Option<i64>,
) -> Vec<i64> {
    let window = to - from;
    let before_raw = raw_start.is_none_or(|r| from < r);
    snap.layout()
        .tiers
        .iter()
        .map(|t| t.step_ms)
        .filter(|&s| match step {
            Some(step) => step % s == 0 && (step >= s * 2 || before_raw || window >= s * 12),
            // Reading a block costs more than a short run of raw points: only windows many
            // buckets wide, or older than the raw data, use a tier.
            None => window >= s * 12 || (before_raw && window >= s),
        })
        .collect()
}

fn ceil_to(t: i64, step: i64) -> i64 {
    let step = i128::from(step.max(1));
    let v = -((-i128::from(t)).div_euclid(step) * step);
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

use crate::store::tsdb::floor_to;

/// Fills `out` with the data of `info` in `[a, b)`: the middle from the coarsest of `tiers`
/// that has it, the edges from finer ones, the rest raw; what raw data no longer covers comes
/// from the finest tier that still has it.
fn cover(
    snap: &Snapshot,
    info: &SeriesInfo,
    raw_start: Option<i64>,
    a: i64,
    b: i64,
    tiers: &[i64],
    out: &mut Gathered,
) -> Result<(), StoreError> {
    if a >= b {
        return Ok(());
    }
    if let Some((&step, finer)) = tiers.split_last() {
        if let (Some(wm), Some(first)) = (
            snap.watermark(info.id, step)?,
            snap.first_rollup(info.id, step)?,
        ) {
            let lo = ceil_to(a, step).max(first);
            let hi = floor_to(b, step).min(wm);
            if lo < hi {
                cover(snap, info, raw_start, a, lo, finer, out)?;
                out.buckets.extend(snap.rollups(info.id, step, lo, hi)?);
                return cover(snap, info, raw_start, hi, b, finer, out);
            }
        }
        return cover(snap, info, raw_start, a, b, finer, out);
    }
    let raw_from = raw_start.map_or(b, |r| r.clamp(a, b));
    if a < raw_from {
        // Older than the raw data: the finest tier that has buckets there.
        for tier in &snap.layout().tiers {
            let buckets = snap.rollups(info.id, tier.step_ms, a, raw_from)?;
            if !buckets.is_empty() {
                out.buckets.extend(buckets);
                break;
            }
        }
    }
    if raw_from < b {
        match info.kind {
            Kind::Gauge => out.points.extend(snap.points(info.id, raw_from, b)?),
            Kind::Distribution => out.buckets.extend(snap.dist_buckets(info.id, raw_from, b)?),
        }
    }
    Ok(())
}

fn gather(
    snap: &Snapshot,
    info: &SeriesInfo,
    raw_start: Option<i64>,
    from: i64,
    to: i64,
    tiers: &[i64],
) -> Result<Gathered, StoreError> {
    let mut g = Gathered::default();
    cover(snap, info, raw_start, from, to, tiers, &mut g)?;
    g.buckets.sort_by_key(|b| b.start);
    Ok(g)
}

/// Whether `agg` on a series of `kind` is a counter's increase, measured from the value before
/// the window.
fn counts_increase(agg: Agg, kind: Kind) -> bool {
    kind == Kind::Gauge && matches!(agg, Agg::Increase | Agg::Rate)
}

/// Counter increase over values in time order; a drop is a reset, counted from zero.
fn increase(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    let mut any = false;
    for v in values {
        if let Some(p) = prev {
            any = true;
            total += if v >= p { v - p } else { v };
        }
        prev = Some(v);
    }
    any.then_some(total)
}

/// Computes `agg` over what was gathered for `[from, to)`.
fn apply(agg: Agg, kind: Kind, g: &Gathered, from: i64, to: i64) -> Option<f64> {
    let mut total = Bucket::empty(from, false);
    // Raw points and buckets interleave in time only at the edges; merge in time order.
    let mut stream: Vec<(i64, Option<f64>, Option<&Bucket>)> = g
        .points
        .iter()
        .map(|(t, v)| (*t, Some(*v), None))
        .chain(g.buckets.iter().map(|b| (b.start, None, Some(b))))
        .collect();
    stream.sort_by_key(|e| e.0);
    for (_, v, b) in &stream {
        match (v, b) {
            (Some(v), _) => total.observe(*v),
            (_, Some(b)) => total.merge_stats(b),
            _ => {}
        }
    }
    if total.is_empty() {
        return None;
    }
    let seconds = (to - from) as f64 / 1000.0;
    match agg {
        Agg::Avg => Some(total.sum / total.count),
        Agg::Min => Some(total.min),
        Agg::Max => Some(total.max),
        Agg::Sum => Some(total.sum),
        Agg::Count => Some(total.count),
        Agg::Last => Some(total.last),
        Agg::Increase | Agg::Rate => {
            let inc = match kind {
                Kind::Distribution => Some(total.count),
                Kind::Gauge => increase(g.prev.into_iter().chain(stream.iter().filter_map(
                    |(_, v, b)| match (v, b) {
                        (Some(v), _) => Some(*v),
                        (_, Some(b)) => Some(b.last),
                        _ => None,
                    },
                ))),
            }?;
            Some(if agg == Agg::Rate { inc / seconds } else { inc })
        }
        Agg::Quantile(q) => match kind {
            Kind::Distribution => {
                let mut sketch = new_sketch();
                for b in &g.buckets {
                    if let Some(s) = &b.sketch {
                        let _ = sketch.merge(s);
                    }
                }
                sketch.quantile(q).ok().flatten()
            }
            Kind::Gauge => {
                // Exact over raw points; a rollup bucket counts as its average, `count` times.
                let mut weighted: Vec<(f64, f64)> = g
                    .points
                    .iter()
                    .map(|(_, v)| (*v, 1.0))
                    .chain(g.buckets.iter().map(|b| (b.sum / b.count, b.count)))
                    .filter(|(v, w)| !v.is_nan() && *w > 0.0)
                    .collect();
                weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
                let n: f64 = weighted.iter().map(|w| w.1).sum();
                let rank = (q * n).ceil().max(1.0);
                let mut seen = 0.0;
                weighted.iter().find_map(|(v, w)| {
                    seen += w;
                    (seen >= rank).then_some(*v)
                })
            }
        },
    }
}

/// Times a query accepts: from the epoch to the end of year 9999, so that no window
/// arithmetic overflows.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// The longest step.
const MAX_STEP_MS: i64 = 3650 * 86_400_000;
/// The most raw points one `range` returns; beyond it, ask for a step.
pub const MAX_RAW_POINTS: usize = 5_000_000;

fn check_range(from: i64, to: i64) -> Result<(), QueryError> {
    if !(0..=MAX_TIME_MS).contains(&from) || !(0..=MAX_TIME_MS).contains(&to) {
        return Err(QueryError::OutOfTime);
    }
    if from >= to {
        return Err(QueryError::EmptyRange);
    }
    Ok(())
}

/// The raw points of every matching series in `[from, to)`. A distribution series gives the
/// average of each of its intervals.
pub fn range(
    snap: &Snapshot,
    sel: &Selector,
    from: i64,
    to: i64,
) -> Result<Vec<SeriesPoints>, QueryError> {
    check_range(from, to)?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for info in sel.select(snap) {
        let points: Vec<(i64, f64)> = match info.kind {
            Kind::Gauge => snap.points(info.id, from, to)?,
            Kind::Distribution => snap
                .dist_buckets(info.id, from, to)?
                .iter()
                .filter(|b| !b.is_empty())
                .map(|b| (b.start, b.sum / b.count))
                .collect(),
        };
        total += points.len();
        if total > MAX_RAW_POINTS {
            return Err(QueryError::TooManyPoints);
        }
        out.push(SeriesPoints {
            series: info.key.clone(),
            points,
        });
    }
    Ok(out)
}

/// `agg` over `[from, to)` for every matching series.
pub fn aggregate(
    snap: &Snapshot,
    sel: &Selector,
    agg: Agg,
    from: i64,
    to: i64,
) -> Result<Vec<SeriesValue>, QueryError> {
    check_range(from, to)?;
    let mut out = Vec::new();
    for info in sel.select(snap) {
        let raw_start = snap.first_raw(info.id, info.kind)?;
        let tiers = usable_tiers(snap, raw_start, from, to, None);
        let mut g = gather(snap, info, raw_start, from, to, &tiers)?;
        if counts_increase(agg, info.kind) {
            g.prev = value_before(snap, info, raw_start, from, &tiers)?;
        }
        out.push(SeriesValue {
            series: info.key.clone(),
            value: apply(agg, info.kind, &g, from, to),
        });
    }
    Ok(out)
}

/// `agg` over each `step` of `[from, to)`, windows aligned to multiples of `step` and labelled
/// with their start; windows without data are left out.
pub fn stepped(
    snap: &Snapshot,
    sel: &Selector,
    agg: Agg,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<SeriesPoints>, QueryError> {
    check_range(from, to)?;
    if !(1000..=MAX_STEP_MS).contains(&step) {
        return Err(QueryError::Step);
    }
    let from = floor_to(from, step);
    if (i128::from(to) - i128::from(from)) / i128::from(step) > 11_000 {
        return Err(QueryError::Step);
    }
    let mut out = Vec::new();
    for info in sel.select(snap) {
        let raw_start = snap.first_raw(info.id, info.kind)?;
        let tiers = usable_tiers(snap, raw_start, from, to, Some(step));
        let g = gather(snap, info, raw_start, from, to, &tiers)?;
        let mut points = Vec::new();
        let (mut pi, mut bi) = (0, 0);
        let mut w = from;
        let mut prev = if counts_increase(agg, info.kind) {
            value_before(snap, info, raw_start, from, &tiers)?
        } else {
            None
        };
        while w < to {
            let end = (w + step).min(to);
            let mut part = Gathered {
                prev,
                ..Gathered::default()
            };
            while pi < g.points.len() && g.points[pi].0 < end {
                part.points.push(g.points[pi]);
                pi += 1;
            }
            while bi < g.buckets.len() && g.buckets[bi].start < end {
                part.buckets.push(g.buckets[bi].clone());
                bi += 1;
            }
            if let Some(v) = apply(agg, info.kind, &part, w, end) {
                points.push((w, v));
            }
            prev = part.last_value().or(prev);
            w = end;
        }
        out.push(SeriesPoints {
            series: info.key.clone(),
            points,
        });
    }
    Ok(out)
}

/// A selector of `metric` whose labels equal `matchers`.
pub fn equal_selector(metric: &str, matchers: &BTreeMap<String, String>) -> Selector {
    let m = matchers
        .iter()
        .map(|(k, v)| Matcher {
            label: k.clone(),
            op: MatchOp::Eq(v.clone()),
        })
        .collect();
    Selector::new(metric, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Sample;
    use crate::store::{Batch, Layout, Store, Tier};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn s(name: &str, target: &str, t: i64, v: f64) -> Sample {
        Sample {
            series: SeriesKey::new(name, &[("target", target)]),
            ts_ms: t,
            value: v,
            note: None,
        }
    }

    /// Two days of a counter, an up series and latencies, compacted: queries that must use
    /// rollups and queries that must use raw data give the same answers as a direct
    /// computation.
    fn fixture() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_layout(Layout {
                raw_retention_ms: 7 * DAY,
                distribution_interval_ms: 10_000,
                tiers: vec![
                    Tier {
                        step_ms: MIN,
                        retention_ms: 30 * DAY,
                    },
                    Tier {
                        step_ms: HOUR,
                        retention_ms: 365 * DAY,
                    },
                ],
            })
            .unwrap();
        let t0 = 1000 * DAY;
        let end = t0 + 2 * DAY;
        let mut samples = Vec::new();
        let mut obs = Vec::new();
        let mut t = t0;
        let mut counter = 0.0;
        while t < end {
            let i = (t - t0) / 10_000;
            counter += 3.0;
            if i == 5000 {
                counter = 1.0; // a restart
            }
            samples.push(s("requests_total", "api", t, counter));
            samples.push(s(
                "probe_up",
                "api",
                t,
                if i % 100 == 0 { 0.0 } else { 1.0 },
            ));
            samples.push(s("probe_up", "web", t, 1.0));
            // Ten latencies per interval: 100..=109 ms, and 1000 ms every 50th interval.
            for k in 0..10 {
                let v = if i % 50 == 0 && k == 0 {
                    1000.0
                } else {
                    100.0 + k as f64
                };
                obs.push(s("latency_ms", "api", t + k, v));
            }
            t += 10_000;
        }
        store
            .write(&Batch {
                samples: &samples,
                observations: &obs,
                ..Batch::default()
            })
            .unwrap();
        store.compact(end).unwrap();
        (dir, store, end)
    }

    #[test]
    fn window_aggregates_agree_whether_read_from_rollups_or_raw() {
        let (_dir, store, end) = fixture();
        let snap = store.snapshot().unwrap();
        let up = Selector::new("probe_up", vec!["target=api".parse().unwrap()]);
        // A day: the middle from the hour tier, the edges from minutes and raw points.
        let from = end - DAY - 7 * MIN - 30_000;
        let raw_start = snap.first_raw(snap.series()[0].id, Kind::Gauge).unwrap();
        assert!(!usable_tiers(&snap, raw_start, from, end, None).is_empty());
        let got = aggregate(&snap, &up, Agg::Avg, from, end).unwrap();
        let raw = range(&snap, &up, from, end).unwrap();
        let exact: f64 =
            raw[0].points.iter().map(|p| p.1).sum::<f64>() / raw[0].points.len() as f64;
        assert!(
            (got[0].value.unwrap() - exact).abs() < 1e-12,
            "{got:?} vs {exact}"
        );
        for (agg, want) in [
            (Agg::Count, raw[0].points.len() as f64),
            (Agg::Min, 0.0),
            (Agg::Max, 1.0),
            (Agg::Last, raw[0].points.last().unwrap().1),
        ] {
            assert_eq!(
                aggregate(&snap, &up, agg, from, end).unwrap()[0].value,
                Some(want)
            );
        }
        // A counter across a restart, over rollups: 3 per 10 s, the reset counted from zero.
        let c = Selector::new("requests_total", vec![]);
        let from = end - 2 * DAY + 5_000;
        let inc = aggregate(&snap, &c, Agg::Increase, from, end).unwrap()[0]
            .value
            .unwrap();
        let points = range(&snap, &c, from, end).unwrap()[0].points.len() as f64;
        let exact = 3.0 * (points - 1.0) + 1.0;
        // The reset falls inside an hour bucket: what the counter gained in that hour before
        // the reset is not seen, and nothing else is lost.
        assert!(
            inc <= exact && exact - inc <= 3.0 * 360.0,
            "{inc} vs {exact}"
        );
        let day = range(&snap, &c, end - DAY + 5_000, end).unwrap()[0]
            .points
            .len() as f64;
        let inc = aggregate(&snap, &c, Agg::Increase, end - DAY + 5_000, end).unwrap()[0].value;
        assert_eq!(inc, Some(3.0 * day));
        // An aligned window starts with a whole rollup bucket; its increase is measured from
        // the value before the window.
        let rate = aggregate(&snap, &c, Agg::Rate, end - DAY, end).unwrap()[0]
            .value
            .unwrap();
        assert!((rate - 0.3).abs() < 1e-9, "{rate}");
        let hourly = stepped(&snap, &c, Agg::Increase, end - DAY, end, HOUR).unwrap();
        assert_eq!(hourly[0].points.len(), 24);
        assert!(
            hourly[0].points.iter().all(|(_, v)| *v == 3.0 * 360.0),
            "{:?}",
            hourly[0].points
        );
    }

    #[test]
    fn percentiles_of_distributions_merge_sketches_within_one_percent() {
        let (_dir, store, end) = fixture();
        let snap = store.snapshot().unwrap();
        let lat = Selector::new("latency_ms", vec!["target=~a.i".parse().unwrap()]);
        let from = end - DAY;
        // 2 % of the intervals have one 1000 ms observation among ten: 0.2 % of all.
        let p99 = aggregate(&snap, &lat, Agg::Quantile(0.99), from, end).unwrap()[0]
            .value
            .unwrap();
        assert!((p99 - 109.0).abs() <= 1.09, "{p99}");
        let p999 = aggregate(&snap, &lat, Agg::Quantile(0.999), from, end).unwrap()[0]
            .value
            .unwrap();
        assert!((p999 - 1000.0).abs() <= 10.0, "{p999}");
        let p50 = aggregate(&snap, &lat, Agg::Quantile(0.5), from, end).unwrap()[0]
            .value
            .unwrap();
        assert!((p50 - 104.0).abs() <= 1.04, "{p50}");
        let count = aggregate(&snap, &lat, Agg::Count, from, end).unwrap()[0]
            .value
            .unwrap();
        assert_eq!(count, (DAY / 10_000 * 10) as f64);
        let rate = aggregate(&snap, &lat, Agg::Rate, end - 5 * MIN, end).unwrap()[0]
            .value
            .unwrap();
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        assert_eq!(
            aggregate(&snap, &lat, Agg::Max, from, end).unwrap()[0].value,
            Some(1000.0)
        );
    }

    #[test]
    fn stepped_series_are_aligned_and_match_their_windows() {
        let (_dir, store, end) = fixture();
        let snap = store.snapshot().unwrap();
        let all_up = Selector::new("probe_up", vec![]);
        let from = end - 6 * HOUR + 123;
        let steps = stepped(&snap, &all_up, Agg::Avg, from, end, 5 * MIN).unwrap();
        assert_eq!(steps.len(), 2);
        let api = &steps[0];
        assert_eq!(api.series.labels["target"], "api");
        assert_eq!(api.points.len(), 72);
        assert!(api.points.iter().all(|(t, _)| t % (5 * MIN) == 0));
        for (t, v) in &api.points {
            let want = aggregate(
                &snap,
                &Selector::new("probe_up", vec!["target=api".parse().unwrap()]),
                Agg::Avg,
                *t,
                t + 5 * MIN,
            )
            .unwrap()[0]
                .value
                .unwrap();
            assert!((v - want).abs() < 1e-12);
        }
        assert!(steps[1].points.iter().all(|(_, v)| *v == 1.0));
        // Negative matchers and a series that matches nothing.
        let none = Selector::new("probe_up", vec!["target!~api|web".parse().unwrap()]);
        assert!(
            aggregate(&snap, &none, Agg::Avg, from, end)
                .unwrap()
                .is_empty()
        );
        let web = Selector::new("probe_up", vec!["target!=api".parse().unwrap()]);
        assert_eq!(
            aggregate(&snap, &web, Agg::Avg, from, end).unwrap().len(),
            1
        );
    }

    #[test]
    fn bad_matchers_and_aggregations_are_clear_errors() {
        assert!("target".parse::<Matcher>().is_err());
        assert!("=x".parse::<Matcher>().is_err());
        assert!(
            "a=~("
                .parse::<Matcher>()
                .unwrap_err()
                .to_string()
                .contains("regex")
        );
        assert!(
            matches!("p99.9".parse::<Agg>().unwrap(), Agg::Quantile(q) if (q - 0.999).abs() < 1e-12)
        );
        assert!("p101".parse::<Agg>().is_err());
        assert!(
            "median"
                .parse::<Agg>()
                .unwrap_err()
                .to_string()
                .contains("percentile")
        );
        // Regression: `!=` inside a regex value was taken for the operator.
        let m: Matcher = "path=~/a!=b".parse().unwrap();
        assert_eq!(m.label, "path");
        assert!(matches!(&m.op, MatchOp::Re(r) if r.is_match("/a!=b")));
        assert!("9x=1".parse::<Matcher>().is_err());
    }

    #[test]
    fn absurd_times_and_steps_are_refused_not_looped_over() {
        let (_dir, store, end) = fixture();
        let snap = store.snapshot().unwrap();
        // Regression: a window wider than i64 wrapped around and bypassed the step limit.
        let r = Request::parse(
            "probe_up",
            &[],
            "300000000y",
            "9999-12-31T23:59:59Z",
            None,
            Some("1s"),
            end,
        )
        .unwrap();
        assert!(matches!(r.run(&snap), Err(QueryError::Step)));
        let r = Request::parse(
            "probe_up",
            &[],
            "1h",
            "now",
            Some("avg"),
            Some("20000y"),
            end,
        )
        .unwrap();
        assert!(matches!(r.run(&snap), Err(QueryError::Step)));
        let sel = Selector::new("probe_up", vec![]);
        assert!(matches!(
            aggregate(&snap, &sel, Agg::Avg, i64::MIN, i64::MAX),
            Err(QueryError::OutOfTime)
        ));
    }

    #[test]
    fn a_short_window_older_than_the_raw_data_is_read_from_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_layout(Layout {
                raw_retention_ms: HOUR,
                distribution_interval_ms: 10_000,
                tiers: vec![Tier {
                    step_ms: MIN,
                    retention_ms: 30 * DAY,
                }],
            })
            .unwrap();
        let t0 = 500 * DAY;
        let samples: Vec<Sample> = (0..6 * 360)
            .map(|i| {
                s(
                    "probe_up",
                    "api",
                    t0 + i * 10_000,
                    if i < 60 { 0.0 } else { 1.0 },
                )
            })
            .collect();
        store.append(&samples).unwrap();
        store.compact(t0 + 6 * HOUR).unwrap();
        let snap = store.snapshot().unwrap();
        let id = snap.series()[0].id;
        assert!(snap.first_raw(id, Kind::Gauge).unwrap().unwrap() > t0 + 5 * MIN);
        // Windows at the start, hours before the oldest raw point left.
        let up = Selector::new("probe_up", vec![]);
        let v = aggregate(&snap, &up, Agg::Avg, t0, t0 + 5 * MIN).unwrap();
        assert_eq!(v[0].value, Some(0.0));
        let v = aggregate(&snap, &up, Agg::Count, t0 + 5 * MIN, t0 + 15 * MIN).unwrap();
        assert_eq!(v[0].value, Some(60.0));
    }
}

//! The window kinds of `[[rules]]`: `threshold`, `ratio`, `growth`, `stale` and
//! `new_error_type`, evaluated every `every` over a window of the store; as written,
//! validated and defaulted, with what they share (`condition`, `critical`, `resolve`, `for`,
//! `every`, `context`) and the checks of their windows against the store's intervals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::fields::{RawSelector, agg_field, condition_field, duration_field, metric_name};
use super::logs::{LogMetricKind, LogSource};
use super::problems::{Keyword, Problems, Site, keywords};
use super::routing::Routing;
use super::rules::{Rule, RuleHeader, RuleKind, critical_level, rule};
use super::slo::{Burn, SloEvents};
use super::store::StoreConfig;
use crate::vocab::{Condition, Op};

// Defaults; docs/configuration.md and docs/rules.md list the same.

fn threshold_every() -> Duration {
    Duration::from_secs(30)
}
fn growth_window() -> Duration {
    Duration::from_secs(3600)
}
fn new_error_window() -> Duration {
    Duration::from_secs(3600)
}
fn new_error_quiet() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

keywords! {
    /// A growth rule's `between`: which points it compares.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Between {
        /// The two newest points.
        Samples = "samples",
        /// The oldest and the newest point in the window.
        Window = "window",
    }
}

/// `[[rules]]` with `kind = "threshold"`: an aggregate of a window of a series compared with
/// a threshold, evaluated every `every`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
    /// The tag, `threshold`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// The metric the rule reads.
    pub metric: String,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// avg, min, max, last, sum, count, rate, increase or a percentile (p95).
    pub agg: String,
    /// How far back each evaluation looks.
    pub window: String,
    /// When the aggregate breaches, e.g. `> 0.05`.
    pub condition: String,
    /// When a firing alert resolves, e.g. `< 0.03`; by default when `condition` no longer
    /// holds.
    pub resolve: Option<String>,
    /// A second level: a value breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Figures quoted in the alert, over the same window.
    pub context: Option<Vec<RawContext>>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub hold: Option<String>,
    /// Time between evaluations.
    pub every: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lets a rule over client-reported series (an ingest source's) page: reach PagerDuty
    /// or the critical route. Off: `sloguard check` refuses such a rule.
    #[serde(default)]
    pub page_on_client_data: bool,
}

/// `[[rules]]` with `kind = "ratio"`: numerator / denominator over a window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRatio {
    /// The tag, `ratio`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// The series summed above the line (errors).
    pub numerator: RawSelector,
    /// The series summed below the line (requests).
    pub denominator: RawSelector,
    /// How each side is aggregated over the window (default `increase`).
    pub agg: Option<String>,
    /// How far back each evaluation looks.
    pub window: String,
    /// When the value breaches, e.g. `> 0.05`.
    pub condition: String,
    /// When a firing alert resolves, e.g. `< 0.03`; by default when `condition` no longer holds.
    pub resolve: Option<String>,
    /// A second level: a value breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Figures quoted in the alert, over the same window.
    pub context: Option<Vec<RawContext>>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub hold: Option<String>,
    /// Time between evaluations.
    pub every: Option<String>,
    /// No evaluation while the denominator is under this.
    pub min_volume: Option<f64>,
    /// Labels that make groups, each its own alert.
    #[serde(default)]
    pub by: Vec<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lets a rule over client-reported series (an ingest source's) page: reach PagerDuty
    /// or the critical route. Off: `sloguard check` refuses such a rule.
    #[serde(default)]
    pub page_on_client_data: bool,
}

/// `[[rules]]` with `kind = "growth"`: how much a gauge grew.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrowth {
    /// The tag, `growth`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// The metric the rule reads.
    pub metric: String,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// `samples` (default: between the two newest points) or `window` (oldest to newest).
    pub between: Option<String>,
    /// How far back points are read (default 1h).
    pub window: Option<String>,
    /// When the value breaches, e.g. `> 0.05`.
    pub condition: String,
    /// When a firing alert resolves, e.g. `< 0.03`; by default when `condition` no longer holds.
    pub resolve: Option<String>,
    /// A second level: a value breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Figures quoted in the alert, over the same window.
    pub context: Option<Vec<RawContext>>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub hold: Option<String>,
    /// Time between evaluations.
    pub every: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lets a rule over client-reported series (an ingest source's) page: reach PagerDuty
    /// or the critical route. Off: `sloguard check` refuses such a rule.
    #[serde(default)]
    pub page_on_client_data: bool,
}

/// A figure an alert quotes: an aggregate of another series over the rule's window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContext {
    /// The metric quoted.
    pub metric: String,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Default `last`.
    pub agg: Option<String>,
}

/// `[[rules]]` with `kind = "stale"`: a series without a new point for `max_age`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStale {
    /// The tag, `stale`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// The metric the rule reads.
    pub metric: String,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// How long a series may go without a new point before it is stale.
    pub max_age: String,
    /// Time between evaluations.
    pub every: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lets a rule over client-reported series (an ingest source's) page: reach PagerDuty
    /// or the critical route. Off: `sloguard check` refuses such a rule.
    #[serde(default)]
    pub page_on_client_data: bool,
}

/// `[[rules]]` with `kind = "new_error_type"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNewErrorType {
    /// The tag, `new_error_type`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// Only error types of this `[[logs]]` source.
    pub source: Option<String>,
    /// Seen within this long (default 1h)…
    pub window: Option<String>,
    /// …and not in this long before (default 7d).
    pub quiet: Option<String>,
    /// Time between evaluations.
    pub every: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lets a rule over client-reported series (an ingest source's) page: reach PagerDuty
    /// or the critical route. Off: `sloguard check` refuses such a rule.
    #[serde(default)]
    pub page_on_client_data: bool,
}

/// A rule evaluated every `every` over a window of the store: a value per label set,
/// compared with `condition`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRule {
    pub input: WindowInput,
    pub condition: Condition,
    /// A second, higher level: an alert whose value breaches it is critical (its severity
    /// rises while it fires, and stays until it resolves).
    pub critical: Option<Condition>,
    /// When a firing alert resolves; `None`: when `condition` no longer holds.
    pub resolve: Option<Condition>,
    /// How long `condition` must hold before firing.
    pub hold: Duration,
    pub every: Duration,
    /// Figures the alert quotes, each an aggregate of a series over the rule's window.
    pub context: Vec<Context>,
}

/// A figure an alert quotes (the customers of the slow requests, say).
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub metric: String,
    pub matchers: BTreeMap<String, String>,
    pub agg: crate::query::Agg,
}

/// A log source whose error messages a ratio rule quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSource {
    pub name: String,
    /// An ingest source: its messages are client-reported.
    pub client: bool,
}

/// What a window rule computes per label set.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowInput {
    /// `kind = "threshold"`: an aggregate of each selected series over the window.
    Series {
        metric: String,
        matchers: BTreeMap<String, String>,
        agg: crate::query::Agg,
        window: Duration,
    },
    /// `kind = "ratio"`: numerator / denominator (each `agg`, summed over its series) per
    /// group of `by` labels; no value while the denominator is under `min_volume`.
    Ratio {
        numerator: (String, BTreeMap<String, String>),
        denominator: (String, BTreeMap<String, String>),
        agg: crate::query::Agg,
        window: Duration,
        min_volume: f64,
        by: Vec<String>,
        /// The log sources that produce the numerator or the denominator: the alert's
        /// "last error" is theirs only, never another source's (a client's).
        error_sources: Box<[ErrorSource]>,
    },
    /// `kind = "growth"`: how much each selected gauge series grew: between its two newest
    /// points (`per_sample`) or from its oldest to its newest point in the window.
    Growth {
        metric: String,
        matchers: BTreeMap<String, String>,
        window: Duration,
        per_sample: bool,
    },
    /// `kind = "stale"`: 1 for a series without a point in the last `max_age`, else 0.
    Stale {
        metric: String,
        matchers: BTreeMap<String, String>,
        max_age: Duration,
    },
    /// `kind = "slo"`: 2 while a critical burn-rate pair burns, 1 while a warning one
    /// does, else 0; the note says how fast and how much budget is left.
    Slo {
        events: SloEvents,
        /// The objective as a fraction: 0.999.
        objective: f64,
        period: Duration,
        burns: Vec<Burn>,
    },
    /// `kind = "new_error_type"`: 1 for an error type of the logs seen in the last
    /// `window` and not in the `quiet` period before.
    NewErrors {
        source: Option<String>,
        window: Duration,
        quiet: Duration,
        /// The ingest sources among those read: their types' messages and patterns are
        /// client-reported.
        client_sources: Vec<String>,
    },
}

/// How long an error type not seen again is kept: as long as a rule may still look at it
/// (the longest `quiet + window` of the new-error-type rules, the longest ratio window), at
/// least the defaults' week and an hour (what `sloguard errors` shows), at most
/// `history_retention`. Junk types a client made up go when nothing can use them.
pub fn error_type_horizon(rules: &[Rule], history_retention: Duration) -> Duration {
    let mut horizon = new_error_quiet() + new_error_window();
    for r in rules {
        if let RuleKind::Window(w) = &r.kind {
            match &w.input {
                WindowInput::NewErrors { quiet, window, .. } => {
                    horizon = horizon.max(*quiet + *window);
                }
                WindowInput::Ratio { window, .. } => horizon = horizon.max(*window),
                _ => {}
            }
        }
    }
    horizon.min(history_retention)
}

/// The ingest sources (whose clients are anyone holding the public token) among `logs`.
fn client_sources<'a>(logs: impl Iterator<Item = &'a LogSource>) -> Vec<String> {
    logs.filter(|l| matches!(l.input, super::LogInput::Posthog { .. }))
        .map(|l| l.name.clone())
        .collect()
}

/// The fields every raw rule kind shares, moved into a [`RuleHeader`].
macro_rules! header {
    ($raw:ident, $critical_level:expr) => {
        RuleHeader {
            critical_level: $critical_level,
            name: $raw.name,
            severity: $raw.severity,
            summary: $raw.summary,
            runbook_url: $raw.runbook_url,
            dashboard_url: $raw.dashboard_url,
            channels: $raw.channels,
            depends_on: $raw.depends_on,
            page_on_client_data: $raw.page_on_client_data,
        }
    };
}

/// What a window rule's `condition`, `critical`, `resolve`, `for` and `every` make.
struct Tail {
    context: Vec<Context>,
    condition: Condition,
    critical: Option<Condition>,
    resolve: Option<Condition>,
    hold: Duration,
    every: Duration,
}

/// The text of those fields, as the rule wrote them.
struct TailText<'r> {
    context: Option<Vec<RawContext>>,
    condition: &'r str,
    critical: Option<&'r String>,
    resolve: Option<&'r String>,
    hold: Option<&'r String>,
    every: Option<&'r String>,
}

fn window_tail(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    text: TailText<'_>,
) -> Option<Tail> {
    let TailText {
        context,
        condition,
        critical,
        resolve,
        hold,
        every,
    } = text;
    let condition = condition_field(problems, site, "condition", condition);
    let critical = match critical {
        Some(text) => critical_level(problems, site, condition.as_ref(), text),
        None => Some(None),
    };
    let resolve = match resolve {
        Some(text) => condition_field(problems, site, "resolve", text).map(Some),
        None => Some(None),
    };
    if let (Some(c), Some(Some(r))) = (&condition, &resolve) {
        // The resolve level is on the other side of the firing one, or the alert would
        // resolve as it fires and fire again at the next evaluation.
        let ok = match c.op {
            Op::Gt | Op::Ge => matches!(r.op, Op::Lt | Op::Le) && r.threshold <= c.threshold,
            Op::Lt | Op::Le => matches!(r.op, Op::Gt | Op::Ge) && r.threshold >= c.threshold,
            Op::Eq | Op::Ne => false,
        };
        if !ok {
            problems.push(
                Some(site.span_of("resolve")),
                site.field("resolve"),
                format!(
                    "`{r}` must be on the other side of `{c}` (for `> 0.05`, e.g. `< 0.03`; none for `==` and `!=`)"
                ),
            );
        }
    }
    let hold = duration_field(problems, site, "for", hold, Duration::ZERO, Duration::ZERO);
    let every = duration_field(
        problems,
        site,
        "every",
        every,
        threshold_every(),
        Duration::from_secs(1),
    );
    let mut figures = Vec::new();
    for (i, c) in context.unwrap_or_default().into_iter().enumerate() {
        if !crate::series::valid_metric_name(&c.metric) {
            problems.push(
                Some(site.span_of("context")),
                site.field(&format!("context[{i}].metric")),
                format!("`{}` is not a metric name", c.metric),
            );
            continue;
        }
        match c
            .agg
            .as_deref()
            .unwrap_or("last")
            .parse::<crate::query::Agg>()
        {
            Ok(agg) => figures.push(Context {
                metric: c.metric,
                matchers: c.matchers,
                agg,
            }),
            Err(e) => problems.push(
                Some(site.span_of("context")),
                site.field(&format!("context[{i}].agg")),
                e.to_string(),
            ),
        }
    }
    Some(Tail {
        context: figures,
        condition: condition?,
        critical: critical?,
        resolve: resolve?,
        hold,
        every,
    })
}

pub(super) fn threshold(
    problems: &mut Problems<'_>,
    raw: RawThreshold,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    metric_name(problems, site, &raw.metric);
    let agg = agg_field(problems, site, &raw.agg);
    let second = Duration::from_secs(1);
    let window = duration_field(problems, site, "window", Some(&raw.window), second, second);
    let tail = window_tail(
        problems,
        site,
        TailText {
            context: raw.context,
            condition: &raw.condition,
            critical: raw.critical.as_ref(),
            resolve: raw.resolve.as_ref(),
            hold: raw.hold.as_ref(),
            every: raw.every.as_ref(),
        },
    );
    let critical_level = tail.as_ref().is_some_and(|t| t.critical.is_some());
    let kind = match (agg, tail) {
        (Some(agg), Some(t)) => Some(RuleKind::Window(WindowRule {
            input: WindowInput::Series {
                metric: raw.metric,
                matchers: raw.matchers,
                agg,
                window,
            },
            condition: t.condition,
            critical: t.critical,
            resolve: t.resolve,
            hold: t.hold,
            every: t.every,
            context: t.context,
        })),
        _ => None,
    };
    let header = header!(raw, critical_level);
    rule(problems, site, before, header, kind, channels, routing)
}

pub(super) fn ratio(
    problems: &mut Problems<'_>,
    raw: RawRatio,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
    logs: &[LogSource],
) -> Option<Rule> {
    let before = problems.list.len();
    for (key, sel) in [
        ("numerator", &raw.numerator),
        ("denominator", &raw.denominator),
    ] {
        if !crate::series::valid_metric_name(&sel.metric) {
            problems.push(
                Some(site.span_of(key)),
                site.field(&format!("{key}.metric")),
                format!(
                    "`{}` is not a metric name (letters, digits, `_` and `:`)",
                    sel.metric
                ),
            );
        }
    }
    let agg = agg_field(problems, site, raw.agg.as_deref().unwrap_or("increase"));
    let second = Duration::from_secs(1);
    let window = duration_field(problems, site, "window", Some(&raw.window), second, second);
    let min_volume = raw.min_volume.unwrap_or(0.0);
    if !(min_volume.is_finite() && min_volume >= 0.0) {
        problems.push(
            Some(site.span_of("min_volume")),
            site.field("min_volume"),
            "must be a number, 0 or more",
        );
    }
    let tail = window_tail(
        problems,
        site,
        TailText {
            context: raw.context,
            condition: &raw.condition,
            critical: raw.critical.as_ref(),
            resolve: raw.resolve.as_ref(),
            hold: raw.hold.as_ref(),
            every: raw.every.as_ref(),
        },
    );
    let critical_level = tail.as_ref().is_some_and(|t| t.critical.is_some());
    let feeding: Vec<&LogSource> = logs
        .iter()
        .filter(|l| !l.errors.is_empty())
        .filter(|l| {
            l.metrics
                .iter()
                .any(|m| m.name == raw.numerator.metric || m.name == raw.denominator.metric)
        })
        .collect();
    let error_sources = feeding
        .iter()
        .map(|l| ErrorSource {
            name: l.name.clone(),
            client: matches!(l.input, super::LogInput::Posthog { .. }),
        })
        .collect();
    let kind = match (agg, tail) {
        (Some(agg), Some(t)) => Some(RuleKind::Window(WindowRule {
            input: WindowInput::Ratio {
                error_sources,
                numerator: (raw.numerator.metric, raw.numerator.matchers),
                denominator: (raw.denominator.metric, raw.denominator.matchers),
                agg,
                window,
                min_volume,
                by: raw.by,
            },
            condition: t.condition,
            critical: t.critical,
            resolve: t.resolve,
            hold: t.hold,
            every: t.every,
            context: t.context,
        })),
        _ => None,
    };
    let header = header!(raw, critical_level);
    rule(problems, site, before, header, kind, channels, routing)
}

pub(super) fn growth(
    problems: &mut Problems<'_>,
    raw: RawGrowth,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    metric_name(problems, site, &raw.metric);
    let second = Duration::from_secs(1);
    let window = duration_field(
        problems,
        site,
        "window",
        raw.window.as_ref(),
        growth_window(),
        second,
    );
    let between = match raw.between.as_deref() {
        None => Between::Samples,
        Some(text) => Between::parse(text).unwrap_or_else(|| {
            problems.push(
                Some(site.span_of("between")),
                site.field("between"),
                format!("`{text}` is not `samples` or `window`"),
            );
            Between::Samples
        }),
    };
    let per_sample = match between {
        Between::Samples => true,
        Between::Window => false,
    };
    let tail = window_tail(
        problems,
        site,
        TailText {
            context: raw.context,
            condition: &raw.condition,
            critical: raw.critical.as_ref(),
            resolve: raw.resolve.as_ref(),
            hold: raw.hold.as_ref(),
            every: raw.every.as_ref(),
        },
    );
    let critical_level = tail.as_ref().is_some_and(|t| t.critical.is_some());
    let kind = tail.map(|t| {
        RuleKind::Window(WindowRule {
            input: WindowInput::Growth {
                metric: raw.metric,
                matchers: raw.matchers,
                window,
                per_sample,
            },
            condition: t.condition,
            critical: t.critical,
            resolve: t.resolve,
            hold: t.hold,
            every: t.every,
            context: t.context,
        })
    });
    let header = header!(raw, critical_level);
    rule(problems, site, before, header, kind, channels, routing)
}

pub(super) fn stale(
    problems: &mut Problems<'_>,
    raw: RawStale,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    metric_name(problems, site, &raw.metric);
    let second = Duration::from_secs(1);
    let max_age = duration_field(
        problems,
        site,
        "max_age",
        Some(&raw.max_age),
        second,
        second,
    );
    let every = duration_field(
        problems,
        site,
        "every",
        raw.every.as_ref(),
        threshold_every(),
        second,
    );
    let kind = Some(RuleKind::Window(WindowRule {
        input: WindowInput::Stale {
            metric: raw.metric,
            matchers: raw.matchers,
            max_age,
        },
        condition: Condition {
            op: crate::vocab::Op::Gt,
            threshold: 0.0,
        },
        critical: None,
        resolve: None,
        hold: Duration::ZERO,
        every,
        context: Vec::new(),
    }));
    let header = header!(raw, false);
    rule(problems, site, before, header, kind, channels, routing)
}

pub(super) fn new_error_type(
    problems: &mut Problems<'_>,
    raw: RawNewErrorType,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
    logs: &[LogSource],
) -> Option<Rule> {
    let before = problems.list.len();
    if let Some(source) = &raw.source
        && !logs
            .iter()
            .any(|l| &l.name == source && !l.errors.is_empty())
    {
        problems.push(
            Some(site.span_of("source")),
            site.field("source"),
            format!("`{source}` is not a [[logs]] source with [[logs.errors]]"),
        );
    }
    let hour = Duration::from_secs(3600);
    let window = duration_field(
        problems,
        site,
        "window",
        raw.window.as_ref(),
        new_error_window(),
        hour,
    );
    let quiet = duration_field(
        problems,
        site,
        "quiet",
        raw.quiet.as_ref(),
        new_error_quiet(),
        hour,
    );
    let every = duration_field(
        problems,
        site,
        "every",
        raw.every.as_ref(),
        threshold_every(),
        Duration::from_secs(1),
    );
    let kind = Some(RuleKind::Window(WindowRule {
        input: WindowInput::NewErrors {
            client_sources: client_sources(
                logs.iter()
                    .filter(|l| raw.source.as_ref().is_none_or(|s| s == &l.name)),
            ),
            source: raw.source,
            window,
            quiet,
        },
        // 2: new; 1: seen again (a firing alert goes on); none: not seen in the window.
        condition: Condition {
            op: crate::vocab::Op::Gt,
            threshold: 1.0,
        },
        critical: None,
        resolve: Some(Condition {
            op: crate::vocab::Op::Lt,
            threshold: 1.0,
        }),
        hold: Duration::ZERO,
        every,
        context: Vec::new(),
    }));
    let header = header!(raw, false);
    rule(problems, site, before, header, kind, channels, routing)
}

/// Windows a window rule reads log events through must hold at least two of the store's
/// intervals (a shorter one sees none, one or two, by chance), and a counting window must
/// not be shorter than the time between evaluations (what falls between is never counted).
pub(super) fn window_checks(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    th: &WindowRule,
    logs: &[LogSource],
    store: &StoreConfig,
) {
    let interval = store.distribution_interval;
    let events = |metric: &str| {
        logs.iter()
            .flat_map(|l| &l.metrics)
            .any(|m| m.name == metric && m.kind != LogMetricKind::Gauge)
    };
    // (field, metric, window) of every read of the rule.
    let mut reads: Vec<(&str, &str, Duration)> = Vec::new();
    let mut counting_window = None;
    match &th.input {
        WindowInput::Series {
            metric,
            agg,
            window,
            ..
        } => {
            reads.push(("window", metric, *window));
            if matches!(
                agg,
                crate::query::Agg::Count
                    | crate::query::Agg::Sum
                    | crate::query::Agg::Increase
                    | crate::query::Agg::Rate
            ) {
                counting_window = Some(*window);
            }
        }
        WindowInput::Ratio {
            numerator,
            denominator,
            window,
            ..
        } => {
            reads.push(("window", &numerator.0, *window));
            reads.push(("window", &denominator.0, *window));
            counting_window = Some(*window);
        }
        WindowInput::Slo {
            events: SloEvents::Ratio { bad, total },
            burns,
            ..
        } => {
            if let Some(shortest) = burns.iter().map(|b| b.short).min() {
                reads.push(("burn", &bad.0, shortest));
                reads.push(("burn", &total.0, shortest));
            }
        }
        // Growth and stale rules read points, not counts; an `up` SLO reads a 0/1 gauge;
        // new error types are counted per hour.
        WindowInput::Growth { .. }
        | WindowInput::Stale { .. }
        | WindowInput::Slo {
            events: SloEvents::Up { .. },
            ..
        }
        | WindowInput::NewErrors { .. } => {}
    }
    let window = reads.first().map(|r| r.2);
    if let Some(w) = window {
        for c in &th.context {
            reads.push(("context", &c.metric, w));
        }
    }
    if let Some((field, metric, _)) = reads
        .iter()
        .find(|(_, metric, w)| events(metric) && *w < interval * 2)
    {
        problems.push(
            Some(site.span_of(field)),
            site.field(field),
            format!(
                "`{metric}` is counted per [store].distribution_interval ({}): the window must be at least two of those",
                humantime::format_duration(interval)
            ),
        );
    }
    if let Some(w) = counting_window
        && w < th.every
    {
        problems.push(
            Some(site.span_of("window")),
            site.field("window"),
            format!(
                "shorter than `every` ({}): what happens between two evaluations would never be counted",
                humantime::format_duration(th.every)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::{Context, WindowInput, WindowRule};
    use crate::config::RuleKind;
    use crate::config::testing::{config, expect};
    use crate::query::Agg;
    use crate::vocab::{Condition, Op};

    const THRESHOLD: &str = r#"[[rules]]
name = "slow"
kind = "threshold"
metric = "http_ms"
agg = "p95"
window = "5m"
condition = "> 500"
severity = "info"
summary = "Slow"
"#;

    const RATIO: &str = r#"[[rules]]
name = "errors"
kind = "ratio"
numerator = { metric = "errors" }
denominator = { metric = "requests" }
window = "5m"
condition = "> 0.05"
severity = "info"
summary = "Errors"
"#;

    /// A log source counting `app_errors` per interval.
    const EVENTS: &str = r#"[[logs]]
name = "app"
files = ["/var/log/app.log"]
[[logs.metric]]
name = "app_errors"
kind = "counter"

"#;

    fn window_rule(text: &str) -> WindowRule {
        let c = config(text);
        match &c.rules[0].kind {
            RuleKind::Window(t) => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn gt(threshold: f64) -> Condition {
        Condition {
            op: Op::Gt,
            threshold,
        }
    }

    #[test]
    fn each_kind_with_its_defaults() {
        let secs = Duration::from_secs;
        let t = window_rule(&format!(
            "{THRESHOLD}resolve = \"< 400\"\ncontext = [{{ metric = \"http_requests\", agg = \"sum\" }}, {{ metric = \"cpu\" }}]\n"
        ));
        assert_eq!(
            t,
            WindowRule {
                input: WindowInput::Series {
                    metric: "http_ms".into(),
                    matchers: BTreeMap::new(),
                    agg: Agg::Quantile(0.95),
                    window: secs(300),
                },
                condition: gt(500.0),
                critical: None,
                resolve: Some(Condition {
                    op: Op::Lt,
                    threshold: 400.0
                }),
                hold: Duration::ZERO,
                every: secs(30),
                context: vec![
                    Context {
                        metric: "http_requests".into(),
                        matchers: BTreeMap::new(),
                        agg: Agg::Sum,
                    },
                    Context {
                        metric: "cpu".into(),
                        matchers: BTreeMap::new(),
                        agg: Agg::Last,
                    },
                ],
            }
        );
        let r = window_rule(&format!(
            "{RATIO}for = \"10m\"\nevery = \"1m\"\nby = [\"route\"]\n"
        ));
        assert_eq!(
            r.input,
            WindowInput::Ratio {
                numerator: ("errors".into(), BTreeMap::new()),
                denominator: ("requests".into(), BTreeMap::new()),
                agg: Agg::Increase,
                window: secs(300),
                min_volume: 0.0,
                by: vec!["route".into()],
                error_sources: Box::default(),
            }
        );
        assert_eq!((r.hold, r.every), (secs(600), secs(60)));
        let g = window_rule(
            "[[rules]]\nname = \"g\"\nkind = \"growth\"\nmetric = \"disk_used\"\ncondition = \"> 1e9\"\nseverity = \"info\"\nsummary = \"G\"\n",
        );
        assert_eq!(
            g.input,
            WindowInput::Growth {
                metric: "disk_used".into(),
                matchers: BTreeMap::new(),
                window: secs(3600),
                per_sample: true,
            }
        );
        let g = window_rule(
            "[[rules]]\nname = \"g\"\nkind = \"growth\"\nmetric = \"disk_used\"\nbetween = \"window\"\ncondition = \"> 1e9\"\nseverity = \"info\"\nsummary = \"G\"\n",
        );
        assert!(matches!(
            g.input,
            WindowInput::Growth {
                per_sample: false,
                ..
            }
        ));
        let s = window_rule(
            "[[rules]]\nname = \"s\"\nkind = \"stale\"\nmetric = \"heartbeat\"\nmax_age = \"10m\"\nseverity = \"info\"\nsummary = \"S\"\n",
        );
        assert_eq!(
            s.input,
            WindowInput::Stale {
                metric: "heartbeat".into(),
                matchers: BTreeMap::new(),
                max_age: secs(600),
            }
        );
        assert_eq!((s.condition, s.every), (gt(0.0), secs(30)));
        let n = window_rule(
            "[[rules]]\nname = \"n\"\nkind = \"new_error_type\"\nseverity = \"info\"\nsummary = \"N\"\n",
        );
        assert_eq!(
            n.input,
            WindowInput::NewErrors {
                source: None,
                window: secs(3600),
                quiet: secs(7 * 86400),
                client_sources: Vec::new(),
            }
        );
        assert_eq!(
            (n.condition, n.resolve),
            (
                gt(1.0),
                Some(Condition {
                    op: Op::Lt,
                    threshold: 1.0
                })
            )
        );
    }

    #[test]
    fn problems_of_the_fields_window_rules_share() {
        expect(&[
            (
                &format!("{THRESHOLD}resolve = \"> 400\"\n"),
                "rules[0].resolve",
                10,
                "`> 400` must be on the other side of `> 500` (for `> 0.05`, e.g. `< 0.03`; none for `==` and `!=`)",
            ),
            (
                &format!("{THRESHOLD}resolve = \"< 600\"\n"),
                "rules[0].resolve",
                10,
                "`< 600` must be on the other side of `> 500`",
            ),
            (
                &format!("{THRESHOLD}resolve = \"no\"\n"),
                "rules[0].resolve",
                10,
                "`no` is not a condition",
            ),
            (
                &format!("{THRESHOLD}context = [{{ metric = \"http requests\" }}]\n"),
                "rules[0].context[0].metric",
                10,
                "`http requests` is not a metric name",
            ),
            (
                &format!("{THRESHOLD}context = [{{ metric = \"cpu\", agg = \"median\" }}]\n"),
                "rules[0].context[0].agg",
                10,
                "`median` is not an aggregation",
            ),
            (
                &format!("{THRESHOLD}for = \"a while\"\n"),
                "rules[0].for",
                10,
                "`a while` is not a duration",
            ),
            (
                &format!("{THRESHOLD}every = \"500ms\"\n"),
                "rules[0].every",
                10,
                "must be at least 1s",
            ),
            (
                &THRESHOLD.replace("\"5m\"", "\"0s\""),
                "rules[0].window",
                6,
                "must be at least 1s",
            ),
        ]);
    }

    #[test]
    fn problems_of_each_kind() {
        expect(&[
            (
                &RATIO.replace("{ metric = \"errors\" }", "{ metric = \"5xx\" }"),
                "rules[0].numerator.metric",
                4,
                "`5xx` is not a metric name (letters, digits, `_` and `:`)",
            ),
            (
                &format!("{RATIO}min_volume = -1.0\n"),
                "rules[0].min_volume",
                10,
                "must be a number, 0 or more",
            ),
            (
                &format!("{RATIO}agg = \"p95x\"\n"),
                "rules[0].agg",
                10,
                "`p95x` is not an aggregation",
            ),
            (
                "[[rules]]\nname = \"g\"\nkind = \"growth\"\nmetric = \"disk_used\"\nbetween = \"all\"\ncondition = \"> 1\"\nseverity = \"info\"\nsummary = \"G\"\n",
                "rules[0].between",
                5,
                "`all` is not `samples` or `window`",
            ),
            (
                "[[rules]]\nname = \"s\"\nkind = \"stale\"\nmetric = \"heartbeat\"\nmax_age = \"0s\"\nseverity = \"info\"\nsummary = \"S\"\n",
                "rules[0].max_age",
                5,
                "must be at least 1s",
            ),
            (
                "[[rules]]\nname = \"n\"\nkind = \"new_error_type\"\nsource = \"app\"\nseverity = \"info\"\nsummary = \"N\"\n",
                "rules[0].source",
                4,
                "`app` is not a [[logs]] source with [[logs.errors]]",
            ),
            (
                "[[rules]]\nname = \"n\"\nkind = \"new_error_type\"\nquiet = \"30m\"\nseverity = \"info\"\nsummary = \"N\"\n",
                "rules[0].quiet",
                4,
                "must be at least 1h",
            ),
        ]);
    }

    #[test]
    fn problems_of_windows_against_the_store() {
        let rule = THRESHOLD
            .replace("\"http_ms\"", "\"app_errors\"")
            .replace("\"p95\"", "\"increase\"");
        expect(&[
            (
                &format!("{EVENTS}{}", rule.replace("\"5m\"", "\"15s\"")),
                "rules[0].window",
                13,
                "`app_errors` is counted per [store].distribution_interval (10s): the window must be at least two of those",
            ),
            (
                &format!(
                    "[store]\ndistribution_interval = \"1m\"\n\n{EVENTS}{}",
                    rule.replace("\"5m\"", "\"90s\"")
                        .replace("severity", "every = \"1m\"\nseverity")
                ),
                "rules[0].window",
                16,
                "`app_errors` is counted per [store].distribution_interval (1m): the window must be at least two of those",
            ),
            (
                &format!("{EVENTS}{THRESHOLD}context = [{{ metric = \"app_errors\" }}]\n")
                    .replace("\"5m\"", "\"15s\""),
                "rules[0].context",
                17,
                "`app_errors` is counted per [store].distribution_interval (10s)",
            ),
            (
                &rule.replace("\"5m\"", "\"20s\""),
                "rules[0].window",
                6,
                "shorter than `every` (30s): what happens between two evaluations would never be counted",
            ),
        ]);
        // A gauge or an aggregate that does not count is not held to `every`.
        config(&THRESHOLD.replace("\"5m\"", "\"20s\""));
    }

    #[test]
    fn error_types_are_kept_as_long_as_a_rule_can_look_at_them() {
        let secs = std::time::Duration::from_secs;
        let day = 86_400;
        let horizon = |rules: &str, retention: u64| {
            let c = crate::config::testing::config(&format!(
                "[routing]\nwarning = [\"hook\"]\n[[channels]]\nname = \"hook\"\ntype = \"webhook\"\n\
                 url = \"http://127.0.0.1:9/h\"\n[[logs]]\nname = \"app\"\nfiles = [\"/var/log/a.log\"]\n\
                 [[logs.errors]]\nmessage = \"error\"\n{rules}"
            ));
            super::error_type_horizon(&c.rules, secs(retention * day))
        };
        // No rule: the defaults' week and an hour.
        assert_eq!(horizon("", 400), secs(7 * day + 3600));
        let rule = "[[rules]]\nname = \"n\"\nkind = \"new_error_type\"\nseverity = \"warning\"\n\
                    summary = \"N\"\nquiet = \"14d\"\nwindow = \"2h\"\n";
        assert_eq!(horizon(rule, 400), secs(14 * day + 7200));
        // Never past the history's retention.
        assert_eq!(horizon(rule, 3), secs(3 * day));
    }
}

//! The alert state machine: ok → pending → firing → (resolved, back to ok).
//!
//! One [`AlertState`] exists per (rule, label set) that is pending or firing; "ok" is the
//! absence of a state. The pipeline persists firing states so that a restart neither fires
//! again nor forgets an alert.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Rule, RuleKind, Severity};
use crate::series::{Labels, Sample, write_labels};

/// Pending or firing. On disk: inside alert records, as these snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Breaching, but not long enough to fire.
    Pending,
    /// Fired; notifications were sent.
    Firing,
}

/// The state of one alert: one rule applied to one label set. On disk: inside an alert record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub rule: String,
    pub labels: Labels,
    pub severity: Severity,
    pub status: AlertStatus,
    /// Breaching samples in a row.
    pub breaches: u32,
    /// Clear samples in a row while firing.
    pub clears: u32,
    /// Time of the first breaching sample.
    pub since_ms: i64,
    /// When the alert fired.
    pub fired_at_ms: Option<i64>,
    /// The latest breaching value.
    pub value: f64,
    /// The latest breaching sample's note, such as a probe's failure reason.
    pub note: Option<String>,
}

impl AlertState {
    /// A stable identity: the rule name and the label set, e.g. `site_down{target="web"}`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.rule, &self.labels)
    }
}

pub fn fingerprint(rule: &str, labels: &Labels) -> String {
    let mut s = rule.to_string();
    let _ = write_labels(&mut s, labels);
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    /// ok → pending.
    Pending,
    /// pending → firing (or ok → firing when one breach fires).
    Firing,
    /// firing → ok.
    Resolved,
    /// pending → ok without having fired.
    Cleared,
}

/// A change of an alert's status, with the alert as it is after (for `Resolved` and
/// `Cleared`: as it was just before) the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub kind: TransitionKind,
    pub alert: AlertState,
    pub at_ms: i64,
    /// Why a resolve happened when it was not the data (a rule removed by a reload).
    pub reason: Option<String>,
}

/// The transition that ends an alert for a reason other than data: a resolve if it fired, a
/// clear if it was only pending.
fn ended(state: AlertState, at_ms: i64, reason: &str) -> Transition {
    let kind = match state.status {
        AlertStatus::Firing => TransitionKind::Resolved,
        AlertStatus::Pending => TransitionKind::Cleared,
    };
    Transition {
        kind,
        alert: state,
        at_ms,
        reason: Some(reason.to_string()),
    }
}

/// One label set's value at one evaluation of a window rule.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValue {
    pub labels: Labels,
    /// `None`: no data in the window.
    pub value: Option<f64>,
    /// Context for the alert's text (the newest message of an error type).
    pub note: Option<String>,
}

/// The rule set and the state of every pending or firing alert.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Vec<Rule>,
    states: BTreeMap<String, AlertState>,
}

impl Engine {
    /// Builds an engine from `rules` and alert states restored from the store. States whose
    /// rule is gone are resolved; those transitions are returned.
    pub fn restore(
        rules: Vec<Rule>,
        states: Vec<AlertState>,
        now_ms: i64,
    ) -> (Engine, Vec<Transition>) {
        let mut engine = Engine {
            rules: Vec::new(),
            states: states.into_iter().map(|s| (s.fingerprint(), s)).collect(),
        };
        let transitions = engine.reload(rules, now_ms);
        (engine, transitions)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Every pending or firing alert.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertState> {
        self.states.values()
    }

    /// Swaps the rule set, keeping the state of alerts whose rule still exists and still
    /// selects their series. Other firing alerts resolve, other pending ones clear.
    pub fn reload(&mut self, rules: Vec<Rule>, now_ms: i64) -> Vec<Transition> {
        self.rules = rules;
        let mut out = Vec::new();
        let fingerprints: Vec<String> = self.states.keys().cloned().collect();
        for fp in fingerprints {
            let Some(state) = self.states.get(&fp) else {
                continue;
            };
            let still = self
                .rules
                .iter()
                .find(|r| r.name == state.rule)
                .filter(|r| {
                    r.kind.selects().is_none_or(|(_, matchers)| {
                        matchers.iter().all(|(k, v)| state.labels.get(k) == Some(v))
                    })
                });
            match still {
                Some(rule) => {
                    let severity = rule.severity;
                    // An alert raised past the rule's critical level stays raised.
                    let two_levels = match &rule.kind {
                        RuleKind::Consecutive(c) => c.critical.is_some(),
                        RuleKind::Window(t) => t.critical.is_some(),
                    };
                    if let Some(s) = self.states.get_mut(&fp) {
                        s.severity = if two_levels {
                            s.severity.max(severity)
                        } else {
                            severity
                        };
                    }
                }
                None => {
                    if let Some(state) = self.states.remove(&fp) {
                        out.push(ended(
                            state,
                            now_ms,
                            "the rule was removed or changed by a configuration reload",
                        ));
                    }
                }
            }
        }
        out
    }

    /// Ends every alert for which `gone(rule, labels)` holds: firing ones resolve and pending
    /// ones clear, with `reason` as the note. Used when the series an alert watches stops
    /// existing (its probe target was removed), since no sample will ever resolve it.
    pub fn retire(
        &mut self,
        gone: impl Fn(&Rule, &Labels) -> bool,
        now_ms: i64,
        reason: &str,
    ) -> Vec<Transition> {
        let doomed: Vec<String> = self
            .states
            .iter()
            .filter(|(_, s)| self.rule(&s.rule).is_some_and(|r| gone(r, &s.labels)))
            .map(|(fp, _)| fp.clone())
            .collect();
        let mut out = Vec::new();
        for fp in doomed {
            if let Some(state) = self.states.remove(&fp) {
                out.push(ended(state, now_ms, reason));
            }
        }
        out
    }

    /// Applies one evaluation of threshold rule `rule_name`: the window's aggregate per label
    /// set (`None`: no data in the window). A label set that breaches becomes pending, and
    /// fires once it has breached for the rule's `for`; a pending one that stops breaching
    /// clears; a firing one resolves when the resolve condition holds (by default, when the
    /// condition no longer does) or when its data is gone from the window.
    pub fn evaluate(
        &mut self,
        rule_name: &str,
        values: &[WindowValue],
        now_ms: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let Some(rule) = self.rules.iter().find(|r| r.name == rule_name) else {
            return out;
        };
        let RuleKind::Window(th) = &rule.kind else {
            return out;
        };
        let hold_ms = th.hold.as_millis().min(i64::MAX as u128) as i64;
        let mut seen: std::collections::BTreeSet<String> = Default::default();
        for WindowValue {
            labels,
            value,
            note,
        } in values
        {
            let value = &value.filter(|v| !v.is_nan());
            let fp = fingerprint(&rule.name, labels);
            seen.insert(fp.clone());
            let critical = value.is_some_and(|v| th.critical.is_some_and(|c| c.breached(v)));
            let breached = critical || value.is_some_and(|v| th.condition.breached(v));
            let severity = if critical {
                Severity::Critical
            } else {
                rule.severity
            };
            let resolves = match (value, &th.resolve) {
                (None, _) => true,
                (Some(v), Some(r)) => r.breached(*v),
                (Some(_), None) => !breached,
            };
            let fire = |state: &mut AlertState, out: &mut Vec<Transition>| {
                state.status = AlertStatus::Firing;
                state.fired_at_ms = Some(now_ms);
                out.push(Transition {
                    kind: TransitionKind::Firing,
                    alert: state.clone(),
                    at_ms: now_ms,
                    reason: None,
                });
            };
            match self.states.get_mut(&fp) {
                None if breached => {
                    let mut state = AlertState {
                        rule: rule.name.clone(),
                        labels: labels.clone(),
                        severity,
                        status: AlertStatus::Pending,
                        breaches: 1,
                        clears: 0,
                        since_ms: now_ms,
                        fired_at_ms: None,
                        value: value.unwrap_or(f64::NAN),
                        note: note.clone(),
                    };
                    if hold_ms == 0 {
                        fire(&mut state, &mut out);
                    } else {
                        out.push(Transition {
                            kind: TransitionKind::Pending,
                            alert: state.clone(),
                            at_ms: now_ms,
                            reason: None,
                        });
                    }
                    self.states.insert(fp, state);
                }
                None => {}
                Some(state) if state.status == AlertStatus::Pending => {
                    if breached {
                        state.breaches = state.breaches.saturating_add(1);
                        state.value = value.unwrap_or(state.value);
                        state.severity = state.severity.max(severity);
                        if note.is_some() {
                            state.note.clone_from(note);
                        }
                        if now_ms - state.since_ms >= hold_ms {
                            fire(state, &mut out);
                        }
                    } else if let Some(state) = self.states.remove(&fp) {
                        out.push(Transition {
                            kind: TransitionKind::Cleared,
                            alert: state,
                            at_ms: now_ms,
                            reason: None,
                        });
                    }
                }
                Some(state) => {
                    if let Some(v) = value {
                        state.value = *v;
                    }
                    if resolves {
                        let reason = value
                            .is_none()
                            .then(|| "no data in the rule's window".to_string());
                        if let Some(state) = self.states.remove(&fp) {
                            out.push(Transition {
                                kind: TransitionKind::Resolved,
                                alert: state,
                                at_ms: now_ms,
                                reason,
                            });
                        }
                    } else {
                        state.breaches = state.breaches.saturating_add(u32::from(breached));
                        // A level crossed while firing raises the alert; the pipeline sends
                        // the raised alert to the critical route at its next tick.
                        state.severity = state.severity.max(severity);
                    }
                }
            }
        }
        // Label sets with no series left at all: nothing will ever resolve them but this.
        let orphans: Vec<String> = self
            .states
            .iter()
            .filter(|(fp, s)| s.rule == rule.name && !seen.contains(*fp))
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in orphans {
            if let Some(state) = self.states.remove(&fp) {
                out.push(ended(state, now_ms, "no data in the rule's window"));
            }
        }
        out
    }

    /// Feeds one sample to every rule that selects its series.
    pub fn observe(&mut self, sample: &Sample, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        // An overflow series mixes many label sets: its consecutive values are no one's.
        if sample.value.is_nan() || sample.series.is_overflow() {
            return out;
        }
        for rule in &self.rules {
            let RuleKind::Consecutive(c) = &rule.kind else {
                continue;
            };
            if !sample.series.matches(&c.metric, &c.matchers) {
                continue;
            }
            let critical = c.critical.is_some_and(|k| k.breached(sample.value));
            let breached = critical || c.condition.breached(sample.value);
            let severity = if critical {
                Severity::Critical
            } else {
                rule.severity
            };
            let fp = fingerprint(&rule.name, &sample.series.labels);
            let note = sample.note.as_deref().map(str::to_string);
            match self.states.get_mut(&fp) {
                None if breached => {
                    let mut state = AlertState {
                        rule: rule.name.clone(),
                        labels: sample.series.labels.clone(),
                        severity,
                        status: AlertStatus::Pending,
                        breaches: 1,
                        clears: 0,
                        since_ms: sample.ts_ms,
                        fired_at_ms: None,
                        value: sample.value,
                        note,
                    };
                    let kind = if c.fire_after <= 1 {
                        state.status = AlertStatus::Firing;
                        state.fired_at_ms = Some(now_ms);
                        TransitionKind::Firing
                    } else {
                        TransitionKind::Pending
                    };
                    out.push(Transition {
                        kind,
                        alert: state.clone(),
                        at_ms: now_ms,
                        reason: None,
                    });
                    self.states.insert(fp, state);
                }
                None => {}
                Some(state) if breached => {
                    state.breaches = state.breaches.saturating_add(1);
                    state.clears = 0;
                    state.value = sample.value;
                    // Past the critical level the alert is raised, and stays raised.
                    state.severity = state.severity.max(severity);
                    if note.is_some() {
                        state.note = note;
                    }
                    if state.status == AlertStatus::Pending && state.breaches >= c.fire_after {
                        state.status = AlertStatus::Firing;
                        state.fired_at_ms = Some(now_ms);
                        out.push(Transition {
                            kind: TransitionKind::Firing,
                            alert: state.clone(),
                            at_ms: now_ms,
                            reason: None,
                        });
                    }
                }
                Some(state) => match state.status {
                    AlertStatus::Pending => {
                        if let Some(state) = self.states.remove(&fp) {
                            out.push(Transition {
                                kind: TransitionKind::Cleared,
                                alert: state,
                                at_ms: now_ms,
                                reason: None,
                            });
                        }
                    }
                    AlertStatus::Firing => {
                        state.clears = state.clears.saturating_add(1);
                        if state.clears >= c.resolve_after
                            && let Some(state) = self.states.remove(&fp)
                        {
                            out.push(Transition {
                                kind: TransitionKind::Resolved,
                                alert: state,
                                at_ms: now_ms,
                                reason: None,
                            });
                        }
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsecutiveRule;
    use crate::series::SeriesKey;
    use crate::vocab::Condition;

    fn rule(name: &str, fire_after: u32, resolve_after: u32) -> Rule {
        Rule {
            name: name.into(),
            severity: Severity::Critical,
            summary: "Site down".into(),
            runbook_url: None,
            dashboard_url: None,
            channels: None,
            depends_on: Vec::new(),
            page_on_client_data: false,
            client_reported: false,
            kind: RuleKind::Consecutive(ConsecutiveRule {
                metric: "probe_up".into(),
                matchers: Labels::new(),
                condition: Condition::parse("< 1").unwrap(),
                critical: None,
                fire_after,
                resolve_after,
            }),
        }
    }

    fn probe(target: &str, t: i64, up: bool) -> Sample {
        Sample {
            series: SeriesKey::new("probe_up", &[("target", target)]),
            ts_ms: t,
            value: if up { 1.0 } else { 0.0 },
            note: (!up).then(|| "HTTP 500".into()),
        }
    }

    fn threshold_rule(condition: &str, resolve: Option<&str>, hold_s: u64) -> Rule {
        Rule {
            name: "error_rate".into(),
            severity: Severity::Warning,
            summary: "Error rate high".into(),
            runbook_url: None,
            dashboard_url: None,
            channels: None,
            depends_on: Vec::new(),
            page_on_client_data: false,
            client_reported: false,
            kind: RuleKind::Window(crate::config::WindowRule {
                input: crate::config::WindowInput::Series {
                    metric: "error_ratio".into(),
                    matchers: Labels::new(),
                    agg: crate::query::Agg::Avg,
                    window: std::time::Duration::from_secs(300),
                },
                condition: Condition::parse(condition).unwrap(),
                critical: None,
                resolve: resolve.map(|r| Condition::parse(r).unwrap()),
                hold: std::time::Duration::from_secs(hold_s),
                every: std::time::Duration::from_secs(30),
                context: Vec::new(),
            }),
        }
    }

    fn at(v: Option<f64>) -> Vec<WindowValue> {
        vec![WindowValue {
            labels: [("endpoint".to_string(), "/api/segments".to_string())].into(),
            value: v,
            note: None,
        }]
    }

    #[test]
    fn a_threshold_held_for_its_duration_fires_and_resolves_with_hysteresis() {
        // > 1 % sustained for 5 minutes, resolving below 0.5 %; evaluated every 30 s.
        let (mut e, _) = Engine::restore(
            vec![threshold_rule("> 0.01", Some("< 0.005"), 300)],
            vec![],
            0,
        );
        let min = 60_000;
        let mut log = Vec::new();
        let values = [
            (0, 0.002),
            (1, 0.02), // pending from here
            (3, 0.03),
            (5, 0.008), // dips under the threshold: clears
            (6, 0.02),  // pending again
            (10, 0.02),
            (11, 0.015), // 5 minutes since 6: fires
            (12, 0.007), // between the two thresholds: still firing
            (13, 0.004), // under 0.5 %: resolves
        ];
        for (m, v) in values {
            for t in e.evaluate("error_rate", &at(Some(v)), m * min) {
                log.push((m, t.kind));
            }
        }
        assert_eq!(
            log,
            vec![
                (1, TransitionKind::Pending),
                (5, TransitionKind::Cleared),
                (6, TransitionKind::Pending),
                (11, TransitionKind::Firing),
                (13, TransitionKind::Resolved),
            ]
        );
        // A week of evaluations every 30 s in a few milliseconds: one firing per breach.
        let mut fired = 0;
        for i in 0..(7 * 24 * 120) {
            let v = if (i / 120) % 24 == 3 { 0.05 } else { 0.001 };
            fired += e
                .evaluate("error_rate", &at(Some(v)), 14 * min + i * 30_000)
                .iter()
                .filter(|t| t.kind == TransitionKind::Firing)
                .count();
        }
        assert_eq!(fired, 7);
    }

    #[test]
    fn a_critical_level_raises_a_firing_alert_and_it_stays_raised_until_resolved() {
        let mut rule = threshold_rule("> 500", Some("< 400"), 0);
        if let RuleKind::Window(th) = &mut rule.kind {
            th.critical = Some(Condition::parse("> 1000").unwrap());
        }
        let (mut e, _) = Engine::restore(vec![rule], vec![], 0);
        let fired = e.evaluate("error_rate", &at(Some(700.0)), 1_000);
        assert_eq!(kinds(&fired), vec![TransitionKind::Firing]);
        assert_eq!(fired[0].alert.severity, Severity::Warning);
        assert!(
            e.evaluate("error_rate", &at(Some(1500.0)), 2_000)
                .is_empty()
        );
        assert_eq!(e.alerts().next().unwrap().severity, Severity::Critical);
        e.evaluate("error_rate", &at(Some(700.0)), 3_000);
        assert_eq!(e.alerts().next().unwrap().severity, Severity::Critical);
        let resolved = e.evaluate("error_rate", &at(Some(300.0)), 4_000);
        assert_eq!(kinds(&resolved), vec![TransitionKind::Resolved]);
        // Straight past the critical level: fires critical.
        let fired = e.evaluate("error_rate", &at(Some(1200.0)), 5_000);
        assert_eq!(fired[0].alert.severity, Severity::Critical);
    }

    #[test]
    fn a_raised_alert_stays_critical_across_a_restart() {
        let mut rule = threshold_rule("> 500", Some("< 400"), 0);
        if let RuleKind::Window(th) = &mut rule.kind {
            th.critical = Some(Condition::parse("> 1000").unwrap());
        }
        let (mut e, _) = Engine::restore(vec![rule.clone()], vec![], 0);
        e.evaluate("error_rate", &at(Some(1500.0)), 1_000);
        let stored: Vec<AlertState> = e.alerts().cloned().collect();
        assert_eq!(stored[0].severity, Severity::Critical);
        let (mut e, ended) = Engine::restore(vec![rule], stored, 2_000);
        assert!(ended.is_empty());
        assert_eq!(e.alerts().next().unwrap().severity, Severity::Critical);
        e.evaluate("error_rate", &at(Some(700.0)), 3_000);
        assert_eq!(e.alerts().next().unwrap().severity, Severity::Critical);
        // A NaN is no data: the alert resolves instead of hanging on.
        let gone = e.evaluate("error_rate", &at(Some(f64::NAN)), 4_000);
        assert_eq!(kinds(&gone), vec![TransitionKind::Resolved]);
    }

    #[test]
    fn a_consecutive_rule_with_a_critical_level_raises_its_alert() {
        let mut r = rule("slow", 3, 1);
        if let RuleKind::Consecutive(c) = &mut r.kind {
            c.metric = "probe_duration_seconds".into();
            c.condition = Condition::parse("> 1").unwrap();
            c.critical = Some(Condition::parse("> 5").unwrap());
        }
        r.severity = Severity::Warning;
        let (mut e, _) = Engine::restore(vec![r], vec![], 0);
        let s = |t: i64, v: f64| Sample {
            series: SeriesKey::new("probe_duration_seconds", &[("target", "web")]),
            ts_ms: t,
            value: v,
            note: None,
        };
        e.observe(&s(1, 2.0), 1);
        e.observe(&s(2, 2.0), 2);
        let fired = e.observe(&s(3, 2.0), 3);
        assert_eq!(fired[0].alert.severity, Severity::Warning);
        e.observe(&s(4, 7.0), 4);
        assert_eq!(e.alerts().next().unwrap().severity, Severity::Critical);
        e.observe(&s(5, 2.0), 5);
        assert_eq!(e.alerts().next().unwrap().severity, Severity::Critical);
    }

    #[test]
    fn a_pending_window_alert_restored_after_a_restart_keeps_counting_its_for() {
        let rule = threshold_rule("> 0.01", None, 300);
        let (mut e, _) = Engine::restore(vec![rule.clone()], vec![], 0);
        let pending = e.evaluate("error_rate", &at(Some(0.02)), 60_000);
        assert_eq!(kinds(&pending), vec![TransitionKind::Pending]);
        // The daemon restarts with the stored pending state; five minutes after the first
        // breach it fires, not five minutes after the restart.
        let (mut e, ended) = Engine::restore(vec![rule], vec![pending[0].alert.clone()], 200_000);
        assert!(ended.is_empty());
        assert!(
            e.evaluate("error_rate", &at(Some(0.02)), 300_000)
                .is_empty()
        );
        let fired = e.evaluate("error_rate", &at(Some(0.02)), 360_000);
        assert_eq!(kinds(&fired), vec![TransitionKind::Firing]);
    }

    #[test]
    fn no_data_resolves_a_firing_threshold_alert_and_a_vanished_series_too() {
        let (mut e, _) = Engine::restore(vec![threshold_rule("> 5", None, 0)], vec![], 0);
        let fired = e.evaluate("error_rate", &at(Some(9.0)), 1_000);
        assert_eq!(kinds(&fired), vec![TransitionKind::Firing]);
        assert_eq!(fired[0].alert.value, 9.0);
        let gone = e.evaluate("error_rate", &at(None), 2_000);
        assert_eq!(kinds(&gone), vec![TransitionKind::Resolved]);
        assert_eq!(
            gone[0].reason.as_deref(),
            Some("no data in the rule's window")
        );
        e.evaluate("error_rate", &at(Some(9.0)), 3_000);
        let orphaned = e.evaluate("error_rate", &[], 4_000);
        assert_eq!(kinds(&orphaned), vec![TransitionKind::Resolved]);
        // Samples do not drive window rules.
        assert!(e.observe(&probe("web", 5_000, false), 5_000).is_empty());
    }

    fn kinds(ts: &[Transition]) -> Vec<TransitionKind> {
        ts.iter().map(|t| t.kind).collect()
    }

    #[test]
    fn fires_after_n_failures_and_resolves_after_m_successes() {
        let (mut e, _) = Engine::restore(vec![rule("down", 3, 2)], vec![], 0);
        let mut all = Vec::new();
        let pattern = [
            true, false, false, false, false, true, false, true, true, true,
        ];
        for (i, up) in pattern.into_iter().enumerate() {
            let t = i as i64 * 1000;
            all.push(kinds(&e.observe(&probe("web", t, up), t)));
        }
        use TransitionKind::*;
        assert_eq!(
            all,
            vec![
                vec![],
                vec![Pending],
                vec![],
                vec![Firing],
                vec![],
                vec![],
                vec![], // a failure between successes restarts the resolve count
                vec![],
                vec![Resolved],
                vec![],
            ]
        );
    }

    /// Made-up client label values land in one overflow series; their alternating values
    /// must not page anyone through a consecutive rule.
    #[test]
    fn the_overflow_series_never_fires_a_consecutive_rule() {
        let (mut e, _) = Engine::restore(vec![rule("down", 2, 1)], vec![], 0);
        let mut ts = Vec::new();
        for t in 0..5 {
            ts.extend(e.observe(&probe(crate::series::OVERFLOW, t * 1000, false), t * 1000));
        }
        assert!(ts.is_empty(), "{ts:?}");
        assert_eq!(e.alerts().count(), 0);
        for t in 0..2 {
            ts.extend(e.observe(&probe("api", t * 1000, false), t * 1000));
        }
        assert_eq!(
            kinds(&ts),
            [TransitionKind::Pending, TransitionKind::Firing]
        );
    }

    #[test]
    fn a_success_while_pending_clears_without_firing() {
        let (mut e, _) = Engine::restore(vec![rule("down", 3, 1)], vec![], 0);
        assert_eq!(
            kinds(&e.observe(&probe("web", 0, false), 0)),
            vec![TransitionKind::Pending]
        );
        assert_eq!(
            kinds(&e.observe(&probe("web", 1, true), 1)),
            vec![TransitionKind::Cleared]
        );
        assert_eq!(e.alerts().count(), 0);
    }

    #[test]
    fn each_label_set_is_its_own_alert() {
        let (mut e, _) = Engine::restore(vec![rule("down", 2, 1)], vec![], 0);
        for t in 0..2 {
            e.observe(&probe("a", t, false), t);
        }
        e.observe(&probe("b", 5, false), 5);
        let states: Vec<_> = e.alerts().map(|a| (a.fingerprint(), a.status)).collect();
        assert_eq!(
            states,
            vec![
                (r#"down{target="a"}"#.to_string(), AlertStatus::Firing),
                (r#"down{target="b"}"#.to_string(), AlertStatus::Pending),
            ]
        );
    }

    #[test]
    fn restored_firing_alert_does_not_fire_again_and_still_resolves() {
        let (mut e, _) = Engine::restore(vec![rule("down", 2, 1)], vec![], 0);
        e.observe(&probe("web", 0, false), 0);
        e.observe(&probe("web", 1, false), 1);
        let saved: Vec<AlertState> = e.alerts().cloned().collect();
        let (mut e2, ts) = Engine::restore(vec![rule("down", 2, 1)], saved, 10);
        assert!(ts.is_empty());
        assert!(e2.observe(&probe("web", 11, false), 11).is_empty());
        assert_eq!(
            kinds(&e2.observe(&probe("web", 12, true), 12)),
            vec![TransitionKind::Resolved]
        );
    }

    #[test]
    fn retire_resolves_firing_and_clears_pending_alerts_of_vanished_series() {
        let (mut e, _) = Engine::restore(vec![rule("down", 2, 1)], vec![], 0);
        for t in 0..2 {
            e.observe(&probe("a", t, false), t);
        }
        e.observe(&probe("b", 5, false), 5);
        let ts = e.retire(
            |_, labels| labels.get("target").is_some_and(|t| t != "c"),
            9,
            "gone",
        );
        assert_eq!(
            kinds(&ts),
            vec![TransitionKind::Resolved, TransitionKind::Cleared]
        );
        assert!(ts.iter().all(|t| t.reason.as_deref() == Some("gone")));
        assert_eq!(e.alerts().count(), 0);
    }

    #[test]
    fn reload_resolves_alerts_of_a_removed_rule() {
        let (mut e, _) = Engine::restore(vec![rule("down", 1, 1)], vec![], 0);
        e.observe(&probe("web", 0, false), 0);
        let ts = e.reload(vec![rule("other", 1, 1)], 5);
        assert_eq!(kinds(&ts), vec![TransitionKind::Resolved]);
        assert!(ts[0].reason.is_some());
    }
}

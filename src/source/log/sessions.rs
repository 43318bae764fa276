//! Sessions of a log source's events (`[logs.sessions]`), PostHog's way: the events that
//! carry one session id, until the id has been idle for `idle` (30 minutes) or the session is
//! `max_length` (24 hours) long. When a session ends it is written once: one to the count
//! `NAME`, and one observation each to `NAME_duration_seconds` (first to last event),
//! `NAME_events` and every `NAME_COUNT` (its events that matched).
//!
//! The open sessions are held in memory, at most `max_open`; past that the least recently
//! active tenth ends early (counted as evicted). They are not stored: a restart, or a change
//! of the source's configuration, forgets the sessions open then.

use rustc_hash::FxHashMap;

use crate::config::Sessions;
use crate::metrics::LogCounts;
use crate::series::SeriesKey;
use crate::store::bucket::Bucket;

/// How often (in event time) open sessions are looked over for ones that ended.
const SWEEP_EVERY_MS: i64 = 10_000;

/// One open session.
#[derive(Debug, Clone)]
struct Open {
    first_ms: i64,
    last_ms: i64,
    events: u64,
    /// Per `count`: its events that matched.
    counts: Vec<u64>,
}

/// A source's open sessions and what the ended ones wrote since the last flush.
pub struct SessionState {
    cfg: Sessions,
    interval_ms: i64,
    /// The count, duration, events and each `count`, in that order.
    keys: Vec<SeriesKey>,
    open: FxHashMap<Box<str>, Open>,
    /// The newest event time seen; sessions idle for `idle` before it have ended.
    clock_ms: i64,
    swept_ms: i64,
    /// Sessions ended per interval start.
    ended: FxHashMap<i64, u64>,
    /// Observations per (key, interval start).
    observed: FxHashMap<(usize, i64), Bucket>,
}

impl SessionState {
    pub fn new(cfg: &Sessions, interval_ms: i64) -> SessionState {
        SessionState {
            keys: cfg
                .series_names()
                .iter()
                .map(|n| SeriesKey::new(n, &[]))
                .collect(),
            cfg: cfg.clone(),
            interval_ms: interval_ms.max(1),
            open: FxHashMap::default(),
            clock_ms: i64::MIN,
            swept_ms: i64::MIN,
            ended: FxHashMap::default(),
            observed: FxHashMap::default(),
        }
    }

    fn idle_ms(&self) -> i64 {
        self.cfg.idle.as_millis().min(i64::MAX as u128) as i64
    }

    /// One event of session `id` at `ts`; `hits[i]` whether it matched `count[i]`.
    pub fn event(&mut self, id: &str, ts: i64, hits: &[bool], counts: &mut LogCounts) {
        self.clock_ms = self.clock_ms.max(ts);
        let idle = self.idle_ms();
        let max_length = self.cfg.max_length.as_millis().min(i64::MAX as u128) as i64;
        let add = |o: &mut Open| {
            o.first_ms = o.first_ms.min(ts);
            o.last_ms = o.last_ms.max(ts);
            o.events += 1;
            for (n, hit) in o.counts.iter_mut().zip(hits) {
                *n += u64::from(*hit);
            }
        };
        if let Some(o) = self.open.get_mut(id) {
            // Within the session: not idle too long since its last event, not too long in all.
            if ts - o.last_ms <= idle && ts - o.first_ms < max_length {
                add(o);
                return;
            }
            if let Some(o) = self.open.remove(id) {
                self.end(&o);
            }
        } else if self.open.len() >= self.cfg.max_open {
            let evicted = self.evict();
            counts.sessions_evicted += evicted;
        }
        let mut o = Open {
            first_ms: ts,
            last_ms: ts,
            events: 0,
            counts: vec![0; self.cfg.counts.len()],
        };
        add(&mut o);
        self.open.insert(Box::from(id), o);
    }

    /// Ends the least recently active tenth of the open sessions (at least one); how many.
    fn evict(&mut self) -> u64 {
        let mut by_last: Vec<(i64, Box<str>)> = self
            .open
            .iter()
            .map(|(id, o)| (o.last_ms, id.clone()))
            .collect();
        by_last.sort_unstable();
        let n = (by_last.len() / 10).max(1);
        for (_, id) in by_last.into_iter().take(n) {
            if let Some(o) = self.open.remove(&id) {
                self.end(&o);
            }
        }
        n as u64
    }

    /// Writes an ended session, dated at its last event.
    fn end(&mut self, o: &Open) {
        let start = o.last_ms.div_euclid(self.interval_ms) * self.interval_ms;
        *self.ended.entry(start).or_default() += 1;
        let values = [(o.last_ms - o.first_ms) as f64 / 1000.0, o.events as f64]
            .into_iter()
            .chain(o.counts.iter().map(|n| *n as f64));
        for (i, v) in values.enumerate() {
            self.observed
                .entry((i + 1, start))
                .or_insert_with(|| Bucket::empty(start, true))
                .observe(v);
        }
    }

    /// Ends the sessions idle since before `now - idle`.
    fn sweep(&mut self, now: i64) {
        let before = now.saturating_sub(self.idle_ms());
        let ended: Vec<Box<str>> = self
            .open
            .iter()
            .filter(|(_, o)| o.last_ms < before)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(o) = self.open.remove(&id) {
                self.end(&o);
            }
        }
    }

    /// Ends the sessions that went idle by the wall clock `now`, for a source that has had no
    /// event for `idle` (when events flow, their own times decide).
    pub fn tick(&mut self, now: i64, newest_arrival_ms: i64) {
        if now.saturating_sub(newest_arrival_ms) >= self.idle_ms() {
            self.clock_ms = self.clock_ms.max(now);
            self.sweep(now);
        }
    }

    /// Whether ended sessions wait for the next flush.
    pub fn has_ended(&self) -> bool {
        !self.ended.is_empty()
    }

    /// The ended sessions' counts and observations, as interval summaries; the open count.
    pub fn flush(&mut self, out: &mut Vec<(SeriesKey, Bucket)>) -> u64 {
        if self.clock_ms.saturating_sub(self.swept_ms) >= SWEEP_EVERY_MS {
            self.swept_ms = self.clock_ms;
            self.sweep(self.clock_ms);
        }
        for (start, n) in self.ended.drain() {
            out.push((self.keys[0].clone(), Bucket::repeated(start, 1.0, n)));
        }
        for ((i, _), b) in self.observed.drain() {
            out.push((self.keys[i].clone(), b));
        }
        self.open.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{FieldPath, SessionCount};

    fn cfg(max_open: usize) -> Sessions {
        Sessions {
            name: "app_sessions".into(),
            id: FieldPath(vec!["properties".into(), "$session_id".into()]),
            idle: Duration::from_secs(1800),
            max_length: Duration::from_secs(86_400),
            max_open,
            counts: vec![SessionCount {
                name: "refreshes".into(),
                matches: Vec::new(),
            }],
        }
    }

    /// (series name, count, sum) of every summary flushed.
    fn flushed(s: &mut SessionState) -> Vec<(String, f64, f64)> {
        let mut out = Vec::new();
        s.flush(&mut out);
        let mut v: Vec<(String, f64, f64)> = out
            .into_iter()
            .map(|(k, b)| (k.name.clone(), b.count, b.sum))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_session_ends_after_thirty_idle_minutes_with_its_figures() {
        let mut s = SessionState::new(&cfg(10), 10_000);
        let mut counts = LogCounts::default();
        // Session a: 0, 10 min (a refresh), 25 min (a refresh); then 31 minutes idle, so the
        // event at 56 min starts a new session of the same id.
        s.event("a", 0, &[false], &mut counts);
        s.event("a", 10 * MIN, &[true], &mut counts);
        s.event("a", 25 * MIN, &[true], &mut counts);
        s.event("a", 56 * MIN, &[false], &mut counts);
        assert_eq!(
            flushed(&mut s),
            [
                ("app_sessions".into(), 1.0, 1.0),
                ("app_sessions_duration_seconds".into(), 1.0, 1500.0),
                ("app_sessions_events".into(), 1.0, 3.0),
                ("app_sessions_refreshes".into(), 1.0, 2.0),
            ]
        );
        // Still open: the second session. The wall clock ends it only once the source has been
        // quiet for the idle time.
        s.tick(70 * MIN, 56 * MIN);
        assert!(!s.has_ended());
        s.tick(87 * MIN, 56 * MIN);
        assert_eq!(
            flushed(&mut s),
            [
                ("app_sessions".into(), 1.0, 1.0),
                ("app_sessions_duration_seconds".into(), 1.0, 0.0),
                ("app_sessions_events".into(), 1.0, 1.0),
                ("app_sessions_refreshes".into(), 1.0, 0.0),
            ]
        );
    }

    #[test]
    fn events_of_other_sessions_end_the_idle_ones_and_the_oldest_are_evicted() {
        let mut s = SessionState::new(&cfg(3), 10_000);
        let mut counts = LogCounts::default();
        s.event("a", 0, &[false], &mut counts);
        s.event("b", MIN, &[false], &mut counts);
        s.event("c", 2 * MIN, &[false], &mut counts);
        // Full: the least recently active (a) ends early to make room.
        s.event("d", 3 * MIN, &[false], &mut counts);
        assert_eq!(counts.sessions_evicted, 1);
        assert_eq!(flushed(&mut s)[0], ("app_sessions".into(), 1.0, 1.0));
        // An hour later by another session's event: b, c and d have been idle for 30 minutes.
        s.event("e", 63 * MIN, &[false], &mut counts);
        let mut out = Vec::new();
        assert_eq!(s.flush(&mut out), 1, "only e is open");
        let sessions: f64 = out
            .iter()
            .filter(|(k, _)| k.name == "app_sessions")
            .map(|(_, b)| b.count)
            .sum();
        assert_eq!(sessions, 3.0);
    }

    #[test]
    fn a_session_is_cut_at_its_maximum_length() {
        let mut c = cfg(10);
        c.max_length = Duration::from_secs(3600);
        let mut s = SessionState::new(&c, 10_000);
        let mut counts = LogCounts::default();
        for m in 0..=70 {
            s.event("a", m * MIN, &[false], &mut counts);
        }
        let got = flushed(&mut s);
        assert_eq!(
            got[1],
            ("app_sessions_duration_seconds".into(), 1.0, 3540.0)
        );
        assert_eq!(got[2], ("app_sessions_events".into(), 1.0, 60.0));
    }
}

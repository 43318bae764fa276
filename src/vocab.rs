//! The shared vocabulary of alerting: how loud an alert is and when a value breaches. A leaf:
//! configuration, rules, notifications and reports all speak it, and it imports nothing from
//! the crate.

use std::fmt;

/// How loud an alert is, and so where it is routed. On disk: inside alert records,
/// notifications and history events, as these snake_case names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Logged only.
    Info,
    /// Routed to `[routing].warning`.
    Warning,
    /// Routed to `[routing].critical`.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl Severity {
    /// The severity named `info`, `warning` or `critical`.
    pub fn parse(name: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison operator of a breach condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// `value OP threshold`, e.g. `< 1` or `> 0.5`: true means the sample breaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub threshold: f64,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let t = text.trim();
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        for (sym, op) in ops {
            if let Some(rest) = t.strip_prefix(sym) {
                let threshold: f64 = rest.trim().parse().map_err(|_| {
                    format!(
                        "`{text}`: `{}` is not a number; write e.g. `< 1` or `> 0.5`",
                        rest.trim()
                    )
                })?;
                if !threshold.is_finite() {
                    return Err(format!("`{text}`: the threshold must be a finite number"));
                }
                return Ok(Condition { op, threshold });
            }
        }
        Err(format!(
            "`{text}` is not a condition; write an operator (<, <=, >, >=, ==, !=) and a number, e.g. `< 1`"
        ))
    }

    /// Whether `value` breaches. NaN never breaches and never clears: it is ignored upstream.
    pub fn breached(&self, value: f64) -> bool {
        match self.op {
            Op::Lt => value < self.threshold,
            Op::Le => value <= self.threshold,
            Op::Gt => value > self.threshold,
            Op::Ge => value >= self.threshold,
            Op::Eq => value == self.threshold,
            Op::Ne => value != self.threshold,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions() {
        let table = [
            ("< 1", Op::Lt, 1.0),
            (">=0.5", Op::Ge, 0.5),
            ("  != 200 ", Op::Ne, 200.0),
            ("== -3", Op::Eq, -3.0),
        ];
        for (text, op, threshold) in table {
            assert_eq!(
                Condition::parse(text),
                Ok(Condition { op, threshold }),
                "{text}"
            );
        }
        assert!(Condition::parse("1").is_err());
        assert!(Condition::parse("< abc").is_err());
        assert!(Condition::parse("> inf").is_err());
    }

    #[test]
    fn breach_checks() {
        let c = Condition::parse("< 1").unwrap();
        assert!(c.breached(0.0));
        assert!(!c.breached(1.0));
        assert!(!c.breached(f64::NAN));
    }
}

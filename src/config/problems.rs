//! Problems and their places: the [`Problem`] and [`ConfigError`] types, [`Problems`] that
//! collects them and turns byte spans into lines, and the reading of the document's tables
//! ([`single`], [`tables`], [`named_elements`], [`element`], [`tag`]) that every section
//! shares.
//!
//! Each section and each element of an array of tables is deserialised on its own, so one
//! broken rule does not hide the problems of the next.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// Where in the document: `rules[2].fire_after`, or empty for the whole file.
    pub path: String,
    pub message: String,
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "  {}", self.file.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.path.is_empty() {
                writeln!(f, ": {}", p.message)?;
            } else {
                writeln!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems and turns byte spans into line numbers.
pub(super) struct Problems<'t> {
    text: &'t str,
    pub(super) list: Vec<Problem>,
}

impl<'t> Problems<'t> {
    pub(super) fn new(text: &'t str) -> Problems<'t> {
        Problems {
            text,
            list: Vec::new(),
        }
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(super) fn push(
        &mut self,
        span: Option<Range<usize>>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = span.map(|s| self.line_of(&s));
        self.list.push(Problem {
            line,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// One table of the document (a section or an array element), for placing problems.
pub(super) struct Site<'a, 'i> {
    pub(super) path: String,
    pub(super) span: Range<usize>,
    pub(super) table: Option<&'a DeTable<'i>>,
}

impl Site<'_, '_> {
    /// The span of `key`'s value, or of the whole table when the key is absent.
    pub(super) fn span_of(&self, key: &str) -> Range<usize> {
        self.table
            .and_then(|t| t.get(key))
            .map(|v| v.span())
            .unwrap_or_else(|| self.span.clone())
    }

    pub(super) fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .and_then(|t| t.get_key_value(key))
            .map(|(k, _)| k.span())
            .unwrap_or_else(|| self.span.clone())
    }

    pub(super) fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

/// Deserialises one optional `[section]`; an absent section deserialises from an empty table.
pub(super) fn single<'a, 'i, T: DeserializeOwned + Default>(
    problems: &mut Problems<'_>,
    value: Option<&'a Spanned<DeValue<'i>>>,
    path: &str,
    root_span: &Range<usize>,
) -> Option<(T, Site<'a, 'i>)> {
    let Some(value) = value else {
        let site = Site {
            path: path.to_string(),
            span: root_span.clone(),
            table: None,
        };
        return Some((T::default(), site));
    };
    let site = Site {
        path: path.to_string(),
        span: value.span(),
        table: value.get_ref().as_table(),
    };
    if site.table.is_none() {
        problems.push(
            Some(value.span()),
            path,
            format!("must be a table, written `[{path}]`"),
        );
        return None;
    }
    let raw = element(problems, value, &site)?;
    Some((raw, site))
}

/// The `name` of every element of an array of tables, whether or not the element is valid
/// otherwise, reporting duplicates. Checking names apart from the rest means a broken element
/// neither hides a duplicate nor causes "no channel named ..." problems elsewhere.
pub(super) fn declared_names(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    path: &str,
    what: &str,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Some(array) = value.and_then(|v| v.get_ref().as_array()) else {
        return names;
    };
    for (i, item) in array.iter().enumerate() {
        let Some(name) = item.get_ref().as_table().and_then(|t| t.get("name")) else {
            continue;
        };
        let Some(text) = name.get_ref().as_str() else {
            continue;
        };
        if !names.insert(text.to_string()) {
            problems.push(
                Some(name.span()),
                format!("{path}[{i}].name"),
                format!("duplicate {what} name `{text}`"),
            );
        }
    }
    names
}

/// The elements of an array of tables such as `[[rules]]`, each with its site.
pub(super) fn tables<'a, 'i>(
    problems: &mut Problems<'_>,
    value: Option<&'a Spanned<DeValue<'i>>>,
    path: &str,
) -> Vec<(&'a Spanned<DeValue<'i>>, Site<'a, 'i>)> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(array) = value.get_ref().as_array() else {
        problems.push(
            Some(value.span()),
            path,
            format!("must be an array of tables, written `[[{path}]]`"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in array.iter().enumerate() {
        let site = Site {
            path: format!("{path}[{i}]"),
            span: item.span(),
            table: item.get_ref().as_table(),
        };
        if site.table.is_none() {
            problems.push(Some(item.span()), site.path, "must be a table");
            continue;
        }
        out.push((item, site));
    }
    out
}

/// The elements of an array-of-tables section of one type, validated by `build`; names are
/// checked for duplicates (the first of a name is kept).
pub(super) fn named_elements<'a, 'i, Raw: DeserializeOwned, T>(
    problems: &mut Problems<'_>,
    value: Option<&'a Spanned<DeValue<'i>>>,
    (path, what): (&str, &str),
    mut build: impl FnMut(&mut Problems<'_>, Raw, &Site<'a, 'i>) -> Option<T>,
    name: impl Fn(&T) -> &str,
) -> Vec<T> {
    declared_names(problems, value, path, what);
    let mut out: Vec<T> = Vec::new();
    for (value, site) in tables(problems, value, path) {
        let built =
            element::<Raw>(problems, value, &site).and_then(|raw| build(problems, raw, &site));
        if let Some(t) = built
            && !out.iter().any(|o| name(o) == name(&t))
        {
            out.push(t);
        }
    }
    out
}

/// The sites of the tables of the array `key` inside `site`, by index.
pub(super) fn sub_sites<'a, 'i>(site: &Site<'a, 'i>, key: &str) -> Vec<Site<'a, 'i>> {
    let items = site
        .table
        .and_then(|t| t.get(key))
        .and_then(|v| v.get_ref().as_array());
    items
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, item)| Site {
                    path: format!("{}.{key}[{i}]", site.path),
                    span: item.span(),
                    table: item.get_ref().as_table(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A word from a closed set that the TOML names a variant by: a `type` or `kind` tag, a
/// `format`, a `tls` mode. Declared with [`keywords!`], which writes the enum, its names and
/// [`Keyword::ALL`] from one list, so that no variant can lack a name or be left out of
/// `ALL`; code that acts on one `match`es it without a catch-all arm, so a new variant does
/// not compile until it is handled.
pub(super) trait Keyword: Copy + 'static {
    /// Every variant, in the order problem messages list them.
    const ALL: &'static [Self];

    /// The word the TOML uses.
    fn name(self) -> &'static str;

    /// The variant `text` names, if any.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == text)
    }

    /// Every name, as problem messages list them: `a, b, c`.
    fn names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Declares an enum whose variants are named by words of the TOML, and its [`Keyword`] impl:
///
/// ```ignore
/// keywords! {
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum StartAt {
///         Beginning = "beginning",
///         End = "end",
///     }
/// }
/// ```
macro_rules! keywords {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vattr:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $($(#[$vattr])* $variant,)+
        }

        impl $crate::config::problems::Keyword for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];

            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}
pub(super) use keywords;

/// Reads the tag (`type` or `kind`) that says which struct a table deserialises into.
///
/// Validation reads the tag and then deserialises the matching struct directly, rather than
/// through `#[serde(tag = ...)]`: serde buffers a tagged enum's content, which loses the line
/// of every field error.
pub(super) fn tag<T: Keyword>(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
) -> Option<T> {
    let value = site.table.and_then(|t| t.get(key));
    let text = value.and_then(|v| v.get_ref().as_str());
    match (value, text) {
        (None, _) => {
            problems.push(
                Some(site.span.clone()),
                site.field(key),
                format!("missing: set `{key}` to one of {}", T::names()),
            );
            None
        }
        (Some(v), text) => {
            let found = text.and_then(T::parse);
            if found.is_none() {
                problems.push(
                    Some(v.span()),
                    site.field(key),
                    format!(
                        "unknown {key} `{}`; expected one of: {}",
                        text.unwrap_or("(not a string)"),
                        T::names()
                    ),
                );
            }
            found
        }
    }
}

pub(super) fn element<T: DeserializeOwned>(
    problems: &mut Problems<'_>,
    value: &Spanned<DeValue<'_>>,
    site: &Site<'_, '_>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(raw) => Some(raw),
        Err(e) => {
            let mut message = e.message().to_string();
            let (path, span) = place_serde_error(site, &message, e.span());
            if is_secret_field(&path) {
                message = redact_quoted(&message);
            }
            if is_duration_field(&path)
                && message.starts_with("invalid type: integer")
                && message.ends_with("expected a string")
            {
                message.push_str("; a duration is written in quotes with its unit, e.g. \"30s\"");
            }
            problems.push(Some(span), path, message);
            None
        }
    }
}

/// Fields that hold a duration (`"30s"`, `"5m"`), for the hint a bare number gets.
fn is_duration_field(path: &str) -> bool {
    let field = path.rsplit('.').next().unwrap_or(path);
    matches!(
        field,
        "interval"
            | "retry_interval"
            | "timeout"
            | "window"
            | "every"
            | "for"
            | "quiet"
            | "max_age"
            | "poll_interval"
            | "max_event_age"
            | "after"
            | "duration"
            | "period"
            | "long"
            | "short"
            | "initial_backoff"
            | "max_backoff"
            | "give_up_after"
            | "max_retry_after"
            | "resend_interval"
            | "repeat_interval"
            | "group_wait"
            | "raw_retention"
            | "history_retention"
            | "distribution_interval"
            | "compact_interval"
            | "false_positive_within"
    )
}

/// Fields whose values may be secrets, so that no message quotes them.
pub(super) fn is_secret_field(path: &str) -> bool {
    let field = path.rsplit('.').next().unwrap_or(path);
    path.contains(".headers") || matches!(field, "webhook_url" | "url" | "password" | "routing_key")
}

/// Serde quotes a bad value between backticks; drop what is inside.
pub(super) fn redact_quoted(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "…" } else { part })
        .collect::<Vec<_>>()
        .join("`")
}

/// Serde names the offending key only in its message; find that key's place in the table.
pub(super) fn place_serde_error(
    site: &Site<'_, '_>,
    message: &str,
    span: Option<Range<usize>>,
) -> (String, Range<usize>) {
    let quoted = message.split('`').nth(1);
    if let Some(key) = quoted {
        if message.starts_with("unknown field") {
            return (site.field(key), site.key_span(key));
        }
        if message.starts_with("missing field") {
            return (site.field(key), site.span.clone());
        }
    }
    let span = span.unwrap_or_else(|| site.span.clone());
    // Point at the field whose value contains the error, when there is one.
    let field = site.table.and_then(|t| {
        t.iter()
            .find(|(_, v)| v.span().start <= span.start && span.end <= v.span().end)
            .map(|(k, _)| k.get_ref().to_string())
    });
    match field {
        Some(f) => (site.field(&f), span),
        None => (site.path.clone(), span),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{ConfigError, Problem};
    use crate::config::testing::{expect, problems};

    #[test]
    fn a_section_that_is_not_a_table() {
        expect(&[
            (
                "daemon = 1\n",
                "daemon",
                1,
                "must be a table, written `[daemon]`",
            ),
            (
                "store = [1]\n",
                "store",
                1,
                "must be a table, written `[store]`",
            ),
        ]);
    }

    #[test]
    fn an_array_section_that_is_not_an_array_of_tables() {
        expect(&[
            (
                "[rules]\nname = \"r\"\n",
                "rules",
                1,
                "must be an array of tables, written `[[rules]]`",
            ),
            (
                "targets = 1\n",
                "targets",
                1,
                "must be an array of tables, written `[[targets]]`",
            ),
            ("channels = [1, 2]\n", "channels[1]", 1, "must be a table"),
        ]);
    }

    #[test]
    fn duplicate_names_are_reported_at_the_second() {
        let text = r#"[[scrapes]]
name = "app"
url = "http://127.0.0.1:9/metrics"

[[scrapes]]
name = "app"
url = "http://127.0.0.1:9/metrics"
"#;
        expect(&[(text, "scrapes[1].name", 6, "duplicate scrape name `app`")]);
        // Only that one: the first of a name is kept and checked as usual.
        assert_eq!(problems(text).len(), 1);
    }

    #[test]
    fn a_missing_or_unknown_tag_lists_the_known_ones() {
        let kinds = "consecutive, threshold, ratio, growth, stale, new_error_type, slo";
        expect(&[
            (
                "[[rules]]\nname = \"r\"\n",
                "rules[0].kind",
                1,
                &format!("missing: set `kind` to one of {kinds}"),
            ),
            (
                "[[rules]]\nname = \"r\"\nkind = \"treshold\"\n",
                "rules[0].kind",
                3,
                &format!("unknown kind `treshold`; expected one of: {kinds}"),
            ),
            (
                "[[rules]]\nname = \"r\"\nkind = 3\n",
                "rules[0].kind",
                3,
                &format!("unknown kind `(not a string)`; expected one of: {kinds}"),
            ),
        ]);
    }

    #[test]
    fn serde_errors_name_the_field_and_its_line() {
        let target = "[[targets]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/\"\n";
        expect(&[
            (
                &format!("{target}intervall = \"30s\"\n"),
                "targets[0].intervall",
                4,
                "unknown field `intervall`, expected one of",
            ),
            (
                "[[targets]]\ntype = \"tcp\"\nname = \"db\"\n",
                "targets[0].address",
                1,
                "missing field `address`",
            ),
            // The name of a missing field that may hold a secret is redacted with the values
            // of such fields; the path still names it.
            (
                "[[targets]]\nname = \"web\"\n",
                "targets[0].url",
                1,
                "missing field `…`",
            ),
            (
                &format!("{target}follow_redirects = \"yes\"\n"),
                "targets[0].follow_redirects",
                4,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[server]\nmax_ingest_bytes = -1\n",
                "server.max_ingest_bytes",
                2,
                "invalid value: integer `-1`, expected usize",
            ),
            // A bare number where a duration goes says how to write one.
            (
                &format!("{target}interval = 5\n"),
                "targets[0].interval",
                4,
                "invalid type: integer `5`, expected a string; a duration is written in quotes with its unit, e.g. \"30s\"",
            ),
        ]);
    }

    /// A value that may be a secret is not quoted in a serde error.
    #[test]
    fn serde_errors_about_secret_fields_do_not_quote_the_value() {
        let text = "[[targets]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/\"\nheaders = { X-Key = 918273645 }\n";
        expect(&[(
            text,
            "targets[0].headers",
            4,
            "invalid type: integer `…`, expected a string",
        )]);
        let all = format!("{:?}", problems(text));
        assert!(!all.contains("918273645"), "{all}");
        // Other fields keep the value, which helps.
        expect(&[(
            "[[targets]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/\"\nmax = 918273645\n",
            "targets[0].max",
            4,
            "unknown field `max`",
        )]);
    }

    #[test]
    fn config_error_display_is_file_line_path_message() {
        let e = ConfigError {
            file: PathBuf::from("/etc/sloguard/config.toml"),
            problems: vec![
                Problem {
                    line: Some(3),
                    path: "rules[0].kind".into(),
                    message: "unknown kind".into(),
                },
                Problem {
                    line: None,
                    path: String::new(),
                    message: "cannot read the file".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "/etc/sloguard/config.toml has 2 problems:\n  /etc/sloguard/config.toml:3: rules[0].kind: unknown kind\n  /etc/sloguard/config.toml: cannot read the file\n"
        );
        let one = ConfigError {
            file: PathBuf::from("c.toml"),
            problems: vec![Problem {
                line: Some(1),
                path: "daemon".into(),
                message: "m".into(),
            }],
        };
        assert_eq!(
            one.to_string(),
            "c.toml has 1 problem:\n  c.toml:1: daemon: m\n"
        );
    }
}

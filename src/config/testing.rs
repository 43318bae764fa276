//! What the configuration's unit tests share: the problems of a text, checked against a
//! table of expected problems.

use std::path::Path;

use super::{Config, Problem};

/// The name the tests give the file; problems are placed in it.
pub(crate) const FILE: &str = "config.toml";

/// Every problem of `text`, validated in-process as `sloguard check` validates a file; none
/// when it is valid.
pub(crate) fn problems(text: &str) -> Vec<Problem> {
    match super::parse(text, Path::new(FILE)) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems,
    }
}

/// The configuration `text` makes; panics with its problems when it has some.
#[track_caller]
pub(crate) fn config(text: &str) -> Config {
    match super::parse(text, Path::new(FILE)) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid configuration, got:\n{e}\n{text}"),
    }
}

/// One expected problem: the configuration text, the problem's path and line, and a part of
/// its message (the whole message where it holds no text from a library).
pub(crate) type Case<'a> = (&'a str, &'a str, usize, &'a str);

/// Checks that each case's text has a problem at its path, on its line, whose message
/// contains its text. Every mismatch is reported, not only the first.
#[track_caller]
pub(crate) fn expect(cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (i, (text, path, line, message)) in cases.iter().enumerate() {
        if let Err(e) = check(text, path, *line, message) {
            failures.push(format!("case {i} ({path}: {message}):\n{e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// [`expect`] for one case whose text is built at run time.
#[track_caller]
pub(crate) fn expect_one(text: &str, path: &str, line: usize, message: &str) {
    if let Err(e) = check(text, path, line, message) {
        panic!("{path}: {message}:\n{e}");
    }
}

fn check(text: &str, path: &str, line: usize, message: &str) -> Result<(), String> {
    let found = problems(text);
    let hit = found
        .iter()
        .any(|p| p.path == path && p.line == Some(line) && p.message.contains(message));
    if hit {
        return Ok(());
    }
    let listed: Vec<String> = found
        .iter()
        .map(|p| format!("  {}: {}: {}", p.line.unwrap_or(0), p.path, p.message))
        .collect();
    Err(format!(
        "expected {line}: {path}: …{message}…, got {}:\n{}\nin:\n{text}",
        if found.is_empty() {
            "no problem".to_string()
        } else {
            format!("{} problems", found.len())
        },
        listed.join("\n")
    ))
}

//! `sloguard check` as an operator runs it: the exit code, the output format
//! (`file:line: path: message`), every problem listed at once, and no secret printed. Each
//! problem's message, path and line is tested in-process next to its section in
//! `src/config/`.

use crate::util::{sloguard, tempdir};

const VALID: &str = r#"[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/services/T/B/x"

[routing]
critical = ["slack"]

[[targets]]
name = "web"
url = "http://127.0.0.1:9/health"
interval = "30s"

[[rules]]
name = "web_down"
kind = "consecutive"
match = { target = "web" }
fire_after = 3
severity = "critical"
summary = "Web down"
"#;

const SECOND_RULE: &str = r#"
[[rules]]
name = "web_down" # again
kind = "consecutive"
severity = "warning"
summary = "Again"
channels = ["slack"]
"#;

/// What `check` did with one file.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The file's path, as the output names it.
    file: String,
}

/// Runs `check` on `text` written to a temporary file.
fn check(text: &str) -> Checked {
    let dir = tempdir();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = sloguard(&["check", "--config", path.to_str().unwrap()], &[]);
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        file: path.display().to_string(),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

#[test]
fn a_valid_file_passes() {
    let c = check(VALID);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert_eq!(
        c.stdout,
        format!("{}: OK (1 target, 1 rule, 1 channel)\n", c.file)
    );
    assert_eq!(c.stderr, "");
}

#[test]
fn a_problem_is_printed_as_file_line_path_message() {
    let text = VALID.replace("interval = \"30s\"", "intervall = \"30s\"");
    let c = check(&text);
    assert_eq!(c.code, Some(1), "{}", c.stderr);
    assert_eq!(c.stdout, "");
    let line = line_of(&text, "intervall");
    let (head, rest) = c.stderr.split_once('\n').unwrap();
    assert_eq!(head, format!("{} has 1 problem:", c.file));
    let expected = format!(
        "  {}:{line}: targets[0].intervall: unknown field `intervall`, expected one of",
        c.file
    );
    assert!(
        rest.starts_with(&expected),
        "{expected:?} not in:\n{}",
        c.stderr
    );
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let text = format!("{VALID}{SECOND_RULE}")
        .replace("\"30s\"", "\"30 parsecs\"")
        .replace("\"critical\"\nsummary", "\"urgent\"\nsummary")
        .replace("critical = [\"slack\"]", "critical = [\"pager\"]");
    let c = check(&text);
    assert_eq!(c.code, Some(1));
    assert!(
        c.stderr.starts_with(&format!("{} has 4 problems:", c.file)),
        "{}",
        c.stderr
    );
    for (path, needle) in [
        ("targets[0].interval", "parsecs"),
        ("rules[0].severity", "urgent"),
        ("rules[1].name", "# again"),
        ("routing.critical", "pager"),
    ] {
        let prefix = format!("  {}:{}: {path}: ", c.file, line_of(&text, needle));
        assert!(
            c.stderr.lines().any(|l| l.starts_with(&prefix)),
            "{prefix:?} missing from:\n{}",
            c.stderr
        );
    }
}

/// A problem of the whole file has a line but no path; a file that cannot be read has
/// neither.
#[test]
fn problems_without_a_path_or_a_line() {
    let text = VALID.replace("summary = \"Web down\"", "summary = \"Web down");
    let c = check(&text);
    assert_eq!(c.code, Some(1));
    let expected = format!("  {}:{}: invalid TOML", c.file, line_of(&text, "summary"));
    assert!(
        c.stderr.contains(&expected),
        "{expected:?} not in:\n{}",
        c.stderr
    );

    let dir = tempdir();
    let missing = dir.path().join("missing.toml");
    let out = sloguard(&["check", "--config", missing.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{0} has 1 problem:\n  {0}: cannot read the file: No such file or directory",
        missing.display()
    );
    assert!(
        stderr.starts_with(&expected),
        "{expected:?} not in:\n{stderr}"
    );
}

/// Secrets in a broken file — a webhook URL, a header value, a database password — are
/// named by where they came from, never printed.
#[test]
fn a_secret_is_never_printed() {
    const TOKEN: &str = "XOXB7SECRET5TOKEN";
    let text = format!(
        "{}\n[[databases]]\nname = \"db\"\nurl = \"mysql://monitor:{TOKEN}@127.0.0.1/db\"\n",
        VALID
            .replace(
                "\"http://127.0.0.1:9/services/T/B/x\"",
                &format!("\"hooks.slack.example/{TOKEN}\""),
            )
            .replace(
                "url = \"http://127.0.0.1:9/health\"",
                "url = \"http://127.0.0.1:9/health\"\nheaders = { X-Api-Key = 918273645 }",
            )
    );
    let c = check(&text);
    assert_eq!(c.code, Some(1));
    // The problems are there, so the check below is not vacuous.
    for fragment in [
        "channels[0].webhook_url: the URL is not a valid URL",
        "targets[0].headers: invalid type: integer `…`, expected a string",
        "databases[0].url: the connection string is not a PostgreSQL connection string",
    ] {
        assert!(
            c.stderr.contains(fragment),
            "{fragment:?} not in:\n{}",
            c.stderr
        );
    }
    let all = format!("{}{}", c.stdout, c.stderr);
    assert!(!all.contains(TOKEN), "a secret was printed:\n{all}");
    assert!(
        !all.contains("918273645"),
        "a header value was printed:\n{all}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");
    let out = sloguard(
        &["check", "--config", path],
        &[
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T000/B000/XXXX",
            ),
            ("OPS_WEBHOOK_TOKEN", "token"),
            ("SMTP_PASSWORD", "password"),
            ("SLOGUARD_API_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY0000000000000000000001"),
            ("SUPABASE_SECRET_KEY", "sb_secret_0000"),
            ("POSTHOG_PROJECT_TOKEN", "phc_example0000"),
            (
                "SUPABASE_DB_URL",
                "postgres://sloguard_monitor.abcdefghijklmnop:pw@aws-0-us-east-1.pooler.supabase.com:5432/postgres",
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every section it fills is counted, in the singular where there is one.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{path}: OK (5 targets, 1 database, 1 scrape, 2 log sources, 19 rules, 5 channels, 2 reports)\n"
        )
    );
}

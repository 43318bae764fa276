//! `sloguard check`: every problem of a broken file is listed with its line and field.

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

/// Runs `check` on `text`; returns (success, stderr, the path of the file).
fn check(text: &str) -> (bool, String, String) {
    let dir = tempdir();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = sloguard(&["check", "--config", path.to_str().unwrap()], &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

#[test]
fn a_valid_file_passes() {
    let dir = tempdir();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID).unwrap();
    let out = sloguard(&["check", "--config", path.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: OK (1 targets, 1 rules, 1 channels)\n", path.display())
    );
}

#[test]
fn each_broken_file_names_the_line_and_the_field() {
    // (what is broken, the text, the line's needle, the field path, a fragment of the message)
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "unknown key",
            VALID.replace("interval = \"30s\"", "intervall = \"30s\""),
            "intervall",
            "targets[0].intervall",
            "unknown field `intervall`",
        ),
        (
            "bad duration",
            VALID.replace("\"30s\"", "\"30 parsecs\""),
            "parsecs",
            "targets[0].interval",
            "`30 parsecs` is not a duration",
        ),
        (
            "missing webhook URL",
            VALID.replace("webhook_url = \"http://127.0.0.1:9/services/T/B/x\"\n", ""),
            "[[channels]]",
            "channels[0].webhook_url",
            "missing: set `webhook_url`",
        ),
        (
            "invalid URL",
            VALID.replace("http://127.0.0.1:9/services/T/B/x", "hooks.slack.example/x"),
            "hooks.slack.example",
            "channels[0].webhook_url",
            "not a valid URL",
        ),
        (
            "duplicate rule names",
            format!("{VALID}{SECOND_RULE}"),
            "# again",
            "rules[1].name",
            "duplicate rule name `web_down`",
        ),
        (
            "unset env secret",
            VALID.replace(
                "\"http://127.0.0.1:9/services/T/B/x\"",
                "\"env:SLOGUARD_TEST_NOT_SET\"",
            ),
            "env:SLOGUARD_TEST_NOT_SET",
            "channels[0].webhook_url",
            "environment variable SLOGUARD_TEST_NOT_SET is not set",
        ),
        (
            "plaintext fallback asked of a database",
            format!(
                "{VALID}\n[[databases]]\nname = \"db\"\nurl = \"postgres://u:p@127.0.0.1:5432/db?sslmode=prefer\"\n"
            ),
            "sslmode=prefer",
            "databases[0].url",
            "never falls back to plaintext",
        ),
        (
            "a TLS mode that does not exist",
            format!(
                "{VALID}\n[[databases]]\nname = \"db\"\nurl = \"postgres://u:p@127.0.0.1/db\"\ntls = \"verify-ca\"\n"
            ),
            "verify-ca",
            "databases[0].tls",
            "`verify-ca` is not a TLS mode",
        ),
        (
            "an SQL target on an unknown database",
            format!(
                "{VALID}\n[[targets]]\ntype = \"sql\"\nname = \"q\"\ndatabase = \"nope\"\nsql = \"SELECT 1\"\n"
            ),
            "database = \"nope\"",
            "targets[1].database",
            "`nope` is not a [[databases]] entry",
        ),
        (
            "a statement matcher with neither regex nor id",
            format!(
                "{VALID}\n[[databases]]\nname = \"db\"\nurl = \"postgres://u:p@127.0.0.1/db\"\n[[databases.query]]\nname = \"x\"\n"
            ),
            "[[databases.query]]",
            "databases[0].query[0]",
            "give either `match`",
        ),
        (
            "a connection string that is not one",
            format!("{VALID}\n[[databases]]\nname = \"db\"\nurl = \"mysql://u:p@127.0.0.1/db\"\n"),
            "mysql://",
            "databases[0].url",
            "not a PostgreSQL connection string",
        ),
        (
            "unknown section",
            format!("{VALID}\n[dameon]\nretention = \"7d\"\n"),
            "[dameon]",
            "dameon",
            "unknown section",
        ),
        (
            "wrong type",
            VALID.replace("fire_after = 3", "fire_after = \"three\""),
            "fire_after",
            "rules[0].fire_after",
            "invalid type",
        ),
        (
            "unknown channel in routing",
            VALID.replace(
                "critical = [\"slack\"]",
                "critical = [\"slack\", \"pager\"]",
            ),
            "\"pager\"",
            "routing.critical",
            "no channel named `pager`",
        ),
        (
            "bad severity",
            VALID.replace("\"critical\"\nsummary", "\"urgent\"\nsummary"),
            "urgent",
            "rules[0].severity",
            "`urgent` is not a severity",
        ),
        (
            "unknown rule kind",
            VALID.replace("kind = \"consecutive\"", "kind = \"consecutiv\""),
            "consecutiv",
            "rules[0].kind",
            "unknown kind `consecutiv`; expected one of: consecutive",
        ),
        (
            "an alert routed nowhere",
            VALID.replace("critical = [\"slack\"]", "warning = [\"slack\"]"),
            "severity = \"critical\"",
            "rules[0].severity",
            "a critical alert would notify no one",
        ),
        (
            "a duration too long to mean anything",
            VALID.replace("\"30s\"", "\"500000d\""),
            "500000d",
            "targets[0].interval",
            "must be at most 3650d",
        ),
        (
            "a secret header value of the wrong type is not quoted",
            VALID.replace(
                "url = \"http://127.0.0.1:9/health\"",
                "url = \"http://127.0.0.1:9/health\"\nheaders = { X-Api-Key = 918273645 }",
            ),
            "X-Api-Key",
            "targets[0].headers",
            "invalid type: integer `…`, expected a string",
        ),
        (
            "depends_on in a circle",
            format!(
                "{}{}",
                VALID.replace(
                    "summary = \"Web down\"",
                    "summary = \"Web down\"\ndepends_on = [\"web_slow\"]"
                ),
                "\n[[rules]]\nname = \"web_slow\"\nkind = \"consecutive\"\nseverity = \"critical\"\nsummary = \"Slow\"\ndepends_on = [\"web_down\"] # back\n"
            ),
            "depends_on = [\"web_slow\"]",
            "rules[0].depends_on",
            "depends_on goes round in a circle (web_down → web_slow → web_down)",
        ),
        (
            "an ingest source with files",
            format!(
                "{VALID}\n[[logs]]\nname = \"ph\"\ningest = \"posthog\"\ntoken = \"phc_x\"\nfiles = [\"/var/log/x.log\"] # both\n[[logs.metric]]\nname = \"m\"\nkind = \"counter\"\n"
            ),
            "ingest = ",
            "logs[0].ingest",
            "give one of `files`, `command` or `ingest`",
        ),
        (
            "an ingest source without its token",
            format!(
                "{VALID}\n[[logs]]\nname = \"ph\"\ningest = \"posthog\" # no token\n[[logs.metric]]\nname = \"m\"\nkind = \"counter\"\n"
            ),
            "[[logs]]",
            "logs[0].token",
            "missing: set `token`",
        ),
        (
            "a panel series without a metric",
            format!(
                "{VALID}\n[[dashboard.panel]]\ntitle = \"Latency\"\nseries = [{{ label = \"p95\", agg = \"p95\" }}] # none\n"
            ),
            "# none",
            "dashboard.panel[0].series[0].metric",
            "give `metric`",
        ),
        (
            "a panel series with a bad aggregate",
            format!(
                "{VALID}\n[[dashboard.panel]]\ntitle = \"Latency\"\nseries = [{{ metric = \"x\", agg = \"p101\" }}] # bad agg\n"
            ),
            "# bad agg",
            "dashboard.panel[0].series[0].agg",
            "p101",
        ),
        (
            "a dashboard range that is not a duration",
            format!("{VALID}\n[dashboard]\ndefault_range = \"a day\"\n"),
            "a day",
            "dashboard.default_range",
            "is not a duration",
        ),
        (
            "a report in a time zone that does not exist",
            format!(
                "{VALID}\n[[reports]]\nname = \"weekly\"\nschedule = \"0 9 * * MON\"\ntimezone = \"Europe/Atlantis\"\nchannel = \"slack\"\n"
            ),
            "Europe/Atlantis",
            "reports[0].timezone",
            "`Europe/Atlantis` is not a time zone",
        ),
        (
            "a report through a channel that is not email",
            format!(
                "{VALID}\n[[reports]]\nname = \"weekly\"\nschedule = \"0 9 * * MON\"\nchannel = \"slack\" # not mail\n"
            ),
            "# not mail",
            "reports[0].channel",
            "`slack` is not an email channel",
        ),
        (
            "a report window that is not one",
            format!(
                "{VALID}\n[[reports]]\nname = \"weekly\"\nschedule = \"0 9 * * MON\"\nchannel = \"slack\"\nwindow = \"fortnight\"\n"
            ),
            "fortnight",
            "reports[0].window",
            "use a duration (`7d`), `last_week` or `last_month`",
        ),
        (
            "bad condition",
            VALID.replace("fire_after = 3", "fire_after = 3\ncondition = \"below 1\""),
            "below 1",
            "rules[0].condition",
            "is not a condition",
        ),
    ];
    for (what, text, needle, path, fragment) in cases {
        let (ok, stderr, file) = check(&text);
        assert!(!ok, "{what}: check passed");
        let expected = format!("{file}:{}: {path}: ", line_of(&text, needle));
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&expected))
            .unwrap_or_else(|| panic!("{what}: no line starting with {expected:?} in:\n{stderr}"));
        assert!(
            line.contains(fragment),
            "{what}: {line:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let text = format!("{VALID}{SECOND_RULE}")
        .replace("\"30s\"", "\"30 parsecs\"")
        .replace("\"critical\"\nsummary", "\"urgent\"\nsummary")
        .replace("critical = [\"slack\"]", "critical = [\"pager\"]");
    let (ok, stderr, file) = check(&text);
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!("{file} has 4 problems:")),
        "{stderr}"
    );
    for path in [
        "targets[0].interval",
        "rules[0].severity",
        "rules[1].name",
        "routing.critical",
    ] {
        assert!(
            stderr.contains(&format!(": {path}: ")),
            "{path} missing from:\n{stderr}"
        );
    }
}

#[test]
fn a_syntax_error_names_its_line() {
    let text = VALID.replace("summary = \"Web down\"", "summary = \"Web down");
    let (ok, stderr, file) = check(&text);
    assert!(!ok);
    let expected = format!("{file}:{}: invalid TOML", line_of(&text, "summary"));
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
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
}

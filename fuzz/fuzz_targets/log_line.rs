//! Any bytes as a log line, through a JSON source (with `json_in`) and a regex (`text`)
//! source whose metrics and error types read every kind of field: counted or skipped, never
//! a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sloguard::config::{Config, parse};
use sloguard::source::log::extract::Extractor;

const SOURCES: &str = r#"
[[logs]]
name = "json"
files = ["/nonexistent/app.log"]
timestamp = "ts"
json_in = "MESSAGE"
max_line_bytes = 4096
[[logs.metric]]
name = "requests"
kind = "counter"
match_regex = { event = "^api_" }
labels = { event = "event", route = "req.route" }
max_series = 20
[[logs.metric]]
name = "latency"
kind = "distribution"
value = "duration_ms"
match = { level = "info" }
[[logs.metric]]
name = "heap"
kind = "gauge"
value = "properties.heap"
labels = { user = "distinct_id" }
max_series = 5
[[logs.errors]]
match = { level = "error" }
message = "error"

[[logs]]
name = "text"
files = ["/nonexistent/access.log"]
format = "text"
pattern = '^(?P<ts>\S+) (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+)ms(?: (?P<error>.*))?$'
timestamp = "ts"
timestamp_format = "auto"
[[logs.metric]]
name = "access_ms"
kind = "distribution"
value = "ms"
labels = { status = "status" }
[[logs.errors]]
match_regex = { status = "^5" }
message = "error"

[[reports]]
name = "r"
schedule = "0 9 * * MON"
channel = "mail"
[[reports.usage]]
title = "Users"
distinct = { metric = "heap", label = "user" }

[[channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
tls = "none"
from = "a@example.com"
to = ["b@example.com"]
"#;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    parse(SOURCES, std::path::Path::new("fuzz.toml")).expect("the fuzz sources are valid")
});

fuzz_target!(|data: &[u8]| {
    for source in &CONFIG.logs {
        let mut x = Extractor::new(source, 1000);
        // Each line twice, the second one a day later, and the split at every newline.
        for line in data.split(|b| *b == b'\n') {
            x.line(line, 1_700_000_000_000);
            x.line(line, 1_700_086_400_000);
        }
        let _ = x.flush();
    }
});

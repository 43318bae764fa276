//! Any text as a scraped endpoint's answer (Prometheus text or OpenMetrics): samples or an
//! error, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sloguard::config::{Scrape, parse};

static SCRAPE: LazyLock<Scrape> = LazyLock::new(|| {
    let cfg = parse(
        "[[scrapes]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/metrics\"\nkeep = [\"pg_.*\", \"up\", \"http_.*\"]\n",
        std::path::Path::new("fuzz.toml"),
    )
    .expect("the fuzz scrape is valid");
    cfg.scrapes[0].clone()
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sloguard::source::scrape::parse_exposition(&SCRAPE, text);
    }
});

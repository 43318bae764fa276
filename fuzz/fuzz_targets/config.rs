//! Any text as a configuration file: parsed and validated to a `Config` or problems, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sloguard::config::parse(text, std::path::Path::new("/nonexistent/fuzz.toml"));
    }
});

//! Any bytes as a PostHog capture request body, with each compression and content type the
//! SDKs use: decoded, its token peeked and its events read, or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sloguard::source::ingest::{RequestInfo, decode_body, parse_events, peek_token};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let compression = ["gzip", "gzip-js", "base64", "lz64", "lz-string", ""][mode as usize % 6];
    let content_type = [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
    ][(mode as usize / 6) % 3];
    let info = RequestInfo {
        compression: (!compression.is_empty()).then(|| compression.to_string()),
        content_type: Some(content_type.to_string()),
        sent_at_ms: (mode & 0x80 != 0).then_some(1_700_000_000_000),
        data: None,
    };
    if let Ok(json) = decode_body(body, &info, 1 << 20) {
        let _ = peek_token(&json);
        let _ = parse_events(&json, &info, 1_700_000_000_000, 3_600_000);
    }
});

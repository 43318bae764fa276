//! Any bytes as a stored chunk of points or block of distribution buckets: decoded or an
//! error, never a panic that escapes.
//!
//! The DDSketch decoder (a third-party crate) panics on some corrupt bytes; the store catches
//! that (`bucket::decode_sketch`) and calls the record corrupt. libFuzzer's panic hook would
//! abort on the caught panic too, so this target replaces it with one that only prints: a
//! panic that escapes still fails the run, through libfuzzer-sys's own guard.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use sloguard::store::{bucket, chunk};

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("caught: {info}"))));
    let _ = chunk::decode(data);
    let _ = bucket::decode_block(data);
    let _ = bucket::decode_block_in(data, 0, i64::MAX);
    let _ = bucket::Bucket::decode_single(1_700_000_000_000, data);
});

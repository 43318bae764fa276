//! Any bytes as each kind of record kept besides the series (outbox entries, alerts,
//! history, silences, error types, distinct sketches): decoded or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sloguard::store::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<sloguard::notify::outbox::Entry>(data);
    let _ = decode::<sloguard::pipeline::StoredAlert>(data);
    let _ = decode::<sloguard::history::Event>(data);
    let _ = decode::<sloguard::silence::Silence>(data);
    let _ = decode::<sloguard::store::logs::ErrorType>(data);
    let _ = decode::<sloguard::source::log::tail::Checkpoint>(data);
    if let Ok(mut sketch) = decode::<sloguard::store::distinct::Sketch>(data) {
        let _ = sketch.estimate();
        let other = sketch.clone();
        sketch.merge(&other);
        sketch.insert("user");
        let _ = sketch.estimate();
    }
});

//! Rules: pure functions from (state, samples, now) to (state, transitions).
//!
//! This module never does I/O and never reads the clock: `now` is an argument, so tests can
//! drive hours of simulated time in milliseconds. The daemon's pipeline persists what it
//! returns and hands notifications to the outbox.

mod engine;
mod window;

pub use engine::{AlertState, AlertStatus, Engine, Transition, TransitionKind, WindowValue};
pub use window::{WindowMemory, slo_error_ratio, window_values};

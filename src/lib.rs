//! sloguard: one daemon that probes a production app, stores what it measures, evaluates the
//! team's SLO rules and escalates through Slack and webhooks until the problem resolves.
//!
//! Data flows one way: sources → pipeline (store + rules) → outbox → channels. See
//! `ARCHITECTURE.md` for the map.

pub mod api;
pub mod backtest;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod format;
pub mod history;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod query;
pub mod report;
pub mod rules;
pub mod series;
pub mod server;
pub mod silence;
pub mod source;
pub mod store;
pub mod supervisor;
pub mod vocab;

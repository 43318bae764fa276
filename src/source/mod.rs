//! Sources: everything that produces samples. Each source sends batches of samples into the
//! pipeline's channel and never touches the store or the rules itself.

pub mod database;
pub mod http_probe;
pub mod ingest;
pub mod log;
pub mod manager;
pub mod postgres;
pub mod probe;
pub mod scrape;
pub mod tcp_probe;

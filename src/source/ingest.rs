//! PostHog-compatible capture: the official SDKs (posthog-js, posthog-node) pointed at the
//! daemon post their events to `/e/`, `/batch/`, `/capture/`, `/i/v0/e/` or `/track/`, and
//! each event becomes series and error types through the `[[logs.metric]]` and
//! `[[logs.errors]]` rules of the `[[logs]]` source whose `token` the request carries.
//!
//! A request is answered `200 {"status": 1}` only once its events are committed to the store,
//! so an answer the SDK sees is never lost; a request the pipeline cannot take in time gets a
//! 503, which the SDKs retry. Bodies are read and decompressed up to
//! `[server].max_ingest_bytes` (a gzip bomb stops there and is refused with a 413).
//!
//! What is accepted (research on the SDKs in `docs/api.md`): gzip bodies recognised by their
//! magic bytes whatever the headers say; `data=<base64>` form bodies (`sendBeacon`); plain
//! JSON; one event, an array of events, or `{"api_key", "batch": [...], "sent_at"}`. Each event
//! is handed to the extractor as `{"event", "distinct_id", "uuid", "timestamp", "properties"}`,
//! dated by its `timestamp` corrected for the client's clock skew (`sent_at`), by `offset`, or
//! by its arrival.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, IngestLimits, LogInput, LogSource};
use crate::metrics::Reject;
use crate::metrics::{Metrics, ResultLabels};
use crate::source::log::LogBatch;
use crate::source::log::extract::Extractor;

/// How long a request waits for a turn and for its events to be committed, in all: less
/// than the SDKs' own request timeout (10 s), so that they see the answer.
const COMMIT_WAIT: Duration = Duration::from_secs(8);
/// How long a request waits for a turn to be read.
const TURN_WAIT: Duration = Duration::from_secs(4);
/// PostHog cuts a distinct id to this many characters.
const MAX_DISTINCT_ID_CHARS: usize = 200;
/// The longest event `uuid` accepted. The SDKs send a UUID (36 characters); anything much
/// longer is not one, and would cost memory in the dedup set.
const MAX_UUID_BYTES: usize = 64;

/// Why a request was refused; each maps to the status code PostHog answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// 400: the body cannot be read, or an event lacks `event` or `distinct_id`.
    BadRequest(String),
    /// 401: no project token, an unknown one, or several in one request.
    Unauthorized(String),
    /// 413: the body, or what it decompresses to, is larger than the limit.
    TooLarge(String),
    /// 429: the source's rate limit; the client may retry after this long.
    TooMany(String, Duration),
    /// 503: the pipeline did not commit in time; the SDKs retry.
    Unavailable(String),
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::BadRequest(_) => 400,
            Refused::Unauthorized(_) => 401,
            Refused::TooLarge(_) => 413,
            Refused::TooMany(..) => 429,
            Refused::Unavailable(_) => 503,
        }
    }

    /// The `result` label of `sloguard_ingest_requests_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Refused::BadRequest(_) => "bad_request",
            Refused::Unauthorized(_) => "unauthorized",
            Refused::TooLarge(_) => "too_large",
            Refused::TooMany(..) => "rate_limited",
            Refused::Unavailable(_) => "unavailable",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refused::BadRequest(m)
            | Refused::Unauthorized(m)
            | Refused::TooLarge(m)
            | Refused::TooMany(m, _)
            | Refused::Unavailable(m) => m,
        }
    }

    /// The whole seconds a client should wait before it retries (`Retry-After`), for a 429.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refused::TooMany(_, wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        }
    }
}

/// What came with a request besides its body.
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    /// `compression` from the query string.
    pub compression: Option<String>,
    pub content_type: Option<String>,
    /// `sent_at` or `_` from the query string: when the client sent it, in ms.
    pub sent_at_ms: Option<i64>,
    /// `data` from the query string (a GET request).
    pub data: Option<String>,
}

/// One event, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub token: Option<String>,
    pub event: String,
    pub distinct_id: String,
    pub uuid: Option<String>,
    /// When it happened, corrected for the client's clock.
    pub ts_ms: i64,
    pub properties: Value,
}

/// Gunzips up to `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refused::BadRequest(format!("the gzip body cannot be read: {e}")))?;
    if out.len() > limit {
        return Err(Refused::TooLarge(format!(
            "the body decompresses to more than {limit} bytes"
        )));
    }
    Ok(out)
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// Decodes base64 as posthog-js writes it (standard alphabet; a `+` may have become a space
/// in a form body), with or without padding.
fn unbase64(text: &str) -> Result<Vec<u8>, Refused> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r' | '\t'))
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    let trimmed = cleaned.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|e| Refused::BadRequest(format!("the base64 data cannot be read: {e}")))
}

/// Turns a request body into the JSON text it carries.
pub fn decode_body(body: &[u8], info: &RequestInfo, limit: usize) -> Result<Vec<u8>, Refused> {
    if body.len() > limit {
        return Err(Refused::TooLarge(format!(
            "the body is larger than {limit} bytes"
        )));
    }
    let lz = |c: &str| matches!(c, "lz64" | "lz-string");
    if info.compression.as_deref().is_some_and(lz) {
        return Err(Refused::BadRequest(
            "lz64 compression is not supported; posthog-js sends gzip unless told otherwise".into(),
        ));
    }
    if is_gzip(body) {
        return gunzip(body, limit);
    }
    let form = info
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
        || body.starts_with(b"data=")
        || body.starts_with(b"compression=");
    let (data, compression) = if form {
        let mut data = None;
        let mut compression = info.compression.clone();
        for (k, v) in url::form_urlencoded::parse(body) {
            match k.as_ref() {
                "data" => data = Some(v.into_owned()),
                "compression" => compression = Some(v.into_owned()),
                _ => {}
            }
        }
        let Some(data) = data else {
            return Err(Refused::BadRequest(
                "a form body needs a `data` field".into(),
            ));
        };
        (Some(data), compression)
    } else if body.is_empty() {
        (info.data.clone(), info.compression.clone())
    } else {
        (None, info.compression.clone())
    };
    if compression.as_deref().is_some_and(lz) {
        return Err(Refused::BadRequest(
            "lz64 compression is not supported; posthog-js sends gzip unless told otherwise".into(),
        ));
    }
    let bytes = match data {
        Some(text) => {
            let t = text.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                text.into_bytes()
            } else {
                unbase64(&text)?
            }
        }
        None => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            let base64 = matches!(compression.as_deref(), Some("base64" | "b64"));
            if base64 && !matches!(first, Some(b'{' | b'[')) {
                let text = std::str::from_utf8(body)
                    .map_err(|_| Refused::BadRequest("the base64 body is not text".into()))?;
                unbase64(text)?
            } else {
                body.to_vec()
            }
        }
    };
    if is_gzip(&bytes) {
        return gunzip(&bytes, limit);
    }
    if bytes.len() > limit {
        return Err(Refused::TooLarge(format!(
            "the body decodes to more than {limit} bytes"
        )));
    }
    Ok(bytes)
}

/// Parses an RFC 3339 time, or one without an offset (taken as UTC), to ms.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads the events of a decoded body. `now_ms` is the arrival time; an event dated more than
/// `max_age_ms` before it counts at its arrival.
pub fn parse_events(
    json: &[u8],
    info: &RequestInfo,
    now_ms: i64,
    max_age_ms: i64,
) -> Result<Vec<Event>, Refused> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| Refused::BadRequest(format!("the body is not JSON: {e}")))?;
    let mut sent_at = info.sent_at_ms;
    let mut top_token = None;
    let events = match value {
        Value::Array(a) => a,
        Value::Object(mut o) if o.contains_key("batch") => {
            for key in ["api_key", "token", "$token"] {
                if let Some(t) = o.get(key).and_then(text_of) {
                    top_token = Some(t);
                    break;
                }
            }
            if let Some(t) = o
                .get("sent_at")
                .and_then(Value::as_str)
                .and_then(parse_time)
            {
                sent_at = Some(t);
            }
            match o.remove("batch") {
                Some(Value::Array(a)) => a,
                _ => return Err(Refused::BadRequest("`batch` must be an array".into())),
            }
        }
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(Refused::BadRequest(
                "the body must be an event, an array of events or {\"api_key\", \"batch\"}".into(),
            ));
        }
    };
    if events.is_empty() {
        return Err(Refused::BadRequest("no events in the request".into()));
    }
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let Value::Object(mut e) = e else {
            return Err(Refused::BadRequest(format!("event {i} is not an object")));
        };
        let properties = match e.remove("properties") {
            Some(p @ Value::Object(_)) => p,
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(_) => {
                return Err(Refused::BadRequest(format!(
                    "event {i}: `properties` must be an object"
                )));
            }
        };
        let event = match e.get("event").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                return Err(Refused::BadRequest(format!(
                    "event {i} has no `event` name"
                )));
            }
        };
        let distinct_id = e
            .get("distinct_id")
            .or_else(|| e.get("$distinct_id"))
            .or_else(|| properties.get("distinct_id"))
            .and_then(text_of)
            .map(|d| d.chars().take(MAX_DISTINCT_ID_CHARS).collect::<String>())
            .filter(|d| !d.is_empty());
        let Some(distinct_id) = distinct_id else {
            return Err(Refused::BadRequest(format!(
                "event {i} (`{event}`) has no `distinct_id`"
            )));
        };
        let token = top_token.clone().or_else(|| {
            ["api_key", "token", "$token"]
                .iter()
                .find_map(|k| e.get(*k).and_then(text_of))
                .or_else(|| properties.get("token").and_then(text_of))
        });
        let uuid = e
            .get("uuid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        if let Some(u) = &uuid
            && u.len() > MAX_UUID_BYTES
        {
            return Err(Refused::BadRequest(format!(
                "event {i} (`{event}`) has a `uuid` of {} bytes; at most {MAX_UUID_BYTES} are accepted",
                u.len()
            )));
        }
        let at = e
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let ts = match (at, sent_at) {
            // The client's clock may be off: keep the event's distance to its sending.
            (Some(at), Some(sent)) => now_ms.saturating_sub(sent.saturating_sub(at)),
            (Some(at), None) => at,
            (None, _) => match e.get("offset").and_then(Value::as_i64) {
                Some(offset) => now_ms.saturating_sub(offset.max(0)),
                None => now_ms,
            },
        };
        // Nothing happened after it arrived: a client's clock that says so is wrong. Nor
        // longer than `max_age` before: a client could otherwise rewrite the past that SLO
        // windows and reports already read.
        let ts_ms = if (now_ms.saturating_sub(max_age_ms).max(0)..=now_ms).contains(&ts) {
            ts
        } else {
            now_ms
        };
        out.push(Event {
            token,
            event,
            distinct_id,
            uuid,
            ts_ms,
            properties,
        });
    }
    Ok(out)
}

/// Where a project token may sit at the top of a body or of its first event.
#[derive(serde::Deserialize)]
struct Head {
    api_key: Option<String>,
    token: Option<String>,
    #[serde(rename = "$token")]
    dollar_token: Option<String>,
    properties: Option<HeadProperties>,
    /// A batch's first event, for a batch without a top-level token.
    #[serde(default, deserialize_with = "first_event")]
    batch: Option<Box<Head>>,
}

fn first_event<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Box<Head>>, D::Error> {
    Ok(de.deserialize_seq(First)?.map(Box::new))
}

#[derive(serde::Deserialize)]
struct HeadProperties {
    token: Option<String>,
}

impl Head {
    fn token(self) -> Option<String> {
        self.api_key
            .or(self.token)
            .or(self.dollar_token)
            .or(self.properties.and_then(|p| p.token))
            .or(self.batch.and_then(|b| b.token()))
    }
}

/// The first element of an array, the rest skipped without being built.
struct First;

impl<'de> serde::de::Visitor<'de> for First {
    type Value = Option<Head>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Head>, A::Error> {
        let first = seq.next_element::<Head>()?;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(first)
    }
}

/// The project token of a decoded body, read without building its events: a request with a
/// wrong token costs one pass over its bytes. The token of the body's top level or of its
/// first event; `parse_events` and `request_token` check the others.
pub fn peek_token(json: &[u8]) -> Result<String, Refused> {
    use serde::Deserializer as _;
    let bad = |e: serde_json::Error| {
        Refused::BadRequest(format!("the body cannot be read as events: {e}"))
    };
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    let head = if first == Some(&b'[') {
        let mut de = serde_json::Deserializer::from_slice(json);
        de.deserialize_seq(First).map_err(bad)?
    } else {
        Some(serde_json::from_slice::<Head>(json).map_err(bad)?)
    };
    head.and_then(Head::token).ok_or_else(|| {
        Refused::Unauthorized(
            "no project token: send it as `api_key` or in `properties.token`".into(),
        )
    })
}

/// The one token of a request's events.
pub fn request_token(events: &[Event]) -> Result<&str, Refused> {
    let mut token: Option<&str> = None;
    for e in events {
        match (token, e.token.as_deref()) {
            (_, None) => {
                return Err(Refused::Unauthorized(
                    "no project token: send it as `api_key` or in `properties.token`".into(),
                ));
            }
            (None, Some(t)) => token = Some(t),
            (Some(a), Some(b)) if a != b => {
                return Err(Refused::Unauthorized(
                    "the events of one request carry different project tokens".into(),
                ));
            }
            _ => {}
        }
    }
    token.ok_or_else(|| Refused::Unauthorized("no project token".into()))
}

/// The document the extraction rules read for one event.
pub fn event_document(e: &Event) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    doc.insert("event".into(), Value::String(e.event.clone()));
    doc.insert("distinct_id".into(), Value::String(e.distinct_id.clone()));
    if let Some(u) = &e.uuid {
        doc.insert("uuid".into(), Value::String(u.clone()));
    }
    doc.insert(
        "timestamp".into(),
        Value::String(crate::format::rfc3339(e.ts_ms)),
    );
    doc.insert("properties".into(), e.properties.clone());
    serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
}

/// An ingest source's extractor, kept between requests so that `max_series` holds across
/// them; made again when the source's configuration changes.
struct Slot {
    cfg: LogSource,
    interval_ms: i64,
    extractor: Extractor,
}

/// The uuids of the events a source committed lately, the oldest forgotten first: an SDK
/// that retries a request whose answer it did not get sends them again. Kept as 128-bit
/// digests, so each costs the same few bytes whatever the client sent.
#[derive(Default)]
struct Recent {
    set: rustc_hash::FxHashSet<u128>,
    order: std::collections::VecDeque<u128>,
}

/// An event uuid's digest: the first 128 bits of its SHA-256, which a client cannot make
/// collide with another event's (a collision would drop that event as a duplicate).
fn uuid_digest(uuid: &str) -> u128 {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(uuid.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(first)
}

impl Recent {
    fn insert(&mut self, uuid: u128) {
        if self.set.insert(uuid) {
            self.order.push_back(uuid);
            while self.order.len() > RECENT_UUIDS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// Event uuids remembered per source.
const RECENT_UUIDS: usize = 100_000;
/// How often ingest sources' sessions are looked over for ones that went idle.
const SESSION_TICK: std::time::Duration = std::time::Duration::from_secs(60);
/// Capture requests decoded at once; more wait for a turn (or get a 503 at the deadline).
const CONCURRENT_REQUESTS: usize = 4;

/// What the capture requests share.
struct Shared {
    config: watch::Receiver<Arc<Config>>,
    slots: Mutex<HashMap<String, Slot>>,
    recent: Mutex<HashMap<String, Recent>>,
    buckets: Mutex<HashMap<String, Buckets>>,
}

/// The capture endpoints' state.
pub struct Ingest {
    shared: Arc<Shared>,
    tx: mpsc::Sender<LogBatch>,
    metrics: Arc<Metrics>,
    turns: tokio::sync::Semaphore,
}

/// A request's events, extracted and ready to commit.
struct Extracted {
    source: String,
    data: crate::source::log::extract::Extracted,
    /// Digests of the uuids of the events in `data`, remembered once committed.
    uuids: Vec<u128>,
    events: usize,
    duplicates: u64,
}

impl Ingest {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        tx: mpsc::Sender<LogBatch>,
        metrics: Arc<Metrics>,
    ) -> Ingest {
        Ingest {
            shared: Arc::new(Shared {
                config,
                slots: Mutex::new(HashMap::new()),
                recent: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
            }),
            tx,
            metrics,
            turns: tokio::sync::Semaphore::new(CONCURRENT_REQUESTS),
        }
    }

    /// Once a minute, ends the sessions of ingest sources that have had no event for their
    /// idle time, and hands what they recorded to the pipeline.
    pub async fn end_idle_sessions(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let mut every = tokio::time::interval(SESSION_TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.cancelled() => return Ok(()),
            }
            let now = crate::clock::now_ms();
            let batches: Vec<LogBatch> = {
                let mut slots = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
                slots
                    .iter_mut()
                    .filter_map(|(name, slot)| {
                        slot.extractor.tick(now);
                        slot.extractor.has_pending().then(|| LogBatch {
                            source: name.clone(),
                            generation: None,
                            data: slot.extractor.flush(),
                            checkpoints: Vec::new(),
                            caught_up: false,
                            committed: None,
                        })
                    })
                    .collect()
            };
            for b in batches {
                if self.tx.send(b).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    pub fn limit(&self) -> usize {
        self.shared.config.borrow().server.max_ingest_bytes
    }

    /// Counts a request's result.
    pub fn count(&self, result: &str) {
        self.metrics
            .ingest_requests
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// A turn to read and decode a request's body; a request that does not get one before
    /// `TURN_WAIT` is answered 503 (the SDKs retry).
    pub async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Refused> {
        let unavailable =
            || Refused::Unavailable("too many capture requests at once; retry".into());
        tokio::time::timeout(TURN_WAIT, self.turns.acquire())
            .await
            .map_err(|_| unavailable())?
            .map_err(|_| unavailable())
    }

    /// Decodes, checks and commits one request read during `turn`; counts its result. The
    /// events it accepts.
    pub async fn capture(
        &self,
        body: axum::body::Bytes,
        info: RequestInfo,
        turn: tokio::sync::SemaphorePermit<'_>,
    ) -> Result<usize, Refused> {
        let result = self.capture_inner(body, info, turn).await;
        self.count(match &result {
            Ok(_) => "accepted",
            Err(r) => r.result(),
        });
        result
    }

    async fn capture_inner(
        &self,
        body: axum::body::Bytes,
        info: RequestInfo,
        turn: tokio::sync::SemaphorePermit<'_>,
    ) -> Result<usize, Refused> {
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        let unavailable =
            || Refused::Unavailable("the store did not take the events in time; retry".into());
        // Decoding up to the limit, parsing and extraction are CPU work: off the async threads.
        let shared = self.shared.clone();
        let x = tokio::task::spawn_blocking(move || shared.extract(&body, &info))
            .await
            .map_err(|e| Refused::Unavailable(format!("the request could not be read: {e}")))??;
        // The body is decoded and gone; the next request may be read while this one commits.
        drop(turn);
        if x.duplicates > 0 {
            self.metrics
                .ingest_duplicates
                .get_or_create(&crate::metrics::SourceLabels {
                    source: x.source.clone(),
                })
                .inc_by(x.duplicates);
        }
        let (tell, committed) = oneshot::channel();
        let batch = LogBatch {
            source: x.source.clone(),
            generation: None,
            data: x.data,
            checkpoints: Vec::new(),
            caught_up: false,
            committed: Some(tell),
        };
        match tokio::time::timeout_at(deadline, self.tx.send(batch)).await {
            Ok(Ok(())) => {}
            _ => return Err(unavailable()),
        }
        // Once handed over the batch is committed or dropped whatever this request does: the
        // waiter remembers the uuids when it is committed, even after the client was told to
        // retry. (The pipeline counts the lines when it commits them.)
        let shared = self.shared.clone();
        let (source, uuids) = (x.source, x.uuids);
        let waiter = tokio::spawn(async move {
            if committed.await.is_err() {
                return false;
            }
            let mut recent = shared.recent.lock().unwrap_or_else(|p| p.into_inner());
            let r = recent.entry(source).or_default();
            for u in uuids {
                r.insert(u);
            }
            true
        });
        match tokio::time::timeout_at(deadline, waiter).await {
            Ok(Ok(true)) => Ok(x.events),
            _ => Err(unavailable()),
        }
    }
}

impl Shared {
    /// Decodes a body and runs its events through their source's extractor. The work grows
    /// with what the caller has shown: the token is checked before the events are built, the
    /// source's byte budget before they are parsed, its event budget before they are extracted.
    fn extract(&self, body: &[u8], info: &RequestInfo) -> Result<Extracted, Refused> {
        let (limit, interval_ms) = {
            let cfg = self.config.borrow();
            (
                cfg.server.max_ingest_bytes,
                cfg.store.distribution_interval.as_millis() as i64,
            )
        };
        let now = crate::clock::now_ms();
        let json = decode_body(body, info, limit)?;
        let token = peek_token(&json)?;
        let (source, limits) = self.source_of(&token)?;
        self.take(&source, |b| &b.bytes, json.len(), "bytes")?;
        let max_age_ms = limits.max_event_age.as_millis().min(i64::MAX as u128) as i64;
        let events = parse_events(&json, info, now, max_age_ms)?;
        drop(json);
        if request_token(&events)? != token {
            return Err(Refused::Unauthorized(
                "the events of one request carry different project tokens".into(),
            ));
        }
        self.take(&source, |b| &b.events, events.len(), "events")?;
        let mut duplicates = 0;
        let mut uuids = Vec::new();
        let fresh: Vec<&Event> = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let seen = recent.get(&source.name);
            events
                .iter()
                .filter(|e| match (&e.uuid, seen) {
                    (Some(u), Some(r)) if r.set.contains(&uuid_digest(u)) => {
                        duplicates += 1;
                        false
                    }
                    _ => true,
                })
                .collect()
        };
        let data = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let slot = slot(&mut slots, &source, interval_ms);
            for e in &fresh {
                let doc = event_document(e);
                if doc.len() > source.max_line_bytes {
                    slot.extractor.reject(Reject::TooLong);
                } else {
                    slot.extractor.line(&doc, e.ts_ms);
                }
                if let Some(u) = &e.uuid {
                    uuids.push(uuid_digest(u));
                }
            }
            slot.extractor.flush()
        };
        Ok(Extracted {
            source: source.name,
            data,
            uuids,
            events: events.len(),
            duplicates,
        })
    }

    /// The ingest source whose project token this is.
    fn source_of(&self, token: &str) -> Result<(LogSource, IngestLimits), Refused> {
        let cfg = self.config.borrow();
        cfg.logs
            .iter()
            .find_map(|l| match &l.input {
                LogInput::Posthog { token: t, limits } if t.matches(token) => {
                    Some((l.clone(), limits.clone()))
                }
                _ => None,
            })
            .ok_or_else(|| {
                Refused::Unauthorized(
                    "the project token is not one of an ingest source in the configuration".into(),
                )
            })
    }

    /// Takes `n` from one of the source's buckets: a 429 with the wait when it is empty, a
    /// 413 when `n` is more than the bucket ever holds (the SDKs then send smaller batches).
    fn take(
        &self,
        source: &LogSource,
        bucket: impl Fn(&Buckets) -> &Limiter,
        n: usize,
        what: &str,
    ) -> Result<(), Refused> {
        use governor::clock::Clock as _;
        let Some(n) = u32::try_from(n).ok().and_then(std::num::NonZeroU32::new) else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets_of(&mut buckets, source);
        let (rate, burst) = match what {
            "events" => (
                u64::from(b.limits.events_per_second),
                u64::from(b.limits.events_per_second) * BURST_SECONDS,
            ),
            _ => (
                b.limits.bytes_per_second,
                b.limits.bytes_per_second * BURST_SECONDS,
            ),
        };
        match bucket(b).check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(until)) => Err(Refused::TooMany(
                format!(
                    "source `{}` takes {rate} {what} a second (bursts of {burst}); retry later",
                    source.name
                ),
                until.wait_time_from(governor::clock::DefaultClock::default().now()),
            )),
            Err(_) => Err(Refused::TooLarge(format!(
                "{n} {what} in one request is more than source `{}` takes at once ({burst}); send smaller batches",
                source.name
            ))),
        }
    }
}

/// A source's extractor, made again when its configuration changed.
fn slot<'a>(
    slots: &'a mut HashMap<String, Slot>,
    source: &LogSource,
    interval_ms: i64,
) -> &'a mut Slot {
    let slot = slots.entry(source.name.clone()).or_insert_with(|| Slot {
        extractor: Extractor::new(source, interval_ms),
        cfg: source.clone(),
        interval_ms,
    });
    if slot.cfg != *source || slot.interval_ms != interval_ms {
        *slot = Slot {
            extractor: Extractor::new(source, interval_ms),
            cfg: source.clone(),
            interval_ms,
        };
    }
    slot
}

type Limiter = governor::DefaultDirectRateLimiter;

/// How many seconds' worth of its rate a source may send at once.
const BURST_SECONDS: u64 = 10;

/// A source's token buckets: events, and decompressed body bytes.
struct Buckets {
    limits: IngestLimits,
    events: Limiter,
    bytes: Limiter,
}

/// A bucket filling at `rate` a second and holding `BURST_SECONDS` of it.
fn limiter(rate: u64) -> Limiter {
    let nz = |n: u64| {
        std::num::NonZeroU32::new(n.clamp(1, u64::from(u32::MAX)) as u32)
            .unwrap_or(std::num::NonZeroU32::MIN)
    };
    let quota = governor::Quota::per_second(nz(rate)).allow_burst(nz(rate * BURST_SECONDS));
    governor::RateLimiter::direct(quota)
}

/// The source's buckets, full when new and made again (full) when its limits changed.
fn buckets_of<'a>(all: &'a mut HashMap<String, Buckets>, source: &LogSource) -> &'a mut Buckets {
    let limits = match &source.input {
        LogInput::Posthog { limits, .. } => limits.clone(),
        _ => IngestLimits::default(),
    };
    let fresh = |limits: IngestLimits| Buckets {
        events: limiter(u64::from(limits.events_per_second)),
        bytes: limiter(limits.bytes_per_second),
        limits,
    };
    let b = all
        .entry(source.name.clone())
        .or_insert_with(|| fresh(limits.clone()));
    if b.limits != limits {
        *b = fresh(limits);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(bytes).unwrap();
        w.finish().unwrap()
    }

    // 2027-01-15: after every time the bodies below carry.
    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn reads_the_three_body_shapes() {
        let info = RequestInfo::default();
        let batch = br#"{"api_key":"phc_a","batch":[{"event":"e1","distinct_id":"u1","properties":{"x":1}},{"event":"e2","distinct_id":7}]}"#;
        let ev = parse_events(batch, &info, NOW, HOUR).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].distinct_id, "7");
        assert_eq!(request_token(&ev).unwrap(), "phc_a");
        assert_eq!(ev[0].ts_ms, NOW);

        let array = br#"[{"event":"e","properties":{"token":"phc_b","distinct_id":"u"}}]"#;
        let ev = parse_events(array, &info, NOW, HOUR).unwrap();
        assert_eq!(ev[0].distinct_id, "u");
        assert_eq!(request_token(&ev).unwrap(), "phc_b");

        let one = br#"{"token":"phc_c","event":"e","$distinct_id":"u","timestamp":"2026-11-26T10:00:00Z"}"#;
        // Old, but within a `max_event_age` that reaches back to it.
        let ev = parse_events(one, &info, NOW, i64::MAX).unwrap();
        assert_eq!(request_token(&ev).unwrap(), "phc_c");
        assert_eq!(
            ev[0].ts_ms,
            parse_time("2026-11-26T10:00:00Z").unwrap(),
            "no sent_at: the event's own time"
        );
    }

    #[test]
    fn a_uuid_longer_than_a_uuid_is_refused_and_remembered_ones_cost_16_bytes() {
        let info = RequestInfo::default();
        let body = |uuid: &str| {
            format!(r#"[{{"event":"e","distinct_id":"u","api_key":"k","uuid":"{uuid}"}}]"#)
        };
        let ok = "0192c0de-7d6f-7a1b-9c3e-4f5a6b7c8d9e";
        assert_eq!(
            parse_events(body(ok).as_bytes(), &info, NOW, HOUR).unwrap()[0]
                .uuid
                .as_deref(),
            Some(ok)
        );
        assert!(parse_events(body(&"a".repeat(64)).as_bytes(), &info, NOW, HOUR).is_ok());
        let long = "a".repeat(65);
        match parse_events(body(&long).as_bytes(), &info, NOW, HOUR) {
            Err(Refused::BadRequest(why)) => {
                assert!(why.contains("`uuid` of 65 bytes; at most 64"), "{why}")
            }
            other => panic!("a 65-byte uuid was not refused: {other:?}"),
        }
        // Retries are recognised by digest; other uuids are not taken for them.
        let mut recent = Recent::default();
        recent.insert(uuid_digest(ok));
        assert!(recent.set.contains(&uuid_digest(ok)));
        assert!(
            !recent
                .set
                .contains(&uuid_digest("0192c0de-7d6f-7a1b-9c3e-4f5a6b7c8d9f"))
        );
        for i in 0..(RECENT_UUIDS + 10) {
            recent.insert(uuid_digest(&i.to_string()));
        }
        assert_eq!(recent.order.len(), RECENT_UUIDS);
        assert!(
            !recent.set.contains(&uuid_digest(ok)),
            "the oldest is forgotten first"
        );
    }

    #[test]
    fn corrects_the_clients_clock_with_sent_at() {
        // The client's clock is an hour ahead: the event happened 2 s before it was sent.
        let body = br#"{"api_key":"k","sent_at":"2026-11-26T11:00:02Z","batch":[{"event":"e","distinct_id":"u","timestamp":"2026-11-26T11:00:00Z"}]}"#;
        let ev = parse_events(body, &RequestInfo::default(), NOW, HOUR).unwrap();
        assert_eq!(ev[0].ts_ms, NOW - 2000);
        let offset = br#"[{"event":"e","distinct_id":"u","offset":1500,"api_key":"k"}]"#;
        let ev = parse_events(offset, &RequestInfo::default(), NOW, HOUR).unwrap();
        assert_eq!(ev[0].ts_ms, NOW - 1500);
    }

    #[test]
    fn an_event_older_than_max_event_age_counts_at_its_arrival() {
        let info = RequestInfo::default();
        let at = |ago: i64| {
            let t = chrono::DateTime::from_timestamp_millis(NOW - ago).unwrap();
            let body = format!(
                r#"[{{"event":"e","distinct_id":"u","api_key":"k","timestamp":"{}"}}]"#,
                t.to_rfc3339()
            );
            parse_events(body.as_bytes(), &info, NOW, HOUR).unwrap()[0].ts_ms
        };
        assert_eq!(
            at(59 * 60_000),
            NOW - 59 * 60_000,
            "within the hour: its own time"
        );
        assert_eq!(at(30 * 24 * HOUR), NOW, "30 days back: at arrival");
        assert_eq!(at(HOUR + 1), NOW);
    }

    #[test]
    fn the_token_is_read_without_building_the_events() {
        let batch = br#"{"batch":[{"event":"e","distinct_id":"u"}],"api_key":"phc_a"}"#;
        assert_eq!(peek_token(batch).unwrap(), "phc_a");
        let inner = br#"{"batch":[{"event":"e","distinct_id":"u","properties":{"token":"phc_b"}},{"x":[1,2,{"y":null}]}]}"#;
        assert_eq!(peek_token(inner).unwrap(), "phc_b");
        let array = br#" [{"event":"e","properties":{"token":"phc_c"}}, 5, "x"]"#;
        assert_eq!(peek_token(array).unwrap(), "phc_c");
        let one = br#"{"$token":"phc_d","event":"e","distinct_id":"u"}"#;
        assert_eq!(peek_token(one).unwrap(), "phc_d");
        let none = br#"{"batch":[{"event":"e","distinct_id":"u"}]}"#;
        assert_eq!(peek_token(none).unwrap_err().status(), 401);
        assert_eq!(peek_token(b"[]").unwrap_err().status(), 401);
        assert_eq!(peek_token(b"{nope").unwrap_err().status(), 400);
        assert_eq!(peek_token(b"42").unwrap_err().status(), 400);
    }

    #[test]
    fn a_time_after_arrival_or_before_1970_is_the_arrival() {
        let info = RequestInfo::default();
        let ahead = br#"[{"event":"e","distinct_id":"u","api_key":"k","timestamp":"2099-01-01T00:00:00Z"}]"#;
        assert_eq!(parse_events(ahead, &info, NOW, HOUR).unwrap()[0].ts_ms, NOW);
        let skewed = RequestInfo {
            sent_at_ms: Some(i64::MIN),
            ..Default::default()
        };
        let body = br#"[{"event":"e","distinct_id":"u","api_key":"k","timestamp":"2026-11-26T10:00:00Z"}]"#;
        assert_eq!(
            parse_events(body, &skewed, NOW, HOUR).unwrap()[0].ts_ms,
            NOW
        );
        let old =
            br#"[{"event":"e","distinct_id":"u","api_key":"k","offset":9223372036854775807}]"#;
        assert_eq!(parse_events(old, &info, NOW, HOUR).unwrap()[0].ts_ms, NOW);
    }

    #[test]
    fn refuses_what_posthog_refuses() {
        let info = RequestInfo::default();
        let no_name = br#"[{"distinct_id":"u","api_key":"k"}]"#;
        assert_eq!(
            parse_events(no_name, &info, NOW, HOUR)
                .unwrap_err()
                .status(),
            400
        );
        let no_id = br#"[{"event":"e","api_key":"k"}]"#;
        assert_eq!(
            parse_events(no_id, &info, NOW, HOUR).unwrap_err().status(),
            400
        );
        assert_eq!(
            parse_events(b"[]", &info, NOW, HOUR).unwrap_err().status(),
            400,
            "an empty batch"
        );
        assert_eq!(
            parse_events(b"{nope", &info, NOW, HOUR)
                .unwrap_err()
                .status(),
            400
        );
        let mixed = br#"[{"event":"e","distinct_id":"u","api_key":"a"},{"event":"e","distinct_id":"u","api_key":"b"}]"#;
        let ev = parse_events(mixed, &info, NOW, HOUR).unwrap();
        assert_eq!(request_token(&ev).unwrap_err().status(), 401);
        let none = br#"[{"event":"e","distinct_id":"u"}]"#;
        let ev = parse_events(none, &info, NOW, HOUR).unwrap();
        assert_eq!(request_token(&ev).unwrap_err().status(), 401);
    }

    #[test]
    fn decodes_gzip_base64_and_plain() {
        let json = br#"{"api_key":"k","batch":[{"event":"e","distinct_id":"u"}]}"#;
        let plain = RequestInfo::default();
        assert_eq!(decode_body(json, &plain, 1 << 20).unwrap(), json);
        // gzip whatever the content type says, with or without a query flag.
        let text = RequestInfo {
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        assert_eq!(decode_body(&gz(json), &text, 1 << 20).unwrap(), json);
        // base64 form data, as sendBeacon posts it (`+` may arrive as a space).
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let form = format!(
            "data={}",
            url::form_urlencoded::byte_serialize(b64.as_bytes()).collect::<String>()
        );
        let info = RequestInfo {
            compression: Some("base64".into()),
            content_type: Some("application/x-www-form-urlencoded".into()),
            ..Default::default()
        };
        assert_eq!(decode_body(form.as_bytes(), &info, 1 << 20).unwrap(), json);
        let spaced = format!("data={}", b64.replace('+', " "));
        assert_eq!(
            decode_body(spaced.as_bytes(), &info, 1 << 20).unwrap(),
            json
        );
        // GET with the data in the query string.
        let get = RequestInfo {
            data: Some(b64.clone()),
            ..Default::default()
        };
        assert_eq!(decode_body(b"", &get, 1 << 20).unwrap(), json);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gz(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
        let err = decode_body(&bomb, &RequestInfo::default(), 1 << 20).unwrap_err();
        assert_eq!(err.status(), 413, "{err:?}");
        let big = vec![b'{'; 2 << 20];
        assert_eq!(
            decode_body(&big, &RequestInfo::default(), 1 << 20)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            decode_body(&[0x1f, 0x8b, 1, 2, 3], &RequestInfo::default(), 1 << 20)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn the_document_has_the_fields_rules_read() {
        let e = Event {
            token: Some("k".into()),
            event: "segmentation_memory_snapshot".into(),
            distinct_id: "u1".into(),
            uuid: None,
            ts_ms: NOW,
            properties: serde_json::json!({"used_js_heap_mb": 120}),
        };
        let doc: Value = serde_json::from_slice(&event_document(&e)).unwrap();
        assert_eq!(doc["event"], "segmentation_memory_snapshot");
        assert_eq!(doc["distinct_id"], "u1");
        assert_eq!(doc["properties"]["used_js_heap_mb"], 120);
        assert_eq!(
            parse_time(doc["timestamp"].as_str().unwrap()),
            Some(NOW),
            "the corrected time, to the millisecond"
        );
    }
}

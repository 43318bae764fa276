//! The daemon's HTTP API: health, the alerts the pipeline holds, and acknowledging them.
//!
//! It listens on `[server].listen` (loopback by default) and serves the dashboard, the API,
//! `/metrics` and the PostHog capture endpoints. Reading is open to whoever can reach the
//! address; writing (ack, silences) needs `Authorization: Bearer <[server].token>`, and is
//! refused when no token is configured; capture needs an ingest source's project token. API
//! bodies are capped at 64 KiB, capture bodies at `[server].max_ingest_bytes`. No answer
//! contains a secret. The API's request and answer bodies are the types of `crate::api`, which
//! the command line reads them back with.

// Handlers return `Response` errors by value; their size does not matter on this path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{
    AckRequest, Acknowledged, ApiError, DeadLetter, SilenceEnd, SilenceRequest, SilenceView,
};
use crate::config::Config;
use crate::pipeline::Command;
use crate::store::Store;

const MAX_BODY: usize = 64 * 1024;
/// How long a request waits for the pipeline.
const PIPELINE_WAIT: Duration = Duration::from_secs(10);

/// What the server's handlers share.
#[derive(Clone)]
pub struct Api {
    pub config: watch::Receiver<Arc<Config>>,
    pub commands: mpsc::Sender<Command>,
    pub store: Arc<Store>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub ingest: Arc<crate::source::ingest::Ingest>,
    /// When the pipeline last turned (ms); `/healthz` is ready while it is recent.
    pub heartbeat: Arc<std::sync::atomic::AtomicI64>,
    /// Turns for the reads that cost the most (dashboard, queries, history).
    pub heavy: Arc<tokio::sync::Semaphore>,
}

/// Reads that cost the most (the dashboard, long-range queries, history) served at once;
/// more wait for a turn, up to `HEAVY_WAIT`, then get a 503.
pub const HEAVY_READS: usize = 2;
const HEAVY_WAIT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle before the next one: a connection that says nothing is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a capture body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any other request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request head (start line and headers).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Waits for a turn among the heavy reads.
async fn heavy_turn(api: &Api) -> Result<tokio::sync::SemaphorePermit<'_>, Response> {
    match tokio::time::timeout(HEAVY_WAIT, api.heavy.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard and query reads at once; try again",
        )),
    }
}

/// The pipeline is taken for stalled when it has not turned for this long.
const STALLED_MS: i64 = 30_000;

/// `GET /healthz`: 200 `ok` while the pipeline turns (it does at least once a second) and
/// the data file can be written, 503 with the reason otherwise.
async fn healthz(State(api): State<Api>) -> Response {
    let age = crate::clock::now_ms() - api.heartbeat.load(std::sync::atomic::Ordering::Relaxed);
    if age > STALLED_MS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the pipeline has not turned for {} s\n",
                age / 1000
            ),
        )
            .into_response();
    }
    if let Some((reason, since)) = api.store.write_state().failing {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: cannot write the data file since {}: {reason}\n",
                crate::format::rfc3339(since)
            ),
        )
            .into_response();
    }
    "ok\n".into_response()
}

/// The PostHog capture endpoints: any method the SDKs use, body read up to the limit.
async fn capture(
    State(api): State<Api>,
    method: axum::http::Method,
    headers: HeaderMap,
    raw: axum::extract::RawQuery,
    body: axum::body::Body,
) -> Response {
    let mut info = crate::source::ingest::RequestInfo {
        content_type: headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ..Default::default()
    };
    for (k, v) in url::form_urlencoded::parse(raw.0.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "compression" => info.compression = Some(v.into_owned()),
            "_" | "sent_at" => info.sent_at_ms = v.parse().ok(),
            "data" if method == axum::http::Method::GET => info.data = Some(v.into_owned()),
            _ => {}
        }
    }
    let limit = api.ingest.limit();
    let refused = |r: crate::source::ingest::Refused| {
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut answer = error(status, r.message());
        if let Some(wait) = r.retry_after() {
            answer
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, wait.into());
        }
        answer
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refused before a byte of it is read.
        let r = crate::source::ingest::Refused::TooLarge(format!(
            "the body is larger than {limit} bytes ([server].max_ingest_bytes)"
        ));
        api.ingest.count(r.result());
        return refused(r);
    }
    // A turn first: the bodies read at once are bounded, whatever number of clients send.
    let turn = match api.ingest.turn().await {
        Ok(t) => t,
        Err(r) => {
            api.ingest.count(r.result());
            return refused(r);
        }
    };
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            // The limit, or a body that broke off.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut too_large = false;
            while let Some(c) = cause {
                too_large |= c.is::<http_body_util::LengthLimitError>();
                cause = c.source();
            }
            let r = if too_large {
                crate::source::ingest::Refused::TooLarge(format!(
                    "the body is larger than {limit} bytes ([server].max_ingest_bytes)"
                ))
            } else {
                crate::source::ingest::Refused::BadRequest(format!(
                    "the body could not be read: {e}"
                ))
            };
            api.ingest.count(r.result());
            return refused(r);
        }
        Err(_) => {
            api.ingest.count("timeout");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body took longer than {} s", BODY_TIMEOUT.as_secs()),
            );
        }
    };
    match api.ingest.capture(bytes, info, turn).await {
        Ok(_) => Json(serde_json::json!({ "status": 1 })).into_response(),
        Err(r) => {
            tracing::debug!(
                status = r.status(),
                reason = r.message(),
                "Ingest request refused"
            );
            refused(r)
        }
    }
}

/// The query of `GET /api/v1/history`.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    /// How far back, e.g. `7d`. Default `24h`.
    since: Option<String>,
    /// At most this many events. Default 1000, at most 10000.
    limit: Option<usize>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let answer = ApiError {
        error: message.into(),
    };
    (status, Json(answer)).into_response()
}

/// Checks the bearer token in constant time.
fn authorized(cfg: &Config, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &cfg.server.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "write endpoints are disabled: set [server].token in the configuration",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let same = token.matches(given);
    if same {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

async fn ask<T>(
    api: &Api,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is not running; try again",
        )
    };
    api.commands
        .send(make(tx))
        .await
        .map_err(|_| unavailable())?;
    match tokio::time::timeout(PIPELINE_WAIT, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(unavailable()),
    }
}

async fn alerts(State(api): State<Api>) -> Response {
    match ask(&api, Command::Alerts).await {
        Ok(list) => Json(list).into_response(),
        Err(r) => r,
    }
}

async fn ack(State(api): State<Api>, headers: HeaderMap, body: Json<AckRequest>) -> Response {
    if let Err(r) = authorized(&api.config.borrow(), &headers) {
        return r;
    }
    let Json(req) = body;
    if req.by.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`by` must name who acknowledges");
    }
    let result = ask(&api, |reply| Command::Ack {
        alert: req.alert.clone(),
        by: req.by.clone(),
        comment: req.comment.clone(),
        reply,
    })
    .await;
    match result {
        Ok(Ok(acknowledged)) => Json(Acknowledged { acknowledged }).into_response(),
        Ok(Err(why)) => error(StatusCode::NOT_FOUND, why),
        Err(r) => r,
    }
}

async fn silences(State(api): State<Api>) -> Response {
    match ask(&api, Command::Silences).await {
        Ok(list) => {
            let now = crate::clock::now_ms();
            let out: Vec<SilenceView> = list.iter().map(|s| SilenceView::new(s, now)).collect();
            Json(out).into_response()
        }
        Err(r) => r,
    }
}

async fn add_silence(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Json<SilenceRequest>,
) -> Response {
    if let Err(r) = authorized(&api.config.borrow(), &headers) {
        return r;
    }
    let Json(req) = body;
    if req.matchers.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "a silence needs at least one matcher, e.g. rule=NAME",
        );
    }
    if req.reason.trim().is_empty() || req.by.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "a silence needs a `reason` and a `by`",
        );
    }
    let duration = match crate::config::parse_duration(&req.duration) {
        Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(365 * 24 * 3600) => d,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`duration` must be between 1s and 365d",
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let result = ask(&api, |reply| Command::AddSilence {
        matchers: req.matchers,
        duration,
        reason: req.reason,
        by: req.by,
        reply,
    })
    .await;
    match result {
        Ok(Ok(s)) => (StatusCode::CREATED, Json(SilenceEnd::new(&s))).into_response(),
        Ok(Err(why)) => error(StatusCode::INTERNAL_SERVER_ERROR, why),
        Err(r) => r,
    }
}

async fn expire_silence(
    State(api): State<Api>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<u64>,
) -> Response {
    if let Err(r) = authorized(&api.config.borrow(), &headers) {
        return r;
    }
    match ask(&api, |reply| Command::ExpireSilence { id, reply }).await {
        Ok(Ok(s)) => Json(SilenceEnd::new(&s)).into_response(),
        Ok(Err(why)) => error(StatusCode::NOT_FOUND, why),
        Err(r) => r,
    }
}

async fn history(State(api): State<Api>, query: axum::extract::Query<HistoryQuery>) -> Response {
    let since = match query.since.as_deref().map(crate::config::parse_duration) {
        None => Duration::from_secs(24 * 3600),
        Some(Ok(d)) => d.min(Duration::from_secs(3650 * 24 * 3600)),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = query.limit.unwrap_or(1000).min(10_000);
    let from = crate::clock::now_ms() - since.as_millis() as i64;
    let _turn = match heavy_turn(&api).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.history::<crate::history::Event>(from, limit))
        .await
    {
        Ok(Ok(events)) => Json(events).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/query?metric=M&match=L=V&since=1h&until=now&agg=p95&step=5m`: measurements,
/// as `sloguard query --format json` prints them. `match` may repeat.
async fn query(State(api): State<Api>, raw: axum::extract::RawQuery) -> Response {
    let mut metric = None;
    let mut matchers = Vec::new();
    let (mut since, mut until) = ("1h".to_string(), "now".to_string());
    let (mut agg, mut step) = (None, None);
    for (k, v) in url::form_urlencoded::parse(raw.0.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "metric" => metric = Some(v.into_owned()),
            "match" => matchers.push(v.into_owned()),
            "since" => since = v.into_owned(),
            "until" => until = v.into_owned(),
            "agg" => agg = Some(v.into_owned()),
            "step" => step = Some(v.into_owned()),
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown parameter `{other}`; use metric, match, since, until, agg, step"
                    ),
                );
            }
        }
    }
    let Some(metric) = metric else {
        return error(StatusCode::BAD_REQUEST, "`metric` is required");
    };
    let request = match crate::query::Request::parse(
        &metric,
        &matchers,
        &since,
        &until,
        agg.as_deref(),
        step.as_deref(),
        crate::clock::now_ms(),
    ) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let _turn = match heavy_turn(&api).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let store = api.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let snap = store.snapshot()?;
        request.run(&snap)
    })
    .await;
    match result {
        Ok(Ok(answer)) => Json(answer.to_json()).into_response(),
        Ok(Err(e @ crate::query::QueryError::Store(_))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/dead-letters`: notifications that could not be delivered, with why.
async fn dead_letters(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    let result =
        tokio::task::spawn_blocking(move || store.dead_letters::<crate::notify::outbox::Entry>())
            .await;
    match result {
        Ok(Ok(list)) => {
            let out: Vec<DeadLetter> = list
                .iter()
                .map(|(id, e)| match e {
                    Ok(e) => DeadLetter::new(*id, e),
                    Err(reason) => DeadLetter::unreadable(*id, &reason.to_string()),
                })
                .collect();
            Json(out).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The query of `GET /` and `GET /api/v1/dashboard`.
#[derive(Debug, Deserialize)]
struct DashboardQuery {
    /// `1h`, `24h`, `7d`, `30d` or any duration from 1m to 400d; the configured default.
    range: Option<String>,
}

/// Reads the dashboard for the asked range: alerts and silences from the pipeline, the rest
/// from one store snapshot.
async fn dashboard_data(
    api: &Api,
    query: &DashboardQuery,
) -> Result<crate::dashboard::Dashboard, Response> {
    let cfg = api.config.borrow().clone();
    let (range_text, range) = match query.range.as_deref() {
        Some(text) => match crate::dashboard::parse_range(text) {
            Ok(d) => (text.to_string(), d),
            Err(e) => return Err(error(StatusCode::BAD_REQUEST, e)),
        },
        None => (
            crate::dashboard::range_name(cfg.dashboard.default_range),
            cfg.dashboard.default_range,
        ),
    };
    let _turn = heavy_turn(api).await?;
    let alerts = ask(api, Command::Alerts).await?;
    let silences = ask(api, Command::Silences).await?;
    let store = api.store.clone();
    let now = crate::clock::now_ms();
    let built = tokio::task::spawn_blocking(move || {
        let from = now.saturating_sub(range.as_millis() as i64).max(0);
        let history =
            crate::dashboard::history(&store, from).map_err(crate::query::QueryError::Store)?;
        let snap = store.snapshot()?;
        let held = crate::dashboard::Held {
            alerts,
            silences,
            history,
        };
        crate::dashboard::build(&cfg, &snap, held, (&range_text, range), now)
    })
    .await;
    match built {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /`: the dashboard page.
async fn dashboard_page(
    State(api): State<Api>,
    query: axum::extract::Query<DashboardQuery>,
) -> Response {
    let d = match dashboard_data(&api, &query).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let now = crate::clock::now_ms();
    match tokio::task::spawn_blocking(move || crate::dashboard::html::page(&d, now)).await {
        Ok(page) => axum::response::Html(page).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/dashboard?range=24h`: what the page shows, as JSON.
async fn dashboard_json(
    State(api): State<Api>,
    query: axum::extract::Query<DashboardQuery>,
) -> Response {
    match dashboard_data(&api, &query).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => r,
    }
}

/// `GET /metrics`: OpenMetrics text, for Prometheus.
async fn metrics(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    let counted = tokio::task::spawn_blocking(move || {
        let pending = store.outbox_len();
        let size = std::fs::metadata(store.path()).map(|m| m.len());
        (pending, size, store.dropped(), store.write_state())
    })
    .await;
    if let Ok((pending, size, dropped, writes)) = counted {
        let m = &api.metrics;
        m.store_write_errors
            .inc_by(writes.errors.saturating_sub(m.store_write_errors.get()));
        m.store_records_lost.inc_by(
            writes
                .unsaved
                .lost
                .saturating_sub(m.store_records_lost.get()),
        );
        m.store_writable.set(i64::from(writes.failing.is_none()));
        m.store_unsaved_records.set(writes.unsaved.records as i64);
        for (reason, n) in [
            ("out_of_order", dropped.out_of_order),
            ("invalid", dropped.invalid),
            ("corrupt", dropped.corrupt),
            ("future", dropped.future),
        ] {
            let c = api
                .metrics
                .store_dropped
                .get_or_create(&crate::metrics::ReasonLabels {
                    reason: reason.to_string(),
                });
            c.inc_by(n.saturating_sub(c.get()));
        }
        if let Ok(n) = pending {
            api.metrics.outbox_pending.set(n as i64);
        }
        if let Ok(n) = size {
            api.metrics.store_size_bytes.set(n as i64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
        .into_response()
}

/// The PostHog capture paths, each with and without its trailing slash.
pub const CAPTURE_PATHS: [&str; 5] = ["/e", "/i/v0/e", "/capture", "/batch", "/track"];

pub fn router(api: Api) -> Router {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    let mut capture_routes = Router::new();
    for path in CAPTURE_PATHS {
        for p in [path.to_string(), format!("{path}/")] {
            capture_routes = capture_routes.route(&p, get(capture).post(capture));
        }
    }
    // Browsers post from the app's origin: mirror it, as PostHog does.
    let capture_routes = capture_routes
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::mirror_request())
                .allow_headers(AllowHeaders::mirror_request())
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_credentials(true),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/", get(dashboard_page))
        .route("/api/v1/dashboard", get(dashboard_json))
        .route("/healthz", get(healthz))
        .route("/metrics", get(self::metrics))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/ack", post(ack))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/history", get(history))
        .route("/api/v1/query", get(query))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/silences/{id}/expire", post(expire_silence))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .merge(capture_routes)
        .with_state(api)
}

/// Before every route but capture: the `Host` header must name this server (so a web page
/// cannot reach a loopback dashboard through DNS rebinding), a write must carry the bearer
/// token before its body is read, and no request may take longer than `REQUEST_TIMEOUT`.
async fn guard(
    State(api): State<Api>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(host) = host {
        let allowed = api.config.borrow().server.allowed_hosts.clone();
        if !host_allowed(&host, &allowed) {
            return error(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "`{host}` is not a name of this server; add it to [server].allowed_hosts to serve it"
                ),
            );
        }
    }
    let method = request.method();
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        let cfg = api.config.borrow().clone();
        if let Err(r) = authorized(&cfg, request.headers()) {
            return r;
        }
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the answer took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Whether a `Host` header names this server: an IP address (a DNS rebinding attack needs a
/// name), `localhost`, or one of `[server].allowed_hosts`; with any port.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:9797`
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Serves the API until `stop`, on `bound` when given, else on `[server].listen`.
pub async fn run(
    api: Api,
    bound: Option<Arc<std::net::TcpListener>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listen = api.config.borrow().server.listen;
    let listener = match bound {
        Some(l) => {
            let l = l.try_clone()?;
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)?
        }
        None => TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?,
    };
    tracing::info!(address = %listener.local_addr()?, "HTTP API listening");
    let max_connections = api.config.borrow().server.max_connections;
    let connections = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let metrics = api.metrics.clone();
    let service = hyper_util::service::TowerToHyperService::new(router(api));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_headers(100);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Over the cap a connection is closed at once: the ones held are served.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    // Requests under way get a moment to finish; idle connections are closed.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

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
}

/// The pipeline is taken for stalled when it has not turned for this long.
const STALLED_MS: i64 = 30_000;

/// `GET /healthz`: 200 `ok` while the pipeline turns (it does at least once a second), 503
/// with the reason otherwise.
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
        error(status, r.message())
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
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
    };
    match api.ingest.capture(bytes, info).await {
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
            let out: Vec<DeadLetter> = list.iter().map(|(id, e)| DeadLetter::new(*id, e)).collect();
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
        (pending, size, store.dropped())
    })
    .await;
    if let Ok((pending, size, dropped)) = counted {
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
        .merge(capture_routes)
        .with_state(api)
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
    axum::serve(listener, router(api))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(())
}

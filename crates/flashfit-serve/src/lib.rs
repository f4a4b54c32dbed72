//! `flashfit serve`: the app-facing HTTP API (this crate) and the recommendation service
//! behind it ([`recommend`]), on `FLASHFIT_HTTP_ADDR` on `FLASHFIT_HTTP_ADDR`:
//! - `GET /v1/users/{user_id}/search?like=<garment_id>|text=<query>&category=&color=&k=` →
//!   `{"results": [{garment_id, score, category, unsure, color_primary, style_tags, caption}]}`
//!   (`unsure`: `category` is a group or `unknown`, the classifier was not sure of more);
//! - `GET /v1/users/{user_id}/outfits?k=&occasion=&season=` →
//!   `{"outfits": [{garment_ids, score, breakdown, unsure}], "variant": …}` (`unsure`, when
//!   present: the garments known only by their group; impressions logged to
//!   `flashfit.kpi`).
//!
//! An unknown user or garment is an empty result (200); malformed parameters are a 400 with a
//! message. With `[auth]` configured every user route needs a bearer token naming that user
//! (or an operator's): see [`auth`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use flashfit_config::Config;
use flashfit_lance::search::{Filters, Hit};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub mod auth;
mod listener;
pub mod ratelimit;
pub mod recommend;

use flashfit_pipeline::Result;
use flashfit_pipeline::search::Searcher;
use recommend::{RecommendError, Recommender};

/// `GET /v1/users/{user_id}/search` parameters; any other parameter is a 400.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    like: Option<String>,
    text: Option<String>,
    category: Option<String>,
    color: Option<String>,
    k: Option<usize>,
}

/// `GET /v1/users/{user_id}/outfits` parameters; any other parameter is a 400.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutfitParams {
    k: Option<usize>,
    occasion: Option<String>,
    season: Option<String>,
}

/// The parameters, or the 400 that says what is wrong with them (unknown or repeated
/// parameter, a value of the wrong type).
fn params<T>(q: std::result::Result<Query<T>, QueryRejection>) -> std::result::Result<T, Reply> {
    q.map(|Query(p)| p).map_err(|e| bad(e.body_text()))
}

type Reply = (StatusCode, Json<Value>);

fn reply(code: StatusCode, body: Value) -> Reply {
    (code, Json(body))
}

/// A 503 that says what is unavailable, not why (the cause is logged).
fn unavailable(what: &str) -> Reply {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": format!("{what} is unavailable right now; try again later")}),
    )
}

fn bad(message: impl Into<String>) -> Reply {
    reply(StatusCode::BAD_REQUEST, json!({"error": message.into()}))
}

async fn outfits_handler(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    q: std::result::Result<Query<OutfitParams>, QueryRejection>,
) -> Reply {
    let p = match params(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let outfits = &api.recommender.config().outfits;
    let max_k = outfits.max_k;
    let k = match p.k {
        None => outfits.k,
        Some(k) if (1..=max_k).contains(&k) => k,
        Some(_) => return bad(format!("k must be an integer from 1 to {max_k}")),
    };
    let req = flashfit_outfits::Request {
        k,
        occasion: p.occasion.filter(|o| !o.is_empty()),
        season: p.season.filter(|s| !s.is_empty()),
    };
    // Dropped with this future when the request times out: the scoring stops.
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    match api
        .recommender
        .recommend_unless(api.searcher.table(), &user_id, &req, &cancel)
        .await
    {
        Ok(o) => reply(StatusCode::OK, json!(o)),
        Err(RecommendError::BadRequest(m)) => bad(m),
        Err(RecommendError::Unavailable(e)) => {
            tracing::error!(error = %e, user_id, "recommendation failed");
            unavailable("outfits")
        }
    }
}

/// `GET /v1/users/{user_id}/variants`: the user's assignments in the experiments running now.
async fn variants_handler(State(api): State<Arc<Api>>, Path(user_id): Path<String>) -> Reply {
    reply(StatusCode::OK, json!(api.recommender.assignments(&user_id)))
}

/// What the handlers share.
pub struct Api {
    pub searcher: Searcher,
    pub recommender: Recommender,
}

async fn search_handler(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    q: std::result::Result<Query<SearchParams>, QueryRejection>,
) -> Reply {
    let s = &api.searcher;
    // Dropped with this future when the request times out: a queued embedding is skipped.
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let p = match params(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let k = match p.k {
        None => 10,
        Some(k) if (1..=100).contains(&k) => k,
        Some(_) => return bad("k must be an integer from 1 to 100"),
    };
    let filters = Filters {
        category: p.category,
        color: p.color,
    };
    let results: std::result::Result<Vec<Hit>, flashfit_lance::Error> = match (p.like, p.text) {
        (Some(g), None) if !g.is_empty() => {
            match flashfit_lance::search::like(s.table(), &user_id, &g, k, &filters).await {
                // The user or the garment is unknown: nothing is like it.
                Err(flashfit_lance::Error::BadRecord(_)) => Ok(Vec::new()),
                r => r,
            }
        }
        (None, Some(t)) if !t.trim().is_empty() => match s.text_vector_unless(&t, &cancel).await {
            Ok(v) => flashfit_lance::search::text(s.table(), &user_id, v, k, &filters).await,
            Err(e) => {
                tracing::error!(error = %e, "text model unavailable");
                return unavailable("search");
            }
        },
        _ => return bad("give exactly one of `like` (a garment id) or `text` (a query)"),
    };
    match results {
        Ok(r) => reply(StatusCode::OK, json!({"results": r})),
        Err(e) => {
            tracing::error!(error = %e, user_id, "search failed");
            unavailable("search")
        }
    }
}

/// Request metrics of the API, served on its own `/metrics`.
#[derive(Clone)]
pub struct HttpMetrics {
    registry: prometheus::Registry,
    duration: prometheus::HistogramVec,
    refusals: prometheus::IntCounterVec,
    rate_limited: prometheus::IntCounter,
    rate_clients: prometheus::IntGauge,
    conns: listener::ConnMetrics,
    health: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpMetrics {
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "flashfit_http_request_duration_seconds",
                "Time to answer an API request, by route and status code.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "code"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(duration.clone()))
            .expect("metric registered once");
        // Exported from the start (dashboards, alerts): each API route's 200 series.
        for route in ["search", "outfits", "variants"] {
            duration.with_label_values(&[&format!("/v1/users/{{user_id}}/{route}"), "200"]);
        }
        let refusals = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "flashfit_http_auth_refusals_total",
                "Requests refused by authentication (401) or authorisation (403), by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(refusals.clone()))
            .expect("metric registered once");
        let phases = &*recommend::PHASES;
        for phase in ["wardrobe", "preferences", "score", "impressions"] {
            phases.with_label_values(&[phase]);
        }
        // Every HttpMetrics of the process shares the one recommendation histogram.
        let _ = registry.register(Box::new(phases.clone()));
        let rate_limited = prometheus::IntCounter::new(
            "flashfit_http_rate_limited_total",
            "API requests answered 429: the client was over [http] rate_per_s.",
        )
        .expect("valid metric definition");
        let rate_clients = prometheus::IntGauge::new(
            "flashfit_http_rate_limited_clients",
            "Clients the rate limiter holds state for (after the last minute's clean-up).",
        )
        .expect("valid metric definition");
        for m in [
            Box::new(rate_limited.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rate_clients.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        let conns = listener::ConnMetrics::register(&registry);
        HttpMetrics {
            registry,
            duration,
            refusals,
            rate_limited,
            rate_clients,
            conns,
            health: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    fn observe(&self, route: &str, code: StatusCode, seconds: f64) {
        self.duration
            .with_label_values(&[route, code.as_str()])
            .observe(seconds);
    }

    fn encode(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What the limit layer needs: the concurrency bound, the timeout, the URI bound, metrics.
struct Limits {
    permits: Arc<tokio::sync::Semaphore>,
    timeout: std::time::Duration,
    max_uri: usize,
    metrics: HttpMetrics,
}

/// Every API request: bounded URI, bounded concurrency (503 `overloaded` at once when full),
/// bounded time (503 after `request_timeout_ms`), and its latency recorded per route.
async fn limit(
    State(l): State<Arc<Limits>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // The route template, not the path (user ids would explode the label set).
    let path = req.uri().path();
    let route = ["search", "outfits", "variants"]
        .into_iter()
        .find(|r| path.ends_with(&format!("/{r}")))
        .map(|r| format!("/v1/users/{{user_id}}/{r}"))
        .unwrap_or_else(|| "other".into());
    let started = std::time::Instant::now();
    let uri_len = req.uri().path().len() + req.uri().query().map_or(0, str::len);
    let resp = if uri_len > l.max_uri {
        reply(
            StatusCode::URI_TOO_LONG,
            json!({"error": format!("path and query longer than {} bytes", l.max_uri)}),
        )
        .into_response()
    } else {
        match l.permits.clone().try_acquire_owned() {
            Err(_) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "overloaded; try again later"}),
            )
            .into_response(),
            Ok(_permit) => match tokio::time::timeout(l.timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        route,
                        timeout_ms = l.timeout.as_millis() as u64,
                        "request timed out"
                    );
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "the request took too long; try again later"}),
                    )
                    .into_response()
                }
            },
        }
    };
    l.metrics
        .observe(&route, resp.status(), started.elapsed().as_secs_f64());
    resp
}

async fn metrics_handler(State(m): State<HttpMetrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.encode(),
    )
}

async fn health_handler(State(m): State<HttpMetrics>) -> Reply {
    if m.health.load(std::sync::atomic::Ordering::Relaxed) {
        reply(StatusCode::OK, json!({"status": "ok"}))
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "stopping"}),
        )
    }
}

/// The answer to a refused request: 401 with a `WWW-Authenticate` challenge, or 403.
fn refused(metrics: &HttpMetrics, r: auth::Refusal) -> axum::response::Response {
    metrics.refusals.with_label_values(&[r.label()]).inc();
    let code = match r {
        auth::Refusal::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut resp = reply(code, json!({"error": r.message()})).into_response();
    if let Some(c) = r.challenge() {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(c),
        );
    }
    resp
}

/// The answer to a client over its rate: 429 with `Retry-After`.
fn rate_limited(metrics: &HttpMetrics, wait: std::time::Duration) -> axum::response::Response {
    metrics.rate_limited.inc();
    let secs = ratelimit::retry_after_secs(wait);
    let mut resp = reply(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": format!("too many requests; retry after {secs} s")}),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    resp
}

/// What the authorisation layers need.
#[derive(Clone)]
struct Gate {
    auth: auth::Authenticator,
    metrics: HttpMetrics,
    limiter: ratelimit::ClientLimiter,
}

/// The rate-limit key of a request without a verified subject: its peer address (none in
/// tests that call the router directly).
fn address_key(req: &axum::extract::Request) -> String {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| format!("addr:{}", c.0.ip()))
        .unwrap_or_else(|| "addr:unknown".into())
}

impl Gate {
    /// The caller the request's `Authorization` header proves (read before any await: a
    /// request is not `Sync`).
    fn caller_of(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> impl std::future::Future<Output = Result<Option<auth::Caller>, auth::Refusal>> + Send + 'static
    {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let auth = self.auth.clone();
        async move { auth.verify(header.as_deref()).await }
    }
}

/// The user routes: a token naming `{user_id}` (or an operator's), when authentication is on.
/// The verified caller goes on in the request's extensions.
async fn authorize(
    State(g): State<Gate>,
    Path(user_id): Path<String>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // The same rule as the events' user ids (no `/`, `..`, NUL, at most 255 bytes).
    if let Err(e) = flashfit_schema::check_user_id(&user_id) {
        return bad(e.0).into_response();
    }
    let caller = g.caller_of(req.headers()).await;
    // One bucket per subject when the token proves one, else per address (bad tokens too).
    let client = match &caller {
        Ok(Some(c)) => format!("sub:{}", c.subject),
        _ => address_key(&req),
    };
    if let Err(wait) = g.limiter.check(&client) {
        return rate_limited(&g.metrics, wait);
    }
    match caller {
        Ok(None) => next.run(req).await,
        Ok(Some(c)) if c.may_act_for(&user_id) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        Ok(Some(c)) => {
            tracing::warn!(
                subject = c.subject,
                user_id,
                "a token used on another user's route"
            );
            refused(&g.metrics, auth::Refusal::Forbidden)
        }
        Err(r) => refused(&g.metrics, r),
    }
}

/// `/metrics`: open, unless `[auth] metrics_scope` names the scope it needs.
async fn metrics_gate(
    State(g): State<Gate>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(scope) = g.auth.metrics_scope().map(str::to_owned) else {
        return next.run(req).await;
    };
    match g.caller_of(req.headers()).await {
        Ok(None) => next.run(req).await,
        Ok(Some(c)) if c.has_scope(&scope) => next.run(req).await,
        Ok(Some(_)) => refused(&g.metrics, auth::Refusal::Forbidden),
        Err(r) => refused(&g.metrics, r),
    }
}

/// The API's routes with the default limits and no authentication (see [`router_with`]).
pub fn router(api: Arc<Api>) -> Router {
    router_with(
        api,
        &flashfit_config::HttpConfig::default(),
        HttpMetrics::new(),
        auth::Authenticator::disabled(),
    )
}

/// The API's routes under `limits` and `auth`, plus `/metrics` (behind `[auth] metrics_scope`
/// when set) and `/health` (always open), neither limited.
pub fn router_with(
    api: Arc<Api>,
    limits: &flashfit_config::HttpConfig,
    metrics: HttpMetrics,
    auth: auth::Authenticator,
) -> Router {
    let gate = Gate {
        auth,
        metrics: metrics.clone(),
        limiter: ratelimit::ClientLimiter::new(limits.rate_per_s, limits.rate_burst),
    };
    let limiter = gate.limiter.clone();
    let l = Arc::new(Limits {
        permits: Arc::new(tokio::sync::Semaphore::new(
            limits.max_concurrent_requests.max(1),
        )),
        timeout: std::time::Duration::from_millis(limits.request_timeout_ms.max(1)),
        max_uri: limits.max_uri_bytes,
        metrics: metrics.clone(),
    });
    let api_routes = Router::new()
        .route("/v1/users/{user_id}/search", get(search_handler))
        .route("/v1/users/{user_id}/outfits", get(outfits_handler))
        .route("/v1/users/{user_id}/variants", get(variants_handler))
        .route_layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(l, limit))
        .with_state(api);
    let metrics_route = Router::new()
        .route("/metrics", get(metrics_handler))
        .route_layer(axum::middleware::from_fn_with_state(gate, metrics_gate))
        .with_state(metrics.clone());
    let health = Router::new()
        .route("/health", get(health_handler))
        .with_state(metrics.clone());
    // Clients whose buckets are full again are forgotten every minute (the router lives as
    // long as its server; the task ends with the runtime).
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                limiter.forget_idle();
                metrics.rate_clients.set(limiter.clients() as i64);
            }
        });
    }
    api_routes.merge(metrics_route).merge(health)
}

/// The authenticator `[auth]` configures, refusing to serve a non-loopback `addr` without
/// one unless `allow_unauthenticated` says so.
async fn start_auth(config: &Config, addr: SocketAddr) -> Result<auth::Authenticator> {
    let a = auth::Authenticator::new(&config.auth)
        .await
        .map_err(|e| flashfit_pipeline::Error::Invalid(e.to_string()))?;
    if !a.enabled() && !addr.ip().is_loopback() {
        if !config.auth.allow_unauthenticated {
            return Err(flashfit_pipeline::Error::Invalid(format!(
                "refusing to serve {addr} without authentication: anyone who reaches it could read \
                 any wardrobe. Set [auth] jwks_uri (FLASHFIT_AUTH__JWKS_URI; hs256_secret for \
                 development), bind a loopback address, or set [auth] allow_unauthenticated = true"
            )));
        }
        tracing::warn!(
            %addr,
            "SERVING WITHOUT AUTHENTICATION on a non-loopback address ([auth] allow_unauthenticated): \
             anyone who reaches it can read and poison any user's data"
        );
    }
    Ok(a)
}

/// Binds `addr` and serves until `shutdown`; returns the bound address and the server task.
pub async fn serve(
    config: &Config,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let auth = start_auth(config, addr).await?;
    let api = Arc::new(Api {
        searcher: Searcher::open(config).await?,
        recommender: Recommender::new(config)?,
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let metrics = HttpMetrics::new();
    auth.spawn_refresh(shutdown.clone());
    let app = router_with(api.clone(), &config.http, metrics.clone(), auth);
    let limits = listener::ConnLimits::of(&config.http);
    let drain = std::time::Duration::from_millis(config.http.request_timeout_ms.max(1))
        + std::time::Duration::from_secs(1);
    let task = tokio::spawn(async move {
        let stop = CancellationToken::new();
        let stopping = {
            let (s, m, stop) = (shutdown.clone(), metrics.clone(), stop.clone());
            async move {
                s.cancelled().await;
                m.health.store(false, std::sync::atomic::Ordering::Relaxed);
                stop.cancel();
            }
        };
        tokio::spawn(stopping);
        listener::serve(listener, app, limits, metrics.conns.clone(), stop, drain).await;
        // Impressions of answered requests are delivered before the process goes.
        api.recommender
            .flush(std::time::Duration::from_secs(5))
            .await;
    });
    tracing::info!(addr = %bound, "http api listening");
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let code = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        (code, body.unwrap_or_default())
    }

    /// Issue 13: parameters are parsed by axum's `Query` into typed structs that deny unknown
    /// fields; every malformed query is a JSON 400 that names the problem.
    #[tokio::test]
    async fn malformed_queries_are_json_400s_naming_the_problem() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = Config {
            lancedb_uri: format!("file://{}", dir.path().display()),
            ..Config::default()
        };
        let token = CancellationToken::new();
        let (addr, task) = serve(&config, "127.0.0.1:0".parse().expect("addr"), token.clone())
            .await
            .expect("serve");
        for (path, says) in [
            ("/v1/users/u1/search?texts=shirt", "unknown field `texts`"),
            ("/v1/users/u1/search?text=shirt&k=ten", "k"),
            (
                "/v1/users/u1/search?text=shirt&k=0",
                "k must be an integer from 1 to 100",
            ),
            (
                "/v1/users/u1/search?text=a&text=b",
                "duplicate field `text`",
            ),
            ("/v1/users/u1/search", "give exactly one of"),
            (
                "/v1/users/u1/outfits?occasion=work&colour=red",
                "unknown field `colour`",
            ),
            ("/v1/users/u1/outfits?k=-1", "k"),
        ] {
            let (code, body) = get(addr, path).await;
            assert_eq!(code, 400, "{path}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
            let msg = v["error"].as_str().unwrap_or_default();
            assert!(msg.contains(says), "{path}: {msg}");
        }
        token.cancel();
        task.await.expect("stopped");
    }

    /// Issue 12, defect 9: a request over the time limit is a 503 that says nothing internal,
    /// an over-long URI a 414; `/health` and `/metrics` answer, with per-route latencies.
    #[tokio::test]
    async fn requests_are_bounded_and_measured() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = Config {
            lancedb_uri: format!("file://{}", dir.path().display()),
            http: flashfit_config::HttpConfig {
                request_timeout_ms: 1,
                max_uri_bytes: 200,
                ..Default::default()
            },
            ..Config::default()
        };
        // 1 ms is less than loading the text model takes: the search times out (503).
        let token = CancellationToken::new();
        let (addr, task) = serve(&config, "127.0.0.1:0".parse().expect("addr"), token.clone())
            .await
            .expect("serve");
        let (code, body) = get(addr, "/v1/users/u1/search?text=navy%20shirt").await;
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains("try again later") && !body.contains("model") && !body.contains('/'),
            "internal details in {body}"
        );
        let long = format!("/v1/users/{}/search?text=x", "u".repeat(300));
        assert_eq!(get(addr, &long).await.0, 414);
        assert_eq!(
            get(addr, "/health").await,
            (200, r#"{"status":"ok"}"#.into())
        );
        let (code, metrics) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            metrics.contains(
                r#"flashfit_http_request_duration_seconds_count{code="503",route="/v1/users/{user_id}/search"} 1"#
            ),
            "{metrics}"
        );
        token.cancel();
        task.await.expect("stops");
    }

    /// Issue 12, defect 9: with `max_concurrent_requests` busy, the next request is answered
    /// 503 `overloaded` at once (not queued), and served again once a permit is free.
    #[tokio::test]
    async fn requests_over_the_concurrency_limit_are_refused_at_once() {
        let metrics = HttpMetrics::new();
        let l = Arc::new(Limits {
            permits: Arc::new(tokio::sync::Semaphore::new(1)),
            timeout: std::time::Duration::from_secs(30),
            max_uri: 2_048,
            metrics: metrics.clone(),
        });
        let (entered, gate) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let (e, g) = (entered.clone(), gate.clone());
        let app = Router::new()
            .route(
                "/v1/users/{user_id}/search",
                axum::routing::get(move || {
                    let (e, g) = (e.clone(), g.clone());
                    async move {
                        e.notify_one();
                        g.notified().await;
                        "done"
                    }
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(l, limit));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let first = tokio::spawn(get(addr, "/v1/users/u1/search?text=a"));
        entered.notified().await;
        let t = std::time::Instant::now();
        let (code, body) = get(addr, "/v1/users/u2/search?text=b").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("overloaded"), "{body}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "queued");
        gate.notify_one();
        assert_eq!(first.await.expect("first"), (200, "done".into()));
        // The permit is back: the next request runs (and is let through).
        let next = tokio::spawn(get(addr, "/v1/users/u3/search?text=c"));
        entered.notified().await;
        gate.notify_one();
        assert_eq!(next.await.expect("next"), (200, "done".into()));
        assert!(
            metrics.encode().contains(
                r#"flashfit_http_request_duration_seconds_count{code="503",route="/v1/users/{user_id}/search"} 1"#
            ),
            "{}",
            metrics.encode()
        );
    }
}

//! `flashfit serve`: the app-facing HTTP API on `FLASHFIT_HTTP_ADDR`:
//! - `GET /v1/users/{user_id}/search?like=<garment_id>|text=<query>&category=&color=&k=` →
//!   `{"results": [{garment_id, score, category, color_primary, style_tags, caption}]}`;
//! - `GET /v1/users/{user_id}/outfits?k=&occasion=&season=` →
//!   `{"outfits": [{garment_ids, score, breakdown}], "variant": …}` (impressions logged to
//!   `flashfit.kpi`).
//!
//! An unknown user or garment is an empty result (200); malformed parameters are a 400 with a
//! message.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use flashfit_config::Config;
use flashfit_lance::search::{Filters, Hit};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::personal::{RecommendError, Recommender};
use crate::{Error, Result};

/// What the handlers share: the vector table (opened once) and the text model (loaded on the
/// first text query).
pub struct Searcher {
    table: lancedb::Table,
    text_model: tokio::sync::OnceCell<Arc<flashfit_models::text::MiniLm>>,
}

impl Searcher {
    pub async fn open(config: &Config) -> Result<Self> {
        let lance = |e: flashfit_lance::Error| Error::Invalid(e.to_string());
        let db = flashfit_lance::connect(&config.lancedb_uri, &config.s3)
            .await
            .map_err(lance)?;
        let table = flashfit_lance::garments(&db, &config.lance.table)
            .await
            .map_err(lance)?;
        Ok(Searcher {
            table,
            text_model: tokio::sync::OnceCell::new(),
        })
    }

    pub fn table(&self) -> &lancedb::Table {
        &self.table
    }

    /// The text model's vector for `text` (the model loads on first use).
    pub async fn text_vector(&self, text: &str) -> std::result::Result<Vec<f32>, String> {
        let model = self
            .text_model
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| {
                    flashfit_models::text::MiniLm::load(&flashfit_models::ModelDir::from_env(), 1)
                        .map(Arc::new)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            })
            .await?
            .clone();
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || model.embed(&[text]))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
            .map(|v| v.into_iter().next().unwrap_or_default())
    }
}

#[derive(Debug, Default)]
struct SearchParams {
    like: Option<String>,
    text: Option<String>,
    category: Option<String>,
    color: Option<String>,
    k: Option<String>,
}

impl SearchParams {
    /// Parses an `application/x-www-form-urlencoded` query string.
    fn parse(q: &str) -> std::result::Result<Self, String> {
        let mut p = SearchParams::default();
        for (k, v) in parse_query(q, &["like", "text", "category", "color", "k"])? {
            let slot = match k.as_str() {
                "like" => &mut p.like,
                "text" => &mut p.text,
                "category" => &mut p.category,
                "color" => &mut p.color,
                _ => &mut p.k,
            };
            *slot = Some(v);
        }
        Ok(p)
    }
}

type Reply = (StatusCode, [(header::HeaderName, &'static str); 1], String);

fn reply(code: StatusCode, body: Value) -> Reply {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

fn bad(message: impl Into<String>) -> Reply {
    reply(StatusCode::BAD_REQUEST, json!({"error": message.into()}))
}

/// Parses `k=v&…` into the allowed keys (a key given twice keeps the last value).
fn parse_query(q: &str, allowed: &[&str]) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(format!("unknown parameter `{k}`"));
        }
        out.retain(|(x, _)| x != k.as_ref());
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

async fn outfits_handler(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let params = match parse_query(
        q.as_deref().unwrap_or_default(),
        &["k", "occasion", "season"],
    ) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let outfits = &api.recommender.config().outfits;
    let max_k = outfits.max_k;
    let k = match get("k").map(|k| k.parse::<usize>()) {
        None => outfits.k,
        Some(Ok(k)) if (1..=max_k).contains(&k) => k,
        Some(_) => return bad(format!("k must be an integer from 1 to {max_k}")),
    };
    let req = flashfit_outfits::Request {
        k,
        occasion: get("occasion").filter(|o| !o.is_empty()),
        season: get("season").filter(|s| !s.is_empty()),
    };
    match api
        .recommender
        .recommend(api.searcher.table(), &user_id, &req)
        .await
    {
        Ok(o) => reply(StatusCode::OK, json!(o)),
        Err(RecommendError::BadRequest(m)) => bad(m),
        Err(RecommendError::Unavailable(e)) => {
            tracing::error!(error = %e, "recommendation failed");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            )
        }
    }
}

/// What the handlers share.
pub struct Api {
    pub searcher: Searcher,
    pub recommender: Recommender,
}

async fn search_handler(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    RawQuery(q): RawQuery,
) -> impl IntoResponse {
    let s = &api.searcher;
    let p = match SearchParams::parse(q.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let k = match p.k.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(k)) if (1..=100).contains(&k) => k,
        Some(_) => return bad("k must be an integer from 1 to 100"),
    };
    let filters = Filters {
        category: p.category,
        color: p.color,
    };
    let results: std::result::Result<Vec<Hit>, flashfit_lance::Error> = match (p.like, p.text) {
        (Some(g), None) if !g.is_empty() => {
            match flashfit_lance::search::like(&s.table, &user_id, &g, k, &filters).await {
                // The user or the garment is unknown: nothing is like it.
                Err(flashfit_lance::Error::BadRecord(_)) => Ok(Vec::new()),
                r => r,
            }
        }
        (None, Some(t)) if !t.trim().is_empty() => match s.text_vector(&t).await {
            Ok(v) => flashfit_lance::search::text(&s.table, &user_id, v, k, &filters).await,
            Err(e) => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": format!("text model: {e}")}),
                );
            }
        },
        _ => return bad("give exactly one of `like` (a garment id) or `text` (a query)"),
    };
    match results {
        Ok(r) => reply(StatusCode::OK, json!({"results": r})),
        Err(e) => {
            tracing::error!(error = %e, "search failed");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            )
        }
    }
}

/// The API's routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/users/{user_id}/search", get(search_handler))
        .route("/v1/users/{user_id}/outfits", get(outfits_handler))
        .with_state(api)
}

/// Binds `addr` and serves until `shutdown`; returns the bound address and the server task.
pub async fn serve(
    config: &Config,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let api = Arc::new(Api {
        searcher: Searcher::open(config).await?,
        recommender: Recommender::new(config)?,
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(api);
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(error = %e, "http server failed");
        }
    });
    tracing::info!(addr = %bound, "http api listening");
    Ok((bound, task))
}

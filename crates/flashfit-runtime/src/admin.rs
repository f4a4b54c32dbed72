//! The per-process admin endpoint: `GET /metrics` (Prometheus text) and `GET /health`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::{Health, Metrics, Result};

/// Binds `addr` (fails at once if taken) and serves until `shutdown`. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(metrics);
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    tracing::info!(addr = %bound, "admin server listening");
    Ok((bound, task))
}

async fn metrics_handler(State(m): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.encode(),
    )
}

async fn health_handler(State(m): State<Metrics>) -> impl IntoResponse {
    let h = m.health();
    let degraded = m.degraded();
    let (code, body) = if h.get() == Health::RUNNING && degraded.is_empty() {
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    } else if h.get() == Health::RUNNING {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "degraded", "stages": degraded}),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": h.label()}),
        )
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

//! The operator's HTTP server on `--listen` (Helm Operator `pkg/http/daemon/server.go`):
//! `GET /metrics`, `GET /healthz` (always `OK`), and `POST /api/v1/sync-git`, which asks for a
//! refresh of every git chart mirror now and answers `OK` at once, as the original did.
//!
//! What it deliberately does not serve: pprof (no Go runtime), and no authentication — as in the
//! original, keep the port inside the cluster.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// What the HTTP handlers share.
pub struct ApiState {
    /// The metrics to render.
    pub metrics: Metrics,
    /// Woken by `POST /api/v1/sync-git`; the git chart sources refresh every mirror when it is.
    pub sync_git: Arc<Notify>,
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn sync_git(State(state): State<Arc<ApiState>>) -> &'static str {
    state.sync_git.notify_one();
    "OK"
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found")
}

/// The router of the operator's HTTP server.
pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "OK" }))
        .route("/api/v1/sync-git", post(sync_git))
        .fallback(not_found)
        .with_state(state)
}

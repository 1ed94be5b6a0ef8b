//! The agent's HTTP API, under `/api/flux` as fluxd served it (`pkg/http/transport.go`), plus
//! `/metrics` and `/healthz`. Routes so far: `GET /v11/ping`, `GET /v11/version`,
//! `POST /v11/notify`, `GET /v6/sync?ref=REV`, `GET /v6/identity.pub`,
//! `POST /v9/git-repo-config`, `GET /v6/services` and `/v11/services` (workloads in git with
//! their policies and automation errors); `/v1/`–`/v5/` answer 410 Gone and other paths 404, as fluxd did.
//! The rest of fluxd's API (workloads, images, jobs) comes with later issues. No authentication,
//! as in fluxd: do not expose it outside the cluster.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::json;

use crate::automation::status::WorkloadStatus;
use crate::metrics::Metrics;
use git_mirror::{Mirror, MirrorState};

/// Called with the canonical name of an image repository to scan first.
pub type ImageNotify = Box<dyn Fn(&str) + Send + Sync>;

/// What the API reads from the running agent.
pub struct AgentState {
    /// The agent's version.
    pub version: String,
    /// The deploy key, OpenSSH public format.
    pub public_key: String,
    /// Its SHA256 fingerprint.
    pub fingerprint: String,
    /// The repository URL without credentials.
    pub safe_url: String,
    /// `--git-branch`.
    pub branch: String,
    /// `--git-path`.
    pub paths: Vec<String>,
    /// The git mirror (blocking operations; used from blocking tasks).
    pub mirror: Arc<Mutex<Mirror>>,
    /// The last revision applied without errors.
    pub synced: Mutex<Option<String>>,
    /// Wakes the loop for an immediate fetch and sync.
    pub wake: tokio::sync::Notify,
    /// Metrics.
    pub metrics: Metrics,
    /// The workloads in git and their automation problems, as of the last automation run.
    pub workloads: Mutex<Vec<WorkloadStatus>>,
    /// Asks the registry scanner to read an image repository first (`Kind: image` notifies);
    /// `None` without scanning.
    pub image_notify: Option<ImageNotify>,
    /// Held by a sync or an automation run while it works: one job at a time, as Flux v1's
    /// daemon loop ran them (and so their memory peaks do not add up).
    pub jobs: tokio::sync::Mutex<()>,
    /// The manifests of the last revision the sync loop read (revision, manifests): reused by
    /// the next sync of the same revision (without manifest generation) and by automation runs.
    pub loaded: Mutex<Option<(String, Arc<crate::manifests::LoadedManifests>)>>,
    /// How many syncs have finished (clean or not); automation starts after the first.
    pub syncs: tokio::sync::watch::Sender<u64>,
}

/// Locks a mutex, taking over a poisoned one (the data are plain values, always consistent).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AgentState {
    /// The mirror's state.
    #[must_use]
    pub fn mirror_state(&self) -> MirrorState {
        lock(&self.mirror).state()
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        code,
        Json(json!({"type": "server", "help": message, "error": message})),
    )
        .into_response()
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn version(State(state): State<Arc<AgentState>>) -> Json<String> {
    Json(state.version.clone())
}

/// `POST /v11/notify` body: `{"Kind":"git","Source":{"URL":...,"Branch":...}}`.
#[derive(Debug, Deserialize)]
struct Change {
    #[serde(rename = "Kind")]
    kind: String,
    #[serde(rename = "Source", default)]
    source: serde_json::Value,
}

/// Repository URLs compared as Flux v1 did: ignoring the scheme, credentials and `.git`.
fn same_repository(a: &str, b: &str) -> bool {
    let normal = |url: &str| {
        let url = git_mirror::safe_url(url);
        let rest = url
            .split_once("://")
            .map_or(url.as_str(), |(_, r)| r)
            .to_owned();
        rest.trim_end_matches('/')
            .trim_end_matches(".git")
            .replace(':', "/")
    };
    normal(a) == normal(b)
}

async fn notify(State(state): State<Arc<AgentState>>, Json(change): Json<Change>) -> StatusCode {
    if change.kind == "git" {
        let url = change.source["URL"].as_str().unwrap_or_default();
        let branch = change.source["Branch"].as_str().unwrap_or_default();
        let ours = url.is_empty() || same_repository(url, &state.safe_url);
        if ours && (branch.is_empty() || branch == state.branch) {
            state.wake.notify_one();
        }
    } else if change.kind == "image" {
        let name = change.source["Name"].as_str().unwrap_or_default();
        if let (Some(notify), false) = (&state.image_notify, name.is_empty()) {
            // The name may carry a tag (`repo:tag`); the scanner tracks repositories.
            match model::image::ImageRef::parse(name) {
                Ok(image) => notify(&image.canonical_name()),
                Err(e) => tracing::debug!(name, error = %e, "ignoring an image notification"),
            }
        }
    }
    StatusCode::ACCEPTED
}

/// `?namespace=` or `?services=<id>,<id>` of `GET /v11/services`.
#[derive(Debug, Default, Deserialize)]
struct ServicesQuery {
    namespace: Option<String>,
    services: Option<String>,
}

/// The workloads in git (`ControllerStatus` list), filtered by namespace or IDs.
async fn services(
    State(state): State<Arc<AgentState>>,
    Query(query): Query<ServicesQuery>,
) -> Response {
    if query.namespace.is_some() && query.services.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "namespace and services cannot both be given",
        );
    }
    let ids: Option<Vec<String>> = query
        .services
        .map(|s| s.split(',').map(str::to_owned).collect());
    let all = lock(&state.workloads).clone();
    let shown: Vec<WorkloadStatus> = all
        .into_iter()
        .filter(|w| {
            query
                .namespace
                .as_ref()
                .is_none_or(|ns| w.id.starts_with(&format!("{ns}:")))
                && ids.as_ref().is_none_or(|ids| ids.contains(&w.id))
        })
        .collect();
    Json(shown).into_response()
}

#[derive(Debug, Deserialize)]
struct SyncQuery {
    #[serde(rename = "ref")]
    reference: String,
}

/// Commits between the sync marker and `ref` still to apply; empty once applied.
async fn sync_status(
    State(state): State<Arc<AgentState>>,
    Query(query): Query<SyncQuery>,
) -> Response {
    let synced = lock(&state.synced).clone();
    let mirror = Arc::clone(&state.mirror);
    let reference = query.reference.clone();
    let result = tokio::task::spawn_blocking(move || {
        lock(&mirror).commits_between(synced.as_deref(), &reference)
    })
    .await;
    match result {
        Ok(Ok(commits)) => Json(commits).into_response(),
        Ok(Err(e)) => error(
            StatusCode::BAD_REQUEST,
            format!("failed to find commits up to {}: {e}", query.reference),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the git task stopped unexpectedly",
        ),
    }
}

fn public_key_json(state: &AgentState) -> serde_json::Value {
    let hash = state.fingerprint.trim_start_matches("SHA256:");
    json!({"key": state.public_key, "fingerprints": {"sha256": {"hash": hash}}})
}

async fn identity(State(state): State<Arc<AgentState>>) -> Json<serde_json::Value> {
    Json(public_key_json(&state))
}

async fn git_repo_config(State(state): State<Arc<AgentState>>) -> Json<serde_json::Value> {
    let status = state.mirror_state();
    let errors: Vec<String> = match &status {
        MirrorState::Unreachable(reason) => vec![reason.clone()],
        _ => Vec::new(),
    };
    Json(json!({
        "remote": {"URL": state.safe_url, "branch": state.branch, "path": state.paths.join(",")},
        "publicSSHKey": public_key_json(&state),
        "status": status.to_string(),
        "errors": errors,
    }))
}

async fn metrics(State(state): State<Arc<AgentState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn gone() -> Response {
    error(
        StatusCode::GONE,
        "this API version is no longer supported; upgrade fluxctl",
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "API not found")
}

/// Records `flux_request_duration_seconds{method,route,status_code}`.
async fn timed(State(state): State<Arc<AgentState>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_duration
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The API router; `/metrics` is included when `with_metrics`.
pub fn router(state: Arc<AgentState>, with_metrics: bool) -> axum::Router {
    let api = axum::Router::new()
        .route("/api/flux/v11/ping", get(ping))
        .route("/api/flux/v11/version", get(version))
        .route("/api/flux/v11/notify", post(notify))
        .route("/api/flux/v6/sync", get(sync_status))
        .route("/api/flux/v6/services", get(services))
        .route("/api/flux/v11/services", get(services))
        .route("/api/flux/v6/identity.pub", get(identity))
        .route("/api/flux/v9/git-repo-config", post(git_repo_config))
        .route("/api/flux/{version}/{*rest}", any(route_version))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            timed,
        ));
    let mut router = api.route("/healthz", get(|| async { "OK" }));
    if with_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router.fallback(not_found).with_state(state)
}

/// The metrics-only router for `--listen-metrics`.
pub fn metrics_router(state: Arc<AgentState>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn route_version(
    axum::extract::Path((version, _rest)): axum::extract::Path<(String, String)>,
) -> Response {
    match version.as_str() {
        "v1" | "v2" | "v3" | "v4" | "v5" => gone().await,
        _ => not_found().await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repositories_compare_without_scheme_credentials_or_suffix() {
        assert!(super::same_repository(
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo"
        ));
        assert!(super::same_repository(
            "https://user:pw@github.com/org/repo",
            "https://github.com/org/repo.git"
        ));
        assert!(!super::same_repository(
            "https://github.com/org/other",
            "https://github.com/org/repo"
        ));
    }
}

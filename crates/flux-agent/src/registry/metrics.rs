//! The scanner's Prometheus metrics, registered in one call. Flux v1 names where Flux v1 had
//! one (`pkg/registry/monitoring.go`, `pkg/registry/cache/monitoring.go`):
//! - `flux_registry_fetch_duration_seconds{success}`: one repository's scan round;
//! - `flux_client_fetch_duration_seconds{kind,success}`: one HTTP request, `kind` = `tags` (tag
//!   list pages) or `metadata` (manifests, config blobs, tokens).
//!
//! And ours: `flux_registry_repositories`, `flux_registry_tags` (tracked repositories and their
//! known tags), `flux_registry_rate_limit_rps{host}` (the current, possibly backed-off, limit),
//! `flux_registry_fetch_errors_total{host,category}` (failed repository rounds, by the round's
//! first error: `unauthorized`, `rate_limited`, `status`, `timeout`, `transport`, `parse`)
//! and `flux_registry_failing_repositories`
//! (repositories whose last round failed, which wait for their retry with backoff).

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::RegistryError;

#[derive(Clone, Debug)]
pub(crate) struct RegistryMetrics {
    pub(crate) fetch_duration: HistogramVec,
    pub(crate) client_fetch_duration: HistogramVec,
    pub(crate) repositories: IntGauge,
    pub(crate) tags: IntGauge,
    pub(crate) rate_limit: GaugeVec,
    pub(crate) errors: IntCounterVec,
    pub(crate) failing: IntGauge,
}

impl RegistryMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, RegistryError> {
        let fail = RegistryError::Metrics;
        let fetch_duration = HistogramVec::new(
            HistogramOpts::new(
                "flux_registry_fetch_duration_seconds",
                "Duration of one repository's scan (tag list and image metadata), in seconds.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
            &["success"],
        )
        .map_err(fail)?;
        let client_fetch_duration = HistogramVec::new(
            HistogramOpts::new(
                "flux_client_fetch_duration_seconds",
                "Duration of one registry HTTP request, in seconds.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind", "success"],
        )
        .map_err(fail)?;
        let repositories = IntGauge::new(
            "flux_registry_repositories",
            "Image repositories tracked by the registry scanner.",
        )
        .map_err(fail)?;
        let tags = IntGauge::new(
            "flux_registry_tags",
            "Tags known of the tracked image repositories.",
        )
        .map_err(fail)?;
        let rate_limit = GaugeVec::new(
            Opts::new(
                "flux_registry_rate_limit_rps",
                "Current request rate limit per registry host (halved on HTTP 429), in requests per second.",
            ),
            &["host"],
        )
        .map_err(fail)?;
        let errors = IntCounterVec::new(
            Opts::new(
                "flux_registry_fetch_errors_total",
                "Failed repository scan rounds (the round's first error), by registry host and error category.",
            ),
            &["host", "category"],
        )
        .map_err(fail)?;
        let failing = IntGauge::new(
            "flux_registry_failing_repositories",
            "Tracked repositories whose last scan failed and that wait for a retry with backoff.",
        )
        .map_err(fail)?;
        registry
            .register(Box::new(fetch_duration.clone()))
            .map_err(fail)?;
        registry
            .register(Box::new(client_fetch_duration.clone()))
            .map_err(fail)?;
        registry
            .register(Box::new(repositories.clone()))
            .map_err(fail)?;
        registry.register(Box::new(tags.clone())).map_err(fail)?;
        registry
            .register(Box::new(rate_limit.clone()))
            .map_err(fail)?;
        registry.register(Box::new(errors.clone())).map_err(fail)?;
        registry.register(Box::new(failing.clone())).map_err(fail)?;
        Ok(Self {
            fetch_duration,
            client_fetch_duration,
            repositories,
            tags,
            rate_limit,
            errors,
            failing,
        })
    }
}

//! Prometheus metrics with Flux v1's names (`pkg/daemon/metrics.go`, `pkg/git/metrics.go`,
//! `pkg/http/daemon/server.go`), so existing dashboards and alerts keep working:
//! `flux_daemon_sync_duration_seconds{success}`, `flux_daemon_sync_manifests{success}`,
//! `flux_daemon_queue_length_count`, `flux_git_ready`,
//! `flux_request_duration_seconds{method,route,status_code}`; and `flux_automation_runs_total{success}`.
//! One struct, registered in one call. The registry scanner registers its own metrics in the
//! same registry ([`Metrics::registry`]).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Errors registering metrics (a programming error: a duplicate name).
#[derive(Debug, thiserror::Error)]
#[error("failed to register the agent's metrics")]
pub struct MetricsError(#[from] prometheus::Error);

/// The agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Duration of a whole sync.
    pub sync_duration: HistogramVec,
    /// Manifests synced, by success.
    pub sync_manifests: GaugeVec,
    /// Sync requests waiting.
    pub queue_length: IntGauge,
    /// 1 when the git mirror is ready, else 0.
    pub git_ready: IntGauge,
    /// HTTP API request durations.
    pub request_duration: HistogramVec,
    /// Automation runs, by success (not in Flux v1, which logged them only).
    pub automation_runs: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    ///
    /// Never in practice: only on duplicate registration.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let sync_duration = HistogramVec::new(
            HistogramOpts::new(
                "flux_daemon_sync_duration_seconds",
                "Duration of git-to-cluster synchronisation, in seconds.",
            )
            .buckets(vec![
                0.5, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 75.0, 90.0, 120.0, 240.0,
            ]),
            &["success"],
        )?;
        let sync_manifests = GaugeVec::new(
            Opts::new(
                "flux_daemon_sync_manifests",
                "Number of synchronised manifests, by outcome.",
            ),
            &["success"],
        )?;
        let queue_length = IntGauge::new(
            "flux_daemon_queue_length_count",
            "Count of sync requests waiting in the queue.",
        )?;
        let git_ready = IntGauge::new("flux_git_ready", "Status of the git mirror (1 = ready).")?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "flux_request_duration_seconds",
                "Time (in seconds) spent serving HTTP requests.",
            ),
            &["method", "route", "status_code"],
        )?;
        registry.register(Box::new(sync_duration.clone()))?;
        registry.register(Box::new(sync_manifests.clone()))?;
        registry.register(Box::new(queue_length.clone()))?;
        registry.register(Box::new(git_ready.clone()))?;
        let automation_runs = IntCounterVec::new(
            Opts::new(
                "flux_automation_runs_total",
                "Image automation runs, by whether they finished without a run-wide error.",
            ),
            &["success"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(automation_runs.clone()))?;
        Ok(Self {
            registry,
            sync_duration,
            sync_manifests,
            queue_length,
            git_ready,
            request_duration,
            automation_runs,
        })
    }

    /// The Prometheus registry, for modules that register their own metrics.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The exposition text for `/metrics`.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

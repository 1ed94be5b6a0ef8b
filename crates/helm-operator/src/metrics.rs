//! Prometheus metrics with the Helm Operator's names (`pkg/release/metrics.go`,
//! `pkg/status/metrics.go`, `pkg/operator/metrics.go`), so existing dashboards and the documented
//! alerts keep working, plus a counter of helm processes the original did not have:
//!
//! - `flux_helm_operator_release_action_duration_seconds{action,success,target_namespace,release_name}`
//!   (histogram; actions `sync`, `install`, `upgrade`, `rollback`, `uninstall`, `test`,
//!   `annotate`, `dependency-build`, `recover`);
//! - `flux_helm_operator_release_condition_info{target_namespace,release_name,condition}`
//!   (−1 False, 0 Unknown, 1 True; series removed with the object);
//! - `flux_helm_operator_release_queue_length_count` (reconciles waiting for a worker);
//! - `flux_helm_operator_release_count` (HelmReleases and FluxHelmReleases seen);
//! - `flux_helm_operator_helm_processes_total{version}` (helm processes started).
//!
//! One struct, registered in one call; durations measured by a drop guard so early returns count.

use std::time::Instant;

use model::{ConditionStatus, HelmReleaseStatus};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Errors registering metrics (a programming error: a duplicate name).
#[derive(Debug, thiserror::Error)]
#[error("failed to register the operator's metrics")]
pub struct MetricsError(#[from] prometheus::Error);

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Duration per release action.
    pub action_duration: HistogramVec,
    /// Conditions per release.
    pub condition_info: GaugeVec,
    /// Reconciles waiting for a worker.
    pub queue_length: IntGauge,
    /// Objects seen.
    pub release_count: IntGauge,
    /// Helm processes started, by helm major version.
    pub helm_processes: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    ///
    /// Never in practice: only on duplicate registration.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let action_duration = HistogramVec::new(
            HistogramOpts::new(
                "flux_helm_operator_release_action_duration_seconds",
                "Duration of release actions, in seconds.",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1800.0,
            ]),
            &["action", "success", "target_namespace", "release_name"],
        )?;
        let condition_info = GaugeVec::new(
            Opts::new(
                "flux_helm_operator_release_condition_info",
                "Current HelmRelease condition status: -1 False, 0 Unknown, 1 True.",
            ),
            &["target_namespace", "release_name", "condition"],
        )?;
        let queue_length = IntGauge::new(
            "flux_helm_operator_release_queue_length_count",
            "Count of release reconciles waiting for a worker.",
        )?;
        let release_count = IntGauge::new(
            "flux_helm_operator_release_count",
            "Count of HelmRelease and FluxHelmRelease objects seen.",
        )?;
        let helm_processes = IntCounterVec::new(
            Opts::new(
                "flux_helm_operator_helm_processes_total",
                "Helm processes started, by helm major version.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(action_duration.clone()))?;
        registry.register(Box::new(condition_info.clone()))?;
        registry.register(Box::new(queue_length.clone()))?;
        registry.register(Box::new(release_count.clone()))?;
        registry.register(Box::new(helm_processes.clone()))?;
        Ok(Self {
            registry,
            action_duration,
            condition_info,
            queue_length,
            release_count,
            helm_processes,
        })
    }

    /// Starts timing `action` of a release; the duration is recorded when the guard is dropped,
    /// as failed unless [`ActionTimer::succeeded`] was called.
    #[must_use]
    pub fn time(&self, action: &'static str, namespace: &str, release: &str) -> ActionTimer {
        ActionTimer {
            histogram: self.action_duration.clone(),
            labels: [action.to_owned(), namespace.to_owned(), release.to_owned()],
            started: Instant::now(),
            success: false,
        }
    }

    /// Sets the condition series of a release from its status.
    pub fn record_conditions(&self, namespace: &str, release: &str, status: &HelmReleaseStatus) {
        for kind in [
            model::ConditionType::ChartFetched,
            model::ConditionType::Deployed,
            model::ConditionType::Released,
            model::ConditionType::RolledBack,
            model::ConditionType::Tested,
        ] {
            let value = match crate::status::condition(status, kind) {
                Some(ConditionStatus::True) => 1.0,
                Some(ConditionStatus::False) => -1.0,
                Some(ConditionStatus::Unknown) => 0.0,
                None => {
                    let _ = self.condition_info.remove_label_values(&[
                        namespace,
                        release,
                        kind.as_str(),
                    ]);
                    continue;
                }
            };
            self.condition_info
                .with_label_values(&[namespace, release, kind.as_str()])
                .set(value);
        }
    }

    /// Removes every condition series of a release (its object is gone).
    pub fn forget_release(&self, namespace: &str, release: &str) {
        for kind in [
            "ChartFetched",
            "Deployed",
            "Released",
            "RolledBack",
            "Tested",
        ] {
            let _ = self
                .condition_info
                .remove_label_values(&[namespace, release, kind]);
        }
    }

    /// The exposition text for `/metrics`.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Records one action's duration when dropped.
pub struct ActionTimer {
    histogram: HistogramVec,
    labels: [String; 3],
    started: Instant,
    success: bool,
}

impl ActionTimer {
    /// Marks the action as successful.
    pub fn succeeded(&mut self) {
        self.success = true;
    }
}

impl Drop for ActionTimer {
    fn drop(&mut self) {
        let [action, namespace, release] = &self.labels;
        let success = if self.success { "true" } else { "false" };
        self.histogram
            .with_label_values(&[
                action.as_str(),
                success,
                namespace.as_str(),
                release.as_str(),
            ])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

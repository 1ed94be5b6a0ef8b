//! One reconcile of one HelmRelease or FluxHelmRelease, as a named pipeline (STYLE 3–4; Helm
//! Operator `pkg/release/release.go` `Sync`, with its bugs fixed):
//!
//! describe (pure) -> resolve chart -> compose values -> read the release record -> classify
//! (pure, [`crate::classify`]) -> exactly one helm action -> status.
//!
//! "In sync" runs no helm process at all: the decision uses the chart revision, the checksum of
//! the composed values against the release's stored values, the object's generation and the
//! release's status from Helm's storage Secrets. An action's failure is remedied here as the
//! Helm Operator did — a failed install is uninstalled, a failed upgrade rolled back when
//! `rollback.enable` — and a release left `pending-*` by a killed operator is recovered instead
//! of blocking forever. Status is computed from what was done, written once per change.
//!
//! Deletion (the finalizer's cleanup) uninstalls the release; an absent release is success.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use model::release::{ChartSource, ReleaseDescription};
use model::{HelmReleaseStatus, Phase};

use crate::chart::repo::FetchedChart;
use crate::classify::{self, Action, LatestRelease, Observation, StoredStatus};
use crate::context::{Context, HelmHandle, ReleaseObject};
use crate::helm::storage::StoredRelease;
use crate::helm::{
    DependencyBuildOptions, HelmDriver, HelmError, InstallOptions, Redactor, ReleaseStatus,
    RollbackOptions, TestOptions, UninstallOptions, UpgradeOptions, ValuesStrategy,
};
use crate::status;
use crate::values::ComposedValues;

/// Errors a reconcile hands to the controller's error policy (requeued with backoff). Failures
/// of the release itself are not errors: they are recorded in status and Events.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Writing status failed.
    #[error(transparent)]
    Status(#[from] status::StatusError),
    /// Reading the object failed.
    #[error("failed to read the object: {0}")]
    Read(#[source] kube::Error),
    /// Reading the release record failed.
    #[error("failed to read the release record: {0}")]
    Storage(#[from] crate::helm::storage::StorageError),
    /// The finalizer could not be added or removed.
    #[error("failed to manage the finalizer: {0}")]
    Finalizer(String),
    /// Uninstalling on deletion failed.
    #[error("failed to uninstall release {release}: {source}")]
    Uninstall {
        /// The release.
        release: String,
        /// Why.
        #[source]
        source: HelmError,
    },
}

/// A chart on local disk, kept alive (not evicted, not deleted) while the action runs.
enum LocalChart {
    /// An export of a git chart directory.
    Git(crate::chart::git::GitChart),
    /// A packaged chart from a Helm or OCI repository.
    Packaged(FetchedChart),
}

impl LocalChart {
    fn path(&self) -> &std::path::Path {
        match self {
            Self::Git(chart) => chart.chart_dir(),
            Self::Packaged(chart) => &chart.path,
        }
    }

    fn revision(&self) -> &str {
        match self {
            Self::Git(chart) => chart.revision(),
            Self::Packaged(chart) => &chart.revision,
        }
    }

    fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Self::Git(chart) => Some(chart.chart_dir()),
            Self::Packaged(_) => None,
        }
    }
}

/// The chart of a release: its revision always, its files on disk only once something needs
/// them (an action, or values read from a chart file). A git chart is not exported to decide
/// that a release is in sync.
struct Chart {
    revision: String,
    local: Option<LocalChart>,
    git: Option<(
        model::release::GitChartSource,
        Option<git_mirror::Credentials>,
    )>,
}

impl Chart {
    /// The chart on disk, exported now if it was not yet; the error is a message for status.
    async fn local(&mut self, ctx: &Context) -> Result<&LocalChart, String> {
        if self.local.is_none() {
            let Some((source, credentials)) = &self.git else {
                return Err("the chart was not fetched".to_owned());
            };
            let exported = ctx
                .git
                .fetch(source, credentials.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            self.revision = exported.revision().to_owned();
            self.local = Some(LocalChart::Git(exported));
        }
        self.local
            .as_ref()
            .ok_or_else(|| "the chart was not fetched".to_owned())
    }
}

/// The state one reconcile carries between its steps.
struct Run<'a, K: ReleaseObject> {
    ctx: &'a Context,
    object: &'a K,
    desc: ReleaseDescription,
    helm: HelmHandle,
    status: HelmReleaseStatus,
    original: HelmReleaseStatus,
}

impl<K: ReleaseObject> Run<'_, K> {
    fn phase(&mut self, phase: Phase, message: &str) {
        let ignore = self.desc.test.as_ref().is_some_and(|t| t.ignore_failures);
        status::set_phase(&mut self.status, phase, message, ignore, &status::now());
    }

    /// Writes the status if it changed since it was last written.
    async fn flush(&mut self) -> Result<(), ReconcileError> {
        if self.status == self.original {
            return Ok(());
        }
        let namespace = self.object.namespace().unwrap_or_default();
        status::write(
            &self.ctx.api::<K>(&namespace),
            &namespace,
            &self.object.name_any(),
            &self.status,
        )
        .await?;
        self.original = self.status.clone();
        self.ctx.metrics.record_conditions(
            &self.desc.target_namespace,
            &self.desc.release_name,
            &self.status,
        );
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx.publish(self.object, type_, reason, note).await;
    }

    fn redactor(values: &ComposedValues) -> Redactor {
        Redactor::with_secrets(values.secret_strings.iter().cloned())
    }
}

/// Reconciles `object` towards its release (the finalizer's apply branch).
///
/// # Errors
///
/// [`ReconcileError`] only for failures to read or write the cluster; release failures end in
/// status, Events and a requeue.
pub async fn apply<K: ReleaseObject>(
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let namespace = object.namespace().unwrap_or_default();
    // The controller's cache may not have seen this operator's last status write yet; deciding
    // (and writing status) from a stale copy would undo it. One GET gives the current object.
    let object = match ctx
        .api::<K>(&namespace)
        .get_opt(&object.name_any())
        .await
        .map_err(ReconcileError::Read)?
    {
        Some(fresh) => Arc::new(fresh),
        None => return Ok(Requeue::await_change()),
    };
    let original = object.current_status();
    let desc = match object.describe(&ctx) {
        Ok(desc) => desc,
        Err(error) => {
            // A bad spec waits for the user's next change.
            let mut status = original.clone();
            status::set_phase(&mut status, Phase::Failed, &error, false, &status::now());
            status.observed_generation = object.meta().generation;
            if status != original {
                status::write(
                    &ctx.api::<K>(&namespace),
                    &namespace,
                    &object.name_any(),
                    &status,
                )
                .await?;
            }
            ctx.publish(&*object, EventType::Warning, "FailedReleaseSync", error)
                .await;
            return Ok(Requeue::await_change());
        }
    };
    ctx.references.record(&*object, &desc);
    let Some(helm) = ctx.helm(desc.helm_version) else {
        let mut status = original.clone();
        let message = format!(
            "helm {} is not enabled in this operator (--enabled-helm-versions)",
            desc.helm_version.as_str()
        );
        status::set_phase(&mut status, Phase::Failed, &message, false, &status::now());
        if status != original {
            status::write(
                &ctx.api::<K>(&namespace),
                &namespace,
                &object.name_any(),
                &status,
            )
            .await?;
        }
        return Ok(Requeue::await_change());
    };
    let _permit = ctx.worker_permit().await;
    let mut sync_timer = ctx
        .metrics
        .time("sync", &desc.target_namespace, &desc.release_name);
    let mut run = Run {
        ctx: &ctx,
        object: &*object,
        desc,
        helm,
        status: original.clone(),
        original,
    };
    let requeue = run_pipeline(&mut run).await;
    let outcome = run.flush().await;
    if requeue.is_ok()
        && status::condition(&run.status, model::ConditionType::Released)
            == Some(model::ConditionStatus::True)
    {
        sync_timer.succeeded();
    }
    outcome?;
    requeue
}

async fn run_pipeline<K: ReleaseObject>(run: &mut Run<'_, K>) -> Result<Requeue, ReconcileError> {
    let ctx = run.ctx;
    // 1. Chart.
    let mut chart = match resolve_chart(ctx, &run.desc).await {
        Ok(chart) => chart,
        Err(message) => {
            run.phase(Phase::ChartFetchFailed, &message);
            run.event(EventType::Warning, "FailedReleaseSync", message)
                .await;
            return Ok(ctx.backoff(run.object));
        }
    };
    let needs_chart_files = run
        .desc
        .values_from
        .iter()
        .any(|v| matches!(v, model::release::ValuesSource::ChartFile { .. }));
    if needs_chart_files && let Err(message) = chart.local(ctx).await {
        run.phase(Phase::ChartFetchFailed, &message);
        return Ok(ctx.backoff(run.object));
    }
    let revision = chart.revision.clone();
    let chart_changed = chart_changed(
        ctx,
        &run.desc,
        run.status.last_attempted_revision.as_deref(),
        &revision,
    )
    .await;
    // 2. Values.
    let chart_dir = chart.local.as_ref().and_then(LocalChart::dir);
    let values = match ctx.values.compose_release(&run.desc, chart_dir).await {
        Ok(values) => values,
        Err(error) => {
            let message = format!("failed to compose values: {error}");
            run.phase(Phase::Failed, &message);
            run.status.observed_generation = run.object.meta().generation;
            run.event(EventType::Warning, "FailedReleaseSync", message)
                .await;
            return Ok(if error.is_transient() {
                ctx.backoff(run.object)
            } else {
                // A missing ConfigMap or Secret triggers a reconcile when it appears.
                ctx.resync()
            });
        }
    };
    // 3. The release record.
    let latest = ctx
        .storage
        .latest(&run.desc.target_namespace, &run.desc.release_name)
        .await?;
    let latest_summary = match &latest {
        Some(record) => Some(summarise(ctx, &run.desc, record).await?),
        None => None,
    };
    // 4. Classify, then act once.
    let observation = Observation {
        generation: run.object.meta().generation,
        status: &run.status,
        chart_revision: &revision,
        chart_changed,
        values_checksum: &values.checksum,
        latest: latest_summary.as_ref(),
        rollback: run.desc.rollback.as_ref(),
    };
    let state = classify::classify(&observation);
    let action = classify::plan(&state, latest_summary.as_ref());
    tracing::debug!(release = %run.desc.release_name, ?state, ?action, "classified");
    match action {
        Action::Nothing => {
            in_sync(run, &revision, &values);
            ctx.forget_failures(run.object);
            Ok(ctx.resync())
        }
        Action::Wait => {
            if let Some(record) = &latest {
                run.status.release_status = Some(record.status.as_str().to_owned());
            }
            Ok(ctx.resync())
        }
        Action::Install => install(run, &mut chart, &values).await,
        Action::Upgrade(drift) => {
            let record = latest.as_ref();
            upgrade(run, &mut chart, &values, drift, record).await
        }
        Action::Recover { status, rollback } => recover(run, &status, rollback, &values).await,
        Action::Purge => {
            let message = "the release has only failed revisions: uninstalling it to install again";
            run.event(EventType::Normal, "ReleaseRecovery", message.to_owned())
                .await;
            uninstall_quietly(run, &values).await;
            Ok(Requeue::requeue(Duration::from_secs(1)))
        }
    }
}

/// Marks the object in sync without touching the release.
fn in_sync<K: ReleaseObject>(run: &mut Run<'_, K>, revision: &str, values: &ComposedValues) {
    let already = run.status.phase == Some(Phase::Succeeded)
        && status::condition(&run.status, model::ConditionType::Released)
            == Some(model::ConditionStatus::True);
    run.status.observed_generation = run.object.meta().generation;
    run.status.release_name = Some(run.desc.release_name.clone());
    run.status.release_status = Some(ReleaseStatus::Deployed.as_str().to_owned());
    run.status.revision = Some(revision.to_owned());
    run.status.last_attempted_revision = Some(revision.to_owned());
    run.status.values_checksum = Some(values.checksum.clone());
    if !already {
        run.phase(
            Phase::Succeeded,
            "release in sync with the chart and values",
        );
    }
}

/// The classifier's view of the latest record.
async fn summarise(
    ctx: &Context,
    desc: &ReleaseDescription,
    record: &StoredRelease,
) -> Result<LatestRelease, ReconcileError> {
    let status = match &record.status {
        ReleaseStatus::Deployed => StoredStatus::Deployed,
        ReleaseStatus::Failed => StoredStatus::Failed,
        s if s.is_pending() => StoredStatus::Pending(s.as_str().to_owned()),
        other => StoredStatus::Other(other.as_str().to_owned()),
    };
    let has_deployed_revision = if status == StoredStatus::Deployed {
        true
    } else {
        ctx.storage
            .history(&desc.target_namespace, &desc.release_name)
            .await?
            .iter()
            .any(|r| {
                matches!(
                    r.status,
                    ReleaseStatus::Deployed | ReleaseStatus::Superseded
                )
            })
    };
    Ok(LatestRelease {
        version: record.version,
        status,
        values_checksum: crate::values::checksum(&record.config),
        has_deployed_revision,
    })
}

/// Resolves the chart named by the description: a git chart to its commit (files later, when
/// needed), a repository chart fetched into the cache. The error is a message for status.
async fn resolve_chart(ctx: &Context, desc: &ReleaseDescription) -> Result<Chart, String> {
    match &desc.chart {
        ChartSource::Git(source) => {
            let credentials = match &source.secret_ref {
                Some(secret) => Some(ctx.git_credentials(secret).await?),
                None => None,
            };
            let revision = ctx
                .git
                .revision(source, credentials.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(Chart {
                revision,
                local: None,
                git: Some((source.clone(), credentials)),
            })
        }
        ChartSource::Repository(source) => {
            let credentials = match &source.pull_secret {
                Some(secret) => Some(ctx.pull_credentials(secret).await?),
                None => None,
            };
            let fetched = if source.repository.starts_with("oci://") {
                ctx.oci
                    .fetch(
                        &source.repository,
                        &source.name,
                        &source.version,
                        credentials.as_ref(),
                    )
                    .await
                    .map_err(|e| format!("failed to fetch chart: {e}"))
            } else {
                ctx.repo
                    .fetch(
                        &source.repository,
                        &source.name,
                        &source.version,
                        credentials.as_ref(),
                    )
                    .await
                    .map_err(|e| format!("failed to fetch chart: {e}"))
            };
            fetched.map(|fetched| Chart {
                revision: fetched.revision.clone(),
                local: Some(LocalChart::Packaged(fetched)),
                git: None,
            })
        }
    }
}

/// Whether the chart changed since the last attempted revision. For git charts a new commit
/// counts only if it touched the chart path (Helm Operator `pkg/chartsync`); an unknown old
/// commit (history rewritten) counts as a change.
async fn chart_changed(
    ctx: &Context,
    desc: &ReleaseDescription,
    last: Option<&str>,
    now: &str,
) -> bool {
    let Some(last) = last else {
        return false;
    };
    if last == now {
        return false;
    }
    match &desc.chart {
        ChartSource::Git(source) => ctx.git.touched(source, last, now).await.unwrap_or(true),
        ChartSource::Repository(_) => true,
    }
}

/// Runs `helm dependency build` for git charts when enabled.
async fn dependencies<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    chart: &LocalChart,
) -> Result<(), String> {
    let ChartSource::Git(source) = &run.desc.chart else {
        return Ok(());
    };
    if source.skip_dep_update || !run.ctx.update_chart_deps {
        return Ok(());
    }
    if !has_dependencies(chart.path()) {
        return Ok(());
    }
    let mut timer = run.ctx.metrics.time(
        "dependency-build",
        &run.desc.target_namespace,
        &run.desc.release_name,
    );
    let options = DependencyBuildOptions::new(chart.path());
    run.helm
        .dependency_build(&options)
        .await
        .map_err(|e| format!("failed to build chart dependencies: {e}"))?;
    timer.succeeded();
    Ok(())
}

/// Whether `Chart.yaml` (or Helm 2's `requirements.yaml`) declares dependencies.
fn has_dependencies(dir: &std::path::Path) -> bool {
    ["Chart.yaml", "requirements.yaml"].iter().any(|file| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| serde_yaml::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|doc| {
                doc["dependencies"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty())
            })
    })
}

fn record_attempt<K: ReleaseObject>(run: &mut Run<'_, K>, revision: &str, values: &ComposedValues) {
    if run.status.observed_generation != run.object.meta().generation {
        // A new spec starts a fresh count of rollbacks (the original kept counting).
        run.status.rollback_count = Some(0);
    }
    run.status.observed_generation = run.object.meta().generation;
    run.status.release_name = Some(run.desc.release_name.clone());
    run.status.last_attempted_revision = Some(revision.to_owned());
    run.status.values_checksum = Some(values.checksum.clone());
}

async fn install<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    chart: &mut Chart,
    values: &ComposedValues,
) -> Result<Requeue, ReconcileError> {
    let ctx = run.ctx;
    let chart = match chart.local(ctx).await {
        Ok(chart) => chart,
        Err(message) => {
            run.phase(Phase::ChartFetchFailed, &message);
            return Ok(ctx.backoff(run.object));
        }
    };
    let revision = chart.revision().to_owned();
    if let Err(message) = dependencies(run, chart).await {
        run.phase(Phase::ChartFetchFailed, &message);
        run.event(EventType::Warning, "FailedReleaseSync", message)
            .await;
        return Ok(ctx.backoff(run.object));
    }
    record_attempt(run, &revision, values);
    run.phase(Phase::Installing, "installing the release");
    run.flush().await?;
    let desc = &run.desc;
    let mut options = InstallOptions::new(
        desc.release_name.clone(),
        desc.target_namespace.clone(),
        chart.path().to_path_buf(),
    );
    options.values = values.values.clone();
    options.timeout = desc.timeout;
    options.wait = desc.wait;
    options.skip_crds = desc.skip_crds;
    options.disable_openapi_validation = desc.disable_openapi_validation;
    options.secrets = Run::<K>::redactor(values);
    let mut timer = ctx
        .metrics
        .time("install", &desc.target_namespace, &desc.release_name);
    match run.helm.install(&options).await {
        Ok(release) => {
            timer.succeeded();
            drop(timer);
            deployed(run, &release, &revision, values, true).await
        }
        Err(error) => {
            drop(timer);
            let message = format!("install failed: {error}");
            run.phase(Phase::DeployFailed, &message);
            run.event(EventType::Warning, "FailedReleaseSync", message)
                .await;
            // A failed install is purged so the next attempt starts clean.
            uninstall_quietly(run, values).await;
            run.status.release_status = None;
            Ok(ctx.backoff(run.object))
        }
    }
}

async fn upgrade<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    chart: &mut Chart,
    values: &ComposedValues,
    drift: classify::Drift,
    latest: Option<&StoredRelease>,
) -> Result<Requeue, ReconcileError> {
    let ctx = run.ctx;
    let chart = match chart.local(ctx).await {
        Ok(chart) => chart,
        Err(message) => {
            run.phase(Phase::ChartFetchFailed, &message);
            return Ok(ctx.backoff(run.object));
        }
    };
    let revision = chart.revision().to_owned();
    let before = latest.map(|r| r.version);
    // Two objects fighting over one release: refuse.
    if let Some(record) = latest {
        let ownership = ctx
            .annotator
            .ownership(
                &record.manifest,
                &run.desc.target_namespace,
                &run.desc.owner,
            )
            .await;
        match ownership {
            Ok(crate::annotate::Ownership::Other(owner)) => {
                let message = format!(
                    "release {} appears to be managed by {owner}; not upgrading it",
                    run.desc.release_name
                );
                run.phase(Phase::Failed, &message);
                run.status.observed_generation = run.object.meta().generation;
                run.event(EventType::Warning, "FailedReleaseSync", message)
                    .await;
                return Ok(ctx.resync());
            }
            Ok(_) => {}
            Err(error) => {
                let message = format!("failed to check who manages the release: {error}");
                run.phase(Phase::Failed, &message);
                return Ok(ctx.backoff(run.object));
            }
        }
    }
    if let Err(message) = dependencies(run, chart).await {
        run.phase(Phase::ChartFetchFailed, &message);
        run.event(EventType::Warning, "FailedReleaseSync", message)
            .await;
        return Ok(ctx.backoff(run.object));
    }
    tracing::info!(release = %run.desc.release_name, reason = drift.as_str(), "upgrading");
    record_attempt(run, &revision, values);
    run.phase(Phase::Upgrading, &format!("upgrading: {}", drift.as_str()));
    run.flush().await?;
    let desc = &run.desc;
    let mut options = UpgradeOptions::new(
        desc.release_name.clone(),
        desc.target_namespace.clone(),
        chart.path().to_path_buf(),
    );
    options.values = values.values.clone();
    options.timeout = desc.timeout;
    options.wait = desc.wait;
    options.force = desc.force_upgrade;
    options.values_strategy = if desc.reuse_values {
        ValuesStrategy::Reuse
    } else {
        ValuesStrategy::Reset
    };
    options.max_history = desc.max_history;
    options.skip_crds = desc.skip_crds;
    options.disable_openapi_validation = desc.disable_openapi_validation;
    options.secrets = Run::<K>::redactor(values);
    let mut timer = ctx
        .metrics
        .time("upgrade", &desc.target_namespace, &desc.release_name);
    match run.helm.upgrade(&options).await {
        Ok(release) => {
            timer.succeeded();
            drop(timer);
            deployed(run, &release, &revision, values, false).await
        }
        Err(error) => {
            drop(timer);
            let message = format!("upgrade failed: {error}");
            run.phase(Phase::DeployFailed, &message);
            run.event(EventType::Warning, "FailedReleaseSync", message)
                .await;
            rollback_after_failure(run, values, before).await?;
            Ok(ctx.backoff(run.object))
        }
    }
}

/// After a successful install or upgrade: `Deployed`, the release tests when enabled, then
/// `Succeeded` (or the remedy of a failed test).
async fn deployed<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    release: &crate::helm::Release,
    revision: &str,
    values: &ComposedValues,
    fresh_install: bool,
) -> Result<Requeue, ReconcileError> {
    let verb = if fresh_install {
        "installed"
    } else {
        "upgraded"
    };
    run.phase(
        Phase::Deployed,
        &format!("{verb} revision {}", release.revision),
    );
    run.status.release_status = Some(release.status.as_str().to_owned());
    if !test(run, values, fresh_install).await? {
        return Ok(run.ctx.backoff(run.object));
    }
    succeeded(run, revision, verb, &release.manifest).await
}

/// Rolls back after a failed upgrade or test, when `rollback.enable` and the failed attempt
/// made a newer revision than the one in place before.
async fn rollback_after_failure<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    values: &ComposedValues,
    before: Option<u32>,
) -> Result<(), ReconcileError> {
    let ctx = run.ctx;
    let now = ctx
        .storage
        .latest(&run.desc.target_namespace, &run.desc.release_name)
        .await?;
    run.status.release_status = now.as_ref().map(|r| r.status.as_str().to_owned());
    let Some(policy) = run.desc.rollback.clone() else {
        return Ok(());
    };
    let newer = match (&now, before) {
        (Some(now), Some(before)) => now.version > before,
        _ => false,
    };
    if !newer {
        return Ok(());
    }
    run.phase(Phase::RollingBack, "rolling back the failed upgrade");
    run.flush().await?;
    let mut options = RollbackOptions::new(
        run.desc.release_name.clone(),
        run.desc.target_namespace.clone(),
    );
    options.revision = before;
    options.timeout = policy.timeout;
    options.wait = policy.wait;
    options.disable_hooks = policy.disable_hooks;
    options.recreate = policy.recreate;
    options.force = policy.force;
    options.max_history = run.desc.max_history;
    options.secrets = Run::<K>::redactor(values);
    let mut timer = ctx.metrics.time(
        "rollback",
        &run.desc.target_namespace,
        &run.desc.release_name,
    );
    match run.helm.rollback(&options).await {
        Ok(()) => {
            timer.succeeded();
            run.phase(Phase::RolledBack, "rolled back to the previous revision");
            run.status.release_status = Some(ReleaseStatus::Deployed.as_str().to_owned());
            run.event(
                EventType::Warning,
                "ReleaseRolledBack",
                format!(
                    "release {} rolled back after a failed upgrade",
                    run.desc.release_name
                ),
            )
            .await;
        }
        Err(error) => {
            run.phase(Phase::RollbackFailed, &format!("rollback failed: {error}"));
        }
    }
    Ok(())
}

/// Runs `helm test` when enabled. `Ok(false)` when the test failed and was not ignored (the
/// release was then uninstalled or rolled back).
async fn test<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    values: &ComposedValues,
    fresh_install: bool,
) -> Result<bool, ReconcileError> {
    let Some(policy) = run.desc.test.clone() else {
        return Ok(true);
    };
    run.phase(Phase::Testing, "running release tests");
    let mut options = TestOptions::new(
        run.desc.release_name.clone(),
        run.desc.target_namespace.clone(),
    );
    options.timeout = policy.timeout;
    options.secrets = Run::<K>::redactor(values);
    let mut timer =
        run.ctx
            .metrics
            .time("test", &run.desc.target_namespace, &run.desc.release_name);
    match run.helm.test(&options).await {
        Ok(()) => {
            timer.succeeded();
            run.phase(Phase::Tested, "release tests passed");
            Ok(true)
        }
        Err(error) => {
            drop(timer);
            let message = format!("release tests failed: {error}");
            run.phase(Phase::TestFailed, &message);
            run.event(EventType::Warning, "FailedReleaseSync", message)
                .await;
            if policy.ignore_failures {
                return Ok(true);
            }
            if fresh_install {
                uninstall_quietly(run, values).await;
                run.status.release_status = None;
            } else {
                let before = run
                    .ctx
                    .storage
                    .history(&run.desc.target_namespace, &run.desc.release_name)
                    .await?
                    .iter()
                    .map(|r| r.version)
                    .max()
                    .and_then(|v| v.checked_sub(1));
                rollback_after_failure(run, values, before).await?;
            }
            Ok(false)
        }
    }
}

async fn succeeded<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    revision: &str,
    verb: &str,
    manifest: &str,
) -> Result<Requeue, ReconcileError> {
    let ctx = run.ctx;
    run.status.revision = Some(revision.to_owned());
    run.status.release_status = Some(ReleaseStatus::Deployed.as_str().to_owned());
    run.phase(Phase::Succeeded, &format!("release {verb}"));
    ctx.forget_failures(run.object);
    annotate(run, manifest).await;
    run.event(
        EventType::Normal,
        "ReleaseSynced",
        format!(
            "managed release '{}' in namespace '{}' synchronized",
            run.desc.release_name, run.desc.target_namespace
        ),
    )
    .await;
    Ok(ctx.resync())
}

/// Puts the antecedent annotation on every resource of `manifest` (the release just made);
/// failures are warnings.
async fn annotate<K: ReleaseObject>(run: &mut Run<'_, K>, manifest: &str) {
    let ctx = run.ctx;
    let mut timer = ctx.metrics.time(
        "annotate",
        &run.desc.target_namespace,
        &run.desc.release_name,
    );
    let report = ctx
        .annotator
        .annotate(manifest, &run.desc.target_namespace, &run.desc.owner)
        .await;
    if report.failed.is_empty() {
        timer.succeeded();
    }
    for (object, error) in &report.failed {
        tracing::warn!(release = %run.desc.release_name, ?object, %error, "failed to annotate a release resource");
    }
}

/// Recovers a release stuck in `pending-*`.
async fn recover<K: ReleaseObject>(
    run: &mut Run<'_, K>,
    stuck: &str,
    rollback: bool,
    values: &ComposedValues,
) -> Result<Requeue, ReconcileError> {
    let ctx = run.ctx;
    let mut timer = ctx.metrics.time(
        "recover",
        &run.desc.target_namespace,
        &run.desc.release_name,
    );
    let message = if rollback {
        format!("release was left {stuck}: rolling back to the last deployed revision")
    } else {
        format!("release was left {stuck}: uninstalling it to start again")
    };
    tracing::warn!(release = %run.desc.release_name, "{message}");
    run.event(EventType::Warning, "ReleaseRecovery", message)
        .await;
    let outcome = if rollback {
        let mut options = RollbackOptions::new(
            run.desc.release_name.clone(),
            run.desc.target_namespace.clone(),
        );
        options.timeout = run.desc.timeout;
        options.max_history = run.desc.max_history;
        options.secrets = Run::<K>::redactor(values);
        run.helm.rollback(&options).await.map(drop)
    } else {
        uninstall(run, values).await.map(drop)
    };
    match outcome {
        Ok(()) => {
            timer.succeeded();
            Ok(Requeue::requeue(Duration::from_secs(1)))
        }
        Err(error) => {
            run.phase(
                Phase::Failed,
                &format!("failed to recover the release: {error}"),
            );
            Ok(ctx.backoff(run.object))
        }
    }
}

async fn uninstall<K: ReleaseObject>(
    run: &Run<'_, K>,
    values: &ComposedValues,
) -> Result<crate::helm::Uninstalled, HelmError> {
    let mut options = UninstallOptions::new(
        run.desc.release_name.clone(),
        run.desc.target_namespace.clone(),
    );
    options.timeout = run.desc.timeout;
    options.secrets = Run::<K>::redactor(values);
    let mut timer = run.ctx.metrics.time(
        "uninstall",
        &run.desc.target_namespace,
        &run.desc.release_name,
    );
    let outcome = run.helm.uninstall(&options).await;
    if outcome.is_ok() {
        timer.succeeded();
    }
    outcome
}

async fn uninstall_quietly<K: ReleaseObject>(run: &Run<'_, K>, values: &ComposedValues) {
    if let Err(error) = uninstall(run, values).await {
        tracing::warn!(release = %run.desc.release_name, %error, "failed to uninstall the failed release");
    }
}

/// Uninstalls the release of an object being deleted (the finalizer's cleanup branch). An
/// absent release is success; a spec that cannot be described has no release to remove.
///
/// # Errors
///
/// [`ReconcileError::Uninstall`] when helm fails; the finalizer stays and the cleanup is retried.
pub async fn cleanup<K: ReleaseObject>(
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    ctx.references.forget(&*object);
    let Ok(desc) = object.describe(&ctx) else {
        return Ok(Requeue::await_change());
    };
    ctx.metrics
        .forget_release(&desc.target_namespace, &desc.release_name);
    let Some(helm) = ctx.helm(desc.helm_version) else {
        return Ok(Requeue::await_change());
    };
    let _permit = ctx.worker_permit().await;
    let mut options =
        UninstallOptions::new(desc.release_name.clone(), desc.target_namespace.clone());
    options.timeout = desc.timeout;
    let mut timer = ctx
        .metrics
        .time("uninstall", &desc.target_namespace, &desc.release_name);
    match helm.uninstall(&options).await {
        Ok(outcome) => {
            timer.succeeded();
            tracing::info!(release = %desc.release_name, ?outcome, "release uninstalled on deletion");
            Ok(Requeue::await_change())
        }
        Err(source) => Err(ReconcileError::Uninstall {
            release: desc.release_name,
            source,
        }),
    }
}

/// Publishes an Event about `object`; failures are logged, never fatal.
pub(crate) async fn publish_event<K: Resource<DynamicType = ()>>(
    recorder: &kube::runtime::events::Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::debug!(%error, "failed to publish an event");
    }
}

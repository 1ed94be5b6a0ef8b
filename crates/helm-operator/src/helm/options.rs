//! Option structs of the Helm actions: the `HelmRelease` fields each action honours, in Helm's
//! units (durations, revision numbers), with the Helm Operator's defaults.
//!
//! These are plain data: how each option becomes a flag of Helm v3 or v4 is decided in
//! `flags.rs`. Structs holding values implement `Debug` without them, since values may come from
//! Secrets.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::Redactor;

/// The Helm Operator's default for `spec.timeout`, `spec.rollback.timeout` and
/// `spec.test.timeout`: 300 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The Helm Operator's default for `spec.maxHistory`: 10 revisions.
pub const DEFAULT_MAX_HISTORY: u32 = 10;

/// How an upgrade treats the values of the release it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValuesStrategy {
    /// `--reset-values`: the new revision gets the chart's defaults plus the given values only.
    #[default]
    Reset,
    /// `--reuse-values`: the given values are merged over the previous revision's values.
    Reuse,
}

impl ValuesStrategy {
    /// The strategy of a `HelmRelease`'s `spec.resetValues`: unset or `true` resets, only an
    /// explicit `false` reuses (the Helm Operator's `GetReuseValues`).
    #[must_use]
    pub fn from_reset_values(reset_values: Option<bool>) -> Self {
        match reset_values {
            Some(false) => Self::Reuse,
            None | Some(true) => Self::Reset,
        }
    }
}

/// Options of [`HelmDriver::install`](super::HelmDriver::install).
#[derive(Clone)]
pub struct InstallOptions {
    /// Release name (`spec.releaseName` or its default).
    pub release: String,
    /// Target namespace (`spec.targetNamespace` or the `HelmRelease`'s namespace). It must exist:
    /// Helm is not asked to create it, as with the Helm Operator.
    pub namespace: String,
    /// The chart: a chart directory or a packaged `.tgz`.
    pub chart: PathBuf,
    /// The composed values (a JSON object, or `null` for none). Passed to Helm in a private
    /// temporary file, never on its command line.
    pub values: serde_json::Value,
    /// `spec.timeout`: Helm's `--timeout`, the limit of each Kubernetes operation (hooks, wait).
    pub timeout: Duration,
    /// `spec.wait`: wait for the release's resources to be ready.
    pub wait: bool,
    /// `spec.skipCRDs`: do not install the chart's `crds/`.
    pub skip_crds: bool,
    /// `spec.disableOpenAPIValidation`: do not validate the rendered manifests against the
    /// cluster's OpenAPI schema.
    pub disable_openapi_validation: bool,
    /// Strings to redact from Helm's output (values that came from Secrets).
    pub secrets: Redactor,
}

impl InstallOptions {
    /// Options for installing `chart` as `release` in `namespace` with the Helm Operator's
    /// defaults: no values, 300 s timeout, no wait, CRDs installed, validation on.
    #[must_use]
    pub fn new(
        release: impl Into<String>,
        namespace: impl Into<String>,
        chart: impl Into<PathBuf>,
    ) -> Self {
        Self {
            release: release.into(),
            namespace: namespace.into(),
            chart: chart.into(),
            values: serde_json::Value::Object(serde_json::Map::new()),
            timeout: DEFAULT_TIMEOUT,
            wait: false,
            skip_crds: false,
            disable_openapi_validation: false,
            secrets: Redactor::default(),
        }
    }
}

impl fmt::Debug for InstallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallOptions")
            .field("release", &self.release)
            .field("namespace", &self.namespace)
            .field("chart", &self.chart)
            .field("values", &"<not shown>")
            .field("timeout", &self.timeout)
            .field("wait", &self.wait)
            .field("skip_crds", &self.skip_crds)
            .field(
                "disable_openapi_validation",
                &self.disable_openapi_validation,
            )
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// Options of [`HelmDriver::upgrade`](super::HelmDriver::upgrade).
#[derive(Clone)]
pub struct UpgradeOptions {
    /// Release name.
    pub release: String,
    /// Namespace of the release.
    pub namespace: String,
    /// The chart: a chart directory or a packaged `.tgz`.
    pub chart: PathBuf,
    /// The composed values (a JSON object, or `null` for none), passed in a private temporary
    /// file.
    pub values: serde_json::Value,
    /// `spec.timeout`: Helm's `--timeout`.
    pub timeout: Duration,
    /// `spec.wait`: wait for the release's resources to be ready.
    pub wait: bool,
    /// `spec.forceUpgrade`: update resources by replacement (v3 `--force`, v4 `--force-replace`
    /// with client-side apply, as Helm 4 cannot replace with server-side apply).
    pub force: bool,
    /// `spec.resetValues`, see [`ValuesStrategy::from_reset_values`].
    pub values_strategy: ValuesStrategy,
    /// `spec.maxHistory`: revisions kept (`--history-max`), 0 = unlimited.
    pub max_history: u32,
    /// `spec.skipCRDs` (Helm only installs CRDs on install; kept for an upgrade that installs).
    pub skip_crds: bool,
    /// `spec.disableOpenAPIValidation`. Passed on upgrade too, which the Helm Operator forgot.
    pub disable_openapi_validation: bool,
    /// Strings to redact from Helm's output.
    pub secrets: Redactor,
}

impl UpgradeOptions {
    /// Options for upgrading `release` in `namespace` to `chart` with the Helm Operator's
    /// defaults: no values, 300 s timeout, no wait, no force, values reset, 10 revisions kept.
    #[must_use]
    pub fn new(
        release: impl Into<String>,
        namespace: impl Into<String>,
        chart: impl Into<PathBuf>,
    ) -> Self {
        Self {
            release: release.into(),
            namespace: namespace.into(),
            chart: chart.into(),
            values: serde_json::Value::Object(serde_json::Map::new()),
            timeout: DEFAULT_TIMEOUT,
            wait: false,
            force: false,
            values_strategy: ValuesStrategy::Reset,
            max_history: DEFAULT_MAX_HISTORY,
            skip_crds: false,
            disable_openapi_validation: false,
            secrets: Redactor::default(),
        }
    }
}

impl fmt::Debug for UpgradeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeOptions")
            .field("release", &self.release)
            .field("namespace", &self.namespace)
            .field("chart", &self.chart)
            .field("values", &"<not shown>")
            .field("timeout", &self.timeout)
            .field("wait", &self.wait)
            .field("force", &self.force)
            .field("values_strategy", &self.values_strategy)
            .field("max_history", &self.max_history)
            .field("skip_crds", &self.skip_crds)
            .field(
                "disable_openapi_validation",
                &self.disable_openapi_validation,
            )
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// Options of [`HelmDriver::rollback`](super::HelmDriver::rollback) (`spec.rollback`).
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// Release name.
    pub release: String,
    /// Namespace of the release.
    pub namespace: String,
    /// The revision to roll back to; `None` = the previous one (what the Helm Operator does).
    pub revision: Option<u32>,
    /// `spec.rollback.timeout`: Helm's `--timeout`.
    pub timeout: Duration,
    /// `spec.rollback.wait`.
    pub wait: bool,
    /// `spec.rollback.disableHooks`: `--no-hooks`.
    pub disable_hooks: bool,
    /// `spec.rollback.recreate`: v3 `--recreate-pods`. Helm 4 removed the flag and has no
    /// equivalent, so with v4 it is ignored (with a warning in the log).
    pub recreate: bool,
    /// `spec.rollback.force`: v3 `--force`, v4 `--force-replace` with client-side apply (the Helm
    /// Operator never passed it with v3; we do).
    pub force: bool,
    /// `spec.maxHistory`: revisions kept (`--history-max`), 0 = unlimited; a rollback makes a
    /// revision too.
    pub max_history: u32,
    /// Strings to redact from Helm's output.
    pub secrets: Redactor,
}

impl RollbackOptions {
    /// Options for rolling `release` in `namespace` back to the previous revision with the Helm
    /// Operator's defaults: 300 s timeout, no wait, hooks on, no recreate, no force, 10 revisions.
    #[must_use]
    pub fn new(release: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            release: release.into(),
            namespace: namespace.into(),
            revision: None,
            timeout: DEFAULT_TIMEOUT,
            wait: false,
            disable_hooks: false,
            recreate: false,
            force: false,
            max_history: DEFAULT_MAX_HISTORY,
            secrets: Redactor::default(),
        }
    }
}

/// Options of [`HelmDriver::test`](super::HelmDriver::test) (`spec.test`).
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Release name.
    pub release: String,
    /// Namespace of the release.
    pub namespace: String,
    /// `spec.test.timeout`: Helm's `--timeout`.
    pub timeout: Duration,
    /// Strings to redact from Helm's output.
    pub secrets: Redactor,
}

impl TestOptions {
    /// Options for testing `release` in `namespace` with a 300 s timeout.
    #[must_use]
    pub fn new(release: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            release: release.into(),
            namespace: namespace.into(),
            timeout: DEFAULT_TIMEOUT,
            secrets: Redactor::default(),
        }
    }
}

/// Options of [`HelmDriver::uninstall`](super::HelmDriver::uninstall): always a purge (no
/// `--keep-history`), as the Helm Operator did.
#[derive(Debug, Clone)]
pub struct UninstallOptions {
    /// Release name.
    pub release: String,
    /// Namespace of the release.
    pub namespace: String,
    /// `spec.timeout`: Helm's `--timeout` (for delete hooks and the wait).
    pub timeout: Duration,
    /// Wait until the release's resources are deleted.
    pub wait: bool,
    /// Strings to redact from Helm's output.
    pub secrets: Redactor,
}

impl UninstallOptions {
    /// Options for uninstalling `release` from `namespace` with a 300 s timeout, without waiting.
    #[must_use]
    pub fn new(release: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            release: release.into(),
            namespace: namespace.into(),
            timeout: DEFAULT_TIMEOUT,
            wait: false,
            secrets: Redactor::default(),
        }
    }
}

/// Options of [`HelmDriver::dependency_build`](super::HelmDriver::dependency_build).
#[derive(Debug, Clone)]
pub struct DependencyBuildOptions {
    /// The chart directory whose `Chart.yaml` (and `Chart.lock`) list the dependencies; they are
    /// written to its `charts/`.
    pub chart: PathBuf,
    /// Time limit of the whole command (it may download charts).
    pub timeout: Duration,
    /// `--skip-refresh`: do not refresh the cached indexes of the configured repositories.
    pub skip_refresh: bool,
}

impl DependencyBuildOptions {
    /// Options for building the dependencies of `chart` within 300 s, refreshing indexes.
    #[must_use]
    pub fn new(chart: impl Into<PathBuf>) -> Self {
        Self {
            chart: chart.into(),
            timeout: DEFAULT_TIMEOUT,
            skip_refresh: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values_unset_or_true_resets_and_explicit_false_reuses() {
        assert_eq!(
            ValuesStrategy::from_reset_values(None),
            ValuesStrategy::Reset
        );
        assert_eq!(
            ValuesStrategy::from_reset_values(Some(true)),
            ValuesStrategy::Reset
        );
        assert_eq!(
            ValuesStrategy::from_reset_values(Some(false)),
            ValuesStrategy::Reuse
        );
    }

    #[test]
    fn debug_output_does_not_show_values() {
        let mut install = InstallOptions::new("web", "apps", "/charts/hello");
        install.values = serde_json::json!({"password": "hunter2"});
        let mut upgrade = UpgradeOptions::new("web", "apps", "/charts/hello");
        upgrade.values = serde_json::json!({"password": "hunter2"});
        for shown in [format!("{install:?}"), format!("{upgrade:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("release: \"web\""), "{shown}");
        }
    }
}

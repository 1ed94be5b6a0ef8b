//! The Helm driver: the [`HelmDriver`] trait over the `helm` CLI (v3 and v4), and the reading of
//! release records from Helm's storage Secrets.
//!
//! - [`HelmDriver`]: one async method per Helm action the operator performs (install, upgrade,
//!   rollback, uninstall, test, status, history, dependency build), with option structs carrying
//!   the `HelmRelease` fields each action honours (see [`InstallOptions`] and its siblings).
//! - [`HelmCli`]: the implementation that runs the real `helm` binary as a child process per call,
//!   with its state (cache, config, data) under a directory of its own, values passed in a
//!   private temporary file, a hard time limit, and secrets redacted from its error output.
//!   The flags of each Helm major version are chosen in one place (`flags.rs`).
//! - [`Redactor`]: replaces the secret strings of a release (values that came from Secrets) by
//!   `***` in everything Helm prints, so errors and logs never contain them.
//! - [`storage`]: reads Helm's release records straight from its storage Secrets through the
//!   Kubernetes API, without starting a helm process (cheap enough for every reconcile).
//!
//! This module deliberately does not decide anything: which action to run, when to roll back or
//! uninstall after a failure, and how to compare releases belong to the reconciler. It does not
//! render charts itself (Helm's engine is Helm's), does not talk to Tiller (Helm v2 is not
//! supported), does not fetch charts (see [`crate::chart`]) and never uses Helm's `--atomic` /
//! `--rollback-on-failure`: like the Helm Operator, the reconciler remedies failures itself.

mod cli;
mod error;
mod flags;
mod options;
mod redact;
pub mod storage;

use std::fmt;
use std::future::Future;

pub use cli::HelmCli;
pub use cli::{DEFAULT_GRACE, DEFAULT_QUERY_TIMEOUT};
pub use error::STDERR_LIMIT;
pub use error::{HelmAction, HelmError};
pub use options::{
    DEFAULT_MAX_HISTORY, DEFAULT_TIMEOUT, DependencyBuildOptions, InstallOptions, RollbackOptions,
    TestOptions, UninstallOptions, UpgradeOptions, ValuesStrategy,
};
pub use redact::{REDACTED, Redactor};

/// The major version of the `helm` binary a release is handled by (`spec.helmVersion`): the
/// model's type, parsed from and displayed as `v3` / `v4`.
pub use model::helmrelease::{HelmVersion, ParseHelmVersionError};

/// The status of a Helm release revision, as Helm writes it (`info.status` of a release, the
/// `status` label of its storage Secret, `.status.releaseStatus` of a `HelmRelease`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReleaseStatus {
    /// `deployed`: the revision in place.
    Deployed,
    /// `failed`: the install, upgrade or rollback that made this revision failed.
    Failed,
    /// `pending-install`: an install is in progress (or was interrupted).
    PendingInstall,
    /// `pending-upgrade`: an upgrade is in progress (or was interrupted).
    PendingUpgrade,
    /// `pending-rollback`: a rollback is in progress (or was interrupted).
    PendingRollback,
    /// `superseded`: an older revision, replaced by a later one.
    Superseded,
    /// `uninstalling`: an uninstall is in progress.
    Uninstalling,
    /// `uninstalled`: uninstalled with `--keep-history`.
    Uninstalled,
    /// Any other status string, including Helm's own `unknown`, kept verbatim.
    Unknown(String),
}

impl ReleaseStatus {
    /// The status as Helm spells it (`deployed`, `pending-upgrade`, ...).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Deployed => "deployed",
            Self::Failed => "failed",
            Self::PendingInstall => "pending-install",
            Self::PendingUpgrade => "pending-upgrade",
            Self::PendingRollback => "pending-rollback",
            Self::Superseded => "superseded",
            Self::Uninstalling => "uninstalling",
            Self::Uninstalled => "uninstalled",
            Self::Unknown(other) => other,
        }
    }

    /// Whether a Helm action is in progress (or was interrupted) on this revision: the
    /// `pending-*` statuses. Helm refuses another action on such a release.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            Self::PendingInstall | Self::PendingUpgrade | Self::PendingRollback
        )
    }

    /// Whether the Helm Operator would upgrade a release whose latest revision has this status:
    /// only `deployed` (its `AllowsUpgrade`).
    #[must_use]
    pub fn allows_upgrade(&self) -> bool {
        matches!(self, Self::Deployed)
    }
}

impl From<&str> for ReleaseStatus {
    fn from(status: &str) -> Self {
        match status {
            "deployed" => Self::Deployed,
            "failed" => Self::Failed,
            "pending-install" => Self::PendingInstall,
            "pending-upgrade" => Self::PendingUpgrade,
            "pending-rollback" => Self::PendingRollback,
            "superseded" => Self::Superseded,
            "uninstalling" => Self::Uninstalling,
            "uninstalled" => Self::Uninstalled,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The chart a release revision was made from (`chart.metadata` of a Helm release).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChartMeta {
    /// Chart name (`name` of `Chart.yaml`).
    pub name: String,
    /// Chart version (`version` of `Chart.yaml`).
    pub version: String,
    /// `appVersion` of `Chart.yaml`, when the chart sets one.
    pub app_version: Option<String>,
}

/// A release revision as `helm install|upgrade|status -o json` report it, with its rendered
/// manifest (used to annotate the release's resources without reading storage again). Not its
/// values. `Debug` leaves the manifest out (it may render Secrets), so it is safe to log.
#[derive(Clone, PartialEq, Eq)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Namespace of the release (its storage and, by default, its objects).
    pub namespace: String,
    /// Revision number, from 1.
    pub revision: u32,
    /// Status of this revision.
    pub status: ReleaseStatus,
    /// The chart of this revision.
    pub chart: ChartMeta,
    /// Helm's description of the revision (`Install complete`, `Upgrade "x" failed: ...`).
    pub description: String,
    /// When this revision was deployed, if Helm recorded a parsable time.
    pub last_deployed: Option<k8s_openapi::jiff::Timestamp>,
    /// The rendered manifest (hooks excluded), as Helm applied it.
    pub manifest: String,
}

impl fmt::Debug for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Release")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("revision", &self.revision)
            .field("status", &self.status)
            .field("chart", &self.chart)
            .field("description", &self.description)
            .field("last_deployed", &self.last_deployed)
            .field("manifest", &format_args!("<{} bytes>", self.manifest.len()))
            .finish()
    }
}

/// One revision of `helm history -o json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Revision number, from 1.
    pub revision: u32,
    /// Status of the revision.
    pub status: ReleaseStatus,
    /// Chart as `<name>-<version>` (Helm's format).
    pub chart: String,
    /// `appVersion` of the chart, empty when unset.
    pub app_version: String,
    /// Helm's description of the revision.
    pub description: String,
    /// When the revision was last updated, if Helm recorded a parsable time.
    pub updated: Option<k8s_openapi::jiff::Timestamp>,
}

/// What [`HelmDriver::uninstall`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uninstalled {
    /// The release existed and was uninstalled, its history purged.
    Removed,
    /// There was no such release (Helm's "release: not found"). The reconciler treats this as
    /// success: uninstalling is idempotent.
    NotFound,
}

/// The Helm actions the operator performs, one method each. Implemented by [`HelmCli`] for the
/// real `helm` binary; the reconciler depends on this trait only.
///
/// Every method is a single Helm action bounded in time; none retries, rolls back or uninstalls on
/// failure by itself (the reconciler does, as the Helm Operator's state machine did). Errors carry
/// Helm's stderr with the options' secrets redacted.
pub trait HelmDriver: Send + Sync {
    /// The Helm major version this driver runs.
    fn version(&self) -> HelmVersion;

    /// `helm install`: creates revision 1 of a release.
    ///
    /// # Errors
    ///
    /// [`HelmError`] when Helm fails (its redacted stderr inside), exceeds its time limit, cannot
    /// be started, or reports output that is not a release.
    fn install(
        &self,
        options: &InstallOptions,
    ) -> impl Future<Output = Result<Release, HelmError>> + Send;

    /// `helm upgrade`: makes the next revision of an existing release.
    ///
    /// # Errors
    ///
    /// As [`HelmDriver::install`]. A failed upgrade leaves a `failed` revision behind.
    fn upgrade(
        &self,
        options: &UpgradeOptions,
    ) -> impl Future<Output = Result<Release, HelmError>> + Send;

    /// `helm rollback`: makes a new revision from an earlier one (the previous one by default).
    ///
    /// # Errors
    ///
    /// As [`HelmDriver::install`].
    fn rollback(
        &self,
        options: &RollbackOptions,
    ) -> impl Future<Output = Result<(), HelmError>> + Send;

    /// `helm uninstall` without `--keep-history` (the Helm Operator's purge).
    ///
    /// # Errors
    ///
    /// As [`HelmDriver::install`]; an absent release is `Ok(Uninstalled::NotFound)`, not an error.
    fn uninstall(
        &self,
        options: &UninstallOptions,
    ) -> impl Future<Output = Result<Uninstalled, HelmError>> + Send;

    /// `helm test`: runs the release's test hooks.
    ///
    /// # Errors
    ///
    /// A failing test is [`HelmError::Failed`] with Helm's message naming the failed test; other
    /// failures as [`HelmDriver::install`].
    fn test(&self, options: &TestOptions) -> impl Future<Output = Result<(), HelmError>> + Send;

    /// `helm status`: the latest revision of a release, `None` when there is no such release.
    ///
    /// # Errors
    ///
    /// As [`HelmDriver::install`] (an absent release is not an error).
    fn status(
        &self,
        namespace: &str,
        release: &str,
    ) -> impl Future<Output = Result<Option<Release>, HelmError>> + Send;

    /// `helm history`: the recorded revisions of a release, oldest first; empty when there is no
    /// such release.
    ///
    /// # Errors
    ///
    /// As [`HelmDriver::install`] (an absent release is not an error).
    fn history(
        &self,
        namespace: &str,
        release: &str,
    ) -> impl Future<Output = Result<Vec<HistoryEntry>, HelmError>> + Send;

    /// `helm dependency build`: vendors the dependencies of a chart directory into its `charts/`
    /// (for charts from git, whose dependencies are not packaged).
    ///
    /// # Errors
    ///
    /// As [`HelmDriver::install`].
    fn dependency_build(
        &self,
        options: &DependencyBuildOptions,
    ) -> impl Future<Output = Result<(), HelmError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_versions_parse_and_display_as_v3_and_v4() {
        for (text, version) in [("v3", HelmVersion::V3), ("v4", HelmVersion::V4)] {
            assert_eq!(text.parse::<HelmVersion>(), Ok(version));
            assert_eq!(version.to_string(), text);
        }
        for bad in ["v2", "3", "V3", "", "v3 "] {
            assert_eq!(
                bad.parse::<HelmVersion>(),
                Err(ParseHelmVersionError {
                    input: bad.to_owned()
                })
            );
        }
    }

    #[test]
    fn release_statuses_round_trip_and_keep_unknown_strings() {
        for text in [
            "deployed",
            "failed",
            "pending-install",
            "pending-upgrade",
            "pending-rollback",
            "superseded",
            "uninstalling",
            "uninstalled",
            "unknown",
            "something-new",
        ] {
            assert_eq!(ReleaseStatus::from(text).as_str(), text);
        }
        assert_eq!(
            ReleaseStatus::from("unknown"),
            ReleaseStatus::Unknown("unknown".to_owned())
        );
        assert!(ReleaseStatus::from("pending-upgrade").is_pending());
        assert!(!ReleaseStatus::Failed.is_pending());
        assert!(ReleaseStatus::Deployed.allows_upgrade());
        assert!(!ReleaseStatus::Failed.allows_upgrade());
    }
}

//! The operator's command line: the Helm Operator's flag names and defaults
//! (`../shared/reference/helm-operator.md` §3), each also settable from an environment variable
//! (`HELM_OPERATOR_` + the flag in upper snake case). Tiller and Helm 2 flags are gone (Helm 2 is
//! not supported); `--enabled-helm-versions` knows `v3` and `v4`.

use std::path::PathBuf;

use clap::Parser;
use model::HelmVersion;
pub use model::flags::{FluxDuration, ListenAddress};

/// A helm major version as written in `--enabled-helm-versions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnabledVersion(pub HelmVersion);

impl std::str::FromStr for EnabledVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "v3" => Ok(Self(HelmVersion::V3)),
            "v4" => Ok(Self(HelmVersion::V4)),
            "v2" => Err("helm v2 (Tiller) is not supported; enable v3 and/or v4".to_owned()),
            other => Err(format!(
                "unknown helm version {other:?} (expected v3 or v4)"
            )),
        }
    }
}

/// Command-line arguments of `helm-operator`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "helm-operator",
    version,
    about = "Reconciles HelmRelease and FluxHelmRelease resources into Helm releases"
)]
pub struct Args {
    /// kubeconfig file (out of cluster); default: `KUBECONFIG`, then in-cluster.
    #[arg(long, env = "HELM_OPERATOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Only watch HelmReleases in this namespace (default: all).
    #[arg(long, env = "HELM_OPERATOR_ALLOW_NAMESPACE")]
    pub allow_namespace: Option<String>,
    /// Concurrent release reconciles.
    #[arg(long, env = "HELM_OPERATOR_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Address of the HTTP server: `/metrics`, `/healthz`, `/api/v1/sync-git`.
    #[arg(
        long,
        short = 'l',
        env = "HELM_OPERATOR_LISTEN",
        default_value = ":3030"
    )]
    pub listen: ListenAddress,
    /// How often every release is reconciled even without a change.
    #[arg(long, env = "HELM_OPERATOR_CHARTS_SYNC_INTERVAL", default_value = "3m")]
    pub charts_sync_interval: FluxDuration,
    /// Accepted for compatibility: `status.releaseStatus` is refreshed by every reconcile.
    #[arg(
        long,
        env = "HELM_OPERATOR_STATUS_UPDATE_INTERVAL",
        default_value = "10s"
    )]
    pub status_update_interval: FluxDuration,
    /// Run `helm dependency build` for git charts (unless `chart.skipDepUpdate`).
    #[arg(long, env = "HELM_OPERATOR_UPDATE_CHART_DEPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub update_chart_deps: bool,

    /// Timeout of each git operation.
    #[arg(long, env = "HELM_OPERATOR_GIT_TIMEOUT", default_value = "20s")]
    pub git_timeout: FluxDuration,
    /// How often git chart mirrors are fetched.
    #[arg(long, env = "HELM_OPERATOR_GIT_POLL_INTERVAL", default_value = "5m")]
    pub git_poll_interval: FluxDuration,
    /// Ref of git charts whose `chart.ref` is empty.
    #[arg(long, env = "HELM_OPERATOR_GIT_DEFAULT_REF", default_value = "master")]
    pub git_default_ref: String,
    /// The repository of FluxHelmRelease charts (`chartGitPath`); FluxHelmReleases are
    /// reconciled only when it is set.
    #[arg(long, env = "HELM_OPERATOR_GIT_URL")]
    pub git_url: Option<String>,
    /// Branch of `--git-url`.
    #[arg(long, env = "HELM_OPERATOR_GIT_BRANCH", default_value = "master")]
    pub git_branch: String,
    /// Directory of `--git-url` that FluxHelmRelease `chartGitPath`s are relative to.
    #[arg(long, env = "HELM_OPERATOR_GIT_CHARTS_PATH", default_value = "charts")]
    pub git_charts_path: String,
    /// Private key for SSH git remotes (the Helm Operator image's default path).
    #[arg(
        long,
        env = "HELM_OPERATOR_SSH_IDENTITY",
        default_value = "/etc/fluxd/ssh/identity"
    )]
    pub ssh_identity: PathBuf,
    /// known_hosts for SSH git remotes; host keys are always verified.
    #[arg(
        long,
        env = "HELM_OPERATOR_SSH_KNOWN_HOSTS",
        default_value = "/etc/fluxd/ssh/known_hosts"
    )]
    pub ssh_known_hosts: PathBuf,

    /// Helm versions to run, comma-separated; the first is the default of releases that name
    /// none in `spec.helmVersion`.
    #[arg(
        long,
        env = "HELM_OPERATOR_ENABLED_HELM_VERSIONS",
        value_delimiter = ',',
        default_value = "v3,v4"
    )]
    pub enabled_helm_versions: Vec<EnabledVersion>,
    /// The helm 3 binary.
    #[arg(long, env = "HELM_OPERATOR_HELM3_PATH", default_value = "helm3")]
    pub helm3_path: PathBuf,
    /// The helm 4 binary.
    #[arg(long, env = "HELM_OPERATOR_HELM4_PATH", default_value = "helm4")]
    pub helm4_path: PathBuf,

    /// The chart cache.
    #[command(flatten)]
    pub cache: crate::chart::cache::CacheArgs,
    /// Helm repository downloads.
    #[command(flatten)]
    pub repo: crate::chart::repo::RepoArgs,
    /// OCI registries.
    #[command(flatten)]
    pub oci: crate::chart::oci::OciArgs,
    /// Directory for git mirrors and helm's own state.
    #[arg(
        long,
        env = "HELM_OPERATOR_WORK_DIR",
        default_value = "/tmp/helm-operator"
    )]
    pub work_dir: PathBuf,
}

impl Args {
    /// The default helm version: the first enabled one (v3 when the list is empty).
    #[must_use]
    pub fn default_helm_version(&self) -> HelmVersion {
        self.enabled_helm_versions
            .first()
            .map_or(HelmVersion::V3, |v| v.0)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_helm_operators() {
        let args = Args::parse_from(["helm-operator"]);
        assert_eq!(args.workers, 4);
        assert_eq!(args.charts_sync_interval.0.as_secs(), 180);
        assert_eq!(args.git_poll_interval.0.as_secs(), 300);
        assert_eq!(args.git_default_ref, "master");
        assert_eq!(args.listen.0.port(), 3030);
        assert_eq!(args.default_helm_version(), HelmVersion::V3);
        assert!(args.update_chart_deps);
    }

    #[test]
    fn helm_v2_is_refused_with_a_reason() {
        let err = Args::try_parse_from(["helm-operator", "--enabled-helm-versions", "v2,v3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("Tiller"), "{err}");
    }
}

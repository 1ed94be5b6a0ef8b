//! The agent's command line: Flux v1 `fluxd` flag names and defaults
//! (`../shared/reference/flux-v1.md` rows 1–55), each also settable from an environment variable
//! (`FLUX_` + the flag in upper snake case).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use model::flags::{FluxDuration, ListenAddress};

/// Where the sync marker is kept (`--sync-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncStateKind {
    /// The git tag `--git-sync-tag`.
    Git,
    /// The annotation `flux.weave.works/sync-hwm` on the `--k8s-secret-name` Secret.
    Secret,
}

/// Command-line arguments of `flux-agent`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "flux-agent",
    version,
    about = "GitOps agent: keeps a cluster equal to a git config repo"
)]
pub struct Args {
    /// Address of the HTTP API (and `/metrics` unless `--listen-metrics`).
    #[arg(long, short = 'l', env = "FLUX_LISTEN", default_value = ":3030")]
    pub listen: ListenAddress,
    /// Separate address for `/metrics`.
    #[arg(long, env = "FLUX_LISTEN_METRICS")]
    pub listen_metrics: Option<ListenAddress>,

    /// The config repository (`git@host:org/repo`, `ssh://`, `https://`, `file://`).
    #[arg(long, env = "FLUX_GIT_URL", default_value = "")]
    pub git_url: String,
    /// Branch to sync.
    #[arg(long, env = "FLUX_GIT_BRANCH", default_value = "master")]
    pub git_branch: String,
    /// Paths within the repository to sync (comma-separated or repeated; default the root).
    #[arg(long, env = "FLUX_GIT_PATH", value_delimiter = ',')]
    pub git_path: Vec<String>,
    /// How often to fetch the repository.
    #[arg(long, env = "FLUX_GIT_POLL_INTERVAL", default_value = "5m")]
    pub git_poll_interval: FluxDuration,
    /// Timeout of each git operation.
    #[arg(long, env = "FLUX_GIT_TIMEOUT", default_value = "20s")]
    pub git_timeout: FluxDuration,
    /// Never write to the repository (forces `--sync-state=secret`).
    #[arg(long, env = "FLUX_GIT_READONLY")]
    pub git_readonly: bool,
    /// Committer and tagger name.
    #[arg(long, env = "FLUX_GIT_USER", default_value = "Weave Flux")]
    pub git_user: String,
    /// Committer and tagger email.
    #[arg(long, env = "FLUX_GIT_EMAIL", default_value = "support@weave.works")]
    pub git_email: String,
    /// Overrides `--git-sync-tag` (unique per cluster sharing a repository).
    #[arg(long, env = "FLUX_GIT_LABEL")]
    pub git_label: Option<String>,
    /// The tag that marks the last synced revision.
    #[arg(long, env = "FLUX_GIT_SYNC_TAG", default_value = "flux-sync")]
    pub git_sync_tag: String,
    /// known_hosts file for SSH remotes (else the `known_hosts` key of the deploy-key Secret).
    #[arg(long, env = "FLUX_SSH_KNOWN_HOSTS")]
    pub ssh_known_hosts: Option<PathBuf>,

    /// Where the sync marker is kept.
    #[arg(long, env = "FLUX_SYNC_STATE", value_enum, default_value = "git")]
    pub sync_state: SyncStateKind,
    /// How often to sync even without new commits.
    #[arg(long, env = "FLUX_SYNC_INTERVAL", default_value = "5m")]
    pub sync_interval: FluxDuration,
    /// Upper bound of one sync.
    #[arg(long, env = "FLUX_SYNC_TIMEOUT", default_value = "1m")]
    pub sync_timeout: FluxDuration,
    /// Delete objects this agent applied that git no longer has.
    #[arg(long, env = "FLUX_SYNC_GARBAGE_COLLECTION")]
    pub sync_garbage_collection: bool,
    /// Only log what garbage collection would delete (implies it).
    #[arg(long, env = "FLUX_SYNC_GARBAGE_COLLECTION_DRY")]
    pub sync_garbage_collection_dry: bool,
    /// Take ownership of fields other managers set (`false`: report conflicts instead).
    #[arg(long, env = "FLUX_SYNC_FORCE_CONFLICTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync_force_conflicts: bool,

    /// Secret holding the deploy key (in the agent's namespace).
    #[arg(long, env = "FLUX_K8S_SECRET_NAME", default_value = "flux-git-deploy")]
    pub k8s_secret_name: String,
    /// Data key of the deploy key in that Secret.
    #[arg(long, env = "FLUX_K8S_SECRET_DATA_KEY", default_value = "identity")]
    pub k8s_secret_data_key: String,
    /// Namespace of namespaced manifests that name none (default: the kubeconfig's).
    #[arg(long, env = "FLUX_K8S_DEFAULT_NAMESPACE")]
    pub k8s_default_namespace: Option<String>,
    /// Namespaces the agent may touch (comma-separated or repeated; default all).
    #[arg(
        long,
        env = "FLUX_K8S_ALLOW_NAMESPACE",
        value_delimiter = ',',
        alias = "k8s-namespace-whitelist"
    )]
    pub k8s_allow_namespace: Vec<String>,

    /// Generate manifests with `.flux.yaml` files.
    #[arg(long, env = "FLUX_MANIFEST_GENERATION")]
    pub manifest_generation: bool,
    /// Working directory for the git mirror and the deploy key file.
    #[arg(long, env = "FLUX_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Where a revision is checked out to be read, then deleted (default: memory-backed
    /// `/dev/shm` when present, since writing thousands of files dominates a sync on slow disks;
    /// else the work directory).
    #[arg(long, env = "FLUX_EXPORT_DIR")]
    pub export_dir: Option<PathBuf>,

    /// Image automation and registry scanning.
    #[command(flatten)]
    pub automation: AutomationArgs,
}

/// Flags of image automation and registry scanning (Flux v1 rows 71–74 and 95–106).
#[derive(Clone, Debug, clap::Args)]
pub struct AutomationArgs {
    /// How often automated workloads are checked for newer images (also right after a scan
    /// finds new tags).
    #[arg(
        long,
        env = "FLUX_AUTOMATION_INTERVAL",
        default_value = "5m",
        alias = "registry-poll-interval"
    )]
    pub automation_interval: FluxDuration,
    /// End automation commit messages with `--git-ci-skip-message`. Default `true` (Flux v1
    /// defaulted to `false`; this agent's commits are meant to skip CI).
    #[arg(long, env = "FLUX_GIT_CI_SKIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub git_ci_skip: bool,
    /// The text appended to commit messages with `--git-ci-skip`.
    #[arg(long, env = "FLUX_GIT_CI_SKIP_MESSAGE", default_value = "[ci skip]")]
    pub git_ci_skip_message: String,
    /// Do not scan registries (and so do not automate).
    #[arg(long, env = "FLUX_REGISTRY_DISABLE_SCANNING")]
    pub registry_disable_scanning: bool,
    /// Requests per second allowed to each registry host.
    #[arg(long, env = "FLUX_REGISTRY_RPS", default_value_t = 200.0)]
    pub registry_rps: f64,
    /// Burst of requests to each registry host; also the most concurrent fetches.
    #[arg(long, env = "FLUX_REGISTRY_BURST", default_value_t = 125)]
    pub registry_burst: u32,
    /// How often each tracked repository's tag list is read again (Flux v1's warmer re-read its
    /// image list every minute); new tags' images are fetched right away, known tags' digests are
    /// re-checked on the adaptive schedule (1 h, between 5 m and 7 d).
    #[arg(long, env = "FLUX_REGISTRY_SCAN_INTERVAL", default_value = "1m")]
    pub registry_scan_interval: FluxDuration,
    /// Registry hosts (`host` or `host:port`) spoken to over plain HTTP.
    #[arg(long, env = "FLUX_REGISTRY_INSECURE_HOST", value_delimiter = ',')]
    pub registry_insecure_host: Vec<String>,
    /// The platform whose image is read from a multi-platform index.
    #[arg(long, env = "FLUX_REGISTRY_PLATFORM", default_value = "linux/amd64")]
    pub registry_platform: String,
    /// Globs of image repositories whose `org.opencontainers.image.created` label overrides the
    /// creation time.
    #[arg(
        long,
        env = "FLUX_REGISTRY_USE_LABELS",
        value_delimiter = ',',
        default_value = "index.docker.io/weaveworks/*,index.docker.io/fluxcd/*"
    )]
    pub registry_use_labels: Vec<String>,
    /// Globs of image repositories to scan (default all).
    #[arg(long, env = "FLUX_REGISTRY_INCLUDE_IMAGE", value_delimiter = ',')]
    pub registry_include_image: Vec<String>,
    /// Globs of image repositories never scanned (wins over include).
    #[arg(
        long,
        env = "FLUX_REGISTRY_EXCLUDE_IMAGE",
        value_delimiter = ',',
        default_value = "k8s.gcr.io/*"
    )]
    pub registry_exclude_image: Vec<String>,
    /// Directory of the persistent registry cache (default `<work dir>/registry-cache`).
    #[arg(long, env = "FLUX_REGISTRY_CACHE_DIR")]
    pub registry_cache_dir: Option<PathBuf>,
    /// A Docker `config.json` whose credentials are used for every registry.
    #[arg(long, env = "FLUX_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
}

impl AutomationArgs {
    /// The commit-message suffix, `None` without `--git-ci-skip`.
    #[must_use]
    pub fn ci_skip(&self) -> Option<&str> {
        self.git_ci_skip
            .then_some(self.git_ci_skip_message.as_str())
    }
}

impl Args {
    /// The sync tag after `--git-label`.
    #[must_use]
    pub fn sync_tag(&self) -> &str {
        self.git_label.as_deref().unwrap_or(&self.git_sync_tag)
    }

    /// The git paths, defaulting to the repository root.
    #[must_use]
    pub fn paths(&self) -> Vec<String> {
        let paths: Vec<String> = self
            .git_path
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if paths.is_empty() {
            vec![String::new()]
        } else {
            paths
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flux_v1_defaults_and_spellings() {
        let args = Args::parse_from([
            "flux-agent",
            "--git-path=a,b",
            "--git-path",
            "c",
            "--git-poll-interval=1s",
        ]);
        assert_eq!(args.paths(), ["a", "b", "c"]);
        assert_eq!(args.git_poll_interval.0, Duration::from_secs(1));
        assert_eq!(args.listen.0.port(), 3030);
        assert_eq!(args.sync_tag(), "flux-sync");
        assert!(args.sync_force_conflicts);
        let labelled = Args::parse_from([
            "flux-agent",
            "--git-label=prod",
            "--sync-force-conflicts=false",
        ]);
        assert_eq!(labelled.sync_tag(), "prod");
        assert!(!labelled.sync_force_conflicts);
    }

    #[test]
    fn automation_defaults() {
        let args = Args::parse_from(["flux-agent", "--registry-poll-interval=1s"]);
        let automation = &args.automation;
        assert_eq!(automation.automation_interval.0, Duration::from_secs(1));
        assert_eq!(automation.ci_skip(), Some("[ci skip]"));
        assert!((automation.registry_rps - 200.0).abs() < f64::EPSILON);
        assert_eq!(automation.registry_burst, 125);
        assert_eq!(automation.registry_exclude_image, ["k8s.gcr.io/*"]);
        let quiet = Args::parse_from(["flux-agent", "--git-ci-skip=false"]);
        assert_eq!(quiet.automation.ci_skip(), None);
    }
}

//! Registry scanning: the tags, digests and creation times of the image repositories the
//! automated workloads use, kept in a persistent cache, refreshed under a per-host rate limit.
//! Mirrors Flux v1's `pkg/registry` (client, cache warmer, rate limiter, credentials), with an
//! embedded on-disk cache instead of memcached.
//!
//! Pieces:
//! - [`RegistryConfig`]: the `--registry-*` flags with the Flux chart's defaults.
//! - [`RegistryCredentials`]: registry logins from `imagePullSecrets` and `--docker-config`.
//! - [`Scanner`]: the set of tracked repositories, their cached tags ([`TagInfo`]) and the scan
//!   loop; [`ScanReport`] says what one round did.
//!
//! HTTP is spoken with `reqwest` directly, not through `oci-client`'s `Client`: the scanner has
//! to follow `Link` pagination of tag lists, read `Retry-After` from a 429, put every request
//! (token requests included) through the per-host rate limiter and count requests by kind,
//! none of which `oci-client`'s client exposes. `oci-client` provides the manifest and image
//! index types and media types the responses are parsed with (and the tests push images with it).
//!
//! # The refresh rule
//!
//! Every scan of a repository lists its tags (one request per page). Manifests are fetched
//! only for tags that are new, and, when the repository's *digest check* is due, every known
//! tag's digest is re-read with a `HEAD` of its manifest; tags whose digest changed are fetched
//! again. The digest check follows Flux v1's adaptive refresh, kept per repository: it first
//! comes 1 h after the repository was first fetched; a check that finds a changed digest halves
//! the interval, one that finds none doubles it, within 5 min – 7 days; a scan that finds new
//! tags brings an interval longer than 1 h back to 1 h. A `notify` for a repository (a push
//! happened) makes its next scan include the digest check. So a rescan with nothing new costs
//! exactly one request per repository (one tag-list page) and fetches no manifest.
//!
//! Not done here: which images to track (the automation module decides and calls
//! [`Scanner::track`]), Kubernetes Secret lookups, cloud-provider credential helpers (ECR, GCR,
//! ACR), Docker schema 1 manifests, and `--registry-trace`.

mod cache;
mod client;
mod credentials;
mod metrics;
mod ratelimit;
mod scanner;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use credentials::RegistryCredentials;
pub use scanner::{RequestCounts, ScanReport, Scanner};

/// Flux v1's default for `--registry-use-labels` (Flux v1's spelling; `index.docker.io/` in
/// globs is read as `docker.io/`, the canonical spelling of `model::image`).
pub const DEFAULT_USE_LABELS: [&str; 2] =
    ["index.docker.io/weaveworks/*", "index.docker.io/fluxcd/*"];

/// Flux v1's default for `--registry-exclude-image`.
pub const DEFAULT_EXCLUDE_IMAGES: [&str; 1] = ["k8s.gcr.io/*"];

/// Settings of registry scanning, one field per `--registry-*` flag.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `--registry-rps`: requests per second allowed to each registry host (default 200, the
    /// Flux chart's value). Halved on every 429 down to 0.1, recovered ×1.5 after 20 min calm.
    pub rps: f64,
    /// `--registry-burst`: token-bucket size per host (default 125); also the most requests in
    /// flight to one host at a time.
    pub burst: u32,
    /// `--registry-insecure-host`: hosts (`host` or `host:port`) spoken to over plain HTTP.
    pub insecure_hosts: Vec<String>,
    /// `--registry-platform`: `os/arch` or `os/arch/variant` picked from image indexes
    /// (default `linux/amd64`, what Flux v1 always used).
    pub platform: String,
    /// `--registry-use-labels`: globs on canonical repository names (`docker.io/fluxcd/*`;
    /// Flux v1's `index.docker.io/` prefix is accepted too) whose creation time is
    /// taken from the `org.opencontainers.image.created` or `org.label-schema.build-date` label
    /// when present.
    pub use_labels: Vec<String>,
    /// `--registry-include-image`: globs on canonical repository names; empty = all.
    pub include_images: Vec<String>,
    /// `--registry-exclude-image`: globs on canonical repository names; exclusion wins over
    /// inclusion (default `k8s.gcr.io/*`).
    pub exclude_images: Vec<String>,
    /// `--registry-cache-dir`: where the cache file `registry-cache.json` lives (created when
    /// missing).
    pub cache_dir: PathBuf,
    /// `--docker-config`: a Docker `config.json` whose logins are used for every repository,
    /// under the ones from `imagePullSecrets`.
    pub docker_config: Option<PathBuf>,
    /// Time limit of one HTTP request (default 10 s).
    pub timeout: Duration,
    /// How long a repository's tag list stays fresh: [`Scanner::scan_due`] lists a repository
    /// again once this long has passed since its last listing (default 1 min, Flux v1's warmer
    /// cycle).
    pub poll_interval: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            rps: 200.0,
            burst: 125,
            insecure_hosts: Vec::new(),
            platform: "linux/amd64".to_owned(),
            use_labels: DEFAULT_USE_LABELS.iter().map(|s| (*s).to_owned()).collect(),
            include_images: Vec::new(),
            exclude_images: DEFAULT_EXCLUDE_IMAGES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            cache_dir: PathBuf::from("/var/cache/flux-agent/registry"),
            docker_config: None,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(60),
        }
    }
}

/// One tag of a repository as the cache knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag (`1.0.1`, `dev-abc`).
    pub tag: String,
    /// The digest the tag pointed at when last checked (`sha256:…`): of the image index for a
    /// multi-platform tag, as `docker pull` reports it.
    pub digest: String,
    /// When the image (the `--registry-platform` one of an index) was created, from its config
    /// blob or, for repositories matching `--registry-use-labels`, its timestamp label; `None`
    /// when the config says nothing usable.
    pub created: Option<SystemTime>,
}

impl model::policy::TagCandidate for TagInfo {
    fn tag(&self) -> &str {
        &self.tag
    }

    fn created(&self) -> Option<SystemTime> {
        self.created
    }
}

/// Errors of registry scanning. None carries a password, token or auth header.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A flag value is unusable (a glob that does not compile, a bad platform).
    #[error("failed to use {flag} value {value:?}: {reason}")]
    InvalidConfig {
        /// The flag, e.g. `--registry-exclude-image`.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cache file could not be read or written.
    #[error("failed to {action} registry cache {path}")]
    CacheIo {
        /// `read`, `write`, `create directory for`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Registry credentials (a pull secret or a Docker config file) could not be read. The
    /// reason never quotes the content.
    #[error("failed to read registry credentials from {source_name}: {reason}")]
    Credentials {
        /// Where they came from: a secret type or a file path.
        source_name: String,
        /// What is wrong (the key that is missing, the JSON error position).
        reason: String,
    },
    /// The scanner's metrics could not be registered (a name is taken in that registry).
    #[error("failed to register the registry scanner's metrics")]
    Metrics(#[source] prometheus::Error),
    /// The HTTP client could not be built.
    #[error("failed to build the registry HTTP client: {reason}")]
    Client {
        /// reqwest's message.
        reason: String,
    },
    /// The registry refused the credentials or asked for some and there were none.
    #[error("failed to authenticate to {host} for {repository} (HTTP {status})")]
    Unauthorized {
        /// The registry host.
        host: String,
        /// The repository path on that host.
        repository: String,
        /// 401 or 403.
        status: u16,
    },
    /// HTTP 429 or a `TOOMANYREQUESTS` error: the host's rate was halved and this repository's
    /// round stopped.
    #[error("failed to fetch {url}: rate limited (HTTP 429{})", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The request URL.
        url: String,
        /// The server's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Any other unexpected HTTP status.
    #[error("failed to fetch {url}: HTTP {status}")]
    Status {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request timed out.
    #[error("failed to fetch {url}: timed out")]
    Timeout {
        /// The request URL.
        url: String,
    },
    /// Connection refused, reset, DNS failure, TLS failure.
    #[error("failed to fetch {url}: {reason}")]
    Transport {
        /// The request URL.
        url: String,
        /// What went wrong, from reqwest.
        reason: String,
    },
    /// A response body was not what the registry API promises.
    #[error("failed to parse {what} from {url}: {reason}")]
    Parse {
        /// `tag list`, `manifest`, `image config`, `token`.
        what: &'static str,
        /// The request URL.
        url: String,
        /// The parser's message.
        reason: String,
    },
}

impl RegistryError {
    /// A short stable category, used as a metric label and in logs: `config`, `cache`,
    /// `credentials`, `metrics`, `client`, `unauthorized`, `rate_limited`, `status`, `timeout`,
    /// `transport`, `parse`.
    #[must_use]
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "config",
            Self::CacheIo { .. } => "cache",
            Self::Credentials { .. } => "credentials",
            Self::Metrics(_) => "metrics",
            Self::Client { .. } => "client",
            Self::Unauthorized { .. } => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Status { .. } => "status",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Parse { .. } => "parse",
        }
    }
}

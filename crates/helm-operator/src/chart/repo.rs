//! Charts from Helm chart repositories over HTTP(S) (`spec.chart.repository` / `name` /
//! `version`): index lookup, version resolution, download, digest check and caching.
//!
//! Mirrors Helm's `helm pull --repo URL NAME --version V` as the Helm Operator used it
//! (`pkg/chartsync/download.go`), with these deliberate changes:
//!
//! - **Version ranges are first-class.** `version` is an exact version, or a Masterminds-style
//!   range (`~1.2`, `^1`, `>=1.0 <2`, `1.2.x`, `1.2 - 1.4`, alternatives with `||`), resolved
//!   like Helm's `IndexFile.Get`: an entry whose version string equals the request wins, else the
//!   highest version the range allows (pre-releases only when the range names one). An empty
//!   version means the newest stable version. The resolved version is the chart's revision, so a
//!   newly published matching version becomes a new revision (an upgrade) once the index is
//!   refreshed — the automated chart upgrades users asked for (fluxcd/helm-operator#12).
//! - **The index is cached for a short TTL** ([`RepoOptions::index_ttl`]) in the
//!   [`ChartCache`]; a lookup that fails on a cached (not just downloaded) index downloads the
//!   index again once before reporting the version as missing.
//! - **The tarball cache key includes the index's `digest`** (or, without one, the entry's
//!   `created` time and URL) besides the cleaned repository URL, name and version, so a chart
//!   re-published under the same version is fetched again (the original never invalidated).
//! - **The index's `digest` is verified** when present: a mismatch is an error and nothing is
//!   cached.
//! - **Credentials come from the release's pull Secret** ([`PullCredentials`]), not from an
//!   imported `repositories.yaml`. Like Helm's default (`--pass-credentials` off), they are sent
//!   to the repository's own scheme, host and port only, never to another host the index points
//!   at (nor across redirects to another host).
//!
//! Cache entries are shared by every release naming the same repository, chart, version and
//! digest, whatever its credentials, as in the Helm Operator.
//!
//! Not supported: downloader plugins (`s3://`, `gs://`), provenance (`.prov`) verification,
//! custom CA bundles or client certificates, `--pass-credentials`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use model::TagFilter;
use reqwest::{StatusCode, Url};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::cache::{CacheError, CacheKey, CachedFile, ChartCache};
use super::credentials::{Credential, PullCredentials};

/// Default time a downloaded repository index is used before it is downloaded again.
pub const DEFAULT_INDEX_TTL: Duration = Duration::from_secs(60);
/// Default timeout of one HTTP request (index or tarball download), connect included.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A chart fetched into the cache, ready for `helm install/upgrade <path>`. Holding it keeps the
/// file from being evicted. Also returned by [`super::oci::OciCharts::fetch`].
#[derive(Clone, Debug)]
pub struct FetchedChart {
    /// The chart tarball (`.tgz`) in the cache directory.
    pub path: PathBuf,
    /// The chart version the request resolved to (the release's chart revision).
    pub revision: String,
    /// The tarball's SHA-256 as `sha256:<hex>` (for OCI this is the chart layer's digest).
    pub digest: String,
    file: CachedFile,
}

impl FetchedChart {
    pub(crate) fn new(file: CachedFile, revision: String, digest: String) -> Self {
        Self {
            path: file.path().to_path_buf(),
            revision,
            digest,
            file,
        }
    }

    /// The tarball's size in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.file.size()
    }
}

/// Errors of fetching a chart from a Helm repository. URLs are shown without user info and query
/// (which can carry credentials or signatures); no error contains a password or token.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository URL does not parse or is not `http(s)://`.
    #[error("failed to parse chart repository URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// `version` is neither an exact version nor a valid range.
    #[error("failed to parse version {version:?} of chart {chart:?}: {reason}")]
    InvalidVersion {
        /// The chart name.
        chart: String,
        /// The requested version.
        version: String,
        /// Why.
        reason: String,
    },
    /// A request failed before an HTTP answer (connection, TLS, timeout, body read).
    #[error("failed to download {url}: {message}")]
    Request {
        /// The URL, redacted.
        url: String,
        /// The client error and its causes (`error sending request: ... Connection refused`),
        /// without URL.
        message: String,
    },
    /// The server answered 401 or 403.
    #[error(
        "failed to download {url}: unauthorized (HTTP {status}){}",
        if *.sent_credentials { "; the credentials were refused" } else { "; no credentials were sent" }
    )]
    Unauthorized {
        /// The URL, redacted.
        url: String,
        /// 401 or 403.
        status: u16,
        /// Whether credentials were sent.
        sent_credentials: bool,
    },
    /// The server answered with another non-success status.
    #[error("failed to download {url}: HTTP {status}")]
    Status {
        /// The URL, redacted.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The index is not a Helm repository index.
    #[error("failed to parse the index of chart repository {repository}: {reason}")]
    InvalidIndex {
        /// The repository URL, redacted.
        repository: String,
        /// Why.
        reason: String,
    },
    /// The index has no chart of that name.
    #[error("failed to find chart {chart:?} in chart repository {repository}")]
    ChartNotFound {
        /// The repository URL, redacted.
        repository: String,
        /// The chart name.
        chart: String,
    },
    /// The index has the chart, but no version matching the request.
    #[error(
        "failed to find version {version:?} of chart {chart:?} in chart repository {repository} (available: {available})"
    )]
    VersionNotFound {
        /// The repository URL, redacted.
        repository: String,
        /// The chart name.
        chart: String,
        /// The requested version or range.
        version: String,
        /// Up to 10 of the newest available versions, comma-separated.
        available: String,
    },
    /// The index entry has no URL, or one that does not resolve.
    #[error("failed to resolve the download URL of chart {chart:?} version {version:?}: {reason}")]
    InvalidChartUrl {
        /// The chart name.
        chart: String,
        /// The version.
        version: String,
        /// Why.
        reason: String,
    },
    /// The tarball's SHA-256 is not the index's `digest`.
    #[error(
        "failed to verify chart {chart:?} version {version:?} from {url}: digest sha256:{actual} does not match the index's {expected}"
    )]
    DigestMismatch {
        /// The chart name.
        chart: String,
        /// The version.
        version: String,
        /// The tarball URL, redacted.
        url: String,
        /// The index's digest.
        expected: String,
        /// The downloaded tarball's SHA-256 (hex).
        actual: String,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client: {source}")]
    Client {
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
}

impl RepoError {
    /// A short stable category for Events, condition reasons and metric labels.
    #[must_use]
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } | Self::InvalidVersion { .. } => "InvalidChartSpec",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::ChartNotFound { .. } | Self::VersionNotFound { .. } => "ChartNotFound",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::Request { .. }
            | Self::Status { .. }
            | Self::InvalidIndex { .. }
            | Self::InvalidChartUrl { .. }
            | Self::Client { .. } => "ChartDownloadFailed",
            Self::Cache(_) => "ChartCacheFailed",
        }
    }
}

/// Command-line flags of Helm repository chart downloads, to be flattened into the operator's
/// arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct RepoArgs {
    /// How long a downloaded Helm repository index is used before it is downloaded again.
    #[arg(long, env = "HELM_OPERATOR_CHART_INDEX_TTL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub chart_index_ttl: Duration,
    /// Timeout of one chart or index download.
    #[arg(long, env = "HELM_OPERATOR_CHART_DOWNLOAD_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub chart_download_timeout: Duration,
}

impl RepoArgs {
    /// The options these flags describe.
    #[must_use]
    pub fn options(&self) -> RepoOptions {
        RepoOptions {
            index_ttl: self.chart_index_ttl,
            timeout: self.chart_download_timeout,
        }
    }
}

/// Options of [`RepoCharts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoOptions {
    /// How long a downloaded index is used before it is downloaded again (zero: every fetch
    /// downloads the index).
    pub index_ttl: Duration,
    /// Timeout of one HTTP request, connect included.
    pub timeout: Duration,
}

impl Default for RepoOptions {
    fn default() -> Self {
        Self {
            index_ttl: DEFAULT_INDEX_TTL,
            timeout: DEFAULT_HTTP_TIMEOUT,
        }
    }
}

/// Installs rustls' `ring` provider as the process default, once. reqwest (built with
/// `rustls-no-provider`) and oci-client take it from there.
pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already (kube or a test did it): keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// When a downloaded index was stored, and under which key.
struct IndexRecord {
    fetched_at: Instant,
    key: CacheKey,
}

/// Fetches charts from Helm chart repositories into a [`ChartCache`]. Share one per process
/// (clone the cache into it); safe to use from many tasks at once, and concurrent fetches of
/// the same chart download it once.
pub struct RepoCharts {
    client: reqwest::Client,
    cache: ChartCache,
    options: RepoOptions,
    indexes: Mutex<HashMap<String, IndexRecord>>,
    /// One lock per index or tarball being fetched, so that concurrent fetches wait for the
    /// first instead of downloading again.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for RepoCharts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoCharts")
            .field("cache", &self.cache)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RepoCharts {
    /// A fetcher storing into `cache`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Client`] when the HTTP client cannot be built (no usable root certificates).
    pub fn new(cache: ChartCache, options: RepoOptions) -> Result<Self, RepoError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("helm-operator/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|source| RepoError::Client { source })?;
        Ok(Self {
            client,
            cache,
            options,
            indexes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The cache charts are stored in.
    #[must_use]
    pub fn cache(&self) -> &ChartCache {
        &self.cache
    }

    /// Fetches chart `name` at `version` (exact or range, see the module docs) from the Helm
    /// repository at `repo_url` (`http://` or `https://`; a query string is kept for requests
    /// but not for cache keys), using `credentials` for the repository's host.
    ///
    /// Served from the cache when the resolved version with the index's digest is cached; the
    /// index itself is downloaded at most once per [`RepoOptions::index_ttl`].
    ///
    /// # Errors
    ///
    /// [`RepoError`]: bad URL or version, HTTP failures (unauthorized, not found, timeouts),
    /// chart or version missing from the index, digest mismatch, cache failures.
    pub async fn fetch(
        &self,
        repo_url: &str,
        name: &str,
        version: &str,
        credentials: Option<&PullCredentials>,
    ) -> Result<FetchedChart, RepoError> {
        let repo = RepoUrl::parse(repo_url)?;
        let request = VersionRequest::parse(name, version)?;
        let credential = credentials.and_then(|c| c.for_host(&repo.host_port()));
        let (mut versions, fresh) = self.chart_versions(&repo, name, credential, false).await?;
        let mut chosen = choose(&versions, &request);
        if chosen.is_none() && !fresh {
            // A cached index may predate the version asked for: look again in a new one.
            versions = self.chart_versions(&repo, name, credential, true).await?.0;
            chosen = choose(&versions, &request);
        }
        let Some(entry) = chosen else {
            return Err(if versions.is_empty() {
                RepoError::ChartNotFound {
                    repository: repo.display(),
                    chart: name.to_owned(),
                }
            } else {
                RepoError::VersionNotFound {
                    repository: repo.display(),
                    chart: name.to_owned(),
                    version: version.to_owned(),
                    available: newest_versions(&versions, 10),
                }
            });
        };
        self.fetch_tarball(&repo, name, entry, credential).await
    }

    /// The entries of chart `name` in the repository's index (empty when the index has no such
    /// chart), and whether the index was downloaded by this call.
    async fn chart_versions(
        &self,
        repo: &RepoUrl,
        name: &str,
        credential: Option<&Credential>,
        force: bool,
    ) -> Result<(Vec<IndexEntry>, bool), RepoError> {
        let index_id = repo.cache_id();
        let lock = self.in_flight_lock(&format!("index {index_id}"));
        let _guard = lock.lock().await;
        let cached = if force {
            None
        } else {
            self.fresh_index(&index_id).await
        };
        let (file, fresh) = match cached {
            Some(file) => (file, false),
            None => (self.download_index(repo, credential).await?, true),
        };
        let path = file.path().to_path_buf();
        let chart = name.to_owned();
        let repository = repo.display();
        let parsed = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|source| {
                RepoError::Cache(CacheError::Io {
                    action: "read",
                    path: path.clone(),
                    source,
                })
            })?;
            parse_index_entries(&bytes, &chart)
                .map_err(|reason| RepoError::InvalidIndex { repository, reason })
        })
        .await
        .map_err(|_| {
            RepoError::Cache(CacheError::Task {
                action: "parse a repository index",
            })
        })??;
        drop(file);
        Ok((parsed, fresh))
    }

    /// The cached index of `index_id` if it was downloaded less than the TTL ago.
    async fn fresh_index(&self, index_id: &str) -> Option<CachedFile> {
        let key = {
            let indexes = self
                .indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let record = indexes.get(index_id)?;
            if record.fetched_at.elapsed() >= self.options.index_ttl {
                return None;
            }
            record.key.clone()
        };
        self.cache.get(&key).await
    }

    async fn download_index(
        &self,
        repo: &RepoUrl,
        credential: Option<&Credential>,
    ) -> Result<CachedFile, RepoError> {
        let url = repo.index_url();
        let key = CacheKey::index(&[&repo.cache_id()]);
        let mut writer = self
            .cache
            .writer(format!("index of {}", repo.display()))
            .await?;
        self.download(&url, credential, &mut writer).await?;
        let file = writer.commit(&key).await?;
        tracing::debug!(repository = %repo.display(), bytes = file.size(), "downloaded chart repository index");
        self.indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                repo.cache_id(),
                IndexRecord {
                    fetched_at: Instant::now(),
                    key,
                },
            );
        Ok(file)
    }

    async fn fetch_tarball(
        &self,
        repo: &RepoUrl,
        name: &str,
        entry: &IndexEntry,
        credential: Option<&Credential>,
    ) -> Result<FetchedChart, RepoError> {
        let version = entry.version.clone();
        let url = entry
            .urls
            .first()
            .ok_or_else(|| "the index entry has no urls".to_owned())
            .and_then(|u| repo.resolve(u))
            .map_err(|reason| RepoError::InvalidChartUrl {
                chart: name.to_owned(),
                version: version.clone(),
                reason,
            })?;
        let expected = entry.digest.as_deref().map(normalize_digest);
        let cache_id = repo.cache_id();
        let url_text = url.as_str().to_owned();
        let identity: Vec<&str> = match (&expected, &entry.created) {
            (Some(digest), _) => vec![&cache_id, name, &version, "digest", digest],
            (None, created) => vec![
                &cache_id,
                name,
                &version,
                "created",
                created.as_deref().unwrap_or(""),
                &url_text,
            ],
        };
        let key = CacheKey::chart(name, &version, &identity);
        let lock = self.in_flight_lock(key.file_name());
        let _guard = lock.lock().await;
        if let Some(file) = self.cache.get(&key).await {
            let digest = match &expected {
                Some(digest) => format!("sha256:{digest}"),
                None => file_sha256(file.path().to_path_buf()).await?,
            };
            tracing::debug!(chart = name, %version, "chart served from cache");
            return Ok(FetchedChart::new(file, version, digest));
        }
        // Credentials go to the repository's own scheme, host and port only.
        let credential = credential.filter(|_| repo.same_origin(&url));
        let mut writer = self
            .cache
            .writer(format!("chart {name} version {version}"))
            .await?;
        self.download(&url, credential, &mut writer).await?;
        let actual = writer.sha256_hex();
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(RepoError::DigestMismatch {
                chart: name.to_owned(),
                version,
                url: redact_url(&url),
                expected,
                actual,
            });
        }
        let file = writer.commit(&key).await?;
        tracing::info!(chart = name, %version, bytes = file.size(), "downloaded chart");
        Ok(FetchedChart::new(file, version, format!("sha256:{actual}")))
    }

    /// GETs `url` into `writer`, with `credential` if given.
    async fn download(
        &self,
        url: &Url,
        credential: Option<&Credential>,
        writer: &mut super::cache::CacheWriter,
    ) -> Result<(), RepoError> {
        let mut request = self.client.get(url.clone());
        match credential {
            Some(Credential::Basic { username, password }) => {
                request = request.basic_auth(username, Some(password.expose()));
            }
            Some(Credential::Bearer { token }) => request = request.bearer_auth(token.expose()),
            None => {}
        }
        let request_error = |source: reqwest::Error| RepoError::Request {
            url: redact_url(url),
            message: error_chain(&source.without_url()),
        };
        let mut response = request.send().await.map_err(request_error)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RepoError::Unauthorized {
                url: redact_url(url),
                status: status.as_u16(),
                sent_credentials: credential.is_some(),
            });
        }
        if !status.is_success() {
            return Err(RepoError::Status {
                url: redact_url(url),
                status: status.as_u16(),
            });
        }
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            writer.write_all(&chunk).await?;
        }
        Ok(())
    }

    fn in_flight_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds or waits for, so the map stays small.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(id.to_owned()).or_default())
    }
}

/// An error and its causes, joined with `: ` (causes already in the text are skipped).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `sha256:<hex>` of a file.
async fn file_sha256(path: PathBuf) -> Result<String, RepoError> {
    use sha2::Digest as _;
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path).map_err(|source| CacheError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        Ok(format!("sha256:{:x}", sha2::Sha256::digest(&bytes)))
    })
    .await
    .map_err(|_| {
        RepoError::Cache(CacheError::Task {
            action: "hash a cached chart",
        })
    })?
}

/// An index digest as lowercase hex without an algorithm prefix.
fn normalize_digest(digest: &str) -> String {
    let digest = digest.trim();
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .to_ascii_lowercase()
}

/// `url` without user info, query and fragment, for messages.
pub(crate) fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// A repository URL, parsed once.
#[derive(Clone, Debug)]
struct RepoUrl {
    /// As given, with a path ending in `/` (query kept).
    base: Url,
}

impl RepoUrl {
    fn parse(text: &str) -> Result<Self, RepoError> {
        let invalid = |reason: String| RepoError::InvalidUrl {
            url: Url::parse(text.trim())
                .map(|u| redact_url(&u))
                .unwrap_or_else(|_| "<unparsable>".to_owned()),
            reason,
        };
        let mut base = Url::parse(text.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not supported (http, https; oci:// is handled separately)",
                base.scheme()
            )));
        }
        if base.host_str().is_none() {
            return Err(invalid("no host".to_owned()));
        }
        base.set_fragment(None);
        let path = format!("{}/", base.path().trim_end_matches('/'));
        base.set_path(&path);
        Ok(Self { base })
    }

    /// The repository's identity for caching: the URL without query, fragment and user info, with
    /// no trailing slash (the Helm Operator's `CleanRepoURL`, plus the user info).
    fn cache_id(&self) -> String {
        clean_repo_url_parsed(&self.base)
    }

    fn display(&self) -> String {
        redact_url(&self.base)
    }

    /// `host` or `host:port` as written (default ports omitted), for credential lookup.
    fn host_port(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// `<base>index.yaml`, keeping the base's query (signed URLs).
    fn index_url(&self) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}index.yaml", self.base.path()));
        url
    }

    /// Resolves a chart URL from the index against the repository URL like Helm's
    /// `ResolveReferenceURL`: relative references against the base with its trailing slash; the
    /// base's query is added when the reference has none.
    fn resolve(&self, reference: &str) -> Result<Url, String> {
        let mut base = self.base.clone();
        base.set_query(None);
        let mut url = base
            .join(reference.trim())
            .map_err(|e| format!("{reference:?} does not resolve: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "scheme {:?} of {} is not supported",
                url.scheme(),
                redact_url(&url)
            ));
        }
        if url.query().is_none() && self.base.query().is_some() {
            url.set_query(self.base.query());
        }
        Ok(url)
    }

    /// Whether `url` has the repository's scheme, host and port.
    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }
}

fn clean_repo_url_parsed(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string().trim_end_matches('/').to_owned()
}

/// A repository URL as a cache identity: query, fragment and user info stripped, trailing
/// slashes removed (`https://charts.example.com/stable/?x=1` -> `https://charts.example.com/stable`),
/// like the Helm Operator's `CleanRepoURL`.
///
/// # Errors
///
/// [`RepoError::InvalidUrl`] when `url` does not parse or is not `http(s)://`.
pub fn clean_repo_url(url: &str) -> Result<String, RepoError> {
    RepoUrl::parse(url).map(|r| r.cache_id())
}

/// What a release asks for: an exact version string, or a range.
#[derive(Clone, Debug)]
pub(crate) struct VersionRequest {
    text: String,
    range: Option<TagFilter>,
}

impl VersionRequest {
    /// `""` means the newest stable version (`*`). A text that is not a valid range is only
    /// accepted when it is a plain version string without spaces (looked up exactly).
    pub(crate) fn parse(chart: &str, version: &str) -> Result<Self, RepoError> {
        let text = version.trim().to_owned();
        let range_text = if text.is_empty() { "*" } else { text.as_str() };
        match TagFilter::parse(&format!("semver:{range_text}")) {
            Ok(range) => Ok(Self {
                text,
                range: Some(range),
            }),
            Err(err) if text.is_empty() || text.contains(char::is_whitespace) => {
                Err(RepoError::InvalidVersion {
                    chart: chart.to_owned(),
                    version: version.to_owned(),
                    reason: err.to_string(),
                })
            }
            Err(_) => Ok(Self { text, range: None }),
        }
    }

    /// The text as requested (empty for "newest").
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether the request names one version exactly (a full `x.y.z` version, optionally with
    /// pre-release or build, and no range operators): it can be looked up without a listing.
    pub(crate) fn is_exact(&self) -> bool {
        semver::Version::parse(self.text.strip_prefix('v').unwrap_or(&self.text)).is_ok()
    }

    /// Like Helm's `ChartVersions.Get`: the candidate equal to the text, else the highest version
    /// the range allows.
    pub(crate) fn choose<'a>(&self, candidates: &'a [&'a str]) -> Option<&'a str> {
        if !self.text.is_empty()
            && let Some(exact) = candidates.iter().find(|c| **c == self.text)
        {
            return Some(exact);
        }
        let range = self.range.as_ref()?;
        let tagged: Vec<(&str, Option<std::time::SystemTime>)> =
            candidates.iter().map(|c| (*c, None)).collect();
        range.newest(&tagged).map(|(tag, _)| *tag)
    }
}

fn choose<'a>(entries: &'a [IndexEntry], request: &VersionRequest) -> Option<&'a IndexEntry> {
    let versions: Vec<&str> = entries.iter().map(|e| e.version.as_str()).collect();
    let chosen = request.choose(&versions)?;
    entries.iter().find(|e| e.version == chosen)
}

/// Up to `n` versions, newest first (by semver where they parse), comma-separated.
fn newest_versions(entries: &[IndexEntry], n: usize) -> String {
    let mut versions: Vec<&str> = entries.iter().map(|e| e.version.as_str()).collect();
    versions.sort_by(|a, b| {
        let va = model::policy::parse_tag_version(a);
        let vb = model::policy::parse_tag_version(b);
        vb.cmp(&va).then_with(|| b.cmp(a))
    });
    versions.dedup();
    let more = versions.len() > n;
    let mut text = versions.into_iter().take(n).collect::<Vec<_>>().join(", ");
    if more {
        text.push_str(", ...");
    }
    text
}

/// One version of a chart in an index: only what fetching needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IndexEntry {
    version: String,
    urls: Vec<String>,
    digest: Option<String>,
    created: Option<String>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    version: Option<serde_yaml::Value>,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    created: Option<serde_yaml::Value>,
}

fn scalar_text(value: serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The entries of `chart` in an `index.yaml`, skipping every other chart without building it in
/// memory (indexes of public repositories run to tens of megabytes). Entries without a version are
/// dropped. `Ok(vec![])` when the chart is not in the index.
fn parse_index_entries(bytes: &[u8], chart: &str) -> Result<Vec<IndexEntry>, String> {
    let deserializer = serde_yaml::Deserializer::from_slice(bytes);
    let raw = IndexSeed { chart }
        .deserialize(deserializer)
        .map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .filter_map(|entry| {
            Some(IndexEntry {
                version: scalar_text(entry.version?)?,
                urls: entry.urls.unwrap_or_default(),
                digest: entry.digest.filter(|d| !d.trim().is_empty()),
                created: entry.created.and_then(scalar_text),
            })
        })
        .collect())
}

/// Reads the index document, keeping only `entries.<chart>`.
struct IndexSeed<'a> {
    chart: &'a str,
}

impl<'de> DeserializeSeed<'de> for IndexSeed<'_> {
    type Value = Vec<RawEntry>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IndexSeed<'_> {
    type Value = Vec<RawEntry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Helm repository index (a map with `entries`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Vec::new();
        let mut has_entries = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" {
                has_entries = true;
                found = map.next_value_seed(EntriesSeed { chart: self.chart })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !has_entries {
            return Err(serde::de::Error::missing_field("entries"));
        }
        Ok(found)
    }
}

/// Reads the `entries` map, keeping only one chart.
struct EntriesSeed<'a> {
    chart: &'a str,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = Vec<RawEntry>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = Vec<RawEntry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of chart names to lists of versions")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        // `entries:` with nothing after it, as `helm repo index` writes for an empty repository.
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == self.chart {
                found = map
                    .next_value::<Option<Vec<RawEntry>>>()?
                    .unwrap_or_default();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const INDEX: &str = r#"
apiVersion: v1
entries:
  other:
  - version: 9.9.9
    urls: [other-9.9.9.tgz]
  hello:
  - apiVersion: v2
    name: hello
    version: 1.2.0
    created: "2024-01-01T00:00:00Z"
    digest: ABCDEF
    urls:
    - hello-1.2.0.tgz
  - version: 1.2.5
    urls: [charts/hello-1.2.5.tgz]
  - version: 1.3.0
    urls: [https://cdn.example.com/hello-1.3.0.tgz]
  - version: 2.0.0-rc.1
    urls: [hello-2.0.0-rc.1.tgz]
  - version: "1.10"
    urls: [hello-1.10.tgz]
  - urls: [no-version.tgz]
generated: "2024-01-01T00:00:00Z"
"#;

    fn versions(entries: &[IndexEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.version.as_str()).collect()
    }

    fn pick(request: &str) -> Option<String> {
        let entries = parse_index_entries(INDEX.as_bytes(), "hello").unwrap();
        let request = VersionRequest::parse("hello", request).unwrap();
        choose(&entries, &request).map(|e| e.version.clone())
    }

    #[test]
    fn index_parsing_keeps_only_the_chart_asked_for() {
        let entries = parse_index_entries(INDEX.as_bytes(), "hello").unwrap();
        assert_eq!(
            versions(&entries),
            vec!["1.2.0", "1.2.5", "1.3.0", "2.0.0-rc.1", "1.10"]
        );
        assert_eq!(entries[0].digest.as_deref(), Some("ABCDEF"));
        assert_eq!(entries[0].created.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(
            parse_index_entries(INDEX.as_bytes(), "missing")
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_index_entries(b"apiVersion: v1\nentries:\n", "x")
                .unwrap()
                .is_empty()
        );
        assert!(parse_index_entries(b"just text", "x").is_err());
        assert!(parse_index_entries(b"apiVersion: v1\n", "x").is_err());
    }

    #[test]
    fn versions_resolve_exactly_or_to_the_newest_in_range() {
        assert_eq!(pick("1.2.0").as_deref(), Some("1.2.0"));
        assert_eq!(pick("~1.2").as_deref(), Some("1.2.5"));
        assert_eq!(pick(">=1.0 <2").as_deref(), Some("1.10"));
        assert_eq!(pick("^1.2.1").as_deref(), Some("1.10"));
        assert_eq!(pick("1.2.x").as_deref(), Some("1.2.5"));
        assert_eq!(pick("").as_deref(), Some("1.10"));
        assert_eq!(pick("*").as_deref(), Some("1.10"));
        assert_eq!(pick(">=2.0.0-0").as_deref(), Some("2.0.0-rc.1"));
        assert_eq!(pick("2.0.0-rc.1").as_deref(), Some("2.0.0-rc.1"));
        assert_eq!(pick("3.0.0"), None);
        assert_eq!(pick("~0.1"), None);
        assert!(VersionRequest::parse("hello", ">= nonsense <").is_err());
        assert!(VersionRequest::parse("hello", "1.2.3").unwrap().is_exact());
        assert!(!VersionRequest::parse("hello", "~1.2").unwrap().is_exact());
        assert!(!VersionRequest::parse("hello", "1.2").unwrap().is_exact());
    }

    #[test]
    fn repo_urls_are_cleaned_and_references_resolved_like_helm() {
        assert_eq!(
            clean_repo_url("https://user:pw@charts.example.com/stable/?sig=abc#x").unwrap(),
            "https://charts.example.com/stable"
        );
        assert_eq!(
            clean_repo_url("https://charts.example.com").unwrap(),
            "https://charts.example.com"
        );
        assert!(clean_repo_url("oci://r.example.com/charts").is_err());
        assert!(clean_repo_url("not a url").is_err());

        let repo = RepoUrl::parse("https://charts.example.com/stable?sig=abc").unwrap();
        assert_eq!(
            repo.index_url().as_str(),
            "https://charts.example.com/stable/index.yaml?sig=abc"
        );
        assert_eq!(
            repo.resolve("hello-1.0.0.tgz").unwrap().as_str(),
            "https://charts.example.com/stable/hello-1.0.0.tgz?sig=abc"
        );
        assert_eq!(
            repo.resolve("/other/hello.tgz?x=1").unwrap().as_str(),
            "https://charts.example.com/other/hello.tgz?x=1"
        );
        let cdn = repo.resolve("http://cdn.example.com/hello.tgz").unwrap();
        assert!(!repo.same_origin(&cdn));
        assert!(repo.same_origin(&repo.resolve("a/b.tgz").unwrap()));
        let other_port = repo
            .resolve("https://charts.example.com:8443/x.tgz")
            .unwrap();
        assert!(!repo.same_origin(&other_port));
        assert!(repo.resolve("ftp://x/y.tgz").is_err());
        assert_eq!(repo.host_port(), "charts.example.com");
        assert_eq!(
            RepoUrl::parse("http://127.0.0.1:8080/")
                .unwrap()
                .host_port(),
            "127.0.0.1:8080"
        );
    }

    #[test]
    fn redacted_urls_carry_no_credentials_or_query() {
        let url = Url::parse("https://u:secret@h.example.com/p/index.yaml?token=secret").unwrap();
        let text = redact_url(&url);
        assert_eq!(text, "https://h.example.com/p/index.yaml");
    }

    #[test]
    fn available_versions_are_listed_newest_first() {
        let entries = parse_index_entries(INDEX.as_bytes(), "hello").unwrap();
        assert_eq!(newest_versions(&entries, 3), "2.0.0-rc.1, 1.10, 1.3.0, ...");
    }
}

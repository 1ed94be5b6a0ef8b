//! Charts from OCI registries (`spec.chart.repository: oci://host[:port]/path`), as Helm 3.8+
//! stores them with `helm push`.
//!
//! Mirrors `helm pull oci://host/path/<name> --version <version>`:
//!
//! - the chart is the repository `<path>/<name>` on `host`, tagged with its version (`+` in a
//!   version is spelled `_` in the tag, as Helm does);
//! - an exact version (`1.2.3`) is pulled by tag directly; a range (`~1.2`, `>=1 <2`, empty for
//!   the newest stable) lists the repository's tags and picks the highest version it allows, as
//!   Helm does for OCI (see [`super::repo`] for the range syntax). The resolved version is the
//!   revision;
//! - from the manifest the layer with media type [`HELM_CHART_LAYER_MEDIA_TYPE`] is the chart
//!   tarball. It is cached under the manifest's digest (with the layer's), so a tag pushed again
//!   with different content is pulled again, and an unchanged one costs one manifest request;
//! - the tarball's SHA-256 is checked against the layer digest before it is cached;
//! - registries are reached over HTTPS, except the hosts configured as insecure
//!   (`--insecure-registry`, like Helm's `--plain-http`), which use plain HTTP;
//! - credentials come from the release's pull Secret ([`PullCredentials::for_host`]): Basic
//!   credentials are used directly or presented to the registry's token service (Docker
//!   Distribution's Bearer challenge), a `registrytoken` is sent as a Bearer token. Each fetch
//!   uses its own client, so credentials of one release are never reused for another.
//!
//! Errors name the reference, never a password or token: messages from the registry client are
//! scrubbed of the credentials' secrets before they are shown.
//!
//! Not supported: provenance layers, Helm's `helm registry login` config files, custom CAs or
//! client certificates, pulling by digest (`@sha256:` in `version`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::cache::{CacheError, CacheKey, ChartCache};
use super::credentials::{Credential, PullCredentials};
use super::repo::{FetchedChart, RepoError, VersionRequest, error_chain, install_crypto_provider};

/// Media type of the chart tarball layer of a Helm chart in a registry.
pub const HELM_CHART_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Media type of the config blob of a Helm chart in a registry.
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// Default timeout for connecting to a registry and for each read.
pub const DEFAULT_OCI_TIMEOUT: Duration = Duration::from_secs(60);
/// The most tag list pages read when resolving a range.
const MAX_TAG_PAGES: usize = 50;
/// Tags asked for per page.
const TAG_PAGE_SIZE: usize = 1000;

/// Errors of fetching a chart from an OCI registry. No variant holds a password or token.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The repository is not `oci://host[:port]/path`.
    #[error("failed to parse OCI chart repository {url:?}: {reason}")]
    InvalidUrl {
        /// The repository as given.
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
    /// The registry has no manifest for the tag.
    #[error(
        "failed to find chart {chart:?} version {version:?}: tag {tag:?} of {repository} does not exist"
    )]
    UnknownTag {
        /// `host/path/name`.
        repository: String,
        /// The chart name.
        chart: String,
        /// The version.
        version: String,
        /// The tag looked up.
        tag: String,
    },
    /// The registry does not know the repository `path/name`.
    #[error("failed to find chart {chart:?} in {repository}: the repository does not exist")]
    ChartNotFound {
        /// `host/path/name`.
        repository: String,
        /// The chart name.
        chart: String,
    },
    /// No tag of the repository is a version the range allows.
    #[error(
        "failed to find a version of chart {chart:?} matching {version:?} in {repository} (tags: {available})"
    )]
    NoMatchingVersion {
        /// `host/path/name`.
        repository: String,
        /// The chart name.
        chart: String,
        /// The requested range.
        version: String,
        /// Up to 10 of the repository's tags.
        available: String,
    },
    /// The registry refused the request (401/403, or the token service refused the credentials).
    #[error(
        "failed to pull {repository}: unauthorized by registry {registry}{}",
        if *.sent_credentials { " (the credentials were refused)" } else { " (no credentials were given for this host)" }
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// `host/path/name`.
        repository: String,
        /// Whether credentials were presented.
        sent_credentials: bool,
    },
    /// The manifest has no Helm chart layer.
    #[error(
        "failed to pull chart from {reference}: the manifest has no layer of media type {HELM_CHART_LAYER_MEDIA_TYPE} (layers: {media_types})"
    )]
    NotAChart {
        /// `host/path/name:tag`.
        reference: String,
        /// The layer media types found, comma-separated.
        media_types: String,
    },
    /// The downloaded layer does not have the manifest's digest.
    #[error(
        "failed to verify chart from {reference}: layer digest {actual} does not match the manifest's {expected}"
    )]
    DigestMismatch {
        /// `host/path/name:tag`.
        reference: String,
        /// The digest in the manifest.
        expected: String,
        /// The downloaded bytes' digest.
        actual: String,
    },
    /// Any other registry or transport failure.
    #[error("failed to pull {reference}: {message}")]
    Registry {
        /// `host/path/name[:tag]`.
        reference: String,
        /// The client's message, scrubbed of secrets.
        message: String,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl OciError {
    /// A short stable category for Events, condition reasons and metric labels.
    #[must_use]
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } | Self::InvalidVersion { .. } => "InvalidChartSpec",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::UnknownTag { .. }
            | Self::ChartNotFound { .. }
            | Self::NoMatchingVersion { .. } => "ChartNotFound",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::NotAChart { .. } | Self::Registry { .. } => "ChartDownloadFailed",
            Self::Cache(_) => "ChartCacheFailed",
        }
    }
}

/// Command-line flags of OCI chart pulls, to be flattened into the operator's arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct OciArgs {
    /// Registry host (`host` or `host:port`, as in `oci://` URLs) to reach over plain HTTP
    /// instead of HTTPS; repeat or separate with commas.
    #[arg(
        long = "insecure-registry",
        env = "HELM_OPERATOR_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Timeout for connecting to a registry and for each read from it.
    #[arg(long, env = "HELM_OPERATOR_OCI_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub oci_timeout: Duration,
}

impl OciArgs {
    /// The options these flags describe.
    #[must_use]
    pub fn options(&self) -> OciOptions {
        OciOptions {
            insecure_registries: self.insecure_registries.clone(),
            timeout: self.oci_timeout,
        }
    }
}

/// Options of [`OciCharts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciOptions {
    /// Hosts (`host` or `host:port`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Connect and read timeout.
    pub timeout: Duration,
}

impl Default for OciOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            timeout: DEFAULT_OCI_TIMEOUT,
        }
    }
}

/// Fetches charts from OCI registries into a [`ChartCache`]. Share one per process; safe to use
/// from many tasks at once, and concurrent fetches of the same chart download it once.
pub struct OciCharts {
    cache: ChartCache,
    options: OciOptions,
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for OciCharts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciCharts")
            .field("cache", &self.cache)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `oci://host[:port]/path` split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OciRepo {
    host: String,
    path: String,
}

impl OciRepo {
    fn parse(url: &str) -> Result<Self, OciError> {
        let invalid = |reason: &str| OciError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .trim()
            .strip_prefix("oci://")
            .ok_or_else(|| invalid("it does not start with oci://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(invalid("no registry host"));
        }
        if host.contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported; use the chart pull Secret",
            ));
        }
        if rest.contains(['?', '#', ' ']) {
            return Err(invalid("it has a query, fragment or space"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        })
    }

    /// `path/name` (or `name` without a path).
    fn repository(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.path)
        }
    }
}

impl OciCharts {
    /// A fetcher storing into `cache`.
    #[must_use]
    pub fn new(cache: ChartCache, options: OciOptions) -> Self {
        install_crypto_provider();
        Self {
            cache,
            options,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The cache charts are stored in.
    #[must_use]
    pub fn cache(&self) -> &ChartCache {
        &self.cache
    }

    /// Fetches chart `name` at `version` (exact or range) from the registry repository
    /// `oci://host[:port]/path`, i.e. `host/path/name:<version>`, with the credentials for `host`
    /// from `credentials` (anonymous without).
    ///
    /// # Errors
    ///
    /// [`OciError`]: bad URL or version, unknown tag or repository, no version in range,
    /// unauthorized, a manifest without a chart layer, digest mismatch, transport and cache
    /// failures.
    pub async fn fetch(
        &self,
        repo_url: &str,
        name: &str,
        version: &str,
        credentials: Option<&PullCredentials>,
    ) -> Result<FetchedChart, OciError> {
        let repo = OciRepo::parse(repo_url)?;
        if name.is_empty() || name.contains(['/', ':', '@']) {
            return Err(OciError::InvalidUrl {
                url: format!("{repo_url} (chart {name:?})"),
                reason: "the chart name must be one path segment".to_owned(),
            });
        }
        let repository = repo.repository(name);
        let request = VersionRequest::parse(name, version).map_err(|e| match e {
            RepoError::InvalidVersion {
                chart,
                version,
                reason,
            } => OciError::InvalidVersion {
                chart,
                version,
                reason,
            },
            other => OciError::InvalidVersion {
                chart: name.to_owned(),
                version: version.to_owned(),
                reason: other.to_string(),
            },
        })?;
        // Validates host and repository name syntax (lowercase, separators, length).
        let probe = format!("{}/{repository}:probe", repo.host);
        Reference::try_from(probe.as_str()).map_err(|e| OciError::InvalidUrl {
            url: repo_url.to_owned(),
            reason: format!("{repository:?} is not a valid repository name: {e}"),
        })?;

        let credential = credentials.and_then(|c| c.for_host(&repo.host));
        let secrets: Vec<String> = credentials
            .map(|c| c.secrets().map(|s| s.expose().to_owned()).collect())
            .unwrap_or_default();
        let call = Call {
            client: self.client()?,
            auth: registry_auth(credential),
            sent_credentials: credential.is_some(),
            host: repo.host.clone(),
            repository: repository.clone(),
            secrets,
            plain_http: self
                .options
                .insecure_registries
                .iter()
                .any(|h| h.trim().eq_ignore_ascii_case(&repo.host)),
        };

        let (revision, tag) = if request.is_exact() {
            let text = request.text().to_owned();
            (text.clone(), text.replace('+', "_"))
        } else {
            call.resolve_range(name, &request).await?
        };
        let reference = Reference::with_tag(repo.host.clone(), repository.clone(), tag.clone());
        let reference_text = format!("{}/{repository}:{tag}", repo.host);
        let (manifest, manifest_digest) = call
            .client
            .pull_image_manifest(&reference, &call.auth)
            .await
            .map_err(|e| call.error(e, &reference_text, Some((name, &revision, &tag))))?;
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.media_type == HELM_CHART_LAYER_MEDIA_TYPE)
            .ok_or_else(|| OciError::NotAChart {
                reference: reference_text.clone(),
                media_types: manifest
                    .layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let key = CacheKey::chart(
            name,
            &revision,
            &[
                "oci",
                &format!("{}/{repository}", repo.host),
                &manifest_digest,
                &layer.digest,
            ],
        );
        let lock = self.in_flight_lock(key.file_name());
        let _guard = lock.lock().await;
        if let Some(file) = self.cache.get(&key).await {
            tracing::debug!(chart = name, version = %revision, "OCI chart served from cache");
            return Ok(FetchedChart::new(file, revision, layer.digest.clone()));
        }
        let mut writer = self.cache.writer(format!("chart {reference_text}")).await?;
        let mut stream = call
            .client
            .pull_blob_stream(&reference, layer)
            .await
            .map_err(|e| call.error(e, &reference_text, None))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| OciError::Registry {
                reference: reference_text.clone(),
                message: call.scrub(&format!("failed to read the chart layer: {e}")),
            })?;
            writer.write_all(&chunk).await?;
        }
        let actual = format!("sha256:{}", writer.sha256_hex());
        if !layer.digest.eq_ignore_ascii_case(&actual) {
            return Err(OciError::DigestMismatch {
                reference: reference_text,
                expected: layer.digest.clone(),
                actual,
            });
        }
        let file = writer.commit(&key).await?;
        tracing::info!(chart = name, version = %revision, manifest = %manifest_digest, bytes = file.size(), "pulled OCI chart");
        Ok(FetchedChart::new(file, revision, actual))
    }

    fn client(&self) -> Result<Client, OciError> {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(
                self.options
                    .insecure_registries
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
            ),
            read_timeout: Some(self.options.timeout),
            connect_timeout: Some(self.options.timeout),
            user_agent: concat!("helm-operator/", env!("CARGO_PKG_VERSION")),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        Client::try_from(config).map_err(|e| OciError::Registry {
            reference: String::new(),
            message: format!("failed to build the registry client: {e}"),
        })
    }

    fn in_flight_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(id.to_owned()).or_default())
    }
}

fn registry_auth(credential: Option<&Credential>) -> RegistryAuth {
    match credential {
        Some(Credential::Basic { username, password }) => {
            RegistryAuth::Basic(username.clone(), password.expose().to_owned())
        }
        Some(Credential::Bearer { token }) => RegistryAuth::Bearer(token.expose().to_owned()),
        None => RegistryAuth::Anonymous,
    }
}

/// One fetch's client, credentials and names, for requests and error mapping.
struct Call {
    client: Client,
    auth: RegistryAuth,
    sent_credentials: bool,
    host: String,
    repository: String,
    /// Secret texts to scrub from third-party messages.
    secrets: Vec<String>,
    /// Whether the host is reached over plain HTTP (`--insecure-registry`).
    plain_http: bool,
}

impl Call {
    /// The tag of the highest version `request` allows, with that version.
    async fn resolve_range(
        &self,
        name: &str,
        request: &VersionRequest,
    ) -> Result<(String, String), OciError> {
        let reference =
            Reference::with_tag(self.host.clone(), self.repository.clone(), "latest".into());
        let repository_text = format!("{}/{}", self.host, self.repository);
        let mut tags: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        for _ in 0..MAX_TAG_PAGES {
            let page = self
                .client
                .list_tags(&reference, &self.auth, Some(TAG_PAGE_SIZE), last.as_deref())
                .await
                .map_err(|e| self.error(e, &repository_text, None))?;
            let new: Vec<String> = page
                .tags
                .into_iter()
                .filter(|t| !tags.contains(t))
                .collect();
            let done = new.len() < TAG_PAGE_SIZE;
            last = new.last().cloned();
            tags.extend(new);
            if done || last.is_none() {
                break;
            }
        }
        let versions: Vec<String> = tags.iter().map(|t| t.replace('_', "+")).collect();
        let candidates: Vec<&str> = versions.iter().map(String::as_str).collect();
        match request.choose(&candidates) {
            Some(version) => {
                let tag = version.replace('+', "_");
                Ok((version.to_owned(), tag))
            }
            None => Err(OciError::NoMatchingVersion {
                repository: repository_text,
                chart: name.to_owned(),
                version: request.text().to_owned(),
                available: {
                    let mut shown: Vec<&str> = tags.iter().map(String::as_str).take(10).collect();
                    if tags.len() > 10 {
                        shown.push("...");
                    }
                    shown.join(", ")
                },
            }),
        }
    }

    /// `text` with every secret replaced by `<redacted>`.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if !secret.is_empty() {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    /// Maps a client error to an [`OciError`]; `tag` is `(chart, version, tag)` for manifest
    /// lookups, where "unknown manifest" means an unknown tag.
    fn error(
        &self,
        err: OciDistributionError,
        reference: &str,
        tag: Option<(&str, &str, &str)>,
    ) -> OciError {
        let repository = format!("{}/{}", self.host, self.repository);
        let unauthorized = || OciError::Unauthorized {
            registry: self.host.clone(),
            repository: repository.clone(),
            sent_credentials: self.sent_credentials,
        };
        match &err {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => return unauthorized(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    return unauthorized();
                }
                if codes.contains(&&OciErrorCode::NameUnknown) {
                    return OciError::ChartNotFound {
                        repository,
                        chart: self
                            .repository
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    };
                }
                if let Some((chart, version, tag)) = tag
                    && codes.iter().any(|c| {
                        matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NotFound)
                    })
                {
                    return OciError::UnknownTag {
                        repository,
                        chart: chart.to_owned(),
                        version: version.to_owned(),
                        tag: tag.to_owned(),
                    };
                }
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => return unauthorized(),
            OciDistributionError::ServerError { code: 404, .. } => {
                if let Some((chart, version, tag)) = tag {
                    return OciError::UnknownTag {
                        repository,
                        chart: chart.to_owned(),
                        version: version.to_owned(),
                        tag: tag.to_owned(),
                    };
                }
            }
            OciDistributionError::ImageManifestNotFoundError(_) => {
                if let Some((chart, version, tag)) = tag {
                    return OciError::UnknownTag {
                        repository,
                        chart: chart.to_owned(),
                        version: version.to_owned(),
                        tag: tag.to_owned(),
                    };
                }
            }
            _ => {}
        }
        OciError::Registry {
            reference: reference.to_owned(),
            message: {
                let mut message = self.scrub(&error_chain(&err));
                if matches!(err, OciDistributionError::RequestError(_)) && !self.plain_http {
                    message.push_str(
                        " (if the registry serves plain HTTP, list its host in --insecure-registry)",
                    );
                }
                message
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn oci_urls_split_into_host_and_path() {
        assert_eq!(
            OciRepo::parse("oci://127.0.0.1:5000/charts/stable/").unwrap(),
            OciRepo {
                host: "127.0.0.1:5000".into(),
                path: "charts/stable".into()
            }
        );
        let bare = OciRepo::parse("oci://Registry.example.com").unwrap();
        assert_eq!(bare.host, "registry.example.com");
        assert_eq!(bare.repository("hello"), "hello");
        assert_eq!(
            OciRepo::parse("oci://r.example.com/charts")
                .unwrap()
                .repository("hello"),
            "charts/hello"
        );
        for bad in [
            "https://r.example.com/charts",
            "oci:///charts",
            "oci://user:pw@r.example.com/charts",
            "oci://r.example.com/charts?x=1",
        ] {
            let err = OciRepo::parse(bad).unwrap_err();
            assert!(matches!(err, OciError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }

    /// The chart source flags, flattened as the operator's arguments will.
    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        cache: crate::chart::cache::CacheArgs,
        #[command(flatten)]
        repo: crate::chart::repo::RepoArgs,
        #[command(flatten)]
        oci: OciArgs,
    }

    #[test]
    fn chart_source_flags_have_defaults_and_parse() {
        use clap::{CommandFactory as _, Parser as _};
        Flags::command().debug_assert();
        let flags = Flags::try_parse_from(["x"]).unwrap();
        assert_eq!(
            flags.cache.chart_cache_max_bytes.0,
            crate::chart::cache::DEFAULT_MAX_BYTES
        );
        assert_eq!(
            flags.repo.options(),
            crate::chart::repo::RepoOptions::default()
        );
        assert_eq!(flags.oci.options(), OciOptions::default());
        let flags = Flags::try_parse_from([
            "x",
            "--chart-cache-max-bytes=64Mi",
            "--chart-index-ttl=5m",
            "--insecure-registry=127.0.0.1:5000,localhost:5001",
            "--insecure-registry",
            "registry.local",
        ])
        .unwrap();
        assert_eq!(flags.cache.chart_cache_max_bytes.0, 64 << 20);
        assert_eq!(flags.repo.chart_index_ttl, Duration::from_secs(300));
        assert_eq!(
            flags.oci.insecure_registries,
            vec!["127.0.0.1:5000", "localhost:5001", "registry.local"]
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        install_crypto_provider();
        let call = Call {
            client: Client::default(),
            auth: RegistryAuth::Anonymous,
            sent_credentials: true,
            host: "r".into(),
            repository: "c/hello".into(),
            secrets: vec!["pw-SECRET".into(), String::new()],
            plain_http: false,
        };
        let err = call.error(
            OciDistributionError::GenericError(Some("echo pw-SECRET".into())),
            "r/c/hello:1.0.0",
            None,
        );
        let text = err.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        let err = call.error(
            OciDistributionError::UnauthorizedError { url: "u".into() },
            "r/c/hello:1.0.0",
            None,
        );
        assert_eq!(err.category(), "Unauthorized");
        assert!(
            err.to_string().contains("the credentials were refused"),
            "{err}"
        );
    }
}

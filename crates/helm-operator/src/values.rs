//! Composes the values of one release from its sources, as Helm Operator 1.x `pkg/release/values.go`
//! did, with that code's gaps fixed.
//!
//! Order, later wins: `valueFileSecrets` (already turned into Secret keys by
//! [`model::HelmReleaseSpec::values_sources`]), then `valuesFrom` in list order, then the inline
//! `values`. Each source is one YAML mapping; they are deep-merged by [`merge`] (maps merge
//! recursively, anything else — lists included — replaces).
//!
//! What this module adds to the original:
//! - a [`ComposedValues::checksum`] that is independent of key order and of `1` versus `1.0`, so
//!   the controller can tell "in sync" without running helm;
//! - [`ComposedValues::secret_strings`], every string that came from a Secret, for redacting helm's
//!   output;
//! - [`ComposedValues::references`] (also [`references`] from the sources alone), the ConfigMaps
//!   and Secrets to watch, so a change to one re-reconciles the release (the original only noticed
//!   changes at the next periodic resync);
//! - typed errors naming the source, each with a stable [`ValuesError::reason`];
//! - `chartFileRef` cannot leave the chart directory, not even through a symlink, and URL and file
//!   bodies are capped at [`MAX_SOURCE_BYTES`].
//!
//! Optional sources are skipped (with a log line) when the object, key, file or URL is missing
//! (HTTP 4xx) or the YAML does not parse. A transient failure — the API server or the HTTP host
//! unreachable, HTTP 5xx, 408 or 429 — is an error even for an optional source: skipping it would
//! upgrade the release without those values and back again on the next sync. A spec that can
//! never work (a URL that is not `http`/`https`, a chart file path leaving the chart) is an error
//! whether optional or not.
//!
//! This module does not cache sources, does not authenticate to URLs (neither did the original),
//! does not watch anything itself and never logs or reports a value.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use model::release::ValuesSource;
use model::{ReleaseDescription, Values};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The largest values document read from a URL or a chart file, in bytes (4 MiB). ConfigMaps and
/// Secrets are already capped at 1 MiB by Kubernetes.
pub const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;

/// Default time limit of one `externalSourceRef` GET, connect to last byte.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The kind of a Kubernetes object values are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferenceKind {
    /// A `v1` ConfigMap.
    ConfigMap,
    /// A `v1` Secret.
    Secret,
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        })
    }
}

/// A ConfigMap or Secret a release's values depend on; the controller watches these and
/// re-reconciles the release when one changes (or appears).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValuesReference {
    /// ConfigMap or Secret.
    pub kind: ReferenceKind,
    /// Namespace of the object (already defaulted to the HelmRelease's namespace).
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

/// The values of one release, ready to hand to helm.
#[derive(Clone, PartialEq)]
pub struct ComposedValues {
    /// The merged values: always a JSON object.
    pub values: Value,
    /// Lowercase hex SHA-256 of the canonical form of [`ComposedValues::values`] (see
    /// [`checksum`]): equal values give equal checksums whatever their key order or number
    /// spelling.
    pub checksum: String,
    /// Every non-empty string scalar read from a Secret source, deduplicated, longest first (so a
    /// redactor replacing them in order never leaves the tail of a longer secret behind). Includes
    /// strings a later source overrode.
    pub secret_strings: Vec<String>,
    /// Every ConfigMap and Secret named by the sources, optional or not, found or not, in source
    /// order without duplicates.
    pub references: Vec<ValuesReference>,
}

impl fmt::Debug for ComposedValues {
    // The values may hold secrets: show only their shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComposedValues")
            .field("values", &"<redacted>")
            .field("checksum", &self.checksum)
            .field("secret_strings", &self.secret_strings.len())
            .field("references", &self.references)
            .finish()
    }
}

/// One values source, as named in errors and logs. URLs are shown without user info, query or
/// fragment, which often carry credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRef {
    /// `configMapKeyRef`.
    ConfigMap {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// `secretKeyRef` or `valueFileSecrets`.
    Secret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// `externalSourceRef`.
    Url {
        /// The URL with user info, query and fragment removed.
        url: String,
    },
    /// `chartFileRef`.
    ChartFile {
        /// The path as written, relative to the chart directory.
        path: String,
    },
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConfigMap {
                namespace,
                name,
                key,
            } => write!(f, "ConfigMap {namespace}/{name} key {key:?}"),
            Self::Secret {
                namespace,
                name,
                key,
            } => write!(f, "Secret {namespace}/{name} key {key:?}"),
            Self::Url { url } => write!(f, "URL {url}"),
            Self::ChartFile { path } => write!(f, "chart file {path:?}"),
        }
    }
}

impl SourceRef {
    fn of(source: &ValuesSource) -> Self {
        match source {
            ValuesSource::ConfigMapKey { object, key, .. } => Self::ConfigMap {
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                key: key.clone(),
            },
            ValuesSource::SecretKey { object, key, .. } => Self::Secret {
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                key: key.clone(),
            },
            ValuesSource::ExternalUrl { url, .. } => Self::Url {
                url: redact_url(url),
            },
            ValuesSource::ChartFile { path, .. } => Self::ChartFile { path: path.clone() },
        }
    }
}

/// Errors from composing values. Each names the source; none carries a value.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// The ConfigMap or Secret, or the chart file, does not exist.
    #[error("failed to read values from {origin}: not found")]
    NotFound {
        /// The source.
        origin: SourceRef,
    },
    /// The ConfigMap or Secret exists but has no such key.
    #[error("failed to read values from {origin}: the object has no such key")]
    KeyNotFound {
        /// The source.
        origin: SourceRef,
    },
    /// The document is not YAML, not UTF-8, or not a mapping. For Secrets the problem names only
    /// the line and column, never the text.
    #[error("failed to parse values from {origin}: {problem}")]
    Unparsable {
        /// The source.
        origin: SourceRef,
        /// What is wrong, without the document's text.
        problem: String,
    },
    /// The document is larger than [`MAX_SOURCE_BYTES`].
    #[error("failed to read values from {origin}: larger than {limit} bytes")]
    TooLarge {
        /// The source.
        origin: SourceRef,
        /// The limit, in bytes.
        limit: usize,
    },
    /// Reading the ConfigMap or Secret from the API server failed (other than "not found").
    #[error("failed to read values from {origin}")]
    Read {
        /// The source.
        origin: SourceRef,
        /// The client error.
        #[source]
        error: Box<kube::Error>,
    },
    /// The HTTP request failed before a response arrived (connect, TLS, timeout).
    #[error("failed to fetch values from {origin}: {problem}")]
    Fetch {
        /// The source.
        origin: SourceRef,
        /// The transport error chain, without the URL.
        problem: String,
    },
    /// The HTTP server answered with a status other than 200.
    #[error("failed to fetch values from {origin}: HTTP status {status}")]
    HttpStatus {
        /// The source.
        origin: SourceRef,
        /// The status code.
        status: u16,
    },
    /// The URL does not parse or its scheme is not `http` or `https`.
    #[error("failed to fetch values from {origin}: {problem}")]
    InvalidUrl {
        /// The source.
        origin: SourceRef,
        /// What is wrong.
        problem: String,
    },
    /// A `chartFileRef` path is absolute, contains `..`, or resolves (through a symlink) outside
    /// the chart directory.
    #[error("failed to read values from {origin}: the path leaves the chart directory")]
    PathOutsideChart {
        /// The source.
        origin: SourceRef,
    },
    /// A `chartFileRef` was given but no chart directory is available (a packaged chart).
    #[error("failed to read values from {origin}: the chart is not a directory")]
    NoChartDirectory {
        /// The source.
        origin: SourceRef,
    },
    /// Reading the chart file failed (other than "not found").
    #[error("failed to read values from {origin}")]
    Io {
        /// The source.
        origin: SourceRef,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The HTTP client could not be built (no TLS roots, bad configuration).
    #[error("failed to build the HTTP client for values URLs: {problem}")]
    HttpClient {
        /// The error chain.
        problem: String,
    },
}

impl ValuesError {
    /// A short stable category, usable as condition reason, Event reason and metric label.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "ValuesSourceNotFound",
            Self::KeyNotFound { .. } => "ValuesKeyNotFound",
            Self::Unparsable { .. } => "ValuesInvalid",
            Self::TooLarge { .. } => "ValuesTooLarge",
            Self::Read { .. } | Self::Io { .. } => "ValuesReadFailed",
            Self::Fetch { .. } => "ValuesFetchFailed",
            Self::HttpStatus { .. } => "ValuesHTTPError",
            Self::InvalidUrl { .. } => "ValuesURLInvalid",
            Self::PathOutsideChart { .. } => "ValuesPathInvalid",
            Self::NoChartDirectory { .. } => "ValuesNoChartDirectory",
            Self::HttpClient { .. } => "HTTPClientFailed",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything: API server or
    /// HTTP transport failures, HTTP 5xx, 408 and 429. Other errors wait for a change of the
    /// spec or of a source (which the controller watches).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Read { .. } | Self::Fetch { .. } => true,
            Self::HttpStatus { status, .. } => transient_status(*status),
            _ => false,
        }
    }

    /// The source the error is about, if it is about one.
    #[must_use]
    pub fn origin(&self) -> Option<&SourceRef> {
        match self {
            Self::NotFound { origin }
            | Self::KeyNotFound { origin }
            | Self::Unparsable { origin, .. }
            | Self::TooLarge { origin, .. }
            | Self::Read { origin, .. }
            | Self::Fetch { origin, .. }
            | Self::HttpStatus { origin, .. }
            | Self::InvalidUrl { origin, .. }
            | Self::PathOutsideChart { origin }
            | Self::NoChartDirectory { origin }
            | Self::Io { origin, .. } => Some(origin),
            Self::HttpClient { .. } => None,
        }
    }

    /// Whether an optional source with this error is skipped: the source is missing or
    /// unreadable, not unreachable and not misconfigured.
    fn skippable(&self) -> bool {
        match self {
            Self::NotFound { .. }
            | Self::KeyNotFound { .. }
            | Self::Unparsable { .. }
            | Self::TooLarge { .. }
            | Self::NoChartDirectory { .. }
            | Self::Io { .. } => true,
            Self::HttpStatus { status, .. } => !transient_status(*status),
            Self::Read { .. }
            | Self::Fetch { .. }
            | Self::InvalidUrl { .. }
            | Self::PathOutsideChart { .. }
            | Self::HttpClient { .. } => false,
        }
    }
}

fn transient_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Reads values sources from the cluster, the chart directory and HTTP(S) URLs and merges them.
/// Cheap to clone; keep one per operator so HTTP connections are reused.
#[derive(Clone)]
pub struct ValuesComposer {
    client: kube::Client,
    http: reqwest::Client,
}

impl fmt::Debug for ValuesComposer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValuesComposer").finish_non_exhaustive()
    }
}

impl ValuesComposer {
    /// A composer reading Kubernetes objects with `client` and URLs with a
    /// [`DEFAULT_HTTP_TIMEOUT`] per request.
    ///
    /// # Errors
    ///
    /// [`ValuesError::HttpClient`] when the TLS configuration cannot be built.
    pub fn new(client: kube::Client) -> Result<Self, ValuesError> {
        Self::with_http_timeout(client, DEFAULT_HTTP_TIMEOUT)
    }

    /// As [`ValuesComposer::new`] with `timeout` for each URL GET (connect to last byte).
    /// Proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` are honoured; redirects are followed
    /// (at most 10).
    ///
    /// # Errors
    ///
    /// [`ValuesError::HttpClient`] when the TLS configuration cannot be built.
    pub fn with_http_timeout(client: kube::Client, timeout: Duration) -> Result<Self, ValuesError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("helm-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ValuesError::HttpClient {
                problem: error_chain(&error.without_url()),
            })?;
        Ok(Self { client, http })
    }

    /// Composes the values of `release`: [`ReleaseDescription::values_from`] then
    /// [`ReleaseDescription::values`]. `chart_dir` is the chart's directory, for `chartFileRef`
    /// (`None` for a packaged chart).
    ///
    /// # Errors
    ///
    /// As [`ValuesComposer::compose`].
    pub async fn compose_release(
        &self,
        release: &ReleaseDescription,
        chart_dir: Option<&Path>,
    ) -> Result<ComposedValues, ValuesError> {
        self.compose(&release.values_from, &release.values, chart_dir)
            .await
    }

    /// Reads every source in order, merges them with [`merge`] (later wins), then merges
    /// `inline` on top, as Helm Operator's `composeValues`.
    ///
    /// Sources are read one after the other. An optional source that is missing or unparsable
    /// is skipped with a warning log naming it (see the module docs for what counts).
    ///
    /// # Errors
    ///
    /// The first failing non-optional source's [`ValuesError`], or a transient or
    /// misconfiguration error of an optional one. Nothing is returned partially.
    pub async fn compose(
        &self,
        sources: &[ValuesSource],
        inline: &Values,
        chart_dir: Option<&Path>,
    ) -> Result<ComposedValues, ValuesError> {
        let mut merged = Values::new();
        let mut secret_strings = BTreeSet::new();
        for source in sources {
            let values = match self.read(source, chart_dir).await {
                Ok(values) => values,
                Err(error) if optional(source) && error.skippable() => {
                    tracing::warn!(
                        reason = error.reason(),
                        "skipping optional values source: {error}"
                    );
                    continue;
                }
                Err(error) => return Err(error),
            };
            if matches!(source, ValuesSource::SecretKey { .. }) {
                collect_strings(&values, &mut secret_strings);
            }
            merge_into(&mut merged, values);
        }
        merge_into(&mut merged, inline.clone());
        let values = Value::Object(merged);
        let mut secret_strings: Vec<String> = secret_strings.into_iter().collect();
        secret_strings.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Ok(ComposedValues {
            checksum: checksum(&values),
            values,
            secret_strings,
            references: references(sources),
        })
    }

    async fn read(
        &self,
        source: &ValuesSource,
        chart_dir: Option<&Path>,
    ) -> Result<Values, ValuesError> {
        let origin = SourceRef::of(source);
        match source {
            ValuesSource::ConfigMapKey { object, key, .. } => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &object.namespace);
                let config_map = get(&api, &object.name, &origin).await?;
                let text = if let Some(text) = config_map.data.as_ref().and_then(|d| d.get(key)) {
                    text.clone()
                } else if let Some(bytes) = config_map.binary_data.as_ref().and_then(|d| d.get(key))
                {
                    utf8(bytes.0.clone(), &origin)?
                } else {
                    return Err(ValuesError::KeyNotFound { origin });
                };
                parse_values(&text, false)
                    .map_err(|problem| ValuesError::Unparsable { origin, problem })
            }
            ValuesSource::SecretKey { object, key, .. } => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &object.namespace);
                let secret = get(&api, &object.name, &origin).await?;
                let text = if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
                    utf8(bytes.0.clone(), &origin)?
                } else if let Some(text) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
                    text.clone()
                } else {
                    return Err(ValuesError::KeyNotFound { origin });
                };
                parse_values(&text, true)
                    .map_err(|problem| ValuesError::Unparsable { origin, problem })
            }
            ValuesSource::ExternalUrl { url, .. } => {
                let text = self.fetch(url, &origin).await?;
                parse_values(&text, false)
                    .map_err(|problem| ValuesError::Unparsable { origin, problem })
            }
            ValuesSource::ChartFile { path, .. } => {
                let text = read_chart_file(chart_dir, path, &origin).await?;
                parse_values(&text, false)
                    .map_err(|problem| ValuesError::Unparsable { origin, problem })
            }
        }
    }

    async fn fetch(&self, url: &str, origin: &SourceRef) -> Result<String, ValuesError> {
        let parsed = reqwest::Url::parse(url).map_err(|error| ValuesError::InvalidUrl {
            origin: origin.clone(),
            problem: error.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ValuesError::InvalidUrl {
                origin: origin.clone(),
                problem: format!(
                    "scheme {:?} is not supported; use http or https",
                    parsed.scheme()
                ),
            });
        }
        let fetch_error = |error: reqwest::Error| ValuesError::Fetch {
            origin: origin.clone(),
            problem: error_chain(&error.without_url()),
        };
        let mut response = self.http.get(parsed).send().await.map_err(fetch_error)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ValuesError::HttpStatus {
                origin: origin.clone(),
                status,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > MAX_SOURCE_BYTES {
                return Err(ValuesError::TooLarge {
                    origin: origin.clone(),
                    limit: MAX_SOURCE_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        utf8(body, origin)
    }
}

fn optional(source: &ValuesSource) -> bool {
    match source {
        ValuesSource::ConfigMapKey { optional, .. }
        | ValuesSource::SecretKey { optional, .. }
        | ValuesSource::ExternalUrl { optional, .. }
        | ValuesSource::ChartFile { optional, .. } => *optional,
    }
}

async fn get<K>(api: &Api<K>, name: &str, origin: &SourceRef) -> Result<K, ValuesError>
where
    K: Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(object)) => Ok(object),
        Ok(None) => Err(ValuesError::NotFound {
            origin: origin.clone(),
        }),
        Err(error) => Err(ValuesError::Read {
            origin: origin.clone(),
            error: Box::new(error),
        }),
    }
}

fn utf8(bytes: Vec<u8>, origin: &SourceRef) -> Result<String, ValuesError> {
    String::from_utf8(bytes).map_err(|error| ValuesError::Unparsable {
        origin: origin.clone(),
        problem: format!(
            "not UTF-8 (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        ),
    })
}

/// Reads `path` under `chart_dir`, refusing absolute paths, `..` and symlinks that lead out.
async fn read_chart_file(
    chart_dir: Option<&Path>,
    path: &str,
    origin: &SourceRef,
) -> Result<String, ValuesError> {
    let relative = Path::new(path);
    let lexically_inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !lexically_inside || path.is_empty() {
        return Err(ValuesError::PathOutsideChart {
            origin: origin.clone(),
        });
    }
    let Some(chart_dir) = chart_dir.filter(|dir| dir.is_dir()) else {
        return Err(ValuesError::NoChartDirectory {
            origin: origin.clone(),
        });
    };
    let io_error = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            ValuesError::NotFound {
                origin: origin.clone(),
            }
        } else {
            ValuesError::Io {
                origin: origin.clone(),
                error,
            }
        }
    };
    let root: PathBuf = tokio::fs::canonicalize(chart_dir).await.map_err(io_error)?;
    let file = tokio::fs::canonicalize(root.join(relative))
        .await
        .map_err(io_error)?;
    if !file.starts_with(&root) {
        return Err(ValuesError::PathOutsideChart {
            origin: origin.clone(),
        });
    }
    let size = tokio::fs::metadata(&file).await.map_err(io_error)?.len();
    if size > MAX_SOURCE_BYTES as u64 {
        return Err(ValuesError::TooLarge {
            origin: origin.clone(),
            limit: MAX_SOURCE_BYTES,
        });
    }
    let bytes = tokio::fs::read(&file).await.map_err(io_error)?;
    utf8(bytes, origin)
}

/// Parses one values document: YAML (merge keys applied) whose top level is a mapping; an empty
/// document is an empty mapping. Non-string scalar keys become strings, as Helm's YAML-to-JSON
/// conversion does. With `sensitive`, a syntax error is reported by position only.
fn parse_values(text: &str, sensitive: bool) -> Result<Values, String> {
    let mut document: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|error| match (sensitive, error.location()) {
            (false, _) => error.to_string(),
            (true, Some(at)) => {
                format!("invalid YAML at line {} column {}", at.line(), at.column())
            }
            (true, None) => "invalid YAML".to_owned(),
        })?;
    document
        .apply_merge()
        .map_err(|_| "invalid YAML merge key (<<)".to_owned())?;
    match yaml_to_json(document)? {
        Value::Object(values) => Ok(values),
        Value::Null => Ok(Values::new()),
        other => Err(format!(
            "the document is {}, not a mapping",
            json_kind(&other)
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    Ok(match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    serde_json::Number::from_f64(f).ok_or_else(|| {
                        "a number is .inf or .nan, which JSON cannot hold".to_owned()
                    })?,
                )
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        serde_yaml::Value::Mapping(mapping) => {
            let mut object = Values::new();
            for (key, value) in mapping {
                let key = match key {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    serde_yaml::Value::Null => "null".to_owned(),
                    _ => return Err("a mapping key is not a scalar".to_owned()),
                };
                object.insert(key, yaml_to_json(value)?);
            }
            Value::Object(object)
        }
        serde_yaml::Value::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

fn collect_strings(values: &Values, out: &mut BTreeSet<String>) {
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::String(s) if !s.is_empty() => {
                out.insert(s.clone());
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    values.values().for_each(|v| walk(v, out));
}

/// The URL for messages: scheme, host, port and path; user info, query and fragment dropped.
/// Text that does not parse as a URL is shown as `<invalid URL>`.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let had_extras = parsed.query().is_some()
                || parsed.fragment().is_some()
                || !parsed.username().is_empty()
                || parsed.password().is_some();
            parsed.set_query(None);
            parsed.set_fragment(None);
            // Both fail only for URLs that cannot carry credentials at all.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            if had_extras {
                format!("{parsed} (credentials and query removed)")
            } else {
                parsed.to_string()
            }
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
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

/// The ConfigMaps and Secrets `sources` name, in order, without duplicates: what a controller
/// watches to re-reconcile the release when one of them changes or appears. Works without
/// reading anything, so it is available even when composing failed.
#[must_use]
pub fn references(sources: &[ValuesSource]) -> Vec<ValuesReference> {
    let mut seen = BTreeSet::new();
    sources
        .iter()
        .filter_map(|source| match source {
            ValuesSource::ConfigMapKey { object, .. } => Some(ValuesReference {
                kind: ReferenceKind::ConfigMap,
                namespace: object.namespace.clone(),
                name: object.name.clone(),
            }),
            ValuesSource::SecretKey { object, .. } => Some(ValuesReference {
                kind: ReferenceKind::Secret,
                namespace: object.namespace.clone(),
                name: object.name.clone(),
            }),
            ValuesSource::ExternalUrl { .. } | ValuesSource::ChartFile { .. } => None,
        })
        .filter(|reference| seen.insert(reference.clone()))
        .collect()
}

/// Deep-merges `overlay` onto `base` and returns the result, as Helm Operator's `mergeValues`:
/// a key in both whose values are both mappings is merged recursively; otherwise `overlay`'s
/// value replaces `base`'s (lists are replaced, not concatenated; `null` replaces too, and Helm
/// later reads a `null` as "delete the chart's default").
#[must_use]
pub fn merge(mut base: Values, overlay: Values) -> Values {
    merge_into(&mut base, overlay);
    base
}

fn merge_into(base: &mut Values, overlay: Values) {
    for (key, value) in overlay {
        if let Value::Object(overlay_map) = value {
            if let Some(Value::Object(base_map)) = base.get_mut(&key) {
                merge_into(base_map, overlay_map);
            } else {
                base.insert(key, Value::Object(overlay_map));
            }
        } else {
            base.insert(key, value);
        }
    }
}

/// Lowercase hex SHA-256 of the canonical serialisation of `values`: JSON with object keys sorted
/// by their UTF-8 bytes at every level, no whitespace, and numbers written by value — an integral
/// number within the 64-bit integer range as an integer (so `1`, `1.0` and `1e0` agree, as Helm,
/// which reads all values numbers as float64, sees them), any other as Rust's shortest
/// round-tripping exponent form (`1.5e0`). Used to decide whether a release is in sync, so it
/// must stay stable across versions of this program.
#[must_use]
pub fn checksum(values: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(values, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&canonical_number(n)),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is fixed by the JSON grammar it implements.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

fn canonical_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    // -2^63 <= f < 2^63, and 0 <= f < 2^64: exactly representable bounds for the casts below.
    const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
    const U64_BOUND: f64 = 18_446_744_073_709_551_616.0;
    if f.fract() == 0.0 {
        if (-I64_BOUND..I64_BOUND).contains(&f) {
            return (f as i64).to_string();
        }
        if (0.0..U64_BOUND).contains(&f) {
            return (f as u64).to_string();
        }
    }
    format!("{f:e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn map(value: Value) -> Values {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn maps_merge_recursively_and_everything_else_replaces() {
        let base = map(json!({
            "image": {"repository": "nginx", "tag": "1.0"},
            "ports": [80, 443],
            "replicas": 1,
            "keep": "me",
            "scalarThenMap": "x",
            "mapThenScalar": {"a": 1},
        }));
        let overlay = map(json!({
            "image": {"tag": "2.0"},
            "ports": [8080],
            "replicas": null,
            "scalarThenMap": {"b": 2},
            "mapThenScalar": "y",
        }));
        assert_eq!(
            Value::Object(merge(base, overlay)),
            json!({
                "image": {"repository": "nginx", "tag": "2.0"},
                "ports": [8080],
                "replicas": null,
                "keep": "me",
                "scalarThenMap": {"b": 2},
                "mapThenScalar": "y",
            })
        );
    }

    #[test]
    fn checksum_ignores_key_order_and_number_spelling_only() {
        let a = parse_values("b: 1\na: {y: 2.0, x: [1, 2]}\n", false).unwrap();
        let b = parse_values("a:\n  x: [1.0, 2e0]\n  y: 2\nb: 1.0\n", false).unwrap();
        assert_eq!(
            checksum(&Value::Object(a.clone())),
            checksum(&Value::Object(b))
        );
        let c = parse_values("b: 1\na: {y: 2.5, x: [1, 2]}\n", false).unwrap();
        assert_ne!(
            checksum(&Value::Object(a.clone())),
            checksum(&Value::Object(c))
        );
        // A string "1" is not the number 1, and list order matters.
        assert_ne!(checksum(&json!({"v": "1"})), checksum(&json!({"v": 1})));
        assert_ne!(
            checksum(&json!({"v": [1, 2]})),
            checksum(&json!({"v": [2, 1]}))
        );
        assert_eq!(checksum(&json!({})).len(), 64);
    }

    #[test]
    fn canonical_numbers_are_written_by_value() {
        let n = |v: Value| match v {
            Value::Number(n) => canonical_number(&n),
            other => panic!("{other}"),
        };
        assert_eq!(n(json!(1)), "1");
        assert_eq!(n(json!(1.0)), "1");
        assert_eq!(n(json!(-0.0)), "0");
        assert_eq!(n(json!(1.5)), "1.5e0");
        assert_eq!(n(json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(n(json!(1e300)), "1e300");
        assert_eq!(n(json!(9_223_372_036_854_775_808.0)), "9223372036854775808");
    }

    #[test]
    fn documents_must_be_mappings_and_empty_is_empty() {
        assert!(parse_values("", false).unwrap().is_empty());
        assert!(
            parse_values("# only a comment\n", false)
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_values("- a\n- b\n", false)
                .unwrap_err()
                .contains("sequence")
        );
        assert!(parse_values("a: [\n", false).is_err());
        let keys = parse_values("ports:\n  80: http\n  true: yes\n", false).unwrap();
        assert_eq!(
            Value::Object(keys),
            json!({"ports": {"80": "http", "true": "yes"}})
        );
        let merged =
            parse_values("base: &b {a: 1, b: 2}\nderived:\n  <<: *b\n  b: 3\n", false).unwrap();
        assert_eq!(merged["derived"], json!({"a": 1, "b": 3}));
    }

    #[test]
    fn secret_parse_errors_carry_no_text() {
        let problem = parse_values("password: hunter2\n  nested: [oops\n", true).unwrap_err();
        assert!(!problem.contains("hunter2"), "{problem}");
        assert!(problem.contains("line"), "{problem}");
        let problem = parse_values("just-a-secret-string\n", true).unwrap_err();
        assert!(!problem.contains("just-a-secret"), "{problem}");
    }

    #[test]
    fn urls_in_messages_lose_credentials_and_query() {
        assert_eq!(
            redact_url("https://user:pw@example.com:8443/v.yaml?token=abc#x"),
            "https://example.com:8443/v.yaml (credentials and query removed)"
        );
        assert_eq!(
            redact_url("http://example.com/v.yaml"),
            "http://example.com/v.yaml"
        );
        assert_eq!(redact_url("not a url"), "<invalid URL>");
    }

    #[test]
    fn errors_have_stable_reasons_and_name_their_source() {
        let origin = SourceRef::ConfigMap {
            namespace: "dev".into(),
            name: "vals".into(),
            key: "values.yaml".into(),
        };
        let error = ValuesError::KeyNotFound {
            origin: origin.clone(),
        };
        assert_eq!(error.reason(), "ValuesKeyNotFound");
        assert_eq!(
            error.to_string(),
            "failed to read values from ConfigMap dev/vals key \"values.yaml\": the object has no such key"
        );
        assert!(!error.is_transient());
        let error = ValuesError::HttpStatus {
            origin: SourceRef::Url {
                url: "http://h/".into(),
            },
            status: 503,
        };
        assert!(error.is_transient());
        assert!(!error.skippable());
        assert_eq!(
            error.origin(),
            Some(&SourceRef::Url {
                url: "http://h/".into()
            })
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::String),
        ]
    }

    fn values_tree() -> impl Strategy<Value = Values> {
        let tree = leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map("[a-c]", tree, 0..4).prop_map(|m| m.into_iter().collect())
    }

    /// Every leaf path of `overlay` (stopping at non-maps) must be found in `merged` unchanged.
    fn overlay_wins(merged: &Values, overlay: &Values) -> bool {
        overlay
            .iter()
            .all(|(key, value)| match (value, merged.get(key)) {
                (Value::Object(o), Some(Value::Object(m))) => overlay_wins(m, o),
                (value, found) => found == Some(value),
            })
    }

    proptest! {
        #[test]
        fn merging_with_empty_is_identity(values in values_tree()) {
            prop_assert_eq!(merge(values.clone(), Values::new()), values.clone());
            prop_assert_eq!(merge(Values::new(), values.clone()), values);
        }

        #[test]
        fn later_source_wins_on_every_conflict(base in values_tree(), overlay in values_tree()) {
            let merged = merge(base.clone(), overlay.clone());
            prop_assert!(overlay_wins(&merged, &overlay));
            // Keys only in base survive.
            for (key, value) in &base {
                if !overlay.contains_key(key) {
                    prop_assert_eq!(merged.get(key), Some(value));
                }
            }
        }

        #[test]
        fn integral_floats_checksum_like_integers(n in -(1_i64 << 53)..(1_i64 << 53)) {
            let as_float = n as f64; // |n| < 2^53: exact

            prop_assert_eq!(checksum(&json!({"n": n})), checksum(&json!({"n": as_float})));
        }
    }
}

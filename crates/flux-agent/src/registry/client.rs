//! The registry HTTP client: the three Distribution API calls the scanner needs (tag list with
//! `Link` pagination, manifest `GET`/`HEAD`, blob `GET`), each through the host's rate limiter,
//! timed into `flux_client_fetch_duration_seconds` and counted by kind.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge, remembered per host so
//! later requests carry credentials up front: `Basic` sends the host's login; `Bearer realm=…,
//! service=…` gets a token for `repository:<path>:pull` from the realm (with the login as Basic
//! auth when there is one, anonymously otherwise) and caches it until it expires. Hosts listed
//! in `--registry-insecure-host` are spoken to over plain HTTP, others over HTTPS.
//!
//! Does not retry: a failed request is an error for the caller, and a 429 also slows the host
//! down (see [`super::ratelimit`]). Logins and tokens only ever go into request headers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::Digest as _;
use tokio::time::Instant;

use super::RegistryError;
use super::credentials::{DOCKER_HUB, Login};
use super::metrics::RegistryMetrics;
use super::ratelimit::RateLimiters;

/// Manifest media types asked for, image indexes first.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Page size asked for in tag lists (registries may ignore it; ECR refuses more than 1000).
const TAG_PAGE_SIZE: usize = 1000;
/// Most tag-list pages followed for one repository.
const MAX_TAG_PAGES: usize = 1000;
/// Token lifetime assumed when the token service does not say (Distribution's spec: 60 s).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// What a request is for; counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    TagList,
    Manifest,
    Blob,
    Token,
}

impl Kind {
    /// The `kind` label of `flux_client_fetch_duration_seconds`.
    fn label(self) -> &'static str {
        match self {
            Kind::TagList => "tags",
            Kind::Manifest | Kind::Blob | Kind::Token => "metadata",
        }
    }
}

/// Requests made so far, by kind.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tag_lists: AtomicU64,
    pub(crate) manifests: AtomicU64,
    pub(crate) blobs: AtomicU64,
    pub(crate) tokens: AtomicU64,
}

impl Counters {
    fn add(&self, kind: Kind) {
        let counter = match kind {
            Kind::TagList => &self.tag_lists,
            Kind::Manifest => &self.manifests,
            Kind::Blob => &self.blobs,
            Kind::Token => &self.tokens,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The auth scheme a host asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A repository on a registry, with the login to use there.
#[derive(Clone)]
pub(crate) struct Target<'a> {
    /// The host requests go to (`registry-1.docker.io` for Docker Hub).
    pub(crate) api_host: String,
    /// The repository path (`library/nginx`).
    pub(crate) path: &'a str,
    /// The login for the host, if any.
    pub(crate) login: Option<&'a Login>,
}

impl<'a> Target<'a> {
    /// `canonical_host` as in canonical image names (`docker.io`, `ghcr.io`).
    pub(crate) fn new(canonical_host: &str, path: &'a str, login: Option<&'a Login>) -> Self {
        let api_host = if canonical_host == DOCKER_HUB {
            "registry-1.docker.io".to_owned()
        } else {
            canonical_host.to_owned()
        };
        Self {
            api_host,
            path,
            login,
        }
    }
}

/// A manifest as fetched.
#[derive(Debug)]
pub(crate) struct Manifest {
    /// `Docker-Content-Digest`, or the sha256 of the body when the header is missing.
    pub(crate) digest: String,
    /// The body (empty for `HEAD`).
    pub(crate) body: Vec<u8>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The HTTP client shared by all scans.
#[derive(Debug)]
pub(crate) struct Client {
    /// Built at the first request: an agent with nothing to scan never loads TLS roots.
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
    timeout: Duration,
    insecure: HashSet<String>,
    limiters: RateLimiters,
    metrics: RegistryMetrics,
    pub(crate) counters: Counters,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl Client {
    pub(crate) fn new(
        timeout: Duration,
        insecure_hosts: &[String],
        rps: f64,
        burst: u32,
        metrics: RegistryMetrics,
    ) -> Result<Self, RegistryError> {
        Ok(Self {
            http: std::sync::OnceLock::new(),
            timeout,
            insecure: insecure_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            limiters: RateLimiters::new(rps, burst, metrics.rate_limit.clone()),
            metrics,
            counters: Counters::default(),
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client, built on first use.
    fn http(&self) -> Result<&reqwest::Client, RegistryError> {
        self.http
            .get_or_init(|| {
                // reqwest and rustls look up the process-wide provider; ring is the only one
                // built in.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout)
                    .user_agent(concat!("flux-agent/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| RegistryError::Client {
                reason: reason.clone(),
            })
    }

    fn base_url(&self, api_host: &str) -> String {
        let host_only = api_host.split(':').next().unwrap_or(api_host);
        let scheme = if self.insecure.contains(api_host) || self.insecure.contains(host_only) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{api_host}")
    }

    /// Raises the host's rate after a calm period (call after a successful round).
    pub(crate) fn recover(&self, api_host: &str) {
        self.limiters.host(api_host).recover();
    }

    /// The current rate limit of a host.
    pub(crate) fn rate(&self, api_host: &str) -> f64 {
        self.limiters.host(api_host).rate()
    }

    /// All tags of the repository, following `Link: <…>; rel="next"` pages.
    pub(crate) async fn list_tags(
        &self,
        target: &Target<'_>,
    ) -> Result<Vec<String>, RegistryError> {
        let base = self.base_url(&target.api_host);
        let mut url = format!("{base}/v2/{}/tags/list?n={TAG_PAGE_SIZE}", target.path);
        let mut tags = Vec::new();
        let mut seen_pages = HashSet::new();
        for _ in 0..MAX_TAG_PAGES {
            let response = self
                .send(target, Kind::TagList, Method::GET, &url, None)
                .await?;
            let next = next_link(response.headers(), &base);
            let body = read_body(response, &url).await?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Parse {
                    what: "tag list",
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            seen_pages.insert(url.clone());
            match next {
                Some(next) if !seen_pages.contains(&next) => url = next,
                _ => break,
            }
        }
        tags.sort_unstable();
        tags.dedup();
        Ok(tags)
    }

    /// `GET` (or `HEAD` when `head`) of `/v2/<path>/manifests/<reference>`.
    pub(crate) async fn manifest(
        &self,
        target: &Target<'_>,
        reference: &str,
        head: bool,
    ) -> Result<Manifest, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(&target.api_host),
            target.path
        );
        let method = if head { Method::HEAD } else { Method::GET };
        let response = self
            .send(target, Kind::Manifest, method, &url, Some(MANIFEST_ACCEPT))
            .await?;
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if head {
            return match header_digest {
                Some(digest) => Ok(Manifest {
                    digest,
                    body: Vec::new(),
                }),
                // No digest header: the caller falls back to a GET.
                None => Err(RegistryError::Parse {
                    what: "manifest digest",
                    url,
                    reason: "no Docker-Content-Digest header".to_owned(),
                }),
            };
        }
        let body = read_body(response, &url).await?;
        let digest = header_digest.unwrap_or_else(|| {
            let hash = sha2::Sha256::digest(&body);
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        });
        Ok(Manifest { digest, body })
    }

    /// `GET /v2/<path>/blobs/<digest>` (the image config).
    pub(crate) async fn blob(
        &self,
        target: &Target<'_>,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(&target.api_host),
            target.path
        );
        let response = self
            .send(target, Kind::Blob, Method::GET, &url, None)
            .await?;
        read_body(response, &url).await
    }

    fn challenge(&self, api_host: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(api_host)
            .cloned()
    }

    /// Sends one request, authenticating as the host asks; at most one retry, after a 401 that
    /// taught a new challenge or invalidated a token.
    async fn send(
        &self,
        target: &Target<'_>,
        kind: Kind,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retried = false;
        loop {
            let auth = match self.challenge(&target.api_host) {
                None => None,
                Some(Challenge::Basic) => target.login.map(|l| AuthHeader::Basic(l.clone())),
                Some(Challenge::Bearer { realm, service }) => Some(AuthHeader::Bearer(
                    self.token(target, &realm, service.as_deref()).await?,
                )),
            };
            let mut request = self.http()?.request(method.clone(), url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            request = match &auth {
                None => request,
                Some(AuthHeader::Basic(login)) => {
                    request.basic_auth(&login.username, Some(&login.password))
                }
                Some(AuthHeader::Bearer(token)) => request.bearer_auth(token),
            };
            let response = self.execute(&target.api_host, kind, request, url).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return check_status(response, url, target);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let unauthorized = || RegistryError::Unauthorized {
                host: target.api_host.clone(),
                repository: target.path.to_owned(),
                status: StatusCode::UNAUTHORIZED.as_u16(),
            };
            let Some(challenge) = challenge else {
                return Err(unauthorized());
            };
            if retried || (challenge == Challenge::Basic && target.login.is_none()) {
                return Err(unauthorized());
            }
            if let Challenge::Bearer { .. } = challenge {
                self.tokens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(target.api_host.clone(), scope(target.path)));
            }
            self.challenges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(target.api_host.clone(), challenge);
            retried = true;
        }
    }

    /// A bearer token for pulling `target.path`, cached until it expires.
    async fn token(
        &self,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, RegistryError> {
        let key = (target.api_host.clone(), scope(target.path));
        if let Some((token, expiry)) = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && *expiry > Instant::now()
        {
            return Ok(token.clone());
        }
        let mut query = vec![("scope", key.1.as_str())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http()?.get(realm).query(&query);
        if let Some(login) = target.login {
            request = request.basic_auth(&login.username, Some(&login.password));
        }
        let started = Instant::now();
        // The realm is usually another host; it is limited under the registry's host.
        let response = self
            .execute(&target.api_host, Kind::Token, request, realm)
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                host: target.api_host.clone(),
                repository: target.path.to_owned(),
                status: status.as_u16(),
            });
        }
        let response = check_status(response, realm, target)?;
        let body = read_body(response, realm).await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Parse {
                what: "token",
                url: realm.to_owned(),
                reason: e.to_string(),
            })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .ok_or_else(|| RegistryError::Parse {
                what: "token",
                url: realm.to_owned(),
                reason: "no token in the response".to_owned(),
            })?;
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        // Renew a little early so a token does not expire in flight.
        let expiry = started + lifetime.mul_f64(0.9);
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (token.clone(), expiry));
        Ok(token)
    }

    /// Runs one request under the host's limits, timing and counting it.
    async fn execute(
        &self,
        api_host: &str,
        kind: Kind,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let limiter = self.limiters.host(api_host);
        let _permit = limiter.acquire().await;
        let sent_at = Instant::now();
        self.counters.add(kind);
        let result = request.send().await;
        let elapsed = sent_at.elapsed().as_secs_f64();
        let success = matches!(&result, Ok(r) if r.status().is_success());
        self.metrics
            .client_fetch_duration
            .with_label_values(&[kind.label(), if success { "true" } else { "false" }])
            .observe(elapsed);
        match result {
            Ok(response) => {
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    limiter.back_off(sent_at, retry_after(response.headers()));
                }
                Ok(response)
            }
            Err(e) => Err(transport_error(&e, url)),
        }
    }

    pub(crate) fn count_error(&self, api_host: &str, error: &RegistryError) {
        self.metrics
            .errors
            .with_label_values(&[api_host, error.category()])
            .inc();
    }
}

enum AuthHeader {
    Basic(Login),
    Bearer(String),
}

fn scope(path: &str) -> String {
    format!("repository:{path}:pull")
}

/// Maps a non-success status to an error; 429 carries `Retry-After`.
fn check_status(
    response: reqwest::Response,
    url: &str,
    target: &Target<'_>,
) -> Result<reqwest::Response, RegistryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
            url: url.to_owned(),
            retry_after: retry_after(response.headers()),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
            host: target.api_host.clone(),
            repository: target.path.to_owned(),
            status: status.as_u16(),
        },
        _ => RegistryError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        },
    })
}

async fn read_body(response: reqwest::Response, url: &str) -> Result<Vec<u8>, RegistryError> {
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| transport_error(&e, url))
}

/// A failed request or body read: [`RegistryError::Timeout`] or [`RegistryError::Transport`].
fn transport_error(e: &reqwest::Error, url: &str) -> RegistryError {
    if e.is_timeout() {
        RegistryError::Timeout {
            url: url.to_owned(),
        }
    } else {
        RegistryError::Transport {
            url: url.to_owned(),
            reason: error_chain(e),
        }
    }
}

/// reqwest's message with its sources (`error sending request: … Connection refused`).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The `rel="next"` target of a `Link` header, made absolute against `base`
/// (`scheme://host`).
fn next_link(headers: &HeaderMap, base: &str) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            return Some(
                if target.starts_with("http://") || target.starts_with("https://") {
                    target.to_owned()
                } else if target.starts_with('/') {
                    format!("{base}{target}")
                } else {
                    format!("{base}/{target}")
                },
            );
        }
    }
    None
}

/// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for (key, value) in auth_params(params) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

/// `key="value", key2=value2` pairs; quoted values may contain commas.
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_owned(), &quoted[end + 1..]),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".to_owned(),
                service: Some("registry.docker.io".to_owned()),
            })
        );
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "realm is required"
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn link_next_is_made_absolute() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/a/b/tags/list?last=t2&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&headers, "http://h:5000").as_deref(),
            Some("http://h:5000/v2/a/b/tags/list?last=t2&n=2")
        );
        let mut other = HeaderMap::new();
        other.insert(
            LINK,
            HeaderValue::from_static(r#"<https://x/y>; rel="prev""#),
        );
        assert_eq!(next_link(&other, "http://h"), None);
    }
}

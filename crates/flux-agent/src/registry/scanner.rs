//! The scanner: which repositories are tracked, when each is due, one repository's scan round
//! (tag list → digest check when due → manifests and config blobs of new or changed tags), and
//! the loop that runs rounds. Flux v1's cache warmer (`pkg/registry/cache/warming.go`,
//! `repocachemanager.go`) with the refresh rule described in the `registry` module docs.
//!
//! Repositories are scanned one at a time (Flux v1's backlog), the fetches of one repository
//! concurrently up to `--registry-burst`. Notified repositories go first, also in the middle of
//! a long round. A failed round is recorded (error, `flux_registry_failing_repositories`,
//! `flux_registry_fetch_errors_total`) and the repository is retried with exponential backoff
//! (poll interval × 2^(failures−1), at most 30 min, at least `Retry-After`); what it fetched
//! successfully is kept. A 429 stops the repository's round at once.
//!
//! Does not decide what to track, and does not log credentials.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use globset::{Glob, GlobSet, GlobSetBuilder};
use oci_client::manifest::{OciImageIndex, OciManifest};
use serde::Deserialize;
use tokio::time::Instant;

use super::cache::{self, RepoRecord, RoundOutcome, TagRecord};
use super::client::{Client, Target};
use super::credentials::RegistryCredentials;
use super::metrics::RegistryMetrics;
use super::{RegistryConfig, RegistryError, TagInfo};

/// Longest wait before a failing repository is tried again.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// During a long round, the cache file is written at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(30);
/// How often [`Scanner::run`] looks whether something became due.
const RUN_TICK: Duration = Duration::from_secs(5);
/// Labels that override the creation time for repositories matching `--registry-use-labels`.
const TIME_LABELS: [&str; 2] = [
    "org.opencontainers.image.created",
    "org.label-schema.build-date",
];

/// Requests made, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Tag-list pages (`GET /v2/<name>/tags/list`).
    pub tag_lists: u64,
    /// Manifest requests, `GET` and `HEAD`, of tags and of the platform images in indexes.
    pub manifests: u64,
    /// Config blob requests.
    pub blobs: u64,
    /// Token requests to a `Bearer` realm.
    pub tokens: u64,
}

impl RequestCounts {
    /// All requests.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.tag_lists + self.manifests + self.blobs + self.tokens
    }

    fn since(self, before: Self) -> Self {
        Self {
            tag_lists: self.tag_lists - before.tag_lists,
            manifests: self.manifests - before.manifests,
            blobs: self.blobs - before.blobs,
            tokens: self.tokens - before.tokens,
        }
    }
}

/// What one call of [`Scanner::scan_due`] did.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Repositories scanned, in the order they were scanned (canonical names).
    pub scanned: Vec<String>,
    /// Repositories whose tags or digests changed (first fetches included), in scan order.
    pub changed: Vec<String>,
    /// Repositories whose round failed, with the first error of the round.
    pub errors: Vec<(String, RegistryError)>,
    /// Requests made during the call.
    pub requests: RequestCounts,
    /// Wall time of the call.
    pub duration: Duration,
}

/// A tracked repository.
#[derive(Clone, Debug)]
struct Tracked {
    host: String,
    path: String,
    credentials: RegistryCredentials,
}

/// In-memory schedule of a repository (not persisted: a restart lists everything once).
#[derive(Clone, Debug, Default)]
struct Runtime {
    listed: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    check_next: bool,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    tracked: BTreeMap<String, Tracked>,
    records: BTreeMap<String, RepoRecord>,
    runtime: HashMap<String, Runtime>,
    priority: VecDeque<String>,
    dirty: bool,
}

/// The platform picked from image indexes.
#[derive(Clone, Debug)]
struct PlatformSpec {
    os: String,
    arch: String,
    variant: Option<String>,
}

impl PlatformSpec {
    fn parse(text: &str) -> Result<Self, RegistryError> {
        let parts: Vec<&str> = text.split('/').collect();
        let invalid = || RegistryError::InvalidConfig {
            flag: "--registry-platform",
            value: text.to_owned(),
            reason: "expected os/arch or os/arch/variant".to_owned(),
        };
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).to_owned(),
                arch: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: (*os).to_owned(),
                    arch: (*arch).to_owned(),
                    variant: Some((*variant).to_owned()),
                })
            }
            _ => Err(invalid()),
        }
    }

    fn pick<'a>(&self, index: &'a OciImageIndex) -> Option<&'a str> {
        index
            .manifests
            .iter()
            .find(|entry| {
                entry.platform.as_ref().is_some_and(|p| {
                    p.os.to_string() == self.os
                        && p.architecture.to_string() == self.arch
                        && self
                            .variant
                            .as_ref()
                            .is_none_or(|v| p.variant.as_deref() == Some(v.as_str()))
                })
            })
            .map(|entry| entry.digest.as_str())
    }

    fn describe(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }
}

struct Inner {
    config: RegistryConfig,
    include: GlobSet,
    exclude: GlobSet,
    use_labels: GlobSet,
    platform: PlatformSpec,
    default_credentials: RegistryCredentials,
    client: Client,
    metrics: RegistryMetrics,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    scan_lock: tokio::sync::Mutex<()>,
}

/// The registry scanner: tracked repositories, their cached tags, and the scan rounds.
/// Cheap to clone (one `Arc`); all methods take `&self`.
#[derive(Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (repositories, tags) = self.counts();
        f.debug_struct("Scanner")
            .field("repositories", &repositories)
            .field("tags", &tags)
            .finish_non_exhaustive()
    }
}

fn glob_set(flag: &'static str, patterns: &[String]) -> Result<GlobSet, RegistryError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // Flux v1 spelled Docker Hub `index.docker.io`; canonical names here say `docker.io`.
        let pattern = normalise_glob(pattern);
        let glob = Glob::new(&pattern).map_err(|e| RegistryError::InvalidConfig {
            flag,
            value: pattern.clone(),
            reason: e.to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| RegistryError::InvalidConfig {
        flag,
        value: patterns.join(","),
        reason: e.to_string(),
    })
}

/// `index.docker.io/…` and `registry-1.docker.io/…` → `docker.io/…`.
fn normalise_glob(pattern: &str) -> String {
    for alias in ["index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = pattern.strip_prefix(alias) {
            return format!("{}/{rest}", model::image::DOCKER_HUB);
        }
    }
    pattern.to_owned()
}

/// A repository's outcome in a round.
struct RoundResult {
    changed: bool,
    error: Option<RegistryError>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ConfigSection>,
    #[serde(default)]
    container_config: Option<ConfigSection>,
}

#[derive(Deserialize)]
struct ConfigSection {
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

impl Scanner {
    /// Builds the scanner: compiles the globs, reads `--docker-config`, loads the cache file
    /// from `config.cache_dir` (a missing or corrupt file gives an empty cache) and registers
    /// the metrics in `metrics`. Installs rustls' `ring` provider as the process default when
    /// none is installed yet.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidConfig`] for a glob or platform that does not parse, or metrics
    /// already registered; [`RegistryError::Credentials`] when the Docker config file cannot
    /// be read; [`RegistryError::Client`] when the HTTP client cannot be built.
    pub fn new(
        config: RegistryConfig,
        metrics: &prometheus::Registry,
    ) -> Result<Scanner, RegistryError> {
        let include = glob_set("--registry-include-image", &config.include_images)?;
        let exclude = glob_set("--registry-exclude-image", &config.exclude_images)?;
        let use_labels = glob_set("--registry-use-labels", &config.use_labels)?;
        let platform = PlatformSpec::parse(&config.platform)?;
        let default_credentials = match &config.docker_config {
            Some(path) => RegistryCredentials::from_docker_config_file(path)?,
            None => RegistryCredentials::new(),
        };
        let metrics = RegistryMetrics::register(metrics)?;
        let client = Client::new(
            config.timeout,
            &config.insecure_hosts,
            config.rps,
            config.burst,
            metrics.clone(),
        )?;
        let records = cache::load(&config.cache_dir);
        let state = State {
            records,
            ..State::default()
        };
        Ok(Scanner {
            inner: Arc::new(Inner {
                config,
                include,
                exclude,
                use_labels,
                platform,
                default_credentials,
                client,
                metrics,
                state: Mutex::new(state),
                wake: tokio::sync::Notify::new(),
                scan_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `--registry-include-image` / `--registry-exclude-image` let `repository`
    /// (a canonical name) be scanned; exclusion wins.
    #[must_use]
    pub fn is_included(&self, repository: &str) -> bool {
        (self.inner.config.include_images.is_empty() || self.inner.include.is_match(repository))
            && !self.inner.exclude.is_match(repository)
    }

    /// Replaces the set of tracked repositories. Each entry is a canonical repository name
    /// without tag (`model::image::ImageRef::canonical_name()`, e.g.
    /// `index.docker.io/library/nginx`) with the credentials found for it (pull secrets of the
    /// workloads using it, merged); `--docker-config` logins apply under those. Names the
    /// include/exclude globs reject, and names that do not parse, are skipped (the latter with
    /// a warning); duplicates have their credentials merged. Newly tracked repositories without
    /// a cached record are due at once.
    pub fn track(&self, wanted: Vec<(String, RegistryCredentials)>) {
        let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
        for (name, credentials) in wanted {
            let image = match model::image::ImageRef::parse(&name) {
                Ok(image) => image,
                Err(e) => {
                    tracing::warn!(repository = %name, error = %e, "not scanning an unparsable image name");
                    continue;
                }
            };
            let canonical = image.canonical_name();
            if !self.is_included(&canonical) {
                continue;
            }
            let host = image.canonical_registry();
            let path = canonical
                .strip_prefix(&format!("{host}/"))
                .unwrap_or(image.path())
                .to_owned();
            tracked
                .entry(canonical)
                .and_modify(|t| t.credentials.merge(&credentials))
                .or_insert(Tracked {
                    host,
                    path,
                    credentials,
                });
        }
        let mut state = self.state();
        state.tracked = tracked;
        let tracked_names: HashSet<String> = state.tracked.keys().cloned().collect();
        state.runtime.retain(|name, _| tracked_names.contains(name));
        state.priority.retain(|name| tracked_names.contains(name));
        self.update_gauges(&state);
        drop(state);
        self.inner.wake.notify_one();
    }

    /// The tags of `repository` (canonical name) as last fetched, sorted by tag, without tags
    /// excluded for want of a `--registry-platform` image. `None` when the repository was never
    /// listed successfully (now or in a cache file from an earlier run).
    #[must_use]
    pub fn tags(&self, repository: &str) -> Option<Vec<TagInfo>> {
        self.state().records.get(repository).map(RepoRecord::infos)
    }

    /// The error of the repository's last round, if it failed (for status and `list-images`).
    #[must_use]
    pub fn last_error(&self, repository: &str) -> Option<String> {
        self.state()
            .runtime
            .get(repository)
            .and_then(|r| r.last_error.clone())
    }

    /// `POST /api/flux/v11/notify` with `{"Kind":"image"}`: the repository (canonical name)
    /// goes to the front of the scan queue, ignoring its backoff, and its next round also
    /// re-checks the digests of known tags (a push may have moved one). Unknown repositories
    /// are ignored.
    pub fn notify(&self, repository: &str) {
        let mut state = self.state();
        if !state.tracked.contains_key(repository) {
            return;
        }
        if !state.priority.iter().any(|r| r == repository) {
            state.priority.push_back(repository.to_owned());
        }
        let runtime = state.runtime.entry(repository.to_owned()).or_default();
        runtime.check_next = true;
        runtime.retry_at = None;
        drop(state);
        self.inner.wake.notify_one();
    }

    /// The current request-rate limit of a registry host (canonical spelling, `host[:port]`),
    /// in requests per second: `--registry-rps`, or less after 429s.
    #[must_use]
    pub fn rate_limit(&self, host: &str) -> f64 {
        self.inner
            .client
            .rate(&Target::new(host, "", None).api_host)
    }

    /// `(tracked repositories, known tags of those)`.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state();
        counts(&state)
    }

    fn update_gauges(&self, state: &State) {
        let (repositories, tags) = counts(state);
        let failing = state.runtime.values().filter(|r| r.failures > 0).count();
        let metrics = &self.inner.metrics;
        metrics
            .repositories
            .set(i64::try_from(repositories).unwrap_or(i64::MAX));
        metrics.tags.set(i64::try_from(tags).unwrap_or(i64::MAX));
        metrics
            .failing
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
    }

    fn is_due(&self, runtime: Option<&Runtime>, now: Instant) -> bool {
        let Some(runtime) = runtime else { return true };
        if let Some(retry_at) = runtime.retry_at {
            return retry_at <= now;
        }
        match runtime.listed {
            None => true,
            Some(listed) => {
                now.saturating_duration_since(listed) >= self.inner.config.poll_interval
            }
        }
    }

    /// The due repositories, in order: never listed by this process first (those without a
    /// cache record before those with one), then by oldest listing. Notified ones are not
    /// included (they are taken from the priority queue).
    fn due(&self, state: &State, now: Instant) -> Vec<String> {
        let mut due: Vec<(u8, Option<Instant>, &String)> = state
            .tracked
            .keys()
            .filter(|name| !state.priority.contains(name))
            .filter_map(|name| {
                let runtime = state.runtime.get(name);
                if !self.is_due(runtime, now) {
                    return None;
                }
                let listed = runtime.and_then(|r| r.listed);
                let rank = match (listed, state.records.contains_key(name)) {
                    (None, false) => 0,
                    (None, true) => 1,
                    (Some(_), _) => 2,
                };
                Some((rank, listed, name))
            })
            .collect();
        due.sort();
        due.into_iter().map(|(_, _, name)| name.clone()).collect()
    }

    /// When the next repository becomes due, if any is tracked.
    fn next_due(&self) -> Option<Instant> {
        let state = self.state();
        if !state.priority.is_empty() {
            return Some(Instant::now());
        }
        state
            .tracked
            .keys()
            .map(|name| match state.runtime.get(name) {
                None => Instant::now(),
                Some(r) => match (r.retry_at, r.listed) {
                    (Some(retry_at), _) => retry_at,
                    (None, None) => Instant::now(),
                    (None, Some(listed)) => listed + self.inner.config.poll_interval,
                },
            })
            .min()
    }

    /// Scans every repository that is due now: notified ones first (also those notified while
    /// this runs), then never-listed ones, then those whose tag list is older than the poll
    /// interval or whose failure backoff has passed. One repository at a time; the cache file
    /// is written at the end (and every 30 s of a long call). Concurrent calls run one after
    /// the other. Never fails as a whole: per-repository errors are in the report.
    pub async fn scan_due(&self) -> ScanReport {
        let _round = self.inner.scan_lock.lock().await;
        let started = Instant::now();
        let before = self.request_counts();
        let mut queue: VecDeque<String> = {
            let state = self.state();
            self.due(&state, started).into()
        };
        let mut report = ScanReport::default();
        let mut scanned: HashSet<String> = HashSet::new();
        let mut last_save = Instant::now();
        loop {
            let next = {
                let mut state = self.state();
                let mut next = None;
                while let Some(name) = state.priority.pop_front() {
                    if state.tracked.contains_key(&name) {
                        next = Some(name);
                        break;
                    }
                }
                if next.is_none() {
                    while let Some(name) = queue.pop_front() {
                        if !scanned.contains(&name) && state.tracked.contains_key(&name) {
                            next = Some(name);
                            break;
                        }
                    }
                }
                next
            };
            let Some(name) = next else { break };
            let result = self.scan_repository(&name).await;
            scanned.insert(name.clone());
            if result.changed {
                report.changed.push(name.clone());
            }
            if let Some(error) = result.error {
                report.errors.push((name.clone(), error));
            }
            report.scanned.push(name);
            if last_save.elapsed() >= SAVE_EVERY {
                self.save().await;
                last_save = Instant::now();
            }
        }
        self.save().await;
        report.requests = self.request_counts().since(before);
        report.duration = started.elapsed();
        report
    }

    /// Lists every tracked repository now, whether due or not (digest checks only where their
    /// schedule says so); for benchmarks and for `fluxctl`-triggered refreshes.
    pub async fn scan_all(&self) -> ScanReport {
        {
            let mut state = self.state();
            for runtime in state.runtime.values_mut() {
                runtime.listed = None;
                runtime.retry_at = None;
            }
        }
        self.scan_due().await
    }

    /// Runs rounds until `shutdown` completes: whenever a repository is due (checked every
    /// 5 s, and at once on [`Scanner::notify`] or [`Scanner::track`]), runs
    /// [`Scanner::scan_due`] and sends the changed repositories, if any, on `changed`. Stops
    /// early when the receiver is gone.
    pub async fn run(
        self,
        changed: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let next_due = self.next_due();
            let now = Instant::now();
            let wait = next_due.map_or(RUN_TICK, |due| {
                due.saturating_duration_since(now).min(RUN_TICK)
            });
            if !wait.is_zero() {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let report = tokio::select! {
                () = &mut shutdown => return,
                report = self.scan_due() => report,
            };
            for (repository, error) in &report.errors {
                tracing::warn!(%repository, error = %error, "registry scan failed");
            }
            if !report.scanned.is_empty() {
                tracing::debug!(
                    scanned = report.scanned.len(),
                    changed = report.changed.len(),
                    requests = report.requests.total(),
                    "registry scan round done"
                );
            }
            if !report.changed.is_empty() && changed.send(report.changed).is_err() {
                return;
            }
        }
    }

    fn request_counts(&self) -> RequestCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.client.counters;
        RequestCounts {
            tag_lists: c.tag_lists.load(Relaxed),
            manifests: c.manifests.load(Relaxed),
            blobs: c.blobs.load(Relaxed),
            tokens: c.tokens.load(Relaxed),
        }
    }

    /// Writes the cache file if something changed since the last write. Records of
    /// repositories nobody tracks are kept for 7 days after their last listing.
    async fn save(&self) {
        let bytes = {
            let mut state = self.state();
            if !state.dirty {
                return;
            }
            state.dirty = false;
            let keep_after =
                cache::unix_secs(SystemTime::now()).saturating_sub(cache::UNTRACKED_KEEP.as_secs());
            let state = &*state;
            cache::serialise(state.records.iter().filter(|(name, record)| {
                state.tracked.contains_key(*name) || record.listed_at >= keep_after
            }))
        };
        let dir = self.inner.config.cache_dir.clone();
        let result = tokio::task::spawn_blocking(move || cache::store(&dir, &bytes)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "failed to write the registry cache");
                self.state().dirty = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to write the registry cache");
                self.state().dirty = true;
            }
        }
    }

    /// One repository's round. Never holds the state lock across a request.
    async fn scan_repository(&self, name: &str) -> RoundResult {
        let started = Instant::now();
        let now_wall = SystemTime::now();
        let snapshot = {
            let state = self.state();
            state.tracked.get(name).cloned().map(|tracked| {
                let record = state.records.get(name).cloned();
                let check_next = state.runtime.get(name).is_some_and(|r| r.check_next);
                (tracked, record, check_next)
            })
        };
        let Some((tracked, record, check_next)) = snapshot else {
            return RoundResult {
                changed: false,
                error: None,
            };
        };
        let login = tracked
            .credentials
            .login(&tracked.host)
            .or_else(|| self.inner.default_credentials.login(&tracked.host));
        let target = Target::new(&tracked.host, &tracked.path, login);
        let outcome = self
            .fetch_round(name, &target, record.as_ref(), check_next, now_wall)
            .await;
        let success = outcome.error.is_none();
        self.inner
            .metrics
            .fetch_duration
            .with_label_values(&[if success { "true" } else { "false" }])
            .observe(started.elapsed().as_secs_f64());
        if let Some(error) = &outcome.error {
            self.inner.client.count_error(&target.api_host, error);
        } else {
            self.inner.client.recover(&target.api_host);
        }
        outcome
    }

    async fn fetch_round(
        &self,
        name: &str,
        target: &Target<'_>,
        record: Option<&RepoRecord>,
        check_next: bool,
        now_wall: SystemTime,
    ) -> RoundResult {
        let listed = match self.inner.client.list_tags(target).await {
            Ok(tags) => tags,
            Err(error) => return self.fail(name, error),
        };
        let burst = self.inner.config.burst.max(1) as usize;
        let empty = BTreeMap::new();
        let known = record.map_or(&empty, |r| &r.tags);
        let first = record.is_none();
        let check = !first && (check_next || record.is_some_and(|r| r.check_due(now_wall)));

        let mut first_error: Option<RegistryError> = None;
        let mut vanished: BTreeSet<String> = BTreeSet::new();
        let mut to_fetch: Vec<String> = listed
            .iter()
            .filter(|t| !known.contains_key(*t))
            .cloned()
            .collect();
        let new_tags = !to_fetch.is_empty();
        let mut digest_changed = false;
        let mut failed_checks = false;

        if check {
            let still_listed: Vec<&String> =
                listed.iter().filter(|t| known.contains_key(*t)).collect();
            // Futures built in a loop, not by a closure in `map`: keeps the round `Send` for
            // `tokio::spawn` (rustc's higher-ranked closure limitation).
            let mut head_futures = Vec::with_capacity(still_listed.len());
            for tag in still_listed {
                let client = &self.inner.client;
                head_futures.push(async move { (tag, client.manifest(target, tag, true).await) });
            }
            let mut heads = futures::stream::iter(head_futures).buffer_unordered(burst);
            while let Some((tag, result)) = heads.next().await {
                match result {
                    Ok(manifest) => {
                        if known.get(tag).is_some_and(|r| r.digest != manifest.digest) {
                            digest_changed = true;
                            to_fetch.push(tag.clone());
                        }
                    }
                    Err(RegistryError::Status { status: 404, .. }) => {
                        vanished.insert(tag.clone());
                    }
                    // No digest header: a GET tells.
                    Err(RegistryError::Parse { .. }) => to_fetch.push(tag.clone()),
                    Err(error @ RegistryError::RateLimited { .. }) => {
                        drop(heads);
                        return self.fail(name, error);
                    }
                    Err(error) => {
                        failed_checks = true;
                        first_error.get_or_insert(error);
                    }
                }
            }
        }

        // Known digests: a new tag pointing at a known image needs no config blob.
        let by_digest: HashMap<&str, &TagRecord> =
            known.values().map(|r| (r.digest.as_str(), r)).collect();
        let use_labels = self.inner.use_labels.is_match(name);
        let mut fetched: HashMap<String, TagRecord> = HashMap::new();
        {
            let by_digest = &by_digest;
            let mut fetch_futures = Vec::with_capacity(to_fetch.len());
            for tag in to_fetch {
                fetch_futures.push(async move {
                    let result = self.fetch_tag(target, &tag, by_digest, use_labels).await;
                    (tag, result)
                });
            }
            let mut fetches = futures::stream::iter(fetch_futures).buffer_unordered(burst);
            while let Some((tag, result)) = fetches.next().await {
                match result {
                    Ok(Some(tag_record)) => {
                        fetched.insert(tag, tag_record);
                    }
                    Ok(None) => {
                        vanished.insert(tag);
                    }
                    Err(error @ RegistryError::RateLimited { .. }) => {
                        drop(fetches);
                        return self.fail(name, error);
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }

        // New tag map: fetched ones, else what was known, in listing order; failed new tags
        // stay out until a later round fetches them.
        let mut tags: BTreeMap<String, TagRecord> = BTreeMap::new();
        for tag in &listed {
            if vanished.contains(tag) {
                continue;
            }
            if let Some(r) = fetched.remove(tag) {
                tags.insert(tag.clone(), r);
            } else if let Some(r) = known.get(tag) {
                tags.insert(tag.clone(), r.clone());
            }
        }
        let changed = first || tags != *known;
        let outcome = RoundOutcome {
            first,
            new_tags,
            checked: check && !failed_checks,
            digest_changed,
        };
        let mut state = self.state();
        let entry = state.records.entry(name.to_owned()).or_default();
        entry.tags = tags;
        entry.after_check(outcome, now_wall);
        state.dirty = true;
        let runtime = state.runtime.entry(name.to_owned()).or_default();
        runtime.listed = Some(Instant::now());
        match first_error {
            None => {
                runtime.check_next = false;
                runtime.failures = 0;
                runtime.retry_at = None;
                runtime.last_error = None;
                self.update_gauges(&state);
                RoundResult {
                    changed,
                    error: None,
                }
            }
            Some(error) => {
                drop(state);
                let mut result = self.fail(name, error);
                result.changed = changed;
                result
            }
        }
    }

    /// Records a failed round and schedules the retry.
    fn fail(&self, name: &str, error: RegistryError) -> RoundResult {
        let poll = self.inner.config.poll_interval;
        let mut state = self.state();
        let runtime = state.runtime.entry(name.to_owned()).or_default();
        runtime.failures = runtime.failures.saturating_add(1);
        let exponent = runtime.failures.saturating_sub(1).min(16);
        let mut backoff = poll.saturating_mul(1 << exponent).min(MAX_FAILURE_BACKOFF);
        if let RegistryError::RateLimited {
            retry_after: Some(retry_after),
            ..
        } = &error
        {
            backoff = backoff.max(*retry_after);
        }
        runtime.retry_at = Some(Instant::now() + backoff);
        runtime.last_error = Some(error.to_string());
        self.update_gauges(&state);
        tracing::debug!(repository = %name, error = %error, retry_in = ?backoff, "registry round failed");
        RoundResult {
            changed: false,
            error: Some(error),
        }
    }

    /// Fetches one tag: its manifest (and the platform's manifest of an index), then the
    /// config blob for the creation time. `Ok(None)` when the tag vanished (404).
    async fn fetch_tag(
        &self,
        target: &Target<'_>,
        tag: &str,
        by_digest: &HashMap<&str, &TagRecord>,
        use_labels: bool,
    ) -> Result<Option<TagRecord>, RegistryError> {
        let client = &self.inner.client;
        let manifest = match client.manifest(target, tag, false).await {
            Ok(m) => m,
            Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(known) = by_digest.get(manifest.digest.as_str()) {
            return Ok(Some((*known).clone()));
        }
        let url = format!("{}/manifests/{tag}", target.path);
        let parse_error = |e: serde_json::Error| RegistryError::Parse {
            what: "manifest",
            url: url.clone(),
            reason: e.to_string(),
        };
        let parsed: OciManifest = match serde_json::from_slice(&manifest.body) {
            Ok(parsed) => parsed,
            Err(e) => {
                // Schema 1 and unknown kinds: recorded as excluded, not retried every round.
                let reason = format!("unsupported manifest: {}", parse_error(e));
                return Ok(Some(TagRecord::new(manifest.digest, None, Some(reason))));
            }
        };
        let config_digest = match parsed {
            OciManifest::Image(image) => image.config.digest,
            OciManifest::ImageIndex(index) => {
                let Some(platform_digest) = self.inner.platform.pick(&index) else {
                    let reason = format!(
                        "no suitable manifest ({}) in manifestlist",
                        self.inner.platform.describe()
                    );
                    return Ok(Some(TagRecord::new(manifest.digest, None, Some(reason))));
                };
                let platform_manifest = client.manifest(target, platform_digest, false).await?;
                match serde_json::from_slice::<OciManifest>(&platform_manifest.body)
                    .map_err(parse_error)?
                {
                    OciManifest::Image(image) => image.config.digest,
                    OciManifest::ImageIndex(_) => {
                        let reason = "nested image index".to_owned();
                        return Ok(Some(TagRecord::new(manifest.digest, None, Some(reason))));
                    }
                }
            }
        };
        let blob = client.blob(target, &config_digest).await?;
        let created = match serde_json::from_slice::<ImageConfig>(&blob) {
            Ok(config) => created_time(&config, use_labels),
            // Not an image config (an artifact); no creation time.
            Err(_) => None,
        };
        Ok(Some(TagRecord::new(manifest.digest, created, None)))
    }
}

fn counts(state: &State) -> (usize, usize) {
    let tags = state
        .tracked
        .keys()
        .filter_map(|name| state.records.get(name))
        .map(|r| r.tags.values().filter(|t| t.excluded.is_none()).count())
        .sum();
    (state.tracked.len(), tags)
}

/// The config's `created`, or with `use_labels` the first timestamp label that parses.
fn created_time(config: &ImageConfig, use_labels: bool) -> Option<SystemTime> {
    if use_labels {
        let label = [&config.config, &config.container_config]
            .into_iter()
            .flatten()
            .filter_map(|section| section.labels.as_ref())
            .find_map(|labels| {
                TIME_LABELS
                    .iter()
                    .find_map(|key| labels.get(*key).and_then(|v| parse_rfc3339(v)))
            });
        if label.is_some() {
            return label;
        }
    }
    config.created.as_deref().and_then(parse_rfc3339)
}

/// RFC 3339 with `Z` or a numeric offset and up to nanosecond fractions. Times before the
/// Unix epoch (Go's zero time `0001-01-01T00:00:00Z`) count as unknown.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (base, offset_secs): (&str, i64) = if let Some(base) = text.strip_suffix(['Z', 'z']) {
        (base, 0)
    } else if text.len() > 6 {
        let (base, offset) = text.split_at(text.len() - 6);
        let sign = match offset.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = offset[1..].split_once(':')?;
        let h: i64 = h.parse().ok()?;
        let m: i64 = m.parse().ok()?;
        (base, sign * (h * 3600 + m * 60))
    } else {
        return None;
    };
    let utc_as_if = humantime::parse_rfc3339_weak(base).ok()?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let time = if offset_secs >= 0 {
        utc_as_if.checked_sub(shift)?
    } else {
        utc_as_if.checked_add(shift)?
    };
    (time > UNIX_EPOCH).then_some(time)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let z = parse_rfc3339("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(
            z.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_704_164_645
        );
        let plus = parse_rfc3339("2024-01-02T05:04:05+02:00").unwrap();
        assert_eq!(plus, z);
        let minus = parse_rfc3339("2024-01-01T22:04:05.5-05:00").unwrap();
        assert_eq!(minus, z + Duration::from_millis(500));
        let nanos = parse_rfc3339("2024-01-02T03:04:05.123456789Z").unwrap();
        assert_eq!(nanos, z + Duration::from_nanos(123_456_789));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn labels_override_created_only_when_asked() {
        let config: ImageConfig = serde_json::from_str(
            r#"{"created":"2020-01-01T00:00:00Z","config":{"Labels":{"org.opencontainers.image.created":"2023-06-01T00:00:00Z"}}}"#,
        )
        .unwrap();
        let created = parse_rfc3339("2020-01-01T00:00:00Z");
        let label = parse_rfc3339("2023-06-01T00:00:00Z");
        assert_eq!(created_time(&config, false), created);
        assert_eq!(created_time(&config, true), label);
        let legacy: ImageConfig = serde_json::from_str(
            r#"{"created":"2020-01-01T00:00:00Z","config":{"Labels":null},"container_config":{"Labels":{"org.label-schema.build-date":"2023-06-01T00:00:00Z"}}}"#,
        )
        .unwrap();
        assert_eq!(created_time(&legacy, true), label);
    }

    #[test]
    fn platform_spec_parses() {
        assert!(PlatformSpec::parse("linux/amd64").is_ok());
        assert_eq!(
            PlatformSpec::parse("linux/arm64/v8").unwrap().describe(),
            "linux/arm64/v8"
        );
        assert!(PlatformSpec::parse("linux").is_err());
    }
}

//! Git chart sources ([`GitCharts`]), Helm Operator's `pkg/chartsync/git.go`: a chart directory
//! in a git repository, named by a HelmRelease's `spec.chart.git` / `ref` / `path` (and
//! `secretRef`), or by a FluxHelmRelease's `chartGitPath` under the operator-wide `--git-url`,
//! `--git-branch` and `--git-charts-path` (the same [`GitChartSource`] once
//! [`model::FluxHelmRelease::to_release`] made it).
//!
//! - One bare mirror ([`git_mirror::Mirror`] in [`MirrorMode::AllRefs`]) per [`MirrorKey`]: the
//!   URL, plus `<namespace>/<secretName>` when a `secretRef` supplies credentials. Shared by
//!   every release with that key; each release resolves its own ref. Created lazily by the first
//!   [`GitCharts::fetch`], under `<work_dir>/mirrors/`.
//! - [`GitCharts::fetch`] resolves the ref in the mirror *as last fetched* and exports the chart
//!   directory into a temporary directory ([`GitChart`], removed on drop). It only goes to the
//!   network when the mirror has never been fetched (so a reconcile does not wait for a fetch,
//!   and a fresh operator does not fail with Helm Operator's "no existing git mirror found").
//! - [`GitCharts::start_polling`] fetches every mirror each `--git-poll-interval`;
//!   [`GitCharts::refresh_all`] does it now (`POST /api/v1/sync-git`). After every successful
//!   fetch, each ref a release asked for that now names another commit is announced as a
//!   [`MirrorMoved`] on a broadcast channel ([`GitCharts::subscribe`]), so the controller can
//!   re-enqueue the releases using it; [`GitCharts::touched`] tells whether the move touched
//!   `chart.path` (Helm Operator releases only then).
//! - [`GitCharts::retain`] drops the mirrors (and their directories) no release uses any more.
//!
//! All git work runs in `tokio::task::spawn_blocking`, each git operation bounded by
//! `--git-timeout`. Credentials are taken from the caller (who read the Secret) and handed to git
//! by `git_mirror` without ever reaching a URL, argv, log, error or `Debug` output; URLs are
//! shown through [`safe_url`]. What this module does not do: read Secrets, run
//! `helm dependency update` (the caller does, in the export), decide whether to release, or
//! cache exports between reconciles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use git_mirror::{GitConfig, GitError, Mirror, MirrorMode, MirrorReader};
use model::release::{GitChartSource, NamespacedName};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

pub use git_mirror::{Credentials, MirrorState, SshConfig, safe_url};

/// Default of `--git-poll-interval` (Helm Operator: 5m).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default of `--git-timeout` (Helm Operator: 20s), the limit of each git operation.
pub const DEFAULT_TIMEOUT: Duration = git_mirror::DEFAULT_TIMEOUT;
/// Default of `--git-default-ref` (Helm Operator: `master`), the ref of sources that name none.
pub const DEFAULT_REF: &str = "master";
/// The shortest poll interval [`GitCharts::start_polling`] uses.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How many [`MirrorMoved`] events a slow subscriber may fall behind before it misses some
/// (it then gets `RecvError::Lagged` and should re-enqueue every git release).
pub const MOVED_CAPACITY: usize = 1024;

/// Settings of [`GitCharts`], from the operator's flags.
#[derive(Clone, Debug)]
pub struct GitChartsConfig {
    /// Directory owned by [`GitCharts`]: mirrors under `mirrors/`, exports under `exports/`.
    /// Nothing else may write there; exports left from an earlier run are deleted at start.
    pub work_dir: PathBuf,
    /// `--git-poll-interval`: how often every mirror is fetched (at least [`MIN_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// `--git-timeout`: the limit of each git operation (clone, fetch, a read).
    pub timeout: Duration,
    /// `--git-default-ref`: the ref of sources whose ref is empty.
    pub default_ref: String,
    /// The ssh identity and known_hosts for `ssh://` and `user@host:path` remotes (Helm
    /// Operator: the key mounted at `/etc/fluxd/ssh`); `None` leaves ssh to its defaults.
    pub ssh: Option<SshConfig>,
}

impl GitChartsConfig {
    /// Helm Operator's defaults ([`DEFAULT_POLL_INTERVAL`], [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_REF`], no ssh settings) with `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        GitChartsConfig {
            work_dir: work_dir.into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            default_ref: DEFAULT_REF.to_owned(),
            ssh: None,
        }
    }
}

/// What identifies a shared mirror (Helm Operator `mirrorName`): the URL, and the Secret whose
/// credentials are used with it, if any. Displayed as `<safe url>` or
/// `<namespace>/<secret>/<safe url>`; neither `Display` nor `Debug` shows URL credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MirrorKey {
    url: String,
    secret: Option<NamespacedName>,
}

impl MirrorKey {
    /// The key of the mirror `source` is read from.
    pub fn of(source: &GitChartSource) -> MirrorKey {
        MirrorKey {
            url: source.url.clone(),
            secret: source.secret_ref.clone(),
        }
    }

    /// The repository URL, as the release gives it (may hold credentials: log [`safe_url`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Secret the credentials come from.
    pub fn secret(&self) -> Option<&NamespacedName> {
        self.secret.as_ref()
    }
}

impl fmt::Display for MirrorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(secret) = &self.secret {
            write!(f, "{}/{}/", secret.namespace, secret.name)?;
        }
        f.write_str(&safe_url(&self.url))
    }
}

impl fmt::Debug for MirrorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MirrorKey({self})")
    }
}

/// A ref some release asked for now names another commit (announced after a fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorMoved {
    /// The mirror; releases whose [`MirrorKey::of`] equals it (or, coarser, whose URL equals
    /// [`MirrorMoved::url`]) are affected.
    pub key: MirrorKey,
    /// The ref as the releases name it (after defaulting).
    pub git_ref: String,
    /// The commit it named before, or `None` when it could not be resolved before (new ref, or a
    /// mirror that was unreachable so far).
    pub from: Option<String>,
    /// The commit it names now (40 hex digits).
    pub to: String,
}

impl MirrorMoved {
    /// The repository URL (may hold credentials: log [`safe_url`] of it).
    pub fn url(&self) -> &str {
        self.key.url()
    }
}

/// A chart exported from git: the chart directory at one commit. The directory is a private
/// copy (the caller may run `helm dependency update` in it) and is removed on drop (right
/// there, synchronously: a chart directory is small).
#[derive(Debug)]
pub struct GitChart {
    revision: String,
    git_ref: String,
    chart_dir: PathBuf,
    _export: ExportDir,
}

impl GitChart {
    /// The commit id (40 hex digits): the chart *revision* Helm Operator records as
    /// `status.lastAttemptedRevision` / `revision` for git charts.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The ref that was resolved (the source's, or `--git-default-ref`).
    pub fn git_ref(&self) -> &str {
        &self.git_ref
    }

    /// The chart directory: the files of `chart.path` at [`GitChart::revision`]. Named after the
    /// last component of the path (`chart` for the repository root).
    pub fn chart_dir(&self) -> &Path {
        &self.chart_dir
    }
}

/// A directory removed (with its content) on drop.
#[derive(Debug)]
struct ExportDir(PathBuf);

impl Drop for ExportDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "failed to remove a chart export");
        }
    }
}

/// Errors of the git chart sources. URLs are credential-free.
#[derive(Debug, thiserror::Error)]
pub enum GitChartError {
    /// The source names no repository.
    #[error("failed to fetch the chart: no git repository URL is given")]
    NoUrl,
    /// The source has a `secretRef` but the caller gave no credentials for it.
    #[error("failed to fetch the chart from {url}: no credentials were read from secret {secret}")]
    MissingCredentials {
        /// Repository URL.
        url: String,
        /// `<namespace>/<name>` of the Secret.
        secret: String,
    },
    /// Credentials were given for a source without `secretRef` (they would be shared with every
    /// release using the URL).
    #[error("failed to fetch the chart from {url}: credentials given without a secretRef")]
    UnexpectedCredentials {
        /// Repository URL.
        url: String,
    },
    /// The mirror has never been fetched and its remote cannot be reached now.
    #[error("chart not ready: mirror of {url} is unreachable: {reason}")]
    Unreachable {
        /// Repository URL.
        url: String,
        /// Why (git's credential-free error).
        reason: String,
    },
    /// An operation that needs a fetched mirror was asked before the first [`GitCharts::fetch`].
    #[error("chart not ready: mirror of {url} has not been fetched yet")]
    NotFetched {
        /// Repository URL.
        url: String,
    },
    /// The ref is not a branch, tag or commit of the repository (as last fetched).
    #[error("failed to resolve ref '{git_ref}' of {url}: {source}")]
    UnknownRef {
        /// The ref.
        git_ref: String,
        /// Repository URL.
        url: String,
        /// The mirror's error.
        source: Box<GitError>,
    },
    /// The chart path could not be exported (missing, not a directory, unsafe, I/O).
    #[error("failed to export chart path '{path}' at {revision}: {source}")]
    Export {
        /// The chart path.
        path: String,
        /// The commit.
        revision: String,
        /// The mirror's error.
        source: Box<GitError>,
    },
    /// Two revisions could not be compared.
    #[error("failed to compare revisions {from} and {to} of {url}: {source}")]
    Compare {
        /// The older revision.
        from: String,
        /// The newer revision.
        to: String,
        /// Repository URL.
        url: String,
        /// The mirror's error.
        source: Box<GitError>,
    },
    /// The work directory could not be prepared.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A blocking git task panicked or was cancelled.
    #[error("failed to run a git task: it stopped unexpectedly")]
    Task,
}

/// The git chart sources of the operator: shared mirrors, exports, polling and change
/// notifications. Use it behind an [`Arc`] (polling needs one); all methods take `&self`.
pub struct GitCharts {
    config: GitChartsConfig,
    mirrors_dir: PathBuf,
    exports_dir: PathBuf,
    trash_dir: PathBuf,
    entries: Mutex<HashMap<MirrorKey, Arc<Entry>>>,
    moved: broadcast::Sender<MirrorMoved>,
    next_export: AtomicU64,
}

impl fmt::Debug for GitCharts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCharts")
            .field("config", &self.config)
            .field("mirrors", &self.states())
            .finish()
    }
}

/// One shared mirror.
struct Entry {
    key: MirrorKey,
    /// `<work_dir>/mirrors/<name>`; the bare repository is its `mirror.git`.
    dir: PathBuf,
    /// Held for network operations (blocking threads only).
    mirror: Mutex<Mirror>,
    /// Held briefly, from anywhere.
    status: Mutex<Status>,
}

struct Status {
    state: MirrorState,
    /// Set once a fetch succeeded.
    reader: Option<MirrorReader>,
    /// The credentials the next network operation uses (a rotated Secret replaces them).
    credentials: Option<Credentials>,
    /// Refs releases asked for → the commit last announced (or first seen) for them.
    refs: BTreeMap<String, Option<String>>,
    /// Completed fetch attempts, so callers queued behind a failed clone do not repeat it.
    attempts: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GitCharts {
    /// Git chart sources under `config.work_dir` (created; exports of an earlier run deleted).
    /// No mirror exists until the first [`GitCharts::fetch`]; mirrors of an earlier run are
    /// reused (fetched, not cloned again) when a release asks for the same key.
    ///
    /// # Errors
    ///
    /// [`GitChartError::Io`] when the directories cannot be created or cleaned.
    pub fn new(config: GitChartsConfig) -> Result<Self, GitChartError> {
        let mirrors_dir = config.work_dir.join("mirrors");
        let exports_dir = config.work_dir.join("exports");
        let trash_dir = config.work_dir.join("trash");
        for dir in [&exports_dir, &trash_dir] {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error("remove", dir, e));
                }
                _ => {}
            }
        }
        for dir in [&mirrors_dir, &exports_dir, &trash_dir] {
            fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
        }
        let (moved, _) = broadcast::channel(MOVED_CAPACITY);
        Ok(GitCharts {
            config,
            mirrors_dir,
            exports_dir,
            trash_dir,
            entries: Mutex::new(HashMap::new()),
            moved,
            next_export: AtomicU64::new(0),
        })
    }

    /// The settings.
    pub fn config(&self) -> &GitChartsConfig {
        &self.config
    }

    /// Change notifications: one [`MirrorMoved`] per ref (asked for by some
    /// [`GitCharts::fetch`]) that names another commit after a fetch.
    pub fn subscribe(&self) -> broadcast::Receiver<MirrorMoved> {
        self.moved.subscribe()
    }

    /// The ref `source` is read at: its own, or `--git-default-ref` when empty.
    pub fn effective_ref(&self, source: &GitChartSource) -> String {
        if source.git_ref.trim().is_empty() {
            self.config.default_ref.clone()
        } else {
            source.git_ref.clone()
        }
    }

    /// The chart of `source` at the commit its ref names in the mirror as last fetched: the
    /// commit id and a private copy of the `path` directory. `credentials` are the Secret's
    /// `username`/`password` when `source.secret_ref` is set (used for http(s) URLs).
    ///
    /// Goes to the network only when the mirror was never fetched (first use): then it clones,
    /// bounded by `--git-timeout`. Callers waiting behind a failed clone get its error instead
    /// of cloning again. A mirror that was fetched once keeps serving what it has while its
    /// remote is unreachable (see [`GitCharts::state`]).
    ///
    /// # Errors
    ///
    /// [`GitChartError::NoUrl`], [`GitChartError::MissingCredentials`],
    /// [`GitChartError::UnexpectedCredentials`], [`GitChartError::Unreachable`] (first clone
    /// failed), [`GitChartError::UnknownRef`], [`GitChartError::Export`] (for instance a path
    /// that is not a directory at that commit), [`GitChartError::Task`].
    pub async fn fetch(
        &self,
        source: &GitChartSource,
        credentials: Option<&Credentials>,
    ) -> Result<GitChart, GitChartError> {
        let key = check_source(source, credentials)?;
        let git_ref = self.effective_ref(source);
        let entry = self.entry(&key, credentials);
        let n = self.next_export.fetch_add(1, Ordering::Relaxed);
        let export = ExportDir(self.exports_dir.join(n.to_string()));
        let chart_dir = export.0.join(chart_dir_name(&source.path));
        let (path, target, resolved_ref) =
            (source.path.clone(), chart_dir.clone(), git_ref.clone());
        let moved = self.moved.clone();
        // The export directory lives in the task: if this future is dropped, the task still
        // finishes and its result (with the directory) is dropped there, after the writing.
        let (revision, export) = tokio::task::spawn_blocking(move || {
            let reader = match entry.reader_or_clone(&moved) {
                Ok(reader) => reader,
                Err(e) => {
                    // Announced once a later fetch reaches the remote.
                    entry.track(&resolved_ref, None);
                    return Err(e);
                }
            };
            let url = safe_url(&entry.key.url);
            let revision = match reader.resolve(&resolved_ref) {
                Ok(revision) => revision,
                Err(source) => {
                    entry.track(&resolved_ref, None);
                    return Err(GitChartError::UnknownRef {
                        git_ref: resolved_ref,
                        url,
                        source: Box::new(source),
                    });
                }
            };
            entry.track(&resolved_ref, Some(&revision));
            reader
                .export_path(&revision, &path, &target)
                .map_err(|source| GitChartError::Export {
                    path,
                    revision: revision.clone(),
                    source: Box::new(source),
                })?;
            Ok((revision, export))
        })
        .await
        .map_err(|_| GitChartError::Task)??;
        Ok(GitChart {
            revision,
            git_ref,
            chart_dir,
            _export: export,
        })
    }

    /// The commit `source`'s ref names in its mirror now (cloning the mirror first if needed),
    /// without exporting anything: what a reconcile needs to decide that a release is in sync.
    ///
    /// # Errors
    ///
    /// As [`GitCharts::fetch`], except [`GitChartError::Export`].
    pub async fn revision(
        &self,
        source: &GitChartSource,
        credentials: Option<&Credentials>,
    ) -> Result<String, GitChartError> {
        let key = check_source(source, credentials)?;
        let git_ref = self.effective_ref(source);
        let entry = self.entry(&key, credentials);
        let moved = self.moved.clone();
        tokio::task::spawn_blocking(move || {
            let reader = match entry.reader_or_clone(&moved) {
                Ok(reader) => reader,
                Err(e) => {
                    entry.track(&git_ref, None);
                    return Err(e);
                }
            };
            match reader.resolve(&git_ref) {
                Ok(revision) => {
                    entry.track(&git_ref, Some(&revision));
                    Ok(revision)
                }
                Err(source) => {
                    entry.track(&git_ref, None);
                    Err(GitChartError::UnknownRef {
                        url: safe_url(&entry.key.url),
                        git_ref,
                        source: Box::new(source),
                    })
                }
            }
        })
        .await
        .map_err(|_| GitChartError::Task)?
    }

    /// Whether any file under `source.path` differs between the commits `from` and `to` in the
    /// mirror of `source` (Helm Operator: a new commit triggers a release only if it touched
    /// `chart.path`). Local: no fetch.
    ///
    /// # Errors
    ///
    /// [`GitChartError::NotFetched`] before the mirror was fetched, [`GitChartError::Compare`]
    /// when a revision is unknown to the mirror (for instance a `lastAttemptedRevision` that a
    /// force-push removed; callers should then treat the chart as changed), or
    /// [`GitChartError::Task`].
    pub async fn touched(
        &self,
        source: &GitChartSource,
        from: &str,
        to: &str,
    ) -> Result<bool, GitChartError> {
        let key = MirrorKey::of(source);
        let not_fetched = || GitChartError::NotFetched {
            url: safe_url(&key.url),
        };
        let entry = lock(&self.entries)
            .get(&key)
            .cloned()
            .ok_or_else(not_fetched)?;
        let reader = lock(&entry.status).reader.clone().ok_or_else(not_fetched)?;
        let (from, to, path) = (from.to_owned(), to.to_owned(), source.path.clone());
        tokio::task::spawn_blocking(move || {
            reader
                .touched(&from, &to, &path)
                .map_err(|source| GitChartError::Compare {
                    url: reader.safe_url().to_owned(),
                    from,
                    to,
                    source: Box::new(source),
                })
        })
        .await
        .map_err(|_| GitChartError::Task)?
    }

    /// Fetches the mirror of `key` now and announces moved refs (for example when a release's
    /// `spec.chart` changed, before it is enqueued, as Helm Operator did). Nothing happens for a
    /// key without a mirror.
    ///
    /// # Errors
    ///
    /// [`GitChartError::Unreachable`] when the fetch failed, or [`GitChartError::Task`].
    pub async fn refresh(&self, key: &MirrorKey) -> Result<(), GitChartError> {
        let Some(entry) = lock(&self.entries).get(key).cloned() else {
            return Ok(());
        };
        let moved = self.moved.clone();
        tokio::task::spawn_blocking(move || entry.refresh(&moved))
            .await
            .map_err(|_| GitChartError::Task)?
    }

    /// Fetches every mirror now, concurrently, and announces moved refs; what the poll task
    /// does every `--git-poll-interval` and `POST /api/v1/sync-git` asks for. Returns each
    /// mirror's outcome (failures are also kept as [`MirrorState::Unreachable`]).
    pub async fn refresh_all(&self) -> Vec<(MirrorKey, Result<(), GitChartError>)> {
        let entries: Vec<Arc<Entry>> = lock(&self.entries).values().cloned().collect();
        let tasks = entries.into_iter().map(|entry| {
            let moved = self.moved.clone();
            let key = entry.key.clone();
            async move {
                let result = tokio::task::spawn_blocking(move || entry.refresh(&moved))
                    .await
                    .map_err(|_| GitChartError::Task)
                    .and_then(|r| r);
                (key, result)
            }
        });
        futures::future::join_all(tasks).await
    }

    /// Starts the background poll: every `poll_interval` (first after one interval) all mirrors
    /// are refreshed ([`GitCharts::refresh_all`]); failures are logged. The task ends by itself
    /// once the last `Arc` of `self` is dropped, or when the handle is aborted.
    pub fn start_polling(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let period = self.config.poll_interval.max(MIN_POLL_INTERVAL);
        let charts = Arc::downgrade(self);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(charts) = charts.upgrade() else {
                    break;
                };
                for (key, result) in charts.refresh_all().await {
                    if let Err(error) = result {
                        tracing::warn!(mirror = %key, %error, "git chart mirror refresh failed");
                    }
                }
            }
        })
    }

    /// Keeps the mirrors (and, per mirror, the tracked refs) of the sources in `in_use` — the
    /// git charts of every HelmRelease and FluxHelmRelease — and deletes the others with their
    /// directories, plus any directory under `mirrors/` that belongs to no kept key (from an
    /// earlier run). Returns the keys dropped. Helm Operator kept unused mirrors until restart.
    /// Directories are renamed into `trash/` under a short lock and deleted in a blocking task.
    pub async fn retain<'a, I>(&self, in_use: I) -> Vec<MirrorKey>
    where
        I: IntoIterator<Item = &'a GitChartSource>,
    {
        let mut keep: HashMap<MirrorKey, HashSet<String>> = HashMap::new();
        for source in in_use {
            keep.entry(MirrorKey::of(source))
                .or_default()
                .insert(self.effective_ref(source));
        }
        let mut removed = Vec::new();
        let mut trash = Vec::new();
        {
            let mut entries = lock(&self.entries);
            entries.retain(|key, entry| match keep.get(key) {
                Some(refs) => {
                    lock(&entry.status).refs.retain(|r, _| refs.contains(r));
                    true
                }
                None => {
                    removed.push(key.clone());
                    false
                }
            });
            // Renamed away under the lock: a mirror created concurrently never loses its
            // directory, and deleting (slow) happens outside it. The directories of kept keys
            // without a mirror yet (an earlier run's, right after a restart) are reused later.
            let mut wanted: HashSet<PathBuf> = entries.values().map(|e| e.dir.clone()).collect();
            wanted.extend(keep.keys().map(|key| self.mirrors_dir.join(dir_name(key))));
            if let Ok(dirs) = fs::read_dir(&self.mirrors_dir) {
                for dir in dirs.flatten().map(|d| d.path()) {
                    if !wanted.contains(&dir) {
                        let n = self.next_export.fetch_add(1, Ordering::Relaxed);
                        let target = self.trash_dir.join(format!("mirror-{n}"));
                        match fs::rename(&dir, &target) {
                            Ok(()) => trash.push(target),
                            Err(e) => {
                                tracing::warn!(dir = %dir.display(), error = %e, "failed to remove an unused git mirror")
                            }
                        }
                    }
                }
            }
        }
        for key in &removed {
            tracing::info!(mirror = %key, "dropping unused git chart mirror");
        }
        if !trash.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for dir in trash {
                    if let Err(e) = fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "failed to delete an unused git mirror");
                    }
                }
            })
            .await;
        }
        removed
    }

    /// The state of the mirror `source` is read from: [`MirrorState::Unconfigured`] for an empty
    /// URL, [`MirrorState::New`] before its first fetch, then `ready` or `unreachable` (with the
    /// reason), for status messages such as "chart not ready: mirror of … is unreachable: …".
    pub fn state(&self, source: &GitChartSource) -> MirrorState {
        if source.url.trim().is_empty() {
            return MirrorState::Unconfigured;
        }
        match lock(&self.entries).get(&MirrorKey::of(source)) {
            Some(entry) => lock(&entry.status).state.clone(),
            None => MirrorState::New,
        }
    }

    /// Every mirror and its state, sorted by key.
    pub fn states(&self) -> Vec<(MirrorKey, MirrorState)> {
        let mut states: Vec<(MirrorKey, MirrorState)> = lock(&self.entries)
            .values()
            .map(|e| (e.key.clone(), lock(&e.status).state.clone()))
            .collect();
        states.sort_by_cached_key(|(key, _)| key.to_string());
        states
    }

    /// The entry of `key`, created (without touching the disk) if missing; records
    /// `credentials` for its next network operation.
    fn entry(&self, key: &MirrorKey, credentials: Option<&Credentials>) -> Arc<Entry> {
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get(key) {
            let mut status = lock(&entry.status);
            if status.credentials.as_ref() != credentials {
                status.credentials = credentials.cloned();
            }
            return Arc::clone(entry);
        }
        let dir = self.mirror_dir(key, &entries);
        let config = GitConfig {
            url: key.url.clone(),
            timeout: self.config.timeout,
            ssh: self.config.ssh.clone(),
            mode: MirrorMode::AllRefs,
            credentials: credentials.cloned(),
            ..GitConfig::default()
        };
        let mirror = Mirror::new(config, &dir);
        let entry = Arc::new(Entry {
            key: key.clone(),
            dir,
            status: Mutex::new(Status {
                state: mirror.state(),
                reader: None,
                credentials: credentials.cloned(),
                refs: BTreeMap::new(),
                attempts: 0,
            }),
            mirror: Mutex::new(mirror),
        });
        entries.insert(key.clone(), Arc::clone(&entry));
        entry
    }

    /// `mirrors/<dir_name(key)>`, with `-<n>` when two keys differ only in credentials embedded
    /// in their URLs.
    fn mirror_dir(&self, key: &MirrorKey, entries: &HashMap<MirrorKey, Arc<Entry>>) -> PathBuf {
        let name = dir_name(key);
        let taken: HashSet<&PathBuf> = entries.values().map(|e| &e.dir).collect();
        let mut dir = self.mirrors_dir.join(&name);
        let mut n = 1;
        while taken.contains(&dir) {
            dir = self.mirrors_dir.join(format!("{name}-{n}"));
            n += 1;
        }
        dir
    }
}

impl Entry {
    /// A reader of the mirror, cloning it first if it was never fetched. Blocking.
    fn reader_or_clone(
        &self,
        moved: &broadcast::Sender<MirrorMoved>,
    ) -> Result<MirrorReader, GitChartError> {
        let attempts = {
            let status = lock(&self.status);
            if let Some(reader) = &status.reader {
                return Ok(reader.clone());
            }
            status.attempts
        };
        let mut mirror = lock(&self.mirror);
        {
            let status = lock(&self.status);
            if let Some(reader) = &status.reader {
                return Ok(reader.clone());
            }
            if status.attempts != attempts {
                // Someone tried while we waited for the mirror, and failed: same answer.
                return Err(self.unreachable(&status.state));
            }
        }
        self.fetch_locked(&mut mirror, moved)?;
        lock(&self.status)
            .reader
            .clone()
            .ok_or_else(|| GitChartError::NotFetched {
                url: safe_url(&self.key.url),
            })
    }

    /// Fetches now (waiting for an operation in progress). Blocking.
    fn refresh(&self, moved: &broadcast::Sender<MirrorMoved>) -> Result<(), GitChartError> {
        let mut mirror = lock(&self.mirror);
        self.fetch_locked(&mut mirror, moved)
    }

    /// Fetches with the current credentials, records the outcome and, on success, announces
    /// the tracked refs that moved.
    fn fetch_locked(
        &self,
        mirror: &mut Mirror,
        moved: &broadcast::Sender<MirrorMoved>,
    ) -> Result<(), GitChartError> {
        let credentials = lock(&self.status).credentials.clone();
        if mirror.config().credentials != credentials {
            mirror.set_credentials(credentials);
        }
        let result = mirror.fetch();
        let reader = mirror.reader().ok();
        let tracked = {
            let mut status = lock(&self.status);
            status.attempts += 1;
            status.state = mirror.state();
            if reader.is_some() {
                status.reader = reader.clone();
            }
            status.refs.clone()
        };
        if let Err(e) = result {
            tracing::warn!(mirror = %self.key, error = %e, "git chart mirror unreachable");
            return Err(self.unreachable(&mirror.state()));
        }
        let Some(reader) = reader else {
            return Ok(());
        };
        for (git_ref, last) in tracked {
            let Ok(now) = reader.resolve(&git_ref) else {
                continue;
            };
            if last.as_deref() == Some(now.as_str()) {
                continue;
            }
            {
                let mut status = lock(&self.status);
                // Dropped by `retain` meanwhile: not announced.
                let Some(slot) = status.refs.get_mut(&git_ref) else {
                    continue;
                };
                *slot = Some(now.clone());
            }
            tracing::info!(mirror = %self.key, git_ref = %git_ref, from = ?last, to = %now, "git chart ref moved");
            // No subscriber is not an error.
            let _ = moved.send(MirrorMoved {
                key: self.key.clone(),
                git_ref,
                from: last,
                to: now,
            });
        }
        Ok(())
    }

    /// Starts tracking `git_ref` (first seen at `revision`) unless it is tracked already.
    fn track(&self, git_ref: &str, revision: Option<&str>) {
        lock(&self.status)
            .refs
            .entry(git_ref.to_owned())
            .or_insert_with(|| revision.map(str::to_owned));
    }

    /// [`GitChartError::Unreachable`] for `state`.
    fn unreachable(&self, state: &MirrorState) -> GitChartError {
        let reason = match state {
            MirrorState::Unreachable(reason) => reason.clone(),
            other => format!("mirror is {other}"),
        };
        GitChartError::Unreachable {
            url: safe_url(&self.key.url),
            reason,
        }
    }
}

/// The key of `source`, after checking it names a repository and that credentials are given
/// exactly when a Secret is referenced.
fn check_source(
    source: &GitChartSource,
    credentials: Option<&Credentials>,
) -> Result<MirrorKey, GitChartError> {
    if source.url.trim().is_empty() {
        return Err(GitChartError::NoUrl);
    }
    match (&source.secret_ref, credentials) {
        (Some(secret), None) => Err(GitChartError::MissingCredentials {
            url: safe_url(&source.url),
            secret: format!("{}/{}", secret.namespace, secret.name),
        }),
        (None, Some(_)) => Err(GitChartError::UnexpectedCredentials {
            url: safe_url(&source.url),
        }),
        _ => Ok(MirrorKey::of(source)),
    }
}

/// The mirror directory name of `key`: 20 hex digits of the SHA-256 of its credential-free
/// form, stable across restarts so an earlier run's mirror is fetched rather than cloned again.
fn dir_name(key: &MirrorKey) -> String {
    let digest = Sha256::digest(key.to_string().as_bytes());
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// The directory name of an exported chart: the last component of its path, `chart` for the
/// repository root (or a path that is not a plain name).
fn chart_dir_name(path: &str) -> String {
    match path
        .split('/')
        .rfind(|c| !c.is_empty() && *c != "." && *c != "..")
    {
        Some(name) => name.to_owned(),
        None => "chart".to_owned(),
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> GitChartError {
    GitChartError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str, secret: Option<(&str, &str)>) -> GitChartSource {
        GitChartSource {
            url: url.to_owned(),
            git_ref: String::new(),
            path: "charts/app".to_owned(),
            secret_ref: secret.map(|(namespace, name)| NamespacedName {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            skip_dep_update: false,
        }
    }

    #[test]
    fn keys_include_the_secret_and_hide_url_credentials() {
        let plain = MirrorKey::of(&source("https://tok:s3cret@git.example/r.git", None));
        let with_secret = MirrorKey::of(&source(
            "https://tok:s3cret@git.example/r.git",
            Some(("team", "git-auth")),
        ));
        assert_ne!(plain, with_secret);
        assert_eq!(plain.to_string(), "https://git.example/r.git");
        assert_eq!(
            with_secret.to_string(),
            "team/git-auth/https://git.example/r.git"
        );
        let text = format!("{plain:?} {with_secret:?}");
        assert!(!text.contains("s3cret") && !text.contains("tok"), "{text}");
    }

    #[test]
    fn credentials_are_required_exactly_with_a_secret_ref() {
        let credentials = Credentials::new("u", "p-s3cret").unwrap();
        let err = check_source(&source("https://h/r", Some(("ns", "s"))), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to fetch the chart from https://h/r: no credentials were read from secret ns/s"
        );
        assert!(matches!(
            check_source(&source("https://h/r", None), Some(&credentials)),
            Err(GitChartError::UnexpectedCredentials { .. })
        ));
        assert!(matches!(
            check_source(&source(" ", None), None),
            Err(GitChartError::NoUrl)
        ));
        assert!(
            check_source(
                &source("https://h/r", Some(("ns", "s"))),
                Some(&credentials)
            )
            .is_ok()
        );
    }

    #[test]
    fn chart_directories_are_named_after_the_path() {
        assert_eq!(chart_dir_name("charts/app"), "app");
        assert_eq!(chart_dir_name("./charts/app/"), "app");
        assert_eq!(chart_dir_name(""), "chart");
        assert_eq!(chart_dir_name("."), "chart");
        assert_eq!(chart_dir_name("charts/.."), "charts");
    }
}

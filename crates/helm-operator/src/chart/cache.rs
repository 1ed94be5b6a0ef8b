//! The on-disk cache of chart tarballs and repository indexes shared by [`super::repo`] and
//! [`super::oci`], under a size cap.
//!
//! The Helm Operator kept every downloaded chart (and Helm's anonymous index files) for the pod's
//! lifetime, which filled ephemeral disks and got pods evicted (fluxcd/helm-operator#449, #554).
//! This cache instead:
//!
//! - writes atomically: data goes to a temporary file `.tmp-*` in the cache directory, is synced,
//!   and is renamed over the entry's file name, so a reader never sees a partial file;
//! - evicts the least recently used entries (by last access: write or [`ChartCache::get`]) after
//!   every write until the total size is at or under the cap. The entry just written is never
//!   evicted, nor is an entry while a [`CachedFile`] handle for it is alive (a chart Helm is
//!   reading). When only such entries remain the cache stays over its cap until one is
//!   released, which evicts again: with no handle alive the cache is always within its cap;
//! - refuses a single write larger than the whole cap ([`CacheError::TooLarge`]);
//! - removes stray temporary files (from a crash) when it is opened, and picks up the entries
//!   already on disk, ordered by modification time (last access is written to the file's
//!   modification time, so the order survives restarts);
//! - is safe to use from many tasks at once (one lock around the bookkeeping; file writes happen
//!   outside it).
//!
//! It deliberately does not: share one directory between processes (each operator owns its
//! cache directory), verify content on read (callers verify digests before committing, and keys
//! name content), or expire entries by age (index freshness is the caller's business).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

/// Default cap on the cache's total size: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Prefix of temporary files in the cache directory.
const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of chart tarball entries.
const CHART_SUFFIX: &str = ".tgz";
/// Suffix of repository index entries.
const INDEX_SUFFIX: &str = ".index.yaml";

/// Errors of the chart cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file system operation on the cache failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done (`create cache directory`, `write`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A write would exceed the cache's whole cap.
    #[error("failed to cache {what}: larger than the chart cache's cap of {max_bytes} bytes")]
    TooLarge {
        /// What was being cached.
        what: String,
        /// The cap.
        max_bytes: u64,
    },
    /// A background task of the cache was cancelled or panicked.
    #[error("failed to {action}: the cache task did not finish")]
    Task {
        /// What was being done.
        action: &'static str,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

/// A size in bytes as given on the command line: a plain number of bytes, or a number with one of
/// the suffixes `Ki`, `Mi`, `Gi` (powers of 1024) or `K`, `M`, `G` (powers of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let factor: u64 = match unit.trim() {
            "" => 1,
            "K" | "k" => 1000,
            "M" => 1000 * 1000,
            "G" => 1000 * 1000 * 1000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} in {s:?}")),
        };
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a size (bytes, or a number with Ki/Mi/Gi)"))?;
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Command-line flags of the chart cache, to be flattened into the operator's arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct CacheArgs {
    /// Directory of the cache of downloaded chart tarballs and repository indexes (created if
    /// missing; owned by this process).
    #[arg(
        long,
        env = "HELM_OPERATOR_CHART_CACHE_DIR",
        default_value = "/tmp/helm-operator/charts"
    )]
    pub chart_cache_dir: PathBuf,
    /// Cap on the total size of the chart cache, in bytes (or with a Ki/Mi/Gi suffix); least
    /// recently used entries are evicted to stay under it.
    #[arg(
        long,
        env = "HELM_OPERATOR_CHART_CACHE_MAX_BYTES",
        default_value = "268435456"
    )]
    pub chart_cache_max_bytes: ByteSize,
}

impl CacheArgs {
    /// Opens the cache these flags describe (see [`ChartCache::open`]).
    ///
    /// # Errors
    ///
    /// As [`ChartCache::open`].
    pub fn open(&self) -> Result<ChartCache, CacheError> {
        ChartCache::open(&self.chart_cache_dir, self.chart_cache_max_bytes.0)
    }
}

/// The name of one cache entry: a file name derived from what identifies the content.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    file_name: String,
}

impl CacheKey {
    /// The key of a chart tarball: `<name>-<version>-<hash of identity>.tgz`, where `identity`
    /// lists everything that tells one tarball from another (repository, digest, ...). Name and
    /// version are only there to make the directory readable.
    #[must_use]
    pub fn chart(name: &str, version: &str, identity: &[&str]) -> Self {
        Self {
            file_name: format!(
                "{}-{}-{}{CHART_SUFFIX}",
                readable(name),
                readable(version),
                hash_parts(identity)
            ),
        }
    }

    /// The key of a repository index: `<hash of identity>.index.yaml`.
    #[must_use]
    pub fn index(identity: &[&str]) -> Self {
        Self {
            file_name: format!("{}{INDEX_SUFFIX}", hash_parts(identity)),
        }
    }

    /// The entry's file name in the cache directory.
    #[must_use]
    pub fn file_name(&self) -> &str {
        &self.file_name
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name)
    }
}

/// `text` reduced to `[A-Za-z0-9._+-]`, at most 64 characters, never starting with a dot.
fn readable(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    match text.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if text.is_empty() => "_".to_owned(),
        None => text,
    }
}

/// Hex SHA-256 (first 32 characters) of the parts, length-prefixed so that no two lists of parts
/// collide by concatenation.
fn hash_parts(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = format!("{:x}", hasher.finalize());
    digest[..32].to_owned()
}

/// Whether `name` is the file name of a cache entry.
fn is_entry_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(CHART_SUFFIX) || name.ends_with(INDEX_SUFFIX))
}

/// The on-disk chart cache: one directory, a cap on its total size, least-recently-used eviction.
/// Cheap to clone; clones share the same cache.
#[derive(Clone)]
pub struct ChartCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for ChartCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChartCache")
            .field("dir", &self.inner.dir)
            .field("max_bytes", &self.inner.max_bytes)
            .field("total_bytes", &self.total_bytes())
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    temp_counter: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    total: u64,
    /// Logical clock of accesses; higher is more recent.
    clock: u64,
}

struct Entry {
    size: u64,
    last_access: u64,
    /// Live [`CachedFile`] handles.
    pins: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The bookkeeping stays consistent even if a holder panicked: every update is a few
        // field assignments.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes unpinned entries, least recently used first, except `keep`, until the total is at
    /// or under the cap. Called with the lock held; file removals are quick unlinks.
    fn evict(&self, state: &mut State, keep: &str) {
        while state.total > self.max_bytes {
            let victim = state
                .entries
                .iter()
                .filter(|(name, entry)| name.as_str() != keep && entry.pins == 0)
                .min_by_key(|(_, entry)| entry.last_access)
                .map(|(name, _)| name.clone());
            let Some(victim) = victim else {
                tracing::warn!(
                    dir = %self.dir.display(),
                    total_bytes = state.total,
                    max_bytes = self.max_bytes,
                    "chart cache is over its cap, but every remaining entry is in use"
                );
                return;
            };
            if let Some(entry) = state.entries.remove(&victim) {
                state.total = state.total.saturating_sub(entry.size);
            }
            let path = self.dir.join(&victim);
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(file = %path.display(), "evicted from chart cache"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "failed to remove evicted chart cache entry");
                }
            }
        }
    }
}

impl ChartCache {
    /// Opens (creating it if needed) the cache in `dir` with a cap of `max_bytes`: removes stray
    /// temporary files, adopts the entries present (ordered by modification time) and evicts
    /// down to the cap. Files that are not cache entries are left alone and not counted.
    ///
    /// Blocking file system calls; call it at start-up, before serving.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, CacheError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error("create cache directory", &dir))?;
        let mut found: Vec<(String, u64, SystemTime)> = Vec::new();
        for item in fs::read_dir(&dir).map_err(io_error("read cache directory", &dir))? {
            let item = item.map_err(io_error("read cache directory", &dir))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = item.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            if name.starts_with(TEMP_PREFIX) {
                let path = item.path();
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "failed to remove stray chart cache temp file");
                }
            } else if is_entry_name(&name) {
                found.push((name, meta.len(), meta.modified().unwrap_or(UNIX_EPOCH)));
            }
        }
        found.sort_by_key(|(name, _, modified)| (*modified, name.clone()));
        let mut state = State::default();
        for (name, size, _) in found {
            state.clock += 1;
            state.total += size;
            state.entries.insert(
                name,
                Entry {
                    size,
                    last_access: state.clock,
                    pins: 0,
                },
            );
        }
        let inner = Inner {
            dir,
            max_bytes,
            state: Mutex::new(state),
            temp_counter: AtomicU64::new(0),
        };
        {
            let mut state = inner.lock();
            inner.evict(&mut state, "");
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The cache directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The cap on the total size, in bytes.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// The total size of the entries, in bytes.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.inner.lock().total
    }

    /// The number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether the cache has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is cached (without counting as an access).
    #[must_use]
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.inner.lock().entries.contains_key(key.file_name())
    }

    /// The cached file for `key`, or `None`. Counts as an access (the entry becomes the most
    /// recently used) and pins the entry while the returned handle lives. An entry whose file
    /// vanished from disk is forgotten and reported as absent.
    pub async fn get(&self, key: &CacheKey) -> Option<CachedFile> {
        let name = key.file_name().to_owned();
        let path = self.inner.dir.join(&name);
        let size = {
            let mut state = self.inner.lock();
            state.clock += 1;
            let clock = state.clock;
            let entry = state.entries.get_mut(&name)?;
            entry.last_access = clock;
            entry.pins += 1;
            entry.size
        };
        let file = CachedFile {
            path: path.clone(),
            size,
            _pin: Arc::new(Pin {
                inner: Arc::clone(&self.inner),
                name: name.clone(),
            }),
        };
        let touched = tokio::task::spawn_blocking(move || touch(&path)).await;
        match touched {
            Ok(Ok(())) => Some(file),
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
                drop(file);
                let mut state = self.inner.lock();
                if let Some(entry) = state.entries.remove(&name) {
                    state.total = state.total.saturating_sub(entry.size);
                }
                None
            }
            // Failing to record the access time only affects the order after a restart.
            Ok(Err(_)) | Err(_) => Some(file),
        }
    }

    /// Starts writing a new entry into a temporary file of the cache directory. Nothing is
    /// visible until [`CacheWriter::commit`]; dropping the writer removes the temporary file.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the temporary file cannot be created.
    pub async fn writer(&self, what: impl Into<String>) -> Result<CacheWriter, CacheError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = self.inner.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .inner
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}-{nanos}", std::process::id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_error("create temporary file", &path))?;
        Ok(CacheWriter {
            cache: self.clone(),
            what: what.into(),
            temp: Some(path),
            file: Some(file),
            written: 0,
            hasher: Sha256::new(),
        })
    }

    /// Stores `data` under `key` (a convenience over [`ChartCache::writer`]).
    ///
    /// # Errors
    ///
    /// As [`CacheWriter::write_all`] and [`CacheWriter::commit`].
    pub async fn put(&self, key: &CacheKey, data: &[u8]) -> Result<CachedFile, CacheError> {
        let mut writer = self.writer(key.to_string()).await?;
        writer.write_all(data).await?;
        writer.commit(key).await
    }
}

/// Sets the modification time of `path` to now: the entry's last access, kept across restarts.
fn touch(path: &Path) -> io::Result<()> {
    let file = fs::OpenOptions::new().append(true).open(path)?;
    file.set_modified(SystemTime::now())
}

/// A file being written into the cache. See [`ChartCache::writer`].
pub struct CacheWriter {
    cache: ChartCache,
    what: String,
    temp: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    written: u64,
    hasher: Sha256,
}

impl fmt::Debug for CacheWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheWriter")
            .field("what", &self.what)
            .field("temp", &self.temp)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl CacheWriter {
    /// Appends `data`, hashing it on the way.
    ///
    /// # Errors
    ///
    /// [`CacheError::TooLarge`] when the entry would exceed the cache's cap (the write is
    /// abandoned), [`CacheError::Io`] when the file cannot be written.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), CacheError> {
        let new_size = self.written.saturating_add(data.len() as u64);
        if new_size > self.cache.max_bytes() {
            return Err(CacheError::TooLarge {
                what: self.what.clone(),
                max_bytes: self.cache.max_bytes(),
            });
        }
        let (Some(file), Some(temp)) = (self.file.as_mut(), self.temp.as_ref()) else {
            return Err(CacheError::Task {
                action: "write to a finished cache writer",
            });
        };
        file.write_all(data)
            .await
            .map_err(io_error("write", temp))?;
        self.hasher.update(data);
        self.written = new_size;
        Ok(())
    }

    /// The number of bytes written so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The SHA-256 of the bytes written so far, as lowercase hex.
    #[must_use]
    pub fn sha256_hex(&self) -> String {
        format!("{:x}", self.hasher.clone().finalize())
    }

    /// Syncs the file and renames it to `key` (replacing an entry of the same key), records it
    /// as the most recently used entry, then evicts least recently used entries to get under the
    /// cap (never this one). Returns the entry, pinned.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the file cannot be synced or renamed; the temporary file is
    /// removed.
    pub async fn commit(mut self, key: &CacheKey) -> Result<CachedFile, CacheError> {
        let (Some(mut file), Some(temp)) = (self.file.take(), self.temp.clone()) else {
            return Err(CacheError::Task {
                action: "commit a finished cache writer",
            });
        };
        file.flush().await.map_err(io_error("write", &temp))?;
        file.sync_all().await.map_err(io_error("sync", &temp))?;
        drop(file);
        let inner = Arc::clone(&self.cache.inner);
        let name = key.file_name().to_owned();
        let size = self.written;
        let target = inner.dir.join(&name);
        let task_inner = Arc::clone(&inner);
        let task_name = name.clone();
        let task_target = target.clone();
        let task_temp = temp.clone();
        let renamed = tokio::task::spawn_blocking(move || -> Result<(), CacheError> {
            let inner = task_inner;
            // Rename and bookkeeping under one lock, so that concurrent commits and evictions
            // see the file and its entry together.
            let mut state = inner.lock();
            fs::rename(&task_temp, &task_target).map_err(io_error("rename", &task_temp))?;
            state.clock += 1;
            let clock = state.clock;
            let previous = state.entries.insert(
                task_name.clone(),
                Entry {
                    size,
                    last_access: clock,
                    pins: 1,
                },
            );
            if let Some(previous) = previous {
                state.total = state.total.saturating_sub(previous.size);
                if let Some(entry) = state.entries.get_mut(&task_name) {
                    entry.pins += previous.pins;
                }
            }
            state.total += size;
            inner.evict(&mut state, &task_name);
            Ok(())
        })
        .await;
        match renamed {
            Ok(Ok(())) => {
                self.temp = None;
                Ok(CachedFile {
                    path: target,
                    size,
                    _pin: Arc::new(Pin { inner, name }),
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CacheError::Task {
                action: "commit a chart cache entry",
            }),
        }
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            self.file = None;
            if let Err(e) = fs::remove_file(&temp)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %temp.display(), error = %e, "failed to remove chart cache temp file");
            }
        }
    }
}

/// A cached file. The entry is not evicted while this handle (or a clone) lives.
#[derive(Clone)]
pub struct CachedFile {
    path: PathBuf,
    size: u64,
    _pin: Arc<Pin>,
}

impl fmt::Debug for CachedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish()
    }
}

impl CachedFile {
    /// The file's path (in the cache directory).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Keeps an entry from eviction; unpins on drop.
struct Pin {
    inner: Arc<Inner>,
    name: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(entry) = state.entries.get_mut(&self.name) {
            entry.pins = entry.pins.saturating_sub(1);
        }
        // Entries kept over the cap because they were in use go as soon as they are released.
        if state.total > self.inner.max_bytes {
            self.inner.evict(&mut state, "");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use test_support::TempDir;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn key(n: u32) -> CacheKey {
        CacheKey::chart("c", &format!("{n}.0.0"), &["repo", &n.to_string()])
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!("1024".parse(), Ok(ByteSize(1024)));
        assert_eq!("256Mi".parse(), Ok(ByteSize(256 << 20)));
        assert_eq!("2 Gi".parse(), Ok(ByteSize(2 << 30)));
        assert_eq!("5K".parse(), Ok(ByteSize(5000)));
        assert!("5Xi".parse::<ByteSize>().is_err());
        assert!("Mi".parse::<ByteSize>().is_err());
        assert!("99999999999999999999Gi".parse::<ByteSize>().is_err());
    }

    #[test]
    fn keys_are_readable_distinct_and_safe() {
        let a = CacheKey::chart("hello", "1.0.0", &["http://r/", "sha256:aa"]);
        let b = CacheKey::chart("hello", "1.0.0", &["http://r/", "sha256:bb"]);
        let c = CacheKey::chart("hello", "1.0.0", &["http://r/sha256:", "aa"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.file_name().starts_with("hello-1.0.0-"), "{a}");
        assert!(a.file_name().ends_with(".tgz"));
        let odd = CacheKey::chart("../../etc", "/x", &[]);
        assert!(!odd.file_name().contains('/'), "{odd}");
        assert!(!odd.file_name().starts_with('.'), "{odd}");
        assert!(CacheKey::index(&["u"]).file_name().ends_with(".index.yaml"));
    }

    #[tokio::test]
    async fn put_then_get_returns_the_bytes_and_leaves_no_temp_files() {
        let tmp = TempDir::new("cache-put");
        let cache = ChartCache::open(tmp.path().join("c"), 1000).unwrap();
        assert!(cache.get(&key(1)).await.is_none());
        let file = cache.put(&key(1), b"hello").await.unwrap();
        assert_eq!(fs::read(file.path()).unwrap(), b"hello");
        assert_eq!(file.size(), 5);
        let again = cache.get(&key(1)).await.unwrap();
        assert_eq!(again.path(), file.path());
        assert_eq!(cache.total_bytes(), 5);
        assert_eq!(names(cache.dir()), vec![key(1).file_name().to_owned()]);
    }

    #[tokio::test]
    async fn least_recently_used_entries_are_evicted_and_the_new_one_is_kept() {
        let tmp = TempDir::new("cache-lru");
        let cache = ChartCache::open(tmp.path(), 300).unwrap();
        for n in 1..=3 {
            drop(cache.put(&key(n), &[b'x'; 100]).await.unwrap());
        }
        assert_eq!(cache.total_bytes(), 300);
        // Entry 1 is used again: 2 is now the least recently used.
        drop(cache.get(&key(1)).await.unwrap());
        drop(cache.put(&key(4), &[b'y'; 100]).await.unwrap());
        assert!(cache.contains(&key(1)));
        assert!(!cache.contains(&key(2)));
        assert!(cache.contains(&key(3)));
        assert!(cache.contains(&key(4)));
        assert!(!tmp.path().join(key(2).file_name()).exists());
        assert_eq!(cache.total_bytes(), 300);
        // A large entry pushes out everything else, but is itself kept.
        drop(cache.put(&key(5), &[b'z'; 250]).await.unwrap());
        assert_eq!(names(tmp.path()), vec![key(5).file_name().to_owned()]);
        assert_eq!(cache.total_bytes(), 250);
    }

    #[tokio::test]
    async fn pinned_entries_are_not_evicted_until_released() {
        let tmp = TempDir::new("cache-pin");
        let cache = ChartCache::open(tmp.path(), 200).unwrap();
        let in_use = cache.put(&key(1), &[b'x'; 100]).await.unwrap();
        drop(cache.put(&key(2), &[b'x'; 100]).await.unwrap());
        drop(cache.put(&key(3), &[b'x'; 100]).await.unwrap());
        // 1 is the oldest but pinned: 2 goes.
        assert!(cache.contains(&key(1)));
        assert!(!cache.contains(&key(2)));
        assert!(in_use.path().exists());
        // Everything pinned: over the cap until released.
        let a = cache.get(&key(3)).await.unwrap();
        let b = cache.put(&key(4), &[b'x'; 100]).await.unwrap();
        assert_eq!(cache.total_bytes(), 300);
        // Releasing 3 evicts it at once (4 is still in use, 1 too).
        drop(a);
        assert_eq!(cache.total_bytes(), 200);
        assert!(!cache.contains(&key(3)));
        drop((b, in_use));
        assert!(cache.contains(&key(1)) && cache.contains(&key(4)));
    }

    #[tokio::test]
    async fn too_large_writes_are_refused_and_abandoned_writes_leave_nothing() {
        let tmp = TempDir::new("cache-large");
        let cache = ChartCache::open(tmp.path(), 10).unwrap();
        let err = cache.put(&key(1), &[0; 11]).await.unwrap_err();
        assert!(
            matches!(err, CacheError::TooLarge { max_bytes: 10, .. }),
            "{err}"
        );
        let mut writer = cache.writer("x").await.unwrap();
        writer.write_all(b"abc").await.unwrap();
        assert_eq!(names(tmp.path()).len(), 1);
        drop(writer);
        assert!(names(tmp.path()).is_empty());
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn open_removes_temp_files_adopts_entries_and_evicts_to_the_cap() {
        let tmp = TempDir::new("cache-open");
        fs::write(tmp.path().join(".tmp-123-0-0"), b"partial").unwrap();
        fs::write(tmp.path().join("README"), b"not an entry").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(100);
        for n in 1..=3 {
            let path = tmp.path().join(key(n).file_name());
            fs::write(&path, [b'x'; 100]).unwrap();
            let file = fs::OpenOptions::new().append(true).open(&path).unwrap();
            file.set_modified(old + std::time::Duration::from_secs(u64::from(n)))
                .unwrap();
        }
        let cache = ChartCache::open(tmp.path(), 250).unwrap();
        let mut expected = vec![
            "README".to_owned(),
            key(2).file_name().to_owned(),
            key(3).file_name().to_owned(),
        ];
        expected.sort();
        assert_eq!(names(tmp.path()), expected);
        assert_eq!(cache.total_bytes(), 200);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn an_entry_removed_behind_the_caches_back_is_reported_absent() {
        let tmp = TempDir::new("cache-vanish");
        let cache = ChartCache::open(tmp.path(), 1000).unwrap();
        let file = cache.put(&key(1), b"abc").await.unwrap();
        fs::remove_file(file.path()).unwrap();
        drop(file);
        assert!(cache.get(&key(1)).await.is_none());
        assert_eq!(cache.total_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_keep_the_cache_consistent_and_under_its_cap() {
        let tmp = TempDir::new("cache-concurrent");
        let cache = ChartCache::open(tmp.path(), 1000).unwrap();
        let mut tasks = Vec::new();
        for n in 0..40_u32 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                // Half the tasks write the same few keys, the others distinct ones.
                let k = if n % 2 == 0 { key(n % 6) } else { key(100 + n) };
                let file = cache.put(&k, &[n as u8; 90]).await.unwrap();
                assert_eq!(fs::read(file.path()).unwrap().len(), 90);
                drop(file);
                cache.get(&k).await.map(|f| f.size())
            }));
        }
        for task in tasks {
            if let Some(size) = task.await.unwrap() {
                assert_eq!(size, 90);
            }
        }
        assert!(cache.total_bytes() <= 1000, "{}", cache.total_bytes());
        let on_disk: u64 = names(tmp.path())
            .iter()
            .map(|n| fs::metadata(tmp.path().join(n)).unwrap().len())
            .sum();
        assert_eq!(on_disk, cache.total_bytes());
        assert!(names(tmp.path()).iter().all(|n| !n.starts_with(".tmp-")));
    }
}

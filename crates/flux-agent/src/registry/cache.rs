//! The scanner's persistent cache: per canonical repository name, its tags (digest, creation
//! time, or why the tag is excluded) and its refresh schedule, in one JSON file
//! `registry-cache.json` under `--registry-cache-dir`, written whole to a temporary file and
//! renamed over the old one, so a crash leaves either the old or the new cache. Replaces Flux
//! v1's memcached records (`registryrepov4|…`, `registryhistoryv3|…`).
//!
//! Also the adaptive refresh rule itself ([`RepoRecord::after_check`]). Does not fetch
//! anything. An unreadable or unparsable cache file is logged and treated as empty (the cache
//! only saves work), never fatal.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{RegistryError, TagInfo};

/// The cache file's name under the cache directory.
pub(crate) const CACHE_FILE: &str = "registry-cache.json";
/// Format version; a file with another version is ignored.
const VERSION: u32 = 1;

/// First digest-check interval of a repository (Flux v1's `initialRefresh`).
pub(crate) const INITIAL_REFRESH: Duration = Duration::from_secs(60 * 60);
/// Shortest digest-check interval (Flux v1's `minRefresh`).
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(5 * 60);
/// Longest digest-check interval (Flux v1's `maxRefresh`).
pub(crate) const MAX_REFRESH: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long a repository nobody tracks any more is kept (Flux v1's repository record expiry).
pub(crate) const UNTRACKED_KEEP: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What is known of one tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagRecord {
    /// The digest of the tag's manifest or index.
    #[serde(rename = "d")]
    pub(crate) digest: String,
    /// Creation time, seconds since the Unix epoch.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_secs: Option<u64>,
    /// Nanoseconds part of the creation time.
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub(crate) created_nanos: u32,
    /// Why the tag is not offered (no image for the platform, unknown manifest type).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub(crate) excluded: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TagRecord {
    pub(crate) fn new(
        digest: String,
        created: Option<SystemTime>,
        excluded: Option<String>,
    ) -> Self {
        let since = created.and_then(|c| c.duration_since(UNIX_EPOCH).ok());
        Self {
            digest,
            created_secs: since.map(|d| d.as_secs()),
            created_nanos: since.map_or(0, |d| d.subsec_nanos()),
            excluded,
        }
    }

    pub(crate) fn created(&self) -> Option<SystemTime> {
        self.created_secs
            .map(|s| UNIX_EPOCH + Duration::new(s, self.created_nanos))
    }

    pub(crate) fn info(&self, tag: &str) -> TagInfo {
        TagInfo {
            tag: tag.to_owned(),
            digest: self.digest.clone(),
            created: self.created(),
        }
    }
}

/// What is known of one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RepoRecord {
    /// Tags by name.
    pub(crate) tags: BTreeMap<String, TagRecord>,
    /// Last successful tag listing, seconds since the epoch.
    pub(crate) listed_at: u64,
    /// Current digest-check interval, seconds.
    pub(crate) refresh_secs: u64,
    /// When the digests are checked next, seconds since the epoch.
    pub(crate) check_at: u64,
}

/// What a scan round learned about the digests, for [`RepoRecord::after_check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RoundOutcome {
    /// The repository had no record before.
    pub(crate) first: bool,
    /// Tags appeared that were not known.
    pub(crate) new_tags: bool,
    /// The digests of all known tags were checked, without error.
    pub(crate) checked: bool,
    /// The check found at least one changed digest.
    pub(crate) digest_changed: bool,
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl RepoRecord {
    /// Whether the digests of known tags are due for a check at `now`.
    pub(crate) fn check_due(&self, now: SystemTime) -> bool {
        unix_secs(now) >= self.check_at
    }

    /// The adaptive refresh rule (see the module docs of `registry`): the first fetch starts at
    /// 1 h; a completed check halves the interval when a digest changed and doubles it when
    /// none did, within 5 min – 7 d; new tags bring an interval above 1 h back to 1 h.
    pub(crate) fn after_check(&mut self, outcome: RoundOutcome, now: SystemTime) {
        let now_secs = unix_secs(now);
        self.listed_at = now_secs;
        if outcome.first || self.refresh_secs == 0 {
            self.refresh_secs = INITIAL_REFRESH.as_secs();
            self.check_at = now_secs + self.refresh_secs;
            return;
        }
        if outcome.checked {
            let next = if outcome.digest_changed {
                self.refresh_secs / 2
            } else {
                self.refresh_secs.saturating_mul(2)
            };
            self.refresh_secs = next.clamp(MIN_REFRESH.as_secs(), MAX_REFRESH.as_secs());
            self.check_at = now_secs + self.refresh_secs;
        }
        if outcome.new_tags && self.refresh_secs > INITIAL_REFRESH.as_secs() {
            self.refresh_secs = INITIAL_REFRESH.as_secs();
            self.check_at = self.check_at.min(now_secs + self.refresh_secs);
        }
    }

    /// The tags offered to automation: all but the excluded ones, by tag name.
    pub(crate) fn infos(&self) -> Vec<TagInfo> {
        self.tags
            .iter()
            .filter(|(_, r)| r.excluded.is_none())
            .map(|(t, r)| r.info(t))
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    repositories: BTreeMap<String, RepoRecord>,
}

/// The cache file of a directory.
pub(crate) fn cache_path(dir: &Path) -> PathBuf {
    dir.join(CACHE_FILE)
}

/// Reads the cache; a missing, unreadable or unparsable file (or one of another version) gives
/// an empty cache, with a warning for the last three.
pub(crate) fn load(dir: &Path) -> BTreeMap<String, RepoRecord> {
    let path = cache_path(dir);
    // Parsed from a buffered reader: the file is not held in memory beside the records.
    let reader = match std::fs::File::open(&path) {
        Ok(file) => std::io::BufReader::new(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "failed to read the registry cache; starting empty");
            return BTreeMap::new();
        }
    };
    match serde_json::from_reader::<_, CacheFile>(reader) {
        Ok(file) if file.version == VERSION => file.repositories,
        Ok(file) => {
            tracing::warn!(path = %path.display(), version = file.version, "registry cache has another format version; starting empty");
            BTreeMap::new()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "failed to parse the registry cache; starting empty");
            BTreeMap::new()
        }
    }
}

/// Serialises the records (done under the scanner's lock; writing happens outside).
pub(crate) fn serialise<'a>(
    records: impl Iterator<Item = (&'a String, &'a RepoRecord)>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct CacheFileRef<'a> {
        version: u32,
        repositories: BTreeMap<&'a String, &'a RepoRecord>,
    }
    let file = CacheFileRef {
        version: VERSION,
        repositories: records.collect(),
    };
    // Serialising plain maps and strings cannot fail.
    serde_json::to_vec(&file).unwrap_or_default()
}

/// Writes `bytes` as the cache file of `dir`, atomically (temporary file, fsync, rename).
///
/// # Errors
///
/// [`RegistryError::CacheIo`] when the directory cannot be created or the file written.
pub(crate) fn store(dir: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    std::fs::create_dir_all(dir).map_err(|source| RegistryError::CacheIo {
        action: "create directory for",
        path: dir.to_path_buf(),
        source,
    })?;
    let path = cache_path(dir);
    let tmp = dir.join(format!(".{CACHE_FILE}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        RegistryError::CacheIo {
            action: "write",
            path: path.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HOUR: u64 = 3600;

    fn outcome(first: bool, new_tags: bool, checked: bool, digest_changed: bool) -> RoundOutcome {
        RoundOutcome {
            first,
            new_tags,
            checked,
            digest_changed,
        }
    }

    #[test]
    fn refresh_interval_adapts_within_bounds() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut r = RepoRecord::default();
        r.after_check(outcome(true, true, false, false), t0);
        assert_eq!((r.refresh_secs, r.check_at), (HOUR, 1_000_000 + HOUR));
        assert!(!r.check_due(t0));
        assert!(r.check_due(t0 + INITIAL_REFRESH));

        // Unchanged digests double the interval, up to 7 days.
        for _ in 0..20 {
            r.after_check(outcome(false, false, true, false), t0);
        }
        assert_eq!(r.refresh_secs, MAX_REFRESH.as_secs());
        // A scan without a check leaves the schedule alone.
        let before = r.clone();
        r.after_check(outcome(false, false, false, false), t0);
        assert_eq!(
            (r.refresh_secs, r.check_at),
            (before.refresh_secs, before.check_at)
        );
        // New tags bring it back to 1 h.
        r.after_check(outcome(false, true, false, false), t0);
        assert_eq!((r.refresh_secs, r.check_at), (HOUR, 1_000_000 + HOUR));
        // Changed digests halve it, down to 5 min.
        r.after_check(outcome(false, false, true, true), t0);
        assert_eq!(r.refresh_secs, HOUR / 2);
        for _ in 0..10 {
            r.after_check(outcome(false, false, true, true), t0);
        }
        assert_eq!(r.refresh_secs, MIN_REFRESH.as_secs());
    }

    #[test]
    fn store_then_load_round_trips_and_garbage_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = RepoRecord::default();
        let created = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        record.tags.insert(
            "v1".into(),
            TagRecord::new("sha256:aa".into(), Some(created), None),
        );
        record.tags.insert(
            "arm".into(),
            TagRecord::new(
                "sha256:bb".into(),
                None,
                Some("no linux/amd64 image".into()),
            ),
        );
        let mut all = BTreeMap::new();
        all.insert("h:1/a/b".to_owned(), record);
        store(dir.path(), &serialise(all.iter())).unwrap();
        let loaded = load(dir.path());
        assert_eq!(loaded, all);
        assert_eq!(loaded["h:1/a/b"].tags["v1"].created(), Some(created));
        assert_eq!(
            loaded["h:1/a/b"].infos().len(),
            1,
            "excluded tags are not offered"
        );

        std::fs::write(cache_path(dir.path()), b"{not json").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}

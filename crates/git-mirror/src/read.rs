//! Reading a fetched mirror in-process with gix: resolving refs and commit ids, exporting the
//! files of a revision (whole or one directory of it), listing commits and changed paths.
//!
//! [`MirrorReader`] is a small cloneable handle on the mirror directory. It can be used while
//! another thread fetches into the same mirror: git writes objects before it moves refs, so a
//! reader sees either the old or the new state of a ref, both complete. What this module does
//! not do: anything on the network, writing refs, or checking out into a working tree with an
//! index (exports are plain files).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;

use crate::command::Deadline;
use crate::error::{GitError, io_error};

/// A tree entry: kind and object id.
type Entry = (EntryKind, ObjectId);

/// Read access to a fetched mirror (see [`crate::Mirror::reader`]). Cheap to clone; `Send` and
/// `Sync`. Every operation opens the repository afresh, so it sees the refs of the latest
/// completed fetch, and each is bounded by the mirror's timeout (checked between steps).
#[derive(Clone, Debug)]
pub struct MirrorReader {
    dir: PathBuf,
    /// Credential-free URL, for errors.
    url: String,
    timeout: Duration,
}

impl MirrorReader {
    /// A reader of the bare repository `dir`, which mirrors `safe_url`.
    pub(crate) fn new(dir: PathBuf, safe_url: String, timeout: Duration) -> Self {
        MirrorReader {
            dir,
            url: safe_url,
            timeout,
        }
    }

    /// The mirror directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The mirror's credential-free URL.
    pub fn safe_url(&self) -> &str {
        &self.url
    }

    /// The commit id (40 hex digits) `rev` names, resolved as `git rev-parse <rev>^{commit}`
    /// would for these forms: a full commit id; a reference name (`main`, `v1.2.0`,
    /// `feature/x`, `refs/tags/x`; git's precedence: `refs/<rev>`, `refs/tags/<rev>`,
    /// `refs/heads/<rev>`, ...), annotated tags peeled; or an abbreviated commit id of at least
    /// 4 hex digits when no reference has that name. Revision expressions (`main~1`, `@{u}`, ...)
    /// are not accepted.
    ///
    /// # Errors
    ///
    /// [`GitError::UnknownRevision`] for a name that matches nothing, an abbreviation that matches
    /// several commits (reason `ambiguous ...`), or something that is not a commit; repository
    /// errors.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let repo = self.open()?;
        Ok(self.resolve_id(&repo, rev)?.to_string())
    }

    /// Writes the files of the tree at `rev` (see [`MirrorReader::resolve`]) into `dest`, which
    /// is created and must be empty. Executable bits are kept; symbolic links are written only
    /// when they stay inside `dest` (others are skipped with a warning); submodules become empty
    /// directories.
    ///
    /// # Errors
    ///
    /// [`GitError::UnknownRevision`], [`GitError::UnsafePath`] for tree entries like `..` or
    /// `.git`, [`GitError::Timeout`], and I/O errors (including a non-empty `dest`).
    pub fn export(&self, rev: &str, dest: &Path) -> Result<(), GitError> {
        self.export_path(rev, "", dest)
    }

    /// Like [`MirrorReader::export`], for one directory of the tree: the files under `path`
    /// (relative to the repository root, `/`-separated; `""` or `.` is the root) are written
    /// into `dest`, so `dest/Chart.yaml` is `<path>/Chart.yaml` at `rev`. Symbolic links must
    /// stay inside `dest`, i.e. inside `path`.
    ///
    /// # Errors
    ///
    /// As [`MirrorReader::export`]; [`GitError::Invalid`] for a path with `..`, and
    /// [`GitError::PathNotFound`] when `path` is not a directory at `rev`.
    pub fn export_path(&self, rev: &str, path: &str, dest: &Path) -> Result<(), GitError> {
        let components = tree_path_components(path)?;
        let deadline = self.deadline("export");
        let repo = self.open()?;
        let commit = self.resolve_id(&repo, rev)?;
        let root = self.tree_of(&repo, commit)?;
        let tree = match self.entry_at(&repo, root, &components, &deadline)? {
            Some((EntryKind::Tree, id)) => id,
            _ => {
                return Err(GitError::PathNotFound {
                    path: path.to_owned(),
                    rev: rev.to_owned(),
                    url: self.url.clone(),
                });
            }
        };
        fs::create_dir_all(dest).map_err(|source| io_error("create directory", dest, source))?;
        let mut entries = fs::read_dir(dest).map_err(|source| io_error("read", dest, source))?;
        if entries.next().is_some() {
            return Err(io_error(
                "export into",
                dest,
                io::Error::new(io::ErrorKind::AlreadyExists, "directory is not empty"),
            ));
        }
        let mut exporter = Exporter {
            reader: self,
            repo: &repo,
            rev,
            prefix: components.join("/"),
            deadline: &deadline,
        };
        exporter.write_tree(tree, dest, &mut Vec::new())
    }

    /// Commits reachable from `to` but not from `from` (all commits of `to` when `from` is
    /// `None`), newest first (by commit time, like `git rev-list from..to`), as hex ids.
    ///
    /// # Errors
    ///
    /// [`GitError::UnknownRevision`], [`GitError::Timeout`] and repository errors.
    pub fn commits_between(&self, from: Option<&str>, to: &str) -> Result<Vec<String>, GitError> {
        use gix::revision::walk::Sorting;
        use gix::traverse::commit::simple::CommitTimeOrder;

        let deadline = self.deadline("log");
        let repo = self.open()?;
        let to_id = self.resolve_id(&repo, to)?;
        let hidden = match from {
            Some(from) => vec![self.resolve_id(&repo, from)?],
            None => Vec::new(),
        };
        let walk = repo
            .rev_walk([to_id])
            .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
            .with_hidden(hidden)
            .all()
            .map_err(|source| self.repo_error(format!("walking history of '{to}'"), source))?;
        let mut ids = Vec::new();
        for info in walk {
            deadline.check()?;
            let info = info
                .map_err(|source| self.repo_error(format!("walking history of '{to}'"), source))?;
            ids.push(info.id.to_string());
        }
        Ok(ids)
    }

    /// Paths of the files (blobs, links, submodules) that differ between the trees of the
    /// commits `from` and `to`: added, removed, or changed in content or mode. Sorted, each once;
    /// a rename yields both paths.
    ///
    /// # Errors
    ///
    /// [`GitError::UnknownRevision`], [`GitError::Timeout`] and repository errors.
    pub fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, GitError> {
        let deadline = self.deadline("diff");
        let repo = self.open()?;
        let from_tree = self.tree_of(&repo, self.resolve_id(&repo, from)?)?;
        let to_tree = self.tree_of(&repo, self.resolve_id(&repo, to)?)?;
        let mut paths = BTreeSet::new();
        self.diff_trees(
            &repo,
            Some(from_tree),
            Some(to_tree),
            "",
            &mut paths,
            &deadline,
        )?;
        Ok(paths.into_iter().collect())
    }

    /// Whether any file at or under `path` (as in [`MirrorReader::export_path`]; `""` is the
    /// whole tree) differs between `from` and `to`: the same as "some path of
    /// [`MirrorReader::changed_paths`] is `path` or starts with `path/`", computed by comparing
    /// the two tree entries at `path` (a path that exists on one side only counts as touched).
    /// This is Helm Operator's "a new commit releases only if it touched `chart.path`".
    ///
    /// # Errors
    ///
    /// [`GitError::Invalid`] for a path with `..`, [`GitError::UnknownRevision`],
    /// [`GitError::Timeout`] and repository errors.
    pub fn touched(&self, from: &str, to: &str, path: &str) -> Result<bool, GitError> {
        let components = tree_path_components(path)?;
        let deadline = self.deadline("diff");
        let repo = self.open()?;
        let from_tree = self.tree_of(&repo, self.resolve_id(&repo, from)?)?;
        let to_tree = self.tree_of(&repo, self.resolve_id(&repo, to)?)?;
        let before = self.entry_at(&repo, from_tree, &components, &deadline)?;
        let after = self.entry_at(&repo, to_tree, &components, &deadline)?;
        Ok(before != after)
    }

    // -- crate-internal ---------------------------------------------------------------------

    /// Opens the repository, isolated from the user's and the system's git configuration.
    pub(crate) fn open(&self) -> Result<gix::Repository, GitError> {
        gix::open_opts(&self.dir, gix::open::Options::isolated())
            .map_err(|source| self.repo_error("opening".to_owned(), source))
    }

    /// The commit the full reference `name` points at (peeled), or `None` when there is no
    /// such reference.
    pub(crate) fn peeled_ref(
        &self,
        repo: &gix::Repository,
        name: &str,
    ) -> Result<Option<ObjectId>, GitError> {
        match repo.try_find_reference(name) {
            Ok(Some(mut r)) => r
                .peel_to_commit()
                .map(|c| Some(c.id))
                .map_err(|source| self.repo_error(format!("peeling {name}"), source)),
            Ok(None) => Ok(None),
            Err(source) => Err(self.repo_error(format!("finding {name}"), source)),
        }
    }

    /// See [`MirrorReader::resolve`].
    pub(crate) fn resolve_id(
        &self,
        repo: &gix::Repository,
        rev: &str,
    ) -> Result<ObjectId, GitError> {
        let unknown = |reason: String| GitError::UnknownRevision {
            rev: rev.to_owned(),
            url: self.url.clone(),
            reason,
        };
        let hex_len = repo.object_hash().len_in_hex();
        let is_hex = !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex && rev.len() == hex_len {
            let id = ObjectId::from_hex(rev.as_bytes()).map_err(|e| unknown(e.to_string()))?;
            let object = repo.find_object(id).map_err(|e| unknown(e.to_string()))?;
            return object
                .peel_to_commit()
                .map(|c| c.id)
                .map_err(|e| unknown(e.to_string()));
        }
        if rev.is_empty() || rev.starts_with('-') {
            return Err(unknown("not a commit id or reference name".to_owned()));
        }
        match repo.try_find_reference(rev) {
            Ok(Some(mut r)) => {
                return r
                    .peel_to_commit()
                    .map(|c| c.id)
                    .map_err(|e| unknown(e.to_string()));
            }
            Ok(None) => {}
            // Not a valid reference name; a hex abbreviation always is one.
            Err(e) => return Err(unknown(e.to_string())),
        }
        if is_hex && rev.len() >= 4 && rev.len() < hex_len {
            return self.resolve_abbreviation(repo, rev).map_err(unknown);
        }
        Err(unknown("no such commit or reference".to_owned()))
    }

    /// The one commit whose id (or that of a tag pointing at it) starts with `prefix`.
    fn resolve_abbreviation(
        &self,
        repo: &gix::Repository,
        prefix: &str,
    ) -> Result<ObjectId, String> {
        let parsed = gix::hash::Prefix::from_hex(prefix).map_err(|e| e.to_string())?;
        let mut candidates = HashSet::new();
        repo.objects
            .lookup_prefix(parsed, Some(&mut candidates))
            .map_err(|e| e.to_string())?;
        let commits: BTreeSet<ObjectId> = candidates
            .into_iter()
            .filter_map(|id| repo.find_object(id).ok()?.peel_to_commit().ok())
            .map(|c| c.id)
            .collect();
        let mut commits = commits.into_iter();
        match (commits.next(), commits.next()) {
            (Some(id), None) => Ok(id),
            (None, _) => Err("no such commit or reference".to_owned()),
            (Some(_), Some(_)) => Err("ambiguous abbreviated commit id".to_owned()),
        }
    }

    pub(crate) fn repo_error(&self, what: String, source: gix::Error) -> GitError {
        GitError::Repository {
            what,
            path: self.dir.clone(),
            source,
        }
    }

    fn deadline(&self, op: &'static str) -> Deadline {
        Deadline::new(op, self.url.clone(), self.timeout)
    }

    fn tree_of(&self, repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, GitError> {
        let what = || format!("reading the tree of commit {commit}");
        let commit = repo
            .find_commit(commit)
            .map_err(|source| self.repo_error(what(), source))?;
        let tree = commit
            .tree_id()
            .map_err(|source| self.repo_error(what(), source))?;
        Ok(tree.detach())
    }

    /// The entries of a tree: name → (kind, id).
    fn tree_entries(
        &self,
        repo: &gix::Repository,
        tree: ObjectId,
    ) -> Result<BTreeMap<BString, Entry>, GitError> {
        let what = || format!("reading tree {tree}");
        let tree = repo
            .find_tree(tree)
            .map_err(|source| self.repo_error(what(), source))?;
        let decoded = tree
            .decode()
            .map_err(|source| self.repo_error(what(), source))?;
        Ok(decoded
            .entries
            .iter()
            .map(|e| (e.filename.to_owned(), (e.mode.kind(), e.oid.to_owned())))
            .collect())
    }

    /// The entry at `components` below the tree `root` (the root itself for no components), or
    /// `None` when some component does not exist or is not a directory.
    fn entry_at(
        &self,
        repo: &gix::Repository,
        root: ObjectId,
        components: &[&str],
        deadline: &Deadline,
    ) -> Result<Option<Entry>, GitError> {
        let mut entry = (EntryKind::Tree, root);
        for name in components {
            deadline.check()?;
            if entry.0 != EntryKind::Tree {
                return Ok(None);
            }
            match self
                .tree_entries(repo, entry.1)?
                .remove(name.as_bytes().as_bstr())
            {
                Some(next) => entry = next,
                None => return Ok(None),
            }
        }
        Ok(Some(entry))
    }

    /// Adds to `out` the paths of non-tree entries that differ between trees `a` and `b`.
    fn diff_trees(
        &self,
        repo: &gix::Repository,
        a: Option<ObjectId>,
        b: Option<ObjectId>,
        prefix: &str,
        out: &mut BTreeSet<String>,
        deadline: &Deadline,
    ) -> Result<(), GitError> {
        deadline.check()?;
        if a == b {
            return Ok(());
        }
        let load = |t: Option<ObjectId>| match t {
            Some(t) => self.tree_entries(repo, t),
            None => Ok(BTreeMap::new()),
        };
        let (a, b) = (load(a)?, load(b)?);
        let names: BTreeSet<&BString> = a.keys().chain(b.keys()).collect();
        for name in names {
            let (ea, eb) = (a.get(name).copied(), b.get(name).copied());
            if ea == eb {
                continue;
            }
            let path = format!("{prefix}{}", name.to_str_lossy());
            let is_tree = |e: &Entry| e.0 == EntryKind::Tree;
            let (ta, tb) = (ea.filter(is_tree), eb.filter(is_tree));
            if ta.is_some() || tb.is_some() {
                let sub = format!("{path}/");
                self.diff_trees(repo, ta.map(|e| e.1), tb.map(|e| e.1), &sub, out, deadline)?;
            }
            if ea.is_some_and(|e| !is_tree(&e)) || eb.is_some_and(|e| !is_tree(&e)) {
                out.insert(path);
            }
        }
        Ok(())
    }
}

/// The components of a tree path: `/`-separated, empty and `.` components dropped, `..`
/// refused (the tree has no parent to go to, and a path is never allowed to escape).
pub(crate) fn tree_path_components(path: &str) -> Result<Vec<&str>, GitError> {
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(GitError::Invalid {
                    what: "path",
                    value: path.to_owned(),
                    reason: "must not contain '..'".to_owned(),
                });
            }
            name if name.contains('\0') => {
                return Err(GitError::Invalid {
                    what: "path",
                    value: path.replace('\0', "\\0"),
                    reason: "must not contain NUL".to_owned(),
                });
            }
            name => components.push(name),
        }
    }
    Ok(components)
}

/// Writes trees to disk for [`MirrorReader::export_path`].
struct Exporter<'a> {
    reader: &'a MirrorReader,
    repo: &'a gix::Repository,
    rev: &'a str,
    /// The exported directory's path in the repository, for messages.
    prefix: String,
    deadline: &'a Deadline,
}

impl Exporter<'_> {
    /// Writes the entries of `tree` into the existing directory `dir`; `rel` is `dir`'s path
    /// below the export root, as components.
    fn write_tree(
        &mut self,
        tree: ObjectId,
        dir: &Path,
        rel: &mut Vec<BString>,
    ) -> Result<(), GitError> {
        for (name, (kind, id)) in self.reader.tree_entries(self.repo, tree)? {
            self.deadline.check()?;
            self.check_name(name.as_bstr(), rel)?;
            let path = dir.join(OsStr::from_bytes(&name));
            match kind {
                EntryKind::Tree => {
                    fs::create_dir(&path)
                        .map_err(|source| io_error("create directory", &path, source))?;
                    rel.push(name);
                    self.write_tree(id, &path, rel)?;
                    rel.pop();
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let data = self.blob(id)?;
                    let mode = if kind == EntryKind::BlobExecutable {
                        0o755
                    } else {
                        0o644
                    };
                    write_new_file(&path, &data, mode)?;
                }
                EntryKind::Link => {
                    let target = self.blob(id)?;
                    if link_stays_inside(rel.len(), &target) {
                        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                            .map_err(|source| io_error("create symlink", &path, source))?;
                    } else {
                        tracing::warn!(
                            rev = %self.rev,
                            path = %self.tree_path(rel, name.as_bstr()),
                            "skipping symlink pointing outside the exported directory"
                        );
                    }
                }
                EntryKind::Commit => {
                    fs::create_dir(&path)
                        .map_err(|source| io_error("create directory", &path, source))?;
                }
            }
        }
        Ok(())
    }

    fn check_name(&self, name: &BStr, rel: &[BString]) -> Result<(), GitError> {
        let reason = if name.is_empty() {
            Some("empty name")
        } else if name == "." || name == ".." {
            Some("relative path component")
        } else if name.contains(&b'/') || name.contains(&0) {
            Some("name contains '/' or NUL")
        } else if name.eq_ignore_ascii_case(b".git") {
            Some("'.git' entries are not allowed")
        } else {
            None
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(GitError::UnsafePath {
                rev: self.rev.to_owned(),
                path: self.tree_path(rel, name),
                reason: reason.to_owned(),
            }),
        }
    }

    fn blob(&self, id: ObjectId) -> Result<Vec<u8>, GitError> {
        let object = self
            .repo
            .find_object(id)
            .map_err(|source| self.reader.repo_error(format!("reading blob {id}"), source))?;
        Ok(object.detach().data)
    }

    /// The path of `name` in the directory `rel` in the repository.
    fn tree_path(&self, rel: &[BString], name: &BStr) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.prefix.is_empty() {
            parts.push(self.prefix.clone());
        }
        parts.extend(rel.iter().map(|c| c.to_str_lossy().into_owned()));
        parts.push(name.to_str_lossy().into_owned());
        parts.join("/")
    }
}

/// Whether a relative symlink `target` in a directory `depth` levels below the export root
/// resolves inside the root (lexically; absolute targets never do).
fn link_stays_inside(depth: usize, target: &[u8]) -> bool {
    let target = Path::new(OsStr::from_bytes(target));
    let mut level = depth as isize;
    for component in target.components() {
        match component {
            Component::Normal(_) => level += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty()
}

fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), GitError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io_error("create", path, source))?;
    file.write_all(data)
        .map_err(|source| io_error("write", path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_paths_are_normalised_and_never_escape() {
        assert_eq!(tree_path_components("").unwrap(), Vec::<&str>::new());
        assert_eq!(tree_path_components(".").unwrap(), Vec::<&str>::new());
        assert_eq!(
            tree_path_components("./charts//app/").unwrap(),
            vec!["charts", "app"]
        );
        assert_eq!(tree_path_components("/charts").unwrap(), vec!["charts"]);
        assert!(matches!(
            tree_path_components("charts/../secrets"),
            Err(GitError::Invalid { what: "path", .. })
        ));
    }

    #[test]
    fn links_are_checked_lexically() {
        assert!(link_stays_inside(1, b"../a.yaml"));
        assert!(!link_stays_inside(1, b"../../a.yaml"));
        assert!(!link_stays_inside(0, b"../a"));
        assert!(!link_stays_inside(3, b"/etc/passwd"));
        assert!(link_stays_inside(0, b"./x/../y"));
        assert!(!link_stays_inside(0, b""));
    }
}

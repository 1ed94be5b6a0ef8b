//! `git-mirror`: a bare git mirror of a remote repository (Flux v1 `pkg/git`), shared by the
//! agent (its config repository) and the helm-operator (git chart sources): a bare mirror under a
//! work dir, kept current by [`Mirror::refresh`], read with `gix` (export a revision's
//! files, list commits and changed paths, read the sync tag), and the sync tag moved on the remote
//! by [`Mirror::move_sync_tag`].
//!
//! Network operations (clone, fetch, `ls-remote`, push) run the `git` CLI as a child process: gix
//! cannot push, the gix build we use has no https transport, and a child process lets us pass
//! exactly Flux v1's environment (plus `GIT_SSH_COMMAND` and `GIT_TERMINAL_PROMPT=0`) and kill it
//! (with its ssh) when the per-operation timeout expires. Reading (refs, commits, trees, blobs)
//! and creating the annotated sync tag object are done in-process with gix.
//!
//! With [`SshConfig`], every ssh connection uses only the given identity and verifies the host
//! key against the given known_hosts file (`StrictHostKeyChecking=yes`): unknown or changed host
//! keys are refused with [`GitError::HostKeyVerification`], never accepted.
//!
//! What this module does not do: working clones, commits, git notes, the write-access check or
//! `git secret`; it never force-pushes. URLs in logs and errors go through [`safe_url`], so
//! credentials embedded in https URLs are never logged.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;

/// Default of `--git-branch`.
pub const DEFAULT_BRANCH: &str = "master";
/// Default of `--git-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default of `--git-sync-tag`.
pub const DEFAULT_SYNC_TAG: &str = "flux-sync";
/// Default of `--git-user` (Flux v1's).
pub const DEFAULT_USER: &str = "Weave Flux";
/// Default of `--git-email` (Flux v1's).
pub const DEFAULT_EMAIL: &str = "support@weave.works";
/// Message of the annotated sync tag.
pub const SYNC_TAG_MESSAGE: &str = "Sync pointer";

/// Name of the mirror directory under the work dir.
const MIRROR_DIR: &str = "mirror.git";
/// Name of the mirror's remote.
const REMOTE: &str = "origin";

/// Environment variables passed through to git (Flux v1 `pkg/git/operations.go`, plus `PATH`).
/// Everything else is removed; `GIT_TERMINAL_PROMPT=0` is always set.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "GIT_PROXY_COMMAND",
    "GNUPGHOME",
    "SECRETS_DIR",
    "SECRETS_EXTENSION",
    "CLOUDSDK_CONFIG",
    "CLOUDSDK_PYTHON",
    "NSS_WRAPPER_PASSWD",
    "NSS_WRAPPER_GROUP",
    "LD_PRELOAD",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
];

/// Where and how to reach the config repository.
#[derive(Clone, PartialEq, Eq)]
pub struct GitConfig {
    /// Repository URL: `git@host:org/repo`, `ssh://…`, `https://…`, `file://…` or `git://…`.
    /// Empty means not configured. May hold https credentials: only ever log [`safe_url`] of it.
    pub url: String,
    /// The branch to sync (`--git-branch`).
    pub branch: String,
    /// Limit for each git operation (`--git-timeout`).
    pub timeout: Duration,
    /// Name of the sync tag (`--git-sync-tag`).
    pub sync_tag: String,
    /// Tagger name of the sync tag (`--git-user`).
    pub user: String,
    /// Tagger e-mail of the sync tag (`--git-email`).
    pub email: String,
    /// The ssh identity and known hosts; `None` leaves ssh to its defaults (or to
    /// `GIT_SSH_COMMAND` from the agent's environment).
    pub ssh: Option<SshConfig>,
}

impl Default for GitConfig {
    /// Flux v1's defaults, with no URL (so the mirror is [`MirrorState::Unconfigured`]).
    fn default() -> Self {
        GitConfig {
            url: String::new(),
            branch: DEFAULT_BRANCH.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            sync_tag: DEFAULT_SYNC_TAG.to_owned(),
            user: DEFAULT_USER.to_owned(),
            email: DEFAULT_EMAIL.to_owned(),
            ssh: None,
        }
    }
}

impl fmt::Debug for GitConfig {
    /// Like a derived `Debug`, but with the URL's credentials removed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitConfig")
            .field("url", &safe_url(&self.url))
            .field("branch", &self.branch)
            .field("timeout", &self.timeout)
            .field("sync_tag", &self.sync_tag)
            .field("user", &self.user)
            .field("email", &self.email)
            .field("ssh", &self.ssh)
            .finish()
    }
}

/// The ssh key and known hosts git uses for `ssh://` and `user@host:path` URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshConfig {
    /// Private key file, OpenSSH format, mode 0600.
    pub identity_file: PathBuf,
    /// known_hosts file the server's host key is checked against.
    pub known_hosts_file: PathBuf,
}

/// Readiness of the mirror, with Flux v1's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorState {
    /// No URL configured.
    Unconfigured,
    /// Configured, not fetched yet.
    New,
    /// Fetched, but the configured branch is missing.
    Cloned,
    /// Fetched and the branch exists.
    Ready,
    /// The last clone or fetch failed; the reason (credential-free) is kept.
    Unreachable(String),
}

impl fmt::Display for MirrorState {
    /// `unconfigured`, `new`, `cloned`, `ready` or `unreachable` (as Flux v1 reports them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MirrorState::Unconfigured => "unconfigured",
            MirrorState::New => "new",
            MirrorState::Cloned => "cloned",
            MirrorState::Ready => "ready",
            MirrorState::Unreachable(_) => "unreachable",
        })
    }
}

/// Errors of the git mirror. URLs in them are credential-free ([`safe_url`]).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// No repository URL is configured.
    #[error("no git repository URL is configured")]
    Unconfigured,
    /// A read was asked for before the first successful fetch.
    #[error("the git mirror of {url} has not been fetched yet")]
    NotFetched {
        /// Repository URL.
        url: String,
    },
    /// The configured branch is not in the repository.
    #[error("configured branch '{branch}' does not exist")]
    BranchMissing {
        /// The configured branch.
        branch: String,
    },
    /// ssh refused the server: its host key is not in, or differs from, the known hosts.
    #[error(
        "host key verification failed for {url}: the server's host key is missing from or does \
         not match the known hosts ({known_hosts})"
    )]
    HostKeyVerification {
        /// Repository URL.
        url: String,
        /// The known_hosts file checked, or `ssh defaults`.
        known_hosts: String,
    },
    /// An operation did not finish within the configured timeout (the git process was killed).
    #[error("git {op} of {url} timed out after {}s", timeout.as_secs_f64())]
    Timeout {
        /// The operation.
        op: &'static str,
        /// Repository URL.
        url: String,
        /// The limit that expired.
        timeout: Duration,
    },
    /// git exited unsuccessfully; the message is its (credential-free) error output.
    #[error("git {op} of {url} failed: {message}")]
    Command {
        /// The operation.
        op: &'static str,
        /// Repository URL.
        url: String,
        /// What git said.
        message: String,
    },
    /// The git process could not be started (git missing?).
    #[error("cannot run git {op}: {source}")]
    Spawn {
        /// The operation.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A configured or given name is not usable (branch, tag, tagger, ssh path).
    #[error("invalid {what} '{value}': {reason}")]
    Invalid {
        /// What the value is.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A revision does not resolve to a commit in the mirror.
    #[error("unknown revision '{rev}' in the mirror of {url}: {reason}")]
    UnknownRevision {
        /// The revision asked for.
        rev: String,
        /// Repository URL.
        url: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// gix failed reading or writing the mirror.
    #[error("{what} in the git mirror {path} failed: {source}")]
    Repository {
        /// What was being done.
        what: String,
        /// The mirror directory.
        path: PathBuf,
        /// gix's error.
        source: gix::Error,
    },
    /// A tree entry cannot be exported safely (e.g. `..` or `.git` as a name).
    #[error("refusing to export '{path}' of {rev}: {reason}")]
    UnsafePath {
        /// The revision exported.
        rev: String,
        /// The entry's path in the tree.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation (`create directory`, `write`, ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A bare mirror of the config repository under the agent's work dir.
pub struct Mirror {
    config: GitConfig,
    dir: PathBuf,
    state: MirrorState,
    /// Whether a fetch succeeded in this mirror's lifetime, so the reads see current data.
    fetched: bool,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("config", &self.config)
            .field("dir", &self.dir)
            .field("state", &self.state)
            .finish()
    }
}

impl Mirror {
    /// A mirror of `config.url` in `<work_dir>/mirror.git`. Touches no files: the mirror is
    /// (re)created by the first [`Mirror::refresh`]. State [`MirrorState::New`], or
    /// [`MirrorState::Unconfigured`] when the URL is empty.
    pub fn new(config: GitConfig, work_dir: &Path) -> Mirror {
        let state = if config.url.trim().is_empty() {
            MirrorState::Unconfigured
        } else {
            MirrorState::New
        };
        Mirror {
            config,
            dir: work_dir.join(MIRROR_DIR),
            state,
            fetched: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> MirrorState {
        self.state.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// The mirror's directory (a bare repository once fetched).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The credential-free URL, for logs and the API.
    pub fn safe_url(&self) -> String {
        safe_url(&self.config.url)
    }

    /// Clones the repository (a bare mirror of all refs) if this mirror has none yet, otherwise
    /// fetches (including tags, pruning deleted refs). Returns the head commit id (hex) of the
    /// configured branch.
    ///
    /// State afterwards: [`MirrorState::Ready`] on success; [`MirrorState::Unreachable`] when the
    /// remote could not be reached, refused us, or timed out; [`MirrorState::Cloned`] when the
    /// fetch worked but the branch does not exist.
    ///
    /// # Errors
    ///
    /// [`GitError::Unconfigured`], [`GitError::BranchMissing`], [`GitError::HostKeyVerification`],
    /// [`GitError::Timeout`], [`GitError::Command`] and local I/O or repository errors.
    pub fn refresh(&mut self) -> Result<String, GitError> {
        if self.state == MirrorState::Unconfigured {
            return Err(GitError::Unconfigured);
        }
        let branch_ref = full_ref_name("branch", "refs/heads/", &self.config.branch)?;
        if let Err(e) = self.clone_or_fetch() {
            tracing::warn!(url = %self.safe_url(), error = %e, "git mirror unreachable");
            self.state = MirrorState::Unreachable(e.to_string());
            return Err(e);
        }
        self.fetched = true;
        let repo = self.open()?;
        let head = match repo.try_find_reference(branch_ref.as_str()) {
            Ok(Some(mut r)) => r.peel_to_commit().map(|c| c.id).map_err(|source| {
                self.repo_error(format!("reading branch '{}'", self.config.branch), source)
            })?,
            Ok(None) => {
                self.state = MirrorState::Cloned;
                return Err(GitError::BranchMissing {
                    branch: self.config.branch.clone(),
                });
            }
            Err(source) => {
                return Err(self.repo_error(format!("finding {branch_ref}"), source));
            }
        };
        if self.state != MirrorState::Ready {
            let url = self.safe_url();
            tracing::info!(url = %url, branch = %self.config.branch, "git mirror ready");
        }
        self.state = MirrorState::Ready;
        Ok(head.to_string())
    }

    /// Writes the files of the tree at `rev` (commit id, branch, tag or full ref name) into
    /// `dest`, which is created and must be empty. Executable bits are kept; symbolic links are
    /// written only when they stay inside `dest` (others are skipped with a warning); submodules
    /// become empty directories.
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`], [`GitError::UnknownRevision`], [`GitError::UnsafePath`] for tree
    /// entries like `..` or `.git`, [`GitError::Timeout`], and I/O errors (including a non-empty
    /// `dest`).
    pub fn export(&self, rev: &str, dest: &Path) -> Result<(), GitError> {
        let deadline = self.deadline("export");
        let repo = self.open_fetched()?;
        let commit = self.resolve(&repo, rev)?;
        let tree = self.tree_of(&repo, commit)?;
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
            mirror: self,
            repo: &repo,
            rev,
            deadline: &deadline,
        };
        exporter.write_tree(tree, dest, &mut Vec::new())
    }

    /// Commits reachable from `to` but not from `from` (all commits of `to` when `from` is
    /// `None`), newest first (by commit time, like `git rev-list from..to`), as hex ids.
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`], [`GitError::UnknownRevision`], [`GitError::Timeout`] and
    /// repository errors.
    pub fn commits_between(&self, from: Option<&str>, to: &str) -> Result<Vec<String>, GitError> {
        use gix::revision::walk::Sorting;
        use gix::traverse::commit::simple::CommitTimeOrder;

        let deadline = self.deadline("log");
        let repo = self.open_fetched()?;
        let to_id = self.resolve(&repo, to)?;
        let hidden = match from {
            Some(from) => vec![self.resolve(&repo, from)?],
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
    /// [`GitError::NotFetched`], [`GitError::UnknownRevision`], [`GitError::Timeout`] and
    /// repository errors.
    pub fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, GitError> {
        let deadline = self.deadline("diff");
        let repo = self.open_fetched()?;
        let from_tree = self.tree_of(&repo, self.resolve(&repo, from)?)?;
        let to_tree = self.tree_of(&repo, self.resolve(&repo, to)?)?;
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

    /// The commit the remote's sync tag points at (peeled through the annotated tag), as seen by
    /// the last fetch, or `None` when the remote has no such tag.
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`], [`GitError::Invalid`] for an unusable tag name, and repository
    /// errors (including a tag that does not point at a commit).
    pub fn sync_tag(&mut self) -> Result<Option<String>, GitError> {
        let tag_ref = full_ref_name("sync tag", "refs/tags/", &self.config.sync_tag)?;
        let repo = self.open_fetched()?;
        match repo.try_find_reference(tag_ref.as_str()) {
            Ok(Some(mut r)) => r
                .peel_to_commit()
                .map(|c| Some(c.id.to_string()))
                .map_err(|source| self.repo_error(format!("peeling {tag_ref}"), source)),
            Ok(None) => Ok(None),
            Err(source) => Err(self.repo_error(format!("finding {tag_ref}"), source)),
        }
    }

    /// Points the remote's sync tag at `rev`: an annotated tag with message `Sync pointer` and the
    /// configured user and e-mail as tagger. Never force-pushes: the remote's current tag is read
    /// with `git ls-remote`; if it already points at `rev` nothing is done; if it points elsewhere
    /// it is deleted on the remote and the new tag pushed.
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`], [`GitError::UnknownRevision`], [`GitError::Invalid`] for an
    /// unusable tag name or tagger, and the errors of the git CLI ([`GitError::Command`] when the
    /// remote rejects the push, [`GitError::Timeout`], [`GitError::HostKeyVerification`]).
    pub fn move_sync_tag(&mut self, rev: &str) -> Result<(), GitError> {
        let tag = self.config.sync_tag.clone();
        let tag_ref = full_ref_name("sync tag", "refs/tags/", &tag)?;
        check_identity("git user", &self.config.user)?;
        check_identity("git email", &self.config.email)?;
        let repo = self.open_fetched()?;
        let target = self.resolve(&repo, rev)?;

        let remote = self.remote_tag(&tag_ref)?;
        if remote == Some(target) {
            tracing::debug!(tag = %tag, rev = %target, "sync tag already at revision");
            return Ok(());
        }

        // Only the tag object is written locally; it is pushed by id. A local ref would be
        // updated by git as the "tracking ref" of the pushed one (the fetch refspec maps
        // refs/* to refs/*), and deleted along with the remote tag.
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let tag_object = gix::objs::Tag {
            target,
            target_kind: gix::objs::Kind::Commit,
            name: tag.as_str().into(),
            tagger: Some(gix::actor::Signature {
                name: self.config.user.as_str().into(),
                email: self.config.email.as_str().into(),
                time: gix::date::Time { seconds, offset: 0 },
            }),
            message: format!("{SYNC_TAG_MESSAGE}\n").into(),
            signature: None,
        };
        let tag_id = repo
            .write_object(&tag_object)
            .map_err(|source| self.repo_error(format!("writing the tag object {tag_ref}"), source))?
            .detach();

        if let Some(old) = remote {
            tracing::info!(tag = %tag, from = %old, to = %target, "deleting remote sync tag");
            self.run_git(
                "push",
                &[
                    "push",
                    "--quiet",
                    "--no-verify",
                    REMOTE,
                    &format!(":{tag_ref}"),
                ],
            )?;
        }
        self.run_git(
            "push",
            &[
                "push",
                "--quiet",
                "--no-verify",
                REMOTE,
                &format!("{tag_id}:{tag_ref}"),
            ],
        )?;
        tracing::info!(url = %self.safe_url(), tag = %tag, rev = %target, "moved sync tag");
        Ok(())
    }

    // -- network operations (git CLI) -----------------------------------------------------------

    /// Creates the mirror if needed, then fetches (reported as `clone` the first time).
    fn clone_or_fetch(&self) -> Result<(), GitError> {
        let mut op = "fetch";
        if !self.is_mirror_of_url() {
            op = "clone";
            if self.dir.exists() {
                tracing::info!(dir = %self.dir.display(), "replacing stale git mirror");
                fs::remove_dir_all(&self.dir)
                    .map_err(|source| io_error("remove", &self.dir, source))?;
            }
            fs::create_dir_all(&self.dir)
                .map_err(|source| io_error("create directory", &self.dir, source))?;
            tracing::info!(url = %self.safe_url(), "cloning git mirror");
            self.run_git("init", &["init", "--quiet", "--bare"])?;
            // `--mirror=fetch`: fetch `+refs/*:refs/*`, but no `remote.origin.mirror`, which would
            // turn every push into a forced mirror push.
            self.run_git(
                "remote add",
                &[
                    "remote",
                    "add",
                    "--mirror=fetch",
                    "--",
                    REMOTE,
                    &self.config.url,
                ],
            )?;
        }
        self.run_git(op, &["fetch", "--quiet", "--prune", "--tags", REMOTE])?;
        Ok(())
    }

    /// Whether the mirror directory is a repository whose origin is the configured URL.
    fn is_mirror_of_url(&self) -> bool {
        if !self.dir.join("HEAD").is_file() {
            return false;
        }
        match gix::open_opts(&self.dir, gix::open::Options::isolated()) {
            Ok(repo) => {
                let url = repo.config_snapshot().string("remote.origin.url");
                url.is_some_and(|u| u.as_slice() == self.config.url.as_bytes())
            }
            Err(_) => false,
        }
    }

    /// The commit the remote's `tag_ref` points at (peeled), from `git ls-remote`.
    fn remote_tag(&self, tag_ref: &str) -> Result<Option<ObjectId>, GitError> {
        let peeled_ref = format!("{tag_ref}^{{}}");
        let out = self.run_git("ls-remote", &["ls-remote", REMOTE, tag_ref, &peeled_ref])?;
        let (mut direct, mut peeled) = (None, None);
        for line in out.lines() {
            let Some((id, name)) = line.split_once('\t') else {
                continue;
            };
            let Ok(id) = ObjectId::from_hex(id.trim().as_bytes()) else {
                continue;
            };
            if name == tag_ref {
                direct = Some(id);
            } else if name == peeled_ref {
                peeled = Some(id);
            }
        }
        Ok(peeled.or(direct))
    }

    /// Runs `git <args>` in the mirror directory with the restricted environment, killing it
    /// (and its process group: ssh, remote helpers) when the timeout expires. Returns stdout.
    fn run_git(&self, op: &'static str, args: &[&str]) -> Result<String, GitError> {
        let url = self.safe_url();
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir)
            .args(args)
            .env_clear()
            .envs(
                PASSED_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        match &self.config.ssh {
            Some(ssh) => {
                cmd.env("GIT_SSH_COMMAND", ssh_command(ssh)?);
            }
            None => {
                if let Some(v) = std::env::var_os("GIT_SSH_COMMAND") {
                    cmd.env("GIT_SSH_COMMAND", v);
                }
            }
        }
        tracing::debug!(op, url = %url, "running git");
        let started = Instant::now();
        let output = run_with_timeout(cmd, self.config.timeout)
            .map_err(|source| GitError::Spawn { op, source })?;
        let Some(output) = output else {
            return Err(GitError::Timeout {
                op,
                url,
                timeout: self.config.timeout,
            });
        };
        tracing::debug!(
            op,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "git finished"
        );
        if output.success {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = redact(&String::from_utf8_lossy(&output.stderr), &self.config.url);
        if stderr.contains("Host key verification failed") {
            let known_hosts = match &self.config.ssh {
                Some(ssh) => ssh.known_hosts_file.display().to_string(),
                None => "ssh defaults".to_owned(),
            };
            return Err(GitError::HostKeyVerification { url, known_hosts });
        }
        Err(GitError::Command {
            op,
            url,
            message: summarize(&stderr, &output.status),
        })
    }

    // -- reading (gix) --------------------------------------------------------------------------

    fn open(&self) -> Result<gix::Repository, GitError> {
        gix::open_opts(&self.dir, gix::open::Options::isolated())
            .map_err(|source| self.repo_error("opening".to_owned(), source))
    }

    fn open_fetched(&self) -> Result<gix::Repository, GitError> {
        if self.state == MirrorState::Unconfigured {
            return Err(GitError::Unconfigured);
        }
        if !self.fetched {
            return Err(GitError::NotFetched {
                url: self.safe_url(),
            });
        }
        self.open()
    }

    fn repo_error(&self, what: String, source: gix::Error) -> GitError {
        GitError::Repository {
            what,
            path: self.dir.clone(),
            source,
        }
    }

    fn deadline(&self, op: &'static str) -> Deadline {
        Deadline {
            op,
            url: self.safe_url(),
            timeout: self.config.timeout,
            start: Instant::now(),
        }
    }

    /// Resolves a full hex commit id, or a reference name as git would (`main`, `flux-sync`,
    /// `refs/tags/x`, ...), to a commit id, peeling tags.
    fn resolve(&self, repo: &gix::Repository, rev: &str) -> Result<ObjectId, GitError> {
        let unknown = |reason: String| GitError::UnknownRevision {
            rev: rev.to_owned(),
            url: self.safe_url(),
            reason,
        };
        let is_hex = rev.len() == repo.object_hash().len_in_hex()
            && rev.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
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
            Ok(Some(mut r)) => r
                .peel_to_commit()
                .map(|c| c.id)
                .map_err(|e| unknown(e.to_string())),
            Ok(None) => Err(unknown("no such commit or reference".to_owned())),
            Err(e) => Err(unknown(e.to_string())),
        }
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
    ) -> Result<BTreeMap<BString, (EntryKind, ObjectId)>, GitError> {
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
            let is_tree = |e: &(EntryKind, ObjectId)| e.0 == EntryKind::Tree;
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

/// Writes trees to disk for [`Mirror::export`].
struct Exporter<'a> {
    mirror: &'a Mirror,
    repo: &'a gix::Repository,
    rev: &'a str,
    deadline: &'a Deadline,
}

impl Exporter<'_> {
    /// Writes the entries of `tree` into the existing directory `dir`; `rel` is `dir`'s path in
    /// the tree, as components.
    fn write_tree(
        &mut self,
        tree: ObjectId,
        dir: &Path,
        rel: &mut Vec<BString>,
    ) -> Result<(), GitError> {
        for (name, (kind, id)) in self.mirror.tree_entries(self.repo, tree)? {
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
                            path = %tree_path(rel, name.as_bstr()),
                            "skipping symlink pointing outside the repository"
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
                path: tree_path(rel, name),
                reason: reason.to_owned(),
            }),
        }
    }

    fn blob(&self, id: ObjectId) -> Result<Vec<u8>, GitError> {
        let object = self
            .repo
            .find_object(id)
            .map_err(|source| self.mirror.repo_error(format!("reading blob {id}"), source))?;
        Ok(object.detach().data)
    }
}

fn tree_path(rel: &[BString], name: &BStr) -> String {
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_str_lossy().into_owned()).collect();
    parts.push(name.to_str_lossy().into_owned());
    parts.join("/")
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

fn io_error(op: &'static str, path: &Path, source: io::Error) -> GitError {
    GitError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `prefix + name` if it is a valid full reference name (git's rules), else [`GitError::Invalid`].
fn full_ref_name(what: &'static str, prefix: &str, name: &str) -> Result<String, GitError> {
    let full = format!("{prefix}{name}");
    let invalid = |reason: String| GitError::Invalid {
        what,
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("must not be empty".to_owned()));
    }
    if name.starts_with('-') {
        return Err(invalid("must not start with '-'".to_owned()));
    }
    gix::refs::FullName::try_from(full.as_str()).map_err(|e| invalid(e.to_string()))?;
    Ok(full)
}

/// Refuses tagger names or e-mails git cannot store.
fn check_identity(what: &'static str, value: &str) -> Result<(), GitError> {
    if value.trim().is_empty() || value.contains(['<', '>', '\n', '\r', '\0']) {
        return Err(GitError::Invalid {
            what,
            value: value.to_owned(),
            reason: "must be non-empty without '<', '>' or line breaks".to_owned(),
        });
    }
    Ok(())
}

/// The `GIT_SSH_COMMAND` for `ssh`: only the given identity, host keys checked against the given
/// known_hosts and never accepted blindly, no prompts.
fn ssh_command(ssh: &SshConfig) -> Result<String, GitError> {
    let known_hosts = ssh.known_hosts_file.to_string_lossy();
    // ssh splits UserKnownHostsFile on whitespace (it takes a list of files).
    if known_hosts.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(GitError::Invalid {
            what: "known_hosts file",
            value: known_hosts.into_owned(),
            reason: "must not contain whitespace or '\"'".to_owned(),
        });
    }
    Ok(format!(
        "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o {} -o BatchMode=yes",
        shell_quote(&ssh.identity_file.to_string_lossy()),
        shell_quote(&format!("UserKnownHostsFile={known_hosts}")),
    ))
}

/// Single-quotes `s` for `sh` (git runs `GIT_SSH_COMMAND` through the shell).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A limit for in-process operations, checked between steps.
struct Deadline {
    op: &'static str,
    url: String,
    timeout: Duration,
    start: Instant,
}

impl Deadline {
    fn check(&self) -> Result<(), GitError> {
        if self.start.elapsed() > self.timeout {
            return Err(GitError::Timeout {
                op: self.op,
                url: self.url.clone(),
                timeout: self.timeout,
            });
        }
        Ok(())
    }
}

/// What a finished child process produced.
struct Finished {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` (spawned as its own process group leader, with piped stdout and stderr) for at
/// most `timeout`. `Ok(None)` when it was killed because the time ran out.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<Option<Finished>> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd.spawn()?;
    let stdout = spawn_reader(child.stdout.take());
    let stderr = spawn_reader(child.stderr.take());
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(&mut child);
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // The pipes close when the process group is gone; a grandchild that escaped the group and
    // holds them open must not block us past the deadline.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        rx.recv_timeout(wait).unwrap_or_default()
    };
    Ok(Some(Finished {
        success: status.success(),
        status: status.to_string(),
        stdout: collect(stdout),
        stderr: collect(stderr),
    }))
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error leaves what was read so far.
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the process group led by `child` (git and the ssh or helper processes it started),
/// then reaps `child`. The group is signalled before reaping so its id cannot have been reused.
fn kill_group(child: &mut Child) {
    let pgid = child.id();
    let killed = Command::new("kill")
        .args([
            OsString::from("-KILL"),
            OsString::from("--"),
            OsString::from(format!("-{pgid}")),
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        // No `kill` utility: at least the git process itself.
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The useful part of git's error output, at most a few lines.
fn summarize(stderr: &str, status: &str) -> String {
    const BOILERPLATE: &[&str] = &[
        "Please make sure you have the correct access rights",
        "and the repository exists.",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !BOILERPLATE.contains(l))
        .collect();
    if lines.is_empty() {
        return format!("git exited with {status}");
    }
    let mut text = lines[lines.len().saturating_sub(4)..].join("; ");
    if text.len() > 600 {
        let mut cut = 600;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Removes credentials from every URL in `text` (the configured `url` and any other
/// `scheme://user:password@host` it contains).
fn redact(text: &str, url: &str) -> String {
    let mut text = if url.is_empty() {
        text.to_owned()
    } else {
        text.replace(url, &safe_url(url))
    };
    let is_delim = |c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '(' | ')' | '<' | '>');
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let at = from + found;
        let start = text[..at].rfind(is_delim).map_or(0, |i| i + 1);
        let end = text[at..].find(is_delim).map_or(text.len(), |i| at + i);
        let safe = safe_url(&text[start..end]);
        text.replace_range(start..end, &safe);
        from = start + safe.len();
    }
    text
}

/// `url` without credentials, for logs and the API: `https://user:token@host/x` → `https://host/x`
/// (for http(s) the whole user part goes, since it often is the token itself);
/// `ssh://git:secret@host/x` → `ssh://git@host/x`. URLs without credentials, scp-like
/// `git@host:path` and local paths are returned unchanged.
pub fn safe_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
    let http = ["http", "https", "ftp", "ftps"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    let user = match userinfo.split_once(':') {
        _ if http => "",
        Some((user, _)) => user,
        None => userinfo,
    };
    let user_at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("{scheme}://{user_at}{host}{}", &rest[authority_end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{BareRepo, GitDaemon, Sshd, TempDir, run_git, ssh_keygen};

    const TIMEOUT: Duration = Duration::from_secs(20);

    fn config(url: &str, branch: &str) -> GitConfig {
        GitConfig {
            url: url.to_owned(),
            branch: branch.to_owned(),
            timeout: TIMEOUT,
            user: "Flux Test".to_owned(),
            email: "flux@example.invalid".to_owned(),
            ..GitConfig::default()
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// `git ls-remote --tags` of the bare repo: the commit `tag` points at (peeled).
    fn ls_remote_tag(repo: &BareRepo, tag: &str) -> Option<String> {
        let url = repo.file_url();
        let out = run_git(repo.path(), &["ls-remote", "--tags", &url]);
        let peeled = format!("refs/tags/{tag}^{{}}");
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, name)| *name == peeled)
            .map(|(id, _)| id.to_owned())
    }

    /// The whole behaviour over one transport: clone, refresh, reads, sync tag.
    fn exercise(url: &str, repo: &BareRepo, ssh: Option<SshConfig>) {
        let work = TempDir::new("mirror-work");
        let c1 = repo.commit(
            &[
                ("a.yaml", "a: 1\n"),
                ("dir/b.yaml", "b: 1\n"),
                ("dir/sub/c.yaml", "c: 1\n"),
            ],
            &[],
            "first",
        );
        let mut mirror = Mirror::new(
            GitConfig {
                ssh,
                ..config(url, "main")
            },
            work.path(),
        );
        assert_eq!(mirror.state(), MirrorState::New);
        assert_eq!(mirror.refresh().unwrap(), c1);
        assert_eq!(mirror.state(), MirrorState::Ready);
        assert_eq!(mirror.sync_tag().unwrap(), None);

        // A new commit is seen by the next refresh.
        let c2 = repo.commit(
            &[("a.yaml", "a: 2\n"), ("new.yaml", "n\n")],
            &["dir/b.yaml"],
            "second",
        );
        let c3 = repo.commit(&[("dir/sub/c.yaml", "c: 3\n")], &[], "third");
        assert_eq!(mirror.refresh().unwrap(), c3);
        assert_eq!(mirror.refresh().unwrap(), c3);

        // export
        let out1 = work.path().join("export-c1");
        mirror.export(&c1, &out1).unwrap();
        assert_eq!(read(&out1.join("a.yaml")), "a: 1\n");
        assert_eq!(read(&out1.join("dir/b.yaml")), "b: 1\n");
        assert_eq!(read(&out1.join("dir/sub/c.yaml")), "c: 1\n");
        let out3 = work.path().join("export-main");
        mirror.export("main", &out3).unwrap();
        assert_eq!(read(&out3.join("a.yaml")), "a: 2\n");
        assert_eq!(read(&out3.join("dir/sub/c.yaml")), "c: 3\n");
        assert!(!out3.join("dir/b.yaml").exists());
        assert!(out3.join("new.yaml").exists());

        // commits_between and changed_paths
        assert_eq!(
            mirror.commits_between(None, &c3).unwrap(),
            vec![c3.clone(), c2.clone(), c1.clone()]
        );
        assert_eq!(
            mirror.commits_between(Some(&c1), &c3).unwrap(),
            vec![c3.clone(), c2.clone()]
        );
        assert_eq!(
            mirror.commits_between(Some(&c3), &c3).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            mirror.changed_paths(&c1, &c2).unwrap(),
            vec!["a.yaml", "dir/b.yaml", "new.yaml"]
        );
        assert_eq!(
            mirror.changed_paths(&c2, &c3).unwrap(),
            vec!["dir/sub/c.yaml"]
        );
        assert_eq!(
            mirror.changed_paths(&c3, &c3).unwrap(),
            Vec::<String>::new()
        );

        // move_sync_tag: create, no-op, move (delete + push, no force).
        mirror.move_sync_tag(&c2).unwrap();
        assert_eq!(
            ls_remote_tag(repo, "flux-sync").as_deref(),
            Some(c2.as_str())
        );
        assert_eq!(repo.tag_target("flux-sync").as_deref(), Some(c2.as_str()));
        let tag_object = run_git(repo.path(), &["rev-parse", "refs/tags/flux-sync"]);
        assert_eq!(
            run_git(repo.path(), &["cat-file", "-t", &tag_object]),
            "tag"
        );
        let tag_text = run_git(repo.path(), &["cat-file", "-p", &tag_object]);
        assert!(
            tag_text.contains("tagger Flux Test <flux@example.invalid>"),
            "{tag_text}"
        );
        assert!(tag_text.ends_with("Sync pointer"), "{tag_text}");

        mirror.move_sync_tag(&c2).unwrap();
        assert_eq!(
            run_git(repo.path(), &["rev-parse", "refs/tags/flux-sync"]),
            tag_object
        );

        mirror.move_sync_tag(&c3).unwrap();
        assert_eq!(
            ls_remote_tag(repo, "flux-sync").as_deref(),
            Some(c3.as_str())
        );
        mirror.refresh().unwrap();
        assert_eq!(mirror.sync_tag().unwrap().as_deref(), Some(c3.as_str()));
    }

    #[test]
    fn mirror_over_file_url() {
        let tmp = TempDir::new("git-file");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        exercise(&repo.file_url(), &repo, None);
    }

    #[test]
    fn mirror_over_git_daemon() {
        let tmp = TempDir::new("git-daemon");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        let daemon = GitDaemon::start(tmp.path());
        exercise(&daemon.url("config.git"), &repo, None);
    }

    /// sshd with an authorized client key; returns the server, the ssh config and the URL.
    fn ssh_setup(tmp: &Path, repo: &BareRepo) -> (Sshd, SshConfig, String) {
        let sshd_dir = tmp.join("sshd");
        fs::create_dir(&sshd_dir).unwrap();
        let sshd = Sshd::start(&sshd_dir);
        let key = ssh_keygen(tmp, "agent key");
        sshd.authorize(&key.public_key);
        let known_hosts = tmp.join("known_hosts");
        fs::write(&known_hosts, sshd.known_hosts()).unwrap();
        let url = sshd.url(repo);
        let ssh = SshConfig {
            identity_file: key.private_key,
            known_hosts_file: known_hosts,
        };
        (sshd, ssh, url)
    }

    #[test]
    fn mirror_over_ssh() {
        let tmp = TempDir::new("git-ssh");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        let (_sshd, ssh, url) = ssh_setup(tmp.path(), &repo);
        exercise(&url, &repo, Some(ssh));
    }

    #[test]
    fn wrong_host_key_is_refused() {
        let tmp = TempDir::new("git-ssh-hostkey");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let (sshd, ssh, url) = ssh_setup(tmp.path(), &repo);
        let other = ssh_keygen(tmp.path(), "not-the-host-key");
        let mut fields = other.public_key.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port(),
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        fs::write(&ssh.known_hosts_file, line).unwrap();

        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(
            GitConfig {
                ssh: Some(ssh.clone()),
                ..config(&url, "main")
            },
            work.path(),
        );
        let err = mirror.refresh().unwrap_err();
        assert!(
            matches!(err, GitError::HostKeyVerification { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("host key verification failed"),
            "{err}"
        );
        let MirrorState::Unreachable(reason) = mirror.state() else {
            panic!("state {:?}", mirror.state())
        };
        assert!(reason.contains("host key verification failed"), "{reason}");

        // An empty known_hosts (unknown host) is refused the same way, not accepted.
        fs::write(&ssh.known_hosts_file, "").unwrap();
        let err = mirror.refresh().unwrap_err();
        assert!(
            matches!(err, GitError::HostKeyVerification { .. }),
            "{err:?}"
        );
        assert_eq!(read(&ssh.known_hosts_file), "");
    }

    #[test]
    fn unauthorized_key_is_unreachable() {
        let tmp = TempDir::new("git-ssh-key");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let (_sshd, mut ssh, url) = ssh_setup(tmp.path(), &repo);
        ssh.identity_file = ssh_keygen(tmp.path(), "stranger").private_key;
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(
            GitConfig {
                ssh: Some(ssh),
                ..config(&url, "main")
            },
            work.path(),
        );
        let err = mirror.refresh().unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        assert!(matches!(mirror.state(), MirrorState::Unreachable(_)));
    }

    #[test]
    fn unreachable_remote() {
        let work = TempDir::new("mirror-work");
        let port = test_support::free_port();
        let url = format!("git://127.0.0.1:{port}/nothing.git");
        let mut mirror = Mirror::new(config(&url, "main"), work.path());
        let err = mirror.refresh().unwrap_err();
        assert!(
            matches!(err, GitError::Command { op: "clone", .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("git clone of git://127.0.0.1:"),
            "{err}"
        );
        match mirror.state() {
            MirrorState::Unreachable(reason) => assert!(reason.contains("127.0.0.1"), "{reason}"),
            other => panic!("state {other:?}"),
        }
        assert_eq!(mirror.state().to_string(), "unreachable");
        assert!(matches!(
            mirror.export("main", &work.path().join("x")),
            Err(GitError::NotFetched { .. })
        ));

        // Recovers once the remote exists.
        let tmp = TempDir::new("git-late");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        let c1 = repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let mut mirror = Mirror::new(config(&repo.file_url(), "main"), work.path());
        assert_eq!(mirror.refresh().unwrap(), c1);
        assert_eq!(mirror.state(), MirrorState::Ready);
    }

    #[test]
    fn missing_branch() {
        let tmp = TempDir::new("git-branch");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        let c1 = repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(config(&repo.file_url(), "master"), work.path());
        let err = mirror.refresh().unwrap_err();
        assert_eq!(err.to_string(), "configured branch 'master' does not exist");
        assert_eq!(mirror.state(), MirrorState::Cloned);
        assert_eq!(mirror.state().to_string(), "cloned");
        // Reads still work on what was fetched.
        assert_eq!(mirror.commits_between(None, "main").unwrap(), vec![c1]);

        // An empty repository has no branch either.
        let empty = BareRepo::new(tmp.path(), "empty.git", "main");
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(config(&empty.file_url(), "main"), work.path());
        assert!(matches!(
            mirror.refresh(),
            Err(GitError::BranchMissing { .. })
        ));
        assert_eq!(mirror.state(), MirrorState::Cloned);
    }

    #[test]
    fn unconfigured() {
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(GitConfig::default(), work.path());
        assert_eq!(mirror.state(), MirrorState::Unconfigured);
        assert_eq!(mirror.state().to_string(), "unconfigured");
        assert!(matches!(mirror.refresh(), Err(GitError::Unconfigured)));
        assert!(!work.path().join(MIRROR_DIR).exists());
    }

    #[test]
    fn reuses_and_replaces_the_mirror_dir() {
        let tmp = TempDir::new("git-reuse");
        let a = BareRepo::new(tmp.path(), "a.git", "main");
        let b = BareRepo::new(tmp.path(), "b.git", "main");
        let ca = a.commit(&[("a.yaml", "a\n")], &[], "a");
        let cb = b.commit(&[("b.yaml", "b\n")], &[], "b");
        let work = TempDir::new("mirror-work");
        assert_eq!(
            Mirror::new(config(&a.file_url(), "main"), work.path())
                .refresh()
                .unwrap(),
            ca
        );
        // Same URL after a restart: fetched into the existing mirror.
        assert_eq!(
            Mirror::new(config(&a.file_url(), "main"), work.path())
                .refresh()
                .unwrap(),
            ca
        );
        // Another URL: the mirror is replaced, nothing of `a` is left.
        let mut mirror = Mirror::new(config(&b.file_url(), "main"), work.path());
        assert_eq!(mirror.refresh().unwrap(), cb);
        assert!(matches!(
            mirror.export(&ca, &work.path().join("x")),
            Err(GitError::UnknownRevision { .. })
        ));
    }

    #[test]
    fn sync_tag_set_by_someone_else_is_read_and_moved() {
        let tmp = TempDir::new("git-tag");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        let c1 = repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let c2 = repo.commit(&[("a.yaml", "b\n")], &[], "second");
        repo.create_tag("custom-tag", &c1);
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(
            GitConfig {
                sync_tag: "custom-tag".to_owned(),
                ..config(&repo.file_url(), "main")
            },
            work.path(),
        );
        mirror.refresh().unwrap();
        assert_eq!(mirror.sync_tag().unwrap().as_deref(), Some(c1.as_str()));
        mirror.move_sync_tag(&c2).unwrap();
        assert_eq!(repo.tag_target("custom-tag").as_deref(), Some(c2.as_str()));
        // Deleted on the remote: the next fetch forgets it.
        run_git(repo.path(), &["tag", "-d", "custom-tag"]);
        mirror.refresh().unwrap();
        assert_eq!(mirror.sync_tag().unwrap(), None);
    }

    #[test]
    fn remote_rejecting_deletes_fails_without_forcing() {
        let tmp = TempDir::new("git-nodelete");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        let c1 = repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let c2 = repo.commit(&[("a.yaml", "b\n")], &[], "second");
        // (receive.denyDeletes only protects branches.)
        let hook = repo.path().join("hooks/pre-receive");
        let script = concat!(
            "#!/bin/sh\n",
            "while read old new ref; do\n",
            "  case $new in 0000000*) echo \"no deletes: $ref\" >&2; exit 1;; esac\n",
            "done\n",
        );
        fs::write(&hook, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(config(&repo.file_url(), "main"), work.path());
        mirror.refresh().unwrap();
        mirror.move_sync_tag(&c1).unwrap();
        let err = mirror.move_sync_tag(&c2).unwrap_err();
        assert!(
            matches!(err, GitError::Command { op: "push", .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("no deletes: refs/tags/flux-sync"),
            "{err}"
        );
        assert_eq!(repo.tag_target("flux-sync").as_deref(), Some(c1.as_str()));
    }

    #[test]
    fn unknown_revision() {
        let tmp = TempDir::new("git-rev");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(config(&repo.file_url(), "main"), work.path());
        mirror.refresh().unwrap();
        for rev in [
            "nope",
            "0123456789012345678901234567890123456789",
            "--upload-pack=x",
            "",
        ] {
            let err = mirror.commits_between(None, rev).unwrap_err();
            assert!(
                matches!(err, GitError::UnknownRevision { .. }),
                "{rev}: {err:?}"
            );
        }
        let err = mirror.move_sync_tag("nope").unwrap_err();
        assert!(err.to_string().contains("'nope'"), "{err}");
    }

    #[test]
    fn export_keeps_modes_and_refuses_escaping_links() {
        let tmp = TempDir::new("git-export");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        // Build the tree with git directly: an executable, an inside link, an outside link.
        let scratch = tmp.path().join("w");
        let scratch_str = scratch.to_string_lossy().into_owned();
        run_git(tmp.path(), &["init", "-q", "-b", "main", &scratch_str]);
        fs::create_dir_all(scratch.join("d")).unwrap();
        fs::write(scratch.join("d/run.sh"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("../a.yaml", scratch.join("d/inside")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", scratch.join("d/outside")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", scratch.join("abs")).unwrap();
        fs::write(scratch.join("a.yaml"), "a\n").unwrap();
        run_git(&scratch, &["add", "-A"]);
        run_git(&scratch, &["update-index", "--chmod=+x", "d/run.sh"]);
        run_git(&scratch, &["commit", "-q", "-m", "modes"]);
        run_git(&scratch, &["push", "-q", &repo.file_url(), "HEAD:main"]);

        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(config(&repo.file_url(), "main"), work.path());
        mirror.refresh().unwrap();
        let out = work.path().join("out");
        mirror.export("main", &out).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(out.join("d/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        assert_eq!(read(&out.join("d/inside")), "a\n");
        assert!(fs::symlink_metadata(out.join("d/outside")).is_err());
        assert!(fs::symlink_metadata(out.join("abs")).is_err());

        // A non-empty destination is refused.
        let err = mirror.export("main", &out).unwrap_err();
        assert!(matches!(err, GitError::Io { .. }), "{err:?}");
    }

    #[test]
    fn timeout_kills_git_and_ssh() {
        // A listener that accepts and never answers: ssh waits for the banner until we kill it.
        let tmp = TempDir::new("git-timeout");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let key = ssh_keygen(tmp.path(), "agent");
        let ssh = SshConfig {
            identity_file: key.private_key,
            known_hosts_file: tmp.path().join("known_hosts"),
        };
        let url = format!("ssh://git@127.0.0.1:{port}/hang.git");
        let config = GitConfig {
            timeout: Duration::from_millis(700),
            ssh: Some(ssh),
            ..config(&url, "main")
        };
        let mut mirror = Mirror::new(config, tmp.path());
        let started = Instant::now();
        let err = mirror.refresh().unwrap_err();
        assert!(
            matches!(err, GitError::Timeout { op: "clone", .. }),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(mirror.state(), MirrorState::Unreachable(r) if r.contains("timed out")));
        // git ran `ssh ... -p PORT git@127.0.0.1 git-upload-pack ...`; nothing of it is left.
        let pattern = format!("-p {port} ");
        let out = Command::new("pgrep")
            .args(["-af", "--", &pattern])
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "left running: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        drop(listener);
    }

    #[test]
    fn mirror_and_errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Mirror>();
        assert_send_sync::<GitError>();
        assert_send_sync::<GitConfig>();
    }

    #[test]
    fn environment_is_restricted() {
        let tmp = TempDir::new("git-env");
        let repo = BareRepo::new(tmp.path(), "config.git", "main");
        repo.commit(&[("a.yaml", "a\n")], &[], "first");
        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(config(&repo.file_url(), "main"), work.path());
        mirror.refresh().unwrap();
        // `git var -l` prints the environment git sees only partially; use a shell alias instead.
        let out = mirror
            .run_git("env", &["-c", "alias.env=!env", "env"])
            .unwrap();
        let names: BTreeSet<&str> = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        assert!(names.contains("GIT_TERMINAL_PROMPT"), "{names:?}");
        for name in &names {
            let allowed = PASSED_ENV.contains(name)
                || name.starts_with("GIT_")
                || ["PWD", "SHLVL", "_", "OLDPWD"].contains(name);
            assert!(allowed, "{name} reached git");
        }
    }

    #[test]
    fn ssh_command_quotes_paths() {
        let ssh = SshConfig {
            identity_file: PathBuf::from("/keys/it's id"),
            known_hosts_file: PathBuf::from("/keys/known_hosts"),
        };
        assert_eq!(
            ssh_command(&ssh).unwrap(),
            "ssh -i '/keys/it'\\''s id' -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
             -o 'UserKnownHostsFile=/keys/known_hosts' -o BatchMode=yes"
        );
        let bad = SshConfig {
            known_hosts_file: PathBuf::from("/a b"),
            ..ssh
        };
        assert!(matches!(ssh_command(&bad), Err(GitError::Invalid { .. })));
    }

    #[test]
    fn safe_url_removes_credentials() {
        assert_eq!(
            safe_url("https://user:pw@host/org/repo"),
            "https://host/org/repo"
        );
        assert_eq!(
            safe_url("https://token@host/org/repo.git"),
            "https://host/org/repo.git"
        );
        assert_eq!(safe_url("HTTP://u:p@host:8080/r"), "HTTP://host:8080/r");
        assert_eq!(
            safe_url("ssh://git:secret@host:22/r.git"),
            "ssh://git@host:22/r.git"
        );
        assert_eq!(safe_url("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(
            safe_url("git@github.com:org/repo"),
            "git@github.com:org/repo"
        );
        assert_eq!(safe_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(safe_url("file:///tmp/x.git"), "file:///tmp/x.git");
        assert_eq!(safe_url(""), "");
    }

    #[test]
    fn redact_removes_credentials_from_messages() {
        let url = "https://user:s3cret@host/r";
        let text = "fatal: unable to access 'https://user:s3cret@host/r/': x; also http://a:b@c/d";
        let out = redact(text, url);
        assert!(!out.contains("s3cret") && !out.contains("a:b@"), "{out}");
        assert!(
            out.contains("'https://host/r/'") && out.contains("http://c/d"),
            "{out}"
        );
    }

    #[test]
    fn config_debug_hides_credentials() {
        let cfg = config("https://user:s3cret@host/r", "main");
        let text = format!(
            "{cfg:?} {:?}",
            Mirror::new(cfg.clone(), Path::new("/nonexistent"))
        );
        assert!(!text.contains("s3cret"), "{text}");
        let err = GitError::Timeout {
            op: "fetch",
            url: safe_url(&cfg.url),
            timeout: TIMEOUT,
        };
        assert_eq!(
            err.to_string(),
            "git fetch of https://host/r timed out after 20s"
        );
    }
}

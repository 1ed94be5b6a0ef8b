//! [`Mirror`]: one bare mirror of one remote under a work dir, its state, and the operations
//! that change it: clone or fetch ([`Mirror::fetch`], [`Mirror::refresh`]) and moving the sync
//! tag on the remote ([`Mirror::move_sync_tag`]). Reads are delegated to [`MirrorReader`].
//!
//! What this module does not do: working clones, commits, git notes, the write-access check or
//! `git secret`; it never force-pushes.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use gix::ObjectId;

use crate::command::GitRun;
use crate::config::{Credentials, GitConfig, MirrorMode, MirrorState, SYNC_TAG_MESSAGE};
use crate::error::{GitError, io_error};
use crate::read::MirrorReader;
use crate::url::safe_url;

/// Name of the mirror directory under the work dir.
pub(crate) const MIRROR_DIR: &str = "mirror.git";
/// Name of the mirror's remote.
const REMOTE: &str = "origin";

/// A bare mirror of `config.url` in `<work_dir>/mirror.git`.
///
/// Blocking: every method runs git or reads the disk; call it from a blocking task. Methods
/// taking `&mut self` change the mirror; reads can also go through a [`MirrorReader`]
/// ([`Mirror::reader`]) without holding the mirror.
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
    /// (re)created by the first fetch. State [`MirrorState::New`], or
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

    /// Whether a fetch succeeded since this value was created (reads are possible).
    pub fn is_fetched(&self) -> bool {
        self.fetched
    }

    /// The configuration.
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// Replaces the https credentials used by the next network operations (a rotated Secret).
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.config.credentials = credentials;
    }

    /// The mirror's directory (a bare repository once fetched).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The credential-free URL, for logs and the API.
    pub fn safe_url(&self) -> String {
        safe_url(&self.config.url)
    }

    /// Clones the repository (a bare mirror of the refs of [`GitConfig::mode`]) if this mirror
    /// has none yet, otherwise fetches (including tags, pruning deleted refs). In
    /// [`MirrorMode::Branch`] returns the head commit id (hex) of the configured branch; in
    /// [`MirrorMode::AllRefs`] the same, but a missing branch leaves the mirror
    /// [`MirrorState::Ready`] (use [`Mirror::fetch`] there when no branch matters).
    ///
    /// State afterwards: [`MirrorState::Ready`] on success; [`MirrorState::Unreachable`] when the
    /// remote could not be reached, refused us, or timed out; [`MirrorState::Cloned`] when the
    /// fetch worked but the branch does not exist (branch mode).
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
        self.fetch_remote()?;
        let reader = self.reader()?;
        let repo = reader.open()?;
        let Some(head) = reader.peeled_ref(&repo, &branch_ref)? else {
            if self.config.mode == MirrorMode::Branch {
                self.state = MirrorState::Cloned;
            } else {
                self.set_ready();
            }
            return Err(GitError::BranchMissing {
                branch: self.config.branch.clone(),
            });
        };
        self.set_ready();
        Ok(head.to_string())
    }

    /// Clones or fetches like [`Mirror::refresh`], without returning a head. In
    /// [`MirrorMode::AllRefs`] the mirror is [`MirrorState::Ready`] after every successful fetch;
    /// in [`MirrorMode::Branch`] this is [`Mirror::refresh`].
    ///
    /// # Errors
    ///
    /// As [`Mirror::refresh`] ([`GitError::BranchMissing`] only in branch mode).
    pub fn fetch(&mut self) -> Result<(), GitError> {
        match self.config.mode {
            MirrorMode::Branch => self.refresh().map(|_| ()),
            MirrorMode::AllRefs => {
                if self.state == MirrorState::Unconfigured {
                    return Err(GitError::Unconfigured);
                }
                self.fetch_remote()?;
                self.set_ready();
                Ok(())
            }
        }
    }

    /// A reader of the fetched mirror, usable without `self` (from other threads, while this
    /// mirror fetches).
    ///
    /// # Errors
    ///
    /// [`GitError::Unconfigured`], or [`GitError::NotFetched`] before the first successful fetch.
    pub fn reader(&self) -> Result<MirrorReader, GitError> {
        if self.state == MirrorState::Unconfigured {
            return Err(GitError::Unconfigured);
        }
        if !self.fetched {
            return Err(GitError::NotFetched {
                url: self.safe_url(),
            });
        }
        Ok(MirrorReader::new(
            self.dir.clone(),
            self.safe_url(),
            self.config.timeout,
        ))
    }

    /// See [`MirrorReader::resolve`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`] and those of [`MirrorReader::resolve`].
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        self.reader()?.resolve(rev)
    }

    /// See [`MirrorReader::export`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`] and those of [`MirrorReader::export`].
    pub fn export(&self, rev: &str, dest: &Path) -> Result<(), GitError> {
        self.reader()?.export(rev, dest)
    }

    /// See [`MirrorReader::export_path`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`] and those of [`MirrorReader::export_path`].
    pub fn export_path(&self, rev: &str, path: &str, dest: &Path) -> Result<(), GitError> {
        self.reader()?.export_path(rev, path, dest)
    }

    /// See [`MirrorReader::commits_between`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`] and those of [`MirrorReader::commits_between`].
    pub fn commits_between(&self, from: Option<&str>, to: &str) -> Result<Vec<String>, GitError> {
        self.reader()?.commits_between(from, to)
    }

    /// See [`MirrorReader::changed_paths`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`] and those of [`MirrorReader::changed_paths`].
    pub fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, GitError> {
        self.reader()?.changed_paths(from, to)
    }

    /// See [`MirrorReader::touched`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`] and those of [`MirrorReader::touched`].
    pub fn touched(&self, from: &str, to: &str, path: &str) -> Result<bool, GitError> {
        self.reader()?.touched(from, to, path)
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
        let reader = self.reader()?;
        let repo = reader.open()?;
        Ok(reader.peeled_ref(&repo, &tag_ref)?.map(|id| id.to_string()))
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
        let reader = self.reader()?;
        let repo = reader.open()?;
        let target = reader.resolve_id(&repo, rev)?;

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
            .map_err(|source| {
                reader.repo_error(format!("writing the tag object {tag_ref}"), source)
            })?
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

    /// Marks the mirror ready, logging the transition.
    fn set_ready(&mut self) {
        if self.state != MirrorState::Ready {
            let url = self.safe_url();
            tracing::info!(url = %url, branch = %self.config.branch, mode = ?self.config.mode, "git mirror ready");
        }
        self.state = MirrorState::Ready;
    }

    /// Clones or fetches; on failure the mirror becomes [`MirrorState::Unreachable`].
    fn fetch_remote(&mut self) -> Result<(), GitError> {
        if let Err(e) = self.clone_or_fetch() {
            tracing::warn!(url = %self.safe_url(), error = %e, "git mirror unreachable");
            self.state = MirrorState::Unreachable(e.to_string());
            return Err(e);
        }
        self.fetched = true;
        Ok(())
    }

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
            if self.config.mode != MirrorMode::Branch {
                let key = format!("remote.{REMOTE}.fetch");
                self.run_git("config", &["config", "--unset-all", &key])?;
                for refspec in self.config.mode.refspecs() {
                    self.run_git("config", &["config", "--add", &key, refspec])?;
                }
            }
        }
        self.run_git(op, &["fetch", "--quiet", "--prune", "--tags", REMOTE])?;
        Ok(())
    }

    /// Whether the mirror directory is a repository whose origin is the configured URL, fetched
    /// with the refspecs of the configured mode.
    fn is_mirror_of_url(&self) -> bool {
        if !self.dir.join("HEAD").is_file() {
            return false;
        }
        match gix::open_opts(&self.dir, gix::open::Options::isolated()) {
            Ok(repo) => {
                let config = repo.config_snapshot();
                let url = config.string("remote.origin.url");
                let refspecs: Vec<String> = config
                    .strings("remote.origin.fetch")
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                url.is_some_and(|u| u.as_slice() == self.config.url.as_bytes())
                    && refspecs == self.config.mode.refspecs()
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

    /// Runs `git <args>` in the mirror directory (see [`GitRun::run`]). Returns stdout.
    pub(crate) fn run_git(&self, op: &'static str, args: &[&str]) -> Result<String, GitError> {
        GitRun {
            dir: &self.dir,
            config: &self.config,
        }
        .run(op, args)
    }
}

/// `prefix + name` if it is a valid full reference name (git's rules), else [`GitError::Invalid`].
pub(crate) fn full_ref_name(
    what: &'static str,
    prefix: &str,
    name: &str,
) -> Result<String, GitError> {
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
pub(crate) fn check_identity(what: &'static str, value: &str) -> Result<(), GitError> {
    if value.trim().is_empty() || value.contains(['<', '>', '\n', '\r', '\0']) {
        return Err(GitError::Invalid {
            what,
            value: value.to_owned(),
            reason: "must be non-empty without '<', '>' or line breaks".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::command::PASSED_ENV;
    use crate::config::{MirrorMode, SshConfig};
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
        assert_send_sync::<MirrorReader>();
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

    // -- MirrorMode::AllRefs: the operator's chart sources ------------------------------------

    fn all_refs(url: &str, ssh: Option<SshConfig>) -> GitConfig {
        GitConfig {
            mode: MirrorMode::AllRefs,
            ssh,
            ..config(url, "main")
        }
    }

    /// Whether some changed path is `path` or lies under `path/` (the definition `touched`
    /// must agree with).
    fn touched_by_diff(mirror: &Mirror, from: &str, to: &str, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        mirror
            .changed_paths(from, to)
            .unwrap()
            .iter()
            .any(|p| path.is_empty() || p == path || p.starts_with(&prefix))
    }

    /// Refs of every kind, subdirectory export and `touched`, over one transport.
    fn exercise_all_refs(url: &str, repo: &BareRepo, ssh: Option<SshConfig>) {
        let c1 = repo.commit(
            &[
                ("README.md", "hello\n"),
                ("charts/app/Chart.yaml", "name: app\nversion: 1.0.0\n"),
                ("charts/app/templates/cm.yaml", "kind: ConfigMap\n"),
                ("charts/other/Chart.yaml", "name: other\n"),
            ],
            &[],
            "first",
        );
        run_git(repo.path(), &["branch", "release", &c1]);
        repo.create_tag("v1.0.0", &c1);
        run_git(repo.path(), &["tag", "light", &c1]);
        let c2 = repo.commit(
            &[("charts/other/Chart.yaml", "name: other2\n")],
            &[],
            "other",
        );
        let c3 = repo.commit(
            &[("charts/app/values.yaml", "replicas: 2\n")],
            &["charts/app/templates/cm.yaml"],
            "app",
        );
        // Not a branch or tag: an all-refs mirror does not fetch it.
        run_git(repo.path(), &["update-ref", "refs/pull/1/head", &c2]);

        let work = TempDir::new("mirror-work");
        let mut mirror = Mirror::new(all_refs(url, ssh), work.path());
        assert_eq!(mirror.state(), MirrorState::New);
        assert!(matches!(
            mirror.resolve("main"),
            Err(GitError::NotFetched { .. })
        ));
        mirror.fetch().unwrap();
        assert_eq!(mirror.state(), MirrorState::Ready);
        assert!(mirror.is_fetched());

        for (rev, want) in [
            ("main", &c3),
            ("release", &c1),
            ("refs/heads/release", &c1),
            ("v1.0.0", &c1),
            ("refs/tags/v1.0.0", &c1),
            ("light", &c1),
            (c2.as_str(), &c2),
            (&c2[..7], &c2),
            (&c3[..12], &c3),
        ] {
            assert_eq!(&mirror.resolve(rev).unwrap(), want, "{rev}");
        }
        for rev in ["nope", "refs/pull/1/head", "abc", &c2[..3], "main~1", "-x"] {
            let err = mirror.resolve(rev).unwrap_err();
            assert!(
                matches!(err, GitError::UnknownRevision { .. }),
                "{rev}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("'{rev}'")), "{err}");
        }
        // A reference wins over a commit-id abbreviation, as in git.
        run_git(repo.path(), &["branch", &c3[..8], &c1]);
        mirror.fetch().unwrap();
        assert_eq!(mirror.resolve(&c3[..8]).unwrap(), c1);

        // Export one directory.
        let out = work.path().join("app-main");
        mirror.export_path("main", "charts/app", &out).unwrap();
        let mut files: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["Chart.yaml", "values.yaml"]);
        assert_eq!(read(&out.join("values.yaml")), "replicas: 2\n");
        let out = work.path().join("app-v1");
        mirror.export_path("v1.0.0", "./charts/app/", &out).unwrap();
        assert_eq!(read(&out.join("templates/cm.yaml")), "kind: ConfigMap\n");
        assert!(!out.join("values.yaml").exists());
        assert!(!out.join("README.md").exists());
        for path in ["charts/missing", "README.md", "charts/app/Chart.yaml"] {
            let err = mirror
                .export_path("main", path, &work.path().join("x"))
                .unwrap_err();
            assert!(matches!(err, GitError::PathNotFound { .. }), "{err:?}");
            assert!(err.to_string().contains(path), "{err}");
        }
        let err = mirror
            .export_path("main", "charts/../..", &work.path().join("y"))
            .unwrap_err();
        assert!(matches!(err, GitError::Invalid { .. }), "{err:?}");

        // touched: exactly the paths changed_paths reports.
        assert!(!mirror.touched(&c1, &c2, "charts/app").unwrap());
        assert!(mirror.touched(&c1, &c2, "charts/other").unwrap());
        assert!(mirror.touched(&c2, &c3, "charts/app").unwrap());
        assert!(mirror.touched(&c2, &c3, "charts/app/values.yaml").unwrap());
        assert!(!mirror.touched(&c2, &c2, "charts/app").unwrap());
        assert!(!mirror.touched(&c2, &c3, "charts/ap").unwrap());
        for (from, to) in [(&c1, &c2), (&c2, &c3), (&c1, &c3), (&c3, &c1)] {
            for path in [
                "",
                "charts",
                "charts/app",
                "charts/other",
                "README.md",
                "docs",
            ] {
                assert_eq!(
                    mirror.touched(from, to, path).unwrap(),
                    touched_by_diff(&mirror, from, to, path),
                    "{from}..{to} {path}"
                );
            }
        }

        // New and deleted branches arrive with the next fetch, not before.
        run_git(repo.path(), &["branch", "feature", &c2]);
        assert!(mirror.resolve("feature").is_err());
        mirror.fetch().unwrap();
        assert_eq!(mirror.resolve("feature").unwrap(), c2);
        run_git(repo.path(), &["branch", "-D", "feature"]);
        run_git(repo.path(), &["tag", "-d", "light"]);
        mirror.fetch().unwrap();
        assert!(mirror.resolve("feature").is_err());
        assert!(mirror.resolve("light").is_err());
        assert_eq!(mirror.resolve("v1.0.0").unwrap(), c1);
    }

    #[test]
    fn all_refs_over_file_url() {
        let tmp = TempDir::new("git-all-file");
        let repo = BareRepo::new(tmp.path(), "charts.git", "main");
        exercise_all_refs(&repo.file_url(), &repo, None);
    }

    #[test]
    fn all_refs_over_git_daemon() {
        let tmp = TempDir::new("git-all-daemon");
        let repo = BareRepo::new(tmp.path(), "charts.git", "main");
        let daemon = GitDaemon::start(tmp.path());
        exercise_all_refs(&daemon.url("charts.git"), &repo, None);
    }

    #[test]
    fn all_refs_over_ssh() {
        let tmp = TempDir::new("git-all-ssh");
        let repo = BareRepo::new(tmp.path(), "charts.git", "main");
        let (_sshd, ssh, url) = ssh_setup(tmp.path(), &repo);
        exercise_all_refs(&url, &repo, Some(ssh));
    }

    #[test]
    fn all_refs_mode_replaces_a_branch_mode_mirror_and_ignores_the_branch() {
        let tmp = TempDir::new("git-all-mode");
        let repo = BareRepo::new(tmp.path(), "charts.git", "main");
        let c1 = repo.commit(&[("a.yaml", "a\n")], &[], "first");
        run_git(repo.path(), &["update-ref", "refs/pull/1/head", &c1]);
        let work = TempDir::new("mirror-work");
        let mut branch_mode = Mirror::new(config(&repo.file_url(), "main"), work.path());
        branch_mode.refresh().unwrap();
        assert_eq!(branch_mode.resolve("refs/pull/1/head").unwrap(), c1);

        // Same directory, other mode: the mirror is re-cloned with the narrower refspecs.
        let mut mirror = Mirror::new(
            GitConfig {
                branch: "no-such-branch".to_owned(),
                ..all_refs(&repo.file_url(), None)
            },
            work.path(),
        );
        mirror.fetch().unwrap();
        assert_eq!(mirror.state(), MirrorState::Ready);
        assert!(mirror.resolve("refs/pull/1/head").is_err());
        assert_eq!(mirror.resolve("main").unwrap(), c1);
        // `refresh` still reports the missing branch, without calling the mirror unready.
        assert!(matches!(
            mirror.refresh(),
            Err(GitError::BranchMissing { .. })
        ));
        assert_eq!(mirror.state(), MirrorState::Ready);

        // An unreachable remote: unreachable, but what was fetched stays readable.
        let gone = tmp.path().join("gone.git");
        fs::rename(repo.path(), &gone).unwrap();
        let err = mirror.fetch().unwrap_err();
        assert!(
            matches!(err, GitError::Command { op: "fetch", .. }),
            "{err:?}"
        );
        assert!(matches!(mirror.state(), MirrorState::Unreachable(_)));
        assert_eq!(mirror.resolve("main").unwrap(), c1);
    }

    #[test]
    fn reader_reads_while_the_mirror_is_held_elsewhere() {
        let tmp = TempDir::new("git-reader");
        let repo = BareRepo::new(tmp.path(), "charts.git", "main");
        let c1 = repo.commit(&[("charts/a/Chart.yaml", "name: a\n")], &[], "first");
        let work = TempDir::new("mirror-work");
        let mirror = std::sync::Arc::new(std::sync::Mutex::new(Mirror::new(
            all_refs(&repo.file_url(), None),
            work.path(),
        )));
        mirror.lock().unwrap().fetch().unwrap();
        let reader = mirror.lock().unwrap().reader().unwrap();
        let c2 = repo.commit(&[("charts/a/Chart.yaml", "name: a2\n")], &[], "second");
        // The reader sees each completed fetch, without the mirror's lock.
        let guard = mirror.lock().unwrap();
        assert_eq!(reader.resolve("main").unwrap(), c1);
        drop(guard);
        let fetcher = {
            let mirror = std::sync::Arc::clone(&mirror);
            std::thread::spawn(move || mirror.lock().unwrap().fetch().unwrap())
        };
        fetcher.join().unwrap();
        assert_eq!(reader.resolve("main").unwrap(), c2);
        assert!(reader.touched(&c1, &c2, "charts/a").unwrap());
        assert_eq!(reader.safe_url(), repo.file_url());
    }
}

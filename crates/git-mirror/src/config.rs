//! What a mirror is configured with: the remote URL and how to reach it ([`GitConfig`], with
//! [`SshConfig`] for ssh and [`Credentials`] for https), which refs it fetches ([`MirrorMode`]),
//! and the state it reports ([`MirrorState`]).
//!
//! Nothing here touches the network or the disk. Secrets (credentials, and credentials embedded
//! in a URL) never appear in `Debug` output: [`GitConfig`] prints the URL through
//! [`crate::safe_url`] and [`Credentials`] prints neither the username nor the password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::GitError;
use crate::url::safe_url;

/// Default of `--git-branch` (Flux v1) and of `--git-default-ref` (Helm Operator).
pub const DEFAULT_BRANCH: &str = "master";
/// Default of `--git-timeout` (Flux v1 and Helm Operator): the limit of each git operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default of `--git-sync-tag`.
pub const DEFAULT_SYNC_TAG: &str = "flux-sync";
/// Default of `--git-user` (Flux v1's).
pub const DEFAULT_USER: &str = "Weave Flux";
/// Default of `--git-email` (Flux v1's).
pub const DEFAULT_EMAIL: &str = "support@weave.works";
/// Message of the annotated sync tag.
pub const SYNC_TAG_MESSAGE: &str = "Sync pointer";

/// Which refs a mirror fetches and what "ready" means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MirrorMode {
    /// The agent's mirror of its config repository (Flux v1): every ref of the remote
    /// (`+refs/*:refs/*`) is fetched, and the mirror is [`MirrorState::Ready`] only when the
    /// configured [`GitConfig::branch`] exists.
    #[default]
    Branch,
    /// A chart source of the helm-operator (Helm Operator `pkg/chartsync`): all branches
    /// (`+refs/heads/*:refs/heads/*`) and tags (`+refs/tags/*:refs/tags/*`) are fetched, nothing
    /// else (no `refs/pull/*` and the like), and the mirror is [`MirrorState::Ready`] after every
    /// successful fetch; callers resolve their own refs with [`crate::Mirror::resolve`].
    AllRefs,
}

impl MirrorMode {
    /// The fetch refspecs of the mode, as stored in `remote.origin.fetch`.
    pub(crate) fn refspecs(self) -> &'static [&'static str] {
        match self {
            MirrorMode::Branch => &["+refs/*:refs/*"],
            MirrorMode::AllRefs => &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
        }
    }
}

/// Where and how to reach a repository.
#[derive(Clone, PartialEq, Eq)]
pub struct GitConfig {
    /// Repository URL: `git@host:org/repo`, `ssh://…`, `https://…`, `file://…` or `git://…`.
    /// Empty means not configured. May hold https credentials: only ever log [`safe_url`] of it
    /// (better: give them as [`GitConfig::credentials`]).
    pub url: String,
    /// The branch to track (`--git-branch`); in [`MirrorMode::AllRefs`] only used by
    /// [`crate::Mirror::refresh`].
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
    /// `GIT_SSH_COMMAND` from the process environment).
    pub ssh: Option<SshConfig>,
    /// Which refs are fetched.
    pub mode: MirrorMode,
    /// Basic-auth credentials for `http://` and `https://` URLs, handed to git through a
    /// credential helper (never in the URL or the command line); ignored for other schemes.
    pub credentials: Option<Credentials>,
}

impl Default for GitConfig {
    /// Flux v1's defaults, with no URL (so the mirror is [`MirrorState::Unconfigured`]),
    /// [`MirrorMode::Branch`] and no credentials.
    fn default() -> Self {
        GitConfig {
            url: String::new(),
            branch: DEFAULT_BRANCH.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            sync_tag: DEFAULT_SYNC_TAG.to_owned(),
            user: DEFAULT_USER.to_owned(),
            email: DEFAULT_EMAIL.to_owned(),
            ssh: None,
            mode: MirrorMode::Branch,
            credentials: None,
        }
    }
}

impl fmt::Debug for GitConfig {
    /// Like a derived `Debug`, but with the URL's credentials removed and the credentials
    /// printed as [`Credentials`]' redacted form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitConfig")
            .field("url", &safe_url(&self.url))
            .field("branch", &self.branch)
            .field("timeout", &self.timeout)
            .field("sync_tag", &self.sync_tag)
            .field("user", &self.user)
            .field("email", &self.email)
            .field("ssh", &self.ssh)
            .field("mode", &self.mode)
            .field("credentials", &self.credentials)
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

/// HTTP basic-auth credentials (Helm Operator: the `username` and `password` keys of the
/// Secret named by `spec.chart.secretRef`). `Debug` shows neither field; there is no `Display`.
///
/// They reach git only as environment variables of the git child process, read by a credential
/// helper given on its command line; the URL and the command line never contain them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Basic-auth credentials.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidCredentials`] when either is empty or holds a line break or NUL (git's
    /// credential protocol is line based). The error names the field, never its value.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Result<Self, GitError> {
        let (username, password) = (username.into(), password.into());
        for (field, value) in [("username", &username), ("password", &password)] {
            if value.is_empty() {
                return Err(GitError::InvalidCredentials {
                    field,
                    reason: "must not be empty",
                });
            }
            if value.contains(['\n', '\r', '\0']) {
                return Err(GitError::InvalidCredentials {
                    field,
                    reason: "must not contain line breaks or NUL",
                });
            }
        }
        Ok(Credentials { username, password })
    }

    /// The username (secret as well: it is often the token itself).
    pub(crate) fn username(&self) -> &str {
        &self.username
    }

    /// The password.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    /// `Credentials { .. }`: nothing of the values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// Readiness of a mirror, with Flux v1's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorState {
    /// No URL configured.
    Unconfigured,
    /// Configured, not fetched yet.
    New,
    /// Fetched, but the configured branch is missing ([`MirrorMode::Branch`] only).
    Cloned,
    /// Fetched (and, in [`MirrorMode::Branch`], the branch exists).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_without_echoing_them() {
        let err = Credentials::new("user", "pw\nurl=https://evil").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("evil") && !text.contains("pw"), "{text}");
        assert!(text.contains("password"), "{text}");
        assert!(matches!(
            Credentials::new("", "pw"),
            Err(GitError::InvalidCredentials {
                field: "username",
                ..
            })
        ));
        assert!(Credentials::new("user", "").is_err());
        assert!(Credentials::new("user", "p\0w").is_err());
    }

    #[test]
    fn debug_hides_credentials() {
        let config = GitConfig {
            url: "https://tok:url-s3cret@host/r".to_owned(),
            credentials: Some(Credentials::new("the-user", "pw-s3cret").unwrap()),
            mode: MirrorMode::AllRefs,
            ..GitConfig::default()
        };
        let text = format!("{config:?} {:?}", config.credentials);
        for secret in ["s3cret", "the-user", "tok"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("https://host/r"), "{text}");
        assert!(text.contains("Credentials { .. }"), "{text}");
    }
}

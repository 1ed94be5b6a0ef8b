//! [`GitError`], the one error type of the mirror.
//!
//! URLs in errors are always credential-free ([`crate::safe_url`]); git's own error output is
//! redacted before it is kept; credentials given as [`crate::Credentials`] are never formatted.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the git mirror. URLs in them are credential-free ([`crate::safe_url`]).
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
    /// A configured or given name is not usable (branch, tag, tagger, ssh path, tree path).
    #[error("invalid {what} '{value}': {reason}")]
    Invalid {
        /// What the value is.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Credentials git cannot use; the value is deliberately not kept.
    #[error("invalid git credentials: the {field} {reason}")]
    InvalidCredentials {
        /// `username` or `password`.
        field: &'static str,
        /// Why it is refused.
        reason: &'static str,
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
    /// A path asked for is not a directory in the revision's tree.
    #[error("no directory '{path}' at revision {rev} in the mirror of {url}")]
    PathNotFound {
        /// The path asked for, relative to the repository root.
        path: String,
        /// The revision.
        rev: String,
        /// Repository URL.
        url: String,
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

/// A [`GitError::Io`].
pub(crate) fn io_error(op: &'static str, path: &std::path::Path, source: io::Error) -> GitError {
    GitError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

//! Errors of the Helm driver. Every stderr they carry was redacted (see
//! [`Redactor`](super::Redactor)) and cut to its last [`STDERR_LIMIT`] bytes before it was stored.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// At most this many bytes of Helm's stderr are kept in an error (the end, where Helm prints its
/// `Error:` line).
pub const STDERR_LIMIT: usize = 8 * 1024;

/// The Helm action a [`HelmError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelmAction {
    /// `helm install`.
    Install,
    /// `helm upgrade`.
    Upgrade,
    /// `helm rollback`.
    Rollback,
    /// `helm uninstall`.
    Uninstall,
    /// `helm test`.
    Test,
    /// `helm status`.
    Status,
    /// `helm history`.
    History,
    /// `helm dependency build`.
    DependencyBuild,
    /// `helm version`.
    Version,
}

impl HelmAction {
    /// The Helm subcommand (`install`, `dependency build`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Upgrade => "upgrade",
            Self::Rollback => "rollback",
            Self::Uninstall => "uninstall",
            Self::Test => "test",
            Self::Status => "status",
            Self::History => "history",
            Self::DependencyBuild => "dependency build",
            Self::Version => "version",
        }
    }
}

impl fmt::Display for HelmAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of [`HelmDriver`](super::HelmDriver) calls. `subject` names what the call was about:
/// `<namespace>/<release>` for release actions, the chart directory for `dependency build`, the
/// binary for `version`.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The helm binary could not be started.
    #[error("failed to start helm at {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for the helm process or reading its output failed.
    #[error("failed to wait for helm {action} for {subject}: {source}")]
    Wait {
        /// The action.
        action: HelmAction,
        /// What it was about.
        subject: String,
        /// Why.
        source: std::io::Error,
    },
    /// The driver's state directory (Helm's cache, config, data; temporary values files) could not
    /// be prepared or written.
    #[error("failed to prepare helm state at {path}: {source}")]
    State {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The values to pass are not a JSON object (nor `null`); Helm only takes maps.
    #[error(
        "failed to pass values to helm {action} for {subject}: values must be a map, not {kind}"
    )]
    InvalidValues {
        /// The action.
        action: HelmAction,
        /// What it was about.
        subject: String,
        /// The JSON kind of the values (`array`, `string`, ...).
        kind: &'static str,
    },
    /// Helm exited unsuccessfully.
    #[error("failed to run helm {action} for {subject} ({exit}): {stderr}")]
    Failed {
        /// The action.
        action: HelmAction,
        /// What it was about.
        subject: String,
        /// How it ended: `exit status 1`, or the signal.
        exit: String,
        /// Helm's stderr, redacted and cut to its end.
        stderr: String,
    },
    /// Helm did not finish within its time limit (the helm timeout plus the grace period) and was
    /// killed. A release action killed this way may leave the release `pending-*`.
    #[error("failed to run helm {action} for {subject} within {limit:?}, killed it: {stderr}")]
    TimedOut {
        /// The action.
        action: HelmAction,
        /// What it was about.
        subject: String,
        /// The limit that was exceeded.
        limit: Duration,
        /// What Helm printed to stderr until then, redacted and cut to its end.
        stderr: String,
    },
    /// Helm succeeded but its output was not what `-o json` (or `version`) promises.
    #[error("failed to parse the output of helm {action} for {subject}: {reason}")]
    Output {
        /// The action.
        action: HelmAction,
        /// What it was about.
        subject: String,
        /// What was wrong (never the output itself, which may contain values).
        reason: String,
    },
}

impl HelmError {
    /// A stable short category for Event reasons, condition messages and metric labels.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "HelmNotStarted",
            Self::Wait { .. } => "HelmLost",
            Self::State { .. } => "HelmStateError",
            Self::InvalidValues { .. } => "InvalidValues",
            Self::Failed { .. } => "HelmFailed",
            Self::TimedOut { .. } => "HelmTimedOut",
            Self::Output { .. } => "HelmOutputInvalid",
        }
    }

    /// Helm's redacted stderr, when the error carries it.
    #[must_use]
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Self::Failed { stderr, .. } | Self::TimedOut { stderr, .. } => Some(stderr),
            _ => None,
        }
    }

    /// Whether Helm said the release does not exist (`release: not found`).
    #[must_use]
    pub fn is_release_not_found(&self) -> bool {
        matches!(self, Self::Failed { stderr, .. } if stderr.contains(RELEASE_NOT_FOUND))
    }
}

/// What Helm v3 and v4 print when a release does not exist (`driver.ErrReleaseNotFound`), e.g.
/// `Error: uninstall: Release not loaded: web: release: not found`.
pub(crate) const RELEASE_NOT_FOUND: &str = "release: not found";

/// The last `limit` bytes of `text` (cut at a character boundary), marked when cut.
pub(crate) fn tail(text: &str, limit: usize) -> String {
    let text = text.trim_end();
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[...] {}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_at_a_character_boundary() {
        assert_eq!(tail("short\n", 10), "short");
        assert_eq!(tail("abcdef", 3), "[...] def");
        assert_eq!(tail("aé", 1), "[...] ", "a two-byte character is not split");
    }

    #[test]
    fn release_not_found_is_recognised_in_failed_errors_only() {
        let failed = HelmError::Failed {
            action: HelmAction::Uninstall,
            subject: "apps/web".to_owned(),
            exit: "exit status 1".to_owned(),
            stderr: "Error: uninstall: Release not loaded: web: release: not found".to_owned(),
        };
        assert!(failed.is_release_not_found());
        assert_eq!(failed.reason(), "HelmFailed");
        assert_eq!(
            failed.to_string(),
            "failed to run helm uninstall for apps/web (exit status 1): Error: uninstall: Release \
             not loaded: web: release: not found"
        );
    }
}

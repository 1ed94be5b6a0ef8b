//! `git-mirror`: a bare git mirror of a remote repository (Flux v1 `pkg/git`), shared by the
//! agent (its config repository) and the helm-operator (git chart sources, Helm Operator
//! `pkg/chartsync/git.go`).
//!
//! A [`Mirror`] is a bare repository under a work dir, kept current by [`Mirror::refresh`] /
//! [`Mirror::fetch`] and read in-process with gix through a [`MirrorReader`]: resolve a branch,
//! tag or (abbreviated) commit id, export a revision's files or one directory of them, list
//! commits and changed paths, tell whether a path was touched. The agent's sync tag is moved on
//! the remote by [`Mirror::move_sync_tag`].
//!
//! Two modes ([`MirrorMode`]): the agent's, which tracks one branch (and fetches every ref, as
//! Flux v1 did), and the operator's, which fetches all branches and tags and lets each caller
//! resolve its own ref.
//!
//! Network operations (clone, fetch, `ls-remote`, push) run the `git` CLI as a child process: gix
//! cannot push, the gix build we use has no https transport, and a child process lets us pass
//! exactly Flux v1's environment (plus `GIT_SSH_COMMAND` and `GIT_TERMINAL_PROMPT=0`) and kill it
//! (with its ssh) when the per-operation timeout expires. Reading (refs, commits, trees, blobs)
//! and creating the annotated sync tag object are done in-process with gix.
//!
//! With [`SshConfig`], every ssh connection uses only the given identity and verifies the host
//! key against the given known_hosts file (`StrictHostKeyChecking=yes`): unknown or changed host
//! keys are refused with [`GitError::HostKeyVerification`], never accepted. With
//! [`Credentials`], https remotes get basic auth through a credential helper that reads them
//! from the git child's environment: they never appear in the URL, the command line, logs,
//! errors or `Debug` output.
//!
//! Image automation writes commits straight into the mirror and pushes them by id
//! ([`Mirror::commit_files`], [`Mirror::push_branch`]), never forced.
//!
//! What this crate does not do: working clones, git notes, the write-access check or
//! `git secret`; it never force-pushes; it runs nothing in the background (callers schedule
//! fetches). URLs in logs and errors go through [`safe_url`], so credentials embedded in https
//! URLs are never logged either.

mod command;
mod commit;
mod config;
mod error;
mod mirror;
mod read;
mod url;

pub use commit::{FileChange, PushOutcome};
pub use config::{
    Credentials, DEFAULT_BRANCH, DEFAULT_EMAIL, DEFAULT_SYNC_TAG, DEFAULT_TIMEOUT, DEFAULT_USER,
    GitConfig, MirrorMode, MirrorState, SYNC_TAG_MESSAGE, SshConfig,
};
pub use error::GitError;
pub use mirror::Mirror;
pub use read::MirrorReader;
pub use url::safe_url;

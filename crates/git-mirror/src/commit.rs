//! Commits made in the mirror without a working clone, and pushing them to the branch.
//!
//! Image automation (Flux v1 `pkg/git/working.go`: clone, edit, commit, push) changes a few
//! files on top of the branch head. Here the new blobs, the edited trees and the commit object
//! are written straight into the bare mirror with gix ([`Mirror::commit_files`]), and the commit
//! is pushed by id to `refs/heads/<branch>` with the git CLI ([`Mirror::push_branch`]), never
//! forced: when the remote moved since our fetch the push is [`PushOutcome::Rejected`] and the
//! caller fetches, re-applies its change on the new head and tries again.
//!
//! What this module does not do: signing, git notes, deleting files, or merging.

use std::time::{SystemTime, UNIX_EPOCH};

use gix::object::tree::EntryKind;

use crate::error::GitError;
use crate::mirror::Mirror;

/// A file's new contents at a path relative to the repository root (`/`-separated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the repository root, `/`-separated (`apps/podinfo.yaml`).
    pub path: String,
    /// The whole new contents.
    pub contents: Vec<u8>,
}

/// What became of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote branch now points at the commit.
    Pushed,
    /// The remote refused a non-fast-forward update (someone pushed first); nothing changed.
    Rejected {
        /// git's (credential-free) explanation.
        message: String,
    },
}

/// Whether git's error output says the push was refused because the remote moved.
fn is_non_fast_forward(message: &str) -> bool {
    [
        "non-fast-forward",
        "fetch first",
        "[rejected]",
        "stale info",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

impl Mirror {
    /// Writes a commit whose parent is `parent` (a revision the mirror knows) and whose tree is
    /// the parent's with `changes` applied (new files are added as regular files; existing files
    /// keep their mode). Author and committer are the configured git user and e-mail, the time is
    /// now (UTC). Returns the new commit id (hex). No ref is moved: push it with
    /// [`Mirror::push_branch`].
    ///
    /// # Errors
    ///
    /// [`GitError::NotFetched`], [`GitError::UnknownRevision`], [`GitError::Invalid`] for an
    /// empty change set, an unusable path or identity, and repository errors.
    pub fn commit_files(
        &mut self,
        parent: &str,
        changes: &[FileChange],
        message: &str,
    ) -> Result<String, GitError> {
        if changes.is_empty() {
            return Err(GitError::Invalid {
                what: "commit",
                value: message.lines().next().unwrap_or_default().to_owned(),
                reason: "no file changes".to_owned(),
            });
        }
        crate::mirror::check_identity("git user", &self.config().user)?;
        crate::mirror::check_identity("git email", &self.config().email)?;
        let reader = self.reader()?;
        let repo = reader.open()?;
        let parent_id = reader.resolve_id(&repo, parent)?;
        let repo_error = |what: String, source: gix::Error| reader.repo_error(what, source);
        let tree_id = repo
            .find_commit(parent_id)
            .and_then(|c| c.tree_id())
            .map_err(|e| repo_error(format!("reading the tree of {parent_id}"), e))?;
        let mut editor = repo
            .edit_tree(tree_id)
            .map_err(|e| repo_error(format!("editing the tree of {parent_id}"), e))?;
        for change in changes {
            let path = crate::read::tree_path_components(&change.path)?.join("/");
            if path.is_empty() {
                return Err(GitError::Invalid {
                    what: "path",
                    value: change.path.clone(),
                    reason: "empty path".to_owned(),
                });
            }
            let kind = match editor.get(path.as_str()).map(|e| e.mode().kind()) {
                Some(gix::object::tree::EntryKind::BlobExecutable) => EntryKind::BlobExecutable,
                Some(EntryKind::Blob) | None => EntryKind::Blob,
                Some(other) => {
                    return Err(GitError::Invalid {
                        what: "path",
                        value: change.path.clone(),
                        reason: format!("is a {other:?} in the tree, not a file"),
                    });
                }
            };
            let blob = repo
                .write_blob(&change.contents)
                .map_err(|e| repo_error(format!("writing the blob of {}", change.path), e))?
                .detach();
            editor
                .upsert(path.as_str(), kind, blob)
                .map_err(|e| repo_error(format!("updating {} in the tree", change.path), e))?;
        }
        let new_tree = editor
            .write()
            .map_err(|e| repo_error("writing the new tree".to_owned(), e))?
            .detach();
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let signature = gix::actor::Signature {
            name: self.config().user.as_str().into(),
            email: self.config().email.as_str().into(),
            time: gix::date::Time { seconds, offset: 0 },
        };
        let mut text = message.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let commit = gix::objs::Commit {
            tree: new_tree,
            parents: vec![parent_id].into(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: text.into(),
            extra_headers: Vec::new(),
        };
        let id = repo
            .write_object(&commit)
            .map_err(|e| repo_error("writing the commit".to_owned(), e))?
            .detach();
        Ok(id.to_string())
    }

    /// Pushes `commit` to the configured branch on the remote (`git push origin
    /// <commit>:refs/heads/<branch>`, never forced). A refusal because the remote moved is
    /// [`PushOutcome::Rejected`], not an error.
    ///
    /// # Errors
    ///
    /// [`GitError::Invalid`] for an unusable branch name, and the git CLI's other failures
    /// ([`GitError::Command`], [`GitError::Timeout`], [`GitError::HostKeyVerification`]).
    pub fn push_branch(&mut self, commit: &str) -> Result<PushOutcome, GitError> {
        let branch_ref =
            crate::mirror::full_ref_name("branch", "refs/heads/", &self.config().branch)?;
        match self.run_git(
            "push",
            &[
                // Without the advice, git's last lines say why it refused.
                "-c",
                "advice.pushUpdateRejected=false",
                "push",
                "--quiet",
                "--no-verify",
                "origin",
                &format!("{commit}:{branch_ref}"),
            ],
        ) {
            Ok(_) => {
                tracing::info!(url = %self.safe_url(), branch = %self.config().branch, commit, "pushed commit");
                Ok(PushOutcome::Pushed)
            }
            Err(GitError::Command { message, .. }) if is_non_fast_forward(&message) => {
                tracing::info!(url = %self.safe_url(), branch = %self.config().branch, "push rejected: the remote moved");
                Ok(PushOutcome::Rejected { message })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_non_fast_forward;

    #[test]
    fn rejections_are_recognised() {
        assert!(is_non_fast_forward(
            "! [rejected]        abc -> master (fetch first); error: failed to push some refs"
        ));
        assert!(is_non_fast_forward(
            "! [rejected] abc -> master (non-fast-forward)"
        ));
        assert!(!is_non_fast_forward(
            "fatal: Could not read from remote repository."
        ));
    }
}

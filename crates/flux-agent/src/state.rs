//! The sync marker: the last revision applied without errors, kept as the git tag `flux-sync`
//! (`--git-sync-tag`, `--git-label`) or as the annotation `flux.weave.works/sync-hwm` on the
//! deploy-key Secret (`--sync-state=secret`, forced by `--git-readonly`), as Flux v1
//! `pkg/sync/{git,secret}.go` did.
//!
//! The tag is moved without force-pushing (delete, then push: see `git_mirror::Mirror::move_sync_tag`),
//! so repositories whose hooks refuse forced pushes accept it.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};

use git_mirror::{GitError, Mirror};

/// The annotation that holds the sync marker with `--sync-state=secret`.
pub const SYNC_HWM_ANNOTATION: &str = "flux.weave.works/sync-hwm";

/// Errors reading or moving the marker.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The git tag could not be read or moved.
    #[error("failed to read or move the sync tag")]
    Git(#[from] GitError),
    /// The Secret could not be read or patched.
    #[error("failed to read or write the sync marker on the Secret {name}")]
    Secret {
        /// The Secret name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A blocking git task failed to run.
    #[error("the git task stopped unexpectedly")]
    Task,
}

/// Where the marker lives.
#[derive(Clone)]
pub enum SyncMarker {
    /// The git tag, in the mirror's remote.
    Git,
    /// The annotation on this Secret.
    Secret {
        /// The Secret API in the agent's namespace.
        api: Box<Api<Secret>>,
        /// The Secret name.
        name: String,
    },
}

fn lock(mirror: &Mutex<Mirror>) -> std::sync::MutexGuard<'_, Mirror> {
    mirror
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SyncMarker {
    /// The revision the marker points at, if any.
    ///
    /// # Errors
    ///
    /// When the tag or the Secret cannot be read.
    pub async fn get(&self, mirror: &Arc<Mutex<Mirror>>) -> Result<Option<String>, StateError> {
        match self {
            Self::Git => {
                let mirror = Arc::clone(mirror);
                Ok(
                    tokio::task::spawn_blocking(move || lock(&mirror).sync_tag())
                        .await
                        .map_err(|_| StateError::Task)??,
                )
            }
            Self::Secret { api, name } => {
                let secret = api
                    .get_opt(name)
                    .await
                    .map_err(|source| StateError::Secret {
                        name: name.clone(),
                        source: Box::new(source),
                    })?;
                Ok(secret
                    .and_then(|s| s.metadata.annotations)
                    .and_then(|a| a.get(SYNC_HWM_ANNOTATION).cloned()))
            }
        }
    }

    /// Moves the marker to `revision`.
    ///
    /// # Errors
    ///
    /// When the tag cannot be pushed or the Secret patched.
    pub async fn set(&self, mirror: &Arc<Mutex<Mirror>>, revision: &str) -> Result<(), StateError> {
        match self {
            Self::Git => {
                let mirror = Arc::clone(mirror);
                let revision = revision.to_owned();
                Ok(
                    tokio::task::spawn_blocking(move || lock(&mirror).move_sync_tag(&revision))
                        .await
                        .map_err(|_| StateError::Task)??,
                )
            }
            Self::Secret { api, name } => {
                let patch = serde_json::json!({"metadata": {"annotations": {SYNC_HWM_ANNOTATION: revision}}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|source| StateError::Secret {
                        name: name.clone(),
                        source: Box::new(source),
                    })?;
                Ok(())
            }
        }
    }
}

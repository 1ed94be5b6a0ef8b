//! One automation run, and the loop that schedules them (Flux v1 `pkg/daemon/loop.go`
//! automation poll and `pkg/daemon/images.go` `pollForNewAutomatedWorkloadImages`).
//!
//! A run: fetch the branch, export the head, read its manifests, find the automated workloads,
//! tell the registry scanner which repositories (and credentials) to track, plan the updates
//! from the scanner's cache, edit the files byte-exactly ([`crate::automation::edit`]), write
//! one commit into the mirror and push it. A push the remote refuses because it moved is
//! retried from the fetch, up to [`PUSH_ATTEMPTS`] times, re-planning on the new head (so an
//! update someone else already made, or that no longer applies, is dropped); nothing is ever
//! forced.
//!
//! Runs happen every `--automation-interval`, when the scanner reports new tags, and when asked
//! (the API). Not done here: `.flux.yaml` updaters (workloads from generated manifests get an
//! error saying so), policy commits, releases asked for by `fluxctl release`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use git_mirror::{FileChange, Mirror, PushOutcome};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;

use crate::automation::edit::{self, ImageChange, Target};
use crate::automation::plan::{self, Change, Plan, TagSource, WorkloadUpdate};
use crate::automation::workloads::{self, Workload};
use crate::manifests::{self, LoadOptions};
use crate::registry::{RegistryCredentials, Scanner};

/// How many times a run fetches, re-plans and pushes when the remote keeps moving.
pub const PUSH_ATTEMPTS: usize = 3;

/// Settings of the automation runs.
#[derive(Clone, Debug)]
pub struct AutomationConfig {
    /// The git paths read (as `--git-path`).
    pub paths: Vec<String>,
    /// How manifests are read (default namespace, generation).
    pub load_options: LoadOptions,
    /// The commit-message suffix (`[ci skip]`), if any.
    pub ci_skip: Option<String>,
    /// Where a revision is exported for a run (deleted afterwards).
    pub export_dir: PathBuf,
    /// `--automation-interval`.
    pub interval: Duration,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    /// The commit pushed, if any.
    pub commit: Option<String>,
    /// The new image references committed.
    pub images: Vec<String>,
    /// Problems per workload (`<namespace>:<kind>/<name>`), for workloads asking for automation.
    pub errors: BTreeMap<String, Vec<String>>,
    /// Workloads found, automated or not (for the API).
    pub workloads: Vec<Workload>,
}

/// Why a run failed as a whole (per-workload problems are in [`RunReport::errors`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Fetching, exporting, committing or pushing failed.
    #[error("failed to {what}: {source}")]
    Git {
        /// What was being done.
        what: &'static str,
        /// The mirror's error.
        source: git_mirror::GitError,
    },
    /// The manifests could not be read completely; nothing is committed from a partial read.
    #[error("failed to read the manifests of {revision}: {message}")]
    Read {
        /// The revision.
        revision: String,
        /// The first problem.
        message: String,
    },
    /// The remote kept moving.
    #[error("failed to push after {attempts} attempts: the remote kept moving ({message})")]
    Contended {
        /// Attempts made.
        attempts: usize,
        /// git's last refusal.
        message: String,
    },
    /// A blocking task died.
    #[error("the automation task stopped unexpectedly")]
    Task,
}

/// [`TagSource`] over the scanner's cache.
struct ScannerTags<'a>(&'a Scanner);

impl TagSource for ScannerTags<'_> {
    fn tags(&self, repository: &str) -> Option<Vec<(String, Option<SystemTime>)>> {
        self.0
            .tags(repository)
            .map(|tags| tags.into_iter().map(|t| (t.tag, t.created)).collect())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs automation: [`run_once`] on a timer, on new tags and on `wake`, until dropped.
pub struct Automator {
    /// The config repository's mirror (shared with the sync loop).
    pub mirror: Arc<Mutex<Mirror>>,
    /// The registry scanner.
    pub scanner: Scanner,
    /// Reads pull secrets and service accounts.
    pub client: kube::Client,
    /// Settings.
    pub config: AutomationConfig,
}

impl Automator {
    /// One run; see the module docs.
    ///
    /// # Errors
    ///
    /// [`RunError`] when git fails, the manifests cannot be read completely, or the remote kept
    /// moving for [`PUSH_ATTEMPTS`] attempts.
    pub async fn run_once(&self) -> Result<RunReport, RunError> {
        let mut last_refusal = String::new();
        for attempt in 1..=PUSH_ATTEMPTS {
            let head = self
                .blocking(|m| m.refresh())
                .await?
                .map_err(|source| RunError::Git {
                    what: "fetch the config repository",
                    source,
                })?;
            let found = self.read_workloads(&head).await?;
            self.track(&found).await;
            let plan = plan::plan(&found, &ScannerTags(&self.scanner));
            let mut report = RunReport {
                errors: plan.errors.clone(),
                ..RunReport::default()
            };
            let (changes, images) = self.edit_files(&head, &plan, &mut report.errors)?;
            report.workloads = found;
            if changes.is_empty() {
                return Ok(report);
            }
            let message = plan::commit_message(&images, self.config.ci_skip.as_deref());
            let base = head.clone();
            let commit = self
                .blocking(move |m| m.commit_files(&base, &changes, &message))
                .await?
                .map_err(|source| RunError::Git {
                    what: "commit the image updates",
                    source,
                })?;
            let pushed = commit.clone();
            match self
                .blocking(move |m| m.push_branch(&pushed))
                .await?
                .map_err(|source| RunError::Git {
                    what: "push the image updates",
                    source,
                })? {
                PushOutcome::Pushed => {
                    tracing::info!(commit = %commit, images = ?images, "automation committed image updates");
                    report.commit = Some(commit);
                    report.images = images;
                    return Ok(report);
                }
                PushOutcome::Rejected { message } => {
                    tracing::info!(
                        attempt,
                        "the remote moved while automating; fetching and re-applying"
                    );
                    last_refusal = message;
                }
            }
        }
        Err(RunError::Contended {
            attempts: PUSH_ATTEMPTS,
            message: last_refusal,
        })
    }

    /// Runs `f` on the mirror in a blocking task.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Mirror) -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let mirror = Arc::clone(&self.mirror);
        tokio::task::spawn_blocking(move || f(&mut lock(&mirror)))
            .await
            .map_err(|_| RunError::Task)
    }

    /// Exports `head` and reads its workloads; refuses a partial read.
    async fn read_workloads(&self, head: &str) -> Result<Vec<Workload>, RunError> {
        let dir = self.config.export_dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
        let (target, rev) = (dir.clone(), head.to_owned());
        self.blocking(move |m| m.export(&rev, &target))
            .await?
            .map_err(|source| RunError::Git {
                what: "export the head",
                source,
            })?;
        let (paths, options) = (self.config.paths.clone(), self.config.load_options.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = manifests::load(&dir, &paths, &options, &manifests::NoScopes);
            (loaded, dir)
        })
        .await
        .map_err(|_| RunError::Task)?;
        let (loaded, dir) = loaded;
        if !loaded.complete {
            // Keep the export: edit_files reads from it only when the read was complete.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(RunError::Read {
                revision: head.to_owned(),
                message: loaded
                    .errors
                    .first()
                    .map_or_else(|| "incomplete".to_owned(), ToString::to_string),
            });
        }
        Ok(workloads::workloads(&loaded.manifests))
    }

    /// Tells the scanner what to track: the repositories of the automated workloads, each with
    /// the pull credentials of every workload using it.
    async fn track(&self, found: &[Workload]) {
        let mut by_repository: BTreeMap<String, RegistryCredentials> = BTreeMap::new();
        let mut secrets_cache: BTreeMap<(String, String), Option<RegistryCredentials>> =
            BTreeMap::new();
        for workload in found.iter().filter(|w| w.is_automated()) {
            let namespace = workload.namespace.clone().unwrap_or_default();
            let names = self.pull_secret_names(workload, &namespace).await;
            let mut credentials = RegistryCredentials::default();
            for name in names {
                let key = (namespace.clone(), name.clone());
                if !secrets_cache.contains_key(&key) {
                    let read = self.read_pull_secret(&namespace, &name).await;
                    secrets_cache.insert(key.clone(), read);
                }
                if let Some(Some(found)) = secrets_cache.get(&key) {
                    credentials.merge(found);
                }
            }
            for container in &workload.containers {
                by_repository
                    .entry(container.image.canonical_name())
                    .or_default()
                    .merge(&credentials);
            }
        }
        self.scanner.track(by_repository.into_iter().collect());
    }

    /// The pull secret names of a workload: its pod template's, then its service account's.
    async fn pull_secret_names(&self, workload: &Workload, namespace: &str) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = workload.image_pull_secrets.iter().cloned().collect();
        let account = workload.service_account.as_deref().unwrap_or("default");
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match accounts.get_opt(account).await {
            Ok(Some(sa)) => {
                for reference in sa.image_pull_secrets.unwrap_or_default() {
                    names.insert(reference.name);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(namespace, account, error = %e, "failed to read a service account")
            }
        }
        names
    }

    /// The credentials of one pull secret; `None` (logged) when it is missing or unusable.
    async fn read_pull_secret(&self, namespace: &str, name: &str) -> Option<RegistryCredentials> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                tracing::warn!(namespace, name, "image pull secret not found");
                return None;
            }
            Err(e) => {
                tracing::warn!(namespace, name, error = %e, "failed to read an image pull secret");
                return None;
            }
        };
        let kind = secret.type_.unwrap_or_default();
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        match RegistryCredentials::from_secret(&kind, &data) {
            Ok(credentials) => Some(credentials),
            Err(e) => {
                tracing::warn!(namespace, name, error = %e, "unusable image pull secret");
                None
            }
        }
    }

    /// Applies the plan to the exported files; returns the changed files and the images they
    /// now name. A workload whose edit fails is dropped with an error; the others stay.
    fn edit_files(
        &self,
        head: &str,
        plan: &Plan,
        errors: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<(Vec<FileChange>, Vec<String>), RunError> {
        let dir = &self.config.export_dir;
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut images: BTreeSet<String> = BTreeSet::new();
        for update in &plan.updates {
            if update.source.ends_with(crate::generate::CONFIG_FILENAME) {
                errors
                    .entry(update.id.to_string())
                    .or_default()
                    .push(format!(
                        "not updated: {} comes from {}, whose updaters are not supported yet",
                        update.id, update.source
                    ));
                continue;
            }
            let text = match files.get(&update.source) {
                Some(text) => text.clone(),
                None => match std::fs::read_to_string(dir.join(&update.source)) {
                    Ok(text) => text,
                    Err(e) => {
                        errors
                            .entry(update.id.to_string())
                            .or_default()
                            .push(format!("failed to read {} at {head}: {e}", update.source));
                        continue;
                    }
                },
            };
            match edit_workload(&text, &self.config.load_options.default_namespace, update) {
                Ok(edited) => {
                    images.extend(update.containers.iter().map(|c| c.target.to_string()));
                    files.insert(update.source.clone(), edited);
                }
                Err(e) => {
                    tracing::error!(workload = %update.id, file = %update.source, error = %e, "image update dropped");
                    errors
                        .entry(update.id.to_string())
                        .or_default()
                        .push(format!("failed to update {}: {e}", update.source));
                }
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        let changes = files
            .into_iter()
            .map(|(path, text)| FileChange {
                path,
                contents: text.into_bytes(),
            })
            .collect();
        Ok((changes, images.into_iter().collect()))
    }

    /// Runs until dropped: [`Automator::run_once`] every interval, when the scanner reports
    /// changed repositories, and on `wake`. Each report goes to `on_report`.
    pub async fn run(
        self,
        mut changed: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
        wake: Arc<tokio::sync::Notify>,
        on_report: impl Fn(&Result<RunReport, RunError>) + Send,
    ) {
        loop {
            let result = self.run_once().await;
            match &result {
                Ok(report) => {
                    for (workload, problems) in &report.errors {
                        for problem in problems {
                            tracing::warn!(%workload, %problem, "automation problem");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "automation run failed"),
            }
            on_report(&result);
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                Some(repositories) = changed.recv() => {
                    tracing::info!(?repositories, "new image tags; running automation");
                }
                () = wake.notified() => {}
            }
        }
    }
}

/// The edits of one workload in one file's text.
fn edit_workload(
    text: &str,
    default_namespace: &str,
    update: &WorkloadUpdate,
) -> Result<String, edit::EditError> {
    let target = Target {
        kind: update.kind.clone(),
        name: update.name.clone(),
        namespace: update.namespace.clone(),
    };
    let mut changes = Vec::new();
    for container in &update.containers {
        match &container.change {
            Change::Image(image) => changes.push(ImageChange::Container {
                container: container.container.clone(),
                image: image.clone(),
            }),
            Change::Values(values) => {
                for value in values {
                    changes.push(ImageChange::Value {
                        path: value.path.clone(),
                        value: value.value.clone(),
                    });
                }
            }
        }
    }
    edit::update_images(text, default_namespace, &target, &changes)
}

/// The export directory of automation runs under the agent's work dir.
#[must_use]
pub fn export_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("automation-export")
}

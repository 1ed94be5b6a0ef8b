//! `flux-agent`: keeps a cluster equal to a git config repository and bumps image tags in it
//! (Flux v1's fluxd: git -> cluster sync, and registry -> git image automation).
//!
//! [`run`] wires the modules together: the deploy key ([`identity`]), the git mirror ([`git_mirror`]),
//! reading manifests ([`manifests`], [`generate`]), applying and collecting them ([`sync`]),
//! the sync marker ([`state`]), the HTTP API ([`api`]) and metrics ([`metrics`]). The loop
//! fetches every `--git-poll-interval`, syncs on a new commit, every `--sync-interval` and when
//! asked (`POST /api/flux/v11/notify`), one sync at a time, each bounded by `--sync-timeout`.
//! The marker moves only to a revision applied without errors.
//!
//! Beside the loop run the registry scanner ([`registry`]) and image automation
//! ([`automation`]): unless `--git-readonly` or `--registry-disable-scanning`, the repositories
//! of automated workloads are scanned, and tag bumps are committed and pushed; a pushed commit
//! wakes the loop so it is applied at once.

pub mod api;
pub mod args;
pub mod automation;
pub mod generate;
pub mod identity;
pub mod manifests;
pub mod metrics;
pub mod registry;
pub mod state;
pub mod sync;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

pub use args::Args;

use api::{AgentState, lock};
use git_mirror::{GitConfig, Mirror, MirrorMode, SshConfig};
use identity::KeySecret;
use manifests::LoadOptions;
use state::SyncMarker;
use sync::{GcMode, SyncConfig, SyncReport, Syncer};

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest wait between retries of an unreachable repository.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No cluster configuration, or the cluster refused.
    #[error("failed to connect to the cluster")]
    Kube(#[from] kube::Error),
    /// The deploy key could not be read or stored.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// The registry scanner could not be set up (a bad glob or `--docker-config`).
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// A listener could not be bound, or the work directory prepared.
    #[error("failed to {action}")]
    Io {
        /// What was being done.
        action: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let action = action.into();
    move |source| AgentError::Io { action, source }
}

/// Runs the agent until Ctrl-C / SIGTERM.
///
/// # Errors
///
/// When the cluster, the deploy key or a listener cannot be set up.
pub async fn run(args: Args) -> Result<(), AgentError> {
    let client = kube::Client::try_default().await?;
    run_until(args, client, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// The known_hosts file ssh verifies host keys against: `--ssh-known-hosts`, else the
/// `known_hosts` key of the deploy-key Secret written to the work directory, else an empty file
/// (so an unknown host is refused, never trusted).
async fn known_hosts(
    args: &Args,
    secrets: &Api<Secret>,
    work_dir: &Path,
) -> Result<PathBuf, AgentError> {
    if let Some(path) = &args.ssh_known_hosts {
        return Ok(path.clone());
    }
    let from_secret = secrets
        .get_opt(&args.k8s_secret_name)
        .await?
        .and_then(|s| s.data)
        .and_then(|d| d.get("known_hosts").map(|b| b.0.clone()))
        .unwrap_or_default();
    let path = work_dir.join("known_hosts");
    std::fs::write(&path, from_secret).map_err(io("write the known_hosts file"))?;
    Ok(path)
}

/// Runs the agent against `client` until `shutdown` resolves (tests and the demo call this).
///
/// # Errors
///
/// When the deploy key or a listener cannot be set up.
pub async fn run_until(
    args: Args,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let namespace = client.default_namespace().to_owned();
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("flux-agent-{}", std::process::id())));
    std::fs::create_dir_all(&work_dir).map_err(io(format!(
        "create the work directory {}",
        work_dir.display()
    )))?;
    let key_secret = KeySecret {
        namespace: namespace.clone(),
        name: args.k8s_secret_name.clone(),
        key: args.k8s_secret_data_key.clone(),
    };
    let identity = identity::load_or_generate(&client, &key_secret).await?;
    let identity_file = work_dir.join("identity");
    identity.write_private_key(&identity_file)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let known_hosts_file = known_hosts(&args, &secrets, &work_dir).await?;
    let paths = args.paths();
    let git_config = GitConfig {
        url: args.git_url.clone(),
        branch: args.git_branch.clone(),
        timeout: args.git_timeout.0,
        sync_tag: args.sync_tag().to_owned(),
        user: args.git_user.clone(),
        email: args.git_email.clone(),
        ssh: Some(SshConfig {
            identity_file,
            known_hosts_file,
        }),
        mode: MirrorMode::Branch,
        credentials: None,
    };
    let mirror = Arc::new(Mutex::new(Mirror::new(
        git_config,
        &work_dir.join("mirror"),
    )));
    let marker = if args.git_readonly || args.sync_state == args::SyncStateKind::Secret {
        SyncMarker::Secret {
            api: Box::new(secrets.clone()),
            name: args.k8s_secret_name.clone(),
        }
    } else {
        SyncMarker::Git
    };
    let safe_url = git_mirror::safe_url(&args.git_url);
    let metrics = metrics::Metrics::new()?;
    let automate = !args.git_readonly && !args.automation.registry_disable_scanning;
    if !automate {
        tracing::info!(
            readonly = args.git_readonly,
            scanning_disabled = args.automation.registry_disable_scanning,
            "image automation is off"
        );
    }
    let scanner = if automate {
        Some(automation::service::scanner(
            &args.automation,
            &work_dir,
            &metrics,
        )?)
    } else {
        None
    };
    let image_notify = scanner.clone().map(|scanner| {
        Box::new(move |repository: &str| scanner.notify(repository)) as api::ImageNotify
    });
    let state = Arc::new(AgentState {
        version: VERSION.to_owned(),
        public_key: identity.public_key().to_owned(),
        fingerprint: identity.fingerprint(),
        safe_url: safe_url.clone(),
        branch: args.git_branch.clone(),
        paths: paths.clone(),
        mirror: Arc::clone(&mirror),
        synced: Mutex::new(None),
        wake: tokio::sync::Notify::new(),
        metrics,
        workloads: Mutex::new(Vec::new()),
        image_notify,
        jobs: tokio::sync::Mutex::new(()),
        loaded: Mutex::new(None),
        syncs: tokio::sync::watch::channel(0).0,
    });
    let listener = tokio::net::TcpListener::bind(args.listen.0)
        .await
        .map_err(io(format!("listen on {}", args.listen.0)))?;
    tracing::info!(address = %listener.local_addr().map_err(io("read the listen address"))?, "serving the API");
    let router = api::router(Arc::clone(&state), args.listen_metrics.is_none());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    if let Some(address) = args.listen_metrics {
        let metrics_listener = tokio::net::TcpListener::bind(address.0)
            .await
            .map_err(io(format!("listen on {}", address.0)))?;
        let router = api::metrics_router(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(metrics_listener, router).await;
        });
    }
    let gc = match (
        args.sync_garbage_collection,
        args.sync_garbage_collection_dry,
    ) {
        (_, true) => GcMode::Dry,
        (true, false) => GcMode::On,
        (false, false) => GcMode::Off,
    };
    let sync_config = SyncConfig {
        sync_set: sync::sync_set_name(&safe_url, &args.git_branch, &paths),
        gc,
        force_conflicts: args.sync_force_conflicts,
        allowed_namespaces: args.k8s_allow_namespace.clone(),
    };
    let export_dir = args.export_dir.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        let memory_backed =
            shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly());
        if memory_backed {
            // Unique per agent: tests run several agents in one process.
            static AGENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = AGENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            shm.join(format!("flux-agent-{}-{n}-export", std::process::id()))
        } else {
            work_dir.join("export")
        }
    });
    let load_options = LoadOptions {
        default_namespace: args
            .k8s_default_namespace
            .clone()
            .unwrap_or_else(|| namespace.clone()),
        manifest_generation: args.manifest_generation,
        generator_timeout: args.sync_timeout.0,
    };
    let automation = scanner.map(|scanner| {
        automation::service::Service::start(
            scanner,
            Arc::clone(&state),
            Arc::clone(&mirror),
            client.clone(),
            automation::service::automation_config(
                &args.automation,
                paths.clone(),
                load_options.clone(),
                &work_dir,
            ),
        )
    });
    let mut agent = Loop {
        args,
        state,
        marker,
        syncer: Syncer::new(client),
        sync_config,
        load_options,
        export_dir,
        paths,
    };
    tokio::select! {
        () = agent.run() => {}
        () = shutdown => tracing::info!("shutting down"),
    }
    if let Some(automation) = automation {
        automation.stop();
    }
    Ok(())
}

/// Writes the tree of `rev` in the bare repository `git_dir` into `dest` with `git archive`
/// piped into `tar -x` (both with a clean environment).
fn archive_export(git_dir: &Path, rev: &str, dest: &Path) -> std::io::Result<()> {
    use std::process::{Command, Stdio};
    std::fs::create_dir_all(dest)?;
    let mut archive = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["archive", "--format=tar", rev])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = archive
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout from git archive"))?;
    let tar = Command::new("tar")
        .args(["-x", "--no-same-owner", "-C"])
        .arg(dest)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(stdout)
        .stderr(Stdio::null())
        .status()?;
    let archived = archive.wait()?;
    if archived.success() && tar.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "git archive ({archived}) | tar -x ({tar}) failed"
        )))
    }
}

/// The fetch-and-sync loop.
struct Loop {
    args: Args,
    state: Arc<AgentState>,
    marker: SyncMarker,
    syncer: Syncer,
    sync_config: SyncConfig,
    load_options: LoadOptions,
    /// Where a revision is checked out to be read.
    export_dir: PathBuf,
    paths: Vec<String>,
}

impl Loop {
    async fn run(&mut self) {
        let mut synced_head: Option<String> = None;
        let mut last_sync = Instant::now();
        let mut backoff = Duration::from_secs(1);
        match self.marker.get(&self.state.mirror).await {
            Ok(marker) => *lock(&self.state.synced) = marker,
            Err(e) => tracing::warn!(error = %e, "failed to read the sync marker"),
        }
        loop {
            let mirror = Arc::clone(&self.state.mirror);
            let refreshed = tokio::task::spawn_blocking(move || lock(&mirror).refresh()).await;
            let mut wait = self.args.git_poll_interval.0;
            match refreshed {
                Ok(Ok(head)) => {
                    self.state.metrics.git_ready.set(1);
                    backoff = Duration::from_secs(1);
                    let due = last_sync.elapsed() >= self.args.sync_interval.0;
                    if synced_head.as_deref() != Some(head.as_str()) || due {
                        self.state.metrics.queue_length.set(1);
                        if self.sync(&head).await {
                            synced_head = Some(head);
                        }
                        self.state.metrics.queue_length.set(0);
                        last_sync = Instant::now();
                    }
                }
                Ok(Err(e)) => {
                    self.state.metrics.git_ready.set(0);
                    tracing::warn!(error = %e, retry_in = ?backoff, "failed to fetch the config repository; keeping the last synced state");
                    wait = wait.min(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(_) => tracing::error!("the git task stopped unexpectedly"),
            }
            let sleep_for = wait.min(
                self.args
                    .sync_interval
                    .0
                    .saturating_sub(last_sync.elapsed())
                    .max(Duration::from_millis(100)),
            );
            tokio::select! {
                () = tokio::time::sleep(sleep_for) => {}
                () = self.state.wake.notified() => {
                    synced_head = None;
                }
            }
        }
    }

    /// One sync of `head`; true when it was applied without errors.
    async fn sync(&mut self, head: &str) -> bool {
        let state = Arc::clone(&self.state);
        let _job = state.jobs.lock().await;
        let started = Instant::now();
        let timeout = self.args.sync_timeout.0;
        let outcome = tokio::time::timeout(timeout, self.sync_inner(head)).await;
        let clean = match outcome {
            Ok(Ok((loaded_errors, report))) => {
                let failures = loaded_errors.len() + report.errors.len();
                let succeeded = report.applied.len() + report.unchanged;
                #[allow(clippy::cast_precision_loss)]
                {
                    self.state
                        .metrics
                        .sync_manifests
                        .with_label_values(&["true"])
                        .set(succeeded as f64);
                    self.state
                        .metrics
                        .sync_manifests
                        .with_label_values(&["false"])
                        .set(failures as f64);
                }
                for error in &loaded_errors {
                    tracing::error!(%error, "manifest not read");
                }
                for error in &report.errors {
                    tracing::error!(%error, "object not synced");
                }
                tracing::info!(
                    revision = head,
                    applied = report.applied.len(),
                    unchanged = report.unchanged,
                    deleted = report.deleted.len(),
                    would_delete = ?report.would_delete,
                    errors = failures,
                    "sync finished"
                );
                failures == 0 && report.gc_skipped.is_none()
            }
            Ok(Err(message)) => {
                tracing::error!(revision = head, error = %message, "sync failed");
                false
            }
            Err(_) => {
                tracing::error!(revision = head, ?timeout, "sync timed out");
                false
            }
        };
        self.state
            .metrics
            .sync_duration
            .with_label_values(&[if clean { "true" } else { "false" }])
            .observe(started.elapsed().as_secs_f64());
        self.state.syncs.send_modify(|n| *n += 1);
        if clean {
            let readonly_git = self.args.git_readonly && matches!(self.marker, SyncMarker::Git);
            if !readonly_git {
                match self.marker.set(&self.state.mirror, head).await {
                    Ok(()) => *lock(&self.state.synced) = Some(head.to_owned()),
                    Err(e) => tracing::error!(error = %e, "failed to move the sync marker"),
                }
            }
        }
        clean
    }

    async fn sync_inner(
        &mut self,
        head: &str,
    ) -> Result<(Vec<manifests::ManifestError>, SyncReport), String> {
        let started = Instant::now();
        self.syncer
            .discover()
            .await
            .map_err(|e| format!("failed to discover the API: {e}"))?;
        let cached = lock(&self.state.loaded)
            .as_ref()
            .filter(|(rev, _)| rev == head)
            .map(|(_, loaded)| Arc::clone(loaded));
        let reusable = !self.args.manifest_generation && cached.is_some();
        let loaded = match cached {
            Some(loaded) if reusable => loaded,
            _ => {
                *lock(&self.state.loaded) = None;
                let loaded = Arc::new(self.read_revision(head).await?);
                *lock(&self.state.loaded) = Some((head.to_owned(), Arc::clone(&loaded)));
                loaded
            }
        };
        let read = started.elapsed();
        let report = self.syncer.sync(&loaded, &self.sync_config).await;
        tracing::info!(read = ?read, reused = reusable, apply = ?(started.elapsed() - read), manifests = loaded.manifests.len(), "sync phases");
        let errors = loaded.errors.clone();
        Ok((errors, report))
    }

    /// Exports `head` from the mirror and reads its manifests.
    async fn read_revision(&self, head: &str) -> Result<manifests::LoadedManifests, String> {
        let started = Instant::now();
        let export = self.export_dir.clone();
        let _ = std::fs::remove_dir_all(&export);
        let mirror = Arc::clone(&self.state.mirror);
        let (target, rev) = (export.clone(), head.to_owned());
        tokio::task::spawn_blocking(move || {
            let mirror = lock(&mirror);
            // `git archive | tar -x` writes thousands of files several times faster than
            // walking the tree object by object; the mirror's own export is the fallback.
            if archive_export(mirror.path(), &rev, &target).is_ok() {
                return Ok(());
            }
            let _ = std::fs::remove_dir_all(&target);
            mirror.export(&rev, &target)
        })
        .await
        .map_err(|_| "the git task stopped unexpectedly".to_owned())?
        .map_err(|e| format!("failed to export {head}: {e}"))?;
        let exported = started.elapsed();
        let loaded = tokio::task::block_in_place(|| {
            manifests::load(&export, &self.paths, &self.load_options, &self.syncer.api)
        });
        tracing::debug!(export = ?exported, parse = ?(started.elapsed() - exported), "read phases");
        // Removed in the background, out of the sync's time; renamed first, so that the next
        // export cannot meet it.
        static TRASH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TRASH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let trash = export.with_extension(format!("old-{n}"));
        if std::fs::rename(&export, &trash).is_ok() {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(trash));
        } else {
            let _ = std::fs::remove_dir_all(&export);
        }
        Ok(loaded)
    }
}

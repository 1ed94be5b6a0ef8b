//! `helm-operator`: reconciles `HelmRelease` (helm.fluxcd.io/v1) and `FluxHelmRelease`
//! (helm.integrations.flux.weave.works/v1alpha2) objects into Helm releases with the real `helm`
//! CLI (v3 and v4), as the Helm Operator 1.4 did, with its known bugs fixed: releases stuck in
//! `pending-*` are recovered, resyncs never create revisions (no helm process when in sync),
//! deleting an object uninstalls its release even if the operator was down (finalizer),
//! `valuesFrom` ConfigMaps and Secrets are watched, chart pull secrets work, and the chart cache
//! has a size cap.
//!
//! Modules, in pipeline order: [`chart`] (git, Helm repository and OCI sources), [`values`],
//! [`helm`] (the driver and Helm's release storage), [`classify`] (the pure decision),
//! [`reconcile`] (one action and its remediation), [`status`], [`annotate`]; wired by
//! [`controller`], served by [`api`], measured by [`metrics`].

pub mod annotate;
pub mod api;
pub mod args;
pub mod chart;
pub mod classify;
pub mod context;
pub mod controller;
pub mod helm;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod values;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use args::Args;
use kube::runtime::events::{Recorder, Reporter};
use model::fluxhelmrelease::ChartRepoSettings;
use model::{FluxHelmRelease, HelmRelease, HelmVersion, OperatorDefaults};
use tokio::sync::{Notify, Semaphore, watch};

use crate::context::Context;

/// The operator's version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable cluster configuration.
    #[error("failed to configure the kubernetes client")]
    Kube(#[source] kube::Error),
    /// The kubeconfig file could not be read.
    #[error("failed to read kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The HTTP server could not listen.
    #[error("failed to listen on {address}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A helm driver could not be set up.
    #[error("failed to set up helm {version}")]
    Helm {
        /// The version.
        version: &'static str,
        /// Why.
        #[source]
        source: helm::HelmError,
    },
    /// A chart source could not be set up.
    #[error("failed to set up the chart sources: {0}")]
    Charts(String),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

async fn client(args: &Args) -> Result<kube::Client, Error> {
    let Some(path) = &args.kubeconfig else {
        return kube::Client::try_default().await.map_err(Error::Kube);
    };
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
            path: path.clone(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|source| Error::Kubeconfig {
        path: path.clone(),
        source,
    })?;
    kube::Client::try_from(config).map_err(Error::Kube)
}

/// Runs the operator until SIGINT or SIGTERM.
///
/// # Errors
///
/// [`Error`] when it cannot start (cluster configuration, listen address, helm state dirs).
pub async fn run(args: Args) -> Result<(), Error> {
    run_until(args, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    })
    .await
}

/// Runs the operator until `shutdown` resolves; in-flight reconciles finish first. The entry
/// point tests and `cargo xtask demo` use.
///
/// # Errors
///
/// As [`run`].
pub async fn run_until(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = client(&args).await?;
    let kubeconfig = args
        .kubeconfig
        .clone()
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from));
    let mut helms = BTreeMap::new();
    for version in &args.enabled_helm_versions {
        let (binary, dir) = match version.0 {
            HelmVersion::V3 => (&args.helm3_path, "helm-v3"),
            HelmVersion::V4 => (&args.helm4_path, "helm-v4"),
        };
        let driver = helm::HelmCli::new(
            binary.clone(),
            version.0,
            kubeconfig.clone(),
            args.work_dir.join(dir),
        )
        .map_err(|source| Error::Helm {
            version: version.0.as_str(),
            source,
        })?;
        helms.insert(version.0, Arc::new(driver));
    }
    let metrics = metrics::Metrics::new()?;
    let cache = args
        .cache
        .open()
        .map_err(|e| Error::Charts(e.to_string()))?;
    let repo = chart::repo::RepoCharts::new(cache.clone(), args.repo.options())
        .map_err(|e| Error::Charts(e.to_string()))?;
    let oci = chart::oci::OciCharts::new(cache, args.oci.options());
    let git = chart::git::GitCharts::new(chart::git::GitChartsConfig {
        work_dir: args.work_dir.join("git"),
        poll_interval: args.git_poll_interval.0,
        timeout: args.git_timeout.0,
        default_ref: args.git_default_ref.clone(),
        ssh: args.ssh_identity.is_file().then(|| git_mirror::SshConfig {
            identity_file: args.ssh_identity.clone(),
            known_hosts_file: args.ssh_known_hosts.clone(),
        }),
    })
    .map(Arc::new)
    .map_err(|e| Error::Charts(e.to_string()))?;
    let values =
        values::ValuesComposer::new(client.clone()).map_err(|e| Error::Charts(e.to_string()))?;
    let reporter = Reporter {
        controller: "helm-operator".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics: metrics.clone(),
        defaults: OperatorDefaults {
            git_default_ref: args.git_default_ref.clone(),
            helm_version: args.default_helm_version(),
        },
        fhr_repo: args.git_url.as_ref().map(|url| ChartRepoSettings {
            git_url: url.clone(),
            git_branch: args.git_branch.clone(),
            charts_path: args.git_charts_path.clone(),
        }),
        helms,
        storage: helm::storage::ReleaseStorage::new(client.clone()),
        git,
        repo,
        oci,
        values,
        annotator: annotate::Annotator::new(client.clone()),
        update_chart_deps: args.update_chart_deps,
        resync_interval: args.charts_sync_interval.0,
        references: context::ReferenceIndex::default(),
        workers: Semaphore::new(args.workers.max(1)),
        worker_count: args.workers.max(1),
        failures: Mutex::default(),
        recorder: Recorder::new(client, reporter),
        counts: Mutex::default(),
        git_sources: Mutex::default(),
        helm_counted: Mutex::default(),
    });

    let listener = tokio::net::TcpListener::bind(args.listen.0)
        .await
        .map_err(|source| Error::Listen {
            address: args.listen.0,
            source,
        })?;
    let sync_git = Arc::new(Notify::new());
    let router = api::router(Arc::new(api::ApiState {
        metrics,
        sync_git: Arc::clone(&sync_git),
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(%error, "HTTP server stopped");
            }
        }
    });
    let poller = ctx.git.start_polling();
    let housekeeping = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move {
            let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
            let mut round: u64 = 0;
            loop {
                ticks.tick().await;
                ctx.count_helm_processes();
                round += 1;
                // Every minute, after the controllers filled their caches.
                if round.is_multiple_of(12) {
                    ctx.drop_unused_mirrors().await;
                }
            }
        }
    });
    let on_request = tokio::spawn({
        let git = Arc::clone(&ctx.git);
        async move {
            loop {
                sync_git.notified().await;
                for (mirror, result) in git.refresh_all().await {
                    if let Err(error) = result {
                        tracing::warn!(%mirror, %error, "git chart mirror refresh failed");
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tracing::info!(
        listen = %args.listen.0,
        workers = args.workers,
        versions = ?ctx.helms.keys().map(|v| v.as_str()).collect::<Vec<_>>(),
        "helm-operator started"
    );
    let namespace = args.allow_namespace.as_deref();
    let releases =
        controller::run::<HelmRelease>(Arc::clone(&ctx), namespace, stopped(stop_rx.clone()));
    if ctx.fhr_repo.is_some() {
        let legacy = controller::run::<FluxHelmRelease>(
            Arc::clone(&ctx),
            namespace,
            stopped(stop_rx.clone()),
        );
        futures::join!(releases, legacy);
    } else {
        releases.await;
    }
    poller.abort();
    on_request.abort();
    housekeeping.abort();
    let _ = server.await;
    Ok(())
}

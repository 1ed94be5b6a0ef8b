//! `kube-sim`: an in-memory Kubernetes API server that real kubectl, Helm 3, Helm 4 and kube-rs
//! accept. Test infrastructure for every Kubernetes-facing test and the local demo, since no
//! real kube-apiserver can be installed here; its fidelity is proven by those real clients
//! working against it unmodified (see `../shared/reference/kube-sim-surface.md`).
//!
//! Two ways to run it: [`KubeSim::start`] on a free loopback port for tests (stopped on drop),
//! and the `kube-sim` binary for the demo. It speaks plain HTTP on loopback by default, or HTTPS
//! with a self-signed certificate and a bearer token ([`Config::tls`], [`Config::token`]) so the
//! clients' TLS and token paths are exercised too. Not a validator: schemas, immutable fields and
//! admission are not checked, so a test can pass here that a real cluster would refuse.

pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod openapi;
pub mod patching;
pub mod protobuf;
pub mod registry;
pub mod selectors;
pub mod server;
pub mod stats;
pub mod status;
pub mod store;
pub mod time;
pub mod tls;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use server::Shared;
use stats::Stats;
use store::Store;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Keep the store in this file across restarts (demo use): loaded at start, saved every
    /// second when something changed and at shutdown.
    pub state_file: Option<PathBuf>,
    /// Events kept for watches to resume from.
    pub history: usize,
    /// Serve HTTPS with this certificate (see [`tls::TlsMaterial::self_signed`]); the
    /// kubeconfig carries it as the certificate authority.
    pub tls: Option<tls::TlsMaterial>,
    /// Require `Authorization: Bearer <token>` on every request; the kubeconfig carries it.
    pub token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_file: None,
            history: store::DEFAULT_HISTORY,
            tls: None,
            token: None,
        }
    }
}

impl Config {
    /// How clients reach a server started with this configuration.
    #[must_use]
    pub fn access(&self) -> Access {
        Access {
            certificate_pem: self.tls.as_ref().map(|m| m.certificate_pem.clone()),
            token: self.token.clone(),
        }
    }

    /// The URL of a server started with this configuration at `address`.
    #[must_use]
    pub fn url(&self, address: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{address}")
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be bound.
    #[error("failed to listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime could not be built or the state file read.
    #[error("failed to start kube-sim: {0}")]
    Runtime(#[source] std::io::Error),
    /// The TLS certificate could not be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A running kube-sim, stopped when dropped.
pub struct KubeSim {
    url: String,
    access: Access,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How clients reach a server: its certificate authority (HTTPS) and bearer token, if any.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The server certificate in PEM, when serving HTTPS.
    pub certificate_pem: Option<String>,
    /// The bearer token, when one is required.
    pub token: Option<String>,
}

/// A kubeconfig for a server at `url` (plain HTTP, no credentials), default namespace `default`.
#[must_use]
pub fn kubeconfig(url: &str) -> String {
    kubeconfig_with(url, &Access::default())
}

/// A kubeconfig for a server at `url` reached with `access`.
#[must_use]
pub fn kubeconfig_with(url: &str, access: &Access) -> String {
    use base64::Engine as _;
    let ca = access
        .certificate_pem
        .as_ref()
        .map_or_else(String::new, |pem| {
            format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        });
    let user = access
        .token
        .as_ref()
        .map_or_else(|| "{}".to_owned(), |t| format!("\n    token: {t}"));
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}{ca}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user: {user}\n"
    )
}

fn load_store(config: &Config) -> Result<Store, StartError> {
    let mut store = Store::new(config.history);
    if let Some(path) = &config.state_file
        && path.exists()
    {
        let text = std::fs::read_to_string(path).map_err(StartError::Runtime)?;
        let dump: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            StartError::Runtime(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        store.load(&dump);
    }
    Ok(store)
}

fn save_state(shared: &Shared, path: &Path) {
    let dump = {
        let mut store = shared.lock();
        if !store.dirty {
            return;
        }
        store.dirty = false;
        store.dump()
    };
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, dump.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        tracing::warn!(path = %path.display(), "failed to save the kube-sim state file");
    }
}

/// Serves until `shutdown` resolves (the binary's entry point).
///
/// # Errors
///
/// When the listener cannot be bound or the state file read.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<SocketAddr, StartError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(StartError::Runtime)?;
    let shared = Arc::new(shared_state(&config, address)?);
    run(
        listener,
        Arc::clone(&shared),
        config.state_file.clone(),
        config.tls.clone(),
        shutdown,
    )
    .await;
    Ok(address)
}

fn shared_state(config: &Config, address: SocketAddr) -> Result<Shared, StartError> {
    let mut shared = Shared::new(load_store(config)?, address.to_string());
    shared.token = config.token.clone();
    Ok(shared)
}

async fn run(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    state_file: Option<PathBuf>,
    material: Option<tls::TlsMaterial>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    if let Some(path) = state_file.clone() {
        let saver = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                save_state(&saver, &path);
            }
        });
    }
    let janitor = Arc::clone(&shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            janitor.lock().tick();
        }
    });
    let app = server::app(Arc::clone(&shared));
    let served = async move {
        let result = match material {
            Some(material) => axum::serve(tls::TlsListener::new(listener, &material), app).await,
            None => axum::serve(listener, app).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "kube-sim server stopped");
        }
    };
    tokio::select! {
        () = served => {}
        () = shutdown => {}
    }
    if let Some(path) = state_file {
        save_state(&shared, &path);
    }
}

impl KubeSim {
    /// Starts a server on a free loopback port in a thread of its own.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub fn start() -> Result<Self, StartError> {
        Self::start_with(Config::default())
    }

    /// Starts a server with `config`.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound or the state file read.
    pub fn start_with(config: Config) -> Result<Self, StartError> {
        let std_listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
                address: config.listen,
                source,
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(StartError::Runtime)?;
        let address = std_listener.local_addr().map_err(StartError::Runtime)?;
        let shared = Arc::new(shared_state(&config, address)?);
        let material = config.tls.clone();
        let access = config.access();
        let scheme = if material.is_some() { "https" } else { "http" };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-sim")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state_file = config.state_file.clone();
        let served = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kube-sim".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(listener) => {
                            run(listener, served, state_file, material, async {
                                let _ = rx.await;
                            })
                            .await;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "kube-sim could not adopt its listener")
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(StartError::Runtime)?;
        Ok(Self {
            url: format!("{scheme}://{address}"),
            access,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig for this server (with its certificate authority and token, if any).
    #[must_use]
    pub fn kubeconfig(&self) -> String {
        kubeconfig_with(&self.url, &self.access)
    }

    /// Writes [`KubeSim::kubeconfig`] to `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// A copy of the request counters and log.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Clears the request counters and log.
    pub fn reset_stats(&self) {
        self.shared.lock().stats = Stats::default();
    }

    /// The current resourceVersion.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    /// The stored object of `plural` in `group` (empty for core) named `name` in `namespace`
    /// (empty for cluster-scoped), as the server holds it. For tests to check state without a
    /// client.
    #[must_use]
    pub fn object(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        let key = registry::ResourceKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
        };
        self.shared
            .lock()
            .lookup(&key, namespace, name)
            .map(|o| (*o).clone())
    }

    /// Names (`namespace/name`, or `name` for cluster-scoped) of every stored object of
    /// `plural` in `group`, sorted.
    #[must_use]
    pub fn names(&self, group: &str, plural: &str) -> Vec<String> {
        let key = registry::ResourceKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
        };
        let store = self.shared.lock();
        let mut names: Vec<String> = store
            .iter(&key, None)
            .map(|o| {
                let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = o["metadata"]["name"].as_str().unwrap_or_default();
                if ns.is_empty() {
                    name.to_owned()
                } else {
                    format!("{ns}/{name}")
                }
            })
            .collect();
        names.sort();
        names
    }

    /// Ends every open watch and compacts the history past them: each watcher resumes, gets an
    /// in-stream `410 Expired` and must relist, as after etcd compaction on a real cluster.
    pub fn expire_watches(&self) {
        self.shared.lock().expire_watches();
    }

    /// Drops the event history: watches resuming from an earlier resourceVersion get an
    /// in-stream 410 `Expired`, as after etcd compaction.
    pub fn compact_history(&self) {
        self.shared.lock().compact();
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

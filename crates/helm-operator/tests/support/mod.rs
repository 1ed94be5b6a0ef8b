//! Test support shared by the helm-operator integration tests: a kube client for a kube-sim, the
//! helm binaries `cargo xtask tools` fetched, and the fixture charts.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // Shared by several test binaries.

use std::path::PathBuf;

use kube_sim::KubeSim;

/// A kube client for `sim`, built from the kubeconfig kube-sim writes.
pub async fn kube_client(sim: &KubeSim) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The path of a test tool from its environment variable, set by `cargo xtask test`
/// (`KUBE_SIM_HELM3` = helm 3.17.3, `KUBE_SIM_HELM4` = helm 4.1.4).
pub fn tool(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable).unwrap_or_else(|| {
        panic!("{variable} is not set: run the tests with `cargo xtask test`, which fetches helm")
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{variable} points at {}, which does not exist",
        path.display()
    );
    path
}

/// A fixture chart directory under `tests/fixtures/charts` (`hello`, `mongodb`).
pub fn chart(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts")
        .join(name)
}

/// Every file of a fixture chart as `(path under prefix, content)`, for committing to a repo.
pub fn chart_files(name: &str, prefix: &str) -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &rel, out);
            } else {
                out.push((rel, std::fs::read_to_string(entry.path()).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&chart(name), prefix, &mut files);
    files
}

/// Which helm major version a test runs the operator with.
#[derive(Clone, Copy, Debug)]
pub enum Helm {
    /// helm 3.17.3.
    V3,
    /// helm 4.1.4.
    V4,
}

impl Helm {
    /// `v3` / `v4`.
    pub fn flag(self) -> &'static str {
        match self {
            Self::V3 => "v3",
            Self::V4 => "v4",
        }
    }

    /// The real binary.
    pub fn binary(self) -> PathBuf {
        match self {
            Self::V3 => tool("KUBE_SIM_HELM3"),
            Self::V4 => tool("KUBE_SIM_HELM4"),
        }
    }
}

/// A kube-sim with the HelmRelease and FluxHelmRelease CRDs registered, a kubeconfig file and a
/// scratch directory.
pub struct Cluster {
    /// The API server.
    pub sim: KubeSim,
    /// A client of it.
    pub client: kube::Client,
    /// Scratch directory (kubeconfig, helm wrappers, operator work dir).
    pub dir: test_support::TempDir,
}

impl Cluster {
    /// Starts kube-sim and registers the CRDs (waiting until they are served).
    pub async fn start(label: &str) -> Self {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::api::{Api, PostParams};
        let sim = KubeSim::start().unwrap();
        let client = kube_client(&sim).await;
        let dir = test_support::TempDir::new(label);
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for file in model::crds::rendered().unwrap() {
            let crd: CustomResourceDefinition = serde_yaml::from_str(&file.yaml).unwrap();
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let cluster = Self { sim, client, dir };
        let releases: kube::Api<model::HelmRelease> = kube::Api::all(cluster.client.clone());
        let legacy: kube::Api<model::FluxHelmRelease> = kube::Api::all(cluster.client.clone());
        cluster
            .eventually("the CRDs to be served", || async {
                releases.list(&Default::default()).await.is_ok()
                    && legacy.list(&Default::default()).await.is_ok()
            })
            .await;
        cluster
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Creates a namespace.
    pub async fn namespace(&self, name: &str) {
        self.apply_yaml(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
        ))
        .await;
    }

    /// Creates or replaces an object from YAML by server-side apply (manager `test`).
    pub async fn apply_yaml(&self, yaml: &str) {
        use kube::api::{Api, DynamicObject, Patch, PatchParams};
        use kube::discovery::{ApiResource, Scope};
        let object: DynamicObject = serde_yaml::from_str(yaml).unwrap();
        let types = object.types.clone().unwrap();
        let discovery = kube::discovery::Discovery::new(self.client.clone())
            .run()
            .await
            .unwrap();
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", types.api_version.as_str()));
        let (resource, caps): (ApiResource, _) = discovery
            .get(group)
            .and_then(|g| {
                g.versioned_resources(version)
                    .into_iter()
                    .find(|(r, _)| r.kind == types.kind)
            })
            .unwrap_or_else(|| panic!("kind {} not served", types.kind));
        let name = object.metadata.name.clone().unwrap();
        let api: Api<DynamicObject> = match (caps.scope, object.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            (Scope::Namespaced, None) => {
                Api::namespaced_with(self.client.clone(), "default", &resource)
            }
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    }

    /// Deletes an object by group/plural.
    pub async fn delete(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) {
        use kube::api::{Api, DeleteParams, DynamicObject};
        use kube::discovery::ApiResource;
        let resource = ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// A HelmRelease's status (`null` when none).
    pub fn hr_status(&self, namespace: &str, name: &str) -> serde_json::Value {
        self.sim
            .object("helm.fluxcd.io", "helmreleases", namespace, name)
            .map(|o| o["status"].clone())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Whether a HelmRelease object exists.
    pub fn hr_exists(&self, namespace: &str, name: &str) -> bool {
        self.sim
            .object("helm.fluxcd.io", "helmreleases", namespace, name)
            .is_some()
    }

    /// The status of condition `kind` of a HelmRelease (`True`, `False`, `Unknown`, or empty).
    pub fn hr_condition(&self, namespace: &str, name: &str, kind: &str) -> String {
        self.hr_status(namespace, name)["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .and_then(|c| c["status"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// `helm history -o json` of a release, run with the real helm (not counted).
    pub fn history(&self, helm: Helm, namespace: &str, release: &str) -> Vec<serde_json::Value> {
        let home = self.dir.path().join("assert-helm");
        let output = std::process::Command::new(helm.binary())
            .args(["history", release, "-n", namespace, "-o", "json"])
            .env("KUBECONFIG", self.kubeconfig())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap();
        if !output.status.success() {
            return Vec::new();
        }
        serde_json::from_slice(&output.stdout).unwrap_or_default()
    }

    /// The latest revision and its status, `None` when there is no release.
    pub fn latest(&self, helm: Helm, namespace: &str, release: &str) -> Option<(u64, String)> {
        self.history(helm, namespace, release).last().map(|r| {
            (
                r["revision"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
    }

    /// Waits up to 60 s for `condition`.
    pub async fn eventually<F, Fut>(&self, what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !condition().await {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// A helm wrapper script that appends a line to a count file, then runs the real helm: the
/// test's own count of helm processes the operator started.
pub struct CountingHelm {
    /// The wrapper script.
    pub path: PathBuf,
    count_file: PathBuf,
}

impl CountingHelm {
    /// A wrapper of `helm` in `dir`.
    pub fn new(dir: &std::path::Path, helm: Helm) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("helm-{}", helm.flag()));
        let count_file = dir.join(format!("helm-{}.calls", helm.flag()));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                count_file.display(),
                helm.binary().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { path, count_file }
    }

    /// The helm invocations so far (their arguments).
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.count_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The operator running in this process, stopped (gracefully) when dropped or by [`Operator::stop`].
pub struct Operator {
    /// Its HTTP port.
    pub port: u16,
    /// Its helm, counted.
    pub helm: CountingHelm,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    /// Starts the operator against `cluster` with `helm` only, a 1 s resync and git poll, plus
    /// `extra` flags.
    pub async fn start(cluster: &Cluster, helm: Helm, extra: &[&str]) -> Self {
        use clap::Parser;
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let port = test_support::free_port();
        let counting = CountingHelm::new(cluster.dir.path(), helm);
        let helm_flag = match helm {
            Helm::V3 => format!("--helm3-path={}", counting.path.display()),
            Helm::V4 => format!("--helm4-path={}", counting.path.display()),
        };
        let mut argv = vec![
            "helm-operator".to_owned(),
            format!("--kubeconfig={}", cluster.kubeconfig().display()),
            format!("--listen=127.0.0.1:{port}"),
            format!("--enabled-helm-versions={}", helm.flag()),
            helm_flag,
            "--charts-sync-interval=1s".to_owned(),
            "--git-poll-interval=1s".to_owned(),
            format!(
                "--work-dir={}",
                cluster.dir.path().join("operator").display()
            ),
            format!(
                "--ssh-known-hosts={}",
                cluster.dir.path().join("known_hosts").display()
            ),
            format!(
                "--ssh-identity={}",
                cluster.dir.path().join("identity").display()
            ),
        ];
        // A flag in `extra` replaces the default above.
        for flag in extra {
            let name = flag.split('=').next().unwrap_or(flag);
            argv.retain(|a| a.split('=').next() != Some(name));
        }
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let args = helm_operator::Args::parse_from(argv);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            helm_operator::run_until(args, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the operator did not start listening"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            port,
            helm: counting,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the operator and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// `GET path` or `POST path` on the operator's HTTP server: (status code, body).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (code, body)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

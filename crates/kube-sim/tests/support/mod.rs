//! Test support for kube-sim's conformance tests: temporary directories, and the real clients
//! (kubectl, helm 3, helm 4) run against a [`KubeSim`] with their caches and state in the test's
//! own directory, so tests share nothing.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // Shared by several test binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube_sim::KubeSim;

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub(crate) fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("kube-sim-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// The path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of a test tool from its environment variable, set by `cargo xtask test`.
pub(crate) fn tool(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable).unwrap_or_else(|| {
        panic!("{variable} is not set: run the tests with `cargo xtask test`, which fetches helm and kubectl")
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{variable} points at {}, which does not exist",
        path.display()
    );
    path
}

/// A client run against one kube-sim with its own kubeconfig and caches.
pub(crate) struct Client {
    binary: PathBuf,
    dir: TempDir,
    kubeconfig: PathBuf,
}

impl Client {
    /// `binary` (kubectl or helm) against `sim`.
    pub(crate) fn new(binary: PathBuf, sim: &KubeSim, label: &str) -> Self {
        let dir = TempDir::new(label);
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Self {
            binary,
            dir,
            kubeconfig,
        }
    }

    /// The test's scratch directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        let home = self.dir.path();
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", home.join("kube-cache"))
            .env("HOME", home)
            .env("HELM_CONFIG_HOME", home.join("helm/config"))
            .env("HELM_CACHE_HOME", home.join("helm/cache"))
            .env("HELM_DATA_HOME", home.join("helm/data"))
            .env_remove("HELM_DRIVER");
        command
    }

    /// Runs the client; returns its output whatever the exit status.
    pub(crate) fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", self.binary.display()))
    }

    /// Runs the client and insists that it succeeds; returns stdout.
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "{} {} failed ({}):\nstdout: {}\nstderr: {}",
            self.binary.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the client and insists that it fails; returns stderr.
    pub(crate) fn fail(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            !output.status.success(),
            "{} {} succeeded but should have failed:\n{}",
            self.binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// A kube-rs client for `sim`.
pub(crate) async fn kube_client(sim: &KubeSim) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

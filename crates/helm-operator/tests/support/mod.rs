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
    assert!(path.is_file(), "{variable} points at {}, which does not exist", path.display());
    path
}

/// A fixture chart directory under `tests/fixtures/charts` (`hello`, `mongodb`).
pub fn chart(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charts").join(name)
}

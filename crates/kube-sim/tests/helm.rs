//! Helm 3.17.3 and Helm 4.1.4 (from npm, `cargo xtask tools`) against kube-sim, with a chart of a
//! Deployment, a Service, a ConfigMap, a pre-install hook Job and a test hook Pod:
//! `install --wait`, `upgrade --wait` with changed values, `history`, `rollback`, `test`,
//! `list -A`, `status`, `uninstall`, each step's state checked in the server; and a Deployment
//! that never becomes ready makes `upgrade --wait --timeout 5s` fail as on a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::path::PathBuf;

use kube_sim::KubeSim;
use serde_json::Value;
use support::{Client, tool};

fn chart() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts/sim-test")
        .display()
        .to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `(revision, status)` of each entry of `helm history -o json`.
fn history(helm: &Client, release: &str) -> Vec<(i64, String)> {
    json(&helm.run(&["history", release, "-n", "apps", "-o", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["revision"].as_i64().unwrap(),
                h["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The `status` label of each release Secret of `release`, by version.
fn release_secrets(sim: &KubeSim, release: &str) -> Vec<(String, String)> {
    sim.names("", "secrets")
        .into_iter()
        .filter(|n| n.starts_with(&format!("apps/sh.helm.release.v1.{release}.v")))
        .map(|n| {
            let name = n.trim_start_matches("apps/");
            let secret = sim.object("", "secrets", "apps", name).unwrap();
            (
                name.to_owned(),
                secret["metadata"]["labels"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn greeting(sim: &KubeSim, release: &str) -> String {
    sim.object("", "configmaps", "apps", release).unwrap()["data"]["greeting"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn lifecycle(helm_binary: PathBuf, label: &str) {
    let sim = KubeSim::start().unwrap();
    let helm = Client::new(helm_binary, &sim, label);
    let chart = chart();

    helm.run(&[
        "install",
        "web",
        &chart,
        "-n",
        "apps",
        "--create-namespace",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert_eq!(history(&helm, "web"), [(1, "deployed".to_owned())]);
    assert!(sim.object("apps", "deployments", "apps", "web").is_some());
    assert!(sim.object("", "services", "apps", "web").unwrap()["spec"]["clusterIP"].is_string());
    assert_eq!(greeting(&sim, "web"), "hello");
    let hook = sim
        .object("batch", "jobs", "apps", "web-pre-install")
        .expect("the pre-install hook Job ran");
    assert_eq!(hook["status"]["succeeded"], 1);
    assert_eq!(
        release_secrets(&sim, "web"),
        [(
            "sh.helm.release.v1.web.v1".to_owned(),
            "deployed".to_owned()
        )]
    );

    helm.run(&[
        "upgrade",
        "web",
        &chart,
        "-n",
        "apps",
        "--wait",
        "--timeout",
        "60s",
        "--set",
        "greeting=bye",
    ]);
    assert_eq!(
        history(&helm, "web"),
        [(1, "superseded".to_owned()), (2, "deployed".to_owned())]
    );
    assert_eq!(greeting(&sim, "web"), "bye");

    helm.run(&[
        "rollback",
        "web",
        "1",
        "-n",
        "apps",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let after_rollback = history(&helm, "web");
    assert_eq!(
        after_rollback.last(),
        Some(&(3, "deployed".to_owned())),
        "{after_rollback:?}"
    );
    assert_eq!(
        greeting(&sim, "web"),
        "hello",
        "the rollback restored revision 1's values"
    );

    let tested = helm.run(&["test", "web", "-n", "apps", "--timeout", "60s"]);
    assert!(tested.contains("Phase:          Succeeded"), "{tested}");
    assert_eq!(
        sim.object("", "pods", "apps", "web-test").unwrap()["status"]["phase"],
        "Succeeded"
    );

    let listed = json(&helm.run(&["list", "-A", "-o", "json"]));
    assert_eq!(listed[0]["name"], "web");
    assert_eq!(listed[0]["revision"], "3");
    assert_eq!(listed[0]["status"], "deployed");
    let status = json(&helm.run(&["status", "web", "-n", "apps", "-o", "json"]));
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 3);

    helm.run(&[
        "uninstall",
        "web",
        "-n",
        "apps",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert_eq!(
        json(&helm.run(&["list", "-A", "-o", "json"])),
        Value::Array(Vec::new())
    );
    assert!(sim.object("apps", "deployments", "apps", "web").is_none());
    assert!(sim.object("", "services", "apps", "web").is_none());
    assert!(sim.object("", "configmaps", "apps", "web").is_none());
    assert!(
        sim.names("apps", "replicasets").is_empty(),
        "the Deployment's ReplicaSets were collected"
    );
    assert!(
        release_secrets(&sim, "web").is_empty(),
        "the release history is gone"
    );
}

fn unready_upgrade_times_out(helm_binary: PathBuf, label: &str) {
    let sim = KubeSim::start().unwrap();
    let helm = Client::new(helm_binary, &sim, label);
    let chart = chart();
    helm.run(&[
        "install",
        "slow",
        &chart,
        "-n",
        "apps",
        "--create-namespace",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let started = std::time::Instant::now();
    let error = helm.fail(&[
        "upgrade",
        "slow",
        &chart,
        "-n",
        "apps",
        "--wait",
        "--timeout",
        "5s",
        "--set",
        "unready=true",
    ]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "it waited for its timeout"
    );
    assert!(
        error.contains("slow") || error.contains("deadline") || error.contains("timed out"),
        "{error}"
    );
    // As on a cluster: the failed revision is recorded and the previous one stays deployed.
    assert_eq!(
        history(&helm, "slow"),
        [(1, "deployed".to_owned()), (2, "failed".to_owned())]
    );
}

#[test]
fn helm_3_installs_upgrades_rolls_back_tests_and_uninstalls() {
    lifecycle(tool("KUBE_SIM_HELM3"), "helm3");
}

#[test]
fn helm_4_installs_upgrades_rolls_back_tests_and_uninstalls() {
    lifecycle(tool("KUBE_SIM_HELM4"), "helm4");
}

#[test]
fn helm_3_upgrade_waits_for_an_unready_deployment_and_fails() {
    unready_upgrade_times_out(tool("KUBE_SIM_HELM3"), "helm3-unready");
}

#[test]
fn helm_4_upgrade_waits_for_an_unready_deployment_and_fails() {
    unready_upgrade_times_out(tool("KUBE_SIM_HELM4"), "helm4-unready");
}

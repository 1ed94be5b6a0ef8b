#![allow(clippy::unwrap_used, clippy::expect_used)]
//! GitOps end to end on real parts: a new image tag in the registry ends as a Helm upgrade.
//!
//! The config repository (`file://`) holds the `hello` chart and an automated HelmRelease of it.
//! The agent (in-process) syncs the HelmRelease into kube-sim; the operator (in-process, real
//! helm 3) installs it. A newer tag pushed to the registry (Debian docker-registry) makes the
//! agent commit the bump with `[ci skip]`, sync it, and the operator upgrade the release:
//! `helm get values` shows the new image.

#[path = "../../flux-agent/tests/support/oci_push.rs"]
mod oci_push;
mod support;

use clap::Parser;
use oci_push::{ImageSpec, Pusher};
use support::{Cluster, Helm, Operator, chart_files};
use test_support::{BareRepo, Registry, free_port, run_git};

fn helm_release(host: &str, url: &str) -> String {
    format!(
        r#"apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: hello
  namespace: apps
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.chart-image: semver:~1.0
spec:
  releaseName: hello
  chart:
    git: {url}
    ref: main
    path: charts/hello
  values:
    image: {host}/demo/hello:1.0.0 # the app
"#
    )
}

/// `helm get values` of the release, as JSON.
fn values(cluster: &Cluster, namespace: &str, release: &str) -> Option<serde_json::Value> {
    let home = cluster.dir.path().join("assert-helm");
    let output = std::process::Command::new(Helm::V3.binary())
        .args(["get", "values", release, "-n", namespace, "-o", "json"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_tag_is_committed_synced_and_upgraded() {
    let cluster = Cluster::start("automation-e2e").await;
    cluster.namespace("apps").await;
    let dir = cluster.dir.path();

    let registry_dir = dir.join("registry");
    std::fs::create_dir_all(&registry_dir).unwrap();
    let registry = Registry::start(&registry_dir);
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    pusher
        .push_image(
            "demo/hello",
            "1.0.0",
            &ImageSpec::new("2026-01-01T00:00:01Z", "1.0.0"),
        )
        .await;

    let repo = BareRepo::new(dir, "config.git", "main");
    let release = helm_release(&host, &repo.file_url());
    let mut files = chart_files("hello", "charts/hello");
    files.push(("releases/hello.yaml".to_owned(), release.clone()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let first = repo.commit(&refs, &[], "initial");

    let operator = Operator::start(&cluster, Helm::V3, &[]).await;
    let port = free_port();
    let agent_args = flux_agent::Args::parse_from([
        "flux-agent".to_owned(),
        format!("--listen=127.0.0.1:{port}"),
        format!("--git-url={}", repo.file_url()),
        "--git-branch=main".to_owned(),
        "--git-path=releases".to_owned(),
        "--git-poll-interval=1s".to_owned(),
        "--git-user=Flux Bot".to_owned(),
        "--git-email=bot@example.com".to_owned(),
        "--automation-interval=1s".to_owned(),
        "--registry-scan-interval=1s".to_owned(),
        format!("--registry-insecure-host={host}"),
        format!("--work-dir={}", dir.join("agent").display()),
    ]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = cluster.client.clone();
    let agent = tokio::spawn(async move {
        flux_agent::run_until(agent_args, client, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    cluster
        .eventually("the release installed with 1.0.0", || async {
            values(&cluster, "apps", "hello")
                .is_some_and(|v| v["image"] == format!("{host}/demo/hello:1.0.0"))
        })
        .await;
    assert_eq!(repo.head().unwrap(), first, "nothing to automate yet");

    // CI pushes a new build.
    pusher
        .push_image(
            "demo/hello",
            "1.0.1",
            &ImageSpec::new("2026-01-01T00:00:02Z", "1.0.1"),
        )
        .await;
    cluster
        .eventually("the upgraded release", || async {
            values(&cluster, "apps", "hello")
                .is_some_and(|v| v["image"] == format!("{host}/demo/hello:1.0.1"))
        })
        .await;

    let message = run_git(repo.path(), &["log", "-1", "--format=%B", "main"]);
    assert_eq!(
        message.trim_end(),
        format!("Auto-release {host}/demo/hello:1.0.1\n\n[ci skip]")
    );
    let file = run_git(repo.path(), &["show", "main:releases/hello.yaml"]);
    assert_eq!(
        file.trim_end(),
        release.replace("hello:1.0.0 #", "hello:1.0.1 #").trim_end()
    );
    let history = cluster.history(Helm::V3, "apps", "hello");
    assert_eq!(history.len(), 2, "one install, one upgrade: {history:?}");

    let _ = stop.send(());
    let _ = agent.await;
    operator.stop().await;
}

//! The operator killed with SIGKILL in the middle of a slow install (its helm child dies with it,
//! as every process of a container does), then started again: the release left
//! `pending-install` is recovered and the HelmRelease ends `Released=True`. Under helm 3 and 4.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use support::{Cluster, CountingHelm, Helm, chart_files};
use test_support::BareRepo;

/// The operator binary in a process group of its own, killed with the whole group on drop.
struct OperatorProcess {
    child: Child,
}

impl OperatorProcess {
    fn start(cluster: &Cluster, helm: &CountingHelm, version: Helm) -> Self {
        let port = test_support::free_port();
        let helm_flag = match version {
            Helm::V3 => "--helm3-path",
            Helm::V4 => "--helm4-path",
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cluster.dir.path().join("operator.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_helm-operator"))
            .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--enabled-helm-versions={}", version.flag()))
            .arg(format!("{helm_flag}={}", helm.path.display()))
            .arg("--charts-sync-interval=1s")
            .arg("--git-poll-interval=1s")
            .arg(format!(
                "--chart-cache-dir={}",
                cluster.dir.path().join("chart-cache").display()
            ))
            .arg(format!(
                "--work-dir={}",
                cluster.dir.path().join("operator").display()
            ))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        Self { child }
    }

    /// SIGKILL to the operator and every process of its group (its helm children).
    fn kill_group(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

async fn killed_during_a_slow_install_then_recovered(version: Helm) {
    let cluster = Cluster::start("op-recovery").await;
    let repo = BareRepo::new(cluster.dir.path(), "config", "master");
    let files = chart_files("hello", "charts/hello");
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(&refs, &[], "chart");
    cluster.namespace("apps").await;
    let helm = CountingHelm::new(cluster.dir.path(), version);
    let mut operator = OperatorProcess::start(&cluster, &helm, version);
    cluster
        .apply_yaml(&format!(
            "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: slow\n  namespace: apps\nspec:\n  wait: true\n  timeout: 120\n  chart:\n    git: {}\n    path: charts/hello\n  values:\n    readyAfterSeconds: 8\n",
            repo.file_url()
        ))
        .await;
    cluster
        .eventually("the install to be in progress", || async {
            cluster.latest(version, "apps", "apps-slow") == Some((1, "pending-install".into()))
        })
        .await;
    operator.kill_group();
    assert_eq!(
        cluster.latest(version, "apps", "apps-slow"),
        Some((1, "pending-install".into())),
        "the killed install is left pending"
    );

    let _operator = OperatorProcess::start(&cluster, &helm, version);
    cluster
        .eventually("the recovered release Released=True", || async {
            cluster.hr_condition("apps", "slow", "Released") == "True"
        })
        .await;
    let (_, status) = cluster.latest(version, "apps", "apps-slow").unwrap();
    assert_eq!(status, "deployed");
    assert!(
        helm.calls().iter().any(|c| c.starts_with("uninstall")),
        "the pending install was cleaned up: {:?}",
        helm.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm3_killed_during_a_slow_install_then_recovered() {
    killed_during_a_slow_install_then_recovered(Helm::V3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm4_killed_during_a_slow_install_then_recovered() {
    killed_during_a_slow_install_then_recovered(Helm::V4).await;
}

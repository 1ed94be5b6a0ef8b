//! The live part of `cargo xtask demo`: the example config repository applied to a local
//! kube-sim by the real agent.
//!
//! Builds `kube-sim` and `flux-agent` (debug), commits `examples/` plus the generated CRDs into a
//! scratch git repository, starts kube-sim on a free loopback port and the agent against it
//! (`file://` remote, 1 s polling), waits for the first sync, prints what the cluster now holds
//! and whether the `flux-sync` tag moved, and stops both processes. Nothing outside the scratch
//! directory is touched.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{Server, free_port, start_kube_sim, wait_for_port};
use crate::procs::{build_binaries, commit_dir, git, http, kubeconfig_text};

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("failed to list {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `namespace/name` of each item of a list answer.
fn names(list: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(list).unwrap_or_default();
    value["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let name = i["metadata"]["name"].as_str().unwrap_or("?");
            match i["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_owned(),
            }
        })
        .collect()
}

/// Runs the live demo on `repo`.
pub(crate) fn run(root: &Path, repo: &Path) -> anyhow::Result<()> {
    println!("\ndemo: building kube-sim and flux-agent");
    let bin = build_binaries(root, false)?;
    let scratch = std::env::temp_dir().join(format!("flux-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let config = scratch.join("config");
    copy_tree(repo, &config)?;
    copy_tree(&root.join("manifests/crds"), &config.join("crds"))?;
    let head = commit_dir(&config, "the example config repository")?;

    let (sim, url) = start_kube_sim(&bin.join("kube-sim"))?;
    let kubeconfig = scratch.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&url))?;
    let port = free_port()?;
    println!(
        "demo: kube-sim at {url}; starting the agent on 127.0.0.1:{port} against file://{}",
        config.display()
    );
    let agent = Command::new(bin.join("flux-agent"))
        .args([
            format!("--git-url=file://{}", config.display()),
            "--git-poll-interval=1s".to_owned(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--work-dir={}", scratch.join("agent").display()),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.join("agent.log"))?)
        .spawn()
        .context("failed to start flux-agent")?;
    let agent = Server(agent);
    wait_for_port(port)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let synced = loop {
        let metrics = http(port, "GET", "/metrics", "").unwrap_or_default();
        let done = metrics
            .lines()
            .filter(|l| l.starts_with("flux_daemon_sync_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if done >= 1.0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !synced {
        let log = std::fs::read_to_string(scratch.join("agent.log")).unwrap_or_default();
        bail!("the agent did not finish a sync within 2 minutes; its log:\n{log}");
    }
    let sim_port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("kube-sim URL without a port")?;
    println!("demo: the agent synced; the cluster now holds:");
    for (what, path) in [
        ("namespaces", "/api/v1/namespaces"),
        ("deployments", "/apis/apps/v1/deployments"),
        ("HelmReleases", "/apis/helm.fluxcd.io/v1/helmreleases"),
        (
            "FluxHelmReleases",
            "/apis/helm.integrations.flux.weave.works/v1alpha2/fluxhelmreleases",
        ),
        (
            "CRDs",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        ),
    ] {
        let listed = names(&http(sim_port, "GET", path, "")?);
        println!("  {what}: {}", listed.join(", "));
    }
    let tag = git(
        &config,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "refs/tags/flux-sync^{commit}",
        ],
    )
    .unwrap_or_default();
    if tag == head {
        println!("demo: the flux-sync tag marks {head} as applied");
    } else {
        let log = std::fs::read_to_string(scratch.join("agent.log")).unwrap_or_default();
        println!(
            "demo: the flux-sync tag did not move (objects that failed to sync keep it back); agent log:\n{log}"
        );
    }
    drop(agent);
    drop(sim);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("demo: stopped kube-sim and the agent");
    Ok(())
}

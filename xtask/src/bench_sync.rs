//! `cargo xtask bench sync`: the agent's sync benchmark (issue #4).
//!
//! Generates a git repository of 5,000 manifests (50 Namespaces, and ConfigMaps, Deployments and
//! Services spread over them, one file each), then, with release builds:
//! - baseline: `kubectl apply --server-side -f DIR -R` of the same files against a fresh kube-sim;
//! - the agent against another fresh kube-sim: time of the first sync and of a no-op resync
//!   (from its `flux_daemon_sync_duration_seconds` metric), and its peak RSS (`VmHWM`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{Server, free_port, peak_rss_kib, start_kube_sim, wait_for_port};
use crate::procs::{build_binaries, commit_dir, http, kubeconfig_text};

const NAMESPACES: usize = 50;
const PER_NAMESPACE: usize = 33; // of each of ConfigMap, Deployment, Service: 50 + 50*99 = 5,000

fn write_repo(dir: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    for n in 0..NAMESPACES {
        let ns = format!("team-{n:02}");
        let ns_dir = dir.join(&ns);
        std::fs::create_dir_all(&ns_dir)?;
        std::fs::write(
            ns_dir.join("00-namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        )?;
        count += 1;
        for i in 0..PER_NAMESPACE {
            std::fs::write(
                ns_dir.join(format!("config-{i:02}.yaml")),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i:02}\n  namespace: {ns}\ndata:\n  index: \"{i}\"\n  greeting: hello from {ns}\n"
                ),
            )?;
            std::fs::write(
                ns_dir.join(format!("app-{i:02}.yaml")),
                format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i:02}\n  namespace: {ns}\n  labels: {{app: app-{i:02}}}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: app-{i:02}}}\n  template:\n    metadata:\n      labels: {{app: app-{i:02}}}\n    spec:\n      containers:\n      - name: app\n        image: nginx:1.25\n        ports:\n        - containerPort: 80\n"
                ),
            )?;
            std::fs::write(
                ns_dir.join(format!("svc-{i:02}.yaml")),
                format!(
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i:02}\n  namespace: {ns}\nspec:\n  selector: {{app: app-{i:02}}}\n  ports:\n  - port: 80\n    targetPort: 80\n"
                ),
            )?;
            count += 3;
        }
    }
    Ok(count)
}

/// `flux_daemon_sync_duration_seconds` count and sum of successful syncs.
fn sync_metric(port: u16) -> anyhow::Result<(u64, f64)> {
    let text = http(port, "GET", "/metrics", "")?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("success=\"true\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let count = value("flux_daemon_sync_duration_seconds_count").unwrap_or(0.0);
    let sum = value("flux_daemon_sync_duration_seconds_sum").unwrap_or(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((count as u64, sum))
}

fn wait_for_syncs(port: u16, count: u64, limit: Duration) -> anyhow::Result<(u64, f64)> {
    let deadline = Instant::now() + limit;
    loop {
        let (done, sum) = sync_metric(port).unwrap_or((0, 0.0));
        if done >= count {
            return Ok((done, sum));
        }
        if Instant::now() > deadline {
            bail!("the agent did not finish {count} clean sync(s) within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the sync benchmark.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    println!("bench: building kube-sim and flux-agent (release)");
    let bin = build_binaries(root, true)?;
    let scratch = std::env::temp_dir().join(format!("flux-bench-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let repo = scratch.join("repo");
    std::fs::create_dir_all(&repo)?;
    let count = write_repo(&repo)?;
    commit_dir(&repo, "5,000 manifests")?;
    println!("bench: {count} manifests in {}", repo.display());

    // Baseline: kubectl server-side apply of the same files against a fresh kube-sim.
    let (baseline_sim, baseline_url) = start_kube_sim(&bin.join("kube-sim"))?;
    let kubeconfig = scratch.join("baseline.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&baseline_url))?;
    let started = Instant::now();
    let output = Command::new("kubectl")
        .args(["apply", "--server-side", "-R", "-f"])
        .arg(&repo)
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBECACHEDIR", scratch.join("kube-cache"))
        .output()
        .context("failed to run kubectl")?;
    let kubectl_secs = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(baseline_sim);

    // The agent against another fresh kube-sim.
    let (sim, url) = start_kube_sim(&bin.join("kube-sim"))?;
    let kubeconfig = scratch.join("agent.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&url))?;
    let port = free_port()?;
    let agent = Command::new(bin.join("flux-agent"))
        .args([
            "--git-url",
            &format!("file://{}", repo.display()),
            "--git-poll-interval=1s",
            "--sync-interval=1h",
            "--sync-timeout=10m",
            &format!("--listen=127.0.0.1:{port}"),
        ])
        .arg(format!("--work-dir={}", scratch.join("agent").display()))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn,flux_agent=info")
        // As manifests/flux-agent.yaml runs it.
        .env("MALLOC_ARENA_MAX", "2")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.join("agent.log"))?)
        .spawn()
        .context("failed to start flux-agent")?;
    let agent = Server(agent);
    wait_for_port(port)?;
    let (_, first) = wait_for_syncs(port, 1, Duration::from_secs(600))?;
    http(
        port,
        "POST",
        "/api/flux/v11/notify",
        r#"{"Kind":"git","Source":{}}"#,
    )?;
    let (_, both) = wait_for_syncs(port, 2, Duration::from_secs(120))?;
    let noop = both - first;
    let rss = peak_rss_kib(agent.0.id())?;
    drop(agent);
    let log = std::fs::read_to_string(scratch.join("agent.log")).unwrap_or_default();
    let phases: Vec<&str> = log.lines().filter(|l| l.contains("sync phases")).collect();
    drop(sim);
    if std::env::var_os("FLUX_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        println!("bench: kept {}", scratch.display());
    }

    #[allow(clippy::cast_precision_loss)]
    let per_second = count as f64 / first;
    println!(
        "\nresults ({count} manifests, release builds, 2 cores shared by kube-sim, kubectl/agent):"
    );
    println!("  baseline_kubectl_apply_server_side_seconds={kubectl_secs:.2}");
    println!("  agent_first_sync_seconds={first:.2}");
    println!("  agent_first_sync_objects_per_second={per_second:.0}");
    println!("  agent_speedup_over_kubectl={:.1}x", kubectl_secs / first);
    println!("  agent_noop_resync_seconds={noop:.3}");
    #[allow(clippy::cast_precision_loss)]
    let rss_mib = rss as f64 / 1024.0;
    println!("  agent_rss_peak_mib={rss_mib:.1} (MALLOC_ARENA_MAX=2, as the Deployment sets it)");
    for line in phases {
        let detail = line
            .split_once("sync phases")
            .map_or(line, |(_, rest)| rest);
        println!("  agent sync phases:{detail}");
    }
    println!(
        "targets: >= 1000 objects/s first sync, >= 5x kubectl, no-op resync <= 1 s, RSS <= 32 MiB"
    );
    Ok(())
}

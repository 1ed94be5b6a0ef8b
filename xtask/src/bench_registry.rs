//! `cargo xtask bench registry`: the registry scanner's benchmark (issue #6).
//!
//! Starts the Debian `docker-registry` on a free loopback port (via `test-support`), seeds it
//! with 200 repositories × 100 tags (distinct images) with the example
//! `crates/flux-agent/examples/registry_scan.rs`, then runs that example twice as a child
//! process:
//! - `scan`: a cold scan at `--registry-rps 200` (time, requests, achieved rate vs the limit),
//!   then a rescan with no new tags (requests made: target one tag list per repository and no
//!   manifest);
//! - `hold`: a new process on the cache file the first wrote (an agent restart): its rescan
//!   and its peak RSS holding the cache (`VmHWM`).
//!
//! Then the whole `flux-agent` starts on that cache with a config repository of 200 automated
//! Deployments: time to its automation commit, registry requests made, and its peak RSS.
//!
//! Release build by default; `BENCH_PROFILE=dev` uses a debug build (the rate-limited figures
//! barely change; RSS is a little higher).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const REPOSITORIES: usize = 200;
const TAGS: usize = 100;
const RPS: f64 = 200.0;

/// `name` from the environment (smaller runs while developing), else `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_example(bin: &Path, args: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new(bin)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", bin.display()))?;
    if !output.status.success() {
        bail!("{} {args:?} failed ({})", bin.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn value<'a>(figures: &'a [(String, String)], key: &str) -> &'a str {
    figures
        .iter()
        .find(|(k, _)| k == key)
        .map_or("?", |(_, v)| v.as_str())
}

/// Runs the benchmark (`BENCH_REGISTRY_REPOS` / `BENCH_REGISTRY_TAGS` shrink it).
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let repositories = env_or("BENCH_REGISTRY_REPOS", REPOSITORIES);
    let tags = env_or("BENCH_REGISTRY_TAGS", TAGS);
    let release = std::env::var("BENCH_PROFILE").map_or(true, |p| p != "dev");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!(
        "bench: building the registry_scan example ({})",
        if release { "release" } else { "debug" }
    );
    let mut build = Command::new(&cargo);
    build.current_dir(root).args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "flux-agent",
        "--example",
        "registry_scan",
    ]);
    if release {
        build.arg("--release");
    }
    if !build
        .status()
        .context("failed to run cargo build")?
        .success()
    {
        bail!("cargo build of the registry_scan example failed");
    }
    let target: std::path::PathBuf =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("examples/registry_scan");

    let work = test_support::TempDir::new("bench-registry");
    let registry_dir = work.path().join("registry");
    std::fs::create_dir_all(&registry_dir)?;
    let registry = test_support::Registry::start(&registry_dir);
    let host = registry.host();
    let cache = work.path().join("cache");
    let cache_arg = cache.display().to_string();
    let repos = repositories.to_string();
    let rps = RPS.to_string();

    println!("bench: pushing {repositories} repositories x {tags} tags to {host}");
    let seed = run_example(&bin, &["seed", &host, &repos, &tags.to_string()])?;
    println!(
        "bench: seeded {} images in {} s; cold scan at {RPS} rps (about {:.0} s)",
        value(&seed, "seed_images"),
        value(&seed, "seed_seconds"),
        (repositories * (1 + 2 * tags)) as f64 / RPS
    );
    let scan = run_example(&bin, &["scan", &host, &cache_arg, &repos, &rps])?;
    let hold = run_example(&bin, &["hold", &host, &cache_arg, &repos, &rps])?;
    let agent = run_agent(root, work.path(), &host, &cache, repositories, release)?;
    drop(registry);

    let cache_size = std::fs::metadata(cache.join("registry-cache.json")).map_or(0, |m| m.len());
    println!(
        "\nresults ({repositories} repositories x {tags} tags, --registry-rps {RPS}, burst 125, {} build):",
        if release { "release" } else { "debug" }
    );
    for (key, val) in scan
        .iter()
        .chain(hold.iter())
        .filter(|(k, _)| k != "peak_rss_kib")
    {
        println!("  {key}={val}");
    }
    println!("  cache_file_kib={}", cache_size / 1024);
    let kib =
        |figures: &[(String, String)]| value(figures, "peak_rss_kib").parse::<f64>().unwrap_or(0.0);
    println!("  scan_process_peak_rss_mib={:.1}", kib(&scan) / 1024.0);
    println!(
        "  restarted_process_peak_rss_mib={:.1}",
        kib(&hold) / 1024.0
    );
    for (key, val) in &agent {
        println!("  {key}={val}");
    }
    println!(
        "targets: cold_rate_of_limit_percent >= 90, rescan_requests = {repositories} (rescan_manifests = 0), peak RSS <= 32 MiB"
    );
    Ok(())
}

/// The whole agent on that cache: a config repository of `repositories` automated Deployments
/// (`semver:~1.0`, one per bench repository, each at `1.0.0`), kube-sim, and `flux-agent` with
/// `--registry-cache-dir` pointing at the cache the scans wrote (an agent restart). Waits for
/// the automation commit (every Deployment bumped to the newest `1.0.x` from the cache) and
/// reports the time to it, the registry requests made (from the agent's metrics) and the
/// agent's peak RSS.
fn run_agent(
    root: &Path,
    work: &Path,
    host: &str,
    cache: &Path,
    repositories: usize,
    release: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::bench::{free_port, peak_rss_kib, start_kube_sim, wait_for_port};
    use crate::procs::{build_binaries, commit_dir, git, http, kubeconfig_text};
    use std::time::{Duration, Instant};

    println!("bench: the whole agent on that cache ({repositories} automated Deployments)");
    let bin = build_binaries(root, release)?;
    let tree = work.join("config");
    std::fs::create_dir_all(&tree)?;
    for i in 0..repositories {
        std::fs::write(
            tree.join(format!("app-{i:03}.yaml")),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i:03}\n  namespace: default\n  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:~1.0\nspec:\n  selector: {{matchLabels: {{app: app-{i:03}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i:03}}}}}\n    spec:\n      containers:\n        - name: app\n          image: {host}/bench/repo-{i:03}:1.0.0\n"
            ),
        )?;
    }
    let first = commit_dir(&tree, "bench config")?;
    let bare = work.join("config.git");
    git(
        work,
        &[
            "clone",
            "-q",
            "--bare",
            &tree.to_string_lossy(),
            &bare.to_string_lossy(),
        ],
    )?;
    let (sim, url) = start_kube_sim(&bin.join("kube-sim"))?;
    let kubeconfig = work.join("agent.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&url))?;
    let port = free_port()?;
    let started = Instant::now();
    let agent = crate::bench::Server(
        Command::new(bin.join("flux-agent"))
            .args([
                format!("--git-url=file://{}", bare.display()),
                "--git-poll-interval=1s".to_owned(),
                "--automation-interval=1h".to_owned(),
                "--registry-scan-interval=1h".to_owned(),
                format!("--registry-insecure-host={host}"),
                format!("--registry-cache-dir={}", cache.display()),
                format!("--listen=127.0.0.1:{port}"),
                format!("--work-dir={}", work.join("agent").display()),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            // As manifests/flux-agent.yaml runs it.
            .env("MALLOC_ARENA_MAX", "2")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("agent.log"))?)
            .spawn()
            .context("failed to start flux-agent")?,
    );
    wait_for_port(port)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let head = loop {
        let head = git(&bare, &["rev-parse", "master"])?;
        if head.trim() != first.trim() {
            break head;
        }
        if Instant::now() > deadline {
            bail!(
                "no automation commit within 300 s; see {}",
                work.join("agent.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let to_commit = started.elapsed().as_secs_f64();
    let changed = git(
        &bare,
        &[
            "diff",
            "--name-only",
            &format!("{}..{}", first.trim(), head.trim()),
        ],
    )?;
    // The scan loop then lists each tracked repository once (the restart's rescan).
    let listed = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("flux_client_fetch_duration_seconds_count{kind=\"tags\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut metrics = http(port, "GET", "/metrics", "")?;
    #[allow(clippy::cast_precision_loss)]
    while listed(&metrics) < repositories as f64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        metrics = http(port, "GET", "/metrics", "")?;
    }
    let count = |series: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    };
    let figures = vec![
        (
            "agent_seconds_to_automation_commit".to_owned(),
            format!("{to_commit:.1}"),
        ),
        (
            "agent_files_bumped".to_owned(),
            changed.lines().count().to_string(),
        ),
        (
            "agent_tag_list_requests".to_owned(),
            format!(
                "{}",
                count("flux_client_fetch_duration_seconds_count{kind=\"tags\"")
            ),
        ),
        (
            "agent_manifest_requests".to_owned(),
            format!(
                "{}",
                count("flux_client_fetch_duration_seconds_count{kind=\"metadata\"")
            ),
        ),
        (
            "agent_peak_rss_mib (MALLOC_ARENA_MAX=2, as the Deployment sets it)".to_owned(),
            format!("{:.1}", peak_rss_kib(agent.0.id())? as f64 / 1024.0),
        ),
    ];
    drop(agent);
    drop(sim);
    Ok(figures)
}

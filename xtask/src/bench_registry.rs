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
    println!(
        "targets: cold_rate_of_limit_percent >= 90, rescan_requests = {repositories} (rescan_manifests = 0), peak RSS <= 32 MiB"
    );
    Ok(())
}

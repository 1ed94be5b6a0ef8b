//! The registry scanner's benchmark client, run by `cargo xtask bench registry` as a child
//! process so its peak RSS is its own:
//!
//! - `registry_scan seed HOST REPOS TAGS`: pushes REPOS repositories (`bench/repo-NNN`) of TAGS
//!   tags each (distinct images sharing one layer per repository) to the plain-HTTP registry
//!   at HOST.
//! - `registry_scan scan HOST CACHE_DIR REPOS RPS`: a fresh scanner (empty cache) tracks the
//!   repositories; a cold scan, then a rescan with nothing new. Prints `key=value` figures.
//! - `registry_scan hold HOST CACHE_DIR REPOS RPS`: a scanner started on the cache the `scan`
//!   step wrote (an agent restart): one rescan. Prints figures.
//!
//! Each mode ends with `peak_rss_kib=` (`VmHWM` of `/proc/self/status`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark tool: fail loudly.

#[path = "../tests/support/oci_push.rs"]
mod oci_push;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flux_agent::registry::{RegistryConfig, RegistryCredentials, ScanReport, Scanner};
use futures::StreamExt as _;
use oci_push::{ImageSpec, Pusher};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn repos(host: &str, count: usize) -> Vec<(String, RegistryCredentials)> {
    (0..count)
        .map(|i| {
            (
                format!("{host}/bench/repo-{i:03}"),
                RegistryCredentials::new(),
            )
        })
        .collect()
}

fn scanner(host: &str, cache: PathBuf, rps: f64) -> Scanner {
    let config = RegistryConfig {
        rps,
        insecure_hosts: vec![host.to_owned()],
        cache_dir: cache,
        ..RegistryConfig::default()
    };
    Scanner::new(config, &prometheus::Registry::new()).unwrap()
}

fn print_report(prefix: &str, report: &ScanReport, rps: f64) {
    let requests = report.requests.total();
    let seconds = report.duration.as_secs_f64();
    println!("{prefix}_seconds={seconds:.1}");
    println!("{prefix}_requests={requests}");
    println!("{prefix}_tag_lists={}", report.requests.tag_lists);
    println!("{prefix}_manifests={}", report.requests.manifests);
    println!("{prefix}_blobs={}", report.requests.blobs);
    println!("{prefix}_errors={}", report.errors.len());
    if let Some((repo, error)) = report.errors.first() {
        println!("{prefix}_first_error={repo}: {error}");
    }
    if seconds > 0.0 {
        let achieved = requests as f64 / seconds;
        println!("{prefix}_requests_per_second={achieved:.1}");
        println!(
            "{prefix}_rate_of_limit_percent={:.1}",
            achieved / rps * 100.0
        );
    }
}

async fn seed(host: &str, repo_count: usize, tag_count: usize) {
    let pusher = Pusher::new(host, None);
    let started = Instant::now();
    // Each repository's shared layer first: concurrent uploads of one blob to one repository
    // race in the registry.
    let mut layers = Vec::with_capacity(repo_count);
    for r in 0..repo_count {
        let pusher = pusher.clone();
        layers.push(async move {
            let repo = format!("bench/repo-{r:03}");
            pusher.blob(&repo, repo.clone().into_bytes()).await;
        });
    }
    futures::stream::iter(layers)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let jobs: Vec<(usize, usize)> = (0..repo_count)
        .flat_map(|r| (0..tag_count).map(move |t| (r, t)))
        .collect();
    let mut pushes = Vec::with_capacity(jobs.len());
    for (r, t) in jobs {
        let pusher = pusher.clone();
        pushes.push(async move {
            let repo = format!("bench/repo-{r:03}");
            let created = format!("2024-01-01T00:{:02}:{:02}Z", t / 60, t % 60);
            let spec = ImageSpec::new(&created, &format!("{r}-{t}")).layer(&repo);
            pusher.push_image(&repo, &format!("1.0.{t}"), &spec).await;
        });
    }
    let mut stream = futures::stream::iter(pushes).buffer_unordered(32);
    let mut done = 0usize;
    while stream.next().await.is_some() {
        done += 1;
        if done.is_multiple_of(2000) {
            eprintln!("seed: {done} images pushed");
        }
    }
    println!("seed_images={done}");
    println!("seed_seconds={:.1}", started.elapsed().as_secs_f64());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: registry_scan seed HOST REPOS TAGS | scan HOST CACHE REPOS RPS | hold HOST CACHE REPOS RPS";
    let mode = args.get(1).expect(usage).as_str();
    let host = args.get(2).expect(usage).clone();
    match mode {
        "seed" => {
            let repo_count = args[3].parse().expect(usage);
            let tag_count = args[4].parse().expect(usage);
            seed(&host, repo_count, tag_count).await;
        }
        "scan" | "hold" => {
            let cache = PathBuf::from(args.get(3).expect(usage));
            let repo_count: usize = args[4].parse().expect(usage);
            let rps: f64 = args[5].parse().expect(usage);
            let scanner = scanner(&host, cache, rps);
            scanner.track(repos(&host, repo_count));
            if mode == "scan" {
                let cold = scanner.scan_due().await;
                print_report("cold", &cold, rps);
                let (repositories, tags) = scanner.counts();
                println!("cached_repositories={repositories}");
                println!("cached_tags={tags}");
                // Let the bucket refill so the rescan is not measured against the cold scan's
                // debt.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let rescan = scanner.scan_all().await;
                print_report("rescan", &rescan, rps);
            } else {
                let (_, tags) = scanner.counts();
                println!("restart_cached_tags_before_scan={tags}");
                let rescan = scanner.scan_due().await;
                print_report("restart_rescan", &rescan, rps);
            }
        }
        _ => panic!("{usage}"),
    }
    println!("peak_rss_kib={}", peak_rss_kib());
}

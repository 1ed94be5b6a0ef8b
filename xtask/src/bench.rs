//! `cargo xtask bench kube-sim`: the kube-sim load benchmark (issue #3).
//!
//! Builds kube-sim and its load client (`crates/kube-sim/examples/bench.rs`) in release mode,
//! starts kube-sim as its own process on a free loopback port, runs the client (10,000
//! ConfigMaps by server-side apply with 16 requests in flight, a list, a watch from
//! resourceVersion 0), and reports the client's figures with the server's peak RSS
//! (`VmHWM` from `/proc/<pid>/status`). As a baseline measured in the same run it first sends
//! `GET /version` requests the same way, which is the HTTP stack's ceiling.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Kills the process when dropped, so none outlives the benchmark.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("failed to read the server's /proc status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc status")
}

/// Runs the benchmark named `name`.
pub(crate) fn run(root: &Path, name: &str, count: usize, concurrency: usize) -> anyhow::Result<()> {
    match name {
        "kube-sim" => kube_sim(root, count, concurrency),
        "sync" => crate::bench_sync::run(root),
        "operator" => crate::bench_operator::run(root),
        "registry" => crate::bench_registry::run(root),
        _ => bail!("unknown benchmark {name:?}; known: kube-sim, sync, operator, registry"),
    }
}

/// Starts a release-built kube-sim on a free port; returns it and its URL.
pub(crate) fn start_kube_sim(server_bin: &Path) -> anyhow::Result<(Server, String)> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(server_bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("failed to start kube-sim")?;
    let server = Server(child);
    wait_for_port(port)?;
    Ok((server, url))
}

/// Waits until something listens on `port` of 127.0.0.1.
pub(crate) fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn kube_sim(root: &Path, count: usize, concurrency: usize) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("bench: building kube-sim and its load client (release)");
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "kube-sim",
            "--bin",
            "kube-sim",
            "--example",
            "bench",
        ])
        .status()
        .context("failed to run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    let server_bin = target.join("release/kube-sim");
    let client_bin = target.join("release/examples/bench");

    let (server, url) = start_kube_sim(&server_bin)?;
    let idle_rss = peak_rss_kib(server.0.id())?;

    println!(
        "bench: {count} ConfigMaps by server-side apply, {concurrency} in flight, against {url}"
    );
    let output = Command::new(&client_bin)
        .args([url.as_str(), &count.to_string(), &concurrency.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("failed to run the load client")?;
    if !output.status.success() {
        bail!("the load client failed ({})", output.status);
    }
    let figures = String::from_utf8_lossy(&output.stdout);
    let peak = peak_rss_kib(server.0.id())?;
    drop(server);

    println!("\nresults (kube-sim {url}, release build, 2 cores shared by server and client):");
    for line in figures.lines() {
        println!("  {line}");
    }
    println!("  server_rss_idle_mib={:.1}", idle_rss as f64 / 1024.0);
    println!("  server_rss_peak_mib={:.1}", peak as f64 / 1024.0);
    println!(
        "targets: ssa_writes_per_second >= 3000, list_raw_ms <= 200, server_rss_peak_mib <= 200"
    );
    Ok(())
}

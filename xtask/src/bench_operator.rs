//! `cargo xtask bench operator`: the Helm operator benchmark (issue #5).
//!
//! With release builds of kube-sim and helm-operator and helm 3.17.3 from the tools cache, the
//! first two measured in three alternating rounds and compared by their medians:
//! - baseline: `helm upgrade --install` of 200 releases of a small chart (a ConfigMap and a
//!   Service), 4 at a time, against a fresh kube-sim;
//! - the operator (`--workers 4`) against another fresh kube-sim with the same chart from a git
//!   repository (file://): 200 HelmReleases created first, then the time from starting the
//!   operator until all are `Released=True` (from its condition metric);
//! - a no-op resync of all 200: the operator restarted, time until it has reconciled all 200,
//!   and the number of helm processes it started meanwhile (counted by a wrapper script);
//! - 800 more HelmReleases installed, then the operator's peak RSS (`VmHWM`, helm children
//!   excluded) with 1,000 HelmReleases in its cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{Server, free_port, peak_rss_kib, start_kube_sim, wait_for_port};
use crate::procs::{build_binaries, commit_dir, http, kubeconfig_text};

const RELEASES: usize = 200;
const CACHED: usize = 1_000;
const WORKERS: usize = 4;
const NAMESPACE: &str = "bench";
const ROUNDS: usize = 3;

/// The median of `times` (sorted in place).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn write_chart(dir: &Path) -> anyhow::Result<()> {
    let chart = dir.join("charts/small");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: small\nversion: 1.0.0\nappVersion: \"1.0\"\n",
    )?;
    std::fs::write(chart.join("values.yaml"), "greeting: hello\nport: 80\n")?;
    std::fs::write(
        chart.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    )?;
    std::fs::write(
        chart.join("templates/service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n  - port: {{ .Values.port }}\n",
    )?;
    Ok(())
}

/// `kubectl apply --server-side -f file` against the kubeconfig.
fn kubectl_apply(kubeconfig: &Path, file: &Path) -> anyhow::Result<()> {
    let output = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(["apply", "--server-side", "-f"])
        .arg(file)
        .output()
        .context("failed to run kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn helm_env(command: &mut Command, kubeconfig: &Path, home: &Path) {
    command
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
}

/// The baseline: `helm upgrade --install` of `RELEASES` releases, `WORKERS` at a time.
fn baseline(helm: &Path, kubeconfig: &Path, chart: &Path, home: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= RELEASES {
                            return Ok(());
                        }
                        let mut command = Command::new(helm);
                        helm_env(&mut command, kubeconfig, home);
                        let output = command
                            .args(["upgrade", "--install", &format!("bench-{i:04}")])
                            .arg(chart)
                            .args(["-n", NAMESPACE, "--create-namespace"])
                            .output()?;
                        if !output.status.success() {
                            bail!(
                                "helm upgrade --install failed: {}",
                                String::from_utf8_lossy(&output.stderr)
                            );
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a baseline worker panicked"))??;
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}

fn releases_yaml(url: &str, from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: bench-{i:04}\n  namespace: {NAMESPACE}\nspec:\n  releaseName: bench-{i:04}\n  chart:\n    git: {url}\n    ref: master\n    path: charts/small\n  values:\n    greeting: hello {i}\n---\n"
            )
        })
        .collect()
}

/// HelmReleases whose `Released` condition is True, read from kube-sim.
fn released(sim_port: u16) -> anyhow::Result<usize> {
    let body = http(
        sim_port,
        "GET",
        &format!("/apis/helm.fluxcd.io/v1/namespaces/{NAMESPACE}/helmreleases"),
        "",
    )?;
    let list: serde_json::Value = serde_json::from_str(&body).context("bad list response")?;
    Ok(list["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|hr| {
                hr["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Released" && c["status"] == "True")
                })
            })
            .count()
    }))
}

/// Releases whose `Released` condition is True, from the operator's
/// `flux_helm_operator_release_condition_info` (cheaper to poll than listing every object).
fn released_metric(port: u16) -> anyhow::Result<usize> {
    let text = http(port, "GET", "/metrics", "")?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("flux_helm_operator_release_condition_info{")
                && l.contains("condition=\"Released\"")
                && l.ends_with(" 1")
        })
        .count())
}

/// Successful reconciles so far, summed over releases
/// (`flux_helm_operator_release_action_duration_seconds_count{action="sync",success="true"}`).
fn syncs(port: u16) -> anyhow::Result<u64> {
    let text = http(port, "GET", "/metrics", "")?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("flux_helm_operator_release_action_duration_seconds_count{")
                && l.contains("action=\"sync\"")
                && l.contains("success=\"true\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}

fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

struct OperatorRun {
    server: Server,
    port: u16,
}

fn start_operator(
    bin: &Path,
    kubeconfig: &Path,
    helm: &Path,
    work: &Path,
) -> anyhow::Result<OperatorRun> {
    let port = free_port()?;
    let child = Command::new(bin)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--workers={WORKERS}"))
        .arg("--enabled-helm-versions=v3")
        .arg(format!("--helm3-path={}", helm.display()))
        .arg("--charts-sync-interval=30m")
        .arg("--git-poll-interval=30m")
        .arg(format!("--work-dir={}", work.display()))
        .arg(format!(
            "--chart-cache-dir={}",
            work.join("chart-cache").display()
        ))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(work.with_extension("log"))?,
        )
        .spawn()
        .context("failed to start helm-operator")?;
    let server = Server(child);
    wait_for_port(port)?;
    Ok(OperatorRun { server, port })
}

fn counting_wrapper(dir: &Path, helm: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("helm-counted");
    let calls = dir.join("helm.calls");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            helm.display()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((script, calls))
}

fn count_calls(calls: &Path) -> usize {
    std::fs::read_to_string(calls).map_or(0, |t| t.lines().count())
}

/// Runs the benchmark and prints its figures.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let tools = crate::tools::ensure_tools()?;
    let bin = build_binaries(root, true)?;
    let scratch =
        std::env::temp_dir().join(format!("flux-rs-bench-operator-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let outcome = run_in(&scratch, &bin, &tools.helm3);
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

fn run_in(scratch: &Path, bin: &Path, helm: &Path) -> anyhow::Result<()> {
    let repo = scratch.join("repo");
    write_chart(&repo)?;
    commit_dir(&repo, "a small chart")?;
    let url = format!("file://{}", repo.display());
    let crds = scratch.join("crds.yaml");
    let mut crd_text = String::new();
    for file in model::crds::rendered()? {
        crd_text.push_str(&file.yaml);
        crd_text.push_str("\n---\n");
    }
    crd_text.push_str(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    ));
    std::fs::write(&crds, crd_text)?;

    // Baseline and operator alternate, ROUNDS times, each on a fresh kube-sim: the machine's
    // noise hits both, and the medians are compared.
    let mut baselines = Vec::new();
    let mut installs = Vec::new();
    let mut kept = None;
    for round in 0..ROUNDS {
        let (sim, sim_url) = start_kube_sim(&bin.join("kube-sim"))?;
        let kubeconfig = scratch.join(format!("kubeconfig-baseline-{round}"));
        std::fs::write(&kubeconfig, kubeconfig_text(&sim_url))?;
        baselines.push(baseline(
            helm,
            &kubeconfig,
            &repo.join("charts/small"),
            &scratch.join(format!("helm-home-{round}")),
        )?);
        drop(sim);

        let (sim, sim_url) = start_kube_sim(&bin.join("kube-sim"))?;
        let sim_port: u16 = sim_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("kube-sim URL without a port")?;
        let kubeconfig = scratch.join(format!("kubeconfig-operator-{round}"));
        std::fs::write(&kubeconfig, kubeconfig_text(&sim_url))?;
        kubectl_apply(&kubeconfig, &crds)?;
        let round_dir = scratch.join(format!("round-{round}"));
        std::fs::create_dir_all(&round_dir)?;
        let (wrapper, calls) = counting_wrapper(&round_dir, helm)?;
        let work = round_dir.join("operator");
        // The 200 HelmReleases exist before the operator starts (as after an install of the
        // operator into a cluster that has them), so neither kubectl nor the polling of the
        // bench competes with the installs: the operator's own metrics say when all are released.
        let releases = round_dir.join("releases.yaml");
        std::fs::write(&releases, releases_yaml(&url, 0, RELEASES))?;
        kubectl_apply(&kubeconfig, &releases)?;
        let started = Instant::now();
        let operator = start_operator(&bin.join("helm-operator"), &kubeconfig, &wrapper, &work)?;
        wait_until("200 releases", Duration::from_secs(900), || {
            Ok(released_metric(operator.port)? >= RELEASES)
        })?;
        installs.push(started.elapsed());
        let rss = peak_rss_kib(operator.server.0.id())?;
        drop(operator);
        kept = Some((
            sim, sim_port, kubeconfig, wrapper, calls, work, releases, rss,
        ));
    }
    let Some((_sim, sim_port, kubeconfig, wrapper, calls, work, releases, first_rss)) = kept else {
        bail!("no round ran");
    };
    let baseline_time = median(&mut baselines);
    let install_time = median(&mut installs);

    // No-op resync of all 200: a restarted operator reconciles every object once.
    let before = count_calls(&calls);
    let started = Instant::now();
    let operator = start_operator(&bin.join("helm-operator"), &kubeconfig, &wrapper, &work)?;
    wait_until("200 no-op reconciles", Duration::from_secs(300), || {
        Ok(syncs(operator.port)? >= RELEASES as u64)
    })?;
    let resync_time = started.elapsed();
    let resync_helm = count_calls(&calls) - before;

    // 1,000 in the cache.
    std::fs::write(&releases, releases_yaml(&url, RELEASES, CACHED))?;
    kubectl_apply(&kubeconfig, &releases)?;
    wait_until("1,000 releases", Duration::from_secs(3_600), || {
        Ok(released(sim_port)? >= CACHED)
    })?;
    let cached_rss = peak_rss_kib(operator.server.0.id())?;
    drop(operator);

    let log = std::fs::read_to_string(work.with_extension("log")).unwrap_or_default();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    if let Ok(keep) = std::env::var("BENCH_OPERATOR_LOG") {
        std::fs::write(keep, &log)?;
    }
    let overhead = (install_time.as_secs_f64() / baseline_time.as_secs_f64() - 1.0) * 100.0;
    println!(
        "bench operator: {RELEASES} HelmReleases of a small chart, --workers {WORKERS}, helm 3.17.3"
    );
    let list = |times: &[Duration]| {
        times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  baseline helm upgrade --install x{RELEASES}, {WORKERS} parallel: median {:.2} s of {ROUNDS} rounds ({} s)",
        baseline_time.as_secs_f64(),
        list(&baselines)
    );
    println!(
        "  operator install of {RELEASES}:                      median {:.2} s of {ROUNDS} rounds ({} s); {overhead:+.1}% vs baseline (target <= +10%)",
        install_time.as_secs_f64(),
        list(&installs)
    );
    println!(
        "  no-op resync of {RELEASES} (restart to all reconciled): {:.2} s, {resync_helm} helm processes (target <= 2 s, 0)",
        resync_time.as_secs_f64()
    );
    println!(
        "  operator peak RSS: {:.1} MiB with {RELEASES}, {:.1} MiB with {CACHED} HelmReleases (target <= 32 MiB)",
        first_rss as f64 / 1024.0,
        cached_rss as f64 / 1024.0
    );
    println!(
        "  operator warnings logged: {warnings} (set BENCH_OPERATOR_LOG=FILE to keep the log)"
    );
    Ok(())
}

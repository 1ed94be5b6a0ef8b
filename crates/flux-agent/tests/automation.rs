//! Image automation end to end on real parts: the config repository over sshd (pushed with the
//! agent's generated deploy key), the Debian docker-registry with images the test pushes, and
//! kube-sim as the cluster. The agent runs in-process with short intervals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

#[path = "support/oci_push.rs"]
mod oci_push;
mod support;

use std::path::Path;

use kube_sim::KubeSim;
use oci_push::{ImageSpec, Pusher};
use support::{Agent, eventually};
use test_support::{BareRepo, Registry, Sshd, TempDir, run_git};

/// The seeds' FluxHelmRelease `podinfo-dev` (legacy annotations, `image: repo:tag`).
fn podinfo_dev(host: &str) -> String {
    format!(
        r#"# podinfo for the dev team
apiVersion: helm.integrations.flux.weave.works/v1alpha2
kind: FluxHelmRelease
metadata:
  name: podinfo-dev
  namespace: dev
  annotations:
    flux.weave.works/automated: "true"
    flux.weave.works/tag.chart-image: glob:dev-*
spec:
  chartGitPath: podinfo
  releaseName: podinfo-dev
  values:
    image: {host}/stefanprodan/podinfo:dev-kb9lm91e # bumped by flux
"#
    )
}

/// The seeds' FluxHelmRelease `podinfo-prod` (two images, semver and regex filters).
fn podinfo_prod(host: &str) -> String {
    format!(
        r#"apiVersion: helm.integrations.flux.weave.works/v1alpha2
kind: FluxHelmRelease
metadata:
  name: podinfo-prod
  namespace: prod
  annotations:
    flux.weave.works/automated: "true"
    flux.weave.works/tag.init: semver:~1.0
    flux.weave.works/tag.app: regex:^1.2.*
spec:
  chartGitPath: podinfo
  releaseName: podinfo-prod
  values:
    init:
      image: "{host}/stefanprodan/podinfo:1.0.0"
    app:
      image: '{host}/stefanprodan/podinfo:1.2.0'
"#
    )
}

/// The seeds' `mozalert-controller` HelmRelease (`image.repository` + `image.tag`).
fn mozalert(host: &str) -> String {
    format!(
        r#"---
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: mozalert-controller
  namespace: mozalert
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.chart-image: glob:stg-*
spec:
  releaseName: mozalert-controller
  chart:
    git: https://github.com/mozafrank/helm-charts
    ref: main
    path: charts/mozalert-controller
  values:
    image:
      repository: {host}/afrank/mozalert-controller
      tag: stg-1
      pullPolicy: Always
    secretRef: mozalert-dev-secrets
"#
    )
}

/// A Deployment with current (`fluxcd.io/`) annotations and extra `policy` lines.
fn deployment(host: &str, name: &str, policy: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: apps
  annotations:
    fluxcd.io/automated: "true"
{policy}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: app
          image: {host}/stefanprodan/podinfo:1.0.0
"#
    )
}

fn created(seconds: u32) -> String {
    format!("2026-01-01T00:{:02}:{:02}Z", seconds / 60, seconds % 60)
}

/// Pushes `tags` of `repo`, created one second apart in the order given.
async fn push_tags(pusher: &Pusher, repo: &str, tags: &[&str]) {
    for (i, tag) in tags.iter().enumerate() {
        let at = created(u32::try_from(i).unwrap() + 1);
        pusher
            .push_image(repo, tag, &ImageSpec::new(&at, &format!("{repo}:{tag}")))
            .await;
    }
}

/// The file at the tip of the branch, compared without its final newline (git output is
/// trimmed).
fn show(repo: &BareRepo, path: &str) -> String {
    run_git(repo.path(), &["show", &format!("{}:{path}", repo.branch())])
        .trim_end()
        .to_owned()
}

/// `text` as [`show`] gives it.
fn trimmed(text: &str) -> String {
    text.trim_end().to_owned()
}

/// A registry in its own directory under `dir`.
fn registry(dir: &Path) -> Registry {
    let path = dir.join("registry");
    std::fs::create_dir_all(&path).unwrap();
    Registry::start(&path)
}

/// sshd serving `repo`, authorising the agent's key; the agent's flags for it.
struct Remote {
    sshd: Sshd,
    flags: Vec<String>,
}

fn remote(dir: &Path, repo: &BareRepo) -> Remote {
    std::fs::create_dir_all(dir.join("sshd")).unwrap();
    let sshd = Sshd::start(&dir.join("sshd"));
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts()).unwrap();
    let flags = vec![
        format!("--git-url={}", sshd.url(repo)),
        format!("--git-branch={}", repo.branch()),
        format!("--ssh-known-hosts={}", known_hosts.display()),
        "--git-user=Flux Bot".to_owned(),
        "--git-email=bot@example.com".to_owned(),
        "--automation-interval=1s".to_owned(),
        "--registry-scan-interval=1s".to_owned(),
        format!(
            "--registry-cache-dir={}",
            dir.join("registry-cache").display()
        ),
    ];
    Remote { sshd, flags }
}

/// kube-sim and an agent on `remote` with the registry `host` spoken to over HTTP, plus
/// `extra` flags; the agent's key is authorised on sshd (through `key_prefix`, e.g. an ssh
/// `command="..."` option, when given).
async fn start_agent(
    dir: &Path,
    remote: &Remote,
    host: &str,
    extra: &[&str],
    key_prefix: &str,
) -> (KubeSim, Agent) {
    let sim = KubeSim::start().unwrap();
    let mut flags = remote.flags.clone();
    flags.push(format!("--registry-insecure-host={host}"));
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&sim, &dir.join("work"), &refs).await;
    remote
        .sshd
        .authorize(&format!("{key_prefix}{}", agent.public_key()));
    (sim, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_are_bumped_in_one_ci_skip_commit() {
    let dir = TempDir::new("automation-seeds");
    let registry = registry(dir.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    push_tags(&pusher, "stefanprodan/podinfo", &["dev-abc", "dev-def"]).await;
    push_tags(
        &pusher,
        "stefanprodan/podinfo",
        &["1.0.0", "1.0.1", "1.1.0", "1.2.3"],
    )
    .await;
    push_tags(
        &pusher,
        "afrank/mozalert-controller",
        &["stg-1", "prod-7", "stg-2"],
    )
    .await;

    let repo = BareRepo::new(dir.path(), "config.git", "main");
    let locked = deployment(&host, "locked", "    fluxcd.io/locked: \"true\"");
    let broken = deployment(&host, "broken", "    fluxcd.io/tag.app: \"semver:>>1\"");
    let first = repo.commit(
        &[
            ("releases/podinfo-dev.yaml", &podinfo_dev(&host)),
            ("releases/podinfo-prod.yaml", &podinfo_prod(&host)),
            ("releases/mozalert-controller.yaml", &mozalert(&host)),
            ("apps/locked.yaml", &locked),
            ("apps/broken.yaml", &broken),
        ],
        &[],
        "initial",
    );
    let remote = remote(dir.path(), &repo);
    let (_sim, agent) = start_agent(dir.path(), &remote, &host, &[], "").await;

    eventually("the automation commit", || {
        repo.head().is_some_and(|h| h != first)
    })
    .await;
    let head = repo.head().unwrap();

    assert_eq!(
        show(&repo, "releases/podinfo-dev.yaml"),
        trimmed(&podinfo_dev(&host).replace("dev-kb9lm91e", "dev-def"))
    );
    assert_eq!(
        show(&repo, "releases/podinfo-prod.yaml"),
        trimmed(
            &podinfo_prod(&host)
                .replace("podinfo:1.0.0\"", "podinfo:1.0.1\"")
                .replace("podinfo:1.2.0'", "podinfo:1.2.3'")
        )
    );
    assert_eq!(
        show(&repo, "releases/mozalert-controller.yaml"),
        trimmed(&mozalert(&host).replace("tag: stg-1", "tag: stg-2"))
    );
    assert_eq!(
        show(&repo, "apps/locked.yaml"),
        trimmed(&locked),
        "locked: not updated"
    );
    assert_eq!(
        show(&repo, "apps/broken.yaml"),
        trimmed(&broken),
        "invalid filter: not updated"
    );

    // One commit on top of ours, by the configured user, ending with [ci skip].
    let log = run_git(repo.path(), &["log", "--format=%H %P", "main"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.starts_with(&format!("{head} {first}")), "{log}");
    let author = run_git(repo.path(), &["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author.trim(), "Flux Bot <bot@example.com>");
    let message = run_git(repo.path(), &["log", "-1", "--format=%B", "main"]);
    let message = message.trim_end();
    assert!(
        message.starts_with("Auto-release multiple (4) images"),
        "{message}"
    );
    assert!(message.ends_with("\n\n[ci skip]"), "{message}");
    for image in [
        format!("{host}/stefanprodan/podinfo:dev-def"),
        format!("{host}/stefanprodan/podinfo:1.0.1"),
        format!("{host}/stefanprodan/podinfo:1.2.3"),
        format!("{host}/afrank/mozalert-controller:stg-2"),
    ] {
        assert!(message.contains(&format!(" - {image}")), "{message}");
    }

    // The invalid filter is reported on that workload, in the API.
    eventually("the invalid filter in the workload's status", || {
        let (code, body) = agent.http("GET", "/api/flux/v11/services?namespace=apps", "");
        code == 200 && body.contains("semver:>>1")
    })
    .await;
    let (_, body) = agent.http("GET", "/api/flux/v11/services", "");
    let services: serde_json::Value = serde_json::from_str(&body).unwrap();
    let by_id = |id: &str| {
        services
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["ID"] == id)
            .unwrap_or_else(|| panic!("{id} not in {services}"))
            .clone()
    };
    let broken = by_id("apps:deployment/broken");
    assert!(
        broken["Errors"][0].as_str().unwrap().contains("semver:>>1"),
        "{broken}"
    );
    assert_eq!(by_id("apps:deployment/locked")["Locked"], true);
    assert_eq!(
        by_id("prod:fluxhelmrelease/podinfo-prod")["Errors"],
        serde_json::json!([])
    );

    // Later runs with nothing new make no commit.
    let runs = agent
        .metric("flux_automation_runs_total{success=\"true\"}")
        .unwrap_or(0.0);
    eventually("two more automation runs", || {
        agent
            .metric("flux_automation_runs_total{success=\"true\"}")
            .unwrap_or(0.0)
            >= runs + 2.0
    })
    .await;
    assert_eq!(repo.head().unwrap(), head, "no commit without new tags");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_pushed_between_our_fetch_and_our_push_is_kept_and_ours_lands_on_top() {
    let dir = TempDir::new("automation-race");
    let registry = registry(dir.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    push_tags(&pusher, "stefanprodan/podinfo", &["1.0.0", "1.0.1"]).await;

    let repo = BareRepo::new(dir.path(), "config.git", "main");
    let app = deployment(&host, "app", "    fluxcd.io/tag.app: semver:~1.0");
    let first = repo.commit(&[("apps/app.yaml", &app)], &[], "initial");

    // "Their" commit, made now on a side branch, lands on main right before our first push:
    // the ssh forced command moves main (as another pusher would) and then serves the push.
    let work = dir.path().join("theirs");
    std::fs::create_dir_all(&work).unwrap();
    run_git(&work, &["init", "-q", "-b", "main"]);
    run_git(&work, &["fetch", "-q", &repo.file_url(), "main"]);
    run_git(&work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    std::fs::write(work.join("README.md"), "theirs\n").unwrap();
    run_git(&work, &["add", "README.md"]);
    run_git(
        &work,
        &[
            "-c",
            "user.name=Someone",
            "-c",
            "user.email=someone@example.com",
            "commit",
            "-q",
            "-m",
            "theirs",
        ],
    );
    run_git(
        &work,
        &["push", "-q", &repo.file_url(), "HEAD:refs/heads/theirs"],
    );
    let theirs = run_git(&work, &["rev-parse", "HEAD"]).trim().to_owned();

    let marker = dir.path().join("raced");
    let wrapper = dir.path().join("race.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-receive-pack*)\n    if [ ! -e '{marker}' ]; then\n      touch '{marker}'\n      git --git-dir='{bare}' update-ref refs/heads/main {theirs} {first}\n    fi;;\nesac\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            marker = marker.display(),
            bare = repo.path().display(),
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&wrapper)
        .status()
        .unwrap();

    let remote = remote(dir.path(), &repo);
    // `--sync-state=secret`: no sync tag pushes, so the only push is automation's.
    let (_sim, agent) = start_agent(
        dir.path(),
        &remote,
        &host,
        &["--sync-state=secret"],
        &format!("command=\"{}\" ", wrapper.display()),
    )
    .await;

    eventually("our commit on top of theirs", || {
        repo.head().is_some_and(|h| h != first && h != theirs)
    })
    .await;
    assert!(marker.exists(), "the race was staged");
    let parent = run_git(repo.path(), &["rev-parse", "main^"]);
    assert_eq!(parent.trim(), theirs, "ours is on top of theirs");
    assert_eq!(show(&repo, "README.md"), "theirs", "theirs is kept");
    assert_eq!(
        show(&repo, "apps/app.yaml"),
        trimmed(&app.replace("podinfo:1.0.0", "podinfo:1.0.1"))
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_makes_no_commit_and_shows_in_the_metrics() {
    let dir = TempDir::new("automation-down");
    // Nothing listens on this port.
    let host = format!("127.0.0.1:{}", test_support::free_port());
    let repo = BareRepo::new(dir.path(), "config.git", "main");
    let app = deployment(&host, "app", "");
    let first = repo.commit(&[("apps/app.yaml", &app)], &[], "initial");
    let remote = remote(dir.path(), &repo);
    let (_sim, agent) = start_agent(dir.path(), &remote, &host, &[], "").await;

    eventually("failed registry fetches in the metrics", || {
        agent
            .metric("flux_client_fetch_duration_seconds_count{kind=\"tags\",success=\"false\"}")
            .unwrap_or(0.0)
            >= 2.0
    })
    .await;
    eventually("automation runs after the failures", || {
        agent
            .metric("flux_automation_runs_total{success=\"true\"}")
            .unwrap_or(0.0)
            >= 2.0
    })
    .await;
    // The repository waits for its retry with backoff.
    assert_eq!(
        agent.metric("flux_registry_failing_repositories"),
        Some(1.0)
    );
    assert_eq!(repo.head().unwrap(), first, "no commit");
    assert_eq!(
        show(&repo, "apps/app.yaml"),
        trimmed(&app),
        "nothing committed"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_workloads_are_updated_through_their_flux_yaml_updaters() {
    let dir = TempDir::new("automation-generated");
    let registry = registry(dir.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    push_tags(
        &pusher,
        "stefanprodan/podinfo",
        &["1.0.0", "1.0.1", "2.0.0"],
    )
    .await;

    let repo = BareRepo::new(dir.path(), "config.git", "main");
    let config = "version: 1\ncommandUpdated:\n  generators:\n    - command: cat deployment.yaml\n  updaters:\n    - containerImage:\n        command: 'sed -i \"s|image: .*|image: ${FLUX_IMG}:${FLUX_TAG}|\" deployment.yaml'\n";
    let app = deployment(&host, "generated", "    fluxcd.io/tag.app: semver:~1.0");
    let first = repo.commit(
        &[("gen/.flux.yaml", config), ("gen/deployment.yaml", &app)],
        &[],
        "initial",
    );
    let remote = remote(dir.path(), &repo);
    let (_sim, agent) = start_agent(
        dir.path(),
        &remote,
        &host,
        &["--git-path=gen", "--manifest-generation"],
        "",
    )
    .await;

    eventually("the automation commit", || {
        repo.head().is_some_and(|h| h != first)
    })
    .await;
    assert_eq!(
        show(&repo, "gen/deployment.yaml"),
        trimmed(&app.replace("podinfo:1.0.0", "podinfo:1.0.1"))
    );
    assert_eq!(show(&repo, "gen/.flux.yaml"), trimmed(config));
    let message = run_git(repo.path(), &["log", "-1", "--format=%B", "main"]);
    assert_eq!(
        message.trim_end(),
        format!("Auto-release {host}/stefanprodan/podinfo:1.0.1\n\n[ci skip]")
    );
    agent.stop().await;
}

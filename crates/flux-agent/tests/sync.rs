//! The agent end to end against real parts: a bare git repository (file://, and over sshd with
//! the agent's generated deploy key), kube-sim as the cluster, the agent's own HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use clap::Parser;
use flux_agent::Args;
use kube_sim::KubeSim;
use test_support::{BareRepo, Sshd, TempDir, free_port};

/// A running agent, stopped when dropped.
struct Agent {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    async fn start(sim: &KubeSim, work: &std::path::Path, extra: &[&str]) -> Self {
        let port = free_port();
        let mut argv = vec![
            "flux-agent".to_owned(),
            format!("--listen=127.0.0.1:{port}"),
            "--git-poll-interval=1s".to_owned(),
            "--sync-interval=1h".to_owned(),
            format!("--work-dir={}", work.display()),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let args = Args::parse_from(argv);
        let client = client(sim).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            flux_agent::run_until(args, client, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the agent did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            port,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (code, body)
    }

    fn public_key(&self) -> String {
        let (code, body) = self.http("GET", "/api/flux/v6/identity.pub", "");
        assert_eq!(code, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["key"].as_str().unwrap().to_owned()
    }

    /// Successful syncs so far, from `flux_daemon_sync_duration_seconds_count{success="true"}`.
    fn clean_syncs(&self) -> u64 {
        self.metric("flux_daemon_sync_duration_seconds_count{success=\"true\"}")
            .unwrap_or(0.0) as u64
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.http("GET", "/metrics", "");
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Asks for a sync now and waits until one more has finished cleanly.
    async fn sync_now(&self) {
        let before = self.clean_syncs();
        let (code, _) = self.http(
            "POST",
            "/api/flux/v11/notify",
            r#"{"Kind":"git","Source":{}}"#,
        );
        assert_eq!(code, 202);
        eventually("a clean sync after notify", || self.clean_syncs() > before).await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn client(sim: &KubeSim) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Waits up to 30 s for `condition`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config_map(name: &str, namespace: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  value: {value}\n"
    )
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n";

fn value_of(sim: &KubeSim, name: &str) -> Option<String> {
    sim.object("", "configmaps", "apps", name)
        .and_then(|c| c["data"]["value"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_over_ssh_with_its_generated_key_and_collects_garbage() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-ssh");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    let first = repo.commit(
        &[
            ("ns.yaml", NAMESPACE),
            ("a.yaml", &config_map("a", "apps", "one")),
            ("b.yaml", &config_map("b", "apps", "two")),
        ],
        &[],
        "initial",
    );
    std::fs::create_dir_all(dir.path().join("sshd")).unwrap();
    let sshd = Sshd::start(&dir.path().join("sshd"));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts()).unwrap();
    let work = dir.path().join("work");
    let agent = Agent::start(
        &sim,
        &work,
        &[
            &format!("--git-url={}", sshd.url(&repo)),
            &format!("--ssh-known-hosts={}", known_hosts.display()),
            "--sync-garbage-collection",
        ],
    )
    .await;
    // The deploy key is generated at start; the repository host learns it, as a user would.
    let public_key = agent.public_key();
    assert!(public_key.starts_with("ssh-ed25519 "), "{public_key}");
    sshd.authorize(&public_key);

    eventually("the manifests are applied", || {
        value_of(&sim, "a").as_deref() == Some("one")
    })
    .await;
    assert_eq!(value_of(&sim, "b").as_deref(), Some("two"));
    eventually("the sync tag points at the applied commit", || {
        repo.tag_target("flux-sync").as_deref() == Some(first.as_str())
    })
    .await;
    let applied = sim.object("", "configmaps", "apps", "a").unwrap();
    assert!(applied["metadata"]["annotations"]["fluxcd.io/sync-checksum"].is_string());
    assert!(
        applied["metadata"]["labels"]["fluxcd.io/sync-gc-mark"]
            .as_str()
            .unwrap()
            .starts_with("sha256.")
    );

    let second = repo.commit(
        &[("a.yaml", &config_map("a", "apps", "uno"))],
        &["b.yaml"],
        "edit a, remove b",
    );
    eventually("the edit is applied", || {
        value_of(&sim, "a").as_deref() == Some("uno")
    })
    .await;
    eventually("the removed manifest's object is collected", || {
        value_of(&sim, "b").is_none()
    })
    .await;
    eventually("the sync tag moved", || {
        repo.tag_target("flux-sync").as_deref() == Some(second.as_str())
    })
    .await;

    eventually("the API reports nothing left to apply", || {
        agent.http("GET", &format!("/api/flux/v6/sync?ref={second}"), "") == (200, "[]".to_owned())
    })
    .await;
    assert_eq!(agent.metric("flux_git_ready"), Some(1.0));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_off_leaves_objects_and_dry_run_only_reports() {
    for (mode, expect_kept) in [(None, true), (Some("--sync-garbage-collection-dry"), true)] {
        let sim = KubeSim::start().unwrap();
        let dir = TempDir::new("agent-gc");
        let repo = BareRepo::new(dir.path(), "config.git", "master");
        repo.commit(
            &[
                ("ns.yaml", NAMESPACE),
                ("a.yaml", &config_map("a", "apps", "one")),
            ],
            &[],
            "initial",
        );
        let mut extra = vec![format!("--git-url={}", repo.file_url())];
        extra.extend(mode.map(str::to_owned));
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let agent = Agent::start(&sim, &dir.path().join("work"), &extra).await;
        eventually("applied", || value_of(&sim, "a").is_some()).await;
        let removed = repo.commit(&[], &["a.yaml"], "remove a");
        eventually("the removal is synced", || {
            repo.tag_target("flux-sync").as_deref() == Some(removed.as_str())
        })
        .await;
        assert_eq!(value_of(&sim, "a").is_some(), expect_kept, "mode {mode:?}");
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_without_change_writes_nothing_and_drift_is_reverted() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-noop");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n";
    repo.commit(
        &[
            ("ns.yaml", NAMESPACE),
            ("a.yaml", &config_map("a", "apps", "one")),
            ("web.yaml", deployment),
        ],
        &[],
        "initial",
    );
    let agent = Agent::start(
        &sim,
        &dir.path().join("work"),
        &[&format!("--git-url={}", repo.file_url())],
    )
    .await;
    eventually("applied", || {
        value_of(&sim, "a").is_some() && agent.clean_syncs() >= 1
    })
    .await;

    sim.reset_stats();
    agent.sync_now().await;
    let writes: Vec<_> = sim
        .stats()
        .log
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    assert!(writes.is_empty(), "a no-op resync wrote: {writes:?}");

    // A `kubectl edit` behind the agent's back is reverted on the next sync.
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client(&sim).await, "apps");
    api.patch(
        "a",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"data": {"value": "edited"}})),
    )
    .await
    .unwrap();
    agent.sync_now().await;
    assert_eq!(
        value_of(&sim, "a").as_deref(),
        Some("one"),
        "drift corrected"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_keeps_its_key_and_the_secret_sync_state_works() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-restart");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    let head = repo.commit(&[("ns.yaml", NAMESPACE)], &[], "initial");
    let args = [
        format!("--git-url={}", repo.file_url()),
        "--sync-state=secret".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(&sim, &dir.path().join("work-1"), &args).await;
    let key = agent.public_key();
    let marker = || {
        sim.object("", "secrets", "default", "flux-git-deploy")
            .and_then(|s| {
                s["metadata"]["annotations"]["flux.weave.works/sync-hwm"]
                    .as_str()
                    .map(str::to_owned)
            })
    };
    eventually("the Secret marks the synced revision", || {
        marker().as_deref() == Some(head.as_str())
    })
    .await;
    assert!(
        repo.tag_target("flux-sync").is_none(),
        "no tag is pushed with --sync-state=secret"
    );
    agent.stop().await;

    let again = Agent::start(&sim, &dir.path().join("work-2"), &args).await;
    assert_eq!(
        again.public_key(),
        key,
        "the key survived the restart in its Secret"
    );
    again.stop().await;
}

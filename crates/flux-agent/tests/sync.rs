//! The agent end to end against real parts: a bare git repository (file://, and over sshd with
//! the agent's generated deploy key), kube-sim as the cluster, the agent's own HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use kube_sim::KubeSim;
use support::{Agent, client, eventually};
use test_support::{BareRepo, Sshd, TempDir};

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

    // Objects of one kind are applied concurrently: wait for both.
    eventually("the manifests are applied", || {
        value_of(&sim, "a").as_deref() == Some("one")
            && value_of(&sim, "b").as_deref() == Some("two")
    })
    .await;
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

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paths_manifest_generation_and_namespace_restriction() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-paths");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    let flux_yaml = "version: 1\ncommandUpdated:\n  generators:\n  - command: cat generated.tpl\n";
    repo.commit(
        &[
            ("team-a/ns.yaml", NAMESPACE),
            ("team-a/a.yaml", &config_map("a", "apps", "from-a")),
            ("team-b/b.yaml", &config_map("b", "apps", "from-b")),
            ("other/c.yaml", &config_map("c", "apps", "not-synced")),
            ("gen/.flux.yaml", flux_yaml),
            (
                "gen/generated.tpl",
                &config_map("generated", "apps", "by-a-generator"),
            ),
            (
                "team-b/outside.yaml",
                &format!(
                    "{}---\n{}",
                    namespace("elsewhere"),
                    config_map("d", "elsewhere", "refused")
                ),
            ),
        ],
        &[],
        "initial",
    );
    let agent = Agent::start(
        &sim,
        &dir.path().join("work"),
        &[
            &format!("--git-url={}", repo.file_url()),
            "--git-path=team-a,team-b,gen",
            "--manifest-generation",
            "--k8s-allow-namespace=apps",
        ],
    )
    .await;
    eventually("both paths applied", || {
        value_of(&sim, "a").is_some() && value_of(&sim, "b").is_some()
    })
    .await;
    eventually("the generator's output applied", || {
        value_of(&sim, "generated").as_deref() == Some("by-a-generator")
    })
    .await;
    assert!(
        value_of(&sim, "c").is_none(),
        "a path not configured is not synced"
    );
    assert!(
        sim.object("", "namespaces", "", "elsewhere").is_none(),
        "a namespace outside --k8s-allow-namespace is refused"
    );
    assert!(sim.object("", "configmaps", "elsewhere", "d").is_none());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_in_git_and_on_the_live_object() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-ignore");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    let ignored = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ignored\n  namespace: apps\n  annotations:\n    fluxcd.io/ignore: \"true\"\ndata:\n  value: never\n";
    repo.commit(
        &[
            ("ns.yaml", NAMESPACE),
            ("ignored.yaml", ignored),
            ("a.yaml", &config_map("a", "apps", "one")),
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
    eventually("applied", || value_of(&sim, "a").as_deref() == Some("one")).await;
    assert!(
        value_of(&sim, "ignored").is_none(),
        "ignored in git: never applied"
    );

    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client(&sim).await, "apps");
    let annotate = serde_json::json!({"metadata": {"annotations": {"fluxcd.io/ignore": "true"}}, "data": {"value": "hand-made"}});
    api.patch(
        "a",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(annotate),
    )
    .await
    .unwrap();
    let next = repo.commit(
        &[("a.yaml", &config_map("a", "apps", "two"))],
        &[],
        "change a",
    );
    eventually("the change is synced", || {
        repo.tag_target("flux-sync").as_deref() == Some(next.as_str())
    })
    .await;
    assert_eq!(
        value_of(&sim, "a").as_deref(),
        Some("hand-made"),
        "ignored on the live object: left alone"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_or_unknown_kind_stops_neither_the_rest_nor_protects_less() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-broken");
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
    let agent = Agent::start(
        &sim,
        &dir.path().join("work"),
        &[
            &format!("--git-url={}", repo.file_url()),
            "--sync-garbage-collection",
        ],
    )
    .await;
    eventually("the first commit is synced", || {
        repo.tag_target("flux-sync").as_deref() == Some(first.as_str())
    })
    .await;

    // A broken file next to good ones: the good ones apply, nothing is collected, the marker stays.
    repo.commit(
        &[
            ("a.yaml", &config_map("a", "apps", "uno")),
            ("broken.yaml", "kind: ConfigMap\nmetadata: [unclosed\n"),
        ],
        &["b.yaml"],
        "break",
    );
    eventually("the good change applies", || {
        value_of(&sim, "a").as_deref() == Some("uno")
    })
    .await;
    eventually("the failure is counted", || {
        agent
            .metric("flux_daemon_sync_manifests{success=\"false\"}")
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert_eq!(
        value_of(&sim, "b").as_deref(),
        Some("two"),
        "no garbage collection on an incomplete read"
    );
    assert_eq!(
        repo.tag_target("flux-sync").as_deref(),
        Some(first.as_str()),
        "the marker does not move past a broken commit"
    );

    // An unknown kind fails alone; the rest applies; the marker still waits.
    let unknown =
        "apiVersion: example.com/v1\nkind: Nope\nmetadata:\n  name: x\n  namespace: apps\n";
    repo.commit(
        &[
            ("broken.yaml", unknown),
            ("c.yaml", &config_map("c", "apps", "three")),
        ],
        &[],
        "unknown kind",
    );
    eventually("the rest applies", || {
        value_of(&sim, "c").as_deref() == Some("three")
    })
    .await;
    assert_eq!(
        repo.tag_target("flux-sync").as_deref(),
        Some(first.as_str())
    );

    let fixed = repo.commit(&[], &["broken.yaml"], "fix");
    eventually("a clean commit moves the marker", || {
        repo.tag_target("flux-sync").as_deref() == Some(fixed.as_str())
    })
    .await;
    eventually("and garbage collection runs again", || {
        value_of(&sim, "b").is_none()
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remote_keeps_the_cluster_as_it_was() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-down");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    repo.commit(
        &[
            ("ns.yaml", NAMESPACE),
            ("a.yaml", &config_map("a", "apps", "one")),
        ],
        &[],
        "initial",
    );
    let agent = Agent::start(
        &sim,
        &dir.path().join("work"),
        &[
            &format!("--git-url={}", repo.file_url()),
            "--sync-garbage-collection",
        ],
    )
    .await;
    eventually("applied", || {
        value_of(&sim, "a").is_some() && agent.metric("flux_git_ready") == Some(1.0)
    })
    .await;

    let moved = dir.path().join("moved.git");
    std::fs::rename(repo.path(), &moved).unwrap();
    eventually("the mirror reports not ready", || {
        agent.metric("flux_git_ready") == Some(0.0)
    })
    .await;
    let (_, config) = agent.http("POST", "/api/flux/v9/git-repo-config", "false");
    assert!(config.contains("\"status\":\"unreachable\""), "{config}");
    assert_eq!(
        value_of(&sim, "a").as_deref(),
        Some("one"),
        "nothing is deleted while git is down"
    );

    std::fs::rename(&moved, repo.path()).unwrap();
    eventually("the mirror recovers", || {
        agent.metric("flux_git_ready") == Some(1.0)
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_that_does_not_match_known_hosts_is_refused() {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new("agent-hostkey");
    let repo = BareRepo::new(dir.path(), "config.git", "master");
    repo.commit(&[("ns.yaml", NAMESPACE)], &[], "initial");
    std::fs::create_dir_all(dir.path().join("sshd")).unwrap();
    let sshd = Sshd::start(&dir.path().join("sshd"));
    let impostor = test_support::ssh_keygen(dir.path(), "impostor");
    let known_hosts = dir.path().join("known_hosts");
    let wrong = format!(
        "[127.0.0.1]:{} {}\n",
        sshd.port(),
        impostor.public_key.trim()
    );
    std::fs::write(&known_hosts, wrong).unwrap();
    let agent = Agent::start(
        &sim,
        &dir.path().join("work"),
        &[
            &format!("--git-url={}", sshd.url(&repo)),
            &format!("--ssh-known-hosts={}", known_hosts.display()),
        ],
    )
    .await;
    sshd.authorize(&agent.public_key());
    eventually("the host is refused", || {
        let (_, config) = agent.http("POST", "/api/flux/v9/git-repo-config", "false");
        config.contains("host key verification failed")
    })
    .await;
    assert!(
        sim.object("", "namespaces", "", "apps").is_none(),
        "nothing was synced from an unverified host"
    );
    agent.stop().await;
}

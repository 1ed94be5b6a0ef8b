//! API semantics clients rely on, through kube-rs: pagination, generateName, unconditional PUT,
//! dry runs, generation bumps, the status subresource, garbage collection, deletecollection,
//! streaming lists, and the state file across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube_sim::{Config, KubeSim};
use serde_json::json;

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})).unwrap()
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}},
    }))
    .unwrap()
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue_in_key_order() {
    let sim = KubeSim::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(support::kube_client(&sim).await, "default");
    for i in 0..7 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("cm-{i}"), json!({"page": "yes"})),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3).labels("page=yes");
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn generate_name_put_without_resource_version_and_dry_run() {
    let sim = KubeSim::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(support::kube_client(&sim).await, "default");
    let generated: ConfigMap = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    )
    .unwrap();
    let created = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("gen-") && name.len() == "gen-".len() + 5,
        "{name}"
    );

    // Helm rewrites its release Secrets with a PUT that carries no resourceVersion.
    let mut overwrite = config_map(&name, json!({}));
    overwrite.data = Some([("k".to_owned(), "v".to_owned())].into());
    let replaced = api
        .replace(&name, &PostParams::default(), &overwrite)
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "v");
    assert_eq!(
        replaced.metadata.uid, created.metadata.uid,
        "the uid is kept"
    );

    let before = sim.resource_version();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&dry, &config_map("dry", json!({})))
        .await
        .unwrap();
    api.patch(
        &name,
        &PatchParams {
            dry_run: true,
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    assert_eq!(sim.resource_version(), before, "a dry run stores nothing");
    assert!(sim.object("", "configmaps", "default", "dry").is_none());
    assert_eq!(
        sim.object("", "configmaps", "default", &name).unwrap()["data"]["k"],
        "v"
    );
}

#[tokio::test]
async fn generation_counts_spec_changes_and_status_is_a_separate_subresource() {
    let sim = KubeSim::start().unwrap();
    let api: Api<Deployment> = Api::namespaced(support::kube_client(&sim).await, "default");
    api.create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    let generation = |d: &Deployment| d.metadata.generation.unwrap();
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        generation(&labelled),
        1,
        "metadata changes do not bump the generation"
    );
    let ignored = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 99}})),
        )
        .await
        .unwrap();
    assert_ne!(
        ignored.status.unwrap().replicas,
        Some(99),
        "the main resource ignores status"
    );
    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"collisionCount": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.as_ref().unwrap().collision_count, Some(3));
    assert_eq!(
        generation(&status),
        1,
        "status writes do not bump the generation"
    );
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&scaled), 2);
    let ready = api.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (ready.ready_replicas, ready.observed_generation),
        (Some(3), Some(2))
    );
}

#[tokio::test]
async fn deleting_an_owner_collects_or_orphans_its_dependents() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client, "default");
    deployments
        .create(&PostParams::default(), &deployment("collected"))
        .await
        .unwrap();
    deployments
        .create(&PostParams::default(), &deployment("orphaning"))
        .await
        .unwrap();
    assert_eq!(
        replica_sets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2,
        "each Deployment owns a ReplicaSet"
    );

    deployments
        .delete("collected", &DeleteParams::background())
        .await
        .unwrap();
    deployments
        .delete("orphaning", &DeleteParams::orphan())
        .await
        .unwrap();
    let left = replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        left.len(),
        1,
        "the background delete collected its ReplicaSet"
    );
    assert!(
        left[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("orphaning-")
    );
    assert!(
        left[0].metadata.owner_references.is_none(),
        "the orphan lost its owner reference"
    );
}

#[tokio::test]
async fn deletecollection_removes_what_the_selector_matches() {
    let sim = KubeSim::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(support::kube_client(&sim).await, "default");
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        api.create(
            &PostParams::default(),
            &config_map(name, json!({"tier": tier})),
        )
        .await
        .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=web"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn streaming_lists_send_initial_events_then_the_end_bookmark() {
    let sim = KubeSim::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(support::kube_client(&sim).await, "default");
    api.create(&PostParams::default(), &config_map("existing", json!({})))
        .await
        .unwrap();
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("init-done") {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(match event {
            Event::Init => "init".to_owned(),
            Event::InitApply(cm) => format!("init-apply {}", cm.metadata.name.unwrap()),
            Event::InitDone => "init-done".to_owned(),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["init", "init-apply existing", "init-done"]);
    let watch = sim
        .stats()
        .log
        .into_iter()
        .find(|r| r.verb == "watch")
        .unwrap();
    assert_eq!(watch.code, 200);
}

#[tokio::test]
async fn the_state_file_keeps_objects_and_crds_across_restarts() {
    let dir = support::TempDir::new("state");
    let config = Config {
        state_file: Some(dir.path().join("state.json")),
        ..Config::default()
    };
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": true, "storage": true}]}});
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "kept"}, "spec": {"size": 2}});
    let resource_version = {
        let sim = KubeSim::start_with(config.clone()).unwrap();
        let client = support::kube_client(&sim).await;
        for (uri, body) in [
            (
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                &crd,
            ),
            ("/apis/example.com/v1/namespaces/default/widgets", &widget),
        ] {
            let request = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).unwrap())
                .unwrap();
            client.request::<serde_json::Value>(request).await.unwrap();
        }
        sim.resource_version()
    };
    let sim = KubeSim::start_with(config).unwrap();
    let kept = sim
        .object("example.com", "widgets", "default", "kept")
        .expect("the widget survived the restart");
    assert_eq!(kept["spec"]["size"], 2);
    assert!(
        sim.resource_version() >= resource_version,
        "resourceVersions never go back"
    );
    let client = support::kube_client(&sim).await;
    let request = http::Request::get("/apis/example.com/v1/namespaces/default/widgets/kept")
        .body(Vec::new())
        .unwrap();
    let served: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(
        served["metadata"]["name"], "kept",
        "the CRD's resource is served again"
    );
}

#[tokio::test]
async fn https_with_a_bearer_token_serves_kube_rs_and_refuses_strangers() {
    let config = Config {
        tls: Some(kube_sim::tls::TlsMaterial::self_signed().unwrap()),
        token: Some("s3cret-token".to_owned()),
        ..Config::default()
    };
    let sim = KubeSim::start_with(config).unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let api: Api<ConfigMap> = Api::namespaced(support::kube_client(&sim).await, "default");
    api.create(&PostParams::default(), &config_map("secure", json!({})))
        .await
        .unwrap();

    let mut wrong = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).unwrap();
    wrong.auth_infos[0].auth_info.as_mut().unwrap().token = Some("wrong".to_owned().into());
    let config =
        kube::Config::from_custom_kubeconfig(wrong, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    let stranger: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    match stranger.get("secure").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.reason.as_str(), status.code), ("Unauthorized", 401))
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[test]
fn https_with_a_bearer_token_serves_kubectl() {
    let config = Config {
        tls: Some(kube_sim::tls::TlsMaterial::self_signed().unwrap()),
        token: Some("kubectl-token".to_owned()),
        ..Config::default()
    };
    let sim = KubeSim::start_with(config).unwrap();
    let kubectl = support::Client::new("kubectl".into(), &sim, "kubectl-tls");
    let namespaces = kubectl.run(&["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
}

//! kube-rs 5 against kube-sim: watcher and reflector, relist after an in-stream 410, server-side
//! apply that merges, the finalizer helper end to end, and aggregated discovery.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube_sim::KubeSim;
use serde_json::json;

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

/// The next event that is not a bookkeeping marker, within 10 s.
async fn next_change<S>(stream: &mut S) -> Event<ConfigMap>
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("no watch event within 10 s")
        .expect("watcher error")
        .expect("watch stream ended")
}

fn describe(event: &Event<ConfigMap>) -> String {
    let name = |cm: &ConfigMap| cm.metadata.name.clone().unwrap_or_default();
    let data = |cm: &ConfigMap| {
        cm.data
            .clone()
            .unwrap_or_default()
            .get("v")
            .cloned()
            .unwrap_or_default()
    };
    match event {
        Event::Apply(cm) => format!("apply {} {}", name(cm), data(cm)),
        Event::Delete(cm) => format!("delete {}", name(cm)),
        Event::Init => "init".to_owned(),
        Event::InitApply(cm) => format!("init-apply {}", name(cm)),
        Event::InitDone => "init-done".to_owned(),
    }
}

#[tokio::test]
async fn watcher_and_reflector_see_create_update_delete_in_order() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let mut stream = reflector(
        writer,
        watcher::watcher(api.clone(), watcher::Config::default()),
    )
    .boxed();
    assert_eq!(describe(&next_change(&mut stream).await), "init");
    assert_eq!(describe(&next_change(&mut stream).await), "init-done");

    api.create(&PostParams::default(), &config_map("a", &[("v", "1")]))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next_change(&mut stream).await));
    }
    assert_eq!(seen, ["apply a 1", "apply a 2", "delete a"]);
    assert!(
        reader.state().is_empty(),
        "the reflector's store follows the deletion"
    );
}

#[tokio::test]
async fn a_watch_resumed_from_a_compacted_version_relists_after_an_in_stream_410() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &config_map("before", &[("v", "1")]))
        .await
        .unwrap();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let first: Vec<String> = vec![
        describe(&next_change(&mut stream).await),
        describe(&next_change(&mut stream).await),
        describe(&next_change(&mut stream).await),
    ];
    assert_eq!(first, ["init", "init-apply before", "init-done"]);
    sim.reset_stats();

    sim.expire_watches();
    // The watcher yields the in-stream 410 as an error, then relists on the next poll.
    let error = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("no watch event within 10 s")
        .expect_err("the resumed watch reports the expired resourceVersion");
    let watcher::Error::WatchError(status) = error else {
        panic!("expected a watch error, got {error:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    let relist: Vec<String> = vec![
        describe(&next_change(&mut stream).await),
        describe(&next_change(&mut stream).await),
        describe(&next_change(&mut stream).await),
    ];
    assert_eq!(
        relist,
        ["init", "init-apply before", "init-done"],
        "the watcher relisted"
    );
    let verbs: Vec<String> = sim.stats().log.iter().map(|r| r.verb.clone()).collect();
    assert_eq!(
        verbs.first().map(String::as_str),
        Some("watch"),
        "resumed with a watch first: {verbs:?}"
    );
    assert!(
        verbs.contains(&"list".to_owned()),
        "then listed again: {verbs:?}"
    );

    api.create(&PostParams::default(), &config_map("after", &[("v", "2")]))
        .await
        .unwrap();
    assert_eq!(describe(&next_change(&mut stream).await), "apply after 2");
}

#[tokio::test]
async fn server_side_apply_merges_managers_and_reports_conflicts() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = |manager: &'static str, data: serde_json::Value| {
        let api = api.clone();
        async move {
            let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": data});
            api.patch(
                "shared",
                &PatchParams::apply(manager),
                &Patch::Apply(&patch),
            )
            .await
        }
    };
    apply("one", json!({"a": "1"})).await.unwrap();
    let merged = apply("two", json!({"b": "2"})).await.unwrap();
    let data = merged.data.unwrap();
    assert_eq!(
        (data["a"].as_str(), data["b"].as_str()),
        ("1", "2"),
        "the second manager's apply kept the first's field"
    );
    let managers: Vec<String> = merged
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["one", "two"]);

    let dropped = apply("one", json!({"c": "3"})).await.unwrap().data.unwrap();
    assert!(
        !dropped.contains_key("a"),
        "a field its manager no longer applies is removed"
    );
    assert_eq!(dropped["b"], "2");

    let conflict = apply("one", json!({"b": "changed"})).await.unwrap_err();
    let kube::Error::Api(status) = conflict else {
        panic!("expected an API error")
    };
    assert_eq!((status.reason.as_str(), status.code), ("Conflict", 409));
    assert!(
        status.message.contains("conflict with \"two\""),
        "{}",
        status.message
    );
    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("one").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"b": "changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["b"], "changed");
}

#[tokio::test]
async fn the_finalizer_helper_adds_runs_cleanup_and_removes_its_finalizer() {
    const NAME: &str = "kube-sim.dev/test-cleanup";
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(
        &PostParams::default(),
        &config_map("guarded", &[("v", "1")]),
    )
    .await
    .unwrap();
    let reconcile = |object: ConfigMap| {
        let api = api.clone();
        async move {
            finalizer(
                &api,
                NAME,
                std::sync::Arc::new(object),
                |event| async move {
                    match event {
                        Finalizer::Apply(_) => {
                            Ok::<_, std::convert::Infallible>(Action::await_change())
                        }
                        Finalizer::Cleanup(_) => Ok(Action::await_change()),
                    }
                },
            )
            .await
        }
    };
    reconcile(api.get("guarded").await.unwrap()).await.unwrap();
    let guarded = api.get("guarded").await.unwrap();
    assert_eq!(
        guarded.metadata.finalizers.as_deref(),
        Some(&[NAME.to_owned()][..])
    );
    reconcile(guarded).await.unwrap();

    api.delete("guarded", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = api.get("guarded").await.unwrap();
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "the finalizer holds the object"
    );
    reconcile(terminating).await.unwrap();
    let gone = api.get_opt("guarded").await.unwrap();
    assert!(
        gone.is_none(),
        "cleanup removed the finalizer and the object went away"
    );
}

#[tokio::test]
async fn aggregated_discovery_finds_builtin_and_crd_resources() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = kube::runtime::wait::await_condition(
        crds,
        "widgets.example.com",
        kube::runtime::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();

    let discovery = Discovery::new(client).run_aggregated().await.unwrap();
    let find = |group: &str, plural: &str| {
        discovery
            .groups()
            .filter(|g| g.name() == group)
            .flat_map(|g| g.recommended_resources())
            .any(|(resource, _)| resource.plural == plural)
    };
    assert!(find("apps", "deployments"));
    assert!(find("", "configmaps"));
    assert!(find("example.com", "widgets"));
}

#[tokio::test]
async fn a_deployment_with_ready_after_seconds_becomes_ready_only_after_the_delay() {
    use k8s_openapi::api::apps::v1::Deployment;
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "slow", "annotations": {kube_sim::controllers::READY_AFTER_ANNOTATION: "2"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "slow"}},
            "template": {"metadata": {"labels": {"app": "slow"}},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let ready = |d: &Deployment| {
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    let started = std::time::Instant::now();
    let first = api.get("slow").await.unwrap();
    assert_eq!(ready(&first), 0, "not ready during the delay");
    let mut became_ready = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ready(&api.get("slow").await.unwrap()) == 1 {
            became_ready = Some(started.elapsed());
            break;
        }
    }
    let after = became_ready.expect("ready once the delay has passed");
    assert!(
        after >= Duration::from_millis(1500),
        "ready only after the delay, was ready after {after:?}"
    );
}

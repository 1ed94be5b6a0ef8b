//! Every error leaves kube-sim as a Kubernetes `Status` with the reason and code a real API
//! server uses (kube-sim-surface §1.15), checked through kube-rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube_sim::KubeSim;
use serde_json::json;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
    )
    .unwrap()
}

/// The `Status` of a failed call.
fn status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw(
    client: &kube::Client,
    method: &str,
    uri: &str,
    body: serde_json::Value,
) -> kube::core::Status {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    status(client.request::<serde_json::Value>(request).await)
}

#[tokio::test]
async fn every_error_has_the_api_servers_reason_and_code() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let not_found = status(api.get("missing").await);
    assert_eq!(
        (not_found.reason.as_str(), not_found.code),
        ("NotFound", 404)
    );
    assert_eq!(not_found.message, "configmaps \"missing\" not found");
    let details = not_found.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("missing", "configmaps")
    );

    api.create(&PostParams::default(), &config_map("taken"))
        .await
        .unwrap();
    let exists = status(
        api.create(&PostParams::default(), &config_map("taken"))
            .await,
    );
    assert_eq!(
        (exists.reason.as_str(), exists.code),
        ("AlreadyExists", 409)
    );

    let mut stale = api.get("taken").await.unwrap();
    let mut fresh = stale.clone();
    fresh.metadata.labels = Some([("changed".to_owned(), "yes".to_owned())].into());
    api.replace("taken", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("k".to_owned(), "v".to_owned())].into());
    let conflict = status(api.replace("taken", &PostParams::default(), &stale).await);
    assert_eq!((conflict.reason.as_str(), conflict.code), ("Conflict", 409));
    assert!(
        conflict.message.contains("the object has been modified"),
        "{}",
        conflict.message
    );

    let invalid = status(
        api.create(&PostParams::default(), &config_map("Not_Valid"))
            .await,
    );
    assert_eq!((invalid.reason.as_str(), invalid.code), ("Invalid", 422));
    let causes = invalid.details.unwrap().causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    let bad = status(api.list(&ListParams::default().labels("a in b")).await);
    assert_eq!((bad.reason.as_str(), bad.code), ("BadRequest", 400));

    let not_allowed = raw(&client, "DELETE", "/api/v1/namespaces", json!({})).await;
    assert_eq!(
        (not_allowed.reason.as_str(), not_allowed.code),
        ("MethodNotAllowed", 405)
    );

    let gone = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?resourceVersion=1&resourceVersionMatch=Exact",
        json!(null),
    )
    .await;
    assert_eq!((gone.reason.as_str(), gone.code), ("Expired", 410));

    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let namespace = status(
        elsewhere
            .create(&PostParams::default(), &config_map("x"))
            .await,
    );
    assert_eq!(
        (namespace.reason.as_str(), namespace.code),
        ("NotFound", 404)
    );
    assert_eq!(namespace.message, "namespaces \"nowhere\" not found");
    assert_eq!(namespace.details.unwrap().kind, "namespaces");

    let smp = raw(
        &client,
        "GET",
        "/apis/nothing.example.com/v1/things",
        json!(null),
    )
    .await;
    assert_eq!((smp.reason.as_str(), smp.code), ("NotFound", 404));
}

#[tokio::test]
async fn strategic_merge_patch_on_a_custom_resource_is_an_unsupported_media_type() {
    let sim = KubeSim::start().unwrap();
    let client = support::kube_client(&sim).await;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": true, "storage": true}]}});
    let request = http::Request::post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&crd).unwrap())
        .unwrap();
    client.request::<serde_json::Value>(request).await.unwrap();
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let request = http::Request::post("/apis/example.com/v1/namespaces/default/widgets")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&widget).unwrap())
        .unwrap();
    client.request::<serde_json::Value>(request).await.unwrap();
    let request = http::Request::patch("/apis/example.com/v1/namespaces/default/widgets/w")
        .header("content-type", "application/strategic-merge-patch+json")
        .body(b"{}".to_vec())
        .unwrap();
    let unsupported = status(client.request::<serde_json::Value>(request).await);
    assert_eq!(
        (unsupported.reason.as_str(), unsupported.code),
        ("UnsupportedMediaType", 415)
    );
}

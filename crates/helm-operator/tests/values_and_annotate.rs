//! Values composition and the antecedent annotation against kube-sim: ConfigMaps and Secrets
//! created with the kube client, URLs served by a loopback HTTP server started here, chart files
//! from the fixture chart, and a release manifest rendered by the real `helm template`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use helm_operator::annotate::{AnnotateError, Annotator, Ownership, parse_manifest};
use helm_operator::values::{
    ComposedValues, ReferenceKind, ValuesComposer, ValuesError, ValuesReference,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::{Discovery, Scope};
use kube_sim::KubeSim;
use model::release::ResourceId;
use model::{HelmRelease, OperatorDefaults, ReleaseDescription};
use serde_json::json;
use test_support::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANTECEDENT: &str = "helm.fluxcd.io/antecedent";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The release description of HelmRelease `app` in `namespace` with `spec` (YAML lines indented
/// by two spaces, after `chart`), resolved by the model as the controller does.
fn release(namespace: &str, spec: &str) -> ReleaseDescription {
    let yaml = format!(
        "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata: {{name: app, namespace: {namespace}}}\nspec:\n  chart: {{git: 'ssh://git@example.com/charts', path: charts/app}}\n{spec}"
    );
    let hr: HelmRelease = serde_yaml::from_str(&yaml).unwrap();
    hr.to_release(&OperatorDefaults::default()).unwrap()
}

/// A kube client for `sim` with `namespaces` created.
async fn client_with(sim: &KubeSim, namespaces: &[&str]) -> kube::Client {
    let client = support::kube_client(sim).await;
    let api: Api<Namespace> = Api::all(client.clone());
    for name in namespaces {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some((*name).to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    client
}

async fn config_map(client: &kube::Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    let object: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

async fn secret(client: &kube::Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    let object = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

async fn compose(
    client: &kube::Client,
    release: &ReleaseDescription,
    chart_dir: Option<&Path>,
) -> Result<ComposedValues, ValuesError> {
    ValuesComposer::new(client.clone())
        .unwrap()
        .compose_release(release, chart_dir)
        .await
}

/// A loopback HTTP/1.1 server answering `GET <path>` from `routes` with 200 and the body, and
/// anything else with 404. It runs on the test's runtime and stops when the test ends.
async fn serve(routes: &[(&str, &str)]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes: BTreeMap<String, String> = routes
        .iter()
        .map(|(p, b)| ((*p).to_owned(), (*b).to_owned()))
        .collect();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0_u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
                let path = path.split('?').next().unwrap_or("/");
                let (status, body) = match routes.get(path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", "not found\n".to_owned()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{address}")
}

fn reference(kind: ReferenceKind, namespace: &str, name: &str) -> ValuesReference {
    ValuesReference {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sources_merge_in_order_with_defaults_and_cross_namespace_refs() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["team", "shared"]).await;
    // valueFileSecrets: Secret `legacy` in the HelmRelease's namespace, key values.yaml.
    secret(
        &client,
        "team",
        "legacy",
        &[(
            "values.yaml",
            "image: {repository: legacy, tag: '0.1'}\ndb: {user: admin, password: s3cr3t-pw}\nports: [1, 2, 3]\n",
        )],
    )
    .await;
    // configMapKeyRef with the default namespace and key.
    config_map(
        &client,
        "team",
        "base",
        &[
            (
                "values.yaml",
                "image: {repository: nginx}\nreplicas: 1\nports: [80]\n",
            ),
            ("other.yaml", "replicas: 99\n"),
        ],
    )
    .await;
    // configMapKeyRef in another namespace with its own key.
    config_map(
        &client,
        "shared",
        "override",
        &[("prod.yaml", "replicas: 3\nimage: {tag: '1.1'}\n")],
    )
    .await;
    // secretKeyRef in another namespace with its own key.
    secret(
        &client,
        "shared",
        "tokens",
        &[("token.yaml", "api: {token: tok-123456}\n")],
    )
    .await;

    let release = release(
        "team",
        "  valueFileSecrets: [{name: legacy}]
  valuesFrom:
  - configMapKeyRef: {name: base}
  - configMapKeyRef: {name: override, namespace: shared, key: prod.yaml}
  - secretKeyRef: {name: tokens, namespace: shared, key: token.yaml}
  values:
    image: {tag: '2.0'}
    extra: true
",
    );
    let composed = compose(&client, &release, None).await.unwrap();
    assert_eq!(
        composed.values,
        json!({
            "image": {"repository": "nginx", "tag": "2.0"},
            "db": {"user": "admin", "password": "s3cr3t-pw"},
            "ports": [80],
            "replicas": 3,
            "api": {"token": "tok-123456"},
            "extra": true,
        })
    );
    // Strings from Secrets, including `0.1` and `legacy` that later sources overrode; longest first.
    assert_eq!(
        composed.secret_strings,
        ["tok-123456", "s3cr3t-pw", "legacy", "admin", "0.1"]
    );
    assert_eq!(
        composed.references,
        [
            reference(ReferenceKind::Secret, "team", "legacy"),
            reference(ReferenceKind::ConfigMap, "team", "base"),
            reference(ReferenceKind::ConfigMap, "shared", "override"),
            reference(ReferenceKind::Secret, "shared", "tokens"),
        ]
    );
    assert_eq!(composed.checksum.len(), 64);
    let debug = format!("{composed:?}");
    assert!(
        !debug.contains("s3cr3t-pw") && !debug.contains("tok-123456"),
        "{debug}"
    );
}

#[tokio::test]
async fn optional_sources_that_are_missing_or_broken_are_skipped() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["team"]).await;
    config_map(&client, "team", "wrong-key", &[("other.yaml", "a: 1\n")]).await;
    config_map(
        &client,
        "team",
        "broken",
        &[("values.yaml", "a: [unclosed\n")],
    )
    .await;
    config_map(&client, "team", "list", &[("values.yaml", "- a\n- b\n")]).await;
    secret(&client, "team", "broken", &[("values.yaml", "{{{")]).await;
    config_map(&client, "team", "good", &[("values.yaml", "kept: yes\n")]).await;

    let release = release(
        "team",
        "  valuesFrom:
  - configMapKeyRef: {name: absent, optional: true}
  - secretKeyRef: {name: absent, namespace: elsewhere, optional: true}
  - configMapKeyRef: {name: wrong-key, optional: true}
  - configMapKeyRef: {name: broken, optional: true}
  - configMapKeyRef: {name: list, optional: true}
  - secretKeyRef: {name: broken, optional: true}
  - chartFileRef: {path: values-missing.yaml, optional: true}
  - configMapKeyRef: {name: good}
",
    );
    let composed = compose(&client, &release, Some(&support::chart("hello")))
        .await
        .unwrap();
    assert_eq!(composed.values, json!({"kept": "yes"}));
    assert!(composed.secret_strings.is_empty());
    // Missing optional objects are still references: creating one must re-reconcile.
    assert!(
        composed
            .references
            .contains(&reference(ReferenceKind::ConfigMap, "team", "absent"))
    );
    assert!(
        composed
            .references
            .contains(&reference(ReferenceKind::Secret, "elsewhere", "absent"))
    );
}

#[tokio::test]
async fn required_sources_that_are_missing_or_broken_fail_with_a_reason() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["team"]).await;
    config_map(&client, "team", "wrong-key", &[("other.yaml", "a: 1\n")]).await;
    secret(
        &client,
        "team",
        "broken",
        &[("values.yaml", "password: hunter2\n  nested: [oops\n")],
    )
    .await;

    let error = compose(
        &client,
        &release(
            "team",
            "  valuesFrom:\n  - configMapKeyRef: {name: absent}\n",
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesSourceNotFound");
    assert_eq!(
        error.to_string(),
        "failed to read values from ConfigMap team/absent key \"values.yaml\": not found"
    );

    let error = compose(
        &client,
        &release(
            "team",
            "  valueFileSecrets: [{name: gone}]\n  valuesFrom:\n  - configMapKeyRef: {name: wrong-key, optional: true}\n",
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesSourceNotFound");
    assert!(error.to_string().contains("Secret team/gone"), "{error}");

    let error = compose(
        &client,
        &release(
            "team",
            "  valuesFrom:\n  - configMapKeyRef: {name: wrong-key, namespace: team}\n",
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesKeyNotFound");
    assert!(
        error
            .to_string()
            .contains("ConfigMap team/wrong-key key \"values.yaml\""),
        "{error}"
    );

    let error = compose(
        &client,
        &release("team", "  valuesFrom:\n  - secretKeyRef: {name: broken}\n"),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesInvalid");
    let text = error.to_string();
    assert!(
        text.contains("Secret team/broken") && text.contains("line"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{error:?}").contains("hunter2"));
}

#[tokio::test]
async fn external_urls_are_fetched_and_failures_named() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["team"]).await;
    let base = serve(&[
        ("/values.yaml", "from: url\nimage: {tag: url}\n"),
        ("/broken.yaml", "a: [unclosed\n"),
    ])
    .await;

    let ok = release(
        "team",
        &format!(
            "  valuesFrom:
  - externalSourceRef: {{url: '{base}/values.yaml?token=abc'}}
  - externalSourceRef: {{url: '{base}/missing.yaml', optional: true}}
  - externalSourceRef: {{url: '{base}/broken.yaml', optional: true}}
  values: {{image: {{pull: Always}}}}
"
        ),
    );
    let composed = compose(&client, &ok, None).await.unwrap();
    assert_eq!(
        composed.values,
        json!({"from": "url", "image": {"tag": "url", "pull": "Always"}})
    );
    assert!(composed.references.is_empty());
    assert!(composed.secret_strings.is_empty());

    let not_found = release(
        "team",
        &format!("  valuesFrom:\n  - externalSourceRef: {{url: '{base}/missing.yaml'}}\n"),
    );
    let error = compose(&client, &not_found, None).await.unwrap_err();
    assert!(
        matches!(error, ValuesError::HttpStatus { status: 404, .. }),
        "{error}"
    );
    assert_eq!(error.reason(), "ValuesHTTPError");
    assert!(!error.is_transient());
    assert_eq!(
        error.to_string(),
        format!("failed to fetch values from URL {base}/missing.yaml: HTTP status 404")
    );

    // Credentials in a URL never reach the message.
    let with_credentials = base.replace("http://", "http://user:pa55word@");
    let error = compose(
        &client,
        &release(
            "team",
            &format!(
                "  valuesFrom:\n  - externalSourceRef: {{url: '{with_credentials}/missing.yaml?sig=abc'}}\n"
            ),
        ),
        None,
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(
        !text.contains("pa55word") && !text.contains("sig=abc"),
        "{text}"
    );

    // Only http and https.
    let error = compose(
        &client,
        &release(
            "team",
            "  valuesFrom:\n  - externalSourceRef: {url: 'file:///etc/passwd', optional: true}\n",
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesURLInvalid");

    // Nothing listens: a transient error, even for an optional source.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = compose(
        &client,
        &release(
            "team",
            &format!(
                "  valuesFrom:\n  - externalSourceRef: {{url: 'http://{closed}/v.yaml', optional: true}}\n"
            ),
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesFetchFailed");
    assert!(error.is_transient());
}

#[tokio::test]
async fn chart_files_are_read_from_inside_the_chart_only() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["team"]).await;
    let hello = support::chart("hello");

    let composed = compose(
        &client,
        &release(
            "team",
            "  valuesFrom:\n  - chartFileRef: {path: values.yaml}\n  values: {greeting: hi}\n",
        ),
        Some(&hello),
    )
    .await
    .unwrap();
    assert_eq!(composed.values["greeting"], "hi");
    assert_eq!(composed.values["image"], "nginxinc/nginx-unprivileged:1.27");
    assert_eq!(composed.values["replicaCount"], 1);

    for path in [
        "../hello/values.yaml",
        "templates/../../hello/values.yaml",
        "/etc/passwd",
    ] {
        let error = compose(
            &client,
            &release(
                "team",
                &format!("  valuesFrom:\n  - chartFileRef: {{path: '{path}', optional: true}}\n"),
            ),
            Some(&hello),
        )
        .await
        .unwrap_err();
        assert_eq!(error.reason(), "ValuesPathInvalid", "{path}: {error}");
    }

    // A symlink inside the chart that points outside it is refused too.
    let temp = TempDir::new("values-chart");
    let chart = temp.path().join("chart");
    std::fs::create_dir_all(chart.join("ci")).unwrap();
    std::fs::write(temp.path().join("outside.yaml"), "stolen: true\n").unwrap();
    std::fs::write(chart.join("ci/prod.yaml"), "env: prod\n").unwrap();
    std::os::unix::fs::symlink("../outside.yaml", chart.join("escape.yaml")).unwrap();
    let error = compose(
        &client,
        &release(
            "team",
            "  valuesFrom:\n  - chartFileRef: {path: escape.yaml}\n",
        ),
        Some(&chart),
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "ValuesPathInvalid");
    let composed = compose(
        &client,
        &release(
            "team",
            "  valuesFrom:\n  - chartFileRef: {path: ./ci/prod.yaml}\n",
        ),
        Some(&chart),
    )
    .await
    .unwrap();
    assert_eq!(composed.values, json!({"env": "prod"}));

    // Missing file: error when required; no chart directory: error when required.
    let missing = release(
        "team",
        "  valuesFrom:\n  - chartFileRef: {path: nope.yaml}\n",
    );
    let error = compose(&client, &missing, Some(&chart)).await.unwrap_err();
    assert_eq!(error.reason(), "ValuesSourceNotFound");
    let error = compose(&client, &missing, None).await.unwrap_err();
    assert_eq!(error.reason(), "ValuesNoChartDirectory");
}

#[tokio::test]
async fn checksum_follows_values_not_their_spelling() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["team"]).await;
    config_map(
        &client,
        "team",
        "one",
        &[("values.yaml", "b: 1\na:\n  y: 2.0\n  x: [1, 2.5]\n")],
    )
    .await;
    config_map(
        &client,
        "team",
        "two",
        &[("values.yaml", "a: {x: [1.0, 2.5], y: 2}\nb: 1.0\n")],
    )
    .await;
    config_map(
        &client,
        "team",
        "three",
        &[("values.yaml", "a: {x: [1.0, 2.5], y: 3}\nb: 1.0\n")],
    )
    .await;
    let checksum = |name: &'static str| {
        let client = client.clone();
        async move {
            let release = release(
                "team",
                &format!("  valuesFrom:\n  - configMapKeyRef: {{name: {name}}}\n"),
            );
            compose(&client, &release, None).await.unwrap().checksum
        }
    };
    let one = checksum("one").await;
    assert_eq!(one, checksum("one").await);
    assert_eq!(one, checksum("two").await);
    assert_ne!(one, checksum("three").await);
}

// ---------------------------------------------------------------------------------------------
// Annotation and ownership
// ---------------------------------------------------------------------------------------------

/// Creates every object of `manifest` with the kube client, namespaced ones in `namespace`
/// unless they name one, with `annotations` added.
async fn create_objects(
    client: &kube::Client,
    manifest: &str,
    namespace: &str,
    annotations: &[(&str, &str)],
) {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    for document in manifest.split("\n---") {
        let value: serde_yaml::Value = serde_yaml::from_str(document).unwrap();
        if value.is_null() {
            continue;
        }
        let mut object: DynamicObject = serde_yaml::from_value(value).unwrap();
        let types = object.types.clone().unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let (resource, capabilities) = discovery.resolve_gvk(&gvk).unwrap();
        let object_annotations = object
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        for (key, value) in annotations {
            object_annotations.insert((*key).to_owned(), (*value).to_owned());
        }
        let api: Api<DynamicObject> = if capabilities.scope == Scope::Namespaced {
            let ns = object
                .metadata
                .namespace
                .get_or_insert_with(|| namespace.to_owned())
                .clone();
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            object.metadata.namespace = None;
            Api::all_with(client.clone(), &resource)
        };
        api.create(&PostParams::default(), &object).await.unwrap();
    }
}

fn render_hello(release_name: &str, namespace: &str) -> String {
    let output = Command::new(support::tool("KUBE_SIM_HELM3"))
        .args(["template", release_name])
        .arg(support::chart("hello"))
        .args(["--namespace", namespace, "--no-hooks", "--skip-tests"])
        .args(["--set", "unready=true"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn annotation(sim: &KubeSim, group: &str, plural: &str, ns: &str, name: &str) -> Option<String> {
    let object = sim.object(group, plural, ns, name).unwrap_or_else(|| {
        panic!("{group}/{plural} {ns}/{name} does not exist");
    });
    object["metadata"]["annotations"][ANTECEDENT]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn a_rendered_chart_is_annotated_everywhere_and_then_ours() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["dev"]).await;
    let manifest = render_hello("dev-hello", "dev");
    assert_eq!(parse_manifest(&manifest).len(), 3, "{manifest}");
    create_objects(&client, &manifest, "dev", &[]).await;
    let annotator = Annotator::new(client.clone());
    let ours = ResourceId::new("dev", "HelmRelease", "hello");

    assert_eq!(
        annotator.ownership(&manifest, "dev", &ours).await.unwrap(),
        Ownership::Unowned
    );
    let report = annotator.annotate(&manifest, "dev", &ours).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.annotated, 3);
    for (group, plural) in [
        ("", "configmaps"),
        ("", "services"),
        ("apps", "deployments"),
    ] {
        assert_eq!(
            annotation(&sim, group, plural, "dev", "dev-hello").as_deref(),
            Some("dev:helmrelease/hello"),
            "{plural}"
        );
    }
    // The patch touched only the annotation: the chart's own annotation and labels are intact.
    let deployment = sim
        .object("apps", "deployments", "dev", "dev-hello")
        .unwrap();
    assert_eq!(
        deployment["metadata"]["annotations"]["kube-sim.dev/fail"],
        "true"
    );
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/instance"],
        "dev-hello"
    );
    assert_eq!(
        annotator.ownership(&manifest, "dev", &ours).await.unwrap(),
        Ownership::Ours
    );
    // Another HelmRelease with the same release name is told who owns it.
    let intruder = ResourceId::new("other", "HelmRelease", "hello");
    assert_eq!(
        annotator
            .ownership(&manifest, "dev", &intruder)
            .await
            .unwrap(),
        Ownership::Other("dev:helmrelease/hello".to_owned())
    );
}

#[tokio::test]
async fn ownership_reads_every_object_and_ignores_missing_ones() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["dev", "prod"]).await;
    let ours = ResourceId::new("dev", "HelmRelease", "app");
    let cm = |name: &str| {
        format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{k: v}}\n")
    };
    create_objects(
        &client,
        &cm("mine"),
        "dev",
        &[(ANTECEDENT, "dev:helmrelease/app")],
    )
    .await;
    create_objects(&client, &cm("plain"), "dev", &[]).await;
    create_objects(
        &client,
        &cm("theirs"),
        "dev",
        &[(ANTECEDENT, "dev:helmrelease/other")],
    )
    .await;
    create_objects(
        &client,
        &cm("legacy"),
        "dev",
        &[(ANTECEDENT, "dev:fluxhelmrelease/app")],
    )
    .await;
    let unknown_kind = "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n";
    let annotator = Annotator::new(client.clone());

    // The other owner sits on the last object: all objects are checked, not just the first.
    let manifest = [
        cm("mine"),
        cm("gone"),
        unknown_kind.to_owned(),
        cm("plain"),
        cm("theirs"),
    ]
    .concat();
    assert_eq!(
        annotator.ownership(&manifest, "dev", &ours).await.unwrap(),
        Ownership::Other("dev:helmrelease/other".to_owned())
    );
    let manifest = [cm("gone"), cm("mine"), unknown_kind.to_owned(), cm("plain")].concat();
    assert_eq!(
        annotator.ownership(&manifest, "dev", &ours).await.unwrap(),
        Ownership::Ours
    );
    let manifest = [cm("gone"), unknown_kind.to_owned(), cm("plain")].concat();
    assert_eq!(
        annotator.ownership(&manifest, "dev", &ours).await.unwrap(),
        Ownership::Unowned
    );
    // An explicit namespace in the manifest wins over the release namespace.
    let elsewhere =
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n  namespace: prod\n";
    assert_eq!(
        annotator.ownership(elsewhere, "dev", &ours).await.unwrap(),
        Ownership::Unowned
    );

    // The FluxHelmRelease form is an ID like any other.
    let fhr = ResourceId::new("dev", "FluxHelmRelease", "app");
    assert_eq!(
        annotator
            .ownership(&cm("legacy"), "dev", &fhr)
            .await
            .unwrap(),
        Ownership::Ours
    );
    assert_eq!(
        annotator
            .ownership(&cm("legacy"), "dev", &ours)
            .await
            .unwrap(),
        Ownership::Other("dev:fluxhelmrelease/app".to_owned())
    );
    assert_eq!(
        annotator.ownership(&cm("mine"), "dev", &fhr).await.unwrap(),
        Ownership::Other("dev:helmrelease/app".to_owned())
    );
}

#[tokio::test]
async fn annotate_overwrites_collects_failures_and_goes_on() {
    let sim = KubeSim::start().unwrap();
    let client = client_with(&sim, &["dev"]).await;
    let ours = ResourceId::new("dev", "FluxHelmRelease", "app");
    let role = "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: app-reader\n  namespace: ignored\nrules: []\n";
    let theirs = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: theirs\ndata: {k: v}\n";
    create_objects(&client, role, "dev", &[]).await;
    create_objects(
        &client,
        theirs,
        "dev",
        &[(ANTECEDENT, "dev:helmrelease/other")],
    )
    .await;
    let manifest = [
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gone\n",
        "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
        role,
        "---\nnot: [valid\n",
        theirs,
    ]
    .concat();

    let report = Annotator::new(client.clone())
        .annotate(&manifest, "dev", &ours)
        .await;
    assert_eq!(report.annotated, 2);
    let failed: Vec<(String, &str)> = report
        .failed
        .iter()
        .map(|(object, error)| (object.to_string(), error.reason()))
        .collect();
    assert_eq!(
        failed,
        [
            ("ConfigMap dev/gone (v1)".to_owned(), "AnnotateFailed"),
            ("Widget w (example.com/v1)".to_owned(), "UnknownKind"),
        ]
    );
    let AnnotateError::Patch { error, .. } = &report.failed[0].1 else {
        panic!("{:?}", report.failed[0].1);
    };
    assert!(
        matches!(&**error, kube::Error::Api(status) if status.is_not_found()),
        "{error}"
    );
    assert_eq!(
        annotation(
            &sim,
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "app-reader"
        )
        .as_deref(),
        Some("dev:fluxhelmrelease/app")
    );
    assert_eq!(
        annotation(&sim, "", "configmaps", "dev", "theirs").as_deref(),
        Some("dev:fluxhelmrelease/app")
    );
}

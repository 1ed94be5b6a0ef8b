//! The operator's install manifest parses, and its Deployment passes only flags the operator
//! accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use clap::Parser;
use helm_operator::Args;

#[test]
fn the_operator_deployment_args_parse() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/helm-operator.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut kinds = Vec::new();
    let mut deployment = None;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let object: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
        kinds.push(object["kind"].as_str().unwrap().to_owned());
        if object["kind"] == "Deployment" {
            deployment = Some(object);
        }
    }
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    let deployment = deployment.unwrap();
    assert_eq!(deployment["metadata"]["namespace"], "flux");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["helm-operator".to_owned()];
    argv.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let args = Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("the Deployment's args do not parse: {e}"));
    assert_eq!(args.workers, 4);
    assert_eq!(args.enabled_helm_versions.len(), 2);
}

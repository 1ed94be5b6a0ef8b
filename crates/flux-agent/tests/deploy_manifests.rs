//! The install manifests under `manifests/` read without errors, and the agent's Deployment
//! passes only flags the agent accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;

use clap::Parser;
use flux_agent::Args;
use flux_agent::manifests::{LoadOptions, NoScopes, load};

#[test]
fn install_manifests_load_and_the_deployment_args_parse() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let loaded = load(
        &root,
        &["manifests".to_owned()],
        &LoadOptions::default(),
        &NoScopes,
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(loaded.complete);
    let deployment = loaded
        .manifests
        .iter()
        .find(|m| m.kind == "Deployment" && m.name == "flux-agent")
        .expect("the agent's Deployment");
    assert_eq!(deployment.namespace.as_deref(), Some("flux"));
    let object = deployment.object().unwrap();
    let container = &object["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["flux-agent".to_owned()];
    argv.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let args = Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("the Deployment's args do not parse: {e}"));
    assert_eq!(args.paths(), ["namespaces", "releases", "workloads"]);
    assert!(args.sync_garbage_collection);
    let kinds: Vec<&str> = loaded.manifests.iter().map(|m| m.kind.as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Secret",
        "Service",
        "Deployment",
    ] {
        assert!(
            kinds.contains(&kind),
            "{kind} missing from manifests/: {kinds:?}"
        );
    }
}

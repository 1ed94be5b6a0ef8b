//! The CRDs checked in under `manifests/crds/` are exactly what the Rust types generate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/crds");
    let rendered = model::crds::rendered().unwrap();
    assert_eq!(rendered.len(), 2);
    for crd in rendered {
        let path = dir.join(&crd.file_name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "{} is missing ({err}); run `cargo xtask crds`",
                path.display()
            )
        });
        assert!(
            on_disk == crd.yaml,
            "{} differs from what the types in crates/model generate; run `cargo xtask crds` and commit the result",
            path.display()
        );
    }
}

#[test]
fn generated_crds_carry_the_helm_operator_surface() {
    let rendered = model::crds::rendered().unwrap();
    let hr = rendered
        .iter()
        .find(|c| c.file_name == "helmreleases.helm.fluxcd.io.yaml")
        .unwrap();
    let crd: serde_yaml::Value = serde_yaml::from_str(&hr.yaml).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(
        spec["names"]["shortNames"],
        serde_yaml::from_str::<serde_yaml::Value>("[hr, hrs]").unwrap()
    );
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1");
    assert!(version["subresources"]["status"].is_mapping());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Release", "Phase", "ReleaseStatus", "Message", "Age"]
    );
    let spec_schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec_schema["properties"]["values"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    for field in [
        "skipCRDs",
        "disableOpenAPIValidation",
        "valuesFrom",
        "valueFileSecrets",
        "helmVersion",
        "rollback",
        "test",
    ] {
        assert!(
            spec_schema["properties"][field].is_mapping(),
            "spec.{field} missing from the schema"
        );
    }
    assert_eq!(
        spec_schema["required"],
        serde_yaml::from_str::<serde_yaml::Value>("[chart]").unwrap()
    );

    let fhr = rendered
        .iter()
        .find(|c| c.file_name == "fluxhelmreleases.helm.integrations.flux.weave.works.yaml")
        .unwrap();
    let crd: serde_yaml::Value = serde_yaml::from_str(&fhr.yaml).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        schema["properties"]["releaseName"]["pattern"],
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    );
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "fhr");
}

//! The manifests of the project seeds deserialize, their policies parse, their images are found
//! at the right paths with the right container names, and their release names come out right.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use model::annotations::{Policies, Prefix, annotations_of_manifest};
use model::release::{ChartSource, OperatorDefaults};
use model::{
    ChartRepoSettings, FluxHelmRelease, HelmRelease, TagCandidate, TagFilter, find_images,
};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seeds")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn fhr(name: &str) -> FluxHelmRelease {
    serde_yaml::from_str(&fixture(name)).unwrap()
}

/// Container name -> (image, value paths) of every image found.
fn images(
    annotations: &BTreeMap<String, String>,
    values: &model::Values,
) -> BTreeMap<String, (String, Vec<String>)> {
    let policies = Policies::from_annotations(annotations).unwrap();
    let found = find_images(&policies.image_paths, values);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    found
        .images
        .iter()
        .map(|i| {
            let mut paths = vec![i.paths.repository.to_string()];
            paths.extend(i.paths.tag.iter().map(ToString::to_string));
            (i.container.clone(), (i.image.to_string(), paths))
        })
        .collect()
}

fn repo() -> ChartRepoSettings {
    ChartRepoSettings::new("ssh://git@github.com/example/config")
}

#[test]
fn mongodb_flux_helm_release_resolves_to_its_release_name_and_chart_path() {
    let mongodb = fhr("mongodb.yaml");
    let release = mongodb
        .to_release(&repo(), &OperatorDefaults::default())
        .unwrap();
    assert_eq!(release.release_name, "mongo-database");
    assert_eq!(
        release.owner.to_string(),
        "myNamespace:fluxhelmrelease/mongodb"
    );
    let ChartSource::Git(git) = &release.chart else {
        panic!("expected a git chart")
    };
    assert_eq!(git.path, "charts/mongodb");
    assert_eq!(git.git_ref, "master");
    let found = images(&BTreeMap::new(), mongodb.spec.values.as_ref().unwrap());
    assert_eq!(
        found["chart-image"],
        (
            "bitnami/mongodb:3.7.1-r1".to_owned(),
            vec!["image".to_owned()]
        )
    );
}

#[test]
fn release_names_default_to_namespace_dash_name() {
    for file in ["podinfo-dev.yaml", "podinfo-prod.yaml"] {
        let mut object = fhr(file);
        object.spec.release_name = None;
        let release = object
            .to_release(&repo(), &OperatorDefaults::default())
            .unwrap();
        let namespace = object.metadata.namespace.as_deref().unwrap();
        let name = object.metadata.name.as_deref().unwrap();
        assert_eq!(release.release_name, format!("{namespace}-{name}"));
    }
    // The mongodb seed lives in `myNamespace`: `myNamespace-mongodb` is not a name Helm accepts,
    // so without its explicit releaseName it is refused, naming the derived name.
    let mut mongodb = fhr("mongodb.yaml");
    mongodb.spec.release_name = None;
    let err = mongodb
        .to_release(&repo(), &OperatorDefaults::default())
        .unwrap_err();
    assert!(err.to_string().contains("\"myNamespace-mongodb\""), "{err}");
    let mut hr: HelmRelease = serde_yaml::from_str(&fixture("mozalert-controller.yaml")).unwrap();
    hr.spec.release_name = None;
    assert_eq!(hr.release_name().unwrap(), "mozalert-mozalert-controller");
}

#[test]
fn podinfo_dev_uses_the_legacy_prefix_and_a_glob_filter() {
    let text = fixture("podinfo-dev.yaml");
    let manifest: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let annotations = annotations_of_manifest(&manifest).unwrap();
    let policies = Policies::from_annotations(&annotations).unwrap();
    assert!(policies.automated);
    assert_eq!(policies.prefix, Prefix::Legacy);
    assert_eq!(policies.tag_filter("chart-image").to_string(), "glob:dev-*");

    let object = fhr("podinfo-dev.yaml");
    assert_eq!(
        object
            .to_release(&repo(), &OperatorDefaults::default())
            .unwrap()
            .release_name,
        "podinfo-dev"
    );
    let found = images(&annotations, object.spec.values.as_ref().unwrap());
    assert_eq!(
        found["chart-image"],
        (
            "stefanprodan/podinfo:dev-kb9lm91e".to_owned(),
            vec!["image".to_owned()]
        )
    );
}

#[test]
fn podinfo_prod_has_two_containers_with_their_own_filters() {
    let object = fhr("podinfo-prod.yaml");
    let annotations = object.metadata.annotations.clone().unwrap();
    let policies = Policies::from_annotations(&annotations).unwrap();
    assert_eq!(policies.tag_filter("init").to_string(), "semver:~1.0");
    assert_eq!(policies.tag_filter("app").to_string(), "regex:^1.2.*");
    let found = images(&annotations, object.spec.values.as_ref().unwrap());
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        ["app", "init"],
        "one container per values key, no chart-image"
    );
    assert_eq!(
        found["init"],
        (
            "quay.io/stefanprodan/podinfo:1.2.0".to_owned(),
            vec!["init.image".to_owned()]
        )
    );
    assert_eq!(
        found["app"],
        (
            "quay.io/stefanprodan/podinfo:1.0.0".to_owned(),
            vec!["app.image".to_owned()]
        )
    );
}

#[test]
fn mozalert_helm_release_has_its_image_at_repository_and_tag() {
    let hr: HelmRelease = serde_yaml::from_str(&fixture("mozalert-controller.yaml")).unwrap();
    let release = hr.to_release(&OperatorDefaults::default()).unwrap();
    assert_eq!(release.release_name, "mozalert-controller");
    let ChartSource::Git(git) = &release.chart else {
        panic!("expected a git chart")
    };
    assert_eq!(git.url, "https://github.com/mozafrank/helm-charts");
    assert_eq!(git.git_ref, "main");
    assert_eq!(git.path, "charts/mozalert-controller");

    let annotations = hr.metadata.annotations.clone().unwrap();
    let policies = Policies::from_annotations(&annotations).unwrap();
    assert!(policies.automated);
    assert_eq!(policies.prefix, Prefix::Current);
    assert_eq!(policies.tag_filter("chart-image").to_string(), "glob:stg-*");
    let found = images(&annotations, hr.spec.values.as_ref().unwrap());
    assert_eq!(
        found["chart-image"],
        (
            "afrank/mozalert-controller:latest".to_owned(),
            vec!["image.repository".to_owned(), "image.tag".to_owned()]
        )
    );
}

fn at(seconds: u64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds))
}

fn pick<'a>(filter: &str, tags: &'a [(&'a str, Option<SystemTime>)]) -> Option<&'a str> {
    TagFilter::parse(filter)
        .unwrap()
        .newest(tags)
        .map(TagCandidate::tag)
}

#[test]
fn seed_filters_pick_the_tags_the_seeds_expect() {
    let versions = [
        ("1.0.0", at(1)),
        ("1.0.1", at(2)),
        ("1.1.0", at(3)),
        ("1.2.3", at(4)),
    ];
    assert_eq!(pick("semver:~1.0", &versions), Some("1.0.1"));
    assert_eq!(pick("regex:^1.2.*", &versions), Some("1.2.3"));
    // The same picks whatever the creation times say.
    let shuffled = [
        ("1.2.3", at(1)),
        ("1.1.0", at(2)),
        ("1.0.1", at(3)),
        ("1.0.0", at(4)),
    ];
    assert_eq!(pick("semver:~1.0", &shuffled), Some("1.0.1"));
    assert_eq!(pick("regex:^1.2.*", &shuffled), Some("1.2.3"));

    let dev = [
        ("dev-abc", at(10)),
        ("dev-def", at(20)),
        ("stg-xyz", at(30)),
    ];
    assert_eq!(pick("glob:dev-*", &dev), Some("dev-def"));

    let with_latest = [("latest", at(99)), ("1.0.0", at(1))];
    assert_eq!(pick("glob:*", &with_latest), Some("1.0.0"));
    assert_eq!(pick("glob:*", &[("latest", at(99))]), None);
}

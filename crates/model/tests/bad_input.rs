//! Every parser refuses bad input with a typed error whose message names the offending value.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;

use model::annotations::{AnnotationError, Policies, annotations_of_manifest};
use model::release::{OperatorDefaults, ReleaseNameError, SpecError};
use model::{ChartRepoSettings, FluxHelmRelease, HelmRelease, ImageRef, PolicyError, TagFilter};

#[test]
fn unknown_filter_prefix() {
    let err = TagFilter::parse("smver:~1.0").unwrap_err();
    assert!(matches!(&err, PolicyError::UnknownPrefix { prefix, .. } if prefix == "smver"));
    assert!(err.to_string().contains("\"smver:~1.0\""), "{err}");
}

#[test]
fn invalid_semver_range() {
    for range in [
        "semver:~one",
        "semver:",
        "semver:>=",
        "semver:1.2.3.4",
        "semver:1.x.3",
        "semver:1.2 -",
    ] {
        let err = TagFilter::parse(range).unwrap_err();
        assert!(
            matches!(err, PolicyError::InvalidSemverRange { .. }),
            "{range}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("{range:?}")), "{err}");
    }
}

#[test]
fn invalid_regex() {
    let err = TagFilter::parse("regex:^1.(2").unwrap_err();
    assert!(matches!(err, PolicyError::InvalidRegex { .. }));
    assert!(err.to_string().contains("\"regex:^1.(2\""), "{err}");
}

#[test]
fn invalid_glob() {
    let err = TagFilter::parse("glob:dev-[").unwrap_err();
    assert!(matches!(err, PolicyError::InvalidGlob { .. }));
    assert!(err.to_string().contains("\"glob:dev-[\""), "{err}");
}

#[test]
fn malformed_image_reference() {
    for bad in [
        "quay.io/Org/app:1.0",
        "app:1.0:2.0",
        "app@md5:abc",
        "registry:port/app",
        "app:",
    ] {
        let err = ImageRef::parse(bad).unwrap_err();
        assert_eq!(err.input, bad);
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn helm_release_without_a_chart_source() {
    let cases = [
        ("chart: {}", "neither chart.git and chart.path"),
        (
            "chart: {git: 'ssh://git@example.com/charts'}",
            "chart.path is missing",
        ),
        (
            "chart: {repository: 'https://charts.example.com', name: app}",
            "chart.version is missing",
        ),
    ];
    for (chart, expected) in cases {
        let hr: HelmRelease = serde_yaml::from_str(&format!(
            "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata: {{name: app, namespace: team}}\nspec:\n  {chart}\n"
        ))
        .unwrap();
        let err = hr.to_release(&OperatorDefaults::default()).unwrap_err();
        assert!(
            matches!(err, SpecError::NoChartSource { .. }),
            "{chart}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("team:helmrelease/app"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn non_string_automated_value() {
    let manifest: serde_yaml::Value = serde_yaml::from_str(
        "kind: Deployment\nmetadata:\n  name: app\n  annotations:\n    fluxcd.io/automated: true\n",
    )
    .unwrap();
    let err = annotations_of_manifest(&manifest).unwrap_err();
    assert!(
        matches!(&err, AnnotationError::NonStringValue { key, value, kind: "boolean" }
            if key == "fluxcd.io/automated" && value == "true"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("\"fluxcd.io/automated\"") && message.contains("true"),
        "{message}"
    );
}

#[test]
fn invalid_tag_filter_annotation_names_key_and_value() {
    let annotations = BTreeMap::from([("fluxcd.io/tag.app".to_owned(), "semver:~one".to_owned())]);
    let err = Policies::from_annotations(&annotations).unwrap_err();
    assert!(matches!(err, AnnotationError::InvalidTagFilter { .. }));
    let message = err.to_string();
    assert!(
        message.contains("fluxcd.io/tag.app") && message.contains("semver:~one"),
        "{message}"
    );
}

#[test]
fn invalid_release_name() {
    let hr: HelmRelease = serde_yaml::from_str(
        "metadata: {name: app, namespace: team}\nspec:\n  releaseName: My_Release\n  chart: {git: 'ssh://x/y', path: c}\n",
    )
    .unwrap();
    let err = hr.to_release(&OperatorDefaults::default()).unwrap_err();
    assert!(
        matches!(&err, SpecError::InvalidReleaseName { source: ReleaseNameError::Malformed { name }, .. } if name == "My_Release"),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"My_Release\""), "{err}");

    let fhr: FluxHelmRelease = serde_yaml::from_str(&format!(
        "metadata: {{name: app, namespace: team}}\nspec:\n  chartGitPath: app\n  releaseName: {}\n",
        "x".repeat(60)
    ))
    .unwrap();
    let err = fhr
        .to_release(
            &ChartRepoSettings::new("ssh://git@example.com/config"),
            &OperatorDefaults::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SpecError::InvalidReleaseName {
                source: ReleaseNameError::TooLong { len: 60, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&"x".repeat(60)), "{err}");
}

#[test]
fn values_from_entry_with_two_sources() {
    let hr: HelmRelease = serde_yaml::from_str(
        "metadata: {name: app, namespace: team}\nspec:\n  chart: {git: 'ssh://x/y', path: c}\n  valuesFrom:\n  - configMapKeyRef: {name: a}\n    secretKeyRef: {name: b}\n",
    )
    .unwrap();
    let err = hr.to_release(&OperatorDefaults::default()).unwrap_err();
    assert!(
        matches!(err, SpecError::InvalidValuesFrom { index: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("found 2"), "{err}");
}

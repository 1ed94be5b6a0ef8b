#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Golden files for the byte-exact image write-back (`automation::edit::update_images`).
//!
//! Each directory under `tests/fixtures/image-edit/` holds `original.yaml`, `expected.yaml`
//! (written by hand: the original with only the image scalars changed) and `update.json` (the
//! target, the default namespace and the changes). The edit must give `expected.yaml` byte for
//! byte. The fixtures are stored without line-ending conversion (`.gitattributes`: `-text`), so
//! the CRLF cases really are CRLF.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use flux_agent::automation::edit::{ImageChange, Target, update_images};
use model::annotations::{Policies, annotations_of_manifest};
use model::image::ImageRef;
use model::values_images::{ValuePath, ValueUpdate, find_images};
use serde::Deserialize;

#[derive(Deserialize)]
struct Update {
    note: String,
    default_namespace: String,
    target: TargetSpec,
    changes: Vec<ChangeSpec>,
}

#[derive(Deserialize)]
struct TargetSpec {
    kind: String,
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ChangeSpec {
    Container { container: String, image: String },
    Value { path: Vec<String>, value: String },
}

struct Case {
    name: String,
    original: String,
    expected: String,
    update: Update,
}

impl Case {
    fn target(&self) -> Target {
        Target {
            kind: self.update.target.kind.clone(),
            name: self.update.target.name.clone(),
            namespace: self.update.target.namespace.clone(),
        }
    }

    fn changes(&self) -> Vec<ImageChange> {
        self.update
            .changes
            .iter()
            .map(|c| match c {
                ChangeSpec::Container { container, image } => ImageChange::Container {
                    container: container.clone(),
                    image: image.clone(),
                },
                ChangeSpec::Value { path, value } => ImageChange::Value {
                    path: ValuePath::new(path.iter().map(String::as_str)),
                    value: value.clone(),
                },
            })
            .collect()
    }

    fn run(&self, src: &str) -> String {
        update_images(
            src,
            &self.update.default_namespace,
            &self.target(),
            &self.changes(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image-edit")
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            original: fs::read_to_string(dir.join("original.yaml")).unwrap(),
            expected: fs::read_to_string(dir.join("expected.yaml")).unwrap(),
            update: serde_json::from_str(&fs::read_to_string(dir.join("update.json")).unwrap())
                .unwrap(),
        })
        .collect()
}

/// The first line where two texts differ, with line endings shown.
fn first_difference(got: &str, want: &str) -> String {
    let (got_lines, want_lines): (Vec<&str>, Vec<&str>) = (
        got.split_inclusive('\n').collect(),
        want.split_inclusive('\n').collect(),
    );
    for (i, (g, w)) in got_lines.iter().zip(&want_lines).enumerate() {
        if g != w {
            return format!("line {}: got {g:?}, want {w:?}", i + 1);
        }
    }
    format!(
        "{} lines vs {} lines (got {} bytes, want {})",
        got_lines.len(),
        want_lines.len(),
        got.len(),
        want.len()
    )
}

#[test]
fn every_golden_case_gives_the_expected_bytes() {
    let cases = cases();
    assert!(cases.len() >= 24, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            !case.update.note.is_empty(),
            "{}: say what it covers",
            case.name
        );
        if case.name.starts_with("no-op") {
            assert_eq!(case.original, case.expected, "{}", case.name);
        } else {
            assert_ne!(
                case.original, case.expected,
                "{}: nothing to change",
                case.name
            );
        }
        match update_images(
            &case.original,
            &case.update.default_namespace,
            &case.target(),
            &case.changes(),
        ) {
            Ok(got) if got == case.expected => {}
            Ok(got) => failures.push(format!(
                "{}: {}",
                case.name,
                first_difference(&got, &case.expected)
            )),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn applying_the_same_update_again_changes_nothing() {
    for case in cases() {
        assert_eq!(case.run(&case.expected), case.expected, "{}", case.name);
    }
}

#[test]
fn crlf_fixtures_really_use_crlf() {
    for case in cases().iter().filter(|c| c.name.starts_with("crlf")) {
        let lines = case.original.matches('\n').count();
        assert!(lines > 5, "{}", case.name);
        assert_eq!(
            case.original.matches("\r\n").count(),
            lines,
            "{}: stored with LF",
            case.name
        );
        assert_eq!(
            case.expected.matches("\r\n").count(),
            lines,
            "{}",
            case.name
        );
    }
}

/// The value changes of the HelmRelease cases are exactly what the model's image detection
/// (shapes and path annotations) says a bump to the new tag changes, so the goldens exercise
/// the paths automation will really ask for.
#[test]
fn helmrelease_value_changes_are_the_model_tag_updates() {
    let mut checked = 0;
    for case in cases() {
        let values_changes: Vec<(ValuePath, String)> = case
            .changes()
            .into_iter()
            .filter_map(|c| match c {
                ImageChange::Value { path, value } => Some((path, value)),
                ImageChange::Container { .. } => None,
            })
            .collect();
        if values_changes.is_empty() {
            continue;
        }
        let object = serde_yaml::Deserializer::from_str(&case.original)
            .map(|d| {
                let mut v = serde_yaml::Value::deserialize(d).unwrap();
                v.apply_merge().unwrap();
                v
            })
            .find(|v| {
                v.get("kind").and_then(|k| k.as_str()) == Some(case.update.target.kind.as_str())
                    && v["metadata"]["name"].as_str() == Some(case.update.target.name.as_str())
            })
            .unwrap();
        let policies =
            Policies::from_annotations(&annotations_of_manifest(&object).unwrap()).unwrap();
        let values: BTreeMap<String, serde_json::Value> =
            serde_yaml::from_value(object["spec"]["values"].clone()).unwrap();
        let values = values.into_iter().collect();
        let found = find_images(&policies.image_paths, &values);
        for (path, value) in values_changes {
            let image = found
                .images
                .iter()
                .find(|i| {
                    i.paths.tag.as_ref() == Some(&path)
                        || (i.paths.tag.is_none() && i.paths.repository == path)
                })
                .unwrap_or_else(|| panic!("{}: no model image at {path}", case.name));
            let tag = if image.paths.tag.is_some() {
                value.clone()
            } else {
                ImageRef::parse(&value).unwrap().tag().unwrap().to_owned()
            };
            assert_eq!(
                image.tag_update(&tag).unwrap(),
                [ValueUpdate {
                    path: path.clone(),
                    value: value.clone()
                }],
                "{}",
                case.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} value changes checked");
}

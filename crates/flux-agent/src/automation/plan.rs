//! Deciding image updates: for every automated workload and container, the newest tag its
//! filter allows, when that differs from the current tag (Flux v1 `pkg/update/automated.go`
//! and `pkg/update/images.go`).
//!
//! Pure: tags come from a [`TagSource`] (the registry scanner's cache in the agent, a map in
//! tests). A repository the scanner has not read yet gives no update and no error: the next run
//! sees it. What this module does not do: edit files, commit, or read the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use model::ResourceId;
use model::image::ImageRef;
use model::values_images::ValueUpdate;

use crate::automation::workloads::{ImageLocation, Workload};

/// Tags with their creation times, as a [`TagSource`] gives them.
pub type Tags = Vec<(String, Option<SystemTime>)>;

/// The tags known for image repositories.
pub trait TagSource {
    /// The tags of `repository` (a canonical name, [`ImageRef::canonical_name`]) with their
    /// creation times, or `None` when the repository has not been scanned successfully.
    fn tags(&self, repository: &str) -> Option<Tags>;
}

impl TagSource for BTreeMap<String, Tags> {
    fn tags(&self, repository: &str) -> Option<Tags> {
        self.get(repository).cloned()
    }
}

/// What one container's update changes in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set the container's `image` to this reference (the user's spelling, new tag).
    Image(String),
    /// Set these scalars under `spec.values` (a HelmRelease).
    Values(Vec<ValueUpdate>),
}

/// One container to update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerUpdate {
    /// The container name.
    pub container: String,
    /// The image now.
    pub current: ImageRef,
    /// The image after the update.
    pub target: ImageRef,
    /// What to write.
    pub change: Change,
}

/// The updates of one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadUpdate {
    /// The workload.
    pub id: ResourceId,
    /// `apiVersion` as written.
    pub api_version: String,
    /// `kind` as written.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The namespace after defaulting.
    pub namespace: Option<String>,
    /// The file it is in.
    pub source: String,
    /// Its container updates, in container order.
    pub containers: Vec<ContainerUpdate>,
}

/// The result of [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Workloads with at least one update, in workload order.
    pub updates: Vec<WorkloadUpdate>,
    /// Problems per workload (`<namespace>:<kind>/<name>`), for workloads that ask for
    /// automation: an invalid filter, an unreadable image, a tag that is not valid.
    pub errors: BTreeMap<String, Vec<String>>,
}

impl Plan {
    /// The distinct new image references, sorted (`repo:tag`).
    #[must_use]
    pub fn images(&self) -> Vec<String> {
        self.updates
            .iter()
            .flat_map(|w| w.containers.iter().map(|c| c.target.to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// The canonical repositories of every container of the automated workloads: what the registry
/// scanner must track.
#[must_use]
pub fn repositories(workloads: &[Workload]) -> BTreeSet<String> {
    workloads
        .iter()
        .filter(|w| w.is_automated())
        .flat_map(|w| w.containers.iter().map(|c| c.image.canonical_name()))
        .collect()
}

/// The updates for `workloads` given the tags of `source`; see the module docs.
#[must_use]
pub fn plan(workloads: &[Workload], source: &dyn TagSource) -> Plan {
    let mut result = Plan::default();
    // The newest allowed tag per (repository, filter): `None` when the repository is not
    // scanned yet, `Some(None)` when no tag is allowed. Tag lists are not kept.
    let mut newest_of: BTreeMap<(String, String), Option<Option<String>>> = BTreeMap::new();
    for workload in workloads {
        if !workload.wants_automation() {
            continue;
        }
        let id = workload.id.to_string();
        let mut errors: Vec<String> = workload.problems.clone();
        let policies = match &workload.policies {
            Ok(p) => p,
            Err(e) => {
                errors.push(e.clone());
                result.errors.insert(id, errors);
                continue;
            }
        };
        let mut containers = Vec::new();
        if workload.is_automated() {
            for container in &workload.containers {
                let repository = container.image.canonical_name();
                let filter = policies.tag_filter(&container.name);
                let newest = newest_of
                    .entry((repository, filter.to_string()))
                    .or_insert_with_key(|(repository, _)| {
                        source
                            .tags(repository)
                            .map(|tags| filter.newest(&tags).map(|(tag, _)| tag.clone()))
                    });
                let Some(Some(newest)) = newest else {
                    continue;
                };
                if container.image.tag() == Some(newest.as_str())
                    && container.image.digest().is_none()
                {
                    continue;
                }
                let target = match container.image.with_tag(newest) {
                    Ok(target) => target,
                    Err(e) => {
                        errors.push(format!("container {}: {e}", container.name));
                        continue;
                    }
                };
                let change = match &container.location {
                    ImageLocation::Container => Change::Image(target.to_string()),
                    ImageLocation::Values(values_image) => match values_image.tag_update(newest) {
                        Ok(updates) if updates.is_empty() => continue,
                        Ok(updates) => Change::Values(updates),
                        Err(e) => {
                            errors.push(format!("container {}: {e}", container.name));
                            continue;
                        }
                    },
                };
                containers.push(ContainerUpdate {
                    container: container.name.clone(),
                    current: container.image.clone(),
                    target,
                    change,
                });
            }
        }
        if !errors.is_empty() {
            result.errors.insert(id, errors);
        }
        if !containers.is_empty() {
            result.updates.push(WorkloadUpdate {
                id: workload.id.clone(),
                api_version: workload.api_version.clone(),
                kind: workload.kind.clone(),
                name: workload.name.clone(),
                namespace: workload.namespace.clone(),
                source: workload.source.clone(),
                containers,
            });
        }
    }
    result
}

/// The commit message of an automation run (Flux v1 `pkg/update/automated.go`
/// `CommitMessage`): `Auto-release <image>` for one image, else `Auto-release multiple (N)
/// images` followed by a blank line and ` - <image>` per image; then, when `ci_skip` is set, a
/// blank line and the `ci_skip` text (`[ci skip]`).
#[must_use]
pub fn commit_message(images: &[String], ci_skip: Option<&str>) -> String {
    let mut message = match images {
        [one] => format!("Auto-release {one}"),
        many => {
            let mut text = format!("Auto-release multiple ({}) images\n", many.len());
            for image in many {
                text.push_str(&format!("\n - {image}"));
            }
            text
        }
    };
    if let Some(skip) = ci_skip.filter(|s| !s.is_empty()) {
        message.push_str("\n\n");
        message.push_str(skip);
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::automation::workloads::workloads;
    use crate::manifests::{LoadOptions, NoScopes, load};

    fn workloads_of(text: &str) -> Vec<Workload> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.yaml"), text).unwrap();
        let loaded = load(
            dir.path(),
            &[String::new()],
            &LoadOptions::default(),
            &NoScopes,
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        workloads(&loaded.manifests)
    }

    fn at(seconds: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
    }

    fn tags(repo: &str, list: &[(&str, u64)]) -> BTreeMap<String, Tags> {
        BTreeMap::from([(
            repo.to_owned(),
            list.iter()
                .map(|(t, s)| ((*t).to_owned(), at(*s)))
                .collect(),
        )])
    }

    const PROD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo-prod
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.init: semver:~1.0
    fluxcd.io/tag.app: regex:^1.2.*
spec:
  template:
    spec:
      initContainers: [{name: init, image: "127.0.0.1:5000/podinfo:1.0.0"}]
      containers: [{name: app, image: "127.0.0.1:5000/podinfo:1.0.0"}]
"#;

    #[test]
    fn each_container_gets_the_newest_tag_its_filter_allows() {
        let found = workloads_of(PROD);
        let source = tags(
            "127.0.0.1:5000/podinfo",
            &[("1.0.0", 1), ("1.0.1", 2), ("1.1.0", 3), ("1.2.3", 4)],
        );
        let plan = plan(&found, &source);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let changes: Vec<_> = plan.updates[0]
            .containers
            .iter()
            .map(|c| (c.container.as_str(), c.change.clone()))
            .collect();
        assert_eq!(
            changes,
            [
                (
                    "app",
                    Change::Image("127.0.0.1:5000/podinfo:1.2.3".to_owned())
                ),
                (
                    "init",
                    Change::Image("127.0.0.1:5000/podinfo:1.0.1".to_owned())
                ),
            ]
        );
        assert_eq!(
            plan.images(),
            [
                "127.0.0.1:5000/podinfo:1.0.1",
                "127.0.0.1:5000/podinfo:1.2.3"
            ]
        );
    }

    #[test]
    fn locked_unscanned_and_current_workloads_get_no_update() {
        let locked = PROD.replace(
            "fluxcd.io/automated: \"true\"",
            "fluxcd.io/automated: \"true\"\n    fluxcd.io/locked: \"true\"",
        );
        let source = tags("127.0.0.1:5000/podinfo", &[("1.0.1", 2), ("1.2.3", 4)]);
        assert!(plan(&workloads_of(&locked), &source).updates.is_empty());
        let unscanned: BTreeMap<String, Tags> = BTreeMap::new();
        assert!(plan(&workloads_of(PROD), &unscanned).updates.is_empty());
        let current = tags("127.0.0.1:5000/podinfo", &[("1.0.0", 9)]);
        let plan = plan(&workloads_of(PROD), &current);
        assert!(plan.updates.is_empty(), "{:?}", plan.updates);
    }

    #[test]
    fn helm_release_tags_change_only_the_tag_value() {
        let found = workloads_of(
            r#"
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: mozalert
  annotations:
    flux.weave.works/automated: "true"
    flux.weave.works/tag.chart-image: glob:stg-*
spec:
  values:
    image:
      repository: 127.0.0.1:5000/mozalert
      tag: stg-1
"#,
        );
        let source = tags(
            "127.0.0.1:5000/mozalert",
            &[("stg-1", 1), ("stg-2", 2), ("prod-3", 3)],
        );
        let plan = plan(&found, &source);
        let Change::Values(updates) = &plan.updates[0].containers[0].change else {
            panic!("not a values change: {plan:?}");
        };
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].path.to_string(), "image.tag");
        assert_eq!(updates[0].value, "stg-2");
    }

    #[test]
    fn an_invalid_filter_is_an_error_of_that_workload_only() {
        let text = format!(
            "{}\n---\n{}",
            PROD.replace("regex:^1.2.*", "semver:>>1"),
            PROD.replace("podinfo-prod", "other")
        );
        let source = tags("127.0.0.1:5000/podinfo", &[("1.0.1", 2), ("1.2.3", 4)]);
        let plan = plan(&workloads_of(&text), &source);
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(plan.updates[0].name, "other");
        let errors = &plan.errors["default:deployment/podinfo-prod"];
        assert!(errors[0].contains("semver:>>1"), "{errors:?}");
    }

    #[test]
    fn commit_messages_follow_flux_v1() {
        assert_eq!(
            commit_message(&["app:1.1".to_owned()], Some("[ci skip]")),
            "Auto-release app:1.1\n\n[ci skip]"
        );
        assert_eq!(
            commit_message(&["a:1".to_owned(), "b:2".to_owned()], None),
            "Auto-release multiple (2) images\n\n - a:1\n - b:2"
        );
    }
}

//! The workloads image automation looks at, read from the manifests in git.
//!
//! Kinds (Flux v1 `pkg/cluster/kubernetes/resourcekinds.go`): `Deployment`, `StatefulSet`,
//! `DaemonSet` (pod template at `spec.template.spec`), `CronJob` (at
//! `spec.jobTemplate.spec.template.spec`), each with its `containers` and `initContainers`; and
//! `HelmRelease` / `FluxHelmRelease`, whose "containers" are the images found in `spec.values`
//! ([`model::values_images::find_images`], path annotations honoured).
//!
//! Policies come from the manifest's annotations ([`Policies::from_annotations`]): a broken tag
//! filter makes that workload fail with an error, never the others. Images that do not parse are
//! reported per container. What this module does not do: read the cluster, or decide updates.

use std::collections::BTreeMap;

use model::ResourceId;
use model::annotations::Policies;
use model::image::ImageRef;
use model::values_images::{ValuesImage, find_images};
use serde_json::Value;

use crate::manifests::Manifest;

/// Kinds whose pod template is at `spec.template.spec`.
const POD_TEMPLATE_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];
/// Kinds whose pod template is at `spec.jobTemplate.spec.template.spec`.
const JOB_TEMPLATE_KINDS: &[&str] = &["CronJob"];
/// Kinds whose images live in `spec.values`.
const RELEASE_KINDS: &[&str] = &["HelmRelease", "FluxHelmRelease"];

/// Where a container's image is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageLocation {
    /// The `image` field of a container (or init container) of the pod template.
    Container,
    /// Scalars under `spec.values` of a HelmRelease.
    Values(Box<ValuesImage>),
}

/// One container of a workload and its current image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container name (for HelmReleases: `chart-image`, a values key, or an alias).
    pub name: String,
    /// The image as written.
    pub image: ImageRef,
    /// Where it is written.
    pub location: ImageLocation,
}

/// A workload found in git.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `<namespace>:<kind>/<name>`.
    pub id: ResourceId,
    /// `apiVersion` as written.
    pub api_version: String,
    /// `kind` as written (`Deployment`).
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The namespace after defaulting.
    pub namespace: Option<String>,
    /// The file it is in, relative to the repository root (for generated manifests, the
    /// `.flux.yaml`).
    pub source: String,
    /// Its policies, or why they could not be read (an invalid tag filter).
    pub policies: Result<Policies, String>,
    /// Its containers with readable images, in manifest order (containers, then init
    /// containers); values images sorted as [`find_images`] sorts them.
    pub containers: Vec<Container>,
    /// Containers whose image could not be read, with the reason.
    pub problems: Vec<String>,
    /// `serviceAccountName` of the pod template (`default` when unset; `None` for HelmReleases).
    pub service_account: Option<String>,
    /// `imagePullSecrets[].name` of the pod template.
    pub image_pull_secrets: Vec<String>,
}

impl Workload {
    /// Whether automation may change it: automated, not locked, not ignored, readable policies.
    #[must_use]
    pub fn is_automated(&self) -> bool {
        self.policies
            .as_ref()
            .is_ok_and(|p| p.automated && !p.locked && p.ignore == model::annotations::Ignore::No)
    }

    /// Whether its annotations ask for automation, whatever else they say (used to report
    /// errors of workloads that wanted automation).
    #[must_use]
    pub fn wants_automation(&self) -> bool {
        match &self.policies {
            Ok(p) => p.automated,
            Err(_) => true,
        }
    }
}

/// The workloads among `manifests`, in manifest order.
#[must_use]
pub fn workloads(manifests: &[Manifest]) -> Vec<Workload> {
    manifests.iter().filter_map(workload).collect()
}

/// What automation reads of a manifest. Deserialising into this skips everything else
/// (ports, env, probes...) without building it, which matters for large repositories.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Shape {
    metadata: MetadataShape,
    spec: SpecShape,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct MetadataShape {
    annotations: Option<Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SpecShape {
    template: Option<TemplateShape>,
    #[serde(rename = "jobTemplate")]
    job_template: Option<JobTemplateShape>,
    values: Option<Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct JobTemplateShape {
    spec: Option<JobSpecShape>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct JobSpecShape {
    template: Option<TemplateShape>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct TemplateShape {
    spec: Option<PodShape>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PodShape {
    containers: Vec<ContainerShape>,
    #[serde(rename = "initContainers")]
    init_containers: Vec<ContainerShape>,
    #[serde(rename = "serviceAccountName")]
    service_account_name: Option<String>,
    #[serde(rename = "imagePullSecrets")]
    image_pull_secrets: Vec<NameShape>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ContainerShape {
    name: Option<String>,
    image: Option<Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct NameShape {
    name: Option<String>,
}

/// The workload of one manifest, `None` for other kinds.
fn workload(manifest: &Manifest) -> Option<Workload> {
    let kind = manifest.kind.as_str();
    let is_release = RELEASE_KINDS.contains(&kind);
    let is_job = JOB_TEMPLATE_KINDS.contains(&kind);
    if !is_release && !is_job && !POD_TEMPLATE_KINDS.contains(&kind) {
        return None;
    }
    // The loader keeps manifests as JSON text; only what automation needs is read from it.
    let shape: Shape = match serde_json::from_str(&manifest.json) {
        Ok(shape) => shape,
        Err(e) => {
            tracing::warn!(manifest = %manifest.id, error = %e, "unreadable workload manifest");
            return None;
        }
    };
    let annotations = string_map(shape.metadata.annotations.as_ref().unwrap_or(&Value::Null));
    let policies = Policies::from_annotations(&annotations).map_err(|e| e.to_string());
    let mut found = Workload {
        id: manifest.id.clone(),
        api_version: manifest.api_version.clone(),
        kind: manifest.kind.clone(),
        name: manifest.name.clone(),
        namespace: manifest.namespace.clone(),
        source: manifest.source.clone(),
        policies,
        containers: Vec::new(),
        problems: Vec::new(),
        service_account: None,
        image_pull_secrets: Vec::new(),
    };
    let spec = shape.spec;
    if is_release {
        if let Some(values) = spec.values.as_ref().and_then(Value::as_object) {
            release_containers(values, &annotations, &mut found);
        }
    } else {
        let template = if is_job {
            spec.job_template
                .and_then(|j| j.spec)
                .and_then(|s| s.template)
        } else {
            spec.template
        };
        if let Some(pod) = template.and_then(|t| t.spec) {
            pod_containers(pod, &mut found);
        }
    }
    Some(found)
}

/// Containers and init containers of a pod spec, and its pull credentials.
fn pod_containers(pod: PodShape, found: &mut Workload) {
    found.service_account = Some(
        pod.service_account_name
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
    );
    found.image_pull_secrets = pod
        .image_pull_secrets
        .into_iter()
        .filter_map(|s| s.name)
        .collect();
    for (list, containers) in [
        ("containers", pod.containers),
        ("initContainers", pod.init_containers),
    ] {
        for container in containers {
            let Some(name) = container.name else {
                found
                    .problems
                    .push(format!("a container in {list} has no name"));
                continue;
            };
            match container.image.as_ref().and_then(Value::as_str) {
                Some(image) => match ImageRef::parse(image) {
                    Ok(image) => found.containers.push(Container {
                        name,
                        image,
                        location: ImageLocation::Container,
                    }),
                    Err(e) => found.problems.push(format!("container {name}: {e}")),
                },
                None => found
                    .problems
                    .push(format!("container {name} has no image")),
            }
        }
    }
}

/// The images of a HelmRelease's `spec.values`.
fn release_containers(
    values: &serde_json::Map<String, Value>,
    annotations: &BTreeMap<String, String>,
    found: &mut Workload,
) {
    let paths = match &found.policies {
        Ok(p) => p.image_paths.clone(),
        // The paths do not depend on tag filters; read them on their own.
        Err(_) => {
            let mut only_paths = annotations.clone();
            only_paths.retain(|k, _| {
                k.starts_with(model::annotations::REPOSITORY_PATH_PREFIX)
                    || k.starts_with(model::annotations::REGISTRY_PATH_PREFIX)
                    || k.starts_with(model::annotations::TAG_PATH_PREFIX)
            });
            Policies::from_annotations(&only_paths)
                .map(|p| p.image_paths)
                .unwrap_or_default()
        }
    };
    let images = find_images(&paths, values);
    for problem in images.problems {
        found.problems.push(problem.to_string());
    }
    for image in images.images {
        found.containers.push(Container {
            name: image.container.clone(),
            image: image.image.clone(),
            location: ImageLocation::Values(Box::new(image)),
        });
    }
}

/// The string entries of a JSON object (annotations), others skipped.
fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::manifests::{LoadOptions, load};

    fn load_text(files: &[(&str, &str)]) -> Vec<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        let loaded = load(
            dir.path(),
            &[String::new()],
            &LoadOptions::default(),
            &crate::manifests::NoScopes,
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.manifests
    }

    #[test]
    fn deployments_cronjobs_and_helmreleases_are_workloads() {
        let manifests = load_text(&[(
            "all.yaml",
            r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.app: semver:~1.0
spec:
  template:
    spec:
      serviceAccountName: web
      imagePullSecrets: [{name: pull}]
      initContainers: [{name: init, image: "busybox:1.0"}]
      containers: [{name: app, image: "127.0.0.1:5000/app:1.0.0"}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: jobs}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: "alpine:3.18"}]
---
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: podinfo
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.chart-image: "glob:dev-*"
spec:
  values:
    image: {repository: 127.0.0.1:5000/podinfo, tag: dev-abc}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-workload}
"#,
        )]);
        let found = workloads(&manifests);
        assert_eq!(found.len(), 3);
        let web = &found[0];
        assert_eq!(web.id.to_string(), "default:deployment/web");
        assert!(web.is_automated());
        let names: Vec<_> = web.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", "init"]);
        assert_eq!(web.service_account.as_deref(), Some("web"));
        assert_eq!(web.image_pull_secrets, ["pull"]);
        assert_eq!(found[1].id.to_string(), "jobs:cronjob/nightly");
        assert!(!found[1].is_automated());
        assert_eq!(found[1].containers[0].image.to_string(), "alpine:3.18");
        let release = &found[2];
        assert_eq!(release.containers[0].name, "chart-image");
        assert_eq!(
            release.containers[0].image.to_string(),
            "127.0.0.1:5000/podinfo:dev-abc"
        );
        assert!(matches!(
            release.containers[0].location,
            ImageLocation::Values(_)
        ));
    }

    #[test]
    fn an_invalid_filter_fails_only_its_workload() {
        let manifests = load_text(&[(
            "a.yaml",
            r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.app: "semver:not a range"
spec:
  template:
    spec:
      containers: [{name: app, image: "app:1.0"}]
"#,
        )]);
        let found = workloads(&manifests);
        assert!(found[0].policies.is_err());
        assert!(found[0].wants_automation());
        assert!(!found[0].is_automated());
    }
}

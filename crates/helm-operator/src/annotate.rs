//! The antecedent annotation on a release's resources, and the ownership check that reads it
//! (Helm Operator 1.x `pkg/release/annotator.go`, without `kubectl`).
//!
//! Every object of a release carries `helm.fluxcd.io/antecedent: <ns>:helmrelease/<name>`
//! ([`model::annotations::ANTECEDENT`]), naming the HelmRelease that manages it (for a
//! FluxHelmRelease `<ns>:fluxhelmrelease/<name>`). Flux reads it to link workloads to their
//! HelmRelease; the operator reads it to refuse a release whose resources another HelmRelease
//! manages (two HelmReleases with the same `releaseName`).
//!
//! Differences from the original, on purpose:
//! - [`Annotator::ownership`] looks at every object of the manifest, not only the first;
//! - objects are found through API discovery (cached per group/version, refreshed when a kind is
//!   missing, so CRDs installed later are found) and patched with a JSON merge patch of
//!   `metadata.annotations` alone, under the field manager [`FIELD_MANAGER`];
//! - one failing object never stops the others; failures are collected in [`AnnotateReport`].
//!
//! The manifest is the multi-document YAML Helm stores for a release (hooks are not in it).
//! Documents that do not parse or lack `apiVersion`, `kind` or `metadata.name` are skipped with
//! a warning; `*List` kinds are expanded into their items. This module neither removes
//! annotations nor touches any other field.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersion;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use model::ResourceId;
use model::annotations::ANTECEDENT;

/// The field manager of the annotation patch. It owns `metadata.annotations[ANTECEDENT]` and
/// nothing else.
pub const FIELD_MANAGER: &str = "helm-operator-antecedent";

/// How many objects are read or patched at once.
const CONCURRENCY: usize = 8;

/// Kinds of HelmRelease-like owners an antecedent value may name.
const OWNER_KINDS: [&str; 2] = ["helmrelease", "fluxhelmrelease"];

/// One object of a release manifest, as written (the namespace may be absent).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.namespace`; after resolution in [`AnnotateReport`], the namespace used
    /// (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(
                f,
                "{} {namespace}/{} ({})",
                self.kind, self.name, self.api_version
            ),
            None => write!(f, "{} {} ({})", self.kind, self.name, self.api_version),
        }
    }
}

/// Who manages a release's live objects, from their antecedent annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// No live object carries an antecedent annotation (a release made with `helm`, or one
    /// whose objects are all gone): the operator may adopt it.
    Unowned,
    /// At least one live object names us and none names anyone else.
    Ours,
    /// A live object names another owner: the annotation's value, as found.
    Other(String),
}

/// The outcome of [`Annotator::annotate`].
#[derive(Debug, Default)]
pub struct AnnotateReport {
    /// Objects patched successfully.
    pub annotated: usize,
    /// Objects that could not be patched, with the namespace resolved, in manifest order.
    pub failed: Vec<(ObjectRef, AnnotateError)>,
}

/// Errors from resolving, reading or patching one object.
#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    /// The API server does not serve the object's kind at its `apiVersion`.
    #[error("failed to find the API resource of {object}: kind not served")]
    UnknownKind {
        /// The object.
        object: ObjectRef,
    },
    /// Discovery of the object's group/version failed.
    #[error("failed to discover the API resource of {object}")]
    Discovery {
        /// The object.
        object: ObjectRef,
        /// The client error.
        #[source]
        error: Box<kube::Error>,
    },
    /// The live object could not be read.
    #[error("failed to read {object}")]
    Get {
        /// The object.
        object: ObjectRef,
        /// The client error.
        #[source]
        error: Box<kube::Error>,
    },
    /// The annotation patch failed (including "not found").
    #[error("failed to annotate {object}")]
    Patch {
        /// The object.
        object: ObjectRef,
        /// The client error.
        #[source]
        error: Box<kube::Error>,
    },
}

impl AnnotateError {
    /// A short stable category, usable as condition reason, Event reason and metric label.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownKind { .. } => "UnknownKind",
            Self::Discovery { .. } => "DiscoveryFailed",
            Self::Get { .. } => "ReadFailed",
            Self::Patch { .. } => "AnnotateFailed",
        }
    }
}

/// The annotation value for `owner`: its Flux resource ID, `<ns>:helmrelease/<name>` or
/// `<ns>:fluxhelmrelease/<name>`.
#[must_use]
pub fn antecedent_value(owner: &ResourceId) -> String {
    owner.to_string()
}

/// Parses an antecedent annotation value: `<ns>:helmrelease/<name>` or the legacy
/// FluxHelmRelease form `<ns>:fluxhelmrelease/<name>` (kind compared case-insensitively,
/// surrounding whitespace ignored). `None` for anything else.
#[must_use]
pub fn parse_antecedent(value: &str) -> Option<ResourceId> {
    let (namespace, rest) = value.trim().split_once(':')?;
    let (kind, name) = rest.split_once('/')?;
    let kind = kind.to_ascii_lowercase();
    let valid = !namespace.is_empty()
        && !name.is_empty()
        && !name.contains('/')
        && OWNER_KINDS.contains(&kind.as_str());
    valid.then(|| ResourceId::new(namespace, &kind, name))
}

/// Whether an annotation value names `owner`.
fn names(value: &str, owner: &ResourceId) -> bool {
    parse_antecedent(value).map_or_else(|| value.trim() == owner.to_string(), |id| id == *owner)
}

/// Splits a release manifest into its objects: documents separated by `---` lines, `*List` kinds
/// expanded. A document that does not parse, or an object without `apiVersion`, `kind` or
/// `metadata.name`, is skipped with a warning; empty documents are skipped silently.
#[must_use]
pub fn parse_manifest(manifest: &str) -> Vec<ObjectRef> {
    let mut objects = Vec::new();
    for (index, document) in split_documents(manifest).into_iter().enumerate() {
        match serde_yaml::from_str::<serde_yaml::Value>(document) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(value) => collect_objects(&value, index, &mut objects),
            Err(error) => {
                tracing::warn!(document = index, %error, "skipping unparsable manifest document");
            }
        }
    }
    objects
}

/// The documents of a YAML stream, split at lines that are `---` (optionally followed by a space
/// and more), as Helm's `releaseutil.SplitManifests` does.
fn split_documents(manifest: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in manifest.split_inclusive('\n') {
        let content = line.trim_end();
        if content == "---" || content.starts_with("--- ") || content.starts_with("---\t") {
            documents.push(&manifest[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(&manifest[start..]);
    documents
}

fn collect_objects(value: &serde_yaml::Value, document: usize, out: &mut Vec<ObjectRef>) {
    let text =
        |v: &serde_yaml::Value, key: &str| v.get(key).and_then(|s| s.as_str()).map(str::to_owned);
    let kind = text(value, "kind");
    if let (Some(kind), Some(items)) = (&kind, value.get("items").and_then(|i| i.as_sequence()))
        && kind.ends_with("List")
    {
        for item in items {
            collect_objects(item, document, out);
        }
        return;
    }
    let metadata = value.get("metadata");
    let name = metadata.and_then(|m| text(m, "name"));
    match (text(value, "apiVersion"), kind, name) {
        (Some(api_version), Some(kind), Some(name)) if !name.is_empty() => out.push(ObjectRef {
            api_version,
            kind,
            namespace: metadata
                .and_then(|m| text(m, "namespace"))
                .filter(|ns| !ns.is_empty()),
            name,
        }),
        _ => tracing::warn!(
            document,
            "skipping a manifest object without apiVersion, kind or metadata.name"
        ),
    }
}

type Resolved = (ApiResource, ApiCapabilities);

/// Reads and writes the antecedent annotation of release objects. Keeps a discovery cache; keep
/// one per operator.
pub struct Annotator {
    client: kube::Client,
    /// Resources served per `apiVersion`, from the last discovery of that group/version.
    discovery: Mutex<HashMap<String, Vec<Resolved>>>,
}

impl fmt::Debug for Annotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Annotator").finish_non_exhaustive()
    }
}

impl Annotator {
    /// An annotator using `client` (which needs `get` and `patch` on every kind a release may
    /// contain, and discovery).
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            discovery: Mutex::new(HashMap::new()),
        }
    }

    /// Who manages the live objects of `manifest`, the namespaced ones defaulting to
    /// `namespace` (the release's target namespace).
    ///
    /// Every object is read. Objects that do not exist, and kinds the server does not serve,
    /// are ignored. The first object (in manifest order) whose annotation names another owner
    /// gives [`Ownership::Other`]; else any object naming `our_id` gives [`Ownership::Ours`];
    /// else [`Ownership::Unowned`]. `our_id` may be a HelmRelease or a FluxHelmRelease ID; a
    /// different kind with the same namespace and name counts as another owner.
    ///
    /// # Errors
    ///
    /// When no object names another owner but one could not be discovered or read: ownership
    /// is then unknown, and the caller should retry rather than risk taking over a release.
    pub async fn ownership(
        &self,
        manifest: &str,
        namespace: &str,
        our_id: &ResourceId,
    ) -> Result<Ownership, AnnotateError> {
        let objects = parse_manifest(manifest);
        let lookups: Vec<Result<Option<String>, AnnotateError>> = futures::stream::iter(
            objects
                .into_iter()
                .map(|object| async move { self.read_antecedent(object, namespace).await }),
        )
        .buffered(CONCURRENCY)
        .collect()
        .await;
        let mut ours = false;
        let mut first_error = None;
        for lookup in lookups {
            match lookup {
                Ok(Some(value)) if names(&value, our_id) => ours = true,
                Ok(Some(value)) => return Ok(Ownership::Other(value)),
                Ok(None) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match (first_error, ours) {
            (Some(error), _) => Err(error),
            (None, true) => Ok(Ownership::Ours),
            (None, false) => Ok(Ownership::Unowned),
        }
    }

    /// Sets `helm.fluxcd.io/antecedent` to `our_id` on every object of `manifest` (namespaced
    /// ones defaulting to `namespace`), overwriting any other value, as `kubectl annotate
    /// --overwrite` did. Each object gets one JSON merge patch of that one annotation under
    /// [`FIELD_MANAGER`]; a failure (unknown kind, object gone, forbidden) is recorded and the
    /// rest go on. Never fails as a whole; the original only logged such failures too.
    pub async fn annotate(
        &self,
        manifest: &str,
        namespace: &str,
        our_id: &ResourceId,
    ) -> AnnotateReport {
        let value = antecedent_value(our_id);
        let patch = serde_json::json!({"metadata": {"annotations": {ANTECEDENT: value}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let objects = parse_manifest(manifest);
        let results: Vec<Result<(), (ObjectRef, AnnotateError)>> =
            futures::stream::iter(objects.into_iter().map(|object| {
                let (patch, params) = (&patch, &params);
                async move {
                    let (api, object) = match self.api_for(object, namespace).await {
                        Ok(found) => found,
                        Err((object, error)) => return Err((object, error)),
                    };
                    match api.patch(&object.name, params, &Patch::Merge(patch)).await {
                        Ok(_) => Ok(()),
                        Err(error) => Err((
                            object.clone(),
                            AnnotateError::Patch {
                                object,
                                error: Box::new(error),
                            },
                        )),
                    }
                }
            }))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut report = AnnotateReport::default();
        for result in results {
            match result {
                Ok(()) => report.annotated += 1,
                Err((object, error)) => {
                    tracing::warn!(%object, reason = error.reason(), "{error}");
                    report.failed.push((object, error));
                }
            }
        }
        report
    }

    /// The live object's antecedent annotation; `None` when the object, its kind or the
    /// annotation is absent.
    async fn read_antecedent(
        &self,
        object: ObjectRef,
        namespace: &str,
    ) -> Result<Option<String>, AnnotateError> {
        let (api, object) = match self.api_for(object, namespace).await {
            Ok(found) => found,
            Err((_, AnnotateError::UnknownKind { .. })) => return Ok(None),
            Err((_, error)) => return Err(error),
        };
        match api.get_opt(&object.name).await {
            Ok(live) => Ok(live.and_then(|live| {
                live.metadata
                    .annotations
                    .and_then(|mut annotations| annotations.remove(ANTECEDENT))
                    .filter(|value| !value.trim().is_empty())
            })),
            Err(error) => Err(AnnotateError::Get {
                object,
                error: Box::new(error),
            }),
        }
    }

    /// The dynamic API of `object`'s kind, and the object with its namespace resolved
    /// (`namespace` for namespaced kinds without one, `None` for cluster-scoped kinds).
    async fn api_for(
        &self,
        mut object: ObjectRef,
        namespace: &str,
    ) -> Result<(Api<DynamicObject>, ObjectRef), (ObjectRef, AnnotateError)> {
        let (resource, capabilities) = match self.resolve(&object.api_version, &object.kind).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err((object.clone(), AnnotateError::UnknownKind { object }));
            }
            Err(error) => {
                return Err((
                    object.clone(),
                    AnnotateError::Discovery {
                        object,
                        error: Box::new(error),
                    },
                ));
            }
        };
        let api = match capabilities.scope {
            Scope::Namespaced => {
                let ns = object
                    .namespace
                    .get_or_insert_with(|| namespace.to_owned())
                    .clone();
                Api::namespaced_with(self.client.clone(), &ns, &resource)
            }
            Scope::Cluster => {
                object.namespace = None;
                Api::all_with(self.client.clone(), &resource)
            }
        };
        Ok((api, object))
    }

    /// The API resource of `kind` at `api_version`: from the cache, else from a fresh discovery
    /// of that group/version (which then replaces the cached one). `None` when the server does
    /// not serve it.
    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Resolved>, kube::Error> {
        if let Some(found) = self.cached(api_version, kind) {
            return Ok(Some(found));
        }
        let Ok(group_version) = api_version.parse::<GroupVersion>() else {
            return Ok(None);
        };
        let group = match kube::discovery::pinned_group(&self.client, &group_version).await {
            Ok(group) => group,
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let resources = group.versioned_resources(&group_version.version);
        let found = resources.iter().find(|(r, _)| r.kind == kind).cloned();
        self.discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(api_version.to_owned(), resources);
        Ok(found)
    }

    fn cached(&self, api_version: &str, kind: &str) -> Option<Resolved> {
        self.discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(api_version)?
            .iter()
            .find(|(resource, _)| resource.kind == kind)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_into_objects_with_lists_expanded_and_junk_skipped() {
        let manifest = "---\n# Source: hello/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: empty.yaml\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n  namespace: other\n--- # comment\napiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: d}\n---\nkey: [unclosed\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: e\n";
        let objects = parse_manifest(manifest);
        let names: Vec<String> = objects.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "ConfigMap a (v1)",
                "Deployment other/b (apps/v1)",
                "ConfigMap c (v1)",
                "Secret d (v1)",
                "ClusterRole e (rbac.authorization.k8s.io/v1)",
            ]
        );
    }

    #[test]
    fn dashes_inside_a_line_do_not_split() {
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: \"a --- b\"\n  y: |\n    ---- not a separator\n";
        assert_eq!(parse_manifest(manifest).len(), 1);
    }

    #[test]
    fn antecedent_values_parse_in_both_forms() {
        let hr = ResourceId::new("dev", "HelmRelease", "web");
        assert_eq!(antecedent_value(&hr), "dev:helmrelease/web");
        assert_eq!(parse_antecedent(" dev:helmrelease/web "), Some(hr.clone()));
        let fhr = ResourceId::new("dev", "FluxHelmRelease", "web");
        assert_eq!(
            parse_antecedent("dev:FluxHelmRelease/web"),
            Some(fhr.clone())
        );
        assert_eq!(parse_antecedent("dev:deployment/web"), None);
        assert_eq!(parse_antecedent("helmrelease/web"), None);
        assert!(names("dev:helmrelease/web", &hr));
        assert!(!names("dev:fluxhelmrelease/web", &hr));
        assert!(names("dev:fluxhelmrelease/web", &fhr));
        assert!(!names("something else", &hr));
    }
}

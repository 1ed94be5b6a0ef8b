//! The resource types kube-sim serves: the built-in kinds of kube-sim-surface §3.1 and the kinds
//! registered by CustomResourceDefinitions (§1.14).
//!
//! One generic engine serves every type; a [`ResourceType`] carries only what differs: names,
//! scope, subresources and merge rules. Objects are stored per [`ResourceKey`] (group and
//! plural), so every served version of a CRD shares one store and only `apiVersion` is rewritten
//! on the way out (conversion strategy `None`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube_merge::MergeRules;
use kube_merge::builtin_rules::BuiltinRules;
use kube_merge::crd_rules::CrdRules;
use serde_json::Value;

/// Where objects of a resource are stored: group and plural, whatever the version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

/// One servable resource at one version.
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural (`deployments`).
    pub plural: String,
    /// Singular (`deployment`).
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Has a status subresource.
    pub status: bool,
    /// Has a scale subresource.
    pub scale: bool,
    /// A built-in kind (strategic merge patch allowed), not a custom resource.
    pub builtin: bool,
    /// The CRD that defines it, for custom resources.
    pub crd: Option<String>,
    /// How lists merge in patches and applies.
    pub rules: Arc<dyn MergeRules>,
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResourceType({}/{})", self.api_version(), self.plural)
    }
}

impl ResourceType {
    /// `v1` or `<group>/<version>`.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Where its objects are stored.
    #[must_use]
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// The verbs served on the collection and items.
    #[must_use]
    pub fn verbs(&self) -> Vec<&'static str> {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if self.plural == "namespaces" && self.group.is_empty() {
            verbs.retain(|v| *v != "deletecollection");
        }
        verbs
    }

    /// Whether `.status` is kept apart from the main resource.
    #[must_use]
    pub fn has_status_subresource(&self) -> bool {
        self.status
    }
}

/// Compact description of one built-in type:
/// (group, version, kind, plural, namespaced, short names, categories, status, scale).
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    bool,
    bool,
);

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

const BUILTINS: &[Builtin] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        NONE,
        true,
        false,
    ),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        NONE,
        false,
        false,
    ),
    (
        "", "v1", "Secret", "secrets", true, NONE, NONE, false, false,
    ),
    (
        "",
        "v1",
        "Service",
        "services",
        true,
        &["svc"],
        ALL,
        true,
        false,
    ),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        NONE,
        false,
        false,
    ),
    (
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        NONE,
        false,
        false,
    ),
    (
        "",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        NONE,
        false,
        false,
    ),
    ("", "v1", "Pod", "pods", true, &["po"], ALL, true, false),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        NONE,
        true,
        false,
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        NONE,
        true,
        false,
    ),
    ("", "v1", "Node", "nodes", false, &["no"], NONE, true, false),
    (
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        NONE,
        false,
        false,
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        NONE,
        true,
        false,
    ),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
        ALL,
        true,
        true,
    ),
    (
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        ALL,
        true,
        true,
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        ALL,
        true,
        true,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        ALL,
        true,
        true,
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        ALL,
        true,
        false,
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    ("batch", "v1", "Job", "jobs", true, NONE, ALL, true, false),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        ALL,
        true,
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        NONE,
        true,
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        NONE,
        false,
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        NONE,
        true,
        false,
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        ALL,
        true,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        true,
        false,
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        NONE,
        false,
        false,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        NONE,
        false,
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        NONE,
        false,
        false,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
];

/// A served group with its versions in preference order.
#[derive(Clone, Debug)]
pub struct Group {
    /// Group name, empty for core.
    pub name: String,
    /// Versions, preferred first.
    pub versions: Vec<String>,
}

/// All served resource types.
#[derive(Debug)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
    /// Bumped on every change, for the OpenAPI `hash` and discovery caches.
    pub generation: u64,
}

/// Kubernetes version priority: `v1` > `v1beta1` > `v1alpha1`, GA by number, then beta, alpha.
fn version_priority(version: &str) -> (u8, u8, u64, u64) {
    let rest = version.strip_prefix('v').unwrap_or(version);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (u8::from(!digits.is_empty()), stage, major, minor)
}

impl Registry {
    /// The built-in types.
    #[must_use]
    pub fn builtin() -> Self {
        let types = BUILTINS
            .iter()
            .map(
                |&(group, version, kind, plural, namespaced, short, categories, status, scale)| {
                    Arc::new(ResourceType {
                        group: group.to_owned(),
                        version: version.to_owned(),
                        kind: kind.to_owned(),
                        plural: plural.to_owned(),
                        singular: kind.to_ascii_lowercase(),
                        namespaced,
                        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
                        categories: categories.iter().map(|s| (*s).to_owned()).collect(),
                        status,
                        scale,
                        builtin: true,
                        crd: None,
                        rules: Arc::new(BuiltinRules::for_kind(group, kind)),
                    })
                },
            )
            .collect();
        Self {
            types,
            generation: 1,
        }
    }

    /// The type served at `group`/`version` under `plural`.
    #[must_use]
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The type of `kind` in `group`/`version`.
    #[must_use]
    pub fn find_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
    }

    /// Every type.
    pub fn types(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.iter()
    }

    /// Every type stored under `key` (all versions of it).
    pub fn versions_of<'a>(
        &'a self,
        key: &'a ResourceKey,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> + 'a {
        self.types
            .iter()
            .filter(move |t| t.group == key.group && t.plural == key.plural)
    }

    /// Served groups, core first then by name, each with versions in preference order.
    #[must_use]
    pub fn groups(&self) -> Vec<Group> {
        let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in &self.types {
            let versions = by_group.entry(t.group.as_str()).or_default();
            if !versions.contains(&t.version.as_str()) {
                versions.push(t.version.as_str());
            }
        }
        by_group
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                Group {
                    name: name.to_owned(),
                    versions: versions.into_iter().map(str::to_owned).collect(),
                }
            })
            .collect()
    }

    /// Registers (or re-registers) the served versions of a CRD object.
    ///
    /// # Errors
    ///
    /// A list of `(field, message)` problems when the CRD is invalid (§1.14).
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), Vec<(String, String)>> {
        let parsed = parse_crd(crd)?;
        let name = parsed.name.clone();
        self.types
            .retain(|t| t.crd.as_deref() != Some(name.as_str()));
        for (version, schema, status, scale) in parsed.versions {
            let rules: Arc<dyn MergeRules> = match schema {
                Some(schema) => Arc::new(CrdRules::from_schema(&schema)),
                None => Arc::new(kube_merge::AtomicLists),
            };
            self.types.push(Arc::new(ResourceType {
                group: parsed.group.clone(),
                version,
                kind: parsed.kind.clone(),
                plural: parsed.plural.clone(),
                singular: parsed.singular.clone(),
                namespaced: parsed.namespaced,
                short_names: parsed.short_names.clone(),
                categories: parsed.categories.clone(),
                status,
                scale,
                builtin: false,
                crd: Some(name.clone()),
                rules,
            }));
        }
        self.generation += 1;
        Ok(())
    }

    /// Removes the types a CRD defined; returns their storage key.
    pub fn unregister_crd(&mut self, name: &str) -> Option<ResourceKey> {
        let key = self
            .types
            .iter()
            .find(|t| t.crd.as_deref() == Some(name))
            .map(|t| t.key());
        self.types.retain(|t| t.crd.as_deref() != Some(name));
        self.generation += 1;
        key
    }
}

struct ParsedCrd {
    name: String,
    group: String,
    kind: String,
    plural: String,
    singular: String,
    namespaced: bool,
    short_names: Vec<String>,
    categories: Vec<String>,
    /// Served versions: (name, schema, status subresource, scale subresource).
    versions: Vec<(String, Option<Value>, bool, bool)>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Validates a CRD as the API server does (§1.14) and extracts what serving it needs.
fn parse_crd(crd: &Value) -> Result<ParsedCrd, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let group = text(&spec["group"]);
    let kind = text(&spec["names"]["kind"]);
    let plural = text(&spec["names"]["plural"]);
    let name = text(&crd["metadata"]["name"]);
    if group.is_empty() {
        problems.push(("spec.group".into(), "Required value".into()));
    }
    if kind.is_empty() {
        problems.push(("spec.names.kind".into(), "Required value".into()));
    }
    if plural.is_empty() {
        problems.push(("spec.names.plural".into(), "Required value".into()));
    }
    if name != format!("{plural}.{group}") {
        problems.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = text(&spec["scope"]);
    if scope != "Namespaced" && scope != "Cluster" {
        problems.push((
            "spec.scope".into(),
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        problems.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"] == Value::Bool(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        problems.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let singular = spec["names"]["singular"]
        .as_str()
        .map_or_else(|| kind.to_ascii_lowercase(), str::to_owned);
    let served = versions
        .iter()
        .filter(|v| v["served"] != Value::Bool(false))
        .map(|v| {
            let schema = v["schema"]["openAPIV3Schema"].clone();
            (
                text(&v["name"]),
                (!schema.is_null()).then_some(schema),
                v["subresources"]["status"].is_object(),
                v["subresources"]["scale"].is_object(),
            )
        })
        .collect();
    Ok(ParsedCrd {
        name,
        group,
        kind,
        plural,
        singular,
        namespaced: scope == "Namespaced",
        short_names: strings(&spec["names"]["shortNames"]),
        categories: strings(&spec["names"]["categories"]),
        versions: served,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut v = vec!["v1alpha1", "v2beta1", "v1", "v1beta2", "v2"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1"]);
    }

    #[test]
    fn crds_register_their_served_versions() {
        let mut registry = Registry::builtin();
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v1beta1", "served": true, "storage": false}
                ]}
        });
        registry.register_crd(&crd).unwrap();
        let widget = registry.find("example.com", "v1", "widgets").unwrap();
        assert!(widget.status && widget.namespaced && !widget.builtin);
        assert!(registry.find("example.com", "v1beta1", "widgets").is_some());
        let group = registry
            .groups()
            .into_iter()
            .find(|g| g.name == "example.com")
            .unwrap();
        assert_eq!(group.versions, ["v1", "v1beta1"]);
        assert_eq!(
            registry
                .unregister_crd("widgets.example.com")
                .unwrap()
                .plural,
            "widgets"
        );
        assert!(registry.find("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn invalid_crds_are_refused_with_field_problems() {
        let mut registry = Registry::builtin();
        let crd = json!({"metadata": {"name": "wrong"}, "spec": {"group": "example.com", "scope": "Everywhere",
            "names": {"kind": "Widget", "plural": "widgets"}, "versions": []}});
        let problems = registry.register_crd(&crd).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "spec.scope", "spec.versions"]);
    }
}

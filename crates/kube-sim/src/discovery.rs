//! Discovery documents (kube-sim-surface §1.3): legacy (`/api`, `/apis`, `/api/v1`,
//! `/apis/<g>[/<v>]`) and aggregated (`apidiscovery.k8s.io/v2`, served when the Accept header
//! asks for it, which kube-rs's `Discovery::run_aggregated` requires).

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// The Content-Type of an aggregated discovery answer; the parameters must be exactly these.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery v2.
#[must_use]
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn resource_entries(rt: &ResourceType) -> Vec<Value> {
    let mut entries = vec![json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": rt.verbs(),
        "shortNames": rt.short_names,
        "categories": rt.categories,
    })];
    if rt.status {
        entries.push(json!({"name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
            "kind": rt.kind, "verbs": ["get", "patch", "update"]}));
    }
    if rt.scale {
        entries.push(json!({"name": format!("{}/scale", rt.plural), "singularName": "", "namespaced": rt.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    entries
}

/// `APIResourceList` of one group/version, or `None` when nothing is served there.
#[must_use]
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = registry
        .types()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(|t| resource_entries(t))
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// `APIVersions` for `/api`.
#[must_use]
pub fn core_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_object(name: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": entries, "preferredVersion": entries.first().cloned().unwrap_or(Value::Null)})
}

/// `APIGroupList` for `/apis` (the core group is not in it).
#[must_use]
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(|g| group_object(&g.name, &g.versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIGroup` for `/apis/<g>`.
#[must_use]
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let found = registry
        .groups()
        .into_iter()
        .find(|g| g.name == name && !name.is_empty())?;
    let mut object = group_object(&found.name, &found.versions);
    object["kind"] = json!("APIGroup");
    object["apiVersion"] = json!("v1");
    Some(object)
}

/// `APIGroupDiscoveryList` (v2) of the core group (`core = true`, for `/api`) or of every
/// other group (`/apis`).
#[must_use]
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = registry
                        .types()
                        .filter(|t| t.group == g.name && &t.version == v)
                        .map(|t| {
                            let mut subresources = Vec::new();
                            if t.status {
                                subresources.push(json!({"subresource": "status",
                                    "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                    "verbs": ["get", "patch", "update"]}));
                            }
                            if t.scale {
                                subresources.push(json!({"subresource": "scale",
                                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                                    "verbs": ["get", "patch", "update"]}));
                            }
                            json!({
                                "resource": t.plural,
                                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular,
                                "verbs": t.verbs(),
                                "shortNames": t.short_names,
                                "categories": t.categories,
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": v, "freshness": "Current", "resources": resources})
                })
                .collect();
            json!({"metadata": {"name": g.name}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_headers_are_recognised() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json, */*"));
    }

    #[test]
    fn legacy_lists_include_subresources_and_short_names() {
        let registry = Registry::builtin();
        let list = resource_list(&registry, "apps", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"deployments")
                && names.contains(&"deployments/status")
                && names.contains(&"deployments/scale")
        );
        let core = resource_list(&registry, "", "v1").unwrap();
        let cm = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "configmaps")
            .unwrap();
        assert_eq!(cm["shortNames"], json!(["cm"]));
        assert!(
            group_list(&registry)["groups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["name"] != "")
        );
    }
}

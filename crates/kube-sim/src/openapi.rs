//! The smallest OpenAPI v3 that kubectl and Helm validation accept (kube-sim-surface §1.4).
//!
//! `/openapi/v3` is an index of one document per served group/version; each document has, for
//! every resource, the item path with a `patch` operation carrying the single-object
//! `x-kubernetes-group-version-kind` and a `fieldValidation` parameter. Seeing both, the clients
//! skip their own schema validation and send `fieldValidation=Strict` to the server. No schemas
//! are published (kubectl then builds strategic merge patches from its compiled-in type data);
//! strategic merge patch is never advertised for custom resources. `components.schemas` is
//! present and empty. `/openapi/v2` is not served.

use serde_json::{Map, Value, json};

use crate::registry::Registry;

/// `api/v1` or `apis/<g>/<v>`: the key of a group/version in the index.
fn index_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A hash that changes whenever the registry does, so client caches refetch.
fn hash(registry: &Registry, key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ registry.generation;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// The `/openapi/v3` index.
#[must_use]
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for group in registry.groups() {
        for version in &group.versions {
            let key = index_key(&group.name, version);
            let url = format!("/openapi/v3/{key}?hash={}", hash(registry, &key));
            paths.insert(key, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// The document of one group/version (`path` is `api/v1` or `apis/<g>/<v>`), or `None`.
#[must_use]
pub fn document(registry: &Registry, path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), (*v).to_owned()),
        ["apis", g, v] => ((*g).to_owned(), (*v).to_owned()),
        _ => return None,
    };
    let mut paths = Map::new();
    for rt in registry
        .types()
        .filter(|t| t.group == group && t.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        let mut media = vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        if rt.builtin {
            media.push("application/strategic-merge-patch+json");
        }
        let content: Map<String, Value> = media
            .into_iter()
            .map(|m| (m.to_owned(), json!({"schema": {"type": "object"}})))
            .collect();
        let parameter = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", rt.kind),
                    "parameters": [parameter("dryRun"), parameter("fieldManager"), parameter("fieldValidation"), {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}],
                    "requestBody": {"content": content, "required": true},
                    "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                },
                "parameters": [
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}},
                ],
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        // Present but empty: kubectl warns on a missing `components`, and falls back to its
        // compiled-in patch metadata when no schema matches.
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_is_indexed_and_documented() {
        let registry = Registry::builtin();
        let index = index(&registry);
        assert!(
            index["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        let apps = document(&registry, "apis/apps/v1").unwrap();
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(document(&registry, "apis/none/v1").is_none());
    }
}

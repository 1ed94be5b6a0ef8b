//! Merge rules of a custom resource, read from its CRD's `openAPIV3Schema`.
//!
//! [`CrdRules::from_schema`] walks the schema once (`properties`, `items` of arrays and
//! `additionalProperties` of maps, the latter as a wildcard segment that matches any key) and
//! records the list type of every array: `x-kubernetes-list-type: atomic|set|map` with
//! `x-kubernetes-list-map-keys` for maps; unmarked arrays are atomic. Lookups are a hash-map hit
//! on the joined path, falling back to a short scan of the wildcard patterns.
//!
//! Deliberately not done: `allOf`/`anyOf`/`oneOf` branches are not walked (structural schemas
//! cannot declare new properties there), `x-kubernetes-map-type` (granular vs atomic maps) is
//! ignored since [`MergeRules`] has no say on maps, embedded resources
//! (`x-kubernetes-embedded-resource`) do not get the shared `metadata` list types at their
//! nested path, and an array directly inside an array shares its parent's path (list positions
//! are left out of paths), so the outer list's type wins. `retains_keys` is always false:
//! strategic merge patch is not defined for custom resources.

use std::collections::HashMap;

use serde_json::Value;

use crate::{ListType, MergeRules, metadata_list_type};

/// Separator of the joined path keys; field names never contain a NUL.
const SEP: char = '\0';

/// List types of one custom resource version, built from its schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrdRules {
    /// Lists whose path has no wildcard, keyed by the path joined with NUL.
    exact: HashMap<String, ListType>,
    /// Lists under an `additionalProperties` map: `None` segments match any key.
    patterns: Vec<(Vec<Option<String>>, ListType)>,
}

impl CrdRules {
    /// Builds the rules from a CRD version's `schema.openAPIV3Schema`. Anything that is not a
    /// schema object yields rules where every list (but the shared `metadata` ones) is atomic.
    #[must_use]
    pub fn from_schema(schema: &Value) -> Self {
        let mut rules = Self::default();
        let mut path = Vec::new();
        rules.walk_object(schema, &mut path);
        rules
    }

    /// Number of arrays found in the schema (for diagnostics).
    #[must_use]
    pub fn len(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }

    /// Whether the schema declared no array at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits the schema node of the value at `path`.
    fn visit(&mut self, schema: &Value, path: &mut Vec<Option<String>>) {
        let is_array = schema.get("type").and_then(Value::as_str) == Some("array")
            || schema.get("items").is_some_and(Value::is_object);
        if is_array {
            self.record(path, list_type_of(schema));
            if let Some(items) = schema.get("items") {
                // Positions are left out of paths: the items live at the list's own path.
                self.walk_object(items, path);
            }
        } else {
            self.walk_object(schema, path);
        }
    }

    /// Walks `properties` and `additionalProperties` of an object schema.
    fn walk_object(&mut self, schema: &Value, path: &mut Vec<Option<String>>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                path.push(Some(name.clone()));
                self.visit(sub, path);
                path.pop();
            }
        }
        if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            path.push(None);
            self.visit(sub, path);
            path.pop();
        }
    }

    /// Records the list type of the array at `path`; the first record of a path wins.
    fn record(&mut self, path: &[Option<String>], list_type: ListType) {
        let names: Option<Vec<&str>> = path.iter().map(Option::as_deref).collect();
        match names {
            Some(names) => {
                self.exact.entry(join(&names)).or_insert(list_type);
            }
            None => {
                if !self.patterns.iter().any(|(p, _)| p == path) {
                    self.patterns.push((path.to_vec(), list_type));
                }
            }
        }
    }
}

/// Builds the rules from a CRD version's `schema.openAPIV3Schema`; see [`CrdRules::from_schema`].
#[must_use]
pub fn from_schema(schema: &Value) -> CrdRules {
    CrdRules::from_schema(schema)
}

impl MergeRules for CrdRules {
    fn list_type(&self, path: &[&str]) -> ListType {
        if let Some(shared) = metadata_list_type(path) {
            return shared;
        }
        if let Some(found) = self.exact.get(&join(path)) {
            return found.clone();
        }
        self.patterns
            .iter()
            .find(|(pattern, _)| {
                pattern.len() == path.len()
                    && pattern
                        .iter()
                        .zip(path)
                        .all(|(seg, name)| seg.as_deref().is_none_or(|s| s == *name))
            })
            .map_or(ListType::Atomic, |(_, list_type)| list_type.clone())
    }
}

/// The list type an array schema declares.
fn list_type_of(schema: &Value) -> ListType {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => {
            let keys: Vec<String> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                // The API server rejects such a CRD; stay safe with whole-list replacement.
                ListType::Atomic
            } else {
                ListType::Map(keys)
            }
        }
        _ => ListType::Atomic,
    }
}

/// Joins path segments into a hash-map key.
fn join(path: &[&str]) -> String {
    let mut key = String::new();
    for (i, name) in path.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.push_str(name);
    }
    key
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                            "items": {
                                "type": "object",
                                "properties": {
                                    "port": {"type": "integer"},
                                    "protocol": {"type": "string"},
                                    "hosts": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "set",
                                        "items": {"type": "string"}
                                    }
                                }
                            }
                        },
                        "tags": {
                            "type": "array",
                            "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}
                        },
                        "args": {
                            "type": "array",
                            "x-kubernetes-list-type": "atomic",
                            "items": {"type": "string"}
                        },
                        "plain": {"type": "array", "items": {"type": "string"}},
                        "routes": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "backends": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {"type": "object"}
                                    }
                                }
                            }
                        },
                        "broken": {"type": "array", "x-kubernetes-list-type": "map"}
                    }
                }
            }
        })
    }

    #[test]
    fn maps_list_types() {
        let rules = from_schema(&schema());
        assert_eq!(
            rules.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(rules.list_type(&["spec", "tags"]), ListType::Set);
        assert_eq!(rules.list_type(&["spec", "args"]), ListType::Atomic);
        assert_eq!(rules.list_type(&["spec", "plain"]), ListType::Atomic);
        assert_eq!(rules.list_type(&["spec", "broken"]), ListType::Atomic);
        assert_eq!(rules.list_type(&["spec", "unknown"]), ListType::Atomic);
    }

    #[test]
    fn nested_items() {
        let rules = CrdRules::from_schema(&schema());
        assert_eq!(rules.list_type(&["spec", "ports", "hosts"]), ListType::Set);
    }

    #[test]
    fn additional_properties_wildcard() {
        let rules = CrdRules::from_schema(&schema());
        let keyed = ListType::Map(vec!["name".into()]);
        assert_eq!(rules.list_type(&["spec", "routes", "a", "backends"]), keyed);
        assert_eq!(
            rules.list_type(&["spec", "routes", "b.c/d", "backends"]),
            keyed
        );
        assert_eq!(
            rules.list_type(&["spec", "routes", "a", "other"]),
            ListType::Atomic
        );
        assert_eq!(
            rules.list_type(&["spec", "x", "a", "backends"]),
            ListType::Atomic
        );
    }

    #[test]
    fn metadata_lists_first() {
        let rules = CrdRules::from_schema(&json!({"type": "object"}));
        assert!(rules.is_empty());
        assert_eq!(rules.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            rules.list_type(&["metadata", "ownerReferences"]),
            ListType::Map(vec!["uid".into()])
        );
        assert_eq!(CrdRules::from_schema(&json!("nonsense")).len(), 0);
    }
}

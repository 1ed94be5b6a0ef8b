//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), applied to a live
//! object the way kube-apiserver does it (`k8s.io/apimachinery/pkg/util/strategicpatch`,
//! `StrategicMergeMapPatch` with parallel lists merged and unmatched `null`s ignored).
//!
//! Maps merge recursively, `null` deletes a key, scalars replace. How a list merges is asked of
//! [`MergeRules`]: atomic lists are replaced, set lists (`metadata.finalizers`) are unioned, and
//! keyed lists merge element by element on their first key, the patch merge key. The
//! directives `$patch` (`replace`, `delete`, `merge`), `$retainKeys`, `$setElementOrder/<field>`
//! and `$deleteFromPrimitiveList/<field>` are executed and never appear in the result; `null`s
//! inside values that are added rather than merged are dropped.
//!
//! The order of a merged list follows the Go code exactly: `$setElementOrder` first, then the
//! order of the patch list, then the live order, interleaved as `mergeSortedSlice` does. A
//! consequence worth knowing: an element the patch adds to a keyed or set list without a
//! `$setElementOrder` lands *before* the live elements (`kubectl patch` adding a container puts
//! it first), while kubectl's three-way patches, which always carry `$setElementOrder`, get
//! exactly the order of the manifest.
//!
//! Deliberately not done here: creating patches (client-side three-way diff), server-side apply,
//! defaulting or validation of the result, and Go's quirks that only exist because of Go typed
//! decoding (a `$patch: delete` on a nested map removes the key instead of leaving `{}`;
//! `$patch: merge` is accepted rather than rejected).

use serde_json::{Map, Value};

use crate::json_patch::values_equal;
use crate::{ListType, MergeRules};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Why a strategic merge patch was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrategicError {
    /// The patch does not fit the object at `path`: a keyed-list element without its merge key,
    /// scalars in a keyed list, objects in a set list. The API server answers 422.
    #[error("failed to apply strategic merge patch at {path}: {reason}")]
    Invalid {
        /// Dotted field path from the object root, list positions left out (`<root>` for the
        /// object itself).
        path: String,
        /// What is wrong, with the offending input.
        reason: String,
    },
    /// The patch is not a well-formed strategic merge patch: not an object, an unknown `$patch`
    /// value, a directive with a value of the wrong type, a field outside `$retainKeys`. The API
    /// server answers 400.
    #[error("failed to decode strategic merge patch: {reason}")]
    Malformed {
        /// What is wrong, with the offending input.
        reason: String,
    },
}

impl StrategicError {
    /// Whether the patch itself is malformed (HTTP 400) rather than inapplicable (HTTP 422).
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed { .. })
    }

    /// The HTTP status code for this error: 400 or 422.
    #[must_use]
    pub fn status_code(&self) -> u16 {
        if self.is_malformed() { 400 } else { 422 }
    }
}

/// Applies the strategic merge patch `patch` to `original` and returns the patched object.
///
/// `rules` says how each list merges; `original` is not modified. A `null` original counts as
/// an empty object. The result holds no `$`-directive.
///
/// # Errors
///
/// [`StrategicError::Malformed`] for a patch that is not a valid strategic merge patch,
/// [`StrategicError::Invalid`] for one that cannot be applied to this object.
pub fn apply(
    original: &Value,
    patch: &Value,
    rules: &dyn MergeRules,
) -> Result<Value, StrategicError> {
    let Value::Object(patch) = patch else {
        return Err(malformed(format!(
            "patch is not a JSON object: {}",
            show(patch)
        )));
    };
    let original = match original {
        Value::Object(map) => Some(map.clone()),
        Value::Null => None,
        other => {
            return Err(invalid(
                &[],
                format!("object is not a JSON object: {}", show(other)),
            ));
        }
    };
    let merger = Merger { rules };
    let merged = merger.merge_map(original, patch, &mut Vec::new())?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

fn malformed(reason: String) -> StrategicError {
    StrategicError::Malformed { reason }
}

fn invalid(path: &[&str], reason: String) -> StrategicError {
    let path = if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.join(".")
    };
    StrategicError::Invalid { path, reason }
}

/// A compact rendering of `value` for error messages, cut after a few hundred characters.
fn show(value: &Value) -> String {
    const LIMIT: usize = 256;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn show_map(map: &Map<String, Value>) -> String {
    show(&Value::Object(map.clone()))
}

/// Whether `key` is a strategic merge patch directive rather than a field.
fn is_directive_key(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The field a `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` key names, if
/// `key` starts with `prefix`.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Result<Option<&'k str>, StrategicError> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Ok(None);
    };
    match rest.strip_prefix('/') {
        Some(field) if !field.is_empty() => Ok(Some(field)),
        _ => Err(malformed(format!(
            "directive \"{key}\" must have the form \"{prefix}/<field>\""
        ))),
    }
}

/// A value added without a live counterpart in an atomic position: directives and `null`
/// members are dropped, everything else is kept as sent.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

/// The value a list element is ordered and matched by: the merge key's value for keyed lists,
/// the element itself for set lists.
fn order_key<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// Positions of elements in a reference list (Go's `index`): first match wins.
struct Order(Vec<Option<Value>>);

impl Order {
    fn new<'a>(items: impl IntoIterator<Item = &'a Value>, key: Option<&str>) -> Self {
        Self(
            items
                .into_iter()
                .map(|item| order_key(item, key).cloned())
                .collect(),
        )
    }

    fn index(&self, item: &Value, key: Option<&str>) -> Option<usize> {
        let needle = order_key(item, key)?;
        self.0
            .iter()
            .position(|k| k.as_ref().is_some_and(|k| values_equal(k, needle)))
    }

    fn contains(&self, item: &Value, key: Option<&str>) -> bool {
        self.index(item, key).is_some()
    }
}

/// Go's `normalizeElementOrder`: sorts `patch_items` by `patch_order` and `server_only` by
/// `server_order`, then interleaves them by `server_order` (`mergeSortedSlice`).
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &Order,
    server_order: &Order,
    key: Option<&str>,
) -> Vec<Value> {
    patch_items.sort_by_cached_key(|item| patch_order.index(item, key).unwrap_or(usize::MAX));
    server_only.sort_by_cached_key(|item| server_order.index(item, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!(
                (server_order.index(l, key), server_order.index(r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

struct Merger<'r> {
    rules: &'r dyn MergeRules,
}

impl Merger<'_> {
    /// Merges a patch map into an optional live map; `None` means the map is deleted.
    fn merge_map<'p>(
        &self,
        original: Option<Map<String, Value>>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<Option<Map<String, Value>>, StrategicError> {
        let base = match patch.get(PATCH) {
            None => original.unwrap_or_default(),
            Some(directive) => match directive.as_str() {
                Some("merge") => original.unwrap_or_default(),
                Some("replace") => Map::new(),
                Some("delete") => return Ok(None),
                _ => {
                    return Err(malformed(format!(
                        "unknown $patch directive {} in {}",
                        show(directive),
                        show_map(patch)
                    )));
                }
            },
        };
        self.merge_fields(base, patch, path).map(Some)
    }

    /// Merges the fields and field directives of `patch` into `original`.
    fn merge_fields<'p>(
        &self,
        mut original: Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<Map<String, Value>, StrategicError> {
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            retain_keys(&mut original, retain, patch)?;
        }

        let mut ordered: Vec<&str> = Vec::new();
        for (key, value) in patch {
            if let Some(field) = directive_field(key, SET_ELEMENT_ORDER)? {
                path.push(field);
                let done = self.set_element_order(&mut original, field, value, patch, path);
                path.pop();
                if done? {
                    ordered.push(field);
                }
            }
        }

        let mut deletions = Vec::new();
        for (key, value) in patch {
            if key == PATCH || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
                continue;
            }
            if let Some(field) = directive_field(key, DELETE_FROM_PRIMITIVE_LIST)? {
                deletions.push((field, value));
                continue;
            }
            if ordered.contains(&key.as_str()) {
                continue;
            }
            if value.is_null() {
                original.remove(key.as_str());
                continue;
            }
            path.push(key);
            let live = original.get_mut(key.as_str()).map(std::mem::take);
            let merged = self.merge_value(live, value, path);
            path.pop();
            match merged? {
                Some(merged) => {
                    original.insert(key.clone(), merged);
                }
                None => {
                    original.remove(key.as_str());
                }
            }
        }

        for (field, value) in deletions {
            let Value::Array(remove) = value else {
                return Err(malformed(format!(
                    "{DELETE_FROM_PRIMITIVE_LIST}/{field} is not a list: {}",
                    show(value)
                )));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !remove.iter().any(|r| values_equal(item, r)));
            }
        }
        Ok(original)
    }

    /// Merges one patch value into the live value of the same field; `None` deletes the field.
    fn merge_value<'p>(
        &self,
        original: Option<Value>,
        patch: &'p Value,
        path: &mut Vec<&'p str>,
    ) -> Result<Option<Value>, StrategicError> {
        match patch {
            Value::Object(patch) => {
                let original = match original {
                    Some(Value::Object(map)) => Some(map),
                    _ => None,
                };
                Ok(self.merge_map(original, patch, path)?.map(Value::Object))
            }
            Value::Array(patch) => {
                let original = match original {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                Ok(Some(Value::Array(self.merge_list(original, patch, path)?)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// Merges a patch list into the live list at `path` by the list's type.
    fn merge_list<'p>(
        &self,
        original: Vec<Value>,
        patch: &'p [Value],
        path: &mut Vec<&'p str>,
    ) -> Result<Vec<Value>, StrategicError> {
        match self.rules.list_type(path) {
            ListType::Atomic => Ok(patch.iter().map(clean).collect()),
            ListType::Set => merge_set(original, patch, path),
            ListType::Map(keys) => match keys.first() {
                Some(key) => self.merge_keyed(original, patch, key, path),
                None => Ok(patch.iter().map(clean).collect()),
            },
        }
    }

    /// Go's `mergeSlice` for a list of maps with a merge key.
    fn merge_keyed<'p>(
        &self,
        mut original: Vec<Value>,
        patch: &'p [Value],
        key: &str,
        path: &mut Vec<&'p str>,
    ) -> Result<Vec<Value>, StrategicError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        for item in &original {
            check_keyed_element(item, key, path, "live")?;
        }

        let mut regular: Vec<&'p Map<String, Value>> = Vec::new();
        let mut replace = false;
        for item in patch {
            let Value::Object(map) = item else {
                return Err(invalid(
                    path,
                    format!(
                        "list merged by key \"{key}\" has a non-object element {}",
                        show(item)
                    ),
                ));
            };
            let Some(directive) = map.get(PATCH) else {
                regular.push(map);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let Some(value) = map.get(key) else {
                        return Err(invalid(
                            path,
                            format!("element {} has no merge key \"{key}\"", show(item)),
                        ));
                    };
                    original.retain(|e| !e.get(key).is_some_and(|v| values_equal(v, value)));
                }
                Some("replace") => replace = true,
                Some("merge") => regular.push(map),
                _ => {
                    return Err(malformed(format!(
                        "unknown $patch directive {} in list element {}",
                        show(directive),
                        show(item)
                    )));
                }
            }
        }
        for map in &regular {
            if !map.contains_key(key) {
                return Err(invalid(
                    path,
                    format!("element {} has no merge key \"{key}\"", show_map(map)),
                ));
            }
        }

        if replace {
            let mut out = Vec::with_capacity(regular.len());
            for map in regular {
                out.push(Value::Object(
                    self.merge_map(None, map, path)?.unwrap_or_default(),
                ));
            }
            return Ok(out);
        }

        let server_order = Order::new(&original, Some(key));
        for map in &regular {
            let value = map.get(key).unwrap_or(&Value::Null);
            let found = original
                .iter()
                .position(|e| e.get(key).is_some_and(|v| values_equal(v, value)));
            match found {
                Some(i) => {
                    let live = match std::mem::take(&mut original[i]) {
                        Value::Object(live) => Some(live),
                        _ => None,
                    };
                    original[i] =
                        Value::Object(self.merge_map(live, map, path)?.unwrap_or_default());
                }
                None => {
                    original.push(Value::Object(
                        self.merge_map(None, map, path)?.unwrap_or_default(),
                    ));
                }
            }
        }

        let patch_order = Order(regular.iter().map(|m| m.get(key).cloned()).collect());
        let (patch_items, server_only) = original
            .into_iter()
            .partition(|item| patch_order.contains(item, Some(key)));
        Ok(normalize_element_order(
            patch_items,
            server_only,
            &patch_order,
            &server_order,
            Some(key),
        ))
    }

    /// Executes `$setElementOrder/<field>` (with `path` ending in `field`): merges the patch
    /// list, if any, and orders the result. Returns whether the field is done with; atomic lists
    /// and non-list patch values are left to the ordinary merge.
    fn set_element_order<'p>(
        &self,
        original: &mut Map<String, Value>,
        field: &'p str,
        order_value: &'p Value,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<bool, StrategicError> {
        let Value::Array(order_list) = order_value else {
            return Err(malformed(format!(
                "{SET_ELEMENT_ORDER}/{field} is not a list: {}",
                show(order_value)
            )));
        };
        let key = match self.rules.list_type(path) {
            ListType::Atomic => return Ok(false),
            ListType::Set => None,
            ListType::Map(keys) => match keys.into_iter().next() {
                Some(key) => Some(key),
                None => return Ok(false),
            },
        };
        let key = key.as_deref();
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(items)) => Some(items.as_slice()),
            Some(_) => return Ok(false),
        };
        let live = match original.get(field) {
            Some(Value::Array(items)) => Some(items.clone()),
            _ => None,
        };

        for item in order_list {
            match key {
                Some(key) => check_keyed_element(item, key, path, "$setElementOrder")?,
                None => check_scalar_element(item, path)?,
            }
        }
        if let Some(patch_list) = patch_list {
            validate_patch_order(patch_list, order_list, key, field, path)?;
        }

        let server_order = Order::new(live.iter().flatten(), key);
        let merged = match (live, patch_list) {
            (None, None) => return Ok(true),
            (Some(live), None) => {
                for item in &live {
                    match key {
                        Some(key) => check_keyed_element(item, key, path, "live")?,
                        None => check_scalar_element(item, path)?,
                    }
                }
                live
            }
            (live, Some(patch_list)) => {
                self.merge_list(live.unwrap_or_default(), patch_list, path)?
            }
        };
        let order = Order::new(order_list, key);
        let (in_order, server_only) = merged
            .into_iter()
            .partition(|item| order.contains(item, key));
        let result = normalize_element_order(in_order, server_only, &order, &server_order, key);
        original.insert(field.to_owned(), Value::Array(result));
        Ok(true)
    }
}

/// Go's `mergeSlice` for a list of scalars: the union, ordered as the Go code orders it.
fn merge_set(
    original: Vec<Value>,
    patch: &[Value],
    path: &[&str],
) -> Result<Vec<Value>, StrategicError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    for item in original.iter().chain(patch) {
        check_scalar_element(item, path)?;
    }
    let server_order = Order::new(&original, None);
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.into_iter().chain(patch.iter().cloned()) {
        if !merged.iter().any(|m| values_equal(m, &item)) {
            merged.push(item);
        }
    }
    let patch_order = Order::new(patch, None);
    let (patch_items, server_only) = merged
        .into_iter()
        .partition(|item| patch_order.contains(item, None));
    Ok(normalize_element_order(
        patch_items,
        server_only,
        &patch_order,
        &server_order,
        None,
    ))
}

fn check_keyed_element(
    item: &Value,
    key: &str,
    path: &[&str],
    what: &str,
) -> Result<(), StrategicError> {
    match item {
        Value::Object(map) if map.contains_key(key) => Ok(()),
        Value::Object(_) => Err(invalid(
            path,
            format!("{what} element {} has no merge key \"{key}\"", show(item)),
        )),
        _ => Err(invalid(
            path,
            format!(
                "list merged by key \"{key}\" has a non-object {what} element {}",
                show(item)
            ),
        )),
    }
}

fn check_scalar_element(item: &Value, path: &[&str]) -> Result<(), StrategicError> {
    if item.is_object() || item.is_array() {
        return Err(invalid(
            path,
            format!(
                "list merged as a set has a non-scalar element {}",
                show(item)
            ),
        ));
    }
    Ok(())
}

/// Go's `validatePatchWithSetOrderList`: the elements of the patch list (deletions and other
/// directive elements aside) must appear in the `$setElementOrder` list, in the same order.
fn validate_patch_order(
    patch_list: &[Value],
    order_list: &[Value],
    key: Option<&str>,
    field: &str,
    path: &[&str],
) -> Result<(), StrategicError> {
    let elements: Vec<&Value> = patch_list
        .iter()
        .filter(|item| key.is_none() || item.get(PATCH).is_none())
        .collect();
    let (mut p, mut o) = (0, 0);
    while p < elements.len() && o < order_list.len() {
        let item = elements[p];
        if let Some(key) = key {
            check_keyed_element(item, key, path, "patch")?;
        }
        let equal = match (order_key(item, key), order_key(&order_list[o], key)) {
            (Some(a), Some(b)) => values_equal(a, b),
            _ => false,
        };
        if equal {
            p += 1;
        }
        o += 1;
    }
    if p < elements.len() && !order_list.is_empty() {
        return Err(malformed(format!(
            "the order of the patch list {field} {} does not match {SET_ELEMENT_ORDER}/{field} {}",
            show(&Value::Array(patch_list.to_vec())),
            show(&Value::Array(order_list.to_vec()))
        )));
    }
    Ok(())
}

/// Go's `applyRetainKeysDirective`: every field the patch sets must be listed, and live fields
/// not listed are cleared before the merge.
fn retain_keys(
    original: &mut Map<String, Value>,
    retain: &Value,
    patch: &Map<String, Value>,
) -> Result<(), StrategicError> {
    let Value::Array(keys) = retain else {
        return Err(malformed(format!(
            "{RETAIN_KEYS} is not a list: {}",
            show(retain)
        )));
    };
    let listed = |field: &str| keys.iter().any(|k| k.as_str() == Some(field));
    for (field, value) in patch {
        if value.is_null() || is_directive_key(field) {
            continue;
        }
        if !listed(field) {
            return Err(malformed(format!(
                "field \"{field}\" is set by the patch but not listed in {RETAIN_KEYS} {}",
                show(retain)
            )));
        }
    }
    original.retain(|field, _| listed(field));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AtomicLists;
    use serde_json::json;

    /// Deployment-like rules, written out here so these tests do not depend on `builtin_rules`.
    struct TestRules;

    const POD: [&str; 3] = ["spec", "template", "spec"];

    impl MergeRules for TestRules {
        fn list_type(&self, path: &[&str]) -> ListType {
            if let Some(t) = crate::metadata_list_type(path) {
                return t;
            }
            let keys = |k: &[&str]| ListType::Map(k.iter().map(|s| (*s).to_owned()).collect());
            match path.strip_prefix(&POD[..]) {
                Some(["containers" | "initContainers" | "volumes"]) => keys(&["name"]),
                Some(["containers" | "initContainers", "env"]) => keys(&["name"]),
                Some(["containers" | "initContainers", "ports"]) => {
                    keys(&["containerPort", "protocol"])
                }
                _ => ListType::Atomic,
            }
        }
    }

    fn smp(original: &Value, patch: &Value) -> Result<Value, StrategicError> {
        apply(original, patch, &TestRules)
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "labels": {"app": "web", "tier": "frontend"},
                "finalizers": ["a", "b"]
            },
            "spec": {
                "replicas": 2,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {"spec": {"containers": [
                    {
                        "name": "app",
                        "image": "nginx:1.24",
                        "args": ["--a", "--b"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]
                    },
                    {"name": "sidecar", "image": "envoy:1"}
                ]}}
            }
        })
    }

    fn containers(object: &Value) -> &Value {
        &object["spec"]["template"]["spec"]["containers"]
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    assert!(!k.starts_with('$'), "directive {k} left in result");
                    assert_no_directives(v);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    #[test]
    fn container_image_merges_by_name() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1.25"}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        let mut expected = deployment();
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        assert_eq!(out, expected);
    }

    #[test]
    fn env_merges_by_name_and_null_deletes_fields() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        // The added element follows the patch element it comes after in the patch.
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "value": null, "valueFrom": {"x": 1}}]}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "A", "valueFrom": {"x": 1}}, {"name": "B", "value": "2"}])
        );
    }

    #[test]
    fn new_container_goes_first_without_set_element_order() {
        // As in the kubernetes.io `kubectl patch` walkthrough (patch-demo-ctr-2 lands first).
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "redis", "image": "redis", "command": null}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(names(containers(&out)), ["redis", "app", "sidecar"]);
        assert_eq!(
            containers(&out)[0],
            json!({"name": "redis", "image": "redis"})
        );
    }

    #[test]
    fn patch_delete_removes_a_container() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(names(containers(&out)), ["app"]);
        assert_no_directives(&out);
    }

    #[test]
    fn patch_replace_element_replaces_the_list() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"},
            {"name": "only", "image": "busybox"}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(
            *containers(&out),
            json!([{"name": "only", "image": "busybox"}])
        );
    }

    #[test]
    fn patch_replace_and_delete_on_maps() {
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "only": "x"}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"only": "x"}));
        let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert!(out["spec"].get("strategy").is_none());
        let patch = json!({"spec": {"strategy": {"$patch": "merge", "type": "Recreate"}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["strategy"]["type"], "Recreate");
        assert_no_directives(&out);
    }

    #[test]
    fn root_patch_delete_empties_the_object() {
        let out = smp(&deployment(), &json!({"$patch": "delete"})).unwrap();
        assert_eq!(out, json!({}));
    }

    #[test]
    fn set_element_order_reorders_containers() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]
        }}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(names(containers(&out)), ["sidecar", "app"]);
        assert_eq!(containers(&out)[1], containers(&deployment())[0]);
        assert_no_directives(&out);
    }

    #[test]
    fn set_element_order_places_added_element_and_keeps_unmentioned() {
        let mut live = deployment();
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "injected", "image": "mesh"}));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}, {"name": "sidecar"}],
            "containers": [{"name": "new", "image": "x"}]
        }}}});
        let out = smp(&live, &patch).unwrap();
        assert_eq!(
            names(containers(&out)),
            ["app", "new", "sidecar", "injected"]
        );
    }

    #[test]
    fn set_element_order_mismatch_is_malformed() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "y"}, {"name": "app", "image": "x"}]
        }}}});
        assert!(smp(&deployment(), &patch).unwrap_err().is_malformed());
    }

    #[test]
    fn retain_keys_switches_rolling_update_to_recreate() {
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "type": "Recreate",
            "rollingUpdate": null
        }}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // Without the null, kubectl's form still clears rollingUpdate.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // A field set by the patch but not retained is malformed.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        assert!(smp(&deployment(), &patch).unwrap_err().is_malformed());
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        // An element only in the patch goes first, as in Go.
        let patch = json!({"metadata": {"finalizers": ["c"]}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        // kubectl's form carries the order.
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["a", "b", "c"],
            "finalizers": ["c"]
        }});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_no_directives(&out);
        // Deleting from an absent list creates nothing.
        let out = smp(&json!({"metadata": {}}), &patch).unwrap();
        assert_eq!(out, json!({"metadata": {}}));
    }

    #[test]
    fn labels_null_deletes_and_unmatched_nulls_are_ignored() {
        let patch = json!({"metadata": {"labels": {"tier": null, "new": "1", "absent": null}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "1"}));
        let out = smp(
            &json!({}),
            &json!({"metadata": {"annotations": {"a": null}}}),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"annotations": {}}}));
    }

    #[test]
    fn atomic_list_is_replaced() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "args": ["--c"]}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(containers(&out)[0]["args"], json!(["--c"]));
        let out = apply(&json!({"l": [1, 2]}), &json!({"l": [3]}), &AtomicLists).unwrap();
        assert_eq!(out, json!({"l": [3]}));
    }

    #[test]
    fn keyed_element_without_key_is_invalid() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = smp(&deployment(), &patch).unwrap_err();
        assert!(!err.is_malformed());
        match &err {
            StrategicError::Invalid { path, reason } => {
                assert_eq!(path, "spec.template.spec.containers");
                assert!(reason.contains("\"image\""), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("failed to "));
    }

    #[test]
    fn scalars_in_keyed_list_and_bad_directives_are_rejected() {
        let patch = json!({"spec": {"template": {"spec": {"containers": ["app"]}}}});
        assert_eq!(smp(&deployment(), &patch).unwrap_err().status_code(), 422);
        let patch = json!({"metadata": {"labels": {"$patch": "explode"}}});
        assert!(smp(&deployment(), &patch).unwrap_err().is_malformed());
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "$patch": "explode"}
        ]}}}});
        assert!(smp(&deployment(), &patch).unwrap_err().is_malformed());
        let patch = json!({"metadata": {"finalizers": [{"a": 1}]}});
        assert_eq!(smp(&deployment(), &patch).unwrap_err().status_code(), 422);
        assert!(smp(&deployment(), &json!([1])).unwrap_err().is_malformed());
        let patch = json!({"metadata": {"$setElementOrder": []}});
        assert!(smp(&deployment(), &patch).unwrap_err().is_malformed());
    }

    #[test]
    fn ports_merge_on_first_key_only() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 80.0, "name": "http"}]}
        ]}}}});
        let out = smp(&deployment(), &patch).unwrap();
        // 80.0 matches the live 80: merge keys compare as numbers, as Go's float64s do.
        assert!(values_equal(
            &containers(&out)[0]["ports"],
            &json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
        ));
    }

    #[test]
    fn new_subtrees_are_cleaned_of_directives_and_nulls() {
        let live = json!({"metadata": {"name": "x"}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "i", "resources": null, "env": [{"name": "E", "value": "v"}]},
                {"name": "b", "image": "j", "args": ["x"]},
                {"name": "c", "$patch": "delete"}
            ],
            "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]
        }}}});
        let out = smp(&live, &patch).unwrap();
        assert_no_directives(&out);
        assert_eq!(
            out["spec"]["template"]["spec"],
            json!({
                "containers": [
                    {"name": "a", "image": "i", "env": [{"name": "E", "value": "v"}]},
                    {"name": "b", "image": "j", "args": ["x"]}
                ],
                "volumes": [{"name": "v", "emptyDir": {}}]
            })
        );
    }

    #[test]
    fn type_change_replaces() {
        let out = smp(
            &json!({"a": {"b": 1}, "c": [1]}),
            &json!({"a": "s", "c": {"d": null, "e": 1}}),
        );
        assert_eq!(out.unwrap(), json!({"a": "s", "c": {"e": 1}}));
    }

    #[test]
    fn kubectl_three_way_patch_for_a_deployment() {
        let last_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web"},"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.25","name":"app"},{"image":"envoy:1","name":"sidecar"}]}}}}"#;
        let mut live = deployment();
        live["metadata"]["annotations"] = json!({
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "deployment.kubernetes.io/revision": "1"
        });
        let patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": format!("{last_applied}\n")
            }},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"name": "app", "image": "nginx:1.25"}]
            }}}
        });
        let out = smp(&live, &patch).unwrap();
        let mut expected = live.clone();
        expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!(format!("{last_applied}\n"));
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        assert_eq!(out, expected);
        assert_no_directives(&out);
    }

    #[test]
    fn kubectl_three_way_patch_removing_a_container_and_an_env_var() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {
                    "name": "app",
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"name": "B", "$patch": "delete"}]
                },
                {"name": "sidecar", "$patch": "delete"}
            ]
        }}}});
        let out = smp(&deployment(), &patch).unwrap();
        assert_eq!(names(containers(&out)), ["app"]);
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
        assert_no_directives(&out);
    }

    #[test]
    fn original_is_not_modified_and_null_original_is_empty() {
        let live = deployment();
        let _ = smp(&live, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(live, deployment());
        assert_eq!(
            smp(&Value::Null, &json!({"a": 1})).unwrap(),
            json!({"a": 1})
        );
    }
}

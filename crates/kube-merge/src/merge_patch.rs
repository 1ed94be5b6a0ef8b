//! RFC 7386 JSON Merge Patch (`application/merge-patch+json`) over `serde_json::Value`.
//!
//! Objects merge key by key, a `null` value deletes the key, and anything else (arrays
//! included) replaces the target value; a patch that is not an object replaces the whole target.
//! `null`s nested in values that are added rather than merged are dropped too, as the RFC's
//! algorithm recurses into them.
//!
//! Deliberately not done here: any list merging by key (that is strategic merge patch, see
//! [`crate::strategic`]) and any validation of the result; the merge itself cannot fail.

use serde_json::{Map, Value};

/// Applies the JSON Merge Patch `patch` to `target` in place.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key.as_str());
            } else {
                apply(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(mut target: Value, patch: &Value) -> Value {
        apply(&mut target, patch);
        target
    }

    /// The test cases of RFC 7386 appendix A.
    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                merged(target.clone(), &patch),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn kubernetes_labels_and_lists() {
        let object = json!({
            "metadata": {"labels": {"app": "a", "tier": "web"}, "finalizers": ["x", "y"]},
            "spec": {"replicas": 1}
        });
        let patch = json!({
            "metadata": {"labels": {"tier": null, "new": "1"}, "finalizers": ["z"]},
            "spec": {"replicas": 3}
        });
        assert_eq!(
            merged(object, &patch),
            json!({
                "metadata": {"labels": {"app": "a", "new": "1"}, "finalizers": ["z"]},
                "spec": {"replicas": 3}
            })
        );
    }
}

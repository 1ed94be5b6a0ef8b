//! RFC 6902 JSON Patch (`application/json-patch+json`) over `serde_json::Value`, with the
//! semantics of `evanphx/json-patch`, the library kube-apiserver applies such patches with.
//!
//! The operations `add`, `remove`, `replace`, `move`, `copy` and `test` are supported, with
//! JSON Pointer `~0`/`~1` escapes and the `-` index for appending to an array. `test` follows the
//! Go library rather than the RFC where kube clients depend on it: testing a missing member (or
//! one holding `null`) whose parent exists against `null` passes, which is what kube-rs's
//! finalizer helper sends for objects without finalizers. A patch is atomic: if any operation
//! fails, the document is left untouched.
//!
//! Deliberately not done here: negative array indices (a Go extension no Kubernetes client
//! sends), limits on the number of operations or the patch size (the caller enforces those), and
//! anything Kubernetes-specific such as rejecting changes to immutable fields.

use serde_json::{Number, Value};

/// Why a JSON Patch was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The patch is not a well-formed JSON Patch: not an array of operation objects, an unknown
    /// `op`, a missing or mistyped `path`/`value`/`from`, or a malformed JSON Pointer. The API
    /// server answers 400 Bad Request.
    #[error("failed to decode json patch: {reason}")]
    Malformed {
        /// What is wrong, with the offending input.
        reason: String,
    },
    /// A well-formed operation could not be applied to the document (missing member, index out of
    /// range, failed `test`). The API server answers 422 Unprocessable Entity.
    #[error("failed to apply json patch operation {index} ({op} {path}): {reason}")]
    Failed {
        /// Position of the failing operation in the patch, from 0.
        index: usize,
        /// The operation's `op`.
        op: String,
        /// The operation's `path`, as sent.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

impl JsonPatchError {
    /// Whether the patch itself is malformed (HTTP 400) rather than inapplicable to this document
    /// (HTTP 422).
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed { .. })
    }

    /// The HTTP status code kube-apiserver answers this error with: 400 or 422.
    #[must_use]
    pub fn status_code(&self) -> u16 {
        if self.is_malformed() { 400 } else { 422 }
    }
}

/// Applies the JSON Patch `patch` (an array of operation objects) to `doc`.
///
/// All operations are validated before any is applied, then applied in order to a copy of `doc`;
/// `doc` is replaced only when every operation succeeded.
///
/// # Errors
///
/// [`JsonPatchError::Malformed`] when the patch is not a valid JSON Patch document,
/// [`JsonPatchError::Failed`] when an operation cannot be applied; `doc` is then unchanged.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = parse(patch)?;
    let mut work = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        op.apply(&mut work)
            .map_err(|reason| JsonPatchError::Failed {
                index,
                op: op.name().to_owned(),
                path: op.raw_path.to_owned(),
                reason,
            })?;
    }
    *doc = work;
    Ok(())
}

/// JSON equality with numbers compared by value (`1`, `1.0` and `1e0` are equal), as Go's
/// decoded `float64`s compare.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
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

/// One validated operation.
struct Op<'a> {
    kind: OpKind<'a>,
    raw_path: &'a str,
    path: Vec<String>,
}

enum OpKind<'a> {
    Add(&'a Value),
    Remove,
    Replace(&'a Value),
    Move(Vec<String>),
    Copy(Vec<String>),
    Test(&'a Value),
}

fn parse(patch: &Value) -> Result<Vec<Op<'_>>, JsonPatchError> {
    let malformed = |reason: String| JsonPatchError::Malformed { reason };
    let Value::Array(items) = patch else {
        return Err(malformed(format!(
            "patch is not a JSON array: {}",
            show(patch)
        )));
    };
    let mut ops = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(malformed(format!(
                "operation {index} is not a JSON object: {}",
                show(item)
            )));
        };
        let string_field = |name: &str| -> Result<&str, JsonPatchError> {
            match fields.get(name) {
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(other) => Err(malformed(format!(
                    "operation {index} has a non-string \"{name}\": {}",
                    show(other)
                ))),
                None => Err(malformed(format!(
                    "operation {index} is missing \"{name}\": {}",
                    show(item)
                ))),
            }
        };
        let value_field = || -> Result<&Value, JsonPatchError> {
            fields.get("value").ok_or_else(|| {
                malformed(format!(
                    "operation {index} is missing \"value\": {}",
                    show(item)
                ))
            })
        };
        let op = string_field("op")?;
        let raw_path = string_field("path")?;
        let path = parse_pointer(raw_path)
            .map_err(|reason| malformed(format!("operation {index}: {reason}")))?;
        let from = || -> Result<Vec<String>, JsonPatchError> {
            parse_pointer(string_field("from")?)
                .map_err(|reason| malformed(format!("operation {index}: {reason}")))
        };
        let kind = match op {
            "add" => OpKind::Add(value_field()?),
            "remove" => OpKind::Remove,
            "replace" => OpKind::Replace(value_field()?),
            "move" => OpKind::Move(from()?),
            "copy" => OpKind::Copy(from()?),
            "test" => OpKind::Test(value_field()?),
            other => {
                return Err(malformed(format!(
                    "operation {index} has an unknown op \"{other}\""
                )));
            }
        };
        ops.push(Op {
            kind,
            raw_path,
            path,
        });
    }
    Ok(ops)
}

/// Splits a JSON Pointer into unescaped reference tokens; `""` is the whole document.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "path \"{pointer}\" is not a JSON pointer (must start with '/')"
        ));
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn pointer_display(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// An array index token: decimal digits only (`-` is handled by the callers that accept it).
fn array_index(token: &str) -> Result<usize, String> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{token}\" is not an array index"));
    }
    token
        .parse()
        .map_err(|_| format!("array index {token} is out of range"))
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self.kind {
            OpKind::Add(_) => "add",
            OpKind::Remove => "remove",
            OpKind::Replace(_) => "replace",
            OpKind::Move(_) => "move",
            OpKind::Copy(_) => "copy",
            OpKind::Test(_) => "test",
        }
    }

    fn apply(&self, doc: &mut Value) -> Result<(), String> {
        match &self.kind {
            OpKind::Add(value) => add(doc, &self.path, (*value).clone()),
            OpKind::Remove => remove(doc, &self.path).map(drop),
            OpKind::Replace(value) => replace(doc, &self.path, (*value).clone()),
            OpKind::Move(from) => {
                if from == &self.path {
                    return get(doc, from).map(drop).ok_or_else(|| {
                        format!("\"from\" {} does not exist", pointer_display(from))
                    });
                }
                if self.path.len() > from.len() && self.path.starts_with(from) {
                    return Err(format!(
                        "cannot move {} into its own child {}",
                        pointer_display(from),
                        pointer_display(&self.path)
                    ));
                }
                let value = remove(doc, from).map_err(|e| format!("\"from\": {e}"))?;
                add(doc, &self.path, value)
            }
            OpKind::Copy(from) => {
                let value = get(doc, from)
                    .cloned()
                    .ok_or_else(|| format!("\"from\" {} does not exist", pointer_display(from)))?;
                add(doc, &self.path, value)
            }
            OpKind::Test(expected) => test(doc, &self.path, expected),
        }
    }
}

fn get<'d>(doc: &'d Value, tokens: &[String]) -> Option<&'d Value> {
    tokens.iter().try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get(token),
        Value::Array(items) => array_index(token).ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The container holding the last token of `tokens`, which must not be empty.
fn parent_mut<'d>(doc: &'d mut Value, tokens: &[String]) -> Result<&'d mut Value, String> {
    let parent_tokens = tokens.split_last().map_or(&[][..], |(_, init)| init);
    let mut node = doc;
    for (depth, token) in parent_tokens.iter().enumerate() {
        let next = match node {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => match array_index(token) {
                Ok(i) => items.get_mut(i),
                Err(_) => None,
            },
            _ => None,
        };
        node = next.ok_or_else(|| {
            format!(
                "path {} does not exist",
                pointer_display(&parent_tokens[..=depth])
            )
        })?;
    }
    Ok(node)
}

fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some(last) = tokens.last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, tokens)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            let index = array_index(last)?;
            if index > items.len() {
                return Err(format!(
                    "index {index} is out of range for an array of length {}",
                    items.len()
                ));
            }
            items.insert(index, value);
            Ok(())
        }
        other => Err(format!(
            "cannot add member \"{last}\" to the non-container {}",
            show(other)
        )),
    }
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some(last) = tokens.last() else {
        return Err("cannot remove the whole document".to_owned());
    };
    match parent_mut(doc, tokens)? {
        Value::Object(map) => map
            .remove(last.as_str())
            .ok_or_else(|| format!("member {} does not exist", pointer_display(tokens))),
        Value::Array(items) => {
            let index = array_index(last)?;
            if index >= items.len() {
                return Err(format!(
                    "index {index} is out of range for an array of length {}",
                    items.len()
                ));
            }
            Ok(items.remove(index))
        }
        other => Err(format!(
            "cannot remove \"{last}\" from the non-container {}",
            show(other)
        )),
    }
}

fn replace(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some(last) = tokens.last() else {
        *doc = value;
        return Ok(());
    };
    let slot = match parent_mut(doc, tokens)? {
        Value::Object(map) => map.get_mut(last.as_str()),
        Value::Array(items) => items.get_mut(array_index(last)?),
        _ => None,
    };
    let slot = slot.ok_or_else(|| format!("path {} does not exist", pointer_display(tokens)))?;
    *slot = value;
    Ok(())
}

/// Go `evanphx/json-patch` `test`: the parent must exist; a missing or `null` member equals
/// `null`; other values compare as JSON with numbers by value.
fn test(doc: &Value, tokens: &[String], expected: &Value) -> Result<(), String> {
    let actual = match tokens.split_last() {
        None => Some(doc),
        Some((last, parent_tokens)) => {
            let parent = get(doc, parent_tokens)
                .ok_or_else(|| format!("path {} does not exist", pointer_display(parent_tokens)))?;
            match parent {
                Value::Object(map) => map.get(last.as_str()),
                Value::Array(items) => {
                    let index = array_index(last)?;
                    Some(items.get(index).ok_or_else(|| {
                        format!(
                            "index {index} is out of range for an array of length {}",
                            items.len()
                        )
                    })?)
                }
                other => {
                    return Err(format!(
                        "path {} is inside the non-container {}",
                        pointer_display(tokens),
                        show(other)
                    ));
                }
            }
        }
    };
    let passed = match actual {
        None | Some(Value::Null) => expected.is_null(),
        Some(actual) => values_equal(actual, expected),
    };
    if passed {
        Ok(())
    } else {
        Err(format!(
            "test failed: found {}, expected {}",
            actual.map_or_else(|| "nothing".to_owned(), show),
            show(expected)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(mut doc: Value, patch: Value) -> Result<Value, JsonPatchError> {
        apply(&mut doc, &patch).map(|()| doc)
    }

    #[test]
    fn test_null_on_missing_member_passes() {
        let doc = json!({"metadata": {"name": "x"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["a/b"]}
        ]);
        let out = patched(doc, patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "x", "finalizers": ["a/b"]}})
        );
    }

    #[test]
    fn test_null_on_null_member_passes_and_non_null_fails_on_missing() {
        let doc = json!({"metadata": {"finalizers": null}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        patched(doc.clone(), patch).unwrap();
        let patch = json!([{"op": "test", "path": "/metadata/other", "value": "x"}]);
        let err = patched(doc, patch).unwrap_err();
        assert!(!err.is_malformed());
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn test_on_missing_parent_fails() {
        let doc = json!({"spec": {}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        let err = patched(doc, patch).unwrap_err();
        match err {
            JsonPatchError::Failed {
                index, op, path, ..
            } => {
                assert_eq!(
                    (index, op.as_str(), path.as_str()),
                    (0, "test", "/metadata/finalizers")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn test_compares_numbers_by_value_and_deep_values() {
        let doc = json!({"a": 1, "b": {"c": [1.0, "x"]}});
        let patch = json!([
            {"op": "test", "path": "/a", "value": 1.0},
            {"op": "test", "path": "/b", "value": {"c": [1, "x"]}},
            {"op": "test", "path": "/b/c/1", "value": "x"}
        ]);
        patched(doc.clone(), patch).unwrap();
        let patch = json!([{"op": "test", "path": "/a", "value": 2}]);
        assert!(patched(doc, patch).is_err());
    }

    #[test]
    fn failure_rolls_back_earlier_operations() {
        let original = json!({"a": 1, "list": [1, 2]});
        let mut doc = original.clone();
        let patch = json!([
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "remove", "path": "/missing"}
        ]);
        let err = apply(&mut doc, &patch).unwrap_err();
        assert!(matches!(err, JsonPatchError::Failed { index: 2, .. }));
        assert_eq!(doc, original);
    }

    #[test]
    fn move_and_copy() {
        let doc = json!({"a": {"b": 1}, "c": [1, 2, 3]});
        let patch = json!([
            {"op": "copy", "from": "/a", "path": "/d"},
            {"op": "move", "from": "/a/b", "path": "/e"},
            {"op": "move", "from": "/c/0", "path": "/c/-"},
            {"op": "copy", "from": "/c/0", "path": "/c/1"}
        ]);
        let out = patched(doc, patch).unwrap();
        assert_eq!(
            out,
            json!({"a": {}, "c": [2, 2, 3, 1], "d": {"b": 1}, "e": 1})
        );
    }

    #[test]
    fn move_into_own_child_fails() {
        let doc = json!({"a": {"b": {}}});
        let patch = json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]);
        assert!(matches!(
            patched(doc, patch),
            Err(JsonPatchError::Failed { .. })
        ));
    }

    #[test]
    fn add_appends_with_dash_and_inserts_at_index() {
        let doc = json!({"l": ["a", "c"]});
        let patch = json!([
            {"op": "add", "path": "/l/-", "value": "d"},
            {"op": "add", "path": "/l/1", "value": "b"},
            {"op": "add", "path": "/l/4", "value": "e"}
        ]);
        assert_eq!(
            patched(doc.clone(), patch).unwrap(),
            json!({"l": ["a", "b", "c", "d", "e"]})
        );
        let patch = json!([{"op": "add", "path": "/l/3", "value": "x"}]);
        assert!(patched(doc, patch).is_err());
    }

    #[test]
    fn escapes_in_pointers() {
        let doc = json!({"metadata": {"annotations": {"a/b": "1", "m~n": "2"}}});
        let patch = json!([
            {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "3"},
            {"op": "remove", "path": "/metadata/annotations/m~0n"},
            {"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "y"}
        ]);
        let out = patched(doc, patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"a/b": "3", "example.com/x": "y"}}})
        );
    }

    #[test]
    fn replace_and_remove_on_missing_member_fail() {
        let doc = json!({"a": 1, "l": [1]});
        for patch in [
            json!([{"op": "replace", "path": "/b", "value": 1}]),
            json!([{"op": "remove", "path": "/b"}]),
            json!([{"op": "remove", "path": "/l/1"}]),
            json!([{"op": "replace", "path": "/l/-", "value": 1}]),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
        ] {
            let err = patched(doc.clone(), patch.clone()).unwrap_err();
            assert!(!err.is_malformed(), "{patch}: {err}");
        }
    }

    #[test]
    fn root_replace_and_add() {
        let out = patched(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "", "value": [1]}]),
        );
        assert_eq!(out.unwrap(), json!([1]));
        let out = patched(
            json!({"a": 1}),
            json!([{"op": "add", "path": "", "value": {"b": 2}}]),
        );
        assert_eq!(out.unwrap(), json!({"b": 2}));
    }

    #[test]
    fn malformed_patches() {
        for patch in [
            json!({"op": "add"}),
            json!(["add"]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"path": "/a", "value": 1}]),
            json!([{"op": "add", "value": 1}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "replace", "path": "/a"}]),
            json!([{"op": "test", "path": "/a"}]),
            json!([{"op": "move", "path": "/a"}]),
            json!([{"op": "copy", "path": "/a", "from": 3}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
        ] {
            let err = patched(json!({"a": 1}), patch.clone()).unwrap_err();
            assert!(err.is_malformed(), "{patch}: {err}");
            assert_eq!(err.status_code(), 400);
            assert!(err.to_string().starts_with("failed to "));
        }
    }

    #[test]
    fn malformed_is_reported_before_anything_is_applied() {
        let mut doc = json!({"a": 1});
        let patch = json!([{"op": "remove", "path": "/a"}, {"op": "nope", "path": "/a"}]);
        assert!(apply(&mut doc, &patch).unwrap_err().is_malformed());
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn values_equal_compares_numbers_by_value() {
        assert!(values_equal(&json!(80), &json!(80.0)));
        assert!(values_equal(
            &json!({"a": [1, 2]}),
            &json!({"a": [1.0, 2e0]})
        ));
        assert!(!values_equal(&json!(-1), &json!(u64::MAX)));
        assert!(!values_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }
}

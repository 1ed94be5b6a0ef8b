//! Label and field selectors as the API server parses them (kube-sim-surface §1.7).
//!
//! Label selectors: requirements joined by commas (AND): `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k`, `!k`. Field selectors: `field=value`, `field==value`, `field!=value`
//! joined by commas, on `metadata.name` and `metadata.namespace` for every kind plus the
//! per-kind fields real servers support; anything else is refused as the server does.

use std::collections::BTreeSet;

use serde_json::Value;

/// A parsed label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(text: &str, whole: &str) -> Result<BTreeSet<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: found '{text}', expected: '('"))?;
    let values: BTreeSet<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if values.iter().any(String::is_empty) && values.len() > 1 {
        return Err(format!(
            "unable to parse requirement in {whole:?}: empty value in set"
        ));
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses a `labelSelector` query value; the empty string selects everything.
    ///
    /// # Errors
    ///
    /// A message in the API server's wording when the syntax is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if text.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_top_level(text) {
            let part = part.trim();
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, set)) = part.split_once(" notin ") {
                Requirement::NotIn(key.trim().to_owned(), parse_set(set, text)?)
            } else if let Some((key, set)) = part.split_once(" in ") {
                Requirement::In(key.trim().to_owned(), parse_set(set, text)?)
            } else {
                Requirement::Exists(part.to_owned())
            };
            let key = match &requirement {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => k,
            };
            if !valid_key(key) {
                return Err(format!(
                    "unable to parse requirement: invalid label key {key:?} in {text:?}"
                ));
            }
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Builds a selector from a `LabelSelector` object (`matchLabels` and `matchExpressions`).
    #[must_use]
    pub fn from_object(selector: &Value) -> Self {
        let mut requirements = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            for (k, v) in labels {
                requirements.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        for expr in selector["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = expr["key"].as_str().unwrap_or_default().to_owned();
            let values: BTreeSet<String> = expr["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            requirements.push(match expr["operator"].as_str() {
                Some("In") => Requirement::In(key, values),
                Some("NotIn") => Requirement::NotIn(key, values),
                Some("DoesNotExist") => Requirement::NotExists(key),
                _ => Requirement::Exists(key),
            });
        }
        Self { requirements }
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    /// Whether the selector selects everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

/// Field labels the real server supports beyond `metadata.name` / `metadata.namespace`.
fn supported_field(group: &str, plural: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (group, plural) {
        ("", "pods") => matches!(
            field,
            "status.phase"
                | "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.serviceAccountName"
                | "status.podIP"
                | "status.nominatedNodeName"
                | "spec.schedulerName"
        ),
        ("", "secrets") => field == "type",
        ("", "events") => {
            field.starts_with("involvedObject.")
                || matches!(field, "reason" | "type" | "source" | "reportingComponent")
        }
        ("events.k8s.io", "events") => {
            field.starts_with("regarding.")
                || matches!(field, "reason" | "type" | "reportingController")
        }
        ("", "namespaces") => field == "status.phase",
        ("batch", "jobs") => field == "status.successful",
        ("", "nodes") => field == "spec.unschedulable",
        ("", "replicationcontrollers") => field == "status.replicas",
        ("apps", "replicasets") => field == "status.replicas",
        _ => false,
    }
}

impl FieldSelector {
    /// Parses a `fieldSelector` query value for a resource.
    ///
    /// # Errors
    ///
    /// `field label not supported: <f>` for fields the real server would refuse, or a syntax
    /// message.
    pub fn parse(text: &str, group: &str, plural: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if text.trim().is_empty() {
            return Ok(Self { terms });
        }
        for part in text.split(',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if !supported_field(group, plural, field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { terms })
    }

    /// The exact name this selector requires, if any (`metadata.name=x`).
    #[must_use]
    pub fn required_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, eq, _)| *eq && f == "metadata.name")
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether the object satisfies every term.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let actual = field.split('.').fold(object, |v, k| &v[k]);
            let text = match actual {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (text == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "dev", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn every_label_operator_works() {
        let o = object(json!({"owner": "helm", "name": "rel", "status": "deployed"}));
        for (selector, expected) in [
            ("owner=helm", true),
            ("name=rel,owner==helm", true),
            ("owner!=helm", false),
            ("status in (deployed, superseded)", true),
            ("status notin (deployed)", false),
            ("owner", true),
            ("!owner", false),
            ("!missing,owner in (helm),missing notin (x)", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(selector).unwrap().matches(&o),
                expected,
                "{selector}"
            );
        }
    }

    #[test]
    fn bad_label_syntax_is_refused() {
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn selector_objects_combine_match_labels_and_expressions() {
        let s = LabelSelector::from_object(&json!({"matchLabels": {"app": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}));
        assert!(s.matches(&object(json!({"app": "a", "tier": "web"}))));
        assert!(!s.matches(&object(json!({"app": "a", "tier": "db"}))));
    }

    #[test]
    fn field_selectors_support_name_namespace_and_kind_fields() {
        let o = object(json!({}));
        let s = FieldSelector::parse("metadata.name=x,metadata.namespace!=prod", "", "configmaps")
            .unwrap();
        assert!(s.matches(&o));
        assert_eq!(s.required_name(), Some("x"));
        assert!(
            FieldSelector::parse("status.phase=Running", "", "pods")
                .unwrap()
                .matches(&o)
        );
        assert_eq!(
            FieldSelector::parse("spec.foo=bar", "", "configmaps").unwrap_err(),
            "field label not supported: spec.foo"
        );
    }
}

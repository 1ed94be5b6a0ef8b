//! Byte-exact edits of image references in YAML manifest files: the write-back step of image
//! automation.
//!
//! [`update_images`] takes the text of one file, finds the document (or the item of a `List`)
//! named by a [`Target`], and rewrites only the bytes of the scalars that hold the images named by
//! the [`ImageChange`]s. Everything else — the other documents, `---` / `...` markers, comments,
//! anchors, flow style, CRLF line endings, tabs, a missing final newline — is left exactly as it
//! was. Flux v1 did this with `kubeyaml set image` for workloads and with the HelmRelease setter
//! (`kubeyaml set --values`) for `spec.values` (`pkg/cluster/kubernetes/update.go`,
//! `pkg/cluster/kubernetes/resource/helmrelease.go`).
//!
//! How: the file is parsed twice. `serde_yaml` gives the meaning (which document is the target,
//! which index the named container has, what each document holds); `yaml-edit`'s lossless syntax
//! tree gives the byte range of the scalar at that same path. The new value is written into that
//! range in the scalar's original quoting style: double stays double, single stays single, plain
//! stays plain unless the new value would then read as something other than that string (a tag
//! `1.10` or `yes`), in which case it is double-quoted. Afterwards the result is parsed again and
//! checked: every other document is equal to what it was, the target document has the same
//! structure with only the edited scalars (and the aliases of an edited anchor) changed, and each
//! changed location holds the new value. Any doubt ends in an [`EditError`]; the caller drops that
//! update.
//!
//! Anchors and aliases: when the image scalar is an alias (`image: *app`), the anchored scalar
//! (`&app ghcr.io/org/app:1.0`) is edited, so every alias of it follows, as the author of the
//! anchor intended. Merge keys (`<<: *defaults`) are followed when a key is not in the mapping
//! itself.
//!
//! Deliberately not done: adding a key that is missing (an `image:` without a value, a
//! `spec.values` path that does not exist), editing block scalars (`|`, `>`) or plain and quoted
//! scalars that span lines, and choosing the new image reference (the caller composes it, with
//! [`model::values_images::ValuesImage::tag_update`] for HelmReleases).

use std::fmt;

use model::values_images::{ValuePath, ValueUpdate};
use rowan::NodeOrToken;
use rowan::ast::AstNode;
use serde_yaml::Value;
use yaml_edit::SyntaxKind as K;

type Node = rowan::SyntaxNode<yaml_edit::Lang>;

/// The UTF-8 byte order mark some editors write at the start of a file.
const BOM: char = '\u{feff}';

/// How deep alias and tag indirections are followed before giving up (protects against cycles).
const MAX_INDIRECTIONS: usize = 32;

/// Which object of a file to edit: by `kind` and `metadata.name`, and the namespace.
///
/// The namespace of the target and of each object are compared after defaulting a missing one
/// to the `default_namespace` given to [`update_images`] (a document without
/// `metadata.namespace` lives in the agent's default namespace, as `kubectl apply` would place it).
/// Objects inside a `List` (`kind: List` or any `…List` kind with `items`) are found as well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The object's `kind`, compared exactly (`Deployment`, `HelmRelease`, `FluxHelmRelease`).
    pub kind: String,
    /// The object's `metadata.name`.
    pub name: String,
    /// The object's namespace; `None` means the default namespace.
    pub namespace: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One scalar to rewrite in the target object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageChange {
    /// A workload container (in `containers` or `initContainers` of the pod template, of a
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet or Job at `spec.template.spec`, a CronJob at
    /// `spec.jobTemplate.spec.template.spec`, or a Pod at `spec`): set its `image` to `image`, the
    /// full reference as it should be written (`ghcr.io/org/app:1.2.3`). Mirrors Flux v1
    /// `kubeyaml set image`.
    Container {
        /// The container's `name`.
        container: String,
        /// The new image reference.
        image: String,
    },
    /// A HelmRelease or FluxHelmRelease value: set the scalar at `spec.values.<path>` to the
    /// string `value` (a [`model::values_images::ValueUpdate`]). Mirrors Flux v1's HelmRelease
    /// setter, which writes the tag (or `repo:tag`) back into the field it was read from.
    Value {
        /// The path below `spec.values`.
        path: ValuePath,
        /// The new string.
        value: String,
    },
}

impl From<ValueUpdate> for ImageChange {
    /// The change that writes one of [`model::values_images::ValuesImage::tag_update`]'s scalars.
    fn from(update: ValueUpdate) -> Self {
        Self::Value {
            path: update.path,
            value: update.value,
        }
    }
}

/// Why a file could not be edited. The file is then left as it was.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file is not valid YAML, or its documents could not be told apart reliably.
    #[error("failed to parse the file as YAML{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Parse {
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },
    /// No document (or `List` item) is the target.
    #[error("failed to find {target} in the file")]
    TargetNotFound {
        /// The target looked for.
        target: Target,
    },
    /// More than one document (or `List` item) is the target.
    #[error("failed to choose between {count} objects {target} in the file")]
    AmbiguousTarget {
        /// The target looked for.
        target: Target,
        /// How many objects matched.
        count: usize,
    },
    /// The target has no container of that name, or its pod template has no containers.
    #[error("failed to find container {container:?} in {target}")]
    ContainerNotFound {
        /// The target.
        target: Target,
        /// The container name looked for.
        container: String,
    },
    /// The target has more than one container of that name (across `containers` and
    /// `initContainers`), which Kubernetes would reject.
    #[error("failed to choose between {count} containers {container:?} in {target}")]
    AmbiguousContainer {
        /// The target.
        target: Target,
        /// The container name looked for.
        container: String,
        /// How many containers have that name.
        count: usize,
    },
    /// A path does not exist in the target (a `spec.values` path or part of the pod template).
    #[error("failed to find {path} in {target}")]
    PathNotFound {
        /// The target.
        target: Target,
        /// The path, dotted, with `[i]` for list indexes.
        path: String,
    },
    /// The location holds something this editor does not rewrite (no value, a mapping, a block
    /// or multi-line scalar).
    #[error("failed to edit {path} in {target}: {reason}")]
    Unsupported {
        /// The target.
        target: Target,
        /// The path, dotted.
        path: String,
        /// What is there.
        reason: &'static str,
    },
    /// Two changes want different values in the same scalar (two aliases of one anchor).
    #[error("failed to apply two different values to the same scalar at {path} in {target}")]
    Conflict {
        /// The target.
        target: Target,
        /// The path of the second change, dotted.
        path: String,
    },
    /// The edited text does not mean what was intended. Nothing is written.
    #[error("failed to verify the edit: {reason}")]
    Verify {
        /// What differs. Names paths only, never values.
        reason: String,
    },
}

/// Sets the images named by `changes` in the object `target` of the YAML file `src` and returns
/// the new file text; only the bytes of the changed scalars differ from `src`.
///
/// A change whose location already holds the new value changes nothing (its quoting stays as
/// written). `changes` may be empty, which returns `src` unchanged after the target was found.
///
/// # Errors
///
/// [`EditError::Parse`] when `src` is not YAML; [`EditError::TargetNotFound`] /
/// [`EditError::AmbiguousTarget`] when not exactly one object matches; [`EditError::ContainerNotFound`],
/// [`EditError::AmbiguousContainer`],
/// [`EditError::PathNotFound`], [`EditError::Unsupported`], [`EditError::Conflict`] for a change
/// that cannot be applied (no change is applied then); [`EditError::Verify`] when the result
/// does not re-parse to the original with exactly the intended changes.
pub fn update_images(
    src: &str,
    default_namespace: &str,
    target: &Target,
    changes: &[ImageChange],
) -> Result<String, EditError> {
    // A byte order mark is kept in front and left out of the parsing.
    if let Some(rest) = src.strip_prefix(BOM) {
        return update_images(rest, default_namespace, target, changes)
            .map(|out| format!("{BOM}{out}"));
    }
    let old_all = parse_all(src).map_err(|e| parse_error(&e))?;
    let root = yaml_edit::YamlFile::parse(src).tree().syntax().clone();
    let documents: Vec<Node> = root
        .children()
        .filter(|n| n.kind() == K::DOCUMENT)
        .collect();
    let doc_values = documents
        .iter()
        .map(|doc| parse_document(&doc.text().to_string()))
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| parse_error(&e))?;
    // The syntax tree's split into documents must agree with the YAML parser's.
    let non_null: Vec<&Value> = doc_values.iter().filter(|v| !v.is_null()).collect();
    if non_null.len() != old_all.len() || non_null.iter().zip(&old_all).any(|(a, b)| *a != b) {
        return Err(EditError::Parse {
            line: None,
            message: "the documents of the file could not be separated reliably".into(),
        });
    }

    let (doc_index, prefix) = find_target(&doc_values, default_namespace, target)?;
    let document = &documents[doc_index];
    let object_value = get(&doc_values[doc_index], &prefix).ok_or_else(|| EditError::Verify {
        reason: "the target object disappeared".into(),
    })?;

    let mut edits: Vec<Edit> = Vec::new();
    let mut planned: Vec<(Vec<Step>, String)> = Vec::new();
    for change in changes {
        let (steps, new) = match change {
            ImageChange::Container { container, image } => {
                let mut steps = prefix.clone();
                steps.extend(container_steps(object_value, target, container)?);
                (steps, image.clone())
            }
            ImageChange::Value { path, value } => {
                let mut steps = prefix.clone();
                steps.push(Step::Key("spec".into()));
                steps.push(Step::Key("values".into()));
                steps.extend(path.keys().iter().cloned().map(Step::Key));
                (steps, value.clone())
            }
        };
        let scalar = locate(document, &steps, target)?;
        let old = get(&doc_values[doc_index], &steps).ok_or_else(|| EditError::PathNotFound {
            target: target.clone(),
            path: show(&steps),
        })?;
        if let Some(edit) = plan_edit(src, &scalar, old, &new, &steps, target)? {
            match edits.iter().find(|e| e.range == edit.range) {
                Some(same) if same.text == edit.text => {}
                Some(_) => {
                    return Err(EditError::Conflict {
                        target: target.clone(),
                        path: show(&steps),
                    });
                }
                None => edits.push(edit),
            }
        }
        planned.push((steps, new));
    }

    let mut result = src.to_owned();
    edits.sort_by_key(|e| std::cmp::Reverse(e.range.start));
    for edit in &edits {
        result.replace_range(edit.range.clone(), &edit.text);
    }
    let target_position = doc_values[..doc_index]
        .iter()
        .filter(|v| !v.is_null())
        .count();
    verify(&old_all, &result, target_position, &planned)?;
    Ok(result)
}

/// A replacement of one scalar's bytes.
#[derive(Debug)]
struct Edit {
    range: std::ops::Range<usize>,
    text: String,
}

/// One step of a path into a document.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `spec.template.spec.containers[0].image`.
fn show(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn parse_error(e: &serde_yaml::Error) -> EditError {
    EditError::Parse {
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    }
}

/// Merge keys applied, as Kubernetes and Helm read them; left as written when they are malformed.
fn merged(mut value: Value) -> Value {
    let original = value.clone();
    match value.apply_merge() {
        Ok(()) => value,
        Err(_) => original,
    }
}

/// Every non-empty document of a file.
fn parse_all(src: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(src) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            out.push(merged(value));
        }
    }
    Ok(out)
}

/// One document's text (with its markers and comments); `Null` when it holds nothing.
fn parse_document(text: &str) -> Result<Value, serde_yaml::Error> {
    let mut values = parse_all(text)?;
    Ok(match values.len() {
        0 => Value::Null,
        _ => values.swap_remove(0),
    })
}

/// The value at `steps`.
fn get<'a>(value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(value, |v, step| match step {
        Step::Key(key) => v.as_mapping()?.get(key.as_str()),
        Step::Index(i) => v.as_sequence()?.get(*i),
    })
}

fn str_at<'a>(value: &'a Value, steps: &[&str]) -> Option<&'a str> {
    let steps: Vec<Step> = steps.iter().map(|s| Step::Key((*s).to_owned())).collect();
    get(value, &steps)?.as_str()
}

fn is_target(object: &Value, default_namespace: &str, target: &Target) -> bool {
    let want_ns = target.namespace.as_deref().unwrap_or(default_namespace);
    str_at(object, &["kind"]) == Some(target.kind.as_str())
        && str_at(object, &["metadata", "name"]) == Some(target.name.as_str())
        && str_at(object, &["metadata", "namespace"]).unwrap_or(default_namespace) == want_ns
}

/// The index of the document holding the target and the path to it inside that document
/// (empty, or `items[i]` in a `List`).
fn find_target(
    documents: &[Value],
    default_namespace: &str,
    target: &Target,
) -> Result<(usize, Vec<Step>), EditError> {
    let mut found = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        if is_target(document, default_namespace, target) {
            found.push((index, Vec::new()));
        }
        let is_list = str_at(document, &["kind"]).is_some_and(|k| k.ends_with("List"));
        if let Some(items) = document.get("items").and_then(Value::as_sequence)
            && is_list
        {
            for (item_index, item) in items.iter().enumerate() {
                if is_target(item, default_namespace, target) {
                    found.push((
                        index,
                        vec![Step::Key("items".into()), Step::Index(item_index)],
                    ));
                }
            }
        }
    }
    match found.len() {
        0 => Err(EditError::TargetNotFound {
            target: target.clone(),
        }),
        1 => Ok(found.swap_remove(0)),
        count => Err(EditError::AmbiguousTarget {
            target: target.clone(),
            count,
        }),
    }
}

/// Where pod specs live, by kind of workload; the first that holds containers wins.
const POD_SPEC_PATHS: [&[&str]; 3] = [
    &["spec", "template", "spec"],
    &["spec", "jobTemplate", "spec", "template", "spec"],
    &["spec"],
];
const CONTAINER_LISTS: [&str; 2] = ["containers", "initContainers"];

/// The path (relative to the object) of the `image` of the named container.
fn container_steps(
    object: &Value,
    target: &Target,
    container: &str,
) -> Result<Vec<Step>, EditError> {
    let not_found = || EditError::ContainerNotFound {
        target: target.clone(),
        container: container.to_owned(),
    };
    for pod_spec in POD_SPEC_PATHS {
        let pod_steps: Vec<Step> = pod_spec.iter().map(|k| Step::Key((*k).into())).collect();
        let Some(pod) = get(object, &pod_steps) else {
            continue;
        };
        let lists: Vec<(&str, &Vec<Value>)> = CONTAINER_LISTS
            .iter()
            .filter_map(|list| Some((*list, pod.get(*list)?.as_sequence()?)))
            .collect();
        if lists.is_empty() {
            continue;
        }
        let mut matches = Vec::new();
        for (list, containers) in lists {
            for (index, c) in containers.iter().enumerate() {
                if c.get("name").and_then(Value::as_str) == Some(container) {
                    matches.push((list, index));
                }
            }
        }
        return match matches.as_slice() {
            [(list, index)] => {
                let mut steps = pod_steps;
                steps.push(Step::Key((*list).into()));
                steps.push(Step::Index(*index));
                steps.push(Step::Key("image".into()));
                Ok(steps)
            }
            [] => Err(not_found()),
            _ => Err(EditError::AmbiguousContainer {
                target: target.clone(),
                container: container.to_owned(),
                count: matches.len(),
            }),
        };
    }
    Err(not_found())
}

// ---- the syntax tree ----

fn is_content(kind: K) -> bool {
    matches!(
        kind,
        K::SCALAR | K::MAPPING | K::SEQUENCE | K::ALIAS | K::TAGGED_NODE
    )
}

/// The first content node below a document, value, sequence entry, key or tagged node.
fn content_of(holder: &Node) -> Option<Node> {
    holder.children().find(|n| is_content(n.kind()))
}

/// Follows aliases to their anchored node and tags to the node they tag.
fn resolve(mut node: Node, document: &Node) -> Option<Node> {
    for _ in 0..MAX_INDIRECTIONS {
        node = match node.kind() {
            K::ALIAS => anchored(&node, document)?,
            K::TAGGED_NODE => content_of(&node)?,
            _ => return Some(node),
        };
    }
    None
}

/// The node carrying the anchor an alias names: the last `&name` before the alias.
fn anchored(alias: &Node, document: &Node) -> Option<Node> {
    let name = alias.text().to_string();
    let name = name.trim().strip_prefix('*')?;
    let anchor = document
        .descendants_with_tokens()
        .filter_map(NodeOrToken::into_token)
        .filter(|t| {
            t.kind() == K::ANCHOR
                && t.text().strip_prefix('&') == Some(name)
                && t.text_range().start() < alias.text_range().start()
        })
        .last()?;
    let mut next = anchor.next_sibling_or_token();
    while let Some(element) = next {
        match element {
            NodeOrToken::Node(node) if is_content(node.kind()) => return Some(node),
            NodeOrToken::Node(_) => return None,
            NodeOrToken::Token(token) => next = token.next_sibling_or_token(),
        }
    }
    None
}

/// A key as the string it means (`"image"` and `image` are the same key).
fn key_text(key: &Node) -> Option<String> {
    let scalar = content_of(key)?;
    let text = scalar.text().to_string();
    let text = text.trim();
    if text.starts_with(['"', '\'']) {
        serde_yaml::from_str::<String>(text).ok()
    } else {
        Some(text.to_owned())
    }
}

/// The value of `key` in `mapping`, following merge keys when it is not there itself.
/// `Ok(None)` when the key is absent, `Err(())` when it is there without a value.
fn mapping_get(
    mapping: &Node,
    key: &str,
    document: &Node,
    depth: usize,
) -> Result<Option<Node>, ()> {
    if mapping.kind() != K::MAPPING || depth > MAX_INDIRECTIONS {
        return Ok(None);
    }
    let entries: Vec<Node> = mapping
        .children()
        .filter(|n| n.kind() == K::MAPPING_ENTRY)
        .collect();
    let key_of = |entry: &Node| entry.children().find(|n| n.kind() == K::KEY);
    let value_of = |entry: &Node| {
        entry
            .children()
            .find(|n| n.kind() == K::VALUE)
            .and_then(|v| content_of(&v))
            .and_then(|c| resolve(c, document))
    };
    for entry in &entries {
        if key_of(entry).and_then(|k| key_text(&k)).as_deref() == Some(key) {
            return value_of(entry).map(Some).ok_or(());
        }
    }
    for entry in &entries {
        if key_of(entry).and_then(|k| key_text(&k)).as_deref() != Some("<<") {
            continue;
        }
        let Some(merge) = value_of(entry) else {
            continue;
        };
        let sources = match merge.kind() {
            K::SEQUENCE => merge
                .children()
                .filter(|n| n.kind() == K::SEQUENCE_ENTRY)
                .filter_map(|e| content_of(&e).and_then(|c| resolve(c, document)))
                .collect(),
            _ => vec![merge],
        };
        for source in sources {
            if let Some(found) = mapping_get(&source, key, document, depth + 1)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// The scalar node at `steps` in `document`.
fn locate(document: &Node, steps: &[Step], target: &Target) -> Result<Node, EditError> {
    let not_found = |upto: usize| EditError::PathNotFound {
        target: target.clone(),
        path: show(&steps[..upto]),
    };
    let unsupported = |reason| EditError::Unsupported {
        target: target.clone(),
        path: show(steps),
        reason,
    };
    let mut node = content_of(document)
        .and_then(|c| resolve(c, document))
        .ok_or_else(|| not_found(0))?;
    for (i, step) in steps.iter().enumerate() {
        node = match step {
            Step::Key(key) => match mapping_get(&node, key, document, 0) {
                Ok(Some(next)) => next,
                Ok(None) => return Err(not_found(i + 1)),
                Err(()) if i + 1 == steps.len() => return Err(unsupported("it has no value")),
                Err(()) => return Err(not_found(i + 1)),
            },
            Step::Index(index) => node
                .children()
                .filter(|n| node.kind() == K::SEQUENCE && n.kind() == K::SEQUENCE_ENTRY)
                .nth(*index)
                .and_then(|e| content_of(&e))
                .and_then(|c| resolve(c, document))
                .ok_or_else(|| not_found(i + 1))?,
        };
    }
    if node.kind() != K::SCALAR {
        return Err(unsupported("it is not a scalar"));
    }
    Ok(node)
}

/// How a scalar is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Double,
    Single,
}

/// The replacement for `scalar` so that it reads `new`, or `None` when it already does.
///
/// The scalar's extent is measured in `src` from the node's start rather than taken from the
/// node's end, and the bytes found must read as `old` (the value the YAML parser saw at that
/// path): the syntax tree locates the scalar, the source text bounds it.
fn plan_edit(
    src: &str,
    scalar: &Node,
    old: &Value,
    new: &str,
    steps: &[Step],
    target: &Target,
) -> Result<Option<Edit>, EditError> {
    let unsupported = |reason| EditError::Unsupported {
        target: target.clone(),
        path: show(steps),
        reason,
    };
    let start = usize::from(scalar.text_range().start());
    let flow = in_flow(scalar);
    let rest = src.get(start..).unwrap_or_default();
    let style = match rest.chars().next() {
        Some('"') => Style::Double,
        Some('\'') => Style::Single,
        Some('|' | '>') => return Err(unsupported("it is a block scalar")),
        Some(_) => Style::Plain,
        None => return Err(unsupported("it is empty")),
    };
    let Some(len) = scalar_len(rest, style, flow) else {
        return Err(unsupported("it spans lines"));
    };
    let text = &rest[..len];
    let decoded = serde_yaml::from_str::<Value>(text).ok();
    let reads_as_old =
        decoded.as_ref() == Some(old) || (style == Style::Plain && old.as_str() == Some(text));
    if !reads_as_old {
        return Err(unsupported(
            "its text does not match its value (a multi-line scalar?)",
        ));
    }
    if decoded == Some(Value::String(new.to_owned())) || old.as_str() == Some(new) {
        return Ok(None);
    }
    Ok(Some(Edit {
        range: start..start + len,
        text: render(new, style, flow),
    }))
}

/// The length in bytes of the one-line scalar at the start of `text`, `None` when it does not
/// end on its line (a multi-line quoted scalar).
fn scalar_len(text: &str, style: Style, in_flow: bool) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    match style {
        Style::Double => {
            chars.next();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => return Some(i + 1),
                    '\n' | '\r' => return None,
                    _ => {}
                }
            }
            None
        }
        Style::Single => {
            chars.next();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\'' if chars.peek().map(|(_, n)| *n) == Some('\'') => {
                        chars.next();
                    }
                    '\'' => return Some(i + 1),
                    '\n' | '\r' => return None,
                    _ => {}
                }
            }
            None
        }
        Style::Plain => {
            let mut end = text.len();
            let mut previous = ' ';
            while let Some((i, c)) = chars.next() {
                let next = chars.peek().map_or(' ', |(_, n)| *n);
                let ends = match c {
                    '\n' | '\r' => true,
                    '#' => previous.is_whitespace(),
                    ':' => next.is_whitespace() || (in_flow && ",[]{}".contains(next)),
                    ',' | '[' | ']' | '{' | '}' => in_flow,
                    _ => false,
                };
                if ends {
                    end = i;
                    break;
                }
                previous = c;
            }
            Some(text[..end].trim_end_matches([' ', '\t']).len())
        }
    }
}

/// Whether a node sits inside a flow mapping or sequence (`{…}`, `[…]`).
fn in_flow(node: &Node) -> bool {
    node.ancestors().any(|a| {
        matches!(a.kind(), K::MAPPING | K::SEQUENCE)
            && a.children_with_tokens()
                .any(|c| matches!(c.kind(), K::LEFT_BRACE | K::LEFT_BRACKET))
    })
}

/// `value` written in `style`; a plain scalar that would not read back as this string becomes
/// double-quoted.
fn render(value: &str, style: Style, in_flow: bool) -> String {
    match style {
        Style::Plain if plain_is_safe(value, in_flow) => value.to_owned(),
        Style::Single if !value.chars().any(char::is_control) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        _ => double_quoted(value),
    }
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` written plain reads back as this string, in YAML 1.2 (our parser) and in
/// YAML 1.1 as Kubernetes and Helm read it (`sigs.k8s.io/yaml`: `yes`, `on`, `0x1F` are not strings).
fn plain_is_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if value.trim() != value
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || value.contains(": ")
        || value.contains(" #")
        || value.ends_with(':')
        || value.chars().any(char::is_control)
        || (in_flow && value.contains([',', '[', ']', '{', '}']))
        || yaml11_non_string(value)
    {
        return false;
    }
    matches!(serde_yaml::from_str::<Value>(value), Ok(Value::String(s)) if s == value)
}

/// Plain scalars YAML 1.1 (go-yaml v2) resolves to a bool, null, integer or float.
fn yaml11_non_string(value: &str) -> bool {
    const WORDS: [&str; 27] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", "",
    ];
    if WORDS.contains(&value) {
        return true;
    }
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let all = |s: &str, f: fn(char) -> bool| !s.is_empty() && s.chars().all(f);
    let digits = |s: &str| all(s, |c| c.is_ascii_digit() || c == '_');
    if [".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"].contains(&unsigned) {
        return true;
    }
    if let Some(rest) = unsigned.strip_prefix("0x") {
        return all(rest, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if let Some(rest) = unsigned.strip_prefix("0b") {
        return all(rest, |c| c == '0' || c == '1' || c == '_');
    }
    if let Some(rest) = unsigned.strip_prefix("0o") {
        return all(rest, |c| c.is_digit(8) || c == '_');
    }
    // Integers and floats: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, with `_`.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    let mantissa_ok = match mantissa.split_once('.') {
        None => digits(mantissa),
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
    };
    mantissa_ok && exponent_ok
}

// ---- verification ----

/// Checks that `result` means `old` with exactly the planned changes in the target document.
fn verify(
    old: &[Value],
    result: &str,
    target_position: usize,
    planned: &[(Vec<Step>, String)],
) -> Result<(), EditError> {
    let fail = |reason: String| EditError::Verify { reason };
    let new =
        parse_all(result).map_err(|e| fail(format!("the edited file does not parse: {e}")))?;
    if new.len() != old.len() {
        return Err(fail(format!(
            "the edited file has {} documents instead of {}",
            new.len(),
            old.len()
        )));
    }
    let (Some(old_target), Some(new_target)) = (old.get(target_position), new.get(target_position))
    else {
        return Err(fail("the target document is missing".into()));
    };
    for (index, (before, after)) in old.iter().zip(&new).enumerate() {
        if index != target_position && before != after {
            return Err(fail(format!("document {} changed", index + 1)));
        }
    }
    let mut allowed = Vec::new();
    for (steps, value) in planned {
        let before = get(old_target, steps)
            .ok_or_else(|| fail(format!("{} was not in the original", show(steps))))?;
        allowed.push((before.clone(), Value::String(value.clone())));
    }
    let mut path = Vec::new();
    same_but_allowed(old_target, new_target, &allowed, &mut path)
        .map_err(|at| fail(format!("{} changed unexpectedly", show(&at))))?;
    for (steps, value) in planned {
        if get(new_target, steps).and_then(Value::as_str) != Some(value.as_str()) {
            return Err(fail(format!("{} does not hold the new value", show(steps))));
        }
    }
    Ok(())
}

/// `old` and `new` have the same shape, and every leaf that differs changed as one of the
/// `allowed` (before, after) pairs. On failure, the path where they differ.
fn same_but_allowed(
    old: &Value,
    new: &Value,
    allowed: &[(Value, Value)],
    path: &mut Vec<Step>,
) -> Result<(), Vec<Step>> {
    if old == new {
        return Ok(());
    }
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            if a.len() != b.len() {
                return Err(path.clone());
            }
            for (key, before) in a {
                let after = b.get(key).ok_or_else(|| path.clone())?;
                path.push(Step::Key(
                    key.as_str()
                        .map_or_else(|| format!("{key:?}"), str::to_owned),
                ));
                same_but_allowed(before, after, allowed, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            if a.len() != b.len() {
                return Err(path.clone());
            }
            for (index, (before, after)) in a.iter().zip(b).enumerate() {
                path.push(Step::Index(index));
                same_but_allowed(before, after, allowed, path)?;
                path.pop();
            }
            Ok(())
        }
        _ if allowed.iter().any(|(a, b)| a == old && b == new) => Ok(()),
        _ => Err(path.clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn plain_values_that_would_read_as_something_else_are_quoted() {
        for value in [
            "1.0", "10", "1e3", "-1", ".5", "0x1F", "0o17", "yes", "No", "on", "OFF", "y", "null",
            "~", "true", "1_000", ".inf", "-.NaN", "",
        ] {
            assert!(!plain_is_safe(value, false), "{value:?} must be quoted");
            assert_eq!(render(value, Style::Plain, false), format!("\"{value}\""));
        }
        for value in [
            "1.2.3",
            "v1.0",
            "dev-abc",
            "repo/app:1.0",
            "127.0.0.1:5000/app:1.0",
            "app@sha256:0123abcd",
            "1.0-rc1",
            "20240101-abc",
            "latest",
        ] {
            assert!(plain_is_safe(value, false), "{value:?} can stay plain");
            assert_eq!(render(value, Style::Plain, true), value);
        }
    }

    #[test]
    fn plain_values_with_indicators_are_quoted() {
        for value in ["a: b", "a #b", "-x", "*x", "&x", "!x", "x:", " x", "x "] {
            assert!(!plain_is_safe(value, false), "{value:?}");
        }
        assert!(plain_is_safe("a,b", false));
        assert!(!plain_is_safe("a,b", true));
    }

    #[test]
    fn quoted_styles_are_kept_and_escaped() {
        assert_eq!(render("a\"b\\c", Style::Double, false), r#""a\"b\\c""#);
        assert_eq!(render("it's", Style::Single, false), "'it''s'");
        assert_eq!(render("1.0", Style::Single, false), "'1.0'");
        assert_eq!(
            render("tab\there", Style::Single, false),
            "\"tab\\u0009here\""
        );
    }

    #[test]
    fn yaml11_numbers_and_words_are_recognised() {
        for value in ["0", "+12", "1.", "1.5e-3", "3E4", "1_0.0_1", "0b101", "Y"] {
            assert!(yaml11_non_string(value), "{value}");
        }
        for value in [
            "1.2.3", "1e", "e3", "0xg", "1-2", "abc", "v1", "1.0a", ".", "+",
        ] {
            assert!(!yaml11_non_string(value), "{value}");
        }
    }

    #[test]
    fn scalar_extents_are_measured_on_their_line() {
        let len = |text: &str, style, flow| scalar_len(text, style, flow);
        assert_eq!(len("org/app:1.0 # c\n", Style::Plain, false), Some(11));
        assert_eq!(len("org/app:1.0\t# c", Style::Plain, false), Some(11));
        assert_eq!(len("org/app:1.0\r\nnext", Style::Plain, false), Some(11));
        assert_eq!(len("org/app:1.0", Style::Plain, false), Some(11));
        assert_eq!(len("a#b c", Style::Plain, false), Some(5));
        assert_eq!(len("org/app:1.0}, {x: y}", Style::Plain, true), Some(11));
        assert_eq!(len("org/app:1.0, b", Style::Plain, false), Some(14));
        assert_eq!(len("key: value", Style::Plain, false), Some(3));
        assert_eq!(len(r#""a\"b" # c"#, Style::Double, false), Some(6));
        assert_eq!(len("'it''s' x", Style::Single, false), Some(7));
        assert_eq!(len("\"open\n", Style::Double, false), None);
        assert_eq!(len("'open", Style::Single, false), None);
    }

    #[test]
    fn paths_are_shown_dotted_with_indexes() {
        let steps = [
            Step::Key("spec".into()),
            Step::Key("containers".into()),
            Step::Index(2),
            Step::Key("image".into()),
        ];
        assert_eq!(show(&steps), "spec.containers[2].image");
    }

    #[test]
    fn verification_allows_only_the_planned_leaves_to_change() {
        let old: Value = serde_yaml::from_str("a: {b: x, c: [x, y]}\nd: x").unwrap();
        let new: Value = serde_yaml::from_str("a: {b: z, c: [z, y]}\nd: x").unwrap();
        let allowed = [(Value::from("x"), Value::from("z"))];
        assert!(same_but_allowed(&old, &new, &allowed, &mut Vec::new()).is_ok());
        let wrong: Value = serde_yaml::from_str("a: {b: z, c: [x, q]}\nd: x").unwrap();
        let at = same_but_allowed(&old, &wrong, &allowed, &mut Vec::new()).unwrap_err();
        assert_eq!(show(&at), "a.c[1]");
        let reshaped: Value = serde_yaml::from_str("a: {b: z}\nd: x").unwrap();
        assert!(same_but_allowed(&old, &reshaped, &allowed, &mut Vec::new()).is_err());
    }

    fn deployment() -> &'static str {
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: repo/app:1.0 # keep\n"
    }

    fn target(kind: &str, name: &str) -> Target {
        Target {
            kind: kind.into(),
            name: name.into(),
            namespace: None,
        }
    }

    #[test]
    fn a_container_image_is_replaced_in_place() {
        let out = update_images(
            deployment(),
            "default",
            &target("Deployment", "app"),
            &[ImageChange::Container {
                container: "app".into(),
                image: "repo/app:1.1".into(),
            }],
        )
        .unwrap();
        assert_eq!(out, deployment().replace("app:1.0", "app:1.1"));
    }

    #[test]
    fn errors_name_what_was_missing() {
        let change = |c: &str| ImageChange::Container {
            container: c.into(),
            image: "x:1".into(),
        };
        let err = update_images(
            deployment(),
            "default",
            &target("Deployment", "nope"),
            &[change("app")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to find Deployment nope in the file"
        );
        let err = update_images(
            deployment(),
            "default",
            &target("Deployment", "app"),
            &[change("sidecar")],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::ContainerNotFound { .. }), "{err}");
        let err = update_images(
            deployment(),
            "default",
            &Target {
                namespace: Some("other".into()),
                ..target("Deployment", "app")
            },
            &[change("app")],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::TargetNotFound { .. }), "{err}");
        let twice = deployment().replace(
            "      containers:",
            "      initContainers:\n      - {name: app, image: x:1}\n      containers:",
        );
        let err = update_images(
            &twice,
            "default",
            &target("Deployment", "app"),
            &[change("app")],
        )
        .unwrap_err();
        assert!(
            matches!(err, EditError::AmbiguousContainer { count: 2, .. }),
            "{err}"
        );
        let err = update_images("a: [", "default", &target("Deployment", "app"), &[]).unwrap_err();
        assert!(matches!(err, EditError::Parse { .. }), "{err}");
        let err = update_images(
            "kind: HelmRelease\nmetadata: {name: r}\nspec:\n  values:\n    image: |\n      x:1\n",
            "default",
            &target("HelmRelease", "r"),
            &[ImageChange::Value {
                path: ValuePath::new(["image"]),
                value: "x:2".into(),
            }],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::Unsupported { .. }), "{err}");
        let err = update_images(
            "kind: HelmRelease\nmetadata: {name: r}\nspec:\n  values:\n    image: x:1\n",
            "default",
            &target("HelmRelease", "r"),
            &[ImageChange::Value {
                path: ValuePath::new(["app", "image"]),
                value: "x:2".into(),
            }],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to find spec.values.app in HelmRelease r"
        );
    }

    #[test]
    fn a_model_tag_update_becomes_a_value_change() {
        let src = "kind: HelmRelease\nmetadata: {name: r}\nspec:\n  values:\n    image: {repository: org/app, tag: '1.0'}\n";
        let update = ValueUpdate {
            path: ValuePath::new(["image", "tag"]),
            value: "1.1".into(),
        };
        let out = update_images(
            src,
            "default",
            &target("HelmRelease", "r"),
            &[update.into()],
        )
        .unwrap();
        assert_eq!(out, src.replace("'1.0'", "'1.1'"));
    }

    #[test]
    fn a_plain_scalar_folded_over_lines_is_not_cut() {
        let src = "kind: HelmRelease\nmetadata: {name: r}\nspec:\n  values:\n    image: org/app:1.0\n      -extra\n";
        let err = update_images(
            src,
            "default",
            &target("HelmRelease", "r"),
            &[ImageChange::Value {
                path: ValuePath::new(["image"]),
                value: "org/app:1.1".into(),
            }],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn two_aliases_of_one_anchor_with_different_values_conflict() {
        let src = "kind: HelmRelease\nmetadata: {name: r}\nspec:\n  values:\n    a: {image: &i x:1}\n    b: {image: *i}\n";
        let change = |path: &str, value: &str| ImageChange::Value {
            path: ValuePath::from_dotted(path),
            value: value.into(),
        };
        let err = update_images(
            src,
            "default",
            &target("HelmRelease", "r"),
            &[change("a.image", "x:2"), change("b.image", "x:3")],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::Conflict { .. }), "{err}");
        let out = update_images(
            src,
            "default",
            &target("HelmRelease", "r"),
            &[change("a.image", "x:2"), change("b.image", "x:2")],
        )
        .unwrap();
        assert_eq!(out, src.replace("&i x:1", "&i x:2"));
    }
}

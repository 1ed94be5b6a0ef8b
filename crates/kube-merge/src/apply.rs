//! Server-side apply and `metadata.managedFields` bookkeeping, after kube-apiserver's
//! structured-merge-diff (SMD).
//!
//! [`server_side_apply`] merges an applied configuration into the live object, removes the
//! fields the manager applied last time and no longer applies (unless someone else owns them),
//! reports conflicts with fields other managers own, and rewrites the manager's `Apply` entry.
//! [`record_update`] does the bookkeeping of every other write (create, update, patch): the
//! writer's `Update` entry takes over the fields it changed.
//!
//! Field sets use the `FieldsV1` format: `f:<field>` for map fields, `k:<key fields as JSON>` for
//! elements of keyed lists, `v:<value as JSON>` for elements of sets, `".": {}` marking a node
//! that is owned itself, `{}` for leaves (scalars, atomic lists, empty maps).
//! Keyed lists and sets merge in SMD's order: shared elements in applied order, live-only
//! elements where they were, new elements at their applied position (so applying `[new, app]`
//! over `[app, sidecar]` gives `[new, app, sidecar]`).
//!
//! Deliberately not done: managers are not converted between API versions (a field set is read
//! as if recorded at the version of the request); no schema validation or defaulting of the
//! applied configuration beyond `protocol: TCP` in list keys; explicit `null`s in the applied
//! configuration are dropped (as decoding into typed objects does) instead of being owned; no
//! unions; no `Update`-entry cap (`ancient-changes`); the `kubectl.kubernetes.io/last-applied-
//! configuration` upgrade path of kube-apiserver (conflicts forgiven for client-side-applied
//! fields, annotation kept in sync for manager `kubectl`) is not emulated. Pruning a parent map
//! only when it became empty is gentler than SMD, which drops a parent (with its unowned fields)
//! that nobody owns anything in any more.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::json_patch::values_equal;
use crate::{ListType, MergeRules};

/// Manager that kube-apiserver credits with the existing fields of an object first applied to
/// while it had no managed fields.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// `metadata` fields that are never tracked nor merged from an applied configuration.
const UNTRACKED_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// One server-side apply request.
#[derive(Clone, Copy)]
pub struct ApplyRequest<'a> {
    /// The current stored object; `None` when the apply creates it.
    pub live: Option<&'a Value>,
    /// The applied configuration (already parsed from YAML or JSON); must be a JSON object.
    pub applied: &'a Value,
    /// The `fieldManager` (the caller guarantees it is not empty).
    pub manager: &'a str,
    /// Whether conflicts are overridden (`force=true`): the manager takes the fields over.
    pub force: bool,
    /// API version recorded in the manager's `managedFields` entry.
    pub api_version: &'a str,
    /// `Some("status")` for applies to `/status`.
    pub subresource: Option<&'a str>,
    /// RFC 3339 timestamp recorded as the entry's `time`.
    pub now: &'a str,
    /// List types of the kind.
    pub rules: &'a dyn MergeRules,
}

/// A field the applied configuration sets to another value than the live one while another
/// manager owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager owning the field.
    pub manager: String,
    /// The operation of that manager's entry: `Apply` or `Update`.
    pub operation: String,
    /// The API version of that manager's entry.
    pub api_version: String,
    /// The subresource of that manager's entry, if any.
    pub subresource: Option<String>,
    /// The field, in SMD path syntax: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="app"].image`.
    pub field: String,
}

impl Conflict {
    /// The manager as kube-apiserver prints it: `"helm"` for an applier,
    /// `"kubectl-client-side-apply" using apps/v1` for an updater, with
    /// ` with subresource "status"` after the name for subresource entries.
    #[must_use]
    pub fn manager_description(&self) -> String {
        let mut text = quote(&self.manager);
        if let Some(sub) = &self.subresource {
            text.push_str(" with subresource ");
            text.push_str(&quote(sub));
        }
        if self.operation == "Update" {
            text.push_str(" using ");
            text.push_str(&self.api_version);
        }
        text
    }

    /// The message of the `FieldManagerConflict` status cause kube-apiserver reports for this
    /// conflict (its `field` is [`Conflict::field`]).
    #[must_use]
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

/// Why a server-side apply was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409); sorted by field.
    #[error("{}", conflicts_summary(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be applied (HTTP 422 / 400).
    #[error("invalid apply configuration: {reason}")]
    Invalid {
        /// What is wrong, naming the offending input.
        reason: String,
    },
}

impl ApplyError {
    /// The `message` kube-apiserver puts in its `Status`, e.g.
    /// `Apply failed with 1 conflict: conflict with "helm": .spec.replicas`; with several
    /// conflicts, one `conflicts with <manager>:` line per manager followed by `- <field>` lines.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::Conflicts(conflicts) => conflicts_message(conflicts),
            Self::Invalid { reason } => reason.clone(),
        }
    }
}

/// Applies `req.applied` for `req.manager` and returns the new object, `managedFields`
/// included. Bookkeeping other than `managedFields` (`resourceVersion`, `generation`, `uid`,
/// timestamps) is left to the caller.
///
/// # Errors
///
/// [`ApplyError::Conflicts`] when fields owned by other managers would change and `force` is
/// false; [`ApplyError::Invalid`] when the applied configuration is not an object, sets
/// `metadata.managedFields`, or repeats a key in a keyed list.
pub fn server_side_apply(req: &ApplyRequest<'_>) -> Result<Value, ApplyError> {
    let ctx = Ctx {
        rules: req.rules,
        subresource: req.subresource,
    };
    if !req.applied.is_object() {
        return Err(invalid(format!(
            "apply configuration must be a JSON object, got {}",
            excerpt(req.applied)
        )));
    }
    if let Some(mf) = req
        .applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        && !mf.is_null()
    {
        return Err(invalid(format!(
            "metadata.managedFields must be nil, got {}",
            excerpt(mf)
        )));
    }
    let mut applied = req.applied.clone();
    normalize(&ctx, &mut applied, &mut Vec::new());
    let new_set = applied_set(&ctx, &applied, &mut Vec::new())?;

    let mut obj = match req.live {
        Some(live) if live.is_object() => live.clone(),
        Some(live) => {
            return Err(invalid(format!(
                "live object must be a JSON object, got {}",
                excerpt(live)
            )));
        }
        None => identity_of(&applied),
    };
    let mut entries = parse_entries(&obj);
    if req.live.is_some() && entries.is_empty() {
        let set = diff_set(&ctx, None, &obj, &mut Vec::new());
        if !set.is_empty() {
            entries.push(Entry {
                manager: BEFORE_FIRST_APPLY.to_owned(),
                operation: "Update".to_owned(),
                api_version: req.api_version.to_owned(),
                time: Some(Value::from(req.now)),
                set,
                subresource: req.subresource.map(str::to_owned),
            });
        }
    }
    let mine = entries.iter().position(|e| {
        e.manager == req.manager
            && e.operation == "Apply"
            && e.subresource.as_deref() == req.subresource
    });

    // Conflicts: applied leaves whose value changes while another entry owns them.
    let mut changed = Vec::new();
    changed_paths(
        &ctx,
        &new_set,
        &applied,
        Some(&obj),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut changed,
    );
    let mut taken = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if Some(i) == mine || entry.subresource.as_deref() != req.subresource {
            continue;
        }
        for path in &changed {
            if entry.set.contains(path) {
                taken.push((i, path));
            }
        }
    }
    if !taken.is_empty() && !req.force {
        let mut conflicts: Vec<Conflict> = taken
            .iter()
            .map(|&(i, path)| {
                let e = &entries[i];
                Conflict {
                    manager: e.manager.clone(),
                    operation: e.operation.clone(),
                    api_version: e.api_version.clone(),
                    subresource: e.subresource.clone(),
                    field: display_path(path),
                }
            })
            .collect();
        conflicts.sort_by(|a, b| {
            (&a.field, &a.manager, &a.operation).cmp(&(&b.field, &b.manager, &b.operation))
        });
        return Err(ApplyError::Conflicts(conflicts));
    }
    for &(i, path) in &taken {
        if let Some(entry) = entries.get_mut(i) {
            entry.set.remove(path);
        }
    }

    merge(&ctx, &mut obj, &applied, &mut Vec::new());

    if let Some(last) = mine.and_then(|i| entries.get(i)).map(|e| e.set.clone()) {
        let mut keep = new_set.clone();
        for (i, entry) in entries.iter().enumerate() {
            if Some(i) != mine {
                keep.union_with(&entry.set);
            }
        }
        prune(&ctx, &mut obj, &last, Some(&keep), &mut Vec::new(), &[]);
    }

    let entry = Entry {
        manager: req.manager.to_owned(),
        operation: "Apply".to_owned(),
        api_version: req.api_version.to_owned(),
        time: Some(Value::from(req.now)),
        set: new_set,
        subresource: req.subresource.map(str::to_owned),
    };
    match mine.and_then(|i| entries.get_mut(i)) {
        Some(slot) => *slot = entry,
        None => entries.push(entry),
    }
    finish_entries(&ctx, &mut obj, entries);
    Ok(obj)
}

/// Records a non-apply write (create, update, patch) of `manager` in
/// `new["metadata"]["managedFields"]`: the fields of `new` that differ from `old` (all of them
/// when `old` is `None`) move to the manager's `Update` entry for `api_version` and
/// `subresource`, and fields gone from `new` are dropped from every entry.
///
/// A write whose `metadata.managedFields` is `[{}]` (the documented reset) strips
/// `managedFields`. A main-resource write that carries its own non-empty `managedFields` is
/// recorded on top of those (clients may edit them); otherwise on top of `old`'s.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
    rules: &dyn MergeRules,
) {
    let ctx = Ctx { rules, subresource };
    if !new.is_object() {
        return;
    }
    let requested = new.get("metadata").and_then(|m| m.get("managedFields"));
    if subresource.is_none()
        && let Some(Value::Array(list)) = requested
        && !list.is_empty()
        && list
            .iter()
            .all(|e| e.as_object().is_some_and(Map::is_empty))
    {
        finish_entries(&ctx, new, Vec::new());
        return;
    }
    let mut entries = if subresource.is_none() {
        parse_entries(new)
    } else {
        Vec::new()
    };
    if entries.is_empty() {
        entries = old.map(parse_entries).unwrap_or_default();
    }

    let changed = diff_set(&ctx, old, new, &mut Vec::new());
    if !changed.is_empty() {
        for entry in &mut entries {
            entry.set = entry.set.difference(&changed);
        }
        let mine = entries.iter_mut().find(|e| {
            e.manager == manager
                && e.operation == "Update"
                && e.api_version == api_version
                && e.subresource.as_deref() == subresource
        });
        match mine {
            Some(entry) => {
                entry.set.union_with(&changed);
                entry.time = Some(Value::from(now));
            }
            None => entries.push(Entry {
                manager: manager.to_owned(),
                operation: "Update".to_owned(),
                api_version: api_version.to_owned(),
                time: Some(Value::from(now)),
                set: changed,
                subresource: subresource.map(str::to_owned),
            }),
        }
    }
    finish_entries(&ctx, new, entries);
}

// ----------------------------------------------------------------------------------------------
// Field sets.

/// A set of field paths, as a tree keyed by `FieldsV1` path elements (`f:`, `k:`, `v:`, `i:`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldSet {
    /// Whether the path leading here is itself in the set.
    member: bool,
    /// Longer paths, by their next element; never holds an empty set.
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn leaf() -> Self {
        Self {
            member: true,
            children: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `child` under `pe`, unless it is empty (moved in when `pe` is new, not copied).
    fn insert_child(&mut self, pe: String, child: Self) {
        if child.is_empty() {
            return;
        }
        match self.children.entry(pe) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(child);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                slot.get_mut().union_with(&child);
            }
        }
    }

    fn union_with(&mut self, other: &Self) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_with(child);
        }
    }

    /// The paths of `self` that are not in `other`.
    fn difference(&self, other: &Self) -> Self {
        let mut out = Self {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            out.insert_child(pe.clone(), rest);
        }
        out
    }

    fn contains(&self, path: &[String]) -> bool {
        match path {
            [] => self.member,
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    fn remove(&mut self, path: &[String]) {
        match path {
            [] => self.member = false,
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Reads a `fieldsV1` object; path elements are re-encoded canonically.
    fn from_fields_v1(value: &Value) -> Self {
        let mut set = Self::default();
        if let Some(map) = value.as_object() {
            for (pe, sub) in map {
                if pe == "." {
                    set.member = true;
                    continue;
                }
                let mut child = Self::from_fields_v1(sub);
                if sub.as_object().is_none_or(Map::is_empty) {
                    child.member = true;
                }
                set.insert_child(canonical_pe(pe), child);
            }
        }
        set
    }

    fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            map.insert(pe.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<Value>,
    set: FieldSet,
    subresource: Option<String>,
}

impl Entry {
    fn from_json(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_default(),
            api_version: text("apiVersion").unwrap_or_default(),
            time: value.get("time").filter(|t| !t.is_null()).cloned(),
            set: FieldSet::from_fields_v1(value.get("fieldsV1")?),
            subresource: text("subresource").filter(|s| !s.is_empty()),
        })
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".to_owned(), Value::from(self.manager.as_str()));
        map.insert("operation".to_owned(), Value::from(self.operation.as_str()));
        map.insert(
            "apiVersion".to_owned(),
            Value::from(self.api_version.as_str()),
        );
        if let Some(time) = &self.time {
            map.insert("time".to_owned(), time.clone());
        }
        map.insert("fieldsType".to_owned(), Value::from("FieldsV1"));
        map.insert("fieldsV1".to_owned(), self.set.to_fields_v1());
        if let Some(sub) = &self.subresource {
            map.insert("subresource".to_owned(), Value::from(sub.as_str()));
        }
        Value::Object(map)
    }
}

fn parse_entries(obj: &Value) -> Vec<Entry> {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Drops fields gone from `obj` and empty entries, and writes the entries into `obj`.
fn finish_entries(ctx: &Ctx<'_>, obj: &mut Value, mut entries: Vec<Entry>) {
    for entry in &mut entries {
        entry.set = retain_existing(ctx, &entry.set, obj, &mut Vec::new());
    }
    entries.retain(|e| !e.set.is_empty());
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(
            "managedFields".to_owned(),
            Value::Array(entries.iter().map(Entry::to_json).collect()),
        );
    }
}

// ----------------------------------------------------------------------------------------------
// Walking objects.

/// What every walk needs: the kind's list types and which fields are tracked.
struct Ctx<'a> {
    rules: &'a dyn MergeRules,
    subresource: Option<&'a str>,
}

impl Ctx<'_> {
    fn list_type(&self, names: &[String]) -> ListType {
        let path: Vec<&str> = names.iter().map(String::as_str).collect();
        self.rules.list_type(&path)
    }

    /// Whether ownership of the field at `names` is recorded.
    fn tracked(&self, names: &[String]) -> bool {
        !is_system(names)
            && (names.first().is_none_or(|f| f != "status") || self.subresource == Some("status"))
    }

    /// The value under path element `pe` of `value`, which sits at `names`.
    fn child<'v>(&self, value: &'v Value, pe: &str, names: &[String]) -> Option<&'v Value> {
        if let Some(field) = pe.strip_prefix("f:") {
            return value.as_object()?.get(field);
        }
        let list = value.as_array()?;
        list.get(find_index(list, pe, &self.list_type(names))?)
    }
}

/// Fields never tracked nor taken from an applied configuration.
fn is_system(names: &[String]) -> bool {
    match names {
        [field] => field == "apiVersion" || field == "kind",
        [meta, field] => meta == "metadata" && UNTRACKED_METADATA.contains(&field.as_str()),
        _ => false,
    }
}

/// Whether a map at `names` can never be owned as a whole (the root, `metadata`).
fn never_member(names: &[String]) -> bool {
    names.is_empty() || (names.len() == 1 && names[0] == "metadata")
}

/// Pushes the field name of `pe` (if it is a field) and returns whether it did.
fn descend(names: &mut Vec<String>, pe: &str) -> bool {
    match pe.strip_prefix("f:") {
        Some(field) => {
            names.push(field.to_owned());
            true
        }
        None => false,
    }
}

/// Drops `null` members and repeated set values from an applied configuration.
fn normalize(ctx: &Ctx<'_>, value: &mut Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (key, child) in map.iter_mut() {
                names.push(key.clone());
                normalize(ctx, child, names);
                names.pop();
            }
        }
        Value::Array(items) => {
            if ctx.list_type(names) == ListType::Set {
                let mut seen = HashSet::new();
                items.retain(|item| seen.insert(canonical(item)));
            }
            for item in items.iter_mut() {
                normalize(ctx, item, names);
            }
        }
        _ => {}
    }
}

/// The field set of an applied configuration (SMD `ToFieldSet`).
fn applied_set(
    ctx: &Ctx<'_>,
    value: &Value,
    names: &mut Vec<String>,
) -> Result<FieldSet, ApplyError> {
    let mut set = FieldSet::default();
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                names.push(key.clone());
                if ctx.tracked(names) {
                    let sub = applied_set(ctx, child, names)?;
                    set.insert_child(format!("f:{key}"), sub);
                }
                names.pop();
            }
        }
        Value::Array(items) => match ctx.list_type(names) {
            ListType::Atomic => set.member = true,
            ListType::Set => {
                for item in items {
                    set.insert_child(format!("v:{}", canonical(item)), FieldSet::leaf());
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    let Some(key) = key_string(item, &keys) else {
                        return Err(invalid(format!(
                            "{}: element {} of a list keyed on {} is not an object",
                            display_names(names),
                            excerpt(item),
                            keys.join(",")
                        )));
                    };
                    let pe = format!("k:{key}");
                    if set.children.contains_key(&pe) {
                        return Err(invalid(format!(
                            "{}: duplicate entries for key {}",
                            display_names(names),
                            display_path(std::slice::from_ref(&pe))
                        )));
                    }
                    let mut sub = applied_set(ctx, item, names)?;
                    sub.member = true;
                    set.children.insert(pe, sub);
                }
            }
        },
        _ => set.member = true,
    }
    if never_member(names) {
        set.member = false;
    }
    Ok(set)
}

/// The tracked paths of `new` that are added or changed compared with `old` (SMD
/// `Compare`'s `Added` and `Modified`). A map or element that is new is owned as a whole too,
/// except the top-level `spec` and `status` (struct fields that always exist in Go).
fn diff_set(ctx: &Ctx<'_>, old: Option<&Value>, new: &Value, names: &mut Vec<String>) -> FieldSet {
    let mut set = FieldSet::default();
    match new {
        Value::Object(map) => {
            let old_map = old.and_then(Value::as_object);
            for (key, child) in map {
                names.push(key.clone());
                if ctx.tracked(names) {
                    let sub = diff_set(ctx, old_map.and_then(|m| m.get(key)), child, names);
                    set.insert_child(format!("f:{key}"), sub);
                }
                names.pop();
            }
            if old_map.is_none() {
                let top_struct = names.len() == 1
                    && (names[0] == "spec" || names[0] == "status")
                    && !map.is_empty();
                set.member = !top_struct;
            }
        }
        Value::Array(items) => {
            let old_items = old.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            match ctx.list_type(names) {
                ListType::Atomic => set.member = old.is_none_or(|o| !values_equal(o, new)),
                ListType::Set => {
                    for item in items {
                        if !old_items.iter().any(|o| values_equal(o, item)) {
                            set.insert_child(format!("v:{}", canonical(item)), FieldSet::leaf());
                        }
                    }
                }
                ListType::Map(keys) => {
                    for item in items {
                        let Some(key) = key_string(item, &keys) else {
                            continue;
                        };
                        let old_item = old_items
                            .iter()
                            .find(|o| key_string(o, &keys).as_deref() == Some(key.as_str()));
                        let mut sub = diff_set(ctx, old_item, item, names);
                        if old_item.is_none() {
                            sub.member = true;
                        }
                        set.insert_child(format!("k:{key}"), sub);
                    }
                }
            }
        }
        _ => set.member = old.is_none_or(|o| !values_equal(o, new)),
    }
    if never_member(names) {
        set.member = false;
    }
    set
}

/// Collects the member paths of `set` (built from `applied`) whose value is added or changed
/// compared with `live`.
fn changed_paths(
    ctx: &Ctx<'_>,
    set: &FieldSet,
    applied: &Value,
    live: Option<&Value>,
    names: &mut Vec<String>,
    path: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    for (pe, sub) in &set.children {
        let applied_child = ctx.child(applied, pe, names);
        let live_child = live.and_then(|l| ctx.child(l, pe, names));
        let pushed = descend(names, pe);
        path.push(pe.clone());
        if sub.member {
            let changed = match applied_child {
                _ if !pushed => live_child.is_none(),
                Some(Value::Object(map)) if map.is_empty() => {
                    !live_child.is_some_and(Value::is_object)
                }
                Some(a) => live_child.is_none_or(|l| !values_equal(a, l)),
                None => false,
            };
            if changed {
                out.push(path.clone());
            }
        }
        if let Some(applied_child) = applied_child
            && !sub.children.is_empty()
        {
            changed_paths(ctx, sub, applied_child, live_child, names, path, out);
        }
        path.pop();
        if pushed {
            names.pop();
        }
    }
}

/// Deep-merges `applied` into `live`: maps key by key, lists by their list type.
fn merge(ctx: &Ctx<'_>, live: &mut Value, applied: &Value, names: &mut Vec<String>) {
    match (live, applied) {
        (Value::Object(live_map), Value::Object(applied_map)) => {
            for (key, value) in applied_map {
                names.push(key.clone());
                if !is_system(names) {
                    match live_map.get_mut(key) {
                        Some(existing) => merge(ctx, existing, value, names),
                        None => {
                            live_map.insert(key.clone(), value.clone());
                        }
                    }
                }
                names.pop();
            }
        }
        (Value::Array(live_items), Value::Array(applied_items)) => {
            let list_type = ctx.list_type(names);
            if list_type == ListType::Atomic {
                live_items.clone_from(applied_items);
            } else {
                *live_items = merge_list(ctx, &list_type, live_items, applied_items, names);
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Merges a set or keyed list the way SMD orders it: shared elements in applied order, live-only
/// elements kept where they were, new elements at their applied position.
fn merge_list(
    ctx: &Ctx<'_>,
    list_type: &ListType,
    live: &[Value],
    applied: &[Value],
    names: &mut Vec<String>,
) -> Vec<Value> {
    let lhs: Vec<Option<String>> = live.iter().map(|v| element_pe(list_type, v)).collect();
    let rhs: Vec<Option<String>> = applied.iter().map(|v| element_pe(list_type, v)).collect();
    let in_rhs: HashSet<&str> = rhs.iter().flatten().map(String::as_str).collect();
    let mut first_lhs: HashMap<&str, usize> = HashMap::new();
    for (i, pe) in lhs.iter().enumerate() {
        if let Some(pe) = pe {
            first_lhs.entry(pe.as_str()).or_insert(i);
        }
    }
    let mut shared = rhs
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|pe| first_lhs.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(live.len().max(applied.len()));
    let (mut li, mut ri) = (0, 0);

    let merge_item =
        |live_item: Option<&Value>, applied_item: &Value, names: &mut Vec<String>| match (
            list_type, live_item,
        ) {
            (ListType::Map(_), Some(existing)) => {
                let mut item = existing.clone();
                merge(ctx, &mut item, applied_item, names);
                item
            }
            _ => applied_item.clone(),
        };

    while li < live.len() || ri < applied.len() {
        if li < live.len() && ri < applied.len() {
            if let (Some(l), Some(r)) = (&lhs[li], &rhs[ri])
                && l == r
            {
                merged.insert(r.as_str());
                let live_item = first_lhs.get(r.as_str()).and_then(|&i| live.get(i));
                out.push(merge_item(live_item, &applied[ri], names));
                li += 1;
                ri += 1;
                if next_shared == Some(r.as_str()) {
                    next_shared = shared.next();
                }
                continue;
            }
            if let Some(l) = &lhs[li]
                && in_rhs.contains(l.as_str())
                && next_shared.is_some_and(|n| n != l.as_str())
            {
                // A shared element that is not due yet: it is emitted in applied order.
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            match &lhs[li] {
                Some(l) if in_rhs.contains(l.as_str()) => {
                    if merged.contains(l.as_str()) {
                        li += 1;
                        continue;
                    }
                }
                _ => {
                    out.push(live[li].clone());
                    li += 1;
                    continue;
                }
            }
        }
        if ri < applied.len() {
            let r = rhs[ri].as_deref();
            let live_item = r.and_then(|r| first_lhs.get(r)).and_then(|&i| live.get(i));
            out.push(merge_item(live_item, &applied[ri], names));
            if let Some(r) = r {
                merged.insert(r);
                if next_shared == Some(r) {
                    next_shared = shared.next();
                }
            }
            ri += 1;
            continue;
        }
        // Unreachable in practice (every shared element is merged once the applied side is
        // done); step on so the loop always ends.
        li += 1;
    }
    out
}

/// Removes from `node` the paths of `last` (the manager's previous apply) that nobody in `keep`
/// owns, together with maps and lists that only held them. `protect` names key fields of a
/// list element that stays.
fn prune(
    ctx: &Ctx<'_>,
    node: &mut Value,
    last: &FieldSet,
    keep: Option<&FieldSet>,
    names: &mut Vec<String>,
    protect: &[String],
) {
    for (pe, last_child) in &last.children {
        let keep_child = keep.and_then(|k| k.children.get(pe));
        let owned = keep_child.is_some_and(|k| !k.is_empty());
        if let Some(field) = pe.strip_prefix("f:") {
            if protect.iter().any(|p| p == field) {
                continue;
            }
            let Some(map) = node.as_object_mut() else {
                continue;
            };
            if !owned && last_child.member {
                map.remove(field);
                continue;
            }
            let Some(child) = map.get_mut(field) else {
                continue;
            };
            let was_filled = is_filled(child);
            names.push(field.to_owned());
            prune(ctx, child, last_child, keep_child, names, &[]);
            names.pop();
            if was_filled && !is_filled(child) && !keep_child.is_some_and(|k| k.member) {
                map.remove(field);
            }
        } else {
            let list_type = ctx.list_type(names);
            let Some(list) = node.as_array_mut() else {
                continue;
            };
            let Some(index) = find_index(list, pe, &list_type) else {
                continue;
            };
            if !owned && last_child.member {
                list.remove(index);
                continue;
            }
            let keys = match &list_type {
                ListType::Map(keys) => keys.as_slice(),
                _ => &[],
            };
            if let Some(item) = list.get_mut(index) {
                prune(ctx, item, last_child, keep_child, names, keys);
            }
        }
    }
}

fn is_filled(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

/// The part of `set` whose paths exist in `value`.
fn retain_existing(
    ctx: &Ctx<'_>,
    set: &FieldSet,
    value: &Value,
    names: &mut Vec<String>,
) -> FieldSet {
    let mut out = FieldSet {
        member: set.member,
        children: BTreeMap::new(),
    };
    for (pe, sub) in &set.children {
        let Some(child) = ctx.child(value, pe, names) else {
            continue;
        };
        let pushed = descend(names, pe);
        let kept = retain_existing(ctx, sub, child, names);
        if pushed {
            names.pop();
        }
        out.insert_child(pe.clone(), kept);
    }
    out
}

/// The object an apply creates before merging: identity fields of the applied configuration.
fn identity_of(applied: &Value) -> Value {
    let mut obj = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = applied.get(key) {
            obj.insert(key.to_owned(), v.clone());
        }
    }
    let mut meta = Map::new();
    for key in ["name", "namespace"] {
        if let Some(v) = applied.get("metadata").and_then(|m| m.get(key)) {
            meta.insert(key.to_owned(), v.clone());
        }
    }
    obj.insert("metadata".to_owned(), Value::Object(meta));
    Value::Object(obj)
}

// ----------------------------------------------------------------------------------------------
// Path elements and values.

/// The path element of a list element: `v:<value>` in a set, `k:<keys>` in a keyed list.
fn element_pe(list_type: &ListType, value: &Value) -> Option<String> {
    match list_type {
        ListType::Set => Some(format!("v:{}", canonical(value))),
        ListType::Map(keys) => key_string(value, keys).map(|k| format!("k:{k}")),
        ListType::Atomic => None,
    }
}

/// The position in `list` of the element named by `pe`.
fn find_index(list: &[Value], pe: &str, list_type: &ListType) -> Option<usize> {
    if let Some(index) = pe.strip_prefix("i:") {
        let index: usize = index.parse().ok()?;
        return (index < list.len()).then_some(index);
    }
    if let Some(key) = pe.strip_prefix("k:") {
        let from_pe: Vec<String>;
        let keys = match list_type {
            ListType::Map(keys) => keys.as_slice(),
            _ => {
                from_pe = serde_json::from_str::<Map<String, Value>>(key)
                    .ok()?
                    .keys()
                    .cloned()
                    .collect();
                from_pe.as_slice()
            }
        };
        return list
            .iter()
            .position(|item| key_string(item, keys).as_deref() == Some(key));
    }
    let value = pe.strip_prefix("v:")?;
    list.iter().position(|item| canonical(item) == value)
}

/// The key fields of a keyed-list element as canonical JSON (sorted names, as SMD does); an
/// absent `protocol` key counts as `"TCP"`, the API default. `None` for non-objects.
fn key_string(item: &Value, keys: &[String]) -> Option<String> {
    let map = item.as_object()?;
    let mut fields: Vec<(&str, Value)> = keys
        .iter()
        .filter_map(|key| {
            let value = map.get(key).filter(|v| !v.is_null()).cloned();
            let value = value.or_else(|| (key == "protocol").then(|| Value::from("TCP")));
            value.map(|v| (key.as_str(), v))
        })
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::from("{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(name));
        out.push(':');
        write_canonical(value, &mut out);
    }
    out.push('}');
    Some(out)
}

/// Re-encodes a `k:`/`v:` path element read from stored `fieldsV1` canonically.
fn canonical_pe(pe: &str) -> String {
    if let Some(key) = pe.strip_prefix("k:")
        && let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(key)
    {
        return format!("k:{}", canonical(&value));
    }
    if let Some(value) = pe.strip_prefix("v:")
        && let Ok(value) = serde_json::from_str::<Value>(value)
    {
        return format!("v:{}", canonical(&value));
    }
    pe.to_owned()
}

/// Compact JSON with object keys sorted and integral floats written as integers.
fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                #[allow(clippy::cast_possible_truncation)]
                out.push_str(&(f as i64).to_string());
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(key));
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A path in SMD's printed syntax: `.spec.containers[name="app"].image`, `[="value"]` for set
/// values.
fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(field) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = pe.strip_prefix("k:") {
            out.push('[');
            match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(map) => {
                    let mut fields: Vec<(&String, &Value)> = map.iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(b.0));
                    let parts: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("{k}={}", canonical(v)))
                        .collect();
                    out.push_str(&parts.join(","));
                }
                Err(_) => out.push_str(key),
            }
            out.push(']');
        } else if let Some(value) = pe.strip_prefix("v:") {
            out.push_str("[=");
            out.push_str(value);
            out.push(']');
        } else if let Some(index) = pe.strip_prefix("i:") {
            out.push('[');
            out.push_str(index);
            out.push(']');
        } else {
            out.push_str(pe);
        }
    }
    out
}

fn display_names(names: &[String]) -> String {
    format!(".{}", names.join("."))
}

/// A string as a JSON (and, for printable text, Go `%q`) literal.
fn quote(text: &str) -> String {
    Value::from(text).to_string()
}

/// The offending input, shortened for error messages.
fn excerpt(value: &Value) -> String {
    const MAX: usize = 200;
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn invalid(reason: String) -> ApplyError {
    ApplyError::Invalid { reason }
}

/// kube-apiserver's conflict message.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager_description(),
            only.field
        );
    }
    type Group<'c> = (&'c Conflict, Vec<&'c str>);
    let mut groups: BTreeMap<(&str, &str, Option<&str>, &str), Group<'_>> = BTreeMap::new();
    for c in conflicts {
        groups
            .entry((
                &c.manager,
                &c.operation,
                c.subresource.as_deref(),
                &c.api_version,
            ))
            .or_insert_with(|| (c, Vec::new()))
            .1
            .push(&c.field);
    }
    let mut lines = Vec::new();
    for (first, fields) in groups.values() {
        lines.push(format!("conflicts with {}:", first.manager_description()));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Lowercase summary used by `Display`.
fn conflicts_summary(conflicts: &[Conflict]) -> String {
    let parts: Vec<String> = conflicts
        .iter()
        .map(|c| format!("{} ({})", c.field, c.cause_message()))
        .collect();
    format!(
        "apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::metadata_list_type;

    /// Deployment-like rules: containers and env keyed on name, ports on containerPort+protocol.
    struct Rules;

    impl MergeRules for Rules {
        fn list_type(&self, path: &[&str]) -> ListType {
            if let Some(shared) = metadata_list_type(path) {
                return shared;
            }
            match path {
                ["spec", "template", "spec", "containers"]
                | ["spec", "template", "spec", "containers", "env"] => {
                    ListType::Map(vec!["name".into()])
                }
                ["spec", "template", "spec", "containers", "ports"] => {
                    ListType::Map(vec!["containerPort".into(), "protocol".into()])
                }
                _ => ListType::Atomic,
            }
        }
    }

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn apply(
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        server_side_apply(&ApplyRequest {
            live,
            applied,
            manager,
            force,
            api_version: "apps/v1",
            subresource: None,
            now: NOW,
            rules: &Rules,
        })
    }

    fn deployment(spec: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        })
    }

    fn containers(obj: &Value) -> &Value {
        &obj["spec"]["template"]["spec"]["containers"]
    }

    fn entry<'v>(obj: &'v Value, manager: &str) -> Option<&'v Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    fn fields<'v>(obj: &'v Value, manager: &str) -> &'v Value {
        &entry(obj, manager).unwrap()["fieldsV1"]
    }

    fn conflicts(err: ApplyError) -> Vec<Conflict> {
        match err {
            ApplyError::Conflicts(c) => c,
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    #[test]
    fn first_apply_creates_object_with_one_entry() {
        let applied = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "creationTimestamp": null},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:v1"}
            ]}}},
        });
        let obj = apply(None, &applied, "kubectl", false).unwrap();
        assert_eq!(obj["apiVersion"], "apps/v1");
        assert_eq!(obj["kind"], "Deployment");
        assert_eq!(obj["metadata"]["name"], "web");
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert!(obj["metadata"].get("creationTimestamp").is_none());
        assert_eq!(obj["spec"]["replicas"], 2);
        let managed = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(managed.len(), 1);
        assert_eq!(
            managed[0],
            json!({
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": NOW,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn reapply_without_a_field_removes_it() {
        let first = deployment(json!({"replicas": 2, "paused": false}));
        let mut first_with_labels = first.clone();
        first_with_labels["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
        let obj = apply(None, &first_with_labels, "helm", false).unwrap();
        let mut second = deployment(json!({"replicas": 2}));
        second["metadata"]["labels"] = json!({"app": "web"});
        let obj = apply(Some(&obj), &second, "helm", false).unwrap();
        assert_eq!(obj["spec"], json!({"replicas": 2}));
        assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            fields(&obj, "helm"),
            &json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}})
        );
        // Dropping the last label removes the emptied map too.
        let obj = apply(
            Some(&obj),
            &deployment(json!({"replicas": 2})),
            "helm",
            false,
        )
        .unwrap();
        assert!(obj["metadata"].get("labels").is_none());
    }

    #[test]
    fn conflict_with_other_applier_and_force() {
        let obj = apply(
            None,
            &deployment(json!({"replicas": 1, "paused": false})),
            "a",
            false,
        )
        .unwrap();
        let err = apply(Some(&obj), &deployment(json!({"replicas": 3})), "b", false).unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
        );
        assert_eq!(
            conflicts(err),
            vec![Conflict {
                manager: "a".into(),
                operation: "Apply".into(),
                api_version: "apps/v1".into(),
                subresource: None,
                field: ".spec.replicas".into(),
            }]
        );

        let obj = apply(Some(&obj), &deployment(json!({"replicas": 3})), "b", true).unwrap();
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(fields(&obj, "a"), &json!({"f:spec": {"f:paused": {}}}));
        assert_eq!(fields(&obj, "b"), &json!({"f:spec": {"f:replicas": {}}}));
        // `a` re-applying its old value now conflicts with `b`.
        let err = apply(
            Some(&obj),
            &deployment(json!({"replicas": 1, "paused": false})),
            "a",
            false,
        )
        .unwrap_err();
        assert_eq!(conflicts(err)[0].manager, "b");
    }

    #[test]
    fn forced_takeover_drops_emptied_entry() {
        let obj = apply(None, &deployment(json!({"replicas": 1})), "a", false).unwrap();
        let obj = apply(Some(&obj), &deployment(json!({"replicas": 3})), "b", true).unwrap();
        assert!(entry(&obj, "a").is_none());
        assert_eq!(
            obj["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn equal_value_is_shared_without_conflict() {
        let obj = apply(
            None,
            &deployment(json!({"replicas": 1, "paused": true})),
            "a",
            false,
        )
        .unwrap();
        let obj = apply(Some(&obj), &deployment(json!({"replicas": 1})), "b", false).unwrap();
        assert_eq!(fields(&obj, "a")["f:spec"]["f:replicas"], json!({}));
        assert_eq!(fields(&obj, "b")["f:spec"]["f:replicas"], json!({}));
        // `a` stops applying replicas: `b` still owns it, so it stays.
        let obj = apply(Some(&obj), &deployment(json!({"paused": true})), "a", false).unwrap();
        assert_eq!(obj["spec"], json!({"replicas": 1, "paused": true}));
        assert_eq!(fields(&obj, "a"), &json!({"f:spec": {"f:paused": {}}}));
    }

    #[test]
    fn kubectl_server_side_then_last_applied() {
        let full = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "app:v1",
                                                           "ports": [{"containerPort": 80}]}]}}},
        });
        let obj = apply(None, &full, "kubectl", false).unwrap();
        let annotation = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": full.to_string()
            }},
        });
        let after = apply(Some(&obj), &annotation, "kubectl-last-applied", false).unwrap();
        assert_eq!(after["spec"], full["spec"]);
        assert_eq!(after["metadata"]["labels"], full["metadata"]["labels"]);
        assert_eq!(fields(&after, "kubectl"), fields(&obj, "kubectl"));
        assert_eq!(
            fields(&after, "kubectl-last-applied"),
            &json!({"f:metadata": {"f:annotations": {
                "f:kubectl.kubernetes.io/last-applied-configuration": {}
            }}})
        );
        assert_eq!(
            fields(&after, "kubectl")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
                ["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                ".": {}, "f:containerPort": {}
            }})
        );
        // Re-applying the same full config again changes nothing.
        let again = apply(Some(&after), &full, "kubectl", false).unwrap();
        assert_eq!(again, after);
    }

    #[test]
    fn containers_merge_by_name() {
        let helm = |image: &str| {
            deployment(json!({"template": {"spec": {"containers": [
                {"name": "app", "image": image}
            ]}}}))
        };
        let obj = apply(None, &helm("app:v1"), "helm", false).unwrap();
        let sidecar = deployment(json!({"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "proxy:v1"}
        ]}}}));
        let obj = apply(Some(&obj), &sidecar, "injector", false).unwrap();
        let obj = apply(Some(&obj), &helm("app:v2"), "helm", false).unwrap();
        assert_eq!(
            containers(&obj),
            &json!([{"name": "app", "image": "app:v2"}, {"name": "sidecar", "image": "proxy:v1"}])
        );
        // Another manager changing helm's image conflicts on the keyed path.
        let err = apply(Some(&obj), &helm("app:v3"), "other", false).unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"helm\": \
             .spec.template.spec.containers[name=\"app\"].image"
        );
        // helm no longer applying its container removes it, not the sidecar.
        let none = deployment(json!({"template": {"spec": {"containers": []}}}));
        let obj = apply(Some(&obj), &none, "helm", false).unwrap();
        assert_eq!(
            containers(&obj),
            &json!([{"name": "sidecar", "image": "proxy:v1"}])
        );
        assert!(entry(&obj, "helm").is_none());
    }

    #[test]
    fn removing_a_field_of_a_kept_element() {
        let first = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "image": "app:v1", "args": ["-v"]}
        ]}}}));
        let obj = apply(None, &first, "helm", false).unwrap();
        let second = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "image": "app:v1"}
        ]}}}));
        let obj = apply(Some(&obj), &second, "helm", false).unwrap();
        assert_eq!(
            containers(&obj),
            &json!([{"name": "app", "image": "app:v1"}])
        );
    }

    #[test]
    fn element_kept_while_another_manager_owns_part_of_it() {
        let first = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "image": "app:v1"}
        ]}}}));
        let obj = apply(None, &first, "helm", false).unwrap();
        let env = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "value": "1"}]}
        ]}}}));
        let obj = apply(Some(&obj), &env, "tuner", false).unwrap();
        let none = deployment(json!({"replicas": 1}));
        let obj = apply(Some(&obj), &none, "helm", false).unwrap();
        assert_eq!(
            containers(&obj),
            &json!([{"name": "app", "env": [{"name": "A", "value": "1"}]}])
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        let with = |finalizers: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "finalizers": finalizers}})
        };
        let obj = apply(None, &with(json!(["a.io/x"])), "one", false).unwrap();
        let obj = apply(Some(&obj), &with(json!(["b.io/y"])), "two", false).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
        assert_eq!(
            fields(&obj, "two"),
            &json!({"f:metadata": {"f:finalizers": {"v:\"b.io/y\"": {}}}})
        );
        // Applying a shared value too makes it co-owned; SMD keeps the applied order for them.
        let both = apply(Some(&obj), &with(json!(["b.io/y", "a.io/x"])), "two", false).unwrap();
        assert_eq!(both["metadata"]["finalizers"], json!(["b.io/y", "a.io/x"]));
        let obj = apply(Some(&obj), &with(json!([])), "two", false).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["a.io/x"]));
        let obj = apply(Some(&obj), &with(json!([])), "one", false).unwrap();
        assert!(obj["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn update_then_apply_conflicts_with_updater() {
        let mut created = deployment(json!({"replicas": 1, "paused": false}));
        record_update(
            None,
            &mut created,
            "kubectl-client-side-apply",
            "apps/v1",
            None,
            NOW,
            &Rules,
        );
        let update = entry(&created, "kubectl-client-side-apply").unwrap();
        assert_eq!(update["operation"], "Update");
        assert_eq!(
            update["fieldsV1"],
            json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
        );

        let err = apply(
            Some(&created),
            &deployment(json!({"replicas": 2})),
            "helm",
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using \
             apps/v1: .spec.replicas"
        );
        let c = &conflicts(err)[0];
        assert_eq!(
            c.cause_message(),
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );
    }

    #[test]
    fn several_conflicts_message() {
        let obj = apply(
            None,
            &deployment(json!({"replicas": 1, "paused": false, "minReadySeconds": 5})),
            "a",
            false,
        )
        .unwrap();
        let mut updated = obj.clone();
        updated["spec"]["revisionHistoryLimit"] = json!(3);
        record_update(
            Some(&obj),
            &mut updated,
            "kube-controller",
            "apps/v1",
            None,
            NOW,
            &Rules,
        );
        let applied = deployment(json!({"replicas": 2, "paused": true, "revisionHistoryLimit": 4}));
        let err = apply(Some(&updated), &applied, "b", false).unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.paused\n- \
             .spec.replicas\nconflicts with \"kube-controller\" using apps/v1:\n- \
             .spec.revisionHistoryLimit"
        );
        let fields: Vec<String> = conflicts(err).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                ".spec.paused",
                ".spec.replicas",
                ".spec.revisionHistoryLimit"
            ]
        );
    }

    #[test]
    fn record_update_takes_changed_fields_and_drops_removed_ones() {
        let obj = apply(
            None,
            &deployment(json!({"replicas": 1, "paused": false, "minReadySeconds": 5})),
            "helm",
            false,
        )
        .unwrap();
        let mut new = obj.clone();
        new["spec"]["replicas"] = json!(4);
        new["spec"].as_object_mut().unwrap().remove("paused");
        new["metadata"]["resourceVersion"] = json!("7");
        record_update(
            Some(&obj),
            &mut new,
            "hpa",
            "apps/v1",
            None,
            "later",
            &Rules,
        );
        assert_eq!(
            fields(&new, "helm"),
            &json!({"f:spec": {"f:minReadySeconds": {}}})
        );
        assert_eq!(
            entry(&new, "hpa").unwrap(),
            &json!({"manager": "hpa", "operation": "Update", "apiVersion": "apps/v1",
                    "time": "later", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}})
        );
        // A no-op write keeps everything, time included.
        let mut same = new.clone();
        record_update(
            Some(&new),
            &mut same,
            "hpa",
            "apps/v1",
            None,
            "even-later",
            &Rules,
        );
        assert_eq!(same, new);
    }

    #[test]
    fn record_update_on_create_marks_new_maps_and_elements() {
        let mut obj = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "image": "app:v1"}
        ]}}}));
        obj["metadata"]["labels"] = json!({"app": "web"});
        record_update(
            None,
            &mut obj,
            "kubectl-create",
            "apps/v1",
            None,
            NOW,
            &Rules,
        );
        assert_eq!(
            fields(&obj, "kubectl-create"),
            &json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:template": {".": {}, "f:spec": {".": {}, "f:containers": {
                    "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}
            })
        );
    }

    #[test]
    fn status_subresource_entries() {
        let obj = apply(None, &deployment(json!({"replicas": 1})), "helm", false).unwrap();
        let status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "web", "namespace": "default"},
                            "status": {"readyReplicas": 1}});
        let req = ApplyRequest {
            live: Some(&obj),
            applied: &status,
            manager: "controller",
            force: false,
            api_version: "apps/v1",
            subresource: Some("status"),
            now: NOW,
            rules: &Rules,
        };
        let obj = server_side_apply(&req).unwrap();
        let e = entry(&obj, "controller").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
        assert!(entry(&obj, "helm").unwrap().get("subresource").is_none());
        // Status is not tracked on main-resource writes.
        let mut new = obj.clone();
        new["status"]["readyReplicas"] = json!(2);
        record_update(Some(&obj), &mut new, "other", "apps/v1", None, NOW, &Rules);
        assert!(entry(&new, "other").is_none());
        // But it is on /status writes, which take it from the applier.
        let mut new2 = obj.clone();
        new2["status"]["readyReplicas"] = json!(2);
        record_update(
            Some(&obj),
            &mut new2,
            "other",
            "apps/v1",
            Some("status"),
            NOW,
            &Rules,
        );
        assert!(entry(&new2, "controller").is_none());
        assert_eq!(entry(&new2, "other").unwrap()["subresource"], "status");
    }

    #[test]
    fn before_first_apply_owns_existing_fields() {
        let live = deployment(json!({"replicas": 1}));
        let err = apply(
            Some(&live),
            &deployment(json!({"replicas": 2})),
            "helm",
            false,
        )
        .unwrap_err();
        assert_eq!(conflicts(err)[0].manager, "before-first-apply");
        let obj = apply(
            Some(&live),
            &deployment(json!({"replicas": 1})),
            "helm",
            false,
        )
        .unwrap();
        assert_eq!(
            obj["metadata"]["managedFields"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn ports_match_with_default_protocol() {
        let live = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}
        ]}}}));
        let mut live = live;
        record_update(None, &mut live, "creator", "apps/v1", None, NOW, &Rules);
        let applied = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 80, "hostPort": 8080}]}
        ]}}}));
        let obj = apply(Some(&live), &applied, "helm", false).unwrap();
        assert_eq!(
            containers(&obj)[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP", "name": "http", "hostPort": 8080}])
        );
    }

    #[test]
    fn keyed_list_order_follows_smd() {
        let c = |names: &[&str]| {
            let items: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
            deployment(json!({"template": {"spec": {"containers": items}}}))
        };
        let obj = apply(None, &c(&["a", "b"]), "one", false).unwrap();
        let obj = apply(Some(&obj), &c(&["c", "a"]), "two", false).unwrap();
        let names: Vec<&str> = containers(&obj)
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn invalid_configurations() {
        let err = apply(None, &json!([1]), "m", false).unwrap_err();
        assert!(matches!(&err, ApplyError::Invalid { reason } if reason.contains("[1]")));
        let mut with_mf = deployment(json!({}));
        with_mf["metadata"]["managedFields"] = json!([]);
        assert!(matches!(
            apply(None, &with_mf, "m", false),
            Err(ApplyError::Invalid { .. })
        ));
        let dup = deployment(json!({"template": {"spec": {"containers": [
            {"name": "app"}, {"name": "app"}
        ]}}}));
        let err = apply(None, &dup, "m", false).unwrap_err();
        assert_eq!(
            err.message(),
            ".spec.template.spec.containers: duplicate entries for key [name=\"app\"]"
        );
        assert!(err.to_string().starts_with("invalid apply configuration: "));
    }

    #[test]
    fn reset_managed_fields() {
        let obj = apply(None, &deployment(json!({"replicas": 1})), "helm", false).unwrap();
        let mut new = obj.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        record_update(
            Some(&obj),
            &mut new,
            "kubectl",
            "apps/v1",
            None,
            NOW,
            &Rules,
        );
        assert!(new["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn fields_v1_round_trip_is_canonical() {
        let stored = json!({"f:spec": {"f:ports": {
            "k:{\"protocol\":\"TCP\",\"port\":80}": {".": {}, "f:port": {}},
            "v:1.0": {}
        }}});
        let set = FieldSet::from_fields_v1(&stored);
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:spec": {"f:ports": {
                "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}},
                "v:1": {}
            }}})
        );
        let path = [
            "f:spec".to_owned(),
            "f:ports".to_owned(),
            "k:{\"port\":80,\"protocol\":\"TCP\"}".to_owned(),
            "f:port".to_owned(),
        ];
        assert!(set.contains(&path));
        assert_eq!(
            display_path(&path),
            ".spec.ports[port=80,protocol=\"TCP\"].port"
        );
        assert_eq!(
            display_path(&["f:a".to_owned(), "v:\"x\"".to_owned()]),
            ".a[=\"x\"]"
        );
    }
}

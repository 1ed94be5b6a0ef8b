//! The object store: every object, one global resourceVersion counter, the event history that
//! watches replay, and the write pipeline every verb goes through (kube-sim-surface §1.6–§1.10).
//!
//! All state sits behind one lock held by the server for the length of a request, so
//! resourceVersions are strictly ordered and every write is atomic. A write goes: build the new
//! object (verb-specific) -> normalise metadata -> defaults -> bookkeeping (uid,
//! creationTimestamp, resourceVersion, generation, managedFields) -> store -> event -> queue the
//! fake controllers. `dryRun=All` runs everything up to the store and stops.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::defaults::{self, Allocator};
use crate::registry::{Registry, ResourceKey, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::stats::Stats;
use crate::status::{ApiError, Cause};
use crate::time;

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
    /// The resource itself went away (its CRD was deleted): watches on it end.
    Closed,
}

impl EventType {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted | Self::Closed => "DELETED",
        }
    }
}

/// One change, kept in the history and sent to live watches.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// The resource changed.
    pub key: ResourceKey,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (the last state for deletions).
    pub object: Arc<Value>,
    /// The object before the change, for selector transitions.
    pub old: Option<Arc<Value>>,
}

/// Options every write takes from its query string.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything, store nothing.
    pub dry_run: bool,
    /// `fieldManager`, or the client's user agent when absent.
    pub field_manager: Option<String>,
    /// `force=true` for server-side apply.
    pub force: bool,
    /// A write by a fake controller: it does not queue the controllers again.
    pub internal: bool,
    /// The manager recorded for non-apply writes without `fieldManager`: the client's user
    /// agent up to the first `/`, as the real server does.
    pub default_manager: Option<String>,
    /// The subresource written (`status`), for the managedFields entry.
    pub subresource: Option<String>,
}

impl WriteOptions {
    /// The manager recorded for a non-apply write.
    #[must_use]
    pub fn manager(&self) -> Option<&str> {
        self.field_manager
            .as_deref()
            .or(self.default_manager.as_deref())
            .filter(|m| !m.is_empty())
    }
}

/// Options of a delete, from the body or the query string.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// A namespace and name; the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String);

/// How long after its DELETE a namespace's contents, or a CRD's resources, are removed.
const CLEANUP_DELAY: std::time::Duration = std::time::Duration::from_millis(1000);

/// The finalizer the API server puts on a CRD being deleted.
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Background work after a DELETE.
#[derive(Debug)]
enum Cleanup {
    /// Delete the contents of a terminating namespace, then the namespace.
    Namespace(String),
    /// Delete the resources of a terminating CRD, then the CRD.
    Crd(String),
}

/// Events kept for watches to replay.
pub const DEFAULT_HISTORY: usize = 200_000;

/// The whole simulated cluster state.
pub struct Store {
    /// Served types.
    pub registry: Registry,
    rv: u64,
    objects: HashMap<ResourceKey, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    history_capacity: usize,
    /// Every event with rv > `compacted` is in the history.
    compacted: u64,
    events: broadcast::Sender<Arc<Event>>,
    /// Tells every open watch to end (test hook).
    disconnects: broadcast::Sender<()>,
    pub(crate) alloc: Allocator,
    /// Objects whose fake controllers must run.
    pub(crate) pending: VecDeque<(ResourceKey, ObjectKey)>,
    /// Terminating namespaces and when their contents are deleted: like the namespace
    /// controller, this happens after the DELETE has been answered, not during it.
    cleanup: Vec<(Cleanup, std::time::Instant)>,
    /// Workloads that become ready later (`kube-sim.dev/ready-after-seconds`): when, by uid.
    pub(crate) ready_at: HashMap<String, std::time::Instant>,
    /// Controller runs due later: when, and which object.
    pub(crate) delayed: Vec<(std::time::Instant, ResourceKey, ObjectKey)>,
    /// Request counters.
    pub stats: Stats,
    /// Set on every change, cleared by the state file writer.
    pub dirty: bool,
}

pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or_default()
}

/// Whether two objects are equal without `metadata`, `apiVersion` and `kind` (and without
/// `status` when it is a subresource): whether a generation bump is due. Compared in place,
/// without copies.
fn same_spec(old: &Value, new: &Value, status_subresource: bool) -> bool {
    let skip = |key: &str| {
        matches!(key, "metadata" | "apiVersion" | "kind") || (status_subresource && key == "status")
    };
    same_except(old, new, skip)
}

/// Whether `a` and `b` are equal, ignoring the top-level keys `skip` names (when both are
/// objects).
fn same_except(a: &Value, b: &Value, skip: impl Fn(&str) -> bool) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |map: &serde_json::Map<String, Value>| {
                map.keys().filter(|k| !skip(k.as_str())).count()
            };
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(k, _)| !skip(k.as_str()))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

fn random_uid() -> String {
    let mut bytes = [0_u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = rand_fallback();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn rand_fallback() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    nanos.to_le_bytes()
}

/// Five characters from the alphabet the API server uses for `generateName`.
pub(crate) fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = vec![0_u8; len];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = rand_fallback()[..len.min(16)].to_vec();
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

impl Store {
    /// A store with the built-in types and the namespaces every cluster has.
    #[must_use]
    pub fn new(history_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(65_536);
        let (disconnects, _) = broadcast::channel(16);
        let mut store = Self {
            registry: Registry::builtin(),
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_capacity,
            compacted: 0,
            events,
            disconnects,
            alloc: Allocator::default(),
            pending: VecDeque::new(),
            cleanup: Vec::new(),
            ready_at: HashMap::new(),
            delayed: Vec::new(),
            stats: Stats::default(),
            dirty: false,
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            if let Some(rt) = store.registry.find("", "v1", "namespaces") {
                let _ = store.create(&rt, None, ns, &WriteOptions::default());
            }
        }
        store.pending.clear();
        store
    }

    /// The current resourceVersion.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may start from.
    #[must_use]
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Drops the whole event history, as etcd compaction would: watches from any earlier
    /// resourceVersion now get `410 Expired`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Ends every open watch and compacts the history past every resourceVersion handed out,
    /// so each watcher's resume gets `410 Expired` and must relist (test hook for the path
    /// etcd compaction takes on a real cluster).
    pub fn expire_watches(&mut self) {
        let _ = self.disconnects.send(());
        self.rv += 1;
        self.compact();
    }

    /// A receiver of the disconnect signal of [`Store::expire_watches`].
    #[must_use]
    pub fn disconnected(&self) -> broadcast::Receiver<()> {
        self.disconnects.subscribe()
    }

    /// A receiver of every future event.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// History events of `key` with rv > `after`, or `Err(oldest)` when `after` is compacted.
    ///
    /// # Errors
    ///
    /// The oldest resourceVersion still available when `after` is older.
    pub fn history_since(&self, key: &ResourceKey, after: u64) -> Result<Vec<Arc<Event>>, u64> {
        if after < self.compacted {
            return Err(self.compacted);
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        Ok(self
            .history
            .iter()
            .skip(start)
            .filter(|e| &e.key == key)
            .cloned()
            .collect())
    }

    fn objects_of(&self, key: &ResourceKey) -> Option<&BTreeMap<ObjectKey, Arc<Value>>> {
        self.objects.get(key)
    }

    /// The stored object, if any.
    #[must_use]
    pub fn lookup(&self, key: &ResourceKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects_of(key)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of `key` in `namespace` (all namespaces when `None`).
    pub fn iter<'a>(
        &'a self,
        key: &ResourceKey,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        self.objects_of(key)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v)
    }

    fn emit(
        &mut self,
        key: &ResourceKey,
        kind: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let event = Arc::new(Event {
            rv: self.rv,
            key: key.clone(),
            kind,
            object,
            old,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_capacity {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.dirty = true;
        let _ = self.events.send(event);
    }

    pub(crate) fn check_namespace_for_create(
        &self,
        rt: &ResourceType,
        namespace: &str,
    ) -> Result<(), ApiError> {
        self.namespace_check(rt, namespace)
    }

    fn namespace_check(&self, rt: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let key = ResourceKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        match self.lookup(&key, "", namespace) {
            None => Err(ApiError::namespace_not_found(namespace)),
            Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => {
                Err(ApiError::namespace_terminating(namespace))
            }
            Some(_) => Ok(()),
        }
    }

    /// GET of one object.
    ///
    /// # Errors
    ///
    /// 404 when absent.
    pub fn get(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.lookup(&rt.key(), namespace, name)
            .ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))
    }

    /// LIST with selectors and pagination, serialized straight into the response text (no
    /// copy of the objects). `continue` tokens are the last key returned.
    ///
    /// # Errors
    ///
    /// 400 for a continue token that does not decode.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_from: Option<&str>,
    ) -> Result<String, ApiError> {
        let start_after = match continue_from.filter(|c| !c.is_empty()) {
            None => None,
            Some(token) => Some(decode_continue(token).ok_or_else(|| {
                ApiError::bad_request(format!("invalid continue token {token:?}"))
            })?),
        };
        let api_version = rt.api_version();
        let mut items = String::with_capacity(4096);
        let mut count = 0_usize;
        let mut next = None;
        let mut last: Option<&ObjectKey> = None;
        let candidates = self
            .objects_of(&rt.key())
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .filter(|(k, _)| start_after.as_ref().is_none_or(|s| *k > s));
        for (k, object) in candidates {
            if !(labels.matches(object) && fields.matches(object)) {
                continue;
            }
            if limit.is_some_and(|l| l > 0 && count >= l) {
                // More remain: continue after the last key returned.
                next = last.map(encode_continue);
                break;
            }
            last = Some(k);
            if count > 0 {
                items.push(',');
            }
            count += 1;
            let text = if object["apiVersion"] == api_version.as_str() {
                serde_json::to_string(&**object)
            } else {
                serde_json::to_string(&crate::server::versioned(object, rt))
            };
            items.push_str(&text.map_err(|e| ApiError::internal(e.to_string()))?);
        }
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        if let Some(token) = next {
            metadata["continue"] = json!(token);
        }
        Ok(format!(
            "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{metadata},\"items\":[{items}]}}",
            json!(api_version),
            json!(format!("{}List", rt.kind)),
        ))
    }

    /// POST: creates an object.
    ///
    /// # Errors
    ///
    /// 400 for a kind or namespace mismatch, 404/403 for a missing or terminating namespace,
    /// 422 for a missing or invalid name, 409 when it exists.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_type(rt, &mut body)?;
        let namespace = resolve_namespace(rt, namespace, &mut body)?;
        self.namespace_check(rt, &namespace)?;
        let metadata = body["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        let mut name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let prefix = metadata
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
            name = format!("{prefix}{}", random_suffix(5));
            metadata.insert("name".into(), json!(name));
        }
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        defaults::validate_name(&rt.kind, &rt.group, &name)?;
        if self.lookup(&rt.key(), &namespace, &name).is_some() {
            return Err(ApiError::already_exists(&rt.plural, &rt.group, &name));
        }
        if rt.status
            && let Some(map) = body.as_object_mut()
        {
            map.remove("status");
        }
        self.commit(rt, &namespace, None, body, opts)
    }

    /// PUT of the main resource or of `/status`.
    ///
    /// # Errors
    ///
    /// 404 when absent, 400 for a name mismatch, 409 for a stale resourceVersion or uid.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_type(rt, &mut body)?;
        let old = self.get(rt, namespace, name)?;
        if meta_str(&body, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name")
            )));
        }
        let body_ns = meta_str(&body, "namespace");
        if rt.namespaced && !body_ns.is_empty() && body_ns != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let rv = meta_str(&body, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.plural, &rt.group, name));
        }
        let uid = meta_str(&body, "uid");
        if !uid.is_empty() && uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(&rt.plural, &rt.group, name));
        }
        self.write_new_version(rt, namespace, old, body, subresource, opts)
    }

    /// Turns a full new object (from PUT or a patch) into a stored write, enforcing the status
    /// subresource split and the fields only the server sets.
    pub(crate) fn write_new_version(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        old: Arc<Value>,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if subresource == Some("status") {
            let status = new.get("status").cloned();
            let managed = new["metadata"].get("managedFields").cloned();
            new = (*old).clone();
            if let Some(managed) = managed.filter(|m| !m.is_null()) {
                new["metadata"]["managedFields"] = managed;
            }
            match status {
                Some(status) => new["status"] = status,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if rt.status {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        new["metadata"]["namespace"] = if rt.namespaced {
            json!(namespace)
        } else {
            Value::Null
        };
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            new["metadata"][field] = old["metadata"][field].clone();
        }
        if new["metadata"]
            .get("managedFields")
            .is_none_or(Value::is_null)
        {
            new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        }
        let opts = WriteOptions {
            subresource: subresource.map(str::to_owned),
            ..opts.clone()
        };
        self.commit(rt, namespace, Some(old), new, &opts)
    }

    /// Records a non-apply write in `managedFields` under the request's field manager.
    fn record_update(
        &self,
        rt: &ResourceType,
        old: Option<&Value>,
        new: &mut Value,
        opts: &WriteOptions,
        subresource: Option<&str>,
    ) {
        if let Some(manager) = opts.manager() {
            kube_merge::apply::record_update(
                old,
                new,
                manager,
                &rt.api_version(),
                subresource,
                &time::now_rfc3339(),
                rt.rules.as_ref(),
            );
        }
    }

    /// The last step of every write: defaults, bookkeeping, store, event, controllers. Returns
    /// the object as stored, in the version of `rt`.
    pub(crate) fn commit(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        old: Option<Arc<Value>>,
        new: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let stored = self.commit_stored(rt, namespace, old, new, opts)?;
        Ok(crate::server::versioned(&stored, rt))
    }

    /// [`Store::commit`] for writers that do not answer with the object (controllers): the
    /// object as stored, without a copy.
    pub(crate) fn commit_stored(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        old: Option<Arc<Value>>,
        mut new: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        if rt.namespaced {
            new["metadata"]["namespace"] = json!(namespace);
        }
        defaults::normalize_metadata(&mut new);
        defaults::apply(
            &rt.group,
            &rt.kind,
            &mut new,
            old.as_deref(),
            &mut self.alloc,
        )?;
        // Ownership is recorded on the object as stored, after defaults (Secret `stringData`
        // is `data` by now), so later applies compare against what is really there.
        self.record_update(
            rt,
            old.as_deref(),
            &mut new,
            opts,
            opts.subresource.as_deref(),
        );
        let name = meta_str(&new, "name").to_owned();
        let is_crd = rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition";
        if is_crd {
            let mut scratch = Registry::builtin();
            scratch.register_crd(&new).map_err(|problems| {
                let causes = problems
                    .into_iter()
                    .map(|(field, message)| Cause {
                        reason: "FieldValueInvalid".into(),
                        message,
                        field,
                    })
                    .collect();
                ApiError::invalid(&rt.kind, &rt.group, &name, causes)
            })?;
        }
        match &old {
            None => {
                new["metadata"]["uid"] = json!(random_uid());
                new["metadata"]["creationTimestamp"] = json!(time::now_rfc3339());
                new["metadata"]["generation"] = json!(1);
            }
            Some(old) => {
                let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let marked_for_deletion = old["metadata"]["deletionTimestamp"].is_null()
                    && !new["metadata"]["deletionTimestamp"].is_null();
                if marked_for_deletion || !same_spec(old, &new, rt.status) {
                    generation += 1;
                }
                new["metadata"]["generation"] = json!(generation);
            }
        }
        if opts.dry_run {
            let rv = old
                .as_ref()
                .map(|o| o["metadata"]["resourceVersion"].clone())
                .unwrap_or(Value::Null);
            new["metadata"]["resourceVersion"] = rv;
            defaults::normalize_metadata(&mut new);
            return Ok(Arc::new(new));
        }
        if let Some(old) = &old
            && same_content(old, &new)
        {
            // Nothing changed: no new resourceVersion, no event (as the real server does).
            return Ok(Arc::clone(old));
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        defaults::normalize_metadata(&mut new);
        let key = rt.key();
        let object_key = (
            if rt.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name,
        );
        let terminating = !new["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        if terminating && no_finalizers && old.is_some() && !is_namespace {
            let stored = Arc::new(new);
            self.remove(&key, &object_key, stored.clone(), old);
            return Ok(stored);
        }
        let stored = Arc::new(new);
        self.objects
            .entry(key.clone())
            .or_default()
            .insert(object_key.clone(), stored.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(&key, kind, stored.clone(), old);
        if is_crd && let Err(problems) = self.registry.register_crd(&stored) {
            tracing::warn!(?problems, "stored CRD failed to register");
        }
        if !opts.internal {
            self.pending.push_back((key, object_key));
        }
        Ok(stored)
    }

    /// Removes an object for good: DELETED event, then garbage collection of its dependents.
    fn remove(
        &mut self,
        key: &ResourceKey,
        object_key: &ObjectKey,
        last: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        if let Some(map) = self.objects.get_mut(key) {
            map.remove(object_key);
        }
        let mut last_state = (*last).clone();
        last_state["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(key, EventType::Deleted, Arc::new(last_state), old);
        let uid = meta_str(&last, "uid").to_owned();
        self.collect_dependents(&uid, "Background");
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            self.remove_crd_resources(meta_str(&last, "name"));
        }
        let namespace = &object_key.0;
        if !namespace.is_empty() {
            self.finish_namespace_if_empty(namespace);
        }
    }

    /// Deletes every object of a CRD's resource and stops serving it.
    fn remove_crd_resources(&mut self, crd_name: &str) {
        let Some(key) = self.registry.unregister_crd(crd_name) else {
            return;
        };
        let objects = self.objects.remove(&key).unwrap_or_default();
        for (_, object) in objects {
            self.rv += 1;
            let mut last = (*object).clone();
            last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.emit(&key, EventType::Deleted, Arc::new(last), Some(object));
        }
        self.emit(&key, EventType::Closed, Arc::new(Value::Null), None);
    }

    /// Background: deletes dependents of `uid`; Orphan: removes their owner reference.
    fn collect_dependents(&mut self, uid: &str, policy: &str) {
        if uid.is_empty() {
            return;
        }
        let mut dependents = Vec::new();
        for (key, objects) in &self.objects {
            for (object_key, object) in objects {
                let owned = object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
                if owned {
                    dependents.push((key.clone(), object_key.clone(), object.clone()));
                }
            }
        }
        for (key, object_key, object) in dependents {
            let rt = self.registry.versions_of(&key).next().cloned();
            let Some(rt) = rt else { continue };
            if policy == "Orphan" {
                let mut new = (*object).clone();
                if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid);
                }
                let _ = self.commit_stored(
                    &rt,
                    &object_key.0,
                    Some(object),
                    new,
                    &WriteOptions::default(),
                );
            } else {
                let _ = self.delete(&rt, &object_key.0, &object_key.1, &DeleteOptions::default());
            }
        }
    }

    /// DELETE of one object (§1.10).
    ///
    /// # Errors
    ///
    /// 404 when absent, 409 when a precondition fails.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let old = self.get(rt, namespace, name)?;
        if opts
            .uid
            .as_deref()
            .is_some_and(|u| u != meta_str(&old, "uid"))
            || opts
                .resource_version
                .as_deref()
                .is_some_and(|v| v != meta_str(&old, "resourceVersion"))
        {
            return Err(ApiError::conflict(&rt.plural, &rt.group, name));
        }
        let uid = meta_str(&old, "uid").to_owned();
        if opts.dry_run {
            return Ok(crate::status::success(name, &rt.group, &rt.plural, &uid));
        }
        if !old["metadata"]["deletionTimestamp"].is_null() {
            return Ok(crate::server::versioned(&old, rt));
        }
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        let mut finalizers: Vec<Value> = old["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if policy == "Foreground" {
            self.collect_dependents(&uid, "Background");
        }
        if is_namespace {
            let mut new = (*old).clone();
            new["metadata"]["deletionTimestamp"] = json!(time::now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            new["status"]["phase"] = json!("Terminating");
            let result = self.commit(rt, "", Some(old), new, &WriteOptions::default())?;
            let due = std::time::Instant::now() + CLEANUP_DELAY;
            self.cleanup
                .push((Cleanup::Namespace(name.to_owned()), due));
            return Ok(result);
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            // The API server's finalizer: custom resources go first, in the background.
            let mut new = (*old).clone();
            new["metadata"]["deletionTimestamp"] = json!(time::now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            finalizers.push(json!(CRD_CLEANUP_FINALIZER));
            new["metadata"]["finalizers"] = Value::Array(finalizers);
            let result = self.commit(rt, "", Some(old), new, &WriteOptions::default())?;
            let due = std::time::Instant::now() + CLEANUP_DELAY;
            self.cleanup.push((Cleanup::Crd(name.to_owned()), due));
            return Ok(result);
        }
        if policy == "Orphan" {
            self.collect_dependents(&uid, "Orphan");
            finalizers.retain(|f| f != "orphan");
        }
        if finalizers.is_empty() {
            let key = rt.key();
            let object_key = (
                if rt.namespaced {
                    namespace.to_owned()
                } else {
                    String::new()
                },
                name.to_owned(),
            );
            self.rv += 1;
            self.remove(&key, &object_key, old.clone(), Some(old));
            return Ok(crate::status::success(name, &rt.group, &rt.plural, &uid));
        }
        let mut new = (*old).clone();
        new["metadata"]["deletionTimestamp"] = json!(time::now_rfc3339());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        self.commit(rt, namespace, Some(old), new, &WriteOptions::default())
    }

    /// Background work that is due: deleting the contents of terminating namespaces, and the
    /// controller runs of workloads whose readiness was delayed.
    pub fn tick(&mut self) {
        let now = std::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cleanup)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.cleanup = later;
        for (work, _) in due {
            match work {
                Cleanup::Namespace(namespace) => {
                    self.delete_namespace_contents(&namespace);
                    self.finish_namespace_if_empty(&namespace);
                }
                Cleanup::Crd(name) => self.finish_crd(&name),
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.delayed = later;
        self.pending
            .extend(due.into_iter().map(|(_, key, object)| (key, object)));
        if !self.pending.is_empty() {
            self.run_controllers();
        }
    }

    /// Removes a terminating CRD's resources, then its finalizer (which removes the CRD).
    fn finish_crd(&mut self, name: &str) {
        self.remove_crd_resources(name);
        let Some(rt) =
            self.registry
                .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        else {
            return;
        };
        let Some(old) = self.lookup(&rt.key(), "", name) else {
            return;
        };
        let mut new = (*old).clone();
        if let Some(finalizers) = new["metadata"]["finalizers"].as_array_mut() {
            finalizers.retain(|f| f != CRD_CLEANUP_FINALIZER);
        }
        let _ = self.commit_stored(&rt, "", Some(old), new, &WriteOptions::default());
    }

    fn delete_namespace_contents(&mut self, namespace: &str) {
        let mut victims = Vec::new();
        for (key, objects) in &self.objects {
            for (ns, name) in objects.keys() {
                if ns == namespace {
                    victims.push((key.clone(), name.clone()));
                }
            }
        }
        for (key, name) in victims {
            let rt = self.registry.versions_of(&key).next().cloned();
            if let Some(rt) = rt {
                let _ = self.delete(&rt, namespace, &name, &DeleteOptions::default());
            }
        }
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace_if_empty(&mut self, namespace: &str) {
        let key = ResourceKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        let Some(ns) = self.lookup(&key, "", namespace) else {
            return;
        };
        if ns["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let occupied = self
            .objects
            .values()
            .any(|objects| objects.keys().any(|(n, _)| n == namespace));
        if !occupied {
            self.rv += 1;
            self.remove(
                &key,
                &(String::new(), namespace.to_owned()),
                ns.clone(),
                Some(ns),
            );
        }
    }

    /// DELETE of a collection: deletes each matching object and returns them as a list.
    ///
    /// # Errors
    ///
    /// The first delete that fails.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let names: Vec<(String, String, Arc<Value>)> = self
            .iter(&rt.key(), namespace)
            .filter(|o| labels.matches(o) && fields.matches(o))
            .map(|o| {
                (
                    meta_str(o, "namespace").to_owned(),
                    meta_str(o, "name").to_owned(),
                    o.clone(),
                )
            })
            .collect();
        let mut items = Vec::new();
        for (ns, name, object) in names {
            self.delete(rt, &ns, &name, opts)?;
            items.push(crate::server::versioned(&object, rt));
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        }))
    }

    /// Every object, for the state file.
    #[must_use]
    pub fn dump(&self) -> Value {
        let objects: Vec<Value> = self
            .objects
            .values()
            .flat_map(|m| m.values())
            .map(|o| (**o).clone())
            .collect();
        json!({"resourceVersion": self.rv, "objects": objects})
    }

    /// Loads objects saved by [`Store::dump`]: CRDs first so their resources are servable.
    pub fn load(&mut self, dump: &Value) {
        let mut objects: Vec<&Value> = dump["objects"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        objects.sort_by_key(|o| o["kind"] != "CustomResourceDefinition");
        for object in objects {
            let (group, version) = match object["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .split_once('/')
            {
                Some((g, v)) => (g.to_owned(), v.to_owned()),
                None => (
                    String::new(),
                    object["apiVersion"].as_str().unwrap_or_default().to_owned(),
                ),
            };
            let Some(rt) = self.registry.find_kind(
                &group,
                &version,
                object["kind"].as_str().unwrap_or_default(),
            ) else {
                continue;
            };
            if rt.kind == "CustomResourceDefinition" {
                let _ = self.registry.register_crd(object);
            }
            let key = (
                if rt.namespaced {
                    meta_str(object, "namespace").to_owned()
                } else {
                    String::new()
                },
                meta_str(object, "name").to_owned(),
            );
            self.objects
                .entry(rt.key())
                .or_default()
                .insert(key, Arc::new(object.clone()));
        }
        self.rv = self.rv.max(dump["resourceVersion"].as_u64().unwrap_or(0));
        self.compacted = self.rv;
        self.history.clear();
    }
}

/// Whether a write changes nothing but bookkeeping: the resourceVersion and the `time` of
/// managedFields entries. Such a write is not stored, as on a real server.
fn same_content(old: &Value, new: &Value) -> bool {
    // Compared in place, without copies: everything but `metadata`, then `metadata` without
    // `resourceVersion` and `managedFields`, then the managed fields without their `time`.
    let (old_meta, new_meta) = (&old["metadata"], &new["metadata"]);
    fn entries(meta: &Value) -> Option<&[Value]> {
        meta.get("managedFields")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
    }
    let same_entries = match (entries(old_meta), entries(new_meta)) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(a, b)| same_except(a, b, |k| k == "time"))
        }
        (None, None) => old_meta.get("managedFields") == new_meta.get("managedFields"),
        _ => false,
    };
    same_except(old, new, |k| k == "metadata")
        && (old.get("metadata").is_some() == new.get("metadata").is_some())
        && same_except(old_meta, new_meta, |k| {
            k == "resourceVersion" || k == "managedFields"
        })
        && same_entries
}

/// `apiVersion` and `kind` must match the URL; missing ones are filled in.
fn check_type(rt: &ResourceType, body: &mut Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let api_version = body["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    if (!api_version.is_empty() && api_version != rt.api_version())
        || (!kind.is_empty() && kind != rt.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}), or kind {kind} is not {}",
            rt.api_version(),
            rt.kind
        )));
    }
    if body["metadata"].is_null() {
        body["metadata"] = json!({});
    }
    Ok(())
}

/// The namespace of a write: the URL's, which the body must agree with.
fn resolve_namespace(
    rt: &ResourceType,
    url_namespace: Option<&str>,
    body: &mut Value,
) -> Result<String, ApiError> {
    if !rt.namespaced {
        if let Some(m) = body["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        return Ok(String::new());
    }
    let Some(namespace) = url_namespace else {
        return Err(ApiError::bad_request(
            "a namespaced resource must be created under /namespaces/<namespace>/",
        ));
    };
    let body_ns = meta_str(body, "namespace");
    if !body_ns.is_empty() && body_ns != namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    body["metadata"]["namespace"] = json!(namespace);
    Ok(namespace.to_owned())
}

fn encode_continue(key: &ObjectKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.0, key.1]).to_string())
}

fn decode_continue(token: &str) -> Option<ObjectKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some((value[0].as_str()?.to_owned(), value[1].as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn same_content_ignores_only_the_resource_version_and_managed_field_times() {
        let old = json!({"metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{"manager": "m", "time": "t1", "fieldsV1": {"f:data": {}}}]},
            "data": {"k": "v"}});
        let mut new = old.clone();
        new["metadata"]["resourceVersion"] = json!("2");
        new["metadata"]["managedFields"][0]["time"] = json!("t2");
        assert!(same_content(&old, &new));
        let mut changed = new.clone();
        changed["metadata"]["managedFields"][0]["manager"] = json!("other");
        assert!(!same_content(&old, &changed));
        let mut changed = new.clone();
        changed["metadata"]["labels"] = json!({"x": "y"});
        assert!(!same_content(&old, &changed));
        let mut changed = new.clone();
        changed["data"]["k"] = json!("w");
        assert!(!same_content(&old, &changed));
        let mut changed = new;
        changed["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert!(!same_content(&old, &changed));
        assert!(!same_content(&json!({"metadata": null}), &json!({})));
    }

    #[test]
    fn same_spec_ignores_metadata_type_and_a_status_subresource() {
        let old = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"x": 1}, "status": {"ready": false}});
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"l": "v"});
        new["apiVersion"] = json!("v2");
        new["status"] = json!({"ready": true});
        assert!(same_spec(&old, &new, true));
        assert!(!same_spec(&old, &new, false));
        new["spec"]["x"] = json!(2);
        assert!(!same_spec(&old, &new, true));
        let mut extra = old.clone();
        extra["data"] = json!({});
        assert!(!same_spec(&old, &extra, true));
    }
}

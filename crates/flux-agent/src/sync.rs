//! Sync: make the cluster equal to the manifests read from git, then collect what git no longer
//! has. Flux v1 `pkg/cluster/kubernetes/sync.go`, with server-side apply instead of `kubectl`.
//!
//! The pipeline: discover the API (cached, refreshed when CRDs change) -> read the live objects
//! of every kind the manifests use (one list per kind) -> plan each manifest (skip when ignored,
//! excluded by namespace, or already in place) -> apply in kind order (Namespaces, CRDs, which
//! are waited on until Established, then Flux v1's ranking) -> garbage-collect.
//!
//! Every applied object carries the annotation `fluxcd.io/sync-checksum` (SHA-1 of the manifest
//! bytes) and the label `fluxcd.io/sync-gc-mark` (`sha256.` + base64url(SHA-256(sync set name +
//! resource id))), exactly as Flux v1 stamped them, so objects Flux v1 applied are recognised.
//! An object is "in place" when its live copy carries this checksum and contains every field of
//! the stamped manifest; then nothing is written. A live object edited behind our back no longer
//! contains the manifest and is applied again. Per-object errors are collected, never abort the
//! rest. Garbage collection never runs on an incomplete read of the manifests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Discovery, Scope, verbs};
use model::ResourceId;
use model::annotations::{Ignore, Policies, SYNC_CHECKSUM, SYNC_GC_MARK};
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;
use sha1::Digest as _;

use crate::manifests::{LoadedManifests, Manifest, Scopes};

/// The field manager of every write the agent makes.
pub const FIELD_MANAGER: &str = "flux";

/// How long to wait for an applied CRD to become Established.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Garbage collection mode (`--sync-garbage-collection`, `--sync-garbage-collection-dry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GcMode {
    /// Leave objects that git no longer has.
    #[default]
    Off,
    /// Delete them.
    On,
    /// Log what would be deleted.
    Dry,
}

/// What a sync needs besides the manifests.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// The sync set name: see [`sync_set_name`].
    pub sync_set: String,
    /// Garbage collection.
    pub gc: GcMode,
    /// Take ownership of fields other managers hold (`--sync-force-conflicts`, default true).
    pub force_conflicts: bool,
    /// `--k8s-allow-namespace`; empty allows every namespace.
    pub allowed_namespaces: Vec<String>,
}

/// One object that could not be synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncError {
    /// `<namespace>:<kind>/<name>`.
    pub id: String,
    /// The file it came from.
    pub source: String,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.id, self.source, self.message)
    }
}

/// What one sync did.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// Objects written.
    pub applied: Vec<String>,
    /// Objects already in place (nothing written).
    pub unchanged: usize,
    /// Objects skipped by `fluxcd.io/ignore` (in git or live).
    pub ignored: Vec<String>,
    /// Objects outside `--k8s-allow-namespace`.
    pub excluded: Vec<String>,
    /// Objects that failed.
    pub errors: Vec<SyncError>,
    /// Objects garbage-collected.
    pub deleted: Vec<String>,
    /// Objects dry-run garbage collection would delete.
    pub would_delete: Vec<String>,
    /// Why garbage collection did not run, when it was on.
    pub gc_skipped: Option<String>,
}

impl SyncReport {
    /// Whether every manifest was synced and garbage collection (if on) ran.
    #[must_use]
    pub fn clean(&self) -> bool {
        self.errors.is_empty() && self.gc_skipped.is_none()
    }
}

/// Flux v1's sync set name: base64url(SHA-256(credential-free URL + branch + each path)).
#[must_use]
pub fn sync_set_name(safe_url: &str, branch: &str, paths: &[String]) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(safe_url.as_bytes());
    hasher.update(branch.as_bytes());
    for path in paths {
        hasher.update(path.as_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// The gc-mark label value of `id` in `sync_set`: `sha256.` + base64url(SHA-256(set + id)).
#[must_use]
pub fn gc_mark(sync_set: &str, id: &ResourceId) -> String {
    let digest = sha2::Sha256::digest(format!("{sync_set}{id}").as_bytes());
    format!(
        "sha256.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// SHA-1 hex of a manifest's bytes, Flux v1's `fluxcd.io/sync-checksum`.
#[must_use]
pub fn checksum(bytes: &str) -> String {
    sha1::Sha1::digest(bytes.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Flux v1's apply order: lower ranks first (`pkg/cluster/kubernetes/sync.go`), with CRDs on
/// their own right after Namespaces.
#[must_use]
pub fn kind_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" | "ClusterRole" | "Role" | "PersistentVolume" | "Service" => 2,
        "ResourceQuota"
        | "LimitRange"
        | "Secret"
        | "ConfigMap"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "PersistentVolumeClaim"
        | "Ingress" => 3,
        "Deployment"
        | "DaemonSet"
        | "ReplicationController"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "StatefulSet" => 4,
        _ => 5,
    }
}

/// Whether `live` holds every field of `desired` with the same value (lists element by
/// element). Fields the server added (defaults, status, bookkeeping) do not matter.
#[must_use]
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| dv.is_null() || l.get(k).is_some_and(|lv| contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (Value::Number(l), Value::Number(d)) => l == d || l.as_f64() == d.as_f64(),
        _ => live == desired,
    }
}

fn gvk_of(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

/// API discovery, cached between syncs and refreshed when CRDs change or a kind is unknown.
#[derive(Default)]
pub struct ApiCache {
    discovery: Option<Discovery>,
}

impl ApiCache {
    /// Runs discovery again.
    ///
    /// # Errors
    ///
    /// When the API server cannot be reached.
    pub async fn refresh(&mut self, client: &kube::Client) -> Result<(), kube::Error> {
        self.discovery = Some(Discovery::new(client.clone()).run_aggregated().await?);
        Ok(())
    }

    /// The resource and capabilities of a kind, if served.
    #[must_use]
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, ApiCapabilities)> {
        self.discovery
            .as_ref()?
            .resolve_gvk(&gvk_of(api_version, kind))
    }

    /// Every listable and deletable resource, for garbage collection.
    #[must_use]
    pub fn collectable(&self) -> Vec<(ApiResource, ApiCapabilities)> {
        let Some(discovery) = &self.discovery else {
            return Vec::new();
        };
        discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .filter(|(_, caps)| {
                caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE)
            })
            .collect()
    }
}

impl Scopes for ApiCache {
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.resolve(api_version, kind)
            .map(|(_, caps)| caps.scope == Scope::Namespaced)
    }
}

fn api_for(
    client: &kube::Client,
    resource: &ApiResource,
    caps: &ApiCapabilities,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (caps.scope == Scope::Namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, resource),
        _ => Api::all_with(client.clone(), resource),
    }
}

/// The manifest as it is applied: with the checksum annotation and the gc-mark label.
fn stamped(manifest: &Manifest, checksum: &str, mark: &str) -> Result<Value, String> {
    let mut object = manifest
        .object()
        .map_err(|e| format!("failed to read the manifest as JSON: {e}"))?;
    object["metadata"]["annotations"][SYNC_CHECKSUM] = Value::String(checksum.to_owned());
    object["metadata"]["labels"][SYNC_GC_MARK] = Value::String(mark.to_owned());
    Ok(object)
}

/// The `fluxcd.io/ignore` policy of a manifest. Parsed only when its text mentions `ignore`
/// at all (the key is `<prefix>/ignore`, and JSON text spells keys out), which most manifests
/// do not.
fn ignore_of_manifest(manifest: &Manifest) -> Ignore {
    if !manifest.json.contains("ignore") {
        return Ignore::No;
    }
    manifest
        .object()
        .map(|object| ignore_of(&object))
        .unwrap_or_default()
}

fn ignore_of(object: &Value) -> Ignore {
    let annotations: BTreeMap<String, String> = object["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Policies::from_annotations(&annotations)
        .map(|p| p.ignore)
        .unwrap_or_default()
}

fn allowed(config: &SyncConfig, manifest: &Manifest) -> bool {
    if config.allowed_namespaces.is_empty() {
        return true;
    }
    match (&manifest.namespace, manifest.kind.as_str()) {
        (Some(ns), _) => config.allowed_namespaces.contains(ns),
        (None, "Namespace") => config.allowed_namespaces.contains(&manifest.name),
        (None, _) => true,
    }
}

/// What a live object is, compared with its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Live {
    /// `fluxcd.io/ignore: "true"` on the live object.
    Ignored,
    /// Carries the manifest's checksum and mark and contains every field of it.
    InPlace,
    /// Anything else: apply.
    Different,
}

/// Objects per page when listing live objects.
const LIST_PAGE: u32 = 500;

/// Server-side applies in flight at once.
const APPLY_CONCURRENCY: usize = 16;

/// Whether `live` already is `manifest` as the agent applies it: same checksum and gc-mark, and
/// every field of the manifest in place.
fn in_place(live: &Value, manifest: &Manifest, checksum: &str, mark: &str) -> bool {
    live["metadata"]["annotations"][SYNC_CHECKSUM] == checksum
        && live["metadata"]["labels"][SYNC_GC_MARK] == mark
        && manifest
            .object()
            .is_ok_and(|desired| contains(live, &desired))
}

/// One page of a list, its items left as JSON text so that only one at a time is parsed.
#[derive(serde::Deserialize)]
struct RawPage {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<Box<RawValue>>>,
}

/// Server-side applies `manifest`, stamped with `checksum` and `mark`, through `request` (the
/// URL of its resource and namespace). The answer (the whole object) is checked, not kept.
async fn apply_one<'a>(
    client: &kube::Client,
    request: kube::core::Request,
    params: &PatchParams,
    manifest: &'a Manifest,
    checksum: &str,
    mark: &str,
) -> (&'a Manifest, Result<(), String>) {
    // Stamped only now, so that a handful of parsed objects are alive at a time.
    let object = match stamped(manifest, checksum, mark) {
        Ok(object) => object,
        Err(e) => return (manifest, Err(e)),
    };
    let patch = request
        .patch(&manifest.name, params, &Patch::Apply(&object))
        .map_err(kube::Error::BuildRequest);
    drop(object);
    let sent = match patch {
        Ok(patch) => client.request::<IgnoredAny>(patch).await.map(drop),
        Err(e) => Err(e),
    };
    let result = match sent {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(format!(
            "conflicts with other field managers: {}",
            status.message
        )),
        Err(e) => Err(format!("failed to apply: {e}")),
    };
    (manifest, result)
}

/// Applies manifests and collects garbage against one cluster.
pub struct Syncer {
    client: kube::Client,
    /// The cached API discovery.
    pub api: ApiCache,
}

impl Syncer {
    /// A syncer for the cluster `client` talks to.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            api: ApiCache::default(),
        }
    }

    /// Makes sure discovery has run.
    ///
    /// # Errors
    ///
    /// When the API server cannot be reached.
    pub async fn discover(&mut self) -> Result<(), kube::Error> {
        if self.api.discovery.is_none() {
            self.api.refresh(&self.client).await?;
        }
        Ok(())
    }

    /// What the cluster holds of the manifests of one kind: for each `(namespace, name)` that a
    /// manifest names, whether the live object is ignored or already in place. Read page by page
    /// and compared as it arrives, so no copy of the live objects is kept.
    async fn live_status(
        &self,
        resource: &ApiResource,
        desired: &HashMap<(String, String), (&Manifest, String, String)>,
    ) -> Result<HashMap<(String, String), Live>, kube::Error> {
        let url = <DynamicObject as kube::Resource>::url_path(resource, None);
        let request = kube::core::Request::new(url);
        let mut status = HashMap::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        loop {
            let list = request.list(&params).map_err(kube::Error::BuildRequest)?;
            let page: RawPage = self.client.request(list).await?;
            for item in page.items.unwrap_or_default() {
                let Ok(live) = serde_json::from_str::<Value>(item.get()) else {
                    continue;
                };
                drop(item);
                let metadata = &live["metadata"];
                let key = (
                    metadata["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    metadata["name"].as_str().unwrap_or_default().to_owned(),
                );
                let Some((manifest, checksum, mark)) = desired.get(&key) else {
                    continue;
                };
                let state = if ignore_of(&live) == Ignore::Always {
                    Live::Ignored
                } else if in_place(&live, manifest, checksum, mark) {
                    Live::InPlace
                } else {
                    Live::Different
                };
                status.insert(key, state);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(status)
    }

    /// Syncs `loaded` into the cluster.
    pub async fn sync(&mut self, loaded: &LoadedManifests, config: &SyncConfig) -> SyncReport {
        let mut report = SyncReport::default();
        if let Err(e) = self.discover().await {
            report.errors.push(SyncError {
                id: "<cluster>".into(),
                source: String::new(),
                message: format!("failed to discover the API: {e}"),
            });
            report.gc_skipped = Some("the API could not be discovered".into());
            return report;
        }
        // Kinds in apply order, each with its manifests.
        let mut by_kind: BTreeMap<(u8, String, String), Vec<&Manifest>> = BTreeMap::new();
        for manifest in &loaded.manifests {
            let id = manifest.id.to_string();
            if !allowed(config, manifest) {
                report.excluded.push(id);
            } else if ignore_of_manifest(manifest) == Ignore::Always {
                report.ignored.push(id);
            } else {
                by_kind
                    .entry((
                        kind_rank(&manifest.kind),
                        manifest.kind.clone(),
                        manifest.api_version.clone(),
                    ))
                    .or_default()
                    .push(manifest);
            }
        }
        let mut crds_applied = false;
        for ((rank, kind, api_version), manifests) in by_kind {
            if crds_applied && rank > 1 {
                // CRDs were applied: their kinds must be servable before anything uses them.
                let _ = self.api.refresh(&self.client).await;
                crds_applied = false;
            }
            let Some((resource, caps)) = self.api.resolve(&api_version, &kind) else {
                for manifest in manifests {
                    report.errors.push(SyncError {
                        id: manifest.id.to_string(),
                        source: manifest.source.clone(),
                        message: format!(
                            "no resource of kind {kind} in {api_version} is served by the cluster"
                        ),
                    });
                }
                continue;
            };
            let desired: HashMap<(String, String), (&Manifest, String, String)> = manifests
                .iter()
                .map(|m| {
                    let key = (m.namespace.clone().unwrap_or_default(), m.name.clone());
                    (
                        key,
                        (*m, checksum(&m.bytes), gc_mark(&config.sync_set, &m.id)),
                    )
                })
                .collect();
            let live = match self.live_status(&resource, &desired).await {
                Ok(live) => live,
                Err(e) => {
                    for manifest in manifests {
                        report.errors.push(SyncError {
                            id: manifest.id.to_string(),
                            source: manifest.source.clone(),
                            message: format!("failed to list the live objects: {e}"),
                        });
                    }
                    continue;
                }
            };
            let mut to_apply = Vec::new();
            for (key, (manifest, checksum, mark)) in &desired {
                match live.get(key) {
                    Some(Live::Ignored) => report.ignored.push(manifest.id.to_string()),
                    Some(Live::InPlace) => report.unchanged += 1,
                    Some(Live::Different) | None => to_apply.push((*manifest, checksum, mark)),
                }
            }
            to_apply.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            let mut params = PatchParams::apply(FIELD_MANAGER);
            params.force = config.force_conflicts;
            // At most APPLY_CONCURRENCY applies exist at a time: each is created when a slot
            // frees, so memory does not grow with the number of manifests of a kind.
            let namespaced = caps.scope == Scope::Namespaced;
            let mut pending = to_apply.into_iter();
            let mut in_flight = futures::stream::FuturesUnordered::new();
            let mut outcomes = Vec::new();
            loop {
                while in_flight.len() < APPLY_CONCURRENCY {
                    let Some((manifest, checksum, mark)) = pending.next() else {
                        break;
                    };
                    let namespace = manifest.namespace.as_deref().filter(|_| namespaced);
                    let request = kube::core::Request::new(
                        <DynamicObject as kube::Resource>::url_path(&resource, namespace),
                    );
                    in_flight.push(apply_one(
                        &self.client,
                        request,
                        &params,
                        manifest,
                        checksum,
                        mark,
                    ));
                }
                match in_flight.next().await {
                    Some(outcome) => outcomes.push(outcome),
                    None => break,
                }
            }
            for (manifest, result) in outcomes {
                match result {
                    Ok(()) => {
                        report.applied.push(manifest.id.to_string());
                        if manifest.kind == "CustomResourceDefinition" {
                            crds_applied = true;
                            self.await_established(&manifest.name).await;
                        }
                    }
                    Err(message) => report.errors.push(SyncError {
                        id: manifest.id.to_string(),
                        source: manifest.source.clone(),
                        message,
                    }),
                }
            }
        }
        if crds_applied {
            let _ = self.api.refresh(&self.client).await;
        }
        report.applied.sort();
        report.errors.sort_by(|a, b| a.id.cmp(&b.id));
        self.collect_garbage(loaded, config, &mut report).await;
        report
    }

    async fn await_established(&self, name: &str) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let established = kube::runtime::wait::await_condition(
            crds,
            name,
            kube::runtime::conditions::is_crd_established(),
        );
        if tokio::time::timeout(CRD_ESTABLISHED_TIMEOUT, established)
            .await
            .is_err()
        {
            tracing::warn!(
                crd = name,
                "CustomResourceDefinition not Established in time"
            );
        }
    }

    async fn collect_garbage(
        &mut self,
        loaded: &LoadedManifests,
        config: &SyncConfig,
        report: &mut SyncReport,
    ) {
        if config.gc == GcMode::Off {
            return;
        }
        if !loaded.complete {
            let reason =
                "the manifests could not be read completely; garbage collection skipped".to_owned();
            tracing::error!("{reason}");
            report.gc_skipped = Some(reason);
            return;
        }
        let desired: HashSet<String> = loaded.manifests.iter().map(|m| m.id.to_string()).collect();
        let mut victims: Vec<(
            u8,
            String,
            ApiResource,
            ApiCapabilities,
            Option<String>,
            String,
        )> = Vec::new();
        let selector = ListParams::default().labels(SYNC_GC_MARK).limit(LIST_PAGE);
        for (resource, caps) in self.api.collectable() {
            let api = api_for(&self.client, &resource, &caps, None);
            // Metadata only, page by page: garbage collection needs names, labels and owners.
            let mut objects = Vec::new();
            let mut params = selector.clone();
            loop {
                match api.list_metadata(&params).await {
                    Ok(page) => {
                        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
                        objects.extend(page.items);
                        match next {
                            Some(token) => params = params.continue_token(&token),
                            None => break,
                        }
                    }
                    Err(e) => {
                        let reason = format!(
                            "failed to list {} for garbage collection: {e}; garbage collection skipped",
                            resource.plural
                        );
                        tracing::error!("{reason}");
                        report.gc_skipped = Some(reason);
                        return;
                    }
                }
            }
            for object in objects {
                let namespace = object.metadata.namespace.clone();
                let Some(name) = object.metadata.name.clone() else {
                    continue;
                };
                let id = ResourceId::new(namespace.as_deref().unwrap_or(""), &resource.kind, &name);
                let mark = object
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SYNC_GC_MARK));
                let ours = mark.is_some_and(|m| *m == gc_mark(&config.sync_set, &id));
                let owned = object
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|r| !r.is_empty());
                let in_scope = config.allowed_namespaces.is_empty()
                    || namespace
                        .as_ref()
                        .is_none_or(|ns| config.allowed_namespaces.contains(ns));
                if !ours || owned || !in_scope || desired.contains(&id.to_string()) {
                    continue;
                }
                let annotations = object.metadata.annotations.clone().unwrap_or_default();
                let ignore = Policies::from_annotations(&annotations)
                    .map(|p| p.ignore)
                    .unwrap_or_default();
                if ignore != Ignore::No {
                    continue;
                }
                victims.push((
                    kind_rank(&resource.kind),
                    id.to_string(),
                    resource.clone(),
                    caps.clone(),
                    namespace,
                    name,
                ));
            }
        }
        victims.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        for (_, id, resource, caps, namespace, name) in victims {
            if config.gc == GcMode::Dry {
                tracing::info!(%id, "garbage collection (dry run): would delete");
                report.would_delete.push(id);
                continue;
            }
            let api = api_for(&self.client, &resource, &caps, namespace.as_deref());
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(%id, "garbage collection: deleted");
                    report.deleted.push(id);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => report.errors.push(SyncError {
                    id,
                    source: String::new(),
                    message: format!("failed to delete: {e}"),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marks_and_checksums_are_flux_v1s() {
        assert_eq!(
            checksum("hello"),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        let id = ResourceId::new("default", "ConfigMap", "x");
        let mark = gc_mark("set", &id);
        assert!(mark.starts_with("sha256.") && !mark.contains('='), "{mark}");
        assert_eq!(mark, gc_mark("set", &id));
        assert_ne!(mark, gc_mark("other", &id));
    }

    #[test]
    fn live_objects_contain_their_manifest_despite_defaults() {
        let desired = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}, "metadata": {"labels": {"a": "b"}}});
        let live = json!({"spec": {"containers": [{"name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent"}], "dnsPolicy": "ClusterFirst"},
            "metadata": {"labels": {"a": "b", "extra": "y"}, "uid": "u"}, "status": {}});
        assert!(contains(&live, &desired));
        let edited = json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}, "metadata": {"labels": {"a": "b"}}});
        assert!(!contains(&edited, &desired));
        assert!(contains(&json!({"n": 1.0}), &json!({"n": 1})));
    }

    #[test]
    fn kinds_are_ranked_namespaces_then_crds_then_flux_v1_order() {
        let mut kinds = vec![
            "Deployment",
            "ConfigMap",
            "CustomResourceDefinition",
            "HelmRelease",
            "Namespace",
            "Service",
        ];
        kinds.sort_by_key(|k| kind_rank(k));
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "Service",
                "ConfigMap",
                "Deployment",
                "HelmRelease"
            ]
        );
    }
}

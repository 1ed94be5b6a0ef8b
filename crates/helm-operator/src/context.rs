//! What every reconcile shares: clients, helm drivers per version, chart sources, the values
//! composer, the worker limit, failure backoff, the index of ConfigMaps and Secrets that values
//! depend on, and the Event recorder. Also [`ReleaseObject`], the one interface over
//! `HelmRelease` and `FluxHelmRelease` that lets both kinds feed one reconcile path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{EventType, Recorder};
use kube::{Resource, ResourceExt};
use model::fluxhelmrelease::ChartRepoSettings;
use model::release::{NamespacedName, ReleaseDescription};
use model::{FluxHelmRelease, HelmRelease, HelmReleaseStatus, HelmVersion, OperatorDefaults};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::annotate::Annotator;
use crate::chart::credentials::PullCredentials;
use crate::chart::git::GitCharts;
use crate::chart::oci::OciCharts;
use crate::chart::repo::RepoCharts;
use crate::helm::HelmCli;
use crate::helm::storage::ReleaseStorage;
use crate::metrics::Metrics;
use crate::values::{ReferenceKind, ValuesComposer, ValuesReference};

/// A helm driver shared by every reconcile of its version.
pub type HelmHandle = Arc<HelmCli>;

/// The kinds the operator reconciles, seen through one interface.
pub trait ReleaseObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Short lowercase kind, as in resource IDs (`helmrelease`, `fluxhelmrelease`).
    const KIND: &'static str;

    /// The release this object asks for, every default resolved; the error is a message for
    /// status and Events (a bad spec).
    ///
    /// # Errors
    ///
    /// A message naming what is wrong with the spec.
    fn describe(&self, ctx: &Context) -> Result<ReleaseDescription, String>;

    /// The object's status, or the default when it has none yet.
    fn current_status(&self) -> HelmReleaseStatus;
}

impl ReleaseObject for HelmRelease {
    const KIND: &'static str = "helmrelease";

    fn describe(&self, ctx: &Context) -> Result<ReleaseDescription, String> {
        self.to_release(&ctx.defaults).map_err(|e| e.to_string())
    }

    fn current_status(&self) -> HelmReleaseStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl ReleaseObject for FluxHelmRelease {
    const KIND: &'static str = "fluxhelmrelease";

    fn describe(&self, ctx: &Context) -> Result<ReleaseDescription, String> {
        let Some(repo) = &ctx.fhr_repo else {
            return Err(
                "FluxHelmRelease charts come from the operator's --git-url, which is not set"
                    .to_owned(),
            );
        };
        self.to_release(repo, &ctx.defaults)
            .map_err(|e| e.to_string())
    }

    fn current_status(&self) -> HelmReleaseStatus {
        self.status.clone().unwrap_or_default()
    }
}

/// An object that asks for a release: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// [`ReleaseObject::KIND`].
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Owner {
    fn of<K: ReleaseObject>(object: &K) -> Self {
        Self {
            kind: K::KIND,
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }
}

/// Which objects' values read which ConfigMaps and Secrets, so a change to one re-reconciles
/// exactly those objects (the original only noticed on the periodic resync).
#[derive(Default)]
pub struct ReferenceIndex {
    inner: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    by_reference: HashMap<ValuesReference, HashSet<Owner>>,
    by_owner: HashMap<Owner, Vec<ValuesReference>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ReferenceIndex {
    /// Records the references of `object`'s values, replacing what was recorded before.
    pub fn record<K: ReleaseObject>(&self, object: &K, desc: &ReleaseDescription) {
        let owner = Owner::of(object);
        let references = crate::values::references(&desc.values_from);
        let mut index = lock(&self.inner);
        index.remove(&owner);
        for reference in &references {
            index
                .by_reference
                .entry(reference.clone())
                .or_default()
                .insert(owner.clone());
        }
        index.by_owner.insert(owner, references);
    }

    /// Forgets `object` (it is being deleted).
    pub fn forget<K: ReleaseObject>(&self, object: &K) {
        lock(&self.inner).remove(&Owner::of(object));
    }

    /// The objects of kind `K` whose values read this ConfigMap or Secret.
    #[must_use]
    pub fn owners(&self, kind: ReferenceKind, namespace: &str, name: &str) -> Vec<Owner> {
        let reference = ValuesReference {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        lock(&self.inner)
            .by_reference
            .get(&reference)
            .map(|owners| owners.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Index {
    fn remove(&mut self, owner: &Owner) {
        for reference in self.by_owner.remove(owner).unwrap_or_default() {
            if let Some(owners) = self.by_reference.get_mut(&reference) {
                owners.remove(owner);
                if owners.is_empty() {
                    self.by_reference.remove(&reference);
                }
            }
        }
    }
}

/// Everything a reconcile needs.
pub struct Context {
    /// The cluster.
    pub client: kube::Client,
    /// Metrics.
    pub metrics: Metrics,
    /// Defaults of releases that leave things unsaid.
    pub defaults: OperatorDefaults,
    /// Where FluxHelmRelease charts come from (`--git-url`); `None` when not set.
    pub fhr_repo: Option<ChartRepoSettings>,
    /// One driver per enabled helm version.
    pub helms: BTreeMap<HelmVersion, HelmHandle>,
    /// Release records from Helm's storage.
    pub storage: ReleaseStorage,
    /// Git chart sources.
    pub git: Arc<GitCharts>,
    /// Helm repository chart sources.
    pub repo: RepoCharts,
    /// OCI chart sources.
    pub oci: OciCharts,
    /// Values composition.
    pub values: ValuesComposer,
    /// Antecedent annotation and ownership.
    pub annotator: Annotator,
    /// `--update-chart-deps`.
    pub update_chart_deps: bool,
    /// `--charts-sync-interval`.
    pub resync_interval: Duration,
    /// ConfigMaps and Secrets values depend on.
    pub references: ReferenceIndex,
    /// Limits concurrent reconciles to `--workers` across both kinds.
    pub workers: Semaphore,
    /// `--workers`.
    pub worker_count: usize,
    /// Consecutive failures per object, for backoff.
    pub failures: Mutex<HashMap<Owner, u32>>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Objects seen per kind, summed into `flux_helm_operator_release_count`.
    pub counts: Mutex<BTreeMap<&'static str, usize>>,
    /// Git chart sources in use per kind, for dropping unused mirrors.
    pub git_sources: Mutex<BTreeMap<&'static str, Vec<model::release::GitChartSource>>>,
    /// Helm processes already added to `flux_helm_operator_helm_processes_total`, per version.
    pub helm_counted: Mutex<BTreeMap<HelmVersion, u64>>,
}

impl Context {
    /// The API of kind `K` in `namespace`.
    #[must_use]
    pub fn api<K: ReleaseObject>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The driver of `version`, if enabled.
    #[must_use]
    pub fn helm(&self, version: HelmVersion) -> Option<HelmHandle> {
        self.helms.get(&version).cloned()
    }

    /// Waits for a free worker; counted in `flux_helm_operator_release_queue_length_count`
    /// while waiting.
    pub async fn worker_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.metrics.queue_length.inc();
        let permit = self.workers.acquire().await.ok();
        self.metrics.queue_length.dec();
        permit
    }

    /// Records how many objects of `kind` the controller's cache holds.
    pub fn set_release_count(&self, kind: &'static str, count: usize) {
        let mut counts = lock(&self.counts);
        counts.insert(kind, count);
        let total: usize = counts.values().sum();
        self.metrics
            .release_count
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    /// Records the git chart sources the objects of `kind` use now.
    pub fn set_git_sources(
        &self,
        kind: &'static str,
        sources: Vec<model::release::GitChartSource>,
    ) {
        lock(&self.git_sources).insert(kind, sources);
    }

    /// Drops git mirrors no object uses any more (the original kept them until restart).
    pub async fn drop_unused_mirrors(&self) {
        let sources: Vec<model::release::GitChartSource> = lock(&self.git_sources)
            .values()
            .flatten()
            .cloned()
            .collect();
        for key in self.git.retain(sources.iter()).await {
            tracing::info!(mirror = %key, "dropped a git chart mirror no release uses");
        }
    }

    /// Brings `flux_helm_operator_helm_processes_total` up to the drivers' own counts.
    pub fn count_helm_processes(&self) {
        let mut counted = lock(&self.helm_counted);
        for (version, helm) in &self.helms {
            let now = helm.processes_started();
            let before = counted.insert(*version, now).unwrap_or(0);
            self.metrics
                .helm_processes
                .with_label_values(&[version.as_str()])
                .inc_by(now.saturating_sub(before));
        }
    }

    /// The periodic resync.
    #[must_use]
    pub fn resync(&self) -> Requeue {
        Requeue::requeue(self.resync_interval)
    }

    /// Requeue after a failure: 5 s doubling per consecutive failure, at most the resync
    /// interval.
    #[must_use]
    pub fn backoff<K: ReleaseObject>(&self, object: &K) -> Requeue {
        let mut failures = lock(&self.failures);
        let count = failures.entry(Owner::of(object)).or_insert(0);
        *count = count.saturating_add(1);
        let delay = Duration::from_secs(5)
            .saturating_mul(1 << (*count - 1).min(10))
            .min(self.resync_interval);
        Requeue::requeue(delay)
    }

    /// Resets the failure count of `object` after a success.
    pub fn forget_failures<K: ReleaseObject>(&self, object: &K) {
        lock(&self.failures).remove(&Owner::of(object));
    }

    /// Publishes an Event about `object`.
    pub async fn publish<K: ReleaseObject>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        crate::reconcile::publish_event(&self.recorder, object, type_, reason, note).await;
    }

    async fn secret(
        &self,
        secret: &NamespacedName,
    ) -> Result<BTreeMap<String, k8s_openapi::ByteString>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &secret.namespace);
        let found = api.get_opt(&secret.name).await.map_err(|e| {
            format!(
                "failed to read Secret {}/{}: {e}",
                secret.namespace, secret.name
            )
        })?;
        let Some(found) = found else {
            return Err(format!(
                "Secret {}/{} not found",
                secret.namespace, secret.name
            ));
        };
        Ok(found.data.unwrap_or_default())
    }

    /// HTTPS credentials of a git chart source from its `secretRef` (`username`, `password`).
    ///
    /// # Errors
    ///
    /// A message naming the Secret (never its content).
    pub async fn git_credentials(
        &self,
        secret: &NamespacedName,
    ) -> Result<git_mirror::Credentials, String> {
        let data = self.secret(secret).await?;
        let field = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .ok_or_else(|| {
                    format!(
                        "Secret {}/{} has no key {key:?}",
                        secret.namespace, secret.name
                    )
                })
        };
        git_mirror::Credentials::new(field("username")?, field("password")?).map_err(|e| {
            format!(
                "unusable credentials in Secret {}/{}: {e}",
                secret.namespace, secret.name
            )
        })
    }

    /// Chart pull credentials from a `chartPullSecret`.
    ///
    /// # Errors
    ///
    /// A message naming the Secret (never its content).
    pub async fn pull_credentials(
        &self,
        secret: &NamespacedName,
    ) -> Result<PullCredentials, String> {
        let data = self.secret(secret).await?;
        PullCredentials::from_secret_data(&data).map_err(|e| {
            format!(
                "failed to read chart pull credentials from Secret {}/{}: {e}",
                secret.namespace, secret.name
            )
        })
    }
}

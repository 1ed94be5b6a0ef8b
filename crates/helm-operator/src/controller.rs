//! The controllers: `kube::runtime::Controller` over `HelmRelease` and a second over
//! `FluxHelmRelease`, both feeding [`crate::reconcile`] through the finalizer
//! `helm.fluxcd.io/finalizer` (so a release is uninstalled even when its object was deleted while
//! the operator was down).
//!
//! Triggers besides the objects themselves: a periodic resync (`--charts-sync-interval`), a change
//! of any ConfigMap or Secret a release's values read (watched as metadata only, mapped through
//! [`crate::context::ReferenceIndex`]), and a git chart mirror that moved (every object whose
//! chart lives in that repository is reconciled; those whose chart path was not touched are found
//! in sync without a helm process). Concurrency is bounded by the `--workers` semaphore in the
//! context, shared by both kinds.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use model::release::ChartSource;

use crate::context::{Context, ReleaseObject};
use crate::reconcile::{self, ReconcileError};
use crate::values::ReferenceKind;

/// The finalizer that guarantees uninstall on deletion.
pub const FINALIZER: &str = "helm.fluxcd.io/finalizer";

/// Errors of one reconcile, as the controller sees them.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ControllerError(#[from] kube::runtime::finalizer::Error<ReconcileError>);

async fn reconcile<K: ReleaseObject>(
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Requeue, ControllerError> {
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = ctx.api::<K>(&namespace);
    let outcome = finalizer(&api, FINALIZER, object, |event| async {
        match event {
            Finalizer::Apply(object) => reconcile::apply(object, Arc::clone(&ctx)).await,
            Finalizer::Cleanup(object) => reconcile::cleanup(object, Arc::clone(&ctx)).await,
        }
    })
    .await;
    Ok(outcome?)
}

fn error_policy<K: ReleaseObject>(
    object: Arc<K>,
    error: &ControllerError,
    ctx: Arc<Context>,
) -> Requeue {
    tracing::warn!(
        kind = K::KIND,
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        %error,
        "reconcile failed"
    );
    ctx.backoff(&*object)
}

/// Objects of kind `K` whose values read a ConfigMap or Secret that changed.
fn referencing<K: ReleaseObject>(
    ctx: &Context,
    kind: ReferenceKind,
    namespace: Option<String>,
    name: String,
) -> Vec<ObjectRef<K>> {
    let namespace = namespace.unwrap_or_default();
    ctx.references
        .owners(kind, &namespace, &name)
        .into_iter()
        .filter(|owner| owner.kind == K::KIND)
        .map(|owner| ObjectRef::new(&owner.name).within(&owner.namespace))
        .collect()
}

/// Objects of kind `K` in `store` whose chart comes from the git repository `url`.
fn using_repository<K: ReleaseObject>(
    ctx: &Context,
    store: &Store<K>,
    url: &str,
) -> Vec<ObjectRef<K>> {
    store
        .state()
        .iter()
        .filter(|object| {
            object.describe(ctx).is_ok_and(
                |desc| matches!(&desc.chart, ChartSource::Git(source) if source.url == url),
            )
        })
        .map(|object| ObjectRef::from_obj(&**object))
        .collect()
}

/// A stream of objects to reconcile because the git mirror they use moved.
fn git_triggers<K: ReleaseObject>(
    ctx: Arc<Context>,
    store: Store<K>,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
    let moves = ctx.git.subscribe();
    futures::stream::unfold(moves, |mut moves| async move {
        loop {
            match moves.recv().await {
                Ok(moved) => return Some((moved, moves)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |moved| {
        let refs = using_repository(&ctx, &store, moved.url());
        futures::stream::iter(refs)
    })
}

/// A hash of what should trigger a reconcile: the generation (spec), the deletion mark and the
/// finalizers.
fn spec_or_lifecycle<K: ReleaseObject>(object: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = object.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    Some(hasher.finish())
}

/// Runs the controller of kind `K` until `shutdown` resolves (in-flight reconciles finish
/// first), keeping `flux_helm_operator_release_count` up to date.
pub async fn run<K: ReleaseObject>(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (objects, config_maps, secrets): (
        Api<K>,
        Api<PartialObjectMeta<ConfigMap>>,
        Api<PartialObjectMeta<Secret>>,
    ) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    // The cache keeps what routing needs (metadata and spec), not the managed fields or a
    // client-side apply's copy of the object, which can double an object's size; every
    // reconcile reads the current object itself.
    let (store, writer) = kube::runtime::reflector::store::<K>();
    let objects = watcher(objects, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|object: &mut K| {
            object.meta_mut().managed_fields = None;
            if let Some(annotations) = object.meta_mut().annotations.as_mut() {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .reflect(writer)
        .applied_objects()
        // The operator's own status writes do not trigger a reconcile (Helm Operator dropped
        // status-only updates too); spec changes, deletion and finalizer changes do.
        .predicate_filter(
            spec_or_lifecycle::<K>,
            kube::runtime::PredicateConfig::default(),
        );
    // At most `--workers` reconciles of this kind run at once: waiting reconciles stay cheap
    // object references in the controller's queue instead of in-flight futures each holding an
    // object and an API connection (a burst of new objects would otherwise open one each).
    let concurrency = u16::try_from(ctx.worker_count).unwrap_or(u16::MAX);
    let controller = Controller::for_stream(objects, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let counter = {
        let (ctx, store) = (Arc::clone(&ctx), store.clone());
        tokio::spawn(async move {
            let mut round: u64 = 0;
            loop {
                let objects = store.state();
                ctx.set_release_count(K::KIND, objects.len());
                // The git sources in use only matter to the minutely drop of unused mirrors:
                // describing every object is done every 30 s, not at every count.
                if round.is_multiple_of(6) {
                    let sources = objects
                        .iter()
                        .filter_map(|o| match o.describe(&ctx).ok()?.chart {
                            ChartSource::Git(source) => Some(source),
                            ChartSource::Repository(_) => None,
                        })
                        .collect();
                    ctx.set_git_sources(K::KIND, sources);
                }
                round += 1;
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        })
    };
    let (cm_ctx, secret_ctx) = (Arc::clone(&ctx), Arc::clone(&ctx));
    controller
        .watches_stream(
            watcher(config_maps, watcher::Config::default().any_semantic()).touched_objects(),
            move |meta| {
                referencing::<K>(
                    &cm_ctx,
                    ReferenceKind::ConfigMap,
                    meta.namespace(),
                    meta.name_any(),
                )
            },
        )
        .watches_stream(
            // Helm's own release records (`owner=helm`) are never values sources; leaving
            // them out spares an event per helm action.
            watcher(
                secrets,
                watcher::Config::default()
                    .any_semantic()
                    .labels("owner!=helm"),
            )
            .touched_objects(),
            move |meta| {
                referencing::<K>(
                    &secret_ctx,
                    ReferenceKind::Secret,
                    meta.namespace(),
                    meta.name_any(),
                )
            },
        )
        .reconcile_on(git_triggers(Arc::clone(&ctx), store))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, kind = K::KIND, "controller event");
            }
        })
        .await;
    counter.abort();
}

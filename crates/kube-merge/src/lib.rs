//! `kube-merge`: patch and merge semantics of the Kubernetes API server: JSON Patch (RFC 6902), JSON Merge
//! Patch (RFC 7386), strategic merge patch and server-side apply, over `serde_json::Value`.
//!
//! All functions here are pure: they take the live object and the request body and return the
//! new object or an error; the store decides what to persist. How a list merges depends on the
//! kind and the field, which [`MergeRules`] answers (built-in kinds from the `k8s.io/api` struct
//! tags, custom resources from their CRD schema).
//!
//! No Rust crate implements strategic merge patch or server-side apply, and the `json-patch`
//! crate fails the Go-compatible `test` of a missing member against `null` that kube-rs's
//! finalizer helper relies on, so all of it is written here. Used by `kube-sim`; it talks to
//! nothing.

pub mod apply;
pub mod builtin_rules;
pub mod crd_rules;
pub mod json_patch;
pub mod merge_patch;
pub mod strategic;

/// How a list field merges in strategic merge patch and server-side apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole. The default for every list not named otherwise.
    Atomic,
    /// A set of scalars, merged as a union (`metadata.finalizers`).
    Set,
    /// A list of objects merged element by element on these key fields (SSA `listMapKeys`).
    /// For strategic merge patch the first key is the patch merge key.
    Map(Vec<String>),
}

/// The merge rules of one kind: which lists merge by key.
///
/// `path` is the chain of field names from the object root to the list, with list positions
/// left out: the containers of a Deployment are at
/// `["spec", "template", "spec", "containers"]`, their ports at
/// `["spec", "template", "spec", "containers", "ports"]`.
pub trait MergeRules: Send + Sync {
    /// The list type of the list at `path`.
    fn list_type(&self, path: &[&str]) -> ListType;

    /// Whether a map at `path` carries strategic merge patch `$retainKeys` semantics
    /// (Deployment `spec.strategy`, PodSpec `volumes[*]`).
    fn retains_keys(&self, _path: &[&str]) -> bool {
        false
    }
}

/// Rules for kinds without any keyed lists: every list is atomic, except
/// `metadata.finalizers` (a set) and `metadata.ownerReferences` (a map keyed on `uid`), which are
/// the same for every kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct AtomicLists;

impl MergeRules for AtomicLists {
    fn list_type(&self, path: &[&str]) -> ListType {
        metadata_list_type(path).unwrap_or(ListType::Atomic)
    }
}

/// The list types under `metadata` that every kind shares.
#[must_use]
pub fn metadata_list_type(path: &[&str]) -> Option<ListType> {
    match path {
        ["metadata", "finalizers"] => Some(ListType::Set),
        ["metadata", "ownerReferences"] => Some(ListType::Map(vec!["uid".to_owned()])),
        _ => None,
    }
}

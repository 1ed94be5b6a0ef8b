//! Flux policy annotations, read under either prefix and written back under the one in use.
//!
//! Keys, as Flux v1 `pkg/cluster/kubernetes/resource/resource.go` and `pkg/policy/policy.go`
//! defined them (`P` is `fluxcd.io/` or the legacy `flux.weave.works/`, which mean the same):
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `P automated` | `"true"` | tags are bumped by image automation |
//! | `P locked` | `"true"` | nothing changes the images (`P locked_user`, `P locked_msg` say who and why) |
//! | `P ignore` | `"true"` / `sync_only` | not applied at all / applied but never garbage-collected |
//! | `P tag.<container>` | a [`TagFilter`] | which tags automation may choose; alias `filter.fluxcd.io/<container>` |
//! | `repository.fluxcd.io/<c>`, `registry.fluxcd.io/<c>`, `tag.fluxcd.io/<c>` | dot paths under `spec.values` | where a HelmRelease keeps an image (see [`crate::values_images`]) |
//!
//! Boolean policies count only when the value is exactly `"true"`, as in Flux v1. When the same
//! policy is spelled twice, `fluxcd.io/` wins over `filter.fluxcd.io/`, which wins over
//! `flux.weave.works/`. Writing a policy reuses the key that already holds it, else the prefix
//! the object already uses for its policies ([`Policies::key_for`]).
//!
//! This module reads and names keys; it does not edit YAML files.

use std::collections::BTreeMap;

use crate::policy::{PolicyError, TagFilter};

/// The current annotation prefix.
pub const CURRENT_PREFIX: &str = "fluxcd.io/";
/// The legacy annotation prefix, read and preserved as Flux v1 did.
pub const LEGACY_PREFIX: &str = "flux.weave.works/";
/// Prefix of the tag filter alias `filter.fluxcd.io/<container>`.
pub const FILTER_PREFIX: &str = "filter.fluxcd.io/";
/// Prefix of a HelmRelease image repository path annotation: `repository.fluxcd.io/<container>`.
pub const REPOSITORY_PATH_PREFIX: &str = "repository.fluxcd.io/";
/// Prefix of a HelmRelease image registry path annotation: `registry.fluxcd.io/<container>`.
pub const REGISTRY_PATH_PREFIX: &str = "registry.fluxcd.io/";
/// Prefix of a HelmRelease image tag path annotation: `tag.fluxcd.io/<container>`.
pub const TAG_PATH_PREFIX: &str = "tag.fluxcd.io/";
/// The annotation the Helm operator puts on every resource of a release:
/// `<namespace>:helmrelease/<name>` of the owning HelmRelease.
pub const ANTECEDENT: &str = "helm.fluxcd.io/antecedent";
/// Checksum of the applied manifest, stamped on every synced object (Flux v1 `sync.go`).
pub const SYNC_CHECKSUM: &str = "fluxcd.io/sync-checksum";
/// Label that marks objects of one sync set for garbage collection (Flux v1 `sync.go`).
pub const SYNC_GC_MARK: &str = "fluxcd.io/sync-gc-mark";

const AUTOMATED: &str = "automated";
const LOCKED: &str = "locked";
const LOCKED_USER: &str = "locked_user";
const LOCKED_MSG: &str = "locked_msg";
const IGNORE: &str = "ignore";
const TAG: &str = "tag.";
const TRUE: &str = "true";
const SYNC_ONLY: &str = "sync_only";

/// Errors from reading annotations. Each names the key and the offending value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// An annotation value in a manifest is not a string (`fluxcd.io/automated: true` instead
    /// of `"true"`); Kubernetes would reject the object.
    #[error(
        "annotation {key:?} has a non-string value {value} ({kind}); quote it, e.g. {key}: \"{value}\""
    )]
    NonStringValue {
        /// The annotation key.
        key: String,
        /// The value as YAML would print it.
        value: String,
        /// What the value is instead (`boolean`, `number`, ...).
        kind: &'static str,
    },
    /// An annotation key in a manifest is not a string.
    #[error("annotation key {key} is not a string")]
    NonStringKey {
        /// The key as YAML would print it.
        key: String,
    },
    /// `metadata.annotations` is not a mapping.
    #[error("metadata.annotations is not a mapping")]
    NotAMapping,
    /// A tag filter annotation does not parse.
    #[error("annotation {key:?}: {source}")]
    InvalidTagFilter {
        /// The annotation key.
        key: String,
        /// The parse error, which carries the value.
        #[source]
        source: PolicyError,
    },
}

/// Which of the two equivalent prefixes an object uses for its policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `fluxcd.io/`
    #[default]
    Current,
    /// `flux.weave.works/`
    Legacy,
}

impl Prefix {
    /// The prefix text, with its trailing slash.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => CURRENT_PREFIX,
            Self::Legacy => LEGACY_PREFIX,
        }
    }
}

/// The `ignore` policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Ignore {
    /// Synced and garbage-collected as usual.
    #[default]
    No,
    /// `"true"`: never applied.
    Always,
    /// `sync_only`: applied, never garbage-collected.
    SyncOnly,
}

/// One policy, named independently of its spelling.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKey {
    /// `automated`
    Automated,
    /// `locked`
    Locked,
    /// `locked_user`
    LockedUser,
    /// `locked_msg`
    LockedMsg,
    /// `ignore`
    Ignore,
    /// `tag.<container>`
    Tag(String),
}

impl PolicyKey {
    /// The key after the prefix (`automated`, `tag.app`).
    #[must_use]
    pub fn suffix(&self) -> String {
        match self {
            Self::Automated => AUTOMATED.to_owned(),
            Self::Locked => LOCKED.to_owned(),
            Self::LockedUser => LOCKED_USER.to_owned(),
            Self::LockedMsg => LOCKED_MSG.to_owned(),
            Self::Ignore => IGNORE.to_owned(),
            Self::Tag(container) => format!("{TAG}{container}"),
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Some(match suffix {
            AUTOMATED => Self::Automated,
            LOCKED => Self::Locked,
            LOCKED_USER => Self::LockedUser,
            LOCKED_MSG => Self::LockedMsg,
            IGNORE => Self::Ignore,
            _ => Self::Tag(
                suffix
                    .strip_prefix(TAG)
                    .filter(|c| !c.is_empty())?
                    .to_owned(),
            ),
        })
    }

    /// Every key that may spell this policy, for removing it whatever its spelling.
    #[must_use]
    pub fn all_spellings(&self) -> Vec<String> {
        let mut keys = vec![
            format!("{CURRENT_PREFIX}{}", self.suffix()),
            format!("{LEGACY_PREFIX}{}", self.suffix()),
        ];
        if let Self::Tag(container) = self {
            keys.push(format!("{FILTER_PREFIX}{container}"));
        }
        keys
    }
}

/// Precedence of a spelling when a policy is spelled more than once: lower wins.
fn rank(key: &str) -> u8 {
    if key.starts_with(CURRENT_PREFIX) {
        0
    } else if key.starts_with(FILTER_PREFIX) {
        1
    } else {
        2
    }
}

/// Splits a key into the policy it spells, if it spells one.
fn policy_of(key: &str) -> Option<PolicyKey> {
    if let Some(container) = key.strip_prefix(FILTER_PREFIX) {
        return (!container.is_empty()).then(|| PolicyKey::Tag(container.to_owned()));
    }
    let suffix = key
        .strip_prefix(CURRENT_PREFIX)
        .or_else(|| key.strip_prefix(LEGACY_PREFIX))?;
    PolicyKey::from_suffix(suffix)
}

/// The HelmRelease image path annotations of one container alias, as written (dot paths
/// relative to `spec.values`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePathAnnotations {
    /// `registry.fluxcd.io/<c>`
    pub registry: Option<String>,
    /// `repository.fluxcd.io/<c>`; required for the mapping to be used.
    pub repository: Option<String>,
    /// `tag.fluxcd.io/<c>`
    pub tag: Option<String>,
}

/// The policies of one workload or HelmRelease, read from its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    /// The prefix the object uses for its policies; new keys are written with it.
    pub prefix: Prefix,
    /// `automated: "true"`.
    pub automated: bool,
    /// `locked: "true"`.
    pub locked: bool,
    /// `locked_user`, who locked it.
    pub locked_user: Option<String>,
    /// `locked_msg`, why.
    pub locked_msg: Option<String>,
    /// `ignore`.
    pub ignore: Ignore,
    /// Tag filters per container name. A container without an entry uses `glob:*`.
    pub tag_filters: BTreeMap<String, TagFilter>,
    /// HelmRelease image path annotations per container alias.
    pub image_paths: BTreeMap<String, ImagePathAnnotations>,
    /// The key that currently holds each policy, so a write goes back to the same key.
    spellings: BTreeMap<PolicyKey, String>,
}

impl Policies {
    /// Reads the policies from an object's annotations (`metadata.annotations`).
    ///
    /// Unknown keys are ignored; values of boolean policies other than `"true"` mean false.
    ///
    /// # Errors
    ///
    /// [`AnnotationError::InvalidTagFilter`] naming the key and value of the first tag filter
    /// that does not parse. An object with a broken filter is not automated at all rather than
    /// automated with a filter it did not ask for.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, AnnotationError> {
        let mut chosen: BTreeMap<PolicyKey, (&str, &str)> = BTreeMap::new();
        let mut image_paths: BTreeMap<String, ImagePathAnnotations> = BTreeMap::new();
        let (mut current, mut legacy) = (false, false);
        for (key, value) in annotations {
            if let Some(alias) = key.strip_prefix(REPOSITORY_PATH_PREFIX) {
                image_paths.entry(alias.to_owned()).or_default().repository = Some(value.clone());
            } else if let Some(alias) = key.strip_prefix(REGISTRY_PATH_PREFIX) {
                image_paths.entry(alias.to_owned()).or_default().registry = Some(value.clone());
            } else if let Some(alias) = key.strip_prefix(TAG_PATH_PREFIX) {
                image_paths.entry(alias.to_owned()).or_default().tag = Some(value.clone());
            } else if let Some(policy) = policy_of(key) {
                current |= key.starts_with(CURRENT_PREFIX);
                legacy |= key.starts_with(LEGACY_PREFIX);
                let replace = chosen
                    .get(&policy)
                    .is_none_or(|(held, _)| rank(key) < rank(held));
                if replace {
                    chosen.insert(policy, (key, value));
                }
            }
        }
        let mut policies = Self {
            prefix: if legacy && !current {
                Prefix::Legacy
            } else {
                Prefix::Current
            },
            image_paths,
            ..Self::default()
        };
        for (policy, (key, value)) in chosen {
            match &policy {
                PolicyKey::Automated => policies.automated = value == TRUE,
                PolicyKey::Locked => policies.locked = value == TRUE,
                PolicyKey::LockedUser => policies.locked_user = Some(value.to_owned()),
                PolicyKey::LockedMsg => policies.locked_msg = Some(value.to_owned()),
                PolicyKey::Ignore => {
                    policies.ignore = match value {
                        TRUE => Ignore::Always,
                        SYNC_ONLY => Ignore::SyncOnly,
                        _ => Ignore::No,
                    }
                }
                PolicyKey::Tag(container) => {
                    let filter = TagFilter::parse(value).map_err(|source| {
                        AnnotationError::InvalidTagFilter {
                            key: key.to_owned(),
                            source,
                        }
                    })?;
                    policies.tag_filters.insert(container.clone(), filter);
                }
            }
            policies.spellings.insert(policy, key.to_owned());
        }
        Ok(policies)
    }

    /// The tag filter for `container`: its annotation, or `glob:*`.
    #[must_use]
    pub fn tag_filter(&self, container: &str) -> TagFilter {
        self.tag_filters.get(container).cloned().unwrap_or_default()
    }

    /// The key to write `policy` under: the key that holds it now, else the object's prefix
    /// followed by the policy name. This keeps legacy objects legacy and `filter.fluxcd.io/`
    /// filters where they are.
    #[must_use]
    pub fn key_for(&self, policy: &PolicyKey) -> String {
        self.spellings
            .get(policy)
            .cloned()
            .unwrap_or_else(|| format!("{}{}", self.prefix.as_str(), policy.suffix()))
    }
}

/// Reads `metadata.annotations` of a manifest parsed as untyped YAML, insisting that every key
/// and value is a string, as Kubernetes does.
///
/// A manifest without annotations gives an empty map.
///
/// # Errors
///
/// [`AnnotationError::NonStringValue`] (e.g. `fluxcd.io/automated: true` unquoted),
/// [`AnnotationError::NonStringKey`] or [`AnnotationError::NotAMapping`].
pub fn annotations_of_manifest(
    manifest: &serde_yaml::Value,
) -> Result<BTreeMap<String, String>, AnnotationError> {
    let Some(annotations) = manifest.get("metadata").and_then(|m| m.get("annotations")) else {
        return Ok(BTreeMap::new());
    };
    let mapping = match annotations {
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        serde_yaml::Value::Mapping(mapping) => mapping,
        _ => return Err(AnnotationError::NotAMapping),
    };
    let mut out = BTreeMap::new();
    for (key, value) in mapping {
        let serde_yaml::Value::String(key) = key else {
            return Err(AnnotationError::NonStringKey {
                key: yaml_text(key),
            });
        };
        let value = match value {
            serde_yaml::Value::String(text) => text.clone(),
            other => {
                return Err(AnnotationError::NonStringValue {
                    key: key.clone(),
                    value: yaml_text(other),
                    kind: yaml_kind(other),
                });
            }
        };
        out.insert(key.clone(), value);
    }
    Ok(out)
}

fn yaml_kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Bool(_) => "boolean",
        serde_yaml::Value::Number(_) => "number",
        serde_yaml::Value::String(_) => "string",
        serde_yaml::Value::Sequence(_) => "sequence",
        serde_yaml::Value::Mapping(_) => "mapping",
        serde_yaml::Value::Tagged(_) => "tagged value",
    }
}

fn yaml_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::Null => "null".to_owned(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map_or_else(|_| "?".to_owned(), |s| s.trim_end().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn both_prefixes_are_read_and_the_legacy_one_is_kept_for_writes() {
        let legacy = Policies::from_annotations(&map(&[
            ("flux.weave.works/automated", "true"),
            ("flux.weave.works/tag.chart-image", "glob:dev-*"),
        ]))
        .unwrap();
        assert!(legacy.automated);
        assert_eq!(legacy.prefix, Prefix::Legacy);
        assert_eq!(legacy.tag_filter("chart-image").to_string(), "glob:dev-*");
        assert_eq!(
            legacy.key_for(&PolicyKey::Locked),
            "flux.weave.works/locked"
        );
        assert_eq!(
            legacy.key_for(&PolicyKey::Tag("chart-image".into())),
            "flux.weave.works/tag.chart-image"
        );

        let current = Policies::from_annotations(&map(&[("fluxcd.io/automated", "true")])).unwrap();
        assert_eq!(current.prefix, Prefix::Current);
        assert_eq!(
            current.key_for(&PolicyKey::Tag("app".into())),
            "fluxcd.io/tag.app"
        );
    }

    #[test]
    fn filter_alias_is_read_and_written_back_in_place() {
        let policies =
            Policies::from_annotations(&map(&[("filter.fluxcd.io/chart-image", "semver:~1.0")]))
                .unwrap();
        assert_eq!(
            policies.tag_filter("chart-image").to_string(),
            "semver:~1.0"
        );
        assert_eq!(
            policies.key_for(&PolicyKey::Tag("chart-image".into())),
            "filter.fluxcd.io/chart-image"
        );
        assert_eq!(policies.tag_filter("other"), TagFilter::all());
    }

    #[test]
    fn current_prefix_wins_when_a_policy_is_spelled_twice() {
        let policies = Policies::from_annotations(&map(&[
            ("flux.weave.works/tag.app", "glob:old-*"),
            ("filter.fluxcd.io/app", "glob:mid-*"),
            ("fluxcd.io/tag.app", "glob:new-*"),
        ]))
        .unwrap();
        assert_eq!(policies.tag_filter("app").pattern(), "new-*");
        assert_eq!(policies.prefix, Prefix::Current);
    }

    #[test]
    fn booleans_count_only_when_exactly_true_and_ignore_has_two_forms() {
        let p = Policies::from_annotations(&map(&[
            ("fluxcd.io/automated", "True"),
            ("fluxcd.io/locked", "true"),
            ("fluxcd.io/locked_user", "jane"),
            ("fluxcd.io/locked_msg", "incident 42"),
            ("fluxcd.io/ignore", "sync_only"),
        ]))
        .unwrap();
        assert!(!p.automated);
        assert!(p.locked);
        assert_eq!(p.locked_user.as_deref(), Some("jane"));
        assert_eq!(p.locked_msg.as_deref(), Some("incident 42"));
        assert_eq!(p.ignore, Ignore::SyncOnly);
        let p = Policies::from_annotations(&map(&[("flux.weave.works/ignore", "true")])).unwrap();
        assert_eq!(p.ignore, Ignore::Always);
    }

    #[test]
    fn image_path_annotations_are_collected_per_alias() {
        let p = Policies::from_annotations(&map(&[
            ("repository.fluxcd.io/app", "app.image"),
            ("tag.fluxcd.io/app", "app.tag"),
            ("registry.fluxcd.io/db", "db.registry"),
        ]))
        .unwrap();
        assert_eq!(
            p.image_paths["app"].repository.as_deref(),
            Some("app.image")
        );
        assert_eq!(p.image_paths["app"].tag.as_deref(), Some("app.tag"));
        assert_eq!(p.image_paths["db"].repository, None);
        // `tag.fluxcd.io/app` is a path, not a filter.
        assert!(p.tag_filters.is_empty());
    }

    #[test]
    fn all_spellings_cover_both_prefixes_and_the_filter_alias() {
        assert_eq!(
            PolicyKey::Tag("app".into()).all_spellings(),
            vec![
                "fluxcd.io/tag.app",
                "flux.weave.works/tag.app",
                "filter.fluxcd.io/app"
            ]
        );
    }

    #[test]
    fn manifest_annotations_must_be_strings() {
        let manifest: serde_yaml::Value =
            serde_yaml::from_str("metadata:\n  annotations:\n    fluxcd.io/automated: \"true\"\n")
                .unwrap();
        assert_eq!(
            annotations_of_manifest(&manifest).unwrap()["fluxcd.io/automated"],
            "true"
        );
        let none: serde_yaml::Value = serde_yaml::from_str("metadata:\n  name: x\n").unwrap();
        assert!(annotations_of_manifest(&none).unwrap().is_empty());
    }
}

//! The internal release description both custom resources turn into, and release naming.
//!
//! The Helm operator has one code path: a `HelmRelease` ([`crate::HelmRelease::to_release`]) and a
//! `FluxHelmRelease` ([`crate::FluxHelmRelease::to_release`]) both become a [`ReleaseDescription`]
//! with every default resolved, so nothing downstream looks at the spec again.
//!
//! Release names follow Helm Operator 1.x (`GetReleaseName`): `releaseName` if given, else
//! `<namespace>-<name>`, or `<namespace>-<targetNamespace>-<name>` when the target namespace
//! differs from the object's own. The result must be a valid Helm 3 release name (lowercase
//! DNS-1123 labels joined by dots, at most 53 characters); Helm would refuse anything else, so
//! it is refused here first with a message that names the value.

use std::fmt;
use std::time::Duration;

use crate::helmrelease::{HelmVersion, Values};

/// The longest release name Helm 3 accepts (`releaseNameMaxLen`).
pub const MAX_RELEASE_NAME_LEN: usize = 53;

/// The namespace used when an object has none, as Helm Operator did.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A Flux resource ID: `<namespace>:<kind>/<name>`, kind in lowercase
/// (Flux v1 `pkg/resource/id.go`). `<cluster>` stands for the namespace of cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// Namespace, or `<cluster>`.
    pub namespace: String,
    /// Kind, lowercase (`helmrelease`, `deployment`).
    pub kind: String,
    /// Object name.
    pub name: String,
}

impl ResourceId {
    /// Builds an ID, lowercasing the kind and writing `<cluster>` for an empty namespace.
    #[must_use]
    pub fn new(namespace: &str, kind: &str, name: &str) -> Self {
        Self {
            namespace: if namespace.is_empty() {
                "<cluster>".to_owned()
            } else {
                namespace.to_owned()
            },
            kind: kind.to_ascii_lowercase(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.namespace, self.kind, self.name)
    }
}

/// Errors from turning a custom resource into a [`ReleaseDescription`]. Each names the object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither `chart.git` + `chart.path` nor `chart.repository` + `chart.name` +
    /// `chart.version` are set.
    #[error("failed to resolve the chart source of {resource}: {problem}")]
    NoChartSource {
        /// The object, as a resource ID.
        resource: ResourceId,
        /// What is set and what is missing.
        problem: String,
    },
    /// A `valuesFrom` entry sets none or more than one source.
    #[error("failed to read valuesFrom[{index}] of {resource}: {problem}")]
    InvalidValuesFrom {
        /// The object, as a resource ID.
        resource: ResourceId,
        /// Position in `valuesFrom`.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The release name given or derived is not a valid Helm release name.
    #[error("invalid release name for {resource}: {source}")]
    InvalidReleaseName {
        /// The object, as a resource ID.
        resource: ResourceId,
        /// Which name and why.
        #[source]
        source: ReleaseNameError,
    },
    /// A duration or count field is negative.
    #[error("invalid {field} of {resource}: {value} is negative")]
    Negative {
        /// The object, as a resource ID.
        resource: ResourceId,
        /// The field path (`spec.timeout`).
        field: &'static str,
        /// The value found.
        value: i64,
    },
}

/// A release name Helm would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseNameError {
    /// Longer than [`MAX_RELEASE_NAME_LEN`].
    #[error(
        "release name {name:?} is {len} characters long; Helm allows at most {MAX_RELEASE_NAME_LEN}"
    )]
    TooLong {
        /// The name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// Not lowercase DNS-1123 labels joined by dots.
    #[error(
        "release name {name:?} must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit"
    )]
    Malformed {
        /// The name.
        name: String,
    },
}

/// Checks a Helm 3 release name: `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`,
/// at most 53 characters (Helm `pkg/chartutil/validate_name.go`).
///
/// # Errors
///
/// [`ReleaseNameError`] naming the value.
pub fn validate_release_name(name: &str) -> Result<(), ReleaseNameError> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(ReleaseNameError::Malformed {
            name: name.to_owned(),
        });
    }
    if name.len() > MAX_RELEASE_NAME_LEN {
        return Err(ReleaseNameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    Ok(())
}

/// The release name of an object in `namespace` called `name`: `explicit` if given, else
/// `<namespace>-<name>`, or `<namespace>-<target>-<name>` when `target_namespace` is set and
/// differs from `namespace`. An empty namespace counts as `default`.
///
/// # Errors
///
/// [`ReleaseNameError`] when the result is not a valid Helm release name.
pub fn release_name(
    namespace: &str,
    name: &str,
    target_namespace: Option<&str>,
    explicit: Option<&str>,
) -> Result<String, ReleaseNameError> {
    let namespace = if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    };
    let derived = match (
        explicit.filter(|n| !n.is_empty()),
        target_namespace.filter(|t| !t.is_empty()),
    ) {
        (Some(explicit), _) => explicit.to_owned(),
        (None, Some(target)) if target != namespace => format!("{namespace}-{target}-{name}"),
        (None, _) => format!("{namespace}-{name}"),
    };
    validate_release_name(&derived)?;
    Ok(derived)
}

/// A namespaced object reference with the namespace resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamespacedName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Where the chart comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource {
    /// A chart directory in a git repository.
    Git(GitChartSource),
    /// A packaged chart from a Helm repository (HTTP index or `oci://`).
    Repository(RepoChartSource),
}

/// A chart directory in a git repository (`chart.git`, `chart.ref`, `chart.path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitChartSource {
    /// Remote URL: `git@host:org/repo`, `ssh://…`, `https://…`, `file://…`.
    pub url: String,
    /// Branch, tag or commit; already defaulted to the operator's `--git-default-ref`.
    pub git_ref: String,
    /// Chart directory relative to the repository root.
    pub path: String,
    /// Secret with `username` and `password` for HTTPS remotes.
    pub secret_ref: Option<NamespacedName>,
    /// Skip `helm dependency build`.
    pub skip_dep_update: bool,
}

/// A chart from a Helm repository (`chart.repository`, `chart.name`, `chart.version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoChartSource {
    /// Repository URL (`https://charts.example.com/`, `oci://registry/charts`).
    pub repository: String,
    /// Chart name.
    pub name: String,
    /// Chart version.
    pub version: String,
    /// Secret with repository credentials.
    pub pull_secret: Option<NamespacedName>,
}

/// One source of values, in merge order (later wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValuesSource {
    /// A key of a ConfigMap holding a YAML document.
    ConfigMapKey {
        /// The ConfigMap.
        object: NamespacedName,
        /// The key; defaults to `values.yaml`.
        key: String,
        /// Skip silently when missing or unreadable.
        optional: bool,
    },
    /// A key of a Secret holding a YAML document.
    SecretKey {
        /// The Secret.
        object: NamespacedName,
        /// The key; defaults to `values.yaml`.
        key: String,
        /// Skip silently when missing or unreadable.
        optional: bool,
    },
    /// A YAML document fetched over HTTP(S).
    ExternalUrl {
        /// The URL.
        url: String,
        /// Skip silently when missing or unreadable.
        optional: bool,
    },
    /// A file relative to the chart directory.
    ChartFile {
        /// The path.
        path: String,
        /// Skip silently when missing or unreadable.
        optional: bool,
    },
}

/// Automated rollback after a failed upgrade, resolved (`spec.rollback` with `enable: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// Retry the upgrade after a rollback even without a spec change.
    pub retry: bool,
    /// Retries allowed while `rollbackCount <= max_retries`; 0 means unlimited.
    pub max_retries: u64,
    /// `--no-hooks`.
    pub disable_hooks: bool,
    /// `--force`.
    pub force: bool,
    /// `--recreate-pods` (Helm 3 only).
    pub recreate: bool,
    /// Rollback timeout.
    pub timeout: Duration,
    /// `--wait`.
    pub wait: bool,
}

/// Release tests after install and upgrade, resolved (`spec.test` with `enable: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPolicy {
    /// A failed test leaves the release in place.
    pub ignore_failures: bool,
    /// Test timeout.
    pub timeout: Duration,
    /// Delete test pods afterwards.
    pub cleanup: bool,
}

/// Everything the operator needs to reconcile one release, with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseDescription {
    /// The object that asks for the release (`<ns>:helmrelease/<name>`); the value of the
    /// `helm.fluxcd.io/antecedent` annotation on the release's resources.
    pub owner: ResourceId,
    /// `metadata.generation` of the object, if known.
    pub generation: Option<i64>,
    /// The Helm release name.
    pub release_name: String,
    /// Namespace the release is installed into (and its storage kept in).
    pub target_namespace: String,
    /// Where the chart comes from.
    pub chart: ChartSource,
    /// Values sources, merged in this order before [`ReleaseDescription::values`].
    pub values_from: Vec<ValuesSource>,
    /// Inline values, merged last.
    pub values: Values,
    /// Which helm major version handles the release.
    pub helm_version: HelmVersion,
    /// Timeout of install, upgrade and uninstall.
    pub timeout: Duration,
    /// `--wait` on install and upgrade.
    pub wait: bool,
    /// `--reuse-values` on upgrade (only when `resetValues: false` was written).
    pub reuse_values: bool,
    /// `--force` on upgrade.
    pub force_upgrade: bool,
    /// `--skip-crds` on install.
    pub skip_crds: bool,
    /// `--history-max`; 0 means unlimited.
    pub max_history: u32,
    /// `--disable-openapi-validation`.
    pub disable_openapi_validation: bool,
    /// Rollback policy, `None` when disabled.
    pub rollback: Option<RollbackPolicy>,
    /// Test policy, `None` when disabled.
    pub test: Option<TestPolicy>,
}

/// Operator-wide defaults a release description is resolved against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorDefaults {
    /// `--git-default-ref`: the ref of git charts that name none (Helm Operator: `master`).
    pub git_default_ref: String,
    /// The first of `--enabled-helm-versions`: the version of releases that name none.
    pub helm_version: HelmVersion,
}

impl Default for OperatorDefaults {
    fn default() -> Self {
        Self {
            git_default_ref: "master".to_owned(),
            helm_version: HelmVersion::V3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_helm_operator() {
        assert_eq!(
            release_name("dev", "podinfo", None, None).unwrap(),
            "dev-podinfo"
        );
        assert_eq!(
            release_name("dev", "podinfo", Some("dev"), None).unwrap(),
            "dev-podinfo"
        );
        assert_eq!(
            release_name("dev", "podinfo", Some("apps"), None).unwrap(),
            "dev-apps-podinfo"
        );
        assert_eq!(
            release_name("", "podinfo", None, None).unwrap(),
            "default-podinfo"
        );
        assert_eq!(
            release_name("dev", "podinfo", Some("apps"), Some("mine")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn overlong_derived_names_are_refused_with_the_name() {
        let err = release_name(
            "a-rather-long-namespace",
            "with-a-rather-long-name",
            Some("and-a-target"),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseNameError::TooLong { .. }));
        assert!(
            err.to_string()
                .contains("a-rather-long-namespace-and-a-target-with-a-rather-long-name")
        );
    }

    #[test]
    fn resource_ids_print_as_flux_does() {
        assert_eq!(
            ResourceId::new("dev", "HelmRelease", "podinfo").to_string(),
            "dev:helmrelease/podinfo"
        );
        assert_eq!(
            ResourceId::new("", "Namespace", "dev").to_string(),
            "<cluster>:namespace/dev"
        );
    }
}

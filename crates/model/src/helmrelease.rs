//! The `HelmRelease` custom resource (`helm.fluxcd.io/v1`), as Helm Operator 1.x defined it.
//!
//! Field names, JSON spellings and defaults follow Helm Operator 1.4
//! (`pkg/apis/helm.fluxcd.io/v1/types_helmrelease.go`). Optional fields are `Option`s so an
//! object read from the cluster and written back keeps exactly what the user wrote; the
//! defaults live in methods ([`HelmReleaseSpec::timeout`], [`HelmReleaseSpec::wait`], ...)
//! and in [`HelmRelease::to_release`], never in scattered literals.
//!
//! `helmVersion` accepts `v3` and `v4` (Helm 2 and Tiller are gone). This module holds types and
//! their defaults; it does not talk to a cluster.

use std::time::Duration;

use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{ConditionStatus, ConditionType, Phase};
use crate::release::{
    ChartSource, GitChartSource, NamespacedName, OperatorDefaults, ReleaseDescription,
    RepoChartSource, ResourceId, RollbackPolicy, SpecError, TestPolicy, ValuesSource, release_name,
};

/// Default timeout of install, upgrade, uninstall, rollback and test, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 300;
/// Default number of release revisions kept.
pub const DEFAULT_MAX_HISTORY: i32 = 10;
/// Default number of upgrade retries after a rollback.
pub const DEFAULT_MAX_RETRIES: i64 = 5;
/// Default key read from a ConfigMap or Secret in `valuesFrom` and `valueFileSecrets`.
pub const DEFAULT_VALUES_KEY: &str = "values.yaml";

/// Free-form Helm values: a JSON/YAML object of any shape.
pub type Values = serde_json::Map<String, serde_json::Value>;

/// The desired state of a Helm release: chart, values and how to install and upgrade it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "helm.fluxcd.io",
    version = "v1",
    kind = "HelmRelease",
    plural = "helmreleases",
    namespaced,
    shortname = "hr",
    shortname = "hrs",
    status = "HelmReleaseStatus",
    doc = "HelmRelease is a Helm release described declaratively, reconciled by the Helm operator.",
    printcolumn = r#"{"name":"Release","type":"string","jsonPath":".status.releaseName","description":"The name of the Helm release"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"The phase of the last reconcile"}"#,
    printcolumn = r#"{"name":"ReleaseStatus","type":"string","jsonPath":".status.releaseStatus","description":"The status Helm reports for the release"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Released\")].message","description":"Message of the Released condition"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HelmReleaseSpec {
    /// Helm major version that handles this release (`v3` or `v4`); default: the operator's
    /// first enabled version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_version: Option<HelmVersion>,
    /// Release name; default `<namespace>-<name>`, or `<namespace>-<targetNamespace>-<name>`.
    /// Set it to adopt a release made with `helm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 53)
    )]
    pub release_name: Option<String>,
    /// Namespace to install the release into; default the HelmRelease's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Where the chart comes from: git (`git`, `ref`, `path`) or a Helm repository
    /// (`repository`, `name`, `version`).
    pub chart: ChartSpec,
    /// Inline values, merged last (highest priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub values: Option<Values>,
    /// Values sources merged in order, after `valueFileSecrets` and before `values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesFromSource>,
    /// Deprecated: Secrets (key `values.yaml`) merged before `valuesFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_file_secrets: Vec<LocalObjectReference>,
    /// Timeout of install, upgrade and uninstall in seconds; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    /// Wait until resources are ready; default true when rollback or test is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// Reset values on upgrade; only an explicit `false` reuses the previous release's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_values: Option<bool>,
    /// Force resource updates through a replacement strategy on upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_upgrade: Option<bool>,
    /// Do not install the chart's `crds/` directory.
    #[serde(default, rename = "skipCRDs", skip_serializing_if = "Option::is_none")]
    pub skip_crds: Option<bool>,
    /// Revisions kept in the release history; default 10, 0 for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_history: Option<i32>,
    /// Skip OpenAPI validation of the rendered manifests.
    #[serde(
        default,
        rename = "disableOpenAPIValidation",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_openapi_validation: Option<bool>,
    /// Automated rollback after a failed upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// Release tests after install and upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Test>,
}

/// A schema that accepts any object and keeps unknown fields.
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Helm major version.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum HelmVersion {
    /// Helm 3.
    #[serde(rename = "v3")]
    V3,
    /// Helm 4.
    #[serde(rename = "v4")]
    V4,
}

impl HelmVersion {
    /// `v3` or `v4`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3 => "v3",
            Self::V4 => "v4",
        }
    }
}

impl std::fmt::Display for HelmVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Helm version string that is neither `v3` nor `v4` (Helm v2 is not supported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse helm version {input:?}: expected \"v3\" or \"v4\"")]
pub struct ParseHelmVersionError {
    /// The rejected input.
    pub input: String,
}

impl std::str::FromStr for HelmVersion {
    type Err = ParseHelmVersionError;

    /// Parses `v3` or `v4` (exactly, as `spec.helmVersion` and `--enabled-helm-versions` spell
    /// them).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "v3" => Ok(Self::V3),
            "v4" => Ok(Self::V4),
            _ => Err(ParseHelmVersionError {
                input: input.to_owned(),
            }),
        }
    }
}

/// The chart source: git fields and repository fields share one object, as in Helm Operator.
///
/// Git is used when `git` and `path` are set; a repository when `repository`, `name` and
/// `version` are set. When both are complete, git wins, as it did in Helm Operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartSpec {
    /// Git remote URL (`git@host:org/repo`, `ssh://…`, `https://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    /// Branch, tag or commit; default the operator's `--git-default-ref`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Chart directory relative to the repository root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Secret with `username` and `password` for HTTPS remotes; namespace defaults to the
    /// HelmRelease's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectReference>,
    /// Do not run `helm dependency build` (dependencies are vendored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_dep_update: Option<bool>,
    /// Helm repository URL (`https://…` or `oci://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Chart name in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Exact chart version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Secret with the repository's `username` and `password` (or `.dockerconfigjson` for OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_pull_secret: Option<LocalObjectReference>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Object name.
    pub name: String,
}

/// A reference to an object, by default in the referring object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectReference {
    /// Object name.
    pub name: String,
    /// Namespace; default the referring object's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One entry of `valuesFrom`: exactly one of the four sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesFromSource {
    /// A ConfigMap key holding a YAML document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<OptionalKeySelector>,
    /// A Secret key holding a YAML document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<OptionalKeySelector>,
    /// A YAML document at an HTTP(S) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_source_ref: Option<ExternalSourceSelector>,
    /// A file of the chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_file_ref: Option<ChartFileSelector>,
}

/// A key of a ConfigMap or Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OptionalKeySelector {
    /// Object name.
    pub name: String,
    /// Namespace; default the HelmRelease's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Key; default `values.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Skip silently when the object or key is missing or does not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A YAML document fetched over HTTP(S).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalSourceSelector {
    /// The URL.
    pub url: String,
    /// Skip silently when it cannot be fetched or parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A values file inside the chart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChartFileSelector {
    /// Path relative to the chart directory.
    pub path: String,
    /// Skip silently when missing or unparsable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Automated rollback after a failed upgrade (or failed test after an upgrade).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    /// Roll back a failed upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Retry the upgrade after a rollback, even without a spec change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// Upgrade retries after rollbacks; default 5, 0 for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_retries: Option<i64>,
    /// Skip hooks during rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_hooks: Option<bool>,
    /// Force resource updates through delete and recreate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Restart pods of the rolled-back resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recreate: Option<bool>,
    /// Rollback timeout in seconds; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    /// Wait until resources are ready after the rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// Release tests after a successful install or upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Test {
    /// Run `helm test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Keep the release when tests fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_failures: Option<bool>,
    /// Test timeout in seconds; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    /// Delete test pods afterwards; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
}

/// The observed state of a HelmRelease, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmReleaseStatus {
    /// The `metadata.generation` the operator last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The phase of the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The Helm release name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Helm's own status of the release (`deployed`, `failed`, `pending-upgrade`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_status: Option<String>,
    /// Chart revision of the last successful release: git commit or chart version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Chart revision of the last install or upgrade attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// Rollbacks since the release was last `Released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_count: Option<i64>,
    /// Checksum of the composed values of the last install or upgrade attempt (the name
    /// `flux.weave.works/v1beta1` used): with `observedGeneration` and `lastAttemptedRevision`
    /// it identifies the attempt, so an unchanged spec that failed is not tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_checksum: Option<String>,
    /// Conditions, one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<HelmReleaseCondition>,
}

/// One condition of a HelmRelease; `reason` is the phase that set it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmReleaseCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// When the condition was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The phase that set the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn seconds(value: Option<i64>) -> Duration {
    Duration::from_secs(
        value
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            .max(0)
            .unsigned_abs(),
    )
}

impl HelmReleaseSpec {
    /// Whether automated rollback is on.
    #[must_use]
    pub fn rollback_enabled(&self) -> bool {
        self.rollback
            .as_ref()
            .and_then(|r| r.enable)
            .unwrap_or(false)
    }

    /// Whether release tests are on.
    #[must_use]
    pub fn test_enabled(&self) -> bool {
        self.test.as_ref().and_then(|t| t.enable).unwrap_or(false)
    }

    /// Install/upgrade/uninstall timeout: `timeout` seconds, default 300.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        seconds(self.timeout)
    }

    /// `wait`, defaulting to true when rollback or test is enabled.
    #[must_use]
    pub fn wait(&self) -> bool {
        self.wait
            .unwrap_or_else(|| self.rollback_enabled() || self.test_enabled())
    }

    /// Whether upgrades reuse the previous values: only when `resetValues: false` is written.
    #[must_use]
    pub fn reuse_values(&self) -> bool {
        self.reset_values == Some(false)
    }

    /// Revisions kept: `maxHistory`, default 10, 0 for unlimited.
    #[must_use]
    pub fn max_history(&self) -> u32 {
        u32::try_from(self.max_history.unwrap_or(DEFAULT_MAX_HISTORY)).unwrap_or(0)
    }

    /// The namespace the release goes into: `targetNamespace`, or `own_namespace`.
    #[must_use]
    pub fn target_namespace<'a>(&'a self, own_namespace: &'a str) -> &'a str {
        self.target_namespace
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(own_namespace)
    }

    /// Values sources in merge order: `valueFileSecrets` (as Secret keys `values.yaml` in
    /// `namespace`), then `valuesFrom`.
    ///
    /// # Errors
    ///
    /// [`SpecError::InvalidValuesFrom`] for an entry with none or several sources.
    pub fn values_sources(
        &self,
        namespace: &str,
        resource: &ResourceId,
    ) -> Result<Vec<ValuesSource>, SpecError> {
        let secrets = self
            .value_file_secrets
            .iter()
            .map(|secret| ValuesSource::SecretKey {
                object: NamespacedName {
                    namespace: namespace.to_owned(),
                    name: secret.name.clone(),
                },
                key: DEFAULT_VALUES_KEY.to_owned(),
                optional: false,
            });
        let from = self
            .values_from
            .iter()
            .enumerate()
            .map(|(index, source)| source.resolve(namespace, resource, index));
        secrets.map(Ok).chain(from).collect()
    }
}

impl Rollback {
    /// Upgrade retries after rollbacks, default 5, 0 for unlimited.
    #[must_use]
    pub fn max_retries(&self) -> u64 {
        self.max_retries
            .unwrap_or(DEFAULT_MAX_RETRIES)
            .max(0)
            .unsigned_abs()
    }

    /// Rollback timeout, default 300 s.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        seconds(self.timeout)
    }
}

impl Test {
    /// Test timeout, default 300 s.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        seconds(self.timeout)
    }

    /// Whether test pods are deleted afterwards, default true.
    #[must_use]
    pub fn cleanup(&self) -> bool {
        self.cleanup.unwrap_or(true)
    }

    /// Whether a failed test leaves the release in place, default false.
    #[must_use]
    pub fn ignore_failures(&self) -> bool {
        self.ignore_failures.unwrap_or(false)
    }
}

impl ValuesFromSource {
    fn resolve(
        &self,
        namespace: &str,
        resource: &ResourceId,
        index: usize,
    ) -> Result<ValuesSource, SpecError> {
        let key_source = |selector: &OptionalKeySelector| {
            (
                NamespacedName {
                    namespace: selector
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.to_owned()),
                    name: selector.name.clone(),
                },
                selector
                    .key
                    .clone()
                    .unwrap_or_else(|| DEFAULT_VALUES_KEY.to_owned()),
                selector.optional.unwrap_or(false),
            )
        };
        let mut found = Vec::new();
        if let Some(selector) = &self.config_map_key_ref {
            let (object, key, optional) = key_source(selector);
            found.push(ValuesSource::ConfigMapKey {
                object,
                key,
                optional,
            });
        }
        if let Some(selector) = &self.secret_key_ref {
            let (object, key, optional) = key_source(selector);
            found.push(ValuesSource::SecretKey {
                object,
                key,
                optional,
            });
        }
        if let Some(external) = &self.external_source_ref {
            found.push(ValuesSource::ExternalUrl {
                url: external.url.clone(),
                optional: external.optional.unwrap_or(false),
            });
        }
        if let Some(file) = &self.chart_file_ref {
            found.push(ValuesSource::ChartFile {
                path: file.path.clone(),
                optional: file.optional.unwrap_or(false),
            });
        }
        let count = found.len();
        match found.pop() {
            Some(source) if count == 1 => Ok(source),
            _ => Err(SpecError::InvalidValuesFrom {
                resource: resource.clone(),
                index,
                problem: format!(
                    "expected exactly one of configMapKeyRef, secretKeyRef, externalSourceRef, chartFileRef; found {count}"
                ),
            }),
        }
    }
}

impl ChartSpec {
    /// Classifies the chart source, resolving the git ref and secret namespaces.
    ///
    /// # Errors
    ///
    /// [`SpecError::NoChartSource`] when neither source is complete, saying which fields are
    /// set and which are missing.
    pub fn source(
        &self,
        namespace: &str,
        resource: &ResourceId,
        default_ref: &str,
    ) -> Result<ChartSource, SpecError> {
        let set = |field: &Option<String>| field.as_deref().is_some_and(|s| !s.is_empty());
        let text = |field: &Option<String>| field.clone().unwrap_or_default();
        if set(&self.git) && set(&self.path) {
            return Ok(ChartSource::Git(GitChartSource {
                url: text(&self.git),
                git_ref: self
                    .git_ref
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| default_ref.to_owned()),
                path: text(&self.path),
                secret_ref: self.secret_ref.as_ref().map(|r| NamespacedName {
                    namespace: r.namespace.clone().unwrap_or_else(|| namespace.to_owned()),
                    name: r.name.clone(),
                }),
                skip_dep_update: self.skip_dep_update.unwrap_or(false),
            }));
        }
        if set(&self.repository) && set(&self.name) && set(&self.version) {
            return Ok(ChartSource::Repository(RepoChartSource {
                repository: text(&self.repository),
                name: text(&self.name),
                version: text(&self.version),
                pull_secret: self.chart_pull_secret.as_ref().map(|s| NamespacedName {
                    namespace: namespace.to_owned(),
                    name: s.name.clone(),
                }),
            }));
        }
        let problem = if set(&self.git) || set(&self.path) {
            format!(
                "git source incomplete: chart.git is {} and chart.path is {}",
                describe(&self.git),
                describe(&self.path)
            )
        } else if set(&self.repository) || set(&self.name) || set(&self.version) {
            format!(
                "repository source incomplete: chart.repository is {}, chart.name is {} and chart.version is {}",
                describe(&self.repository),
                describe(&self.name),
                describe(&self.version)
            )
        } else {
            "neither chart.git and chart.path nor chart.repository, chart.name and chart.version are set".to_owned()
        };
        Err(SpecError::NoChartSource {
            resource: resource.clone(),
            problem,
        })
    }
}

fn describe(field: &Option<String>) -> String {
    match field.as_deref() {
        Some(value) if !value.is_empty() => format!("{value:?}"),
        _ => "missing".to_owned(),
    }
}

impl HelmRelease {
    /// The Flux resource ID `<namespace>:helmrelease/<name>`.
    #[must_use]
    pub fn resource_id(&self) -> ResourceId {
        ResourceId::new(
            &self.namespace().unwrap_or_default(),
            "HelmRelease",
            &self.name_any(),
        )
    }

    /// The Helm release name (see [`crate::release::release_name`]).
    ///
    /// # Errors
    ///
    /// [`SpecError::InvalidReleaseName`] naming the name, when Helm would refuse it.
    pub fn release_name(&self) -> Result<String, SpecError> {
        release_name(
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            self.spec.target_namespace.as_deref(),
            self.spec.release_name.as_deref(),
        )
        .map_err(|source| SpecError::InvalidReleaseName {
            resource: self.resource_id(),
            source,
        })
    }

    /// Resolves the spec against the operator defaults into the description the operator
    /// reconciles.
    ///
    /// # Errors
    ///
    /// [`SpecError`] naming this object: no complete chart source, an invalid release name,
    /// a malformed `valuesFrom` entry or a negative timeout or count.
    pub fn to_release(&self, defaults: &OperatorDefaults) -> Result<ReleaseDescription, SpecError> {
        let resource = self.resource_id();
        let namespace = self
            .namespace()
            .unwrap_or_else(|| crate::release::DEFAULT_NAMESPACE.to_owned());
        let spec = &self.spec;
        let non_negative = |field: &'static str, value: Option<i64>| match value {
            Some(v) if v < 0 => Err(SpecError::Negative {
                resource: resource.clone(),
                field,
                value: v,
            }),
            _ => Ok(()),
        };
        non_negative("spec.timeout", spec.timeout)?;
        non_negative("spec.maxHistory", spec.max_history.map(i64::from))?;
        non_negative(
            "spec.rollback.timeout",
            spec.rollback.as_ref().and_then(|r| r.timeout),
        )?;
        non_negative(
            "spec.rollback.maxRetries",
            spec.rollback.as_ref().and_then(|r| r.max_retries),
        )?;
        non_negative(
            "spec.test.timeout",
            spec.test.as_ref().and_then(|t| t.timeout),
        )?;
        Ok(ReleaseDescription {
            release_name: self.release_name()?,
            target_namespace: spec.target_namespace(&namespace).to_owned(),
            chart: spec
                .chart
                .source(&namespace, &resource, &defaults.git_default_ref)?,
            values_from: spec.values_sources(&namespace, &resource)?,
            values: spec.values.clone().unwrap_or_default(),
            helm_version: spec.helm_version.unwrap_or(defaults.helm_version),
            timeout: spec.timeout(),
            wait: spec.wait(),
            reuse_values: spec.reuse_values(),
            force_upgrade: spec.force_upgrade.unwrap_or(false),
            skip_crds: spec.skip_crds.unwrap_or(false),
            max_history: spec.max_history(),
            disable_openapi_validation: spec.disable_openapi_validation.unwrap_or(false),
            rollback: spec
                .rollback
                .as_ref()
                .filter(|_| spec.rollback_enabled())
                .map(|r| RollbackPolicy {
                    retry: r.retry.unwrap_or(false),
                    max_retries: r.max_retries(),
                    disable_hooks: r.disable_hooks.unwrap_or(false),
                    force: r.force.unwrap_or(false),
                    recreate: r.recreate.unwrap_or(false),
                    timeout: r.timeout(),
                    wait: r.wait.unwrap_or(false),
                }),
            test: spec
                .test
                .as_ref()
                .filter(|_| spec.test_enabled())
                .map(|t| TestPolicy {
                    ignore_failures: t.ignore_failures(),
                    timeout: t.timeout(),
                    cleanup: t.cleanup(),
                }),
            generation: self.metadata.generation,
            owner: resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(yaml: &str) -> HelmRelease {
        serde_yaml::from_str(yaml).unwrap()
    }

    const MINIMAL: &str = "
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata: {name: podinfo, namespace: dev}
spec:
  chart: {repository: 'https://stefanprodan.github.io/podinfo', name: podinfo, version: 6.5.0}
";

    #[test]
    fn defaults_match_helm_operator() {
        let hr = release(MINIMAL);
        let r = hr.to_release(&OperatorDefaults::default()).unwrap();
        assert_eq!(r.timeout, Duration::from_secs(300));
        assert_eq!(r.max_history, 10);
        assert!(!r.wait);
        assert!(!r.reuse_values);
        assert_eq!(r.helm_version, HelmVersion::V3);
        assert_eq!(r.release_name, "dev-podinfo");
        assert_eq!(r.target_namespace, "dev");
        assert!(r.rollback.is_none() && r.test.is_none());
        assert_eq!(r.owner.to_string(), "dev:helmrelease/podinfo");
    }

    #[test]
    fn wait_defaults_on_with_rollback_or_test() {
        let mut hr = release(MINIMAL);
        hr.spec.rollback = Some(Rollback {
            enable: Some(true),
            ..Rollback::default()
        });
        let r = hr.to_release(&OperatorDefaults::default()).unwrap();
        assert!(r.wait);
        let rollback = r.rollback.unwrap();
        assert_eq!(rollback.max_retries, 5);
        assert_eq!(rollback.timeout, Duration::from_secs(300));

        let mut hr = release(MINIMAL);
        hr.spec.test = Some(Test {
            enable: Some(true),
            ..Test::default()
        });
        hr.spec.wait = Some(false);
        let r = hr.to_release(&OperatorDefaults::default()).unwrap();
        assert!(!r.wait, "an explicit wait: false wins");
        assert!(r.test.unwrap().cleanup);
    }

    #[test]
    fn only_explicit_reset_values_false_reuses_values() {
        let mut hr = release(MINIMAL);
        assert!(!hr.spec.reuse_values());
        hr.spec.reset_values = Some(true);
        assert!(!hr.spec.reuse_values());
        hr.spec.reset_values = Some(false);
        assert!(hr.spec.reuse_values());
    }

    #[test]
    fn value_file_secrets_come_before_values_from() {
        let hr = release(
            "
metadata: {name: app, namespace: team}
spec:
  chart: {git: 'ssh://git@example.com/charts', path: charts/app}
  valueFileSecrets: [{name: legacy}]
  valuesFrom:
  - configMapKeyRef: {name: base, namespace: shared, optional: true}
  - secretKeyRef: {name: creds, key: prod.yaml}
  - externalSourceRef: {url: 'https://example.com/values.yaml'}
  - chartFileRef: {path: values-prod.yaml}
",
        );
        let r = hr.to_release(&OperatorDefaults::default()).unwrap();
        let names: Vec<String> = r
            .values_from
            .iter()
            .map(|s| match s {
                ValuesSource::ConfigMapKey {
                    object,
                    key,
                    optional,
                } => {
                    format!("cm {}/{} {key} {optional}", object.namespace, object.name)
                }
                ValuesSource::SecretKey {
                    object,
                    key,
                    optional,
                } => {
                    format!(
                        "secret {}/{} {key} {optional}",
                        object.namespace, object.name
                    )
                }
                ValuesSource::ExternalUrl { url, .. } => format!("url {url}"),
                ValuesSource::ChartFile { path, .. } => format!("file {path}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "secret team/legacy values.yaml false",
                "cm shared/base values.yaml true",
                "secret team/creds prod.yaml false",
                "url https://example.com/values.yaml",
                "file values-prod.yaml",
            ]
        );
        match r.chart {
            ChartSource::Git(git) => {
                assert_eq!(git.git_ref, "master");
                assert_eq!(git.path, "charts/app");
            }
            ChartSource::Repository(_) => panic!("expected a git chart source"),
        }
    }

    #[test]
    fn json_spellings_of_acronym_fields_are_kept() {
        let hr = release(
            "
metadata: {name: app, namespace: team}
spec:
  chart: {repository: 'https://x', name: app, version: 1.0.0}
  skipCRDs: true
  disableOpenAPIValidation: true
",
        );
        assert_eq!(hr.spec.skip_crds, Some(true));
        assert_eq!(hr.spec.disable_openapi_validation, Some(true));
        let json = serde_json::to_value(&hr.spec).unwrap();
        assert_eq!(json["skipCRDs"], true);
        assert_eq!(json["disableOpenAPIValidation"], true);
    }
}

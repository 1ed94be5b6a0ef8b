//! The `FluxHelmRelease` custom resource (`helm.integrations.flux.weave.works/v1alpha2`).
//!
//! The predecessor of `HelmRelease`, still found in config repos (see the project seeds): the
//! chart is a directory `chartGitPath` under the operator-wide `--git-charts-path` of the one
//! operator-wide repository `--git-url` at `--git-branch` (Flux `integrations/apis/…/v1alpha2`).
//! [`FluxHelmRelease::to_release`] turns it, with those settings, into the same
//! [`ReleaseDescription`] a `HelmRelease` gives, so the operator has one code path; everything
//! the old API could not say takes the `HelmRelease` defaults.

use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::helmrelease::{
    DEFAULT_MAX_HISTORY, DEFAULT_TIMEOUT_SECONDS, DEFAULT_VALUES_KEY, LocalObjectReference, Values,
};
use crate::release::{
    ChartSource, GitChartSource, NamespacedName, OperatorDefaults, ReleaseDescription, ResourceId,
    SpecError, ValuesSource, release_name,
};

/// The old single-repo chart release: a chart directory of the config repo and its values.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "helm.integrations.flux.weave.works",
    version = "v1alpha2",
    kind = "FluxHelmRelease",
    plural = "fluxhelmreleases",
    namespaced,
    shortname = "fhr",
    status = "FluxHelmReleaseStatus",
    doc = "FluxHelmRelease is the v1alpha2 predecessor of HelmRelease: a chart directory of the operator's git repository and its values.",
    printcolumn = r#"{"name":"ReleaseStatus","type":"string","jsonPath":".status.releaseStatus","description":"The status Helm reports for the release"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FluxHelmReleaseSpec {
    /// Chart directory, relative to the operator's `--git-charts-path`.
    pub chart_git_path: String,
    /// Release name; default `<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub release_name: Option<String>,
    /// Inline values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helmrelease::free_form_object")]
    pub values: Option<Values>,
    /// Secrets in the same namespace whose `values.yaml` key is merged before `values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_file_secrets: Vec<LocalObjectReference>,
}

/// The observed state of a FluxHelmRelease: the v1alpha2 operator wrote only `releaseStatus`;
/// this operator writes the full `HelmRelease` status (phase, conditions, revisions), a superset
/// old readers of `releaseStatus` still understand.
pub type FluxHelmReleaseStatus = crate::helmrelease::HelmReleaseStatus;

/// The operator-wide chart repository a FluxHelmRelease's `chartGitPath` lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartRepoSettings {
    /// `--git-url`.
    pub git_url: String,
    /// `--git-branch`, default `master`.
    pub git_branch: String,
    /// `--git-charts-path`, default `charts`.
    pub charts_path: String,
}

impl ChartRepoSettings {
    /// Settings for `git_url` with the v1alpha2 operator's defaults: branch `master`, charts
    /// under `charts`.
    #[must_use]
    pub fn new(git_url: &str) -> Self {
        Self {
            git_url: git_url.to_owned(),
            git_branch: "master".to_owned(),
            charts_path: "charts".to_owned(),
        }
    }
}

/// `base/rel` without doubled or trailing slashes; `rel` alone when `base` is empty or `.`.
fn join_path(base: &str, rel: &str) -> String {
    let base = base.trim_matches('/');
    let rel = rel.trim_matches('/');
    match base {
        "" | "." => rel.to_owned(),
        _ => format!("{base}/{rel}"),
    }
}

impl FluxHelmRelease {
    /// The Flux resource ID `<namespace>:fluxhelmrelease/<name>`.
    #[must_use]
    pub fn resource_id(&self) -> ResourceId {
        ResourceId::new(
            &self.namespace().unwrap_or_default(),
            "FluxHelmRelease",
            &self.name_any(),
        )
    }

    /// Resolves this object, with the operator's chart repository settings, into the release
    /// description a `HelmRelease` with `chart.git = git_url`, `chart.ref = git_branch` and
    /// `chart.path = <charts_path>/<chartGitPath>` would give (the documented v1alpha2 to v1
    /// migration).
    ///
    /// # Errors
    ///
    /// [`SpecError::NoChartSource`] when `chartGitPath` or the repository URL is empty,
    /// [`SpecError::InvalidReleaseName`] naming the release name when Helm would refuse it.
    pub fn to_release(
        &self,
        repo: &ChartRepoSettings,
        defaults: &OperatorDefaults,
    ) -> Result<ReleaseDescription, SpecError> {
        let resource = self.resource_id();
        let namespace = self
            .namespace()
            .unwrap_or_else(|| crate::release::DEFAULT_NAMESPACE.to_owned());
        let name = release_name(
            &namespace,
            &self.name_any(),
            None,
            self.spec.release_name.as_deref(),
        )
        .map_err(|source| SpecError::InvalidReleaseName {
            resource: resource.clone(),
            source,
        })?;
        let chart_path = self.spec.chart_git_path.trim_matches('/');
        if chart_path.is_empty() || repo.git_url.is_empty() {
            return Err(SpecError::NoChartSource {
                resource,
                problem: format!(
                    "spec.chartGitPath is {:?} and the operator's --git-url is {:?}; both are needed",
                    self.spec.chart_git_path, repo.git_url
                ),
            });
        }
        let values_from = self
            .spec
            .value_file_secrets
            .iter()
            .map(|secret| ValuesSource::SecretKey {
                object: NamespacedName {
                    namespace: namespace.clone(),
                    name: secret.name.clone(),
                },
                key: DEFAULT_VALUES_KEY.to_owned(),
                optional: false,
            })
            .collect();
        Ok(ReleaseDescription {
            release_name: name,
            target_namespace: namespace,
            chart: ChartSource::Git(GitChartSource {
                url: repo.git_url.clone(),
                git_ref: repo.git_branch.clone(),
                path: join_path(&repo.charts_path, chart_path),
                secret_ref: None,
                skip_dep_update: false,
            }),
            values_from,
            values: self.spec.values.clone().unwrap_or_default(),
            helm_version: defaults.helm_version,
            timeout: std::time::Duration::from_secs(DEFAULT_TIMEOUT_SECONDS.unsigned_abs()),
            wait: false,
            reuse_values: false,
            force_upgrade: false,
            skip_crds: false,
            max_history: DEFAULT_MAX_HISTORY.unsigned_abs(),
            disable_openapi_validation: false,
            rollback: None,
            test: None,
            generation: self.metadata.generation,
            owner: resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_paths_are_joined_under_the_charts_path() {
        assert_eq!(join_path("charts", "mongodb"), "charts/mongodb");
        assert_eq!(join_path("charts/", "/mongodb/"), "charts/mongodb");
        assert_eq!(join_path("", "mongodb"), "mongodb");
        assert_eq!(join_path(".", "mongodb"), "mongodb");
    }
}

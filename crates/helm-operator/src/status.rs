//! The status contract of HelmRelease and FluxHelmRelease (Helm Operator `pkg/status`): phases
//! set conditions with reason = phase ([`model::Phase::condition_updates`]), with the side
//! effects the original had (`Released=True` removes `RolledBack` and resets `rollbackCount`;
//! `RolledBack=True` counts one more rollback), `lastTransitionTime` kept while a condition's
//! status does not change.
//!
//! Status is written by server-side apply on the status subresource with one field manager,
//! [`FIELD_MANAGER`], and only when it differs from what the object already carries, so a no-op
//! resync writes nothing. Unlike the original, the status always goes to the object's own
//! namespace (never the release's target namespace).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use model::{ConditionStatus, ConditionType, HelmReleaseStatus, Phase};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "helm-operator";

/// Errors writing status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The API server refused the status patch.
    #[error("failed to write the status of {namespace}/{name}")]
    Write {
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The current time as a Kubernetes `Time` (whole seconds, as the API server stores it).
#[must_use]
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Records `phase` in `status`: the phase itself and the conditions it sets, with `message`.
///
/// `ignore_test_failures` is `spec.test.ignoreFailures` (a failed test then leaves `Released`
/// alone). Conditions whose status does not change keep their `lastTransitionTime`.
pub fn set_phase(
    status: &mut HelmReleaseStatus,
    phase: Phase,
    message: &str,
    ignore_test_failures: bool,
    now: &Time,
) {
    status.phase = Some(phase);
    for (kind, value) in phase.condition_updates(ignore_test_failures) {
        set_condition(status, kind, value, phase, message, now);
        match (kind, value) {
            (ConditionType::Released, ConditionStatus::True) => {
                status
                    .conditions
                    .retain(|c| c.type_ != ConditionType::RolledBack);
                status.rollback_count = Some(0);
            }
            (ConditionType::RolledBack, ConditionStatus::True) => {
                status.rollback_count = Some(status.rollback_count.unwrap_or(0) + 1);
            }
            _ => {}
        }
    }
}

fn set_condition(
    status: &mut HelmReleaseStatus,
    kind: ConditionType,
    value: ConditionStatus,
    phase: Phase,
    message: &str,
    now: &Time,
) {
    let existing = status.conditions.iter_mut().find(|c| c.type_ == kind);
    match existing {
        Some(condition) => {
            if condition.status != value {
                condition.last_transition_time = Some(now.clone());
            }
            condition.status = value;
            condition.last_update_time = Some(now.clone());
            condition.reason = Some(phase.as_str().to_owned());
            condition.message = Some(message.to_owned());
        }
        None => status
            .conditions
            .push(model::helmrelease::HelmReleaseCondition {
                type_: kind,
                status: value,
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now.clone()),
                reason: Some(phase.as_str().to_owned()),
                message: Some(message.to_owned()),
            }),
    }
    status.conditions.sort_by_key(|c| c.type_);
}

/// The status of condition `kind`, if present.
#[must_use]
pub fn condition(status: &HelmReleaseStatus, kind: ConditionType) -> Option<ConditionStatus> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status)
}

/// Writes `status` to the object `namespace/name` by server-side apply on its status
/// subresource, as [`FIELD_MANAGER`], forcing ownership of the fields (the operator is the only
/// writer of status).
///
/// # Errors
///
/// [`StatusError::Write`] when the API server refuses the patch.
pub async fn write<K>(
    api: &Api<K>,
    namespace: &str,
    name: &str,
    status: &HelmReleaseStatus,
) -> Result<(), StatusError>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| StatusError::Write {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap_or_default())
    }

    #[test]
    fn phases_set_conditions_with_the_phase_as_reason() {
        let mut status = HelmReleaseStatus::default();
        set_phase(&mut status, Phase::Installing, "installing", false, &at(10));
        assert_eq!(
            condition(&status, ConditionType::Deployed),
            Some(ConditionStatus::Unknown)
        );
        set_phase(&mut status, Phase::Deployed, "installed", false, &at(20));
        set_phase(&mut status, Phase::Succeeded, "done", false, &at(20));
        assert_eq!(status.phase, Some(Phase::Succeeded));
        let released = status
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Released)
            .unwrap_or_else(|| panic!("Released condition in {status:?}"));
        assert_eq!(released.status, ConditionStatus::True);
        assert_eq!(released.reason.as_deref(), Some("Succeeded"));
        assert_eq!(released.message.as_deref(), Some("done"));
    }

    #[test]
    fn rollbacks_are_counted_and_reset_by_a_release() {
        let mut status = HelmReleaseStatus::default();
        set_phase(&mut status, Phase::RolledBack, "rolled back", false, &at(1));
        set_phase(&mut status, Phase::RolledBack, "rolled back", false, &at(2));
        assert_eq!(status.rollback_count, Some(2));
        set_phase(&mut status, Phase::Succeeded, "released", false, &at(3));
        assert_eq!(status.rollback_count, Some(0));
        assert_eq!(condition(&status, ConditionType::RolledBack), None);
    }

    #[test]
    fn transition_time_changes_only_with_the_condition_status() {
        let mut status = HelmReleaseStatus::default();
        set_phase(&mut status, Phase::Failed, "one", false, &at(1));
        set_phase(&mut status, Phase::Failed, "two", false, &at(2));
        let released = &status.conditions[0];
        assert_eq!(released.last_transition_time, Some(at(1)));
        assert_eq!(released.last_update_time, Some(at(2)));
        set_phase(&mut status, Phase::Succeeded, "three", false, &at(3));
        assert_eq!(status.conditions[0].last_transition_time, Some(at(3)));
    }

    #[test]
    fn an_ignored_test_failure_leaves_released_alone() {
        let mut status = HelmReleaseStatus::default();
        set_phase(&mut status, Phase::Succeeded, "ok", true, &at(1));
        set_phase(&mut status, Phase::TestFailed, "test failed", true, &at(2));
        assert_eq!(
            condition(&status, ConditionType::Released),
            Some(ConditionStatus::True)
        );
        assert_eq!(
            condition(&status, ConditionType::Tested),
            Some(ConditionStatus::False)
        );
    }
}

//! HelmRelease phases, condition types and condition statuses: the one place they are defined.
//!
//! As Helm Operator 1.4 (`pkg/apis/helm.fluxcd.io/v1/types_helmrelease.go`,
//! `pkg/status/conditions.go`): a reconcile moves the release through [`Phase`]s; each phase sets
//! some [`ConditionType`]s, and the `reason` of a condition is the name of the phase that set it.
//! [`Phase::condition_updates`] is that table. The Helm 2 to 3 `Migrating` phase is not here:
//! Helm 2 is not supported (the original also rejected that phase through its own CRD enum).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A step of the release lifecycle, written to `status.phase` and used as condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// The chart was fetched and its revision differs from `lastAttemptedRevision`.
    ChartFetched,
    /// The chart could not be fetched (git mirror not ready, download or dependency failure).
    ChartFetchFailed,
    /// `helm install` is running.
    Installing,
    /// `helm upgrade` is running.
    Upgrading,
    /// The install or upgrade finished.
    Deployed,
    /// The install or upgrade failed.
    DeployFailed,
    /// `helm test` is running.
    Testing,
    /// `helm test` failed.
    TestFailed,
    /// `helm test` passed.
    Tested,
    /// The release is processed and in sync with the spec; `status.revision` is recorded.
    Succeeded,
    /// The release could not be processed (values, ownership, release state, helm version).
    Failed,
    /// `helm rollback` is running.
    RollingBack,
    /// The rollback finished.
    RolledBack,
    /// The rollback failed.
    RollbackFailed,
}

/// The condition types of a HelmRelease (`status.conditions[].type`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum ConditionType {
    /// Whether the chart was fetched.
    ChartFetched,
    /// Whether the last install or upgrade succeeded.
    Deployed,
    /// Whether the release as a whole is in the state the spec asks for.
    Released,
    /// Whether a rollback happened (and succeeded) for the current spec.
    RolledBack,
    /// Whether the release tests passed.
    Tested,
}

/// The status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// `"True"`
    True,
    /// `"False"`
    False,
    /// `"Unknown"`: the action that decides it is running.
    Unknown,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Self; 14] = [
        Self::ChartFetched,
        Self::ChartFetchFailed,
        Self::Installing,
        Self::Upgrading,
        Self::Deployed,
        Self::DeployFailed,
        Self::Testing,
        Self::TestFailed,
        Self::Tested,
        Self::Succeeded,
        Self::Failed,
        Self::RollingBack,
        Self::RolledBack,
        Self::RollbackFailed,
    ];

    /// The phase name, which is also the `reason` of the conditions it sets.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChartFetched => "ChartFetched",
            Self::ChartFetchFailed => "ChartFetchFailed",
            Self::Installing => "Installing",
            Self::Upgrading => "Upgrading",
            Self::Deployed => "Deployed",
            Self::DeployFailed => "DeployFailed",
            Self::Testing => "Testing",
            Self::TestFailed => "TestFailed",
            Self::Tested => "Tested",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::RollingBack => "RollingBack",
            Self::RolledBack => "RolledBack",
            Self::RollbackFailed => "RollbackFailed",
        }
    }

    /// The conditions this phase sets, as `(type, status)` pairs with reason [`Phase::as_str`].
    ///
    /// `test_ignore_failures` is `spec.test.ignoreFailures`: when set, `TestFailed` leaves
    /// `Released` alone. Side effects that are not conditions (a `Released=True` removes the
    /// `RolledBack` condition and resets `rollbackCount`; `RolledBack=True` increments it) are
    /// the status writer's job.
    #[must_use]
    pub fn condition_updates(
        self,
        test_ignore_failures: bool,
    ) -> Vec<(ConditionType, ConditionStatus)> {
        use ConditionStatus::{False, True, Unknown};
        use ConditionType as C;
        match self {
            Self::ChartFetched => vec![(C::ChartFetched, True)],
            Self::ChartFetchFailed => vec![(C::ChartFetched, False), (C::Released, False)],
            Self::Installing | Self::Upgrading => vec![(C::Deployed, Unknown)],
            Self::Deployed => vec![(C::Deployed, True)],
            Self::DeployFailed => vec![(C::Deployed, False), (C::Released, False)],
            Self::Testing => vec![(C::Tested, Unknown)],
            Self::Tested => vec![(C::Tested, True)],
            Self::TestFailed if test_ignore_failures => vec![(C::Tested, False)],
            Self::TestFailed => vec![(C::Tested, False), (C::Released, False)],
            Self::Succeeded => vec![(C::Released, True)],
            Self::Failed => vec![(C::Released, False)],
            Self::RollingBack => vec![(C::RolledBack, Unknown)],
            Self::RolledBack => vec![(C::RolledBack, True)],
            Self::RollbackFailed => vec![(C::RolledBack, False)],
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ConditionType {
    /// The type name as written in `status.conditions[].type`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChartFetched => "ChartFetched",
            Self::Deployed => "Deployed",
            Self::Released => "Released",
            Self::RolledBack => "RolledBack",
            Self::Tested => "Tested",
        }
    }
}

impl ConditionStatus {
    /// `"True"`, `"False"` or `"Unknown"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_serialize_as_their_reason() {
        for phase in Phase::ALL {
            let json = serde_json::to_value(phase).unwrap();
            assert_eq!(json, serde_json::Value::String(phase.as_str().to_owned()));
        }
    }

    #[test]
    fn every_phase_sets_at_least_one_condition() {
        for phase in Phase::ALL {
            assert!(!phase.condition_updates(false).is_empty(), "{phase}");
        }
    }

    #[test]
    fn ignored_test_failures_keep_the_release_released() {
        let strict = Phase::TestFailed.condition_updates(false);
        let lenient = Phase::TestFailed.condition_updates(true);
        assert!(strict.contains(&(ConditionType::Released, ConditionStatus::False)));
        assert!(!lenient.iter().any(|(t, _)| *t == ConditionType::Released));
    }
}

//! Classify, then act once: the pure middle of a reconcile (Helm Operator
//! `pkg/release/release.go` `determineSyncAction`, with its stuck-release and upgrade-churn bugs
//! fixed).
//!
//! [`classify`] looks at what the reconcile gathered — the object's generation and status, the
//! chart revision, the checksum of the composed values and the latest release record from Helm's
//! storage — and names the state of the release ([`ReleaseState`]). [`plan`] maps every state, by
//! an exhaustive `match`, to exactly one [`Action`]. Nothing here runs helm or talks to the
//! cluster; "in sync" is decided without any helm process, so periodic resyncs never create
//! revisions.
//!
//! What this module does not decide: whether the release's resources belong to another
//! HelmRelease (that needs the live objects; the reconcile checks it before acting) and how an
//! action's failure is remediated (the reconcile does that from the action's outcome).

use model::release::RollbackPolicy;
use model::{ConditionStatus, ConditionType, HelmReleaseStatus};

/// Helm's status of a release revision, as stored in its release record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredStatus {
    /// `deployed`.
    Deployed,
    /// `failed`.
    Failed,
    /// `pending-install`, `pending-upgrade` or `pending-rollback`: an action that never finished.
    Pending(String),
    /// Anything else (`superseded`, `uninstalling`, `uninstalled`, `unknown`).
    Other(String),
}

/// What the reconcile knows of the latest revision of the release in Helm's storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestRelease {
    /// Revision number (`1`, `2`, ...).
    pub version: u32,
    /// Its status.
    pub status: StoredStatus,
    /// Checksum of its user-supplied values (computed the way composed values are).
    pub values_checksum: String,
    /// Whether any revision in the history was ever `deployed` or `superseded`, so that
    /// `helm upgrade` and `helm rollback` have something to work from.
    pub has_deployed_revision: bool,
}

/// Everything [`classify`] looks at.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// `metadata.generation` of the object.
    pub generation: Option<i64>,
    /// The object's current status.
    pub status: &'a HelmReleaseStatus,
    /// The chart revision now (git commit or chart version).
    pub chart_revision: &'a str,
    /// Whether the chart changed since `status.lastAttemptedRevision` (for git charts: a commit
    /// in between touched the chart path; for repository charts: another version).
    pub chart_changed: bool,
    /// Checksum of the values composed now.
    pub values_checksum: &'a str,
    /// The latest release record, `None` when there is no release of that name.
    pub latest: Option<&'a LatestRelease>,
    /// The object's rollback policy, `None` when rollback is disabled.
    pub rollback: Option<&'a RollbackPolicy>,
}

/// Why a release is out of sync, for logs and Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// The object's spec changed (`generation` > `observedGeneration`).
    Generation,
    /// The chart changed.
    Chart,
    /// The release's values differ from the composed values (a `valuesFrom` source changed, or
    /// someone ran `helm upgrade` by hand).
    Values,
    /// The latest revision failed and the spec changed since that attempt.
    FailedRelease,
    /// Retrying an upgrade that was rolled back (`rollback.retry`, within `maxRetries`).
    Retry,
}

impl Drift {
    /// A short phrase for logs and Events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generation => "the spec changed",
            Self::Chart => "the chart changed",
            Self::Values => "the values differ from the release",
            Self::FailedRelease => "the latest revision failed and the spec changed since",
            Self::Retry => "retrying the upgrade after a rollback",
        }
    }
}

/// The state of a release relative to its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    /// No release of that name in the target namespace.
    Absent,
    /// Deployed with this chart, these values, for this generation: nothing to do.
    InSync,
    /// Deployed or failed, and something changed.
    OutOfSync(Drift),
    /// An action never finished (the operator or helm was killed): `pending-*`.
    Pending(String),
    /// The last attempt for exactly this spec failed (or was rolled back) and may not be
    /// retried: waits for a change instead of looping.
    FailedUnchanged,
    /// The only revisions are failed ones (a failed install that was not purged): nothing to
    /// upgrade from.
    FailedWithoutDeployed,
}

/// The one action a state maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `helm install`.
    Install,
    /// `helm upgrade`, with the reason.
    Upgrade(Drift),
    /// Nothing: in sync. No helm process.
    Nothing,
    /// Nothing until the spec, chart or values change (a failed attempt is not repeated).
    Wait,
    /// Recover a release stuck in `pending-*`: roll back to the last deployed revision when
    /// there is one, else uninstall; the next reconcile then installs or upgrades.
    Recover {
        /// The stuck status (`pending-install`, ...).
        status: String,
        /// Whether a deployed revision exists to roll back to.
        rollback: bool,
    },
    /// Uninstall the failed leftovers so the next reconcile installs cleanly.
    Purge,
}

fn condition_is(status: &HelmReleaseStatus, kind: ConditionType, value: ConditionStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == value)
}

/// Whether `rollback.retry` allows another upgrade after `rollback_count` rollbacks (Helm
/// Operator: while `rollbackCount <= maxRetries`; `maxRetries: 0` means unlimited).
#[must_use]
pub fn retry_allowed(policy: Option<&RollbackPolicy>, rollback_count: i64) -> bool {
    policy.is_some_and(|p| {
        p.retry
            && (p.max_retries == 0 || u64::try_from(rollback_count).unwrap_or(0) <= p.max_retries)
    })
}

/// Names the state of the release. Pure.
#[must_use]
pub fn classify(o: &Observation<'_>) -> ReleaseState {
    let Some(latest) = o.latest else {
        return ReleaseState::Absent;
    };
    let spec_changed = o.generation.is_some() && o.generation != o.status.observed_generation;
    // The attempt recorded in the status is the one wanted now: same generation, chart and values.
    let same_attempt = !spec_changed
        && !o.chart_changed
        && o.status.last_attempted_revision.as_deref() == Some(o.chart_revision)
        && o.status.values_checksum.as_deref() == Some(o.values_checksum);
    match &latest.status {
        StoredStatus::Pending(status) => ReleaseState::Pending(status.clone()),
        StoredStatus::Failed | StoredStatus::Other(_) if !latest.has_deployed_revision => {
            ReleaseState::FailedWithoutDeployed
        }
        StoredStatus::Failed | StoredStatus::Other(_) => {
            if !same_attempt {
                ReleaseState::OutOfSync(Drift::FailedRelease)
            } else if retry_allowed(o.rollback, o.status.rollback_count.unwrap_or(0)) {
                ReleaseState::OutOfSync(Drift::Retry)
            } else {
                ReleaseState::FailedUnchanged
            }
        }
        StoredStatus::Deployed => {
            let rolled_back =
                condition_is(o.status, ConditionType::RolledBack, ConditionStatus::True);
            let last_failed =
                condition_is(o.status, ConditionType::Released, ConditionStatus::False);
            if (rolled_back || last_failed) && same_attempt {
                // The deployed revision is the one we rolled back to (or an older one kept
                // after a failure): its values differ from the wanted ones by construction.
                return if retry_allowed(o.rollback, o.status.rollback_count.unwrap_or(0))
                    && rolled_back
                {
                    ReleaseState::OutOfSync(Drift::Retry)
                } else {
                    ReleaseState::FailedUnchanged
                };
            }
            if spec_changed {
                ReleaseState::OutOfSync(Drift::Generation)
            } else if o.chart_changed {
                ReleaseState::OutOfSync(Drift::Chart)
            } else if latest.values_checksum != o.values_checksum {
                ReleaseState::OutOfSync(Drift::Values)
            } else {
                ReleaseState::InSync
            }
        }
    }
}

/// Maps a state to exactly one action. Pure and exhaustive.
#[must_use]
pub fn plan(state: &ReleaseState, latest: Option<&LatestRelease>) -> Action {
    match state {
        ReleaseState::Absent => Action::Install,
        ReleaseState::InSync => Action::Nothing,
        ReleaseState::OutOfSync(drift) => Action::Upgrade(*drift),
        ReleaseState::Pending(status) => Action::Recover {
            status: status.clone(),
            rollback: latest.is_some_and(|l| l.has_deployed_revision)
                && status != "pending-install",
        },
        ReleaseState::FailedUnchanged => Action::Wait,
        ReleaseState::FailedWithoutDeployed => Action::Purge,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use model::helmrelease::HelmReleaseCondition;

    use super::*;

    fn deployed(version: u32, checksum: &str) -> LatestRelease {
        LatestRelease {
            version,
            status: StoredStatus::Deployed,
            values_checksum: checksum.to_owned(),
            has_deployed_revision: true,
        }
    }

    fn status(generation: i64, revision: &str, checksum: &str) -> HelmReleaseStatus {
        HelmReleaseStatus {
            observed_generation: Some(generation),
            last_attempted_revision: Some(revision.to_owned()),
            revision: Some(revision.to_owned()),
            values_checksum: Some(checksum.to_owned()),
            ..HelmReleaseStatus::default()
        }
    }

    fn with_condition(
        mut s: HelmReleaseStatus,
        kind: ConditionType,
        value: ConditionStatus,
    ) -> HelmReleaseStatus {
        s.conditions.push(HelmReleaseCondition {
            type_: kind,
            status: value,
            last_update_time: None,
            last_transition_time: None,
            reason: None,
            message: None,
        });
        s
    }

    fn policy(retry: bool, max_retries: u64) -> RollbackPolicy {
        RollbackPolicy {
            retry,
            max_retries,
            disable_hooks: false,
            force: false,
            recreate: false,
            timeout: Duration::from_secs(300),
            wait: false,
        }
    }

    fn observe<'a>(
        status: &'a HelmReleaseStatus,
        latest: Option<&'a LatestRelease>,
        generation: i64,
        checksum: &'a str,
    ) -> Observation<'a> {
        Observation {
            generation: Some(generation),
            status,
            chart_revision: "abc",
            chart_changed: false,
            values_checksum: checksum,
            latest,
            rollback: None,
        }
    }

    #[test]
    fn no_release_installs() {
        let s = HelmReleaseStatus::default();
        let o = observe(&s, None, 1, "v1");
        assert_eq!(classify(&o), ReleaseState::Absent);
        assert_eq!(plan(&classify(&o), None), Action::Install);
    }

    #[test]
    fn unchanged_deployed_release_is_in_sync_and_needs_no_helm() {
        let s = status(2, "abc", "v1");
        let latest = deployed(2, "v1");
        let o = observe(&s, Some(&latest), 2, "v1");
        assert_eq!(classify(&o), ReleaseState::InSync);
        assert_eq!(plan(&classify(&o), Some(&latest)), Action::Nothing);
    }

    #[test]
    fn spec_chart_and_values_changes_upgrade_with_their_reason() {
        let s = status(2, "abc", "v1");
        let latest = deployed(2, "v1");
        let o = observe(&s, Some(&latest), 3, "v1");
        assert_eq!(classify(&o), ReleaseState::OutOfSync(Drift::Generation));
        let mut o = observe(&s, Some(&latest), 2, "v1");
        o.chart_changed = true;
        assert_eq!(classify(&o), ReleaseState::OutOfSync(Drift::Chart));
        let o = observe(&s, Some(&latest), 2, "v2");
        assert_eq!(classify(&o), ReleaseState::OutOfSync(Drift::Values));
    }

    #[test]
    fn a_pending_release_is_recovered_by_rollback_or_uninstall() {
        let s = status(1, "abc", "v1");
        let mut latest = deployed(3, "v1");
        latest.status = StoredStatus::Pending("pending-upgrade".into());
        let o = observe(&s, Some(&latest), 1, "v1");
        assert_eq!(
            plan(&classify(&o), Some(&latest)),
            Action::Recover {
                status: "pending-upgrade".into(),
                rollback: true
            }
        );
        latest.status = StoredStatus::Pending("pending-install".into());
        latest.has_deployed_revision = false;
        let o = observe(&s, Some(&latest), 1, "v1");
        assert_eq!(
            plan(&classify(&o), Some(&latest)),
            Action::Recover {
                status: "pending-install".into(),
                rollback: false
            }
        );
    }

    #[test]
    fn a_rolled_back_unchanged_spec_waits_instead_of_looping() {
        let s = with_condition(
            status(2, "abc", "bad"),
            ConditionType::RolledBack,
            ConditionStatus::True,
        );
        let latest = deployed(3, "good");
        let o = observe(&s, Some(&latest), 2, "bad");
        assert_eq!(classify(&o), ReleaseState::FailedUnchanged);
        assert_eq!(plan(&classify(&o), Some(&latest)), Action::Wait);
        // A new spec is tried.
        let o = observe(&s, Some(&latest), 3, "fixed");
        assert_eq!(classify(&o), ReleaseState::OutOfSync(Drift::Generation));
    }

    #[test]
    fn retries_follow_max_retries() {
        let p = policy(true, 2);
        for (count, allowed) in [(1, true), (2, true), (3, false)] {
            let mut s = with_condition(
                status(2, "abc", "bad"),
                ConditionType::RolledBack,
                ConditionStatus::True,
            );
            s.rollback_count = Some(count);
            let latest = deployed(3, "good");
            let mut o = observe(&s, Some(&latest), 2, "bad");
            o.rollback = Some(&p);
            let expected = if allowed {
                ReleaseState::OutOfSync(Drift::Retry)
            } else {
                ReleaseState::FailedUnchanged
            };
            assert_eq!(classify(&o), expected, "after {count} rollbacks");
        }
        assert!(
            retry_allowed(Some(&policy(true, 0)), 1000),
            "0 means unlimited"
        );
        assert!(!retry_allowed(Some(&policy(false, 5)), 0), "retry off");
    }

    #[test]
    fn a_failed_latest_revision_is_upgraded_only_after_a_change() {
        let s = with_condition(
            status(2, "abc", "bad"),
            ConditionType::Released,
            ConditionStatus::False,
        );
        let mut latest = deployed(3, "bad");
        latest.status = StoredStatus::Failed;
        let o = observe(&s, Some(&latest), 2, "bad");
        assert_eq!(classify(&o), ReleaseState::FailedUnchanged);
        let o = observe(&s, Some(&latest), 2, "fixed");
        assert_eq!(classify(&o), ReleaseState::OutOfSync(Drift::FailedRelease));
        latest.has_deployed_revision = false;
        let o = observe(&s, Some(&latest), 2, "fixed");
        assert_eq!(plan(&classify(&o), Some(&latest)), Action::Purge);
    }
}

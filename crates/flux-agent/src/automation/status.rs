//! What the API shows of workloads after an automation run: Flux v1's `ControllerStatus`
//! (`pkg/api/v6/api.go`, served by `GET /api/flux/v6/services` and `/v11/services`), read from
//! the manifests in git, plus `Errors`: the automation problems of that workload (an invalid tag
//! filter, an image that does not parse, an edit that could not be verified). Rollout status
//! and labels, which need the live object, are not filled in.

use std::collections::BTreeMap;

use model::annotations::Ignore;
use serde::Serialize;

use crate::automation::workloads::Workload;

/// One container as the API shows it (`{"Name": ..., "Current": {"ID": ...}}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    /// Container name.
    #[serde(rename = "Name")]
    pub name: String,
    /// `{"ID": "<image reference>"}`.
    #[serde(rename = "Current")]
    pub current: BTreeMap<String, String>,
}

/// One workload as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadStatus {
    /// `<namespace>:<kind>/<name>`.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its containers.
    #[serde(rename = "Containers")]
    pub containers: Vec<ContainerStatus>,
    /// `""` when the agent may change it (it is in git).
    #[serde(rename = "ReadOnly")]
    pub read_only: String,
    /// `automated` policy.
    #[serde(rename = "Automated")]
    pub automated: bool,
    /// `locked` policy.
    #[serde(rename = "Locked")]
    pub locked: bool,
    /// `ignore` policy.
    #[serde(rename = "Ignore")]
    pub ignore: bool,
    /// The policies as `name -> value` (`automated`, `locked`, `tag.<container>`).
    #[serde(rename = "Policies")]
    pub policies: BTreeMap<String, String>,
    /// Automation problems of this workload; empty when none.
    #[serde(rename = "Errors")]
    pub errors: Vec<String>,
}

/// The statuses of `workloads` (consumed, so a large repository's workloads are not held
/// twice), with `errors` (keyed by resource ID) attached.
#[must_use]
pub fn statuses(
    workloads: Vec<Workload>,
    errors: &BTreeMap<String, Vec<String>>,
) -> Vec<WorkloadStatus> {
    workloads
        .into_iter()
        .map(|w| {
            let id = w.id.to_string();
            let mut policies = BTreeMap::new();
            let (mut automated, mut locked, mut ignore) = (false, false, false);
            if let Ok(p) = &w.policies {
                automated = p.automated;
                locked = p.locked;
                ignore = p.ignore != Ignore::No;
                if automated {
                    policies.insert("automated".to_owned(), "true".to_owned());
                }
                if locked {
                    policies.insert("locked".to_owned(), "true".to_owned());
                }
                if ignore {
                    let value = if p.ignore == Ignore::SyncOnly {
                        "sync_only"
                    } else {
                        "true"
                    };
                    policies.insert("ignore".to_owned(), value.to_owned());
                }
                for (container, filter) in &p.tag_filters {
                    policies.insert(format!("tag.{container}"), filter.to_string());
                }
            }
            WorkloadStatus {
                errors: errors.get(&id).cloned().unwrap_or_default(),
                id,
                containers: w
                    .containers
                    .into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        current: BTreeMap::from([("ID".to_owned(), c.image.to_string())]),
                    })
                    .collect(),
                read_only: String::new(),
                automated,
                locked,
                ignore,
                policies,
            }
        })
        .collect()
}

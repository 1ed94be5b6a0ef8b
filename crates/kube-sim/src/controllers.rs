//! Fake controllers: what kube-sim writes after a change so that readiness checks pass as on a
//! real cluster (kube-sim-surface §4.5): Helm 3's `--wait` and Helm 4's kstatus, `kubectl wait`,
//! kube-rs `await_condition`. A Deployment annotated [`READY_AFTER_ANNOTATION`] becomes ready
//! only that many seconds after its controller first saw it (re-run from the janitor tick).
//!
//! Each runs right after the write that triggers it, as separate writes (new resourceVersion,
//! MODIFIED event), so the watch path is exercised. The annotation [`FAIL_ANNOTATION`] set to
//! `"true"` on a Deployment, StatefulSet, DaemonSet, Pod or Job keeps it unready (or makes the Job
//! or Pod fail), so tests can drive timeout and rollback paths. There is no scheduler and no
//! kubelet: Pods are not created for workloads, only the statuses that name them.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::registry::{ResourceKey, ResourceType};
use crate::store::{Store, WriteOptions, meta_str};
use crate::time;

/// Annotation that makes an object stay unready (or fail, for Jobs and Pods).
pub const FAIL_ANNOTATION: &str = "kube-sim.dev/fail";

/// Annotation on a Deployment: kube-sim reports it ready only this many seconds after its
/// controller first saw it (a slow rollout, for tests that interrupt one).
pub const READY_AFTER_ANNOTATION: &str = "kube-sim.dev/ready-after-seconds";

/// Writes that a controller makes are internal: they do not queue controllers again.
fn internal() -> WriteOptions {
    WriteOptions {
        internal: true,
        ..WriteOptions::default()
    }
}

fn fails(object: &Value) -> bool {
    object["metadata"]["annotations"][FAIL_ANNOTATION] == "true"
}

fn int(value: &Value, default: i64) -> i64 {
    value.as_i64().unwrap_or(default)
}

/// A short deterministic hash of a pod template, spelled as the API server spells
/// `pod-template-hash` values.
#[must_use]
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[usize::try_from(hash % 27).unwrap_or(0)] as char);
        hash /= 27;
    }
    out
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let now = time::now_rfc3339();
    json!({"type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})
}

impl Store {
    fn type_of(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let key = ResourceKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
        };
        self.registry.versions_of(&key).next().cloned()
    }

    /// Replaces the status of a stored object, as a controller would.
    fn set_status(
        &mut self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) {
        let Some(rt) = self.type_of(group, plural) else {
            return;
        };
        let Some(old) = self.lookup(&rt.key(), namespace, name) else {
            return;
        };
        if old["status"] == status {
            return;
        }
        let mut new = (*old).clone();
        new["status"] = status;
        let _ = self.commit_stored(&rt, namespace, Some(old), new, &internal());
    }

    /// Runs the controllers of every object written since the last call.
    pub(crate) fn run_controllers(&mut self) {
        let mut budget = 100_000_u32;
        while let Some((key, (namespace, name))) = self.pending.pop_front() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                self.pending.clear();
                break;
            }
            let Some(object) = self.lookup(&key, &namespace, &name) else {
                continue;
            };
            if !object["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            match (key.group.as_str(), key.plural.as_str()) {
                ("apps", "deployments") => self.deployment(&object),
                ("apps", "statefulsets") => self.statefulset(&object),
                ("apps", "daemonsets") => self.daemonset(&object),
                ("apps", "replicasets") => self.replicaset(&object),
                ("batch", "jobs") => self.job(&object),
                ("", "pods") => self.pod(&object),
                ("", "services") | ("networking.k8s.io", "ingresses") => {
                    self.load_balancer(&key, &object)
                }
                ("", "persistentvolumeclaims") => self.pvc(&object),
                ("apiextensions.k8s.io", "customresourcedefinitions") => self.crd(&object),
                _ => {}
            }
        }
    }

    /// Whether a workload with [`READY_AFTER_ANNOTATION`] is still in its delay; if so, its
    /// controller is scheduled to run again when the delay ends.
    fn still_delayed(&mut self, key: ResourceKey, object: &Value) -> bool {
        let Some(seconds) = object["metadata"]["annotations"][READY_AFTER_ANNOTATION]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return false;
        };
        let now = std::time::Instant::now();
        let uid = meta_str(object, "uid").to_owned();
        let at = *self
            .ready_at
            .entry(uid)
            .or_insert_with(|| now + std::time::Duration::from_secs(seconds));
        if at <= now {
            return false;
        }
        let object_key = (
            meta_str(object, "namespace").to_owned(),
            meta_str(object, "name").to_owned(),
        );
        self.delayed.push((at, key, object_key));
        true
    }

    fn deployment(&mut self, deployment: &Value) {
        let namespace = meta_str(deployment, "namespace").to_owned();
        let name = meta_str(deployment, "name").to_owned();
        let uid = meta_str(deployment, "uid").to_owned();
        let desired = int(&deployment["spec"]["replicas"], 1);
        let key = ResourceKey {
            group: "apps".into(),
            plural: "deployments".into(),
        };
        let delayed = self.still_delayed(key, deployment);
        let ready = if fails(deployment) || delayed {
            0
        } else {
            desired
        };
        let template = deployment["spec"]["template"].clone();
        let hash = template_hash(&template);
        let rs_name = format!("{name}-{hash}");
        let Some(rs_type) = self.type_of("apps", "replicasets") else {
            return;
        };
        let owned: Vec<Arc<Value>> = self
            .iter(&rs_type.key(), Some(&namespace))
            .filter(|rs| {
                rs["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r["uid"] == uid && r["controller"] == true)
                    })
            })
            .cloned()
            .collect();
        for old in owned.iter().filter(|rs| meta_str(rs, "name") != rs_name) {
            if int(&old["spec"]["replicas"], 0) != 0 {
                let mut scaled = (**old).clone();
                scaled["spec"]["replicas"] = json!(0);
                let _ = self.commit_stored(
                    &rs_type,
                    &namespace,
                    Some(Arc::clone(old)),
                    scaled,
                    &internal(),
                );
            }
            let generation = self
                .lookup(&rs_type.key(), &namespace, meta_str(old, "name"))
                .map(|o| o["metadata"]["generation"].clone());
            self.set_status(
                "apps",
                "replicasets",
                &namespace,
                meta_str(old, "name"),
                json!({"replicas": 0, "observedGeneration": generation.unwrap_or(Value::Null)}),
            );
        }
        let revision =
            owned.len() + usize::from(!owned.iter().any(|rs| meta_str(rs, "name") == rs_name));
        match self.lookup(&rs_type.key(), &namespace, &rs_name) {
            None => {
                let mut labels = template["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                labels.insert("pod-template-hash".into(), json!(hash));
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = Value::Object(labels.clone());
                let mut selector = deployment["spec"]["selector"].clone();
                if selector.is_null() {
                    selector = json!({});
                }
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {"deployment.kubernetes.io/revision": revision.to_string(),
                            "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                            "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                    },
                    "spec": {"replicas": desired, "selector": selector, "template": rs_template},
                });
                let _ = self.create(&rs_type, Some(&namespace), rs, &internal());
            }
            Some(rs) if int(&rs["spec"]["replicas"], 1) != desired => {
                let mut scaled = (*rs).clone();
                scaled["spec"]["replicas"] = json!(desired);
                let _ = self.commit_stored(&rs_type, &namespace, Some(rs), scaled, &internal());
            }
            Some(_) => {}
        }
        let rs_generation = self
            .lookup(&rs_type.key(), &namespace, &rs_name)
            .map_or(Value::Null, |rs| rs["metadata"]["generation"].clone());
        self.set_status(
            "apps",
            "replicasets",
            &namespace,
            &rs_name,
            json!({"replicas": desired, "fullyLabeledReplicas": desired, "readyReplicas": ready,
                "availableReplicas": ready, "observedGeneration": rs_generation}),
        );
        let (available, progressing) = if ready >= desired {
            (
                condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                ),
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                ),
            )
        } else {
            (
                condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
                condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs_name}\" is progressing."),
                ),
            )
        };
        let mut status = json!({
            "observedGeneration": deployment["metadata"]["generation"].clone(),
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [available, progressing],
        });
        if desired > ready {
            status["unavailableReplicas"] = json!(desired - ready);
        }
        self.set_status(
            "apps",
            "deployments",
            &namespace,
            &name,
            strip_zero_counts(status),
        );
    }

    fn statefulset(&mut self, set: &Value) {
        let desired = int(&set["spec"]["replicas"], 1);
        let ready = if fails(set) { 0 } else { desired };
        let revision = format!(
            "{}-{}",
            meta_str(set, "name"),
            template_hash(&set["spec"]["template"])
        );
        let status = json!({
            "observedGeneration": set["metadata"]["generation"].clone(),
            "replicas": desired, "readyReplicas": ready, "currentReplicas": desired,
            "updatedReplicas": desired, "availableReplicas": ready,
            "currentRevision": revision, "updateRevision": revision, "collisionCount": 0,
        });
        self.set_status(
            "apps",
            "statefulsets",
            meta_str(set, "namespace"),
            meta_str(set, "name"),
            strip_zero_counts(status),
        );
    }

    fn daemonset(&mut self, set: &Value) {
        let ready = i64::from(!fails(set));
        let status = json!({
            "observedGeneration": set["metadata"]["generation"].clone(),
            "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "updatedNumberScheduled": 1,
            "numberAvailable": ready, "numberReady": ready, "numberMisscheduled": 0,
        });
        self.set_status(
            "apps",
            "daemonsets",
            meta_str(set, "namespace"),
            meta_str(set, "name"),
            status,
        );
    }

    /// A ReplicaSet not owned by a Deployment reports its replicas ready.
    fn replicaset(&mut self, rs: &Value) {
        let owned = rs["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|r| r.iter().any(|o| o["kind"] == "Deployment"));
        if owned {
            return;
        }
        let desired = int(&rs["spec"]["replicas"], 1);
        let ready = if fails(rs) { 0 } else { desired };
        let status = json!({"replicas": desired, "fullyLabeledReplicas": desired, "readyReplicas": ready,
            "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"].clone()});
        self.set_status(
            "apps",
            "replicasets",
            meta_str(rs, "namespace"),
            meta_str(rs, "name"),
            strip_zero_counts(status),
        );
    }

    fn job(&mut self, job: &Value) {
        if job["status"]["completionTime"].is_string() || job["status"]["failed"].is_number() {
            return;
        }
        let now = time::now_rfc3339();
        let completions = int(&job["spec"]["completions"], 1);
        let status = if fails(job) {
            let failed = int(&job["spec"]["backoffLimit"], 6) + 1;
            json!({"startTime": now, "failed": failed, "active": 0, "conditions": [
                condition("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                condition("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            ]})
        } else {
            json!({"startTime": now, "completionTime": now, "succeeded": completions, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {}, "conditions": [
                condition("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
                condition("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
            ]})
        };
        self.set_status(
            "batch",
            "jobs",
            meta_str(job, "namespace"),
            meta_str(job, "name"),
            status,
        );
    }

    fn pod(&mut self, pod: &Value) {
        if pod["status"]["phase"].is_string() && pod["status"]["phase"] != "Pending" {
            return;
        }
        let now = time::now_rfc3339();
        let runs_forever = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always") == "Always";
        let failing = fails(pod);
        let containers: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let state = if runs_forever {
                    json!({"running": {"startedAt": now}})
                } else {
                    let code = i32::from(failing);
                    let reason = if failing { "Error" } else { "Completed" };
                    json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now}})
                };
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": runs_forever && !failing,
                    "started": runs_forever, "restartCount": 0, "state": state})
            })
            .collect();
        let (phase, ready, ready_reason) = match (runs_forever, failing) {
            (true, false) => ("Running", "True", ""),
            (true, true) => ("Running", "False", "ContainersNotReady"),
            (false, false) => ("Succeeded", "False", "PodCompleted"),
            (false, true) => ("Failed", "False", "PodFailed"),
        };
        let ready_condition = |kind: &str| {
            let mut c = json!({"type": kind, "status": ready, "lastTransitionTime": now});
            if !ready_reason.is_empty() {
                c["reason"] = json!(ready_reason);
            }
            c
        };
        let status = json!({
            "phase": phase, "hostIP": "127.0.0.1", "podIP": "10.244.0.2", "podIPs": [{"ip": "10.244.0.2"}],
            "startTime": now, "qosClass": "BestEffort",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                ready_condition("ContainersReady"),
                ready_condition("Ready"),
            ],
            "containerStatuses": containers,
        });
        self.set_status(
            "",
            "pods",
            meta_str(pod, "namespace"),
            meta_str(pod, "name"),
            status,
        );
    }

    fn load_balancer(&mut self, key: &ResourceKey, object: &Value) {
        let wanted = key.plural == "ingresses" || object["spec"]["type"] == "LoadBalancer";
        if !wanted || object["status"]["loadBalancer"]["ingress"].is_array() {
            return;
        }
        let status = json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}});
        self.set_status(
            &key.group,
            &key.plural,
            meta_str(object, "namespace"),
            meta_str(object, "name"),
            status,
        );
    }

    fn pvc(&mut self, pvc: &Value) {
        if pvc["status"]["phase"] == "Bound" {
            return;
        }
        let mut status = Map::new();
        status.insert("phase".into(), json!("Bound"));
        status.insert("accessModes".into(), pvc["spec"]["accessModes"].clone());
        status.insert(
            "capacity".into(),
            pvc["spec"]["resources"]["requests"].clone(),
        );
        self.set_status(
            "",
            "persistentvolumeclaims",
            meta_str(pvc, "namespace"),
            meta_str(pvc, "name"),
            Value::Object(status),
        );
    }

    fn crd(&mut self, crd: &Value) {
        let storage = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true)
            .map_or(Value::Null, |v| v["name"].clone());
        let now = time::now_rfc3339();
        let status = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "acceptedNames": crd["spec"]["names"].clone(),
            "storedVersions": [storage],
        });
        if crd["status"]["acceptedNames"] == status["acceptedNames"]
            && crd["status"]["storedVersions"] == status["storedVersions"]
        {
            return;
        }
        self.set_status(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            meta_str(crd, "name"),
            status,
        );
    }
}

/// The API server omits zero counters from workload statuses.
fn strip_zero_counts(mut status: Value) -> Value {
    if let Some(map) = status.as_object_mut() {
        map.retain(|k, v| !(v == &json!(0) && k != "replicas" && k != "observedGeneration"));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_are_stable_and_change_with_the_template() {
        let a = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }
}

//! [`MergeRules`] for the Kubernetes built-in kinds, transcribed from the `k8s.io/api` struct
//! tags: `patchStrategy`/`patchMergeKey` for strategic merge patch, `listType`/`listMapKey` for
//! server-side apply. A keyed list answers [`ListType::Map`] with its SSA keys, the first of
//! which is the strategic merge patch merge key.
//!
//! Covered: every PodSpec list with a merge key (containers, init and ephemeral containers and
//! their ports, env, volume mounts and devices; volumes, image pull secrets, host aliases,
//! topology spread constraints, scheduling gates, resource claims) wherever a kind embeds a
//! PodSpec, Service ports, ServiceAccount secrets, `status.conditions` of every kind, Pod pod and
//! host IPs and resource claim statuses, Node addresses, `$retainKeys` fields (Deployment
//! strategy, PodSpec volumes and resource claims), and the `metadata` lists shared by all kinds.
//!
//! Deliberately not covered: every other list, which is atomic (tolerations, command, args,
//! envFrom, match expressions, ingress and RBAC rules, subjects, volume claim templates, CRD
//! versions, node taints, ...), and lists that are keyed for server-side apply only (such as
//! container `resources.claims`), which stay atomic here because strategic merge patch replaces
//! them. Rules are looked up per call with a few slice matches; nothing is precomputed.

use crate::{ListType, MergeRules, metadata_list_type};

/// PodSpec of a Pod.
const POD_SPEC_OF_POD: &[&str] = &["spec"];
/// PodSpec of a workload with a `spec.template` (Deployment, ReplicaSet, StatefulSet,
/// DaemonSet, Job, ReplicationController).
const POD_SPEC_OF_TEMPLATE: &[&str] = &["spec", "template", "spec"];
/// PodSpec of a CronJob.
const POD_SPEC_OF_CRONJOB: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];
/// PodSpec of a PodTemplate.
const POD_SPEC_OF_POD_TEMPLATE: &[&str] = &["template", "spec"];

/// Kinds with keyed lists outside their PodSpec and `status.conditions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    Pod,
    Node,
    Service,
    ServiceAccount,
    Deployment,
    None,
}

/// The merge rules of one built-in kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinRules {
    special: Special,
    pod_spec: Option<&'static [&'static str]>,
}

impl BuiltinRules {
    /// The rules for the built-in kind `kind` of API group `group` (`""` for core). Unknown
    /// kinds get the rules every kind shares: keyed `metadata` lists and `status.conditions`.
    #[must_use]
    pub fn for_kind(group: &str, kind: &str) -> Self {
        let (special, pod_spec) = match (group, kind) {
            ("", "Pod") => (Special::Pod, Some(POD_SPEC_OF_POD)),
            ("", "PodTemplate") => (Special::None, Some(POD_SPEC_OF_POD_TEMPLATE)),
            ("", "ReplicationController")
            | ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job") => (Special::None, Some(POD_SPEC_OF_TEMPLATE)),
            ("apps", "Deployment") => (Special::Deployment, Some(POD_SPEC_OF_TEMPLATE)),
            ("batch", "CronJob") => (Special::None, Some(POD_SPEC_OF_CRONJOB)),
            ("", "Service") => (Special::Service, None),
            ("", "ServiceAccount") => (Special::ServiceAccount, None),
            ("", "Node") => (Special::Node, None),
            _ => (Special::None, None),
        };
        Self { special, pod_spec }
    }

    /// Where this kind embeds a PodSpec, as a field path from the object root, if it does.
    #[must_use]
    pub fn pod_spec_path(&self) -> Option<&'static [&'static str]> {
        self.pod_spec
    }

    /// The part of `path` below this kind's PodSpec, if `path` is inside it.
    fn in_pod_spec<'p>(&self, path: &'p [&'p str]) -> Option<&'p [&'p str]> {
        let prefix = self.pod_spec?;
        if path.len() > prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b) {
            Some(&path[prefix.len()..])
        } else {
            None
        }
    }
}

fn keyed(keys: &[&str]) -> ListType {
    ListType::Map(keys.iter().map(|k| (*k).to_owned()).collect())
}

fn is_container_list(field: &str) -> bool {
    matches!(
        field,
        "containers" | "initContainers" | "ephemeralContainers"
    )
}

/// Keyed lists inside a PodSpec; `rest` is the path below the PodSpec.
fn pod_spec_list_type(rest: &[&str]) -> Option<ListType> {
    Some(match rest {
        [list] if is_container_list(list) => keyed(&["name"]),
        ["volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims"] => keyed(&["name"]),
        ["hostAliases"] => keyed(&["ip"]),
        ["topologySpreadConstraints"] => keyed(&["topologyKey", "whenUnsatisfiable"]),
        [list, field] if is_container_list(list) => match *field {
            "ports" => keyed(&["containerPort", "protocol"]),
            "env" => keyed(&["name"]),
            "volumeMounts" => keyed(&["mountPath"]),
            "volumeDevices" => keyed(&["devicePath"]),
            _ => return None,
        },
        _ => return None,
    })
}

impl MergeRules for BuiltinRules {
    fn list_type(&self, path: &[&str]) -> ListType {
        if let Some(list_type) = metadata_list_type(path) {
            return list_type;
        }
        if let Some(list_type) = self.in_pod_spec(path).and_then(pod_spec_list_type) {
            return list_type;
        }
        match (self.special, path) {
            (_, ["status", "conditions"]) => keyed(&["type"]),
            (Special::Pod, ["status", "podIPs" | "hostIPs"]) => keyed(&["ip"]),
            (Special::Pod, ["status", "resourceClaimStatuses"]) => keyed(&["name"]),
            (Special::Node, ["status", "addresses"]) => keyed(&["type"]),
            (Special::Service, ["spec", "ports"]) => keyed(&["port", "protocol"]),
            (Special::ServiceAccount, ["secrets"]) => keyed(&["name"]),
            _ => ListType::Atomic,
        }
    }

    fn retains_keys(&self, path: &[&str]) -> bool {
        if matches!(self.in_pod_spec(path), Some(["volumes" | "resourceClaims"])) {
            return true;
        }
        matches!(
            (self.special, path),
            (Special::Deployment, ["spec", "strategy"])
                | (Special::Pod, ["status", "resourceClaimStatuses"])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list_type: ListType) -> Vec<String> {
        match list_type {
            ListType::Map(keys) => keys,
            other => panic!("expected a keyed list, got {other:?}"),
        }
    }

    #[test]
    fn deployment_paths() {
        let rules = BuiltinRules::for_kind("apps", "Deployment");
        let pod = ["spec", "template", "spec"];
        let at = |rest: &[&'static str]| -> Vec<&'static str> {
            pod.iter().chain(rest).copied().collect()
        };
        assert_eq!(keys(rules.list_type(&at(&["containers"]))), ["name"]);
        assert_eq!(keys(rules.list_type(&at(&["initContainers"]))), ["name"]);
        assert_eq!(
            keys(rules.list_type(&at(&["containers", "ports"]))),
            ["containerPort", "protocol"]
        );
        assert_eq!(keys(rules.list_type(&at(&["containers", "env"]))), ["name"]);
        assert_eq!(
            keys(rules.list_type(&at(&["initContainers", "volumeMounts"]))),
            ["mountPath"]
        );
        assert_eq!(
            keys(rules.list_type(&at(&["containers", "volumeDevices"]))),
            ["devicePath"]
        );
        assert_eq!(keys(rules.list_type(&at(&["volumes"]))), ["name"]);
        assert_eq!(keys(rules.list_type(&at(&["hostAliases"]))), ["ip"]);
        assert_eq!(
            keys(rules.list_type(&at(&["topologySpreadConstraints"]))),
            ["topologyKey", "whenUnsatisfiable"]
        );
        assert!(rules.retains_keys(&at(&["volumes"])));
        assert!(rules.retains_keys(&["spec", "strategy"]));
        assert!(!rules.retains_keys(&at(&["containers"])));
        for atomic in [
            at(&["tolerations"]),
            at(&["containers", "args"]),
            at(&["containers", "command"]),
            at(&["containers", "envFrom"]),
            at(&["containers", "ports", "x"]),
            vec!["spec", "selector", "matchExpressions"],
            vec!["spec", "containers"],
        ] {
            assert_eq!(rules.list_type(&atomic), ListType::Atomic, "{atomic:?}");
        }
        assert_eq!(keys(rules.list_type(&["status", "conditions"])), ["type"]);
        assert_eq!(rules.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            keys(rules.list_type(&["metadata", "ownerReferences"])),
            ["uid"]
        );
        assert_eq!(rules.pod_spec_path(), Some(&pod[..]));
    }

    #[test]
    fn cronjob_paths() {
        let rules = BuiltinRules::for_kind("batch", "CronJob");
        let containers = [
            "spec",
            "jobTemplate",
            "spec",
            "template",
            "spec",
            "containers",
        ];
        assert_eq!(keys(rules.list_type(&containers)), ["name"]);
        let env = [
            "spec",
            "jobTemplate",
            "spec",
            "template",
            "spec",
            "containers",
            "env",
        ];
        assert_eq!(keys(rules.list_type(&env)), ["name"]);
        assert_eq!(
            rules.list_type(&["spec", "template", "spec", "containers"]),
            ListType::Atomic
        );
        assert!(!rules.retains_keys(&["spec", "strategy"]));
    }

    #[test]
    fn pod_paths() {
        let rules = BuiltinRules::for_kind("", "Pod");
        assert_eq!(keys(rules.list_type(&["spec", "containers"])), ["name"]);
        assert_eq!(
            keys(rules.list_type(&["spec", "ephemeralContainers", "ports"])).len(),
            2
        );
        assert_eq!(
            keys(rules.list_type(&["spec", "imagePullSecrets"])),
            ["name"]
        );
        assert_eq!(
            keys(rules.list_type(&["spec", "schedulingGates"])),
            ["name"]
        );
        assert_eq!(keys(rules.list_type(&["spec", "resourceClaims"])), ["name"]);
        assert!(rules.retains_keys(&["spec", "resourceClaims"]));
        assert!(rules.retains_keys(&["spec", "volumes"]));
        assert_eq!(keys(rules.list_type(&["status", "podIPs"])), ["ip"]);
        assert_eq!(keys(rules.list_type(&["status", "hostIPs"])), ["ip"]);
        assert_eq!(rules.list_type(&["spec", "tolerations"]), ListType::Atomic);
        assert_eq!(
            rules.list_type(&["spec", "template", "spec", "containers"]),
            ListType::Atomic
        );
    }

    #[test]
    fn other_workloads_and_templates() {
        for (group, kind) in [
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("", "ReplicationController"),
        ] {
            let rules = BuiltinRules::for_kind(group, kind);
            assert_eq!(
                keys(rules.list_type(&["spec", "template", "spec", "containers"])),
                ["name"]
            );
            assert_eq!(
                rules.list_type(&["spec", "volumeClaimTemplates"]),
                ListType::Atomic,
                "{kind}"
            );
            assert!(!rules.retains_keys(&["spec", "strategy"]), "{kind}");
        }
        let rules = BuiltinRules::for_kind("", "PodTemplate");
        assert_eq!(
            keys(rules.list_type(&["template", "spec", "containers"])),
            ["name"]
        );
        // A Deployment in another group is not a Deployment.
        let rules = BuiltinRules::for_kind("example.com", "Deployment");
        assert_eq!(
            rules.list_type(&["spec", "template", "spec", "containers"]),
            ListType::Atomic
        );
    }

    #[test]
    fn service_serviceaccount_node() {
        let rules = BuiltinRules::for_kind("", "Service");
        assert_eq!(
            keys(rules.list_type(&["spec", "ports"])),
            ["port", "protocol"]
        );
        assert_eq!(rules.list_type(&["spec", "externalIPs"]), ListType::Atomic);
        let rules = BuiltinRules::for_kind("", "ServiceAccount");
        assert_eq!(keys(rules.list_type(&["secrets"])), ["name"]);
        assert_eq!(rules.list_type(&["imagePullSecrets"]), ListType::Atomic);
        let rules = BuiltinRules::for_kind("", "Node");
        assert_eq!(keys(rules.list_type(&["status", "addresses"])), ["type"]);
        assert_eq!(rules.list_type(&["spec", "taints"]), ListType::Atomic);
        assert_eq!(rules.list_type(&["spec", "ports"]), ListType::Atomic);
    }

    #[test]
    fn everything_else_is_atomic() {
        let rules = BuiltinRules::for_kind("rbac.authorization.k8s.io", "Role");
        assert_eq!(rules.list_type(&["rules"]), ListType::Atomic);
        let rules = BuiltinRules::for_kind("networking.k8s.io", "Ingress");
        assert_eq!(rules.list_type(&["spec", "rules"]), ListType::Atomic);
        assert_eq!(keys(rules.list_type(&["status", "conditions"])), ["type"]);
        let rules = BuiltinRules::for_kind("apiextensions.k8s.io", "CustomResourceDefinition");
        assert_eq!(rules.list_type(&["spec", "versions"]), ListType::Atomic);
    }

    #[test]
    fn strategic_merge_with_builtin_rules() {
        use serde_json::json;
        let live = json!({
            "spec": {"ports": [
                {"port": 80, "protocol": "TCP", "targetPort": 8080},
                {"port": 443, "protocol": "TCP", "targetPort": 8443}
            ]}
        });
        let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}});
        let rules = BuiltinRules::for_kind("", "Service");
        let out = crate::strategic::apply(&live, &patch, &rules).unwrap();
        assert_eq!(
            out["spec"]["ports"][1],
            json!({"port": 443, "protocol": "TCP", "targetPort": 9443})
        );
        assert_eq!(out["spec"]["ports"][0]["targetPort"], 8080);
    }
}

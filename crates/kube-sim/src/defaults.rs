//! Server-side defaults and normalisation applied on every write (kube-sim-surface §1.6, §3.3).
//!
//! Clients read some defaulted fields without a null check (Helm's legacy waiter: Deployment
//! `spec.replicas` and `strategy.rollingUpdate`, DaemonSet `updateStrategy.rollingUpdate`, Job
//! `backoffLimit`), so these are not optional. Validation of schemas, immutable fields and
//! unknown fields is deliberately out of scope: kube-sim is not a schema validator.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::status::{ApiError, Cause};

/// Sets `object[key]` to `value` when it is missing or null.
fn default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let slot = map.entry(key.to_owned()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The object at `object[key]`, created as `{}` when missing.
fn child<'a>(object: &'a mut Value, key: &str) -> &'a mut Value {
    default(object, key, json!({}));
    &mut object[key]
}

/// Removes nulls, empty maps and empty lists from `metadata`, as the server stores it.
pub fn normalize_metadata(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|_, v| match v {
            Value::Null => false,
            Value::Object(m) => !m.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        });
    }
}

/// Pod spec defaults, for Pods and every pod template.
fn pod_spec(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                default(
                    container,
                    "terminationMessagePath",
                    json!("/dev/termination-log"),
                );
                default(container, "terminationMessagePolicy", json!("File"));
                let image = container["image"].as_str().unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or(image);
                let tag = last.split_once(':').map(|(_, t)| t);
                let pull = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                    "IfNotPresent"
                } else {
                    "Always"
                };
                default(container, "imagePullPolicy", json!(pull));
                if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn template(spec: &mut Value) {
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

/// Deterministic allocator of fake addresses (data only; nothing connects to them).
#[derive(Debug, Default)]
pub struct Allocator {
    next_ip: u32,
    next_node_port: u32,
}

impl Allocator {
    /// The next cluster IP in 10.96.0.0/12.
    pub fn cluster_ip(&mut self) -> String {
        self.next_ip += 1;
        let n = self.next_ip;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    /// The next node port in 30000–32767.
    pub fn node_port(&mut self) -> u32 {
        let port = 30000 + (self.next_node_port % 2768);
        self.next_node_port += 1;
        port
    }
}

/// Applies the defaults of `kind` (in `group`) to a new or updated object. `old` is the stored
/// object on update, whose allocated Service addresses are kept.
///
/// # Errors
///
/// 400 when Secret `data` is not base64.
pub fn apply(
    group: &str,
    kind: &str,
    object: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocator,
) -> Result<(), ApiError> {
    match (group, kind) {
        ("apps", "Deployment") => {
            let spec = child(object, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!("25%"));
                default(rolling, "maxSurge", json!("25%"));
            }
            template(spec);
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            let spec = child(object, "spec");
            default(spec, "replicas", json!(1));
            template(spec);
        }
        ("apps", "StatefulSet") => {
            let spec = child(object, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                default(child(strategy, "rollingUpdate"), "partition", json!(0));
            }
            template(spec);
        }
        ("apps", "DaemonSet") => {
            let spec = child(object, "spec");
            default(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!(1));
                default(rolling, "maxSurge", json!(0));
            }
            template(spec);
        }
        ("batch", "Job") => job_spec(child(object, "spec")),
        ("batch", "CronJob") => {
            let spec = child(object, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")) {
                job_spec(job);
            }
        }
        ("", "Pod") => {
            let spec = child(object, "spec");
            pod_spec(spec);
            default(spec, "nodeName", json!("kube-sim-node"));
        }
        ("", "PodTemplate") => {
            if let Some(pod) = object.get_mut("template").and_then(|t| t.get_mut("spec")) {
                pod_spec(pod);
            }
        }
        ("", "Service") => service(object, old, alloc),
        ("", "Secret") => secret(object)?,
        ("", "Namespace") => {
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let labels = child(child(object, "metadata"), "labels");
            labels["kubernetes.io/metadata.name"] = json!(name);
            default(child(object, "spec"), "finalizers", json!(["kubernetes"]));
            default(child(object, "status"), "phase", json!("Active"));
        }
        ("", "PersistentVolumeClaim") => {
            default(child(object, "spec"), "volumeMode", json!("Filesystem"))
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let kind = object["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let names = child(child(object, "spec"), "names");
            default(names, "singular", json!(kind.to_ascii_lowercase()));
            default(names, "listKind", json!(format!("{kind}List")));
            default(
                child(object, "spec"),
                "conversion",
                json!({"strategy": "None"}),
            );
        }
        _ => {}
    }
    Ok(())
}

fn job_spec(spec: &mut Value) {
    default(spec, "backoffLimit", json!(6));
    if spec["parallelism"].is_null() && spec["completions"].is_null() {
        spec["completions"] = json!(1);
    }
    default(spec, "parallelism", json!(1));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    template(spec);
}

fn service(object: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    let spec = child(object, "spec");
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    if kind != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        let kept = old.map(|o| &o["spec"]);
        for field in ["clusterIP", "clusterIPs"] {
            if spec[field].is_null()
                && let Some(previous) = kept.map(|k| &k[field]).filter(|v| !v.is_null())
            {
                spec[field] = previous.clone();
            }
        }
        if spec["clusterIP"].is_null() || spec["clusterIP"] == "" {
            let ip = alloc.cluster_ip();
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        } else if spec["clusterIPs"].is_null() {
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
        }
    }
    let needs_node_port = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
    if needs_node_port {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    let old_ports = old
        .and_then(|o| o["spec"]["ports"].as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            default(port, "protocol", json!("TCP"));
            let number = port["port"].clone();
            default(port, "targetPort", number.clone());
            if needs_node_port && port["nodePort"].is_null() {
                let previous = old_ports
                    .iter()
                    .find(|p| p["port"] == number)
                    .map(|p| p["nodePort"].clone());
                port["nodePort"] = previous
                    .filter(|p| !p.is_null())
                    .unwrap_or_else(|| json!(alloc.node_port()));
            }
        }
    }
}

fn secret(object: &mut Value) -> Result<(), ApiError> {
    default(object, "type", json!("Opaque"));
    let Some(map) = object.as_object_mut() else {
        return Ok(());
    };
    let string_data = map.remove("stringData");
    if let Some(Value::Object(string_data)) = string_data {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    if let Some(data) = map.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            let ok = v
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k:?}]"
                )));
            }
        }
    }
    Ok(())
}

/// Checks an object name: DNS-1123 label for namespaces and services, DNS-1123 subdomain
/// otherwise (at most 253 characters of `[a-z0-9.-]`, alphanumeric at both ends).
///
/// # Errors
///
/// 422 `Invalid` with a `FieldValueInvalid` cause on `metadata.name`.
pub fn validate_name(kind: &str, group: &str, name: &str) -> Result<(), ApiError> {
    let label = matches!((group, kind), ("", "Namespace" | "Service"));
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    let ok = if label {
        name.len() <= 63 && part_ok(name)
    } else {
        name.len() <= 253 && name.split('.').all(part_ok)
    };
    if ok {
        return Ok(());
    }
    let what = if label {
        "RFC 1123 label"
    } else {
        "RFC 1123 subdomain"
    };
    Err(ApiError::invalid(
        kind,
        group,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: \"{name}\": a lowercase {what} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
            field: "metadata.name".into(),
        }],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_the_fields_helm_reads_without_null_checks() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}}});
        apply(
            "apps",
            "Deployment",
            &mut d,
            None,
            &mut Allocator::default(),
        )
        .unwrap();
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
    }

    #[test]
    fn services_keep_their_cluster_ip_across_updates() {
        let mut alloc = Allocator::default();
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("", "Service", &mut s, None, &mut alloc).unwrap();
        let ip = s["spec"]["clusterIP"].clone();
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let mut replaced = json!({"spec": {"ports": [{"port": 80}]}});
        apply("", "Service", &mut replaced, Some(&s), &mut alloc).unwrap();
        assert_eq!(replaced["spec"]["clusterIP"], ip);
    }

    #[test]
    fn secrets_fold_string_data_and_reject_bad_base64() {
        let mut s = json!({"stringData": {"a": "hello"}});
        apply("", "Secret", &mut s, None, &mut Allocator::default()).unwrap();
        assert_eq!(s["data"]["a"], "aGVsbG8=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let mut bad = json!({"data": {"a": "***"}});
        assert_eq!(
            apply("", "Secret", &mut bad, None, &mut Allocator::default())
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn names_follow_dns_rules() {
        assert!(validate_name("ConfigMap", "", "a.b-c").is_ok());
        assert!(validate_name("Namespace", "", "a.b").is_err());
        assert_eq!(
            validate_name("ConfigMap", "", "Bad").unwrap_err().reason,
            "Invalid"
        );
    }
}

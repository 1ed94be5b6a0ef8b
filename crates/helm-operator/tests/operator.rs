//! The operator end to end, under helm 3 and helm 4: kube-sim as the cluster, charts in git
//! repositories on file://, the real helm (wrapped so the test counts every helm process the
//! operator starts).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use support::{Cluster, Helm, Operator, chart_files};
use test_support::BareRepo;

/// Runs an async scenario once per helm version.
macro_rules! both_helms {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm3() {
                super::$name(super::Helm::V3).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm4() {
                super::$name(super::Helm::V4).await;
            }
        }
    };
}

/// A bare repo in the cluster's scratch dir with the named fixture charts under `charts/`.
fn chart_repo(cluster: &Cluster, charts: &[&str]) -> BareRepo {
    let repo = BareRepo::new(cluster.dir.path(), "config", "master");
    let files: Vec<(String, String)> = charts
        .iter()
        .flat_map(|c| chart_files(c, &format!("charts/{c}")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(&refs, &[], "charts");
    repo
}

fn hello_release(namespace: &str, name: &str, url: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  chart:\n    git: {url}\n    ref: master\n    path: charts/hello\n{extra_spec}"
    )
}

async fn seed_mongodb_and_default_release_names(helm: Helm) {
    let cluster = Cluster::start("op-mongo").await;
    let repo = chart_repo(&cluster, &["mongodb"]);
    cluster.namespace("mongo").await;
    let operator =
        Operator::start(&cluster, helm, &[&format!("--git-url={}", repo.file_url())]).await;
    // The seed's FluxHelmRelease (namespace made valid: the seed's `myNamespace` is not a DNS label).
    cluster
        .apply_yaml(
            "apiVersion: helm.integrations.flux.weave.works/v1alpha2\nkind: FluxHelmRelease\nmetadata:\n  name: mongodb\n  namespace: mongo\nspec:\n  chartGitPath: mongodb\n  releaseName: mongo-database\n  values:\n    image: bitnami/mongodb:3.7.1-r1\n",
        )
        .await;
    // A HelmRelease without releaseName: the release is `<namespace>-<name>`.
    cluster
        .apply_yaml(&format!(
            "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: db\n  namespace: mongo\nspec:\n  chart:\n    git: {}\n    path: charts/mongodb\n",
            repo.file_url()
        ))
        .await;
    cluster
        .eventually("release mongo-database deployed", || async {
            cluster.latest(helm, "mongo", "mongo-database") == Some((1, "deployed".into()))
        })
        .await;
    cluster
        .eventually("release mongo-db deployed", || async {
            cluster.latest(helm, "mongo", "mongo-db") == Some((1, "deployed".into()))
        })
        .await;
    let deployment = cluster
        .sim
        .object("apps", "deployments", "mongo", "mongo-database")
        .expect("the chart's Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "bitnami/mongodb:3.7.1-r1"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["helm.fluxcd.io/antecedent"],
        "mongo:fluxhelmrelease/mongodb"
    );
    let fhr = cluster
        .sim
        .object(
            "helm.integrations.flux.weave.works",
            "fluxhelmreleases",
            "mongo",
            "mongodb",
        )
        .unwrap();
    cluster
        .eventually("the FluxHelmRelease status says deployed", || async {
            cluster
                .sim
                .object(
                    "helm.integrations.flux.weave.works",
                    "fluxhelmreleases",
                    "mongo",
                    "mongodb",
                )
                .is_some_and(|o| o["status"]["releaseStatus"] == "deployed")
        })
        .await;
    assert_eq!(fhr["metadata"]["name"], "mongodb");
    cluster
        .eventually("the HelmRelease is Released", || async {
            cluster.hr_condition("mongo", "db", "Released") == "True"
        })
        .await;
    assert_eq!(cluster.hr_status("mongo", "db")["releaseName"], "mongo-db");
    operator.stop().await;
}
both_helms!(seed_mongodb_and_default_release_names);

async fn git_chart_lifecycle_without_revision_churn(helm: Helm) {
    let cluster = Cluster::start("op-git").await;
    let repo = chart_repo(&cluster, &["hello"]);
    cluster.namespace("apps").await;
    let operator = Operator::start(&cluster, helm, &[]).await;
    let url = repo.file_url();

    cluster
        .apply_yaml(&hello_release(
            "apps",
            "hello",
            &url,
            "  values:\n    greeting: one\n",
        ))
        .await;
    cluster
        .eventually("revision 1 deployed", || async {
            cluster.latest(helm, "apps", "apps-hello") == Some((1, "deployed".into()))
        })
        .await;
    cluster
        .eventually("Released=True", || async {
            cluster.hr_condition("apps", "hello", "Released") == "True"
        })
        .await;

    // A values change upgrades to revision 2.
    cluster
        .apply_yaml(&hello_release(
            "apps",
            "hello",
            &url,
            "  values:\n    greeting: two\n",
        ))
        .await;
    cluster
        .eventually("revision 2 deployed", || async {
            cluster.latest(helm, "apps", "apps-hello") == Some((2, "deployed".into()))
        })
        .await;
    let greeting = cluster
        .sim
        .object("", "configmaps", "apps", "apps-hello")
        .unwrap()["data"]["greeting"]
        .clone();
    assert_eq!(greeting, "two");

    // A commit that touches another path: the mirror moves, no new revision.
    let other = repo.commit(&[("README.md", "docs only\n")], &[], "docs");
    cluster
        .eventually("the release observed at the new commit", || async {
            cluster.hr_status("apps", "hello")["revision"] == other.as_str()
        })
        .await;
    assert_eq!(
        cluster.latest(helm, "apps", "apps-hello"),
        Some((2, "deployed".into()))
    );

    // Five resync intervals with nothing changed: no helm process at all.
    let calls = operator.helm.calls();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        operator.helm.calls(),
        calls,
        "no helm process during five idle resyncs"
    );
    assert_eq!(
        cluster.latest(helm, "apps", "apps-hello"),
        Some((2, "deployed".into()))
    );

    // A commit touching the chart upgrades.
    let chart_yaml = std::fs::read_to_string(support::chart("hello").join("Chart.yaml")).unwrap();
    let touched = repo.commit(
        &[(
            "charts/hello/Chart.yaml",
            &chart_yaml.replace("version: 0.1.0", "version: 0.1.1"),
        )],
        &[],
        "bump the chart",
    );
    cluster
        .eventually("revision 3 deployed", || async {
            cluster.latest(helm, "apps", "apps-hello") == Some((3, "deployed".into()))
        })
        .await;
    cluster
        .eventually("status.revision is the chart commit", || async {
            cluster.hr_status("apps", "hello")["revision"] == touched.as_str()
        })
        .await;

    // Deleting the object uninstalls the release.
    cluster
        .delete(
            "helm.fluxcd.io",
            "v1",
            "HelmRelease",
            "helmreleases",
            "apps",
            "hello",
        )
        .await;
    cluster
        .eventually("the release uninstalled and the object gone", || async {
            cluster.latest(helm, "apps", "apps-hello").is_none()
                && !cluster.hr_exists("apps", "hello")
        })
        .await;

    // Deleted while the operator is down: uninstalled when it comes back.
    cluster
        .apply_yaml(&hello_release("apps", "later", &url, ""))
        .await;
    cluster
        .eventually("apps-later deployed", || async {
            cluster.latest(helm, "apps", "apps-later") == Some((1, "deployed".into()))
        })
        .await;
    cluster
        .eventually("Released=True", || async {
            cluster.hr_condition("apps", "later", "Released") == "True"
        })
        .await;
    operator.stop().await;
    cluster
        .delete(
            "helm.fluxcd.io",
            "v1",
            "HelmRelease",
            "helmreleases",
            "apps",
            "later",
        )
        .await;
    assert!(
        cluster.hr_exists("apps", "later"),
        "the finalizer keeps the object while the operator is down"
    );
    assert!(cluster.latest(helm, "apps", "apps-later").is_some());
    let operator = Operator::start(&cluster, helm, &[]).await;
    cluster
        .eventually("apps-later uninstalled after the restart", || async {
            cluster.latest(helm, "apps", "apps-later").is_none()
                && !cluster.hr_exists("apps", "later")
        })
        .await;
    operator.stop().await;
}
both_helms!(git_chart_lifecycle_without_revision_churn);

fn upgrade_calls(operator: &Operator, release: &str) -> usize {
    operator
        .helm
        .calls()
        .iter()
        .filter(|c| c.starts_with("upgrade") && c.contains(release))
        .count()
}

async fn failed_upgrade_is_rolled_back_without_looping(helm: Helm) {
    let cluster = Cluster::start("op-rollback").await;
    let repo = chart_repo(&cluster, &["hello"]);
    cluster.namespace("apps").await;
    let operator = Operator::start(&cluster, helm, &[]).await;
    let url = repo.file_url();
    let spec = |unready: bool, retry: &str| {
        format!(
            "  wait: true\n  timeout: 5\n  rollback:\n    enable: true\n{retry}  values:\n    unready: {unready}\n"
        )
    };
    cluster
        .apply_yaml(&hello_release("apps", "once", &url, &spec(false, "")))
        .await;
    cluster
        .apply_yaml(&hello_release(
            "apps",
            "retried",
            &url,
            &spec(false, "    retry: true\n    maxRetries: 2\n"),
        ))
        .await;
    for name in ["once", "retried"] {
        cluster
            .eventually("installed", || async {
                cluster.hr_condition("apps", name, "Released") == "True"
            })
            .await;
    }

    // Without retry: one failed upgrade, one rollback, then nothing until the spec changes.
    cluster
        .apply_yaml(&hello_release("apps", "once", &url, &spec(true, "")))
        .await;
    cluster
        .eventually("rolled back", || async {
            cluster.hr_condition("apps", "once", "RolledBack") == "True"
        })
        .await;
    let status = cluster.hr_status("apps", "once");
    assert_eq!(status["rollbackCount"], 1);
    assert_eq!(cluster.hr_condition("apps", "once", "Released"), "False");
    let history = cluster.history(helm, "apps", "apps-once");
    let statuses: Vec<&str> = history
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["superseded", "failed", "deployed"],
        "{history:?}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        cluster.history(helm, "apps", "apps-once").len(),
        3,
        "no upgrade loop after the rollback"
    );
    assert_eq!(upgrade_calls(&operator, "apps-once"), 1);

    // With retry and maxRetries 2: the first attempt and exactly two retries.
    cluster
        .apply_yaml(&hello_release(
            "apps",
            "retried",
            &url,
            &spec(true, "    retry: true\n    maxRetries: 2\n"),
        ))
        .await;
    cluster
        .eventually("three rollbacks", || async {
            cluster.hr_status("apps", "retried")["rollbackCount"] == 3
        })
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        upgrade_calls(&operator, "apps-retried"),
        3,
        "one upgrade and exactly two retries"
    );
    assert_eq!(cluster.hr_status("apps", "retried")["rollbackCount"], 3);
    operator.stop().await;
}
both_helms!(failed_upgrade_is_rolled_back_without_looping);

async fn values_from_sources_merge_and_trigger_upgrades(helm: Helm) {
    let cluster = Cluster::start("op-values").await;
    let repo = chart_repo(&cluster, &["hello"]);
    cluster.namespace("apps").await;
    cluster.namespace("shared").await;
    cluster
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\n  namespace: shared\ndata:\n  values.yaml: |\n    greeting: from-configmap\n    replicaCount: 2\n    image: example/one:1\n")
        .await;
    cluster
        .apply_yaml("apiVersion: v1\nkind: Secret\nmetadata:\n  name: private\n  namespace: apps\nstringData:\n  custom.yaml: |\n    greeting: from-secret\n")
        .await;
    let operator = Operator::start(&cluster, helm, &[]).await;
    let url = repo.file_url();
    cluster
        .apply_yaml(&hello_release(
            "apps",
            "merged",
            &url,
            "  valuesFrom:\n  - configMapKeyRef:\n      name: base\n      namespace: shared\n  - secretKeyRef:\n      name: private\n      key: custom.yaml\n  - configMapKeyRef:\n      name: absent\n      optional: true\n  values:\n    replicaCount: 3\n",
        ))
        .await;
    cluster
        .eventually("installed", || async {
            cluster.hr_condition("apps", "merged", "Released") == "True"
        })
        .await;
    let config_map = cluster
        .sim
        .object("", "configmaps", "apps", "apps-merged")
        .unwrap();
    assert_eq!(
        config_map["data"]["greeting"], "from-secret",
        "the Secret wins over the ConfigMap"
    );
    let deployment = cluster
        .sim
        .object("apps", "deployments", "apps", "apps-merged")
        .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3, "inline values win");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"], "example/one:1",
        "the ConfigMap's values are used"
    );

    // Editing the ConfigMap upgrades the release.
    cluster
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\n  namespace: shared\ndata:\n  values.yaml: |\n    greeting: from-configmap\n    replicaCount: 2\n    image: example/two:2\n")
        .await;
    cluster
        .eventually("upgraded with the ConfigMap's new image", || async {
            cluster
                .sim
                .object("apps", "deployments", "apps", "apps-merged")
                .is_some_and(|d| {
                    d["spec"]["template"]["spec"]["containers"][0]["image"] == "example/two:2"
                })
        })
        .await;
    assert_eq!(
        cluster.latest(helm, "apps", "apps-merged"),
        Some((2, "deployed".into()))
    );

    // A missing source that is not optional: a condition says why, and helm never runs for it.
    cluster
        .apply_yaml(&hello_release(
            "apps",
            "missing",
            &url,
            "  valuesFrom:\n  - configMapKeyRef:\n      name: nowhere\n",
        ))
        .await;
    cluster
        .eventually("Released=False with the reason", || async {
            cluster.hr_condition("apps", "missing", "Released") == "False"
        })
        .await;
    let status = cluster.hr_status("apps", "missing");
    let released = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Released")
        .unwrap()
        .clone();
    assert_eq!(released["reason"], "Failed");
    assert!(
        released["message"].as_str().unwrap().contains("nowhere"),
        "{released}"
    );
    assert!(
        !operator
            .helm
            .calls()
            .iter()
            .any(|c| c.contains("apps-missing")),
        "no helm call for a release whose values cannot be composed"
    );
    // The ConfigMap appearing triggers the install.
    cluster
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nowhere\n  namespace: apps\ndata:\n  values.yaml: |\n    greeting: found\n")
        .await;
    cluster
        .eventually("installed once the ConfigMap exists", || async {
            cluster.hr_condition("apps", "missing", "Released") == "True"
        })
        .await;
    operator.stop().await;
}
both_helms!(values_from_sources_merge_and_trigger_upgrades);

/// Runs the real helm 3 (packaging and pushing only) with its state in `home`.
fn helm_tool(home: &std::path::Path, args: &[&str], stdin: Option<&str>) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(Helm::V3.binary())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn repository_and_oci_charts_with_a_pull_secret(helm: Helm) {
    const PASSWORD: &str = "pull-s3cret-value";
    let cluster = Cluster::start("op-sources").await;
    let home = cluster.dir.path().join("packager");
    let packages = cluster.dir.path().join("packages");
    let chart = |name: &str| support::chart(name).display().to_string();
    for name in ["hello", "mongodb"] {
        helm_tool(
            &home,
            &[
                "package",
                &chart(name),
                "--destination",
                packages.to_str().unwrap(),
            ],
            None,
        );
    }
    helm_tool(&home, &["repo", "index", packages.to_str().unwrap()], None);
    let repository = test_support::HttpDir::start(&packages);
    let open_dir = cluster.dir.path().join("registry-open");
    let auth_dir = cluster.dir.path().join("registry-auth");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::create_dir_all(&auth_dir).unwrap();
    let open = test_support::Registry::start(&open_dir);
    let private = test_support::Registry::start_with_htpasswd(&auth_dir, "puller", PASSWORD);
    let tgz = packages.join("mongodb-0.1.0.tgz");
    helm_tool(
        &home,
        &[
            "push",
            tgz.to_str().unwrap(),
            &open.oci_url("charts"),
            "--plain-http",
        ],
        None,
    );
    helm_tool(
        &home,
        &[
            "registry",
            "login",
            &private.host(),
            "--username",
            "puller",
            "--password-stdin",
            "--insecure",
        ],
        Some(PASSWORD),
    );
    helm_tool(
        &home,
        &[
            "push",
            tgz.to_str().unwrap(),
            &private.oci_url("charts"),
            "--plain-http",
        ],
        None,
    );

    cluster.namespace("apps").await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\n  namespace: apps\nstringData:\n  username: puller\n  password: {PASSWORD}\n"
        ))
        .await;
    cluster
        .apply_yaml("apiVersion: v1\nkind: Secret\nmetadata:\n  name: wrong\n  namespace: apps\nstringData:\n  username: puller\n  password: not-the-password\n")
        .await;
    let operator = Operator::start(
        &cluster,
        helm,
        &[&format!(
            "--insecure-registry={},{}",
            open.host(),
            private.host()
        )],
    )
    .await;
    let release = |name: &str, chart: &str| {
        format!(
            "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  chart:\n{chart}"
        )
    };
    cluster
        .apply_yaml(&release(
            "from-repo",
            &format!(
                "    repository: {}/\n    name: hello\n    version: 0.1.0\n",
                repository.url()
            ),
        ))
        .await;
    cluster
        .apply_yaml(&release(
            "from-oci",
            &format!(
                "    repository: {}\n    name: mongodb\n    version: 0.1.0\n",
                open.oci_url("charts")
            ),
        ))
        .await;
    cluster
        .apply_yaml(&release(
            "from-private",
            &format!(
                "    repository: {}\n    name: mongodb\n    version: 0.1.0\n    chartPullSecret:\n      name: pull\n",
                private.oci_url("charts")
            ),
        ))
        .await;
    cluster
        .apply_yaml(&release(
            "wrong-secret",
            &format!(
                "    repository: {}\n    name: mongodb\n    version: 0.1.0\n    chartPullSecret:\n      name: wrong\n",
                private.oci_url("charts")
            ),
        ))
        .await;
    for name in ["from-repo", "from-oci", "from-private"] {
        cluster
            .eventually(&format!("{name} Released"), || async {
                cluster.hr_condition("apps", name, "Released") == "True"
            })
            .await;
        assert_eq!(
            cluster.hr_status("apps", name)["revision"],
            "0.1.0",
            "the chart version is the revision"
        );
    }
    assert!(
        cluster
            .sim
            .object("apps", "deployments", "apps", "apps-from-oci")
            .is_some()
    );
    assert!(
        cluster
            .sim
            .object("apps", "deployments", "apps", "apps-from-private")
            .is_some()
    );
    cluster
        .eventually("the wrong credentials reported", || async {
            cluster.hr_condition("apps", "wrong-secret", "ChartFetched") == "False"
        })
        .await;
    let status = cluster.hr_status("apps", "wrong-secret").to_string();
    assert!(status.contains("nauthorized"), "{status}");
    let mut everything = status;
    for (group, plural) in [
        ("events.k8s.io", "events"),
        ("helm.fluxcd.io", "helmreleases"),
    ] {
        for key in cluster.sim.names(group, plural) {
            let (namespace, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            if let Some(object) = cluster.sim.object(group, plural, namespace, name) {
                everything.push_str(&object.to_string());
            }
        }
    }
    let (_, metrics) = operator.http("GET", "/metrics");
    everything.push_str(&metrics);
    assert!(!everything.contains(PASSWORD) && !everything.contains("not-the-password"));
    operator.stop().await;
}
both_helms!(repository_and_oci_charts_with_a_pull_secret);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_git_refreshes_mirrors_now_and_metrics_keep_helm_operator_names() {
    let helm = Helm::V3;
    let cluster = Cluster::start("op-sync-git").await;
    let repo = chart_repo(&cluster, &["hello"]);
    cluster.namespace("apps").await;
    // Mirrors are polled only hourly: only the API call can bring the new commit in time.
    let operator = Operator::start(&cluster, helm, &["--git-poll-interval=1h"]).await;
    let url = repo.file_url();
    cluster
        .apply_yaml(&hello_release("apps", "hello", &url, ""))
        .await;
    cluster
        .eventually("revision 1", || async {
            cluster.hr_condition("apps", "hello", "Released") == "True"
        })
        .await;
    let chart_yaml = std::fs::read_to_string(support::chart("hello").join("Chart.yaml")).unwrap();
    repo.commit(
        &[(
            "charts/hello/Chart.yaml",
            &chart_yaml.replace("version: 0.1.0", "version: 0.2.0"),
        )],
        &[],
        "bump the chart",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.latest(helm, "apps", "apps-hello"),
        Some((1, "deployed".into())),
        "nothing moves before the mirror is refreshed"
    );
    let (code, body) = operator.http("POST", "/api/v1/sync-git");
    assert_eq!((code, body.as_str()), (200, "OK"));
    cluster
        .eventually("revision 2 after sync-git", || async {
            cluster.latest(helm, "apps", "apps-hello") == Some((2, "deployed".into()))
        })
        .await;
    cluster
        .eventually("the metrics", || async {
            let (_, text) = operator.http("GET", "/metrics");
            text.contains("flux_helm_operator_release_condition_info{condition=\"Released\",release_name=\"apps-hello\",target_namespace=\"apps\"} 1")
                && text.contains("flux_helm_operator_release_count 1")
                && text.contains("flux_helm_operator_release_action_duration_seconds_count{action=\"upgrade\",release_name=\"apps-hello\",success=\"true\",target_namespace=\"apps\"} 1")
                && text
                    .lines()
                    .any(|l| l.starts_with("flux_helm_operator_helm_processes_total{version=\"v3\"}") && !l.ends_with(" 0"))
        })
        .await;
    let (code, body) = operator.http("GET", "/healthz");
    assert_eq!((code, body.as_str()), (200, "OK"));
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_restricted_operator_leaves_other_namespaces_alone() {
    let helm = Helm::V3;
    let cluster = Cluster::start("op-allow-ns").await;
    let repo = chart_repo(&cluster, &["hello"]);
    cluster.namespace("apps").await;
    cluster.namespace("other").await;
    let operator = Operator::start(&cluster, helm, &["--allow-namespace=apps"]).await;
    let url = repo.file_url();
    cluster
        .apply_yaml(&hello_release("other", "outside", &url, ""))
        .await;
    cluster
        .apply_yaml(&hello_release("apps", "inside", &url, ""))
        .await;
    cluster
        .eventually("the release in the allowed namespace", || async {
            cluster.hr_condition("apps", "inside", "Released") == "True"
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(cluster.latest(helm, "other", "other-outside").is_none());
    let outside = cluster
        .sim
        .object("helm.fluxcd.io", "helmreleases", "other", "outside")
        .unwrap();
    assert!(outside["status"].is_null(), "{outside}");
    assert!(outside["metadata"]["finalizers"].is_null(), "{outside}");
    assert!(
        !operator.helm.calls().iter().any(|c| c.contains("other")),
        "{:?}",
        operator.helm.calls()
    );
    operator.stop().await;
}

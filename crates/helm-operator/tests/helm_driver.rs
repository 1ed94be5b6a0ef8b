//! The Helm driver against kube-sim with the real helm 3.17.3 and 4.1.4: each behaviour is one
//! function run once per version (`<behaviour>::helm3`, `<behaviour>::helm4`). What Helm did is
//! checked in Helm's own storage Secrets (through `helm::storage`, which is thereby checked to
//! read both versions' records) and in the objects kube-sim holds.
//!
//! A few tests use a fake `helm` (a shell script) where the real one cannot show the behaviour:
//! a helm that hangs, and the environment, arguments and values file a helm process gets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use helm_operator::helm::storage::{ReleaseStorage, StorageError};
use helm_operator::helm::{
    DependencyBuildOptions, HelmCli, HelmDriver, HelmError, HelmVersion, InstallOptions, Redactor,
    ReleaseStatus, RollbackOptions, TestOptions, UninstallOptions, Uninstalled, UpgradeOptions,
    ValuesStrategy,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kube_sim::KubeSim;
use serde_json::{Value, json};
use support::{chart, kube_client, tool};
use test_support::TempDir;

const NAMESPACE: &str = "apps";
/// Helm's timeout for actions that are expected to succeed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `$behaviour(version)` as one test per Helm version.
macro_rules! both_versions {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm3() {
                super::$behaviour(HelmVersion::V3).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm4() {
                super::$behaviour(HelmVersion::V4).await;
            }
        }
    )*};
}

both_versions!(
    install_records_revision_1_with_exactly_the_given_values,
    upgrade_with_changed_values_records_the_next_revision,
    unready_upgrade_with_wait_fails_and_is_recorded_failed,
    rollback_deploys_the_previous_revision_as_a_new_one,
    test_passes_and_fails_when_the_test_pod_fails,
    uninstall_purges_and_then_reports_not_found,
    secret_values_echoed_by_helm_are_redacted,
    dependency_build_vendors_a_file_dependency,
    processes_started_counts_every_helm_call,
    every_option_is_accepted_by_helm,
);

fn binary(version: HelmVersion) -> PathBuf {
    match version {
        HelmVersion::V3 => tool("KUBE_SIM_HELM3"),
        HelmVersion::V4 => tool("KUBE_SIM_HELM4"),
    }
}

/// A kube-sim with namespace `apps`, a driver for it and a storage reader, in a temp dir.
struct Env {
    sim: KubeSim,
    dir: TempDir,
    helm: HelmCli,
    storage: ReleaseStorage,
}

async fn env(version: HelmVersion, label: &str) -> Env {
    let sim = KubeSim::start().unwrap();
    let dir = TempDir::new(&format!("helm-driver-{label}-{version}"));
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let helm = HelmCli::new(
        binary(version),
        version,
        Some(kubeconfig),
        dir.path().join("helm-state"),
    )
    .unwrap()
    .with_grace(Duration::from_secs(30));
    let client = kube_client(&sim).await;
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    Env {
        sim,
        dir,
        helm,
        storage: ReleaseStorage::new(client),
    }
}

fn install_options(release: &str, chart: &Path, values: Value) -> InstallOptions {
    let mut options = InstallOptions::new(release, NAMESPACE, chart);
    options.values = values;
    options.timeout = TIMEOUT;
    options.wait = true;
    options
}

fn upgrade_options(release: &str, values: Value) -> UpgradeOptions {
    let mut options = UpgradeOptions::new(release, NAMESPACE, chart("hello"));
    options.values = values;
    options.timeout = TIMEOUT;
    options.wait = true;
    options
}

impl Env {
    /// `(version, status)` of every stored revision of `release`.
    async fn revisions(&self, release: &str) -> Vec<(u32, ReleaseStatus)> {
        self.storage
            .history(NAMESPACE, release)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.version, r.status))
            .collect()
    }

    /// The `greeting` the hello chart wrote to its ConfigMap.
    fn greeting(&self, release: &str) -> Option<String> {
        self.sim
            .object("", "configmaps", NAMESPACE, release)
            .map(|cm| cm["data"]["greeting"].as_str().unwrap().to_owned())
    }

    /// The files left in the driver's directory for values files.
    fn values_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.helm.state_dir().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

async fn install_records_revision_1_with_exactly_the_given_values(version: HelmVersion) {
    let env = env(version, "install").await;
    let values = json!({"greeting": "hi there", "replicaCount": 2, "extra": {"list": [1, "two"]}});

    let release = env
        .helm
        .install(&install_options("web", &chart("hello"), values.clone()))
        .await
        .unwrap();

    assert_eq!(release.name, "web");
    assert_eq!(release.namespace, NAMESPACE);
    assert_eq!(release.revision, 1);
    assert_eq!(release.status, ReleaseStatus::Deployed);
    assert_eq!(release.chart.name, "hello");
    assert_eq!(release.chart.version, "0.1.0");
    assert_eq!(release.chart.app_version.as_deref(), Some("1.27"));
    let stored = env.storage.latest(NAMESPACE, "web").await.unwrap().unwrap();
    assert_eq!(stored.name, "web");
    assert_eq!(stored.namespace, NAMESPACE);
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, ReleaseStatus::Deployed);
    assert_eq!(
        stored.config, values,
        "the stored user values are exactly ours"
    );
    assert_eq!(stored.chart, release.chart);
    assert_eq!(stored.description, "Install complete");
    assert!(stored.last_deployed.is_some());
    assert!(
        stored.manifest.contains("kind: ConfigMap"),
        "{}",
        stored.manifest
    );
    assert!(stored.manifest.contains("hi there"), "{}", stored.manifest);
    assert_eq!(env.revisions("web").await, [(1, ReleaseStatus::Deployed)]);
    assert_eq!(env.greeting("web").as_deref(), Some("hi there"));
    assert!(env.values_files().is_empty(), "the values file was removed");
}

async fn upgrade_with_changed_values_records_the_next_revision(version: HelmVersion) {
    let env = env(version, "upgrade").await;
    env.helm
        .install(&install_options(
            "web",
            &chart("hello"),
            json!({"greeting": "one"}),
        ))
        .await
        .unwrap();

    let release = env
        .helm
        .upgrade(&upgrade_options("web", json!({"greeting": "two"})))
        .await
        .unwrap();
    assert_eq!(release.revision, 2);
    assert_eq!(release.status, ReleaseStatus::Deployed);
    assert_eq!(
        env.revisions("web").await,
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)]
    );
    let stored = env.storage.latest(NAMESPACE, "web").await.unwrap().unwrap();
    assert_eq!(stored.config, json!({"greeting": "two"}));
    assert_eq!(env.greeting("web").as_deref(), Some("two"));

    // `resetValues: false`: the new values are merged over the previous revision's.
    let mut reuse = upgrade_options("web", json!({"replicaCount": 3}));
    reuse.values_strategy = ValuesStrategy::from_reset_values(Some(false));
    env.helm.upgrade(&reuse).await.unwrap();
    let stored = env.storage.latest(NAMESPACE, "web").await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(stored.config, json!({"greeting": "two", "replicaCount": 3}));

    // `resetValues` unset: only the given values count, the chart's defaults come back.
    let mut reset = upgrade_options("web", json!({}));
    reset.values_strategy = ValuesStrategy::from_reset_values(None);
    env.helm.upgrade(&reset).await.unwrap();
    let stored = env.storage.latest(NAMESPACE, "web").await.unwrap().unwrap();
    assert_eq!(stored.version, 4);
    assert_eq!(stored.config, json!({}));
    assert_eq!(env.greeting("web").as_deref(), Some("hello"));
}

async fn unready_upgrade_with_wait_fails_and_is_recorded_failed(version: HelmVersion) {
    let env = env(version, "unready").await;
    env.helm
        .install(&install_options("web", &chart("hello"), json!({})))
        .await
        .unwrap();

    let mut upgrade = upgrade_options("web", json!({"unready": true}));
    upgrade.timeout = Duration::from_secs(5);
    let error = env.helm.upgrade(&upgrade).await.unwrap_err();

    let HelmError::Failed { stderr, .. } = &error else {
        panic!("expected a helm failure, got {error:?}");
    };
    assert!(stderr.contains("UPGRADE FAILED"), "{stderr}");
    assert_eq!(error.reason(), "HelmFailed");
    assert!(error.to_string().contains("UPGRADE FAILED"), "{error}");
    assert_eq!(
        env.revisions("web").await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::Failed)]
    );
    let status = env.helm.status(NAMESPACE, "web").await.unwrap().unwrap();
    assert_eq!(status.revision, 2);
    assert_eq!(status.status, ReleaseStatus::Failed);
    assert!(env.values_files().is_empty(), "the values file was removed");
}

async fn rollback_deploys_the_previous_revision_as_a_new_one(version: HelmVersion) {
    let env = env(version, "rollback").await;
    env.helm
        .install(&install_options(
            "web",
            &chart("hello"),
            json!({"greeting": "one"}),
        ))
        .await
        .unwrap();
    env.helm
        .upgrade(&upgrade_options("web", json!({"greeting": "two"})))
        .await
        .unwrap();

    let mut rollback = RollbackOptions::new("web", NAMESPACE);
    rollback.timeout = TIMEOUT;
    rollback.wait = true;
    env.helm.rollback(&rollback).await.unwrap();

    let stored = env.storage.latest(NAMESPACE, "web").await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(stored.status, ReleaseStatus::Deployed);
    assert_eq!(
        stored.config,
        json!({"greeting": "one"}),
        "revision 1's values"
    );
    assert_eq!(env.greeting("web").as_deref(), Some("one"));
    let from_helm: Vec<_> = env
        .helm
        .history(NAMESPACE, "web")
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.revision, h.status))
        .collect();
    assert_eq!(
        from_helm,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Superseded),
            (3, ReleaseStatus::Deployed)
        ]
    );
    assert_eq!(
        env.revisions("web").await,
        from_helm,
        "storage agrees with helm"
    );
}

async fn test_passes_and_fails_when_the_test_pod_fails(version: HelmVersion) {
    let env = env(version, "test").await;
    env.helm
        .install(&install_options("web", &chart("hello"), json!({})))
        .await
        .unwrap();
    let mut test = TestOptions::new("web", NAMESPACE);
    test.timeout = TIMEOUT;

    env.helm.test(&test).await.unwrap();
    assert_eq!(
        env.sim.object("", "pods", NAMESPACE, "web-test").unwrap()["status"]["phase"],
        "Succeeded"
    );

    env.helm
        .upgrade(&upgrade_options("web", json!({"testFails": true})))
        .await
        .unwrap();
    let error = env.helm.test(&test).await.unwrap_err();
    let HelmError::Failed { stderr, .. } = &error else {
        panic!("expected a helm failure, got {error:?}");
    };
    assert!(
        stderr.contains("web-test"),
        "the failed test is named: {stderr}"
    );
    assert_eq!(
        env.sim.object("", "pods", NAMESPACE, "web-test").unwrap()["status"]["phase"],
        "Failed"
    );
}

async fn uninstall_purges_and_then_reports_not_found(version: HelmVersion) {
    let env = env(version, "uninstall").await;
    env.helm
        .install(&install_options("web", &chart("hello"), json!({})))
        .await
        .unwrap();
    env.helm
        .upgrade(&upgrade_options("web", json!({"greeting": "two"})))
        .await
        .unwrap();
    assert_eq!(env.revisions("web").await.len(), 2);
    let mut uninstall = UninstallOptions::new("web", NAMESPACE);
    uninstall.timeout = TIMEOUT;

    assert_eq!(
        env.helm.uninstall(&uninstall).await.unwrap(),
        Uninstalled::Removed
    );
    assert_eq!(env.revisions("web").await, [], "no history is kept");
    assert!(
        env.storage
            .latest(NAMESPACE, "web")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(env.greeting("web"), None, "the release's objects are gone");

    assert_eq!(
        env.helm.uninstall(&uninstall).await.unwrap(),
        Uninstalled::NotFound
    );
    assert_eq!(env.helm.status(NAMESPACE, "web").await.unwrap(), None);
    assert_eq!(env.helm.history(NAMESPACE, "web").await.unwrap(), []);
}

async fn secret_values_echoed_by_helm_are_redacted(version: HelmVersion) {
    let env = env(version, "redact").await;
    let secret = "hunter2-from-a-secret";
    let values = json!({"password": secret});

    // Without redaction helm's error repeats the value: the chart really leaks it.
    let leaked = env
        .helm
        .install(&install_options("leaky", &chart("leaky"), values.clone()))
        .await
        .unwrap_err();
    assert!(leaked.to_string().contains(secret), "{leaked}");

    let mut options = install_options("leaky", &chart("leaky"), values);
    options.secrets = Redactor::with_secrets([secret]);
    let error = env.helm.install(&options).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("refusing the password ***: it is too short"),
        "{message}"
    );
    assert!(!message.contains(secret), "{message}");
    assert!(!format!("{error:?}").contains(secret));
    assert!(!error.stderr().unwrap().contains(secret));
}

async fn dependency_build_vendors_a_file_dependency(version: HelmVersion) {
    let env = env(version, "deps").await;
    let charts = env.dir.path().join("charts");
    for name in ["umbrella", "hello"] {
        copy_dir(&chart(name), &charts.join(name));
    }
    let umbrella = charts.join("umbrella");

    let mut build = DependencyBuildOptions::new(&umbrella);
    build.timeout = TIMEOUT;
    env.helm.dependency_build(&build).await.unwrap();

    assert!(umbrella.join("charts/hello-0.1.0.tgz").is_file());
    assert!(umbrella.join("Chart.lock").is_file());
    env.helm
        .install(&install_options("umbrella", &umbrella, json!({})))
        .await
        .unwrap();
    let stored = env
        .storage
        .latest(NAMESPACE, "umbrella")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.chart.name, "umbrella");
    assert_eq!(
        env.greeting("umbrella").as_deref(),
        Some("hello from the umbrella"),
        "the vendored subchart was rendered with the umbrella's values"
    );
}

async fn processes_started_counts_every_helm_call(version: HelmVersion) {
    let env = env(version, "count").await;
    assert_eq!(env.helm.processes_started(), 0);
    assert_eq!(env.helm.status(NAMESPACE, "web").await.unwrap(), None);
    assert_eq!(env.helm.processes_started(), 1);
    env.helm
        .install(&install_options("web", &chart("hello"), json!({})))
        .await
        .unwrap();
    assert_eq!(env.helm.processes_started(), 2);
    assert_eq!(env.helm.history(NAMESPACE, "web").await.unwrap().len(), 1);
    assert_eq!(env.helm.processes_started(), 3);
    // Reading storage starts no helm.
    env.storage.latest(NAMESPACE, "web").await.unwrap().unwrap();
    env.storage.history(NAMESPACE, "web").await.unwrap();
    assert_eq!(env.helm.processes_started(), 3);
    env.helm
        .uninstall(&UninstallOptions::new("web", NAMESPACE))
        .await
        .unwrap();
    assert_eq!(env.helm.processes_started(), 4);
    assert_eq!(env.helm.detect_version().await.unwrap(), version);
    assert_eq!(env.helm.processes_started(), 5);

    // A helm that cannot be started is not counted.
    let missing = HelmCli::new(
        env.dir.path().join("no-such-helm"),
        version,
        None,
        env.dir.path().join("other-state"),
    )
    .unwrap();
    let error = missing.status(NAMESPACE, "web").await.unwrap_err();
    assert!(matches!(error, HelmError::Spawn { .. }), "{error:?}");
    assert_eq!(missing.processes_started(), 0);
}

async fn every_option_is_accepted_by_helm(version: HelmVersion) {
    // Every flag of every action, so that a flag this Helm does not know fails the test.
    let env = env(version, "flags").await;
    let mut install = install_options("web", &chart("hello"), json!({"greeting": "one"}));
    install.skip_crds = true;
    install.disable_openapi_validation = true;
    env.helm.install(&install).await.unwrap();

    let mut upgrade = upgrade_options("web", json!({"greeting": "two"}));
    upgrade.force = true;
    upgrade.values_strategy = ValuesStrategy::Reuse;
    upgrade.max_history = 0;
    upgrade.skip_crds = true;
    upgrade.disable_openapi_validation = true;
    env.helm.upgrade(&upgrade).await.unwrap();

    let mut rollback = RollbackOptions::new("web", NAMESPACE);
    rollback.revision = Some(1);
    rollback.timeout = TIMEOUT;
    rollback.wait = true;
    rollback.disable_hooks = true;
    rollback.recreate = true;
    rollback.force = true;
    rollback.max_history = 0;
    env.helm.rollback(&rollback).await.unwrap();
    assert_eq!(env.greeting("web").as_deref(), Some("one"));

    let mut uninstall = UninstallOptions::new("web", NAMESPACE);
    uninstall.timeout = TIMEOUT;
    uninstall.wait = true;
    assert_eq!(
        env.helm.uninstall(&uninstall).await.unwrap(),
        Uninstalled::Removed
    );
    assert_eq!(env.revisions("web").await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_helm_is_killed_at_its_time_limit() {
    let dir = TempDir::new("helm-driver-hang");
    let pid_file = dir.path().join("pid");
    let fake = fake_helm(
        dir.path(),
        &format!(
            "echo $$ > {}\necho 'started, now hanging' >&2\nexec sleep 600\n",
            pid_file.display()
        ),
    );
    let helm = HelmCli::new(fake, HelmVersion::V3, None, dir.path().join("state"))
        .unwrap()
        .with_grace(Duration::from_secs(1));
    let mut options = InstallOptions::new("web", NAMESPACE, "/nowhere");
    options.timeout = Duration::from_secs(1);

    let error = helm.install(&options).await.unwrap_err();

    let HelmError::TimedOut { limit, stderr, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(*limit, Duration::from_secs(2), "helm timeout plus grace");
    assert!(stderr.contains("started, now hanging"), "{stderr}");
    assert_eq!(error.reason(), "HelmTimedOut");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(
        !proc.exists(),
        "the hanging helm ({}) was killed",
        pid.trim()
    );
    assert_eq!(helm.processes_started(), 1);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("state/tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the values file was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_gets_a_minimal_environment_and_a_private_values_file() {
    let dir = TempDir::new("helm-driver-env");
    let log = dir.path().join("log");
    let log = log.display();
    // Records its environment, arguments and the values file, then answers like helm install.
    let fake = fake_helm(
        dir.path(),
        &format!(
            r#"env > {log}.env
printf '%s\n' "$@" > {log}.args
values=""
previous=""
for arg in "$@"; do
  if [ "$previous" = "--values" ]; then values="$arg"; fi
  previous="$arg"
done
echo "$values" > {log}.values-path
stat -c %a "$values" > {log}.values-mode
cat "$values" > {log}.values
echo '{{"name":"web","namespace":"apps","version":1,"info":{{"status":"deployed"}}}}'
"#
        ),
    );
    let state = dir.path().join("state");
    let kubeconfig = dir.path().join("kubeconfig");
    let helm = HelmCli::new(fake, HelmVersion::V4, Some(kubeconfig.clone()), &state).unwrap();
    let secret = "hunter2-from-a-secret";
    let values = json!({"password": secret, "greeting": "hi"});
    let mut options = InstallOptions::new("web", NAMESPACE, "/charts/hello");
    options.values = values.clone();

    let release = helm.install(&options).await.unwrap();
    assert_eq!(release.revision, 1);

    let read = |suffix: &str| std::fs::read_to_string(format!("{log}.{suffix}")).unwrap();
    let environment: Vec<(String, String)> = read("env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        // Set by the shell itself, or passed through on purpose when the test runner has them.
        .filter(|(k, _)| !["PWD", "SHLVL", "_", "OLDPWD"].contains(&k.as_str()))
        .filter(|(k, _)| !k.to_ascii_uppercase().ends_with("_PROXY"))
        .collect();
    let names: Vec<&str> = environment.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "HELM_CACHE_HOME",
            "HELM_CONFIG_HOME",
            "HELM_DATA_HOME",
            "HOME",
            "KUBECONFIG",
            "PATH"
        ],
        "{environment:?}"
    );
    let var = |name: &str| {
        environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| PathBuf::from(v))
            .unwrap()
    };
    assert_eq!(var("HOME"), state);
    assert_eq!(var("HELM_CACHE_HOME"), state.join("cache"));
    assert_eq!(var("HELM_CONFIG_HOME"), state.join("config"));
    assert_eq!(var("HELM_DATA_HOME"), state.join("data"));
    assert_eq!(var("KUBECONFIG"), kubeconfig);

    let args = read("args");
    assert!(
        !args.contains(secret),
        "values are not on the command line: {args}"
    );
    let values_path = PathBuf::from(read("values-path").trim());
    assert!(
        values_path.starts_with(state.join("tmp")),
        "{}",
        values_path.display()
    );
    assert_eq!(read("values-mode").trim(), "600");
    assert_eq!(
        serde_json::from_str::<Value>(&read("values")).unwrap(),
        values
    );
    assert!(!values_path.exists(), "the values file was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_reports_a_corrupt_record_by_its_secret_name() {
    let sim = KubeSim::start().unwrap();
    let client = kube_client(&sim).await;
    let storage = ReleaseStorage::new(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let secret = |name: &str, type_: &str, release: &str, data: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {"owner": "helm", "name": release, "version": "1", "status": "deployed"}
            },
            "type": type_,
            "data": {"release": data}
        }))
        .unwrap()
    };
    // A Secret with Helm's labels but another type is not a release record.
    secrets
        .create(
            &PostParams::default(),
            &secret("lookalike", "Opaque", "other", "bm90IGEgcmVsZWFzZQ=="),
        )
        .await
        .unwrap();
    assert!(storage.latest("default", "other").await.unwrap().is_none());
    assert_eq!(storage.history("default", "other").await.unwrap().len(), 0);

    // base64 of "not a release" as Helm's payload: not gzip, not JSON.
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "sh.helm.release.v1.web.v1",
                "helm.sh/release.v1",
                "web",
                "Ym05MElHRWdjbVZzWldGelpRPT0=",
            ),
        )
        .await
        .unwrap();
    let error = storage.latest("default", "web").await.unwrap_err();
    let StorageError::Decode { secret, .. } = &error else {
        panic!("expected a decode error, got {error:?}");
    };
    assert_eq!(secret, "default/sh.helm.release.v1.web.v1");
    assert!(matches!(
        storage.history("default", "web").await.unwrap_err(),
        StorageError::Decode { .. }
    ));
    assert!(matches!(
        storage
            .latest("default", "web,owner=helm")
            .await
            .unwrap_err(),
        StorageError::InvalidName { .. }
    ));
}

/// An executable shell script standing in for helm.
fn fake_helm(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-helm");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

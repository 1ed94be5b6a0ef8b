#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `.flux.yaml` image updaters against real `/bin/sh` generators and updaters in a temporary
//! checkout: `commandUpdated` (updater commands with the `FLUX_*` variables, Flux v1's documented
//! style) and `patchUpdated` (the patch file written), each read back through
//! `manifests::load` with manifest generation on.

use std::fs;
use std::path::Path;
use std::time::Duration;

use flux_agent::generate::update::{UpdaterImageChange, UpdaterOutcome, apply_image_changes};
use flux_agent::manifests::{self, LoadOptions, NoScopes};
use model::ResourceId;
use model::values_images::{ValuePath, ValueUpdate};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap()
}

fn change(
    namespace: &str,
    kind: &str,
    name: &str,
    container: &str,
    image: &str,
) -> UpdaterImageChange {
    UpdaterImageChange {
        id: ResourceId::new(namespace, kind, name),
        api_version: if kind == "HelmRelease" {
            "helm.fluxcd.io/v1".to_owned()
        } else {
            "apps/v1".to_owned()
        },
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
        container: container.to_owned(),
        image: image.to_owned(),
        values: Vec::new(),
    }
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| (*p).to_owned()).collect()
}

/// The objects the agent would sync, by `<ns>:<kind>/<name>`.
fn load(root: &Path, paths: &[String]) -> Vec<(String, Value)> {
    let options = LoadOptions {
        manifest_generation: true,
        generator_timeout: TIMEOUT,
        ..LoadOptions::default()
    };
    let loaded = manifests::load(root, paths, &options, &NoScopes);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded
        .manifests
        .into_iter()
        .map(|m| (m.id.to_string(), m.object().unwrap()))
        .collect()
}

fn object<'a>(objects: &'a [(String, Value)], id: &str) -> &'a Value {
    &objects.iter().find(|(i, _)| i == id).unwrap().1
}

fn images(object: &Value, list: &str) -> Vec<(String, String)> {
    object["spec"]["template"]["spec"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["image"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn file_names(outcome: &UpdaterOutcome) -> Vec<&str> {
    outcome.files.iter().map(|(p, _)| p.as_str()).collect()
}

fn error_of<'a>(outcome: &'a UpdaterOutcome, id: &str) -> &'a str {
    &outcome
        .errors
        .iter()
        .find(|(i, _)| i.to_string() == id)
        .unwrap_or_else(|| panic!("no error for {id}: {:?}", outcome.errors))
        .1
}

const TEMPLATE: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: @NS@
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: @INIT@
      containers:
      - name: app
        image: @APP@
";

/// A `commandUpdated` repository: `apps/.flux.yaml` serves `apps/staging` and
/// `apps/production`, whose images live in `images/<container>` files; `other` is plain YAML.
fn command_repo(root: &Path, env_log: &Path) {
    write(
        root,
        "apps/.flux.yaml",
        &format!(
            "version: 1\ncommandUpdated:\n  generators:\n\
             \x20 - command: sed -e \"s|@NS@|$(cat namespace)|\" -e \"s|@APP@|$(cat images/app)|\" -e \"s|@INIT@|$(cat images/init)|\" ../template.yaml\n\
             \x20 updaters:\n\
             \x20 - containerImage:\n      command: env | sort > {log}\n\
             \x20 - containerImage:\n      command: printf '%s:%s\\n' \"$FLUX_IMG\" \"$FLUX_TAG\" > \"images/$FLUX_CONTAINER\"\n\
             \x20 - containerImage:\n      command: 'if [ \"$FLUX_TAG\" = broken ]; then echo \"refusing $FLUX_IMG\" >&2; exit 4; fi'\n      timeout: 10s\n",
            log = env_log.display()
        ),
    );
    write(root, "apps/template.yaml", TEMPLATE);
    for (env, app) in [("staging", "1.0.0"), ("production", "0.9.0")] {
        write(root, &format!("apps/{env}/namespace"), env);
        write(
            root,
            &format!("apps/{env}/images/app"),
            &format!("127.0.0.1:5000/app:{app}\n"),
        );
        write(root, &format!("apps/{env}/images/init"), "busybox:1.35\n");
    }
    write(
        root,
        "other/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: other}\n",
    );
    fs::create_dir_all(root.join(".git")).unwrap();
    write(root, ".git/HEAD", "ref: refs/heads/main\n");
}

#[test]
fn command_updaters_edit_the_checkout_with_the_flux_variables() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let env_log = dir.path().join("env.log");
    command_repo(&root, &env_log);
    let targets = paths(&["apps/staging", "apps/production", "other"]);

    let outcome = apply_image_changes(
        &root,
        &targets,
        "apps/.flux.yaml",
        &[
            change(
                "staging",
                "Deployment",
                "web",
                "app",
                "127.0.0.1:5000/app:1.2.3",
            ),
            change("staging", "Deployment", "web", "init", "busybox:1.36"),
        ],
        TIMEOUT,
    );
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(
        outcome.files,
        vec![
            (
                "apps/staging/images/app".to_owned(),
                b"127.0.0.1:5000/app:1.2.3\n".to_vec()
            ),
            (
                "apps/staging/images/init".to_owned(),
                b"busybox:1.36\n".to_vec()
            ),
        ]
    );
    // The updaters ran in the target path with only PATH, HOME and the FLUX_* variables; the
    // log is of the last change.
    let log = fs::read_to_string(&env_log).unwrap();
    let flux: Vec<&str> = log.lines().filter(|l| l.starts_with("FLUX_")).collect();
    assert_eq!(
        flux,
        [
            "FLUX_CONTAINER=init",
            "FLUX_IMG=busybox",
            "FLUX_TAG=1.36",
            "FLUX_WL_KIND=deployment",
            "FLUX_WL_NAME=web",
            "FLUX_WL_NS=staging",
            "FLUX_WORKLOAD=staging:deployment/web",
        ]
    );
    assert!(log.lines().any(|l| l.starts_with("PATH=")), "{log}");
    assert!(!log.contains("CARGO"), "{log}");
    let pwd = log.lines().find_map(|l| l.strip_prefix("PWD=")).unwrap();
    assert_eq!(
        Path::new(pwd).canonicalize().unwrap(),
        root.join("apps/staging").canonicalize().unwrap()
    );

    // What the agent now syncs: staging updated, production untouched.
    let objects = load(&root, &targets);
    let staging = object(&objects, "staging:deployment/web");
    assert_eq!(
        images(staging, "containers"),
        [("app".to_owned(), "127.0.0.1:5000/app:1.2.3".to_owned())]
    );
    assert_eq!(
        images(staging, "initContainers"),
        [("init".to_owned(), "busybox:1.36".to_owned())]
    );
    let production = object(&objects, "production:deployment/web");
    assert_eq!(
        images(production, "containers"),
        [("app".to_owned(), "127.0.0.1:5000/app:0.9.0".to_owned())]
    );
}

#[test]
fn a_failing_or_ineffective_change_is_undone_and_the_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    command_repo(&root, &dir.path().join("env.log"));
    let targets = paths(&["apps/staging", "apps/production"]);

    let outcome = apply_image_changes(
        &root,
        &targets,
        "apps/.flux.yaml",
        &[
            change(
                "production",
                "Deployment",
                "web",
                "app",
                "127.0.0.1:5000/app:1.0.0",
            ),
            // Writes images/app, then the third updater refuses: undone.
            change(
                "production",
                "Deployment",
                "web",
                "app",
                "127.0.0.1:5000/app:broken",
            ),
            // Writes images/ghost, which no generator reads: the check fails, the file goes.
            change("staging", "Deployment", "web", "ghost", "ghost:1"),
            // Generated by no target path.
            change("staging", "Deployment", "nope", "app", "app:1"),
            change("staging", "Deployment", "web", "app", "not a valid image"),
        ],
        TIMEOUT,
    );
    assert_eq!(
        file_names(&outcome),
        ["apps/production/images/app"],
        "{:?}",
        outcome.errors
    );
    assert_eq!(
        read(&root, "apps/production/images/app"),
        "127.0.0.1:5000/app:1.0.0\n"
    );
    assert_eq!(outcome.errors.len(), 4, "{:?}", outcome.errors);
    let refused = &outcome.errors[0];
    assert_eq!(refused.0.to_string(), "production:deployment/web");
    assert!(
        refused.1.starts_with("failed to run updater command")
            && refused.1.contains("of apps/.flux.yaml in apps/production")
            && refused.1.contains("exit status: 4")
            && refused.1.contains("stderr: refusing 127.0.0.1:5000/app"),
        "{}",
        refused.1
    );
    let ghost = &outcome.errors[1].1;
    assert!(
        ghost.contains("failed to verify the update of staging:deployment/web in apps/staging")
            && ghost.contains("container ghost"),
        "{ghost}"
    );
    assert!(!root.join("apps/staging/images/ghost").exists());
    let missing = error_of(&outcome, "staging:deployment/nope");
    assert!(
        missing.contains(
            "failed to find staging:deployment/nope among the manifests apps/.flux.yaml generates"
        ),
        "{missing}"
    );
    assert!(outcome.errors[3].1.contains("failed to use the new image"));
    // The checkout holds exactly the successful change.
    let objects = load(&root, &targets);
    assert_eq!(
        images(object(&objects, "production:deployment/web"), "containers"),
        [("app".to_owned(), "127.0.0.1:5000/app:1.0.0".to_owned())]
    );
    assert_eq!(
        read(&root, "apps/staging/images/app"),
        "127.0.0.1:5000/app:1.0.0\n"
    );
}

#[test]
fn config_files_that_cannot_update_fail_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "apps/.flux.yaml", "version: 1\nscanForFiles: {}\n");
    write(
        root,
        "plain/.flux.yaml",
        "version: 1\ncommandUpdated:\n  generators: [{command: cat web.yaml}]\n",
    );
    write(
        root,
        "plain/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: dev}\nspec: {template: {spec: {containers: [{name: app, image: app:1}]}}}\n",
    );
    let changes = [
        change("dev", "Deployment", "web", "app", "app:2"),
        change("dev", "Deployment", "api", "app", "app:2"),
    ];
    let all = paths(&["apps", "plain"]);
    let outcome = apply_image_changes(root, &all, "apps/.flux.yaml", &changes, TIMEOUT);
    assert!(outcome.files.is_empty());
    assert_eq!(outcome.errors.len(), 2);
    assert!(
        outcome.errors[1].1.contains("scanForFiles"),
        "{:?}",
        outcome.errors
    );

    let outcome = apply_image_changes(root, &all, "missing/.flux.yaml", &changes, TIMEOUT);
    assert_eq!(outcome.errors.len(), 2);
    assert!(
        outcome.errors[0]
            .1
            .starts_with("failed to read missing/.flux.yaml")
    );

    let outcome = apply_image_changes(root, &all, "plain/.flux.yaml", &changes[..1], TIMEOUT);
    assert!(
        outcome.errors[0]
            .1
            .contains("it has no containerImage updater command"),
        "{:?}",
        outcome.errors
    );
    assert_eq!(read(root, "plain/web.yaml").matches("app:1").count(), 1);
}

const BASE_DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: @NS@
spec:
  replicas: 1
  template:
    spec:
      initContainers:
      - name: init
        image: busybox:1.35
      containers:
      - name: app
        image: 127.0.0.1:5000/app:1.0.0
        ports:
        - containerPort: 8080
      - name: sidecar
        image: envoy:1.0
";

const BASE_RELEASE: &str = "\
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: podinfo
  namespace: @NS@
spec:
  chart: {repository: 'https://charts.example', name: podinfo, version: 6.0.0}
  values:
    image:
      repository: 127.0.0.1:5000/podinfo
      tag: 6.0.0
    replicaCount: 1
";

const DEV_PATCH_HEAD: &str = "\
# Hand-written patches for dev; keep the comments.
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings   # not generated by automation
  namespace: dev
data: {mode: dev}
";

#[test]
fn patch_updated_writes_the_patch_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "apps/.flux.yaml",
        "version: 1\npatchUpdated:\n  generators:\n\
         \x20 - command: cat ../base/*.yaml | sed \"s/@NS@/$(cat namespace)/\"\n\
         \x20 patchFile: flux-patch.yaml\n",
    );
    write(root, "apps/base/deployment.yaml", BASE_DEPLOYMENT);
    write(
        root,
        "apps/base/release.yaml",
        &format!(
            "---\n{BASE_RELEASE}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: '@NS@'}}\n"
        ),
    );
    write(root, "apps/dev/namespace", "dev");
    write(root, "apps/prod/namespace", "prod");
    let dev_patch = format!(
        "{DEV_PATCH_HEAD}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: dev\nspec:\n  replicas: 2\n"
    );
    write(root, "apps/dev/flux-patch.yaml", &dev_patch);
    let targets = paths(&["apps/dev", "apps/prod"]);

    let mut release = change(
        "dev",
        "HelmRelease",
        "podinfo",
        "chart-image",
        "127.0.0.1:5000/podinfo:6.0.1",
    );
    release.values = vec![ValueUpdate {
        path: ValuePath::from_dotted("image.tag"),
        value: "6.0.1".to_owned(),
    }];
    let outcome = apply_image_changes(
        root,
        &targets,
        "apps/.flux.yaml",
        &[
            change(
                "dev",
                "Deployment",
                "web",
                "app",
                "127.0.0.1:5000/app:1.2.3",
            ),
            change("dev", "Deployment", "web", "init", "busybox:1.36"),
            release,
            change(
                "prod",
                "Deployment",
                "web",
                "app",
                "127.0.0.1:5000/app:1.1.0",
            ),
            change("prod", "Deployment", "web", "ghost", "ghost:1"),
        ],
        TIMEOUT,
    );
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
    let ghost = error_of(&outcome, "prod:deployment/web");
    assert!(
        ghost.contains(
            "failed to find container \"ghost\" in prod:deployment/web as generated in apps/prod"
        ),
        "{ghost}"
    );
    assert_eq!(
        file_names(&outcome),
        ["apps/dev/flux-patch.yaml", "apps/prod/flux-patch.yaml"]
    );
    for (path, contents) in &outcome.files {
        assert_eq!(contents, &fs::read(root.join(path)).unwrap());
    }

    // The dev patch file: the ConfigMap patch and its comments untouched, the Deployment patch
    // edited where it was, the HelmRelease patch appended.
    let dev = read(root, "apps/dev/flux-patch.yaml");
    assert!(dev.starts_with(&format!("{DEV_PATCH_HEAD}---\n")), "{dev}");
    assert_eq!(
        dev[DEV_PATCH_HEAD.len()..],
        *"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: dev\nspec:\n  replicas: 2\n\
          \x20 template:\n    spec:\n      containers:\n      - name: app\n        image: 127.0.0.1:5000/app:1.2.3\n\
          \x20     initContainers:\n      - name: init\n        image: busybox:1.36\n\
          ---\napiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: podinfo\n  namespace: dev\nspec:\n  values:\n    image:\n      tag: 6.0.1\n"
    );
    // The prod patch file was created.
    assert_eq!(
        read(root, "apps/prod/flux-patch.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: prod\n\
         spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: 127.0.0.1:5000/app:1.1.0\n"
    );

    // What the agent now syncs.
    let objects = load(root, &targets);
    let web = object(&objects, "dev:deployment/web");
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(
        images(web, "containers"),
        [
            ("app".to_owned(), "127.0.0.1:5000/app:1.2.3".to_owned()),
            ("sidecar".to_owned(), "envoy:1.0".to_owned()),
        ]
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["ports"],
        serde_json::json!([{"containerPort": 8080}])
    );
    assert_eq!(
        images(web, "initContainers"),
        [("init".to_owned(), "busybox:1.36".to_owned())]
    );
    let podinfo = object(&objects, "dev:helmrelease/podinfo");
    assert_eq!(
        podinfo["spec"]["values"],
        serde_json::json!({"image": {"repository": "127.0.0.1:5000/podinfo", "tag": "6.0.1"}, "replicaCount": 1})
    );
    assert_eq!(
        object(&objects, "dev:configmap/settings")["data"]["mode"],
        "dev"
    );
    let prod = object(&objects, "prod:deployment/web");
    assert_eq!(prod["spec"]["replicas"], 1);
    assert_eq!(
        images(prod, "containers")[0],
        ("app".to_owned(), "127.0.0.1:5000/app:1.1.0".to_owned())
    );

    // Applying the same change again changes nothing.
    let again = apply_image_changes(
        root,
        &targets,
        "apps/.flux.yaml",
        &[change(
            "prod",
            "Deployment",
            "web",
            "app",
            "127.0.0.1:5000/app:1.1.0",
        )],
        TIMEOUT,
    );
    assert_eq!(again, UpdaterOutcome::default());
}

#[test]
fn a_container_the_patch_deletes_is_not_updated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "apps/.flux.yaml",
        "version: 1\npatchUpdated:\n  generators:\n  - command: cat web.yaml\n  patchFile: flux-patch.yaml\n",
    );
    write(
        root,
        "apps/dev/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: dev}\n\
         spec: {template: {spec: {containers: [{name: app, image: app:1}, {name: debug, image: tools:1}]}}}\n",
    );
    // A hand-written patch deletes the debug container: it is not there to update, and the
    // patch file is not touched for it.
    let patch = "# drop the debug container in dev\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: dev}\n\
                 spec:\n  template:\n    spec:\n      containers:\n      - {name: debug, $patch: delete}\n";
    write(root, "apps/dev/flux-patch.yaml", patch);
    let targets = paths(&["apps/dev"]);
    let debug = change("dev", "Deployment", "web", "debug", "tools:2");
    let outcome = apply_image_changes(root, &targets, "apps/.flux.yaml", &[debug], TIMEOUT);
    assert!(outcome.files.is_empty());
    assert_eq!(
        outcome.errors[0].1,
        "failed to find container \"debug\" in dev:deployment/web as generated in apps/dev"
    );
    assert_eq!(read(root, "apps/dev/flux-patch.yaml"), patch);

    // The other container is updated in the same patch document, which keeps the deletion.
    let app = change("dev", "Deployment", "web", "app", "app:2");
    let outcome = apply_image_changes(root, &targets, "apps/.flux.yaml", &[app], TIMEOUT);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(file_names(&outcome), ["apps/dev/flux-patch.yaml"]);
    let objects = load(root, &targets);
    assert_eq!(
        images(object(&objects, "dev:deployment/web"), "containers"),
        [("app".to_owned(), "app:2".to_owned())]
    );
}

#[test]
fn a_patch_file_without_its_directory_fails_generation_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "apps/.flux.yaml",
        "version: 1\npatchUpdated:\n  generators:\n  - command: cat web.yaml\n  patchFile: patches/flux-patch.yaml\n",
    );
    write(
        root,
        "apps/dev/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: dev}\nspec: {template: {spec: {containers: [{name: app, image: app:1}]}}}\n",
    );
    let outcome = apply_image_changes(
        root,
        &paths(&["apps/dev"]),
        "apps/.flux.yaml",
        &[change("dev", "Deployment", "web", "app", "app:2")],
        TIMEOUT,
    );
    assert!(outcome.files.is_empty());
    assert_eq!(outcome.errors.len(), 1);
    let message = &outcome.errors[0].1;
    assert!(
        message.contains("failed to find dev:deployment/web") && message.contains("does not exist"),
        "{message}"
    );
    assert!(!root.join("apps/dev/patches").exists());
}

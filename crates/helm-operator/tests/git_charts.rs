#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Git chart sources against real git remotes (bare repositories filled with the git CLI, over
//! `file://`, plus a `git://` port nobody listens on): shared mirrors, exports at a revision,
//! change detection per chart path, refresh and change notifications, unreachable remotes,
//! dropping unused mirrors.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use helm_operator::chart::git::{
    Credentials, GitChartError, GitCharts, GitChartsConfig, MirrorKey, MirrorMoved, MirrorState,
};
use model::fluxhelmrelease::ChartRepoSettings;
use model::release::{ChartSource, GitChartSource, NamespacedName};
use model::{FluxHelmRelease, HelmRelease, OperatorDefaults};
use test_support::{BareRepo, TempDir, run_git};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

/// Longest wait for an event that must come (a generous bound, not a timing assertion).
const EVENT_WAIT: Duration = Duration::from_secs(60);

/// The files of a directory tree: relative path → content.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A fixture chart (`tests/fixtures/charts/<name>`) as files to commit under `charts/<name>/`.
fn chart_files(name: &str) -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts")
        .join(name);
    tree(&dir)
        .into_iter()
        .map(|(rel, content)| (format!("charts/{name}/{rel}"), content))
        .collect()
}

/// A repository on branch `master` whose first commit holds the charts `hello` and `mongodb`
/// under `charts/` and a README. Returns it with that commit.
fn charts_repo(dir: &Path, name: &str) -> (BareRepo, String) {
    let repo = BareRepo::new(dir, name, "master");
    let mut files = chart_files("hello");
    files.extend(chart_files("mongodb"));
    files.push(("README.md".to_owned(), "charts\n".to_owned()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let head = repo.commit(&refs, &[], "charts");
    (repo, head)
}

fn source(url: &str, git_ref: &str, path: &str) -> GitChartSource {
    GitChartSource {
        url: url.to_owned(),
        git_ref: git_ref.to_owned(),
        path: path.to_owned(),
        secret_ref: None,
        skip_dep_update: false,
    }
}

fn git_charts(tmp: &Path) -> Arc<GitCharts> {
    Arc::new(GitCharts::new(GitChartsConfig::new(tmp.join("work"))).unwrap())
}

/// The next event, waiting at most [`EVENT_WAIT`].
async fn next_event(rx: &mut Receiver<MirrorMoved>) -> MirrorMoved {
    tokio::time::timeout(EVENT_WAIT, rx.recv())
        .await
        .expect("no MirrorMoved event arrived")
        .unwrap()
}

fn mirror_dirs(tmp: &Path) -> usize {
    fs::read_dir(tmp.join("work/mirrors")).unwrap().count()
}

#[tokio::test]
async fn a_helm_release_and_a_flux_helm_release_share_one_mirror() {
    let tmp = TempDir::new("gitcharts-share");
    let (repo, c1) = charts_repo(tmp.path(), "charts.git");
    let url = repo.file_url();
    let charts = git_charts(tmp.path());

    // The two API generations, as the controller gets them.
    let hr: HelmRelease = serde_yaml::from_str(&format!(
        "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata: {{name: hello, namespace: dev}}\n\
         spec:\n  chart: {{git: '{url}', ref: master, path: charts/hello}}\n"
    ))
    .unwrap();
    let fhr: FluxHelmRelease = serde_yaml::from_str(
        "apiVersion: helm.integrations.flux.weave.works/v1alpha2\nkind: FluxHelmRelease\n\
         metadata: {name: mongodb, namespace: dev}\nspec: {chartGitPath: mongodb, values: {}}\n",
    )
    .unwrap();
    let defaults = OperatorDefaults::default();
    let ChartSource::Git(hello) = hr.to_release(&defaults).unwrap().chart else {
        panic!("not a git chart")
    };
    let ChartSource::Git(mongodb) = fhr
        .to_release(&ChartRepoSettings::new(&url), &defaults)
        .unwrap()
        .chart
    else {
        panic!("not a git chart")
    };
    assert_eq!(mongodb.path, "charts/mongodb");

    assert_eq!(charts.state(&hello), MirrorState::New);
    let hello_chart = charts.fetch(&hello, None).await.unwrap();
    let mongodb_chart = charts.fetch(&mongodb, None).await.unwrap();
    assert_eq!(hello_chart.revision(), c1);
    assert_eq!(mongodb_chart.revision(), c1);
    assert_eq!(hello_chart.git_ref(), "master");
    assert_eq!(
        charts.states(),
        vec![(MirrorKey::of(&hello), MirrorState::Ready)]
    );
    assert_eq!(charts.state(&mongodb), MirrorState::Ready);
    assert_eq!(mirror_dirs(tmp.path()), 1);

    // Each export is exactly its chart's files at that commit.
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charts");
    assert_eq!(tree(hello_chart.chart_dir()), tree(&fixtures.join("hello")));
    assert_eq!(
        tree(mongodb_chart.chart_dir()),
        tree(&fixtures.join("mongodb"))
    );
    assert!(hello_chart.chart_dir().ends_with("hello"));

    // A private copy, removed on drop.
    let dir = hello_chart.chart_dir().to_path_buf();
    drop(hello_chart);
    assert!(!dir.exists());
    assert!(mongodb_chart.chart_dir().exists());

    // The same URL read with a Secret's credentials is another mirror (keyed by the Secret).
    let with_secret = GitChartSource {
        secret_ref: Some(NamespacedName {
            namespace: "dev".to_owned(),
            name: "git-auth".to_owned(),
        }),
        ..hello.clone()
    };
    let credentials = Credentials::new("ci", "s3cret-pw").unwrap();
    let chart = charts
        .fetch(&with_secret, Some(&credentials))
        .await
        .unwrap();
    assert_eq!(chart.revision(), c1);
    assert_eq!(charts.states().len(), 2);
    assert_eq!(mirror_dirs(tmp.path()), 2);
    assert!(!format!("{charts:?}").contains("s3cret-pw"));
    // ... and is refused without them.
    let err = charts.fetch(&with_secret, None).await.unwrap_err();
    assert!(
        matches!(err, GitChartError::MissingCredentials { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn new_commits_are_picked_up_by_refresh_all_and_announced_per_chart_path() {
    let tmp = TempDir::new("gitcharts-refresh");
    let (repo, c1) = charts_repo(tmp.path(), "charts.git");
    let charts = git_charts(tmp.path());
    let mut rx = charts.subscribe();
    let hello = source(&repo.file_url(), "", "charts/hello");
    let mongodb = source(&repo.file_url(), "master", "charts/mongodb");
    assert_eq!(charts.fetch(&hello, None).await.unwrap().revision(), c1);
    assert_eq!(charts.fetch(&mongodb, None).await.unwrap().revision(), c1);

    // A commit touching another chart.
    let c2 = repo.commit(
        &[("charts/mongodb/values.yaml", "replicas: 3\n")],
        &[],
        "mongo",
    );
    // No fetch under a reconcile: still the commit the mirror last fetched.
    assert_eq!(charts.fetch(&hello, None).await.unwrap().revision(), c1);
    let results = charts.refresh_all().await;
    assert_eq!(results.len(), 1);
    assert!(results[0].1.is_ok(), "{:?}", results[0].1);
    let event = next_event(&mut rx).await;
    assert_eq!(
        event,
        MirrorMoved {
            key: MirrorKey::of(&hello),
            git_ref: "master".to_owned(),
            from: Some(c1.clone()),
            to: c2.clone(),
        }
    );
    assert_eq!(event.url(), repo.file_url());
    // Both sources read `master` (one of them by default): one event per ref, not per source.
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(!charts.touched(&hello, &c1, &c2).await.unwrap());
    assert!(charts.touched(&mongodb, &c1, &c2).await.unwrap());

    // A commit touching the chart: touched, and the next fetch exports the new revision.
    let c3 = repo.commit(
        &[("charts/hello/values.yaml", "greeting: bonjour\n")],
        &[],
        "hello",
    );
    charts.refresh_all().await;
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event.from.as_deref(), event.to.as_str()),
        (Some(c2.as_str()), c3.as_str())
    );
    assert!(charts.touched(&hello, &c2, &c3).await.unwrap());
    assert!(charts.touched(&hello, &c1, &c3).await.unwrap());
    assert!(!charts.touched(&mongodb, &c2, &c3).await.unwrap());
    let chart = charts.fetch(&hello, None).await.unwrap();
    assert_eq!(chart.revision(), c3);
    assert_eq!(
        fs::read_to_string(chart.chart_dir().join("values.yaml")).unwrap(),
        "greeting: bonjour\n"
    );
    assert_eq!(
        fs::read_to_string(chart.chart_dir().join("Chart.yaml")).unwrap(),
        chart_files("hello")
            .into_iter()
            .find(|(p, _)| p == "charts/hello/Chart.yaml")
            .unwrap()
            .1
    );

    // Nothing new: nothing announced.
    charts.refresh_all().await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // A revision the mirror does not know is an error the caller can treat as "changed".
    let err = charts
        .touched(&hello, "0123456789012345678901234567890123456789", &c3)
        .await
        .unwrap_err();
    assert!(matches!(err, GitChartError::Compare { .. }), "{err:?}");
}

#[tokio::test]
async fn branches_tags_and_commit_ids_resolve_and_unknown_refs_are_clear_errors() {
    let tmp = TempDir::new("gitcharts-refs");
    let (repo, c1) = charts_repo(tmp.path(), "charts.git");
    repo.create_tag("hello-1.0.0", &c1);
    run_git(repo.path(), &["branch", "stable", &c1]);
    let c2 = repo.commit(
        &[("charts/hello/values.yaml", "greeting: hi\n")],
        &[],
        "second",
    );
    let charts = git_charts(tmp.path());
    let url = repo.file_url();
    for (git_ref, want) in [
        ("master", &c2),
        ("stable", &c1),
        ("hello-1.0.0", &c1),
        (&c1[..8], &c1),
        (c2.as_str(), &c2),
    ] {
        let chart = charts
            .fetch(&source(&url, git_ref, "charts/hello"), None)
            .await
            .unwrap();
        assert_eq!(chart.revision(), want, "{git_ref}");
        let values = fs::read_to_string(chart.chart_dir().join("values.yaml")).unwrap();
        assert_eq!(
            values.contains("greeting: hi"),
            want == &c2,
            "{git_ref}: {values}"
        );
    }

    let mut rx = charts.subscribe();
    let unknown = source(&url, "v2", "charts/hello");
    let err = charts.fetch(&unknown, None).await.unwrap_err();
    assert!(matches!(err, GitChartError::UnknownRef { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("failed to resolve ref 'v2' of {url}: ")),
        "{text}"
    );

    let missing_path = source(&url, "master", "charts/nope");
    let err = charts.fetch(&missing_path, None).await.unwrap_err();
    assert!(matches!(err, GitChartError::Export { .. }), "{err:?}");
    assert!(err.to_string().contains("charts/nope"), "{err}");

    // The ref appears later: announced (from nothing) once fetched, then it resolves.
    repo.create_tag("v2", &c2);
    charts.refresh_all().await;
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event.git_ref.as_str(), event.from, event.to.as_str()),
        ("v2", None, c2.as_str())
    );
    assert_eq!(charts.fetch(&unknown, None).await.unwrap().revision(), c2);
    // Every export, failed ones included, is gone once its chart is dropped.
    assert_eq!(
        fs::read_dir(tmp.path().join("work/exports"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn an_unreachable_remote_is_a_clear_error_until_it_can_be_reached() {
    let tmp = TempDir::new("gitcharts-unreachable");
    let charts = git_charts(tmp.path());

    // Nobody listens on this port.
    let port = test_support::free_port();
    let nowhere = source(
        &format!("git://127.0.0.1:{port}/charts.git"),
        "master",
        "charts/hello",
    );
    let err = charts.fetch(&nowhere, None).await.unwrap_err();
    assert!(matches!(err, GitChartError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "chart not ready: mirror of git://127.0.0.1:{port}/charts.git is unreachable: "
        )),
        "{text}"
    );
    assert!(matches!(
        charts.state(&nowhere),
        MirrorState::Unreachable(_)
    ));
    let err = charts.touched(&nowhere, "a", "b").await.unwrap_err();
    assert!(matches!(err, GitChartError::NotFetched { .. }), "{err:?}");

    // A repository that does not exist yet, then does: the poll's refresh announces it.
    let later = tmp.path().join("later");
    fs::create_dir_all(&later).unwrap();
    let url = format!(
        "file://{}/charts.git",
        later.canonicalize().unwrap().display()
    );
    let pending = source(&url, "master", "charts/hello");
    let mut rx = charts.subscribe();
    let err = charts.fetch(&pending, None).await.unwrap_err();
    assert!(matches!(err, GitChartError::Unreachable { .. }), "{err:?}");
    let (_repo, c1) = charts_repo(&later, "charts.git");
    let results: BTreeMap<String, bool> = charts
        .refresh_all()
        .await
        .into_iter()
        .map(|(key, result)| (key.to_string(), result.is_ok()))
        .collect();
    assert_eq!(
        results,
        BTreeMap::from([
            (format!("git://127.0.0.1:{port}/charts.git"), false),
            (url.clone(), true)
        ])
    );
    let event = next_event(&mut rx).await;
    assert_eq!((event.from, event.to.as_str()), (None, c1.as_str()));
    assert_eq!(charts.state(&pending), MirrorState::Ready);
    assert_eq!(charts.fetch(&pending, None).await.unwrap().revision(), c1);
}

#[tokio::test]
async fn unused_mirrors_are_dropped_with_their_directories() {
    let tmp = TempDir::new("gitcharts-retain");
    let (a, _) = charts_repo(tmp.path(), "a.git");
    let (b, cb) = charts_repo(tmp.path(), "b.git");
    let charts = git_charts(tmp.path());
    let in_a = source(&a.file_url(), "master", "charts/hello");
    let in_b = source(&b.file_url(), "master", "charts/hello");
    charts.fetch(&in_a, None).await.unwrap();
    charts.fetch(&in_b, None).await.unwrap();
    assert_eq!(mirror_dirs(tmp.path()), 2);
    // Left over from an earlier run.
    fs::create_dir_all(tmp.path().join("work/mirrors/stale/mirror.git")).unwrap();

    let removed = charts.retain([&in_a]).await;
    assert_eq!(removed, vec![MirrorKey::of(&in_b)]);
    assert_eq!(
        charts.states(),
        vec![(MirrorKey::of(&in_a), MirrorState::Ready)]
    );
    assert_eq!(mirror_dirs(tmp.path()), 1);
    assert_eq!(
        fs::read_dir(tmp.path().join("work/trash")).unwrap().count(),
        0
    );
    assert_eq!(charts.state(&in_b), MirrorState::New);

    // Used again: cloned again.
    assert_eq!(charts.fetch(&in_b, None).await.unwrap().revision(), cb);
    assert_eq!(mirror_dirs(tmp.path()), 2);
    assert!(charts.retain([&in_a, &in_b]).await.is_empty());

    // After a restart, the mirror of a key still in use is reused (fetched, not cloned again:
    // a file put into it survives), and the others are dropped.
    let dir_a = fs::read_dir(tmp.path().join("work/mirrors"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|d| {
            let config = fs::read_to_string(d.join("mirror.git/config")).unwrap();
            config.contains(&a.file_url())
        })
        .unwrap();
    let marker = dir_a.join("mirror.git/marker");
    fs::write(&marker, "kept").unwrap();
    drop(charts);
    let charts = git_charts(tmp.path());
    assert!(charts.retain([&in_a]).await.is_empty());
    assert_eq!(mirror_dirs(tmp.path()), 1);
    let c2 = a.commit(&[("charts/hello/values.yaml", "x: 2\n")], &[], "second");
    assert_eq!(charts.fetch(&in_a, None).await.unwrap().revision(), c2);
    assert!(marker.exists());
}

#[tokio::test]
async fn the_poll_task_fetches_in_the_background_and_stops_with_its_owner() {
    let tmp = TempDir::new("gitcharts-poll");
    let (repo, c1) = charts_repo(tmp.path(), "charts.git");
    let charts = Arc::new(
        GitCharts::new(GitChartsConfig {
            poll_interval: Duration::from_secs(1),
            ..GitChartsConfig::new(tmp.path().join("work"))
        })
        .unwrap(),
    );
    let hello = source(&repo.file_url(), "master", "charts/hello");
    assert_eq!(charts.fetch(&hello, None).await.unwrap().revision(), c1);
    let mut rx = charts.subscribe();
    let poll = charts.start_polling();
    let c2 = repo.commit(&[("charts/hello/values.yaml", "x: 1\n")], &[], "second");
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event.from.as_deref(), event.to.as_str()),
        (Some(c1.as_str()), c2.as_str())
    );
    drop(rx);
    drop(charts);
    tokio::time::timeout(EVENT_WAIT, poll)
        .await
        .expect("the poll task did not stop after its owner was dropped")
        .unwrap();
}

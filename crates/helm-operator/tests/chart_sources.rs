//! Chart sources against real servers: Helm repositories served by Python's `http.server`
//! ([`test_support::HttpDir`]) and OCI registries run by Docker Distribution
//! ([`test_support::Registry`]), with charts packaged, indexed and pushed by the real `helm` 3
//! (`KUBE_SIM_HELM3`), and fetched charts checked by `helm show chart` / `helm template`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use helm_operator::chart::cache::ChartCache;
use helm_operator::chart::credentials::PullCredentials;
use helm_operator::chart::oci::{OciCharts, OciError, OciOptions};
use helm_operator::chart::repo::{RepoCharts, RepoError, RepoOptions};
use k8s_openapi::ByteString;
use sha2::Digest as _;
use test_support::{HttpDir, Registry, TempDir};

const MIB: u64 = 1024 * 1024;
const USER: &str = "ci";
const PASSWORD: &str = "pw-4711-secret";
const WRONG_PASSWORD: &str = "pw-0815-wrong";

/// The real helm 3 with its home directories (cache, config, data, registry config) in `dir`.
struct Helm {
    bin: PathBuf,
    home: PathBuf,
}

impl Helm {
    fn new(dir: &Path) -> Self {
        let home = dir.join("helm-home");
        fs::create_dir_all(&home).unwrap();
        Helm {
            bin: support::tool("KUBE_SIM_HELM3"),
            home,
        }
    }

    fn registry_config(&self) -> PathBuf {
        self.home.join("registry.json")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env("HELM_REGISTRY_CONFIG", self.registry_config())
            .env("KUBECONFIG", self.home.join("no-kubeconfig"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs helm; panics with its output on failure; returns stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm package <chart> --version <version> --destination <out>`; returns the tarball.
    fn package(&self, chart: &Path, version: &str, out: &Path) -> PathBuf {
        fs::create_dir_all(out).unwrap();
        self.run(&[
            "package",
            chart.to_str().unwrap(),
            "--version",
            version,
            "--destination",
            out.to_str().unwrap(),
        ]);
        let name = chart.file_name().unwrap().to_str().unwrap();
        let tgz = out.join(format!("{name}-{version}.tgz"));
        assert!(tgz.is_file(), "{} missing", tgz.display());
        tgz
    }

    /// `helm repo index <dir>` (relative URLs).
    fn index(&self, dir: &Path) {
        self.run(&["repo", "index", dir.to_str().unwrap()]);
    }

    /// `helm show chart <tgz>`.
    fn show_chart(&self, tgz: &Path) -> String {
        self.run(&["show", "chart", tgz.to_str().unwrap()])
    }

    /// `helm template test <tgz>`.
    fn template(&self, tgz: &Path) -> String {
        self.run(&["template", "test", tgz.to_str().unwrap()])
    }

    /// `helm push <tgz> oci://host/<path> --plain-http`.
    fn push(&self, tgz: &Path, registry: &Registry, path: &str) {
        self.run(&[
            "push",
            tgz.to_str().unwrap(),
            &registry.oci_url(path),
            "--plain-http",
        ]);
    }

    /// `helm registry login <host> -u <user> --password-stdin --insecure`, into this helm's
    /// own registry config.
    fn login(&self, registry: &Registry, username: &str, password: &str) {
        let mut child = self
            .command(&[
                "registry",
                "login",
                &registry.host(),
                "--username",
                username,
                "--password-stdin",
                "--insecure",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "helm registry login failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn chart_dir(name: &str) -> PathBuf {
    support::chart(name)
}

/// A copy of fixture chart `name` under `dir` with `values.yaml` replaced (a different tarball
/// for the same name and version).
fn chart_variant(dir: &Path, name: &str, values: &str) -> PathBuf {
    let target = dir.join("variant").join(name);
    copy_dir(&chart_dir(name), &target);
    fs::write(target.join("values.yaml"), values).unwrap();
    target
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn sha256_of(path: &Path) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(fs::read(path).unwrap()))
}

fn cache(dir: &Path, max_bytes: u64) -> ChartCache {
    ChartCache::open(dir.join("cache"), max_bytes).unwrap()
}

fn repo_charts(cache: &ChartCache, index_ttl: Duration) -> RepoCharts {
    RepoCharts::new(
        cache.clone(),
        RepoOptions {
            index_ttl,
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

fn oci_charts(cache: &ChartCache, registry: &Registry) -> OciCharts {
    OciCharts::new(
        cache.clone(),
        OciOptions {
            insecure_registries: vec![registry.host()],
            timeout: Duration::from_secs(30),
        },
    )
}

fn secret_data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
        .collect()
}

/// Sum of the sizes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// A Helm repository directory with hello packaged at `versions`, indexed with relative URLs.
fn hello_repo(helm: &Helm, dir: &Path, versions: &[&str]) -> PathBuf {
    let repo = dir.join("repo");
    for version in versions {
        helm.package(&chart_dir("hello"), version, &repo);
    }
    helm.index(&repo);
    repo
}

/// How many times the registry served the blob `digest` of `repository`.
fn blob_downloads(registry: &Registry, repository: &str, digest: &str) -> usize {
    let needle = format!("\"GET /v2/{repository}/blobs/{digest} HTTP/1.1\" 200");
    registry.log().matches(&needle).count()
}

// ---------------------------------------------------------------------------------------------
// Helm repositories
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn repo_exact_version_is_fetched_verified_and_a_valid_chart() {
    let tmp = TempDir::new("repo-exact");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0", "0.2.0"]);
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::from_secs(3600));

    // A trailing slash and a query string are fine.
    let url = format!("{}/?unused=1", server.url());
    let chart = charts.fetch(&url, "hello", "0.1.0", None).await.unwrap();
    assert_eq!(chart.revision, "0.1.0");
    assert!(
        chart.path.starts_with(cache.dir()),
        "{}",
        chart.path.display()
    );
    assert_eq!(chart.digest, sha256_of(&chart.path));
    assert_eq!(
        fs::read(&chart.path).unwrap(),
        fs::read(repo.join("hello-0.1.0.tgz")).unwrap()
    );
    let index = fs::read_to_string(repo.join("index.yaml")).unwrap();
    assert!(
        index.contains(chart.digest.trim_start_matches("sha256:")),
        "the index's digest is the tarball's"
    );
    let shown = helm.show_chart(&chart.path);
    assert!(shown.contains("name: hello"), "{shown}");
    assert!(shown.contains("version: 0.1.0"), "{shown}");
    let rendered = helm.template(&chart.path);
    assert!(rendered.contains("kind: Deployment"), "{rendered}");
    assert_eq!(
        server.downloads("/index.yaml?unused=1"),
        1,
        "{}",
        server.log()
    );
    assert_eq!(
        server.downloads("/hello-0.1.0.tgz?unused=1"),
        1,
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn repo_index_without_digests_still_serves_and_caches_charts() {
    let tmp = TempDir::new("repo-no-digest");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0"]);
    let index = fs::read_to_string(repo.join("index.yaml")).unwrap();
    let stripped: String = index
        .lines()
        .filter(|l| !l.trim_start().starts_with("digest:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(index, stripped);
    fs::write(repo.join("index.yaml"), stripped).unwrap();
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::from_secs(3600));
    let expected = sha256_of(&repo.join("hello-0.1.0.tgz"));
    for _ in 0..2 {
        let chart = charts
            .fetch(&server.url(), "hello", "0.1.0", None)
            .await
            .unwrap();
        assert_eq!(chart.digest, expected);
        assert!(helm.show_chart(&chart.path).contains("version: 0.1.0"));
    }
    assert_eq!(server.downloads("/hello-0.1.0.tgz"), 1, "{}", server.log());

    // A server that is gone: a transport error that says why.
    let url = server.url();
    drop(server);
    let fresh = repo_charts(&cache, Duration::ZERO);
    let err = fresh.fetch(&url, "hello", "0.1.0", None).await.unwrap_err();
    assert!(matches!(err, RepoError::Request { .. }), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("connect"), "{err}");
}

#[tokio::test]
async fn repo_range_resolves_to_the_newest_matching_version_and_follows_new_releases() {
    let tmp = TempDir::new("repo-range");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(
        &helm,
        tmp.path(),
        &["1.2.0", "1.2.5", "1.3.0", "2.0.0", "2.1.0-rc.1"],
    );
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::ZERO);

    for (range, expected) in [
        ("~1.2", "1.2.5"),
        (">=1.0 <2", "1.3.0"),
        ("^1", "1.3.0"),
        ("", "2.0.0"),
        (">=2.1.0-0", "2.1.0-rc.1"),
    ] {
        let chart = charts
            .fetch(&server.url(), "hello", range, None)
            .await
            .unwrap();
        assert_eq!(chart.revision, expected, "range {range:?}");
        assert!(
            helm.show_chart(&chart.path)
                .contains(&format!("version: {expected}")),
            "range {range:?}"
        );
    }

    // A new matching release becomes the new revision: the automated chart upgrade.
    helm.package(&chart_dir("hello"), "1.2.9", &repo);
    helm.index(&repo);
    let chart = charts
        .fetch(&server.url(), "hello", "~1.2", None)
        .await
        .unwrap();
    assert_eq!(chart.revision, "1.2.9");
}

#[tokio::test]
async fn repo_missing_version_or_chart_is_an_error_naming_them() {
    let tmp = TempDir::new("repo-missing");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0"]);
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::from_secs(3600));

    let err = charts
        .fetch(&server.url(), "hello", "9.9.9", None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::VersionNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("\"hello\"") && text.contains("\"9.9.9\""),
        "{text}"
    );
    assert!(text.contains("available: 0.1.0"), "{text}");
    assert_eq!(err.category(), "ChartNotFound");

    let err = charts
        .fetch(&server.url(), "hello", "~3.0", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"~3.0\""), "{err}");

    let err = charts
        .fetch(&server.url(), "nope", "0.1.0", None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::ChartNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("\"nope\""), "{err}");

    // The first lookup used a just-downloaded index; the two others a cached one, which was
    // downloaded again before giving up.
    assert_eq!(server.downloads("/index.yaml"), 3, "{}", server.log());

    let err = charts
        .fetch(
            &format!("{}/missing-repo", server.url()),
            "hello",
            "0.1.0",
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Status { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn repo_digest_mismatch_is_an_error_and_nothing_is_cached() {
    let tmp = TempDir::new("repo-digest");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0"]);
    // Same name and version, different bytes than the index says.
    let other = chart_variant(tmp.path(), "hello", "greeting: tampered\n");
    let tampered = helm.package(&other, "0.1.0", &tmp.path().join("tampered"));
    fs::copy(&tampered, repo.join("hello-0.1.0.tgz")).unwrap();
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::from_secs(3600));

    let err = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap_err();
    match &err {
        RepoError::DigestMismatch {
            chart,
            version,
            actual,
            ..
        } => {
            assert_eq!((chart.as_str(), version.as_str()), ("hello", "0.1.0"));
            assert_eq!(format!("sha256:{actual}"), sha256_of(&tampered));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(err.category(), "DigestMismatch");
    let cached: Vec<String> = fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        cached
            .iter()
            .all(|n| !n.ends_with(".tgz") && !n.starts_with(".tmp")),
        "{cached:?}"
    );
}

#[tokio::test]
async fn repo_second_fetch_is_served_from_the_cache_also_after_a_restart() {
    let tmp = TempDir::new("repo-cached");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0"]);
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::from_secs(3600));

    let first = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap();
    let second = charts
        .fetch(&format!("{}/", server.url()), "hello", "0.1.0", None)
        .await
        .unwrap();
    assert_eq!(first.path, second.path);
    assert_eq!(first.digest, second.digest);
    assert_eq!(server.downloads("/hello-0.1.0.tgz"), 1, "{}", server.log());
    assert_eq!(server.downloads("/index.yaml"), 1, "{}", server.log());
    drop((first, second, charts));

    // A new process on the same directory: the index is new to it, the tarball is not.
    let cache = ChartCache::open(cache.dir(), 256 * MIB).unwrap();
    let charts = repo_charts(&cache, Duration::from_secs(3600));
    let third = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap();
    assert_eq!(server.downloads("/index.yaml"), 2, "{}", server.log());
    assert_eq!(server.downloads("/hello-0.1.0.tgz"), 1, "{}", server.log());
    assert!(helm.show_chart(&third.path).contains("version: 0.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repo_concurrent_fetches_of_one_chart_download_it_once() {
    let tmp = TempDir::new("repo-concurrent");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0"]);
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = Arc::new(repo_charts(&cache, Duration::from_secs(3600)));
    let url = server.url();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let charts = Arc::clone(&charts);
            let url = url.clone();
            tokio::spawn(async move { charts.fetch(&url, "hello", "0.1.0", None).await })
        })
        .collect();
    let mut paths = Vec::new();
    for task in tasks {
        paths.push(task.await.unwrap().unwrap().path);
    }
    paths.dedup();
    assert_eq!(paths.len(), 1);
    assert_eq!(server.downloads("/index.yaml"), 1, "{}", server.log());
    assert_eq!(server.downloads("/hello-0.1.0.tgz"), 1, "{}", server.log());
}

#[tokio::test]
async fn repo_republished_chart_with_a_new_digest_is_fetched_again() {
    let tmp = TempDir::new("repo-republish");
    let helm = Helm::new(tmp.path());
    let repo = hello_repo(&helm, tmp.path(), &["0.1.0"]);
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::ZERO);

    let before = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap();
    // The same version published again with other content, and the index regenerated.
    let variant = chart_variant(tmp.path(), "hello", "greeting: republished\n");
    fs::remove_file(repo.join("index.yaml")).unwrap();
    helm.package(&variant, "0.1.0", &repo);
    helm.index(&repo);
    let after = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap();
    assert_eq!(after.revision, "0.1.0");
    assert_ne!(before.digest, after.digest);
    assert_ne!(before.path, after.path);
    assert_eq!(server.downloads("/hello-0.1.0.tgz"), 2, "{}", server.log());
    let values = helm.run(&["show", "values", after.path.to_str().unwrap()]);
    assert!(values.contains("greeting: republished"), "{values}");
}

#[tokio::test]
async fn repo_cache_eviction_keeps_the_cache_under_its_cap() {
    let tmp = TempDir::new("repo-evict");
    let helm = Helm::new(tmp.path());
    let versions = ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"];
    let repo = hello_repo(&helm, tmp.path(), &versions);
    let largest = versions
        .iter()
        .map(|v| {
            fs::metadata(repo.join(format!("hello-{v}.tgz")))
                .unwrap()
                .len()
        })
        .max()
        .unwrap();
    let index = fs::metadata(repo.join("index.yaml")).unwrap().len();
    // Room for the index and two charts, not three.
    let cap = index + 2 * largest + largest / 2;
    let server = HttpDir::start(&repo);
    let cache = cache(tmp.path(), cap);
    let charts = repo_charts(&cache, Duration::from_secs(3600));

    for version in versions {
        let chart = charts
            .fetch(&server.url(), "hello", version, None)
            .await
            .unwrap();
        assert!(chart.path.is_file());
        drop(chart);
        assert!(
            cache.total_bytes() <= cap,
            "{} > {cap}",
            cache.total_bytes()
        );
        assert!(
            dir_bytes(cache.dir()) <= cap,
            "{} > {cap}",
            dir_bytes(cache.dir())
        );
    }
    let tarballs: Vec<String> = fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tgz"))
        .collect();
    assert_eq!(tarballs.len(), 2, "{tarballs:?}");
    assert!(
        tarballs.iter().any(|n| n.starts_with("hello-0.5.0-")),
        "{tarballs:?}"
    );
    assert!(
        tarballs.iter().any(|n| n.starts_with("hello-0.4.0-")),
        "{tarballs:?}"
    );

    // The evicted oldest version is downloaded again when asked for.
    let chart = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap();
    assert!(helm.show_chart(&chart.path).contains("version: 0.1.0"));
    assert_eq!(server.downloads("/hello-0.1.0.tgz"), 2, "{}", server.log());
    assert_eq!(server.downloads("/index.yaml"), 1, "{}", server.log());
}

#[tokio::test]
async fn repo_basic_auth_goes_to_the_repository_host_only() {
    let tmp = TempDir::new("repo-auth");
    let helm = Helm::new(tmp.path());
    // The private repository has 0.1.0 itself and points to another host for 0.2.0.
    let private = hello_repo(&helm, tmp.path(), &["0.1.0", "0.2.0"]);
    let public = tmp.path().join("public");
    fs::create_dir_all(&public).unwrap();
    fs::rename(
        private.join("hello-0.2.0.tgz"),
        public.join("hello-0.2.0.tgz"),
    )
    .unwrap();
    let cdn = HttpDir::start(&public);
    let index = fs::read_to_string(private.join("index.yaml")).unwrap();
    assert!(index.contains("- hello-0.2.0.tgz"), "{index}");
    let index = index.replace(
        "- hello-0.2.0.tgz",
        &format!("- {}/hello-0.2.0.tgz", cdn.url()),
    );
    fs::write(private.join("index.yaml"), index).unwrap();
    let server = HttpDir::start_with_basic_auth(&private, USER, PASSWORD);
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = repo_charts(&cache, Duration::ZERO);
    let secret = PullCredentials::from_secret_data(&secret_data(&[
        ("username", USER.as_bytes()),
        ("password", PASSWORD.as_bytes()),
    ]))
    .unwrap();

    let own = charts
        .fetch(&server.url(), "hello", "0.1.0", Some(&secret))
        .await
        .unwrap();
    assert!(helm.show_chart(&own.path).contains("version: 0.1.0"));
    let elsewhere = charts
        .fetch(&server.url(), "hello", "0.2.0", Some(&secret))
        .await
        .unwrap();
    assert!(helm.show_chart(&elsewhere.path).contains("version: 0.2.0"));
    let private_auth: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status, r.auth))
        .collect();
    let basic = Some(format!("basic:{USER}"));
    assert_eq!(
        private_auth,
        vec![
            ("/index.yaml".to_owned(), 200, basic.clone()),
            ("/hello-0.1.0.tgz".to_owned(), 200, basic.clone()),
            ("/index.yaml".to_owned(), 200, basic.clone()),
        ]
    );
    let cdn_requests = cdn.requests();
    assert_eq!(cdn_requests.len(), 1, "{}", cdn.log());
    assert_eq!(cdn_requests[0].path, "/hello-0.2.0.tgz");
    assert_eq!(
        cdn_requests[0].auth, None,
        "credentials leaked to another host"
    );

    // Without credentials, and with wrong ones: unauthorized, and no password in any text.
    let err = charts
        .fetch(&server.url(), "hello", "0.1.0", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::Unauthorized {
                status: 401,
                sent_credentials: false,
                ..
            }
        ),
        "{err:?}"
    );
    let wrong = PullCredentials::basic(USER, WRONG_PASSWORD);
    let err = charts
        .fetch(&server.url(), "hello", "0.1.0", Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::Unauthorized {
                sent_credentials: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.category(), "Unauthorized");
    for text in [err.to_string(), format!("{err:?}"), format!("{wrong:?}")] {
        assert!(!text.contains(WRONG_PASSWORD), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
    // Credentials in the URL itself are never shown either.
    let with_userinfo = server
        .url()
        .replace("http://", &format!("http://{USER}:{WRONG_PASSWORD}@"));
    let err = charts
        .fetch(&with_userinfo, "hello", "0.1.0", None)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(WRONG_PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(WRONG_PASSWORD), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// OCI registries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oci_chart_is_pulled_from_an_open_registry_and_cached_by_manifest_digest() {
    let tmp = TempDir::new("oci-open");
    let helm = Helm::new(tmp.path());
    let registry_dir = tmp.path().join("registry");
    fs::create_dir_all(&registry_dir).unwrap();
    let registry = Registry::start(&registry_dir);
    let packages = tmp.path().join("packages");
    for version in ["0.1.0", "0.2.0", "1.0.0-rc.1"] {
        let tgz = helm.package(&chart_dir("hello"), version, &packages);
        helm.push(&tgz, &registry, "charts");
    }
    let mongodb = helm.package(&chart_dir("mongodb"), "0.1.0", &packages);
    helm.push(&mongodb, &registry, "charts");
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = oci_charts(&cache, &registry);
    let url = registry.oci_url("charts");

    let chart = charts.fetch(&url, "hello", "0.1.0", None).await.unwrap();
    assert_eq!(chart.revision, "0.1.0");
    assert_eq!(chart.digest, sha256_of(&chart.path));
    assert_eq!(
        fs::read(&chart.path).unwrap(),
        fs::read(packages.join("hello-0.1.0.tgz")).unwrap(),
        "the chart layer is the pushed tarball"
    );
    let shown = helm.show_chart(&chart.path);
    assert!(
        shown.contains("name: hello") && shown.contains("version: 0.1.0"),
        "{shown}"
    );
    assert!(helm.template(&chart.path).contains("kind: Deployment"));

    // The second pull asks for the manifest only.
    let again = charts.fetch(&url, "hello", "0.1.0", None).await.unwrap();
    assert_eq!(again.path, chart.path);
    assert_eq!(
        blob_downloads(&registry, "charts/hello", &chart.digest),
        1,
        "{}",
        registry.log()
    );

    // Ranges list the tags.
    let newest = charts
        .fetch(&url, "hello", "~0.1 || ^0.2", None)
        .await
        .unwrap();
    assert_eq!(newest.revision, "0.2.0");
    assert!(helm.show_chart(&newest.path).contains("version: 0.2.0"));
    let stable = charts.fetch(&url, "hello", "", None).await.unwrap();
    assert_eq!(stable.revision, "0.2.0");
    let pre = charts
        .fetch(&url, "hello", ">=1.0.0-0", None)
        .await
        .unwrap();
    assert_eq!(pre.revision, "1.0.0-rc.1");
    let other = charts.fetch(&url, "mongodb", "0.1.0", None).await.unwrap();
    assert!(helm.show_chart(&other.path).contains("name: mongodb"));

    // Unknown tag, unknown chart, no version in range.
    let err = charts
        .fetch(&url, "hello", "9.9.9", None)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::UnknownTag { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("\"hello\"") && text.contains("\"9.9.9\""),
        "{text}"
    );
    assert_eq!(err.category(), "ChartNotFound");
    let err = charts.fetch(&url, "nope", "0.1.0", None).await.unwrap_err();
    assert!(
        matches!(
            err,
            OciError::ChartNotFound { .. } | OciError::UnknownTag { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope"), "{err}");
    let err = charts.fetch(&url, "hello", "~5", None).await.unwrap_err();
    assert!(matches!(err, OciError::NoMatchingVersion { .. }), "{err:?}");
    assert!(err.to_string().contains("0.2.0"), "{err}");

    // Without the host in --insecure-registry, HTTPS is tried and fails.
    let strict = OciCharts::new(cache.clone(), OciOptions::default());
    let err = strict
        .fetch(&url, "hello", "0.1.0", None)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Registry { .. }), "{err:?}");
    assert!(err.to_string().contains("--insecure-registry"), "{err}");
}

#[tokio::test]
async fn oci_registry_with_htpasswd_needs_the_pull_secret_and_never_shows_passwords() {
    let tmp = TempDir::new("oci-auth");
    let helm = Helm::new(tmp.path());
    let registry_dir = tmp.path().join("registry");
    fs::create_dir_all(&registry_dir).unwrap();
    let registry = Registry::start_with_htpasswd(&registry_dir, USER, PASSWORD);
    helm.login(&registry, USER, PASSWORD);
    let tgz = helm.package(&chart_dir("hello"), "0.1.0", &tmp.path().join("packages"));
    helm.push(&tgz, &registry, "private/charts");
    let cache = cache(tmp.path(), 256 * MIB);
    let charts = oci_charts(&cache, &registry);
    let url = registry.oci_url("private/charts");

    // username/password keys.
    let basic = PullCredentials::from_secret_data(&secret_data(&[
        ("username", USER.as_bytes()),
        ("password", PASSWORD.as_bytes()),
    ]))
    .unwrap();
    let chart = charts
        .fetch(&url, "hello", "0.1.0", Some(&basic))
        .await
        .unwrap();
    assert!(helm.show_chart(&chart.path).contains("version: 0.1.0"));
    assert!(helm.template(&chart.path).contains("kind: Deployment"));

    // `.dockerconfigjson`: the registry config `helm registry login` wrote is one.
    let docker_config = fs::read(helm.registry_config()).unwrap();
    let docker =
        PullCredentials::from_secret_data(&secret_data(&[(".dockerconfigjson", &docker_config)]))
            .unwrap();
    let fresh_cache = ChartCache::open(tmp.path().join("cache2"), 256 * MIB).unwrap();
    let chart = oci_charts(&fresh_cache, &registry)
        .fetch(&url, "hello", "^0.1", Some(&docker))
        .await
        .unwrap();
    assert_eq!(chart.revision, "0.1.0");

    // No credentials, or none for this host: unauthorized.
    let elsewhere = PullCredentials::default().with_registry(
        "other.example.com",
        helm_operator::chart::credentials::Credential::basic(USER, PASSWORD),
    );
    for credentials in [None, Some(&elsewhere)] {
        let err = charts
            .fetch(&url, "hello", "0.1.0", credentials)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                OciError::Unauthorized {
                    sent_credentials: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("unauthorized"), "{err}");
    }

    // Wrong password, for a tag and for a range (tag list): unauthorized, no password shown.
    let wrong = PullCredentials::basic(USER, WRONG_PASSWORD);
    for version in ["0.1.0", "~0.1"] {
        let err = charts
            .fetch(&url, "hello", version, Some(&wrong))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                OciError::Unauthorized {
                    sent_credentials: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.category(), "Unauthorized");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(WRONG_PASSWORD), "{text}");
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }
    // Neither is any other error with credentials in play.
    let err = charts
        .fetch(&url, "hello", "9.9.9", Some(&basic))
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::UnknownTag { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(PASSWORD));
}

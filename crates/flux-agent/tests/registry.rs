//! The registry scanner against the real Docker Distribution registry (Debian
//! `docker-registry`), with images pushed by the test, and, for faults the registry cannot be
//! made to produce (429, 500, slowness, `Link` pagination, a Bearer token service), a small
//! proxy in front of it written here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

#[path = "support/oci_push.rs"]
mod oci_push;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, Uri};
use axum::response::Response;
use base64::Engine as _;
use flux_agent::registry::{RegistryConfig, RegistryCredentials, RegistryError, Scanner, TagInfo};
use oci_push::{ImageSpec, Pusher};
use test_support::{Registry, TempDir};

fn config(cache: &std::path::Path, insecure: &[&str]) -> RegistryConfig {
    RegistryConfig {
        insecure_hosts: insecure.iter().map(|h| (*h).to_owned()).collect(),
        cache_dir: cache.to_path_buf(),
        timeout: Duration::from_secs(5),
        ..RegistryConfig::default()
    }
}

fn scanner(config: RegistryConfig) -> (Scanner, prometheus::Registry) {
    let metrics = prometheus::Registry::new();
    (Scanner::new(config, &metrics).unwrap(), metrics)
}

fn time(text: &str) -> SystemTime {
    let secs = humantime::parse_rfc3339(text).unwrap();
    assert!(secs > UNIX_EPOCH);
    secs
}

fn by_tag(tags: Vec<TagInfo>) -> BTreeMap<String, TagInfo> {
    tags.into_iter().map(|t| (t.tag.clone(), t)).collect()
}

fn metric(metrics: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    use prometheus::proto::MetricType;
    let family = metrics.gather().into_iter().find(|f| f.name() == name)?;
    let kind = family.get_field_type();
    family
        .get_metric()
        .iter()
        .find(|m| {
            label.is_none_or(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == k && l.value() == v)
            })
        })
        .map(|m| match kind {
            MetricType::GAUGE => m.get_gauge().get_value(),
            MetricType::COUNTER => m.get_counter().get_value(),
            _ => m.get_histogram().get_sample_count() as f64,
        })
}

/// Access-log lines of the registry's GET and HEAD requests that mention `needle`.
fn log_lines(registry: &Registry, needle: &str) -> Vec<String> {
    registry
        .log()
        .lines()
        .filter(|l| {
            (l.contains("\"GET ") || l.contains("\"HEAD "))
                && l.contains("HTTP/1.1\"")
                && l.contains(needle)
        })
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does to requests.
#[derive(Clone, Debug, Default)]
enum Fault {
    /// Passes everything through.
    #[default]
    None,
    /// Answers requests whose path contains `path_part` with `status` (and `Retry-After`).
    Status {
        path_part: &'static str,
        status: u16,
        retry_after: Option<u64>,
    },
    /// Waits this long before passing on.
    Delay(Duration),
    /// Serves tag lists `page` tags at a time with `Link` headers, ignoring `n`.
    Paginate(usize),
    /// Requires a Bearer token from its own token service at `/token`, which wants this Basic
    /// login.
    Bearer(&'static str, &'static str),
}

struct ProxyState {
    upstream: String,
    fault: Mutex<Fault>,
    requests: Mutex<Vec<String>>,
    http: reqwest::Client,
    own: String,
}

struct Proxy {
    host: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: &str, fault: Fault) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(ProxyState {
            upstream: format!("http://{upstream}"),
            fault: Mutex::new(fault),
            requests: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
            own: format!("http://{host}"),
        });
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { host, state, task }
    }

    fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// `METHOD path?query` of every request so far.
    fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    builder.body(body.into()).unwrap()
}

const TOKEN: &str = "t0ken-for-tests";

async fn proxy(State(state): State<Arc<ProxyState>>, request: Request<Body>) -> Response {
    let method = request.method().clone();
    let uri: Uri = request.uri().clone();
    let headers: HeaderMap = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let path_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {path_query}"));
    let fault = state.fault.lock().unwrap().clone();
    match &fault {
        Fault::None | Fault::Paginate(_) => {}
        Fault::Status {
            path_part,
            status,
            retry_after,
        } => {
            if path_query.contains(path_part) {
                let headers: Vec<(&str, String)> = retry_after
                    .iter()
                    .map(|s| ("retry-after", s.to_string()))
                    .collect();
                return respond(
                    *status,
                    &headers,
                    r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#,
                );
            }
        }
        Fault::Delay(delay) => tokio::time::sleep(*delay).await,
        Fault::Bearer(user, pass) => {
            if uri.path() == "/token" {
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
                );
                let given = headers.get("authorization").and_then(|v| v.to_str().ok());
                if given != Some(expected.as_str()) {
                    return respond(401, &[], "bad login");
                }
                return respond(
                    200,
                    &[],
                    format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#),
                );
            }
            let given = headers.get("authorization").and_then(|v| v.to_str().ok());
            if given != Some(format!("Bearer {TOKEN}").as_str()) {
                let challenge = format!(
                    r#"Bearer realm="{}/token",service="proxy-test",scope="repository:x:pull""#,
                    state.own
                );
                return respond(401, &[("www-authenticate", challenge)], "");
            }
        }
    }
    let url = format!("{}{path_query}", state.upstream);
    let mut upstream = state.http.request(method.clone(), &url).body(body.to_vec());
    for (name, value) in &headers {
        if name != "host" && name != "authorization" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let response = upstream.send().await.unwrap();
    let status = response.status().as_u16();
    let mut out_headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(n, _)| *n != "content-length" && *n != "transfer-encoding")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let mut bytes = response.bytes().await.unwrap().to_vec();
    if let (Fault::Paginate(page), true) = (&fault, uri.path().ends_with("/tags/list")) {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct List {
            name: String,
            tags: Vec<String>,
        }
        let mut list: List = serde_json::from_slice(&bytes).unwrap();
        list.tags.sort();
        let last = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("last="))
            .map(str::to_owned);
        let start = last.map_or(0, |l| {
            list.tags
                .iter()
                .position(|t| *t > l)
                .unwrap_or(list.tags.len())
        });
        let end = (start + page).min(list.tags.len());
        if end < list.tags.len() {
            out_headers.push((
                "link".to_owned(),
                format!(
                    "<{}?n={page}&last={}>; rel=\"next\"",
                    uri.path(),
                    list.tags[end - 1]
                ),
            ));
        }
        list.tags = list.tags[start..end].to_vec();
        bytes = serde_json::to_vec(&list).unwrap();
    }
    let headers: Vec<(&str, String)> = out_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    if method == Method::HEAD {
        return respond(status, &headers, Body::empty());
    }
    respond(status, &headers, bytes)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_digests_and_created_times_of_pushed_images() {
    let tmp = TempDir::new("registry-tags");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    let mut pushed = BTreeMap::new();
    for (tag, created) in [
        ("1.0.0", "2024-01-01T10:00:00Z"),
        ("1.1.0", "2024-02-01T10:00:00.5Z"),
        ("dev-abc", "2024-03-01T10:00:00+02:00"),
    ] {
        let digest = pusher
            .push_image("demo/app", tag, &ImageSpec::new(created, tag))
            .await;
        pushed.insert(tag, digest);
    }
    // Same image under a second tag: its config blob is not fetched again.
    let shared = pusher
        .push_image(
            "demo/app",
            "latest",
            &ImageSpec::new("2024-03-01T10:00:00+02:00", "dev-abc"),
        )
        .await;
    assert_eq!(shared, pushed["dev-abc"]);

    let (scanner, metrics) = scanner(config(&tmp.path().join("cache"), &[&host]));
    let repo = format!("{host}/demo/app");
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    assert_eq!(scanner.tags(&repo), None, "never fetched");
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.changed, vec![repo.clone()]);

    let tags = by_tag(scanner.tags(&repo).unwrap());
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        ["1.0.0", "1.1.0", "dev-abc", "latest"]
    );
    assert_eq!(tags["1.0.0"].digest, pushed["1.0.0"]);
    assert_eq!(tags["dev-abc"].digest, pushed["dev-abc"]);
    assert_eq!(tags["1.0.0"].created, Some(time("2024-01-01T10:00:00Z")));
    assert_eq!(
        tags["1.1.0"].created,
        Some(time("2024-02-01T10:00:00Z") + Duration::from_millis(500))
    );
    assert_eq!(tags["dev-abc"].created, Some(time("2024-03-01T08:00:00Z")));
    assert_eq!(tags["latest"].created, tags["dev-abc"].created);
    assert_eq!(scanner.counts(), (1, 4));
    assert_eq!(metric(&metrics, "flux_registry_tags", None), Some(4.0));
    assert_eq!(
        metric(&metrics, "flux_registry_repositories", None),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "flux_registry_rate_limit_rps",
            Some(("host", &host))
        ),
        Some(200.0)
    );
    assert!(
        metric(
            &metrics,
            "flux_client_fetch_duration_seconds",
            Some(("kind", "tags"))
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(report.requests.tag_lists, 1);
    assert_eq!(report.requests.manifests, 4);
    // Four tags, three distinct images: `latest` reuses what `dev-abc` fetched or the other way.
    assert!(
        report.requests.blobs >= 3 && report.requests.blobs <= 4,
        "{:?}",
        report.requests
    );
    assert_eq!(
        log_lines(&registry, "/manifests/").len() as u64,
        report.requests.manifests,
        "the registry saw what the report counts"
    );

    // A rescan with nothing new: exactly one request, the tag list.
    let manifests_before = log_lines(&registry, "/manifests/").len();
    let rescan = scanner.scan_all().await;
    assert!(rescan.errors.is_empty());
    assert!(rescan.changed.is_empty());
    assert_eq!(rescan.requests.total(), 1, "{:?}", rescan.requests);
    assert_eq!(rescan.requests.tag_lists, 1);
    assert_eq!(log_lines(&registry, "/manifests/").len(), manifests_before);
    assert_eq!(log_lines(&registry, "/tags/list").len(), 2);
    // And nothing is due right after.
    assert!(scanner.scan_due().await.scanned.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_gives_the_platform_image_or_excludes_the_tag() {
    let tmp = TempDir::new("registry-index");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    let arm = ImageSpec::new("2024-05-01T00:00:00Z", "arm").platform("linux", "arm64");
    let amd = ImageSpec::new("2024-04-01T00:00:00Z", "amd");
    let (index, _) = pusher
        .push_index("multi/app", "2.0.0", &[arm.clone(), amd.clone()])
        .await;
    pusher
        .push_index("multi/app", "arm-only", std::slice::from_ref(&arm))
        .await;
    let repo = format!("{host}/multi/app");

    let (amd_scanner, _) = scanner(config(&tmp.path().join("cache-amd"), &[&host]));
    amd_scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let report = amd_scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let tags = by_tag(amd_scanner.tags(&repo).unwrap());
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        ["2.0.0"],
        "arm-only is excluded"
    );
    assert_eq!(
        tags["2.0.0"].digest, index,
        "the tag's digest is the index's"
    );
    assert_eq!(tags["2.0.0"].created, Some(time("2024-04-01T00:00:00Z")));
    // index + amd64 manifest for 2.0.0, index only for arm-only.
    assert_eq!(report.requests.manifests, 3);
    assert_eq!(report.requests.blobs, 1);

    let (arm_scanner, _) = scanner(RegistryConfig {
        platform: "linux/arm64".to_owned(),
        ..config(&tmp.path().join("cache-arm"), &[&host])
    });
    arm_scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    arm_scanner.scan_due().await;
    let tags = by_tag(arm_scanner.tags(&repo).unwrap());
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["2.0.0", "arm-only"]);
    assert_eq!(tags["2.0.0"].created, Some(time("2024-05-01T00:00:00Z")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_override_created_for_use_labels_repositories() {
    let tmp = TempDir::new("registry-labels");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    let spec = ImageSpec::new("2020-01-01T00:00:00Z", "l")
        .label("org.opencontainers.image.created", "2024-06-01T12:00:00Z");
    for repo in ["labelled/app", "plain/app"] {
        pusher.push_image(repo, "1.0.0", &spec).await;
    }
    let (scanner, _) = scanner(RegistryConfig {
        use_labels: vec![format!("{host}/labelled/*")],
        ..config(&tmp.path().join("cache"), &[&host])
    });
    let labelled = format!("{host}/labelled/app");
    let plain = format!("{host}/plain/app");
    scanner.track(vec![
        (labelled.clone(), RegistryCredentials::new()),
        (plain.clone(), RegistryCredentials::new()),
    ]);
    scanner.scan_due().await;
    assert_eq!(
        scanner.tags(&labelled).unwrap()[0].created,
        Some(time("2024-06-01T12:00:00Z"))
    );
    assert_eq!(
        scanner.tags(&plain).unwrap()[0].created,
        Some(time("2020-01-01T00:00:00Z"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repushed_tag_is_noticed_when_digests_are_checked() {
    let tmp = TempDir::new("registry-repush");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    let first = pusher
        .push_image(
            "demo/app",
            "stable",
            &ImageSpec::new("2024-01-01T00:00:00Z", "one"),
        )
        .await;
    pusher
        .push_image(
            "demo/app",
            "1.0.0",
            &ImageSpec::new("2024-01-01T00:00:00Z", "one"),
        )
        .await;
    let (scanner, _) = scanner(config(&tmp.path().join("cache"), &[&host]));
    let repo = format!("{host}/demo/app");
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    scanner.scan_due().await;
    assert_eq!(by_tag(scanner.tags(&repo).unwrap())["stable"].digest, first);

    let second = pusher
        .push_image(
            "demo/app",
            "stable",
            &ImageSpec::new("2024-02-01T00:00:00Z", "two"),
        )
        .await;
    assert_ne!(first, second);
    // The tag list did not change and the digest check is not due (1 h after the first
    // fetch): a rescan costs one request and keeps the old digest.
    let rescan = scanner.scan_all().await;
    assert_eq!(rescan.requests.total(), 1);
    assert!(rescan.changed.is_empty());
    assert_eq!(by_tag(scanner.tags(&repo).unwrap())["stable"].digest, first);

    // A notify (a push happened) makes the next round check digests: HEAD per known tag,
    // then the changed tag is fetched.
    scanner.notify(&repo);
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.changed, vec![repo.clone()]);
    assert_eq!(report.requests.tag_lists, 1);
    assert_eq!(report.requests.manifests, 2 + 1, "two HEADs, one GET");
    assert_eq!(report.requests.blobs, 1);
    assert_eq!(
        log_lines(&registry, "\"HEAD /v2/demo/app/manifests/").len(),
        2
    );
    let tags = by_tag(scanner.tags(&repo).unwrap());
    assert_eq!(tags["stable"].digest, second);
    assert_eq!(tags["stable"].created, Some(time("2024-02-01T00:00:00Z")));
    assert_eq!(tags["1.0.0"].digest, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registry_with_a_pull_secret_and_without() {
    let tmp = TempDir::new("registry-basic");
    let registry = Registry::start_with_htpasswd(tmp.path(), "ci", "s3cret-pw");
    let host = registry.host();
    let pusher = Pusher::new(&host, Some(("ci", "s3cret-pw")));
    pusher
        .push_image(
            "private/app",
            "1.0.0",
            &ImageSpec::new("2024-01-01T00:00:00Z", "p"),
        )
        .await;
    let repo = format!("{host}/private/app");
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret-pw");
    let secret = BTreeMap::from([(
        ".dockerconfigjson".to_owned(),
        format!(r#"{{"auths":{{"http://{host}":{{"auth":"{auth}"}}}}}}"#).into_bytes(),
    )]);
    let credentials =
        RegistryCredentials::from_secret("kubernetes.io/dockerconfigjson", &secret).unwrap();
    assert!(!format!("{credentials:?}").contains("s3cret"));

    let (scanner, metrics) = scanner(config(&tmp.path().join("cache"), &[&host]));
    scanner.track(vec![(repo.clone(), credentials)]);
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(scanner.tags(&repo).unwrap()[0].tag, "1.0.0");
    // The challenge is remembered: a rescan sends the login up front, one request.
    let rescan = scanner.scan_all().await;
    assert_eq!(rescan.requests.total(), 1, "{:?}", rescan.requests);
    assert_eq!(
        metric(&metrics, "flux_registry_failing_repositories", None),
        Some(0.0)
    );

    // Without credentials: an error, no tags, no panic, and the failure is in the metrics.
    let (anonymous, metrics) = scanner_for(&tmp, "cache-anon", &host);
    anonymous.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let report = anonymous.scan_due().await;
    assert_eq!(report.errors.len(), 1);
    let (name, error) = &report.errors[0];
    assert_eq!(name, &repo);
    assert!(
        matches!(error, RegistryError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(anonymous.tags(&repo), None);
    assert!(
        anonymous
            .last_error(&repo)
            .unwrap()
            .contains("failed to authenticate")
    );
    assert_eq!(
        metric(&metrics, "flux_registry_failing_repositories", None),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "flux_registry_fetch_errors_total",
            Some(("category", "unauthorized"))
        ),
        Some(1.0)
    );
    // Backoff: not due again right away.
    assert!(anonymous.scan_due().await.scanned.is_empty());

    // Wrong password: an error that does not contain it.
    let mut wrong = RegistryCredentials::new();
    wrong.insert(&host, "ci", "wrong-s3cret");
    let (bad, _) = scanner_for(&tmp, "cache-bad", &host);
    bad.track(vec![(repo.clone(), wrong)]);
    let report = bad.scan_due().await;
    let text = format!("{} {:?}", report.errors[0].1, report.errors[0].1);
    assert!(text.contains("401") && !text.contains("s3cret"), "{text}");
}

fn scanner_for(tmp: &TempDir, cache: &str, host: &str) -> (Scanner, prometheus::Registry) {
    scanner(config(&tmp.path().join(cache), &[host]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_config_file_logins_apply_to_every_repository() {
    let tmp = TempDir::new("registry-dockercfg");
    let registry = Registry::start_with_htpasswd(tmp.path(), "ci", "pw");
    let host = registry.host();
    Pusher::new(&host, Some(("ci", "pw")))
        .push_image("x/app", "1", &ImageSpec::new("2024-01-01T00:00:00Z", "x"))
        .await;
    let file = tmp.path().join("config.json");
    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{host}":{{"username":"ci","password":"pw"}}}}}}"#),
    )
    .unwrap();
    let (scanner, _) = scanner(RegistryConfig {
        docker_config: Some(file),
        ..config(&tmp.path().join("cache"), &[&host])
    });
    let repo = format!("{host}/x/app");
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(scanner.tags(&repo).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reloads_the_cache_and_fetches_no_manifests_for_known_tags() {
    let tmp = TempDir::new("registry-restart");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    for tag in ["1.0.0", "1.0.1", "1.1.0"] {
        pusher
            .push_image(
                "demo/app",
                tag,
                &ImageSpec::new("2024-01-01T00:00:00Z", tag),
            )
            .await;
    }
    let cache = tmp.path().join("cache");
    let repo = format!("{host}/demo/app");
    let before = {
        let (scanner, _) = scanner(config(&cache, &[&host]));
        scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
        scanner.scan_due().await;
        scanner.tags(&repo).unwrap()
    };
    assert_eq!(before.len(), 3);
    assert!(cache.join("registry-cache.json").is_file());
    let manifests_before = log_lines(&registry, "/manifests/").len();
    let lists_before = log_lines(&registry, "/tags/list").len();
    assert_eq!(manifests_before, 3);

    // A new tag appears while the agent is down.
    pusher
        .push_image(
            "demo/app",
            "2.0.0",
            &ImageSpec::new("2024-02-01T00:00:00Z", "2"),
        )
        .await;

    let (restarted, _) = scanner(config(&cache, &[&host]));
    restarted.track(vec![(repo.clone(), RegistryCredentials::new())]);
    assert_eq!(
        restarted.tags(&repo).unwrap(),
        before,
        "known before any request"
    );
    let report = restarted.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.scanned,
        vec![repo.clone()],
        "listed once after the restart"
    );
    assert_eq!(log_lines(&registry, "/tags/list").len(), lists_before + 1);
    let new_manifests = log_lines(&registry, "/manifests/")[manifests_before..].to_vec();
    assert_eq!(
        new_manifests.len(),
        1,
        "only the new tag: {new_manifests:?}"
    );
    assert!(
        new_manifests[0].contains("/manifests/2.0.0"),
        "{new_manifests:?}"
    );
    assert_eq!(restarted.tags(&repo).unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_moves_a_repository_to_the_front() {
    let tmp = TempDir::new("registry-notify");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    let names = ["team/a", "team/b", "team/c", "team/d"];
    for name in names {
        pusher
            .push_image(name, "1", &ImageSpec::new("2024-01-01T00:00:00Z", name))
            .await;
    }
    let (scanner, _) = scanner(config(&tmp.path().join("cache"), &[&host]));
    let repos: Vec<String> = names.iter().map(|n| format!("{host}/{n}")).collect();
    scanner.track(
        repos
            .iter()
            .map(|r| (r.clone(), RegistryCredentials::new()))
            .collect(),
    );
    let first = scanner.scan_due().await;
    assert_eq!(first.scanned, repos, "never-listed ones in name order");

    let lists_before = log_lines(&registry, "/tags/list").len();
    scanner.notify(&repos[2]);
    scanner.notify("not/tracked");
    let report = scanner.scan_all().await;
    assert_eq!(report.scanned[0], repos[2]);
    assert_eq!(report.scanned.len(), 4);
    let order = log_lines(&registry, "/tags/list")[lists_before..].to_vec();
    assert!(order[0].contains("/v2/team/c/tags/list"), "{order:?}");
    // Only the notified one checked its digests.
    let heads = log_lines(&registry, "\"HEAD ");
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].contains("/v2/team/c/manifests/1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_lists_follow_link_pagination() {
    let tmp = TempDir::new("registry-pages");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    let tags = ["a1", "a2", "b1", "b2", "c1"];
    for tag in tags {
        pusher
            .push_image(
                "paged/app",
                tag,
                &ImageSpec::new("2024-01-01T00:00:00Z", tag),
            )
            .await;
    }
    let proxy = Proxy::start(&host, Fault::Paginate(2)).await;
    let (scanner, _) = scanner(config(&tmp.path().join("cache"), &[&proxy.host]));
    let repo = format!("{}/paged/app", proxy.host);
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.requests.tag_lists, 3);
    let found: Vec<String> = scanner
        .tags(&repo)
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(found, tags);
    let lists: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains("/tags/list"))
        .collect();
    assert_eq!(
        lists,
        [
            "GET /v2/paged/app/tags/list?n=1000",
            "GET /v2/paged/app/tags/list?n=2&last=a2",
            "GET /v2/paged/app/tags/list?n=2&last=b2",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_halves_the_rate_honours_retry_after_and_aborts_the_round() {
    let tmp = TempDir::new("registry-429");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    for i in 0..20 {
        pusher
            .push_image(
                "busy/app",
                &format!("t{i:02}"),
                &ImageSpec::new("2024-01-01T00:00:00Z", &i.to_string()),
            )
            .await;
    }
    let proxy = Proxy::start(
        &host,
        Fault::Status {
            path_part: "/manifests/",
            status: 429,
            retry_after: Some(1),
        },
    )
    .await;
    let (scanner, metrics) = scanner(RegistryConfig {
        burst: 2,
        ..config(&tmp.path().join("cache"), &[&proxy.host])
    });
    let repo = format!("{}/busy/app", proxy.host);
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let report = scanner.scan_due().await;
    assert_eq!(report.errors.len(), 1);
    assert!(
        matches!(report.errors[0].1, RegistryError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{:?}",
        report.errors
    );
    assert!(
        report.requests.manifests < 20,
        "the round stopped: {:?}",
        report.requests
    );
    assert_eq!(
        scanner.rate_limit(&proxy.host),
        100.0,
        "halved once for one burst of 429s"
    );
    assert_eq!(
        metric(
            &metrics,
            "flux_registry_rate_limit_rps",
            Some(("host", &proxy.host))
        ),
        Some(100.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "flux_registry_fetch_errors_total",
            Some(("category", "rate_limited"))
        ),
        Some(1.0)
    );
    assert_eq!(
        scanner.tags(&repo),
        None,
        "nothing committed from an aborted first round"
    );

    // Once the registry is calm, a notified round (ignoring backoff) completes; the requests
    // wait for Retry-After first.
    proxy.set(Fault::None);
    let before = proxy.requests().len();
    scanner.notify(&repo);
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(scanner.tags(&repo).unwrap().len(), 20);
    assert!(proxy.requests().len() > before);
    // The rate recovers only after the 20 min cool-down.
    assert_eq!(scanner.rate_limit(&proxy.host), 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_slow_and_down_registries_are_errors_not_panics() {
    let tmp = TempDir::new("registry-faults");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    Pusher::new(&host, None)
        .push_image("f/app", "1", &ImageSpec::new("2024-01-01T00:00:00Z", "f"))
        .await;
    let proxy = Proxy::start(
        &host,
        Fault::Status {
            path_part: "/tags/list",
            status: 500,
            retry_after: None,
        },
    )
    .await;
    let (scanner, metrics) = scanner(RegistryConfig {
        timeout: Duration::from_millis(300),
        ..config(&tmp.path().join("cache"), &[&proxy.host, "127.0.0.1"])
    });
    let repo = format!("{}/f/app", proxy.host);
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);

    let report = scanner.scan_due().await;
    assert!(
        matches!(
            report.errors[0].1,
            RegistryError::Status { status: 500, .. }
        ),
        "{:?}",
        report.errors
    );
    assert_eq!(scanner.tags(&repo), None);

    proxy.set(Fault::Delay(Duration::from_secs(2)));
    scanner.notify(&repo);
    let report = scanner.scan_due().await;
    assert!(
        matches!(report.errors[0].1, RegistryError::Timeout { .. }),
        "{:?}",
        report.errors
    );

    // A 500 on a manifest keeps the tag list's other results out but does not panic.
    proxy.set(Fault::Status {
        path_part: "/manifests/",
        status: 500,
        retry_after: None,
    });
    scanner.notify(&repo);
    let report = scanner.scan_due().await;
    assert!(
        matches!(
            report.errors[0].1,
            RegistryError::Status { status: 500, .. }
        ),
        "{:?}",
        report.errors
    );
    assert_eq!(
        scanner.tags(&repo),
        Some(Vec::new()),
        "listed, the tag not fetched yet"
    );

    // Nothing listens on this port any more.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let down_repo = format!("{down}/gone/app");
    scanner.track(vec![
        (repo.clone(), RegistryCredentials::new()),
        (down_repo.clone(), RegistryCredentials::new()),
    ]);
    proxy.set(Fault::None);
    scanner.notify(&repo);
    let report = scanner.scan_due().await;
    let errors: BTreeMap<&String, &RegistryError> =
        report.errors.iter().map(|(r, e)| (r, e)).collect();
    assert!(
        matches!(errors[&down_repo], RegistryError::Transport { .. }),
        "{errors:?}"
    );
    assert!(
        !errors.contains_key(&repo),
        "the healthy one recovered: {errors:?}"
    );
    assert_eq!(scanner.tags(&repo).unwrap().len(), 1);

    for category in ["status", "timeout", "transport"] {
        assert!(
            metric(
                &metrics,
                "flux_registry_fetch_errors_total",
                Some(("category", category))
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{category}"
        );
    }
    assert_eq!(
        metric(&metrics, "flux_registry_failing_repositories", None),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "flux_registry_fetch_duration_seconds",
            Some(("success", "false"))
        )
        .unwrap()
            >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_service_is_used_with_the_login() {
    let tmp = TempDir::new("registry-bearer");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    Pusher::new(&host, None)
        .push_image("tok/app", "1", &ImageSpec::new("2024-01-01T00:00:00Z", "t"))
        .await;
    let proxy = Proxy::start(&host, Fault::Bearer("robot", "tok-s3cret")).await;
    let repo = format!("{}/tok/app", proxy.host);

    let mut login = RegistryCredentials::new();
    login.insert(&proxy.host, "robot", "tok-s3cret");
    let (scanner, _) = scanner(config(&tmp.path().join("cache"), &[&proxy.host]));
    scanner.track(vec![(repo.clone(), login)]);
    let report = scanner.scan_due().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.requests.tokens, 1, "one token, cached for the rest");
    assert_eq!(scanner.tags(&repo).unwrap().len(), 1);
    let token_requests: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /token"))
        .collect();
    assert_eq!(token_requests.len(), 1);
    assert!(
        token_requests[0].contains("scope=repository%3Atok%2Fapp%3Apull"),
        "{token_requests:?}"
    );
    assert!(token_requests[0].contains("service=proxy-test"));
    let rescan = scanner.scan_all().await;
    assert_eq!(
        rescan.requests.total(),
        1,
        "token reused: {:?}",
        rescan.requests
    );

    let (anonymous, _) = scanner_for(&tmp, "cache-anon", &proxy.host);
    anonymous.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let report = anonymous.scan_due().await;
    assert!(
        matches!(report.errors[0].1, RegistryError::Unauthorized { .. }),
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_globs_decide_what_is_tracked() {
    let tmp = TempDir::new("registry-globs");
    let (scanner, metrics) = scanner(RegistryConfig {
        // Flux v1 spelled Docker Hub `index.docker.io`; both spellings work.
        include_images: vec!["index.docker.io/*".to_owned(), "quay.io/org/*".to_owned()],
        exclude_images: vec!["docker.io/library/*".to_owned()],
        ..config(tmp.path(), &[])
    });
    let none = RegistryCredentials::new;
    scanner.track(vec![
        ("nginx".to_owned(), none()),
        ("fluxcd/flux".to_owned(), none()),
        ("docker.io/fluxcd/flux".to_owned(), none()),
        ("quay.io/org/app".to_owned(), none()),
        ("quay.io/other/app".to_owned(), none()),
        ("k8s.gcr.io/pause".to_owned(), none()),
        ("Not A Name".to_owned(), none()),
    ]);
    assert_eq!(scanner.counts(), (2, 0));
    assert!(scanner.is_included("docker.io/fluxcd/flux"));
    assert!(!scanner.is_included("docker.io/library/nginx"));
    assert_eq!(
        metric(&metrics, "flux_registry_repositories", None),
        Some(2.0)
    );
    // The default excludes k8s.gcr.io.
    let (default, _) = scanner_for(&tmp, "d", "x");
    assert!(!default.is_included("k8s.gcr.io/pause"));
    assert!(default.is_included("quay.io/other/app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_changed_repositories_and_stops_on_shutdown() {
    let tmp = TempDir::new("registry-run");
    let registry = Registry::start(tmp.path());
    let host = registry.host();
    let pusher = Pusher::new(&host, None);
    pusher
        .push_image("run/app", "1", &ImageSpec::new("2024-01-01T00:00:00Z", "1"))
        .await;
    let (scanner, _) = scanner(config(&tmp.path().join("cache"), &[&host]));
    let repo = format!("{host}/run/app");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scanner.clone().run(tx, async {
        let _ = stopped.await;
    }));
    scanner.track(vec![(repo.clone(), RegistryCredentials::new())]);
    let changed = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap();
    assert_eq!(changed, Some(vec![repo.clone()]));

    // A push and a notify: the loop wakes, re-checks, and reports the new tag.
    pusher
        .push_image("run/app", "2", &ImageSpec::new("2024-02-01T00:00:00Z", "2"))
        .await;
    scanner.notify(&repo);
    let changed = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap();
    assert_eq!(changed, Some(vec![repo.clone()]));
    assert_eq!(scanner.tags(&repo).unwrap().len(), 2);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP basic auth against a real git server: `git http-backend` (git's own smart-HTTP CGI)
//! behind a small HTTP/1.1 server on 127.0.0.1 that demands credentials, as a Git host does.
//! Plain `http://` on loopback: git's credential handling is the same as for `https://`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use git_mirror::{Credentials, GitConfig, GitError, Mirror, MirrorMode, MirrorState};
use test_support::{BareRepo, TempDir};

/// A smart-HTTP git server on 127.0.0.1 serving the bare repositories under `root`, answering
/// 401 unless the request carries `Authorization: Basic base64(user:password)`. Every
/// `Authorization` header it receives is recorded (decoded). Stopped on drop.
struct HttpGit {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpGit {
    fn start(root: &Path, user: &str, password: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let expected = format!("{user}:{password}");
        let thread = {
            let (stop, seen, root) = (Arc::clone(&stop), Arc::clone(&seen), root.to_path_buf());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // One request per connection (we answer `Connection: close`).
                        let _ = serve(stream, &root, &expected, &seen);
                    }
                }
            })
        };
        HttpGit {
            port,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    expected: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let body = read_body(&mut reader, &headers)?;
    let mut stream = stream;

    let auth = headers.get("authorization").and_then(|v| {
        let encoded = v.strip_prefix("Basic ")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        String::from_utf8(bytes).ok()
    });
    if let Some(auth) = &auth {
        seen.lock().unwrap().push(auth.clone());
    }
    if auth.as_deref() != Some(expected) {
        return stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", expected.split(':').next().unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(value) = headers.get(header) {
            cgi.env(var, value);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();

    // CGI output: headers, a blank line, the body.
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((out.len(), out.len()));
    let head = String::from_utf8_lossy(&out[..split.0]).into_owned();
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for line in head.lines() {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_owned();
            }
            Some((name, _)) if name.eq_ignore_ascii_case("content-length") => {}
            Some(_) => response.extend_from_slice(format!("{line}\r\n").as_bytes()),
            None => {}
        }
    }
    let payload = &out[split.1..];
    let mut reply = format!("HTTP/1.1 {status}\r\n").into_bytes();
    reply.extend_from_slice(&response);
    reply.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        )
        .as_bytes(),
    );
    reply.extend_from_slice(payload);
    stream.write_all(&reply)
}

fn read_body(
    reader: &mut BufReader<TcpStream>,
    headers: &HashMap<String, String>,
) -> std::io::Result<Vec<u8>> {
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

const USER: &str = "ci-robot";
const PASSWORD: &str = "hunter2-s3cret";

fn served_repo(tmp: &Path) -> (BareRepo, String) {
    let repo = BareRepo::new(tmp, "charts.git", "main");
    let head = repo.commit(&[("charts/app/Chart.yaml", "name: app\n")], &[], "first");
    (repo, head)
}

fn config(url: &str, credentials: Option<Credentials>) -> GitConfig {
    GitConfig {
        url: url.to_owned(),
        mode: MirrorMode::AllRefs,
        timeout: Duration::from_secs(20),
        credentials,
        ..GitConfig::default()
    }
}

fn work_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("work");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn fetches_with_basic_auth_credentials() {
    let tmp = TempDir::new("http-auth");
    let (_repo, head) = served_repo(tmp.path());
    let server = HttpGit::start(tmp.path(), USER, PASSWORD);
    let credentials = Credentials::new(USER, PASSWORD).unwrap();
    let mut mirror = Mirror::new(
        config(&server.url("charts.git"), Some(credentials)),
        &work_dir(tmp.path()),
    );
    mirror.fetch().unwrap();
    assert_eq!(mirror.state(), MirrorState::Ready);
    assert_eq!(mirror.resolve("main").unwrap(), head);
    let out = tmp.path().join("out");
    mirror.export_path("main", "charts/app", &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("Chart.yaml")).unwrap(),
        "name: app\n"
    );
    // The server was asked with exactly these credentials, and the mirror kept nothing of them.
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s == &format!("{USER}:{PASSWORD}")),
        "{:?}",
        server.seen()
    );
    let config = std::fs::read_to_string(mirror.path().join("config")).unwrap();
    assert!(
        !config.contains(PASSWORD) && !config.contains(USER),
        "{config}"
    );
    assert!(!format!("{mirror:?}").contains(PASSWORD));
}

#[test]
fn wrong_or_missing_credentials_fail_without_leaking_them() {
    let tmp = TempDir::new("http-auth-wrong");
    let (_repo, head) = served_repo(tmp.path());
    let server = HttpGit::start(tmp.path(), USER, PASSWORD);
    let url = server.url("charts.git");

    let wrong = Credentials::new(USER, "wrong-pa55word").unwrap();
    let mut mirror = Mirror::new(config(&url, Some(wrong)), &work_dir(tmp.path()));
    let err = mirror.fetch().unwrap_err();
    assert!(
        matches!(err, GitError::Command { op: "clone", .. }),
        "{err:?}"
    );
    let MirrorState::Unreachable(reason) = mirror.state() else {
        panic!("state {:?}", mirror.state())
    };
    let text = format!("{err} {err:?} {reason} {mirror:?}");
    assert!(!text.contains("wrong-pa55word"), "{text}");
    assert!(!text.contains(USER), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s == &format!("{USER}:wrong-pa55word")),
        "{:?}",
        server.seen()
    );

    // Without credentials git fails at once (no prompt), asking nobody.
    let no_credentials = tmp.path().join("anonymous");
    std::fs::create_dir_all(&no_credentials).unwrap();
    let mut anonymous = Mirror::new(config(&url, None), &no_credentials);
    let err = anonymous.fetch().unwrap_err();
    assert!(matches!(err, GitError::Command { .. }), "{err:?}");

    // A rotated secret: the same mirror works with the new credentials.
    mirror.set_credentials(Some(Credentials::new(USER, PASSWORD).unwrap()));
    mirror.fetch().unwrap();
    assert_eq!(mirror.state(), MirrorState::Ready);
    assert_eq!(mirror.resolve("main").unwrap(), head);
}

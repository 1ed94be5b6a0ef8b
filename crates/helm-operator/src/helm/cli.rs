//! [`HelmCli`]: the [`HelmDriver`] that runs the real `helm` binary, one child process per call.
//!
//! Each call:
//! - starts `helm` with a cleared environment: `PATH`, `HOME` (the state directory),
//!   `KUBECONFIG` (or, without a kubeconfig, the in-cluster `KUBERNETES_SERVICE_HOST` / `_PORT`),
//!   the proxy variables when set, and `HELM_CACHE_HOME`, `HELM_CONFIG_HOME`, `HELM_DATA_HOME`
//!   under the state directory, so nothing of the user's home or environment leaks in;
//! - writes the values to a 0600 temporary file under the state directory, passes it with
//!   `--values`, and removes it when the call ends, however it ends;
//! - bounds the process by the action's helm timeout plus a grace period (the query timeout for
//!   `status` / `history`), and kills it (SIGKILL, then reaps it) when exceeded;
//! - redacts the options' secrets from stderr before it goes into an error or a log line.
//!
//! It does not retry, does not parse human-readable output (only `-o json`), and does not kill
//! processes helm itself started (helm starts none unless plugins or post-renderers are
//! configured, which the driver never does).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::error::{STDERR_LIMIT, tail};
use super::flags::{self, CommandLine};
use super::options::{
    DependencyBuildOptions, InstallOptions, RollbackOptions, TestOptions, UninstallOptions,
    UpgradeOptions,
};
use super::{
    ChartMeta, HelmAction, HelmDriver, HelmError, HelmVersion, HistoryEntry, Redactor, Release,
    ReleaseStatus, Uninstalled,
};

/// Default grace period added to the helm timeout before a helm process is killed: Helm's
/// `--timeout` bounds each Kubernetes operation, not the whole command (hooks and the wait each
/// get it), so a healthy helm may run somewhat longer than its timeout.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// Default time limit of the queries without a helm timeout (`status`, `history`, `version`).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for the rest of a process's output once it ended (a pipe held open by a
/// process it started would otherwise block forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Environment variables passed through to helm when set (outbound proxies for chart downloads).
const PASSED_THROUGH: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The in-cluster service variables helm needs when there is no kubeconfig.
const IN_CLUSTER: &[&str] = &["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"];

/// The `helm` CLI as a [`HelmDriver`]: a binary of a known major version, a kubeconfig, and a
/// state directory holding Helm's cache, config and data plus temporary values files.
///
/// Share one per Helm version (behind an `Arc`); calls may run concurrently.
#[derive(Debug)]
pub struct HelmCli {
    binary: PathBuf,
    version: HelmVersion,
    kubeconfig: Option<PathBuf>,
    state_dir: PathBuf,
    grace: Duration,
    query_timeout: Duration,
    processes: AtomicU64,
}

impl HelmCli {
    /// A driver running `binary` (a Helm of major `version`) against the cluster of `kubeconfig`
    /// (`None`: the in-cluster service account, as helm finds it), with its state under
    /// `state_dir`: `cache/`, `config/`, `data/` (Helm's `HELM_*_HOME`) and `tmp/` (values files),
    /// created here with mode 0700.
    ///
    /// # Errors
    ///
    /// [`HelmError::State`] when the directories cannot be created.
    pub fn new(
        binary: impl Into<PathBuf>,
        version: HelmVersion,
        kubeconfig: Option<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Self, HelmError> {
        let state_dir = state_dir.into();
        for dir in ["", "cache", "config", "data", "tmp"] {
            create_private_dir(&state_dir.join(dir))?;
        }
        Ok(Self {
            binary: binary.into(),
            version,
            kubeconfig,
            state_dir,
            grace: DEFAULT_GRACE,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            processes: AtomicU64::new(0),
        })
    }

    /// Sets the grace period added to the helm timeout before the process is killed
    /// (default [`DEFAULT_GRACE`]).
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets the time limit of `status` and `history` (default [`DEFAULT_QUERY_TIMEOUT`]).
    #[must_use]
    pub fn with_query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The helm binary.
    #[must_use]
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state directory.
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// How many helm processes this driver has started so far (each action is one; a process that
    /// could not be started does not count). The operator exports it as a metric.
    #[must_use]
    pub fn processes_started(&self) -> u64 {
        self.processes.load(Ordering::Relaxed)
    }

    /// Asks the binary for its version (`helm version --short`, one more process counted by
    /// [`HelmCli::processes_started`]) and returns its major version: for checking at startup
    /// that the binary configured for a version is one.
    ///
    /// # Errors
    ///
    /// [`HelmError::Output`] when the binary is a Helm of another major version (or not Helm);
    /// otherwise as any call.
    pub async fn detect_version(&self) -> Result<HelmVersion, HelmError> {
        let subject = self.binary.display().to_string();
        let line = flags::version();
        let output = self
            .run(
                HelmAction::Version,
                &subject,
                &line,
                self.query_timeout,
                &Redactor::default(),
            )
            .await?;
        let output = output.success(HelmAction::Version, &subject)?;
        let text = String::from_utf8_lossy(&output.stdout);
        let major = text.trim().split('.').next().unwrap_or_default();
        major.parse().map_err(|_| HelmError::Output {
            action: HelmAction::Version,
            subject,
            reason: format!("expected a v3 or v4 version, got {:?}", text.trim()),
        })
    }

    /// Runs helm with `line` and the minimal environment, within `limit`; counts the process.
    async fn run(
        &self,
        action: HelmAction,
        subject: &str,
        line: &CommandLine,
        limit: Duration,
        secrets: &Redactor,
    ) -> Result<Finished, HelmError> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(&line.args)
            .env_clear()
            .env("HOME", &self.state_dir)
            .env("HELM_CACHE_HOME", self.state_dir.join("cache"))
            .env("HELM_CONFIG_HOME", self.state_dir.join("config"))
            .env("HELM_DATA_HOME", self.state_dir.join("data"))
            .current_dir(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        match &self.kubeconfig {
            Some(kubeconfig) => {
                command.env("KUBECONFIG", kubeconfig);
            }
            None => pass_through(&mut command, IN_CLUSTER),
        }
        pass_through(&mut command, PASSED_THROUGH);

        for ignored in &line.ignored {
            tracing::warn!(
                helm = %self.version, %action, %subject, option = ignored,
                "this helm version has no flag for the option; it is ignored"
            );
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| HelmError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.processes.fetch_add(1, Ordering::Relaxed);
        let stdout = tokio::spawn(read_all(child.stdout.take()));
        let stderr = tokio::spawn(read_all(child.stderr.take()));

        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => Some(status.map_err(|source| HelmError::Wait {
                action,
                subject: subject.to_owned(),
                source,
            })?),
            Err(_elapsed) => {
                // SIGKILL and reap; an error means it has just exited by itself.
                let _ = child.kill().await;
                None
            }
        };
        let stderr = drain(stderr).await;
        let stderr = tail(
            &secrets.redact(&String::from_utf8_lossy(&stderr)),
            STDERR_LIMIT,
        );
        let Some(status) = status else {
            stdout.abort();
            tracing::warn!(
                helm = %self.version, %action, %subject, limit = ?limit,
                "helm exceeded its time limit and was killed"
            );
            return Err(HelmError::TimedOut {
                action,
                subject: subject.to_owned(),
                limit,
                stderr,
            });
        };
        let stdout = drain(stdout).await;
        tracing::debug!(
            helm = %self.version, %action, %subject, %status,
            elapsed = ?started.elapsed(), "helm finished"
        );
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }

    /// Writes `values` to a fresh 0600 file under the state directory, removed when dropped.
    fn values_file(
        &self,
        action: HelmAction,
        subject: &str,
        values: &serde_json::Value,
    ) -> Result<tempfile::TempPath, HelmError> {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let values = match values {
            serde_json::Value::Null => &empty,
            serde_json::Value::Object(_) => values,
            other => {
                return Err(HelmError::InvalidValues {
                    action,
                    subject: subject.to_owned(),
                    kind: json_kind(other),
                });
            }
        };
        let dir = self.state_dir.join("tmp");
        let state_error = |source| HelmError::State {
            path: dir.clone(),
            source,
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix("values-").suffix(".json");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut file = builder.tempfile_in(&dir).map_err(state_error)?;
        // JSON is YAML: Helm reads it as a values file.
        serde_json::to_writer(&mut file, values)
            .map_err(std::io::Error::from)
            .and_then(|()| std::io::Write::flush(&mut file))
            .map_err(state_error)?;
        Ok(file.into_temp_path())
    }
}

impl HelmDriver for HelmCli {
    fn version(&self) -> HelmVersion {
        self.version
    }

    async fn install(&self, options: &InstallOptions) -> Result<Release, HelmError> {
        let action = HelmAction::Install;
        let subject = release_subject(&options.namespace, &options.release);
        let values = self.values_file(action, &subject, &options.values)?;
        let line = flags::install(self.version, options, &values);
        let limit = options.timeout.saturating_add(self.grace);
        let output = self
            .run(action, &subject, &line, limit, &options.secrets)
            .await;
        drop(values);
        let output = output?.success(action, &subject)?;
        parse_release(action, &subject, &output.stdout)
    }

    async fn upgrade(&self, options: &UpgradeOptions) -> Result<Release, HelmError> {
        let action = HelmAction::Upgrade;
        let subject = release_subject(&options.namespace, &options.release);
        let values = self.values_file(action, &subject, &options.values)?;
        let line = flags::upgrade(self.version, options, &values);
        let limit = options.timeout.saturating_add(self.grace);
        let output = self
            .run(action, &subject, &line, limit, &options.secrets)
            .await;
        drop(values);
        let output = output?.success(action, &subject)?;
        parse_release(action, &subject, &output.stdout)
    }

    async fn rollback(&self, options: &RollbackOptions) -> Result<(), HelmError> {
        let action = HelmAction::Rollback;
        let subject = release_subject(&options.namespace, &options.release);
        let line = flags::rollback(self.version, options);
        let limit = options.timeout.saturating_add(self.grace);
        self.run(action, &subject, &line, limit, &options.secrets)
            .await?
            .success(action, &subject)?;
        Ok(())
    }

    async fn uninstall(&self, options: &UninstallOptions) -> Result<Uninstalled, HelmError> {
        let action = HelmAction::Uninstall;
        let subject = release_subject(&options.namespace, &options.release);
        let line = flags::uninstall(self.version, options);
        let limit = options.timeout.saturating_add(self.grace);
        let result = self
            .run(action, &subject, &line, limit, &options.secrets)
            .await?
            .success(action, &subject);
        match result {
            Ok(_) => Ok(Uninstalled::Removed),
            Err(error) if error.is_release_not_found() => Ok(Uninstalled::NotFound),
            Err(error) => Err(error),
        }
    }

    async fn test(&self, options: &TestOptions) -> Result<(), HelmError> {
        let action = HelmAction::Test;
        let subject = release_subject(&options.namespace, &options.release);
        let line = flags::test(self.version, options);
        let limit = options.timeout.saturating_add(self.grace);
        self.run(action, &subject, &line, limit, &options.secrets)
            .await?
            .success(action, &subject)?;
        Ok(())
    }

    async fn status(&self, namespace: &str, release: &str) -> Result<Option<Release>, HelmError> {
        let action = HelmAction::Status;
        let subject = release_subject(namespace, release);
        let line = flags::status(self.version, namespace, release);
        let result = self
            .run(
                action,
                &subject,
                &line,
                self.query_timeout,
                &Redactor::default(),
            )
            .await?
            .success(action, &subject);
        match result {
            Ok(output) => parse_release(action, &subject, &output.stdout).map(Some),
            Err(error) if error.is_release_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn history(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<Vec<HistoryEntry>, HelmError> {
        let action = HelmAction::History;
        let subject = release_subject(namespace, release);
        let line = flags::history(self.version, namespace, release);
        let result = self
            .run(
                action,
                &subject,
                &line,
                self.query_timeout,
                &Redactor::default(),
            )
            .await?
            .success(action, &subject);
        match result {
            Ok(output) => parse_history(action, &subject, &output.stdout),
            Err(error) if error.is_release_not_found() => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    async fn dependency_build(&self, options: &DependencyBuildOptions) -> Result<(), HelmError> {
        let action = HelmAction::DependencyBuild;
        let subject = options.chart.display().to_string();
        let line = flags::dependency_build(self.version, options);
        self.run(
            action,
            &subject,
            &line,
            options.timeout,
            &Redactor::default(),
        )
        .await?
        .success(action, &subject)?;
        Ok(())
    }
}

/// A helm process that ended by itself; stderr already redacted and cut.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Finished {
    /// `self` when helm exited 0, [`HelmError::Failed`] otherwise.
    fn success(self, action: HelmAction, subject: &str) -> Result<Self, HelmError> {
        if self.status.success() {
            return Ok(self);
        }
        Err(HelmError::Failed {
            action,
            subject: subject.to_owned(),
            exit: self.status.to_string(),
            stderr: self.stderr,
        })
    }
}

fn release_subject(namespace: &str, release: &str) -> String {
    format!("{namespace}/{release}")
}

fn pass_through(command: &mut tokio::process::Command, names: &[&str]) {
    for name in names {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), HelmError> {
    let error = |source| HelmError::State {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(error)?;
    }
    Ok(())
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut buffer = Vec::new();
    if let Some(mut pipe) = pipe {
        // A read error ends the output; what was read so far is kept.
        let _ = pipe.read_to_end(&mut buffer).await;
    }
    buffer
}

/// The output a reader task collected, given up after [`DRAIN_TIMEOUT`].
async fn drain(reader: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let abort = reader.abort_handle();
    match tokio::time::timeout(DRAIN_TIMEOUT, reader).await {
        Ok(output) => output.unwrap_or_default(),
        Err(_elapsed) => {
            abort.abort();
            Vec::new()
        }
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a map",
    }
}

/// The parts of Helm's release JSON (`-o json` of install, upgrade, status) we read. Values
/// and hooks are not deserialised.
#[derive(Deserialize)]
struct ReleaseJson {
    name: String,
    #[serde(default)]
    manifest: String,
    #[serde(default)]
    namespace: String,
    version: u32,
    #[serde(default)]
    info: InfoJson,
    #[serde(default)]
    chart: ChartJson,
}

#[derive(Deserialize, Default)]
pub(crate) struct InfoJson {
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) last_deployed: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ChartJson {
    #[serde(default)]
    pub(crate) metadata: ChartMetadataJson,
}

#[derive(Deserialize, Default)]
pub(crate) struct ChartMetadataJson {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) version: String,
    #[serde(default, rename = "appVersion")]
    pub(crate) app_version: Option<String>,
}

impl From<ChartMetadataJson> for ChartMeta {
    fn from(metadata: ChartMetadataJson) -> Self {
        Self {
            name: metadata.name,
            version: metadata.version,
            app_version: metadata.app_version.filter(|v| !v.is_empty()),
        }
    }
}

/// A Go `time.Time` as JSON writes it (RFC 3339), `None` when absent, empty or unparsable.
pub(crate) fn parse_time(text: Option<&str>) -> Option<k8s_openapi::jiff::Timestamp> {
    text.filter(|t| !t.is_empty())?.parse().ok()
}

fn parse_release(action: HelmAction, subject: &str, stdout: &[u8]) -> Result<Release, HelmError> {
    let release: ReleaseJson =
        serde_json::from_slice(stdout).map_err(|error| HelmError::Output {
            action,
            subject: subject.to_owned(),
            reason: error.to_string(),
        })?;
    Ok(Release {
        name: release.name,
        namespace: release.namespace,
        revision: release.version,
        status: ReleaseStatus::from(release.info.status.as_str()),
        chart: release.chart.metadata.into(),
        description: release.info.description,
        last_deployed: parse_time(release.info.last_deployed.as_deref()),
        manifest: release.manifest,
    })
}

#[derive(Deserialize)]
struct HistoryJson {
    revision: u32,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    chart: String,
    #[serde(default)]
    app_version: String,
    #[serde(default)]
    description: String,
}

fn parse_history(
    action: HelmAction,
    subject: &str,
    stdout: &[u8],
) -> Result<Vec<HistoryEntry>, HelmError> {
    let entries: Vec<HistoryJson> =
        serde_json::from_slice(stdout).map_err(|error| HelmError::Output {
            action,
            subject: subject.to_owned(),
            reason: error.to_string(),
        })?;
    let mut entries: Vec<HistoryEntry> = entries
        .into_iter()
        .map(|entry| HistoryEntry {
            revision: entry.revision,
            status: ReleaseStatus::from(entry.status.as_str()),
            chart: entry.chart,
            app_version: entry.app_version,
            description: entry.description,
            updated: parse_time(entry.updated.as_deref()),
        })
        .collect();
    entries.sort_by_key(|entry| entry.revision);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_json_of_helm_is_read_without_values() {
        let stdout = br#"{"name":"web","namespace":"apps","version":2,
            "info":{"first_deployed":"2026-11-21T23:15:51.232173302Z",
                    "last_deployed":"2026-11-21T23:15:53.922476583Z","deleted":"",
                    "description":"Upgrade complete","status":"deployed","notes":"hi"},
            "chart":{"metadata":{"name":"hello","version":"0.1.0","appVersion":"1.27"}},
            "config":{"password":"hunter2"},"manifest":"---","hooks":[]}"#;
        let release = parse_release(HelmAction::Upgrade, "apps/web", stdout).unwrap();
        assert_eq!(release.name, "web");
        assert_eq!(release.namespace, "apps");
        assert_eq!(release.revision, 2);
        assert_eq!(release.status, ReleaseStatus::Deployed);
        assert_eq!(release.description, "Upgrade complete");
        assert_eq!(
            release.chart,
            ChartMeta {
                name: "hello".to_owned(),
                version: "0.1.0".to_owned(),
                app_version: Some("1.27".to_owned())
            }
        );
        assert_eq!(
            release.last_deployed.unwrap().to_string(),
            "2026-11-21T23:15:53.922476583Z"
        );
        assert!(!format!("{release:?}").contains("hunter2"));
    }

    #[test]
    fn output_errors_do_not_repeat_the_output() {
        let error = parse_release(
            HelmAction::Install,
            "apps/web",
            b"{\"password\":\"hunter2\"",
        )
        .unwrap_err();
        assert_eq!(error.reason(), "HelmOutputInvalid");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn history_json_of_helm_is_read_in_revision_order() {
        let stdout = br#"[{"revision":2,"updated":"2026-11-21T23:15:53.922476583Z","status":"failed","chart":"hello-0.1.0","app_version":"1.27","description":"Upgrade \"web\" failed"},
            {"revision":1,"updated":"2026-11-21T23:15:51.232173302Z","status":"superseded","chart":"hello-0.1.0","app_version":"1.27","description":"Install complete"}]"#;
        let history = parse_history(HelmAction::History, "apps/web", stdout).unwrap();
        let summary: Vec<_> = history
            .iter()
            .map(|h| (h.revision, h.status.as_str(), h.chart.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, "superseded", "hello-0.1.0"),
                (2, "failed", "hello-0.1.0")
            ]
        );
    }
}

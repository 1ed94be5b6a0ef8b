//! `.flux.yaml` manifest generation (Flux v1 `pkg/manifests/configfile.go` and
//! `pkg/cluster/kubernetes/patch.go`): finding the config file of a target path, parsing it,
//! running its generator commands and applying a `patchUpdated` patch file to their output.
//!
//! A `.flux.yaml` holds `version: 1` and exactly one of
//!
//! ```yaml
//! commandUpdated:
//!   generators: [{command: ..., timeout: 30s}]
//!   updaters: [{containerImage: {command: ...}, policy: {command: ...}}]
//! patchUpdated: {generators: [{command: ...}], patchFile: flux-patch.yaml}
//! scanForFiles: {}
//! ```
//!
//! Unknown fields, other versions, no variant or two variants, an empty generator list and a
//! timeout that is not a positive Go-style duration (`90s`, `1m30s`, `500ms`) are rejected
//! with an error naming the file (and the line, when the parser knows it).
//!
//! Generators run one after the other as `/bin/sh -c <command>` in the target path's directory,
//! with stdin closed and an environment of only `PATH` and `HOME`. Each has its own `timeout`,
//! else the caller's default; on timeout the command's whole process group is killed. The first
//! failing command stops the run; its error carries the command, its exit status and the tail
//! of its stderr. The stdouts are joined with `---` into one YAML stream. A generator writing
//! more than [`MAX_OUTPUT_BYTES`] is killed too.
//!
//! For `patchUpdated`, the patch file is read relative to the target path, as Flux v1 does
//! (`flux-kustomize-example` keeps one `.flux.yaml` at the top and a `flux-patch.yaml` in each
//! target path). A missing patch file counts as empty when its directory exists. Each patch
//! document is matched to the generated object with the same `apiVersion`, `kind`,
//! `metadata.name` and `metadata.namespace` (as written, absent = empty) and applied as a
//! strategic merge patch for the built-in API groups, a JSON merge patch for everything else
//! (`HelmRelease` included). A patch matching no generated object is an error, as in Flux v1:
//! patches of deleted resources must be pruned by hand. Patched documents are re-serialised;
//! the others are passed through as generated.
//!
//! Image updates through updaters and patch files are [`update`]'s. Deliberately not done here:
//! policy updaters (parsed and kept in [`ConfigFile::CommandUpdated`], never run), turning the
//! output into manifests (that is [`crate::manifests::load`]), SOPS, and any sandboxing of the
//! commands beyond the cleared environment: they run with the agent's rights.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use crate::manifests::{group_of, parse_chunk, split_documents};

pub mod update;

/// The name of the config file.
pub const CONFIG_FILENAME: &str = ".flux.yaml";

/// The most a generator may write to stdout before it is killed (64 MiB).
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// How much of a failed command's stderr is shown: its tail, this many bytes.
const STDERR_SHOWN: usize = 4096;

/// How often a running command is checked on.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long to wait for the last stderr of a killed command.
const KILL_GRACE: Duration = Duration::from_millis(200);

/// The API groups whose kinds get strategic merge patches: those of the Kubernetes client
/// scheme. Everything else (custom resources) gets a JSON merge patch.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// One command of a `.flux.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigCommand {
    /// The shell command line.
    pub command: String,
    /// Its own timeout, if it sets one.
    pub timeout: Option<Duration>,
}

/// One entry of `commandUpdated.updaters`. Parsed so that a broken file is refused, not run;
/// [`update`] runs `containerImage` (policy updaters are not run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updater {
    /// `containerImage`: the command that changes a container image.
    pub container_image: Option<ConfigCommand>,
    /// `policy`: the command that changes a policy.
    pub policy: Option<ConfigCommand>,
}

/// A parsed `.flux.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigFile {
    /// Manifests come from generators; updates are made by updater commands.
    CommandUpdated {
        /// The generator commands, run in order.
        generators: Vec<ConfigCommand>,
        /// The updater commands; [`update`] runs the `containerImage` ones.
        updaters: Vec<Updater>,
    },
    /// Manifests come from generators with a patch file applied on top.
    PatchUpdated {
        /// The generator commands, run in order.
        generators: Vec<ConfigCommand>,
        /// The patch file, relative to the target path.
        patch_file: String,
    },
    /// The path is walked for YAML files as if there were no `.flux.yaml`.
    ScanForFiles,
}

/// Why generation failed, always for a named file (and line, when known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateError {
    /// The file at fault: the `.flux.yaml` as its path was given, or the patch file.
    pub file: String,
    /// 1-based line in `file`, or in the generated output for [`GenerateFailure::Output`].
    pub line: Option<usize>,
    /// What went wrong.
    pub reason: GenerateFailure,
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for GenerateError {}

/// What went wrong in [`GenerateError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerateFailure {
    /// The config file is not valid.
    #[error("invalid .flux.yaml: {0}")]
    InvalidConfig(String),
    /// [`run`] was given a `scanForFiles` config, which has nothing to run.
    #[error("scanForFiles has no generators; the path is to be walked for files instead")]
    NothingToRun,
    /// A command could not be started.
    #[error("generator command {command:?} could not be started: {message}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's error.
        message: String,
    },
    /// A command exited unsuccessfully.
    #[error("generator command {command:?} failed ({status}); stderr: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status as the OS reports it (`exit status: 3`).
        status: String,
        /// The tail of its stderr.
        stderr: String,
    },
    /// A command ran longer than its timeout and was killed.
    #[error(
        "generator command {command:?} timed out after {timeout:?} and was killed; stderr: {stderr}"
    )]
    TimedOut {
        /// The command line.
        command: String,
        /// The timeout that applied.
        timeout: Duration,
        /// The tail of its stderr.
        stderr: String,
    },
    /// A command wrote more than [`MAX_OUTPUT_BYTES`] and was killed.
    #[error(
        "generator command {command:?} wrote more than {MAX_OUTPUT_BYTES} bytes and was killed"
    )]
    OutputTooLarge {
        /// The command line.
        command: String,
    },
    /// Reading a command's output or waiting for it failed, or the output is not UTF-8.
    #[error("generator command {command:?}: {message}")]
    Io {
        /// The command line.
        command: String,
        /// What failed.
        message: String,
    },
    /// The generated output of a `patchUpdated` config is not valid YAML.
    #[error("generated output is not valid YAML: {0}")]
    Output(String),
    /// The patch file cannot be read, parsed or applied.
    #[error("{0}")]
    Patch(String),
}

fn error(file: &str, line: Option<usize>, reason: GenerateFailure) -> GenerateError {
    GenerateError {
        file: file.to_owned(),
        line,
        reason,
    }
}

/// Lexically resolves `.` and `..` in a path.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The `.flux.yaml` that applies to `path` (relative to `repo_root`, or absolute inside it):
/// the first found in the path's directory (its parent, for a file) and then its ancestors up
/// to and including `repo_root`; never below. Returns its path under `repo_root`.
#[must_use]
pub fn find_config(repo_root: &Path, path: &Path) -> Option<PathBuf> {
    let root = lexical(repo_root);
    let start = lexical(&repo_root.join(path));
    if !start.starts_with(&root) {
        return None;
    }
    let mut dir = if start.is_dir() {
        start
    } else {
        start.parent()?.to_path_buf()
    };
    loop {
        let candidate = dir.join(CONFIG_FILENAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if dir == root || !dir.pop() || !dir.starts_with(&root) {
            return None;
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    version: Option<Yaml>,
    #[serde(default)]
    command_updated: Option<RawCommandUpdated>,
    #[serde(default)]
    patch_updated: Option<RawPatchUpdated>,
    #[serde(default)]
    scan_for_files: Option<Yaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCommandUpdated {
    generators: Vec<RawCommand>,
    #[serde(default)]
    updaters: Vec<RawUpdater>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPatchUpdated {
    generators: Vec<RawCommand>,
    patch_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawUpdater {
    #[serde(default)]
    container_image: Option<RawCommand>,
    #[serde(default)]
    policy: Option<RawCommand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    command: String,
    #[serde(default)]
    timeout: Option<String>,
}

/// Parses a Go duration (`300ms`, `1.5h`, `2m30s`); units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
fn parse_duration(text: &str) -> Option<Duration> {
    const UNITS: &[(&str, f64)] = &[
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("μs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if !number.bytes().any(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let (unit, scale) = UNITS
            .iter()
            .filter(|(unit, _)| after.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())?;
        seconds += number * scale;
        rest = &after[unit.len()..];
    }
    Duration::try_from_secs_f64(seconds).ok()
}

fn convert_command(raw: RawCommand, what: &str) -> Result<ConfigCommand, String> {
    if raw.command.trim().is_empty() {
        return Err(format!("{what}: command is empty"));
    }
    let timeout = match raw.timeout {
        None => None,
        Some(text) => match parse_duration(text.trim()) {
            Some(timeout) if !timeout.is_zero() => Some(timeout),
            _ => {
                return Err(format!(
                    "{what}: timeout {text:?} is not a positive duration such as \"30s\" or \"2m\""
                ));
            }
        },
    };
    Ok(ConfigCommand {
        command: raw.command,
        timeout,
    })
}

fn convert_generators(raw: Vec<RawCommand>, variant: &str) -> Result<Vec<ConfigCommand>, String> {
    if raw.is_empty() {
        return Err(format!("{variant}.generators is empty"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, g)| convert_command(g, &format!("{variant}.generators[{i}]")))
        .collect()
}

/// Parses the text of a `.flux.yaml`; `file` names it in errors.
///
/// # Errors
///
/// [`GenerateFailure::InvalidConfig`] for invalid YAML, unknown fields, a version other than
/// `1`, not exactly one of `commandUpdated`/`patchUpdated`/`scanForFiles`, no generators, an
/// empty command or a bad timeout.
pub fn parse_config(text: &str, file: &str) -> Result<ConfigFile, GenerateError> {
    let invalid = |line: Option<usize>, message: String| {
        error(file, line, GenerateFailure::InvalidConfig(message))
    };
    let yaml_error = |err: serde_yaml::Error| {
        let line = err.location().map(|l| l.line());
        invalid(line, err.to_string())
    };
    let value: Yaml = serde_yaml::from_str(text).map_err(yaml_error)?;
    let Yaml::Mapping(mapping) = &value else {
        return Err(invalid(
            None,
            "expected a mapping with `version: 1` and one of commandUpdated, patchUpdated or \
             scanForFiles"
                .to_owned(),
        ));
    };
    let raw: RawConfig = serde_yaml::from_str(text).map_err(yaml_error)?;
    match &raw.version {
        Some(Yaml::Number(n)) if n.as_u64() == Some(1) => {}
        Some(other) => {
            let shown = serde_yaml::to_string(other).unwrap_or_default();
            return Err(invalid(
                None,
                format!("version must be 1, found {}", shown.trim()),
            ));
        }
        None => return Err(invalid(None, "version: 1 is missing".to_owned())),
    }
    let present: Vec<&str> = ["commandUpdated", "patchUpdated", "scanForFiles"]
        .into_iter()
        .filter(|key| mapping.contains_key(*key))
        .collect();
    if present.len() != 1 {
        return Err(invalid(
            None,
            format!(
                "exactly one of commandUpdated, patchUpdated or scanForFiles is required, found {}",
                if present.is_empty() {
                    "none".to_owned()
                } else {
                    present.join(" and ")
                }
            ),
        ));
    }
    let config = match (raw.command_updated, raw.patch_updated, raw.scan_for_files) {
        (Some(command_updated), _, _) => {
            let generators = convert_generators(command_updated.generators, "commandUpdated")
                .map_err(|m| invalid(None, m))?;
            let updaters = command_updated
                .updaters
                .into_iter()
                .enumerate()
                .map(|(i, u)| {
                    let what = format!("commandUpdated.updaters[{i}]");
                    Ok(Updater {
                        container_image: u
                            .container_image
                            .map(|c| convert_command(c, &format!("{what}.containerImage")))
                            .transpose()?,
                        policy: u
                            .policy
                            .map(|c| convert_command(c, &format!("{what}.policy")))
                            .transpose()?,
                    })
                })
                .collect::<Result<_, String>>()
                .map_err(|m| invalid(None, m))?;
            ConfigFile::CommandUpdated {
                generators,
                updaters,
            }
        }
        (None, Some(patch_updated), _) => {
            let generators = convert_generators(patch_updated.generators, "patchUpdated")
                .map_err(|m| invalid(None, m))?;
            if patch_updated.patch_file.trim().is_empty() {
                return Err(invalid(None, "patchUpdated.patchFile is empty".to_owned()));
            }
            ConfigFile::PatchUpdated {
                generators,
                patch_file: patch_updated.patch_file,
            }
        }
        (None, None, scan) => match scan {
            None | Some(Yaml::Null) => ConfigFile::ScanForFiles,
            Some(Yaml::Mapping(m)) if m.is_empty() => ConfigFile::ScanForFiles,
            Some(_) => {
                return Err(invalid(
                    None,
                    "scanForFiles takes no settings; write `scanForFiles: {}`".to_owned(),
                ));
            }
        },
    };
    Ok(config)
}

/// Runs the generators of `config` (found at `config_path`) in `target_dir` and returns the
/// generated YAML stream, with the patch file applied for `patchUpdated`. Commands without a
/// timeout of their own get `default_timeout`. Blocks until done; call it from a blocking
/// thread in async code.
///
/// # Errors
///
/// A [`GenerateError`] naming `config_path` (as given) for a command that cannot start, fails,
/// times out or writes too much, or for generated output that does not parse in
/// `patchUpdated`; naming the patch file for one that cannot be read, parsed or applied.
/// [`GenerateFailure::NothingToRun`] for [`ConfigFile::ScanForFiles`].
pub fn run(
    config: &ConfigFile,
    config_path: &Path,
    target_dir: &Path,
    default_timeout: Duration,
) -> Result<String, GenerateError> {
    let file = config_path.display().to_string();
    let (generators, patch_file) = match config {
        ConfigFile::CommandUpdated { generators, .. } => (generators, None),
        ConfigFile::PatchUpdated {
            generators,
            patch_file,
        } => (generators, Some(patch_file)),
        ConfigFile::ScanForFiles => {
            return Err(error(&file, None, GenerateFailure::NothingToRun));
        }
    };
    // Only an unreadable current directory stops this; then starting the command reports it.
    let target_dir = std::path::absolute(target_dir).unwrap_or_else(|_| target_dir.to_path_buf());
    let mut output = String::new();
    for generator in generators {
        let timeout = generator.timeout.unwrap_or(default_timeout);
        let stdout = run_command(&generator.command, &target_dir, timeout, &[])
            .map_err(|reason| error(&file, None, reason))?;
        append_stream(&mut output, &stdout);
    }
    match patch_file {
        None => Ok(output),
        Some(patch_file) => apply_patch_file(&output, &file, &target_dir, patch_file),
    }
}

/// Appends one command's output to the stream, as a new document.
fn append_stream(stream: &mut String, output: &str) {
    if output.trim().is_empty() {
        return;
    }
    if !stream.is_empty() {
        if !stream.ends_with('\n') {
            stream.push('\n');
        }
        stream.push_str("---\n");
    }
    stream.push_str(output);
}

/// What a reader thread hands back: the bytes kept and how many were dropped or exceeded.
type ReadResult = io::Result<(Vec<u8>, usize)>;

/// Reads at most `limit + 1` bytes; the count is 1 when the limit was exceeded.
fn read_capped(reader: impl Read, limit: usize) -> ReadResult {
    let mut buffer = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut buffer)?;
    let exceeded = usize::from(buffer.len() > limit);
    Ok((buffer, exceeded))
}

/// Reads everything, keeping the last `keep` bytes; the count is the bytes dropped.
fn read_tail(mut reader: impl Read, keep: usize) -> ReadResult {
    let mut tail = Vec::new();
    let mut dropped = 0;
    let mut chunk = [0_u8; 8192];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        tail.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if tail.len() > 2 * keep {
            let cut = tail.len() - keep;
            tail.drain(..cut);
            dropped += cut;
        }
    }
    if tail.len() > keep {
        let cut = tail.len() - keep;
        tail.drain(..cut);
        dropped += cut;
    }
    Ok((tail, dropped))
}

/// A reader thread and, once joined, its result.
struct Reader {
    handle: Option<JoinHandle<ReadResult>>,
    result: Option<ReadResult>,
}

impl Reader {
    fn spawn<R: Read + Send + 'static>(
        source: Option<R>,
        read: fn(R, usize) -> ReadResult,
        limit: usize,
    ) -> Self {
        match source {
            Some(source) => Self {
                handle: Some(thread::spawn(move || read(source, limit))),
                result: None,
            },
            None => Self {
                handle: None,
                result: Some(Ok((Vec::new(), 0))),
            },
        }
    }

    /// Joins the thread if it has finished; whether the result is in.
    fn poll(&mut self) -> bool {
        if self.handle.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(handle) = self.handle.take()
        {
            self.result = Some(
                handle
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("output reader panicked"))),
            );
        }
        self.result.is_some()
    }

    /// Waits up to `grace` for the result.
    fn finish_within(&mut self, grace: Duration) -> Option<&ReadResult> {
        let deadline = Instant::now() + grace;
        while !self.poll() && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        self.result.as_ref()
    }
}

/// The tail of a command's stderr for an error message.
fn stderr_text(result: Option<&ReadResult>) -> String {
    match result {
        Some(Ok((bytes, dropped))) => {
            let mut text = String::from_utf8_lossy(bytes).trim().to_owned();
            let start = text.len().saturating_sub(STDERR_SHOWN);
            let start = (start..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            let omitted = dropped + start;
            text.drain(..start);
            if text.is_empty() {
                "(empty)".to_owned()
            } else if omitted > 0 {
                format!("[{omitted} bytes omitted] {text}")
            } else {
                text
            }
        }
        Some(Err(err)) => format!("(unreadable: {err})"),
        None => "(not available)".to_owned(),
    }
}

/// Kills the command and everything it started (its process group), then reaps it.
fn kill_tree(child: &mut Child) {
    #[cfg(unix)]
    {
        // The child leads its own process group (`process_group(0)`), so its id is the group's.
        // The shell's `kill` builtin reaches a whole group without any unsafe code.
        let _ = Command::new("/bin/sh")
            .arg("-c")
            .arg("kill -s KILL -- \"-$1\" 2>/dev/null")
            .arg("sh")
            .arg(child.id().to_string())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs one command (a generator, or an updater with its `FLUX_*` variables in `env`) and
/// returns its stdout.
fn run_command(
    command: &str,
    dir: &Path,
    timeout: Duration,
    env: &[(&str, &str)],
) -> Result<String, GenerateFailure> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(env.iter().copied());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let io_error = |message: String| GenerateFailure::Io {
        command: command.to_owned(),
        message,
    };
    let mut child = cmd.spawn().map_err(|err| GenerateFailure::Spawn {
        command: command.to_owned(),
        message: format!("{err} (working directory {})", dir.display()),
    })?;
    let mut stdout = Reader::spawn(child.stdout.take(), read_capped, MAX_OUTPUT_BYTES);
    let mut stderr = Reader::spawn(child.stderr.take(), read_tail, STDERR_SHOWN);
    let deadline = Instant::now() + timeout;
    let mut status = None;
    loop {
        if stdout.poll() && matches!(stdout.result, Some(Ok((_, exceeded))) if exceeded > 0) {
            kill_tree(&mut child);
            return Err(GenerateFailure::OutputTooLarge {
                command: command.to_owned(),
            });
        }
        stderr.poll();
        if status.is_none() {
            match child.try_wait() {
                Ok(done) => status = done,
                Err(err) => {
                    kill_tree(&mut child);
                    return Err(io_error(format!("cannot wait for it: {err}")));
                }
            }
        }
        if let Some(status) = status
            && stdout.result.is_some()
            && stderr.result.is_some()
        {
            if !status.success() {
                return Err(GenerateFailure::Failed {
                    command: command.to_owned(),
                    status: status.to_string(),
                    stderr: stderr_text(stderr.result.as_ref()),
                });
            }
            break;
        }
        if Instant::now() >= deadline {
            kill_tree(&mut child);
            return Err(GenerateFailure::TimedOut {
                command: command.to_owned(),
                timeout,
                stderr: stderr_text(stderr.finish_within(KILL_GRACE)),
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
    match stdout.result {
        Some(Ok((bytes, _))) => String::from_utf8(bytes).map_err(|err| {
            io_error(format!(
                "output is not UTF-8 (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ))
        }),
        Some(Err(err)) => Err(io_error(format!("cannot read its output: {err}"))),
        None => Err(io_error("output was lost".to_owned())),
    }
}

/// What a patch is matched on: `apiVersion`, `kind`, namespace as written, name.
type PatchKey = (String, String, String, String);

fn patch_key(value: &Yaml) -> Option<PatchKey> {
    let text = |v: Option<&Yaml>| v.and_then(Yaml::as_str).map(str::to_owned);
    let metadata = value.get("metadata");
    Some((
        text(value.get("apiVersion"))?,
        text(value.get("kind"))?,
        text(metadata.and_then(|m| m.get("namespace"))).unwrap_or_default(),
        text(metadata.and_then(|m| m.get("name")))?,
    ))
}

fn show_key((api_version, kind, namespace, name): &PatchKey) -> String {
    if namespace.is_empty() {
        format!("{api_version} {kind} {name}")
    } else {
        format!("{api_version} {kind} {namespace}/{name}")
    }
}

/// A patch and where it was written.
struct Patch {
    value: serde_json::Value,
    line: usize,
    used: bool,
}

/// Reads the patch file at `target_dir/patch_file`.
fn read_patches(
    target_dir: &Path,
    patch_file: &str,
    config_file: &str,
) -> Result<(String, Vec<(PatchKey, Patch)>), GenerateError> {
    let path = target_dir.join(patch_file);
    let label = path.display().to_string();
    let patch_error =
        |line: Option<usize>, message: String| error(&label, line, GenerateFailure::Patch(message));
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if path.parent().is_some_and(Path::is_dir) {
                String::new()
            } else {
                return Err(error(
                    config_file,
                    None,
                    GenerateFailure::Patch(format!(
                        "the directory of patchFile {patch_file:?} does not exist"
                    )),
                ));
            }
        }
        Err(err) => return Err(patch_error(None, format!("cannot read patch file: {err}"))),
    };
    let mut patches: Vec<(PatchKey, Patch)> = Vec::new();
    for chunk in split_documents(&text) {
        let values = parse_chunk(&chunk).map_err(|e| patch_error(Some(e.line), e.message))?;
        for value in values {
            if value.is_null() {
                continue;
            }
            let key = patch_key(&value).ok_or_else(|| {
                patch_error(
                    Some(chunk.line),
                    "patch lacks apiVersion, kind or metadata.name".to_owned(),
                )
            })?;
            if let Some((_, first)) = patches.iter().find(|(k, _)| *k == key) {
                return Err(patch_error(
                    Some(chunk.line),
                    format!(
                        "second patch for {} (the first is at line {})",
                        show_key(&key),
                        first.line
                    ),
                ));
            }
            let json = serde_json::to_value(&value).map_err(|err| {
                patch_error(
                    Some(chunk.line),
                    format!("patch is not JSON-compatible: {err}"),
                )
            })?;
            patches.push((
                key,
                Patch {
                    value: json,
                    line: chunk.line,
                    used: false,
                },
            ));
        }
    }
    Ok((label, patches))
}

/// Applies the patch matching `object`, if any; returns whether one matched.
fn patch_object(
    object: &mut Yaml,
    patches: &mut [(PatchKey, Patch)],
    label: &str,
) -> Result<bool, GenerateError> {
    let Some(key) = patch_key(object) else {
        return Ok(false);
    };
    let Some((_, patch)) = patches.iter_mut().find(|(k, _)| *k == key) else {
        return Ok(false);
    };
    patch.used = true;
    let fail = |message: String| {
        error(
            label,
            Some(patch.line),
            GenerateFailure::Patch(format!("cannot patch {}: {message}", show_key(&key))),
        )
    };
    let original = serde_json::to_value(&*object).map_err(|e| fail(e.to_string()))?;
    let (api_version, kind, _, _) = &key;
    let group = group_of(api_version);
    let patched = if BUILTIN_GROUPS.contains(&group) {
        let rules = kube_merge::builtin_rules::BuiltinRules::for_kind(group, kind);
        kube_merge::strategic::apply(&original, &patch.value, &rules)
            .map_err(|e| fail(e.to_string()))?
    } else {
        let mut target = original;
        kube_merge::merge_patch::apply(&mut target, &patch.value);
        target
    };
    *object = serde_yaml::to_value(&patched).map_err(|e| fail(e.to_string()))?;
    Ok(true)
}

/// Applies the patch file to the generated stream and re-assembles the stream.
fn apply_patch_file(
    generated: &str,
    config_file: &str,
    target_dir: &Path,
    patch_file: &str,
) -> Result<String, GenerateError> {
    let (label, mut patches) = read_patches(target_dir, patch_file, config_file)?;
    let mut output = String::new();
    for chunk in split_documents(generated) {
        let values = parse_chunk(&chunk).map_err(|e| {
            error(
                config_file,
                Some(e.line),
                GenerateFailure::Output(e.message),
            )
        })?;
        for mut value in values {
            if value.is_null() {
                continue;
            }
            let mut changed = false;
            let is_list = value
                .get("kind")
                .and_then(Yaml::as_str)
                .is_some_and(|kind| kind.ends_with("List"));
            if is_list {
                if let Some(Yaml::Sequence(items)) = value.get_mut("items") {
                    for item in items {
                        changed |= patch_object(item, &mut patches, &label)?;
                    }
                }
            } else {
                changed = patch_object(&mut value, &mut patches, &label)?;
            }
            let text = if changed {
                serde_yaml::to_string(&value).map_err(|err| {
                    error(
                        &label,
                        None,
                        GenerateFailure::Patch(format!("cannot write patched object: {err}")),
                    )
                })?
            } else {
                chunk.body.to_owned()
            };
            append_stream(&mut output, &text);
        }
    }
    if let Some((key, patch)) = patches.iter().find(|(_, p)| !p.used) {
        return Err(error(
            &label,
            Some(patch.line),
            GenerateFailure::Patch(format!(
                "patch for {} matches no generated resource; remove it from the patch file",
                show_key(key)
            )),
        ));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::tests::TempRepo;

    fn command_config(commands: &[&str]) -> ConfigFile {
        ConfigFile::CommandUpdated {
            generators: commands
                .iter()
                .map(|c| ConfigCommand {
                    command: (*c).to_owned(),
                    timeout: None,
                })
                .collect(),
            updaters: Vec::new(),
        }
    }

    const LONG: Duration = Duration::from_secs(20);

    #[test]
    fn the_three_variants_parse() {
        let config = parse_config(
            "version: 1\ncommandUpdated:\n  generators:\n  - command: kustomize build .\n    timeout: 1m30s\n\
             \x20 updaters:\n  - containerImage: {command: update-image}\n    policy: {command: update-policy}\n",
            ".flux.yaml",
        )
        .unwrap();
        assert_eq!(
            config,
            ConfigFile::CommandUpdated {
                generators: vec![ConfigCommand {
                    command: "kustomize build .".to_owned(),
                    timeout: Some(Duration::from_secs(90)),
                }],
                updaters: vec![Updater {
                    container_image: Some(ConfigCommand {
                        command: "update-image".to_owned(),
                        timeout: None
                    }),
                    policy: Some(ConfigCommand {
                        command: "update-policy".to_owned(),
                        timeout: None
                    }),
                }],
            }
        );
        let config = parse_config(
            "version: 1\npatchUpdated:\n  generators:\n  - {command: helm template ., timeout: 500ms}\n  patchFile: flux-patch.yaml\n",
            ".flux.yaml",
        )
        .unwrap();
        assert_eq!(
            config,
            ConfigFile::PatchUpdated {
                generators: vec![ConfigCommand {
                    command: "helm template .".to_owned(),
                    timeout: Some(Duration::from_millis(500)),
                }],
                patch_file: "flux-patch.yaml".to_owned(),
            }
        );
        for text in [
            "version: 1\nscanForFiles: {}\n",
            "version: 1\nscanForFiles:\n",
        ] {
            assert_eq!(parse_config(text, "x").unwrap(), ConfigFile::ScanForFiles);
        }
    }

    #[test]
    fn invalid_configs_are_refused_naming_the_file() {
        let cases = [
            (
                "version: 2\nscanForFiles: {}\n",
                "version must be 1, found 2",
            ),
            ("version: '1'\nscanForFiles: {}\n", "version must be 1"),
            ("scanForFiles: {}\n", "version: 1 is missing"),
            ("version: 1\n", "found none"),
            (
                "version: 1\nscanForFiles: {}\ncommandUpdated: {generators: [{command: x}]}\n",
                "found commandUpdated and scanForFiles",
            ),
            (
                "version: 1\nscanForFiles: {}\nextra: 1\n",
                "unknown field `extra`",
            ),
            (
                "version: 1\ncommandUpdated:\n  generators: [{command: x}]\n  patchFile: p.yaml\n",
                "unknown field `patchFile`",
            ),
            (
                "version: 1\npatchUpdated: {generators: [{command: x}]}\n",
                "missing field `patchFile`",
            ),
            (
                "version: 1\ncommandUpdated: {generators: [{command: x, timeout: soon}]}\n",
                "timeout \"soon\" is not a positive duration",
            ),
            (
                "version: 1\ncommandUpdated: {generators: []}\n",
                "commandUpdated.generators is empty",
            ),
            (
                "version: 1\nscanForFiles: {deep: true}\n",
                "scanForFiles takes no settings",
            ),
            ("- a list\n", "expected a mapping"),
            ("version: 1\ncommandUpdated: [\n", "invalid .flux.yaml"),
        ];
        for (text, expected) in cases {
            let err = parse_config(text, "apps/.flux.yaml").unwrap_err();
            let shown = err.to_string();
            assert!(shown.starts_with("apps/.flux.yaml"), "{shown}");
            assert!(shown.contains(expected), "{text:?}: {shown}");
        }
        let err = parse_config("version: 1\nscanForFiles: {}\nextra: 1\n", "f").unwrap_err();
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn durations_follow_go() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "-1s", "1x", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn config_files_are_found_in_ancestors_never_descendants() {
        let repo = TempRepo::new("find");
        repo.write(".flux.yaml", "")
            .write("apps/staging/deployment.yaml", "")
            .write("apps/prod/.flux.yaml", "")
            .write("other/sub/.flux.yaml", "");
        let root = &repo.0;
        assert_eq!(
            find_config(root, Path::new("apps/staging")),
            Some(root.join(".flux.yaml"))
        );
        assert_eq!(
            find_config(root, Path::new("apps/staging/deployment.yaml")),
            Some(root.join(".flux.yaml"))
        );
        assert_eq!(
            find_config(root, &root.join("apps/prod")),
            Some(root.join("apps/prod/.flux.yaml"))
        );
        fs::remove_file(root.join(".flux.yaml")).unwrap();
        assert_eq!(find_config(root, Path::new("other")), None);
        assert_eq!(find_config(root, Path::new("")), None);
        assert_eq!(find_config(root, Path::new("../..")), None);
    }

    #[test]
    fn generator_outputs_are_joined_into_one_stream_in_the_target_directory() {
        let repo = TempRepo::new("run");
        repo.write("app/template.yaml", "a: 1\n");
        let config = command_config(&[
            "cat template.yaml",
            "printf 'b: 2'",
            "true",
            "printf 'c: 3\\n'",
        ]);
        let out = run(
            &config,
            &repo.0.join(".flux.yaml"),
            &repo.0.join("app"),
            LONG,
        )
        .unwrap();
        assert_eq!(out, "a: 1\n---\nb: 2\n---\nc: 3\n");
        let pwd = run(
            &command_config(&["pwd"]),
            Path::new("f"),
            &repo.0.join("app"),
            LONG,
        )
        .unwrap();
        assert_eq!(
            Path::new(pwd.trim()).canonicalize().unwrap(),
            repo.0.join("app").canonicalize().unwrap()
        );
    }

    #[test]
    fn generators_see_only_path_and_home_and_no_stdin() {
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let config = command_config(&[
            "printf '[%s][%s]' \"$CARGO_MANIFEST_DIR\" \"$(cat)\"; test -n \"$PATH\"",
        ]);
        let out = run(&config, Path::new("f"), Path::new("."), LONG).unwrap();
        assert_eq!(out, "[][]");
    }

    #[test]
    fn the_first_failing_generator_stops_the_run_with_its_stderr() {
        let repo = TempRepo::new("fail");
        let config = command_config(&[
            "echo ok",
            "echo 'kustomize: no such file' >&2; exit 3",
            "touch ran-after-failure",
        ]);
        let err = run(&config, Path::new("apps/.flux.yaml"), &repo.0, LONG).unwrap_err();
        assert_eq!(err.file, "apps/.flux.yaml");
        let GenerateFailure::Failed {
            command,
            status,
            stderr,
        } = &err.reason
        else {
            panic!("{err}");
        };
        assert!(command.contains("exit 3"));
        assert!(status.contains('3'), "{status}");
        assert_eq!(stderr, "kustomize: no such file");
        assert!(!repo.0.join("ran-after-failure").exists());
        assert!(
            err.to_string()
                .starts_with("apps/.flux.yaml: generator command")
        );

        let noisy = command_config(&["yes error | head -c 100000 >&2; exit 1"]);
        let err = run(&noisy, Path::new("f"), &repo.0, LONG).unwrap_err();
        let GenerateFailure::Failed { stderr, .. } = &err.reason else {
            panic!("{err}");
        };
        assert!(stderr.starts_with('['), "{stderr}");
        assert!(stderr.len() < STDERR_SHOWN + 100);
    }

    #[test]
    fn a_generator_past_its_timeout_is_killed() {
        let repo = TempRepo::new("timeout");
        let started = Instant::now();
        let config = command_config(&["echo started >&2; sleep 5; echo late"]);
        let err = run(&config, Path::new("f"), &repo.0, Duration::from_millis(200)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let GenerateFailure::TimedOut {
            timeout, stderr, ..
        } = &err.reason
        else {
            panic!("{err}");
        };
        assert_eq!(*timeout, Duration::from_millis(200));
        assert_eq!(stderr, "started");

        // A command's own timeout wins over the default.
        let own = ConfigFile::CommandUpdated {
            generators: vec![ConfigCommand {
                command: "sleep 5 & sleep 5; wait".to_owned(),
                timeout: Some(Duration::from_millis(100)),
            }],
            updaters: Vec::new(),
        };
        let started = Instant::now();
        let err = run(&own, Path::new("f"), &repo.0, LONG).unwrap_err();
        assert!(
            matches!(err.reason, GenerateFailure::TimedOut { .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_command_that_cannot_start_names_the_directory() {
        let config = command_config(&["true"]);
        let err = run(&config, Path::new("f"), Path::new("/nonexistent/dir"), LONG).unwrap_err();
        assert!(matches!(err.reason, GenerateFailure::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/dir"));
        let err = run(
            &ConfigFile::ScanForFiles,
            Path::new("f"),
            Path::new("."),
            LONG,
        )
        .unwrap_err();
        assert_eq!(err.reason, GenerateFailure::NothingToRun);
    }

    const GENERATED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: dev
spec:
  template:
    spec:
      containers:
      - name: app
        image: app:1.0
        ports:
        - containerPort: 80
      - name: sidecar
        image: proxy:2.0
---
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: podinfo
  namespace: dev
spec:
  values:
    image:
      repository: podinfo
      tag: 1.0.0
    replicas: 2
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: untouched   # comment kept
";

    fn patch_config(patch_file: &str) -> ConfigFile {
        ConfigFile::PatchUpdated {
            generators: vec![ConfigCommand {
                command: "cat generated.yaml".to_owned(),
                timeout: None,
            }],
            patch_file: patch_file.to_owned(),
        }
    }

    #[test]
    fn patch_updated_applies_strategic_and_merge_patches() {
        let repo = TempRepo::new("patch");
        repo.write("app/generated.yaml", GENERATED).write(
            "app/flux-patch.yaml",
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: dev\n\
             spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: app:1.1\n\
             ---\napiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: podinfo\n  namespace: dev\n\
             spec:\n  values:\n    image:\n      tag: 1.1.0\n    replicas: null\n",
        );
        let out = run(
            &patch_config("flux-patch.yaml"),
            &repo.0.join(".flux.yaml"),
            &repo.0.join("app"),
            LONG,
        )
        .unwrap();
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| serde_json::to_value(Yaml::deserialize(d).unwrap()).unwrap())
            .collect();
        assert_eq!(docs.len(), 3);
        let containers = &docs[0]["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            *containers,
            serde_json::json!([
                {"name": "app", "image": "app:1.1", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "proxy:2.0"},
            ])
        );
        assert_eq!(
            docs[1]["spec"]["values"],
            serde_json::json!({"image": {"repository": "podinfo", "tag": "1.1.0"}})
        );
        // Unpatched documents pass through as generated.
        assert!(
            out.ends_with("  name: untouched   # comment kept\n"),
            "{out}"
        );
    }

    #[test]
    fn patch_files_may_be_missing_but_must_match() {
        let repo = TempRepo::new("patchmissing");
        repo.write("app/generated.yaml", GENERATED);
        let config_path = repo.0.join(".flux.yaml");
        let target = repo.0.join("app");
        let out = run(
            &patch_config("flux-patch.yaml"),
            &config_path,
            &target,
            LONG,
        )
        .unwrap();
        assert_eq!(out, GENERATED);
        let err = run(&patch_config("nodir/p.yaml"), &config_path, &target, LONG).unwrap_err();
        assert_eq!(err.file, config_path.display().to_string());
        assert!(err.to_string().contains("does not exist"), "{err}");

        repo.write(
            "app/flux-patch.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: untouched}\ndata: {a: b}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gone, namespace: dev}\n",
        );
        let err = run(
            &patch_config("flux-patch.yaml"),
            &config_path,
            &target,
            LONG,
        )
        .unwrap_err();
        assert_eq!(
            err.file,
            target.join("flux-patch.yaml").display().to_string()
        );
        assert_eq!(err.line, Some(6));
        assert!(
            err.to_string()
                .contains("apps/v1 Deployment dev/gone matches no generated resource")
        );

        repo.write("app/flux-patch.yaml", "a: [\n");
        let err = run(
            &patch_config("flux-patch.yaml"),
            &config_path,
            &target,
            LONG,
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2));
    }
}

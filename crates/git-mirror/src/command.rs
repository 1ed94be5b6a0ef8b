//! Running the `git` CLI for the network operations (clone, fetch, `ls-remote`, push).
//!
//! A child process lets us pass exactly Flux v1's environment (plus `GIT_SSH_COMMAND` and
//! `GIT_TERMINAL_PROMPT=0`), hand https credentials over without putting them anywhere visible,
//! and kill git (with its ssh or remote helper) when the per-operation timeout expires.
//!
//! Credentials: the command line only carries `-c credential.helper=` (which drops every helper
//! configured elsewhere) and `-c credential.helper=<CREDENTIAL_HELPER>`, a shell function that
//! answers git's `get` with the values of two environment variables set only on that child
//! process. So the URL, the argv (visible to every user in `ps`), logs and errors never contain
//! them. What this module does not do: parse git's output beyond error summaries.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{GitConfig, SshConfig};
use crate::error::GitError;
use crate::url::{is_http, redact, safe_url};

/// Environment variables passed through to git (Flux v1 `pkg/git/operations.go`, plus `PATH`).
/// Everything else is removed; `GIT_TERMINAL_PROMPT=0` is always set.
pub(crate) const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "GIT_PROXY_COMMAND",
    "GNUPGHOME",
    "SECRETS_DIR",
    "SECRETS_EXTENSION",
    "CLOUDSDK_CONFIG",
    "CLOUDSDK_PYTHON",
    "NSS_WRAPPER_PASSWD",
    "NSS_WRAPPER_GROUP",
    "LD_PRELOAD",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
];

/// Environment variable holding the basic-auth username, set only on the git child process.
pub(crate) const USERNAME_ENV: &str = "FLUX_GIT_MIRROR_USERNAME";
/// Environment variable holding the basic-auth password, set only on the git child process.
pub(crate) const PASSWORD_ENV: &str = "FLUX_GIT_MIRROR_PASSWORD";
/// The credential helper (git runs `!`-helpers with `sh`, the action appended as `$1`): answers
/// `get` from [`USERNAME_ENV`] and [`PASSWORD_ENV`], ignores `store` and `erase`.
pub(crate) const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || exit 0; \
     printf 'username=%s\\npassword=%s\\n' \"$FLUX_GIT_MIRROR_USERNAME\" \"$FLUX_GIT_MIRROR_PASSWORD\"; }; f";

/// How git is run for one mirror: in `dir`, for `config`.
pub(crate) struct GitRun<'a> {
    /// The mirror directory (the working directory of git).
    pub(crate) dir: &'a Path,
    /// The mirror's configuration (URL, ssh, credentials, timeout).
    pub(crate) config: &'a GitConfig,
}

impl GitRun<'_> {
    /// The command `git <args>` with the restricted environment, the ssh command and the
    /// credential helper, in its own process group, stdin closed and output piped. Not started.
    pub(crate) fn command(&self, args: &[&str]) -> Result<Command, GitError> {
        let mut cmd = Command::new("git");
        cmd.current_dir(self.dir)
            .env_clear()
            .envs(
                PASSED_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(credentials) = self.http_credentials() {
            cmd.args([
                "-c",
                "credential.helper=",
                "-c",
                &format!("credential.helper={CREDENTIAL_HELPER}"),
            ])
            .env(USERNAME_ENV, credentials.username())
            .env(PASSWORD_ENV, credentials.password());
        }
        cmd.args(args);
        match &self.config.ssh {
            Some(ssh) => {
                cmd.env("GIT_SSH_COMMAND", ssh_command(ssh)?);
            }
            None => {
                if let Some(v) = std::env::var_os("GIT_SSH_COMMAND") {
                    cmd.env("GIT_SSH_COMMAND", v);
                }
            }
        }
        Ok(cmd)
    }

    /// The credentials to hand to git: only for http(s) URLs.
    fn http_credentials(&self) -> Option<&crate::Credentials> {
        self.config
            .credentials
            .as_ref()
            .filter(|_| is_http(&self.config.url))
    }

    /// Runs `git <args>` (see [`GitRun::command`]), killing it and its process group (ssh,
    /// remote helpers) when the timeout expires. Returns stdout.
    pub(crate) fn run(&self, op: &'static str, args: &[&str]) -> Result<String, GitError> {
        let url = safe_url(&self.config.url);
        let cmd = self.command(args)?;
        tracing::debug!(op, url = %url, "running git");
        let started = Instant::now();
        let output = run_with_timeout(cmd, self.config.timeout)
            .map_err(|source| GitError::Spawn { op, source })?;
        let Some(output) = output else {
            return Err(GitError::Timeout {
                op,
                url,
                timeout: self.config.timeout,
            });
        };
        tracing::debug!(
            op,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "git finished"
        );
        if output.success {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let secrets: Vec<&str> = self
            .http_credentials()
            .map(|c| vec![c.username(), c.password()])
            .unwrap_or_default();
        let stderr = redact(
            &String::from_utf8_lossy(&output.stderr),
            &self.config.url,
            &secrets,
        );
        if stderr.contains("Host key verification failed") {
            let known_hosts = match &self.config.ssh {
                Some(ssh) => ssh.known_hosts_file.display().to_string(),
                None => "ssh defaults".to_owned(),
            };
            return Err(GitError::HostKeyVerification { url, known_hosts });
        }
        Err(GitError::Command {
            op,
            url,
            message: summarize(&stderr, &output.status),
        })
    }
}

/// The `GIT_SSH_COMMAND` for `ssh`: only the given identity, host keys checked against the given
/// known_hosts and never accepted blindly, no prompts.
pub(crate) fn ssh_command(ssh: &SshConfig) -> Result<String, GitError> {
    let known_hosts = ssh.known_hosts_file.to_string_lossy();
    // ssh splits UserKnownHostsFile on whitespace (it takes a list of files).
    if known_hosts.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(GitError::Invalid {
            what: "known_hosts file",
            value: known_hosts.into_owned(),
            reason: "must not contain whitespace or '\"'".to_owned(),
        });
    }
    Ok(format!(
        "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o {} -o BatchMode=yes",
        shell_quote(&ssh.identity_file.to_string_lossy()),
        shell_quote(&format!("UserKnownHostsFile={known_hosts}")),
    ))
}

/// Single-quotes `s` for `sh` (git runs `GIT_SSH_COMMAND` through the shell).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A limit for in-process operations, checked between steps.
pub(crate) struct Deadline {
    op: &'static str,
    url: String,
    timeout: Duration,
    start: Instant,
}

impl Deadline {
    /// A deadline `timeout` from now for `op` on (the credential-free) `url`.
    pub(crate) fn new(op: &'static str, url: String, timeout: Duration) -> Self {
        Deadline {
            op,
            url,
            timeout,
            start: Instant::now(),
        }
    }

    /// [`GitError::Timeout`] once the time is up.
    pub(crate) fn check(&self) -> Result<(), GitError> {
        if self.start.elapsed() > self.timeout {
            return Err(GitError::Timeout {
                op: self.op,
                url: self.url.clone(),
                timeout: self.timeout,
            });
        }
        Ok(())
    }
}

/// What a finished child process produced.
struct Finished {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` (spawned as its own process group leader, with piped stdout and stderr) for at
/// most `timeout`. `Ok(None)` when it was killed because the time ran out.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<Option<Finished>> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd.spawn()?;
    let stdout = spawn_reader(child.stdout.take());
    let stderr = spawn_reader(child.stderr.take());
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(&mut child);
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // The pipes close when the process group is gone; a grandchild that escaped the group and
    // holds them open must not block us past the deadline.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        rx.recv_timeout(wait).unwrap_or_default()
    };
    Ok(Some(Finished {
        success: status.success(),
        status: status.to_string(),
        stdout: collect(stdout),
        stderr: collect(stderr),
    }))
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error leaves what was read so far.
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the process group led by `child` (git and the ssh or helper processes it started),
/// then reaps `child`. The group is signalled before reaping so its id cannot have been reused.
fn kill_group(child: &mut Child) {
    let pgid = child.id();
    let killed = Command::new("kill")
        .args([
            OsString::from("-KILL"),
            OsString::from("--"),
            OsString::from(format!("-{pgid}")),
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        // No `kill` utility: at least the git process itself.
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The useful part of git's error output, at most a few lines.
fn summarize(stderr: &str, status: &str) -> String {
    const BOILERPLATE: &[&str] = &[
        "Please make sure you have the correct access rights",
        "and the repository exists.",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !BOILERPLATE.contains(l))
        .collect();
    if lines.is_empty() {
        return format!("git exited with {status}");
    }
    let mut text = lines[lines.len().saturating_sub(4)..].join("; ");
    if text.len() > 600 {
        let mut cut = 600;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Credentials, MirrorMode};

    #[test]
    fn ssh_command_quotes_paths() {
        let ssh = SshConfig {
            identity_file: PathBuf::from("/keys/it's id"),
            known_hosts_file: PathBuf::from("/keys/known_hosts"),
        };
        assert_eq!(
            ssh_command(&ssh).unwrap(),
            "ssh -i '/keys/it'\\''s id' -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
             -o 'UserKnownHostsFile=/keys/known_hosts' -o BatchMode=yes"
        );
        let bad = SshConfig {
            known_hosts_file: PathBuf::from("/a b"),
            ..ssh
        };
        assert!(matches!(ssh_command(&bad), Err(GitError::Invalid { .. })));
    }

    fn env_of<'c>(cmd: &'c Command, name: &str) -> Option<&'c OsStr> {
        cmd.get_envs()
            .find(|(k, _)| *k == OsStr::new(name))
            .and_then(|(_, v)| v)
    }

    #[test]
    fn credentials_go_to_the_environment_not_the_command_line() {
        let config = GitConfig {
            url: "https://git.example.invalid/org/charts.git".to_owned(),
            mode: MirrorMode::AllRefs,
            credentials: Some(Credentials::new("ci-user", "hunter2-s3cret").unwrap()),
            ..GitConfig::default()
        };
        let run = GitRun {
            dir: Path::new("/nonexistent"),
            config: &config,
        };
        let cmd = run
            .command(&["fetch", "--quiet", "--prune", "--tags", "origin"])
            .unwrap();
        let argv: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = argv.join(" ");
        assert!(!line.contains("hunter2"), "{line}");
        assert!(!line.contains("ci-user"), "{line}");
        assert_eq!(
            argv[..5],
            [
                "git",
                "-c",
                "credential.helper=",
                "-c",
                &format!("credential.helper={CREDENTIAL_HELPER}")
            ]
        );
        assert_eq!(
            argv[5..],
            ["fetch", "--quiet", "--prune", "--tags", "origin"]
        );
        assert_eq!(
            env_of(&cmd, PASSWORD_ENV),
            Some(OsStr::new("hunter2-s3cret"))
        );
        assert_eq!(env_of(&cmd, USERNAME_ENV), Some(OsStr::new("ci-user")));
        assert_eq!(env_of(&cmd, "GIT_TERMINAL_PROMPT"), Some(OsStr::new("0")));

        // Not for other schemes: ssh keeps its identity, the credentials stay in the process.
        let ssh_config = GitConfig {
            url: "ssh://git@git.example.invalid/org/charts.git".to_owned(),
            ..config.clone()
        };
        let cmd = GitRun {
            dir: Path::new("/nonexistent"),
            config: &ssh_config,
        }
        .command(&["fetch"])
        .unwrap();
        assert!(env_of(&cmd, PASSWORD_ENV).is_none());
        assert!(
            !cmd.get_args()
                .any(|a| a.to_string_lossy().contains("credential"))
        );
    }

    #[test]
    fn the_helper_answers_get_only() {
        // Run the helper the way git does (`sh -c '<helper without !> "$@"' helper ACTION`).
        let script = format!("{} \"$@\"", &CREDENTIAL_HELPER[1..]);
        let answer = |action: &str| {
            let out = Command::new("sh")
                .args(["-c", &script, "helper", action])
                .env_clear()
                .env(USERNAME_ENV, "u 1")
                .env(PASSWORD_ENV, "p%s\\n'\"2")
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(answer("get"), "username=u 1\npassword=p%s\\n'\"2\n");
        assert_eq!(answer("store"), "");
        assert_eq!(answer("erase"), "");
    }

    #[test]
    fn summaries_keep_the_last_lines() {
        let text = summarize(
            "a\n\nPlease make sure you have the correct access rights\nb\nc\nd\ne\n",
            "exit 1",
        );
        assert_eq!(text, "b; c; d; e");
        assert_eq!(
            summarize("\n", "exit status: 128"),
            "git exited with exit status: 128"
        );
    }
}

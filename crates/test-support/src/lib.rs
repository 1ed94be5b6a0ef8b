//! Real parts for tests, on loopback only: temporary directories, bare git repositories filled
//! with the `git` CLI, an `sshd` serving them over `ssh://`, a `git daemon` serving them over
//! `git://`, a static HTTP server for a directory ([`HttpDir`], a plain Helm chart repository) and
//! a Docker Distribution registry ([`Registry`], an OCI chart registry).
//!
//! Every server listens on `127.0.0.1` on a free port, runs in its own process group and is
//! stopped by its PID (SIGTERM to its group, then SIGKILL) when its handle is dropped. Nothing
//! here talks to any other address.
//!
//! This crate does not mock anything and does not install anything: when a tool is missing
//! (`git`, `sshd`, `ssh-keygen`, `python3`, `docker-registry`, `htpasswd`) the functions panic with a message saying which package to
//! install. Every function panics on failure, with the command and its output in the message,
//! because it is only meant to be used from tests.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server's open connections may take to end before the server is stopped.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How many free ports are tried when a server cannot bind the first one (a port returned by
/// [`free_port`] can be taken by someone else before the server binds it).
const START_ATTEMPTS: usize = 4;

/// Author and committer of the commits made by [`BareRepo::commit`].
pub const TEST_AUTHOR_NAME: &str = "test";
/// E-mail of the author and committer of the commits made by [`BareRepo::commit`].
pub const TEST_AUTHOR_EMAIL: &str = "test@example.invalid";

// ---------------------------------------------------------------------------------------------
// Tools and ports
// ---------------------------------------------------------------------------------------------

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a listener
/// that is closed again before returning).
///
/// # Panics
///
/// If no loopback listener can be opened.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a listener on 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the address of a listener on 127.0.0.1: {e}"))
        .port()
}

/// Whether an executable called `name` is on `PATH` (or, for daemons, in `/usr/sbin` or `/sbin`,
/// which are not on every user's `PATH`).
pub fn tool_available(name: &str) -> bool {
    find_tool(name).is_some()
}

/// The absolute path of the executable `name`, searched as described in [`tool_available`].
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The absolute path of `name`, or a panic naming the package that provides it.
fn require_tool(name: &str, package: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!("{name} not found: install {package} (apt-get install -y {package})")
    })
}

/// The name of the user this process runs as (`id -un`), used as the ssh login name.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => std::env::var("USER").unwrap_or_else(|_| "root".to_owned()),
    }
}

/// Runs `cmd`, panicking with its output when it cannot be started or exits unsuccessfully.
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out
}

/// A `git` command isolated from the user's and the system's git configuration, with the test
/// identity as author and committer, prompts disabled and no automatic background gc.
pub fn git_command(cwd: &Path) -> Command {
    let git = require_tool("git", "git");
    let mut cmd = Command::new(git);
    cmd.current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        // No detached background gc/maintenance outliving the command.
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "gc.auto")
        .env("GIT_CONFIG_VALUE_0", "0")
        .env("GIT_CONFIG_KEY_1", "maintenance.auto")
        .env("GIT_CONFIG_VALUE_1", "false")
        .env("GIT_AUTHOR_NAME", TEST_AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", TEST_AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", TEST_AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", TEST_AUTHOR_EMAIL);
    cmd
}

/// Runs `git <args>` in `cwd` (see [`git_command`]) and returns its trimmed stdout.
///
/// # Panics
///
/// If git is missing or exits unsuccessfully; the message holds git's stderr.
pub fn run_git(cwd: &Path, args: &[&str]) -> String {
    let out = run(
        git_command(cwd).args(args),
        &format!("git {}", args.join(" ")),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Like [`run_git`], with extra environment variables (for example `GIT_SSH_COMMAND`).
///
/// # Panics
///
/// As [`run_git`].
pub fn run_git_with_env(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = git_command(cwd);
    cmd.args(args).envs(env.iter().copied());
    let out = run(&mut cmd, &format!("git {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temporary directory, removed with its content on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/flux-rs-<label>-<pid>-<counter>-<nanos>`. The label is reduced to
    /// `[A-Za-z0-9_-]` so it is safe in paths and in `pgrep -f` patterns.
    ///
    /// # Panics
    ///
    /// If the directory cannot be created.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("flux-rs-{label}-{}-{n}-{nanos}", std::process::id());
        // Canonical so that paths built from it (ssh URLs, known_hosts) are absolute and stable.
        let base = std::env::temp_dir();
        let base = base.canonicalize().unwrap_or(base);
        let path = base.join(name);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("test-support: cannot remove {}: {e}", self.path.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bare repositories
// ---------------------------------------------------------------------------------------------

/// A bare git repository on disk, filled through scratch clones with the `git` CLI.
#[derive(Debug)]
pub struct BareRepo {
    path: PathBuf,
    branch: String,
}

impl BareRepo {
    /// Creates `<dir>/<name>` with `git init --bare -b <branch>` (with automatic gc off).
    ///
    /// # Panics
    ///
    /// If git is missing or the repository cannot be created.
    pub fn new(dir: &Path, name: &str, branch: &str) -> Self {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let path = dir.join(name);
        let path_str = path.to_string_lossy().into_owned();
        run_git(&dir, &["init", "-q", "--bare", "-b", branch, &path_str]);
        // Pushes served by sshd or git daemon do not go through `git_command`: switch off the
        // detached auto-gc there in the repository itself.
        for (key, value) in [("receive.autogc", "false"), ("gc.auto", "0")] {
            run_git(&path, &["config", key, value]);
        }
        BareRepo {
            path,
            branch: branch.to_owned(),
        }
    }

    /// The repository's directory (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The branch [`BareRepo::commit`] commits to.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// `file://<absolute path>`.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Writes `files` (path, content; parent directories are created), deletes `removed`, commits
    /// everything as `test <test@example.invalid>` with `message` and pushes the commit to the
    /// branch. Works on an empty repository (the first commit). Returns the new commit id.
    ///
    /// # Panics
    ///
    /// If a git command fails or a file cannot be written.
    pub fn commit(&self, files: &[(&str, &str)], removed: &[&str], message: &str) -> String {
        let scratch = TempDir::new("commit");
        let work = scratch.path();
        let url = self.path.to_string_lossy().into_owned();
        let branch_ref = format!("refs/heads/{}", self.branch);
        run_git(work, &["init", "-q", "-b", &self.branch]);
        if self.rev(&branch_ref).is_some() {
            run_git(work, &["fetch", "-q", &url, &branch_ref]);
            run_git(work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        }
        for (name, content) in files {
            let file = work.join(name);
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
            }
            fs::write(&file, content)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        }
        for name in removed {
            let file = work.join(name);
            fs::remove_file(&file)
                .unwrap_or_else(|e| panic!("cannot remove {}: {e}", file.display()));
        }
        run_git(work, &["add", "-A"]);
        run_git(
            work,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "--no-verify",
                "-m",
                message,
            ],
        );
        run_git(work, &["push", "-q", &url, &format!("HEAD:{branch_ref}")]);
        run_git(work, &["rev-parse", "HEAD"])
    }

    /// Creates the annotated tag `tag` on `rev` in the bare repository (replacing an existing
    /// one), as a stand-in for someone else moving a tag.
    ///
    /// # Panics
    ///
    /// If git fails (for example, `rev` does not exist).
    pub fn create_tag(&self, tag: &str, rev: &str) {
        run_git(&self.path, &["tag", "-f", "-a", "-m", "test tag", tag, rev]);
    }

    /// The commit `rev` (a ref name or id) resolves to, or `None` when it does not exist.
    pub fn rev(&self, rev: &str) -> Option<String> {
        let out = git_command(&self.path)
            .args(["rev-parse", "--verify", "-q", &format!("{rev}^{{commit}}")])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run git rev-parse: {e}"));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !id.is_empty()).then_some(id)
    }

    /// The head commit of the branch, or `None` when the repository is empty.
    pub fn head(&self) -> Option<String> {
        self.rev(&format!("refs/heads/{}", self.branch))
    }

    /// The commit the tag `tag` points at (peeled through annotated tags), or `None` when the
    /// bare repository has no such tag.
    pub fn tag_target(&self, tag: &str) -> Option<String> {
        self.rev(&format!("refs/tags/{tag}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A server process started in its own process group (its PID is the group id).
#[derive(Debug)]
struct Server {
    child: Option<Child>,
    what: &'static str,
}

impl Server {
    fn spawn(mut cmd: Command, log: &Path, what: &'static str) -> Self {
        let log_file = fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Server {
            child: Some(child),
            what,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until 127.0.0.1:`port` accepts connections. Returns `false` when the process
    /// exited first (for example, because the port was taken) or did not start listening in time.
    fn wait_listening(&mut self, port: u16) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                self.child = None;
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the server and everything it started:
    /// 1. up to [`LINGER_TIMEOUT`] for its children (open connections) to finish on their own;
    /// 2. SIGTERM to its process group, up to [`STOP_TIMEOUT`] for the leader to exit;
    /// 3. SIGKILL to the group (while the leader is unreaped, so the group id cannot have been
    ///    reused) and to each remaining descendant recorded before step 2 (sshd puts each
    ///    connection in its own session, outside the group);
    /// 4. reap the leader.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        let linger = Instant::now() + LINGER_TIMEOUT;
        while Instant::now() < linger && !descendants(pid, true).is_empty() {
            sleep(Duration::from_millis(10));
        }
        let stragglers = descendants(pid, false);
        signal_group(pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline && !exited_unreaped(pid) {
            sleep(Duration::from_millis(10));
        }
        signal_group(pid, "KILL");
        for process in stragglers {
            // Only if it is still the same process (same start time), not a reused PID.
            if process_start_time(process.pid) == Some(process.start_time) {
                signal_pid(process.pid, "KILL");
            }
        }
        // Fails when it already exited, the usual case after SIGTERM.
        let _ = child.kill();
        if let Err(e) = child.wait() {
            eprintln!("test-support: cannot reap {} (pid {pid}): {e}", self.what);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` to the process group `pgid` with the `kill` utility (std has no API for it).
fn signal_group(pgid: u32, signal: &str) {
    signal_pid_arg(&format!("-{pgid}"), signal);
}

/// Sends `signal` to the process `pid` with the `kill` utility.
fn signal_pid(pid: u32, signal: &str) {
    signal_pid_arg(&pid.to_string(), signal);
}

fn signal_pid_arg(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A process seen in `/proc`, identified by PID and start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessId {
    pid: u32,
    start_time: u64,
}

/// Fields of `/proc/<pid>/stat` after the parenthesised command name (state is the first).
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn process_start_time(pid: u32) -> Option<u64> {
    // Field 22 of stat is starttime; after the command name it is the 20th (index 19).
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

/// The descendants of `pid` (zombies only with `zombies`), found through the parent PIDs in
/// `/proc`. Waiting until a server has none also lets it reap its exited children, so that no
/// zombie is handed to init when it is stopped.
fn descendants(pid: u32, zombies: bool) -> Vec<ProcessId> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, ppid, state, start time) of every process.
    let table: Vec<(u32, u32, String, u64)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let fields = proc_stat_fields(p)?;
            let ppid = fields.get(1)?.parse().ok()?;
            let start = fields.get(19)?.parse().ok()?;
            Some((p, ppid, fields.first()?.clone(), start))
        })
        .collect();
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for (p, ppid, state, start) in &table {
            if *ppid == parent {
                parents.push(*p);
                if zombies || state != "Z" {
                    found.push(ProcessId {
                        pid: *p,
                        start_time: *start,
                    });
                }
            }
        }
    }
    found
}

/// Whether our child `pid` has exited (it is a zombie or gone) without reaping it.
fn exited_unreaped(pid: u32) -> bool {
    match proc_stat_fields(pid) {
        Some(fields) => fields.first().is_some_and(|state| state == "Z"),
        None => true,
    }
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// SSH
// ---------------------------------------------------------------------------------------------

/// An ssh key pair made by `ssh-keygen`.
#[derive(Debug, Clone)]
pub struct SshKeyPair {
    /// The private key file (OpenSSH format, mode 0600, no passphrase).
    pub private_key: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
}

/// Generates an ed25519 key pair `<dir>/<name>` and `<dir>/<name>.pub` with `ssh-keygen`.
///
/// # Panics
///
/// If `ssh-keygen` is missing or fails.
pub fn ssh_keygen(dir: &Path, name: &str) -> SshKeyPair {
    let keygen = require_tool("ssh-keygen", "openssh-client");
    let private_key = dir.join(name);
    run(
        Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private_key),
        "ssh-keygen",
    );
    let pub_file = dir.join(format!("{name}.pub"));
    let public_key = fs::read_to_string(&pub_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", pub_file.display()))
        .trim()
        .to_owned();
    SshKeyPair {
        private_key,
        public_key,
    }
}

/// A `GIT_SSH_COMMAND` value that logs in with `identity` only and verifies the host key
/// against `known_hosts` (never accepting unknown keys).
pub fn ssh_command(identity: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh -i '{}' -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
         -o 'UserKnownHostsFile={}' -o BatchMode=yes",
        identity.display(),
        known_hosts.display()
    )
}

/// An OpenSSH server on 127.0.0.1 with its own host key, accepting only the public keys given to
/// [`Sshd::authorize`]. Stopped by PID on drop.
#[derive(Debug)]
pub struct Sshd {
    server: Server,
    port: u16,
    dir: PathBuf,
    user: String,
}

impl Sshd {
    /// Generates a host key in `dir`, writes `dir/sshd_config` and starts
    /// `<abs path of sshd> -D -e -f dir/sshd_config` on a free port; returns once the port
    /// accepts connections. The log is in `dir/sshd.log`.
    ///
    /// # Panics
    ///
    /// If sshd or ssh-keygen is missing (install openssh-server), or sshd does not start.
    pub fn start(dir: &Path) -> Self {
        let sshd = require_tool("sshd", "openssh-server");
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        ssh_keygen(&dir, "ssh_host_ed25519_key");
        let authorized_keys = dir.join("authorized_keys");
        fs::write(&authorized_keys, "")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", authorized_keys.display()));
        // sshd's fixed privilege-separation directory; missing in containers. Failing to create
        // it (not root) is reported by sshd itself.
        let _ = fs::create_dir_all("/run/sshd");
        let log = dir.join("sshd.log");
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let config = dir.join("sshd_config");
            let text = format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {dir}/ssh_host_ed25519_key\n\
                 PidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 LogLevel VERBOSE\n",
                dir = dir.display()
            );
            fs::write(&config, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            let mut cmd = Command::new(&sshd);
            cmd.arg("-D").arg("-e").arg("-f").arg(&config);
            let mut server = Server::spawn(cmd, &log, "sshd");
            if server.wait_listening(port) {
                return Sshd {
                    server,
                    port,
                    dir,
                    user: current_user(),
                };
            }
            server.stop();
        }
        panic!(
            "sshd did not start listening on 127.0.0.1; its log:\n{}",
            read_log(&log)
        );
    }

    /// The port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the sshd process.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Appends a public key line (`ssh-ed25519 AAAA... comment`) to the authorized keys.
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn authorize(&self, public_key_openssh: &str) {
        let path = self.dir.join("authorized_keys");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        writeln!(file, "{}", public_key_openssh.trim())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The `known_hosts` line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    ///
    /// # Panics
    ///
    /// If the host public key cannot be read.
    pub fn known_hosts(&self) -> String {
        let path = self.dir.join("ssh_host_ed25519_key.pub");
        let key = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        format!("[127.0.0.1]:{} {kind} {blob}\n", self.port)
    }

    /// `ssh://<user>@127.0.0.1:PORT/<absolute path of repo>`, with the current user as login.
    pub fn url(&self, repo: &BareRepo) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.path().display()
        )
    }

    /// sshd's log so far (`-e` output), for assertions and failure messages.
    pub fn log(&self) -> String {
        read_log(&self.dir.join("sshd.log"))
    }
}

// ---------------------------------------------------------------------------------------------
// git daemon
// ---------------------------------------------------------------------------------------------

/// `git daemon` on 127.0.0.1 serving every repository under a base directory over `git://`,
/// with push (receive-pack) enabled. Stopped by PID on drop.
#[derive(Debug)]
pub struct GitDaemon {
    server: Server,
    port: u16,
    // Holds the log; dropped after `server` (fields drop in declaration order).
    logs: TempDir,
}

impl GitDaemon {
    /// Starts `git-daemon` (the program from `git --exec-path`, so that the PID we kill is the
    /// daemon itself and not a `git` wrapper) with `--reuseaddr --listen=127.0.0.1 --port=<free>
    /// --base-path=<base> --export-all --enable=receive-pack <base>`; returns once the port accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// If git or git-daemon is missing or the daemon does not start.
    pub fn start(base: &Path) -> Self {
        let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
        let exec_path = run_git(&base, &["--exec-path"]);
        let daemon = Path::new(&exec_path).join("git-daemon");
        if !is_executable(&daemon) {
            panic!(
                "git-daemon not found at {}: install git (with git-daemon)",
                daemon.display()
            );
        }
        let logs = TempDir::new("git-daemon-log");
        let log = logs.path().join("git-daemon.log");
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(&daemon);
            cmd.arg("--reuseaddr")
                .arg("--verbose")
                .arg("--informative-errors")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg("--enable=receive-pack")
                .arg(&base)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            let mut server = Server::spawn(cmd, &log, "git daemon");
            if server.wait_listening(port) {
                return GitDaemon { server, port, logs };
            }
            server.stop();
        }
        panic!(
            "git daemon did not start listening on 127.0.0.1; its log:\n{}",
            read_log(&log)
        );
    }

    /// The port the daemon listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the git-daemon process.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// `git://127.0.0.1:PORT/<repo_name>` (`repo_name` relative to the base directory).
    pub fn url(&self, repo_name: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            repo_name.trim_start_matches('/')
        )
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        read_log(&self.logs.path().join("git-daemon.log"))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP directory server
// ---------------------------------------------------------------------------------------------

/// The server behind [`HttpDir`]: Python's `http.server` serving a directory, logging one line
/// per request to stderr (`<METHOD> <path> <status> auth=<none|basic:USER|other>`), and with
/// `HTTPDIR_BASIC_AUTH=user:password` in its environment answering 401 to every request that
/// does not carry exactly those Basic credentials. The password is never logged.
const HTTP_DIR_SCRIPT: &str = r#"
import base64, http.server, os, sys
directory, port = sys.argv[1], int(sys.argv[2])
expected = os.environ.get("HTTPDIR_BASIC_AUTH")
want = None if expected is None else "Basic " + base64.b64encode(expected.encode()).decode()

class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=directory, **kwargs)

    def auth_state(self):
        auth = self.headers.get("Authorization")
        if auth is None:
            return "none"
        if auth.startswith("Basic "):
            try:
                user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except Exception:
                user = "?"
            return "basic:" + user
        return "other"

    def refuse(self):
        if want is None or self.headers.get("Authorization") == want:
            return False
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_GET(self):
        if not self.refuse():
            super().do_GET()

    def do_HEAD(self):
        if not self.refuse():
            super().do_HEAD()

    def log_request(self, code="-", size="-"):
        code = getattr(code, "value", code)
        sys.stderr.write("%s %s %s auth=%s\n" % (self.command, self.path, code, self.auth_state()))
        sys.stderr.flush()

    def log_message(self, format, *args):
        sys.stderr.write("server: " + (format % args) + "\n")
        sys.stderr.flush()

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

/// One request as logged by [`HttpDir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target as sent (path and query), e.g. `/index.yaml`.
    pub path: String,
    /// The status code of the answer.
    pub status: u16,
    /// The `Authorization` the request carried: `None` without one, `Some("basic:USER")` for
    /// Basic credentials (only the user name, never the password), `Some("other")` otherwise.
    pub auth: Option<String>,
}

/// A static HTTP server on 127.0.0.1 serving the files of one directory (Python's `http.server`,
/// like a plain Helm chart repository on a web server), optionally behind Basic auth, with a
/// request log tests can read. Stopped by PID on drop.
#[derive(Debug)]
pub struct HttpDir {
    server: Server,
    port: u16,
    // Holds the log; dropped after `server` (fields drop in declaration order).
    logs: TempDir,
}

impl HttpDir {
    /// Serves `dir` (read at request time, so files may change while it runs) on a free port;
    /// returns once the port accepts connections.
    ///
    /// # Panics
    ///
    /// If `python3` is missing or the server does not start.
    pub fn start(dir: &Path) -> Self {
        Self::spawn(dir, None)
    }

    /// Like [`HttpDir::start`], but every request without exactly these Basic credentials gets
    /// 401 with `WWW-Authenticate: Basic realm="test"`.
    ///
    /// # Panics
    ///
    /// As [`HttpDir::start`].
    pub fn start_with_basic_auth(dir: &Path, username: &str, password: &str) -> Self {
        Self::spawn(dir, Some(format!("{username}:{password}")))
    }

    fn spawn(dir: &Path, basic_auth: Option<String>) -> Self {
        let python = require_tool("python3", "python3");
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let logs = TempDir::new("http-dir-log");
        let log = logs.path().join("http.log");
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(&python);
            cmd.arg("-u")
                .arg("-c")
                .arg(HTTP_DIR_SCRIPT)
                .arg(&dir)
                .arg(port.to_string());
            match &basic_auth {
                // In the environment, not on the command line other users can read.
                Some(credentials) => cmd.env("HTTPDIR_BASIC_AUTH", credentials),
                None => cmd.env_remove("HTTPDIR_BASIC_AUTH"),
            };
            let mut server = Server::spawn(cmd, &log, "python3 http.server");
            if server.wait_listening(port) {
                return HttpDir { server, port, logs };
            }
            server.stop();
        }
        panic!(
            "python3 http.server did not start listening on 127.0.0.1; its log:\n{}",
            read_log(&log)
        );
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the server process.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far (request lines and messages).
    pub fn log(&self) -> String {
        read_log(&self.logs.path().join("http.log"))
    }

    /// The requests answered so far, in order. A request is logged when its status line is
    /// sent, so it is listed once the client has seen the answer.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.log().lines().filter_map(parse_request_line).collect()
    }

    /// How many `GET` requests for `path` (exact request target) were answered with 200.
    pub fn downloads(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == path && r.status == 200)
            .count()
    }
}

fn parse_request_line(line: &str) -> Option<HttpRequest> {
    let mut fields = line.split(' ');
    let method = fields.next()?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let path = fields.next()?;
    let status = fields.next()?.parse().ok()?;
    let auth = fields.next()?.strip_prefix("auth=")?;
    Some(HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        auth: (auth != "none").then(|| auth.to_owned()),
    })
}

// ---------------------------------------------------------------------------------------------
// OCI registry
// ---------------------------------------------------------------------------------------------

/// A Docker Distribution registry (`/usr/bin/docker-registry` from Debian's `docker-registry`,
/// version 2.8) on 127.0.0.1 over plain HTTP, with its storage in a directory of the test,
/// optionally behind htpasswd Basic auth. Stopped by PID on drop.
#[derive(Debug)]
pub struct Registry {
    server: Server,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    /// Writes `dir/config.yml` (storage in `dir/data`, deletes enabled) and starts
    /// `docker-registry serve dir/config.yml` on a free port; returns once the port accepts
    /// connections. Its log is in `dir/registry.log`.
    ///
    /// # Panics
    ///
    /// If `docker-registry` is missing (install docker-registry) or it does not start.
    pub fn start(dir: &Path) -> Self {
        Self::spawn(dir, None)
    }

    /// Like [`Registry::start`], with `auth.htpasswd` accepting only `username` / `password`
    /// (bcrypt entry made by `htpasswd -Bbn`, from apache2-utils); other requests get 401 with
    /// `WWW-Authenticate: Basic realm="basic-realm"`.
    ///
    /// # Panics
    ///
    /// As [`Registry::start`], and if `htpasswd` is missing (install apache2-utils).
    pub fn start_with_htpasswd(dir: &Path, username: &str, password: &str) -> Self {
        Self::spawn(dir, Some((username, password)))
    }

    fn spawn(dir: &Path, auth: Option<(&str, &str)>) -> Self {
        let registry = require_tool("docker-registry", "docker-registry");
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let auth_section = match auth {
            None => String::new(),
            Some((username, password)) => {
                let htpasswd = require_tool("htpasswd", "apache2-utils");
                let out = run(
                    Command::new(htpasswd).args(["-Bbn", username, password]),
                    "htpasswd -Bbn",
                );
                let file = dir.join("htpasswd");
                fs::write(&file, &out.stdout)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
                format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    file.display()
                )
            }
        };
        let log = dir.join("registry.log");
        let config = dir.join("config.yml");
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let text = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 {auth_section}",
                data = dir.join("data").display()
            );
            fs::write(&config, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            let mut cmd = Command::new(&registry);
            cmd.arg("serve").arg(&config);
            let mut server = Server::spawn(cmd, &log, "docker-registry");
            if server.wait_listening(port) {
                return Registry { server, port, dir };
            }
            server.stop();
        }
        panic!(
            "docker-registry did not start listening on 127.0.0.1; its log:\n{}",
            read_log(&log)
        );
    }

    /// The port the registry listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the registry process.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// `127.0.0.1:PORT`, the registry host as it appears in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:PORT/<path>` (Helm's spelling of a chart repository in a registry).
    pub fn oci_url(&self, path: &str) -> String {
        format!("oci://{}/{}", self.host(), path.trim_start_matches('/'))
    }

    /// The registry's log so far; its access log has one line per request
    /// (`"GET /v2/<name>/blobs/<digest> HTTP/1.1" 200 ...`).
    pub fn log(&self) -> String {
        read_log(&self.dir.join("registry.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes whose command line mentions `pattern`, except the pgrep itself.
    fn processes_mentioning(pattern: &str) -> String {
        let out = Command::new("pgrep")
            .arg("-af")
            .arg(pattern)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn pid_alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let path = {
            let dir = TempDir::new("drop me/../x");
            assert!(dir.path().is_dir());
            assert!(!dir.path().to_string_lossy().contains(".."));
            fs::write(dir.path().join("f"), "x").unwrap();
            dir.path().to_path_buf()
        };
        assert!(!path.exists());
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn tool_available_finds_git_not_nonsense() {
        assert!(tool_available("git"));
        assert!(!tool_available("definitely-not-a-tool-4711"));
    }

    #[test]
    fn bare_repo_commit_and_tag() {
        let tmp = TempDir::new("bare");
        let repo = BareRepo::new(tmp.path(), "app.git", "main");
        assert!(repo.path().is_absolute());
        assert_eq!(repo.file_url(), format!("file://{}", repo.path().display()));
        assert_eq!(repo.head(), None);
        assert_eq!(repo.tag_target("v1"), None);

        let c1 = repo.commit(
            &[("a.yaml", "a: 1\n"), ("dir/b.yaml", "b: 1\n")],
            &[],
            "first",
        );
        assert_eq!(c1.len(), 40);
        assert_eq!(repo.head().as_deref(), Some(c1.as_str()));
        let c2 = repo.commit(&[("a.yaml", "a: 2\n")], &["dir/b.yaml"], "second");
        assert_ne!(c1, c2);
        assert_eq!(repo.head().as_deref(), Some(c2.as_str()));

        let tree = run_git(repo.path(), &["ls-tree", "-r", "--name-only", "main"]);
        assert_eq!(tree, "a.yaml");
        assert_eq!(run_git(repo.path(), &["show", "main:a.yaml"]), "a: 2");
        assert_eq!(
            run_git(repo.path(), &["log", "-1", "--format=%an <%ae>|%s", "main"]),
            { "test <test@example.invalid>|second" }
        );
        assert_eq!(run_git(repo.path(), &["rev-parse", "main~1"]), c1);

        repo.create_tag("v1", &c1);
        assert_eq!(repo.tag_target("v1").as_deref(), Some(c1.as_str()));
        assert_eq!(
            run_git(repo.path(), &["cat-file", "-t", "refs/tags/v1"]),
            "tag"
        );
        repo.create_tag("v1", &c2);
        assert_eq!(repo.tag_target("v1").as_deref(), Some(c2.as_str()));
    }

    #[test]
    fn sshd_serves_clone_and_push_to_an_authorized_key_only() {
        let tmp = TempDir::new("sshd");
        let repo = BareRepo::new(tmp.path(), "app.git", "main");
        let c1 = repo.commit(&[("hello.txt", "hello\n")], &[], "first");

        let sshd_dir = tmp.path().join("sshd");
        fs::create_dir(&sshd_dir).unwrap();
        let sshd = Sshd::start(&sshd_dir);
        let pid = sshd.pid().unwrap();
        assert!(pid_alive(pid));

        let client = ssh_keygen(tmp.path(), "client");
        let stranger = ssh_keygen(tmp.path(), "stranger");
        sshd.authorize(&client.public_key);
        let known_hosts = tmp.path().join("known_hosts");
        fs::write(&known_hosts, sshd.known_hosts()).unwrap();
        assert!(
            sshd.known_hosts()
                .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port()))
        );

        let url = sshd.url(&repo);
        assert!(url.starts_with(&format!(
            "ssh://{}@127.0.0.1:{}/",
            current_user(),
            sshd.port()
        )));
        let ssh = ssh_command(&client.private_key, &known_hosts);
        let env = [("GIT_SSH_COMMAND", ssh.as_str())];
        let clone = tmp.path().join("clone");
        let clone_str = clone.to_string_lossy().into_owned();
        run_git_with_env(tmp.path(), &env, &["clone", "-q", &url, &clone_str]);
        assert_eq!(
            fs::read_to_string(clone.join("hello.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(run_git(&clone, &["rev-parse", "HEAD"]), c1);

        fs::write(clone.join("pushed.txt"), "over ssh\n").unwrap();
        run_git(&clone, &["add", "-A"]);
        run_git(&clone, &["commit", "-q", "-m", "over ssh"]);
        run_git_with_env(&clone, &env, &["push", "-q", "origin", "HEAD:main"]);
        assert_eq!(repo.head(), Some(run_git(&clone, &["rev-parse", "HEAD"])));

        // An unauthorized key is refused.
        let ssh = ssh_command(&stranger.private_key, &known_hosts);
        let out = git_command(tmp.path())
            .args(["ls-remote", &url])
            .env("GIT_SSH_COMMAND", &ssh)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

        drop(sshd);
        assert!(!pid_alive(pid), "sshd (pid {pid}) still running after drop");
        assert_eq!(processes_mentioning(&sshd_dir.to_string_lossy()), "");
    }

    #[test]
    fn sshd_drop_ends_open_sessions() {
        let tmp = TempDir::new("sshd-session");
        let sshd = Sshd::start(tmp.path());
        let key = ssh_keygen(tmp.path(), "client");
        sshd.authorize(&key.public_key);
        let known_hosts = tmp.path().join("known_hosts");
        fs::write(&known_hosts, sshd.known_hosts()).unwrap();
        // A remote command unique to this test, so pgrep finds only it.
        let marker = format!("sleep {}", 100_000 + u32::from(sshd.port()));
        let mut client = Command::new("ssh")
            .args(["-i"])
            .arg(&key.private_key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "BatchMode=yes", "-p", &sshd.port().to_string()])
            .arg(format!("{}@127.0.0.1", current_user()))
            .arg(&marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pattern = format!("^{marker}$");
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_mentioning(&pattern).is_empty() {
            assert!(
                Instant::now() < deadline,
                "remote command did not start: {}",
                sshd.log()
            );
            sleep(Duration::from_millis(20));
        }
        drop(sshd);
        assert_eq!(processes_mentioning(&pattern), "");
        assert!(!client.wait().unwrap().success());
    }

    #[test]
    fn git_daemon_serves_clone_and_push() {
        let tmp = TempDir::new("gitd");
        let base = tmp.path().join("base");
        fs::create_dir(&base).unwrap();
        let repo = BareRepo::new(&base, "app.git", "main");
        let c1 = repo.commit(&[("a.txt", "a\n")], &[], "first");

        let daemon = GitDaemon::start(&base);
        let pid = daemon.pid().unwrap();
        let url = daemon.url("app.git");
        assert_eq!(url, format!("git://127.0.0.1:{}/app.git", daemon.port()));

        let clone = tmp.path().join("clone");
        let clone_str = clone.to_string_lossy().into_owned();
        run_git(tmp.path(), &["clone", "-q", &url, &clone_str]);
        assert_eq!(run_git(&clone, &["rev-parse", "HEAD"]), c1);
        fs::write(clone.join("b.txt"), "b\n").unwrap();
        run_git(&clone, &["add", "-A"]);
        run_git(&clone, &["commit", "-q", "-m", "second"]);
        run_git(&clone, &["push", "-q", "origin", "HEAD:main"]);
        assert_eq!(repo.head(), Some(run_git(&clone, &["rev-parse", "HEAD"])));
        assert!(
            daemon.log().contains("Connection from 127.0.0.1"),
            "{}",
            daemon.log()
        );

        drop(daemon);
        assert!(
            !pid_alive(pid),
            "git-daemon (pid {pid}) still running after drop"
        );
        assert_eq!(processes_mentioning(&base.to_string_lossy()), "");
    }

    #[test]
    fn http_dir_serves_files_and_logs_requests() {
        let tmp = TempDir::new("http-dir");
        fs::write(tmp.path().join("index.yaml"), "apiVersion: v1\n").unwrap();
        let server = HttpDir::start(tmp.path());
        let pid = server.pid().unwrap();
        let (status, body) = http_get(server.port(), "/index.yaml", None);
        assert_eq!(status, 200);
        assert!(body.ends_with("apiVersion: v1\n"), "{body}");
        let (status, _) = http_get(server.port(), "/missing.tgz", None);
        assert_eq!(status, 404);
        assert_eq!(
            server.requests(),
            vec![
                HttpRequest {
                    method: "GET".into(),
                    path: "/index.yaml".into(),
                    status: 200,
                    auth: None
                },
                HttpRequest {
                    method: "GET".into(),
                    path: "/missing.tgz".into(),
                    status: 404,
                    auth: None
                },
            ]
        );
        assert_eq!(server.downloads("/index.yaml"), 1);
        assert_eq!(server.downloads("/missing.tgz"), 0);
        drop(server);
        assert!(!pid_alive(pid), "http server (pid {pid}) still running");
    }

    #[test]
    fn http_dir_with_basic_auth_refuses_wrong_credentials_and_never_logs_passwords() {
        let tmp = TempDir::new("http-dir-auth");
        fs::write(tmp.path().join("a.txt"), "a").unwrap();
        let server = HttpDir::start_with_basic_auth(tmp.path(), "ci", "s3cret-pw");
        // "ci:s3cret-pw" and "ci:nope" in base64.
        let good = "Basic Y2k6czNjcmV0LXB3";
        let bad = "Basic Y2k6bm9wZQ==";
        assert_eq!(http_get(server.port(), "/a.txt", None).0, 401);
        assert_eq!(http_get(server.port(), "/a.txt", Some(bad)).0, 401);
        assert_eq!(http_get(server.port(), "/a.txt", Some(good)).0, 200);
        let auths: Vec<_> = server
            .requests()
            .into_iter()
            .map(|r| (r.status, r.auth))
            .collect();
        assert_eq!(
            auths,
            vec![
                (401, None),
                (401, Some("basic:ci".to_owned())),
                (200, Some("basic:ci".to_owned()))
            ]
        );
        assert!(!server.log().contains("s3cret"), "{}", server.log());
    }

    #[test]
    fn registry_answers_v2_and_htpasswd_registry_requires_credentials() {
        let tmp = TempDir::new("registry");
        let open_dir = tmp.path().join("open");
        let auth_dir = tmp.path().join("auth");
        fs::create_dir(&open_dir).unwrap();
        fs::create_dir(&auth_dir).unwrap();
        let open = Registry::start(&open_dir);
        let closed = Registry::start_with_htpasswd(&auth_dir, "ci", "s3cret-pw");
        assert_eq!(
            open.oci_url("/charts"),
            format!("oci://127.0.0.1:{}/charts", open.port())
        );
        assert_eq!(http_get(open.port(), "/v2/", None).0, 200);
        assert_eq!(http_get(closed.port(), "/v2/", None).0, 401);
        assert_eq!(
            http_get(closed.port(), "/v2/", Some("Basic Y2k6bm9wZQ==")).0,
            401
        );
        assert_eq!(
            http_get(closed.port(), "/v2/", Some("Basic Y2k6czNjcmV0LXB3")).0,
            200
        );
        assert!(open.log().contains("/v2/"), "{}", open.log());
        let pids = [open.pid().unwrap(), closed.pid().unwrap()];
        drop(open);
        drop(closed);
        for pid in pids {
            assert!(!pid_alive(pid), "registry (pid {pid}) still running");
        }
    }

    /// A minimal HTTP/1.0 GET on 127.0.0.1: (status, body).
    fn http_get(port: u16, path: &str, authorization: Option<&str>) -> (u16, String) {
        use std::io::Read;
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

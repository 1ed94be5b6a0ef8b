//! Helpers the benches and the demo share to run the project's binaries as processes:
//! building them, committing a directory to a fresh git repository, a kubeconfig for a plain
//! HTTP kube-sim, and a minimal HTTP/1.1 client for loopback endpoints.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Builds `kube-sim`, `flux-agent` and `helm-operator` (`release` or debug) and returns the target directory.
pub(crate) fn build_binaries(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .current_dir(root)
        .args(["build", "--quiet", "--locked"]);
    if release {
        command.arg("--release");
    }
    let status = command
        .args([
            "-p",
            "kube-sim",
            "--bin",
            "kube-sim",
            "-p",
            "flux-agent",
            "--bin",
            "flux-agent",
            "-p",
            "helm-operator",
            "--bin",
            "helm-operator",
        ])
        .status()
        .context("failed to run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target: PathBuf =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Runs `git` in `dir` and returns its standard output, trimmed.
pub(crate) fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .context("failed to run git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Makes `dir` a git repository on `master` with everything in it committed; returns the commit.
pub(crate) fn commit_dir(dir: &Path, message: &str) -> anyhow::Result<String> {
    git(dir, &["init", "-q", "-b", "master"])?;
    git(dir, &["add", "-A"])?;
    git(
        dir,
        &[
            "-c",
            "user.name=xtask",
            "-c",
            "user.email=xtask@example.invalid",
            "commit",
            "-q",
            "-m",
            message,
        ],
    )?;
    git(dir, &["rev-parse", "HEAD"])
}

/// A kubeconfig for a plain-HTTP kube-sim at `url`.
pub(crate) fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\nusers:\n- name: sim\n  user: {{}}\n"
    )
}

/// A request to 127.0.0.1:`port`; returns the response body.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned()))
}

//! `cargo xtask`: project tasks that are code, not shell.
//!
//! - `crds`: writes the CRDs generated from `crates/model` into `manifests/crds/`
//!   (`--check` only compares).
//! - `demo`: the local demo on embedded defaults: kube-sim, the agent and the Helm operator on
//!   the example config repository (`--keep` leaves them running).
//! - `tools`: fetches the binaries the tests run (Helm 3, Helm 4, kubectl 1.31) into a cache
//!   outside the clone and prints their paths (`--print-env`: `export` lines).
//! - `bench kube-sim`, `bench sync`, `bench operator`, `bench registry`: benchmarks (release builds, figures on stdout).
//! - `test`: the test suite, as the README and CI run it, with the `tools` paths in its
//!   environment.

mod bench;
mod bench_operator;
mod bench_registry;
mod bench_sync;
mod crds;
mod demo;
mod demo_live;
mod procs;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tasks: crds, demo, tools, bench, test"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Regenerate manifests/crds/*.yaml from the Rust types.
    Crds {
        /// Only check that the checked-in files are up to date.
        #[arg(long)]
        check: bool,
    },
    /// Run the local demo on the example config repo.
    Demo {
        /// The config repository to read (default: examples/ of this workspace).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Leave kube-sim, the agent, the operator and the chart repository running (prints
        /// their PIDs, ports, the kubeconfig and how to stop them).
        #[arg(long)]
        keep: bool,
        /// Internal (used by `--keep`): serve this directory as the demo's Helm repository.
        #[arg(long, hide = true, requires = "serve_port")]
        serve_chart_repo: Option<PathBuf>,
        /// Internal: the loopback port of `--serve-chart-repo`.
        #[arg(long, hide = true)]
        serve_port: Option<u16>,
    },
    /// Fetch the test tools (helm 3, helm 4, kubectl 1.31) if needed and print their paths.
    Tools {
        /// Print `export KUBE_SIM_...=path` lines for a shell instead.
        #[arg(long)]
        print_env: bool,
    },
    /// Run a benchmark (`kube-sim`, `sync`, `operator`, `registry`).
    Bench {
        /// Which benchmark.
        name: String,
        /// Objects written.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Run the whole test suite (fetches the test tools first).
    Test {
        /// Extra arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Crds { check } => crds::run(&root, check),
        Task::Demo {
            repo,
            keep,
            serve_chart_repo,
            serve_port,
        } => {
            if let (Some(dir), Some(port)) = (serve_chart_repo, serve_port) {
                return demo_live::serve_chart_repo(&dir, port);
            }
            let repo = repo.unwrap_or_else(|| root.join("examples"));
            demo::run(&repo)?;
            demo_live::run(&root, &repo, keep)
        }
        Task::Tools { print_env } => tools::run(print_env),
        Task::Bench {
            name,
            count,
            concurrency,
        } => bench::run(&root, &name, count, concurrency),
        Task::Test { args } => {
            let tools = tools::ensure_tools()?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args(["test", "--workspace", "--locked"])
                .envs(tools.env())
                .args(&args)
                .status()
                .context("failed to run cargo test")?;
            if !status.success() {
                bail!("cargo test failed ({status})");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

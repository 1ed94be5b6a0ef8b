//! `kube-sim`: In-memory Kubernetes API server for tests, benchmarks and the local demo.
//!
//! This crate is a skeleton: it parses its command line so that `--help` and `--version` work
//! and the workspace layout is in place. The behaviour arrives with issue #3; until then
//! [`run`] reports that it is not built yet instead of pretending to work.

use clap::Parser;

/// Command-line arguments of `kube-sim`. Every flag can also be set from an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-sim",
    version,
    about = "In-memory Kubernetes API server for tests, benchmarks and the local demo"
)]
pub struct Args {}

/// Errors returned by [`run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is a skeleton; the named issue builds it.
    #[error("kube-sim is not built yet (see issue #{issue}); only --help and --version work")]
    NotBuiltYet {
        /// The issue that builds this component.
        issue: u32,
    },
}

/// Runs `kube-sim` with the given arguments.
///
/// # Errors
///
/// Always [`Error::NotBuiltYet`] for now.
pub fn run(_args: Args) -> Result<(), Error> {
    Err(Error::NotBuiltYet { issue: 3 })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Args::command().debug_assert();
    }
}

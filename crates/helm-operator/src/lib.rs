//! `helm-operator`: Reconciles HelmRelease and FluxHelmRelease resources into Helm releases.
//!
//! This crate is a skeleton: it parses its command line so that `--help` and `--version` work
//! and the workspace layout is in place. The behaviour arrives with issue #5; until then
//! [`run`] reports that it is not built yet instead of pretending to work.

pub mod annotate;
pub mod chart;
pub mod classify;
pub mod helm;
pub mod metrics;
pub mod status;
pub mod values;

use clap::Parser;

/// Command-line arguments of `helm-operator`. Every flag can also be set from an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "helm-operator",
    version,
    about = "Reconciles HelmRelease and FluxHelmRelease resources into Helm releases"
)]
pub struct Args {}

/// Errors returned by [`run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is a skeleton; the named issue builds it.
    #[error("helm-operator is not built yet (see issue #{issue}); only --help and --version work")]
    NotBuiltYet {
        /// The issue that builds this component.
        issue: u32,
    },
}

/// Runs `helm-operator` with the given arguments.
///
/// # Errors
///
/// Always [`Error::NotBuiltYet`] for now.
pub fn run(_args: Args) -> Result<(), Error> {
    Err(Error::NotBuiltYet { issue: 5 })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Args::command().debug_assert();
    }
}

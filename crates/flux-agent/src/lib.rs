//! `flux-agent`: GitOps agent: syncs a git config repo to the cluster and automates image updates.
//!
//! This crate is a skeleton: it parses its command line so that `--help` and `--version` work
//! and the workspace layout is in place. The behaviour arrives with issue #4; until then
//! [`run`] reports that it is not built yet instead of pretending to work.

use clap::Parser;

/// Command-line arguments of `flux-agent`. Every flag can also be set from an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flux-agent",
    version,
    about = "GitOps agent: syncs a git config repo to the cluster and automates image updates"
)]
pub struct Args {}

/// Errors returned by [`run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is a skeleton; the named issue builds it.
    #[error("flux-agent is not built yet (see issue #{issue}); only --help and --version work")]
    NotBuiltYet {
        /// The issue that builds this component.
        issue: u32,
    },
}

/// Runs `flux-agent` with the given arguments.
///
/// # Errors
///
/// Always [`Error::NotBuiltYet`] for now.
pub fn run(_args: Args) -> Result<(), Error> {
    Err(Error::NotBuiltYet { issue: 4 })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Args::command().debug_assert();
    }
}

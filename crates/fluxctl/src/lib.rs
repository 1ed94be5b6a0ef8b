//! `fluxctl`: Command line for the Flux agent's HTTP API.
//!
//! This crate is a skeleton: it parses its command line so that `--help` and `--version` work
//! and the workspace layout is in place. No issue builds it yet; until one does,
//! [`run`] reports that it is not built yet instead of pretending to work.

use clap::Parser;

/// Command-line arguments of `fluxctl`. Every flag can also be set from an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fluxctl",
    version,
    about = "Command line for the Flux agent's HTTP API"
)]
pub struct Args {}

/// Errors returned by [`run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is a skeleton.
    #[error("fluxctl is not built yet; only --help and --version work")]
    NotBuiltYet,
}

/// Runs `fluxctl` with the given arguments.
///
/// # Errors
///
/// Always [`Error::NotBuiltYet`] for now.
pub fn run(_args: Args) -> Result<(), Error> {
    Err(Error::NotBuiltYet)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Args::command().debug_assert();
    }
}

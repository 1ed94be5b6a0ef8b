//! Binary entry point: parses flags and hands over to [`fluxctl::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = fluxctl::Args::parse();
    match fluxctl::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

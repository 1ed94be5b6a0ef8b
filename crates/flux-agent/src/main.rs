//! Binary entry point: parses flags and hands over to [`flux_agent::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = flux_agent::Args::parse();
    match flux_agent::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

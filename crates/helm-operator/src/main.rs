//! Binary entry point: parses flags and hands over to [`helm_operator::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = helm_operator::Args::parse();
    match helm_operator::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

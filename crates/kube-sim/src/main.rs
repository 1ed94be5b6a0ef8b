//! Binary entry point: parses flags and hands over to [`kube_sim::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = kube_sim::Args::parse();
    match kube_sim::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `kube-sim` binary: serves the in-memory API server for the local demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// In-memory Kubernetes API server for tests, benchmarks and the local demo.
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version)]
struct Args {
    /// Address to listen on (loopback only in tests and the demo).
    #[arg(long, env = "KUBE_SIM_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig for the server to this path.
    #[arg(long, env = "KUBE_SIM_KUBECONFIG_OUT")]
    kubeconfig_out: Option<PathBuf>,
    /// Keep the store in this file across restarts.
    #[arg(long, env = "KUBE_SIM_STATE")]
    state: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate (written into the kubeconfig).
    #[arg(long, env = "KUBE_SIM_TLS")]
    tls: bool,
    /// Require this bearer token on every request (written into the kubeconfig).
    #[arg(long, env = "KUBE_SIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let tls = match args
        .tls
        .then(kube_sim::tls::TlsMaterial::self_signed)
        .transpose()
    {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let config = kube_sim::Config {
        listen: args.listen,
        state_file: args.state,
        tls,
        token: args.token,
        ..kube_sim::Config::default()
    };
    let url = config.url(args.listen);
    if let Some(path) = &args.kubeconfig_out
        && let Err(e) = std::fs::write(path, kube_sim::kubeconfig_with(&url, &config.access()))
    {
        eprintln!(
            "error: failed to write the kubeconfig to {}: {e}",
            path.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    eprintln!("kube-sim: serving {url} (Ctrl-C stops)");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match kube_sim::serve(config, shutdown).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Args::command().debug_assert();
    }
}

//! The agent started in-process against kube-sim, with its HTTP API and metrics, shared by the
//! agent's integration tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // Each test file uses a different part.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use clap::Parser;
use flux_agent::Args;
use kube_sim::KubeSim;
use test_support::free_port;

/// A running agent, stopped when dropped.
pub struct Agent {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    pub async fn start(sim: &KubeSim, work: &std::path::Path, extra: &[&str]) -> Self {
        let port = free_port();
        let mut argv = vec![
            "flux-agent".to_owned(),
            format!("--listen=127.0.0.1:{port}"),
            "--git-poll-interval=1s".to_owned(),
            "--sync-interval=1h".to_owned(),
            format!("--work-dir={}", work.display()),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let args = Args::parse_from(argv);
        let client = client(sim).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            flux_agent::run_until(args, client, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the agent did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            port,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (code, body)
    }

    pub fn public_key(&self) -> String {
        let (code, body) = self.http("GET", "/api/flux/v6/identity.pub", "");
        assert_eq!(code, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["key"].as_str().unwrap().to_owned()
    }

    /// Successful syncs so far, from `flux_daemon_sync_duration_seconds_count{success="true"}`.
    pub fn clean_syncs(&self) -> u64 {
        self.metric("flux_daemon_sync_duration_seconds_count{success=\"true\"}")
            .unwrap_or(0.0) as u64
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.http("GET", "/metrics", "");
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Asks for a sync now and waits until one more has finished cleanly.
    pub async fn sync_now(&self) {
        let before = self.clean_syncs();
        let (code, _) = self.http(
            "POST",
            "/api/flux/v11/notify",
            r#"{"Kind":"git","Source":{}}"#,
        );
        assert_eq!(code, 202);
        eventually("a clean sync after notify", || self.clean_syncs() > before).await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn client(sim: &KubeSim) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Waits up to 30 s for `condition`.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

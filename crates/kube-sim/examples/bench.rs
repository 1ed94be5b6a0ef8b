//! Load client for `cargo xtask bench kube-sim` (run by it against a kube-sim process):
//! N ConfigMaps written by server-side apply with C requests in flight from one kube-rs client,
//! then one list of them and one watch from resourceVersion 0 that reads every ADDED event.
//! Prints one `key=value` line per figure.
//!
//! Usage: `bench <server-url> [count] [concurrency]`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark client: fail loudly.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: bench <server-url> [count] [concurrency]");
    let count: usize = args.next().map_or(10_000, |c| c.parse().unwrap());
    let concurrency: usize = args.next().map_or(16, |c| c.parse().unwrap());
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let params = PatchParams::apply("bench");

    // Baseline in the same run: the same number of trivial requests (`GET /version`) with the
    // same concurrency, the ceiling of the HTTP stack and the client.
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|_| {
            let client = client.clone();
            async move { client.apiserver_version().await.map(|_| ()) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    #[allow(clippy::cast_precision_loss)]
    let baseline = count as f64 / started.elapsed().as_secs_f64();
    println!("baseline_version_requests_per_second={baseline:.0}");

    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let name = format!("bench-{i:05}");
                let object = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": {"app": "bench", "shard": (i % 16).to_string()}},
                    "data": {"index": i.to_string(), "payload": "x".repeat(64)},
                });
                api.patch(&name, &params, &Patch::Apply(&object)).await.map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_second = count as f64 / write_secs;
    println!("ssa_writes={count}");
    println!("ssa_concurrency={concurrency}");
    println!("ssa_seconds={write_secs:.3}");
    println!("ssa_writes_per_second={per_second:.0}");

    // The list as the server answers it (bytes over HTTP), then as a typed kube-rs list.
    let request = http::Request::get("/api/v1/namespaces/default/configmaps")
        .body(Vec::new())
        .unwrap();
    let started = Instant::now();
    let text = client.request_text(request).await.unwrap();
    println!(
        "list_raw_ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    println!("list_bytes={}", text.len());
    let started = Instant::now();
    let listed = api.list(&ListParams::default()).await.unwrap();
    println!(
        "list_typed_ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(listed.items.len(), count, "every ConfigMap is listed");

    let started = Instant::now();
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    while added < count {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Added(_)) => added += 1,
            Some(other) => panic!("unexpected watch event {other:?}"),
            None => panic!("the watch ended after {added} events"),
        }
    }
    println!(
        "watch_from_0_ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    println!("watch_events={added}");
}

//! WATCH streams (kube-sim-surface §1.12): newline-delimited JSON events over a chunked 200.
//!
//! - resourceVersion unset, `""` or `"0"`: synthetic ADDED for what matches now, then live events;
//! - `resourceVersion=N`: replay of the kept history after N, then live events; N older than the
//!   history gives HTTP 200 and one in-stream `ERROR` event with a 410 `Expired` Status (kube-rs
//!   relists only on that form);
//! - `sendInitialEvents=true` (needs `resourceVersionMatch=NotOlderThan` and bookmarks): synthetic
//!   ADDED, then a BOOKMARK annotated `k8s.io/initial-events-end: "true"`, then live events.
//!
//! Selector transitions turn a MODIFIED into ADDED or DELETED for the watcher, as client caches
//! expect. A stream ends after `timeoutSeconds` (30 minutes by default) or when its resource is
//! removed (CRD deleted). Periodic bookmarks are not sent.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{Shared, versioned};
use crate::status::ApiError;
use crate::store::{Event, EventType};

/// Default lifetime of a watch without `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The query parameters of a watch.
#[derive(Debug, Default)]
pub struct WatchParams {
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub allow_bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_events_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata})
}

/// Starts a watch and returns the streaming response.
///
/// # Errors
///
/// 422 when `sendInitialEvents` comes without its companions.
pub fn start(
    shared: &Arc<Shared>,
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    params: WatchParams,
) -> Result<Response, ApiError> {
    if params.send_initial_events
        && (params.resource_version_match.as_deref() != Some("NotOlderThan")
            || !params.allow_bookmarks)
    {
        return Err(ApiError::invalid_message(
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true",
        ));
    }
    let filter = Filter {
        namespace,
        labels: params.labels,
        fields: params.fields,
    };
    let mut first: Vec<Bytes> = Vec::new();
    let (receiver, mut disconnected, mut last_rv, expired) = {
        let store = shared.lock();
        let receiver = store.subscribe();
        let disconnected = store.disconnected();
        let current = store.resource_version();
        let from = params.resource_version.as_deref().unwrap_or("");
        let synthetic = params.send_initial_events || from.is_empty() || from == "0";
        let mut expired = false;
        if synthetic {
            for object in store.iter(&rt.key(), filter.namespace.as_deref()) {
                if filter.matches(object) {
                    first.push(line("ADDED", &versioned(object, &rt)));
                }
            }
            if params.send_initial_events {
                first.push(line("BOOKMARK", &bookmark(&rt, current, true)));
            }
        } else {
            let after: u64 = from
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {from:?}")))?;
            match store.history_since(&rt.key(), after) {
                Err(oldest) => {
                    first.push(line("ERROR", &ApiError::expired(after, oldest).to_status()));
                    expired = true;
                }
                Ok(events) => {
                    for event in events {
                        if let Some(text) = render(&event, &rt, &filter) {
                            first.push(text);
                        }
                    }
                }
            }
        }
        (receiver, disconnected, current, expired)
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1024);
    let timeout = params.timeout.unwrap_or(DEFAULT_TIMEOUT);
    tokio::spawn(async move {
        for text in first {
            if tx.send(Ok(text)).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let mut receiver = receiver;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                _ = disconnected.recv() => return,
                () = &mut deadline => return,
                () = tx.closed() => return,
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if event.key != rt.key() || event.rv <= last_rv {
                            continue;
                        }
                        if event.kind == EventType::Closed {
                            return;
                        }
                        last_rv = event.rv;
                        if let Some(text) = render(&event, &rt, &filter)
                            && tx.send(Ok(text)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(Ok(line("ERROR", &ApiError::expired(last_rv, last_rv + 1).to_status()))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The line a watcher sees for an event, with selector transitions applied; `None` when the
/// object neither matches now nor matched before.
fn render(event: &Event, rt: &ResourceType, filter: &Filter) -> Option<Bytes> {
    let now = filter.matches(&event.object);
    let before = event.old.as_deref().is_some_and(|old| filter.matches(old));
    let kind = match (event.kind, before, now) {
        (EventType::Added, _, true) => "ADDED",
        (EventType::Modified, true, true) => "MODIFIED",
        (EventType::Modified, false, true) => "ADDED",
        (EventType::Modified, true, false) => "DELETED",
        (EventType::Deleted, _, true) => "DELETED",
        (EventType::Deleted, true, false) => "DELETED",
        _ => return None,
    };
    Some(line(kind, &versioned(&event.object, rt)))
}

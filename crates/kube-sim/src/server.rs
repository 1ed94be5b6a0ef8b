//! The HTTP surface: parses Kubernetes API paths and query strings, dispatches to the store, and
//! answers in JSON (kube-sim-surface §1.1, §1.5).
//!
//! One handler serves everything because the URL grammar is the API's, not a router's: core
//! `/api/v1/...`, groups `/apis/<g>/<v>/...`, namespaced `.../namespaces/<ns>/<plural>/...`,
//! subresources. Unknown query parameters are ignored; protobuf, CBOR and Table output are not
//! offered (clients fall back to JSON).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::discovery;
use crate::openapi;
use crate::patching::PatchType;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::stats::RequestRecord;
use crate::status::ApiError;
use crate::store::{DeleteOptions, Store, WriteOptions};
use crate::watch::{self, WatchParams};

/// The Kubernetes version kube-sim reports; the machines' kubectl dispatcher picks its binary
/// by this minor version.
pub const GIT_VERSION: &str = "v1.33.0";

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// State shared by all requests.
pub struct Shared {
    store: Mutex<Store>,
    /// `host:port` the server listens on, for `/api`'s `serverAddressByClientCIDRs`.
    pub address: String,
    /// The bearer token every request must carry, when set.
    pub token: Option<String>,
}

impl Shared {
    /// Wraps a store.
    #[must_use]
    pub fn new(store: Store, address: String) -> Self {
        Self {
            store: Mutex::new(store),
            address,
            token: None,
        }
    }

    /// The store, locked. A poisoned lock (a panic in another request) is taken over: the
    /// store's invariants hold between statements that cannot panic.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A JSON response.
#[must_use]
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The object as served at `rt`'s version (custom resources are stored once for all versions).
#[must_use]
pub fn versioned(object: &Value, rt: &ResourceType) -> Value {
    let mut copy = object.clone();
    if copy.is_object() {
        copy["apiVersion"] = json!(rt.api_version());
        copy["kind"] = json!(rt.kind);
    }
    copy
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(high), Some(low)) => {
                        out.push(high * 16 + low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string; later values of a repeated key win.
fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A request for a resource: which type, namespace, object and subresource.
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// `/api/v1/...` or `/apis/<g>/<v>/...` after the group/version prefix.
fn resolve(store: &Store, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let find = |plural: &str| {
        store
            .registry
            .find(group, version, plural)
            .ok_or_else(ApiError::no_route)
    };
    let target = |rt, namespace: Option<&str>, tail: &[&str]| -> Result<Target, ApiError> {
        match tail {
            [] => Ok(Target {
                rt,
                namespace: namespace.map(str::to_owned),
                name: None,
                subresource: None,
            }),
            [name] => Ok(Target {
                rt,
                namespace: namespace.map(str::to_owned),
                name: Some((*name).to_owned()),
                subresource: None,
            }),
            [name, sub] => Ok(Target {
                rt,
                namespace: namespace.map(str::to_owned),
                name: Some((*name).to_owned()),
                subresource: Some((*sub).to_owned()),
            }),
            _ => Err(ApiError::no_route()),
        }
    };
    match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if store
                .registry
                .find(group, version, plural)
                .is_some_and(|t| t.namespaced) =>
        {
            target(find(plural)?, Some(namespace), tail)
        }
        [plural, tail @ ..] => {
            let rt = find(plural)?;
            target(rt, None, tail)
        }
        [] => Err(ApiError::no_route()),
    }
}

fn manager_from_user_agent(headers: &HeaderMap) -> Option<String> {
    let agent = headers.get(header::USER_AGENT)?.to_str().ok()?;
    let manager = agent.split('/').next()?.trim();
    (!manager.is_empty()).then(|| manager.chars().take(128).collect())
}

/// The single request handler.
pub async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(token) = &shared.token {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if presented != Some(format!("Bearer {token}").as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return ApiError::bad_request(format!("failed to read the request body: {e}"))
                .into_response();
        }
    };
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let query = parse_query(parts.uri.query());
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    tracing::debug!(method = %parts.method, uri = %parts.uri, content_type = ?parts.headers.get(header::CONTENT_TYPE), accept = %accept, "request");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Typed client-go clientsets (Helm's release storage, `kubectl create configmap`) send
    // protobuf bodies while accepting JSON answers: decode the kinds they send to JSON.
    let body = if content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        match crate::protobuf::decode(&body) {
            Ok(value) => Bytes::from(value.to_string()),
            Err(e @ crate::protobuf::ProtobufError::UnsupportedKind { .. }) => {
                return ApiError::unsupported_media_type(&format!("application/json ({e})"))
                    .into_response();
            }
            Err(e) => {
                return ApiError::bad_request(format!("failed to decode the protobuf body: {e}"))
                    .into_response();
            }
        }
    } else if content_type.starts_with("application/cbor") {
        return ApiError::unsupported_media_type(
            "application/json, application/vnd.kubernetes.protobuf",
        )
        .into_response();
    } else {
        body
    };
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["version"]) => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": GIT_VERSION, "gitCommit": "kube-sim", "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        (&Method::GET, ["healthz" | "livez" | "readyz"]) => (StatusCode::OK, "ok").into_response(),
        (&Method::GET, ["openapi", "v3"]) => {
            json_response(StatusCode::OK, &openapi::index(&shared.lock().registry))
        }
        (&Method::GET, ["openapi", "v3", rest @ ..]) => {
            match openapi::document(&shared.lock().registry, &rest.join("/")) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => ApiError::no_route().into_response(),
            }
        }
        (&Method::GET, ["api"]) => {
            if discovery::wants_aggregated(&accept) {
                aggregated_response(&discovery::aggregated(&shared.lock().registry, true))
            } else {
                json_response(StatusCode::OK, &discovery::core_versions(&shared.address))
            }
        }
        (&Method::GET, ["apis"]) => {
            let store = shared.lock();
            if discovery::wants_aggregated(&accept) {
                aggregated_response(&discovery::aggregated(&store.registry, false))
            } else {
                json_response(StatusCode::OK, &discovery::group_list(&store.registry))
            }
        }
        (&Method::GET, ["api", version]) => discovery_or_404(discovery::resource_list(
            &shared.lock().registry,
            "",
            version,
        )),
        (&Method::GET, ["apis", group]) => {
            discovery_or_404(discovery::group(&shared.lock().registry, group))
        }
        (&Method::GET, ["apis", group, version]) => discovery_or_404(discovery::resource_list(
            &shared.lock().registry,
            group,
            version,
        )),
        (&Method::GET, ["kube-sim", "stats"]) => {
            let stats = shared.lock().stats.clone();
            json_response(
                StatusCode::OK,
                &serde_json::to_value(stats).unwrap_or(Value::Null),
            )
        }
        (&Method::POST, ["kube-sim", "compact"]) => {
            shared.lock().compact();
            (StatusCode::OK, "compacted").into_response()
        }
        (_, ["api", version, rest @ ..]) => resource_request(
            &shared,
            &parts.method,
            &parts.headers,
            "",
            version,
            rest,
            &query,
            &body,
        ),
        (_, ["apis", group, version, rest @ ..]) => resource_request(
            &shared,
            &parts.method,
            &parts.headers,
            group,
            version,
            rest,
            &query,
            &body,
        ),
        _ => ApiError::no_route().into_response(),
    }
}

fn aggregated_response(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, discovery::AGGREGATED_CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn discovery_or_404(document: Option<Value>) -> Response {
    document.map_or_else(
        || ApiError::no_route().into_response(),
        |d| json_response(StatusCode::OK, &d),
    )
}

fn write_options(query: &HashMap<String, String>, headers: &HeaderMap) -> WriteOptions {
    WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        field_manager: query.get("fieldManager").cloned(),
        force: query.get("force").is_some_and(|v| v == "true"),
        internal: false,
        default_manager: manager_from_user_agent(headers),
        subresource: None,
    }
}

fn selectors(
    query: &HashMap<String, String>,
    rt: &ResourceType,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").map_or("", String::as_str),
        &rt.group,
        &rt.plural,
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn delete_options(
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<DeleteOptions, ApiError> {
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode DeleteOptions: {e}")))?
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Ok(DeleteOptions {
        propagation: text(&parsed["propagationPolicy"])
            .or_else(|| query.get("propagationPolicy").cloned())
            .or_else(|| match parsed["orphanDependents"].as_bool() {
                Some(true) => Some("Orphan".to_owned()),
                _ => None,
            }),
        uid: text(&parsed["preconditions"]["uid"]),
        resource_version: text(&parsed["preconditions"]["resourceVersion"]),
        dry_run: parsed["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"))
            || query.get("dryRun").is_some_and(|v| v == "All"),
    })
}

/// Verb names as the API server counts them.
fn verb_name(method: &Method, target: &Target, query: &HashMap<String, String>) -> &'static str {
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

#[allow(clippy::too_many_arguments)]
fn resource_request(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Response {
    let target = match resolve(&shared.lock(), group, version, rest) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let verb = verb_name(method, &target, query);
    let opts = write_options(query, headers);
    let resource = {
        let mut r = target.rt.plural.clone();
        if !target.rt.group.is_empty() {
            r = format!("{r}.{}", target.rt.group);
        }
        if let Some(sub) = &target.subresource {
            r = format!("{r}/{sub}");
        }
        r
    };
    let record = |code: u16| RequestRecord {
        verb: verb.to_owned(),
        resource: resource.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        code,
        manager: opts.manager().unwrap_or_default().to_owned(),
    };
    if verb == "watch" {
        let response = start_watch(shared, &target, query);
        shared
            .lock()
            .stats
            .record(record(response.status().as_u16()));
        return response;
    }
    let mut store = shared.lock();
    let before = store.resource_version();
    let result = if verb == "list" && target.subresource.is_none() {
        list(&store, &target, query).map(|text| (StatusCode::OK, Answer::Text(text)))
    } else {
        dispatch(
            &mut store, method, headers, &target, verb, query, body, &opts,
        )
        .map(|(code, value)| (code, Answer::from(value)))
    };
    if verb != "get" && verb != "list" {
        store.run_controllers();
    }
    let response = match result {
        Ok((code, Answer::Json(value))) => json_response(code, &value),
        Ok((code, Answer::Text(text))) => {
            (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => e.into_response(),
    };
    if store.resource_version() != before && !matches!(verb, "get" | "list") {
        store.stats.mutations += 1;
    }
    store.stats.record(record(response.status().as_u16()));
    response
}

fn start_watch(shared: &Arc<Shared>, target: &Target, query: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(query, &target.rt) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let params = WatchParams {
        resource_version: query.get("resourceVersion").cloned(),
        resource_version_match: query.get("resourceVersionMatch").cloned(),
        send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
        allow_bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true"),
        timeout: query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs),
        labels,
        fields,
    };
    let namespace = if target.rt.namespaced {
        target.namespace.clone()
    } else {
        None
    };
    watch::start(shared, Arc::clone(&target.rt), namespace, params)
        .unwrap_or_else(IntoResponse::into_response)
}

/// LIST, answered with text serialized straight from the store.
fn list(
    store: &Store,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let rt = &target.rt;
    let namespace = if rt.namespaced {
        target.namespace.clone()
    } else {
        None
    };

    let (labels, fields) = selectors(query, rt)?;
    if let Some(wanted) = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        let wanted: u64 = wanted
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {wanted:?}")))?;
        let current = store.resource_version();
        let exact = query
            .get("resourceVersionMatch")
            .is_some_and(|m| m == "Exact");
        // Only the latest state is kept: an exact read of an older version is expired.
        if exact && wanted != current || wanted < store.compacted() {
            return Err(ApiError::expired(wanted, store.compacted().max(current)));
        }
    }
    let limit = query.get("limit").and_then(|l| l.parse().ok());
    let list = store.list(
        rt,
        namespace.as_deref(),
        &labels,
        &fields,
        limit,
        query.get("continue").map(String::as_str),
    )?;
    Ok(list)
}

/// A successful answer: a JSON value, or JSON text already serialized (lists).
enum Answer {
    Json(Value),
    Text(String),
}

impl From<Value> for Answer {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    store: &mut Store,
    method: &Method,
    headers: &HeaderMap,
    target: &Target,
    verb: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
    opts: &WriteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let rt = &target.rt;
    let namespace = if rt.namespaced {
        target.namespace.clone()
    } else {
        None
    };
    let ns = namespace.as_deref().unwrap_or("");
    let subresource = target.subresource.as_deref();
    if let Some(sub) = subresource
        && !(sub == "status" && rt.status
            || sub == "scale" && rt.scale
            || sub == "finalize" && rt.plural == "namespaces")
    {
        return Err(ApiError::no_route());
    }
    let parse = || crate::patching::parse_body(body, false);
    match (verb, target.name.as_deref()) {
        ("get", Some(name)) => {
            let object = store.get(rt, ns, name)?;
            if subresource == Some("scale") {
                return Ok((StatusCode::OK, scale_of(&object)));
            }
            Ok((StatusCode::OK, versioned(&object, rt)))
        }
        ("create", None) => Ok((
            StatusCode::CREATED,
            store.create(rt, namespace.as_deref(), parse()?, opts)?,
        )),
        ("update", Some(name)) => {
            if subresource == Some("scale") {
                let scale = parse()?;
                return update_scale(store, rt, ns, name, &scale, opts);
            }
            let sub = if subresource == Some("finalize") {
                None
            } else {
                subresource
            };
            Ok((
                StatusCode::OK,
                store.update(rt, ns, name, sub, parse()?, opts)?,
            ))
        }
        ("patch", Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let patch_type = PatchType::from_content_type(content_type)?;
            let (object, created) =
                store.patch(rt, ns, name, subresource, patch_type, body, opts)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((code, object))
        }
        ("delete", Some(name)) => Ok((
            StatusCode::OK,
            store.delete(rt, ns, name, &delete_options(query, body)?)?,
        )),
        ("deletecollection", None) => {
            if rt.group.is_empty() && rt.plural == "namespaces" {
                return Err(ApiError::method_not_allowed(
                    "deletecollection",
                    "namespaces",
                ));
            }
            let (labels, fields) = selectors(query, rt)?;
            Ok((
                StatusCode::OK,
                store.delete_collection(
                    rt,
                    namespace.as_deref(),
                    &labels,
                    &fields,
                    &delete_options(query, body)?,
                )?,
            ))
        }
        _ => Err(ApiError::method_not_allowed(method.as_str(), &rt.plural)),
    }
}

/// `autoscaling/v1 Scale` of a scalable object.
fn scale_of(object: &Value) -> Value {
    let labels: Vec<String> = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"], "resourceVersion": object["metadata"]["resourceVersion"],
            "creationTimestamp": object["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": labels.join(",")},
    })
}

fn update_scale(
    store: &mut Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    scale: &Value,
    opts: &WriteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let old = store.get(rt, ns, name)?;
    let mut new = (*old).clone();
    new["spec"]["replicas"] = scale["spec"]["replicas"].clone();
    let updated = store.write_new_version(rt, ns, old, new, None, opts)?;
    Ok((StatusCode::OK, scale_of(&updated)))
}

/// The axum application.
pub fn app(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = parse_query(Some(
            "labelSelector=owner%3Dhelm%2Cname%3Drel&fieldSelector=metadata.name%3Dx&watch=1",
        ));
        assert_eq!(q["labelSelector"], "owner=helm,name=rel");
        assert_eq!(q["fieldSelector"], "metadata.name=x");
        assert_eq!(percent_decode("a+b%20c%"), "a b c%");
    }
}

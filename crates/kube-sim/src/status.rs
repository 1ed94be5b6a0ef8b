//! Kubernetes `Status` errors: every failure leaves the server as a `Status` object with the
//! `reason` and `code` a real API server would use (kube-sim-surface §1.15), because Go clients
//! sort errors by `reason` and kube-rs exposes both.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One entry of `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldManagerConflict`, ...
    pub reason: String,
    /// Human-readable text.
    pub message: String,
    /// The field path (`metadata.name`).
    pub field: String,
}

/// An API error, rendered as a `Status` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: &'static str,
    /// Human-readable text, in the API server's wording.
    pub message: String,
    /// `details.name`, `details.group` and `details.kind`.
    pub details: Option<Box<Details>>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
}

/// The object an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Details {
    /// `details.name`.
    pub name: String,
    /// `details.group`.
    pub group: String,
    /// `details.kind`: the plural for NotFound/AlreadyExists/Conflict, the Kind for Invalid.
    pub kind: String,
}

/// `<plural>.<group>` or `<plural>` for the core group, as messages spell a resource.
#[must_use]
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.details = Some(Box::new(Details {
            name: name.to_owned(),
            group: group.to_owned(),
            kind: kind.to_owned(),
        }));
        self
    }

    /// 404 `NotFound` for an object: `configmaps "x" not found`.
    #[must_use]
    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(plural, group)),
        )
        .with_details(name, group, plural)
    }

    /// 404 `NotFound` for a path nothing serves.
    #[must_use]
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for a create in a namespace that does not exist.
    #[must_use]
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::not_found("namespaces", "", namespace)
    }

    /// 409 `AlreadyExists`.
    #[must_use]
    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(plural, group)),
        )
        .with_details(name, group, plural)
    }

    /// 409 `Conflict` for a stale resourceVersion or uid.
    #[must_use]
    pub fn conflict(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(plural, group)
            ),
        )
        .with_details(name, group, plural)
    }

    /// 409 `Conflict` with a free message and causes (server-side apply field conflicts).
    #[must_use]
    pub fn conflict_with(
        plural: &str,
        group: &str,
        name: &str,
        message: String,
        causes: Vec<Cause>,
    ) -> Self {
        let mut error = Self::new(409, "Conflict", message).with_details(name, group, plural);
        error.causes = causes;
        error
    }

    /// 422 `Invalid`: `Deployment.apps "x" is invalid: <field>: <problem>`.
    #[must_use]
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let kind_group = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let detail: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let message = format!("{kind_group} \"{name}\" is invalid: {}", detail.join(", "));
        let mut error = Self::new(422, "Invalid", message).with_details(name, group, kind);
        error.causes = causes;
        error
    }

    /// 422 `Invalid` with a plain message (patch application failures).
    #[must_use]
    pub fn invalid_message(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 400 `BadRequest`.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 `Forbidden` for a create in a terminating namespace.
    #[must_use]
    pub fn namespace_terminating(namespace: &str) -> Self {
        let mut error = Self::new(
            403,
            "Forbidden",
            format!("unable to create new content in namespace {namespace} because it is being terminated"),
        )
        .with_details(namespace, "", "namespaces");
        error.causes.push(Cause {
            reason: "NamespaceTerminating".to_owned(),
            message: format!("namespace {namespace} is being terminated"),
            field: "metadata.namespace".to_owned(),
        });
        error
    }

    /// 401 `Unauthorized`: no or a wrong bearer token.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 405 `MethodNotAllowed`.
    #[must_use]
    pub fn method_not_allowed(verb: &str, resource: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {resource})"
            ),
        )
    }

    /// 410 `Expired`: a resourceVersion older than the kept history.
    #[must_use]
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 415 `UnsupportedMediaType`.
    #[must_use]
    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    /// 500 `InternalError`.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    #[must_use]
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        if let Some(d) = &self.details {
            details.insert("name".into(), json!(d.name));
            details.insert("group".into(), json!(d.group));
            details.insert("kind".into(), json!(d.kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        crate::server::json_response(code, &self.to_status())
    }
}

/// A `Status` of success, as returned by a delete that removed the object at once.
#[must_use]
pub fn success(name: &str, group: &str, plural: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": plural, "uid": uid},
    })
}

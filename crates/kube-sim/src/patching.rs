//! PATCH: the four patch types (kube-sim-surface §1.9) on top of the store's write pipeline.
//!
//! JSON Patch, merge patch and strategic merge patch compute a new object from the stored one
//! and go through the same path as a PUT (optimistic locking on a resourceVersion the patch
//! sets). Server-side apply merges the applied configuration with field ownership
//! (`managedFields`), answers 409 on conflicts unless forced, and creates missing objects.

use std::sync::Arc;

use kube_merge::apply::{ApplyError, ApplyRequest, server_side_apply};
use kube_merge::json_patch::{self, JsonPatchError};
use kube_merge::merge_patch;
use kube_merge::strategic::{self, StrategicError};
use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::status::{ApiError, Cause};
use crate::store::{Store, WriteOptions, meta_str};
use crate::time;

/// The media types a PATCH may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

const ACCEPTED_BUILTIN: &str = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json";
const ACCEPTED_CUSTOM: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

impl PatchType {
    /// The patch type of a `Content-Type` header value.
    ///
    /// # Errors
    ///
    /// 415 for anything else.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(ACCEPTED_BUILTIN)),
        }
    }
}

/// Parses a request body: JSON, or YAML for apply patches.
///
/// # Errors
///
/// 400 when it parses as neither.
pub fn parse_body(body: &[u8], yaml_allowed: bool) -> Result<Value, ApiError> {
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&body[..0], |i| &body[i..]);
    if trimmed.first() == Some(&b'{') || trimmed.first() == Some(&b'[') || !yaml_allowed {
        return serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("failed to decode the request body as JSON: {e}"))
        });
    }
    serde_yaml::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("failed to decode the request body as YAML: {e}"))
    })
}

fn patch_failed(reason: String) -> ApiError {
    let mut error =
        ApiError::invalid_message("the server rejected our request due to an error in our request");
    error.causes.push(Cause {
        reason: "FieldValueInvalid".into(),
        message: reason,
        field: "patch".into(),
    });
    error
}

impl Store {
    /// PATCH of the main resource or a subresource. Returns the object and whether an apply
    /// created it (201).
    ///
    /// # Errors
    ///
    /// 404 when absent (except apply), 415 for strategic merge patch on a custom resource,
    /// 400 for a malformed patch, 422 when a patch cannot be applied or an apply has no field
    /// manager, 409 for conflicts.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<(Value, bool), ApiError> {
        if patch_type == PatchType::Apply {
            return self.apply(rt, namespace, name, subresource, body, opts);
        }
        if patch_type == PatchType::Strategic && !rt.builtin {
            return Err(ApiError::unsupported_media_type(ACCEPTED_CUSTOM));
        }
        let patch = parse_body(body, false)?;
        let old = self.get(rt, namespace, name)?;
        let mut new = (*old).clone();
        match patch_type {
            PatchType::Json => json_patch::apply(&mut new, &patch).map_err(|e| match e {
                JsonPatchError::Malformed { .. } => ApiError::bad_request(e.to_string()),
                JsonPatchError::Failed { .. } => patch_failed(e.to_string()),
            })?,
            PatchType::Merge => merge_patch::apply(&mut new, &patch),
            PatchType::Strategic => {
                new = strategic::apply(&old, &patch, rt.rules.as_ref()).map_err(|e| match e {
                    StrategicError::Malformed { .. } => ApiError::bad_request(e.to_string()),
                    StrategicError::Invalid { .. } => patch_failed(e.to_string()),
                })?;
            }
            PatchType::Apply => {}
        }
        check_identity(rt, &old, &new, name)?;
        let result = self.write_new_version(rt, namespace, old, new, subresource, opts)?;
        Ok((result, false))
    }

    fn apply(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let Some(manager) = opts.field_manager.as_deref().filter(|m| !m.is_empty()) else {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                name,
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: is required for apply patch".into(),
                    field: "fieldManager".into(),
                }],
            ));
        };
        let mut applied = parse_body(body, true)?;
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        let api_version = applied["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kind = applied["kind"].as_str().unwrap_or_default().to_owned();
        if api_version != rt.api_version() || kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({}), or kind {kind:?} is not {:?}",
                rt.api_version(),
                rt.kind
            )));
        }
        let applied_name = meta_str(&applied, "name").to_owned();
        if !applied_name.is_empty() && applied_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({applied_name}) does not match the name on the URL ({name})"
            )));
        }
        applied["metadata"]["name"] = json!(name);
        if rt.namespaced {
            applied["metadata"]["namespace"] = json!(namespace);
        }
        if let Some(metadata) = applied["metadata"].as_object_mut() {
            for field in [
                "uid",
                "creationTimestamp",
                "generation",
                "managedFields",
                "deletionTimestamp",
            ] {
                metadata.remove(field);
            }
        }
        match subresource {
            Some("status") => {
                let status = applied.get("status").cloned().unwrap_or(Value::Null);
                applied = json!({"apiVersion": api_version, "kind": kind, "metadata": applied["metadata"].clone(), "status": status});
            }
            _ if rt.status => {
                if let Some(map) = applied.as_object_mut() {
                    map.remove("status");
                }
            }
            _ => {}
        }
        let live = self.lookup(&rt.key(), if rt.namespaced { namespace } else { "" }, name);
        if live.is_none() {
            if rt.namespaced
                && let Err(e) = self.check_namespace_for_create(rt, namespace)
            {
                return Err(e);
            }
            crate::defaults::validate_name(&rt.kind, &rt.group, name)?;
        }
        let wanted_rv = meta_str(&applied, "resourceVersion").to_owned();
        if let Some(live) = &live
            && !wanted_rv.is_empty()
            && wanted_rv != meta_str(live, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt.plural, &rt.group, name));
        }
        if let Some(metadata) = applied["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        let now = time::now_rfc3339();
        let request = ApplyRequest {
            live: live.as_deref(),
            applied: &applied,
            manager,
            force: opts.force,
            api_version: &rt.api_version(),
            subresource,
            now: &now,
            rules: rt.rules.as_ref(),
        };
        let merged = server_side_apply(&request).map_err(|e| match &e {
            ApplyError::Conflicts(conflicts) => {
                let causes = conflicts
                    .iter()
                    .map(|c| Cause {
                        reason: "FieldManagerConflict".into(),
                        message: format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                        field: c.field.clone(),
                    })
                    .collect();
                ApiError::conflict_with(&rt.plural, &rt.group, name, e.message(), causes)
            }
            ApplyError::Invalid { reason } => ApiError::bad_request(reason.clone()),
        })?;
        let recorded = WriteOptions {
            field_manager: None,
            default_manager: None,
            ..opts.clone()
        };
        match live {
            None => {
                let object = self.commit(rt, namespace, None, merged, &recorded)?;
                Ok((object, true))
            }
            Some(live) => {
                let object = self.write_new_version(
                    rt,
                    namespace,
                    Arc::clone(&live),
                    merged,
                    subresource,
                    &recorded,
                )?;
                Ok((object, false))
            }
        }
    }
}

/// A patch may not change the name, namespace, uid, kind or apiVersion, and a resourceVersion
/// it sets must be the stored one (optimistic locking).
fn check_identity(rt: &ResourceType, old: &Value, new: &Value, name: &str) -> Result<(), ApiError> {
    for field in ["name", "namespace", "uid"] {
        if meta_str(new, field) != meta_str(old, field) {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                name,
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: field is immutable".into(),
                    field: format!("metadata.{field}"),
                }],
            ));
        }
    }
    if new["kind"] != old["kind"] || new["apiVersion"] != old["apiVersion"] {
        return Err(ApiError::bad_request(
            "a patch may not change apiVersion or kind",
        ));
    }
    let rv = meta_str(new, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(old, "resourceVersion") {
        return Err(ApiError::conflict(&rt.plural, &rt.group, name));
    }
    Ok(())
}

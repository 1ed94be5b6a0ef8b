//! The CustomResourceDefinitions generated from the Rust types, as checked in under
//! `manifests/crds/`.
//!
//! `cargo xtask crds` writes [`rendered`] to disk; a test fails when the checked-in files differ
//! from what the types generate, so the CRDs users install never drift from the code.

use kube::CustomResourceExt;

use crate::{FluxHelmRelease, HelmRelease};

/// Header written at the top of every generated file.
const HEADER: &str = "# Generated from crates/model by `cargo xtask crds`. Do not edit by hand.\n";

/// One generated CRD file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdFile {
    /// File name under `manifests/crds/` (`<plural>.<group>.yaml`).
    pub file_name: String,
    /// The YAML text, with a header comment.
    pub yaml: String,
}

/// Errors from rendering a CRD.
#[derive(Debug, thiserror::Error)]
#[error("failed to render the CRD {name} as YAML")]
pub struct RenderError {
    /// The CRD name.
    pub name: String,
    /// The serializer's error.
    #[source]
    pub source: serde_yaml::Error,
}

/// The CRDs of `HelmRelease` and `FluxHelmRelease`, rendered as YAML.
///
/// # Errors
///
/// [`RenderError`] if a CRD does not serialize (not expected for generated types).
pub fn rendered() -> Result<Vec<CrdFile>, RenderError> {
    [HelmRelease::crd(), FluxHelmRelease::crd()]
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let body = serde_yaml::to_string(&crd).map_err(|source| RenderError {
                name: name.clone(),
                source,
            })?;
            Ok(CrdFile {
                file_name: format!("{name}.yaml"),
                yaml: format!("{HEADER}{body}"),
            })
        })
        .collect()
}

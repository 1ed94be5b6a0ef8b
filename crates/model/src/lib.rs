//! The shared language of the Flux agent and the Helm operator.
//!
//! Pure data and rules, no network and no cluster client:
//!
//! - [`helmrelease`]: the `HelmRelease` custom resource (`helm.fluxcd.io/v1`) and its defaults.
//! - [`fluxhelmrelease`]: the `FluxHelmRelease` predecessor
//!   (`helm.integrations.flux.weave.works/v1alpha2`).
//! - [`release`]: the [`ReleaseDescription`] both turn into, and release naming.
//! - [`conditions`]: phases, condition types and statuses of a HelmRelease.
//! - [`annotations`]: Flux policy annotations under both prefixes.
//! - [`policy`]: tag filters and the choice of the newest allowed tag.
//! - [`image`]: container image references that print back as written.
//! - [`values_images`]: where images live in HelmRelease values.
//! - [`crds`]: the CRD YAML generated from these types.

pub mod annotations;
pub mod conditions;
pub mod crds;
pub mod flags;
pub mod fluxhelmrelease;
pub mod helmrelease;
pub mod image;
pub mod policy;
pub mod release;
pub mod values_images;

pub use annotations::{Ignore, Policies, PolicyKey, Prefix};
pub use conditions::{ConditionStatus, ConditionType, Phase};
pub use fluxhelmrelease::{
    ChartRepoSettings, FluxHelmRelease, FluxHelmReleaseSpec, FluxHelmReleaseStatus,
};
pub use helmrelease::{HelmRelease, HelmReleaseSpec, HelmReleaseStatus, HelmVersion, Values};
pub use image::{ImageRef, ImageRefError};
pub use policy::{FilterKind, PolicyError, TagCandidate, TagFilter};
pub use release::{ChartSource, OperatorDefaults, ReleaseDescription, ResourceId, SpecError};
pub use values_images::{CHART_IMAGE, FoundImages, ValuePath, ValuesImage, find_images};

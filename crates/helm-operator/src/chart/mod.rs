//! Chart sources: where the chart of a release comes from and at which revision.
//!
//! - [`git`]: charts in git repositories (`spec.chart.git` / `ref` / `path`, and the
//!   FluxHelmRelease `chartGitPath` under `--git-charts-path` of `--git-url`), one mirror per URL
//!   shared by every release that uses it.
//! - [`repo`]: charts from Helm repositories (`spec.chart.repository` / `name` / `version`), index
//!   and tarballs cached on disk under a size cap.
//! - [`oci`]: charts from OCI registries (`oci://` repositories).
//! - [`cache`]: the on-disk cache with its size cap and eviction, shared by `repo` and `oci`.

pub mod cache;
pub mod credentials;
pub mod git;
pub mod oci;
pub mod repo;

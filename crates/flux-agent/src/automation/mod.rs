//! Image automation: the "registry -> git" direction. Finds automated workloads and
//! HelmReleases in the repository, picks the newest tag their policy allows from what the
//! registry scan knows, edits the YAML files byte-exactly and commits with `[ci skip]`.

pub mod edit;
pub mod plan;
pub mod run;
pub mod service;
pub mod status;
pub mod workloads;

//! Image automation: the "registry -> git" direction. Finds automated workloads and
//! HelmReleases in the repository, picks the newest tag their policy allows from what the
//! registry scan knows, edits the YAML files byte-exactly and commits with `[ci skip]`.
//!
//! [`workloads`] reads the workloads and their policies from the manifests; [`plan`] decides the
//! updates (pure); [`edit`] rewrites one scalar per change in a file; [`run`] does a whole run
//! (fetch, plan, edit or run `.flux.yaml` updaters, commit, push, retry when the remote moved);
//! [`service`] starts the scanner and the run loop in the agent; [`status`] is what the API
//! shows of workloads.

pub mod edit;
pub mod plan;
pub mod run;
pub mod service;
pub mod status;
pub mod workloads;

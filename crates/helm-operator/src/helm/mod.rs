//! The Helm driver: the [`HelmDriver`] trait over the `helm` CLI (v3 and v4), and the reading of
//! release records from Helm's storage Secrets.

//! Registry scanning: tag lists, manifests and created times of the image repositories the
//! automated workloads use, kept in a persistent cache (work in progress).

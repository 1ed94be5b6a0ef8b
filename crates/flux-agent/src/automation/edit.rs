//! Byte-exact edits of image references in YAML manifests (work in progress).

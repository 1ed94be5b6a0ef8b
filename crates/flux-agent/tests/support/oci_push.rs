//! Pushes tiny OCI images (one fake layer, a config with a creation time and labels) and image
//! indexes to a registry over plain HTTP with the Distribution API (monolithic blob uploads:
//! `POST` + `PUT`, then `PUT` of the manifest), optionally with Basic auth. Shared by
//! `tests/registry.rs` and `examples/registry_scan.rs` (included with `#[path]`).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use sha2::Digest as _;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What goes into one image's config.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// `created` of the config (RFC 3339), if any.
    pub created: Option<String>,
    /// `config.Labels`.
    pub labels: Vec<(String, String)>,
    /// `os` of the config.
    pub os: String,
    /// `architecture` of the config.
    pub arch: String,
    /// Anything; makes the content (and so the digests) unique.
    pub marker: String,
    /// The layer's content; `None` = derived from the marker (a layer per image).
    pub layer: Option<String>,
}

impl ImageSpec {
    /// A linux/amd64 image created at `created`, unique by `marker`.
    pub fn new(created: &str, marker: &str) -> Self {
        Self {
            created: Some(created.to_owned()),
            labels: Vec::new(),
            os: "linux".to_owned(),
            arch: "amd64".to_owned(),
            marker: marker.to_owned(),
            layer: None,
        }
    }

    /// Uses `content` as the layer (images sharing it upload it once per repository).
    pub fn layer(mut self, content: &str) -> Self {
        self.layer = Some(content.to_owned());
        self
    }

    /// The same for another platform.
    pub fn platform(mut self, os: &str, arch: &str) -> Self {
        self.os = os.to_owned();
        self.arch = arch.to_owned();
        self
    }

    /// Adds a config label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A client pushing to `http://<host>`.
#[derive(Clone)]
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    login: Option<(String, String)>,
    /// `(repo, digest)` of blobs already uploaded by this pusher (not uploaded again).
    uploaded: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

impl Pusher {
    /// Pushes to `http://host`, with a Basic login when given.
    pub fn new(host: &str, login: Option<(&str, &str)>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{host}"),
            login: login.map(|(u, p)| (u.to_owned(), p.to_owned())),
            uploaded: std::sync::Arc::default(),
        }
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.login {
            Some((u, p)) => request.basic_auth(u, Some(p)),
            None => request,
        }
    }

    /// Uploads a blob (monolithic); returns its digest.
    pub async fn blob(&self, repo: &str, bytes: Vec<u8>) -> String {
        let digest = digest(&bytes);
        let key = (repo.to_owned(), digest.clone());
        if self.uploaded.lock().unwrap().contains(&key) {
            return digest;
        }
        let response = self
            .auth(
                self.http
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base)),
            )
            .send()
            .await
            .expect("blob upload start");
        assert_eq!(response.status().as_u16(), 202, "POST blob upload");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .auth(
                self.http
                    .put(format!("{location}{separator}digest={digest}"))
                    .header("content-type", "application/octet-stream")
                    .body(bytes),
            )
            .send()
            .await
            .expect("blob upload");
        assert_eq!(response.status().as_u16(), 201, "PUT blob");
        self.uploaded.lock().unwrap().insert(key);
        digest
    }

    /// Puts a manifest under `reference` (a tag or a digest); returns its digest.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> String {
        let digest = digest(&body);
        let response = self
            .auth(
                self.http
                    .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
                    .header("content-type", media_type)
                    .body(body),
            )
            .send()
            .await
            .expect("manifest upload");
        assert_eq!(
            response.status().as_u16(),
            201,
            "PUT manifest {repo}:{reference}"
        );
        digest
    }

    /// Pushes the layer and config of `spec` and returns the manifest bytes (not yet put).
    pub async fn image_manifest(&self, repo: &str, spec: &ImageSpec) -> Vec<u8> {
        let layer = spec
            .layer
            .clone()
            .unwrap_or_else(|| format!("layer of {repo} {}", spec.marker))
            .into_bytes();
        let layer_size = layer.len();
        let layer_digest = self.blob(repo, layer).await;
        let labels: serde_json::Map<String, serde_json::Value> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut config = serde_json::json!({
            "architecture": spec.arch,
            "os": spec.os,
            "config": {"Labels": labels, "Cmd": ["/hello", spec.marker]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        if let Some(created) = &spec.created {
            config["created"] = serde_json::Value::String(created.clone());
        }
        let config = serde_json::to_vec(&config).unwrap();
        let config_size = config.len();
        let config_digest = self.blob(repo, config).await;
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
        }))
        .unwrap()
    }

    /// Pushes a single-platform image as `repo:tag`; returns the manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> String {
        let manifest = self.image_manifest(repo, spec).await;
        self.manifest(repo, tag, OCI_MANIFEST, manifest).await
    }

    /// Pushes one image per spec and an OCI index of them as `repo:tag`; returns the index
    /// digest and the image manifest digests.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        specs: &[ImageSpec],
    ) -> (String, Vec<String>) {
        let mut entries = Vec::new();
        let mut digests = Vec::new();
        for spec in specs {
            let manifest = self.image_manifest(repo, spec).await;
            let size = manifest.len();
            let d = digest(&manifest);
            self.manifest(repo, &d, OCI_MANIFEST, manifest).await;
            entries.push(serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": d, "size": size,
                "platform": {"os": spec.os, "architecture": spec.arch},
            }));
            digests.push(d);
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
        }))
        .unwrap();
        (self.manifest(repo, tag, OCI_INDEX, index).await, digests)
    }
}

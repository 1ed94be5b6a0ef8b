//! The deploy key: an ed25519 SSH key kept in the Secret `--k8s-secret-name` (default
//! `flux-git-deploy`, data key `identity`) so that it survives restarts (Flux v1
//! `pkg/cluster/kubernetes/sshkeyring.go`, `pkg/ssh/keygen.go`).
//!
//! On start the agent reads the key from the Secret; when the Secret or the key is absent it
//! generates one and stores it, creating the Secret if needed. The private key is written only
//! to a file of mode 0600 for ssh and never logged; the public key and its SHA256 fingerprint are.

use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

/// Errors reading, generating or storing the deploy key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The Secret could not be read or written.
    #[error("failed to {action} the Secret {namespace}/{name}")]
    Secret {
        /// What was being done (`read`, `create`, `update`).
        action: &'static str,
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The stored key is not an OpenSSH private key.
    #[error("failed to parse the deploy key in {namespace}/{name} (data key {key:?})")]
    Parse {
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Data key.
        key: String,
        /// The parse error.
        #[source]
        source: Box<ssh_key::Error>,
    },
    /// Generating or encoding the key failed.
    #[error("failed to generate the deploy key")]
    Generate(#[source] Box<ssh_key::Error>),
    /// Writing the key file failed.
    #[error("failed to write the deploy key to {path}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the deploy key lives.
#[derive(Clone, Debug)]
pub struct KeySecret {
    /// Namespace of the Secret: the agent's own.
    pub namespace: String,
    /// `--k8s-secret-name`.
    pub name: String,
    /// `--k8s-secret-data-key`.
    pub key: String,
}

/// The agent's SSH identity.
pub struct Identity {
    private: PrivateKey,
    public: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA... flux-agent`).
    #[must_use]
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The SHA256 fingerprint (`SHA256:...`), as `ssh-keygen -l` prints it.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.private.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Writes the private key to `path` with mode 0600, for ssh's `-i`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_private_key(&self, path: &Path) -> Result<(), IdentityError> {
        let write_error = |source| IdentityError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = self
            .private
            .to_openssh(LineEnding::LF)
            .map_err(|e| IdentityError::Generate(Box::new(e)))?;
        let _ = std::fs::remove_file(path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(write_error)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(write_error)
    }

    fn from_private(private: PrivateKey) -> Result<Self, IdentityError> {
        let public = private
            .public_key()
            .to_openssh()
            .map_err(|e| IdentityError::Generate(Box::new(e)))?;
        Ok(Self { private, public })
    }
}

/// Reads the deploy key from its Secret, or generates one and stores it there.
///
/// # Errors
///
/// When the Secret cannot be read or written, or holds something that is not a key.
pub async fn load_or_generate(
    client: &kube::Client,
    secret: &KeySecret,
) -> Result<Identity, IdentityError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
    let fail = |action, source| IdentityError::Secret {
        action,
        namespace: secret.namespace.clone(),
        name: secret.name.clone(),
        source: Box::new(source),
    };
    let existing = api
        .get_opt(&secret.name)
        .await
        .map_err(|e| fail("read", e))?;
    if let Some(bytes) = existing
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(&secret.key))
    {
        let private =
            PrivateKey::from_openssh(&bytes.0).map_err(|source| IdentityError::Parse {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                key: secret.key.clone(),
                source: Box::new(source),
            })?;
        let identity = Identity::from_private(private)?;
        tracing::info!(public_key = identity.public_key(), fingerprint = %identity.fingerprint(), "deploy key read from its Secret");
        return Ok(identity);
    }
    let mut private = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| IdentityError::Generate(Box::new(e)))?;
    private.set_comment("flux-agent");
    let text = private
        .to_openssh(LineEnding::LF)
        .map_err(|e| IdentityError::Generate(Box::new(e)))?;
    let data = ByteString(text.as_bytes().to_vec());
    match existing {
        Some(_) => {
            let patch = serde_json::json!({"data": {secret.key.clone(): data}});
            api.patch(&secret.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| fail("update", e))?;
        }
        None => {
            let object = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(secret.name.clone()),
                    namespace: Some(secret.namespace.clone()),
                    ..Default::default()
                },
                data: Some([(secret.key.clone(), data)].into()),
                type_: Some("Opaque".to_owned()),
                ..Default::default()
            };
            api.create(&PostParams::default(), &object)
                .await
                .map_err(|e| fail("create", e))?;
        }
    }
    let identity = Identity::from_private(private)?;
    tracing::info!(public_key = identity.public_key(), fingerprint = %identity.fingerprint(), "generated a deploy key and stored it in its Secret");
    Ok(identity)
}

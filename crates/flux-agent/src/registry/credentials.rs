//! Registry logins from Kubernetes pull secrets (`kubernetes.io/dockerconfigjson`,
//! `kubernetes.io/dockercfg`) and Docker `config.json` files, as Flux v1's
//! `pkg/registry/credentials.go` read them: per host, `auth` (base64 of `user:password`) or
//! `username` + `password`. Hosts are normalised (scheme and path dropped, Docker Hub's
//! spellings folded into `docker.io`, as `model::image` spells it), so a key
//! `https://index.docker.io/v1/` serves `docker.io/library/nginx`.
//!
//! Does not run Docker credential helpers (`credsStore`, `credHelpers`) and does not fetch cloud
//! tokens (ECR, GCR, ACR). Nothing here logs or formats a password: `Debug` lists hosts only,
//! and parse errors name the key, never the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryError;

/// The Docker Hub host as canonical image names spell it (`model::image::DOCKER_HUB`).
pub(crate) const DOCKER_HUB: &str = model::image::DOCKER_HUB;

/// One login.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// Logins per registry host (`host` or `host:port`). Built from pull secrets and Docker config
/// files; merged across the workloads that use one image.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryCredentials {
    logins: BTreeMap<String, Login>,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("hosts", &self.logins.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl RegistryCredentials {
    /// No logins.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the logins of a Kubernetes Secret's `data` (values already base64-decoded, as
    /// `k8s_openapi` gives them): type `kubernetes.io/dockerconfigjson` reads key
    /// `.dockerconfigjson` (`{"auths": {host: {...}}}`), type `kubernetes.io/dockercfg` reads
    /// `.dockercfg` (`{host: {...}}`). Any other type gives no logins (Flux v1 skipped them).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Credentials`] when the key is missing, the JSON does not parse, or an
    /// entry's `auth` is not base64 of `user:password`. The error never contains the content.
    pub fn from_secret(
        secret_type: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, RegistryError> {
        let (key, nested) = match secret_type {
            "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", true),
            "kubernetes.io/dockercfg" => (".dockercfg", false),
            _ => return Ok(Self::new()),
        };
        let source_name = format!("secret of type {secret_type}");
        let bytes = data.get(key).ok_or_else(|| RegistryError::Credentials {
            source_name: source_name.clone(),
            reason: format!("key {key} is missing"),
        })?;
        if nested {
            Self::from_config_json(bytes, &source_name)
        } else {
            let entries: BTreeMap<String, AuthEntry> =
                serde_json::from_slice(bytes).map_err(|e| json_error(&source_name, &e))?;
            Self::from_entries(entries, &source_name)
        }
    }

    /// Reads the `auths` of a Docker `config.json` (`--docker-config`).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Credentials`] when the file cannot be read or parsed, or an `auth` is
    /// malformed.
    pub fn from_docker_config_file(path: &Path) -> Result<Self, RegistryError> {
        let source_name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| RegistryError::Credentials {
            source_name: source_name.clone(),
            reason: e.to_string(),
        })?;
        Self::from_config_json(&bytes, &source_name)
    }

    fn from_config_json(bytes: &[u8], source_name: &str) -> Result<Self, RegistryError> {
        let config: DockerConfig =
            serde_json::from_slice(bytes).map_err(|e| json_error(source_name, &e))?;
        Self::from_entries(config.auths, source_name)
    }

    fn from_entries(
        entries: BTreeMap<String, AuthEntry>,
        source_name: &str,
    ) -> Result<Self, RegistryError> {
        let mut logins = BTreeMap::new();
        for (key, entry) in entries {
            let host = normalise_host(&key);
            let login = match (entry.auth.as_deref(), entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    decode_auth(auth).ok_or_else(|| RegistryError::Credentials {
                        source_name: source_name.to_owned(),
                        reason: format!("the auth of {host} is not base64 of username:password"),
                    })?
                }
                (_, Some(username), Some(password)) => Login { username, password },
                _ => continue,
            };
            logins.insert(host, login);
        }
        Ok(Self { logins })
    }

    /// Adds `other`'s logins; for a host both have, the one already here stays (Flux v1 merged
    /// secrets in the order workloads were listed, first one winning).
    pub fn merge(&mut self, other: &RegistryCredentials) {
        for (host, login) in &other.logins {
            self.logins
                .entry(host.clone())
                .or_insert_with(|| login.clone());
        }
    }

    /// The hosts that have a login, normalised (`docker.io`, `registry.example:5000`).
    #[must_use]
    pub fn hosts(&self) -> Vec<&str> {
        self.logins.keys().map(String::as_str).collect()
    }

    /// `true` when there is no login at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.logins.is_empty()
    }

    /// The login for `host` (canonical spelling, `host[:port]`).
    pub(crate) fn login(&self, host: &str) -> Option<&Login> {
        self.logins.get(host)
    }

    /// Adds a login for `host` (tests and callers with credentials from elsewhere).
    pub fn insert(&mut self, host: &str, username: &str, password: &str) {
        self.logins.insert(
            normalise_host(host),
            Login {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
    }
}

fn json_error(source_name: &str, e: &serde_json::Error) -> RegistryError {
    // serde_json's message names the position and the expected token, not the content.
    RegistryError::Credentials {
        source_name: source_name.to_owned(),
        reason: format!(
            "invalid JSON at line {} column {} ({:?})",
            e.line(),
            e.column(),
            e.classify()
        ),
    }
}

fn decode_auth(auth: &str) -> Option<Login> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Login {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// `https://index.docker.io/v1/` → `docker.io`; `registry.example:5000/path` →
/// `registry.example:5000`; Docker Hub's other names → `docker.io`; lower case.
pub(crate) fn normalise_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn dockerconfigjson_with_auth_and_with_username_password() {
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"reg.example:5000":{{"username":"u2","password":"p2"}}}}}}"#,
            b64("alice:pa:ss")
        );
        let data = BTreeMap::from([(".dockerconfigjson".to_owned(), json.into_bytes())]);
        let creds =
            RegistryCredentials::from_secret("kubernetes.io/dockerconfigjson", &data).unwrap();
        assert_eq!(creds.hosts(), vec!["docker.io", "reg.example:5000"]);
        let hub = creds.login("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "pa:ss")
        );
        let other = creds.login("reg.example:5000").unwrap();
        assert_eq!(other.password, "p2");
    }

    #[test]
    fn dockercfg_is_a_flat_map() {
        let json = format!(
            r#"{{"quay.io":{{"auth":"{}","email":"x@y"}}}}"#,
            b64("bob:pw")
        );
        let data = BTreeMap::from([(".dockercfg".to_owned(), json.into_bytes())]);
        let creds = RegistryCredentials::from_secret("kubernetes.io/dockercfg", &data).unwrap();
        assert_eq!(creds.login("quay.io").unwrap().username, "bob");
    }

    #[test]
    fn errors_and_debug_do_not_show_secrets() {
        let data = BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            br#"{"auths":{"h":{"auth":"%%%notbase64-s3cret"}}}"#.to_vec(),
        )]);
        let err =
            RegistryCredentials::from_secret("kubernetes.io/dockerconfigjson", &data).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let bad = BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            b"{\"auths\": s3cret".to_vec(),
        )]);
        let err =
            RegistryCredentials::from_secret("kubernetes.io/dockerconfigjson", &bad).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let missing = RegistryCredentials::from_secret("kubernetes.io/dockercfg", &BTreeMap::new())
            .unwrap_err();
        assert!(missing.to_string().contains(".dockercfg"), "{missing}");

        let mut creds = RegistryCredentials::new();
        creds.insert("https://docker.io/v1/", "alice", "s3cret");
        let debug = format!("{creds:?}");
        assert!(
            debug.contains("\"docker.io\"")
                && !debug.contains("s3cret")
                && !debug.contains("alice"),
            "{debug}"
        );
    }

    #[test]
    fn other_secret_types_give_nothing_and_merge_keeps_the_first() {
        let none = RegistryCredentials::from_secret("Opaque", &BTreeMap::new()).unwrap();
        assert!(none.is_empty());
        let mut a = RegistryCredentials::new();
        a.insert("h:1", "first", "p");
        let mut b = RegistryCredentials::new();
        b.insert("h:1", "second", "p");
        b.insert("other", "o", "p");
        a.merge(&b);
        assert_eq!(a.login("h:1").unwrap().username, "first");
        assert_eq!(a.hosts(), vec!["h:1", "other"]);
    }
}

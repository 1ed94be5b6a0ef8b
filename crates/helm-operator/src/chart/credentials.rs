//! Chart pull credentials read from a Kubernetes Secret's `data` (`spec.chart.chartPullSecret`).
//!
//! Two shapes are understood, both may be present in one Secret:
//!
//! - keys `username` and `password`: HTTP Basic credentials for the chart's repository or
//!   registry (the shape the Helm Operator documented for `chart.secretRef` and for
//!   `repositories.yaml` entries);
//! - key `.dockerconfigjson` (a `kubernetes.io/dockerconfigjson` Secret, as made by
//!   `kubectl create secret docker-registry`): per-registry entries under `auths`, each with
//!   `username`/`password`, a base64 `auth` (`user:password`), or a `registrytoken` (sent as a
//!   Bearer token). The entry for the registry's host is used, as Docker and Helm do.
//!
//! For a host, a `.dockerconfigjson` entry for that host wins over `username`/`password`.
//!
//! Secret values never leave this module in text form except through
//! [`SecretString::expose`], which the HTTP clients call to build a request: `Debug` and
//! `Display` print `<redacted>`, and errors name keys, never values.
//!
//! Not supported: `identitytoken` entries (OAuth2 refresh tokens that need an exchange with the
//! registry's token service), credential helpers (`credsStore`, `credHelpers`), TLS client
//! certificates.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::ByteString;
use serde::Deserialize;

/// Secret key of the user name for Basic auth.
pub const USERNAME_KEY: &str = "username";
/// Secret key of the password for Basic auth.
pub const PASSWORD_KEY: &str = "password";
/// Secret key of a Docker config JSON (`kubernetes.io/dockerconfigjson` Secrets).
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

/// Errors from reading a pull Secret. They name the offending key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// `username` is present without `password`, or the other way round.
    #[error("failed to read chart pull credentials: key {present:?} is set but {missing:?} is not")]
    Incomplete {
        /// The key that is present.
        present: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// A value is not UTF-8 text.
    #[error("failed to read chart pull credentials: the value of key {key:?} is not UTF-8")]
    NotUtf8 {
        /// The key whose value is not text.
        key: String,
    },
    /// `.dockerconfigjson` is not a Docker config (the serde message is left out because it can
    /// quote the secret text).
    #[error(
        "failed to read chart pull credentials: key {key:?} is not a Docker config JSON ({category} error at line {line}, column {column})"
    )]
    InvalidDockerConfig {
        /// The key (`.dockerconfigjson`).
        key: &'static str,
        /// `syntax`, `data` or `eof`.
        category: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// An `auth` field of a `.dockerconfigjson` entry is not base64 of `user:password`.
    #[error(
        "failed to read chart pull credentials: the `auth` of registry {registry:?} in {key:?} is not base64 of user:password"
    )]
    InvalidAuthField {
        /// The key (`.dockerconfigjson`).
        key: &'static str,
        /// The registry entry (as written in `auths`).
        registry: String,
    },
    /// The Secret holds none of the understood keys.
    #[error(
        "failed to read chart pull credentials: the Secret has neither `username`/`password` nor `.dockerconfigjson` (keys: {keys:?})"
    )]
    NoCredentials {
        /// The keys the Secret has.
        keys: Vec<String>,
    },
}

/// A secret text (password, token). `Debug` and `Display` print `<redacted>`; the text is only
/// available through [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `text`.
    #[must_use]
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret text, for building a request. Never log or format it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One way to authenticate to a repository or registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic auth (`Authorization: Basic base64(username:password)`); for registries also the
    /// credentials presented to their token service.
    Basic {
        /// The user name (not secret; shown in `Debug` and `Display`).
        username: String,
        /// The password.
        password: SecretString,
    },
    /// A bearer token (`Authorization: Bearer <token>`), from a `registrytoken` entry.
    Bearer {
        /// The token.
        token: SecretString,
    },
}

impl Credential {
    /// Basic credentials.
    #[must_use]
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: SecretString::new(password),
        }
    }

    /// A bearer token.
    #[must_use]
    pub fn bearer(token: impl Into<String>) -> Self {
        Self::Bearer {
            token: SecretString::new(token),
        }
    }

    /// The secret part (password or token), for callers that must scrub it from third-party
    /// error text.
    #[must_use]
    pub fn secret(&self) -> &SecretString {
        match self {
            Self::Basic { password, .. } => password,
            Self::Bearer { token } => token,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "basic auth as {username:?}"),
            Self::Bearer { .. } => f.write_str("bearer token"),
        }
    }
}

/// The credentials of one pull Secret: optional Basic credentials for any host, and
/// per-registry entries from `.dockerconfigjson`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullCredentials {
    basic: Option<Credential>,
    /// Registry host (`host` or `host:port`, lowercase, no scheme or path) to its credential.
    registries: BTreeMap<String, Credential>,
}

impl PullCredentials {
    /// Credentials that send `username`/`password` to whichever host asks.
    #[must_use]
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            basic: Some(Credential::basic(username, password)),
            registries: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the credential for one registry host (`host` or `host:port`; a
    /// scheme and path are ignored, as in `.dockerconfigjson`).
    #[must_use]
    pub fn with_registry(mut self, registry: &str, credential: Credential) -> Self {
        self.registries
            .insert(normalize_registry(registry), credential);
        self
    }

    /// Reads a Secret's `data`: `username` + `password` and/or `.dockerconfigjson` (see the
    /// module docs). Other keys are ignored.
    ///
    /// # Errors
    ///
    /// [`CredentialsError`] when only one of `username`/`password` is set, a value is not UTF-8,
    /// `.dockerconfigjson` is not a Docker config, or none of these keys is present.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<Self, CredentialsError> {
        let text = |key: &str| -> Result<Option<String>, CredentialsError> {
            data.get(key)
                .map(|value| {
                    String::from_utf8(value.0.clone()).map_err(|_| CredentialsError::NotUtf8 {
                        key: key.to_owned(),
                    })
                })
                .transpose()
        };
        let basic = match (text(USERNAME_KEY)?, text(PASSWORD_KEY)?) {
            (Some(username), Some(password)) => Some(Credential::basic(username, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(CredentialsError::Incomplete {
                    present: USERNAME_KEY,
                    missing: PASSWORD_KEY,
                });
            }
            (None, Some(_)) => {
                return Err(CredentialsError::Incomplete {
                    present: PASSWORD_KEY,
                    missing: USERNAME_KEY,
                });
            }
        };
        let registries = match data.get(DOCKER_CONFIG_JSON_KEY) {
            Some(json) => parse_docker_config(&json.0)?,
            None => BTreeMap::new(),
        };
        if basic.is_none() && !data.contains_key(DOCKER_CONFIG_JSON_KEY) {
            return Err(CredentialsError::NoCredentials {
                keys: data.keys().cloned().collect(),
            });
        }
        Ok(Self { basic, registries })
    }

    /// The credential to present to `host` (`host` or `host:port` as in the URL): the
    /// `.dockerconfigjson` entry for exactly that host (Docker Hub's `index.docker.io` entry
    /// also serves `docker.io` and `registry-1.docker.io`), else the `username`/`password`
    /// pair, else `None` (anonymous).
    #[must_use]
    pub fn for_host(&self, host: &str) -> Option<&Credential> {
        let host = normalize_registry(host);
        let docker_hub = ["docker.io", "index.docker.io", "registry-1.docker.io"];
        self.registries
            .get(&host)
            .or_else(|| {
                docker_hub
                    .contains(&host.as_str())
                    .then(|| docker_hub.iter().find_map(|h| self.registries.get(*h)))
                    .flatten()
            })
            .or(self.basic.as_ref())
    }

    /// Every secret text held (passwords and tokens), for scrubbing third-party error text.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretString> {
        self.basic
            .iter()
            .chain(self.registries.values())
            .map(Credential::secret)
    }
}

/// `https://Host:5000/v1/` -> `host:5000`: the registry key the way Docker matches it.
fn normalize_registry(registry: &str) -> String {
    let text = registry.trim();
    let text = text.split_once("://").map_or(text, |(_, rest)| rest);
    let text = text.split('/').next().unwrap_or(text);
    text.to_ascii_lowercase()
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

fn parse_docker_config(json: &[u8]) -> Result<BTreeMap<String, Credential>, CredentialsError> {
    let config: DockerConfig = serde_json::from_slice(json).map_err(|err| {
        let category = match err.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        CredentialsError::InvalidDockerConfig {
            key: DOCKER_CONFIG_JSON_KEY,
            category,
            line: err.line(),
            column: err.column(),
        }
    })?;
    let mut registries = BTreeMap::new();
    for (registry, entry) in config.auths {
        let credential = if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
            Some(Credential::bearer(token))
        } else if let (Some(username), Some(password)) = (&entry.username, &entry.password)
            && !(username.is_empty() && password.is_empty())
        {
            Some(Credential::basic(username.clone(), password.clone()))
        } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
            let invalid = || CredentialsError::InvalidAuthField {
                key: DOCKER_CONFIG_JSON_KEY,
                registry: registry.clone(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (username, password) = decoded.split_once(':').ok_or_else(invalid)?;
            Some(Credential::basic(username, password))
        } else {
            // An entry without usable credentials (for example only `identitytoken`): anonymous.
            None
        };
        if let Some(credential) = credential {
            registries.insert(normalize_registry(&registry), credential);
        }
    }
    Ok(registries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn username_and_password_apply_to_any_host() {
        let creds =
            PullCredentials::from_secret_data(&data(&[("username", "ci"), ("password", "pw1")]))
                .unwrap();
        for host in ["charts.example.com", "127.0.0.1:5000"] {
            assert_eq!(creds.for_host(host), Some(&Credential::basic("ci", "pw1")));
        }
    }

    #[test]
    fn docker_config_entry_for_the_host_wins_and_other_hosts_fall_back() {
        // "bob:pw3" in base64.
        let json = r#"{"auths":{
            "https://Registry.example.com:5000/v1/":{"username":"alice","password":"pw2"},
            "other.example.com":{"auth":"Ym9iOnB3Mw=="},
            "tokens.example.com":{"registrytoken":"tok4"},
            "https://index.docker.io/v1/":{"username":"hub","password":"pw5"},
            "refresh.example.com":{"identitytoken":"refresh"}
        }}"#;
        let creds = PullCredentials::from_secret_data(&data(&[
            (".dockerconfigjson", json),
            ("username", "ci"),
            ("password", "pw1"),
        ]))
        .unwrap();
        assert_eq!(
            creds.for_host("registry.example.com:5000"),
            Some(&Credential::basic("alice", "pw2"))
        );
        assert_eq!(
            creds.for_host("other.example.com"),
            Some(&Credential::basic("bob", "pw3"))
        );
        assert_eq!(
            creds.for_host("tokens.example.com"),
            Some(&Credential::bearer("tok4"))
        );
        assert_eq!(
            creds.for_host("docker.io"),
            Some(&Credential::basic("hub", "pw5"))
        );
        // No entry for the port-less host: the username/password pair.
        assert_eq!(
            creds.for_host("registry.example.com"),
            Some(&Credential::basic("ci", "pw1"))
        );
        assert_eq!(
            creds.for_host("refresh.example.com"),
            Some(&Credential::basic("ci", "pw1"))
        );
        assert_eq!(creds.secrets().count(), 5);
    }

    #[test]
    fn docker_config_alone_gives_nothing_for_unknown_hosts() {
        let json = r#"{"auths":{"r.example.com":{"username":"a","password":"b"}}}"#;
        let creds =
            PullCredentials::from_secret_data(&data(&[(".dockerconfigjson", json)])).unwrap();
        assert_eq!(creds.for_host("elsewhere.example.com"), None);
        assert!(creds.for_host("r.example.com").is_some());
    }

    #[test]
    fn debug_and_display_never_show_secrets() {
        let json = r#"{"auths":{"r.example.com":{"registrytoken":"tok-SECRET"}}}"#;
        let creds = PullCredentials::from_secret_data(&data(&[
            (".dockerconfigjson", json),
            ("username", "ci"),
            ("password", "pw-SECRET"),
        ]))
        .unwrap();
        let texts = [
            format!("{creds:?}"),
            format!("{:?}", creds.for_host("x")),
            format!("{}", creds.for_host("x").unwrap()),
            format!("{:?}", creds.for_host("r.example.com")),
            format!("{}", creds.for_host("r.example.com").unwrap()),
            format!(
                "{:?} {}",
                SecretString::new("pw-SECRET"),
                SecretString::new("pw-SECRET")
            ),
        ];
        for text in texts {
            assert!(!text.contains("SECRET"), "{text}");
        }
        assert!(format!("{creds:?}").contains("\"ci\""));
        assert_eq!(
            creds.for_host("x").unwrap().to_string(),
            "basic auth as \"ci\""
        );
    }

    #[test]
    fn errors_name_keys_not_values() {
        assert_eq!(
            PullCredentials::from_secret_data(&data(&[("username", "ci")])).unwrap_err(),
            CredentialsError::Incomplete {
                present: "username",
                missing: "password"
            }
        );
        assert_eq!(
            PullCredentials::from_secret_data(&data(&[("password", "pw-SECRET")])).unwrap_err(),
            CredentialsError::Incomplete {
                present: "password",
                missing: "username"
            }
        );
        let err = PullCredentials::from_secret_data(&data(&[("token", "pw-SECRET")])).unwrap_err();
        assert_eq!(
            err,
            CredentialsError::NoCredentials {
                keys: vec!["token".into()]
            }
        );
        // Data errors from serde would quote the value: they must not appear.
        let err = PullCredentials::from_secret_data(&data(&[(
            ".dockerconfigjson",
            r#"{"auths":"pw-SECRET"}"#,
        )]))
        .unwrap_err();
        assert!(matches!(
            err,
            CredentialsError::InvalidDockerConfig {
                category: "data",
                ..
            }
        ));
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = PullCredentials::from_secret_data(&data(&[(
            ".dockerconfigjson",
            r#"{"auths":{"r":{"auth":"not base64 pw-SECRET"}}}"#,
        )]))
        .unwrap_err();
        assert!(matches!(err, CredentialsError::InvalidAuthField { .. }));
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let mut bad = data(&[("username", "ci")]);
        bad.insert("password".into(), ByteString(vec![0xff, 0xfe]));
        assert_eq!(
            PullCredentials::from_secret_data(&bad).unwrap_err(),
            CredentialsError::NotUtf8 {
                key: "password".into()
            }
        );
    }
}

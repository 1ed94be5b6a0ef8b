//! Helm's release records read straight from its storage Secrets, without a helm process.
//!
//! Helm v3 and v4 (default `secret` driver) keep one Secret per revision in the release's
//! namespace: name `sh.helm.release.v1.<release>.v<revision>`, type `helm.sh/release.v1`, labels
//! `owner=helm`, `name=<release>`, `version=<revision>`, `status=<status>`, and under
//! `data.release` the release as JSON, gzip-compressed, then base64-encoded by Helm (and once
//! more by Kubernetes, which `k8s-openapi` undoes). Both versions write the same format.
//!
//! This is the cheap way for the reconciler to learn a release's state on every run (the
//! install-vs-upgrade decision, the no-op comparison of values and chart). It only reads; it
//! never writes or deletes records (that stays Helm's job), and does not support Helm's other
//! storage drivers (ConfigMaps, SQL).

use std::fmt;
use std::io::Read;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::Deserialize;

use super::cli::{ChartJson, InfoJson, parse_time};
use super::{ChartMeta, ReleaseStatus};

/// The `type` of Helm's release Secrets.
pub const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";

/// Decoded release records larger than this are refused (a bound against a decompression bomb;
/// a Secret holds at most 1 MiB compressed).
const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// The gzip magic Helm checks to tell compressed records from plain JSON ones.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];

/// Helm's longest release name.
const MAX_RELEASE_NAME_LEN: usize = 53;

/// One revision of a release as Helm stored it.
///
/// `config` (the user-supplied values) and `manifest` may hold secrets: `Debug` leaves them out.
#[derive(Clone, PartialEq)]
pub struct StoredRelease {
    /// Release name.
    pub name: String,
    /// Namespace of the release.
    pub namespace: String,
    /// Revision number, from 1.
    pub version: u32,
    /// Status of this revision.
    pub status: ReleaseStatus,
    /// The chart of this revision (name, version, appVersion).
    pub chart: ChartMeta,
    /// The user-supplied values of this revision (what `--values` / `--set` gave, not the chart's
    /// defaults); an empty map when there were none.
    pub config: serde_json::Value,
    /// The rendered manifest (hooks excluded), as Helm applied it.
    pub manifest: String,
    /// Helm's description of the revision.
    pub description: String,
    /// When this revision was deployed, if Helm recorded a parsable time.
    pub last_deployed: Option<k8s_openapi::jiff::Timestamp>,
}

impl fmt::Debug for StoredRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRelease")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("status", &self.status)
            .field("chart", &self.chart)
            .field("config", &"<not shown>")
            .field("manifest", &format_args!("<{} bytes>", self.manifest.len()))
            .field("description", &self.description)
            .field("last_deployed", &self.last_deployed)
            .finish()
    }
}

/// Errors of reading release records.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The release name cannot be a Helm release name (and would not make a safe label selector).
    #[error("failed to read helm release {release:?}: not a valid release name")]
    InvalidName {
        /// The rejected name.
        release: String,
    },
    /// Listing the release's Secrets failed.
    #[error("failed to list the helm release records of {namespace}/{release}: {source}")]
    List {
        /// Namespace of the release.
        namespace: String,
        /// Release name.
        release: String,
        /// Why.
        source: kube::Error,
    },
    /// A release Secret does not hold a readable record.
    #[error("failed to decode the helm release record in Secret {secret}: {reason}")]
    Decode {
        /// `<namespace>/<name>` of the Secret.
        secret: String,
        /// What was wrong (never the record's content).
        reason: String,
    },
}

/// Reads release records through the Kubernetes API (needs `list` on Secrets in the release
/// namespaces).
#[derive(Clone)]
pub struct ReleaseStorage {
    client: kube::Client,
}

impl fmt::Debug for ReleaseStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseStorage").finish_non_exhaustive()
    }
}

impl ReleaseStorage {
    /// Storage reads through `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Every stored revision of `release` in `namespace`, oldest first; empty when there is no
    /// such release. One list request, every record decoded.
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidName`], [`StorageError::List`], or [`StorageError::Decode`] naming
    /// the first unreadable record.
    pub async fn history(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<Vec<StoredRelease>, StorageError> {
        let secrets = self.list(namespace, release).await?;
        let mut releases = secrets
            .iter()
            .map(decode_secret)
            .collect::<Result<Vec<_>, _>>()?;
        releases.sort_by_key(|r| r.version);
        Ok(releases)
    }

    /// The latest (highest) revision of `release` in `namespace`, `None` when there is no such
    /// release. One list request; only the latest record is decoded when every record carries a
    /// numeric `version` label, as Helm writes them.
    ///
    /// # Errors
    ///
    /// As [`ReleaseStorage::history`].
    pub async fn latest(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<Option<StoredRelease>, StorageError> {
        let secrets = self.list(namespace, release).await?;
        let labelled: Option<Vec<(u32, &Secret)>> = secrets
            .iter()
            .map(|s| version_label(s).map(|v| (v, s)))
            .collect();
        if let Some(labelled) = labelled {
            return labelled
                .into_iter()
                .max_by_key(|(version, _)| *version)
                .map(|(_, secret)| decode_secret(secret))
                .transpose();
        }
        let releases = secrets
            .iter()
            .map(decode_secret)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(releases.into_iter().max_by_key(|r| r.version))
    }

    /// The release Secrets of `release` (label selector `owner=helm,name=<release>`, type
    /// `helm.sh/release.v1`).
    async fn list(&self, namespace: &str, release: &str) -> Result<Vec<Secret>, StorageError> {
        if !is_release_name(release) {
            return Err(StorageError::InvalidName {
                release: release.to_owned(),
            });
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("owner=helm,name={release}"));
        let list = api
            .list(&params)
            .await
            .map_err(|source| StorageError::List {
                namespace: namespace.to_owned(),
                release: release.to_owned(),
                source,
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|s| s.type_.as_deref() == Some(RELEASE_SECRET_TYPE))
            .collect())
    }
}

/// Whether `name` is a valid Helm release name: lowercase letters, digits, `-` and `.`, starting
/// and ending with a letter or digit, at most 53 characters.
fn is_release_name(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= MAX_RELEASE_NAME_LEN
        && name
            .chars()
            .all(|c| alphanumeric(c) || c == '-' || c == '.')
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
}

fn version_label(secret: &Secret) -> Option<u32> {
    secret
        .metadata
        .labels
        .as_ref()?
        .get("version")?
        .parse()
        .ok()
}

fn secret_id(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    )
}

fn decode_secret(secret: &Secret) -> Result<StoredRelease, StorageError> {
    let id = secret_id(secret);
    let payload = secret
        .data
        .as_ref()
        .and_then(|data| data.get("release"))
        .ok_or_else(|| StorageError::Decode {
            secret: id.clone(),
            reason: "it has no data.release".to_owned(),
        })?;
    decode_release(&id, &payload.0)
}

/// The JSON of a stored release, the parts we read.
#[derive(Deserialize)]
struct StoredJson {
    name: String,
    #[serde(default)]
    namespace: String,
    version: u32,
    #[serde(default)]
    info: InfoJson,
    #[serde(default)]
    chart: ChartJson,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    manifest: String,
}

/// Decodes the `data.release` of a release Secret (after Kubernetes' base64, which the API
/// client undid): base64, then gzip when it starts with gzip's magic (as Helm checks), then JSON.
/// `secret` names the Secret in errors.
///
/// # Errors
///
/// [`StorageError::Decode`] naming `secret` and what was wrong; never panics on bad input.
pub fn decode_release(secret: &str, data: &[u8]) -> Result<StoredRelease, StorageError> {
    let error = |reason: String| StorageError::Decode {
        secret: secret.to_owned(),
        reason,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim_ascii())
        .map_err(|e| error(format!("not base64: {e}")))?;
    let json = if bytes.starts_with(GZIP_MAGIC) {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(MAX_DECODED_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| error(format!("not gzip: {e}")))?;
        if json.len() as u64 > MAX_DECODED_BYTES {
            return Err(error(format!(
                "it decompresses to more than {MAX_DECODED_BYTES} bytes"
            )));
        }
        json
    } else {
        bytes
    };
    let stored: StoredJson =
        serde_json::from_slice(&json).map_err(|e| error(format!("not a release: {e}")))?;
    let config = match stored.config {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(serde_json::Map::new()),
        Some(config) => config,
    };
    Ok(StoredRelease {
        name: stored.name,
        namespace: stored.namespace,
        version: stored.version,
        status: ReleaseStatus::from(stored.info.status.as_str()),
        chart: stored.chart.metadata.into(),
        config,
        manifest: stored.manifest,
        description: stored.info.description,
        last_deployed: parse_time(stored.info.last_deployed.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn encode(json: &str, gzip: bool) -> Vec<u8> {
        let bytes = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(json.as_bytes()).unwrap();
            encoder.finish().unwrap()
        } else {
            json.as_bytes().to_vec()
        };
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    const RECORD: &str = r#"{"name":"web","namespace":"apps","version":2,
        "info":{"first_deployed":"2026-11-21T23:15:51.2Z","last_deployed":"2026-11-21T23:15:53.9Z",
                "description":"Upgrade complete","status":"superseded"},
        "chart":{"metadata":{"name":"hello","version":"0.1.0","appVersion":"1.27"}},
        "config":{"greeting":"bye","password":"hunter2"},"manifest":"---\nkind: ConfigMap\n",
        "hooks":[],"apply_method":"ssa"}"#;

    #[test]
    fn decodes_gzipped_and_plain_records() {
        for gzip in [true, false] {
            let release =
                decode_release("apps/sh.helm.release.v1.web.v2", &encode(RECORD, gzip)).unwrap();
            assert_eq!(release.name, "web");
            assert_eq!(release.namespace, "apps");
            assert_eq!(release.version, 2);
            assert_eq!(release.status, ReleaseStatus::Superseded);
            assert_eq!(release.chart.name, "hello");
            assert_eq!(release.chart.version, "0.1.0");
            assert_eq!(release.chart.app_version.as_deref(), Some("1.27"));
            assert_eq!(
                release.config,
                serde_json::json!({"greeting": "bye", "password": "hunter2"})
            );
            assert_eq!(release.manifest, "---\nkind: ConfigMap\n");
            assert_eq!(release.description, "Upgrade complete");
            assert_eq!(
                release.last_deployed.unwrap().to_string(),
                "2026-11-21T23:15:53.9Z"
            );
            let shown = format!("{release:?}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("ConfigMap"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_record_without_config_has_empty_values() {
        let json = r#"{"name":"web","version":1,"info":{"status":"deployed"}}"#;
        let release = decode_release("apps/x", &encode(json, true)).unwrap();
        assert_eq!(release.config, serde_json::json!({}));
        assert_eq!(release.status, ReleaseStatus::Deployed);
        assert_eq!(release.last_deployed, None);
    }

    #[test]
    fn corrupt_records_are_errors_naming_the_secret() {
        let gzip_garbage = base64::engine::general_purpose::STANDARD
            .encode([0x1f, 0x8b, 0x08, 1, 2, 3])
            .into_bytes();
        for data in [
            b"%%% not base64".to_vec(),
            gzip_garbage,
            encode("{\"name\": 3}", true),
            encode("[]", false),
        ] {
            let error = decode_release("apps/sh.helm.release.v1.web.v1", &data).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(
                    "failed to decode the helm release record in Secret \
                     apps/sh.helm.release.v1.web.v1: "
                ),
                "{message}"
            );
        }
    }

    #[test]
    fn release_names_are_checked_before_they_become_a_selector() {
        for good in ["web", "apps-web", "a.b-c", "x1"] {
            assert!(is_release_name(good), "{good}");
        }
        for bad in [
            "",
            "Web",
            "web,owner!=helm",
            "-web",
            "web-",
            &"a".repeat(54),
        ] {
            assert!(!is_release_name(bad), "{bad}");
        }
    }
}

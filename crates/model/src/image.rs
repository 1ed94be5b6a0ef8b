//! Container image references: `[registry[:port]/]path[:tag][@digest]`.
//!
//! An [`ImageRef`] keeps the spelling the user wrote (`nginx:1.0` stays `nginx:1.0`, it does not
//! become `docker.io/library/nginx:1.0`), so that a write-back that changes the tag changes only
//! the tag's bytes. Comparisons between references that may be spelled differently go through
//! the canonical form ([`ImageRef::canonical_name`]): Docker Hub as `docker.io` and single-segment
//! Docker Hub paths under `library/`, as the Docker CLI and Flux v1 (`pkg/image/image.go`) did.
//!
//! The grammar is the one of the distribution reference spec (`distribution/reference`,
//! `reference.go`): path components of lowercase alphanumerics joined by `.`, `_`, `__` or runs
//! of `-`; tags of at most 128 word characters, dots and dashes, not starting with either;
//! digests `algorithm:hex` with at least 32 hex digits. This module does not talk to registries.

use std::fmt;
use std::str::FromStr;

/// The registry host that stands for Docker Hub in canonical names.
pub const DOCKER_HUB: &str = "docker.io";

/// Host names that mean Docker Hub; all compare equal to [`DOCKER_HUB`].
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The longest tag the distribution spec allows, in bytes.
const MAX_TAG_LEN: usize = 128;

/// The longest repository name (registry and path) the distribution spec allows, in bytes.
const MAX_NAME_LEN: usize = 255;

/// A parsed container image reference that prints back exactly as it was written.
///
/// Shape: `[registry[:port]/]path[:tag][@digest]`, e.g. `quay.io/stefanprodan/podinfo:1.2.0`,
/// `localhost:5000/demo/app@sha256:…`, `nginx`. `Display` prints the original spelling;
/// [`ImageRef::canonical_name`] gives the form used to compare repositories.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why an image reference was rejected; carried inside [`ImageRefError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRefProblem {
    /// The input was empty.
    Empty,
    /// There is a tag or digest but no repository name before it.
    MissingName,
    /// The repository name (registry and path) is longer than 255 bytes.
    NameTooLong,
    /// The registry host or port is not valid.
    InvalidRegistry(String),
    /// A path component is not valid.
    InvalidPathComponent(String),
    /// The tag is not valid.
    InvalidTag(String),
    /// The digest is not valid.
    InvalidDigest(String),
}

impl fmt::Display for ImageRefProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the reference is empty"),
            Self::MissingName => f.write_str("the repository name is missing"),
            Self::NameTooLong => {
                write!(f, "the repository name is longer than {MAX_NAME_LEN} bytes")
            }
            Self::InvalidRegistry(r) => write!(f, "invalid registry host {r:?}"),
            Self::InvalidPathComponent(c) => write!(
                f,
                "invalid path component {c:?} (lowercase letters and digits, joined by '.', '_', '__' or '-')"
            ),
            Self::InvalidTag(t) => write!(
                f,
                "invalid tag {t:?} (at most {MAX_TAG_LEN} letters, digits, '_', '.' or '-', not starting with '.' or '-')"
            ),
            Self::InvalidDigest(d) => {
                write!(
                    f,
                    "invalid digest {d:?} (expected algorithm:hex, e.g. sha256:…)"
                )
            }
        }
    }
}

/// A malformed image reference: the whole input and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse image reference {input:?}: {problem}")]
pub struct ImageRefError {
    /// The input as given.
    pub input: String,
    /// What is wrong with it.
    pub problem: ImageRefProblem,
}

impl ImageRef {
    /// Parses `[registry[:port]/]path[:tag][@digest]`.
    ///
    /// The first `/`-separated component is the registry when it contains `.` or `:`, is
    /// `localhost`, or has uppercase letters (the Docker CLI rule); otherwise the whole name is a
    /// Docker Hub path.
    ///
    /// # Errors
    ///
    /// [`ImageRefError`] naming the input, when any part breaks the grammar in the module docs.
    pub fn parse(input: &str) -> Result<Self, ImageRefError> {
        let fail = |problem| ImageRefError {
            input: input.to_owned(),
            problem,
        };
        if input.is_empty() {
            return Err(fail(ImageRefProblem::Empty));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                if !is_valid_digest(digest) {
                    return Err(fail(ImageRefProblem::InvalidDigest(digest.to_owned())));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                let tag = &rest[colon + 1..];
                if !is_valid_tag(tag) {
                    return Err(fail(ImageRefProblem::InvalidTag(tag.to_owned())));
                }
                (&rest[..colon], Some(tag.to_owned()))
            }
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(fail(ImageRefProblem::MissingName));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(fail(ImageRefProblem::NameTooLong));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if looks_like_registry(first) => {
                if !is_valid_registry(first) {
                    return Err(fail(ImageRefProblem::InvalidRegistry(first.to_owned())));
                }
                (Some(first.to_owned()), path)
            }
            _ => (None, name),
        };
        if let Some(bad) = path.split('/').find(|c| !is_valid_path_component(c)) {
            return Err(fail(ImageRefProblem::InvalidPathComponent(bad.to_owned())));
        }
        Ok(Self {
            registry,
            path: path.to_owned(),
            tag,
            digest,
        })
    }

    /// The registry as written (`quay.io`, `localhost:5000`), or `None` for Docker Hub by default.
    #[must_use]
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The repository path as written (`stefanprodan/podinfo`, `nginx`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`1.2.0`).
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any (`sha256:…`).
    #[must_use]
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The repository name as written, without tag or digest (`quay.io/stefanprodan/podinfo`).
    #[must_use]
    pub fn name(&self) -> String {
        match &self.registry {
            Some(registry) => format!("{registry}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The registry host in canonical form: lowercase, Docker Hub aliases as [`DOCKER_HUB`].
    #[must_use]
    pub fn canonical_registry(&self) -> String {
        match &self.registry {
            None => DOCKER_HUB.to_owned(),
            Some(r) => {
                let lower = r.to_ascii_lowercase();
                if DOCKER_HUB_ALIASES.contains(&lower.as_str()) {
                    DOCKER_HUB.to_owned()
                } else {
                    lower
                }
            }
        }
    }

    /// The canonical repository name used to compare references: `docker.io/library/nginx` for
    /// `nginx`, `quay.io/org/app` for `quay.io/org/app:1.0`.
    #[must_use]
    pub fn canonical_name(&self) -> String {
        let registry = self.canonical_registry();
        if registry == DOCKER_HUB && !self.path.contains('/') {
            format!("{registry}/library/{}", self.path)
        } else {
            format!("{registry}/{}", self.path)
        }
    }

    /// Whether both references name the same repository, however each is spelled.
    #[must_use]
    pub fn same_repository(&self, other: &Self) -> bool {
        self.canonical_name() == other.canonical_name()
    }

    /// The same reference with another tag, keeping the registry and path spelling.
    ///
    /// A digest is dropped: it pinned the old tag's content and would contradict the new tag.
    ///
    /// # Errors
    ///
    /// [`ImageRefError`] when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ImageRefError> {
        if !is_valid_tag(tag) {
            return Err(ImageRefError {
                input: format!("{}:{tag}", self.name()),
                problem: ImageRefProblem::InvalidTag(tag.to_owned()),
            });
        }
        Ok(Self {
            registry: self.registry.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The same reference with its registry replaced by `registry` as written.
    ///
    /// Mirrors how Flux v1 read a separate `registry:` value next to `image:` in Helm values.
    ///
    /// # Errors
    ///
    /// [`ImageRefError`] when `registry` is not a valid registry host.
    pub fn with_registry(&self, registry: &str) -> Result<Self, ImageRefError> {
        if !is_valid_registry(registry) {
            return Err(ImageRefError {
                input: format!("{registry}/{}", self.path),
                problem: ImageRefProblem::InvalidRegistry(registry.to_owned()),
            });
        }
        Ok(Self {
            registry: Some(registry.to_owned()),
            ..self.clone()
        })
    }

    /// The same reference without a tag or digest.
    #[must_use]
    pub fn without_tag(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The Docker CLI rule for telling a registry host from the first path component.
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// `host[:port]` where host is DNS labels separated by dots or a bracketed IPv6 address.
fn is_valid_registry(registry: &str) -> bool {
    let (host_ok, port) = match registry.strip_prefix('[') {
        Some(bracketed) => {
            let Some((addr, after)) = bracketed.split_once(']') else {
                return false;
            };
            let addr_ok =
                !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (addr_ok, port)
        }
        None => match registry.split_once(':') {
            Some((host, port)) => (is_valid_hostname(host), Some(port)),
            None => (is_valid_hostname(registry), None),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

fn is_valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
fn is_valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_short_names_are_canonicalised_under_library() {
        let image = ImageRef::parse("nginx:1.25").unwrap();
        assert_eq!(image.registry(), None);
        assert_eq!(image.path(), "nginx");
        assert_eq!(image.tag(), Some("1.25"));
        assert_eq!(image.canonical_name(), "docker.io/library/nginx");
        assert_eq!(image.to_string(), "nginx:1.25");
    }

    #[test]
    fn docker_hub_aliases_compare_equal() {
        let a = ImageRef::parse("index.docker.io/library/nginx:1").unwrap();
        let b = ImageRef::parse("nginx:2").unwrap();
        let c = ImageRef::parse("docker.io/nginx").unwrap();
        assert!(a.same_repository(&b));
        assert!(b.same_repository(&c));
        assert!(!a.same_repository(&ImageRef::parse("quay.io/nginx").unwrap()));
    }

    #[test]
    fn registry_with_port_is_not_taken_for_a_tag() {
        let image = ImageRef::parse("localhost:5000/demo/app").unwrap();
        assert_eq!(image.registry(), Some("localhost:5000"));
        assert_eq!(image.path(), "demo/app");
        assert_eq!(image.tag(), None);
        let tagged = ImageRef::parse("127.0.0.1:5000/demo/app:v1.0.0").unwrap();
        assert_eq!(tagged.registry(), Some("127.0.0.1:5000"));
        assert_eq!(tagged.tag(), Some("v1.0.0"));
    }

    #[test]
    fn first_component_without_dot_or_colon_is_a_path() {
        let image = ImageRef::parse("stefanprodan/podinfo:dev-kb9lm91e").unwrap();
        assert_eq!(image.registry(), None);
        assert_eq!(image.path(), "stefanprodan/podinfo");
        assert_eq!(image.canonical_name(), "docker.io/stefanprodan/podinfo");
    }

    #[test]
    fn digest_is_kept_and_dropped_by_with_tag() {
        let text = "quay.io/org/app:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let image = ImageRef::parse(text).unwrap();
        assert_eq!(image.to_string(), text);
        assert!(image.digest().is_some());
        assert_eq!(
            image.with_tag("1.1").unwrap().to_string(),
            "quay.io/org/app:1.1"
        );
    }

    #[test]
    fn with_tag_keeps_the_original_spelling() {
        let image = ImageRef::parse("Index.Docker.IO/Library/nginx:1.0");
        // Uppercase is allowed in the registry, not in the path.
        assert!(image.is_err());
        let image = ImageRef::parse("Index.Docker.IO/library/nginx:1.0").unwrap();
        assert_eq!(
            image.with_tag("1.1").unwrap().to_string(),
            "Index.Docker.IO/library/nginx:1.1"
        );
        assert_eq!(image.canonical_name(), "docker.io/library/nginx");
    }

    #[test]
    fn malformed_references_name_the_input() {
        for bad in [
            "",
            "app/UPPER",
            "app:",
            "app:-dash",
            "a//b",
            "app@sha256:short",
            "quay.io/",
            ":tag",
            "a b",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn ipv6_registry_hosts_parse() {
        let image = ImageRef::parse("[::1]:5000/app:1").unwrap();
        assert_eq!(image.registry(), Some("[::1]:5000"));
        assert_eq!(image.to_string(), "[::1]:5000/app:1");
    }
}

//! Where the images of a HelmRelease live in its `spec.values`, and what a tag bump changes.
//!
//! Image automation treats each image found in a HelmRelease's values as a "container", as Flux
//! v1 did (`pkg/cluster/kubernetes/resource/helmrelease.go`). Detected shapes, at the top level
//! of `values` (container name [`CHART_IMAGE`]) or one level below a key (container name = that
//! key):
//!
//! ```yaml
//! image: repo/app:1.0                  # image
//! image: repo/app                      # image + tag
//! tag: "1.0"
//! registry: quay.io                    # registry + image + tag
//! image: repo/app
//! tag: "1.0"
//! image: {repository: repo/app, tag: "1.0"}                     # image: {repository, tag}
//! image: {registry: quay.io, repository: repo/app, tag: "1.0"}  # image: {registry, repository, tag}
//! ```
//!
//! Annotations `repository.fluxcd.io/<c>` (required), `registry.fluxcd.io/<c>` and
//! `tag.fluxcd.io/<c>` name dot paths under `spec.values` for container `<c>` and override
//! detection: the mapped container replaces a detected one of the same name or on the same path.
//!
//! For every image found, [`ValuesImage`] records the container name, the current [`ImageRef`]
//! and the exact value paths that hold it; [`ValuesImage::tag_update`] gives the scalars a
//! write-back must change. Problems (a tag that is a number, a mapped path that does not exist)
//! are reported per container and never stop the others. This module reads values; it does not
//! edit files.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::annotations::ImagePathAnnotations;
use crate::helmrelease::Values;
use crate::image::{ImageRef, ImageRefError};

/// Container name of an image found at the top level of `values` (Flux v1 `ReleaseContainerName`).
pub const CHART_IMAGE: &str = "chart-image";

const IMAGE: &str = "image";
const REPOSITORY: &str = "repository";
const REGISTRY: &str = "registry";
const TAG: &str = "tag";

/// A path of keys below `spec.values`, printed dotted (`image.repository`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValuePath(Vec<String>);

impl ValuePath {
    /// A path from its keys.
    #[must_use]
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> Self {
        Self(keys.into_iter().map(Into::into).collect())
    }

    /// A path from the dot notation used in annotations (`app.image.tag`).
    #[must_use]
    pub fn from_dotted(dotted: &str) -> Self {
        Self::new(dotted.split('.').filter(|k| !k.is_empty()))
    }

    /// The keys, outermost first.
    #[must_use]
    pub fn keys(&self) -> &[String] {
        &self.0
    }

    fn child(&self, key: &str) -> Self {
        let mut keys = self.0.clone();
        keys.push(key.to_owned());
        Self(keys)
    }

    /// The value at this path, if every key exists.
    #[must_use]
    pub fn get<'a>(&self, values: &'a Values) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        rest.iter()
            .try_fold(values.get(first)?, |value, key| value.get(key))
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// Which value paths hold an image.
///
/// `repository` always exists. Without `tag`, the tag is part of the string at `repository`
/// (`repo:tag`); without `registry`, so is the registry (`quay.io/repo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePaths {
    /// The registry host, when held separately.
    pub registry: Option<ValuePath>,
    /// The image name (and tag, and registry, when those are not separate).
    pub repository: ValuePath,
    /// The tag, when held separately.
    pub tag: Option<ValuePath>,
}

impl ImagePaths {
    fn all(&self) -> impl Iterator<Item = &ValuePath> {
        self.registry
            .iter()
            .chain(std::iter::once(&self.repository))
            .chain(self.tag.iter())
    }
}

/// How an image was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOrigin {
    /// By its shape in the values.
    Detected,
    /// Through `repository.fluxcd.io/<c>` path annotations.
    Annotated,
}

/// One image of a HelmRelease's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValuesImage {
    /// The container name automation and policies use (`chart-image`, a key, or an alias).
    pub container: String,
    /// The image as the values compose it, in the user's spelling.
    pub image: ImageRef,
    /// Where its parts are.
    pub paths: ImagePaths,
    /// How it was found.
    pub origin: ImageOrigin,
    /// The string at `paths.repository`, as written.
    repository_value: String,
}

/// One scalar a write-back sets: the value at `path` becomes the string `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueUpdate {
    /// Where, below `spec.values`.
    pub path: ValuePath,
    /// The new string.
    pub value: String,
}

impl ValuesImage {
    /// The scalars to change so that this image carries `tag`, keeping the shape and the
    /// spelling of everything else: only the tag field when the tag is separate, else the
    /// repository string with its tag replaced (and any digest dropped). Empty when the tag is
    /// already `tag`.
    ///
    /// # Errors
    ///
    /// [`ImageRefError`] when `tag` is not a valid tag.
    pub fn tag_update(&self, tag: &str) -> Result<Vec<ValueUpdate>, ImageRefError> {
        // Validates `tag` before anything is compared or built.
        self.image.with_tag(tag)?;
        if self.image.tag() == Some(tag) && self.image.digest().is_none() {
            return Ok(Vec::new());
        }
        let update = match &self.paths.tag {
            Some(path) => ValueUpdate {
                path: path.clone(),
                value: tag.to_owned(),
            },
            None => ValueUpdate {
                path: self.paths.repository.clone(),
                value: ImageRef::parse(&self.repository_value)?
                    .with_tag(tag)?
                    .to_string(),
            },
        };
        Ok(vec![update])
    }
}

/// A container whose image could not be read. The other containers are unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValuesImageError {
    /// A value that should hold (part of) an image is not a string (`tag: 1.2` unquoted).
    #[error("container {container:?}: spec.values.{path} is a {kind}, not a string ({value})")]
    NotAString {
        /// Container name.
        container: String,
        /// The path.
        path: ValuePath,
        /// What it is instead.
        kind: &'static str,
        /// The value as JSON.
        value: String,
    },
    /// The image does not parse.
    #[error("container {container:?}: spec.values.{path}: {source}")]
    BadImage {
        /// Container name.
        container: String,
        /// The repository path.
        path: ValuePath,
        /// The parse error, which names the value.
        #[source]
        source: ImageRefError,
    },
    /// A path named by an annotation does not exist in the values.
    #[error("container {container:?}: annotated path spec.values.{path} does not exist")]
    MissingPath {
        /// Container name.
        container: String,
        /// The path.
        path: ValuePath,
    },
    /// `registry.fluxcd.io/<c>` or `tag.fluxcd.io/<c>` without `repository.fluxcd.io/<c>`.
    #[error(
        "container {container:?}: registry or tag path annotations need repository.fluxcd.io/{container}"
    )]
    MissingRepositoryAnnotation {
        /// Container name.
        container: String,
    },
}

/// What [`find_images`] found: images sorted with [`CHART_IMAGE`] first then by container name,
/// and the containers it could not read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundImages {
    /// The images found.
    pub images: Vec<ValuesImage>,
    /// Containers that look like images but could not be read.
    pub problems: Vec<ValuesImageError>,
}

/// Finds the images in `values`, with the HelmRelease's image path annotations
/// ([`crate::annotations::Policies::image_paths`]) overriding detection.
#[must_use]
pub fn find_images(
    path_annotations: &BTreeMap<String, ImagePathAnnotations>,
    values: &Values,
) -> FoundImages {
    let mut found: BTreeMap<String, ValuesImage> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut record = |result: Option<Result<ValuesImage, ValuesImageError>>| match result {
        Some(Ok(image)) => {
            found.insert(image.container.clone(), image);
        }
        Some(Err(problem)) => problems.push(problem),
        None => {}
    };
    record(interpret_container(
        CHART_IMAGE,
        values,
        &ValuePath::default(),
    ));
    for (key, value) in values {
        if let Value::Object(inner) = value {
            record(interpret_container(
                key,
                inner,
                &ValuePath::new([key.as_str()]),
            ));
        }
    }
    for (alias, annotation) in path_annotations {
        match interpret_mapped(alias, annotation, values) {
            Ok(image) => {
                let claimed: Vec<&ValuePath> = image.paths.all().collect();
                found.retain(|name, other| {
                    name != alias && !other.paths.all().any(|p| claimed.contains(&p))
                });
                found.insert(alias.clone(), image);
            }
            Err(problem) => problems.push(problem),
        }
    }
    let mut images: Vec<ValuesImage> = found.into_values().collect();
    images.sort_by(|a, b| {
        (a.container != CHART_IMAGE, &a.container).cmp(&(b.container != CHART_IMAGE, &b.container))
    });
    FoundImages { images, problems }
}

/// A string at `path`, `Ok(None)` when absent, an error when present but not a string.
fn string_at<'a>(
    container: &str,
    map: &'a Values,
    key: &str,
    path: &ValuePath,
) -> Result<Option<&'a str>, ValuesImageError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(not_a_string(container, path.child(key), other)),
    }
}

fn not_a_string(container: &str, path: ValuePath, value: &Value) -> ValuesImageError {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    };
    ValuesImageError::NotAString {
        container: container.to_owned(),
        path,
        kind,
        value: value.to_string(),
    }
}

/// `map` holds `image` (a string, with optional `registry`/`tag` siblings, or a mapping with
/// `repository` and optional `registry`/`tag`). `None` when it holds no image.
fn interpret_container(
    container: &str,
    map: &Values,
    prefix: &ValuePath,
) -> Option<Result<ValuesImage, ValuesImageError>> {
    match map.get(IMAGE)? {
        Value::String(_) => Some(compose(container, map, prefix, IMAGE)),
        Value::Object(inner) if inner.contains_key(REPOSITORY) => {
            Some(compose(container, inner, &prefix.child(IMAGE), REPOSITORY))
        }
        _ => None,
    }
}

/// Composes the image from `map[name_key]` and the optional `registry`/`tag` siblings.
fn compose(
    container: &str,
    map: &Values,
    prefix: &ValuePath,
    name_key: &str,
) -> Result<ValuesImage, ValuesImageError> {
    let name = string_at(container, map, name_key, prefix)?.unwrap_or_default();
    // A `registry` sibling that is not a string is some other chart setting, as in Flux v1.
    let registry = match map.get(REGISTRY) {
        Some(Value::String(r)) => Some(r.as_str()),
        _ => None,
    };
    let tag = string_at(container, map, TAG, prefix)?;
    build(
        container,
        registry.map(|r| (prefix.child(REGISTRY), r)),
        (prefix.child(name_key), name),
        tag.map(|t| (prefix.child(TAG), t)),
        ImageOrigin::Detected,
    )
}

fn interpret_mapped(
    container: &str,
    annotation: &ImagePathAnnotations,
    values: &Values,
) -> Result<ValuesImage, ValuesImageError> {
    let Some(repository) = &annotation.repository else {
        return Err(ValuesImageError::MissingRepositoryAnnotation {
            container: container.to_owned(),
        });
    };
    let lookup = |dotted: &str| -> Result<(ValuePath, &str), ValuesImageError> {
        let path = ValuePath::from_dotted(dotted);
        match path.get(values) {
            None => Err(ValuesImageError::MissingPath {
                container: container.to_owned(),
                path,
            }),
            Some(Value::String(text)) => Ok((path, text.as_str())),
            Some(other) => Err(not_a_string(container, path, other)),
        }
    };
    let repository = lookup(repository)?;
    let registry = annotation.registry.as_deref().map(lookup).transpose()?;
    let tag = annotation.tag.as_deref().map(lookup).transpose()?;
    build(container, registry, repository, tag, ImageOrigin::Annotated)
}

fn build(
    container: &str,
    registry: Option<(ValuePath, &str)>,
    (repository_path, repository_value): (ValuePath, &str),
    tag: Option<(ValuePath, &str)>,
    origin: ImageOrigin,
) -> Result<ValuesImage, ValuesImageError> {
    let bad = |source| ValuesImageError::BadImage {
        container: container.to_owned(),
        path: repository_path.clone(),
        source,
    };
    let mut image = match &registry {
        Some((_, host)) if !host.is_empty() => {
            ImageRef::parse(&format!("{host}/{repository_value}"))
        }
        _ => ImageRef::parse(repository_value),
    }
    .map_err(bad)?;
    if let Some((_, tag)) = tag.as_ref().filter(|(_, t)| !t.is_empty()) {
        image = image.with_tag(tag).map_err(bad)?;
    }
    Ok(ValuesImage {
        container: container.to_owned(),
        image,
        paths: ImagePaths {
            registry: registry.map(|(path, _)| path),
            repository: repository_path,
            tag: tag.map(|(path, _)| path),
        },
        origin,
        repository_value: repository_value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(yaml: &str) -> Values {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn find(yaml: &str) -> FoundImages {
        find_images(&BTreeMap::new(), &values(yaml))
    }

    fn summary(found: &FoundImages) -> Vec<String> {
        found
            .images
            .iter()
            .map(|i| {
                let paths: Vec<String> = i.paths.all().map(ToString::to_string).collect();
                format!("{} {} [{}]", i.container, i.image, paths.join(","))
            })
            .collect()
    }

    #[test]
    fn every_flux_v1_shape_is_detected_at_top_level() {
        let cases = [
            ("image: repo/app:1.0", "chart-image repo/app:1.0 [image]"),
            (
                "image: repo/app\ntag: '1.0'",
                "chart-image repo/app:1.0 [image,tag]",
            ),
            (
                "registry: quay.io\nimage: repo/app\ntag: '1.0'",
                "chart-image quay.io/repo/app:1.0 [registry,image,tag]",
            ),
            (
                "image: {repository: repo/app, tag: '1.0'}",
                "chart-image repo/app:1.0 [image.repository,image.tag]",
            ),
            (
                "image: {registry: quay.io, repository: repo/app, tag: '1.0'}",
                "chart-image quay.io/repo/app:1.0 [image.registry,image.repository,image.tag]",
            ),
        ];
        for (yaml, expected) in cases {
            let found = find(yaml);
            assert_eq!(summary(&found), [expected], "{yaml}");
            assert!(found.problems.is_empty(), "{yaml}: {:?}", found.problems);
        }
    }

    #[test]
    fn images_one_level_down_are_named_after_their_key_and_sorted_after_chart_image() {
        let found = find(
            "
image: top/app:1
zeta: {image: z/app:2}
alpha:
  image: {repository: a/app, tag: '3'}
deep: {nested: {image: not/found:4}}
",
        );
        assert_eq!(
            summary(&found),
            [
                "chart-image top/app:1 [image]",
                "alpha a/app:3 [alpha.image.repository,alpha.image.tag]",
                "zeta z/app:2 [zeta.image]",
            ]
        );
    }

    #[test]
    fn tag_updates_touch_only_the_tag_and_keep_spelling() {
        let found = find("image: {repository: Index.docker.io/library/nginx, tag: '1.0'}");
        let update = found.images[0].tag_update("1.1").unwrap();
        assert_eq!(
            update,
            [ValueUpdate {
                path: ValuePath::new(["image", "tag"]),
                value: "1.1".into()
            }]
        );

        let found = find("registry: quay.io\nimage: org/app:1.0\n");
        let update = found.images[0].tag_update("1.1").unwrap();
        assert_eq!(
            update,
            [ValueUpdate {
                path: ValuePath::new(["image"]),
                value: "org/app:1.1".into()
            }]
        );

        assert!(found.images[0].tag_update("1.0").unwrap().is_empty());
        assert!(found.images[0].tag_update("bad tag").is_err());
    }

    #[test]
    fn annotated_paths_override_detection() {
        let annotations = BTreeMap::from([(
            "app".to_owned(),
            ImagePathAnnotations {
                registry: None,
                repository: Some("image.repository".into()),
                tag: Some("image.tag".into()),
            },
        )]);
        let found = find_images(
            &annotations,
            &values("image: {repository: repo/app, tag: '1.0'}"),
        );
        assert_eq!(
            summary(&found),
            ["app repo/app:1.0 [image.repository,image.tag]"]
        );
        assert_eq!(found.images[0].origin, ImageOrigin::Annotated);
    }

    #[test]
    fn unreadable_containers_are_reported_and_the_rest_kept() {
        let annotations = BTreeMap::from([
            (
                "ghost".to_owned(),
                ImagePathAnnotations {
                    repository: Some("no.such.path".into()),
                    ..ImagePathAnnotations::default()
                },
            ),
            (
                "tagonly".to_owned(),
                ImagePathAnnotations {
                    tag: Some("x.tag".into()),
                    ..ImagePathAnnotations::default()
                },
            ),
        ]);
        let found = find_images(
            &annotations,
            &values(
                "good: {image: ok/app:1}\nnumeric: {image: repo/app, tag: 1.2}\nbroken: {image: 'UPPER:'}\n",
            ),
        );
        assert_eq!(summary(&found), ["good ok/app:1 [good.image]"]);
        let messages: Vec<String> = found.problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("numeric.tag is a number, not a string (1.2)"))
        );
        assert!(messages.iter().any(|m| m.contains("\"UPPER:\"")));
        assert!(
            messages
                .iter()
                .any(|m| m.contains("no.such.path does not exist"))
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("need repository.fluxcd.io/tagonly"))
        );
    }
}

//! Tag filters (`glob:`, `semver:`, `regex:`) and the choice of the newest tag a filter allows.
//!
//! Mirrors Flux v1 `pkg/policy/pattern.go`, `pkg/image/image.go` and `pkg/update/images.go`:
//!
//! - A filter without a prefix is a glob; the empty filter is `glob:*`. `regexp:` is an alias of
//!   `regex:`. A regex is unanchored unless it says `^…$`.
//! - `semver:` takes ranges as users write them for Masterminds semver: `~1.0`, `^1.2`,
//!   `>=1.0 <2.0`, `1.2.x`, `1.2 - 1.4`, `>=1.0, <2.0`, alternatives joined by `||`. A bare
//!   version (`1.2`) means that version and its patches (`=1.2`). Pre-release tags are allowed
//!   only when a comparator of the same alternative carries a pre-release (`>=1.0.0-0`).
//! - The newest tag: for `semver:` the highest version (tags that are not versions are never
//!   chosen; a leading `v` and missing minor/patch parts are accepted, `1.10.0` beats `1.10`);
//!   for `glob:` and `regex:` the latest creation time, ties broken by the greater tag.
//! - `latest` is never chosen unless the filter is exactly `glob:latest`.
//!
//! Deliberate differences from Flux v1: an invalid regex in a manifest is an error here (Flux v1
//! silently matched everything); a tag that contains `:` can never exist, so `word:rest` with an
//! unknown `word` is reported as an unknown prefix instead of being read as a glob; and ties in
//! creation time go to the greater tag (Flux v1 took the smaller one), which picks `dev-002` over
//! `dev-001` for images built reproducibly with the same timestamp. Creation times at or before
//! the Unix epoch count as unknown, and a tag with an unknown time is only chosen when no
//! matching tag has a known one.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use semver::{Prerelease, Version};

/// The prefixes a tag filter may start with.
const GLOB: &str = "glob";
const SEMVER: &str = "semver";
const REGEX: &str = "regex";
const REGEXP: &str = "regexp";

/// The tag that is only chosen when asked for by name.
const LATEST: &str = "latest";

/// Errors from parsing a tag filter. Every variant carries the whole filter as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The filter starts with `word:` and `word` is none of `glob`, `semver`, `regex`, `regexp`.
    #[error(
        "failed to parse tag filter {input:?}: unknown prefix {prefix:?} (expected glob:, semver:, regex: or regexp:)"
    )]
    UnknownPrefix {
        /// The filter as written.
        input: String,
        /// The unknown prefix, without the colon.
        prefix: String,
    },
    /// The `semver:` range does not parse.
    #[error("failed to parse tag filter {input:?}: invalid semver range: {reason}")]
    InvalidSemverRange {
        /// The filter as written.
        input: String,
        /// What is wrong with the range.
        reason: String,
    },
    /// The `regex:` pattern does not compile.
    #[error("failed to parse tag filter {input:?}: invalid regex: {reason}")]
    InvalidRegex {
        /// The filter as written.
        input: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// The `glob:` pattern does not compile.
    #[error("failed to parse tag filter {input:?}: invalid glob: {reason}")]
    InvalidGlob {
        /// The filter as written.
        input: String,
        /// The glob compiler's message.
        reason: String,
    },
}

/// Which kind of pattern a [`TagFilter`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterKind {
    /// Shell-style glob over the whole tag (`*`, `?`, `[…]`, `{a,b}`).
    Glob,
    /// Semantic version range.
    Semver,
    /// Regular expression, unanchored.
    Regex,
}

impl FilterKind {
    /// The prefix that spells this kind (`glob`, `semver`, `regex`), without the colon.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Glob => GLOB,
            Self::Semver => SEMVER,
            Self::Regex => REGEX,
        }
    }
}

#[derive(Clone, Debug)]
enum Matcher {
    Glob(globset::GlobMatcher),
    Semver(SemverRange),
    Regex(regex::Regex),
}

/// A parsed tag filter: the value of `fluxcd.io/tag.<container>` or `filter.fluxcd.io/<container>`.
///
/// `Display` prints the canonical spelling `<kind>:<pattern>` (`glob:*`, `semver:~1.0`,
/// `regex:^1.2.*`); two filters are equal when their canonical spellings are.
#[derive(Clone, Debug)]
pub struct TagFilter {
    kind: FilterKind,
    pattern: String,
    matcher: Matcher,
}

impl TagFilter {
    /// The filter that allows every tag but `latest`: `glob:*`, the default.
    #[must_use]
    pub fn all() -> Self {
        Self::glob("*", "*").unwrap_or_else(|_| unreachable!("`*` is a valid glob"))
    }

    /// Parses a filter as written in an annotation.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for an unknown prefix, an invalid semver range, regex or glob.
    pub fn parse(input: &str) -> Result<Self, PolicyError> {
        let text = input.trim();
        match text.split_once(':') {
            None => Self::glob(input, text),
            Some((GLOB, pattern)) => Self::glob(input, pattern),
            Some((SEMVER, range)) => {
                let constraint = SemverRange::parse(range).map_err(|reason| {
                    PolicyError::InvalidSemverRange {
                        input: input.to_owned(),
                        reason,
                    }
                })?;
                Ok(Self {
                    kind: FilterKind::Semver,
                    pattern: range.trim().to_owned(),
                    matcher: Matcher::Semver(constraint),
                })
            }
            Some((REGEX | REGEXP, pattern)) => {
                let regex =
                    regex::Regex::new(pattern).map_err(|err| PolicyError::InvalidRegex {
                        input: input.to_owned(),
                        reason: err.to_string(),
                    })?;
                Ok(Self {
                    kind: FilterKind::Regex,
                    pattern: pattern.to_owned(),
                    matcher: Matcher::Regex(regex),
                })
            }
            Some((prefix, _)) => Err(PolicyError::UnknownPrefix {
                input: input.to_owned(),
                prefix: prefix.to_owned(),
            }),
        }
    }

    fn glob(input: &str, pattern: &str) -> Result<Self, PolicyError> {
        let pattern = if pattern.is_empty() { "*" } else { pattern };
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|err| PolicyError::InvalidGlob {
                input: input.to_owned(),
                reason: err.kind().to_string(),
            })?;
        Ok(Self {
            kind: FilterKind::Glob,
            pattern: pattern.to_owned(),
            matcher: Matcher::Glob(glob.compile_matcher()),
        })
    }

    /// The kind of pattern.
    #[must_use]
    pub fn kind(&self) -> FilterKind {
        self.kind
    }

    /// The pattern without its prefix (`dev-*`, `~1.0`, `^1.2.*`).
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether this is the default filter `glob:*`, which Flux v1 wrote as "no filter".
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.kind == FilterKind::Glob && self.pattern == "*"
    }

    /// Whether the filter allows `tag`, before the `latest` rule of [`TagFilter::newest`].
    #[must_use]
    pub fn matches(&self, tag: &str) -> bool {
        match &self.matcher {
            Matcher::Glob(glob) => glob.is_match(tag),
            Matcher::Regex(regex) => regex.is_match(tag),
            Matcher::Semver(range) => parse_tag_version(tag).is_some_and(|v| range.matches(&v)),
        }
    }

    /// Whether `tag` may be chosen as the newest: it matches, and it is not `latest` (in any
    /// case) unless the filter is exactly `glob:latest`.
    #[must_use]
    pub fn allows(&self, tag: &str) -> bool {
        let latest_allowed = self.kind == FilterKind::Glob && self.pattern == LATEST;
        (latest_allowed || !tag.eq_ignore_ascii_case(LATEST)) && self.matches(tag)
    }

    /// The newest candidate this filter allows, or `None` when none is allowed.
    ///
    /// Ordering as described in the module docs: by version for `semver:`, by creation time
    /// (ties and unknown times broken by the greater tag) for `glob:` and `regex:`.
    pub fn newest<'a, C: TagCandidate>(&self, candidates: &'a [C]) -> Option<&'a C> {
        let allowed = candidates.iter().filter(|c| self.allows(c.tag()));
        match self.kind {
            FilterKind::Semver => allowed
                .filter_map(|c| parse_tag_version(c.tag()).map(|v| (v, c)))
                .max_by(|(va, a), (vb, b)| va.cmp(vb).then_with(|| a.tag().cmp(b.tag())))
                .map(|(_, c)| c),
            FilterKind::Glob | FilterKind::Regex => allowed.max_by(|a, b| {
                known_time(a.created())
                    .cmp(&known_time(b.created()))
                    .then_with(|| a.tag().cmp(b.tag()))
            }),
        }
    }
}

/// A creation time that counts: `None` for unknown, epoch-zero or earlier times.
fn known_time(created: Option<SystemTime>) -> Option<SystemTime> {
    created.filter(|t| *t > SystemTime::UNIX_EPOCH)
}

impl Default for TagFilter {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.pattern)
    }
}

impl PartialEq for TagFilter {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.pattern == other.pattern
    }
}

impl Eq for TagFilter {}

impl FromStr for TagFilter {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A tag offered to [`TagFilter::newest`], with its image's creation time when known.
pub trait TagCandidate {
    /// The tag (`1.0.1`, `dev-abc`).
    fn tag(&self) -> &str;
    /// When the image was created, if known.
    fn created(&self) -> Option<SystemTime>;
}

impl<S: AsRef<str>> TagCandidate for (S, Option<SystemTime>) {
    fn tag(&self) -> &str {
        self.0.as_ref()
    }

    fn created(&self) -> Option<SystemTime> {
        self.1
    }
}

/// Reads a tag as a version the way Masterminds `NewVersion` did: optional `v`, one to three
/// numeric parts (missing parts are zero), optional `-pre-release` and `+build`.
#[must_use]
pub fn parse_tag_version(tag: &str) -> Option<Version> {
    let text = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    let (text, build) = match text.split_once('+') {
        Some((t, b)) => (t, Some(b)),
        None => (text, None),
    };
    let (core, pre) = match text.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (text, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut numbers = [0_u64; 3];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        *slot = parse_numeric(part)?;
    }
    let mut version = Version::new(numbers[0], numbers[1], numbers[2]);
    if let Some(pre) = pre {
        version.pre = Prerelease::new(pre).ok()?;
    }
    if let Some(build) = build {
        version.build = semver::BuildMetadata::new(build).ok()?;
    }
    Some(version)
}

/// A decimal number without sign or leading zeros.
fn parse_numeric(part: &str) -> Option<u64> {
    let ok = !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_digit())
        && (part == "0" || !part.starts_with('0'));
    if ok { part.parse().ok() } else { None }
}

/// A Masterminds-style semver range: alternatives (`||`) of comparator sets (AND).
#[derive(Clone, Debug)]
struct SemverRange {
    alternatives: Vec<ComparatorSet>,
}

#[derive(Clone, Debug)]
struct ComparatorSet {
    comparators: Vec<Comparator>,
    /// Whether pre-release versions may match: some comparator names a pre-release.
    allows_prerelease: bool,
}

/// One comparator as an interval of versions, or the complement of one (`!=`).
#[derive(Clone, Debug)]
struct Comparator {
    lower: Bound,
    upper: Bound,
    negated: bool,
}

#[derive(Clone, Debug)]
enum Bound {
    Unbounded,
    Inclusive(Version),
    Exclusive(Version),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Exact,
    NotEqual,
    Greater,
    GreaterEq,
    Less,
    LessEq,
    Tilde,
    Caret,
}

/// A version as written in a range: missing minor/patch parts are wildcards.
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Prerelease,
}

impl SemverRange {
    fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the range is empty".to_owned());
        }
        let alternatives = text
            .split("||")
            .map(ComparatorSet::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { alternatives })
    }

    fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|set| set.matches(version))
    }
}

impl ComparatorSet {
    fn parse(text: &str) -> Result<Self, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(format!("empty alternative in {text:?}"));
        }
        let mut comparators = Vec::new();
        let mut allows_prerelease = false;
        let mut i = 0;
        while i < tokens.len() {
            // Hyphen range: `1.2 - 1.4.5` means `>=1.2 <=1.4.5`.
            if tokens.get(i + 1).map(String::as_str) == Some("-") {
                let upper = tokens
                    .get(i + 2)
                    .ok_or_else(|| format!("hyphen range without an upper bound in {text:?}"))?;
                let low = parse_partial(&tokens[i])?;
                let high = parse_partial(upper)?;
                allows_prerelease |= !low.pre.is_empty() || !high.pre.is_empty();
                comparators.push(Comparator::new(Op::GreaterEq, &low));
                comparators.push(Comparator::new(Op::LessEq, &high));
                i += 3;
                continue;
            }
            let (op, version) = split_operator(&tokens[i])?;
            let partial = parse_partial(version)?;
            allows_prerelease |= !partial.pre.is_empty();
            comparators.push(Comparator::new(op, &partial));
            i += 1;
        }
        Ok(Self {
            comparators,
            allows_prerelease,
        })
    }

    fn matches(&self, version: &Version) -> bool {
        (version.pre.is_empty() || self.allows_prerelease)
            && self.comparators.iter().all(|c| c.matches(version))
    }
}

/// Splits on whitespace and commas, gluing a lone operator to the version after it.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op: Option<&str> = None;
    for word in text.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        let is_operator = word
            .chars()
            .all(|c| matches!(c, '=' | '>' | '<' | '~' | '^' | '!'));
        if is_operator && word != "-" {
            if pending_op.is_some() {
                return Err(format!("two operators in a row in {text:?}"));
            }
            pending_op = Some(word);
        } else if let Some(op) = pending_op.take() {
            tokens.push(format!("{op}{word}"));
        } else {
            tokens.push(word.to_owned());
        }
    }
    match pending_op {
        Some(op) => Err(format!("operator {op:?} without a version in {text:?}")),
        None => Ok(tokens),
    }
}

fn split_operator(token: &str) -> Result<(Op, &str), String> {
    const OPS: [(&str, Op); 10] = [
        ("~>", Op::Tilde),
        (">=", Op::GreaterEq),
        ("<=", Op::LessEq),
        ("!=", Op::NotEqual),
        ("==", Op::Exact),
        ("=", Op::Exact),
        (">", Op::Greater),
        ("<", Op::Less),
        ("~", Op::Tilde),
        ("^", Op::Caret),
    ];
    for (spelling, op) in OPS {
        if let Some(rest) = token.strip_prefix(spelling) {
            if rest.is_empty() {
                return Err(format!("operator {spelling:?} without a version"));
            }
            return Ok((op, rest));
        }
    }
    Ok((Op::Exact, token))
}

/// `1`, `1.2`, `v1.2.3-rc.1`, `1.x`, `1.2.*`, `*`.
fn parse_partial(text: &str) -> Result<Partial, String> {
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let text = text.split_once('+').map_or(text, |(t, _)| t);
    let (core, pre) = match text.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (text, None),
    };
    let mut parts = [None; 3];
    let pieces: Vec<&str> = core.split('.').collect();
    if pieces.len() > 3 {
        return Err(format!("{text:?} has more than three version parts"));
    }
    let mut wildcard_seen = false;
    for (slot, piece) in parts.iter_mut().zip(&pieces) {
        if matches!(*piece, "x" | "X" | "*") {
            wildcard_seen = true;
            continue;
        }
        if wildcard_seen {
            return Err(format!("{text:?} has a number after a wildcard"));
        }
        *slot = Some(
            parse_numeric(piece)
                .ok_or_else(|| format!("{piece:?} in {text:?} is not a version number"))?,
        );
    }
    let pre = match pre {
        Some(p) => {
            if parts.iter().any(Option::is_none) {
                return Err(format!(
                    "{text:?} has a pre-release but not all three version parts"
                ));
            }
            Prerelease::new(p).map_err(|err| format!("{p:?} in {text:?}: {err}"))?
        }
        None => Prerelease::EMPTY,
    };
    Ok(Partial {
        major: parts[0],
        minor: parts[1],
        patch: parts[2],
        pre,
    })
}

/// The smallest version with this core: `M.m.p-0`.
fn floor(major: u64, minor: u64, patch: u64) -> Version {
    let mut v = Version::new(major, minor, patch);
    v.pre = Prerelease::new("0").unwrap_or(Prerelease::EMPTY);
    v
}

impl Comparator {
    fn new(op: Op, p: &Partial) -> Self {
        use Bound::{Exclusive, Inclusive, Unbounded};
        let full = |major, minor, patch| {
            let mut v = Version::new(major, minor, patch);
            v.pre = p.pre.clone();
            v
        };
        // The interval `[start, end)` a partial version covers as an exact match.
        let span = || -> (Bound, Bound) {
            match (p.major, p.minor, p.patch) {
                (None, _, _) => (Unbounded, Unbounded),
                (Some(ma), None, _) => (
                    Inclusive(Version::new(ma, 0, 0)),
                    Exclusive(floor(ma + 1, 0, 0)),
                ),
                (Some(ma), Some(mi), None) => (
                    Inclusive(Version::new(ma, mi, 0)),
                    Exclusive(floor(ma, mi + 1, 0)),
                ),
                (Some(ma), Some(mi), Some(pa)) => {
                    (Inclusive(full(ma, mi, pa)), Inclusive(full(ma, mi, pa)))
                }
            }
        };
        let (lower, upper) = match op {
            Op::Exact | Op::NotEqual => span(),
            Op::GreaterEq => (span().0, Unbounded),
            Op::LessEq => (Unbounded, span().1),
            Op::Greater => match span().1 {
                Inclusive(v) => (Exclusive(v), Unbounded),
                Exclusive(v) => (Inclusive(v), Unbounded),
                // `>*` matches nothing.
                Unbounded => (
                    Exclusive(Version::new(u64::MAX, u64::MAX, u64::MAX)),
                    Unbounded,
                ),
            },
            Op::Less => match span().0 {
                Inclusive(v) if p.patch.is_some() => (Unbounded, Exclusive(v)),
                Inclusive(v) => (Unbounded, Exclusive(floor(v.major, v.minor, v.patch))),
                // `<*` matches nothing.
                _ => (Unbounded, Exclusive(Version::new(0, 0, 0))),
            },
            Op::Tilde => match (p.major, p.minor, p.patch) {
                (None, _, _) => (Unbounded, Unbounded),
                (Some(ma), None, _) => (
                    Inclusive(Version::new(ma, 0, 0)),
                    Exclusive(floor(ma + 1, 0, 0)),
                ),
                (Some(ma), Some(mi), pa) => (
                    Inclusive(full(ma, mi, pa.unwrap_or(0))),
                    Exclusive(floor(ma, mi + 1, 0)),
                ),
            },
            Op::Caret => match (p.major, p.minor, p.patch) {
                (None, _, _) => (Unbounded, Unbounded),
                (Some(ma), None, _) => (
                    Inclusive(Version::new(ma, 0, 0)),
                    Exclusive(floor(ma + 1, 0, 0)),
                ),
                (Some(0), Some(0), None) => {
                    (Inclusive(Version::new(0, 0, 0)), Exclusive(floor(0, 1, 0)))
                }
                (Some(0), Some(0), Some(pa)) => {
                    (Inclusive(full(0, 0, pa)), Exclusive(floor(0, 0, pa + 1)))
                }
                (Some(0), Some(mi), pa) => (
                    Inclusive(full(0, mi, pa.unwrap_or(0))),
                    Exclusive(floor(0, mi + 1, 0)),
                ),
                (Some(ma), Some(mi), pa) => (
                    Inclusive(full(ma, mi, pa.unwrap_or(0))),
                    Exclusive(floor(ma + 1, 0, 0)),
                ),
            },
        };
        Self {
            lower,
            upper,
            negated: op == Op::NotEqual,
        }
    }

    fn matches(&self, version: &Version) -> bool {
        let above = match &self.lower {
            Bound::Unbounded => true,
            Bound::Inclusive(v) => cmp_precedence(version, v) != Ordering::Less,
            Bound::Exclusive(v) => cmp_precedence(version, v) == Ordering::Greater,
        };
        let below = match &self.upper {
            Bound::Unbounded => true,
            Bound::Inclusive(v) => cmp_precedence(version, v) != Ordering::Greater,
            Bound::Exclusive(v) => cmp_precedence(version, v) == Ordering::Less,
        };
        (above && below) != self.negated
    }
}

/// Semver precedence: build metadata does not count.
fn cmp_precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch, &a.pre).cmp(&(b.major, b.minor, b.patch, &b.pre))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn allows(filter: &str, tag: &str) -> bool {
        TagFilter::parse(filter).unwrap().allows(tag)
    }

    #[test]
    fn no_prefix_means_glob_and_empty_means_all() {
        assert_eq!(TagFilter::parse("dev-*").unwrap().to_string(), "glob:dev-*");
        assert_eq!(TagFilter::parse("").unwrap(), TagFilter::all());
        assert!(TagFilter::parse("glob:*").unwrap().is_all());
    }

    #[test]
    fn tilde_and_caret_ranges_follow_masterminds() {
        assert!(allows("semver:~1.0", "1.0.9"));
        assert!(!allows("semver:~1.0", "1.1.0"));
        assert!(allows("semver:^1.2", "1.9.0"));
        assert!(!allows("semver:^1.2", "2.0.0"));
        assert!(!allows("semver:^1.2", "1.1.9"));
        assert!(allows("semver:^0.2.3", "0.2.9"));
        assert!(!allows("semver:^0.2.3", "0.3.0"));
        assert!(allows("semver:~>1.2", "1.2.7"));
    }

    #[test]
    fn space_and_comma_separated_comparators_are_and() {
        for range in [
            "semver:>=1.0 <2.0",
            "semver:>=1.0, <2.0",
            "semver:>= 1.0 < 2.0",
        ] {
            assert!(allows(range, "1.0.0"), "{range}");
            assert!(allows(range, "1.99.3"), "{range}");
            assert!(!allows(range, "2.0.0"), "{range}");
            assert!(!allows(range, "0.9.9"), "{range}");
        }
    }

    #[test]
    fn alternatives_hyphen_ranges_and_wildcards() {
        assert!(allows("semver:1.x || >=3.0", "1.4.0"));
        assert!(allows("semver:1.x || >=3.0", "3.1.0"));
        assert!(!allows("semver:1.x || >=3.0", "2.0.0"));
        assert!(allows("semver:1.2 - 1.4", "1.4.9"));
        assert!(!allows("semver:1.2 - 1.4", "1.5.0"));
        assert!(allows("semver:1.2", "1.2.5"));
        assert!(!allows("semver:1.2", "1.3.0"));
        assert!(allows("semver:*", "7.0.0"));
        assert!(!allows("semver:!=1.2.3", "1.2.3"));
        assert!(allows("semver:!=1.2.3", "1.2.4"));
        assert!(allows("semver:>1.2", "1.3.0"));
        assert!(!allows("semver:>1.2", "1.2.9"));
        assert!(!allows("semver:<1.2", "1.2.0-rc.1"));
    }

    #[test]
    fn prereleases_only_when_the_range_names_one() {
        assert!(!allows("semver:>=1.0.0", "1.1.0-rc.1"));
        assert!(!allows("semver:~1.1", "1.1.1-rc.1"));
        assert!(allows("semver:>=1.0.0-0", "1.1.0-rc.1"));
        assert!(allows("semver:>=1.0.0-0 <2.0.0", "1.5.0-beta"));
        assert!(!allows("semver:>=1.0.0-0 <2.0.0", "2.0.0"));
    }

    #[test]
    fn tags_are_read_leniently_as_versions() {
        assert_eq!(parse_tag_version("v1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(parse_tag_version("1.10"), Some(Version::new(1, 10, 0)));
        assert_eq!(parse_tag_version("2"), Some(Version::new(2, 0, 0)));
        assert_eq!(parse_tag_version("dev-abc"), None);
        assert_eq!(parse_tag_version("01.2.3"), None);
        assert_eq!(parse_tag_version("1.2.3.4"), None);
        assert!(parse_tag_version("1.2.3-rc.1+build.5").is_some());
    }

    #[test]
    fn semver_newest_prefers_the_full_spelling_on_equal_versions() {
        let filter = TagFilter::parse("semver:^1").unwrap();
        let tags = [
            ("1.10", None),
            ("1.10.0", None),
            ("1.9.9", None),
            ("notsemver", None),
        ];
        assert_eq!(filter.newest(&tags).map(TagCandidate::tag), Some("1.10.0"));
    }

    #[test]
    fn glob_newest_orders_by_time_then_tag_and_ignores_epoch_times() {
        let at = |s| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let filter = TagFilter::parse("glob:dev-*").unwrap();
        let tags = [
            ("dev-001", at(100)),
            ("dev-002", at(100)),
            ("dev-000", at(50)),
        ];
        assert_eq!(filter.newest(&tags).map(TagCandidate::tag), Some("dev-002"));
        let tags = [
            ("dev-zzz", Some(SystemTime::UNIX_EPOCH)),
            ("dev-aaa", at(1)),
        ];
        assert_eq!(filter.newest(&tags).map(TagCandidate::tag), Some("dev-aaa"));
        let tags: [(&str, Option<SystemTime>); 0] = [];
        assert!(filter.newest(&tags).is_none());
    }

    #[test]
    fn latest_is_only_chosen_by_glob_latest() {
        let tags = [("latest", None), ("Latest", None)];
        assert!(TagFilter::parse("glob:*").unwrap().newest(&tags).is_none());
        assert!(
            TagFilter::parse("regex:.*")
                .unwrap()
                .newest(&tags)
                .is_none()
        );
        assert_eq!(
            TagFilter::parse("glob:latest")
                .unwrap()
                .newest(&tags)
                .map(TagCandidate::tag),
            Some("latest")
        );
        assert_eq!(
            TagFilter::parse("latest")
                .unwrap()
                .newest(&tags)
                .map(TagCandidate::tag),
            Some("latest")
        );
    }

    #[test]
    fn regexp_is_an_alias_and_regexes_are_unanchored() {
        assert_eq!(
            TagFilter::parse("regexp:abc").unwrap(),
            TagFilter::parse("regex:abc").unwrap()
        );
        assert!(allows("regex:abc", "xxabcxx"));
        assert!(!allows("regex:^abc$", "xxabcxx"));
    }
}

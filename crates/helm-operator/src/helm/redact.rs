//! Redaction of secret strings (values that came from Secrets) from text Helm prints, so that
//! errors, Events and logs never carry them.
//!
//! Redaction is textual: each secret is replaced by `***` where it appears verbatim, where it
//! appears escaped as Go and JSON quote it (`\"`, `\\`, `\n`, `\t`), and, for a multi-line secret,
//! wherever one of its lines of 8 characters or more appears. It cannot recognise a secret Helm
//! transformed otherwise (base64-encoded by a template, say); the caller decides which strings are
//! secret.

use std::fmt;

/// What a secret is replaced by.
pub const REDACTED: &str = "***";

/// Lines of a multi-line secret shorter than this are not redacted on their own (they would
/// blank out ordinary words); the whole secret and its escaped forms still are.
const MIN_LINE_LEN: usize = 8;

/// The secret strings of one release, and the redaction of text that may contain them.
///
/// `Debug` shows only how many secrets it holds. Empty strings are ignored.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Every form to replace, longest first (so a secret containing another is replaced whole).
    patterns: Vec<String>,
    /// How many secrets were added (not counting derived forms).
    secrets: usize,
}

impl Redactor {
    /// A redactor for no secrets.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A redactor for `secrets`.
    #[must_use]
    pub fn with_secrets<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut redactor = Self::new();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    /// Adds a secret string (ignored when empty).
    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.is_empty() {
            return;
        }
        self.secrets += 1;
        let escaped = escape(&secret);
        if secret.contains('\n') {
            for line in secret.lines() {
                let line = line.trim();
                if line.len() >= MIN_LINE_LEN {
                    self.push(line.to_owned());
                }
            }
        }
        if escaped != secret {
            self.push(escaped);
        }
        self.push(secret);
    }

    /// Adds every scalar leaf of a values tree (strings, and numbers as written) as a secret: for
    /// values read from a Secret, all of which are secret. Booleans and nulls are not secrets.
    pub fn add_values(&mut self, values: &serde_json::Value) {
        match values {
            serde_json::Value::String(text) => self.add(text.as_str()),
            serde_json::Value::Number(number) => self.add(number.to_string()),
            serde_json::Value::Array(items) => items.iter().for_each(|item| self.add_values(item)),
            serde_json::Value::Object(map) => map.values().for_each(|item| self.add_values(item)),
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Self) {
        self.secrets += other.secrets;
        for pattern in &other.patterns {
            self.push(pattern.clone());
        }
    }

    /// Whether there is nothing to redact.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every secret replaced by `***`.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for pattern in &self.patterns {
            if text.contains(pattern.as_str()) {
                text = text.replace(pattern.as_str(), REDACTED);
            }
        }
        text
    }

    fn push(&mut self, pattern: String) {
        if self.patterns.contains(&pattern) {
            return;
        }
        let at = self
            .patterns
            .iter()
            .position(|p| p.len() < pattern.len())
            .unwrap_or(self.patterns.len());
        self.patterns.insert(at, pattern);
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets)
    }
}

/// `text` as Go's `%q` and JSON escape its backslashes, quotes, newlines and tabs.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_of_every_secret() {
        let redactor = Redactor::with_secrets(["hunter2", "s3cret", ""]);
        assert_eq!(
            redactor.redact("password hunter2, again hunter2, token s3cret; fine"),
            "password ***, again ***, token ***; fine"
        );
        assert_eq!(redactor.redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        let redactor = Redactor::with_secrets(["abc", "xxabcxx"]);
        assert_eq!(redactor.redact("[xxabcxx] [abc]"), "[***] [***]");
    }

    #[test]
    fn escaped_and_multi_line_forms_are_replaced() {
        let redactor = Redactor::with_secrets(["pa\"ss\nword-line-two"]);
        assert_eq!(
            redactor.redact(r#"error="value pa\"ss\nword-line-two rejected""#),
            r#"error="value *** rejected""#
        );
        assert_eq!(
            redactor.redact("line: word-line-two"),
            "line: ***",
            "a long line of a multi-line secret is replaced on its own"
        );
        assert_eq!(
            redactor.redact("pa\"ss"),
            "pa\"ss",
            "short lines are not replaced on their own"
        );
    }

    #[test]
    fn values_leaves_are_secrets_except_booleans_and_nulls() {
        let mut redactor = Redactor::new();
        redactor.add_values(&serde_json::json!({
            "db": {"password": "hunter2", "port": 5432, "tls": true, "hosts": ["db-1.internal"]},
            "empty": null
        }));
        assert_eq!(
            redactor.redact("hunter2 5432 true db-1.internal null"),
            "*** *** true *** null"
        );
    }

    #[test]
    fn debug_shows_only_a_count() {
        let redactor = Redactor::with_secrets(["hunter2", "s3cret"]);
        assert_eq!(format!("{redactor:?}"), "Redactor(2 secrets)");
    }
}

//! Credential-free URLs for logs and errors: [`safe_url`] for one URL, [`redact`] for git's
//! error output.
//!
//! Deliberately lexical: URLs are not parsed or normalised beyond finding the user part, so
//! whatever git accepts is passed to git unchanged.

/// `url` without credentials, for logs and the API: `https://user:token@host/x` → `https://host/x`
/// (for http(s) the whole user part goes, since it often is the token itself);
/// `ssh://git:secret@host/x` → `ssh://git@host/x`. URLs without credentials, scp-like
/// `git@host:path` and local paths are returned unchanged.
pub fn safe_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
    let http = ["http", "https", "ftp", "ftps"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    let user = match userinfo.split_once(':') {
        _ if http => "",
        Some((user, _)) => user,
        None => userinfo,
    };
    let user_at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("{scheme}://{user_at}{host}{}", &rest[authority_end..])
}

/// Whether `url` uses the `http` or `https` scheme (the only ones basic-auth credentials are
/// given for).
pub(crate) fn is_http(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    })
}

/// Removes credentials from `text`: every occurrence of the configured `url` and of any other
/// `scheme://user:password@host` goes through [`safe_url`], and every occurrence of one of
/// `secrets` (non-empty ones) is replaced with `***`.
pub(crate) fn redact(text: &str, url: &str, secrets: &[&str]) -> String {
    let mut text = if url.is_empty() {
        text.to_owned()
    } else {
        text.replace(url, &safe_url(url))
    };
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    let is_delim = |c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '(' | ')' | '<' | '>');
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let at = from + found;
        let start = text[..at].rfind(is_delim).map_or(0, |i| i + 1);
        let end = text[at..].find(is_delim).map_or(text.len(), |i| at + i);
        let safe = safe_url(&text[start..end]);
        text.replace_range(start..end, &safe);
        from = start + safe.len();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_url_removes_credentials() {
        assert_eq!(
            safe_url("https://user:pw@host/org/repo"),
            "https://host/org/repo"
        );
        assert_eq!(
            safe_url("https://token@host/org/repo.git"),
            "https://host/org/repo.git"
        );
        assert_eq!(safe_url("HTTP://u:p@host:8080/r"), "HTTP://host:8080/r");
        assert_eq!(
            safe_url("ssh://git:secret@host:22/r.git"),
            "ssh://git@host:22/r.git"
        );
        assert_eq!(safe_url("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(
            safe_url("git@github.com:org/repo"),
            "git@github.com:org/repo"
        );
        assert_eq!(safe_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(safe_url("file:///tmp/x.git"), "file:///tmp/x.git");
        assert_eq!(safe_url(""), "");
    }

    #[test]
    fn redact_removes_credentials_from_messages() {
        let url = "https://user:s3cret@host/r";
        let text = "fatal: unable to access 'https://user:s3cret@host/r/': x; also http://a:b@c/d";
        let out = redact(text, url, &[]);
        assert!(!out.contains("s3cret") && !out.contains("a:b@"), "{out}");
        assert!(
            out.contains("'https://host/r/'") && out.contains("http://c/d"),
            "{out}"
        );
        let out = redact("remote said: pw-1 is wrong for pw-user", "", &["pw-1", ""]);
        assert_eq!(out, "remote said: *** is wrong for pw-user");
    }

    #[test]
    fn http_schemes() {
        assert!(is_http("https://host/r"));
        assert!(is_http("HTTP://host/r"));
        assert!(!is_http("ssh://git@host/r"));
        assert!(!is_http("git@host:r"));
        assert!(!is_http("file:///r"));
    }
}

//! The `htu` comparison of RFC 9449 §4.3: two HTTP URIs are the same target
//! when they are equal after RFC 3986 syntax-based normalization (§6.2.2:
//! scheme and host in lower case, percent-encodings in upper case and
//! decoded where they stand for unreserved characters, dot segments
//! removed) and scheme-based normalization (§6.2.3: the default port
//! dropped, an empty path as `/`), ignoring query and fragment.
//!
//! Written here rather than with the `url` crate, which the default build
//! of this crate does not compile; the comparison needs no more than this.

use std::fmt;

/// Why a URL cannot be a DPoP target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HtuError {
    /// Not `http` or `https`.
    #[error("the URL's scheme is not http or https")]
    Scheme,
    /// No `//` authority, an empty host, user information, or a bad port.
    #[error("the URL's authority is not a host with an optional port")]
    Authority,
    /// A character that has no place in a URL (a space, a control
    /// character, a non-ASCII character) or a bad percent-encoding.
    #[error("the URL has a character or percent-encoding that is not allowed")]
    Character,
}

/// An HTTP URL normalized for comparison as RFC 9449 §4.3 says: what a
/// proof's `htu` and the request it comes with are compared by.
///
/// ```
/// use oidc_core::dpop::NormalizedUrl;
/// let a = NormalizedUrl::parse("HTTPS://API.Example.com:443/a/./b/../poll?x=1#f").unwrap();
/// let b = NormalizedUrl::parse("https://api.example.com/a/poll").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.as_str(), "https://api.example.com/a/poll");
/// // The path is compared exactly otherwise: case matters there.
/// assert_ne!(b, NormalizedUrl::parse("https://api.example.com/a/Poll").unwrap());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NormalizedUrl(String);

impl NormalizedUrl {
    /// Normalizes `url`; query and fragment are dropped.
    pub fn parse(url: &str) -> Result<Self, HtuError> {
        if url.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(HtuError::Character);
        }
        let (scheme, rest) = url.split_once("://").ok_or(HtuError::Scheme)?;
        let (scheme, default_port) = if scheme.eq_ignore_ascii_case("https") {
            ("https", "443")
        } else if scheme.eq_ignore_ascii_case("http") {
            ("http", "80")
        } else {
            return Err(HtuError::Scheme);
        };
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let rest = &rest[..end];
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(HtuError::Authority);
        }
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return Err(HtuError::Authority);
        }
        let mut out = String::with_capacity(url.len());
        out.push_str(scheme);
        out.push_str("://");
        push_normalized(&host.to_ascii_lowercase(), &mut out)?;
        if let Some(port) = port.filter(|port| *port != default_port) {
            out.push(':');
            out.push_str(port);
        }
        let mut path_text = String::with_capacity(path.len());
        push_normalized(path, &mut path_text)?;
        let path = remove_dot_segments(&path_text);
        if path.is_empty() {
            out.push('/');
        } else {
            out.push_str(&path);
        }
        Ok(Self(out))
    }

    /// The normalized URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NormalizedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NormalizedUrl({:?})", self.0)
    }
}

/// The host and the port (digits, without leading zeros dropped: `:0443`
/// is another port text, not the default) of an authority.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), HtuError> {
    let (host, port) = if authority.starts_with('[') {
        // An IP literal: the port follows the closing bracket.
        let close = authority.find(']').ok_or(HtuError::Authority)?;
        let (host, rest) = authority.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return Err(HtuError::Authority),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // An empty port is the default one (RFC 3986 §6.2.3).
    let port = port.filter(|port| !port.is_empty());
    if port.is_some_and(|port| port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit())) {
        return Err(HtuError::Authority);
    }
    Ok((host, port))
}

/// Appends `text` with its percent-encodings normalized: those of
/// unreserved characters decoded, the others in upper case.
fn push_normalized(text: &str, out: &mut String) -> Result<(), HtuError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(HtuError::Character)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or(HtuError::Character)?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(
                    &hex.to_ascii_uppercase()
                        .iter()
                        .map(|b| char::from(*b))
                        .collect::<String>(),
                );
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Ok(())
}

/// RFC 3986 §5.2.4, on a path of segments.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            other => {
                output.push(other);
                trailing_slash = false;
            }
        }
    }
    if path.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(path.len());
    for segment in &output {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(url: &str) -> String {
        NormalizedUrl::parse(url).unwrap().0
    }

    #[test]
    fn normalizes_as_rfc_3986_and_9449_say() {
        assert_eq!(
            n("https://server.example.com/token"),
            "https://server.example.com/token"
        );
        assert_eq!(
            n("HTTPS://Server.EXAMPLE.com:443/token"),
            "https://server.example.com/token"
        );
        assert_eq!(
            n("https://server.example.com:8443/token"),
            "https://server.example.com:8443/token"
        );
        assert_eq!(n("http://h:80"), "http://h/");
        assert_eq!(n("http://h:"), "http://h/");
        assert_eq!(n("https://h:80/x"), "https://h:80/x");
        assert_eq!(n("https://h/a?q=1#frag"), "https://h/a");
        assert_eq!(n("https://h?q"), "https://h/");
        assert_eq!(n("https://h/a/./b/../c"), "https://h/a/c");
        assert_eq!(n("https://h/a/b/.."), "https://h/a/");
        assert_eq!(n("https://h/../../a"), "https://h/a");
        assert_eq!(n("https://h/%7euser/%2f%41"), "https://h/~user/%2FA");
        assert_eq!(n("https://[::1]:443/x"), "https://[::1]/x");
        assert_eq!(n("https://[::1]:8080/x"), "https://[::1]:8080/x");
        // The path keeps its case; a trailing slash is another path.
        assert_ne!(n("https://h/Token"), n("https://h/token"));
        assert_ne!(n("https://h/token/"), n("https://h/token"));
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        for (url, error) in [
            ("ftp://h/x", HtuError::Scheme),
            ("https:/h/x", HtuError::Scheme),
            ("/relative", HtuError::Scheme),
            ("https:///x", HtuError::Authority),
            ("https://user:pw@h/x", HtuError::Authority),
            ("https://h:x/", HtuError::Authority),
            ("https://h:123456/", HtuError::Authority),
            ("https://[::1/x", HtuError::Authority),
            ("https://h/a b", HtuError::Character),
            ("https://h/é", HtuError::Character),
            ("https://h/%zz", HtuError::Character),
            ("https://h/%4", HtuError::Character),
        ] {
            assert_eq!(NormalizedUrl::parse(url), Err(error), "{url}");
        }
    }
}

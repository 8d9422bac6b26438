//! Text a stranger chose (a claim, a kid, a client id, a server's error
//! body), shortened before it goes into an error value, a log field or a
//! message: one policy for every crate here, so no such text is ever
//! unbounded or spans lines.
//!
//! ```
//! use oidc_core::text;
//! let kid = "k".repeat(1000);
//! assert_eq!(text::excerpt(&kid).chars().count(), text::EXCERPT_CHARS + 1);
//! ```

/// How much of a stranger's string [`excerpt`] keeps.
pub const EXCERPT_CHARS: usize = 64;

/// Shortens an attacker-chosen string (a claim, a kid, a client id) before it
/// goes into an error value or a log field, where it is shown quoted
/// (`{:?}`): the first [`EXCERPT_CHARS`] characters, as they are.
pub fn excerpt(s: &str) -> String {
    shorten(s, EXCERPT_CHARS)
}

/// The first `max_chars` characters of `text`, marked with `…` when cut.
///
/// ```
/// use oidc_core::text::shorten;
/// assert_eq!(shorten("abcdef", 3), "abc…");
/// assert_eq!(shorten("abc", 3), "abc");
/// ```
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Text from a stranger made safe for one unquoted line of a message:
/// control characters (line breaks included) become `?`, then [`shorten`].
///
/// ```
/// use oidc_core::text::one_line;
/// assert_eq!(one_line("bad\r\nforged line", 100), "bad??forged line");
/// ```
pub fn one_line(text: &str, max_chars: usize) -> String {
    let line: String = text
        .chars()
        .take(max_chars.saturating_add(1))
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    shorten(&line, max_chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_text_is_one_bounded_line() {
        assert_eq!(one_line("bad\r\nforged line", 200), "bad??forged line");
        let cut = one_line(&"x".repeat(500), 200);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt("short"), "short");
    }
}

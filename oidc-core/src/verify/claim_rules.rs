//! A policy's claim rules: a required value or a glob pattern for a claim,
//! named by its top-level name or, for members nested in objects (AWS STS
//! nests its claims under `"https://sts.amazonaws.com/"`), by an RFC 6901
//! JSON Pointer.
//!
//! - A name that starts with `/` is a JSON Pointer: `/a/b` is member `b` of
//!   the object in claim `a`; `~1` stands for `/` and `~0` for `~` inside a
//!   name (so `/https:~1~1sts.amazonaws.com~1/aws_account`), and a number
//!   indexes an array. Any other name is a top-level claim, taken as it is.
//! - A required value matches a claim equal to it (JSON equality: `"42"` is
//!   not `42`), or an array that holds it (`ou_path`, `aud`, `groups`).
//! - A pattern matches a string claim, or an array holding a string, that it
//!   matches whole: `*` stands for any run of characters (`/` included, as
//!   in IAM's `StringLike`), `?` for one character, anything else for itself.

use serde_json::{Map, Value};

use super::VerifyError;
use crate::text;

/// Where a claim is: a top-level name, or an RFC 6901 JSON Pointer into
/// nested claims (a name starting with `/`; see the [module docs](self)).
///
/// ```
/// use oidc_core::verify::ClaimPath;
/// let claims = serde_json::json!({"https://sts.amazonaws.com/": {"aws_account": "123456789012"}});
/// let path = ClaimPath::parse("/https:~1~1sts.amazonaws.com~1/aws_account").unwrap();
/// assert_eq!(path.find(claims.as_object().unwrap()), Some(&serde_json::json!("123456789012")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPath {
    /// A top-level claim.
    Member(String),
    /// The reference tokens of a JSON Pointer, unescaped.
    Pointer(Vec<String>),
}

impl ClaimPath {
    /// The path a claim rule's name stands for: a JSON Pointer when it
    /// starts with `/`, else a top-level claim. `None` for a pointer that is
    /// not RFC 6901 (`~` followed by anything but `0` or `1`) or has an empty
    /// first token (no claim is named ``).
    pub fn parse(name: &str) -> Option<Self> {
        let Some(pointer) = name.strip_prefix('/') else {
            return Some(Self::Member(name.to_owned()));
        };
        let mut tokens = Vec::new();
        for token in pointer.split('/') {
            let mut unescaped = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    unescaped.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => unescaped.push('~'),
                    Some('1') => unescaped.push('/'),
                    _ => return None,
                }
            }
            tokens.push(unescaped);
        }
        if tokens.first().is_none_or(String::is_empty) {
            return None;
        }
        Some(Self::Pointer(tokens))
    }

    /// The names along the path, unescaped: the claim, then the members
    /// (or array indexes) inside it.
    pub fn segments(&self) -> &[String] {
        match self {
            Self::Member(name) => std::slice::from_ref(name),
            Self::Pointer(tokens) => tokens,
        }
    }

    /// The value at this path in `claims`, if there is one.
    pub fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let tokens = match self {
            Self::Member(name) => return claims.get(name),
            Self::Pointer(tokens) => tokens,
        };
        let (first, rest) = tokens.split_first()?;
        let mut value = claims.get(first)?;
        for token in rest {
            value = match value {
                Value::Object(map) => map.get(token)?,
                Value::Array(items) => items.get(array_index(token)?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// An RFC 6901 array index: digits, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// A glob pattern, matched against a whole string: `*` stands for any run
/// of characters (`/` included, as in IAM's `StringLike`), `?` for one
/// character, anything else for itself. There is no escape: a pattern
/// without `*` or `?` matches exactly itself.
///
/// ```
/// use oidc_core::verify::Glob;
/// let roles = Glob::new("arn:aws:iam::123456789012:role/connectors/*");
/// assert!(roles.matches("arn:aws:iam::123456789012:role/connectors/poller"));
/// assert!(roles.overlaps(&Glob::new("*/poller")));
/// assert!(!roles.overlaps(&Glob::new("arn:aws:iam::999999999999:*")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    /// The pattern `pattern`.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.chars().collect())
    }

    /// Whether the pattern has no `*` or `?`: it matches only itself.
    pub fn is_literal(&self) -> bool {
        !self.0.iter().any(|c| matches!(c, '*' | '?'))
    }

    /// Whether some string matches both `self` and `other` (so neither
    /// pattern can tell the two apart for it). Decided exactly, in
    /// O(len(self) × len(other)) steps, by walking both patterns over one
    /// imagined string: a `*` may match nothing (move past it) or one more
    /// character (stay on it); two positions agree on a character unless
    /// both are different literals.
    pub fn overlaps(&self, other: &Glob) -> bool {
        let (a, b) = (&self.0, &other.0);
        let width = b.len() + 1;
        let mut seen = vec![false; (a.len() + 1) * width];
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, j)) = stack.pop() {
            let slot = i * width + j;
            if seen[slot] {
                continue;
            }
            seen[slot] = true;
            if i == a.len() && j == b.len() {
                return true;
            }
            let (x, y) = (a.get(i).copied(), b.get(j).copied());
            if x == Some('*') {
                stack.push((i + 1, j));
            }
            if y == Some('*') {
                stack.push((i, j + 1));
            }
            if let (Some(x), Some(y)) = (x, y) {
                let agree = matches!(x, '*' | '?') || matches!(y, '*' | '?') || x == y;
                if agree {
                    let next_i = if x == '*' { i } else { i + 1 };
                    let next_j = if y == '*' { j } else { j + 1 };
                    if (next_i, next_j) != (i, j) {
                        stack.push((next_i, next_j));
                    }
                }
            }
        }
        false
    }

    /// Whether `text` matches the whole pattern. Linear backtracking to the
    /// last `*` only: O(pattern × text) at worst, never exponential.
    pub fn matches(&self, text: &str) -> bool {
        let pattern = &self.0;
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    // Let the last `*` take one more character.
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Equals(Value),
    Matches(Glob),
}

/// One rule: the claim named `name` must pass `test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClaimRule {
    name: String,
    path: ClaimPath,
    test: Test,
}

/// Why a rule could not be made.
pub(super) enum RuleError {
    /// A name starting with `/` that is not a valid JSON Pointer.
    Pointer,
}

impl ClaimRule {
    pub(super) fn equals(name: &str, value: &Value) -> Result<Self, RuleError> {
        Ok(Self {
            name: name.to_owned(),
            path: ClaimPath::parse(name).ok_or(RuleError::Pointer)?,
            test: Test::Equals(value.clone()),
        })
    }

    pub(super) fn matches(name: &str, pattern: &str) -> Result<Self, RuleError> {
        Ok(Self {
            name: name.to_owned(),
            path: ClaimPath::parse(name).ok_or(RuleError::Pointer)?,
            test: Test::Matches(Glob::new(pattern)),
        })
    }

    pub(super) fn check(&self, claims: &Map<String, Value>) -> Result<(), VerifyError> {
        let found = self.path.find(claims);
        let passed = found.is_some_and(|value| match (&self.test, value) {
            (Test::Equals(required), Value::Array(items)) => value == required || items.contains(required),
            (Test::Equals(required), _) => value == required,
            (Test::Matches(glob), Value::String(s)) => glob.matches(s),
            (Test::Matches(glob), Value::Array(items)) => items
                .iter()
                .any(|item| item.as_str().is_some_and(|s| glob.matches(s))),
            (Test::Matches(_), _) => false,
        });
        if passed {
            Ok(())
        } else {
            Err(VerifyError::RequiredClaim {
                claim: text::excerpt(&self.name),
                present: found.is_some(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern)
    }

    #[test]
    fn globs_match_whole_strings() {
        let role = glob("arn:aws:iam::123456789012:role/connectors/*");
        assert!(role.matches("arn:aws:iam::123456789012:role/connectors/poller"));
        assert!(role.matches("arn:aws:iam::123456789012:role/connectors/a/b"));
        assert!(role.matches("arn:aws:iam::123456789012:role/connectors/"));
        assert!(!role.matches("arn:aws:iam::123456789012:role/other/poller"));
        assert!(!role.matches("arn:aws:iam::999999999999:role/connectors/poller"));
        assert!(!role.matches("xarn:aws:iam::123456789012:role/connectors/poller"));
        assert!(glob("a?c").matches("abc") && glob("a?c").matches("aéc"));
        assert!(!glob("a?c").matches("ac") && !glob("a?c").matches("abbc"));
        assert!(glob("*").matches("") && glob("**").matches("x"));
        assert!(glob("a*b*c").matches("aXbYbZc") && !glob("a*b*c").matches("aXbYbZ"));
        assert!(glob("").matches("") && !glob("").matches("x"));
        assert!(!glob("abc").matches("ab") && !glob("ab").matches("abc"));
        // Many stars against a long near-miss: quadratic, not exponential.
        let long = "a".repeat(5_000);
        assert!(!glob(&"*a".repeat(50)).matches(&format!("{long}b")));
    }

    #[test]
    fn overlaps_is_exact() {
        let yes = [
            ("a", "a"),
            ("*", ""),
            ("*", "anything"),
            ("a*", "*b"),
            ("arn:*:role/x", "arn:aws:*"),
            ("?", "x"),
            ("a?c", "*c"),
            ("a*b*c", "*bc"),
            ("**", "?"),
            ("x*y", "x*y"),
            ("*a*", "*b*"),
        ];
        let no = [
            ("a", "b"),
            ("a", "ab"),
            ("?", ""),
            ("??", "?"),
            ("a*", "b*"),
            ("*a", "*b"),
            ("arn:aws:iam::1:role/*", "arn:aws:iam::2:role/*"),
            ("a?c", "a??c"),
            ("x*", ""),
            ("abc", "a?d"),
        ];
        for (p, q) in yes {
            assert!(glob(p).overlaps(&glob(q)), "{p} {q}");
            assert!(glob(q).overlaps(&glob(p)), "{q} {p}");
        }
        for (p, q) in no {
            assert!(!glob(p).overlaps(&glob(q)), "{p} {q}");
            assert!(!glob(q).overlaps(&glob(p)), "{q} {p}");
        }
        // Against brute force over a small alphabet: patterns of up to 3
        // symbols of {a, b, *, ?}, strings of up to 6 of {a, b, c} (a
        // string both match, if any, is at most as long as the two
        // patterns' other symbols together).
        let symbols = ['a', 'b', '*', '?'];
        let mut patterns = vec![String::new()];
        for len in 1..=3 {
            let mut more = Vec::new();
            for p in patterns.iter().filter(|p| p.len() == len - 1) {
                for s in symbols {
                    more.push(format!("{p}{s}"));
                }
            }
            patterns.extend(more);
        }
        let mut strings = vec![String::new()];
        for len in 1..=6 {
            let mut more = Vec::new();
            for t in strings.iter().filter(|t| t.len() == len - 1) {
                for c in ['a', 'b', 'c'] {
                    more.push(format!("{t}{c}"));
                }
            }
            strings.extend(more);
        }
        for p in &patterns {
            for q in &patterns {
                let (gp, gq) = (glob(p), glob(q));
                let brute = strings.iter().any(|t| gp.matches(t) && gq.matches(t));
                assert_eq!(gp.overlaps(&gq), brute, "{p:?} {q:?}");
            }
        }
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let claims = json!({
            "https://sts.amazonaws.com/": {"aws_account": "123", "ou_path": ["o-1/r-2/"], "a~b": 1},
            "a/b": "top-level name with a slash",
            "list": [{"x": 1}, {"x": 2}],
        });
        let claims = claims.as_object().expect("an object");
        let find = |name: &str| ClaimPath::parse(name).expect("valid").find(claims).cloned();
        assert_eq!(
            find("/https:~1~1sts.amazonaws.com~1/aws_account"),
            Some(json!("123"))
        );
        assert_eq!(find("/https:~1~1sts.amazonaws.com~1/a~0b"), Some(json!(1)));
        assert_eq!(
            find("/https:~1~1sts.amazonaws.com~1/ou_path/0"),
            Some(json!("o-1/r-2/"))
        );
        assert_eq!(find("/list/1/x"), Some(json!(2)));
        assert_eq!(find("a/b"), Some(json!("top-level name with a slash")));
        for absent in [
            "/https:~1~1sts.amazonaws.com~1/missing",
            "/https://sts.amazonaws.com//aws_account",
            "/list/01/x",
            "/list/-/x",
            "/list/2",
            "/a~1b/x",
        ] {
            assert_eq!(find(absent), None, "{absent}");
        }
        for invalid in ["/a~2", "/a~", "/", "//x"] {
            assert_eq!(ClaimPath::parse(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn arrays_match_by_membership() {
        let claims = json!({"ou_path": ["o-1/", "o-1/r-2/"], "n": 42, "s": "42"});
        let claims = claims.as_object().expect("an object");
        let ok = |rule: Result<ClaimRule, RuleError>| rule.ok().expect("valid rule").check(claims).is_ok();
        assert!(ok(ClaimRule::equals("ou_path", &json!("o-1/r-2/"))));
        assert!(ok(ClaimRule::equals("ou_path", &json!(["o-1/", "o-1/r-2/"]))));
        assert!(!ok(ClaimRule::equals("ou_path", &json!("o-1/r-3/"))));
        assert!(ok(ClaimRule::equals("n", &json!(42))));
        assert!(!ok(ClaimRule::equals("s", &json!(42))));
        assert!(ok(ClaimRule::matches("ou_path", "o-1/r-*")));
        assert!(
            !ok(ClaimRule::matches("n", "*")),
            "a pattern matches strings only"
        );
        assert!(!ok(ClaimRule::matches("missing", "*")));
    }
}

//! Mailbox names: wire form (modified UTF-7, or UTF-8 for IMAP4rev2) to the canonical UTF-8
//! name the store uses, validation (names are names, never paths), and LIST pattern matching.

use std::borrow::Cow;

use super::mutf7;

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// Longest accepted name in bytes (UTF-8).
const MAX_NAME: usize = 512;
/// Deepest accepted hierarchy.
const MAX_LEVELS: usize = 16;

/// Why a mailbox name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("empty mailbox name")]
    Empty,
    /// Leading, trailing or doubled delimiter.
    #[error("empty hierarchy level in mailbox name")]
    EmptyComponent,
    /// `.` or `..` as a level.
    #[error("'.' and '..' are not mailbox names")]
    DotComponent,
    /// Wildcards or control characters.
    #[error("invalid character in mailbox name")]
    BadChar,
    /// Namespace prefixes (`~user`, `#shared`) name other accounts' mailboxes.
    #[error("other namespaces are not available")]
    OtherNamespace,
    /// Too long or too deep.
    #[error("mailbox name too long")]
    TooLong,
    /// Not canonical modified UTF-7 (or not UTF-8 in UTF-8 mode).
    #[error("mailbox name is not valid modified UTF-7")]
    BadEncoding,
}

/// Decodes a name as the client sent it to UTF-8 (`utf8`: IMAP4rev2 / UTF8=ACCEPT mode, the
/// name is UTF-8 already), without validating it as a mailbox name (LIST patterns use this).
pub fn decode(raw: &[u8], utf8: bool) -> Result<String, NameError> {
    let s = std::str::from_utf8(raw).map_err(|_| NameError::BadEncoding)?;
    if utf8 {
        return Ok(s.to_string());
    }
    if !s.is_ascii() {
        return Err(NameError::BadEncoding);
    }
    mutf7::decode(s).map_err(|_| NameError::BadEncoding)
}

/// `INBOX` in any case as the first level becomes `INBOX`.
pub fn canonical_inbox(name: &str) -> Cow<'_, str> {
    let first_end = name.find(DELIMITER).unwrap_or(name.len());
    if &name[..first_end] != "INBOX" && name[..first_end].eq_ignore_ascii_case("INBOX") {
        Cow::Owned(format!("INBOX{}", &name[first_end..]))
    } else {
        Cow::Borrowed(name)
    }
}

/// Decodes, canonicalises and validates a mailbox name from a command.
pub fn from_wire(raw: &[u8], utf8: bool) -> Result<String, NameError> {
    let name = decode(raw, utf8)?;
    let name = canonical_inbox(&name).into_owned();
    validate(&name)?;
    Ok(name)
}

/// Checks a UTF-8 name: levels non-empty, not `.`/`..`, no wildcards or controls, no other
/// namespace, bounded size.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    if name.starts_with('~') || name.starts_with('#') {
        return Err(NameError::OtherNamespace);
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '*' || c == '%' || c == '\u{feff}')
    {
        return Err(NameError::BadChar);
    }
    let mut levels = 0;
    for part in name.split(DELIMITER) {
        levels += 1;
        if part.is_empty() {
            return Err(NameError::EmptyComponent);
        }
        if part == "." || part == ".." {
            return Err(NameError::DotComponent);
        }
    }
    if levels > MAX_LEVELS {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// The name as sent to the client.
pub fn to_wire(name: &str, utf8: bool) -> Cow<'_, str> {
    if utf8 || !name.contains(|c: char| c == '&' || !c.is_ascii()) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(mutf7::encode(name))
    }
}

/// Whether `name` matches LIST `pattern` (`*` any run, `%` any run without the delimiter).
/// Dynamic programming keeps hostile patterns (`*%*%*%...`) linear in name × pattern.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // m[j]: pattern prefix of length i matches name prefix of length j.
    let mut m = vec![false; n.len() + 1];
    m[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= m[j];
                    next[j] = any;
                }
            }
            '%' => {
                let mut any = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == DELIMITER {
                        any = false;
                    }
                    any |= m[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = m[j - 1] && n[j - 1] == c;
                }
            }
        }
        m = next;
    }
    m[n.len()]
}

/// Joins a LIST reference and pattern (RFC 3501 §6.3.8: the reference is a prefix).
pub fn join_reference(reference: &str, pattern: &str) -> String {
    if reference.is_empty() {
        return pattern.to_string();
    }
    if pattern.starts_with(DELIMITER) && reference.ends_with(DELIMITER) {
        return format!("{}{}", reference, &pattern[1..]);
    }
    format!("{reference}{pattern}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_valid() {
        assert_eq!(from_wire(b"inbox", false).unwrap(), "INBOX");
        assert_eq!(from_wire(b"Inbox/Sub", false).unwrap(), "INBOX/Sub");
        assert_eq!(from_wire(b"Inboxes", false).unwrap(), "Inboxes");
        assert_eq!(from_wire(b"a&-b", false).unwrap(), "a&b");
        assert_eq!(from_wire("é".as_bytes(), true).unwrap(), "é");
    }

    #[test]
    fn refused_names() {
        for bad in [
            &b""[..],
            b"/a",
            b"a/",
            b"a//b",
            b"..",
            b"a/../b",
            b".",
            b"a*",
            b"a%b",
            b"~other/INBOX",
            b"#shared",
            b"a\x01",
            b"&Jjo",
        ] {
            assert!(from_wire(bad, false).is_err(), "{:?}", bad);
        }
        assert_eq!(
            from_wire("é".as_bytes(), false),
            Err(NameError::BadEncoding)
        );
        let deep = vec!["a"; 40].join("/");
        assert_eq!(from_wire(deep.as_bytes(), false), Err(NameError::TooLong));
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a/b/c"));
        assert!(pattern_matches("%", "abc"));
        assert!(!pattern_matches("%", "a/b"));
        assert!(pattern_matches("a/%", "a/b"));
        assert!(!pattern_matches("a/%", "a/b/c"));
        assert!(pattern_matches("a*c", "a/b/c"));
        assert!(pattern_matches("INBOX", "INBOX"));
        assert!(!pattern_matches("INBOX", "INBOX/x"));
        assert!(pattern_matches("%/%", "a/b"));
        let hostile = "*%".repeat(200) + "x";
        assert!(!pattern_matches(&hostile, &"a".repeat(300)));
        assert_eq!(join_reference("a/", "b"), "a/b");
        assert_eq!(join_reference("", "%"), "%");
    }
}

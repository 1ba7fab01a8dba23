//! The contract between the byte buffer of a connection and the protocol parsers: a framer
//! says how long the first complete response in a buffer is.

/// Problems with what a server sent; the connection cannot go on after one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A line went on past the limit without a line end.
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// An SMTP reply line did not start with a three-digit code.
    #[error("malformed SMTP reply line")]
    BadReplyLine,
    /// The lines of one multi-line SMTP reply carried different codes.
    #[error("SMTP reply lines with different codes")]
    MixedCodes,
    /// An IMAP literal was announced bigger than the tool accepts.
    #[error("literal of {0} bytes is too large")]
    LiteralTooLarge(u64),
    /// One response (with its literals) grew past the limit.
    #[error("response larger than {0} bytes")]
    ResponseTooLarge(usize),
    /// A response that does not follow the protocol grammar.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// A response that is well formed but not expected at this point.
    #[error("unexpected response: {0}")]
    Unexpected(&'static str),
}

/// Finds complete responses at the front of a buffer that grows between calls.
///
/// Framers keep a resume position so a large response is scanned once, not once per read;
/// after returning `Some` they reset for the next response.
pub trait Framer {
    /// Length of the first complete response in `buf`, or `None` when more bytes are needed.
    fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError>;
}

/// Finds the next LF at or after `from`, failing if the line that starts at `line_start`
/// is already longer than `max` without one.
pub fn find_lf(
    buf: &[u8],
    line_start: usize,
    from: usize,
    max: usize,
) -> Result<Option<usize>, ProtoError> {
    match buf.get(from..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        Some(i) => {
            let lf = from + i;
            if lf - line_start > max {
                return Err(ProtoError::LineTooLong(max));
            }
            Ok(Some(lf))
        }
        None if buf.len().saturating_sub(line_start) > max => Err(ProtoError::LineTooLong(max)),
        None => Ok(None),
    }
}

/// Strips a trailing CRLF (or bare LF) from a line.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Case-insensitive prefix test.
pub fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Parses an unsigned decimal number (no sign, no spaces).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_lf_respects_limit() {
        assert_eq!(find_lf(b"abc\r\n", 0, 0, 10), Ok(Some(4)));
        assert_eq!(find_lf(b"abc", 0, 0, 10), Ok(None));
        assert_eq!(
            find_lf(b"abcdefghijkl", 0, 0, 10),
            Err(ProtoError::LineTooLong(10))
        );
        assert_eq!(find_lf(b"x\nabc\n", 2, 2, 10), Ok(Some(5)));
    }

    #[test]
    fn numbers_and_helpers() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
        assert_eq!(trim_eol(b"abc\r\n"), b"abc");
        assert_eq!(trim_eol(b"abc\n"), b"abc");
        assert!(starts_with_ci(b"+ok hi", b"+OK"));
        assert!(!starts_with_ci(b"+O", b"+OK"));
    }
}

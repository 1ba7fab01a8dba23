//! `TOP msg n` (RFC 1939): the header, the blank line after it and the first `n` body lines.

use memchr::memchr_iter;

/// The prefix of `message` that `TOP` sends for `lines` body lines.
///
/// The header ends at the first empty line (CRLF, or a bare LF for mail stored sloppily). A
/// message without one is all header and is sent whole, as is a message whose body has fewer
/// than `lines` lines.
pub fn top_slice(message: &[u8], lines: u32) -> &[u8] {
    let Some(body_start) = header_end(message) else {
        return message;
    };
    if lines == 0 {
        return &message[..body_start];
    }
    let body = &message[body_start..];
    // `lines` counts from 1, so the n-th LF ends the n-th line.
    let nth = usize::try_from(lines - 1).unwrap_or(usize::MAX);
    match memchr_iter(b'\n', body).nth(nth) {
        Some(lf) => &message[..body_start + lf + 1],
        None => message,
    }
}

/// Offset just past the empty line that ends the header, if there is one.
fn header_end(message: &[u8]) -> Option<usize> {
    let blank_at = |start: usize| {
        let rest = message.get(start..)?;
        if rest.starts_with(b"\r\n") {
            Some(start + 2)
        } else if rest.starts_with(b"\n") {
            Some(start + 1)
        } else {
            None
        }
    };
    if let Some(end) = blank_at(0) {
        return Some(end);
    }
    memchr_iter(b'\n', message).find_map(|lf| blank_at(lf + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a\r\nSubject: s\r\n\r\nline1\r\nline2\r\nline3\r\n";

    #[test]
    fn zero_lines_is_header_and_blank_line() {
        assert_eq!(top_slice(MSG, 0), b"From: a\r\nSubject: s\r\n\r\n");
    }

    #[test]
    fn some_lines() {
        assert_eq!(top_slice(MSG, 1), b"From: a\r\nSubject: s\r\n\r\nline1\r\n");
        assert_eq!(
            top_slice(MSG, 2),
            b"From: a\r\nSubject: s\r\n\r\nline1\r\nline2\r\n"
        );
    }

    #[test]
    fn more_lines_than_body_is_whole_message() {
        assert_eq!(top_slice(MSG, 3), MSG);
        assert_eq!(top_slice(MSG, 4), MSG);
        assert_eq!(top_slice(MSG, u32::MAX), MSG);
    }

    #[test]
    fn last_line_without_crlf_counts() {
        let msg = b"H: v\r\n\r\nl1\r\nl2";
        assert_eq!(top_slice(msg, 1), b"H: v\r\n\r\nl1\r\n");
        assert_eq!(top_slice(msg, 2), msg);
    }

    #[test]
    fn header_only_message_is_sent_whole() {
        assert_eq!(top_slice(b"H: v\r\nI: w\r\n", 0), b"H: v\r\nI: w\r\n");
        assert_eq!(top_slice(b"", 5), b"");
    }

    #[test]
    fn empty_header() {
        assert_eq!(top_slice(b"\r\nbody\r\n", 0), b"\r\n");
        assert_eq!(top_slice(b"\r\nbody\r\n", 1), b"\r\nbody\r\n");
    }

    #[test]
    fn bare_lf_header_end() {
        assert_eq!(top_slice(b"H: v\n\nb1\nb2\n", 1), b"H: v\n\nb1\n");
    }
}

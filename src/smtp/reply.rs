//! SMTP reply formatting (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).
//!
//! Replies are written straight into the session's output buffer; nothing here allocates
//! except the buffer growing. Text that may come from the peer (an echoed address, a HELO
//! name) is sanitised: control characters and non-ASCII become `?`, so a reply can never
//! contain a line break the peer smuggled in.

use std::fmt;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// Subject (0..=999).
    pub subject: u16,
    /// Detail (0..=999).
    pub detail: u16,
}

impl EnhancedStatus {
    /// Builds `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Longest reply line we emit including the code, separator and CRLF (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// Writes a single-line reply `code SP [status SP] text CRLF`.
pub fn write_reply(out: &mut Vec<u8>, code: u16, status: Option<EnhancedStatus>, text: &str) {
    write_line(out, code, b' ', status, text);
}

/// Writes a multi-line reply: every line but the last uses `code-`, the last `code ` (RFC 5321
/// §4.2.1). Each line carries the enhanced status, as RFC 2034 §4 requires. An empty iterator
/// writes one line with empty text.
pub fn write_multiline<'t, I>(
    out: &mut Vec<u8>,
    code: u16,
    status: Option<EnhancedStatus>,
    lines: I,
) where
    I: IntoIterator<Item = &'t str>,
{
    let mut lines = lines.into_iter().peekable();
    let Some(mut current) = lines.next() else {
        write_line(out, code, b' ', status, "");
        return;
    };
    loop {
        match lines.next() {
            Some(next) => {
                write_line(out, code, b'-', status, current);
                current = next;
            }
            None => {
                write_line(out, code, b' ', status, current);
                return;
            }
        }
    }
}

fn write_line(out: &mut Vec<u8>, code: u16, sep: u8, status: Option<EnhancedStatus>, text: &str) {
    debug_assert!(
        (200..600).contains(&code),
        "reply code out of range: {code}"
    );
    let start = out.len();
    // Three digits always: the code is ours, never the peer's.
    out.extend_from_slice(&[
        b'0' + ((code / 100) % 10) as u8,
        b'0' + ((code / 10) % 10) as u8,
        b'0' + (code % 10) as u8,
        sep,
    ]);
    if let Some(st) = status {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{st}");
        if !text.is_empty() {
            out.push(b' ');
        }
    }
    let room = MAX_REPLY_LINE.saturating_sub(out.len() - start + 2);
    out.extend(text.bytes().take(room).map(sanitize));
    out.extend_from_slice(b"\r\n");
}

fn sanitize(b: u8) -> u8 {
    if (0x20..0x7f).contains(&b) {
        b
    } else {
        b'?'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_status() {
        let mut out = Vec::new();
        write_reply(&mut out, 250, Some(EnhancedStatus::new(2, 1, 0)), "Ok");
        assert_eq!(out, b"250 2.1.0 Ok\r\n");
    }

    #[test]
    fn single_line_without_status() {
        let mut out = Vec::new();
        write_reply(&mut out, 354, None, "End data with <CR><LF>.<CR><LF>");
        assert_eq!(out, b"354 End data with <CR><LF>.<CR><LF>\r\n");
    }

    #[test]
    fn multiline_marks_continuations() {
        let mut out = Vec::new();
        write_multiline(&mut out, 250, None, ["mx.example", "PIPELINING", "SIZE 10"]);
        assert_eq!(out, b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        out.clear();
        let st = Some(EnhancedStatus::new(2, 0, 0));
        write_multiline(&mut out, 214, st, ["a", "b"]);
        assert_eq!(out, b"214-2.0.0 a\r\n214 2.0.0 b\r\n");
        out.clear();
        write_multiline(&mut out, 250, None, std::iter::empty());
        assert_eq!(out, b"250 \r\n");
    }

    #[test]
    fn peer_text_cannot_break_lines() {
        let mut out = Vec::new();
        write_reply(&mut out, 550, None, "a\r\n250 fake\u{e9}");
        assert_eq!(out, b"550 a??250 fake??\r\n");
    }

    #[test]
    fn long_text_is_truncated() {
        let mut out = Vec::new();
        let text = "x".repeat(2000);
        write_reply(&mut out, 500, Some(EnhancedStatus::new(5, 5, 2)), &text);
        assert_eq!(out.len(), MAX_REPLY_LINE);
        assert!(out.ends_with(b"\r\n"));
    }
}

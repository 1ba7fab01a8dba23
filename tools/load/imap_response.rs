//! IMAP server responses (RFC 9051 / RFC 3501 §7): framing of one response including its
//! literals, and the few facts the load tool reads from them.

use crate::framing::{find_lf, parse_u64, starts_with_ci, trim_eol, Framer, ProtoError};

/// Lines between literals; SEARCH results over big mailboxes make long lines.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// One literal (a message body) may be this big.
const MAX_LITERAL: u64 = 256 * 1024 * 1024;
/// One response with all its literals.
const MAX_RESPONSE: usize = 512 * 1024 * 1024;

/// Frames one response: a line, and when it ends in a literal `{n}` / `~{n}`, the n bytes
/// that follow and the rest of the response after them, until a line without a literal.
#[derive(Debug, Default)]
pub struct ImapFramer {
    /// Start of the current line segment (after the last literal), relative to the response.
    seg_start: usize,
    /// Where to resume looking for the line end.
    scan: usize,
}

impl Framer for ImapFramer {
    fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        loop {
            if self.seg_start > buf.len() {
                // Still inside a literal.
                return Ok(None);
            }
            let from = self.scan.max(self.seg_start);
            let Some(lf) = find_lf(buf, self.seg_start, from, MAX_LINE)? else {
                self.scan = buf.len();
                return Ok(None);
            };
            match literal_at_end(trim_eol(&buf[self.seg_start..=lf]))? {
                Some(n) => {
                    let next = (lf + 1)
                        .checked_add(
                            usize::try_from(n).map_err(|_| ProtoError::LiteralTooLarge(n))?,
                        )
                        .ok_or(ProtoError::LiteralTooLarge(n))?;
                    if next > MAX_RESPONSE {
                        return Err(ProtoError::ResponseTooLarge(MAX_RESPONSE));
                    }
                    self.seg_start = next;
                    self.scan = next;
                }
                None => {
                    *self = ImapFramer::default();
                    return Ok(Some(lf + 1));
                }
            }
        }
    }
}

/// The size of a literal announced at the end of a line segment (`{n}`, `{n+}`, `~{n}`),
/// ignoring braces inside quoted strings.
fn literal_at_end(seg: &[u8]) -> Result<Option<u64>, ProtoError> {
    if seg.last() != Some(&b'}') {
        return Ok(None);
    }
    // Find the last '{' outside a quoted string; quoted strings never span lines or literals,
    // so a segment always starts outside one.
    let mut in_quote = false;
    let mut escaped = false;
    let mut open = None;
    for (i, &b) in seg.iter().enumerate() {
        if in_quote {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quote = false,
                _ => {}
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == b'{' {
            open = Some(i);
        }
    }
    let Some(open) = open else { return Ok(None) };
    if in_quote {
        return Ok(None);
    }
    let inner = &seg[open + 1..seg.len() - 1];
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    match parse_u64(digits) {
        Some(n) if n > MAX_LITERAL => Err(ProtoError::LiteralTooLarge(n)),
        Some(n) => Ok(Some(n)),
        // Text such as "{abc}" at the end of resp-text is not a literal.
        None => Ok(None),
    }
}

/// Completion status of a tagged response (or status of an untagged OK/NO/BAD/BYE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Command completed.
    Ok,
    /// Command failed.
    No,
    /// Command was not understood.
    Bad,
}

impl Status {
    /// The protocol word, as used in error counters.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

/// What kind of response a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `tag OK|NO|BAD text`.
    Tagged {
        /// The tag the command was sent with.
        tag: &'a [u8],
        /// Its completion status.
        status: Status,
    },
    /// `* ...`; holds the bytes after `* `.
    Untagged(&'a [u8]),
    /// `+ ...`: the server waits for a literal or SASL data.
    Continuation,
}

/// One complete response, borrowing the framed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// Tagged, untagged or continuation.
    pub kind: Kind<'a>,
    /// The first line segment (up to the first literal), without line end.
    pub first_line: &'a [u8],
}

impl<'a> Response<'a> {
    /// Parses a frame produced by [`ImapFramer`].
    pub fn parse(frame: &'a [u8]) -> Result<Response<'a>, ProtoError> {
        let first_line = trim_eol(match memchr::memchr(b'\n', frame) {
            Some(i) => &frame[..=i],
            None => frame,
        });
        let kind = if first_line.first() == Some(&b'+') {
            Kind::Continuation
        } else if let Some(rest) = first_line.strip_prefix(b"* ") {
            Kind::Untagged(rest)
        } else {
            let sp = memchr::memchr(b' ', first_line).ok_or(ProtoError::Malformed("no tag"))?;
            let tag = &first_line[..sp];
            if tag.is_empty() || tag.iter().any(|b| matches!(b, b'*' | b'+' | b'{' | b'"')) {
                return Err(ProtoError::Malformed("bad tag"));
            }
            let status = status_word(&first_line[sp + 1..])
                .ok_or(ProtoError::Malformed("tagged response without OK/NO/BAD"))?;
            Kind::Tagged { tag, status }
        };
        Ok(Response { kind, first_line })
    }

    /// For `* n KEYWORD ...` (EXISTS, EXPUNGE, FETCH), the number if the keyword matches.
    pub fn numbered(&self, keyword: &[u8]) -> Option<u64> {
        let Kind::Untagged(rest) = self.kind else {
            return None;
        };
        let sp = memchr::memchr(b' ', rest)?;
        let n = parse_u64(&rest[..sp])?;
        let after = &rest[sp + 1..];
        let word_end = memchr::memchr(b' ', after).unwrap_or(after.len());
        after[..word_end].eq_ignore_ascii_case(keyword).then_some(n)
    }

    /// The number in a response code such as `[UIDNEXT 42]` or `[APPENDUID 7 42]` (last number).
    pub fn code_number(&self, code: &[u8]) -> Option<u64> {
        let open = memchr::memchr(b'[', self.first_line)?;
        let inner = &self.first_line[open + 1..];
        let inner = &inner[..memchr::memchr(b']', inner)?];
        if !starts_with_ci(inner, code) || inner.get(code.len()) != Some(&b' ') {
            return None;
        }
        inner[code.len() + 1..]
            .split(|&b| b == b' ')
            .next_back()
            .and_then(parse_u64)
    }

    /// Whether this is an untagged `BYE`.
    pub fn is_bye(&self) -> bool {
        matches!(self.kind, Kind::Untagged(rest) if starts_with_ci(rest, b"BYE"))
    }

    /// Whether a capability (e.g. `SASL-IR`) appears in this response's CAPABILITY data or code.
    pub fn has_capability(&self, cap: &[u8]) -> bool {
        let line = self.first_line;
        let Some(pos) = find_ci(line, b"CAPABILITY") else {
            return false;
        };
        line[pos..]
            .split(|&b| b == b' ' || b == b']')
            .any(|w| w.eq_ignore_ascii_case(cap))
    }
}

/// Position of `needle` in `hay`, ignoring ASCII case.
fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn status_word(s: &[u8]) -> Option<Status> {
    let end = memchr::memchr(b' ', s).unwrap_or(s.len());
    let w = &s[..end];
    if w.eq_ignore_ascii_case(b"OK") {
        Some(Status::Ok)
    } else if w.eq_ignore_ascii_case(b"NO") {
        Some(Status::No)
    } else if w.eq_ignore_ascii_case(b"BAD") {
        Some(Status::Bad)
    } else {
        None
    }
}

/// Quotes a string for a command argument (RFC 9051 `quoted`): `"` and `\` are escaped.
/// Returns `None` for CR, LF or NUL, which only a literal can carry.
pub fn quote(s: &str) -> Option<String> {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(input: &[u8]) -> Vec<&[u8]> {
        let mut f = ImapFramer::default();
        let mut out = Vec::new();
        let mut rest = input;
        while let Some(n) = f.frame_len(rest).unwrap() {
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        assert!(
            rest.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(rest)
        );
        out
    }

    #[test]
    fn fetch_with_literal_is_one_response() {
        let input =
            b"* 1 FETCH (UID 5 RFC822.SIZE 12 BODY[] {12}\r\nHi\r\n\r\nbody\r\n)\r\nA1 OK done\r\n";
        let frames = frame_all(input);
        assert_eq!(frames.len(), 2);
        let r = Response::parse(frames[0]).unwrap();
        assert_eq!(r.numbered(b"FETCH"), Some(1));
        assert_eq!(r.first_line, b"* 1 FETCH (UID 5 RFC822.SIZE 12 BODY[] {12}");
        let t = Response::parse(frames[1]).unwrap();
        assert_eq!(
            t.kind,
            Kind::Tagged {
                tag: b"A1",
                status: Status::Ok
            }
        );
    }

    #[test]
    fn literal_containing_crlf_and_fake_tag() {
        // The literal holds what looks like a tagged completion; it must not end the response.
        let body = b"A1 OK fake\r\n* BYE\r\n";
        let mut input = format!("* 2 FETCH (BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b" FLAGS (\\Seen))\r\n");
        let frames = frame_all(&input);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn several_literals_and_literal8() {
        let input = b"* 3 FETCH (BODY[HEADER] {3}\r\nabc BINARY[] ~{4}\r\nwxyz)\r\n";
        assert_eq!(frame_all(input).len(), 1);
        let plus = b"* 3 FETCH (X {2+}\r\nab)\r\n";
        assert_eq!(frame_all(plus).len(), 1);
    }

    #[test]
    fn empty_literal() {
        let input = b"* 4 FETCH (BODY[] {0}\r\n)\r\n";
        assert_eq!(frame_all(input).len(), 1);
    }

    #[test]
    fn braces_in_quoted_string_are_not_literals() {
        let input = b"* LIST () \"/\" \"odd{3}\"\r\nA2 OK\r\n";
        assert_eq!(frame_all(input).len(), 2);
        // An escaped quote inside a quoted string does not end it.
        let input = b"* LIST () \"/\" \"a\\\"{3}\"\r\n";
        assert_eq!(frame_all(input).len(), 1);
        // Text in braces that is not a number is not a literal either.
        assert_eq!(frame_all(b"* OK {hello}\r\n").len(), 1);
    }

    #[test]
    fn partial_input_resumes_across_reads() {
        let input = b"* 1 FETCH (BODY[] {10}\r\n0123456789)\r\nA1 OK\r\n";
        let mut f = ImapFramer::default();
        for cut in [5, 24, 30, 34, 36] {
            assert_eq!(f.frame_len(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(f.frame_len(input), Ok(Some(37)));
        assert_eq!(f.frame_len(&input[37..]), Ok(Some(7)));
    }

    #[test]
    fn oversized_literal_is_an_error() {
        let mut f = ImapFramer::default();
        assert_eq!(
            f.frame_len(b"* 1 FETCH (BODY[] {999999999999}\r\n"),
            Err(ProtoError::LiteralTooLarge(999_999_999_999))
        );
    }

    #[test]
    fn response_kinds_and_codes() {
        let c = Response::parse(b"+ Ready\r\n").unwrap();
        assert_eq!(c.kind, Kind::Continuation);
        let c = Response::parse(b"+\r\n").unwrap();
        assert_eq!(c.kind, Kind::Continuation);
        let e = Response::parse(b"* 172 EXISTS\r\n").unwrap();
        assert_eq!(e.numbered(b"exists"), Some(172));
        assert_eq!(e.numbered(b"RECENT"), None);
        let u = Response::parse(b"* OK [UIDNEXT 4392] Predicted next UID\r\n").unwrap();
        assert_eq!(u.code_number(b"UIDNEXT"), Some(4392));
        assert_eq!(u.code_number(b"UIDVALIDITY"), None);
        let a = Response::parse(b"A3 OK [APPENDUID 38505 3955] APPEND completed\r\n").unwrap();
        assert_eq!(a.code_number(b"APPENDUID"), Some(3955));
        let no = Response::parse(b"a7 no [TRYCREATE] nope\r\n").unwrap();
        assert_eq!(
            no.kind,
            Kind::Tagged {
                tag: b"a7",
                status: Status::No
            }
        );
        assert!(Response::parse(b"* BYE shutting down\r\n")
            .unwrap()
            .is_bye());
        assert!(Response::parse(b"A1 MAYBE\r\n").is_err());
        assert!(Response::parse(b"nospace\r\n").is_err());
    }

    #[test]
    fn capabilities() {
        let g = Response::parse(
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS AUTH=PLAIN] Dovecot ready.\r\n",
        )
        .unwrap();
        assert!(g.has_capability(b"SASL-IR"));
        assert!(g.has_capability(b"auth=plain"));
        assert!(!g.has_capability(b"STARTTLS"));
        let plain = Response::parse(b"* OK ready\r\n").unwrap();
        assert!(!plain.has_capability(b"SASL-IR"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quote("x\ny"), None);
    }
}

//! POP3 responses (RFC 1939): status lines and dot-terminated multi-line responses.

use crate::framing::{find_lf, parse_u64, starts_with_ci, trim_eol, Framer, ProtoError};

/// RFC 1939 allows 512 octets per status line; be generous.
const MAX_LINE: usize = 8192;
/// One multi-line response (a RETR of a large message).
const MAX_RESPONSE: usize = 512 * 1024 * 1024;

/// Frames one response. For multi-line commands (LIST, RETR, UIDL, CAPA) a `+OK` status line
/// is followed by lines up to one holding only `.`; an `-ERR` is always one line.
#[derive(Debug)]
pub struct Pop3Framer {
    multi_line: bool,
    /// End of the status line once seen.
    status_end: Option<usize>,
    /// Where to resume searching for the terminator.
    scan: usize,
}

impl Pop3Framer {
    /// A framer for a single status line.
    pub fn single() -> Pop3Framer {
        Pop3Framer {
            multi_line: false,
            status_end: None,
            scan: 0,
        }
    }

    /// A framer for a response that is multi-line when positive.
    pub fn multi() -> Pop3Framer {
        Pop3Framer {
            multi_line: true,
            ..Pop3Framer::single()
        }
    }
}

impl Framer for Pop3Framer {
    fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        let status_end = match self.status_end {
            Some(e) => e,
            None => {
                let Some(lf) = find_lf(buf, 0, 0, MAX_LINE)? else {
                    return Ok(None);
                };
                let end = lf + 1;
                if !self.multi_line || !starts_with_ci(buf, b"+OK") {
                    return Ok(Some(end));
                }
                self.status_end = Some(end);
                self.scan = end.saturating_sub(2);
                end
            }
        };
        // The terminator is CRLF "." CRLF where the first CRLF may end the status line itself.
        let from = self.scan.max(status_end.saturating_sub(2));
        match memchr::memmem::find(&buf[from..], b"\r\n.\r\n") {
            Some(i) => {
                let len = from + i + 5;
                *self = if self.multi_line {
                    Pop3Framer::multi()
                } else {
                    Pop3Framer::single()
                };
                Ok(Some(len))
            }
            None => {
                if buf.len() > MAX_RESPONSE {
                    return Err(ProtoError::ResponseTooLarge(MAX_RESPONSE));
                }
                // Keep the last 4 bytes: the terminator may straddle reads.
                self.scan = buf.len().saturating_sub(4).max(from);
                Ok(None)
            }
        }
    }
}

/// A parsed status line: positive or negative, with its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status<'a> {
    /// `+OK` (true) or `-ERR` (false).
    pub ok: bool,
    /// Text after the status word.
    pub text: &'a [u8],
}

impl<'a> Status<'a> {
    /// Parses the first line of a frame. A SASL continuation (`+ ...`) counts as positive.
    pub fn parse(frame: &'a [u8]) -> Result<Status<'a>, ProtoError> {
        let line = trim_eol(match memchr::memchr(b'\n', frame) {
            Some(i) => &frame[..=i],
            None => frame,
        });
        let (ok, rest) = if starts_with_ci(line, b"+OK") {
            (true, &line[3..])
        } else if starts_with_ci(line, b"-ERR") {
            (false, &line[4..])
        } else if line.first() == Some(&b'+') {
            (true, &line[1..])
        } else {
            return Err(ProtoError::Malformed("POP3 status is neither +OK nor -ERR"));
        };
        Ok(Status {
            ok,
            text: rest.strip_prefix(b" ").unwrap_or(rest),
        })
    }
}

/// The message numbers listed in a multi-line LIST response.
pub fn list_numbers(frame: &[u8]) -> Vec<u64> {
    frame
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|l| {
            let l = trim_eol(l);
            let first = l.split(|&b| b == b' ').next()?;
            parse_u64(first)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        let mut f = Pop3Framer::single();
        assert_eq!(f.frame_len(b"+OK 2 320\r\n+OK"), Ok(Some(11)));
        let s = Status::parse(b"+OK 2 320\r\n").unwrap();
        assert!(s.ok);
        assert_eq!(s.text, b"2 320");
        assert_eq!(f.frame_len(b"+OK"), Ok(None));
    }

    #[test]
    fn multi_line_list() {
        let input = b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n+OK next";
        let mut f = Pop3Framer::multi();
        let n = f.frame_len(input).unwrap().unwrap();
        assert_eq!(&input[n..], b"+OK next");
        assert_eq!(list_numbers(&input[..n]), vec![1, 2]);
    }

    #[test]
    fn multi_line_empty() {
        let input = b"+OK 0 messages\r\n.\r\n";
        let mut f = Pop3Framer::multi();
        assert_eq!(f.frame_len(input), Ok(Some(input.len())));
        assert!(list_numbers(input).is_empty());
    }

    #[test]
    fn negative_multi_line_is_one_line() {
        let mut f = Pop3Framer::multi();
        assert_eq!(f.frame_len(b"-ERR no such message\r\n"), Ok(Some(22)));
        assert!(!Status::parse(b"-ERR no such message\r\n").unwrap().ok);
    }

    #[test]
    fn retr_with_stuffed_dots_and_split_terminator() {
        let input = b"+OK 30 octets\r\nSubject: x\r\n\r\n..hidden\r\n.x\r\n.\r\n";
        let mut f = Pop3Framer::multi();
        for cut in [10, 20, input.len() - 3, input.len() - 1] {
            assert_eq!(f.frame_len(&input[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(f.frame_len(input), Ok(Some(input.len())));
    }

    #[test]
    fn malformed_status() {
        assert!(Status::parse(b"HELLO\r\n").is_err());
        assert!(Status::parse(b"+ dGVzdA==\r\n").unwrap().ok);
    }
}

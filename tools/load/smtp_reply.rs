//! SMTP replies (RFC 5321 §4.2): framing of single- and multi-line replies and their parsing.

use crate::framing::{find_lf, trim_eol, Framer, ProtoError};

/// RFC 5321 allows 512 octets per reply line; servers send longer EHLO lines in practice.
const MAX_LINE: usize = 8192;
/// Guards against a server that never ends a multi-line reply.
const MAX_REPLY: usize = 256 * 1024;

/// Frames one complete reply: lines of `ddd-text` ending with a `ddd text` (or `ddd`) line.
#[derive(Debug, Default)]
pub struct SmtpFramer {
    /// Start of the line not yet seen complete, relative to the reply start.
    line_start: usize,
}

impl Framer for SmtpFramer {
    fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        loop {
            let Some(lf) = find_lf(buf, self.line_start, self.line_start, MAX_LINE)? else {
                return Ok(None);
            };
            let line = trim_eol(&buf[self.line_start..=lf]);
            let last = match line.get(3) {
                None if line.len() == 3 => true,
                Some(b' ') => true,
                Some(b'-') => false,
                _ => return Err(ProtoError::BadReplyLine),
            };
            self.line_start = lf + 1;
            if last {
                let len = self.line_start;
                self.line_start = 0;
                return Ok(Some(len));
            }
            if self.line_start > MAX_REPLY {
                return Err(ProtoError::ResponseTooLarge(MAX_REPLY));
            }
        }
    }
}

/// One parsed reply, borrowing the framed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The three-digit reply code.
    pub code: u16,
    frame: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Parses a frame produced by [`SmtpFramer`], checking every line carries the same code.
    pub fn parse(frame: &'a [u8]) -> Result<Reply<'a>, ProtoError> {
        let mut code = None;
        for line in frame.split_inclusive(|&b| b == b'\n') {
            let line = trim_eol(line);
            let digits = line.get(..3).ok_or(ProtoError::BadReplyLine)?;
            if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
                return Err(ProtoError::BadReplyLine);
            }
            let c = digits
                .iter()
                .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
            match code {
                None => code = Some(c),
                Some(prev) if prev != c => return Err(ProtoError::MixedCodes),
                Some(_) => {}
            }
        }
        let code = code.ok_or(ProtoError::BadReplyLine)?;
        Ok(Reply { code, frame })
    }

    /// The text of every line, without code, separator or line end.
    pub fn lines(&self) -> impl Iterator<Item = &'a [u8]> {
        self.frame
            .split_inclusive(|&b| b == b'\n')
            .map(|l| trim_eol(l).get(4..).unwrap_or(b""))
    }

    /// Whether an EHLO reply advertises `keyword` (case-insensitive), e.g. `PIPELINING`.
    pub fn has_extension(&self, keyword: &[u8]) -> bool {
        self.extension(keyword).is_some()
    }

    /// The parameters of an EHLO keyword line, e.g. `PLAIN LOGIN` for `AUTH`.
    pub fn extension(&self, keyword: &[u8]) -> Option<&'a [u8]> {
        self.lines().skip(1).find_map(|l| {
            let (kw, rest) = match memchr::memchr(b' ', l) {
                Some(i) => (&l[..i], &l[i + 1..]),
                None => (l, &b""[..]),
            };
            kw.eq_ignore_ascii_case(keyword).then_some(rest)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(input: &[u8]) -> Result<Option<usize>, ProtoError> {
        SmtpFramer::default().frame_len(input)
    }

    #[test]
    fn single_line_reply() {
        let input = b"250 OK\r\n354 next";
        assert_eq!(frame(input), Ok(Some(8)));
        let r = Reply::parse(&input[..8]).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines().collect::<Vec<_>>(), vec![&b"OK"[..]]);
    }

    #[test]
    fn bare_code_reply() {
        assert_eq!(frame(b"250\r\n"), Ok(Some(5)));
        assert_eq!(Reply::parse(b"250\r\n").unwrap().code, 250);
    }

    #[test]
    fn multi_line_ehlo_reply() {
        let input = b"250-mail.example.org Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n";
        assert_eq!(frame(input), Ok(Some(input.len())));
        let r = Reply::parse(input).unwrap();
        assert_eq!(r.code, 250);
        assert!(r.has_extension(b"pipelining"));
        assert!(r.has_extension(b"STARTTLS"));
        assert!(!r.has_extension(b"CHUNKING"));
        assert_eq!(r.extension(b"AUTH"), Some(&b"PLAIN LOGIN"[..]));
        assert_eq!(r.extension(b"SIZE"), Some(&b"10240000"[..]));
        // The greeting line is not an extension.
        assert!(!r.has_extension(b"mail.example.org"));
    }

    #[test]
    fn incomplete_multi_line_resumes() {
        let mut f = SmtpFramer::default();
        let full = b"250-a\r\n250-b\r\n250 c\r\n";
        assert_eq!(f.frame_len(&full[..9]), Ok(None));
        assert_eq!(f.frame_len(&full[..14]), Ok(None));
        assert_eq!(f.frame_len(full), Ok(Some(full.len())));
        // The framer is reset for the next reply.
        assert_eq!(f.frame_len(b"221 bye\r\n"), Ok(Some(9)));
    }

    #[test]
    fn malformed_replies() {
        assert_eq!(frame(b"25X OK\r\n").map(|_| ()), Ok(()));
        assert_eq!(Reply::parse(b"25X OK\r\n"), Err(ProtoError::BadReplyLine));
        assert_eq!(frame(b"250_OK\r\n"), Err(ProtoError::BadReplyLine));
        assert_eq!(frame(b"hello\r\n"), Err(ProtoError::BadReplyLine));
        assert_eq!(
            Reply::parse(b"250-a\r\n251 b\r\n"),
            Err(ProtoError::MixedCodes)
        );
        assert_eq!(Reply::parse(b"650 x\r\n"), Err(ProtoError::BadReplyLine));
        let long = vec![b'2'; MAX_LINE + 10];
        assert_eq!(frame(&long), Err(ProtoError::LineTooLong(MAX_LINE)));
    }
}

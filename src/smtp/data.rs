//! Message data reader for DATA (dot-stuffed, RFC 5321 §4.5.2) and BDAT chunks (RFC 3030).
//!
//! The reader copies the peer's bytes once, from the driver's read buffer into the message
//! `BytesMut`, removing stuffed dots on the way; the frozen `Bytes` is then handed to delivery
//! without further copies.
//!
//! SMTP smuggling (CVE-2023-51764 and relatives): the message ends ONLY at `CRLF . CRLF`.
//! `LF . LF`, `CRLF . LF`, `LF . CRLF`, `CR . CR` and any other bare CR or LF are never line
//! ends; a message containing one is read to the real end marker and then refused (554 5.6.0),
//! so nothing after a fake terminator can ever run as a command.
//!
//! Limits are enforced while reading: once the message is too large (or otherwise refused) the
//! reader stops storing and only scans for the end marker, so memory stays bounded by
//! `max_message_size` whatever the peer sends.

use bytes::{Bytes, BytesMut};
use memchr::memchr2;

/// Limits applied to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// Largest message in octets (after dot-unstuffing).
    pub max_message_size: usize,
    /// Longest line in octets including CRLF, not counting a stuffed dot (RFC 5321 §4.5.3.1.6).
    pub max_line_length: usize,
    /// Largest header section in octets.
    pub max_header_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        Self {
            max_message_size: 25 * 1024 * 1024,
            max_line_length: 1000,
            max_header_bytes: 512 * 1024,
            max_headers: 1000,
        }
    }
}

/// Why a message was refused; the session turns this into the reply after the end marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Larger than `max_message_size` (552 5.3.4).
    #[error("message exceeds {limit} octets")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A bare CR or LF (554 5.6.0; RFC 5321 §2.3.8).
    #[error("message contains a bare CR or LF")]
    BareLineEnding,
    /// A line longer than `max_line_length` (554 5.6.0).
    #[error("message has a line longer than {limit} octets")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// More header fields than `max_headers` (552 5.3.4).
    #[error("message has more than {limit} header fields")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_RECEIVED`] `Received:` fields: a mail loop (554 5.4.6).
    #[error("too many hops ({limit} Received fields), mail loop?")]
    TooManyHops {
        /// The limit.
        limit: usize,
    },
    /// The server is short of memory for message data right now (452 4.3.1, try later).
    #[error("insufficient system resources for the message, try again later")]
    OverBudget,
    /// Header section larger than `max_header_bytes` (552 5.3.4).
    #[error("message header exceeds {limit} octets")]
    HeaderTooLarge {
        /// The limit.
        limit: usize,
    },
}

/// More `Received:` fields than this means a mail loop (RFC 5321 §6.3: "at least 100").
pub const MAX_RECEIVED: usize = 100;

/// How the message is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// DATA: dot-stuffed, ends at `CRLF.CRLF`.
    DotStuffed,
    /// BDAT: length-delimited chunks, stored verbatim. `check_lines` applies the line rules
    /// (bare CR/LF, line length); off for BODY=BINARYMIME.
    Chunked {
        /// Whether line rules apply.
        check_lines: bool,
    },
}

/// Result of [`DataReader::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// All input was consumed; the end marker has not been seen yet.
    NeedMore,
    /// The end marker ended after `consumed` octets of this input; the rest belongs to the
    /// command stream. Call [`DataReader::finish`].
    Complete {
        /// Octets consumed including the end marker.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF (or at the start of the data).
    LineStart,
    /// A line began with '.'.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR inside a line, waiting for LF.
    Cr,
    /// End marker seen.
    Done,
}

/// Streaming reader for one message body.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    framing: Framing,
    limits: DataLimits,
    body: BytesMut,
    /// Octets of message content seen so far (stored or not).
    size: usize,
    /// Octets in the current line, CRLF and stuffed dot excluded.
    line_len: usize,
    /// First octets of the current line while in the header section: field name and
    /// continuation detection.
    line_head: [u8; 9],
    in_headers: bool,
    /// `Received:` fields seen (loop detection, RFC 5321 §6.3).
    received: usize,
    header_bytes: usize,
    headers: usize,
    error: Option<DataError>,
}

/// First allocation when the client gave no SIZE hint.
const DEFAULT_CAPACITY: usize = 16 * 1024;
/// Largest first allocation: a SIZE= hint is only a claim, and many idle connections claiming
/// the maximum must not reserve the maximum each.
const MAX_INITIAL_CAPACITY: usize = 4 * 1024 * 1024;

impl DataReader {
    /// A reader for one message. `size_hint` (the MAIL SIZE= value) pre-sizes the buffer,
    /// capped by the limit so a lying client cannot make us allocate more.
    pub fn new(framing: Framing, limits: DataLimits, size_hint: Option<u64>) -> Self {
        let cap = size_hint
            .map_or(DEFAULT_CAPACITY, |h| {
                usize::try_from(h).unwrap_or(usize::MAX).saturating_add(64)
            })
            .min(limits.max_message_size)
            .min(MAX_INITIAL_CAPACITY);
        Self {
            state: State::LineStart,
            framing,
            limits,
            body: BytesMut::with_capacity(cap),
            size: 0,
            line_len: 0,
            line_head: [0; 9],
            in_headers: true,
            received: 0,
            header_bytes: 0,
            headers: 0,
            error: None,
        }
    }

    /// Octets currently held in memory (bounded by `max_message_size`).
    pub fn buffered(&self) -> usize {
        self.body.len()
    }

    /// Octets of message content seen so far, stored or not.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The first rule the message broke so far, if any.
    pub fn error(&self) -> Option<DataError> {
        self.error
    }

    /// Consumes message bytes. With [`Framing::DotStuffed`] reading stops right after the end
    /// marker; with [`Framing::Chunked`] all input is consumed (the caller slices chunks).
    pub fn feed(&mut self, input: &[u8]) -> DataStatus {
        let dot = self.framing == Framing::DotStuffed;
        let check_lines = !matches!(self.framing, Framing::Chunked { check_lines: false });
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::LineStart => {
                    if dot && b == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    if b == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // A leading dot followed by anything else is deleted (§4.5.2); the
                        // byte itself (even a bare LF) is handled as ordinary content.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::Done;
                        return DataStatus::Complete { consumed: i + 1 };
                    }
                    // ".\r" + something else: a bare CR, not an end marker. The CR is the
                    // line's content; the next byte is processed normally.
                    self.flag(DataError::BareLineEnding);
                    self.state = State::Mid;
                }
                State::Mid => {
                    let rest = &input[i..];
                    match memchr2(b'\r', b'\n', rest) {
                        None => {
                            self.content(rest, check_lines);
                            i = input.len();
                        }
                        Some(p) => {
                            self.content(&rest[..p], check_lines);
                            if rest[p] == b'\r' {
                                self.state = State::Cr;
                            } else {
                                // Bare LF: never a line end.
                                if check_lines {
                                    self.flag(DataError::BareLineEnding);
                                }
                                self.content(b"\n", check_lines);
                            }
                            i += p + 1;
                        }
                    }
                }
                State::Cr => {
                    if b == b'\n' {
                        self.end_line(check_lines);
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        if check_lines {
                            self.flag(DataError::BareLineEnding);
                        }
                        self.content(b"\r", check_lines);
                        self.state = State::Mid;
                    }
                }
                State::Done => return DataStatus::Complete { consumed: i },
            }
        }
        DataStatus::NeedMore
    }

    /// Gives the message up for lack of memory: what was stored is freed, the rest is only
    /// scanned for its end, and the message is refused with [`DataError::OverBudget`] (unless
    /// it had already broken another rule).
    pub fn shed(&mut self) {
        self.flag(DataError::OverBudget);
    }

    /// Ends the message: the body, or why it is refused. For DATA call it after
    /// [`DataStatus::Complete`]; for BDAT after the LAST chunk.
    pub fn finish(mut self) -> Result<Bytes, DataError> {
        let check_lines = !matches!(self.framing, Framing::Chunked { check_lines: false });
        match self.state {
            // A chunked message may legitimately end without a final CRLF; a CR left
            // dangling at the very end is a bare CR though.
            State::Cr if check_lines => self.flag(DataError::BareLineEnding),
            State::Cr => self.content(b"\r", false),
            _ => {}
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.body.freeze()),
        }
    }

    fn flag(&mut self, e: DataError) {
        if self.error.is_none() {
            self.error = Some(e);
            // Nothing more will be stored: give the memory back now.
            self.body = BytesMut::new();
        }
    }

    /// Ordinary line content (no CR LF line end).
    fn content(&mut self, seg: &[u8], check_lines: bool) {
        if seg.is_empty() {
            return;
        }
        if self.in_headers && self.line_len < self.line_head.len() {
            let n = (self.line_head.len() - self.line_len).min(seg.len());
            self.line_head[self.line_len..self.line_len + n].copy_from_slice(&seg[..n]);
        }
        self.line_len += seg.len();
        if check_lines && self.line_len + 2 > self.limits.max_line_length {
            self.flag(DataError::LineTooLong {
                limit: self.limits.max_line_length,
            });
        }
        self.store(seg);
    }

    fn end_line(&mut self, check_lines: bool) {
        if self.in_headers && check_lines {
            if self.line_len == 0 {
                self.in_headers = false;
            } else {
                self.header_bytes += self.line_len + 2;
                if self.line_head[0] != b' ' && self.line_head[0] != b'\t' {
                    self.headers += 1;
                }
                if self.line_len >= 9 && self.line_head.eq_ignore_ascii_case(b"Received:") {
                    self.received += 1;
                }
                if self.received > MAX_RECEIVED {
                    self.flag(DataError::TooManyHops {
                        limit: MAX_RECEIVED,
                    });
                } else if self.headers > self.limits.max_headers {
                    self.flag(DataError::TooManyHeaders {
                        limit: self.limits.max_headers,
                    });
                } else if self.header_bytes > self.limits.max_header_bytes {
                    self.flag(DataError::HeaderTooLarge {
                        limit: self.limits.max_header_bytes,
                    });
                }
            }
        }
        self.line_len = 0;
        self.store(b"\r\n");
    }

    fn store(&mut self, seg: &[u8]) {
        self.size = self.size.saturating_add(seg.len());
        if self.size > self.limits.max_message_size {
            self.flag(DataError::TooLarge {
                limit: self.limits.max_message_size,
            });
        }
        if self.error.is_none() {
            self.body.extend_from_slice(seg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DataLimits {
        DataLimits::default()
    }

    /// Feeds `input` in one go and returns (consumed, result) if the end marker was found.
    fn read_all(input: &[u8], limits: DataLimits) -> Option<(usize, Result<Bytes, DataError>)> {
        let mut r = DataReader::new(Framing::DotStuffed, limits, None);
        match r.feed(input) {
            DataStatus::Complete { consumed } => Some((consumed, r.finish())),
            DataStatus::NeedMore => None,
        }
    }

    /// Feeds `input` one byte at a time; must agree with the one-shot result.
    fn read_bytewise(
        input: &[u8],
        limits: DataLimits,
    ) -> Option<(usize, Result<Bytes, DataError>)> {
        let mut r = DataReader::new(Framing::DotStuffed, limits, None);
        for (i, b) in input.iter().enumerate() {
            if let DataStatus::Complete { consumed } = r.feed(std::slice::from_ref(b)) {
                assert_eq!(consumed, 1);
                return Some((i + 1, r.finish()));
            }
        }
        None
    }

    fn both(input: &[u8]) -> Option<(usize, Result<Bytes, DataError>)> {
        let a = read_all(input, limits());
        assert_eq!(
            a,
            read_bytewise(input, limits()),
            "split feeding disagrees for {input:?}"
        );
        a
    }

    #[test]
    fn simple_message_and_trailing_commands() {
        let input = b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (consumed, body) = both(input).unwrap();
        assert_eq!(&input[consumed..], b"QUIT\r\n");
        assert_eq!(body.unwrap(), &b"Subject: hi\r\n\r\nbody\r\n"[..]);
    }

    #[test]
    fn shed_message_frees_memory_and_reads_to_the_end() {
        let mut r = DataReader::new(Framing::DotStuffed, limits(), None);
        assert_eq!(
            r.feed(b"Subject: x\r\n\r\nfirst part\r\n"),
            DataStatus::NeedMore
        );
        assert!(r.buffered() > 0);
        r.shed();
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.feed(b"second part\r\n"), DataStatus::NeedMore);
        assert_eq!(r.buffered(), 0);
        assert_eq!(
            r.feed(b".\r\nQUIT\r\n"),
            DataStatus::Complete { consumed: 3 }
        );
        assert_eq!(r.finish(), Err(DataError::OverBudget));
    }

    #[test]
    fn empty_message() {
        let (consumed, body) = both(b".\r\n").unwrap();
        assert_eq!(consumed, 3);
        assert_eq!(body.unwrap(), Bytes::new());
    }

    #[test]
    fn dot_unstuffing() {
        let input = b"..leading\r\n...two\r\n.x\r\nmid.dle\r\n..\r\n.\r\n";
        let (_, body) = both(input).unwrap();
        assert_eq!(
            body.unwrap(),
            &b".leading\r\n..two\r\nx\r\nmid.dle\r\n.\r\n"[..]
        );
    }

    #[test]
    fn smuggling_variants_are_not_terminators() {
        for fake in [
            &b"\n.\n"[..],
            b"\r\n.\n",
            b"\n.\r\n",
            b"\r.\r",
            b"\r.\r\n",
            b"\r\n.\r",
        ] {
            let mut msg = b"Subject: x\r\n\r\nhello".to_vec();
            msg.extend_from_slice(fake);
            msg.extend_from_slice(
                b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n",
            );
            // No terminator at all yet: must want more, never "end".
            assert_eq!(read_all(&msg, limits()), None, "{fake:?} ended the message");
            assert_eq!(
                read_bytewise(&msg, limits()),
                None,
                "{fake:?} ended the message bytewise"
            );
            // The real terminator ends it, and the message is refused.
            msg.extend_from_slice(b"\r\n.\r\nNEXT");
            let (consumed, res) = both(&msg).unwrap();
            assert_eq!(&msg[consumed..], b"NEXT");
            assert_eq!(res, Err(DataError::BareLineEnding), "{fake:?}");
        }
    }

    #[test]
    fn bare_cr_and_lf_in_body_rejected() {
        assert_eq!(
            both(b"a\nb\r\n.\r\n").unwrap().1,
            Err(DataError::BareLineEnding)
        );
        assert_eq!(
            both(b"a\rb\r\n.\r\n").unwrap().1,
            Err(DataError::BareLineEnding)
        );
        assert_eq!(
            both(b"a\r\r\n.\r\n").unwrap().1,
            Err(DataError::BareLineEnding)
        );
        // "\n.\r\n" at the very start is content, not an end: only the later CRLF.CRLF ends.
        assert_eq!(
            both(b"\n.\r\n.\r\n").unwrap(),
            (7, Err(DataError::BareLineEnding))
        );
        assert_eq!(
            both(b"x\r\n.\nrest\r\n.\r\n").unwrap().1,
            Err(DataError::BareLineEnding)
        );
    }

    #[test]
    fn size_limit_enforced_while_reading() {
        let lim = DataLimits {
            max_message_size: 100,
            ..limits()
        };
        let mut r = DataReader::new(Framing::DotStuffed, lim, None);
        let line = [b'x'; 50];
        for _ in 0..1000 {
            assert_eq!(r.feed(&line), DataStatus::NeedMore);
            assert_eq!(r.feed(b"\r\n"), DataStatus::NeedMore);
            assert!(r.buffered() <= 100, "stored beyond the limit");
        }
        assert_eq!(r.error(), Some(DataError::TooLarge { limit: 100 }));
        assert_eq!(
            r.feed(b".\r\nRSET\r\n"),
            DataStatus::Complete { consumed: 3 }
        );
        assert_eq!(r.finish(), Err(DataError::TooLarge { limit: 100 }));
        // Exactly at the limit is fine.
        let exact = [b'y'; 98];
        let mut msg = exact.to_vec();
        msg.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(read_all(&msg, lim).unwrap().1.unwrap().len(), 100);
    }

    #[test]
    fn line_length_limit() {
        let lim = DataLimits {
            max_line_length: 10,
            ..limits()
        };
        // 8 octets + CRLF = 10: allowed; a stuffed dot does not count.
        assert!(read_all(b"12345678\r\n..2345678\r\n.\r\n", lim)
            .unwrap()
            .1
            .is_ok());
        assert_eq!(
            read_all(b"123456789\r\n.\r\n", lim).unwrap().1,
            Err(DataError::LineTooLong { limit: 10 })
        );
    }

    #[test]
    fn header_limits() {
        let lim = DataLimits {
            max_headers: 2,
            ..limits()
        };
        assert!(read_all(
            b"A: 1\r\nB: 2\r\n continued\r\n\r\nC: not a header\r\n.\r\n",
            lim
        )
        .unwrap()
        .1
        .is_ok());
        assert_eq!(
            read_all(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n.\r\n", lim)
                .unwrap()
                .1,
            Err(DataError::TooManyHeaders { limit: 2 })
        );
        let lim = DataLimits {
            max_header_bytes: 20,
            ..limits()
        };
        assert!(read_all(
            b"A: 12345\r\nB: 12345\r\n\r\nbody body body body\r\n.\r\n",
            lim
        )
        .unwrap()
        .1
        .is_ok());
        assert_eq!(
            read_all(b"A: 12345\r\nB: 123456\r\n\r\n.\r\n", lim)
                .unwrap()
                .1,
            Err(DataError::HeaderTooLarge { limit: 20 })
        );
    }

    #[test]
    fn received_loop_detection() {
        let mut ok = Vec::new();
        for _ in 0..MAX_RECEIVED {
            ok.extend_from_slice(b"received: from x by y; date\r\n");
        }
        ok.extend_from_slice(b"Received-SPF: pass\r\n\r\nReceived: in the body\r\n.\r\n");
        assert!(read_all(&ok, limits()).unwrap().1.is_ok());
        let mut looped = b"Received: one more\r\n".to_vec();
        looped.extend_from_slice(&ok);
        assert_eq!(
            read_all(&looped, limits()).unwrap().1,
            Err(DataError::TooManyHops {
                limit: MAX_RECEIVED
            })
        );
        // Split across feeds, the field name is still recognised.
        let mut r = DataReader::new(Framing::DotStuffed, limits(), None);
        for b in looped.chunks(4) {
            r.feed(b);
        }
        assert_eq!(
            r.error(),
            Some(DataError::TooManyHops {
                limit: MAX_RECEIVED
            })
        );
    }

    #[test]
    fn chunked_framing_keeps_dots_and_checks_lines() {
        let mut r = DataReader::new(Framing::Chunked { check_lines: true }, limits(), Some(10));
        assert_eq!(r.feed(b"A: b\r\n\r\n.\r"), DataStatus::NeedMore);
        assert_eq!(r.feed(b"\n..x\r\n"), DataStatus::NeedMore);
        assert_eq!(r.finish().unwrap(), &b"A: b\r\n\r\n.\r\n..x\r\n"[..]);
        let mut r = DataReader::new(Framing::Chunked { check_lines: true }, limits(), None);
        r.feed(b"a\nb");
        assert_eq!(r.finish(), Err(DataError::BareLineEnding));
        let mut r = DataReader::new(Framing::Chunked { check_lines: true }, limits(), None);
        r.feed(b"ends with cr\r");
        assert_eq!(r.finish(), Err(DataError::BareLineEnding));
        let mut r = DataReader::new(Framing::Chunked { check_lines: false }, limits(), None);
        r.feed(b"bin\n\r\0ary\r");
        assert_eq!(r.finish().unwrap(), &b"bin\n\r\0ary\r"[..]);
    }

    #[test]
    fn size_hint_is_capped() {
        let lim = DataLimits {
            max_message_size: 1000,
            ..limits()
        };
        let r = DataReader::new(Framing::DotStuffed, lim, Some(u64::MAX));
        assert!(r.body.capacity() <= 1000);
    }
}

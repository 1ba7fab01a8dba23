//! Log record format: framing (`[len u32][crc32c u32][kind u8][payload]`, little endian, CRC
//! over kind + payload) and the typed records with their payload encoding.

use crate::types::{BodyRef, SpecialUse};
use bytes::Bytes;

/// Bytes before the kind byte: length and CRC.
pub(crate) const HEADER_LEN: usize = 8;
/// Bytes in front of a body: header plus kind.
pub(crate) const BODY_PREFIX: usize = HEADER_LEN + 1;
/// Largest `len` field accepted (kind + payload); larger values are treated as garbage.
pub(crate) const MAX_RECORD_LEN: u32 = 1 << 30;
/// Largest body one record can hold.
pub(crate) const MAX_BODY_LEN: u64 = MAX_RECORD_LEN as u64 - 1;

/// Record kinds. Values are part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Body = 1,
    AccountCreated = 2,
    MailboxCreated = 3,
    MailboxRenamed = 4,
    MailboxDeleted = 5,
    Subscription = 6,
    KeywordDefined = 7,
    Appended = 8,
    FlagsChanged = 9,
    Expunged = 10,
    QueueAdded = 11,
    QueueDone = 12,
    QueueRetry = 13,
    BodiesMoved = 14,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Body,
            2 => Kind::AccountCreated,
            3 => Kind::MailboxCreated,
            4 => Kind::MailboxRenamed,
            5 => Kind::MailboxDeleted,
            6 => Kind::Subscription,
            7 => Kind::KeywordDefined,
            8 => Kind::Appended,
            9 => Kind::FlagsChanged,
            10 => Kind::Expunged,
            11 => Kind::QueueAdded,
            12 => Kind::QueueDone,
            13 => Kind::QueueRetry,
            14 => Kind::BodiesMoved,
            _ => return None,
        })
    }
}

/// A state-changing record (everything but bodies). Replay applies exactly these to the index,
/// and live operations apply the same values, so the two can never disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    AccountCreated {
        account: &'a str,
    },
    MailboxCreated {
        account: &'a str,
        name: &'a str,
        uidvalidity: u32,
        special_use: Option<SpecialUse>,
    },
    /// Renames one mailbox (inferiors get their own records). Renaming INBOX moves its
    /// messages to a new mailbox `to` and leaves INBOX empty.
    MailboxRenamed {
        account: &'a str,
        from: &'a str,
        to: &'a str,
        uidvalidity: u32,
    },
    MailboxDeleted {
        account: &'a str,
        name: &'a str,
    },
    Subscription {
        account: &'a str,
        name: &'a str,
        on: bool,
    },
    KeywordDefined {
        account: &'a str,
        mailbox: &'a str,
        keyword: &'a str,
    },
    Appended {
        account: &'a str,
        mailbox: &'a str,
        uid: u32,
        body: BodyRef,
        internal_date: i64,
        flags: u64,
        modseq: u64,
    },
    FlagsChanged {
        account: &'a str,
        mailbox: &'a str,
        modseq: u64,
        /// (uid, new flags), UID ascending.
        changes: Vec<(u32, u64)>,
    },
    Expunged {
        account: &'a str,
        mailbox: &'a str,
        modseq: u64,
        /// UID ascending.
        uids: Vec<u32>,
    },
    QueueAdded {
        id: u64,
        sender: &'a str,
        rcpts: Vec<&'a str>,
        body: BodyRef,
        queued_at: i64,
    },
    QueueDone {
        id: u64,
    },
    QueueRetry {
        id: u64,
        attempts: u32,
        next_attempt: i64,
    },
    /// Compaction copied these bodies of `segment` to the log head: (old offset, new place).
    BodiesMoved {
        segment: u32,
        /// Old offset ascending.
        moves: Vec<(u64, BodyRef)>,
    },
}

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) &'static str);

impl Record<'_> {
    fn kind(&self) -> Kind {
        match self {
            Record::AccountCreated { .. } => Kind::AccountCreated,
            Record::MailboxCreated { .. } => Kind::MailboxCreated,
            Record::MailboxRenamed { .. } => Kind::MailboxRenamed,
            Record::MailboxDeleted { .. } => Kind::MailboxDeleted,
            Record::Subscription { .. } => Kind::Subscription,
            Record::KeywordDefined { .. } => Kind::KeywordDefined,
            Record::Appended { .. } => Kind::Appended,
            Record::FlagsChanged { .. } => Kind::FlagsChanged,
            Record::Expunged { .. } => Kind::Expunged,
            Record::QueueAdded { .. } => Kind::QueueAdded,
            Record::QueueDone { .. } => Kind::QueueDone,
            Record::QueueRetry { .. } => Kind::QueueRetry,
            Record::BodiesMoved { .. } => Kind::BodiesMoved,
        }
    }

    /// Appends the framed record to `buf`; returns the framed length.
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>) -> usize {
        let start = begin_frame(buf, self.kind());
        let mut e = Enc(buf);
        match self {
            Record::AccountCreated { account } => e.str(account),
            Record::MailboxCreated {
                account,
                name,
                uidvalidity,
                special_use,
            } => {
                e.str(account);
                e.str(name);
                e.u32(*uidvalidity);
                e.u8(special_use.map_or(0, SpecialUse::to_byte));
            }
            Record::MailboxRenamed {
                account,
                from,
                to,
                uidvalidity,
            } => {
                e.str(account);
                e.str(from);
                e.str(to);
                e.u32(*uidvalidity);
            }
            Record::MailboxDeleted { account, name } => {
                e.str(account);
                e.str(name);
            }
            Record::Subscription { account, name, on } => {
                e.str(account);
                e.str(name);
                e.u8(u8::from(*on));
            }
            Record::KeywordDefined {
                account,
                mailbox,
                keyword,
            } => {
                e.str(account);
                e.str(mailbox);
                e.str(keyword);
            }
            Record::Appended {
                account,
                mailbox,
                uid,
                body,
                internal_date,
                flags,
                modseq,
            } => {
                e.str(account);
                e.str(mailbox);
                e.u32(*uid);
                e.body(body);
                e.u64(*internal_date as u64);
                e.u64(*flags);
                e.u64(*modseq);
            }
            Record::FlagsChanged {
                account,
                mailbox,
                modseq,
                changes,
            } => {
                e.str(account);
                e.str(mailbox);
                e.u64(*modseq);
                e.u32(changes.len() as u32);
                for (uid, flags) in changes {
                    e.u32(*uid);
                    e.u64(*flags);
                }
            }
            Record::Expunged {
                account,
                mailbox,
                modseq,
                uids,
            } => {
                e.str(account);
                e.str(mailbox);
                e.u64(*modseq);
                e.u32(uids.len() as u32);
                for uid in uids {
                    e.u32(*uid);
                }
            }
            Record::QueueAdded {
                id,
                sender,
                rcpts,
                body,
                queued_at,
            } => {
                e.u64(*id);
                e.str(sender);
                e.u32(rcpts.len() as u32);
                for r in rcpts {
                    e.str(r);
                }
                e.body(body);
                e.u64(*queued_at as u64);
            }
            Record::QueueDone { id } => e.u64(*id),
            Record::QueueRetry {
                id,
                attempts,
                next_attempt,
            } => {
                e.u64(*id);
                e.u32(*attempts);
                e.u64(*next_attempt as u64);
            }
            Record::BodiesMoved { segment, moves } => {
                e.u32(*segment);
                e.u32(moves.len() as u32);
                for (from, to) in moves {
                    e.u64(*from);
                    e.body(to);
                }
            }
        }
        end_frame(buf, start)
    }

    /// Decodes the payload of a non-body record of `kind`.
    pub(crate) fn decode(kind: Kind, payload: &[u8]) -> Result<Record<'_>, DecodeError> {
        let mut d = Dec(payload);
        let rec = match kind {
            Kind::Body => return Err(DecodeError("body record has no typed payload")),
            Kind::AccountCreated => Record::AccountCreated { account: d.str()? },
            Kind::MailboxCreated => Record::MailboxCreated {
                account: d.str()?,
                name: d.str()?,
                uidvalidity: d.u32()?,
                special_use: SpecialUse::from_byte(d.u8()?)
                    .ok_or(DecodeError("unknown special-use"))?,
            },
            Kind::MailboxRenamed => Record::MailboxRenamed {
                account: d.str()?,
                from: d.str()?,
                to: d.str()?,
                uidvalidity: d.u32()?,
            },
            Kind::MailboxDeleted => Record::MailboxDeleted {
                account: d.str()?,
                name: d.str()?,
            },
            Kind::Subscription => Record::Subscription {
                account: d.str()?,
                name: d.str()?,
                on: match d.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError("bad subscription flag")),
                },
            },
            Kind::KeywordDefined => Record::KeywordDefined {
                account: d.str()?,
                mailbox: d.str()?,
                keyword: d.str()?,
            },
            Kind::Appended => Record::Appended {
                account: d.str()?,
                mailbox: d.str()?,
                uid: d.u32()?,
                body: d.body()?,
                internal_date: d.u64()? as i64,
                flags: d.u64()?,
                modseq: d.u64()?,
            },
            Kind::FlagsChanged => {
                let account = d.str()?;
                let mailbox = d.str()?;
                let modseq = d.u64()?;
                let n = d.count(12)?;
                let mut changes = Vec::with_capacity(n);
                for _ in 0..n {
                    changes.push((d.u32()?, d.u64()?));
                }
                Record::FlagsChanged {
                    account,
                    mailbox,
                    modseq,
                    changes,
                }
            }
            Kind::Expunged => {
                let account = d.str()?;
                let mailbox = d.str()?;
                let modseq = d.u64()?;
                let n = d.count(4)?;
                let mut uids = Vec::with_capacity(n);
                for _ in 0..n {
                    uids.push(d.u32()?);
                }
                Record::Expunged {
                    account,
                    mailbox,
                    modseq,
                    uids,
                }
            }
            Kind::QueueAdded => {
                let id = d.u64()?;
                let sender = d.str()?;
                let n = d.count(4)?;
                let mut rcpts = Vec::with_capacity(n);
                for _ in 0..n {
                    rcpts.push(d.str()?);
                }
                Record::QueueAdded {
                    id,
                    sender,
                    rcpts,
                    body: d.body()?,
                    queued_at: d.u64()? as i64,
                }
            }
            Kind::QueueDone => Record::QueueDone { id: d.u64()? },
            Kind::QueueRetry => Record::QueueRetry {
                id: d.u64()?,
                attempts: d.u32()?,
                next_attempt: d.u64()? as i64,
            },
            Kind::BodiesMoved => {
                let segment = d.u32()?;
                let n = d.count(24)?;
                let mut moves = Vec::with_capacity(n);
                for _ in 0..n {
                    moves.push((d.u64()?, d.body()?));
                }
                Record::BodiesMoved { segment, moves }
            }
        };
        if !d.0.is_empty() {
            return Err(DecodeError("trailing bytes after payload"));
        }
        Ok(rec)
    }
}

/// Appends a framed body record made of `parts` to `buf` without joining the parts first.
/// Returns (framed length, body length).
pub(crate) fn encode_body_into(buf: &mut Vec<u8>, parts: &[Bytes]) -> (usize, usize) {
    let start = begin_frame(buf, Kind::Body);
    let body_len: usize = parts.iter().map(Bytes::len).sum();
    buf.reserve(body_len);
    for p in parts {
        buf.extend_from_slice(p);
    }
    (end_frame(buf, start), body_len)
}

/// Framed size of a body record holding `body_len` bytes.
pub(crate) fn body_frame_len(body_len: u64) -> u64 {
    BODY_PREFIX as u64 + body_len
}

fn begin_frame(buf: &mut Vec<u8>, kind: Kind) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    buf.push(kind as u8);
    start
}

fn end_frame(buf: &mut [u8], start: usize) -> usize {
    let body = &buf[start + HEADER_LEN..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    assert!(
        (1..=MAX_RECORD_LEN).contains(&len),
        "record length {len} out of range"
    );
    let crc = crc32c::crc32c(body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf.len() - start
}

/// Outcome of looking at the bytes at one offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete record with a matching CRC: kind, payload range within the input, total size.
    Valid {
        kind: Kind,
        payload: std::ops::Range<usize>,
        total: usize,
    },
    /// Header is plausible but more bytes than given are needed to check it.
    NeedMore(usize),
    /// Not a record (zero length, garbage length, CRC mismatch, unknown kind).
    Invalid(&'static str),
}

/// Checks the frame at the start of `buf`. `available` is how many bytes exist in the file from
/// this point on (at least `buf.len()`), so a length running past the end is reported invalid.
pub(crate) fn check_frame(buf: &[u8], available: u64) -> Frame {
    if available < HEADER_LEN as u64 + 1 {
        return Frame::Invalid("truncated header");
    }
    if buf.len() < HEADER_LEN {
        return Frame::NeedMore(HEADER_LEN);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 {
        return Frame::Invalid("zero length");
    }
    if len > MAX_RECORD_LEN {
        return Frame::Invalid("length out of range");
    }
    let total = HEADER_LEN + len as usize;
    if total as u64 > available {
        return Frame::Invalid("record runs past the end of the segment");
    }
    if buf.len() < total {
        return Frame::NeedMore(total);
    }
    let body = &buf[HEADER_LEN..total];
    if crc32c::crc32c(body) != crc {
        return Frame::Invalid("CRC mismatch");
    }
    match Kind::from_byte(body[0]) {
        Some(kind) => Frame::Valid {
            kind,
            payload: HEADER_LEN + 1..total,
            total,
        },
        None => Frame::Invalid("unknown record kind"),
    }
}

struct Enc<'b>(&'b mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        // Names are validated to be short long before they get here.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        assert!(len < MAX_RECORD_LEN, "string too long for a record");
        self.u32(len);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn body(&mut self, b: &BodyRef) {
        self.u32(b.segment);
        self.u64(b.offset);
        self.u32(b.len);
    }
}

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("payload too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn body(&mut self) -> Result<BodyRef, DecodeError> {
        Ok(BodyRef {
            segment: self.u32()?,
            offset: self.u64()?,
            len: self.u32()?,
        })
    }
    /// A element count, checked against the bytes left so a bad count cannot over-allocate.
    fn count(&mut self, min_elem: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_elem) > self.0.len() {
            return Err(DecodeError("element count exceeds payload"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        let body = BodyRef {
            segment: 3,
            offset: 77,
            len: 1234,
        };
        vec![
            Record::AccountCreated { account: "a@b.c" },
            Record::MailboxCreated {
                account: "a@b.c",
                name: "Sent",
                uidvalidity: 9,
                special_use: Some(SpecialUse::Sent),
            },
            Record::MailboxRenamed {
                account: "a@b.c",
                from: "x",
                to: "y/é",
                uidvalidity: 10,
            },
            Record::MailboxDeleted {
                account: "a@b.c",
                name: "y",
            },
            Record::Subscription {
                account: "a@b.c",
                name: "z",
                on: true,
            },
            Record::KeywordDefined {
                account: "a@b.c",
                mailbox: "INBOX",
                keyword: "$Junk",
            },
            Record::Appended {
                account: "a@b.c",
                mailbox: "INBOX",
                uid: 5,
                body,
                internal_date: -3,
                flags: 0x101,
                modseq: 17,
            },
            Record::FlagsChanged {
                account: "a@b.c",
                mailbox: "INBOX",
                modseq: 18,
                changes: vec![(1, 2), (5, 1 << 63)],
            },
            Record::Expunged {
                account: "a@b.c",
                mailbox: "INBOX",
                modseq: 19,
                uids: vec![1, 5],
            },
            Record::QueueAdded {
                id: 4,
                sender: "",
                rcpts: vec!["x@y", "z@w"],
                body,
                queued_at: 1_700_000_000,
            },
            Record::QueueDone { id: 4 },
            Record::QueueRetry {
                id: 4,
                attempts: 2,
                next_attempt: 99,
            },
            Record::BodiesMoved {
                segment: 2,
                moves: vec![(9, body), (4000, body)],
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for rec in samples() {
            let mut buf = Vec::new();
            let n = rec.encode_into(&mut buf);
            assert_eq!(n, buf.len());
            match check_frame(&buf, buf.len() as u64) {
                Frame::Valid {
                    kind,
                    payload,
                    total,
                } => {
                    assert_eq!(total, n);
                    assert_eq!(Record::decode(kind, &buf[payload]).unwrap(), rec);
                }
                other => panic!("{rec:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn body_frames_carry_parts_verbatim() {
        let parts = [
            Bytes::from_static(b"Received: x\r\n"),
            Bytes::from_static(b"body"),
        ];
        let mut buf = vec![0xAA]; // frames need not start at 0
        let (n, body_len) = encode_body_into(&mut buf, &parts);
        assert_eq!(body_len, 17);
        assert_eq!(n as u64, body_frame_len(17));
        match check_frame(&buf[1..], n as u64) {
            Frame::Valid { kind, payload, .. } => {
                assert_eq!(kind, Kind::Body);
                assert_eq!(&buf[1..][payload], b"Received: x\r\nbody");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_frames_are_invalid() {
        let mut buf = Vec::new();
        Record::QueueDone { id: 1 }.encode_into(&mut buf);
        let n = buf.len() as u64;
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(
                !matches!(check_frame(&b, n), Frame::Valid { .. }),
                "flip at {i} undetected"
            );
        }
        assert_eq!(
            check_frame(&buf[..5], 5),
            Frame::Invalid("truncated header")
        );
        assert!(matches!(check_frame(&buf, n - 1), Frame::Invalid(_)));
        assert!(matches!(check_frame(&buf[..10], n), Frame::NeedMore(_)));
        assert_eq!(check_frame(&[0u8; 16], 16), Frame::Invalid("zero length"));
    }

    #[test]
    fn truncated_payload_fails_to_decode() {
        let mut buf = Vec::new();
        let rec = Record::Expunged {
            account: "a",
            mailbox: "b",
            modseq: 1,
            uids: vec![1, 2, 3],
        };
        rec.encode_into(&mut buf);
        let payload = &buf[BODY_PREFIX..];
        for cut in 0..payload.len() {
            assert!(Record::decode(Kind::Expunged, &payload[..cut]).is_err());
        }
        assert!(Record::decode(Kind::Expunged, &[payload, &[0]].concat()).is_err());
    }
}

//! What the session hands to delivery: the envelope, the trace-header prefix and queue ids.
//!
//! The trace fields (RFC 5321 §4.4) live in a small separate `Bytes` so the body buffer is never
//! copied to put headers in front of it: the stored message is `prefix ++ body`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::parser::BodyType;

/// A local recipient: the address as accepted and the accounts it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecipient {
    /// Canonical address (`local@domain`, domain lower-cased).
    pub address: String,
    /// Accounts the directory resolved it to (aliases may give several).
    pub accounts: Vec<String>,
}

/// One accepted message, ready for delivery.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Queue id, also shown to the client in `250 2.0.0 Ok: queued as <id>`.
    pub queue_id: String,
    /// Reverse-path in canonical form; empty for the null sender `<>`.
    pub from: String,
    /// Recipients delivered to local mailboxes.
    pub rcpts_local: Vec<LocalRecipient>,
    /// Recipients to relay outbound (only ever non-empty for authenticated submission).
    pub rcpts_remote: Vec<String>,
    /// The authenticated account, if any.
    pub authenticated: Option<String>,
    /// HELO/EHLO name as the client gave it.
    pub helo: String,
    /// The client's IP address.
    pub peer_ip: IpAddr,
    /// Whether the message arrived over TLS.
    pub tls: bool,
    /// BODY= of the transaction.
    pub body_type: BodyType,
    /// Whether the transaction used SMTPUTF8.
    pub smtputf8: bool,
    /// Trace prefix for local delivery: `Return-Path:` then `Received:`, each CRLF-terminated.
    pub prefix: Bytes,
    /// The message exactly as received (dot-unstuffed), CRLF line ends.
    pub body: Bytes,
    /// Length of the `Return-Path:` field at the start of `prefix` (0 if there is none).
    pub return_path_len: usize,
}

impl Envelope {
    /// The trace prefix for relaying: only the `Received:` field, since a relay must not add
    /// `Return-Path:` (RFC 5321 §4.4). Shares memory with `prefix`.
    pub fn relay_prefix(&self) -> Bytes {
        self.prefix
            .slice(self.return_path_len.min(self.prefix.len())..)
    }

    /// Stored size of the message: prefix plus body.
    pub fn message_len(&self) -> usize {
        self.prefix.len() + self.body.len()
    }

    /// Every recipient address, local first.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.rcpts_local
            .iter()
            .map(|r| r.address.as_str())
            .chain(self.rcpts_remote.iter().map(String::as_str))
    }
}

/// Makes queue ids unique within a process run and (by the start time) across runs:
/// `{start µs:013X}{seed:04X}{counter:X}`. One generator per executor; share it between that
/// executor's listeners (it is an `Arc` in [`SessionConfig`](super::session::SessionConfig)).
#[derive(Debug)]
pub struct QueueIdGenerator {
    prefix: String,
    counter: AtomicU64,
}

impl QueueIdGenerator {
    /// A generator seeded with this executor's id, using the current time as run marker.
    pub fn new(seed: u16) -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Self::with_start(micros, seed)
    }

    /// A generator with an explicit run marker (tests).
    pub fn with_start(start_micros: u64, seed: u16) -> Self {
        Self {
            prefix: format!("{start_micros:013X}{seed:04X}"),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.prefix.len() + 8);
        id.push_str(&self.prefix);
        // Writing into a String cannot fail.
        let _ = write!(id, "{n:X}");
        id
    }
}

/// The `with` protocol of the Received field (RFC 3848, RFC 6531 §3.7.3).
pub fn with_protocol(esmtp: bool, smtputf8: bool, tls: bool, auth: bool) -> &'static str {
    match (esmtp, smtputf8, tls, auth) {
        (false, ..) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, false) => "ESMTPS",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// Inputs of the trace prefix.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    /// Reverse-path (empty for `<>`).
    pub from: &'a str,
    /// HELO/EHLO name.
    pub helo: &'a str,
    /// Client IP.
    pub peer_ip: IpAddr,
    /// Our hostname.
    pub hostname: &'a str,
    /// From [`with_protocol`].
    pub protocol: &'a str,
    /// Queue id.
    pub queue_id: &'a str,
    /// The recipient for the `for` clause (given only for single-recipient messages).
    pub for_rcpt: Option<&'a str>,
}

/// Builds `Return-Path: <from>` + `Received: from HELO ([ip]) by HOST with PROTO id ID
/// [for <rcpt>]; DATE`; returns the prefix and the length of its Return-Path field.
pub fn trace_prefix(t: &Trace<'_>) -> (Bytes, usize) {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| String::from("Thu, 01 Jan 1970 00:00:00 +0000"));
    let mut s = String::with_capacity(160 + t.from.len() + t.helo.len() + t.hostname.len());
    // Writing into a String cannot fail.
    let _ = write!(s, "Return-Path: <{}>\r\n", t.from);
    let rp_len = s.len();
    s.push_str("Received: from ");
    push_helo(&mut s, t.helo);
    s.push_str(" (");
    push_ip_literal(&mut s, t.peer_ip);
    let _ = write!(
        s,
        ")\r\n\tby {} with {} id {}",
        t.hostname, t.protocol, t.queue_id
    );
    if let Some(r) = t.for_rcpt {
        let _ = write!(s, "\r\n\tfor <{r}>");
    }
    let _ = write!(s, ";\r\n\t{date}\r\n");
    (Bytes::from(s), rp_len)
}

/// The HELO name is the peer's text going into a header field: keep only characters that can
/// appear in a domain or address literal, so it can neither fold the field nor fake a comment.
fn push_helo(s: &mut String, helo: &str) {
    if helo.is_empty() {
        s.push_str("unknown");
        return;
    }
    s.extend(helo.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']') {
            c
        } else {
            '?'
        }
    }));
}

fn push_ip_literal(s: &mut String, ip: IpAddr) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let _ = match ip {
        IpAddr::V4(a) => write!(s, "[{a}]"),
        IpAddr::V6(a) => write!(s, "[IPv6:{a}]"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn queue_ids_are_unique_and_ordered_by_seed() {
        let g = QueueIdGenerator::with_start(0x1234, 7);
        let a = g.next_id();
        let b = g.next_id();
        assert_eq!(a, format!("{}{}{}", "0000000001234", "0007", "0"));
        assert_ne!(a, b);
        let other = QueueIdGenerator::with_start(0x1234, 8);
        assert_ne!(other.next_id(), a);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn protocols() {
        assert_eq!(with_protocol(false, false, true, true), "SMTP");
        assert_eq!(with_protocol(true, false, false, false), "ESMTP");
        assert_eq!(with_protocol(true, false, true, true), "ESMTPSA");
        assert_eq!(with_protocol(true, false, true, false), "ESMTPS");
        assert_eq!(with_protocol(true, true, true, true), "UTF8SMTPSA");
    }

    #[test]
    fn trace_prefix_format() {
        let t = Trace {
            from: "a@b.example",
            helo: "client.example",
            peer_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            hostname: "mx.example.org",
            protocol: "ESMTPS",
            queue_id: "ABC",
            for_rcpt: Some("u@example.org"),
        };
        let (p, rp) = trace_prefix(&t);
        let s = std::str::from_utf8(&p).unwrap();
        assert_eq!(&s[..rp], "Return-Path: <a@b.example>\r\n");
        assert!(s[rp..].starts_with(
            "Received: from client.example ([192.0.2.1])\r\n\tby mx.example.org with ESMTPS id ABC\r\n\tfor <u@example.org>;\r\n\t"
        ), "{s}");
        assert!(s.ends_with(" +0000\r\n"), "{s}");
        // Every line but folded continuations starts a field; no bare CR/LF.
        assert_eq!(s.matches('\n').count(), s.matches("\r\n").count());
    }

    #[test]
    fn trace_prefix_sanitises_helo_and_formats_ipv6() {
        let t = Trace {
            from: "",
            helo: "evil)\r\nX-Injected: 1 (",
            peer_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            hostname: "mx",
            protocol: "ESMTP",
            queue_id: "Q",
            for_rcpt: None,
        };
        let (p, rp) = trace_prefix(&t);
        let s = std::str::from_utf8(&p).unwrap();
        assert_eq!(&s[..rp], "Return-Path: <>\r\n");
        assert!(
            s.contains("from evil???X-Injected:?1?? ([IPv6:2001:db8::1])"),
            "{s}"
        );
        assert!(!s.contains("for <"));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let (p, _) = trace_prefix(&Trace {
            peer_ip: mapped,
            ..t
        });
        assert!(std::str::from_utf8(&p).unwrap().contains("([10.0.0.1])"));
    }
}

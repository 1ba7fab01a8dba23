//! The message-content half of IMAP FETCH and SEARCH: ENVELOPE, BODY/BODYSTRUCTURE,
//! `BODY[section]`, `BINARY[section]` (RFC 3501 §6.4.5 and §7.4.2, RFC 9051, RFC 3516) and the
//! content search keys (HEADER/FROM/SUBJECT/BODY/TEXT/SENT*, with RFC 2047 decoding).
//!
//! mail-parser finds the MIME structure (with exact raw offsets) and decodes bodies (transfer
//! encoding, charsets, RFC 2047). What IMAP needs beyond that is here: octet-exact slices of the
//! stored bytes, header fields as stored, and the *undecoded* strings that ENVELOPE and
//! BODYSTRUCTURE must return. mail-parser only hands out decoded values (RFC 2047 names, RFC 2231
//! parameters, lower-cased types), so small RFC 5322 / RFC 2045 lexers below read the raw header
//! bytes; the output follows Dovecot's conventions (lower-case defaults, `MISSING_DOMAIN`, ...).
//!
//! Every function takes peer-controlled bytes: nothing here panics on malformed input, MIME
//! nesting is capped at [`MAX_DEPTH`], and deeply nested parse trees are torn down iteratively.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine;
use mail_parser::parsers::MessageStream;
use mail_parser::{DateTime, HeaderValue, Message, MessageParser, PartType};
use memchr::memchr;
use thiserror::Error;

use super::section::{Section, SectionText};

/// Deepest MIME nesting (multipart and message/rfc822 levels) that is descended into; parts
/// below it are reported as opaque leaves.
pub const MAX_DEPTH: usize = 64;

/// A quoted string with more quoted-specials than this is sent as a literal (as Dovecot does:
/// past about four escapes a literal is no longer than the quoted form).
const QUOTED_MAX_ESCAPES: usize = 4;

/// Why `BINARY[section]` could not be served.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BinaryError {
    /// The section part number does not exist in this message.
    #[error("no such body part")]
    NoSuchPart,
    /// The part's Content-Transfer-Encoding is one we cannot decode (RFC 3516 `UNKNOWN-CTE`).
    #[error("unknown content-transfer-encoding {0:?}")]
    UnknownCte(String),
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The parenthesised ENVELOPE value of `msg` (RFC 3501 §7.4.2), strings raw as in the header.
pub fn envelope(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_envelope(&mut out, &msg[..header_len(msg)]);
    out
}

/// The parenthesised BODYSTRUCTURE (`extended`) or BODY (`!extended`) value of `msg`.
pub fn body_structure(msg: &[u8], extended: bool) -> Vec<u8> {
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    let mut out = Vec::with_capacity(256);
    write_body(&mut out, &root, extended);
    out
}

/// The bytes of `BODY[section]` (before any `<partial>`), or `None` if the part does not exist
/// or the section text does not apply to it (e.g. `HEADER` of a part that is not a message).
pub fn section(msg: &[u8], section: &Section) -> Option<Vec<u8>> {
    if section.part.is_empty() {
        // The top level needs only the header boundary, not a MIME parse.
        let hlen = header_len(msg);
        return match &section.text {
            None => Some(msg.to_vec()),
            Some(SectionText::Mime) => None,
            Some(text) => message_section(&msg[..hlen], &msg[hlen..], text),
        };
    }
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    let node = resolve(&root, &section.part)?;
    match &section.text {
        None => Some(node.body().to_vec()),
        Some(SectionText::Mime) => Some(node.header().to_vec()),
        Some(text) => match &node.kind {
            // The encapsulated message is the part's whole (decoded) body: its TEXT runs to
            // the end of the part, epilogue of an inner multipart included.
            Kind::Message(inner) => match decode_transfer(node) {
                Ok(content) => {
                    let hlen = header_len(&content);
                    message_section(&content[..hlen], &content[hlen..], text)
                }
                Err(_) => message_section(inner.header(), inner.body(), text),
            },
            _ => None,
        },
    }
}

/// The content-transfer-decoded bytes of `BINARY[part]` (RFC 3516); `[]` is the whole message.
pub fn binary_section(msg: &[u8], part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(msg.to_vec());
    }
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    let node = resolve(&root, part).ok_or(BinaryError::NoSuchPart)?;
    decode_transfer(node).map(Cow::into_owned)
}

/// A message APPENDed as a literal8 (RFC 3516) made storable as IMAP sends it: every leaf part
/// whose Content-Transfer-Encoding is `binary`, or that holds a NUL, is re-encoded as base64
/// (76-column lines) and its header says so — what Dovecot stores, so BODY[] never carries a
/// NUL while BINARY[] still gives the original octets. `None` if nothing needed it.
pub fn binary_to_base64(msg: &[u8]) -> Option<Vec<u8>> {
    if !has_binary_part(msg) {
        return None;
    }
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    collect_binary_edits(&root, msg, &mut edits, 0);
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = Vec::with_capacity(msg.len() * 4 / 3 + 64);
    let mut pos = 0;
    for (range, with) in edits {
        if range.start < pos || range.end > msg.len() {
            // Overlapping edits cannot come from one tree; keep the message as it was.
            return None;
        }
        out.extend_from_slice(&msg[pos..range.start]);
        out.extend_from_slice(&with);
        pos = range.end;
    }
    out.extend_from_slice(&msg[pos..]);
    Some(out)
}

/// Cheap pre-check: a NUL, or a `binary` transfer encoding named anywhere.
fn has_binary_part(msg: &[u8]) -> bool {
    memchr::memchr(0, msg).is_some() || msg.windows(6).any(|w| w.eq_ignore_ascii_case(b"binary"))
}

fn collect_binary_edits(
    node: &Node<'_>,
    msg: &[u8],
    edits: &mut Vec<(Range<usize>, Vec<u8>)>,
    depth: usize,
) {
    if depth > MAX_DEPTH || !std::ptr::eq(node.raw, msg) {
        // Parts inside an encoded message/rfc822 live in decoded bytes: not ours to edit.
        return;
    }
    match &node.kind {
        Kind::Multipart(children) => {
            for c in children {
                collect_binary_edits(c, msg, edits, depth + 1);
            }
        }
        Kind::Message(inner) => collect_binary_edits(inner, msg, edits, depth + 1),
        Kind::Leaf => {
            let body = node.body();
            let named_binary = node
                .info
                .encoding
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(b"binary"));
            if !named_binary && memchr::memchr(0, body).is_none() {
                return;
            }
            if node.info.encoding.as_deref().is_some_and(|e| {
                e.eq_ignore_ascii_case(b"base64") || e.eq_ignore_ascii_case(b"quoted-printable")
            }) {
                // Already encoded (a NUL there is garbage, not content).
                return;
            }
            let header = node.header();
            let hstart = node.header.start;
            let field = fields(header)
                .into_iter()
                .find(|f| f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding"));
            let cte_line = b"Content-Transfer-Encoding: base64\r\n".to_vec();
            match field {
                Some(f) => {
                    let start = hstart + (f.raw.as_ptr() as usize - header.as_ptr() as usize);
                    edits.push((start..start + f.raw.len(), cte_line));
                }
                None => {
                    // Before the blank line that ends the header.
                    let blank = if header.ends_with(b"\r\n") {
                        2
                    } else {
                        usize::from(header.ends_with(b"\n"))
                    };
                    let at = node.header.end.saturating_sub(blank).max(hstart);
                    edits.push((at..at, cte_line));
                }
            }
            edits.push((node.body.clone(), encode_base64_lines(body)));
        }
    }
}

/// Base64 in 76-column lines joined by CRLF (RFC 2045 §6.8), no line break at the end.
fn encode_base64_lines(data: &[u8]) -> Vec<u8> {
    let flat = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(flat.len() + flat.len() / 76 * 2);
    for (i, chunk) in flat.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// The size of `BINARY[part]` in octets (`BINARY.SIZE`, RFC 3516).
pub fn binary_size(msg: &[u8], part: &[u32]) -> Result<usize, BinaryError> {
    if part.is_empty() {
        return Ok(msg.len());
    }
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    let node = resolve(&root, part).ok_or(BinaryError::NoSuchPart)?;
    decode_transfer(node).map(|b| b.len())
}

/// SEARCH HEADER (and FROM/TO/CC/BCC/SUBJECT): does a top-level `field` contain `needle`,
/// RFC 2047-decoded, unfolded and case-insensitively? An empty needle matches if the field exists.
pub fn header_value_contains(msg: &[u8], field: &str, needle: &str) -> bool {
    let needle = fold(needle);
    fields(&msg[..header_len(msg)])
        .into_iter()
        .filter(|f| f.name.eq_ignore_ascii_case(field.as_bytes()))
        .any(|f| needle.is_empty() || fold(&decode_header_value(f.value)).contains(&needle))
}

/// SEARCH FROM / TO / CC / BCC: does an address field, parsed and written back in normal form
/// (`Name <local@domain>`, groups as `group: ...;`, comments and routes dropped), contain
/// `needle` case-insensitively? So `<user (c)@ (c) domain.org>` is found as
/// `user@domain.org`, as Dovecot does. An empty needle matches if the field exists.
pub fn address_value_contains(msg: &[u8], field: &str, needle: &str) -> bool {
    let needle = fold(needle);
    fields(&msg[..header_len(msg)])
        .into_iter()
        .filter(|f| f.name.eq_ignore_ascii_case(field.as_bytes()))
        .any(|f| {
            needle.is_empty() || fold(&normalized_addresses(&unfold(f.value))).contains(&needle)
        })
}

/// An address list written back as text: `Name <local@domain>, local@domain, group: a@b;`.
fn normalized_addresses(value: &[u8]) -> String {
    let mut out = String::new();
    let mut in_group = false;
    let mut first_in_group = false;
    for a in parse_addresses(value) {
        match (&a.name, &a.mailbox, &a.host) {
            // Group end.
            (None, None, None) => {
                out.push(';');
                in_group = false;
            }
            // Group start: (NIL NIL name NIL).
            (None, Some(group), None) => {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(&decode_header_value(group));
                out.push(':');
                in_group = true;
                first_in_group = true;
            }
            (name, mailbox, host) => {
                if in_group && first_in_group {
                    out.push(' ');
                    first_in_group = false;
                } else if !out.is_empty() {
                    out.push_str(", ");
                }
                let spec = format!(
                    "{}@{}",
                    String::from_utf8_lossy(mailbox.as_deref().unwrap_or_default()),
                    String::from_utf8_lossy(host.as_deref().unwrap_or_default())
                );
                match name {
                    Some(n) => {
                        out.push_str(&decode_header_value(n));
                        out.push_str(" <");
                        out.push_str(&spec);
                        out.push('>');
                    }
                    None => out.push_str(&spec),
                }
            }
        }
    }
    out
}

/// SEARCH BODY: does the decoded text of the body (text parts after transfer and charset
/// decoding, plus the headers of attached messages) contain `needle`, case-insensitively?
pub fn body_contains(msg: &[u8], needle: &str) -> bool {
    let needle = fold(needle);
    if needle.is_empty() {
        return true;
    }
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    node_text_contains(&root, &needle, 0)
}

/// SEARCH TEXT: does the (decoded) header or body contain `needle`, case-insensitively?
pub fn text_contains(msg: &[u8], needle: &str) -> bool {
    let folded = fold(needle);
    if folded.is_empty() {
        return true;
    }
    if header_block_contains(&msg[..header_len(msg)], &folded) || body_contains(msg, needle) {
        return true;
    }
    // TEXT also sees the MIME headers of the parts (Content-Type names and all), as Dovecot.
    let parsed = parse(msg);
    let root = tree(&parsed, msg);
    part_headers_contain(&root, &folded, 0)
}

fn part_headers_contain(node: &Node<'_>, folded_needle: &str, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match &node.kind {
        Kind::Leaf => false,
        Kind::Multipart(children) => children.iter().any(|c| {
            header_block_contains(c.header(), folded_needle)
                || part_headers_contain(c, folded_needle, depth + 1)
        }),
        Kind::Message(inner) => part_headers_contain(inner, folded_needle, depth + 1),
    }
}

/// The Date: header as seconds since the epoch *of its own wall-clock time* (the zone offset is
/// not applied), so `secs.div_euclid(86400)` is the header's calendar date in its own zone, which
/// is what SENTBEFORE/SENTON/SENTSINCE compare (RFC 3501 §6.4.4). `None` if absent or unparsable.
pub fn sent_date(msg: &[u8]) -> Option<i64> {
    let field = last_field(&fields(&msg[..header_len(msg)]), "Date")?;
    let value = unfold(field.value);
    let date = DateTime::parse_rfc822(&String::from_utf8_lossy(&value))?;
    date.is_valid().then(|| date.to_timestamp_local())
}

/// The first address of an address field, as SORT compares it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirstAddress {
    /// Display name, RFC 2047-decoded, if the address has one.
    pub display: Option<String>,
    /// Local part (RFC 5256 `addr-mailbox`).
    pub mailbox: String,
    /// Domain ("" for a group's name).
    pub host: String,
}

/// The header fields SORT orders by (RFC 5256, RFC 5957). The last occurrence of a field
/// counts, as in ENVELOPE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SortHeaders {
    /// Subject, RFC 2047-decoded and unfolded ("" when absent).
    pub subject: String,
    /// Date: as seconds since the epoch in UTC, if present and parsable.
    pub date: Option<i64>,
    /// First From address.
    pub from: Option<FirstAddress>,
    /// First To address.
    pub to: Option<FirstAddress>,
    /// First Cc address.
    pub cc: Option<FirstAddress>,
    /// Message-ID (without the angle brackets), if it has a valid one.
    pub message_id: Option<String>,
    /// The message ids of References:, or else the first of In-Reply-To: (RFC 5256 §3).
    pub references: Vec<String>,
}

impl SortHeaders {
    /// Bytes its strings take on the heap (for a cache's budget).
    pub fn heap_bytes(&self) -> usize {
        let addr = |a: &Option<FirstAddress>| {
            a.as_ref().map_or(0, |a| {
                a.mailbox.len() + a.host.len() + a.display.as_ref().map_or(0, String::len)
            })
        };
        self.subject.len()
            + addr(&self.from)
            + addr(&self.to)
            + addr(&self.cc)
            + self.message_id.as_ref().map_or(0, String::len)
            + self.references.iter().map(|r| r.len() + 24).sum::<usize>()
    }
}

/// References kept per message for THREAD: the nearest ancestors.
const MAX_REFERENCES: usize = 100;

/// Reads the fields SORT needs from a message's header.
pub fn sort_headers(msg: &[u8]) -> SortHeaders {
    let fields = fields(&msg[..header_len(msg)]);
    let first = |name: &str| {
        let f = last_field(&fields, name)?;
        parse_addresses(&unfold(f.value))
            .into_iter()
            // A group's start counts as an address (its name in the mailbox slot, as in
            // ENVELOPE), as Dovecot sorts it; a group's end does not.
            .find(|a| a.mailbox.is_some())
            .map(|a| FirstAddress {
                display: a.name.as_deref().map(decode_header_value),
                mailbox: String::from_utf8_lossy(a.mailbox.as_deref().unwrap_or_default())
                    .into_owned(),
                host: String::from_utf8_lossy(a.host.as_deref().unwrap_or_default()).into_owned(),
            })
    };
    let date = last_field(&fields, "Date").and_then(|f| {
        let d = DateTime::parse_rfc822(&String::from_utf8_lossy(&unfold(f.value)))?;
        d.is_valid().then(|| d.to_timestamp())
    });
    SortHeaders {
        subject: last_field(&fields, "Subject")
            .map(|f| decode_header_value(&unfold(f.value)))
            .unwrap_or_default(),
        date,
        from: first("From"),
        to: first("To"),
        cc: first("Cc"),
        message_id: last_field(&fields, "Message-ID")
            .and_then(|f| msg_ids(&unfold(f.value)).into_iter().next()),
        references: {
            let mut refs = last_field(&fields, "References")
                .map(|f| msg_ids(&unfold(f.value)))
                .unwrap_or_default();
            // The parent is the last; keeping the nearest ancestors bounds THREAD's work on a
            // header built with thousands (clients trim theirs to a few dozen).
            if refs.len() > MAX_REFERENCES {
                refs.drain(..refs.len() - MAX_REFERENCES);
            }
            if refs.is_empty() {
                last_field(&fields, "In-Reply-To")
                    .and_then(|f| msg_ids(&unfold(f.value)).into_iter().next())
                    .into_iter()
                    .collect()
            } else {
                refs
            }
        },
    }
}

/// The `<id>` tokens of a Message-ID, References or In-Reply-To value, in order, without the
/// brackets; one without an `@` or with spaces is not a message id and is skipped.
fn msg_ids(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let id = &rest[open + 1..open + close];
        if id.contains('@') && !id.contains(char::is_whitespace) && !id.contains('<') {
            out.push(id.to_owned());
        }
        rest = &rest[open + close + 1..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing with mail-parser and the part tree
// ---------------------------------------------------------------------------------------------

/// A parsed message that is torn down iteratively: mail-parser nests message/rfc822 parts as
/// owned `Message`s without a depth limit, and dropping thousands of levels recursively
/// overflows the stack.
struct Parsed<'a>(Option<Message<'a>>);

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut stack: Vec<Message<'_>> = self.0.take().into_iter().collect();
        while let Some(mut msg) = stack.pop() {
            for part in &mut msg.parts {
                if let PartType::Message(_) = part.body {
                    if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                        stack.push(inner);
                    }
                }
            }
        }
    }
}

fn parse(raw: &[u8]) -> Parsed<'_> {
    // mail-parser is fuzzed upstream, but a panic here would take down every session on this
    // executor; treat one as "unparsable" instead.
    let result = std::panic::catch_unwind(|| MessageParser::default().parse(raw));
    Parsed(result.ok().flatten())
}

/// One MIME part: its header and body as ranges of the buffer it lives in.
struct Node<'a> {
    /// The buffer the ranges index: the stored message, or for a message/rfc822 part with a
    /// base64/quoted-printable encoding, the decoded bytes mail-parser parsed it from.
    raw: &'a [u8],
    header: Range<usize>,
    body: Range<usize>,
    info: PartInfo,
    kind: Kind<'a>,
    /// Decoded text (transfer and charset decoding done) of a text leaf, for SEARCH.
    text: Option<Cow<'a, str>>,
}

enum Kind<'a> {
    Leaf,
    Multipart(Vec<Node<'a>>),
    /// A message/rfc822 part; the node is the encapsulated message's top-level part.
    Message(Box<Node<'a>>),
}

impl<'a> Node<'a> {
    fn header(&self) -> &'a [u8] {
        self.raw.get(self.header.clone()).unwrap_or_default()
    }
    fn body(&self) -> &'a [u8] {
        self.raw.get(self.body.clone()).unwrap_or_default()
    }
}

/// The part tree of `raw`; falls back to one text/plain part if mail-parser found nothing.
fn tree<'a>(parsed: &'a Parsed<'_>, raw: &'a [u8]) -> Node<'a> {
    if let Some(node) = parsed.0.as_ref().and_then(|m| build(m, 0, 0)) {
        return node;
    }
    let hlen = header_len(raw);
    Node {
        raw,
        header: 0..hlen,
        body: hlen..raw.len(),
        info: PartInfo::parse(&raw[..hlen]),
        kind: Kind::Leaf,
        text: Some(String::from_utf8_lossy(&raw[hlen..])),
    }
}

fn build<'a>(msg: &'a Message<'_>, idx: usize, depth: usize) -> Option<Node<'a>> {
    let part = msg.parts.get(idx)?;
    let raw: &'a [u8] = msg.raw_message.as_ref();
    let header_start = part.offset_header.min(raw.len());
    let body_start = part.offset_body.clamp(header_start, raw.len());
    let body_end = part.offset_end.clamp(body_start, raw.len());
    let info = PartInfo::parse(&raw[header_start..body_start]);
    let deeper = depth < MAX_DEPTH;
    let kind = match &part.body {
        PartType::Multipart(ids) if deeper => {
            let children: Vec<Node<'a>> = ids
                .iter()
                .filter(|&&id| id != idx)
                .filter_map(|&id| build(msg, id, depth + 1))
                .collect();
            if children.is_empty() {
                Kind::Leaf
            } else {
                Kind::Multipart(children)
            }
        }
        // message/global is not message/rfc822 to IMAP4rev1 clients: keep it a leaf (Dovecot).
        PartType::Message(inner) if deeper && !info.is_message_global() => {
            build(inner, 0, depth + 1)
                .map(|n| Kind::Message(Box::new(n)))
                .unwrap_or(Kind::Leaf)
        }
        _ => Kind::Leaf,
    };
    // A multipart without a boundary (or without any part) still has one part: an empty
    // text/plain, as Dovecot describes it.
    let kind = if deeper && matches!(kind, Kind::Leaf) && info.type_is("multipart") {
        Kind::Multipart(vec![Node {
            raw,
            header: body_end..body_end,
            body: body_end..body_end,
            info: PartInfo::parse(b""),
            kind: Kind::Leaf,
            text: Some(Cow::Borrowed("")),
        }])
    } else {
        kind
    };
    let text = match &part.body {
        PartType::Text(t) | PartType::Html(t) => Some(Cow::Borrowed(t.as_ref())),
        _ => None,
    };
    Some(Node {
        raw,
        header: header_start..body_start,
        body: body_start..body_end,
        info,
        kind,
        text,
    })
}

/// Part `n` (1-based) below `node` per RFC 3501 §6.4.5: the n-th child of a multipart, the
/// n-th part of an encapsulated message, or, for any other part, "1" is the part itself.
fn child<'n, 'a>(node: &'n Node<'a>, n: u32) -> Option<&'n Node<'a>> {
    let index = usize::try_from(n).ok()?.checked_sub(1)?;
    match &node.kind {
        Kind::Multipart(children) => children.get(index),
        Kind::Message(inner) => top_part(inner, index),
        Kind::Leaf => (index == 0).then_some(node),
    }
}

/// Part `index + 1` of a message whose top-level part is `root`.
fn top_part<'n, 'a>(root: &'n Node<'a>, index: usize) -> Option<&'n Node<'a>> {
    match &root.kind {
        Kind::Multipart(children) => children.get(index),
        _ => (index == 0).then_some(root),
    }
}

fn resolve<'n, 'a>(root: &'n Node<'a>, path: &[u32]) -> Option<&'n Node<'a>> {
    let (&first, rest) = path.split_first()?;
    let mut node = top_part(root, usize::try_from(first).ok()?.checked_sub(1)?)?;
    // A leaf that is the whole body of a message has only part 1, itself; a leaf inside a
    // multipart also answers to "1" below it (as Dovecot does).
    let mut whole_body = !matches!(root.kind, Kind::Multipart(_));
    for &n in rest {
        whole_body = match &node.kind {
            Kind::Leaf if whole_body => return None,
            Kind::Message(inner) => !matches!(inner.kind, Kind::Multipart(_)),
            _ => false,
        };
        node = child(node, n)?;
    }
    Some(node)
}

/// HEADER, HEADER.FIELDS[.NOT] or TEXT of a message with this header block and body.
fn message_section(header: &[u8], body: &[u8], text: &SectionText) -> Option<Vec<u8>> {
    match text {
        SectionText::Header => Some(header.to_vec()),
        SectionText::Text => Some(body.to_vec()),
        SectionText::HeaderFields { not, fields: names } => {
            let mut out = Vec::with_capacity(header.len().min(1024));
            for f in fields(header) {
                let wanted = names
                    .iter()
                    .any(|n| !f.name.is_empty() && f.name.eq_ignore_ascii_case(n.as_bytes()));
                if wanted != *not {
                    out.extend_from_slice(f.raw);
                }
            }
            // The blank line that ends a header is part of every HEADER.FIELDS result.
            out.extend_from_slice(b"\r\n");
            Some(out)
        }
        SectionText::Mime => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Header blocks and fields
// ---------------------------------------------------------------------------------------------

/// Length of the header block at the start of `raw`, including the blank line that ends it (the
/// whole input when there is none). Follows mail-parser's rules exactly — leading whitespace
/// before a field name is skipped, a line without a colon is ignored, a value continues on
/// lines starting with SP/HT — so the fast paths that skip the MIME parse agree with it.
fn header_len(raw: &[u8]) -> usize {
    header_end(raw).unwrap_or(raw.len())
}

fn header_end(raw: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        loop {
            match raw.get(pos) {
                None => return None,
                Some(b'\n') => return Some(pos + 1),
                Some(c) if c.is_ascii_whitespace() => pos += 1,
                Some(_) => break,
            }
        }
        let mut seen_name = false;
        let mut has_value = false;
        while let Some(&c) = raw.get(pos) {
            pos += 1;
            match c {
                b':' if seen_name => {
                    has_value = true;
                    break;
                }
                b':' => {}
                b'\n' => break,
                c if !c.is_ascii_whitespace() => seen_name = true,
                _ => {}
            }
        }
        if !has_value {
            if pos >= raw.len() {
                return None;
            }
            continue;
        }
        loop {
            let nl = memchr(b'\n', raw.get(pos..)?)?;
            pos += nl + 1;
            if !matches!(raw.get(pos), Some(b' ' | b'\t')) {
                break;
            }
        }
    }
}

/// One header field as stored.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    /// Field name, trimmed; empty for a line without a colon.
    name: &'a [u8],
    /// Everything after the colon up to the field's final line break (folds included).
    value: &'a [u8],
    /// The whole field including continuation lines and the final line break.
    raw: &'a [u8],
}

/// The fields of a header block, in order, up to the blank line.
fn fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let line_end = next_line(block, pos);
        let line = &block[pos..line_end];
        if line.iter().all(u8::is_ascii_whitespace) {
            break;
        }
        let mut end = line_end;
        while matches!(block.get(end), Some(b' ' | b'\t')) {
            end = next_line(block, end);
        }
        let raw = &block[pos..end];
        let (name, value) = match memchr(b':', line) {
            Some(colon) => (trim(&line[..colon]), strip_eol(&raw[colon + 1..])),
            None => (&b""[..], &b""[..]),
        };
        out.push(Field { name, value, raw });
        pos = end;
    }
    out
}

fn next_line(buf: &[u8], from: usize) -> usize {
    match buf.get(from..).and_then(|rest| memchr(b'\n', rest)) {
        Some(i) => from + i + 1,
        None => buf.len(),
    }
}

fn strip_eol(v: &[u8]) -> &[u8] {
    let v = v.strip_suffix(b"\n").unwrap_or(v);
    v.strip_suffix(b"\r").unwrap_or(v)
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&c| !c.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// A field value as one line: CR and LF removed, leading whitespace skipped (what Dovecot puts
/// in ENVELOPE and BODYSTRUCTURE strings).
fn unfold(value: &[u8]) -> Vec<u8> {
    let start = value
        .iter()
        .position(|&c| !is_wsp(c) && c != b'\r' && c != b'\n');
    value[start.unwrap_or(value.len())..]
        .iter()
        .copied()
        .filter(|&c| c != b'\r' && c != b'\n')
        .collect()
}

/// The last field named `name` (case-insensitive): mail-parser, whose structure we report,
/// also lets the last Content-Type / Content-Transfer-Encoding win.
fn last_field<'a>(fields: &[Field<'a>], name: &str) -> Option<Field<'a>> {
    fields
        .iter()
        .rev()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .copied()
}

/// The first field named `name`: Dovecot takes the first of the other Content-* fields.
fn first_field<'a>(fields: &[Field<'a>], name: &str) -> Option<Field<'a>> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .copied()
}

// ---------------------------------------------------------------------------------------------
// IMAP string output
// ---------------------------------------------------------------------------------------------

fn push_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => push_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `s` as a quoted string, or as a literal when it holds CR, LF, NUL, 8-bit bytes or many
/// quoted-specials. NUL is not allowed even in a literal, so it is sent as 0x80 (as Dovecot does).
fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut escapes = 0;
    let literal = s.iter().any(|&c| match c {
        b'"' | b'\\' => {
            escapes += 1;
            escapes > QUOTED_MAX_ESCAPES
        }
        b'\r' | b'\n' | 0 => true,
        c => c >= 0x80,
    });
    if literal {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend(s.iter().map(|&c| if c == 0 { 0x80 } else { c }));
    } else {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 5322 / RFC 2045 lexer over one unfolded header value
// ---------------------------------------------------------------------------------------------

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// Text of the last comment skipped (an addr-spec's "(Real Name)" becomes its name).
    last_comment: Vec<u8>,
}

/// RFC 5322 atext, plus 8-bit bytes (RFC 6532).
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c) || c >= 0x80
}

/// RFC 2045 token character (8-bit accepted leniently).
fn is_token_char(c: u8) -> bool {
    c > 0x20 && c != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            pos: 0,
            last_comment: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Skips whitespace and comments; returns whether anything was skipped.
    fn skip_cfws(&mut self) -> bool {
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => self.comment(),
                _ => break,
            }
        }
        self.pos != start
    }

    /// A (possibly nested) comment; an unterminated one runs to the end.
    fn comment(&mut self) {
        self.pos += 1;
        let mut depth = 1usize;
        let mut text = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'\\' => {
                    if let Some(q) = self.peek() {
                        self.pos += 1;
                        text.push(q);
                    }
                }
                b'(' => {
                    depth += 1;
                    text.push(c);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    text.push(c);
                }
                _ => text.push(c),
            }
        }
        self.last_comment = text;
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    fn atom(&mut self) -> Option<&'a [u8]> {
        self.take_while(is_atext)
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        self.take_while(is_token_char)
    }

    /// A quoted string's content with quoted-pairs resolved; an unterminated one runs to the end.
    fn quoted_string(&mut self) -> Vec<u8> {
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(q) = self.peek() {
                        self.pos += 1;
                        out.push(q);
                    }
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// A phrase (display name): words and dots, kept with single spaces where the source had
    /// whitespace between them. Empty when there is no word here.
    fn phrase(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut space = false;
        loop {
            let word = match self.peek() {
                Some(b'"') => self.quoted_string(),
                Some(b'.') if !out.is_empty() => {
                    self.pos += 1;
                    b".".to_vec()
                }
                Some(c) if is_atext(c) => self.atom().unwrap_or_default().to_vec(),
                _ => break,
            };
            if space && !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(&word);
            space = self.skip_cfws();
        }
        out
    }

    /// local-part = dot-atom / quoted-string / obs-local-part (words joined by dots).
    fn local_part(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => out.extend_from_slice(&self.quoted_string()),
                Some(c) if is_atext(c) => out.extend_from_slice(self.atom().unwrap_or_default()),
                _ => break,
            }
            self.skip_cfws();
            if self.peek() != Some(b'.') {
                break;
            }
            self.pos += 1;
            out.push(b'.');
            self.skip_cfws();
        }
        (!out.is_empty()).then_some(out)
    }

    /// domain = dot-atom / domain-literal.
    fn domain(&mut self) -> Option<Vec<u8>> {
        self.skip_cfws();
        if self.peek() == Some(b'[') {
            let start = self.pos;
            let end = memchr(b']', &self.s[start..]).map_or(self.s.len(), |i| start + i + 1);
            self.pos = end;
            self.skip_cfws();
            return Some(self.s[start..end].to_vec());
        }
        let mut out = Vec::new();
        while let Some(atom) = self.atom() {
            out.extend_from_slice(atom);
            self.skip_cfws();
            if self.peek() != Some(b'.') {
                break;
            }
            self.pos += 1;
            out.push(b'.');
            self.skip_cfws();
        }
        (!out.is_empty()).then_some(out)
    }

    /// Skips to the next `stop` byte outside quotes and comments (error recovery).
    fn skip_past_garbage(&mut self, stop: &[u8]) {
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.quoted_string();
                }
                b'(' => self.comment(),
                c if stop.contains(&c) => return,
                _ => self.pos += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ENVELOPE
// ---------------------------------------------------------------------------------------------

/// One ENVELOPE address (RFC 3501 `address`); group start is `(NIL NIL name NIL)`, group end
/// all NIL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Addr {
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
}

/// Parses an address-list leniently: garbage is skipped up to the next comma; a mailbox with no
/// local part or no domain is filled in with `MISSING_MAILBOX` / `MISSING_DOMAIN` (Dovecot) so
/// it cannot be mistaken for group syntax.
fn parse_addresses(value: &[u8]) -> Vec<Addr> {
    let mut lex = Lexer::new(value);
    let mut out = Vec::new();
    lex.skip_cfws();
    while !lex.at_end() {
        let start = lex.pos;
        if !parse_group(&mut lex, &mut out) {
            lex.pos = start;
            parse_mailbox(&mut lex, &mut out);
        }
        lex.skip_cfws();
        if lex.peek() != Some(b',') {
            lex.skip_past_garbage(b",");
        }
        if lex.peek() == Some(b',') {
            lex.pos += 1;
        }
        lex.skip_cfws();
        if lex.pos == start {
            // Cannot happen (every branch consumes), but never loop forever on peer input.
            break;
        }
    }
    out
}

/// group = display-name ":" [mailbox-list / CFWS] ";"; false (nothing consumed that matters)
/// if this is not a group.
fn parse_group(lex: &mut Lexer<'_>, out: &mut Vec<Addr>) -> bool {
    let name = lex.phrase();
    if name.is_empty() || lex.peek() != Some(b':') {
        return false;
    }
    lex.pos += 1;
    out.push(Addr {
        mailbox: Some(name),
        ..Addr::default()
    });
    lex.skip_cfws();
    while !lex.at_end() && lex.peek() != Some(b';') {
        let before = lex.pos;
        if lex.peek() != Some(b',') {
            parse_mailbox(lex, out);
        }
        lex.skip_cfws();
        if !matches!(lex.peek(), Some(b',' | b';')) {
            lex.skip_past_garbage(b",;");
        }
        if lex.peek() == Some(b',') {
            lex.pos += 1;
        }
        lex.skip_cfws();
        if lex.pos == before {
            break;
        }
    }
    if lex.peek() == Some(b';') {
        lex.pos += 1;
    }
    out.push(Addr::default());
    true
}

/// mailbox = name-addr / addr-spec.
fn parse_mailbox(lex: &mut Lexer<'_>, out: &mut Vec<Addr>) {
    let start = lex.pos;
    let name = lex.phrase();
    let mut addr = if lex.peek() == Some(b'<') {
        let mut addr = parse_angle_addr(lex);
        addr.name = (!name.is_empty()).then_some(name);
        addr
    } else {
        lex.pos = start;
        lex.last_comment.clear();
        let mut addr = Addr {
            mailbox: lex.local_part(),
            ..Addr::default()
        };
        if lex.peek() == Some(b'@') {
            lex.pos += 1;
            addr.host = lex.domain();
        }
        lex.skip_cfws();
        if !lex.last_comment.is_empty() {
            addr.name = Some(std::mem::take(&mut lex.last_comment));
        }
        if addr.mailbox.is_none() && addr.host.is_none() && addr.name.is_none() {
            // Nothing address-like here: let the caller skip it rather than invent one.
            if lex.pos == start {
                lex.skip_past_garbage(b",;");
            }
            return;
        }
        addr
    };
    addr.mailbox
        .get_or_insert_with(|| b"MISSING_MAILBOX".to_vec());
    addr.host.get_or_insert_with(|| b"MISSING_DOMAIN".to_vec());
    out.push(addr);
}

/// angle-addr = "<" [obs-route] addr-spec ">"; a broken one gets the domain `SYNTAX_ERROR`.
fn parse_angle_addr(lex: &mut Lexer<'_>) -> Addr {
    lex.pos += 1;
    let mut addr = Addr::default();
    lex.skip_cfws();
    if lex.peek() == Some(b'@') {
        let mut route = Vec::new();
        while lex.peek() == Some(b'@') {
            lex.pos += 1;
            if !route.is_empty() {
                route.push(b',');
            }
            route.push(b'@');
            route.extend_from_slice(&lex.domain().unwrap_or_default());
            while lex.peek() == Some(b',') {
                lex.pos += 1;
                lex.skip_cfws();
            }
        }
        addr.adl = Some(route);
        if lex.peek() == Some(b':') {
            lex.pos += 1;
            lex.skip_cfws();
        }
    }
    addr.mailbox = lex.local_part();
    if lex.peek() == Some(b'@') {
        lex.pos += 1;
        addr.host = lex.domain();
    }
    lex.skip_cfws();
    if lex.peek() == Some(b'>') {
        lex.pos += 1;
    } else {
        addr.host = Some(b"SYNTAX_ERROR".to_vec());
        lex.skip_past_garbage(b">,;");
        if lex.peek() == Some(b'>') {
            lex.pos += 1;
        }
    }
    addr
}

fn push_addresses(out: &mut Vec<u8>, addrs: &[Addr]) {
    if addrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in addrs {
        out.push(b'(');
        push_nstring(out, a.name.as_deref());
        out.push(b' ');
        push_nstring(out, a.adl.as_deref());
        out.push(b' ');
        push_nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        push_nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

fn write_envelope(out: &mut Vec<u8>, header: &[u8]) {
    let fields = fields(header);
    // The last occurrence wins, as in Dovecot.
    let text = |name: &str| last_field(&fields, name).map(|f| unfold(f.value));
    let addrs = |name: &str| {
        last_field(&fields, name)
            .map(|f| parse_addresses(&unfold(f.value)))
            .unwrap_or_default()
    };
    let from = addrs("From");
    let mut sender = addrs("Sender");
    let mut reply_to = addrs("Reply-To");
    // RFC 3501: an absent or empty Sender / Reply-To is reported as From.
    if sender.is_empty() {
        sender = from.clone();
    }
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    out.push(b'(');
    push_nstring(out, text("Date").as_deref());
    out.push(b' ');
    push_nstring(out, text("Subject").as_deref());
    for list in [&from, &sender, &reply_to] {
        out.push(b' ');
        push_addresses(out, list);
    }
    for name in ["To", "Cc", "Bcc"] {
        out.push(b' ');
        push_addresses(out, &addrs(name));
    }
    out.push(b' ');
    push_nstring(out, text("In-Reply-To").as_deref());
    out.push(b' ');
    push_nstring(out, text("Message-ID").as_deref());
    out.push(b')');
}

// ---------------------------------------------------------------------------------------------
// MIME header fields of a part (for BODYSTRUCTURE and BINARY)
// ---------------------------------------------------------------------------------------------

type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// The Content-* fields of one part, raw strings as IMAP reports them.
#[derive(Debug, Default)]
struct PartInfo {
    /// Content-Type type and subtype, case as written; `None` if absent or unparsable.
    content_type: Option<(Vec<u8>, Vec<u8>)>,
    params: Params,
    id: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    /// Content-Transfer-Encoding token, case as written; `None` if absent or not a token.
    encoding: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    disposition: Option<(Vec<u8>, Params)>,
    language: Option<Vec<Vec<u8>>>,
    location: Option<Vec<u8>>,
}

impl PartInfo {
    fn parse(header: &[u8]) -> Self {
        let fields = fields(header);
        let mut info = PartInfo::default();
        let text = |name: &str| first_field(&fields, name).map(|f| unfold(f.value));
        if let Some(f) = last_field(&fields, "Content-Type") {
            if let Some((t, st, params)) = parse_content_type(&unfold(f.value)) {
                info.content_type = Some((t, st));
                info.params = params;
            }
        }
        if let Some(f) = last_field(&fields, "Content-Transfer-Encoding") {
            let value = unfold(f.value);
            let mut lex = Lexer::new(&value);
            lex.skip_cfws();
            if let Some(token) = lex.token() {
                lex.skip_cfws();
                if lex.at_end() {
                    info.encoding = Some(token.to_vec());
                }
            }
        }
        if let Some(f) = first_field(&fields, "Content-Disposition") {
            let value = unfold(f.value);
            let mut lex = Lexer::new(&value);
            lex.skip_cfws();
            if let Some(token) = lex.token() {
                info.disposition = Some((token.to_vec(), parse_params(&mut lex)));
            }
        }
        if let Some(f) = first_field(&fields, "Content-Language") {
            let value = unfold(f.value);
            let mut lex = Lexer::new(&value);
            let mut langs = Vec::new();
            lex.skip_cfws();
            while let Some(atom) = lex.atom() {
                langs.push(atom.to_vec());
                lex.skip_cfws();
                if lex.peek() != Some(b',') {
                    break;
                }
                lex.pos += 1;
                lex.skip_cfws();
            }
            info.language = (!langs.is_empty()).then_some(langs);
        }
        info.id = text("Content-ID");
        info.description = text("Content-Description");
        info.md5 = text("Content-MD5");
        info.location = text("Content-Location");
        info
    }

    fn type_is(&self, t: &str) -> bool {
        self.content_type
            .as_ref()
            .is_some_and(|(ty, _)| ty.eq_ignore_ascii_case(t.as_bytes()))
    }

    fn is(&self, t: &str, st: &str) -> bool {
        self.content_type.as_ref().is_some_and(|(ty, sub)| {
            ty.eq_ignore_ascii_case(t.as_bytes()) && sub.eq_ignore_ascii_case(st.as_bytes())
        })
    }

    fn is_message_global(&self) -> bool {
        self.is("message", "global")
    }
}

/// `type "/" subtype *(";" parameter)`.
fn parse_content_type(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Params)> {
    let mut lex = Lexer::new(value);
    lex.skip_cfws();
    let ty = lex.token()?.to_vec();
    lex.skip_cfws();
    if lex.peek() != Some(b'/') {
        return None;
    }
    lex.pos += 1;
    lex.skip_cfws();
    let subtype = lex.token()?.to_vec();
    Some((ty, subtype, parse_params(&mut lex)))
}

/// `*(";" attribute "=" value)`, RFC 2231 continuations merged as Dovecot reports them:
/// `name*0`, `name*1` become `name`; when encoded (`name*0*`) the merged key is `name*` and the
/// value stays in its `charset'lang'%XX` form. Merged parameters follow the plain ones.
fn parse_params(lex: &mut Lexer<'_>) -> Params {
    let mut raw: Params = Vec::new();
    loop {
        lex.skip_cfws();
        match lex.peek() {
            Some(b';') => lex.pos += 1,
            None => break,
            Some(_) => {
                // Garbage between parameters: resynchronise at the next ';'.
                lex.skip_past_garbage(b";");
                continue;
            }
        }
        lex.skip_cfws();
        let Some(name) = lex.token() else { continue };
        lex.skip_cfws();
        if lex.peek() != Some(b'=') {
            continue;
        }
        lex.pos += 1;
        lex.skip_cfws();
        let value = match lex.peek() {
            Some(b'"') => lex.quoted_string(),
            _ => lex.token().unwrap_or_default().to_vec(),
        };
        raw.push((name.to_vec(), value));
    }

    // (base name, index, value) of the RFC 2231 sections, in order of appearance.
    let mut sections: Vec<(Vec<u8>, u32, bool, Vec<u8>)> = Vec::new();
    let mut plain: Params = Vec::new();
    for (name, value) in raw {
        let section = memchr(b'*', &name).and_then(|star| {
            let rest = &name[star + 1..];
            let (digits, encoded) = match rest.strip_suffix(b"*") {
                Some(d) => (d, true),
                None => (rest, false),
            };
            let index = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
            (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
                .then(|| (name[..star].to_vec(), index, encoded))
        });
        match section {
            Some((base, index, encoded)) => sections.push((base, index, encoded, value)),
            None => plain.push((name, value)),
        }
    }
    // Stable sort by base name (case-insensitively), then section index.
    sections.sort_by_cached_key(|(base, index, _, _)| (base.to_ascii_lowercase(), *index));
    let mut i = 0;
    while i < sections.len() {
        let base = sections[i].0.clone();
        let encoded = sections[i].2;
        let mut value = Vec::new();
        while i < sections.len() && sections[i].0.eq_ignore_ascii_case(&base) {
            value.extend_from_slice(&sections[i].3);
            i += 1;
        }
        let mut key = base;
        if encoded {
            key.push(b'*');
        }
        plain.push((key, value));
    }
    plain
}

// ---------------------------------------------------------------------------------------------
// BODY / BODYSTRUCTURE
// ---------------------------------------------------------------------------------------------

fn count_lines(body: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', body).count()
}

fn push_params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)], default_charset: bool) {
    let has_charset = params
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(b"charset"));
    if params.is_empty() && !default_charset {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_string(out, k);
        out.push(b' ');
        push_string(out, v);
    }
    if default_charset && !has_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

/// body-fld-dsp SP body-fld-lang SP body-fld-loc (the tail of every extension data).
fn push_ext_common(out: &mut Vec<u8>, info: &PartInfo) {
    out.push(b' ');
    match &info.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some((kind, params)) => {
            out.push(b'(');
            push_string(out, kind);
            out.push(b' ');
            push_params(out, params, false);
            out.push(b')');
        }
    }
    out.push(b' ');
    match &info.language {
        None => out.extend_from_slice(b"NIL"),
        Some(langs) => {
            out.push(b'(');
            for (i, lang) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                push_string(out, lang);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    push_nstring(out, info.location.as_deref());
}

/// One `body` (parenthesised), recursing into children; depth is bounded by the tree.
fn write_body(out: &mut Vec<u8>, node: &Node<'_>, extended: bool) {
    out.push(b'(');
    let info = &node.info;
    match &node.kind {
        Kind::Multipart(children) => {
            for c in children {
                write_body(out, c, extended);
            }
            out.push(b' ');
            let declared = info.type_is("multipart");
            match &info.content_type {
                Some((_, sub)) if declared => push_string(out, sub),
                _ => push_string(out, b"mixed"),
            }
            if extended {
                out.push(b' ');
                let no_params = Vec::new();
                push_params(out, if declared { &info.params } else { &no_params }, false);
                push_ext_common(out, info);
            }
        }
        Kind::Message(inner) => {
            out.extend_from_slice(b"\"message\" \"rfc822\" ");
            push_params(out, &info.params, false);
            push_body_fields(out, node);
            out.push(b' ');
            write_envelope(out, inner.header());
            out.push(b' ');
            write_body(out, inner, extended);
            out.extend_from_slice(format!(" {}", count_lines(node.body())).as_bytes());
            if extended {
                out.push(b' ');
                push_nstring(out, info.md5.as_deref());
                push_ext_common(out, info);
            }
        }
        Kind::Leaf => {
            let no_params = Vec::new();
            let (ty, sub, params): (&[u8], &[u8], &Params) = match &info.content_type {
                // The structure found no parts (no boundary): it is text to us, as to mail-parser.
                Some(_) if info.type_is("multipart") => (&b"text"[..], &b"plain"[..], &no_params),
                // An encapsulated message we could not (or would not, too deep) descend into.
                Some(_) if info.is("message", "rfc822") => {
                    (&b"application"[..], &b"octet-stream"[..], &info.params)
                }
                Some((t, s)) => (t, s, &info.params),
                None => (&b"text"[..], &b"plain"[..], &no_params),
            };
            let text = ty.eq_ignore_ascii_case(b"text");
            push_string(out, ty);
            out.push(b' ');
            push_string(out, sub);
            out.push(b' ');
            push_params(out, params, text);
            push_body_fields(out, node);
            if text {
                out.extend_from_slice(format!(" {}", count_lines(node.body())).as_bytes());
            }
            if extended {
                out.push(b' ');
                push_nstring(out, info.md5.as_deref());
                push_ext_common(out, info);
            }
        }
    }
    out.push(b')');
}

/// SP body-fld-id SP body-fld-desc SP body-fld-enc SP body-fld-octets.
fn push_body_fields(out: &mut Vec<u8>, node: &Node<'_>) {
    let info = &node.info;
    out.push(b' ');
    push_nstring(out, info.id.as_deref());
    out.push(b' ');
    push_nstring(out, info.description.as_deref());
    out.push(b' ');
    push_string(out, info.encoding.as_deref().unwrap_or(b"7bit"));
    out.extend_from_slice(format!(" {}", node.body().len()).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Content-Transfer-Encoding decoding (BINARY)
// ---------------------------------------------------------------------------------------------

fn decode_transfer<'a>(node: &Node<'a>) -> Result<Cow<'a, [u8]>, BinaryError> {
    let body = node.body();
    let Some(cte) = &node.info.encoding else {
        return Ok(Cow::Borrowed(body));
    };
    let cte = String::from_utf8_lossy(cte).to_ascii_lowercase();
    match cte.as_str() {
        "7bit" | "8bit" | "binary" => Ok(Cow::Borrowed(body)),
        "base64" => Ok(Cow::Owned(decode_base64(body))),
        "quoted-printable" => Ok(Cow::Owned(decode_quoted_printable(body))),
        _ => Err(BinaryError::UnknownCte(cte)),
    }
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Lenient RFC 2045 base64: characters outside the alphabet are ignored and '=' ends a quantum
/// (so concatenated padded chunks decode too). Written here because the base64 crate rejects
/// the line breaks and junk that real mail carries, and mail-parser's decoder is all-or-nothing.
fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in input {
        if let Some(v) = base64_value(c) {
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        } else if c == b'=' {
            acc = 0;
            bits = 0;
        }
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Lenient RFC 2045 §6.7 quoted-printable: trailing whitespace on a line is transport padding,
/// "=" at a line end is a soft break, and an "=" not followed by two hex digits is kept as is
/// (mail-parser's decoder fails the whole body on the first such "=").
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut pos = 0;
    while pos < input.len() {
        let end = next_line(input, pos);
        let line = &input[pos..end];
        let (content, eol) = match line.strip_suffix(b"\n") {
            Some(l) => match l.strip_suffix(b"\r") {
                Some(l) => (l, &b"\r\n"[..]),
                None => (l, &b"\n"[..]),
            },
            None => (line, &b""[..]),
        };
        let content_end = content
            .iter()
            .rposition(|&c| !is_wsp(c))
            .map_or(0, |i| i + 1);
        let content = &content[..content_end];
        let (content, soft) = match content.strip_suffix(b"=") {
            Some(c) => (c, true),
            None => (content, false),
        };
        let mut i = 0;
        while i < content.len() {
            let c = content[i];
            if c == b'=' {
                let hi = content.get(i + 1).copied().and_then(hex_value);
                let lo = content.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
            }
            out.push(c);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(eol);
        }
        pos = end;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// SEARCH helpers
// ---------------------------------------------------------------------------------------------

/// Case folding for SEARCH comparisons (Unicode-aware lower-casing).
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// A raw field value, unfolded and RFC 2047-decoded (mail-parser's unstructured-text decoder).
fn decode_header_value(value: &[u8]) -> String {
    let mut buf = Vec::with_capacity(value.len() + 1);
    buf.extend_from_slice(value);
    buf.push(b'\n');
    match MessageStream::new(&buf).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        HeaderValue::TextList(list) => list.join(" "),
        _ => String::new(),
    }
}

fn header_block_contains(header: &[u8], folded_needle: &str) -> bool {
    fields(header).into_iter().any(|f| {
        let line = format!(
            "{}: {}",
            String::from_utf8_lossy(f.name),
            decode_header_value(f.value)
        );
        fold(&line).contains(folded_needle)
    })
}

fn node_text_contains(node: &Node<'_>, folded_needle: &str, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match &node.kind {
        Kind::Leaf => node
            .text
            .as_ref()
            .is_some_and(|t| fold(t).contains(folded_needle)),
        Kind::Multipart(children) => children
            .iter()
            .any(|c| node_text_contains(c, folded_needle, depth + 1)),
        Kind::Message(inner) => {
            header_block_contains(inner.header(), folded_needle)
                || node_text_contains(inner, folded_needle, depth + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_headers_read_what_sort_and_thread_need() {
        let refs: Vec<String> = (0..150).map(|i| format!("<r{i}@x>")).collect();
        let msg = format!(
            "From: Team: a@b.org, c@d.org;\r\nTo: =?UTF-8?Q?=C3=89mile?= <emile@e.org>\r\n\
             Date: Fri, 22 Feb 2008 10:00:00 +0200\r\nSubject: =?UTF-8?Q?Re=3A_caf=C3=A9?=\r\n\
             Message-ID: <m@x> junk\r\nReferences: {}\r\nIn-Reply-To: <ignored@x>\r\n\r\nbody\r\n",
            refs.join(" ")
        );
        let h = sort_headers(msg.as_bytes());
        assert_eq!(h.subject, "Re: café");
        assert_eq!(h.date, Some(1_203_667_200), "10:00 +0200 is 08:00 UTC");
        let from = h.from.unwrap();
        assert_eq!(
            (from.mailbox.as_str(), from.host.as_str()),
            ("Team", ""),
            "a group by name"
        );
        assert_eq!(h.to.unwrap().display.as_deref(), Some("Émile"));
        assert!(h.cc.is_none());
        assert_eq!(h.message_id.as_deref(), Some("m@x"));
        assert_eq!(
            h.references.len(),
            MAX_REFERENCES,
            "the nearest ancestors only"
        );
        assert_eq!(
            h.references.last().map(String::as_str),
            Some("r149@x"),
            "the parent stays"
        );

        let reply = sort_headers(b"In-Reply-To: <p@x> <q@x>\r\nMessage-ID: <no-at-sign>\r\n\r\n");
        assert_eq!(
            reply.references,
            ["p@x"],
            "without References, the first In-Reply-To id"
        );
        assert_eq!(reply.message_id, None, "an id without @ is not one");
    }
    use proptest::prelude::*;

    /// Compares IMAP output with a hand-written expectation, showing both as text on failure.
    #[track_caller]
    fn check(actual: &[u8], expected: &str) {
        assert_eq!(
            String::from_utf8_lossy(actual),
            expected,
            "\n actual: {}\n expect: {}",
            String::from_utf8_lossy(actual),
            expected
        );
    }

    fn sec(part: &[u32], text: Option<SectionText>) -> Section {
        Section {
            part: part.to_vec(),
            text,
        }
    }

    fn fields_sec(part: &[u32], not: bool, names: &[&str]) -> Section {
        sec(
            part,
            Some(SectionText::HeaderFields {
                not,
                fields: names.iter().map(|n| n.to_string()).collect(),
            }),
        )
    }

    #[track_caller]
    fn check_section(msg: &[u8], section: &Section, expected: &str) {
        match super::section(msg, section) {
            Some(bytes) => check(&bytes, expected),
            None => panic!("section {section:?} missing"),
        }
    }

    const SIMPLE: &str = "From: Alice Example <alice@example.com>\r\n\
        To: bob@example.org\r\n\
        Subject: Hello\r\n\
        Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
        Message-ID: <B27397-0100000@example.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Hello Bob,\r\n\
        bye\r\n";

    #[test]
    fn simple_text_plain() {
        let m = SIMPLE.as_bytes();
        check(
            &envelope(m),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hello\" \
             ((\"Alice Example\" NIL \"alice\" \"example.com\")) \
             ((\"Alice Example\" NIL \"alice\" \"example.com\")) \
             ((\"Alice Example\" NIL \"alice\" \"example.com\")) \
             ((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL \"<B27397-0100000@example.com>\")",
        );
        check(
            &body_structure(m, true),
            "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 17 2 NIL NIL NIL NIL)",
        );
        check(
            &body_structure(m, false),
            "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 17 2)",
        );
    }

    #[test]
    fn no_content_type_defaults_to_us_ascii_text() {
        let m = b"From: a@b.c\r\n\r\nhi\r\n";
        check(
            &body_structure(m, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 1 NIL NIL NIL NIL)",
        );
        check(
            &envelope(m),
            "(NIL NIL ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) \
             NIL NIL NIL NIL NIL)",
        );
        // A text type without charset gets the default too, after its own parameters.
        let m = b"Content-Type: text/plain; format=flowed\r\n\r\nx";
        check(
            &body_structure(m, false),
            "(\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)",
        );
    }

    const ALTERNATIVE: &str = "From: a@b.c\r\n\
        Subject: alt\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"XX\"\r\n\
        \r\n\
        --XX\r\n\
        Content-Type: text/plain; charset=us-ascii\r\n\
        \r\n\
        plain text\r\n\
        line 2\r\n\
        --XX\r\n\
        Content-Type: text/html; charset=us-ascii\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        <p>html=3D</p>\r\n\
        --XX--\r\n";

    #[test]
    fn multipart_alternative() {
        let m = ALTERNATIVE.as_bytes();
        check(
            &body_structure(m, true),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18 1 NIL NIL NIL NIL)\
             (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"quoted-printable\" 14 0 NIL NIL NIL NIL) \
             \"alternative\" (\"boundary\" \"XX\") NIL NIL NIL)",
        );
        check(
            &body_structure(m, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18 1)\
             (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"quoted-printable\" 14 0) \"alternative\")",
        );
        check_section(m, &sec(&[1], None), "plain text\r\nline 2");
        check_section(m, &sec(&[2], None), "<p>html=3D</p>");
        check_section(
            m,
            &sec(&[2], Some(SectionText::Mime)),
            "Content-Type: text/html; charset=us-ascii\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        );
        // A non-multipart part's only subpart is itself.
        check_section(m, &sec(&[1, 1], None), "plain text\r\nline 2");
        assert_eq!(section(m, &sec(&[3], None)), None);
        assert_eq!(section(m, &sec(&[0], None)), None);
        assert_eq!(section(m, &sec(&[1, 2], None)), None);
        // HEADER/TEXT only apply to message/rfc822 parts.
        assert_eq!(section(m, &sec(&[1], Some(SectionText::Header))), None);
        assert_eq!(section(m, &sec(&[1], Some(SectionText::Text))), None);
        assert_eq!(binary_section(m, &[2]).unwrap(), b"<p>html=</p>");
        assert_eq!(binary_size(m, &[2]), Ok(12));
        assert_eq!(binary_section(m, &[1]).unwrap(), b"plain text\r\nline 2");
    }

    const MIXED: &[u8] = b"From: \"Doe, Jane\" <jane@example.com>\r\n\
        To: Bob <bob@example.org>, carol@example.net\r\n\
        Cc: undisclosed-recipients:;\r\n\
        Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9?=\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed;\r\n boundary=\"==b1==\"\r\n\
        \r\n\
        This is a multi-part message in MIME format.\r\n\
        --==b1==\r\n\
        Content-Type: text/plain; charset=\"UTF-8\"\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        Voil\xc3\xa0.\r\n\
        --==b1==\r\n\
        Content-Type: application/pdf; name=\"cv.pdf\"\r\n\
        Content-Disposition: attachment; filename=\"cv.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        Content-ID: <part2@example.com>\r\n\
        Content-Description: My CV\r\n\
        \r\n\
        JVBERi0xLjQK\r\n\
        --==b1==--\r\n";

    #[test]
    fn multipart_mixed_with_attachment() {
        check(
            &body_structure(MIXED, true),
            "((\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"8bit\" 7 0 NIL NIL NIL NIL)\
             (\"application\" \"pdf\" (\"name\" \"cv.pdf\") \"<part2@example.com>\" \"My CV\" \"base64\" 12 \
             NIL (\"attachment\" (\"filename\" \"cv.pdf\")) NIL NIL) \
             \"mixed\" (\"boundary\" \"==b1==\") NIL NIL NIL)",
        );
        check(
            &body_structure(MIXED, false),
            "((\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"8bit\" 7 0)\
             (\"application\" \"pdf\" (\"name\" \"cv.pdf\") \"<part2@example.com>\" \"My CV\" \"base64\" 12) \
             \"mixed\")",
        );
        // The encoded-word subject stays raw; the quoted display name is unquoted; the empty
        // group is a start marker and an end marker.
        check(
            &envelope(MIXED),
            "(NIL \"=?UTF-8?Q?R=C3=A9sum=C3=A9?=\" \
             ((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
             ((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
             ((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
             ((\"Bob\" NIL \"bob\" \"example.org\")(NIL NIL \"carol\" \"example.net\")) \
             ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)",
        );
        assert_eq!(binary_section(MIXED, &[2]).unwrap(), b"%PDF-1.4\n");
        assert_eq!(binary_size(MIXED, &[2]), Ok(9));
        assert_eq!(binary_section(MIXED, &[1]).unwrap(), b"Voil\xc3\xa0.");
        assert_eq!(binary_section(MIXED, &[3]), Err(BinaryError::NoSuchPart));
        assert_eq!(binary_section(MIXED, &[]).unwrap(), MIXED);
    }

    const NESTED: &str = "Content-Type: multipart/mixed; boundary=outer\r\n\
        \r\n\
        --outer\r\n\
        Content-Type: multipart/alternative; boundary=inner\r\n\
        \r\n\
        --inner\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        text\r\n\
        --inner\r\n\
        Content-Type: text/html\r\n\
        \r\n\
        <b>html</b>\r\n\
        --inner--\r\n\
        \r\n\
        --outer\r\n\
        Content-Type: image/png\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        iVBORw0KGgo=\r\n\
        --outer--\r\n";

    #[test]
    fn nested_multipart() {
        let m = NESTED.as_bytes();
        check(
            &body_structure(m, true),
            "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL)\
             (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL) \
             \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)\
             (\"image\" \"png\" NIL NIL NIL \"base64\" 12 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)",
        );
        check_section(m, &sec(&[1, 2], None), "<b>html</b>");
        check_section(m, &sec(&[1, 1], None), "text");
        check_section(
            m,
            &sec(&[1, 2], Some(SectionText::Mime)),
            "Content-Type: text/html\r\n\r\n",
        );
        check_section(
            m,
            &sec(&[1], Some(SectionText::Mime)),
            "Content-Type: multipart/alternative; boundary=inner\r\n\r\n",
        );
        // A multipart's body runs to the CRLF that belongs to the next outer boundary.
        check_section(
            m,
            &sec(&[1], None),
            "--inner\r\nContent-Type: text/plain\r\n\r\ntext\r\n\
             --inner\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--inner--\r\n",
        );
        check_section(m, &sec(&[2], None), "iVBORw0KGgo=");
        assert_eq!(
            binary_section(m, &[2]).unwrap(),
            [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']
        );
        assert_eq!(section(m, &sec(&[1, 3], None)), None);
    }

    /// Features of Dovecot's own BODYSTRUCTURE test, in a message of our own: folded quoted
    /// boundary, every extension field, an escaped quote in a parameter, an invalid CTE (shown
    /// as the default), and an attached message with preamble and epilogue.
    const INNER: &str = "From: inner@example.org\r\n\
        To: t1@example.org, t2@example.org\r\n\
        Date: Wed, 3 Jul 2019 10:00:00 +0200\r\n\
        Subject: inner\r\n\
        Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
        \r\n\
        alt prologue\r\n\
        --alt\r\n\
        Content-Type: text/html\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        <p>hi</p>\r\n\
        \r\n\
        --alt\r\n\
        Content-Type: text/plain\r\n\
        Content-Transfer-Encoding: ?bogus\r\n\
        \r\n\
        hi again\r\n\
        \r\n\
        --alt--\r\n\
        alt epilogue\r\n";

    fn kitchen_sink() -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(
            b"From: user@example.org\r\n\
            Mime-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"ab\r\n cd\"\r\n\
            \r\n\
            prologue\r\n\
            \r\n\
            --ab cd\r\n\
            Content-Type: text/x-custom; charset=us-ascii; q=\"say \\\"hi\\\"\"\r\n\
            Content-ID: <id1@example.org>\r\n\
            Content-MD5: Q2hlY2s=\r\n\
            Content-Disposition: inline; size=5\r\n\
            Content-Description: a description\r\n\
            Content-Language: en, de\r\n\
            Content-Location: http://example.org/x.txt\r\n\
            \r\n\
            howdy\r\n\
            \r\n\
            --ab cd\r\n\
            Content-Type: message/rfc822\r\n\
            \r\n",
        );
        m.extend_from_slice(INNER.as_bytes());
        m.extend_from_slice(b"\r\n--ab cd--\r\nepilogue\r\n");
        m
    }

    #[test]
    fn extension_data_and_attached_message() {
        let m = kitchen_sink();
        let inner_env = "(\"Wed, 3 Jul 2019 10:00:00 +0200\" \"inner\" \
             ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) \
             ((NIL NIL \"inner\" \"example.org\")) \
             ((NIL NIL \"t1\" \"example.org\")(NIL NIL \"t2\" \"example.org\")) NIL NIL NIL NIL)";
        assert_eq!(INNER.len(), 369);
        check(
            &body_structure(&m, true),
            &format!(
                "((\"text\" \"x-custom\" (\"charset\" \"us-ascii\" \"q\" \"say \\\"hi\\\"\") \
                 \"<id1@example.org>\" \"a description\" \"7bit\" 7 1 \"Q2hlY2s=\" \
                 (\"inline\" (\"size\" \"5\")) (\"en\" \"de\") \"http://example.org/x.txt\")\
                 (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 369 {inner_env} \
                 ((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 11 1 NIL NIL NIL NIL)\
                 (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL) \
                 \"alternative\" (\"boundary\" \"alt\") NIL NIL NIL) 21 NIL NIL NIL NIL) \
                 \"mixed\" (\"boundary\" \"ab cd\") NIL NIL NIL)"
            ),
        );
        check(
            &body_structure(&m, false),
            &format!(
                "((\"text\" \"x-custom\" (\"charset\" \"us-ascii\" \"q\" \"say \\\"hi\\\"\") \
                 \"<id1@example.org>\" \"a description\" \"7bit\" 7 1)\
                 (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 369 {inner_env} \
                 ((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 11 1)\
                 (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1) \
                 \"alternative\") 21) \"mixed\")"
            ),
        );
        // Part 2 is the whole encapsulated message; its HEADER/TEXT are the inner message's.
        check_section(&m, &sec(&[2], None), INNER);
        let (inner_header, inner_text) = INNER.split_at(INNER.find("\r\n\r\n").unwrap() + 4);
        check_section(&m, &sec(&[2], Some(SectionText::Header)), inner_header);
        check_section(&m, &sec(&[2], Some(SectionText::Text)), inner_text);
        check_section(
            &m,
            &sec(&[2], Some(SectionText::Mime)),
            "Content-Type: message/rfc822\r\n\r\n",
        );
        check_section(&m, &sec(&[2, 1], None), "<p>hi</p>\r\n");
        check_section(&m, &sec(&[2, 2], None), "hi again\r\n");
        check_section(
            &m,
            &fields_sec(&[2], false, &["subject", "FROM"]),
            "From: inner@example.org\r\nSubject: inner\r\n\r\n",
        );
        // An invalid CTE is reported as the default and decodes as identity.
        assert_eq!(binary_section(&m, &[2, 2]).unwrap(), b"hi again\r\n");
    }

    const FORWARDED_TWICE: &str = "Subject: outer\r\n\
        Content-Type: multipart/mixed; boundary=o\r\n\
        \r\n\
        --o\r\n\
        \r\n\
        cover\r\n\
        --o\r\n\
        Content-Type: message/rfc822\r\n\
        \r\n\
        Subject: mid\r\n\
        Content-Type: multipart/mixed; boundary=m\r\n\
        \r\n\
        --m\r\n\
        Content-Type: message/rfc822\r\n\
        \r\n\
        Subject: deepest\r\n\
        \r\n\
        deep body\r\n\
        --m--\r\n\
        --o--\r\n";

    #[test]
    fn sections_inside_encapsulated_messages() {
        let m = FORWARDED_TWICE.as_bytes();
        check_section(m, &sec(&[1], None), "cover");
        check_section(m, &sec(&[1], Some(SectionText::Mime)), "\r\n");
        check_section(
            m,
            &sec(&[2], Some(SectionText::Header)),
            "Subject: mid\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n",
        );
        check_section(
            m,
            &sec(&[2, 1], Some(SectionText::Header)),
            "Subject: deepest\r\n\r\n",
        );
        check_section(m, &sec(&[2, 1], Some(SectionText::Text)), "deep body");
        // The only part of a non-multipart message is its body.
        check_section(m, &sec(&[2, 1, 1], None), "deep body");
        check_section(m, &sec(&[2, 1], None), "Subject: deepest\r\n\r\ndeep body");
        check_section(
            m,
            &fields_sec(&[2, 1], true, &["Content-Type"]),
            "Subject: deepest\r\n\r\n",
        );
        assert_eq!(section(m, &sec(&[2, 2], None)), None);
        check(
            &body_structure(m, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)\
             (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 132 \
             (NIL \"mid\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             ((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 29 \
             (NIL \"deepest\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0) 2) \"mixed\") 9) \
             \"mixed\")",
        );
    }

    #[test]
    fn top_level_sections() {
        let m = SIMPLE.as_bytes();
        let (header, text) = SIMPLE.split_at(SIMPLE.find("\r\n\r\n").unwrap() + 4);
        check_section(m, &sec(&[], None), SIMPLE);
        check_section(m, &sec(&[], Some(SectionText::Header)), header);
        check_section(m, &sec(&[], Some(SectionText::Text)), text);
        assert_eq!(section(m, &sec(&[], Some(SectionText::Mime))), None);
        // Part 1 of a single-part message is its body; its MIME header is the message header.
        check_section(m, &sec(&[1], None), text);
        check_section(m, &sec(&[1], Some(SectionText::Mime)), header);
        assert_eq!(section(m, &sec(&[2], None)), None);
        // Names match case-insensitively; order is the message's, not the request's.
        check_section(
            m,
            &fields_sec(&[], false, &["SUBJECT", "from", "X-Absent"]),
            "From: Alice Example <alice@example.com>\r\nSubject: Hello\r\n\r\n",
        );
        check_section(m, &fields_sec(&[], false, &["X-Absent"]), "\r\n");
        check_section(
            m,
            &fields_sec(
                &[],
                true,
                &["Subject", "date", "message-id", "MIME-Version"],
            ),
            "From: Alice Example <alice@example.com>\r\nTo: bob@example.org\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n",
        );
    }

    #[test]
    fn header_fields_keep_folding_and_duplicates() {
        let m = b"Received: from a\r\n\tby b; Mon, 1 Jan 2001 00:00:00 +0000\r\n\
            X-Spam: no\r\n\
            Received: from c\r\n by d\r\n\
            Subject : spaced\r\n\
            \r\n\
            body";
        check_section(
            m,
            &fields_sec(&[], false, &["received", "subject"]),
            "Received: from a\r\n\tby b; Mon, 1 Jan 2001 00:00:00 +0000\r\n\
             Received: from c\r\n by d\r\nSubject : spaced\r\n\r\n",
        );
        check_section(
            m,
            &fields_sec(&[], true, &["received", "subject"]),
            "X-Spam: no\r\n\r\n",
        );
    }

    #[test]
    fn dovecot_envelope_cases() {
        // The address cases Dovecot's envelope test carries over from imaptest.
        check(
            &envelope(
                b"Message-ID: <msg@id>\nIn-Reply-To: <reply@to.id>\n\
                  Date: Thu, 15 Feb 2007 01:02:03 +0200\nSubject: subject header\n\
                  From: From Real <fromuser@fromdomain.org>\nTo: To Real <touser@todomain.org>\n\
                  Cc: Cc Real <ccuser@ccdomain.org>\nBcc: Bcc Real <bccuser@bccdomain.org>\n\
                  Sender: Sender Real <senderuser@senderdomain.org>\n\
                  Reply-To: ReplyTo Real <replytouser@replytodomain.org>\n\nbody\n",
            ),
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"subject header\" \
             ((\"From Real\" NIL \"fromuser\" \"fromdomain.org\")) \
             ((\"Sender Real\" NIL \"senderuser\" \"senderdomain.org\")) \
             ((\"ReplyTo Real\" NIL \"replytouser\" \"replytodomain.org\")) \
             ((\"To Real\" NIL \"touser\" \"todomain.org\")) \
             ((\"Cc Real\" NIL \"ccuser\" \"ccdomain.org\")) \
             ((\"Bcc Real\" NIL \"bccuser\" \"bccdomain.org\")) \"<reply@to.id>\" \"<msg@id>\")",
        );
        check(
            &envelope(
                b"Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\n\
                  To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\n\
                  Cc: group:;, group2: (foo) ;\n\nbody\n",
            ),
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL \
             ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")\
             (NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL)) \
             ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) \
             NIL NIL NIL)",
        );
        // Empty Sender / Reply-To fall back to From.
        check(
            &envelope(b"From: user@domain (Real Name)\nSender: \nReply-To: \n\nbody\n"),
            "(NIL NIL ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
             NIL NIL NIL NIL NIL)",
        );
        check(
            &envelope(b"From: <@route:user@domain>\n\nbody\n"),
            "(NIL NIL ((NIL \"@route\" \"user\" \"domain\")) ((NIL \"@route\" \"user\" \"domain\")) \
             ((NIL \"@route\" \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
        );
    }

    #[test]
    fn envelope_strings_are_raw_and_quoted_safely() {
        let m = "From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n\
            To: undisclosed\r\n\
            Cc: \"John Q. Public\" <\"john public\"@example.com>, John Q. Public <jqp@example.com>\r\n\
            Subject: He said \"hi\" \\o/\r\n\
            In-Reply-To: <a@b>\r\n\t<c@d>\r\n\
            \r\n";
        check(
            &envelope(m.as_bytes()),
            "(NIL \"He said \\\"hi\\\" \\\\o/\" \
             ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) \
             ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) \
             ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) \
             ((NIL NIL \"undisclosed\" \"MISSING_DOMAIN\")) \
             ((\"John Q. Public\" NIL \"john public\" \"example.com\")\
             (\"John Q. Public\" NIL \"jqp\" \"example.com\")) \
             NIL \"<a@b>\t<c@d>\" NIL)",
        );
        // 8-bit and quote-heavy strings go as literals; folded values are unfolded.
        check(
            &envelope("Subject: Gr\u{fc}\u{df}e\r\n\r\n".as_bytes()),
            "(NIL {7}\r\nGr\u{fc}\u{df}e NIL NIL NIL NIL NIL NIL NIL NIL)",
        );
        check(
            &envelope(b"Subject: \"a\"b\"c\"\r\n\r\n"),
            "(NIL \"\\\"a\\\"b\\\"c\\\"\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        );
        check(
            &envelope(b"Subject: \"a\"b\"c\"d\"\r\n\r\n"),
            "(NIL {9}\r\n\"a\"b\"c\"d\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        );
        check(
            &envelope(b"Subject: one\r\n two\r\n\r\n"),
            "(NIL \"one two\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        );
        check(
            &envelope(b"Subject:\r\n\r\n"),
            "(NIL \"\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        );
    }

    #[test]
    fn envelope_without_from() {
        check(
            &envelope(b"Subject: x\r\nTo: a@b\r\n\r\nbody"),
            "(NIL \"x\" NIL NIL NIL ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL)",
        );
        check(&envelope(b""), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn rfc2231_parameters_stay_encoded_like_dovecot() {
        let m = b"Content-Type: application/octet-stream;\r\n\
            \tname*0=\"long \"; name*1=\"name.txt\";\r\n\
            \ttitle*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\r\n\
            Content-Disposition: attachment; filename*0*=UTF-8''%e2%98%95; filename*1*=.txt\r\n\
            \r\n\
            x";
        check(
            &body_structure(m, true),
            "(\"application\" \"octet-stream\" (\"title*\" \"us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\" \
             \"name\" \"long name.txt\") NIL NIL \"7bit\" 1 NIL \
             (\"attachment\" (\"filename*\" \"UTF-8''%e2%98%95.txt\")) NIL NIL)",
        );
    }

    #[test]
    fn message_global_and_unparsable_parts_stay_leaves() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: message/global\r\n\r\nSubject: x\r\n\r\ny\r\n--b--\r\n";
        check(
            &body_structure(m, false),
            "((\"message\" \"global\" NIL NIL NIL \"7bit\" 15) \"mixed\")",
        );
        // A multipart whose boundary never comes has one empty text/plain part (Dovecot).
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts\r\n";
        check(
            &body_structure(m, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")",
        );
        assert_eq!(section(m, &sec(&[1], None)), Some(Vec::new()));
        let m = b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n";
        check(
            &body_structure(m, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")",
        );
    }

    #[test]
    fn digest_parts_default_to_message_rfc822() {
        let m = b"Content-Type: multipart/digest; boundary=d\r\n\r\n\
            --d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n";
        check(
            &body_structure(m, false),
            "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 21 \
             (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0) 2) \"digest\")",
        );
        check_section(m, &sec(&[1, 1], None), "first");
    }

    #[test]
    fn top_level_message_rfc822() {
        let m = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody\r\n";
        check(
            &body_structure(m, false),
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 21 \
             (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1) 3)",
        );
        check_section(m, &sec(&[1], None), "Subject: in\r\n\r\nbody\r\n");
        check_section(
            m,
            &sec(&[1], Some(SectionText::Header)),
            "Subject: in\r\n\r\n",
        );
        check_section(m, &sec(&[1, 1], None), "body\r\n");
    }

    #[test]
    fn encoded_message_rfc822_is_described_from_its_decoded_content() {
        // RFC 2046 forbids encoding message/rfc822, but it happens; mail-parser decodes it and
        // so do we: sizes are of the stored (encoded) body, the structure is the decoded one.
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            RnJvbTogeEB5DQoNCmhpDQo=\r\n--b--\r\n";
        check(
            &body_structure(m, false),
            "((\"message\" \"rfc822\" NIL NIL NIL \"base64\" 24 \
             (NIL NIL ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) \
             NIL NIL NIL NIL NIL) \
             (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 1) 0) \"mixed\")",
        );
        check_section(m, &sec(&[1], None), "RnJvbTogeEB5DQoNCmhpDQo=");
        check_section(
            m,
            &sec(&[1], Some(SectionText::Header)),
            "From: x@y\r\n\r\n",
        );
        check_section(m, &sec(&[1, 1], None), "hi\r\n");
        assert_eq!(binary_section(m, &[1]).unwrap(), b"From: x@y\r\n\r\nhi\r\n");
    }

    #[test]
    fn binary_decoding() {
        let qp = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n\
            caf=C3=A9 =3D soft=\r\nbreak  \r\n=zz stays\r\n";
        assert_eq!(
            binary_section(qp, &[1]).unwrap(),
            "caf\u{e9} = softbreak\r\n=zz stays\r\n".as_bytes()
        );
        let b64 = b"Content-Type: application/octet-stream\r\n\
            Content-Transfer-Encoding: BASE64\r\n\r\n\
            AAEC\r\nAwQF\r\nBg==\r\n";
        assert_eq!(binary_section(b64, &[1]).unwrap(), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(binary_size(b64, &[1]), Ok(7));
        let unknown = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n";
        assert_eq!(
            binary_section(unknown, &[1]),
            Err(BinaryError::UnknownCte("x-uuencode".into()))
        );
        assert_eq!(
            binary_size(unknown, &[1]),
            Err(BinaryError::UnknownCte("x-uuencode".into()))
        );
        assert_eq!(binary_section(unknown, &[2]), Err(BinaryError::NoSuchPart));
    }

    #[test]
    fn decoders_are_lenient() {
        assert_eq!(decode_base64(b"SGVs\r\nbG8=\r\nV29y\nbGQ="), b"HelloWorld");
        assert_eq!(decode_base64(b"!!SGk="), b"Hi");
        assert_eq!(decode_quoted_printable(b"a=\nb"), b"ab");
        assert_eq!(decode_quoted_printable(b"x=4"), b"x=4");
        assert_eq!(decode_quoted_printable(b"trail \t\nx="), b"trail\nx");
    }

    #[test]
    fn search_header_decodes_and_folds_case() {
        let m = MIXED;
        assert!(header_value_contains(m, "subject", "résumé"));
        assert!(header_value_contains(m, "SUBJECT", "RÉSUMÉ"));
        assert!(!header_value_contains(m, "Subject", "=?UTF-8"));
        assert!(header_value_contains(m, "from", "jane@EXAMPLE"));
        assert!(header_value_contains(m, "From", "doe, jane"));
        assert!(header_value_contains(m, "to", "carol"));
        assert!(header_value_contains(m, "Content-Type", "==b1=="));
        // An empty needle matches whenever the field exists.
        assert!(header_value_contains(m, "cc", ""));
        assert!(!header_value_contains(m, "bcc", ""));
        assert!(!header_value_contains(m, "to", "jane"));
        // Folded values are searched unfolded; encoded words in names are decoded.
        let m = b"From: =?ISO-8859-1?Q?Andr=E9?=\r\n Pirard <p@x>\r\n\r\n";
        assert!(header_value_contains(m, "From", "andré pirard"));
        // Part headers are not message headers.
        assert!(!header_value_contains(MIXED, "Content-ID", ""));
    }

    #[test]
    fn literal8_binary_parts_become_base64() {
        let m = b"Subject: bin\r\nContent-Type: application/octet-stream\r\n\
            Content-Transfer-Encoding: binary\r\n\r\nab\0cd\r\n";
        let out = binary_to_base64(m).unwrap();
        // As Dovecot stores it.
        assert_eq!(
            out,
            b"Subject: bin\r\nContent-Type: application/octet-stream\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nYWIAY2QNCg=="
        );
        assert_eq!(binary_section(&out, &[1]).unwrap(), b"ab\0cd\r\n");
        // A part without the header gains it; other parts stay as they were.
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: x/y\r\n\r\n\
            a\0b\r\n--b--\r\n";
        let out = binary_to_base64(m).unwrap();
        assert!(out.windows(8).all(|w| !w.contains(&0)));
        assert_eq!(binary_section(&out, &[1]).unwrap(), b"plain");
        assert_eq!(binary_section(&out, &[2]).unwrap(), b"a\0b");
        assert!(String::from_utf8_lossy(&out).contains(
            "Content-Type: x/y\r\nContent-Transfer-Encoding: base64\r\n\r\nYQBi\r\n--b--"
        ));
        // Nothing binary: nothing to do.
        assert_eq!(
            binary_to_base64(b"Subject: x\r\n\r\n8bit \xc3\xa9\r\n"),
            None
        );
    }

    #[test]
    fn part_one_below_a_leaf() {
        // A single-part message has part 1 only; a leaf inside a multipart is its own "1".
        let single = b"Subject: s\r\n\r\nhello\r\n";
        assert_eq!(
            section(single, &sec(&[1], None)),
            Some(b"hello\r\n".to_vec())
        );
        assert_eq!(section(single, &sec(&[1, 1], None)), None);
        let multi = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n";
        assert_eq!(section(multi, &sec(&[1, 1], None)), Some(b"one".to_vec()));
    }

    #[test]
    fn search_addresses_match_the_normalised_form() {
        let m = b"From: <user-from (comment)@ (comment) domain.org>\r\n\
            To: user-to@domain.org (RealTo)\r\n\
            Cc: groupname: g1@d.org, g2@d.org;, other@d.org\r\n\r\nbody";
        assert!(address_value_contains(m, "From", "user-from@domain.org"));
        assert!(!address_value_contains(m, "From", "comment"));
        assert!(address_value_contains(m, "To", "realto <user-to@"));
        assert!(address_value_contains(m, "Cc", "groupname"));
        assert!(address_value_contains(m, "Cc", "g2@d.org"));
        assert!(address_value_contains(m, "Cc", ""));
        assert!(!address_value_contains(m, "Bcc", ""));
        assert_eq!(
            normalized_addresses(b"groupname: g1@d.org, g2@d.org;, other@d.org"),
            "groupname: g1@d.org, g2@d.org;, other@d.org"
        );
    }

    #[test]
    fn search_body_and_text() {
        assert!(body_contains(MIXED, "VOILÀ"));
        assert!(!body_contains(MIXED, "Résumé"));
        assert!(text_contains(MIXED, "Résumé"));
        assert!(text_contains(MIXED, "voilà"));
        // Quoted-printable is decoded before matching.
        assert!(body_contains(ALTERNATIVE.as_bytes(), "html=</p>"));
        assert!(!body_contains(ALTERNATIVE.as_bytes(), "html=3D"));
        // Attachments that are not text are not searched; an empty needle always matches.
        assert!(!body_contains(MIXED, "JVBERi0"));
        assert!(body_contains(MIXED, ""));
        // TEXT (not BODY) also sees the parts' MIME headers (Dovecot).
        assert!(text_contains(MIXED, "cv.pdf"));
        assert!(!body_contains(MIXED, "cv.pdf"));
        // Text of an attached message, and its header, count as body.
        let m = kitchen_sink();
        assert!(body_contains(&m, "HI AGAIN"));
        assert!(body_contains(&m, "t2@example.org"));
        assert!(!body_contains(&m, "user@example.org"));
        assert!(text_contains(&m, "user@example.org"));
        // Base64 text with a charset.
        let m = b"Content-Type: text/plain; charset=iso-8859-1\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nR3L832U=\r\n";
        assert!(body_contains(m, "grüße"));
        assert!(!text_contains(m, "nothing"));
    }

    #[test]
    fn sent_date_uses_the_headers_own_zone() {
        // 23:30 at -0800 is already the next day in UTC; SENTON compares the header's date.
        let m = b"Date: Sun, 31 Dec 2023 23:30:00 -0800\r\n\r\n";
        let secs = sent_date(m).unwrap();
        assert_eq!(secs, 1_704_065_400);
        assert_eq!(secs.div_euclid(86_400), 19_722); // 2023-12-31
        assert_eq!(sent_date(b"Date: not a date\r\n\r\n"), None);
        assert_eq!(sent_date(b"Subject: x\r\n\r\n"), None);
        assert_eq!(
            sent_date(b"Date: Thu, 1 Jan 1970 00:00:01 +0000\r\n\r\n"),
            Some(1)
        );
    }

    #[test]
    fn bare_lf_8bit_and_missing_blank_line() {
        let m = b"From: a@b\nSubject: caf\xc3\xa9\nContent-Type: multipart/mixed; boundary=z\n\n--z\n\nx\ny\n--z--\n";
        check(
            &body_structure(m, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1) \"mixed\")",
        );
        check_section(m, &sec(&[1], None), "x\ny");
        check_section(
            m,
            &sec(&[], Some(SectionText::Text)),
            "--z\n\nx\ny\n--z--\n",
        );
        check(
            &envelope(m),
            "(NIL {5}\r\ncaf\u{e9} ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) \
             ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)",
        );
        assert!(header_value_contains(m, "subject", "CAFÉ"));
        // No blank line: everything is header, the body is empty.
        let m = b"From: a@b\r\nSubject: x";
        check_section(
            m,
            &sec(&[], Some(SectionText::Header)),
            "From: a@b\r\nSubject: x",
        );
        check_section(m, &sec(&[], Some(SectionText::Text)), "");
        check_section(m, &sec(&[1], None), "");
        check(
            &body_structure(m, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)",
        );
        // Nothing that looks like a header at all.
        for m in [&b""[..], b"   ", b"\r\n", b"garbage"] {
            assert_eq!(section(m, &sec(&[], None)).unwrap(), m);
            let bs = body_structure(m, true);
            assert!(
                bs.starts_with(b"(\"text\" \"plain\""),
                "{:?}",
                String::from_utf8_lossy(&bs)
            );
        }
    }

    #[test]
    fn deep_nesting_is_capped_and_torn_down_without_recursion() {
        let mut deep_msg = Vec::new();
        for _ in 0..20_000 {
            deep_msg.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        deep_msg.extend_from_slice(b"Subject: bottom\r\n\r\nbody\r\n");
        let mut deep_mp = Vec::new();
        for i in 0..5_000 {
            deep_mp.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        deep_mp.extend_from_slice(b"\r\nleaf\r\n");
        // A small stack, so any recursion proportional to the input depth would overflow.
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                for m in [&deep_msg, &deep_mp] {
                    let bs = body_structure(m, true);
                    let depth = bs.iter().take_while(|&&c| c == b'(').count();
                    assert!(depth <= MAX_DEPTH + 2, "depth {depth}");
                    // Below the cap a part is an opaque leaf: deeper paths all answer alike.
                    let capped = section(m, &sec(&[1; 70], None));
                    assert_eq!(section(m, &sec(&[1; 500], None)), capped);
                    assert!(section(m, &sec(&[1; 10], None)).is_some());
                    assert!(body_contains(m, "") && !body_contains(m, "nowhere"));
                    let _ = binary_section(m, &[1; 40]);
                    let _ = envelope(m);
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn header_end_matches_mail_parser_on_tricky_headers() {
        for m in [
            &b"A: b\r\n \r\n\r\nbody"[..],
            b" \r\nbody",
            b"no colon\r\n more\r\n\r\nbody",
            b": x\r\n\r\nbody",
            b"A:\r\n\r\n",
            b"\r\r\nbody",
            b"Subject: =?utf-8?b?YWJj\r\n?=\r\n\r\nx",
        ] {
            let parsed = parse(m);
            let offset_body = parsed.0.as_ref().map(|msg| msg.parts[0].offset_body);
            assert_eq!(
                offset_body.unwrap_or(m.len()),
                header_len(m),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
    }

    fn mime_fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
            Just(b"Content-Type: multipart/alternative; boundary=\"c\"\r\n".to_vec()),
            Just(b"Content-Type: message/rfc822\r\n".to_vec()),
            Just(b"Content-Type: text/plain; charset=utf-8; name*0*=x; name*1=y\r\n".to_vec()),
            Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
            Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
            Just(b"Content-Disposition: attachment; filename=\"a\\\"b\"\r\n".to_vec()),
            Just(b"From: \"x\" <a@b>, g: c@d;, (c) e\r\n".to_vec()),
            Just(b"Subject: =?utf-8?q?a=C3?= \"\\\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"--b\r\n".to_vec()),
            Just(b"--b--\r\n".to_vec()),
            Just(b"--c\r\n".to_vec()),
            Just(b"--c--\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            Just(b"=C3=A9=\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..16),
        ]
    }

    fn exercise(m: &[u8]) {
        let _ = envelope(m);
        let _ = body_structure(m, true);
        let _ = body_structure(m, false);
        let texts = [
            None,
            Some(SectionText::Header),
            Some(SectionText::Text),
            Some(SectionText::Mime),
            Some(SectionText::HeaderFields {
                not: true,
                fields: vec!["from".into()],
            }),
        ];
        for part in [
            &[][..],
            &[1],
            &[2],
            &[1, 1],
            &[2, 1],
            &[1, 2, 1],
            &[0],
            &[u32::MAX],
        ] {
            for text in &texts {
                let _ = section(
                    m,
                    &Section {
                        part: part.to_vec(),
                        text: text.clone(),
                    },
                );
            }
            let _ = binary_section(m, part);
            let _ = binary_size(m, part);
        }
        let _ = header_value_contains(m, "from", "a");
        let _ = header_value_contains(m, "subject", "");
        let _ = body_contains(m, "x");
        let _ = text_contains(m, "X");
        let _ = sent_date(m);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn random_bytes_never_panic(m in prop::collection::vec(any::<u8>(), 0..512)) {
            exercise(&m);
        }

        #[test]
        fn mime_shaped_input_never_panics(parts in prop::collection::vec(mime_fragment(), 0..24)) {
            let m = parts.concat();
            exercise(&m);
            // The header/body split used without a MIME parse agrees with mail-parser's, and
            // HEADER + TEXT is the whole message.
            let parsed = parse(&m);
            if let Some(msg) = parsed.0.as_ref() {
                prop_assert_eq!(msg.parts[0].offset_body.min(m.len()), header_len(&m));
            }
            drop(parsed);
            let mut whole = section(&m, &sec(&[], Some(SectionText::Header))).unwrap();
            whole.extend(section(&m, &sec(&[], Some(SectionText::Text))).unwrap());
            prop_assert_eq!(whole, m);
        }
    }
}

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
            Kind::Message(inner) => message_section(inner.header(), inner.body(), text),
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
    header_block_contains(&msg[..header_len(msg)], &folded) || body_contains(msg, needle)
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
        PartType::Message(inner) if deeper && !info.is_message_global() => build(inner, 0, depth + 1)
            .map(|n| Kind::Message(Box::new(n)))
            .unwrap_or(Kind::Leaf),
        _ => Kind::Leaf,
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
    for &n in rest {
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
    let start = v.iter().position(|&c| !c.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|&c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &v[start..end]
}

/// A field value as one line: CR and LF removed, leading whitespace skipped (what Dovecot puts
/// in ENVELOPE and BODYSTRUCTURE strings).
fn unfold(value: &[u8]) -> Vec<u8> {
    let start = value.iter().position(|&c| !is_wsp(c) && c != b'\r' && c != b'\n');
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
    addr.mailbox.get_or_insert_with(|| b"MISSING_MAILBOX".to_vec());
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
    // Stable sort: by base name (case-insensitively), then section index.
    sections.sort_by(|a, b| {
        a.0.to_ascii_lowercase()
            .cmp(&b.0.to_ascii_lowercase())
            .then(a.1.cmp(&b.1))
    });
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
        let content_end = content.iter().rposition(|&c| !is_wsp(c)).map_or(0, |i| i + 1);
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
}

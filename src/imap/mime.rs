//! STAND-IN so the imap branch compiles until the real MIME module (written on the `mime`
//! branch with the same API) is merged; on conflict take the `mime` branch's file.

use super::section::{Section, SectionText};

/// Why a BINARY section cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The part's Content-Transfer-Encoding is unknown.
    #[error("unknown content-transfer-encoding")]
    UnknownCte,
    /// The part does not exist.
    #[error("no such part")]
    NoSuchPart,
}

fn split(msg: &[u8]) -> (&[u8], &[u8]) {
    if let Some(i) = memchr::memmem::find(msg, b"\r\n\r\n") {
        (&msg[..i + 4], &msg[i + 4..])
    } else if let Some(i) = memchr::memmem::find(msg, b"\n\n") {
        (&msg[..i + 2], &msg[i + 2..])
    } else {
        (msg, &[])
    }
}

/// The parenthesised ENVELOPE value (stand-in: all NIL).
pub fn envelope(_msg: &[u8]) -> Vec<u8> {
    b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_vec()
}

/// BODYSTRUCTURE (extended) or BODY (stand-in: a single text/plain part).
pub fn body_structure(msg: &[u8], extended: bool) -> Vec<u8> {
    let (_, body) = split(msg);
    let lines = body.iter().filter(|&&c| c == b'\n').count();
    let mut s = format!(
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" {} {}",
        body.len(),
        lines
    );
    if extended {
        s.push_str(" NIL NIL NIL NIL");
    }
    s.push(')');
    s.into_bytes()
}

/// BODY[section] bytes; `None` if the part is missing (stand-in: top level only).
pub fn section(msg: &[u8], section: &Section) -> Option<Vec<u8>> {
    if !section.part.is_empty() && section.part != [1] {
        return None;
    }
    let (head, body) = split(msg);
    match &section.text {
        None if section.part.is_empty() => Some(msg.to_vec()),
        None => Some(body.to_vec()),
        Some(SectionText::Header) => Some(head.to_vec()),
        Some(SectionText::Text) => Some(body.to_vec()),
        Some(SectionText::Mime) => Some(Vec::new()),
        Some(SectionText::HeaderFields { .. }) => Some(b"\r\n".to_vec()),
    }
}

/// BINARY[part] decoded (stand-in: undecoded).
pub fn binary_section(msg: &[u8], part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    let s = Section {
        part: part.to_vec(),
        text: None,
    };
    section(msg, &s).ok_or(BinaryError::NoSuchPart)
}

/// Size of BINARY[part].
pub fn binary_size(msg: &[u8], part: &[u32]) -> Result<usize, BinaryError> {
    binary_section(msg, part).map(|v| v.len())
}

/// Whether header `field` contains `needle` (stand-in: raw, case-insensitive).
pub fn header_value_contains(msg: &[u8], field: &str, needle: &str) -> bool {
    let (head, _) = split(msg);
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let prefix = format!("{}:", field.to_ascii_lowercase());
    head.lines()
        .any(|l| l.starts_with(&prefix) && l[prefix.len()..].contains(&needle.to_ascii_lowercase()))
}

/// Whether the body contains `needle` (stand-in: raw, case-insensitive).
pub fn body_contains(msg: &[u8], needle: &str) -> bool {
    let (_, body) = split(msg);
    String::from_utf8_lossy(body)
        .to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

/// Whether header or body contains `needle`.
pub fn text_contains(msg: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(msg)
        .to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

/// The Date: header as Unix seconds (stand-in: none).
pub fn sent_date(_msg: &[u8]) -> Option<i64> {
    None
}

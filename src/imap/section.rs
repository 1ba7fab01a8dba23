//! Message section specifiers (`BODY[1.2.HEADER.FIELDS (From To)]<0.100>`) shared by the IMAP
//! parser (which builds them) and the MIME code (which extracts them).

/// A section of a message: a MIME part path plus what of that part is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// MIME part numbers (`1.2.3` is `[1, 2, 3]`); empty means the whole message.
    pub part: Vec<u32>,
    /// What of the part is wanted; `None` means the whole part (`BODY[1]`, `BODY[]`).
    pub text: Option<SectionText>,
}

/// The textual part of a section specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// `HEADER`: the header block, including the blank line that ends it.
    Header,
    /// `HEADER.FIELDS (..)` or, with `not`, `HEADER.FIELDS.NOT (..)`; names as given by the client.
    HeaderFields {
        /// True for `HEADER.FIELDS.NOT`.
        not: bool,
        /// Field names, compared case-insensitively.
        fields: Vec<String>,
    },
    /// `TEXT`: the body after the header block.
    Text,
    /// `MIME`: the MIME header of a body part (only valid with a part number).
    Mime,
}

/// A `<origin.length>` partial range on a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// First octet returned.
    pub origin: u32,
    /// Most octets returned (`u32::MAX`: to the end).
    pub length: u32,
}

//! SEARCH criteria (RFC 3501 §6.4.4, RFC 7162 MODSEQ): parsing from a command and evaluating
//! against one message.

use std::borrow::Cow;

use super::lexer::{Cursor, LexResult};
use super::localtime::local_day;
use super::sequence::SequenceSet;

/// Deepest nesting of parentheses / NOT / OR accepted, so a hostile command cannot blow the stack.
const MAX_DEPTH: u32 = 64;

/// One search key; a command's criteria are an implicit `And` of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey<'a> {
    /// All messages.
    All,
    /// `\Answered` set.
    Answered,
    /// `\Deleted` set.
    Deleted,
    /// `\Draft` set.
    Draft,
    /// `\Flagged` set.
    Flagged,
    /// `\Recent` and not `\Seen`.
    New,
    /// Not `\Recent`.
    Old,
    /// `\Recent` set.
    Recent,
    /// `\Seen` set.
    Seen,
    /// `\Answered` not set.
    Unanswered,
    /// `\Deleted` not set.
    Undeleted,
    /// `\Draft` not set.
    Undraft,
    /// `\Flagged` not set.
    Unflagged,
    /// `\Seen` not set.
    Unseen,
    /// The keyword is set.
    Keyword(&'a [u8]),
    /// The keyword is not set.
    Unkeyword(&'a [u8]),
    /// A header field (name, substring) contains the string (`HEADER`, `SUBJECT`).
    Header(Cow<'a, [u8]>, Cow<'a, [u8]>),
    /// An address field (`From`, `To`, `Cc`, `Bcc`) contains the string in its normalised form
    /// (`Name <local@domain>, ...`), as Dovecot matches `FROM` / `TO` / `CC` / `BCC`.
    Address(&'static str, Cow<'a, [u8]>),
    /// Body text contains the string.
    Body(Cow<'a, [u8]>),
    /// Header or body contains the string.
    Text(Cow<'a, [u8]>),
    /// Internal date before the day (days since epoch).
    Before(i64),
    /// Internal date on the day.
    On(i64),
    /// Internal date on or after the day.
    Since(i64),
    /// Date: header before the day.
    SentBefore(i64),
    /// Date: header on the day.
    SentOn(i64),
    /// Date: header on or after the day.
    SentSince(i64),
    /// RFC822.SIZE larger than n.
    Larger(u32),
    /// RFC822.SIZE smaller than n.
    Smaller(u32),
    /// UID in the set.
    Uid(SequenceSet<'a>),
    /// Sequence number in the set.
    Seq(SequenceSet<'a>),
    /// MODSEQ at least n (RFC 7162).
    ModSeq(u64),
    /// Negation.
    Not(Box<SearchKey<'a>>),
    /// Either.
    Or(Box<SearchKey<'a>>, Box<SearchKey<'a>>),
    /// All of them (parenthesised list, or the top level).
    And(Vec<SearchKey<'a>>),
}

/// What a key is checked against: one message and the mailbox around it.
pub struct MessageContext<'m> {
    /// Message sequence number.
    pub seq: u32,
    /// UID.
    pub uid: u32,
    /// Flag bits as the store keeps them (see `store::flags`).
    pub flags: u64,
    /// Whether the message is `\Recent` in this session.
    pub recent: bool,
    /// MODSEQ.
    pub modseq: u64,
    /// RFC822.SIZE.
    pub size: u32,
    /// INTERNALDATE as Unix seconds.
    pub internal_date: i64,
    /// Number of messages (value of `*` for sequence numbers).
    pub max_seq: u32,
    /// Largest UID (value of `*` for UIDs).
    pub max_uid: u32,
    /// The mailbox's keyword table (bit 8+i is keywords[i]).
    pub keywords: &'m [String],
    /// The message bytes, present when [`SearchKey::needs_body`] said so.
    pub body: Option<&'m [u8]>,
    /// UIDs of the saved search result (`$`, RFC 5182), ascending.
    pub saved: &'m [u32],
}

/// Answers the content questions of a search (header/body text, Date: header); the real one
/// is MIME-aware, tests may use a plain fake.
pub trait ContentMatcher {
    /// Whether header `field` contains `needle` (case-insensitive, decoded); an empty needle
    /// matches any message having the field.
    fn header_contains(&self, msg: &[u8], field: &str, needle: &str) -> bool;
    /// Whether address field `field`, parsed and written back as `Name <local@domain>, ...`,
    /// contains `needle`; by default the same as [`ContentMatcher::header_contains`].
    fn address_contains(&self, msg: &[u8], field: &str, needle: &str) -> bool {
        self.header_contains(msg, field, needle)
    }
    /// Whether the decoded body text contains `needle`.
    fn body_contains(&self, msg: &[u8], needle: &str) -> bool;
    /// Whether header or body contains `needle`.
    fn text_contains(&self, msg: &[u8], needle: &str) -> bool;
    /// The Date: header as Unix seconds.
    fn sent_date(&self, msg: &[u8]) -> Option<i64>;
}

/// The MIME-aware matcher used by the server.
pub struct MimeMatcher;

impl ContentMatcher for MimeMatcher {
    fn header_contains(&self, msg: &[u8], field: &str, needle: &str) -> bool {
        super::mime::header_value_contains(msg, field, needle)
    }
    fn address_contains(&self, msg: &[u8], field: &str, needle: &str) -> bool {
        super::mime::address_value_contains(msg, field, needle)
    }
    fn body_contains(&self, msg: &[u8], needle: &str) -> bool {
        super::mime::body_contains(msg, needle)
    }
    fn text_contains(&self, msg: &[u8], needle: &str) -> bool {
        super::mime::text_contains(msg, needle)
    }
    fn sent_date(&self, msg: &[u8]) -> Option<i64> {
        super::mime::sent_date(msg)
    }
}

use super::store::flags as fl;

impl<'a> SearchKey<'a> {
    /// Whether evaluating needs the message bytes.
    pub fn needs_body(&self) -> bool {
        match self {
            SearchKey::Header(..)
            | SearchKey::Address(..)
            | SearchKey::Body(_)
            | SearchKey::Text(_)
            | SearchKey::SentBefore(_)
            | SearchKey::SentOn(_)
            | SearchKey::SentSince(_) => true,
            SearchKey::Not(k) => k.needs_body(),
            SearchKey::Or(a, b) => a.needs_body() || b.needs_body(),
            SearchKey::And(ks) => ks.iter().any(SearchKey::needs_body),
            _ => false,
        }
    }

    /// Whether the criteria mention MODSEQ (then the response carries the highest MODSEQ).
    pub fn uses_modseq(&self) -> bool {
        match self {
            SearchKey::ModSeq(_) => true,
            SearchKey::Not(k) => k.uses_modseq(),
            SearchKey::Or(a, b) => a.uses_modseq() || b.uses_modseq(),
            SearchKey::And(ks) => ks.iter().any(SearchKey::uses_modseq),
            _ => false,
        }
    }

    /// Whether the message matches.
    pub fn matches(&self, m: &MessageContext<'_>, content: &impl ContentMatcher) -> bool {
        let has = |bit: u64| m.flags & bit != 0;
        match self {
            SearchKey::All => true,
            SearchKey::Answered => has(fl::ANSWERED),
            SearchKey::Deleted => has(fl::DELETED),
            SearchKey::Draft => has(fl::DRAFT),
            SearchKey::Flagged => has(fl::FLAGGED),
            SearchKey::Seen => has(fl::SEEN),
            SearchKey::Unanswered => !has(fl::ANSWERED),
            SearchKey::Undeleted => !has(fl::DELETED),
            SearchKey::Undraft => !has(fl::DRAFT),
            SearchKey::Unflagged => !has(fl::FLAGGED),
            SearchKey::Unseen => !has(fl::SEEN),
            SearchKey::Recent => m.recent,
            SearchKey::New => m.recent && !has(fl::SEEN),
            SearchKey::Old => !m.recent,
            SearchKey::Keyword(k) => keyword_bit(m.keywords, k).is_some_and(has),
            SearchKey::Unkeyword(k) => !keyword_bit(m.keywords, k).is_some_and(has),
            SearchKey::Larger(n) => m.size > *n,
            SearchKey::Smaller(n) => m.size < *n,
            // The store keeps no zone for internal dates: compare local calendar days, as
            // Dovecot does (and as FETCH INTERNALDATE shows them).
            SearchKey::Before(d) => local_day(m.internal_date) < *d,
            SearchKey::On(d) => local_day(m.internal_date) == *d,
            SearchKey::Since(d) => local_day(m.internal_date) >= *d,
            SearchKey::Uid(set) | SearchKey::Seq(set) if set.is_saved() => {
                m.saved.binary_search(&m.uid).is_ok()
            }
            SearchKey::Uid(set) => set.contains(m.uid, m.max_uid),
            SearchKey::Seq(set) => set.contains(m.seq, m.max_seq),
            SearchKey::ModSeq(n) => m.modseq >= *n,
            SearchKey::Not(k) => !k.matches(m, content),
            SearchKey::Or(a, b) => a.matches(m, content) || b.matches(m, content),
            SearchKey::And(ks) => ks.iter().all(|k| k.matches(m, content)),
            SearchKey::Header(field, needle) => m.body.is_some_and(|b| {
                content.header_contains(b, &String::from_utf8_lossy(field), &lossy(needle))
            }),
            SearchKey::Address(field, needle) => m
                .body
                .is_some_and(|b| content.address_contains(b, field, &lossy(needle))),
            SearchKey::Body(needle) => m
                .body
                .is_some_and(|b| content.body_contains(b, &lossy(needle))),
            SearchKey::Text(needle) => m
                .body
                .is_some_and(|b| content.text_contains(b, &lossy(needle))),
            SearchKey::SentBefore(d) => sent_day(m, content).is_some_and(|s| s < *d),
            SearchKey::SentOn(d) => sent_day(m, content).is_some_and(|s| s == *d),
            SearchKey::SentSince(d) => sent_day(m, content).is_some_and(|s| s >= *d),
        }
    }
}

fn lossy<'s>(b: &'s [u8]) -> Cow<'s, str> {
    String::from_utf8_lossy(b)
}

fn day_of(secs: i64) -> i64 {
    secs.div_euclid(86400)
}

fn sent_day(m: &MessageContext<'_>, content: &impl ContentMatcher) -> Option<i64> {
    // RFC 3501 compares the Date: header's date disregarding time and zone.
    let b = m.body?;
    // Without a usable Date: header the sent date is the epoch, as Dovecot takes it.
    Some(content.sent_date(b).map_or(0, day_of))
}

/// The flag bit of keyword `k` in `keywords` (case-insensitive), if the mailbox knows it.
pub fn keyword_bit(keywords: &[String], k: &[u8]) -> Option<u64> {
    let i = keywords
        .iter()
        .position(|w| w.as_bytes().eq_ignore_ascii_case(k))?;
    if i >= 56 {
        return None;
    }
    Some(1u64 << (8 + i))
}

/// Parses one `search-key` at the cursor.
pub(crate) fn parse_key<'a>(c: &mut Cursor<'a>, depth: u32) -> LexResult<SearchKey<'a>> {
    if depth > MAX_DEPTH {
        return Err("Search criteria nested too deeply");
    }
    if c.eat(b'(') {
        let mut keys = vec![parse_key(c, depth + 1)?];
        while c.eat(b' ') {
            keys.push(parse_key(c, depth + 1)?);
        }
        c.expect(b')', "Missing ) in search criteria")?;
        return Ok(if keys.len() == 1 {
            keys.pop().unwrap_or(SearchKey::All)
        } else {
            SearchKey::And(keys)
        });
    }
    if c.peek() == Some(b'$') {
        let start = c.pos();
        c.eat(b'$');
        return SequenceSet::parse(c.since(start))
            .map(SearchKey::Seq)
            .ok_or("Invalid sequence set");
    }
    if matches!(c.peek(), Some(b'0'..=b'9') | Some(b'*')) {
        let raw = c.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'));
        return SequenceSet::parse(raw)
            .map(SearchKey::Seq)
            .ok_or("Invalid sequence set");
    }
    let word = c.atom()?;
    let upper = word.to_ascii_uppercase();
    let key = match upper.as_slice() {
        b"ALL" => SearchKey::All,
        b"ANSWERED" => SearchKey::Answered,
        b"DELETED" => SearchKey::Deleted,
        b"DRAFT" => SearchKey::Draft,
        b"FLAGGED" => SearchKey::Flagged,
        b"NEW" => SearchKey::New,
        b"OLD" => SearchKey::Old,
        b"RECENT" => SearchKey::Recent,
        b"SEEN" => SearchKey::Seen,
        b"UNANSWERED" => SearchKey::Unanswered,
        b"UNDELETED" => SearchKey::Undeleted,
        b"UNDRAFT" => SearchKey::Undraft,
        b"UNFLAGGED" => SearchKey::Unflagged,
        b"UNSEEN" => SearchKey::Unseen,
        b"KEYWORD" => {
            c.sp()?;
            SearchKey::Keyword(c.atom()?)
        }
        b"UNKEYWORD" => {
            c.sp()?;
            SearchKey::Unkeyword(c.atom()?)
        }
        b"BCC" | b"CC" | b"FROM" | b"TO" => {
            c.sp()?;
            let field = match upper.as_slice() {
                b"BCC" => "Bcc",
                b"CC" => "Cc",
                b"FROM" => "From",
                _ => "To",
            };
            SearchKey::Address(field, c.astring()?)
        }
        b"SUBJECT" => {
            c.sp()?;
            SearchKey::Header(Cow::Borrowed(b"Subject"), c.astring()?)
        }
        b"HEADER" => {
            c.sp()?;
            let field = c.astring()?;
            c.sp()?;
            SearchKey::Header(field, c.astring()?)
        }
        b"BODY" => {
            c.sp()?;
            SearchKey::Body(c.astring()?)
        }
        b"TEXT" => {
            c.sp()?;
            SearchKey::Text(c.astring()?)
        }
        b"BEFORE" | b"ON" | b"SINCE" | b"SENTBEFORE" | b"SENTON" | b"SENTSINCE" => {
            c.sp()?;
            let d = c.date()?;
            match upper.as_slice() {
                b"BEFORE" => SearchKey::Before(d),
                b"ON" => SearchKey::On(d),
                b"SINCE" => SearchKey::Since(d),
                b"SENTBEFORE" => SearchKey::SentBefore(d),
                b"SENTON" => SearchKey::SentOn(d),
                _ => SearchKey::SentSince(d),
            }
        }
        b"LARGER" => {
            c.sp()?;
            SearchKey::Larger(c.number()?)
        }
        b"SMALLER" => {
            c.sp()?;
            SearchKey::Smaller(c.number()?)
        }
        b"UID" => {
            c.sp()?;
            let raw = if c.peek() == Some(b'$') {
                let start = c.pos();
                c.eat(b'$');
                c.since(start)
            } else {
                c.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'))
            };
            SearchKey::Uid(SequenceSet::parse(raw).ok_or("Invalid UID set")?)
        }
        b"NOT" => {
            c.sp()?;
            SearchKey::Not(Box::new(parse_key(c, depth + 1)?))
        }
        b"OR" => {
            c.sp()?;
            let a = parse_key(c, depth + 1)?;
            c.sp()?;
            let b = parse_key(c, depth + 1)?;
            SearchKey::Or(Box::new(a), Box::new(b))
        }
        b"MODSEQ" => {
            c.sp()?;
            // Optional `entry-name SP entry-type-req` before the value; we keep no per-flag
            // modseqs, so the entry is accepted and ignored.
            if c.peek() == Some(b'"') {
                c.quoted()?;
                c.sp()?;
                let t = c.atom()?;
                if !(t.eq_ignore_ascii_case(b"priv")
                    || t.eq_ignore_ascii_case(b"shared")
                    || t.eq_ignore_ascii_case(b"all"))
                {
                    return Err("Invalid MODSEQ entry type");
                }
                c.sp()?;
            }
            SearchKey::ModSeq(c.number64()?)
        }
        _ => return Err("Unknown search key"),
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;
    impl ContentMatcher for Plain {
        fn header_contains(&self, msg: &[u8], field: &str, needle: &str) -> bool {
            let text = String::from_utf8_lossy(msg).to_ascii_lowercase();
            text.lines().any(|l| {
                l.starts_with(&format!("{}:", field.to_ascii_lowercase()))
                    && l.contains(&needle.to_ascii_lowercase())
            })
        }
        fn body_contains(&self, msg: &[u8], needle: &str) -> bool {
            String::from_utf8_lossy(msg).contains(needle)
        }
        fn text_contains(&self, msg: &[u8], needle: &str) -> bool {
            String::from_utf8_lossy(msg).contains(needle)
        }
        fn sent_date(&self, _msg: &[u8]) -> Option<i64> {
            None
        }
    }

    fn parse(s: &str) -> SearchKey<'_> {
        let mut c = Cursor::new(s.as_bytes());
        parse_key(&mut c, 0).unwrap()
    }

    fn ctx<'m>(flags: u64, body: Option<&'m [u8]>, kw: &'m [String]) -> MessageContext<'m> {
        MessageContext {
            seq: 2,
            uid: 10,
            flags,
            recent: true,
            modseq: 5,
            size: 100,
            // Noon UTC: the same local day in every zone within ±12 h.
            internal_date: 86400 * 31 + 43200,
            max_seq: 3,
            max_uid: 12,
            keywords: kw,
            body,
            saved: &[10],
        }
    }

    #[test]
    fn parses_keys() {
        assert_eq!(parse("ALL"), SearchKey::All);
        assert_eq!(
            parse("OR SEEN (FLAGGED UNDELETED)"),
            SearchKey::Or(
                Box::new(SearchKey::Seen),
                Box::new(SearchKey::And(vec![
                    SearchKey::Flagged,
                    SearchKey::Undeleted
                ]))
            )
        );
        assert_eq!(parse("since 1-Feb-1970"), SearchKey::Since(31));
        assert_eq!(parse("SINCE \"1-Feb-1970\""), SearchKey::Since(31));
        assert!(matches!(parse("2:*"), SearchKey::Seq(_)));
        assert!(matches!(parse("UID 1,3"), SearchKey::Uid(_)));
        assert_eq!(
            parse("MODSEQ \"/flags/\\\\draft\" all 620162338"),
            SearchKey::ModSeq(620162338)
        );
        let mut c = Cursor::new(b"FOO");
        assert!(parse_key(&mut c, 0).is_err());
        let deep = "NOT ".repeat(100) + "ALL";
        let mut c = Cursor::new(deep.as_bytes());
        assert!(parse_key(&mut c, 0).is_err());
    }

    #[test]
    fn evaluates_flags_and_sets() {
        let kw = vec!["$Junk".to_string()];
        let m = ctx(fl::SEEN | (1 << 8), None, &kw);
        assert!(parse("SEEN").matches(&m, &Plain));
        assert!(!parse("UNSEEN").matches(&m, &Plain));
        assert!(!parse("NEW").matches(&m, &Plain));
        assert!(parse("RECENT").matches(&m, &Plain));
        assert!(parse("KEYWORD $junk").matches(&m, &Plain));
        assert!(parse("UNKEYWORD other").matches(&m, &Plain));
        assert!(parse("UID 10:*").matches(&m, &Plain));
        assert!(parse("2,3").matches(&m, &Plain));
        assert!(!parse("3:*").matches(&m, &Plain));
        assert!(parse("LARGER 99 SMALLER 101").matches(&m, &Plain));
        assert!(parse("ON 1-Feb-1970").matches(&m, &Plain));
        assert!(parse("BEFORE 2-Feb-1970").matches(&m, &Plain));
        assert!(!parse("SINCE 2-Feb-1970").matches(&m, &Plain));
        assert!(parse("NOT MODSEQ 6").matches(&m, &Plain));
        // `$` is the saved result, by UID, whatever the key.
        assert!(parse("$").matches(&m, &Plain));
        assert!(parse("UID $").matches(&m, &Plain));
        assert!(!parse("NOT $").matches(&m, &Plain));
    }

    #[test]
    fn evaluates_content() {
        let kw = vec![];
        let msg = b"Subject: Hello there\r\n\r\nbody words";
        let m = ctx(0, Some(msg), &kw);
        let k = parse("SUBJECT hello");
        assert!(k.needs_body());
        assert!(k.matches(&m, &Plain));
        assert!(!parse("SUBJECT bye").matches(&m, &Plain));
        assert!(parse("BODY words").matches(&m, &Plain));
        // Without a Date: header the sent date is the epoch (Dovecot).
        assert!(parse("SENTON 1-Jan-1970").matches(&m, &Plain));
        assert!(parse("SENTBEFORE 1-Feb-1970").matches(&m, &Plain));
    }
}

//! Writing IMAP response syntax: atoms vs quoted strings vs literals, flag lists, dates.

use std::io::Write;

use super::lexer::{civil_from_days, is_astring_char, MONTHS};
use super::store::flags;

/// Appends a number.
pub fn number(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Whether `s` can be sent as a quoted string (`utf8`: 8-bit UTF-8 allowed, IMAP4rev2).
fn quotable(s: &[u8], utf8: bool) -> bool {
    s.len() <= 1024
        && s.iter().all(|&c| c != 0 && c != b'\r' && c != b'\n')
        && (s.is_ascii() || (utf8 && std::str::from_utf8(s).is_ok()))
}

/// Appends `s` as a `string`: quoted when possible, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if quotable(s, utf8) {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `s` as an `astring`: a bare atom when possible.
pub fn astring(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if !s.is_empty()
        && s.iter().all(|&c| is_astring_char(c) && c != b']')
        && !s.eq_ignore_ascii_case(b"NIL")
    {
        out.extend_from_slice(s);
    } else {
        string(out, s, utf8);
    }
}

/// Appends `s` as an `nstring` (`NIL` for `None`).
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends a synchronising-style literal `{n}\r\n` + bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'{');
    number(out, s.len());
    out.extend_from_slice(b"}\r\n");
    let start = out.len();
    out.extend_from_slice(s);
    // A literal may not carry NUL (RFC 3501 CHAR8): like Dovecot, send 0x80 in its place
    // (BINARY[] gives the real octets as a literal8).
    for b in &mut out[start..] {
        if *b == 0 {
            *b = 0x80;
        }
    }
}

/// Appends a BINARY value: `~{n}` with the octets as they are when they contain NUL
/// (literal8), else a literal.
pub fn literal8(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        out.extend_from_slice(b"~{");
        number(out, s.len());
        out.extend_from_slice(b"}\r\n");
        out.extend_from_slice(s);
    } else {
        literal(out, s);
    }
}

/// Appends a flag list `(\Seen $Label)` from flag bits and the mailbox keyword table.
pub fn flag_list(out: &mut Vec<u8>, bits: u64, keywords: &[String], recent: bool) {
    out.push(b'(');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    for (bit, name) in flags::NAMES {
        if bits & bit != 0 {
            sep(out);
            out.extend_from_slice(name.as_bytes());
        }
    }
    if recent {
        sep(out);
        out.extend_from_slice(b"\\Recent");
    }
    for (i, k) in keywords.iter().enumerate().take(flags::MAX_KEYWORDS) {
        if bits & (1u64 << (flags::KEYWORD_SHIFT as usize + i)) != 0 {
            sep(out);
            out.extend_from_slice(k.as_bytes());
        }
    }
    out.push(b')');
}

/// Appends the flags a mailbox knows: system flags then its keywords (for `* FLAGS`).
pub fn mailbox_flags(out: &mut Vec<u8>, keywords: &[String], with_wildcard: bool) {
    out.push(b'(');
    let mut parts: Vec<&str> = flags::NAMES.iter().map(|(_, n)| *n).collect();
    parts.extend(keywords.iter().map(String::as_str));
    if with_wildcard {
        parts.push("\\*");
    }
    out.extend_from_slice(parts.join(" ").as_bytes());
    out.push(b')');
}

/// Appends a `date-time` (`"07-Jul-1996 09:44:25 +0300"`, day zero-padded) in the server's
/// local zone, as Dovecot shows INTERNALDATE.
pub fn date_time(out: &mut Vec<u8>, secs: i64) {
    date_time_in(out, secs, super::localtime::utc_offset(secs));
}

/// Appends a `date-time` for Unix time `secs` shown in the zone `offset` seconds east of UTC.
pub fn date_time_in(out: &mut Vec<u8>, secs: i64, offset: i32) {
    let local = secs + i64::from(offset);
    let days = local.div_euclid(86400);
    let rem = local.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS
        .get((m as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("Jan");
    let sign = if offset < 0 { '-' } else { '+' };
    let zone = offset.unsigned_abs() / 60;
    let _ = write!(
        out,
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}\"",
        d,
        month,
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        sign,
        zone / 60,
        zone % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn string_forms() {
        assert_eq!(s(|o| astring(o, b"INBOX", false)), "INBOX");
        assert_eq!(s(|o| astring(o, b"a b", false)), "\"a b\"");
        assert_eq!(s(|o| astring(o, b"nil", false)), "\"nil\"");
        assert_eq!(s(|o| astring(o, b"", false)), "\"\"");
        assert_eq!(s(|o| string(o, b"a\"\\", false)), "\"a\\\"\\\\\"");
        assert_eq!(s(|o| string(o, b"a\r\nb", false)), "{4}\r\na\r\nb");
        assert_eq!(s(|o| string(o, "é".as_bytes(), false)), "{2}\r\né");
        assert_eq!(s(|o| string(o, "é".as_bytes(), true)), "\"é\"");
        assert_eq!(s(|o| nstring(o, None, false)), "NIL");
        assert_eq!(s(|o| literal8(o, b"a\0")), "~{2}\r\na\0");
    }

    #[test]
    fn flags_and_dates() {
        let kw = vec!["$Work".to_string()];
        assert_eq!(
            s(|o| flag_list(o, flags::SEEN | flags::DELETED | 1 << 8, &kw, true)),
            "(\\Deleted \\Seen \\Recent $Work)"
        );
        assert_eq!(s(|o| flag_list(o, 0, &kw, false)), "()");
        let mut o = Vec::new();
        literal(&mut o, b"a\0b");
        assert_eq!(o, b"{3}\r\na\x80b");
        let mut o = Vec::new();
        literal8(&mut o, b"a\0b");
        assert_eq!(o, b"~{3}\r\na\0b");
        assert_eq!(
            s(|o| mailbox_flags(o, &kw, true)),
            "(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)"
        );
        assert_eq!(
            s(|o| date_time_in(o, 0, 0)),
            "\"01-Jan-1970 00:00:00 +0000\""
        );
        assert_eq!(
            s(|o| date_time_in(o, 837_596_665, 0)),
            "\"17-Jul-1996 09:44:25 +0000\""
        );
        assert_eq!(
            s(|o| date_time_in(o, 837_596_665, -7 * 3600)),
            "\"17-Jul-1996 02:44:25 -0700\""
        );
        assert_eq!(
            s(|o| date_time_in(o, 0, 5 * 3600 + 1800)),
            "\"01-Jan-1970 05:30:00 +0530\""
        );
    }
}

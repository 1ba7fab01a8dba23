//! IMAP tokens (RFC 3501 §9 / RFC 9051 §9): atoms, astrings, quoted strings, literals,
//! numbers and dates, read by a cursor over one complete command (zero-copy where possible).

use std::borrow::Cow;

/// Result of reading one token: the error is the reason sent in the BAD response.
pub(crate) type LexResult<T> = Result<T, &'static str>;

/// Whether `c` is an ATOM-CHAR: any CHAR except atom-specials (`( ) { SP CTL % * " \ ]`).
pub(crate) fn is_atom_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// Whether `c` is an ASTRING-CHAR (ATOM-CHAR or `]`).
pub(crate) fn is_astring_char(c: u8) -> bool {
    is_atom_char(c) || c == b']'
}

/// Whether `c` is a list-char (ASTRING-CHAR or a list wildcard).
pub(crate) fn is_list_char(c: u8) -> bool {
    is_astring_char(c) || c == b'%' || c == b'*'
}

/// Whether `c` may start a tag (any ASTRING-CHAR except `+`).
pub(crate) fn is_tag_char(c: u8) -> bool {
    is_astring_char(c) && c != b'+'
}

/// A cursor over the bytes of one complete command (its extent is known beforehand, so
/// running out of input here is a syntax error, not `Incomplete`).
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Starts reading `buf` at the beginning.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// The next byte, if any.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consumes `c` if it is next.
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Requires `c` next.
    pub(crate) fn expect(&mut self, c: u8, why: &'static str) -> LexResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(why)
        }
    }

    /// Requires exactly one space.
    pub(crate) fn sp(&mut self) -> LexResult<()> {
        self.expect(b' ', "Missing space between arguments")
    }

    /// Whether the command line ends here (CRLF, or a bare LF).
    pub(crate) fn at_end(&self) -> bool {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        rest == b"\r\n" || rest == b"\n"
    }

    /// Requires the end of the command line.
    pub(crate) fn end(&mut self) -> LexResult<()> {
        if self.at_end() {
            self.pos = self.buf.len();
            Ok(())
        } else {
            Err("Unexpected extra arguments")
        }
    }

    /// The read position.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes from position `from` up to the read position.
    pub(crate) fn since(&self, from: usize) -> &'a [u8] {
        self.buf.get(from..self.pos).unwrap_or_default()
    }

    /// Bytes satisfying `f`, possibly none.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.pos < self.buf.len() && f(self.buf[self.pos]) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// `atom`: one or more ATOM-CHARs.
    pub(crate) fn atom(&mut self) -> LexResult<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            Err("Expected an atom")
        } else {
            Ok(a)
        }
    }

    /// Consumes `kw` (case-insensitive) if it is next and not followed by more atom chars.
    pub(crate) fn keyword(&mut self, kw: &[u8]) -> bool {
        let end = self.pos + kw.len();
        match self.buf.get(self.pos..end) {
            Some(s) if s.eq_ignore_ascii_case(kw) => {
                if self.buf.get(end).copied().is_some_and(is_atom_char) {
                    return false;
                }
                self.pos = end;
                true
            }
            _ => false,
        }
    }

    /// `astring`: 1*ASTRING-CHAR or a string.
    pub(crate) fn astring(&mut self) -> LexResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"') | Some(b'{') | Some(b'~') if self.starts_string() => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    Err("Expected a string")
                } else {
                    Ok(Cow::Borrowed(a))
                }
            }
        }
    }

    fn starts_string(&self) -> bool {
        match self.peek() {
            Some(b'"') | Some(b'{') => true,
            Some(b'~') => self.buf.get(self.pos + 1) == Some(&b'{'),
            _ => false,
        }
    }

    /// `list-mailbox`: 1*list-char or a string.
    pub(crate) fn list_mailbox(&mut self) -> LexResult<Cow<'a, [u8]>> {
        if self.starts_string() {
            return self.string();
        }
        let a = self.take_while(is_list_char);
        if a.is_empty() {
            Err("Expected a mailbox pattern")
        } else {
            Ok(Cow::Borrowed(a))
        }
    }

    /// `string`: quoted or literal.
    pub(crate) fn string(&mut self) -> LexResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false).map(Cow::Borrowed),
            _ => Err("Expected a string"),
        }
    }

    /// `nstring`: `NIL` or a string.
    pub(crate) fn nstring(&mut self) -> LexResult<Option<Cow<'a, [u8]>>> {
        if self.keyword(b"NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// A quoted string; escapes are resolved (borrowed when there are none). 8-bit bytes are
    /// accepted (UTF-8 is legal in IMAP4rev2 quoted strings).
    pub(crate) fn quoted(&mut self) -> LexResult<Cow<'a, [u8]>> {
        self.expect(b'"', "Expected a quoted string")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') | Some(0) => {
                    return Err("Unterminated quoted string")
                }
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    match self.buf.get(self.pos + 1) {
                        Some(b'"') | Some(b'\\') => self.pos += 2,
                        _ => return Err("Invalid escape in quoted string"),
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.buf[start..self.pos];
        self.pos += 1;
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut it = raw.iter();
        while let Some(&c) = it.next() {
            if c == b'\\' {
                if let Some(&n) = it.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Ok(Cow::Owned(out))
    }

    /// A literal `{n}` / `{n+}` (or, with `allow8`, a `~{n}` literal8) and its bytes.
    pub(crate) fn literal(&mut self, allow8: bool) -> LexResult<&'a [u8]> {
        if allow8 {
            self.eat(b'~');
        }
        self.expect(b'{', "Expected a literal")?;
        let digits = self.take_while(|c| c.is_ascii_digit());
        let size = parse_u64(digits).ok_or("Invalid literal size")?;
        self.eat(b'+');
        self.expect(b'}', "Invalid literal")?;
        self.eat(b'\r');
        self.expect(b'\n', "Missing CRLF after literal size")?;
        let size = usize::try_from(size).map_err(|_| "Literal too large")?;
        let end = self.pos.checked_add(size).ok_or("Literal too large")?;
        let data = self.buf.get(self.pos..end).ok_or("Truncated literal")?;
        self.pos = end;
        Ok(data)
    }

    /// `number` (fits in u32).
    pub(crate) fn number(&mut self) -> LexResult<u32> {
        let digits = self.take_while(|c| c.is_ascii_digit());
        parse_u64(digits)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("Expected a number")
    }

    /// `nz-number`.
    pub(crate) fn nz_number(&mut self) -> LexResult<u32> {
        match self.number()? {
            0 => Err("Expected a non-zero number"),
            n => Ok(n),
        }
    }

    /// `mod-sequence-value` / `number64` (up to 2^63 - 1).
    pub(crate) fn number64(&mut self) -> LexResult<u64> {
        let digits = self.take_while(|c| c.is_ascii_digit());
        parse_u64(digits)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or("Expected a number")
    }

    /// A search `date`: `date-text` or `"date-text"`; returns days since the Unix epoch.
    pub(crate) fn date(&mut self) -> LexResult<i64> {
        let quoted = self.eat(b'"');
        let text = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'-');
        if quoted {
            self.expect(b'"', "Invalid date")?;
        }
        parse_date_text(text).ok_or("Invalid date")
    }

    /// A `date-time` (`"17-Jul-1996 02:44:25 -0700"`); returns Unix seconds.
    pub(crate) fn date_time(&mut self) -> LexResult<i64> {
        let s = self.quoted()?;
        parse_date_time(&s).ok_or("Invalid date-time")
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in digits {
        n = n
            .checked_mul(10)?
            .checked_add(u64::from(c.checked_sub(b'0')?))?;
    }
    Some(n)
}

/// Month names as IMAP writes them.
pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month(s: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |n, &c| {
        n.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Civil date (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `date-text` (`1-Feb-1994`) to days since the epoch.
pub(crate) fn parse_date_text(s: &[u8]) -> Option<i64> {
    let mut it = s.split(|&c| c == b'-');
    let d = it.next()?;
    let m = it.next()?;
    let y = it.next()?;
    if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let (d, m, y) = (digits(d)?, month(m)?, i64::from(digits(y)?));
    if d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `date-time` contents (`17-Jul-1996 02:44:25 -0700`, day possibly space-padded) to Unix secs.
pub(crate) fn parse_date_time(s: &[u8]) -> Option<i64> {
    let s = s.strip_prefix(b" ").unwrap_or(s);
    let mut parts = s.split(|&c| c == b' ');
    let date = parts.next()?;
    let time = parts.next()?;
    let zone = parts.next()?;
    if parts.next().is_some() || time.len() != 8 || zone.len() != 5 {
        return None;
    }
    let days = parse_date_text(date)?;
    let hh = digits(time.get(0..2)?)?;
    let mm = digits(time.get(3..5)?)?;
    let ss = digits(time.get(6..8)?)?;
    if time[2] != b':' || time[5] != b':' || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh = digits(&zone[1..3])?;
    let zm = digits(&zone[3..5])?;
    if zm > 59 {
        return None;
    }
    let offset = sign * i64::from(zh * 3600 + zm * 60);
    Some(days * 86400 + i64::from(hh * 3600 + mm * 60 + ss) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut c = Cursor::new(b"\"a\\\"b\" {3}\r\nxyz foo]\r\n");
        assert_eq!(c.astring().unwrap().as_ref(), b"a\"b");
        c.sp().unwrap();
        assert_eq!(c.astring().unwrap().as_ref(), b"xyz");
        c.sp().unwrap();
        assert_eq!(c.astring().unwrap().as_ref(), b"foo]");
        c.end().unwrap();
    }

    #[test]
    fn quoted_errors() {
        assert!(Cursor::new(b"\"abc\r\n").quoted().is_err());
        assert!(Cursor::new(b"\"a\\b\"\r\n").quoted().is_err());
        assert!(matches!(
            Cursor::new(b"\"plain\"").quoted(),
            Ok(Cow::Borrowed(b"plain"))
        ));
    }

    #[test]
    fn literal_truncated() {
        assert!(Cursor::new(b"{5}\r\nab").literal(false).is_err());
        assert_eq!(Cursor::new(b"{2+}\r\nab").literal(false).unwrap(), b"ab");
        assert_eq!(Cursor::new(b"~{2}\r\na\0").literal(true).unwrap(), b"a\0");
    }

    #[test]
    fn keywords_need_delimiter() {
        let mut c = Cursor::new(b"FLAGSX");
        assert!(!c.keyword(b"FLAGS"));
        let mut c = Cursor::new(b"flags (");
        assert!(c.keyword(b"FLAGS"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date_text(b"1-Jan-1970"), Some(0));
        assert_eq!(parse_date_text(b"01-Feb-1970"), Some(31));
        assert_eq!(parse_date_text(b"30-Feb-1970"), None);
        assert_eq!(parse_date_text(b"1-Foo-1970"), None);
        assert_eq!(parse_date_time(b" 1-Jan-1970 01:00:00 +0100"), Some(0));
        assert_eq!(
            parse_date_time(b"17-Jul-1996 02:44:25 -0700"),
            Some(837_596_665)
        );
        assert_eq!(parse_date_time(b"17-Jul-1996 02:44:25"), None);
        for d in [-1000, 0, 59, 10_000, 20_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}

//! Envelope address syntax (RFC 5321 §4.1.2, internationalised per RFC 6531 §3.3) and the
//! relay-safety checks that run before any directory lookup.
//!
//! Parsing borrows from the command line: a [`Path`] holds `&str` slices of it. The grammar is
//! followed exactly, with two deliberate tolerances the session then judges: a mailbox without
//! a domain (needed for `<Postmaster>`, refused otherwise) and source routes (recognised so they
//! can be refused on RCPT and ignored on MAIL, RFC 5321 Appendix C).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path including `<` and `>` (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// Why a path failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The path does not start with `<`.
    #[error("path must be enclosed in <>")]
    MissingOpenBracket,
    /// The path does not end with `>`.
    #[error("missing closing >")]
    MissingCloseBracket,
    /// The source route (`@a,@b:`) is malformed.
    #[error("malformed source route")]
    BadRoute,
    /// The local part is neither a dot-string nor a quoted string.
    #[error("malformed local part")]
    BadLocalPart,
    /// A quoted local part is unterminated or contains a forbidden character.
    #[error("malformed quoted string")]
    BadQuotedString,
    /// The domain is not a valid domain name.
    #[error("malformed domain")]
    BadDomain,
    /// The address literal (`[...]`) is not a valid IPv4, IPv6 or general literal.
    #[error("malformed address literal")]
    BadAddressLiteral,
    /// The local part is longer than 64 octets.
    #[error("local part too long")]
    LocalPartTooLong,
    /// The domain is longer than 255 octets.
    #[error("domain too long")]
    DomainTooLong,
    /// The whole path is longer than 256 octets.
    #[error("path too long")]
    PathTooLong,
}

/// The local part of a mailbox as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPart<'a> {
    /// A dot-string such as `john.doe`.
    Dot(&'a str),
    /// The raw content between the quotes of a quoted string, escapes still in place.
    Quoted(&'a str),
}

impl<'a> LocalPart<'a> {
    /// The local part's value: quoted strings lose their quotes and backslash escapes.
    pub fn value(&self) -> Cow<'a, str> {
        match *self {
            LocalPart::Dot(s) => Cow::Borrowed(s),
            LocalPart::Quoted(s) if !s.contains('\\') => Cow::Borrowed(s),
            LocalPart::Quoted(s) => {
                let mut v = String::with_capacity(s.len());
                let mut escaped = false;
                for c in s.chars() {
                    if escaped || c != '\\' {
                        v.push(c);
                        escaped = false;
                    } else {
                        escaped = true;
                    }
                }
                Cow::Owned(v)
            }
        }
    }
}

/// The domain of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain<'a> {
    /// A domain name (ASCII labels or RFC 6531 U-labels).
    Name(&'a str),
    /// An address literal, brackets included: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
    Literal(&'a str),
}

impl Domain<'_> {
    /// The domain as written.
    pub fn as_str(&self) -> &str {
        match *self {
            Domain::Name(s) | Domain::Literal(s) => s,
        }
    }
}

/// `local-part [@ domain]`; the domain is only absent in `<Postmaster>` style paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox<'a> {
    /// The local part.
    pub local: LocalPart<'a>,
    /// The domain, if the path had one.
    pub domain: Option<Domain<'a>>,
}

impl Mailbox<'_> {
    /// Canonical `local@domain` form handed to the [`Directory`](super::session::Directory)
    /// and recorded in envelopes: quotes only where the local part needs them, domain names
    /// lower-cased (ASCII only; U-labels are kept as given).
    pub fn canonical(&self) -> String {
        let local = self.local.value();
        let mut s = String::with_capacity(
            local.len() + 2 + self.domain.map_or(0, |d| d.as_str().len() + 1),
        );
        if is_dot_string(&local) {
            s.push_str(&local);
        } else {
            s.push('"');
            for c in local.chars() {
                if c == '"' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
        }
        match self.domain {
            Some(Domain::Name(d)) => {
                s.push('@');
                s.extend(d.chars().map(|c| c.to_ascii_lowercase()));
            }
            Some(Domain::Literal(d)) => {
                s.push('@');
                s.push_str(d);
            }
            None => {}
        }
        s
    }

    /// True when local part and domain are pure ASCII (otherwise SMTPUTF8 is required).
    pub fn is_ascii(&self) -> bool {
        let local = match self.local {
            LocalPart::Dot(s) | LocalPart::Quoted(s) => s,
        };
        local.is_ascii() && self.domain.is_none_or(|d| d.as_str().is_ascii())
    }
}

/// A non-null path: optional source route and the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<'a> {
    /// The source route (`@a,@b`) without its trailing `:`, if one was given.
    pub route: Option<&'a str>,
    /// The mailbox.
    pub mailbox: Mailbox<'a>,
}

/// A reverse-path (MAIL FROM) or forward-path (RCPT TO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversePath<'a> {
    /// `<>`, the null sender.
    Null,
    /// A real path.
    Path(Path<'a>),
}

/// Ways an address can hide routing from the relay check (RFC 5321 §3.6, Appendix C and F.2;
/// the classic open-relay tricks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoutingHazard {
    /// `<@a,@b:user@c>`.
    #[error("source routes are not accepted")]
    SourceRoute,
    /// `user%other@local` ("percent hack").
    #[error("% in local part is not accepted")]
    Percent,
    /// `host!user@local` (UUCP bang path).
    #[error("! in local part is not accepted")]
    Bang,
    /// `"user@other"@local` and friends.
    #[error("quoted local part with routing characters is not accepted")]
    QuotedRouting,
    /// `<user>` with no domain.
    #[error("address must contain a domain")]
    NoDomain,
}

/// Returns why `path` could route mail somewhere other than its domain, if it could.
pub fn routing_hazard(path: &Path<'_>) -> Option<RoutingHazard> {
    if path.route.is_some() {
        return Some(RoutingHazard::SourceRoute);
    }
    match path.mailbox.local {
        LocalPart::Dot(s) if s.contains('%') => return Some(RoutingHazard::Percent),
        LocalPart::Dot(s) if s.contains('!') => return Some(RoutingHazard::Bang),
        LocalPart::Quoted(s) if s.contains(['@', '%', '!']) => {
            return Some(RoutingHazard::QuotedRouting)
        }
        _ => {}
    }
    if path.mailbox.domain.is_none() {
        return Some(RoutingHazard::NoDomain);
    }
    None
}

/// Parses `"<" [A-d-l ":"] Mailbox ">"` or `"<>"` at the start of `input`; returns the path and
/// the rest of the input after `>`.
pub fn parse_path(input: &str) -> Result<(ReversePath<'_>, &str), AddressError> {
    let b = input.as_bytes();
    if b.first() != Some(&b'<') {
        return Err(AddressError::MissingOpenBracket);
    }
    let mut i = 1;
    if b.get(1) == Some(&b'>') {
        return Ok((ReversePath::Null, &input[2..]));
    }
    let route = if b.get(i) == Some(&b'@') {
        let start = i;
        loop {
            // At-domain = "@" Domain
            if b.get(i) != Some(&b'@') {
                return Err(AddressError::BadRoute);
            }
            i += 1;
            let end = i + b[i..]
                .iter()
                .position(|&c| c == b',' || c == b':')
                .ok_or(AddressError::BadRoute)?;
            if !is_domain_name(&input[i..end]) {
                return Err(AddressError::BadRoute);
            }
            i = end + 1;
            if b[end] == b':' {
                break Some(&input[start..end]);
            }
        }
    } else {
        None
    };

    let local = if b.get(i) == Some(&b'"') {
        i += 1;
        let content = i;
        loop {
            match b.get(i) {
                None => return Err(AddressError::BadQuotedString),
                Some(b'"') => break,
                Some(b'\\') => match b.get(i + 1) {
                    Some(32..=126) => i += 2,
                    _ => return Err(AddressError::BadQuotedString),
                },
                Some(&c) if c == 32 || c == 33 || (35..=126).contains(&c) || c >= 0x80 => i += 1,
                Some(_) => return Err(AddressError::BadQuotedString),
            }
        }
        let q = &input[content..i];
        i += 1;
        LocalPart::Quoted(q)
    } else {
        let end = i + b[i..]
            .iter()
            .position(|&c| c == b'@' || c == b'>')
            .ok_or(AddressError::MissingCloseBracket)?;
        let s = &input[i..end];
        if !is_dot_string(s) {
            return Err(AddressError::BadLocalPart);
        }
        i = end;
        LocalPart::Dot(s)
    };
    if local_len(&local) > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }

    let domain = match b.get(i) {
        Some(b'@') => {
            i += 1;
            let (d, end) = if b.get(i) == Some(&b'[') {
                let end = i + b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .ok_or(AddressError::BadAddressLiteral)?;
                let lit = &input[i..=end];
                if !is_address_literal(lit) {
                    return Err(AddressError::BadAddressLiteral);
                }
                (Domain::Literal(lit), end + 1)
            } else {
                let end = i + b[i..]
                    .iter()
                    .position(|&c| c == b'>')
                    .ok_or(AddressError::MissingCloseBracket)?;
                let name = &input[i..end];
                if name.len() > MAX_DOMAIN {
                    return Err(AddressError::DomainTooLong);
                }
                if !is_domain_name(name) {
                    return Err(AddressError::BadDomain);
                }
                (Domain::Name(name), end)
            };
            if d.as_str().len() > MAX_DOMAIN {
                return Err(AddressError::DomainTooLong);
            }
            i = end;
            Some(d)
        }
        Some(b'>') => None,
        _ => return Err(AddressError::MissingCloseBracket),
    };
    if b.get(i) != Some(&b'>') {
        return Err(AddressError::MissingCloseBracket);
    }
    i += 1;
    if i > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    Ok((
        ReversePath::Path(Path {
            route,
            mailbox: Mailbox { local, domain },
        }),
        &input[i..],
    ))
}

fn local_len(l: &LocalPart<'_>) -> usize {
    match *l {
        LocalPart::Dot(s) => s.len(),
        LocalPart::Quoted(s) => s.len(),
    }
}

fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c) || c >= 0x80
}

/// `Dot-string = Atom *("." Atom)` with RFC 6531 UTF-8 atext.
pub fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// `Domain = sub-domain *("." sub-domain)`; sub-domains are LDH labels or U-labels.
pub fn is_domain_name(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_DOMAIN {
        return false;
    }
    s.split('.').all(|label| {
        let lb = label.as_bytes();
        if lb.is_empty() || lb.len() > 63 {
            return false;
        }
        if !label.is_ascii() {
            // U-label (RFC 6531): full IDNA validation is the resolver's job; refuse only what
            // can never be part of a label.
            return label.chars().all(|c| {
                c.is_alphanumeric()
                    || c == '-'
                    || !c.is_ascii() && !c.is_whitespace() && !c.is_control()
            });
        }
        let first = lb[0];
        let last = lb[lb.len() - 1];
        first.is_ascii_alphanumeric()
            && last.is_ascii_alphanumeric()
            && lb.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

/// `address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General-address-literal ) "]"`.
fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if inner.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    match inner.split_once(':') {
        Some((tag, addr)) if tag.eq_ignore_ascii_case("IPv6") => addr.parse::<Ipv6Addr>().is_ok(),
        // General-address-literal = Standardized-tag ":" 1*dcontent
        Some((tag, content)) => {
            let tb = tag.as_bytes();
            !tb.is_empty()
                && tb.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && tb[tb.len() - 1].is_ascii_alphanumeric()
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|c| (33..=90).contains(&c) || (94..=126).contains(&c))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Path<'_> {
        match parse_path(s) {
            Ok((ReversePath::Path(p), "")) => p,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn plain_mailbox() {
        let p = path("<John.Doe@Example.ORG>");
        assert_eq!(p.route, None);
        assert_eq!(p.mailbox.local, LocalPart::Dot("John.Doe"));
        assert_eq!(p.mailbox.domain, Some(Domain::Name("Example.ORG")));
        assert_eq!(p.mailbox.canonical(), "John.Doe@example.org");
        assert_eq!(routing_hazard(&p), None);
    }

    #[test]
    fn null_path_and_rest() {
        assert_eq!(
            parse_path("<> SIZE=10").unwrap(),
            (ReversePath::Null, " SIZE=10")
        );
        let (_, rest) = parse_path("<a@b.c> BODY=8BITMIME").unwrap();
        assert_eq!(rest, " BODY=8BITMIME");
    }

    #[test]
    fn quoted_local_parts() {
        let p = path(r#"<"john doe"@example.org>"#);
        assert_eq!(p.mailbox.local, LocalPart::Quoted("john doe"));
        assert_eq!(p.mailbox.canonical(), r#""john doe"@example.org"#);
        // Quotes that were not needed are dropped in the canonical form.
        assert_eq!(
            path(r#"<"john"@example.org>"#).mailbox.canonical(),
            "john@example.org"
        );
        // Escapes and a '>' inside quotes do not end the path.
        let p = path(r#"<"a\"b>c"@example.org>"#);
        assert_eq!(p.mailbox.local.value(), "a\"b>c");
        assert_eq!(p.mailbox.canonical(), r#""a\"b>c"@example.org"#);
        assert_eq!(
            parse_path("<\"abc@x>").unwrap_err(),
            AddressError::BadQuotedString
        );
        assert_eq!(
            parse_path("<\"a\tb\"@x>").unwrap_err(),
            AddressError::BadQuotedString
        );
    }

    #[test]
    fn source_route_is_recognised() {
        let p = path("<@relay.one,@relay.two:user@final.example>");
        assert_eq!(p.route, Some("@relay.one,@relay.two"));
        assert_eq!(p.mailbox.canonical(), "user@final.example");
        assert_eq!(routing_hazard(&p), Some(RoutingHazard::SourceRoute));
        assert_eq!(
            parse_path("<@a,b:user@c>").unwrap_err(),
            AddressError::BadRoute
        );
        assert_eq!(
            parse_path("<@:user@c>").unwrap_err(),
            AddressError::BadRoute
        );
    }

    #[test]
    fn routing_hazards() {
        assert_eq!(
            routing_hazard(&path("<victim%remote.example@local.example>")),
            Some(RoutingHazard::Percent)
        );
        assert_eq!(
            routing_hazard(&path("<remote.example!victim@local.example>")),
            Some(RoutingHazard::Bang)
        );
        assert_eq!(
            routing_hazard(&path(r#"<"victim@remote.example"@local.example>"#)),
            Some(RoutingHazard::QuotedRouting)
        );
        assert_eq!(
            routing_hazard(&path(r#"<"a%b"@local.example>"#)),
            Some(RoutingHazard::QuotedRouting)
        );
        assert_eq!(
            routing_hazard(&path(r#"<"a!b"@local.example>"#)),
            Some(RoutingHazard::QuotedRouting)
        );
        assert_eq!(
            routing_hazard(&path("<user>")),
            Some(RoutingHazard::NoDomain)
        );
        assert_eq!(routing_hazard(&path(r#"<"a b"@local.example>"#)), None);
    }

    #[test]
    fn domains_and_literals() {
        assert_eq!(
            path("<a@[192.0.2.1]>").mailbox.domain,
            Some(Domain::Literal("[192.0.2.1]"))
        );
        assert_eq!(
            path("<a@[IPv6:2001:db8::1]>").mailbox.domain,
            Some(Domain::Literal("[IPv6:2001:db8::1]"))
        );
        assert!(path("<a@[x-tag:abc]>").mailbox.domain.is_some());
        assert_eq!(
            parse_path("<a@[300.1.1.1]>").unwrap_err(),
            AddressError::BadAddressLiteral
        );
        assert_eq!(
            parse_path("<a@[IPv6:zz]>").unwrap_err(),
            AddressError::BadAddressLiteral
        );
        assert_eq!(
            parse_path("<a@-bad.example>").unwrap_err(),
            AddressError::BadDomain
        );
        assert_eq!(
            parse_path("<a@bad..example>").unwrap_err(),
            AddressError::BadDomain
        );
        assert_eq!(
            parse_path("<a@trailing.dot.>").unwrap_err(),
            AddressError::BadDomain
        );
        assert_eq!(
            parse_path("<a@under_score.example>").unwrap_err(),
            AddressError::BadDomain
        );
    }

    #[test]
    fn utf8_addresses() {
        let p = path("<用户@例子.广告>");
        assert!(!p.mailbox.is_ascii());
        assert_eq!(p.mailbox.canonical(), "用户@例子.广告");
        assert!(path("<a@b.example>").mailbox.is_ascii());
    }

    #[test]
    fn malformed_paths() {
        assert_eq!(
            parse_path("a@b.c").unwrap_err(),
            AddressError::MissingOpenBracket
        );
        assert_eq!(
            parse_path("<a@b.c").unwrap_err(),
            AddressError::MissingCloseBracket
        );
        assert_eq!(
            parse_path("<a..b@c.d>").unwrap_err(),
            AddressError::BadLocalPart
        );
        assert_eq!(
            parse_path("<.a@c.d>").unwrap_err(),
            AddressError::BadLocalPart
        );
        assert_eq!(
            parse_path("<a b@c.d>").unwrap_err(),
            AddressError::BadLocalPart
        );
        assert_eq!(parse_path("<@>").unwrap_err(), AddressError::BadRoute);
        assert_eq!(parse_path("<>").unwrap(), (ReversePath::Null, ""));
        let long_local = format!("<{}@x.example>", "a".repeat(65));
        assert_eq!(
            parse_path(&long_local).unwrap_err(),
            AddressError::LocalPartTooLong
        );
        let long_domain = format!("<a@{}.example>", "b.".repeat(130));
        assert_eq!(
            parse_path(&long_domain).unwrap_err(),
            AddressError::DomainTooLong
        );
        let long_path = format!(
            "<{}@{}.{}.{}.{}>",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60),
            "e".repeat(20)
        );
        assert_eq!(
            parse_path(&long_path).unwrap_err(),
            AddressError::PathTooLong
        );
    }
}

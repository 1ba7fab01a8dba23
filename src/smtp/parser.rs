//! Zero-copy SMTP command parser (RFC 5321 §4.1 with the ESMTP extensions ringpost speaks).
//!
//! [`parse`] takes the driver's input buffer and returns either a [`Command`] borrowing from
//! it plus the number of bytes the line used, [`Parsed::Incomplete`] when no full line is
//! buffered yet, or [`Parsed::TooLong`]. Command lines end at LF with an optional preceding CR:
//! accepting bare-LF command lines is harmless (unlike message data, where only CRLF.CRLF ends
//! the message — see `data.rs`) and keeps hand-typed sessions working.

use memchr::memchr;

use super::address::{parse_path, AddressError, Path, ReversePath};

/// Line limit for AUTH commands and SASL responses (RFC 4954 §4: 12288 octets).
pub const SASL_LINE_LIMIT: usize = 12288;

/// Which command a line was (also used for per-command latency histograms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// HELO.
    Helo,
    /// EHLO.
    Ehlo,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA; completes when the final reply after the message is sent.
    Data,
    /// BDAT (RFC 3030); the LAST chunk completes when the message is accepted or refused.
    Bdat,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// VRFY.
    Vrfy,
    /// EXPN.
    Expn,
    /// HELP.
    Help,
    /// STARTTLS (RFC 3207).
    StartTls,
    /// AUTH (RFC 4954), including its SASL exchange.
    Auth,
    /// A line that was not a recognisable command.
    Unknown,
}

impl CommandKind {
    /// Stable lower-case name for metrics (`smtp.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Helo => "helo",
            CommandKind::Ehlo => "ehlo",
            CommandKind::Mail => "mail",
            CommandKind::Rcpt => "rcpt",
            CommandKind::Data => "data",
            CommandKind::Bdat => "bdat",
            CommandKind::Rset => "rset",
            CommandKind::Noop => "noop",
            CommandKind::Quit => "quit",
            CommandKind::Vrfy => "vrfy",
            CommandKind::Expn => "expn",
            CommandKind::Help => "help",
            CommandKind::StartTls => "starttls",
            CommandKind::Auth => "auth",
            CommandKind::Unknown => "unknown",
        }
    }
}

/// The BODY= parameter of MAIL (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// `BODY=7BIT` (also the default).
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (only with BDAT).
    BinaryMime,
}

/// ESMTP parameters of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailParams<'a> {
    /// `SIZE=` (RFC 1870): the client's size estimate.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `AUTH=` (RFC 4954 §5), xtext as sent.
    pub auth: Option<&'a str>,
    /// `RET=` (RFC 3461), tolerated.
    pub ret: Option<&'a str>,
    /// `ENVID=` (RFC 3461), tolerated.
    pub envid: Option<&'a str>,
}

/// ESMTP parameters of RCPT TO (DSN, tolerated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RcptParams<'a> {
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<&'a str>,
    /// `ORCPT=` (RFC 3461).
    pub orcpt: Option<&'a str>,
}

/// A parsed command; slices borrow from the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO domain`.
    Ehlo(&'a str),
    /// `HELO domain`.
    Helo(&'a str),
    /// `MAIL FROM:<path> params`.
    Mail {
        /// The reverse-path.
        from: ReversePath<'a>,
        /// Its parameters.
        params: MailParams<'a>,
    },
    /// `RCPT TO:<path> params`; `<>` is refused by the parser.
    Rcpt {
        /// The forward-path.
        to: Path<'a>,
        /// Its parameters.
        params: RcptParams<'a>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]`.
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(&'a str),
    /// `EXPN string`.
    Expn(&'a str),
    /// `HELP [string]`.
    Help(Option<&'a str>),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// SASL mechanism name as sent (compare case-insensitively).
        mechanism: &'a str,
        /// Base64 initial response, or `=` for an empty one.
        initial: Option<&'a str>,
    },
}

impl Command<'_> {
    /// The command's kind.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Ehlo(_) => CommandKind::Ehlo,
            Command::Helo(_) => CommandKind::Helo,
            Command::Mail { .. } => CommandKind::Mail,
            Command::Rcpt { .. } => CommandKind::Rcpt,
            Command::Data => CommandKind::Data,
            Command::Bdat { .. } => CommandKind::Bdat,
            Command::Rset => CommandKind::Rset,
            Command::Noop => CommandKind::Noop,
            Command::Quit => CommandKind::Quit,
            Command::Vrfy(_) => CommandKind::Vrfy,
            Command::Expn(_) => CommandKind::Expn,
            Command::Help(_) => CommandKind::Help,
            Command::StartTls => CommandKind::StartTls,
            Command::Auth { .. } => CommandKind::Auth,
        }
    }
}

/// Why a complete line is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Empty line, bare CR, NUL or invalid UTF-8: not a command at all (500 5.5.2).
    #[error("malformed command line")]
    Malformed,
    /// The verb is not one we know (500 5.5.1).
    #[error("command not recognized")]
    Unknown,
    /// The verb is known but its arguments are wrong (501 5.5.4).
    #[error("{kind:?}: syntax error: {reason}")]
    Syntax {
        /// The command.
        kind: CommandKind,
        /// What was wrong.
        reason: &'static str,
    },
    /// MAIL/RCPT path does not parse (501 5.1.7 / 501 5.1.3).
    #[error("{kind:?}: {source}")]
    Address {
        /// MAIL or RCPT.
        kind: CommandKind,
        /// The address error.
        #[source]
        source: AddressError,
    },
    /// MAIL/RCPT parameter we do not implement (555 5.5.4, RFC 5321 §4.1.1.11).
    #[error("{kind:?}: parameter not recognized: {keyword}")]
    UnknownParameter {
        /// MAIL or RCPT.
        kind: CommandKind,
        /// The keyword (truncated to 64 octets).
        keyword: String,
    },
    /// BDAT with bad arguments; `size` is known when the chunk can still be skipped.
    #[error("BDAT syntax error")]
    Bdat {
        /// The chunk size if it parsed.
        size: Option<u64>,
    },
}

impl CommandError {
    /// The command the error belongs to (`Unknown` when the verb was not recognised).
    pub fn kind(&self) -> CommandKind {
        match self {
            CommandError::Malformed | CommandError::Unknown => CommandKind::Unknown,
            CommandError::Syntax { kind, .. }
            | CommandError::Address { kind, .. }
            | CommandError::UnknownParameter { kind, .. } => *kind,
            CommandError::Bdat { .. } => CommandKind::Bdat,
        }
    }
}

/// One line split off the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A full line: its content without CR LF, and the octets it used including the terminator.
    Complete {
        /// Line content.
        line: &'a [u8],
        /// Octets consumed.
        len: usize,
    },
    /// No line end yet and the line is still within the limit: wait for more input.
    Incomplete,
    /// The line exceeds the limit. `Some(len)`: the whole line is buffered, skip `len` octets.
    /// `None`: no line end within the limit; drop the input and skip through the next LF.
    TooLong(Option<usize>),
}

/// Splits the first line off `input`; `limit` counts the line including CRLF.
pub fn next_line(input: &[u8], limit: usize) -> Line<'_> {
    let window = &input[..input.len().min(limit)];
    match memchr(b'\n', window) {
        Some(lf) => {
            let content = if lf > 0 && input[lf - 1] == b'\r' {
                &input[..lf - 1]
            } else {
                &input[..lf]
            };
            if content.len() + 2 > limit {
                Line::TooLong(Some(lf + 1))
            } else {
                Line::Complete {
                    line: content,
                    len: lf + 1,
                }
            }
        }
        None if input.len() >= limit => Line::TooLong(None),
        None => Line::Incomplete,
    }
}

/// Result of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A full line was read (`len` octets) and parsed.
    Complete {
        /// The command or why it is invalid.
        command: Result<Command<'a>, CommandError>,
        /// Octets the line used, terminator included.
        len: usize,
    },
    /// More input is needed.
    Incomplete,
    /// The line exceeds the limit; see [`Line::TooLong`].
    TooLong(Option<usize>),
}

/// Parses the first command line in `input`. `max_line` limits command lines (including CRLF);
/// AUTH lines may be up to [`SASL_LINE_LIMIT`] if that is larger.
pub fn parse(input: &[u8], max_line: usize) -> Parsed<'_> {
    let limit = if is_auth_prefix(input) {
        max_line.max(SASL_LINE_LIMIT)
    } else {
        max_line
    };
    match next_line(input, limit) {
        Line::Complete { line, len } => Parsed::Complete {
            command: parse_command(line),
            len,
        },
        Line::Incomplete => Parsed::Incomplete,
        Line::TooLong(len) => Parsed::TooLong(len),
    }
}

fn is_auth_prefix(input: &[u8]) -> bool {
    input.len() >= 5 && input[..4].eq_ignore_ascii_case(b"AUTH") && input[4] == b' '
}

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    if memchr(b'\r', line).is_some() || memchr(0, line).is_some() {
        return Err(CommandError::Malformed);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Malformed)?;
    // Trailing blanks are a common client quirk and carry no meaning.
    let line = line.trim_end_matches([' ', '\t']);
    if line.is_empty() {
        return Err(CommandError::Malformed);
    }
    let (verb, args) = match line.split_once(' ') {
        Some((v, a)) => (v, Some(a)),
        None => (line, None),
    };
    let mut up = [0u8; 8];
    if verb.len() > up.len() {
        return Err(CommandError::Unknown);
    }
    up[..verb.len()].copy_from_slice(verb.as_bytes());
    up.make_ascii_uppercase();
    let syntax = |kind, reason| CommandError::Syntax { kind, reason };
    let no_args = |cmd: Command<'static>| match args {
        None => Ok(cmd),
        Some(_) => Err(syntax(cmd.kind(), "no parameters allowed")),
    };
    match &up[..verb.len()] {
        b"EHLO" => Ok(Command::Ehlo(helo_arg(args, CommandKind::Ehlo)?)),
        b"HELO" => Ok(Command::Helo(helo_arg(args, CommandKind::Helo)?)),
        b"MAIL" => parse_mail(args.unwrap_or("")),
        b"RCPT" => parse_rcpt(args.unwrap_or("")),
        b"DATA" => no_args(Command::Data),
        b"BDAT" => parse_bdat(args.unwrap_or("")),
        b"RSET" => no_args(Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_args(Command::Quit),
        b"STARTTLS" => no_args(Command::StartTls),
        b"VRFY" => match args.map(str::trim) {
            Some(a) if !a.is_empty() => Ok(Command::Vrfy(a)),
            _ => Err(syntax(CommandKind::Vrfy, "argument required")),
        },
        b"EXPN" => match args.map(str::trim) {
            Some(a) if !a.is_empty() => Ok(Command::Expn(a)),
            _ => Err(syntax(CommandKind::Expn, "argument required")),
        },
        b"HELP" => Ok(Command::Help(args.map(str::trim).filter(|a| !a.is_empty()))),
        b"AUTH" => parse_auth(args),
        _ => Err(CommandError::Unknown),
    }
}

fn helo_arg(args: Option<&str>, kind: CommandKind) -> Result<&str, CommandError> {
    // RFC 5321 §4.1.4: the argument must not be used to refuse the session, so any visible
    // token is taken; trailing words (some clients send them) are ignored.
    let arg = args.and_then(|a| a.split([' ', '\t']).find(|t| !t.is_empty()));
    match arg {
        Some(a) if a.len() <= 255 && a.bytes().all(|c| c.is_ascii_graphic() || c >= 0x80) => Ok(a),
        Some(_) => Err(CommandError::Syntax {
            kind,
            reason: "invalid domain",
        }),
        None => Err(CommandError::Syntax {
            kind,
            reason: "domain name required",
        }),
    }
}

/// Strips `prefix` case-insensitively, then blanks (a tolerated quirk: `MAIL FROM: <a@b>`).
fn strip_keyword<'a>(args: &'a str, prefix: &str) -> Option<&'a str> {
    let head = args.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        Some(args[prefix.len()..].trim_start_matches(' '))
    } else {
        None
    }
}

fn parse_mail(args: &str) -> Result<Command<'_>, CommandError> {
    let kind = CommandKind::Mail;
    let rest = strip_keyword(args, "FROM:").ok_or(CommandError::Syntax {
        kind,
        reason: "expected FROM:<address>",
    })?;
    let (from, rest) = parse_path(rest).map_err(|source| CommandError::Address { kind, source })?;
    let mut p = MailParams::default();
    for param in params(rest, kind)? {
        let (key, value) = param?;
        let dup = CommandError::Syntax {
            kind,
            reason: "duplicate parameter",
        };
        if key.eq_ignore_ascii_case("SIZE") {
            let v = value_required(value, kind)?;
            if p.size.is_some() {
                return Err(dup);
            }
            if v.len() > 20 || !v.bytes().all(|c| c.is_ascii_digit()) {
                return Err(CommandError::Syntax {
                    kind,
                    reason: "SIZE must be a number",
                });
            }
            // Saturate: a 21-digit size is just "too big", not a syntax error.
            p.size = Some(v.parse().unwrap_or(u64::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            let v = value_required(value, kind)?;
            if p.body.is_some() {
                return Err(dup);
            }
            p.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                BodyType::SevenBit
            } else if v.eq_ignore_ascii_case("8BITMIME") {
                BodyType::EightBitMime
            } else if v.eq_ignore_ascii_case("BINARYMIME") {
                BodyType::BinaryMime
            } else {
                return Err(CommandError::Syntax {
                    kind,
                    reason: "BODY must be 7BIT, 8BITMIME or BINARYMIME",
                });
            });
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() {
                return Err(CommandError::Syntax {
                    kind,
                    reason: "SMTPUTF8 takes no value",
                });
            }
            if p.smtputf8 {
                return Err(dup);
            }
            p.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("AUTH") {
            set_once(&mut p.auth, value_required(value, kind)?, dup)?;
        } else if key.eq_ignore_ascii_case("RET") {
            set_once(&mut p.ret, value_required(value, kind)?, dup)?;
        } else if key.eq_ignore_ascii_case("ENVID") {
            set_once(&mut p.envid, value_required(value, kind)?, dup)?;
        } else {
            return Err(unknown_param(kind, key));
        }
    }
    Ok(Command::Mail { from, params: p })
}

fn parse_rcpt(args: &str) -> Result<Command<'_>, CommandError> {
    let kind = CommandKind::Rcpt;
    let rest = strip_keyword(args, "TO:").ok_or(CommandError::Syntax {
        kind,
        reason: "expected TO:<address>",
    })?;
    let (to, rest) = parse_path(rest).map_err(|source| CommandError::Address { kind, source })?;
    let ReversePath::Path(to) = to else {
        return Err(CommandError::Syntax {
            kind,
            reason: "null recipient",
        });
    };
    let mut p = RcptParams::default();
    for param in params(rest, kind)? {
        let (key, value) = param?;
        let dup = CommandError::Syntax {
            kind,
            reason: "duplicate parameter",
        };
        if key.eq_ignore_ascii_case("NOTIFY") {
            set_once(&mut p.notify, value_required(value, kind)?, dup)?;
        } else if key.eq_ignore_ascii_case("ORCPT") {
            set_once(&mut p.orcpt, value_required(value, kind)?, dup)?;
        } else {
            return Err(unknown_param(kind, key));
        }
    }
    Ok(Command::Rcpt { to, params: p })
}

fn set_once<'a>(
    slot: &mut Option<&'a str>,
    v: &'a str,
    dup: CommandError,
) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(dup);
    }
    *slot = Some(v);
    Ok(())
}

fn value_required(value: Option<&str>, kind: CommandKind) -> Result<&str, CommandError> {
    value.ok_or(CommandError::Syntax {
        kind,
        reason: "parameter needs a value",
    })
}

fn unknown_param(kind: CommandKind, key: &str) -> CommandError {
    let mut keyword = key.to_owned();
    keyword.truncate(64);
    CommandError::UnknownParameter { kind, keyword }
}

type Param<'a> = Result<(&'a str, Option<&'a str>), CommandError>;

/// Splits `SP esmtp-param *(SP esmtp-param)` after a path (RFC 5321 §4.1.2).
fn params(rest: &str, kind: CommandKind) -> Result<impl Iterator<Item = Param<'_>>, CommandError> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax {
            kind,
            reason: "garbage after address",
        });
    }
    Ok(rest.split(' ').filter(|p| !p.is_empty()).map(move |p| {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
        let kb = key.as_bytes();
        let key_ok = kb.first().is_some_and(u8::is_ascii_alphanumeric)
            && kb.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-');
        // esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed by RFC 6531
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.bytes()
                    .all(|c| (33..=126).contains(&c) && c != b'=' || c >= 0x80)
        });
        if key_ok && value_ok {
            Ok((key, value))
        } else {
            Err(CommandError::Syntax {
                kind,
                reason: "malformed parameter",
            })
        }
    }))
}

fn parse_bdat(args: &str) -> Result<Command<'_>, CommandError> {
    // bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF (RFC 3030 §2)
    let mut words = args.split(' ');
    let size_word = words.next().unwrap_or("");
    if size_word.is_empty()
        || size_word.len() > 20
        || !size_word.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(CommandError::Bdat { size: None });
    }
    let size: u64 = size_word
        .parse()
        .map_err(|_| CommandError::Bdat { size: None })?;
    let last = match (words.next(), words.next()) {
        (None, None) => false,
        (Some(w), None) if w.eq_ignore_ascii_case("LAST") => true,
        _ => return Err(CommandError::Bdat { size: Some(size) }),
    };
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: Option<&str>) -> Result<Command<'_>, CommandError> {
    let kind = CommandKind::Auth;
    let args = args.unwrap_or("");
    let (mechanism, initial) = match args.split_once(' ') {
        Some((m, i)) => (m, Some(i)),
        None => (args, None),
    };
    // sasl-mech = 1*20mech-char; mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
    // (compared case-insensitively, so lower case is let through).
    if mechanism.is_empty()
        || mechanism.len() > 20
        || !mechanism
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(CommandError::Syntax {
            kind,
            reason: "invalid mechanism",
        });
    }
    if let Some(ir) = initial {
        if ir.is_empty()
            || !ir
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=')
        {
            return Err(CommandError::Syntax {
                kind,
                reason: "initial response must be base64 or =",
            });
        }
    }
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::super::address::{Domain, LocalPart, Mailbox};
    use super::*;

    fn cmd(line: &str) -> Result<Command<'_>, CommandError> {
        parse_command(line.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            cmd("ehlo client.example"),
            Ok(Command::Ehlo("client.example"))
        );
        assert_eq!(cmd("HeLo [192.0.2.1]"), Ok(Command::Helo("[192.0.2.1]")));
        assert_eq!(cmd("data"), Ok(Command::Data));
        assert_eq!(cmd("Rset"), Ok(Command::Rset));
        assert_eq!(cmd("QUIT  "), Ok(Command::Quit));
        assert_eq!(cmd("starttls"), Ok(Command::StartTls));
        assert_eq!(cmd("NOOP anything"), Ok(Command::Noop));
        assert_eq!(cmd("HELP"), Ok(Command::Help(None)));
        assert_eq!(cmd("HELP mail"), Ok(Command::Help(Some("mail"))));
        assert_eq!(cmd("VRFY root"), Ok(Command::Vrfy("root")));
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(cmd("FOO bar"), Err(CommandError::Unknown));
        assert_eq!(cmd("XXXXXXXXXXXX"), Err(CommandError::Unknown));
        assert_eq!(cmd(""), Err(CommandError::Malformed));
        assert_eq!(parse_command(b"NOOP\rX"), Err(CommandError::Malformed));
        assert_eq!(parse_command(b"NOOP \xff"), Err(CommandError::Malformed));
        assert!(matches!(
            cmd("EHLO"),
            Err(CommandError::Syntax {
                kind: CommandKind::Ehlo,
                ..
            })
        ));
        assert!(matches!(
            cmd("DATA now"),
            Err(CommandError::Syntax {
                kind: CommandKind::Data,
                ..
            })
        ));
        assert!(matches!(
            cmd("VRFY"),
            Err(CommandError::Syntax {
                kind: CommandKind::Vrfy,
                ..
            })
        ));
        assert!(matches!(
            cmd("MAIL TO:<a@b.c>"),
            Err(CommandError::Syntax {
                kind: CommandKind::Mail,
                ..
            })
        ));
    }

    #[test]
    fn mail_with_parameters() {
        let c = cmd(
            "MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<> RET=HDRS ENVID=x+2B1",
        )
        .unwrap();
        let Command::Mail { from, params } = c else {
            panic!("{c:?}")
        };
        let ReversePath::Path(p) = from else { panic!() };
        assert_eq!(
            p.mailbox,
            Mailbox {
                local: LocalPart::Dot("a"),
                domain: Some(Domain::Name("b.example"))
            }
        );
        assert_eq!(params.size, Some(1000));
        assert_eq!(params.body, Some(BodyType::EightBitMime));
        assert!(params.smtputf8);
        assert_eq!(params.auth, Some("<>"));
        assert_eq!(params.ret, Some("HDRS"));
        assert_eq!(params.envid, Some("x+2B1"));
        assert!(matches!(
            cmd("mail from:<> body=binarymime"),
            Ok(Command::Mail {
                from: ReversePath::Null,
                params: MailParams {
                    body: Some(BodyType::BinaryMime),
                    ..
                }
            })
        ));
        // Tolerated space after the colon.
        assert!(matches!(
            cmd("MAIL FROM: <a@b.c>"),
            Ok(Command::Mail { .. })
        ));
    }

    #[test]
    fn mail_parameter_errors() {
        assert!(
            matches!(cmd("MAIL FROM:<a@b.c> FOO=1"), Err(CommandError::UnknownParameter { ref keyword, .. }) if keyword == "FOO")
        );
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c> SIZE=abc"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c> SIZE"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c> SIZE=1 SIZE=2"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c> BODY=9BIT"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c> SMTPUTF8=yes"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c>SIZE=1"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("MAIL FROM:a@b.c"),
            Err(CommandError::Address { .. })
        ));
        assert_eq!(
            cmd("MAIL FROM:<a@b.c> SIZE=999999999999999999999").map(|c| match c {
                Command::Mail { params, .. } => params.size,
                _ => None,
            }),
            Err(CommandError::Syntax {
                kind: CommandKind::Mail,
                reason: "SIZE must be a number"
            })
        );
        assert!(matches!(
            cmd("MAIL FROM:<a@b.c> SIZE=99999999999999999999"),
            Ok(Command::Mail {
                params: MailParams {
                    size: Some(u64::MAX),
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn rcpt_forms() {
        let Ok(Command::Rcpt { to, params }) =
            cmd("RCPT TO:<u@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@example.org")
        else {
            panic!()
        };
        assert_eq!(to.mailbox.canonical(), "u@example.org");
        assert_eq!(params.notify, Some("SUCCESS,FAILURE"));
        assert_eq!(params.orcpt, Some("rfc822;u@example.org"));
        assert!(matches!(
            cmd("RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt {
                to: Path {
                    mailbox: Mailbox { domain: None, .. },
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            cmd("RCPT TO:<@a.example:u@b.example>"),
            Ok(Command::Rcpt {
                to: Path {
                    route: Some("@a.example"),
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            cmd("RCPT TO:<>"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            cmd("RCPT TO:<u@example.org> SIZE=1"),
            Err(CommandError::UnknownParameter { .. })
        ));
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(
            cmd("BDAT 100"),
            Ok(Command::Bdat {
                size: 100,
                last: false
            })
        );
        assert_eq!(
            cmd("bdat 0 last"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            cmd("BDAT 10 LAZT"),
            Err(CommandError::Bdat { size: Some(10) })
        );
        assert_eq!(cmd("BDAT x"), Err(CommandError::Bdat { size: None }));
        assert_eq!(cmd("BDAT"), Err(CommandError::Bdat { size: None }));
        assert_eq!(
            cmd("BDAT 99999999999999999999999"),
            Err(CommandError::Bdat { size: None })
        );
        assert_eq!(
            cmd("AUTH PLAIN"),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial: None
            })
        );
        assert_eq!(
            cmd("AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "plain",
                initial: Some("AGEAYg==")
            })
        );
        assert_eq!(
            cmd("AUTH PLAIN ="),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial: Some("=")
            })
        );
        assert!(matches!(cmd("AUTH"), Err(CommandError::Syntax { .. })));
        assert!(matches!(
            cmd("AUTH PLAIN a b"),
            Err(CommandError::Syntax { .. })
        ));
    }

    #[test]
    fn line_splitting() {
        assert_eq!(
            next_line(b"NOOP\r\nQUIT\r\n", 100),
            Line::Complete {
                line: b"NOOP",
                len: 6
            }
        );
        assert_eq!(
            next_line(b"NOOP\nQUIT", 100),
            Line::Complete {
                line: b"NOOP",
                len: 5
            }
        );
        assert_eq!(next_line(b"NOOP\r", 100), Line::Incomplete);
        assert_eq!(next_line(b"", 100), Line::Incomplete);
        // Exactly at the limit (content + CRLF == limit) is fine; one more is not.
        assert_eq!(
            next_line(b"12345678\r\n", 10),
            Line::Complete {
                line: b"12345678",
                len: 10
            }
        );
        assert_eq!(next_line(b"123456789\r\n", 10), Line::TooLong(None));
        assert_eq!(next_line(b"123456789\n", 10), Line::TooLong(Some(10)));
        assert_eq!(next_line(b"1234567890", 10), Line::TooLong(None));
        assert_eq!(next_line(b"123456789", 10), Line::Incomplete);
    }

    #[test]
    fn parse_applies_auth_limit() {
        let long_auth = format!("AUTH PLAIN {}\r\n", "A".repeat(2000));
        assert!(matches!(
            parse(long_auth.as_bytes(), 1000),
            Parsed::Complete {
                command: Ok(Command::Auth { .. }),
                ..
            }
        ));
        let long_noop = format!("NOOP {}\r\n", "A".repeat(2000));
        assert_eq!(parse(long_noop.as_bytes(), 1000), Parsed::TooLong(None));
        assert_eq!(parse(b"MAIL FROM:<a", 1000), Parsed::Incomplete);
        assert!(matches!(
            parse(b"RSET\r\nQUIT\r\n", 1000),
            Parsed::Complete {
                command: Ok(Command::Rset),
                len: 6
            }
        ));
    }
}

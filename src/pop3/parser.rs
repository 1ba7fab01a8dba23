//! Zero-copy POP3 command parser (RFC 1939, RFC 2449, RFC 2595, RFC 5034).
//!
//! [`parse_command`] takes the bytes received so far and returns the first command line with its
//! arguments borrowed from the input, [`Parse::Incomplete`] when no full line is there yet, or
//! [`Parse::Overlong`] when the line cannot fit the length cap (the caller discards bytes up to
//! the next line end). The parser keeps no state; the session owns the discard mode.
//!
//! Lines end in CRLF. A bare LF is accepted as a line end too (the CR, when present, is
//! stripped): command lines carry no message data, so this leniency cannot smuggle anything,
//! and it keeps `telnet`/`nc` sessions usable.

use memchr::memchr;
use thiserror::Error;

/// Longest accepted command line, terminator included. RFC 2449 caps commands at 255 octets;
/// we accept twice that so that long user names and passwords from sloppy clients still work.
pub const MAX_COMMAND_LINE: usize = 512;

/// Longest accepted `AUTH` command line or SASL continuation line, terminator included.
/// RFC 5034 exempts SASL responses from the 255-octet limit; a PLAIN response of three
/// 255-octet fields is about 1 KiB of base64, so 8 KiB leaves ample room.
pub const MAX_AUTH_LINE: usize = 8192;

/// Largest number of decimal digits accepted in a numeric argument (u32 fits in 10).
const MAX_DIGITS: usize = 10;

/// One POP3 command with its arguments borrowed from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595).
    Stls,
    /// `USER name`.
    User(&'a [u8]),
    /// `PASS string`; the argument is the rest of the line (RFC 1939 lets it contain spaces).
    Pass(&'a [u8]),
    /// `AUTH [mechanism [initial-response]]` (RFC 5034); no mechanism asks for the list.
    Auth {
        /// SASL mechanism name as sent (compare case-insensitively).
        mechanism: Option<&'a [u8]>,
        /// Base64 initial response; `=` stands for an empty one.
        initial: Option<&'a [u8]>,
    },
    /// `APOP name digest` (parsed so that it can be refused properly).
    Apop {
        /// Mailbox name.
        name: &'a [u8],
        /// MD5 digest as hex.
        digest: &'a [u8],
    },
    /// `QUIT`.
    Quit,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `TOP msg n`.
    Top {
        /// Message number.
        msg: u32,
        /// Number of body lines wanted.
        lines: u32,
    },
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
}

impl Command<'_> {
    /// The kind of this command, for metrics and state checks.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Capa => CommandKind::Capa,
            Command::Stls => CommandKind::Stls,
            Command::User(_) => CommandKind::User,
            Command::Pass(_) => CommandKind::Pass,
            Command::Auth { .. } => CommandKind::Auth,
            Command::Apop { .. } => CommandKind::Apop,
            Command::Quit => CommandKind::Quit,
            Command::Stat => CommandKind::Stat,
            Command::List(_) => CommandKind::List,
            Command::Retr(_) => CommandKind::Retr,
            Command::Dele(_) => CommandKind::Dele,
            Command::Noop => CommandKind::Noop,
            Command::Rset => CommandKind::Rset,
            Command::Top { .. } => CommandKind::Top,
            Command::Uidl(_) => CommandKind::Uidl,
        }
    }
}

/// Which command a line was, without its arguments (metrics keys, state tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `CAPA`.
    Capa,
    /// `STLS`.
    Stls,
    /// `USER`.
    User,
    /// `PASS`.
    Pass,
    /// `AUTH`, including its continuation lines.
    Auth,
    /// `APOP`.
    Apop,
    /// `QUIT`.
    Quit,
    /// `STAT`.
    Stat,
    /// `LIST`.
    List,
    /// `RETR`.
    Retr,
    /// `DELE`.
    Dele,
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `TOP`.
    Top,
    /// `UIDL`.
    Uidl,
    /// A line that was not a valid command (unknown, malformed or too long).
    Invalid,
}

impl CommandKind {
    /// Every kind, for pre-registering histograms.
    pub const ALL: [CommandKind; 16] = [
        CommandKind::Capa,
        CommandKind::Stls,
        CommandKind::User,
        CommandKind::Pass,
        CommandKind::Auth,
        CommandKind::Apop,
        CommandKind::Quit,
        CommandKind::Stat,
        CommandKind::List,
        CommandKind::Retr,
        CommandKind::Dele,
        CommandKind::Noop,
        CommandKind::Rset,
        CommandKind::Top,
        CommandKind::Uidl,
        CommandKind::Invalid,
    ];

    /// Lower-case name, used as the metrics key suffix (`pop3.retr`).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Capa => "capa",
            CommandKind::Stls => "stls",
            CommandKind::User => "user",
            CommandKind::Pass => "pass",
            CommandKind::Auth => "auth",
            CommandKind::Apop => "apop",
            CommandKind::Quit => "quit",
            CommandKind::Stat => "stat",
            CommandKind::List => "list",
            CommandKind::Retr => "retr",
            CommandKind::Dele => "dele",
            CommandKind::Noop => "noop",
            CommandKind::Rset => "rset",
            CommandKind::Top => "top",
            CommandKind::Uidl => "uidl",
            CommandKind::Invalid => "invalid",
        }
    }
}

/// Why a complete line is not a valid command. `Display` is the text after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The line exceeded [`MAX_COMMAND_LINE`] (or [`MAX_AUTH_LINE`] for `AUTH`).
    #[error("line too long")]
    LineTooLong,
    /// The line was empty.
    #[error("empty command")]
    Empty,
    /// The keyword is not a POP3 command.
    #[error("unknown command")]
    Unknown,
    /// A required argument was missing.
    #[error("missing argument")]
    MissingArgument,
    /// More arguments than the command takes.
    #[error("too many arguments")]
    TooManyArguments,
    /// A numeric argument was not a decimal number that fits 32 bits.
    #[error("invalid number")]
    InvalidNumber,
}

/// Outcome of [`parse_command`] / [`parse_sasl_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<T> {
    /// No complete line yet and the partial line is within the cap: read more.
    Incomplete,
    /// One line of `len` bytes (terminator included) was read; `value` is what it meant.
    Line {
        /// Bytes to consume from the input.
        len: usize,
        /// The parsed line or why it is invalid.
        value: Result<T, ParseError>,
    },
    /// The line is longer than its cap and its end has not arrived: drop all of the input and
    /// keep dropping through the next line end, then answer `-ERR line too long`.
    Overlong,
}

/// Parse the first command line of `buf`.
pub fn parse_command(buf: &[u8]) -> Parse<Command<'_>> {
    let cap = if starts_with_auth(buf) {
        MAX_AUTH_LINE
    } else {
        MAX_COMMAND_LINE
    };
    split_line(buf, cap).map(parse_line)
}

/// Parse one SASL continuation line (the client's answer to `+ challenge`): the raw line
/// without its terminator.
pub fn parse_sasl_line(buf: &[u8]) -> Parse<&[u8]> {
    split_line(buf, MAX_AUTH_LINE).map(Ok)
}

impl<T> Parse<T> {
    /// Map the line content, keeping the length; `Incomplete`/`Overlong` pass through.
    fn map<U>(self, f: impl FnOnce(T) -> Result<U, ParseError>) -> Parse<U> {
        match self {
            Parse::Incomplete => Parse::Incomplete,
            Parse::Overlong => Parse::Overlong,
            Parse::Line { len, value } => Parse::Line {
                len,
                value: value.and_then(f),
            },
        }
    }
}

/// Find the first line of `buf` and check it against `cap`. The line is returned without its
/// terminator.
fn split_line(buf: &[u8], cap: usize) -> Parse<&[u8]> {
    match memchr(b'\n', buf) {
        // Too long, but its end is here: consume exactly this line so that pipelined commands
        // after it still run.
        Some(lf) if lf >= cap => Parse::Line {
            len: lf + 1,
            value: Err(ParseError::LineTooLong),
        },
        Some(lf) => {
            let line = &buf[..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Parse::Line {
                len: lf + 1,
                value: Ok(line),
            }
        }
        // Even a bare LF as the next byte would make the line longer than the cap.
        None if buf.len() >= cap => Parse::Overlong,
        None => Parse::Incomplete,
    }
}

/// True if `buf` begins with the `AUTH` keyword followed by a space (case-insensitive).
fn starts_with_auth(buf: &[u8]) -> bool {
    buf.get(..5)
        .is_some_and(|p| p[..4].eq_ignore_ascii_case(b"AUTH") && p[4] == b' ')
}

/// Parse one line (without terminator) into a command.
fn parse_line(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let (keyword, rest) = match memchr(b' ', line) {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &line[line.len()..]),
    };
    if keyword.is_empty() {
        return Err(if line.iter().all(|&b| b == b' ') {
            ParseError::Empty
        } else {
            ParseError::Unknown
        });
    }
    // Keywords are 3 or 4 letters, case-insensitive: upper-case into a fixed array and match.
    let mut upper = [0u8; 4];
    let Some(upper) = upper.get_mut(..keyword.len()) else {
        return Err(ParseError::Unknown);
    };
    for (u, k) in upper.iter_mut().zip(keyword) {
        *u = k.to_ascii_uppercase();
    }
    let mut args = Args::new(rest);
    let cmd = match &*upper {
        b"PASS" => {
            // RFC 1939: "the POP3 server may treat spaces in the argument as part of the
            // password", so the argument is the rest of the line, verbatim.
            if rest.is_empty() {
                return Err(ParseError::MissingArgument);
            }
            return Ok(Command::Pass(rest));
        }
        b"CAPA" => Command::Capa,
        b"STLS" => Command::Stls,
        b"USER" => Command::User(args.required()?),
        b"AUTH" => Command::Auth {
            mechanism: args.optional(),
            initial: args.optional(),
        },
        b"APOP" => Command::Apop {
            name: args.required()?,
            digest: args.required()?,
        },
        b"QUIT" => Command::Quit,
        b"STAT" => Command::Stat,
        b"LIST" => Command::List(args.optional().map(number).transpose()?),
        b"RETR" => Command::Retr(number(args.required()?)?),
        b"DELE" => Command::Dele(number(args.required()?)?),
        b"NOOP" => Command::Noop,
        b"RSET" => Command::Rset,
        b"TOP" => Command::Top {
            msg: number(args.required()?)?,
            lines: line_count(args.required()?)?,
        },
        b"UIDL" => Command::Uidl(args.optional().map(number).transpose()?),
        _ => return Err(ParseError::Unknown),
    };
    args.finish()?;
    Ok(cmd)
}

/// Space-separated arguments. RFC 1939 asks for single spaces; runs of spaces and trailing
/// spaces are tolerated because they are unambiguous.
struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Args { rest }
    }

    fn optional(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let tail = &self.rest[start..];
        let end = memchr(b' ', tail).unwrap_or(tail.len());
        self.rest = &tail[end..];
        Some(&tail[..end])
    }

    fn required(&mut self) -> Result<&'a [u8], ParseError> {
        self.optional().ok_or(ParseError::MissingArgument)
    }

    fn finish(mut self) -> Result<(), ParseError> {
        match self.optional() {
            Some(_) => Err(ParseError::TooManyArguments),
            None => Ok(()),
        }
    }
}

/// A decimal number that fits `u32` (RFC 1939 numbers are digits only: no sign, no spaces).
fn number(arg: &[u8]) -> Result<u32, ParseError> {
    if arg.is_empty() || arg.len() > MAX_DIGITS || !arg.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::InvalidNumber);
    }
    arg.iter()
        .try_fold(0u32, |n, &d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .ok_or(ParseError::InvalidNumber)
}

/// TOP's line count: any run of digits is a valid count (RFC 1939), and a count past
/// `u32::MAX` asks for more lines than any message has, so it saturates.
fn line_count(arg: &[u8]) -> Result<u32, ParseError> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::InvalidNumber);
    }
    Ok(number(arg).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(input: &[u8]) -> Result<Command<'_>, ParseError> {
        match parse_command(input) {
            Parse::Line { len, value } => {
                assert_eq!(len, input.len(), "whole line consumed");
                value
            }
            other => panic!("expected a line, got {other:?}"),
        }
    }

    #[test]
    fn simple_commands_any_case() {
        assert_eq!(cmd(b"CAPA\r\n"), Ok(Command::Capa));
        assert_eq!(cmd(b"capa\r\n"), Ok(Command::Capa));
        assert_eq!(cmd(b"StLs\r\n"), Ok(Command::Stls));
        assert_eq!(cmd(b"QUIT\r\n"), Ok(Command::Quit));
        assert_eq!(cmd(b"STAT\r\n"), Ok(Command::Stat));
        assert_eq!(cmd(b"NOOP\r\n"), Ok(Command::Noop));
        assert_eq!(cmd(b"RSET\r\n"), Ok(Command::Rset));
    }

    #[test]
    fn arguments_are_borrowed() {
        let input = b"USER alice@example.org\r\n";
        match cmd(input) {
            Ok(Command::User(name)) => {
                assert_eq!(name, b"alice@example.org");
                assert_eq!(name.as_ptr(), input[5..].as_ptr(), "zero-copy");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pass_keeps_spaces() {
        assert_eq!(
            cmd(b"PASS correct horse  battery \r\n"),
            Ok(Command::Pass(b"correct horse  battery "))
        );
        assert_eq!(cmd(b"PASS\r\n"), Err(ParseError::MissingArgument));
        assert_eq!(cmd(b"PASS \r\n"), Err(ParseError::MissingArgument));
    }

    #[test]
    fn numeric_arguments() {
        assert_eq!(cmd(b"LIST\r\n"), Ok(Command::List(None)));
        assert_eq!(cmd(b"LIST 3\r\n"), Ok(Command::List(Some(3))));
        assert_eq!(cmd(b"LIST 3 \r\n"), Ok(Command::List(Some(3))));
        assert_eq!(cmd(b"RETR 42\r\n"), Ok(Command::Retr(42)));
        assert_eq!(cmd(b"DELE 0\r\n"), Ok(Command::Dele(0)));
        assert_eq!(cmd(b"TOP 1 0\r\n"), Ok(Command::Top { msg: 1, lines: 0 }));
        // A giant line count means the whole message; signs are still refused.
        assert_eq!(
            cmd(b"TOP 1 99999999999999999999999\r\n"),
            Ok(Command::Top {
                msg: 1,
                lines: u32::MAX
            })
        );
        assert_eq!(cmd(b"TOP 1 -1\r\n"), Err(ParseError::InvalidNumber));
        assert_eq!(
            cmd(b"UIDL 4294967295\r\n"),
            Ok(Command::Uidl(Some(u32::MAX)))
        );
        assert_eq!(cmd(b"UIDL 4294967296\r\n"), Err(ParseError::InvalidNumber));
        assert_eq!(cmd(b"RETR 99999999999\r\n"), Err(ParseError::InvalidNumber));
        assert_eq!(cmd(b"RETR -1\r\n"), Err(ParseError::InvalidNumber));
        assert_eq!(cmd(b"RETR +1\r\n"), Err(ParseError::InvalidNumber));
        assert_eq!(cmd(b"RETR 1x\r\n"), Err(ParseError::InvalidNumber));
        assert_eq!(cmd(b"RETR\r\n"), Err(ParseError::MissingArgument));
        assert_eq!(cmd(b"TOP 1\r\n"), Err(ParseError::MissingArgument));
        assert_eq!(cmd(b"TOP 1 2 3\r\n"), Err(ParseError::TooManyArguments));
        assert_eq!(cmd(b"LIST 1 2\r\n"), Err(ParseError::TooManyArguments));
    }

    #[test]
    fn no_argument_commands_reject_arguments() {
        assert_eq!(cmd(b"STAT 1\r\n"), Err(ParseError::TooManyArguments));
        assert_eq!(cmd(b"QUIT now\r\n"), Err(ParseError::TooManyArguments));
        assert_eq!(cmd(b"USER a b\r\n"), Err(ParseError::TooManyArguments));
        assert_eq!(cmd(b"USER\r\n"), Err(ParseError::MissingArgument));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            cmd(b"AUTH\r\n"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            cmd(b"AUTH PLAIN\r\n"),
            Ok(Command::Auth {
                mechanism: Some(b"PLAIN"),
                initial: None
            })
        );
        assert_eq!(
            cmd(b"auth plain AGFsaWNlAHNlY3JldA==\r\n"),
            Ok(Command::Auth {
                mechanism: Some(b"plain"),
                initial: Some(b"AGFsaWNlAHNlY3JldA==")
            })
        );
        assert_eq!(
            cmd(b"AUTH PLAIN a b\r\n"),
            Err(ParseError::TooManyArguments)
        );
    }

    #[test]
    fn apop_and_unknown() {
        assert_eq!(
            cmd(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
            Ok(Command::Apop {
                name: b"mrose",
                digest: b"c4c9334bac560ecc979e58001b3e22fb"
            })
        );
        assert_eq!(cmd(b"LAST\r\n"), Err(ParseError::Unknown));
        assert_eq!(cmd(b"RETRX 1\r\n"), Err(ParseError::Unknown));
        assert_eq!(cmd(b"\r\n"), Err(ParseError::Empty));
        assert_eq!(cmd(b"   \r\n"), Err(ParseError::Empty));
        assert_eq!(cmd(b" STAT\r\n"), Err(ParseError::Unknown));
        assert_eq!(cmd(b"\xff\xfe\r\n"), Err(ParseError::Unknown));
    }

    #[test]
    fn bare_lf_is_a_line_end() {
        assert_eq!(cmd(b"STAT\n"), Ok(Command::Stat));
        assert_eq!(cmd(b"USER bob\n"), Ok(Command::User(b"bob")));
    }

    #[test]
    fn incomplete_without_line_end() {
        assert_eq!(parse_command(b""), Parse::Incomplete);
        assert_eq!(parse_command(b"STA"), Parse::Incomplete);
        assert_eq!(parse_command(b"STAT\r"), Parse::Incomplete);
    }

    #[test]
    fn only_first_line_is_consumed() {
        match parse_command(b"STAT\r\nLIST\r\n") {
            Parse::Line { len, value } => {
                assert_eq!(len, 6);
                assert_eq!(value, Ok(Command::Stat));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_lines() {
        // Exactly at the cap (terminator included) is fine.
        let mut ok = b"USER ".to_vec();
        ok.resize(MAX_COMMAND_LINE - 2, b'a');
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(cmd(&ok), Ok(Command::User(_))));

        // One byte over, with its end in the buffer: exactly that line is consumed.
        let mut long = b"USER ".to_vec();
        long.resize(MAX_COMMAND_LINE - 1, b'a');
        long.extend_from_slice(b"\r\n");
        let line_len = long.len();
        long.extend_from_slice(b"STAT\r\n");
        assert_eq!(
            parse_command(&long),
            Parse::Line {
                len: line_len,
                value: Err(ParseError::LineTooLong)
            }
        );

        // Without an end yet but within the cap: incomplete.
        assert_eq!(
            parse_command(&long[..MAX_COMMAND_LINE - 1]),
            Parse::Incomplete
        );
        assert_eq!(parse_command(&long[..MAX_COMMAND_LINE]), Parse::Overlong);
    }

    #[test]
    fn auth_lines_get_the_larger_cap() {
        let mut line = b"AUTH PLAIN ".to_vec();
        line.resize(2000, b'A');
        line.extend_from_slice(b"\r\n");
        assert!(matches!(cmd(&line), Ok(Command::Auth { .. })));
        let mut huge = b"AUTH PLAIN ".to_vec();
        huge.resize(MAX_AUTH_LINE, b'A');
        assert_eq!(parse_command(&huge), Parse::Overlong);
    }

    #[test]
    fn sasl_lines() {
        assert_eq!(
            parse_sasl_line(b"AGFsaWNlAHNlY3JldA==\r\nSTAT\r\n"),
            Parse::Line {
                len: 22,
                value: Ok(&b"AGFsaWNlAHNlY3JldA=="[..])
            }
        );
        assert_eq!(parse_sasl_line(b"*"), Parse::Incomplete);
        assert_eq!(parse_sasl_line(&[b'A'; MAX_AUTH_LINE]), Parse::Overlong);
    }

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<_> = CommandKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CommandKind::ALL.len());
    }
}

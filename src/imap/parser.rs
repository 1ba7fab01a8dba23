//! Zero-copy, sans-IO IMAP command parser (RFC 3501 / RFC 9051 formal syntax, plus LITERAL+,
//! ENABLE, CONDSTORE, ESEARCH, LIST-EXTENDED, MOVE, UIDPLUS, MULTIAPPEND, BINARY, ID, QUOTA).
//!
//! [`parse`] first finds the extent of one command (lines joined by literals) so the caller
//! learns about each literal — its size and whether it is synchronising — before its bytes
//! arrive, then parses the grammar over bytes that are all present. Strings borrow from the
//! input except quoted strings with escapes.

use std::borrow::Cow;

use super::lexer::{is_atom_char, is_tag_char, Cursor, LexResult};
use super::search::{parse_key, SearchKey};
use super::section::{Partial, Section, SectionText};
use super::sequence::SequenceSet;
use super::sort::{SortCriterion, SortKey};
use super::thread::Algorithm;

/// A string argument: borrowed from the input unless it had escapes.
pub type Str<'a> = Cow<'a, [u8]>;

/// Input limits enforced while finding a command's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line (between literals), excluding CRLF.
    pub max_line: usize,
    /// Largest single literal.
    pub max_literal: u64,
}

impl Limits {
    /// Largest whole command (all lines and literals): one maximal literal plus some lines.
    pub fn max_command(&self) -> u64 {
        self.max_literal
            .saturating_add((self.max_line as u64).saturating_mul(16))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8192,
            max_literal: 50 * 1024 * 1024,
        }
    }
}

/// Why no command could be returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// More input is needed (no complete line yet).
    Incomplete,
    /// A literal was announced and is within limits, but its bytes have not all arrived.
    /// `offset` is where its data starts; for a synchronising literal the caller sends
    /// `+ ...` once per offset.
    NeedLiteral {
        /// Announced size.
        size: u64,
        /// `{n+}` (LITERAL+): the client sends the data without waiting.
        non_sync: bool,
        /// Offset of the literal data from the start of the input.
        offset: usize,
    },
    /// A literal exceeds the limits. For a synchronising literal the client sends nothing
    /// more of this command: skip `consumed` bytes and answer NO. A non-synchronising one is
    /// already on its way and must be consumed or the connection closed.
    LiteralTooLarge {
        /// The command's tag, if it had a valid one.
        tag: Option<&'a [u8]>,
        /// Announced size.
        size: u64,
        /// Whether it was `{n+}`.
        non_sync: bool,
        /// Bytes up to and including the line that announced it.
        consumed: usize,
    },
    /// A line exceeds `max_line`. Skip `skip_from` bytes, then everything up to the next LF.
    LineTooLong {
        /// The command's tag, if it had a valid one.
        tag: Option<&'a [u8]>,
        /// Start of the offending line.
        skip_from: usize,
    },
    /// A complete command that does not parse: skip `consumed` bytes and answer BAD (tagged
    /// if `tag` is known, otherwise `* BAD`).
    Bad {
        /// The command's tag, if it had a valid one.
        tag: Option<&'a [u8]>,
        /// The command name, upper-cased, if recognised (for the error text).
        command: Option<&'static str>,
        /// Bytes of the whole command including its final line end.
        consumed: usize,
        /// Human-readable reason.
        reason: &'static str,
    },
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// The client's tag.
    pub tag: &'a [u8],
    /// What was asked.
    pub body: CommandBody<'a>,
}

/// A message flag as written in a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag<'a> {
    /// `\Seen`.
    Seen,
    /// `\Answered`.
    Answered,
    /// `\Flagged`.
    Flagged,
    /// `\Deleted`.
    Deleted,
    /// `\Draft`.
    Draft,
    /// `\Recent` (never settable).
    Recent,
    /// Another `\Name` (not settable).
    Extension(&'a [u8]),
    /// A keyword atom.
    Keyword(&'a [u8]),
}

/// STORE's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// One FETCH data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    /// `FLAGS`.
    Flags,
    /// `INTERNALDATE`.
    InternalDate,
    /// `RFC822.SIZE`.
    Rfc822Size,
    /// `ENVELOPE`.
    Envelope,
    /// `BODY` (non-extensible BODYSTRUCTURE).
    Body,
    /// `BODYSTRUCTURE`.
    BodyStructure,
    /// `UID`.
    Uid,
    /// `MODSEQ` (RFC 7162).
    ModSeq,
    /// `RFC822` (= BODY[], sets \Seen).
    Rfc822,
    /// `RFC822.HEADER` (= BODY.PEEK[HEADER]).
    Rfc822Header,
    /// `RFC822.TEXT` (= BODY[TEXT], sets \Seen).
    Rfc822Text,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        /// `.PEEK`: do not set \Seen.
        peek: bool,
        /// The section.
        section: Section,
        /// Optional `<origin.length>`.
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516). Like Dovecot, the section
    /// may also name HEADER / TEXT / MIME, which are returned as they are.
    Binary {
        /// `.PEEK`.
        peek: bool,
        /// The section (usually only part numbers; empty: whole message).
        section: Section,
        /// Optional `<origin.length>`.
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        /// The section.
        section: Section,
    },
}

/// A STATUS data item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    /// `MESSAGES`.
    Messages,
    /// `RECENT`.
    Recent,
    /// `UIDNEXT`.
    UidNext,
    /// `UIDVALIDITY`.
    UidValidity,
    /// `UNSEEN`.
    Unseen,
    /// `SIZE` (RFC 8438).
    Size,
    /// `HIGHESTMODSEQ` (RFC 7162).
    HighestModSeq,
    /// `DELETED` (RFC 9051).
    Deleted,
}

/// An ESEARCH `RETURN` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
    /// `ALL`.
    All,
    /// `COUNT`.
    Count,
    /// `SAVE` (RFC 5182): keep the result for `$`.
    Save,
    /// `UPDATE` (RFC 5267): keep the client told of changes to the result.
    Update,
    /// `PARTIAL low:high` (RFC 5267): the results at these 1-based positions, `low <= high`.
    Partial(u32, u32),
}

/// One message of an APPEND (several with MULTIAPPEND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage<'a> {
    /// Flags to set.
    pub flags: Vec<Flag<'a>>,
    /// INTERNALDATE (Unix seconds), if given.
    pub date: Option<i64>,
    /// The message bytes.
    pub data: &'a [u8],
    /// Sent as a literal8 (`~{n}`, RFC 3516): its binary parts need a transfer encoding.
    pub binary: bool,
}

/// LIST arguments, including LIST-EXTENDED (RFC 5258) options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListCommand<'a> {
    /// Reference name.
    pub reference: Str<'a>,
    /// One or more patterns.
    pub patterns: Vec<Str<'a>>,
    /// Selection option `SUBSCRIBED`.
    pub select_subscribed: bool,
    /// Selection option `SPECIAL-USE` (RFC 6154).
    pub select_special_use: bool,
    /// Selection option `RECURSIVEMATCH`.
    pub recursive_match: bool,
    /// Whether any selection option or RETURN was given (extended LIST).
    pub extended: bool,
    /// `RETURN (SUBSCRIBED)`.
    pub return_subscribed: bool,
    /// `RETURN (CHILDREN)`.
    pub return_children: bool,
    /// `RETURN (SPECIAL-USE)`.
    pub return_special_use: bool,
    /// `RETURN (STATUS (...))` (RFC 5819).
    pub return_status: Vec<StatusItem>,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody<'a> {
    /// `CAPABILITY`.
    Capability,
    /// `NOOP`.
    Noop,
    /// `LOGOUT`.
    Logout,
    /// `STARTTLS`.
    StartTls,
    /// `AUTHENTICATE mech [initial-response]` (SASL-IR).
    Authenticate {
        /// Mechanism name.
        mechanism: &'a [u8],
        /// Base64 initial response (`=` for empty).
        initial: Option<&'a [u8]>,
    },
    /// `LOGIN user pass`.
    Login {
        /// User name.
        username: Str<'a>,
        /// Password.
        password: Str<'a>,
    },
    /// `ENABLE cap...`.
    Enable {
        /// Capability names.
        capabilities: Vec<&'a [u8]>,
    },
    /// `SELECT mailbox [(CONDSTORE)]`.
    Select {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
        /// `(CONDSTORE)` parameter.
        condstore: bool,
    },
    /// `EXAMINE mailbox [(CONDSTORE)]`.
    Examine {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
        /// `(CONDSTORE)` parameter.
        condstore: bool,
    },
    /// `CREATE mailbox`.
    Create {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
    },
    /// `DELETE mailbox`.
    Delete {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
    },
    /// `RENAME from to`.
    Rename {
        /// Existing name.
        from: Str<'a>,
        /// New name.
        to: Str<'a>,
    },
    /// `SUBSCRIBE mailbox`.
    Subscribe {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
    },
    /// `UNSUBSCRIBE mailbox`.
    Unsubscribe {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
    },
    /// `LIST ...`.
    List(ListCommand<'a>),
    /// `LSUB reference pattern`.
    Lsub {
        /// Reference name.
        reference: Str<'a>,
        /// Pattern.
        pattern: Str<'a>,
    },
    /// `NAMESPACE`.
    Namespace,
    /// `STATUS mailbox (items)`.
    Status {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
        /// Requested items, in order.
        items: Vec<StatusItem>,
    },
    /// `APPEND mailbox ...` (one or more messages).
    Append {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
        /// The messages.
        messages: Vec<AppendMessage<'a>>,
    },
    /// `IDLE`.
    Idle,
    /// `CHECK`.
    Check,
    /// `CLOSE`.
    Close,
    /// `UNSELECT`.
    Unselect,
    /// `EXPUNGE`, or `UID EXPUNGE set` with `uids`.
    Expunge {
        /// UID set for UID EXPUNGE.
        uids: Option<SequenceSet<'a>>,
    },
    /// `[UID] SEARCH [RETURN (...)] [CHARSET c] keys`.
    Search {
        /// UID SEARCH.
        uid: bool,
        /// ESEARCH return options (`Some(empty)` for `RETURN ()`).
        ret: Option<Vec<SearchReturn>>,
        /// CHARSET, if given.
        charset: Option<Str<'a>>,
        /// The criteria (an implicit AND).
        criteria: SearchKey<'a>,
        /// The criteria as sent (kept by `RETURN (UPDATE)` to evaluate them again).
        criteria_raw: &'a [u8],
    },
    /// `[UID] SORT [RETURN (...)] (criteria) charset keys` (RFC 5256, RFC 5267 ESORT).
    Sort {
        /// UID SORT.
        uid: bool,
        /// ESORT return options (`Some(empty)` for `RETURN ()`).
        ret: Option<Vec<SearchReturn>>,
        /// The sort criteria, most significant first.
        criteria: Vec<SortCriterion>,
        /// The charset of the search keys.
        charset: Str<'a>,
        /// The search keys (an implicit AND).
        keys: SearchKey<'a>,
    },
    /// `[UID] THREAD algorithm charset keys` (RFC 5256 §4).
    Thread {
        /// UID THREAD.
        uid: bool,
        /// The threading algorithm.
        algorithm: Algorithm,
        /// The charset of the search keys.
        charset: Str<'a>,
        /// The search keys (an implicit AND).
        keys: SearchKey<'a>,
    },
    /// `CANCELUPDATE tag...` (RFC 5267).
    CancelUpdate {
        /// Tags of the SEARCH RETURN (UPDATE) commands to stop.
        tags: Vec<Str<'a>>,
    },
    /// `[UID] FETCH set items [(CHANGEDSINCE n)]`.
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// Messages.
        set: SequenceSet<'a>,
        /// Items (macros expanded).
        items: Vec<FetchItem>,
        /// CHANGEDSINCE modifier.
        changed_since: Option<u64>,
    },
    /// `[UID] STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags`.
    Store {
        /// UID STORE.
        uid: bool,
        /// Messages.
        set: SequenceSet<'a>,
        /// UNCHANGEDSINCE modifier.
        unchanged_since: Option<u64>,
        /// Add / remove / replace.
        op: StoreOp,
        /// `.SILENT`.
        silent: bool,
        /// The flags.
        flags: Vec<Flag<'a>>,
    },
    /// `[UID] COPY set mailbox`.
    Copy {
        /// UID COPY.
        uid: bool,
        /// Messages.
        set: SequenceSet<'a>,
        /// Destination as sent.
        mailbox: Str<'a>,
    },
    /// `[UID] MOVE set mailbox`.
    Move {
        /// UID MOVE.
        uid: bool,
        /// Messages.
        set: SequenceSet<'a>,
        /// Destination as sent.
        mailbox: Str<'a>,
    },
    /// `GETQUOTA root`.
    GetQuota {
        /// Quota root.
        root: Str<'a>,
    },
    /// `GETQUOTAROOT mailbox`.
    GetQuotaRoot {
        /// Mailbox name as sent.
        mailbox: Str<'a>,
    },
    /// `SETQUOTA root (...)` (refused: quotas are administrative).
    SetQuota,
    /// `ID (params)` or `ID NIL`.
    Id {
        /// Client-supplied field/value pairs.
        params: Option<Vec<(Str<'a>, Option<Str<'a>>)>>,
    },
}

impl CommandBody<'_> {
    /// The command's name for logs and latency histograms (`"UID FETCH"`, `"SELECT"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Enable { .. } => "ENABLE",
            CommandBody::Select { .. } => "SELECT",
            CommandBody::Examine { .. } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete { .. } => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe { .. } => "SUBSCRIBE",
            CommandBody::Unsubscribe { .. } => "UNSUBSCRIBE",
            CommandBody::List(_) => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::Idle => "IDLE",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Expunge { uids: None } => "EXPUNGE",
            CommandBody::Expunge { uids: Some(_) } => "UID EXPUNGE",
            CommandBody::Search { uid: false, .. } => "SEARCH",
            CommandBody::Search { uid: true, .. } => "UID SEARCH",
            CommandBody::Sort { uid: false, .. } => "SORT",
            CommandBody::Sort { uid: true, .. } => "UID SORT",
            CommandBody::Thread { uid: false, .. } => "THREAD",
            CommandBody::Thread { uid: true, .. } => "UID THREAD",
            CommandBody::Fetch { uid: false, .. } => "FETCH",
            CommandBody::Fetch { uid: true, .. } => "UID FETCH",
            CommandBody::Store { uid: false, .. } => "STORE",
            CommandBody::Store { uid: true, .. } => "UID STORE",
            CommandBody::Copy { uid: false, .. } => "COPY",
            CommandBody::Copy { uid: true, .. } => "UID COPY",
            CommandBody::Move { uid: false, .. } => "MOVE",
            CommandBody::Move { uid: true, .. } => "UID MOVE",
            CommandBody::GetQuota { .. } => "GETQUOTA",
            CommandBody::GetQuotaRoot { .. } => "GETQUOTAROOT",
            CommandBody::SetQuota => "SETQUOTA",
            CommandBody::Id { .. } => "ID",
            CommandBody::CancelUpdate { .. } => "CANCELUPDATE",
        }
    }
}

/// Parses one command at the start of `input` with default [`Limits`]; see [`parse_with`].
pub fn parse(input: &[u8]) -> Result<(Command<'_>, usize), ParseError<'_>> {
    parse_with(input, &Limits::default())
}

/// Parses one command at the start of `input`, returning it and the number of bytes it used.
pub fn parse_with<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(Command<'a>, usize), ParseError<'a>> {
    let end = command_extent(input, limits)?;
    let bytes = &input[..end];
    let mut c = Cursor::new(bytes);
    let tag = c.take_while(is_tag_char);
    let bad = |command, reason| ParseError::Bad {
        tag: if tag.is_empty() { None } else { Some(tag) },
        command,
        consumed: end,
        reason,
    };
    if tag.is_empty() {
        return Err(bad(None, "Invalid tag"));
    }
    if !c.eat(b' ') {
        return Err(bad(None, "Missing command"));
    }
    let name = c.atom().map_err(|r| bad(None, r))?;
    let mut upper = [0u8; 16];
    let name_up = if name.len() <= upper.len() {
        upper[..name.len()].copy_from_slice(name);
        upper[..name.len()].make_ascii_uppercase();
        &upper[..name.len()]
    } else {
        &b""[..]
    };
    let (cname, result) = parse_body(name_up, &mut c);
    match result {
        Ok(body) => Ok((Command { tag, body }, end)),
        Err(reason) => Err(bad(cname, reason)),
    }
}

/// Finds where the command at the start of `input` ends, checking limits on the way.
fn command_extent<'a>(input: &'a [u8], limits: &Limits) -> Result<usize, ParseError<'a>> {
    let tag = || tag_of(input);
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if rest.len() > limits.max_line + 1 {
                return Err(ParseError::LineTooLong {
                    tag: tag(),
                    skip_from: pos,
                });
            }
            return Err(ParseError::Incomplete);
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        if line.len() > limits.max_line {
            return Err(ParseError::LineTooLong {
                tag: tag(),
                skip_from: pos,
            });
        }
        let line_end = pos + nl + 1;
        let Some((size, non_sync)) = literal_announcement(line) else {
            return Ok(line_end);
        };
        if size > limits.max_literal
            || (line_end as u64).saturating_add(size) > limits.max_command()
        {
            return Err(ParseError::LiteralTooLarge {
                tag: tag(),
                size,
                non_sync,
                consumed: line_end,
            });
        }
        // Fits in usize: bounded by max_command above (callers keep limits sane).
        let size_us = usize::try_from(size).unwrap_or(usize::MAX);
        // A synchronising `{0}` needs its "+" too: the client waits for it before going on.
        let awaiting_empty = size_us == 0 && !non_sync && input.len() == line_end;
        if input.len() - line_end < size_us || awaiting_empty {
            return Err(ParseError::NeedLiteral {
                size,
                non_sync,
                offset: line_end,
            });
        }
        pos = line_end + size_us;
    }
}

/// If `line` ends with `{n}` or `{n+}`, the literal's size and whether it is non-synchronising.
fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', inner)?;
    let mut digits = &inner[open + 1..];
    let non_sync = if let Some(d) = digits.strip_suffix(b"+") {
        digits = d;
        true
    } else {
        false
    };
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits.iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    });
    // An overflowing size is certainly too large: report it as u64::MAX.
    Some((size.unwrap_or(u64::MAX), non_sync))
}

/// The tag at the start of `input`, if one is there followed by a space.
pub fn tag_of(input: &[u8]) -> Option<&[u8]> {
    let n = input.iter().take_while(|&&c| is_tag_char(c)).count();
    if n > 0 && input.get(n) == Some(&b' ') {
        Some(&input[..n])
    } else {
        None
    }
}

fn parse_body<'a>(
    name: &[u8],
    c: &mut Cursor<'a>,
) -> (Option<&'static str>, LexResult<CommandBody<'a>>) {
    macro_rules! simple {
        ($n:literal, $v:expr) => {
            (Some($n), c.end().map(|_| $v))
        };
    }
    match name {
        b"CAPABILITY" => simple!("CAPABILITY", CommandBody::Capability),
        b"NOOP" => simple!("NOOP", CommandBody::Noop),
        b"LOGOUT" => simple!("LOGOUT", CommandBody::Logout),
        b"STARTTLS" => simple!("STARTTLS", CommandBody::StartTls),
        b"NAMESPACE" => simple!("NAMESPACE", CommandBody::Namespace),
        b"IDLE" => simple!("IDLE", CommandBody::Idle),
        b"CHECK" => simple!("CHECK", CommandBody::Check),
        b"CLOSE" => simple!("CLOSE", CommandBody::Close),
        b"UNSELECT" => simple!("UNSELECT", CommandBody::Unselect),
        b"EXPUNGE" => simple!("EXPUNGE", CommandBody::Expunge { uids: None }),
        b"AUTHENTICATE" => (Some("AUTHENTICATE"), authenticate(c)),
        b"LOGIN" => (Some("LOGIN"), login(c)),
        b"ENABLE" => (Some("ENABLE"), enable(c)),
        b"SELECT" => (Some("SELECT"), select(c, false)),
        b"EXAMINE" => (Some("EXAMINE"), select(c, true)),
        b"CREATE" => (Some("CREATE"), create(c)),
        b"DELETE" => (
            Some("DELETE"),
            one_mailbox(c).map(|mailbox| CommandBody::Delete { mailbox }),
        ),
        b"SUBSCRIBE" => (
            Some("SUBSCRIBE"),
            one_mailbox(c).map(|mailbox| CommandBody::Subscribe { mailbox }),
        ),
        b"UNSUBSCRIBE" => (
            Some("UNSUBSCRIBE"),
            one_mailbox(c).map(|mailbox| CommandBody::Unsubscribe { mailbox }),
        ),
        b"GETQUOTAROOT" => (
            Some("GETQUOTAROOT"),
            one_mailbox(c).map(|mailbox| CommandBody::GetQuotaRoot { mailbox }),
        ),
        b"GETQUOTA" => (
            Some("GETQUOTA"),
            one_mailbox(c).map(|root| CommandBody::GetQuota { root }),
        ),
        b"SETQUOTA" => (Some("SETQUOTA"), setquota(c)),
        b"RENAME" => (Some("RENAME"), rename(c)),
        b"LIST" => (Some("LIST"), list(c)),
        b"LSUB" => (Some("LSUB"), lsub(c)),
        b"STATUS" => (Some("STATUS"), status(c)),
        b"APPEND" => (Some("APPEND"), append(c)),
        b"SEARCH" => (Some("SEARCH"), search(c, false)),
        b"SORT" => (Some("SORT"), sort(c, false)),
        b"THREAD" => (Some("THREAD"), thread(c, false)),
        b"FETCH" => (Some("FETCH"), fetch(c, false)),
        b"STORE" => (Some("STORE"), store(c, false)),
        b"COPY" => (Some("COPY"), copy_move(c, false, false)),
        b"MOVE" => (Some("MOVE"), copy_move(c, false, true)),
        b"ID" => (Some("ID"), id(c)),
        b"CANCELUPDATE" => (Some("CANCELUPDATE"), cancel_update(c)),
        b"UID" => uid_command(c),
        _ => (None, Err("Unknown command")),
    }
}

fn uid_command<'a>(c: &mut Cursor<'a>) -> (Option<&'static str>, LexResult<CommandBody<'a>>) {
    if c.sp().is_err() {
        return (Some("UID"), Err("Missing UID command"));
    }
    let Ok(sub) = c.atom() else {
        return (Some("UID"), Err("Missing UID command"));
    };
    let sub = sub.to_ascii_uppercase();
    match sub.as_slice() {
        b"FETCH" => (Some("UID FETCH"), fetch(c, true)),
        b"STORE" => (Some("UID STORE"), store(c, true)),
        b"SEARCH" => (Some("UID SEARCH"), search(c, true)),
        b"SORT" => (Some("UID SORT"), sort(c, true)),
        b"THREAD" => (Some("UID THREAD"), thread(c, true)),
        b"COPY" => (Some("UID COPY"), copy_move(c, true, false)),
        b"MOVE" => (Some("UID MOVE"), copy_move(c, true, true)),
        b"EXPUNGE" => (Some("UID EXPUNGE"), uid_expunge(c)),
        _ => (Some("UID"), Err("Unknown UID command")),
    }
}

fn authenticate<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let mechanism = c.atom()?;
    let initial = if c.eat(b' ') {
        let ir = c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if ir.is_empty() {
            return Err("Invalid initial response");
        }
        Some(ir)
    } else {
        None
    };
    c.end()?;
    Ok(CommandBody::Authenticate { mechanism, initial })
}

fn login<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let username = c.astring()?;
    c.sp()?;
    let password = c.astring()?;
    c.end()?;
    Ok(CommandBody::Login { username, password })
}

fn enable<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    let mut capabilities = Vec::new();
    while c.eat(b' ') {
        capabilities.push(c.atom()?);
    }
    if capabilities.is_empty() {
        return Err("Missing capabilities");
    }
    c.end()?;
    Ok(CommandBody::Enable { capabilities })
}

fn one_mailbox<'a>(c: &mut Cursor<'a>) -> LexResult<Str<'a>> {
    c.sp()?;
    let m = c.astring()?;
    c.end()?;
    Ok(m)
}

fn create<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let mailbox = c.astring()?;
    // RFC 6154 CREATE-SPECIAL-USE parameters are accepted syntactically and ignored: every
    // account already has the special-use mailboxes.
    if c.eat(b' ') {
        c.expect(b'(', "Invalid CREATE parameters")?;
        skip_parenthesised(c)?;
    }
    c.end()?;
    Ok(CommandBody::Create { mailbox })
}

/// Skips a balanced parenthesised list whose `(` was already consumed.
fn skip_parenthesised(c: &mut Cursor<'_>) -> LexResult<()> {
    let mut depth = 1u32;
    while depth > 0 {
        match c.peek() {
            None | Some(b'\r') | Some(b'\n') => return Err("Unbalanced parentheses"),
            Some(b'(') => {
                depth += 1;
                c.eat(b'(');
            }
            Some(b')') => {
                depth -= 1;
                c.eat(b')');
            }
            Some(b'"') | Some(b'{') => {
                c.string()?;
            }
            Some(_) => {
                c.take_while(|b| !matches!(b, b'(' | b')' | b'"' | b'{' | b'\r' | b'\n'));
            }
        }
    }
    Ok(())
}

fn setquota<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    c.astring()?;
    c.sp()?;
    c.expect(b'(', "Expected a resource list")?;
    skip_parenthesised(c)?;
    c.end()?;
    Ok(CommandBody::SetQuota)
}

fn select<'a>(c: &mut Cursor<'a>, examine: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let mailbox = c.astring()?;
    let mut condstore = false;
    if c.eat(b' ') {
        c.expect(b'(', "Expected select parameters")?;
        loop {
            let p = c.atom()?;
            if p.eq_ignore_ascii_case(b"CONDSTORE") {
                condstore = true;
            } else {
                return Err("Unknown SELECT parameter");
            }
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')', "Missing )")?;
    }
    c.end()?;
    Ok(if examine {
        CommandBody::Examine { mailbox, condstore }
    } else {
        CommandBody::Select { mailbox, condstore }
    })
}

fn rename<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let from = c.astring()?;
    c.sp()?;
    let to = c.astring()?;
    c.end()?;
    Ok(CommandBody::Rename { from, to })
}

fn lsub<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let reference = c.astring()?;
    c.sp()?;
    let pattern = c.list_mailbox()?;
    c.end()?;
    Ok(CommandBody::Lsub { reference, pattern })
}

fn list<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    let mut l = ListCommand::default();
    c.sp()?;
    if c.eat(b'(') {
        l.extended = true;
        if !c.eat(b')') {
            loop {
                let opt = c.atom()?.to_ascii_uppercase();
                match opt.as_slice() {
                    b"SUBSCRIBED" => l.select_subscribed = true,
                    b"SPECIAL-USE" => l.select_special_use = true,
                    b"RECURSIVEMATCH" => l.recursive_match = true,
                    b"REMOTE" => {}
                    _ => return Err("Unknown LIST selection option"),
                }
                if !c.eat(b' ') {
                    break;
                }
            }
            c.expect(b')', "Missing )")?;
        }
        c.sp()?;
    }
    l.reference = c.astring()?;
    c.sp()?;
    if c.eat(b'(') {
        l.extended = true;
        loop {
            l.patterns.push(c.list_mailbox()?);
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')', "Missing )")?;
    } else {
        l.patterns.push(c.list_mailbox()?);
    }
    if c.eat(b' ') {
        if !c.keyword(b"RETURN") {
            return Err("Expected RETURN");
        }
        l.extended = true;
        c.sp()?;
        c.expect(b'(', "Expected return options")?;
        if !c.eat(b')') {
            loop {
                let opt = c.atom()?.to_ascii_uppercase();
                match opt.as_slice() {
                    b"SUBSCRIBED" => l.return_subscribed = true,
                    b"CHILDREN" => l.return_children = true,
                    b"SPECIAL-USE" => l.return_special_use = true,
                    b"STATUS" => {
                        c.sp()?;
                        l.return_status = status_items(c)?;
                    }
                    _ => return Err("Unknown LIST return option"),
                }
                if !c.eat(b' ') {
                    break;
                }
            }
            c.expect(b')', "Missing )")?;
        }
    }
    // RECURSIVEMATCH alone is an error (RFC 5258 §3).
    if l.recursive_match && !l.select_subscribed && !l.select_special_use {
        return Err("RECURSIVEMATCH requires another selection option");
    }
    c.end()?;
    Ok(CommandBody::List(l))
}

fn status_items(c: &mut Cursor<'_>) -> LexResult<Vec<StatusItem>> {
    c.expect(b'(', "Expected status items")?;
    let mut items = Vec::new();
    loop {
        let a = c.atom()?.to_ascii_uppercase();
        items.push(match a.as_slice() {
            b"MESSAGES" => StatusItem::Messages,
            b"RECENT" => StatusItem::Recent,
            b"UIDNEXT" => StatusItem::UidNext,
            b"UIDVALIDITY" => StatusItem::UidValidity,
            b"UNSEEN" => StatusItem::Unseen,
            b"SIZE" => StatusItem::Size,
            b"HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            b"DELETED" => StatusItem::Deleted,
            _ => return Err("Unknown status item"),
        });
        if !c.eat(b' ') {
            break;
        }
    }
    c.expect(b')', "Missing )")?;
    Ok(items)
}

fn status<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let mailbox = c.astring()?;
    c.sp()?;
    let items = status_items(c)?;
    c.end()?;
    Ok(CommandBody::Status { mailbox, items })
}

fn flag<'a>(c: &mut Cursor<'a>) -> LexResult<Flag<'a>> {
    if c.eat(b'\\') {
        let a = c.atom()?;
        let f = if a.eq_ignore_ascii_case(b"Seen") {
            Flag::Seen
        } else if a.eq_ignore_ascii_case(b"Answered") {
            Flag::Answered
        } else if a.eq_ignore_ascii_case(b"Flagged") {
            Flag::Flagged
        } else if a.eq_ignore_ascii_case(b"Deleted") {
            Flag::Deleted
        } else if a.eq_ignore_ascii_case(b"Draft") {
            Flag::Draft
        } else if a.eq_ignore_ascii_case(b"Recent") {
            Flag::Recent
        } else {
            Flag::Extension(a)
        };
        Ok(f)
    } else {
        Ok(Flag::Keyword(c.atom()?))
    }
}

/// `"(" [flag *(SP flag)] ")"`; the `(` is still to be read.
fn flag_list<'a>(c: &mut Cursor<'a>) -> LexResult<Vec<Flag<'a>>> {
    c.expect(b'(', "Expected a flag list")?;
    let mut flags = Vec::new();
    if c.eat(b')') {
        return Ok(flags);
    }
    loop {
        flags.push(flag(c)?);
        if !c.eat(b' ') {
            break;
        }
    }
    c.expect(b')', "Missing ) after flags")?;
    Ok(flags)
}

fn append<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let mailbox = c.astring()?;
    let mut messages = Vec::new();
    while c.eat(b' ') {
        let mut flags = Vec::new();
        let mut date = None;
        if c.peek() == Some(b'(') {
            flags = flag_list(c)?;
            c.sp()?;
        }
        if c.peek() == Some(b'"') {
            date = Some(c.date_time()?);
            c.sp()?;
        }
        let binary = c.peek() == Some(b'~');
        let data = c.literal(true)?;
        messages.push(AppendMessage {
            flags,
            date,
            data,
            binary,
        });
    }
    if messages.is_empty() {
        return Err("Missing message literal");
    }
    c.end()?;
    Ok(CommandBody::Append { mailbox, messages })
}

/// `sequence-set`, or `$` (the saved search result, RFC 5182).
fn sequence_set<'a>(c: &mut Cursor<'a>) -> LexResult<SequenceSet<'a>> {
    let start = c.pos();
    if c.eat(b'$') {
        return SequenceSet::parse(c.since(start)).ok_or("Invalid message set");
    }
    let raw = c.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'));
    SequenceSet::parse(raw).ok_or("Invalid message set")
}

fn uid_expunge<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let set = sequence_set(c)?;
    c.end()?;
    Ok(CommandBody::Expunge { uids: Some(set) })
}

fn copy_move<'a>(c: &mut Cursor<'a>, uid: bool, is_move: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let set = sequence_set(c)?;
    c.sp()?;
    let mailbox = c.astring()?;
    c.end()?;
    Ok(if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    })
}

fn search<'a>(c: &mut Cursor<'a>, uid: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let ret = search_return(c)?;
    let mut charset = None;
    if c.keyword(b"CHARSET") {
        c.sp()?;
        charset = Some(c.astring()?);
        c.sp()?;
    }
    let start = c.pos();
    let criteria = search_criteria(c)?;
    let criteria_raw = c.since(start);
    c.end()?;
    Ok(CommandBody::Search {
        uid,
        ret,
        charset,
        criteria,
        criteria_raw,
    })
}

/// `[RETURN (options) SP]` of SEARCH (RFC 4731) and SORT (RFC 5267).
fn search_return(c: &mut Cursor<'_>) -> LexResult<Option<Vec<SearchReturn>>> {
    if !c.keyword(b"RETURN") {
        return Ok(None);
    }
    c.sp()?;
    c.expect(b'(', "Expected return options")?;
    let mut opts = Vec::new();
    if !c.eat(b')') {
        loop {
            let o = c.atom()?.to_ascii_uppercase();
            let opt = match o.as_slice() {
                b"MIN" => SearchReturn::Min,
                b"MAX" => SearchReturn::Max,
                b"ALL" => SearchReturn::All,
                b"COUNT" => SearchReturn::Count,
                b"SAVE" => SearchReturn::Save,
                b"UPDATE" => SearchReturn::Update,
                b"PARTIAL" => {
                    c.sp()?;
                    let lo = c.nz_number()?;
                    c.expect(b':', "Invalid partial range")?;
                    let hi = c.nz_number()?;
                    SearchReturn::Partial(lo.min(hi), lo.max(hi))
                }
                _ => return Err("Unknown search return option"),
            };
            // A repeated option counts once (Dovecot accepts it too).
            if !opts.contains(&opt) {
                opts.push(opt);
            }
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')', "Missing )")?;
    }
    c.sp()?;
    Ok(Some(opts))
}

/// `SP charset SP search-keys` to the end of the line: how SORT and THREAD end (RFC 5256),
/// with the charset required, unlike SEARCH's optional `CHARSET x`.
fn charset_and_keys<'a>(c: &mut Cursor<'a>) -> LexResult<(Str<'a>, SearchKey<'a>)> {
    c.sp()?;
    let charset = c.astring()?;
    c.sp()?;
    let keys = search_criteria(c)?;
    c.end()?;
    Ok((charset, keys))
}

/// `THREAD algorithm charset keys` (RFC 5256 §4).
fn thread<'a>(c: &mut Cursor<'a>, uid: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let algorithm = Algorithm::from_atom(c.atom()?).ok_or("Unknown thread algorithm")?;
    let (charset, keys) = charset_and_keys(c)?;
    Ok(CommandBody::Thread {
        uid,
        algorithm,
        charset,
        keys,
    })
}

/// `SORT [RETURN (...)] (criteria) charset keys` (RFC 5256 §3; RETURN from RFC 5267).
fn sort<'a>(c: &mut Cursor<'a>, uid: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let ret = search_return(c)?;
    c.expect(b'(', "Expected sort criteria")?;
    let mut criteria = Vec::new();
    loop {
        let mut atom = c.atom()?;
        let reverse = atom.eq_ignore_ascii_case(b"REVERSE");
        if reverse {
            c.sp()?;
            atom = c.atom()?;
        }
        let key = SortKey::from_atom(atom).ok_or("Unknown sort criterion")?;
        criteria.push(SortCriterion { key, reverse });
        if !c.eat(b' ') {
            break;
        }
    }
    c.expect(b')', "Missing ) after sort criteria")?;
    let (charset, keys) = charset_and_keys(c)?;
    Ok(CommandBody::Sort {
        uid,
        ret,
        criteria,
        charset,
        keys,
    })
}

/// `search-key *(SP search-key)` up to the end of the line, as one key.
pub(crate) fn search_criteria<'a>(c: &mut Cursor<'a>) -> LexResult<SearchKey<'a>> {
    let mut keys = vec![parse_key(c, 0)?];
    while c.eat(b' ') {
        keys.push(parse_key(c, 0)?);
    }
    Ok(if keys.len() == 1 {
        keys.pop().unwrap_or(SearchKey::All)
    } else {
        SearchKey::And(keys)
    })
}

fn cancel_update<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    let mut tags = Vec::new();
    while c.eat(b' ') {
        tags.push(c.string()?);
    }
    if tags.is_empty() {
        return Err("Missing search tag");
    }
    c.end()?;
    Ok(CommandBody::CancelUpdate { tags })
}

fn fetch<'a>(c: &mut Cursor<'a>, uid: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let set = sequence_set(c)?;
    c.sp()?;
    let mut items = Vec::new();
    if c.eat(b'(') {
        loop {
            fetch_att(c, &mut items)?;
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')', "Missing ) after fetch items")?;
    } else if c.keyword(b"ALL") {
        items.extend([
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
        ]);
    } else if c.keyword(b"FAST") {
        items.extend([
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
        ]);
    } else if c.keyword(b"FULL") {
        items.extend([
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
            FetchItem::Body,
        ]);
    } else {
        fetch_att(c, &mut items)?;
    }
    let mut changed_since = None;
    if c.eat(b' ') {
        c.expect(b'(', "Expected fetch modifiers")?;
        loop {
            if c.keyword(b"CHANGEDSINCE") {
                c.sp()?;
                changed_since = Some(c.number64()?);
            } else {
                return Err("Unknown FETCH modifier");
            }
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')', "Missing )")?;
    }
    c.end()?;
    Ok(CommandBody::Fetch {
        uid,
        set,
        items,
        changed_since,
    })
}

fn fetch_att(c: &mut Cursor<'_>, items: &mut Vec<FetchItem>) -> LexResult<()> {
    let name = c.take_while(|b| is_atom_char(b) && b != b'[' && b != b'<');
    let name = name.to_ascii_uppercase();
    let item = match name.as_slice() {
        b"FLAGS" => FetchItem::Flags,
        b"INTERNALDATE" => FetchItem::InternalDate,
        b"RFC822.SIZE" => FetchItem::Rfc822Size,
        b"ENVELOPE" => FetchItem::Envelope,
        b"BODYSTRUCTURE" => FetchItem::BodyStructure,
        b"UID" => FetchItem::Uid,
        b"MODSEQ" => FetchItem::ModSeq,
        b"RFC822" => FetchItem::Rfc822,
        b"RFC822.HEADER" => FetchItem::Rfc822Header,
        b"RFC822.TEXT" => FetchItem::Rfc822Text,
        b"BODY" if c.peek() != Some(b'[') => FetchItem::Body,
        b"BODY" | b"BODY.PEEK" => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchItem::BodySection {
                peek: name.len() > 4,
                section,
                partial,
            }
        }
        b"BINARY" | b"BINARY.PEEK" => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchItem::Binary {
                peek: name.len() > 6,
                section,
                partial,
            }
        }
        b"BINARY.SIZE" => FetchItem::BinarySize {
            section: section(c)?,
        },
        _ => return Err("Unknown fetch item"),
    };
    items.push(item);
    Ok(())
}

/// `section-part` followed by the `.` that introduces section-text, if any.
fn section_part(c: &mut Cursor<'_>) -> LexResult<(Vec<u32>, bool)> {
    let mut part = Vec::new();
    while matches!(c.peek(), Some(b'1'..=b'9')) {
        part.push(c.nz_number()?);
        if !c.eat(b'.') {
            return Ok((part, false));
        }
        if !matches!(c.peek(), Some(b'1'..=b'9')) {
            return Ok((part, true));
        }
    }
    Ok((part, false))
}

fn section(c: &mut Cursor<'_>) -> LexResult<Section> {
    c.expect(b'[', "Expected [")?;
    let (part, dot) = section_part(c)?;
    if !dot && c.eat(b']') {
        return Ok(Section { part, text: None });
    }
    if !part.is_empty() && !dot {
        return Err("Invalid section");
    }
    let text = section_text(c, &part)?;
    Ok(Section {
        part,
        text: Some(text),
    })
}

fn section_text(c: &mut Cursor<'_>, part: &[u32]) -> LexResult<SectionText> {
    let word = c.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
    let word = word.to_ascii_uppercase();
    let text = match word.as_slice() {
        b"HEADER" => SectionText::Header,
        b"TEXT" => SectionText::Text,
        b"MIME" if !part.is_empty() => SectionText::Mime,
        b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
            c.sp()?;
            c.expect(b'(', "Expected header field list")?;
            let mut fields = Vec::new();
            loop {
                let f = c.astring()?;
                fields.push(String::from_utf8_lossy(&f).into_owned());
                if !c.eat(b' ') {
                    break;
                }
            }
            c.expect(b')', "Missing ) after header fields")?;
            SectionText::HeaderFields {
                not: word.len() > 13,
                fields,
            }
        }
        _ => return Err("Invalid section"),
    };
    c.expect(b']', "Missing ] after section")?;
    Ok(text)
}

fn partial(c: &mut Cursor<'_>) -> LexResult<Option<Partial>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let origin = c.number()?;
    // `<origin>` alone (to the end) and a zero length are Dovecot's extensions of RFC 3501's
    // `<origin.nz-length>`; imaptest's scripts use the former.
    let length = if c.eat(b'.') { c.number()? } else { u32::MAX };
    c.expect(b'>', "Invalid partial")?;
    Ok(Some(Partial { origin, length }))
}

fn store<'a>(c: &mut Cursor<'a>, uid: bool) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let set = sequence_set(c)?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.eat(b'(') {
        if !c.keyword(b"UNCHANGEDSINCE") {
            return Err("Unknown STORE modifier");
        }
        c.sp()?;
        unchanged_since = Some(c.number64()?);
        c.expect(b')', "Missing )")?;
        c.sp()?;
    }
    let op = if c.eat(b'+') {
        StoreOp::Add
    } else if c.eat(b'-') {
        StoreOp::Remove
    } else {
        StoreOp::Replace
    };
    let silent = if c.keyword(b"FLAGS") {
        false
    } else if c.keyword(b"FLAGS.SILENT") {
        true
    } else {
        return Err("Expected FLAGS");
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        flag_list(c)?
    } else {
        let mut flags = vec![flag(c)?];
        while c.eat(b' ') {
            flags.push(flag(c)?);
        }
        flags
    };
    c.end()?;
    Ok(CommandBody::Store {
        uid,
        set,
        unchanged_since,
        op,
        silent,
        flags,
    })
}

fn id<'a>(c: &mut Cursor<'a>) -> LexResult<CommandBody<'a>> {
    c.sp()?;
    let params = if c.keyword(b"NIL") {
        None
    } else {
        c.expect(b'(', "Expected ID parameter list")?;
        let mut params = Vec::new();
        if !c.eat(b')') {
            loop {
                let k = c.string()?;
                c.sp()?;
                let v = c.nstring()?;
                params.push((k, v));
                if !c.eat(b' ') {
                    break;
                }
            }
            c.expect(b')', "Missing )")?;
        }
        Some(params)
    };
    c.end()?;
    Ok(CommandBody::Id { params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> CommandBody<'_> {
        match parse(s.as_bytes()) {
            Ok((c, n)) => {
                assert_eq!(n, s.len(), "consumed all of {s:?}");
                c.body
            }
            Err(e) => panic!("{s:?}: {e:?}"),
        }
    }

    fn bad(s: &str) -> (Option<&[u8]>, &'static str) {
        match parse(s.as_bytes()) {
            Err(ParseError::Bad {
                tag,
                consumed,
                reason,
                ..
            }) => {
                assert_eq!(consumed, s.len());
                (tag, reason)
            }
            other => panic!("{s:?}: expected Bad, got {other:?}"),
        }
    }

    #[test]
    fn simple_commands() {
        assert_eq!(ok("a CAPABILITY\r\n"), CommandBody::Capability);
        assert_eq!(ok("a noop\r\n"), CommandBody::Noop);
        assert_eq!(ok("a LOGOUT\n"), CommandBody::Logout);
        assert_eq!(ok("a STARTTLS\r\n"), CommandBody::StartTls);
        assert_eq!(ok("a IDLE\r\n"), CommandBody::Idle);
        assert_eq!(ok("a CHECK\r\n"), CommandBody::Check);
        assert_eq!(ok("a CLOSE\r\n"), CommandBody::Close);
        assert_eq!(ok("a UNSELECT\r\n"), CommandBody::Unselect);
        assert_eq!(ok("a NAMESPACE\r\n"), CommandBody::Namespace);
        assert_eq!(ok("a EXPUNGE\r\n"), CommandBody::Expunge { uids: None });
        assert!(matches!(
            ok("a UID EXPUNGE 1:3\r\n"),
            CommandBody::Expunge { uids: Some(_) }
        ));
    }

    #[test]
    fn login_forms() {
        assert_eq!(
            ok("1 LOGIN user \"p a\\\"ss\"\r\n"),
            CommandBody::Login {
                username: Cow::Borrowed(b"user"),
                password: Cow::Owned(b"p a\"ss".to_vec()),
            }
        );
        assert_eq!(
            ok("1 LOGIN {4}\r\nuser {3+}\r\npwd\r\n"),
            CommandBody::Login {
                username: Cow::Borrowed(b"user"),
                password: Cow::Borrowed(b"pwd"),
            }
        );
        assert_eq!(
            ok("a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n"),
            CommandBody::Authenticate {
                mechanism: b"PLAIN",
                initial: Some(b"AHVzZXIAcGFzcw=="),
            }
        );
        assert_eq!(
            ok("a AUTHENTICATE PLAIN\r\n"),
            CommandBody::Authenticate {
                mechanism: b"PLAIN",
                initial: None,
            }
        );
    }

    #[test]
    fn mailbox_commands() {
        assert_eq!(
            ok("a SELECT INBOX (CONDSTORE)\r\n"),
            CommandBody::Select {
                mailbox: Cow::Borrowed(b"INBOX"),
                condstore: true,
            }
        );
        assert!(matches!(
            ok("a EXAMINE \"Sent\"\r\n"),
            CommandBody::Examine {
                condstore: false,
                ..
            }
        ));
        assert!(matches!(
            ok("a CREATE foo/\r\n"),
            CommandBody::Create { .. }
        ));
        assert!(matches!(
            ok("a CREATE x (USE (\\Drafts))\r\n"),
            CommandBody::Create { .. }
        ));
        assert!(matches!(ok("a DELETE foo\r\n"), CommandBody::Delete { .. }));
        assert!(matches!(ok("a RENAME a b\r\n"), CommandBody::Rename { .. }));
        assert!(matches!(
            ok("a SUBSCRIBE a\r\n"),
            CommandBody::Subscribe { .. }
        ));
        assert!(matches!(
            ok("a UNSUBSCRIBE a\r\n"),
            CommandBody::Unsubscribe { .. }
        ));
        assert!(matches!(ok("a LSUB \"\" *\r\n"), CommandBody::Lsub { .. }));
        assert_eq!(
            ok("a STATUS INBOX (MESSAGES UIDNEXT unseen)\r\n"),
            CommandBody::Status {
                mailbox: Cow::Borrowed(b"INBOX"),
                items: vec![
                    StatusItem::Messages,
                    StatusItem::UidNext,
                    StatusItem::Unseen
                ],
            }
        );
        assert!(matches!(
            ok("a GETQUOTAROOT INBOX\r\n"),
            CommandBody::GetQuotaRoot { .. }
        ));
        assert_eq!(
            ok("a SETQUOTA \"\" (STORAGE 10)\r\n"),
            CommandBody::SetQuota
        );
        assert!(
            matches!(ok("a ENABLE CONDSTORE IMAP4rev2\r\n"), CommandBody::Enable { capabilities } if capabilities.len() == 2)
        );
        assert!(matches!(
            ok("a ID NIL\r\n"),
            CommandBody::Id { params: None }
        ));
        assert!(
            matches!(ok("a ID (\"name\" \"x\" \"v\" NIL)\r\n"), CommandBody::Id { params: Some(p) } if p.len() == 2)
        );
    }

    #[test]
    fn list_forms() {
        let CommandBody::List(l) = ok("a LIST \"\" %\r\n") else {
            panic!()
        };
        assert!(!l.extended);
        assert_eq!(l.patterns, vec![Cow::Borrowed(&b"%"[..])]);
        let CommandBody::List(l) = ok(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX* \"Sent\") RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES))\r\n",
        ) else {
            panic!()
        };
        assert!(l.extended && l.select_subscribed && l.recursive_match && l.return_children);
        assert_eq!(l.patterns.len(), 2);
        assert_eq!(l.return_status, vec![StatusItem::Messages]);
        bad("a LIST (RECURSIVEMATCH) \"\" *\r\n");
        bad("a LIST \"\"\r\n");
    }

    #[test]
    fn append_forms() {
        let CommandBody::Append { mailbox, messages } =
            ok("a APPEND saved (\\Seen $x) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\nhello\r\n")
        else {
            panic!()
        };
        assert_eq!(mailbox.as_ref(), b"saved");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].flags, vec![Flag::Seen, Flag::Keyword(b"$x")]);
        assert!(messages[0].date.is_some());
        assert_eq!(messages[0].data, b"hello");
        // MULTIAPPEND with LITERAL+ and a literal8.
        let CommandBody::Append { messages, .. } = ok("a APPEND x {2+}\r\nab () ~{3}\r\na\0c\r\n")
        else {
            panic!()
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].data, b"a\0c");
        bad("a APPEND x\r\n");
        bad("a APPEND x \"bad date\" {1}\r\nx\r\n");
    }

    #[test]
    fn fetch_forms() {
        let CommandBody::Fetch { uid, items, .. } = ok("a FETCH 1:* ALL\r\n") else {
            panic!()
        };
        assert!(!uid);
        assert_eq!(items.len(), 4);
        let CommandBody::Fetch { items, .. } = ok("a FETCH 1 FAST\r\n") else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        let CommandBody::Fetch { items, .. } = ok("a FETCH 1 FULL\r\n") else {
            panic!()
        };
        assert_eq!(items.len(), 5);
        let CommandBody::Fetch {
            uid,
            items,
            changed_since,
            ..
        } = ok("a UID FETCH 1,3:5 (UID FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From \"To\")]<0.100> BODY[] BODY[TEXT] BODY[2.MIME] BINARY.PEEK[1]<5.6> BINARY.SIZE[1] RFC822.SIZE MODSEQ) (CHANGEDSINCE 12345)\r\n")
        else {
            panic!()
        };
        assert!(uid);
        assert_eq!(changed_since, Some(12345));
        assert_eq!(items[0], FetchItem::Uid);
        assert_eq!(
            items[2],
            FetchItem::BodySection {
                peek: true,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::HeaderFields {
                        not: false,
                        fields: vec!["From".into(), "To".into()],
                    }),
                },
                partial: Some(Partial {
                    origin: 0,
                    length: 100
                }),
            }
        );
        assert_eq!(
            items[3],
            FetchItem::BodySection {
                peek: false,
                section: Section::default(),
                partial: None
            }
        );
        assert!(
            matches!(&items[5], FetchItem::BodySection { section, .. } if section.part == [2] && section.text == Some(SectionText::Mime))
        );
        // `<origin>` alone runs to the end (Dovecot, imaptest).
        let CommandBody::Fetch { items: to_end, .. } = ok("a FETCH 1 BINARY.PEEK[1]<40>\r\n")
        else {
            panic!("not a FETCH")
        };
        assert!(matches!(
            &to_end[0],
            FetchItem::Binary {
                partial: Some(Partial {
                    origin: 40,
                    length: u32::MAX
                }),
                ..
            }
        ));
        assert!(
            matches!(&items[6], FetchItem::Binary { peek: true, section, partial: Some(_) } if section.part == [1])
        );
        let CommandBody::Fetch { items, .. } = ok("a FETCH 1 BODY[HEADER.FIELDS.NOT (X)]\r\n")
        else {
            panic!()
        };
        assert!(
            matches!(&items[0], FetchItem::BodySection { section, .. } if matches!(section.text, Some(SectionText::HeaderFields { not: true, .. })))
        );
        let CommandBody::Fetch { items, .. } = ok("a FETCH 1 (BODY BODYSTRUCTURE ENVELOPE)\r\n")
        else {
            panic!()
        };
        assert_eq!(
            items,
            vec![
                FetchItem::Body,
                FetchItem::BodyStructure,
                FetchItem::Envelope
            ]
        );
        bad("a FETCH 1 (FLAGS\r\n");
        bad("a FETCH 0 FLAGS\r\n");
        bad("a FETCH 1 BODY[MIME]\r\n");
        bad("a FETCH 1 BODY[1.]\r\n");
        bad("a FETCH 1 BODY[]<1.>\r\n");
        bad("a FETCH 1 FOO\r\n");
        bad("a FETCH 1 FLAGS \r\n");
    }

    #[test]
    fn store_search_copy() {
        assert_eq!(
            ok("a STORE 1:2 +FLAGS.SILENT (\\Deleted $Junk)\r\n"),
            CommandBody::Store {
                uid: false,
                set: SequenceSet::parse(b"1:2").unwrap(),
                unchanged_since: None,
                op: StoreOp::Add,
                silent: true,
                flags: vec![Flag::Deleted, Flag::Keyword(b"$Junk")],
            }
        );
        assert!(matches!(
            ok("a UID STORE 5 (UNCHANGEDSINCE 7) -FLAGS \\Seen \\Foo\r\n"),
            CommandBody::Store { uid: true, unchanged_since: Some(7), op: StoreOp::Remove, silent: false, ref flags, .. } if flags == &[Flag::Seen, Flag::Extension(b"Foo")]
        ));
        assert!(matches!(
            ok("a STORE 1 FLAGS ()\r\n"),
            CommandBody::Store { op: StoreOp::Replace, ref flags, .. } if flags.is_empty()
        ));
        assert!(matches!(
            ok("a SEARCH CHARSET UTF-8 UNSEEN FROM \"x\"\r\n"),
            CommandBody::Search {
                uid: false,
                charset: Some(_),
                criteria: SearchKey::And(_),
                ..
            }
        ));
        assert!(matches!(
            ok("a UID SEARCH RETURN (MIN COUNT) 1:*\r\n"),
            CommandBody::Search { uid: true, ret: Some(r), .. } if r == vec![SearchReturn::Min, SearchReturn::Count]
        ));
        assert!(matches!(
            ok("a SEARCH SUBJECT {3}\r\nabc\r\n"),
            CommandBody::Search { .. }
        ));
        assert!(matches!(
            ok("a COPY 1:3 Trash\r\n"),
            CommandBody::Copy { uid: false, .. }
        ));
        assert!(matches!(
            ok("a UID MOVE 1:3 Trash\r\n"),
            CommandBody::Move { uid: true, .. }
        ));
        bad("a STORE 1 FLAGS\r\n");
        bad("a SEARCH\r\n");
        bad("a SEARCH (SEEN\r\n");
        bad("a COPY 1\r\n");
    }

    #[test]
    fn sort_forms() {
        let rev_subject_size = vec![
            SortCriterion {
                key: SortKey::Subject,
                reverse: true,
            },
            SortCriterion {
                key: SortKey::Size,
                reverse: false,
            },
        ];
        assert!(matches!(
            ok("a SORT (REVERSE subject SIZE) UTF-8 ALL\r\n"),
            CommandBody::Sort { uid: false, ret: None, criteria, keys: SearchKey::All, .. }
                if criteria == rev_subject_size
        ));
        assert!(matches!(
            ok("a UID SORT RETURN (MIN COUNT) (DISPLAYFROM) us-ascii 1:* UNSEEN\r\n"),
            CommandBody::Sort { uid: true, ret: Some(r), keys: SearchKey::And(_), .. }
                if r == vec![SearchReturn::Min, SearchReturn::Count]
        ));
        assert_eq!(
            bad("a SORT (BOGUS) UTF-8 ALL\r\n").1,
            "Unknown sort criterion"
        );
        bad("a SORT () UTF-8 ALL\r\n");
        bad("a SORT SUBJECT UTF-8 ALL\r\n");
        bad("a SORT (SUBJECT) UTF-8\r\n");
        bad("a SORT (REVERSE) UTF-8 ALL\r\n");
        bad("a SORT (SUBJECT\r\n");
        assert!(matches!(
            ok("a UID THREAD references UTF-8 UNDELETED\r\n"),
            CommandBody::Thread {
                uid: true,
                algorithm: Algorithm::References,
                ..
            }
        ));
        assert!(matches!(
            ok("a THREAD ORDEREDSUBJECT US-ASCII ALL\r\n"),
            CommandBody::Thread {
                uid: false,
                algorithm: Algorithm::OrderedSubject,
                ..
            }
        ));
        assert_eq!(
            bad("a THREAD BOGUS UTF-8 ALL\r\n").1,
            "Unknown thread algorithm"
        );
        bad("a THREAD REFERENCES UTF-8\r\n");
    }

    #[test]
    fn errors_carry_tag() {
        assert_eq!(
            bad("tag1 FROB\r\n"),
            (Some(&b"tag1"[..]), "Unknown command")
        );
        assert_eq!(bad("\r\n").0, None);
        assert_eq!(bad("+x NOOP\r\n").0, None);
        assert_eq!(bad("a\r\n").0, Some(&b"a"[..]));
        assert_eq!(bad("a NOOP extra\r\n").0, Some(&b"a"[..]));
        assert_eq!(bad("a UID FROB 1\r\n").0, Some(&b"a"[..]));
        assert_eq!(bad("a LOGIN  x y\r\n").0, Some(&b"a"[..]));
    }

    #[test]
    fn incomplete_and_literals() {
        assert_eq!(parse(b"a NOOP"), Err(ParseError::Incomplete));
        assert_eq!(
            parse(b"a LOGIN {4}\r\nus"),
            Err(ParseError::NeedLiteral {
                size: 4,
                non_sync: false,
                offset: 13
            })
        );
        assert_eq!(
            parse(b"a LOGIN {4+}\r\nuser {3}\r\n"),
            Err(ParseError::NeedLiteral {
                size: 3,
                non_sync: false,
                offset: 24
            })
        );
        // An empty synchronising literal still waits for its "+" ...
        assert_eq!(
            parse(b"a LOGIN {0}\r\n"),
            Err(ParseError::NeedLiteral {
                size: 0,
                non_sync: false,
                offset: 13
            })
        );
        // ... a non-synchronising one does not, and what follows completes the command.
        assert_eq!(parse(b"a LOGIN {0+}\r\n"), Err(ParseError::Incomplete));
        assert!(parse(b"a LOGIN {0}\r\n {0}\r\n\r\n").is_ok());
        // Two pipelined commands: only the first is consumed.
        let (c, n) = parse(b"a NOOP\r\nb NOOP\r\n").unwrap();
        assert_eq!(c.tag, b"a");
        assert_eq!(n, 8);
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_line: 30,
            max_literal: 100,
        };
        assert!(matches!(
            parse_with(b"a APPEND x {4294967295}\r\n", &limits),
            Err(ParseError::LiteralTooLarge {
                tag: Some(b"a"),
                size: 4294967295,
                non_sync: false,
                consumed: 25
            })
        ));
        assert!(matches!(
            parse_with(b"a APPEND x {101+}\r\n", &limits),
            Err(ParseError::LiteralTooLarge { non_sync: true, .. })
        ));
        assert!(matches!(
            parse_with(
                b"a APPEND x {99999999999999999999999}\r\n",
                &Limits {
                    max_line: 100,
                    max_literal: 100
                }
            ),
            Err(ParseError::Bad { .. }) | Err(ParseError::LiteralTooLarge { .. })
        ));
        assert!(matches!(
            parse_with(b"a NOOP 0123456789012345678901234567890123456789", &limits),
            Err(ParseError::LineTooLong {
                tag: Some(b"a"),
                skip_from: 0
            })
        ));
        assert!(matches!(
            parse_with(
                b"a LOGIN {3}\r\nabc 0123456789012345678901234567890\r\n",
                &limits
            ),
            Err(ParseError::LineTooLong { skip_from: 16, .. })
        ));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn parse_never_panics(input in prop::collection::vec(any::<u8>(), 0..300)) {
                let limits = Limits { max_line: 100, max_literal: 50 };
                match parse_with(&input, &limits) {
                    Ok((_, n)) => prop_assert!(n > 0 && n <= input.len()),
                    Err(ParseError::Bad { consumed, .. }) => prop_assert!(consumed > 0 && consumed <= input.len()),
                    Err(ParseError::LiteralTooLarge { consumed, .. }) => prop_assert!(consumed <= input.len()),
                    Err(ParseError::LineTooLong { skip_from, .. }) => prop_assert!(skip_from <= input.len()),
                    Err(ParseError::NeedLiteral { offset, size, .. }) => {
                        prop_assert!(size <= 50);
                        prop_assert!(offset <= input.len());
                    }
                    Err(ParseError::Incomplete) => {}
                }
            }

            #[test]
            fn commandish_lines_never_panic(
                tag in "[a-z0-9]{1,4}",
                words in prop::collection::vec(prop::sample::select(vec![
                    "FETCH", "UID", "STORE", "SEARCH", "1:*", "(", ")", "[", "]", "BODY[1.2]",
                    "\\Seen", "\"q\"", "{2}\r\nab", "{1+}\r\nx", "NIL", "<0.5>", "OR", "NOT",
                    "HEADER.FIELDS", "LIST", "APPEND", "INBOX", "*", "%", "CHARSET", "RETURN",
                ]), 0..12),
            ) {
                let line = format!("{tag} {}\r\n", words.join(" "));
                let _ = parse(line.as_bytes());
            }
        }
    }
}

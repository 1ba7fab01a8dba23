//! The SMTP server session: a sans-IO state machine (RFC 5321, 6409, 3207, 4954, 8314, 1870,
//! 6152, 2920, 3463, 6531, 3030).
//!
//! The driver owns the socket and calls, in a loop:
//!
//! 1. [`Session::feed`] with everything it has buffered. The session processes as many
//!    pipelined commands as it can, appends replies to its output, and returns
//!    [`Progress`]: how many input bytes it consumed (drop them; keep the rest for the next
//!    call), an optional [`Action`] the driver must perform, and the commands that completed.
//! 2. Writes [`Session::output`] to the socket and calls [`Session::clear_output`].
//! 3. Performs the action, if any, and reports back:
//!    - [`Action::StartTls`]: flush the `220`, then **discard every plaintext byte already
//!      read after `Progress::consumed`** (RFC 3207 §4.2: bytes pipelined after STARTTLS are
//!      an injection attack, CVE-2011-0411), run the TLS handshake, call
//!      [`Session::tls_established`].
//!    - [`Action::Authenticate`]: verify the password (slow hashing belongs off the state
//!      machine), call [`Session::auth_result`].
//!    - [`Action::Deliver`]: store or queue the message, call [`Session::delivery_result`].
//!
//!    While an action is outstanding, `feed` consumes nothing; after reporting the result,
//!    call `feed` again with the input still buffered (pipelined commands wait, not vanish).
//! 4. Closes the connection once output is flushed and [`Session::wants_close`] is true.
//!
//! Buffering: outside of an outstanding action the session leaves at most one unfinished
//! command line unconsumed — never more than `max(max_line_length, 12288)` octets (12288 is
//! the AUTH line limit of RFC 4954); message data and over-long lines are consumed as they
//! arrive. While an action is outstanding, stop reading from the socket (or cap the buffer).
//!
//! Latency hooks: [`Progress::completed`] lists each command whose final reply was written.
//! DATA's "end of data to 250" is the time from the [`Action::Deliver`] return to
//! [`Session::delivery_result`], which returns [`CommandKind::Data`] (or `Bdat`); AUTH with a
//! credential check completes in [`Session::auth_result`]. The banner is
//! [`Session::greeting`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use memchr::memchr;

use super::address::{routing_hazard, LocalPart, ReversePath};
use super::data::{DataError, DataLimits, DataReader, DataStatus, Framing};
use super::envelope::{
    trace_prefix, with_protocol, Envelope, LocalRecipient, QueueIdGenerator, Trace,
};
use super::parser::{
    self, BodyType, Command, CommandError, CommandKind, Line, MailParams, Parsed, RcptParams,
    SASL_LINE_LIMIT,
};
use super::reply::{write_multiline, write_reply, EnhancedStatus};

/// Which port / role a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 25: inbound from other servers. No AUTH ever; only local recipients.
    Mx,
    /// Port 587 (RFC 6409): STARTTLS, AUTH only after TLS, AUTH required to send.
    Submission,
    /// Port 465 (RFC 8314): implicit TLS, AUTH required to send.
    Submissions,
}

/// Per-listener session settings, shared by all sessions of that listener.
#[derive(Debug)]
pub struct SessionConfig {
    /// Our hostname: banner, EHLO reply, Received fields.
    pub hostname: String,
    /// The listener's role.
    pub listener: ListenerKind,
    /// Whether STARTTLS can be offered (a certificate is loaded).
    pub tls_available: bool,
    /// Largest message in octets, advertised as `SIZE` (default 25 MiB).
    pub max_message_size: usize,
    /// Most recipients per message (default 100); the next gets `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command or message line including CRLF (default 1000, RFC 5321 §4.5.3.1.6).
    pub max_line_length: usize,
    /// Largest header section in octets (default 512 KiB).
    pub max_header_bytes: usize,
    /// Most header fields (default 1000).
    pub max_headers: usize,
    /// Error replies before the session is closed with `421` (default 20).
    pub max_errors: u32,
    /// Queue id source (one per executor, shared by its listeners).
    pub queue_ids: Arc<QueueIdGenerator>,
    /// The mailbox a bare `<Postmaster>` means; also takes postmaster mail for any local
    /// domain that has no postmaster of its own (default `postmaster@` the hostname).
    pub postmaster: String,
}

impl SessionConfig {
    /// A configuration with the defaults above and TLS available.
    pub fn new(
        hostname: impl Into<String>,
        listener: ListenerKind,
        queue_ids: Arc<QueueIdGenerator>,
    ) -> Self {
        let hostname = hostname.into();
        Self {
            postmaster: format!("postmaster@{}", hostname.to_ascii_lowercase()),
            hostname,
            listener,
            tls_available: true,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 1000,
            max_header_bytes: 512 * 1024,
            max_headers: 1000,
            max_errors: 20,
            queue_ids,
        }
    }

    fn data_limits(&self) -> DataLimits {
        DataLimits {
            max_message_size: self.max_message_size,
            max_line_length: self.max_line_length,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }
}

/// How the directory classifies a recipient address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A local address (account, alias or catch-all) and the accounts it delivers to.
    Local(Vec<String>),
    /// A local domain without such an address (`550 5.1.1`).
    UnknownLocal,
    /// Not one of our domains: relay, allowed only when authenticated.
    NonLocal,
}

/// Account and alias lookups, implemented by the server and lent to each [`Session::feed`].
pub trait Directory {
    /// Classifies `addr` (canonical `local@domain`, domain lower-cased).
    fn resolve(&self, addr: &str) -> Resolution;
    /// Whether the authenticated `account` may use `from` as its envelope sender.
    fn may_send_as(&self, account: &str, from: &str) -> bool;
    /// Whether `account` is at or over its quota (new mail must wait).
    fn is_full(&self, _account: &str) -> bool {
        false
    }
}

/// SASL mechanisms the session decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto LOGIN mechanism.
    Login,
}

/// Work the driver must do before the session can continue.
pub enum Action {
    /// Flush output, drop all buffered plaintext input, do the TLS handshake, then call
    /// [`Session::tls_established`].
    StartTls,
    /// Check the credentials, then call [`Session::auth_result`].
    Authenticate {
        /// Mechanism used.
        mechanism: AuthMechanism,
        /// Authentication identity (authcid) as sent.
        user: String,
        /// The password.
        password: String,
    },
    /// Store/queue the message, then call [`Session::delivery_result`].
    Deliver(Box<Envelope>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::StartTls => f.write_str("StartTls"),
            // Never print the password.
            Action::Authenticate {
                mechanism, user, ..
            } => f
                .debug_struct("Authenticate")
                .field("mechanism", mechanism)
                .field("user", user)
                .finish_non_exhaustive(),
            Action::Deliver(env) => f.debug_tuple("Deliver").field(&env.queue_id).finish(),
        }
    }
}

/// Why delivery of an accepted message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later (`451 4.3.0`).
    #[error("temporary local failure")]
    Temporary,
    /// Out of disk (`452 4.3.1`).
    #[error("insufficient system storage")]
    InsufficientStorage,
    /// Will never work (`554 5.3.0`).
    #[error("permanent delivery failure")]
    Permanent,
}

/// Result of one [`Session::feed`].
#[derive(Debug, Default)]
pub struct Progress {
    /// Input bytes used; the driver drops them and keeps the rest.
    pub consumed: usize,
    /// Work for the driver, if the session is now waiting.
    pub action: Option<Action>,
    /// Commands whose final reply was written during this call, in order (for latency
    /// histograms). DATA/BDAT LAST with an accepted message and AUTH with a credential check
    /// complete later: see [`Session::delivery_result`] and [`Session::auth_result`].
    pub completed: Vec<CommandKind>,
}

#[derive(Debug)]
struct Transaction {
    from: String,
    size_hint: Option<u64>,
    body_type: BodyType,
    smtputf8: bool,
    rcpts_local: Vec<LocalRecipient>,
    rcpts_remote: Vec<String>,
    /// Message being assembled from BDAT chunks.
    bdat: Option<DataReader>,
}

impl Transaction {
    fn rcpt_count(&self) -> usize {
        self.rcpts_local.len() + self.rcpts_remote.len()
    }

    fn has_rcpt(&self, addr: &str) -> bool {
        self.rcpts_local.iter().any(|r| r.address == addr)
            || self.rcpts_remote.iter().any(|r| r == addr)
    }
}

/// A canned reply: code, enhanced status, text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Canned(u16, EnhancedStatus, &'static str);

const fn st(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
    EnhancedStatus::new(class, subject, detail)
}

const NEED_MAIL: Canned = Canned(503, st(5, 5, 1), "Error: need MAIL command");
const NO_RCPTS: Canned = Canned(554, st(5, 5, 1), "Error: no valid recipients");
const BDAT_SYNTAX: Canned = Canned(501, st(5, 5, 4), "Syntax: BDAT <size> [LAST]");
/// A chunk of a BDAT transaction that already failed (RFC 3030 §2: pipelined chunks after the
/// failure are read and thrown away). Not counted as a client error.
const DISCARDED: Canned = Canned(
    503,
    st(5, 5, 1),
    "Error: message already refused, chunk discarded",
);
const NO_MEMORY: Canned = Canned(
    452,
    st(4, 3, 1),
    "Error: insufficient system resources, try again later",
);

#[derive(Debug)]
enum SaslStep {
    PlainResponse,
    LoginUser,
    LoginPassword { user: String },
}

#[derive(Debug)]
enum Mode {
    Command,
    Data(DataReader),
    /// Reading a BDAT chunk; `reject` is the reply when the chunk is only being skipped.
    Chunk {
        remaining: u64,
        last: bool,
        reject: Option<Canned>,
    },
    Sasl(SaslStep),
    /// Discarding an over-long line through its LF.
    SkipLine {
        sasl: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    StartTls,
    Auth,
    Delivery { kind: CommandKind, queue_id: String },
}

/// Base64 as SASL clients send it; padding is not always present in the wild.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One SMTP server connection's protocol state.
#[derive(Debug)]
pub struct Session {
    cfg: Arc<SessionConfig>,
    peer_ip: IpAddr,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    auth: Option<String>,
    tx: Option<Transaction>,
    mode: Mode,
    pending: Option<Pending>,
    errors: u32,
    closing: bool,
    /// The server is short of memory for message data: new messages are refused for now.
    memory_pressure: bool,
    /// A BDAT transaction failed before its LAST chunk: the chunks still coming are
    /// discarded until LAST or another command.
    bdat_failed: bool,
    out: Vec<u8>,
    completed: Vec<CommandKind>,
}

impl Session {
    /// A new session for a connection from `peer_ip`; `tls_active` is true for implicit TLS
    /// (port 465). Call [`Session::greeting`] next.
    pub fn new(cfg: Arc<SessionConfig>, peer_ip: IpAddr, tls_active: bool) -> Self {
        Self {
            cfg,
            peer_ip,
            tls: tls_active,
            helo: None,
            esmtp: false,
            auth: None,
            tx: None,
            mode: Mode::Command,
            pending: None,
            errors: 0,
            closing: false,
            memory_pressure: false,
            bdat_failed: false,
            out: Vec::with_capacity(512),
            completed: Vec::new(),
        }
    }

    /// Queues the `220` banner.
    pub fn greeting(&mut self) {
        let text = format!("{} ESMTP ringpost", self.cfg.hostname);
        write_reply(&mut self.out, 220, None, &text);
    }

    /// Replies waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets output that has been written.
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Takes the pending output.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// True once the session is finished (QUIT, too many errors, lost framing): flush the
    /// output, then close.
    pub fn wants_close(&self) -> bool {
        self.closing
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated account, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// True while an [`Action`] is outstanding (feed consumes nothing then).
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Octets of message data held in memory (bounded by `max_message_size`).
    pub fn buffered_message_bytes(&self) -> usize {
        let data = match &self.mode {
            Mode::Data(r) => r.buffered(),
            _ => 0,
        };
        data + self
            .tx
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .map_or(0, DataReader::buffered)
    }

    /// The client sent nothing for the idle timeout: queues `421 4.4.2` (RFC 5321 §4.5.3.2
    /// lets the server close; saying why helps the client's logs) and ends the session.
    pub fn timed_out(&mut self) {
        self.close_with_421(st(4, 4, 2), "Error: timeout exceeded");
    }

    /// Queues one `421 <status> <hostname> <text>` and ends the session (once).
    fn close_with_421(&mut self, status: EnhancedStatus, text: &str) {
        if !self.closing {
            let text = format!("{} {text}", self.cfg.hostname);
            write_reply(&mut self.out, 421, Some(status), &text);
            self.closing = true;
        }
    }

    /// True while the client owes the rest of something it sent without waiting for a reply:
    /// a DATA message it has begun, or a BDAT chunk. (A partial line is the driver's to see.)
    pub fn is_mid_send(&self) -> bool {
        match &self.mode {
            Mode::Chunk { .. } => true,
            Mode::Data(r) => r.buffered() > 0,
            _ => false,
        }
    }

    /// True between commands with no message data in progress: where a stopping server may
    /// say goodbye without cutting a message or an exchange in half.
    pub fn is_between_commands(&self) -> bool {
        matches!(self.mode, Mode::Command)
            && self.pending.is_none()
            && self.buffered_message_bytes() == 0
    }

    /// The server is stopping: queues `421 4.3.2` (RFC 5321 §3.8; RFC 3463 X.3.2 names an
    /// imminent shutdown) and ends the session. The client retries later.
    pub fn shutting_down(&mut self) {
        self.close_with_421(
            st(4, 3, 2),
            "Service shutting down, closing transmission channel",
        );
    }

    /// Tells the session whether the server is short of memory for message data; while it is,
    /// DATA and the first BDAT of a message get `452 4.3.1` (RFC 5321 §4.2.5) instead of
    /// starting a message. The driver sets it before each [`Session::feed`].
    pub fn set_memory_pressure(&mut self, short: bool) {
        self.memory_pressure = short;
    }

    /// Gives up the message being received because the server is short of memory: its data
    /// is freed, the rest of it is read and thrown away, and it is answered `452 4.3.1`.
    /// Returns whether there was a message to give up.
    pub fn shed_message(&mut self) -> bool {
        let reader = match &mut self.mode {
            Mode::Data(r) => Some(r),
            _ => self.tx.as_mut().and_then(|t| t.bdat.as_mut()),
        };
        match reader {
            Some(r) => {
                r.shed();
                true
            }
            None => false,
        }
    }

    /// Processes buffered input. See the module documentation for the driver loop.
    pub fn feed(&mut self, input: &[u8], dir: &dyn Directory) -> Progress {
        let mut pos = 0;
        let mut action = None;
        while action.is_none() && !self.closing && self.pending.is_none() {
            let rest = &input[pos..];
            match &mut self.mode {
                Mode::Chunk {
                    remaining, reject, ..
                } => {
                    if *remaining > 0 && rest.is_empty() {
                        break;
                    }
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    if reject.is_none() {
                        if let Some(reader) = self.tx.as_mut().and_then(|t| t.bdat.as_mut()) {
                            reader.feed(&rest[..n]);
                        }
                    }
                    *remaining -= n as u64;
                    pos += n;
                    if *remaining == 0 {
                        action = self.chunk_done();
                    }
                }
                _ if rest.is_empty() => break,
                Mode::Data(reader) => match reader.feed(rest) {
                    DataStatus::NeedMore => pos = input.len(),
                    DataStatus::Complete { consumed } => {
                        pos += consumed;
                        action = self.data_done();
                    }
                },
                Mode::SkipLine { sasl } => match memchr(b'\n', rest) {
                    None => pos = input.len(),
                    Some(lf) => {
                        pos += lf + 1;
                        let sasl = *sasl;
                        self.mode = Mode::Command;
                        self.line_too_long(sasl);
                    }
                },
                Mode::Command => match parser::parse(rest, self.cfg.max_line_length) {
                    Parsed::Incomplete => break,
                    Parsed::TooLong(Some(len)) => {
                        pos += len;
                        self.line_too_long(false);
                    }
                    // The skipping mode finds the line end, in this input or a later one.
                    Parsed::TooLong(None) => self.mode = Mode::SkipLine { sasl: false },
                    Parsed::Complete { command, len } => {
                        pos += len;
                        action = self.command(command, dir);
                    }
                },
                Mode::Sasl(_) => {
                    match parser::next_line(rest, self.cfg.max_line_length.max(SASL_LINE_LIMIT)) {
                        Line::Incomplete => break,
                        Line::TooLong(Some(len)) => {
                            pos += len;
                            self.mode = Mode::Command;
                            self.line_too_long(true);
                        }
                        Line::TooLong(None) => self.mode = Mode::SkipLine { sasl: true },
                        Line::Complete { line, len } => {
                            pos += len;
                            action = self.sasl_line(line);
                        }
                    }
                }
            }
            self.check_error_limit();
        }
        Progress {
            consumed: pos,
            action,
            completed: std::mem::take(&mut self.completed),
        }
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded: everything is reset to the
    /// state before EHLO (RFC 3207 §4.2) and TLS is marked active.
    pub fn tls_established(&mut self) {
        debug_assert_eq!(
            self.pending,
            Some(Pending::StartTls),
            "tls_established without STARTTLS"
        );
        self.pending = None;
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.auth = None;
        self.tx = None;
        self.mode = Mode::Command;
    }

    /// Result of [`Action::Authenticate`]: `Some(account)` on success (`235 2.7.0`), `None`
    /// on failure (`535 5.7.8`). Completes the AUTH command.
    pub fn auth_result(&mut self, account: Option<String>) -> CommandKind {
        if self.pending != Some(Pending::Auth) {
            debug_assert!(false, "auth_result without Authenticate");
            return CommandKind::Auth;
        }
        self.pending = None;
        match account {
            Some(acct) => {
                tracing::debug!(account = %acct, "smtp auth ok");
                self.auth = Some(acct);
                self.reply(235, st(2, 7, 0), "Authentication successful");
            }
            None => {
                tracing::debug!(peer = %self.peer_ip, "smtp auth failed");
                self.reply(535, st(5, 7, 8), "Authentication credentials invalid");
                self.check_error_limit();
            }
        }
        CommandKind::Auth
    }

    /// Result of [`Action::Deliver`]: `250 2.0.0 Ok: queued as <id>` or the error's reply.
    /// Completes the DATA (or last BDAT) command, which is returned.
    pub fn delivery_result(&mut self, result: Result<(), DeliveryError>) -> CommandKind {
        let (kind, queue_id) = match &self.pending {
            Some(Pending::Delivery { kind, queue_id }) => (*kind, queue_id.clone()),
            _ => {
                debug_assert!(false, "delivery_result without Deliver");
                return CommandKind::Data;
            }
        };
        self.pending = None;
        match result {
            Ok(()) => {
                let text = format!("Ok: queued as {queue_id}");
                self.reply(250, st(2, 0, 0), &text);
            }
            Err(DeliveryError::Temporary) => self.reply(
                451,
                st(4, 3, 0),
                "Error: temporary failure, try again later",
            ),
            Err(DeliveryError::InsufficientStorage) => {
                self.reply(452, st(4, 3, 1), "Error: insufficient system storage")
            }
            Err(DeliveryError::Permanent) => {
                self.reply(554, st(5, 3, 0), "Error: message could not be delivered")
            }
        }
        kind
    }

    // ---- replies and bookkeeping ----

    fn reply(&mut self, code: u16, status: EnhancedStatus, text: &str) {
        if code >= 500 {
            self.errors += 1;
        }
        write_reply(&mut self.out, code, Some(status), text);
    }

    fn canned(&mut self, c: Canned) {
        self.reply(c.0, c.1, c.2);
    }

    fn check_error_limit(&mut self) {
        if !self.closing && self.errors >= self.cfg.max_errors {
            let text = format!(
                "{} Error: too many errors, closing connection",
                self.cfg.hostname
            );
            write_reply(&mut self.out, 421, Some(st(4, 7, 0)), &text);
            self.closing = true;
        }
    }

    fn line_too_long(&mut self, sasl: bool) {
        if sasl {
            self.reply(500, st(5, 5, 6), "Authentication exchange line is too long");
            self.completed.push(CommandKind::Auth);
        } else {
            self.reply(500, st(5, 5, 2), "Error: line too long");
            self.completed.push(CommandKind::Unknown);
        }
    }

    fn command_error(&mut self, e: CommandError) {
        let kind = e.kind();
        match e {
            CommandError::Malformed => self.reply(500, st(5, 5, 2), "Error: bad syntax"),
            CommandError::Unknown => self.reply(500, st(5, 5, 1), "Error: command not recognized"),
            CommandError::Syntax { reason, .. } => {
                let text = format!("Syntax error: {reason}");
                self.reply(501, st(5, 5, 4), &text);
            }
            CommandError::Address { kind, source } => {
                let (detail, what) = if kind == CommandKind::Mail {
                    (7, "sender")
                } else {
                    (3, "recipient")
                };
                let text = format!("Bad {what} address syntax: {source}");
                self.reply(501, st(5, 1, detail), &text);
            }
            CommandError::UnknownParameter { keyword, .. } => {
                let text = format!("Parameter not recognized or not implemented: {keyword}");
                self.reply(555, st(5, 5, 4), &text);
            }
            CommandError::Bdat { size: Some(size) } => {
                // The chunk still follows on the wire: skip it, and the message is lost.
                self.bdat_failed |= self.tx.is_some();
                self.tx = None;
                self.mode = Mode::Chunk {
                    remaining: size,
                    last: false,
                    reject: Some(BDAT_SYNTAX),
                };
                return;
            }
            CommandError::Bdat { size: None } => {
                // Without a size the chunk cannot be skipped; its bytes must never be read
                // as commands.
                self.reply(
                    501,
                    st(5, 5, 4),
                    "Syntax: BDAT <size> [LAST]; closing connection",
                );
                self.closing = true;
            }
        }
        self.completed.push(kind);
    }

    // ---- commands ----

    fn command(
        &mut self,
        parsed: Result<Command<'_>, CommandError>,
        dir: &dyn Directory,
    ) -> Option<Action> {
        let is_bdat = matches!(
            parsed,
            Ok(Command::Bdat { .. }) | Err(CommandError::Bdat { .. })
        );
        if !is_bdat {
            self.bdat_failed = false;
        }
        let cmd = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.command_error(e);
                return None;
            }
        };
        let kind = cmd.kind();
        let action = match cmd {
            Command::Ehlo(name) => {
                self.hello(name, true);
                None
            }
            Command::Helo(name) => {
                self.hello(name, false);
                None
            }
            Command::Mail { from, params } => {
                self.mail(from, params, dir);
                None
            }
            Command::Rcpt { to, params } => {
                self.rcpt(to, params, dir);
                None
            }
            Command::Data => {
                self.data();
                None
            }
            Command::Bdat { size, last } => {
                self.bdat(size, last);
                None
            }
            Command::Rset => {
                self.tx = None;
                self.reply(250, st(2, 0, 0), "Ok");
                None
            }
            Command::Noop => {
                self.reply(250, st(2, 0, 0), "Ok");
                None
            }
            Command::Quit => {
                let text = format!("{} closing connection", self.cfg.hostname);
                self.reply(221, st(2, 0, 0), &text);
                self.closing = true;
                None
            }
            Command::Vrfy(_) => {
                // Never enumerate accounts (RFC 5321 §3.5.3, §7.3).
                self.reply(
                    252,
                    st(2, 5, 0),
                    "Cannot VRFY user, but will accept message and attempt delivery",
                );
                None
            }
            Command::Expn(_) => {
                self.reply(502, st(5, 5, 1), "Error: EXPN not available");
                None
            }
            Command::Help(_) => {
                write_multiline(
                    &mut self.out,
                    214,
                    Some(st(2, 0, 0)),
                    [
                        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
                        "See RFC 5321",
                    ],
                );
                None
            }
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        };
        // Commands that switched to reading data or are waiting for a result complete later.
        let finished = matches!(self.mode, Mode::Command)
            && !matches!(self.pending, Some(Pending::Auth | Pending::Delivery { .. }));
        if finished {
            self.completed.push(kind);
        }
        action
    }

    fn hello(&mut self, name: &str, esmtp: bool) {
        // EHLO/HELO mid-session resets the transaction (RFC 5321 §4.1.4); AUTH state stays.
        self.tx = None;
        self.helo = Some(name.to_owned());
        self.esmtp = esmtp;
        let host = self.cfg.hostname.as_str();
        if !esmtp {
            write_reply(&mut self.out, 250, None, host);
            return;
        }
        let size = format!("SIZE {}", self.cfg.max_message_size);
        let mut lines: Vec<&str> = Vec::with_capacity(10);
        lines.extend([
            host,
            "PIPELINING",
            &size,
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
        ]);
        if !self.tls && self.cfg.tls_available {
            lines.push("STARTTLS");
        }
        if self.tls && self.cfg.listener != ListenerKind::Mx {
            lines.push("AUTH PLAIN LOGIN");
        }
        // RFC 2034: no enhanced status codes on the EHLO reply.
        write_multiline(&mut self.out, 250, None, lines);
    }

    fn mail(&mut self, from: ReversePath<'_>, params: MailParams<'_>, dir: &dyn Directory) {
        if self.helo.is_none() {
            return self.reply(503, st(5, 5, 1), "Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.reply(503, st(5, 5, 1), "Error: nested MAIL command");
        }
        let submission = self.cfg.listener != ListenerKind::Mx;
        if submission && !self.tls {
            return self.reply(530, st(5, 7, 0), "Must issue a STARTTLS command first");
        }
        if submission && self.auth.is_none() {
            return self.reply(530, st(5, 7, 0), "Authentication required");
        }
        if params
            .size
            .is_some_and(|s| s > self.cfg.max_message_size as u64)
        {
            return self.reply(
                552,
                st(5, 3, 4),
                "Message size exceeds fixed maximum message size",
            );
        }
        if params.body == Some(BodyType::BinaryMime) {
            // Not advertised: binary bodies could not be relayed or served to IMAP clients.
            return self.reply(555, st(5, 5, 4), "BODY=BINARYMIME not supported");
        }
        let from = match from {
            ReversePath::Null if submission => {
                return self.reply(550, st(5, 7, 1), "Error: null sender not permitted");
            }
            ReversePath::Null => String::new(),
            // A source route in the reverse-path is ignored (RFC 5321 Appendix C).
            ReversePath::Path(p) => {
                if p.mailbox.domain.is_none() {
                    return self.reply(
                        553,
                        st(5, 1, 7),
                        "Error: sender address must contain a domain",
                    );
                }
                if !p.mailbox.is_ascii() && !params.smtputf8 {
                    return self.reply(
                        553,
                        st(5, 6, 7),
                        "Error: non-ASCII address requires SMTPUTF8",
                    );
                }
                p.mailbox.canonical()
            }
        };
        if let (true, Some(account)) = (submission, self.auth.as_deref()) {
            if !dir.may_send_as(account, &from) {
                return self.reply(
                    550,
                    st(5, 7, 1),
                    "Error: sender address not owned by authenticated user",
                );
            }
        }
        self.tx = Some(Transaction {
            from,
            size_hint: params.size,
            body_type: params.body.unwrap_or_default(),
            smtputf8: params.smtputf8,
            rcpts_local: Vec::new(),
            rcpts_remote: Vec::new(),
            bdat: None,
        });
        self.reply(250, st(2, 1, 0), "Ok");
    }

    fn rcpt(&mut self, to: super::address::Path<'_>, _params: RcptParams<'_>, dir: &dyn Directory) {
        let Some(tx) = self.tx.as_ref() else {
            return self.canned(NEED_MAIL);
        };
        if tx.bdat.is_some() {
            return self.reply(503, st(5, 5, 1), "Error: RCPT not allowed after BDAT");
        }
        if tx.rcpt_count() >= self.cfg.max_recipients {
            // 452 is not a client error: do not count it towards the limit.
            write_reply(
                &mut self.out,
                452,
                Some(st(4, 5, 3)),
                "Error: too many recipients",
            );
            return;
        }
        let is_postmaster = to.route.is_none()
            && to.mailbox.domain.is_none()
            && matches!(to.mailbox.local, LocalPart::Dot(l) if l.eq_ignore_ascii_case("postmaster"));
        let addr = if is_postmaster {
            // RFC 5321 §4.5.1: `<Postmaster>` without a domain must be accepted.
            self.cfg.postmaster.clone()
        } else {
            if let Some(h) = routing_hazard(&to) {
                let text = format!("Error: relay access denied: {h}");
                return self.reply(550, st(5, 7, 1), &text);
            }
            if !to.mailbox.is_ascii() && !tx.smtputf8 {
                return self.reply(
                    553,
                    st(5, 6, 7),
                    "Error: non-ASCII address requires SMTPUTF8",
                );
            }
            to.mailbox.canonical()
        };
        let mut resolution = dir.resolve(&addr);
        if resolution == Resolution::UnknownLocal
            && addr != self.cfg.postmaster
            && addr
                .rsplit_once('@')
                .is_some_and(|(local, _)| local.eq_ignore_ascii_case("postmaster"))
        {
            // RFC 5321 §4.5.1: postmaster of every domain we serve must be accepted; a
            // domain without its own shares the primary one's.
            resolution = dir.resolve(&self.cfg.postmaster);
        }
        let authenticated = self.auth.is_some();
        let Some(tx) = self.tx.as_mut() else {
            return self.canned(NEED_MAIL);
        };
        match resolution {
            Resolution::Local(accounts) if accounts.iter().any(|a| dir.is_full(a)) => {
                // RFC 5321 §4.5.3.1.10: a full mailbox at RCPT is temporary (452, not 552); an
                // alias is refused whole rather than leaving out one of its accounts. Not a
                // client error: it does not count towards the error limit.
                write_reply(
                    &mut self.out,
                    452,
                    Some(st(4, 2, 2)),
                    "Error: mailbox full, try again later",
                );
            }
            Resolution::Local(accounts) if !accounts.is_empty() => {
                if !tx.has_rcpt(&addr) {
                    tx.rcpts_local.push(LocalRecipient {
                        address: addr,
                        accounts,
                    });
                }
                self.reply(250, st(2, 1, 5), "Ok");
            }
            Resolution::Local(_) | Resolution::UnknownLocal => self.reply(
                550,
                st(5, 1, 1),
                "Error: recipient address rejected: user unknown",
            ),
            Resolution::NonLocal if authenticated => {
                if !tx.has_rcpt(&addr) {
                    tx.rcpts_remote.push(addr);
                }
                self.reply(250, st(2, 1, 5), "Ok");
            }
            Resolution::NonLocal => self.reply(550, st(5, 7, 1), "Error: relaying denied"),
        }
    }

    fn data(&mut self) {
        let Some(tx) = self.tx.as_ref() else {
            return self.canned(NEED_MAIL);
        };
        if tx.bdat.is_some() {
            return self.reply(503, st(5, 5, 1), "Error: DATA not allowed after BDAT");
        }
        if tx.rcpt_count() == 0 {
            return self.canned(NO_RCPTS);
        }
        if self.memory_pressure {
            // The transaction stays: the client may try DATA again or give up with RSET.
            return self.canned(NO_MEMORY);
        }
        let reader = DataReader::new(Framing::DotStuffed, self.cfg.data_limits(), tx.size_hint);
        write_reply(&mut self.out, 354, None, "End data with <CR><LF>.<CR><LF>");
        self.mode = Mode::Data(reader);
    }

    fn bdat(&mut self, size: u64, last: bool) {
        let limits = self.cfg.data_limits();
        let reject = match self.tx.as_mut() {
            None if self.bdat_failed => {
                self.bdat_failed = !last;
                Some(DISCARDED)
            }
            None => Some(NEED_MAIL),
            Some(tx) if tx.rcpt_count() == 0 => Some(NO_RCPTS),
            Some(tx) if tx.bdat.is_none() && self.memory_pressure => Some(NO_MEMORY),
            Some(tx) => {
                if tx.bdat.is_none() {
                    let check_lines = tx.body_type != BodyType::BinaryMime;
                    tx.bdat = Some(DataReader::new(
                        Framing::Chunked { check_lines },
                        limits,
                        tx.size_hint,
                    ));
                }
                None
            }
        };
        if reject.is_some() {
            // RFC 3030 §2: a refused chunk is still read and thrown away, and the
            // transaction (if any) has failed.
            if self.tx.take().is_some() {
                self.bdat_failed = !last;
            }
        }
        self.mode = Mode::Chunk {
            remaining: size,
            last,
            reject,
        };
    }

    fn starttls(&mut self) -> Option<Action> {
        if self.tls {
            self.reply(503, st(5, 5, 1), "Error: TLS already active");
            return None;
        }
        if !self.cfg.tls_available {
            write_reply(&mut self.out, 454, Some(st(4, 7, 0)), "TLS not available");
            return None;
        }
        write_reply(&mut self.out, 220, Some(st(2, 0, 0)), "Ready to start TLS");
        self.pending = Some(Pending::StartTls);
        Some(Action::StartTls)
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Option<Action> {
        if self.cfg.listener == ListenerKind::Mx {
            self.reply(
                502,
                st(5, 5, 1),
                "Error: authentication not available on this port",
            );
            return None;
        }
        if self.helo.is_none() || !self.esmtp {
            self.reply(503, st(5, 5, 1), "Error: send EHLO first");
            return None;
        }
        if self.auth.is_some() {
            self.reply(503, st(5, 5, 1), "Error: already authenticated");
            return None;
        }
        if self.tx.is_some() {
            self.reply(
                503,
                st(5, 5, 1),
                "Error: AUTH not allowed during a mail transaction",
            );
            return None;
        }
        let mech = if mechanism.eq_ignore_ascii_case("PLAIN") {
            AuthMechanism::Plain
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            AuthMechanism::Login
        } else {
            self.reply(504, st(5, 5, 4), "Error: unrecognized authentication type");
            return None;
        };
        if !self.tls {
            self.reply(
                538,
                st(5, 7, 11),
                "Encryption required for requested authentication mechanism",
            );
            return None;
        }
        match (mech, initial) {
            (AuthMechanism::Plain, None) => {
                write_reply(&mut self.out, 334, None, "");
                self.mode = Mode::Sasl(SaslStep::PlainResponse);
                None
            }
            (AuthMechanism::Login, None) => {
                write_reply(&mut self.out, 334, None, "VXNlcm5hbWU6");
                self.mode = Mode::Sasl(SaslStep::LoginUser);
                None
            }
            (_, Some(ir)) => {
                let step = if mech == AuthMechanism::Plain {
                    SaslStep::PlainResponse
                } else {
                    SaslStep::LoginUser
                };
                self.sasl_response(ir.as_bytes(), step)
            }
        }
    }

    fn sasl_line(&mut self, line: &[u8]) -> Option<Action> {
        let Mode::Sasl(step) = std::mem::replace(&mut self.mode, Mode::Command) else {
            return None;
        };
        let action = if line == b"*" {
            self.reply(501, st(5, 0, 0), "Authentication cancelled");
            None
        } else {
            self.sasl_response(line, step)
        };
        // The exchange ended here unless it asked for more or went to the driver.
        if matches!(self.mode, Mode::Command) && self.pending.is_none() {
            self.completed.push(CommandKind::Auth);
        }
        action
    }

    /// One decoded client response of the SASL exchange (initial or on its own line).
    fn sasl_response(&mut self, b64: &[u8], step: SaslStep) -> Option<Action> {
        // "=" is an empty initial response (RFC 4954 §4).
        let decoded = if b64 == b"=" {
            Ok(Vec::new())
        } else {
            B64.decode(b64.trim_ascii())
        };
        let Ok(data) = decoded else {
            self.reply(501, st(5, 5, 2), "Error: cannot decode response");
            return None;
        };
        match step {
            SaslStep::PlainResponse => match decode_plain(&data) {
                Some((user, password)) => self.authenticate(AuthMechanism::Plain, user, password),
                None => self.auth_failed(),
            },
            SaslStep::LoginUser => match String::from_utf8(data) {
                Ok(user) if !user.is_empty() && !user.contains('\0') => {
                    write_reply(&mut self.out, 334, None, "UGFzc3dvcmQ6");
                    self.mode = Mode::Sasl(SaslStep::LoginPassword { user });
                    None
                }
                _ => self.auth_failed(),
            },
            SaslStep::LoginPassword { user } => match String::from_utf8(data) {
                Ok(password) if !password.contains('\0') => {
                    self.authenticate(AuthMechanism::Login, user, password)
                }
                _ => self.auth_failed(),
            },
        }
    }

    fn authenticate(
        &mut self,
        mechanism: AuthMechanism,
        user: String,
        password: String,
    ) -> Option<Action> {
        self.pending = Some(Pending::Auth);
        Some(Action::Authenticate {
            mechanism,
            user,
            password,
        })
    }

    fn auth_failed(&mut self) -> Option<Action> {
        self.reply(535, st(5, 7, 8), "Authentication credentials invalid");
        None
    }

    // ---- end of message ----

    fn data_done(&mut self) -> Option<Action> {
        let Mode::Data(reader) = std::mem::replace(&mut self.mode, Mode::Command) else {
            return None;
        };
        self.finish_message(reader.finish(), CommandKind::Data)
    }

    fn chunk_done(&mut self) -> Option<Action> {
        let Mode::Chunk { last, reject, .. } = std::mem::replace(&mut self.mode, Mode::Command)
        else {
            return None;
        };
        if let Some(r) = reject {
            if r == DISCARDED {
                write_reply(&mut self.out, r.0, Some(r.1), r.2);
            } else {
                self.canned(r);
            }
            self.completed.push(CommandKind::Bdat);
            return None;
        }
        let Some(tx) = self.tx.as_mut() else {
            self.canned(NEED_MAIL);
            self.completed.push(CommandKind::Bdat);
            return None;
        };
        let (error, size) = tx
            .bdat
            .as_ref()
            .map_or((None, 0), |r| (r.error(), r.size()));
        if let Some(e) = error {
            self.tx = None;
            self.bdat_failed = !last;
            self.data_error(e);
            self.completed.push(CommandKind::Bdat);
            return None;
        }
        if !last {
            let text = format!("Ok: {size} octets received");
            self.reply(250, st(2, 0, 0), &text);
            self.completed.push(CommandKind::Bdat);
            return None;
        }
        let result = match tx.bdat.take() {
            Some(reader) => reader.finish(),
            None => Ok(Bytes::new()),
        };
        self.finish_message(result, CommandKind::Bdat)
    }

    fn data_error(&mut self, e: DataError) {
        let text = format!("Error: {e}");
        match e {
            DataError::TooLarge { .. }
            | DataError::TooManyHeaders { .. }
            | DataError::HeaderTooLarge { .. } => self.reply(552, st(5, 3, 4), &text),
            DataError::BareLineEnding => self.reply(
                554,
                st(5, 6, 0),
                "Error: bare CR or LF in message data (RFC 5321 section 2.3.8)",
            ),
            DataError::LineTooLong { .. } => self.reply(554, st(5, 6, 0), &text),
            DataError::TooManyHops { .. } => self.reply(554, st(5, 4, 6), &text),
            DataError::OverBudget => self.canned(NO_MEMORY),
        }
    }

    fn finish_message(
        &mut self,
        result: Result<Bytes, DataError>,
        kind: CommandKind,
    ) -> Option<Action> {
        // Whatever happens, the transaction is over (RFC 5321 §4.1.1.4).
        let Some(tx) = self.tx.take() else {
            self.canned(NEED_MAIL);
            self.completed.push(kind);
            return None;
        };
        let body = match result {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(peer = %self.peer_ip, error = %e, "smtp message refused");
                self.data_error(e);
                self.completed.push(kind);
                return None;
            }
        };
        let queue_id = self.cfg.queue_ids.next_id();
        let helo = self.helo.clone().unwrap_or_default();
        let for_rcpt = if tx.rcpt_count() == 1 {
            tx.rcpts_local
                .first()
                .map(|r| r.address.as_str())
                .or(tx.rcpts_remote.first().map(String::as_str))
        } else {
            None
        };
        let (prefix, return_path_len) = trace_prefix(&Trace {
            from: &tx.from,
            helo: &helo,
            peer_ip: self.peer_ip,
            hostname: &self.cfg.hostname,
            protocol: with_protocol(self.esmtp, tx.smtputf8, self.tls, self.auth.is_some()),
            queue_id: &queue_id,
            for_rcpt,
        });
        let env = Envelope {
            queue_id,
            from: tx.from,
            rcpts_local: tx.rcpts_local,
            rcpts_remote: tx.rcpts_remote,
            authenticated: self.auth.clone(),
            helo,
            peer_ip: self.peer_ip,
            tls: self.tls,
            body_type: tx.body_type,
            smtputf8: tx.smtputf8,
            prefix,
            body,
            return_path_len,
        };
        self.pending = Some(Pending::Delivery {
            kind,
            queue_id: env.queue_id.clone(),
        });
        Some(Action::Deliver(Box::new(env)))
    }
}

/// Decodes an RFC 4616 PLAIN message `[authzid] NUL authcid NUL passwd`. The authorization
/// identity must be empty or equal to the authentication identity (no proxy logins).
fn decode_plain(data: &[u8]) -> Option<(String, String)> {
    let mut parts = data.splitn(3, |&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let passwd = parts.next()?;
    if authcid.is_empty() || passwd.contains(&0) || (!authzid.is_empty() && authzid != authcid) {
        return None;
    }
    let user = String::from_utf8(authcid.to_vec()).ok()?;
    let password = String::from_utf8(passwd.to_vec()).ok()?;
    Some((user, password))
}

#[cfg(test)]
mod tests;

//! The POP3 session state machine (RFC 1939 AUTHORIZATION → TRANSACTION → UPDATE, with CAPA,
//! STLS and SASL PLAIN), sans-IO.
//!
//! The driver feeds received bytes to [`Session::process`], which consumes at most one command
//! line per call and returns a [`Progress`]: how many bytes it used and an [`Event`] telling the
//! driver what to do next. Work that needs the outside world (password check, maildrop lock,
//! message read, expunge) comes out as an [`Action`]; the driver performs it and reports the
//! outcome through the matching `*_result` method, then calls `process` again. Replies
//! accumulate in an output buffer the driver drains with [`Session::take_output`] (or
//! [`Session::output`] + [`Session::consume_output`]).
//!
//! Driver loop, in outline:
//!
//! ```text
//! loop {
//!     let p = session.process(&inbuf);
//!     inbuf.advance(p.consumed);
//!     match p.event {
//!         Event::NeedInput => { write(session.take_output()); read more into inbuf }
//!         Event::Flush => write(session.take_output()),
//!         Event::Completed(kind) => record latency of `kind` since the command started,
//!         Event::Action(a) => perform `a`, then call the matching `*_result`,
//!         Event::AwaitingResult => unreachable in a correct driver,
//!         Event::StartTls => { write(session.take_output()); inbuf.clear();
//!                              handshake; session.tls_established() }
//!         Event::Close => { write(session.take_output()); close; break }
//!     }
//! }
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;
use thiserror::Error;

use super::maildrop::{Maildrop, MaildropError, MaildropView, MessageError};
use super::multiline::write_stuffed;
use super::parser::{parse_command, parse_sasl_line, Command, CommandKind, Parse, ParseError};
use super::sasl::decode_plain;
use super::top::top_slice;

/// Output size above which `process` stops taking commands until the driver drains output.
/// It bounds memory when a client pipelines many `RETR`s without reading.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Server policy shared by every session of a listener.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// Host name shown in the greeting.
    pub hostname: String,
    /// Whether a certificate is loaded so that `STLS` can be offered on plaintext listeners.
    pub stls_available: bool,
    /// Allow USER/PASS/AUTH without TLS (off by default; for tests and trusted networks only).
    pub allow_plaintext_auth: bool,
    /// Failed logins after which the session replies and closes the connection.
    pub max_auth_failures: u32,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".to_string(),
            stls_available: true,
            allow_plaintext_auth: false,
            max_auth_failures: 3,
        }
    }
}

/// How the connection started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plaintext listener (port 110): `STLS` offered, authentication only after it.
    Plaintext,
    /// Implicit TLS listener (port 995): TLS from the first byte.
    ImplicitTls,
}

/// Work for the driver. Report its outcome through the named method before calling
/// [`Session::process`] again. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Verify a password (off the hot path); answer with [`Session::auth_result`].
    Authenticate {
        /// Login name as sent by the client.
        user: String,
        /// Password as sent by the client.
        password: String,
    },
    /// Move to the account's executor, take the exclusive POP3 lock on its INBOX and snapshot
    /// it; answer with [`Session::maildrop_result`].
    OpenMaildrop {
        /// Account name returned by authentication.
        account: String,
    },
    /// Read one message of the locked maildrop; answer with [`Session::body_result`].
    Fetch {
        /// IMAP UID in INBOX.
        uid: u32,
    },
    /// Expunge these INBOX UIDs as one logged expunge (UPDATE state); answer with
    /// [`Session::commit_result`]. The lock is released when the connection closes, whatever
    /// the outcome.
    Commit {
        /// UIDs marked deleted, ascending; never empty.
        expunge: Vec<u32>,
    },
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Authenticate { user, .. } => f
                .debug_struct("Authenticate")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Action::OpenMaildrop { account } => f
                .debug_struct("OpenMaildrop")
                .field("account", account)
                .finish(),
            Action::Fetch { uid } => f.debug_struct("Fetch").field("uid", uid).finish(),
            Action::Commit { expunge } => {
                f.debug_struct("Commit").field("expunge", expunge).finish()
            }
        }
    }
}

/// Why the driver could not read a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FetchError {
    /// The message no longer exists (expunged through IMAP since the snapshot).
    #[error("message no longer exists")]
    Gone,
    /// Storage failed for a reason that may pass.
    #[error("[SYS/TEMP] unable to read message")]
    Unavailable,
    /// The executor's output memory is held by clients that are slow to read: try later.
    #[error("[SYS/TEMP] server is short of memory, try again later")]
    ShortOfMemory,
}

/// What the driver should do after [`Session::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every complete line was handled: flush output and read more input.
    NeedInput,
    /// Output passed [`OUTPUT_HIGH_WATER`]: drain it, then call `process` again.
    Flush,
    /// A command finished and its reply is in the output buffer (for per-command latency).
    Completed(CommandKind),
    /// Perform this and report the outcome (see [`Action`]).
    Action(Action),
    /// An action's outcome has not been reported yet; nothing was consumed.
    AwaitingResult,
    /// `+OK` to STLS is in the output: send it, discard all unconsumed input (RFC 2595 forbids
    /// acting on it), run the TLS handshake and call [`Session::tls_established`].
    StartTls,
    /// Send remaining output and close the connection.
    Close,
}

/// Result of one [`Session::process`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that were used; drop them from the front of the input buffer.
    pub consumed: usize,
    /// What to do next.
    pub event: Event,
}

/// A driver called a method that does not fit the session's state (a driver bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DriverError {
    /// A `*_result` method was called while no such action was outstanding.
    #[error("no outstanding {0} action")]
    UnexpectedResult(&'static str),
    /// `tls_established` was called without a preceding `StartTls` event.
    #[error("no STLS in progress")]
    NotStartingTls,
}

/// The RFC 1939 state the session is in.
#[derive(Debug)]
enum Phase {
    /// Not logged in yet.
    Authorization,
    /// Logged in, the maildrop is locked and snapshotted.
    Transaction(MaildropView),
    /// QUIT was answered (or the session gave up); nothing more is read.
    Closed,
}

/// What the session waits for before it reads the next command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing: read the next command.
    None,
    /// `+ ` was sent for AUTH PLAIN: the next line is the client's SASL response.
    SaslResponse,
    /// [`Action::Authenticate`] for this command is outstanding.
    Auth(CommandKind),
    /// [`Action::OpenMaildrop`] for this command is outstanding.
    Maildrop(CommandKind),
    /// [`Action::Fetch`] is outstanding for message `msg`; `top` is `Some(n)` for TOP.
    Body { msg: u32, top: Option<u32> },
    /// [`Action::Commit`] is outstanding.
    Commit,
    /// `+OK Begin TLS negotiation` was queued; waiting for the handshake.
    Tls,
}

/// One POP3 connection's protocol state. `Send`, so it can move between executors with the
/// connection.
#[derive(Debug)]
pub struct Session {
    config: Arc<Pop3Config>,
    tls: bool,
    phase: Phase,
    wait: Wait,
    /// Name from a USER command; only the command right after it may use it.
    user: Option<String>,
    auth_failures: u32,
    /// Dropping the rest of an overlong line; the reply is sent once its end arrives.
    discarding: bool,
    /// An event produced by a `*_result` call, returned by the next `process`.
    queued: Option<Event>,
    out: BytesMut,
}

impl Session {
    /// A new session; the greeting is already in the output buffer.
    pub fn new(config: Arc<Pop3Config>, transport: Transport) -> Self {
        let mut session = Session {
            tls: transport == Transport::ImplicitTls,
            config,
            phase: Phase::Authorization,
            wait: Wait::None,
            user: None,
            auth_failures: 0,
            discarding: false,
            queued: None,
            out: BytesMut::with_capacity(1024),
        };
        // No timestamp in the greeting: APOP is not offered (RFC 1939 section 7).
        let host = session.config.hostname.clone();
        session.reply_ok(format_args!("{host} ringpost POP3 ready"));
        session
    }

    /// True once TLS protects the connection (implicit, or after STLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True in TRANSACTION state (logged in with the maildrop locked).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Transaction(_))
    }

    /// Bytes waiting to be sent.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Drop `n` sent bytes from the front of the output.
    pub fn consume_output(&mut self, n: usize) {
        self.out.advance(n.min(self.out.len()));
    }

    /// Octets of output waiting to be taken.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Take all pending output without copying it.
    pub fn take_output(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    /// Handle at most one command from the front of `input` (an `AUTH PLAIN` without initial
    /// response also takes the client's next line, if it is already there).
    pub fn process(&mut self, input: &[u8]) -> Progress {
        let mut consumed = 0;
        loop {
            let step = self.step(input.get(consumed..).unwrap_or_default());
            consumed += step.consumed;
            // `NeedInput` after using a line means the session wants the next line at once
            // (the SASL response after `+ `), which may already be in `input`.
            if step.event == Event::NeedInput && step.consumed > 0 && !self.discarding {
                continue;
            }
            return progress(consumed, step.event);
        }
    }

    /// One line, or one queued or sticky event.
    fn step(&mut self, input: &[u8]) -> Progress {
        if let Some(event) = self.queued.take() {
            return progress(0, event);
        }
        match self.wait {
            Wait::Tls => return progress(0, Event::StartTls),
            Wait::Auth(_) | Wait::Maildrop(_) | Wait::Body { .. } | Wait::Commit => {
                return progress(0, Event::AwaitingResult)
            }
            Wait::None | Wait::SaslResponse => {}
        }
        if matches!(self.phase, Phase::Closed) {
            return progress(0, Event::Close);
        }
        if self.out.len() >= OUTPUT_HIGH_WATER {
            return progress(0, Event::Flush);
        }
        if self.discarding {
            return self.discard(input);
        }
        if self.wait == Wait::SaslResponse {
            return match parse_sasl_line(input) {
                Parse::Incomplete => progress(0, Event::NeedInput),
                Parse::Overlong => self.start_discard(input.len()),
                Parse::Line { len, value } => {
                    self.wait = Wait::None;
                    let event = match value {
                        Ok(line) => self.sasl_response(line),
                        Err(e) => self.reply_err(CommandKind::Auth, e),
                    };
                    progress(len, event)
                }
            };
        }
        match parse_command(input) {
            Parse::Incomplete => progress(0, Event::NeedInput),
            Parse::Overlong => self.start_discard(input.len()),
            Parse::Line { len, value } => {
                let event = match value {
                    Ok(command) => self.command(command),
                    Err(e) => {
                        // A bad line still counts as "the next command" after USER.
                        self.user = None;
                        self.reply_err(CommandKind::Invalid, e)
                    }
                };
                progress(len, event)
            }
        }
    }

    /// Outcome of [`Action::Authenticate`]: the account name, or `None` if the credentials are
    /// wrong. Delaying a failure (against password guessing) is the driver's job.
    pub fn auth_result(&mut self, account: Option<String>) -> Result<(), DriverError> {
        let Wait::Auth(kind) = self.wait else {
            return Err(DriverError::UnexpectedResult("Authenticate"));
        };
        self.wait = Wait::None;
        let event = match account {
            Some(account) => {
                self.wait = Wait::Maildrop(kind);
                Event::Action(Action::OpenMaildrop { account })
            }
            None => self.auth_failed(kind),
        };
        self.queued = Some(event);
        Ok(())
    }

    /// Outcome of [`Action::OpenMaildrop`]: the locked snapshot, or why there is none.
    pub fn maildrop_result(
        &mut self,
        result: Result<Maildrop, MaildropError>,
    ) -> Result<(), DriverError> {
        let Wait::Maildrop(kind) = self.wait else {
            return Err(DriverError::UnexpectedResult("OpenMaildrop"));
        };
        self.wait = Wait::None;
        let event = match result {
            Ok(drop) => {
                let view = MaildropView::new(drop);
                let (count, octets) = view.stat();
                self.phase = Phase::Transaction(view);
                self.reply_ok(format_args!(
                    "maildrop has {count} messages ({octets} octets)"
                ));
                Event::Completed(kind)
            }
            // The login stays in AUTHORIZATION: the client may try again later.
            Err(e) => self.reply_err(kind, e),
        };
        self.queued = Some(event);
        Ok(())
    }

    /// Outcome of [`Action::Fetch`]: the stored message, exactly as stored.
    pub fn body_result(&mut self, result: Result<Bytes, FetchError>) -> Result<(), DriverError> {
        let Wait::Body { msg, top } = self.wait else {
            return Err(DriverError::UnexpectedResult("Fetch"));
        };
        self.wait = Wait::None;
        let kind = if top.is_some() {
            CommandKind::Top
        } else {
            CommandKind::Retr
        };
        let event = match result {
            Ok(body) => {
                if let Phase::Transaction(view) = &self.phase {
                    if let Ok(entry) = view.get(msg) {
                        if entry.size != body.len() as u64 {
                            tracing::warn!(
                                uid = entry.uid,
                                listed = entry.size,
                                actual = body.len(),
                                "POP3 body size differs from the maildrop snapshot"
                            );
                        }
                    }
                }
                match top {
                    None => {
                        self.reply_ok(format_args!("{} octets", body.len()));
                        write_stuffed(&mut self.out, &body);
                    }
                    Some(lines) => {
                        self.reply_ok(format_args!("top of message follows"));
                        write_stuffed(&mut self.out, top_slice(&body, lines));
                    }
                }
                Event::Completed(kind)
            }
            Err(e) => self.reply_err(kind, e),
        };
        self.queued = Some(event);
        Ok(())
    }

    /// Outcome of [`Action::Commit`]: whether the expunge became durable.
    pub fn commit_result(&mut self, ok: bool) -> Result<(), DriverError> {
        if self.wait != Wait::Commit {
            return Err(DriverError::UnexpectedResult("Commit"));
        }
        self.wait = Wait::None;
        self.phase = Phase::Closed;
        if ok {
            self.reply_ok(format_args!("ringpost POP3 signing off"));
        } else {
            // RFC 1939: "-ERR some deleted messages not removed"; RFC 3206 code for a
            // transient failure.
            self.reply_err_text(format_args!("[SYS/TEMP] some deleted messages not removed"));
        }
        self.queued = Some(Event::Completed(CommandKind::Quit));
        Ok(())
    }

    /// The TLS handshake after STLS succeeded: forget everything learned in plaintext
    /// (RFC 2595 section 4) and wait for commands again. No new greeting is sent.
    pub fn tls_established(&mut self) -> Result<(), DriverError> {
        if self.wait != Wait::Tls {
            return Err(DriverError::NotStartingTls);
        }
        self.tls = true;
        self.wait = Wait::None;
        self.phase = Phase::Authorization;
        self.user = None;
        self.discarding = false;
        self.queued = None;
        Ok(())
    }

    /// Dispatch one parsed command.
    fn command(&mut self, command: Command<'_>) -> Event {
        let kind = command.kind();
        match &self.phase {
            Phase::Authorization => self.authorization(command),
            Phase::Transaction(_) => self.transaction(command),
            // `process` returns before parsing once closed.
            Phase::Closed => Ok(Event::Close),
        }
        .unwrap_or_else(|text| {
            self.reply_err_text(format_args!("{text}"));
            Event::Completed(kind)
        })
    }

    /// Commands in AUTHORIZATION. `Err` carries the `-ERR` text.
    fn authorization(&mut self, command: Command<'_>) -> Result<Event, &'static str> {
        let kind = command.kind();
        // PASS must immediately follow USER (RFC 1939): any other command forgets the name.
        let user = self.user.take();
        let auth_allowed = self.tls || self.config.allow_plaintext_auth;
        const NEED_TLS: &str =
            "[AUTH] Plaintext authentication disallowed on non-secure connections; use STLS";
        match command {
            Command::Capa => write_capa(&mut self.out, self.tls, &self.config),
            Command::Stls => {
                if self.tls {
                    return Err("TLS already active");
                }
                if !self.config.stls_available {
                    return Err("STLS not available");
                }
                self.reply_ok(format_args!("Begin TLS negotiation"));
                self.wait = Wait::Tls;
            }
            Command::User(name) => {
                if !auth_allowed {
                    return Err(NEED_TLS);
                }
                let name = std::str::from_utf8(name).map_err(|_| "invalid user name")?;
                self.user = Some(name.to_string());
                // Same answer for every name: no account enumeration.
                self.reply_ok(format_args!("send PASS"));
            }
            Command::Pass(password) => {
                if !auth_allowed {
                    return Err(NEED_TLS);
                }
                let user = user.ok_or("USER first")?;
                let Ok(password) = std::str::from_utf8(password) else {
                    // Passwords are stored as text: bytes that are not UTF-8 cannot match.
                    return Ok(self.auth_failed(kind));
                };
                self.wait = Wait::Auth(kind);
                return Ok(Event::Action(Action::Authenticate {
                    user,
                    password: password.to_string(),
                }));
            }
            Command::Auth { mechanism, initial } => {
                if !auth_allowed {
                    return Err(NEED_TLS);
                }
                let Some(mechanism) = mechanism else {
                    // Mechanism list (pre-RFC 5034 clients probe with a bare AUTH).
                    self.reply_ok(format_args!("methods supported"));
                    self.out.extend_from_slice(b"PLAIN\r\n.\r\n");
                    return Ok(Event::Completed(kind));
                };
                if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    return Err("unsupported authentication mechanism");
                }
                match initial {
                    Some(response) => return Ok(self.plain_response(response)),
                    None => {
                        // Empty server challenge (RFC 5034: "+" SP, then the client answers).
                        self.out.extend_from_slice(b"+ \r\n");
                        self.wait = Wait::SaslResponse;
                        return Ok(Event::NeedInput);
                    }
                }
            }
            Command::Apop { .. } => return Err("APOP not supported"),
            Command::Quit => {
                self.phase = Phase::Closed;
                self.reply_ok(format_args!("ringpost POP3 signing off"));
            }
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_) => return Err("command not valid in AUTHORIZATION state"),
        }
        Ok(Event::Completed(kind))
    }

    /// Commands in TRANSACTION. `Err` carries the `-ERR` text.
    fn transaction(&mut self, command: Command<'_>) -> Result<Event, &'static str> {
        let kind = command.kind();
        let Phase::Transaction(view) = &mut self.phase else {
            return Err("command not valid in this state");
        };
        let out = &mut self.out;
        match command {
            Command::Capa => write_capa(out, self.tls, &self.config),
            Command::Stat => {
                let (count, octets) = view.stat();
                ok_line(out, format_args!("{count} {octets}"));
            }
            Command::List(None) => {
                let (count, octets) = view.stat();
                ok_line(out, format_args!("{count} messages ({octets} octets)"));
                for (msg, entry) in view.live() {
                    line(out, format_args!("{msg} {}", entry.size));
                }
                out.extend_from_slice(b".\r\n");
            }
            Command::List(Some(msg)) => {
                let entry = view.get(msg).map_err(message_error)?;
                ok_line(out, format_args!("{msg} {}", entry.size));
            }
            Command::Uidl(None) => {
                ok_line(out, format_args!("unique-id listing follows"));
                for (msg, entry) in view.live() {
                    line(out, format_args!("{msg} {}", view.unique_id(entry)));
                }
                out.extend_from_slice(b".\r\n");
            }
            Command::Uidl(Some(msg)) => {
                let entry = view.get(msg).map_err(message_error)?;
                ok_line(out, format_args!("{msg} {}", view.unique_id(entry)));
            }
            Command::Retr(msg) => {
                let uid = view.get(msg).map_err(message_error)?.uid;
                self.wait = Wait::Body { msg, top: None };
                return Ok(Event::Action(Action::Fetch { uid }));
            }
            Command::Top { msg, lines } => {
                let uid = view.get(msg).map_err(message_error)?.uid;
                self.wait = Wait::Body {
                    msg,
                    top: Some(lines),
                };
                return Ok(Event::Action(Action::Fetch { uid }));
            }
            Command::Dele(msg) => {
                view.delete(msg).map_err(|e| match e {
                    MessageError::Deleted => "message already deleted",
                    MessageError::NoSuchMessage => "no such message",
                })?;
                ok_line(out, format_args!("message {msg} deleted"));
            }
            Command::Noop => ok_line(out, format_args!("")),
            Command::Rset => {
                view.reset();
                let (count, octets) = view.stat();
                ok_line(
                    out,
                    format_args!("maildrop has {count} messages ({octets} octets)"),
                );
            }
            Command::Quit => {
                let expunge = view.deleted_uids();
                if expunge.is_empty() {
                    self.phase = Phase::Closed;
                    self.reply_ok(format_args!("ringpost POP3 signing off"));
                } else {
                    // UPDATE state: the expunge is the driver's; the reply waits for it.
                    self.wait = Wait::Commit;
                    return Ok(Event::Action(Action::Commit { expunge }));
                }
            }
            Command::Stls => return Err("STLS only valid in AUTHORIZATION state"),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop { .. } => {
                return Err("already authenticated")
            }
        }
        Ok(Event::Completed(kind))
    }

    /// The client's line after `+ ` in AUTH PLAIN.
    fn sasl_response(&mut self, line: &[u8]) -> Event {
        if line == b"*" {
            // RFC 5034: a cancelled exchange is answered with -ERR.
            self.reply_err_text(format_args!("authentication cancelled"));
            return Event::Completed(CommandKind::Auth);
        }
        self.plain_response(line)
    }

    /// Decode a PLAIN response and ask the driver to check it.
    fn plain_response(&mut self, response: &[u8]) -> Event {
        match decode_plain(response) {
            Ok(creds) => {
                self.wait = Wait::Auth(CommandKind::Auth);
                Event::Action(Action::Authenticate {
                    user: creds.user,
                    password: creds.password,
                })
            }
            Err(e) => self.reply_err(CommandKind::Auth, e),
        }
    }

    /// Reply to a failed login; close after too many.
    fn auth_failed(&mut self, kind: CommandKind) -> Event {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            self.reply_err_text(format_args!(
                "[AUTH] authentication failed; too many failures, closing"
            ));
            self.phase = Phase::Closed;
        } else {
            self.reply_err_text(format_args!("[AUTH] authentication failed"));
        }
        Event::Completed(kind)
    }

    /// Start dropping an overlong line whose end has not arrived; all of `input` goes.
    fn start_discard(&mut self, len: usize) -> Progress {
        self.discarding = true;
        self.wait = Wait::None;
        self.user = None;
        progress(len, Event::NeedInput)
    }

    /// Drop input through the next LF, then answer the overlong line.
    fn discard(&mut self, input: &[u8]) -> Progress {
        match memchr(b'\n', input) {
            None => progress(input.len(), Event::NeedInput),
            Some(lf) => {
                self.discarding = false;
                let event = self.reply_err(CommandKind::Invalid, ParseError::LineTooLong);
                progress(lf + 1, event)
            }
        }
    }

    fn reply_ok(&mut self, text: std::fmt::Arguments<'_>) {
        ok_line(&mut self.out, text);
    }

    fn reply_err_text(&mut self, text: std::fmt::Arguments<'_>) {
        line(&mut self.out, format_args!("-ERR {text}"));
    }

    /// `-ERR` with an error's `Display`, completing `kind`.
    fn reply_err(&mut self, kind: CommandKind, e: impl std::fmt::Display) -> Event {
        self.reply_err_text(format_args!("{e}"));
        Event::Completed(kind)
    }
}

/// `CAPA` (RFC 2449), the same in both states. USER and SASL are listed only where they would
/// be accepted, so no client sends a password in the clear because we advertised it.
fn write_capa(out: &mut BytesMut, tls: bool, config: &Pop3Config) {
    ok_line(out, format_args!("Capability list follows"));
    if !tls && config.stls_available {
        out.extend_from_slice(b"STLS\r\n");
    }
    out.extend_from_slice(b"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
    if tls || config.allow_plaintext_auth {
        out.extend_from_slice(b"USER\r\nSASL PLAIN\r\n");
    }
    out.extend_from_slice(b"IMPLEMENTATION ringpost\r\n.\r\n");
}

fn progress(consumed: usize, event: Event) -> Progress {
    Progress { consumed, event }
}

/// `-ERR` text for a message number that cannot be used.
fn message_error(e: MessageError) -> &'static str {
    match e {
        MessageError::NoSuchMessage => "no such message",
        MessageError::Deleted => "message deleted",
    }
}

/// Append `+OK text` (or a bare `+OK` for empty text) and CRLF.
fn ok_line(out: &mut BytesMut, text: std::fmt::Arguments<'_>) {
    out.extend_from_slice(b"+OK");
    let start = out.len();
    out.extend_from_slice(b" ");
    // Writing into BytesMut cannot fail.
    let _ = out.write_fmt(text);
    if out.len() == start + 1 {
        out.truncate(start);
    }
    out.extend_from_slice(b"\r\n");
}

/// Append one response line and CRLF.
fn line(out: &mut BytesMut, text: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

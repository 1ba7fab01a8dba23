//! The IMAP session: a sans-IO state machine (not authenticated → authenticated → selected →
//! logout) driven by a thin network driver.
//!
//! The driver feeds received bytes with [`Session::feed`], calls [`Session::step`] until it
//! returns [`Step::NeedInput`], writes [`Session::take_output`] to the peer, and carries out
//! the [`Action`]s it is given:
//!
//! * [`Action::StartTls`]: flush the output, run the TLS handshake, discard any plaintext
//!   bytes read after the STARTTLS line, then call [`Session::tls_established`].
//! * [`Action::Authenticate`]: verify the credentials (slowly, off the hot path; delay
//!   failures), then call [`Session::auth_result`]. On success move the connection to the
//!   account's executor before calling `step` again.
//! * [`Action::Idle`]: flush, then wait for input (→ `feed` + `step`) or for
//!   [`MailStore::mailbox_changed`] on [`Session::idle_watch`] (→ [`Session::idle_update`]).
//! * [`Action::Close`]: flush and close.
//!
//! [`Step::Flush`] asks for the output to be written before stepping on (a long FETCH is
//! answered in slices). [`Step::Completed`] names each finished command for per-command
//! latency histograms.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::parser::{parse_with, tag_of, Command, CommandBody, Limits, ParseError};
use super::store::MailStore;
use super::view::{MailboxGone, Selected, SyncOpts};

mod fetch;
mod mailboxes;
mod messages;
mod sort;
#[cfg(test)]
mod tests;
mod updates;

/// Per-listener settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Host name for the greeting.
    pub hostname: String,
    /// STARTTLS can be offered (a certificate is loaded).
    pub tls_available: bool,
    /// The connection is TLS from the first byte (port 993).
    pub implicit_tls: bool,
    /// Allow LOGIN / AUTHENTICATE without TLS (tests, loopback-only setups).
    pub allow_plaintext_auth: bool,
    /// Largest literal accepted (APPEND size limit).
    pub max_literal: u64,
    /// Longest command line.
    pub max_line: usize,
    /// Storage quota per account in bytes, if any (reported by GETQUOTA, enforced on APPEND).
    pub quota_bytes: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            tls_available: true,
            implicit_tls: false,
            allow_plaintext_auth: false,
            max_literal: 50 * 1024 * 1024,
            max_line: 65536,
            quota_bytes: None,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Flush output, do the TLS handshake, drop pipelined plaintext, call `tls_established`.
    StartTls,
    /// Verify these credentials and call `auth_result`.
    Authenticate {
        /// Login name as given.
        user: String,
        /// Password.
        pass: String,
    },
    /// Flush output and wait for input or a change of the watched mailbox.
    Idle,
    /// Flush output and close the connection.
    Close,
}

/// Result of [`Session::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing more can be done until more input arrives (flush the output first).
    NeedInput,
    /// Write the output out, then call `step` again (a long FETCH in progress).
    Flush,
    /// A command finished; its name (`"UID FETCH"`) is for latency histograms.
    Completed(&'static str),
    /// The driver must act.
    Action(Action),
}

#[derive(Debug, Clone, Copy, Default)]
struct Enabled {
    condstore: bool,
    rev2: bool,
}

#[derive(Debug)]
enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
}

#[derive(Debug, Default)]
enum Mode {
    #[default]
    Normal,
    /// Waiting for the client's SASL response line.
    SaslResponse { tag: Vec<u8> },
    /// Credentials handed to the driver.
    AwaitingAuth { tag: Vec<u8>, command: &'static str },
    /// STARTTLS accepted; the handshake is the driver's.
    AwaitingTls,
    /// In IDLE until DONE.
    Idle { tag: Vec<u8> },
    /// Discarding the rest of an over-long line.
    SkipLine,
    /// A FETCH paused for the driver to write its output.
    Fetching(Box<fetch::FetchJob>),
    /// LOGOUT done or connection to be dropped.
    Closed,
}

/// How a command handler ended.
enum Flow {
    /// Tagged response written.
    Done,
    /// Continues in another mode (SASL exchange, IDLE) without completing yet.
    Pending,
    /// The driver must act.
    Action(Action),
}

/// Tagged completion of a handler; the caller syncs the mailbox first, then writes it.
pub(crate) enum Reply {
    Ok(String),
    No(String),
    Bad(String),
}

impl Reply {
    fn ok(s: impl Into<String>) -> Self {
        Reply::Ok(s.into())
    }
    fn no(s: impl Into<String>) -> Self {
        Reply::No(s.into())
    }
    fn bad(s: impl Into<String>) -> Self {
        Reply::Bad(s.into())
    }
}

/// One IMAP connection's protocol state. `Send`: it holds no store references.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    tls: bool,
    state: State,
    mode: Mode,
    account: Option<String>,
    needs_ensure: bool,
    enabled: Enabled,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Offset of the last synchronising literal answered with `+` in the pending command.
    literal_acked: usize,
    /// End (offset in the input) of the last literal accepted in the pending command: input
    /// up to there is on its way and counts as held.
    literal_end: usize,
    /// Octets of input this session may hold, from the executor's memory budget (set by the
    /// driver; `None`: no limit). A literal that would not fit is refused before it is sent.
    memory_room: Option<usize>,
}

/// Input buffer capacity above which it is shrunk again after a command.
const SHRINK_ABOVE: usize = 1 << 20;

/// Unix time now, for APPEND without a date.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Session {
    /// A new connection; the greeting is queued in the output. `tls_active` is true for
    /// implicit-TLS listeners.
    pub fn new(config: SessionConfig, tls_active: bool) -> Session {
        let mut s = Session {
            tls: tls_active || config.implicit_tls,
            config,
            state: State::NotAuthenticated,
            mode: Mode::Normal,
            account: None,
            needs_ensure: false,
            enabled: Enabled::default(),
            input: Vec::new(),
            output: Vec::new(),
            literal_acked: 0,
            literal_end: 0,
            memory_room: None,
        };
        let caps = s.capabilities();
        s.output.extend_from_slice(b"* OK [CAPABILITY ");
        s.output.extend_from_slice(caps.as_bytes());
        s.output.extend_from_slice(b"] ");
        s.output.extend_from_slice(s.config.hostname.as_bytes());
        s.output.extend_from_slice(b" ringpost IMAP ready.\r\n");
        s
    }

    /// Adds received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.mode, Mode::Closed | Mode::AwaitingTls) {
            return;
        }
        self.input.extend_from_slice(data);
    }

    /// Sets how many octets of input this session may hold (the executor's free message
    /// memory plus what the session holds already); `None` lifts the limit.
    pub fn set_memory_room(&mut self, room: Option<usize>) {
        self.memory_room = room;
    }

    /// Octets of input held or on their way: a literal being received counts in full.
    pub fn committed_input(&self) -> usize {
        self.input.len().max(self.literal_end)
    }

    /// Bytes waiting to be sent.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Takes the bytes waiting to be sent.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The authenticated account, if any.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the session is inside IDLE.
    pub fn is_idling(&self) -> bool {
        matches!(self.mode, Mode::Idle { .. })
    }

    /// Whether the connection is to be closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// The selected mailbox's name, if any.
    pub fn selected_mailbox(&self) -> Option<&str> {
        match &self.state {
            State::Selected(s) => Some(&s.name),
            _ => None,
        }
    }

    /// What an idling driver should watch: (account, mailbox, version last seen); pass it to
    /// [`MailStore::mailbox_changed`].
    pub fn idle_watch(&self) -> Option<(&str, &str, u64)> {
        match (&self.state, &self.account) {
            (State::Selected(s), Some(a)) => Some((a.as_str(), s.name.as_str(), s.version)),
            _ => None,
        }
    }

    /// True when waiting for a new command (or for DONE in IDLE) with nothing partial buffered:
    /// where a stopping server may say `* BYE` without cutting a command or literal in half.
    pub fn awaits_command(&self) -> bool {
        self.input.is_empty() && matches!(self.mode, Mode::Normal | Mode::Idle { .. })
    }

    /// Ends the connection from the server side (shutdown, autologout): `* BYE text`.
    pub fn bye(&mut self, text: &str) {
        if self.is_closed() {
            return;
        }
        self.output.extend_from_slice(b"* BYE ");
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.mode = Mode::Closed;
    }

    /// The watched mailbox changed during IDLE: writes the untagged updates.
    pub fn idle_update<S: MailStore>(&mut self, store: &S) {
        if !self.is_idling() {
            return;
        }
        let opts = SyncOpts {
            allow_expunge: true,
            ..self.sync_opts()
        };
        if self.sync_selected(store, opts).is_err() {
            self.mailbox_gone();
        }
    }

    /// The TLS handshake after STARTTLS finished.
    pub fn tls_established(&mut self) {
        if matches!(self.mode, Mode::AwaitingTls) {
            self.tls = true;
            self.input.clear();
            self.mode = Mode::Normal;
        }
    }

    /// The driver's verdict on [`Action::Authenticate`]: the account (lower-case address) or
    /// `None` for bad credentials. Writes the tagged reply and returns the command's name.
    pub fn auth_result(&mut self, account: Option<String>) -> Option<&'static str> {
        let Mode::AwaitingAuth { tag, command } = std::mem::take(&mut self.mode) else {
            return None;
        };
        match account {
            Some(a) => {
                self.account = Some(a);
                self.state = State::Authenticated;
                self.needs_ensure = true;
                let text = format!("[CAPABILITY {}] Logged in", self.capabilities());
                self.tagged(&tag, "OK", &text);
            }
            None => self.tagged(&tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed."),
        }
        Some(command)
    }

    fn auth_allowed(&self) -> bool {
        self.tls || self.config.allow_plaintext_auth
    }

    fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
        ];
        let mut owned = Vec::new();
        if matches!(self.state, State::NotAuthenticated) {
            if !self.tls && self.config.tls_available {
                caps.push("STARTTLS");
            }
            caps.push(if self.auth_allowed() {
                "AUTH=PLAIN"
            } else {
                "LOGINDISABLED"
            });
        } else {
            caps.extend([
                "NAMESPACE",
                "UNSELECT",
                "UIDPLUS",
                "MOVE",
                "CONDSTORE",
                "ESEARCH",
                "SORT",
                "SORT=DISPLAY",
                "ESORT",
                "THREAD=ORDEREDSUBJECT",
                "THREAD=REFERENCES",
                "SEARCHRES",
                "CONTEXT=SEARCH",
                "SPECIAL-USE",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "CHILDREN",
                "MULTIAPPEND",
                "BINARY",
                "STATUS=SIZE",
            ]);
            if self.config.quota_bytes.is_some() {
                caps.extend(["QUOTA", "QUOTA=RES-STORAGE"]);
            }
            owned.push(format!(
                "APPENDLIMIT={}",
                self.config.max_literal.min(u64::from(u32::MAX))
            ));
        }
        let mut s = caps.join(" ");
        for o in owned {
            s.push(' ');
            s.push_str(&o);
        }
        s
    }

    fn tagged(&mut self, tag: &[u8], status: &str, text: &str) {
        self.output.extend_from_slice(tag);
        self.output.push(b' ');
        self.output.extend_from_slice(status.as_bytes());
        self.output.push(b' ');
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn untagged(&mut self, text: &str) {
        self.output.extend_from_slice(b"* ");
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn sync_opts(&self) -> SyncOpts {
        SyncOpts {
            allow_expunge: false,
            with_uid: false,
            condstore: self.enabled.condstore,
            rev2: self.enabled.rev2,
        }
    }

    fn sync_selected<S: MailStore>(
        &mut self,
        store: &S,
        opts: SyncOpts,
    ) -> Result<(), MailboxGone> {
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        let account = self.account.as_deref().unwrap_or("");
        sel.sync(store, account, &mut self.output, opts)
    }

    /// The sync at the end of a command, with the updates of kept searches around it:
    /// removals of expunged messages before their EXPUNGEs, the rest after.
    async fn sync_with_updates<S: MailStore>(
        &mut self,
        store: &S,
        opts: SyncOpts,
    ) -> Result<(), MailboxGone> {
        self.updates_before_sync(store, opts.allow_expunge);
        self.sync_selected(store, opts)?;
        self.updates_after_sync(store).await;
        Ok(())
    }

    fn mailbox_gone(&mut self) {
        self.state = State::Authenticated;
        self.bye("Selected mailbox was deleted, have to disconnect.");
    }

    /// Processes input: runs at most one command (or one protocol step) per call.
    pub async fn step<S: MailStore>(&mut self, store: &S) -> Step {
        loop {
            match self.mode {
                Mode::Closed => return Step::Action(Action::Close),
                Mode::AwaitingTls | Mode::AwaitingAuth { .. } => return Step::NeedInput,
                _ => {}
            }
            if self.needs_ensure {
                self.needs_ensure = false;
                let ensured = match &self.account {
                    Some(a) => store.ensure_account(a).await,
                    None => Ok(()),
                };
                if let Err(e) = ensured {
                    tracing::error!(error = %e, "cannot open account");
                    self.bye("[UNAVAILABLE] Internal error opening the account.");
                    return Step::Action(Action::Close);
                }
            }
            match self.mode {
                Mode::SkipLine => match memchr::memchr(b'\n', &self.input) {
                    Some(i) => {
                        self.input.drain(..=i);
                        self.mode = Mode::Normal;
                        continue;
                    }
                    None => {
                        self.input.clear();
                        return Step::NeedInput;
                    }
                },
                Mode::Idle { .. } => return self.step_idle(store),
                Mode::Fetching(_) => return self.step_fetch(store).await,
                Mode::SaslResponse { .. } => match self.step_sasl() {
                    Some(step) => return step,
                    None => continue,
                },
                _ => {}
            }
            // Blank lines between commands are ignored, as most servers do.
            if self.input.starts_with(b"\r\n") || self.input.starts_with(b"\n") {
                let n = if self.input[0] == b'\r' { 2 } else { 1 };
                self.input.drain(..n);
                continue;
            }
            if let Some(step) = self.step_command(store).await {
                return step;
            }
        }
    }

    /// Parses and runs one command; `None` when the command continues in another mode
    /// (SASL exchange, IDLE) and stepping should go on.
    async fn step_command<S: MailStore>(&mut self, store: &S) -> Option<Step> {
        let input = std::mem::take(&mut self.input);
        // Before login only LOGIN / AUTHENTICATE have a use for literals: keep them small so
        // an anonymous peer cannot make us buffer an APPEND-sized literal.
        let max_literal = if matches!(self.state, State::NotAuthenticated) {
            self.config.max_literal.min(self.config.max_line as u64)
        } else {
            self.config.max_literal
        };
        let limits = Limits {
            max_line: self.config.max_line,
            max_literal,
        };
        match parse_with(&input, &limits) {
            Ok((cmd, consumed)) => {
                let name = cmd.body.name();
                let flow = self.execute(cmd, store).await;
                self.restore_input(input, consumed);
                match flow {
                    Flow::Done => Some(Step::Completed(name)),
                    Flow::Pending if matches!(self.mode, Mode::Fetching(_)) => Some(Step::Flush),
                    Flow::Pending => None,
                    Flow::Action(a) => Some(Step::Action(a)),
                }
            }
            Err(ParseError::Incomplete) => {
                self.input = input;
                Some(Step::NeedInput)
            }
            Err(ParseError::NeedLiteral {
                size,
                non_sync,
                offset,
            }) => {
                let end = offset.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
                if end > self.literal_end {
                    if self.memory_room.is_some_and(|room| end > room) {
                        // RFC 9051 7.1: UNAVAILABLE is a temporary failure, to be retried.
                        const SHORT: &str =
                            "[UNAVAILABLE] Server is short of memory, try again later.";
                        return Some(self.refuse_literal(input, offset, non_sync, SHORT));
                    }
                    self.literal_end = end;
                }
                if !non_sync && offset > self.literal_acked {
                    self.output
                        .extend_from_slice(b"+ Ready for literal data\r\n");
                    self.literal_acked = offset;
                }
                self.input = input;
                Some(Step::NeedInput)
            }
            Err(ParseError::LiteralTooLarge {
                non_sync, consumed, ..
            }) => {
                Some(self.refuse_literal(input, consumed, non_sync, "[TOOBIG] Literal too large."))
            }
            Err(ParseError::LineTooLong { tag, skip_from }) => {
                match tag {
                    Some(t) => {
                        let t = t.to_vec();
                        self.tagged(&t, "BAD", "[TOOBIG] Command line too long.")
                    }
                    None => self.untagged("BAD [TOOBIG] Command line too long."),
                }
                self.restore_input(input, skip_from);
                self.mode = Mode::SkipLine;
                Some(Step::Completed("(rejected)"))
            }
            Err(ParseError::Bad {
                tag,
                command,
                consumed,
                reason,
            }) => {
                match (tag, command) {
                    (Some(t), Some(c)) => {
                        let t = t.to_vec();
                        self.tagged(&t, "BAD", &format!("Error in IMAP command {c}: {reason}."))
                    }
                    (Some(t), None) => {
                        let t = t.to_vec();
                        self.tagged(&t, "BAD", &format!("Error in IMAP command: {reason}."))
                    }
                    (None, _) => self.untagged("BAD Error in IMAP command received by server."),
                }
                self.restore_input(input, consumed);
                Some(Step::Completed(command.unwrap_or("(invalid)")))
            }
        }
    }

    /// Refuses a literal before it is read. The client of a synchronising one sends nothing
    /// more of the command: NO (BAD without a usable tag), skip `consumed`, go on. A
    /// non-synchronising one is already on its way and must never be parsed as commands, so
    /// the connection ends after the NO.
    fn refuse_literal(
        &mut self,
        input: Vec<u8>,
        consumed: usize,
        non_sync: bool,
        text: &str,
    ) -> Step {
        let tag = tag_of(&input).map(<[u8]>::to_vec);
        if non_sync {
            if let Some(t) = &tag {
                self.tagged(t, "NO", text);
            }
            self.bye(text);
            self.input.clear();
            return Step::Action(Action::Close);
        }
        match &tag {
            Some(t) => self.tagged(t, "NO", text),
            None => self.untagged(&format!("BAD {text}")),
        }
        self.restore_input(input, consumed);
        Step::Completed("(rejected)")
    }

    fn restore_input(&mut self, mut input: Vec<u8>, consumed: usize) {
        self.literal_acked = 0;
        self.literal_end = 0;
        if matches!(self.mode, Mode::AwaitingTls | Mode::Closed) {
            // Bytes pipelined after STARTTLS (or after LOGOUT) are never executed.
            self.input.clear();
            return;
        }
        input.drain(..consumed.min(input.len()));
        // Anything fed while the command ran (nothing today) goes after what is left.
        input.append(&mut self.input);
        // Give back the memory of a large APPEND once it is done.
        if input.capacity() > SHRINK_ABOVE && input.len() < SHRINK_ABOVE / 4 {
            input.shrink_to(SHRINK_ABOVE / 4);
        }
        self.input = input;
    }

    async fn step_fetch<S: MailStore>(&mut self, store: &S) -> Step {
        let Mode::Fetching(job) = std::mem::take(&mut self.mode) else {
            return Step::NeedInput;
        };
        let (tag, uid) = (job.tag.clone(), job.uid);
        let Some(reply) = self.run_fetch(store, *job).await else {
            return Step::Flush;
        };
        let name = if uid { "UID FETCH" } else { "FETCH" };
        let opts = SyncOpts {
            allow_expunge: uid,
            with_uid: uid,
            ..self.sync_opts()
        };
        if self.sync_with_updates(store, opts).await.is_err() {
            self.mailbox_gone();
            return Step::Action(Action::Close);
        }
        self.write_reply(&tag, reply);
        Step::Completed(name)
    }

    fn write_reply(&mut self, tag: &[u8], reply: Reply) {
        match reply {
            Reply::Ok(t) => self.tagged(tag, "OK", &t),
            Reply::No(t) => self.tagged(tag, "NO", &t),
            Reply::Bad(t) => self.tagged(tag, "BAD", &t),
        }
    }

    fn step_idle<S: MailStore>(&mut self, store: &S) -> Step {
        let Some(nl) = memchr::memchr(b'\n', &self.input) else {
            if self.input.len() > self.config.max_line {
                self.input.clear();
            }
            return Step::Action(Action::Idle);
        };
        let Mode::Idle { tag } = std::mem::take(&mut self.mode) else {
            return Step::NeedInput;
        };
        let line = self.input[..nl]
            .strip_suffix(b"\r")
            .unwrap_or(&self.input[..nl]);
        let done = line.eq_ignore_ascii_case(b"DONE");
        self.input.drain(..=nl);
        let opts = SyncOpts {
            allow_expunge: true,
            ..self.sync_opts()
        };
        if self.sync_selected(store, opts).is_err() {
            self.mailbox_gone();
            return Step::Action(Action::Close);
        }
        if done {
            self.tagged(&tag, "OK", "Idle completed.");
        } else {
            self.tagged(&tag, "BAD", "Expected DONE.");
        }
        Step::Completed("IDLE")
    }

    /// Handles the client's SASL response line; `None` to keep stepping.
    fn step_sasl(&mut self) -> Option<Step> {
        let Some(nl) = memchr::memchr(b'\n', &self.input) else {
            if self.input.len() > self.config.max_line {
                let Mode::SaslResponse { tag } = std::mem::take(&mut self.mode) else {
                    return Some(Step::NeedInput);
                };
                self.tagged(&tag, "BAD", "[TOOBIG] Authentication response too long.");
                self.input.clear();
                self.mode = Mode::SkipLine;
                return Some(Step::Completed("AUTHENTICATE"));
            }
            return Some(Step::NeedInput);
        };
        let Mode::SaslResponse { tag } = std::mem::take(&mut self.mode) else {
            return None;
        };
        let line: Vec<u8> = self.input[..nl]
            .strip_suffix(b"\r")
            .unwrap_or(&self.input[..nl])
            .to_vec();
        self.input.drain(..=nl);
        if line == b"*" {
            self.tagged(&tag, "BAD", "Authentication aborted by client.");
            return Some(Step::Completed("AUTHENTICATE"));
        }
        match decode_plain(&line) {
            Ok((user, pass)) => {
                self.mode = Mode::AwaitingAuth {
                    tag,
                    command: "AUTHENTICATE",
                };
                Some(Step::Action(Action::Authenticate { user, pass }))
            }
            Err(text) => {
                self.tagged(&tag, "BAD", text);
                Some(Step::Completed("AUTHENTICATE"))
            }
        }
    }

    async fn execute<S: MailStore>(&mut self, cmd: Command<'_>, store: &S) -> Flow {
        let tag = cmd.tag;
        let body = cmd.body;
        if let Some(err) = self.state_error(&body) {
            self.tagged(tag, "BAD", err);
            return Flow::Done;
        }
        let uid_cmd = matches!(
            body,
            CommandBody::Fetch { uid: true, .. }
                | CommandBody::Store { uid: true, .. }
                | CommandBody::Search { uid: true, .. }
                | CommandBody::Sort { uid: true, .. }
                | CommandBody::Thread { uid: true, .. }
                | CommandBody::Copy { uid: true, .. }
                | CommandBody::Move { uid: true, .. }
                | CommandBody::Expunge { uids: Some(_) }
        );
        // RFC 3501 §7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH by sequence
        // number (nor COPY, whose numbers the client may still be using).
        let allow_expunge = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Sort { uid: false, .. }
                | CommandBody::Thread { uid: false, .. }
                | CommandBody::Copy { uid: false, .. }
        );
        let reply = match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                Reply::ok("Capability completed.")
            }
            CommandBody::Noop => Reply::ok("NOOP completed."),
            CommandBody::Check => Reply::ok("Check completed."),
            CommandBody::Logout => {
                self.untagged("BYE Logging out");
                self.tagged(tag, "OK", "Logout completed.");
                self.mode = Mode::Closed;
                return Flow::Action(Action::Close);
            }
            CommandBody::StartTls => {
                if self.tls {
                    Reply::bad("TLS is already active.")
                } else if !self.config.tls_available {
                    Reply::bad("TLS support isn't enabled.")
                } else {
                    self.tagged(tag, "OK", "Begin TLS negotiation now.");
                    self.mode = Mode::AwaitingTls;
                    return Flow::Action(Action::StartTls);
                }
            }
            CommandBody::Login { username, password } => {
                if !self.auth_allowed() {
                    Reply::no("[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
                } else {
                    match (
                        String::from_utf8(username.into_owned()),
                        String::from_utf8(password.into_owned()),
                    ) {
                        (Ok(user), Ok(pass)) => {
                            self.mode = Mode::AwaitingAuth {
                                tag: tag.to_vec(),
                                command: "LOGIN",
                            };
                            return Flow::Action(Action::Authenticate { user, pass });
                        }
                        _ => Reply::no("[AUTHENTICATIONFAILED] Authentication failed."),
                    }
                }
            }
            CommandBody::Authenticate { mechanism, initial } => {
                if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    Reply::no("Unsupported authentication mechanism.")
                } else if !self.auth_allowed() {
                    Reply::no("[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
                } else {
                    match initial {
                        None => {
                            self.output.extend_from_slice(b"+ \r\n");
                            self.mode = Mode::SaslResponse { tag: tag.to_vec() };
                            return Flow::Pending;
                        }
                        Some(ir) => {
                            let ir: &[u8] = if ir == b"=" { b"" } else { ir };
                            match decode_plain(ir) {
                                Ok((user, pass)) => {
                                    self.mode = Mode::AwaitingAuth {
                                        tag: tag.to_vec(),
                                        command: "AUTHENTICATE",
                                    };
                                    return Flow::Action(Action::Authenticate { user, pass });
                                }
                                Err(text) => Reply::bad(text),
                            }
                        }
                    }
                }
            }
            CommandBody::Enable { capabilities } => self.enable(&capabilities),
            CommandBody::Id { .. } => {
                self.untagged("ID (\"name\" \"ringpost\" \"version\" \"0.1\")");
                Reply::ok("ID completed.")
            }
            CommandBody::Idle => {
                self.output.extend_from_slice(b"+ idling\r\n");
                self.mode = Mode::Idle { tag: tag.to_vec() };
                // Report what happened since the last command straight away.
                let opts = SyncOpts {
                    allow_expunge: true,
                    ..self.sync_opts()
                };
                if self.sync_selected(store, opts).is_err() {
                    self.mailbox_gone();
                    return Flow::Action(Action::Close);
                }
                return Flow::Pending;
            }
            CommandBody::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                Reply::ok("Namespace completed.")
            }
            CommandBody::Select { mailbox, condstore } => {
                self.select(store, &mailbox, condstore, false)
            }
            CommandBody::Examine { mailbox, condstore } => {
                self.select(store, &mailbox, condstore, true)
            }
            CommandBody::Create { mailbox } => self.create(store, &mailbox).await,
            CommandBody::Delete { mailbox } => self.delete(store, &mailbox).await,
            CommandBody::Rename { from, to } => self.rename(store, &from, &to).await,
            CommandBody::Subscribe { mailbox } => self.subscribe(store, &mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(store, &mailbox, false).await,
            CommandBody::List(l) => self.list(store, &l),
            CommandBody::Lsub { reference, pattern } => self.lsub(store, &reference, &pattern),
            CommandBody::Status { mailbox, items } => self.status(store, &mailbox, &items),
            CommandBody::Append { mailbox, messages } => {
                self.append(store, &mailbox, &messages).await
            }
            CommandBody::GetQuota { root } => self.get_quota(store, &root),
            CommandBody::GetQuotaRoot { mailbox } => self.get_quota_root(store, &mailbox),
            CommandBody::SetQuota => Reply::no("[NOPERM] Quotas are set by the administrator."),
            CommandBody::Close => self.close(store).await,
            CommandBody::Unselect => {
                self.state = State::Authenticated;
                Reply::ok("Unselect completed.")
            }
            CommandBody::Expunge { uids } => self.expunge(store, uids.as_ref()).await,
            CommandBody::Search {
                uid,
                ret,
                charset,
                criteria,
                criteria_raw,
            } => {
                self.search(
                    store,
                    tag,
                    uid,
                    ret.as_deref(),
                    charset.as_deref(),
                    &criteria,
                    criteria_raw,
                )
                .await
            }
            CommandBody::Sort {
                uid,
                ret,
                criteria,
                charset,
                keys,
            } => {
                self.sort(store, tag, uid, ret.as_deref(), &criteria, &charset, &keys)
                    .await
            }
            CommandBody::Thread {
                uid,
                algorithm,
                charset,
                keys,
            } => self.thread(store, uid, algorithm, &charset, &keys).await,
            CommandBody::CancelUpdate { tags } => self.cancel_update(&tags),
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
            } => match self
                .fetch(store, tag, uid, &set, &items, changed_since)
                .await
            {
                Some(r) => r,
                None => return Flow::Pending,
            },
            CommandBody::Store {
                uid,
                set,
                unchanged_since,
                op,
                silent,
                flags,
            } => {
                self.store(store, uid, &set, unchanged_since, op, silent, &flags)
                    .await
            }
            CommandBody::Copy { uid, set, mailbox } => {
                self.copy_move(store, uid, &set, &mailbox, false).await
            }
            CommandBody::Move { uid, set, mailbox } => {
                self.copy_move(store, uid, &set, &mailbox, true).await
            }
        };
        if self.is_closed() {
            return Flow::Action(Action::Close);
        }
        let opts = SyncOpts {
            allow_expunge,
            with_uid: uid_cmd,
            ..self.sync_opts()
        };
        if self.sync_with_updates(store, opts).await.is_err() {
            self.mailbox_gone();
            return Flow::Action(Action::Close);
        }
        self.write_reply(tag, reply);
        Flow::Done
    }

    /// Why the command cannot run in the current state, if it cannot.
    fn state_error(&self, body: &CommandBody<'_>) -> Option<&'static str> {
        use CommandBody as C;
        let authed = !matches!(self.state, State::NotAuthenticated);
        let selected = matches!(self.state, State::Selected(_));
        match body {
            C::Capability | C::Noop | C::Logout | C::Id { .. } => None,
            C::StartTls | C::Login { .. } | C::Authenticate { .. } => {
                authed.then_some("Already authenticated.")
            }
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge { .. }
            | C::Search { .. }
            | C::Sort { .. }
            | C::Thread { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. }
            | C::CancelUpdate { .. } => {
                if !authed {
                    Some("Please authenticate first.")
                } else if !selected {
                    Some("No mailbox selected.")
                } else {
                    None
                }
            }
            _ => (!authed).then_some("Please authenticate first."),
        }
    }

    /// Turns CONDSTORE on; a CONDSTORE-enabling command in the selected state reports the
    /// HIGHESTMODSEQ straight away (RFC 7162 §3.1).
    fn enable_condstore(&mut self) {
        if self.enabled.condstore {
            return;
        }
        self.enabled.condstore = true;
        if let State::Selected(sel) = &self.state {
            let line = format!("OK [HIGHESTMODSEQ {}] Highest", sel.highest_modseq);
            self.untagged(&line);
        }
    }

    /// ENABLE: lists every requested extension that is on afterwards, also one enabled
    /// before (as Dovecot does; RFC 5161 leaves it open), each once.
    fn enable(&mut self, caps: &[&[u8]]) -> Reply {
        let mut enabled: Vec<&'static str> = Vec::new();
        for c in caps {
            let name = if c.eq_ignore_ascii_case(b"CONDSTORE") {
                self.enable_condstore();
                "CONDSTORE"
            } else if c.eq_ignore_ascii_case(b"IMAP4rev2") {
                self.enabled.rev2 = true;
                "IMAP4rev2"
            } else {
                continue;
            };
            if !enabled.contains(&name) {
                enabled.push(name);
            }
        }
        let mut line = String::from("ENABLED");
        for n in enabled {
            line.push(' ');
            line.push_str(n);
        }
        self.untagged(&line);
        Reply::ok("Enabled.")
    }
}

/// Decodes a base64 SASL PLAIN response into (user, password).
fn decode_plain(b64: &[u8]) -> Result<(String, String), &'static str> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "Invalid base64 data in AUTHENTICATE response.")?;
    let mut parts = raw.split(|&c| c == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid PLAIN authentication data.");
    };
    if !authz.is_empty() && authz != user {
        return Err("Authorization identity must match the login name.");
    }
    let user = String::from_utf8(user.to_vec()).map_err(|_| "Login name is not UTF-8.")?;
    let pass = String::from_utf8(pass.to_vec()).map_err(|_| "Password is not UTF-8.")?;
    Ok((user, pass))
}

//! The IMAP workload: login, SELECT INBOX, then commands drawn from the mix, each read to its
//! tagged completion with literals framed properly.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::cli::{ImapAuth, Security};
use crate::error::LoadError;
use crate::framing::ProtoError;
use crate::imap_response::{quote, ImapFramer, Kind, Response, Status};
use crate::message::{rfc5322_now, Headers, Template};
use crate::mix::ImapCommand;
use crate::session::{ConnCtx, ConnState};
use crate::stats::Op;
use crate::transport::Conn;

/// An open IMAP connection and what it knows about the selected mailbox.
struct Imap<'a> {
    ctx: &'a ConnCtx,
    conn: Conn,
    framer: ImapFramer,
    next_tag: u32,
    /// Messages in INBOX (last EXISTS).
    exists: u64,
    /// Next UID (from SELECT's UIDNEXT and APPENDUID).
    uidnext: u64,
    /// The server sent BYE: the connection is going away.
    bye: bool,
}

/// How a command ended, when it ended well.
enum Wait {
    /// Read until the tagged completion.
    Tagged,
    /// Read until a continuation request (`+`).
    Continuation,
}

impl<'a> Imap<'a> {
    fn tag(&mut self) -> String {
        self.next_tag = self.next_tag.wrapping_add(1);
        format!("A{:04}", self.next_tag)
    }

    /// Sends `tag SP line CRLF` and returns the tag.
    async fn send(&mut self, line: &str) -> Result<String, LoadError> {
        let tag = self.tag();
        self.conn
            .send(format!("{tag} {line}\r\n").as_bytes())
            .await?;
        Ok(tag)
    }

    /// Reads responses until the tagged completion of `tag` (or a continuation request when
    /// `wait` says so), noting untagged data on the way.
    async fn read_until(&mut self, op: Op, tag: &str, wait: Wait) -> Result<(), LoadError> {
        loop {
            let frame = self.conn.read_frame(&mut self.framer).await?;
            let resp = Response::parse(frame)?;
            match resp.kind {
                Kind::Tagged { tag: t, status } => {
                    if t != tag.as_bytes() {
                        return Err(ProtoError::Unexpected("completion with an unknown tag").into());
                    }
                    if let Some(uid) = resp.code_number(b"APPENDUID") {
                        self.uidnext = self.uidnext.max(uid.saturating_add(1));
                    }
                    return match (status, wait) {
                        (Status::Ok, Wait::Tagged) => Ok(()),
                        (Status::Ok, Wait::Continuation) => {
                            Err(ProtoError::Unexpected("OK where a continuation was due").into())
                        }
                        (Status::No | Status::Bad, _) => Err(LoadError::Refused {
                            op,
                            class: status.name(),
                        }),
                    };
                }
                Kind::Continuation => {
                    return match wait {
                        Wait::Continuation => Ok(()),
                        Wait::Tagged => Err(ProtoError::Unexpected("continuation request").into()),
                    };
                }
                Kind::Untagged(_) => {
                    if let Some(n) = resp.numbered(b"EXISTS") {
                        self.exists = n;
                    } else if let Some(n) = resp.code_number(b"UIDNEXT") {
                        self.uidnext = n;
                    } else if resp.numbered(b"FETCH").is_some()
                        && memchr::memmem::find(resp.first_line, b"BODY[]").is_some()
                    {
                        self.ctx.rec.add_messages(1);
                    } else if resp.is_bye() {
                        self.bye = true;
                    }
                }
            }
        }
    }

    /// A simple command: send, read to the tagged completion.
    async fn command(&mut self, op: Op, line: &str) -> Result<(), LoadError> {
        let tag = self.send(line).await?;
        self.read_until(op, &tag, Wait::Tagged).await
    }

    /// A UID range `a:b` of up to `count` messages within the mailbox's UIDs.
    fn range(&self, rng: &mut impl Rng, count: u32) -> String {
        let hi = self.uidnext.saturating_sub(1).max(self.exists);
        if hi == 0 {
            return "1:*".to_string();
        }
        let a = rng.gen_range(1..=hi);
        let b = a.saturating_add(u64::from(count) - 1).min(hi);
        format!("{a}:{b}")
    }
}

/// One IMAP connection: greeting, optional STARTTLS, login, SELECT, the mix, LOGOUT.
pub async fn session(ctx: &ConnCtx, state: &mut ConnState) -> Result<(), LoadError> {
    let s = &ctx.settings;
    let user = ctx.user().ok_or(LoadError::Unsupported("users"))?;
    let t = Instant::now();
    let conn = ctx.connect().await?;
    let mut imap = Imap {
        ctx,
        conn,
        framer: ImapFramer::default(),
        next_tag: 0,
        exists: 0,
        uidnext: 0,
        bye: false,
    };
    let mut sasl_ir = {
        let frame = imap.conn.read_frame(&mut imap.framer).await?;
        let greeting = Response::parse(frame)?;
        if greeting.is_bye() {
            return Err(LoadError::Refused {
                op: Op::Connect,
                class: "BYE",
            });
        }
        if !matches!(greeting.kind, Kind::Untagged(_)) {
            return Err(ProtoError::Unexpected("greeting is not untagged").into());
        }
        if s.security == Security::Plain && greeting.has_capability(b"LOGINDISABLED") {
            // Every login would fail; say why once per attempt instead of "login.NO".
            return Err(LoadError::Unsupported(
                "LOGINDISABLED, use --starttls or --tls",
            ));
        }
        greeting.has_capability(b"SASL-IR")
    };
    ctx.rec.record_since(Op::Connect, t);

    if s.security == Security::StartTls {
        let t = Instant::now();
        imap.command(Op::StartTls, "STARTTLS").await?;
        imap.conn.start_tls(ctx.tls_setup()?).await?;
        ctx.rec.record_since(Op::StartTls, t);
        // Capabilities learned before TLS must be forgotten (RFC 9051 §6.2.1).
        sasl_ir = false;
    }

    let t = Instant::now();
    match s.imap_auth {
        ImapAuth::Login => {
            let (Some(u), Some(p)) = (quote(&user.address), quote(&user.password)) else {
                return Err(LoadError::Unsupported("CR/LF in user name or password"));
            };
            imap.command(Op::Login, &format!("LOGIN {u} {p}")).await?;
            ctx.rec.record_since(Op::Login, t);
        }
        ImapAuth::Plain => {
            let b64 = crate::sasl::plain(&user.address, &user.password);
            if sasl_ir {
                imap.command(Op::Auth, &format!("AUTHENTICATE PLAIN {b64}"))
                    .await?;
            } else {
                let tag = imap.send("AUTHENTICATE PLAIN").await?;
                imap.read_until(Op::Auth, &tag, Wait::Continuation).await?;
                imap.conn.send(format!("{b64}\r\n").as_bytes()).await?;
                imap.read_until(Op::Auth, &tag, Wait::Tagged).await?;
            }
            ctx.rec.record_since(Op::Auth, t);
        }
    }

    let t = Instant::now();
    imap.command(Op::Select, "SELECT INBOX").await?;
    ctx.rec.record_since(Op::Select, t);

    let mut append_template = None;
    while !imap.bye && ctx.control.claim() {
        let cmd = s.mix.pick(&mut state.rng);
        let due = state.pacer.wait().await;
        let (op, result) = match cmd {
            ImapCommand::Fetch => {
                let range = imap.range(&mut state.rng, s.fetch_count);
                let line = format!("UID FETCH {range} (FLAGS RFC822.SIZE BODY.PEEK[])");
                (Op::Fetch, imap.command(Op::Fetch, &line).await)
            }
            ImapCommand::Store => {
                let range = imap.range(&mut state.rng, s.fetch_count);
                let sign = if state.rng.gen_bool(0.5) { '+' } else { '-' };
                let line = format!("UID STORE {range} {sign}FLAGS (\\Seen)");
                (Op::Store, imap.command(Op::Store, &line).await)
            }
            ImapCommand::Search => {
                let what = if state.rng.gen_bool(0.5) {
                    "UNSEEN"
                } else {
                    "ALL"
                };
                (
                    Op::Search,
                    imap.command(Op::Search, &format!("SEARCH {what}")).await,
                )
            }
            ImapCommand::Append => {
                let template = append_template
                    .get_or_insert_with(|| Template::new(&user.address, s.size, &mut state.rng));
                (Op::Append, append(&mut imap, state, template).await)
            }
            ImapCommand::Noop => (Op::Noop, imap.command(Op::Noop, "NOOP").await),
            ImapCommand::Idle => {
                // Time the server's two answers, not the dwell in between.
                match idle(&mut imap, s.idle).await {
                    Ok(dwelt) => {
                        let waited = due.elapsed().saturating_sub(dwelt);
                        ctx.rec.record(Op::Idle, waited);
                        ctx.rec.add_ops(1);
                        continue;
                    }
                    Err(e) => (Op::Idle, Err(e)),
                }
            }
        };
        match result {
            Ok(()) => {
                ctx.rec.record_since(op, due);
                ctx.rec.add_ops(1);
            }
            Err(e) if e.keeps_connection() => ctx.rec.error(&e.key()),
            Err(e) => return Err(e),
        }
    }

    if !imap.bye {
        let t = Instant::now();
        imap.command(Op::Logout, "LOGOUT").await?;
        ctx.rec.record_since(Op::Logout, t);
    }
    imap.conn.close().await;
    Ok(())
}

/// APPEND of a generated message with a synchronizing literal.
async fn append(
    imap: &mut Imap<'_>,
    state: &mut ConnState,
    template: &Template,
) -> Result<(), LoadError> {
    state.seq += 1;
    let id = format!("{}-{}-{}", imap.ctx.run_id, imap.ctx.index, state.seq);
    let date = rfc5322_now();
    let mut msg = Vec::with_capacity(imap.ctx.settings.size + 512);
    template.write_message(
        &Headers {
            to: &[],
            id: &id,
            date: &date,
        },
        &mut msg,
    );
    let tag = imap
        .send(&format!("APPEND INBOX {{{}}}", msg.len()))
        .await?;
    imap.read_until(Op::Append, &tag, Wait::Continuation)
        .await?;
    msg.extend_from_slice(b"\r\n");
    imap.conn.send(&msg).await?;
    imap.read_until(Op::Append, &tag, Wait::Tagged).await?;
    imap.ctx.rec.add_messages(1);
    Ok(())
}

/// IDLE, wait `dwell`, DONE. Returns the time actually dwelt, which the caller subtracts.
async fn idle(imap: &mut Imap<'_>, dwell: Duration) -> Result<Duration, LoadError> {
    let tag = imap.send("IDLE").await?;
    imap.read_until(Op::Idle, &tag, Wait::Continuation).await?;
    let d = Instant::now();
    if !dwell.is_zero() {
        glommio::timer::sleep(dwell).await;
    }
    let dwelt = d.elapsed();
    imap.conn.send(b"DONE\r\n").await?;
    imap.read_until(Op::Idle, &tag, Wait::Tagged).await?;
    Ok(dwelt)
}

//! The SMTP workload: EHLO (and STARTTLS, AUTH) once per connection, then MAIL / RCPT / DATA
//! transactions, optionally pipelined (RFC 2920).

use std::fmt::Write as _;
use std::time::Instant;

use rand::seq::SliceRandom;

use crate::cli::Security;
use crate::error::LoadError;
use crate::framing::ProtoError;
use crate::message::{dot_stuff_into, rfc5322_now, Headers, Template};
use crate::session::{ConnCtx, ConnState};
use crate::smtp_reply::{Reply, SmtpFramer};
use crate::stats::Op;
use crate::transport::Conn;

/// What the server offered in its EHLO reply.
#[derive(Debug, Default, Clone, Copy)]
struct Caps {
    pipelining: bool,
    starttls: bool,
    auth_plain: bool,
    /// SIZE (RFC 1870) is offered: declare the message size in MAIL FROM.
    size: bool,
}

/// An open SMTP connection.
struct Smtp {
    conn: Conn,
    framer: SmtpFramer,
    /// Reused buffer for commands and message data.
    out: Vec<u8>,
    caps: Caps,
}

impl Smtp {
    /// Reads one reply and returns its code.
    async fn reply(&mut self) -> Result<u16, LoadError> {
        let frame = self.conn.read_frame(&mut self.framer).await?;
        Ok(Reply::parse(frame)?.code)
    }

    /// Sends a command line (CRLF added) and reads its reply code.
    async fn command(&mut self, line: &str) -> Result<u16, LoadError> {
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.conn.send(&self.out).await?;
        self.reply().await
    }

    /// EHLO, remembering the extensions.
    async fn ehlo(&mut self, ctx: &ConnCtx) -> Result<(), LoadError> {
        let t = Instant::now();
        self.conn
            .send(format!("EHLO {}\r\n", ctx.settings.helo).as_bytes())
            .await?;
        let frame = self.conn.read_frame(&mut self.framer).await?;
        let reply = Reply::parse(frame)?;
        if reply.code != 250 {
            return Err(LoadError::smtp(Op::Ehlo, reply.code));
        }
        self.caps = Caps {
            pipelining: reply.has_extension(b"PIPELINING"),
            starttls: reply.has_extension(b"STARTTLS"),
            size: reply.has_extension(b"SIZE"),
            auth_plain: reply.extension(b"AUTH").is_some_and(|mechs| {
                mechs
                    .split(|&b| b == b' ')
                    .any(|m| m.eq_ignore_ascii_case(b"PLAIN"))
            }),
        };
        ctx.rec.record_since(Op::Ehlo, t);
        Ok(())
    }
}

/// One SMTP connection: greeting, EHLO, optional STARTTLS and AUTH, transactions, QUIT.
pub async fn session(
    ctx: &ConnCtx,
    state: &mut ConnState,
    template: &Template,
) -> Result<(), LoadError> {
    let s = &ctx.settings;
    let t = Instant::now();
    let conn = ctx.connect().await?;
    let mut smtp = Smtp {
        conn,
        framer: SmtpFramer::default(),
        out: Vec::with_capacity(s.size * 2 + 1024),
        caps: Caps::default(),
    };
    let code = smtp.reply().await?;
    if code != 220 {
        return Err(LoadError::smtp(Op::Connect, code));
    }
    ctx.rec.record_since(Op::Connect, t);
    smtp.ehlo(ctx).await?;

    if s.security == Security::StartTls {
        if !smtp.caps.starttls {
            return Err(LoadError::Unsupported("STARTTLS"));
        }
        let t = Instant::now();
        let code = smtp.command("STARTTLS").await?;
        if code != 220 {
            return Err(LoadError::smtp(Op::StartTls, code));
        }
        smtp.conn.start_tls(ctx.tls_setup()?).await?;
        ctx.rec.record_since(Op::StartTls, t);
        // RFC 3207 §4.2: forget what was learned before TLS and ask again.
        smtp.ehlo(ctx).await?;
    }

    // AUTH when accounts are known and the server offers it (submission ports require it;
    // an MX port that does not offer it just receives).
    if let Some(user) = ctx.user() {
        if smtp.caps.auth_plain {
            let t = Instant::now();
            let code = smtp
                .command(&format!(
                    "AUTH PLAIN {}",
                    crate::sasl::plain(&user.address, &user.password)
                ))
                .await?;
            if code != 235 {
                return Err(LoadError::smtp(Op::Auth, code));
            }
            ctx.rec.record_since(Op::Auth, t);
        }
    }

    let mut sent = 0u64;
    while ctx.control.claim() {
        let due = state.pacer.wait().await;
        let pipelined = s.pipelining && smtp.caps.pipelining;
        match transaction(ctx, state, template, &mut smtp, due, pipelined).await {
            Ok(()) => {}
            Err(e) if e.keeps_connection() => {
                ctx.rec.error(&e.key());
                let t = Instant::now();
                let code = smtp.command("RSET").await?;
                if code != 250 {
                    return Err(LoadError::smtp(Op::Rset, code));
                }
                ctx.rec.record_since(Op::Rset, t);
            }
            Err(e) => return Err(e),
        }
        sent += 1;
        if s.messages_per_conn > 0 && sent >= s.messages_per_conn {
            break;
        }
    }

    let t = Instant::now();
    let code = smtp.command("QUIT").await?;
    if code != 221 {
        return Err(LoadError::smtp(Op::Quit, code));
    }
    ctx.rec.record_since(Op::Quit, t);
    smtp.conn.close().await;
    Ok(())
}

/// One MAIL / RCPT... / DATA transaction. A refusal leaves the connection usable (the caller
/// sends RSET); refused recipients are counted here and the message goes to the others.
async fn transaction(
    ctx: &ConnCtx,
    state: &mut ConnState,
    template: &Template,
    smtp: &mut Smtp,
    due: Instant,
    pipelined: bool,
) -> Result<(), LoadError> {
    let s = &ctx.settings;
    state.seq += 1;
    let id = format!("{}-{}-{}", ctx.run_id, ctx.index, state.seq);
    let rcpts: Vec<&str> = s
        .recipients
        .choose_multiple(&mut state.rng, s.rcpts.min(s.recipients.len()))
        .map(String::as_str)
        .collect();

    let mail = if smtp.caps.size {
        format!("MAIL FROM:<{}> SIZE={}\r\n", ctx.sender(), s.size)
    } else {
        format!("MAIL FROM:<{}>\r\n", ctx.sender())
    };
    let mut accepted = 0usize;
    let data_code;
    if pipelined {
        let mut cmds = mail;
        for r in &rcpts {
            let _ = write!(cmds, "RCPT TO:<{r}>\r\n");
        }
        cmds.push_str("DATA\r\n");
        smtp.conn.send(cmds.as_bytes()).await?;
        let sent = Instant::now();
        let mail_code = smtp.reply().await?;
        ctx.rec.record_since(Op::Mail, due);
        for _ in &rcpts {
            let code = smtp.reply().await?;
            ctx.rec.record_since(Op::Rcpt, sent);
            if code / 100 == 2 {
                accepted += 1;
            } else {
                ctx.rec.error(&LoadError::smtp(Op::Rcpt, code).key());
            }
        }
        data_code = smtp.reply().await?;
        if mail_code != 250 {
            if data_code == 354 {
                // Cannot happen with a conforming server; end the empty message.
                smtp.conn.send(b".\r\n").await?;
                smtp.reply().await?;
            }
            return Err(LoadError::smtp(Op::Mail, mail_code));
        }
        if accepted == 0 {
            if data_code == 354 {
                // RFC 2920 §3.1 says DATA must fail here; end the empty message regardless.
                smtp.conn.send(b".\r\n").await?;
                smtp.reply().await?;
                return Err(ProtoError::Unexpected("354 to DATA without recipients").into());
            }
            return Err(LoadError::Refused {
                op: Op::Rcpt,
                class: "all",
            });
        }
    } else {
        let code = smtp.command(mail.trim_end()).await?;
        ctx.rec.record_since(Op::Mail, due);
        if code != 250 {
            return Err(LoadError::smtp(Op::Mail, code));
        }
        for r in &rcpts {
            let t = Instant::now();
            let code = smtp.command(&format!("RCPT TO:<{r}>")).await?;
            ctx.rec.record_since(Op::Rcpt, t);
            if code / 100 == 2 {
                accepted += 1;
            } else {
                ctx.rec.error(&LoadError::smtp(Op::Rcpt, code).key());
            }
        }
        if accepted == 0 {
            return Err(LoadError::Refused {
                op: Op::Rcpt,
                class: "all",
            });
        }
        data_code = smtp.command("DATA").await?;
    }
    if data_code != 354 {
        return Err(LoadError::smtp(Op::Data, data_code));
    }

    let mut msg = Vec::with_capacity(s.size + 512);
    let date = rfc5322_now();
    template.write_message(
        &Headers {
            to: &rcpts,
            id: &id,
            date: &date,
        },
        &mut msg,
    );
    smtp.out.clear();
    dot_stuff_into(&msg, &mut smtp.out);
    let t = Instant::now();
    smtp.conn.send(&smtp.out).await?;
    let code = smtp.reply().await?;
    if code != 250 {
        return Err(LoadError::smtp(Op::Data, code));
    }
    ctx.rec.record_since(Op::Data, t);
    ctx.rec.record_since(Op::Txn, due);
    ctx.rec.add_ops(1);
    ctx.rec.add_messages(1);
    ctx.rec.ack_id(&id);
    Ok(())
}

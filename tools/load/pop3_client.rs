//! The POP3 workload: login, STAT, LIST, RETR of some or all messages, DELE of a share of
//! them, QUIT — then again on a new connection.

use std::time::Instant;

use crate::cli::{Pop3Auth, Security};
use crate::error::LoadError;
use crate::pop3_response::{list_numbers, Pop3Framer, Status};
use crate::session::{ConnCtx, ConnState};
use crate::stats::Op;
use crate::transport::Conn;

/// An open POP3 connection.
struct Pop3<'a> {
    ctx: &'a ConnCtx,
    conn: Conn,
}

impl Pop3<'_> {
    /// Sends a command when the pacer says so, reads its response (multi-line when asked)
    /// and records it from its due time. Returns the frame.
    async fn command(
        &mut self,
        state: &mut ConnState,
        op: Op,
        line: &str,
        multi: bool,
    ) -> Result<&[u8], LoadError> {
        let due = state.pacer.wait().await;
        self.conn.send(format!("{line}\r\n").as_bytes()).await?;
        let mut framer = if multi {
            Pop3Framer::multi()
        } else {
            Pop3Framer::single()
        };
        let frame = self.conn.read_frame(&mut framer).await?;
        if !Status::parse(frame)?.ok {
            return Err(LoadError::Refused { op, class: "ERR" });
        }
        self.ctx.rec.record_since(op, due);
        self.ctx.rec.add_ops(1);
        Ok(frame)
    }
}

/// One POP3 session.
pub async fn session(ctx: &ConnCtx, state: &mut ConnState) -> Result<(), LoadError> {
    let s = &ctx.settings;
    let user = ctx.user().ok_or(LoadError::Unsupported("users"))?;
    let start = Instant::now();
    let conn = ctx.connect().await?;
    let mut pop = Pop3 { ctx, conn };
    {
        let frame = pop.conn.read_frame(&mut Pop3Framer::single()).await?;
        if !Status::parse(frame)?.ok {
            return Err(LoadError::Refused {
                op: Op::Connect,
                class: "ERR",
            });
        }
    }
    ctx.rec.record_since(Op::Connect, start);

    if s.security == Security::StartTls {
        let t = Instant::now();
        pop.conn.send(b"STLS\r\n").await?;
        let frame = pop.conn.read_frame(&mut Pop3Framer::single()).await?;
        if !Status::parse(frame)?.ok {
            return Err(LoadError::Refused {
                op: Op::StartTls,
                class: "ERR",
            });
        }
        pop.conn.start_tls(ctx.tls_setup()?).await?;
        ctx.rec.record_since(Op::StartTls, t);
    }

    match s.pop3_auth {
        Pop3Auth::User => {
            pop.command(state, Op::User, &format!("USER {}", user.address), false)
                .await?;
            pop.command(state, Op::Pass, &format!("PASS {}", user.password), false)
                .await?;
        }
        Pop3Auth::Plain => {
            let b64 = crate::sasl::plain(&user.address, &user.password);
            pop.command(state, Op::Auth, &format!("AUTH PLAIN {b64}"), false)
                .await?;
        }
    }

    pop.command(state, Op::Stat, "STAT", false).await?;
    let mut numbers = list_numbers(pop.command(state, Op::List, "LIST", true).await?);
    if s.retr > 0 && numbers.len() > s.retr {
        let picked = rand::seq::index::sample(&mut state.rng, numbers.len(), s.retr);
        let mut chosen: Vec<u64> = picked
            .into_iter()
            .filter_map(|i| numbers.get(i).copied())
            .collect();
        chosen.sort_unstable();
        numbers = chosen;
    }

    let mut retrieved = Vec::with_capacity(numbers.len());
    for n in numbers {
        if !ctx.control.claim() {
            break;
        }
        match pop
            .command(state, Op::Retr, &format!("RETR {n}"), true)
            .await
        {
            Ok(_) => {
                ctx.rec.add_messages(1);
                retrieved.push(n);
            }
            Err(e) if e.keeps_connection() => ctx.rec.error(&e.key()),
            Err(e) => return Err(e),
        }
    }

    let dele = retrieved.len() * usize::from(s.dele_pct) / 100;
    for n in retrieved.into_iter().take(dele) {
        match pop
            .command(state, Op::Dele, &format!("DELE {n}"), false)
            .await
        {
            Ok(_) => {}
            Err(e) if e.keeps_connection() => ctx.rec.error(&e.key()),
            Err(e) => return Err(e),
        }
    }

    pop.command(state, Op::Quit, "QUIT", false).await?;
    ctx.rec.record_since(Op::Session, start);
    pop.conn.close().await;
    Ok(())
}

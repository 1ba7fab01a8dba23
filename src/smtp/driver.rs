//! The SMTP network driver: feeds socket bytes to the sans-IO [`Session`], runs its actions
//! (TLS handshake, password check, durable delivery) and writes its replies.

use super::envelope::{Envelope, QueueIdGenerator};
use super::session::{
    Action, DeliveryError, Directory, ListenerKind, Resolution, Session, SessionConfig,
};
use crate::accounts::{self, AccountDb};
use crate::config::{Config, Listener};
use crate::metrics::{self, Counter, Metric, RejectReason};
use crate::net::Conn;
use crate::server::stop::{read_or_stop, ReadOrStop};
use crate::server::Exec;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Read buffer of a new connection: enough for any command exchange. Idle connections are
/// what floods are made of, so they stay small.
const READ_CHUNK_MIN: usize = 4 * 1024;
/// Read buffer once reads fill it (message data): fewer, larger reads.
const READ_CHUNK_MAX: usize = 64 * 1024;

thread_local! {
    /// Per-executor session configs, one per listener kind, sharing one queue-id generator.
    static CONFIGS: RefCell<HashMap<Listener, Arc<SessionConfig>>> = RefCell::new(HashMap::new());
}

fn session_config(exec: &Exec, kind: Listener) -> Arc<SessionConfig> {
    CONFIGS.with(|c| {
        let mut c = c.borrow_mut();
        let ids = c
            .values()
            .next()
            .map(|cfg| cfg.queue_ids.clone())
            .unwrap_or_else(|| Arc::new(QueueIdGenerator::new(exec.id() as u16)));
        c.entry(kind)
            .or_insert_with(|| {
                let role = match kind {
                    Listener::Submission => ListenerKind::Submission,
                    Listener::Submissions => ListenerKind::Submissions,
                    _ => ListenerKind::Mx,
                };
                let l = &exec.shared.cfg.limits;
                let mut cfg =
                    SessionConfig::new(exec.shared.cfg.server.hostname.clone(), role, ids);
                cfg.max_message_size = usize::try_from(l.max_message_size).unwrap_or(usize::MAX);
                cfg.max_recipients = l.max_recipients;
                cfg.max_line_length = l.max_line_length;
                cfg.postmaster = exec.shared.cfg.postmaster_address();
                Arc::new(cfg)
            })
            .clone()
    })
}

/// The account database as the session's [`Directory`].
struct Dir<'a> {
    exec: &'a Exec,
    cfg: &'a Config,
}

impl Dir<'_> {
    fn lookup(&self, db: &AccountDb, addr: &str) -> Resolution {
        match db.resolve(addr, |d| self.cfg.is_local_domain(d)) {
            accounts::Resolution::Local(a) => Resolution::Local(a),
            accounts::Resolution::UnknownLocal => Resolution::UnknownLocal,
            accounts::Resolution::NonLocal => Resolution::NonLocal,
        }
    }
}

impl Directory for Dir<'_> {
    fn resolve(&self, addr: &str) -> Resolution {
        let r = self.lookup(&self.exec.accounts(), addr);
        if r != Resolution::UnknownLocal {
            return r;
        }
        // A 550 is permanent: make sure an account added a moment ago is not refused.
        self.exec.refresh_accounts();
        self.lookup(&self.exec.accounts(), addr)
    }

    fn is_full(&self, account: &str) -> bool {
        self.exec.shared.quota.is_full(account)
    }

    fn may_send_as(&self, account: &str, from: &str) -> bool {
        self.exec.accounts().may_send_as(account, from) || {
            self.exec.refresh_accounts();
            self.exec.accounts().may_send_as(account, from)
        }
    }
}

/// Serves one SMTP connection from its banner to QUIT.
pub async fn serve(exec: Rc<Exec>, kind: Listener, mut conn: Conn) {
    let accepted = Instant::now();
    let mut session = Session::new(session_config(&exec, kind), conn.peer().ip(), conn.is_tls());
    session.greeting();
    if flush(&mut conn, &mut session).await.is_err() {
        return;
    }
    metrics::record(Metric::SmtpBanner, accepted.elapsed());
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; READ_CHUNK_MIN];
    let mut started = Instant::now();
    // Message data held in memory counts against the executor's budget (net::budget).
    let mut hold = exec.message_memory.hold();
    loop {
        let dir = Dir {
            exec: &exec,
            cfg: &exec.shared.cfg,
        };
        session.set_memory_pressure(hold.exhausted());
        let p = session.feed(&inbuf, &dir);
        inbuf.drain(..p.consumed);
        if !hold.set(session.buffered_message_bytes()) && session.shed_message() {
            tracing::info!(
                peer = %conn.peer(),
                held = hold.held(),
                limit = exec.message_memory.limit(),
                "message memory exhausted; message refused with 452"
            );
            hold.set(session.buffered_message_bytes());
        }
        for k in p.completed {
            metrics::record(Metric::from_smtp_command(k.name()), started.elapsed());
        }
        match p.action {
            None => {
                if flush(&mut conn, &mut session).await.is_err() || session.wants_close() {
                    break;
                }
                let idle = inbuf.is_empty() && session.is_between_commands();
                // A line, a message or a BDAT chunk is only partly here. (Right after 354 the
                // reply carried the ACK: asking again would only add an ACK per message.)
                if !inbuf.is_empty() || session.is_mid_send() {
                    conn.ack_promptly();
                }
                let read = match read_or_stop(&mut conn, &mut chunk, &exec.stopping, idle).await {
                    ReadOrStop::Read(r) => r,
                    ReadOrStop::Stopping => {
                        session.shutting_down();
                        break;
                    }
                };
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        session.timed_out();
                        break;
                    }
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        metrics::incr(Counter::BytesIn, n as u64);
                        inbuf.extend_from_slice(&chunk[..n]);
                        if n == chunk.len() && chunk.len() < READ_CHUNK_MAX {
                            chunk.resize(READ_CHUNK_MAX, 0);
                        }
                    }
                }
                started = Instant::now();
            }
            Some(Action::StartTls) => {
                if flush(&mut conn, &mut session).await.is_err() {
                    break;
                }
                // RFC 3207 §4.2: whatever the client pipelined after STARTTLS is dropped.
                inbuf.clear();
                let t = Instant::now();
                if !crate::server::listeners::handshake(&exec, &mut conn).await {
                    break;
                }
                session.tls_established();
                metrics::record(Metric::SmtpStarttls, t.elapsed());
            }
            Some(Action::Authenticate { user, password, .. }) => {
                let account = exec.authenticate(conn.peer().ip(), &user, &password).await;
                let k = session.auth_result(account);
                metrics::record(Metric::from_smtp_command(k.name()), started.elapsed());
            }
            Some(Action::Deliver(env)) => {
                // The message stays in memory until it is stored.
                hold.set(env.message_len());
                let r = deliver(&exec, &env).await;
                drop(env);
                hold.set(session.buffered_message_bytes());
                match r {
                    Ok(()) => metrics::incr(Counter::MessagesAccepted, 1),
                    Err(_) => metrics::incr(Counter::MessagesRejected(RejectReason::Storage), 1),
                }
                let k = session.delivery_result(r);
                metrics::record(Metric::from_smtp_command(k.name()), started.elapsed());
            }
        }
    }
    let _ = flush(&mut conn, &mut session).await;
    conn.close().await;
}

async fn flush(conn: &mut Conn, session: &mut Session) -> std::io::Result<()> {
    if session.output().is_empty() {
        return Ok(());
    }
    metrics::incr(Counter::BytesOut, session.output().len() as u64);
    let r = conn.write_all(session.output()).await;
    session.clear_output();
    r
}

/// Stores a message for its local recipients and queues it for its remote ones; Ok only when
/// everything is durable.
async fn deliver(exec: &Rc<Exec>, env: &Envelope) -> Result<(), DeliveryError> {
    let mut accounts: Vec<String> = env
        .rcpts_local
        .iter()
        .flat_map(|r| r.accounts.iter().cloned())
        .collect();
    accounts.sort();
    accounts.dedup();
    if !accounts.is_empty() {
        if let Err(e) =
            crate::delivery::deliver(exec, env.prefix.clone(), env.body.clone(), &accounts).await
        {
            if let crate::delivery::DeliveryError::NoSpace { .. } = e {
                // Storage said so once, when the disk filled up; not once per message.
                tracing::debug!(queue_id = %env.queue_id, error = %e, "local delivery refused");
                return Err(DeliveryError::InsufficientStorage);
            }
            tracing::error!(queue_id = %env.queue_id, error = %e, "local delivery failed");
            return Err(DeliveryError::Temporary);
        }
    }
    if !env.rcpts_remote.is_empty() {
        if let Err(e) = crate::outbound::enqueue(
            exec,
            &env.from,
            &env.rcpts_remote,
            env.relay_prefix(),
            env.body.clone(),
        )
        .await
        {
            tracing::error!(queue_id = %env.queue_id, error = %e, "queueing for relay failed");
            return Err(DeliveryError::Temporary);
        }
    }
    tracing::debug!(queue_id = %env.queue_id, from = %env.from, local = accounts.len(), remote = env.rcpts_remote.len(), size = env.message_len(), "accepted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::envelope::QueueIdGenerator;
    use super::super::session::*;
    use std::sync::Arc;

    struct NoUsers;
    impl Directory for NoUsers {
        fn resolve(&self, _: &str) -> Resolution {
            Resolution::UnknownLocal
        }
        fn may_send_as(&self, _: &str, _: &str) -> bool {
            false
        }
    }

    /// A line longer than the limit, with the next command in the same read: 500, then the
    /// next command is still answered.
    #[test]
    fn long_line_then_noop_in_one_buffer() {
        let mut cfg = SessionConfig::new("h", ListenerKind::Mx, Arc::new(QueueIdGenerator::new(1)));
        cfg.max_line_length = 4096;
        let mut s = Session::new(Arc::new(cfg), "127.0.0.1".parse().unwrap(), false);
        s.greeting();
        s.clear_output();
        let mut buf = vec![b'N'; 10_000];
        buf.extend_from_slice(b"\r\nNOOP\r\n");
        let p = s.feed(&buf, &NoUsers);
        assert_eq!(p.consumed, buf.len());
        let out = String::from_utf8_lossy(s.output()).to_string();
        assert!(
            out.starts_with("500 5.5.2") && out.contains("\r\n250 2.0.0"),
            "{out}"
        );
    }
}

//! The POP3 network driver: feeds socket bytes to the sans-IO [`Session`], performs its actions
//! against the account's shard, and moves the connection to the owning executor after login.

use super::{
    Action, Event, FetchError, Maildrop, MaildropEntry, MaildropError, Pop3Config, Session,
    Transport,
};
use crate::config::Listener;
use crate::metrics::{self, Metric};
use crate::net::{Conn, ConnParts, Hold};
use crate::server::stop::{read_or_stop, ReadOrStop};
use crate::server::{executor::Handoff, Exec};
use bytes::Bytes;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use storage::{BodyRef, Shard};

const READ_CHUNK: usize = 8192;

/// Serves one POP3 connection from its greeting.
pub async fn serve(exec: Rc<Exec>, kind: Listener, conn: Conn) {
    let cfg = Arc::new(Pop3Config {
        hostname: exec.shared.cfg.server.hostname.clone(),
        stls_available: true,
        allow_plaintext_auth: exec.shared.cfg.tls.allow_plaintext_auth,
        ..Pop3Config::default()
    });
    let transport = if kind.implicit_tls() {
        Transport::ImplicitTls
    } else {
        Transport::Plaintext
    };
    let session = Session::new(cfg, transport);
    run(exec, conn, session, Vec::new(), None).await;
}

/// A POP3 connection on its way to the account's executor.
struct Pop3Handoff {
    parts: ConnParts,
    session: Session,
    inbuf: Vec<u8>,
    pending: Action,
}

impl Handoff for Pop3Handoff {
    fn start(self: Box<Self>, exec: Rc<Exec>) {
        let h = *self;
        glommio::spawn_local(async move {
            let _guard = exec.session_guard();
            let conn = Conn::from_parts(h.parts);
            let session = run(exec, conn, h.session, h.inbuf, Some(h.pending));
            crate::server::executor::contain_panics("pop3", session).await;
        })
        .detach();
    }
}

/// Releases the exclusive maildrop lock when the session ends, however it ends.
struct MaildropLock {
    exec: Rc<Exec>,
    account: String,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.exec.maildrop_locks.borrow_mut().remove(&self.account);
    }
}

async fn run(
    exec: Rc<Exec>,
    mut conn: Conn,
    mut session: Session,
    mut inbuf: Vec<u8>,
    mut pending: Option<Action>,
) {
    let mut lock: Option<MaildropLock> = None;
    // This session's claim on the executor's output memory (responses waiting for the client).
    let mut output = exec.output_memory.hold();
    let mut started = Instant::now();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let event = match pending.take() {
            Some(a) => Event::Action(a),
            None => {
                let p = session.process(&inbuf);
                inbuf.drain(..p.consumed);
                p.event
            }
        };
        match event {
            Event::NeedInput => {
                if flush(&mut conn, &mut session, &mut output).await.is_err() {
                    break;
                }
                if !inbuf.is_empty() {
                    conn.ack_promptly(); // a command line is only partly here
                }
                // Between commands a stop just closes: POP3 has no unsolicited goodbye, and
                // without QUIT nothing marked for deletion is removed (RFC 1939 §6).
                let read =
                    match read_or_stop(&mut conn, &mut chunk, &exec.stopping, inbuf.is_empty())
                        .await
                    {
                        ReadOrStop::Read(r) => r,
                        ReadOrStop::Stopping => break,
                    };
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        metrics::incr(metrics::Counter::BytesIn, n as u64);
                        inbuf.extend_from_slice(&chunk[..n]);
                    }
                }
                started = Instant::now();
            }
            Event::Flush => {
                if flush(&mut conn, &mut session, &mut output).await.is_err() {
                    break;
                }
            }
            Event::Completed(kind) => {
                metrics::record(Metric::from_pop3_command(kind.as_str()), started.elapsed());
                started = Instant::now();
            }
            Event::Action(Action::Authenticate { user, password }) => {
                let account = exec.authenticate(conn.peer().ip(), &user, &password).await;
                if session.auth_result(account).is_err() {
                    break;
                }
            }
            Event::Action(Action::OpenMaildrop { account }) => {
                if !exec.owns_account(&account) {
                    let Ok(parts) = conn.into_parts() else { return };
                    let pending = Action::OpenMaildrop {
                        account: account.clone(),
                    };
                    let h = Box::new(Pop3Handoff {
                        parts,
                        session,
                        inbuf,
                        pending,
                    });
                    exec.hand_off(&account, h).await;
                    return; // the owner runs the connection from here on
                }
                let r = open_maildrop(&exec, &account).await;
                if r.is_ok() {
                    lock = Some(MaildropLock {
                        exec: exec.clone(),
                        account: account.clone(),
                    });
                }
                if session.maildrop_result(r).is_err() {
                    break;
                }
            }
            Event::Action(Action::Fetch { uid }) => {
                let r = match lock.as_ref() {
                    Some(l) => match locate(&exec, &l.account, uid) {
                        Ok((shard, body)) => {
                            // A response waits in memory until the client reads it: claim room
                            // for the body in the executor's output memory before reading it,
                            // after our own pending output is written if need be.
                            let size = body.len() as usize;
                            if !output.fits(session.output_len() + size)
                                && flush(&mut conn, &mut session, &mut output).await.is_err()
                            {
                                break;
                            }
                            let claim = session.output_len() + size;
                            if output.fits(claim) {
                                output.set(claim);
                                read(&shard, body, &l.account, uid).await
                            } else {
                                Err(FetchError::ShortOfMemory)
                            }
                        }
                        Err(e) => Err(e),
                    },
                    None => Err(FetchError::Unavailable),
                };
                if session.body_result(r).is_err() {
                    break;
                }
            }
            Event::Action(Action::Commit { expunge }) => {
                let ok = match (
                    lock.as_ref(),
                    lock.as_ref().and_then(|l| exec.local_shard(&l.account)),
                ) {
                    (Some(l), Some(shard)) => {
                        match shard.expunge(&l.account, storage::INBOX, &expunge).await {
                            Ok(_) => true,
                            Err(e) => {
                                tracing::error!(account = %l.account, error = %e, "POP3 expunge failed");
                                false
                            }
                        }
                    }
                    _ => false,
                };
                if session.commit_result(ok).is_err() {
                    break;
                }
            }
            Event::AwaitingResult => break,
            Event::StartTls => {
                if flush(&mut conn, &mut session, &mut output).await.is_err() {
                    break;
                }
                // RFC 2595: nothing the client pipelined after STLS may be acted on.
                inbuf.clear();
                if !crate::server::listeners::handshake(&exec, &mut conn).await
                    || session.tls_established().is_err()
                {
                    break;
                }
            }
            Event::Close => {
                let _ = flush(&mut conn, &mut session, &mut output).await;
                break;
            }
        }
    }
    drop(lock);
    conn.close().await;
}

async fn flush(conn: &mut Conn, session: &mut Session, output: &mut Hold) -> std::io::Result<()> {
    let out = session.take_output();
    if out.is_empty() {
        return Ok(());
    }
    metrics::incr(metrics::Counter::BytesOut, out.len() as u64);
    // Held until the client has taken it.
    output.set(out.len());
    let r = conn.write_all(&out).await;
    output.set(0);
    r
}

/// Locks the account's maildrop (RFC 1939 exclusive access) and snapshots its INBOX.
async fn open_maildrop(exec: &Rc<Exec>, account: &str) -> Result<Maildrop, MaildropError> {
    let shard = exec
        .local_shard(account)
        .ok_or(MaildropError::Unavailable)?;
    if let Err(e) = shard.ensure_account(account).await {
        tracing::error!(%account, error = %e, "cannot open account");
        return Err(MaildropError::Unavailable);
    }
    if !exec.maildrop_locks.borrow_mut().insert(account.to_string()) {
        return Err(MaildropError::InUse);
    }
    let drop = shard.with_mailbox(account, storage::INBOX, |mb| Maildrop {
        uidvalidity: mb.uidvalidity(),
        entries: mb
            .messages()
            .iter()
            .map(|m| MaildropEntry {
                uid: m.uid,
                size: u64::from(m.size),
            })
            .collect(),
    });
    match drop {
        Some(d) => Ok(d),
        None => {
            exec.maildrop_locks.borrow_mut().remove(account);
            Err(MaildropError::Unavailable)
        }
    }
}

/// The shard and body of an INBOX message of this executor.
fn locate(exec: &Exec, account: &str, uid: u32) -> Result<(Rc<Shard>, BodyRef), FetchError> {
    let shard = exec.local_shard(account).ok_or(FetchError::Unavailable)?;
    let body = shard
        .with_mailbox(account, storage::INBOX, |mb| mb.find(uid).map(|m| m.body))
        .flatten()
        .ok_or(FetchError::Gone)?;
    Ok((shard, body))
}

/// Reads a body found by [`locate`].
async fn read(shard: &Shard, body: BodyRef, account: &str, uid: u32) -> Result<Bytes, FetchError> {
    shard.read_body(body).await.map_err(|e| {
        tracing::error!(%account, uid, error = %e, "POP3 read failed");
        FetchError::Unavailable
    })
}

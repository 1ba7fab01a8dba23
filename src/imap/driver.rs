//! The IMAP network driver: feeds socket bytes to the sans-IO [`Session`], runs its actions
//! (TLS handshake, password check, IDLE waits) and writes its output. After LOGIN the
//! connection moves to the executor that owns the account's shard (DESIGN.md, "Access").

use super::session::{Action, Session, SessionConfig, Step};
use super::shard_store::{RecentMarks, ShardStore};
use crate::config::Listener;
use crate::metrics::{self, Counter, Metric};
use crate::net::{Conn, ConnParts};
use crate::server::stop::{read_or_stop, ReadOrStop, StopSignal};
use crate::server::{executor::Handoff, Exec};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const READ_CHUNK: usize = 64 * 1024;
/// RFC 3501 §5.4: an idle client may be logged out only after at least 30 minutes.
const AUTOLOGOUT: Duration = Duration::from_secs(31 * 60);
/// Text of the `* BYE` an idle session gets when the server stops.
const SHUTTING_DOWN: &str = "Server shutting down.";

thread_local! {
    static RECENT: Rc<RecentMarks> = Rc::new(RecentMarks::default());
}

/// Serves one IMAP connection from its greeting.
pub async fn serve(exec: Rc<Exec>, kind: Listener, conn: Conn) {
    let l = &exec.shared.cfg.limits;
    let cfg = SessionConfig {
        hostname: exec.shared.cfg.server.hostname.clone(),
        tls_available: true,
        implicit_tls: kind.implicit_tls(),
        max_literal: l.max_message_size,
        max_line: l.max_line_length.max(65536),
        quota_bytes: l.quota_bytes,
        allow_plaintext_auth: exec.shared.cfg.tls.allow_plaintext_auth,
    };
    let session = Session::new(cfg, conn.is_tls());
    run(exec, conn, session).await;
}

/// An authenticated IMAP connection on its way to the account's executor.
struct ImapHandoff {
    parts: ConnParts,
    session: Session,
}

impl Handoff for ImapHandoff {
    fn start(self: Box<Self>, exec: Rc<Exec>) {
        let h = *self;
        glommio::spawn_local(async move {
            let _guard = exec.session_guard();
            let conn = Conn::from_parts(h.parts);
            crate::server::executor::contain_panics("imap", run(exec, conn, h.session)).await;
        })
        .detach();
    }
}

async fn run(exec: Rc<Exec>, mut conn: Conn, mut session: Session) {
    // RFC 3501 §5.4 asks for at least 30 minutes once logged in; before that the general idle
    // timeout applies, so unauthenticated connections cannot be parked for half an hour.
    let pre_login = exec.shared.cfg.limits.idle_timeout();
    let _ = conn.set_timeout(if session.account().is_some() {
        AUTOLOGOUT
    } else {
        pre_login
    });
    let recent = RECENT.with(|r| r.clone());
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut started = Instant::now();
    // Literals (APPEND) held in memory count against the executor's budget (net::budget),
    // like SMTP message data; one that would not fit is refused before it is sent.
    let mut hold = exec.message_memory.hold();
    // Responses waiting for a slow reader count against the executor's output memory: a FETCH
    // claims room for each body before reading it (MailStore::claim_output).
    let output = RefCell::new(exec.output_memory.hold());
    loop {
        session.set_memory_room(Some(hold.room()));
        // Before login any local shard will do: no mailbox is touched.
        let shard = match session.account() {
            Some(a) => exec.local_shard(a),
            None => exec.any_local_shard(),
        };
        let Some(shard) = shard else {
            tracing::error!("no shard for this session");
            break;
        };
        let store = ShardStore {
            shard: &shard,
            recent: &recent,
            output: &output,
        };
        let step = session.step(&store).await;
        hold.set(session.committed_input());
        output.borrow_mut().set(session.output().len());
        match step {
            Step::NeedInput => {
                if flush(&mut conn, &mut session).await.is_err() {
                    break;
                }
                // Everything is written: a client that now waits claims no output memory.
                output.borrow_mut().set(0);
                let idle = session.awaits_command();
                if !idle {
                    conn.ack_promptly();
                }
                let read = match read_or_stop(&mut conn, &mut chunk, &exec.stopping, idle).await {
                    ReadOrStop::Read(r) => r,
                    ReadOrStop::Stopping => {
                        session.bye(SHUTTING_DOWN);
                        break;
                    }
                };
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        session.bye("Autologout; idle for too long.");
                        break;
                    }
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        metrics::incr(Counter::BytesIn, n as u64);
                        session.feed(&chunk[..n]);
                    }
                }
                started = Instant::now();
            }
            Step::Flush => {
                if flush(&mut conn, &mut session).await.is_err() {
                    break;
                }
            }
            Step::Completed(name) => {
                metrics::record(Metric::from_imap_command(name), started.elapsed());
                started = Instant::now();
            }
            Step::Action(Action::StartTls) => {
                if flush(&mut conn, &mut session).await.is_err() {
                    break;
                }
                if !crate::server::listeners::handshake(&exec, &mut conn).await {
                    break;
                }
                session.tls_established();
            }
            Step::Action(Action::Authenticate { user, pass }) => {
                let account = exec.authenticate(conn.peer().ip(), &user, &pass).await;
                if let Some(name) = session.auth_result(account) {
                    metrics::record(Metric::from_imap_command(name), started.elapsed());
                    started = Instant::now();
                }
                if let Some(a) = session.account().map(str::to_string) {
                    let _ = conn.set_timeout(AUTOLOGOUT);
                    if !exec.owns_account(&a) {
                        if flush(&mut conn, &mut session).await.is_err() {
                            break;
                        }
                        let Ok(parts) = conn.into_parts() else { return };
                        exec.hand_off(&a, Box::new(ImapHandoff { parts, session }))
                            .await;
                        return; // the owner runs the connection from here on
                    }
                }
            }
            Step::Action(Action::Idle) => {
                if flush(&mut conn, &mut session).await.is_err() {
                    break;
                }
                output.borrow_mut().set(0);
                if !idle(&mut conn, &mut session, &store, &mut chunk, &exec.stopping).await {
                    break;
                }
                started = Instant::now();
            }
            Step::Action(Action::Close) => break,
        }
    }
    let _ = flush(&mut conn, &mut session).await;
    conn.close().await;
}

/// What ends a wait in IDLE.
enum IdleWake {
    /// The client sent something (or the connection failed).
    Input(std::io::Result<()>),
    /// The watched mailbox changed.
    Changed,
    /// The server is stopping.
    Stopping,
}

/// Waits in IDLE until the client sends something (read and fed to the session) or the
/// mailbox changes (untagged updates written). Returns false when the connection is gone.
async fn idle(
    conn: &mut Conn,
    session: &mut Session,
    store: &ShardStore<'_>,
    chunk: &mut [u8],
    stopping: &StopSignal,
) -> bool {
    loop {
        let watch = session
            .idle_watch()
            .map(|(a, m, v)| (a.to_string(), m.to_string(), v));
        let input_ready = match watch {
            None => true, // nothing to watch: just wait for DONE like any input
            Some((account, mailbox, seen)) => {
                use futures::FutureExt;
                let input = conn.readable().map(IdleWake::Input);
                let changed = store
                    .shard
                    .mailbox_changed(&account, &mailbox, seen)
                    .map(|()| IdleWake::Changed);
                let stop = stopping.wait().map(|()| IdleWake::Stopping);
                // Biased in this order: input first, so DONE is never lost to an update.
                match futures_lite::future::or(input, futures_lite::future::or(changed, stop)).await
                {
                    IdleWake::Input(r) => {
                        if r.is_err() {
                            return false;
                        }
                        true
                    }
                    IdleWake::Changed => false,
                    IdleWake::Stopping => {
                        session.bye(SHUTTING_DOWN);
                        return false;
                    }
                }
            }
        };
        if input_ready {
            let read = match read_or_stop(conn, chunk, stopping, true).await {
                ReadOrStop::Read(r) => r,
                ReadOrStop::Stopping => {
                    session.bye(SHUTTING_DOWN);
                    return false;
                }
            };
            return match read {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    metrics::incr(Counter::BytesIn, n as u64);
                    session.feed(&chunk[..n]);
                    true
                }
            };
        }
        session.idle_update(store);
        if flush(conn, session).await.is_err() {
            return false;
        }
    }
}

async fn flush(conn: &mut Conn, session: &mut Session) -> std::io::Result<()> {
    if session.output().is_empty() {
        return Ok(());
    }
    let out = session.take_output();
    metrics::incr(Counter::BytesOut, out.len() as u64);
    conn.write_all(&out).await
}

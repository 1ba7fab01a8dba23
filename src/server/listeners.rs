//! Listeners: every executor binds every configured address (SO_REUSEPORT) and hands each
//! accepted connection to its protocol driver.

use super::executor::Exec;
use crate::config::Listener;
use crate::metrics::{self, Counter, Gauge, Metric};
use crate::net::Conn;
use glommio::net::TcpListener;
use std::rc::Rc;
use std::time::Instant;

/// Accept loops; dropping this stops accepting.
pub struct Listeners {
    _tasks: Vec<glommio::Task<()>>,
}

/// Binds every configured listener on this executor (and, on executor 0, the admin socket
/// and the metrics endpoint).
pub fn bind_all(exec: &Rc<Exec>) -> Result<Listeners, String> {
    let mut tasks = Vec::new();
    for (kind, addr) in exec.shared.cfg.listen.all() {
        let listener =
            bind(addr).map_err(|e| format!("cannot listen on {addr} ({}): {e}", kind.name()))?;
        let exec = exec.clone();
        tasks.push(glommio::spawn_local(accept_loop(exec, kind, listener)));
    }
    if exec.id() == 0 {
        tasks.extend(crate::server::admin::bind(exec)?);
    }
    Ok(Listeners { _tasks: tasks })
}

/// Binds a listening socket shared by every executor (SO_REUSEPORT). SO_REUSEADDR lets a
/// restart bind while connections of the previous run linger in TIME_WAIT.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    // SAFETY: a freshly made listening socket whose ownership moves into the listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

async fn accept_loop(exec: Rc<Exec>, kind: Listener, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = kind.name(), error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let exec = exec.clone();
        let span =
            tracing::debug_span!("conn", listener = kind.name(), peer = ?stream.peer_addr().ok());
        glommio::spawn_local(tracing::Instrument::instrument(
            async move {
                let _guard = exec.session_guard();
                metrics::incr(Counter::ConnectionsTotal(kind.metric()), 1);
                metrics::gauge_add(Gauge::ConnectionsCurrent(kind.metric()), 1);
                let conn = match Conn::new(stream) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "connection lost before start");
                        metrics::gauge_add(Gauge::ConnectionsCurrent(kind.metric()), -1);
                        return;
                    }
                };
                super::executor::contain_panics(kind.name(), serve_connection(exec, kind, conn))
                    .await;
                metrics::gauge_add(Gauge::ConnectionsCurrent(kind.metric()), -1);
            },
            span,
        ))
        .detach();
    }
}

/// Runs a TLS handshake on a connection, recording its latency.
pub async fn handshake(exec: &Exec, conn: &mut Conn) -> bool {
    let started = Instant::now();
    match conn.start_tls(exec.shared.tls.clone()).await {
        Ok(()) => {
            metrics::record(Metric::TlsHandshake, started.elapsed());
            true
        }
        Err(e) => {
            metrics::incr(Counter::TlsHandshakesFailed, 1);
            tracing::debug!(peer = %conn.peer(), error = %e, "TLS handshake failed");
            false
        }
    }
}

async fn serve_connection(exec: Rc<Exec>, kind: Listener, mut conn: Conn) {
    let timeout = std::time::Duration::from_secs(exec.shared.cfg.limits.idle_timeout_secs.max(1));
    let _ = conn.set_timeout(timeout);
    if kind.implicit_tls() && !handshake(&exec, &mut conn).await {
        return;
    }
    match kind {
        Listener::Smtp | Listener::Submission | Listener::Submissions => {
            crate::smtp::driver::serve(exec, kind, conn).await
        }
        Listener::Imap | Listener::Imaps => crate::imap::driver::serve(exec, kind, conn).await,
        Listener::Pop3 | Listener::Pop3s => crate::pop3::driver::serve(exec, kind, conn).await,
    }
}

//! Listeners: every executor binds every configured address (SO_REUSEPORT) and hands each
//! accepted connection to its protocol driver.

use super::executor::Exec;
use crate::config::Listener;
use crate::metrics::{self, Counter, Gauge, Metric};
use crate::net::{limit, Conn};
use futures::future::Either;
use glommio::net::TcpListener;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Accept loops; dropping this stops accepting.
pub struct Listeners {
    _tasks: Vec<glommio::Task<()>>,
}

/// Binds every configured listener on this executor (and, on executor 0, the admin socket
/// and the metrics endpoint).
pub fn bind_all(exec: &Rc<Exec>) -> Result<Listeners, String> {
    static LIMITS: std::sync::Once = std::sync::Once::new();
    LIMITS.call_once(|| {
        crate::net::budget::tune_allocator();
        set_connection_limit(exec.shared.cfg.limits.max_connections);
    });
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

/// Raises the open-file limit as far as allowed and sets the connection limit: the configured
/// one, or as many as the descriptors allow with a reserve for data files, so that a flood
/// of connections can never starve storage of descriptors.
fn set_connection_limit(configured: usize) {
    let fd_limit = match limit::raise_fd_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            u64::MAX
        }
    };
    let by_fds = limit::connections_for_fds(fd_limit, limit::open_fds());
    let n = if configured == 0 {
        by_fds.min(limit::DEFAULT_MAX_CONNECTIONS)
    } else {
        if configured > by_fds {
            tracing::warn!(
                max_connections = configured,
                fd_limit,
                "limits.max_connections is more than the open-file limit allows"
            );
        }
        configured.min(by_fds)
    };
    limit::set_connection_limit(n);
    tracing::info!(fd_limit, max_connections = n, "connection limit");
}

/// Fails if anyone listens on `addr`. The executors bind with SO_REUSEPORT, which would also
/// let a second ringpost of the same user (another data_dir, same ports) join silently and
/// take a share of the connections; a bind without it fails while any socket listens there.
///
/// A server killed a moment ago still holds its sockets until the kernel has torn down its
/// io_uring, so a busy address is retried for up to `patience` before it counts as taken.
pub fn ensure_free(addr: std::net::SocketAddr, patience: Duration) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let deadline = Instant::now() + patience;
    loop {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // Connections of a previous run lingering in TIME_WAIT do not count.
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(std::io::Error::new(
                    e.kind(),
                    "address in use (another server, or another ringpost, listens there)",
                ));
            }
            other => return other,
        }
    }
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
    // Accepted sockets inherit TCP_NODELAY (Linux copies it from the listener): replies
    // go out at once, without a setsockopt per connection.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    // SAFETY: a freshly made listening socket whose ownership moves into the listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

async fn accept_loop(exec: Rc<Exec>, kind: Listener, listener: TcpListener) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and say so once a
                // minute, not on every retry.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(listener = kind.name(), error = %e, "accept failed");
                    last_warning = Some(Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(slot) = limit::try_acquire() else {
            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    listener = kind.name(),
                    limit = limit::connection_limit(),
                    "too many connections; refusing new ones"
                );
                last_warning = Some(Instant::now());
            }
            glommio::spawn_local(refuse(exec.clone(), kind, stream)).detach();
            continue;
        };
        metrics::incr(Counter::ConnectionsTotal(kind.metric()), 1);
        let mut conn = match Conn::new(stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(listener = kind.name(), error = %e, "connection lost before start");
                continue;
            }
        };
        conn.set_slot(slot);
        let exec = exec.clone();
        let span = tracing::debug_span!("conn", listener = kind.name(), peer = %conn.peer());
        glommio::spawn_local(tracing::Instrument::instrument(
            async move {
                let _guard = exec.session_guard();
                metrics::gauge_add(Gauge::ConnectionsCurrent(kind.metric()), 1);
                super::executor::contain_panics(kind.name(), serve_connection(exec, kind, conn))
                    .await;
                metrics::gauge_add(Gauge::ConnectionsCurrent(kind.metric()), -1);
            },
            span,
        ))
        .detach();
    }
}

/// Turns a client away when the connection limit is reached: a plaintext protocol gets its
/// "busy, try later" greeting, a TLS port just the close.
async fn refuse(exec: Rc<Exec>, kind: Listener, mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let busy = match kind {
        // RFC 5321 §3.1: "421 <domain> Service not available".
        Listener::Smtp | Listener::Submission => format!(
            "421 4.3.2 {} Too many connections, try again later\r\n",
            exec.shared.cfg.server.hostname
        ),
        Listener::Imap => "* BYE [UNAVAILABLE] Too many connections, try again later\r\n".into(),
        Listener::Pop3 => "-ERR [SYS/TEMP] Too many connections, try again later\r\n".into(),
        Listener::Submissions | Listener::Imaps | Listener::Pop3s => String::new(),
    };
    if !busy.is_empty() {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(busy.as_bytes()).await;
    }
    let _ = stream.shutdown(std::net::Shutdown::Both).await;
}

/// Runs a TLS handshake on a connection, recording its latency. The whole handshake must
/// finish within `limits.tls_handshake_timeout_secs`: the per-read idle timeout alone would
/// let a client that sends one byte now and then hold the connection forever.
pub async fn handshake(exec: &Exec, conn: &mut Conn) -> bool {
    let started = Instant::now();
    let limit = Duration::from_secs(exec.shared.cfg.limits.tls_handshake_timeout_secs.max(1));
    let peer = conn.peer();
    let result = {
        let tls = conn.start_tls(exec.shared.tls.clone());
        let deadline = glommio::timer::sleep(limit);
        futures::pin_mut!(tls, deadline);
        match futures::future::select(tls, deadline).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake took too long",
            )),
        }
    };
    match result {
        Ok(()) => {
            metrics::record(Metric::TlsHandshake, started.elapsed());
            true
        }
        Err(e) => {
            metrics::incr(Counter::TlsHandshakesFailed, 1);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            false
        }
    }
}

async fn serve_connection(exec: Rc<Exec>, kind: Listener, mut conn: Conn) {
    let limits = &exec.shared.cfg.limits;
    let timeout = match kind {
        Listener::Pop3 | Listener::Pop3s => limits.pop3_idle_timeout(),
        _ => limits.idle_timeout(),
    };
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

#[cfg(test)]
mod tests {
    use std::os::unix::io::{AsRawFd, FromRawFd};

    /// Whether TCP_NODELAY is set on a socket the caller keeps owning.
    fn nodelay(fd: std::os::unix::io::RawFd) -> bool {
        // SAFETY: borrowed for one getsockopt; ManuallyDrop keeps the fd open.
        let socket = std::mem::ManuallyDrop::new(unsafe { socket2::Socket::from_raw_fd(fd) });
        socket.nodelay().expect("getsockopt")
    }

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let listener = super::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
                let addr = listener.local_addr().expect("local addr");
                let client = std::net::TcpStream::connect(addr).expect("connect");
                let accepted = listener.accept().await.expect("accept");
                assert!(
                    nodelay(accepted.as_raw_fd()),
                    "accepted socket without TCP_NODELAY"
                );
                assert!(
                    !nodelay(client.as_raw_fd()),
                    "the check itself is not constant"
                );
            })
            .expect("executor")
            .join()
            .expect("test body");
    }
}

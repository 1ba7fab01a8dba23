//! Network drivers: the admin unix socket and the HTTP metrics listener.
//!
//! Thin loops around the sans-IO pieces in `admin` and `http`. Every connection is its own
//! task, bounded in count and in time (reading, collecting and writing each have a deadline),
//! and gets exactly one response before the server closes it.

use std::cell::Cell;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, UnixListener};

use super::admin::{error_json, parse_admin_request, AdminRequest};
use super::http::{self, error_response, parse_request, Parsed, Route};
use super::prometheus::CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE;
use super::snapshot::{Merged, Snapshot};

/// Gathers a snapshot from every executor and merges them; the argument asks for a reset.
pub type Collect = Rc<dyn Fn(bool) -> Pin<Box<dyn Future<Output = Merged>>>>;

/// Deadline for a client to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for gathering snapshots from every executor.
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for writing the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once per listener; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 32;

/// A [`Collect`] for one executor: this thread's snapshot only (tests, single-core setups).
pub fn local_collect() -> Collect {
    Rc::new(|reset| Box::pin(async move { Snapshot::merge(&[Snapshot::take(reset)]) }))
}

/// Why the admin socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    /// Another server answers on the socket.
    #[error("{}: another ringpost server is already running on this data directory", .0.display())]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket sits at the path; it is left alone.
    #[error("{}: exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// Removing the stale socket, binding or setting its mode failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Binds the admin socket at `path` (mode 0600: stats reset is an admin action), removing a
/// stale socket left by a server that died, but never one a live server still answers on.
/// Must run inside a glommio executor.
pub fn bind_admin_socket(path: &Path) -> Result<UnixListener, AdminSocketError> {
    let io = |source| AdminSocketError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(AdminSocketError::NotASocket(path.to_owned()))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(AdminSocketError::AlreadyRunning(path.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| io(e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves the admin protocol (`stats` / `stats reset` → JSON) forever; drop the future to stop.
pub async fn serve_admin(listener: UnixListener, collect: Collect) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Some(slot) = Slot::take(&active) else {
                    tracing::warn!("admin socket: too many connections, closing one");
                    continue;
                };
                let collect = collect.clone();
                glommio::spawn_local(async move {
                    handle_admin(stream, collect).await;
                    drop(slot);
                })
                .detach();
            }
            Err(e) => accept_failed("admin socket", e).await,
        }
    }
}

/// Serves `GET /metrics` and `GET /stats.json[?reset=1]` forever; drop the future to stop.
pub async fn serve_http(listener: TcpListener, collect: Collect) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Some(slot) = Slot::take(&active) else {
                    tracing::warn!("metrics listener: too many connections, closing one");
                    continue;
                };
                let collect = collect.clone();
                glommio::spawn_local(async move {
                    handle_http(stream, collect).await;
                    drop(slot);
                })
                .detach();
            }
            Err(e) => accept_failed("metrics listener", e).await,
        }
    }
}

/// Logs and backs off briefly, so running out of fds does not spin the executor.
async fn accept_failed(what: &str, e: glommio::GlommioError<()>) {
    tracing::warn!(error = %e, "{what}: accept failed");
    glommio::timer::sleep(Duration::from_millis(50)).await;
}

/// One of [`MAX_CONNECTIONS`] connection slots, given back on drop.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(active: &Rc<Cell<usize>>) -> Option<Slot> {
        (active.get() < MAX_CONNECTIONS).then(|| {
            active.set(active.get() + 1);
            Slot(active.clone())
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// `Some(output)`, or `None` when `limit` passes first.
async fn with_timeout<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// Runs `collect` within [`COLLECT_TIMEOUT`].
async fn collect_bounded(collect: &Collect, reset: bool) -> Option<Merged> {
    let merged = with_timeout(COLLECT_TIMEOUT, collect(reset)).await;
    if merged.is_none() {
        tracing::error!("stats: executors did not answer within {COLLECT_TIMEOUT:?}");
    }
    merged
}

/// Why reading a request ended without one.
enum ReadEnd<E> {
    /// The parser refused the bytes.
    Refused(E),
    /// The peer closed or the socket failed before a whole request came.
    Gone,
}

/// Reads until `parse` yields a request, refuses the bytes, or the peer goes away.
async fn read_request<S, T, E>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Result<T, ReadEnd<E>>
where
    S: AsyncRead + Unpin,
{
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| ReadEnd::Gone)?;
        if n == 0 {
            return Err(ReadEnd::Gone);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(t) = parse(buf).map_err(ReadEnd::Refused)? {
            return Ok(t);
        }
    }
}

/// Writes the whole response, half-closes, then drains what the peer still sends for a moment
/// so that closing with unread bytes does not turn into a RST that destroys the response.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    let sent = with_timeout(WRITE_TIMEOUT, async {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        stream.close().await
    })
    .await;
    if !matches!(sent, Some(Ok(()))) {
        return;
    }
    let _ = with_timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 1024];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn handle_admin<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, collect: Collect) {
    let mut buf = Vec::with_capacity(64);
    let read = with_timeout(
        READ_TIMEOUT,
        read_request(&mut stream, &mut buf, parse_admin_request),
    )
    .await;
    let reply = match read {
        Some(Ok(AdminRequest::Stats { reset })) => match collect_bounded(&collect, reset).await {
            Some(merged) => merged.render_json(),
            None => error_json("timed out gathering stats from the executors"),
        },
        Some(Err(ReadEnd::Refused(e))) => error_json(&e.to_string()),
        Some(Err(ReadEnd::Gone)) => return,
        None => error_json("timed out waiting for the request"),
    };
    let mut reply = reply.into_bytes();
    reply.push(b'\n');
    respond(&mut stream, &reply).await;
}

async fn handle_http<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, collect: Collect) {
    let mut buf = Vec::with_capacity(512);
    let read = with_timeout(
        READ_TIMEOUT,
        read_request(&mut stream, &mut buf, |b| {
            parse_request(b).map(|p| match p {
                Parsed::Complete { request, .. } => Some(Route::of(&request)),
                Parsed::Incomplete => None,
            })
        }),
    )
    .await;
    let response = match read {
        Some(Ok((route, head))) => http_answer(route, head, &collect).await,
        Some(Err(ReadEnd::Refused(e))) => {
            let (status, reason) = e.status();
            error_response(status, reason)
        }
        Some(Err(ReadEnd::Gone)) => return,
        None => error_response(408, "Request Timeout"),
    };
    respond(&mut stream, &response).await;
}

async fn http_answer(route: Route, head: bool, collect: &Collect) -> Vec<u8> {
    type Render = fn(&Merged) -> String;
    let (reset, render, content_type): (bool, Render, &str) = match route {
        Route::Metrics => (false, Merged::render_prometheus, PROMETHEUS_CONTENT_TYPE),
        Route::StatsJson { reset } => (reset, Merged::render_json, "application/json"),
        Route::NotFound => return error_response(404, "Not Found"),
        Route::MethodNotAllowed => return error_response(405, "Method Not Allowed"),
    };
    match collect_bounded(collect, reset).await {
        Some(merged) => {
            let body = render(&merged);
            http::response(200, "OK", content_type, body.as_bytes(), head)
        }
        None => error_response(503, "Service Unavailable"),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::admin::{admin_socket_path, fetch_stats, stats_command, CLIENT_TIMEOUT};
    use crate::metrics::names::{Counter, Metric};
    use crate::metrics::registry::{incr, record};
    use crate::metrics::report::Report;
    use std::io::{Read, Write};
    use std::net::SocketAddr;

    /// Runs `f` on a fresh glommio executor thread (its own, empty metrics registry).
    fn on_executor<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("metrics-test")
            .spawn(f)
            .expect("spawn executor")
            .join()
            .expect("executor thread");
    }

    /// Serves with `server` until the blocking `client` (own thread) is done; returns its result.
    async fn serve_until<T: Send + 'static>(
        server: impl Future<Output = ()>,
        client: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let handle = std::thread::spawn(client);
        let done = async {
            while !handle.is_finished() {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        };
        futures_lite::future::or(server, done).await;
        match handle.join() {
            Ok(t) => t,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    #[test]
    fn admin_socket_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().to_owned();
        let path = admin_socket_path(&data_dir);
        // A stale socket from a dead server: bound, then dropped without unlinking.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale bind"));
        on_executor(move || async move {
            let listener = bind_admin_socket(&path).expect("stale socket replaced");
            let mode = std::fs::metadata(&path)
                .expect("socket")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            assert!(matches!(
                bind_admin_socket(&path),
                Err(AdminSocketError::AlreadyRunning(_))
            ));
            for us in [100, 200, 300] {
                record(Metric::SmtpData, Duration::from_micros(us));
            }
            incr(Counter::MessagesAccepted, 3);

            let client_path = path.clone();
            let (first, after_reset, garbage, exit) =
                serve_until(serve_admin(listener, local_collect()), move || {
                    let get = |reset| fetch_stats(&client_path, reset, CLIENT_TIMEOUT);
                    let first = get(false).expect("stats").1;
                    let reset = get(true).expect("stats reset").1;
                    let after = get(false).expect("stats after reset").1;
                    assert_eq!(reset, first, "reset returns the numbers before zeroing");
                    let mut s =
                        std::os::unix::net::UnixStream::connect(&client_path).expect("connect");
                    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
                    s.write_all(b"shutdown now\n").expect("write");
                    let mut garbage = String::new();
                    s.read_to_string(&mut garbage).expect("read");
                    let exit = stats_command(&data_dir, true, false);
                    (first, after, garbage, exit)
                })
                .await;

            assert_eq!(first.executors, 1);
            let data = first.commands["smtp.data"];
            assert_eq!((data.count, data.p50_us, data.max_us), (3, 200, 300));
            assert_eq!(first.counters["messages.accepted"], 3);
            assert_eq!(after_reset.commands["smtp.data"].count, 0);
            assert_eq!(after_reset.counters["messages.accepted"], 0);
            let v: serde_json::Value = serde_json::from_str(&garbage).expect("error is JSON");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unknown command")),
                "{v}"
            );
            assert_eq!(exit, 0);
        });
    }

    /// One HTTP exchange: (status, head, body).
    fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
        s.write_all(request).expect("write");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        (status, head.to_owned(), body.to_owned())
    }

    #[test]
    fn http_round_trip_and_garbage() {
        on_executor(|| async {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            record(Metric::ImapFetch, Duration::from_micros(50));
            record(Metric::ImapFetch, Duration::from_micros(70));
            incr(Counter::AuthFailures, 2);

            let results = serve_until(serve_http(listener, local_collect()), move || {
                let get = |t: &str| {
                    http(
                        addr,
                        format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                    )
                };
                let metrics = get("/metrics");
                let json = get("/stats.json?reset=1");
                let after = get("/stats.json");
                let garbage = http(addr, b"\x16\x03\x01 hello there\r\n");
                let missing = get("/nope");
                let post = http(
                    addr,
                    b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                );
                let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
                big.resize(http::MAX_REQUEST_HEAD + 100, b'a');
                let too_big = http(addr, &big);
                (metrics, json, after, garbage, missing, post, too_big)
            })
            .await;
            let (metrics, json, after, garbage, missing, post, too_big) = results;

            assert_eq!(metrics.0, 200);
            assert!(
                metrics
                    .1
                    .contains("Content-Type: text/plain; version=0.0.4"),
                "{}",
                metrics.1
            );
            assert!(metrics
                .2
                .contains("ringpost_imap_duration_seconds_count{command=\"fetch\"} 2\n"));
            assert!(metrics.2.contains(
                "ringpost_imap_duration_seconds{command=\"fetch\",quantile=\"0.99\"} 0.00007\n"
            ));
            assert!(metrics.2.contains("ringpost_auth_failures_total 2\n"));

            assert_eq!(json.0, 200);
            assert!(json.1.contains("Content-Type: application/json"));
            let report: Report = serde_json::from_str(&json.2).expect("stats.json parses");
            assert_eq!(report.commands["imap.fetch"].count, 2);
            assert_eq!(report.counters["auth.failures"], 2);
            let after: Report = serde_json::from_str(&after.2).expect("stats.json parses");
            assert_eq!(after.commands["imap.fetch"].count, 0);

            assert_eq!(garbage.0, 400);
            assert_eq!(missing.0, 404);
            assert_eq!(post.0, 405);
            assert!(post.1.contains("Allow: GET, HEAD"));
            assert_eq!(too_big.0, 431);
        });
    }
}

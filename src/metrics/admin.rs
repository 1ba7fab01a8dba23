//! The admin protocol on `DATA_DIR/admin.sock` and its client, `ringpost stats`.
//!
//! Wire format: the client sends one line, `stats\n` or `stats reset\n`; the server answers with
//! one JSON object (the `stats --json` [`Report`], or `{"error": "..."}`) and closes.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::report::Report;

/// File name of the admin socket inside the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// Longest request line accepted, newline included.
pub const MAX_ADMIN_LINE: usize = 64;

/// Largest reply the client reads.
pub const MAX_REPLY: u64 = 16 << 20;

/// How long the client waits for connect, send and reply each.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `DATA_DIR/admin.sock`.
pub fn admin_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_SOCKET)
}

/// A request on the admin socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    /// `stats` or `stats reset`.
    Stats {
        /// Zero the counters after reading them.
        reset: bool,
    },
}

/// Why an admin request line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Not `stats` / `stats reset`.
    #[error("unknown command {0:?} (expected \"stats\" or \"stats reset\")")]
    UnknownCommand(String),
    /// No newline within [`MAX_ADMIN_LINE`] bytes.
    #[error("request line longer than {MAX_ADMIN_LINE} bytes")]
    TooLong,
}

/// Parses the request line from the bytes received so far; `Ok(None)` means incomplete.
pub fn parse_admin_request(buf: &[u8]) -> Result<Option<AdminRequest>, AdminError> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return if buf.len() >= MAX_ADMIN_LINE {
            Err(AdminError::TooLong)
        } else {
            Ok(None)
        };
    };
    if end >= MAX_ADMIN_LINE {
        return Err(AdminError::TooLong);
    }
    let line = buf.get(..end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line {
        b"stats" => Ok(Some(AdminRequest::Stats { reset: false })),
        b"stats reset" => Ok(Some(AdminRequest::Stats { reset: true })),
        other => Err(AdminError::UnknownCommand(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// The admin error reply: `{"error":"..."}`.
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Why `ringpost stats` could not get the numbers.
#[derive(Debug, thiserror::Error)]
pub enum StatsClientError {
    /// Nothing listens on the socket.
    #[error("no server running (cannot connect to {}: {source})", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// Connecting failed for another reason (e.g. permissions).
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// Sending or receiving failed (including the 5 s timeout).
    #[error("{}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The reply is not a stats object.
    #[error("unreadable reply from the server: {0}")]
    BadReply(#[from] serde_json::Error),
    /// The server answered with an error.
    #[error("server error: {0}")]
    Server(String),
}

/// Asks the server on `socket` for its stats; returns the raw JSON reply and its parse.
pub fn fetch_stats(
    socket: &Path,
    reset: bool,
    timeout: Duration,
) -> Result<(String, Report), StatsClientError> {
    let io = |source| StatsClientError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| {
        let path = socket.to_owned();
        match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                StatsClientError::NotRunning { path, source }
            }
            _ => StatsClientError::Connect { path, source },
        }
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let line: &[u8] = if reset { b"stats reset\n" } else { b"stats\n" };
    stream.write_all(line).map_err(io)?;
    let mut reply = String::new();
    (&mut stream)
        .take(MAX_REPLY)
        .read_to_string(&mut reply)
        .map_err(io)?;
    let reply = reply.trim_end().to_owned();
    match serde_json::from_str::<Report>(&reply) {
        Ok(report) => Ok((reply, report)),
        Err(e) => {
            #[derive(serde::Deserialize)]
            struct ErrorReply {
                error: String,
            }
            match serde_json::from_str::<ErrorReply>(&reply) {
                Ok(r) => Err(StatsClientError::Server(r.error)),
                Err(_) => Err(StatsClientError::BadReply(e)),
            }
        }
    }
}

/// `ringpost stats [--json] [--reset]`: prints the running server's stats; returns the exit
/// code (0, or 1 with one line on stderr when the server cannot be asked).
pub fn stats_command(data_dir: &Path, json: bool, reset: bool) -> i32 {
    let socket = admin_socket_path(data_dir);
    match fetch_stats(&socket, reset, CLIENT_TIMEOUT) {
        Ok((raw, report)) => {
            if json {
                println!("{raw}");
            } else {
                print!("{}", report.render_table());
            }
            0
        }
        Err(e) => {
            eprintln!("ringpost stats: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse_admin_request(b"stats\n"),
            Ok(Some(AdminRequest::Stats { reset: false }))
        );
        assert_eq!(
            parse_admin_request(b"stats reset\r\n"),
            Ok(Some(AdminRequest::Stats { reset: true }))
        );
        assert_eq!(parse_admin_request(b"sta"), Ok(None));
        assert_eq!(parse_admin_request(b""), Ok(None));
        assert_eq!(
            parse_admin_request(b"shutdown\n"),
            Err(AdminError::UnknownCommand("shutdown".into()))
        );
        assert_eq!(
            parse_admin_request(&[b'x'; MAX_ADMIN_LINE]),
            Err(AdminError::TooLong)
        );
        let mut long = vec![b'x'; MAX_ADMIN_LINE + 1];
        long.push(b'\n');
        assert_eq!(parse_admin_request(&long), Err(AdminError::TooLong));
    }

    #[test]
    fn error_reply_is_json() {
        let v: serde_json::Value =
            serde_json::from_str(&error_json("bad \"x\"")).expect("valid JSON");
        assert_eq!(v["error"], "bad \"x\"");
    }

    #[test]
    fn no_server_is_one_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = fetch_stats(&admin_socket_path(dir.path()), false, CLIENT_TIMEOUT)
            .expect_err("nothing listens");
        assert!(
            matches!(err, StatsClientError::NotRunning { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("no server running (cannot connect to "),
            "{text}"
        );
        assert!(text.contains("admin.sock: "), "{text}");
        assert_eq!(stats_command(dir.path(), false, false), 1);
    }

    #[test]
    fn stale_socket_file_is_not_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = admin_socket_path(dir.path());
        // Bound then dropped without unlinking: connect gets ECONNREFUSED.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let err = fetch_stats(&path, false, CLIENT_TIMEOUT).expect_err("stale");
        assert!(
            matches!(err, StatsClientError::NotRunning { .. }),
            "{err:?}"
        );
    }
}

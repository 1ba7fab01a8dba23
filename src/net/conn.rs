//! A client connection: a glommio TCP stream, plaintext or TLS, that can move between executors.
//!
//! TLS is driven by hand over `rustls::ServerConnection` rather than through futures-rustls:
//! futures-rustls cannot rebuild a stream from (socket, ServerConnection), which moving a live
//! TLS session to the executor that owns the account needs (DESIGN.md, "Access").

use super::limit::Slot;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Ciphertext read size while the client sends little (handshake, commands): idle
/// connections, what floods are made of, keep only this much buffer while they wait.
const TLS_READ_SMALL: usize = 2 * 1024;
/// Ciphertext read size once a read filled the small buffer: one full TLS record.
const TLS_READ_CHUNK: usize = 16 * 1024 + 512;

/// A connection as it travels between executors: the socket plus TLS state, both `Send`.
pub struct ConnParts {
    fd: OwnedFd,
    tls: Option<Box<rustls::ServerConnection>>,
    pending_ciphertext: Vec<u8>,
    peer: SocketAddr,
    slot: Option<Slot>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for ConnParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnParts")
            .field("fd", &self.fd)
            .field("tls", &self.tls.is_some())
            .field("peer", &self.peer)
            .finish()
    }
}

/// A server-side connection, plaintext or TLS.
pub struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    /// Ciphertext read from the socket that rustls has not taken yet.
    pending_ciphertext: Vec<u8>,
    /// How much ciphertext one read asks for (grows once the client sends in bulk).
    tls_read_size: usize,
    peer: SocketAddr,
    out: Vec<u8>,
    /// The connection's place in the server-wide connection count, if it took one.
    slot: Option<Slot>,
    /// Read/write timeout, carried along when the connection moves to another executor.
    timeout: Option<Duration>,
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Conn {
    /// Wraps an accepted plaintext stream (TCP_NODELAY comes from the listener, see
    /// `server::listeners::bind`).
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        let peer = stream.peer_addr()?;
        Ok(Conn {
            stream,
            tls: None,
            pending_ciphertext: Vec::new(),
            tls_read_size: TLS_READ_SMALL,
            peer,
            out: Vec::new(),
            slot: None,
            timeout: None,
        })
    }

    /// Counts this connection against the connection limit until it closes (on whichever
    /// executor it ends up).
    pub fn set_slot(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Read timeout: a read that waits longer fails with `TimedOut`.
    pub fn set_timeout(&mut self, d: Duration) -> io::Result<()> {
        self.timeout = Some(d);
        self.stream
            .set_read_timeout(Some(d))
            .map_err(io::Error::from)?;
        self.stream
            .set_write_timeout(Some(d))
            .map_err(io::Error::from)
    }

    /// Runs a server-side TLS handshake on this connection. The caller must have discarded
    /// any plaintext it buffered before (STARTTLS injection).
    pub async fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        if self.tls.is_some() {
            return Err(io::Error::other("TLS already active"));
        }
        let conn = rustls::ServerConnection::new(config).map_err(tls_err)?;
        self.tls = Some(Box::new(conn));
        self.pending_ciphertext.clear();
        loop {
            self.flush_tls().await?;
            let handshaking = self.tls.as_ref().is_some_and(|t| t.is_handshaking());
            if !handshaking {
                return Ok(());
            }
            if self.fill_tls().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed during TLS handshake",
                ));
            }
        }
    }

    /// Feeds socket bytes to rustls; returns the ciphertext bytes read (0 = EOF).
    async fn fill_tls(&mut self) -> io::Result<usize> {
        if self.pending_ciphertext.is_empty() {
            self.pending_ciphertext.resize(self.tls_read_size, 0);
            let n = match self.stream.read(&mut self.pending_ciphertext).await {
                Ok(n) => n,
                Err(e) => {
                    self.pending_ciphertext.clear();
                    return Err(e);
                }
            };
            if n == self.tls_read_size {
                self.tls_read_size = TLS_READ_CHUNK;
            }
            self.pending_ciphertext.truncate(n);
            if n == 0 {
                return Ok(0);
            }
        }
        let n = self.pending_ciphertext.len();
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        let mut slice = &self.pending_ciphertext[..];
        let taken = tls.read_tls(&mut slice)?;
        self.pending_ciphertext.drain(..taken);
        if let Err(e) = tls.process_new_packets() {
            // Send the alert rustls queued, then fail.
            let _ = self.flush_tls().await;
            return Err(tls_err(e));
        }
        Ok(n.max(1))
    }

    /// Writes whatever TLS records rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        self.out.clear();
        while tls.wants_write() {
            tls.write_tls(&mut self.out)?;
        }
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// Asks the kernel to acknowledge what was received right away, instead of after the
    /// delayed-ACK timer. Called when a command is only partly here: a client that sends the
    /// rest in a second small write (Python's imaplib sends an APPEND literal and its closing
    /// CRLF apart, some SMTP clients a BDAT line and its chunk) is held back by Nagle's
    /// algorithm until that ACK comes, 40 ms otherwise.
    pub fn ack_promptly(&self) {
        // SAFETY: the fd belongs to `self.stream`, which outlives this borrow.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.stream.as_raw_fd()) };
        // Best effort: failing costs only the 40 ms this avoids.
        let _ = socket2::SockRef::from(&fd).set_quickack(true);
    }

    /// Reads plaintext into `buf`; 0 means the client closed.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.stream.read(buf).await;
        }
        loop {
            if let Some(tls) = self.tls.as_mut() {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            self.flush_tls().await?;
            if self.fill_tls().await? == 0 {
                return Ok(0);
            }
        }
    }

    /// Resolves when a read would not block. Dropping it loses nothing (it only peeks), so it
    /// can race other events, as IMAP IDLE does.
    pub async fn readable(&mut self) -> io::Result<()> {
        if !self.pending_ciphertext.is_empty() {
            return Ok(());
        }
        if let Some(tls) = self.tls.as_mut() {
            // Decrypted bytes already inside rustls never show up on the socket again.
            let buffered = tls
                .process_new_packets()
                .map(|s| s.plaintext_bytes_to_read() > 0);
            if buffered.unwrap_or(true) {
                return Ok(());
            }
        }
        let mut b = [0u8; 1];
        self.stream
            .peek(&mut b)
            .await
            .map(|_| ())
            .map_err(io::Error::from)
    }

    /// Writes all of `data` (encrypted when TLS is active).
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.tls.is_none() {
            return self.stream.write_all(data).await;
        }
        self.write_tls(data).await
    }

    /// Encrypts and sends `data` in pieces: rustls buffers only so much plaintext at a time.
    async fn write_tls(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(tls) = self.tls.as_mut() else {
                return Err(io::Error::other("TLS not active"));
            };
            let n = tls.writer().write(data)?;
            data = &data[n..];
            self.flush_tls().await?;
            if n == 0 && self.tls.as_ref().is_some_and(|t| t.wants_write()) {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS send buffer stuck",
                ));
            }
        }
        Ok(())
    }

    /// Writes several buffers as one (one TLS flush / one syscall when possible).
    pub async fn write_vectored_all(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        match self.tls.as_mut() {
            None => {
                let total: usize = parts.iter().map(|p| p.len()).sum();
                if total <= 64 * 1024 {
                    let mut joined = Vec::with_capacity(total);
                    for p in parts {
                        joined.extend_from_slice(p);
                    }
                    self.stream.write_all(&joined).await
                } else {
                    for p in parts {
                        self.stream.write_all(p).await?;
                    }
                    Ok(())
                }
            }
            Some(_) => {
                for p in parts {
                    self.write_tls(p).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends a TLS close_notify (if TLS) and shuts the socket down for writing.
    pub async fn close(mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.flush_tls().await;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both).await;
    }

    /// Takes the connection apart so it can be sent to another executor.
    pub fn into_parts(self) -> io::Result<ConnParts> {
        // glommio's TcpStream has no into_raw_fd: duplicate the descriptor and let the stream
        // close its own copy; the socket lives on in the duplicate.
        // SAFETY: dup of a descriptor we own; the result is checked below.
        let fd: RawFd = unsafe { libc::fcntl(self.stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(ConnParts {
            fd,
            tls: self.tls,
            pending_ciphertext: self.pending_ciphertext,
            peer: self.peer,
            slot: self.slot,
            timeout: self.timeout,
        })
    }

    /// Rebuilds a connection on the current executor.
    pub fn from_parts(parts: ConnParts) -> Conn {
        use std::os::unix::io::IntoRawFd;
        // SAFETY: the fd came from into_parts and ownership moves into the stream.
        let stream = unsafe { TcpStream::from_raw_fd(parts.fd.into_raw_fd()) };
        let mut conn = Conn {
            stream,
            tls: parts.tls,
            pending_ciphertext: parts.pending_ciphertext,
            tls_read_size: TLS_READ_SMALL,
            peer: parts.peer,
            out: Vec::new(),
            slot: parts.slot,
            timeout: None,
        };
        if let Some(t) = parts.timeout {
            // A fresh glommio stream has no timeouts: without this a handed-off session
            // would wait forever (and keep its POP3 maildrop locked).
            if let Err(e) = conn.set_timeout(t) {
                tracing::warn!(error = %e, "cannot set timeout after handoff");
            }
        }
        conn
    }
}

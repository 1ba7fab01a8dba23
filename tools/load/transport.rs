//! One client connection: a glommio TCP stream, optionally upgraded to TLS, with a read
//! buffer from which framers cut complete responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::error::LoadError;
use crate::framing::Framer;

/// Initial read buffer; grows for large responses.
const INITIAL_BUF: usize = 16 * 1024;

/// TLS settings shared by the connections of one executor.
#[derive(Clone)]
pub struct TlsSetup {
    /// Connector with the accept-any-certificate configuration.
    pub connector: TlsConnector,
    /// Name sent in SNI.
    pub name: ServerName<'static>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while upgrading to TLS.
    Gone,
}

/// A connection with its read buffer.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Length of the frame handed out last; dropped at the next read.
    pending: usize,
}

impl Conn {
    /// Connects with a timeout and sets the read/write timeouts for everything after.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Conn, LoadError> {
        let stream = TcpStream::connect_timeout(addr, connect_timeout)
            .await
            .map_err(|e| LoadError::Connect(e.into()))?;
        let setup = |s: &TcpStream| -> std::io::Result<()> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(io_timeout))?;
            s.set_write_timeout(Some(io_timeout))?;
            Ok(())
        };
        setup(&stream).map_err(LoadError::Io)?;
        Ok(Conn {
            stream: Stream::Plain(stream),
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            pending: 0,
        })
    }

    /// Runs the TLS handshake on the plain stream (implicit TLS, or after STARTTLS).
    pub async fn start_tls(&mut self, tls: &TlsSetup) -> Result<(), LoadError> {
        self.consume_pending();
        if self.start != self.end {
            // Bytes after the STARTTLS reply would be plaintext injected before TLS.
            return Err(crate::framing::ProtoError::Unexpected("data after STARTTLS reply").into());
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(LoadError::Unsupported("TLS twice on one connection"));
        };
        let tls_stream =
            tls.connector.connect(tls.name.clone(), tcp).await.map_err(
                |e| match LoadError::from_io(e) {
                    LoadError::Io(e) => LoadError::Tls(e),
                    other => other,
                },
            )?;
        self.stream = Stream::Tls(Box::new(tls_stream));
        Ok(())
    }

    /// Writes all of `data` and flushes it to the socket.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), LoadError> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => match s.write_all(data).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            Stream::Gone => return Err(LoadError::Closed),
        };
        r.map_err(LoadError::from_io)
    }

    /// Reads until `framer` finds a complete response and returns it. The bytes stay valid
    /// until the next call on this connection.
    pub async fn read_frame<F: Framer>(&mut self, framer: &mut F) -> Result<&[u8], LoadError> {
        self.consume_pending();
        loop {
            if let Some(n) = framer.frame_len(&self.buf[self.start..self.end])? {
                self.pending = n;
                return Ok(&self.buf[self.start..self.start + n]);
            }
            self.fill().await?;
        }
    }

    fn consume_pending(&mut self) {
        self.start += self.pending;
        self.pending = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes into the buffer, making room first.
    async fn fill(&mut self) -> Result<(), LoadError> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // Framers bound response sizes, so growth is bounded too.
                let new_len = self.buf.len() * 2;
                self.buf.resize(new_len, 0);
            }
        }
        let spare = &mut self.buf[self.end..];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(spare).await,
            Stream::Tls(s) => s.read(spare).await,
            Stream::Gone => return Err(LoadError::Closed),
        }
        .map_err(LoadError::from_io)?;
        if n == 0 {
            return Err(LoadError::Closed);
        }
        self.end += n;
        Ok(())
    }

    /// Closes the connection; errors do not matter any more at this point.
    pub async fn close(mut self) {
        match &mut self.stream {
            Stream::Plain(s) => {
                let _ = s.close().await;
            }
            Stream::Tls(s) => {
                let _ = s.close().await;
            }
            Stream::Gone => {}
        }
    }
}

/// Builds the TLS setup for one executor.
pub fn tls_setup(config: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> TlsSetup {
    TlsSetup {
        connector: TlsConnector::from(config),
        name,
    }
}

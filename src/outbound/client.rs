//! The outbound SMTP client: one transaction to one host, opportunistic STARTTLS (RFC 3207,
//! RFC 7435: encrypt when offered, without certificate checks, since MX certificates are
//! rarely valid for the MX name).

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A reply from the remote server.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// All text lines joined with spaces.
    pub text: String,
}

impl Reply {
    fn is_ok(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// How one recipient fared.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted by the remote server.
    Delivered,
    /// Refused for good (5xx).
    Permanent(String),
    /// Refused for now (4xx, network): retry later.
    Temporary(String),
}

/// Why a whole attempt failed before recipients were answered.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Connecting, reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered something unusable.
    #[error("{0}")]
    Protocol(String),
    /// The server refused the session or the sender (code says how).
    #[error("{} {}", .0.code, .0.text)]
    Refused(Reply),
}

struct Client<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn reply(&mut self) -> Result<Reply, AttemptError> {
        let mut text = Vec::new();
        loop {
            let line = loop {
                if let Some(pos) = memchr::memchr(b'\n', &self.buf) {
                    let line: Vec<u8> = self.buf.drain(..=pos).collect();
                    break line;
                }
                if self.buf.len() > 64 * 1024 {
                    return Err(AttemptError::Protocol("reply line too long".into()));
                }
                let mut chunk = [0u8; 4096];
                let n = self.io.read(&mut chunk).await?;
                if n == 0 {
                    return Err(AttemptError::Protocol("connection closed".into()));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            };
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| AttemptError::Protocol(format!("bad reply {line:?}")))?;
            text.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply {
                    code,
                    text: text.join(" "),
                });
            }
        }
    }

    /// Sends a command in one write (a line and its CRLF apart would wait for the server's
    /// delayed ACK) and reads the reply.
    async fn cmd(&mut self, line: &str) -> Result<Reply, AttemptError> {
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        self.reply().await
    }
}

/// Accepts any certificate: opportunistic TLS protects against passive eavesdropping only.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client TLS config for opportunistic STARTTLS.
pub fn opportunistic_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth()
        });
    // The ring provider always supports the default versions.
    Arc::new(cfg.unwrap_or_else(|_| unreachable!("ring supports TLS 1.2/1.3")))
}

/// One delivery attempt of a message to `rcpts` at `addr`.
pub struct Attempt<'a> {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Host name for SNI.
    pub host: &'a str,
    /// Our name for EHLO.
    pub helo: &'a str,
    /// Envelope sender ("" for bounces).
    pub from: &'a str,
    /// Envelope recipients at this host.
    pub rcpts: &'a [String],
    /// The message: stored bytes, already dot-unstuffed.
    pub body: &'a Bytes,
    /// TLS client config.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Runs the attempt; per-recipient outcomes, or an error for the whole attempt.
pub async fn send(a: Attempt<'_>) -> Result<Vec<Outcome>, AttemptError> {
    let stream = glommio::timer::timeout(Duration::from_secs(30), async {
        glommio::net::TcpStream::connect(a.addr)
            .await
            .map_err(|e| glommio::GlommioError::from(std::io::Error::from(e)))
    })
    .await
    .map_err(std::io::Error::from)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(std::io::Error::from)?;
    // Every write is a whole command or message: nothing to gain from Nagle's algorithm, and
    // with it the end of a message can wait for the server's delayed ACK.
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let mut c = Client {
        io: stream,
        buf: Vec::new(),
    };
    let greet = c.reply().await?;
    if greet.code != 220 {
        return Err(AttemptError::Refused(greet));
    }
    let ehlo = c.cmd(&format!("EHLO {}", a.helo)).await?;
    if !ehlo.is_ok() {
        return Err(AttemptError::Refused(ehlo));
    }
    if ehlo
        .text
        .to_ascii_uppercase()
        .split_whitespace()
        .any(|w| w == "STARTTLS")
    {
        let r = c.cmd("STARTTLS").await?;
        if r.code == 220 {
            let name = rustls::pki_types::ServerName::try_from(a.host.to_string())
                .map_err(|e| AttemptError::Protocol(e.to_string()))?;
            let tls = futures_rustls::TlsConnector::from(a.tls.clone())
                .connect(name, c.io)
                .await?;
            let mut t = Client {
                io: tls,
                buf: Vec::new(),
            };
            let ehlo = t.cmd(&format!("EHLO {}", a.helo)).await?;
            if !ehlo.is_ok() {
                return Err(AttemptError::Refused(ehlo));
            }
            return transaction(&mut t, &a).await;
        }
    }
    transaction(&mut c, &a).await
}

async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Client<S>,
    a: &Attempt<'_>,
) -> Result<Vec<Outcome>, AttemptError> {
    let r = c.cmd(&format!("MAIL FROM:<{}>", a.from)).await?;
    if !r.is_ok() {
        return Err(AttemptError::Refused(r));
    }
    let mut outcomes = Vec::with_capacity(a.rcpts.len());
    for rcpt in a.rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
        outcomes.push(match r.code {
            200..=299 => Outcome::Delivered,
            500..=599 => Outcome::Permanent(format!("{} {}", r.code, r.text)),
            _ => Outcome::Temporary(format!("{} {}", r.code, r.text)),
        });
    }
    if !outcomes.iter().any(|o| matches!(o, Outcome::Delivered)) {
        let _ = c.cmd("QUIT").await;
        return Ok(outcomes);
    }
    let r = c.cmd("DATA").await?;
    if r.code != 354 {
        return Err(AttemptError::Refused(r));
    }
    let mut data = dot_stuff(a.body);
    data.extend_from_slice(b".\r\n");
    c.io.write_all(&data).await?;
    c.io.flush().await?;
    let r = c.reply().await?;
    let _ = c.cmd("QUIT").await;
    if r.is_ok() {
        Ok(outcomes)
    } else {
        Err(AttemptError::Refused(r))
    }
}

/// Dot-stuffs a message for DATA and makes sure it ends with CRLF.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..c"), b"..a\r\nb\r\n...c\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n");
    }
}

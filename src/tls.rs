//! TLS: the certificate (configured, or self-signed on first start) and the rustls server config.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a PEM file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair.
    #[error("certificate/key rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The self-signed certificate could not be made.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Paths of the self-signed pair inside data_dir.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("tls/cert.pem"), data_dir.join("tls/key.pem"))
}

/// Returns the configured pair, or makes (once) and returns a self-signed one in data_dir.
pub fn ensure_cert(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    hostname: &str,
    create: bool,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if let (Some(c), Some(k)) = (cert, key) {
        return Ok((c.to_path_buf(), k.to_path_buf()));
    }
    let (c, k) = self_signed_paths(data_dir);
    if c.exists() && k.exists() || !create {
        return Ok((c, k));
    }
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let dir = c.parent().unwrap_or(data_dir);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TlsError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_private(&k, ck.key_pair.serialize_pem().as_bytes()).map_err(io(&k))?;
    write_private(&c, ck.cert.pem().as_bytes()).map_err(io(&c))?;
    Ok((c, k))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads a PEM chain and key into a rustls server config: TLS 1.2 and 1.3, ring provider.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // Mail protocols have no ALPN in common use. TLS 1.2 clients resume by session ID. No
    // TLS 1.3 tickets: they arrive after the handshake, when a client may already be writing
    // its first command, and imaplib2-based clients (offlineimap) then read and write one
    // SSL object from two threads and hung in 3 of 5 STARTTLS syncs here.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.into(),
        message: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.into(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| TlsError::Pem {
            path: path.into(),
            message: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: path.into(),
            message: "no PRIVATE KEY block found".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ensure_cert(None, None, dir.path(), "mail.test", true).unwrap();
        let first = std::fs::read(&c).unwrap();
        let (c2, _) = ensure_cert(None, None, dir.path(), "mail.test", true).unwrap();
        assert_eq!(first, std::fs::read(&c2).unwrap());
        server_config(&c, &k).unwrap();
    }

    /// After a TLS 1.3 handshake the server sends nothing of its own accord (no session
    /// tickets): the client's first command is the next thing on the wire.
    #[test]
    fn tls13_server_is_silent_after_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ensure_cert(None, None, dir.path(), "mail.test", true).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certs(&c).unwrap() {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("mail.test").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_cfg), name).unwrap();
        let mut server = rustls::ServerConnection::new(server_config(&c, &k).unwrap()).unwrap();
        let mut wire = Vec::new();
        for _ in 0..10 {
            wire.clear();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            if !server.is_handshaking() {
                assert!(!server.wants_write(), "data queued after the handshake");
                return;
            }
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        std::fs::write(&p, "hello").unwrap();
        let e = server_config(&p, &p).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }
}

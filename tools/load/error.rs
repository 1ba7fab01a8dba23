//! Errors a connection meets during the run; each is counted by kind, none stops the run.

use crate::framing::ProtoError;
use crate::stats::Op;

/// Something that went wrong on one connection.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// TCP connect failed (refused, unreachable, timed out).
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// A read or write took longer than the I/O timeout.
    #[error("timed out")]
    Timeout,
    /// A socket error after connecting.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// The server closed the connection when a response was expected.
    #[error("connection closed by server")]
    Closed,
    /// The TLS handshake or a TLS record failed.
    #[error("TLS error: {0}")]
    Tls(std::io::Error),
    /// The server sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtoError),
    /// The server refused a command (SMTP 4xx/5xx, IMAP NO/BAD, POP3 -ERR).
    #[error("{} refused: {class}", op.name())]
    Refused {
        /// The refused operation.
        op: Op,
        /// `4xx`, `5xx`, `NO`, `BAD` or `ERR`.
        class: &'static str,
    },
    /// The server does not offer what the workload needs (e.g. STARTTLS).
    #[error("server lacks {0}")]
    Unsupported(&'static str),
}

impl LoadError {
    /// The key this error is counted under, e.g. `timeout` or `rcpt.5xx`.
    pub fn key(&self) -> String {
        match self {
            LoadError::Connect(_) => "connect".into(),
            LoadError::Timeout => "timeout".into(),
            LoadError::Io(_) => "io".into(),
            LoadError::Closed => "closed".into(),
            LoadError::Tls(_) => "tls".into(),
            LoadError::Protocol(_) => "protocol".into(),
            LoadError::Refused { op, class } => format!("{}.{}", op.name(), class),
            LoadError::Unsupported(what) => format!("unsupported.{what}"),
        }
    }

    /// Whether the connection can go on after this error.
    pub fn keeps_connection(&self) -> bool {
        matches!(self, LoadError::Refused { .. })
    }

    /// Sorts an I/O error from an established connection.
    pub fn from_io(e: std::io::Error) -> LoadError {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => LoadError::Timeout,
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => LoadError::Closed,
            std::io::ErrorKind::InvalidData => LoadError::Tls(e),
            _ => LoadError::Io(e),
        }
    }

    /// The class word for an SMTP reply code.
    pub fn smtp(op: Op, code: u16) -> LoadError {
        let class = match code / 100 {
            4 => "4xx",
            5 => "5xx",
            _ => "unexpected",
        };
        LoadError::Refused { op, class }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(LoadError::smtp(Op::Rcpt, 550).key(), "rcpt.5xx");
        assert_eq!(LoadError::smtp(Op::Mail, 451).key(), "mail.4xx");
        assert_eq!(LoadError::smtp(Op::Data, 250).key(), "data.unexpected");
        assert_eq!(
            LoadError::from_io(std::io::Error::from(std::io::ErrorKind::TimedOut)).key(),
            "timeout"
        );
        assert_eq!(
            LoadError::from_io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)).key(),
            "closed"
        );
        assert!(LoadError::smtp(Op::Rcpt, 550).keeps_connection());
        assert!(!LoadError::Timeout.keeps_connection());
    }
}

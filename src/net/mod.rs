//! Connections: plaintext and TLS streams over glommio sockets, listeners.

pub mod conn;

pub use conn::{Conn, ConnParts};

//! Connections: plaintext and TLS streams over glommio sockets, listeners.

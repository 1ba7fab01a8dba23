//! ringpost: SMTP, delivery, IMAP and POP3 in one thread-per-core server.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`cli::main`]. Protocol code is sans-IO
//! (parsers and session state machines in `smtp/`, `imap/`, `pop3/`); `server` and `net` drive
//! them over glommio sockets.

pub mod accounts;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod imap;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod pop3;
pub mod quota;
pub mod server;
pub mod smtp;
pub mod tls;

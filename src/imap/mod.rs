//! IMAP4rev1 / IMAP4rev2 server side, sans-IO.
//!
//! * [`parser`] turns bytes into [`parser::Command`]s borrowing from the input (with
//!   [`parser::ParseError::NeedLiteral`] before any literal data is accepted).
//! * [`session::Session`] is the per-connection state machine; a network driver feeds it
//!   bytes, writes its output and carries out its [`session::Action`]s (see that module).
//! * [`store::MailStore`] is what the session needs from storage; implement it for the shard
//!   log with an adapter (its shapes mirror the storage crate), [`store::MemStore`] is the
//!   in-memory one tests use.
//! * [`mime`] answers ENVELOPE / BODYSTRUCTURE / sections / BINARY and SEARCH text questions;
//!   [`mutf7`] converts modified UTF-7 mailbox names.

pub mod driver;
mod lexer;
pub mod localtime;
pub mod mailbox_name;
pub mod mime;
pub mod mutf7;
pub mod parser;
pub mod response;
pub mod search;
pub mod section;
pub mod sequence;
pub mod session;
pub mod shard_store;
pub mod sort;
pub mod store;
pub mod thread;
mod view;

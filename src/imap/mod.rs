//! IMAP: sans-IO parser and session, and the network driver.

pub mod driver;
mod lexer;
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
pub mod store;
mod view;

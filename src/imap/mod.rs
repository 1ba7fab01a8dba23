//! IMAP: sans-IO parser and session, and the network driver.

pub mod driver;
pub mod mime;
pub mod mutf7;
pub mod section;

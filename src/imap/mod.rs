//! IMAP: sans-IO parser and session, and the network driver.

pub mod driver;
pub mod section;

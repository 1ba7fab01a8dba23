//! IMAP: sans-IO parser and session, and the network driver.

pub mod section;
pub mod driver;

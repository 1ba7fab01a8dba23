//! SMTP: sans-IO parser and session, and the network driver.

pub mod address;
pub mod data;
pub mod driver;
pub mod envelope;
pub mod parser;
pub mod reply;
pub mod session;

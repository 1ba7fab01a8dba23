//! SMTP: sans-IO parser and session, and the network driver.
//!
//! Protocol core (no I/O anywhere in here):
//!
//! - [`parser`]: zero-copy command parser, `&[u8]` in, [`parser::Command`] borrowing it out.
//! - [`address`]: envelope address syntax and the relay-safety checks.
//! - [`data`]: DATA/BDAT message reader (dot-unstuffing, smuggling-safe end detection,
//!   limits enforced while reading).
//! - [`reply`]: reply formatting with enhanced status codes.
//! - [`envelope`]: what a session hands to delivery, trace prefix, queue ids.
//! - [`session`]: the state machine a network driver runs; its module docs describe the
//!   driver loop.
//!
//! A driver needs only the items re-exported here.

pub mod address;
pub mod data;
pub mod driver;
pub mod envelope;
pub mod parser;
pub mod reply;
pub mod session;

pub use envelope::{Envelope, LocalRecipient, QueueIdGenerator};
pub use parser::{BodyType, CommandKind};
pub use session::{
    Action, AuthMechanism, DeliveryError, Directory, ListenerKind, Progress, Resolution, Session,
    SessionConfig,
};

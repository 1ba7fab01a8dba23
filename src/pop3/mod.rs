//! POP3: sans-IO parser and session, and the network driver.
//!
//! - [`parser`]: zero-copy command parser (`&[u8]` in, [`Command`] with borrowed arguments out).
//! - [`session`]: the state machine the driver runs ([`Session`], [`Event`], [`Action`]).
//! - [`maildrop`]: the locked INBOX snapshot, message numbers, deletion marks, UIDL ids.
//! - [`multiline`]: byte-stuffing of multi-line responses.
//! - [`top`]: what `TOP msg n` sends.
//! - [`sasl`]: SASL PLAIN decoding.

pub mod driver;
pub mod maildrop;
pub mod multiline;
pub mod parser;
pub mod sasl;
pub mod session;
pub mod top;

pub use maildrop::{Maildrop, MaildropEntry, MaildropError, UniqueId};
pub use parser::{parse_command, Command, CommandKind, Parse, ParseError};
pub use session::{
    Action, DriverError, Event, FetchError, Pop3Config, Progress, Session, Transport,
};

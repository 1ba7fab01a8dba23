//! Connections: plaintext and TLS streams over glommio sockets, listeners, and the limits on
//! what clients can make the server hold (connections, buffered message data).

pub mod budget;
pub mod conn;
pub mod limit;

pub use budget::{Hold, MemoryBudget};
pub use conn::{Conn, ConnParts};

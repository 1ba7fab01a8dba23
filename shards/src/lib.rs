//! ringpost's runtime layer: one glommio executor per core, the shard map that says which
//! executor owns what, the request/response mesh between executors, and the stop signal.
//!
//! ```no_run
//! use shards::{run, PoolOptions};
//!
//! let answers = run(PoolOptions::default(), |ctx: shards::Ctx<u32, u32>| async move {
//!     ctx.serve(|n| async move { n + 1 });
//!     ctx.broadcast(|| 41).await
//! });
//! ```

mod mesh;
mod notify;
mod pool;
mod shard_map;
mod shutdown;
mod wakeups;

pub use mesh::{Ctx, MeshError};
pub use pool::{resolve_executors, run, PoolError, PoolOptions};
pub use shard_map::{account_hash, owner_of, shard_of_account, shards_of};
pub use shutdown::{Shutdown, SignalError};

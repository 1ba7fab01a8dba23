//! Latency histograms, counters, `ringpost stats` and Prometheus text.
//!
//! Every executor records into its own thread-local [`Registry`] (no locks, no allocation on
//! the hot path). When asked, the server gathers one [`Snapshot`] per executor and merges them
//! ([`Snapshot::merge`]); the [`Merged`] view renders as a table, the `stats --json` object or
//! Prometheus text, and is served on `DATA_DIR/admin.sock` and the optional HTTP listener.
//!
//! Server wiring: call [`init`] at executor start; on one executor only,
//! `serve_admin(bind_admin_socket(&admin_socket_path(data_dir))?, collect)` (a second bind
//! reports the live server); `serve_http` on the `metrics` listener (any or every executor);
//! `collect` takes [`Snapshot::take`] on every executor over the mesh and calls
//! [`Snapshot::merge`].

#![warn(missing_docs)]

pub mod admin;
pub mod http;
pub mod names;
pub mod prometheus;
pub mod registry;
pub mod report;
pub mod serve;
pub mod snapshot;

pub use admin::{admin_socket_path, stats_command};
pub use names::{Counter, Gauge, Listener, Metric, RejectReason, Unit, MAX_SHARDS};
pub use registry::{gauge_add, incr, init, record, record_value, start, Registry, Timer};
pub use report::{human_us, CommandStats, Report, SizeStats};
pub use serve::{bind_admin_socket, local_collect, serve_admin, serve_http, Collect};
pub use snapshot::{HistogramSnapshot, MergeError, Merged, Percentiles, Snapshot};

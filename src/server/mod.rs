//! The server: start-up, one executor per core, listeners, graceful shutdown.
//!
//! `serve` prepares everything that can fail cleanly (data directory, manifest, certificate)
//! on the main thread, then starts the executors. Each executor opens the shards it owns
//! (recovery), binds every listener with SO_REUSEPORT and accepts until shutdown.

pub mod admin;
pub mod executor;
pub mod listeners;
pub mod stop;

use crate::config::{Config, Source};
use std::sync::Arc;

pub use executor::{Exec, Req, Resp};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be prepared.
    #[error("data_dir {path}: {message}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
    /// Storage refused to open (corruption, I/O).
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Accounts could not be read.
    #[error(transparent)]
    Accounts(#[from] crate::accounts::AccountError),
    /// An executor failed to start or run.
    #[error("executor {id}: {message}")]
    Executor {
        /// Which executor.
        id: usize,
        /// What failed.
        message: String,
    },
    /// The executor pool could not start.
    #[error("cannot start executors: {0}")]
    Pool(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    /// A configured address is taken (by another ringpost too: see `listeners::ensure_free`).
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Listen {
        /// The `[listen]` key.
        listener: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Everything the executors share, read-only.
pub struct Shared {
    /// The configuration.
    pub cfg: Config,
    /// TLS server configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// Shard count from the manifest.
    pub shards: u32,
    /// Executor count.
    pub executors: usize,
    /// Set by SIGTERM/SIGINT.
    pub shutdown: shards::Shutdown,
    /// Executors that finished start-up.
    pub ready: std::sync::atomic::AtomicUsize,
    /// Accounts at or over `limits.quota_bytes`.
    pub quota: crate::quota::QuotaBoard,
}

/// Installs the tracing subscriber: RUST_LOG wins over `server.log`.
pub fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the server until SIGTERM/SIGINT; returns the exit code.
pub fn serve(mut cfg: Config, source: Source) -> Result<i32, ServerError> {
    init_tracing(&cfg.server.log);
    let metrics = cfg.listen.metrics.map(|a| ("metrics", a));
    let mail = cfg.listen.all().into_iter().map(|(k, a)| (k.name(), a));
    for (listener, addr) in mail.chain(metrics) {
        let patience = std::time::Duration::from_secs(5);
        listeners::ensure_free(addr, patience).map_err(|source| ServerError::Listen {
            listener,
            addr,
            source,
        })?;
    }
    let dir = cfg.server.data_dir.clone();
    let data_dir_err = |e: std::io::Error| ServerError::DataDir {
        path: dir.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(data_dir_err)?;
    // Absolute from here on: logs name real paths and io_uring opens need no cwd.
    let dir = std::fs::canonicalize(&dir).map_err(data_dir_err)?;
    cfg.server.data_dir = dir.clone();
    let manifest = storage::Manifest::open_or_create(&dir, cfg.server.shards)?;
    // Fail now, not on the first session, if the account database is unreadable.
    crate::accounts::AccountDb::load(&dir)?;
    let (cert, key) = crate::tls::ensure_cert(
        cfg.tls.cert.as_deref(),
        cfg.tls.key.as_deref(),
        &dir,
        &cfg.server.hostname,
        true,
    )?;
    let tls = crate::tls::server_config(&cert, &key)?;
    let shutdown = shards::Shutdown::install_signal_handler()
        .map_err(|e| ServerError::Signals(e.to_string()))?;
    // An executor without a shard would have nowhere to queue or look up mail.
    let executors = cfg.executor_count().min(manifest.shards as usize).max(1);
    if executors < cfg.executor_count() {
        tracing::warn!(
            executors,
            shards = manifest.shards,
            "fewer shards than executors: running one executor per shard"
        );
    }
    match &source {
        Source::File(p) => tracing::info!(config = %p.display(), "config loaded"),
        Source::Embedded => tracing::info!("no config file: embedded defaults"),
    }
    let quota = crate::quota::QuotaBoard::new(cfg.limits.quota_bytes);
    let shared = Arc::new(Shared {
        quota,
        cfg,
        tls,
        shards: manifest.shards,
        executors,
        shutdown,
        ready: Default::default(),
    });
    let opts = shards::PoolOptions {
        executors,
        mesh_capacity: 1024,
        name: "ringpost".into(),
        pin: shared.cfg.server.pin_executors,
    };
    let results = shards::run(opts, move |ctx| executor::run(ctx, shared.clone()))
        .map_err(|e| ServerError::Pool(e.to_string()))?;
    let mut first_err = None;
    for (id, r) in results.into_iter().enumerate() {
        if let Err(message) = r {
            tracing::error!(executor = id, %message, "executor failed");
            first_err.get_or_insert(ServerError::Executor { id, message });
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(0)
        }
    }
}

/// Feeds storage timings into this executor's histograms, and account usage into the quota
/// board.
pub struct StorageMetrics {
    /// Server-wide state (the quota board).
    pub shared: Arc<Shared>,
}

impl storage::StorageObserver for StorageMetrics {
    fn wants_usage(&self) -> bool {
        self.shared.quota.limit().is_some()
    }
    fn usage(&self, account: &str, bytes: u64) {
        self.shared.quota.update(account, bytes);
    }
    fn append(&self, micros: u64) {
        crate::metrics::record(
            crate::metrics::Metric::StorageAppend,
            std::time::Duration::from_micros(micros),
        );
    }
    fn commit(&self, records: usize, _bytes: usize, fdatasync_micros: u64) {
        use crate::metrics::{record, record_value, Metric};
        record(
            Metric::StorageFdatasync,
            std::time::Duration::from_micros(fdatasync_micros),
        );
        record_value(Metric::StorageGroupCommitSize, records as u64);
    }
    fn read(&self, micros: u64) {
        crate::metrics::record(
            crate::metrics::Metric::StorageRead,
            std::time::Duration::from_micros(micros),
        );
    }
    fn compacted(&self, _moved_bytes: u64, micros: u64) {
        crate::metrics::record(
            crate::metrics::Metric::StorageCompaction,
            std::time::Duration::from_micros(micros),
        );
    }
}

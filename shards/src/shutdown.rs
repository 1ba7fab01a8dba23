//! Graceful-stop flag shared by every executor, set by SIGTERM/SIGINT or by hand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often [`Shutdown::wait`] looks at the flag. A signal handler may only touch an atomic,
/// so waiters poll it on a timer; 50 ms is well below what a stop request needs.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Installing the signal handlers failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install a handler for signal {signal}")]
pub struct SignalError {
    /// The signal number whose handler could not be installed.
    pub signal: i32,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// A stop request visible to every thread: cheap to clone, `Send + Sync`.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A flag that only [`Shutdown::trigger`] sets (no signal handlers; for tests and tools).
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A flag set by SIGTERM or SIGINT. A second such signal after the first exits the process
    /// at once (status 128 + signal number), for an operator whose graceful stop hangs.
    pub fn install_signal_handler() -> Result<Shutdown, SignalError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let shutdown = Shutdown::new();
        for signal in [SIGTERM, SIGINT] {
            let fail = |source| SignalError { signal, source };
            // Order matters: the conditional exit runs first, so the first signal finds the
            // flag still clear and only the second one exits.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                128 + signal,
                shutdown.flag.clone(),
            )
            .map_err(fail)?;
            signal_hook::flag::register(signal, shutdown.flag.clone()).map_err(fail)?;
        }
        Ok(shutdown)
    }

    /// Requests the stop; every waiter resumes within one poll interval.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once a stop was requested. Must be awaited inside a glommio executor (it sleeps
    /// on a glommio timer between looks at the flag; no busy loop).
    pub async fn wait(&self) {
        while !self.is_triggered() {
            glommio::timer::sleep(POLL_INTERVAL).await;
        }
    }

    /// Blocks the calling (non-executor) thread until a stop was requested.
    pub fn wait_blocking(&self) {
        while !self.is_triggered() {
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    #[test]
    fn wait_resolves_after_trigger_from_another_thread() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.clone();
        let executor = LocalExecutorBuilder::default()
            .spawn(move || async move {
                waiter.wait().await;
                waiter.is_triggered()
            })
            .map_err(std::io::Error::from);
        assert!(!shutdown.is_triggered());
        let trigger = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || shutdown.trigger())
        };
        assert!(trigger.join().is_ok());
        let seen = executor.and_then(|h| h.join().map_err(std::io::Error::from));
        assert!(seen.unwrap_or(false));
        assert!(shutdown.is_triggered());
    }

    #[test]
    fn wait_blocking_resolves_after_trigger() {
        let shutdown = Shutdown::new();
        let other = shutdown.clone();
        let thread = std::thread::spawn(move || {
            other.wait_blocking();
            other.is_triggered()
        });
        shutdown.trigger();
        assert!(thread.join().unwrap_or(false));
    }

    #[test]
    fn sigterm_sets_the_flag() {
        let shutdown = match Shutdown::install_signal_handler() {
            Ok(s) => s,
            Err(e) => panic!("install: {e}"),
        };
        assert!(!shutdown.is_triggered());
        // Our handler is installed, so this sets the flag instead of killing the test process.
        assert!(signal_hook::low_level::raise(signal_hook::consts::SIGTERM).is_ok());
        shutdown.wait_blocking();
        assert!(shutdown.is_triggered());
    }
}

//! The executor-local "server is stopping" signal. Sessions waiting for their client race the
//! read against it, so on SIGTERM an idle client hears a goodbye (`421`, `* BYE`) at once
//! instead of a silent close when the grace period runs out.

use crate::net::Conn;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Resolves every waiter once the executor starts its graceful stop. Not `Send`: one per
/// executor.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
    next_id: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl StopSignal {
    /// A signal not yet triggered.
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Starts the stop: every current and later waiter resumes.
    pub fn trigger(&self) {
        self.stopped.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        waiters.into_values().for_each(Waker::wake);
    }

    /// Whether the stop has started.
    pub fn is_triggered(&self) -> bool {
        self.stopped.get()
    }

    /// Resolves once the stop has started.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            id: None,
        }
    }
}

/// Future of [`StopSignal::wait`]; dropping it forgets its waker.
#[derive(Debug)]
pub struct Wait<'a> {
    signal: &'a StopSignal,
    id: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let signal = self.signal;
        if signal.stopped.get() {
            return Poll::Ready(());
        }
        let id = *self.id.get_or_insert_with(|| {
            let id = signal.next_id.get();
            signal.next_id.set(id + 1);
            id
        });
        let mut waiters = signal.waiters.borrow_mut();
        match waiters.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                waiters.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.signal.waiters.borrow_mut().remove(&id);
        }
    }
}

/// What a read raced against the stop signal gave.
#[derive(Debug)]
pub enum ReadOrStop {
    /// The read finished first (data, end of stream or error).
    Read(io::Result<usize>),
    /// The server is stopping; nothing was read.
    Stopping,
}

/// Reads from `conn`, unless the server starts stopping first and `may_stop` says the session
/// is at a point where it may end cleanly (between commands): a stop drops the read.
pub async fn read_or_stop(
    conn: &mut Conn,
    buf: &mut [u8],
    stop: &StopSignal,
    may_stop: bool,
) -> ReadOrStop {
    if !may_stop {
        return ReadOrStop::Read(conn.read(buf).await);
    }
    if stop.is_triggered() {
        return ReadOrStop::Stopping;
    }
    let read = conn.read(buf);
    let stopping = stop.wait();
    futures::pin_mut!(read, stopping);
    match futures::future::select(read, stopping).await {
        futures::future::Either::Left((r, _)) => ReadOrStop::Read(r),
        futures::future::Either::Right(((), _)) => ReadOrStop::Stopping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn waiters_resume_on_trigger_and_forget_their_waker_when_dropped() {
        let signal = StopSignal::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(signal.wait());
        let mut b = Box::pin(signal.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        // Polling again keeps one registration per waiter.
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert_eq!(signal.waiters.borrow().len(), 2);
        drop(b);
        assert_eq!(signal.waiters.borrow().len(), 1);
        signal.trigger();
        assert!(signal.waiters.borrow().is_empty());
        assert!(a.as_mut().poll(&mut cx).is_ready());
        // A waiter that arrives after the stop resumes at once.
        assert!(Box::pin(signal.wait()).as_mut().poll(&mut cx).is_ready());
    }
}

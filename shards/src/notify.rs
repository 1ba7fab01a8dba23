//! A single-thread "something changed" notifier for tasks of one executor.
//!
//! The mesh's bookkeeping (handler installed, requests in flight, peers finished) lives in
//! `Cell`s on one executor; tasks wait for a condition over them and every change wakes the
//! waiters, which re-check. Cheaper and simpler than a channel per condition.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Wakes every registered task when `notify_all` is called; tasks re-check their condition.
#[derive(Default)]
pub(crate) struct LocalNotify {
    wakers: RefCell<Vec<Waker>>,
}

impl LocalNotify {
    /// Wakes every task currently waiting in [`LocalNotify::wait_until`].
    pub(crate) fn notify_all(&self) {
        // Take the list first: a woken waker may run code that registers again.
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once `cond()` holds, re-checking it after every `notify_all`.
    pub(crate) async fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        poll_fn(|cx| {
            if cond() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            // A task polled again without a notification must not pile up copies of its waker.
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn waiters_resume_when_condition_holds() {
        let result = LocalExecutorBuilder::default()
            .spawn(|| async {
                let notify = Rc::new(LocalNotify::default());
                let value = Rc::new(Cell::new(0));
                let waiters: Vec<_> = (0..3)
                    .map(|_| {
                        let (notify, value) = (notify.clone(), value.clone());
                        glommio::spawn_local(async move {
                            notify.wait_until(|| value.get() >= 2).await;
                            value.get()
                        })
                    })
                    .collect();
                futures_lite::future::yield_now().await;
                value.set(1);
                notify.notify_all();
                futures_lite::future::yield_now().await;
                value.set(2);
                notify.notify_all();
                let mut seen = Vec::new();
                for waiter in waiters {
                    seen.push(waiter.await);
                }
                seen
            })
            .and_then(|handle| handle.join());
        assert_eq!(result.ok(), Some(vec![2, 2, 2]));
    }
}

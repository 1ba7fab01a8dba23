//! [`Ctx`]: one executor's handle on the cross-executor request/response mesh.
//!
//! Requests travel over glommio's bounded SPSC channel mesh, each with a `oneshot` sender for
//! its answer. Every executor runs one receiver loop per peer; each request becomes its own
//! local task, so a slow handler never holds up the next request. Requests that arrive before
//! [`Ctx::serve`] wait in their loop (and, behind it, in the bounded channel) until it is
//! called.
//!
//! Teardown: when an executor's main future has finished it sends `Done` to every peer. Once
//! it has finished itself and heard `Done` (or a hang-up) from every peer, nobody can still
//! need its requests served, so it closes its senders; peers' receiver loops drain and end.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::FutureExt;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::notify::LocalNotify;

/// Why a [`Ctx::call`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// The target index is out of range.
    #[error("executor {to} does not exist (the pool has {executors})")]
    NoSuchExecutor {
        /// The requested target.
        to: usize,
        /// How many executors the pool has.
        executors: usize,
    },
    /// The mesh is closed: the pool is shutting down (every executor's main future finished).
    #[error("the mesh to executor {to} is closed: the pool is shutting down")]
    Closed {
        /// The requested target.
        to: usize,
    },
    /// The target's main future finished without ever calling [`Ctx::serve`].
    #[error("executor {to} finished without serving requests")]
    NoHandler {
        /// The requested target.
        to: usize,
    },
    /// The target dropped the request unanswered (its handler task was cancelled).
    #[error("executor {to} dropped the request without answering")]
    Dropped {
        /// The requested target.
        to: usize,
    },
    /// The target's handler panicked on this request (the pool will report the panic).
    #[error("the handler on executor {to} panicked")]
    HandlerPanicked {
        /// The requested target.
        to: usize,
    },
}

/// What travels between executors.
pub(crate) enum Envelope<Req, Resp> {
    /// A request and where its answer goes.
    Call {
        req: Req,
        reply: oneshot::Sender<Result<Resp, MeshError>>,
    },
    /// The sender's main future has finished; it will send no more `Done`s.
    Done,
}

type BoxedHandler<Req, Resp> = Rc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Resp>>>>;

/// Whether this executor answers requests yet.
enum HandlerSlot<Req, Resp> {
    /// `serve` not called yet: requests wait.
    Pending,
    /// Requests go here.
    Installed(BoxedHandler<Req, Resp>),
    /// The main future finished without `serve`: requests are refused.
    Absent,
}

/// Per-executor mesh state; lives on one thread only.
struct Shared<Req: Send + 'static, Resp: Send + 'static> {
    id: usize,
    executors: usize,
    /// `None` when the pool has a single executor.
    senders: Option<Senders<Envelope<Req, Resp>>>,
    handler: RefCell<HandlerSlot<Req, Resp>>,
    /// Handler tasks started for peers and not finished yet.
    in_flight: Cell<usize>,
    /// Receiver loops still running.
    live_receivers: Cell<usize>,
    /// Peers that sent `Done` or hung up.
    finished_peers: Cell<usize>,
    /// This executor's main future has finished and its `Done`s are sent.
    own_done: Cell<bool>,
    /// Our senders are closed.
    closed: Cell<bool>,
    /// The first panic caught in one of this executor's handler tasks.
    panic: RefCell<Option<String>>,
    /// Woken on every change of the fields above.
    changed: LocalNotify,
}

/// One executor's view of the pool: its id and request/response to every executor.
///
/// Cheap to clone (an `Rc`); `!Send`, like everything that lives on one executor.
pub struct Ctx<Req: Send + 'static, Resp: Send + 'static> {
    shared: Rc<Shared<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Clone for Ctx<Req, Resp> {
    fn clone(&self) -> Self {
        Ctx {
            shared: self.shared.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> std::fmt::Debug for Ctx<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("id", &self.shared.id)
            .field("executors", &self.shared.executors)
            .finish_non_exhaustive()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Ctx<Req, Resp> {
    /// A context for executor `id` of `executors`; `senders` is `None` only when alone.
    pub(crate) fn new(
        id: usize,
        executors: usize,
        senders: Option<Senders<Envelope<Req, Resp>>>,
    ) -> Self {
        Ctx {
            shared: Rc::new(Shared {
                id,
                executors,
                senders,
                handler: RefCell::new(HandlerSlot::Pending),
                in_flight: Cell::new(0),
                live_receivers: Cell::new(0),
                finished_peers: Cell::new(0),
                own_done: Cell::new(false),
                closed: Cell::new(false),
                panic: RefCell::new(None),
                changed: LocalNotify::default(),
            }),
        }
    }

    /// This executor's index, `0..executors()`.
    pub fn id(&self) -> usize {
        self.shared.id
    }

    /// How many executors the pool runs.
    pub fn executors(&self) -> usize {
        self.shared.executors
    }

    /// Sends `req` to executor `to` and awaits its handler's answer. Calling yourself runs your
    /// own handler in this task. Waits while the target has not called [`Ctx::serve`] yet.
    pub async fn call(&self, to: usize, req: Req) -> Result<Resp, MeshError> {
        let shared = &self.shared;
        if to >= shared.executors {
            return Err(MeshError::NoSuchExecutor {
                to,
                executors: shared.executors,
            });
        }
        if to == shared.id {
            // glommio's mesh refuses self-sends; run the handler directly.
            return match self.wait_for_handler().await {
                Some(handler) => Ok(handler(req).await),
                None => Err(MeshError::NoHandler { to }),
            };
        }
        let Some(senders) = shared.senders.as_ref() else {
            // Unreachable: with one executor every valid `to` is ourselves.
            return Err(MeshError::NoSuchExecutor {
                to,
                executors: shared.executors,
            });
        };
        let (reply, answer) = oneshot::channel();
        if senders
            .send_to(to, Envelope::Call { req, reply })
            .await
            .is_err()
        {
            return Err(MeshError::Closed { to });
        }
        match answer.await {
            Ok(result) => result,
            Err(oneshot::Canceled) => Err(MeshError::Dropped { to }),
        }
    }

    /// Installs this executor's request handler (replacing an earlier one); requests that were
    /// waiting for it start now. Each request runs as its own local task.
    pub fn serve<H, HF>(&self, handler: H)
    where
        H: Fn(Req) -> HF + 'static,
        HF: Future<Output = Resp> + 'static,
    {
        let boxed: BoxedHandler<Req, Resp> = Rc::new(move |req| Box::pin(handler(req)));
        *self.shared.handler.borrow_mut() = HandlerSlot::Installed(boxed);
        self.shared.changed.notify_all();
    }

    /// Sends one request (from `make`) to every executor, this one included, concurrently;
    /// answers come back in executor order.
    pub async fn broadcast(&self, make: impl Fn() -> Req) -> Vec<Result<Resp, MeshError>> {
        let calls = (0..self.shared.executors).map(|to| self.call(to, make()));
        futures::future::join_all(calls).await
    }

    /// The installed handler, once there is one; `None` if the main future finished without.
    async fn wait_for_handler(&self) -> Option<BoxedHandler<Req, Resp>> {
        let shared = &self.shared;
        shared
            .changed
            .wait_until(|| !matches!(*shared.handler.borrow(), HandlerSlot::Pending))
            .await;
        match &*shared.handler.borrow() {
            HandlerSlot::Installed(handler) => Some(handler.clone()),
            HandlerSlot::Pending | HandlerSlot::Absent => None,
        }
    }

    /// Spawns one receiver loop per peer. Called once, right after joining the mesh.
    pub(crate) fn start_receivers(&self, mut receivers: Receivers<Envelope<Req, Resp>>) {
        for (peer, stream) in receivers.streams() {
            self.shared
                .live_receivers
                .set(self.shared.live_receivers.get() + 1);
            let ctx = self.clone();
            glommio::spawn_local(async move { ctx.receive_from(peer, stream).await }).detach();
        }
    }

    /// Serves requests from one peer until it closes its side.
    async fn receive_from(
        self,
        peer: usize,
        stream: glommio::channels::shared_channel::ConnectedReceiver<Envelope<Req, Resp>>,
    ) {
        let mut peer_finished = false;
        while let Some(envelope) = stream.recv().await {
            match envelope {
                Envelope::Done => {
                    if !peer_finished {
                        peer_finished = true;
                        self.peer_finished();
                    }
                }
                Envelope::Call { req, reply } => match self.wait_for_handler().await {
                    Some(handler) => self.spawn_handler(handler, req, reply),
                    None => {
                        // The caller may have given up; nothing to do then.
                        let _ = reply.send(Err(MeshError::NoHandler { to: self.id() }));
                    }
                },
            }
        }
        tracing::trace!(executor = self.id(), peer, "mesh receiver loop ended");
        // A peer that hung up without `Done` (it panicked) will not send any more either.
        if !peer_finished {
            self.peer_finished();
        }
        let shared = &self.shared;
        shared.live_receivers.set(shared.live_receivers.get() - 1);
        shared.changed.notify_all();
    }

    /// Runs one request as its own task so that slow handlers do not block the loop.
    fn spawn_handler(
        &self,
        handler: BoxedHandler<Req, Resp>,
        req: Req,
        reply: oneshot::Sender<Result<Resp, MeshError>>,
    ) {
        let shared = &self.shared;
        shared.in_flight.set(shared.in_flight.get() + 1);
        let guard = InFlightGuard(self.clone());
        glommio::spawn_local(async move {
            // A panic escaping a glommio task kills the executor thread and leaks its tasks, so
            // peers would wait for it forever: catch it here, answer, and report it at the end.
            let outcome = AssertUnwindSafe(handler(req)).catch_unwind().await;
            let answer = match outcome {
                Ok(resp) => Ok(resp),
                Err(payload) => {
                    let me = guard.0.id();
                    guard.0.record_panic(panic_message(payload.as_ref()));
                    Err(MeshError::HandlerPanicked { to: me })
                }
            };
            // The caller may have given up; the work is done either way.
            let _ = reply.send(answer);
            drop(guard);
        })
        .detach();
    }

    /// Remembers the first handler panic, for [`Ctx::take_panic`].
    fn record_panic(&self, message: String) {
        tracing::error!(executor = self.id(), %message, "mesh request handler panicked");
        self.shared.panic.borrow_mut().get_or_insert(message);
    }

    /// The first panic caught in a handler task of this executor, if any.
    pub(crate) fn take_panic(&self) -> Option<String> {
        self.shared.panic.borrow_mut().take()
    }

    fn peer_finished(&self) {
        let shared = &self.shared;
        shared.finished_peers.set(shared.finished_peers.get() + 1);
        self.close_if_all_finished();
        shared.changed.notify_all();
    }

    /// Closes our senders once this executor and every peer are finished.
    fn close_if_all_finished(&self) {
        let shared = &self.shared;
        let everyone = shared.own_done.get() && shared.finished_peers.get() + 1 >= shared.executors;
        if everyone && !shared.closed.get() {
            shared.closed.set(true);
            if let Some(senders) = &shared.senders {
                senders.close();
            }
        }
    }

    /// Called once the main future finished: refuses requests if `serve` never came, tells
    /// peers, then waits until every receiver loop and handler task has ended.
    pub(crate) async fn finish(&self) {
        let shared = &self.shared;
        {
            let mut slot = shared.handler.borrow_mut();
            if matches!(*slot, HandlerSlot::Pending) {
                *slot = HandlerSlot::Absent;
            }
        }
        shared.changed.notify_all();
        if let Some(senders) = &shared.senders {
            for peer in (0..shared.executors).filter(|&p| p != shared.id) {
                // A peer that already hung up needs no `Done`.
                let _ = senders.send_to(peer, Envelope::Done).await;
            }
        }
        shared.own_done.set(true);
        self.close_if_all_finished();
        shared
            .changed
            .wait_until(|| shared.live_receivers.get() == 0 && shared.in_flight.get() == 0)
            .await;
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic payload is not a string)".to_string()
    }
}

/// Counts a handler task as finished even if it is dropped unfinished.
struct InFlightGuard<Req: Send + 'static, Resp: Send + 'static>(Ctx<Req, Resp>);

impl<Req: Send + 'static, Resp: Send + 'static> Drop for InFlightGuard<Req, Resp> {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        shared.in_flight.set(shared.in_flight.get() - 1);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{run, PoolOptions};
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn opts(executors: usize, mesh_capacity: usize) -> PoolOptions {
        PoolOptions {
            executors,
            mesh_capacity,
            name: "mesh-test".to_string(),
            pin: false,
        }
    }

    /// Polls `cond` on a glommio timer until it holds; false if it did not within 10 s (so a
    /// broken mesh fails the test instead of hanging it).
    async fn eventually(cond: impl Fn() -> bool) -> bool {
        for _ in 0..10_000 {
            if cond() {
                return true;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        cond()
    }

    #[test]
    fn every_executor_answers_every_other() {
        for executors in 1..=4 {
            let answers = run(
                opts(executors, 8),
                |ctx: Ctx<(usize, u64), (usize, u64)>| async move {
                    let me = ctx.id();
                    ctx.serve(move |(from, x)| async move { (me * 1000 + from, x * 2) });
                    let mut answers = Vec::new();
                    for to in (0..ctx.executors()).filter(|&to| to != me) {
                        answers.push((to, ctx.call(to, (me, to as u64 + 7)).await));
                    }
                    (me, answers)
                },
            );
            let answers = match answers {
                Ok(a) => a,
                Err(e) => panic!("{executors} executors: {e}"),
            };
            assert_eq!(answers.len(), executors);
            for (index, (me, got)) in answers.into_iter().enumerate() {
                assert_eq!(index, me, "results come back in executor order");
                assert_eq!(got.len(), executors - 1);
                for (to, answer) in got {
                    assert_eq!(answer, Ok((to * 1000 + me, (to as u64 + 7) * 2)));
                }
            }
        }
    }

    #[test]
    fn slow_handler_does_not_block_other_requests() {
        // Every handler waits (on a timer) until all REQUESTS handlers have started: that can only
        // finish if the requests run concurrently, far beyond the channel capacity of 4.
        const REQUESTS: u64 = 64;
        let result = run(opts(2, 4), |ctx: Ctx<u64, u64>| async move {
            if ctx.id() == 1 {
                let started = Rc::new(Cell::new(0u64));
                ctx.serve(move |x| {
                    let started = started.clone();
                    async move {
                        started.set(started.get() + 1);
                        let all_started = eventually(|| started.get() == REQUESTS).await;
                        if all_started {
                            x + 1
                        } else {
                            0
                        }
                    }
                });
                return Vec::new();
            }
            let tasks: Vec<_> = (0..REQUESTS)
                .map(|x| {
                    let ctx = ctx.clone();
                    glommio::spawn_local(async move { ctx.call(1, x).await })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await);
            }
            answers
        });
        let answers = match result {
            Ok(mut per_executor) => per_executor.remove(0),
            Err(e) => panic!("{e}"),
        };
        let expected: Vec<_> = (0..REQUESTS).map(|x| Ok(x + 1)).collect();
        assert_eq!(answers, expected);
    }

    #[test]
    fn self_call_and_broadcast() {
        let result = run(opts(3, 2), |ctx: Ctx<u32, (usize, u32)>| async move {
            let me = ctx.id();
            ctx.serve(move |x| async move { (me, x) });
            let own = ctx.call(me, 5).await;
            let all = ctx.broadcast(|| 9).await;
            (own, all)
        });
        let per_executor = match result {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(per_executor.len(), 3);
        for (me, (own, all)) in per_executor.into_iter().enumerate() {
            assert_eq!(own, Ok((me, 5)));
            assert_eq!(all, vec![Ok((0, 9)), Ok((1, 9)), Ok((2, 9))]);
        }
    }

    #[test]
    fn single_executor_calls_itself() {
        let result = run(opts(1, 1), |ctx: Ctx<u32, u32>| async move {
            ctx.serve(|x| async move { x * 3 });
            (
                ctx.call(0, 2).await,
                ctx.broadcast(|| 4).await,
                ctx.call(1, 0).await,
            )
        });
        let (own, all, other) = match result {
            Ok(mut r) if r.len() == 1 => r.remove(0),
            other => panic!("{other:?}"),
        };
        assert_eq!(own, Ok(6));
        assert_eq!(all, vec![Ok(12)]);
        assert_eq!(
            other,
            Err(MeshError::NoSuchExecutor {
                to: 1,
                executors: 1
            })
        );
    }

    #[test]
    fn requests_before_serve_wait_for_it() {
        let calling = Arc::new(AtomicBool::new(false));
        let result = run(opts(2, 4), move |ctx: Ctx<u32, u32>| {
            let calling = calling.clone();
            async move {
                if ctx.id() == 0 {
                    calling.store(true, Ordering::SeqCst);
                    return Some(ctx.call(1, 20).await);
                }
                // Let the request arrive first, then start serving.
                let saw_call = eventually(|| calling.load(Ordering::SeqCst)).await;
                glommio::timer::sleep(Duration::from_millis(20)).await;
                ctx.serve(|x| async move { x + 1 });
                saw_call.then_some(Ok(0))
            }
        });
        match result {
            Ok(r) => assert_eq!(r, vec![Some(Ok(21)), Some(Ok(0))]),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn executor_without_handler_refuses_once_finished() {
        let result = run(opts(2, 4), |ctx: Ctx<u32, u32>| async move {
            match ctx.id() {
                0 => Some(ctx.call(1, 1).await),
                _ => None, // never serves
            }
        });
        match result {
            Ok(r) => assert_eq!(r, vec![Some(Err(MeshError::NoHandler { to: 1 })), None]),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn out_of_range_target_is_an_error() {
        let result = run(opts(2, 4), |ctx: Ctx<u32, u32>| async move {
            ctx.serve(|x| async move { x });
            ctx.call(2, 0).await
        });
        match result {
            Ok(r) => {
                let expected = Err(MeshError::NoSuchExecutor {
                    to: 2,
                    executors: 2,
                });
                assert_eq!(r, vec![expected.clone(), expected]);
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn caller_outliving_its_executor_main_sees_closed_mesh() {
        // A detached task keeps calling after every main future has finished: the pool must
        // still shut down, and the task's last call fails with a mesh error instead of hanging.
        let last = Arc::new(std::sync::Mutex::new(None));
        let seen = last.clone();
        let result = run(opts(2, 2), move |ctx: Ctx<u32, u32>| {
            let last = last.clone();
            async move {
                ctx.serve(|x| async move { x });
                if ctx.id() == 0 {
                    let ctx = ctx.clone();
                    glommio::spawn_local(async move {
                        let mut x = 0;
                        let error = loop {
                            match ctx.call(1, x).await {
                                Ok(_) => x += 1,
                                Err(e) => break e,
                            }
                        };
                        if let Ok(mut slot) = last.lock() {
                            *slot = Some(error);
                        }
                    })
                    .detach();
                }
                ctx.id()
            }
        });
        assert_eq!(result.ok(), Some(vec![0, 1]));
        let error = seen.lock().ok().and_then(|mut slot| slot.take());
        assert!(
            matches!(error, Some(MeshError::Closed { to: 1 })),
            "{error:?}"
        );
    }

    #[test]
    fn requests_carry_fds_and_bytes() {
        // What the server does to move a connection: an fd and buffered bytes cross executors.
        let (ours, theirs) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => panic!("socketpair: {e}"),
        };
        let theirs = Arc::new(std::sync::Mutex::new(Some(OwnedFd::from(theirs))));
        let result = run(opts(2, 1), move |ctx: Ctx<(OwnedFd, Vec<u8>), usize>| {
            let theirs = theirs.clone();
            async move {
                ctx.serve(|(fd, bytes): (OwnedFd, Vec<u8>)| async move {
                    let mut stream = UnixStream::from(fd);
                    stream.write_all(&bytes).map_or(0, |_| bytes.len())
                });
                if ctx.id() != 0 {
                    return None;
                }
                let fd = theirs.lock().ok().and_then(|mut slot| slot.take())?;
                Some(ctx.call(1, (fd, b"moved".to_vec())).await)
            }
        });
        match result {
            Ok(r) => assert_eq!(r, vec![Some(Ok(5)), None]),
            Err(e) => panic!("{e}"),
        }
        let mut got = [0u8; 5];
        let mut ours = ours;
        assert!(ours.read_exact(&mut got).is_ok());
        assert_eq!(&got, b"moved");
    }
}

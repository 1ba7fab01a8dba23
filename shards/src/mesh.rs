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

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures::channel::oneshot;
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
        if senders.send_to(to, Envelope::Call { req, reply }).await.is_err() {
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
            let resp = handler(req).await;
            // The caller may have given up; the work is done either way.
            let _ = reply.send(Ok(resp));
            drop(guard);
        })
        .detach();
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

/// Counts a handler task as finished even if it is dropped unfinished.
struct InFlightGuard<Req: Send + 'static, Resp: Send + 'static>(Ctx<Req, Resp>);

impl<Req: Send + 'static, Resp: Send + 'static> Drop for InFlightGuard<Req, Resp> {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        shared.in_flight.set(shared.in_flight.get() - 1);
        shared.changed.notify_all();
    }
}

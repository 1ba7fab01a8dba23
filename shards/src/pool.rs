//! The executor pool: one glommio `LocalExecutor` per core (pinned on request), joined by a full
//! mesh.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{BuilderErrorKind, CpuSet, GlommioError, LocalExecutorPoolBuilder, PoolPlacement};

use crate::mesh::{panic_message, Ctx, Envelope};

/// Executors that cannot all join the mesh within this time give up instead of hanging (one of
/// them failed to start, e.g. its io_uring could not be set up).
const MESH_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a finished executor looks whether the others have finished too.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// How to start the pool.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Number of executors; 0 = one per core this process may run on.
    pub executors: usize,
    /// Capacity of each executor-to-executor channel (at least 1 is used).
    pub mesh_capacity: usize,
    /// Thread name prefix (glommio appends `-<id>`).
    pub name: String,
    /// Pin executors one per core. Unpinned, the kernel places them: on a host where other
    /// processes are busy too (a load generator, a spam filter), a pinned executor is preempted
    /// on its core instead of moving to an idle one.
    pub pin: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            executors: 0,
            mesh_capacity: 128,
            name: "ringpost".to_string(),
            pin: false,
        }
    }
}

/// Why the pool could not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The executor threads could not be started.
    #[error("cannot start {executors} executor threads")]
    Spawn {
        /// How many were asked for.
        executors: usize,
        /// What glommio or the OS said.
        #[source]
        source: std::io::Error,
    },
    /// An executor thread could not set itself up (io_uring, memory, CPU binding).
    #[error("an executor failed to start")]
    Executor {
        /// What glommio or the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The main future or a request handler of an executor panicked; the pool still shut down
    /// in order.
    #[error("executor {executor} panicked: {message}")]
    Panicked {
        /// The executor's index.
        executor: usize,
        /// The (first) panic message.
        message: String,
    },
    /// An executor thread died of a panic outside its main future and handlers (in a task it
    /// spawned itself).
    #[error("an executor thread panicked: {message}")]
    ThreadPanicked {
        /// The panic message.
        message: String,
    },
    /// The executors could not all join the mesh (one of them never started).
    #[error("executor {executor} could not join the mesh of {executors} executors")]
    MeshJoin {
        /// glommio's id of the executor that gave up.
        executor: usize,
        /// How many executors were to join.
        executors: usize,
    },
}

/// The number of executors `executors` asks for: itself, or the usable cores when 0.
pub fn resolve_executors(executors: usize) -> usize {
    if executors > 0 {
        return executors;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Starts the executors, joins them in a full mesh, runs `f(ctx)` on each and returns every
/// executor's result in executor-id order once all have finished and the mesh is torn down.
///
/// With `opts.pin`, executors are pinned one per core (glommio `MaxSpread` over the CPUs this
/// process may use) when there are enough cores, unpinned otherwise (with a warning); without
/// it they are not pinned. An executor keeps serving its peers after its own `f` finished,
/// until every `f` has; calls made after that (from tasks that outlive `f`) fail with
/// [`crate::MeshError::Closed`]. A panic in `f` or in a request handler is caught, the pool
/// still shuts down in order, and the panic comes back as [`PoolError::Panicked`]. A panic in a
/// task you spawned yourself kills that executor thread and glommio leaks its channels, which
/// can hang the pool: catch panics in such tasks.
pub fn run<Req, Resp, F, Fut, T>(opts: PoolOptions, f: F) -> Result<Vec<T>, PoolError>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Ctx<Req, Resp>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let executors = resolve_executors(opts.executors);
    let capacity = opts.mesh_capacity.max(1);
    let placement = if opts.pin {
        choose_placement(executors)
    } else {
        PoolPlacement::Unbound(executors)
    };
    let pinned = !matches!(placement, PoolPlacement::Unbound(_));
    let handles = match spawn_pool::<Req, Resp, F, Fut, T>(&opts.name, placement, capacity, &f) {
        Ok(handles) => handles,
        Err(err) if pinned => {
            tracing::warn!(
                executors,
                error = %err,
                "cannot pin executors to cores; running them unpinned"
            );
            spawn_pool(&opts.name, PoolPlacement::Unbound(executors), capacity, &f)
                .map_err(|e| spawn_error(executors, e))?
        }
        Err(err) => return Err(spawn_error(executors, err)),
    };

    let mut results = Vec::with_capacity(executors);
    let mut first_error = None;
    for joined in handles.join_all() {
        match joined {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(err) => {
                first_error.get_or_insert(executor_error(err));
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    results.sort_by_key(|(id, _)| *id);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

type PoolHandles<T> = glommio::PoolThreadHandles<Result<(usize, T), PoolError>>;

fn spawn_pool<Req, Resp, F, Fut, T>(
    name: &str,
    placement: PoolPlacement,
    capacity: usize,
    f: &F,
) -> Result<PoolHandles<T>, GlommioError<()>>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Ctx<Req, Resp>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let executors = placement.executor_count();
    // A fresh mesh per attempt: a failed attempt may have consumed a builder's slots.
    let mesh = MeshBuilder::<Envelope<Req, Resp>, _>::full(executors, capacity);
    let exited = Arc::new(AtomicUsize::new(0));
    let f = f.clone();
    LocalExecutorPoolBuilder::new(placement)
        .name(name)
        .on_all_shards(move || async move {
            let exit = ExitGuard {
                exited,
                executors,
                arrived: false,
            };
            let result = executor_main(executors, mesh, f).await;
            // An executor that never joined the mesh shared no wakers: no need to wait (and a
            // peer that never started would never arrive).
            if !matches!(result, Err(PoolError::MeshJoin { .. })) {
                exit.arrive_and_wait().await;
            }
            result
        })
}

/// One executor's life: join the mesh, serve while `f` runs, tear down.
async fn executor_main<Req, Resp, F, Fut, T>(
    executors: usize,
    mesh: MeshBuilder<Envelope<Req, Resp>, glommio::channels::channel_mesh::Full>,
    f: F,
) -> Result<(usize, T), PoolError>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Ctx<Req, Resp>) -> Fut,
    Fut: Future<Output = T> + 'static,
{
    let ctx = if executors == 1 {
        Ctx::new(0, 1, None)
    } else {
        let join_error = || PoolError::MeshJoin {
            executor: glommio::executor().id(),
            executors,
        };
        let timeout = async {
            glommio::timer::sleep(MESH_JOIN_TIMEOUT).await;
            None
        };
        let joined = futures_lite::future::or(async { Some(mesh.join().await) }, timeout).await;
        let (senders, receivers) = match joined {
            Some(Ok(pair)) => pair,
            Some(Err(_)) | None => return Err(join_error()),
        };
        let ctx = Ctx::new(senders.peer_id(), executors, Some(senders));
        ctx.start_receivers(receivers);
        ctx
    };
    // Caught so that the executor still tears down in order: a panic escaping a glommio task
    // kills the thread and leaks its channels, and every peer would wait for it forever.
    let result = AssertUnwindSafe(f(ctx.clone())).catch_unwind().await;
    ctx.finish().await;
    let executor = ctx.id();
    match result {
        Err(payload) => Err(PoolError::Panicked {
            executor,
            message: panic_message(payload.as_ref()),
        }),
        Ok(result) => match ctx.take_panic() {
            Some(message) => Err(PoolError::Panicked { executor, message }),
            None => Ok((executor, result)),
        },
    }
}

/// Keeps every executor alive until all have finished, so that no thread exits while another
/// may still wake one of its tasks (an answer's waker crosses threads). Counts the executor as
/// arrived even when it unwinds from a panic, so the others never wait for it forever.
struct ExitGuard {
    exited: Arc<AtomicUsize>,
    executors: usize,
    arrived: bool,
}

impl ExitGuard {
    async fn arrive_and_wait(mut self) {
        self.arrived = true;
        self.exited.fetch_add(1, Ordering::SeqCst);
        while self.exited.load(Ordering::SeqCst) < self.executors {
            glommio::timer::sleep(EXIT_POLL_INTERVAL).await;
        }
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if !self.arrived {
            self.exited.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Pinned one-per-core placement when this process may use enough cores, unbound otherwise.
fn choose_placement(executors: usize) -> PoolPlacement {
    let allowed = match allowed_cpus() {
        Ok(allowed) => allowed,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the CPU affinity mask; executors unpinned");
            return PoolPlacement::Unbound(executors);
        }
    };
    // Only CPUs in our affinity mask: pinning to any other fails (containers, taskset).
    let cpus = match CpuSet::online() {
        Ok(online) => online.filter(|location| allowed.contains(&location.cpu)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the CPU topology; executors unpinned");
            return PoolPlacement::Unbound(executors);
        }
    };
    if cpus.len() < executors {
        tracing::warn!(
            executors,
            cores = cpus.len(),
            "more executors than usable cores; executors unpinned"
        );
        return PoolPlacement::Unbound(executors);
    }
    PoolPlacement::MaxSpread(executors, Some(cpus))
}

/// The CPUs this process may run on.
fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set. sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads within it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
        Ok((0..max).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect())
    }
}

fn spawn_error(executors: usize, err: GlommioError<()>) -> PoolError {
    PoolError::Spawn {
        executors,
        source: err.into(),
    }
}

fn executor_error(err: GlommioError<()>) -> PoolError {
    match err {
        GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(payload)) => {
            PoolError::ThreadPanicked {
                message: panic_message(payload.as_ref()),
            }
        }
        other => PoolError::Executor {
            source: other.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ctx;

    fn opts(executors: usize) -> PoolOptions {
        PoolOptions {
            executors,
            mesh_capacity: 4,
            name: "pool-test".to_string(),
            pin: false,
        }
    }

    #[test]
    fn executors_float_unless_pinning_is_asked_for() {
        let process = allowed_cpus().expect("affinity mask").len();
        let cpus_of_executor =
            |_ctx: Ctx<(), ()>| async move { allowed_cpus().map(|cpus| cpus.len()).unwrap_or(0) };
        let floating = run(opts(1), cpus_of_executor);
        assert_eq!(floating.ok(), Some(vec![process]));
        let pinned = run(
            PoolOptions {
                pin: true,
                ..opts(1)
            },
            cpus_of_executor,
        );
        assert_eq!(pinned.ok(), Some(vec![1]));
    }

    #[test]
    fn results_come_back_in_executor_order() {
        // 4 executors may exceed the cores here: placement falls back to unpinned.
        let result = run(opts(4), |ctx: Ctx<(), ()>| async move {
            (ctx.id(), ctx.executors())
        });
        let expected: Vec<_> = (0..4).map(|id| (id, 4)).collect();
        assert_eq!(result.ok(), Some(expected));
    }

    #[test]
    fn zero_executors_means_one_per_usable_core() {
        let result = run(opts(0), |ctx: Ctx<(), ()>| async move { ctx.executors() });
        let cores = resolve_executors(0);
        assert!(cores >= 1);
        assert_eq!(result.ok(), Some(vec![cores; cores]));
    }

    #[test]
    fn placement_pins_only_when_cores_suffice() {
        let cores = allowed_cpus().map(|cpus| cpus.len()).unwrap_or(0);
        assert!(cores >= 1, "this process may run on at least one CPU");
        assert_eq!(
            choose_placement(cores + 1),
            PoolPlacement::Unbound(cores + 1)
        );
        assert!(matches!(
            choose_placement(1),
            PoolPlacement::MaxSpread(1, _)
        ));
    }

    #[test]
    fn panicking_executor_is_reported_and_others_stop() {
        let result = run(opts(2), |ctx: Ctx<u32, u32>| async move {
            ctx.serve(|x| async move { x });
            if ctx.id() == 1 {
                panic!("executor one gives up");
            }
            // Executor 0 asks the panicking one: it must get an error, not hang.
            ctx.call(1, 1).await.is_ok()
        });
        match result {
            Err(PoolError::Panicked { executor, message }) => {
                assert_eq!(executor, 1);
                assert!(message.contains("gives up"), "{message}");
            }
            other => panic!("expected a panic report, got {other:?}"),
        }
    }

    #[test]
    fn panicking_handler_answers_an_error_and_is_reported() {
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = answers.clone();
        let result = run(opts(2), move |ctx: Ctx<u32, u32>| {
            let answers = answers.clone();
            async move {
                ctx.serve(|x| async move {
                    assert!(x != 13, "unlucky request");
                    x
                });
                if ctx.id() == 0 {
                    let got = vec![ctx.call(1, 13).await, ctx.call(1, 12).await];
                    if let Ok(mut answers) = answers.lock() {
                        *answers = got;
                    }
                }
            }
        });
        let answers = seen.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(
            answers,
            vec![Err(crate::MeshError::HandlerPanicked { to: 1 }), Ok(12)]
        );
        match result {
            Err(PoolError::Panicked { executor, message }) => {
                assert_eq!(executor, 1);
                assert!(message.contains("unlucky request"), "{message}");
            }
            other => panic!("expected a panic report, got {other:?}"),
        }
    }
}

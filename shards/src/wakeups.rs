//! Liveness of the reactor every executor runs on (glommio, patched in vendor/glommio): a
//! sleeping executor must wake for each of the four things that end a sleep, and an
//! executor with runnable tasks must not sleep. A lost wakeup does not fail a functional test
//! reliably; it stalls one session for as long as the executor has nothing else to do. Each
//! test repeats its case thousands of times, with a watchdog far above the normal run time
//! (well under a second).
#![cfg(test)]

use std::sync::mpsc;
use std::time::Duration;

use glommio::channels::shared_channel;
use glommio::{Latency, LocalExecutorBuilder, Shares};

/// How long a test may take before its executor counts as stalled.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `work` on a fresh executor thread; panics if it does not finish within [`WATCHDOG`].
fn on_executor<Fut>(name: &'static str, work: impl FnOnce() -> Fut + Send + 'static) -> u32
where
    Fut: std::future::Future<Output = u32> + 'static,
{
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::default()
            .name(name)
            .spawn(work)
            .expect("executor starts");
        let _ = done.send(ex.join().expect("executor ends"));
    });
    finished
        .recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("{name}: an executor slept through its wakeup"))
}

/// Timers that are due a few microseconds after the executor decides to sleep: the timer
/// armed for the sleep completes at once. (A draft reactor patch consumed that completion
/// before sleeping, and the sleep then lasted until some unrelated event.)
#[test]
fn near_due_timers_wake_a_sleeping_executor() {
    let rounds = on_executor("timers", || async {
        let mut rounds = 0;
        for i in 0..3000u64 {
            glommio::timer::sleep(Duration::from_micros(1 + i % 40)).await;
            rounds += 1;
        }
        rounds
    });
    assert_eq!(rounds, 3000);
}

/// Results of blocking work (password hashing, fsync of directories) come back from another
/// thread through the executor's sleep notifier.
#[test]
fn blocking_results_wake_a_sleeping_executor() {
    let sum = on_executor("blocking", || async {
        let mut sum = 0;
        for i in 0..2000u32 {
            sum += glommio::executor().spawn_blocking(move || i % 3).await;
        }
        sum
    });
    assert_eq!(sum, (0..2000u32).map(|i| i % 3).sum::<u32>());
}

/// Messages from another executor (the mesh's requests and replies) wake a sleeping one:
/// a ping-pong over shared channels, where each side sleeps between messages.
#[test]
fn cross_executor_messages_wake_a_sleeping_executor() {
    const ROUNDS: u32 = 2000;
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u32>(1);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u32>(1);
    let echo = std::thread::spawn(move || {
        LocalExecutorBuilder::default()
            .name("echo")
            .spawn(move || async move {
                let rx = ping_rx.connect().await;
                let tx = pong_tx.connect().await;
                while let Some(n) = rx.recv().await {
                    if tx.send(n + 1).await.is_err() {
                        break;
                    }
                }
            })
            .expect("executor starts")
            .join()
            .expect("executor ends")
    });
    let last = on_executor("ping", move || async move {
        let tx = ping_tx.connect().await;
        let rx = pong_rx.connect().await;
        let mut n = 0;
        for _ in 0..ROUNDS {
            tx.send(n).await.expect("echo runs");
            n = rx.recv().await.expect("echo answers");
        }
        n
    });
    assert_eq!(last, ROUNDS);
    echo.join().expect("echo ends once ping hung up");
}

/// A socket that becomes readable wakes a sleeping executor: a ping-pong over loopback TCP
/// with a plain thread, the way every session waits for its client. The executor's main ring
/// posts such completions cooperatively (vendor/README.md, change 5), so this is the wake path
/// that change relies on.
#[test]
fn readable_sockets_wake_a_sleeping_executor() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use std::io::{Read, Write};
    const ROUNDS: u32 = 2000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let echo = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().expect("accept");
        let mut byte = [0u8; 1];
        while peer.read_exact(&mut byte).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
            if peer.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let rounds = on_executor("socket", move || async move {
        let mut stream = glommio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let mut byte = [0u8; 1];
        let mut rounds = 0;
        for _ in 0..ROUNDS {
            let sent = byte[0];
            stream.write_all(&byte).await.expect("write");
            stream.read_exact(&mut byte).await.expect("echo answers");
            assert_eq!(byte[0], sent.wrapping_add(1), "the echo's byte");
            rounds += 1;
        }
        rounds
    });
    assert_eq!(rounds, ROUNDS);
    echo.join().expect("echo ends once the executor hung up");
}

/// A task queue whose preemption period is a few microseconds: the preemption timer often
/// fires between polling the rings and running the queues. (Upstream glommio then reported
/// "nothing ran" and parked with the queue still runnable, and nothing else would wake it.)
#[test]
fn an_executor_preempted_before_running_does_not_park_with_runnable_tasks() {
    let rounds = on_executor("preempted", || async {
        let tq = glommio::executor().create_task_queue(
            Shares::default(),
            Latency::Matters(Duration::from_micros(5)),
            "short-preempt",
        );
        glommio::spawn_local_into(
            async {
                // Each preemption returns to the executor's loop: thousands of chances.
                let started = std::time::Instant::now();
                let mut rounds = 0;
                while started.elapsed() < Duration::from_millis(300) {
                    glommio::yield_if_needed().await;
                    rounds += 1;
                }
                rounds
            },
            tq,
        )
        .expect("the queue exists")
        .await
    });
    assert!(rounds > 0);
}

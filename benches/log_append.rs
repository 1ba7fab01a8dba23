//! Shard log append throughput and latency with group commit, against the raw bound of the
//! same disk (a loop of 4 KiB write + fdatasync, like `dd oflag=dsync`).
//!
//! Runs in a temp dir under the target directory (the work disk, not tmpfs). Criterion
//! reports throughput; a fixed-count pass afterwards prints appends/s, MB/s, commit batch
//! size and latency percentiles, and the ratio to the raw bound, for every preallocation
//! mode. `cargo bench --bench log_append -- summary_only` skips criterion and runs only that.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::LocalExecutor;
use std::cell::{Cell, RefCell};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::{Preallocate, Shard, ShardOptions, StorageObserver};

const ACCOUNT: &str = "bench@example.org";
const WRITERS: [usize; 2] = [1, 64];
const SIZES: [usize; 2] = [4 << 10, 64 << 10];

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("log_append")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir on the work disk")
}

#[derive(Default)]
struct Stats {
    commits: Cell<usize>,
    records: Cell<usize>,
    latencies: RefCell<Vec<u64>>,
}

impl StorageObserver for Stats {
    fn append(&self, micros: u64) {
        self.latencies.borrow_mut().push(micros);
    }
    fn commit(&self, records: usize, _bytes: usize, _fdatasync_micros: u64) {
        self.commits.set(self.commits.get() + 1);
        self.records.set(self.records.get() + records);
    }
    fn read(&self, _micros: u64) {}
}

/// Appends `total` bodies of `size` bytes from `writers` concurrent tasks into a fresh shard;
/// returns the elapsed time of the appends alone (open and close excluded).
async fn append_run(
    dir: &Path,
    writers: usize,
    size: usize,
    total: u64,
    stats: Rc<Stats>,
    prealloc: Preallocate,
) -> Duration {
    let opts = ShardOptions {
        observer: Some(stats),
        preallocate: prealloc,
        ..ShardOptions::default()
    };
    let shard = Shard::open(dir, 0, opts).await.expect("open shard");
    shard.ensure_account(ACCOUNT).await.expect("account");
    let body = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers as u64)
        .map(|w| {
            let n = total / writers as u64 + u64::from(w < total % writers as u64);
            let shard = shard.clone();
            let body = body.clone();
            glommio::spawn_local(async move {
                for _ in 0..n {
                    shard
                        .deliver(std::slice::from_ref(&body), &[ACCOUNT], 0)
                        .await
                        .expect("deliver");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let elapsed = start.elapsed();
    shard.close().await.expect("close");
    elapsed
}

/// The raw bound: `n` sequential 4 KiB pwrite + fdatasync on a fresh (growing) file.
fn raw_dsync(dir: &Path, n: u64, lat: &mut Vec<u64>) -> Duration {
    let path = dir.join("raw");
    let f = std::fs::File::create(&path).expect("raw file");
    let buf = vec![b'y'; 4096];
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        // SAFETY: valid fd and buffer for the duration of the calls.
        let w = unsafe {
            libc::pwrite(
                f.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                (i * 4096) as libc::off_t,
            )
        };
        assert_eq!(w, 4096);
        // SAFETY: valid fd.
        assert_eq!(unsafe { libc::fdatasync(f.as_raw_fd()) }, 0);
        lat.push(t.elapsed().as_micros() as u64);
    }
    let elapsed = start.elapsed();
    drop(f);
    let _ = std::fs::remove_file(path);
    elapsed
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn benches(c: &mut Criterion) {
    let ex = LocalExecutor::default();
    let mut group = c.benchmark_group("log_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Bytes(4096));
    group.bench_function("raw_write_fdatasync_4KiB", |b| {
        b.iter_custom(|iters| {
            let dir = scratch();
            raw_dsync(dir.path(), iters, &mut Vec::new())
        })
    });
    for size in SIZES {
        for writers in WRITERS {
            group.throughput(Throughput::Bytes(size as u64));
            let id = BenchmarkId::new(format!("deliver_{}KiB", size >> 10), format!("{writers}w"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let dir = scratch();
                    let stats = Rc::new(Stats::default());
                    ex.run(append_run(
                        dir.path(),
                        writers,
                        size,
                        iters,
                        stats,
                        Preallocate::ZeroFill,
                    ))
                })
            });
        }
    }
    group.finish();
    summary(&ex);
}

/// Fixed-count runs with latency percentiles, printed for the report.
fn summary(ex: &LocalExecutor) {
    let dir = scratch();
    let mut raw_lat = Vec::new();
    let n = 2000;
    let raw = raw_dsync(dir.path(), n, &mut raw_lat);
    let raw_ops = n as f64 / raw.as_secs_f64();
    println!(
        "\nraw 4KiB write+fdatasync: {:.0} ops/s, {:.1} MB/s, p50 {} us, p99 {} us",
        raw_ops,
        raw_ops * 4096.0 / 1e6,
        pct(&mut raw_lat, 0.5),
        pct(&mut raw_lat, 0.99)
    );
    for prealloc in [
        Preallocate::ZeroFill,
        Preallocate::Fallocate,
        Preallocate::None,
    ] {
        for size in SIZES {
            for writers in WRITERS {
                let total: u64 = match (size, writers) {
                    (4096, 1) => 2000,
                    (_, 1) => 1000,
                    (4096, _) => 20_000,
                    _ => 4000,
                };
                let run_dir = scratch();
                let stats = Rc::new(Stats::default());
                let t = ex.run(append_run(
                    run_dir.path(),
                    writers,
                    size,
                    total,
                    stats.clone(),
                    prealloc,
                ));
                let ops = total as f64 / t.as_secs_f64();
                let mut lat = stats.latencies.take();
                println!(
                    "{prealloc:?} {:>2}KiB x{writers:>2}: {ops:>7.0} appends/s {:>6.1} MB/s \
                     ({:.2}x raw ops/s, {:.2}x raw MB/s) {:.1} rec/commit, latency p50 {} us \
                     p99 {} us max {} us",
                    size >> 10,
                    ops * size as f64 / 1e6,
                    ops / raw_ops,
                    ops * size as f64 / (raw_ops * 4096.0),
                    stats.records.get() as f64 / stats.commits.get().max(1) as f64,
                    pct(&mut lat, 0.5),
                    pct(&mut lat, 0.99),
                    pct(&mut lat, 1.0),
                );
            }
        }
    }
}

criterion_group!(log_append, benches);
criterion_main!(log_append);

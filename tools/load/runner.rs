//! Runs the connections on a pool of glommio executors and gathers their measurements on
//! the main thread: a progress line each second, interval histograms for the hlog, ids for
//! `--ids-file`, and the totals for the report. The main thread enforces the hard cap.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::cli::{Security, Settings};
use crate::hlog::HlogWriter;
use crate::pace::Control;
use crate::session::{run_connection, ConnCtx};
use crate::stats::{Recorder, Sample};
use crate::transport::tls_setup;

/// Length of one measurement interval.
const TICK: Duration = Duration::from_secs(1);
/// How long past the deadline in-flight work may take before the run is cut off.
const HARD_CAP_GRACE: Duration = Duration::from_secs(30);
/// How long a tick waits for a slow executor before it is reported without it.
const TICK_PATIENCE: Duration = Duration::from_millis(1500);
/// glommio's default registers 10 MiB per executor for DMA, which the tool does not use and
/// which would count against RLIMIT_MEMLOCK next to the server under test.
const IO_MEMORY: usize = 512 * 1024;

/// One message from an executor to the main thread.
struct Report {
    executor: usize,
    /// Interval index: interval k covers [start + (k-1)s, start + k s).
    tick: u64,
    /// The executor's connections have all finished; this is its last report.
    last: bool,
    sample: Sample,
}

/// What a run produced.
pub struct Outcome {
    /// Everything merged.
    pub total: Sample,
    /// Measured time, from start to the last report.
    pub elapsed: Duration,
    /// The hard cap cut the run off.
    pub cut_off: bool,
    /// Executors used.
    pub executors: usize,
}

/// Why a run could not start or its outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// TLS configuration failed.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// The executor pool failed to start.
    #[error("cannot start executors: {0}")]
    Pool(String),
    /// An output file could not be written.
    #[error("{0}: {1}")]
    Output(String, std::io::Error),
}

/// Runs the load and returns the totals.
pub fn run(settings: Settings) -> Result<Outcome, RunError> {
    let settings = Arc::new(settings);
    let tls_config = match settings.security {
        Security::Plain => None,
        _ => Some(crate::tls::insecure_client_config()?),
    };
    let mut ids_out = match &settings.ids_file {
        Some(p) => Some(BufWriter::new(
            File::create(p).map_err(|e| RunError::Output(p.display().to_string(), e))?,
        )),
        None => None,
    };
    let mut hlog = match &settings.hlog {
        Some(p) => Some(
            HlogWriter::create(p, SystemTime::now())
                .map_err(|e| RunError::Output(p.display().to_string(), e))?,
        ),
        None => None,
    };

    let executors = settings.executors;
    let start = Instant::now();
    let control = Arc::new(Control::new(start, settings.duration, settings.budget));
    let run_id: Arc<str> = Arc::from(run_id().as_str());
    let (tx, rx) = mpsc::channel::<Report>();
    let next_index = Arc::new(AtomicUsize::new(0));

    let placement = if settings.pin {
        PoolPlacement::MaxSpread(executors, None)
    } else {
        PoolPlacement::Unbound(executors)
    };
    let handles = {
        let settings = settings.clone();
        let control = control.clone();
        LocalExecutorPoolBuilder::new(placement)
            .name("ringpost-load")
            .io_memory(IO_MEMORY)
            .on_all_shards(move || async move {
                let me = next_index.fetch_add(1, Ordering::Relaxed);
                executor_main(me, settings, control, tls_config, run_id, tx).await;
            })
            .map_err(|e| RunError::Pool(e.to_string()))?
    };

    let hard_cap = start + settings.duration + HARD_CAP_GRACE;
    let mut total = Sample::default();
    let mut pending: BTreeMap<u64, (Sample, Vec<bool>)> = BTreeMap::new();
    let mut finished_at: Vec<Option<u64>> = vec![None; executors];
    let mut last_report = start;
    let mut last_flushed = 0u64;
    let mut cut_off = false;
    let mut progress = Progress::new(&settings);

    loop {
        let all_done = finished_at.iter().all(Option::is_some);
        if all_done {
            break;
        }
        if Instant::now() >= hard_cap {
            control.stop();
            cut_off = true;
            break;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(report) => {
                last_report = Instant::now();
                if let Some(out) = ids_out.as_mut() {
                    for id in &report.sample.ids {
                        let _ = writeln!(out, "{id}");
                    }
                    // The ids must be on disk before anyone kills the server and checks.
                    let _ = out.flush();
                }
                total.merge(&report.sample);
                let tick = report.tick.max(last_flushed + 1);
                let entry = pending
                    .entry(tick)
                    .or_insert_with(|| (Sample::default(), vec![false; executors]));
                entry.0.merge(&report.sample);
                if let Some(seen) = entry.1.get_mut(report.executor) {
                    *seen = true;
                }
                if report.last {
                    if let Some(f) = finished_at.get_mut(report.executor) {
                        *f = Some(report.tick);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Flush ticks every live executor has reported, or that waited long enough.
        while let Some((&tick, (_, seen))) = pending.iter().next() {
            let complete = seen.iter().enumerate().all(|(e, &s)| {
                s || finished_at
                    .get(e)
                    .copied()
                    .flatten()
                    .is_some_and(|f| f < tick)
            });
            let overdue = Instant::now() > start + TICK * (tick as u32) + TICK_PATIENCE;
            if !(complete || overdue) {
                break;
            }
            if let Some((sample, _)) = pending.remove(&tick) {
                flush_tick(tick, &sample, &mut progress, hlog.as_mut());
                last_flushed = tick;
            }
        }
    }
    for (tick, (sample, _)) in std::mem::take(&mut pending) {
        flush_tick(tick, &sample, &mut progress, hlog.as_mut());
    }
    if let Some(h) = hlog.as_mut() {
        h.finish()
            .map_err(|e| RunError::Output("hlog".to_string(), e))?;
    }
    let elapsed = if cut_off {
        start.elapsed()
    } else {
        last_report.saturating_duration_since(start)
    };
    if !cut_off {
        // Every executor said it was done; their threads end right away.
        let _ = handles.join_all();
    }
    Ok(Outcome {
        total,
        elapsed,
        cut_off,
        executors,
    })
}

/// Prints the progress line of one interval and writes its hlog entries.
fn flush_tick(tick: u64, sample: &Sample, progress: &mut Progress, hlog: Option<&mut HlogWriter>) {
    progress.print(tick, sample);
    if let Some(h) = hlog {
        let begin = TICK * (tick.saturating_sub(1) as u32);
        let _ = h.write_interval(sample, begin, TICK);
    }
}

/// The body of one executor: its share of connections plus a reporter task.
async fn executor_main(
    me: usize,
    settings: Arc<Settings>,
    control: Arc<Control>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    run_id: Arc<str>,
    tx: mpsc::Sender<Report>,
) {
    let rec = Rc::new(Recorder::new(settings.ids_file.is_some()));
    let tls = tls_config.map(|c| {
        tls_setup(
            c,
            crate::tls::server_name(settings.sni.as_deref(), settings.addr.ip()),
        )
    });
    let mut tasks = Vec::new();
    for index in (me..settings.connections).step_by(settings.executors) {
        let ctx = ConnCtx {
            index,
            settings: settings.clone(),
            control: control.clone(),
            rec: rec.clone(),
            tls: tls.clone(),
            run_id: run_id.clone(),
        };
        tasks.push(glommio::spawn_local(run_connection(ctx)));
    }
    let done = Rc::new(std::cell::Cell::new(false));
    let reporter = {
        let rec = rec.clone();
        let done = done.clone();
        let tx = tx.clone();
        let start = control.start;
        glommio::spawn_local(async move {
            let mut tick = 1u64;
            loop {
                let due = start + TICK * (tick as u32);
                let now = Instant::now();
                if due > now {
                    glommio::timer::sleep(due - now).await;
                }
                if done.get() {
                    break;
                }
                let _ = tx.send(Report {
                    executor: me,
                    tick,
                    last: false,
                    sample: rec.take(),
                });
                tick += 1;
            }
        })
    };
    for t in tasks {
        t.await;
    }
    done.set(true);
    let tick = (control.start.elapsed().as_secs()) + 1;
    let _ = tx.send(Report {
        executor: me,
        tick,
        last: true,
        sample: rec.take(),
    });
    // The reporter wakes at its next tick and sees `done`; do not wait for it.
    drop(reporter);
}

/// A run id: seconds since the epoch and some randomness, in hex.
fn run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs:x}{:04x}", rand::random::<u16>())
}

/// The once-a-second progress line on stderr.
struct Progress {
    quiet: bool,
    total_ops: u64,
    total_errors: u64,
}

impl Progress {
    fn new(settings: &Settings) -> Progress {
        Progress {
            quiet: settings.quiet,
            total_ops: 0,
            total_errors: 0,
        }
    }

    fn print(&mut self, tick: u64, s: &Sample) {
        self.total_ops += s.ops;
        self.total_errors += s.error_count();
        if self.quiet {
            return;
        }
        eprintln!(
            "[{tick:>4}s] ops/s {:>9}  msgs/s {:>9}  errors {:>6} (total {})  ops total {}",
            s.ops,
            s.messages,
            s.error_count(),
            self.total_errors,
            self.total_ops
        );
    }
}

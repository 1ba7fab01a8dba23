//! The per-executor registry and the hot-path recording functions.
//!
//! Each executor thread owns one [`Registry`] in a thread-local: recording is an array index and
//! an add — no lock, no allocation (histograms are pre-sized and never resize).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::names::{Counter, Gauge, Metric, Unit, COUNTER_SLOTS, GAUGE_SLOTS, MAX_SHARDS};

/// Significant decimal digits kept by every histogram.
pub const SIGFIG: u8 = 3;
/// Largest latency recorded (60 s, in µs); longer ones are clamped to it.
pub const MAX_MICROS: u64 = 60_000_000;
/// Largest count recorded in a count histogram; larger ones are clamped to it.
pub const MAX_COUNT: u64 = 1_000_000;

/// A fresh, fixed-range histogram for a metric of this unit (auto-resize off).
pub fn new_histogram(unit: Unit) -> Histogram<u64> {
    let high = match unit {
        Unit::Micros => MAX_MICROS,
        Unit::Count => MAX_COUNT,
    };
    // Constant, valid bounds: this cannot fail.
    let mut h = Histogram::new_with_bounds(1, high, SIGFIG).expect("constant histogram bounds");
    h.auto(false);
    h
}

/// One executor's histograms, counters and gauges.
pub struct Registry {
    /// Indexed by `Metric as usize`.
    pub(super) histograms: Vec<Histogram<u64>>,
    /// Exact sum of recorded values per metric (the histogram only has bucket values).
    pub(super) sums: Vec<u64>,
    pub(super) counters: [u64; COUNTER_SLOTS],
    /// Deliveries per shard id, `MAX_SHARDS` long.
    pub(super) deliveries: Vec<u64>,
    pub(super) gauges: [i64; GAUGE_SLOTS],
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry with every histogram allocated up front.
    pub fn new() -> Registry {
        Registry {
            histograms: Metric::ALL
                .iter()
                .map(|m| new_histogram(m.unit()))
                .collect(),
            sums: vec![0; Metric::COUNT],
            counters: [0; COUNTER_SLOTS],
            deliveries: vec![0; MAX_SHARDS],
            gauges: [0; GAUGE_SLOTS],
        }
    }

    /// Records a duration (in µs, clamped to 60 s) for a [`Unit::Micros`] metric.
    pub fn record(&mut self, metric: Metric, elapsed: Duration) {
        debug_assert_eq!(
            metric.unit(),
            Unit::Micros,
            "{} is not a latency",
            metric.name()
        );
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.record_value(metric, us);
    }

    /// Records a raw value in the metric's unit (µs or count), clamped to its range.
    pub fn record_value(&mut self, metric: Metric, value: u64) {
        let i = metric as usize;
        if let (Some(h), Some(s)) = (self.histograms.get_mut(i), self.sums.get_mut(i)) {
            h.saturating_record(value);
            *s = s.saturating_add(value);
        }
    }

    /// Adds `n` to a counter.
    pub fn incr(&mut self, counter: Counter, n: u64) {
        let slot = match counter {
            Counter::Deliveries(shard) => match self.deliveries.get_mut(shard as usize) {
                Some(c) => {
                    *c = c.wrapping_add(n);
                    return;
                }
                None => Counter::DeliveriesShardOverflow.slot(),
            },
            other => other.slot(),
        };
        if let Some(c) = slot.and_then(|s| self.counters.get_mut(s)) {
            *c = c.wrapping_add(n);
        }
    }

    /// Adds `delta` (may be negative) to a gauge.
    pub fn gauge_add(&mut self, gauge: Gauge, delta: i64) {
        if let Some(g) = self.gauges.get_mut(gauge.slot()) {
            *g = g.wrapping_add(delta);
        }
    }

    /// Number of values recorded for a metric.
    pub fn count(&self, metric: Metric) -> u64 {
        self.histograms.get(metric as usize).map_or(0, |h| h.len())
    }

    /// Current value of a counter.
    pub fn counter(&self, counter: Counter) -> u64 {
        match counter {
            Counter::Deliveries(shard) => self.deliveries.get(shard as usize).copied().unwrap_or(0),
            other => other
                .slot()
                .and_then(|s| self.counters.get(s))
                .copied()
                .unwrap_or(0),
        }
    }

    /// Zeroes everything; histograms that hold data are replaced by fresh ones (cheaper than
    /// touching every bucket of the untouched ones).
    pub fn reset(&mut self) {
        for (h, m) in self.histograms.iter_mut().zip(Metric::ALL) {
            if !h.is_empty() {
                *h = new_histogram(m.unit());
            }
        }
        self.sums.iter_mut().for_each(|s| *s = 0);
        self.counters = [0; COUNTER_SLOTS];
        self.deliveries.iter_mut().for_each(|d| *d = 0);
        // Gauges are levels, not rates: a reset must not forget open connections.
    }
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::new());
}

/// Runs `f` on this thread's registry (silently skipped during thread teardown).
pub fn with_local<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    REGISTRY.try_with(|r| f(&mut r.borrow_mut())).ok()
}

/// Allocates this thread's registry now (call at executor start so the first request does
/// not pay for it).
pub fn init() {
    with_local(|_| ());
}

/// Records a duration for `metric` on this executor.
pub fn record(metric: Metric, elapsed: Duration) {
    with_local(|r| r.record(metric, elapsed));
}

/// Records a raw value (µs, or a count for [`Unit::Count`] metrics) on this executor.
pub fn record_value(metric: Metric, value: u64) {
    with_local(|r| r.record_value(metric, value));
}

/// Adds `n` to a counter on this executor.
pub fn incr(counter: Counter, n: u64) {
    with_local(|r| r.incr(counter, n));
}

/// Adds `delta` to a gauge on this executor.
pub fn gauge_add(gauge: Gauge, delta: i64) {
    with_local(|r| r.gauge_add(gauge, delta));
}

/// Starts a [`Timer`].
pub fn start() -> Timer {
    Timer {
        start: Instant::now(),
    }
}

/// Measures one operation: `let t = metrics::start(); ...; t.stop(Metric::SmtpData);`.
#[derive(Clone, Copy, Debug)]
#[must_use = "a Timer records nothing unless stopped"]
pub struct Timer {
    start: Instant,
}

impl Timer {
    /// Time since the timer started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records the elapsed time for `metric` on this executor and returns it.
    pub fn stop(self, metric: Metric) -> Duration {
        let d = self.elapsed();
        record(metric, d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{Listener, RejectReason};

    #[test]
    fn records_and_clamps() {
        let mut r = Registry::new();
        r.record(Metric::SmtpData, Duration::from_micros(250));
        r.record(Metric::SmtpData, Duration::from_secs(3600));
        r.record_value(Metric::StorageGroupCommitSize, 5_000_000);
        assert_eq!(r.count(Metric::SmtpData), 2);
        let h = &r.histograms[Metric::SmtpData as usize];
        assert!(h.max() >= MAX_MICROS && h.max() < MAX_MICROS + MAX_MICROS / 500);
        let g = &r.histograms[Metric::StorageGroupCommitSize as usize];
        assert!(g.max() >= MAX_COUNT && g.max() < MAX_COUNT + MAX_COUNT / 500);
        assert_eq!(r.sums[Metric::SmtpData as usize], 250 + 3_600_000_000);
    }

    #[test]
    fn counters_and_overflow_shard() {
        let mut r = Registry::new();
        r.incr(Counter::ConnectionsTotal(Listener::Imaps), 2);
        r.incr(Counter::MessagesRejected(RejectReason::Smuggling), 1);
        r.incr(Counter::Deliveries(7), 3);
        r.incr(Counter::Deliveries(MAX_SHARDS as u32), 4);
        r.gauge_add(Gauge::ConnectionsCurrent(Listener::Pop3), -1);
        assert_eq!(r.counter(Counter::ConnectionsTotal(Listener::Imaps)), 2);
        assert_eq!(r.counter(Counter::ConnectionsTotal(Listener::Imap)), 0);
        assert_eq!(
            r.counter(Counter::MessagesRejected(RejectReason::Smuggling)),
            1
        );
        assert_eq!(r.counter(Counter::Deliveries(7)), 3);
        assert_eq!(r.counter(Counter::DeliveriesShardOverflow), 4);
        assert_eq!(
            r.gauges[Gauge::ConnectionsCurrent(Listener::Pop3).slot()],
            -1
        );
        r.reset();
        assert_eq!(r.counter(Counter::Deliveries(7)), 0);
        assert_eq!(r.counter(Counter::DeliveriesShardOverflow), 0);
        assert_eq!(
            r.gauges[Gauge::ConnectionsCurrent(Listener::Pop3).slot()],
            -1
        );
    }

    #[test]
    fn thread_local_timer_records() {
        let t = start();
        let d = t.stop(Metric::ImapNoop);
        record(Metric::ImapNoop, d);
        incr(Counter::AuthFailures, 1);
        assert_eq!(with_local(|r| r.count(Metric::ImapNoop)), Some(2));
        assert_eq!(with_local(|r| r.counter(Counter::AuthFailures)), Some(1));
    }
}

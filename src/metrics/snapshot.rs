//! Snapshots of one executor's registry, and merging them into a server-wide view.
//!
//! Histograms travel in the HdrHistogram V2 format (compact: empty buckets are run-length
//! encoded), so a snapshot of a mostly idle executor is small. Merging happens only when
//! someone asks (`ringpost stats`, `/metrics`).

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::names::{Counter, Gauge, Metric, COUNTER_SLOTS, GAUGE_SLOTS};
use super::registry::{with_local, Registry};

/// One histogram of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// The metric's dotted name.
    pub metric: String,
    /// Exact sum of the recorded values.
    pub sum: u64,
    /// The histogram, HdrHistogram V2 serialized (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub v2: Vec<u8>,
}

/// One executor's metrics at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Histograms that hold at least one value.
    pub histograms: Vec<HistogramSnapshot>,
    /// Fixed counters, by [`Counter::slot`].
    pub counters: Vec<u64>,
    /// Deliveries per shard id, trailing zeros trimmed.
    pub deliveries: Vec<u64>,
    /// Gauges, by [`Gauge::slot`].
    pub gauges: Vec<i64>,
}

impl Snapshot {
    /// Snapshots this thread's registry; with `reset`, zeroes it afterwards (gauges are kept).
    pub fn take(reset: bool) -> Snapshot {
        with_local(|r| r.snapshot(reset)).unwrap_or_default()
    }

    /// Merges per-executor snapshots (one per executor) into one view.
    pub fn merge(snapshots: &[Snapshot]) -> Merged {
        let mut m = Merged::empty(snapshots.len());
        for s in snapshots {
            m.add(s);
        }
        m
    }
}

impl Registry {
    /// Snapshots this registry; with `reset`, zeroes it afterwards (gauges are kept).
    pub fn snapshot(&mut self, reset: bool) -> Snapshot {
        let mut histograms = Vec::new();
        let mut ser = V2Serializer::new();
        for ((h, sum), m) in self.histograms.iter().zip(&self.sums).zip(Metric::ALL) {
            if h.is_empty() {
                continue;
            }
            let mut v2 = Vec::new();
            match ser.serialize(h, &mut v2) {
                Ok(_) => histograms.push(HistogramSnapshot {
                    metric: m.name().to_owned(),
                    sum: *sum,
                    v2,
                }),
                // Only possible if a bucket count exceeded i64::MAX: a bug worth shouting about.
                Err(e) => tracing::error!(metric = m.name(), error = ?e, "histogram serialize"),
            }
        }
        let keep = self
            .deliveries
            .iter()
            .rposition(|&d| d != 0)
            .map_or(0, |i| i + 1);
        let snap = Snapshot {
            histograms,
            counters: self.counters.to_vec(),
            deliveries: self.deliveries.get(..keep).unwrap_or_default().to_vec(),
            gauges: self.gauges.to_vec(),
        };
        if reset {
            self.reset();
        }
        snap
    }
}

/// Several executors' snapshots added together.
#[derive(Clone, Debug)]
pub struct Merged {
    /// How many snapshots (executors) went in.
    pub executors: usize,
    /// Indexed by `Metric as usize`; `None` where no executor recorded anything.
    histograms: Vec<Option<Histogram<u64>>>,
    sums: Vec<u64>,
    counters: [u64; COUNTER_SLOTS],
    deliveries: Vec<u64>,
    gauges: [i64; GAUGE_SLOTS],
    /// Histograms that could not be decoded or named (a bug; also logged).
    pub merge_errors: u64,
}

impl Merged {
    /// Nothing recorded, from `executors` executors.
    pub fn empty(executors: usize) -> Merged {
        Merged {
            executors,
            histograms: vec![None; Metric::COUNT],
            sums: vec![0; Metric::COUNT],
            counters: [0; COUNTER_SLOTS],
            deliveries: Vec::new(),
            gauges: [0; GAUGE_SLOTS],
            merge_errors: 0,
        }
    }

    /// Adds one snapshot (does not change `executors`).
    pub fn add(&mut self, s: &Snapshot) {
        for hs in &s.histograms {
            if let Err(e) = self.add_histogram(hs) {
                self.merge_errors += 1;
                tracing::error!(metric = %hs.metric, error = %e, "cannot merge histogram");
            }
        }
        for (c, v) in self.counters.iter_mut().zip(&s.counters) {
            *c = c.wrapping_add(*v);
        }
        if self.deliveries.len() < s.deliveries.len() {
            self.deliveries.resize(s.deliveries.len(), 0);
        }
        for (d, v) in self.deliveries.iter_mut().zip(&s.deliveries) {
            *d = d.wrapping_add(*v);
        }
        for (g, v) in self.gauges.iter_mut().zip(&s.gauges) {
            *g = g.wrapping_add(*v);
        }
    }

    fn add_histogram(&mut self, hs: &HistogramSnapshot) -> Result<(), MergeError> {
        let metric = Metric::from_name(&hs.metric)
            .ok_or_else(|| MergeError::UnknownMetric(hs.metric.clone()))?;
        let i = metric as usize;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut hs.v2.as_slice())
            .map_err(|e| MergeError::Decode(format!("{e:?}")))?;
        let (Some(slot), Some(sum)) = (self.histograms.get_mut(i), self.sums.get_mut(i)) else {
            return Err(MergeError::UnknownMetric(hs.metric.clone()));
        };
        match slot {
            Some(acc) => acc.add(&h).map_err(|e| MergeError::Add(format!("{e:?}")))?,
            None => {
                let mut h = h;
                h.auto(false);
                *slot = Some(h);
            }
        }
        *sum = sum.saturating_add(hs.sum);
        Ok(())
    }

    /// The merged histogram of a metric, if anything was recorded.
    pub fn histogram(&self, metric: Metric) -> Option<&Histogram<u64>> {
        self.histograms
            .get(metric as usize)
            .and_then(Option::as_ref)
    }

    /// Number of values recorded for a metric.
    pub fn count(&self, metric: Metric) -> u64 {
        self.histogram(metric).map_or(0, |h| h.len())
    }

    /// Exact sum of the values recorded for a metric.
    pub fn sum(&self, metric: Metric) -> u64 {
        self.sums.get(metric as usize).copied().unwrap_or(0)
    }

    /// Percentiles of a metric, or `None` if nothing was recorded.
    pub fn stats(&self, metric: Metric) -> Option<Percentiles> {
        let h = self.histogram(metric).filter(|h| !h.is_empty())?;
        Some(Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }

    /// Total of a counter over all executors.
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

    /// Per-shard delivery totals, by shard id (trailing zero shards omitted).
    pub fn deliveries(&self) -> &[u64] {
        &self.deliveries
    }

    /// Sum of a gauge over all executors.
    pub fn gauge(&self, gauge: Gauge) -> i64 {
        self.gauges.get(gauge.slot()).copied().unwrap_or(0)
    }
}

/// Count and percentiles of one merged histogram (values in the metric's unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value (to the histogram's precision).
    pub max: u64,
}

/// Why a snapshot's histogram could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The name is not a [`Metric`] of this binary.
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    /// The V2 bytes did not decode.
    #[error("cannot decode histogram: {0}")]
    Decode(String),
    /// The histogram's range does not fit the accumulator.
    #[error("cannot add histogram: {0}")]
    Add(String),
}

/// Serde adapter: bytes as one base64 string (JSON arrays of numbers would be 3-4x larger).
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{Listener, RejectReason};
    use std::time::Duration;

    /// Three "executors": values 1..=300 µs of smtp.data split by residue mod 3, so the merged
    /// histogram has each value exactly once.
    fn three() -> Vec<Snapshot> {
        let mut regs: Vec<Registry> = (0..3).map(|_| Registry::new()).collect();
        for v in 1..=300u64 {
            let r = &mut regs[(v % 3) as usize];
            r.record(Metric::SmtpData, Duration::from_micros(v));
        }
        regs[0].record_value(Metric::StorageGroupCommitSize, 4);
        regs[2].record_value(Metric::StorageGroupCommitSize, 8);
        regs[1].record(Metric::ImapFetch, Duration::from_millis(1500));
        for (i, r) in regs.iter_mut().enumerate() {
            r.incr(Counter::MessagesAccepted, 10 * (i as u64 + 1));
            r.incr(Counter::Deliveries(i as u32 * 2), 1);
            r.incr(Counter::MessagesRejected(RejectReason::Relay), 1);
            r.gauge_add(Gauge::ConnectionsCurrent(Listener::Imap), 1);
        }
        // A connection that moved executors: opened on 0, closed on 1.
        regs[0].gauge_add(Gauge::ConnectionsCurrent(Listener::Imaps), 1);
        regs[1].gauge_add(Gauge::ConnectionsCurrent(Listener::Imaps), -1);
        regs.iter_mut().map(|r| r.snapshot(false)).collect()
    }

    #[test]
    fn merge_gives_exact_percentiles_and_totals() {
        let m = Snapshot::merge(&three());
        assert_eq!(m.executors, 3);
        assert_eq!(m.merge_errors, 0);
        let p = m.stats(Metric::SmtpData).expect("smtp.data recorded");
        assert_eq!(
            p,
            Percentiles {
                count: 300,
                p50: 150,
                p90: 270,
                p99: 297,
                p999: 300,
                max: 300
            }
        );
        assert_eq!(m.sum(Metric::SmtpData), 300 * 301 / 2);
        let f = m.stats(Metric::ImapFetch).expect("imap.fetch recorded");
        assert_eq!(f.count, 1);
        // 3 significant digits: within 0.1 %.
        assert!(f.max.abs_diff(1_500_000) <= 1_500, "{}", f.max);
        let g = m
            .stats(Metric::StorageGroupCommitSize)
            .expect("group commit");
        assert_eq!((g.count, g.p50, g.max), (2, 4, 8));
        assert_eq!(m.stats(Metric::Pop3Retr), None);
        assert_eq!(m.counter(Counter::MessagesAccepted), 60);
        assert_eq!(m.counter(Counter::MessagesRejected(RejectReason::Relay)), 3);
        assert_eq!(m.counter(Counter::Deliveries(4)), 1);
        assert_eq!(m.counter(Counter::Deliveries(1)), 0);
        assert_eq!(m.deliveries(), &[1, 0, 1, 0, 1]);
        assert_eq!(m.gauge(Gauge::ConnectionsCurrent(Listener::Imap)), 3);
        assert_eq!(m.gauge(Gauge::ConnectionsCurrent(Listener::Imaps)), 0);
    }

    #[test]
    fn snapshot_survives_json() {
        let snaps = three();
        let text = serde_json::to_string(&snaps).expect("serialize");
        let back: Vec<Snapshot> = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, snaps);
        assert_eq!(Snapshot::merge(&back).count(Metric::SmtpData), 300);
    }

    #[test]
    fn reset_clears_but_keeps_gauges() {
        let mut r = Registry::new();
        r.record(Metric::SmtpRcpt, Duration::from_micros(42));
        r.incr(Counter::BytesIn, 100);
        r.gauge_add(Gauge::ConnectionsCurrent(Listener::Smtp), 2);
        let first = r.snapshot(true);
        assert_eq!(Snapshot::merge(&[first]).count(Metric::SmtpRcpt), 1);
        let second = Snapshot::merge(&[r.snapshot(false)]);
        assert_eq!(second.count(Metric::SmtpRcpt), 0);
        assert_eq!(second.counter(Counter::BytesIn), 0);
        assert_eq!(second.gauge(Gauge::ConnectionsCurrent(Listener::Smtp)), 2);
        // The registry still records after a reset.
        r.record(Metric::SmtpRcpt, Duration::from_micros(7));
        assert_eq!(
            Snapshot::merge(&[r.snapshot(false)])
                .stats(Metric::SmtpRcpt)
                .map(|p| p.max),
            Some(7)
        );
    }

    #[test]
    fn bad_histograms_are_counted_not_fatal() {
        let mut snaps = three();
        snaps[0].histograms.push(HistogramSnapshot {
            metric: "nope.x".into(),
            sum: 0,
            v2: vec![],
        });
        snaps[1].histograms.push(HistogramSnapshot {
            metric: "smtp.mail".into(),
            sum: 0,
            v2: vec![1, 2, 3],
        });
        let m = Snapshot::merge(&snaps);
        assert_eq!(m.merge_errors, 2);
        assert_eq!(m.count(Metric::SmtpData), 300);
        assert_eq!(m.count(Metric::SmtpMail), 0);
    }

    #[test]
    fn thread_local_take() {
        super::super::registry::record(Metric::Pop3Stat, Duration::from_micros(9));
        let m = Snapshot::merge(&[Snapshot::take(true)]);
        assert_eq!(m.count(Metric::Pop3Stat), 1);
        assert_eq!(
            Snapshot::merge(&[Snapshot::take(false)]).count(Metric::Pop3Stat),
            0
        );
    }
}

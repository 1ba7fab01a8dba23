//! The `stats --json` object (INTERFACE.md) and the human table rendered from it.
//!
//! The admin socket sends this JSON; `ringpost stats` parses it back into a [`Report`] and
//! renders the table, so client and server share one wire format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::names::{Counter, Gauge, Metric, Unit};
use super::snapshot::{Merged, Percentiles};

/// Count and latency percentiles of one command, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStats {
    /// Number of times it ran.
    pub count: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest latency.
    pub max_us: u64,
}

/// Count and percentiles of a size histogram (plain counts, not time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeStats {
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
    /// Largest value.
    pub max: u64,
}

/// `{"executors": N, "commands": {..}, "sizes": {..}, "counters": {..}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Number of executors merged.
    pub executors: usize,
    /// Every latency metric by dotted name (zeros where nothing was recorded).
    pub commands: BTreeMap<String, CommandStats>,
    /// Count histograms (e.g. `storage.group_commit_size`, records per commit).
    #[serde(default)]
    pub sizes: BTreeMap<String, SizeStats>,
    /// Counters and gauges by dotted name; per-shard deliveries only for shards with any.
    pub counters: BTreeMap<String, u64>,
}

impl Merged {
    /// The `stats --json` view of this merge.
    pub fn report(&self) -> Report {
        let mut r = Report {
            executors: self.executors,
            ..Report::default()
        };
        for &m in Metric::ALL {
            let p = self.stats(m).unwrap_or(Percentiles {
                count: 0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
            });
            let name = m.name().to_owned();
            match m.unit() {
                Unit::Micros => {
                    r.commands.insert(
                        name,
                        CommandStats {
                            count: p.count,
                            p50_us: p.p50,
                            p90_us: p.p90,
                            p99_us: p.p99,
                            p999_us: p.p999,
                            max_us: p.max,
                        },
                    );
                }
                Unit::Count => {
                    r.sizes.insert(
                        name,
                        SizeStats {
                            count: p.count,
                            p50: p.p50,
                            p90: p.p90,
                            p99: p.p99,
                            p999: p.p999,
                            max: p.max,
                        },
                    );
                }
            }
        }
        for c in Counter::fixed() {
            r.counters.insert(c.name(), self.counter(c));
        }
        for (shard, &n) in self.deliveries().iter().enumerate() {
            if n > 0 {
                r.counters
                    .insert(Counter::Deliveries(shard as u32).name(), n);
            }
        }
        for g in Gauge::all() {
            // Executors snapshot at slightly different moments, so a connection that just moved
            // can make the sum dip below zero for an instant; zero is the truth then.
            r.counters
                .insert(g.name(), u64::try_from(self.gauge(g)).unwrap_or(0));
        }
        if self.merge_errors > 0 {
            r.counters
                .insert("metrics.merge_errors".into(), self.merge_errors);
        }
        r
    }

    /// The `stats --json` object as text.
    pub fn render_json(&self) -> String {
        self.report().render_json()
    }

    /// The human table of `ringpost stats`.
    pub fn render_table(&self) -> String {
        self.report().render_table()
    }
}

impl Report {
    /// As JSON text (one line).
    pub fn render_json(&self) -> String {
        // Plain maps of strings and integers: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Aligned columns: command, count, p50, p90, p99, p99.9, max (only commands that ran),
    /// then size histograms, then the counters.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let plural = if self.executors == 1 { "" } else { "s" };
        let _ = writeln!(out, "ringpost stats: {} executor{plural}", self.executors);
        let rows: Vec<(&String, &CommandStats)> =
            self.commands.iter().filter(|(_, s)| s.count > 0).collect();
        let width = rows
            .iter()
            .map(|(n, _)| n.len())
            .chain(self.sizes.keys().map(String::len))
            .chain(self.counters.keys().map(String::len))
            .max()
            .unwrap_or(0)
            .max("command".len());
        out.push('\n');
        if rows.is_empty() {
            let _ = writeln!(out, "no commands recorded");
        } else {
            let _ = writeln!(
                out,
                "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "command", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for (name, s) in rows {
                let _ = writeln!(
                    out,
                    "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    name,
                    s.count,
                    human_us(s.p50_us),
                    human_us(s.p90_us),
                    human_us(s.p99_us),
                    human_us(s.p999_us),
                    human_us(s.max_us)
                );
            }
        }
        let sizes: Vec<_> = self.sizes.iter().filter(|(_, s)| s.count > 0).collect();
        if !sizes.is_empty() {
            out.push('\n');
            let _ = writeln!(
                out,
                "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "size (count)", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for (name, s) in sizes {
                let _ = writeln!(
                    out,
                    "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    name, s.count, s.p50, s.p90, s.p99, s.p999, s.max
                );
            }
        }
        out.push('\n');
        let _ = writeln!(out, "{:<width$} {:>10}", "counter", "value");
        for (name, v) in &self.counters {
            let _ = writeln!(out, "{name:<width$} {v:>10}");
        }
        out
    }
}

/// A latency in µs with a human unit: `834µs`, `12.3ms`, `1.52s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 999_500 {
        three_digits(us as f64 / 1e3, "ms")
    } else {
        three_digits(us as f64 / 1e6, "s")
    }
}

/// About three significant digits, like the histograms keep (decided on the rounded value, so
/// 9.996 prints as `10.0`, not `10.00`).
fn three_digits(v: f64, unit: &str) -> String {
    let decimals = if v < 9.995 {
        2
    } else if v < 99.95 {
        1
    } else {
        0
    };
    format!("{v:.decimals$}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{Listener, RejectReason};
    use crate::metrics::registry::Registry;
    use crate::metrics::snapshot::Snapshot;
    use std::time::Duration;

    fn merged() -> Merged {
        let mut a = Registry::new();
        let mut b = Registry::new();
        for v in [100u64, 200, 300] {
            a.record(Metric::SmtpData, Duration::from_micros(v));
        }
        b.record(Metric::SmtpData, Duration::from_micros(2_500));
        b.record(Metric::ImapUidFetch, Duration::from_millis(1_200));
        b.record_value(Metric::StorageGroupCommitSize, 12);
        a.incr(Counter::MessagesAccepted, 4);
        b.incr(Counter::MessagesRejected(RejectReason::Size), 1);
        b.incr(Counter::Deliveries(3), 2);
        a.gauge_add(Gauge::ConnectionsCurrent(Listener::Imap), 1);
        Snapshot::merge(&[a.snapshot(false), b.snapshot(false)])
    }

    #[test]
    fn json_shape_matches_interface() {
        let text = merged().render_json();
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.get("executors").and_then(|e| e.as_u64()), Some(2));
        let cmds = obj
            .get("commands")
            .and_then(|c| c.as_object())
            .expect("commands");
        assert_eq!(
            cmds.len(),
            Metric::ALL
                .iter()
                .filter(|m| m.unit() == Unit::Micros)
                .count()
        );
        for (name, stats) in cmds {
            let keys: Vec<&str> = stats
                .as_object()
                .expect("command object")
                .keys()
                .map(String::as_str)
                .collect();
            let mut want = ["count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"];
            want.sort_unstable();
            assert_eq!(keys, want, "{name}");
        }
        let data = &cmds["smtp.data"];
        assert_eq!(data["count"], 4);
        assert_eq!(data["p50_us"], 200);
        let max = data["max_us"].as_u64().expect("max");
        assert!(max.abs_diff(2_500) <= 3, "{max}");
        assert_eq!(cmds["imap.uid_fetch"]["count"], 1);
        assert_eq!(cmds["pop3.retr"]["count"], 0);
        assert!(!cmds.contains_key("storage.group_commit_size"));
        assert_eq!(v["sizes"]["storage.group_commit_size"]["p50"], 12);
        let counters = obj
            .get("counters")
            .and_then(|c| c.as_object())
            .expect("counters");
        assert_eq!(counters["messages.accepted"], 4);
        assert_eq!(counters["messages.rejected.size"], 1);
        assert_eq!(counters["deliveries.shard.3"], 2);
        assert!(!counters.contains_key("deliveries.shard.0"));
        assert_eq!(counters["connections.current.imap"], 1);
        assert_eq!(counters["connections.total.pop3s"], 0);
        let back: Report = serde_json::from_str(&text).expect("Report parses");
        assert_eq!(back, merged().report());
    }

    #[test]
    fn table_lists_only_commands_that_ran() {
        let t = merged().render_table();
        assert!(t.starts_with("ringpost stats: 2 executors\n"), "{t}");
        let data = t
            .lines()
            .find(|l| l.starts_with("smtp.data "))
            .expect("smtp.data row");
        let cols: Vec<&str> = data.split_whitespace().collect();
        assert_eq!(cols.first().copied(), Some("smtp.data"));
        assert_eq!(cols.get(1).copied(), Some("4"));
        assert_eq!(cols.get(2).copied(), Some("200µs"));
        assert_eq!(cols.get(6).copied(), Some("2.50ms"));
        assert!(t.contains("imap.uid_fetch"));
        assert!(!t.contains("pop3.retr"));
        assert!(t
            .lines()
            .any(|l| l.starts_with("storage.group_commit_size ")));
        assert!(t
            .lines()
            .any(|l| l.split_whitespace().eq(["messages.accepted", "4"])));
        // Columns are aligned: every command row has the same char width.
        let widths: Vec<usize> = t
            .lines()
            .filter(|l| {
                l.starts_with("smtp.") || l.starts_with("imap.") || l.starts_with("command")
            })
            .map(|l| l.chars().count())
            .collect();
        assert!(
            widths.len() == 3 && widths.iter().all(|w| *w == widths[0]),
            "{widths:?}"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(0), "0µs");
        assert_eq!(human_us(999), "999µs");
        assert_eq!(human_us(1_234), "1.23ms");
        assert_eq!(human_us(45_600), "45.6ms");
        assert_eq!(human_us(456_000), "456ms");
        assert_eq!(human_us(1_520_000), "1.52s");
        assert_eq!(human_us(9_996), "10.0ms");
        assert_eq!(human_us(999_999), "1.00s");
        assert_eq!(human_us(120_000_000), "120s");
    }

    #[test]
    fn empty_table_says_so() {
        let t = Merged::empty(4).render_table();
        assert!(t.contains("no commands recorded"));
        assert!(t.contains("messages.accepted"));
    }
}

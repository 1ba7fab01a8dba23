//! Prometheus text exposition format 0.0.4.
//!
//! Latencies are summaries in seconds (Prometheus's base unit), one family per protocol or
//! subsystem with a `command` label: `ringpost_smtp_duration_seconds{command="data",
//! quantile="0.99"}`. Every metric is always exposed (quantiles NaN while empty) so series do
//! not appear and vanish. Counters are `ringpost_*_total`; `stats reset` looks like a restart
//! to Prometheus, which `rate()` handles.

use std::fmt::Write as _;

use super::names::{Counter, Gauge, Metric, Unit};
use super::snapshot::Merged;

/// Quantiles exposed for every summary.
const QUANTILES: [(&str, f64); 4] = [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("0.999", 0.999)];

/// Content-Type of [`Merged::render_prometheus`] output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Merged {
    /// The whole exposition: summaries, counters, gauges.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(32 * 1024);
        self.write_latency_summaries(&mut out);
        self.write_count_summaries(&mut out);
        write_header(
            &mut out,
            "ringpost_executors",
            "gauge",
            "Executors (cores) whose metrics were merged.",
        );
        let _ = writeln!(out, "ringpost_executors {}", self.executors);
        self.write_counters(&mut out);
        self.write_gauges(&mut out);
        if self.merge_errors > 0 {
            write_header(
                &mut out,
                "ringpost_metrics_merge_errors",
                "gauge",
                "Histograms that could not be merged in this scrape (a bug).",
            );
            let _ = writeln!(out, "ringpost_metrics_merge_errors {}", self.merge_errors);
        }
        out
    }

    fn write_latency_summaries(&self, out: &mut String) {
        let mut current_group = "";
        for &m in Metric::ALL.iter().filter(|m| m.unit() == Unit::Micros) {
            let family = format!("ringpost_{}_duration_seconds", sanitize(m.group()));
            if m.group() != current_group {
                current_group = m.group();
                let help = format!("Latency of {} operations in seconds.", m.group());
                write_header(out, &family, "summary", &help);
            }
            let label = format!("command=\"{}\"", escape_label(m.command()));
            self.write_summary(out, &family, &label, m, 1e6);
        }
    }

    fn write_count_summaries(&self, out: &mut String) {
        for &m in Metric::ALL.iter().filter(|m| m.unit() == Unit::Count) {
            let family = format!("ringpost_{}", sanitize(m.name()));
            let help = format!("Distribution of {} (a count, not a time).", m.name());
            write_header(out, &family, "summary", &help);
            self.write_summary(out, &family, "", m, 1.0);
        }
    }

    /// Quantile lines, `_sum` and `_count`; stored values are divided by `divisor` (µs → s:
    /// dividing, correctly rounded, prints 500 µs as `0.0005` where multiplying by 1e-6 would not).
    fn write_summary(&self, out: &mut String, family: &str, label: &str, m: Metric, divisor: f64) {
        let sep = if label.is_empty() { "" } else { "," };
        let h = self.histogram(m).filter(|h| !h.is_empty());
        for (text, q) in QUANTILES {
            let v = h.map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / divisor);
            let _ = writeln!(
                out,
                "{family}{{{label}{sep}quantile=\"{text}\"}} {}",
                float(v)
            );
        }
        let braces = if label.is_empty() {
            String::new()
        } else {
            format!("{{{label}}}")
        };
        let _ = writeln!(
            out,
            "{family}_sum{braces} {}",
            float(self.sum(m) as f64 / divisor)
        );
        let _ = writeln!(out, "{family}_count{braces} {}", self.count(m));
    }

    fn write_counters(&self, out: &mut String) {
        let mut current = "";
        for c in Counter::fixed() {
            let (family, label) = c.prometheus();
            let name = format!("ringpost_{family}");
            if family != current {
                current = family;
                write_header(out, &name, "counter", counter_help(c));
            }
            write_sample(
                out,
                &name,
                label.as_ref().map(|(k, v)| (*k, v.as_str())),
                self.counter(c),
            );
        }
        let mut header = false;
        for (shard, &n) in self.deliveries().iter().enumerate() {
            if n == 0 {
                continue;
            }
            let c = Counter::Deliveries(shard as u32);
            let (family, label) = c.prometheus();
            let name = format!("ringpost_{family}");
            if !header {
                header = true;
                write_header(out, &name, "counter", counter_help(c));
            }
            write_sample(out, &name, label.as_ref().map(|(k, v)| (*k, v.as_str())), n);
        }
    }

    fn write_gauges(&self, out: &mut String) {
        let mut current = "";
        for g in Gauge::all() {
            let (family, label) = g.prometheus();
            let name = format!("ringpost_{family}");
            if family != current {
                current = family;
                write_header(out, &name, "gauge", "Open connections per listener.");
            }
            // As in the JSON report: a momentary negative sum (a connection moving executors
            // between two snapshots) is reported as zero.
            write_sample(out, &name, Some(label), self.gauge(g).max(0));
        }
    }
}

fn counter_help(c: Counter) -> &'static str {
    match c {
        Counter::ConnectionsTotal(_) => "Connections accepted per listener.",
        Counter::MessagesAccepted => "Messages accepted.",
        Counter::MessagesRejected(_) => "Messages rejected, by reason.",
        Counter::BytesIn => "Bytes read from clients.",
        Counter::BytesOut => "Bytes written to clients.",
        Counter::Deliveries(_) => "Messages delivered, per storage shard.",
        Counter::DeliveriesShardOverflow => {
            "Messages delivered to shards without their own counter."
        }
        Counter::CrossShardHandoffs => "Deliveries handed to another executor.",
        Counter::AuthFailures => "Failed authentications.",
        Counter::TlsHandshakesFailed => "Failed TLS handshakes.",
    }
}

fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn write_sample(
    out: &mut String,
    name: &str,
    label: Option<(&str, &str)>,
    v: impl std::fmt::Display,
) {
    match label {
        Some((k, val)) => {
            let _ = writeln!(out, "{name}{{{k}=\"{}\"}} {v}", escape_label(val));
        }
        None => {
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

/// A metric-name fragment: anything outside `[a-zA-Z0-9_]` becomes `_` (dots included).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Label values escape backslash, double quote and newline.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escapes backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A Go-parsable float (`NaN`, `+Inf`, or Rust's shortest round-trip form).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{Listener, RejectReason};
    use crate::metrics::registry::Registry;
    use crate::metrics::snapshot::Snapshot;
    use std::collections::HashMap;
    use std::time::Duration;

    fn is_name(s: &str) -> bool {
        let mut b = s.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    }

    fn is_label_name(s: &str) -> bool {
        let mut b = s.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
    }

    fn is_value(s: &str) -> bool {
        matches!(s, "NaN" | "+Inf" | "-Inf") || s.parse::<f64>().is_ok()
    }

    /// Parses `{a="x",b="y"}` (no escapes needed by our values); returns the labels.
    fn labels(s: &str) -> Option<Vec<(String, String)>> {
        let inner = s.strip_prefix('{')?.strip_suffix('}')?;
        inner
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=')?;
                let v = v.strip_prefix('"')?.strip_suffix('"')?;
                (is_label_name(k) && !v.contains('"')).then(|| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// Checks every line against the 0.0.4 grammar; returns sample name → [(labels, value)].
    /// Sample name → [(labels, value)].
    type Samples = HashMap<String, Vec<(Vec<(String, String)>, String)>>;

    fn check(text: &str) -> Samples {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        let mut types: HashMap<String, String> = HashMap::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, tail) = (parts.next(), parts.next(), parts.next());
                let name = name.unwrap_or_default();
                assert!(is_name(name), "bad name in {line:?}");
                match kw {
                    Some("HELP") => assert!(tail.is_some_and(|t| !t.is_empty()), "{line:?}"),
                    Some("TYPE") => {
                        let t = tail.unwrap_or_default();
                        assert!(
                            ["counter", "gauge", "summary", "histogram", "untyped"].contains(&t),
                            "{line:?}"
                        );
                        assert!(
                            types.insert(name.to_owned(), t.to_owned()).is_none(),
                            "dup {line:?}"
                        );
                        assert!(!samples.contains_key(name), "TYPE after samples: {line:?}");
                    }
                    _ => panic!("bad comment {line:?}"),
                }
                continue;
            }
            let (head, value) = line.rsplit_once(' ').expect("sample has a value");
            assert!(is_value(value), "bad value in {line:?}");
            let (name, labels) = match head.find('{') {
                Some(i) => (
                    &head[..i],
                    labels(&head[i..]).unwrap_or_else(|| panic!("{line:?}")),
                ),
                None => (head, Vec::new()),
            };
            assert!(is_name(name), "bad name in {line:?}");
            let family = name
                .strip_suffix("_sum")
                .or(name.strip_suffix("_count"))
                .unwrap_or(name);
            assert!(
                types.contains_key(name) || types.get(family).is_some_and(|t| t == "summary"),
                "sample without TYPE: {line:?}"
            );
            samples
                .entry(name.to_owned())
                .or_default()
                .push((labels, value.to_owned()));
        }
        samples
    }

    fn find<'a>(s: &'a Samples, name: &str, want: &[(&str, &str)]) -> Option<&'a str> {
        s.get(name)?.iter().find_map(|(l, v)| {
            let same = l.len() == want.len()
                && want
                    .iter()
                    .all(|(k, wv)| l.iter().any(|(lk, lv)| lk == k && lv == wv));
            same.then_some(v.as_str())
        })
    }

    #[test]
    fn exposition_is_well_formed_with_quantiles() {
        let mut a = Registry::new();
        let mut b = Registry::new();
        for v in 1..=1000u64 {
            let r = if v % 2 == 0 { &mut a } else { &mut b };
            r.record(Metric::SmtpData, Duration::from_micros(v));
        }
        b.record_value(Metric::StorageGroupCommitSize, 3);
        a.incr(Counter::ConnectionsTotal(Listener::Submissions), 5);
        b.incr(Counter::MessagesRejected(RejectReason::UnknownUser), 2);
        a.incr(Counter::Deliveries(9), 1);
        b.gauge_add(Gauge::ConnectionsCurrent(Listener::Pop3s), 1);
        let text = Snapshot::merge(&[a.snapshot(false), b.snapshot(false)]).render_prometheus();
        let s = check(&text);

        let fam = "ringpost_smtp_duration_seconds";
        let data = |q| find(&s, fam, &[("command", "data"), ("quantile", q)]);
        assert_eq!(data("0.5"), Some("0.0005"));
        assert_eq!(data("0.9"), Some("0.0009"));
        assert_eq!(data("0.99"), Some("0.00099"));
        assert_eq!(data("0.999"), Some("0.000999"));
        assert_eq!(
            find(
                &s,
                "ringpost_smtp_duration_seconds_count",
                &[("command", "data")]
            ),
            Some("1000")
        );
        assert_eq!(
            find(
                &s,
                "ringpost_smtp_duration_seconds_sum",
                &[("command", "data")]
            ),
            Some("0.5005")
        );
        // Empty metrics are exposed with NaN quantiles and zero count.
        assert_eq!(
            find(
                &s,
                "ringpost_imap_duration_seconds",
                &[("command", "uid_fetch"), ("quantile", "0.5")]
            ),
            Some("NaN")
        );
        assert_eq!(
            find(
                &s,
                "ringpost_pop3_duration_seconds_count",
                &[("command", "retr")]
            ),
            Some("0")
        );
        assert_eq!(
            find(
                &s,
                "ringpost_storage_group_commit_size",
                &[("quantile", "0.5")]
            ),
            Some("3")
        );
        assert_eq!(
            find(
                &s,
                "ringpost_connections_total",
                &[("listener", "submissions")]
            ),
            Some("5")
        );
        assert_eq!(
            find(
                &s,
                "ringpost_messages_rejected_total",
                &[("reason", "unknown_user")]
            ),
            Some("2")
        );
        assert_eq!(
            find(&s, "ringpost_deliveries_total", &[("shard", "9")]),
            Some("1")
        );
        assert_eq!(
            find(&s, "ringpost_connections_current", &[("listener", "pop3s")]),
            Some("1")
        );
        assert_eq!(find(&s, "ringpost_executors", &[]), Some("2"));
        assert_eq!(find(&s, "ringpost_messages_accepted_total", &[]), Some("0"));
    }

    #[test]
    fn empty_merge_is_well_formed() {
        let s = check(&Merged::empty(1).render_prometheus());
        assert!(!s.contains_key("ringpost_deliveries_total"));
        assert_eq!(
            find(
                &s,
                "ringpost_tls_duration_seconds_count",
                &[("command", "handshake")]
            ),
            Some("0")
        );
    }

    #[test]
    fn escaping_and_names() {
        assert_eq!(sanitize("storage.group-commit"), "storage_group_commit");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.25), "0.25");
    }
}

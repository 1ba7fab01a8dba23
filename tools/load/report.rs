//! The end-of-run report: a text table of percentiles per operation, or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::cli::Settings;
use crate::runner::Outcome;
use crate::stats::Op;

/// Percentiles of one histogram, in microseconds.
struct Percentiles {
    count: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The JSON report.
pub fn json(settings: &Settings, out: &Outcome) -> Value {
    let secs = out.elapsed.as_secs_f64();
    let mut detail = Map::new();
    for op in Op::ALL {
        if let Some(h) = out.total.hists.get(&op) {
            let p = percentiles(h);
            detail.insert(
                op.name().to_string(),
                json!({
                    "count": p.count, "p50_us": p.p50, "p90_us": p.p90, "p99_us": p.p99,
                    "p999_us": p.p999, "max_us": p.max,
                }),
            );
        }
    }
    json!({
        "mode": settings.mode.name(),
        "target": settings.target,
        "connections": settings.connections,
        "executors": out.executors,
        "size": settings.size,
        "duration_s": (secs * 1000.0).round() / 1000.0,
        "ops": out.total.ops,
        "ops_per_s": (per_second(out.total.ops, secs) * 10.0).round() / 10.0,
        "messages": out.total.messages,
        "messages_per_s": (per_second(out.total.messages, secs) * 10.0).round() / 10.0,
        "errors": out.total.errors,
        "error_count": out.total.error_count(),
        "cut_off": out.cut_off,
        "ops_detail": detail,
    })
}

/// Percentiles of histograms read back from interval logs, by tag.
pub fn tags_json(hists: &BTreeMap<String, Histogram<u64>>) -> Value {
    let mut detail = Map::new();
    for (tag, h) in hists {
        let p = percentiles(h);
        detail.insert(
            tag.clone(),
            json!({
                "count": p.count, "p50_us": p.p50, "p90_us": p.p90, "p99_us": p.p99,
                "p999_us": p.p999, "max_us": p.max,
            }),
        );
    }
    json!({ "ops_detail": detail })
}

/// The percentile table of histograms read back from interval logs.
pub fn tags_text(hists: &BTreeMap<String, Histogram<u64>>) -> String {
    let mut s = format!(
        "{:<10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}   (latency in ms)\n",
        "op", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for (tag, h) in hists {
        let _ = writeln!(s, "{:<10} {}", tag, row(&percentiles(h)));
    }
    s
}

fn row(p: &Percentiles) -> String {
    format!(
        "{:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        p.count,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    )
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The human-readable report.
pub fn text(settings: &Settings, out: &Outcome) -> String {
    let secs = out.elapsed.as_secs_f64();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ringpost-load {} -> {}: {} connections on {} executors, {:.2} s{}",
        settings.mode.name(),
        settings.target,
        settings.connections,
        out.executors,
        secs,
        if out.cut_off {
            " (cut off at the hard cap)"
        } else {
            ""
        }
    );
    if settings.mode == crate::cli::Mode::Imap {
        let mix: Vec<String> = settings
            .mix
            .entries()
            .iter()
            .map(|(c, w)| format!("{}={w}", c.name()))
            .collect();
        let _ = writeln!(s, "mix {}", mix.join(","));
    }
    let _ = writeln!(
        s,
        "ops {} ({:.1}/s)   messages {} ({:.1}/s)   errors {}",
        out.total.ops,
        per_second(out.total.ops, secs),
        out.total.messages,
        per_second(out.total.messages, secs),
        out.total.error_count()
    );
    let _ = writeln!(
        s,
        "\n{:<10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}   (latency in ms)",
        "op", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for op in Op::ALL {
        if let Some(h) = out.total.hists.get(&op) {
            let _ = writeln!(s, "{:<10} {}", op.name(), row(&percentiles(h)));
        }
    }
    if !out.total.errors.is_empty() {
        let _ = writeln!(s, "\nerrors:");
        for (k, n) in &out.total.errors {
            let _ = writeln!(s, "  {k:<24} {n}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use crate::stats::{Recorder, Sample};
    use clap::Parser;

    /// `Args` on its own, for building settings in tests.
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        args: Args,
    }
    use std::time::Duration;

    fn outcome() -> (Settings, Outcome) {
        let settings = Only::try_parse_from([
            "x",
            "--target",
            "127.0.0.1:25",
            "--to",
            "a@b",
            "--duration",
            "2",
        ])
        .unwrap()
        .args
        .into_settings(crate::cli::Mode::Smtp)
        .unwrap();
        let r = Recorder::new(false);
        for us in [100, 200, 300, 400, 10_000] {
            r.record(Op::Data, Duration::from_micros(us));
        }
        r.add_ops(5);
        r.add_messages(5);
        r.error("rcpt.5xx");
        let mut total = Sample::default();
        total.merge(&r.take());
        (
            settings,
            Outcome {
                total,
                elapsed: Duration::from_secs(2),
                cut_off: false,
                executors: 1,
            },
        )
    }

    #[test]
    fn json_has_the_documented_shape() {
        let (s, o) = outcome();
        let v = json(&s, &o);
        assert_eq!(v["mode"], "smtp");
        assert_eq!(v["ops"], 5);
        assert_eq!(v["ops_per_s"], 2.5);
        assert_eq!(v["messages_per_s"], 2.5);
        assert_eq!(v["errors"]["rcpt.5xx"], 1);
        let data = &v["ops_detail"]["data"];
        assert_eq!(data["count"], 5);
        assert_eq!(data["p50_us"], 300);
        assert!(data["max_us"].as_u64().unwrap() >= 10_000);
        assert!(v["ops_detail"].get("mail").is_none());
    }

    #[test]
    fn text_lists_ops_and_errors() {
        let (s, o) = outcome();
        let t = text(&s, &o);
        assert!(t.contains("data"));
        assert!(t.contains("rcpt.5xx"));
        assert!(t.contains("2.5/s"));
    }
}

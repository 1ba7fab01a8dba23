//! `ringpost stats` against a running server, the Prometheus endpoint, and the load tool.

mod common;
use common::*;
use std::process::Command;

fn json_stats(s: &Server) -> serde_json::Value {
    let out = s.cli(&["stats", "--json"]);
    assert!(
        out.status.success(),
        "stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats --json prints one JSON object")
}

#[test]
fn stats_counts_known_commands() {
    let s = Server::new().start();
    let before = json_stats(&s);
    assert_eq!(before["executors"], 2);
    // Exactly 5 NOOPs and 3 messages over SMTP.
    let mut r = Raw::connect(s.ports.smtp);
    r.smtp_reply();
    r.send(b"EHLO stats.example\r\n");
    r.smtp_reply();
    for _ in 0..5 {
        r.send(b"NOOP\r\n");
        assert!(r.smtp_reply().starts_with("250"));
    }
    for i in 0..3 {
        r.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
        r.smtp_reply();
        r.smtp_reply();
        assert!(r.smtp_reply().starts_with("354"));
        r.send(format!("Subject: {i}\r\n\r\nbody\r\n.\r\n").as_bytes());
        assert!(r.smtp_reply().starts_with("250"));
    }
    r.send(b"QUIT\r\n");
    r.smtp_reply();
    let after = json_stats(&s);
    let count = |v: &serde_json::Value, k: &str| v["commands"][k]["count"].as_u64().unwrap_or(0);
    assert_eq!(
        count(&after, "smtp.data") - count(&before, "smtp.data"),
        3,
        "{after}"
    );
    assert_eq!(count(&after, "smtp.mail") - count(&before, "smtp.mail"), 3);
    assert_eq!(count(&after, "smtp.ehlo") - count(&before, "smtp.ehlo"), 1);
    assert!(count(&after, "storage.fdatasync") >= 1);
    for k in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(
            after["commands"]["smtp.data"][k].as_u64().is_some(),
            "{k} missing"
        );
    }
    assert_eq!(
        after["counters"]["messages.accepted"].as_u64(),
        Some(3),
        "{after}"
    );

    // The table is readable and the Prometheus endpoint serves the same metrics.
    let table = String::from_utf8_lossy(&s.cli(&["stats"]).stdout).to_string();
    assert!(
        table.contains("p99.9") && table.contains("smtp.data"),
        "{table}"
    );

    // --reset zeroes the histograms.
    assert!(s.cli(&["stats", "--reset"]).status.success());
    assert_eq!(count(&json_stats(&s), "smtp.data"), 0);
    let out = Command::new("curl")
        .args([
            "-sS",
            &format!("http://127.0.0.1:{}/metrics", s.ports.metrics),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ringpost_smtp_duration_seconds"), "{text}");
}

#[test]
fn load_tool_against_the_real_server() {
    let s = Server::new().start();
    let users = s.dir.path().join("users.txt");
    std::fs::write(
        &users,
        USERS
            .iter()
            .map(|(u, p)| format!("{u} {p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let load = env!("CARGO_BIN_EXE_ringpost-load");
    let run = |args: &[&str]| {
        let out = Command::new(load).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(v["ops_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
        let errors: u64 = v["errors"]
            .as_object()
            .map(|m| m.values().filter_map(|x| x.as_u64()).sum())
            .unwrap_or(0);
        assert_eq!(errors, 0, "{v}");
        v
    };
    let smtp = format!("127.0.0.1:{}", s.ports.smtp);
    run(&[
        "smtp",
        "--target",
        &smtp,
        "--connections",
        "8",
        "--duration",
        "2",
        "--to",
        "alice@example.org,bob@example.org",
        "--json",
    ]);
    let imaps = format!("127.0.0.1:{}", s.ports.imaps);
    run(&[
        "imap",
        "--target",
        &imaps,
        "--tls",
        "--connections",
        "4",
        "--duration",
        "2",
        "--users",
        users.to_str().unwrap(),
        "--json",
    ]);
    let pop3s = format!("127.0.0.1:{}", s.ports.pop3s);
    run(&[
        "pop3",
        "--target",
        &pop3s,
        "--tls",
        "--connections",
        "2",
        "--duration",
        "2",
        "--users",
        users.to_str().unwrap(),
        "--json",
    ]);
}

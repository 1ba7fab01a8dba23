//! kill -9 during a load of concurrent senders, then a restart: every message that got 250 is
//! there; kill -9 during IMAP and POP3 changes, then a restart: every acknowledged change is
//! there and nothing else. Also: a clean SIGTERM exits 0.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn kill9_under_load_loses_nothing_acknowledged() {
    let mut s = Server::new().start();
    let ids = s.dir.path().join("acked.txt");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/smtp_flood.py");
    let mut flood = Command::new("python3")
        .arg(&script)
        .arg(&ids)
        .args(["4", "16"])
        .envs(s.env())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    s.kill9();
    // Senders keep failing until their deadline; the acknowledged set is final now.
    let acked_at_kill = std::fs::read_to_string(&ids).unwrap_or_default();
    let _ = flood.wait();
    std::fs::write(&ids, acked_at_kill).unwrap();
    s.spawn();
    s.python("count_ids.py", &[ids.to_str().unwrap()]);
}

#[test]
fn kill9_during_mailbox_changes_keeps_every_acknowledged_one() {
    mailbox_changes_survive_kill9(Server::new(), &[]);
}

/// The same with 64 KiB log segments and most appended mail expunged again, so compaction
/// moves bodies and deletes segments while the changes go on and the kill comes.
#[test]
fn kill9_during_mailbox_changes_and_compaction_keeps_every_acknowledged_one() {
    let s = Server::with_small_segments();
    let compactions = mailbox_changes_survive_kill9(s, &["churn"]);
    assert!(compactions > 0, "compaction ran before the kill");
}

/// Starts `s`, runs crash_mailbox.py's load, kills the server with SIGKILL, restarts it and
/// verifies the mailboxes against what the clients saw acknowledged.
fn mailbox_changes_survive_kill9(mut s: Server, mode: &[&str]) -> usize {
    s.spawn();
    let state = s.dir.path().join("mailbox-state.json");
    let ready = s.dir.path().join("mailbox-ready");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/crash_mailbox.py");
    let mut load = Command::new("python3")
        .arg(&script)
        .arg("run")
        .args([&state, &ready])
        .arg("30")
        .args(mode)
        .envs(s.env())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    let compactions = s.log_text().matches("segment compacted").count();
    let status = load.wait().unwrap();
    assert!(status.success(), "crash_mailbox.py run: {status}");
    s.spawn();
    let out = s.python("crash_mailbox.py", &["verify", state.to_str().unwrap()]);
    println!("{}", tail(&out, 1));
    println!("compactions before the kill: {compactions}");
    compactions
}

#[test]
fn sigterm_stops_cleanly_and_state_survives() {
    let mut s = Server::new().start();
    s.python("imap_clients.py", &["full"]);
    let status = s.stop().expect("server was running");
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        s.log_text()
    );
    s.spawn();
    s.python("imap_clients.py", &["restart-check"]);
}

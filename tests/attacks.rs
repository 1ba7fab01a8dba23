//! Protocol attacks and abuse: garbage and stalled TLS handshakes, SMTP/POP3/IMAP input meant
//! to break parsers or exhaust memory, connection floods and slowloris. After every attack the
//! attacked session must have been refused or closed, every listener must still answer, and
//! the server must never have panicked. The attacks themselves live in
//! `tests/clients/attack_*.py` (each bounded in time and size).

mod common;

use common::{Raw, Server};
use std::time::Duration;

/// A server whose TLS handshakes must finish within 5 s, plus the given `[limits]` keys.
fn attack_server(limits: &str) -> Server {
    Server::with_extra_config(&format!("tls_handshake_timeout_secs = 5\n{limits}")).start()
}

fn pid(s: &Server) -> String {
    s.child.as_ref().expect("server running").id().to_string()
}

/// The server is still running and never panicked.
fn assert_survived(s: &mut Server) {
    let running = s
        .child
        .as_mut()
        .map(|c| c.try_wait().expect("wait").is_none());
    assert_eq!(running, Some(true), "server died:\n{}", s.log_text());
    let log = s.log_text();
    assert!(
        !log.contains("panicked"),
        "panic in the server log:\n{}",
        common::tail(&log, 60)
    );
}

#[test]
fn tls_garbage_stalled_handshakes_and_renegotiation() {
    let mut s = attack_server("");
    s.python("attack_tls.py", &[]);
    assert_survived(&mut s);
}

#[test]
fn smtp_attacks() {
    let limit = (1 << 20).to_string();
    let mut s = attack_server(&format!("max_message_size = {limit}"));
    s.python("attack_smtp.py", &[&limit]);
    assert_survived(&mut s);
}

#[test]
fn pop3_attacks() {
    let mut s = attack_server("");
    s.swaks_deliver("alice@example.org", "one line\ntwo lines\nthree lines");
    s.python("attack_pop3.py", &[]);
    assert_survived(&mut s);
}

#[test]
fn imap_attacks() {
    let mut s = attack_server("");
    s.swaks_deliver("alice@example.org", "a message to attack");
    s.python("attack_imap.py", &[]);
    assert_survived(&mut s);
}

/// Silent SMTP and POP3 sessions are closed after the idle timeout, also once a POP3 login
/// moved the connection to the executor that owns the account; IMAP ones before login.
#[test]
fn idle_sessions_time_out_everywhere() {
    let mut s = attack_server("idle_timeout_secs = 2");
    s.python("attack_idle.py", &["2"]);
    assert_survived(&mut s);
}

/// Mutated protocol commands on every listener for 15 s (fixed seed).
#[test]
fn wire_fuzzing() {
    let mut s = attack_server("");
    s.swaks_deliver("alice@example.org", "a message to fuzz with");
    s.python("attack_fuzz.py", &["15", "7"]);
    assert_survived(&mut s);
}

#[test]
fn password_guessing_floods() {
    let mut s = attack_server("");
    s.python("attack_auth.py", &["10"]);
    assert_survived(&mut s);
}

#[test]
fn connection_floods_and_slowloris() {
    let mut s = attack_server("");
    let pid = pid(&s);
    s.python("attack_flood.py", &["500", "2000", &pid]);
    assert_survived(&mut s);
}

/// kill -9 while the server is being fuzzed and flooded with large messages: it restarts,
/// recovers and answers everywhere.
#[test]
fn kill9_under_attack_then_restart() {
    let mut s = attack_server("max_message_size = 1048576\nmax_message_memory = 4194304");
    let script = |name: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(name)
    };
    let pid = pid(&s);
    let mut attackers: Vec<std::process::Child> = [
        vec![script("attack_fuzz.py"), "6".into(), "3".into()],
        vec![
            script("attack_memory.py"),
            "10".into(),
            "500000".into(),
            "4".into(),
            pid.into(),
            "0".into(),
        ],
    ]
    .into_iter()
    .map(|args| {
        std::process::Command::new("python3")
            .args(args)
            .envs(s.env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3")
    })
    .collect();
    std::thread::sleep(Duration::from_secs(3));
    s.kill9();
    for a in &mut attackers {
        // They fail once the server is gone; only their end matters.
        let _ = a.wait();
    }
    s.spawn();
    s.python("attack_alive.py", &["kill -9 under attack and restart"]);
    assert_survived(&mut s);
}

/// Forty IMAP clients appending 3 MB at once against an 8 MiB budget: some are told to come
/// back later (NO [UNAVAILABLE], before a synchronising literal is sent), the others are
/// stored, and the server's memory does not grow with the number of clients (measured: 41 MiB
/// for 20 or 40 clients; 103 MiB for 40 without the budget).
#[test]
fn imap_append_memory_budget_refuses_with_unavailable() {
    let mut s = attack_server("max_message_size = 4194304\nmax_message_memory = 8388608");
    let pid = pid(&s);
    let out = s.python(
        "attack_imap_memory.py",
        &["append", "40", "3000000", "2", &pid, "64"],
    );
    println!("{out}");
    assert_survived(&mut s);
}

/// A server with 12 MiB of message and output memory per executor, and a 10 MB message (10,000
/// lines of 1,000 octets) delivered to each of `to`.
fn server_with_big_messages(to: &[&str]) -> Server {
    let s = attack_server("max_message_size = 12582912\nmax_message_memory = 25165824");
    let big = s.dir.path().join("big.eml");
    let line = "x".repeat(998) + "\r\n";
    std::fs::write(&big, format!("Subject: big\r\n\r\n{}", line.repeat(10_000))).unwrap();
    let data = format!("@{}", big.display());
    for user in to {
        s.swaks(&[
            "--to",
            user,
            "--from",
            "big@remote.example",
            "--data",
            &data,
        ]);
    }
    s
}

/// Thirty clients FETCH a 10 MB message and never read it. Without a cap the server would hold
/// one body per client (about 300 MB); the responses waiting for them count against the
/// executor's output memory (12 MiB here), so one is held and the others get NO [UNAVAILABLE].
#[test]
fn imap_fetch_by_stalled_readers_stays_within_output_memory() {
    let mut s = server_with_big_messages(&["carol@example.org"]);
    let pid = pid(&s);
    let out = s.python(
        "attack_imap_memory.py",
        &["fetch", "30", "10000000", "3", &pid, "100"],
    );
    println!("{out}");
    assert_survived(&mut s);
}

/// Output memory is claimed while a response waits, not for as long as the client stays: after
/// one session has read a 10 MB message, another can FETCH it too.
#[test]
fn imap_output_memory_is_given_back_once_written() {
    let s = server_with_big_messages(&["carol@example.org"]);
    let out = s.python("imap_output_released.py", &[]);
    assert!(out.contains("output released ok"), "{out}");
}

/// POP3 the same way: three accounts on two executors RETR a 10 MB message and never read it;
/// where two share an executor, one is told to come back later instead of being held.
#[test]
fn pop3_retr_by_stalled_readers_stays_within_output_memory() {
    let users: Vec<&str> = common::USERS.iter().map(|(u, _)| *u).collect();
    let mut s = server_with_big_messages(&users);
    let pid = pid(&s);
    let out = s.python("attack_pop3_memory.py", &["10000000", &pid, "40"]);
    println!("{out}");
    assert_survived(&mut s);
}

/// Twenty clients holding 900 KB messages at once against a 4 MiB budget: some are told to
/// come back later (452 4.3.1), the others are stored, nobody gets anything else.
#[test]
fn message_memory_budget_refuses_with_452() {
    let mut s = attack_server("max_message_size = 1048576\nmax_message_memory = 4194304");
    let pid = pid(&s);
    let out = s.python("attack_memory.py", &["20", "900000", "2", &pid, "1"]);
    println!("{out}");
    assert!(
        s.log_text().contains("message memory exhausted"),
        "no shedding logged"
    );
    assert_survived(&mut s);
}

/// Over `max_connections` a client gets its protocol's "busy" answer and is disconnected;
/// once connections close, clients are served again.
#[test]
fn connection_limit_answers_busy_and_recovers() {
    let mut s = attack_server("max_connections = 4");
    // The start-up probes of the test harness may still hold slots for a moment.
    let held: Vec<Raw> = (0..4).map(|_| served(s.ports.smtp)).collect();
    for (port, busy) in [
        (s.ports.smtp, "421 4.3.2 "),
        (s.ports.submission, "421 4.3.2 "),
        (s.ports.imap, "* BYE "),
        (s.ports.pop3, "-ERR "),
    ] {
        let mut r = Raw::connect(port);
        let line = r.line();
        assert!(line.starts_with(busy), "port {port}: {line:?}");
        assert_eq!(
            r.rest(),
            "",
            "port {port}: not closed after the busy answer"
        );
    }
    // An implicit-TLS port just closes: plaintext would be garbage to a TLS client.
    let mut r = Raw::connect(s.ports.imaps);
    assert_eq!(r.rest(), "");
    drop(held);
    let mut r = served(s.ports.smtp);
    r.send(b"NOOP\r\n");
    assert!(r.line().starts_with("250 "));
    assert_survived(&mut s);
}

/// An SMTP connection past its 220 greeting, retried while the server is busy (slots come
/// back as the server notices closed connections).
fn served(port: u16) -> Raw {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut r = Raw::connect(port);
        let line = r.line();
        if line.starts_with("220 ") {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served: {line:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! POP3 against the real binary: poplib over STLS and implicit TLS, curl, restart persistence.

mod common;
use common::*;

#[test]
fn poplib_dialogue_and_dele_survives_restart() {
    let mut s = Server::new().start();
    s.python("pop3_clients.py", &["full"]);
    s.kill9();
    s.spawn();
    let out = s.python_output("pop3_clients.py", &["after-restart"]);
    assert!(
        out.status.success(),
        "after restart: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
}

#[test]
fn curl_pop3_and_pop3s() {
    let s = Server::new().start();
    s.swaks_deliver("carol@example.org", "pop body line");
    for url in [
        format!("pop3://127.0.0.1:{}/1", s.ports.pop3),
        format!("pop3s://127.0.0.1:{}/1", s.ports.pop3s),
    ] {
        let body = curl_get(&url, "carol@example.org:carol-pw");
        assert!(body.contains("pop body line"), "{url}: {body}");
    }
}

#[test]
fn long_lines_and_stls_injection() {
    let s = Server::new().start();
    let mut r = Raw::connect(s.ports.pop3);
    assert!(r.line().starts_with("+OK"));
    let mut long = vec![b'A'; 5000];
    long.extend_from_slice(b"\r\n");
    r.send(&long);
    assert!(r.line().starts_with("-ERR"));
    r.send(b"NOOP\r\n");
    assert!(
        r.line().starts_with("-ERR"),
        "NOOP outside TRANSACTION is an error, but the session lives"
    );
    r.send(b"STLS\r\nUSER bob@example.org\r\n");
    assert!(r.line().starts_with("+OK"));
    r.r.get_ref()
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    assert!(
        r.line().is_empty(),
        "the pipelined USER must not be answered in plaintext"
    );
}

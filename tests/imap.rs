//! IMAP against the real binary: imaplib over STARTTLS and implicit TLS, curl, and attacks.

mod common;
use common::*;

#[test]
fn imaplib_full_client_dialogue() {
    let s = Server::new().start();
    s.python("imap_clients.py", &["full"]);
}

#[test]
fn imaplib_append_is_not_held_by_delayed_acks() {
    let s = Server::new().start();
    s.python("prompt_ack.py", &["imap"]);
}

#[test]
fn curl_reads_mail_over_imap_and_imaps() {
    let s = Server::new().start();
    s.swaks_deliver("alice@example.org", "curl body line");
    for url in [
        format!("imap://127.0.0.1:{}/INBOX;UID=1", s.ports.imap),
        format!("imaps://127.0.0.1:{}/INBOX;UID=1", s.ports.imaps),
    ] {
        let body = curl_get(&url, "alice@example.org:alice-pw");
        assert!(body.contains("curl body line"), "{url}: {body}");
    }
}

#[test]
fn plaintext_auth_is_refused_unless_the_config_allows_it() {
    let s = Server::new().start();
    s.python("plaintext_auth.py", &["refused"]);
    let s = Server::with_config("", "[tls]\nallow_plaintext_auth = true\n").start();
    s.python("plaintext_auth.py", &["allowed"]);
}

#[test]
fn hostile_literals_and_names() {
    let s = Server::new().start();
    let mut r = Raw::connect(s.ports.imap);
    assert!(r.line().starts_with("* OK"));
    r.send(b"a1 LOGIN alice@example.org alice-pw\r\n");
    let l = r.line();
    assert!(
        l.starts_with("a1 NO") || l.starts_with("a1 BAD"),
        "LOGIN before TLS must fail: {l}"
    );
    // A huge synchronizing literal is refused before the continuation.
    r.send(b"a2 APPEND INBOX {4294967295}\r\n");
    let l = r.line();
    assert!(l.starts_with("a2 NO") || l.starts_with("a2 BAD"), "{l}");
    r.send(b"a3 NOOP\r\n");
    assert!(r.line().starts_with("a3 OK"));
}

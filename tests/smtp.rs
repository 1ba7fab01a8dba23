//! SMTP against the real binary: Python smtplib on all three ports, swaks, curl, smuggling
//! variants, STARTTLS injection, open-relay attempts and limits.

mod common;
use common::*;
use std::process::Command;

#[test]
fn smtplib_on_all_three_ports() {
    let s = Server::new().start();
    s.python("smtp_clients.py", &["py"]);
}

#[test]
fn postmaster_is_accepted_without_a_domain_and_for_every_local_domain() {
    let s = Server::new().start();
    // No postmaster yet: the server says so before it reports ready.
    assert!(
        s.log_text().contains("no account or alias for postmaster"),
        "no warning about the missing postmaster:\n{}",
        s.log_text()
    );
    let out = s.cli(&[
        "alias",
        "add",
        "postmaster@example.org",
        "alice@example.org",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.python("postmaster.py", &[]);
}

#[test]
fn bdat_sent_in_two_writes_is_not_held_by_delayed_acks() {
    let s = Server::new().start();
    s.python("prompt_ack.py", &["bdat"]);
}

#[test]
fn swaks_and_curl_deliver() {
    let s = Server::new().start();
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", s.ports.smtp),
            "--to",
            "alice@example.org",
        ])
        .args([
            "--from",
            "someone@remote.example",
            "--header",
            "Subject: via swaks",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("<-  250 2.0.0"),
        "swaks MX:\n{text}"
    );

    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", s.ports.submission),
            "--tls",
        ])
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            "alice@example.org",
            "--auth-password",
            "alice-pw",
        ])
        .args(["--from", "alice@example.org", "--to", "bob@example.org"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("235 2.7.0"),
        "swaks submission STARTTLS AUTH:\n{text}"
    );

    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", s.ports.submissions),
            "--tlsc",
        ])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob@example.org",
            "--auth-password",
            "bob-pw",
        ])
        .args(["--from", "bob@example.org", "--to", "alice@example.org"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("250 2.0.0"),
        "swaks submissions:\n{text}"
    );

    let mail = s.dir.path().join("mail.txt");
    std::fs::write(
        &mail,
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: via curl\r\n\r\nhi\r\n",
    )
    .unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--ssl-reqd",
            "-k",
            &format!("smtp://127.0.0.1:{}", s.ports.submission),
        ])
        .args([
            "--user",
            "alice@example.org:alice-pw",
            "--mail-from",
            "alice@example.org",
        ])
        .args(["--mail-rcpt", "bob@example.org", "--upload-file"])
        .arg(&mail)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl smtp STARTTLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            &format!("smtps://127.0.0.1:{}", s.ports.submissions),
        ])
        .args([
            "--user",
            "alice@example.org:alice-pw",
            "--mail-from",
            "alice@example.org",
        ])
        .args(["--mail-rcpt", "carol@example.org", "--upload-file"])
        .arg(&mail)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl smtps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens an MX session through to DATA for alice.
fn mx_data(s: &Server) -> Raw {
    let mut r = Raw::connect(s.ports.smtp);
    assert!(r.smtp_reply().starts_with("220 "));
    r.send(b"EHLO attacker.example\r\n");
    assert!(r.smtp_reply().starts_with("250 "));
    r.send(b"MAIL FROM:<a@remote.example>\r\n");
    assert!(r.smtp_reply().starts_with("250 "));
    r.send(b"RCPT TO:<alice@example.org>\r\n");
    assert!(r.smtp_reply().starts_with("250 "));
    r.send(b"DATA\r\n");
    assert!(r.smtp_reply().starts_with("354 "));
    r
}

#[test]
fn smuggling_variants_never_end_data() {
    let s = Server::new().start();
    for variant in [&b"\n.\n"[..], b"\r\n.\n", b"\n.\r\n", b"\r.\r"] {
        let mut r = mx_data(&s);
        let mut payload = b"Subject: smuggle\r\n\r\nbody".to_vec();
        payload.extend_from_slice(variant);
        payload.extend_from_slice(
            b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n",
        );
        r.send(&payload);
        // The real end: the whole thing must be refused as one message, not two.
        r.send(b"\r\n.\r\n");
        let reply = r.smtp_reply();
        assert!(
            reply.starts_with("5"),
            "variant {variant:?}: end of data got {reply:?}"
        );
        r.send(b"NOOP\r\n");
        assert!(
            r.smtp_reply().starts_with("250"),
            "session usable after rejection"
        );
        r.send(b"QUIT\r\n");
        assert!(r.smtp_reply().starts_with("221"));
    }
}

#[test]
fn starttls_injection_is_discarded() {
    let s = Server::new().start();
    let out = Command::new("openssl")
        .args(["s_client", "-quiet", "-starttls", "smtp", "-connect"])
        .arg(format!("127.0.0.1:{}", s.ports.smtp))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"EHLO x\r\nQUIT\r\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("221"),
        "openssl s_client -starttls smtp works:\n{text}"
    );

    // The injection: commands pipelined in the same packet as STARTTLS must never run.
    let mut r = Raw::connect(s.ports.smtp);
    r.smtp_reply();
    r.send(b"EHLO x\r\n");
    r.smtp_reply();
    r.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<inject@remote.example>\r\n");
    let reply = r.smtp_reply();
    assert!(reply.starts_with("220"), "{reply}");
    // Whatever we read now must be TLS (a ServerHello is only sent after our ClientHello), never
    // a plaintext reply to the injected commands.
    r.r.get_ref()
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let leaked = r.line();
    assert!(leaked.is_empty(), "plaintext after STARTTLS: {leaked:?}");
}

#[test]
fn relay_attempts_are_refused() {
    let s = Server::new().start();
    let mut r = Raw::connect(s.ports.smtp);
    r.smtp_reply();
    r.send(b"EHLO x\r\n");
    r.smtp_reply();
    r.send(b"MAIL FROM:<a@remote.example>\r\n");
    assert!(r.smtp_reply().starts_with("250"));
    for rcpt in [
        "<victim@gmail.com>",
        "<victim%gmail.com@example.org>",
        "<gmail.com!victim@example.org>",
        "<@example.org:victim@gmail.com>",
        "<\"victim@gmail.com\"@example.org>",
        "<victim@gmail.com@example.org>",
        "<alice>",
    ] {
        r.send(format!("RCPT TO:{rcpt}\r\n").as_bytes());
        let reply = r.smtp_reply();
        assert!(
            reply.starts_with("550 5.7.1") || reply.starts_with("501") || reply.starts_with("553"),
            "{rcpt}: {reply}"
        );
    }
    r.send(b"RCPT TO:<nobody@example.org>\r\n");
    assert!(r.smtp_reply().starts_with("550 5.1.1"));
}

#[test]
fn limits_hold_and_session_stays_usable() {
    let s = Server::with_extra_config("max_message_size = 100000").start();
    let mut r = Raw::connect(s.ports.smtp);
    r.smtp_reply();
    r.send(b"EHLO x\r\n");
    let ehlo = {
        let mut all = String::new();
        loop {
            let l = r.line();
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                break all;
            }
        }
    };
    assert!(ehlo.contains("SIZE 100000"), "{ehlo}");
    // A line far over the limit: 500, and the session goes on.
    let mut long = vec![b'N'; 10_000];
    long.extend_from_slice(b"\r\n");
    r.send(&long);
    assert!(r.smtp_reply().starts_with("500"));
    r.send(b"NOOP\r\n");
    assert!(r.smtp_reply().starts_with("250"));
    // SIZE= over the limit is refused at MAIL.
    r.send(b"MAIL FROM:<a@remote.example> SIZE=200000\r\n");
    assert!(r.smtp_reply().starts_with("552"));
    r.send(b"MAIL FROM:<a@remote.example>\r\n");
    assert!(r.smtp_reply().starts_with("250"));
    // 100 recipients accepted, the 101st gets 452.
    for i in 0..101 {
        r.send(format!("RCPT TO:<alice+{i}@example.org>\r\n").as_bytes());
        let reply = r.smtp_reply();
        if i < 100 {
            assert!(reply.starts_with("250"), "rcpt {i}: {reply}");
        } else {
            assert!(reply.starts_with("452"), "rcpt {i}: {reply}");
        }
    }
    r.send(b"DATA\r\n");
    assert!(r.smtp_reply().starts_with("354"));
    // Over the size limit while reading: 552 after the end marker.
    let line = format!("{}\r\n", "x".repeat(900));
    for _ in 0..200 {
        r.send(line.as_bytes());
    }
    r.send(b".\r\n");
    assert!(r.smtp_reply().starts_with("552"));
    r.send(b"NOOP\r\n");
    assert!(r.smtp_reply().starts_with("250"));
}

#[test]
fn submission_relays_outbound_and_bounces_refusals() {
    let sink = free_port();
    let s = Server::with_config("", &format!("[relay]\nhost = \"127.0.0.1:{sink}\"\n")).start();
    s.python("relay_sink.py", &[&sink.to_string()]);
}

#[test]
fn one_message_fans_out_to_every_shard_exactly_once() {
    let s = Server::new();
    let n = 24;
    let mut shards = std::collections::BTreeSet::new();
    for i in 0..n {
        let out = s.cli_stdin(
            &[
                "user",
                "add",
                &format!("u{i}@example.org"),
                "--password-stdin",
            ],
            "pw\n",
        );
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        shards.insert(
            text.split("shard ")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches([')', '\n'])
                .to_string(),
        );
    }
    assert_eq!(
        shards.len(),
        8,
        "the accounts cover every shard: {shards:?}"
    );
    let s = s.start();
    s.python("fanout.py", &[&n.to_string()]);
}

/// limits.quota_bytes: a full account gets 452 4.2.2 at RCPT (others still get mail), IMAP shows
/// the usage and refuses APPEND, and expunging makes room again.
#[test]
fn quota_refuses_mail_for_a_full_account_until_it_makes_room() {
    let s = Server::with_extra_config("quota_bytes = 20000").start();
    let out = s.python("quota.py", &[]);
    assert!(out.contains("quota ok"), "{out}");
}

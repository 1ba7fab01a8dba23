//! Session behaviour, one test per rule; plus a bounded proptest fuzz of parser and session.

use std::cell::Cell;
use std::net::Ipv4Addr;

use super::*;

const HOST: &str = "mx.example.org";

/// example.org is local: alice, bob, team (alias to both), full (over its quota), crew (alias
/// to bob and full) and postmaster@mx.example.org. example.net is local too, with only carol.
#[derive(Default)]
struct Dir {
    lookups: Cell<usize>,
}

impl Directory for Dir {
    fn resolve(&self, addr: &str) -> Resolution {
        self.lookups.set(self.lookups.get() + 1);
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return Resolution::UnknownLocal;
        };
        if domain == "example.net" {
            return match local {
                "carol" => Resolution::Local(vec!["carol@example.net".into()]),
                _ => Resolution::UnknownLocal,
            };
        }
        if domain != "example.org" && domain != HOST {
            return Resolution::NonLocal;
        }
        match local {
            "alice" | "bob" | "full" | "postmaster" => {
                Resolution::Local(vec![format!("{local}@example.org")])
            }
            "team" => Resolution::Local(vec!["alice@example.org".into(), "bob@example.org".into()]),
            "crew" => Resolution::Local(vec!["bob@example.org".into(), "full@example.org".into()]),
            _ if local.starts_with("user") => {
                Resolution::Local(vec![format!("{local}@example.org")])
            }
            _ => Resolution::UnknownLocal,
        }
    }

    fn may_send_as(&self, account: &str, from: &str) -> bool {
        account == from
    }

    fn is_full(&self, account: &str) -> bool {
        account == "full@example.org"
    }
}

fn config(kind: ListenerKind) -> SessionConfig {
    SessionConfig::new(HOST, kind, Arc::new(QueueIdGenerator::with_start(1, 1)))
}

fn session_with(cfg: SessionConfig, tls: bool) -> Session {
    let mut s = Session::new(Arc::new(cfg), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), tls);
    s.greeting();
    s.clear_output();
    s
}

fn session(kind: ListenerKind, tls: bool) -> Session {
    session_with(config(kind), tls)
}

/// Feeds `input`, returns the progress and the output text (cleared from the session).
fn feed(s: &mut Session, input: &[u8]) -> (Progress, String) {
    let p = s.feed(input, &Dir::default());
    let out = String::from_utf8(s.take_output()).expect("replies are ASCII");
    (p, out)
}

/// The final line of every reply in `out` ("250 2.1.0 Ok", ...).
fn replies(out: &str) -> Vec<&str> {
    out.split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .collect()
}

/// The `code status` prefix of every reply.
fn codes(out: &str) -> Vec<String> {
    replies(out)
        .iter()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Feeds everything, answering actions: StartTls is refused here, auth succeeds as `user`,
/// deliveries succeed. Returns all output and the delivered envelopes.
fn converse(s: &mut Session, mut input: &[u8]) -> (String, Vec<Envelope>) {
    let mut out = String::new();
    let mut delivered = Vec::new();
    loop {
        let (p, o) = feed(s, input);
        out.push_str(&o);
        input = &input[p.consumed..];
        match p.action {
            Some(Action::Deliver(env)) => {
                delivered.push(*env);
                s.delivery_result(Ok(()));
            }
            Some(Action::Authenticate { user, .. }) => {
                s.auth_result(Some(user));
            }
            Some(Action::StartTls) => panic!("unexpected STARTTLS"),
            None => break,
        }
        out.push_str(&String::from_utf8(s.take_output()).unwrap());
    }
    (out, delivered)
}

/// A Submission session past TLS and AUTH as `alice@example.org`.
fn authed_submission() -> Session {
    let mut s = session(ListenerKind::Submission, true);
    let ir = B64.encode(b"\0alice@example.org\0secret");
    let (p, _) = feed(
        &mut s,
        format!("EHLO client\r\nAUTH PLAIN {ir}\r\n").as_bytes(),
    );
    assert!(matches!(p.action, Some(Action::Authenticate { .. })));
    s.auth_result(Some("alice@example.org".into()));
    s.clear_output();
    s
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
    assert_send::<Action>();
}

#[test]
fn greeting_banner() {
    let mut s = Session::new(
        Arc::new(config(ListenerKind::Mx)),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        false,
    );
    s.greeting();
    assert_eq!(s.output(), b"220 mx.example.org ESMTP ringpost\r\n");
}

fn ehlo_lines(kind: ListenerKind, tls: bool, tls_available: bool) -> Vec<String> {
    let mut cfg = config(kind);
    cfg.tls_available = tls_available;
    cfg.max_message_size = 1234;
    let mut s = session_with(cfg, tls);
    let (_, out) = feed(&mut s, b"EHLO client.example\r\n");
    out.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l[4..].to_owned())
        .collect()
}

#[test]
fn ehlo_keywords_per_listener_and_tls_state() {
    let base = [
        "mx.example.org",
        "PIPELINING",
        "SIZE 1234",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
    ];
    let with = |extra: &[&str]| {
        base.iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ehlo_lines(ListenerKind::Mx, false, true),
        with(&["STARTTLS"])
    );
    assert_eq!(ehlo_lines(ListenerKind::Mx, true, true), with(&[]));
    assert_eq!(ehlo_lines(ListenerKind::Mx, false, false), with(&[]));
    assert_eq!(
        ehlo_lines(ListenerKind::Submission, false, true),
        with(&["STARTTLS"])
    );
    assert_eq!(
        ehlo_lines(ListenerKind::Submission, true, true),
        with(&["AUTH PLAIN LOGIN"])
    );
    assert_eq!(
        ehlo_lines(ListenerKind::Submissions, true, true),
        with(&["AUTH PLAIN LOGIN"])
    );
    // Continuation markers: every line but the last is "250-".
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(&mut s, b"EHLO c\r\n");
    let lines: Vec<_> = out.split_terminator("\r\n").collect();
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l.starts_with("250-")));
    assert!(lines[lines.len() - 1].starts_with("250 "));
    // HELO: a single line, no extensions.
    let (_, out) = feed(&mut s, b"HELO c\r\n");
    assert_eq!(out, "250 mx.example.org\r\n");
}

#[test]
fn pipelined_transaction_is_processed_in_order() {
    let mut s = session(ListenerKind::Mx, false);
    let input = b"EHLO client.example\r\nMAIL FROM:<sender@remote.example> SIZE=100\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<team@Example.ORG>\r\nDATA\r\nSubject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let (p, out) = feed(&mut s, input);
    let Some(Action::Deliver(env)) = p.action else {
        panic!("{out}")
    };
    assert_eq!(
        &codes(&out)[1..],
        ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 End"]
    );
    assert_eq!(
        p.completed,
        [
            CommandKind::Ehlo,
            CommandKind::Mail,
            CommandKind::Rcpt,
            CommandKind::Rcpt
        ]
    );
    // QUIT waits while the delivery is pending.
    assert_eq!(&input[p.consumed..], b"QUIT\r\n");
    let (p2, out2) = feed(&mut s, &input[p.consumed..]);
    assert_eq!((p2.consumed, out2.as_str()), (0, ""));
    assert_eq!(env.from, "sender@remote.example");
    assert_eq!(env.rcpts_local.len(), 2);
    assert_eq!(env.rcpts_local[1].address, "team@example.org");
    assert_eq!(
        env.rcpts_local[1].accounts,
        ["alice@example.org", "bob@example.org"]
    );
    assert!(env.rcpts_remote.is_empty());
    assert_eq!(env.body, &b"Subject: t\r\n\r\nhello\r\n"[..]);
    assert_eq!(s.delivery_result(Ok(())), CommandKind::Data);
    let out = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(out, format!("250 2.0.0 Ok: queued as {}\r\n", env.queue_id));
    let (p, out) = feed(&mut s, &input[p.consumed..]);
    assert_eq!(codes(&out), ["221 2.0.0"]);
    assert_eq!(p.completed, [CommandKind::Quit]);
    assert!(s.wants_close());
}

#[test]
fn input_split_anywhere_gives_the_same_replies() {
    let input: &[u8] = b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n..dot\r\nx\r\n.\r\nRSET\r\n";
    let mut whole = session(ListenerKind::Mx, false);
    let (expected, envs) = converse(&mut whole, input);
    assert_eq!(envs.len(), 1);
    for split in 1..input.len() {
        let mut s = session(ListenerKind::Mx, false);
        let mut buf = input[..split].to_vec();
        let (mut out, mut env2) = converse_buf(&mut s, &mut buf);
        buf.extend_from_slice(&input[split..]);
        let (o, e) = converse_buf(&mut s, &mut buf);
        out.push_str(&o);
        env2.extend(e);
        assert_eq!(codes(&out), codes(&expected), "split at {split}");
        assert_eq!(env2[0].body, envs[0].body);
    }
}

/// Like [`converse`] but on an owned buffer the way a driver keeps one.
fn converse_buf(s: &mut Session, buf: &mut Vec<u8>) -> (String, Vec<Envelope>) {
    let (out, envs) = {
        let copy = buf.clone();
        let mut rest: &[u8] = &copy;
        let mut out = String::new();
        let mut envs = Vec::new();
        loop {
            let (p, o) = feed(s, rest);
            out.push_str(&o);
            rest = &rest[p.consumed..];
            match p.action {
                Some(Action::Deliver(env)) => {
                    envs.push(*env);
                    s.delivery_result(Ok(()));
                    out.push_str(&String::from_utf8(s.take_output()).unwrap());
                }
                Some(_) => panic!("unexpected action"),
                None => break,
            }
        }
        *buf = rest.to_vec();
        (out, envs)
    };
    (out, envs)
}

#[test]
fn smuggling_variants_never_end_data() {
    for fake in [&b"\n.\n"[..], b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\r\n"] {
        let mut s = session(ListenerKind::Mx, false);
        let mut input = b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi".to_vec();
        input.extend_from_slice(fake);
        input.extend_from_slice(
            b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n",
        );
        let (p, out) = feed(&mut s, &input);
        assert!(p.action.is_none(), "{fake:?} ended the message");
        assert_eq!(p.consumed, input.len());
        assert_eq!(
            codes(&out).last().map(String::as_str),
            Some("354 End"),
            "{fake:?}: smuggled commands ran: {out}"
        );
        let (p, out) = feed(&mut s, b".\r\nNOOP\r\n");
        assert!(
            p.action.is_none(),
            "{fake:?}: a message with bare line ends was accepted"
        );
        assert_eq!(codes(&out), ["554 5.6.0", "250 2.0.0"], "{fake:?}");
        assert_eq!(p.completed, [CommandKind::Data, CommandKind::Noop]);
    }
}

#[test]
fn bare_cr_or_lf_in_body_rejected_after_end_marker() {
    for body in [&b"a\nb\r\n"[..], b"a\rb\r\n", b"line\r\r\n"] {
        let mut s = session(ListenerKind::Mx, false);
        let mut input =
            b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
                .to_vec();
        input.extend_from_slice(body);
        input.extend_from_slice(b".\r\n");
        let (out, envs) = converse(&mut s, &input);
        assert!(envs.is_empty());
        assert_eq!(codes(&out).last().map(String::as_str), Some("554 5.6.0"));
    }
}

#[test]
fn dot_unstuffing_in_session() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n..one\r\n...two\r\n.\r\n",
    );
    assert_eq!(envs[0].body, &b".one\r\n..two\r\n"[..]);
}

#[test]
fn size_limits() {
    let mut cfg = config(ListenerKind::Mx);
    cfg.max_message_size = 1000;
    let mut s = session_with(cfg, false);
    let (out, _) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example> SIZE=1001\r\n",
    );
    assert_eq!(codes(&out).last().map(String::as_str), Some("552 5.3.4"));
    let mut input =
        b"MAIL FROM:<a@remote.example> SIZE=1000\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
            .to_vec();
    let line = [b'x'; 98];
    for _ in 0..100 {
        input.extend_from_slice(&line);
        input.extend_from_slice(b"\r\n");
    }
    let (p, _) = feed(&mut s, &input);
    assert!(p.action.is_none());
    assert!(s.buffered_message_bytes() <= 1000, "stored past the limit");
    let (out, envs) = converse(&mut s, b".\r\nRSET\r\n");
    assert!(envs.is_empty());
    assert_eq!(codes(&out), ["552 5.3.4", "250 2.0.0"]);
}

#[test]
fn long_command_line_gets_500_and_session_goes_on() {
    let mut s = session(ListenerKind::Mx, false);
    // Whole line buffered.
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(1200));
    let (p, out) = feed(&mut s, long.as_bytes());
    assert_eq!(codes(&out), ["500 5.5.2", "250 2.0.0"]);
    assert_eq!(p.consumed, long.len());
    // Line arriving in pieces with no LF within the limit: input is dropped, not buffered.
    let (p, out) = feed(&mut s, "y".repeat(1500).as_bytes());
    assert_eq!((p.consumed, out.as_str()), (1500, ""));
    let (p, _) = feed(&mut s, "z".repeat(3000).as_bytes());
    assert_eq!(p.consumed, 3000);
    let (_, out) = feed(&mut s, b"zz\r\nEHLO c\r\n");
    assert_eq!(codes(&out), ["500 5.5.2", "250 STARTTLS"]);
}

#[test]
fn recipient_limit_gives_452() {
    let mut s = session(ListenerKind::Mx, false);
    let mut input = b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\n".to_vec();
    for i in 0..101 {
        input.extend_from_slice(format!("RCPT TO:<user{i}@example.org>\r\n").as_bytes());
    }
    let (_, out) = feed(&mut s, &input);
    let c = codes(&out);
    assert_eq!(c.iter().filter(|c| *c == "250 2.1.5").count(), 100);
    assert_eq!(c.last().map(String::as_str), Some("452 4.5.3"));
    // A duplicate does not count twice, and 452 is not counted as a client error.
    assert!(!s.wants_close());
}

#[test]
fn open_relay_attempts_are_refused() {
    for rcpt in [
        "<alice%remote.example@example.org>",
        "<remote.example!alice@example.org>",
        "<@example.org:alice@remote.example>",
        "<@a.example,@example.org:alice@example.org>",
        r#"<"alice@remote.example"@example.org>"#,
        r#"<"alice%remote.example"@example.org>"#,
        "<alice>",
        "<victim@remote.example>",
        "<victim@[192.0.2.99]>",
    ] {
        let mut s = session(ListenerKind::Mx, false);
        let dir = Dir::default();
        let input = format!("EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:{rcpt}\r\nDATA\r\n");
        let p = s.feed(input.as_bytes(), &dir);
        let out = String::from_utf8(s.take_output()).unwrap();
        let c = codes(&out);
        assert_eq!(c[2], "550 5.7.1", "{rcpt}: {out}");
        assert_eq!(c[3], "554 5.5.1", "{rcpt}");
        assert!(p.action.is_none());
    }
    // Routing tricks are refused before the directory is even asked.
    let mut s = session(ListenerKind::Mx, false);
    let dir = Dir::default();
    s.feed(
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<x%y@example.org>\r\n",
        &dir,
    );
    assert_eq!(dir.lookups.get(), 0);
}

#[test]
fn authenticated_submission_relays_but_not_hidden_routes() {
    let mut s = authed_submission();
    let (out, envs) = converse(
        &mut s,
        b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@remote.example>\r\nRCPT TO:<a%b@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert_eq!(
        codes(&out),
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.7.1",
            "250 2.1.5",
            "354 End",
            "250 2.0.0"
        ]
    );
    assert_eq!(envs[0].rcpts_remote, ["friend@remote.example"]);
    assert_eq!(envs[0].rcpts_local[0].address, "bob@example.org");
    assert_eq!(envs[0].authenticated.as_deref(), Some("alice@example.org"));
}

#[test]
fn unknown_local_user_and_postmaster() {
    let mut s = session(ListenerKind::Mx, false);
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(&codes(&out)[1..4], ["250 2.1.0", "550 5.1.1", "250 2.1.5"]);
    assert_eq!(envs[0].from, "");
    assert_eq!(envs[0].rcpts_local[0].address, "postmaster@mx.example.org");
    assert!(envs[0].prefix.starts_with(b"Return-Path: <>\r\n"));
}

/// An MX session whose bare `<Postmaster>` means `postmaster`.
fn mx_with_postmaster(postmaster: &str) -> Session {
    let mut cfg = config(ListenerKind::Mx);
    cfg.postmaster = postmaster.into();
    session_with(cfg, false)
}

#[test]
fn bare_postmaster_is_the_configured_mailbox() {
    // The usual setup: the hostname (mx.example.org) is not itself a mail domain.
    let mut s = mx_with_postmaster("postmaster@example.org");
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<POSTMASTER>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(&codes(&out)[1..3], ["250 2.1.0", "250 2.1.5"]);
    assert_eq!(envs[0].rcpts_local[0].address, "postmaster@example.org");
    assert_eq!(envs[0].rcpts_local[0].accounts, ["postmaster@example.org"]);
}

#[test]
fn postmaster_of_a_domain_without_one_reaches_the_primary_postmaster() {
    let mut s = mx_with_postmaster("postmaster@example.org");
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@example.net>\r\n\
          RCPT TO:<PostMaster@example.net>\r\nRCPT TO:<postmaster@remote.example>\r\n\
          DATA\r\nx\r\n.\r\n",
    );
    assert_eq!(
        &codes(&out)[1..5],
        ["250 2.1.0", "550 5.1.1", "250 2.1.5", "550 5.7.1"]
    );
    let rcpt = &envs[0].rcpts_local[0];
    assert_eq!(rcpt.address, "PostMaster@example.net");
    assert_eq!(rcpt.accounts, ["postmaster@example.org"]);
}

#[test]
fn postmaster_without_a_mailbox_is_unknown() {
    let mut s = mx_with_postmaster("postmaster@example.net");
    let (out, _) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\n",
    );
    assert_eq!(&codes(&out)[1..3], ["250 2.1.0", "550 5.1.1"]);
}

#[test]
fn full_mailbox_is_a_temporary_452_at_rcpt() {
    let mut s = session(ListenerKind::Mx, false);
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<full@example.org>\r\n\
          RCPT TO:<crew@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(
        &codes(&out)[1..6],
        [
            "250 2.1.0",
            "452 4.2.2",
            "452 4.2.2",
            "250 2.1.5",
            "354 End"
        ]
    );
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].rcpts_local.len(), 1);
    assert_eq!(envs[0].rcpts_local[0].address, "bob@example.org");
}

#[test]
fn auth_before_tls_is_538() {
    let mut s = session(ListenerKind::Submission, false);
    let (p, out) = feed(&mut s, b"EHLO c\r\nAUTH PLAIN AGFAYgBj\r\nAUTH LOGIN\r\n");
    assert!(p.action.is_none());
    assert_eq!(&codes(&out)[1..], ["538 5.7.11", "538 5.7.11"]);
}

#[test]
fn auth_never_on_mx() {
    let mut s = session(ListenerKind::Mx, true);
    let (p, out) = feed(&mut s, b"EHLO c\r\nAUTH PLAIN AGFAYgBj\r\n");
    assert!(p.action.is_none());
    assert_eq!(codes(&out)[1], "502 5.5.1");
}

#[test]
fn mail_on_submission_needs_tls_and_auth() {
    let mut s = session(ListenerKind::Submission, false);
    let (_, out) = feed(&mut s, b"EHLO c\r\nMAIL FROM:<alice@example.org>\r\n");
    assert_eq!(codes(&out)[1], "530 5.7.0");
    let mut s = session(ListenerKind::Submission, true);
    let (_, out) = feed(&mut s, b"EHLO c\r\nMAIL FROM:<alice@example.org>\r\n");
    assert_eq!(replies(&out)[1], "530 5.7.0 Authentication required");
    let mut s = session(ListenerKind::Submissions, true);
    let (_, out) = feed(&mut s, b"EHLO c\r\nMAIL FROM:<alice@example.org>\r\n");
    assert_eq!(codes(&out)[1], "530 5.7.0");
}

#[test]
fn sender_must_belong_to_account() {
    let mut s = authed_submission();
    let (_, out) = feed(
        &mut s,
        b"MAIL FROM:<bob@example.org>\r\nMAIL FROM:<>\r\nMAIL FROM:<Alice@EXAMPLE.org>\r\n",
    );
    // The domain is compared case-insensitively (canonical form), the local part is not.
    assert_eq!(codes(&out), ["550 5.7.1", "550 5.7.1", "550 5.7.1"]);
    let (_, out) = feed(&mut s, b"MAIL FROM:<alice@EXAMPLE.org>\r\n");
    assert_eq!(codes(&out), ["250 2.1.0"]);
}

#[test]
fn null_sender_only_on_mx() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(&mut s, b"EHLO c\r\nMAIL FROM:<>\r\n");
    assert_eq!(codes(&out)[1], "250 2.1.0");
}

#[test]
fn starttls_discards_pipelined_injection() {
    let mut s = session(ListenerKind::Submission, false);
    let head = b"EHLO c\r\nSTARTTLS\r\n";
    let mut input = head.to_vec();
    input.extend_from_slice(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<x@remote.example>\r\n");
    let (p, out) = feed(&mut s, &input);
    assert!(matches!(p.action, Some(Action::StartTls)));
    assert_eq!(
        p.consumed,
        head.len(),
        "bytes after STARTTLS must be left for the driver to discard"
    );
    assert_eq!(codes(&out).last().map(String::as_str), Some("220 2.0.0"));
    assert_eq!(p.completed, [CommandKind::Ehlo, CommandKind::StartTls]);
    // Until the handshake is done nothing is consumed.
    let (p, out) = feed(&mut s, &input[head.len()..]);
    assert_eq!((p.consumed, out.as_str()), (0, ""));
    s.tls_established();
    assert!(s.is_tls());
    // State went back to before EHLO.
    let (_, out) = feed(
        &mut s,
        b"MAIL FROM:<alice@example.org>\r\nEHLO c\r\nSTARTTLS\r\n",
    );
    let c = codes(&out);
    assert_eq!(c[0], "503 5.5.1");
    assert!(replies(&out)[1].starts_with("250 AUTH PLAIN LOGIN"));
    assert_eq!(c[2], "503 5.5.1");
}

#[test]
fn starttls_unavailable() {
    let mut cfg = config(ListenerKind::Mx);
    cfg.tls_available = false;
    let mut s = session_with(cfg, false);
    let (p, out) = feed(&mut s, b"EHLO c\r\nSTARTTLS\r\nNOOP\r\n");
    assert!(p.action.is_none());
    assert_eq!(&codes(&out)[1..], ["454 4.7.0", "250 2.0.0"]);
}

fn expect_auth(p: Progress) -> (AuthMechanism, String, String) {
    match p.action {
        Some(Action::Authenticate {
            mechanism,
            user,
            password,
        }) => (mechanism, user, password),
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

#[test]
fn auth_plain_initial_response_and_continuation() {
    let mut s = session(ListenerKind::Submission, true);
    feed(&mut s, b"EHLO c\r\n");
    let ir = B64.encode(b"\0alice@example.org\0p\xc3\xa4ss");
    let (p, out) = feed(&mut s, format!("AUTH PLAIN {ir}\r\nNOOP\r\n").as_bytes());
    assert_eq!(out, "");
    assert_eq!(
        expect_auth(p),
        (
            AuthMechanism::Plain,
            "alice@example.org".into(),
            "päss".into()
        )
    );
    assert_eq!(
        s.auth_result(Some("alice@example.org".into())),
        CommandKind::Auth
    );
    assert_eq!(
        codes(&String::from_utf8(s.take_output()).unwrap()),
        ["235 2.7.0"]
    );
    assert_eq!(s.authenticated(), Some("alice@example.org"));
    let (_, out) = feed(&mut s, b"NOOP\r\nAUTH PLAIN\r\n");
    assert_eq!(codes(&out), ["250 2.0.0", "503 5.5.1"]);

    // 334 continuation, authzid equal to authcid is fine.
    let mut s = session(ListenerKind::Submission, true);
    let (_, out) = feed(&mut s, b"EHLO c\r\nAUTH PLAIN\r\n");
    assert!(out.ends_with("334 \r\n"), "{out}");
    let resp = B64.encode(b"bob\0bob\0pw");
    let (p, _) = feed(&mut s, format!("{resp}\r\n").as_bytes());
    assert_eq!(expect_auth(p).1, "bob");
    s.auth_result(None);
    assert_eq!(
        codes(&String::from_utf8(s.take_output()).unwrap()),
        ["535 5.7.8"]
    );
    assert_eq!(s.authenticated(), None);
}

#[test]
fn auth_plain_rejections() {
    let mut s = session(ListenerKind::Submission, true);
    feed(&mut s, b"EHLO c\r\n");
    let proxy = B64.encode(b"admin\0bob\0pw");
    let no_nul = B64.encode(b"bobpw");
    let empty_user = B64.encode(b"\0\0pw");
    let input = format!("AUTH PLAIN {proxy}\r\nAUTH PLAIN {no_nul}\r\nAUTH PLAIN {empty_user}\r\nAUTH PLAIN =\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n!!notbase64\r\nAUTH CRAM-MD5\r\n");
    let (p, out) = feed(&mut s, input.as_bytes());
    assert!(p.action.is_none());
    assert_eq!(
        codes(&out),
        [
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "334 ",
            "501 5.0.0",
            "334 ",
            "501 5.5.2",
            "504 5.5.4"
        ]
    );
    assert_eq!(p.completed, [CommandKind::Auth; 7]);
}

#[test]
fn auth_login_exchange() {
    let mut s = session(ListenerKind::Submissions, true);
    let (_, out) = feed(&mut s, b"EHLO c\r\nAUTH LOGIN\r\n");
    assert!(out.ends_with("334 VXNlcm5hbWU6\r\n"));
    let (_, out) = feed(
        &mut s,
        format!("{}\r\n", B64.encode("alice@example.org")).as_bytes(),
    );
    assert_eq!(out, "334 UGFzc3dvcmQ6\r\n");
    let (p, _) = feed(&mut s, format!("{}\r\n", B64.encode("s3cret")).as_bytes());
    assert_eq!(
        expect_auth(p),
        (
            AuthMechanism::Login,
            "alice@example.org".into(),
            "s3cret".into()
        )
    );
    // Initial response carries the user name.
    let mut s = session(ListenerKind::Submissions, true);
    let (_, out) = feed(
        &mut s,
        format!("EHLO c\r\nAUTH LOGIN {}\r\n", B64.encode("bob")).as_bytes(),
    );
    assert!(out.ends_with("334 UGFzc3dvcmQ6\r\n"));
    let (_, out) = feed(&mut s, b"*\r\n");
    assert_eq!(codes(&out), ["501 5.0.0"]);
}

#[test]
fn auth_sequencing() {
    let mut s = session(ListenerKind::Submission, true);
    let (_, out) = feed(&mut s, b"AUTH PLAIN\r\nHELO c\r\nAUTH PLAIN\r\n");
    assert_eq!(
        codes(&out),
        ["503 5.5.1", "250 mx.example.org", "503 5.5.1"]
    );
}

#[test]
fn action_debug_hides_password() {
    let a = Action::Authenticate {
        mechanism: AuthMechanism::Plain,
        user: "u".into(),
        password: "hunter2".into(),
    };
    assert!(!format!("{a:?}").contains("hunter2"));
}

#[test]
fn command_sequencing_errors() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(
        &mut s,
        b"MAIL FROM:<a@remote.example>\r\nEHLO c\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nMAIL FROM:<a@remote.example>\r\nMAIL FROM:<a@remote.example>\r\nDATA\r\nRSET\r\nDATA\r\n",
    );
    assert_eq!(
        codes(&out),
        [
            "503 5.5.1",
            "250 STARTTLS",
            "503 5.5.1",
            "503 5.5.1",
            "250 2.1.0",
            "503 5.5.1",
            "554 5.5.1",
            "250 2.0.0",
            "503 5.5.1"
        ]
    );
}

#[test]
fn syntax_and_unknown_command_replies() {
    let mut s = session(ListenerKind::Mx, false);
    let (p, out) = feed(
        &mut s,
        b"FOO\r\nEHLO\r\n\r\nMAIL FROM:bad\r\nEHLO c\r\nMAIL FROM:<a@remote.example> XYZ=1\r\nRCPT TO:<alice@example.org>\r\nDATA x\r\n",
    );
    assert_eq!(
        codes(&out),
        [
            "500 5.5.1",
            "501 5.5.4",
            "500 5.5.2",
            "501 5.1.7",
            "250 STARTTLS",
            "555 5.5.4",
            "503 5.5.1",
            "501 5.5.4"
        ]
    );
    assert_eq!(p.completed[0], CommandKind::Unknown);
    assert!(!s.wants_close());
}

#[test]
fn too_many_errors_closes_with_421() {
    let mut s = session(ListenerKind::Mx, false);
    let input = "XYZZY\r\n".repeat(25);
    let (p, out) = feed(&mut s, input.as_bytes());
    let c = codes(&out);
    assert_eq!(c.len(), 21);
    assert_eq!(c[20], "421 4.7.0");
    assert!(s.wants_close());
    assert_eq!(p.consumed, 20 * 7);
    let (p, out) = feed(&mut s, b"NOOP\r\n");
    assert_eq!((p.consumed, out.as_str()), (0, ""));
}

#[test]
fn vrfy_never_consults_directory() {
    let mut s = session(ListenerKind::Mx, false);
    let dir = Dir::default();
    s.feed(b"VRFY alice\r\nVRFY nobody\r\n", &dir);
    let out = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(codes(&out), ["252 2.5.0", "252 2.5.0"]);
    assert_eq!(dir.lookups.get(), 0);
}

#[test]
fn help_noop_rset_quit() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(
        &mut s,
        b"HELP\r\nNOOP\r\nRSET\r\nEXPN list\r\nQUIT\r\nNOOP\r\n",
    );
    assert!(out.starts_with("214-2.0.0 "));
    assert_eq!(
        codes(&out),
        [
            "214 2.0.0",
            "250 2.0.0",
            "250 2.0.0",
            "502 5.5.1",
            "221 2.0.0"
        ]
    );
    assert!(s.wants_close());
}

#[test]
fn smtputf8_addresses_need_the_parameter() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(
        &mut s,
        "EHLO c\r\nMAIL FROM:<用户@例子.广告>\r\nMAIL FROM:<用户@例子.广告> SMTPUTF8\r\nRCPT TO:<alice@example.org>\r\n".as_bytes(),
    );
    assert_eq!(&codes(&out)[1..], ["553 5.6.7", "250 2.1.0", "250 2.1.5"]);
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(
        &mut s,
        "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<ünï@example.org>\r\n".as_bytes(),
    );
    assert_eq!(codes(&out)[2], "553 5.6.7");
}

#[test]
fn binarymime_is_refused() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example> BODY=BINARYMIME\r\n",
    );
    assert_eq!(codes(&out)[1], "555 5.5.4");
}

#[test]
fn trace_prefix_uses_esmtpsa_when_tls_and_auth() {
    let mut s = authed_submission();
    let (_, envs) = converse(
        &mut s,
        b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n",
    );
    let env = &envs[0];
    let prefix = std::str::from_utf8(&env.prefix).unwrap();
    assert!(prefix.starts_with("Return-Path: <alice@example.org>\r\nReceived: from client ([192.0.2.7])\r\n\tby mx.example.org with ESMTPSA id "), "{prefix}");
    assert!(prefix.contains(&format!("id {}\r\n\tfor <bob@example.org>;", env.queue_id)));
    assert!(env.relay_prefix().starts_with(b"Received: "));
    assert!(env.tls);
    // Plain MX over plaintext.
    let mut s = session(ListenerKind::Mx, false);
    let (_, envs) = converse(&mut s, b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nx\r\n.\r\n");
    let prefix = std::str::from_utf8(&envs[0].prefix).unwrap();
    assert!(prefix.contains(" with ESMTP id "), "{prefix}");
    assert!(!prefix.contains("for <"));
}

#[test]
fn delivery_failure_replies() {
    for (err, code) in [
        (DeliveryError::Temporary, "451 4.3.0"),
        (DeliveryError::InsufficientStorage, "452 4.3.1"),
        (DeliveryError::Permanent, "554 5.3.0"),
    ] {
        let mut s = session(ListenerKind::Mx, false);
        let (p, _) = feed(&mut s, b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n");
        assert!(matches!(p.action, Some(Action::Deliver(_))));
        assert!(s.is_waiting());
        s.delivery_result(Err(err));
        assert_eq!(codes(&String::from_utf8(s.take_output()).unwrap()), [code]);
        // The transaction is over either way.
        let (_, out) = feed(&mut s, b"RCPT TO:<bob@example.org>\r\n");
        assert_eq!(codes(&out), ["503 5.5.1"]);
    }
}

#[test]
fn queue_ids_differ_between_messages() {
    let mut s = session(ListenerKind::Mx, false);
    let (_, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\ny\r\n.\r\n",
    );
    assert_eq!(envs.len(), 2);
    assert_ne!(envs[0].queue_id, envs[1].queue_id);
}

#[test]
fn bdat_chunks_assemble_a_message() {
    let mut s = session(ListenerKind::Mx, false);
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 12\r\nSubject: x\r\nBDAT 10 LAST\r\n\r\n.hello\r\nNOOP\r\n",
    );
    assert_eq!(
        &codes(&out)[1..],
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert!(replies(&out)[3].ends_with("12 octets received"));
    assert_eq!(envs[0].body, &b"Subject: x\r\n\r\n.hello\r\n"[..]);
    // BDAT 0 LAST with nothing following still finishes.
    let mut s = session(ListenerKind::Mx, false);
    let (out, envs) = converse(&mut s, b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 3\r\nx\r\nBDAT 0 LAST\r\n");
    assert_eq!(envs.len(), 1, "{out}");
    assert_eq!(envs[0].body, &b"x\r\n"[..]);
}

#[test]
fn mid_send_is_a_begun_message_or_an_awaited_chunk() {
    let mut s = session(ListenerKind::Mx, false);
    let (p, _) = feed(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
    );
    assert!(p.consumed > 0);
    assert!(
        !s.is_mid_send(),
        "after 354 nothing of the message is here yet"
    );
    feed(&mut s, b"Subject: x\r\n");
    assert!(s.is_mid_send(), "a message begun");
    let mut s = session(ListenerKind::Mx, false);
    feed(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 5 LAST\r\n",
    );
    assert!(s.is_mid_send(), "a chunk announced, none of it here");
    assert!(!session(ListenerKind::Mx, false).is_mid_send());
}

#[test]
fn refused_bdat_chunk_is_skipped_not_executed() {
    let mut s = session(ListenerKind::Mx, false);
    let (p, out) = feed(&mut s, b"EHLO c\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(&codes(&out)[1..], ["503 5.5.1", "250 2.0.0"]);
    assert!(!s.wants_close());
    assert_eq!(p.completed[1..], [CommandKind::Bdat, CommandKind::Noop]);
    // Bad keyword with a known size: skip the chunk too.
    let (_, out) = feed(&mut s, b"BDAT 6 LAZT\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes(&out), ["501 5.5.4", "250 2.0.0"]);
    // No usable size: framing is lost, the session closes.
    let (_, out) = feed(&mut s, b"BDAT lots\r\nQUIT\r\n");
    assert_eq!(codes(&out), ["501 5.5.4"]);
    assert!(s.wants_close());
}

#[test]
fn bdat_size_limit_fails_transaction_and_following_chunks() {
    let mut cfg = config(ListenerKind::Mx);
    cfg.max_message_size = 10;
    let mut s = session_with(cfg, false);
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 12\r\n0123456789\r\nBDAT 2 LAST\r\nab",
    );
    assert!(envs.is_empty());
    assert_eq!(&codes(&out)[3..], ["552 5.3.4", "503 5.5.1"]);
    // DATA after BDAT in one transaction is refused.
    let mut s = session(ListenerKind::Mx, false);
    let (_, out) = feed(&mut s, b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 1\r\nxDATA\r\n");
    assert_eq!(&codes(&out)[3..], ["250 2.0.0", "503 5.5.1"]);
}

#[test]
fn idle_timeout_says_421_once_and_closes() {
    let mut s = session(ListenerKind::Mx, false);
    s.timed_out();
    s.timed_out();
    let out = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(codes(&out), ["421 4.4.2"]);
    assert!(s.wants_close());
}

#[test]
fn shutdown_says_421_between_commands_only() {
    let mut s = session(ListenerKind::Mx, false);
    let _ = feed(&mut s, b"EHLO c\r\n");
    assert!(s.is_between_commands());
    // Inside DATA the message must be let through (or time out), not cut.
    let _ = feed(
        &mut s,
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n",
    );
    assert!(!s.is_between_commands());
    // So is a message assembled from BDAT chunks.
    let mut s = session(ListenerKind::Mx, false);
    let _ = feed(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 3\r\nabc",
    );
    assert!(!s.is_between_commands());
    let mut s = session(ListenerKind::Mx, false);
    let _ = feed(&mut s, b"EHLO c\r\n");
    s.shutting_down();
    s.shutting_down();
    let out = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(codes(&out), ["421 4.3.2"]);
    assert!(s.wants_close());
}

#[test]
fn memory_pressure_refuses_new_messages_with_452() {
    let mut s = session(ListenerKind::Mx, false);
    s.set_memory_pressure(true);
    let (_, out) = feed(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nNOOP\r\n",
    );
    // DATA refused without a 354: the NOOP that follows is a command.
    assert_eq!(&codes(&out)[3..], ["452 4.3.1", "250 2.0.0"]);
    // The transaction survives: DATA works once memory is back.
    s.set_memory_pressure(false);
    let (out, envs) = converse(&mut s, b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    assert_eq!(codes(&out), ["354 End", "250 2.0.0"]);
    assert_eq!(envs.len(), 1);
    // The first BDAT chunk is refused and skipped, never executed.
    s.set_memory_pressure(true);
    let (_, out) = feed(
        &mut s,
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n",
    );
    assert_eq!(&codes(&out)[2..], ["452 4.3.1", "250 2.0.0"]);
    assert!(!s.wants_close());
}

#[test]
fn shed_message_is_read_to_its_end_and_refused_with_452() {
    let mut s = session(ListenerKind::Mx, false);
    assert!(!s.shed_message(), "nothing to shed outside a message");
    let (_, out) = feed(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nfirst\r\n",
    );
    assert_eq!(codes(&out).last().map(String::as_str), Some("354 End"));
    assert!(s.buffered_message_bytes() > 0);
    assert!(s.shed_message());
    assert_eq!(s.buffered_message_bytes(), 0);
    let (out, envs) = converse(&mut s, b"more\r\n.\r\nNOOP\r\n");
    assert!(envs.is_empty());
    assert_eq!(codes(&out), ["452 4.3.1", "250 2.0.0"]);
    // The same for a message arriving in BDAT chunks.
    let (_, _) = feed(
        &mut s,
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 5\r\nhello",
    );
    assert!(s.buffered_message_bytes() > 0);
    assert!(s.shed_message());
    let (out, envs) = converse(&mut s, b"BDAT 3 LAST\r\nabc");
    assert!(envs.is_empty());
    assert_eq!(codes(&out), ["452 4.3.1"]);
}

#[test]
fn pipelined_chunks_after_a_failed_bdat_are_discarded_without_421() {
    let mut cfg = config(ListenerKind::Mx);
    cfg.max_message_size = 10;
    let mut s = session_with(cfg, false);
    let mut input =
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\n".to_vec();
    for _ in 0..30 {
        input.extend_from_slice(b"BDAT 8\r\n01234567");
    }
    input.extend_from_slice(b"BDAT 1 LAST\r\nxNOOP\r\nBDAT 1 LAST\r\nx");
    let (out, envs) = converse(&mut s, &input);
    assert!(envs.is_empty());
    let c = codes(&out);
    // Chunk 2 breaks the limit; the 29 chunks after it (LAST included) are thrown away
    // without counting as client errors; the NOOP is answered; a BDAT outside any
    // transaction is an error again.
    assert_eq!(&c[3..6], ["250 2.0.0", "552 5.3.4", "503 5.5.1"]);
    assert_eq!(c.iter().filter(|c| *c == "503 5.5.1").count(), 30, "{c:?}");
    assert_eq!(&c[c.len() - 2..], ["250 2.0.0", "503 5.5.1"]);
    assert!(!s.wants_close(), "{out}");
    assert!(out.contains("chunk discarded"));
    assert!(out.ends_with("Error: need MAIL command\r\n"), "{out}");
}

#[test]
fn sasl_line_limit_is_larger_than_command_limit() {
    let mut s = session(ListenerKind::Submission, true);
    feed(&mut s, b"EHLO c\r\nAUTH PLAIN\r\n");
    let long = format!("{}\r\n", "A".repeat(5000));
    let (_, out) = feed(&mut s, long.as_bytes());
    // 5000 'A's decode fine but are not a PLAIN message.
    assert_eq!(codes(&out), ["535 5.7.8"]);
    feed(&mut s, b"AUTH PLAIN\r\n");
    let too_long = "A".repeat(SASL_LINE_LIMIT + 10);
    let (p, _) = feed(&mut s, too_long.as_bytes());
    assert_eq!(p.consumed, too_long.len());
    let (_, out) = feed(&mut s, b"\r\nNOOP\r\n");
    assert_eq!(codes(&out), ["500 5.5.6", "250 2.0.0"]);
}

#[test]
fn header_limits_apply_in_session() {
    let mut cfg = config(ListenerKind::Mx);
    cfg.max_headers = 2;
    let mut s = session_with(cfg, false);
    let (out, envs) = converse(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\nx\r\n.\r\n",
    );
    assert!(envs.is_empty());
    assert_eq!(codes(&out).last().map(String::as_str), Some("552 5.3.4"));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SCRIPT: &[u8] = b"EHLO fuzz.example\r\nSTARTTLS\r\nEHLO again\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHB3\r\nAUTH LOGIN\r\nYWxpY2U=\r\ncHc=\r\nMAIL FROM:<alice@example.org> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<bob@example.org> NOTIFY=NEVER\r\nRCPT TO:<\"q\\\"x\"@example.org>\r\nRCPT TO:<@a,@b:c@d>\r\nDATA\r\nSubject: x\r\n\r\n..body\r\n.\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\nVRFY x\r\nHELP\r\nRSET\r\nNOOP\r\nQUIT\r\n";

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let ops = prop::collection::vec(
            (
                0usize..4,
                any::<prop::sample::Index>(),
                any::<u8>(),
                0usize..40,
            ),
            0..12,
        );
        ops.prop_map(|ops| {
            let mut v = SCRIPT.to_vec();
            for (op, at, byte, n) in ops {
                let i = at.index(v.len() + 1);
                match op {
                    0 => v.insert(i, byte),
                    1 if i < v.len() => v[i] = byte,
                    2 => {
                        let end = (i + n).min(v.len());
                        v.drain(i..end);
                    }
                    _ => {
                        let end = (i + n).min(v.len());
                        let dup = v[i..end].to_vec();
                        v.splice(i..i, dup);
                    }
                }
            }
            v
        })
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![prop::collection::vec(any::<u8>(), 0..3000), mutated()]
    }

    /// Drives a session like a network driver would, answering every action.
    fn drive(kind: ListenerKind, tls: bool, data: &[u8], chunk: usize, auth_ok: bool) {
        let mut cfg = config(kind);
        cfg.max_message_size = 2048;
        cfg.max_line_length = 200;
        let max = cfg.max_message_size;
        let mut s = session_with(cfg, tls);
        let dir = Dir::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut rounds = 0;
        while rounds < 10_000 && !s.wants_close() {
            rounds += 1;
            let more = (data.len() - fed).min(chunk);
            buf.extend_from_slice(&data[fed..fed + more]);
            fed += more;
            let p = s.feed(&buf, &dir);
            assert!(p.consumed <= buf.len());
            assert!(s.buffered_message_bytes() <= max);
            buf.drain(..p.consumed);
            match p.action {
                Some(Action::StartTls) => {
                    buf.clear();
                    s.tls_established();
                }
                Some(Action::Authenticate { user, .. }) => {
                    s.auth_result(auth_ok.then_some(user));
                }
                Some(Action::Deliver(env)) => {
                    assert!(env.body.len() <= max);
                    s.delivery_result(Ok(()));
                }
                None if more == 0 => break,
                None => {}
            }
            // A driver's buffer only holds an unfinished command line.
            assert!(
                buf.len() <= SASL_LINE_LIMIT + chunk,
                "buffer grew to {}",
                buf.len()
            );
            let out = s.take_output();
            assert!(out.ends_with(b"\r\n") || out.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn parser_never_panics(data in input(), limit in 1usize..600) {
            match parser::parse(&data, limit) {
                Parsed::Complete { len, .. } => prop_assert!(len <= data.len() && len <= limit.max(SASL_LINE_LIMIT)),
                Parsed::TooLong(Some(len)) => prop_assert!(len <= data.len()),
                Parsed::TooLong(None) | Parsed::Incomplete => {}
            }
            let mut r = DataReader::new(Framing::DotStuffed, DataLimits { max_message_size: 512, ..DataLimits::default() }, None);
            if let DataStatus::Complete { consumed } = r.feed(&data) {
                prop_assert!(consumed <= data.len());
                prop_assert!(data[..consumed].ends_with(b"\r\n.\r\n") || consumed == 3);
            }
            prop_assert!(r.buffered() <= 512);
        }

        #[test]
        fn session_never_panics(
            data in input(),
            chunk in 1usize..400,
            kind in prop_oneof![Just(ListenerKind::Mx), Just(ListenerKind::Submission), Just(ListenerKind::Submissions)],
            auth_ok in any::<bool>(),
        ) {
            let tls = kind == ListenerKind::Submissions;
            drive(kind, tls, &data, chunk, auth_ok);
        }
    }
}

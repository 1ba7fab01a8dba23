//! Unit tests of the session state machine (kept apart from `session.rs` for length).

use super::*;
use crate::pop3::maildrop::MaildropEntry;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;

const MSG1: &[u8] =
    b"From: a@example.org\r\nSubject: one\r\n\r\nbody line 1\r\n.\r\n..x\r\nlast\r\n";
const MSG2: &[u8] = b"Subject: two\r\n\r\nno final newline";
const MSG3: &[u8] = b"Subject: three\r\n\r\n";

fn config(f: impl FnOnce(&mut Pop3Config)) -> Arc<Pop3Config> {
    let mut c = Pop3Config {
        hostname: "mail.test".into(),
        ..Pop3Config::default()
    };
    f(&mut c);
    Arc::new(c)
}

fn maildrop() -> Maildrop {
    Maildrop {
        uidvalidity: 0x1234_abcd,
        entries: vec![
            MaildropEntry {
                uid: 10,
                size: MSG1.len() as u64,
            },
            MaildropEntry {
                uid: 11,
                size: MSG2.len() as u64,
            },
            MaildropEntry {
                uid: 15,
                size: MSG3.len() as u64,
            },
        ],
    }
}

fn body_of(uid: u32) -> Bytes {
    Bytes::from_static(match uid {
        10 => MSG1,
        11 => MSG2,
        _ => MSG3,
    })
}

/// A minimal in-memory driver around a session.
struct Client {
    s: Session,
    input: Vec<u8>,
    completed: Vec<CommandKind>,
}

impl Client {
    fn new(config: Arc<Pop3Config>, transport: Transport) -> Self {
        let mut c = Client {
            s: Session::new(config, transport),
            input: Vec::new(),
            completed: Vec::new(),
        };
        c.out(); // drop the greeting
        c
    }

    fn plain() -> Self {
        Self::new(config(|_| {}), Transport::Plaintext)
    }

    fn tls() -> Self {
        Self::new(config(|_| {}), Transport::ImplicitTls)
    }

    /// A TLS session already in TRANSACTION with [`maildrop`].
    fn logged_in() -> Self {
        let mut c = Self::tls();
        c.login();
        c.completed.clear();
        c
    }

    fn login(&mut self) {
        assert_eq!(self.send("USER alice\r\n"), Event::NeedInput);
        assert_eq!(
            self.send("PASS pw\r\n"),
            Event::Action(Action::Authenticate {
                user: "alice".into(),
                password: "pw".into()
            })
        );
        self.s
            .auth_result(Some("alice@example.org".into()))
            .unwrap();
        assert_eq!(
            self.run(),
            Event::Action(Action::OpenMaildrop {
                account: "alice@example.org".into()
            })
        );
        self.s.maildrop_result(Ok(maildrop())).unwrap();
        assert_eq!(self.run(), Event::NeedInput);
        assert!(self.s.is_authenticated());
        assert_eq!(
            self.out(),
            "+OK send PASS\r\n+OK maildrop has 3 messages (114 octets)\r\n"
        );
    }

    /// Append bytes and run until the session needs something other than more processing.
    fn send(&mut self, data: impl AsRef<[u8]>) -> Event {
        self.input.extend_from_slice(data.as_ref());
        self.run()
    }

    fn run(&mut self) -> Event {
        loop {
            let p = self.s.process(&self.input);
            assert!(p.consumed <= self.input.len());
            self.input.drain(..p.consumed);
            match p.event {
                Event::Completed(kind) => self.completed.push(kind),
                other => return other,
            }
        }
    }

    fn out(&mut self) -> String {
        String::from_utf8(self.s.take_output().to_vec()).unwrap()
    }

    /// Send one command and return the reply, asserting it completed as `kind`.
    fn cmd(&mut self, line: &str, kind: CommandKind) -> String {
        self.completed.clear();
        let event = self.send(format!("{line}\r\n"));
        assert_eq!(event, Event::NeedInput, "after {line}");
        assert_eq!(self.completed, vec![kind], "after {line}");
        self.out()
    }

    /// RETR/TOP: check the Fetch action, answer it, return the reply.
    fn fetch(&mut self, line: &str, uid: u32, kind: CommandKind) -> String {
        self.completed.clear();
        assert_eq!(
            self.send(format!("{line}\r\n")),
            Event::Action(Action::Fetch { uid })
        );
        self.s.body_result(Ok(body_of(uid))).unwrap();
        assert_eq!(self.run(), Event::NeedInput);
        assert_eq!(self.completed, vec![kind]);
        self.out()
    }
}

// ---- greeting and CAPA ----

#[test]
fn greeting_has_no_apop_timestamp() {
    let mut s = Session::new(config(|_| {}), Transport::Plaintext);
    let greeting = s.take_output();
    assert_eq!(&greeting[..], b"+OK mail.test ringpost POP3 ready\r\n");
    assert!(!greeting.contains(&b'<'));
}

#[test]
fn capa_plaintext_offers_stls_but_no_login() {
    let mut c = Client::plain();
    let capa = c.cmd("CAPA", CommandKind::Capa);
    assert_eq!(
        capa,
        "+OK Capability list follows\r\nSTLS\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nIMPLEMENTATION ringpost\r\n.\r\n"
    );
}

#[test]
fn capa_tls_offers_login_but_no_stls() {
    let mut c = Client::tls();
    let capa = c.cmd("capa", CommandKind::Capa);
    assert_eq!(
        capa,
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION ringpost\r\n.\r\n"
    );
    // The same list in TRANSACTION (RFC 2449: AUTHORIZATION capabilities in both states).
    let mut c = Client::logged_in();
    assert_eq!(c.cmd("CAPA", CommandKind::Capa), capa);
}

#[test]
fn capa_without_certificate_has_no_stls() {
    let mut c = Client::new(config(|c| c.stls_available = false), Transport::Plaintext);
    let capa = c.cmd("CAPA", CommandKind::Capa);
    assert!(!capa.contains("STLS"));
    assert!(!capa.contains("USER"));
    assert_eq!(
        c.cmd("STLS", CommandKind::Stls),
        "-ERR STLS not available\r\n"
    );
}

#[test]
fn plaintext_auth_allowed_by_config() {
    let mut c = Client::new(
        config(|c| c.allow_plaintext_auth = true),
        Transport::Plaintext,
    );
    let capa = c.cmd("CAPA", CommandKind::Capa);
    assert!(
        capa.contains("STLS\r\n") && capa.contains("USER\r\n") && capa.contains("SASL PLAIN\r\n")
    );
    assert_eq!(c.cmd("USER bob", CommandKind::User), "+OK send PASS\r\n");
}

// ---- plaintext refusals and STLS ----

#[test]
fn plaintext_login_is_refused_with_auth_code() {
    let mut c = Client::plain();
    for (line, kind) in [
        ("USER alice", CommandKind::User),
        ("PASS secret", CommandKind::Pass),
        ("AUTH PLAIN AGFsaWNlAHB3", CommandKind::Auth),
        ("AUTH PLAIN", CommandKind::Auth),
        ("AUTH", CommandKind::Auth),
    ] {
        let reply = c.cmd(line, kind);
        assert!(reply.starts_with("-ERR [AUTH] "), "{line}: {reply}");
    }
}

#[test]
fn stls_discards_pipelined_bytes() {
    let mut c = Client::plain();
    // A man in the middle appends a USER command after STLS in the same packet.
    assert_eq!(c.send("STLS\r\nUSER evil\r\nPASS x\r\n"), Event::StartTls);
    assert_eq!(c.completed, vec![CommandKind::Stls]);
    assert_eq!(c.out(), "+OK Begin TLS negotiation\r\n");
    assert_eq!(
        c.input, b"USER evil\r\nPASS x\r\n",
        "nothing after STLS consumed"
    );
    // StartTls is sticky until the handshake is done.
    assert_eq!(c.run(), Event::StartTls);
    c.input.clear(); // the driver drops them
    c.s.tls_established().unwrap();
    assert!(c.s.is_tls());
    assert_eq!(c.out(), "", "no second greeting");
    // The injected USER left no trace.
    assert_eq!(c.cmd("PASS x", CommandKind::Pass), "-ERR USER first\r\n");
    let capa = c.cmd("CAPA", CommandKind::Capa);
    assert!(!capa.contains("STLS") && capa.contains("USER\r\n"));
}

#[test]
fn stls_forgets_user_given_before() {
    let mut c = Client::new(
        config(|c| c.allow_plaintext_auth = true),
        Transport::Plaintext,
    );
    c.cmd("USER alice", CommandKind::User);
    assert_eq!(c.send("STLS\r\n"), Event::StartTls);
    c.s.tls_established().unwrap();
    c.out();
    assert_eq!(c.cmd("PASS pw", CommandKind::Pass), "-ERR USER first\r\n");
}

#[test]
fn stls_refused_when_tls_active_or_logged_in() {
    let mut c = Client::tls();
    assert_eq!(
        c.cmd("STLS", CommandKind::Stls),
        "-ERR TLS already active\r\n"
    );
    let mut c = Client::logged_in();
    assert_eq!(
        c.cmd("STLS", CommandKind::Stls),
        "-ERR STLS only valid in AUTHORIZATION state\r\n"
    );
}

#[test]
fn tls_established_without_stls_is_a_driver_error() {
    let mut c = Client::plain();
    assert_eq!(c.s.tls_established(), Err(DriverError::NotStartingTls));
    assert!(!c.s.is_tls());
}

// ---- USER / PASS ----

#[test]
fn user_pass_login() {
    let mut c = Client::tls();
    c.login();
    assert_eq!(c.completed, vec![CommandKind::User, CommandKind::Pass]);
    assert_eq!(c.cmd("STAT", CommandKind::Stat), "+OK 3 114\r\n");
}

#[test]
fn pass_needs_user_immediately_before() {
    let mut c = Client::tls();
    assert_eq!(c.cmd("PASS pw", CommandKind::Pass), "-ERR USER first\r\n");
    c.cmd("USER alice", CommandKind::User);
    c.cmd("CAPA", CommandKind::Capa);
    assert_eq!(c.cmd("PASS pw", CommandKind::Pass), "-ERR USER first\r\n");
    c.cmd("USER alice", CommandKind::User);
    c.cmd("BOGUS", CommandKind::Invalid);
    assert_eq!(c.cmd("PASS pw", CommandKind::Pass), "-ERR USER first\r\n");
}

#[test]
fn user_may_be_repeated_and_last_one_wins() {
    let mut c = Client::tls();
    c.cmd("USER alice", CommandKind::User);
    c.cmd("USER bob", CommandKind::User);
    assert_eq!(
        c.send("PASS pw\r\n"),
        Event::Action(Action::Authenticate {
            user: "bob".into(),
            password: "pw".into()
        })
    );
}

#[test]
fn non_utf8_user_or_password() {
    let mut c = Client::tls();
    c.completed.clear();
    assert_eq!(c.send(b"USER \xff\r\n"), Event::NeedInput);
    assert_eq!(c.out(), "-ERR invalid user name\r\n");
    c.cmd("USER alice", CommandKind::User);
    c.completed.clear();
    assert_eq!(c.send(b"PASS \xff\r\n"), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Pass]);
    assert_eq!(c.out(), "-ERR [AUTH] authentication failed\r\n");
}

#[test]
fn wrong_password_then_close_after_limit() {
    let mut c = Client::tls();
    for attempt in 1..=3 {
        c.cmd("USER alice", CommandKind::User);
        c.completed.clear();
        assert!(matches!(
            c.send("PASS wrong\r\n"),
            Event::Action(Action::Authenticate { .. })
        ));
        assert_eq!(c.run(), Event::AwaitingResult);
        c.s.auth_result(None).unwrap();
        let event = c.run();
        assert_eq!(c.completed, vec![CommandKind::Pass]);
        let reply = c.out();
        if attempt < 3 {
            assert_eq!(event, Event::NeedInput);
            assert_eq!(reply, "-ERR [AUTH] authentication failed\r\n");
        } else {
            assert_eq!(event, Event::Close);
            assert!(reply.starts_with("-ERR [AUTH] authentication failed; too many"));
        }
    }
    // Closed sessions read nothing more.
    assert_eq!(c.send("CAPA\r\n"), Event::Close);
    assert_eq!(c.out(), "");
}

#[test]
fn maildrop_in_use() {
    let mut c = Client::tls();
    c.cmd("USER alice", CommandKind::User);
    c.send("PASS pw\r\n");
    c.s.auth_result(Some("alice".into())).unwrap();
    assert!(matches!(
        c.run(),
        Event::Action(Action::OpenMaildrop { .. })
    ));
    c.s.maildrop_result(Err(MaildropError::InUse)).unwrap();
    assert_eq!(c.run(), Event::NeedInput);
    assert_eq!(c.out(), "-ERR [IN-USE] maildrop locked\r\n");
    assert!(!c.s.is_authenticated());
    assert_eq!(
        c.cmd("STAT", CommandKind::Stat),
        "-ERR command not valid in AUTHORIZATION state\r\n"
    );
}

#[test]
fn maildrop_unavailable() {
    let mut c = Client::tls();
    c.cmd("USER alice", CommandKind::User);
    c.send("PASS pw\r\n");
    c.s.auth_result(Some("alice".into())).unwrap();
    c.run();
    c.s.maildrop_result(Err(MaildropError::Unavailable))
        .unwrap();
    c.run();
    assert_eq!(c.out(), "-ERR [SYS/TEMP] maildrop unavailable\r\n");
}

#[test]
fn results_without_pending_action_are_driver_errors() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.s.auth_result(None),
        Err(DriverError::UnexpectedResult("Authenticate"))
    );
    assert_eq!(
        c.s.maildrop_result(Ok(Maildrop::default())),
        Err(DriverError::UnexpectedResult("OpenMaildrop"))
    );
    assert_eq!(
        c.s.body_result(Ok(Bytes::new())),
        Err(DriverError::UnexpectedResult("Fetch"))
    );
    assert_eq!(
        c.s.commit_result(true),
        Err(DriverError::UnexpectedResult("Commit"))
    );
    // Nothing changed.
    assert_eq!(c.cmd("STAT", CommandKind::Stat), "+OK 3 114\r\n");
}

#[test]
fn pipelined_commands_wait_behind_an_action() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.send("RETR 3\r\nNOOP\r\n"),
        Event::Action(Action::Fetch { uid: 15 })
    );
    assert_eq!(c.input, b"NOOP\r\n");
    assert_eq!(c.run(), Event::AwaitingResult);
    assert_eq!(c.input, b"NOOP\r\n", "nothing consumed while waiting");
    c.s.body_result(Ok(body_of(15))).unwrap();
    assert_eq!(c.run(), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Retr, CommandKind::Noop]);
    assert_eq!(
        c.out(),
        "+OK 18 octets\r\nSubject: three\r\n\r\n.\r\n+OK\r\n"
    );
}

// ---- AUTH PLAIN ----

fn plain(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

#[test]
fn auth_plain_initial_response() {
    let mut c = Client::tls();
    let line = format!("AUTH PLAIN {}\r\n", plain(b"\0alice\0pw"));
    assert_eq!(
        c.send(line),
        Event::Action(Action::Authenticate {
            user: "alice".into(),
            password: "pw".into()
        })
    );
    c.s.auth_result(Some("alice".into())).unwrap();
    assert!(matches!(
        c.run(),
        Event::Action(Action::OpenMaildrop { .. })
    ));
    c.s.maildrop_result(Ok(maildrop())).unwrap();
    assert_eq!(c.run(), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Auth]);
    assert_eq!(c.out(), "+OK maildrop has 3 messages (114 octets)\r\n");
}

#[test]
fn auth_plain_continuation() {
    let mut c = Client::tls();
    assert_eq!(c.send("AUTH PLAIN\r\n"), Event::NeedInput);
    assert_eq!(c.out(), "+ \r\n");
    assert!(c.completed.is_empty());
    assert_eq!(
        c.send(format!("{}\r\n", plain(b"\0alice\0pw"))),
        Event::Action(Action::Authenticate {
            user: "alice".into(),
            password: "pw".into()
        })
    );
}

#[test]
fn auth_plain_continuation_already_buffered() {
    // The response arrived together with AUTH: it must be used without waiting for more input.
    let mut c = Client::tls();
    let both = format!("AUTH PLAIN\r\n{}\r\n", plain(b"\0alice\0pw"));
    assert!(matches!(
        c.send(both),
        Event::Action(Action::Authenticate { .. })
    ));
    assert!(c.input.is_empty());
    assert_eq!(c.out(), "+ \r\n");
}

#[test]
fn auth_plain_cancel_and_errors() {
    let mut c = Client::tls();
    c.send("AUTH PLAIN\r\n");
    c.out();
    assert_eq!(c.send("*\r\n"), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Auth]);
    assert_eq!(c.out(), "-ERR authentication cancelled\r\n");
    // The session reads commands again.
    assert_eq!(
        c.cmd("NOOP", CommandKind::Noop),
        "-ERR command not valid in AUTHORIZATION state\r\n"
    );

    c.send("AUTH PLAIN\r\n");
    c.out();
    c.completed.clear();
    c.send("!!!\r\n");
    assert_eq!(c.completed, vec![CommandKind::Auth]);
    assert_eq!(c.out(), "-ERR invalid base64\r\n");

    assert_eq!(
        c.cmd("AUTH PLAIN =", CommandKind::Auth),
        "-ERR malformed PLAIN response\r\n"
    );
    assert_eq!(
        c.cmd(
            &format!("AUTH PLAIN {}", plain(b"bob\0alice\0pw")),
            CommandKind::Auth
        ),
        "-ERR [AUTH] authorization identity differs from authentication identity\r\n"
    );
    assert_eq!(
        c.cmd("AUTH CRAM-MD5", CommandKind::Auth),
        "-ERR unsupported authentication mechanism\r\n"
    );
    assert_eq!(
        c.cmd("AUTH", CommandKind::Auth),
        "+OK methods supported\r\nPLAIN\r\n.\r\n"
    );
    assert_eq!(
        c.cmd(
            "APOP alice 0123456789abcdef0123456789abcdef",
            CommandKind::Apop
        ),
        "-ERR APOP not supported\r\n"
    );
}

#[test]
fn auth_plain_failure_counts() {
    let mut c = Client::tls();
    c.send(format!("AUTH PLAIN {}\r\n", plain(b"\0alice\0bad")));
    c.s.auth_result(None).unwrap();
    assert_eq!(c.run(), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Auth]);
    assert_eq!(c.out(), "-ERR [AUTH] authentication failed\r\n");
}

#[test]
fn overlong_sasl_response() {
    let mut c = Client::tls();
    c.send("AUTH PLAIN\r\n");
    c.out();
    assert_eq!(c.send(vec![b'A'; 10_000]), Event::NeedInput);
    assert!(c.input.is_empty(), "overlong bytes dropped");
    assert_eq!(c.send("AAAA\r\nCAPA\r\n"), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Invalid, CommandKind::Capa]);
    assert!(c.out().starts_with("-ERR line too long\r\n+OK Capability"));
}

// ---- state checks ----

#[test]
fn transaction_commands_refused_before_login() {
    let mut c = Client::tls();
    for (line, kind) in [
        ("STAT", CommandKind::Stat),
        ("LIST", CommandKind::List),
        ("LIST 1", CommandKind::List),
        ("RETR 1", CommandKind::Retr),
        ("DELE 1", CommandKind::Dele),
        ("NOOP", CommandKind::Noop),
        ("RSET", CommandKind::Rset),
        ("TOP 1 1", CommandKind::Top),
        ("UIDL", CommandKind::Uidl),
    ] {
        assert_eq!(
            c.cmd(line, kind),
            "-ERR command not valid in AUTHORIZATION state\r\n"
        );
    }
}

#[test]
fn login_commands_refused_after_login() {
    let mut c = Client::logged_in();
    for (line, kind) in [
        ("USER bob", CommandKind::User),
        ("PASS x", CommandKind::Pass),
        ("AUTH PLAIN", CommandKind::Auth),
        ("APOP a b", CommandKind::Apop),
    ] {
        assert_eq!(c.cmd(line, kind), "-ERR already authenticated\r\n");
    }
}

#[test]
fn invalid_lines() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.cmd("XYZZY", CommandKind::Invalid),
        "-ERR unknown command\r\n"
    );
    assert_eq!(c.cmd("", CommandKind::Invalid), "-ERR empty command\r\n");
    assert_eq!(
        c.cmd("RETR", CommandKind::Invalid),
        "-ERR missing argument\r\n"
    );
    assert_eq!(
        c.cmd("RETR x", CommandKind::Invalid),
        "-ERR invalid number\r\n"
    );
    assert_eq!(
        c.cmd("STAT 1", CommandKind::Invalid),
        "-ERR too many arguments\r\n"
    );
}

#[test]
fn long_line_is_answered_and_session_goes_on() {
    let mut c = Client::logged_in();
    // Whole line in the buffer, followed by a pipelined command.
    let long = format!("NOOP {}\r\nSTAT\r\n", "x".repeat(600));
    assert_eq!(c.send(long), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Invalid, CommandKind::Stat]);
    assert_eq!(c.out(), "-ERR line too long\r\n+OK 3 114\r\n");

    // Line arriving in pieces, longer than the buffer the driver would keep.
    c.completed.clear();
    assert_eq!(
        c.send("LIST ".to_string() + &"9".repeat(700)),
        Event::NeedInput
    );
    assert!(c.input.is_empty(), "overlong prefix dropped");
    assert_eq!(c.out(), "");
    assert_eq!(c.send("9".repeat(5000)), Event::NeedInput);
    assert!(c.input.is_empty());
    assert_eq!(c.send("99\r\nNOOP\r\n"), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Invalid, CommandKind::Noop]);
    assert_eq!(c.out(), "-ERR line too long\r\n+OK\r\n");
}

// ---- TRANSACTION ----

#[test]
fn stat_list_uidl() {
    let mut c = Client::logged_in();
    assert_eq!(c.cmd("STAT", CommandKind::Stat), "+OK 3 114\r\n");
    assert_eq!(
        c.cmd("LIST", CommandKind::List),
        "+OK 3 messages (114 octets)\r\n1 64\r\n2 32\r\n3 18\r\n.\r\n"
    );
    assert_eq!(c.cmd("LIST 2", CommandKind::List), "+OK 2 32\r\n");
    assert_eq!(
        c.cmd("LIST 0", CommandKind::List),
        "-ERR no such message\r\n"
    );
    assert_eq!(
        c.cmd("LIST 4", CommandKind::List),
        "-ERR no such message\r\n"
    );
    assert_eq!(
        c.cmd("UIDL", CommandKind::Uidl),
        "+OK unique-id listing follows\r\n1 1234abcd0000000a\r\n2 1234abcd0000000b\r\n\
         3 1234abcd0000000f\r\n.\r\n"
    );
    assert_eq!(
        c.cmd("UIDL 3", CommandKind::Uidl),
        "+OK 3 1234abcd0000000f\r\n"
    );
    assert_eq!(
        c.cmd("UIDL 9", CommandKind::Uidl),
        "-ERR no such message\r\n"
    );
    assert_eq!(c.cmd("NOOP", CommandKind::Noop), "+OK\r\n");
}

#[test]
fn sizes_match_the_bodies() {
    assert_eq!(MSG1.len(), 64);
    assert_eq!(MSG2.len(), 32);
    assert_eq!(MSG3.len(), 18);
}

#[test]
fn uidl_is_stable_across_sessions_and_deletes() {
    let mut a = Client::logged_in();
    let first = a.cmd("UIDL", CommandKind::Uidl);
    a.cmd("DELE 1", CommandKind::Dele);
    assert_eq!(
        a.cmd("UIDL 2", CommandKind::Uidl),
        "+OK 2 1234abcd0000000b\r\n"
    );
    let mut b = Client::logged_in();
    assert_eq!(b.cmd("UIDL", CommandKind::Uidl), first);
    for line in first.lines().skip(1).filter(|l| *l != ".") {
        let id = line.split(' ').nth(1).unwrap();
        assert!(!id.is_empty() && id.len() <= 70);
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}

#[test]
fn empty_maildrop() {
    let mut c = Client::tls();
    c.cmd("USER alice", CommandKind::User);
    c.send("PASS pw\r\n");
    c.s.auth_result(Some("alice".into())).unwrap();
    c.run();
    c.s.maildrop_result(Ok(Maildrop::default())).unwrap();
    c.run();
    assert_eq!(c.out(), "+OK maildrop has 0 messages (0 octets)\r\n");
    assert_eq!(c.cmd("STAT", CommandKind::Stat), "+OK 0 0\r\n");
    assert_eq!(
        c.cmd("LIST", CommandKind::List),
        "+OK 0 messages (0 octets)\r\n.\r\n"
    );
    assert_eq!(
        c.cmd("UIDL", CommandKind::Uidl),
        "+OK unique-id listing follows\r\n.\r\n"
    );
    assert_eq!(
        c.cmd("RETR 1", CommandKind::Retr),
        "-ERR no such message\r\n"
    );
}

#[test]
fn retr_stuffs_dots() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.fetch("RETR 1", 10, CommandKind::Retr),
        "+OK 64 octets\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nbody line 1\r\n..\r\n\
         ...x\r\nlast\r\n.\r\n"
    );
}

#[test]
fn retr_body_without_final_crlf() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.fetch("RETR 2", 11, CommandKind::Retr),
        "+OK 32 octets\r\nSubject: two\r\n\r\nno final newline\r\n.\r\n"
    );
}

#[test]
fn retr_errors() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.cmd("RETR 0", CommandKind::Retr),
        "-ERR no such message\r\n"
    );
    assert_eq!(
        c.cmd("RETR 4", CommandKind::Retr),
        "-ERR no such message\r\n"
    );
    c.cmd("DELE 1", CommandKind::Dele);
    assert_eq!(
        c.cmd("RETR 1", CommandKind::Retr),
        "-ERR message deleted\r\n"
    );
    assert_eq!(
        c.cmd("TOP 1 0", CommandKind::Top),
        "-ERR message deleted\r\n"
    );

    for (err, text) in [
        (FetchError::Gone, "-ERR message no longer exists\r\n"),
        (
            FetchError::Unavailable,
            "-ERR [SYS/TEMP] unable to read message\r\n",
        ),
    ] {
        c.completed.clear();
        assert_eq!(
            c.send("RETR 2\r\n"),
            Event::Action(Action::Fetch { uid: 11 })
        );
        c.s.body_result(Err(err)).unwrap();
        assert_eq!(c.run(), Event::NeedInput);
        assert_eq!(c.completed, vec![CommandKind::Retr]);
        assert_eq!(c.out(), text);
    }
}

#[test]
fn top_zero_and_too_many_lines() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.fetch("TOP 1 0", 10, CommandKind::Top),
        "+OK top of message follows\r\nFrom: a@example.org\r\nSubject: one\r\n\r\n.\r\n"
    );
    assert_eq!(
        c.fetch("TOP 1 2", 10, CommandKind::Top),
        "+OK top of message follows\r\nFrom: a@example.org\r\nSubject: one\r\n\r\n\
         body line 1\r\n..\r\n.\r\n"
    );
    assert_eq!(
        c.fetch("TOP 1 1000", 10, CommandKind::Top),
        "+OK top of message follows\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nbody line 1\r\n\
         ..\r\n...x\r\nlast\r\n.\r\n"
    );
    assert_eq!(
        c.fetch("TOP 2 5", 11, CommandKind::Top),
        "+OK top of message follows\r\nSubject: two\r\n\r\nno final newline\r\n.\r\n"
    );
    assert_eq!(
        c.cmd("TOP 9 1", CommandKind::Top),
        "-ERR no such message\r\n"
    );
}

#[test]
fn dele_rset_semantics() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.cmd("DELE 2", CommandKind::Dele),
        "+OK message 2 deleted\r\n"
    );
    assert_eq!(
        c.cmd("DELE 2", CommandKind::Dele),
        "-ERR message already deleted\r\n"
    );
    assert_eq!(
        c.cmd("DELE 7", CommandKind::Dele),
        "-ERR no such message\r\n"
    );
    assert_eq!(c.cmd("STAT", CommandKind::Stat), "+OK 2 82\r\n");
    assert_eq!(
        c.cmd("LIST", CommandKind::List),
        "+OK 2 messages (82 octets)\r\n1 64\r\n3 18\r\n.\r\n"
    );
    assert_eq!(
        c.cmd("LIST 2", CommandKind::List),
        "-ERR message deleted\r\n"
    );
    assert_eq!(
        c.cmd("UIDL 2", CommandKind::Uidl),
        "-ERR message deleted\r\n"
    );
    assert!(!c.cmd("UIDL", CommandKind::Uidl).contains("\r\n2 "));
    assert_eq!(
        c.cmd("RSET", CommandKind::Rset),
        "+OK maildrop has 3 messages (114 octets)\r\n"
    );
    assert_eq!(c.cmd("LIST 2", CommandKind::List), "+OK 2 32\r\n");
    // After RSET, QUIT deletes nothing and needs no commit.
    c.completed.clear();
    assert_eq!(c.send("QUIT\r\n"), Event::Close);
    assert_eq!(c.completed, vec![CommandKind::Quit]);
}

#[test]
fn quit_commits_marked_messages() {
    let mut c = Client::logged_in();
    c.cmd("DELE 3", CommandKind::Dele);
    c.cmd("DELE 1", CommandKind::Dele);
    c.completed.clear();
    assert_eq!(
        c.send("QUIT\r\n"),
        Event::Action(Action::Commit {
            expunge: vec![10, 15]
        })
    );
    assert!(c.completed.is_empty(), "QUIT completes after the commit");
    c.s.commit_result(true).unwrap();
    assert_eq!(c.run(), Event::Close);
    assert_eq!(c.completed, vec![CommandKind::Quit]);
    assert_eq!(c.out(), "+OK ringpost POP3 signing off\r\n");
}

#[test]
fn quit_commit_failure() {
    let mut c = Client::logged_in();
    c.cmd("DELE 1", CommandKind::Dele);
    assert!(matches!(
        c.send("QUIT\r\n"),
        Event::Action(Action::Commit { .. })
    ));
    c.s.commit_result(false).unwrap();
    assert_eq!(c.run(), Event::Close);
    assert_eq!(
        c.out(),
        "-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    );
}

#[test]
fn no_expunge_without_quit() {
    // DELE only marks: nothing reaches the driver until QUIT, so a dropped connection
    // (the driver just releases the lock) deletes nothing.
    let mut c = Client::logged_in();
    assert_eq!(c.send("DELE 1\r\nDELE 2\r\nSTAT\r\n"), Event::NeedInput);
    assert_eq!(
        c.completed,
        vec![CommandKind::Dele, CommandKind::Dele, CommandKind::Stat]
    );
    assert!(c.out().ends_with("+OK 1 18\r\n"));
}

#[test]
fn quit_in_authorization_closes() {
    let mut c = Client::plain();
    assert_eq!(c.send("QUIT\r\nCAPA\r\n"), Event::Close);
    assert_eq!(c.completed, vec![CommandKind::Quit]);
    assert_eq!(c.out(), "+OK ringpost POP3 signing off\r\n");
    assert_eq!(c.input, b"CAPA\r\n");
}

#[test]
fn pipelining_keeps_order() {
    let mut c = Client::logged_in();
    assert_eq!(
        c.send("STAT\r\nLIST 1\r\nUIDL 2\r\nNOOP\r\nDELE 3\r\nSTAT\r\n"),
        Event::NeedInput
    );
    assert_eq!(c.completed.len(), 6);
    assert_eq!(
        c.out(),
        "+OK 3 114\r\n+OK 1 64\r\n+OK 2 1234abcd0000000b\r\n+OK\r\n+OK message 3 deleted\r\n\
         +OK 2 96\r\n"
    );
}

#[test]
fn command_split_across_reads() {
    let mut c = Client::logged_in();
    assert_eq!(c.send("ST"), Event::NeedInput);
    assert!(c.completed.is_empty());
    assert_eq!(c.send("AT\r"), Event::NeedInput);
    assert_eq!(c.send("\n"), Event::NeedInput);
    assert_eq!(c.completed, vec![CommandKind::Stat]);
}

#[test]
fn output_high_water_mark_pauses_reading() {
    let big = Bytes::from(vec![b'x'; OUTPUT_HIGH_WATER + 10]);
    let mut c = Client::logged_in();
    assert!(matches!(
        c.send("RETR 1\r\nNOOP\r\n"),
        Event::Action(Action::Fetch { .. })
    ));
    c.s.body_result(Ok(big)).unwrap();
    assert_eq!(c.run(), Event::Flush);
    assert_eq!(c.input, b"NOOP\r\n");
    assert!(c.s.output().len() > OUTPUT_HIGH_WATER);
    // Drain part of it the slice way, then the rest.
    let n = c.s.output().len();
    c.s.consume_output(n - 5);
    assert_eq!(c.s.output(), b"\r\n.\r\n");
    c.s.consume_output(100);
    assert_eq!(c.run(), Event::NeedInput);
    assert_eq!(c.out(), "+OK\r\n");
}

#[test]
fn action_debug_hides_password() {
    let shown = format!(
        "{:?}",
        Action::Authenticate {
            user: "alice".into(),
            password: "hunter2".into()
        }
    );
    assert!(shown.contains("alice") && !shown.contains("hunter2"));
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
    assert_send::<Action>();
}

// ---- fuzz ----

/// Pieces a fuzzed client sends: valid commands in every state plus garbage.
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    let commands = prop_oneof![
        Just(b"CAPA\r\n".to_vec()),
        Just(b"STLS\r\n".to_vec()),
        Just(b"USER alice\r\n".to_vec()),
        Just(b"PASS pw\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"AUTH PLAIN AGFsaWNlAHB3\r\n".to_vec()),
        Just(b"AGFsaWNlAHB3\r\n".to_vec()),
        Just(b"*\r\n".to_vec()),
        Just(b"STAT\r\n".to_vec()),
        Just(b"LIST\r\n".to_vec()),
        (0u32..5).prop_map(|n| format!("LIST {n}\r\n").into_bytes()),
        (0u32..5).prop_map(|n| format!("RETR {n}\r\n").into_bytes()),
        (0u32..5, 0u32..4).prop_map(|(n, k)| format!("TOP {n} {k}\r\n").into_bytes()),
        (0u32..5).prop_map(|n| format!("DELE {n}\r\n").into_bytes()),
        (0u32..5).prop_map(|n| format!("UIDL {n}\r\n").into_bytes()),
        Just(b"UIDL\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b"NOOP\r\n".to_vec()),
        Just(b"QUIT\r\n".to_vec()),
    ];
    prop_oneof![
        6 => commands,
        2 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => (0usize..3000).prop_map(|n| vec![b'A'; n]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_never_panics(
        tls in any::<bool>(),
        login_first in any::<bool>(),
        chunks in proptest::collection::vec(chunk(), 0..30),
        answers in proptest::collection::vec(any::<u8>(), 8),
        body in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()],
            0..300,
        ),
    ) {
        // Half the cases try to log in first (over TLS) so that TRANSACTION gets fuzzed too.
        let transport = if tls || login_first {
            Transport::ImplicitTls
        } else {
            Transport::Plaintext
        };
        let mut s = Session::new(config(|_| {}), transport);
        let mut input: Vec<u8> = Vec::new();
        let mut wire: Vec<u8> = s.take_output().to_vec();
        let mut turn = 0usize;
        let mut answer = || { turn += 1; answers[turn % answers.len()] };
        let prelude = login_first.then(|| b"USER alice\r\nPASS pw\r\n".to_vec());
        'outer: for chunk in prelude.into_iter().chain(chunks) {
            input.extend_from_slice(&chunk);
            // Every call either consumes, completes, or asks for something: bound the loop.
            for _ in 0..10_000 {
                let p = s.process(&input);
                prop_assert!(p.consumed <= input.len());
                input.drain(..p.consumed);
                match p.event {
                    Event::NeedInput => break,
                    Event::Flush => wire.extend_from_slice(&s.take_output()),
                    Event::Completed(_) => {}
                    Event::AwaitingResult => prop_assert!(false, "result not reported"),
                    Event::StartTls => {
                        input.clear();
                        prop_assert!(s.tls_established().is_ok());
                    }
                    Event::Close => break 'outer,
                    Event::Action(Action::Authenticate { .. }) => {
                        let ok = answer() % 4 != 0;
                        prop_assert!(s.auth_result(ok.then(|| "alice".to_string())).is_ok());
                    }
                    Event::Action(Action::OpenMaildrop { .. }) => {
                        let r = match answer() % 5 {
                            0 => Err(MaildropError::InUse),
                            _ => Ok(maildrop()),
                        };
                        prop_assert!(s.maildrop_result(r).is_ok());
                    }
                    Event::Action(Action::Fetch { uid }) => {
                        prop_assert!([10, 11, 15].contains(&uid));
                        let r = match answer() % 4 {
                            0 => Err(FetchError::Unavailable),
                            _ => Ok(Bytes::from(body.clone())),
                        };
                        prop_assert!(s.body_result(r).is_ok());
                    }
                    Event::Action(Action::Commit { expunge }) => {
                        prop_assert!(!expunge.is_empty());
                        prop_assert!(expunge.windows(2).all(|w| w[0] < w[1]));
                        prop_assert!(s.commit_result(answer() % 2 == 0).is_ok());
                    }
                }
            }
            wire.extend_from_slice(&s.take_output());
        }
        wire.extend_from_slice(&s.take_output());
        // Every reply is complete: the server never leaves half a line.
        prop_assert!(wire.ends_with(b"\r\n"));
        // No plaintext session ever advertises or accepts a login.
        if !tls && !login_first && !s.is_tls() {
            prop_assert!(!s.is_authenticated());
        }
    }
}

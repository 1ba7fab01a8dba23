//! Session tests against [`MemStore`]: commands, multi-session updates and security rules.

use super::*;
use crate::imap::store::{MailboxView, MemStore, MessageView};
use futures::executor::block_on;

const MSG1: &str = "From: a@example.org\r\nSubject: hello\r\n\r\nfirst body\r\n";
const MSG2: &str = "From: b@example.org\r\nSubject: second\r\n\r\nanother text\r\n";

fn config() -> SessionConfig {
    SessionConfig {
        allow_plaintext_auth: true,
        ..SessionConfig::default()
    }
}

/// Feeds `input` and steps until input is needed or an action other than auth comes up;
/// answers authentication itself (password "secret" is right). Returns the output.
fn run(s: &mut Session, store: &MemStore, input: &str) -> String {
    run_bytes(s, store, input.as_bytes()).0
}

fn run_bytes(s: &mut Session, store: &MemStore, input: &[u8]) -> (String, Option<Action>) {
    s.feed(input);
    let mut last = None;
    loop {
        match block_on(s.step(store)) {
            Step::NeedInput => break,
            Step::Completed(_) | Step::Flush => continue,
            Step::Action(Action::Authenticate { user, pass }) => {
                let ok = pass == "secret";
                s.auth_result(ok.then(|| user.to_ascii_lowercase()));
            }
            Step::Action(a) => {
                last = Some(a);
                break;
            }
        }
    }
    (String::from_utf8_lossy(&s.take_output()).into_owned(), last)
}

fn store() -> MemStore {
    let st = MemStore::new();
    block_on(st.ensure_account("user")).unwrap();
    st
}

fn login(st: &MemStore) -> Session {
    let mut s = Session::new(config(), false);
    s.take_output();
    let out = run(&mut s, st, "L LOGIN user secret\r\n");
    assert!(out.starts_with("L OK [CAPABILITY"), "{out}");
    s
}

fn selected(st: &MemStore) -> Session {
    let mut s = login(st);
    let out = run(&mut s, st, "S SELECT INBOX\r\n");
    assert!(out.contains("S OK [READ-WRITE]"), "{out}");
    s
}

fn with_two(st: &MemStore) {
    st.deliver("user", "INBOX", MSG1.as_bytes(), 86400 * 365);
    st.deliver("user", "INBOX", MSG2.as_bytes(), 86400 * 366);
}

#[test]
fn greeting_and_capabilities_depend_on_tls() {
    let st = store();
    let cfg = SessionConfig::default();
    let mut s = Session::new(cfg.clone(), false);
    let greet = String::from_utf8(s.take_output()).unwrap();
    assert!(greet.starts_with("* OK [CAPABILITY IMAP4rev1 "));
    assert!(greet.contains("STARTTLS") && greet.contains("LOGINDISABLED"));
    assert!(!greet.contains("AUTH=PLAIN"));
    let out = run(&mut s, &st, "1 LOGIN user secret\r\n");
    assert!(out.starts_with("1 NO [PRIVACYREQUIRED]"), "{out}");
    let out = run(&mut s, &st, "2 AUTHENTICATE PLAIN\r\n");
    assert!(out.starts_with("2 NO [PRIVACYREQUIRED]"), "{out}");
    let (out, act) = run_bytes(&mut s, &st, b"3 STARTTLS\r\n");
    assert_eq!(out, "3 OK Begin TLS negotiation now.\r\n");
    assert_eq!(act, Some(Action::StartTls));
    s.tls_established();
    let out = run(&mut s, &st, "4 CAPABILITY\r\n");
    assert!(
        out.contains("AUTH=PLAIN") && !out.contains("STARTTLS") && !out.contains("LOGINDISABLED")
    );
    let out = run(&mut s, &st, "5 STARTTLS\r\n");
    assert!(out.starts_with("5 BAD"), "{out}");
    let out = run(&mut s, &st, "6 LOGIN user secret\r\n");
    assert!(out.starts_with("6 OK [CAPABILITY IMAP4rev1"), "{out}");
    assert!(out.contains("UIDPLUS") && out.contains("MOVE") && out.contains("CONDSTORE"));

    // Implicit TLS offers AUTH=PLAIN straight away and no STARTTLS.
    let mut s = Session::new(cfg, true);
    let greet = String::from_utf8(s.take_output()).unwrap();
    assert!(greet.contains("AUTH=PLAIN") && !greet.contains("STARTTLS"));
}

#[test]
fn commands_pipelined_after_starttls_are_never_executed() {
    let st = store();
    let mut s = Session::new(SessionConfig::default(), false);
    s.take_output();
    let (out, act) = run_bytes(
        &mut s,
        &st,
        b"a STARTTLS\r\nb LOGIN user secret\r\nc NOOP\r\n",
    );
    assert_eq!(out, "a OK Begin TLS negotiation now.\r\n");
    assert_eq!(act, Some(Action::StartTls));
    // Bytes arriving before the handshake completes are dropped too.
    s.feed(b"d NOOP\r\n");
    s.tls_established();
    let (out, _) = run_bytes(&mut s, &st, b"");
    assert_eq!(out, "");
    assert!(s.account().is_none());
}

#[test]
fn login_success_and_failure() {
    let st = store();
    let mut s = Session::new(config(), false);
    s.take_output();
    let out = run(&mut s, &st, "a LOGIN user wrong\r\n");
    assert_eq!(
        out,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    let out = run(&mut s, &st, "b SELECT INBOX\r\n");
    assert!(out.starts_with("b BAD"), "{out}");
    let out = run(&mut s, &st, "c LOGIN {4}\r\n");
    assert_eq!(out, "+ Ready for literal data\r\n");
    let out = run(&mut s, &st, "user {6+}\r\nsecret\r\n");
    assert!(out.starts_with("c OK [CAPABILITY"), "{out}");
    assert_eq!(s.account(), Some("user"));
    let out = run(&mut s, &st, "d LOGIN user secret\r\n");
    assert!(out.starts_with("d BAD"), "{out}");
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let st = store();
    let mut s = Session::new(config(), false);
    s.take_output();
    // "\0user\0secret"
    let out = run(&mut s, &st, "a AUTHENTICATE PLAIN\r\n");
    assert_eq!(out, "+ \r\n");
    let out = run(&mut s, &st, "AHVzZXIAc2VjcmV0\r\n");
    assert!(out.starts_with("a OK [CAPABILITY"), "{out}");
    let mut s = Session::new(config(), false);
    s.take_output();
    let out = run(&mut s, &st, "b AUTHENTICATE PLAIN AHVzZXIAd3Jvbmc=\r\n");
    assert!(out.starts_with("b NO [AUTHENTICATIONFAILED]"), "{out}");
    let out = run(&mut s, &st, "c AUTHENTICATE PLAIN\r\n*\r\n");
    assert_eq!(out, "+ \r\nc BAD Authentication aborted by client.\r\n");
    let out = run(&mut s, &st, "d AUTHENTICATE CRAM-MD5\r\n");
    assert!(out.starts_with("d NO"), "{out}");
    let out = run(&mut s, &st, "e AUTHENTICATE PLAIN !!!\r\n");
    assert!(out.starts_with("e BAD"), "{out}");
}

#[test]
fn select_and_examine_responses() {
    let st = store();
    with_two(&st);
    let mut s = login(&st);
    let out = run(&mut s, &st, "a SELECT inbox\r\n");
    let uv = st
        .with_mailbox("user", "INBOX", |m| m.uidvalidity())
        .unwrap();
    let expected = format!(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
         * 2 EXISTS\r\n* 2 RECENT\r\n* OK [UNSEEN 1] First unseen.\r\n\
         * OK [UIDVALIDITY {uv}] UIDs valid\r\n* OK [UIDNEXT 3] Predicted next UID\r\n\
         * OK [HIGHESTMODSEQ 3] Highest\r\na OK [READ-WRITE] Select completed.\r\n"
    );
    assert_eq!(out, expected);
    // \Recent went to the first session; a second SELECT sees none.
    let mut other = login(&st);
    let out = run(&mut other, &st, "b EXAMINE INBOX\r\n");
    assert!(out.contains("* 0 RECENT\r\n"), "{out}");
    assert!(out.contains("[PERMANENTFLAGS ()]"), "{out}");
    assert!(
        out.ends_with("b OK [READ-ONLY] Examine completed.\r\n"),
        "{out}"
    );
    let out = run(&mut other, &st, "c STORE 1 +FLAGS (\\Seen)\r\n");
    assert_eq!(out, "c OK Store ignored with read-only mailbox.\r\n");
    let out = run(
        &mut other,
        &st,
        "c2 STORE 1 (UNCHANGEDSINCE 9) +FLAGS (\\Seen)\r\n",
    );
    assert!(out.contains("c2 NO"), "{out}");
    let out = run(&mut other, &st, "c3 EXPUNGE\r\n");
    assert_eq!(out, "c3 OK Expunge completed.\r\n");
    let out = run(&mut other, &st, "c4 MOVE 1 Trash\r\n");
    assert!(out.starts_with("c4 NO"), "{out}");
    assert_eq!(
        st.with_mailbox("user", "INBOX", |m| m.messages()[0].flags()),
        Some(0)
    );
    let out = run(&mut other, &st, "d SELECT nosuch\r\n");
    assert_eq!(out, "d NO [NONEXISTENT] Mailbox doesn't exist.\r\n");
    // A failed SELECT leaves no mailbox selected.
    let out = run(&mut other, &st, "e FETCH 1 FLAGS\r\n");
    assert!(out.starts_with("e BAD"), "{out}");
}

#[test]
fn append_with_literals_and_limits() {
    let st = store();
    let mut s = login(&st);
    let out = run(&mut s, &st, "a APPEND INBOX (\\Seen $Work) {12}\r\n");
    assert_eq!(out, "+ Ready for literal data\r\n");
    let out = run(&mut s, &st, "Subject: x\r\n\r\n");
    let uv = st
        .with_mailbox("user", "INBOX", |m| m.uidvalidity())
        .unwrap();
    assert_eq!(
        out,
        format!("a OK [APPENDUID {uv} 1] Append completed.\r\n")
    );
    let out = run(&mut s, &st, "b APPEND INBOX {3+}\r\nabc {3+}\r\ndef\r\n");
    assert_eq!(
        out,
        format!("b OK [APPENDUID {uv} 2:3] Append completed.\r\n")
    );
    let out = run(&mut s, &st, "c APPEND nosuch {1+}\r\nx\r\n");
    assert_eq!(out, "c NO [TRYCREATE] Mailbox doesn't exist.\r\n");
    // Huge synchronising literal: NO before any continuation, nothing buffered.
    let out = run(&mut s, &st, "d APPEND INBOX {4294967295}\r\n");
    assert_eq!(out, "d NO [TOOBIG] Literal too large.\r\n");
    assert!(s.input.is_empty());
    let out = run(&mut s, &st, "e NOOP\r\n");
    assert_eq!(out, "e OK NOOP completed.\r\n");
    let out = run(&mut s, &st, "f APPEND INBOX (\\Recent) {1+}\r\nx\r\n");
    assert!(out.starts_with("f BAD"), "{out}");
    let out = run(&mut s, &st, "g APPEND INBOX {0+}\r\n\r\n");
    assert!(out.starts_with("g NO"), "{out}");
    assert_eq!(
        st.with_mailbox("user", "INBOX", |m| m.messages().len()),
        Some(3)
    );
    let flags = st
        .with_mailbox("user", "INBOX", |m| m.messages()[0].flags())
        .unwrap();
    assert_eq!(flags, crate::imap::store::flags::SEEN | 1 << 8);
}

#[test]
fn non_synchronising_literal_over_limit_closes() {
    let st = store();
    let mut s = login(&st);
    let (out, act) = run_bytes(
        &mut s,
        &st,
        b"a APPEND INBOX {99999999999+}\r\nb LOGOUT\r\n",
    );
    assert_eq!(act, Some(Action::Close));
    assert!(
        out.contains("a NO [TOOBIG]") && out.contains("* BYE"),
        "{out}"
    );
    assert!(!out.contains("b OK"), "{out}");
    // Memory stays flat: the input was dropped, more input is ignored.
    s.feed(&[b'x'; 4096]);
    assert!(s.input.is_empty());
}

#[test]
fn literals_before_login_are_small() {
    let st = store();
    let mut s = Session::new(config(), false);
    s.take_output();
    let out = run(&mut s, &st, "a APPEND INBOX {1000000}\r\n");
    assert_eq!(out, "a NO [TOOBIG] Literal too large.\r\n");
    let out = run(&mut s, &st, "b LOGIN {4}\r\n");
    assert_eq!(out, "+ Ready for literal data\r\n");
}

#[test]
fn input_memory_is_returned_after_a_big_append() {
    let st = store();
    let mut s = login(&st);
    let body = "x".repeat(3 << 20);
    let out = run(
        &mut s,
        &st,
        &format!("a APPEND INBOX {{{}+}}\r\n{body}\r\n", body.len()),
    );
    assert!(out.starts_with("a OK [APPENDUID"), "{out}");
    assert!(s.input.capacity() <= SHRINK_ABOVE, "{}", s.input.capacity());
}

#[test]
fn long_lines_are_refused_and_session_recovers() {
    let st = store();
    let cfg = SessionConfig {
        max_line: 100,
        ..config()
    };
    let mut s = Session::new(cfg, false);
    s.take_output();
    let mut line = b"a NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 300));
    let out = run_bytes(&mut s, &st, &line).0;
    assert_eq!(out, "a BAD [TOOBIG] Command line too long.\r\n");
    let out = run(&mut s, &st, "yyyy\r\nb NOOP\r\n");
    assert_eq!(out, "b OK NOOP completed.\r\n");
}

#[test]
fn bad_commands_keep_the_session() {
    let st = store();
    let mut s = login(&st);
    let out = run(
        &mut s,
        &st,
        "a FROB\r\n\r\n* NOOP\r\nb FETCH 1 FLAGS\r\nc NOOP\r\n",
    );
    assert_eq!(
        out,
        "a BAD Error in IMAP command: Unknown command.\r\n\
         * BAD Error in IMAP command received by server.\r\n\
         b BAD No mailbox selected.\r\nc OK NOOP completed.\r\n"
    );
    let mut s = selected(&st);
    let out = run(&mut s, &st, "d FETCH 1 FLAGS\r\n");
    assert!(out.starts_with("d BAD"), "{out}");
    let out = run(&mut s, &st, "e FETCH 1 (FLAGS\r\n");
    assert!(
        out.starts_with("e BAD Error in IMAP command FETCH"),
        "{out}"
    );
}

#[test]
fn fetch_items() {
    let st = store();
    with_two(&st);
    let mut s = selected(&st);
    let out = run(
        &mut s,
        &st,
        "a FETCH 1:2 (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n",
    );
    // INTERNALDATE is shown in the server's zone (whatever this test runs in).
    let date = |secs: i64| {
        let mut d = Vec::new();
        crate::imap::response::date_time(&mut d, secs);
        String::from_utf8(d).unwrap()
    };
    assert_eq!(date(0).len(), 28, "zero-padded day: {}", date(0));
    assert_eq!(
        out,
        format!(
            "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE {} INTERNALDATE {})\r\n\
             * 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE {} INTERNALDATE {})\r\n\
             a OK Fetch completed.\r\n",
            MSG1.len(),
            date(86400 * 365),
            MSG2.len(),
            date(86400 * 366),
        )
    );
    let out = run(&mut s, &st, "b UID FETCH 2 BODY.PEEK[]<0.4>\r\n");
    assert_eq!(
        out,
        "* 2 FETCH (UID 2 BODY[]<0> {4}\r\nFrom)\r\nb OK Fetch completed.\r\n"
    );
    // Non-peek BODY[] sets \Seen and reports the new flags with it.
    let out = run(&mut s, &st, "c FETCH 1 BODY[]\r\n");
    assert_eq!(
        out,
        format!(
            "* 1 FETCH (BODY[] {{{}}}\r\n{MSG1} FLAGS (\\Seen \\Recent))\r\nc OK Fetch completed.\r\n",
            MSG1.len()
        )
    );
    let out = run(&mut s, &st, "d FETCH 1 (FLAGS)\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (FLAGS (\\Seen \\Recent))\r\nd OK Fetch completed.\r\n"
    );
    let out = run(&mut s, &st, "e UID FETCH 5:* FLAGS\r\n");
    assert_eq!(
        out,
        "* 2 FETCH (UID 2 FLAGS (\\Recent))\r\ne OK Fetch completed.\r\n"
    );
    let out = run(&mut s, &st, "f UID FETCH 3:4 FLAGS\r\n");
    assert_eq!(out, "f OK Fetch completed.\r\n");
    let out = run(&mut s, &st, "g FETCH 2 (RFC822.SIZE MODSEQ)\r\n");
    assert!(out.contains("MODSEQ ("), "{out}");
    let out = run(&mut s, &st, "h FETCH 1:* (FLAGS) (CHANGEDSINCE 3)\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (4))\r\nh OK Fetch completed.\r\n"
    );
}

#[test]
fn store_flags_and_condstore() {
    let st = store();
    with_two(&st);
    let mut s = selected(&st);
    let out = run(&mut s, &st, "a STORE 1 +FLAGS (\\Flagged $Work)\r\n");
    assert_eq!(
        out,
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted.\r\n\
         * 1 FETCH (FLAGS (\\Flagged \\Recent $Work))\r\na OK Store completed.\r\n"
    );
    let out = run(&mut s, &st, "b UID STORE 1:2 -FLAGS.SILENT (\\Flagged)\r\n");
    assert_eq!(out, "b OK Store completed.\r\n");
    let out = run(&mut s, &st, "c STORE 2 FLAGS \\Seen \\Answered\r\n");
    assert_eq!(
        out,
        "* 2 FETCH (FLAGS (\\Answered \\Seen \\Recent))\r\nc OK Store completed.\r\n"
    );
    let out = run(&mut s, &st, "d STORE 1 +FLAGS (\\Recent)\r\n");
    assert!(out.starts_with("d BAD"), "{out}");
    let out = run(
        &mut s,
        &st,
        "e STORE 1:2 (UNCHANGEDSINCE 5) +FLAGS (\\Draft)\r\n",
    );
    assert!(
        out.ends_with("e OK [MODIFIED 2] Conditional STORE failed.\r\n"),
        "{out}"
    );
    assert!(
        out.contains("* 1 FETCH (FLAGS (\\Draft \\Recent $Work) MODSEQ ("),
        "{out}"
    );
    let out = run(
        &mut s,
        &st,
        "f UID STORE 1:2 (UNCHANGEDSINCE 1) FLAGS ()\r\n",
    );
    assert!(
        out.ends_with("f OK [MODIFIED 1:2] Conditional STORE failed.\r\n"),
        "{out}"
    );
    // With CONDSTORE on, .SILENT still reports the new MODSEQ of what changed (RFC 7162 §3.2),
    // and nothing for a message the STORE left as it was.
    let out = run(&mut s, &st, "g UID STORE 1:2 +FLAGS.SILENT (\\Seen)\r\n");
    assert!(out.starts_with("* 1 FETCH (UID 1 MODSEQ ("), "{out}");
    assert!(!out.contains("FLAGS"), "{out}");
    assert!(!out.contains("* 2 FETCH"), "{out}");
}

#[test]
fn expunge_reports_descending_sequence_numbers() {
    let st = store();
    for i in 0..5 {
        st.deliver(
            "user",
            "INBOX",
            format!("Subject: {i}\r\n\r\nx").as_bytes(),
            0,
        );
    }
    let mut s = selected(&st);
    run(&mut s, &st, "a STORE 2,4:5 +FLAGS.SILENT (\\Deleted)\r\n");
    let out = run(&mut s, &st, "b EXPUNGE\r\n");
    assert_eq!(
        out,
        "* 5 EXPUNGE\r\n* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n* 2 RECENT\r\nb OK Expunge completed.\r\n"
    );
    let out = run(&mut s, &st, "c FETCH 1:* UID\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\nc OK Fetch completed.\r\n"
    );
    run(&mut s, &st, "d STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n");
    let out = run(&mut s, &st, "e UID EXPUNGE 3\r\n");
    assert_eq!(
        out,
        "* 2 EXPUNGE\r\n* 1 RECENT\r\ne OK Expunge completed.\r\n"
    );
    // CLOSE expunges silently.
    let out = run(&mut s, &st, "f CLOSE\r\n");
    assert_eq!(out, "f OK Close completed.\r\n");
    assert_eq!(
        st.with_mailbox("user", "INBOX", |m| m.messages().len()),
        Some(0)
    );
}

#[test]
fn search_forms() {
    let st = store();
    with_two(&st);
    let mut s = selected(&st);
    run(&mut s, &st, "a STORE 2 +FLAGS.SILENT (\\Flagged)\r\n");
    let out = run(&mut s, &st, "b SEARCH FLAGGED\r\n");
    assert_eq!(out, "* SEARCH 2\r\nb OK Search completed.\r\n");
    let out = run(
        &mut s,
        &st,
        "c UID SEARCH CHARSET UTF-8 OR UNFLAGGED LARGER 1000000\r\n",
    );
    assert_eq!(out, "* SEARCH 1\r\nc OK Search completed.\r\n");
    let out = run(&mut s, &st, "d SEARCH SINCE 2-Jan-1971\r\n");
    assert_eq!(out, "* SEARCH 2\r\nd OK Search completed.\r\n");
    let out = run(&mut s, &st, "e SEARCH CHARSET KOI8-R ALL\r\n");
    assert!(out.starts_with("e NO [BADCHARSET"), "{out}");
    let out = run(&mut s, &st, "f SEARCH RETURN (MIN MAX COUNT ALL) ALL\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"f\") MIN 1 MAX 2 COUNT 2 ALL 1:2\r\nf OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "g UID SEARCH RETURN () DELETED\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"g\") UID\r\ng OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "h SEARCH NOT 1 RECENT\r\n");
    assert_eq!(out, "* SEARCH 2\r\nh OK Search completed.\r\n");
    let out = run(&mut s, &st, "i SEARCH MODSEQ 4\r\n");
    // The first CONDSTORE-enabling command reports HIGHESTMODSEQ.
    assert_eq!(
        out,
        "* OK [HIGHESTMODSEQ 4] Highest\r\n* SEARCH 2 (MODSEQ 4)\r\ni OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "j SEARCH SUBJECT second\r\n");
    assert_eq!(out, "* SEARCH 2\r\nj OK Search completed.\r\n");
}

#[test]
fn esearch_modseq_follows_returned_messages() {
    let st = store();
    for i in 0..4 {
        st.deliver(
            "user",
            "INBOX",
            format!("Subject: {i}\r\n\r\nx").as_bytes(),
            0,
        );
    }
    let mut s = selected(&st);
    // Store order 1, 3, 2, 4 gives modseqs 6, 7, 8, 9.
    for n in [1, 3, 2, 4] {
        run(&mut s, &st, &format!("s STORE {n} +FLAGS \\Seen\r\n"));
    }
    let out = run(
        &mut s,
        &st,
        "a SEARCH RETURN (MIN) 1:3 MODSEQ \"/flags/\\\\seen\" all 1\r\n",
    );
    assert_eq!(
        out,
        "* OK [HIGHESTMODSEQ 9] Highest\r\n* ESEARCH (TAG \"a\") MIN 1 MODSEQ 6\r\na OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "b SEARCH RETURN (MAX) 1:3 MODSEQ 1\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"b\") MAX 3 MODSEQ 7\r\nb OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "c SEARCH RETURN () 1:3 MODSEQ 1\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"c\") ALL 1:3 MODSEQ 8\r\nc OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "d SEARCH RETURN (COUNT) 1000\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"d\") COUNT 0\r\nd OK Search completed.\r\n"
    );
}

#[test]
fn copy_and_move_with_uidplus() {
    let st = store();
    with_two(&st);
    let mut s = selected(&st);
    let trash_uv = st
        .with_mailbox("user", "Trash", |m| m.uidvalidity())
        .unwrap();
    let out = run(&mut s, &st, "a COPY 1:2 Trash\r\n");
    assert_eq!(
        out,
        format!("a OK [COPYUID {trash_uv} 1:2 1:2] Copy completed.\r\n")
    );
    let out = run(&mut s, &st, "b UID MOVE 2 Trash\r\n");
    assert_eq!(
        out,
        format!(
            "* OK [COPYUID {trash_uv} 2 3] Moved UIDs.\r\n* 2 EXPUNGE\r\n* 1 RECENT\r\nb OK Move completed.\r\n"
        )
    );
    let out = run(&mut s, &st, "c COPY 1 Nowhere\r\n");
    assert_eq!(out, "c NO [TRYCREATE] Mailbox doesn't exist.\r\n");
    let out = run(&mut s, &st, "d UID COPY 99 Trash\r\n");
    assert_eq!(out, "d OK No messages found.\r\n");
    assert_eq!(
        st.with_mailbox("user", "Trash", |m| m.messages().len()),
        Some(3)
    );
}

#[test]
fn list_lsub_and_mailbox_management() {
    let st = store();
    let mut s = login(&st);
    let out = run(&mut s, &st, "a LIST \"\" \"\"\r\n");
    assert_eq!(
        out,
        "* LIST (\\Noselect) \"/\" \"\"\r\na OK List completed.\r\n"
    );
    let out = run(&mut s, &st, "b LIST \"\" *\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n\
         * LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n\
         * LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n\
         * LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n\
         * LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n\
         b OK List completed.\r\n"
    );
    let out = run(&mut s, &st, "c CREATE Work/Projects/\r\n");
    assert_eq!(out, "c OK Create completed.\r\n");
    let out = run(&mut s, &st, "d CREATE work\r\n");
    assert_eq!(out, "d OK Create completed.\r\n");
    let out = run(&mut s, &st, "e CREATE Work\r\n");
    assert_eq!(out, "e NO [ALREADYEXISTS] Mailbox already exists.\r\n");
    let out = run(&mut s, &st, "f CREATE inbox\r\n");
    assert_eq!(out, "f NO [ALREADYEXISTS] Mailbox already exists.\r\n");
    let out = run(&mut s, &st, "g LIST \"\" Work%\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasChildren) \"/\" Work\r\ng OK List completed.\r\n"
    );
    let out = run(&mut s, &st, "h LIST Work/ %\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren) \"/\" Work/Projects\r\nh OK List completed.\r\n"
    );
    let out = run(&mut s, &st, "i RENAME Work Play\r\n");
    assert_eq!(out, "i OK Rename completed.\r\n");
    let out = run(&mut s, &st, "j LIST \"\" Play*\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasChildren) \"/\" Play\r\n* LIST (\\HasNoChildren) \"/\" Play/Projects\r\nj OK List completed.\r\n"
    );
    let out = run(&mut s, &st, "k DELETE Play\r\n");
    assert_eq!(out, "k OK Delete completed.\r\n");
    let out = run(&mut s, &st, "l LIST \"\" %\r\n");
    assert!(
        out.contains("* LIST (\\Noselect \\HasChildren) \"/\" Play\r\n"),
        "{out}"
    );
    let out = run(&mut s, &st, "m DELETE Play\r\n");
    assert_eq!(out, "m NO [NONEXISTENT] Mailbox doesn't exist.\r\n");
    let out = run(&mut s, &st, "n DELETE INBOX\r\n");
    assert!(out.starts_with("n NO"), "{out}");
    let out = run(&mut s, &st, "o SUBSCRIBE Play/Projects\r\n");
    assert_eq!(out, "o OK Subscribe completed.\r\n");
    let out = run(&mut s, &st, "p LSUB \"\" Play/*\r\n");
    assert_eq!(
        out,
        "* LSUB () \"/\" Play/Projects\r\np OK Lsub completed.\r\n"
    );
    // The unsubscribed parent shows (\Noselect) where a % stops at it, not for its own name.
    let out = run(&mut s, &st, "p2 LSUB \"\" %\r\n");
    assert!(out.contains("* LSUB (\\Noselect) \"/\" Play\r\n"), "{out}");
    let out = run(&mut s, &st, "p3 LSUB \"\" Play\r\n");
    assert_eq!(out, "p3 OK Lsub completed.\r\n");
    let out = run(&mut s, &st, "q LIST (SUBSCRIBED) \"\" P*\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren \\Subscribed) \"/\" Play/Projects\r\nq OK List completed.\r\n"
    );
    let out = run(
        &mut s,
        &st,
        "r LIST (SPECIAL-USE) \"\" * RETURN (STATUS (MESSAGES))\r\n",
    );
    assert!(
        out.contains(
            "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n* STATUS Sent (MESSAGES 0)\r\n"
        ),
        "{out}"
    );
    assert!(!out.contains("INBOX"), "{out}");
    let out = run(&mut s, &st, "s NAMESPACE\r\n");
    assert_eq!(
        out,
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\ns OK Namespace completed.\r\n"
    );
}

#[test]
fn rename_inbox_and_selected_mailbox() {
    let st = store();
    with_two(&st);
    let mut s = selected(&st);
    let out = run(&mut s, &st, "a RENAME INBOX Old/Inbox\r\n");
    assert_eq!(
        out,
        "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n* 0 RECENT\r\na OK Rename completed.\r\n"
    );
    assert_eq!(
        st.with_mailbox("user", "Old/Inbox", |m| m.messages().len()),
        Some(2)
    );
    run(&mut s, &st, "b SELECT Old/Inbox\r\n");
    let out = run(&mut s, &st, "c RENAME Old New\r\n");
    assert_eq!(
        out,
        "* OK [CLOSED] Selected mailbox was renamed.\r\nc OK Rename completed.\r\n"
    );
    assert!(st.with_mailbox("user", "New/Inbox", |_| ()).is_some());
    let out = run(&mut s, &st, "d FETCH 1 FLAGS\r\n");
    assert!(out.starts_with("d BAD"), "{out}");
    let out = run(&mut s, &st, "e RENAME New New/Sub\r\n");
    assert!(out.starts_with("e NO [CANNOT]"), "{out}");
}

#[test]
fn mailbox_names_are_names_not_paths() {
    let st = store();
    let mut s = login(&st);
    for bad in [
        "../etc",
        "a//b",
        "/abs",
        "a/./b",
        "~other/INBOX",
        "#news",
        "\"a*\"",
        "&Jjo",
    ] {
        let out = run(&mut s, &st, &format!("x CREATE {bad}\r\n"));
        assert!(out.starts_with("x NO [CANNOT]"), "{bad}: {out}");
    }
    let out = run(&mut s, &st, "y SELECT ../INBOX\r\n");
    assert!(out.starts_with("y NO"), "{out}");
    let out = run(&mut s, &st, "z RENAME INBOX ..\r\n");
    assert!(out.starts_with("z NO"), "{out}");
}

#[test]
fn status_command() {
    let st = store();
    with_two(&st);
    let mut s = login(&st);
    let uv = st
        .with_mailbox("user", "INBOX", |m| m.uidvalidity())
        .unwrap();
    let out = run(
        &mut s,
        &st,
        "a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)\r\n",
    );
    assert_eq!(
        out,
        format!("* STATUS INBOX (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY {uv} UNSEEN 2)\r\na OK Status completed.\r\n")
    );
    let out = run(&mut s, &st, "b STATUS nosuch (MESSAGES)\r\n");
    assert_eq!(out, "b NO [NONEXISTENT] Mailbox doesn't exist.\r\n");
    let out = run(
        &mut s,
        &st,
        "c STATUS Sent (SIZE DELETED HIGHESTMODSEQ)\r\n",
    );
    assert_eq!(
        out,
        "* STATUS Sent (SIZE 0 DELETED 0 HIGHESTMODSEQ 1)\r\nc OK Status completed.\r\n"
    );
}

#[test]
fn updates_reach_other_sessions_on_noop() {
    let st = store();
    with_two(&st);
    st.deliver("user", "INBOX", b"Subject: 3\r\n\r\nx", 0);
    let mut a = selected(&st);
    let mut b = selected(&st);
    run(&mut a, &st, "1 STORE 2 +FLAGS (\\Deleted)\r\n");
    let out = run(&mut b, &st, "2 NOOP\r\n");
    assert_eq!(
        out,
        "* 2 FETCH (FLAGS (\\Deleted))\r\n2 OK NOOP completed.\r\n"
    );
    run(&mut a, &st, "3 EXPUNGE\r\n");
    st.deliver("user", "INBOX", b"Subject: 4\r\n\r\nx", 0);
    // No EXPUNGE during a sequence-number FETCH, but EXISTS is fine; sequence numbers hold.
    let out = run(&mut b, &st, "4 FETCH 3 UID\r\n");
    assert_eq!(
        out,
        "* 3 FETCH (UID 3)\r\n* 4 EXISTS\r\n* 1 RECENT\r\n4 OK Fetch completed.\r\n"
    );
    // What the view knows of an expunged-but-unreported message is still answered...
    let out = run(&mut b, &st, "5 FETCH 2 (UID FLAGS)\r\n");
    assert_eq!(
        out,
        "* 2 FETCH (UID 2 FLAGS (\\Deleted))\r\n5 OK Fetch completed.\r\n"
    );
    // ...its contents are not.
    let out = run(&mut b, &st, "5 FETCH 2 RFC822.SIZE\r\n");
    assert!(out.starts_with("5 NO [EXPUNGEISSUED]"), "{out}");
    // By UID it is simply no longer there: the expunge is reported (allowed during a UID
    // command) and the command is OK.
    let out = run(&mut b, &st, "5 UID FETCH 2 RFC822.SIZE\r\n");
    assert_eq!(out, "* 2 EXPUNGE\r\n5 OK Fetch completed.\r\n");
    let out = run(&mut b, &st, "6 NOOP\r\n");
    assert_eq!(out, "6 OK NOOP completed.\r\n");
    let out = run(&mut b, &st, "7 FETCH 1:* UID\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\n7 OK Fetch completed.\r\n"
    );
    // Session A learns of the new message too, not as recent (B claimed it): its recent
    // messages are still 1 and 3.
    let out = run(&mut a, &st, "8 NOOP\r\n");
    assert_eq!(out, "* 3 EXISTS\r\n* 2 RECENT\r\n8 OK NOOP completed.\r\n");
}

#[test]
fn idle_gets_updates_and_ends_with_done() {
    let st = store();
    let mut a = selected(&st);
    let mut b = login(&st);
    let (out, act) = run_bytes(&mut a, &st, b"i IDLE\r\n");
    assert_eq!(out, "+ idling\r\n");
    assert_eq!(act, Some(Action::Idle));
    let (acct, mbox, version) = a
        .idle_watch()
        .map(|(x, y, v)| (x.to_string(), y.to_string(), v))
        .unwrap();
    assert_eq!((acct.as_str(), mbox.as_str()), ("user", "INBOX"));
    let out = run(&mut b, &st, "x APPEND INBOX {5+}\r\nhello\r\n");
    assert!(out.contains("x OK [APPENDUID"), "{out}");
    assert_ne!(st.mailbox_version("user", "INBOX"), version);
    block_on(st.mailbox_changed("user", "INBOX", version));
    a.idle_update(&st);
    assert_eq!(
        String::from_utf8(a.take_output()).unwrap(),
        "* 1 EXISTS\r\n* 1 RECENT\r\n"
    );
    let (out, act) = run_bytes(&mut a, &st, b"DO");
    assert_eq!((out.as_str(), act), ("", Some(Action::Idle)));
    let out = run(&mut a, &st, "NE\r\n");
    assert_eq!(out, "i OK Idle completed.\r\n");
}

#[test]
fn logout_closes() {
    let st = store();
    let mut s = login(&st);
    let (out, act) = run_bytes(&mut s, &st, b"z LOGOUT\r\nafter NOOP\r\n");
    assert_eq!(out, "* BYE Logging out\r\nz OK Logout completed.\r\n");
    assert_eq!(act, Some(Action::Close));
    assert!(s.is_closed());
}

#[test]
fn enable_id_quota_unselect() {
    let st = store();
    let cfg = SessionConfig {
        quota_bytes: Some(10 * 1024),
        ..config()
    };
    let mut s = Session::new(cfg, false);
    s.take_output();
    run(&mut s, &st, "a LOGIN user secret\r\n");
    let out = run(&mut s, &st, "b ENABLE CONDSTORE X-UNKNOWN\r\n");
    assert_eq!(out, "* ENABLED CONDSTORE\r\nb OK Enabled.\r\n");
    // Enabling again lists it again, once (Dovecot).
    let out = run(&mut s, &st, "b2 ENABLE CONDSTORE condstore\r\n");
    assert_eq!(out, "* ENABLED CONDSTORE\r\nb2 OK Enabled.\r\n");
    let out = run(&mut s, &st, "c ID (\"name\" \"test\")\r\n");
    assert!(out.starts_with("* ID (\"name\" \"ringpost\""), "{out}");
    let out = run(&mut s, &st, "d GETQUOTAROOT INBOX\r\n");
    assert_eq!(
        out,
        "* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE 0 10)\r\nd OK Getquotaroot completed.\r\n"
    );
    let big = "x".repeat(11 * 1024);
    let out = run(
        &mut s,
        &st,
        &format!("e APPEND INBOX {{{}+}}\r\n{big}\r\n", big.len()),
    );
    assert_eq!(out, "e NO [OVERQUOTA] Quota exceeded.\r\n");
    run(&mut s, &st, "f SELECT INBOX\r\n");
    let out = run(&mut s, &st, "g UNSELECT\r\n");
    assert_eq!(out, "g OK Unselect completed.\r\n");
    let out = run(&mut s, &st, "h SETQUOTA \"\" (STORAGE 1)\r\n");
    assert!(out.starts_with("h NO"), "{out}");
}

#[test]
fn imap4rev2_uses_esearch_and_no_recent() {
    let st = store();
    with_two(&st);
    let mut s = login(&st);
    run(&mut s, &st, "a ENABLE IMAP4rev2\r\n");
    let out = run(&mut s, &st, "b SELECT INBOX\r\n");
    assert!(!out.contains("RECENT") && !out.contains("UNSEEN"), "{out}");
    assert!(
        out.contains("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"),
        "{out}"
    );
    let out = run(&mut s, &st, "c SEARCH ALL\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"c\") ALL 1:2\r\nc OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "d FETCH 1 FLAGS\r\n");
    assert_eq!(out, "* 1 FETCH (FLAGS ())\r\nd OK Fetch completed.\r\n");
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn command() -> impl Strategy<Value = String> {
        let words = prop::sample::select(vec![
            "FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.10>)",
            "UID FETCH 1:* (UID RFC822.SIZE BODY[])",
            "STORE 1 +FLAGS (\\Deleted)",
            "UID STORE 1:* -FLAGS.SILENT (\\Seen $x)",
            "EXPUNGE",
            "SEARCH OR SEEN (NOT 1:2) SUBJECT x",
            "SELECT INBOX",
            "EXAMINE Trash",
            "APPEND INBOX {3+}\r\nabc",
            "APPEND INBOX (\\Seen) {2}\r\nab",
            "COPY 1:* Trash",
            "MOVE 2 Junk",
            "CREATE a/b",
            "RENAME a c",
            "DELETE c",
            "LIST \"\" *",
            "STATUS INBOX (MESSAGES UNSEEN)",
            "NOOP",
            "CLOSE",
            "IDLE\r\nDONE",
            "LOGIN user secret",
            "ENABLE CONDSTORE",
            "FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
            "UID EXPUNGE 1:3",
        ]);
        (words, "[a-z0-9]{1,3}").prop_map(|(w, t)| format!("{t} {w}\r\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let st = store();
            let mut s = Session::new(config(), false);
            run(&mut s, &st, "a LOGIN user secret\r\nb SELECT INBOX\r\n");
            for c in chunks {
                run_bytes(&mut s, &st, &c);
            }
        }

        #[test]
        fn command_sequences_never_panic(cmds in prop::collection::vec(command(), 1..25), two in any::<bool>()) {
            let st = store();
            with_two(&st);
            let mut a = login(&st);
            let mut b = login(&st);
            for (i, c) in cmds.iter().enumerate() {
                let s = if two && i % 2 == 1 { &mut b } else { &mut a };
                let out = run(s, &st, c);
                // Every complete command gets exactly one tagged reply or a continuation.
                prop_assert!(!out.is_empty());
            }
        }
    }
}

#[test]
fn fetch_needs_output_room_for_a_body() {
    let st = store();
    let big = "z".repeat(100 * 1024);
    st.deliver("user", "INBOX", b"Subject: small\r\n\r\nhi\r\n", 0);
    st.deliver("user", "INBOX", big.as_bytes(), 0);
    let mut s = selected(&st);
    // Room for the small message, not for 100 KiB.
    st.set_output_limit(Some(64 * 1024));
    let out = run(&mut s, &st, "a FETCH 2 BODY.PEEK[]\r\n");
    assert!(out.starts_with("a NO [UNAVAILABLE]"), "{out}");
    // The small one is answered; the big one waits for the output to drain, then is refused.
    s.feed(b"b FETCH 1:2 BODY.PEEK[]\r\n");
    assert!(matches!(block_on(s.step(&st)), Step::Flush));
    let first = String::from_utf8(s.take_output()).unwrap();
    assert!(
        first.starts_with("* 1 FETCH (BODY[] {") && !first.contains("b "),
        "{first}"
    );
    let rest = run(&mut s, &st, "");
    assert!(rest.starts_with("b NO [UNAVAILABLE]"), "{rest}");
    // Flags and sizes need no body and no room.
    let out = run(&mut s, &st, "c FETCH 2 (FLAGS RFC822.SIZE)\r\n");
    assert!(
        out.contains("RFC822.SIZE 102400") && out.contains("c OK"),
        "{out}"
    );
    // With room, the same FETCH is answered.
    st.set_output_limit(None);
    let out = run(&mut s, &st, "d FETCH 2 BODY.PEEK[]\r\n");
    assert!(
        out.contains("BODY[] {102400}") && out.contains("d OK"),
        "{out}"
    );
}

#[test]
fn long_fetch_is_answered_in_slices() {
    let st = store();
    let body = "y".repeat(100 * 1024);
    for _ in 0..10 {
        st.deliver("user", "INBOX", body.as_bytes(), 0);
    }
    let mut s = selected(&st);
    s.feed(b"a FETCH 1:* BODY.PEEK[]\r\nb NOOP\r\n");
    let mut flushes = 0;
    let mut out = Vec::new();
    loop {
        match block_on(s.step(&st)) {
            Step::Flush => {
                flushes += 1;
                let chunk = s.take_output();
                assert!(chunk.len() < fetch::FLUSH_AT + 2 * body.len());
                out.extend(chunk);
            }
            Step::Completed(_) => {}
            Step::NeedInput => break,
            other => panic!("{other:?}"),
        }
    }
    out.extend(s.take_output());
    let out = String::from_utf8(out).unwrap();
    assert!(flushes >= 3, "{flushes}");
    assert_eq!(out.matches(" FETCH (BODY[] {102400}").count(), 10);
    assert!(out.ends_with("a OK Fetch completed.\r\nb OK NOOP completed.\r\n"));
}

#[test]
fn fetch_mime_items() {
    let st = store();
    let msg = "From: A <a@example.org>\r\nSubject: multi\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
               Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n\
               --b\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-weird\r\n\r\nzz\r\n--b--\r\n";
    st.deliver("user", "INBOX", msg.as_bytes(), 0);
    let mut s = selected(&st);
    let out = run(&mut s, &st, "a FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\n");
    assert!(
        out.starts_with("* 1 FETCH (ENVELOPE (NIL \"multi\" ((\"A\" NIL \"a\" \"example.org\"))"),
        "{out}"
    );
    assert!(out.contains("BODYSTRUCTURE ((\"text\" \"plain\""), "{out}");
    assert!(out.ends_with("a OK Fetch completed.\r\n"), "{out}");
    let out = run(
        &mut s,
        &st,
        "b FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject)]\r\n",
    );
    assert_eq!(
        out,
        "* 1 FETCH (BODY[HEADER.FIELDS (Subject)] {18}\r\nSubject: multi\r\n\r\n)\r\nb OK Fetch completed.\r\n"
    );
    let out = run(
        &mut s,
        &st,
        "c FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1.MIME])\r\n",
    );
    assert!(
        out.starts_with("* 1 FETCH (BINARY[1] {5}\r\nhello BINARY.SIZE[1] 5 BINARY[1.MIME] {"),
        "{out}"
    );
    let out = run(&mut s, &st, "d FETCH 1 BINARY.PEEK[2]\r\n");
    assert_eq!(
        out,
        "d NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding.\r\n"
    );
    let out = run(&mut s, &st, "e FETCH 1 BODY.PEEK[3]\r\n");
    // A part that does not exist is empty, as Dovecot answers.
    assert_eq!(
        out,
        "* 1 FETCH (BODY[3] {0}\r\n)\r\ne OK Fetch completed.\r\n"
    );
    let out = run(&mut s, &st, "f FETCH 1 (RFC822.HEADER)\r\n");
    assert!(out.starts_with("* 1 FETCH (RFC822.HEADER {"), "{out}");
    let out = run(&mut s, &st, "g FETCH 1 (BODY)\r\n");
    assert!(
        out.starts_with("* 1 FETCH (BODY ((\"text\" \"plain\""),
        "{out}"
    );
}

#[test]
fn international_mailbox_names() {
    let st = store();
    let mut s = login(&st);
    let out = run(&mut s, &st, "a CREATE &AOk-t&AOk-\r\n");
    assert_eq!(out, "a OK Create completed.\r\n");
    assert!(st.with_mailbox("user", "été", |_| ()).is_some());
    let out = run(&mut s, &st, "b LIST \"\" &AOk-*\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren) \"/\" &AOk-t&AOk-\r\nb OK List completed.\r\n"
    );
    // Non-canonical modified UTF-7 ("a" encoded in base64) is refused.
    let out = run(&mut s, &st, "c CREATE &AGE-\r\n");
    assert!(out.starts_with("c NO [CANNOT]"), "{out}");
    // IMAP4rev2 speaks UTF-8 names.
    run(&mut s, &st, "d ENABLE IMAP4rev2\r\n");
    let out = run(&mut s, &st, "e LIST \"\" \"é*\"\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren) \"/\" \"été\"\r\ne OK List completed.\r\n"
    );
    let out = run(&mut s, &st, "f STATUS \"été\" (MESSAGES)\r\n");
    assert_eq!(
        out,
        "* STATUS \"été\" (MESSAGES 0)\r\nf OK Status completed.\r\n"
    );
}

#[test]
fn search_save_partial_and_update() {
    let st = store();
    for i in 0..5 {
        st.deliver(
            "user",
            "INBOX",
            format!("Subject: {i}\r\n\r\nx").as_bytes(),
            0,
        );
    }
    let mut s = selected(&st);
    // SAVE alone answers only OK; `$` is the saved result (RFC 5182).
    let out = run(&mut s, &st, "a SEARCH RETURN (SAVE) 2:3\r\n");
    assert_eq!(out, "a OK Search completed.\r\n");
    let out = run(&mut s, &st, "b FETCH $ (UID)\r\n");
    assert!(
        out.starts_with("* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nb OK"),
        "{out}"
    );
    let out = run(&mut s, &st, "b2 SEARCH NOT $\r\n");
    assert_eq!(out, "* SEARCH 1 4 5\r\nb2 OK Search completed.\r\n");
    // PARTIAL ranges are put in order and clipped (RFC 5267).
    let out = run(&mut s, &st, "c SEARCH RETURN (PARTIAL 4:2) ALL\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"c\") PARTIAL (2:4 2:4)\r\nc OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "d UID SEARCH RETURN (PARTIAL 9:10) ALL\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"d\") UID PARTIAL (9:10 NIL)\r\nd OK Search completed.\r\n"
    );
    let out = run(&mut s, &st, "e SEARCH RETURN (PARTIAL 1:*) ALL\r\n");
    assert!(out.starts_with("e BAD"), "{out}");
    // UPDATE: joins after the change, leaves before the EXPUNGE that renumbers.
    let out = run(&mut s, &st, "f SEARCH RETURN (UPDATE) FLAGGED\r\n");
    assert_eq!(out, "* ESEARCH (TAG \"f\")\r\nf OK Search completed.\r\n");
    let out = run(&mut s, &st, "g STORE 4:5 +FLAGS.SILENT (\\Flagged)\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"f\") ADDTO (1 4:5)\r\ng OK Store completed.\r\n"
    );
    run(&mut s, &st, "h STORE 4 +FLAGS.SILENT (\\Deleted)\r\n");
    let out = run(&mut s, &st, "i EXPUNGE\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"f\") REMOVEFROM (0 4)\r\n* 4 EXPUNGE\r\n* 4 RECENT\r\ni OK Expunge completed.\r\n"
    );
    let out = run(&mut s, &st, "j CANCELUPDATE \"f\"\r\n");
    assert!(out.starts_with("j OK"), "{out}");
    let out = run(&mut s, &st, "k STORE 1 +FLAGS.SILENT (\\Flagged)\r\n");
    assert_eq!(out, "k OK Store completed.\r\n");
    let out = run(&mut s, &st, "l CANCELUPDATE \"f\"\r\n");
    assert!(out.starts_with("l NO"), "{out}");
}

#[test]
fn a_stop_may_say_bye_only_between_commands() {
    let st = store();
    let mut s = selected(&st);
    assert!(s.awaits_command());
    // Half a command, or a literal being sent, must not be cut by a goodbye.
    let _ = run(&mut s, &st, "A APPEND INBOX {10}\r\n");
    assert!(!s.awaits_command());
    let mut s = selected(&st);
    let _ = run(&mut s, &st, "I IDLE\r\n");
    assert!(s.awaits_command(), "a client in IDLE waits for the server");
    s.bye("Server shutting down.");
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "* BYE Server shutting down.\r\n"
    );
    assert!(s.is_closed());
}

#[test]
fn literals_that_do_not_fit_in_memory_are_refused_before_they_are_sent() {
    let st = store();
    let mut s = selected(&st);
    s.set_memory_room(Some(100));
    // Synchronising: NO instead of "+", and the session goes on.
    let out = run(&mut s, &st, "A APPEND INBOX {200}\r\n");
    assert_eq!(
        out,
        "A NO [UNAVAILABLE] Server is short of memory, try again later.\r\n"
    );
    assert_eq!(s.committed_input(), 0);
    assert_eq!(run(&mut s, &st, "B NOOP\r\n"), "B OK NOOP completed.\r\n");
    // One that fits is accepted and counts in full while it arrives.
    let out = run(&mut s, &st, "C APPEND INBOX {40}\r\n");
    assert_eq!(out, "+ Ready for literal data\r\n");
    assert_eq!(s.committed_input(), "C APPEND INBOX {40}\r\n".len() + 40);
    // Non-synchronising: already on its way, so the connection ends after the NO.
    let mut s = selected(&st);
    s.set_memory_room(Some(100));
    let (out, action) = run_bytes(&mut s, &st, b"D APPEND INBOX {200+}\r\nxx");
    assert!(out.starts_with("D NO [UNAVAILABLE]"), "{out}");
    assert!(out.contains("* BYE [UNAVAILABLE]"), "{out}");
    assert!(matches!(action, Some(Action::Close)));
}

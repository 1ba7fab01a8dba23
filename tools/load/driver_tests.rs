//! The protocol drivers against scripted servers on 127.0.0.1: each server answers by simple
//! rules with the awkward parts real servers send (multi-line replies, literals holding
//! text that looks like a completion, dot-stuffed bodies, refusals), and the tests check what
//! the recorder counted. Every run is bounded by a `--messages` budget and a duration.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;

use crate::cli::{Cli, Command, Mode};
use crate::pace::Control;
use crate::session::{run_connection, ConnCtx};
use crate::stats::{Op, Recorder, Sample};

/// Runs one connection of `mode` with `args` against `addr`, returns what it recorded.
fn drive(mode: &str, addr: std::net::SocketAddr, extra: &[&str]) -> Sample {
    let target = addr.to_string();
    let mut argv = vec![
        "ringpost-load",
        mode,
        "--target",
        &target,
        "--duration",
        "20",
    ];
    argv.extend_from_slice(extra);
    let (mode, args) = match Cli::try_parse_from(argv).unwrap().command {
        Command::Smtp(a) => (Mode::Smtp, a),
        Command::Imap(a) => (Mode::Imap, a),
        Command::Pop3(a) => (Mode::Pop3, a),
        Command::Report(_) => unreachable!(),
    };
    let settings = Arc::new(args.into_settings(mode).unwrap());
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .unwrap();
    ex.run(async move {
        let control = Arc::new(Control::new(
            Instant::now(),
            settings.duration,
            settings.budget,
        ));
        let rec = Rc::new(Recorder::new(true));
        let ctx = ConnCtx {
            index: 0,
            settings,
            control,
            rec: rec.clone(),
            tls: None,
            run_id: Arc::from("test"),
        };
        run_connection(ctx).await;
        rec.take()
    })
}

/// Serves connections one after another with `handler` until the test ends.
fn serve(handler: fn(TcpStream) -> std::io::Result<()>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = handler(stream);
        }
    });
    addr
}

fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// Reads until `\r\n.\r\n`.
fn read_data(r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    while !data.ends_with(b"\r\n.\r\n") {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        data.push(byte[0]);
    }
    Ok(data)
}

fn smtp_server(stream: TcpStream) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 test ESMTP\r\n")?;
    let mut rcpts = 0;
    let mut authed = false;
    loop {
        let line = read_line(&mut r)?;
        let cmd = line.to_ascii_uppercase();
        let reply: &[u8] = if cmd.starts_with("EHLO") {
            b"250-test greets you\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n"
        } else if cmd.starts_with("AUTH PLAIN ") {
            // "\0u@example.org\0secret"
            if line.trim_end() == "AUTH PLAIN AHVAZXhhbXBsZS5vcmcAc2VjcmV0" {
                authed = true;
                b"235 2.7.0 ok\r\n"
            } else {
                b"535 5.7.8 bad credentials\r\n"
            }
        } else if cmd.starts_with("MAIL") {
            // An authenticated sender sends as itself; SIZE is declared when offered.
            if (authed && !cmd.starts_with("MAIL FROM:<U@EXAMPLE.ORG>")) || !cmd.contains(" SIZE=")
            {
                w.write_all(b"553 5.7.1 sender mismatch\r\n")?;
                continue;
            }
            rcpts = 0;
            b"250 2.1.0 ok\r\n"
        } else if cmd.starts_with("RCPT") {
            if cmd.contains("BAD@") {
                b"550 5.1.1 no such user\r\n"
            } else {
                rcpts += 1;
                b"250 2.1.5 ok\r\n"
            }
        } else if cmd.starts_with("DATA") {
            if rcpts == 0 {
                b"554 5.5.1 no valid recipients\r\n"
            } else {
                w.write_all(b"354 go ahead\r\n")?;
                let data = read_data(&mut r)?;
                assert!(data.windows(11).any(|x| x == b"X-Load-Id: "));
                b"250 2.0.0 queued\r\n"
            }
        } else if cmd.starts_with("RSET") {
            b"250 2.0.0 reset\r\n"
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            b"500 5.5.2 what\r\n"
        };
        w.write_all(reply)?;
    }
}

#[test]
fn smtp_counts_accepted_and_refused() {
    let addr = serve(smtp_server);
    for pipelining in [false, true] {
        let mut extra = vec![
            "--messages",
            "60",
            "--to",
            "good@example.org,bad@example.org",
        ];
        if pipelining {
            extra.push("--pipelining");
        }
        let s = drive("smtp", addr, &extra);
        let refused = s.errors.get("rcpt.all").copied().unwrap_or(0);
        assert_eq!(
            s.ops + refused,
            60,
            "pipelining {pipelining}: {:?}",
            s.errors
        );
        assert_eq!(s.errors.get("rcpt.5xx").copied().unwrap_or(0), refused);
        assert!(
            s.ops > 0 && refused > 0,
            "both recipients are drawn in 60 tries"
        );
        assert_eq!(s.hists[&Op::Txn].len(), s.ops);
        assert_eq!(s.hists[&Op::Rset].len(), refused);
        assert_eq!(s.ids.len() as u64, s.ops);
        assert_eq!(s.hists[&Op::Ehlo].len(), 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "u@example.org secret\n").unwrap();
    let s = drive(
        "smtp",
        addr,
        &["--messages", "10", "--users", users.to_str().unwrap()],
    );
    assert_eq!(s.ops, 10, "{:?}", s.errors);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.hists[&Op::Auth].len(), 1);
}

fn imap_server(stream: TcpStream) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n")?;
    loop {
        let line = read_line(&mut r)?;
        let (tag, rest) = line.trim_end().split_once(' ').unwrap_or(("*", ""));
        let cmd = rest.to_ascii_uppercase();
        let mut out = Vec::new();
        if cmd.starts_with("UID FETCH") {
            // The literal holds text that looks like this command's completion.
            let body = format!("{tag} OK fake\r\n* BYE not really\r\n");
            out.extend_from_slice(
                format!(
                    "* 1 FETCH (UID 1 RFC822.SIZE {} BODY[] {{{}}}\r\n",
                    body.len(),
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(body.as_bytes());
            out.extend_from_slice(b" FLAGS (\\Seen))\r\n");
        } else if cmd.starts_with("UID STORE") {
            out.extend_from_slice(b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n");
        } else if cmd.starts_with("SEARCH") {
            out.extend_from_slice(b"* SEARCH 1 2 3\r\n");
        } else if cmd.starts_with("SELECT") {
            out.extend_from_slice(b"* 3 EXISTS\r\n* OK [UIDNEXT 4] next\r\n* FLAGS (\\Seen)\r\n");
        } else if cmd.starts_with("APPEND") {
            let n: usize = cmd
                .rsplit('{')
                .next()
                .and_then(|s| s.trim_end_matches('}').parse().ok())
                .unwrap_or(0);
            w.write_all(b"+ Ready for literal data\r\n")?;
            let mut msg = vec![0u8; n + 2];
            r.read_exact(&mut msg)?;
            assert!(msg.ends_with(b"\r\n"));
            out.extend_from_slice(format!("{tag} OK [APPENDUID 1 9] appended\r\n").as_bytes());
            w.write_all(&out)?;
            continue;
        } else if cmd.starts_with("IDLE") {
            w.write_all(b"+ idling\r\n* 4 EXISTS\r\n")?;
            let done = read_line(&mut r)?;
            assert_eq!(done, "DONE\r\n");
        } else if cmd.starts_with("NOOP") {
            // A refusal the session must survive.
            w.write_all(format!("{tag} NO try later\r\n").as_bytes())?;
            continue;
        } else if cmd.starts_with("LOGOUT") {
            w.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())?;
            return Ok(());
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        w.write_all(&out)?;
    }
}

#[test]
fn imap_mix_with_literals() {
    let addr = serve(imap_server);
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "u@example.org secret\n").unwrap();
    let users = users.to_str().unwrap().to_string();
    for auth in ["login", "plain"] {
        let s = drive(
            "imap",
            addr,
            &[
                "--messages",
                "300",
                "--users",
                &users,
                "--imap-auth",
                auth,
                "--idle-ms",
                "1",
                "--mix",
                "fetch=1,store=1,search=1,append=1,noop=1,idle=1",
            ],
        );
        let noop_refused = s.errors.get("noop.NO").copied().unwrap_or(0);
        assert_eq!(s.ops + noop_refused, 300, "{auth}: {:?}", s.errors);
        assert_eq!(
            s.errors.len(),
            usize::from(noop_refused > 0),
            "{:?}",
            s.errors
        );
        for op in [Op::Fetch, Op::Store, Op::Search, Op::Append, Op::Idle] {
            assert!(s.hists.contains_key(&op), "{auth}: no {}", op.name());
        }
        // Bodies fetched plus messages appended.
        assert_eq!(
            s.messages,
            s.hists[&Op::Fetch].len() + s.hists[&Op::Append].len()
        );
        let login_op = if auth == "login" { Op::Login } else { Op::Auth };
        assert_eq!(s.hists[&login_op].len(), 1);
        assert_eq!(s.hists[&Op::Logout].len(), 1);
    }
}

fn pop3_server(stream: TcpStream) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"+OK POP3 ready\r\n")?;
    loop {
        let line = read_line(&mut r)?;
        let cmd = line.to_ascii_uppercase();
        let reply: Vec<u8> = if cmd.starts_with("LIST") {
            b"+OK 3 messages\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n".to_vec()
        } else if cmd.starts_with("RETR 2") {
            b"-ERR message 2 already deleted\r\n".to_vec()
        } else if cmd.starts_with("RETR") {
            // Dot-stuffed lines and a line that is only "..": none of them ends the response.
            b"+OK 40 octets\r\nSubject: x\r\n\r\n..hidden\r\n..\r\nend\r\n.\r\n".to_vec()
        } else if cmd.starts_with("STAT") {
            b"+OK 3 600\r\n".to_vec()
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"+OK bye\r\n")?;
            return Ok(());
        } else {
            b"+OK\r\n".to_vec()
        };
        w.write_all(&reply)?;
    }
}

#[test]
fn pop3_sessions_retrieve_and_count_refusals() {
    let addr = serve(pop3_server);
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "u@example.org secret\n").unwrap();
    let s = drive(
        "pop3",
        addr,
        &[
            "--messages",
            "30",
            "--users",
            users.to_str().unwrap(),
            "--retr",
            "0",
            "--dele-pct",
            "100",
        ],
    );
    let refused = s.errors.get("retr.ERR").copied().unwrap_or(0);
    // Every session tries messages 1, 2, 3 in order and message 2 is refused.
    assert_eq!(s.messages + refused, 30, "{:?}", s.errors);
    assert_eq!(s.messages, 20);
    assert_eq!(s.hists[&Op::Dele].len(), s.messages);
    assert_eq!(s.hists[&Op::Session].len(), 10);
    assert_eq!(s.hists[&Op::Retr].len(), 20);
}

//! Stock mail clients from Debian against the real binary, on every port: Thunderbird
//! (headless, driven over Marionette) over IMAP(S), POP3(S) and SMTP; mbsync, offlineimap,
//! imapfilter, mutt and neomutt over IMAP(S); fetchmail, getmail, mpop and s-nail over POP3(S)
//! and IMAP(S); msmtp, mutt, s-nail, sendemail and swaks over submission, submissions and the
//! MX port. Server bugs they uncovered are reproduced by tests at the end; all are fixed.
//!
//! Each test skips (with a line saying which package is missing) when its client is not
//! installed; `.ci/run` installs them all. Every client run is bounded by `CLIENT_TIMEOUT` and
//! killed by its PID when it overruns. Clients trust the server's self-signed certificate
//! (`DATA_DIR/tls/cert.pem`, whose names include `localhost`) rather than skip verification,
//! so they connect to `localhost`.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest any single client run may take before it is killed and the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `bin` is on PATH.
fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Returns from the test (skipping it, loudly) unless every named binary is installed.
macro_rules! require {
    ($($bin:expr => $pkg:expr),+ $(,)?) => {
        $(
            if !have($bin) {
                eprintln!(
                    "SKIPPED: `{}` is not installed (Debian package `{}`; .ci/run installs it)",
                    $bin, $pkg
                );
                return;
            }
        )+
    };
}

/// What a client run left behind.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A scratch directory for one test's clients (also their HOME), inside the server's tempdir.
struct Clients<'a> {
    s: &'a Server,
    dir: PathBuf,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

impl<'a> Clients<'a> {
    fn new(s: &'a Server) -> Clients<'a> {
        let dir = s.dir.path().join("clients");
        fs::create_dir_all(&dir).unwrap();
        Clients { s, dir }
    }

    /// The server's self-signed certificate.
    fn cert(&self) -> String {
        self.s.data_dir().join("tls/cert.pem").display().to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Writes a file (mode 0600: fetchmail and msmtp refuse readable secrets) and returns
    /// its path.
    fn write(&self, rel: &str, text: &str) -> String {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p.display().to_string()
    }

    /// Runs a client with `stdin`, HOME in the scratch directory and a deadline; output goes
    /// to files so a chatty client never blocks on a full pipe.
    fn run(&self, cmd: &mut Command, stdin: &[u8]) -> Ran {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.join(format!("run{n}.out"));
        let err_path = self.dir.join(format!("run{n}.err"));
        let mut child = cmd
            .env("HOME", &self.dir)
            .env("TERM", "xterm")
            .env("LC_ALL", "C.UTF-8")
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            let _ = pipe.write_all(stdin);
        }
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                // Before the kill: who holds unread bytes tells a server stall from a client one.
                let sockets = sockets(self.s);
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmd:?} did not finish within {CLIENT_TIMEOUT:?}\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}\n--- sockets\n{sockets}",
                    fs::read_to_string(&out_path).unwrap_or_default(),
                    fs::read_to_string(&err_path).unwrap_or_default(),
                    tail(&self.s.log_text(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        Ran {
            status,
            stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap()).into(),
            stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap()).into(),
        }
    }

    /// Runs a client and requires exit status 0.
    fn ok(&self, what: &str, cmd: &mut Command, stdin: &[u8]) -> Ran {
        let r = self.run(cmd, stdin);
        assert!(
            r.status.success(),
            "{what} failed\n{}\n--- server log (tail)\n{}",
            r.text(),
            tail(&self.s.log_text(), 40)
        );
        r
    }

    /// Runs a full-screen client (mutt, neomutt) on a pseudo-terminal made by `script`, since
    /// they will not open a mailbox without one. `args` is a shell command line.
    fn tty(&self, what: &str, args: &str) -> Ran {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let sh = self.write(
            &format!("tty{n}.sh"),
            &format!("stty rows 40 cols 120 2>/dev/null\nexec {args}\n"),
        );
        let r = self.ok(
            what,
            Command::new("script").args(["-qec", &format!("sh {sh}"), "/dev/null"]),
            b"",
        );
        r
    }
}

/// Delivers a message to a local address over the MX port.
/// The TCP connections of the server's ports with their queues and state (`ss -tni`).
fn sockets(s: &Server) -> String {
    let p = s.ports;
    let filter = [
        p.smtp,
        p.submission,
        p.submissions,
        p.imap,
        p.imaps,
        p.pop3,
        p.pop3s,
    ]
    .iter()
    .map(|port| format!("sport = :{port}"))
    .collect::<Vec<_>>()
    .join(" or ");
    match Command::new("ss")
        .args(["-tni", &format!("( {filter} )")])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("ss: {e}"),
    }
}

fn deliver(s: &Server, to: &str, subject: &str, body: &str) {
    let subject = format!("Subject: {subject}");
    s.swaks(&[
        "--to",
        to,
        "--from",
        "sender@remote.example",
        "--header",
        &subject,
        "--body",
        body,
    ]);
}

fn pass_of(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("unknown test user {user}"))
}

/// Runs `tests/clients/stock/imap_peek.py` (imaplib over IMAPS, never setting \\Seen) and
/// returns its output. curl cannot do this job: it prints no literals of custom commands, and
/// its URL fetches set \\Seen.
fn peek(s: &Server, user: &str, args: &[&str]) -> String {
    let mut all = vec![user, pass_of(user)];
    all.extend_from_slice(args);
    s.python("stock/imap_peek.py", &all)
}

/// One message as the server has it: UID, flags, Subject.
#[derive(Debug, Clone)]
struct Msg {
    uid: u32,
    flags: String,
    subject: String,
}

/// Every message of a mailbox, as the server has it.
fn server_messages(s: &Server, user: &str, mailbox: &str) -> Vec<Msg> {
    peek(s, user, &["messages", mailbox])
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            Msg {
                uid: f
                    .next()
                    .and_then(|u| u.parse().ok())
                    .unwrap_or_else(|| panic!("{l}")),
                flags: f.next().unwrap_or_default().to_string(),
                subject: f.next().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

/// Changes flags on the server (`op` is +FLAGS, -FLAGS or FLAGS).
fn server_store(s: &Server, user: &str, mailbox: &str, uid: u32, op: &str, flags: &str) {
    peek(s, user, &["store", mailbox, &uid.to_string(), op, flags]);
}

/// The text (body) of one message on the server.
fn server_text(s: &Server, user: &str, mailbox: &str, uid: u32) -> String {
    peek(s, user, &["text", mailbox, &uid.to_string()])
}

/// Mailbox names the server lists for a user.
fn server_mailboxes(s: &Server, user: &str) -> Vec<String> {
    peek(s, user, &["list"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn subjects(v: &[Msg]) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(|m| m.subject.clone()).collect();
    s.sort();
    s
}

fn find<'m>(v: &'m [Msg], subject: &str) -> &'m Msg {
    v.iter()
        .find(|m| m.subject == subject)
        .unwrap_or_else(|| panic!("no message {subject:?} in {v:?}"))
}

/// The files of one Maildir folder (cur and new), with their contents.
fn maildir(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                let text = String::from_utf8_lossy(&fs::read(e.path()).unwrap()).into_owned();
                v.push((e.path(), text));
            }
        }
    }
    v
}

fn maildir_subjects(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = maildir(dir)
        .iter()
        .filter_map(|(_, t)| {
            t.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(|s| s.trim().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// The Maildir file holding the message with `subject`.
fn maildir_file(dir: &Path, subject: &str) -> PathBuf {
    let needle = format!("Subject: {subject}\n");
    let needle_crlf = format!("Subject: {subject}\r\n");
    maildir(dir)
        .into_iter()
        .find(|(_, t)| t.contains(&needle) || t.contains(&needle_crlf))
        .map(|(p, _)| p)
        .unwrap_or_else(|| panic!("no {subject:?} in {}", dir.display()))
}

/// Sets the Maildir flags of a message (moving it to cur/, as a mail reader does).
fn set_maildir_flags(file: &Path, flags: &str) -> PathBuf {
    let name = file.file_name().unwrap().to_str().unwrap();
    let base = name.split(":2,").next().unwrap();
    let dest = file
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("cur")
        .join(format!("{base}:2,{flags}"));
    fs::rename(file, &dest).unwrap();
    dest
}

/// Drops a new message into a Maildir folder (creating the folder).
fn maildir_add(dir: &Path, name: &str, flags: &str, text: &str) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let path = if flags.is_empty() {
        dir.join("new").join(name)
    } else {
        dir.join("cur").join(format!("{name}:2,{flags}"))
    };
    fs::write(path, text).unwrap();
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// IMAP: mbsync (isync)

/// Full two-way mbsync of every folder: pull, then local flag changes, deletions, new
/// messages and new (nested) folders pushed back, server-side changes pulled, and a final
/// run that must change nothing.
fn mbsync_round_trip(tls: &str) {
    let s = Server::new().start();
    let port = if tls == "IMAPS" {
        s.ports.imaps
    } else {
        s.ports.imap
    };
    let c = Clients::new(&s);
    let user = "alice@example.org";
    for i in 1..=3 {
        deliver(&s, user, &format!("mb-{i}"), &format!("body {i}"));
    }
    let local = c.path("Mail");
    fs::create_dir_all(&local).unwrap();
    let rc = c.write(
        "mbsyncrc",
        &format!(
            "IMAPAccount rp\nHost localhost\nPort {port}\nUser {user}\nPass alice-pw\n\
             SSLType {tls}\nCertificateFile {cert}\n\n\
             IMAPStore far\nAccount rp\n\n\
             MaildirStore near\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
             Channel rp\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\n\
             SyncState *\n",
            cert = c.cert(),
            local = local.display(),
        ),
    );
    let sync = |what: &str| {
        c.ok(
            what,
            Command::new("mbsync").args(["-V", "-c", &rc, "rp"]),
            b"",
        )
    };

    // 1. Pull everything.
    sync("mbsync (first pull)");
    let inbox = local.join("INBOX");
    assert_eq!(
        maildir_subjects(&inbox),
        sorted(&["mb-1", "mb-2", "mb-3"]),
        "pulled INBOX"
    );
    for special in ["Sent", "Drafts", "Trash"] {
        assert!(
            local.join(special).join("cur").is_dir(),
            "mbsync made no local {special}"
        );
    }

    // 2. Change things on both sides.
    set_maildir_flags(&maildir_file(&inbox, "mb-1"), "FS");
    set_maildir_flags(&maildir_file(&inbox, "mb-2"), "ST"); // trashed: Expunge Both removes it
    maildir_add(
        &inbox,
        "1000.local",
        "S",
        "From: alice@example.org\nTo: bob@example.org\nSubject: pushed\n\
         Message-ID: <pushed-1@example.org>\n\npushed from mbsync\n.leading dot\n",
    );
    maildir_add(
        &local.join("Projects"),
        "1001.local",
        "",
        "Subject: in projects\n\nhello\n",
    );
    maildir_add(
        &local.join("Projects/Sub"),
        "1002.local",
        "F",
        "Subject: in sub\n\nnested\n",
    );
    deliver(&s, user, "mb-4", "arrived between syncs");
    let before = server_messages(&s, user, "INBOX");
    let uid3 = find(&before, "mb-3").uid;
    server_store(&s, user, "INBOX", uid3, "+FLAGS", "(\\Answered)");

    // 3. Sync both ways.
    sync("mbsync (two-way)");
    let inbox_msgs = server_messages(&s, user, "INBOX");
    assert_eq!(
        subjects(&inbox_msgs),
        sorted(&["mb-1", "mb-3", "mb-4", "pushed"]),
        "server INBOX after push: {inbox_msgs:?}"
    );
    let m1 = find(&inbox_msgs, "mb-1");
    assert!(
        m1.flags.contains("\\Seen") && m1.flags.contains("\\Flagged"),
        "{m1:?}"
    );
    let pushed = find(&inbox_msgs, "pushed");
    assert!(pushed.flags.contains("\\Seen"), "{pushed:?}");
    let boxes = server_mailboxes(&s, user);
    for b in ["Projects", "Projects/Sub"] {
        assert!(boxes.contains(&b.to_string()), "{b} not created: {boxes:?}");
    }
    assert_eq!(
        subjects(&server_messages(&s, user, "Projects")),
        ["in projects"]
    );
    let sub = server_messages(&s, user, "Projects/Sub");
    assert_eq!(subjects(&sub), ["in sub"]);
    assert!(sub[0].flags.contains("\\Flagged"), "{sub:?}");
    assert_eq!(
        maildir_subjects(&inbox),
        sorted(&["mb-1", "mb-3", "mb-4", "pushed"]),
        "local INBOX after sync"
    );
    let f3 = maildir_file(&inbox, "mb-3");
    assert!(
        f3.to_str().unwrap().ends_with(",R") || f3.to_str().unwrap().contains(":2,R"),
        "\\Answered not pulled: {}",
        f3.display()
    );
    // The pushed body survived byte for byte (line ends aside).
    let body = server_text(&s, user, "INBOX", pushed.uid);
    assert!(
        body.contains("pushed from mbsync\r\n.leading dot"),
        "{body}"
    );

    // 4. Nothing changed: another run changes nothing anywhere.
    let local_before = maildir(&inbox).len();
    sync("mbsync (idempotent)");
    assert_eq!(maildir(&inbox).len(), local_before);
    let again = server_messages(&s, user, "INBOX");
    assert_eq!(
        again
            .iter()
            .map(|m| (m.uid, m.flags.clone()))
            .collect::<Vec<_>>(),
        inbox_msgs
            .iter()
            .map(|m| (m.uid, m.flags.clone()))
            .collect::<Vec<_>>(),
        "an idle mbsync run changed the server"
    );
}

#[test]
fn mbsync_two_way_sync_over_imaps() {
    require!("mbsync" => "isync", "curl" => "curl", "swaks" => "swaks");
    mbsync_round_trip("IMAPS");
}

#[test]
fn mbsync_two_way_sync_over_starttls() {
    require!("mbsync" => "isync", "curl" => "curl", "swaks" => "swaks");
    mbsync_round_trip("STARTTLS");
}

/// Three mbsync stores of one account (laptop, desktop, phone) syncing at the same time:
/// each pushes new messages and flag changes and trashes a few, concurrently, twice over; the
/// server ends with every message once, and every store converges on the server's state.
#[test]
fn mbsync_three_stores_sync_concurrently() {
    require!("mbsync" => "isync", "swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "carol@example.org";
    for i in 0..20 {
        deliver(&s, user, &format!("base {i}"), "base");
    }
    let stores: Vec<(PathBuf, String)> = (1..=3)
        .map(|n| {
            let local = c.path(&format!("store{n}"));
            fs::create_dir_all(&local).unwrap();
            let rc = c.write(
                &format!("mbsyncrc{n}"),
                &format!(
                    "IMAPAccount rp\nHost localhost\nPort {port}\nUser {user}\nPass carol-pw\n\
                     SSLType IMAPS\nCertificateFile {cert}\n\n\
                     IMAPStore far\nAccount rp\n\n\
                     MaildirStore near\nPath {local}/\nInbox {local}/INBOX\n\n\
                     Channel rp\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Both\n\
                     Expunge Both\nSyncState *\n",
                    port = s.ports.imaps,
                    cert = c.cert(),
                    local = local.display(),
                ),
            );
            (local, rc)
        })
        .collect();
    let sync_all = |round: &str| {
        std::thread::scope(|scope| {
            for (n, (_, rc)) in stores.iter().enumerate() {
                let c = &c;
                scope.spawn(move || {
                    c.ok(
                        &format!("mbsync store {} ({round})", n + 1),
                        Command::new("mbsync").args(["-c", rc, "rp"]),
                        b"",
                    );
                });
            }
        });
    };
    sync_all("first pull");
    for (n, (local, _)) in stores.iter().enumerate() {
        let inbox = local.join("INBOX");
        assert_eq!(maildir(&inbox).len(), 20, "store {}", n + 1);
        for i in 0..10 {
            maildir_add(
                &inbox,
                &format!("push-{n}-{i}.local"),
                "",
                &format!("Subject: push {n} {i}\n\nfrom store {n}\n"),
            );
        }
        // Store n flags base n*3.., and trashes base 10+n.
        for i in 0..3 {
            set_maildir_flags(&maildir_file(&inbox, &format!("base {}", n * 3 + i)), "FS");
        }
        set_maildir_flags(&maildir_file(&inbox, &format!("base {}", 10 + n)), "ST");
    }
    sync_all("concurrent push");
    sync_all("converge");
    let msgs = server_messages(&s, user, "INBOX");
    let mut want: Vec<String> = (0..20)
        .filter(|i| !(10..13).contains(i))
        .map(|i| format!("base {i}"))
        .chain((0..3).flat_map(|n| (0..10).map(move |i| format!("push {n} {i}"))))
        .collect();
    want.sort();
    assert_eq!(subjects(&msgs), want, "server INBOX");
    for i in 0..9 {
        let m = find(&msgs, &format!("base {i}"));
        assert!(
            m.flags.contains("\\Flagged") && m.flags.contains("\\Seen"),
            "{m:?}"
        );
    }
    for (n, (local, _)) in stores.iter().enumerate() {
        assert_eq!(
            maildir_subjects(&local.join("INBOX")),
            want,
            "store {} did not converge",
            n + 1
        );
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP: mutt and neomutt

/// A mutt/neomutt config for `user`, trusting the server's certificate.
fn mutt_rc(c: &Clients, name: &str, user: &str, folder: &str, extra: &str) -> String {
    c.write(
        name,
        &format!(
            "set from = \"{user}\"\nset realname = \"Test User\"\n\
             set imap_user = \"{user}\"\nset imap_pass = \"{pass}\"\n\
             set folder = \"{folder}\"\nset spoolfile = \"+INBOX\"\n\
             set ssl_ca_certificates_file = \"{cert}\"\n\
             set certificate_file = \"{dir}/{name}.certs\"\n\
             set ssl_force_tls = yes\n\
             set confirmcreate = no\nset confirmappend = no\nset quit = yes\nset delete = yes\n\
             set move = no\nset record = \"\"\nset mbox_type = mbox\nset sort = date\n\
             set header_cache = \"\"\nset message_cachedir = \"\"\n{extra}",
            pass = pass_of(user),
            cert = c.cert(),
            dir = c.dir.display(),
        ),
    )
}

/// mutt over IMAPS: every message copied to a local mbox (full bodies fetched).
/// mutt over STARTTLS: flag one message, copy one to another IMAP folder (server-side COPY),
/// delete it and sync (EXPUNGE), then flag everything in the other folder.
#[test]
fn mutt_reads_flags_copies_and_expunges_over_imaps_and_starttls() {
    require!("mutt" => "mutt", "script" => "bsdutils", "swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "bob@example.org";
    for i in 1..=3 {
        deliver(&s, user, &format!("mutt-{i}"), &format!("mutt body {i}"));
    }

    // IMAPS: read everything.
    let rc = mutt_rc(
        &c,
        "muttrc-imaps",
        user,
        &format!("imaps://localhost:{}/", s.ports.imaps),
        "",
    );
    let mbox = c.path("saved.mbox");
    c.tty(
        "mutt (imaps, copy all)",
        &format!(
            "mutt -n -F {rc} -f imaps://localhost:{port}/INBOX -e 'push \"<tag-pattern>~A<enter><tag-prefix><copy-message>{mbox}<enter><quit>\"'",
            port = s.ports.imaps,
            mbox = mbox.display()
        ),
    );
    let saved = fs::read_to_string(&mbox).unwrap_or_default();
    assert_eq!(
        saved.matches("\nFrom ").count() + 1,
        3,
        "mutt copied: {saved}"
    );
    for i in 1..=3 {
        assert!(saved.contains(&format!("mutt body {i}")), "{saved}");
    }

    // STARTTLS: flag, copy to Archive, delete, sync; then flag all in Archive.
    let rc = mutt_rc(
        &c,
        "muttrc-starttls",
        user,
        &format!("imap://localhost:{}/", s.ports.imap),
        "set ssl_starttls = yes\n",
    );
    c.tty(
        "mutt (starttls, flag/copy/delete)",
        &format!(
            "mutt -n -F {rc} -f imap://localhost:{port}/INBOX -e 'push \"<search>mutt-1<enter><flag-message><search>mutt-2<enter><copy-message>=Archive<enter><delete-message><sync-mailbox><change-folder>=Archive<enter><tag-pattern>~A<enter><tag-prefix><flag-message><quit>\"'",
            port = s.ports.imap
        ),
    );
    let inbox = server_messages(&s, user, "INBOX");
    assert_eq!(subjects(&inbox), sorted(&["mutt-1", "mutt-3"]), "{inbox:?}");
    assert!(
        find(&inbox, "mutt-1").flags.contains("\\Flagged"),
        "{inbox:?}"
    );
    assert!(
        !find(&inbox, "mutt-3").flags.contains("\\Flagged"),
        "{inbox:?}"
    );
    let archive = server_messages(&s, user, "Archive");
    assert_eq!(subjects(&archive), ["mutt-2"], "{archive:?}");
    assert!(archive[0].flags.contains("\\Flagged"), "{archive:?}");
    assert!(
        !archive[0].flags.contains("\\Deleted"),
        "COPY carried \\Deleted: {archive:?}"
    );
}

/// mutt sends over submissions (465, implicit TLS) and submission (587, STARTTLS), both with
/// AUTH; bob receives both.
#[test]
fn mutt_sends_over_submissions_and_submission() {
    require!("mutt" => "mutt", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    for (label, url) in [
        (
            "mutt smtps",
            format!(
                "smtps://alice%40example.org@localhost:{}/",
                s.ports.submissions
            ),
        ),
        (
            "mutt submission",
            format!(
                "smtp://alice%40example.org@localhost:{}/",
                s.ports.submission
            ),
        ),
    ] {
        let rc = mutt_rc(
            &c,
            &format!("muttrc-send-{}", label.replace(' ', "-")),
            "alice@example.org",
            &format!("imaps://localhost:{}/", s.ports.imaps),
            &format!(
                "set smtp_url = \"{url}\"\nset smtp_pass = \"alice-pw\"\nset ssl_starttls = yes\n\
                 set use_envelope_from = yes\nset send_charset = \"utf-8\"\n"
            ),
        );
        c.ok(
            label,
            Command::new("mutt").args(["-n", "-F", &rc, "-s", label, "bob@example.org"]),
            "Hello from mutt, Grüße.\n".as_bytes(),
        );
    }
    let got = server_messages(&s, "bob@example.org", "INBOX");
    assert_eq!(
        subjects(&got),
        sorted(&["mutt smtps", "mutt submission"]),
        "{got:?}"
    );
    let text = server_text(&s, "bob@example.org", "INBOX", got[0].uid);
    assert!(text.contains("Hello from mutt"), "{text}");
}

/// neomutt with CONDSTORE, QRESYNC (if offered) and a header cache: a first run fills the
/// cache, a second run must resynchronise from it and still see every message and flag.
#[test]
fn neomutt_condstore_with_header_cache() {
    require!("neomutt" => "neomutt", "script" => "bsdutils", "swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "carol@example.org";
    for i in 1..=4 {
        deliver(&s, user, &format!("neo-{i}"), &format!("neomutt body {i}"));
    }
    fs::create_dir_all(c.path("hcache")).unwrap();
    fs::create_dir_all(c.path("bcache")).unwrap();
    let rc = mutt_rc(
        &c,
        "neomuttrc",
        user,
        &format!("imaps://localhost:{}/", s.ports.imaps),
        &format!(
            "set header_cache = \"{d}/hcache\"\nset message_cachedir = \"{d}/bcache\"\n\
             set imap_condstore = yes\nset imap_qresync = yes\n",
            d = c.dir.display()
        ),
    );
    let run = |n: u32, extra: &str| {
        let mbox = c.path(&format!("neo{n}.mbox"));
        c.tty(
            &format!("neomutt run {n}"),
            &format!(
                "neomutt -n -F {rc} -e 'push \"{extra}<tag-pattern>~A<enter><tag-prefix><copy-message>{mbox}<enter><quit>\"'",
                mbox = mbox.display()
            ),
        );
        fs::read_to_string(&mbox).unwrap_or_default()
    };
    let first = run(1, "<search>neo-2<enter><flag-message>");
    assert_eq!(first.matches("neomutt body").count(), 4, "{first}");
    // Changes made elsewhere between the runs: a new message and a flag.
    deliver(&s, user, "neo-5", "neomutt body 5");
    let msgs = server_messages(&s, user, "INBOX");
    assert!(find(&msgs, "neo-2").flags.contains("\\Flagged"), "{msgs:?}");
    server_store(
        &s,
        user,
        "INBOX",
        find(&msgs, "neo-3").uid,
        "+FLAGS",
        "(\\Answered)",
    );
    let second = run(2, "");
    assert_eq!(second.matches("neomutt body").count(), 5, "{second}");
    // mbox status lines written by neomutt reflect the flags it saw.
    let neo3 = second
        .split("\nFrom ")
        .find(|m| m.contains("Subject: neo-3"))
        .unwrap_or_else(|| panic!("{second}"));
    assert!(
        neo3.lines()
            .any(|l| l.starts_with("X-Status: ") && l.contains('A')),
        "\\Answered set elsewhere not seen through the header cache:\n{neo3}"
    );
}

// ---------------------------------------------------------------------------------------------
// POP3 and IMAP: fetchmail

/// Runs fetchmail with `rc`; returns its exit code (0: mail fetched, 1: no mail).
fn fetchmail(c: &Clients, what: &str, rc: &str) -> (i32, Ran) {
    let r = c.run(
        Command::new("fetchmail")
            .args(["-v", "--nodetach", "-f", rc])
            // As root, fetchmail locks /var/run/fetchmail.pid: tests running side by side
            // would refuse each other.
            .arg("--pidfile")
            .arg(c.path("fetchmail.pid"))
            .env("FETCHMAILHOME", &c.dir),
        b"",
    );
    let code = r.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{what} failed\n{}\n--- server log (tail)\n{}",
        r.text(),
        tail(&c.s.log_text(), 40)
    );
    (code, r)
}

/// A fetchmail rc for carol: `proto` pop3/imap, `tls` either "ssl" (implicit) or
/// "sslproto TLS1.2+" (STLS/STARTTLS required), `keep` either "keep" or "nokeep".
fn fetchmail_rc(c: &Clients, name: &str, proto: &str, port: u16, tls: &str, keep: &str) -> String {
    c.write(
        name,
        &format!(
            "set no syslog\nset idfile \"{dir}/{name}.ids\"\n\
             poll 127.0.0.1 service {port} protocol {proto} {uidl} auth password timeout 60\n  \
             user \"carol@example.org\" there with password \"carol-pw\" is \"root\" here\n  \
             {tls} sslcertck sslcertfile \"{cert}\" sslcommonname \"localhost\"\n  \
             {keep}\n  mda \"cat >> {dir}/{name}.mbox\"\n",
            dir = c.dir.display(),
            uidl = if proto == "pop3" { "uidl" } else { "" },
            cert = c.cert(),
        ),
    )
}

fn mbox_count(path: &Path) -> usize {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Subject: fm-"))
        .count()
}

/// POP3S (995) with `keep`: UIDL tracking across runs fetches each message once. Then POP3
/// with STLS (110) without `keep`: everything fetched and deleted.
#[test]
fn fetchmail_pop3s_keep_uidl_then_pop3_stls_delete() {
    require!("fetchmail" => "fetchmail", "swaks" => "swaks", "curl" => "curl");
    let s = Server::new().start();
    let c = Clients::new(&s);
    for i in 1..=3 {
        deliver(&s, "carol@example.org", &format!("fm-{i}"), "pop body");
    }
    let rc = fetchmail_rc(&c, "pop3s", "pop3", s.ports.pop3s, "ssl", "keep");
    let out = c.path("pop3s.mbox");
    assert_eq!(fetchmail(&c, "fetchmail pop3s #1", &rc).0, 0);
    assert_eq!(mbox_count(&out), 3);
    let (code, r) = fetchmail(&c, "fetchmail pop3s #2", &rc);
    assert_eq!(code, 1, "nothing new, yet:\n{}", r.text());
    assert_eq!(mbox_count(&out), 3, "UIDL keep tracking refetched");
    deliver(&s, "carol@example.org", "fm-4", "pop body");
    assert_eq!(fetchmail(&c, "fetchmail pop3s #3", &rc).0, 0);
    assert_eq!(mbox_count(&out), 4, "the new message, once");
    assert_eq!(pop3_list(&s).len(), 4, "keep deleted something");

    let rc = fetchmail_rc(
        &c,
        "pop3stls",
        "pop3",
        s.ports.pop3,
        "sslproto TLS1.2+",
        "nokeep",
    );
    let (code, r) = fetchmail(&c, "fetchmail pop3 stls nokeep", &rc);
    assert_eq!(code, 0);
    assert!(
        r.stderr.contains("STLS") || r.stdout.contains("STLS"),
        "no STLS:\n{}",
        r.text()
    );
    assert_eq!(mbox_count(&c.path("pop3stls.mbox")), 4);
    assert_eq!(
        pop3_list(&s),
        Vec::<String>::new(),
        "nokeep left mail behind"
    );
}

/// The POP3 LIST of carol's maildrop, over POP3S with curl.
fn pop3_list(s: &Server) -> Vec<String> {
    curl_get(
        &format!("pop3s://127.0.0.1:{}/", s.ports.pop3s),
        "carol@example.org:carol-pw",
    )
    .lines()
    .map(str::to_string)
    .filter(|l| !l.trim().is_empty())
    .collect()
}

/// IMAPS (993) with `keep`: fetches unseen mail and marks it \Seen, so a second run gets
/// nothing. IMAP with STARTTLS (143) with `nokeep fetchall`: fetches, flags \Deleted and
/// expunges.
#[test]
fn fetchmail_imaps_keep_then_imap_starttls_delete() {
    require!("fetchmail" => "fetchmail", "swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "carol@example.org";
    for i in 1..=3 {
        deliver(&s, user, &format!("fm-{i}"), "imap body");
    }
    let rc = fetchmail_rc(&c, "imaps", "imap", s.ports.imaps, "ssl", "keep");
    assert_eq!(fetchmail(&c, "fetchmail imaps #1", &rc).0, 0);
    assert_eq!(mbox_count(&c.path("imaps.mbox")), 3);
    let msgs = server_messages(&s, user, "INBOX");
    assert!(msgs.iter().all(|m| m.flags.contains("\\Seen")), "{msgs:?}");
    assert_eq!(fetchmail(&c, "fetchmail imaps #2", &rc).0, 1);
    assert_eq!(mbox_count(&c.path("imaps.mbox")), 3);

    deliver(&s, user, "fm-4", "imap body");
    let rc = fetchmail_rc(
        &c,
        "imapstarttls",
        "imap",
        s.ports.imap,
        "sslproto TLS1.2+",
        "nokeep fetchall",
    );
    let (code, r) = fetchmail(&c, "fetchmail imap starttls nokeep", &rc);
    assert_eq!(code, 0);
    assert!(r.text().contains("STARTTLS"), "no STARTTLS:\n{}", r.text());
    assert_eq!(mbox_count(&c.path("imapstarttls.mbox")), 4);
    let left = server_messages(&s, user, "INBOX");
    assert!(left.is_empty(), "nokeep left {left:?}");
}

// ---------------------------------------------------------------------------------------------
// SMTP: msmtp, swaks, s-nail

/// msmtp over submission (587, STARTTLS) with AUTH PLAIN and AUTH LOGIN, and over
/// submissions (465, implicit TLS); a wrong password and AUTH without TLS both fail and
/// deliver nothing.
#[test]
fn msmtp_submission_and_submissions() {
    require!("msmtp" => "msmtp", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let rc = c.write(
        "msmtprc",
        &format!(
            "defaults\ntls on\ntls_trust_file {cert}\nhost localhost\nfrom alice@example.org\n\
             user alice@example.org\npassword alice-pw\n\n\
             account plain\nport {sub}\ntls_starttls on\nauth plain\n\n\
             account login\nport {sub}\ntls_starttls on\nauth login\n\n\
             account implicit\nport {subs}\ntls_starttls off\nauth on\n\n\
             account badpass : plain\npassword wrong\n\n\
             account notls\nport {sub}\ntls off\nauth plain\n",
            cert = c.cert(),
            sub = s.ports.submission,
            subs = s.ports.submissions,
        ),
    );
    let mail = |account: &str| {
        format!(
            "From: alice@example.org\nTo: bob@example.org\nSubject: msmtp {account}\n\n\
             sent by msmtp, account {account}\n"
        )
    };
    for account in ["plain", "login", "implicit"] {
        c.ok(
            &format!("msmtp {account}"),
            Command::new("msmtp").args(["-C", &rc, "-a", account, "bob@example.org"]),
            mail(account).as_bytes(),
        );
    }
    for account in ["badpass", "notls"] {
        let r = c.run(
            Command::new("msmtp").args(["-C", &rc, "-a", account, "bob@example.org"]),
            mail(account).as_bytes(),
        );
        assert!(
            !r.status.success(),
            "msmtp {account} succeeded:\n{}",
            r.text()
        );
    }
    let got = server_messages(&s, "bob@example.org", "INBOX");
    assert_eq!(
        subjects(&got),
        sorted(&["msmtp implicit", "msmtp login", "msmtp plain"]),
        "{got:?}"
    );
}

/// swaks with PIPELINING on every SMTP port (MX plain and STARTTLS, submission, submissions)
/// with an 8-bit UTF-8 body and a binary attachment; the body arrives byte for byte.
#[test]
fn swaks_pipelining_8bit_on_every_smtp_port() {
    require!("swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let attachment = c.path("blob.bin");
    fs::write(
        &attachment,
        (0..=255u8).cycle().take(50_000).collect::<Vec<u8>>(),
    )
    .unwrap();
    let auth = ["-a", "PLAIN", "-au", "alice@example.org", "-ap", "alice-pw"];
    let cases: Vec<(&str, u16, Vec<&str>)> = vec![
        ("swaks mx", s.ports.smtp, vec![]),
        ("swaks mx starttls", s.ports.smtp, vec!["--tls"]),
        (
            "swaks submission",
            s.ports.submission,
            [&["--tls"][..], &auth[..]].concat(),
        ),
        (
            "swaks submissions",
            s.ports.submissions,
            [&["--tls-on-connect"][..], &auth[..]].concat(),
        ),
    ];
    for (label, port, extra) in &cases {
        let r = c.ok(
            label,
            Command::new("swaks")
                .args(["--server", &format!("127.0.0.1:{port}"), "--pipeline"])
                .args(["--from", "alice@example.org", "--to", "bob@example.org"])
                .args(["--header", &format!("Subject: {label}")])
                .args(["--body", "Grüße aus Köln — 8-bit body ✓"])
                .args(["--attach", attachment.to_str().unwrap()])
                .args(extra),
            b"",
        );
        assert!(r.stdout.contains("PIPELINING"), "{label}: {}", r.stdout);
    }
    let got = server_messages(&s, "bob@example.org", "INBOX");
    assert_eq!(
        subjects(&got),
        sorted(&[
            "swaks mx",
            "swaks mx starttls",
            "swaks submission",
            "swaks submissions"
        ]),
        "{got:?}"
    );
    for m in &got {
        let text = server_text(&s, "bob@example.org", "INBOX", m.uid);
        assert!(
            text.contains("Grüße aus Köln — 8-bit body ✓"),
            "{}: {text}",
            m.subject
        );
    }
}

/// s-nail sends over submissions (465) and submission (587, STARTTLS), then reads bob's
/// maildrop over POP3S (995) and POP3 with STLS (110) without deleting anything.
#[test]
fn s_nail_sends_and_reads_pop3() {
    require!("s-nail" => "s-nail", "python3" => "python3", "curl" => "curl");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let cert = c.cert();
    let common_args = |cmd: &mut Command| {
        cmd.args(["-:/", "-Sv15-compat", "-Sttycharset=utf-8"])
            .arg(format!("-Stls-ca-file={cert}"))
            .arg("-Stls-ca-no-defaults");
    };
    for (label, mta, extra) in [
        (
            "s-nail smtps",
            format!(
                "smtps://alice%40example.org:alice-pw@localhost:{}",
                s.ports.submissions
            ),
            "-Ssmtp-auth=plain",
        ),
        (
            "s-nail starttls",
            format!(
                "smtp://alice%40example.org:alice-pw@localhost:{}",
                s.ports.submission
            ),
            "-Ssmtp-use-starttls",
        ),
    ] {
        let mut cmd = Command::new("s-nail");
        common_args(&mut cmd);
        cmd.arg(format!("-Smta={mta}")).arg(extra).args([
            "-s",
            label,
            "-r",
            "alice@example.org",
            "bob@example.org",
        ]);
        c.ok(label, &mut cmd, "s-nail body: naïve café\n".as_bytes());
    }
    let got = server_messages(&s, "bob@example.org", "INBOX");
    assert_eq!(
        subjects(&got),
        sorted(&["s-nail smtps", "s-nail starttls"]),
        "{got:?}"
    );

    for (label, url, extra) in [
        (
            "pop3s",
            format!(
                "pop3s://bob%40example.org:bob-pw@localhost:{}",
                s.ports.pop3s
            ),
            None,
        ),
        (
            "pop3-stls",
            format!("pop3://bob%40example.org:bob-pw@localhost:{}", s.ports.pop3),
            Some("-Spop3-use-starttls"),
        ),
    ] {
        let out = c.path(&format!("snail-{label}.mbox"));
        let mut cmd = Command::new("s-nail");
        common_args(&mut cmd);
        cmd.args(["-#", "-Spop3-no-apop"])
            .args(extra)
            .args(["-f", &url]);
        c.ok(
            &format!("s-nail {label}"),
            &mut cmd,
            format!("copy * {}\nquit\n", out.display()).as_bytes(),
        );
        let saved = fs::read_to_string(&out).unwrap_or_default();
        assert!(
            saved.contains("Subject: s-nail smtps") && saved.contains("Subject: s-nail starttls"),
            "s-nail {label} saved:\n{saved}"
        );
    }
    assert_eq!(
        curl_get(
            &format!("pop3s://127.0.0.1:{}/", s.ports.pop3s),
            "bob@example.org:bob-pw"
        )
        .lines()
        .count(),
        2,
        "reading over POP3 deleted mail"
    );
}

// ---------------------------------------------------------------------------------------------
// IMAP and POP3: offlineimap, getmail

/// offlineimap: pull over IMAPS, then local flags, a deletion, a new message and a new folder
/// pushed (and server-side changes pulled) over IMAP with STARTTLS.
#[test]
fn offlineimap_two_way_over_imaps_then_starttls() {
    require!("offlineimap" => "offlineimap3", "swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "alice@example.org";
    for i in 1..=3 {
        deliver(
            &s,
            user,
            &format!("oi-{i}"),
            &format!("offlineimap body {i}"),
        );
    }
    let local = c.path("oimail");
    let rc = |name: &str, port: u16, tls: &str| {
        c.write(
            name,
            &format!(
                "[general]\naccounts = rp\nmetadata = {dir}/oimeta\n\n\
                 [Account rp]\nlocalrepository = local\nremoterepository = remote\n\n\
                 [Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n\
                 [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\n\
                 {tls}\nsslcacertfile = {cert}\nremoteuser = {user}\nremotepass = alice-pw\n",
                dir = c.dir.display(),
                local = local.display(),
                cert = c.cert(),
            ),
        )
    };
    let imaps = rc("oi-imaps.conf", s.ports.imaps, "ssl = yes");
    let starttls = rc("oi-starttls.conf", s.ports.imap, "ssl = no\nstarttls = yes");
    let sync = |what: &str, rc: &str| {
        let r = c.ok(
            what,
            Command::new("offlineimap").args(["-o", "-u", "basic", "-c", rc]),
            b"",
        );
        // offlineimap reports a failed folder and still exits 0.
        assert!(
            !r.text().contains("ERROR") && !r.text().contains("Traceback"),
            "{what}:\n{}",
            r.text()
        );
    };

    sync("offlineimap (imaps pull)", &imaps);
    let inbox = local.join("INBOX");
    assert_eq!(maildir_subjects(&inbox), sorted(&["oi-1", "oi-2", "oi-3"]));

    set_maildir_flags(&maildir_file(&inbox, "oi-1"), "FS");
    fs::remove_file(maildir_file(&inbox, "oi-2")).unwrap();
    maildir_add(
        &inbox,
        "2000.local",
        "",
        "From: alice@example.org\nSubject: oi pushed\nMessage-ID: <oi-pushed@example.org>\n\npushed by offlineimap\n",
    );
    maildir_add(
        &local.join("Lists"),
        "2001.local",
        "S",
        "From: list@example.org\nSubject: oi list\n\nin a new folder\n",
    );
    deliver(&s, user, "oi-4", "offlineimap body 4");
    let uid3 = find(&server_messages(&s, user, "INBOX"), "oi-3").uid;
    server_store(&s, user, "INBOX", uid3, "+FLAGS", "(\\Answered)");

    sync("offlineimap (starttls two-way)", &starttls);
    let msgs = server_messages(&s, user, "INBOX");
    assert_eq!(
        subjects(&msgs),
        sorted(&["oi pushed", "oi-1", "oi-3", "oi-4"]),
        "{msgs:?}"
    );
    let m1 = find(&msgs, "oi-1");
    assert!(
        m1.flags.contains("\\Flagged") && m1.flags.contains("\\Seen"),
        "{m1:?}"
    );
    let lists = server_messages(&s, user, "Lists");
    assert_eq!(subjects(&lists), ["oi list"], "{lists:?}");
    assert!(lists[0].flags.contains("\\Seen"), "{lists:?}");
    assert_eq!(
        maildir_subjects(&inbox),
        sorted(&["oi pushed", "oi-1", "oi-3", "oi-4"])
    );
    let f3 = maildir_file(&inbox, "oi-3");
    assert!(
        f3.to_str().unwrap().ends_with('R'),
        "\\Answered not pulled: {}",
        f3.display()
    );
}

/// getmail over POP3S and IMAPS: fetch, remember (`read_all = false`), then fetch-and-delete.
#[test]
fn getmail_pop3s_and_imaps() {
    require!("getmail" => "getmail6", "swaks" => "swaks", "python3" => "python3", "curl" => "curl");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "carol@example.org";
    for (kind, port, user) in [
        ("SimplePOP3SSLRetriever", s.ports.pop3s, user),
        ("SimpleIMAPSSLRetriever", s.ports.imaps, user),
    ] {
        for i in 1..=3 {
            deliver(&s, user, &format!("gm-{kind}-{i}"), "getmail body");
        }
        let out = c.path(&format!("{kind}.mbox"));
        let rc = |name: &str, read_all: bool, delete: bool| {
            c.write(
                name,
                &format!(
                    "[retriever]\ntype = {kind}\nserver = localhost\nport = {port}\n\
                     username = {user}\npassword = carol-pw\nca_certs = {cert}\n{mailboxes}\n\
                     [destination]\ntype = MDA_external\npath = /bin/sh\n\
                     arguments = (\"-c\", \"cat >> {out}\")\nallow_root_commands = true\n\n\
                     [options]\nread_all = {read_all}\ndelete = {delete}\n",
                    cert = c.cert(),
                    mailboxes = if kind.contains("IMAP") {
                        "mailboxes = (\"INBOX\",)\n"
                    } else {
                        ""
                    },
                    out = out.display(),
                ),
            );
            name.to_string()
        };
        let keep = rc(&format!("{kind}.keep"), false, false);
        let delete = rc(&format!("{kind}.delete"), true, true);
        let getmail = |what: &str, rcfile: &str| {
            c.ok(
                what,
                Command::new("getmail")
                    .arg(format!("--getmaildir={}", c.dir.display()))
                    .arg(format!("--rcfile={rcfile}")),
                b"",
            )
        };
        let count = || {
            fs::read_to_string(&out)
                .unwrap_or_default()
                .matches("Subject: gm-")
                .count()
        };
        getmail(&format!("getmail {kind} #1"), &keep);
        assert_eq!(count(), 3, "{kind}");
        getmail(&format!("getmail {kind} #2"), &keep);
        assert_eq!(count(), 3, "{kind}: refetched what it had seen");
        getmail(&format!("getmail {kind} delete"), &delete);
        assert_eq!(count(), 6, "{kind}: read_all fetches again");
        if kind.contains("POP3") {
            let left = curl_get(
                &format!("pop3s://127.0.0.1:{}/", s.ports.pop3s),
                "carol@example.org:carol-pw",
            );
            assert_eq!(left.trim(), "", "{kind}: delete left mail");
        } else {
            let left = server_messages(&s, user, "INBOX");
            assert!(left.is_empty(), "{kind}: delete left {left:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// More POP3, SMTP and IDLE: mpop, sendemail, fetchmail --idle

/// mpop over POP3S (995) with `keep on` (UIDL tracking: a second run fetches nothing), then
/// POP3 with STLS (110) with `keep off`: everything already fetched is deleted.
#[test]
fn mpop_pop3s_keep_then_stls_delete() {
    require!("mpop" => "mpop", "swaks" => "swaks", "curl" => "curl");
    let s = Server::new().start();
    let c = Clients::new(&s);
    for i in 1..=3 {
        deliver(&s, "bob@example.org", &format!("mpop-{i}"), "mpop body");
    }
    let out = c.path("mpop.mbox");
    fs::write(&out, "").unwrap();
    let rc = c.write(
        "mpoprc",
        &format!(
            "defaults\ntls on\ntls_trust_file {cert}\nhost localhost\nuser bob@example.org\n\
             password bob-pw\ndelivery mbox {out}\nuidls_file {dir}/mpop.uidls\nkeep on\n\n\
             account pop3s\nport {pop3s}\ntls_starttls off\n\n\
             account stls\nport {pop3}\ntls_starttls on\nkeep off\n",
            cert = c.cert(),
            out = out.display(),
            dir = c.dir.display(),
            pop3s = s.ports.pop3s,
            pop3 = s.ports.pop3,
        ),
    );
    let count = || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .matches("Subject: mpop-")
            .count()
    };
    let list = || {
        curl_get(
            &format!("pop3s://127.0.0.1:{}/", s.ports.pop3s),
            "bob@example.org:bob-pw",
        )
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
    };
    c.ok(
        "mpop pop3s #1",
        Command::new("mpop").args(["-C", &rc, "pop3s"]),
        b"",
    );
    assert_eq!(count(), 3);
    c.ok(
        "mpop pop3s #2",
        Command::new("mpop").args(["-C", &rc, "pop3s"]),
        b"",
    );
    assert_eq!(count(), 3, "keep on: UIDL tracking refetched");
    assert_eq!(list(), 3, "keep on deleted mail");
    deliver(&s, "bob@example.org", "mpop-4", "mpop body");
    let r = c.ok(
        "mpop stls",
        Command::new("mpop").args(["-C", &rc, "--debug", "stls"]),
        b"",
    );
    assert!(r.stdout.contains("--> STLS"), "no STLS:\n{}", r.text());
    assert_eq!(count(), 4, "only the new message is fetched");
    assert_eq!(list(), 0, "keep off left mail");
}

/// sendemail over submission (587, STARTTLS + AUTH) and the MX port (25, plaintext).
#[test]
fn sendemail_submission_and_mx() {
    require!("sendemail" => "sendemail", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let perl_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/stock");
    for (label, port, extra) in [
        (
            "sendemail submission",
            s.ports.submission,
            vec![
                "-o",
                "tls=yes",
                "-xu",
                "alice@example.org",
                "-xp",
                "alice-pw",
            ],
        ),
        ("sendemail mx", s.ports.smtp, vec!["-o", "tls=no"]),
    ] {
        let r = c.ok(
            label,
            Command::new("sendemail")
                .env("PERL5LIB", &perl_lib)
                .env("PERL5OPT", "-MTrustRingpost")
                .env("RP_CERT", c.cert())
                .args([
                    "-f",
                    "alice@example.org",
                    "-t",
                    "bob@example.org",
                    "-u",
                    label,
                ])
                .args(["-m", "Hello from sendemail."])
                .args(["-s", &format!("localhost:{port}")])
                .args(extra),
            b"",
        );
        assert!(
            r.text().contains("Email was sent successfully"),
            "{label}:\n{}",
            r.text()
        );
    }
    let got = server_messages(&s, "bob@example.org", "INBOX");
    assert_eq!(
        subjects(&got),
        sorted(&["sendemail mx", "sendemail submission"]),
        "{got:?}"
    );
}

/// fetchmail in IDLE mode over IMAPS: mail delivered while it idles is fetched without a new
/// poll.
#[test]
fn fetchmail_idle_over_imaps() {
    require!("fetchmail" => "fetchmail", "swaks" => "swaks");
    let s = Server::new().start();
    let c = Clients::new(&s);
    deliver(&s, "carol@example.org", "fm-idle-0", "before idle");
    let rc = fetchmail_rc(&c, "idle", "imap", s.ports.imaps, "ssl", "keep idle");
    let out = c.path("idle.mbox");
    let log = c.path("idle.log");
    let mut child = Command::new("fetchmail")
        .args(["-v", "--nodetach", "-f", &rc])
        .arg("--pidfile")
        .arg(c.path("idle.pid"))
        .env("FETCHMAILHOME", &c.dir)
        .env("HOME", &c.dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(c.path("idle.err")).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if mbox_count(&out) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let first = wait_for(1);
    // Only once fetchmail sits in IDLE does the next message test IDLE itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while first
        && Instant::now() < deadline
        && !fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("IMAP< + ")
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    deliver(&s, "carol@example.org", "fm-idle-1", "during idle");
    let second = first && wait_for(2);
    // Our own child, by its PID.
    let _ = child.kill();
    let _ = child.wait();
    let text = format!(
        "{}{}",
        fs::read_to_string(&log).unwrap_or_default(),
        fs::read_to_string(c.path("idle.err")).unwrap_or_default()
    );
    assert!(first, "fetchmail fetched nothing:\n{text}");
    assert!(
        second,
        "mail delivered during IDLE was not fetched:\n{text}\n--- server log\n{}",
        tail(&s.log_text(), 30)
    );
    assert!(
        text.contains("IMAP> A0") && text.contains(" IDLE"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// IMAP: imapfilter (server-side SEARCH, STORE, COPY, MOVE, CREATE, STATUS)

/// imapfilter rules over IMAPS: header, address, body, size, date, regex and keyword searches;
/// move, copy, flag, keyword and delete. Then a second run over IMAP with STARTTLS (which
/// imapfilter negotiates by itself) archives what the first flagged.
#[test]
fn imapfilter_rules_over_imaps_then_starttls() {
    require!("imapfilter" => "imapfilter", "swaks" => "swaks", "python3" => "python3");
    let s = Server::new().start();
    let c = Clients::new(&s);
    let user = "alice@example.org";
    let mail: [(&str, &str, &str, &str); 6] = [
        (
            "boss@corp.example",
            "Quarterly report",
            "",
            "numbers inside",
        ),
        (
            "list@lists.example",
            "[dev] patch 1",
            "List-Id: <dev.lists.example>",
            "diff",
        ),
        (
            "list@lists.example",
            "[dev] patch 2",
            "List-Id: <dev.lists.example>",
            "diff",
        ),
        ("spam@bad.example", "WIN money", "", "cheap viagra"),
        ("friend@home.example", "Grüße", "", "héllo"),
        ("boss@corp.example", "Re: Quarterly report", "", "big"),
    ];
    for (from, subject, header, body) in mail {
        let big = "more numbers\n".repeat(300);
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", &format!("127.0.0.1:{}", s.ports.smtp)])
            .args(["--from", from, "--to", user])
            .args(["--header", &format!("From: {from}")])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--body", if body == "big" { &big } else { body }]);
        if !header.is_empty() {
            cmd.args(["--header", header]);
        }
        c.ok(&format!("swaks {subject}"), &mut cmd, b"");
    }
    let rules = c.write(
        "rules.lua",
        &format!(
            r#"options.timeout = 60
options.info = true
local acc = IMAP {{ server = 'localhost', port = {imaps}, ssl = 'auto',
                   username = '{user}', password = 'alice-pw' }}
local function expect(what, got, want)
  if got ~= want then error(what .. ': got ' .. tostring(got) .. ', want ' .. tostring(want)) end
end
acc:create_mailbox('Lists/dev')
acc:create_mailbox('Work')
local inbox = acc.INBOX
expect('all', #inbox:select_all(), 6)
local lists = inbox:contain_field('List-Id', 'dev.lists.example')
expect('List-Id header search', #lists, 2)
expect('regex on subject', #inbox:match_subject('^\\[dev\\] patch'), 2)
lists:move_messages(acc['Lists/dev'])
local boss = inbox:contain_from('boss@corp.example')
expect('From search', #boss, 2)
boss:mark_flagged()
boss:copy_messages(acc.Work)
local spam = inbox:contain_body('viagra') + inbox:contain_subject('WIN')
expect('body or subject search', #spam, 1)
spam:delete_messages()
local big = inbox:is_larger(2000)
expect('LARGER', #big, 1)
big:mark_seen()
expect('UTF-8 subject search', #inbox:contain_subject('Grüße'), 1)
expect('NEW', #(inbox:is_new() * inbox:is_unseen()), 2)
expect('OLDER', #inbox:is_older(1), 0)
expect('SENTSINCE', #inbox:sent_since(form_date(1)), 3)
local exists, recent, unseen = inbox:check_status()
expect('STATUS MESSAGES', exists, 3)
expect('STATUS UNSEEN', unseen, 2)
inbox:is_flagged():add_flags({{'$Important'}})
expect('KEYWORD', #inbox:has_keyword('$Important'), 2)
expect('UNKEYWORD', #inbox:has_unkeyword('$Important'), 1)
"#,
            imaps = s.ports.imaps,
        ),
    );
    let archive = c.write(
        "archive.lua",
        &format!(
            r#"options.timeout = 60
local acc = IMAP {{ server = 'localhost', port = {imap},
                   username = '{user}', password = 'alice-pw' }}
local flagged = acc.INBOX:is_flagged()
if #flagged ~= 2 then error('flagged: ' .. #flagged) end
flagged:move_messages(acc.Archive)
"#,
            imap = s.ports.imap,
        ),
    );
    let trust = c.cert();
    for (what, rc) in [
        ("imapfilter rules (imaps)", &rules),
        ("imapfilter archive (starttls)", &archive),
    ] {
        let r = c.ok(
            what,
            Command::new("imapfilter").args(["-t", &trust, "-d", &format!("{rc}.debug"), "-c", rc]),
            b"",
        );
        assert!(!r.text().contains("error"), "{what}:\n{}", r.text());
    }
    let debug = fs::read_to_string(format!("{archive}.debug")).unwrap_or_default();
    assert!(debug.contains("STARTTLS"), "no STARTTLS on 143:\n{debug}");
    let inbox = server_messages(&s, user, "INBOX");
    assert_eq!(subjects(&inbox), ["Grüße"], "{inbox:?}");
    let archived = server_messages(&s, user, "Archive");
    assert_eq!(
        subjects(&archived),
        sorted(&["Quarterly report", "Re: Quarterly report"]),
        "{archived:?}"
    );
    for m in &archived {
        assert!(
            m.flags.contains("$Important") && m.flags.contains("\\Flagged"),
            "{m:?}"
        );
    }
    assert_eq!(
        subjects(&server_messages(&s, user, "Lists/dev")),
        sorted(&["[dev] patch 1", "[dev] patch 2"])
    );
    assert_eq!(
        subjects(&server_messages(&s, user, "Work")),
        sorted(&["Quarterly report", "Re: Quarterly report"])
    );
}

// ---------------------------------------------------------------------------------------------
// Thunderbird (headless, driven over Marionette by tests/clients/stock/thunderbird.py)

/// A real Thunderbird: syncs INBOX, discovers folders, marks read and flagged, moves to
/// Archive, deletes to Trash, creates and renames a folder, sends over SMTP with a copy to
/// Sent, saves a draft, sees new mail through IDLE and empties Trash; the script then checks
/// the server's state and that Thunderbird never got NO or BAD.
fn thunderbird(mode: &str) {
    let s = Server::new().start();
    let c = Clients::new(&s);
    for i in 1..=3 {
        deliver(
            &s,
            "alice@example.org",
            &format!("tb-{i}"),
            &format!("thunderbird {i}"),
        );
    }
    let out = s.python("stock/thunderbird.py", &[mode, c.dir.to_str().unwrap()]);
    assert!(out.contains(&format!("thunderbird {mode} ok")), "{out}");
}

#[test]
fn thunderbird_over_imaps_and_smtps() {
    require!("thunderbird" => "thunderbird", "certutil" => "libnss3-tools", "python3" => "python3");
    thunderbird("tls");
}

#[test]
fn thunderbird_over_imap_and_submission_starttls() {
    require!("thunderbird" => "thunderbird", "certutil" => "libnss3-tools", "python3" => "python3");
    thunderbird("starttls");
}

/// Thunderbird as a POP3 client: leave on server with UIDL tracking across checks, then a
/// message deleted in Thunderbird is deleted on the server at the next check; sends over SMTP.
#[test]
fn thunderbird_pop3s_leave_on_server() {
    require!("thunderbird" => "thunderbird", "certutil" => "libnss3-tools", "python3" => "python3");
    thunderbird("pop3s");
}

#[test]
fn thunderbird_pop3_stls_leave_on_server() {
    require!("thunderbird" => "thunderbird", "certutil" => "libnss3-tools", "python3" => "python3");
    thunderbird("pop3");
}

// ---------------------------------------------------------------------------------------------
// Server bugs found while driving the clients

/// An account added with `ringpost user add` exists for the running server once the command
/// has returned: a provisioning script that adds a user and sends a welcome mail right away
/// must not get a permanent 550 (INTERFACE.md: "take effect without a restart").
#[test]
fn user_add_is_live_when_the_command_returns() {
    require!("swaks" => "swaks");
    let s = Server::new().start();
    for i in 0..5 {
        let user = format!("new{i}@example.org");
        let out = s.cli_stdin(&["user", "add", &user, "--password-stdin"], "pw\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", s.ports.smtp)])
            .args([
                "--to",
                &user,
                "--from",
                "x@remote.example",
                "--quit-after",
                "RCPT",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success() && text.contains("250 2.1.5"),
            "RCPT for {user} right after `user add` returned:\n{text}"
        );
    }
}

/// A logged-in POP3 session ends after `idle_timeout_secs` of silence whichever executor
/// serves it. A session handed off to the executor owning the account has no timeout at all
/// and keeps the maildrop locked ("-ERR [IN-USE]") for as long as the peer stays silent.
#[test]
fn pop3_idle_timeout_after_handoff() {
    require!("python3" => "python3");
    let s = Server::with_extra_config("idle_timeout_secs = 2").start();
    s.python("stock/pop3_idle.py", &["8"]);
}

/// UID FETCH of a UID that another session has just expunged ends in OK (RFC 3501 6.4.8: a
/// non-existent UID is ignored without an error). Thunderbird, when its preview fetch races
/// another client's expunge and gets NO [EXPUNGEISSUED], keeps listing the deleted message.
#[test]
fn uid_fetch_of_a_uid_expunged_elsewhere_is_ok() {
    require!("python3" => "python3", "swaks" => "swaks");
    let s = Server::new().start();
    deliver(&s, "bob@example.org", "expunged elsewhere", "gone soon");
    s.python("stock/uid_fetch_expunged.py", &[]);
}

/// SIGTERM says goodbye to idle sessions before closing them: "* BYE" to an IMAP client in
/// IDLE (every Thunderbird, mutt or K-9 session idles), "421" to an SMTP client between
/// commands, at once rather than when the 10 s grace period runs out.
#[test]
fn graceful_stop_says_goodbye_to_idle_sessions() {
    require!("python3" => "python3");
    let mut s = Server::new().start();
    let pid = s.child.as_ref().map(|c| c.id()).unwrap().to_string();
    let out = s.python_output("stock/goodbye.py", &[&pid]);
    let status = s.stop();
    assert!(
        out.status.success(),
        "{}{}\nserver exit: {status:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Stock mail clients from Debian against the real binary, on every port: mbsync, offlineimap,
//! mutt and neomutt over IMAP(S); fetchmail, getmail and s-nail over POP3(S) and IMAP(S);
//! msmtp, mutt, s-nail and swaks over submission, submissions and the MX port.
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
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmd:?} did not finish within {CLIENT_TIMEOUT:?}\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}",
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
fn deliver(s: &Server, to: &str, subject: &str, body: &str) {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", s.ports.smtp)])
        .args(["--to", to, "--from", "sender@remote.example"])
        .args(["--header", &format!("Subject: {subject}")])
        .args(["--body", body])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
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
                uid: f.next().and_then(|u| u.parse().ok()).unwrap_or_else(|| panic!("{l}")),
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
    peek(s, user, &["list"]).lines().map(str::to_string).collect()
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
    let port = if tls == "IMAPS" { s.ports.imaps } else { s.ports.imap };
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
    let sync = |what: &str| c.ok(what, Command::new("mbsync").args(["-V", "-c", &rc, "rp"]), b"");

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
        assert!(
            boxes.contains(&b.to_string()),
            "{b} not created: {boxes:?}"
        );
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
        again.iter().map(|m| (m.uid, m.flags.clone())).collect::<Vec<_>>(),
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

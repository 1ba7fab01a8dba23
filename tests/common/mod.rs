//! Integration-test harness: starts the real `ringpost` binary on loopback ports the test
//! picks, in a temporary data directory, and stops it (by its PID) when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringpost")
}

/// A free loopback port (bound then released; collisions are retried by the caller).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ports of one server.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub metrics: u16,
}

impl Ports {
    fn pick() -> Ports {
        // Hold every socket until all are picked, so no port comes up twice.
        let held: Vec<TcpListener> = (0..8)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let p: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        Ports {
            smtp: p[0],
            submission: p[1],
            submissions: p[2],
            imap: p[3],
            imaps: p[4],
            pop3: p[5],
            pop3s: p[6],
            metrics: p[7],
        }
    }
}

/// A running server with its temporary directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ports: Ports,
    pub child: Option<Child>,
    pub log: PathBuf,
}

/// Users every test server has: (address, password).
pub const USERS: &[(&str, &str)] = &[
    ("alice@example.org", "alice-pw"),
    ("bob@example.org", "bob-pw"),
    ("carol@example.org", "carol-pw"),
];

impl Server {
    /// A configured data directory with the standard users, not yet started.
    pub fn new() -> Server {
        Self::with_extra_config("")
    }

    /// Like `new`, with extra TOML appended to `[limits]`.
    pub fn with_extra_config(limits: &str) -> Server {
        Self::with_config(limits, "")
    }

    /// Like `new`, with 64 KiB shard log segments, so compaction runs on a little mail.
    pub fn with_small_segments() -> Server {
        let s = Self::new();
        let cfg = std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("executors = 2\n", "executors = 2\nsegment_size = 65536\n");
        std::fs::write(&s.config, cfg).unwrap();
        s
    }

    /// Like `new`, with extra `[limits]` keys and extra sections at the end of the config.
    pub fn with_config(limits: &str, tail: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::pick();
        let config = dir.path().join("ringpost.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                r#"[server]
hostname = "mail.example.org"
data_dir = "{data}"
shards = 8
executors = 2
log = "info"

[domains]
local = ["example.org", "example.net"]

[listen]
smtp = "127.0.0.1:{smtp}"
submission = "127.0.0.1:{submission}"
submissions = "127.0.0.1:{submissions}"
imap = "127.0.0.1:{imap}"
imaps = "127.0.0.1:{imaps}"
pop3 = "127.0.0.1:{pop3}"
pop3s = "127.0.0.1:{pop3s}"
metrics = "127.0.0.1:{metrics}"

[limits]
{limits}

{tail}
"#,
                data = data.display(),
                smtp = ports.smtp,
                submission = ports.submission,
                submissions = ports.submissions,
                imap = ports.imap,
                imaps = ports.imaps,
                pop3 = ports.pop3,
                pop3s = ports.pop3s,
                metrics = ports.metrics,
            ),
        )
        .unwrap();
        let log = dir.path().join("server.log");
        let s = Server {
            dir,
            config,
            ports,
            child: None,
            log,
        };
        for (u, p) in USERS {
            let out = s.cli_stdin(&["user", "add", u, "--password-stdin"], &format!("{p}\n"));
            assert!(
                out.status.success(),
                "user add {u}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        s
    }

    /// Path of the data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a CLI command against this server's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, "")
    }

    /// Runs a CLI command with standard input.
    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that fails early never reads its input: its exit status tells why.
        let _ = c.stdin.take().unwrap().write_all(stdin.as_bytes());
        c.wait_with_output().unwrap()
    }

    /// Starts the server and waits until every listener answers.
    pub fn start(mut self) -> Server {
        self.spawn();
        self
    }

    /// (Re)starts the server process.
    pub fn spawn(&mut self) {
        // Ports alone can fool us after a kill -9: the dead server's io_uring keeps its
        // listening sockets alive for a moment. The log line is the real signal.
        let ready_before = self.log_text().matches("ringpost ready").count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in [
            self.ports.smtp,
            self.ports.imap,
            self.ports.pop3,
            self.ports.submissions,
        ] {
            loop {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("server exited early ({status}):\n{}", self.log_text());
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "server did not start:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        while self.log_text().matches("ringpost ready").count() <= ready_before {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server did not get ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child by its PID.
        unsafe { libc_kill(c.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `tests/clients/<script>` with the server's ports in the environment; panics with
    /// the script's output unless it exits 0. Returns its stdout.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let out = self.python_output(script, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- server log (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log_text(), 40),
        );
        stdout
    }

    /// Runs a client script and returns its raw output.
    pub fn python_output(&self, script: &str, args: &[&str]) -> Output {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(script);
        Command::new("python3")
            .arg(path)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap()
    }

    /// Environment variables describing this server for client scripts.
    pub fn env(&self) -> Vec<(String, String)> {
        let p = self.ports;
        vec![
            ("RP_SMTP".into(), p.smtp.to_string()),
            ("RP_SUBMISSION".into(), p.submission.to_string()),
            ("RP_SUBMISSIONS".into(), p.submissions.to_string()),
            ("RP_IMAP".into(), p.imap.to_string()),
            ("RP_IMAPS".into(), p.imaps.to_string()),
            ("RP_POP3".into(), p.pop3.to_string()),
            ("RP_POP3S".into(), p.pop3s.to_string()),
            ("RP_METRICS".into(), p.metrics.to_string()),
            ("RP_DATA".into(), self.data_dir().display().to_string()),
        ]
    }

    /// Address of a listener.
    pub fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The last `n` lines of a text.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A tiny line-oriented raw TCP client for protocol-attack tests.
pub struct Raw {
    pub r: BufReader<TcpStream>,
}

impl Raw {
    /// Connects to a loopback port.
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            r: BufReader::new(s),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, b: &[u8]) {
        self.r.get_mut().write_all(b).unwrap();
    }

    /// Reads one line (with its CRLF); empty at EOF.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        let _ = self.r.read_line(&mut s);
        s
    }

    /// Reads an SMTP reply (all continuation lines); returns the last line.
    pub fn smtp_reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    /// Reads until EOF.
    pub fn rest(&mut self) -> String {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into()
    }
}

impl Server {
    /// Delivers one message over the MX port with swaks.
    pub fn swaks_deliver(&self, to: &str, body: &str) {
        self.swaks(&["--to", to, "--from", "x@remote.example", "--body", body]);
    }

    /// Runs swaks against the MX port with `args`; asserts it succeeded.
    pub fn swaks(&self, args: &[&str]) {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", self.ports.smtp)])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swaks: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Fetches a URL with curl (TLS required, certificate not checked); asserts success and
/// returns the body.
pub fn curl_get(url: &str, user: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--ssl-reqd", "--user", user, url])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{url}: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    body
}

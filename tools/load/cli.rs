//! Command line of `ringpost-load` and its validation into [`Settings`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::mix::{Mix, MixError, DEFAULT_MIX};
use crate::users::{load_users, User, UsersError};

/// Which protocol to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// SMTP transactions (MAIL/RCPT/DATA).
    Smtp,
    /// IMAP sessions running a command mix.
    Imap,
    /// POP3 sessions (STAT, LIST, RETR, DELE, QUIT).
    Pop3,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Smtp => "smtp",
            Mode::Imap => "imap",
            Mode::Pop3 => "pop3",
        }
    }
}

/// How to log in to IMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImapAuth {
    /// `LOGIN user pass`.
    Login,
    /// `AUTHENTICATE PLAIN` (with SASL-IR when the server offers it).
    Plain,
}

/// How to log in to POP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pop3Auth {
    /// `USER` then `PASS`.
    User,
    /// `AUTH PLAIN` with an initial response.
    Plain,
}

/// Load generator for ringpost and other mail servers: real SMTP, IMAP and POP3 sessions on
/// many connections, with HDR latency histograms per operation.
#[derive(Debug, Parser)]
#[command(name = "ringpost-load", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load an SMTP server with MAIL/RCPT/DATA transactions.
    Smtp(Args),
    /// Load an IMAP server with a command mix.
    Imap(Args),
    /// Load a POP3 server with STAT/LIST/RETR/DELE sessions.
    Pop3(Args),
    /// Print the percentiles of an interval log written with --hlog.
    Report(ReportArgs),
}

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Interval log files (tags of the same name are merged).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments shared by the load modes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Run this many seconds (fractions allowed).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many units: SMTP messages, IMAP commands, POP3 messages retrieved.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Message size in bytes (SMTP DATA, IMAP APPEND).
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Implicit TLS from the first byte (ports 465, 993, 995).
    #[arg(long, conflicts_with = "starttls")]
    pub tls: bool,
    /// Upgrade with STARTTLS (SMTP, IMAP) or STLS (POP3).
    #[arg(long)]
    pub starttls: bool,
    /// Recipients, comma-separated (SMTP).
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Accounts, one `address password` per line: SMTP AUTH, IMAP and POP3 logins (and SMTP
    /// recipients when --to is not given). Connection i uses user i mod count.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Total rate in operations per second across all connections (open loop; latency counts
    /// from each operation's scheduled time). SMTP: transactions; IMAP, POP3: commands.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an HdrHistogram interval log (one tag per operation, values in microseconds).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Envelope sender and From: address (SMTP). Default: the connection's user when --users
    /// is given (submission servers often require the logged-in address), else load@localhost.
    #[arg(long)]
    pub from: Option<String>,
    /// EHLO name (SMTP).
    #[arg(long, default_value = "loadgen.localdomain")]
    pub helo: String,
    /// Recipients per message, drawn at random from --to / --users (SMTP).
    #[arg(long, default_value_t = 1)]
    pub rcpts: usize,
    /// Send MAIL, RCPT and DATA in one write when the server offers PIPELINING (SMTP).
    #[arg(long)]
    pub pipelining: bool,
    /// Messages per SMTP connection before QUIT and reconnect (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub messages_per_conn: u64,
    /// Write the X-Load-Id of every message answered 250 to this file, one per line, flushed
    /// within a second of the 250 (for loss checks after a crash). Message-ID is
    /// `<ID@ringpost-load.invalid>`.
    #[arg(long)]
    pub ids_file: Option<PathBuf>,
    /// IMAP command mix, name=weight,... (fetch, store, search, append, noop, idle).
    #[arg(long, default_value = DEFAULT_MIX)]
    pub mix: String,
    /// IMAP login method.
    #[arg(long, value_enum, default_value_t = ImapAuth::Login)]
    pub imap_auth: ImapAuth,
    /// Messages per UID FETCH / UID STORE range (IMAP).
    #[arg(long, default_value_t = 5)]
    pub fetch_count: u32,
    /// Time to stay in IDLE before DONE, in milliseconds (IMAP).
    #[arg(long, default_value_t = 20)]
    pub idle_ms: u64,
    /// POP3 login method.
    #[arg(long, value_enum, default_value_t = Pop3Auth::User)]
    pub pop3_auth: Pop3Auth,
    /// Messages to RETR per POP3 session, chosen at random (0: all).
    #[arg(long, default_value_t = 10)]
    pub retr: usize,
    /// Percentage of retrieved messages to DELE (POP3).
    #[arg(long, default_value_t = 0)]
    pub dele_pct: u8,
    /// Executor threads (0: one per available core).
    #[arg(long, default_value_t = 0)]
    pub executors: usize,
    /// Pin executors to cores (by default they float, leaving cores to the server).
    #[arg(long)]
    pub pin: bool,
    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for any read or write.
    #[arg(long, default_value_t = 30.0)]
    pub io_timeout: f64,
    /// Longest run when only --messages is given, in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub max_time: f64,
    /// TLS server name (SNI); default: the target's host when it is a name.
    #[arg(long)]
    pub sni: Option<String>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP.
    Plain,
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS / STLS after the greeting.
    StartTls,
}

/// Validated settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Protocol.
    pub mode: Mode,
    /// Resolved server address.
    pub addr: SocketAddr,
    /// The target as given, for reports.
    pub target: String,
    /// TLS server name, if a DNS name is known.
    pub sni: Option<String>,
    /// Concurrent connections.
    pub connections: usize,
    /// How long new work may start.
    pub duration: Duration,
    /// Unit budget (--messages).
    pub budget: Option<u64>,
    /// Message size.
    pub size: usize,
    /// TLS mode.
    pub security: Security,
    /// SMTP recipients.
    pub recipients: Vec<String>,
    /// Accounts.
    pub users: Vec<User>,
    /// Total ops/s.
    pub rate: Option<f64>,
    /// JSON output.
    pub json: bool,
    /// HDR log file.
    pub hlog: Option<PathBuf>,
    /// Envelope sender given with --from.
    pub from: Option<String>,
    /// EHLO name.
    pub helo: String,
    /// Recipients per message.
    pub rcpts: usize,
    /// Use PIPELINING.
    pub pipelining: bool,
    /// Messages per SMTP connection (0 = unlimited).
    pub messages_per_conn: u64,
    /// Acknowledged ids file.
    pub ids_file: Option<PathBuf>,
    /// IMAP mix.
    pub mix: Mix,
    /// IMAP login method.
    pub imap_auth: ImapAuth,
    /// UID range length for FETCH/STORE.
    pub fetch_count: u32,
    /// IDLE dwell time.
    pub idle: Duration,
    /// POP3 login method.
    pub pop3_auth: Pop3Auth,
    /// RETRs per POP3 session (0 = all).
    pub retr: usize,
    /// DELE percentage.
    pub dele_pct: u8,
    /// Executor count.
    pub executors: usize,
    /// Pin executors.
    pub pin: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read/write timeout.
    pub io_timeout: Duration,
    /// No progress line.
    pub quiet: bool,
}

/// A command line that cannot run; printed as one line, exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Neither --duration nor --messages.
    #[error("give --duration SECONDS or --messages COUNT")]
    NoBound,
    /// A number out of range.
    #[error("--{0} must be {1}")]
    Range(&'static str, &'static str),
    /// The target does not resolve.
    #[error("--target {0}: {1}")]
    Target(String, String),
    /// SMTP without anyone to send to.
    #[error("smtp mode needs --to ADDR,... or --users FILE")]
    NoRecipients,
    /// IMAP/POP3 without accounts.
    #[error("{0} mode needs --users FILE")]
    NoUsers(&'static str),
    /// Bad users file.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// Bad --mix.
    #[error("--mix: {0}")]
    Mix(#[from] MixError),
}

fn positive_secs(v: f64, name: &'static str) -> Result<Duration, SettingsError> {
    if v.is_finite() && v > 0.0 && v < 1e7 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(SettingsError::Range(name, "a positive number of seconds"))
    }
}

impl Args {
    /// Checks the arguments for `mode` and resolves files and addresses.
    pub fn into_settings(self, mode: Mode) -> Result<Settings, SettingsError> {
        let duration = match (self.duration, self.messages) {
            (None, None) => return Err(SettingsError::NoBound),
            (Some(d), _) => positive_secs(d, "duration")?,
            (None, Some(_)) => positive_secs(self.max_time, "max-time")?,
        };
        if self.messages == Some(0) {
            return Err(SettingsError::Range("messages", "at least 1"));
        }
        if self.connections == 0 || self.connections > 1_000_000 {
            return Err(SettingsError::Range("connections", "between 1 and 1000000"));
        }
        if self.rcpts == 0 {
            return Err(SettingsError::Range("rcpts", "at least 1"));
        }
        if self.size > 512 * 1024 * 1024 {
            return Err(SettingsError::Range("size", "at most 512 MiB"));
        }
        if self.fetch_count == 0 {
            return Err(SettingsError::Range("fetch-count", "at least 1"));
        }
        if self.dele_pct > 100 {
            return Err(SettingsError::Range("dele-pct", "between 0 and 100"));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(SettingsError::Range("rate", "a positive number"));
            }
        }
        let addr = self
            .target
            .to_socket_addrs()
            .map_err(|e| SettingsError::Target(self.target.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| SettingsError::Target(self.target.clone(), "no address".into()))?;
        let host = self
            .target
            .rsplit_once(':')
            .map_or(self.target.as_str(), |(h, _)| h);
        let sni = self.sni.clone().or_else(|| {
            (host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('['))
                .then(|| host.to_string())
        });
        let users = match &self.users {
            Some(p) => load_users(p)?,
            None => Vec::new(),
        };
        let mut recipients: Vec<String> = self
            .to
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if recipients.is_empty() {
            recipients = users.iter().map(|u| u.address.clone()).collect();
        }
        match mode {
            Mode::Smtp if recipients.is_empty() => return Err(SettingsError::NoRecipients),
            Mode::Imap | Mode::Pop3 if users.is_empty() => {
                return Err(SettingsError::NoUsers(mode.name()))
            }
            _ => {}
        }
        let mix = Mix::parse(&self.mix)?;
        let executors = if self.executors == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.executors
        }
        .min(self.connections)
        .max(1);
        Ok(Settings {
            mode,
            addr,
            target: self.target,
            sni,
            connections: self.connections,
            duration,
            budget: self.messages,
            size: self.size,
            security: if self.tls {
                Security::Implicit
            } else if self.starttls {
                Security::StartTls
            } else {
                Security::Plain
            },
            recipients,
            users,
            rate: self.rate,
            json: self.json,
            hlog: self.hlog,
            from: self.from,
            helo: self.helo,
            rcpts: self.rcpts,
            pipelining: self.pipelining,
            messages_per_conn: self.messages_per_conn,
            ids_file: self.ids_file,
            mix,
            imap_auth: self.imap_auth,
            fetch_count: self.fetch_count,
            idle: Duration::from_millis(self.idle_ms),
            pop3_auth: self.pop3_auth,
            retr: self.retr,
            dele_pct: self.dele_pct,
            executors,
            pin: self.pin,
            connect_timeout: positive_secs(self.connect_timeout, "connect-timeout")?,
            io_timeout: positive_secs(self.io_timeout, "io-timeout")?,
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, SettingsError> {
        let mut v = vec!["ringpost-load"];
        v.extend_from_slice(args);
        let (mode, args) = match Cli::try_parse_from(v).unwrap().command {
            Command::Smtp(a) => (Mode::Smtp, a),
            Command::Imap(a) => (Mode::Imap, a),
            Command::Pop3(a) => (Mode::Pop3, a),
            Command::Report(_) => panic!("not a load mode"),
        };
        args.into_settings(mode)
    }

    #[test]
    fn smtp_command_line() {
        let s = parse(&[
            "smtp",
            "--target",
            "127.0.0.1:2525",
            "--connections",
            "32",
            "--duration",
            "10",
            "--size",
            "2048",
            "--to",
            "a@x.org,b@x.org",
            "--starttls",
        ])
        .unwrap();
        assert_eq!(s.mode, Mode::Smtp);
        assert_eq!(s.connections, 32);
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.recipients, vec!["a@x.org", "b@x.org"]);
        assert_eq!(s.security, Security::StartTls);
        assert!(s.executors >= 1 && s.executors <= 32);
        assert_eq!(s.sni, None);
    }

    #[test]
    fn bounds_are_required() {
        assert!(matches!(
            parse(&["smtp", "--target", "127.0.0.1:25", "--to", "a@b"]),
            Err(SettingsError::NoBound)
        ));
        let s = parse(&[
            "smtp",
            "--target",
            "127.0.0.1:25",
            "--to",
            "a@b",
            "--messages",
            "5",
        ])
        .unwrap();
        assert_eq!(s.budget, Some(5));
        assert_eq!(s.duration, Duration::from_secs(600));
    }

    #[test]
    fn modes_need_their_inputs() {
        assert!(matches!(
            parse(&["smtp", "--target", "127.0.0.1:25", "--duration", "1"]),
            Err(SettingsError::NoRecipients)
        ));
        assert!(matches!(
            parse(&["imap", "--target", "127.0.0.1:143", "--duration", "1"]),
            Err(SettingsError::NoUsers("imap"))
        ));
        assert!(matches!(
            parse(&[
                "imap",
                "--target",
                "127.0.0.1:143",
                "--duration",
                "1",
                "--users",
                "/nonexistent/x"
            ]),
            Err(SettingsError::Users(_))
        ));
    }

    #[test]
    fn bad_values() {
        let base = ["smtp", "--target", "127.0.0.1:25", "--to", "a@b"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            parse(&v)
        };
        assert!(matches!(
            with(&["--duration=-1"]),
            Err(SettingsError::Range("duration", _))
        ));
        assert!(matches!(
            with(&["--duration", "1", "--connections", "0"]),
            Err(SettingsError::Range("connections", _))
        ));
        assert!(matches!(
            with(&["--duration", "1", "--rate", "0"]),
            Err(SettingsError::Range("rate", _))
        ));
        assert!(matches!(
            with(&["--duration", "1", "--mix", "copy=1"]),
            Err(SettingsError::Mix(_))
        ));
        assert!(matches!(
            parse(&[
                "smtp",
                "--target",
                "127.0.0.1",
                "--to",
                "a@b",
                "--duration",
                "1"
            ]),
            Err(SettingsError::Target(..))
        ));
        assert!(Cli::try_parse_from([
            "ringpost-load",
            "smtp",
            "--target",
            "x:1",
            "--tls",
            "--starttls"
        ])
        .is_err());
    }

    #[test]
    fn sni_from_host_name() {
        let s = parse(&[
            "smtp",
            "--target",
            "localhost:25",
            "--to",
            "a@b",
            "--duration",
            "1",
        ])
        .unwrap();
        assert_eq!(s.sni.as_deref(), Some("localhost"));
    }
}

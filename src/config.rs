//! Configuration: the TOML file of INTERFACE.md, or the embedded defaults when there is none.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: ServerSection,
    /// `[domains]`
    pub domains: DomainsSection,
    /// `[listen]`; a missing key turns that listener off (in a file).
    pub listen: ListenSection,
    /// `[tls]`
    pub tls: TlsSection,
    /// `[limits]`
    pub limits: LimitsSection,
    /// `[relay]`
    pub relay: RelaySection,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Name in the banner, EHLO and Received headers.
    pub hostname: String,
    /// Where all state lives.
    pub data_dir: PathBuf,
    /// Shard count, fixed when data_dir is created.
    pub shards: u32,
    /// Executors; 0 = one per available core.
    pub executors: usize,
    /// Pin each executor to its own core. Off by default: pinned executors share every core
    /// with whatever else runs on the host and get preempted there instead of moving.
    pub pin_executors: bool,
    /// Bytes per shard log segment: the unit in which compaction gives space back.
    pub segment_size: u64,
    /// Log filter when RUST_LOG is not set (tracing EnvFilter syntax).
    pub log: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            hostname: "localhost".into(),
            data_dir: PathBuf::from("./ringpost-data"),
            shards: 16,
            executors: 0,
            pin_executors: false,
            segment_size: 64 << 20,
            log: "info".into(),
        }
    }
}

/// `[domains]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsSection {
    /// Domains delivered locally.
    pub local: Vec<String>,
}

impl Default for DomainsSection {
    fn default() -> Self {
        DomainsSection {
            local: vec!["localhost".into()],
        }
    }
}

/// `[listen]`: one optional address per listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSection {
    /// MX: plaintext + STARTTLS.
    pub smtp: Option<SocketAddr>,
    /// Submission: STARTTLS, AUTH required.
    pub submission: Option<SocketAddr>,
    /// Submissions: implicit TLS.
    pub submissions: Option<SocketAddr>,
    /// IMAP with STARTTLS.
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS.
    pub imaps: Option<SocketAddr>,
    /// POP3 with STLS.
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS.
    pub pop3s: Option<SocketAddr>,
    /// Prometheus text and stats over HTTP.
    pub metrics: Option<SocketAddr>,
}

impl ListenSection {
    /// The embedded defaults: unprivileged loopback ports.
    pub fn embedded() -> Self {
        let a = |p: u16| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        ListenSection {
            smtp: a(2525),
            submission: a(2587),
            submissions: a(2465),
            imap: a(2143),
            imaps: a(2993),
            pop3: a(2110),
            pop3s: a(2995),
            metrics: None,
        }
    }

    /// Every configured listener with its kind.
    pub fn all(&self) -> Vec<(Listener, SocketAddr)> {
        let mut v = Vec::new();
        let mut push = |k, a: Option<SocketAddr>| {
            if let Some(a) = a {
                v.push((k, a))
            }
        };
        push(Listener::Smtp, self.smtp);
        push(Listener::Submission, self.submission);
        push(Listener::Submissions, self.submissions);
        push(Listener::Imap, self.imap);
        push(Listener::Imaps, self.imaps);
        push(Listener::Pop3, self.pop3);
        push(Listener::Pop3s, self.pop3s);
        v
    }
}

/// The kinds of mail listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// Port 25 style MX.
    Smtp,
    /// Port 587 style submission.
    Submission,
    /// Port 465 style submission over implicit TLS.
    Submissions,
    /// Port 143 style IMAP.
    Imap,
    /// Port 993 style IMAP over implicit TLS.
    Imaps,
    /// Port 110 style POP3.
    Pop3,
    /// Port 995 style POP3 over implicit TLS.
    Pop3s,
}

impl Listener {
    /// Whether TLS starts with the first byte.
    pub fn implicit_tls(self) -> bool {
        matches!(
            self,
            Listener::Submissions | Listener::Imaps | Listener::Pop3s
        )
    }

    /// The metrics label of this listener.
    pub fn metric(self) -> crate::metrics::Listener {
        use crate::metrics::Listener as M;
        match self {
            Listener::Smtp => M::Smtp,
            Listener::Submission => M::Submission,
            Listener::Submissions => M::Submissions,
            Listener::Imap => M::Imap,
            Listener::Imaps => M::Imaps,
            Listener::Pop3 => M::Pop3,
            Listener::Pop3s => M::Pop3s,
        }
    }

    /// The config key / metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Smtp => "smtp",
            Listener::Submission => "submission",
            Listener::Submissions => "submissions",
            Listener::Imap => "imap",
            Listener::Imaps => "imaps",
            Listener::Pop3 => "pop3",
            Listener::Pop3s => "pop3s",
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; absent = self-signed in data_dir.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Let IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS/AUTH work without TLS on 143 and 110
    /// (Dovecot's `disable_plaintext_auth = no`). Off: LOGINDISABLED, as RFC 8314 asks. SMTP
    /// AUTH always needs TLS.
    pub allow_plaintext_auth: bool,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest message accepted, in bytes (SIZE in EHLO).
    pub max_message_size: u64,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Longest command or text line.
    pub max_line_length: usize,
    /// Seconds a session may sit idle. Unset, each protocol gets its RFC's figure: SMTP and
    /// IMAP before login 300 (RFC 5321 §4.5.3.2), POP3 600 (RFC 1939 §3: "at least 10
    /// minutes"). Logged-in IMAP sessions always get 31 minutes (RFC 3501 §5.4).
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a TLS handshake may take in all (implicit TLS and STARTTLS alike): a client
    /// that connects and never finishes its handshake is dropped after this, however slowly
    /// it trickles bytes.
    pub tls_handshake_timeout_secs: u64,
    /// Octets of incoming message data all SMTP sessions together may hold in memory; a
    /// message that would go beyond it is refused with `452 4.3.1` (the client retries later).
    /// Each executor gets an equal share, never less than `max_message_size`. Responses with
    /// message bodies waiting for slow readers (IMAP FETCH, POP3 RETR) get as much again,
    /// counted apart; beyond it they are refused with a temporary error.
    pub max_message_memory: u64,
    /// Connections served at once (all listeners); 0 = 20000, or fewer if the
    /// file-descriptor limit (kept with a reserve for the data files) allows fewer. Over the
    /// limit a client gets a "too busy" greeting and is disconnected.
    pub max_connections: usize,
    /// Bytes of mail each account may store (all its mailboxes); unset = no quota. At or over
    /// it, SMTP RCPT gets `452 4.2.2` (the sender retries later) and an IMAP APPEND or COPY
    /// that would pass it gets `NO [OVERQUOTA]` (MOVE adds nothing and stays allowed); IMAP
    /// advertises QUOTA and answers GETQUOTA(ROOT).
    pub quota_bytes: Option<u64>,
}

impl LimitsSection {
    /// How long an SMTP session, or an IMAP session before login, may sit idle.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.unwrap_or(300).max(1))
    }

    /// How long a POP3 session may sit idle.
    pub fn pop3_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.unwrap_or(600).max(1))
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 4096,
            idle_timeout_secs: None,
            tls_handshake_timeout_secs: 30,
            max_message_memory: 128 * 1024 * 1024,
            max_connections: 0,
            quota_bytes: None,
        }
    }
}

/// `[relay]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Smarthost `host:port`; absent = deliver to MX.
    pub host: Option<String>,
}

/// Where the config came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// No file: the embedded defaults.
    Embedded,
}

impl Config {
    /// The embedded default configuration (`ringpost serve` with no file).
    pub fn embedded() -> Config {
        Config {
            listen: ListenSection::embedded(),
            ..Config::default()
        }
    }

    /// Loads `--config FILE`, else `./ringpost.toml` if present, else the embedded defaults.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Source), ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("ringpost.toml");
                if !p.exists() {
                    return Ok((Config::embedded(), Source::Embedded));
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.clone(),
                message,
            },
            other => other,
        })?;
        Ok((cfg, Source::File(path)))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.message().to_string(),
        })?;
        cfg.normalize();
        cfg.validate()?;
        Ok(cfg)
    }

    fn normalize(&mut self) {
        for d in &mut self.domains.local {
            *d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        }
    }

    /// Checks values a TOML type cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.server.hostname.trim().is_empty()
            || self.server.hostname.contains(char::is_whitespace)
        {
            return bad(format!(
                "server.hostname {:?} is not a host name",
                self.server.hostname
            ));
        }
        if self.server.shards == 0 || self.server.shards > 4096 {
            return bad(format!(
                "server.shards = {} (must be 1..=4096)",
                self.server.shards
            ));
        }
        if !(64 << 10..=1 << 30).contains(&self.server.segment_size) {
            return bad(format!(
                "server.segment_size = {} (must be 64 KiB..=1 GiB)",
                self.server.segment_size
            ));
        }
        if self.server.executors > 1024 {
            return bad(format!(
                "server.executors = {} (must be 0..=1024)",
                self.server.executors
            ));
        }
        if self.domains.local.is_empty() {
            return bad("domains.local is empty: no mail could be delivered".into());
        }
        if self.limits.max_message_size < 1024 {
            return bad("limits.max_message_size must be at least 1024".into());
        }
        if self.limits.max_recipients < 1 {
            return bad("limits.max_recipients must be at least 1".into());
        }
        if self.limits.max_line_length < 512 {
            return bad("limits.max_line_length must be at least 512 (RFC 5321 §4.5.3.1)".into());
        }
        if self.limits.tls_handshake_timeout_secs < 1 {
            return bad("limits.tls_handshake_timeout_secs must be at least 1".into());
        }
        if self.limits.quota_bytes == Some(0) {
            return bad("limits.quota_bytes must be at least 1 (leave it out for no quota)".into());
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls.cert and tls.key must be given together".into());
        }
        let mut seen = std::collections::HashMap::new();
        let mut all: Vec<(&str, SocketAddr)> = self
            .listen
            .all()
            .into_iter()
            .map(|(k, a)| (k.name(), a))
            .collect();
        if let Some(m) = self.listen.metrics {
            all.push(("metrics", m));
        }
        for (name, addr) in all {
            if let Some(other) = seen.insert(addr, name) {
                return bad(format!("listen.{name} and listen.{other} both use {addr}"));
            }
        }
        Ok(())
    }

    /// Number of executors to run.
    pub fn executor_count(&self) -> usize {
        if self.server.executors > 0 {
            self.server.executors
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// Whether `domain` is delivered here.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        self.domains.local.iter().any(|l| l.eq_ignore_ascii_case(d))
    }

    /// The mailbox a bare `RCPT TO:<Postmaster>` means, and where postmaster of any local
    /// domain without its own goes (RFC 5321 §4.5.1): postmaster at the hostname when that is
    /// a local domain, else at the first local domain.
    pub fn postmaster_address(&self) -> String {
        let host = self.server.hostname.trim_end_matches('.');
        let domain = if self.is_local_domain(host) {
            host
        } else {
            self.domains
                .local
                .first()
                .map_or(host, |d| d.trim_end_matches('.'))
        };
        format!("postmaster@{}", domain.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmaster_is_at_the_hostname_only_when_it_is_local() {
        let mut c = Config::parse(
            "[server]\nhostname = \"mail.example.org\"\n[domains]\nlocal = [\"Example.org.\", \"example.net\"]\n",
        )
        .unwrap();
        assert_eq!(c.postmaster_address(), "postmaster@example.org");
        c.domains.local.push("MAIL.example.org".into());
        assert_eq!(c.postmaster_address(), "postmaster@mail.example.org");
        c.domains.local.clear();
        assert_eq!(c.postmaster_address(), "postmaster@mail.example.org");
    }

    #[test]
    fn empty_file_means_defaults_but_no_listeners() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.hostname, "localhost");
        assert!(c.listen.all().is_empty());
        assert_eq!(c.limits.max_recipients, 100);
        assert!(!c.server.pin_executors);
        assert_eq!(c.limits.quota_bytes, None);
    }

    #[test]
    fn embedded_has_all_loopback_listeners() {
        let c = Config::embedded();
        assert_eq!(c.listen.all().len(), 7);
        assert!(c.listen.all().iter().all(|(_, a)| a.ip().is_loopback()));
    }

    #[test]
    fn full_example_parses() {
        let c = Config::parse(
            r#"
[server]
hostname = "mail.example.org"
data_dir = "/tmp/x"
shards = 8
pin_executors = true
[domains]
local = ["Example.org."]
[listen]
smtp = "127.0.0.1:2525"
metrics = "127.0.0.1:9025"
[limits]
max_message_size = 1000000
quota_bytes = 1048576
[relay]
host = "smtp.provider.example:587"
"#,
        )
        .unwrap();
        assert_eq!(c.server.shards, 8);
        assert!(c.server.pin_executors);
        assert_eq!(c.limits.quota_bytes, Some(1 << 20));
        assert!(c.is_local_domain("example.ORG"));
        assert_eq!(c.listen.all().len(), 1);
    }

    #[test]
    fn idle_timeouts_follow_each_rfc_unless_configured() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.limits.idle_timeout(), Duration::from_secs(300));
        assert_eq!(c.limits.pop3_idle_timeout(), Duration::from_secs(600));
        let c = Config::parse("[limits]\nidle_timeout_secs = 2").unwrap();
        assert_eq!(c.limits.idle_timeout(), Duration::from_secs(2));
        assert_eq!(c.limits.pop3_idle_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(matches!(
            Config::parse("[server]\nhostnme = \"x\""),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            Config::parse("[server]\nshards = 0"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::parse("[listen]\nsmtp = \"127.0.0.1:1\"\nimap = \"127.0.0.1:1\""),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::parse("[tls]\ncert = \"/a\""),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::parse("[limits]\nquota_bytes = 0"),
            Err(ConfigError::Invalid(_))
        ));
    }
}

//! The names of everything measured: histogram metrics, counters and gauges.
//!
//! Each kind is a small `Copy` enum with a dense index, so the per-executor registry is a set of
//! plain arrays and recording is an index, never a lookup by string.

/// What a histogram's values mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Durations in microseconds.
    Micros,
    /// Plain counts (e.g. records per group commit), not time.
    Count,
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $variant:ident => $name:literal $unit:ident,)*) => {
        /// A histogram: a command or operation whose latency (or size) is recorded.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(usize)]
        pub enum Metric {
            $(
                #[doc = concat!("`", $name, "`")]
                $(#[$doc])*
                $variant,
            )*
        }

        impl Metric {
            /// Every metric, in index order (`ALL[m as usize] == m`).
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            /// Its stable dotted name, e.g. `"smtp.data"`; used in JSON and the table.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Metric::$variant => $name,)*
                }
            }

            /// What its values mean: microseconds for latencies, a count for sizes.
            pub const fn unit(self) -> Unit {
                match self {
                    $(Metric::$variant => Unit::$unit,)*
                }
            }
        }
    };
}

metrics! {
    SmtpBanner => "smtp.banner" Micros,
    SmtpEhlo => "smtp.ehlo" Micros,
    SmtpMail => "smtp.mail" Micros,
    SmtpRcpt => "smtp.rcpt" Micros,
    SmtpData => "smtp.data" Micros,
    SmtpBdat => "smtp.bdat" Micros,
    SmtpAuth => "smtp.auth" Micros,
    SmtpStarttls => "smtp.starttls" Micros,
    SmtpOther => "smtp.other" Micros,

    ImapLogin => "imap.login" Micros,
    ImapAuthenticate => "imap.authenticate" Micros,
    ImapCapability => "imap.capability" Micros,
    ImapNoop => "imap.noop" Micros,
    ImapLogout => "imap.logout" Micros,
    ImapStarttls => "imap.starttls" Micros,
    ImapEnable => "imap.enable" Micros,
    ImapSelect => "imap.select" Micros,
    ImapExamine => "imap.examine" Micros,
    ImapCreate => "imap.create" Micros,
    ImapDelete => "imap.delete" Micros,
    ImapRename => "imap.rename" Micros,
    ImapSubscribe => "imap.subscribe" Micros,
    ImapUnsubscribe => "imap.unsubscribe" Micros,
    ImapList => "imap.list" Micros,
    ImapLsub => "imap.lsub" Micros,
    ImapNamespace => "imap.namespace" Micros,
    ImapStatus => "imap.status" Micros,
    ImapAppend => "imap.append" Micros,
    ImapIdle => "imap.idle" Micros,
    ImapCheck => "imap.check" Micros,
    ImapClose => "imap.close" Micros,
    ImapUnselect => "imap.unselect" Micros,
    ImapExpunge => "imap.expunge" Micros,
    ImapSearch => "imap.search" Micros,
    ImapSort => "imap.sort" Micros,
    ImapThread => "imap.thread" Micros,
    ImapFetch => "imap.fetch" Micros,
    ImapStore => "imap.store" Micros,
    ImapCopy => "imap.copy" Micros,
    ImapMove => "imap.move" Micros,
    ImapUidFetch => "imap.uid_fetch" Micros,
    ImapUidStore => "imap.uid_store" Micros,
    ImapUidSearch => "imap.uid_search" Micros,
    ImapUidSort => "imap.uid_sort" Micros,
    ImapUidThread => "imap.uid_thread" Micros,
    ImapUidCopy => "imap.uid_copy" Micros,
    ImapUidMove => "imap.uid_move" Micros,
    ImapUidExpunge => "imap.uid_expunge" Micros,
    ImapId => "imap.id" Micros,
    ImapGetquotaroot => "imap.getquotaroot" Micros,
    ImapGetquota => "imap.getquota" Micros,
    ImapOther => "imap.other" Micros,

    Pop3User => "pop3.user" Micros,
    Pop3Pass => "pop3.pass" Micros,
    Pop3Auth => "pop3.auth" Micros,
    Pop3Stat => "pop3.stat" Micros,
    Pop3List => "pop3.list" Micros,
    Pop3Retr => "pop3.retr" Micros,
    Pop3Dele => "pop3.dele" Micros,
    Pop3Top => "pop3.top" Micros,
    Pop3Uidl => "pop3.uidl" Micros,
    Pop3Rset => "pop3.rset" Micros,
    Pop3Noop => "pop3.noop" Micros,
    Pop3Quit => "pop3.quit" Micros,
    Pop3Capa => "pop3.capa" Micros,
    Pop3Stls => "pop3.stls" Micros,
    Pop3Other => "pop3.other" Micros,

    TlsHandshake => "tls.handshake" Micros,
    AuthVerify => "auth.verify" Micros,
    StorageAppend => "storage.append" Micros,
    StorageCommit => "storage.commit" Micros,
    StorageFdatasync => "storage.fdatasync" Micros,
    StorageRead => "storage.read" Micros,
    StorageCompaction => "storage.compaction" Micros,
    DeliveryCrossShard => "delivery.cross_shard" Micros,
    ///
    /// Records per group commit: a count, not µs (record with `record_value`).
    StorageGroupCommitSize => "storage.group_commit_size" Count,
}

impl Metric {
    /// Number of metrics (length of [`Metric::ALL`]).
    pub const COUNT: usize = Self::ALL.len();

    /// The metric with this dotted name, if any.
    pub fn from_name(name: &str) -> Option<Metric> {
        Self::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// The protocol or subsystem part of the name (`"smtp"` for `smtp.data`).
    pub fn group(self) -> &'static str {
        self.split().0
    }

    /// The command or operation part of the name (`"data"` for `smtp.data`).
    pub fn command(self) -> &'static str {
        self.split().1
    }

    fn split(self) -> (&'static str, &'static str) {
        // Every name has exactly one dot (checked by a test).
        self.name().split_once('.').unwrap_or((self.name(), ""))
    }

    /// The SMTP metric for a command verb (case-insensitive); HELO and LHLO count as EHLO.
    pub fn from_smtp_command(verb: &str) -> Metric {
        let v = verb.trim();
        if ["helo", "lhlo"].iter().any(|h| v.eq_ignore_ascii_case(h)) {
            return Metric::SmtpEhlo;
        }
        // The banner is not a command; only a verb of that name would match, which is "other".
        if v.eq_ignore_ascii_case("banner") {
            return Metric::SmtpOther;
        }
        Self::by_command("smtp", v).unwrap_or(Metric::SmtpOther)
    }

    /// The IMAP metric for a command name, case-insensitive; `"UID FETCH"` (one space) and
    /// `"uid_fetch"` both give [`Metric::ImapUidFetch`]; unknown names give
    /// [`Metric::ImapOther`].
    pub fn from_imap_command(cmd: &str) -> Metric {
        Self::by_command("imap", cmd.trim()).unwrap_or(Metric::ImapOther)
    }

    /// The POP3 metric for a command keyword, case-insensitive; unknown gives
    /// [`Metric::Pop3Other`].
    pub fn from_pop3_command(cmd: &str) -> Metric {
        Self::by_command("pop3", cmd.trim()).unwrap_or(Metric::Pop3Other)
    }

    fn by_command(group: &str, cmd: &str) -> Option<Metric> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.group() == group && command_eq(m.command(), cmd))
    }
}

/// `name` (lower case, `_` separated) equals `cmd` ignoring ASCII case, with a space in `cmd`
/// standing for `_` (so `UID FETCH` matches `uid_fetch`) — compared without allocating.
fn command_eq(name: &str, cmd: &str) -> bool {
    name.len() == cmd.len()
        && name.bytes().zip(cmd.bytes()).all(|(n, c)| {
            let c = if c == b' ' {
                b'_'
            } else {
                c.to_ascii_lowercase()
            };
            n == c
        })
}

/// A listener (port role) for connection counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Listener {
    /// Port 25, MX.
    Smtp,
    /// Port 587, STARTTLS submission.
    Submission,
    /// Port 465, implicit-TLS submission.
    Submissions,
    /// Port 143.
    Imap,
    /// Port 993.
    Imaps,
    /// Port 110.
    Pop3,
    /// Port 995.
    Pop3s,
}

impl Listener {
    /// Every listener, in index order.
    pub const ALL: [Listener; 7] = [
        Listener::Smtp,
        Listener::Submission,
        Listener::Submissions,
        Listener::Imap,
        Listener::Imaps,
        Listener::Pop3,
        Listener::Pop3s,
    ];

    /// Its config key, e.g. `"submissions"`.
    pub const fn name(self) -> &'static str {
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

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum RejectReason {
    /// Over `max_message_size`.
    Size,
    /// Relay attempt without authentication.
    Relay,
    /// No such local recipient.
    UnknownUser,
    /// Bare LF / bare CR where a line end was expected (SMTP smuggling).
    Smuggling,
    /// Any other policy refusal.
    Policy,
    /// Storage failed to make it durable.
    Storage,
    /// Anything else.
    Other,
}

impl RejectReason {
    /// Every reason, in index order.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Size,
        RejectReason::Relay,
        RejectReason::UnknownUser,
        RejectReason::Smuggling,
        RejectReason::Policy,
        RejectReason::Storage,
        RejectReason::Other,
    ];

    /// Its name as used in counter names and labels.
    pub const fn name(self) -> &'static str {
        match self {
            RejectReason::Size => "size",
            RejectReason::Relay => "relay",
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::Smuggling => "smuggling",
            RejectReason::Policy => "policy",
            RejectReason::Storage => "storage",
            RejectReason::Other => "other",
        }
    }
}

/// Highest shard id (exclusive) with its own delivery counter; deliveries to shards at or above
/// it are added to [`Counter::DeliveriesShardOverflow`].
pub const MAX_SHARDS: usize = 1024;

/// A monotonically increasing counter (u64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Connections accepted on a listener.
    ConnectionsTotal(Listener),
    /// Messages accepted (250 after DATA/BDAT LAST).
    MessagesAccepted,
    /// Messages refused, by reason.
    MessagesRejected(RejectReason),
    /// Bytes read from clients.
    BytesIn,
    /// Bytes written to clients.
    BytesOut,
    /// Messages delivered into a shard (by shard id).
    Deliveries(u32),
    /// Deliveries to a shard id at or above [`MAX_SHARDS`].
    DeliveriesShardOverflow,
    /// Deliver messages sent to another executor over the mesh.
    CrossShardHandoffs,
    /// Failed authentications.
    AuthFailures,
    /// TLS handshakes that failed.
    TlsHandshakesFailed,
}

/// Number of fixed counter slots (all counters except per-shard deliveries).
pub const COUNTER_SLOTS: usize = 7 + 1 + 7 + 2 + 1 + 3;

impl Counter {
    /// Every fixed counter (per-shard deliveries excluded), in slot order.
    pub fn fixed() -> impl Iterator<Item = Counter> {
        let conns = Listener::ALL.into_iter().map(Counter::ConnectionsTotal);
        let rejected = RejectReason::ALL.into_iter().map(Counter::MessagesRejected);
        conns
            .chain([Counter::MessagesAccepted])
            .chain(rejected)
            .chain([
                Counter::BytesIn,
                Counter::BytesOut,
                Counter::DeliveriesShardOverflow,
                Counter::CrossShardHandoffs,
                Counter::AuthFailures,
                Counter::TlsHandshakesFailed,
            ])
    }

    /// Its fixed slot, or `None` for [`Counter::Deliveries`] (kept in a per-shard array).
    pub const fn slot(self) -> Option<usize> {
        Some(match self {
            Counter::ConnectionsTotal(l) => l as usize,
            Counter::MessagesAccepted => 7,
            Counter::MessagesRejected(r) => 8 + r as usize,
            Counter::BytesIn => 15,
            Counter::BytesOut => 16,
            Counter::DeliveriesShardOverflow => 17,
            Counter::CrossShardHandoffs => 18,
            Counter::AuthFailures => 19,
            Counter::TlsHandshakesFailed => 20,
            Counter::Deliveries(_) => return None,
        })
    }

    /// Prometheus family (without `ringpost_` prefix) and optional label (name, value).
    pub fn prometheus(self) -> (&'static str, Option<(&'static str, String)>) {
        match self {
            Counter::ConnectionsTotal(l) => {
                ("connections_total", Some(("listener", l.name().into())))
            }
            Counter::MessagesAccepted => ("messages_accepted_total", None),
            Counter::MessagesRejected(r) => {
                ("messages_rejected_total", Some(("reason", r.name().into())))
            }
            Counter::BytesIn => ("bytes_in_total", None),
            Counter::BytesOut => ("bytes_out_total", None),
            Counter::Deliveries(s) => ("deliveries_total", Some(("shard", s.to_string()))),
            Counter::DeliveriesShardOverflow => ("deliveries_shard_overflow_total", None),
            Counter::CrossShardHandoffs => ("cross_shard_handoffs_total", None),
            Counter::AuthFailures => ("auth_failures_total", None),
            Counter::TlsHandshakesFailed => ("tls_handshakes_failed_total", None),
        }
    }

    /// Its dotted name for JSON and the table, e.g. `"messages.rejected.size"`.
    pub fn name(self) -> String {
        match self {
            Counter::ConnectionsTotal(l) => format!("connections.total.{}", l.name()),
            Counter::MessagesAccepted => "messages.accepted".into(),
            Counter::MessagesRejected(r) => format!("messages.rejected.{}", r.name()),
            Counter::BytesIn => "bytes.in".into(),
            Counter::BytesOut => "bytes.out".into(),
            Counter::Deliveries(s) => format!("deliveries.shard.{s}"),
            Counter::DeliveriesShardOverflow => "deliveries.shard_overflow".into(),
            Counter::CrossShardHandoffs => "cross_shard.handoffs".into(),
            Counter::AuthFailures => "auth.failures".into(),
            Counter::TlsHandshakesFailed => "tls.handshakes_failed".into(),
        }
    }
}

/// A value that goes up and down (i64; per-executor values may be negative because a
/// connection can move executors, only the sum is meaningful).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Open connections on a listener.
    ConnectionsCurrent(Listener),
}

/// Number of gauge slots.
pub const GAUGE_SLOTS: usize = 7;

impl Gauge {
    /// Every gauge, in slot order.
    pub fn all() -> impl Iterator<Item = Gauge> {
        Listener::ALL.into_iter().map(Gauge::ConnectionsCurrent)
    }

    /// Its slot in the gauge array.
    pub const fn slot(self) -> usize {
        match self {
            Gauge::ConnectionsCurrent(l) => l as usize,
        }
    }

    /// Its dotted name, e.g. `"connections.current.imap"`.
    pub fn name(self) -> String {
        match self {
            Gauge::ConnectionsCurrent(l) => format!("connections.current.{}", l.name()),
        }
    }

    /// Prometheus family (without `ringpost_` prefix) and label (name, value).
    pub fn prometheus(self) -> (&'static str, (&'static str, &'static str)) {
        match self {
            Gauge::ConnectionsCurrent(l) => ("connections_current", ("listener", l.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_index_matches_all_and_names_unique() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
            assert_eq!(Metric::from_name(m.name()), Some(*m));
            assert_eq!(m.name().matches('.').count(), 1, "{}", m.name());
            assert!(!m.command().is_empty());
        }
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::COUNT);
    }

    #[test]
    fn command_lookups() {
        assert_eq!(Metric::from_imap_command("UID FETCH"), Metric::ImapUidFetch);
        assert_eq!(
            Metric::from_imap_command("uid_expunge"),
            Metric::ImapUidExpunge
        );
        assert_eq!(Metric::from_imap_command("Fetch"), Metric::ImapFetch);
        assert_eq!(
            Metric::from_imap_command("GETQUOTAROOT"),
            Metric::ImapGetquotaroot
        );
        assert_eq!(Metric::from_imap_command("uid  fetch"), Metric::ImapOther);
        assert_eq!(Metric::from_imap_command("XYZZY"), Metric::ImapOther);
        assert_eq!(Metric::from_imap_command(""), Metric::ImapOther);
        assert_eq!(Metric::from_pop3_command("RETR"), Metric::Pop3Retr);
        assert_eq!(Metric::from_pop3_command("stls"), Metric::Pop3Stls);
        assert_eq!(Metric::from_pop3_command("APOP"), Metric::Pop3Other);
        assert_eq!(Metric::from_smtp_command("HELO"), Metric::SmtpEhlo);
        assert_eq!(Metric::from_smtp_command("ehlo"), Metric::SmtpEhlo);
        assert_eq!(Metric::from_smtp_command("BDAT"), Metric::SmtpBdat);
        assert_eq!(Metric::from_smtp_command("VRFY"), Metric::SmtpOther);
        assert_eq!(Metric::from_smtp_command("BANNER"), Metric::SmtpOther);
    }

    #[test]
    fn counter_slots_dense_and_unique() {
        let slots: Vec<usize> = Counter::fixed().filter_map(Counter::slot).collect();
        assert_eq!(slots, (0..COUNTER_SLOTS).collect::<Vec<_>>());
        assert_eq!(Counter::Deliveries(3).slot(), None);
        let gslots: Vec<usize> = Gauge::all().map(Gauge::slot).collect();
        assert_eq!(gslots, (0..GAUGE_SLOTS).collect::<Vec<_>>());
    }
}

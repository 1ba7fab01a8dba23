//! Measurements: one HDR histogram per operation, counters and error counts, recorded per
//! executor without locks and shipped to the main thread once a second.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Every timed operation of every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// TCP connect (+ implicit TLS handshake) up to the server greeting.
    Connect,
    /// SMTP EHLO.
    Ehlo,
    /// STARTTLS / STLS command and TLS handshake.
    StartTls,
    /// SMTP AUTH PLAIN, IMAP AUTHENTICATE, POP3 AUTH.
    Auth,
    /// SMTP MAIL FROM.
    Mail,
    /// SMTP RCPT TO (each).
    Rcpt,
    /// SMTP DATA: from sending the message to the final 250.
    Data,
    /// SMTP transaction: MAIL through the 250 after DATA, from its intended start.
    Txn,
    /// SMTP RSET after a rejected transaction.
    Rset,
    /// SMTP / POP3 QUIT.
    Quit,
    /// IMAP LOGIN.
    Login,
    /// IMAP SELECT INBOX.
    Select,
    /// IMAP UID FETCH.
    Fetch,
    /// IMAP UID STORE.
    Store,
    /// IMAP SEARCH.
    Search,
    /// IMAP APPEND.
    Append,
    /// IMAP NOOP.
    Noop,
    /// IMAP IDLE (until `+`) plus DONE (until tagged OK).
    Idle,
    /// IMAP LOGOUT.
    Logout,
    /// POP3 USER.
    User,
    /// POP3 PASS.
    Pass,
    /// POP3 STAT.
    Stat,
    /// POP3 LIST.
    List,
    /// POP3 RETR (each).
    Retr,
    /// POP3 DELE (each).
    Dele,
    /// POP3 session: connect through QUIT.
    Session,
}

impl Op {
    /// All operations in report order.
    pub const ALL: [Op; 26] = [
        Op::Connect,
        Op::StartTls,
        Op::Ehlo,
        Op::Auth,
        Op::Mail,
        Op::Rcpt,
        Op::Data,
        Op::Txn,
        Op::Rset,
        Op::Login,
        Op::Select,
        Op::Fetch,
        Op::Store,
        Op::Search,
        Op::Append,
        Op::Noop,
        Op::Idle,
        Op::Logout,
        Op::User,
        Op::Pass,
        Op::Stat,
        Op::List,
        Op::Retr,
        Op::Dele,
        Op::Quit,
        Op::Session,
    ];

    /// Lower-case name used in reports, JSON keys, hlog tags and error keys.
    pub fn name(self) -> &'static str {
        match self {
            Op::Connect => "connect",
            Op::Ehlo => "ehlo",
            Op::StartTls => "starttls",
            Op::Auth => "auth",
            Op::Mail => "mail",
            Op::Rcpt => "rcpt",
            Op::Data => "data",
            Op::Txn => "txn",
            Op::Rset => "rset",
            Op::Quit => "quit",
            Op::Login => "login",
            Op::Select => "select",
            Op::Fetch => "fetch",
            Op::Store => "store",
            Op::Search => "search",
            Op::Append => "append",
            Op::Noop => "noop",
            Op::Idle => "idle",
            Op::Logout => "logout",
            Op::User => "user",
            Op::Pass => "pass",
            Op::Stat => "stat",
            Op::List => "list",
            Op::Retr => "retr",
            Op::Dele => "dele",
            Op::Session => "session",
        }
    }

    fn index(self) -> usize {
        Op::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }
}

/// Latencies are recorded in microseconds, up to one hour, with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; fall back to auto-resize regardless.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfig is valid"));
        h.auto(true);
        h
    })
}

/// What one executor measured in one interval (or, summed, over the run).
#[derive(Debug, Default)]
pub struct Sample {
    /// Histograms of operations that happened, by operation.
    pub hists: BTreeMap<Op, Histogram<u64>>,
    /// Errors by kind (see `LoadError::key`).
    pub errors: BTreeMap<String, u64>,
    /// Completed units of work of the mode (transactions, IMAP commands, POP3 commands).
    pub ops: u64,
    /// Messages moved (SMTP accepted, IMAP fetched + appended, POP3 retrieved).
    pub messages: u64,
    /// Message ids acknowledged with 250 (SMTP, for `--ids-file`).
    pub ids: Vec<String>,
}

impl Sample {
    /// Adds another sample into this one.
    pub fn merge(&mut self, other: &Sample) {
        for (op, h) in &other.hists {
            match self.hists.get_mut(op) {
                // Same bounds on both sides; a saturating add keeps going if not.
                Some(mine) => {
                    if mine.add(h).is_err() {
                        for v in h.iter_recorded() {
                            mine.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                        }
                    }
                }
                None => {
                    self.hists.insert(*op, h.clone());
                }
            }
        }
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        self.ops += other.ops;
        self.messages += other.messages;
    }

    /// Total number of errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Per-executor recorder shared by that executor's connection tasks (never across threads).
#[derive(Debug)]
pub struct Recorder {
    hists: RefCell<Vec<Histogram<u64>>>,
    rest: RefCell<Sample>,
    keep_ids: bool,
}

impl Recorder {
    /// A recorder; `keep_ids` collects acknowledged message ids.
    pub fn new(keep_ids: bool) -> Recorder {
        Recorder {
            hists: RefCell::new(Op::ALL.iter().map(|_| new_histogram()).collect()),
            rest: RefCell::new(Sample::default()),
            keep_ids,
        }
    }

    /// Records one latency.
    pub fn record(&self, op: Op, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(h) = self.hists.borrow_mut().get_mut(op.index()) {
            h.saturating_record(us);
        }
    }

    /// Records the latency of an operation that started at `since`.
    pub fn record_since(&self, op: Op, since: Instant) {
        self.record(op, since.elapsed());
    }

    /// Counts one error of the given kind.
    pub fn error(&self, key: &str) {
        let mut rest = self.rest.borrow_mut();
        match rest.errors.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                rest.errors.insert(key.to_string(), 1);
            }
        }
    }

    /// Counts completed units of work.
    pub fn add_ops(&self, n: u64) {
        self.rest.borrow_mut().ops += n;
    }

    /// Counts moved messages.
    pub fn add_messages(&self, n: u64) {
        self.rest.borrow_mut().messages += n;
    }

    /// Keeps an acknowledged message id, when ids are wanted.
    pub fn ack_id(&self, id: &str) {
        if self.keep_ids {
            self.rest.borrow_mut().ids.push(id.to_string());
        }
    }

    /// Takes everything recorded since the last call.
    pub fn take(&self) -> Sample {
        let mut sample = std::mem::take(&mut *self.rest.borrow_mut());
        for (op, h) in Op::ALL.iter().zip(self.hists.borrow_mut().iter_mut()) {
            if !h.is_empty() {
                let fresh = Histogram::new_from(h);
                sample.hists.insert(*op, std::mem::replace(h, fresh));
            }
        }
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Op::ALL.len());
    }

    #[test]
    fn recorder_take_resets() {
        let r = Recorder::new(true);
        r.record(Op::Data, Duration::from_micros(1500));
        r.record(Op::Data, Duration::from_micros(2500));
        r.record(Op::Mail, Duration::from_nanos(10));
        r.error("rcpt.5xx");
        r.error("rcpt.5xx");
        r.add_ops(2);
        r.ack_id("x1");
        let s = r.take();
        assert_eq!(s.hists.len(), 2);
        assert_eq!(s.hists[&Op::Data].len(), 2);
        // Sub-microsecond latencies count as 1 µs rather than vanishing.
        assert_eq!(s.hists[&Op::Mail].max(), 1);
        assert_eq!(s.errors["rcpt.5xx"], 2);
        assert_eq!(s.ops, 2);
        assert_eq!(s.ids, vec!["x1".to_string()]);
        let empty = r.take();
        assert!(empty.hists.is_empty() && empty.errors.is_empty() && empty.ops == 0);
    }

    #[test]
    fn samples_merge() {
        let a = Recorder::new(false);
        a.record(Op::Fetch, Duration::from_millis(1));
        a.error("timeout");
        a.add_messages(3);
        a.ack_id("ignored");
        let b = Recorder::new(false);
        b.record(Op::Fetch, Duration::from_millis(3));
        b.record(Op::Noop, Duration::from_millis(3));
        b.error("timeout");
        let mut total = a.take();
        total.merge(&b.take());
        assert_eq!(total.hists[&Op::Fetch].len(), 2);
        assert_eq!(total.hists[&Op::Noop].len(), 1);
        assert_eq!(total.error_count(), 2);
        assert_eq!(total.messages, 3);
        assert!(total.ids.is_empty());
    }
}

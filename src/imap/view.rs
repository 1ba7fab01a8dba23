//! The selected mailbox as one session sees it: its own sequence-number → UID map and the
//! flags it last reported, and the synchronisation that turns store changes into untagged
//! EXPUNGE / EXISTS / RECENT / FLAGS / FETCH responses (RFC 3501 §5.2, §7.4.1).

use super::response;
use super::store::{MailStore, MailboxView, MessageView};

/// How a sync may report changes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SyncOpts {
    /// EXPUNGE responses allowed (not during FETCH / STORE / SEARCH by sequence number).
    pub allow_expunge: bool,
    /// Include UID in unsolicited FETCH (the command was a UID command).
    pub with_uid: bool,
    /// CONDSTORE enabled: MODSEQ changes are reported and included.
    pub condstore: bool,
    /// IMAP4rev2 enabled: no RECENT responses.
    pub rev2: bool,
}

/// The selected mailbox vanished or was recreated (UIDVALIDITY changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailboxGone;

/// One session's view of its selected mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    /// Canonical name.
    pub name: String,
    /// EXAMINE, or SELECT of a mailbox we may not change.
    pub read_only: bool,
    /// UIDVALIDITY at selection.
    pub uidvalidity: u32,
    /// Sequence number − 1 → UID, ascending.
    pub uids: Vec<u32>,
    /// Flags last reported for each message.
    pub flags: Vec<u64>,
    /// MODSEQ last seen for each message.
    pub modseqs: Vec<u64>,
    /// Expunged in the store but not yet reported (sequence numbers still hold).
    pub gone: Vec<bool>,
    /// Number of `true` in `gone`.
    pub gone_count: usize,
    /// UIDs that are `\Recent` for this session, ascending.
    pub recent: Vec<u32>,
    /// Keyword table as last announced in FLAGS.
    pub keywords: Vec<String>,
    /// Store HIGHESTMODSEQ at the last sync.
    pub highest_modseq: u64,
    /// Store UIDNEXT at the last sync.
    pub uidnext: u32,
    /// Store version read before the last sync (for IDLE).
    pub version: u64,
    /// UIDs of the saved search result (`$`, RFC 5182), ascending.
    pub saved: Vec<u32>,
    /// Searches whose result changes the client is told of (RFC 5267 `RETURN (UPDATE)`).
    pub updates: Vec<SearchUpdate>,
}

/// A `SEARCH RETURN (UPDATE)` kept up to date (RFC 5267).
#[derive(Debug, Clone)]
pub(crate) struct SearchUpdate {
    /// Tag of the SEARCH, named in every update.
    pub tag: Vec<u8>,
    /// UID SEARCH: updates name UIDs, not sequence numbers.
    pub uid: bool,
    /// The criteria as sent, CRLF-terminated; parsed again to evaluate.
    pub criteria: Vec<u8>,
    /// UIDs in the result, ascending.
    pub results: Vec<u32>,
    /// Mailbox state the result was last computed at (HIGHESTMODSEQ, UIDNEXT, count).
    pub computed_at: (u64, u32, usize),
}

impl Selected {
    /// Opens `name` for this session; `None` if it does not exist. SELECT claims the
    /// mailbox's new messages as `\Recent`; EXAMINE only looks.
    pub(crate) fn open<S: MailStore>(
        store: &S,
        account: &str,
        name: &str,
        read_only: bool,
    ) -> Option<Selected> {
        let version = store.mailbox_version(account, name);
        let first_recent = store.first_recent_uid(account, name, !read_only);
        let mut sel = store.with_mailbox(account, name, |ix| {
            let msgs = ix.messages();
            Selected {
                name: name.to_string(),
                read_only,
                uidvalidity: ix.uidvalidity(),
                uids: msgs.iter().map(MessageView::uid).collect(),
                flags: msgs.iter().map(MessageView::flags).collect(),
                modseqs: msgs.iter().map(MessageView::modseq).collect(),
                gone: vec![false; msgs.len()],
                gone_count: 0,
                recent: Vec::new(),
                keywords: ix.keywords().to_vec(),
                highest_modseq: ix.highest_modseq(),
                uidnext: ix.uidnext(),
                version,
                saved: Vec::new(),
                updates: Vec::new(),
            }
        })?;
        let start = sel.uids.partition_point(|&u| u < first_recent);
        sel.recent = sel.uids[start..].to_vec();
        Some(sel)
    }

    /// Number of messages the client knows of.
    pub(crate) fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// Whether `uid` is `\Recent` in this session.
    pub(crate) fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// 0-based index of `uid` in the view.
    pub(crate) fn index_of(&self, uid: u32) -> Option<usize> {
        self.uids.binary_search(&uid).ok()
    }

    /// Brings the view up to date with the store, writing the untagged responses that tell
    /// the client.
    pub(crate) fn sync<S: MailStore>(
        &mut self,
        store: &S,
        account: &str,
        out: &mut Vec<u8>,
        opts: SyncOpts,
    ) -> Result<(), MailboxGone> {
        self.version = store.mailbox_version(account, &self.name);
        // (uid, report) of messages whose flags / modseq changed.
        let mut changed: Vec<u32> = Vec::new();
        let mut new_keywords = None;
        let mut added = 0usize;
        let diff = store.with_mailbox(account, &self.name, |ix| {
            if ix.uidvalidity() != self.uidvalidity {
                return Err(MailboxGone);
            }
            let msgs = ix.messages();
            if ix.keywords() != self.keywords.as_slice() {
                new_keywords = Some(ix.keywords().to_vec());
            }
            let live = self.uids.len() - self.gone_count;
            if new_keywords.is_none()
                && ix.highest_modseq() == self.highest_modseq
                && ix.uidnext() == self.uidnext
                && msgs.len() == live
            {
                return Ok(());
            }
            let mut j = 0;
            for i in 0..self.uids.len() {
                if self.gone[i] {
                    continue;
                }
                let uid = self.uids[i];
                while j < msgs.len() && msgs[j].uid() < uid {
                    j += 1;
                }
                match msgs.get(j) {
                    Some(m) if m.uid() == uid => {
                        let (f, ms) = (m.flags(), m.modseq());
                        let report =
                            f != self.flags[i] || (opts.condstore && ms != self.modseqs[i]);
                        if report {
                            changed.push(uid);
                        }
                        self.flags[i] = f;
                        self.modseqs[i] = ms;
                        j += 1;
                    }
                    _ => {
                        self.gone[i] = true;
                        self.gone_count += 1;
                    }
                }
            }
            let max_uid = self.uids.last().copied().unwrap_or(0);
            let start = msgs.partition_point(|m| m.uid() <= max_uid);
            for m in &msgs[start..] {
                self.uids.push(m.uid());
                self.flags.push(m.flags());
                self.modseqs.push(m.modseq());
                self.gone.push(false);
                added += 1;
            }
            self.highest_modseq = ix.highest_modseq();
            self.uidnext = ix.uidnext();
            Ok(())
        });
        match diff {
            None | Some(Err(MailboxGone)) => return Err(MailboxGone),
            Some(Ok(())) => {}
        }

        let recent_before = self.recent.len();
        if opts.allow_expunge && self.gone_count > 0 {
            self.report_expunges(out);
        }
        // Dovecot also tells of a RECENT count that expunges lowered (EXISTS below does
        // when messages arrive).
        if !opts.rev2 && added == 0 && self.recent.len() != recent_before {
            out.extend_from_slice(b"* ");
            response::number(out, self.recent.len());
            out.extend_from_slice(b" RECENT\r\n");
        }
        if let Some(kw) = new_keywords {
            self.keywords = kw;
            self.write_flags(out);
        }
        if added > 0 {
            // Only a read-write session takes new messages as \Recent: a read-only one must
            // not, or a SELECTing session would see them as recent too.
            if !self.read_only {
                let first = self.uids.len() - added;
                let first_recent = store.first_recent_uid(account, &self.name, true);
                for &uid in &self.uids[first..] {
                    if uid >= first_recent {
                        self.recent.push(uid);
                    }
                }
            }
            out.extend_from_slice(b"* ");
            response::number(out, self.uids.len());
            out.extend_from_slice(b" EXISTS\r\n");
            if !opts.rev2 {
                out.extend_from_slice(b"* ");
                response::number(out, self.recent.len());
                out.extend_from_slice(b" RECENT\r\n");
            }
        }
        for uid in changed {
            if let Some(i) = self.index_of(uid) {
                if !self.gone[i] {
                    self.write_flags_fetch(out, i, opts);
                }
            }
        }
        Ok(())
    }

    /// Writes `* n EXPUNGE` for every message gone from the store, highest first so each
    /// number is valid when sent, and drops them from the view.
    fn report_expunges(&mut self, out: &mut Vec<u8>) {
        for i in (0..self.uids.len()).rev() {
            if self.gone[i] {
                out.extend_from_slice(b"* ");
                response::number(out, i + 1);
                out.extend_from_slice(b" EXPUNGE\r\n");
            }
        }
        let mut k = 0;
        for i in 0..self.uids.len() {
            if !self.gone[i] {
                self.uids[k] = self.uids[i];
                self.flags[k] = self.flags[i];
                self.modseqs[k] = self.modseqs[i];
                k += 1;
            }
        }
        self.uids.truncate(k);
        self.flags.truncate(k);
        self.modseqs.truncate(k);
        self.gone.clear();
        self.gone.resize(k, false);
        self.gone_count = 0;
        let uids = &self.uids;
        self.recent.retain(|u| uids.binary_search(u).is_ok());
    }

    /// Writes `* FLAGS` and the PERMANENTFLAGS code for the current keyword table.
    pub(crate) fn write_flags(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* FLAGS ");
        response::mailbox_flags(out, &self.keywords, false);
        out.extend_from_slice(b"\r\n");
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
        } else {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ");
            response::mailbox_flags(out, &self.keywords, true);
            out.extend_from_slice(b"] Flags permitted.\r\n");
        }
    }

    /// Writes `* n FETCH ([UID u] MODSEQ (m))` for message index `i` (a STORE .SILENT with
    /// CONDSTORE on).
    pub(crate) fn write_modseq_fetch(&self, out: &mut Vec<u8>, i: usize, opts: SyncOpts) {
        out.extend_from_slice(b"* ");
        response::number(out, i + 1);
        out.extend_from_slice(b" FETCH (");
        if opts.with_uid {
            out.extend_from_slice(b"UID ");
            response::number(out, self.uids[i]);
            out.push(b' ');
        }
        out.extend_from_slice(b"MODSEQ (");
        response::number(out, self.modseqs[i]);
        out.extend_from_slice(b"))\r\n");
    }

    /// Writes an unsolicited `* n FETCH (FLAGS ...)` for message index `i`.
    pub(crate) fn write_flags_fetch(&self, out: &mut Vec<u8>, i: usize, opts: SyncOpts) {
        let uid = self.uids[i];
        out.extend_from_slice(b"* ");
        response::number(out, i + 1);
        out.extend_from_slice(b" FETCH (");
        if opts.with_uid {
            out.extend_from_slice(b"UID ");
            response::number(out, uid);
            out.push(b' ');
        }
        out.extend_from_slice(b"FLAGS ");
        let recent = !opts.rev2 && self.is_recent(uid);
        response::flag_list(out, self.flags[i], &self.keywords, recent);
        if opts.condstore {
            out.extend_from_slice(b" MODSEQ (");
            response::number(out, self.modseqs[i]);
            out.push(b')');
        }
        out.extend_from_slice(b")\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::store::{flags, FlagOp, FlagUpdate, MemStore};
    use futures::executor::block_on;

    fn store_with(n: usize) -> MemStore {
        let s = MemStore::new();
        block_on(s.ensure_account("u")).unwrap();
        for i in 0..n {
            s.deliver("u", "INBOX", format!("Subject: {i}\r\n\r\nx").as_bytes(), 0);
        }
        s
    }

    #[test]
    fn expunges_reported_descending_and_renumbered() {
        let s = store_with(5);
        let mut v = Selected::open(&s, "u", "INBOX", false).unwrap();
        assert_eq!(v.recent.len(), 5);
        block_on(s.expunge("u", "INBOX", &[2, 4])).unwrap();
        let mut out = Vec::new();
        // Not allowed: numbers stay.
        v.sync(&s, "u", &mut out, SyncOpts::default()).unwrap();
        assert!(out.is_empty());
        assert_eq!(v.exists(), 5);
        v.sync(
            &s,
            "u",
            &mut out,
            SyncOpts {
                allow_expunge: true,
                ..Default::default()
            },
        )
        .unwrap();
        // The RECENT count fell with the expunges: said after them, as Dovecot does.
        assert_eq!(out, b"* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n* 3 RECENT\r\n");
        assert_eq!(v.uids, vec![1, 3, 5]);
        assert_eq!(v.recent, vec![1, 3, 5]);
    }

    #[test]
    fn new_mail_and_flag_changes() {
        let s = store_with(2);
        let mut v = Selected::open(&s, "u", "INBOX", false).unwrap();
        s.deliver("u", "INBOX", b"x", 0);
        block_on(s.store_flags(
            "u",
            "INBOX",
            &[1],
            FlagOp::Add,
            &FlagUpdate {
                system: flags::FLAGGED as u8,
                keywords: vec![],
            },
            None,
        ))
        .unwrap();
        let mut out = Vec::new();
        v.sync(&s, "u", &mut out, SyncOpts::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 3 EXISTS\r\n* 3 RECENT\r\n* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
        );
        // A second session selecting now sees nothing recent: the first one claimed it.
        let other = Selected::open(&s, "u", "INBOX", false).unwrap();
        assert!(other.recent.is_empty());
    }

    #[test]
    fn deleted_mailbox_is_gone() {
        let s = store_with(0);
        s.deliver("u", "Trash", b"x", 0);
        let mut v = Selected::open(&s, "u", "Trash", false).unwrap();
        block_on(s.delete_mailbox("u", "Trash")).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            v.sync(&s, "u", &mut out, SyncOpts::default()),
            Err(MailboxGone)
        );
    }
}

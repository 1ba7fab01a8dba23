//! The in-memory index of a shard: accounts → mailboxes → messages, plus the outbound queue.
//!
//! Every change goes through [`Index::apply`] with a [`Record`]: live operations apply the
//! record they log, and recovery applies the records it reads, so both build the same index.

use crate::record::Record;
use crate::types::{
    flags, BodyRef, MailboxInfo, MessageMeta, QueueItem, SpecialUse, INBOX, KEYWORD_SHIFT,
    MAX_KEYWORDS,
};
use rkyv::{Archive, Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Mailboxes created with every new account: name, special use.
pub(crate) const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    (INBOX, None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

/// Total size of `msgs`.
fn sum_sizes(msgs: &[MessageMeta]) -> u64 {
    msgs.iter().map(|m| u64::from(m.size)).sum()
}

/// Canonical spelling of a mailbox name: INBOX in any case becomes `INBOX`.
pub(crate) fn canonical(name: &str) -> Cow<'_, str> {
    if name.eq_ignore_ascii_case(INBOX) && name != INBOX {
        Cow::Borrowed(INBOX)
    } else {
        Cow::Borrowed(name)
    }
}

/// The index of one shard.
#[derive(Clone, Debug, Default, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct Index {
    pub(crate) accounts: HashMap<String, Account>,
    pub(crate) queue: BTreeMap<u64, QueueItem>,
    pub(crate) next_queue_id: u64,
    /// Highest UIDVALIDITY handed out; new ones are larger so a name never sees one twice.
    pub(crate) last_uidvalidity: u32,
    /// Next internal mailbox id (stable across renames; used to route change notifications).
    pub(crate) next_mid: u64,
}

/// One account: its mailboxes by canonical name and its subscription list.
#[derive(Clone, Debug, Default, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) mailboxes: BTreeMap<String, MailboxIndex>,
    pub(crate) subscriptions: BTreeSet<String>,
}

/// The index of one mailbox: counters, keyword table and messages in UID order.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub struct MailboxIndex {
    pub(crate) mid: u64,
    pub(crate) name: String,
    pub(crate) special_use: Option<SpecialUse>,
    pub(crate) uidvalidity: u32,
    pub(crate) uidnext: u32,
    pub(crate) highest_modseq: u64,
    pub(crate) keywords: Vec<String>,
    pub(crate) messages: Vec<MessageMeta>,
    /// Messages with a UID below this are durable and shown; later ones wait for their commit.
    pub(crate) visible_uidnext: u32,
    /// Change counter for IDLE; runtime only (reset on open).
    pub(crate) version: u64,
    /// Sum of `size` over every entry of `messages`, pending ones included, so that quota
    /// usage costs O(pending), not O(mailbox), per commit. Derived: not in snapshots (the
    /// layout stays as it was) and recounted when a snapshot is read ([`Index::recount_bytes`]).
    #[rkyv(with = rkyv::with::Skip)]
    pub(crate) all_bytes: u64,
}

impl MailboxIndex {
    fn new(mid: u64, name: &str, uidvalidity: u32, special_use: Option<SpecialUse>) -> Self {
        MailboxIndex {
            mid,
            name: name.to_owned(),
            special_use,
            uidvalidity,
            uidnext: 1,
            highest_modseq: 1,
            keywords: Vec::new(),
            messages: Vec::new(),
            visible_uidnext: 1,
            version: 1,
            all_bytes: 0,
        }
    }

    /// The mailbox name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Special-use attribute.
    pub fn special_use(&self) -> Option<SpecialUse> {
        self.special_use
    }
    /// UIDVALIDITY.
    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }
    /// UIDNEXT as clients may see it: past the durable messages only.
    #[allow(clippy::misnamed_getters)] // deliberately not `self.uidnext` (includes pending)
    pub fn uidnext(&self) -> u32 {
        self.visible_uidnext
    }
    /// HIGHESTMODSEQ.
    pub fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }
    /// Keyword table: keyword `i` is flag bit `8 + i`.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }
    /// Index of a keyword in [`keywords`](Self::keywords), compared case-insensitively.
    pub fn keyword_index(&self, keyword: &str) -> Option<usize> {
        self.keywords
            .iter()
            .position(|k| k.eq_ignore_ascii_case(keyword))
    }
    /// Durable messages, UID ascending.
    pub fn messages(&self) -> &[MessageMeta] {
        let n = self
            .messages
            .partition_point(|m| m.uid < self.visible_uidnext);
        &self.messages[..n]
    }
    /// Position of `uid` in [`messages`](Self::messages) (its sequence number minus one).
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.messages().binary_search_by_key(&uid, |m| m.uid).ok()
    }
    /// The message with `uid`, if present.
    pub fn find(&self, uid: u32) -> Option<&MessageMeta> {
        let msgs = self.messages();
        msgs.binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &msgs[i])
    }
    /// Number of messages (EXISTS).
    pub fn exists(&self) -> u32 {
        self.messages().len() as u32
    }

    /// Bytes of this mailbox's visible messages.
    pub(crate) fn bytes(&self) -> u64 {
        let pending = &self.messages[self.messages().len()..];
        self.all_bytes - sum_sizes(pending)
    }

    pub(crate) fn info(&self, subscribed: bool) -> MailboxInfo {
        let msgs = self.messages();
        MailboxInfo {
            name: self.name.clone(),
            special_use: self.special_use,
            subscribed,
            uidvalidity: self.uidvalidity,
            uidnext: self.visible_uidnext,
            highest_modseq: self.highest_modseq,
            exists: msgs.len() as u32,
            unseen: msgs
                .iter()
                .filter(|m| m.flags & u64::from(flags::SEEN) == 0)
                .count() as u32,
            size: self.bytes(),
        }
    }

    pub(crate) fn find_any(&self, uid: u32) -> Option<&MessageMeta> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.messages[i])
    }

    fn keyword_bits_valid(&self, f: u64) -> bool {
        let allowed = u64::from(flags::SYSTEM_MASK)
            | (((1u128 << self.keywords.len()) - 1) as u64) << KEYWORD_SHIFT;
        f & !allowed == 0
    }
}

/// Mailboxes whose state a record changed: (internal id, UIDNEXT after the change).
pub(crate) type Touched = [Option<(u64, u32)>; 2];

impl Index {
    /// Bytes of all visible messages of `account` (0 for an unknown account).
    pub(crate) fn account_bytes(&self, account: &str) -> u64 {
        self.accounts
            .get(account)
            .map_or(0, |a| a.mailboxes.values().map(MailboxIndex::bytes).sum())
    }

    pub(crate) fn mailbox(&self, account: &str, name: &str) -> Option<&MailboxIndex> {
        self.accounts
            .get(account)?
            .mailboxes
            .get(canonical(name).as_ref())
    }

    /// A fresh UIDVALIDITY: the current time in seconds, or one more than the last if that is
    /// not larger (several mailboxes per second, or a clock that went back).
    pub(crate) fn next_uidvalidity(&self, now_secs: i64, already: u32) -> u32 {
        let floor = self.last_uidvalidity.max(already).saturating_add(1);
        u32::try_from(now_secs).unwrap_or(0).max(floor)
    }

    /// Applies one record. An error means the record contradicts the index: a bug in the live
    /// path, corruption during replay.
    pub(crate) fn apply(&mut self, rec: &Record<'_>) -> Result<Touched, String> {
        let mut touched: Touched = [None, None];
        match rec {
            Record::AccountCreated { account } => {
                if self.accounts.contains_key(*account) {
                    return Err(format!("account {account} created twice"));
                }
                self.accounts
                    .insert((*account).to_owned(), Account::default());
            }
            Record::MailboxCreated {
                account,
                name,
                uidvalidity,
                special_use,
            } => {
                let mid = self.next_mid;
                let acct = self.account_mut(account)?;
                if acct.mailboxes.contains_key(*name) {
                    return Err(format!("mailbox {name} created twice"));
                }
                if *uidvalidity == 0 {
                    return Err("UIDVALIDITY 0".into());
                }
                acct.mailboxes.insert(
                    (*name).to_owned(),
                    MailboxIndex::new(mid, name, *uidvalidity, *special_use),
                );
                self.next_mid += 1;
                self.last_uidvalidity = self.last_uidvalidity.max(*uidvalidity);
                touched[0] = Some((mid, 1));
            }
            Record::MailboxRenamed {
                account,
                from,
                to,
                uidvalidity,
            } => {
                let next_mid = self.next_mid;
                let acct = self.account_mut(account)?;
                if acct.mailboxes.contains_key(*to) {
                    return Err(format!("rename target {to} exists"));
                }
                let Some(mut src) = acct.mailboxes.remove(*from) else {
                    return Err(format!("rename source {from} missing"));
                };
                if *from == INBOX {
                    // RFC 3501: messages move to a new mailbox; INBOX stays, empty, and keeps
                    // its UIDVALIDITY and UIDNEXT so its UIDs are never reused.
                    let mut dst = MailboxIndex::new(next_mid, to, *uidvalidity, None);
                    dst.uidnext = src.uidnext;
                    dst.visible_uidnext = src.visible_uidnext;
                    dst.highest_modseq = src.highest_modseq;
                    dst.keywords = src.keywords.clone();
                    dst.messages = std::mem::take(&mut src.messages);
                    dst.all_bytes = std::mem::take(&mut src.all_bytes);
                    src.highest_modseq += 1;
                    touched = [Some((src.mid, src.uidnext)), Some((next_mid, dst.uidnext))];
                    acct.mailboxes.insert(INBOX.to_owned(), src);
                    acct.mailboxes.insert((*to).to_owned(), dst);
                    self.next_mid += 1;
                } else {
                    src.name = (*to).to_owned();
                    src.uidvalidity = *uidvalidity;
                    touched[0] = Some((src.mid, src.uidnext));
                    acct.mailboxes.insert((*to).to_owned(), src);
                }
                self.last_uidvalidity = self.last_uidvalidity.max(*uidvalidity);
            }
            Record::MailboxDeleted { account, name } => {
                if *name == INBOX {
                    return Err("INBOX deleted".into());
                }
                let acct = self.account_mut(account)?;
                let Some(mb) = acct.mailboxes.remove(*name) else {
                    return Err(format!("deleted mailbox {name} missing"));
                };
                touched[0] = Some((mb.mid, mb.uidnext));
            }
            Record::Subscription { account, name, on } => {
                let acct = self.account_mut(account)?;
                if *on {
                    acct.subscriptions.insert((*name).to_owned());
                } else {
                    acct.subscriptions.remove(*name);
                }
            }
            Record::KeywordDefined {
                account,
                mailbox,
                keyword,
            } => {
                let mb = self.mailbox_exact(account, mailbox)?;
                if mb.keywords.len() >= MAX_KEYWORDS {
                    return Err("keyword table overflow".into());
                }
                if mb.keyword_index(keyword).is_some() {
                    return Err(format!("keyword {keyword} defined twice"));
                }
                mb.keywords.push((*keyword).to_owned());
            }
            Record::Appended {
                account,
                mailbox,
                uid,
                body,
                internal_date,
                flags,
                modseq,
            } => {
                let mb = self.mailbox_exact(account, mailbox)?;
                if *uid < mb.uidnext || *uid == u32::MAX {
                    return Err(format!("UID {uid} not above UIDNEXT {}", mb.uidnext));
                }
                if mb.messages.last().is_some_and(|m| m.uid >= *uid) {
                    return Err(format!("UID {uid} not ascending"));
                }
                if *modseq <= mb.highest_modseq {
                    return Err(format!("MODSEQ {modseq} not above {}", mb.highest_modseq));
                }
                if !mb.keyword_bits_valid(*flags) {
                    return Err(format!("flags {flags:#x} name undefined keywords"));
                }
                mb.messages.push(MessageMeta {
                    uid: *uid,
                    flags: *flags,
                    modseq: *modseq,
                    size: body.len,
                    internal_date: *internal_date,
                    body: *body,
                });
                mb.all_bytes += u64::from(body.len);
                mb.uidnext = uid + 1;
                mb.highest_modseq = *modseq;
                touched[0] = Some((mb.mid, mb.uidnext));
            }
            Record::FlagsChanged {
                account,
                mailbox,
                modseq,
                changes,
            } => {
                let mb = self.mailbox_exact(account, mailbox)?;
                if *modseq <= mb.highest_modseq {
                    return Err(format!("MODSEQ {modseq} not above {}", mb.highest_modseq));
                }
                for (uid, f) in changes {
                    if !mb.keyword_bits_valid(*f) {
                        return Err(format!("flags {f:#x} name undefined keywords"));
                    }
                    let i = mb
                        .messages
                        .binary_search_by_key(uid, |m| m.uid)
                        .map_err(|_| format!("flag change on missing UID {uid}"))?;
                    mb.messages[i].flags = *f;
                    mb.messages[i].modseq = *modseq;
                }
                mb.highest_modseq = *modseq;
                touched[0] = Some((mb.mid, mb.uidnext));
            }
            Record::Expunged {
                account,
                mailbox,
                modseq,
                uids,
            } => {
                let mb = self.mailbox_exact(account, mailbox)?;
                if *modseq <= mb.highest_modseq {
                    return Err(format!("MODSEQ {modseq} not above {}", mb.highest_modseq));
                }
                if !uids.windows(2).all(|w| w[0] < w[1]) {
                    return Err("expunged UIDs not ascending".into());
                }
                let before = mb.messages.len();
                let mut gone = uids.iter().peekable();
                let mut freed = 0;
                mb.messages.retain(|m| {
                    while gone.peek().is_some_and(|u| **u < m.uid) {
                        gone.next();
                    }
                    let keep = gone.peek() != Some(&&m.uid);
                    if !keep {
                        freed += u64::from(m.size);
                    }
                    keep
                });
                if before - mb.messages.len() != uids.len() {
                    return Err("expunge of missing UIDs".into());
                }
                mb.all_bytes -= freed;
                mb.highest_modseq = *modseq;
                touched[0] = Some((mb.mid, mb.uidnext));
            }
            Record::QueueAdded {
                id,
                sender,
                rcpts,
                body,
                queued_at,
            } => {
                if *id < self.next_queue_id {
                    return Err(format!("queue id {id} reused"));
                }
                self.queue.insert(
                    *id,
                    QueueItem {
                        id: *id,
                        sender: (*sender).to_owned(),
                        rcpts: rcpts.iter().map(|r| (*r).to_owned()).collect(),
                        body: *body,
                        attempts: 0,
                        next_attempt: *queued_at,
                        queued_at: *queued_at,
                    },
                );
                self.next_queue_id = id + 1;
            }
            Record::QueueDone { id } => {
                if self.queue.remove(id).is_none() {
                    return Err(format!("queue id {id} done twice"));
                }
            }
            Record::QueueRetry {
                id,
                attempts,
                next_attempt,
            } => {
                let item = self
                    .queue
                    .get_mut(id)
                    .ok_or_else(|| format!("retry of missing queue id {id}"))?;
                item.attempts = *attempts;
                item.next_attempt = *next_attempt;
            }
            Record::BodiesMoved { segment, moves } => {
                let to: HashMap<u64, BodyRef> = moves.iter().copied().collect();
                let mut fail = None;
                self.for_each_body_mut(|body| {
                    if body.segment != *segment {
                        return;
                    }
                    if let Some(new) = to.get(&body.offset) {
                        if new.len != body.len {
                            fail = Some(format!(
                                "body at {segment}/{} moved with another length",
                                body.offset
                            ));
                        }
                        *body = *new;
                    }
                });
                if let Some(e) = fail {
                    return Err(e);
                }
            }
        }
        Ok(touched)
    }

    /// Calls `f` on every body reference: messages (durable or not) and queue entries.
    fn for_each_body_mut(&mut self, mut f: impl FnMut(&mut BodyRef)) {
        for acct in self.accounts.values_mut() {
            for mb in acct.mailboxes.values_mut() {
                mb.messages.iter_mut().for_each(|m| f(&mut m.body));
            }
        }
        self.queue.values_mut().for_each(|q| f(&mut q.body));
    }

    /// The distinct bodies stored in `segment`, offset ascending (one body may back several
    /// messages: a delivery to several mailboxes, a COPY).
    pub(crate) fn bodies_in(&self, segment: u32) -> Vec<BodyRef> {
        let mut out: Vec<BodyRef> = self.all_bodies().filter(|b| b.segment == segment).collect();
        out.sort_unstable_by_key(|b| b.offset);
        out.dedup_by_key(|b| b.offset);
        out
    }

    /// Bytes of the bodies stored in segments `range`: what compaction would have to keep. A
    /// body shared by several messages counts once per message; overcounting only makes
    /// compaction later, and a pass over a million messages stays a few milliseconds.
    pub(crate) fn live_bytes(&self, range: std::ops::Range<u32>) -> u64 {
        self.all_bodies()
            .filter(|b| range.contains(&b.segment))
            .map(|b| u64::from(b.len))
            .sum()
    }

    fn all_bodies(&self) -> impl Iterator<Item = BodyRef> + '_ {
        let messages = self
            .accounts
            .values()
            .flat_map(|a| a.mailboxes.values())
            .flat_map(|mb| mb.messages.iter().map(|m| m.body));
        messages.chain(self.queue.values().map(|q| q.body))
    }

    fn account_mut(&mut self, account: &str) -> Result<&mut Account, String> {
        self.accounts
            .get_mut(account)
            .ok_or_else(|| format!("unknown account {account}"))
    }

    /// Mailbox by the exact (canonical) name written in a record.
    fn mailbox_exact(&mut self, account: &str, name: &str) -> Result<&mut MailboxIndex, String> {
        self.account_mut(account)?
            .mailboxes
            .get_mut(name)
            .ok_or_else(|| format!("unknown mailbox {name} of {account}"))
    }

    /// After load or replay everything in the index is durable: show it all, reset versions.
    pub(crate) fn mark_all_durable(&mut self) {
        for acct in self.accounts.values_mut() {
            for mb in acct.mailboxes.values_mut() {
                mb.visible_uidnext = mb.uidnext;
                mb.version = 1;
            }
        }
    }

    /// Sets the derived byte totals, which snapshots do not carry.
    pub(crate) fn recount_bytes(&mut self) {
        for acct in self.accounts.values_mut() {
            for mb in acct.mailboxes.values_mut() {
                mb.all_bytes = sum_sizes(&mb.messages);
            }
        }
    }

    /// Checks the invariants of the whole index (used after recovery and in tests).
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, acct) in &self.accounts {
            for (mname, mb) in &acct.mailboxes {
                if mname != &mb.name {
                    return Err(format!("{name}: mailbox key {mname} != {}", mb.name));
                }
                if !mb.messages.windows(2).all(|w| w[0].uid < w[1].uid) {
                    return Err(format!("{name}/{mname}: UIDs not ascending"));
                }
                if mb.messages.last().is_some_and(|m| m.uid >= mb.uidnext) {
                    return Err(format!("{name}/{mname}: UID at or above UIDNEXT"));
                }
                if mb.messages.iter().any(|m| m.modseq > mb.highest_modseq) {
                    return Err(format!("{name}/{mname}: MODSEQ above HIGHESTMODSEQ"));
                }
                if mb.keywords.len() > MAX_KEYWORDS {
                    return Err(format!("{name}/{mname}: too many keywords"));
                }
                if mb.all_bytes != sum_sizes(&mb.messages) {
                    return Err(format!("{name}/{mname}: byte total drifted"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::BodyRef;

    const B: BodyRef = BodyRef {
        segment: 0,
        offset: 9,
        len: 10,
    };

    fn base() -> Index {
        let mut ix = Index::default();
        ix.apply(&Record::AccountCreated { account: "a" }).unwrap();
        ix.apply(&Record::MailboxCreated {
            account: "a",
            name: INBOX,
            uidvalidity: 7,
            special_use: None,
        })
        .unwrap();
        ix
    }

    fn append(uid: u32, modseq: u64) -> Record<'static> {
        Record::Appended {
            account: "a",
            mailbox: INBOX,
            uid,
            body: B,
            internal_date: 0,
            flags: 0,
            modseq,
        }
    }

    #[test]
    fn append_enforces_uid_and_modseq_order() {
        let mut ix = base();
        ix.apply(&append(1, 2)).unwrap();
        ix.apply(&append(5, 3)).unwrap();
        assert!(ix.apply(&append(5, 4)).is_err(), "UID reused");
        assert!(ix.apply(&append(6, 3)).is_err(), "MODSEQ not above");
        let mb = ix.mailbox("a", "inbox").unwrap();
        assert_eq!(mb.uidnext, 6);
        assert_eq!(mb.highest_modseq, 3);
        ix.check().unwrap();
    }

    #[test]
    fn undefined_keyword_bits_are_refused() {
        let mut ix = base();
        let mut rec = append(1, 2);
        if let Record::Appended { flags, .. } = &mut rec {
            *flags = 1 << KEYWORD_SHIFT;
        }
        assert!(ix.apply(&rec).is_err());
        ix.apply(&Record::KeywordDefined {
            account: "a",
            mailbox: INBOX,
            keyword: "$x",
        })
        .unwrap();
        ix.apply(&rec).unwrap();
    }

    #[test]
    fn expunge_removes_exactly_the_listed_uids() {
        let mut ix = base();
        for (i, uid) in [1, 2, 3, 4].iter().enumerate() {
            ix.apply(&append(*uid, i as u64 + 2)).unwrap();
        }
        let exp = |uids: Vec<u32>, modseq| Record::Expunged {
            account: "a",
            mailbox: INBOX,
            modseq,
            uids,
        };
        ix.apply(&exp(vec![2, 4], 10)).unwrap();
        let uids: Vec<u32> = ix
            .mailbox("a", INBOX)
            .unwrap()
            .messages
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(uids, [1, 3]);
        assert!(ix.apply(&exp(vec![2], 11)).is_err(), "already gone");
    }

    /// Renames account a's INBOX to "Old" (new UIDVALIDITY 8); INBOX is made anew.
    fn rename_inbox_to_old(ix: &mut Index) {
        ix.apply(&Record::MailboxRenamed {
            account: "a",
            from: INBOX,
            to: "Old",
            uidvalidity: 8,
        })
        .unwrap();
    }

    #[test]
    fn inbox_rename_moves_messages_and_keeps_uidnext() {
        let mut ix = base();
        ix.apply(&append(1, 2)).unwrap();
        rename_inbox_to_old(&mut ix);
        let inbox = ix.mailbox("a", INBOX).unwrap();
        assert!(inbox.messages.is_empty());
        assert_eq!(inbox.uidnext, 2);
        assert_eq!(inbox.uidvalidity, 7);
        let old = ix.mailbox("a", "Old").unwrap();
        assert_eq!(old.messages.len(), 1);
        assert_eq!(old.uidvalidity, 8);
        assert_ne!(old.mid, inbox.mid);
    }

    #[test]
    fn byte_totals_follow_appends_pending_expunges_and_renames() {
        let mut ix = base();
        for uid in 1..=4 {
            ix.apply(&append(uid, u64::from(uid) + 1)).unwrap();
        }
        let mb = ix.mailbox("a", INBOX).unwrap();
        assert_eq!(mb.bytes(), 0, "nothing visible before its commit");
        ix.accounts
            .get_mut("a")
            .unwrap()
            .mailboxes
            .get_mut(INBOX)
            .unwrap()
            .visible_uidnext = 3;
        assert_eq!(
            ix.account_bytes("a"),
            20,
            "UIDs 1 and 2 are durable, 3 and 4 pending"
        );
        ix.apply(&Record::Expunged {
            account: "a",
            mailbox: INBOX,
            modseq: 10,
            uids: vec![1, 4],
        })
        .unwrap();
        assert_eq!(ix.account_bytes("a"), 10);
        ix.mark_all_durable();
        assert_eq!(ix.account_bytes("a"), 20);
        rename_inbox_to_old(&mut ix);
        assert_eq!(ix.mailbox("a", INBOX).unwrap().bytes(), 0);
        assert_eq!(ix.mailbox("a", "Old").unwrap().bytes(), 20);
        ix.check().unwrap();
        ix.accounts
            .get_mut("a")
            .unwrap()
            .mailboxes
            .get_mut("Old")
            .unwrap()
            .all_bytes += 1;
        assert!(
            ix.check().is_err(),
            "a drifted total is an invariant violation"
        );
    }

    #[test]
    fn uidvalidity_always_grows() {
        let ix = base();
        assert_eq!(ix.next_uidvalidity(0, 0), 8);
        assert_eq!(ix.next_uidvalidity(1000, 0), 1000);
        assert_eq!(ix.next_uidvalidity(0, 20), 21);
    }
}

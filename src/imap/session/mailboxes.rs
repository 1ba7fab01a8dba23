//! Mailbox-level commands: SELECT / EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST,
//! LSUB, STATUS, APPEND and QUOTA.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{now, Reply, Session, State};
use crate::imap::mailbox_name::{
    self, canonical_inbox, join_reference, pattern_matches, NameError,
};
use crate::imap::mime;
use crate::imap::parser::{AppendMessage, Flag, ListCommand, StatusItem};
use crate::imap::response;
use crate::imap::sequence::write_compact;
use crate::imap::store::{
    flags, FlagUpdate, MailStore, MailboxView, MessageView, SpecialUse, StoreError,
};
use crate::imap::view::Selected;

/// Proper ancestors of a name (`a/b/c` → `a`, `a/b`).
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(mailbox_name::DELIMITER)
        .map(move |(i, _)| &name[..i])
}

/// Maps a storage error to the tagged reply.
pub(super) fn store_error(e: &StoreError, missing: &'static str) -> Reply {
    match e {
        StoreError::NotFound => Reply::no(missing),
        StoreError::AlreadyExists => Reply::no("[ALREADYEXISTS] Mailbox already exists."),
        StoreError::TooManyKeywords => Reply::no("[LIMIT] Too many keywords in this mailbox."),
        StoreError::InvalidName => Reply::no("[CANNOT] Invalid mailbox name."),
        StoreError::NotPermitted => Reply::no("[CANNOT] Operation not permitted."),
        StoreError::TooLarge(_) => Reply::no("[TOOBIG] Message too large."),
        // As Dovecot answers ENOSPC; the cause is in the server log once, when it starts.
        StoreError::NoSpace(_) => Reply::no("[OVERQUOTA] Not enough disk space."),
        StoreError::Failed(msg) => {
            tracing::error!(error = %msg, "storage failure");
            Reply::no(
                "[SERVERBUG] Internal error occurred. Refer to server log for more information.",
            )
        }
    }
}

/// Turns command flags into a store update; `\Recent` and unknown `\Flags` are refused.
pub(super) fn flag_update(list: &[Flag<'_>]) -> Result<FlagUpdate, Reply> {
    let mut up = FlagUpdate::default();
    for f in list {
        let bit = match f {
            Flag::Seen => flags::SEEN,
            Flag::Answered => flags::ANSWERED,
            Flag::Flagged => flags::FLAGGED,
            Flag::Deleted => flags::DELETED,
            Flag::Draft => flags::DRAFT,
            Flag::Recent | Flag::Extension(_) => {
                return Err(Reply::bad("Invalid system flag."));
            }
            Flag::Keyword(k) => {
                let k = String::from_utf8_lossy(k).into_owned();
                if !up.keywords.iter().any(|x| x.eq_ignore_ascii_case(&k)) {
                    up.keywords.push(k);
                }
                continue;
            }
        };
        up.system |= bit as u8;
    }
    Ok(up)
}

#[derive(Default)]
struct ListEntry {
    exists: bool,
    special: Option<SpecialUse>,
    subscribed: bool,
    has_children: bool,
    child_subscribed: bool,
}

struct Counts {
    messages: u32,
    recent: u32,
    unseen: u32,
    deleted: u32,
    size: u64,
    uidnext: u32,
    uidvalidity: u32,
    highest_modseq: u64,
}

impl Session {
    fn account_name(&self) -> String {
        self.account.clone().unwrap_or_default()
    }

    /// A mailbox argument as the store names it.
    pub(super) fn mailbox_arg(&self, raw: &[u8]) -> Result<String, NameError> {
        mailbox_name::from_wire(raw, self.enabled.rev2)
    }

    /// Writes a mailbox name as the client expects it.
    pub(super) fn write_mailbox(&mut self, name: &str) {
        let utf8 = self.enabled.rev2;
        let wire = mailbox_name::to_wire(name, utf8);
        response::astring(&mut self.output, wire.as_bytes(), utf8);
    }

    pub(super) fn select<S: MailStore>(
        &mut self,
        store: &S,
        raw: &[u8],
        condstore: bool,
        read_only: bool,
    ) -> Reply {
        if matches!(self.state, State::Selected(_)) {
            self.state = State::Authenticated;
            if self.enabled.condstore || self.enabled.rev2 {
                self.untagged("OK [CLOSED] Previous mailbox closed.");
            }
        }
        if condstore {
            self.enabled.condstore = true;
        }
        let Ok(name) = self.mailbox_arg(raw) else {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        };
        let account = self.account_name();
        let Some(sel) = Selected::open(store, &account, &name, read_only) else {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        };
        sel.write_flags(&mut self.output);
        self.untagged(&format!("{} EXISTS", sel.exists()));
        if !self.enabled.rev2 {
            self.untagged(&format!("{} RECENT", sel.recent.len()));
            if let Some(i) = sel.flags.iter().position(|f| f & flags::SEEN == 0) {
                self.untagged(&format!("OK [UNSEEN {}] First unseen.", i + 1));
            }
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", sel.uidvalidity));
        self.untagged(&format!("OK [UIDNEXT {}] Predicted next UID", sel.uidnext));
        self.untagged(&format!(
            "OK [HIGHESTMODSEQ {}] Highest",
            sel.highest_modseq
        ));
        if self.enabled.rev2 {
            let children = store.list_mailboxes(&account).iter().any(|i| {
                i.name.len() > name.len()
                    && i.name.starts_with(&name)
                    && i.name[name.len()..].starts_with('/')
            });
            self.output.extend_from_slice(if children {
                b"* LIST (\\HasChildren) \"/\" "
            } else {
                b"* LIST (\\HasNoChildren) \"/\" "
            });
            self.write_mailbox(&name);
            self.output.extend_from_slice(b"\r\n");
        }
        self.state = State::Selected(Box::new(sel));
        if read_only {
            Reply::ok("[READ-ONLY] Examine completed.")
        } else {
            Reply::ok("[READ-WRITE] Select completed.")
        }
    }

    pub(super) async fn create<S: MailStore>(&mut self, store: &S, raw: &[u8]) -> Reply {
        // A trailing delimiter only declares the intent to create inferiors (RFC 3501 §6.3.3).
        let raw = raw.strip_suffix(b"/").unwrap_or(raw);
        let name = match self.mailbox_arg(raw) {
            Ok(n) => n,
            Err(e) => return Reply::no(format!("[CANNOT] Invalid mailbox name: {e}.")),
        };
        let account = self.account_name();
        if store.with_mailbox(&account, &name, |_| ()).is_some() {
            return Reply::no("[ALREADYEXISTS] Mailbox already exists.");
        }
        for parent in ancestors(&name) {
            if store.with_mailbox(&account, parent, |_| ()).is_none() {
                match store.create_mailbox(&account, parent).await {
                    Ok(()) => reset_recent(store, &account, parent),
                    Err(StoreError::AlreadyExists) => {}
                    Err(e) => return store_error(&e, "[CANNOT] Cannot create parent mailbox."),
                }
            }
        }
        match store.create_mailbox(&account, &name).await {
            Ok(()) => {
                reset_recent(store, &account, &name);
                Reply::ok("Create completed.")
            }
            Err(e) => store_error(&e, "[CANNOT] Cannot create mailbox."),
        }
    }

    pub(super) async fn delete<S: MailStore>(&mut self, store: &S, raw: &[u8]) -> Reply {
        let Ok(name) = self.mailbox_arg(raw) else {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        };
        if name == "INBOX" {
            return Reply::no("[CANNOT] INBOX can't be deleted.");
        }
        let account = self.account_name();
        if store.with_mailbox(&account, &name, |_| ()).is_none() {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        }
        if self.selected_mailbox() == Some(name.as_str()) {
            self.state = State::Authenticated;
        }
        match store.delete_mailbox(&account, &name).await {
            Ok(()) => Reply::ok("Delete completed."),
            Err(e) => store_error(&e, "[NONEXISTENT] Mailbox doesn't exist."),
        }
    }

    pub(super) async fn rename<S: MailStore>(
        &mut self,
        store: &S,
        from: &[u8],
        to: &[u8],
    ) -> Reply {
        let Ok(from) = self.mailbox_arg(from) else {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        };
        let to = match self.mailbox_arg(to) {
            Ok(n) => n,
            Err(e) => return Reply::no(format!("[CANNOT] Invalid mailbox name: {e}.")),
        };
        let account = self.account_name();
        if store.with_mailbox(&account, &from, |_| ()).is_none() {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        }
        if store.with_mailbox(&account, &to, |_| ()).is_some() {
            return Reply::no("[ALREADYEXISTS] Mailbox already exists.");
        }
        if to.starts_with(&format!("{from}/")) {
            return Reply::no("[CANNOT] Can't rename mailbox under itself.");
        }
        for parent in ancestors(&to) {
            if store.with_mailbox(&account, parent, |_| ()).is_none() {
                match store.create_mailbox(&account, parent).await {
                    Ok(()) => reset_recent(store, &account, parent),
                    Err(StoreError::AlreadyExists) => {}
                    Err(e) => return store_error(&e, "[CANNOT] Cannot create parent mailbox."),
                }
            }
        }
        // Renaming changes UIDVALIDITY: a session that has the mailbox (or one below it)
        // selected closes it. (Renaming INBOX only empties it; that shows as expunges.)
        let affected = from != "INBOX"
            && self
                .selected_mailbox()
                .is_some_and(|n| n == from || n.starts_with(&format!("{from}/")));
        if let Err(e) = store.rename_mailbox(&account, &from, &to).await {
            return store_error(&e, "[NONEXISTENT] Mailbox doesn't exist.");
        }
        // The renamed mailboxes are new to the \Recent bookkeeping (kept by name).
        let below = format!("{to}/");
        for info in store.list_mailboxes(&account) {
            if info.name == to || info.name.starts_with(&below) {
                reset_recent(store, &account, &info.name);
            }
        }
        if affected {
            self.state = State::Authenticated;
            self.untagged("OK [CLOSED] Selected mailbox was renamed.");
        }
        Reply::ok("Rename completed.")
    }

    pub(super) async fn subscribe<S: MailStore>(
        &mut self,
        store: &S,
        raw: &[u8],
        on: bool,
    ) -> Reply {
        let name = match self.mailbox_arg(raw) {
            Ok(n) => n,
            Err(e) => return Reply::no(format!("[CANNOT] Invalid mailbox name: {e}.")),
        };
        let account = self.account_name();
        if on && store.with_mailbox(&account, &name, |_| ()).is_none() {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        }
        match store.set_subscribed(&account, &name, on).await {
            Ok(()) if on => Reply::ok("Subscribe completed."),
            Ok(()) => Reply::ok("Unsubscribe completed."),
            Err(e) => store_error(&e, "[NONEXISTENT] Mailbox doesn't exist."),
        }
    }

    pub(super) fn list<S: MailStore>(&mut self, store: &S, l: &ListCommand<'_>) -> Reply {
        let utf8 = self.enabled.rev2;
        let Ok(reference) = mailbox_name::decode(&l.reference, utf8) else {
            return Reply::ok("List completed.");
        };
        let mut patterns = Vec::new();
        for p in &l.patterns {
            let Ok(p) = mailbox_name::decode(p, utf8) else {
                continue;
            };
            if p.is_empty() {
                // LIST "" "": the hierarchy delimiter and root.
                self.untagged("LIST (\\Noselect) \"/\" \"\"");
                continue;
            }
            patterns.push(canonical_inbox(&join_reference(&reference, &p)).into_owned());
        }
        if patterns.is_empty() {
            return Reply::ok("List completed.");
        }
        if l.return_status.contains(&StatusItem::HighestModSeq) {
            self.enable_condstore();
        }
        let account = self.account_name();
        let mut map: BTreeMap<String, ListEntry> = BTreeMap::new();
        let infos = store.list_mailboxes(&account);
        for i in &infos {
            let e = map.entry(i.name.clone()).or_default();
            e.exists = true;
            e.special = i.special_use;
        }
        for i in &infos {
            for a in ancestors(&i.name) {
                map.entry(a.to_string()).or_default().has_children = true;
            }
        }
        for s in store.subscriptions(&account) {
            // RECURSIVEMATCH reports CHILDINFO for parents of subscribed mailboxes that are
            // not listed themselves, i.e. that match no pattern (RFC 5258 §3.5).
            if !patterns.iter().any(|p| pattern_matches(p, &s)) {
                for a in ancestors(&s) {
                    map.entry(a.to_string()).or_default().child_subscribed = true;
                }
            }
            map.entry(s).or_default().subscribed = true;
        }
        // INBOX first, as clients expect.
        let mut names: Vec<&String> = map.keys().collect();
        names.sort_by_key(|n| (n.as_str() != "INBOX", n.as_str()));
        let mut lines: Vec<(String, Vec<&'static str>, bool, bool)> = Vec::new();
        for name in names {
            let e = &map[name];
            if !patterns.iter().any(|p| pattern_matches(p, name)) {
                continue;
            }
            let childinfo = l.recursive_match && e.child_subscribed;
            if l.select_subscribed {
                if !e.subscribed && !childinfo {
                    continue;
                }
            } else if !e.exists && !e.has_children {
                continue;
            }
            if l.select_special_use && e.special.is_none() {
                continue;
            }
            let mut attrs = Vec::new();
            if !e.exists {
                attrs.push(if e.has_children {
                    "\\Noselect"
                } else {
                    "\\NonExistent"
                });
            }
            if e.exists || e.has_children {
                attrs.push(if e.has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some(su) = e.special {
                attrs.push(su.attribute());
            }
            if (l.select_subscribed || l.return_subscribed) && e.subscribed {
                attrs.push("\\Subscribed");
            }
            lines.push((name.clone(), attrs, childinfo, e.exists));
        }
        for (name, attrs, childinfo, exists) in lines {
            self.output.extend_from_slice(b"* LIST (");
            self.output.extend_from_slice(attrs.join(" ").as_bytes());
            self.output.extend_from_slice(b") \"/\" ");
            self.write_mailbox(&name);
            if childinfo {
                self.output
                    .extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            self.output.extend_from_slice(b"\r\n");
            if exists && !l.return_status.is_empty() {
                self.write_status(store, &name, &l.return_status);
            }
        }
        Reply::ok("List completed.")
    }

    pub(super) fn lsub<S: MailStore>(
        &mut self,
        store: &S,
        reference: &[u8],
        pattern: &[u8],
    ) -> Reply {
        let utf8 = self.enabled.rev2;
        let (Ok(reference), Ok(pattern)) = (
            mailbox_name::decode(reference, utf8),
            mailbox_name::decode(pattern, utf8),
        ) else {
            return Reply::ok("Lsub completed.");
        };
        if pattern.is_empty() {
            self.untagged("LSUB (\\Noselect) \"/\" \"\"");
            return Reply::ok("Lsub completed.");
        }
        let pattern = canonical_inbox(&join_reference(&reference, &pattern)).into_owned();
        let account = self.account_name();
        let mut map: BTreeMap<String, bool> = BTreeMap::new();
        // RFC 3501 §6.3.9: a `%` that stops at an unsubscribed parent of a subscribed name
        // lists the parent as \Noselect; without `%` only subscribed names match.
        let with_parents = pattern.contains('%') && !pattern.contains('*');
        for s in store.subscriptions(&account) {
            if with_parents {
                for a in ancestors(&s) {
                    map.entry(a.to_string()).or_insert(false);
                }
            }
            map.insert(s, true);
        }
        let matching: Vec<(String, bool)> = map
            .into_iter()
            .filter(|(n, _)| pattern_matches(&pattern, n))
            .collect();
        for (name, subscribed) in matching {
            self.output.extend_from_slice(if subscribed {
                b"* LSUB () \"/\" "
            } else {
                b"* LSUB (\\Noselect) \"/\" "
            });
            self.write_mailbox(&name);
            self.output.extend_from_slice(b"\r\n");
        }
        Reply::ok("Lsub completed.")
    }

    fn counts<S: MailStore>(&self, store: &S, name: &str) -> Option<Counts> {
        let account = self.account.as_deref().unwrap_or("");
        let first_recent = store.first_recent_uid(account, name, false);
        store.with_mailbox(account, name, |ix| {
            let msgs = ix.messages();
            let mut c = Counts {
                messages: msgs.len() as u32,
                recent: 0,
                unseen: 0,
                deleted: 0,
                size: 0,
                uidnext: ix.uidnext(),
                uidvalidity: ix.uidvalidity(),
                highest_modseq: ix.highest_modseq(),
            };
            for m in msgs {
                let f = m.flags();
                c.unseen += u32::from(f & flags::SEEN == 0);
                c.deleted += u32::from(f & flags::DELETED != 0);
                c.recent += u32::from(m.uid() >= first_recent);
                c.size += u64::from(m.size());
            }
            c
        })
    }

    /// Writes `* STATUS name (...)`; false if the mailbox does not exist.
    fn write_status<S: MailStore>(&mut self, store: &S, name: &str, items: &[StatusItem]) -> bool {
        let Some(c) = self.counts(store, name) else {
            return false;
        };
        if items.contains(&StatusItem::HighestModSeq) {
            self.enable_condstore();
        }
        self.output.extend_from_slice(b"* STATUS ");
        self.write_mailbox(name);
        self.output.extend_from_slice(b" (");
        let parts: Vec<String> = items
            .iter()
            .map(|i| match i {
                StatusItem::Messages => format!("MESSAGES {}", c.messages),
                StatusItem::Recent => format!("RECENT {}", c.recent),
                StatusItem::UidNext => format!("UIDNEXT {}", c.uidnext),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", c.uidvalidity),
                StatusItem::Unseen => format!("UNSEEN {}", c.unseen),
                StatusItem::Size => format!("SIZE {}", c.size),
                StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", c.highest_modseq),
                StatusItem::Deleted => format!("DELETED {}", c.deleted),
            })
            .collect();
        self.output.extend_from_slice(parts.join(" ").as_bytes());
        self.output.extend_from_slice(b")\r\n");
        true
    }

    pub(super) fn status<S: MailStore>(
        &mut self,
        store: &S,
        raw: &[u8],
        items: &[StatusItem],
    ) -> Reply {
        let Ok(name) = self.mailbox_arg(raw) else {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        };
        if self.write_status(store, &name, items) {
            Reply::ok("Status completed.")
        } else {
            Reply::no("[NONEXISTENT] Mailbox doesn't exist.")
        }
    }

    fn quota_used<S: MailStore>(&self, store: &S) -> u64 {
        let account = self.account.as_deref().unwrap_or("");
        store.list_mailboxes(account).iter().map(|i| i.size).sum()
    }

    pub(super) async fn append<S: MailStore>(
        &mut self,
        store: &S,
        raw: &[u8],
        messages: &[AppendMessage<'_>],
    ) -> Reply {
        let name = match self.mailbox_arg(raw) {
            Ok(n) => n,
            Err(e) => return Reply::no(format!("[CANNOT] Invalid mailbox name: {e}.")),
        };
        let mut updates = Vec::with_capacity(messages.len());
        for m in messages {
            match flag_update(&m.flags) {
                Ok(u) => updates.push(u),
                Err(r) => return r,
            }
            if m.data.is_empty() {
                return Reply::no("Can't save a zero byte message.");
            }
        }
        let account = self.account_name();
        if store.with_mailbox(&account, &name, |_| ()).is_none() {
            return Reply::no("[TRYCREATE] Mailbox doesn't exist.");
        }
        if let Some(limit) = self.config.quota_bytes {
            let adding: u64 = messages.iter().map(|m| m.data.len() as u64).sum();
            if self.quota_used(store).saturating_add(adding) > limit {
                return Reply::no("[OVERQUOTA] Quota exceeded.");
            }
        }
        let mut uids = Vec::with_capacity(messages.len());
        let mut uidvalidity = 0;
        for (m, up) in messages.iter().zip(&updates) {
            let date = m.date.unwrap_or_else(now);
            // Binary content sent as literal8 is stored base64-encoded (RFC 3516 §4.4, as
            // Dovecot does), so BODY[] never has to carry a NUL.
            let data = match m.binary.then(|| mime::binary_to_base64(m.data)).flatten() {
                Some(encoded) => Bytes::from(encoded),
                None => Bytes::copy_from_slice(m.data),
            };
            match store.append(&account, &name, &[data], up, date).await {
                Ok(r) => {
                    uidvalidity = r.uidvalidity;
                    uids.push(r.uid);
                }
                Err(e) => return store_error(&e, "[TRYCREATE] Mailbox doesn't exist."),
            }
        }
        let mut set = Vec::new();
        write_compact(&mut set, &uids);
        Reply::ok(format!(
            "[APPENDUID {uidvalidity} {}] Append completed.",
            String::from_utf8_lossy(&set)
        ))
    }

    fn write_quota(&mut self, used: u64, limit: u64) {
        self.untagged(&format!(
            "QUOTA \"\" (STORAGE {} {})",
            used.div_ceil(1024),
            limit / 1024
        ));
    }

    pub(super) fn get_quota<S: MailStore>(&mut self, store: &S, root: &[u8]) -> Reply {
        match self.config.quota_bytes {
            Some(limit) if root.is_empty() => {
                let used = self.quota_used(store);
                self.write_quota(used, limit);
                Reply::ok("Getquota completed.")
            }
            _ => Reply::no("[NONEXISTENT] Quota root doesn't exist."),
        }
    }

    pub(super) fn get_quota_root<S: MailStore>(&mut self, store: &S, raw: &[u8]) -> Reply {
        let Ok(name) = self.mailbox_arg(raw) else {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        };
        let account = self.account_name();
        if store.with_mailbox(&account, &name, |_| ()).is_none() {
            return Reply::no("[NONEXISTENT] Mailbox doesn't exist.");
        }
        self.output.extend_from_slice(b"* QUOTAROOT ");
        self.write_mailbox(&name);
        match self.config.quota_bytes {
            Some(limit) => {
                self.output.extend_from_slice(b" \"\"\r\n");
                let used = self.quota_used(store);
                self.write_quota(used, limit);
            }
            None => self.output.extend_from_slice(b"\r\n"),
        }
        Reply::ok("Getquotaroot completed.")
    }
}

/// A new (created or renamed) mailbox starts afresh in the `\Recent` bookkeeping. The store
/// keeps its `\Recent` mark by mailbox name, so a mark left by a deleted mailbox of the same
/// name would hide the new one's messages (or show old ones): claiming once right after
/// CREATE / RENAME moves the mark to the mailbox's UIDNEXT.
fn reset_recent<S: MailStore>(store: &S, account: &str, name: &str) {
    store.first_recent_uid(account, name, true);
}

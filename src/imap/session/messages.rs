//! Message commands other than FETCH: STORE, SEARCH, COPY / MOVE, EXPUNGE and CLOSE.

use super::mailboxes::{flag_update, store_error};
use super::{Reply, Session, State};
use crate::imap::parser::{Flag, SearchReturn, StoreOp};
use crate::imap::response;
use crate::imap::search::{MessageContext, MimeMatcher, SearchKey};
use crate::imap::sequence::{write_compact, SequenceSet};
use crate::imap::store::{flags, FlagOp, MailStore, MailboxView, MessageView};
use crate::imap::view::{SearchUpdate, Selected, SyncOpts};

/// A message of the selected mailbox as a command sees it.
pub(super) struct Target<B> {
    /// 0-based index in the view (sequence number − 1).
    pub idx: usize,
    pub uid: u32,
    pub flags: u64,
    pub modseq: u64,
    pub size: u32,
    pub date: i64,
    pub body: B,
}

impl Session {
    /// The selected mailbox (commands that need one were checked already).
    pub(super) fn selected(&self) -> Option<&Selected> {
        match &self.state {
            State::Selected(s) => Some(s),
            _ => None,
        }
    }

    /// Resolves a sequence or UID set to view indexes, ascending.
    pub(super) fn resolve(&self, set: &SequenceSet<'_>, uid: bool) -> Result<Vec<usize>, Reply> {
        let Some(sel) = self.selected() else {
            return Err(Reply::bad("No mailbox selected."));
        };
        if set.is_saved() {
            // `$`: the saved result's messages still in the view (RFC 5182 §2.2).
            return Ok(sel.saved.iter().filter_map(|&u| sel.index_of(u)).collect());
        }
        if uid {
            Ok(set.resolve_uids(&sel.uids))
        } else {
            set.resolve_seq(sel.exists())
                .map(|v| v.into_iter().map(|s| s as usize - 1).collect())
                .map_err(|_| Reply::bad("Error in IMAP command: Invalid messageset."))
        }
    }

    /// Current store metadata of the given view indexes; messages expunged meanwhile are
    /// left out (compare lengths to notice).
    pub(super) fn targets<S: MailStore>(
        &self,
        store: &S,
        indices: &[usize],
    ) -> Vec<Target<S::Body>> {
        let Some(sel) = self.selected() else {
            return Vec::new();
        };
        let account = self.account.as_deref().unwrap_or("");
        store
            .with_mailbox(account, &sel.name, |ix| {
                let msgs = ix.messages();
                indices
                    .iter()
                    .filter(|&&i| !sel.gone.get(i).copied().unwrap_or(true))
                    .filter_map(|&i| {
                        let uid = sel.uids[i];
                        let j = msgs.binary_search_by_key(&uid, |m| m.uid()).ok()?;
                        let m = &msgs[j];
                        Some(Target {
                            idx: i,
                            uid,
                            flags: m.flags(),
                            modseq: m.modseq(),
                            size: m.size(),
                            date: m.internal_date(),
                            body: m.body(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Announces keywords the client has not been told about yet (`* FLAGS`), so flag lists
    /// that follow only use known names.
    pub(super) fn refresh_keywords<S: MailStore>(&mut self, store: &S) {
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        let account = self.account.as_deref().unwrap_or("");
        let kw = store.with_mailbox(account, &sel.name, |ix| {
            (ix.keywords() != sel.keywords.as_slice()).then(|| ix.keywords().to_vec())
        });
        if let Some(Some(kw)) = kw {
            sel.keywords = kw;
            sel.write_flags(&mut self.output);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store<S: MailStore>(
        &mut self,
        store: &S,
        uid: bool,
        set: &SequenceSet<'_>,
        unchanged_since: Option<u64>,
        op: StoreOp,
        silent: bool,
        flag_list: &[Flag<'_>],
    ) -> Reply {
        let update = match flag_update(flag_list) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let indices = match self.resolve(set, uid) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let Some(sel) = self.selected() else {
            return Reply::bad("No mailbox selected.");
        };
        if sel.read_only {
            // As Dovecot: a plain STORE is ignored, a conditional one fails.
            return if unchanged_since.is_some() {
                Reply::no("CONDSTORE failed: Mailbox is read-only.")
            } else {
                Reply::ok("Store ignored with read-only mailbox.")
            };
        }
        let name = sel.name.clone();
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let account = self.account_name_ref().to_string();
        let targets = self.targets(store, &indices);
        let uids: Vec<u32> = targets.iter().map(|t| t.uid).collect();
        let op = match op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let outcome = match store
            .store_flags(&account, &name, &uids, op, &update, unchanged_since)
            .await
        {
            Ok(o) => o,
            Err(e) => return store_error(&e, "[NONEXISTENT] Mailbox doesn't exist."),
        };
        self.refresh_keywords(store);
        let after = self.targets(store, &indices);
        let mut failed = outcome.modified_since_failed.clone();
        failed.sort_unstable();
        let opts = SyncOpts {
            allow_expunge: false,
            with_uid: uid,
            condstore: self.enabled.condstore,
            rev2: self.enabled.rev2,
        };
        let State::Selected(sel) = &mut self.state else {
            return Reply::bad("No mailbox selected.");
        };
        for t in &after {
            if failed.binary_search(&t.uid).is_ok() {
                continue;
            }
            let modseq_changed = sel.modseqs[t.idx] != t.modseq;
            sel.flags[t.idx] = t.flags;
            sel.modseqs[t.idx] = t.modseq;
            if !silent {
                sel.write_flags_fetch(&mut self.output, t.idx, opts);
            } else if opts.condstore && modseq_changed {
                // RFC 7162 §3.2: .SILENT drops FLAGS, not the new MODSEQ.
                sel.write_modseq_fetch(&mut self.output, t.idx, opts);
            }
        }
        if failed.is_empty() {
            return Reply::ok("Store completed.");
        }
        let ids: Vec<u32> = if uid {
            failed
        } else {
            failed
                .iter()
                .filter_map(|u| sel.index_of(*u).map(|i| i as u32 + 1))
                .collect()
        };
        let mut set = Vec::new();
        write_compact(&mut set, &ids);
        Reply::ok(format!(
            "[MODIFIED {}] Conditional STORE failed.",
            String::from_utf8_lossy(&set)
        ))
    }

    fn account_name_ref(&self) -> &str {
        self.account.as_deref().unwrap_or("")
    }

    /// Evaluates `criteria` over the given view indexes: (index, UID, MODSEQ) of the
    /// messages that match, ascending. Messages expunged meanwhile are left out.
    pub(super) async fn evaluate<S: MailStore>(
        &self,
        store: &S,
        criteria: &SearchKey<'_>,
        indices: &[usize],
    ) -> Result<Vec<(usize, u32, u64)>, Reply> {
        let Some(sel) = self.selected() else {
            return Err(Reply::bad("No mailbox selected."));
        };
        let max_seq = sel.exists();
        let max_uid = sel.uids.last().copied().unwrap_or(0);
        let targets = self.targets(store, indices);
        let needs_body = criteria.needs_body();
        let mut matched = Vec::new();
        for t in &targets {
            let body = if needs_body {
                match store.read_body(t.body).await {
                    Ok(b) => Some(b),
                    Err(e) => return Err(store_error(&e, "[EXPUNGEISSUED] Message was expunged.")),
                }
            } else {
                None
            };
            let recent = !self.enabled.rev2 && sel.is_recent(t.uid);
            let ctx = MessageContext {
                seq: t.idx as u32 + 1,
                uid: t.uid,
                flags: t.flags,
                recent,
                modseq: t.modseq,
                size: t.size,
                internal_date: t.date,
                max_seq,
                max_uid,
                keywords: &sel.keywords,
                body: body.as_deref(),
                saved: &sel.saved,
            };
            if criteria.matches(&ctx, &MimeMatcher) {
                matched.push((t.idx, t.uid, t.modseq));
            }
        }
        Ok(matched)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn search<S: MailStore>(
        &mut self,
        store: &S,
        tag: &[u8],
        uid: bool,
        ret: Option<&[SearchReturn]>,
        charset: Option<&[u8]>,
        criteria: &SearchKey<'_>,
        criteria_raw: &[u8],
    ) -> Reply {
        let opts = ret.unwrap_or_default();
        let save = opts.contains(&SearchReturn::Save);
        let update = opts.contains(&SearchReturn::Update);
        let reply = self
            .search_inner(store, tag, uid, ret, charset, criteria, criteria_raw)
            .await;
        if save && !matches!(reply, Reply::Ok(_)) {
            // RFC 5182 §2.1: a failed SEARCH ... SAVE leaves an empty saved result.
            if let State::Selected(sel) = &mut self.state {
                sel.saved.clear();
            }
        }
        if update && !matches!(reply, Reply::Ok(_)) {
            if let State::Selected(sel) = &mut self.state {
                sel.updates.retain(|u| u.tag != tag);
            }
        }
        reply
    }

    #[allow(clippy::too_many_arguments)]
    async fn search_inner<S: MailStore>(
        &mut self,
        store: &S,
        tag: &[u8],
        uid: bool,
        ret: Option<&[SearchReturn]>,
        charset: Option<&[u8]>,
        criteria: &SearchKey<'_>,
        criteria_raw: &[u8],
    ) -> Reply {
        let extended = ret.is_some();
        let ret = ret.unwrap_or_default();
        if let Some(cs) = charset {
            if !cs.eq_ignore_ascii_case(b"UTF-8") && !cs.eq_ignore_ascii_case(b"US-ASCII") {
                // The charset list is optional (RFC 3501 §7.1); Dovecot sends none.
                return Reply::no("[BADCHARSET] Unsupported charset.");
            }
        }
        let uses_modseq = criteria.uses_modseq();
        if uses_modseq {
            self.enable_condstore();
        }
        let Some(sel) = self.selected() else {
            return Reply::bad("No mailbox selected.");
        };
        let all: Vec<usize> = (0..sel.uids.len()).collect();
        let matched = match self.evaluate(store, criteria, &all).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        let results: Vec<u32> = matched
            .iter()
            .map(|&(i, u, _)| if uid { u } else { i as u32 + 1 })
            .collect();
        let modseqs: Vec<u64> = matched.iter().map(|m| m.2).collect();
        let uids: Vec<u32> = matched.iter().map(|m| m.1).collect();

        let save = ret.contains(&SearchReturn::Save);
        let update = ret.contains(&SearchReturn::Update);
        // What the ESEARCH response shows: `RETURN ()` means ALL; SAVE and UPDATE show
        // nothing by themselves.
        let mut shown: Vec<SearchReturn> = ret
            .iter()
            .copied()
            .filter(|o| !matches!(o, SearchReturn::Save | SearchReturn::Update))
            .collect();
        if ret.is_empty() {
            shown.push(SearchReturn::All);
        }
        if save {
            let partial = shown.iter().find_map(|o| match o {
                SearchReturn::Partial(lo, hi) => Some((*lo, *hi)),
                _ => None,
            });
            let whole = shown.is_empty()
                || shown
                    .iter()
                    .any(|o| matches!(o, SearchReturn::All | SearchReturn::Count));
            // RFC 5182 §2.4: with only MIN / MAX, only those are saved.
            let mut saved: Vec<u32> = if let Some((lo, hi)) = partial {
                partial_slice(&uids, lo, hi).to_vec()
            } else if whole {
                uids.clone()
            } else {
                let mut v = Vec::new();
                if shown.contains(&SearchReturn::Min) {
                    v.extend(uids.first());
                }
                if shown.contains(&SearchReturn::Max) {
                    v.extend(uids.last());
                }
                v
            };
            saved.sort_unstable();
            saved.dedup();
            if let State::Selected(sel) = &mut self.state {
                sel.saved = saved;
            }
        }
        if update {
            if let State::Selected(sel) = &mut self.state {
                if sel.updates.len() >= MAX_UPDATES {
                    return Reply::no(format!(
                        "[NOUPDATE {}] Too many searches kept up to date.",
                        quoted_tag(tag)
                    ));
                }
                let at = update_point(sel);
                sel.updates.retain(|u| u.tag != tag);
                let mut criteria = criteria_raw.to_vec();
                criteria.extend_from_slice(b"\r\n");
                sel.updates.push(SearchUpdate {
                    tag: tag.to_vec(),
                    uid,
                    criteria,
                    results: uids.clone(),
                    computed_at: at,
                });
            }
        }

        if extended || self.enabled.rev2 {
            if shown.is_empty() && !update {
                // SAVE alone answers with nothing but the tagged OK (RFC 5182 §2.4).
                return Reply::ok("Search completed.");
            }
            write_esearch(
                &mut self.output,
                tag,
                uid,
                &shown,
                &results,
                &modseqs,
                uses_modseq,
            );
        } else {
            write_numbers(&mut self.output, "SEARCH", &results, &modseqs, uses_modseq);
        }
        Reply::ok("Search completed.")
    }

    pub(super) async fn copy_move<S: MailStore>(
        &mut self,
        store: &S,
        uid: bool,
        set: &SequenceSet<'_>,
        raw: &[u8],
        is_move: bool,
    ) -> Reply {
        let dest = match self.mailbox_arg(raw) {
            Ok(n) => n,
            Err(e) => return Reply::no(format!("[CANNOT] Invalid mailbox name: {e}.")),
        };
        let indices = match self.resolve(set, uid) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let Some(sel) = self.selected() else {
            return Reply::bad("No mailbox selected.");
        };
        if is_move && sel.read_only {
            return Reply::no("[READ-ONLY] Mailbox is read-only.");
        }
        let name = sel.name.clone();
        let account = self.account_name_ref().to_string();
        if store.with_mailbox(&account, &dest, |_| ()).is_none() {
            return Reply::no("[TRYCREATE] Mailbox doesn't exist.");
        }
        let targets = self.targets(store, &indices);
        // Like Dovecot, copy nothing when some of the messages are already gone.
        if targets.len() < indices.len() {
            return Reply::no("[EXPUNGEISSUED] Some of the requested messages no longer exist.");
        }
        let uids: Vec<u32> = targets.iter().map(|t| t.uid).collect();
        if uids.is_empty() {
            return Reply::ok("No messages found.");
        }
        if let Some(limit) = self.config.quota_bytes {
            if !is_move {
                let adding: u64 = targets.iter().map(|t| u64::from(t.size)).sum();
                let used: u64 = store.list_mailboxes(&account).iter().map(|i| i.size).sum();
                if used.saturating_add(adding) > limit {
                    return Reply::no("[OVERQUOTA] Quota exceeded.");
                }
            }
        }
        let result = if is_move {
            store.move_messages(&account, &name, &dest, &uids).await
        } else {
            store.copy(&account, &name, &dest, &uids).await
        };
        let r = match result {
            Ok(r) => r,
            Err(e) => return store_error(&e, "[TRYCREATE] Mailbox doesn't exist."),
        };
        let mut code = String::new();
        if !r.pairs.is_empty() {
            let (src, dst): (Vec<u32>, Vec<u32>) = r.pairs.iter().copied().unzip();
            let (mut s, mut d) = (Vec::new(), Vec::new());
            write_compact(&mut s, &src);
            write_compact(&mut d, &dst);
            code = format!(
                "[COPYUID {} {} {}] ",
                r.uidvalidity,
                String::from_utf8_lossy(&s),
                String::from_utf8_lossy(&d)
            );
        }
        if is_move {
            self.untagged(&format!("OK {code}Moved UIDs."));
            Reply::ok("Move completed.")
        } else {
            Reply::ok(format!("{code}Copy completed."))
        }
    }

    /// UIDs with `\Deleted` in the store, limited to `within` if given.
    fn deleted_uids<S: MailStore>(&self, store: &S, within: Option<&SequenceSet<'_>>) -> Vec<u32> {
        let Some(sel) = self.selected() else {
            return Vec::new();
        };
        let all: Vec<usize> = (0..sel.uids.len()).collect();
        let max_uid = sel.uids.last().copied().unwrap_or(0);
        self.targets(store, &all)
            .into_iter()
            .filter(|t| t.flags & flags::DELETED != 0)
            .filter(|t| within.is_none_or(|s| s.contains(t.uid, max_uid)))
            .map(|t| t.uid)
            .collect()
    }

    pub(super) async fn expunge<S: MailStore>(
        &mut self,
        store: &S,
        within: Option<&SequenceSet<'_>>,
    ) -> Reply {
        let Some(sel) = self.selected() else {
            return Reply::bad("No mailbox selected.");
        };
        if sel.read_only {
            // Silently ignored, as Dovecot does.
            return Reply::ok("Expunge completed.");
        }
        let name = sel.name.clone();
        let account = self.account_name_ref().to_string();
        let uids = self.deleted_uids(store, within);
        let mut highest = self.selected().map(|s| s.highest_modseq).unwrap_or(0);
        if !uids.is_empty() {
            match store.expunge(&account, &name, &uids).await {
                Ok(h) => highest = h,
                Err(e) => return store_error(&e, "[NONEXISTENT] Mailbox doesn't exist."),
            }
        }
        if self.enabled.condstore {
            Reply::ok(format!("[HIGHESTMODSEQ {highest}] Expunge completed."))
        } else {
            Reply::ok("Expunge completed.")
        }
    }

    pub(super) async fn close<S: MailStore>(&mut self, store: &S) -> Reply {
        let Some(sel) = self.selected() else {
            return Reply::bad("No mailbox selected.");
        };
        if !sel.read_only {
            let name = sel.name.clone();
            let account = self.account_name_ref().to_string();
            let uids = self.deleted_uids(store, None);
            if !uids.is_empty() {
                if let Err(e) = store.expunge(&account, &name, &uids).await {
                    self.state = State::Authenticated;
                    return store_error(&e, "[NONEXISTENT] Mailbox doesn't exist.");
                }
            }
        }
        self.state = State::Authenticated;
        Reply::ok("Close completed.")
    }
}

/// Most `SEARCH RETURN (UPDATE)` a session may keep at once.
const MAX_UPDATES: usize = 16;

/// The results at 1-based positions `lo..=hi` (RFC 5267 PARTIAL), clipped to what exists.
fn partial_slice(results: &[u32], lo: u32, hi: u32) -> &[u32] {
    let start = (lo as usize).saturating_sub(1).min(results.len());
    let end = (hi as usize).min(results.len()).max(start);
    &results[start..end]
}

/// A tag as an IMAP quoted string (for response codes).
pub(super) fn quoted_tag(tag: &[u8]) -> String {
    let mut out = Vec::new();
    response::string(&mut out, tag, false);
    String::from_utf8_lossy(&out).into_owned()
}

/// The mailbox state an update search's result corresponds to.
pub(super) fn update_point(sel: &Selected) -> (u64, u32, usize) {
    (
        sel.highest_modseq,
        sel.uidnext,
        sel.uids.len() - sel.gone_count,
    )
}

/// Writes `* SEARCH` or `* SORT` with `results`, and with CONDSTORE the highest of `modseqs`
/// (RFC 7162 §3.1.5).
pub(super) fn write_numbers(
    out: &mut Vec<u8>,
    name: &str,
    results: &[u32],
    modseqs: &[u64],
    uses_modseq: bool,
) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(name.as_bytes());
    for r in results {
        out.push(b' ');
        response::number(out, r);
    }
    if let (true, Some(top)) = (uses_modseq, modseqs.iter().copied().max()) {
        out.extend_from_slice(format!(" (MODSEQ {top})").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an ESEARCH response (RFC 4731) for SEARCH or SORT: `results` in the order to report
/// (MIN and MAX are its first and last), `modseqs` alongside.
pub(super) fn write_esearch(
    out: &mut Vec<u8>,
    tag: &[u8],
    uid: bool,
    shown: &[SearchReturn],
    results: &[u32],
    modseqs: &[u64],
    uses_modseq: bool,
) {
    out.extend_from_slice(b"* ESEARCH (TAG ");
    response::string(out, tag, false);
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    for o in shown {
        match o {
            SearchReturn::Min => {
                if let Some(m) = results.first() {
                    out.extend_from_slice(format!(" MIN {m}").as_bytes());
                }
            }
            SearchReturn::Max => {
                if let Some(m) = results.last() {
                    out.extend_from_slice(format!(" MAX {m}").as_bytes());
                }
            }
            SearchReturn::Count => {
                out.extend_from_slice(format!(" COUNT {}", results.len()).as_bytes());
            }
            SearchReturn::All => {
                if !results.is_empty() {
                    out.extend_from_slice(b" ALL ");
                    write_compact(out, results);
                }
            }
            SearchReturn::Partial(lo, hi) => {
                out.extend_from_slice(format!(" PARTIAL ({lo}:{hi} ").as_bytes());
                let part = partial_slice(results, *lo, *hi);
                if part.is_empty() {
                    out.extend_from_slice(b"NIL");
                } else {
                    write_compact(out, part);
                }
                out.push(b')');
            }
            SearchReturn::Save | SearchReturn::Update => {}
        }
    }
    // The MODSEQ is the highest of the messages reported: all of them for ALL or
    // COUNT, only the MIN / MAX ones otherwise (RFC 7162 §3.1.5).
    let whole = shown
        .iter()
        .any(|o| matches!(o, SearchReturn::All | SearchReturn::Count));
    let top_modseq = if whole {
        modseqs.iter().copied().max()
    } else {
        let mut m = None;
        if shown.contains(&SearchReturn::Min) {
            m = modseqs.first().copied();
        }
        if shown.contains(&SearchReturn::Max) {
            m = m.max(modseqs.last().copied());
        }
        m
    };
    if let (true, Some(top)) = (uses_modseq && !results.is_empty(), top_modseq) {
        out.extend_from_slice(format!(" MODSEQ {top}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

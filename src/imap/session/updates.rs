//! Searches kept up to date (RFC 5267 CONTEXT=SEARCH, `SEARCH RETURN (UPDATE)`): after each
//! command, messages that joined or left a result are reported as
//! `* ESEARCH (TAG "t") [UID] ADDTO (pos set)` / `REMOVEFROM (pos set)`.
//!
//! Messages being expunged leave the result *before* the sync writes their EXPUNGEs, while
//! their sequence numbers still hold; new messages join it *after* their EXISTS.

use super::messages::{quoted_tag, update_point};
use super::{Reply, Session, State};
use crate::imap::lexer::Cursor;
use crate::imap::parser::search_criteria;
use crate::imap::sequence::write_compact;
use crate::imap::store::{MailStore, MailboxView, MessageView};
use crate::imap::view::Selected;

impl Session {
    /// Before the sync that reports expunges (`allow_expunge`): REMOVEFROM for result
    /// messages the store no longer has.
    pub(super) fn updates_before_sync<S: MailStore>(&mut self, store: &S, allow_expunge: bool) {
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if sel.updates.is_empty() || !allow_expunge {
            return;
        }
        let account = self.account.as_deref().unwrap_or("");
        let Some(live) = store.with_mailbox(account, &sel.name, |ix| {
            ix.messages()
                .iter()
                .map(MessageView::uid)
                .collect::<Vec<u32>>()
        }) else {
            return;
        };
        let sel: &mut Selected = sel;
        for i in 0..sel.updates.len() {
            let gone: Vec<u32> = sel.updates[i]
                .results
                .iter()
                .copied()
                .filter(|u| live.binary_search(u).is_err())
                .collect();
            if gone.is_empty() {
                continue;
            }
            sel.updates[i]
                .results
                .retain(|u| live.binary_search(u).is_ok());
            let ids: Vec<u32> = if sel.updates[i].uid {
                gone
            } else {
                gone.iter()
                    .filter_map(|&u| sel.index_of(u).map(|x| x as u32 + 1))
                    .collect()
            };
            write_update(
                &mut self.output,
                &sel.updates[i].tag,
                sel.updates[i].uid,
                "REMOVEFROM",
                0,
                &ids,
            );
        }
    }

    /// After the sync: evaluates each kept search again if the mailbox changed and reports
    /// what joined (ADDTO) or left (REMOVEFROM) its result.
    pub(super) async fn updates_after_sync<S: MailStore>(&mut self, store: &S) {
        let Some(sel) = self.selected() else {
            return;
        };
        if sel.updates.is_empty() {
            return;
        }
        let at = update_point(sel);
        // Messages expunged but not yet reported keep their place in results.
        let live: Vec<usize> = (0..sel.uids.len()).filter(|&i| !sel.gone[i]).collect();
        let pending_gone: Vec<u32> = (0..sel.uids.len())
            .filter(|&i| sel.gone[i])
            .map(|i| sel.uids[i])
            .collect();
        let todo: Vec<(usize, Vec<u8>)> = sel
            .updates
            .iter()
            .enumerate()
            .filter(|(_, u)| u.computed_at != at)
            .map(|(i, u)| (i, u.criteria.clone()))
            .collect();
        for (i, raw) in todo {
            let mut c = Cursor::new(&raw);
            let Ok(key) = search_criteria(&mut c) else {
                continue;
            };
            let matched = match self.evaluate(store, &key, &live).await {
                Ok(m) => m,
                Err(_) => continue,
            };
            let State::Selected(sel) = &mut self.state else {
                return;
            };
            let Some(upd) = sel.updates.get(i) else {
                continue;
            };
            let mut now: Vec<u32> = matched.iter().map(|m| m.1).collect();
            now.extend(
                pending_gone
                    .iter()
                    .filter(|u| upd.results.binary_search(u).is_ok()),
            );
            now.sort_unstable();
            now.dedup();
            let removed: Vec<u32> = upd
                .results
                .iter()
                .copied()
                .filter(|u| now.binary_search(u).is_err())
                .collect();
            let added: Vec<u32> = now
                .iter()
                .copied()
                .filter(|u| upd.results.binary_search(u).is_err())
                .collect();
            let (tag, uid) = (upd.tag.clone(), upd.uid);
            let ids = |uids: &[u32], sel: &Selected| -> Vec<u32> {
                if uid {
                    uids.to_vec()
                } else {
                    uids.iter()
                        .filter_map(|&u| sel.index_of(u).map(|x| x as u32 + 1))
                        .collect()
                }
            };
            if !removed.is_empty() {
                let list = ids(&removed, sel);
                write_update(&mut self.output, &tag, uid, "REMOVEFROM", 0, &list);
            }
            if !added.is_empty() {
                // Position (1-based) in the new result of the first message added.
                let pos = now.binary_search(&added[0]).map_or(0, |p| p as u32 + 1);
                let list = ids(&added, sel);
                write_update(&mut self.output, &tag, uid, "ADDTO", pos, &list);
            }
            if let Some(upd) = sel.updates.get_mut(i) {
                upd.results = now;
                upd.computed_at = at;
            }
        }
    }

    /// CANCELUPDATE: stops keeping these searches up to date.
    pub(super) fn cancel_update(&mut self, tags: &[std::borrow::Cow<'_, [u8]>]) -> Reply {
        let State::Selected(sel) = &mut self.state else {
            return Reply::bad("No mailbox selected.");
        };
        if let Some(t) = tags
            .iter()
            .find(|t| !sel.updates.iter().any(|u| u.tag == t.as_ref()))
        {
            // NO, as Dovecot answers (RFC 5267 does not say).
            return Reply::no(format!("Unknown search tag {}.", quoted_tag(t)));
        }
        sel.updates
            .retain(|u| !tags.iter().any(|t| u.tag == t.as_ref()));
        Reply::ok("Cancelupdate completed.")
    }
}

/// `* ESEARCH (TAG "t") [UID] ADDTO|REMOVEFROM (pos set)`.
fn write_update(out: &mut Vec<u8>, tag: &[u8], uid: bool, what: &str, pos: u32, ids: &[u32]) {
    if ids.is_empty() {
        return;
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    out.extend_from_slice(b"* ESEARCH (TAG ");
    out.extend_from_slice(quoted_tag(tag).as_bytes());
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    out.extend_from_slice(format!(" {what} ({pos} ").as_bytes());
    write_compact(out, &sorted);
    out.extend_from_slice(b")\r\n");
}

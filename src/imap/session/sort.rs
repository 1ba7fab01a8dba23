//! SORT and UID SORT (RFC 5256) with SORT=DISPLAY keys (RFC 5957) and ESORT's RETURN options
//! (RFC 5267), and THREAD / UID THREAD (RFC 5256 §4): the search, then the order.

use super::mailboxes::store_error;
use super::messages::{quoted_tag, write_esearch, write_numbers, Target};
use super::{Reply, Session, State};
use crate::imap::mime::SortHeaders;
use crate::imap::parser::SearchReturn;
use crate::imap::search::SearchKey;
use crate::imap::sort::{self, SortCriterion, SortItem};
use crate::imap::store::MailStore;
use crate::imap::thread::{self, Algorithm, ThreadMsg};
use std::rc::Rc;

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sort<S: MailStore>(
        &mut self,
        store: &S,
        tag: &[u8],
        uid: bool,
        ret: Option<&[SearchReturn]>,
        criteria: &[SortCriterion],
        charset: &[u8],
        keys: &SearchKey<'_>,
    ) -> Reply {
        if ret.is_some_and(|r| r.contains(&SearchReturn::Update)) {
            // CONTEXT=SORT is not advertised.
            return Reply::bad(format!(
                "[NOUPDATE {}] SORT results are not kept up to date.",
                quoted_tag(tag)
            ));
        }
        let uses_modseq = keys.uses_modseq();
        let targets = match self.matching(store, charset, keys).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let needs_header = criteria.iter().any(|c| c.key.needs_header());
        let mut items = Vec::with_capacity(targets.len());
        for t in targets {
            let header = if needs_header {
                match headers(store, t.body).await {
                    Ok(h) => Some(h),
                    Err(r) => return r,
                }
            } else {
                None
            };
            items.push(SortItem {
                seq: t.idx as u32 + 1,
                uid: t.uid,
                modseq: t.modseq,
                values: sort::values(criteria, header.as_deref(), t.date, t.size),
            });
        }
        sort::sort(criteria, &mut items);
        let results: Vec<u32> = items
            .iter()
            .map(|i| if uid { i.uid } else { i.seq })
            .collect();
        let modseqs: Vec<u64> = items.iter().map(|i| i.modseq).collect();
        match ret {
            Some(opts) => {
                let save = opts.contains(&SearchReturn::Save);
                if save {
                    let mut saved: Vec<u32> = items.iter().map(|i| i.uid).collect();
                    saved.sort_unstable();
                    if let State::Selected(sel) = &mut self.state {
                        sel.saved = saved;
                    }
                }
                let mut shown: Vec<SearchReturn> = opts
                    .iter()
                    .copied()
                    .filter(|o| !matches!(o, SearchReturn::Save))
                    .collect();
                if opts.is_empty() {
                    shown.push(SearchReturn::All);
                }
                if !shown.is_empty() {
                    write_esearch(
                        &mut self.output,
                        tag,
                        uid,
                        &shown,
                        &results,
                        &modseqs,
                        uses_modseq,
                    );
                }
            }
            None => write_numbers(&mut self.output, "SORT", &results, &modseqs, uses_modseq),
        }
        Reply::ok("Sort completed.")
    }

    pub(super) async fn thread<S: MailStore>(
        &mut self,
        store: &S,
        uid: bool,
        algorithm: Algorithm,
        charset: &[u8],
        keys: &SearchKey<'_>,
    ) -> Reply {
        let targets = match self.matching(store, charset, keys).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let mut msgs = Vec::with_capacity(targets.len());
        for t in targets {
            let h = match headers(store, t.body).await {
                Ok(h) => h,
                Err(r) => return r,
            };
            msgs.push(ThreadMsg {
                seq: t.idx as u32 + 1,
                id: if uid { t.uid } else { t.idx as u32 + 1 },
                date: h.date.unwrap_or(t.date),
                subject: h.subject.clone(),
                message_id: h.message_id.clone(),
                references: h.references.clone(),
            });
        }
        // `"THREAD" [SP 1*thread-list]`: no space when nothing matched.
        self.output.extend_from_slice(b"* THREAD");
        let threads = thread::thread(algorithm, &msgs);
        if !threads.is_empty() {
            self.output.push(b' ');
            thread::write(&mut self.output, &threads);
        }
        self.output.extend_from_slice(b"\r\n");
        Reply::ok("Thread completed.")
    }

    /// What SORT and THREAD start with: the charset check, then the messages `keys` match, in
    /// mailbox order.
    async fn matching<S: MailStore>(
        &mut self,
        store: &S,
        charset: &[u8],
        keys: &SearchKey<'_>,
    ) -> Result<Vec<Target<S::Body>>, Reply> {
        if !charset.eq_ignore_ascii_case(b"UTF-8") && !charset.eq_ignore_ascii_case(b"US-ASCII") {
            return Err(Reply::no(
                "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset.",
            ));
        }
        if keys.uses_modseq() {
            self.enable_condstore();
        }
        let Some(sel) = self.selected() else {
            return Err(Reply::bad("No mailbox selected."));
        };
        let all: Vec<usize> = (0..sel.uids.len()).collect();
        let matched = self.evaluate(store, keys, &all).await?;
        let indices: Vec<usize> = matched.iter().map(|m| m.0).collect();
        Ok(self.targets(store, &indices))
    }
}

/// The header fields a message is sorted and threaded by.
async fn headers<S: MailStore>(store: &S, body: S::Body) -> Result<Rc<SortHeaders>, Reply> {
    store
        .sort_headers(body)
        .await
        .map_err(|e| store_error(&e, "[EXPUNGEISSUED] Message was expunged."))
}

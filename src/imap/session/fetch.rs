//! FETCH / UID FETCH: resolves the messages, sets `\Seen` for non-PEEK body items, reads each
//! body once and renders the requested items.

use std::borrow::Cow;

use super::mailboxes::store_error;
use super::messages::Target;
use super::{Mode, Reply, Session, State};
use crate::imap::mime;
use crate::imap::parser::FetchItem;
use crate::imap::response;
use crate::imap::section::{Partial, Section, SectionText};
use crate::imap::sequence::SequenceSet;
use crate::imap::store::{flags, FlagOp, FlagUpdate, MailStore};

/// A FETCH that cannot be answered at all.
enum FetchError {
    /// BINARY of a part whose Content-Transfer-Encoding is unknown (RFC 3516).
    UnknownCte,
}

fn needs_body(item: &FetchItem) -> bool {
    !matches!(
        item,
        FetchItem::Flags
            | FetchItem::InternalDate
            | FetchItem::Rfc822Size
            | FetchItem::Uid
            | FetchItem::ModSeq
    )
}

fn sets_seen(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Rfc822
            | FetchItem::Rfc822Text
            | FetchItem::BodySection { peek: false, .. }
            | FetchItem::Binary { peek: false, .. }
    )
}

/// `<origin.length>` applied to `data`.
fn apply_partial(data: &[u8], p: Option<Partial>) -> &[u8] {
    match p {
        None => data,
        Some(p) => {
            let start = (p.origin as usize).min(data.len());
            let end = start.saturating_add(p.length as usize).min(data.len());
            &data[start..end]
        }
    }
}

fn write_part(out: &mut Vec<u8>, part: &[u32]) {
    for (i, n) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        response::number(out, n);
    }
}

/// Writes `[section]` as echoed in responses.
fn write_section(out: &mut Vec<u8>, s: &Section) {
    out.push(b'[');
    write_part(out, &s.part);
    if let Some(text) = &s.text {
        if !s.part.is_empty() {
            out.push(b'.');
        }
        match text {
            SectionText::Header => out.extend_from_slice(b"HEADER"),
            SectionText::Text => out.extend_from_slice(b"TEXT"),
            SectionText::Mime => out.extend_from_slice(b"MIME"),
            SectionText::HeaderFields { not, fields } => {
                out.extend_from_slice(if *not {
                    b"HEADER.FIELDS.NOT ("
                } else {
                    b"HEADER.FIELDS ("
                });
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    response::astring(out, f.as_bytes(), false);
                }
                out.push(b')');
            }
        }
    }
    out.push(b']');
}

fn write_origin(out: &mut Vec<u8>, p: Option<Partial>) {
    if let Some(p) = p {
        out.push(b'<');
        response::number(out, p.origin);
        out.push(b'>');
    }
}

/// The bytes of `section` of `msg`; `None` if the part does not exist.
fn section_bytes<'m>(msg: &'m [u8], section: &Section) -> Option<Cow<'m, [u8]>> {
    if section.part.is_empty() && section.text.is_none() {
        Some(Cow::Borrowed(msg))
    } else {
        mime::section(msg, section).map(Cow::Owned)
    }
}

/// BINARY content of a section: decoded for a part, as-is for HEADER / TEXT / MIME (headers
/// carry no transfer encoding); `None` if the part does not exist.
fn binary_bytes<'m>(msg: &'m [u8], section: &Section) -> Result<Option<Cow<'m, [u8]>>, FetchError> {
    if section.text.is_some() {
        return Ok(section_bytes(msg, section));
    }
    if section.part.is_empty() {
        return Ok(Some(Cow::Borrowed(msg)));
    }
    match mime::binary_section(msg, &section.part) {
        Ok(d) => Ok(Some(Cow::Owned(d))),
        Err(mime::BinaryError::UnknownCte(_)) => Err(FetchError::UnknownCte),
        Err(_) => Ok(None),
    }
}

struct ItemCtx<'a> {
    msg: &'a [u8],
    keywords: &'a [String],
    recent: bool,
}

/// Writes one item (without a leading space); true if it wrote FLAGS.
fn render_item<B>(
    line: &mut Vec<u8>,
    item: &FetchItem,
    t: &Target<B>,
    cx: &ItemCtx<'_>,
) -> Result<bool, FetchError> {
    match item {
        FetchItem::Flags => {
            line.extend_from_slice(b"FLAGS ");
            response::flag_list(line, t.flags, cx.keywords, cx.recent);
            return Ok(true);
        }
        FetchItem::Uid => {
            line.extend_from_slice(b"UID ");
            response::number(line, t.uid);
        }
        FetchItem::InternalDate => {
            line.extend_from_slice(b"INTERNALDATE ");
            response::date_time(line, t.date);
        }
        FetchItem::Rfc822Size => {
            line.extend_from_slice(b"RFC822.SIZE ");
            response::number(line, t.size);
        }
        FetchItem::ModSeq => {
            line.extend_from_slice(b"MODSEQ (");
            response::number(line, t.modseq);
            line.push(b')');
        }
        FetchItem::Envelope => {
            line.extend_from_slice(b"ENVELOPE ");
            line.extend_from_slice(&mime::envelope(cx.msg));
        }
        FetchItem::Body => {
            line.extend_from_slice(b"BODY ");
            line.extend_from_slice(&mime::body_structure(cx.msg, false));
        }
        FetchItem::BodyStructure => {
            line.extend_from_slice(b"BODYSTRUCTURE ");
            line.extend_from_slice(&mime::body_structure(cx.msg, true));
        }
        FetchItem::Rfc822 => {
            line.extend_from_slice(b"RFC822 ");
            response::literal(line, cx.msg);
        }
        FetchItem::Rfc822Header | FetchItem::Rfc822Text => {
            let (label, text): (&[u8], _) = if matches!(item, FetchItem::Rfc822Header) {
                (b"RFC822.HEADER ", SectionText::Header)
            } else {
                (b"RFC822.TEXT ", SectionText::Text)
            };
            line.extend_from_slice(label);
            let s = Section {
                part: Vec::new(),
                text: Some(text),
            };
            // A part that does not exist is empty (as Dovecot answers), not NIL.
            let d = section_bytes(cx.msg, &s).unwrap_or_default();
            response::literal(line, &d);
        }
        FetchItem::BodySection {
            section, partial, ..
        } => {
            line.extend_from_slice(b"BODY");
            write_section(line, section);
            write_origin(line, *partial);
            line.push(b' ');
            let d = section_bytes(cx.msg, section).unwrap_or_default();
            response::literal(line, apply_partial(&d, *partial));
        }
        FetchItem::Binary {
            section, partial, ..
        } => {
            line.extend_from_slice(b"BINARY");
            write_section(line, section);
            write_origin(line, *partial);
            line.push(b' ');
            match binary_bytes(cx.msg, section)? {
                Some(d) => response::literal8(line, apply_partial(&d, *partial)),
                None => response::literal(line, b""),
            }
        }
        FetchItem::BinarySize { section } => {
            line.extend_from_slice(b"BINARY.SIZE");
            write_section(line, section);
            line.push(b' ');
            let size = binary_bytes(cx.msg, section)?.map_or(0, |d| d.len());
            response::number(line, size);
        }
    }
    Ok(false)
}

/// Messages handled per store lookup while answering a FETCH.
const BATCH: usize = 64;
/// Output size at which a FETCH pauses so the driver can write it out.
pub(super) const FLUSH_AT: usize = 256 * 1024;

/// A FETCH in progress: it pauses whenever the output grows past [`FLUSH_AT`], so a
/// `FETCH 1:* BODY[]` never holds more than a batch of message bodies in memory.
#[derive(Debug)]
pub(super) struct FetchJob {
    /// The command's tag.
    pub tag: Vec<u8>,
    /// UID FETCH.
    pub uid: bool,
    items: Vec<FetchItem>,
    changed_since: Option<u64>,
    /// View indexes to answer, ascending.
    indices: Vec<usize>,
    /// How many of `indices` are done.
    pos: usize,
    /// Some requested messages were expunged meanwhile.
    expunged: bool,
    /// UIDs this FETCH set `\Seen` on and has not reported yet.
    seen_now: Vec<u32>,
    /// The next body did not fit in the output room, so the FETCH pauses for its output to be
    /// written; if the body still does not fit after that, it is refused.
    waited_for_room: bool,
}

impl Session {
    /// Starts a FETCH; `None` when it paused (the job is in `Mode::Fetching`).
    pub(super) async fn fetch<S: MailStore>(
        &mut self,
        store: &S,
        tag: &[u8],
        uid: bool,
        set: &SequenceSet<'_>,
        requested: &[FetchItem],
        changed_since: Option<u64>,
    ) -> Option<Reply> {
        let indices = match self.resolve(set, uid) {
            Ok(i) => i,
            Err(r) => return Some(r),
        };
        let mut items: Vec<FetchItem> = Vec::with_capacity(requested.len() + 1);
        for it in requested {
            if !items.contains(it) {
                items.push(it.clone());
            }
        }
        // UID FETCH always returns UID, first.
        if uid {
            items.retain(|i| *i != FetchItem::Uid);
            items.insert(0, FetchItem::Uid);
        }
        if changed_since.is_some() || items.contains(&FetchItem::ModSeq) {
            self.enable_condstore();
        }
        if changed_since.is_some() && !items.contains(&FetchItem::ModSeq) {
            items.push(FetchItem::ModSeq);
        }
        self.refresh_keywords(store);
        let job = FetchJob {
            tag: tag.to_vec(),
            uid,
            items,
            changed_since,
            indices,
            pos: 0,
            expunged: false,
            seen_now: Vec::new(),
            waited_for_room: false,
        };
        self.run_fetch(store, job).await
    }

    /// Continues a FETCH; `None` when it paused again (the job is back in `Mode::Fetching`).
    pub(super) async fn run_fetch<S: MailStore>(
        &mut self,
        store: &S,
        mut job: FetchJob,
    ) -> Option<Reply> {
        while job.pos < job.indices.len() {
            let end = (job.pos + BATCH).min(job.indices.len());
            let batch = job.indices[job.pos..end].to_vec();
            match self.fetch_batch(store, &mut job, &batch).await {
                Ok(done) => job.pos += done,
                Err(r) => return Some(r),
            }
            // A batch that stopped for room returns with `waited_for_room` set; any body that
            // fits clears it.
            if (job.waited_for_room || self.output.len() >= FLUSH_AT) && job.pos < job.indices.len()
            {
                self.mode = Mode::Fetching(Box::new(job));
                return None;
            }
        }
        Some(if job.expunged {
            Reply::no("[EXPUNGEISSUED] Some of the requested messages no longer exist.")
        } else {
            Reply::ok("Fetch completed.")
        })
    }

    /// Answers `indices` (a slice of the job's), stopping early once the output is large;
    /// returns how many of them are done.
    async fn fetch_batch<S: MailStore>(
        &mut self,
        store: &S,
        job: &mut FetchJob,
        indices: &[usize],
    ) -> Result<usize, Reply> {
        let Some(sel) = self.selected() else {
            return Err(Reply::bad("No mailbox selected."));
        };
        let read_only = sel.read_only;
        let name = sel.name.clone();
        let account = self.account.clone().unwrap_or_default();
        let items = &job.items;
        let body_needed = items.iter().any(needs_body);
        let mark_seen = !read_only && items.iter().any(sets_seen);

        let mut targets = self.targets(store, indices);
        // Messages expunged elsewhere but not yet reported to this client keep their sequence
        // numbers; what the view knows of them (UID, flags, MODSEQ) can still be returned.
        let view_only = items
            .iter()
            .all(|i| matches!(i, FetchItem::Uid | FetchItem::Flags | FetchItem::ModSeq));
        let gone: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|i| targets.binary_search_by_key(i, |t| t.idx).is_err())
            .collect();
        // UID FETCH ignores UIDs that no longer exist (RFC 3501 §6.4.8); only a FETCH by
        // sequence number of an expunged message is answered NO [EXPUNGEISSUED].
        job.expunged |= !job.uid && !gone.is_empty() && !view_only;
        if let Some(cs) = job.changed_since {
            targets.retain(|t| t.modseq > cs);
        }
        if mark_seen {
            let unseen: Vec<u32> = targets
                .iter()
                .filter(|t| t.flags & flags::SEEN == 0)
                .map(|t| t.uid)
                .collect();
            if !unseen.is_empty() {
                let up = FlagUpdate {
                    system: flags::SEEN as u8,
                    keywords: Vec::new(),
                };
                match store
                    .store_flags(&account, &name, &unseen, FlagOp::Add, &up, None)
                    .await
                {
                    Ok(out) => {
                        for (u, ms) in out.updated {
                            if let Some(t) = targets.iter_mut().find(|t| t.uid == u) {
                                t.flags |= flags::SEEN;
                                t.modseq = ms;
                            }
                            job.seen_now.push(u);
                        }
                    }
                    Err(e) => return Err(store_error(&e, "[NONEXISTENT] Mailbox doesn't exist.")),
                }
            }
        }
        let condstore = self.enabled.condstore;
        let rev2 = self.enabled.rev2;
        let keywords = self
            .selected()
            .map(|s| s.keywords.clone())
            .unwrap_or_default();
        let has_flags = items.contains(&FetchItem::Flags);
        let has_modseq = items.contains(&FetchItem::ModSeq);
        let mut line = Vec::new();
        if view_only && !gone.is_empty() {
            self.fetch_gone(job, &gone, &keywords);
        }
        for t in &targets {
            if body_needed && !store.claim_output(self.output.len() + t.size as usize) {
                if self.output.is_empty() || job.waited_for_room {
                    // Our own output is written and the body still does not fit: the
                    // executor's output memory is held by other sessions (clients that stopped
                    // reading). RFC 9051 §7.1: UNAVAILABLE is temporary.
                    return Err(Reply::no(
                        "[UNAVAILABLE] Server is short of memory, try again later.",
                    ));
                }
                job.waited_for_room = true;
                return Ok(indices.partition_point(|&i| i < t.idx));
            }
            job.waited_for_room = false;
            let body = if body_needed {
                match store.read_body(t.body).await {
                    Ok(b) => Some(b),
                    Err(e) => return Err(store_error(&e, "[EXPUNGEISSUED] Message was expunged.")),
                }
            } else {
                None
            };
            let recent = !rev2 && self.selected().is_some_and(|s| s.is_recent(t.uid));
            let cx = ItemCtx {
                msg: body.as_deref().unwrap_or(b""),
                keywords: &keywords,
                recent,
            };
            line.clear();
            line.extend_from_slice(b"* ");
            response::number(&mut line, t.idx + 1);
            line.extend_from_slice(b" FETCH (");
            let mut wrote_flags = false;
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    line.push(b' ');
                }
                match render_item(&mut line, item, t, &cx) {
                    Ok(f) => wrote_flags |= f,
                    Err(FetchError::UnknownCte) => {
                        return Err(Reply::no(
                            "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.",
                        ))
                    }
                }
            }
            // A flag change caused by this FETCH is reported with it (RFC 3501 §6.4.5).
            let seen_now = match job.seen_now.iter().position(|&u| u == t.uid) {
                Some(i) => {
                    job.seen_now.swap_remove(i);
                    true
                }
                None => false,
            };
            if !has_flags && seen_now {
                line.extend_from_slice(b" FLAGS ");
                response::flag_list(&mut line, t.flags, &keywords, recent);
                wrote_flags = true;
            }
            if condstore && wrote_flags && !has_modseq {
                line.extend_from_slice(b" MODSEQ (");
                response::number(&mut line, t.modseq);
                line.push(b')');
            }
            line.extend_from_slice(b")\r\n");
            self.output.extend_from_slice(&line);
            if wrote_flags {
                if let State::Selected(sel) = &mut self.state {
                    sel.flags[t.idx] = t.flags;
                    sel.modseqs[t.idx] = t.modseq;
                }
            }
            if self.output.len() >= FLUSH_AT {
                // Pause after this message; the rest of the batch is looked up again later.
                return Ok(indices.partition_point(|&i| i <= t.idx));
            }
        }
        Ok(indices.len())
    }

    /// Answers UID / FLAGS / MODSEQ of messages already expunged in the store but still in
    /// this client's view, from the view.
    fn fetch_gone(&mut self, job: &FetchJob, gone: &[usize], keywords: &[String]) {
        let State::Selected(sel) = &self.state else {
            return;
        };
        let rev2 = self.enabled.rev2;
        for &i in gone {
            let (Some(&uid), Some(&flags), Some(&modseq)) =
                (sel.uids.get(i), sel.flags.get(i), sel.modseqs.get(i))
            else {
                continue;
            };
            if job.changed_since.is_some_and(|cs| modseq <= cs) {
                continue;
            }
            self.output.extend_from_slice(b"* ");
            response::number(&mut self.output, i + 1);
            self.output.extend_from_slice(b" FETCH (");
            for (n, item) in job.items.iter().enumerate() {
                if n > 0 {
                    self.output.push(b' ');
                }
                match item {
                    FetchItem::Uid => {
                        self.output.extend_from_slice(b"UID ");
                        response::number(&mut self.output, uid);
                    }
                    FetchItem::ModSeq => {
                        self.output.extend_from_slice(b"MODSEQ (");
                        response::number(&mut self.output, modseq);
                        self.output.push(b')');
                    }
                    _ => {
                        self.output.extend_from_slice(b"FLAGS ");
                        let recent = !rev2 && sel.is_recent(uid);
                        response::flag_list(&mut self.output, flags, keywords, recent);
                    }
                }
            }
            self.output.extend_from_slice(b")\r\n");
        }
    }
}

//! SORT (RFC 5256) and SORT=DISPLAY (RFC 5957): sort keys, the base subject, and the order.
//! Sans-IO: the session reads the messages and hands their header fields here.

use super::mime::{FirstAddress, SortHeaders};
use std::cmp::Ordering;
use unicode_normalization::UnicodeNormalization;

/// What a SORT criterion orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// INTERNALDATE.
    Arrival,
    /// Local part of the first Cc address.
    Cc,
    /// Date: in UTC, or INTERNALDATE when it has none.
    Date,
    /// Local part of the first From address.
    From,
    /// RFC822.SIZE.
    Size,
    /// Base subject (RFC 5256 §2.1).
    Subject,
    /// Local part of the first To address.
    To,
    /// Display name of the first From address, else its address (RFC 5957).
    DisplayFrom,
    /// Display name of the first To address, else its address (RFC 5957).
    DisplayTo,
}

impl SortKey {
    /// The key named by a SORT criterion atom (any case).
    pub fn from_atom(atom: &[u8]) -> Option<SortKey> {
        Some(match atom.to_ascii_uppercase().as_slice() {
            b"ARRIVAL" => SortKey::Arrival,
            b"CC" => SortKey::Cc,
            b"DATE" => SortKey::Date,
            b"FROM" => SortKey::From,
            b"SIZE" => SortKey::Size,
            b"SUBJECT" => SortKey::Subject,
            b"TO" => SortKey::To,
            b"DISPLAYFROM" => SortKey::DisplayFrom,
            b"DISPLAYTO" => SortKey::DisplayTo,
            _ => return None,
        })
    }

    /// Whether the key comes from the message header (so the message must be read).
    pub fn needs_header(self) -> bool {
        !matches!(self, SortKey::Arrival | SortKey::Size)
    }
}

/// One SORT criterion: a key, maybe reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    /// The key.
    pub key: SortKey,
    /// `REVERSE`.
    pub reverse: bool,
}

/// A message's value for one key: numbers, or text folded for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    /// Dates and sizes.
    Num(i64),
    /// Text in the form i;unicode-casemap (RFC 5051) compares: upper case, then NFKD.
    Text(String),
}

/// What one message is sorted by (a value per criterion, then its sequence number), with the
/// UID and MODSEQ a response reports.
#[derive(Debug, Clone)]
pub struct SortItem {
    /// The message's sequence number (breaks ties).
    pub seq: u32,
    /// Its UID.
    pub uid: u32,
    /// Its MODSEQ.
    pub modseq: u64,
    /// Values, one per criterion.
    pub values: Vec<SortValue>,
}

/// The values of `criteria` for one message. `header` is `None` when no criterion needs it.
pub fn values(
    criteria: &[SortCriterion],
    header: Option<&SortHeaders>,
    internal_date: i64,
    size: u32,
) -> Vec<SortValue> {
    let empty = SortHeaders::default();
    let h = header.unwrap_or(&empty);
    criteria
        .iter()
        .map(|c| match c.key {
            SortKey::Arrival => SortValue::Num(internal_date),
            SortKey::Size => SortValue::Num(i64::from(size)),
            SortKey::Date => SortValue::Num(h.date.unwrap_or(internal_date)),
            SortKey::Subject => casemap(&base_subject(&h.subject)),
            SortKey::From => casemap(local(&h.from)),
            SortKey::To => casemap(local(&h.to)),
            SortKey::Cc => casemap(local(&h.cc)),
            SortKey::DisplayFrom => casemap(&display(&h.from)),
            SortKey::DisplayTo => casemap(&display(&h.to)),
        })
        .collect()
}

/// i;unicode-casemap (RFC 5051): title case (upper case here, which differs only for a few
/// digraphs), then NFKD, so "Émile" sorts as "EMILE" plus an accent, before "ZED".
fn casemap(s: &str) -> SortValue {
    SortValue::Text(fold(s))
}

/// The text of [`casemap`]: what SORT and THREAD compare.
pub(crate) fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).nfkd().collect()
}

/// The local part (RFC 5256 `addr-mailbox`), "" without an address.
fn local(a: &Option<FirstAddress>) -> &str {
    a.as_ref().map_or("", |a| a.mailbox.as_str())
}

/// RFC 5957 §2: the display name, or the address when there is none (or it is empty).
fn display(a: &Option<FirstAddress>) -> String {
    match a {
        None => String::new(),
        Some(a) => match a.display.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            // A group has its name in the mailbox slot and no host.
            _ if a.host.is_empty() => a.mailbox.clone(),
            _ => format!("{}@{}", a.mailbox, a.host),
        },
    }
}

/// Sorts `items` by `criteria`; equal messages keep mailbox order (RFC 5256 §3).
pub fn sort(criteria: &[SortCriterion], items: &mut [SortItem]) {
    items.sort_by(|a, b| {
        for (i, c) in criteria.iter().enumerate() {
            let o = a.values[i].cmp(&b.values[i]);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// The base subject of RFC 5256 §2.1, from a decoded subject.
pub fn base_subject(subject: &str) -> String {
    base_subject_and_reply(subject).0
}

/// The base subject, and whether extracting it removed a reply or forward marker (`Re:`,
/// `Fwd:`, `(fwd)`, `[fwd: ...]`), which THREAD=REFERENCES uses when it merges by subject.
pub fn base_subject_and_reply(subject: &str) -> (String, bool) {
    // (1) Whitespace of any kind becomes one space.
    let norm = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    // Every step only cuts at the ends, so the work is on a narrowing slice of `norm`, and
    // each byte is looked at a bounded number of times however the subject is built.
    let mut s: &str = &norm;
    let mut reply = false;
    loop {
        // (2) Trailing "(fwd)" and whitespace.
        loop {
            s = s.trim_end();
            if s.len() >= 5 && s.as_bytes()[s.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
                s = &s[..s.len() - 5];
                reply = true;
            } else {
                break;
            }
        }
        // (3) and (4): leaders ("Re:", "Fwd: ", "[list] Re:") and one leading blob if something
        // is left after it, until neither applies. A leader search that failed behind a run of
        // blobs fails again until those blobs are gone: not searched again before then.
        let mut search_at_len = usize::MAX;
        loop {
            let before = s.len();
            s = s.trim_start();
            if s.len() <= search_at_len {
                match leader_end(s.as_bytes()) {
                    Ok(end) => {
                        s = &s[end..];
                        reply = true;
                    }
                    Err(failed_at) => search_at_len = s.len() - failed_at,
                }
            }
            if let Some(end) = blob_end(s.as_bytes(), 0) {
                // `s` has no trailing space, so the blob leaves something unless it ends it.
                if end < s.len() {
                    s = &s[end..];
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (5) "[fwd: subject]" becomes "subject", and the steps run again.
        let b = s.as_bytes();
        if b.len() >= 6 && b[..5].eq_ignore_ascii_case(b"[fwd:") && b[b.len() - 1] == b']' {
            s = &s[5..s.len() - 1];
            reply = true;
            continue;
        }
        return (s.to_owned(), reply);
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at `at`: where it ends.
fn blob_end(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b'[') {
        return None;
    }
    let close = at + 1 + b[at + 1..].iter().position(|&c| c == b']' || c == b'[')?;
    if b[close] != b']' {
        return None;
    }
    let mut end = close + 1;
    while b.get(end) == Some(&b' ') {
        end += 1;
    }
    Some(end)
}

/// `*subj-blob subj-refwd` at the start, with `subj-refwd = ("re" / ("fw" ["d"])) *WSP
/// [subj-blob] ":"`: where it ends, or where the search failed (after the blobs).
fn leader_end(b: &[u8]) -> Result<usize, usize> {
    let mut at = 0;
    while let Some(end) = blob_end(b, at) {
        at = end;
    }
    let failed = at;
    let word = |w: &[u8]| b.len() >= at + w.len() && b[at..at + w.len()].eq_ignore_ascii_case(w);
    at += if word(b"re") {
        2
    } else if word(b"fwd") {
        3
    } else if word(b"fw") {
        2
    } else {
        return Err(failed);
    };
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    if let Some(end) = blob_end(b, at) {
        at = end;
    }
    if b.get(at) == Some(&b':') {
        Ok(at + 1)
    } else {
        Err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects_of_rfc_5256() {
        for (raw, base) in [
            ("a", "a"),
            ("Re: hello", "hello"),
            ("RE:  Re: re[2]: hello", "hello"),
            ("Fwd: hello (fwd)", "hello"),
            ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b"),
            ("Re: [FWD: c]", "c"),
            ("[xyz]", "[xyz]"),
            ("[list] topic", "topic"),
            ("[a][b] x", "x"),
            ("re:", ""),
            ("fw: [Fwd: [x] y (fwd)]", "y"),
            ("  spaced \t out  ", "spaced out"),
            ("Résumé", "Résumé"),
            ("Reply", "Reply"),
            ("", ""),
            ("[a] [b] Re: x", "x"),
            ("[a] [b] note", "note"),
        ] {
            assert_eq!(base_subject(raw), base, "{raw:?}");
        }
    }

    #[test]
    fn huge_hostile_subjects_take_linear_time() {
        for unit in ["[a]", "Re: ", "[a] Re:", "x (fwd)", "[fwd: "] {
            let subject = unit.repeat(300_000);
            let t = std::time::Instant::now();
            let _ = base_subject(&subject);
            // Quadratic work on a megabyte would take minutes; this is a bound, not a benchmark.
            assert!(t.elapsed().as_secs() < 5, "{unit:?} took {:?}", t.elapsed());
        }
    }

    fn item(seq: u32, values: Vec<SortValue>) -> SortItem {
        SortItem {
            seq,
            uid: seq,
            modseq: 1,
            values,
        }
    }

    #[test]
    fn reverse_applies_per_key_and_ties_keep_mailbox_order() {
        use SortValue::{Num, Text};
        let crit = [
            SortCriterion {
                key: SortKey::Subject,
                reverse: true,
            },
            SortCriterion {
                key: SortKey::Size,
                reverse: false,
            },
        ];
        let mut items = vec![
            item(1, vec![Text("A".into()), Num(5)]),
            item(2, vec![Text("B".into()), Num(9)]),
            item(3, vec![Text("B".into()), Num(9)]),
            item(4, vec![Text("B".into()), Num(1)]),
        ];
        sort(&crit, &mut items);
        let order: Vec<u32> = items.iter().map(|i| i.seq).collect();
        assert_eq!(order, [4, 2, 3, 1]);
    }

    #[test]
    fn values_fall_back_as_the_rfcs_say() {
        let crit: Vec<SortCriterion> = [SortKey::Date, SortKey::DisplayFrom, SortKey::From]
            .into_iter()
            .map(|key| SortCriterion {
                key,
                reverse: false,
            })
            .collect();
        let h = SortHeaders {
            from: Some(FirstAddress {
                display: None,
                mailbox: "zed".into(),
                host: "Example.org".into(),
            }),
            ..Default::default()
        };
        let v = values(&crit, Some(&h), 77, 10);
        assert_eq!(v[0], SortValue::Num(77), "no Date: the internal date");
        assert_eq!(
            v[1],
            SortValue::Text("ZED@EXAMPLE.ORG".into()),
            "no name: the address"
        );
        assert_eq!(v[2], SortValue::Text("ZED".into()));
        assert_eq!(SortKey::from_atom(b"displayTo"), Some(SortKey::DisplayTo));
        assert_eq!(SortKey::from_atom(b"THREAD"), None);
    }
}

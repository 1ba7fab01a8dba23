//! Sequence sets (`1:3,5,7:*`): validated borrowed form, resolution against a mailbox view, and
//! compact writing of UID sets for response codes such as COPYUID.

/// One end of a sequence range: a number or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqBound {
    /// A literal non-zero number.
    Num(u32),
    /// `*`: the highest sequence number or UID in use.
    Star,
}

impl SeqBound {
    fn value(self, star: u32) -> u32 {
        match self {
            SeqBound::Num(n) => n,
            SeqBound::Star => star,
        }
    }
}

/// A syntactically valid sequence set, borrowed from the command line (zero-copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceSet<'a> {
    raw: &'a [u8],
}

/// Why a sequence set cannot be applied to the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    /// A message sequence number is larger than the number of messages (or the mailbox is empty).
    #[error("invalid message sequence number")]
    OutOfRange,
}

impl<'a> SequenceSet<'a> {
    /// Validates `raw` against `sequence-set` (RFC 3501 §9), or `$`, the saved search result
    /// (RFC 5182); `None` if it is neither.
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        if raw.is_empty() {
            return None;
        }
        if raw == b"$" {
            return Some(SequenceSet { raw });
        }
        for item in raw.split(|&c| c == b',') {
            let mut ends = item.splitn(2, |&c| c == b':');
            let first = ends.next()?;
            parse_bound(first)?;
            if let Some(second) = ends.next() {
                parse_bound(second)?;
            }
        }
        Some(SequenceSet { raw })
    }

    /// The bytes as the client sent them.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether this is `$`, the saved search result: its messages are the session's to know
    /// (the ranges of `$` are empty).
    pub fn is_saved(&self) -> bool {
        self.raw == b"$"
    }

    /// The ranges in order as written (each end may be larger than the other).
    pub fn ranges(&self) -> impl Iterator<Item = (SeqBound, SeqBound)> + 'a {
        self.raw.split(|&c| c == b',').filter_map(|item| {
            let mut ends = item.splitn(2, |&c| c == b':');
            let first = parse_bound(ends.next()?)?;
            let second = match ends.next() {
                Some(s) => parse_bound(s)?,
                None => first,
            };
            Some((first, second))
        })
    }

    /// Whether `n` is in the set, with `*` meaning `star`.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        self.ranges().any(|(a, b)| {
            let (a, b) = (a.value(star), b.value(star));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            (lo..=hi).contains(&n)
        })
    }

    /// Resolves message sequence numbers against a mailbox of `exists` messages: ascending,
    /// de-duplicated, 1-based. Any number beyond `exists` is an error, as is `*` in an empty mailbox.
    pub fn resolve_seq(&self, exists: u32) -> Result<Vec<u32>, SeqError> {
        let mut out = Vec::new();
        for (a, b) in self.ranges() {
            let (a, b) = (a.value(exists), b.value(exists));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if lo == 0 || hi > exists {
                return Err(SeqError::OutOfRange);
            }
            out.extend(lo..=hi);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Resolves a UID set against the ascending UID list of a mailbox: the indexes (0-based
    /// positions) of the UIDs present, ascending. `*` is the largest UID; UIDs not present are
    /// ignored, as RFC 3501 requires.
    pub fn resolve_uids(&self, uids: &[u32]) -> Vec<usize> {
        let Some(&max) = uids.last() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (a, b) in self.ranges() {
            let (a, b) = (a.value(max), b.value(max));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let start = uids.partition_point(|&u| u < lo);
            let end = uids.partition_point(|&u| u <= hi);
            out.extend(start..end);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn parse_bound(s: &[u8]) -> Option<SeqBound> {
    if s == b"*" {
        return Some(SeqBound::Star);
    }
    let n = parse_nz_number(s)?;
    Some(SeqBound::Num(n))
}

/// Parses `nz-number` (no leading zero, fits in u32).
pub(crate) fn parse_nz_number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || s[0] == b'0' {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    u32::try_from(n).ok()
}

/// Writes an ascending or order-preserving list of numbers compactly (`1:3,5`), collapsing
/// runs of consecutive values. Order is preserved so paired lists (COPYUID) stay aligned.
pub fn write_compact(out: &mut Vec<u8>, nums: &[u32]) {
    let mut i = 0;
    let mut first = true;
    while i < nums.len() {
        let start = nums[i];
        let mut j = i;
        while j + 1 < nums.len() && nums[j].checked_add(1) == Some(nums[j + 1]) {
            j += 1;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_num(out, start);
        if j > i {
            out.push(b':');
            push_num(out, nums[j]);
        }
        i = j + 1;
    }
}

fn push_num(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(n.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid_and_invalid() {
        assert!(SequenceSet::parse(b"1").is_some());
        assert!(SequenceSet::parse(b"1:3,5,7:*").is_some());
        assert!(SequenceSet::parse(b"*:4").is_some());
        assert!(SequenceSet::parse(b"").is_none());
        assert!(SequenceSet::parse(b"0").is_none());
        assert!(SequenceSet::parse(b"01").is_none());
        assert!(SequenceSet::parse(b"1,").is_none());
        assert!(SequenceSet::parse(b"1:2:3").is_none());
        assert!(SequenceSet::parse(b"4294967296").is_none());
        assert!(SequenceSet::parse(b"4294967295").is_some());
        assert!(SequenceSet::parse(b"$").is_some_and(|s| s.is_saved()));
        assert!(SequenceSet::parse(b"$,1").is_none());
        assert!(SequenceSet::parse(b"a").is_none());
    }

    #[test]
    fn resolve_sequence_numbers() {
        let s = SequenceSet::parse(b"3:1,2,5:*").unwrap();
        assert_eq!(s.resolve_seq(6).unwrap(), vec![1, 2, 3, 5, 6]);
        assert_eq!(s.resolve_seq(4), Err(SeqError::OutOfRange));
        let all = SequenceSet::parse(b"1:*").unwrap();
        assert_eq!(all.resolve_seq(0), Err(SeqError::OutOfRange));
        assert_eq!(all.resolve_seq(2).unwrap(), vec![1, 2]);
    }

    #[test]
    fn resolve_uid_sets() {
        let uids = [3, 5, 9, 10];
        let s = SequenceSet::parse(b"4:9").unwrap();
        assert_eq!(s.resolve_uids(&uids), vec![1, 2]);
        // A UID range n:* always includes the last message.
        let s = SequenceSet::parse(b"100:*").unwrap();
        assert_eq!(s.resolve_uids(&uids), vec![3]);
        let s = SequenceSet::parse(b"1,2").unwrap();
        assert!(s.resolve_uids(&uids).is_empty());
        assert!(s.resolve_uids(&[]).is_empty());
        assert!(s.contains(2, 10));
        assert!(!s.contains(3, 10));
    }

    #[test]
    fn compact_writing() {
        let mut out = Vec::new();
        write_compact(&mut out, &[1, 2, 3, 5, 7, 8]);
        assert_eq!(out, b"1:3,5,7:8");
        let mut out = Vec::new();
        write_compact(&mut out, &[9]);
        assert_eq!(out, b"9");
    }
}

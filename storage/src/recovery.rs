//! Opening a shard log: load the snapshot, replay the records after it, find the clean end.
//!
//! The end of a segment is the first offset that does not hold a valid record. What follows
//! decides what it means:
//! - only zeros (or nothing): a clean end (preallocated space, or `DmaStreamWriter`-style
//!   padding);
//! - other bytes in the tail segment, with no valid record anywhere after them: a torn write
//!   that was never acknowledged; it is cut off;
//! - anything else (a valid record after the damage, or damage in a segment followed by a
//!   segment holding data): corruption; opening fails with the segment and offset.

use crate::error::StorageError;
use crate::index::Index;
use crate::log::{open_segment, parse_segment_name, segment_name, Pos};
use crate::record::{check_frame, Frame, Kind, Record};
use crate::snapshot;
use glommio::io::BufferedFile;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Read size while replaying.
const CHUNK: usize = 1 << 20;

/// What recovery hands to the writer.
pub(crate) struct Recovered {
    pub(crate) index: Index,
    pub(crate) files: Vec<Rc<BufferedFile>>,
    pub(crate) first_segment: u32,
    /// End of valid data; the writer continues here.
    pub(crate) end: Pos,
    /// Log bytes replayed after the snapshot (counts toward the next one).
    pub(crate) since_snapshot: u64,
}

/// Lists segment numbers in `dir`, ascending, and checks there are no gaps.
fn list_segments(dir: &Path) -> Result<Vec<u32>, StorageError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = parse_segment_name(name) {
            ids.push(n);
        } else if name.ends_with(".seg.prep") {
            // A segment prepared but never renamed into place holds no data.
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        }
    }
    ids.sort_unstable();
    for w in ids.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(StorageError::Corrupt {
                segment: dir.join(segment_name(w[0] + 1)),
                offset: 0,
                reason: "segment file missing".into(),
            });
        }
    }
    Ok(ids)
}

/// Replays the shard log in `dir`.
pub(crate) async fn recover(dir: &Path, shard: u32) -> Result<Recovered, StorageError> {
    let ids = list_segments(dir)?;
    let mut files = Vec::with_capacity(ids.len());
    let mut sizes = Vec::with_capacity(ids.len());
    for id in &ids {
        let path = dir.join(segment_name(*id));
        let f = open_segment(&path).await?;
        sizes.push(
            f.file_size()
                .await
                .map_err(|e| StorageError::io(&path, e))?,
        );
        files.push(Rc::new(f));
    }
    let first_segment = ids.first().copied().unwrap_or(0);
    let seg = Segs {
        dir,
        first: first_segment,
        files: &files,
        sizes: &sizes,
    };

    let snap = snapshot::load(dir, shard).await?.filter(|(pos, _)| {
        let ok = seg.size(pos.segment).is_some_and(|s| pos.offset <= s)
            || (ids.is_empty() && *pos == Pos::default());
        if !ok {
            tracing::warn!(dir = %dir.display(), ?pos, "snapshot points past the log; replaying all");
        }
        ok
    });
    if snap.is_none() && first_segment > 0 {
        // Compaction deleted the segments before this one; only the snapshot stands for them.
        return Err(StorageError::Corrupt {
            segment: dir.join(snapshot::FILE_NAME),
            offset: 0,
            reason: format!(
                "segments before {} were compacted away and the snapshot that stands for them \
                 is missing or unreadable",
                segment_name(first_segment)
            ),
        });
    }
    let (mut index, start) = match snap {
        Some((pos, index)) => (index, pos),
        None => (
            Index::default(),
            Pos {
                segment: first_segment,
                offset: 0,
            },
        ),
    };

    let mut end = start;
    let mut since_snapshot = 0;
    for id in ids.iter().copied().filter(|id| *id >= start.segment) {
        let from = if id == start.segment { start.offset } else { 0 };
        let path = seg.path(id);
        let scanned = scan(&seg, id, from, |kind, payload, offset| {
            if kind == Kind::Body {
                return Ok(());
            }
            let corrupt = |reason: String| StorageError::Corrupt {
                segment: path.clone(),
                offset,
                reason,
            };
            let rec = Record::decode(kind, payload)
                .map_err(|e| corrupt(format!("undecodable {kind:?} record: {}", e.0)))?;
            index
                .apply(&rec)
                .map_err(|e| corrupt(format!("record contradicts the index: {e}")))?;
            Ok(())
        })
        .await?;
        since_snapshot += scanned - from;
        end = Pos {
            segment: id,
            offset: scanned,
        };
    }
    // Later (all-zero) segments may follow the one where data ended; write into the last.
    if let Some(last) = ids.last() {
        if *last != end.segment {
            end = Pos {
                segment: *last,
                offset: 0,
            };
        }
    }
    index.check().map_err(|reason| StorageError::Corrupt {
        segment: seg.path(end.segment),
        offset: end.offset,
        reason: format!("index invariant broken after replay: {reason}"),
    })?;
    index.mark_all_durable();
    Ok(Recovered {
        index,
        files,
        first_segment,
        end,
        since_snapshot,
    })
}

struct Segs<'a> {
    dir: &'a Path,
    first: u32,
    files: &'a [Rc<BufferedFile>],
    sizes: &'a [u64],
}

impl Segs<'_> {
    fn path(&self, id: u32) -> PathBuf {
        self.dir.join(segment_name(id))
    }
    fn slot(&self, id: u32) -> Option<usize> {
        let i = id.checked_sub(self.first)? as usize;
        (i < self.files.len()).then_some(i)
    }
    fn size(&self, id: u32) -> Option<u64> {
        self.slot(id).map(|i| self.sizes[i])
    }
    fn last(&self) -> u32 {
        self.first + self.files.len() as u32 - 1
    }
    async fn read(&self, id: u32, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let path = self.path(id);
        let Some(i) = self.slot(id) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = offset + out.len() as u64;
            let r = self.files[i]
                .read_at(at, len - out.len())
                .await
                .map_err(|e| StorageError::io(&path, e))?;
            if r.is_empty() {
                break;
            }
            out.extend_from_slice(&r);
        }
        Ok(out)
    }
    /// True when segment `id` holds only zeros from `from` to its end.
    async fn zeros_from(&self, id: u32, from: u64) -> Result<bool, StorageError> {
        let size = self.size(id).unwrap_or(0);
        let mut at = from;
        while at < size {
            let n = CHUNK.min((size - at) as usize);
            let buf = self.read(id, at, n).await?;
            if buf.is_empty() {
                break;
            }
            if buf.iter().any(|b| *b != 0) {
                return Ok(false);
            }
            at += buf.len() as u64;
        }
        Ok(true)
    }
}

/// Replays segment `id` from `from`, calling `on_record` for every valid record. Returns the
/// clean end of its data, after cutting off a torn tail.
async fn scan(
    seg: &Segs<'_>,
    id: u32,
    from: u64,
    mut on_record: impl FnMut(Kind, &[u8], u64) -> Result<(), StorageError>,
) -> Result<u64, StorageError> {
    let size = seg.size(id).unwrap_or(0);
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = from;
    let mut off = from;
    let (bad_at, reason) = loop {
        if off >= size {
            return Ok(off);
        }
        let rel = (off - buf_at) as usize;
        match check_frame(&buf[rel.min(buf.len())..], size - off) {
            Frame::Valid {
                kind,
                payload,
                total,
            } => {
                on_record(kind, &buf[rel + payload.start..rel + payload.end], off)?;
                off += total as u64;
            }
            Frame::NeedMore(n) => {
                let want = n.max(CHUNK).min((size - off) as usize);
                buf = seg.read(id, off, want).await?;
                buf_at = off;
                if buf.len() < n {
                    // The file shrank under us or the read came up short: treat as the end.
                    break (off, "short read");
                }
            }
            Frame::Invalid(reason) => break (off, reason),
        }
    };
    if seg.zeros_from(id, bad_at).await? {
        return Ok(bad_at);
    }
    let path = seg.path(id);
    // Damage is only a torn tail if no later segment holds data.
    let mut is_tail = true;
    for later in id + 1..=seg.last() {
        if !seg.zeros_from(later, 0).await? {
            is_tail = false;
            break;
        }
    }
    if !is_tail {
        return Err(StorageError::Corrupt {
            segment: path,
            offset: bad_at,
            reason: format!("{reason}, and later segments hold data"),
        });
    }
    let rest = seg.read(id, bad_at, (size - bad_at) as usize).await?;
    if let Some(valid) = first_valid_record(&rest, 1) {
        return Err(StorageError::Corrupt {
            segment: path,
            offset: bad_at,
            reason: format!(
                "{reason}, followed by a valid record at offset {}",
                bad_at + valid as u64
            ),
        });
    }
    tracing::warn!(
        segment = %path.display(),
        offset = bad_at,
        reason,
        "cutting off torn tail of shard log"
    );
    let file = &seg.files[seg.slot(id).unwrap_or(0)];
    file.truncate(bad_at)
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    Ok(bad_at)
}

/// Offset of the first position at or after `from` in `buf` where a valid record starts.
fn first_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&p| {
        let b = &buf[p..];
        // Cheap rejections first: zero or absurd lengths are the common case in garbage.
        b.len() > 8
            && b[..4] != [0, 0, 0, 0]
            && matches!(check_frame(b, b.len() as u64), Frame::Valid { .. })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_records_in_garbage() {
        let mut buf = vec![0xFFu8; 20];
        Record::QueueDone { id: 9 }.encode_into(&mut buf);
        buf.extend_from_slice(&[0; 10]);
        assert_eq!(first_valid_record(&buf, 0), Some(20));
        assert_eq!(first_valid_record(&buf, 21), None);
        assert_eq!(first_valid_record(&[0u8; 100], 0), None);
    }
}

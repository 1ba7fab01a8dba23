//! The writer side of the shard log: segment files, the pending batch and its bookkeeping.
//!
//! Operations encode records into the pending batch synchronously; the commit task (see
//! `shard.rs`) takes the whole batch, writes it and fdatasyncs once for all its waiters.

use crate::error::StorageError;
use crate::record::{self, Record};
use crate::types::BodyRef;
use bytes::Bytes;
use glommio::io::{BufferedFile, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

/// How new segment files get their space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocate {
    /// Grow the file with each write (every fdatasync also commits the new size).
    None,
    /// `fallocate` the whole segment (cheap; commits still convert extents). The next segment
    /// is made in the background once the current one is half full, so a full disk is found
    /// before a commit needs the space.
    Fallocate,
    /// Like `Fallocate`, and the prepared segment is also overwritten with zeros, so commits
    /// into it only flush data (costs one segment of background writes per roll).
    ZeroFill,
}

impl Preallocate {
    /// The mode for a segment created on the spot (at open, or in the commit path): never
    /// zero-fill there, that would stall commits or start-up.
    pub(crate) fn inline(self) -> Preallocate {
        match self {
            Preallocate::None => Preallocate::None,
            _ => Preallocate::Fallocate,
        }
    }
}

/// A position in the log: segment number and byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
}

/// File name of segment `n`.
pub(crate) fn segment_name(n: u32) -> String {
    format!("{n:08}.seg")
}

/// Name under which segment `n` is prepared before it is renamed into place.
pub(crate) fn prep_name(n: u32) -> String {
    format!("{n:08}.seg.prep")
}

/// Parses a segment file name back to its number.
pub(crate) fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Opens (creating if needed) a segment for reading and writing.
pub(crate) async fn open_segment(path: &Path) -> Result<BufferedFile, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(|e| StorageError::io(path, e))
}

/// Gives a fresh (or freshly truncated) segment its space according to `mode`.
pub(crate) async fn preallocate(
    file: &BufferedFile,
    path: &Path,
    from: u64,
    size: u64,
    mode: Preallocate,
) -> Result<(), StorageError> {
    if size <= from {
        return Ok(());
    }
    match mode {
        Preallocate::None => {}
        Preallocate::Fallocate => file
            .pre_allocate(size, false)
            .await
            .map_err(|e| StorageError::io(path, e))?,
        Preallocate::ZeroFill => {
            file.pre_allocate(size, false)
                .await
                .map_err(|e| StorageError::io(path, e))?;
            const CHUNK: u64 = 1 << 20;
            let mut pos = from;
            while pos < size {
                let n = CHUNK.min(size - pos);
                write_all_at(file, path, vec![0u8; n as usize], pos).await?;
                pos += n;
            }
            file.fdatasync()
                .await
                .map_err(|e| StorageError::io(path, e))?;
        }
    }
    Ok(())
}

/// Writes all of `data` at `pos`. A short write (only seen when the disk is full) is an error:
/// the buffer is gone with the call, and a partly written batch must never count as durable.
pub(crate) async fn write_all_at(
    file: &BufferedFile,
    path: &Path,
    data: Vec<u8>,
    pos: u64,
) -> Result<(), StorageError> {
    let len = data.len();
    let n = file
        .write_at(data, pos)
        .await
        .map_err(|e| StorageError::io(path, e))?;
    if n != len {
        return Err(StorageError::io(
            path,
            io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {len} bytes at offset {pos}"),
            ),
        ));
    }
    Ok(())
}

/// Copies `data` into the page cache at `pos` with `pwrite` on the executor thread, as a
/// commit does. Through io_uring, ext4 hands a buffered write to an io-wq worker (it cannot
/// do one without blocking), which cost a thread handoff per commit on top of the
/// fdatasync's; the copy itself takes microseconds. The price: when the kernel throttles
/// writers (gigabytes of dirty pages from another process) or the head's last page was
/// evicted, the copy waits and holds the executor meanwhile. Failures are errors as in
/// [`write_all_at`]: a partly written batch never counts as durable.
pub(crate) fn write_all_at_inline(
    file: &BufferedFile,
    path: &Path,
    data: &[u8],
    pos: u64,
) -> Result<(), StorageError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::FileExt;
    // SAFETY: the descriptor belongs to `file`, which outlives this call; ManuallyDrop keeps
    // this borrowed `File` from closing it.
    let borrowed =
        std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(file.as_raw_fd()) });
    borrowed
        .write_all_at(data, pos)
        .map_err(|e| StorageError::io(path, e))
}

/// Bytes to write into one segment at one offset.
pub(crate) struct Chunk {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
}

/// A mailbox whose change becomes visible when its batch is durable.
pub(crate) struct Touch {
    pub(crate) account: Rc<str>,
    pub(crate) mid: u64,
    pub(crate) uidnext: u32,
}

/// Records gathered for one commit.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) records: usize,
    pub(crate) bytes: usize,
    pub(crate) touches: Vec<Touch>,
}

/// Writer state of one shard log.
pub(crate) struct LogState {
    pub(crate) dir: PathBuf,
    pub(crate) segment_size: u64,
    /// Open segment files, index = segment number - `first_segment`.
    pub(crate) files: Vec<Rc<BufferedFile>>,
    pub(crate) first_segment: u32,
    /// Where the next record goes (end of everything enqueued).
    pub(crate) end: Pos,
    /// End of everything known durable.
    pub(crate) durable: Pos,
    pub(crate) pending: Batch,
    /// Sequence number of the pending batch; batches commit in sequence order.
    pub(crate) open_seq: u64,
    /// Last batch known durable.
    pub(crate) durable_seq: u64,
    /// Set by the first failed write or fdatasync; never cleared.
    pub(crate) poisoned: Option<Arc<StorageError>>,
    /// Why the log cannot grow (disk full), by [`Stall`]: while any is set, new changes are
    /// refused. Each is cleared by the task that set it, when it succeeds.
    pub(crate) stalls: [Option<Arc<StorageError>>; 3],
    /// Bytes allocated to the last segment (`Fallocate` mode grows it as it fills).
    pub(crate) head_allocated: u64,
    /// Appenders waiting for their batch: (sequence, waker).
    pub(crate) waiters: Vec<(u64, Waker)>,
    /// The commit task, parked while there is nothing to write.
    pub(crate) commit_waker: Option<Waker>,
    /// Stop the commit task once the pending batch is written.
    pub(crate) closing: bool,
    /// Log bytes committed since the last snapshot started.
    pub(crate) since_snapshot: u64,
    #[cfg(test)]
    pub(crate) fail_next_sync: bool,
    /// Segment allocations that fail before one succeeds (tests of a full disk).
    #[cfg(test)]
    pub(crate) fail_allocations: u32,
}

/// What found that the log cannot grow.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stall {
    /// Preparing the next segment in the background.
    Prepare = 0,
    /// Growing the head segment's space in the background.
    Grow = 1,
    /// A commit that needs a segment or space right now (its appenders wait).
    Commit = 2,
}

impl LogState {
    /// The last (newest) segment: the only one the log writes to.
    pub(crate) fn head_segment(&self) -> u32 {
        self.first_segment + self.files.len() as u32 - 1
    }

    /// The first reason the log cannot grow, if any.
    pub(crate) fn stalled(&self) -> Option<&Arc<StorageError>> {
        self.stalls.iter().flatten().next()
    }

    /// Path of segment `n`.
    pub(crate) fn segment_path(&self, n: u32) -> PathBuf {
        self.dir.join(segment_name(n))
    }

    /// The open file of segment `n`, if it exists yet.
    pub(crate) fn file(&self, n: u32) -> Option<Rc<BufferedFile>> {
        let i = n.checked_sub(self.first_segment)? as usize;
        self.files.get(i).cloned()
    }

    /// Reserves `len` bytes for one record: rolls to a new segment if the record would cross
    /// the size limit of a non-empty segment. Returns where the record starts.
    fn reserve(&mut self, len: u64) -> Pos {
        if self.end.offset > 0 && self.end.offset + len > self.segment_size {
            self.end = Pos {
                segment: self.end.segment + 1,
                offset: 0,
            };
        }
        let at = self.end;
        self.end.offset += len;
        at
    }

    /// The buffer receiving bytes at `at`, starting a new chunk on a new segment.
    fn chunk_for(&mut self, at: Pos) -> &mut Vec<u8> {
        let fresh = match self.pending.chunks.last() {
            Some(c) => c.segment != at.segment,
            None => true,
        };
        if fresh {
            self.pending.chunks.push(Chunk {
                segment: at.segment,
                offset: at.offset,
                data: Vec::new(),
            });
        }
        let c = self.pending.chunks.last_mut().map(|c| &mut c.data);
        // A chunk was pushed just above if there was none.
        c.unwrap_or_else(|| unreachable!())
    }

    fn note_enqueued(&mut self, at: Pos, framed: usize) {
        if let Some(c) = self.pending.chunks.last() {
            assert_eq!(
                c.offset + c.data.len() as u64,
                at.offset + framed as u64,
                "record landed off its reserved position"
            );
        }
        self.pending.records += 1;
        self.pending.bytes += framed;
        if let Some(w) = self.commit_waker.take() {
            w.wake();
        }
    }

    /// Enqueues a typed record.
    pub(crate) fn push(&mut self, rec: &Record<'_>) {
        // Encode first to learn the size, then place it.
        let mut tmp = Vec::with_capacity(64);
        let framed = rec.encode_into(&mut tmp);
        let at = self.reserve(framed as u64);
        self.chunk_for(at).extend_from_slice(&tmp);
        self.note_enqueued(at, framed);
    }

    /// Enqueues a body record made of `parts`; returns where the body bytes are.
    pub(crate) fn push_body(&mut self, parts: &[Bytes]) -> BodyRef {
        let body_len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        assert!(
            body_len <= record::MAX_BODY_LEN,
            "body length checked by caller"
        );
        let at = self.reserve(record::body_frame_len(body_len));
        let (framed, _) = record::encode_body_into(self.chunk_for(at), parts);
        self.note_enqueued(at, framed);
        BodyRef {
            segment: at.segment,
            offset: at.offset + record::BODY_PREFIX as u64,
            len: body_len as u32,
        }
    }

    /// Sequence number whose durability covers everything enqueued so far.
    pub(crate) fn ticket(&self) -> u64 {
        if self.pending.records > 0 {
            self.open_seq
        } else {
            self.open_seq - 1
        }
    }

    /// Takes the pending batch for the commit task.
    pub(crate) fn take_batch(&mut self) -> (u64, Batch, Pos) {
        let seq = self.open_seq;
        self.open_seq += 1;
        (seq, std::mem::take(&mut self.pending), self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(segment_size: u64) -> LogState {
        LogState {
            dir: PathBuf::from("/nonexistent"),
            segment_size,
            files: Vec::new(),
            first_segment: 0,
            end: Pos::default(),
            durable: Pos::default(),
            pending: Batch::default(),
            open_seq: 1,
            durable_seq: 0,
            poisoned: None,
            stalls: Default::default(),
            head_allocated: 0,
            waiters: Vec::new(),
            commit_waker: None,
            closing: false,
            since_snapshot: 0,
            fail_next_sync: false,
            fail_allocations: 0,
        }
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(42), "00000042.seg");
        assert_eq!(parse_segment_name("00000042.seg"), Some(42));
        assert_eq!(parse_segment_name("0000042.seg"), None);
        assert_eq!(parse_segment_name("00000042.seg.tmp"), None);
        assert_eq!(parse_segment_name("0000004x.seg"), None);
    }

    #[test]
    fn records_roll_to_a_new_segment_at_the_limit() {
        let mut log = state(100);
        assert_eq!(log.ticket(), 0);
        let b1 = log.push_body(&[Bytes::from(vec![1u8; 60])]);
        assert_eq!((b1.segment, b1.offset), (0, 9));
        assert_eq!(log.ticket(), 1);
        // 69 + 69 > 100: the second body starts segment 1.
        let b2 = log.push_body(&[Bytes::from(vec![2u8; 60])]);
        assert_eq!((b2.segment, b2.offset), (1, 9));
        // A record bigger than a segment still goes in, alone.
        let b3 = log.push_body(&[Bytes::from(vec![3u8; 300])]);
        assert_eq!((b3.segment, b3.offset), (2, 9));
        let (seq, batch, end) = log.take_batch();
        assert_eq!(seq, 1);
        assert_eq!(batch.records, 3);
        assert_eq!(batch.chunks.len(), 3);
        assert_eq!(
            end,
            Pos {
                segment: 2,
                offset: 309
            }
        );
        assert_eq!(log.ticket(), 1, "in-flight batch still covers everything");
    }
}

//! Compaction: gives back the space of bodies no message refers to any more.
//!
//! The log only grows, and an expunged message leaves its body behind. Once at least half of
//! the sealed segments' bytes are dead (and at least a segment's worth), the oldest segment is
//! emptied: its live bodies are copied to the log head, a `BodiesMoved` record points the index
//! at the copies, a snapshot is written so that recovery never reads that segment again, and
//! its file is deleted. Only the oldest segment ever goes, so the segments left stay
//! contiguous. A read that looked a body up before it moved still finds the deleted file's
//! open handle for a while ([`RETIRED_GRACE`]).
//!
//! Crash safety follows from the order: the copies and the record are durable before the
//! snapshot, and the snapshot is durable before the delete. A crash before the snapshot
//! replays the record; a crash before the delete leaves a segment nobody refers to, which the
//! next pass deletes without copying anything.

use super::Shard;
use crate::error::StorageError;
use crate::record::Record;
use crate::snapshot;
use crate::types::BodyRef;
use glommio::io::BufferedFile;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bodies copied per commit, so a pass holds a bounded amount of memory.
const BATCH_BYTES: u64 = 8 << 20;
/// How long the handle of a deleted segment stays open for reads that looked a body up first.
pub(super) const RETIRED_GRACE: Duration = Duration::from_secs(60);

/// A deleted segment whose file is still open for late readers.
pub(super) struct Retired {
    pub(super) segment: u32,
    pub(super) file: Rc<BufferedFile>,
    pub(super) since: Instant,
}

impl Shard {
    /// The oldest segment, if compacting it is due: dead bytes in the sealed segments (all but
    /// the one being written) are at least their live bytes and at least one segment.
    pub(super) fn compaction_due(&self) -> Option<u32> {
        let (first, head, size) = {
            let log = self.log.borrow();
            (log.first_segment, log.end.segment, log.segment_size)
        };
        if first >= head {
            return None;
        }
        let live = self.index.borrow().live_bytes(first..head);
        let sealed = u64::from(head - first) * size;
        let dead = sealed.saturating_sub(live);
        (dead >= size && dead >= live).then_some(first)
    }

    /// Starts compacting in the background, unless it is running already or not due.
    pub(super) fn maybe_compact(&self) {
        if !self.opts.auto_compact
            || self.compacting.get()
            || self.closed.get()
            || self.compaction_due().is_none()
        {
            return;
        }
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        self.compacting.set(true);
        glommio::spawn_local(async move {
            while !me.closed.get() && me.compaction_due().is_some() {
                if let Err(e) = me.compact_oldest().await {
                    if !me.closed.get() {
                        tracing::warn!(shard = me.id, error = %e, "compaction failed");
                    }
                    break;
                }
            }
            me.compacting.set(false);
        })
        .detach();
    }

    /// Compacts while it is due; returns the number of segments deleted (0 as well when a
    /// background pass is running: two passes must never work on one segment).
    pub async fn compact(&self) -> Result<u32, StorageError> {
        if self.compacting.replace(true) {
            return Ok(0);
        }
        let mut n = 0;
        let result = async {
            while self.compaction_due().is_some() {
                self.compact_oldest().await?;
                n += 1;
            }
            Ok(n)
        }
        .await;
        self.compacting.set(false);
        result
    }

    /// Moves the live bodies out of the oldest segment, which must be sealed, and deletes it.
    pub(crate) async fn compact_oldest(&self) -> Result<(), StorageError> {
        let start = Instant::now();
        let oldest = {
            let log = self.log.borrow();
            assert!(
                log.first_segment < log.end.segment,
                "only a sealed segment is compacted"
            );
            log.first_segment
        };
        let bodies = self.index.borrow().bodies_in(oldest);
        for batch in batches(&bodies) {
            let mut copies = Vec::with_capacity(batch.len());
            for b in batch {
                copies.push((*b, self.read_body(*b).await?));
            }
            self.begin()?; // a closed or failed shard takes no more records
            let ticket = {
                let mut t = self.txn();
                let moves = copies
                    .iter()
                    .map(|(old, bytes)| (old.offset, t.body(std::slice::from_ref(bytes))))
                    .collect();
                t.record(&Record::BodiesMoved {
                    segment: oldest,
                    moves,
                });
                t.log.ticket()
            };
            self.wait_durable(ticket).await?;
        }
        // Nothing can have made a new reference into the segment meanwhile: new bodies go to
        // the head, and a COPY takes the reference the index has, already moved or moved since.
        let left = self.index.borrow().bodies_in(oldest).len();
        assert_eq!(left, 0, "segment {oldest} still holds live bodies");
        #[cfg(test)]
        if self.compaction_stop.get() == 1 {
            return Ok(());
        }
        self.snapshot().await?;
        #[cfg(test)]
        if self.compaction_stop.get() == 2 {
            return Ok(());
        }
        let (file, path) = {
            let mut log = self.log.borrow_mut();
            assert_eq!(
                log.first_segment, oldest,
                "segments are deleted oldest first"
            );
            let file = log.files.remove(0);
            log.first_segment += 1;
            (file, log.segment_path(oldest))
        };
        std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        snapshot::sync_dir(&self.dir).await?;
        let mut retired = self.retired.borrow_mut();
        retired.retain(|r| r.since.elapsed() < RETIRED_GRACE);
        retired.push(Retired {
            segment: oldest,
            file,
            since: Instant::now(),
        });
        drop(retired);
        let moved_bytes: u64 = bodies.iter().map(|b| u64::from(b.len)).sum();
        if let Some(o) = &self.opts.observer {
            o.compacted(moved_bytes, super::micros_since(start));
        }
        tracing::info!(
            shard = self.id,
            segment = oldest,
            moved = bodies.len(),
            moved_bytes,
            "segment compacted"
        );
        Ok(())
    }

    /// True while a compaction pass runs.
    #[cfg(test)]
    pub(crate) fn compacting(&self) -> bool {
        self.compacting.get()
    }

    #[cfg(test)]
    pub(crate) fn stop_compaction_at(&self, stage: u8) {
        self.compaction_stop.set(stage);
    }

    /// The open file of a deleted segment, for a read that looked its body up in time.
    pub(super) fn retired_file(&self, segment: u32) -> Option<Rc<BufferedFile>> {
        self.retired
            .borrow()
            .iter()
            .find(|r| r.segment == segment)
            .map(|r| r.file.clone())
    }
}

/// Looks every `every` whether compaction is due (and closes deleted segments whose grace is
/// over), until the shard is closed or dropped.
pub(super) async fn check_task(weak: std::rc::Weak<Shard>, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        match weak.upgrade() {
            Some(shard) if !shard.closed.get() => {
                // A deleted segment's space comes back only once its last handle is closed.
                shard
                    .retired
                    .borrow_mut()
                    .retain(|r| r.since.elapsed() < RETIRED_GRACE);
                shard.maybe_compact();
            }
            _ => return,
        }
    }
}

/// Splits `bodies` into runs of about [`BATCH_BYTES`] (at least one body each).
fn batches(bodies: &[BodyRef]) -> Vec<&[BodyRef]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, b) in bodies.iter().enumerate() {
        if i > start && bytes + u64::from(b.len) > BATCH_BYTES {
            out.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += u64::from(b.len);
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

//! Whole-shard tests: durability, recovery, snapshots, failure poisoning and mailbox
//! operations, each run inside a glommio executor on a temporary directory.

use crate::index::Index;
use crate::log::{segment_name, Pos};
use crate::*;
use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Runs `f` on a fresh glommio executor thread and propagates its panics.
fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("executor")
        .join()
        .expect("test body");
}

fn opts() -> ShardOptions {
    ShardOptions {
        segment_size: 1 << 20,
        snapshot_bytes: 1 << 40,
        observer: None,
        preallocate: Preallocate::Fallocate,
        auto_compact: false,
        compact_check: std::time::Duration::from_secs(300),
    }
}

fn shard_dir(data: &Path) -> PathBuf {
    Manifest::shard_dir(data, 0)
}

fn seg(data: &Path, n: u32) -> PathBuf {
    shard_dir(data).join(segment_name(n))
}

fn random_bytes(rng: &mut rand::rngs::StdRng, n: usize) -> Bytes {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    Bytes::from(v)
}

fn parts(s: &str) -> Vec<Bytes> {
    vec![Bytes::copy_from_slice(s.as_bytes())]
}

/// Flushes and drops the shard without a snapshot, like a crash after the last ack.
async fn crash(shard: Rc<Shard>) {
    shard.flush().await.unwrap();
    // A background snapshot task holds the shard until it is done.
    while shard.snapshot_running() {
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(Rc::strong_count(&shard), 1, "test leaked a shard handle");
    drop(shard);
}

/// Drops a closed shard once its background tasks (a commit or preparation retrying on a
/// full disk) have let go of it, so it can be opened again.
async fn released(shard: Rc<Shard>) {
    while Rc::strong_count(&shard) > 1 {
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The index as recovery rebuilds it (versions and visibility are runtime state).
fn durable_view(mut ix: Index) -> Index {
    ix.check().expect("live index invariants");
    ix.mark_all_durable();
    ix
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn uids(shard: &Shard, account: &str, mailbox: &str) -> Vec<u32> {
    shard
        .with_mailbox(account, mailbox, |m| {
            m.messages().iter().map(|m| m.uid).collect()
        })
        .unwrap()
}

#[test]
fn random_bodies_round_trip_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut sizes: Vec<usize> = (0..40).map(|_| rng.gen_range(0..256 * 1024)).collect();
        sizes.extend([0, 1, 256 * 1024 - 1]);
        let bodies: Vec<Bytes> = sizes.iter().map(|n| random_bytes(&mut rng, *n)).collect();
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let mut refs = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            // Split some bodies in two parts: the record must hold their concatenation.
            let cut = b.len() / 3;
            let p = [b.slice(..cut), b.slice(cut..)];
            let r = shard.deliver(&p, &["a@x"], i as i64).await.unwrap();
            assert_eq!(r[0].uid, i as u32 + 1);
            let meta = shard
                .with_mailbox("a@x", "INBOX", |m| *m.find(r[0].uid).unwrap())
                .unwrap();
            assert_eq!(meta.size as usize, b.len());
            assert_eq!(meta.internal_date, i as i64);
            assert_eq!(shard.read_body(meta.body).await.unwrap(), *b);
            refs.push(meta.body);
        }
        shard.close().await.unwrap();
        drop(shard);
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        for (r, b) in refs.iter().zip(&bodies) {
            assert_eq!(shard.read_body(*r).await.unwrap(), *b);
        }
        assert!(
            refs.iter().any(|r| r.segment() > 0),
            "bodies spanned segments"
        );
    });
}

#[derive(Default)]
struct Counter {
    appends: Cell<usize>,
    commits: Cell<usize>,
    records: Cell<usize>,
}

impl StorageObserver for Counter {
    fn append(&self, _: u64) {
        self.appends.set(self.appends.get() + 1);
    }
    fn commit(&self, records: usize, _: usize, _: u64) {
        self.commits.set(self.commits.get() + 1);
        self.records.set(self.records.get() + records);
    }
    fn read(&self, _: u64) {}
}

#[test]
fn concurrent_appends_are_durable_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        const TASKS: usize = 200;
        const EACH: usize = 3;
        let counter = Rc::new(Counter::default());
        let mut o = opts();
        o.observer = Some(counter.clone());
        let shard = Shard::open(&data, 0, o).await.unwrap();
        shard.ensure_account("a@x").await.unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let mut got = Vec::new();
                    for i in 0..EACH {
                        let body = parts(&format!("task {t} message {i}"));
                        let r = shard
                            .append("a@x", "INBOX", &body, &FlagUpdate::default(), 0)
                            .await
                            .unwrap();
                        // Acknowledged means visible.
                        assert!(shard
                            .with_mailbox("a@x", "INBOX", |m| m.find(r.uid).is_some())
                            .unwrap());
                        got.push(r.uid);
                    }
                    got
                })
            })
            .collect();
        let mut per_task = Vec::new();
        for t in tasks {
            per_task.push(t.await);
        }
        assert!(
            counter.commits.get() < counter.appends.get(),
            "group commit batched appends ({} commits for {} appends)",
            counter.commits.get(),
            counter.appends.get()
        );
        crash(shard).await;

        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let all = uids(&shard, "a@x", "INBOX");
        assert_eq!(all.len(), TASKS * EACH);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        for (t, got) in per_task.iter().enumerate() {
            assert!(got.windows(2).all(|w| w[0] < w[1]), "task order kept");
            for (i, uid) in got.iter().enumerate() {
                let meta = shard
                    .with_mailbox("a@x", "INBOX", |m| *m.find(*uid).unwrap())
                    .unwrap();
                let body = shard.read_body(meta.body).await.unwrap();
                assert_eq!(body, format!("task {t} message {i}").as_bytes());
            }
        }
    });
}

/// Builds a log, then cuts the last segment at every offset inside the last operation's
/// records (and also pads each cut with zeros): recovery must keep exactly what was complete.
#[test]
fn torn_tail_at_every_offset_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pristine");
    let scratch = dir.path().join("scratch");
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        for i in 0..5 {
            shard
                .deliver(&parts(&format!("message {i}")), &["a@x", "b@x"], 0)
                .await
                .unwrap();
        }
        let before_ix = durable_view(shard.index_snapshot());
        let before = shard.log_end();
        let last = "the last one";
        shard.deliver(&parts(last), &["a@x"], 0).await.unwrap();
        // The delivery logged a body record, then an append record.
        let body_end = before.offset + crate::record::body_frame_len(last.len() as u64);
        let after_ix = durable_view(shard.index_snapshot());
        let after = shard.log_end();
        assert_eq!(before.segment, after.segment);
        crash(shard).await;
        let original = std::fs::read(seg(&data, 0)).unwrap();

        for cut in before.offset..=after.offset {
            for pad in [0u64, 4096] {
                let _ = std::fs::remove_dir_all(&scratch);
                copy_dir(&data, &scratch);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(seg(&scratch, 0))
                    .unwrap();
                f.set_len(cut).unwrap();
                if pad > 0 {
                    f.set_len(cut + pad).unwrap(); // extends with zeros
                }
                drop(f);
                let shard = Shard::open(&scratch, 0, opts()).await.unwrap_or_else(|e| {
                    panic!("cut at {cut} pad {pad}: {e}");
                });
                // Zero padding restores a record whose missing bytes were zeros anyway.
                let complete = cut == after.offset
                    || (pad > 0
                        && original[cut as usize..after.offset as usize]
                            .iter()
                            .all(|b| *b == 0));
                let expect = if complete { &after_ix } else { &before_ix };
                assert_eq!(&shard.index_snapshot(), expect, "cut at {cut} pad {pad}");
                // The writer resumes at the last complete record (an orphan body is harmless).
                let clean = [before.offset, body_end, after.offset]
                    .into_iter()
                    .filter(|b| *b <= cut || (complete && *b == after.offset))
                    .max()
                    .unwrap();
                assert_eq!(
                    shard.log_end(),
                    Pos {
                        segment: 0,
                        offset: clean
                    },
                    "cut at {cut}"
                );
                // The shard keeps working after the cut and the next open sees it all.
                let r = shard.deliver(&parts("after"), &["a@x"], 0).await.unwrap();
                crash(shard).await;
                let shard = Shard::open(&scratch, 0, opts()).await.unwrap();
                assert_eq!(uids(&shard, "a@x", "INBOX").last(), Some(&r[0].uid));
                drop(shard);
            }
        }
    });
}

#[test]
fn zero_padded_preallocated_tail_is_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let mut o = opts();
        o.preallocate = Preallocate::ZeroFill;
        let shard = Shard::open(&data, 0, o.clone()).await.unwrap();
        shard.deliver(&parts("x"), &["a@x"], 0).await.unwrap();
        crash(shard).await;
        assert_eq!(std::fs::metadata(seg(&data, 0)).unwrap().len(), 1 << 20);
        let shard = Shard::open(&data, 0, o).await.unwrap();
        assert_eq!(uids(&shard, "a@x", "INBOX"), [1]);
    });
}

#[test]
fn flipped_byte_before_the_tail_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pristine");
    let scratch = dir.path().join("scratch");
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let mut positions = Vec::new();
        for i in 0..10 {
            positions.push(shard.log_end());
            shard
                .deliver(&parts(&format!("message number {i}")), &["a@x"], 0)
                .await
                .unwrap();
        }
        crash(shard).await;
        // Flip a body byte, a length byte and a CRC byte of the 5th delivery.
        let rec = positions[4].offset;
        for (what, at) in [("body", rec + 12), ("len", rec + 1), ("crc", rec + 5)] {
            let _ = std::fs::remove_dir_all(&scratch);
            copy_dir(&data, &scratch);
            let path = seg(&scratch, 0);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at as usize] ^= 0x20;
            std::fs::write(&path, bytes).unwrap();
            match Shard::open(&scratch, 0, opts()).await {
                Err(StorageError::Corrupt {
                    segment, offset, ..
                }) => {
                    assert_eq!(segment, path, "{what}");
                    assert_eq!(offset, rec, "{what}");
                }
                other => panic!("{what}: expected Corrupt, got {other:?}"),
            }
            let msg = Shard::open(&scratch, 0, opts())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("00000000.seg") && msg.contains(&rec.to_string()),
                "{msg}"
            );
        }
    });
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let mut o = opts();
        o.segment_size = 4096;
        let shard = Shard::open(&data, 0, o.clone()).await.unwrap();
        for _ in 0..10 {
            shard
                .deliver(&[Bytes::from(vec![7u8; 1500])], &["a@x"], 0)
                .await
                .unwrap();
        }
        crash(shard).await;
        assert!(seg(&data, 2).exists());
        // Tear the end of segment 0: not the tail of the log, so it is corruption.
        let path = seg(&data, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let last_nonzero = bytes.iter().rposition(|b| *b != 0).unwrap();
        bytes[last_nonzero] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        match Shard::open(&data, 0, o).await {
            Err(StorageError::Corrupt { segment, .. }) => assert_eq!(segment, path),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    });
}

#[test]
fn snapshot_plus_tail_equals_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let copy = dir.path().join("b");
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        exercise(&shard, 0).await;
        shard.snapshot().await.unwrap();
        exercise(&shard, 1).await;
        let live = durable_view(shard.index_snapshot());
        crash(shard).await;
        copy_dir(&data, &copy);
        std::fs::remove_file(shard_dir(&copy).join("snapshot")).unwrap();

        let from_snapshot = Shard::open(&data, 0, opts()).await.unwrap();
        let full = Shard::open(&copy, 0, opts()).await.unwrap();
        assert_eq!(from_snapshot.index_snapshot(), full.index_snapshot());
        assert_eq!(full.index_snapshot(), live);
        assert!(
            from_snapshot.since_snapshot() < full.since_snapshot(),
            "the snapshot shortened the replay"
        );
    });
}

/// A mix of every operation, `round` making names unique.
async fn exercise(shard: &Shard, round: u32) {
    let a = "user@example.org";
    shard.ensure_account(a).await.unwrap();
    for i in 0..5 {
        shard
            .deliver(
                &parts(&format!("r{round} m{i}")),
                &[a, "other@example.org"],
                i,
            )
            .await
            .unwrap();
    }
    let kw = FlagUpdate {
        system: flags::SEEN,
        keywords: vec![format!("$k{round}")],
    };
    let all = uids(shard, a, "INBOX");
    shard
        .store_flags(a, "INBOX", &all[..2], FlagOp::Add, &kw, None)
        .await
        .unwrap();
    shard.expunge(a, "INBOX", &all[..1]).await.unwrap();
    let box_name = format!("box{round}");
    shard.create_mailbox(a, &box_name).await.unwrap();
    shard.copy(a, "INBOX", &box_name, &all[1..3]).await.unwrap();
    shard
        .move_messages(a, "INBOX", "Trash", &all[3..4])
        .await
        .unwrap();
    shard
        .rename_mailbox(a, &box_name, &format!("renamed{round}"))
        .await
        .unwrap();
    shard
        .set_subscribed(a, &format!("renamed{round}"), true)
        .await
        .unwrap();
    let id = shard
        .queue_add(
            "user@example.org",
            &["far@away.example".into()],
            &parts("out"),
        )
        .await
        .unwrap();
    shard.queue_retry(id, 1, 99).await.unwrap();
}

#[test]
fn automatic_snapshot_after_enough_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let mut o = opts();
        o.snapshot_bytes = 8192;
        let shard = Shard::open(&data, 0, o.clone()).await.unwrap();
        let snap = shard_dir(&data).join("snapshot");
        for _ in 0..20 {
            shard
                .deliver(&[Bytes::from(vec![1u8; 1000])], &["a@x"], 0)
                .await
                .unwrap();
        }
        // The snapshot task runs after the commit that crossed the threshold.
        for _ in 0..1000 {
            if snap.exists() {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(snap.exists());
        let live = durable_view(shard.index_snapshot());
        crash(shard).await;
        let shard = Shard::open(&data, 0, o).await.unwrap();
        assert_eq!(shard.index_snapshot(), live);
    });
}

#[test]
fn segments_roll_over_and_bodies_read_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let mut o = opts();
        o.segment_size = 64 * 1024;
        let shard = Shard::open(&data, 0, o.clone()).await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut stored = Vec::new();
        // Concurrent deliveries so single batches span segment boundaries.
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let body = random_bytes(&mut rng, 10_000);
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let r = shard
                        .deliver(std::slice::from_ref(&body), &["a@x"], 0)
                        .await
                        .unwrap();
                    (r[0].uid, body)
                })
            })
            .collect();
        for t in tasks {
            stored.push(t.await);
        }
        // A body larger than a whole segment gets a segment of its own.
        let big = random_bytes(&mut rng, 200_000);
        let r = shard
            .deliver(std::slice::from_ref(&big), &["a@x"], 0)
            .await
            .unwrap();
        stored.push((r[0].uid, big));
        let segs = shard
            .with_mailbox("a@x", "INBOX", |m| {
                m.messages().iter().map(|m| m.body.segment()).max()
            })
            .unwrap()
            .unwrap();
        assert!(segs >= 6, "rolled into {segs} segments");
        for (uid, body) in &stored {
            let meta = shard
                .with_mailbox("a@x", "INBOX", |m| *m.find(*uid).unwrap())
                .unwrap();
            assert_eq!(shard.read_body(meta.body).await.unwrap(), *body);
        }
        crash(shard).await;
        let shard = Shard::open(&data, 0, o).await.unwrap();
        for (uid, body) in &stored {
            let meta = shard
                .with_mailbox("a@x", "INBOX", |m| *m.find(*uid).unwrap())
                .unwrap();
            assert_eq!(shard.read_body(meta.body).await.unwrap(), *body);
        }
    });
}

#[test]
fn fdatasync_failure_poisons_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        shard.deliver(&parts("fine"), &["a@x"], 0).await.unwrap();
        shard.fail_next_sync();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    shard.deliver(&parts(&format!("m{i}")), &["a@x"], 0).await
                })
            })
            .collect();
        for t in tasks {
            match t.await {
                Err(StorageError::Failed { shard: 0, .. }) => {}
                other => panic!("waiter of a failed commit got {other:?}"),
            }
        }
        assert!(shard.is_failed());
        // Everything after fails too, and is never retried into success.
        assert!(matches!(
            shard.deliver(&parts("later"), &["a@x"], 0).await,
            Err(StorageError::Failed { .. })
        ));
        assert!(matches!(
            shard.create_mailbox("a@x", "x").await,
            Err(StorageError::Failed { .. })
        ));
        assert!(matches!(
            shard.snapshot().await,
            Err(StorageError::Failed { .. })
        ));
        // Messages of the failed batch were never shown.
        assert_eq!(uids(&shard, "a@x", "INBOX"), [1]);
    });
}

#[test]
fn write_error_on_read_only_fd_poisons_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        shard.deliver(&parts("fine"), &["a@x"], 0).await.unwrap();
        shard.break_current_segment().await;
        let first = shard.clone();
        let a = glommio::spawn_local(async move { first.deliver(&parts("x"), &["a@x"], 0).await });
        let second = shard.clone();
        let b = glommio::spawn_local(async move {
            second
                .append("a@x", "INBOX", &parts("y"), &FlagUpdate::default(), 0)
                .await
        });
        let (ra, rb) = (a.await, b.await);
        assert!(matches!(ra, Err(StorageError::Failed { .. })), "{ra:?}");
        assert!(matches!(rb, Err(StorageError::Failed { .. })), "{rb:?}");
        let e = shard.ensure_account("new@x").await.unwrap_err();
        assert!(
            e.to_string().contains("00000000.seg"),
            "cause names the file: {e}"
        );
        drop(shard);
        // Nothing unacknowledged came back.
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        assert_eq!(uids(&shard, "a@x", "INBOX"), [1]);
        assert!(!shard.has_account("new@x"));
    });
}

/// Options with 64 KiB segments, for the full-disk tests.
fn small_segments() -> ShardOptions {
    ShardOptions {
        segment_size: 64 << 10,
        ..opts()
    }
}

fn filler(byte: u8, kib: usize) -> Bytes {
    Bytes::from(vec![byte; kib << 10])
}

/// Body of the `i`th message in a@x's INBOX.
async fn nth_body(shard: &Shard, i: usize) -> Bytes {
    let meta = shard
        .with_mailbox("a@x", "INBOX", |m| m.messages()[i])
        .unwrap();
    shard.read_body(meta.body).await.unwrap()
}

/// Waits (up to 5 s) until the shard takes changes again after a stall, by creating new@x.
async fn accepted_again(shard: &Shard) {
    let mut tries = 0;
    while let Err(e) = shard.ensure_account("new@x").await {
        assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
        tries += 1;
        assert!(tries < 100, "changes still refused after 5 s");
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Makes the next `failures` allocations fail, then starts a delivery that needs a
/// new segment (10 KiB, below half: nothing prepared; then 60 KiB that does not fit).
async fn stall_a_commit(
    shard: &Rc<Shard>,
    failures: u32,
) -> glommio::Task<Result<Vec<AppendResult>, StorageError>> {
    shard.fail_allocations(failures);
    shard
        .deliver(&[filler(b'a', 10)], &["a@x"], 0)
        .await
        .unwrap();
    let s = shard.clone();
    let task =
        glommio::spawn_local(async move { s.deliver(&[filler(b'b', 60)], &["a@x"], 0).await });
    glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
    task
}

#[test]
fn a_full_disk_found_while_preparing_a_segment_refuses_changes_until_one_can_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        shard.fail_allocations(2);
        shard
            .deliver(&[filler(b'a', 10)], &["a@x"], 0)
            .await
            .unwrap();
        // Past half of segment 0: segment 1 is prepared in the background, and cannot be.
        shard
            .deliver(&[filler(b'b', 30)], &["a@x"], 0)
            .await
            .unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        let e = shard.ensure_account("new@x").await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
        assert!(e.to_string().contains("No space left"), "{e}");
        assert_eq!(nth_body(&shard, 0).await, filler(b'a', 10));
        assert!(!shard.is_failed());
        // The preparation is retried each second; the third attempt succeeds.
        accepted_again(&shard).await;
        shard
            .deliver(&[filler(b'c', 40)], &["a@x"], 0)
            .await
            .unwrap();
        assert_eq!(shard.prepared_used(), 1, "the prepared segment was used");
        crash(shard).await;
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        assert_eq!(uids(&shard, "a@x", "INBOX"), [1, 2, 3]);
        assert_eq!(nth_body(&shard, 2).await, filler(b'c', 40));
        assert!(shard.has_account("new@x"));
    });
}

#[test]
fn a_commit_that_needs_a_segment_on_a_full_disk_waits_for_one_and_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        let stalled = stall_a_commit(&shard, 2).await;
        // Meanwhile changes are refused at once, and reads still work.
        let e = shard.ensure_account("new@x").await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
        assert_eq!(nth_body(&shard, 0).await, filler(b'a', 10));
        // Once a segment can be made, the waiting delivery goes through and changes resume.
        stalled.await.unwrap();
        shard.ensure_account("new@x").await.unwrap();
        crash(shard).await;
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        assert_eq!(uids(&shard, "a@x", "INBOX"), [1, 2]);
        assert_eq!(nth_body(&shard, 1).await, filler(b'b', 60));
        assert!(shard.has_account("new@x"));
    });
}

#[test]
fn closing_during_a_full_disk_fails_the_stalled_changes_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        let stalled = stall_a_commit(&shard, u32::MAX).await;
        assert!(
            shard.close().await.is_err(),
            "the stalled batch was not written"
        );
        let r = stalled.await;
        assert!(matches!(r, Err(StorageError::Failed { .. })), "{r:?}");
        released(shard).await;
        // Nothing unacknowledged came back.
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        assert_eq!(uids(&shard, "a@x", "INBOX"), [1]);
    });
}

#[test]
fn closing_while_only_the_next_segment_cannot_be_made_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        shard.fail_allocations(u32::MAX);
        // Past half of segment 0: preparing segment 1 fails, nothing waits for it.
        shard
            .deliver(&[filler(b'a', 40)], &["a@x"], 0)
            .await
            .unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            shard.ensure_account("new@x").await.is_err(),
            "changes are refused"
        );
        shard.close().await.unwrap();
        released(shard).await;
        let shard = Shard::open(&data, 0, small_segments()).await.unwrap();
        assert_eq!(nth_body(&shard, 0).await, filler(b'a', 40));
    });
}

#[test]
fn segments_start_small_and_grow_as_they_fill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let o = ShardOptions {
            segment_size: 8 << 20,
            ..opts()
        };
        let shard = Shard::open(&data, 0, o.clone()).await.unwrap();
        let len = |n| std::fs::metadata(seg(&data, n)).unwrap().len();
        assert_eq!(len(0), 1 << 20, "a fresh segment takes 1 MiB, not 8");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let bodies: Vec<Bytes> = (0..12).map(|_| random_bytes(&mut rng, 300 << 10)).collect();
        for b in &bodies {
            shard
                .deliver(std::slice::from_ref(b), &["a@x"], 0)
                .await
                .unwrap();
        }
        while shard.snapshot_running() {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        // 3.6 MB written: the space doubled ahead of the head, never past the segment size.
        assert!([4 << 20, 8 << 20].contains(&len(0)), "{}", len(0));
        for (i, b) in bodies.iter().enumerate() {
            assert_eq!(nth_body(&shard, i).await, *b);
        }
        crash(shard).await;
        let shard = Shard::open(&data, 0, o).await.unwrap();
        for (i, b) in bodies.iter().enumerate() {
            assert_eq!(nth_body(&shard, i).await, *b);
        }
    });
}

#[test]
fn a_full_disk_found_while_growing_the_head_refuses_changes_until_it_can_grow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let o = ShardOptions {
            segment_size: 8 << 20,
            ..opts()
        };
        let shard = Shard::open(&data, 0, o).await.unwrap();
        shard.fail_allocations(2);
        // Past half of the first 1 MiB: growing to 2 MiB fails twice, then works.
        shard
            .deliver(&[filler(b'a', 600)], &["a@x"], 0)
            .await
            .unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        let e = shard.ensure_account("new@x").await.unwrap_err();
        assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
        accepted_again(&shard).await;
        shard
            .deliver(&[filler(b'b', 600)], &["a@x"], 0)
            .await
            .unwrap();
        assert_eq!(nth_body(&shard, 1).await, filler(b'b', 600));
    });
}

#[test]
fn messages_are_hidden_until_durable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        shard.ensure_account("a@x").await.unwrap();
        let seen = shard.mailbox_version("a@x", "INBOX");
        let b = parts("x");
        let mut fut = Box::pin(shard.deliver(&b, &["a@x"], 0));
        // The first poll logs the record; the commit has not run yet.
        assert!(futures_lite::future::poll_once(&mut fut).await.is_none());
        assert_eq!(shard.with_mailbox("a@x", "INBOX", |m| m.exists()), Some(0));
        assert_eq!(shard.mailbox_info("a@x", "INBOX").unwrap().uidnext, 1);
        assert_eq!(shard.mailbox_version("a@x", "INBOX"), seen);
        let r = fut.await.unwrap();
        assert_eq!(shard.with_mailbox("a@x", "INBOX", |m| m.exists()), Some(1));
        assert_eq!(
            shard.mailbox_info("a@x", "INBOX").unwrap().uidnext,
            r[0].uid + 1
        );
        assert_ne!(shard.mailbox_version("a@x", "INBOX"), seen);
    });
}

#[test]
fn idle_wakes_on_durable_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        shard.ensure_account("a@x").await.unwrap();
        let seen = shard.mailbox_version("a@x", "INBOX");
        let s = shard.clone();
        let waiter = glommio::spawn_local(async move {
            s.mailbox_changed("a@x", "INBOX", seen).await;
            s.with_mailbox("a@x", "INBOX", |m| m.exists()).unwrap()
        });
        glommio::executor().yield_task_queue_now().await;
        shard.deliver(&parts("hello"), &["a@x"], 0).await.unwrap();
        assert_eq!(waiter.await, 1, "woken and the message is visible");
        // Deleting a mailbox wakes its watchers too.
        shard.create_mailbox("a@x", "Tmp").await.unwrap();
        let seen = shard.mailbox_version("a@x", "Tmp");
        let s = shard.clone();
        let waiter =
            glommio::spawn_local(async move { s.mailbox_changed("a@x", "Tmp", seen).await });
        shard.delete_mailbox("a@x", "Tmp").await.unwrap();
        waiter.await;
        assert_eq!(shard.mailbox_version("a@x", "Tmp"), 0);
    });
}

#[test]
fn account_defaults_and_mailbox_lifecycle_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let a = "u@x";
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        assert!(shard.ensure_account(a).await.unwrap());
        assert!(!shard.ensure_account(a).await.unwrap());
        let names: Vec<_> = shard
            .list_mailboxes(a)
            .into_iter()
            .map(|m| (m.name, m.special_use, m.subscribed))
            .collect();
        assert_eq!(
            names,
            [
                ("Archive".into(), Some(SpecialUse::Archive), true),
                ("Drafts".into(), Some(SpecialUse::Drafts), true),
                ("INBOX".into(), None, true),
                ("Junk".into(), Some(SpecialUse::Junk), true),
                ("Sent".into(), Some(SpecialUse::Sent), true),
                ("Trash".into(), Some(SpecialUse::Trash), true),
            ]
        );
        let validities: std::collections::HashSet<u32> = shard
            .list_mailboxes(a)
            .iter()
            .map(|m| m.uidvalidity)
            .collect();
        assert_eq!(validities.len(), 6, "distinct UIDVALIDITY per mailbox");

        assert!(matches!(
            shard.create_mailbox(a, "inbox").await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(matches!(
            shard.create_mailbox(a, "Sent").await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(matches!(
            shard.create_mailbox("nobody@x", "a").await,
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            shard.create_mailbox(a, "").await,
            Err(StorageError::InvalidName)
        ));
        shard.create_mailbox(a, "Work").await.unwrap();
        shard.create_mailbox(a, "Work/2024").await.unwrap();
        shard.create_mailbox(a, "Workshop").await.unwrap();
        shard.deliver(&parts("w"), &[a], 0).await.unwrap();
        shard.copy(a, "INBOX", "Work/2024", &[1]).await.unwrap();
        let old_v = shard.mailbox_info(a, "Work/2024").unwrap().uidvalidity;

        // Rename with inferiors; a sibling sharing the prefix is untouched.
        shard.rename_mailbox(a, "Work", "Job").await.unwrap();
        assert!(matches!(
            shard.rename_mailbox(a, "Job", "Job/sub").await,
            Err(StorageError::NotPermitted)
        ));
        assert!(matches!(
            shard.rename_mailbox(a, "Job", "Sent").await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(matches!(
            shard.rename_mailbox(a, "Job", "INBOX").await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(matches!(
            shard.rename_mailbox(a, "Nope", "X").await,
            Err(StorageError::NotFound)
        ));
        let moved = shard.mailbox_info(a, "Job/2024").unwrap();
        assert_eq!(moved.exists, 1);
        assert!(
            moved.uidvalidity > old_v,
            "renamed mailbox gets a new UIDVALIDITY"
        );
        assert!(shard.mailbox_info(a, "Work/2024").is_none());
        assert!(shard.mailbox_info(a, "Workshop").is_some());

        // Renaming INBOX moves its messages and leaves it empty, UIDs not reused.
        let inbox_v = shard.mailbox_info(a, "INBOX").unwrap().uidvalidity;
        shard.rename_mailbox(a, "Inbox", "Old Inbox").await.unwrap();
        let inbox = shard.mailbox_info(a, "INBOX").unwrap();
        assert_eq!(
            (inbox.exists, inbox.uidnext, inbox.uidvalidity),
            (0, 2, inbox_v)
        );
        let old = shard.mailbox_info(a, "Old Inbox").unwrap();
        assert_eq!(old.exists, 1);
        assert_ne!(old.uidvalidity, inbox_v);

        assert!(matches!(
            shard.delete_mailbox(a, "inbox").await,
            Err(StorageError::NotPermitted)
        ));
        assert!(matches!(
            shard.delete_mailbox(a, "nope").await,
            Err(StorageError::NotFound)
        ));
        shard.delete_mailbox(a, "Job").await.unwrap();
        assert!(
            shard.mailbox_info(a, "Job/2024").is_some(),
            "inferiors stay"
        );

        shard.set_subscribed(a, "Junk", false).await.unwrap();
        shard.set_subscribed(a, "Not/There", true).await.unwrap();
        shard.set_subscribed(a, "Not/There", true).await.unwrap();
        let subs = shard.subscriptions(a);
        let before = shard.list_mailboxes(a);
        let live = durable_view(shard.index_snapshot());

        shard.close().await.unwrap();
        assert!(matches!(
            shard.create_mailbox(a, "late").await,
            Err(StorageError::Closed { .. })
        ));
        drop(shard);
        for with_snapshot in [true, false] {
            if !with_snapshot {
                std::fs::remove_file(shard_dir(&data).join("snapshot")).unwrap();
            }
            let shard = Shard::open(&data, 0, opts()).await.unwrap();
            assert_eq!(shard.subscriptions(a), subs);
            assert!(subs.contains(&"Not/There".to_string()) && !subs.contains(&"Junk".to_string()));
            assert_eq!(shard.list_mailboxes(a), before);
            assert_eq!(shard.index_snapshot(), live);
        }
    });
}

#[test]
fn store_flags_keywords_and_unchangedsince() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let a = "u@x";
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        for i in 0..4 {
            shard
                .deliver(&parts(&format!("m{i}")), &[a], 0)
                .await
                .unwrap();
        }
        let kw = |s: u8, k: &[&str]| FlagUpdate {
            system: s,
            keywords: k.iter().map(|s| s.to_string()).collect(),
        };
        let o = shard
            .store_flags(
                a,
                "INBOX",
                &[2, 1, 9],
                FlagOp::Add,
                &kw(flags::SEEN, &["$Work", "Later"]),
                None,
            )
            .await
            .unwrap();
        let m1 = o.updated[0].1;
        assert_eq!(o.updated, [(1, m1), (2, m1)]);
        assert!(o.modified_since_failed.is_empty());
        let flags_of = |uid| {
            shard
                .with_mailbox(a, "INBOX", |m| m.find(uid).unwrap().flags)
                .unwrap()
        };
        assert_eq!(flags_of(1), 1 | 1 << 8 | 1 << 9);
        assert_eq!(
            shard
                .with_mailbox(a, "INBOX", |m| m.keywords().to_vec())
                .unwrap(),
            ["$Work", "Later"]
        );
        // Case-insensitive keyword match; removing an unknown keyword defines nothing.
        let o = shard
            .store_flags(
                a,
                "INBOX",
                &[1],
                FlagOp::Remove,
                &kw(0, &["$work", "Unknown"]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(o.updated.len(), 1);
        assert_eq!(flags_of(1), 1 | 1 << 9);
        assert_eq!(
            shard
                .with_mailbox(a, "INBOX", |m| m.keywords().len())
                .unwrap(),
            2
        );
        // No-op store leaves MODSEQ alone.
        let hm = shard.mailbox_info(a, "INBOX").unwrap().highest_modseq;
        let o = shard
            .store_flags(a, "INBOX", &[1], FlagOp::Add, &kw(flags::SEEN, &[]), None)
            .await
            .unwrap();
        assert!(o.updated.is_empty());
        assert_eq!(shard.mailbox_info(a, "INBOX").unwrap().highest_modseq, hm);
        // UNCHANGEDSINCE: message 1 changed after m1, message 3 did not.
        let o = shard
            .store_flags(
                a,
                "INBOX",
                &[1, 3],
                FlagOp::Replace,
                &kw(flags::FLAGGED, &[]),
                Some(m1),
            )
            .await
            .unwrap();
        assert_eq!(o.modified_since_failed, [1]);
        assert_eq!(o.updated.iter().map(|u| u.0).collect::<Vec<_>>(), [3]);
        assert!(o.updated[0].1 > hm);
        assert_eq!(flags_of(3), u64::from(flags::FLAGGED));
        assert_eq!(shard.mailbox_info(a, "INBOX").unwrap().unseen, 2);

        // 56 keywords fit, the 57th does not, and nothing is half-applied.
        let many: Vec<String> = (0..54).map(|i| format!("k{i}")).collect();
        shard
            .store_flags(
                a,
                "INBOX",
                &[4],
                FlagOp::Add,
                &FlagUpdate {
                    system: 0,
                    keywords: many,
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            shard
                .with_mailbox(a, "INBOX", |m| m.keywords().len())
                .unwrap(),
            56
        );
        let r = shard
            .store_flags(
                a,
                "INBOX",
                &[4],
                FlagOp::Add,
                &kw(0, &["one-too-many"]),
                None,
            )
            .await;
        assert!(matches!(r, Err(StorageError::TooManyKeywords)));
        let r = shard
            .append(a, "INBOX", &parts("x"), &kw(0, &["another"]), 0)
            .await;
        assert!(matches!(r, Err(StorageError::TooManyKeywords)));
        assert_eq!(flags_of(4).count_ones(), 54);
        let live = durable_view(shard.index_snapshot());
        crash(shard).await;
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        assert_eq!(shard.index_snapshot(), live);
    });
}

#[test]
fn expunge_copy_move_and_uids_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let a = "u@x";
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        for i in 0..5 {
            shard
                .deliver(&parts(&format!("m{i}")), &[a], 0)
                .await
                .unwrap();
        }
        let kw = FlagUpdate {
            system: flags::ANSWERED,
            keywords: vec!["$Label1".into()],
        };
        shard
            .store_flags(a, "INBOX", &[2], FlagOp::Add, &kw, None)
            .await
            .unwrap();

        let hm = shard.mailbox_info(a, "INBOX").unwrap().highest_modseq;
        let m = shard.expunge(a, "INBOX", &[5, 4, 77]).await.unwrap();
        assert!(m > hm);
        assert_eq!(
            shard.expunge(a, "INBOX", &[77]).await.unwrap(),
            m,
            "nothing to expunge"
        );
        assert_eq!(uids(&shard, a, "INBOX"), [1, 2, 3]);

        // COPY keeps flags (keywords remapped by name) and bodies, in source UID order.
        shard.create_mailbox(a, "Keep").await.unwrap();
        shard
            .store_flags(
                a,
                "Keep",
                &[],
                FlagOp::Add,
                &FlagUpdate {
                    system: 0,
                    keywords: vec!["Other".into()],
                },
                None,
            )
            .await
            .unwrap();
        let c = shard.copy(a, "INBOX", "Keep", &[3, 2, 99]).await.unwrap();
        assert_eq!(
            c.uidvalidity,
            shard.mailbox_info(a, "Keep").unwrap().uidvalidity
        );
        assert_eq!(c.pairs, [(2, 1), (3, 2)]);
        let (kws, f, body) = shard
            .with_mailbox(a, "Keep", |m| {
                (
                    m.keywords().to_vec(),
                    m.find(1).unwrap().flags,
                    m.find(1).unwrap().body,
                )
            })
            .unwrap();
        assert_eq!(kws, ["$Label1"], "only used keywords are carried over");
        assert_eq!(f, u64::from(flags::ANSWERED) | 1 << 8);
        let src_body = shard
            .with_mailbox(a, "INBOX", |m| m.find(2).unwrap().body)
            .unwrap();
        assert_eq!(body, src_body, "copy references the same body");
        assert_eq!(shard.read_body(body).await.unwrap(), "m1".as_bytes());

        // MOVE = copy + expunge.
        let mv = shard
            .move_messages(a, "INBOX", "Trash", &[1, 3])
            .await
            .unwrap();
        assert_eq!(mv.pairs, [(1, 1), (3, 2)]);
        assert_eq!(uids(&shard, a, "INBOX"), [2]);
        assert_eq!(uids(&shard, a, "Trash"), [1, 2]);
        assert!(matches!(
            shard.copy(a, "INBOX", "Nope", &[2]).await,
            Err(StorageError::NotFound)
        ));

        // Expunge the highest UIDs, restart (crash and clean), and UIDs still move on.
        shard.expunge(a, "Trash", &[1, 2]).await.unwrap();
        crash(shard).await;
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        assert_eq!(uids(&shard, a, "INBOX"), [2]);
        assert_eq!(shard.deliver(&parts("n"), &[a], 0).await.unwrap()[0].uid, 6);
        let t = shard
            .move_messages(a, "INBOX", "Trash", &[6])
            .await
            .unwrap();
        assert_eq!(t.pairs, [(6, 3)]);
        shard.close().await.unwrap();
        drop(shard);
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        assert_eq!(shard.deliver(&parts("n"), &[a], 0).await.unwrap()[0].uid, 7);
        assert_eq!(shard.mailbox_info(a, "Trash").unwrap().uidnext, 4);
    });
}

#[test]
fn queue_entries_survive_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let rcpts = vec!["x@far".to_string(), "y@far".to_string()];
        let a = shard
            .queue_add("me@here", &rcpts, &parts("one"))
            .await
            .unwrap();
        let b = shard
            .queue_add("", &rcpts[..1], &parts("two"))
            .await
            .unwrap();
        assert_ne!(a, b);
        shard.queue_retry(b, 3, 12345).await.unwrap();
        shard.queue_done(a).await.unwrap();
        assert!(matches!(
            shard.queue_done(a).await,
            Err(StorageError::NotFound)
        ));
        crash(shard).await;
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let q = shard.queue_pending();
        assert_eq!(q.len(), 1);
        assert_eq!(
            (
                q[0].id,
                q[0].sender.as_str(),
                q[0].attempts,
                q[0].next_attempt
            ),
            (b, "", 3, 12345)
        );
        assert_eq!(q[0].rcpts, ["x@far"]);
        assert_eq!(shard.read_body(q[0].body).await.unwrap(), "two".as_bytes());
        let c = shard
            .queue_add("me@here", &rcpts, &parts("three"))
            .await
            .unwrap();
        assert!(c > b, "queue ids never reused");
    });
}

#[test]
fn a_shard_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        assert!(matches!(
            Shard::open(&data, 0, opts()).await,
            Err(StorageError::Locked { .. })
        ));
        drop(shard);
        Shard::open(&data, 0, opts()).await.unwrap();
    });
}

#[test]
fn body_bitrot_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        shard
            .deliver(&parts("precious bytes"), &["a@x"], 0)
            .await
            .unwrap();
        let body = shard
            .with_mailbox("a@x", "INBOX", |m| m.find(1).unwrap().body)
            .unwrap();
        let path = seg(&data, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[body.offset() as usize + 3] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            shard.read_body(body).await,
            Err(StorageError::Corrupt { .. })
        ));
        let bogus = BodyRef {
            segment: 0,
            offset: 3,
            len: 5,
        };
        assert!(shard.read_body(bogus).await.is_err());
        let _ = Pos::default();
    });
}

#[test]
fn zero_filled_segments_are_prepared_ahead_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let mut o = opts();
        o.segment_size = 64 * 1024;
        o.preallocate = Preallocate::ZeroFill;
        let shard = Shard::open(&data, 0, o.clone()).await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut stored = Vec::new();
        for _ in 0..30 {
            let body = random_bytes(&mut rng, 9000);
            let r = shard
                .deliver(std::slice::from_ref(&body), &["a@x"], 0)
                .await
                .unwrap();
            stored.push((r[0].uid, body));
            // Give the preparation task a chance to run between commits sometimes.
            if stored.len() % 3 == 0 {
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        assert!(shard.log_end().segment >= 3);
        assert!(
            shard.prepared_used() >= 1,
            "a prepared segment was rolled into"
        );
        crash(shard).await;
        // A prepared next segment may be left behind; it holds no data.
        let shard = Shard::open(&data, 0, o).await.unwrap();
        let leftovers = std::fs::read_dir(shard_dir(&data))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".prep")
            })
            .count();
        assert_eq!(leftovers, 0, "stale prepared segments are removed at open");
        for (uid, body) in &stored {
            let meta = shard
                .with_mailbox("a@x", "INBOX", |m| *m.find(*uid).unwrap())
                .unwrap();
            assert_eq!(shard.read_body(meta.body).await.unwrap(), *body);
        }
        // Rolled segments that came from preparation are full length.
        let len = std::fs::metadata(seg(&data, 2)).unwrap().len();
        assert_eq!(len, 64 * 1024);
    });
}

#[test]
fn reading_a_body_not_yet_written_waits_for_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let rcpts = vec!["x@far".to_string()];
        let body = parts("queued body");
        let mut fut = Box::pin(shard.queue_add("me@here", &rcpts, &body));
        assert!(futures_lite::future::poll_once(&mut fut).await.is_none());
        let pending = shard.queue_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            shard.read_body(pending[0].body).await.unwrap(),
            "queued body".as_bytes()
        );
        assert_eq!(fut.await.unwrap(), pending[0].id);
    });
}

/// Records what the usage observer was told, last value per account.
#[derive(Default)]
struct Usage(RefCell<HashMap<String, u64>>);

impl StorageObserver for Usage {
    fn append(&self, _: u64) {}
    fn commit(&self, _: usize, _: usize, _: u64) {}
    fn read(&self, _: u64) {}
    fn wants_usage(&self) -> bool {
        true
    }
    fn usage(&self, account: &str, bytes: u64) {
        self.0.borrow_mut().insert(account.to_string(), bytes);
    }
}

#[test]
fn usage_is_reported_after_deliveries_expunges_and_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let usage = Rc::new(Usage::default());
        let mut o = opts();
        o.observer = Some(usage.clone());
        let shard = Shard::open(&data, 0, o).await.unwrap();
        let first = shard
            .deliver(&parts("0123456789"), &["a@x", "b@x"], 0)
            .await
            .unwrap();
        shard.deliver(&parts("abcde"), &["a@x"], 0).await.unwrap();
        assert_eq!(usage.0.borrow().get("a@x"), Some(&15));
        assert_eq!(usage.0.borrow().get("b@x"), Some(&10));
        shard
            .expunge("a@x", "INBOX", &[first[0].uid])
            .await
            .unwrap();
        assert_eq!(usage.0.borrow().get("a@x"), Some(&5));
        let mut all = shard.account_usage();
        all.sort();
        assert_eq!(all, vec![("a@x".to_string(), 5), ("b@x".to_string(), 10)]);
        crash(shard).await;
        // After a restart the totals come from the recovered index.
        let shard = Shard::open(&data, 0, opts()).await.unwrap();
        let mut all = shard.account_usage();
        all.sort();
        assert_eq!(all, vec![("a@x".to_string(), 5), ("b@x".to_string(), 10)]);
    });
}

/// A shard with small segments holding `n` random bodies in INBOX of a@x, every third also
/// copied to Archive (shared body) and one queued; returns each INBOX uid with its body.
async fn filled_shard(data: &Path, n: usize) -> (Rc<Shard>, Vec<(u32, Bytes)>, Bytes) {
    let mut o = opts();
    o.segment_size = 64 * 1024;
    let shard = Shard::open(data, 0, o).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut stored = Vec::new();
    for i in 0..n {
        let len = 1000 + rng.gen_range(0..3000);
        let body = random_bytes(&mut rng, len);
        let r = shard
            .deliver(std::slice::from_ref(&body), &["a@x"], 0)
            .await
            .unwrap();
        if i % 3 == 0 {
            shard
                .copy("a@x", "INBOX", "Archive", &[r[0].uid])
                .await
                .unwrap();
        }
        stored.push((r[0].uid, body));
    }
    let queued = random_bytes(&mut rng, 5000);
    shard
        .queue_add("s@x", &["r@far".to_string()], std::slice::from_ref(&queued))
        .await
        .unwrap();
    (shard, stored, queued)
}

/// Every kept message, the Archive copies (of every third message stored) and the queue entry
/// read back byte-exact.
async fn assert_bodies(shard: &Shard, kept: &[(u32, Bytes)], all: &[(u32, Bytes)], queued: &Bytes) {
    for (uid, body) in kept {
        let meta = shard
            .with_mailbox("a@x", "INBOX", |m| *m.find(*uid).unwrap())
            .unwrap();
        assert_eq!(
            shard.read_body(meta.body).await.unwrap(),
            *body,
            "uid {uid}"
        );
    }
    let archived: Vec<_> = shard
        .with_mailbox("a@x", "Archive", |m| m.messages().to_vec())
        .unwrap();
    assert_eq!(archived.len(), all.len().div_ceil(3));
    for (m, (_, body)) in archived.iter().zip(all.iter().step_by(3)) {
        assert_eq!(
            shard.read_body(m.body).await.unwrap(),
            *body,
            "Archive uid {}",
            m.uid
        );
    }
    let q = shard.queue_pending();
    assert_eq!(shard.read_body(q[0].body).await.unwrap(), *queued);
}

fn segment_files(data: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(shard_dir(data))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn compaction_deletes_dead_segments_and_keeps_every_live_body() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let (shard, stored, queued) = filled_shard(&data, 300).await;
        assert_eq!(shard.compact().await.unwrap(), 0, "nothing is dead yet");
        // Expunge nine in ten INBOX messages (their Archive copies stay).
        let (gone, kept): (Vec<_>, Vec<_>) = stored.iter().cloned().partition(|(u, _)| u % 10 != 0);
        let uids: Vec<u32> = gone.iter().map(|(u, _)| *u).collect();
        shard.expunge("a@x", "INBOX", &uids).await.unwrap();
        // A reference looked up before compaction still reads after its segment is gone.
        let early = shard
            .with_mailbox("a@x", "INBOX", |m| m.messages()[0])
            .unwrap();
        let before = segment_files(&data);
        let deleted = shard.compact().await.unwrap();
        let after = segment_files(&data);
        assert!(deleted >= 3, "deleted {deleted} segments of {before:?}");
        let went = before.iter().filter(|s| !after.contains(s)).count();
        assert_eq!(went, deleted as usize, "{before:?} -> {after:?}");
        assert!(
            after[0] > before[0],
            "the oldest segments went: {before:?} -> {after:?}"
        );
        assert!(shard.read_body(early.body).await.is_ok());
        assert_bodies(&shard, &kept, &stored, &queued).await;
        let ix = durable_view(shard.index_snapshot());
        crash(shard).await;
        let shard = Shard::open(&data, 0, opts_small()).await.unwrap();
        assert_eq!(durable_view(shard.index_snapshot()), ix);
        assert_bodies(&shard, &kept, &stored, &queued).await;
        assert_eq!(shard.compact().await.unwrap(), 0, "compaction is done");
    });
}

fn opts_small() -> ShardOptions {
    let mut o = opts();
    o.segment_size = 64 * 1024;
    o
}

#[test]
fn compaction_interrupted_at_any_stage_recovers() {
    for stage in [1u8, 2] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        run(move || async move {
            let (shard, stored, queued) = filled_shard(&data, 200).await;
            let (gone, kept): (Vec<_>, Vec<_>) =
                stored.iter().cloned().partition(|(u, _)| u % 4 != 0);
            let uids: Vec<u32> = gone.iter().map(|(u, _)| *u).collect();
            shard.expunge("a@x", "INBOX", &uids).await.unwrap();
            let before = segment_files(&data);
            shard.stop_compaction_at(stage);
            shard.compact_oldest().await.unwrap();
            assert_eq!(
                segment_files(&data),
                before,
                "stage {stage}: nothing deleted yet"
            );
            let ix = durable_view(shard.index_snapshot());
            crash(shard).await;
            // Recovery replays the move (stage 1) or starts from the snapshot (stage 2).
            let shard = Shard::open(&data, 0, opts_small()).await.unwrap();
            assert_eq!(durable_view(shard.index_snapshot()), ix, "stage {stage}");
            assert_bodies(&shard, &kept, &stored, &queued).await;
            assert!(shard.compact().await.unwrap() >= 1);
            assert!(segment_files(&data)[0] > before[0], "stage {stage}");
            assert_bodies(&shard, &kept, &stored, &queued).await;
        });
    }
}

#[test]
fn a_compacted_shard_without_its_snapshot_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let (shard, stored, _) = filled_shard(&data, 200).await;
        let uids: Vec<u32> = stored.iter().map(|(u, _)| *u).collect();
        shard.expunge("a@x", "INBOX", &uids).await.unwrap();
        assert!(shard.compact().await.unwrap() >= 1);
        crash(shard).await;
        std::fs::remove_file(shard_dir(&data).join("snapshot")).unwrap();
        // Replaying what is left would build a wrong index: refuse, loudly.
        match Shard::open(&data, 0, opts_small()).await {
            Err(StorageError::Corrupt { reason, .. }) => {
                assert!(reason.contains("compacted away"), "{reason}")
            }
            other => panic!("opened without the snapshot: {other:?}"),
        }
    });
}

#[test]
fn deleted_mail_is_compacted_in_the_background_without_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    run(move || async move {
        let (shard, stored, _) = filled_shard(&data, 200).await;
        crash(shard).await;
        let mut o = opts_small();
        o.auto_compact = true;
        o.compact_check = std::time::Duration::from_millis(20);
        let shard = Shard::open(&data, 0, o).await.unwrap();
        let before = segment_files(&data);
        let uids: Vec<u32> = stored.iter().map(|(u, _)| *u).collect();
        shard.expunge("a@x", "INBOX", &uids).await.unwrap();
        // Nothing is written after the expunge: only the periodic look can find the garbage.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while segment_files(&data)[0] == before[0] {
            assert!(
                std::time::Instant::now() < deadline,
                "no compaction: {before:?}"
            );
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        while shard.compacting() {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        let archived = shard
            .with_mailbox("a@x", "Archive", |m| m.messages().to_vec())
            .unwrap();
        for (m, (_, body)) in archived.iter().zip(stored.iter().step_by(3)) {
            assert_eq!(shard.read_body(m.body).await.unwrap(), *body);
        }
        shard.close().await.unwrap();
    });
}

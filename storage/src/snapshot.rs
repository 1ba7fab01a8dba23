//! rkyv snapshots of the index with the log position they cover.
//!
//! File layout: `magic[8] shard u32 segment u32 offset u64 len u64 crc32c u32 reserved u32`,
//! then `len` bytes of rkyv data. The CRC covers the 32 header bytes before it plus the data.

use crate::error::StorageError;
use crate::index::Index;
use crate::log::{write_all_at, Pos};
use glommio::io::{BufferedFile, Directory};
use std::path::Path;

/// Snapshot file name inside the shard directory.
pub(crate) const FILE_NAME: &str = "snapshot";
const TMP_NAME: &str = "snapshot.tmp";
/// Magic and layout version; a snapshot with another one is ignored (replayed instead). Once
/// compaction has deleted segments the snapshot stands for them, so a layout change must keep
/// reading the old one (convert it), not bump this and ignore it.
const MAGIC: &[u8; 8] = b"RPSNAP01";
const HEADER_LEN: usize = 40;

/// Serializes `index`, which reflects exactly the log up to `pos`.
pub(crate) fn encode(shard: u32, pos: Pos, index: &Index) -> Result<Vec<u8>, String> {
    let data = rkyv::to_bytes::<rkyv::rancor::Error>(index).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&pos.segment.to_le_bytes());
    out.extend_from_slice(&pos.offset.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Parses a snapshot file; `Err` says why it cannot be used.
pub(crate) fn decode(shard: u32, bytes: &[u8]) -> Result<(Pos, Index), String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not a snapshot of this format".into());
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(a)
    };
    if u32_at(8) != shard {
        return Err(format!("snapshot belongs to shard {}", u32_at(8)));
    }
    let pos = Pos {
        segment: u32_at(12),
        offset: u64_at(16),
    };
    let len = u64_at(24);
    let data = &bytes[HEADER_LEN..];
    if data.len() as u64 != len {
        return Err("length mismatch".into());
    }
    if crc32c::crc32c_append(crc32c::crc32c(&bytes[..32]), data) != u32_at(32) {
        return Err("CRC mismatch".into());
    }
    // rkyv needs aligned input.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(data.len());
    aligned.extend_from_slice(data);
    let mut index =
        rkyv::from_bytes::<Index, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())?;
    index.recount_bytes();
    index.check()?;
    Ok((pos, index))
}

/// Writes a snapshot atomically: temp file, fdatasync, rename, directory fsync.
pub(crate) async fn write(dir: &Path, bytes: Vec<u8>) -> Result<(), StorageError> {
    let tmp = dir.join(TMP_NAME);
    let mut file = BufferedFile::create(&tmp)
        .await
        .map_err(|e| StorageError::io(&tmp, e))?;
    write_all_at(&file, &tmp, bytes, 0).await?;
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io(&tmp, e))?;
    let path = dir.join(FILE_NAME);
    file.rename(&path)
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    file.close().await.map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir).await
}

/// Loads the snapshot of `dir`, if there is a usable one.
pub(crate) async fn load(dir: &Path, shard: u32) -> Result<Option<(Pos, Index)>, StorageError> {
    let path = dir.join(FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let file = BufferedFile::open(&path)
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    let data = file
        .read_at(0, size as usize)
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    let _ = file.close().await;
    match decode(shard, &data) {
        Ok(v) => Ok(Some(v)),
        Err(reason) => {
            // While the log still holds everything, replaying it all is slower, not wrong;
            // recovery refuses to open once compaction deleted the segments it stands for.
            tracing::warn!(path = %path.display(), %reason, "ignoring unusable snapshot");
            Ok(None)
        }
    }
}

/// fsyncs a directory through the executor.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| StorageError::io(dir, e))?;
    d.sync().await.map_err(|e| StorageError::io(dir, e))?;
    d.close().await.map_err(|e| StorageError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn sample() -> Index {
        let mut ix = Index::default();
        ix.apply(&Record::AccountCreated { account: "a" }).unwrap();
        ix.apply(&Record::MailboxCreated {
            account: "a",
            name: "INBOX",
            uidvalidity: 3,
            special_use: None,
        })
        .unwrap();
        ix
    }

    #[test]
    fn encode_decode_round_trip() {
        let ix = sample();
        let pos = Pos {
            segment: 2,
            offset: 99,
        };
        let bytes = encode(7, pos, &ix).unwrap();
        let (p, back) = decode(7, &bytes).unwrap();
        assert_eq!(p, pos);
        assert_eq!(back, ix);
        assert!(decode(8, &bytes).is_err(), "other shard");
    }

    #[test]
    fn any_damage_is_detected() {
        let bytes = encode(1, Pos::default(), &sample()).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 1;
            if (36..40).contains(&i) {
                continue; // reserved bytes
            }
            assert!(decode(1, &b).is_err(), "flip at {i}");
        }
        assert!(decode(1, &bytes[..bytes.len() - 1]).is_err());
    }
}

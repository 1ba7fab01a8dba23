//! The data directory manifest: format version and shard count, fixed at creation.

use crate::error::StorageError;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Most shards a data directory may have.
pub const MAX_SHARDS: u32 = 4096;
const FILE_NAME: &str = "MANIFEST";
const MAGIC_LINE: &str = "ringpost-data";

/// Contents of `data_dir/MANIFEST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// On-disk format version.
    pub version: u32,
    /// Number of shards, fixed when the data directory was created.
    pub shards: u32,
}

impl Manifest {
    /// Reads the manifest of `data_dir`, or creates the directory and a manifest with `shards`
    /// shards. An existing manifest wins: its shard count is returned even if `shards` differs.
    pub fn open_or_create(data_dir: &Path, shards: u32) -> Result<Manifest, StorageError> {
        let path = data_dir.join(FILE_NAME);
        if path.exists() {
            return Manifest::open(data_dir);
        }
        if shards == 0 || shards > MAX_SHARDS {
            return Err(StorageError::Manifest {
                path,
                reason: format!("shard count {shards} out of range 1..={MAX_SHARDS}"),
            });
        }
        fs::create_dir_all(data_dir).map_err(|e| StorageError::io(data_dir, e))?;
        let manifest = Manifest {
            version: FORMAT_VERSION,
            shards,
        };
        write_atomic(data_dir, FILE_NAME, manifest.render().as_bytes())?;
        Ok(manifest)
    }

    /// Reads the manifest of `data_dir`; never creates anything.
    pub fn open(data_dir: &Path) -> Result<Manifest, StorageError> {
        let path = data_dir.join(FILE_NAME);
        let text = fs::read_to_string(&path).map_err(|e| StorageError::io(&path, e))?;
        Manifest::parse(&text).map_err(|reason| StorageError::Manifest { path, reason })
    }

    /// The directory of shard `id` inside `data_dir`.
    pub fn shard_dir(data_dir: &Path, id: u32) -> PathBuf {
        data_dir.join("shards").join(format!("{id:03}"))
    }

    fn render(&self) -> String {
        format!(
            "{MAGIC_LINE}\nversion = {}\nshards = {}\n",
            self.version, self.shards
        )
    }

    fn parse(text: &str) -> Result<Manifest, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC_LINE) {
            return Err("not a ringpost manifest".into());
        }
        let (mut version, mut shards) = (None, None);
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("malformed line {line:?}"))?;
            let value: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad number in {line:?}"))?;
            match key.trim() {
                "version" => version = Some(value),
                "shards" => shards = Some(value),
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        let version = version.ok_or("missing version")?;
        let shards = shards.ok_or("missing shards")?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(format!(
                "format version {version} not supported (this build reads {FORMAT_VERSION})"
            ));
        }
        if shards == 0 || shards > MAX_SHARDS {
            return Err(format!("shard count {shards} out of range"));
        }
        Ok(Manifest { version, shards })
    }
}

/// Writes `dir/name` atomically: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = fs::File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(data).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_open_keeps_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open_or_create(dir.path(), 16).unwrap();
        assert_eq!(
            m,
            Manifest {
                version: 1,
                shards: 16
            }
        );
        // A later start with another count keeps the recorded one.
        assert_eq!(Manifest::open_or_create(dir.path(), 4).unwrap().shards, 16);
        assert_eq!(Manifest::open(dir.path()).unwrap().shards, 16);
        assert!(!dir.path().join("MANIFEST.tmp").exists());
    }

    #[test]
    fn open_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Manifest::open(dir.path()),
            Err(StorageError::Io { .. })
        ));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn malformed_manifest_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "hello\n",
            "ringpost-data\nversion = 1\n",
            "ringpost-data\nversion = 9\nshards = 2\n",
            "ringpost-data\nversion = 1\nshards = 0\n",
            "ringpost-data\nversion = x\nshards = 2\n",
        ] {
            fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            assert!(
                matches!(
                    Manifest::open(dir.path()),
                    Err(StorageError::Manifest { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_shards_refused_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Manifest::open_or_create(dir.path(), 0).is_err());
    }
}

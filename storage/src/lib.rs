//! TEMPORARY stub in main until the storage branch lands.
use std::path::Path;
/// Manifest.
pub struct Manifest {
    /// Version.
    pub version: u32,
    /// Shards.
    pub shards: u32,
}
/// Error.
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct StorageError;
impl Manifest {
    /// Open or create.
    pub fn open_or_create(_d: &Path, shards: u32) -> Result<Manifest, StorageError> {
        Ok(Manifest { version: 1, shards })
    }
    /// Open.
    pub fn open(_d: &Path) -> Result<Manifest, StorageError> {
        Ok(Manifest {
            version: 1,
            shards: 16,
        })
    }
}

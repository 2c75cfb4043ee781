//! The manifest: the one file that says which blocks make up the store and from which log
//! positions the head is rebuilt. A checkpoint writes new blocks first, then replaces the manifest
//! atomically (temporary file, fsync, rename, fsync of the directory); blocks it does not name are
//! leftovers of an interrupted checkpoint and are deleted at start.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;
pub const FILE_NAME: &str = "manifest.json";

/// One block as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// File name inside the tenant's directory.
    pub file: String,
    /// Blocks with a higher sequence were written later; their samples win on equal timestamps.
    pub seq: u64,
    /// The time ranges the block holds every sample of, as of its cut: `[start, end)` in ms.
    pub cover: (i64, i64),
    /// Per partition of the `metrics` topic, the log position at the cut: every sample of
    /// `cover` from a record before it is in this block (or a block it was merged with).
    pub cut: BTreeMap<u32, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Where consumption resumes: the oldest record whose samples are still only in the head.
    pub positions: Vec<(String, u32, u64)>,
    pub next_seq: u64,
    pub tenants: BTreeMap<String, Vec<BlockRef>>,
}

#[derive(Serialize, Deserialize)]
struct ManifestFile {
    version: u32,
    crc32c: u32,
    body: Body,
}

/// Why the manifest cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("manifest {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    State(#[from] strata_durable::Error),
}

fn crc(body: &Body) -> u32 {
    crc32c::crc32c(&serde_json::to_vec(body).expect("manifest serialises"))
}

/// Reads the manifest of `dir`; none yet is an empty store.
pub fn read(dir: &Path) -> Result<Body, ManifestError> {
    let path = dir.join(FILE_NAME);
    let bytes = match strata_durable::read(&path)? {
        None => return Ok(Body::default()),
        Some(strata_durable::Contents::Checked(b) | strata_durable::Contents::Legacy(b)) => b,
    };
    let bad = |reason: String| ManifestError::Corrupt { path: path.clone(), reason };
    let f: ManifestFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if f.version != VERSION {
        return Err(bad(format!("format version {} is unknown", f.version)));
    }
    let computed = crc(&f.body);
    if f.crc32c != computed {
        return Err(bad(format!("crc32c {computed:08x} does not match stored {:08x}", f.crc32c)));
    }
    Ok(f.body)
}

/// Replaces the manifest of `dir` atomically.
pub fn write(dir: &Path, body: &Body) -> Result<(), ManifestError> {
    let path = dir.join(FILE_NAME);
    let f = ManifestFile { version: VERSION, crc32c: crc(body), body: body.clone() };
    strata_durable::write(&path, &serde_json::to_vec(&f).expect("manifest serialises"))?;
    Ok(())
}

/// Makes renames and creations in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), Body::default());
        let mut body = Body { positions: vec![("metrics".into(), 0, 42)], next_seq: 3, ..Body::default() };
        body.tenants.insert(
            "acme".into(),
            vec![BlockRef { file: "1.block".into(), seq: 1, cover: (0, 7_200_000), cut: [(0, 40)].into() }],
        );
        write(dir.path(), &body).unwrap();
        assert_eq!(read(dir.path()).unwrap(), body);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(2).position(|w| w == b"42").unwrap();
        bytes[at + 1] = b'3';
        std::fs::write(&path, bytes).unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(matches!(&err, ManifestError::State(e) if e.is_damage()), "{err}");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}

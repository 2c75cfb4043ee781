//! State files: small files that a component rewrites whole (tenants, checkpoints, manifests,
//! consumer-group offsets) and must find intact, or know to be damaged, after a crash.
//!
//! [`write`] makes a file durable in four steps: the framed contents go to `<name>.tmp`, the temp
//! file is fsync'd, renamed over `<name>`, and the directory is fsync'd. A crash before the rename
//! leaves the old file and a stray temp file ([`remove_temps`] clears those); after it, the new
//! file. [`read`] checks the frame: a magic, a format version, the body's length and its CRC32C,
//! so a torn, truncated or flipped file is an error that names the file and what is wrong, never
//! contents that a caller would trust.
//!
//! Files written before the frame existed are returned as [`Contents::Legacy`], so that their
//! owners can go on reading their old format (and check it as they did) until the next write.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"STRATA";
const FRAME_VERSION: u16 = 1;
/// Magic, frame version, body length, CRC32C of the body.
const HEADER_BYTES: usize = 6 + 2 + 8 + 4;
/// Larger state files are refused on read rather than loaded into memory.
pub const STATE_BYTES_MAX: u64 = 1 << 30;

/// Why a state file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    #[error("state file {} is damaged: it is {len} bytes, its header promises {expected}", path.display())]
    Truncated { path: PathBuf, len: u64, expected: u64 },
    #[error(
        "state file {} is damaged: its checksum is {stored:08x} but its contents sum to {computed:08x}",
        path.display()
    )]
    Checksum { path: PathBuf, stored: u32, computed: u32 },
    #[error("state file {} has frame version {found}; this build reads version {FRAME_VERSION}", path.display())]
    Version { path: PathBuf, found: u16 },
    #[error("state file {} is damaged: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A file whose frame is intact but whose contents its owner cannot use.
    pub fn invalid(path: &Path, reason: impl ToString) -> Error {
        Error::Invalid { path: path.to_path_buf(), reason: reason.to_string() }
    }

    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::Truncated { path, .. }
            | Error::Checksum { path, .. }
            | Error::Version { path, .. }
            | Error::Invalid { path, .. } => path,
        }
    }

    /// Whether the file's contents are wrong, as opposed to the disk or the permissions failing.
    pub fn is_damage(&self) -> bool {
        !matches!(self, Error::Io { .. })
    }
}

/// What [`read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// A framed file whose length and checksum hold.
    Checked(Vec<u8>),
    /// A file without the frame, written before it existed: the owner checks it its old way.
    Legacy(Vec<u8>),
}

impl Contents {
    /// The contents of a file that must be framed: legacy bytes are damage.
    pub fn checked(self, path: &Path) -> Result<Vec<u8>> {
        match self {
            Contents::Checked(b) => Ok(b),
            Contents::Legacy(_) => Err(Error::invalid(path, "it has no checksum frame")),
        }
    }
}

/// How a state file is created.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Readable by the owner only (secrets: tenants and their key digests).
    pub private: bool,
}

/// Writes `body` to `path` as a framed state file, durably: temp file, fsync, rename, directory fsync.
pub fn write(path: &Path, body: &[u8]) -> Result<()> {
    write_with(path, body, Options::default())
}

/// [`write`] with options.
pub fn write_with(path: &Path, body: &[u8], options: Options) -> Result<()> {
    write_bytes(path, &frame(body), options)
}

/// Writes a file that people read with ordinary tools (the admin token) as it is, without the
/// frame, but just as durably: temp file, fsync, rename, directory fsync.
pub fn write_unframed(path: &Path, contents: &[u8], options: Options) -> Result<()> {
    write_bytes(path, contents, options)
}

fn write_bytes(path: &Path, bytes: &[u8], options: Options) -> Result<()> {
    let tmp = temp_path(path);
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, action, source }
    };
    let mut open = OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if options.private {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    let mut f = open.open(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename a temp file over", path))?;
    sync_dir(parent(path))
}

/// Reads a state file: `None` when there is none, its checked contents, or an error naming the
/// file and the damage. Any error other than "not found" is an error, never an absent file.
pub fn read(path: &Path) -> Result<Option<Contents>> {
    let bytes = match fs::metadata(path) {
        Ok(m) if m.len() > STATE_BYTES_MAX => {
            return Err(Error::invalid(path, format!("it is {} bytes, more than {STATE_BYTES_MAX}", m.len())));
        }
        Ok(_) => fs::read(path),
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), action: "read", source }),
    };
    unframe(path, bytes).map(Some)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn unframe(path: &Path, mut bytes: Vec<u8>) -> Result<Contents> {
    // A file cut inside the magic is a torn framed file, not a legacy one.
    let prefix = bytes.len().min(MAGIC.len());
    if bytes.is_empty() || bytes[..prefix] != MAGIC[..prefix] {
        return Ok(Contents::Legacy(bytes));
    }
    let len = bytes.len() as u64;
    if bytes.len() < HEADER_BYTES {
        return Err(Error::Truncated { path: path.to_path_buf(), len, expected: HEADER_BYTES as u64 });
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let version = u16_at(6);
    if version != FRAME_VERSION {
        return Err(Error::Version { path: path.to_path_buf(), found: version });
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[8..16]);
    let body_len = u64::from_le_bytes(n);
    let expected = (HEADER_BYTES as u64).saturating_add(body_len);
    if len < expected {
        return Err(Error::Truncated { path: path.to_path_buf(), len, expected });
    }
    if len > expected {
        return Err(Error::invalid(path, format!("{} bytes follow its contents", len - expected)));
    }
    let mut c = [0u8; 4];
    c.copy_from_slice(&bytes[16..20]);
    let stored = u32::from_le_bytes(c);
    let computed = crc32c::crc32c(&bytes[HEADER_BYTES..]);
    if stored != computed {
        return Err(Error::Checksum { path: path.to_path_buf(), stored, computed });
    }
    bytes.drain(..HEADER_BYTES);
    Ok(Contents::Checked(bytes))
}

/// Fsyncs a directory, so that a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        action: "fsync directory",
        source,
    })
}

/// Removes the temp files that a crash during [`write`] leaves in `dir`; returns how many.
pub fn remove_temps(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(Error::Io { path: dir.to_path_buf(), action: "list", source }),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == TEMP_EXTENSION) && p.is_file() {
            fs::remove_file(&p).map_err(|source| Error::Io { path: p.clone(), action: "remove", source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Moves a damaged file aside as `<name>.damaged`, for an owner that rebuilds it from the log,
/// so that the evidence is kept and the next start does not trip over it again.
pub fn set_aside(path: &Path) -> Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".damaged");
    let aside = path.with_file_name(name);
    fs::rename(path, &aside).map_err(|source| Error::Io { path: path.to_path_buf(), action: "set aside", source })?;
    sync_dir(parent(path))?;
    Ok(aside)
}

const TEMP_EXTENSION: &str = "tmp";

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(TEMP_EXTENSION);
    path.with_file_name(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_written_file_reads_back_and_an_absent_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert_eq!(read(&p).unwrap(), None);
        write(&p, b"{\"a\":1}").unwrap();
        assert_eq!(read(&p).unwrap(), Some(Contents::Checked(b"{\"a\":1}".to_vec())));
        write(&p, b"").unwrap();
        assert_eq!(read(&p).unwrap(), Some(Contents::Checked(Vec::new())), "an empty body is still framed");
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn files_without_the_frame_are_legacy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.json");
        fs::write(&p, b"{\"version\":1}").unwrap();
        assert_eq!(read(&p).unwrap(), Some(Contents::Legacy(b"{\"version\":1}".to_vec())));
        assert!(read(&p).unwrap().unwrap().checked(&p).is_err());
    }

    #[test]
    fn private_files_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_with(&p, b"x", Options { private: true }).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn stray_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.json.tmp"), b"half").unwrap();
        fs::write(dir.path().join("a.json"), b"whole").unwrap();
        assert_eq!(remove_temps(dir.path()).unwrap(), 1);
        assert!(dir.path().join("a.json").exists());
    }

    #[test]
    fn a_damaged_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write(&p, b"x").unwrap();
        let aside = set_aside(&p).unwrap();
        assert_eq!(aside, dir.path().join("s.json.damaged"));
        assert!(!p.exists() && aside.exists());
    }

    proptest! {
        /// Every truncation and every flipped bit of a framed file is an error naming the file,
        /// never contents.
        #[test]
        fn damage_is_always_an_error(body in proptest::collection::vec(any::<u8>(), 0..200), cut in any::<usize>(), bit in any::<usize>()) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("s.bin");
            write(&p, &body).unwrap();
            let whole = fs::read(&p).unwrap();
            let cut = cut % whole.len();
            fs::write(&p, &whole[..cut]).unwrap();
            match read(&p) {
                Err(e) => {
                    prop_assert!(e.is_damage());
                    prop_assert_eq!(e.path(), p.as_path());
                    prop_assert!(e.to_string().contains("s.bin"));
                }
                // Cut to nothing: an empty file is legacy, which a framed owner refuses.
                Ok(Some(Contents::Legacy(b))) => prop_assert!(b.is_empty() && cut == 0),
                Ok(other) => prop_assert!(false, "cut at {} read as {:?}", cut, other),
            }
            let mut flipped = whole.clone();
            let bit = bit % (flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            fs::write(&p, &flipped).unwrap();
            match read(&p) {
                Err(e) => prop_assert!(e.is_damage() && e.path() == p.as_path()),
                // A flip inside the magic makes the file look unframed: its owner's legacy check
                // must then refuse it, which is what `checked` does for owners with no legacy.
                Ok(Some(Contents::Legacy(_))) => prop_assert!(bit < 48),
                Ok(other) => prop_assert!(false, "bit {} read as {:?}", bit, other),
            }
        }
    }
}

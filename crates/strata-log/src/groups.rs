//! Durable consumer-group positions: one small file per group, replaced atomically on commit.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{Error, GroupOffset, Result, io_err};

const GROUP_FILE_VERSION: u32 = 1;

/// `[A-Za-z0-9._-]{1,128}`, not starting with `.`: a group name is a file name.
pub fn validate_group_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(Error::GroupName(name.to_string())) }
}

#[derive(Serialize, Deserialize)]
struct GroupFile {
    version: u32,
    crc32c: u32,
    offsets: Vec<GroupOffset>,
}

fn crc(offsets: &[GroupOffset]) -> u32 {
    crc32c::crc32c(&serde_json::to_vec(offsets).expect("offsets serialise"))
}

type Positions = BTreeMap<(String, u32), u64>;

pub(crate) struct Groups {
    dir: PathBuf,
    state: Mutex<BTreeMap<String, Positions>>,
}

impl Groups {
    pub fn open(dir: PathBuf) -> Result<Groups> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Commits that crashed before their rename: the previous files are still whole.
        let unfinished = strata_durable::remove_temps(&dir)?;
        if unfinished > 0 {
            tracing::info!(files = unfinished, "removed unfinished group commits");
        }
        let mut state = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(group) = name.strip_suffix(".json") else {
                continue;
            };
            state.insert(group.to_string(), load(&path)?);
        }
        Ok(Groups { dir, state: Mutex::new(state) })
    }

    pub fn names(&self) -> Vec<String> {
        self.state.lock().expect("groups lock").keys().cloned().collect()
    }

    pub fn get(&self, group: &str) -> Result<Vec<GroupOffset>> {
        validate_group_name(group)?;
        let state = self.state.lock().expect("groups lock");
        Ok(state.get(group).map(to_offsets).unwrap_or_default())
    }

    /// Merges `offsets` into the group's positions and replaces its file: write a temporary file,
    /// fsync it, rename it over the old one, fsync the directory.
    pub fn commit(&self, group: &str, offsets: &[GroupOffset]) -> Result<()> {
        validate_group_name(group)?;
        // Held across the write so that two commits of one group cannot land out of order.
        let mut state = self.state.lock().expect("groups lock");
        let mut positions = state.get(group).cloned().unwrap_or_default();
        for o in offsets {
            positions.insert((o.topic.clone(), o.partition), o.offset);
        }
        let offsets = to_offsets(&positions);
        let file = GroupFile { version: GROUP_FILE_VERSION, crc32c: crc(&offsets), offsets };
        let path = self.dir.join(format!("{group}.json"));
        strata_durable::write(&path, &serde_json::to_vec(&file).expect("group file serialises"))?;
        state.insert(group.to_string(), positions);
        Ok(())
    }
}

fn to_offsets(p: &Positions) -> Vec<GroupOffset> {
    p.iter()
        .map(|((topic, partition), &offset)| GroupOffset { topic: topic.clone(), partition: *partition, offset })
        .collect()
}

fn load(path: &Path) -> Result<Positions> {
    let bad = |reason: String| Error::Metadata { path: path.to_path_buf(), reason };
    let bytes = match strata_durable::read(path)? {
        Some(strata_durable::Contents::Checked(b) | strata_durable::Contents::Legacy(b)) => b,
        None => return Err(bad("it vanished while the log was opening".to_string())),
    };
    let file: GroupFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.version != GROUP_FILE_VERSION {
        return Err(bad(format!("version {} is unknown", file.version)));
    }
    if crc(&file.offsets) != file.crc32c {
        return Err(bad("checksum does not match".to_string()));
    }
    Ok(file.offsets.into_iter().map(|o| ((o.topic, o.partition), o.offset)).collect())
}

//! Positions the runtime keeps for a sink of [`CheckpointKind::Runtime`](crate::CheckpointKind):
//! `<checkpoint_dir>/<group>.positions`, a framed state file (`strata_durable`) rewritten whole
//! after each successful commit of the sink. A damaged file stops the start with the file and
//! the damage named: the runtime cannot know whether the sink's data would survive a replay.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Positions, SinkError};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct PositionsFile {
    version: u32,
    positions: Vec<(String, u32, u64)>,
}

/// The file of `group` under `dir`; the group name must be usable as a file name.
pub(crate) fn path(dir: &Path, group: &str) -> Result<PathBuf, strata_log::Error> {
    strata_log::validate_group_name(group)?;
    Ok(dir.join(format!("{group}.positions")))
}

/// The positions in the file, none if there is no file yet.
pub(crate) fn read(path: &Path) -> Result<Positions, strata_durable::Error> {
    let body = match strata_durable::read(path)? {
        None => return Ok(Positions::new()),
        Some(contents) => contents.checked(path)?,
    };
    let file: PositionsFile = serde_json::from_slice(&body).map_err(|e| strata_durable::Error::invalid(path, e))?;
    if file.version != VERSION {
        return Err(strata_durable::Error::invalid(path, format!("version {} is unknown", file.version)));
    }
    Ok(file.positions.into_iter().map(|(topic, partition, offset)| ((topic, partition), offset)).collect())
}

/// Replaces the file with `positions`, durably.
pub(crate) fn write(path: &Path, positions: &Positions) -> Result<(), SinkError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io { path: dir.to_path_buf(), source })?;
    }
    let file = PositionsFile {
        version: VERSION,
        positions: positions.iter().map(|((topic, partition), &offset)| (topic.clone(), *partition, offset)).collect(),
    };
    strata_durable::write(path, &serde_json::to_vec(&file).expect("positions serialise"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "lake").unwrap();
        assert_eq!(read(&p).unwrap(), Positions::new(), "no file yet: no positions");
        let positions: Positions = [(("logs".to_string(), 0), 12), (("logs".to_string(), 3), 7)].into();
        write(&p, &positions).unwrap();
        assert_eq!(read(&p).unwrap(), positions);

        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let err = read(&p).unwrap_err();
        assert!(err.is_damage() && err.to_string().contains("lake.positions"), "{err}");
        assert!(path(dir.path(), "../x").is_err(), "a group name is a file name, never a path");
    }
}

//! Merges of a day index's segments, put off while the disk has no room for them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tantivy::index::{SegmentId, SegmentMeta};
use tantivy::merge_policy::{LogMergePolicy, MergeCandidate, MergePolicy};

/// tantivy's log merge policy, with each merge put off while its output (at most its segments'
/// bytes, written before they are removed) could leave less than `free_bytes_min` free on the
/// index's disk. A merge that fills the disk fails, and takes the appends and commits beside it
/// down with it; one put off is proposed again after the next commit.
#[derive(Debug)]
pub(crate) struct FlooredMerges {
    inner: LogMergePolicy,
    dir: PathBuf,
    free_bytes_min: u64,
    put_off: strata_log::disk::PutOff,
}

impl FlooredMerges {
    pub fn new(dir: &Path, free_bytes_min: u64) -> FlooredMerges {
        FlooredMerges {
            inner: LogMergePolicy::default(),
            dir: dir.to_path_buf(),
            free_bytes_min,
            put_off: strata_log::disk::PutOff::default(),
        }
    }

    /// Whether merging the segments `ids` leaves the floor free; logs the first refusal and the
    /// first yes after refusals.
    pub fn room_for(&self, ids: &[SegmentId]) -> bool {
        if self.free_bytes_min == 0 {
            return true;
        }
        let bytes = segment_bytes(&self.dir, ids);
        let room = self.put_off.room_for(
            &self.dir,
            bytes,
            self.free_bytes_min,
            |free| {
                tracing::warn!(
                    path = %self.dir.display(), free_bytes = free, merge_bytes = bytes,
                    "index merges wait: they could take the disk below pipeline.disk_free_bytes_min"
                )
            },
            || tracing::info!(path = %self.dir.display(), "room again: index segments are merged"),
        );
        if !room {
            metrics::counter!("strata_search_merges_put_off_total").increment(1);
        }
        room
    }
}

impl MergePolicy for FlooredMerges {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        let mut candidates = self.inner.compute_merge_candidates(segments);
        candidates.retain(|c| self.room_for(&c.0));
        candidates
    }
}

/// The bytes of the files of segments `ids` in the index directory `dir` (a segment's files are
/// named by its id).
fn segment_bytes(dir: &Path, ids: &[SegmentId]) -> u64 {
    let names: HashSet<String> = ids.iter().map(|id| id.uuid_string()).collect();
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.split('.').next().is_some_and(|stem| names.contains(stem))
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use tantivy::doc;
    use tantivy::schema::{STRING, Schema};

    use super::*;

    /// Four commits of 30 documents each, with `policy`; the index's segments once merges end.
    fn segments_after_commits(dir: &Path, policy: FlooredMerges) -> usize {
        let mut b = Schema::builder();
        let f = b.add_text_field("f", STRING);
        let index = tantivy::Index::create_in_dir(dir, b.build()).unwrap();
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.set_merge_policy(Box::new(policy));
        for c in 0..4 {
            for i in 0..30 {
                writer.add_document(doc!(f => format!("{c}-{i}"))).unwrap();
            }
            writer.commit().unwrap();
        }
        writer.wait_merging_threads().unwrap();
        index.searchable_segment_ids().unwrap().len()
    }

    fn policy(dir: &Path, free_bytes_min: u64) -> FlooredMerges {
        let mut p = FlooredMerges::new(dir, free_bytes_min);
        p.inner.set_min_num_segments(2);
        p
    }

    #[test]
    fn merges_wait_while_they_could_pass_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(segments_after_commits(dir.path(), policy(dir.path(), u64::MAX / 2)), 4, "no merge fits");
        let dir = tempfile::tempdir().unwrap();
        assert!(segments_after_commits(dir.path(), policy(dir.path(), 1 << 20)) < 4, "merged with room");
        let dir = tempfile::tempdir().unwrap();
        assert!(segments_after_commits(dir.path(), policy(dir.path(), 0)) < 4, "merged with no floor");
    }

    #[test]
    fn a_merges_bytes_are_its_segments_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SegmentId::generate_random(), SegmentId::generate_random());
        std::fs::write(dir.path().join(format!("{}.idx", a.uuid_string())), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join(format!("{}.store", a.uuid_string())), [0u8; 20]).unwrap();
        std::fs::write(dir.path().join(format!("{}.idx", b.uuid_string())), [0u8; 7]).unwrap();
        std::fs::write(dir.path().join("meta.json"), [0u8; 1000]).unwrap();
        assert_eq!(segment_bytes(dir.path(), &[a]), 120);
        assert_eq!(segment_bytes(dir.path(), &[a, b]), 127);
        assert_eq!(segment_bytes(dir.path(), &[]), 0);
    }
}

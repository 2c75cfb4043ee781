//! The free space of a disk, against a floor.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the free space of a disk is measured; in between, what was written is counted.
const DISK_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// What a writer knows of the free space on its disk, to refuse work before the disk is so full
/// that a write fails half-way: a partition writer refuses a group of appends (a write failed
/// half-way stops the partition until a restart), a consumer waits before it writes to its store.
#[derive(Debug)]
pub struct DiskRoom {
    min: u64,
    free: u64,
    checked: Option<Instant>,
    /// The floor refused the last time it was asked (logged once when it starts and once when it ends).
    refusing: bool,
}

impl DiskRoom {
    /// A floor of `min` free bytes; 0 never refuses.
    pub fn new(min: u64) -> DiskRoom {
        DiskRoom { min, free: 0, checked: None, refusing: false }
    }

    /// The floor.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Whether the last answer was no.
    pub fn is_refusing(&self) -> bool {
        self.refusing
    }

    /// Whether `bytes` more leave at least `min` free, or else the bytes free. `measure` gives
    /// the free bytes now; it is asked when the last measure is old, or when the count since
    /// says no (space may have been freed). A disk that cannot be measured is not refused. Once
    /// refusing, it says yes again only with a quarter of `min` more free, so that a load
    /// at the edge is not taken and refused by turns (Elasticsearch's watermarks have the same
    /// gap).
    pub fn admit(
        &mut self,
        bytes: u64,
        measure: impl FnOnce() -> std::io::Result<u64>,
    ) -> std::result::Result<(), u64> {
        let admitted = self.admit_once(bytes, measure);
        self.refusing = admitted.is_err();
        admitted
    }

    fn admit_once(
        &mut self,
        bytes: u64,
        measure: impl FnOnce() -> std::io::Result<u64>,
    ) -> std::result::Result<(), u64> {
        if self.min == 0 {
            return Ok(());
        }
        let gap = if self.refusing { self.min / 4 } else { 0 };
        let need = self.min.saturating_add(gap).saturating_add(bytes);
        if self.checked.is_none_or(|t| t.elapsed() >= DISK_CHECK_INTERVAL) || self.free < need {
            match measure() {
                Ok(free) => {
                    self.free = free;
                    self.checked = Some(Instant::now());
                }
                Err(_) => return Ok(()),
            }
        }
        if self.free < need {
            return Err(self.free);
        }
        self.free -= bytes;
        Ok(())
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Whether work that writes up to `bytes` under `dir` before it frees anything (a compressed copy
/// of a segment, a merge of index segments, a compaction of lake files) leaves at least `min`
/// free, or else the bytes free. Such work is put off, not started and failed half-way: a disk
/// filled by a merge fails the appends and the commits beside it. A floor of 0, or a disk that
/// cannot be measured, never puts work off.
pub fn room_for(dir: &Path, bytes: u64, min: u64) -> std::result::Result<(), u64> {
    if min == 0 {
        return Ok(());
    }
    match free_bytes(dir) {
        Ok(free) if free < min.saturating_add(bytes) => Err(free),
        _ => Ok(()),
    }
}

/// Background work that `room_for` puts off, told once when it starts to wait and once when it
/// goes on, not at every look at the disk.
#[derive(Debug, Default)]
pub struct PutOff(AtomicBool);

impl PutOff {
    /// `room_for(dir, bytes, min)`: `waits` is called with the free bytes when the work starts to
    /// wait, `again` when it goes on after waiting.
    pub fn room_for(&self, dir: &Path, bytes: u64, min: u64, waits: impl FnOnce(u64), again: impl FnOnce()) -> bool {
        match room_for(dir, bytes, min) {
            Ok(()) => {
                if self.0.swap(false, Ordering::AcqRel) {
                    again();
                }
                true
            }
            Err(free) => {
                if !self.0.swap(true, Ordering::AcqRel) {
                    waits(free);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_floor_counts_what_is_written_and_measures_again_when_it_says_no() {
        let mut room = DiskRoom::new(1000);
        assert_eq!(room.admit(400, || Ok(1500)), Ok(()));
        // 1,100 free by the count since the measure: 200 more would pass the floor, so the
        // disk is measured again, and still has only what the count says.
        assert_eq!(room.admit(200, || Ok(1100)), Err(1100));
        // Once refusing, a quarter of the floor more must be free: 1,300 is not enough for 200
        // (1,000 + 250 + 200), 1,450 is.
        assert_eq!(room.admit(200, || Ok(1300)), Err(1300));
        assert_eq!(room.admit(200, || Ok(1450)), Ok(()));
        // Taken again, the gap is gone: measured anew only when the count says no.
        assert_eq!(room.admit(50, || panic!("measured within the interval")), Ok(()));
        // Space was freed: measured again, taken.
        assert_eq!(room.admit(2000, || Ok(5000)), Ok(()));
        // Within the count, the disk is not measured.
        assert_eq!(room.admit(100, || panic!("measured within the interval")), Ok(()));
        // A disk that cannot be measured is not refused; a floor of 0 never measures.
        assert_eq!(DiskRoom::new(1000).admit(10, || Err(std::io::Error::other("no statvfs"))), Ok(()));
        assert_eq!(DiskRoom::new(0).admit(u64::MAX, || panic!("measured with no floor")), Ok(()));
    }

    #[test]
    fn waiting_is_told_once_when_it_starts_and_once_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let put_off = PutOff::default();
        let (mut waits, mut agains) = (0, 0);
        for min in [u64::MAX, u64::MAX, 1, 1, u64::MAX, 1] {
            let room = put_off.room_for(dir.path(), 0, min, |_| waits += 1, || agains += 1);
            assert_eq!(room, min == 1);
        }
        assert_eq!((waits, agains), (2, 2));
    }

    #[test]
    fn work_that_could_pass_the_floor_is_put_off() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 1 << 20, "the test's disk has room");
        assert_eq!(room_for(dir.path(), 1 << 10, 1 << 10), Ok(()));
        assert_eq!(room_for(dir.path(), u64::MAX, 0), Ok(()), "no floor");
        let Err(told) = room_for(dir.path(), free, 1 << 20) else { panic!("the disk's whole free space and more") };
        assert!(told.abs_diff(free) < 1 << 30, "the free bytes: {told} against {free}");
        assert!(room_for(dir.path(), 0, u64::MAX).is_err(), "a floor past any disk");
        assert_eq!(room_for(&dir.path().join("missing"), 0, u64::MAX), Ok(()), "a disk that cannot be measured");
    }
}

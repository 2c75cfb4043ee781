//! Checkpoints: where a consumer is in each partition, with one rule kept in one place. A
//! checkpoint only moves forward by deltas that start exactly where it is: a delta that goes back
//! (records applied twice) or skips ahead (records never applied) is refused with an error naming
//! the partition and both positions, before any of it is applied.

use std::collections::BTreeMap;

use strata_log::StoredRecord;

use crate::Positions;

/// Why a delta cannot be applied to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("{topic}/{partition}: a delta from offset {from} would go back from the checkpoint at {at}")]
    Backwards { topic: String, partition: u32, at: u64, from: u64 },
    #[error("{topic}/{partition}: a delta from offset {from} would skip the records from the checkpoint at {at}")]
    Gap { topic: String, partition: u32, at: u64, from: u64 },
    #[error("{topic}/{partition}: a delta must move forward, got {from}..{to}")]
    Empty { topic: String, partition: u32, from: u64, to: u64 },
}

/// The next offset to apply, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    positions: Positions,
}

/// Ranges of offsets `[from, to)` taken from partitions since a checkpoint, to be applied to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointDelta {
    ranges: BTreeMap<(String, u32), (u64, u64)>,
}

impl CheckpointDelta {
    pub fn new() -> CheckpointDelta {
        CheckpointDelta::default()
    }

    /// Adds `[from, to)` of a partition; it must continue the range the delta already has there.
    pub fn record(&mut self, topic: &str, partition: u32, from: u64, to: u64) -> Result<(), CheckpointError> {
        if to <= from {
            return Err(CheckpointError::Empty { topic: topic.to_string(), partition, from, to });
        }
        match self.ranges.get_mut(&(topic.to_string(), partition)) {
            None => {
                self.ranges.insert((topic.to_string(), partition), (from, to));
                Ok(())
            }
            Some(range) if range.1 == from => {
                range.1 = to;
                Ok(())
            }
            Some(range) => Err(continuity(topic, partition, range.1, from)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

fn continuity(topic: &str, partition: u32, at: u64, from: u64) -> CheckpointError {
    let (topic, at_from) = (topic.to_string(), (at, from));
    if at_from.1 < at_from.0 {
        CheckpointError::Backwards { topic, partition, at, from }
    } else {
        CheckpointError::Gap { topic, partition, at, from }
    }
}

impl Checkpoint {
    /// A checkpoint at the given positions.
    pub fn new(positions: Positions) -> Checkpoint {
        Checkpoint { positions }
    }

    /// The positions, as sinks store them.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// The next offset to apply in a partition, if the checkpoint has one.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions.get(&(topic.to_string(), partition)).copied()
    }

    /// Applies every range of `delta`, or none of them: each must start where the checkpoint is
    /// (a partition the checkpoint does not know yet may start anywhere).
    pub fn try_apply(&mut self, delta: &CheckpointDelta) -> Result<(), CheckpointError> {
        for ((topic, partition), &(from, _)) in &delta.ranges {
            if let Some(at) = self.position(topic, *partition)
                && at != from
            {
                return Err(continuity(topic, *partition, at, from));
            }
        }
        for ((topic, partition), &(_, to)) in &delta.ranges {
            self.positions.insert((topic.clone(), *partition), to);
        }
        Ok(())
    }

    /// Moves a partition's position without a delta: only for a log that no longer has the
    /// records at the position (retention removed them, or the log was replaced), which the
    /// runtime reports as skipped.
    pub fn reset(&mut self, topic: &str, partition: u32, to: u64) {
        self.positions.insert((topic.to_string(), partition), to);
    }

    /// The records of a read that the checkpoint has not applied yet: those at or past its
    /// position in their partition. This is the one place where a replay after a restart skips
    /// what a sink already holds.
    pub fn unapplied<'r>(&self, topic: &str, partition: u32, records: &'r [StoredRecord]) -> &'r [StoredRecord] {
        match self.position(topic, partition) {
            None => records,
            Some(at) => {
                let first = records.partition_point(|r| r.offset < at);
                &records[first..]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn delta(ranges: &[(u32, u64, u64)]) -> CheckpointDelta {
        let mut d = CheckpointDelta::new();
        for &(p, from, to) in ranges {
            d.record("logs", p, from, to).unwrap();
        }
        d
    }

    #[test]
    fn deltas_move_a_checkpoint_forward_only() {
        let mut c = Checkpoint::new([(("logs".to_string(), 0), 10)].into());
        c.try_apply(&delta(&[(0, 10, 15), (1, 3, 4)])).unwrap();
        assert_eq!(c.position("logs", 0), Some(15));
        assert_eq!(c.position("logs", 1), Some(4), "a new partition starts where its first delta does");
        let err = c.try_apply(&delta(&[(0, 12, 20)])).unwrap_err();
        assert_eq!(err.to_string(), "logs/0: a delta from offset 12 would go back from the checkpoint at 15");
        let err = c.try_apply(&delta(&[(0, 16, 20)])).unwrap_err();
        assert_eq!(err.to_string(), "logs/0: a delta from offset 16 would skip the records from the checkpoint at 15");
        // All or nothing: partition 1's good range is not applied beside partition 0's bad one.
        assert!(c.try_apply(&delta(&[(1, 4, 9), (0, 1, 2)])).is_err());
        assert_eq!(c.position("logs", 1), Some(4));
        let mut d = CheckpointDelta::new();
        assert!(matches!(d.record("logs", 0, 5, 5), Err(CheckpointError::Empty { .. })));
        d.record("logs", 0, 5, 6).unwrap();
        assert!(matches!(d.record("logs", 0, 7, 8), Err(CheckpointError::Gap { at: 6, from: 7, .. })));
        assert!(matches!(d.record("logs", 0, 5, 8), Err(CheckpointError::Backwards { at: 6, from: 5, .. })));
    }

    fn records(offsets: std::ops::Range<u64>) -> Vec<StoredRecord> {
        offsets
            .map(|offset| StoredRecord {
                offset,
                append_time_ms: 0,
                record: strata_log::Record {
                    timestamp_ns: 0,
                    tenant: "t".into(),
                    source_id: "s".into(),
                    headers: Vec::new(),
                    payload: offset.to_string().into_bytes(),
                },
            })
            .collect()
    }

    proptest! {
        /// A delta applies only when it starts exactly at the checkpoint; otherwise the error
        /// names the partition and both positions, and the checkpoint is unchanged.
        #[test]
        fn only_contiguous_deltas_apply(at in 0u64..1000, from in 0u64..1000, len in 1u64..100) {
            let mut c = Checkpoint::new([(("logs".to_string(), 3), at)].into());
            let before = c.clone();
            match c.try_apply(&delta(&[(3, from, from + len)])) {
                Ok(()) => {
                    prop_assert_eq!(from, at);
                    prop_assert_eq!(c.position("logs", 3), Some(at + len));
                }
                Err(e) => {
                    prop_assert_ne!(from, at);
                    prop_assert_eq!(&c, &before);
                    let text = e.to_string();
                    prop_assert!(text.starts_with("logs/3: "));
                    prop_assert!(text.contains(&at.to_string()) && text.contains(&from.to_string()));
                    prop_assert_eq!(matches!(e, CheckpointError::Backwards { .. }), from < at);
                }
            }
        }

        /// Replaying any prefix of a partition, in any chunks, to a consumer that already applied
        /// it hands the sink nothing twice: applied records plus the replay's unapplied records
        /// are exactly the partition once.
        #[test]
        fn replaying_a_prefix_changes_nothing(
            total in 1u64..200,
            applied in 0u64..200,
            replay_from in 0u64..200,
            chunk in 1usize..40,
        ) {
            let applied = applied.min(total);
            let replay_from = replay_from.min(applied);
            let mut c = Checkpoint::new([(("logs".to_string(), 0), applied)].into());
            let mut sink: Vec<u64> = (0..applied).collect();
            let log = records(replay_from..total);
            let mut pos = replay_from;
            for read in log.chunks(chunk) {
                let fresh = c.unapplied("logs", 0, read);
                if let Some(first) = fresh.first() {
                    let mut d = CheckpointDelta::new();
                    d.record("logs", 0, first.offset, read.last().unwrap().offset + 1).unwrap();
                    c.try_apply(&d).unwrap();
                    sink.extend(fresh.iter().map(|r| r.offset));
                }
                pos = read.last().unwrap().offset + 1;
            }
            prop_assert_eq!(pos, total);
            prop_assert_eq!(sink, (0..total).collect::<Vec<_>>());
            prop_assert_eq!(c.position("logs", 0), Some(total.max(applied)));
        }
    }
}

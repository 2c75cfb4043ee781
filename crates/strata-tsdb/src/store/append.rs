//! Head appends: one sample at a time into a tenant's head, skipping the ones a block already
//! holds (a replay), and noting per head range where a replay must start.

use std::time::Instant;

use super::{Reject, Store, Tenant};
use crate::head::{Appended, range_start};
use crate::index::{LabelSet, SeriesId};

impl Store {
    /// Adds one sample of the series `labels` (with `__name__`), read from the record at `offset`
    /// of `partition`. Returns `Ok(false)` when a block already holds it (a replay).
    fn append_at(
        &self,
        t: &mut Tenant,
        labels: LabelSet,
        ts: i64,
        value: f64,
        partition: u32,
        offset: u64,
    ) -> Result<bool, Reject> {
        if t.in_blocks(partition, offset, ts) {
            return Ok(false);
        }
        let id = t.index.get_or_insert(labels).0;
        self.append_id(t, id, ts, value, partition, offset)?;
        Ok(true)
    }

    pub(super) fn append_id(
        &self,
        t: &mut Tenant,
        id: SeriesId,
        ts: i64,
        value: f64,
        partition: u32,
        offset: u64,
    ) -> Result<Appended, Reject> {
        let appended = t.head.append(id, ts, value, self.cfg.ooo_window_ms, t.dedup_ms)?;
        if matches!(appended, Appended::Unchanged | Appended::Deduplicated) {
            // Nothing taken: what the series holds came from records the head's offsets account for.
            return Ok(appended);
        }
        t.max_t = t.max_t.max(ts);
        let range = range_start(ts);
        // Samples come in time order mostly: the newest range is the one to look at first.
        match t.head_offsets.last_entry() {
            Some(mut e) if *e.key() == range => {
                e.get_mut().entry(partition).or_insert(offset);
            }
            _ => {
                t.head_offsets.entry(range).or_default().entry(partition).or_insert(offset);
            }
        }
        Ok(appended)
    }

    /// Adds one sample outside of any log record (tests, tools).
    pub fn append(&self, tenant: &str, labels: LabelSet, timestamp_ms: i64, value: f64) -> Result<(), Reject> {
        let t = self.tenant_or_create(tenant);
        let mut t = t.write().expect("tenant lock");
        t.last_append = Instant::now();
        self.append_at(&mut t, labels, timestamp_ms, value, u32::MAX, u64::MAX).map(|_| ())
    }
}

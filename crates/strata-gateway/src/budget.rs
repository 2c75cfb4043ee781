//! What decoding a request takes from the ingest memory budget, beyond its body.
//!
//! A request reserves its body's bytes before it is read and its decompressed bytes as they are
//! inflated (`Gateway::reserve_body`, `Gateway::grow`). What decoding builds from them can be far
//! larger than either: a record of two bytes becomes a stored line of a hundred, a two-byte
//! protobuf message a structure of a hundred. A `Budget` counts that as it is built, takes it
//! from the same semaphore in steps before it is allocated, and refuses the request when the
//! semaphore runs dry (503, retry later) or when one request would need more than a share of
//! the whole budget that it could never get (413, send less). The refusal sticks: everything
//! spent after it is refused too, and the caller answers with it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, BUDGET_UNIT};

/// What a budget takes from the semaphore at a time, so that a request of many small records
/// does not take a permit for each.
pub(crate) const CHARGE_STEP: usize = 64 << 10;

/// A request's share of the memory budget for what its decoding builds.
#[derive(Debug)]
pub(crate) struct Budget {
    /// `None`: count only, never refuse for want of memory (tests, tools).
    memory: Option<Arc<Semaphore>>,
    /// What was taken from `memory`, held until the request is answered.
    held: Option<OwnedSemaphorePermit>,
    /// Bytes counted, and bytes taken (at least `spent`, in steps of `CHARGE_STEP`).
    spent: usize,
    charged: usize,
    /// A request that needs more than this is refused as too large.
    limit: usize,
    refused: Option<ApiError>,
}

impl Budget {
    /// A budget drawn from `memory`; a request needing more than `limit` bytes is refused 413.
    pub fn new(memory: Arc<Semaphore>, limit: usize) -> Budget {
        Budget { memory: Some(memory), held: None, spent: 0, charged: 0, limit, refused: None }
    }

    /// A budget that counts, refusing only past `limit`.
    pub fn counting(limit: usize) -> Budget {
        Budget { memory: None, held: None, spent: 0, charged: 0, limit, refused: None }
    }

    /// Counts `bytes` more, taken from the memory budget before they are allocated. Once it has
    /// refused, it refuses everything with the same answer.
    pub fn spend(&mut self, bytes: usize) -> Result<(), ApiError> {
        if let Some(e) = &self.refused {
            return Err(e.clone());
        }
        self.spent = self.spent.saturating_add(bytes);
        if self.spent <= self.charged {
            return Ok(());
        }
        let more = (self.spent - self.charged).max(CHARGE_STEP);
        let refused = if self.charged.saturating_add(more) > self.limit {
            Some(too_large(self.limit))
        } else if let Some(memory) = &self.memory {
            let units = u32::try_from((more as u64).div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX);
            match memory.clone().try_acquire_many_owned(units) {
                Ok(permit) => {
                    match &mut self.held {
                        Some(held) => held.merge(permit),
                        None => self.held = Some(permit),
                    }
                    None
                }
                Err(_) => {
                    metrics::counter!("strata_ingest_overloaded_total").increment(1);
                    Some(ApiError::overloaded("ingest is at its memory limit; retry later", 1))
                }
            }
        } else {
            None
        };
        match refused {
            Some(e) => {
                self.refused = Some(e.clone());
                Err(e)
            }
            None => {
                self.charged += more;
                Ok(())
            }
        }
    }

    /// Why the budget refused, if it did.
    pub fn refused(&self) -> Option<&ApiError> {
        self.refused.as_ref()
    }

    /// Bytes counted so far.
    #[cfg(test)]
    pub fn spent(&self) -> usize {
        self.spent
    }

    /// What was taken from the semaphore, to be held until the request is answered.
    pub fn take_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.held.take()
    }
}

/// The answer to a request whose decoding would take more than `limit` bytes.
pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!(
        "the request holds too many records: decoding it takes more than {limit} bytes, over half of \
         ingest.memory_bytes_max; send fewer records in a request"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_takes_in_steps_and_refuses_once_for_good() {
        let memory = Arc::new(Semaphore::new(4 * CHARGE_STEP / BUDGET_UNIT as usize));
        let mut b = Budget::new(memory.clone(), usize::MAX);
        b.spend(10).unwrap();
        assert_eq!(memory.available_permits(), 3 * CHARGE_STEP / BUDGET_UNIT as usize, "one step taken");
        b.spend(CHARGE_STEP - 10).unwrap();
        assert_eq!(memory.available_permits(), 3 * CHARGE_STEP / BUDGET_UNIT as usize, "within the step");
        b.spend(3 * CHARGE_STEP).unwrap();
        assert_eq!(memory.available_permits(), 0);
        let e = b.spend(1).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after_s, Some(1));
        assert!(b.refused().is_some());
        // Refused for good, even for nothing more.
        assert_eq!(b.spend(0).unwrap_err(), e);
        // What was taken goes back once the request lets go of it.
        drop(b.take_permit());
        assert_eq!(memory.available_permits(), 4 * CHARGE_STEP / BUDGET_UNIT as usize);
    }

    #[test]
    fn a_request_past_its_limit_is_too_large() {
        let mut b = Budget::counting(3 * CHARGE_STEP);
        b.spend(2 * CHARGE_STEP).unwrap();
        let e = b.spend(2 * CHARGE_STEP).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("ingest.memory_bytes_max"), "{}", e.message);
        assert_eq!(b.spent(), 4 * CHARGE_STEP);
    }
}

//! The batches of concurrent requests for one partition, joined and appended as one.
//!
//! A request of 100 records is a batch of about 100 KB. Appended alone, it is compressed alone
//! (zstd is dearer per byte and smaller in ratio on 100 KB than on 512 KB: it finds fewer matches),
//! and it is one more batch for the partition's writer to frame, index and checksum. So a decoding
//! thread leaves a record request's batches in their partitions' lanes, and a lane is flushed —
//! its batches joined, compressed once and appended as one — when it holds `bytes_max`, when its
//! oldest batch has waited `wait`, or when a decoding thread finds no body left to decode, so
//! that nothing else would join it soon. Under load the threads decode the bodies queued before
//! they compress, and compress about once every `bytes_max`; a request on its own is appended as
//! soon as it is decoded.
//!
//! Each request still waits for the append that holds its records, and is answered by it: a
//! joined batch is durable, or fails, as one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_log::{AppendAck, EncodedRecords, Log};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::ApiError;

/// How a request's batch ends: the offsets its records got, or why they were not appended.
pub(crate) struct Appended {
    ended: oneshot::Receiver<Result<AppendAck, ApiError>>,
    /// Set once the batch is taken from its lane to be appended.
    taken: Arc<AtomicBool>,
}

pub(crate) struct Combiner {
    log: Arc<dyn Log>,
    lanes: Mutex<HashMap<(&'static str, u32), Lane>>,
    /// Batches waiting in any lane, so that a thread with none to flush takes no lock.
    waiting: AtomicUsize,
    bytes_max: usize,
    wait: Duration,
}

/// The batches waiting for one partition.
#[derive(Default)]
struct Lane {
    members: Vec<Member>,
    bytes: usize,
    since: Option<Instant>,
}

/// One request's batch, and where its ending goes.
struct Member {
    records: EncodedRecords,
    done: oneshot::Sender<Result<AppendAck, ApiError>>,
    taken: Arc<AtomicBool>,
    runtime: Handle,
}

impl Combiner {
    pub(crate) fn new(log: Arc<dyn Log>, bytes_max: usize, wait: Duration) -> Combiner {
        Combiner { log, lanes: Mutex::new(HashMap::new()), waiting: AtomicUsize::new(0), bytes_max, wait }
    }

    /// Leaves uncompressed `records` for `topic`/`partition` in its lane; the append runs on
    /// `runtime` once the lane is flushed. Call it on a decoding thread: a full lane is joined and
    /// compressed here.
    pub(crate) fn submit(
        &self,
        runtime: &Handle,
        topic: &'static str,
        partition: u32,
        records: EncodedRecords,
    ) -> Appended {
        let (done, ended) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let appended = Appended { ended, taken: taken.clone() };
        let member = Member { records, done, taken, runtime: runtime.clone() };
        let full = {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            let lane = lanes.entry((topic, partition)).or_default();
            lane.since.get_or_insert_with(Instant::now);
            lane.bytes += member.records.bytes_len();
            lane.members.push(member);
            self.waiting.fetch_add(1, Ordering::AcqRel);
            (lane.bytes >= self.bytes_max).then(|| self.take(lane))
        };
        if let Some(members) = full {
            self.flush(topic, partition, members);
        }
        appended
    }

    /// How a batch left in a lane ends. A lane is flushed by the decoding threads between bodies;
    /// should they all be held by long bodies while the batch waits in its lane past four times
    /// `wait`, the request flushes it from a blocking thread of its own.
    pub(crate) async fn ended(self: Arc<Self>, appended: Appended) -> Result<AppendAck, ApiError> {
        let Appended { mut ended, taken } = appended;
        let closed = || ApiError::from(strata_log::Error::Closed);
        if let Ok(r) = tokio::time::timeout(self.wait * 4 + Duration::from_millis(1), &mut ended).await {
            return r.unwrap_or_else(|_| Err(closed()));
        }
        if !taken.load(Ordering::Acquire) {
            metrics::counter!("strata_ingest_batch_late_flushes_total").increment(1);
            let combiner = self.clone();
            let _ = tokio::task::spawn_blocking(move || combiner.after_job(false)).await;
        }
        ended.await.unwrap_or_else(|_| Err(closed()))
    }

    /// A decoding thread has finished a body: flushes every lane if no body is queued (`idle`),
    /// else the lanes whose oldest batch has waited `wait`.
    pub(crate) fn after_job(&self, idle: bool) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let now = Instant::now();
        let due: Vec<_> = {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            lanes
                .iter_mut()
                .filter(|(_, lane)| lane.since.is_some_and(|t| idle || now.duration_since(t) >= self.wait))
                .map(|(&(topic, partition), lane)| (topic, partition, self.take(lane)))
                .collect()
        };
        for (topic, partition, members) in due {
            self.flush(topic, partition, members);
        }
    }

    fn take(&self, lane: &mut Lane) -> Vec<Member> {
        lane.bytes = 0;
        lane.since = None;
        let members = std::mem::take(&mut lane.members);
        for m in &members {
            m.taken.store(true, Ordering::Release);
        }
        self.waiting.fetch_sub(members.len(), Ordering::AcqRel);
        members
    }

    /// Joins `members`' batches, compresses them with the codec appends take now, and appends them
    /// as one batch on a task that answers every member.
    fn flush(&self, topic: &'static str, partition: u32, members: Vec<Member>) {
        let Some(runtime) = members.first().map(|m| m.runtime.clone()) else { return };
        let mut records = EncodedRecords::new();
        records.reserve(members.iter().map(|m| m.records.bytes_len()).sum());
        let mut joined = Ok(());
        // Each member's own batch is dropped once copied: only the joined one is kept while the
        // append runs.
        let waiting: Vec<Waiting> = members
            .into_iter()
            .map(|m| {
                if joined.is_ok() {
                    joined = records.extend(&m.records);
                }
                (m.done, m.records.count())
            })
            .collect();
        if let Err(e) = joined {
            return answer(waiting, Err(ApiError::internal(format!("joining batches: {e}"))));
        }
        let codec = match self.log.codec(topic) {
            Ok(codec) => codec,
            Err(e) => return answer(waiting, Err(e.into())),
        };
        records.compress(codec);
        metrics::histogram!("strata_ingest_batch_requests", "topic" => topic).record(waiting.len() as f64);
        let log = self.log.clone();
        runtime.spawn(async move {
            let appended = log.append(topic, partition, records).await.map_err(ApiError::from);
            answer(waiting, appended);
        });
    }
}

/// Where a member's ending goes, and how many records it has.
type Waiting = (oneshot::Sender<Result<AppendAck, ApiError>>, u32);

/// Tells each member how the joined batch ended, with the offsets of its own records.
fn answer(waiting: Vec<Waiting>, appended: Result<AppendAck, ApiError>) {
    let mut base = appended.as_ref().map_or(0, |ack| ack.base_offset);
    for (done, count) in waiting {
        let own = appended.as_ref().map(|_| AppendAck { base_offset: base, count }).map_err(Clone::clone);
        base += u64::from(count);
        let _ = done.send(own);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_log::{EmbeddedLog, LogConfig};

    fn batch(n: usize, tag: &str) -> EncodedRecords {
        let mut r = EncodedRecords::new();
        for i in 0..n {
            r.push(i as i64, "t", tag, &[], format!("{tag}-{i}").as_bytes()).unwrap();
        }
        r
    }

    fn log(dir: &std::path::Path) -> Arc<dyn Log> {
        Arc::new(EmbeddedLog::open(LogConfig::new(dir, 1)).unwrap())
    }

    #[tokio::test]
    async fn batches_wait_while_bodies_are_queued_and_are_appended_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let c = Combiner::new(log.clone(), 1 << 20, Duration::from_secs(60));
        let rt = Handle::current();
        let (a, b) = (c.submit(&rt, "logs", 0, batch(3, "a")), c.submit(&rt, "logs", 0, batch(2, "b")));
        // Bodies are still queued and the lane is neither full nor old: nothing is appended yet.
        c.after_job(false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(log.end_offset("logs", 0).unwrap(), 0);
        assert!(!a.taken.load(Ordering::Acquire) && !b.taken.load(Ordering::Acquire));
        // The queue ran dry: one batch of both, each request answered with its own offsets.
        c.after_job(true);
        assert_eq!(a.ended.await.unwrap().unwrap(), AppendAck { base_offset: 0, count: 3 });
        assert_eq!(b.ended.await.unwrap().unwrap(), AppendAck { base_offset: 3, count: 2 });
        let read = log.read("logs", 0, 0, 1 << 20).unwrap();
        let sources: Vec<&str> = read.records.iter().map(|r| r.record.source_id.as_str()).collect();
        assert_eq!(sources, ["a", "a", "a", "b", "b"]);
        assert_eq!(c.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_full_lane_is_flushed_at_once_and_an_old_one_after_its_wait() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let one = batch(10, "x").bytes_len();
        let c = Combiner::new(log.clone(), 2 * one, Duration::from_millis(20));
        let rt = Handle::current();
        let first = c.submit(&rt, "logs", 0, batch(10, "x"));
        let second = c.submit(&rt, "logs", 0, batch(10, "y"));
        assert_eq!(second.ended.await.unwrap().unwrap().base_offset, 10, "the second filled the lane");
        assert_eq!(first.ended.await.unwrap().unwrap().base_offset, 0);
        let third = c.submit(&rt, "events", 0, batch(1, "z"));
        c.after_job(false);
        tokio::time::sleep(Duration::from_millis(30)).await;
        c.after_job(false);
        assert_eq!(third.ended.await.unwrap().unwrap(), AppendAck { base_offset: 0, count: 1 });
    }

    #[tokio::test]
    async fn a_batch_no_decoding_thread_flushes_is_flushed_by_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Combiner::new(log(dir.path()), 1 << 20, Duration::from_millis(5)));
        let appended = c.submit(&Handle::current(), "logs", 0, batch(4, "a"));
        // No `after_job` at all, as if every decoding thread were held by a long body.
        let ack = c.clone().ended(appended).await.unwrap();
        assert_eq!(ack, AppendAck { base_offset: 0, count: 4 });
    }

    #[tokio::test]
    async fn a_failed_append_fails_every_request_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let c = Combiner::new(log(dir.path()), 1 << 20, Duration::from_secs(60));
        let rt = Handle::current();
        let (a, b) = (c.submit(&rt, "logs", 7, batch(1, "a")), c.submit(&rt, "logs", 7, batch(1, "b")));
        c.after_job(true);
        for r in [a.ended.await.unwrap(), b.ended.await.unwrap()] {
            let e = r.unwrap_err();
            assert!(e.message.contains("no partition 7"), "{}", e.message);
        }
    }
}

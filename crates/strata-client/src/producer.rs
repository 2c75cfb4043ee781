//! Batching on top of [`Client`]: records are queued, grouped per kind and sent in the background.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::config::invalid;
use crate::{Client, Error, IngestResponse, RecordKind, Result};

/// Settings for a [`Producer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// A batch is sent once it holds this many records.
    pub batch_records_max: usize,
    /// A batch is sent before it would grow past this many bytes of NDJSON (before compression); also the
    /// largest record accepted.
    pub batch_bytes_max: usize,
    /// A batch is sent at the latest this long after its first record arrived.
    pub linger_ms: u64,
    /// Records held by the producer at once, queued or in flight; [`Producer::send`] waits for room.
    pub queue_records_max: usize,
    /// Batches sent concurrently. With more than one, batches of a kind may be stored out of order.
    pub in_flight_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_records_max: 1_000,
            batch_bytes_max: 1024 * 1024,
            linger_ms: 10,
            queue_records_max: 10_000,
            in_flight_max: 4,
        }
    }
}

impl ProducerConfig {
    /// Checks that every limit is in range.
    pub fn validate(&self) -> Result<()> {
        let at_least_one = "must be at least 1";
        if self.batch_records_max == 0 {
            return Err(invalid("batch_records_max", self.batch_records_max, at_least_one));
        }
        if self.batch_bytes_max < 2 {
            return Err(invalid("batch_bytes_max", self.batch_bytes_max, "must be at least 2"));
        }
        if self.queue_records_max == 0 || self.queue_records_max > Semaphore::MAX_PERMITS {
            return Err(invalid(
                "queue_records_max",
                self.queue_records_max,
                "must be at least 1 and at most 2^61 - 1",
            ));
        }
        if self.in_flight_max == 0 {
            return Err(invalid("in_flight_max", self.in_flight_max, at_least_one));
        }
        Ok(())
    }
}

/// A batching producer: [`Producer::send`] queues one record and hands back a [`Delivery`] that resolves
/// once the batch holding the record has been answered by the server.
///
/// Batches are per [`RecordKind`] and are sent when they reach `batch_records_max` records or
/// `batch_bytes_max` bytes, or `linger_ms` after their first record, whichever comes first. Requests go
/// through the [`Client`], so they are compressed and retried as it is configured; delivery is
/// at-least-once.
///
/// Cheap to clone; clones feed the same batches. Dropping every clone sends what is queued and stops;
/// [`Producer::close`] does the same and waits for it.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ProducerConfig,
    tx: mpsc::UnboundedSender<Message>,
    /// One permit per record the producer may hold; a record's permit returns when its batch is answered.
    queue: Arc<Semaphore>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.shared.config)
            .field("queue_free", &self.shared.queue.available_permits())
            .finish_non_exhaustive()
    }
}

enum Message {
    Record { kind: RecordKind, json: Vec<u8>, reply: oneshot::Sender<Result<()>> },
    Flush(oneshot::Sender<()>),
    Close,
}

/// Resolves to the fate of one record: `Ok(())` once the server stored it, or why it was not stored
/// ([`Error::Rejected`] for this record alone, [`Error::BatchFailed`] when its whole batch failed).
///
/// Dropping it does not cancel the record.
#[derive(Debug)]
#[must_use = "a delivery reports whether the record was stored"]
pub struct Delivery {
    reply: oneshot::Receiver<Result<()>>,
}

impl Future for Delivery {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.reply).poll(cx).map(|reply| reply.unwrap_or(Err(Error::Abandoned)))
    }
}

impl Producer {
    /// Starts a producer sending through `client`.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime, since it spawns its background task there.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Semaphore::new(config.queue_records_max));
        let batcher = Batcher {
            client,
            config: config.clone(),
            rx,
            queue: Arc::clone(&queue),
            open: [None, None, None],
            ready: VecDeque::new(),
            in_flight: JoinSet::new(),
            pending: BTreeSet::new(),
            next_seq: 0,
            flush_waiters: Vec::new(),
        };
        let task = tokio::spawn(batcher.run());
        Ok(Producer { shared: Arc::new(Shared { config, tx, queue, task: Mutex::new(Some(task)) }) })
    }

    /// The configuration the producer was started with.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Queues one record of `kind`, waiting while `queue_records_max` records are already held.
    ///
    /// Fails at once if the record cannot be serialized or is larger than `batch_bytes_max`, or if the
    /// producer is closed; otherwise the returned [`Delivery`] tells what the server did with it.
    pub async fn send<T: Serialize + ?Sized>(&self, kind: RecordKind, record: &T) -> Result<Delivery> {
        let json = serde_json::to_vec(record).map_err(|source| Error::Serialize { index: 0, source })?;
        let batch_bytes_max = self.shared.config.batch_bytes_max;
        if json.len() + 1 > batch_bytes_max {
            return Err(Error::RecordTooLarge { record_bytes: json.len() + 1, batch_bytes_max });
        }
        // The permit is given back by the background task once the record's batch is answered.
        self.shared.queue.acquire().await.map_err(|_| Error::Closed)?.forget();
        let (reply, delivery) = oneshot::channel();
        if self.shared.tx.send(Message::Record { kind, json, reply }).is_err() {
            self.shared.queue.add_permits(1);
            return Err(Error::Closed);
        }
        Ok(Delivery { reply: delivery })
    }

    /// Sends every record queued so far without waiting for its linger time, and waits until all of them
    /// are answered. Individual failures are reported through their [`Delivery`], not here.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.shared.tx.send(Message::Flush(done)).map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Abandoned)
    }

    /// Refuses new records, sends every queued one and waits until all batches are answered and the
    /// background task has stopped. Calling it again returns once the first call is done.
    pub async fn close(&self) -> Result<()> {
        self.shared.queue.close();
        // Fails only when the background task is already gone; awaiting it below tells how it ended.
        let _ = self.shared.tx.send(Message::Close);
        let mut task = self.shared.task.lock().await;
        if let Some(handle) = task.take() {
            handle.await.map_err(|_| Error::Abandoned)?;
        }
        Ok(())
    }
}

/// A batch still accepting records.
struct OpenBatch {
    body: Vec<u8>,
    replies: Vec<oneshot::Sender<Result<()>>>,
    deadline: Instant,
}

/// A batch closed to new records, waiting for (or in) a request.
struct SealedBatch {
    seq: u64,
    kind: RecordKind,
    body: Vec<u8>,
    replies: Vec<oneshot::Sender<Result<()>>>,
}

/// The background task that owns the batches.
struct Batcher {
    client: Client,
    config: ProducerConfig,
    rx: mpsc::UnboundedReceiver<Message>,
    queue: Arc<Semaphore>,
    /// One open batch per kind, indexed by `RecordKind::index`.
    open: [Option<OpenBatch>; 3],
    ready: VecDeque<SealedBatch>,
    /// Each request task returns its batch's sequence number and record count.
    in_flight: JoinSet<(u64, usize)>,
    /// Sequence numbers of sealed batches not yet answered.
    pending: BTreeSet<u64>,
    next_seq: u64,
    /// Each waiter is done once every batch with a lower sequence number is answered.
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl Batcher {
    async fn run(mut self) {
        let mut receiving = true;
        loop {
            self.seal_expired(Instant::now());
            if self.open_records() >= self.config.queue_records_max {
                // Every record the queue allows is waiting in an open batch, so nothing will free room
                // for senders: send now rather than make them wait out the linger time.
                self.seal_all();
            }
            self.dispatch();
            self.wake_flush_waiters();
            if !receiving && self.pending.is_empty() {
                break;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    let (seq, records) = match done {
                        Ok(done) => done,
                        // A request task only panics on a bug of ours: stop, so deliveries report it.
                        Err(error) => std::panic::resume_unwind(error.into_panic()),
                    };
                    self.pending.remove(&seq);
                    self.queue.add_permits(records);
                }
                message = self.rx.recv(), if receiving => match message {
                    Some(Message::Record { kind, json, reply }) => self.add(kind, json, reply),
                    Some(Message::Flush(done)) => {
                        self.seal_all();
                        self.flush_waiters.push((self.next_seq, done));
                    }
                    // Refuse new messages but still drain those already queued; `None` follows.
                    Some(Message::Close) => self.rx.close(),
                    None => {
                        receiving = false;
                        self.seal_all();
                    }
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            }
        }
    }

    fn add(&mut self, kind: RecordKind, json: Vec<u8>, reply: oneshot::Sender<Result<()>>) {
        let record_bytes = json.len() + 1;
        let slot = kind.index();
        if let Some(open) = &self.open[slot]
            && open.body.len() + record_bytes > self.config.batch_bytes_max
        {
            self.seal(kind);
        }
        let linger = Duration::from_millis(self.config.linger_ms);
        let open = self.open[slot].get_or_insert_with(|| OpenBatch {
            body: Vec::new(),
            replies: Vec::new(),
            deadline: Instant::now() + linger,
        });
        open.body.extend_from_slice(&json);
        open.body.push(b'\n');
        open.replies.push(reply);
        if open.replies.len() >= self.config.batch_records_max || open.body.len() >= self.config.batch_bytes_max {
            self.seal(kind);
        }
    }

    fn seal(&mut self, kind: RecordKind) {
        if let Some(open) = self.open[kind.index()].take() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.pending.insert(seq);
            self.ready.push_back(SealedBatch { seq, kind, body: open.body, replies: open.replies });
        }
    }

    fn seal_all(&mut self) {
        for kind in RecordKind::ALL {
            self.seal(kind);
        }
    }

    fn seal_expired(&mut self, now: Instant) {
        for kind in RecordKind::ALL {
            if self.open[kind.index()].as_ref().is_some_and(|open| open.deadline <= now) {
                self.seal(kind);
            }
        }
    }

    fn open_records(&self) -> usize {
        self.open.iter().flatten().map(|open| open.replies.len()).sum()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().flatten().map(|open| open.deadline).min()
    }

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.config.in_flight_max {
            let Some(batch) = self.ready.pop_front() else {
                break;
            };
            let client = self.client.clone();
            self.in_flight.spawn(async move {
                let records = batch.replies.len();
                let body_bytes = batch.body.len();
                let result = client.send_body(batch.kind, Bytes::from(batch.body)).await;
                match &result {
                    Ok(response) => tracing::debug!(
                        kind = %batch.kind,
                        records,
                        body_bytes,
                        accepted = response.accepted,
                        rejected = response.rejected,
                        "batch answered"
                    ),
                    Err(error) => tracing::warn!(kind = %batch.kind, records, body_bytes, %error, "batch failed"),
                }
                deliver(result, batch.replies);
                (batch.seq, records)
            });
        }
    }

    fn wake_flush_waiters(&mut self) {
        let oldest_pending = self.pending.first().copied().unwrap_or(u64::MAX);
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.flush_waiters).into_iter().partition(|(up_to, _)| *up_to <= oldest_pending);
        self.flush_waiters = waiting;
        for (_, waiter) in done {
            let _ = waiter.send(());
        }
    }
}

/// Tells each record of a batch what happened to it.
fn deliver(result: Result<IngestResponse>, replies: Vec<oneshot::Sender<Result<()>>>) {
    let records = replies.len();
    let response = match result {
        Ok(response) => response,
        Err(Error::BadRequest { response: Some(response), .. }) if !response.errors.is_empty() => response,
        Err(error) => {
            let source = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(Error::BatchFailed { records, source: Arc::clone(&source) }));
            }
            return;
        }
    };

    let mut errors: Vec<Option<String>> = vec![None; records];
    for error in response.errors {
        if let Some(slot) = errors.get_mut(error.index) {
            *slot = Some(error.error);
        }
    }
    let rejected = errors.iter().filter(|error| error.is_some()).count();
    let consistent = usize::try_from(response.accepted).is_ok_and(|accepted| accepted + rejected == records);
    for (index, (reply, error)) in replies.into_iter().zip(errors).enumerate() {
        let outcome = match error {
            Some(message) => Err(Error::Rejected { index, message }),
            None if consistent => Ok(()),
            None => {
                Err(Error::InconsistentResponse { accepted: response.accepted, rejected: response.rejected, records })
            }
        };
        // The caller may have dropped its `Delivery`; the record is handled either way.
        let _ = reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordError;

    fn outcomes(result: Result<IngestResponse>, records: usize) -> Vec<Result<(), String>> {
        let (replies, receivers): (Vec<_>, Vec<_>) = (0..records).map(|_| oneshot::channel()).unzip();
        deliver(result, replies);
        receivers.into_iter().map(|mut rx| rx.try_recv().unwrap().map_err(|error| error.to_string())).collect()
    }

    fn response(accepted: u64, errors: &[(usize, &str)]) -> IngestResponse {
        IngestResponse {
            accepted,
            rejected: errors.len() as u64,
            errors: errors
                .iter()
                .map(|(index, error)| RecordError { index: *index, error: (*error).to_owned() })
                .collect(),
        }
    }

    #[test]
    fn each_record_gets_its_own_outcome() {
        let got = outcomes(Ok(response(2, &[(1, "missing level")])), 3);
        assert_eq!(
            got,
            vec![Ok(()), Err("record 1 of its batch rejected by the server: missing level".to_owned()), Ok(())]
        );
    }

    #[test]
    fn bad_request_with_per_record_errors_is_spread_over_records() {
        let body = response(0, &[(0, "bad timestamp"), (1, "bad level")]);
        let got = outcomes(Err(Error::BadRequest { message: String::new(), response: Some(body) }), 2);
        assert!(got.iter().all(|outcome| outcome.as_ref().is_err_and(|e| e.contains("rejected"))));
    }

    #[test]
    fn counts_that_do_not_add_up_are_reported() {
        let got = outcomes(Ok(response(1, &[])), 2);
        assert!(got.iter().all(|outcome| { outcome.as_ref().is_err_and(|e| e.contains("accounts for 1 accepted")) }));
    }

    #[test]
    fn whole_batch_failure_reaches_every_record() {
        let got = outcomes(Err(Error::Unauthorized { message: "bad key".to_owned() }), 2);
        let expected = "batch of 2 records failed: api key rejected by the server (status 401): bad key";
        assert_eq!(got, vec![Err(expected.to_owned()), Err(expected.to_owned())]);
    }

    #[test]
    fn config_limits() {
        assert!(ProducerConfig::default().validate().is_ok());
        let bad = [
            ProducerConfig { batch_records_max: 0, ..ProducerConfig::default() },
            ProducerConfig { in_flight_max: 0, ..ProducerConfig::default() },
            ProducerConfig { queue_records_max: 0, ..ProducerConfig::default() },
        ];
        for config in bad {
            assert!(matches!(config.validate(), Err(Error::InvalidConfig { .. })), "{config:?}");
        }
    }
}

//! The threads that decode request bodies.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::sync::oneshot;

use crate::ApiError;

type Job = Box<dyn FnOnce() + Send>;

/// As many decoding threads as cores, fed by one queue. A thread that finishes a body takes the
/// next queued one at once: under load, decodes follow each other without a thread being woken
/// or the request before being polled again in between. (Gating tokio's blocking pool with a
/// semaphore held each slot through both hand-offs, about as long again as the decode itself
/// for a request of 100 records.) The queue is bounded by the memory budget: every body in it
/// holds its share.
pub(crate) struct Decoders {
    queue: crossbeam_channel::Sender<Job>,
}

impl Decoders {
    /// Starts `threads` threads; they end once the last handle to the queue is dropped.
    pub(crate) fn start(threads: usize) -> Decoders {
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new().name(format!("decode-{i}")).spawn(move || {
                while let Ok(job) = jobs.recv() {
                    job();
                }
            });
            if let Err(e) = spawned {
                // The others still decode; with none at all, `run` answers 500.
                tracing::error!(error = %e, "cannot start a decoding thread");
            }
        }
        Decoders { queue }
    }

    /// Runs `work` on a decoding thread. A panic in it is answered as an internal error; the
    /// thread lives on.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(work)));
        });
        self.queue.send(job).map_err(|_| ApiError::internal("no decoding thread is running"))?;
        match result.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                metrics::counter!("strata_ingest_decode_panics_total").increment(1);
                Err(ApiError::internal("decoding the request failed unexpectedly"))
            }
            Err(_) => Err(ApiError::internal("no decoding thread is running")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_come_back_and_a_panic_is_an_error_not_a_lost_thread() {
        let decoders = Decoders::start(1);
        assert_eq!(decoders.run(|| Ok(41 + 1)).await.unwrap(), 42);
        let panicked = decoders.run(|| -> Result<(), ApiError> { panic!("hostile body") }).await.unwrap_err();
        assert_eq!(panicked.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        // The one thread survived the panic and takes the next body.
        assert_eq!(decoders.run(|| Ok("next")).await.unwrap(), "next");
        let failed = decoders.run(|| -> Result<(), ApiError> { Err(ApiError::bad_request("bad")) }).await;
        assert_eq!(failed.unwrap_err().status, axum::http::StatusCode::BAD_REQUEST);
    }
}

//! Appends on their way to a topic: what a busy partition's group commit waits for.
//!
//! A partition's writer holds a group back for the rest of its interval so that appends arriving
//! meanwhile share one fsync. That pays while producers are still working on what they will
//! append (decoding requests): the wait gathers their batches. Once every announced append has
//! reached a writer, nothing more is coming until the waiting producers are answered, and holding
//! the group only leaves the CPU idle. Producers announce an append before they start on it
//! ([`crate::Log::announce`]); a writer waits only while some are announced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

/// The appends announced to one topic and not yet handed to a writer, and the topic's writers.
#[derive(Default)]
pub(crate) struct Arrivals {
    coming: AtomicUsize,
    writers: Mutex<Vec<Thread>>,
}

impl Arrivals {
    /// Registers the calling thread as one of the topic's writers, to be unparked when the last
    /// announced append arrives.
    pub(crate) fn register_writer(&self) {
        self.writers.lock().expect("writers lock").push(std::thread::current());
    }

    /// Whether no announced append is on its way.
    pub(crate) fn none_coming(&self) -> bool {
        self.coming.load(Ordering::Acquire) == 0
    }

    pub(crate) fn announce(self: &Arc<Self>) -> Announced {
        self.coming.fetch_add(1, Ordering::AcqRel);
        Announced { arrivals: Some(self.clone()) }
    }

    fn arrived(&self) {
        if self.coming.fetch_sub(1, Ordering::AcqRel) == 1 {
            for w in self.writers.lock().expect("writers lock").iter() {
                w.unpark();
            }
        }
    }
}

/// An append on its way to a topic, from [`crate::Log::announce`]. It stops being counted when
/// dropped: [`crate::Log::append_announced`] drops it once the partition's writer has the batch, and
/// a producer that appends nothing after all (a request refused while decoding) just drops it.
#[must_use = "an announcement counts until it is dropped"]
pub struct Announced {
    arrivals: Option<Arc<Arrivals>>,
}

impl Announced {
    /// An announcement that counts nowhere: for a log whose appends do not wait for others.
    pub fn none() -> Announced {
        Announced { arrivals: None }
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        if let Some(a) = self.arrivals.take() {
            a.arrived();
        }
    }
}

impl std::fmt::Debug for Announced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announced").field("counted", &self.arrivals.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_last_arrival_unparks_the_writers() {
        let arrivals = Arc::new(Arrivals::default());
        assert!(arrivals.none_coming());
        let (a, b) = (arrivals.announce(), arrivals.announce());
        let none = Announced::none();
        drop(none);
        assert!(!arrivals.none_coming());
        let waiter = {
            let arrivals = arrivals.clone();
            std::thread::spawn(move || {
                arrivals.register_writer();
                let started = Instant::now();
                while !arrivals.none_coming() {
                    std::thread::park_timeout(Duration::from_secs(60));
                    assert!(started.elapsed() < Duration::from_secs(50), "never unparked");
                }
            })
        };
        drop(a);
        assert!(!arrivals.none_coming(), "one is still on its way");
        // Unparked at once whether or not it has parked yet (the token is kept).
        while arrivals.writers.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        drop(b);
        assert!(arrivals.none_coming());
        waiter.join().unwrap();
    }
}

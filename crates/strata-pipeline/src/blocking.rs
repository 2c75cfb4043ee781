//! A sink driven by hand, outside the consumer runtime: tests that crash a sink between calls and
//! benchmarks that time it alone call it the way the runtime does, one call at a time, each on a
//! current-thread runtime of the driver's own.

use strata_log::StoredRecord;

use crate::{Positions, Sink, SinkError};

/// Drives a [`Sink`] with blocking calls. Must not be used from inside an async runtime (its
/// `block_on` would panic there); use it from plain threads and `#[test]` functions.
pub struct BlockingSink<S: Sink> {
    sink: S,
    rt: tokio::runtime::Runtime,
}

impl<S: Sink> BlockingSink<S> {
    pub fn new(sink: S) -> BlockingSink<S> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sink driver runtime");
        BlockingSink { sink, rt }
    }

    /// Runs `Sink::committed` to its end.
    pub fn committed(&mut self) -> Result<Positions, SinkError> {
        self.rt.block_on(self.sink.committed())
    }

    /// Runs `Sink::write` to its end.
    pub fn write(&mut self, topic: &str, partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        self.rt.block_on(self.sink.write(topic, partition, records))
    }

    /// Runs `Sink::commit` to its end.
    pub fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.rt.block_on(self.sink.commit(positions))
    }

    /// Runs `Sink::stop` to its end.
    pub fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.rt.block_on(self.sink.stop(positions))
    }

    pub fn get_ref(&self) -> &S {
        &self.sink
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sink
    }
}

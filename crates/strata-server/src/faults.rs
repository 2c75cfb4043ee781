//! Fault injection, compiled only with the `fault-injection` feature (the test suite turns it on;
//! release builds do not have it). `STRATA_FAULTS` names what a `strata serve` adds to its own
//! consumers, so that the tests can watch supervision and exactly-once delivery in the real
//! server, with its real HTTP answers, rather than in a copy of its wiring:
//!
//! - `panic-on=N`: consumer `fault-panic` panics once when it applies event number N;
//! - `fail-starts=K`: consumer `fault-start` fails its first K starts;
//! - `retry-writes=K`: consumer `fault-retry` refuses its first K writes as retryable;
//! - `copy-events`: processor `events-to-logs` turns every event into a log line.
//!
//! The fault sinks read the `events` topic, where the tests number events by `data.n`, and each
//! keeps the numbers it applied together with its positions in one state file,
//! `<data-dir>/faults/<group>.state`, so a test can check that every event was applied once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use strata_log::{Log, StoredRecord};
use strata_model::topic::{Events, Logs};
use strata_model::{Event, LogLine, Topic, TopicSpec};
use strata_pipeline::{
    Consumer, ConsumerConfig, Consumers, Decoded, OutputRecord, Positions, Processor, ProcessorSink, SinkError,
    SinkFactory, TopicSink, Typed, spawn_consumer,
};

/// The faults `STRATA_FAULTS` asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Faults {
    pub panic_on: Option<u64>,
    pub fail_starts: u32,
    pub retry_writes: u32,
    pub copy_events: bool,
}

impl Faults {
    /// Reads `STRATA_FAULTS`; unset or empty asks for nothing.
    pub fn from_env() -> anyhow::Result<Faults> {
        match std::env::var("STRATA_FAULTS") {
            Ok(spec) => Faults::parse(&spec).context("STRATA_FAULTS"),
            Err(_) => Ok(Faults::default()),
        }
    }

    fn parse(spec: &str) -> anyhow::Result<Faults> {
        let mut f = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let number = || value.parse::<u64>().with_context(|| format!("{key} takes a number, got {value:?}"));
            match key {
                "panic-on" => f.panic_on = Some(number()?),
                "fail-starts" => f.fail_starts = number()? as u32,
                "retry-writes" => f.retry_writes = number()? as u32,
                "copy-events" => f.copy_events = true,
                _ => bail!("unknown fault {key:?} (panic-on, fail-starts, retry-writes, copy-events)"),
            }
        }
        Ok(f)
    }

    /// Starts a consumer for each fault asked for.
    pub fn spawn(
        &self,
        log: &Arc<dyn Log>,
        data_dir: &Path,
        cfg: &ConsumerConfig,
        consumers: &Consumers,
    ) -> anyhow::Result<Vec<Consumer>> {
        let dir = data_dir.join("faults");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Slow enough that a test sees each consumer down before it recovers.
        let cfg = ConsumerConfig { backoff_ms_min: 1000, backoff_ms_max: 2000, ..cfg.clone() };
        let mut out = Vec::new();
        let mut applier = |group: &'static str, fault: Fault, count: u32| {
            let left = Arc::new(AtomicU32::new(count));
            let path = dir.join(format!("{group}.state"));
            let factory: SinkFactory =
                Box::new(move || Box::new(Typed::new(Applier::new(group, path.clone(), fault, left.clone()))));
            out.push(spawn_consumer(log.clone(), factory, cfg.clone(), consumers));
        };
        if let Some(n) = self.panic_on {
            applier("fault-panic", Fault::PanicOn(n), 1);
        }
        if self.fail_starts > 0 {
            applier("fault-start", Fault::FailStarts, self.fail_starts);
        }
        if self.retry_writes > 0 {
            applier("fault-retry", Fault::RetryWrites, self.retry_writes);
        }
        if self.copy_events {
            let (log2, dir) = (log.clone(), dir.clone());
            let factory: SinkFactory = Box::new(move || Box::new(ProcessorSink::new(EventsToLogs, log2.clone(), &dir)));
            out.push(spawn_consumer(log.clone(), factory, cfg.clone(), consumers));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    PanicOn(u64),
    FailStarts,
    RetryWrites,
}

/// What an applier has made durable: the event numbers it applied, in order, and the positions
/// they reach, written together.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub applied: Vec<u64>,
    pub positions: Vec<(String, u32, u64)>,
}

/// A sink that applies numbered events and misbehaves as its fault says.
struct Applier {
    group: &'static str,
    path: PathBuf,
    fault: Fault,
    /// Faults still to inject, shared by every sink its factory builds.
    left: Arc<AtomicU32>,
    state: AppliedState,
    pending: Vec<u64>,
}

impl Applier {
    fn new(group: &'static str, path: PathBuf, fault: Fault, left: Arc<AtomicU32>) -> Applier {
        Applier { group, path, fault, left, state: AppliedState::default(), pending: Vec::new() }
    }

    fn take_fault(&self) -> bool {
        self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

#[strata_pipeline::async_trait]
impl TopicSink for Applier {
    type Topic = Events;

    fn group(&self) -> &str {
        self.group
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        if self.fault == Fault::FailStarts && self.take_fault() {
            return Err(SinkError::Corrupt { path: self.path.clone(), reason: "injected start failure".into() });
        }
        self.state = match strata_durable::read(&self.path)? {
            None => AppliedState::default(),
            Some(contents) => serde_json::from_slice(&contents.checked(&self.path)?)
                .map_err(|e| SinkError::Corrupt { path: self.path.clone(), reason: e.to_string() })?,
        };
        Ok(self.state.positions.iter().map(|(t, p, o)| ((t.clone(), *p), *o)).collect())
    }

    async fn write<'r>(&mut self, _partition: u32, records: &[Decoded<'r, Events>]) -> Result<(), SinkError> {
        if self.fault == Fault::RetryWrites && self.take_fault() {
            return Err(SinkError::Retry { reason: "injected busy dependency".into() });
        }
        for r in records {
            let n = r.record.data.get("n").and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
            if self.fault == Fault::PanicOn(n) && self.take_fault() {
                panic!("injected panic on event {n}");
            }
            self.pending.push(n);
        }
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let mut next = AppliedState {
            applied: std::mem::take(&mut self.state.applied),
            positions: positions.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect(),
        };
        next.applied.extend_from_slice(&self.pending);
        let body = serde_json::to_vec(&next).expect("state serialises");
        if let Err(e) = strata_durable::write(&self.path, &body) {
            self.state.applied = std::mem::take(&mut next.applied);
            self.state.applied.truncate(self.state.applied.len() - self.pending.len());
            return Err(e.into());
        }
        self.pending.clear();
        self.state = next;
        Ok(())
    }
}

/// A processor from `events` to `logs`: each event becomes the log line `event <type> <n>`, with
/// the event's source, time and number (attribute `n`).
struct EventsToLogs;

impl Processor for EventsToLogs {
    fn name(&self) -> &str {
        "events-to-logs"
    }

    fn input(&self) -> TopicSpec {
        Events::SPEC
    }

    fn output(&self) -> TopicSpec {
        Logs::SPEC
    }

    fn process(&mut self, record: &StoredRecord, out: &mut Vec<OutputRecord>) -> Result<(), SinkError> {
        // An event that does not decode has no line; the same holds on every replay.
        let Ok(event) = Events::decode(&record.record.payload) else { return Ok(()) };
        let Event { event_type, timestamp_ns, source_id, data, .. } = event;
        let n = data.get("n").cloned().unwrap_or_default();
        let mut attributes = serde_json::Map::new();
        attributes.insert("n".into(), n.clone());
        let line = LogLine {
            timestamp_ns,
            source_id: source_id.clone(),
            level: "info".into(),
            message: format!("event {event_type} {n}"),
            run_id: None,
            trace_id: None,
            service: None,
            host: None,
            attributes,
        };
        let payload = serde_json::to_vec(&line).expect("a log line serialises");
        out.push(OutputRecord { timestamp_ns, source_id, headers: Vec::new(), payload });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_unknown_ones_are_named() {
        let f = Faults::parse("panic-on=7, fail-starts=3,retry-writes=5,copy-events").unwrap();
        assert_eq!(f, Faults { panic_on: Some(7), fail_starts: 3, retry_writes: 5, copy_events: true });
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        let e = Faults::parse("explode=1").unwrap_err().to_string();
        assert!(e.contains("unknown fault \"explode\""), "{e}");
        assert!(Faults::parse("panic-on=x").is_err());
    }
}

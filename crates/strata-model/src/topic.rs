//! The log's topics, each declared once: its name, the kind of record it holds, how its batches
//! are compressed and how long they are kept unless configured otherwise. The gateway, the log,
//! the server's configuration defaults and the consumers name a declaration rather than spelling
//! a topic's name, so a topic cannot change in one of them and not in the others.
//!
//! [`Topic`] ties a declaration to the type its payloads decode to. The consumer runtime decodes
//! every record once, through it, and a sink is handed records it never parses itself.

use crate::{BatchError, Event, EventRef, Kind, LogLine, MetricBatch};

/// Partitions of each new topic unless configured otherwise: one, as Kafka's and Redpanda's
/// default. On one machine more buy no parallelism (every consumer reads all of a topic's
/// partitions on one thread, and requests are decoded on threads of their own) and each costs
/// a writer thread and an fsync per group commit: a request whose records span four partitions
/// waits for four writers, and 100-record requests ran at 150,000 lines/s with four against
/// 204,000 with one (BENCHMARKS.md, the shippers' protocols). A topic that has more on disk keeps
/// them; more can be configured at any time (`log.partitions`).
pub const PARTITIONS_DEFAULT: u32 = 1;

/// How long a topic keeps its segments unless configured otherwise: 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;

/// How a topic's batches are compressed; the log maps each to its codec of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 2] = [Compression::None, Compression::Zstd];

    /// The name configuration files use for it.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
}

/// One topic's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name in the log, in consumer positions and in metrics labels.
    pub name: &'static str,
    /// The kind of record producers append to it; `None` for the topics Strata keeps for
    /// itself (`series`).
    pub kind: Option<Kind>,
    /// How its batches are compressed by default.
    pub compression: Compression,
    /// How long its segments are kept by default; `None` keeps them.
    pub retention_ms: Option<u64>,
    /// A partition count of its own, whatever the log's default.
    pub partitions: Option<u32>,
}

impl TopicSpec {
    /// Every topic of the log.
    pub const ALL: [TopicSpec; 9] = [
        Logs::SPEC,
        Events::SPEC,
        Metrics::SPEC,
        Raw::SPEC,
        Series::SPEC,
        Rollups::SPEC,
        Late::SPEC,
        Reference::SPEC,
        EventsEnriched::SPEC,
    ];

    /// The declaration of the topic called `name`, if there is one.
    pub fn named(name: &str) -> Option<TopicSpec> {
        TopicSpec::ALL.into_iter().find(|s| s.name == name)
    }
}

impl Kind {
    /// The declaration of the topic records of this kind are appended to.
    pub const fn spec(self) -> TopicSpec {
        match self {
            Kind::Logs => Logs::SPEC,
            Kind::Events => Events::SPEC,
            Kind::Metrics => Metrics::SPEC,
            Kind::Raw => Raw::SPEC,
        }
    }
}

/// Why a record's payload is not what its topic declares.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a valid {kind} record: {source}")]
    Json { kind: Kind, source: serde_json::Error },
    #[error(transparent)]
    MetricBatch(#[from] BatchError),
    #[error("payload is not a valid {topic} record: {source}")]
    Internal { topic: &'static str, source: serde_json::Error },
}

/// A topic as a type: its declaration and how its payloads decode. A decoded record may borrow
/// from the payload, so a consumer decodes straight out of its read buffer.
pub trait Topic: Send + Sync + 'static {
    const SPEC: TopicSpec;

    /// A payload decoded. `Send + Sync` so that a sink may hold records across an `.await`.
    type Record<'a>: Send + Sync;

    fn decode(payload: &[u8]) -> Result<Self::Record<'_>, DecodeError>;
}

/// The `logs` topic: normalised log lines as JSON.
#[derive(Debug, Clone, Copy)]
pub struct Logs;

/// The `events` topic: normalised events as JSON.
#[derive(Debug, Clone, Copy)]
pub struct Events;

/// The `metrics` topic: one `MetricBatch` per source and request.
#[derive(Debug, Clone, Copy)]
pub struct Metrics;

/// The `raw` topic: opaque payloads, with their stream and content type in headers.
#[derive(Debug, Clone, Copy)]
pub struct Raw;

/// The `series` topic: the definitions of the metric series that version 3 metric batches name
/// by number ([`crate::SeriesRegistry`]), one record per request that had new ones. One
/// partition: definitions carry their numbers, so order among them does not matter, and a
/// reader loads all of them. Kept twice as long as the metrics topic (the server sets it from
/// that topic's retention), since a definition must outlive every batch naming it.
#[derive(Debug, Clone, Copy)]
pub struct Series;

fn json<'a, T: serde::Deserialize<'a>>(kind: Kind, payload: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|source| DecodeError::Json { kind, source })
}

impl Topic for Logs {
    const SPEC: TopicSpec = TopicSpec {
        name: "logs",
        kind: Some(Kind::Logs),
        compression: Compression::Zstd,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: None,
    };

    // Owned rather than borrowed: the search schema, the tail and the gateway all speak
    // `LogLine`, whose attributes are a JSON map; a borrowed twin would ripple through all of
    // them for a copy of a few short strings per line.
    type Record<'a> = LogLine;

    fn decode(payload: &[u8]) -> Result<LogLine, DecodeError> {
        json(Kind::Logs, payload)
    }
}

impl Topic for Events {
    const SPEC: TopicSpec = TopicSpec {
        name: "events",
        kind: Some(Kind::Events),
        compression: Compression::Zstd,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: None,
    };

    // Owned for the same reason as `Logs`: its data is a JSON map.
    type Record<'a> = Event;

    fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
        json(Kind::Events, payload)
    }
}

impl Topic for Metrics {
    const SPEC: TopicSpec = TopicSpec {
        name: "metrics",
        kind: Some(Kind::Metrics),
        compression: Compression::Zstd,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: None,
    };

    /// Borrows its label strings from the payload. A version 2 batch (what the gateway writes) is
    /// checked whole by `decode`; a version 1 batch, from logs written before it, has only its
    /// header and symbol table checked here and its series when they are walked
    /// (`MetricBatch::for_each_series`).
    type Record<'a> = MetricBatch<'a>;

    fn decode(payload: &[u8]) -> Result<MetricBatch<'_>, DecodeError> {
        Ok(MetricBatch::decode(payload)?)
    }
}

impl Topic for Raw {
    // Raw payloads are often compressed already (dumps, images): not worth the CPU.
    const SPEC: TopicSpec = TopicSpec {
        name: "raw",
        kind: Some(Kind::Raw),
        compression: Compression::None,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: None,
    };

    /// The payload itself: every byte string is a raw record.
    type Record<'a> = &'a [u8];

    fn decode(payload: &[u8]) -> Result<&[u8], DecodeError> {
        Ok(payload)
    }
}

impl Topic for Series {
    const SPEC: TopicSpec = TopicSpec {
        name: "series",
        kind: None,
        compression: Compression::Zstd,
        retention_ms: Some(2 * RETENTION_MS_DEFAULT),
        partitions: Some(1),
    };

    /// Checked as a whole when the registry loads it.
    type Record<'a> = &'a [u8];

    fn decode(payload: &[u8]) -> Result<&[u8], DecodeError> {
        Ok(payload)
    }
}

/// The `rollups` topic: the rollup operator's windows as metric batches (labels spelt out), one
/// sample per window at its end; the rollup store reads it.
#[derive(Debug, Clone, Copy)]
pub struct Rollups;

impl Topic for Rollups {
    const SPEC: TopicSpec = TopicSpec {
        name: "rollups",
        kind: None,
        compression: Compression::Zstd,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: None,
    };

    type Record<'a> = MetricBatch<'a>;

    fn decode(payload: &[u8]) -> Result<MetricBatch<'_>, DecodeError> {
        Ok(MetricBatch::decode(payload)?)
    }
}

/// The `late` topic: records that came after their rollup windows closed, as JSON, kept so that
/// nothing is dropped silently (`GET /query/v1/late`).
#[derive(Debug, Clone, Copy)]
pub struct Late;

impl Topic for Late {
    const SPEC: TopicSpec = TopicSpec {
        name: "late",
        kind: None,
        compression: Compression::Zstd,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: Some(1),
    };

    type Record<'a> = serde_json::Value;

    fn decode(payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        serde_json::from_slice(payload).map_err(|source| DecodeError::Internal { topic: "late", source })
    }
}

/// The `reference` topic: changes of reference table rows (a Debezium envelope or a plain row
/// per record, the table's name as its source), kept whole: a table is rebuilt from it.
#[derive(Debug, Clone, Copy)]
pub struct Reference;

impl Topic for Reference {
    const SPEC: TopicSpec = TopicSpec {
        name: "reference",
        kind: None,
        compression: Compression::Zstd,
        retention_ms: None,
        partitions: Some(1),
    };

    type Record<'a> = &'a [u8];

    fn decode(payload: &[u8]) -> Result<&[u8], DecodeError> {
        Ok(payload)
    }
}

/// The `events_enriched` topic: events deduplicated and enriched from reference tables.
#[derive(Debug, Clone, Copy)]
pub struct EventsEnriched;

impl Topic for EventsEnriched {
    const SPEC: TopicSpec = TopicSpec {
        name: "events_enriched",
        kind: None,
        compression: Compression::Zstd,
        retention_ms: Some(RETENTION_MS_DEFAULT),
        partitions: None,
    };

    // Borrowed: its one reader, the lake, copies each field's value into a column, and a map of
    // `Value`s built per event only to be taken apart was a third of its time.
    type Record<'a> = EventRef<'a>;

    fn decode(payload: &[u8]) -> Result<EventRef<'_>, DecodeError> {
        EventRef::parse(payload).map_err(|source| DecodeError::Internal { topic: "events_enriched", source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricBatchBuilder;

    #[test]
    fn every_kind_has_one_declaration_and_back() {
        for kind in Kind::ALL {
            let declared: Vec<TopicSpec> = TopicSpec::ALL.into_iter().filter(|s| s.kind == Some(kind)).collect();
            assert_eq!(declared, [kind.spec()], "{kind}: exactly one declaration, the one `spec` gives");
            assert_eq!(kind.topic(), kind.spec().name);
            assert_eq!(Kind::from_topic(kind.topic()), Some(kind));
            assert_eq!(TopicSpec::named(kind.topic()), Some(kind.spec()));
        }
        let internal: Vec<&str> = TopicSpec::ALL.iter().filter(|s| s.kind.is_none()).map(|s| s.name).collect();
        assert_eq!(
            internal,
            ["series", "rollups", "late", "reference", "events_enriched"],
            "topics without a kind of record are Strata's own"
        );
        assert_eq!(Kind::from_topic("series"), None);
        assert_eq!(Kind::from_topic("log"), None);
        assert_eq!(TopicSpec::named("Logs"), None, "names are exact");
    }

    #[test]
    fn names_are_unique_and_usable_as_directory_names() {
        for (i, a) in TopicSpec::ALL.iter().enumerate() {
            assert!(
                !a.name.is_empty() && a.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{:?} is not a plain lowercase name",
                a.name
            );
            for b in &TopicSpec::ALL[i + 1..] {
                assert_ne!(a.name, b.name, "two topics share a name");
            }
        }
    }

    #[test]
    fn markers_carry_their_kinds_declaration() {
        assert_eq!(Logs::SPEC, Kind::Logs.spec());
        assert_eq!(Events::SPEC, Kind::Events.spec());
        assert_eq!(Metrics::SPEC, Kind::Metrics.spec());
        assert_eq!(Raw::SPEC, Kind::Raw.spec());
    }

    #[test]
    fn payloads_decode_as_their_topic_declares() {
        let line = LogLine {
            timestamp_ns: 7,
            source_id: "s".into(),
            level: "info".into(),
            message: "m".into(),
            run_id: None,
            trace_id: None,
            service: None,
            host: None,
            attributes: Default::default(),
        };
        assert_eq!(Logs::decode(&serde_json::to_vec(&line).unwrap()).unwrap(), line);

        let bytes = MetricBatchBuilder::new().finish();
        let batch = Metrics::decode(&bytes).unwrap();
        assert_eq!(batch.series().unwrap(), [], "an empty batch is a valid one");

        assert_eq!(Raw::decode(b"\x00anything").unwrap(), b"\x00anything");
    }

    #[test]
    fn a_payload_of_another_shape_is_an_error_naming_the_kind() {
        let err = Logs::decode(b"{\"not\": \"a line\"}").unwrap_err();
        assert!(err.to_string().starts_with("payload is not a valid logs record: "), "{err}");
        let err = Events::decode(b"[").unwrap_err();
        assert!(err.to_string().starts_with("payload is not a valid events record: "), "{err}");
        assert!(matches!(Metrics::decode(b"{}"), Err(DecodeError::MetricBatch(BatchError::Version(b'{')))));
        assert!(matches!(Metrics::decode(b""), Err(DecodeError::MetricBatch(BatchError::Truncated))));
    }
}

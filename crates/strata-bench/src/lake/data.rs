//! The events the lake benchmark writes, a pure function of the seed: ten event types from about
//! a thousand sources over a few days, nine of ten events of the measured tenant, and a `data`
//! of nine fields of mixed types with the cardinalities of a web shop's telemetry.
//!
//! The tenant and the event id of an event are a hash of its index, so the query phase can name
//! an event (the needle of its lookup) without generating the ones before it.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, LogNormal, Zipf};
use serde_json::{Map, Value};
use strata_log::{Record, StoredRecord};
use strata_model::Event;

/// The first event's day, 2026-03-02T00:00:00Z, in nanoseconds.
pub const T0_NS: i64 = 1_772_409_600_000_000_000;

/// The tenant the queries are measured for; it holds nine events of ten.
pub const TENANT: &str = "acme";

/// The tenant of the other events, which every query of `TENANT` filters out.
const OTHER_TENANT: &str = "globex";

/// Event types with their weight in a hundred.
const TYPES: [(&str, u32); 10] = [
    ("page.view", 30),
    ("api.request", 25),
    ("search", 10),
    ("cart.add", 8),
    ("user.login", 8),
    ("order.placed", 6),
    ("payment.succeeded", 5),
    ("error", 5),
    ("user.signup", 2),
    ("payment.failed", 1),
];

/// HTTP statuses of the events that are not errors, with their weight in a thousand.
const STATUSES: [(i64, u32); 8] =
    [(200, 870), (201, 40), (204, 20), (301, 10), (400, 20), (401, 10), (404, 25), (429, 5)];

/// Regions, most traffic first; the dimension table of the join maps them to continents.
pub const REGIONS: [(&str, &str); 8] = [
    ("us-east", "Americas"),
    ("eu-west", "Europe"),
    ("us-west", "Americas"),
    ("eu-central", "Europe"),
    ("ap-northeast", "Asia"),
    ("ap-south", "Asia"),
    ("sa-east", "Americas"),
    ("af-south", "Africa"),
];

const COUNTRIES: [&str; 40] = [
    "US", "DE", "GB", "FR", "JP", "IN", "BR", "CA", "NL", "ES", "IT", "AU", "SE", "PL", "MX", "KR", "CH", "BE", "AT",
    "DK", "NO", "FI", "IE", "PT", "CZ", "SG", "NZ", "AR", "CL", "CO", "ZA", "NG", "EG", "TR", "IL", "AE", "TH", "VN",
    "ID", "PH",
];

const RESOURCES: [&str; 12] = [
    "products",
    "orders",
    "cart",
    "users",
    "search",
    "payments",
    "reviews",
    "categories",
    "wishlist",
    "shipping",
    "coupons",
    "sessions",
];

const ACTIONS: [&str; 8] = ["list", "get", "create", "update", "delete", "export", "count", "validate"];

/// Distinct sources, `host-0001` to `host-1000`.
const SOURCES: u64 = 1000;

/// Distinct users, `u-0000001` upwards.
const USERS: u64 = 500_000;

/// How far an event's time may be after its place in the even spread: events arrive a little
/// out of order, as they do from many sources.
const JITTER_NS: i64 = 2_000_000_000;

/// Makes the events of one run, in order of their index.
pub struct Generator {
    seed: u64,
    events: u64,
    span_ns: i64,
    rng: StdRng,
    sources: Zipf<f64>,
    users: Zipf<f64>,
    countries: Zipf<f64>,
    paths: Zipf<f64>,
    regions: Zipf<f64>,
    amount_cents: LogNormal<f64>,
    latency_ms: LogNormal<f64>,
}

impl Generator {
    /// The generator of `events` events spread evenly over `days` days from [`T0_NS`].
    pub fn new(seed: u64, events: u64, days: u32) -> anyhow::Result<Generator> {
        let zipf = |n: u64, s: f64| Zipf::new(n as f64, s).map_err(anyhow::Error::msg);
        let log_normal = |median: f64, sigma: f64| LogNormal::new(median.ln(), sigma).map_err(anyhow::Error::msg);
        Ok(Generator {
            seed,
            events: events.max(1),
            span_ns: i64::from(days.max(1)) * 86_400_000_000_000,
            rng: StdRng::seed_from_u64(seed),
            sources: zipf(SOURCES, 1.1)?,
            users: zipf(USERS, 0.8)?,
            countries: zipf(COUNTRIES.len() as u64, 1.2)?,
            paths: zipf((RESOURCES.len() * ACTIONS.len()) as u64, 1.0)?,
            regions: zipf(REGIONS.len() as u64, 0.7)?,
            amount_cents: log_normal(3000.0, 1.0)?,
            latency_ms: log_normal(40.0, 0.8)?,
        })
    }

    /// Event `i` as the `events_enriched` topic stores it, at offset `i` of its partition.
    pub fn record(&mut self, i: u64) -> StoredRecord {
        let event = self.event(i);
        let payload = serde_json::to_vec(&event).expect("events serialise");
        StoredRecord {
            offset: i,
            append_time_ms: event.timestamp_ns / 1_000_000,
            record: Record {
                timestamp_ns: event.timestamp_ns,
                tenant: tenant(self.seed, i).into(),
                source_id: event.source_id,
                headers: Vec::new(),
                payload,
            },
        }
    }

    fn event(&mut self, i: u64) -> Event {
        let rng = &mut self.rng;
        let spread = (i128::from(i) * i128::from(self.span_ns) / i128::from(self.events)) as i64;
        let timestamp_ns = T0_NS + spread + rng.random_range(0..JITTER_NS);
        let event_type = weighted(rng, &TYPES);
        let status = if event_type == "error" {
            if rng.random_bool(0.75) { 500 } else { 503 }
        } else {
            weighted(rng, &STATUSES)
        };
        let pick = |z: &Zipf<f64>, rng: &mut StdRng| z.sample(rng) as usize - 1;
        let source = pick(&self.sources, rng) + 1;
        let user = pick(&self.users, rng) + 1;
        let path = pick(&self.paths, rng);
        let mut data = Map::new();
        data.insert("amount".into(), Value::from((self.amount_cents.sample(rng) as i64).clamp(50, 2_000_000)));
        data.insert("quantity".into(), Value::from(1 + (rng.random::<f64>().powi(3) * 10.0) as i64));
        data.insert("status".into(), Value::from(status));
        data.insert("price".into(), Value::from(rng.random_range(99..100_000) as f64 / 100.0));
        data.insert("latency_ms".into(), Value::from((self.latency_ms.sample(rng) * 10.0).round() / 10.0));
        data.insert("region".into(), Value::from(REGIONS[pick(&self.regions, rng)].0));
        data.insert("country".into(), Value::from(COUNTRIES[pick(&self.countries, rng)]));
        data.insert("user_id".into(), Value::from(format!("u-{user:07}")));
        data.insert(
            "path".into(),
            Value::from(format!("/api/v1/{}/{}", RESOURCES[path / ACTIONS.len()], ACTIONS[path % ACTIONS.len()])),
        );
        Event {
            event_type: event_type.into(),
            timestamp_ns,
            source_id: format!("host-{source:04}"),
            event_id: Some(event_id(self.seed, i)),
            data,
        }
    }
}

fn weighted<T: Copy>(rng: &mut StdRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut at = rng.random_range(0..total);
    for &(value, weight) in table {
        if at < weight {
            return value;
        }
        at -= weight;
    }
    table[table.len() - 1].0
}

/// SplitMix64's finaliser: a well-mixed hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The tenant of event `i`.
pub fn tenant(seed: u64, i: u64) -> &'static str {
    if mix(seed.rotate_left(32) ^ i).is_multiple_of(10) { OTHER_TENANT } else { TENANT }
}

/// The id of event `i`: a random (version 4) UUID.
pub fn event_id(seed: u64, i: u64) -> String {
    let a = mix(seed ^ mix(i));
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// The first event of [`TENANT`] from the middle of a run of `events`: what the lookup finds.
pub fn needle(seed: u64, events: u64) -> (u64, String) {
    let i = (events / 2..).find(|&i| tenant(seed, i) == TENANT).expect("nine events of ten are the tenant's");
    (i, event_id(seed, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_in_the_topic_shape() {
        let (mut a, mut b) = (Generator::new(7, 100, 3).unwrap(), Generator::new(7, 100, 3).unwrap());
        for i in 0..100 {
            let (x, y) = (a.record(i), b.record(i));
            assert_eq!(x.record.payload, y.record.payload);
            let e: Event = serde_json::from_slice(&x.record.payload).unwrap();
            assert_eq!(e.event_id.as_deref(), Some(event_id(7, i).as_str()));
            assert_eq!(e.data.len(), 9);
            assert!(e.timestamp_ns >= T0_NS && e.timestamp_ns < T0_NS + 3 * 86_400_000_000_000 + JITTER_NS);
        }
    }

    #[test]
    fn most_events_are_the_measured_tenants_and_ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|i| event_id(1, i)).collect();
        assert_eq!(ids.len(), 10_000);
        let ours = (0..10_000).filter(|&i| tenant(1, i) == TENANT).count();
        assert!((8_800..9_200).contains(&ours), "{ours} of 10,000");
        let (i, id) = needle(1, 1000);
        assert!(i >= 500 && tenant(1, i) == TENANT && id == event_id(1, i));
    }
}

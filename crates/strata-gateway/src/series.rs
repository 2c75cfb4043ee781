//! The per-tenant limit on active series, enforced where a sender can be told: a sample of a new
//! series past the limit is refused with its request (400, as Prometheus-compatible stores answer
//! limits a retry cannot fix), and samples of series the tenant already has go on. Enforcing it
//! here rather than in the metric store keeps the log the source of truth: the store holds
//! exactly what the log holds, so a replay never depends on what the store had at the time.
//!
//! A series is active while samples keep arriving; one silent for `active_series_idle_ms` stops
//! counting. The set is kept as 64-bit fingerprints and saved to `meta/active-series.bin` now and
//! then and at shutdown, so a restart does not forget who is active.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const FILE_VERSION: u32 = 1;

/// Limits on series per tenant.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeriesLimits {
    /// Active series of one tenant; samples of new series past it are refused.
    pub active_series_max: usize,
    /// Per-tenant overrides of `active_series_max`.
    pub tenant_active_series_max: BTreeMap<String, usize>,
    /// A series without a sample for this long is no longer active.
    pub active_series_idle_ms: u64,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits {
            active_series_max: 150_000,
            tenant_active_series_max: BTreeMap::new(),
            active_series_idle_ms: 3_600_000,
        }
    }
}

/// The active series of one tenant: fingerprint to the second it was last seen.
#[derive(Default)]
pub struct TenantSeries {
    seen: HashMap<u64, u32, strata_model::FastHash>,
    max: usize,
    swept_at: u32,
    idle_s: u32,
}

impl TenantSeries {
    /// Whether a sample of the series may be taken at `now_s`; a new series counts from now on.
    /// Admitting a request's series in one tight loop lets the processor overlap the cache misses
    /// of the lookups, which dominate when each is surrounded by decoding.
    pub fn admit(&mut self, fingerprint: u64, now_s: u32) -> bool {
        if let Some(last) = self.seen.get_mut(&fingerprint) {
            // Written only when it changes, so that the entry's cache line stays clean.
            if *last != now_s {
                *last = now_s;
            }
            return true;
        }
        if self.seen.len() >= self.max {
            self.sweep(now_s);
            if self.seen.len() >= self.max {
                return false;
            }
        }
        self.seen.insert(fingerprint, now_s);
        true
    }

    /// The limit this tenant is held to.
    pub fn max(&self) -> usize {
        self.max
    }

    fn sweep(&mut self, now_s: u32) {
        // At most every tenth of the idle time: a tenant at its limit must not pay a full scan
        // for every refused sample.
        if now_s.saturating_sub(self.swept_at) < (self.idle_s / 10).max(1) {
            return;
        }
        self.swept_at = now_s;
        let idle = self.idle_s;
        self.seen.retain(|_, last| now_s.saturating_sub(*last) < idle);
    }
}

/// Every tenant's active series.
pub struct SeriesLimiter {
    limits: SeriesLimits,
    path: Option<PathBuf>,
    tenants: Mutex<HashMap<String, Arc<Mutex<TenantSeries>>>>,
}

pub fn now_s() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

impl SeriesLimiter {
    /// A limiter saved in `path` (and loaded from it if it is there and valid).
    pub fn new(limits: SeriesLimits, path: Option<PathBuf>) -> SeriesLimiter {
        let l = SeriesLimiter { limits, path, tenants: Mutex::new(HashMap::new()) };
        if let Some(p) = &l.path {
            match load(p) {
                Ok(saved) => {
                    let mut tenants = l.tenants.lock().expect("series lock");
                    for (tenant, seen) in saved {
                        let mut t = l.new_tenant(&tenant);
                        t.seen = seen;
                        tenants.insert(tenant, Arc::new(Mutex::new(t)));
                    }
                }
                Err(e) => tracing::error!(path = %p.display(), error = %e, "active series not loaded; counting anew"),
            }
        }
        l
    }

    fn new_tenant(&self, tenant: &str) -> TenantSeries {
        TenantSeries {
            seen: HashMap::default(),
            max: self.limits.tenant_active_series_max.get(tenant).copied().unwrap_or(self.limits.active_series_max),
            swept_at: 0,
            idle_s: (self.limits.active_series_idle_ms / 1000).clamp(1, u64::from(u32::MAX)) as u32,
        }
    }

    /// The series of `tenant`; lock it for a request's admissions, not for its decoding, so that
    /// requests of one tenant decode in parallel.
    pub fn tenant(&self, tenant: &str) -> Arc<Mutex<TenantSeries>> {
        let mut tenants = self.tenants.lock().expect("series lock");
        tenants.entry(tenant.to_string()).or_insert_with(|| Arc::new(Mutex::new(self.new_tenant(tenant)))).clone()
    }

    /// Active series per tenant, after dropping idle ones.
    pub fn active(&self) -> Vec<(String, usize)> {
        let tenants: Vec<(String, Arc<Mutex<TenantSeries>>)> =
            self.tenants.lock().expect("series lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let now = now_s();
        tenants
            .into_iter()
            .map(|(name, t)| {
                let mut t = t.lock().expect("tenant series lock");
                t.swept_at = 0;
                t.sweep(now);
                (name, t.seen.len())
            })
            .collect()
    }

    /// Saves the active series as a state file.
    pub fn save(&self) -> Result<(), strata_durable::Error> {
        let Some(path) = &self.path else { return Ok(()) };
        let tenants: Vec<(String, Arc<Mutex<TenantSeries>>)> =
            self.tenants.lock().expect("series lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut body = Vec::new();
        body.extend_from_slice(&(tenants.len() as u32).to_le_bytes());
        for (name, t) in tenants {
            let t = t.lock().expect("tenant series lock");
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&(t.seen.len() as u64).to_le_bytes());
            for (&fp, &last) in &t.seen {
                body.extend_from_slice(&fp.to_le_bytes());
                body.extend_from_slice(&last.to_le_bytes());
            }
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| strata_durable::Error::Io {
                path: dir.to_path_buf(),
                action: "create directory",
                source,
            })?;
        }
        let mut file = Vec::with_capacity(8 + body.len());
        file.extend_from_slice(&FILE_VERSION.to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        file.extend_from_slice(&body);
        strata_durable::write(path, &file)
    }
}

/// Saved series per tenant: fingerprint to last seen.
type Saved = Vec<(String, HashMap<u64, u32, strata_model::FastHash>)>;

fn load(path: &Path) -> Result<Saved, String> {
    let bytes = match strata_durable::read(path).map_err(|e| e.to_string())? {
        None => return Ok(Vec::new()),
        Some(strata_durable::Contents::Checked(b) | strata_durable::Contents::Legacy(b)) => b,
    };
    if bytes.len() < 8 {
        return Err("file is too short".into());
    }
    let version = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != FILE_VERSION {
        return Err(format!("format version {version} is unknown"));
    }
    let body = &bytes[8..];
    if crc32c::crc32c(body) != crc {
        return Err("checksum does not match".into());
    }
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = body.get(at..at + n).ok_or("file ends early")?;
        at += n;
        Ok(s)
    };
    let tenants = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
    let mut out = Vec::new();
    for _ in 0..tenants {
        let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let name = String::from_utf8(take(len)?.to_vec()).map_err(|e| e.to_string())?;
        let n = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let mut seen = HashMap::with_capacity_and_hasher(n.min(body.len() / 12), Default::default());
        for _ in 0..n {
            let fp = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            let last = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
            seen.insert(fp, last);
        }
        out.push((name, seen));
    }
    Ok(out)
}

/// Why the series registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadSeriesError {
    #[error(transparent)]
    Log(#[from] strata_log::Error),
    #[error("series definitions at {at} cannot be read: {source}")]
    Damaged { at: String, source: strata_model::BatchError },
}

/// Reads every definition in the `series` topic back into `registry`, before the gateway takes
/// requests and the metric store reads batches. A definition that does not decode is an error
/// naming its place: batches naming its series could not be read, so the server must not start
/// as if they could. Returns how many definitions were read.
pub fn load_series(
    log: &dyn strata_log::Log,
    registry: &strata_model::SeriesRegistry,
) -> Result<usize, LoadSeriesError> {
    use strata_model::topic::{Series, Topic};
    let topic = Series::SPEC.name;
    let mut loaded = 0;
    for info in log.topics().into_iter().filter(|t| t.name == topic).flat_map(|t| t.partitions) {
        let mut offset = info.earliest_offset;
        loop {
            let read = log.read(topic, info.partition, offset, 8 << 20)?;
            for r in &read.records {
                let append_s = (r.append_time_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32;
                loaded += registry.load(&r.record.tenant, &r.record.payload, append_s).map_err(|source| {
                    LoadSeriesError::Damaged { at: format!("{topic}/{}@{}", info.partition, r.offset), source }
                })?;
            }
            if read.next_offset >= read.end_offset || read.next_offset == offset {
                break;
            }
            offset = read.next_offset;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_series_past_the_limit_are_refused_and_idle_ones_make_room() {
        let limits = SeriesLimits {
            active_series_max: 2,
            tenant_active_series_max: [("big".to_string(), 3)].into(),
            active_series_idle_ms: 100_000,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active-series.bin");
        let l = SeriesLimiter::new(limits.clone(), Some(path.clone()));
        let t = l.tenant("a");
        let mut t = t.lock().unwrap();
        assert!(t.admit(1, 1000) && t.admit(2, 1000) && t.admit(1, 1001));
        assert!(!t.admit(3, 1002), "a third series is over the limit of 2");
        assert!(t.admit(2, 1050), "known series go on");
        // Series 1 has been silent for the idle time: it no longer counts.
        assert!(t.admit(3, 1101));
        assert!(!t.admit(1, 1102));
        drop(t);
        assert_eq!(l.tenant("big").lock().unwrap().max(), 3);
        l.save().unwrap();
        let again = SeriesLimiter::new(limits, Some(path));
        let t = again.tenant("a");
        let mut t = t.lock().unwrap();
        assert!(t.admit(2, 1103) && t.admit(3, 1103));
        assert!(!t.admit(4, 1103), "the saved series still count after a restart");
    }
}

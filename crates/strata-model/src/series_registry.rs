//! The series registry: every metric series in the log, numbered, so that a metric batch names a
//! series by a small number instead of spelling out its labels again in every request.
//!
//! A remote-write request carries one sample for each of thousands of series, and the same
//! series come back every scrape interval: spelt out each time, labels are three quarters of the
//! metrics topic even after compression. Prometheus's write-ahead log keeps series records apart
//! from sample records for the same reason. Here a series is defined once in the `series` topic
//! (its tenant, its number and its labels) and a metric batch of version 3 carries numbers.
//!
//! The rules that keep every number resolvable, from wherever a reader starts:
//! - A definition is durable in the `series` topic before any batch naming its number is
//!   appended: the gateway appends a request's new definitions first and waits for them. A
//!   request that uses a number whose definition is not yet known to be durable (another request
//!   is still writing it, or its write failed) writes the definition again itself; a repeated
//!   definition is the same number with the same labels and changes nothing.
//! - Numbers are never reused while a batch naming them may be in the log: a number is given out
//!   once per registry, and a registry rebuilt after a restart continues after the highest
//!   number it read back (a number whose definition never became durable was named by no batch).
//! - Definitions outlive the batches that name them: a series still in use is defined again
//!   once per `refresh_s` (the metrics topic's retention), and the `series` topic keeps its
//!   segments for twice that.
//! - A number resolves only for the tenant that defined it: a batch of one tenant cannot name
//!   another tenant's series.
//!
//! The registry is memory only; at start the server reads the whole `series` topic back into it.
//! Series unused for longer than the metrics topic keeps batches are forgotten by [`sweep`].
//!
//! A definitions record (`series` topic payload), one per request with new series:
//! ```text
//! u8      version (1)
//! varint  definition count, then each:
//!           varint number, varint label count (without the name),
//!           varint length and bytes of the metric name,
//!           per label (sorted by name): varint length and bytes of the name, then of the value
//! ```
//!
//! [`sweep`]: SeriesRegistry::sweep

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::{BatchError, FastHash, varint};

/// The version byte of a definitions record.
pub const SERIES_DEFS_VERSION: u8 = 1;

/// One series: its tenant, fingerprint and labels in the definitions record's form.
struct Entry {
    tenant: u32,
    fingerprint: u64,
    /// Label count, name, labels: the bytes of a definition after its number.
    packed: Box<[u8]>,
    /// Whether a definition of it is known to be durable in the `series` topic.
    durable: AtomicBool,
    /// When its definition was last made durable, in seconds since the epoch.
    defined_s: AtomicU32,
    /// When a batch last named it, in seconds since the epoch.
    used_s: AtomicU32,
}

#[derive(Default)]
struct TenantIds {
    /// Fingerprint to number; a second series with the same fingerprint goes to `collided`.
    ids: HashMap<u64, u64, FastHash>,
    collided: HashMap<u64, Vec<u64>, FastHash>,
}

#[derive(Default)]
struct Inner {
    tenant_names: Vec<String>,
    tenants: HashMap<String, u32>,
    by_tenant: Vec<TenantIds>,
    /// By number; `None` where a number was never defined or has been forgotten.
    series: Vec<Option<Entry>>,
    live: usize,
}

impl Inner {
    fn tenant_index(&mut self, tenant: &str) -> u32 {
        if let Some(&t) = self.tenants.get(tenant) {
            return t;
        }
        let t = self.tenant_names.len() as u32;
        self.tenant_names.push(tenant.to_string());
        self.tenants.insert(tenant.to_string(), t);
        self.by_tenant.push(TenantIds::default());
        t
    }

    fn find(&self, tenant: u32, fingerprint: u64, packed: &[u8]) -> Option<u64> {
        let ids = self.by_tenant.get(tenant as usize)?;
        let is = |id: u64| self.entry(id).is_some_and(|e| &*e.packed == packed);
        let &first = ids.ids.get(&fingerprint)?;
        if is(first) {
            return Some(first);
        }
        ids.collided.get(&fingerprint)?.iter().copied().find(|&id| is(id))
    }

    fn entry(&self, id: u64) -> Option<&Entry> {
        self.series.get(usize::try_from(id).ok()?)?.as_ref()
    }

    fn insert(&mut self, id: u64, entry: Entry) {
        let ids = &mut self.by_tenant[entry.tenant as usize];
        match ids.ids.entry(entry.fingerprint) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                ids.collided.entry(entry.fingerprint).or_default().push(id)
            }
        }
        let at = id as usize;
        if self.series.len() <= at {
            self.series.resize_with(at + 1, || None);
        }
        self.series[at] = Some(entry);
        self.live += 1;
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.series.get_mut(id as usize).and_then(Option::take) else { return };
        self.live -= 1;
        let ids = &mut self.by_tenant[entry.tenant as usize];
        let fp = entry.fingerprint;
        if ids.ids.get(&fp) == Some(&id) {
            ids.ids.remove(&fp);
            // A collided series of the same fingerprint takes the first place.
            if let Some(rest) = ids.collided.get_mut(&fp) {
                let next = rest.remove(0);
                if rest.is_empty() {
                    ids.collided.remove(&fp);
                }
                ids.ids.insert(fp, next);
            }
        } else if let Some(rest) = ids.collided.get_mut(&fp) {
            rest.retain(|&other| other != id);
            if rest.is_empty() {
                ids.collided.remove(&fp);
            }
        }
    }
}

/// Every metric series the log holds, by number and by tenant and labels.
pub struct SeriesRegistry {
    inner: RwLock<Inner>,
    /// How long a definition serves before a series in use is defined again, in seconds.
    refresh_s: u32,
}

/// The definitions a request must make durable before its batches are appended.
#[derive(Debug, Default)]
pub struct SeriesDefs {
    ids: Vec<u64>,
    bytes: Vec<u8>,
}

impl SeriesDefs {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The numbers defined.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The `series` topic payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 11);
        out.push(SERIES_DEFS_VERSION);
        varint::put(&mut out, self.ids.len() as u64);
        out.extend_from_slice(&self.bytes);
        out
    }

    fn push(&mut self, id: u64, packed: &[u8]) {
        self.ids.push(id);
        varint::put(&mut self.bytes, id);
        self.bytes.extend_from_slice(packed);
    }
}

/// A series as a definition holds it: metric name and labels sorted by name, without the name.
fn pack(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)]) {
    out.clear();
    varint::put(out, labels.len() as u64);
    let mut put = |s: &str| {
        varint::put(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    };
    put(name);
    for (n, v) in labels {
        put(n);
        put(v);
    }
}

/// Reads one packed series from the front of `b`: its name and labels, and the packed bytes.
fn unpack<'a>(b: &mut &'a [u8], labels: &mut Vec<(&'a str, &'a str)>) -> Result<(&'a str, &'a [u8]), BatchError> {
    let start = *b;
    let n = varint::take(b).map_err(|_| BatchError::Truncated)?;
    // Each label takes two bytes at least.
    if n > b.len() as u64 {
        return Err(BatchError::Truncated);
    }
    let mut string = || -> Result<&'a str, BatchError> {
        let len = varint::take(b).map_err(|_| BatchError::Truncated)?;
        let len = usize::try_from(len).map_err(|_| BatchError::Truncated)?;
        if len > b.len() {
            return Err(BatchError::Truncated);
        }
        let (s, rest) = b.split_at(len);
        *b = rest;
        std::str::from_utf8(s).map_err(|_| BatchError::Utf8)
    };
    let name = string()?;
    labels.clear();
    for _ in 0..n {
        labels.push((string()?, string()?));
    }
    let used = start.len() - b.len();
    Ok((name, &start[..used]))
}

fn now_s() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

impl SeriesRegistry {
    /// An empty registry whose definitions serve for `refresh_s` seconds.
    pub fn new(refresh_s: u32) -> SeriesRegistry {
        SeriesRegistry { inner: RwLock::new(Inner::default()), refresh_s: refresh_s.max(1) }
    }

    /// Series known.
    pub fn len(&self) -> usize {
        self.inner.read().expect("series registry lock").live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of each series of a request of `tenant`, into `ids`, in order: `series` gives
    /// each one's fingerprint (`series_fingerprint`), metric name and labels (sorted, without
    /// the name). New series are numbered; the definitions the request must make durable before
    /// appending batches that name them go into `defs`.
    pub fn assign<'a>(
        &self,
        tenant: &str,
        series: impl Iterator<Item = (u64, &'a str, &'a [(&'a str, &'a str)])> + Clone,
        ids: &mut Vec<u64>,
        defs: &mut SeriesDefs,
    ) {
        let now = now_s();
        let mut packed = Vec::with_capacity(256);
        ids.clear();
        let mut missing = false;
        {
            let inner = self.inner.read().expect("series registry lock");
            let tenant_index = inner.tenants.get(tenant).copied();
            // First the likely number of every series, then a touch of its entry and labels: two
            // loops short enough for the processor to overlap their cache misses, which cost the
            // lookup most of its time when each series went through all its work alone.
            match tenant_index.and_then(|t| inner.by_tenant.get(t as usize)) {
                Some(by) => ids.extend(series.clone().map(|(fp, _, _)| by.ids.get(&fp).copied().unwrap_or(0))),
                None => ids.extend(series.clone().map(|_| 0)),
            }
            let mut touched = 0u8;
            for &id in ids.iter() {
                if let Some(e) = inner.entry(id) {
                    touched ^= e.packed.first().copied().unwrap_or(0) ^ e.packed.last().copied().unwrap_or(0);
                }
            }
            std::hint::black_box(touched);
            for ((fp, name, labels), slot) in series.clone().zip(ids.iter_mut()) {
                pack(&mut packed, name, labels);
                let likely = inner.entry(*slot).filter(|e| *e.packed == *packed).map(|_| *slot);
                let found = likely.or_else(|| tenant_index.and_then(|t| inner.find(t, fp, &packed)));
                match found {
                    Some(id) => {
                        let e = inner.entry(id).expect("found entries exist");
                        self.touch(e, id, now, &packed, defs);
                        *slot = id;
                    }
                    None => {
                        missing = true;
                        *slot = 0;
                    }
                }
            }
        }
        if !missing {
            return;
        }
        let mut inner = self.inner.write().expect("series registry lock");
        let t = inner.tenant_index(tenant);
        for ((fp, name, labels), id) in series.zip(ids.iter_mut()) {
            if *id != 0 {
                continue;
            }
            pack(&mut packed, name, labels);
            // Another request may have numbered it since the read lock was let go.
            if let Some(found) = inner.find(t, fp, &packed) {
                let e = inner.entry(found).expect("found entries exist");
                self.touch(e, found, now, &packed, defs);
                *id = found;
                continue;
            }
            let new = inner.series.len().max(1) as u64;
            let entry = Entry {
                tenant: t,
                fingerprint: fp,
                packed: packed.as_slice().into(),
                durable: AtomicBool::new(false),
                defined_s: AtomicU32::new(0),
                used_s: AtomicU32::new(now),
            };
            inner.insert(new, entry);
            defs.push(new, &packed);
            *id = new;
        }
    }

    /// Notes that a batch names `e`, and asks for its definition when it is not known durable
    /// or old enough to be refreshed.
    fn touch(&self, e: &Entry, id: u64, now: u32, packed: &[u8], defs: &mut SeriesDefs) {
        // Written only when it changes, so that the entry's cache line stays clean.
        if e.used_s.load(Ordering::Relaxed) != now {
            e.used_s.store(now, Ordering::Relaxed);
        }
        let stale = now.saturating_sub(e.defined_s.load(Ordering::Relaxed)) >= self.refresh_s;
        if (!e.durable.load(Ordering::Acquire) || stale) && !defs.ids.contains(&id) {
            defs.push(id, packed);
        }
    }

    /// Marks the definitions of `ids` durable: a request that appended them has been told so.
    pub fn defined(&self, ids: &[u64]) {
        let now = now_s();
        let inner = self.inner.read().expect("series registry lock");
        for &id in ids {
            if let Some(e) = inner.entry(id) {
                e.defined_s.store(now, Ordering::Relaxed);
                e.durable.store(true, Ordering::Release);
            }
        }
    }

    /// Adds the definitions of a `series` topic record of `tenant`, durable by being read back,
    /// appended at `append_s`. Returns how many it held. A number defined again with other
    /// labels or for another tenant is an error: the log is damaged or not this registry's.
    pub fn load(&self, tenant: &str, payload: &[u8], append_s: u32) -> Result<usize, BatchError> {
        let (n, mut b) = defs_header(payload)?;
        let now = now_s();
        let mut inner = self.inner.write().expect("series registry lock");
        let t = inner.tenant_index(tenant);
        let mut labels = Vec::new();
        for _ in 0..n {
            let id = varint::take(&mut b).map_err(|_| BatchError::Truncated)?;
            let (name, packed) = unpack(&mut b, &mut labels)?;
            if id == 0 || id > u64::from(u32::MAX) * 16 {
                return Err(BatchError::SeriesRef(id));
            }
            if let Some(e) = inner.entry(id) {
                if e.tenant != t || &*e.packed != packed {
                    return Err(BatchError::SeriesConflict(id));
                }
                e.defined_s.fetch_max(append_s, Ordering::Relaxed);
                continue;
            }
            let fp = crate::series_fingerprint(name, labels.iter().copied());
            let entry = Entry {
                tenant: t,
                fingerprint: fp,
                packed: packed.into(),
                durable: AtomicBool::new(true),
                defined_s: AtomicU32::new(append_s),
                // Batches up to now may name it, whenever it was last defined.
                used_s: AtomicU32::new(now),
            };
            inner.insert(id, entry);
        }
        if !b.is_empty() {
            return Err(BatchError::Trailing(b.len()));
        }
        Ok(n as usize)
    }

    /// Forgets series no batch has named for `idle_s` seconds: no batch still in the log names
    /// them when `idle_s` is the metrics topic's retention. Returns how many were forgotten.
    pub fn sweep(&self, idle_s: u32) -> usize {
        self.sweep_at(now_s(), idle_s)
    }

    fn sweep_at(&self, now: u32, idle_s: u32) -> usize {
        let mut inner = self.inner.write().expect("series registry lock");
        let old: Vec<u64> = inner
            .series
            .iter()
            .enumerate()
            .filter_map(|(id, e)| {
                let e = e.as_ref()?;
                (now.saturating_sub(e.used_s.load(Ordering::Relaxed)) > idle_s).then_some(id as u64)
            })
            .collect();
        for &id in &old {
            inner.remove(id);
        }
        old.len()
    }

    /// [`SeriesRegistry::sweep`] with the refresh time: the metrics topic's retention.
    pub fn sweep_idle(&self) -> usize {
        self.sweep(self.refresh_s)
    }

    /// A view to resolve numbers through, holding the registry's read lock: take one per batch.
    pub fn read(&self) -> SeriesView<'_> {
        SeriesView { inner: self.inner.read().expect("series registry lock") }
    }
}

/// Resolves series numbers while it is held.
pub struct SeriesView<'r> {
    inner: RwLockReadGuard<'r, Inner>,
}

impl SeriesView<'_> {
    /// The fingerprint and labels (sorted by name, `__name__` among them) of series `id` of
    /// `tenant`, into `labels`; `None` if the tenant has no such series.
    pub fn resolve<'v>(&'v self, tenant: &str, id: u64, labels: &mut Vec<(&'v str, &'v str)>) -> Option<u64> {
        let e = self.inner.entry(id)?;
        if self.inner.tenant_names[e.tenant as usize] != tenant {
            return None;
        }
        let mut b: &[u8] = &e.packed;
        let (name, _) = unpack(&mut b, labels).ok()?;
        let at = labels.partition_point(|(n, _)| *n < "__name__");
        labels.insert(at, ("__name__", name));
        Some(e.fingerprint)
    }

    /// Whether `tenant` has series `id`.
    pub fn contains(&self, tenant: &str, id: u64) -> bool {
        self.inner.entry(id).is_some_and(|e| self.inner.tenant_names[e.tenant as usize] == tenant)
    }
}

/// A definitions record's count of definitions, and the bytes of the definitions.
fn defs_header(payload: &[u8]) -> Result<(u64, &[u8]), BatchError> {
    let (&version, mut b) = payload.split_first().ok_or(BatchError::Truncated)?;
    if version != SERIES_DEFS_VERSION {
        return Err(BatchError::Version(version));
    }
    let n = varint::take(&mut b).map_err(|_| BatchError::Truncated)?;
    // Each definition takes two bytes at least.
    if n > b.len() as u64 {
        return Err(BatchError::Truncated);
    }
    Ok((n, b))
}

/// A series definition: its number and labels (sorted by name, `__name__` among them).
pub type SeriesDef = (u64, Vec<(String, String)>);

/// The definitions of a `series` topic record, for people and tools.
pub fn decode_defs(payload: &[u8]) -> Result<Vec<SeriesDef>, BatchError> {
    let (n, mut b) = defs_header(payload)?;
    let mut out = Vec::with_capacity(n as usize);
    let mut labels = Vec::new();
    for _ in 0..n {
        let id = varint::take(&mut b).map_err(|_| BatchError::Truncated)?;
        let (name, _) = unpack(&mut b, &mut labels)?;
        let mut owned: Vec<(String, String)> = vec![("__name__".to_string(), name.to_string())];
        owned.extend(labels.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        owned.sort();
        out.push((id, owned));
    }
    if !b.is_empty() {
        return Err(BatchError::Trailing(b.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series_fingerprint;

    fn assign(r: &SeriesRegistry, tenant: &str, series: &[(&str, &[(&str, &str)])]) -> (Vec<u64>, SeriesDefs) {
        let items =
            series.iter().map(|&(name, labels)| (series_fingerprint(name, labels.iter().copied()), name, labels));
        let (mut ids, mut defs) = (Vec::new(), SeriesDefs::default());
        r.assign(tenant, items, &mut ids, &mut defs);
        (ids, defs)
    }

    #[test]
    fn a_series_keeps_its_number_and_is_defined_until_durable() {
        let r = SeriesRegistry::new(3600);
        let a: &[(&str, &str)] = &[("instance", "h1"), ("job", "node")];
        let b: &[(&str, &str)] = &[("instance", "h2"), ("job", "node")];
        let (ids, defs) = assign(&r, "t", &[("up", a), ("up", b)]);
        assert_eq!(ids, [1, 2]);
        assert_eq!(defs.ids(), [1, 2]);
        // Not yet durable: a second request writes the definition again.
        let (again, defs2) = assign(&r, "t", &[("up", b)]);
        assert_eq!((again.as_slice(), defs2.ids()), ([2].as_slice(), [2].as_slice()));
        r.defined(defs.ids());
        let (ids, defs) = assign(&r, "t", &[("up", b), ("up", a)]);
        assert_eq!(ids, [2, 1]);
        assert!(defs.is_empty(), "durable definitions are not written again");
        // Another tenant's series of the same labels is another series.
        let (other, defs) = assign(&r, "u", &[("up", a)]);
        assert_eq!((other.as_slice(), defs.ids()), ([3].as_slice(), [3].as_slice()));
        let view = r.read();
        let mut labels = Vec::new();
        assert_eq!(view.resolve("t", 1, &mut labels), Some(series_fingerprint("up", a.iter().copied())));
        assert_eq!(labels, [("__name__", "up"), ("instance", "h1"), ("job", "node")]);
        assert_eq!(view.resolve("u", 1, &mut labels), None, "a number resolves for its own tenant only");
        assert_eq!(view.resolve("t", 9, &mut labels), None);
    }

    #[test]
    fn definitions_load_back_into_the_same_numbers() {
        let r = SeriesRegistry::new(3600);
        let a: &[(&str, &str)] = &[("a", "1")];
        let (_, defs) = assign(&r, "t", &[("m", a), ("m", &[("a", "2"), ("z", "")]), ("n", &[])]);
        let payload = defs.encode();
        assert_eq!(
            decode_defs(&payload).unwrap()[1],
            (2, vec![("__name__".into(), "m".into()), ("a".into(), "2".into()), ("z".into(), "".into())])
        );
        let loaded = SeriesRegistry::new(3600);
        assert_eq!(loaded.load("t", &payload, now_s()).unwrap(), 3);
        assert_eq!(loaded.load("t", &payload, now_s()).unwrap(), 3, "a repeated definition changes nothing");
        assert_eq!(loaded.len(), 3);
        let (ids, defs) = assign(&loaded, "t", &[("m", a), ("q", &[])]);
        assert_eq!(ids, [1, 4], "numbering continues after the highest loaded");
        assert_eq!(defs.ids(), [4]);
        // The same number for another tenant, or with other labels, is damage.
        assert_eq!(loaded.load("u", &payload, 0).unwrap_err(), BatchError::SeriesConflict(1));
        for cut in 0..payload.len() {
            assert!(SeriesRegistry::new(1).load("t", &payload[..cut], 0).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn colliding_fingerprints_stay_apart() {
        let r = SeriesRegistry::new(3600);
        let (mut ids, mut defs) = (Vec::new(), SeriesDefs::default());
        let a: &[(&str, &str)] = &[("x", "1")];
        let b: &[(&str, &str)] = &[("x", "2")];
        let items = [(7u64, "m", a), (7u64, "m", b), (7u64, "m", a)];
        r.assign("t", items.iter().copied(), &mut ids, &mut defs);
        assert_eq!(ids, [1, 2, 1]);
        assert_eq!(defs.ids(), [1, 2]);
    }

    #[test]
    fn stale_definitions_are_refreshed_and_idle_series_forgotten() {
        let r = SeriesRegistry::new(1);
        let a: &[(&str, &str)] = &[("x", "1")];
        let (_, defs) = assign(&r, "t", &[("m", a)]);
        r.defined(defs.ids());
        // Defined "long ago": loaded with an old append time.
        let old = SeriesRegistry::new(1);
        old.load("t", &defs.encode(), 1).unwrap();
        let (ids, again) = assign(&old, "t", &[("m", a)]);
        assert_eq!((ids.as_slice(), again.ids()), ([1].as_slice(), [1].as_slice()), "refreshed");
        let idle = SeriesRegistry::new(3600);
        idle.load("t", &defs.encode(), 1).unwrap();
        assert_eq!(idle.sweep(3600), 0, "a series loaded back may be named by any batch up to now");
        assert_eq!(idle.sweep_at(now_s() + 7200, 3600), 1);
        assert!(idle.is_empty());
        assert!(!idle.read().contains("t", 1));
        let (ids, _) = assign(&idle, "t", &[("m", a)]);
        assert_eq!(ids, [2], "a forgotten number is not given out again");
    }
}

//! Day indexes on disk: `<root>/<tenant>/<yyyy-mm-dd>/`, one tantivy index each, opened once and
//! shared by the indexing sink and the searchers.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_model::TenantId;
use strata_pipeline::Positions;
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, ReloadPolicy};
use time::Date;

use crate::keys::KeyCache;
use crate::schema::LogSchema;
use crate::{Error, Result};

const PAYLOAD_VERSION: u32 = 1;

/// The UTC day of a Unix-nanosecond timestamp.
pub fn day_of(timestamp_ns: i64) -> Date {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns)).map(|t| t.date()).unwrap_or(Date::MIN)
}

pub fn day_name(day: Date) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day())
}

fn parse_day(name: &str) -> Option<Date> {
    let mut it = name.split('-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u8 = it.next()?.parse().ok()?;
    let d: u8 = it.next()?.parse().ok()?;
    if it.next().is_some() || name.len() != 10 {
        return None;
    }
    Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()
}

/// Today, UTC.
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

/// One tenant's index of one UTC day.
pub struct DayIndex {
    pub tenant: TenantId,
    pub day: Date,
    pub dir: PathBuf,
    pub index: Index,
    pub reader: IndexReader,
    pub(crate) keys: KeyCache,
}

impl DayIndex {
    /// The log positions stored in the index's last commit: every line routed here from before
    /// them is in the index.
    pub fn committed_positions(&self) -> Result<Positions> {
        let metas = self.index.load_metas().map_err(|e| self.err(e))?;
        match metas.payload {
            None => Ok(Positions::new()),
            Some(p) => decode_payload(&p).ok_or_else(|| Error::Corrupt {
                path: self.dir.clone(),
                reason: format!("commit payload {p:?} is not valid"),
            }),
        }
    }

    fn err(&self, e: tantivy::TantivyError) -> Error {
        Error::Index { path: self.dir.clone(), source: e }
    }

    /// Bytes of the index's files.
    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

pub(crate) fn encode_payload(p: &Positions) -> String {
    let positions: Vec<(&str, u32, u64)> = p.iter().map(|((t, part), o)| (t.as_str(), *part, *o)).collect();
    serde_json::json!({ "version": PAYLOAD_VERSION, "positions": positions }).to_string()
}

fn decode_payload(s: &str) -> Option<Positions> {
    #[derive(serde::Deserialize)]
    struct Payload {
        version: u32,
        positions: Vec<(String, u32, u64)>,
    }
    let p: Payload = serde_json::from_str(s).ok()?;
    (p.version == PAYLOAD_VERSION).then(|| p.positions.into_iter().map(|(t, part, o)| ((t, part), o)).collect())
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// How many days of indexes each tenant keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub tenant_days: BTreeMap<String, u32>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { days: 90, tenant_days: BTreeMap::new() }
    }
}

impl Retention {
    /// The oldest day `tenant` keeps when today is `today`.
    pub fn keep_from(&self, tenant: &TenantId, today: Date) -> Date {
        let days = self.tenant_days.get(tenant.as_str()).copied().unwrap_or(self.days).max(1);
        today.checked_sub(time::Duration::days(i64::from(days) - 1)).unwrap_or(Date::MIN)
    }
}

/// Every day index under one root.
pub struct Indexes {
    root: PathBuf,
    schema: LogSchema,
    retention: Retention,
    open: Mutex<HashMap<(TenantId, Date), Arc<DayIndex>>>,
    failed: Mutex<BTreeMap<PathBuf, String>>,
}

impl Indexes {
    pub fn new(root: PathBuf, retention: Retention) -> Result<Indexes> {
        fs::create_dir_all(&root).map_err(|source| Error::Io { path: root.clone(), source })?;
        Ok(Indexes {
            root,
            schema: LogSchema::new(),
            retention,
            open: Mutex::new(HashMap::new()),
            failed: Mutex::new(BTreeMap::new()),
        })
    }

    /// True when `day` is past the tenant's retention: its lines are not indexed any more.
    pub fn is_expired(&self, tenant: &TenantId, day: Date) -> bool {
        day < self.retention.keep_from(tenant, today())
    }

    /// Deletes every tenant's day indexes past retention. Returns (tenant, days removed).
    pub fn enforce_retention(&self) -> Vec<(TenantId, Vec<Date>)> {
        let today = today();
        self.tenants()
            .into_iter()
            .map(|t| {
                let removed = self.remove_days_before(&t, self.retention.keep_from(&t, today));
                (t, removed)
            })
            .filter(|(_, r)| !r.is_empty())
            .collect()
    }

    pub fn schema(&self) -> &LogSchema {
        &self.schema
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, tenant: &TenantId, day: Date) -> PathBuf {
        self.root.join(tenant.as_str()).join(day_name(day))
    }

    /// Opens the index of `(tenant, day)`, creating it if `create` and it does not exist.
    /// A new index becomes visible through one rename of its finished directory.
    pub fn open(&self, tenant: &TenantId, day: Date, create: bool) -> Result<Option<Arc<DayIndex>>> {
        let key = (tenant.clone(), day);
        if let Some(d) = self.open.lock().expect("indexes lock").get(&key) {
            return Ok(Some(d.clone()));
        }
        let dir = self.dir(tenant, day);
        if !dir.exists() {
            if !create {
                return Ok(None);
            }
            self.create(&dir)?;
        }
        let opened = self.open_dir(tenant, day, &dir);
        let mut failed = self.failed.lock().expect("failed lock");
        match opened {
            Ok(d) => {
                failed.remove(&dir);
                let d = Arc::new(d);
                let mut open = self.open.lock().expect("indexes lock");
                Ok(Some(open.entry(key).or_insert(d).clone()))
            }
            Err(e) => {
                if failed.insert(dir.clone(), e.to_string()).is_none() {
                    metrics::counter!("strata_search_index_open_errors_total").increment(1);
                    tracing::error!(path = %dir.display(), error = %e, "cannot open a log index");
                }
                Err(e)
            }
        }
    }

    fn create(&self, dir: &Path) -> Result<()> {
        let parent = dir.parent().expect("day dir has a tenant dir");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = parent.join(format!(".{}.tmp", dir.file_name().and_then(|n| n.to_str()).unwrap_or("day")));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mmap = MmapDirectory::open(&tmp).map_err(|e| Error::Index { path: tmp.clone(), source: e.into() })?;
        Index::create(mmap, self.schema.schema.clone(), LogSchema::index_settings())
            .map_err(|e| Error::Index { path: tmp.clone(), source: e })?;
        fs::rename(&tmp, dir).map_err(io(dir))?;
        fs::File::open(parent).and_then(|f| f.sync_all()).map_err(io(parent))?;
        Ok(())
    }

    fn open_dir(&self, tenant: &TenantId, day: Date, dir: &Path) -> Result<DayIndex> {
        let ierr = |e: tantivy::TantivyError| Error::Index { path: dir.to_path_buf(), source: e };
        let index = Index::open_in_dir(dir).map_err(ierr)?;
        LogSchema::register_tokenizers(&index);
        if !self.schema.compatible(&index.schema()) {
            return Err(Error::Corrupt {
                path: dir.to_path_buf(),
                reason: "schema differs from this version's".into(),
            });
        }
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(ierr)?;
        Ok(DayIndex { tenant: tenant.clone(), day, dir: dir.to_path_buf(), index, reader, keys: KeyCache::default() })
    }

    /// The days that have an index for `tenant`, oldest first.
    pub fn days(&self, tenant: &TenantId) -> Vec<Date> {
        let mut days: Vec<Date> = fs::read_dir(self.root.join(tenant.as_str()))
            .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| parse_day(&e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        days.sort();
        days
    }

    /// Every tenant with a directory.
    pub fn tenants(&self) -> Vec<TenantId> {
        fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok()).filter_map(|e| TenantId::new(&e.file_name().to_string_lossy()).ok()).collect()
            })
            .unwrap_or_default()
    }

    /// Index directories that failed to open, with why.
    pub fn failed(&self) -> BTreeMap<PathBuf, String> {
        self.failed.lock().expect("failed lock").clone()
    }

    /// Forgets an open index so that its directory can be removed.
    pub(crate) fn close(&self, tenant: &TenantId, day: Date) {
        self.open.lock().expect("indexes lock").remove(&(tenant.clone(), day));
    }

    /// Deletes whole day directories of `tenant` older than `keep_from`. Returns the days removed.
    pub fn remove_days_before(&self, tenant: &TenantId, keep_from: Date) -> Vec<Date> {
        let mut removed = Vec::new();
        for day in self.days(tenant) {
            if day >= keep_from {
                break;
            }
            self.close(tenant, day);
            let dir = self.dir(tenant, day);
            match fs::remove_dir_all(&dir) {
                Ok(()) => removed.push(day),
                Err(e) => tracing::warn!(path = %dir.display(), error = %e, "cannot remove an expired log index"),
            }
        }
        removed
    }

    /// Bytes of every index of `tenant`.
    pub fn tenant_size_bytes(&self, tenant: &TenantId) -> u64 {
        self.days(tenant).into_iter().map(|d| dir_size(&self.dir(tenant, d))).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_name_and_parse() {
        let d = day_of(1_700_000_000_000_000_000);
        assert_eq!(day_name(d), "2023-11-14");
        assert_eq!(parse_day("2023-11-14"), Some(d));
        for bad in ["2023-1-14x", "2023-13-01", "x", "2023-11-14-1", ".2023-11-14.tmp"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}

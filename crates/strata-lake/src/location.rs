//! Where the lake's tables are: a local directory (`<data-dir>/lake` by default) or a prefix of a
//! bucket in S3 or any store that speaks its API (MinIO, Ceph, R2, ...), through `object_store`.
//!
//! A table is the directory or prefix of its name under the root. Options for the store are
//! `object_store`'s keys for Amazon S3 (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
//! `aws_secret_access_key`, `aws_allow_http`, ...); what they leave out comes from the usual
//! `AWS_*` environment variables. Commits rely on the store's conditional writes
//! (`If-None-Match`), which S3 has had since 2024, so two writers can never both make a version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
    object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError, Path as StorePath};
use object_store::aws::AmazonS3Builder;
use url::Url;

/// The root of the lake's tables and the options of its store.
#[derive(Debug, Clone)]
pub struct Location {
    /// Ends with `/`.
    root: Url,
    options: HashMap<String, String>,
}

impl Location {
    /// The tables under the local directory `dir`.
    pub fn local(dir: &Path) -> Location {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let root = Url::from_directory_path(&dir).unwrap_or_else(|()| Url::parse("file:///").expect("a valid URL"));
        Location { root, options: HashMap::new() }
    }

    /// The tables under `url`: `s3://<bucket>/<prefix>`, or a local directory (a path or a
    /// `file://` URL). `options` configure the store.
    pub fn parse(url: &str, options: HashMap<String, String>) -> Result<Location, String> {
        if !url.contains("://") {
            return Ok(Location { options, ..Location::local(Path::new(url)) });
        }
        let mut root = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        match root.scheme() {
            "file" => {
                let dir = root.to_file_path().map_err(|()| format!("{url:?} is not a local path"))?;
                return Ok(Location { options, ..Location::local(&dir) });
            }
            "s3" | "s3a" => {}
            other => {
                return Err(format!("{url:?}: the lake is a local directory or s3://; {other}:// is not supported"));
            }
        }
        if root.host_str().is_none_or(str::is_empty) {
            return Err(format!("{url:?} names no bucket"));
        }
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        if let Some(key) = options.keys().find(|k| !is_store_option(k)) {
            return Err(format!("{key:?} is not an option of an S3 store"));
        }
        register_s3();
        Ok(Location { root, options })
    }

    /// Where table `name` is.
    pub fn table(&self, name: &str) -> Url {
        self.root.join(&format!("{name}/")).expect("a table's name is a path segment")
    }

    /// The root itself: the lake's directory or prefix.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The store's options.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The directory of the tables, when they are local.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.root.scheme() == "file").then(|| self.root.to_file_path().ok()).flatten()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.root.as_str())
    }
}

/// Whether `key` is an option of the lake's object store.
pub fn is_store_option(key: &str) -> bool {
    key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok()
}

/// Makes `deltalake` open `s3://` tables with `object_store`'s S3 client.
fn register_s3() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            let url = Url::parse(scheme).expect("a valid URL");
            object_store_factories().insert(url.clone(), Arc::new(S3Stores));
            logstore_factories().insert(url, Arc::new(S3Stores));
        }
    });
}

struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
        for (key, value) in &config.raw {
            let key = key.parse().map_err(|e: object_store::Error| DeltaTableError::Generic(e.to_string()))?;
            builder = builder.with_config(key, value);
        }
        let store = builder.build().map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let path = StorePath::from_url_path(url.path()).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        Ok((Arc::new(store), path))
    }
}

impl LogStoreFactory for S3Stores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_their_tables() {
        let local = Location::parse("/data/lake", HashMap::new()).unwrap();
        assert_eq!(local.table("events").as_str(), "file:///data/lake/events/");
        assert_eq!(local.local_dir(), Some(PathBuf::from("/data/lake")));
        let s3 =
            Location::parse("s3://bucket/strata/lake", HashMap::from([("aws_region".into(), "x".into())])).unwrap();
        assert_eq!(s3.table("logs").as_str(), "s3://bucket/strata/lake/logs/");
        assert_eq!(s3.local_dir(), None);
        for (bad, why) in [("gs://bucket/x", "not supported"), ("s3:///x", "no bucket"), ("s3://b", "not an option")] {
            let options = HashMap::from([("colour".to_string(), "blue".to_string())]);
            let options = if why == "not an option" { options } else { HashMap::new() };
            let err = Location::parse(bad, options).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

//! Tenants, their API keys, and the admin token. Keys are stored only as SHA-256 digests.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_model::TenantId;

use crate::ApiError;

const TENANTS_FILE_VERSION: u32 = 1;

/// Why the tenant store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Name(#[from] strata_model::TenantError),
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("file {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    State(#[from] strata_durable::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    sha256: String,
    created_ms: i64,
}

/// A tenant as listed by the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantInfo {
    pub name: TenantId,
    pub created_ms: i64,
    #[serde(default)]
    keys: Vec<StoredKey>,
}

impl TenantInfo {
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Serialize, Deserialize)]
struct TenantsFile {
    version: u32,
    crc32c: u32,
    tenants: Vec<TenantInfo>,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Tenant(TenantId),
    Admin,
}

/// The credential store. With `no_auth`, every request is tenant `default` and admin.
pub struct Auth {
    no_auth: bool,
    path: PathBuf,
    admin_token_sha256: String,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    tenants: Vec<TenantInfo>,
    by_key: HashMap<String, TenantId>,
}

fn sha256_hex(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io { path: path.to_path_buf(), source }
}

/// Where the admin token came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

impl Auth {
    /// Opens the store in `meta_dir`. The admin token is `admin_token` when given (from
    /// `STRATA_ADMIN_TOKEN`), else the one in `meta_dir/admin-token`, else a new one written there
    /// with mode 0600.
    pub fn open(
        meta_dir: &Path,
        admin_token: Option<String>,
        no_auth: bool,
    ) -> Result<(Auth, AdminTokenSource), AuthError> {
        fs::create_dir_all(meta_dir).map_err(io(meta_dir))?;
        let token_path = meta_dir.join("admin-token");
        let (token, source) = match admin_token.filter(|t| !t.is_empty()) {
            Some(t) => (t, AdminTokenSource::Environment),
            // Plain text, so that people can `cat` it; a missing or empty file gets a new token,
            // any other failure to read it stops the start rather than replace a token in use.
            None => match fs::read_to_string(&token_path) {
                Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), AdminTokenSource::File(token_path.clone())),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(AuthError::Io { path: token_path, source: e });
                }
                _ => {
                    let t = random_token("strata_admin_");
                    strata_durable::write_unframed(&token_path, t.as_bytes(), PRIVATE)?;
                    (t, AdminTokenSource::Generated(token_path.clone()))
                }
            },
        };
        let path = meta_dir.join("tenants.json");
        let tenants = match strata_durable::read(&path)? {
            Some(strata_durable::Contents::Checked(bytes) | strata_durable::Contents::Legacy(bytes)) => {
                let bad = |reason: String| AuthError::Corrupt { path: path.clone(), reason };
                let f: TenantsFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if f.version != TENANTS_FILE_VERSION {
                    return Err(bad(format!("version {} is unknown", f.version)));
                }
                if f.crc32c != tenants_crc(&f.tenants) {
                    return Err(bad("its tenants do not match their checksum".into()));
                }
                f.tenants
            }
            None => Vec::new(),
        };
        let mut state = State::default();
        for t in &tenants {
            for k in &t.keys {
                state.by_key.insert(k.sha256.clone(), t.name.clone());
            }
        }
        state.tenants = tenants;
        let auth = Auth { no_auth, path, admin_token_sha256: sha256_hex(&token), state: RwLock::new(state) };
        Ok((auth, source))
    }

    pub fn no_auth(&self) -> bool {
        self.no_auth
    }

    /// The tenant a request's bearer key belongs to.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<TenantId, ApiError> {
        if self.no_auth {
            return Ok(TenantId::default_tenant());
        }
        let key = bearer(headers)?;
        self.state
            .read()
            .expect("auth lock")
            .by_key
            .get(&sha256_hex(&key))
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown api key"))
    }

    /// Succeeds only for the admin token (or when auth is off).
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.no_auth {
            return Ok(());
        }
        let token = bearer(headers)?;
        if sha256_hex(&token) == self.admin_token_sha256 {
            Ok(())
        } else {
            Err(ApiError::unauthorized("admin token required"))
        }
    }

    /// The admin token, or the tenant of an API key.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if self.admin(headers).is_ok() {
            return Ok(Principal::Admin);
        }
        self.tenant(headers).map(Principal::Tenant)
    }

    pub fn tenants(&self) -> Vec<TenantInfo> {
        self.state.read().expect("auth lock").tenants.clone()
    }

    /// Creates a tenant with a first API key, returned once and never stored in clear.
    pub fn create_tenant(&self, name: &str) -> Result<(TenantId, String), AuthError> {
        let name = TenantId::new(name)?;
        let mut state = self.state.write().expect("auth lock");
        if state.tenants.iter().any(|t| t.name == name) {
            return Err(AuthError::Exists(name.to_string()));
        }
        let key = random_token("strata_");
        let stored = StoredKey { sha256: sha256_hex(&key), created_ms: now_ms() };
        let mut tenants = state.tenants.clone();
        tenants.push(TenantInfo { name: name.clone(), created_ms: stored.created_ms, keys: vec![stored.clone()] });
        self.persist(&tenants)?;
        state.tenants = tenants;
        state.by_key.insert(stored.sha256, name.clone());
        Ok((name, key))
    }

    fn persist(&self, tenants: &[TenantInfo]) -> Result<(), AuthError> {
        let f = TenantsFile { version: TENANTS_FILE_VERSION, crc32c: tenants_crc(tenants), tenants: tenants.to_vec() };
        strata_durable::write_with(&self.path, &serde_json::to_vec_pretty(&f).expect("tenants serialise"), PRIVATE)?;
        Ok(())
    }
}

/// Tenants' key digests and the admin token are the owner's alone.
const PRIVATE: strata_durable::Options = strata_durable::Options { private: true };

fn tenants_crc(tenants: &[TenantInfo]) -> u32 {
    crc32c::crc32c(&serde_json::to_vec(tenants).expect("tenants serialise"))
}

/// The API key of a request: `Authorization: Bearer <key>`, or HTTP Basic authentication with
/// the key as the password (any user name), which clients that only speak Basic use: promtool,
/// and Grafana or vmalert set up that way.
fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("authorization header is not ascii"))?;
    if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        return Ok(token.trim().to_string());
    }
    if let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::unauthorized("basic credentials are not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| ApiError::unauthorized("basic credentials are not UTF-8"))?;
        let (_, key) = decoded.split_once(':').ok_or_else(|| ApiError::unauthorized("basic credentials lack a ':'"))?;
        return Ok(key.to_string());
    }
    if let Some(given) = value.strip_prefix("ApiKey ").or_else(|| value.strip_prefix("apikey ")) {
        // Elasticsearch's clients send an API key as it is given, or as base64 of "id:key".
        use base64::Engine as _;
        let given = given.trim();
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(given).ok().and_then(|d| String::from_utf8(d).ok());
        return Ok(match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((_, key)) => key.to_string(),
            None => given.to_string(),
        });
    }
    Err(ApiError::unauthorized(
        "authorization must be \"Bearer <key>\", \"ApiKey <key>\", or Basic with the key as the password",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        h
    }

    #[test]
    fn keys_map_to_tenants_and_survive_reopen() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (auth, src) = Auth::open(dir.path(), None, false).unwrap();
        assert!(matches!(src, AdminTokenSource::Generated(_)));
        let (t, key) = auth.create_tenant("acme").unwrap();
        assert_eq!(auth.tenant(&headers(&key)).unwrap(), t);
        assert!(matches!(auth.create_tenant("acme"), Err(AuthError::Exists(_))));
        assert!(matches!(auth.create_tenant("../etc"), Err(AuthError::Name(_))));
        assert_eq!(auth.tenant(&headers("nope")).unwrap_err().message, "unknown api key");
        assert_eq!(auth.tenant(&HeaderMap::new()).unwrap_err().message, "missing bearer token");
        let stored = fs::read(dir.path().join("tenants.json")).unwrap();
        assert!(!stored.windows(key.len()).any(|w| w == key.as_bytes()), "keys are stored hashed");
        assert_eq!(fs::metadata(dir.path().join("tenants.json")).unwrap().permissions().mode() & 0o777, 0o600);

        let token = fs::read_to_string(dir.path().join("admin-token")).unwrap();
        assert_eq!(fs::metadata(dir.path().join("admin-token")).unwrap().permissions().mode() & 0o777, 0o600);
        drop(auth);
        let (auth, src) = Auth::open(dir.path(), None, false).unwrap();
        assert!(matches!(src, AdminTokenSource::File(_)));
        assert_eq!(auth.tenant(&headers(&key)).unwrap(), t);
        assert!(auth.admin(&headers(&token)).is_ok());
        assert!(auth.admin(&headers(&key)).is_err());
    }

    #[test]
    fn basic_authentication_carries_the_key_as_password() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = Auth::open(dir.path(), None, false).unwrap();
        let (t, key) = auth.create_tenant("acme").unwrap();
        let basic = |credentials: &str| {
            let mut h = HeaderMap::new();
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).unwrap());
            h
        };
        assert_eq!(auth.tenant(&basic(&format!("grafana:{key}"))).unwrap(), t);
        assert_eq!(auth.tenant(&basic(&format!(":{key}"))).unwrap(), t);
        assert_eq!(auth.tenant(&basic("grafana:wrong")).unwrap_err().message, "unknown api key");
        assert_eq!(auth.tenant(&basic("no-colon")).unwrap_err().message, "basic credentials lack a ':'");
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(auth.tenant(&h).unwrap_err().message, "basic credentials are not base64");
    }
}

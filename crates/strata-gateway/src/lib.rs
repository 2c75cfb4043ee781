//! The ingest gateway: authenticates producers, enforces body, memory and rate limits, validates
//! and normalises records, and appends them to the log. It never reads a store.

mod auth;
mod body;
mod budget;
mod config;
mod decoders;
mod elastic;
mod error;
mod ha;
pub mod idempotency;
mod ingest;
mod loki;
mod otlp;
mod rate;
pub mod remote_write;
mod series;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use strata_log::Log;
use strata_model::Kind;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use auth::{AdminTokenSource, Auth, AuthError, Principal, TenantInfo};
pub use body::{Encoding, decompress, read_limited};
pub use config::{GatewayConfig, RateConfig};
pub use error::ApiError;
pub use ha::HaConfig;
pub use ingest::{Format, IngestResponse, ItemError};
pub use rate::RateLimiter;
pub use series::{LoadSeriesError, SeriesLimiter, SeriesLimits, load_series};

/// The memory budget is counted in KiB so that 4 TiB fits a semaphore's permits.
pub(crate) const BUDGET_UNIT: u64 = 1024;

/// Shared state of the ingest endpoints.
pub struct Gateway {
    log: Arc<dyn Log>,
    auth: Arc<Auth>,
    cfg: GatewayConfig,
    rate: RateLimiter,
    memory: Arc<Semaphore>,
    /// One thread per core decodes bodies: more at once than there are cores only adds
    /// threads, switches and per-thread allocator caches.
    decoders: decoders::Decoders,
    series: SeriesLimiter,
    /// The numbers metric batches name series by.
    registry: Arc<strata_model::SeriesRegistry>,
    /// The `Idempotency-Key`s of the window.
    idempotency: Arc<idempotency::Idempotency>,
    /// The elected replica of each HA pair.
    ha: ha::HaTracker,
}

impl Gateway {
    /// The gateway; `meta` is where the active series of every tenant and the idempotency keys
    /// are saved, and `registry` holds the series of the log (see `load_series`). Call
    /// `recover_keys` before it takes requests.
    pub fn new(
        log: Arc<dyn Log>,
        auth: Arc<Auth>,
        cfg: GatewayConfig,
        meta: Option<&std::path::Path>,
        registry: Arc<strata_model::SeriesRegistry>,
    ) -> Arc<Gateway> {
        let series_path = meta.map(|m| m.join("active-series.bin"));
        let idempotency =
            idempotency::Idempotency::new(cfg.idempotency.clone(), meta.map(|m| m.join("idempotency.json")));
        let permits = (cfg.memory_bytes_max / BUDGET_UNIT) as usize;
        Arc::new(Gateway {
            log,
            auth,
            rate: RateLimiter::new(cfg.rate.clone()),
            memory: Arc::new(Semaphore::new(permits)),
            decoders: decoders::Decoders::start(std::thread::available_parallelism().map_or(2, |n| n.get())),
            series: SeriesLimiter::new(cfg.metrics.clone(), series_path),
            registry,
            idempotency,
            ha: ha::HaTracker::new(cfg.ha.clone()),
            cfg,
        })
    }

    /// Saves the active series (call it now and then and at shutdown), and reports them.
    pub fn save_series(&self) {
        for (tenant, n) in self.series.active() {
            metrics::gauge!("strata_ingest_active_series", "tenant" => tenant).set(n as f64);
        }
        if let Err(e) = self.series.save() {
            tracing::warn!(error = %e, "cannot save the active series");
        }
        let forgotten = self.registry.sweep_idle();
        if forgotten > 0 {
            tracing::info!(series = forgotten, "series registry forgot idle series");
        }
        metrics::gauge!("strata_series_registry_series").set(self.registry.len() as f64);
    }

    /// Reads the idempotency keys of the window back (the saved table and the log since). Blocking.
    pub fn recover_keys(&self) -> Result<usize, strata_log::Error> {
        self.idempotency.recover(&*self.log)
    }

    /// Saves the idempotency keys if they changed. Blocking.
    pub fn save_keys(&self) {
        if let Err(e) = self.idempotency.save(&*self.log) {
            tracing::warn!(error = %e, "cannot save the idempotency keys");
        }
        metrics::gauge!("strata_ingest_idempotency_keys").set(self.idempotency.len() as f64);
    }

    /// The series registry metric batches are written against.
    pub fn registry(&self) -> &Arc<strata_model::SeriesRegistry> {
        &self.registry
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// Memory of the ingest budget not taken by requests in flight, in bytes.
    pub fn memory_available_bytes(&self) -> u64 {
        self.memory.available_permits() as u64 * BUDGET_UNIT
    }

    /// Waits (at most `queue_wait_ms`) for the memory a body of the declared size needs.
    async fn reserve_body(&self, headers: &HeaderMap) -> Result<OwnedSemaphorePermit, ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(self.cfg.body_bytes_max)
            .min(self.cfg.body_bytes_max);
        let units = declared.div_ceil(BUDGET_UNIT).max(1) as u32;
        let wait = Duration::from_millis(self.cfg.queue_wait_ms);
        match tokio::time::timeout(wait, self.memory.clone().acquire_many_owned(units)).await {
            Ok(Ok(p)) => Ok(p),
            _ => {
                metrics::counter!("strata_ingest_overloaded_total").increment(1);
                Err(ApiError::overloaded("ingest is at its memory limit; retry later", 1))
            }
        }
    }

    /// Runs `work` (decoding a body) on one of the decoding threads, no more of them than cores.
    async fn decode_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.decoders.run(work).await
    }

    /// Reads a body within `body_bytes_max` and `body_read_timeout_ms`.
    async fn read_body(&self, body: Body, headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
        let limit = Duration::from_millis(self.cfg.body_read_timeout_ms);
        match tokio::time::timeout(limit, read_limited(body, headers, self.cfg.body_bytes_max)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within body_read_timeout_ms ({} ms)", self.cfg.body_read_timeout_ms),
            )),
        }
    }

    /// A request's budget for what its decoding builds: drawn from the memory budget, and
    /// refusing a request that alone would need more than half of it.
    fn decoding_budget(&self) -> budget::Budget {
        budget::Budget::new(self.memory.clone(), usize::try_from(self.cfg.memory_bytes_max / 2).unwrap_or(usize::MAX))
    }

    /// Grows a request's share of the memory budget by `bytes`, or fails with 503 at once.
    fn grow(&self, permit: &mut OwnedSemaphorePermit, bytes: usize) -> Result<(), ApiError> {
        let units = (bytes as u64).div_ceil(BUDGET_UNIT) as u32;
        match self.memory.clone().try_acquire_many_owned(units) {
            Ok(more) => {
                permit.merge(more);
                Ok(())
            }
            Err(_) => {
                metrics::counter!("strata_ingest_overloaded_total").increment(1);
                Err(ApiError::overloaded("ingest is at its memory limit; retry later", 1))
            }
        }
    }
}

/// The ingest endpoints and the tenant admin endpoints.
pub fn routes(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/ingest/v1/logs", post(ingest_logs))
        .route("/ingest/v1/events", post(ingest_events))
        .route("/ingest/v1/metrics", post(ingest_metrics))
        .route("/ingest/v1/raw/{stream}", post(ingest::ingest_raw))
        .route("/api/v1/write", post(remote_write::write))
        .route("/", get(elastic::root))
        .route("/_bulk", post(elastic::bulk).put(elastic::bulk))
        .route("/{index}/_bulk", post(elastic::bulk_index).put(elastic::bulk_index))
        .route("/loki/api/v1/push", post(loki::push))
        .route("/v1/logs", post(otlp::http_logs))
        .route("/v1/metrics", post(otlp::http_metrics))
        .route("/v1/traces", post(otlp::http_traces))
        .route(otlp::GRPC_LOGS, post(otlp::grpc_logs))
        .route(otlp::GRPC_METRICS, post(otlp::grpc_metrics))
        .route(otlp::GRPC_TRACES, post(otlp::grpc_traces))
        .route("/admin/v1/tenants", get(list_tenants).post(create_tenant))
        .layer(axum::middleware::from_fn(body::linger))
        .with_state(gw)
}

async fn ingest_logs(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    ingest::ingest_records(gw, Kind::Logs, headers, body).await
}

async fn ingest_events(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    ingest::ingest_records(gw, Kind::Events, headers, body).await
}

async fn ingest_metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    ingest::ingest_records(gw, Kind::Metrics, headers, body).await
}

async fn list_tenants(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Result<Response, ApiError> {
    gw.auth.admin(&headers)?;
    let tenants: Vec<serde_json::Value> = gw
        .auth
        .tenants()
        .into_iter()
        .map(|t| serde_json::json!({"tenant": t.name, "created_ms": t.created_ms, "keys": t.key_count()}))
        .collect();
    Ok(axum::Json(serde_json::json!({ "tenants": tenants })).into_response())
}

#[derive(serde::Deserialize)]
struct CreateTenant {
    name: String,
}

async fn create_tenant(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    gw.auth.admin(&headers)?;
    let req: CreateTenant = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"name\": \"...\"}}: {e}")))?;
    let auth = gw.auth.clone();
    let created = tokio::task::spawn_blocking(move || auth.create_tenant(&req.name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match created {
        Ok((tenant, key)) => {
            tracing::info!(%tenant, "tenant created");
            Ok((StatusCode::CREATED, axum::Json(serde_json::json!({"tenant": tenant, "api_key": key}))).into_response())
        }
        Err(AuthError::Exists(name)) => {
            Err(ApiError::new(StatusCode::CONFLICT, format!("tenant {name:?} already exists")))
        }
        Err(AuthError::Name(e)) => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

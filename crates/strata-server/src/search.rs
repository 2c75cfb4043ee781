//! HTTP for log search: `/query/v1/logs/{search,histogram,tail}`. The work is in `strata-search`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_model::TenantId;
use strata_search::{Cursor, Error as SearchError, SearchRequest, Sort, TailEvent, TailFilter};

use crate::server::App;

/// Lines one page may have.
const LIMIT_MAX: usize = 1000;
const LIMIT_DEFAULT: usize = 100;
const DEFAULT_RANGE_NS: i64 = 3600 * 1_000_000_000;

fn to_api(e: SearchError) -> ApiError {
    match e {
        SearchError::Query { .. } | SearchError::Request(_) => ApiError::bad_request(e.to_string()),
        SearchError::Timeout => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        SearchError::TooManyTails { .. } => ApiError::rate_limited(e.to_string(), 5),
        other => ApiError::internal(other.to_string()),
    }
}

/// Parameters from the query string (repeatable keys) or a JSON body.
#[derive(Default)]
struct Params {
    pairs: Vec<(String, Value)>,
}

impl Params {
    fn from_request(method: &Method, query: Vec<(String, String)>, body: &Bytes) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, Value)> = query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        if method == Method::POST && !body.is_empty() {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
            let Value::Object(m) = v else { return Err(ApiError::bad_request("body must be a JSON object")) };
            for (k, v) in m {
                match v {
                    Value::Array(items) => pairs.extend(items.into_iter().map(|i| (k.clone(), i))),
                    other => pairs.push((k, other)),
                }
            }
        }
        Ok(Params { pairs })
    }

    /// Refuses a parameter the endpoint does not take, as every native query API does: a typo
    /// (`sourceid`) would otherwise widen the answer unseen. `_`, a client's cache buster, is ignored.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.pairs.iter().find(|(k, _)| k != "_" && !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "parameter {k:?} is not known; this endpoint takes {}",
                allowed.join(", ")
            ))),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::bad_request(format!("parameter {key:?} must be a string"))),
        }
    }

    /// All values of a repeatable parameter; commas separate values too.
    fn list(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .filter_map(|(_, v)| v.as_str().map(str::to_string))
            .flat_map(|s| s.split(',').map(|p| p.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let v = match v {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or_else(|_| v.clone()),
            other => other.clone(),
        };
        strata_model::parse_timestamp(&v)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("parameter {key:?}: {e}")))
    }
}

const SEARCH_PARAMS: [&str; 9] = ["q", "source_id", "run_id", "level", "from", "to", "limit", "sort", "cursor"];
const HISTOGRAM_PARAMS: [&str; 7] = ["q", "source_id", "run_id", "level", "from", "to", "interval"];
const TAIL_PARAMS: [&str; 4] = ["q", "source_id", "run_id", "level"];

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn request(p: &Params) -> Result<SearchRequest, ApiError> {
    let to_ns = p.time("to")?.unwrap_or_else(|| now_ns() + 1);
    let from_ns = p.time("from")?.unwrap_or(to_ns - DEFAULT_RANGE_NS);
    if from_ns >= to_ns {
        return Err(ApiError::bad_request("\"from\" must be before \"to\""));
    }
    let limit = match p.string("limit")? {
        None => LIMIT_DEFAULT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LIMIT_MAX).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {LIMIT_MAX}, got {s:?}")))?,
    };
    let sort = match p.string("sort")?.as_deref() {
        None | Some("newest") | Some("timestamp") => Sort::Newest,
        Some("relevance") => Sort::Relevance,
        Some(other) => {
            return Err(ApiError::bad_request(format!("sort must be \"newest\" or \"relevance\", got {other:?}")));
        }
    };
    let cursor = match p.string("cursor")? {
        None => None,
        Some(c) => {
            let cursor =
                Cursor::decode(&c).ok_or_else(|| ApiError::bad_request(format!("cursor {c:?} is not valid")))?;
            let fits =
                matches!((sort, cursor), (Sort::Newest, Cursor::After { .. }) | (Sort::Relevance, Cursor::Skip(_)));
            if !fits {
                return Err(ApiError::bad_request("cursor belongs to another sort order"));
            }
            Some(cursor)
        }
    };
    Ok(SearchRequest {
        q: p.string("q")?.unwrap_or_default(),
        source_ids: p.list("source_id"),
        run_id: p.string("run_id")?,
        levels: p.list("level"),
        from_ns,
        to_ns,
        limit,
        sort,
        cursor,
    })
}

/// Runs a search off the async workers within the query timeout, and records its latency.
async fn run_blocking<T: Send + 'static>(
    app: &App,
    endpoint: &'static str,
    started: Instant,
    f: impl FnOnce(Instant) -> strata_search::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let timeout = Duration::from_millis(app.search_cfg.query_timeout_ms);
    let deadline = Instant::now() + timeout;
    let work = tokio::task::spawn_blocking(move || f(deadline));
    let result = match tokio::time::timeout(timeout + Duration::from_millis(100), work).await {
        Ok(Ok(r)) => r.map_err(to_api),
        Ok(Err(e)) => Err(ApiError::internal(format!("search task failed: {e}"))),
        Err(_) => Err(to_api(SearchError::Timeout)),
    };
    let status = if result.is_ok() { "200" } else { "error" };
    metrics::histogram!("strata_search_request_seconds", "endpoint" => endpoint, "status" => status)
        .record(started.elapsed().as_secs_f64());
    result
}

fn tenant(app: &App, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    app.auth.tenant(headers)
}

pub async fn search(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let tenant = tenant(&app, &headers)?;
    let params = Params::from_request(&method, query, &body)?;
    params.only(&SEARCH_PARAMS)?;
    let req = request(&params)?;
    let indexes = app.indexes.clone();
    let result =
        run_blocking(&app, "search", started, move |deadline| strata_search::search(&indexes, &tenant, &req, deadline))
            .await?;
    Ok(Json(result).into_response())
}

pub async fn histogram(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let tenant = tenant(&app, &headers)?;
    let params = Params::from_request(&method, query, &body)?;
    params.only(&HISTOGRAM_PARAMS)?;
    let req = request(&params)?;
    let interval_ms = match params.string("interval")? {
        None => strata_search::auto_interval_ms(req.from_ns, req.to_ns),
        Some(s) => strata_model::parse_duration_ms(&s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "interval {s:?} must be a positive number of milliseconds or a duration such as 500ms, 30s, 5m, 1h, 1d, 1w"
            ))
        })?,
    };
    let indexes = app.indexes.clone();
    let result = run_blocking(&app, "histogram", started, move |deadline| {
        strata_search::histogram(&indexes, &tenant, &req, interval_ms, deadline)
    })
    .await?;
    Ok(Json(result).into_response())
}

pub async fn tail(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let tenant = tenant(&app, &headers)?;
    let p = Params::from_request(&Method::GET, query, &Bytes::new())?;
    p.only(&TAIL_PARAMS)?;
    let filter = TailFilter { source_ids: p.list("source_id"), levels: p.list("level"), run_id: p.string("run_id")? };
    let sub = app.tail.subscribe(&tenant, &p.string("q")?.unwrap_or_default(), filter).map_err(to_api)?;
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let event = match sub.next().await? {
            TailEvent::Line(hit) => Event::default().event("line").json_data(&*hit).ok()?,
            TailEvent::Dropped(n) => Event::default().event("dropped").data(json!({ "dropped": n }).to_string()),
        };
        Some((Ok::<_, Infallible>(event), sub))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

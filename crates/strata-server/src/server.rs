//! `strata serve`: opens the log, wires the gateway, the consumers and the admin API to one HTTP
//! listener, runs retention, and shuts down in order on SIGTERM or SIGINT.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_gateway::{AdminTokenSource, ApiError, Auth, Gateway};
use strata_log::{EmbeddedLog, Log, ThreadPriority};
use strata_pipeline::{ConsumerConfig, Consumers, SinkFactory, StatsSink, Typed, spawn_consumer};
use strata_search::{IndexerConfig, Indexes, Retention, SearchSink, TailConfig, TailHub};
use tower::ServiceExt;

use crate::config::Config;
use crate::{admin, metrics_query, pipeline, prom, rollups, search};

/// Everything a request handler may need once the server is ready.
pub struct App {
    pub log: Arc<dyn Log>,
    pub auth: Arc<Auth>,
    pub gateway: Arc<Gateway>,
    pub indexes: Arc<Indexes>,
    pub tail: TailHub,
    pub search_cfg: crate::config::SearchSection,
    pub tsdb: Arc<strata_tsdb::Store>,
    /// The rollup operator's series, kept longer than the raw samples.
    pub rollups: Arc<strata_tsdb::Store>,
    pub rules: Arc<strata_pipeline::rollup::RuleBook>,
    pub rollup_stats: strata_pipeline::rollup::RollupStats,
    pub catalog: Arc<strata_pipeline::enrich::CatalogBook>,
    pub pipeline_stats: strata_pipeline::enrich::EventPipelineStats,
    pub consumers: Consumers,
    /// The Prometheus API's limits, status values and running queries.
    pub prom: prom::PromApi,
    /// The lake's SQL and export queries.
    pub lake_queries: crate::lake::LakeQueries,
}

impl App {
    /// The stores PromQL and the Prometheus API read: the metric store and the rollup store.
    pub fn stores(&self) -> [Arc<strata_tsdb::Store>; 2] {
        [self.tsdb.clone(), self.rollups.clone()]
    }
}

/// The listener's view: health answers at once, everything else waits for readiness.
struct Shell {
    metrics: PrometheusHandle,
    ready: OnceLock<Router>,
    app: OnceLock<Arc<App>>,
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let latency = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
    let bytes = [1024.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)?
        .set_buckets_for_metric(Matcher::Full("strata_log_group_commit_requests".into()), &sizes)?
        .set_buckets_for_metric(Matcher::Full("strata_log_group_commit_bytes".into()), &bytes)?
        .install_recorder()
        .context("cannot install the metrics recorder")
}

pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    metrics::gauge!("strata_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Listen first: a start that fails on a busy port leaves no empty data directory behind.
    let listener = tokio::net::TcpListener::bind(cfg.addr()).await.with_context(|| {
        format!("cannot listen on {} (is another server using it? pick another with --http-addr)", cfg.http_addr)
    })?;
    let grpc_listener = match cfg.grpc_addr().expect("validated") {
        None => None,
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for OTLP gRPC (pick another with otlp_grpc_addr, or \"\" for none)")
        })?),
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %cfg.data_dir.display(), "listening");

    let shell = Arc::new(Shell { metrics, ready: OnceLock::new(), app: OnceLock::new() });
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(forward)
        .with_state(shell.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serve_on = |listener: tokio::net::TcpListener, router: Router| {
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let grpc_server = grpc_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "listening for OTLP gRPC");
        }
        serve_on(l, router.clone())
    });
    let server = serve_on(listener, router);
    let signal = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });

    // Recovery may take a while on a large log; /healthz answers meanwhile, /readyz says 503.
    let log_cfg = cfg.log_config();
    let log = tokio::task::spawn_blocking(move || EmbeddedLog::open(log_cfg)).await?.context("cannot open the log")?;
    let log = Arc::new(log);
    let meta = cfg.data_dir.join("meta");
    let (auth, token_source) = Auth::open(&meta, std::env::var("STRATA_ADMIN_TOKEN").ok(), cfg.no_auth)
        .context("cannot open the tenant store")?;
    if cfg.no_auth {
        tracing::warn!("authentication is off: every request acts as tenant \"default\" with admin rights");
    } else {
        match token_source {
            AdminTokenSource::Environment => tracing::info!("admin token from STRATA_ADMIN_TOKEN"),
            AdminTokenSource::File(p) => {
                tracing::info!(path = %p.display(), "admin token read from file")
            }
            AdminTokenSource::Generated(p) => {
                tracing::info!(path = %p.display(), "admin token generated")
            }
        }
    }
    let auth = Arc::new(auth);
    let dyn_log: Arc<dyn Log> = log.clone();
    // A series in use is defined again once per metrics retention (the `series` topic keeps
    // twice that); with no retention, once a week.
    let refresh_s = match cfg.log.retention_ms {
        0 => 7 * 24 * 3600,
        ms => (ms / 1000).clamp(1, u64::from(u32::MAX)) as u32,
    };
    let registry = Arc::new(strata_model::SeriesRegistry::new(refresh_s));
    {
        let (log, loading) = (dyn_log.clone(), registry.clone());
        let n = tokio::task::spawn_blocking(move || strata_gateway::load_series(&*log, &loading))
            .await?
            .context("cannot read the series registry back from the log")?;
        tracing::info!(definitions = n, series = registry.len(), "series registry loaded");
    }
    let gateway = Gateway::new(dyn_log.clone(), auth.clone(), cfg.ingest.clone(), Some(&meta), registry.clone());
    {
        let gateway = gateway.clone();
        let n = tokio::task::spawn_blocking(move || gateway.recover_keys())
            .await?
            .context("cannot read the idempotency keys back from the log")?;
        tracing::info!(appends = n, "idempotency keys recovered");
    }
    let consumer_cfg = ConsumerConfig {
        read_bytes_max: cfg.pipeline.read_bytes_max,
        commit_interval_ms: cfg.pipeline.commit_interval_ms,
        disk_floor: disk_floor(&cfg, &cfg.data_dir),
        ..ConsumerConfig::default()
    };
    let consumers = Consumers::new();
    let topics = strata_model::TopicSpec::ALL.to_vec();
    let stats = {
        let meta = meta.clone();
        let factory: SinkFactory = Box::new(move || Box::new(StatsSink::new(&meta, topics.clone())));
        let cfg = ConsumerConfig { priority: BEHIND_INGEST, ..consumer_cfg.clone() };
        spawn_consumer(dyn_log.clone(), factory, cfg, &consumers)
    };
    let retention =
        Retention { days: cfg.search.retention_days, tenant_days: cfg.search.tenant_retention_days.clone() };
    let indexes =
        Arc::new(Indexes::new(cfg.data_dir.join("search"), retention).context("cannot open the search directory")?);
    let indexer_cfg = IndexerConfig {
        writer_memory_bytes: cfg.search.writer_memory_bytes,
        indexing_threads: cfg.search.indexing_threads,
        writers_max: cfg.search.writers_max,
        disk_free_bytes_min: cfg.pipeline.disk_free_bytes_min,
        ..IndexerConfig::default()
    };
    let search_consumer = {
        let indexes = indexes.clone();
        let factory: SinkFactory =
            Box::new(move || Box::new(Typed::new(SearchSink::new(indexes.clone(), indexer_cfg.clone()))));
        let cfg = ConsumerConfig {
            commit_interval_ms: cfg.search.commit_interval_ms,
            priority: BEHIND_INGEST,
            ..consumer_cfg.clone()
        };
        spawn_consumer(dyn_log.clone(), factory, cfg, &consumers)
    };
    let tsdb = Arc::new(strata_tsdb::Store::new(cfg.tsdb_config()));
    let tsdb_consumer = {
        let (tsdb, registry) = (tsdb.clone(), registry.clone());
        let factory: SinkFactory =
            Box::new(move || Box::new(Typed::new(strata_tsdb::TsdbSink::new(tsdb.clone(), registry.clone()))));
        let cfg = ConsumerConfig { read_bytes_max: ConsumerConfig::default().read_bytes_max, ..consumer_cfg.clone() };
        spawn_consumer(dyn_log.clone(), factory, cfg, &consumers)
    };
    // The events pipeline: events deduplicated and enriched from reference tables, into
    // `events_enriched`.
    let catalog = Arc::new(
        strata_pipeline::enrich::CatalogBook::open(Some(meta.join("enrichment.json")))
            .map_err(|e| anyhow::anyhow!("cannot read the reference tables and enrichments: {e}"))?,
    );
    let pipeline_stats = strata_pipeline::enrich::EventPipelineStats::default();
    let events_pipeline = {
        let (log, catalog, stats) = (dyn_log.clone(), catalog.clone(), pipeline_stats.clone());
        let dir = cfg.data_dir.join("stream");
        let factory: SinkFactory = Box::new(move || {
            let op = strata_pipeline::enrich::EventPipeline::new(catalog.clone(), log.clone(), stats.clone());
            Box::new(strata_pipeline::OperatorSink::new(op, log.clone(), &dir))
        });
        let cfg = ConsumerConfig { commit_interval_ms: cfg.rollups.commit_interval_ms, ..consumer_cfg.clone() };
        spawn_consumer(dyn_log.clone(), factory, cfg, &consumers)
    };
    // Rollups: the operator aggregates the metrics and events topics into the rollups topic,
    // which the rollup store reads like the metric store reads metrics.
    let rules = Arc::new(
        strata_pipeline::rollup::RuleBook::open(Some(meta.join("rollups.json")))
            .map_err(|e| anyhow::anyhow!("cannot read the rollup rules: {e}"))?,
    );
    let rollup_stats = strata_pipeline::rollup::RollupStats::default();
    let rollup_operator = {
        let (log, rules, registry, stats) = (dyn_log.clone(), rules.clone(), registry.clone(), rollup_stats.clone());
        let catalog = catalog.clone();
        let idle_ms = cfg.rollups.partition_idle_ms;
        let dir = cfg.data_dir.join("stream");
        let factory: SinkFactory = Box::new(move || {
            let op = strata_pipeline::rollup::RollupOperator::new(rules.clone(), registry.clone(), stats.clone())
                .with_log(log.clone())
                .with_catalog(catalog.clone())
                .with_idle_ms(idle_ms);
            Box::new(strata_pipeline::OperatorSink::new(op, log.clone(), &dir))
        });
        let cfg = ConsumerConfig { commit_interval_ms: cfg.rollups.commit_interval_ms, ..consumer_cfg.clone() };
        spawn_consumer(dyn_log.clone(), factory, cfg, &consumers)
    };
    let rollups_store = Arc::new(strata_tsdb::Store::new(cfg.rollups_store_config()));
    let rollups_consumer = {
        let (store, registry) = (rollups_store.clone(), registry.clone());
        let factory: SinkFactory = Box::new(move || {
            Box::new(Typed::new(strata_tsdb::TsdbSink::<strata_model::topic::Rollups>::for_topic(
                store.clone(),
                registry.clone(),
            )))
        });
        spawn_consumer(dyn_log.clone(), factory, consumer_cfg.clone(), &consumers)
    };
    // The lake's `events` table, from the deduplicated and enriched events.
    let lake_location = cfg.lake.location(&cfg.data_dir).map_err(anyhow::Error::msg)?;
    let lake_events = {
        let lake = strata_lake::LakeConfig {
            location: lake_location.clone(),
            commit_bytes_max: cfg.lake.commit_bytes_max,
            partitions: dyn_log
                .partition_count(<strata_model::topic::EventsEnriched as strata_model::Topic>::SPEC.name)?,
        };
        let factory: SinkFactory = Box::new(move || Box::new(Typed::new(strata_lake::EventsSink::new(lake.clone()))));
        let cfg = ConsumerConfig {
            commit_interval_ms: cfg.lake.commit_interval_ms,
            priority: BEHIND_INGEST,
            disk_floor: lake_location.local_dir().and_then(|dir| disk_floor(&cfg, &dir)),
            ..consumer_cfg.clone()
        };
        spawn_consumer(dyn_log.clone(), factory, cfg, &consumers)
    };
    // The lake's tables of fixed columns: log lines, raw payloads, and the rollups' windows.
    let lake_fixed = [
        spawn_lake_table::<strata_lake::LogRows>(&cfg, &lake_location, &dyn_log, &consumer_cfg, &consumers)?,
        spawn_lake_table::<strata_lake::RawRows>(&cfg, &lake_location, &dyn_log, &consumer_cfg, &consumers)?,
        spawn_lake_table::<strata_lake::AggregateRows>(&cfg, &lake_location, &dyn_log, &consumer_cfg, &consumers)?,
    ];
    let lake_upkeep = tokio::spawn(strata_lake::maintain::run(
        cfg.lake.maintenance(lake_location.clone(), cfg.pipeline.disk_free_bytes_min),
        strata_lake::sql::TABLES.iter().map(|t| t.to_string()).collect(),
    ));
    #[cfg(feature = "fault-injection")]
    let fault_consumers =
        crate::faults::Faults::from_env()?.spawn(&dyn_log, &cfg.data_dir, &consumer_cfg, &consumers)?;
    let tail = TailHub::start(
        dyn_log.clone(),
        TailConfig {
            buffer_lines: cfg.search.tail_buffer_lines,
            connections_per_tenant_max: cfg.search.tail_connections_per_tenant_max,
            poll_ms: cfg.search.tail_poll_ms,
        },
    );

    let app = Arc::new(App {
        log: dyn_log.clone(),
        auth: auth.clone(),
        gateway: gateway.clone(),
        indexes: indexes.clone(),
        tail: tail.clone(),
        search_cfg: cfg.search.clone(),
        tsdb,
        rollups: rollups_store,
        rules,
        rollup_stats,
        catalog,
        pipeline_stats,
        consumers: consumers.clone(),
        prom: prom::PromApi::new(&cfg),
        lake_queries: crate::lake::LakeQueries::new(lake_location, &cfg.lake)?,
    });
    let inner = strata_gateway::routes(gateway.clone()).merge(
        Router::new()
            .route("/admin/v1/topics", get(admin::topics))
            .route("/admin/v1/topics/{topic}/partitions/{partition}/records", get(admin::records))
            .route("/admin/v1/consumer-groups", get(admin::groups))
            .route("/admin/v1/consumers", get(admin::consumers))
            .route("/admin/v1/rollups", get(rollups::list).post(rollups::put))
            .route("/admin/v1/rollups/{name}", get(rollups::get_one).delete(rollups::delete))
            .route("/query/v1/late", get(rollups::late))
            .route("/query/v1/sql", axum::routing::post(crate::lake::sql))
            .route("/query/v1/export", axum::routing::post(crate::lake::export))
            .route("/admin/v1/stream", get(rollups::overview))
            .route("/admin/v1/reference", get(pipeline::tables))
            .route("/admin/v1/reference/{table}", axum::routing::put(pipeline::put_table))
            .route("/admin/v1/reference/{table}/rows", axum::routing::post(pipeline::rows))
            .route("/admin/v1/enrichments", get(pipeline::enrichments).post(pipeline::put_enrichment))
            .route("/admin/v1/enrichments/{name}", axum::routing::delete(pipeline::delete_enrichment))
            .route("/admin/v1/dedup", get(pipeline::get_dedup).put(pipeline::put_dedup))
            .route("/admin/v1/pipeline", get(pipeline::status))
            .route("/query/v1/logs/search", get(search::search).post(search::search))
            .route("/query/v1/logs/histogram", get(search::histogram).post(search::histogram))
            .route("/query/v1/logs/tail", get(search::tail))
            .route("/api/v1/query", get(prom::query::instant).post(prom::query::instant))
            .route("/api/v1/query_range", get(prom::query::range).post(prom::query::range))
            .route("/api/v1/query_exemplars", get(prom::status::exemplars).post(prom::status::exemplars))
            .route("/api/v1/series", get(prom::series).post(prom::series))
            .route("/api/v1/labels", get(prom::labels).post(prom::labels))
            .route("/api/v1/label/{name}/values", get(prom::label_values))
            .route("/api/v1/metadata", get(prom::status::metadata))
            .route("/api/v1/rules", get(prom::status::rules))
            .route("/api/v1/alerts", get(prom::status::alerts))
            .route("/api/v1/status/buildinfo", get(prom::buildinfo))
            .route("/api/v1/status/flags", get(prom::status::flags))
            .route("/api/v1/status/runtimeinfo", get(prom::status::runtimeinfo))
            .route("/query/v1/metrics", get(metrics_query::query).post(metrics_query::query))
            .with_state(app.clone()),
    );
    let _ = shell.app.set(app);
    let _ = shell.ready.set(inner);
    tracing::info!("ready");

    let retention = {
        let (log, indexes, gateway) = (log.clone(), indexes.clone(), gateway.clone());
        let every = Duration::from_millis(cfg.log.retention_check_interval_ms);
        periodically(every, stop_rx.clone(), move || {
            let (log, indexes, gateway) = (log.clone(), indexes.clone(), gateway.clone());
            async move {
                if let Err(e) = log.enforce_retention(now_ms()).await {
                    tracing::error!(error = %e, "retention failed");
                }
                let _ = tokio::task::spawn_blocking(move || search_retention(&indexes)).await;
                let _ = tokio::task::spawn_blocking(move || gateway.save_series()).await;
            }
        })
    };
    // The idempotency keys are saved often: a restart reads the log written since the last save.
    let key_saver = {
        let gateway = gateway.clone();
        let every = Duration::from_millis(cfg.ingest.idempotency.save_interval_ms);
        periodically(every, stop_rx.clone(), move || {
            let gateway = gateway.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || gateway.save_keys()).await;
            }
        })
    };

    let mut stop_rx2 = stop_rx.clone();
    let _ = stop_rx2.wait_for(|s| *s).await;
    tracing::info!("shutting down: finishing in-flight requests");
    // Live tails would otherwise hold the shutdown open.
    tail.stop();
    match tokio::time::timeout(Duration::from_millis(cfg.shutdown_timeout_ms), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "http server failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "http server task failed"),
        Err(_) => tracing::warn!("in-flight requests did not finish in time"),
    }
    if let Some(grpc) = grpc_server {
        match tokio::time::timeout(Duration::from_millis(cfg.shutdown_timeout_ms), grpc).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "OTLP gRPC server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "OTLP gRPC server task failed"),
            Err(_) => tracing::warn!("in-flight OTLP gRPC requests did not finish in time"),
        }
    }
    signal.abort();
    retention.abort();
    // A round cut short is a crash of it, which every step survives.
    lake_upkeep.abort();
    key_saver.abort();
    tokio::task::spawn_blocking(move || {
        gateway.save_series();
        gateway.save_keys();
        stats.stop();
        search_consumer.stop();
        tsdb_consumer.stop();
        events_pipeline.stop();
        rollup_operator.stop();
        rollups_consumer.stop();
        lake_events.stop();
        lake_fixed.into_iter().for_each(strata_pipeline::Consumer::stop);
        #[cfg(feature = "fault-injection")]
        fault_consumers.into_iter().for_each(strata_pipeline::Consumer::stop);
        log.close();
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The CPU class of the views that may fall behind a burst and catch up after it: search
/// indexing (the sink's thread and the indexing threads it starts, which inherit the class), the
/// stored-bytes counts and the lake's writers. They run on the CPU that acknowledging ingest
/// leaves, and give it up the moment a request needs it; with CPU to spare the class changes
/// nothing, and acknowledgement to searchable stays as fast. The metric store, the rollups and
/// the events pipeline keep the default class: queries read them fresh, and they are cheap.
const BEHIND_INGEST: ThreadPriority = ThreadPriority::Idle;

/// Runs the sink of the lake's fixed table `R` from its topic, committing at the lake's interval.
fn spawn_lake_table<R: strata_lake::FixedRows>(
    cfg: &Config,
    location: &strata_lake::Location,
    log: &Arc<dyn Log>,
    consumer_cfg: &ConsumerConfig,
    consumers: &Consumers,
) -> anyhow::Result<strata_pipeline::Consumer> {
    let lake = strata_lake::LakeConfig {
        location: location.clone(),
        commit_bytes_max: cfg.lake.commit_bytes_max,
        partitions: log.partition_count(<R::Topic as strata_model::Topic>::SPEC.name)?,
    };
    let factory: SinkFactory = Box::new(move || Box::new(Typed::new(strata_lake::FixedSink::<R>::new(lake.clone()))));
    let consumer_cfg = ConsumerConfig {
        commit_interval_ms: cfg.lake.commit_interval_ms,
        priority: BEHIND_INGEST,
        disk_floor: location.local_dir().and_then(|dir| disk_floor(cfg, &dir)),
        ..consumer_cfg.clone()
    };
    Ok(spawn_consumer(log.clone(), factory, consumer_cfg, consumers))
}

/// The floor of a consumer that writes under `dir` (`pipeline.disk_free_bytes_min`; 0: none).
fn disk_floor(cfg: &Config, dir: &std::path::Path) -> Option<strata_pipeline::DiskFloor> {
    let free_bytes_min = cfg.pipeline.disk_free_bytes_min;
    (free_bytes_min > 0).then(|| strata_pipeline::DiskFloor { dir: dir.to_path_buf(), free_bytes_min })
}

/// Deletes whole day indexes past each tenant's retention, and reports index sizes.
fn search_retention(indexes: &Indexes) {
    for (tenant, removed) in indexes.enforce_retention() {
        tracing::info!(%tenant, days = removed.len(), "search retention removed day indexes");
    }
    for tenant in indexes.tenants() {
        metrics::gauge!("strata_search_index_bytes", "tenant" => tenant.to_string())
            .set(indexes.tenant_size_bytes(&tenant) as f64);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

async fn readyz(State(shell): State<Arc<Shell>>) -> Response {
    match shell.app.get() {
        Some(app) => {
            let failed: Vec<String> = app
                .log
                .topics()
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.failed.is_some())
                        .map(move |p| format!("{}/{}", t.name, p.partition))
                })
                .collect();
            let mut problems = Vec::new();
            if !failed.is_empty() {
                problems.push(format!("log partitions failed: {}", failed.join(", ")));
            }
            for c in app.consumers.down() {
                let state = if c.state == strata_pipeline::ConsumerState::Retrying { "retrying" } else { "failed" };
                let error = c.last_error.as_deref().unwrap_or("");
                problems.push(format!("consumer {} is {state} (restarts {}): {error}", c.group, c.restarts));
            }
            if problems.is_empty() {
                (StatusCode::OK, "ready\n").into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", problems.join("\n"))).into_response()
            }
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "recovering the log\n").into_response(),
    }
}

async fn metrics_text(State(shell): State<Arc<Shell>>) -> Response {
    if let Some(app) = shell.app.get() {
        metrics::gauge!("strata_ingest_memory_available_bytes").set(app.gateway.memory_available_bytes() as f64);
        for t in app.log.topics() {
            for p in &t.partitions {
                metrics::gauge!("strata_log_end_offset", "topic" => t.name.clone(), "partition" => p.partition.to_string())
                    .set(p.latest_offset as f64);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shell.metrics.render()).into_response()
}

async fn forward(State(shell): State<Arc<Shell>>, req: Request<Body>) -> Response {
    match shell.ready.get() {
        Some(router) => match router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        None => ApiError::overloaded("the server is starting: recovering the log", 1).into_response(),
    }
}

/// Runs `tick` every `every` until the stop signal.
fn periodically<F, Fut>(
    every: Duration,
    mut stop_rx: tokio::sync::watch::Receiver<bool>,
    mut tick: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop_rx.wait_for(|s| *s) => return,
            }
            tick().await;
        }
    })
}

use serde::{Deserialize, Serialize};
use strata_model::Limits;

/// Limits of the ingest gateway. Every one has a unit in its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// A request body as sent (compressed or not). Larger bodies get 413 while being read.
    pub body_bytes_max: u64,
    /// A body after gzip or zstd decompression. Decompression stops there with 413.
    pub decompressed_bytes_max: u64,
    /// Per-record errors listed in one answer; the rest are counted in `errors_omitted`.
    pub errors_max: usize,
    /// Memory all ingest requests together may hold (bodies, decompressed bodies, encoded
    /// records). A request that cannot get its share in `queue_wait_ms` gets 503.
    pub memory_bytes_max: u64,
    /// How long a request waits for memory before it gets 503.
    pub queue_wait_ms: u64,
    /// A body must arrive within this time, or the request gets 408 and its memory is released:
    /// slow senders cannot hold the ingest budget.
    pub body_read_timeout_ms: u64,
    /// Per-tenant rate limits.
    pub rate: RateConfig,
    /// What one record may contain.
    pub record: Limits,
    /// Series limits of metrics.
    pub metrics: crate::SeriesLimits,
    /// `Idempotency-Key` handling.
    pub idempotency: crate::idempotency::IdempotencyConfig,
    /// Prometheus HA pairs on remote write.
    pub ha: crate::HaConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_bytes_max: 16 << 20,
            decompressed_bytes_max: 64 << 20,
            errors_max: 100,
            memory_bytes_max: 2 << 30,
            queue_wait_ms: 2000,
            body_read_timeout_ms: 30_000,
            rate: RateConfig::default(),
            record: Limits::default(),
            metrics: crate::SeriesLimits::default(),
            idempotency: crate::idempotency::IdempotencyConfig::default(),
            ha: crate::HaConfig::default(),
        }
    }
}

/// Token buckets per tenant: a sustained rate and a burst, for records and for bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    pub records_per_s: f64,
    pub records_burst: f64,
    pub bytes_per_s: f64,
    pub bytes_burst: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            records_per_s: 1_000_000.0,
            records_burst: 2_000_000.0,
            bytes_per_s: 1024.0 * 1024.0 * 1024.0,
            bytes_burst: 2.0 * 1024.0 * 1024.0 * 1024.0,
        }
    }
}

impl GatewayConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("ingest.body_bytes_max", self.body_bytes_max as f64),
            ("ingest.decompressed_bytes_max", self.decompressed_bytes_max as f64),
            ("ingest.memory_bytes_max", self.memory_bytes_max as f64),
            ("ingest.body_read_timeout_ms", self.body_read_timeout_ms as f64),
            ("ingest.rate.records_per_s", self.rate.records_per_s),
            ("ingest.rate.records_burst", self.rate.records_burst),
            ("ingest.rate.bytes_per_s", self.rate.bytes_per_s),
            ("ingest.rate.bytes_burst", self.rate.bytes_burst),
        ];
        for (key, v) in positive {
            if v.is_nan() || v <= 0.0 {
                return Err(format!("{key}: must be greater than 0, got {v}"));
            }
        }
        if self.metrics.active_series_max == 0 || self.metrics.active_series_idle_ms < 1000 {
            return Err(
                "ingest.metrics.active_series_max must be at least 1 and active_series_idle_ms at least 1000".into()
            );
        }
        if self.decompressed_bytes_max < self.body_bytes_max {
            return Err(format!(
                "ingest.decompressed_bytes_max ({}) must be at least ingest.body_bytes_max ({})",
                self.decompressed_bytes_max, self.body_bytes_max
            ));
        }
        if self.memory_bytes_max < 2 * self.decompressed_bytes_max + self.body_bytes_max {
            return Err(format!(
                "ingest.memory_bytes_max ({}) must hold one largest request: 2 x decompressed_bytes_max + body_bytes_max = {}",
                self.memory_bytes_max,
                2 * self.decompressed_bytes_max + self.body_bytes_max
            ));
        }
        let idem = &self.idempotency;
        if idem.window_ms < 1000 || idem.keys_max == 0 || idem.save_interval_ms < 100 {
            return Err(
                "ingest.idempotency: window_ms must be at least 1000, keys_max at least 1 and save_interval_ms at least 100"
                    .into(),
            );
        }
        if self.memory_bytes_max / 1024 > u64::from(u32::MAX) {
            return Err(format!("ingest.memory_bytes_max {} is too large", self.memory_bytes_max));
        }
        Ok(())
    }
}

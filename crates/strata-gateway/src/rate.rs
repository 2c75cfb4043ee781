//! Per-tenant token buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use strata_model::TenantId;

use crate::config::RateConfig;

struct Bucket {
    records: f64,
    bytes: f64,
    last: Instant,
}

/// Records/s and bytes/s per tenant with bursts. A bucket may go into debt by one request, so a
/// request larger than the burst is not refused forever; the debt delays the next ones.
pub struct RateLimiter {
    cfg: RateConfig,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    pub fn new(cfg: RateConfig) -> Self {
        RateLimiter { cfg, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `records` and `bytes` from the tenant's buckets, or says how many seconds to wait.
    pub fn take(&self, tenant: &TenantId, records: u64, bytes: u64) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate lock");
        let b = buckets.entry(tenant.clone()).or_insert(Bucket {
            records: self.cfg.records_burst,
            bytes: self.cfg.bytes_burst,
            last: now,
        });
        let dt = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.records = (b.records + dt * self.cfg.records_per_s).min(self.cfg.records_burst);
        b.bytes = (b.bytes + dt * self.cfg.bytes_per_s).min(self.cfg.bytes_burst);
        if b.records <= 0.0 || b.bytes <= 0.0 {
            let wait_records = -b.records / self.cfg.records_per_s;
            let wait_bytes = -b.bytes / self.cfg.bytes_per_s;
            return Err(wait_records.max(wait_bytes).ceil().max(1.0) as u64);
        }
        b.records -= records as f64;
        b.bytes -= bytes as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_blocks_until_refilled() {
        let r = RateLimiter::new(RateConfig {
            records_per_s: 10.0,
            records_burst: 20.0,
            bytes_per_s: 1e9,
            bytes_burst: 1e9,
        });
        let t = TenantId::new("a").unwrap();
        assert!(r.take(&t, 15, 0).is_ok());
        assert!(r.take(&t, 30, 0).is_ok(), "one request may go into debt");
        let wait = r.take(&t, 1, 0).unwrap_err();
        assert!((2..=3).contains(&wait), "{wait}");
        // Other tenants are not affected.
        assert!(r.take(&TenantId::new("b").unwrap(), 1, 0).is_ok());
    }
}

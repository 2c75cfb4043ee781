//! Prometheus HA pairs: two (or more) replicas scrape the same targets and remote-write the same
//! series, told apart only by a replica label. Per tenant and cluster, the samples of one replica,
//! the elected one, are stored; the others' requests are answered 202 and dropped whole, so that
//! a sender neither retries them nor stores them twice. When the elected replica has sent nothing
//! for `failover_timeout_ms`, the next replica to send is elected. The replica label is removed
//! from what is stored: the series are the same as one sender's. (As Cortex's and Mimir's HA
//! trackers do; their `cluster` and `__replica__` labels are the defaults here.)
//!
//! The elections live in memory. After a restart the first replica to send is elected, which can
//! store a few requests of both replicas; samples equal to the stored ones at their timestamps cost
//! the metric store nothing (`strata_tsdb_samples_unchanged_total`).

use std::collections::HashMap;
use std::sync::Mutex;

/// How HA pairs are recognised.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaConfig {
    /// The label naming the cluster a sender belongs to (a Prometheus external label). A
    /// request with a replica label and no cluster label belongs to the tenant's one cluster "".
    pub cluster_label: String,
    /// The label naming the replica; empty turns HA handling off (and the label, like every
    /// name starting with `__`, is then refused as reserved).
    pub replica_label: String,
    /// How long the elected replica may be silent before another one is elected.
    pub failover_timeout_ms: u64,
    /// Clusters tracked per tenant; a request of a new cluster past it is refused (400) until one
    /// has been silent for `failover_timeout_ms`.
    pub clusters_per_tenant_max: usize,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            cluster_label: "cluster".into(),
            replica_label: "__replica__".into(),
            failover_timeout_ms: 30_000,
            clusters_per_tenant_max: 100,
        }
    }
}

/// What to do with a request of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Store it (without the replica label).
    Accept,
    /// Drop it: `elected` is the cluster's replica.
    NotElected { elected: String },
    /// The tenant already has `clusters_per_tenant_max` clusters sending.
    TooManyClusters { max: usize },
}

struct Elected {
    replica: String,
    seen_ms: i64,
}

/// The elected replica of each tenant's clusters.
pub(crate) struct HaTracker {
    cfg: HaConfig,
    elected: Mutex<HashMap<String, HashMap<String, Elected>>>,
}

impl HaTracker {
    pub(crate) fn new(cfg: HaConfig) -> HaTracker {
        HaTracker { cfg, elected: Mutex::new(HashMap::new()) }
    }

    /// The replica label, if HA handling is on.
    pub(crate) fn replica_label(&self) -> Option<&str> {
        Some(self.cfg.replica_label.as_str()).filter(|l| !l.is_empty())
    }

    pub(crate) fn cluster_label(&self) -> &str {
        &self.cfg.cluster_label
    }

    /// A request of `replica` of `cluster` arrived at `now_ms`.
    pub(crate) fn check(&self, tenant: &str, cluster: &str, replica: &str, now_ms: i64) -> Verdict {
        let timeout = self.cfg.failover_timeout_ms as i64;
        let mut elected = self.elected.lock().expect("ha lock");
        let clusters = match elected.get_mut(tenant) {
            Some(c) => c,
            None => elected.entry(tenant.to_string()).or_default(),
        };
        if let Some(e) = clusters.get_mut(cluster) {
            if e.replica == replica {
                e.seen_ms = e.seen_ms.max(now_ms);
                return Verdict::Accept;
            }
            if now_ms.saturating_sub(e.seen_ms) <= timeout {
                return Verdict::NotElected { elected: e.replica.clone() };
            }
            tracing::info!(tenant, cluster, from = %e.replica, to = replica, "HA failover: the elected replica was silent");
            metrics::counter!("strata_ingest_ha_failovers_total", "tenant" => tenant.to_string()).increment(1);
            *e = Elected { replica: replica.to_string(), seen_ms: now_ms };
            return Verdict::Accept;
        }
        if clusters.len() >= self.cfg.clusters_per_tenant_max {
            clusters.retain(|_, e| now_ms.saturating_sub(e.seen_ms) <= timeout);
            if clusters.len() >= self.cfg.clusters_per_tenant_max {
                return Verdict::TooManyClusters { max: self.cfg.clusters_per_tenant_max };
            }
        }
        clusters.insert(cluster.to_string(), Elected { replica: replica.to_string(), seen_ms: now_ms });
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(clusters_max: usize) -> HaTracker {
        HaTracker::new(HaConfig {
            failover_timeout_ms: 1_000,
            clusters_per_tenant_max: clusters_max,
            ..Default::default()
        })
    }

    #[test]
    fn the_first_replica_is_elected_until_it_is_silent_past_the_timeout() {
        let ha = tracker(10);
        assert_eq!(ha.check("t", "eu", "a", 0), Verdict::Accept);
        assert_eq!(ha.check("t", "eu", "b", 10), Verdict::NotElected { elected: "a".into() });
        assert_eq!(ha.check("t", "eu", "a", 900), Verdict::Accept);
        // b is dropped as long as a was heard from within the timeout...
        assert_eq!(ha.check("t", "eu", "b", 1_900), Verdict::NotElected { elected: "a".into() });
        // ...and elected once it was not; a is then the one dropped.
        assert_eq!(ha.check("t", "eu", "b", 1_901), Verdict::Accept);
        assert_eq!(ha.check("t", "eu", "a", 1_902), Verdict::NotElected { elected: "b".into() });
        // A request that arrives out of order does not move the elected replica's time back.
        assert_eq!(ha.check("t", "eu", "b", 1_500), Verdict::Accept);
        assert_eq!(ha.check("t", "eu", "a", 2_500), Verdict::NotElected { elected: "b".into() });
    }

    #[test]
    fn clusters_and_tenants_elect_apart() {
        let ha = tracker(10);
        assert_eq!(ha.check("t", "eu", "a", 0), Verdict::Accept);
        assert_eq!(ha.check("t", "us", "b", 0), Verdict::Accept);
        assert_eq!(ha.check("u", "eu", "b", 0), Verdict::Accept);
        assert_eq!(ha.check("t", "eu", "b", 1), Verdict::NotElected { elected: "a".into() });
        assert_eq!(ha.check("u", "eu", "a", 1), Verdict::NotElected { elected: "b".into() });
    }

    #[test]
    fn clusters_past_the_limit_are_refused_until_one_goes_silent() {
        let ha = tracker(2);
        assert_eq!(ha.check("t", "c1", "a", 0), Verdict::Accept);
        assert_eq!(ha.check("t", "c2", "a", 500), Verdict::Accept);
        assert_eq!(ha.check("t", "c3", "a", 600), Verdict::TooManyClusters { max: 2 });
        // Another tenant has its own limit.
        assert_eq!(ha.check("u", "c3", "a", 600), Verdict::Accept);
        // c1 silent past the timeout makes room.
        assert_eq!(ha.check("t", "c3", "a", 1_200), Verdict::Accept);
        assert_eq!(ha.check("t", "c2", "b", 1_300), Verdict::NotElected { elected: "a".into() });
    }
}

//! The Rust producer SDK against the real server: batching, compression, and retries that honour
//! the server's 429 `Retry-After` until every record is stored, once.

mod common;

use common::Server;
use serde_json::json;
use strata_client::{Client, ClientConfig, Compression, Producer, ProducerConfig, RecordKind};

#[test]
fn the_producer_rides_out_rate_limits_and_delivers_every_record_once() {
    // 1,000 records/s with a burst of 1,000: sending 4,000 at once must be spread over seconds.
    let s = Server::start("[ingest.rate]\nrecords_per_s = 1000.0\nrecords_burst = 1000.0\n");
    let key = s.tenant_key("sdk");
    let url = s.url("");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let client = Client::new(ClientConfig {
            api_key: Some(key),
            compression: Compression::Zstd,
            retries_max: 20,
            backoff_max_ms: 3000,
            ..ClientConfig::new(url)
        })
        .unwrap();
        let producer =
            Producer::new(client, ProducerConfig { batch_records_max: 500, ..ProducerConfig::default() }).unwrap();
        let mut deliveries = Vec::new();
        for i in 0..4000 {
            let record = json!({"source_id": format!("h{}", i % 10), "message": format!("m{i}")});
            deliveries.push(producer.send(RecordKind::Logs, &record).await.unwrap());
        }
        // One bad record gets its own error; its batch-mates are stored.
        let bad = producer.send(RecordKind::Logs, &json!({"message": "no source"})).await.unwrap();
        producer.flush().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
        let err = bad.await.unwrap_err().to_string();
        assert!(
            err.contains(r#"field \"source_id\" is required"#) || err.contains(r#"field "source_id" is required"#),
            "{err}"
        );
        producer.close().await.unwrap();
    });
    let limited = s.metric(r#"strata_ingest_requests_total{kind="logs",status="429"}"#).unwrap_or(0.0);
    assert!(limited >= 1.0, "the rate limit was never hit, so retries were not exercised");
    let mut messages: Vec<String> =
        s.all_records("logs").iter().map(|r| r["payload"]["message"].as_str().unwrap().to_string()).collect();
    messages.sort();
    let mut want: Vec<String> = (0..4000).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(messages, want, "every record once: a 429 appends nothing, so its retry is no duplicate");
}

//! The lake end to end: events sent to `strata serve`, SIGKILLed while the lake's `events` table
//! commits, are each in the Delta table exactly once, read back with DataFusion as any engine
//! reading Delta would.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use strata_lake::deltalake;
use strata_lake::deltalake::datafusion::prelude::SessionContext;

const REQUESTS: usize = 100;
const PER_REQUEST: usize = 10;
const KILLS: usize = 20;

/// `(rows, distinct event ids)` of the events table, `None` before its first commit.
fn counts(server: &Server) -> Option<(i64, i64)> {
    let path = server.data_dir().join("lake/events");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = deltalake::ensure_table_uri(path.to_string_lossy()).ok()?;
        let table = deltalake::open_table(url).await.ok()?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("events", table.table_provider().await.unwrap()).unwrap();
        let batches = ctx
            .sql("SELECT count(*), count(DISTINCT event_id) FROM events WHERE tenant = 'lake'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let col = |i: usize| {
            batches[0].column(i).as_any().downcast_ref::<deltalake::arrow::array::Int64Array>().unwrap().value(0)
        };
        Some((col(0), col(1)))
    })
}

#[test]
fn events_are_in_the_lake_once_across_sigkills() {
    let mut server = Server::start("[lake]\ncommit_interval_ms = 300\n[rollups]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("lake");
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut kills = 0;
    for n in 0..REQUESTS {
        let body: String = (0..PER_REQUEST)
            .map(|i| {
                let id = n * PER_REQUEST + i;
                format!(
                    "{}\n",
                    json!({"type": "order", "source_id": format!("shop-{}", id % 5), "event_id": format!("e{id}"),
                        "data": {"amount": id, "currency": "EUR"}})
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = http
                .post(server.url("/ingest/v1/events"))
                .bearer_auth(&key)
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", format!("req-{n}"))
                .body(body.clone())
                .send();
            match r {
                Ok(r) if r.status() == 200 => break,
                Ok(r) if r.status().is_client_error() => panic!("{}: {}", r.status(), r.text().unwrap()),
                _ => {}
            }
            assert!(Instant::now() < deadline, "request {n} was not taken");
            std::thread::sleep(Duration::from_millis(50));
        }
        if n % 5 == 4 && kills < KILLS {
            // Let a lake commit or two happen, then kill at a moment of the commit cycle that varies.
            std::thread::sleep(Duration::from_millis(150 + 23 * kills as u64));
            server.kill();
            server.spawn();
            kills += 1;
        }
    }
    let want = (REQUESTS * PER_REQUEST) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = counts(&server);
        if got == Some((want, want)) {
            break;
        }
        if let Some((rows, distinct)) = got {
            assert_eq!(rows, distinct, "an event is in the lake twice");
            assert!(rows <= want, "{rows} rows for {want} events");
        }
        assert!(Instant::now() < deadline, "the lake holds {got:?} of {want} events");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The table committed many times between the kills, not once at the end.
    let commits = std::fs::read_dir(server.data_dir().join("lake/events/_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert!(commits >= 5, "{commits} commits");
    eprintln!("{kills} kills, {commits} commits, {want} events in the lake once each");
}

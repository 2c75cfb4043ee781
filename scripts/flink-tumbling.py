"""The tumbling aggregation of `strata-bench stream`, in Apache Flink (PyFlink, a local
mini-cluster): N events over K keys, each key once per second of event time, a 1 s event-time
tumbling count and sum per key, into a blackhole sink. Prints one JSON line: events, seconds
(the job's wall time, start-up included) and events per second.

Usage: flink-tumbling.py EVENTS KEYS PARALLELISM
"""
import json
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

events, keys, parallelism = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("parallelism.default", str(parallelism))
env.execute_sql(f"""
CREATE TABLE src (
  n BIGINT,
  k AS MOD(n, {keys}),
  v AS CAST(MOD(n, 997) AS DOUBLE) / 10,
  ts AS TO_TIMESTAMP_LTZ(n * 1000 / {keys}, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'fields.n.kind' = 'sequence',
  'fields.n.start' = '0',
  'fields.n.end' = '{events - 1}'
)""")
env.execute_sql("CREATE TABLE sink (k BIGINT, w TIMESTAMP_LTZ(3), c BIGINT, s DOUBLE) WITH ('connector' = 'blackhole')")
started = time.monotonic()
env.execute_sql("""
INSERT INTO sink
SELECT k, window_end, COUNT(*), SUM(v)
FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY k, window_start, window_end""").wait()
seconds = time.monotonic() - started
print(json.dumps({"events": events, "keys": keys, "parallelism": parallelism, "seconds": seconds,
                  "events_per_s": events / seconds}))

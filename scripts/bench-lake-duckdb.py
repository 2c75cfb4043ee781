"""The lake benchmark's DuckDB side. Reads the JSON lines `strata-bench lake query` printed (each
query's SQL text, Strata's timings and Strata's answer), runs the very same SQL text in DuckDB
over a view `events` of exactly the Parquet files the Delta log lists as active (found with
Python's deltalake), restricted to the same tenant as Strata's queries are, times each query the
same way (warm-up runs, then timed runs, the median), checks that both engines give the same
answer, and prints one JSON line per query, then a table with the ratios and, if given, the
write figures. Exits 1 if an answer differs.

Usage: bench-lake-duckdb.py --lake DIR --strata STRATA.jsonl [--write WRITE.json] [--warmups 1] [--runs 3]
"""
import argparse
import datetime
import json
import math
import statistics
import sys
import time
from decimal import Decimal

import duckdb
from deltalake import DeltaTable


def quoted(text):
    return "'" + text.replace("'", "''") + "'"


def normal(value):
    """A value of either engine in one form: numbers as numbers, times as UTC epoch seconds."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return value


def same(a, b):
    a, b = normal(a), normal(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def differences(strata_rows, duck_rows):
    """What differs between Strata's answer and DuckDB's (rows as objects), at most five."""
    if len(strata_rows) != len(duck_rows):
        return [f"{len(strata_rows)} rows from Strata, {len(duck_rows)} from DuckDB"]
    out = []
    for i, (s, d) in enumerate(zip(strata_rows, duck_rows)):
        for name, dv in d.items():
            # Strata's JSON leaves out a null.
            sv = s.get(name)
            if not same(sv, dv):
                out.append(f"row {i} column {name}: Strata {sv!r}, DuckDB {dv!r}")
    return out[:5]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lake", required=True)
    p.add_argument("--strata", required=True)
    p.add_argument("--write")
    p.add_argument("--warmups", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()

    with open(args.strata) as f:
        strata = [json.loads(line) for line in f if line.startswith("{")]
    tenant = strata[0]["tenant"]
    files = [f.removeprefix("file://") for f in DeltaTable(f"{args.lake}/events").file_uris()]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Partition values stay text, as in the Delta schema Strata reads (`dt` is not a DATE there).
    con.execute(
        f"CREATE VIEW events AS SELECT * FROM read_parquet([{', '.join(quoted(f) for f in files)}], "
        f"hive_partitioning = true, hive_types_autocast = false) WHERE tenant = {quoted(tenant)}"
    )
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"duckdb {duckdb.__version__}, {threads} threads, {len(files)} active Parquet files", flush=True)

    results = []
    for q in strata:
        for _ in range(args.warmups):
            con.sql(q["sql"]).to_arrow_table()
        runs_ms = []
        for _ in range(args.runs):
            started = time.perf_counter()
            answer = con.sql(q["sql"]).to_arrow_table()
            runs_ms.append((time.perf_counter() - started) * 1000)
        rows = answer.to_pylist()
        diff = differences(q["rows"], rows)
        result = {
            "query": q["query"],
            "strata_ms": q["median_ms"],
            "duckdb_ms": statistics.median(runs_ms),
            "duckdb_runs_ms": runs_ms,
            "rows": len(rows),
            "same_answer": not diff,
            "differences": diff,
        }
        result["ratio"] = result["strata_ms"] / result["duckdb_ms"]
        results.append(result)
        print(json.dumps(result), flush=True)

    print()
    print("| query | rows | Strata ms | DuckDB ms | Strata / DuckDB | same answer |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['query']} | {r['rows']} | {r['strata_ms']:,.0f} | {r['duckdb_ms']:,.0f} | "
              f"{r['ratio']:.2f}× | {'yes' if r['same_answer'] else 'NO'} |")
    ratios = [r["ratio"] for r in results]
    median, worst = statistics.median(ratios), max(ratios)
    print()
    print(f"median ratio {median:.2f}× (target ≤ 1.5×: {'met' if median <= 1.5 else 'not met'}); "
          f"max ratio {worst:.2f}× ({max(results, key=lambda r: r['ratio'])['query']}; "
          f"target ≤ 3×: {'met' if worst <= 3 else 'not met'})")
    if args.write:
        with open(args.write) as f:
            w = json.loads(f.read())
        print(f"write: {w['events']:,} events, {w['raw_json_bytes'] / 1e6:,.0f} MB of JSON in {w['seconds']:.1f} s: "
              f"{w['mb_per_s']:.1f} MB/s (target ≥ 100: {'met' if w['mb_per_s'] >= 100 else 'not met'}), "
              f"{w['events_per_s']:,.0f} events/s; {w['write_seconds']:.1f} s in write calls, "
              f"{w['commit_seconds']:.1f} s in {w['commits']} commits"
              + (f" (decoding the JSON alone, timed apart: {w['decode_seconds']:.1f} s)" if "decode_seconds" in w else ""))
        print(f"size: {w['table_bytes'] / 1e6:,.1f} MB ({w['parquet_files']} Parquet files "
              f"{w['parquet_bytes'] / 1e6:,.1f} MB + Delta log {w['delta_log_bytes'] / 1e6:.2f} MB) = "
              f"{w['size_fraction'] * 100:.1f}% of the JSON (target ≤ 15%: "
              f"{'met' if w['size_fraction'] <= 0.15 else 'not met'})")
    if any(not r["same_answer"] for r in results):
        print("some answers differ between Strata and DuckDB", file=sys.stderr)
        sys.exit(1)


main()

"""Reads a Delta table Strata wrote with two independent readers and prints what each finds for
one tenant: Python's deltalake (delta-rs), and DuckDB over exactly the Parquet files the Delta
log lists as active. Usage: lake_readers.py <table dir> <tenant>"""
import json
import sys

import duckdb
import pyarrow.compute as pc
from deltalake import DeltaTable

path, tenant = sys.argv[1], sys.argv[2]
table = DeltaTable(path)
rows = table.to_pyarrow_table(filters=[("tenant", "=", tenant)])
by_deltalake = [rows.num_rows, pc.sum(rows["amount"]).as_py(), len(pc.unique(rows["event_id"]))]
files = [f.removeprefix("file://") for f in table.file_uris()]
con = duckdb.connect()
by_duckdb = con.execute(
    "SELECT count(*), sum(amount), count(DISTINCT event_id) FROM read_parquet(?, hive_partitioning = true, "
    "union_by_name = true) WHERE tenant = ?",
    [files, tenant],
).fetchone()
print(json.dumps({"deltalake": by_deltalake, "duckdb": [int(v) for v in by_duckdb], "files": len(files)}))

"""Reads a Delta table Strata wrote with two independent readers and prints what each finds for
one tenant: Python's deltalake (delta-rs), and DuckDB over exactly the Parquet files the Delta
log lists as active. Usage: lake_readers.py <table dir or s3:// URL> <tenant>

A table in S3 is read by deltalake alone, with the store's options from the environment
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...): DuckDB reads S3 through an extension it would
download, and this machine reads nothing from the internet."""
import json
import os
import sys

import pyarrow.compute as pc
from deltalake import DeltaTable

path, tenant = sys.argv[1], sys.argv[2]
remote = path.startswith("s3://")
options = {k: v for k, v in os.environ.items() if k.startswith("AWS_")} if remote else None
table = DeltaTable(path, storage_options=options)
rows = table.to_pyarrow_table(filters=[("tenant", "=", tenant)])
by_deltalake = [rows.num_rows, pc.sum(rows["amount"]).as_py(), len(pc.unique(rows["event_id"]))]
files = table.file_uris()
by_duckdb = None
if not remote:
    import duckdb

    con = duckdb.connect()
    by_duckdb = con.execute(
        "SELECT count(*), sum(amount), count(DISTINCT event_id) FROM read_parquet(?, hive_partitioning = true, "
        "union_by_name = true) WHERE tenant = ?",
        [[f.removeprefix("file://") for f in files], tenant],
    ).fetchone()
    by_duckdb = [int(v) for v in by_duckdb]
print(json.dumps({"deltalake": by_deltalake, "duckdb": by_duckdb, "files": len(files)}), flush=True)
# Leave without the interpreter's finalization: pyarrow's I/O threads that still call into
# deltalake's Python file system at that moment can abort the process ("terminate called without
# an active exception") after the answer is printed, which would read as a failed reader.
os._exit(0)

#!/usr/bin/env python3
"""Reads the `garments` table (and its `garment_deletes` tombstones) the way analysts do and
prints what it found as JSON: DuckDB over the Parquet files (hive partitioning) and pyarrow's
dataset reader; the README's current-view query next to the `garments_current` table.
For s3:// warehouses pyarrow's S3 filesystem reads the objects (AWS_ENDPOINT_URL, keys and
region from the environment) and DuckDB queries the Arrow table (DuckDB's own S3 support is an
extension downloaded at run time, which this machine cannot fetch).
Usage: check_garments.py <warehouse_uri>
"""
import json, sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from warehouse_fs import open_warehouse

uri = sys.argv[1].rstrip("/")
fs, warehouse_root = open_warehouse(uri)
root = warehouse_root + "/garments"
# pyarrow skips `_`- and `.`-prefixed paths (the range markers live under `_ranges/`).
dataset = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive")
table = dataset.to_table()
con = duckdb.connect()
con.register("garments", table)
if uri.startswith("file://"):
    # DuckDB straight from the files too, as an analyst on a shared disk would.
    direct = con.execute(
        f"select count(*) from read_parquet('{root}/*/*.parquet', hive_partitioning = true)"
    ).fetchone()[0]
else:
    direct = None
rows = con.execute("""
    select event_id, category, color_primary, detection_source, dt::varchar,
           len(models) as models, processed_at is not null
    from garments order by event_id""").fetchall()
warehouse = root.rsplit("/", 1)[0]
try:
    deletes = ds.dataset(warehouse + "/garment_deletes", filesystem=fs, format="parquet",
                         partitioning="hive").to_table()
except (FileNotFoundError, OSError):
    deletes = pa.table({"garment_id": pa.array([], pa.string()), "user_id": pa.array([], pa.string())})
con.register("garment_deletes", deletes)
# The README's current view without the compaction table: schemas/garments_current.sql, the
# same file `flashfit reprocess` runs.
import os
sql_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas", "garments_current.sql")
view = open(sql_path).read().strip().rstrip(";")
current_query = con.execute(f"select garment_id from ({view}) order by garment_id").fetchall()
current_path = warehouse + "/garments_current/garments_current.parquet"
try:
    current = pq.read_table(current_path, filesystem=fs)
    con.register("garments_current", current)
    current_rows = con.execute("select count(*), count(distinct garment_id) from garments_current").fetchone()
    current_ids = [r[0] for r in con.execute(
        "select garment_id from garments_current order by garment_id").fetchall()]
except (FileNotFoundError, OSError):
    current_rows, current_ids = None, None
print(json.dumps({
    "current_rows": current_rows,
    "current_ids": current_ids,
    "current_query_ids": [r[0] for r in current_query],
    "deletes_rows": deletes.num_rows,
    "pyarrow_rows": table.num_rows,
    "duckdb_direct_rows": direct,
    "columns": table.schema.names,
    "rows": [list(r) for r in rows],
}))

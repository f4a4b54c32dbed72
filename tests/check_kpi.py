#!/usr/bin/env python3
"""Reads the kpi_daily table the way the README's analysts do (DuckDB over the Parquet file;
for s3:// warehouses pyarrow's S3 filesystem fetches it) and prints the A/B readout as JSON.
Usage: check_kpi.py <warehouse_uri>
"""
import json, sys

import duckdb
import pyarrow.parquet as pq

from warehouse_fs import open_warehouse

fs, root = open_warehouse(sys.argv[1])
daily = pq.read_table(root + "/kpi_daily/kpi_daily.parquet", filesystem=fs)
con = duckdb.connect()
con.register("kpi_daily", daily)
rows = con.execute("""
    select experiment, variant, sum(impressions) as impressions,
           sum(clicks) / sum(impressions) as ctr, sum(users) as user_days
    from kpi_daily group by experiment, variant order by experiment, variant""").fetchall()
# schemas/kpi_daily.sql (what `flashfit kpi-daily` runs) in DuckDB over the events gives the
# same rows as the table.
import os
import pyarrow.dataset as ds
events = ds.dataset(root + "/kpi_events", filesystem=fs, format="parquet",
                    partitioning="hive").to_table()
con.register("kpi_events", events)
con.execute("set TimeZone = 'UTC'")
sql = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas",
                        "kpi_daily.sql")).read().strip().rstrip(";")
keys = "experiment, variant, day::varchar, impressions, clicks, saves, sessions, users"
sql_rows = con.execute(f"select {keys} from ({sql}) order by all").fetchall()
table_rows = con.execute(f"select {keys} from kpi_daily order by all").fetchall()
print(json.dumps({"columns": daily.schema.names, "rows": [list(r) for r in rows],
                  "sql_rows": [list(r) for r in sql_rows],
                  "table_rows": [list(r) for r in table_rows]}))

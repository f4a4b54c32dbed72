#!/usr/bin/env python3
"""Reads the funnel tables (`statuses`, `dead_letters`, `feedback_events`) the way analysts do:
DuckDB straight over the Parquet files with hive partitioning (the README's queries). Prints
JSON: statuses by status and reason, dead letters by stage and reason, feedback events.
Usage: check_funnel.py <file:// warehouse_uri>
"""
import json, sys

import duckdb

root = sys.argv[1].removeprefix("file://").rstrip("/")
con = duckdb.connect()
for t in ["statuses", "dead_letters", "feedback_events"]:
    con.execute(
        f"create view {t} as select * from read_parquet('{root}/{t}/*/*.parquet', hive_partitioning = true)"
    )
funnel = con.execute("""
    select status, coalesce(reasons[1], '') as reason, count(distinct event_id) as uploads
    from statuses group by all order by all""").fetchall()
days = con.execute("select count(distinct dt) from statuses").fetchone()[0]
dead = con.execute("""
    select stage, reason, source_topic, count(*) as n, max(length(value_head)) as head
    from dead_letters group by all order by all""").fetchall()
feedback = con.execute(
    "select signal, count(*) from feedback_events group by all order by all").fetchall()
print(json.dumps({
    "funnel": [list(r) for r in funnel],
    "status_days": days,
    "dead_letters": [list(r) for r in dead],
    "feedback": [list(r) for r in feedback],
}))

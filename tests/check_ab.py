#!/usr/bin/env python3
"""Reads the A/B tables the way the README's analysts and dashboards do: DuckDB over
`ab_results` (every readout: experiment, variant, metric, day) and over `kpi_users`; runs
schemas/kpi_users.sql in DuckDB over `kpi_events` and compares it with the table
`flashfit kpi-daily` wrote. Prints JSON. Usage: check_ab.py <warehouse_uri>
"""
import json, os, sys

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from warehouse_fs import open_warehouse

fs, root = open_warehouse(sys.argv[1])
con = duckdb.connect()
con.execute("set TimeZone = 'UTC'")
con.register("ab_results", ds.dataset(root + "/ab_results", filesystem=fs, format="parquet").to_table())


def latest(experiment, variant, metric, column):
    row = con.execute(f"""
        select {column} from ab_results
        where experiment = ? and variant = ? and metric = ?
        order by computed_at desc limit 1""", [experiment, variant, metric]).fetchall()
    return row[0][0] if row else None


out = {
    "ctr_verdict": latest("ranking", "treatment", "ctr", "verdict"),
    "ctr_rel_lift": latest("ranking", "treatment", "ctr", "rel_lift"),
    "aa_ctr_verdict": latest("aa", "b", "ctr", "verdict"),
    "skewed_srm_mismatch": con.execute(
        "select bool_or(srm_mismatch) from ab_results where experiment = 'skewed'").fetchall()[0][0],
}
users = pq.read_table(root + "/kpi_users/kpi_users.parquet", filesystem=fs)
con.register("kpi_users", users)
out["users"] = con.execute(
    "select count(*) from kpi_users where experiment in ('ranking', 'aa', 'skewed')").fetchall()[0][0]
events = ds.dataset(root + "/kpi_events", filesystem=fs, format="parquet",
                    partitioning="hive").to_table()
con.register("kpi_events", events)
# Impressions carry their position, score, scorer and the models behind the garments.
imp = con.execute("""
    select min(rank), max(rank), count(*) filter (where score is null),
           string_agg(distinct scorer, ','), count(*) filter (where len(model_versions) = 0),
           count(*) filter (where experiments_hash is null), count(*)
    from kpi_events where type = 'impression'""").fetchall()[0]
out["impressions"] = {"min_rank": imp[0], "max_rank": imp[1], "without_score": imp[2],
                      "scorers": imp[3], "without_models": imp[4], "without_hash": imp[5],
                      "count": imp[6]}
out["attributed_sessions"] = con.execute("""
    select count(*) from kpi_events
    where type = 'session_end' and len(variants) > 0 and experiments_hash is not null""").fetchall()[0][0]
con.execute("""create table experiment_windows as
    select * from (values ('ranking', timestamptz '2026-01-01 00:00:00+00', null::timestamptz),
                          ('aa', timestamptz '2026-01-01 00:00:00+00', null::timestamptz),
                          ('skewed', timestamptz '2026-01-01 00:00:00+00', null::timestamptz))
    t(experiment, start_ts, end_ts)""")
sql = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas",
                        "kpi_users.sql")).read().strip().rstrip(";")
keys = ("experiment, variant, user_id, impressions, clicks, sessions, round(session_seconds, 6), "
        "active_days, returned_7d, variants_seen")
where = "where experiment in ('ranking', 'aa', 'skewed')"
out["sql_rows"] = [list(r) for r in con.execute(
    f"select {keys} from ({sql}) {where} order by all").fetchall()]
out["table_rows"] = [list(r) for r in con.execute(
    f"select {keys} from kpi_users {where} order by all").fetchall()]
out["rows_compared"] = len(out["table_rows"])
print(json.dumps(out, default=str))

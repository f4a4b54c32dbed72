-- kpi_daily: per experiment, variant and UTC day, over the `kpi_events` table. An event id
-- seen twice counts once; events without variants are in no experiment's rows. This file is
-- the SQL `flashfit kpi-daily` runs (DataFusion, out of core) and the README shows analysts
-- (DuckDB: `set TimeZone = 'UTC'` first, so days are UTC days).
with exposed as (
  select event_id, user_id, type, ts, duration_s, value, unnest(variants) as v
  from kpi_events where variants is not null),
events as (
  select event_id, coalesce(v['experiment'], '') as experiment, coalesce(v['variant'], '') as variant,
         min(user_id) as user_id, min(type) as type, min(ts) as ts,
         min(duration_s) as duration_s, min(value) as value
  from exposed group by 1, 2, 3),
counts as (
  select experiment, variant, cast(ts as date) as day,
         count(*) filter (where type = 'impression') as impressions,
         count(*) filter (where type = 'click') as clicks,
         count(*) filter (where type = 'save') as saves,
         count(*) filter (where type = 'wear') as wears,
         count(*) filter (where type = 'conversion') as conversions,
         count(*) filter (where type = 'session_end') as sessions,
         coalesce(sum(duration_s) filter (where type = 'session_end'), 0) as session_s,
         count(*) filter (where type = 'rating') as ratings,
         coalesce(sum(value) filter (where type = 'rating'), 0) as rating_sum
  from events group by 1, 2, 3),
-- Distinct users need no event deduplication (a repeated event has the same user and day);
-- grouping (not count(distinct)) lets the grouping spill.
users as (
  select experiment, variant, day, count(*) as users
  from (select coalesce(v['experiment'], '') as experiment, coalesce(v['variant'], '') as variant,
               cast(ts as date) as day, user_id
        from exposed group by 1, 2, 3, 4)
  group by 1, 2, 3)
select c.experiment, c.variant, c.day, impressions, clicks,
       case when impressions > 0 then cast(clicks as double) / impressions end as ctr,
       saves, wears, conversions,
       case when impressions > 0 then cast(conversions as double) / impressions end as conversion_rate,
       sessions,
       case when sessions > 0 then session_s / sessions end as mean_session_duration_s,
       ratings,
       case when ratings > 0 then rating_sum / ratings end as mean_rating,
       u.users
from counts c join users u on c.experiment = u.experiment and c.variant = u.variant and c.day = u.day
order by c.experiment, c.variant, c.day;

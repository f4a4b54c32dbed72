-- kpi_users: per experiment, variant and user, over the `kpi_events` table and
-- `experiment_windows` (experiment, start_ts, end_ts: the configured windows; an experiment
-- without a row, or a null end, is open on that side). An event id seen twice counts once;
-- events outside their experiment's window are not attributed to it. first_exposure is the
-- user's first attributed event; returned_7d: an event on a later UTC day within 7 days of it.
-- variants_seen > 1 flags a user attributed to several variants of one experiment (the
-- readout leaves such users out). This file is the SQL `flashfit kpi-daily` and `flashfit ab
-- report` run (DataFusion, out of core) and the README shows analysts (DuckDB: `set TimeZone
-- = 'UTC'` first).
with exposed as (
  select event_id, user_id, type, ts, duration_s, value, unnest(variants) as v
  from kpi_events where variants is not null),
events as (
  select event_id, coalesce(v['experiment'], '') as experiment, coalesce(v['variant'], '') as variant,
         min(user_id) as user_id, min(type) as type, min(ts) as ts,
         min(duration_s) as duration_s, min(value) as value
  from exposed group by 1, 2, 3),
windowed as (
  select e.experiment, e.variant, e.user_id, e.type, e.ts, e.duration_s, e.value
  from events e left join experiment_windows w on e.experiment = w.experiment
  where (w.start_ts is null or e.ts >= w.start_ts) and (w.end_ts is null or e.ts < w.end_ts)),
per_user as (
  select experiment, variant, user_id, min(ts) as first_exposure,
         count(*) filter (where type = 'impression') as impressions,
         count(*) filter (where type = 'click') as clicks,
         count(*) filter (where type = 'save') as saves,
         count(*) filter (where type = 'wear') as wears,
         count(*) filter (where type = 'like') as likes,
         count(*) filter (where type = 'conversion') as conversions,
         count(*) filter (where type = 'session_end') as sessions,
         coalesce(sum(duration_s) filter (where type = 'session_end'), 0) as session_seconds,
         coalesce(sum(value) filter (where type = 'rating'), 0) as rating_sum,
         count(*) filter (where type = 'rating') as ratings
  from windowed group by 1, 2, 3),
-- Distinct days by grouping (not count(distinct)) so the grouping spills.
days as (
  select experiment, variant, user_id, count(*) as active_days
  from (select experiment, variant, user_id, cast(ts as date) as day from windowed group by 1, 2, 3, 4)
  group by 1, 2, 3),
returns as (
  select p.experiment, p.variant, p.user_id,
         max(case when cast(w.ts as date) > cast(p.first_exposure as date)
                   and w.ts <= p.first_exposure + interval '7 days' then 1 else 0 end) as returned
  from per_user p join windowed w
    on w.experiment = p.experiment and w.variant = p.variant and w.user_id = p.user_id
  group by 1, 2, 3)
select p.experiment, p.variant, p.user_id, p.first_exposure,
       p.impressions, p.clicks, p.saves, p.wears, p.likes, p.conversions,
       p.sessions, p.session_seconds, p.rating_sum, p.ratings,
       d.active_days, r.returned = 1 as returned_7d,
       count(*) over (partition by p.experiment, p.user_id) as variants_seen
from per_user p
join days d on d.experiment = p.experiment and d.variant = p.variant and d.user_id = p.user_id
join returns r on r.experiment = p.experiment and r.variant = p.variant and r.user_id = p.user_id
order by p.experiment, p.variant, p.user_id;

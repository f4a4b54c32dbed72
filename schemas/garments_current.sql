-- garments_current: one row per garment, the latest processing by its owner (the user of its
-- first processing; ties to the larger event_id), garments the owner deleted left out.
-- Over two tables: `garments` (the log) and `garment_deletes` (the tombstones). This file is the
-- SQL `flashfit reprocess` runs (DataFusion) and the README shows analysts (DuckDB); `flashfit
-- compact` applies the same rule (a test checks they agree).
with owned as (
  select *, first_value(user_id) over (partition by garment_id order by processed_at, event_id) as owner__
  from garments),
ranked as (
  select *, row_number() over (partition by garment_id order by processed_at desc, event_id desc) as rank__
  from owned where user_id = owner__)
select * exclude (owner__, rank__) from ranked r
where rank__ = 1
  and not exists (select 1 from garment_deletes d
                  where d.garment_id = r.garment_id and d.user_id = r.user_id);

//! The `kpi_daily` rollup of the `kpi_events` table ([`crate::kpi_events`]) (`flashfit kpi-daily`): per experiment, variant and day —
//! impressions, clicks, CTR, conversions, conversion rate, mean session duration, users.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::path::Path;

use crate::layout::ParquetUpload;
use crate::sql::{self, Limits};
use crate::table::Table;
use crate::{Error, Result};

/// The Arrow schema of `kpi_daily`.
pub fn daily_schema() -> SchemaRef {
    let f64_field = |n: &str| Field::new(n, DataType::Float64, true);
    let i64_field = |n: &str| Field::new(n, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
        i64_field("impressions"),
        i64_field("clicks"),
        f64_field("ctr"),
        i64_field("saves"),
        i64_field("wears"),
        i64_field("conversions"),
        f64_field("conversion_rate"),
        i64_field("sessions"),
        f64_field("mean_session_duration_s"),
        i64_field("ratings"),
        f64_field("mean_rating"),
        i64_field("users"),
    ]))
}

/// The Arrow schema of `kpi_users` (see `schemas/kpi_users.sql`).
pub fn users_schema() -> SchemaRef {
    let i64_field = |n: &str| Field::new(n, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        crate::columns::utc_time("first_exposure", false),
        i64_field("impressions"),
        i64_field("clicks"),
        i64_field("saves"),
        i64_field("wears"),
        i64_field("likes"),
        i64_field("conversions"),
        i64_field("sessions"),
        Field::new("session_seconds", DataType::Float64, false),
        Field::new("rating_sum", DataType::Float64, false),
        i64_field("ratings"),
        i64_field("active_days"),
        Field::new("returned_7d", DataType::Boolean, false),
        i64_field("variants_seen"),
    ]))
}

/// An experiment's window for attribution: events of `experiment` outside `[start, end)` are
/// not attributed to it (`None`: open on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub experiment: String,
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    pub end: Option<chrono::DateTime<chrono::Utc>>,
}

/// A session with `kpi_events` and the `experiment_windows` table registered.
pub async fn users_session(
    events: &Table,
    windows: &[Window],
    limits: &Limits,
) -> Result<datafusion::prelude::SessionContext> {
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    let ctx = sql::session(limits)?;
    sql::register(&ctx, "kpi_events", events).await?;
    let ts_field = |n: &str| crate::columns::utc_time(n, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        ts_field("start_ts"),
        ts_field("end_ts"),
    ]));
    let micros = |t: &Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_micros());
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                windows.iter().map(|w| w.experiment.as_str()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter(windows.iter().map(|w| micros(&w.start)))
                    .with_timezone("+00:00"),
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter(windows.iter().map(|w| micros(&w.end)))
                    .with_timezone("+00:00"),
            ),
        ],
    )
    .map_err(|e| Error::Query(e.to_string()))?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])
        .map_err(|e| Error::Query(e.to_string()))?;
    ctx.register_table("experiment_windows", Arc::new(table))
        .map_err(|e| Error::Query(e.to_string()))?;
    Ok(ctx)
}

/// Streams the `kpi_users` rows of `experiment` (all experiments: `None`) to `each`.
pub async fn users_of(
    events: &Table,
    windows: &[Window],
    experiment: Option<&str>,
    limits: &Limits,
    each: impl AsyncFnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let ctx = users_session(events, windows, limits).await?;
    let query = match experiment {
        Some(x) => format!(
            "select * from ({}) where experiment = '{}'",
            sql::KPI_USERS.trim().trim_end_matches(';'),
            x.replace('\'', "''")
        ),
        None => sql::KPI_USERS.to_owned(),
    };
    sql::for_each_batch(&ctx, &query, each).await
}

/// Rebuilds `<out>/kpi_users.parquet` from `kpi_events` ([`sql::KPI_USERS`]): one row per
/// experiment, variant and user, each experiment's events limited to its window. Out of core;
/// the file appears in one step. Returns the rows written.
pub async fn rollup_users(
    events: &Table,
    windows: &[Window],
    out: &Path,
    limits: &Limits,
) -> Result<(usize, String)> {
    let schema = users_schema();
    let path = out.clone().join("kpi_users.parquet");
    let mut upload = ParquetUpload::start(&*events.store, &path, schema.clone()).await?;
    let written = users_of(events, windows, None, limits, async |b| {
        upload.write(&conform_to(&b, &schema)?).await
    })
    .await;
    if let Err(e) = written {
        upload.abort().await;
        return Err(e);
    }
    Ok((upload.finish().await?, path.to_string()))
}

/// A query's batch cast to `schema`, column by name.
fn conform_to(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = b
                .column_by_name(f.name())
                .ok_or_else(|| Error::Query(format!("the query has no `{}`", f.name())))?;
            arrow::compute::cast(c, f.data_type()).map_err(|e| Error::Query(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Query(e.to_string()))
}

/// What a rollup read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    pub events: usize,
    /// Events counted once although their `event_id` appeared again.
    pub duplicates: usize,
    pub rows: usize,
    pub path: String,
    /// The `kpi_users` rows and file, when written in the same run.
    pub users: Option<(usize, String)>,
}

/// Rebuilds `<out>/kpi_daily.parquet` from the `kpi_events` table: one row per experiment,
/// variant and UTC day ([`sql::KPI_DAILY`]). Events are counted once per `event_id`; events
/// without variants are in `kpi_events` but in no experiment's rollup. Out of core with
/// [`Limits::default`]; the file is uploaded in parts and appears in one step.
pub async fn rollup_daily(events: &Table, out: &Path) -> Result<Rollup> {
    rollup_daily_with(events, out, &Limits::default()).await
}

/// [`rollup_daily`] within `limits` (the event-id deduplication and the grouping spill).
pub async fn rollup_daily_with(events: &Table, out: &Path, limits: &Limits) -> Result<Rollup> {
    let ctx = sql::session(limits)?;
    sql::register(&ctx, "kpi_events", events).await?;
    let counts = sql::strings(
        &ctx,
        "select (select count(*) from kpi_events) as total, \
         (select count(*) from (select event_id from kpi_events group by event_id)) as distinct_ids",
        &["total", "distinct_ids"],
    )
    .await?;
    let count = |i: usize| -> usize {
        counts
            .first()
            .and_then(|r| r.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (total, distinct) = (count(0), count(1));
    let schema = daily_schema();
    let path = out.clone().join("kpi_daily.parquet");
    let mut upload = ParquetUpload::start(&*events.store, &path, schema.clone()).await?;
    let written = sql::for_each_batch(&ctx, sql::KPI_DAILY, async |b| {
        upload.write(&conform_to(&b, &schema)?).await
    })
    .await;
    if let Err(e) = written {
        upload.abort().await;
        return Err(e);
    }
    let rows = upload.finish().await?;
    Ok(Rollup {
        events: distinct,
        duplicates: total - distinct,
        rows,
        path: path.to_string(),
        users: None,
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::{Value, json};

    use super::*;

    fn message(v: &Value) -> flashfit_runtime::Message {
        flashfit_runtime::Message {
            value: Some(serde_json::to_vec(v).expect("json").into()),
            ..Default::default()
        }
    }
    use crate::layout::KPI_EVENTS;
    use crate::table::Range;

    fn ev(id: &str, user: &str, kind: &str, ts: &str, variant: &str, extra: Value) -> Value {
        let mut v = json!({"event_id": id, "user_id": user, "type": kind, "ts": ts,
            "variants": {"outfit_scorer": variant, "colours": "x"}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[tokio::test]
    async fn the_daily_rollup_counts_each_event_once_per_experiment_variant_and_day() {
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
        let t = Table::new(store.clone(), Path::from("wh/kpi_events"), KPI_EVENTS);
        let day1 = "2026-11-22T10:00:00Z";
        let day2 = "2026-11-23T00:30:00+01:00"; // still the 22nd in UTC
        let day3 = "2026-11-23T09:00:00Z";
        let records = vec![
            ev("i1", "u1", "impression", day1, "control", json!({})),
            ev("i2", "u1", "impression", day2, "control", json!({})),
            ev("i3", "u2", "impression", day1, "control", json!({})),
            ev("i4", "u3", "impression", day1, "treatment", json!({})),
            ev("c1", "u1", "click", day1, "control", json!({})),
            ev("v1", "u2", "conversion", day1, "control", json!({})),
            ev(
                "s1",
                "u1",
                "session_end",
                day1,
                "control",
                json!({"duration_s": 30.0}),
            ),
            ev(
                "s2",
                "u2",
                "session_end",
                day1,
                "control",
                json!({"duration_s": 90.0}),
            ),
            ev("r1", "u2", "rating", day1, "control", json!({"value": 4.0})),
            ev("i5", "u1", "impression", day3, "control", json!({})),
            // The app published c1 twice: counted once.
            ev("c1", "u1", "click", day1, "control", json!({})),
        ];
        let rows: Vec<Value> = records
            .iter()
            .map(|r| KPI_EVENTS.convert(&message(r)).expect("row"))
            .collect();
        let range = Range {
            topic: "flashfit.kpi".into(),
            partition: 0,
            first: 0,
            last: rows.len() as i64 - 1,
        };
        t.write_range(&range, &rows).await.expect("write");
        // Bad events are refused: no duration on session_end, no value on rating.
        assert!(
            KPI_EVENTS
                .convert(&message(&ev("x", "u", "session_end", day1, "c", json!({}))))
                .is_err()
        );
        assert!(
            KPI_EVENTS
                .convert(&message(&ev("x", "u", "rating", day1, "c", json!({}))))
                .is_err()
        );

        let r = rollup_daily(&t, &Path::from("wh/kpi_daily"))
            .await
            .expect("rollup");
        assert_eq!((r.events, r.duplicates), (10, 1));
        // outfit_scorer: control on the 22nd and 23rd, treatment on the 22nd; colours: x on both.
        assert_eq!(r.rows, 5);
        let bytes = store
            .get(&Path::from(r.path.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("reader")
            .build()
            .expect("build")
            .next()
            .expect("batch")
            .expect("ok");
        let s = |n: &str| b.column_by_name(n).expect(n).as_string::<i32>().clone();
        let i = |n: &str| {
            b.column_by_name(n)
                .expect(n)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone()
        };
        let f = |n: &str| {
            b.column_by_name(n)
                .expect(n)
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone()
        };
        let row = (0..b.num_rows())
            .find(|&k| {
                s("experiment").value(k) == "outfit_scorer" && s("variant").value(k) == "control"
            })
            .expect("control row");
        // Day 22 (UTC) for control: impressions i1, i2, i3; click c1; conversion v1.
        assert_eq!(i("impressions").value(row), 3);
        assert_eq!(i("clicks").value(row), 1);
        assert!((f("ctr").value(row) - 1.0 / 3.0).abs() < 1e-9);
        assert!((f("conversion_rate").value(row) - 1.0 / 3.0).abs() < 1e-9);
        assert!((f("mean_session_duration_s").value(row) - 60.0).abs() < 1e-9);
        assert!((f("mean_rating").value(row) - 4.0).abs() < 1e-9);
        assert_eq!(i("users").value(row), 2);
    }
}

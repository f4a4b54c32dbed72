//! The `kpi_daily` rollup of the `kpi_events` table ([`crate::kpi_events`]) (`flashfit kpi-daily`): per experiment, variant and day —
//! impressions, clicks, CTR, conversions, conversion rate, mean session duration, users.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;

use crate::layout::{decode, parquet_of};
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

#[derive(Default)]
struct Acc {
    counts: BTreeMap<String, i64>,
    session_s: f64,
    rating_sum: f64,
    users: BTreeSet<String>,
}

/// What a rollup read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    pub events: usize,
    /// Events counted once although their `event_id` appeared again.
    pub duplicates: usize,
    pub rows: usize,
    pub path: String,
}

/// Rebuilds `<out>/kpi_daily.parquet` from the `kpi_events` table: one row per experiment,
/// variant and UTC day. Events are counted once per `event_id`; events without variants are
/// in `kpi_events` but in no experiment's rollup. Replaced in one put.
pub async fn rollup_daily(events: &Table, out: &Path) -> Result<Rollup> {
    let (_, batches) = crate::compact::read_log(events).await?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut duplicates = 0usize;
    let mut total = 0usize;
    let mut acc: BTreeMap<(String, String, i32), Acc> = BTreeMap::new();
    for b in &batches {
        let col = |n: &str| {
            b.column_by_name(n)
                .ok_or_else(|| Error::Parquet(format!("kpi_events has no `{n}`")))
        };
        let ids = col("event_id")?.as_string::<i32>();
        let users = col("user_id")?.as_string::<i32>();
        let kinds = col("type")?.as_string::<i32>();
        let ts = col("ts")?.as_primitive::<TimestampMicrosecondType>();
        let variants = col("variants")?.as_list::<i32>();
        let duration = col("duration_s")?.as_primitive::<arrow::datatypes::Float64Type>();
        let value = col("value")?.as_primitive::<arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            if !seen.insert(ids.value(i).to_owned()) {
                duplicates += 1;
                continue;
            }
            total += 1;
            let day = ts.value(i).div_euclid(86_400_000_000) as i32;
            if variants.is_null(i) {
                continue;
            }
            let vs = variants.value(i);
            let vs = vs.as_struct();
            let (exps, names) = (
                vs.column(0).as_string::<i32>(),
                vs.column(1).as_string::<i32>(),
            );
            for k in 0..vs.len() {
                let key = (exps.value(k).to_owned(), names.value(k).to_owned(), day);
                let a = acc.entry(key).or_default();
                let kind = kinds.value(i);
                *a.counts.entry(kind.to_owned()).or_default() += 1;
                a.users.insert(users.value(i).to_owned());
                if kind == "session_end" && !duration.is_null(i) {
                    a.session_s += duration.value(i);
                }
                if kind == "rating" && !value.is_null(i) {
                    a.rating_sum += value.value(i);
                }
            }
        }
    }
    let n = |a: &Acc, k: &str| a.counts.get(k).copied().unwrap_or(0);
    let ratio = |num: f64, den: i64| (den > 0).then(|| num / den as f64);
    let mut rows = Vec::new();
    for ((exp, variant, day), a) in &acc {
        let impressions = n(a, "impression");
        let sessions = n(a, "session_end");
        let ratings = n(a, "rating");
        rows.push(json!({
            "experiment": exp, "variant": variant, "day": day,
            "impressions": impressions, "clicks": n(a, "click"),
            "ctr": ratio(n(a, "click") as f64, impressions),
            "saves": n(a, "save"), "wears": n(a, "wear"), "conversions": n(a, "conversion"),
            "conversion_rate": ratio(n(a, "conversion") as f64, impressions),
            "sessions": sessions, "mean_session_duration_s": ratio(a.session_s, sessions),
            "ratings": ratings, "mean_rating": ratio(a.rating_sum, ratings),
            "users": a.users.len(),
        }));
    }
    let batch = decode(daily_schema(), &rows)?;
    let buf = parquet_of(&batch)?;
    let path = out.clone().join("kpi_daily.parquet");
    events
        .store
        .put(&path, PutPayload::from(Bytes::from(buf)))
        .await?;
    Ok(Rollup {
        events: total,
        duplicates,
        rows: batch.num_rows(),
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::Value;

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

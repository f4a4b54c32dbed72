//! The `kpi_events` table: one row per KPI event on `flashfit.kpi`, partitioned by the UTC day
//! of `ts`, written by `flashfit worker kpi` with the same replay-safe rules as `garments`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use flashfit_schema::{KpiEvent, format_ts};
use serde_json::{Value, json};

use crate::columns::{list_of, utc_time};
use crate::{Error, Result};

/// The Arrow schema of `kpi_events`.
pub fn schema() -> SchemaRef {
    let variant = DataType::Struct(Fields::from(vec![
        Field::new("experiment", DataType::Utf8, true),
        Field::new("variant", DataType::Utf8, true),
    ]));
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        utc_time("ts", false),
        list_of("variants", variant),
        Field::new("duration_s", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
        Field::new("outfit_id", DataType::Utf8, true),
        list_of("garment_ids", DataType::Utf8),
    ]))
}

/// The row of one KPI event (validated as the contract says).
pub fn row(payload: &[u8]) -> Result<Value> {
    let e = KpiEvent::from_json(payload).map_err(|e| Error::BadRecord(e.0))?;
    let variants: Vec<Value> = e
        .variants
        .iter()
        .map(|(x, v)| json!({"experiment": x, "variant": v}))
        .collect();
    Ok(json!({
        "event_id": e.event_id, "user_id": e.user_id, "type": e.kind.as_str(),
        "ts": format_ts(e.ts), "variants": variants, "duration_s": e.duration_s,
        "value": e.value, "outfit_id": e.outfit_id, "garment_ids": e.garment_ids,
    }))
}

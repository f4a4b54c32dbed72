//! The `garment_deletes` table: one tombstone row per delete event on `flashfit.deletes`
//! (`event_id`, `garment_id`, `user_id`, `deleted_at`), partitioned by the UTC day of
//! `deleted_at`. `garments_current` leaves every garment named here out: deletion is final.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use flashfit_schema::{DeleteEvent, format_ts};
use serde_json::{Value, json};

use crate::columns::utc_time;
use crate::{Error, Result};

/// The Arrow schema of the `garment_deletes` table.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("garment_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        utc_time("deleted_at", false),
    ]))
}

/// The tombstone row of one delete event (validated as the contract says).
pub fn row(payload: &[u8]) -> Result<Value> {
    let d = DeleteEvent::from_json(payload).map_err(|e| Error::BadRecord(e.0))?;
    Ok(json!({
        "event_id": d.event_id,
        "garment_id": d.garment_id,
        "user_id": d.user_id,
        "deleted_at": format_ts(d.deleted_at),
    }))
}

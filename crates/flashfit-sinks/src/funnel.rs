//! The funnel tables (issue 14): `statuses` (every record of `flashfit.status`),
//! `dead_letters` (every record of every `flashfit.dlq.<stage>`, its reason from the headers)
//! and `feedback_events` (every record of `flashfit.feedback`), so the upload funnel and the
//! feedback history are queryable next to `garments` and `kpi_events`. Written by the parquet
//! worker with the same replay-safe writer, each from its own consumer group.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use flashfit_runtime::Message;
use flashfit_schema::{FeedbackEvent, StatusEvent, format_ts, headers};
use serde_json::{Value, json};

use crate::columns::{list_of, utc_time, utf8};
use crate::{Error, Result};

/// How much of a dead letter's value the table keeps, as text.
pub const VALUE_HEAD_BYTES: usize = 1024;

/// The Arrow schema of `statuses`.
pub fn statuses_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("event_id", true),
        utf8("garment_id", true),
        utf8("user_id", true),
        utf8("status", false),
        utf8("stage", false),
        list_of("reasons", DataType::Utf8),
        list_of("warnings", DataType::Utf8),
        utf8("message", true),
        utc_time("ts", false),
    ]))
}

/// The row of one status event.
pub fn status_row(m: &Message) -> Result<Value> {
    let s: StatusEvent = serde_json::from_slice(m.payload())
        .map_err(|e| Error::BadRecord(format!("invalid status event: {e}")))?;
    Ok(json!({
        "event_id": s.event_id, "garment_id": s.garment_id, "user_id": s.user_id,
        "status": s.status.as_str(), "stage": s.stage,
        "reasons": s.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "warnings": s.warnings, "message": s.message, "ts": format_ts(s.ts),
    }))
}

/// The Arrow schema of `feedback_events`.
pub fn feedback_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("event_id", false),
        utf8("user_id", false),
        utf8("signal", false),
        list_of("garment_ids", DataType::Utf8),
        utf8("outfit_id", true),
        utc_time("ts", false),
    ]))
}

/// The row of one feedback event (validated as the contract says).
pub fn feedback_row(m: &Message) -> Result<Value> {
    let f = FeedbackEvent::from_json(m.payload()).map_err(|e| Error::BadRecord(e.0))?;
    Ok(json!({
        "event_id": f.event_id, "user_id": f.user_id, "signal": f.signal.as_str(),
        "garment_ids": f.garment_ids, "outfit_id": f.outfit_id, "ts": format_ts(f.ts),
    }))
}

/// The Arrow schema of `dead_letters`.
pub fn dead_letters_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("stage", true),
        utf8("reason", true),
        utf8("source_topic", true),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_offset", DataType::Int64, true),
        utf8("message", true),
        utf8("worker_version", true),
        utf8("dlq_topic", false),
        Field::new("dlq_partition", DataType::Int32, false),
        Field::new("dlq_offset", DataType::Int64, false),
        utf8("key", true),
        utf8("value_head", true),
        Field::new("value_bytes", DataType::Int64, false),
        utc_time("time", false),
    ]))
}

/// The row of one dead letter: its headers, where it sits, and its value's first KiB as text.
/// `time` is the dead letter's broker timestamp, so a replay writes the same row.
pub fn dead_letter_row(m: &Message) -> Result<Value> {
    let ms = m
        .timestamp_ms
        .ok_or_else(|| Error::BadRecord("dead letter without a timestamp".into()))?;
    let at = chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Error::BadRecord(format!("timestamp {ms} out of range")))?;
    let value = m.payload();
    let head = String::from_utf8_lossy(&value[..value.len().min(VALUE_HEAD_BYTES)]).into_owned();
    let num = |name: &str| m.header(name).and_then(|v| v.parse::<i64>().ok());
    Ok(json!({
        "stage": m.header(headers::STAGE), "reason": m.header(headers::ERROR_KIND),
        "source_topic": m.header(headers::SOURCE_TOPIC),
        "source_partition": num(headers::SOURCE_PARTITION),
        "source_offset": num(headers::SOURCE_OFFSET),
        "message": m.header(headers::ERROR_MESSAGE),
        "worker_version": m.header(headers::WORKER_VERSION),
        "dlq_topic": &*m.topic, "dlq_partition": m.partition, "dlq_offset": m.offset,
        "key": m.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "value_head": head, "value_bytes": value.len(),
        "time": format_ts(at),
    }))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::layout::{DEAD_LETTERS, FEEDBACK_EVENTS, STATUSES};

    fn msg(topic: &str, value: &[u8]) -> Message {
        Message {
            first_seen: None,
            topic: topic.into(),
            partition: 1,
            offset: 7,
            key: Some(Bytes::from_static(b"g1")),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            timestamp_ms: Some(1_764_806_400_000),
        }
    }

    #[test]
    fn funnel_rows_have_the_contract_columns_and_encode() {
        let status = StatusEvent::failed_from_raw(
            br#"{"event_id":"e1","garment_id":"g1","user_id":"u1"}"#,
            "quality",
            flashfit_schema::Reason::NotFound,
            "no such object",
        );
        let row = STATUSES
            .convert(&msg("flashfit.status", &status.to_json()))
            .expect("status row");
        assert_eq!(row["status"], "failed");
        assert_eq!(row["reasons"], json!(["not_found"]));
        assert_eq!(STATUSES.dt(&row).expect("dt").len(), 10);

        let fb = br#"{"event_id":"f1","user_id":"u1","signal":"like","garment_ids":["g1"],
            "ts":"2026-12-03T10:00:00Z"}"#;
        let row = FEEDBACK_EVENTS
            .convert(&msg("flashfit.feedback", fb))
            .expect("feedback row");
        assert_eq!(
            (&row["signal"], &row["garment_ids"]),
            (&json!("like"), &json!(["g1"]))
        );
        assert!(
            FEEDBACK_EVENTS
                .convert(&msg("flashfit.feedback", b"{}"))
                .is_err()
        );

        // A dead letter: headers become columns; a long, non-UTF-8 value keeps its first KiB.
        let mut value = vec![b'x'; 3000];
        value[0] = 0xff;
        let mut m = msg("flashfit.dlq.detect", &value);
        for (k, v) in [
            (headers::STAGE, "detect"),
            (headers::ERROR_KIND, "undecodable"),
            (headers::SOURCE_TOPIC, "flashfit.quality"),
            (headers::SOURCE_PARTITION, "2"),
            (headers::SOURCE_OFFSET, "41"),
            (headers::ERROR_MESSAGE, "not an image"),
            (headers::WORKER_VERSION, "0.1.0"),
        ] {
            m.headers.push((k.to_owned(), Bytes::from(v)));
        }
        let row = DEAD_LETTERS.convert(&m).expect("dead letter row");
        assert_eq!(row["reason"], "undecodable");
        assert_eq!(
            (
                row["source_partition"].as_i64(),
                row["source_offset"].as_i64()
            ),
            (Some(2), Some(41))
        );
        assert_eq!(row["value_bytes"], 3000);
        let head = row["value_head"].as_str().expect("head");
        assert!(head.starts_with('\u{fffd}') && head.chars().count() == VALUE_HEAD_BYTES);
        assert_eq!(row["time"], "2025-12-04T00:00:00.000Z");
        m.timestamp_ms = None;
        assert!(DEAD_LETTERS.convert(&m).is_err());
    }

    /// `schemas/funnel.md` documents each table's columns in order: kept equal to the schemas.
    #[test]
    fn the_documented_funnel_schemas_match_the_arrow_schemas() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/funnel.md"),
        )
        .expect("doc");
        for layout in [STATUSES, DEAD_LETTERS, FEEDBACK_EVENTS] {
            let section = doc
                .split("\n## `")
                .find(|s| s.starts_with(&format!("{}`", layout.name)))
                .unwrap_or_else(|| panic!("no section for {}", layout.name));
            let documented = crate::table::tests::documented_columns(section);
            let actual: Vec<String> = (layout.schema)()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(documented, actual, "{}", layout.name);
        }
    }
}

//! The `kpi_events` table: one row per KPI event on `flashfit.kpi`, partitioned by the UTC day
//! of `ts`, written by `flashfit worker kpi` with the same replay-safe rules as `garments`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use flashfit_config::Experiment;
use flashfit_outfits::experiments;
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
        Field::new("rank", DataType::Int32, true),
        Field::new("score", DataType::Float64, true),
        Field::new("scorer", DataType::Utf8, true),
        list_of("model_versions", DataType::Utf8),
        Field::new("experiments_hash", DataType::Utf8, true),
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
        "rank": e.rank, "score": e.score, "scorer": e.scorer,
        "model_versions": e.model_versions, "experiments_hash": e.experiments_hash,
    }))
}

/// What `flashfit worker kpi` does to a row before writing it: `variants` become the user's
/// variants in the experiments whose window holds its `ts`, recomputed from the assignment (a
/// pure function of the config and the user) whatever the event claimed, so no client can
/// place itself in an arm; `experiments_hash` names the config that assigned them. Each
/// claimed variant that differs is counted in `flashfit_kpi_variant_mismatches_total` (by
/// experiment; `unknown` for one the config does not define). Returns those experiments.
pub fn attribute(
    row: &mut Value,
    experiments: &BTreeMap<String, Experiment>,
    hash: &str,
) -> Vec<String> {
    let (Some(user), Some(ts)) = (row["user_id"].as_str(), row["ts"].as_str()) else {
        return Vec::new();
    };
    let Ok(ts) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return Vec::new();
    };
    let assigned = experiments::variants_at(experiments, user, ts.with_timezone(&chrono::Utc));
    let mut mismatched = Vec::new();
    for claim in row["variants"].as_array().into_iter().flatten() {
        let (Some(x), Some(v)) = (claim["experiment"].as_str(), claim["variant"].as_str()) else {
            continue;
        };
        if assigned.get(x).map(String::as_str) != Some(v) {
            let label = if experiments.contains_key(x) {
                x
            } else {
                "unknown"
            };
            flashfit_runtime::metrics::kpi_variant_mismatch(label);
            mismatched.push(label.to_owned());
        }
    }
    row["variants"] = Value::Array(
        assigned
            .iter()
            .map(|(x, v)| json!({"experiment": x, "variant": v}))
            .collect(),
    );
    row["experiments_hash"] = json!(hash);
    mismatched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiments() -> BTreeMap<String, Experiment> {
        let mut all = flashfit_config::default_experiments();
        let mut later = all["outfit_scorer"].clone();
        later.start = Some("2026-12-01T00:00:00Z".into());
        all.insert("later".into(), later);
        all
    }

    #[test]
    fn events_without_variants_get_the_users_variants_in_the_running_experiments() {
        let all = experiments();
        let event = |ts: &str, variants: Value| {
            row(
                &serde_json::to_vec(&json!({"event_id": "e", "user_id": "u1",
                "type": "session_end", "duration_s": 10.0, "ts": ts, "variants": variants}))
                .expect("json"),
            )
            .expect("row")
        };
        let mut r = event("2026-11-30T12:00:00Z", json!({}));
        attribute(&mut r, &all, "h1");
        assert_eq!(
            r["variants"],
            json!([{"experiment": "outfit_scorer", "variant": "control"}]),
            "`later` had not started"
        );
        assert_eq!(r["experiments_hash"], "h1");
        let mut r = event("2026-12-02T12:00:00Z", json!({}));
        attribute(&mut r, &all, "h1");
        assert_eq!(r["variants"].as_array().map(Vec::len), Some(2));
        // A claimed variant is replaced by the assignment, and counted when it differs: a
        // client cannot put itself in an arm, nor in an experiment the config lacks.
        let mut r = event(
            "2026-12-02T12:00:00Z",
            json!({"outfit_scorer": "b", "later": "control", "made_up": "x"}),
        );
        let mismatched = attribute(&mut r, &all, "h1");
        let ts = chrono::DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").expect("ts");
        let assigned = experiments::variants_at(&all, "u1", ts.with_timezone(&chrono::Utc));
        assert_eq!(assigned.len(), 2);
        let expected: Vec<Value> = assigned
            .iter()
            .map(|(x, v)| json!({"experiment": x, "variant": v}))
            .collect();
        assert_eq!(r["variants"], Value::Array(expected));
        let mut want = Vec::new();
        if assigned["later"] != "control" {
            want.push("later");
        }
        if assigned["outfit_scorer"] != "b" {
            want.push("outfit_scorer");
        }
        want.push("unknown");
        let mut mismatched = mismatched;
        mismatched.sort();
        assert_eq!(mismatched, want);
        assert_eq!(r["experiments_hash"], "h1");
        let text = flashfit_runtime::Metrics::new().encode();
        assert!(
            text.contains("flashfit_kpi_variant_mismatches_total{experiment=\"unknown\"}"),
            "{text}"
        );
        crate::layout::KPI_EVENTS
            .batch(std::slice::from_ref(&r))
            .expect("still a valid row");
    }
}

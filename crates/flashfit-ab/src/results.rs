//! The `ab_results` table: one row per experiment, variant, metric and readout day, so
//! dashboards chart how a readout evolves. A day's readout replaces that day's file
//! (`<table>/<experiment>/<YYYY-MM-DD>.parquet`, one atomic put): rerunning a report the same
//! day leaves one set of rows, the latest.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

use crate::report::Report;
use crate::{Error, Result};

/// The Arrow schema of `ab_results`.
pub fn schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let time = |n: &str, nullable| flashfit_sinks::columns::utc_time(n, nullable);
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
        time("computed_at", false),
        time("window_start", true),
        time("window_end", true),
        Field::new("experiments_hash", DataType::Utf8, false),
        Field::new("is_control", DataType::Boolean, false),
        Field::new("users", DataType::Int64, false),
        Field::new("n", DataType::Int64, false),
        f("value"),
        f("ci_low"),
        f("ci_high"),
        f("control_value"),
        f("abs_lift"),
        f("abs_lift_ci_low"),
        f("abs_lift_ci_high"),
        f("rel_lift"),
        f("rel_lift_ci_low"),
        f("rel_lift_ci_high"),
        f("p_value"),
        f("mde"),
        Field::new("test", DataType::Utf8, true),
        Field::new("verdict", DataType::Utf8, true),
        Field::new("guardrails", DataType::Utf8, true),
        f("srm_p_value"),
        Field::new("srm_mismatch", DataType::Boolean, false),
    ]))
}

/// NaN and infinities are nulls in the table.
fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// The rows of one readout.
pub fn rows(report: &Report) -> Vec<Value> {
    let day = report.computed_at.get(..10).unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for v in &report.variants {
        for (m, (n, val)) in &v.metrics {
            let mut row = json!({
                "experiment": report.experiment, "variant": v.variant, "metric": m.as_str(),
                "day": day, "computed_at": report.computed_at,
                "window_start": report.from, "window_end": report.to,
                "experiments_hash": report.experiments_hash,
                "is_control": v.variant == report.control, "users": v.users, "n": n,
                "value": num(val.value), "ci_low": num(val.ci_low), "ci_high": num(val.ci_high),
                "srm_p_value": num(report.srm.p_value), "srm_mismatch": report.srm.mismatch,
            });
            if let Some(c) = report.comparison(&v.variant, *m) {
                let guards: Vec<String> = c
                    .guardrails
                    .iter()
                    .map(|g| format!("{}: {}", g.guardrail, if g.pass { "pass" } else { "fail" }))
                    .collect();
                let extra = json!({
                    "control_value": num(c.control),
                    "abs_lift": num(c.abs_lift.value), "abs_lift_ci_low": num(c.abs_lift.ci_low),
                    "abs_lift_ci_high": num(c.abs_lift.ci_high),
                    "rel_lift": num(c.rel_lift.value), "rel_lift_ci_low": num(c.rel_lift.ci_low),
                    "rel_lift_ci_high": num(c.rel_lift.ci_high),
                    "p_value": num(c.p_value), "mde": num(c.mde), "test": c.test,
                    "verdict": c.verdict.as_str(),
                    "guardrails": (!guards.is_empty()).then(|| guards.join("; ")),
                });
                if let (Some(r), Some(e)) = (row.as_object_mut(), extra.as_object()) {
                    r.extend(e.clone());
                }
            }
            out.push(row);
        }
    }
    out
}

/// Writes the readout to `<table>/<experiment>/<day>.parquet` under `store`; returns the
/// path.
pub async fn write(store: &dyn ObjectStore, table: &Path, report: &Report) -> Result<Path> {
    let rows = rows(report);
    let batch =
        flashfit_sinks::layout::decode(schema(), &rows).map_err(|e| Error::Data(e.to_string()))?;
    let bytes =
        flashfit_sinks::layout::parquet_of(&batch).map_err(|e| Error::Data(e.to_string()))?;
    let day = report.computed_at.get(..10).unwrap_or("unknown");
    let path = table
        .clone()
        .join(report.experiment.as_str())
        .join(format!("{day}.parquet"));
    store
        .put(&path, bytes.into())
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    Ok(path)
}

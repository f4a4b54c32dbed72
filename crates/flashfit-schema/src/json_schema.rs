//! The JSON Schemas of every topic, derived from the types (`schemars`, draft 2020-12). The
//! files in `schemas/` are these, written by `FLASHFIT_BLESS=1 cargo test -p flashfit-schema`
//! and compared by the same test on every run; the end-to-end suite validates the records it
//! reads from every topic against the files (`tests/validate_records.py`).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record::GarmentRecord;
use crate::{DeleteEvent, FeedbackEvent, KpiEvent, Reason, StatusEvent, UploadEvent, topics};

/// The headers of a dead-letter record (topics flashfit.dlq.STAGE). Key and value are the
/// original message's bytes, unchanged; the reason travels in these headers (UTF-8 values).
/// Redrive: fix the cause, then republish key and value to flashfit.source.topic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Dead-letter record headers (topics flashfit.dlq.STAGE)")]
pub struct DeadLetterHeaders {
    /// The reason, a name from flashfit.status.
    #[serde(rename = "flashfit.error.kind")]
    pub kind: Reason,
    /// What went wrong, for a person.
    #[serde(rename = "flashfit.error.message")]
    pub message: String,
    #[serde(rename = "flashfit.source.topic")]
    pub source_topic: String,
    #[serde(rename = "flashfit.source.partition")]
    #[schemars(regex(pattern = r"^[0-9]+$"))]
    pub source_partition: String,
    #[serde(rename = "flashfit.source.offset")]
    #[schemars(regex(pattern = r"^[0-9]+$"))]
    pub source_offset: String,
    /// The stage that dead-lettered the message.
    #[serde(rename = "flashfit.stage")]
    pub stage: String,
    #[serde(rename = "flashfit.worker.version")]
    pub worker_version: String,
}

fn schema_of<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// Every topic's schema: `(file name in schemas/, schema)`, in a stable order.
pub fn all() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut put = |topic: &str, schema: Schema, title: Option<&str>, required: &[&str]| {
        let mut v = schema.to_value();
        unwrap_descriptions(&mut v);
        let obj = v.as_object_mut().expect("a root schema is an object");
        obj.insert("$id".into(), json!(topic));
        if let Some(t) = title {
            obj.insert("title".into(), json!(t));
        }
        if !required.is_empty() {
            let req = obj
                .entry("required")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("required is an array");
            for r in required {
                if !req.iter().any(|x| x == r) {
                    req.push(json!(r));
                }
            }
        }
        out.push((format!("{topic}.json"), v));
    };
    put(topics::UPLOADS, schema_of::<UploadEvent>(), None, &[]);
    // Each topic requires what its stage adds (and the quality object every record has):
    // a pipeline may skip stages (`pipelines/*.toml`), so earlier objects are optional.
    let stages: [(&str, &str, &[&str]); 5] = [
        (topics::QUALITY, "quality", &["quality"]),
        (
            "flashfit.detected",
            "detect",
            &["quality", "detection", "models"],
        ),
        (
            "flashfit.classified",
            "classify",
            &["quality", "classification", "models"],
        ),
        (
            "flashfit.tagged",
            "attributes",
            &["quality", "attributes", "models"],
        ),
        (
            "flashfit.embedded",
            "embed",
            &["quality", "embedding", "models"],
        ),
    ];
    for (topic, stage, required) in stages {
        let title = format!("Garment record after the {stage} stage (topic {topic})");
        put(topic, schema_of::<GarmentRecord>(), Some(&title), required);
    }
    put(topics::STATUS, schema_of::<StatusEvent>(), None, &[]);
    put(topics::DELETES, schema_of::<DeleteEvent>(), None, &[]);
    put(topics::FEEDBACK, schema_of::<FeedbackEvent>(), None, &[]);
    put(topics::KPI, schema_of::<KpiEvent>(), None, &[]);
    put("flashfit.dlq", schema_of::<DeadLetterHeaders>(), None, &[]);
    out
}

/// Doc comments arrive with their line breaks: a description is one paragraph per blank line.
fn unwrap_descriptions(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if k == "description" => {
                        *s = s
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The text of a schema file: pretty JSON and a final newline.
pub fn file_text(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

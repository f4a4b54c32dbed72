//! The `garments` table: one flat row per processed garment, columns named as the contract
//! says (`schemas/garments.md`), built from the enriched record on `flashfit.embedded`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::{Value, json};

use crate::{Error, Result};

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        true,
    )
}

fn bbox_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("x1", DataType::Float32, true),
        Field::new("y1", DataType::Float32, true),
        Field::new("x2", DataType::Float32, true),
        Field::new("y2", DataType::Float32, true),
    ]))
}

/// The Arrow schema of the `garments` table (the contract: names, order and types).
pub fn schema() -> SchemaRef {
    let detection = DataType::Struct(Fields::from(vec![
        utf8("class", true),
        Field::new("confidence", DataType::Float32, true),
        Field::new("bbox", bbox_type(), true),
        utf8("model", true),
        utf8("role", true),
    ]));
    let topk = DataType::Struct(Fields::from(vec![
        utf8("name", true),
        Field::new("confidence", DataType::Float32, true),
    ]));
    let colour = DataType::Struct(Fields::from(vec![
        utf8("name", true),
        Field::new(
            "rgb",
            DataType::Struct(Fields::from(vec![
                Field::new("r", DataType::Int32, true),
                Field::new("g", DataType::Int32, true),
                Field::new("b", DataType::Int32, true),
            ])),
            true,
        ),
        Field::new("share", DataType::Float32, true),
    ]));
    let model = DataType::Struct(Fields::from(vec![
        utf8("stage", true),
        utf8("name", true),
        utf8("version", true),
    ]));
    Arc::new(Schema::new(vec![
        utf8("event_id", false),
        utf8("garment_id", false),
        utf8("user_id", false),
        utf8("image_uri", false),
        utf8("status", false),
        Field::new("width", DataType::Int32, true),
        Field::new("height", DataType::Int32, true),
        Field::new("blur_score", DataType::Float64, true),
        Field::new("brightness", DataType::Float64, true),
        list_of("quality_warnings", DataType::Utf8),
        utf8("detection_class", true),
        Field::new("detection_confidence", DataType::Float32, true),
        Field::new("bbox", bbox_type(), true),
        utf8("detection_source", true),
        list_of("detections", detection),
        utf8("category", true),
        Field::new("category_confidence", DataType::Float32, true),
        list_of("category_topk", topk),
        Field::new("is_clothing", DataType::Float32, true),
        utf8("color_primary", true),
        utf8("color_secondary", true),
        list_of("colors", colour),
        utf8("pattern", true),
        utf8("fit", true),
        Field::new("formality", DataType::Float32, true),
        list_of("seasons", DataType::Utf8),
        list_of("style_tags", DataType::Utf8),
        utf8("caption", true),
        list_of("models", model),
        Field::new(
            "processed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]))
}

fn bbox(v: &Value) -> Value {
    match v.as_array().map(Vec::as_slice) {
        Some([x1, y1, x2, y2]) => json!({"x1": x1, "y1": y1, "x2": x2, "y2": y2}),
        _ => Value::Null,
    }
}

fn text(v: &Value, field: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::BadRecord(format!("record has no `{field}`")))
}

/// The table row for one enriched record (as JSON, for Arrow's JSON decoder). `processed_at`
/// comes from the record (stamped by the pipeline's last stage), so rewriting a row from the
/// same record gives the same bytes.
pub fn row(r: &Value) -> Result<Value> {
    let q = &r["quality"];
    let d = &r["detection"];
    let c = &r["classification"];
    let a = &r["attributes"];
    let processed_at = text(r, "processed_at")?;
    chrono::DateTime::parse_from_rfc3339(&processed_at)
        .map_err(|e| Error::BadRecord(format!("processed_at `{processed_at}`: {e}")))?;
    let detections: Vec<Value> = d["all"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|x| {
                    json!({"class": x["class"], "confidence": x["confidence"], "bbox": bbox(&x["bbox"]),
                           "model": x["model"], "role": x["role"]})
                })
                .collect()
        })
        .unwrap_or_default();
    let topk: Vec<Value> = c["topk"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|x| json!({"name": x["category"], "confidence": x["confidence"]}))
                .collect()
        })
        .unwrap_or_default();
    let colors: Vec<Value> = a["colors"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|x| {
                    let rgb = match x["rgb"].as_array().map(Vec::as_slice) {
                        Some([r, g, b]) => json!({"r": r, "g": g, "b": b}),
                        _ => Value::Null,
                    };
                    json!({"name": x["name"], "rgb": rgb, "share": x["share"]})
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "event_id": text(r, "event_id")?,
        "garment_id": text(r, "garment_id")?,
        "user_id": text(r, "user_id")?,
        "image_uri": text(r, "image_uri")?,
        "status": "processed",
        "width": q["width"], "height": q["height"],
        "blur_score": q["blur_score"], "brightness": q["brightness"],
        "quality_warnings": q["warnings"].as_array().cloned().unwrap_or_default(),
        "detection_class": d["class"], "detection_confidence": d["confidence"],
        "bbox": bbox(&d["bbox"]), "detection_source": d["source"], "detections": detections,
        "category": c["category"], "category_confidence": c["confidence"],
        "category_topk": topk, "is_clothing": c["is_clothing"],
        "color_primary": a["color_primary"], "color_secondary": a["color_secondary"],
        "colors": colors, "pattern": a["pattern"], "fit": a["fit"], "formality": a["formality"],
        "seasons": a["seasons"].as_array().cloned().unwrap_or_default(),
        "style_tags": a["style_tags"].as_array().cloned().unwrap_or_default(),
        "caption": r["embedding"]["caption"],
        "models": r["models"].as_array().cloned().unwrap_or_default(),
        "processed_at": processed_at,
    }))
}

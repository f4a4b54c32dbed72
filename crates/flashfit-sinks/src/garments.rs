//! The `garments` table: one flat row per processed garment, columns named as the contract
//! says (`schemas/garments.md`), built from the garment record on the pipeline's last topic (`flashfit.embedded`).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use flashfit_schema::record::{DetectionSource, ModelRef, Role};
use flashfit_schema::{GarmentRecord, Warning, format_ts};
use serde::Serialize;
use serde_json::Value;

use crate::columns::{list_of, utc_time, utf8};
use crate::{Error, Result};

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
        utc_time("processed_at", false),
        utf8("outfit_id", true),
        utf8("outfit_item", true),
    ]))
}

/// A box as the table's struct column.
#[derive(Serialize)]
struct BBox {
    x1: f32,
    y1: f32,
    x2: f32,
    y2: f32,
}

impl From<[f32; 4]> for BBox {
    fn from([x1, y1, x2, y2]: [f32; 4]) -> Self {
        BBox { x1, y1, x2, y2 }
    }
}

#[derive(Serialize)]
struct DetectionRow<'a> {
    class: &'a str,
    confidence: f32,
    bbox: BBox,
    model: &'a str,
    role: Role,
}

#[derive(Serialize)]
struct TopK<'a> {
    name: &'a str,
    confidence: f32,
}

#[derive(Serialize)]
struct Rgb {
    r: u8,
    g: u8,
    b: u8,
}

#[derive(Serialize)]
struct ColourRow<'a> {
    name: &'a str,
    rgb: Rgb,
    share: f32,
}

/// One row of [`schema`], column for column.
#[derive(Serialize)]
struct Row<'a> {
    event_id: &'a str,
    garment_id: &'a str,
    user_id: &'a str,
    image_uri: &'a str,
    status: &'static str,
    width: Option<u32>,
    height: Option<u32>,
    blur_score: Option<f64>,
    brightness: Option<f64>,
    quality_warnings: &'a [Warning],
    detection_class: Option<&'a str>,
    detection_confidence: Option<f32>,
    bbox: Option<BBox>,
    detection_source: Option<DetectionSource>,
    detections: Vec<DetectionRow<'a>>,
    category: Option<&'a str>,
    category_confidence: Option<f32>,
    category_topk: Vec<TopK<'a>>,
    is_clothing: Option<f32>,
    color_primary: Option<&'a str>,
    color_secondary: Option<&'a str>,
    colors: Vec<ColourRow<'a>>,
    pattern: Option<&'a str>,
    fit: Option<&'a str>,
    formality: Option<f32>,
    seasons: &'a [String],
    style_tags: &'a [String],
    caption: Option<&'a str>,
    models: &'a [ModelRef],
    processed_at: String,
    /// For a garment of a split outfit upload: the upload's garment id and the item.
    outfit_id: Option<&'a str>,
    outfit_item: Option<&'a str>,
}

/// The table row of one message of the pipeline's last topic.
pub fn row(payload: &[u8]) -> Result<Value> {
    let r = GarmentRecord::from_json(payload).map_err(|e| Error::BadRecord(e.0))?;
    row_of(&r)
}

/// The table row for one enriched record (as JSON, for Arrow's JSON decoder). `processed_at`
/// comes from the record (stamped by the pipeline's last stage), so rewriting a row from the
/// same record gives the same bytes.
pub fn row_of(r: &GarmentRecord) -> Result<Value> {
    let processed_at = r
        .processed_at
        .map(format_ts)
        .ok_or_else(|| Error::BadRecord("record has no `processed_at`".into()))?;
    let q = r.quality.as_ref();
    let d = r.detection.as_ref();
    let c = r.classification.as_ref();
    let a = r.attributes.as_ref();
    let none: &[String] = &[];
    let row = Row {
        event_id: &r.upload.event_id,
        garment_id: &r.upload.garment_id,
        user_id: &r.upload.user_id,
        image_uri: &r.upload.image_uri,
        status: "processed",
        width: q.map(|q| q.width),
        height: q.map(|q| q.height),
        blur_score: q.map(|q| q.blur_score),
        brightness: q.map(|q| q.brightness),
        quality_warnings: q.map_or(&[], |q| q.warnings.as_slice()),
        detection_class: d.map(|d| d.class.as_str()),
        detection_confidence: d.and_then(|d| d.confidence),
        bbox: d.map(|d| d.bbox.into()),
        detection_source: d.map(|d| d.source),
        detections: d
            .map(|d| {
                d.all
                    .iter()
                    .map(|x| DetectionRow {
                        class: &x.class,
                        confidence: x.confidence,
                        bbox: x.bbox.into(),
                        model: &x.model,
                        role: x.role,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        category: c.map(|c| c.category.as_str()),
        category_confidence: c.map(|c| c.confidence),
        category_topk: c
            .map(|c| {
                c.topk
                    .iter()
                    .map(|t| TopK {
                        name: &t.category,
                        confidence: t.confidence,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        is_clothing: c.map(|c| c.is_clothing),
        color_primary: a.and_then(|a| a.color_primary.as_deref()),
        color_secondary: a.and_then(|a| a.color_secondary.as_deref()),
        colors: a
            .map(|a| {
                a.colors
                    .iter()
                    .map(|x| ColourRow {
                        name: &x.name,
                        rgb: Rgb {
                            r: x.rgb[0],
                            g: x.rgb[1],
                            b: x.rgb[2],
                        },
                        share: x.share,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        pattern: a.map(|a| a.pattern.as_str()),
        fit: a.map(|a| a.fit.as_str()),
        formality: a.map(|a| a.formality),
        seasons: a.map_or(none, |a| a.seasons.as_slice()),
        style_tags: a.map_or(none, |a| a.style_tags.as_slice()),
        caption: r.embedding.as_ref().map(|e| e.caption.as_str()),
        models: &r.models,
        processed_at,
        outfit_id: r.outfit.as_ref().map(|o| o.garment_id.as_str()),
        outfit_item: r.outfit.as_ref().map(|o| o.item.as_str()),
    };
    serde_json::to_value(row).map_err(|e| Error::BadRecord(e.to_string()))
}

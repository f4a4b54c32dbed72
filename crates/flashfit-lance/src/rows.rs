//! The LanceDB `garments` row (from an enriched record on `flashfit.embedded`) and the
//! `garment_deletes` tombstone row (from a delete event on `flashfit.deletes`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListBuilder, Float32Array, Float32Builder, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;

use crate::{Error, Result};

pub const IMAGE_DIM: i32 = 1280;
pub const TEXT_DIM: i32 = 384;

fn vector(dim: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim)
}

fn list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// Column names and types of the LanceDB table.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("garment_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, true),
        Field::new("color_primary", DataType::Utf8, true),
        Field::new("color_secondary", DataType::Utf8, true),
        Field::new("colors", list(), true),
        Field::new("style_tags", list(), true),
        Field::new("caption", DataType::Utf8, true),
        Field::new("image_vector", vector(IMAGE_DIM), true),
        Field::new("text_vector", vector(TEXT_DIM), true),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("processed_at", DataType::Utf8, false),
        // Added for outfit recommendations; tables made before have them added (all null).
        Field::new("formality", DataType::Float32, true),
        Field::new("seasons", list(), true),
    ])
}

/// Columns added to [`schema`] after tables were first created: `(name, type)`.
pub fn added_columns() -> Vec<Field> {
    vec![
        Field::new("formality", DataType::Float32, true),
        Field::new("seasons", list(), true),
    ]
}

/// One garment, as the table stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Garment {
    pub garment_id: String,
    pub user_id: String,
    pub event_id: String,
    pub category: Option<String>,
    pub color_primary: Option<String>,
    pub color_secondary: Option<String>,
    pub colors: Vec<String>,
    pub style_tags: Vec<String>,
    pub caption: Option<String>,
    pub image_vector: Vec<f32>,
    pub text_vector: Vec<f32>,
    pub model_version: String,
    pub processed_at: String,
    pub formality: Option<f32>,
    pub seasons: Vec<String>,
}

fn text(v: &Value, field: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::BadRecord(format!("record has no `{field}`")))
}

fn floats(v: &Value, dim: i32, what: &str) -> Result<Vec<f32>> {
    let a = v
        .as_array()
        .ok_or_else(|| Error::BadRecord(format!("record has no {what}")))?;
    if a.len() != dim as usize {
        return Err(Error::BadRecord(format!(
            "{what} has {} values, not {dim}",
            a.len()
        )));
    }
    a.iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| Error::BadRecord(format!("{what} holds a non-number")))
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Garment {
    pub fn from_record(r: &Value) -> Result<Self> {
        let a = &r["attributes"];
        let e = &r["embedding"];
        // The model versions that made the vectors and tags, e.g. `embed:efficientnet-lite0+all-minilm-l6-v2@1+1`.
        let model_version = r["models"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Some(format!(
                            "{}:{}@{}",
                            m["stage"].as_str()?,
                            m["name"].as_str()?,
                            m["version"].as_str()?
                        ))
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        Ok(Garment {
            garment_id: text(r, "garment_id")?,
            user_id: text(r, "user_id")?,
            event_id: text(r, "event_id")?,
            category: r["classification"]["category"].as_str().map(str::to_owned),
            color_primary: a["color_primary"].as_str().map(str::to_owned),
            color_secondary: a["color_secondary"].as_str().map(str::to_owned),
            colors: a["colors"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            style_tags: strings(&a["style_tags"]),
            caption: e["caption"].as_str().map(str::to_owned),
            image_vector: floats(&e["image_vector"], IMAGE_DIM, "embedding.image_vector")?,
            text_vector: floats(&e["text_vector"], TEXT_DIM, "embedding.text_vector")?,
            model_version,
            processed_at: text(r, "processed_at")?,
            formality: a["formality"].as_f64().map(|f| f as f32),
            seasons: strings(&a["seasons"]),
        })
    }
}

/// Garments as one Arrow batch of [`schema`].
pub fn batch(garments: &[Garment]) -> Result<RecordBatch> {
    let s = |f: fn(&Garment) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(garments.iter().map(f)))
    };
    let o = |f: fn(&Garment) -> Option<&str>| -> ArrayRef {
        Arc::new(garments.iter().map(f).collect::<StringArray>())
    };
    let l = |f: fn(&Garment) -> &[String]| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for g in garments {
            for v in f(g) {
                b.values().append_value(v);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let v = |dim: i32, f: fn(&Garment) -> &[f32]| -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim)
            .with_field(Arc::new(Field::new("item", DataType::Float32, true)));
        for g in garments {
            b.values().append_slice(f(g));
            b.append(true);
        }
        Arc::new(b.finish())
    };
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            s(|g| &g.garment_id),
            s(|g| &g.user_id),
            s(|g| &g.event_id),
            o(|g| g.category.as_deref()),
            o(|g| g.color_primary.as_deref()),
            o(|g| g.color_secondary.as_deref()),
            l(|g| &g.colors),
            l(|g| &g.style_tags),
            o(|g| g.caption.as_deref()),
            v(IMAGE_DIM, |g| &g.image_vector),
            v(TEXT_DIM, |g| &g.text_vector),
            s(|g| &g.model_version),
            s(|g| &g.processed_at),
            Arc::new(
                garments
                    .iter()
                    .map(|g| g.formality)
                    .collect::<Float32Array>(),
            ),
            l(|g| &g.seasons),
        ],
    )
    .map_err(|e| Error::BadRecord(e.to_string()))
}

/// Column names and types of the tombstone table.
pub fn tombstone_schema() -> Schema {
    Schema::new(vec![
        Field::new("garment_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("deleted_at", DataType::Utf8, false),
    ])
}

/// Delete events as one Arrow batch of [`tombstone_schema`].
pub fn tombstones(deletes: &[flashfit_schema::DeleteEvent]) -> Result<RecordBatch> {
    let s = |f: fn(&flashfit_schema::DeleteEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(deletes.iter().map(f)))
    };
    RecordBatch::try_new(
        Arc::new(tombstone_schema()),
        vec![
            s(|d| d.garment_id.clone()),
            s(|d| d.user_id.clone()),
            s(|d| d.event_id.clone()),
            s(|d| flashfit_schema::format_ts(d.deleted_at)),
        ],
    )
    .map_err(|e| Error::BadRecord(e.to_string()))
}

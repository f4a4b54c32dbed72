//! The LanceDB `garments` row (from a garment record on the pipeline's last topic) and the
//! `garment_deletes` tombstone row (from a delete event on `flashfit.deletes`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListBuilder, Float32Array, Float32Builder, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use flashfit_schema::{GarmentRecord, format_ts};

use crate::{Error, Result};

/// The sizes of the two vector columns: the model manifest's `[embedder]` (1280 and 384 with
/// the shipped models). A table holds one embedder's vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorDims {
    pub image: usize,
    pub text: usize,
}

impl VectorDims {
    /// The sizes of a table's vector columns, if it has both.
    pub fn of(schema: &Schema) -> Option<VectorDims> {
        let size = |name: &str| match schema.field_with_name(name).ok()?.data_type() {
            DataType::FixedSizeList(_, n) => usize::try_from(*n).ok(),
            _ => None,
        };
        Some(VectorDims {
            image: size("image_vector")?,
            text: size("text_vector")?,
        })
    }
}

fn vector(dim: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        i32::try_from(dim).unwrap_or(i32::MAX),
    )
}

fn list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// Column names and types of the LanceDB table.
pub fn schema(dims: VectorDims) -> Schema {
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
        Field::new("image_vector", vector(dims.image), true),
        Field::new("text_vector", vector(dims.text), true),
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

impl Garment {
    /// The row of one garment record; its vectors must have the table's sizes.
    pub fn from_record(r: &GarmentRecord, dims: VectorDims) -> Result<Self> {
        let e = r
            .embedding
            .as_ref()
            .ok_or_else(|| Error::BadRecord("record has no `embedding`".into()))?;
        let sized = |v: &[f32], dim: usize, what: &str| {
            if v.len() == dim {
                Ok(v.to_vec())
            } else {
                Err(Error::BadRecord(format!(
                    "{what} has {} values, not {dim}",
                    v.len()
                )))
            }
        };
        let a = r.attributes.as_ref();
        Ok(Garment {
            garment_id: r.upload.garment_id.clone(),
            user_id: r.upload.user_id.clone(),
            event_id: r.upload.event_id.clone(),
            category: r.category().map(str::to_owned),
            color_primary: a.and_then(|a| a.color_primary.clone()),
            color_secondary: a.and_then(|a| a.color_secondary.clone()),
            colors: a
                .map(|a| a.colors.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
            style_tags: a.map(|a| a.style_tags.clone()).unwrap_or_default(),
            caption: Some(e.caption.clone()),
            image_vector: sized(&e.image_vector, dims.image, "embedding.image_vector")?,
            text_vector: sized(&e.text_vector, dims.text, "embedding.text_vector")?,
            // The model versions that made the vectors and tags, e.g.
            // `embed:efficientnet-lite0+all-minilm-l6-v2@1+1`.
            model_version: r.model_versions(),
            processed_at: r
                .processed_at
                .map(format_ts)
                .ok_or_else(|| Error::BadRecord("record has no `processed_at`".into()))?,
            formality: a.map(|a| a.formality),
            seasons: a.map(|a| a.seasons.clone()).unwrap_or_default(),
        })
    }
}

/// Garments as one Arrow batch of [`schema`].
pub fn batch(garments: &[Garment], dims: VectorDims) -> Result<RecordBatch> {
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
    let v = |dim: usize, f: fn(&Garment) -> &[f32]| -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(
            Float32Builder::new(),
            i32::try_from(dim).unwrap_or(i32::MAX),
        )
        .with_field(Arc::new(Field::new("item", DataType::Float32, true)));
        for g in garments {
            b.values().append_slice(f(g));
            b.append(true);
        }
        Arc::new(b.finish())
    };
    RecordBatch::try_new(
        Arc::new(schema(dims)),
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
            v(dims.image, |g| &g.image_vector),
            v(dims.text, |g| &g.text_vector),
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

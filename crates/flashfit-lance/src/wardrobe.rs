//! A user's garments as recommendation and feedback need them ([`flashfit_outfits::Item`]):
//! category, primary colour, formality, seasons, style tags, and optionally the image vector.
//! The `user_id` filter is answered by its B-tree index once upkeep has built it.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use flashfit_outfits::Item;
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::{Result, id_list, quote};

/// The user's garments — all of them, or those among `ids` — ordered by garment id.
pub async fn items(
    table: &lancedb::Table,
    user_id: &str,
    ids: Option<&[String]>,
    with_vectors: bool,
) -> Result<Vec<Item>> {
    let mut filter = format!("user_id = {}", quote(user_id));
    if let Some(ids) = ids {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        filter.push_str(&format!(" AND garment_id IN ({})", id_list(ids)));
    }
    let mut columns = vec![
        "garment_id",
        "category",
        "color_primary",
        "formality",
        "seasons",
        "style_tags",
        "model_version",
    ];
    if with_vectors {
        columns.push("image_vector");
    }
    let batches: Vec<RecordBatch> = table
        .query()
        .only_if(filter)
        .select(Select::columns(&columns))
        .execute()
        .await?
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(from_batch(b));
    }
    out.sort_by(|a, b| a.garment_id.cmp(&b.garment_id));
    Ok(out)
}

fn strings(b: &RecordBatch, name: &str, i: usize) -> Vec<String> {
    b.column_by_name(name)
        .map(|c| c.as_list::<i32>())
        .filter(|l| !l.is_null(i))
        .map(|l| {
            let v = l.value(i);
            let v = v.as_string::<i32>();
            (0..v.len())
                .filter(|&k| !v.is_null(k))
                .map(|k| v.value(k).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn from_batch(b: &RecordBatch) -> Vec<Item> {
    let text = |name: &str, i: usize| -> Option<String> {
        b.column_by_name(name)
            .map(|c| c.as_string::<i32>())
            .filter(|c| !c.is_null(i))
            .map(|c| c.value(i).to_owned())
    };
    (0..b.num_rows())
        .filter_map(|i| {
            Some(Item {
                garment_id: text("garment_id", i)?,
                // Garments the classifier could not place have no category: not wearable here.
                category: text("category", i)?,
                color_primary: text("color_primary", i),
                formality: b
                    .column_by_name("formality")
                    .map(|c| c.as_primitive::<Float32Type>())
                    .filter(|c| !c.is_null(i))
                    .map(|c| c.value(i)),
                seasons: strings(b, "seasons", i),
                style_tags: strings(b, "style_tags", i),
                model_versions: text("model_version", i)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                embedding: b
                    .column_by_name("image_vector")
                    .map(|c| c.as_fixed_size_list())
                    .filter(|c| !c.is_null(i))
                    .map(|c| c.value(i).as_primitive::<Float32Type>().values().to_vec()),
            })
        })
        .collect()
}

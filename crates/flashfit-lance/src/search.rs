//! Search over one user's garments: `like` (nearest garments to one of theirs, by image
//! vector) and `text` (nearest captions to a query's text vector), with optional category and
//! colour filters. Scores are cosine similarities (1 = same direction).
//!
//! A user's wardrobe is small (hundreds to a few thousand garments), so the search is exact:
//! the filter (`user_id` first, answered by its B-tree index once upkeep has built it) selects
//! the user's rows, only those rows' vectors are read, and they are ranked here by cosine
//! similarity. (LanceDB's own flat search reads the whole vector column before filtering — 512
//! MB per query at 100,000 image vectors — and an approximate index would search only a few
//! of its partitions and could miss most of one user's garments.)

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use serde::Serialize;

use crate::{Error, Result, quote};

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub garment_id: String,
    pub score: f32,
    pub category: Option<String>,
    /// The classifier was unsure: `category` is a group (`footwear`) or `unknown`, not one of
    /// the 47 categories.
    pub unsure: bool,
    pub color_primary: Option<String>,
    pub style_tags: Vec<String>,
    pub caption: Option<String>,
}

/// Optional narrowing of the results.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub category: Option<String>,
    pub color: Option<String>,
}

fn filter(user_id: &str, f: &Filters) -> String {
    let mut parts = vec![format!("user_id = {}", quote(user_id))];
    if let Some(c) = &f.category {
        parts.push(format!("category = {}", quote(c)));
    }
    if let Some(c) = &f.color {
        parts.push(format!("color_primary = {}", quote(c)));
    }
    parts.join(" AND ")
}

/// Cosine similarity; 0 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Every row of `batches` as a hit scored against `query` by the vectors in `column`.
fn hits(batches: &[RecordBatch], column: &str, query: &[f32]) -> Vec<Hit> {
    let mut out = Vec::new();
    for b in batches {
        let s = |n: &str| b.column_by_name(n).map(|c| c.as_string::<i32>().clone());
        let (Some(ids), Some(vectors)) = (s("garment_id"), b.column_by_name(column)) else {
            continue;
        };
        let vectors = vectors.as_fixed_size_list();
        let (cat, col, cap) = (s("category"), s("color_primary"), s("caption"));
        let tags = b
            .column_by_name("style_tags")
            .map(|c| c.as_list::<i32>().clone());
        let opt = |a: &Option<arrow::array::StringArray>, i: usize| {
            a.as_ref()
                .filter(|a| !a.is_null(i))
                .map(|a| a.value(i).to_owned())
        };
        for i in 0..b.num_rows() {
            if vectors.is_null(i) {
                continue;
            }
            let v = vectors.value(i);
            let category = opt(&cat, i);
            out.push(Hit {
                unsure: category
                    .as_deref()
                    .is_some_and(|c| flashfit_schema::taxonomy::index(c).is_none()),
                garment_id: ids.value(i).to_owned(),
                score: cosine(query, v.as_primitive::<Float32Type>().values()),
                category,
                color_primary: opt(&col, i),
                style_tags: tags
                    .as_ref()
                    .map(|t| {
                        let v = t.value(i);
                        let v = v.as_string::<i32>();
                        (0..v.len()).map(|k| v.value(k).to_owned()).collect()
                    })
                    .unwrap_or_default(),
                caption: opt(&cap, i),
            });
        }
    }
    out
}

/// The rows matching `only_if`, with what hits need and the `column` vectors.
async fn fetch(table: &lancedb::Table, column: &str, only_if: String) -> Result<Vec<RecordBatch>> {
    Ok(table
        .query()
        .only_if(only_if)
        .select(Select::columns(&[
            "garment_id",
            "category",
            "color_primary",
            "style_tags",
            "caption",
            column,
        ]))
        .execute()
        .await?
        .try_collect()
        .await?)
}

/// Best first, ties to the smaller garment id; the first `k`.
fn top(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.garment_id.cmp(&b.garment_id))
    });
    hits.truncate(k);
    hits
}

/// The user's garments most like `garment_id` (by image vector), itself excluded. One read:
/// the user's rows, the anchor's vector among them.
pub async fn like(
    table: &lancedb::Table,
    user_id: &str,
    garment_id: &str,
    k: usize,
    f: &Filters,
) -> Result<Vec<Hit>> {
    let column = "image_vector";
    let batches = fetch(table, column, filter(user_id, &Filters::default())).await?;
    let anchor = batches.iter().find_map(|b| {
        let ids = b.column_by_name("garment_id")?.as_string::<i32>();
        let i = (0..b.num_rows()).find(|&i| ids.value(i) == garment_id)?;
        let col = b.column_by_name(column)?.as_fixed_size_list();
        (!col.is_null(i)).then(|| col.value(i).as_primitive::<Float32Type>().values().to_vec())
    });
    let Some(v) = anchor else {
        return Err(Error::BadRecord(format!(
            "user {user_id} has no garment {garment_id}"
        )));
    };
    let wanted = |h: &Hit| {
        h.garment_id != garment_id
            && f.category
                .as_ref()
                .is_none_or(|c| h.category.as_ref() == Some(c))
            && f.color
                .as_ref()
                .is_none_or(|c| h.color_primary.as_ref() == Some(c))
    };
    let hits = hits(&batches, column, &v)
        .into_iter()
        .filter(wanted)
        .collect();
    Ok(top(hits, k))
}

/// The user's garments whose captions are nearest to a text query's vector.
pub async fn text(
    table: &lancedb::Table,
    user_id: &str,
    query_vector: Vec<f32>,
    k: usize,
    f: &Filters,
) -> Result<Vec<Hit>> {
    let batches = fetch(table, "text_vector", filter(user_id, f)).await?;
    Ok(top(hits(&batches, "text_vector", &query_vector), k))
}

/// Every garment of the user (score 0), ordered by garment id.
pub async fn garments_of(table: &lancedb::Table, user_id: &str) -> Result<Vec<Hit>> {
    let batches = fetch(table, "text_vector", filter(user_id, &Filters::default())).await?;
    let mut all = hits(&batches, "text_vector", &[]);
    all.sort_by(|a, b| a.garment_id.cmp(&b.garment_id));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::cosine;
    use proptest::prelude::*;

    const DIMS: crate::rows::VectorDims = crate::rows::VectorDims { image: 8, text: 4 };

    /// A garment row of `user` (vectors constant: only the filter is under test).
    fn garment(user: &str, id: &str) -> crate::rows::Garment {
        let v = flashfit_schema::record::testing::embedded(
            id,
            id,
            user,
            "2026-12-03T10:00:00.000Z",
            (DIMS.image, DIMS.text),
        );
        let r: flashfit_schema::GarmentRecord = serde_json::from_value(v).expect("record");
        crate::rows::Garment::from_record(&r, DIMS).expect("garment")
    }

    /// User ids a filter must quote: quotes, backslashes, NUL and other controls, SQL
    /// keywords and comment markers, unicode.
    fn user_id() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("'".to_owned()),
                Just("''".to_owned()),
                Just("\\".to_owned()),
                Just("\0".to_owned()),
                Just("\n".to_owned()),
                Just("\"".to_owned()),
                Just(" OR 1=1 --".to_owned()),
                Just("%_*".to_owned()),
                Just("é👕ß".to_owned()),
                "[a-z0-9]{1,3}",
            ],
            1..6,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Issue 13: the `user_id` filter (`quote`) returns exactly that user's rows from a
        /// real LanceDB table, whatever the id holds, and never a neighbour's whose id differs
        /// by a quote or an escape.
        #[test]
        fn the_user_filter_matches_exactly_its_user(user in user_id()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("tmp");
                let db = lancedb::connect(dir.path().to_str().expect("utf-8")).execute().await.expect("db");
                let t = crate::garments(&db, "garments", DIMS).await.expect("table");
                let neighbours = [format!("{user}'"), format!("'{user}"), user.replace('\'', "''"),
                                  format!("{user}\\"), format!("{user} ")];
                let mut rows = vec![garment(&user, "mine")];
                for (i, n) in neighbours.iter().filter(|n| **n != user).enumerate() {
                    rows.push(garment(n, &format!("other-{i}")));
                }
                t.add(crate::rows::batch(&rows, DIMS).expect("batch")).execute().await.expect("add");
                let hits = super::garments_of(&t, &user).await.expect("query");
                let ids: Vec<&str> = hits.iter().map(|h| h.garment_id.as_str()).collect();
                prop_assert_eq!(ids, vec!["mine"], "user {:?}", user);
                Ok(())
            })?;
        }
    }

    #[test]
    fn cosine_is_scale_free_and_zero_safe() {
        assert!((cosine(&[1.0, 0.0], &[3.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}

use std::sync::Arc;

use flashfit_config::{LanceConfig, RuntimeConfig, S3Config};
use flashfit_runtime::harness;
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase};
use serde_json::json;

use super::*;

fn record(i: usize, garment: &str, at: &str, category: &str) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut image = vec![0f32; 1280];
    image[i % 1280] = 1.0;
    let mut text = vec![0f32; 384];
    text[i % 384] = 1.0;
    let mut v =
        flashfit_schema::record::testing::embedded(&format!("e{i}"), garment, "u1", at, (0, 0));
    v["classification"]["category"] = json!(category);
    v["embedding"] =
        json!({"caption": format!("navy {category}"), "image_vector": image, "text_vector": text});
    (
        Some(garment.as_bytes().to_vec()),
        serde_json::to_vec(&v).expect("json"),
    )
}

/// The shipped embedder's sizes (the vectors below are one-hot in them).
const DIMS: VectorDims = VectorDims {
    image: 1280,
    text: 384,
};

fn sink(dir: &std::path::Path) -> Arc<LanceSink> {
    Arc::new(LanceSink::new(
        &format!("file://{}", dir.display()),
        &S3Config::default(),
        &LanceConfig::default(),
        "flashfit.embedded".into(),
        "flashfit.deletes".into(),
        DIMS,
    ))
}

async fn categories(s: &LanceSink) -> Vec<(String, String)> {
    use arrow::array::AsArray;
    let batches: Vec<arrow::array::RecordBatch> = s
        .table()
        .await
        .expect("table")
        .query()
        .execute()
        .await
        .expect("query")
        .try_collect()
        .await
        .expect("rows");
    let mut out = Vec::new();
    for b in batches {
        let g = b
            .column_by_name("garment_id")
            .expect("col")
            .as_string::<i32>()
            .clone();
        let c = b
            .column_by_name("category")
            .expect("col")
            .as_string::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            out.push((g.value(i).to_owned(), c.value(i).to_owned()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn upserts_by_garment_newest_wins_and_replays_change_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = sink(dir.path());
    let input = vec![
        record(0, "g1", "2026-11-22T10:00:00.000Z", "jeans"),
        record(1, "g2", "2026-11-22T10:00:00.000Z", "tie"),
        (Some(b"bad".to_vec()), b"{oops".to_vec()),
        // g1 reprocessed later (a new model): replaces the row.
        record(2, "g1", "2026-11-22T12:00:00.000Z", "chinos"),
    ];
    let run = harness::run(s.clone(), input.clone(), RuntimeConfig::default()).await;
    assert_eq!(run.on("flashfit.dlq.lance").len(), 1);
    let want = vec![
        ("g1".to_string(), "chinos".to_string()),
        ("g2".to_string(), "tie".to_string()),
    ];
    assert_eq!(categories(&s).await, want);
    // A replay (other batch sizes, the older g1 record arriving after the newer one): same table.
    harness::run(
        s.clone(),
        input,
        RuntimeConfig {
            batch_size: 1,
            ..RuntimeConfig::default()
        },
    )
    .await;
    assert_eq!(categories(&s).await, want);
    assert_eq!(
        s.table()
            .await
            .expect("table")
            .count_rows(None)
            .await
            .expect("count"),
        2
    );
    // Nearest neighbour by image vector: g1's vector has its 1.0 at index 2.
    let mut q = vec![0f32; 1280];
    q[2] = 1.0;
    let hits: Vec<arrow::array::RecordBatch> = s
        .table()
        .await
        .expect("table")
        .query()
        .nearest_to(q)
        .expect("vector")
        .column("image_vector")
        .limit(1)
        .execute()
        .await
        .expect("search")
        .try_collect()
        .await
        .expect("hits");
    use arrow::array::AsArray;
    assert_eq!(
        hits[0]
            .column_by_name("garment_id")
            .expect("col")
            .as_string::<i32>()
            .value(0),
        "g1"
    );
}

#[tokio::test]
async fn search_finds_a_users_similar_garments_with_filters() {
    use crate::search::{Filters, like, text};
    let dir = tempfile::tempdir().expect("tmp");
    let s = sink(dir.path());
    // Image vectors: g1 and g2 point almost the same way, g3 elsewhere; g4 is another user's.
    let mut rows = vec![
        record(0, "g1", "2026-11-22T10:00:00.000Z", "jeans"),
        record(1, "g2", "2026-11-22T10:00:00.000Z", "chinos"),
        record(500, "g3", "2026-11-22T10:00:00.000Z", "tie"),
    ];
    let mut v: serde_json::Value = serde_json::from_slice(&rows[1].1).expect("json");
    v["embedding"]["image_vector"][0] = json!(0.9);
    rows[1].1 = serde_json::to_vec(&v).expect("json");
    let mut other: serde_json::Value =
        serde_json::from_slice(&record(0, "g4", "2026-11-22T10:00:00.000Z", "jeans").1)
            .expect("json");
    other["user_id"] = json!("u2");
    rows.push((None, serde_json::to_vec(&other).expect("json")));
    harness::run(s.clone(), rows, RuntimeConfig::default()).await;
    let t = s.table().await.expect("table");
    let hits = like(t, "u1", "g1", 5, &Filters::default())
        .await
        .expect("like");
    let ids: Vec<&str> = hits.iter().map(|h| h.garment_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["g2", "g3"],
        "nearest first, itself and other users excluded"
    );
    assert!(
        hits[0].score > 0.6 && hits[0].score > hits[1].score,
        "{hits:?}"
    );
    let only_ties = Filters {
        category: Some("tie".into()),
        color: None,
    };
    let ids: Vec<String> = like(t, "u1", "g1", 5, &only_ties)
        .await
        .expect("like")
        .into_iter()
        .map(|h| h.garment_id)
        .collect();
    assert_eq!(ids, vec!["g3"]);
    assert!(like(t, "u1", "nope", 5, &Filters::default()).await.is_err());
    // Text: g3's text vector has its 1.0 at 500 % 384.
    let mut q = vec![0f32; 384];
    q[500 % 384] = 1.0;
    let hits = text(t, "u1", q, 1, &Filters::default())
        .await
        .expect("text");
    assert_eq!(hits[0].garment_id, "g3");
    assert_eq!(hits[0].caption.as_deref(), Some("navy tie"));
}

fn delete(i: usize, garment: &str) -> flashfit_runtime::Message {
    let v = json!({"event_id": format!("d{i}"), "user_id": "u1", "garment_id": garment,
        "deleted_at": "2026-11-22T11:00:00Z"});
    flashfit_runtime::Message {
        topic: "flashfit.deletes".into(),
        partition: 0,
        offset: i as i64,
        key: Some(garment.as_bytes().to_vec().into()),
        value: Some(serde_json::to_vec(&v).expect("json").into()),
        ..Default::default()
    }
}

fn embedded(input: Vec<(Option<Vec<u8>>, Vec<u8>)>) -> Vec<flashfit_runtime::Message> {
    harness::messages("flashfit.embedded", 0, input)
}

#[tokio::test]
async fn deletes_remove_the_row_for_good_in_any_order_and_bad_ones_are_dead_lettered() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = sink(dir.path());
    assert_eq!(
        s.input_topics(),
        vec![
            "flashfit.embedded".to_string(),
            "flashfit.deletes".to_string()
        ]
    );
    let garments = embedded(vec![
        record(0, "g1", "2026-11-22T10:00:00.000Z", "jeans"),
        record(1, "g2", "2026-11-22T10:00:00.000Z", "tie"),
        record(2, "g3", "2026-11-22T10:00:00.000Z", "scarf"),
    ]);
    harness::run_messages(s.clone(), garments.clone(), RuntimeConfig::default()).await;
    let mut bad = delete(9, "g2");
    bad.value = Some(br#"{"event_id":"d9","garment_id":"g2"}"#.to_vec().into());
    // g1 deleted on its own; g3 deleted in the same batch as (after) a reprocessing of it.
    let mut batch = vec![delete(0, "g1"), bad];
    batch.extend(embedded(vec![record(
        7,
        "g3",
        "2026-11-22T12:00:00.000Z",
        "shawl",
    )]));
    batch.push(delete(1, "g3"));
    let run = harness::run_messages(s.clone(), batch, RuntimeConfig::default()).await;
    let dlq = run.on("flashfit.dlq.lance");
    assert_eq!(dlq.len(), 1, "the delete without user_id");
    assert!(run.result.unfinished.is_empty());
    let tie = vec![("g2".to_string(), "tie".to_string())];
    assert_eq!(categories(&s).await, tie);
    // Replaying everything (the uploads reprocessed, the deletes redelivered, in any order)
    // brings nothing back and adds no tombstone.
    let mut replay = vec![delete(0, "g1")];
    replay.extend(garments);
    replay.push(delete(1, "g3"));
    for batch_size in [1, 10] {
        let cfg = RuntimeConfig {
            batch_size,
            ..RuntimeConfig::default()
        };
        harness::run_messages(s.clone(), replay.clone(), cfg).await;
        assert_eq!(categories(&s).await, tie);
    }
    let tombstones = s
        .tombstone_table()
        .await
        .expect("tombstones")
        .count_rows(None)
        .await
        .expect("count");
    assert_eq!(tombstones, 2);
}

#[tokio::test]
async fn upkeep_compacts_prunes_and_indexes_once_the_table_is_large_enough() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = sink(dir.path());
    // 300 garments in 30 upserts: 30 fragments and 30+ versions.
    let input: Vec<_> = (0..300)
        .map(|i| record(i, &format!("g{i:03}"), "2026-11-22T10:00:00.000Z", "jeans"))
        .collect();
    let cfg = RuntimeConfig {
        batch_size: 10,
        ..RuntimeConfig::default()
    };
    harness::run(s.clone(), input, cfg).await;
    let t = s.table().await.expect("table");
    let small = LanceConfig {
        keep_versions_s: 0,
        index_min_rows: 1_000,
        ..LanceConfig::default()
    };
    let r = crate::upkeep::run(t, &small).await.expect("upkeep");
    assert_eq!(r.rows, 300);
    assert!(r.fragments_removed >= 30 && r.fragments_added >= 1, "{r:?}");
    assert!(r.versions_pruned >= 30, "{r:?}");
    assert_eq!(
        r.indexed,
        vec!["garment_id", "user_id"],
        "below the threshold"
    );
    let big = LanceConfig {
        index_min_rows: 300,
        ..small
    };
    let r = crate::upkeep::run(t, &big).await.expect("upkeep");
    assert_eq!(r.indexed, vec!["image_vector", "text_vector"]);
    let r = crate::upkeep::run(t, &big).await.expect("upkeep");
    assert!(r.indexed.is_empty(), "indices are built once");
    // Search still finds the right garment (exact, within the user).
    let mut q = vec![0f32; 384];
    q[123] = 1.0;
    let hits = crate::search::text(t, "u1", q, 1, &crate::search::Filters::default())
        .await
        .expect("search");
    assert_eq!(hits[0].garment_id, "g123");
    assert_eq!(t.count_rows(None).await.expect("count"), 300);
}

#[tokio::test]
async fn the_worker_runs_upkeep_in_the_background_between_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = LanceConfig {
        optimize_interval_ms: 1,
        ..LanceConfig::default()
    };
    let s = Arc::new(LanceSink::new(
        &format!("file://{}", dir.path().display()),
        &S3Config::default(),
        &cfg,
        "flashfit.embedded".into(),
        "flashfit.deletes".into(),
        DIMS,
    ));
    let input: Vec<_> = (0..40)
        .map(|i| record(i, &format!("g{i:02}"), "2026-11-22T10:00:00.000Z", "jeans"))
        .collect();
    let batches = RuntimeConfig {
        batch_size: 5,
        ..RuntimeConfig::default()
    };
    harness::run(s.clone(), input, batches).await;
    let t = s.table().await.expect("table");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut indexed = Vec::new();
    while std::time::Instant::now() < deadline {
        indexed = t
            .list_indices()
            .await
            .expect("indices")
            .into_iter()
            .flat_map(|i| i.columns)
            .collect();
        if indexed.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    indexed.sort();
    assert_eq!(
        indexed,
        vec!["garment_id", "user_id"],
        "built by the worker"
    );
    assert_eq!(t.count_rows(None).await.expect("count"), 40);
}

#[tokio::test]
async fn a_table_from_before_the_outfit_columns_gets_them_and_keeps_working() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = format!("file://{}", dir.path().display());
    let db = crate::connect(&uri, &S3Config::default(), &LanceConfig::default())
        .await
        .expect("db");
    let added: Vec<String> = crate::rows::added_columns()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let old = arrow::datatypes::Schema::new(
        crate::rows::schema(DIMS)
            .fields()
            .iter()
            .filter(|f| !added.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    );
    db.create_empty_table("garments", Arc::new(old))
        .execute()
        .await
        .expect("old table");
    let s = sink(dir.path());
    harness::run(
        s.clone(),
        vec![record(0, "g1", "2026-11-22T10:00:00.000Z", "jeans")],
        RuntimeConfig::default(),
    )
    .await;
    let t = s.table().await.expect("table");
    let schema = t.schema().await.expect("schema");
    for c in &added {
        assert!(schema.field_with_name(c).is_ok(), "{c} added");
    }
    assert_eq!(categories(&s).await, vec![("g1".into(), "jeans".into())]);
}

#[tokio::test]
async fn a_users_wardrobe_comes_back_with_what_outfits_need() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = sink(dir.path());
    let mut rows = Vec::new();
    for (i, (g, cat)) in [("g1", "jeans"), ("g2", "t_shirt"), ("g3", "sneakers")]
        .iter()
        .enumerate()
    {
        let (k, v) = record(i, g, "2026-11-22T10:00:00.000Z", cat);
        let mut v: serde_json::Value = serde_json::from_slice(&v).expect("json");
        v["attributes"]["formality"] = json!(0.25 * i as f64);
        v["attributes"]["seasons"] = json!(["summer"]);
        rows.push((k, serde_json::to_vec(&v).expect("json")));
    }
    let (k, v) = record(9, "g9", "2026-11-22T10:00:00.000Z", "coat");
    let mut v: serde_json::Value = serde_json::from_slice(&v).expect("json");
    v["user_id"] = json!("u2");
    rows.push((k, serde_json::to_vec(&v).expect("json")));
    harness::run(s.clone(), rows, RuntimeConfig::default()).await;
    let t = s.table().await.expect("table");
    let all = crate::wardrobe::items(t, "u1", None, false)
        .await
        .expect("items");
    let ids: Vec<&str> = all.iter().map(|i| i.garment_id.as_str()).collect();
    assert_eq!(ids, ["g1", "g2", "g3"]);
    assert_eq!(all[1].category, "t_shirt");
    assert_eq!(all[1].formality, Some(0.25));
    assert_eq!(all[1].seasons, ["summer"]);
    assert_eq!(all[1].style_tags, ["classic"]);
    assert_eq!(all[1].color_primary.as_deref(), Some("navy"));
    assert!(all[1].embedding.is_none());
    let some = crate::wardrobe::items(t, "u1", Some(&["g3".into(), "g9".into()]), true)
        .await
        .expect("items");
    assert_eq!(some.len(), 1, "g9 is another user's");
    assert_eq!(some[0].embedding.as_ref().map(Vec::len), Some(1280));
    assert!(
        crate::wardrobe::items(t, "nobody", None, false)
            .await
            .expect("items")
            .is_empty()
    );
}

/// Issue 12, defect 8: a garment belongs to the user whose upload was stored first. Another
/// user's upload or delete naming it is dead-lettered `not_owner` and changes nothing; that
/// user's delete of a garment nobody has yet does not block the owner's later upload.
#[tokio::test]
async fn another_users_upload_or_delete_of_a_garment_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = sink(dir.path());
    let mine = embedded(vec![record(0, "g1", "2026-11-22T10:00:00.000Z", "jeans")]);
    harness::run_messages(s.clone(), mine, RuntimeConfig::default()).await;
    let as_user = |m: &mut flashfit_runtime::Message, user: &str| {
        let mut v: serde_json::Value =
            serde_json::from_slice(m.value.as_deref().expect("value")).expect("json");
        v["user_id"] = json!(user);
        m.value = Some(serde_json::to_vec(&v).expect("json").into());
    };
    // Mallory re-uploads g1 (newer, other category) and deletes it; she also deletes g2,
    // which nobody has uploaded yet.
    let mut theirs = embedded(vec![record(1, "g1", "2026-11-22T12:00:00.000Z", "skirt")]);
    as_user(&mut theirs[0], "mallory");
    let mut del = delete(5, "g1");
    as_user(&mut del, "mallory");
    let mut early = delete(6, "g2");
    as_user(&mut early, "mallory");
    theirs.push(del);
    theirs.push(early);
    let run = harness::run_messages(s.clone(), theirs, RuntimeConfig::default()).await;
    let dlq = run.on("flashfit.dlq.lance");
    assert_eq!(dlq.len(), 2, "the upload and the delete of g1");
    for d in &dlq {
        let kind = d
            .headers
            .iter()
            .find(|(k, _)| *k == flashfit_schema::headers::ERROR_KIND)
            .map(|(_, v)| v.as_str());
        assert_eq!(kind, Some("not_owner"));
    }
    assert_eq!(
        categories(&s).await,
        vec![("g1".to_string(), "jeans".to_string())]
    );
    // The owner's upload of g2 comes after Mallory's delete: it is stored.
    let g2 = embedded(vec![record(2, "g2", "2026-11-22T13:00:00.000Z", "tie")]);
    harness::run_messages(s.clone(), g2, RuntimeConfig::default()).await;
    assert_eq!(
        categories(&s).await,
        vec![
            ("g1".to_string(), "jeans".to_string()),
            ("g2".to_string(), "tie".to_string())
        ]
    );
}

/// Issue 13: vector sizes come from the model manifest's `[embedder]`; a table made for
/// another embedder is refused with both sizes named, and its records are held (retried),
/// never dead-lettered.
#[tokio::test]
async fn a_table_of_another_embedder_is_refused_naming_both_sizes() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = format!("file://{}", dir.path().display());
    let db = crate::connect(&uri, &S3Config::default(), &LanceConfig::default())
        .await
        .expect("db");
    let other = VectorDims {
        image: 512,
        text: 384,
    };
    crate::garments(&db, "garments", other)
        .await
        .expect("a table for a 512-d embedder");
    let err = crate::garments(&db, "garments", DIMS)
        .await
        .expect_err("1280-d vectors into a 512-d table");
    let msg = err.to_string();
    assert!(
        msg.contains("512 (image)") && msg.contains("image vectors of 1280"),
        "{msg}"
    );
    // The sink answers a retryable error with Outcome::Retry: held, never dead-lettered.
    assert!(err.is_retryable(), "held, not dead-lettered");
}

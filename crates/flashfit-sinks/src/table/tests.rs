use std::sync::Arc;

use arrow::array::{Array, AsArray};
use bytes::Bytes;
use object_store::memory::InMemory;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use super::*;
use crate::garments;
use crate::layout::GARMENTS;
use serde_json::Value;

/// An enriched record as `flashfit.embedded` carries it.
pub(crate) fn record(id: &str, at: &str) -> Value {
    json!({
        "event_id": id, "user_id": "u1", "garment_id": format!("g-{id}"),
        "image_uri": format!("s3://flashfit/uploads/{id}.jpg"), "uploaded_at": "2026-11-22T10:00:00Z",
        "quality": {"width": 800, "height": 600, "blur_score": 350.5, "brightness": 120.25, "warnings": ["too_dark"]},
        "detection": {"class": "Footwear", "confidence": 0.71, "bbox": [10.0, 20.0, 300.0, 400.0],
            "source": "detector", "model": "ssd-mobilenetv2-oidv4",
            "all": [{"class": "Footwear", "confidence": 0.71, "bbox": [10.0, 20.0, 300.0, 400.0], "model": "ssd-mobilenetv2-oidv4", "role": "garment"},
                    {"class": "person", "confidence": 0.6, "bbox": [0.0, 0.0, 800.0, 600.0], "model": "centernet-coco", "role": "person"}]},
        "classification": {"category": "boots", "group": "footwear", "confidence": 0.8,
            "topk": [{"category": "boots", "confidence": 0.8}, {"category": "sneakers", "confidence": 0.1}],
            "is_clothing": 0.9, "flagged": false},
        "attributes": {"color_primary": "black", "color_secondary": "brown",
            "colors": [{"name": "black", "rgb": [20, 20, 22], "share": 0.7}, {"name": "brown", "rgb": [120, 70, 20], "share": 0.3}],
            "pattern": "solid", "fit": "regular", "formality": 0.45, "seasons": ["fall", "winter"],
            "style_tags": ["classic"], "background_mask": "border"},
        "embedding": {"image_vector": [0.1, 0.2], "caption": "black boots, with brown, classic", "text_vector": [0.3]},
        "models": [{"stage": "detect", "name": "ssd-mobilenetv2-oidv4", "version": "1"}],
        "processed_at": at,
    })
}

/// A record's message payload.
pub(crate) fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// The bytes of one object of the table's store.
/// Writes one tombstone of `user`'s `garment` to the `garment_deletes` table at `offset`.
pub(crate) async fn tombstone(deletes: &Table, user: &str, garment: &str, offset: i64) {
    let value = json!({"event_id": format!("d-{garment}"), "user_id": user,
        "garment_id": garment, "deleted_at": "2026-11-21T00:00:00Z"});
    let row = crate::layout::GARMENT_DELETES
        .convert(&flashfit_runtime::Message {
            value: Some(bytes(&value).into()),
            ..Default::default()
        })
        .expect("tombstone");
    deletes
        .write_range(
            &Range {
                topic: "flashfit.deletes".into(),
                partition: 0,
                first: offset,
                last: offset,
            },
            &[row],
        )
        .await
        .expect("write tombstone");
}

pub(crate) async fn object(t: &Table, path: &str) -> Bytes {
    t.store
        .get(&Path::from(path))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
}

fn table() -> Table {
    Table::new(
        Arc::new(InMemory::new()),
        Path::from("warehouse/garments"),
        GARMENTS,
    )
}

fn range(first: i64, last: i64) -> Range {
    Range {
        topic: "flashfit.embedded".into(),
        partition: 2,
        first,
        last,
    }
}

async fn read_all(t: &Table, path: &str) -> arrow::array::RecordBatch {
    let bytes = object(t, path).await;
    let mut reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("reader")
        .build()
        .expect("build");
    reader.next().expect("one batch").expect("batch")
}

#[test]
fn rows_have_the_contract_columns() {
    let row = garments::row(&bytes(&record("e1", "2026-11-22T23:59:59.5Z"))).expect("row");
    let b = GARMENTS.batch(&[row]).expect("batch");
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for c in [
        "event_id",
        "garment_id",
        "user_id",
        "image_uri",
        "status",
        "width",
        "height",
        "blur_score",
        "brightness",
        "quality_warnings",
        "detection_class",
        "detection_confidence",
        "bbox",
        "detection_source",
        "detections",
        "category",
        "category_confidence",
        "category_topk",
        "is_clothing",
        "color_primary",
        "color_secondary",
        "colors",
        "pattern",
        "fit",
        "formality",
        "seasons",
        "style_tags",
        "caption",
        "models",
        "processed_at",
        "outfit_id",
        "outfit_item",
    ] {
        assert!(names.contains(&c), "missing {c}");
    }
    assert_eq!(names.len(), 32);
    let col = |n: &str| b.column(b.schema().index_of(n).expect("col")).clone();
    assert_eq!(col("category").as_string::<i32>().value(0), "boots");
    assert_eq!(col("detections").as_list::<i32>().value(0).len(), 2);
    assert_eq!(col("colors").as_list::<i32>().value(0).len(), 2);
    assert_eq!(
        GARMENTS
            .dt(&garments::row(&bytes(&record("e1", "2026-11-22T23:59:59.5Z"))).expect("row"))
            .expect("dt"),
        "2026-11-22"
    );
    // A record without processed_at (not from the last stage) cannot become a row.
    let mut bad = record("e2", "x");
    bad.as_object_mut().expect("obj").remove("processed_at");
    assert!(matches!(
        garments::row(&bytes(&bad)),
        Err(Error::BadRecord(_))
    ));
    assert!(garments::row(&bytes(&record("e3", "yesterday"))).is_err());
}

#[test]
fn a_garment_of_a_split_outfit_names_its_outfit() {
    let mut item = record("e1/top-1", "2026-11-22T10:00:00Z");
    item["garment_id"] = "g1/top-1".into();
    item["outfit"] = json!({"event_id": "e1", "garment_id": "g1", "item": "top-1",
        "garment_ids": ["g1/top-1", "g1/bottom-1"]});
    let row = garments::row(&bytes(&item)).expect("row");
    assert_eq!(
        (&row["outfit_id"], &row["outfit_item"]),
        (&json!("g1"), &json!("top-1"))
    );
    let plain = garments::row(&bytes(&record("e2", "2026-11-22T10:00:00Z"))).expect("row");
    assert_eq!(
        (&plain["outfit_id"], &plain["outfit_item"]),
        (&Value::Null, &Value::Null)
    );
}

#[tokio::test]
async fn a_range_is_written_once_split_by_day_and_read_back() {
    let t = table();
    let rows: Vec<Value> = [
        ("a", "2026-11-21T23:00:00Z"),
        ("b", "2026-11-22T01:00:00Z"),
        ("c", "2026-11-22T02:00:00Z"),
    ]
    .iter()
    .map(|(id, at)| garments::row(&bytes(&record(id, at))).expect("row"))
    .collect();
    let w = t.write_range(&range(100, 104), &rows).await.expect("write");
    let Written::Files(files) = w else {
        panic!("{w:?}")
    };
    assert_eq!(
        files,
        vec![
            "warehouse/garments/dt=2026-11-21/part-flashfit.embedded-002-00000000000000000100-00000000000000000104.parquet",
            "warehouse/garments/dt=2026-11-22/part-flashfit.embedded-002-00000000000000000100-00000000000000000104.parquet",
        ]
    );
    let day2 = read_all(&t, &files[1]).await;
    assert_eq!(day2.num_rows(), 2);
    let ids = day2.column(0).as_string::<i32>();
    assert_eq!((ids.value(0), ids.value(1)), ("b", "c"));
    // The same range again (a retry, a crash before the commit, a replay): nothing new.
    let before = object(&t, files[0].as_str()).await;
    assert_eq!(
        t.write_range(&range(100, 104), &rows[..1])
            .await
            .expect("again"),
        Written::AlreadyThere { last: 104 }
    );
    let after = object(&t, files[0].as_str()).await;
    assert_eq!(before, after);
    assert_eq!(
        t.existing("flashfit.embedded", 2, 100)
            .await
            .expect("marker"),
        Some(104)
    );
    assert_eq!(
        t.existing("flashfit.embedded", 2, 105)
            .await
            .expect("marker"),
        None
    );
    assert_eq!(
        t.existing("flashfit.embedded", 3, 100)
            .await
            .expect("marker"),
        None
    );
}

/// A table with ranges 0–9, 10–24 and 25 of partition 2, one row each.
async fn three_ranges() -> Table {
    let t = table();
    for (first, last) in [(0, 9), (10, 24), (25, 25)] {
        let row = garments::row(&bytes(&record(
            &format!("r{first}"),
            "2026-11-22T01:00:00Z",
        )))
        .expect("row");
        t.write_range(&range(first, last), &[row])
            .await
            .expect("write");
    }
    t
}

/// A partition's ranges come from one LIST: their extents are in the index entries' names,
/// so markers are not read (here they are made unreadable and the answer is unchanged); a
/// marker without an entry (an older table) is read once and gets its entry.
#[tokio::test]
async fn ranges_are_known_from_one_listing() {
    let t = three_ranges().await;
    let row = |id: &str| garments::row(&bytes(&record(id, "2026-11-22T01:00:00Z"))).expect("row");
    let want = std::collections::BTreeMap::from([(0, 9), (10, 24), (25, 25)]);
    assert_eq!(
        t.ranges("flashfit.embedded", 2).await.expect("ranges"),
        want
    );
    for first in [0i64, 10, 25] {
        t.store
            .put(
                &t.marker("flashfit.embedded", 2, first),
                PutPayload::from("not json"),
            )
            .await
            .expect("put");
    }
    assert_eq!(
        t.ranges("flashfit.embedded", 2).await.expect("one LIST"),
        want
    );
    // Entries gone (a table from before them): the markers are read again.
    let healthy = table();
    for (first, last) in [(0, 9), (10, 24)] {
        healthy
            .write_range(&range(first, last), &[row(&format!("r{first}"))])
            .await
            .expect("write");
        healthy
            .store
            .delete(&healthy.index_entry("flashfit.embedded", 2, first, last))
            .await
            .expect("delete");
    }
    let want = std::collections::BTreeMap::from([(0, 9), (10, 24)]);
    assert_eq!(
        healthy.ranges("flashfit.embedded", 2).await.expect("read"),
        want
    );
    // … and get their entries back.
    for (first, last) in [(0, 9), (10, 24)] {
        healthy
            .store
            .head(&healthy.index_entry("flashfit.embedded", 2, first, last))
            .await
            .expect("entry written back");
    }
}

/// Markers older than the cutoff fold into one summary per partition: the listing shrinks to
/// the summary, the ranges read the same, a new range is written beside it and folds into a
/// newer summary that replaces the old one; markers newer than the cutoff stay.
#[tokio::test]
async fn old_markers_fold_into_a_summary_and_ranges_read_the_same() {
    use futures::TryStreamExt;
    let t = three_ranges().await;
    let row = |id: &str| garments::row(&bytes(&record(id, "2026-11-22T01:00:00Z"))).expect("row");
    let listing = |t: &Table| {
        let (store, dir) = (t.store.clone(), t.marker_dir("flashfit.embedded", 2));
        async move {
            let mut names: Vec<String> = store
                .list(Some(&dir))
                .try_collect::<Vec<_>>()
                .await
                .expect("list")
                .into_iter()
                .filter_map(|m| m.location.filename().map(str::to_owned))
                .collect();
            names.sort();
            names
        }
    };
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(t.fold_markers(past).await.expect("nothing old"), 0);
    assert_eq!(listing(&t).await.len(), 6, "three markers, three entries");
    let future = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(t.fold_markers(future).await.expect("fold"), 3);
    assert_eq!(listing(&t).await, vec![format!("summary-{:020}", 25)]);
    let want = std::collections::BTreeMap::from([(0, 9), (10, 24), (25, 25)]);
    assert_eq!(
        t.ranges("flashfit.embedded", 2).await.expect("ranges"),
        want
    );
    // The files stay.
    let files: Vec<_> = t
        .store
        .list(Some(&t.root))
        .try_collect::<Vec<_>>()
        .await
        .expect("list");
    assert_eq!(
        files
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .count(),
        3
    );
    // A new range beside the summary, folded later into a newer summary.
    t.write_range(&range(26, 30), &[row("r26")])
        .await
        .expect("write");
    let mut want = want;
    want.insert(26, 30);
    assert_eq!(
        t.ranges("flashfit.embedded", 2).await.expect("ranges"),
        want
    );
    let future = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(t.fold_markers(future).await.expect("fold"), 1);
    assert_eq!(listing(&t).await, vec![format!("summary-{:020}", 26)]);
    assert_eq!(
        t.ranges("flashfit.embedded", 2).await.expect("ranges"),
        want
    );
}

#[tokio::test]
async fn the_same_rows_give_the_same_bytes() {
    let rows = vec![garments::row(&bytes(&record("a", "2026-11-22T01:00:00Z"))).expect("row")];
    assert_eq!(
        GARMENTS.parquet_bytes(&rows).expect("p1"),
        GARMENTS.parquet_bytes(&rows).expect("p2")
    );
}

/// `schemas/garments.md` is what analysts read: its column table must list the schema's
/// columns in order.
/// The column names of a markdown table in `schemas/` (rows starting ``| `name` ``), in order.
pub(crate) fn documented_columns(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_documented_schema_matches_the_arrow_schema() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/garments.md"),
    )
    .expect("doc");
    let documented = documented_columns(&doc);
    let actual: Vec<String> = garments::schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(documented, actual);
}

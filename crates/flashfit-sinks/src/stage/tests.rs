//! The sink on the runtime's harness (the real Processor: outcomes, DLQ, retries) over an
//! in-memory store: replays with other batch boundaries and from a fresh process add nothing.

use std::sync::Arc;

use arrow::array::AsArray;
use bytes::Bytes;
use flashfit_config::RuntimeConfig;
use flashfit_runtime::harness;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::table::tests::record;

fn input(n: usize, bad: &[usize]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let v = if bad.contains(&i) {
                b"{not json".to_vec()
            } else {
                serde_json::to_vec(&record(&format!("e{i}"), "2026-11-22T10:00:00Z")).expect("json")
            };
            (Some(format!("g{i}").into_bytes()), v)
        })
        .collect()
}

fn sink(store: Arc<dyn ObjectStore>, max_bytes: usize) -> Arc<ParquetSink> {
    Arc::new(ParquetSink::new(
        Table::new(store, Path::from("wh/garments"), crate::layout::GARMENTS),
        "flashfit.embedded".into(),
        max_bytes,
    ))
}

fn cfg(batch: usize) -> RuntimeConfig {
    RuntimeConfig {
        batch_size: batch,
        ..RuntimeConfig::default()
    }
}

/// Every (path, bytes) under the table, and the event ids in its Parquet files.
async fn snapshot(store: &Arc<dyn ObjectStore>) -> (Vec<(String, Bytes)>, Vec<String>) {
    snapshot_of(store, "wh/garments").await
}

async fn snapshot_of(
    store: &Arc<dyn ObjectStore>,
    table: &str,
) -> (Vec<(String, Bytes)>, Vec<String>) {
    let metas: Vec<_> = store
        .list(Some(&Path::from(table)))
        .try_collect()
        .await
        .expect("list");
    let mut objects = Vec::new();
    let mut ids = Vec::new();
    for m in metas {
        let bytes = store
            .get(&m.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        if m.location.as_ref().ends_with(".parquet") {
            for b in ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .expect("reader")
                .build()
                .expect("build")
            {
                let b = b.expect("batch");
                let col = b.column(0).as_string::<i32>();
                ids.extend((0..b.num_rows()).map(|i| col.value(i).to_owned()));
            }
        }
        objects.push((m.location.to_string(), bytes));
    }
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    ids.sort();
    (objects, ids)
}

#[tokio::test]
async fn replays_with_other_batches_or_from_a_fresh_process_add_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let data = input(10, &[3]);
    let s = sink(store.clone(), 1 << 30);
    let run = harness::run(s.clone(), data.clone(), cfg(4)).await;
    assert_eq!(
        run.on("flashfit.dlq.parquet").len(),
        1,
        "the bad record is dead-lettered"
    );
    assert!(run.result.unfinished.is_empty());
    let (first, ids) = snapshot(&store).await;
    assert_eq!(ids.len(), 9, "every good record once");
    // Three batches of 4, 4, 2: three files, three markers and their index entries.
    assert_eq!(
        first.len(),
        9,
        "{:?}",
        first.iter().map(|o| &o.0).collect::<Vec<_>>()
    );

    // The same sink again with other batch boundaries (a consumer-group reset).
    harness::run(s.clone(), data.clone(), cfg(3)).await;
    assert_eq!(snapshot(&store).await.0, first);
    // A fresh process (no memory of ranges) with yet other boundaries.
    harness::run(sink(store.clone(), 1 << 30), data.clone(), cfg(7)).await;
    assert_eq!(snapshot(&store).await.0, first);
    harness::run(sink(store.clone(), 1 << 30), data.clone(), cfg(1)).await;
    assert_eq!(snapshot(&store).await.0, first);
    // Markers folded into a summary (older than the topic's retention): a fresh process
    // still writes nothing again.
    let table = Table::new(
        store.clone(),
        Path::from("wh/garments"),
        crate::layout::GARMENTS,
    );
    let later = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(table.fold_markers(later).await.expect("fold"), 3);
    let (folded, ids) = snapshot(&store).await;
    assert_eq!(ids.len(), 9);
    harness::run(sink(store.clone(), 1 << 30), data, cfg(5)).await;
    assert_eq!(snapshot(&store).await.0, folded);
}

/// Records on two days, so one range writes two files (two `file` fault points).
fn two_days(n: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let day = if i % 2 == 0 { "22" } else { "23" };
            let at = format!("2026-11-{day}T10:00:00Z");
            let v = serde_json::to_vec(&record(&format!("e{i}"), &at)).expect("json");
            (Some(format!("g{i}").into_bytes()), v)
        })
        .collect()
}

fn faulty_sink(store: Arc<dyn ObjectStore>, hook: crate::table::FaultHook) -> Arc<ParquetSink> {
    let mut table = Table::new(store, Path::from("wh/garments"), crate::layout::GARMENTS);
    table.faults = Some(hook);
    Arc::new(ParquetSink::new(table, "flashfit.embedded".into(), 1 << 30))
}

/// A hook that fails the `nth` time `step` is reached, as a crash there would.
fn crash_at(step: &'static str, nth: usize) -> crate::table::FaultHook {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    crate::table::FaultHook(Arc::new(move |s: &str| {
        if s == step && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == nth {
            return Err(crate::Error::Storage(format!(
                "injected crash at {step} #{nth}"
            )));
        }
        Ok(())
    }))
}

/// Each offset's event id appears at most once among the table's readable files.
fn assert_no_duplicates(ids: &[String], when: &str) {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        assert!(seen.insert(id), "{id} readable twice {when}: {ids:?}");
    }
}

/// Issue 12, defect 3: whatever step of a range write crashes (files staged, marker written,
/// first or second file in place, staged copies deleted), and whatever batch boundaries the
/// restarted process uses, no offset is ever readable twice, and in the end every one is
/// readable once.
#[tokio::test]
async fn a_crash_at_any_step_of_a_write_then_other_boundaries_never_duplicate_an_offset() {
    let data = two_days(10);
    let messages = harness::messages("flashfit.embedded", 0, data.clone());
    for (step, nth) in [
        ("staged", 0),
        ("staged", 1),
        ("marker", 0),
        ("file", 0),
        ("file", 1),
        ("cleanup", 0),
    ] {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // The crashed attempt: one batch of all ten offsets, stopped at the fault.
        let crashed = faulty_sink(store.clone(), crash_at(step, nth));
        let outcomes = crashed.process(messages.clone()).await;
        assert!(
            outcomes.iter().all(|o| matches!(o, Outcome::Retry(_)))
                || step == "cleanup"
                    && outcomes
                        .iter()
                        .all(|o| matches!(o, Outcome::Retry(_) | Outcome::Emit(_))),
            "{step}#{nth}: {outcomes:?}"
        );
        let (_, ids) = snapshot(&store).await;
        assert_no_duplicates(&ids, &format!("after a crash at {step}#{nth}"));
        // Restarts with other boundaries: first a short batch, then the rest.
        for batch in [3, 4] {
            harness::run(sink(store.clone(), 1 << 30), data.clone(), cfg(batch)).await;
            let (_, ids) = snapshot(&store).await;
            assert_no_duplicates(&ids, &format!("after {step}#{nth} and batches of {batch}"));
            assert_eq!(ids.len(), 10, "{step}#{nth}: every offset once: {ids:?}");
        }
    }
}

/// Two writers of the same first offset with different ranges (a restart racing the old
/// owner): exactly one range is committed, the other writer adopts it.
#[tokio::test]
async fn two_writers_of_one_first_offset_commit_one_range() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let data = two_days(10);
    let all = harness::messages("flashfit.embedded", 0, data.clone());
    let table = Table::new(
        store.clone(),
        Path::from("wh/garments"),
        crate::layout::GARMENTS,
    );
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|m| table.layout.convert(m).expect("row"))
        .collect();
    // B stages 0..=3; before its marker, A commits 0..=9.
    let a = table.clone();
    let raced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r2 = raced.clone();
    let hook = crate::table::FaultHook(Arc::new(move |s: &str| {
        if s == "staged" && !r2.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let written = futures::executor::block_on(a.write_range(
                &crate::table::Range {
                    topic: "flashfit.embedded".into(),
                    partition: 0,
                    first: 0,
                    last: 9,
                },
                &rows,
            ))?;
            assert!(matches!(written, crate::table::Written::Files(_)));
        }
        Ok(())
    }));
    let b = faulty_sink(store.clone(), hook);
    let outcomes = b.process(all[..4].to_vec()).await;
    assert!(raced.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Emit(_))),
        "B's offsets are inside A's range: {outcomes:?}"
    );
    let (objects, ids) = snapshot(&store).await;
    assert_no_duplicates(&ids, "after the race");
    assert_eq!(ids.len(), 10);
    // B's staged copies are gone; only A's files and marker remain.
    let staged: Vec<_> = store
        .list(Some(&Path::from("wh/_staging")))
        .try_collect::<Vec<_>>()
        .await
        .expect("list");
    assert!(staged.is_empty(), "{staged:?}");
    assert_eq!(
        objects.len(),
        4,
        "two files, one marker and its index entry"
    );
}

#[tokio::test]
async fn new_offsets_after_a_replay_are_written_once() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    harness::run(sink(store.clone(), 1 << 30), input(6, &[]), cfg(4)).await;
    // The topic grew: 6 old + 4 new records, replayed from the beginning by a fresh process.
    harness::run(sink(store.clone(), 1 << 30), input(10, &[]), cfg(5)).await;
    let (_, ids) = snapshot(&store).await;
    let mut want: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn files_roll_by_bytes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let data = input(6, &[]);
    let one = data[0].1.len();
    harness::run(sink(store.clone(), 2 * one), data, cfg(6)).await;
    let (objects, ids) = snapshot(&store).await;
    let files = objects.iter().filter(|o| o.0.ends_with(".parquet")).count();
    assert_eq!((files, ids.len()), (3, 6));
}

#[tokio::test]
async fn delete_events_become_tombstones_once_and_bad_ones_are_dead_lettered() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let make = || {
        Arc::new(
            ParquetSink::new(
                Table::new(
                    store.clone(),
                    Path::from("wh/garments"),
                    crate::layout::GARMENTS,
                ),
                "flashfit.embedded".into(),
                1 << 30,
            )
            .with_route(
                "flashfit.deletes".into(),
                Table::new(
                    store.clone(),
                    Path::from("wh/garment_deletes"),
                    crate::layout::GARMENT_DELETES,
                ),
            ),
        )
    };
    let deletes: Vec<(Option<Vec<u8>>, Vec<u8>)> = [
        r#"{"event_id":"d0","user_id":"u1","garment_id":"g-e1","deleted_at":"2026-11-22T11:00:00Z"}"#,
        r#"{"event_id":"d1","user_id":"u1","garment_id":"","deleted_at":"2026-11-22T11:00:00Z"}"#,
        r#"{"event_id":"d2","user_id":"u1","garment_id":"g-e2","deleted_at":"2026-11-23T00:00:01+01:00"}"#,
    ]
    .iter()
    .map(|v| (None, v.as_bytes().to_vec()))
    .collect();
    // Both topics in one batch, interleaved.
    let mut messages = harness::messages("flashfit.embedded", 0, input(3, &[]));
    let dels = harness::messages("flashfit.deletes", 0, deletes);
    messages.insert(1, dels[0].clone());
    messages.extend(dels[1..].iter().cloned());
    let run = harness::run_messages(make(), messages.clone(), cfg(10)).await;
    assert!(run.result.unfinished.is_empty());
    let dlq = run.on("flashfit.dlq.parquet");
    assert_eq!(dlq.len(), 1, "the delete with an empty garment_id");
    let (tombstones, ids) = snapshot_of(&store, "wh/garment_deletes").await;
    assert_eq!(ids, vec!["d0", "d2"]);
    let paths: Vec<&str> = tombstones.iter().map(|o| o.0.as_str()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("wh/garment_deletes/dt=2026-11-22/part-flashfit.deletes-000-")),
        "{paths:?}"
    );
    assert_eq!(snapshot(&store).await.1.len(), 3, "garments untouched");
    // Redelivered from a fresh process with other batch boundaries: nothing new.
    let before = (snapshot(&store).await.0, tombstones);
    harness::run_messages(make(), messages, cfg(2)).await;
    let after = (
        snapshot(&store).await.0,
        snapshot_of(&store, "wh/garment_deletes").await.0,
    );
    assert_eq!(before, after);
}

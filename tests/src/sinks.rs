//! The `garments` Parquet table end to end, one suite run against both backends (a local
//! directory and the S3 server): photos through the whole chain into `flashfit.embedded`, the
//! parquet worker writes the table, DuckDB and pyarrow read it; re-running the sink over its
//! input from the beginning (a new consumer group) leaves every object as it was.

use std::collections::HashSet;
use std::time::Duration;

use flashfit_config::Config;
use flashfit_pipeline::{Pipeline, build_stage, run_stages, worker_config};
use flashfit_runtime::Metrics;
use flashfit_storage::Location;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Every object under the warehouse's table: path and bytes.
async fn objects(config: &Config) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
    let wh = Location::open(&config.warehouse_uri, &config.s3)?;
    let root = wh.prefix().clone().join("garments");
    let metas: Vec<_> = wh.store().list(Some(&root)).try_collect().await?;
    let mut out = Vec::new();
    for m in metas {
        let b = wh.store().get(&m.location).await?.bytes().await?;
        out.push((m.location.to_string(), b));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn parquet_files(o: &[(String, bytes::Bytes)]) -> usize {
    o.iter().filter(|(p, _)| p.ends_with(".parquet")).count()
}

/// Runs the parquet worker (rolling every 2 records or 500 ms) until it has consumed
/// `records` messages and `done` says so.
async fn run_sink<F: Fn(&[(String, bytes::Bytes)]) -> bool>(
    config: &Config,
    records: u64,
    done: F,
) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
    let mut c = config.clone();
    c.parquet.max_rows = 2;
    c.parquet.roll_ms = 500;
    let c = worker_config(flashfit_schema::StageName::Parquet, &c);
    let stage = build_stage(
        flashfit_schema::StageName::Parquet,
        &c,
        &Pipeline::default_pipeline(),
    )?;
    let token = CancellationToken::new();
    let t = token.clone();
    let metrics = Metrics::new();
    let received = metrics.stage("parquet");
    let task = tokio::spawn(async move { run_stages(&c, vec![stage], metrics, t).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut last = Vec::new();
    while tokio::time::Instant::now() < deadline {
        last = objects(config).await?;
        if received.count("received", None) >= records && done(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let commits of the last ranges happen, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await???;
    Ok(last)
}

/// Runs the lance worker until it has consumed `records` messages; returns the table's row
/// count.
async fn run_lance(config: &Config, records: u64) -> anyhow::Result<usize> {
    let mut c = config.clone();
    c.lance.batch_rows = 2;
    c.lance.linger_ms = 200;
    run_worker_until(&c, "lance", records).await?;
    let db = flashfit_lance::connect(&c.lancedb_uri, &c.s3, &c.lance).await?;
    Ok(
        flashfit_lance::garments(&db, &c.lance.table, flashfit_pipeline::vector_dims(&c)?)
            .await?
            .count_rows(None)
            .await?,
    )
}

/// The test user's garments most like the suit photo's garment.
async fn like_suit(config: &Config) -> anyhow::Result<Vec<flashfit_lance::search::Hit>> {
    Ok(flashfit_pipeline::search(
        config,
        "u-test",
        &flashfit_pipeline::SearchQuery::Like("g-person_suit.jpg".into()),
        10,
        &Default::default(),
    )
    .await?)
}

async fn garments_suite(warehouse_uri: String, lancedb_uri: String) -> anyhow::Result<()> {
    let mut stack = Stack::new()?;
    stack.config.warehouse_uri = warehouse_uri.clone();
    stack.config.lancedb_uri = lancedb_uri;
    let pipeline = Pipeline::default_pipeline();
    let names: Vec<&str> = pipeline.stages.iter().map(|s| s.as_str()).collect();
    let mut all = names.clone();
    all.push("parquet");
    all.push("lance");
    stack.ensure_topics(&all).await?;
    run_chain(&stack).await?;

    // Three garments passed quality: rows for exactly those, read as analysts read them.
    let written = run_sink(&stack.config, 3, |o| {
        // Every range marker names the last offset it covers; 3 records in at most 3 ranges.
        o.iter().filter(|(p, _)| p.contains("/_ranges/")).count() >= 1
            && parquet_files(o) >= 1
            && rows_written(o) >= 3
    })
    .await?;
    assert!(parquet_files(&written) >= 1);
    let c = flashfit_pipeline::compact(&stack.config).await?;
    assert_eq!((c.rows_read, c.rows_written), (3, 3));
    let v = python_check(&stack, "check_garments.py", &warehouse_uri).await?;
    assert_eq!(v["pyarrow_rows"], 3, "{v}");
    assert_eq!(v["current_rows"], serde_json::json!([3, 3]), "{v}");
    if warehouse_uri.starts_with("file://") {
        assert_eq!(v["duckdb_direct_rows"], 3, "{v}");
    }
    let got: HashSet<&str> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r[0].as_str())
        .collect();
    assert_eq!(
        got,
        HashSet::from(["person_suit.jpg", "fmnist_ankle_boot.png", "coffee.jpg"]),
        "{v}"
    );
    for r in v["rows"].as_array().expect("rows") {
        assert!(
            r[1].is_string() && r[2].is_string(),
            "category and colour: {r}"
        );
        assert!(
            r[4].as_str().is_some_and(|d| d.len() == 10),
            "dt partition: {r}"
        );
        assert_eq!(r[6], true);
    }
    let columns: Vec<&str> = v["columns"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in [
        "event_id",
        "bbox",
        "detections",
        "category_topk",
        "colors",
        "models",
        "processed_at",
        "dt",
    ] {
        assert!(columns.contains(&c), "{c} not in {columns:?}");
    }

    // The vectors in LanceDB, read back by the Python lancedb package.
    let lance = run_lance(&stack.config, 3).await?;
    assert_eq!(lance, 3);
    let v = python_check(&stack, "check_lance.py", &stack.config.lancedb_uri).await?;
    assert_eq!(v["rows"], 3, "{v}");
    assert_eq!(
        (v["image_dim"].as_u64(), v["text_dim"].as_u64()),
        (Some(1280), Some(384)),
        "{v}"
    );
    assert_eq!(v["nearest_is_itself"], true, "{v}");
    // Search: the user's other garments, nearest first; a text query finds a caption.
    let like = like_suit(&stack.config).await?;
    let ids: HashSet<&str> = like.iter().map(|h| h.garment_id.as_str()).collect();
    assert_eq!(
        ids,
        HashSet::from(["g-fmnist_ankle_boot.png", "g-coffee.jpg"]),
        "{like:?}"
    );
    assert!(like[0].score >= like[1].score);
    let caption = like[0].caption.clone().unwrap_or_default();
    let text = flashfit_pipeline::search(
        &stack.config,
        "u-test",
        &flashfit_pipeline::SearchQuery::Text(caption.clone()),
        1,
        &Default::default(),
    )
    .await?;
    assert_eq!(
        text[0].garment_id, like[0].garment_id,
        "its own caption finds it: {caption}"
    );
    // The same through the HTTP API.
    let token = CancellationToken::new();
    let (addr, server) =
        flashfit_serve::serve(&stack.config, "127.0.0.1:0".parse()?, token.clone()).await?;
    let addr = addr.to_string();
    let (code, body) =
        http_get(&addr, "/v1/users/u-test/search?like=g-person_suit.jpg&k=1").await?;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        v["results"][0]["garment_id"],
        like[0].garment_id.as_str(),
        "{v}"
    );
    let (code, body) = http_get(&addr, "/v1/users/nobody/search?like=g-x").await?;
    assert_eq!((code, body.as_str()), (200, r#"{"results":[]}"#));
    let (code, body) = http_get(&addr, "/v1/users/u-test/search?k=0&like=g-x").await?;
    assert!(code == 400 && body.contains("k must be"), "{code} {body}");
    let (code, _) = http_get(&addr, "/v1/users/u-test/search").await?;
    assert_eq!(code, 400);
    token.cancel();
    server.await?;
    // Replayed as a new consumer group: still one row per garment.
    let mut again = stack.config.clone();
    again.kafka.group_prefix = format!("{}-replay", again.kafka.group_prefix);
    assert_eq!(run_lance(&again, 3).await?, 3);

    // The sink again over its whole input, as a new consumer group: nothing changes.
    let mut again = stack.config.clone();
    again.kafka.group_prefix = format!("{}-replay", again.kafka.group_prefix);
    let before = objects(&stack.config).await?;
    let after = run_sink(&again, 3, |_| true).await?;
    assert_eq!(after, before, "a replay rewrote or added objects");

    // Reprocessing the uploads (as a new model version would): the log gains a row per
    // garment; the current view and the vectors do not change.
    let current =
        |v: &serde_json::Value| (v["current_ids"].clone(), v["current_query_ids"].clone());
    let before = current(&python_check(&stack, "check_garments.py", &warehouse_uri).await?);
    run_chain_round(&stack, Some("reprocess")).await?;
    run_sink(&stack.config, 3, |o| rows_written(o) >= 6).await?;
    let c = flashfit_pipeline::compact(&stack.config).await?;
    assert_eq!((c.rows_read, c.rows_written), (6, 3));
    let v = python_check(&stack, "check_garments.py", &warehouse_uri).await?;
    assert_eq!(v["pyarrow_rows"], 6, "{v}");
    assert_eq!(current(&v), before, "{v}");
    assert_eq!(run_lance(&stack.config, 3).await?, 3);

    // The owner deletes a garment: its vector row goes, a tombstone lands in Parquet, and
    // garments_current (and the README's query) leave it out.
    let deletes = stack.topics.deletes();
    flashfit_runtime::kafka::ensure_topics(&stack.config.kafka, std::slice::from_ref(&deletes))
        .await?;
    let delete = serde_json::json!({"event_id": "del-coffee", "user_id": "u-test",
        "garment_id": "g-coffee.jpg", "deleted_at": "2026-11-22T12:00:00Z"});
    stack
        .publish_to(
            &stack.producer()?,
            &deletes,
            &[(b"g-coffee.jpg".to_vec(), serde_json::to_vec(&delete)?)],
        )
        .await?;
    assert_eq!(run_lance(&stack.config, 1).await?, 2);
    run_sink(&stack.config, 1, |_| true).await?;
    let c = flashfit_pipeline::compact(&stack.config).await?;
    assert_eq!((c.rows_written, c.deleted), (2, 1));
    let v = python_check(&stack, "check_garments.py", &warehouse_uri).await?;
    let left = serde_json::json!(["g-fmnist_ankle_boot.png", "g-person_suit.jpg"]);
    assert_eq!(v["deletes_rows"], 1, "{v}");
    assert_eq!(
        (&v["current_ids"], &v["current_query_ids"]),
        (&left, &left),
        "{v}"
    );
    let like = like_suit(&stack.config).await?;
    let ids: Vec<&str> = like.iter().map(|h| h.garment_id.as_str()).collect();
    assert_eq!(ids, vec!["g-fmnist_ankle_boot.png"]);
    let v = python_check(&stack, "check_lance.py", &stack.config.lancedb_uri).await?;
    assert_eq!(v["rows"], 2, "{v}");
    // Reprocessing a deleted garment does not bring it back.
    run_chain_round(&stack, Some("after-delete")).await?;
    assert_eq!(run_lance(&stack.config, 3).await?, 2);

    // Issue 13: every record the workers wrote on the way (three rounds of the chain and a
    // delete) is valid under the topic's JSON Schema, derived from the types.
    let rounds = 3;
    let passed = 3 * rounds;
    let v = validate_topic_records(
        &stack,
        &[
            ("flashfit.uploads", 4 * rounds),
            ("flashfit.quality", passed),
            ("flashfit.detected", passed),
            ("flashfit.classified", passed),
            ("flashfit.tagged", passed),
            ("flashfit.embedded", passed),
            ("flashfit.status", 4 * rounds),
            ("flashfit.deletes", 1),
        ],
    )
    .await?;
    assert_eq!(v["validated"]["flashfit.embedded"], passed, "{v}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");

    // Issue 14: `flashfit reprocess` by a predicate on the model version. A garment an older
    // model version made (its record as that worker wrote it: the boot's, with every model at
    // version "0") is in both tables; reprocessing where a model is at version 0 publishes a
    // new upload for it alone; after the chain and the sinks its current row has today's
    // models, no other garment gained a row, and LanceDB keeps one vector each.
    reprocess_by_model_version(&stack).await?;

    // Range markers folded into summaries (as `flashfit compact` does past the topics'
    // retention): the sink over its whole input as a new consumer group still rewrites and
    // adds nothing.
    let mut fold = stack.config.clone();
    fold.parquet.fold_markers_after_ms = 0;
    let folded = flashfit_pipeline::fold_markers(&fold).await?;
    assert!(
        folded
            .iter()
            .any(|(t, n)| t.rsplit('/').next() == Some("garments") && *n > 0),
        "{folded:?}"
    );
    let before = objects(&stack.config).await?;
    assert!(
        !before.iter().any(|(p, _)| {
            p.contains("/_ranges/")
                && p.rsplit('/')
                    .next()
                    .is_some_and(|f| f.parse::<i64>().is_ok())
        }),
        "markers left after folding"
    );
    let embedded = stack
        .topics
        .output_of(flashfit_schema::StageName::Embed)
        .unwrap_or_default();
    let input = read_all(&stack, &embedded, Duration::from_secs(3))
        .await?
        .len()
        + 1;
    let mut again = stack.config.clone();
    again.kafka.group_prefix = format!("{}-after-fold", again.kafka.group_prefix);
    let after = run_sink(&again, input as u64, |_| true).await?;
    assert_eq!(
        after, before,
        "a replay after folding rewrote or added objects"
    );
    Ok(())
}

async fn reprocess_by_model_version(stack: &Stack) -> anyhow::Result<()> {
    use flashfit_pipeline::progress::Progress;
    use flashfit_pipeline::reprocess::reprocess;
    use rdkafka::Message as _;
    let embedded = read_all(
        stack,
        &stack
            .topics
            .output_of(flashfit_schema::StageName::Embed)
            .unwrap_or_default(),
        Duration::from_secs(3),
    )
    .await?;
    let boot = embedded
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(m.payload()?).ok())
        .find(|v| v["garment_id"] == "g-fmnist_ankle_boot.png")
        .ok_or_else(|| anyhow::anyhow!("no embedded boot record"))?;
    let mut old = boot.clone();
    old["event_id"] = "old-boot-upload".into();
    old["garment_id"] = "g-old-boot".into();
    old["processed_at"] = "2026-10-01T00:00:00Z".into();
    for m in old["models"].as_array_mut().into_iter().flatten() {
        m["version"] = "0".into();
    }
    let model = old["models"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let embedded_topic = stack
        .topics
        .output_of(flashfit_schema::StageName::Embed)
        .unwrap_or_default();
    // The sink catches up first (the last round above ran the chain without it).
    run_sink(&stack.config, 3, |_| true).await?;
    let before = flashfit_pipeline::compact(&stack.config).await?;
    stack
        .publish_to(
            &stack.producer()?,
            &embedded_topic,
            &[(b"g-old-boot".to_vec(), serde_json::to_vec(&old)?)],
        )
        .await?;
    run_sink(&stack.config, 1, |_| true).await?;
    assert_eq!(run_lance(&stack.config, 1).await?, 3);
    let after_old = flashfit_pipeline::compact(&stack.config).await?;
    assert_eq!(after_old.rows_read, before.rows_read + 1);

    let predicate = format!("list_contains(model_versions, '{model}@0')");
    let dry = reprocess(&stack.config, &predicate, true, &mut Progress::quiet()).await?;
    assert_eq!((dry.selected, dry.published), (1, 0), "{dry}");
    assert_eq!(dry.sample, vec!["u-test/g-old-boot"], "{dry}");
    // Deleted garments are never selected: everything current is the two left and the old boot.
    let everything = reprocess(&stack.config, "true", true, &mut Progress::quiet()).await?;
    assert_eq!(everything.selected, 3, "{everything}");
    assert!(
        !everything.sample.iter().any(|g| g.contains("coffee")),
        "{everything}"
    );

    let watcher = stack.status_watcher()?;
    let tail = stack.tail(&stack.topics.uploads())?;
    let r = reprocess(&stack.config, &predicate, false, &mut Progress::quiet()).await?;
    assert_eq!((r.selected, r.published), (1, 1), "{r}");
    assert!(r.to_string().contains("published 1 upload events"), "{r}");
    let uploads = tail
        .collect_until(Duration::from_secs(30), |v| {
            v.iter().any(|m| {
                flashfit_pipeline::watch::header(m, flashfit_pipeline::reprocess::REPROCESS_HEADER)
                    .is_some()
            })
        })
        .await;
    let event: flashfit_schema::UploadEvent = uploads
        .iter()
        .filter(|m| {
            flashfit_pipeline::watch::header(m, flashfit_pipeline::reprocess::REPROCESS_HEADER)
                .as_deref()
                == Some(r.run.as_str())
        })
        .filter_map(|m| serde_json::from_slice(m.payload()?).ok())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no reprocess upload"))?;
    assert_eq!(
        (event.garment_id.as_str(), event.user_id.as_str()),
        ("g-old-boot", "u-test")
    );
    assert_eq!(
        event.image_uri,
        boot["image_uri"].as_str().unwrap_or_default()
    );
    assert_ne!(event.event_id, "old-boot-upload");
    run_stages_until(stack, &HashSet::from([event.event_id.clone()]), &watcher).await?;
    run_sink(&stack.config, 1, |_| true).await?;
    assert_eq!(
        run_lance(&stack.config, 1).await?,
        3,
        "one vector per garment"
    );
    let after = flashfit_pipeline::compact(&stack.config).await?;
    assert_eq!(
        after.rows_read,
        after_old.rows_read + 1,
        "only that garment has a new row"
    );
    // Its current row is today's; nothing is at version 0 any more.
    let again = reprocess(&stack.config, &predicate, true, &mut Progress::quiet()).await?;
    assert_eq!(again.selected, 0, "{again}");
    let now = reprocess(
        &stack.config,
        &format!(
            "garment_id = 'g-old-boot' and event_id = '{}'",
            event.event_id
        ),
        true,
        &mut Progress::quiet(),
    )
    .await?;
    assert_eq!(now.selected, 1, "{now}");
    Ok(())
}

/// Row count from the range markers (JSON, `last` among the fields): each covers
/// `last - first + 1` offsets (all good records here).
fn rows_written(o: &[(String, bytes::Bytes)]) -> i64 {
    o.iter()
        .filter(|(p, _)| p.contains("/_ranges/"))
        .filter_map(|(p, b)| {
            let first: i64 = p.rsplit('/').next()?.parse().ok()?;
            let body: serde_json::Value = serde_json::from_slice(b).ok()?;
            let last = body["last"].as_i64()?;
            Some(last - first + 1)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garments_table_on_a_local_directory() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flashfit-wh-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let r = garments_suite(
        format!("file://{}", dir.display()),
        format!("file://{}/lancedb", dir.display()),
    )
    .await;
    // FLASHFIT_KEEP_TEST_DIRS=1 keeps the warehouse for a look (its path is printed).
    if std::env::var_os("FLASHFIT_KEEP_TEST_DIRS").is_some() {
        eprintln!("warehouse kept at {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garments_table_on_the_s3_server() -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    garments_suite(
        format!("s3://flashfit/wh-{id}"),
        format!("s3://flashfit/lance-{id}"),
    )
    .await
}

/// An enriched record as the embed stage writes it (only what the table needs).
fn embedded_record(i: usize) -> (Vec<u8>, Vec<u8>) {
    let v = flashfit_schema::record::testing::embedded(
        &format!("e{i:03}"),
        &format!("g{i:03}"),
        "u-kill",
        "2026-11-22T10:00:00.000Z",
        (0, 0),
    );
    (
        format!("g{i:03}").into_bytes(),
        serde_json::to_vec(&v).expect("json"),
    )
}

/// Event ids in every Parquet file of the table (duplicates kept).
async fn event_ids(config: &Config) -> anyhow::Result<Vec<String>> {
    use arrow::array::AsArray;
    let mut ids = Vec::new();
    for (p, b) in objects(config).await? {
        if p.ends_with(".parquet") {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(b)?
                .build()?;
            for batch in reader {
                let batch = batch?;
                let col = batch.column(0).as_string::<i32>();
                ids.extend((0..batch.num_rows()).map(|i| col.value(i).to_owned()));
            }
        }
    }
    Ok(ids)
}

/// The real `flashfit worker parquet` SIGKILLed while it writes, then restarted: the table
/// holds every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_killed_mid_write_and_restarted_writes_every_row_once() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flashfit-wh-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let mut stack = Stack::new()?;
    stack.config.warehouse_uri = format!("file://{}", dir.display());
    stack.ensure_topics(&["embed", "parquet"]).await?;
    let n = 120;
    let msgs: Vec<_> = (0..n).map(embedded_record).collect();
    let topic = stack
        .topics
        .output_of(flashfit_schema::StageName::Embed)
        .expect("topic");
    stack.publish_to(&stack.producer()?, &topic, &msgs).await?;
    let spawn = || -> anyhow::Result<tokio::process::Child> {
        Ok(tokio::process::Command::new(flashfit_bin())
            .args(["worker", "parquet"])
            .envs(stack.child_env())
            .env("FLASHFIT_WAREHOUSE_URI", &stack.config.warehouse_uri)
            .env("FLASHFIT_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
            // Many small files, so the kill lands between (or inside) writes.
            .env("FLASHFIT_PARQUET__MAX_ROWS", "3")
            .env("FLASHFIT_PARQUET__ROLL_MS", "50")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?)
    };
    let mut first = spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen = 0;
    while tokio::time::Instant::now() < deadline {
        seen = event_ids(&stack.config).await?.len();
        if seen >= 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(seen >= 15, "the sink made no progress before the kill");
    first.start_kill()?;
    first.wait().await?;
    let killed_at = event_ids(&stack.config).await?.len();
    anyhow::ensure!(
        killed_at < n,
        "the kill came too late to test anything ({killed_at} rows)"
    );
    let mut second = spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline && event_ids(&stack.config).await?.len() < n {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let it settle: nothing more may appear.
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.start_kill()?;
    second.wait().await?;
    let mut ids = event_ids(&stack.config).await?;
    ids.sort();
    let want: Vec<String> = (0..n).map(|i| format!("e{i:03}")).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        ids, want,
        "killed after {killed_at} rows: every record exactly once"
    );
    eprintln!("sink kill test: killed after {killed_at} of {n} rows, 0 duplicates, 0 lost");
    Ok(())
}

/// Issue 14: the funnel tables. Real statuses and dead letters from the quality worker (a photo
/// too small → `rejected`, a value that is not JSON → dead-lettered `invalid_event` and
/// `failed`) and a feedback event, written by the parquet worker's funnel sinks (each its own
/// consumer group) and read back by DuckDB with the README's queries; a replay from a fresh
/// group adds no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnel_tables_record_statuses_dead_letters_and_feedback() -> anyhow::Result<()> {
    let mut stack = Stack::new()?;
    let dir = std::env::temp_dir().join(format!("flashfit-funnel-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let warehouse = format!("file://{}", dir.display());
    stack.config.warehouse_uri = warehouse.clone();
    stack.config.parquet.roll_ms = 500;
    stack.ensure_topics(&["quality", "parquet"]).await?;
    flashfit_runtime::kafka::ensure_topics(&stack.config.kafka, &[stack.topics.feedback()]).await?;
    let small = stack
        .put_upload("cat_small.jpg", photo("cat_small.jpg"))
        .await?;
    let p = stack.producer()?;
    stack
        .publish(&p, &[upload_event("small.jpg", &small)])
        .await?;
    stack
        .publish_raw(&p, &[(b"g-x".to_vec(), b"not json at all".to_vec())])
        .await?;
    let feedback = serde_json::json!({"event_id": "f1", "user_id": "u-test", "signal": "like",
        "garment_ids": ["g-small.jpg"], "ts": "2026-12-03T10:00:00Z"});
    stack
        .publish_to(
            &p,
            &stack.topics.feedback(),
            &[(b"u-test".to_vec(), serde_json::to_vec(&feedback)?)],
        )
        .await?;
    run_worker_until(&stack.config, "quality", 2).await?;

    let counts = [("statuses", 2), ("dead_letters", 1), ("feedback_events", 1)];
    run_funnel_until(&stack.config, &counts).await?;
    let v = python_check(&stack, "check_funnel.py", &warehouse).await?;
    assert_eq!(
        v["funnel"],
        serde_json::json!([["failed", "invalid_event", 0], ["rejected", "too_small", 1]]),
        "{v}"
    );
    assert_eq!(v["status_days"], 1, "{v}");
    let dead = &v["dead_letters"][0];
    assert_eq!(
        (&dead[0], &dead[1], &dead[3], &dead[4]),
        (
            &serde_json::json!("quality"),
            &serde_json::json!("invalid_event"),
            &serde_json::json!(1),
            &serde_json::json!(15)
        ),
        "{v}"
    );
    assert_eq!(v["feedback"], serde_json::json!([["like", 1]]), "{v}");

    // A replay of every input from fresh consumer groups writes nothing new.
    let mut again = stack.config.clone();
    again.kafka.group_prefix = format!("{}-replay", again.kafka.group_prefix);
    run_funnel_until(&again, &counts).await?;
    let after = python_check(&stack, "check_funnel.py", &warehouse).await?;
    assert_eq!(after, v);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs the parquet worker's funnel sinks until each named sink has received its count.
async fn run_funnel_until(config: &Config, counts: &[(&str, u64)]) -> anyhow::Result<()> {
    let workers: Vec<_> = flashfit_pipeline::build_workers(
        flashfit_schema::StageName::Parquet,
        config,
        &Pipeline::default_pipeline(),
    )?
    .into_iter()
    .filter(|w| counts.iter().any(|(n, _)| *n == w.stage.name()))
    .collect();
    anyhow::ensure!(workers.len() == counts.len(), "funnel sinks missing");
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let (c, m, t) = (config.clone(), metrics.clone(), token.clone());
    let task = tokio::spawn(async move { flashfit_pipeline::run_workers(&c, workers, m, t).await });
    let done = || {
        counts
            .iter()
            .all(|(n, k)| metrics.stage(n).count("received", None) >= *k)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline && !done() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The sinks roll files on time (`[parquet] roll_ms`) and flush at shutdown.
    tokio::time::sleep(Duration::from_millis(config.parquet.roll_ms + 1_000)).await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await???;
    anyhow::ensure!(done(), "the funnel sinks did not receive {counts:?}");
    Ok(())
}

//! The quality worker in-process (the same `run_stages` the binary calls) against Tansu and
//! the S3 server.

use std::collections::HashSet;
use std::time::Duration;

use flashfit_pipeline::{Pipeline, build_stage, run_stages, watch};
use flashfit_runtime::Metrics;
use flashfit_schema::{GarmentRecord, Reason, Status, headers};
use rdkafka::Message as _;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Starts the quality stage in this process; returns its shutdown token and task.
fn start_worker(
    stack: &Stack,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<flashfit_pipeline::Result<()>>,
) {
    let config = stack.config.clone();
    let token = CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move {
        let pipeline = Pipeline::parse(include_str!("../../pipelines/quality.toml"))?;
        let stage = build_stage(flashfit_schema::StageName::Quality, &config, &pipeline)?;
        run_stages(&config, vec![stage], Metrics::new(), t).await
    });
    (token, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_photos_in_statuses_out() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let watcher = stack.status_watcher()?;
    let quality_tail = stack.tail(&stack.topics.quality())?;
    let mut events = Vec::new();
    for name in photo_names() {
        let uri = stack.put_upload(&name, photo(&name)).await?;
        events.push(upload_event(&name, &uri));
    }
    let n = events.len();
    assert!(n >= 10);
    stack.publish(&stack.producer()?, &events).await?;
    let (token, task) = start_worker(&stack);

    let ids: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let seen = await_statuses(&watcher, &ids, Duration::from_secs(120)).await?;
    assert_eq!(seen.len(), n, "N photos in, N statuses out");
    let small = &seen["cat_small.jpg"];
    assert_eq!(small.status, Status::Rejected);
    assert_eq!(small.reasons, vec![Reason::TooSmall]);
    for (id, s) in &seen {
        if id != "cat_small.jpg" {
            assert_eq!(s.status, Status::Processed, "{id}: {s:?}");
        }
    }
    assert_eq!(
        seen["person_suit_blurred.jpg"].warnings,
        vec![flashfit_schema::Warning::Blurry]
    );

    let recs = quality_tail
        .collect_until(Duration::from_secs(30), |v| v.len() >= n - 1)
        .await;
    let recs: Vec<GarmentRecord> = recs
        .iter()
        .filter_map(|m| m.payload().and_then(|p| serde_json::from_slice(p).ok()))
        .collect();
    assert_eq!(recs.len(), n - 1);
    let person = recs
        .iter()
        .find(|r| r.upload.event_id == "person_suit.jpg")
        .and_then(|r| r.quality.as_ref())
        .expect("record with quality");
    assert_eq!((person.width, person.height), (512, 512));
    assert!(person.blur_score > 100.0);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await???;
    Ok(())
}

/// The default pipeline, every stage in this process, against Tansu and the S3 server: each
/// photo that passes quality reaches `flashfit.embedded` with every stage's object and model
/// versions, and its `processed` status comes from `embed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_chain_enriches_every_passing_photo() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let pipeline = Pipeline::default_pipeline();
    let names: Vec<&str> = pipeline.stages.iter().map(|s| s.as_str()).collect();
    stack.ensure_topics(&names).await?;
    let tail = stack.tail(
        &stack
            .topics
            .output_of(flashfit_schema::StageName::Embed)
            .expect("embed topic"),
    )?;
    let seen = run_chain(&stack).await?;
    let photos = CHAIN_PHOTOS;
    assert_eq!(seen["cat_small.jpg"].status, Status::Rejected);
    for name in &photos[..3] {
        assert_eq!(seen[*name].status, Status::Processed, "{name}");
        assert_eq!(seen[*name].stage, "embed", "{name}");
    }
    let recs = tail
        .collect_until(Duration::from_secs(30), |v| v.len() >= 3)
        .await;
    let recs: Vec<serde_json::Value> = recs
        .iter()
        .filter_map(|m| m.payload().and_then(|p| serde_json::from_slice(p).ok()))
        .collect();
    assert_eq!(recs.len(), 3);
    for r in &recs {
        let stages: Vec<&str> = r["models"]
            .as_array()
            .expect("models")
            .iter()
            .filter_map(|m| m["stage"].as_str())
            .collect();
        for s in ["detect", "classify", "attributes", "embed"] {
            assert!(stages.contains(&s), "{s} missing from {stages:?}");
        }
        assert_eq!(
            r["detection"]["bbox"].as_array().map(Vec::len),
            Some(4),
            "{r}"
        );
        assert!(r["classification"]["category"].is_string(), "{r}");
        assert!(r["attributes"]["color_primary"].is_string(), "{r}");
        assert_eq!(
            r["embedding"]["image_vector"].as_array().map(Vec::len),
            Some(1280)
        );
        assert_eq!(
            r["embedding"]["text_vector"].as_array().map(Vec::len),
            Some(384)
        );
    }
    let by_id = |id: &str| {
        recs.iter()
            .find(|r| r["event_id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    // A dressed person: the garment worn in the largest body region the pose model found (the
    // top: shoulders down), colours from the person mask.
    let person = by_id("person_suit.jpg");
    assert_eq!(person["detection"]["source"], "pose", "{person}");
    assert_eq!(person["detection"]["class"], "top", "{person}");
    assert_eq!(person["classification"]["group"], "tops", "{person}");
    assert_eq!(person["attributes"]["background_mask"], "person");
    // The ankle boot: the Open Images detector's Footwear box is the garment.
    let boot = by_id("fmnist_ankle_boot.png");
    assert_eq!(boot["detection"]["source"], "detector", "{boot}");
    assert_eq!(boot["detection"]["class"], "Footwear");
    Ok(())
}

/// Each kind of bad input lands in the DLQ with its reason while good events keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_land_in_the_dlq_while_good_events_flow() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let watcher = stack.status_watcher()?;
    let dlq_tail = stack.tail(&stack.topics.dlq("quality"))?;
    let p = stack.producer()?;

    let good_uri = stack.put_upload("cat.jpg", photo("cat.jpg")).await?;
    let full = photo("person_suit.jpg");
    let truncated = stack
        .put_upload("truncated.jpg", full[..full.len() / 2].to_vec())
        .await?;
    let bomb = stack
        .put_upload(
            "bomb.png",
            flashfit_quality::testkit::png_bomb(30_000, 30_000),
        )
        .await?;
    let garbage_img = stack
        .put_upload("garbage.jpg", garbage(2 * 1024 * 1024))
        .await?;

    let ev = |id: &str, uri: &str| serde_json::to_vec(&upload_event(id, uri)).expect("json");
    let bad: Vec<(&str, Vec<u8>, Reason)> = vec![
        ("bad-json", b"{\"event_id\": \"bad-json\", oops".to_vec(), Reason::InvalidEvent),
        (
            "missing-field",
            br#"{"event_id":"missing-field","user_id":"u","garment_id":"g","uploaded_at":"2026-11-22T10:00:00Z"}"#.to_vec(),
            Reason::InvalidEvent,
        ),
        ("truncated", ev("truncated", &truncated), Reason::Undecodable),
        ("bomb", ev("bomb", &bomb), Reason::TooLarge),
        ("foreign-bucket", ev("foreign-bucket", "s3://another-bucket/uploads/cat.jpg"), Reason::UriNotAllowed),
        ("file-outside", ev("file-outside", "file:///etc/passwd"), Reason::UriNotAllowed),
        ("garbage-image", ev("garbage-image", &garbage_img), Reason::Undecodable),
        ("garbage-event", garbage(2 * 1024 * 1024), Reason::InvalidEvent),
        // Uploaded an hour ago and still missing: past the not-found grace.
        (
            "not-found",
            serde_json::to_vec(&stale_upload_event("not-found", &good_uri.replace("cat.jpg", "nope.jpg"))).expect("json"),
            Reason::NotFound,
        ),
    ];
    let mut msgs = Vec::new();
    let mut good_ids = HashSet::new();
    for (i, (key, value, _)) in bad.iter().enumerate() {
        let gid = format!("good-{i}");
        msgs.push((format!("g-{gid}").into_bytes(), ev(&gid, &good_uri)));
        good_ids.insert(gid);
        msgs.push((key.as_bytes().to_vec(), value.clone()));
    }
    stack.publish_raw(&p, &msgs).await?;
    let (token, task) = start_worker(&stack);

    let seen = await_statuses(&watcher, &good_ids, Duration::from_secs(120)).await?;
    assert!(seen.values().all(|s| s.status == Status::Processed));

    let dl = dlq_tail
        .collect_until(Duration::from_secs(60), |v| v.len() >= bad.len())
        .await;
    assert_eq!(dl.len(), bad.len(), "one dead letter per bad input");
    for (key, value, reason) in &bad {
        let m = dl
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("no dead letter for {key}"));
        assert_eq!(
            watch::header(m, headers::ERROR_KIND).as_deref(),
            Some(reason.as_str()),
            "{key}"
        );
        assert_eq!(m.payload(), Some(value.as_slice()), "{key}: original bytes");
        assert_eq!(
            watch::header(m, headers::SOURCE_TOPIC),
            Some(stack.topics.uploads())
        );
        assert_eq!(watch::header(m, headers::STAGE).as_deref(), Some("quality"));
        for h in [
            headers::ERROR_MESSAGE,
            headers::SOURCE_PARTITION,
            headers::SOURCE_OFFSET,
            headers::WORKER_VERSION,
        ] {
            assert!(
                watch::header(m, h).is_some_and(|v| !v.is_empty()),
                "{key}: header {h}"
            );
        }
    }
    // Bad inputs that carry an event_id also get a `failed` status naming the reason.
    let ids: HashSet<String> = [
        "truncated",
        "bomb",
        "foreign-bucket",
        "file-outside",
        "not-found",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let failed = await_statuses(&stack.status_watcher()?, &ids, Duration::from_secs(60)).await?;
    assert!(failed.values().all(|s| s.status == Status::Failed));
    assert_eq!(failed["bomb"].reasons, vec![Reason::TooLarge]);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await???;
    Ok(())
}

fn garbage(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

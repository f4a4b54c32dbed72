//! The quality stage under the runtime's harness: real photos and hostile inputs in memory, no
//! broker. Asserts the records, statuses, dead letters and counters the worker would publish.

use std::sync::Arc;

use flashfit_config::{QualityConfig, RuntimeConfig, S3Config};
use flashfit_runtime::harness;
use flashfit_schema::{GarmentRecord, Reason, Status, StatusEvent, Warning, headers, topics};
use flashfit_storage::Location;

use super::QualityStage;

struct Setup {
    _dir: tempfile::TempDir,
    /// The uploads location.
    uploads_uri: String,
    /// The folder of user `u1` in it, which holds the photos.
    root_uri: String,
    /// `cat.jpg` in the folder of user `u2`.
    other_users_uri: String,
    outside_uri: String,
    stage: Arc<dyn flashfit_runtime::Stage>,
}

fn setup(terminal: bool) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let uploads = dir.path().join("uploads");
    let root = uploads.join("u1");
    std::fs::create_dir_all(uploads.join("u2")).expect("mkdir");
    let photos =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos");
    std::fs::create_dir_all(&root).expect("mkdir");
    for e in std::fs::read_dir(&photos).expect("photos") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), root.join(e.file_name())).expect("copy");
    }
    let full = std::fs::read(root.join("person_suit.jpg")).expect("read");
    std::fs::write(root.join("truncated.jpg"), &full[..full.len() / 2]).expect("write");
    std::fs::write(
        root.join("bomb.png"),
        crate::testkit::png_bomb(30_000, 30_000),
    )
    .expect("write");
    std::fs::write(root.join("garbage.bin"), vec![0x5Au8; 2 * 1024 * 1024]).expect("write");
    std::fs::write(dir.path().join("outside.jpg"), &full).expect("write");
    std::fs::copy(root.join("cat.jpg"), uploads.join("u2/cat.jpg")).expect("copy");
    std::fs::copy(root.join("cat.jpg"), uploads.join("cat.jpg")).expect("copy");
    let root_uri = url::Url::from_directory_path(&root)
        .expect("uri")
        .to_string();
    let uploads_uri = url::Url::from_directory_path(&uploads)
        .expect("uri")
        .to_string();
    let outside_uri = url::Url::from_file_path(dir.path().join("outside.jpg"))
        .expect("uri")
        .to_string();
    let uploads = Location::open(&uploads_uri, &S3Config::default()).expect("open");
    let stage = Arc::new(QualityStage::new(
        uploads,
        QualityConfig::default(),
        4,
        terminal,
        &flashfit_schema::Topics::default(),
    ));
    Setup {
        _dir: dir,
        other_users_uri: format!("{uploads_uri}u2/cat.jpg"),
        uploads_uri,
        root_uri,
        outside_uri,
        stage,
    }
}

type KeyValue = (Option<Vec<u8>>, Vec<u8>);

fn event(id: &str, uri: &str) -> KeyValue {
    let v = serde_json::json!({
        "event_id": id, "user_id": "u1", "garment_id": format!("g-{id}"),
        "image_uri": uri, "uploaded_at": "2026-11-22T10:00:00Z"
    });
    (
        Some(format!("g-{id}").into_bytes()),
        serde_json::to_vec(&v).expect("json"),
    )
}

fn statuses(run: &harness::HarnessRun) -> Vec<StatusEvent> {
    run.on(topics::STATUS)
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("status json"))
        .collect()
}

#[tokio::test]
async fn good_photos_pass_with_measurements_and_warnings() {
    let s = setup(true);
    let input = vec![
        event("sharp", &format!("{}person_suit.jpg", s.root_uri)),
        event("blurry", &format!("{}person_suit_blurred.jpg", s.root_uri)),
        event("dark", &format!("{}person_suit_dark.jpg", s.root_uri)),
        event("bright", &format!("{}person_suit_bright.jpg", s.root_uri)),
        event("png", &format!("{}coffee.png", s.root_uri)),
        event("rotated", &format!("{}rocket_exif_rotated.jpg", s.root_uri)),
        event("small", &format!("{}cat_small.jpg", s.root_uri)),
    ];
    let run = harness::run(s.stage.clone(), input, RuntimeConfig::default()).await;
    let records: Vec<GarmentRecord> = run
        .on(topics::QUALITY)
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("record"))
        .collect();
    assert_eq!(records.len(), 6, "all but the small one pass");
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r.upload.event_id == id)
            .and_then(|r| r.quality.clone())
            .expect(id)
    };
    assert!(by_id("sharp").warnings.is_empty());
    assert_eq!(by_id("blurry").warnings, vec![Warning::Blurry]);
    assert!(by_id("dark").warnings.contains(&Warning::TooDark));
    assert_eq!(by_id("bright").warnings, vec![Warning::TooBright]);
    let rot = &by_id("rotated");
    assert_eq!(
        (rot.width, rot.height),
        (500, 300),
        "EXIF orientation applied"
    );
    assert_eq!(by_id("sharp").width, 512);
    // Downstream key is garment_id.
    assert_eq!(
        run.on(topics::QUALITY)[0].key.as_deref(),
        Some(b"g-sharp".as_slice())
    );

    let st = statuses(&run);
    assert_eq!(st.len(), 7, "every upload gets a terminal status");
    let small = st
        .iter()
        .find(|s| s.event_id.as_deref() == Some("small"))
        .expect("small");
    assert_eq!(small.status, Status::Rejected);
    assert_eq!(small.reasons, vec![Reason::TooSmall]);
    assert_eq!(
        st.iter().filter(|s| s.status == Status::Processed).count(),
        6
    );
    assert!(run.on(&topics::dlq("quality")).is_empty());
    assert_eq!(run.metrics.count("received", None), 7);
    assert_eq!(run.metrics.count("status", Some("processed")), 6);
    assert_eq!(run.metrics.count("status", Some("rejected")), 1);
    assert!(run.result.unfinished.is_empty());
    assert_eq!(
        run.result
            .commit_offsets()
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![7]
    );
}

#[tokio::test]
async fn a_non_terminal_quality_stage_emits_no_processed_status() {
    let s = setup(false);
    let run = harness::run(
        s.stage.clone(),
        vec![event("a", &format!("{}person_suit.jpg", s.root_uri))],
        RuntimeConfig::default(),
    )
    .await;
    assert_eq!(run.on(topics::QUALITY).len(), 1);
    assert!(run.on(topics::STATUS).is_empty());
}

/// Each kind of bad input lands in the DLQ with its reason, original bytes and headers, gets a
/// `failed` status, and does not stop good events around it.
#[tokio::test]
async fn bad_inputs_are_dead_lettered_with_their_reason() {
    let s = setup(true);
    let good = |id: &str| event(id, &format!("{}cat.jpg", s.root_uri));
    let cases: Vec<(KeyValue, Reason)> = vec![
        ((Some(b"k1".to_vec()), b"{not json".to_vec()), Reason::InvalidEvent),
        (
            (Some(b"k2".to_vec()), br#"{"event_id":"m1","user_id":"u","image_uri":"x","uploaded_at":"2026-01-01T00:00:00Z"}"#.to_vec()),
            Reason::InvalidEvent,
        ),
        (event("trunc", &format!("{}truncated.jpg", s.root_uri)), Reason::Undecodable),
        (event("bomb", &format!("{}bomb.png", s.root_uri)), Reason::TooLarge),
        (event("foreign", "s3://someone-else/uploads/a.jpg"), Reason::UriNotAllowed),
        (event("outside", &s.outside_uri), Reason::UriNotAllowed),
        (event("dotdot", &format!("{}../outside.jpg", s.root_uri)), Reason::UriNotAllowed),
        (event("garbage", &format!("{}garbage.bin", s.root_uri)), Reason::Undecodable),
        (event("missing", &format!("{}nope.jpg", s.root_uri)), Reason::NotFound),
        // User u1's upload naming user u2's photo, or one outside every user's folder.
        (event("theirs", &s.other_users_uri), Reason::NotOwner),
        (event("nobody's", &format!("{}cat.jpg", s.uploads_uri)), Reason::NotOwner),
        ((Some(b"k3".to_vec()), vec![0x5A; 2 * 1024 * 1024]), Reason::InvalidEvent),
    ];
    let mut input = vec![good("g0")];
    for (i, (msg, _)) in cases.iter().enumerate() {
        input.push(msg.clone());
        input.push(good(&format!("g{}", i + 1)));
    }
    let run = harness::run(s.stage.clone(), input.clone(), RuntimeConfig::default()).await;

    let dlq = run.on(&topics::dlq("quality"));
    assert_eq!(dlq.len(), cases.len());
    for (rec, ((key, value), reason)) in dlq.iter().zip(&cases) {
        let h = |name: &str| {
            rec.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            h(headers::ERROR_KIND),
            Some(reason.as_str()),
            "{:?}",
            h(headers::ERROR_MESSAGE)
        );
        assert!(!h(headers::ERROR_MESSAGE).unwrap_or_default().is_empty());
        assert_eq!(h(headers::SOURCE_TOPIC), Some(topics::UPLOADS));
        assert_eq!(h(headers::STAGE), Some("quality"));
        assert!(h(headers::SOURCE_OFFSET).is_some() && h(headers::SOURCE_PARTITION) == Some("0"));
        assert!(h(headers::WORKER_VERSION).is_some());
        assert_eq!(&rec.value, value, "original bytes kept");
        assert_eq!(&rec.key, key, "original key kept");
    }
    let st = statuses(&run);
    assert_eq!(st.len(), input.len(), "every message ends with a status");
    assert_eq!(
        st.iter().filter(|s| s.status == Status::Failed).count(),
        cases.len()
    );
    assert_eq!(
        st.iter().filter(|s| s.status == Status::Processed).count(),
        cases.len() + 1
    );
    let trunc = st
        .iter()
        .find(|s| s.event_id.as_deref() == Some("trunc"))
        .expect("trunc");
    assert_eq!(trunc.reasons, vec![Reason::Undecodable]);
    assert_eq!(
        run.metrics.count("dead_lettered", Some("uri_not_allowed")),
        3
    );
    assert_eq!(
        run.metrics.count("errors", Some("bad_input")),
        cases.len() as u64
    );
}

#[tokio::test]
async fn the_dead_letter_breaker_trips_on_a_stream_of_bad_input() {
    let s = setup(true);
    let cfg = RuntimeConfig {
        dlq_window: 20,
        dlq_min_messages: 10,
        dlq_max_ratio: 0.5,
        ..RuntimeConfig::default()
    };
    let input: Vec<_> = (0..20)
        .map(|i| (None, format!("junk {i}").into_bytes()))
        .collect();
    let run = harness::run(s.stage.clone(), input, cfg).await;
    let err = run
        .processor
        .check_dead_letter_rate()
        .expect_err("must trip");
    let text = err.to_string();
    assert!(
        text.contains("dead-letter rate 1.00") && text.contains("flashfit.dlq.quality"),
        "{text}"
    );
}

/// An unreachable S3 server is a transient failure: retried with backoff, never dead-lettered;
/// at shutdown the message is left uncommitted for redelivery.
#[tokio::test]
async fn an_unreachable_store_is_retried_not_dead_lettered() {
    let s3 = S3Config {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        allow_http: true,
        ..S3Config::default()
    };
    let uploads = Location::open("s3://flashfit/uploads", &s3).expect("open");
    let topics = flashfit_schema::Topics::default();
    let stage: Arc<dyn flashfit_runtime::Stage> = Arc::new(QualityStage::new(
        uploads,
        QualityConfig::default(),
        1,
        true,
        &topics,
    ));
    let metrics = flashfit_runtime::Metrics::new().stage("quality");
    let cfg = RuntimeConfig {
        retry_initial_backoff_ms: 10,
        retry_max_backoff_ms: 40,
        ..RuntimeConfig::default()
    };
    let processor = flashfit_runtime::Processor::new(stage, metrics.clone(), cfg, &topics);
    let (_, value) = event("e1", "s3://flashfit/uploads/u1/a.jpg");
    let msg = flashfit_runtime::Message {
        topic: topics.uploads().into(),
        partition: 3,
        offset: 41,
        key: None,
        value: Some(value.into()),
        ..Default::default()
    };
    let token = tokio_util::sync::CancellationToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        t2.cancel();
    });
    let r = processor.run_batch(vec![msg], &token).await;
    assert_eq!(r.unfinished.len(), 1, "still pending at shutdown");
    assert!(r.done.is_empty(), "nothing dead-lettered or emitted");
    assert!(
        metrics.count("errors", Some("transient")) >= 2,
        "retried with backoff"
    );
    assert_eq!(metrics.count("dead_lettered", Some("not_found")), 0);
    assert_eq!(
        r.commit_offsets()[&(topics.uploads(), 3)],
        41,
        "offset 41 is not committed"
    );
}

/// Issue 12, defect 5: an image not (yet) in storage is retried while the event is younger
/// than `not_found_grace_ms` — an event published before its object is visible is processed
/// once the object appears, not dead-lettered.
#[tokio::test]
async fn a_missing_image_is_retried_within_the_grace_then_processed_when_it_appears() {
    let s = setup(true);
    let late = s._dir.path().join("uploads/u1").join("late.jpg");
    let v = serde_json::json!({
        "event_id": "late", "user_id": "u1", "garment_id": "g-late",
        "image_uri": format!("{}late.jpg", s.root_uri),
        "uploaded_at": chrono::Utc::now().to_rfc3339(),
    });
    let photo =
        std::fs::read(s._dir.path().join("uploads/u1").join("person_suit.jpg")).expect("read");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        std::fs::write(late, photo).expect("write");
    });
    let cfg = RuntimeConfig {
        retry_initial_backoff_ms: 20,
        retry_max_backoff_ms: 50,
        ..RuntimeConfig::default()
    };
    let run = harness::run(
        s.stage.clone(),
        vec![(None, serde_json::to_vec(&v).expect("json"))],
        cfg,
    )
    .await;
    writer.await.expect("writer");
    assert!(run.on(&topics::dlq("quality")).is_empty(), "dead-lettered");
    let st = statuses(&run);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].status, Status::Processed, "{st:?}");
}

/// One event stalls nothing. An upload dated far in the future is refused at once
/// (`invalid_event`, it is beyond the allowed clock skew), and one naming a photo that never
/// appears is given up (`not_found`) once the worker has held it `not_found_grace_ms` — counted
/// from receipt, not from the time the event claims. The ordinary uploads behind them are
/// processed.
#[tokio::test]
async fn a_poisoned_upload_stalls_nothing_behind_it() {
    let s = setup(true);
    let cfg = QualityConfig {
        not_found_grace_ms: 500,
        ..QualityConfig::default()
    };
    let stage: Arc<dyn flashfit_runtime::Stage> = Arc::new(QualityStage::new(
        Location::open(&s.uploads_uri, &S3Config::default()).expect("open"),
        cfg,
        4,
        true,
        &flashfit_schema::Topics::default(),
    ));
    let upload = |id: &str, file: &str, at: String| {
        let v = serde_json::json!({
            "event_id": id, "user_id": "u1", "garment_id": format!("g-{id}"),
            "image_uri": format!("{}{file}", s.root_uri), "uploaded_at": at,
        });
        (None, serde_json::to_vec(&v).expect("json"))
    };
    let now = || chrono::Utc::now().to_rfc3339();
    let mut input = vec![
        upload("future", "missing.jpg", "9999-01-01T00:00:00Z".into()),
        upload("never", "never.jpg", now()),
    ];
    for i in 0..5 {
        input.push(upload(&format!("ok{i}"), "person_suit.jpg", now()));
    }
    let runtime = RuntimeConfig {
        retry_initial_backoff_ms: 20,
        retry_max_backoff_ms: 100,
        ..RuntimeConfig::default()
    };
    let run = harness::run(stage, input, runtime).await;
    let st = statuses(&run);
    let of = |id: &str| {
        st.iter()
            .find(|s| s.event_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no status for {id}: {st:?}"))
    };
    assert_eq!(of("future").status, Status::Failed);
    assert_eq!(
        of("future").reasons,
        vec![flashfit_schema::Reason::InvalidEvent]
    );
    assert!(
        of("future")
            .message
            .as_deref()
            .is_some_and(|m| m.contains("ahead")),
        "{:?}",
        of("future")
    );
    assert_eq!(of("never").status, Status::Failed);
    assert_eq!(of("never").reasons, vec![flashfit_schema::Reason::NotFound]);
    for i in 0..5 {
        assert_eq!(of(&format!("ok{i}")).status, Status::Processed);
    }
}

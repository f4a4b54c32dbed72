//! Every hostile input from the quality stage's list, fed straight to each model stage (as a
//! replayed or hand-written record would reach it): each lands in that stage's DLQ with its
//! reason, good records around them still come out, and nothing panics.

use flashfit_schema::StageName;
use std::sync::Arc;

use flashfit_config::{Config, RuntimeConfig};
use flashfit_pipeline::{Pipeline, build_stage};
use flashfit_runtime::harness;
use flashfit_schema::{Reason, Topics, headers};

use crate::support::*;

type KeyValue = (Option<Vec<u8>>, Vec<u8>);

fn record(id: &str, uri: &str) -> KeyValue {
    record_of(upload_event(id, uri))
}

fn record_of(e: flashfit_schema::UploadEvent) -> KeyValue {
    let id = e.event_id.clone();
    let mut v = serde_json::to_value(e).expect("event");
    v["quality"] = serde_json::json!({"width": 512, "height": 512, "blur_score": 500.0,
        "brightness": 120.0, "warnings": []});
    (
        Some(id.as_bytes().to_vec()),
        serde_json::to_vec(&v).expect("json"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_reach_the_dlq_from_every_model_stage() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flashfit-hostile-{}", uuid::Uuid::new_v4()));
    let root = dir.join("uploads");
    std::fs::create_dir_all(&root)?;
    let full = photo("person_suit.jpg");
    std::fs::write(root.join("good.jpg"), &full)?;
    std::fs::write(root.join("truncated.jpg"), &full[..full.len() / 2])?;
    std::fs::write(
        root.join("bomb.png"),
        flashfit_quality::testkit::png_bomb(30_000, 30_000),
    )?;
    std::fs::write(root.join("garbage.bin"), vec![0x5Au8; 2 * 1024 * 1024])?;
    std::fs::write(dir.join("outside.jpg"), &full)?;
    let root_uri = format!("file://{}/", root.display());
    let outside = format!("file://{}", dir.join("outside.jpg").display());
    let cases: Vec<(KeyValue, Reason)> = vec![
        (
            (Some(b"k1".to_vec()), b"{not json".to_vec()),
            Reason::InvalidEvent,
        ),
        (
            (
                Some(b"k2".to_vec()),
                br#"{"event_id":"m1","user_id":"u"}"#.to_vec(),
            ),
            Reason::InvalidEvent,
        ),
        (
            record("trunc", &format!("{root_uri}truncated.jpg")),
            Reason::Undecodable,
        ),
        (
            record("bomb", &format!("{root_uri}bomb.png")),
            Reason::TooLarge,
        ),
        (
            record("foreign", "s3://someone-else/uploads/a.jpg"),
            Reason::UriNotAllowed,
        ),
        (record("outside", &outside), Reason::UriNotAllowed),
        (
            record("dotdot", &format!("{root_uri}../outside.jpg")),
            Reason::UriNotAllowed,
        ),
        (
            record("garbage", &format!("{root_uri}garbage.bin")),
            Reason::Undecodable,
        ),
        (
            // Uploaded an hour ago and still missing: past the not-found grace.
            record_of(stale_upload_event(
                "missing",
                &format!("{root_uri}nope.jpg"),
            )),
            Reason::NotFound,
        ),
        (
            (Some(b"k3".to_vec()), vec![0x5A; 2 * 1024 * 1024]),
            Reason::InvalidEvent,
        ),
    ];
    let mut input = vec![record("g0", &format!("{root_uri}good.jpg"))];
    for (i, (msg, _)) in cases.iter().enumerate() {
        input.push(msg.clone());
        input.push(record(
            &format!("g{}", i + 1),
            &format!("{root_uri}good.jpg"),
        ));
    }
    let mut config = Config {
        uploads_uri: Some(root_uri.clone()),
        ..Config::default()
    };
    // Every good record must flow on, whatever the photo shows: flagged, not rejected.
    config.classify.not_clothing = flashfit_config::NotClothing::Flag;
    let pipeline = Pipeline::default_pipeline();
    let topics = Topics::default();
    for name in [
        StageName::Detect,
        StageName::Classify,
        StageName::Attributes,
        StageName::Embed,
    ] {
        let stage_name = name.as_str();
        let stage = build_stage(name, &config, &pipeline)?;
        let run = harness::run(Arc::clone(&stage), input.clone(), RuntimeConfig::default()).await;
        let dlq = run.on(&topics.dlq(stage_name));
        assert_eq!(dlq.len(), cases.len(), "{stage_name}");
        for (rec, ((_, value), reason)) in dlq.iter().zip(&cases) {
            let kind = rec
                .headers
                .iter()
                .find(|(k, _)| *k == headers::ERROR_KIND)
                .map(|(_, v)| v.as_str());
            assert_eq!(kind, Some(reason.as_str()), "{stage_name}");
            assert_eq!(&rec.value, value, "{stage_name}: original bytes kept");
        }
        let out = topics.output_of(name).expect("output topic");
        assert_eq!(
            run.on(&out).len(),
            cases.len() + 1,
            "{stage_name}: good records flow"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

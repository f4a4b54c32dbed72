//! An outfit upload through the real detect stage (MoveNet, the box detectors): one garment per
//! item with ids derived from the upload's, the same ids on a replay, a `split` status listing
//! them and the outfit's `wear` feedback event. Needs the models and the labelled set (as
//! `floors.rs`).

mod common;
use common::set_dir;

use flashfit_config::Config;
use flashfit_pipeline::Pipeline;
use flashfit_schema::record::DetectionSource;
use flashfit_schema::{
    FeedbackEvent, GarmentRecord, Signal, StageName, Status, StatusEvent, Topics,
};

struct Detected {
    garments: Vec<GarmentRecord>,
    statuses: Vec<StatusEvent>,
    feedback: Vec<FeedbackEvent>,
}

/// The detect stage on `file` of the set (its quality record made by the quality stage).
async fn detect(file: &str, kind: Option<&str>) -> Detected {
    let dir = set_dir()
        .canonicalize()
        .expect("the labelled set (models/train_head.sh)");
    detect_in(&dir, file, kind).await
}

/// [`detect`] on `file` in `dir`.
async fn detect_in(dir: &std::path::Path, file: &str, kind: Option<&str>) -> Detected {
    let root = url::Url::from_directory_path(dir).expect("uri").to_string();
    let mut config = Config {
        uploads_uri: Some(root.clone()),
        ..Config::default()
    };
    // A folder of test photos, not users' folders: no owner to check.
    config.quality.owner_prefix.clear();
    let pipeline = Pipeline::load(None).expect("pipeline");
    let topics = Topics::new(config.kafka.topic_prefix.clone());
    let mut event = serde_json::json!({
        "event_id": "e1", "user_id": "u1", "garment_id": "g1",
        "image_uri": format!("{root}{file}"), "uploaded_at": "2026-01-01T00:00:00Z",
    });
    if let Some(k) = kind {
        event["kind"] = k.into();
    }
    let mut input = vec![(None, serde_json::to_vec(&event).expect("json"))];
    let mut last = None;
    for stage in [StageName::Quality, StageName::Detect] {
        let built = flashfit_pipeline::build_stage(stage, &config, &pipeline).expect("stage");
        let run = flashfit_runtime::harness::run(built, input, config.runtime.clone()).await;
        input = run
            .on(&topics.output_of(stage).unwrap_or_default())
            .into_iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect();
        last = Some(run);
    }
    let run = last.expect("ran");
    Detected {
        garments: input
            .iter()
            .map(|(_, v)| GarmentRecord::from_json(v).expect("record"))
            .collect(),
        statuses: run
            .on(&topics.status())
            .iter()
            .map(|r| serde_json::from_slice(&r.value).expect("status"))
            .collect(),
        feedback: run
            .on(&topics.feedback())
            .iter()
            .map(|r| FeedbackEvent::from_json(&r.value).expect("a valid feedback event"))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outfit_photo_becomes_its_garments_with_ids_a_replay_repeats() {
    let d = detect("bus_person_left.jpg", Some("outfit")).await;
    let ids: Vec<&str> = d
        .garments
        .iter()
        .map(|g| g.upload.garment_id.as_str())
        .collect();
    // A full-body person: at least a top, a bottom and footwear, each its own garment.
    for item in ["g1/top-1", "g1/bottom-1", "g1/footwear-1"] {
        assert!(ids.contains(&item), "{item} missing from {ids:?}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "duplicate ids {ids:?}");
    for g in &d.garments {
        let o = g.outfit.as_ref().expect("outfit item");
        assert_eq!((o.event_id.as_str(), o.garment_id.as_str()), ("e1", "g1"));
        assert_eq!(g.upload.event_id, format!("e1/{}", o.item));
        assert_eq!(o.garment_ids, ids);
        let det = g.detection.as_ref().expect("detection");
        if o.item.starts_with("top") || o.item.starts_with("bottom") {
            assert_eq!(det.source, DetectionSource::Pose);
            assert_eq!(Some(det.class.as_str()), o.item.split('-').next());
        }
    }
    // The upload ends `split`, listing the garments; the outfit is worn once.
    assert_eq!(d.statuses.len(), 1, "{:?}", d.statuses);
    let s = &d.statuses[0];
    assert_eq!(
        (s.status, s.event_id.as_deref()),
        (Status::Split, Some("e1"))
    );
    assert_eq!(s.garment_ids, ids);
    assert_eq!(d.feedback.len(), 1);
    let wear = &d.feedback[0];
    assert_eq!(
        (
            wear.signal,
            wear.event_id.as_str(),
            wear.outfit_id.as_deref()
        ),
        (Signal::Wear, "e1/wear", Some("g1"))
    );
    assert_eq!(wear.garment_ids, ids);
    // A replay (or a redelivery) of the same upload: the same garments, nothing new.
    let again = detect("bus_person_left.jpg", Some("outfit")).await;
    let again: Vec<&str> = again
        .garments
        .iter()
        .map(|g| g.upload.garment_id.as_str())
        .collect();
    assert_eq!(again, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garment_upload_of_a_person_is_one_garment_cropped_to_a_body_region() {
    let d = detect("bus_person_left.jpg", None).await;
    assert_eq!(d.garments.len(), 1);
    let g = &d.garments[0];
    assert_eq!(g.upload.garment_id, "g1");
    assert!(g.outfit.is_none());
    let det = g.detection.as_ref().expect("detection");
    // A shoe box or a body region, never the whole person.
    assert_ne!(det.source, DetectionSource::Person, "{det:?}");
    assert!(d.statuses.is_empty() && d.feedback.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outfit_upload_with_nobody_in_it_goes_on_as_one_garment() {
    // No person: no outfit to split; classify then says whether it is clothing at all.
    let d = detect("cat.jpg", Some("outfit")).await;
    assert_eq!(d.garments.len(), 1, "{:?}", d.statuses);
    assert_eq!(d.garments[0].upload.garment_id, "g1");
    assert!(d.statuses.is_empty() && d.feedback.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_selfie_is_split_into_the_garments_of_the_person_in_the_mirror() {
    // A mirror selfie drawn from the set's astronaut: mirrored, framed by a mirror's wooden
    // edge on a wall, a phone held in front of the chest.
    let set = set_dir().canonicalize().expect("the labelled set");
    let person = image::open(set.join("astronaut.jpg"))
        .expect("astronaut.jpg")
        .to_rgb8();
    let person = image::imageops::flip_horizontal(&person);
    let (pw, ph) = person.dimensions();
    let (edge, margin) = (24, 60);
    let mut selfie = image::RgbImage::from_pixel(
        pw + 2 * (edge + margin),
        ph + 2 * (edge + margin),
        image::Rgb([205, 196, 178]),
    );
    let frame = (margin, margin, pw + 2 * edge, ph + 2 * edge);
    for y in frame.1..frame.1 + frame.3 {
        for x in frame.0..frame.0 + frame.2 {
            selfie.put_pixel(x, y, image::Rgb([96, 62, 34]));
        }
    }
    image::imageops::replace(
        &mut selfie,
        &person,
        i64::from(margin + edge),
        i64::from(margin + edge),
    );
    let phone = (
        margin + edge + pw / 2 + 40,
        margin + edge + ph / 2 + 30,
        70,
        130,
    );
    for y in phone.1..phone.1 + phone.3 {
        for x in phone.0..phone.0 + phone.2 {
            selfie.put_pixel(x, y, image::Rgb([22, 22, 26]));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    selfie
        .save(dir.path().join("mirror_selfie.png"))
        .expect("write the selfie");
    let dir = dir.path().canonicalize().expect("dir");
    let d = detect_in(&dir, "mirror_selfie.png", Some("outfit")).await;
    // The person in the mirror is found and split: a top from the pose model, inside the
    // mirror, and the upload ends `split` listing it.
    let top = d
        .garments
        .iter()
        .find(|g| g.upload.garment_id == "g1/top-1")
        .unwrap_or_else(|| panic!("no top in {:?}", d.statuses));
    let det = top.detection.as_ref().expect("detection");
    assert_eq!(det.source, DetectionSource::Pose, "{det:?}");
    let inside = (margin + edge) as f32;
    assert!(
        det.bbox[0] >= inside - 1.0 && det.bbox[2] <= inside + pw as f32 + 1.0,
        "{det:?}"
    );
    assert_eq!(d.statuses.len(), 1, "{:?}", d.statuses);
    assert_eq!(d.statuses[0].status, Status::Split);
}

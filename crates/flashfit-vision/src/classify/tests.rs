//! The classify stage under the runtime harness on real images (needs `models/fetch.sh`).

use std::sync::Arc;

use flashfit_config::{QualityConfig, RuntimeConfig, S3Config};
use flashfit_models::taxonomy::{DEFAULT_IMAGENET_MAP, ImageNetMap};
use flashfit_models::{ImageNetModel, ModelDir};
use flashfit_runtime::harness;
use flashfit_schema::{Status, StatusEvent, Topics};
use flashfit_storage::Location;
use serde_json::{Value, json};

use super::{Classifier, ClassifyStage, Scorer};
use crate::enrich::StageIo;

fn stage(root_uri: &str, terminal: bool) -> Arc<ClassifyStage> {
    let dir = ModelDir::from_env();
    let model = ImageNetModel::load(&dir, 2).unwrap_or_else(|e| panic!("{e}"));
    let map = ImageNetMap::parse(DEFAULT_IMAGENET_MAP, model.labels()).expect("map");
    let topics = Topics::default();
    Arc::new(ClassifyStage::new(
        StageIo {
            uploads: Location::open(root_uri, &S3Config::default()).expect("uploads"),
            caps: QualityConfig {
                owner_prefix: String::new(),
                ..QualityConfig::default()
            },
            concurrency: 4,
            input: topics.quality(),
            output: "flashfit.classified".into(),
            status: topics.status(),
            terminal,
            feedback: topics.feedback(),
        },
        Classifier::new(Arc::new(model), Scorer::ImageNet(map), true).flagging(),
    ))
}

fn record(id: &str, uri: &str, extra: Value) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut v = json!({
        "event_id": id, "user_id": "u1", "garment_id": format!("g-{id}"), "image_uri": uri,
        "uploaded_at": "2026-11-22T10:00:00Z",
        "quality": {"width": 224, "height": 224, "blur_score": 50.0, "brightness": 200.0, "warnings": ["blurry"]},
        "models": [{"stage": "quality", "name": "flashfit-quality", "version": "1"}]
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    (
        Some(format!("g-{id}").into_bytes()),
        serde_json::to_vec(&v).expect("json"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_a_batch_of_real_images_and_keeps_earlier_objects() {
    let photos =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos");
    let dir = tempfile::tempdir().expect("tmp");
    for f in [
        "coffee.jpg",
        "fmnist_sneaker.png",
        "fmnist_bag.png",
        "person_suit.jpg",
    ] {
        std::fs::copy(photos.join(f), dir.path().join(f)).expect("copy");
    }
    let full = std::fs::read(photos.join("cat.jpg")).expect("cat");
    std::fs::write(dir.path().join("truncated.jpg"), &full[..full.len() / 3]).expect("write");
    let root = url::Url::from_directory_path(dir.path())
        .expect("uri")
        .to_string();
    let s = stage(&root, true);
    let input = vec![
        record("coffee", &format!("{root}coffee.jpg"), json!({})),
        record("sneaker", &format!("{root}fmnist_sneaker.png"), json!({})),
        record("bag", &format!("{root}fmnist_bag.png"), json!({})),
        // A detection box: only the crop is classified.
        record(
            "crop",
            &format!("{root}person_suit.jpg"),
            json!({"detection": {"class": "foreground", "confidence": null,
                "bbox": [100.0, 50.0, 400.0, 350.0], "source": "foreground", "model": null,
                "all": []}}),
        ),
        record("broken", &format!("{root}truncated.jpg"), json!({})),
        // A record is an upload event (up to 64 KiB) plus what earlier stages added: larger
        // than an upload event may be, and still read.
        record(
            "large",
            &format!("{root}coffee.jpg"),
            json!({"app_notes": "n".repeat(100_000)}),
        ),
    ];
    let run = harness::run(s.clone(), input, RuntimeConfig::default()).await;
    let out: Vec<Value> = run
        .on("flashfit.classified")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("json"))
        .collect();
    assert_eq!(out.len(), 5, "all but the truncated image are classified");
    let by = |id: &str| out.iter().find(|r| r["event_id"] == id).expect(id);
    for r in &out {
        let c = &r["classification"];
        // A category, a group when unsure of it, or `unknown` — and `level` says which.
        let label = c["category"].as_str().expect("category");
        let level = match (
            flashfit_schema::taxonomy::index(label).is_some(),
            flashfit_schema::taxonomy::GROUPS.contains(&label),
        ) {
            (true, _) => "category",
            (false, true) => "group",
            _ => {
                assert_eq!(label, flashfit_schema::taxonomy::UNKNOWN, "{c}");
                "unknown"
            }
        };
        assert_eq!(c["level"], level, "{c}");
        assert_eq!(c["topk"].as_array().expect("topk").len(), 3);
        assert!(
            r["quality"]["blur_score"].is_number(),
            "earlier objects are kept"
        );
        let models = r["models"].as_array().expect("models");
        assert_eq!(models.len(), 2);
        assert_eq!(models[1]["stage"], "classify");
        assert!(
            models[1]["name"]
                .as_str()
                .expect("name")
                .starts_with("efficientnet-lite0")
        );
    }
    // A cup of espresso is not clothing; the flag says so.
    let coffee = &by("coffee")["classification"];
    assert!(coffee["is_clothing"].as_f64().expect("p") < 0.1, "{coffee}");
    assert_eq!(coffee["flagged"], true);
    assert_eq!(
        run.on(&flashfit_schema::topics::dlq("classify")).len(),
        1,
        "truncated image dead-lettered"
    );
    let statuses: Vec<StatusEvent> = run
        .on(flashfit_schema::topics::STATUS)
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("status"))
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.status == Status::Processed)
            .count(),
        5
    );
    assert!(statuses.iter().all(|s| s.stage == "classify"));
    let sneaker = statuses
        .iter()
        .find(|s| s.event_id.as_deref() == Some("sneaker"))
        .expect("status");
    assert_eq!(
        sneaker.warnings,
        vec![flashfit_schema::Warning::Blurry],
        "quality warnings carried to the status"
    );
    eprintln!(
        "sneaker -> {}, bag -> {}",
        by("sneaker")["classification"],
        by("bag")["classification"]
    );
}

/// With a taxonomy head trained on Fashion-MNIST (a small one here), the garment thumbnails get
/// their taxonomy categories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_head_scores_garments_onto_the_taxonomy() {
    use flashfit_models::fashion_mnist;
    use flashfit_models::head::{LinearHead, TrainConfig};
    let base = stage("file:///tmp", false);
    let dir = std::path::Path::new(fashion_mnist::DEBIAN_DIR);
    let train = fashion_mnist::load(dir, "train", 1000).expect("dataset-fashion-mnist");
    let x = fashion_mnist::embed(&base.enricher.model, &train, 32).expect("embed");
    let classes = fashion_mnist::CLASSES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let head = LinearHead::train(
        "taxonomy-head",
        "efficientnet-lite0/1",
        classes,
        &x,
        &train.labels,
        &TrainConfig::default(),
    )
    .expect("train");
    let Scorer::ImageNet(map) = &base.enricher.scorer else {
        unreachable!()
    };
    let photos =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos");
    let root = url::Url::from_directory_path(photos.canonicalize().expect("photos"))
        .expect("uri")
        .to_string();
    let s = Arc::new(ClassifyStage::new(
        StageIo {
            uploads: Location::open(&root, &S3Config::default()).expect("uploads"),
            caps: QualityConfig {
                owner_prefix: String::new(),
                ..QualityConfig::default()
            },
            concurrency: 2,
            input: "in".into(),
            output: "out".into(),
            status: "status".into(),
            terminal: false,
            feedback: "feedback".into(),
        },
        Classifier::new(
            base.enricher.model.clone(),
            Scorer::Head(Box::new(head), Some(map.clone())),
            true,
        )
        .flagging(),
    ));
    let input = vec![
        record("sneaker", &format!("{root}fmnist_sneaker.png"), json!({})),
        record("bag", &format!("{root}fmnist_bag.png"), json!({})),
        record("boot", &format!("{root}fmnist_ankle_boot.png"), json!({})),
    ];
    let run = harness::run(s, input, RuntimeConfig::default()).await;
    let got: Vec<(String, String)> = run
        .on("out")
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.value).expect("json");
            (
                v["event_id"].as_str().expect("id").to_owned(),
                v["classification"]["category"]
                    .as_str()
                    .expect("c")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("sneaker".into(), "sneakers".into()),
            ("bag".into(), "bag".into()),
            ("boot".into(), "boots".into())
        ]
    );
    assert!(run.on("status").is_empty(), "not the last stage: no status");
}

/// Through the stage: a 2,560 px photo whose box has pixels to spare is decoded at 1/2, and
/// its record comes out with the box as it came in (the photo's pixels) and the category and
/// image vector of the full-size decode (forced here by a record that under-reports the
/// photo's size, so the box seems to have no pixels to spare).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_photo_is_decoded_smaller_and_its_record_keeps_the_photo_s_box() {
    let dir = tempfile::tempdir().expect("tmp");
    let (bytes, (w, h)) = crate::enrich::tests::large_jpeg("person_suit.jpg", 5);
    std::fs::write(dir.path().join("big.jpg"), bytes).expect("write");
    let root = url::Url::from_directory_path(dir.path())
        .expect("uri")
        .to_string();
    let detection = json!({"class": "person", "confidence": 0.9,
        "bbox": [1300.0, 1300.0, 2500.0, 2500.0], "source": "person", "model": "m", "all": []});
    let quality = |w: u32, h: u32| json!({"width": w, "height": h, "blur_score": 50.0, "brightness": 120.0, "warnings": []});
    let input = vec![
        record(
            "reduced",
            &format!("{root}big.jpg"),
            json!({"detection": detection, "quality": quality(w, h)}),
        ),
        record(
            "full",
            &format!("{root}big.jpg"),
            json!({"detection": detection, "quality": quality(224, 224)}),
        ),
    ];
    let run = harness::run(stage(&root, false), input, RuntimeConfig::default()).await;
    let out: Vec<Value> = run
        .on("flashfit.classified")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("json"))
        .collect();
    let by = |id: &str| out.iter().find(|r| r["event_id"] == id).expect(id);
    let (reduced, full) = (by("reduced"), by("full"));
    assert_eq!(reduced["detection"]["bbox"], detection["bbox"]);
    assert_eq!(
        reduced["classification"]["category"],
        full["classification"]["category"]
    );
    let vector = |r: &Value| -> Vec<f32> {
        r["classification"]["image_vector"]["vector"]
            .as_array()
            .expect("image vector")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect()
    };
    let cos = crate::enrich::tests::cosine(&vector(reduced), &vector(full));
    assert!(cos >= 0.99, "image vector cosine {cos}");
}

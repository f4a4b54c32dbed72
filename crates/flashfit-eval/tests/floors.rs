//! The labelled set's floors, on the real models and the real stages: a regression
//! in what FlashFit says about a photo fails CI. Needs the models (models/fetch.sh), the shipped
//! head and the set (models/train_head.sh): `FLASHFIT_EVAL_SET`, else `eval` beside the models
//! directory.

mod common;
use common::set_dir;

use flashfit_config::Config;
use flashfit_eval::run::Prediction;
use flashfit_eval::score::score;
use flashfit_pipeline::Pipeline;
use flashfit_schema::{Reason, Status};

async fn evaluate(dir: &std::path::Path) -> Vec<(flashfit_eval::labels::Photo, Prediction)> {
    let config = Config::default();
    let pipeline = Pipeline::load(None).expect("default pipeline");
    flashfit_eval::evaluate(&config, &pipeline, dir)
        .await
        .unwrap_or_else(|e| panic!("eval on {} (run models/train_head.sh): {e}", dir.display()))
}

fn at_least(name: &str, r: flashfit_eval::score::Ratio, floor: f64) {
    let v = r
        .value()
        .unwrap_or_else(|| panic!("{name}: nothing to measure"));
    assert!(
        v >= floor,
        "{name} {v:.3} ({}/{}) is below {floor}",
        r.num,
        r.den
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labelled_set_stays_above_the_floors() {
    let results = evaluate(&set_dir()).await;
    assert!(results.len() >= 80, "the set has {} photos", results.len());
    let report = score(&results);
    print!("{report}");
    at_least(
        "non-clothing rejected",
        report.is_clothing.not_clothing_rejected_rate(),
        0.95,
    );
    let wrongly = report.is_clothing.clothing_rejected_rate();
    assert!(
        wrongly.value().is_some_and(|v| v <= 0.05),
        "clothing rejected {wrongly:?} is above 5%"
    );
    at_least("group accuracy", report.group_accuracy, 0.85);
    at_least("category precision", report.category_precision, 0.70);
    // A person photo is its garments: tops, bottoms and shoes of the full-body photos found
    // as items, each matched to its hand label at box IoU >= 0.5.
    at_least("worn items found", report.worn_found, 0.80);
    // Colours of worn garments come from the region's pixels under the person mask, without
    // the wearer's skin: the astronaut's suit is orange, not the brown of suit and face mixed.
    at_least("colour accuracy", report.colour_accuracy, 0.80);
    let (_, astronaut) = results
        .iter()
        .find(|(photo, _)| photo.file == "astronaut.jpg")
        .expect("in the set");
    assert_eq!(
        astronaut.items.first().and_then(|i| i.colour.as_deref()),
        Some("orange"),
        "{astronaut:?}"
    );

    // The awkward photos of the set each get a clear result: garments, or a reason.
    for file in [
        "zidane_cut.jpg",            // a person cut off at the waist
        "bus.jpg",                   // several people
        "astronaut_upside_down.jpg", // upside down, no EXIF
        "cat.jpg",                   // no person and no garment
        "brick.jpg",
    ] {
        let (_, p) = results
            .iter()
            .find(|(photo, _)| photo.file == file)
            .unwrap_or_else(|| panic!("{file} is not in the set"));
        match p.status {
            Some(Status::Processed | Status::Split) => {
                assert!(!p.items.is_empty(), "{file}: {:?}, no item", p.status)
            }
            Some(Status::Rejected) => assert!(!p.reasons.is_empty(), "{file}: no reason"),
            other => panic!("{file}: ended {other:?}"),
        }
    }
    let reason = |file: &str| {
        let (_, p) = results
            .iter()
            .find(|(photo, _)| photo.file == file)
            .expect("in the set");
        (p.status, p.reasons.clone())
    };
    assert_eq!(
        reason("cat.jpg"),
        (Some(Status::Rejected), vec![Reason::NotClothing])
    );
}

/// Photos no labelled set would hold: a 1×4000 strip and a blank grey square.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strip_and_a_blank_photo_get_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    image::RgbImage::from_pixel(1, 4000, image::Rgb([120, 90, 60]))
        .save(dir.path().join("strip.png"))
        .expect("write strip");
    image::RgbImage::from_pixel(400, 400, image::Rgb([128, 128, 128]))
        .save(dir.path().join("blank.png"))
        .expect("write blank");
    std::fs::write(
        dir.path().join("labels.toml"),
        r#"
[[photo]]
file = "strip.png"
source = "drawn by the test"
licence = "n/a"
clothing = false
[[photo]]
file = "blank.png"
source = "drawn by the test"
licence = "n/a"
clothing = false
"#,
    )
    .expect("write labels");
    let results = evaluate(dir.path()).await;
    for (photo, p) in &results {
        assert_eq!(p.status, Some(Status::Rejected), "{}: {p:?}", photo.file);
        assert!(p.message.is_some(), "{}: no message", photo.file);
    }
    assert_eq!(
        results[0].1.reasons,
        vec![Reason::TooSmall],
        "{:?}",
        results[0].1
    );
    assert_eq!(
        results[1].1.reasons,
        vec![Reason::NotClothing],
        "{:?}",
        results[1].1
    );
    // A replay of a rejected upload is rejected again, for the same reason.
    let again = evaluate(dir.path()).await;
    for ((photo, first), (_, second)) in results.iter().zip(&again) {
        assert_eq!(
            (first.status, &first.reasons),
            (second.status, &second.reasons),
            "{}",
            photo.file
        );
    }
}

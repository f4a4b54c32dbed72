//! [`Detector`]: one detection model as the manifest describes it (input layout, decoder,
//! labels, which labels are garments and people), from pixels to [`Detection`]s.

use flashfit_models::manifest::{Decoder, DetectorSpec, Layout, Manifest};
use flashfit_models::session::{Input, OnnxSession, take};
use flashfit_models::{Error, ModelDir, Result, resize_bilinear};
use image::RgbImage;

use crate::detect::{
    CENTERNET_TOP_K, Detection, Letterbox, centernet_peaks, decode_centernet, decode_ssd_nms,
    decode_ssd_raw, decode_yolov8, ssd_mobilenet_300_anchors,
};

/// What a detected class means for a wardrobe.
pub use flashfit_schema::record::Role;

pub struct Detector {
    pub name: String,
    pub version: String,
    spec: DetectorSpec,
    labels: Vec<String>,
    anchors: Vec<[f32; 4]>,
    session: OnnxSession,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Detector({}/{})", self.name, self.version)
    }
}

impl Detector {
    /// Loads the manifest's model `name` (which must have a `[model.detector]` table).
    pub fn load(
        dir: &ModelDir,
        manifest: &Manifest,
        name: &str,
        threads: impl Into<flashfit_models::Threads>,
    ) -> Result<Self> {
        let entry = manifest.get(name)?;
        let spec = entry.detector.clone().ok_or_else(|| {
            Error::BadInput(format!(
                "model {name} has no [model.detector] table in the manifest"
            ))
        })?;
        let labels = entry.load_labels(dir)?;
        if spec.layout != Layout::NhwcU8 && spec.size.is_none() {
            return Err(Error::BadInput(format!(
                "detector {name}: a float input needs `size` in the manifest"
            )));
        }
        let anchors = match spec.decoder {
            Decoder::SsdRaw => ssd_mobilenet_300_anchors(),
            _ => Vec::new(),
        };
        let graph = spec.graph.as_deref().unwrap_or("model.onnx");
        let session = OnnxSession::load_file(dir, &entry.name, &entry.version, graph, threads)?;
        Ok(Detector {
            name: entry.name.clone(),
            version: entry.version.clone(),
            spec,
            labels,
            anchors,
            session,
        })
    }

    /// The long side of the image the model sees (it resizes the photo to it), or `None` when
    /// the graph takes the photo at any size as it is.
    pub fn input_side(&self) -> Option<u32> {
        match self.spec.layout {
            Layout::NhwcU8 => self.spec.max_input_side,
            _ => self.spec.size.map(|[w, h]| w.max(h)),
        }
    }

    /// A pose model (its detections are body regions of the people it found).
    pub fn is_pose(&self) -> bool {
        self.spec.decoder == Decoder::Movenet
    }

    pub fn role(&self, class: &str) -> Role {
        if self.is_pose() {
            return Role::Region;
        }
        if self.spec.garments.iter().any(|g| g == class) {
            Role::Garment
        } else if self.spec.people.iter().any(|p| p == class) {
            Role::Person
        } else {
            Role::Other
        }
    }

    /// Detections in original pixels, confidence ≥ `confidence`, NMS at `iou`. Blocking.
    pub fn detect(&self, img: &RgbImage, confidence: f32, iou: f32) -> Result<Vec<Detection>> {
        self.run(&self.prepare(img), confidence, iou)
    }

    /// The model input for `img` (resize, letterbox, scale): CPU work a stage can do per
    /// message, concurrently, before the batch's inference.
    pub fn prepare(&self, img: &RgbImage) -> Prepared {
        let (pixels, letterbox) = self.input(img);
        Prepared {
            pixels,
            letterbox,
            original: img.dimensions(),
        }
    }

    /// Inference and decoding on a prepared input. Blocking.
    pub fn run(&self, p: &Prepared, confidence: f32, iou: f32) -> Result<Vec<Detection>> {
        let s = &self.spec;
        let (input, letterbox, original) = (&p.pixels, p.letterbox, p.original);
        let shape_dims = |w: u32, h: u32| match s.layout {
            Layout::NchwF32 => vec![1, 3, h as usize, w as usize],
            _ => vec![1, h as usize, w as usize, 3],
        };
        let input = match (input, s.size) {
            (Pixels::U8(px, w, h), _) => Input::U8(&s.input_name, shape_dims(*w, *h), px),
            (Pixels::I32(px, side), _) => Input::I32(&s.input_name, shape_dims(*side, *side), px),
            (Pixels::F32(px), Some([w, h])) => Input::F32(&s.input_name, shape_dims(w, h), px),
            (Pixels::F32(_), None) => {
                return Err(Error::BadInput(format!(
                    "detector {}: float input without a size",
                    self.name
                )));
            }
        };
        let confidence = s.confidence.unwrap_or(confidence);
        match s.decoder {
            Decoder::CenternetHeads => return self.run_heads(input, confidence, iou, original),
            Decoder::Movenet => {
                let mut out = self.session.run_some(&[input], Some(&[s.boxes.as_str()]))?;
                let people = take(&mut out, &s.boxes)?.data;
                let side = s.size.map_or(256, |[w, h]| w.max(h));
                let lb = letterbox.unwrap_or(Letterbox::fit(original.0, original.1, side));
                let people = crate::pose::decode_multipose(&people, side, lb, original, confidence);
                let min_keypoint = s.keypoint_confidence.unwrap_or(0.3);
                return Ok(crate::pose::region_detections(
                    &people,
                    original,
                    min_keypoint,
                    &self.labels,
                ));
            }
            // The Open Images SSD's class scores are 1.15 M floats per photo: read in place.
            Decoder::SsdRaw => {
                let names = [s.boxes.as_str(), self.named(&s.scores, "scores")?];
                return self.session.run_view(&[input], &names, |views| {
                    let ((_, boxes), (_, scores)) = (&views[0], &views[1]);
                    decode_ssd_raw(
                        boxes,
                        scores,
                        &self.anchors,
                        &self.labels,
                        confidence,
                        iou,
                        original,
                    )
                    .map_err(Error::Inference)
                });
            }
            _ => {}
        }
        // Only the outputs the decoder reads are copied out of the session.
        let wanted: Vec<&str> = [Some(&s.boxes), s.scores.as_ref(), s.classes.as_ref()]
            .into_iter()
            .chain([s.count.as_ref()])
            .flatten()
            .map(String::as_str)
            .collect();
        let mut out = self.session.run_some(&[input], Some(wanted.as_slice()))?;
        let bad = Error::Inference;
        let dets = match s.decoder {
            Decoder::SsdNms => {
                let boxes = take(&mut out, &s.boxes)?;
                let scores = take(&mut out, self.named(&s.scores, "scores")?)?;
                let classes = take(&mut out, self.named(&s.classes, "classes")?)?;
                let count = take(&mut out, self.named(&s.count, "count")?)?;
                let n = count.data.first().copied().unwrap_or(0.0).max(0.0) as usize;
                decode_ssd_nms(
                    &boxes.data,
                    &scores.data,
                    &classes.data,
                    n,
                    s.class_offset,
                    &self.labels,
                    confidence,
                    original,
                )
            }
            // Decoded above.
            Decoder::CenternetHeads | Decoder::SsdRaw | Decoder::Movenet => {
                Err("decoded in place".into())
            }
            Decoder::Centernet => {
                let rows = take(&mut out, &s.boxes)?;
                let size = s.size.unwrap_or([original.0, original.1]);
                decode_centernet(&rows.data, size, &self.labels, confidence, iou, original)
            }
            Decoder::Yolov8 => {
                let t = take(&mut out, &s.boxes)?;
                let anchors = t.shape.last().copied().unwrap_or(0);
                decode_yolov8(
                    &t.data,
                    anchors,
                    &self.labels,
                    confidence,
                    iou,
                    letterbox.unwrap_or(Letterbox {
                        scale: 1.0,
                        pad_x: 0.0,
                        pad_y: 0.0,
                    }),
                    original,
                )
            }
        };
        dets.map_err(bad)
    }

    /// CenterNet's raw heads, millions of scores per photo: read in place, never copied out
    /// of the session.
    fn run_heads(
        &self,
        input: Input<'_>,
        confidence: f32,
        iou: f32,
        original: (u32, u32),
    ) -> Result<Vec<Detection>> {
        let s = &self.spec;
        let heat_name = self.named(&s.scores, "scores")?;
        let size = s.size.unwrap_or([original.0, original.1]);
        let heads = [heat_name, s.boxes.as_str()];
        let rows = self.session.run_view(&[input], &heads, |views| {
            let ((shape, heat), (_, wh)) = (&views[0], &views[1]);
            let [_, classes, h, w] = shape[..] else {
                return Err(Error::Inference(format!(
                    "detector {}: heat map of shape {shape:?}, not [1, classes, h, w]",
                    self.name
                )));
            };
            let stride = size[0] as f32 / w.max(1) as f32;
            let cells = [classes, h, w];
            centernet_peaks(heat, wh, cells, stride, CENTERNET_TOP_K, confidence)
                .map_err(Error::Inference)
        })?;
        decode_centernet(&rows, size, &self.labels, confidence, iou, original)
            .map_err(Error::Inference)
    }

    fn named<'a>(&self, v: &'a Option<String>, what: &str) -> Result<&'a str> {
        v.as_deref().ok_or_else(|| {
            Error::BadInput(format!(
                "detector {}: manifest names no `{what}` output",
                self.name
            ))
        })
    }

    fn input(&self, img: &RgbImage) -> (Pixels, Option<Letterbox>) {
        let s = &self.spec;
        match (s.layout, s.size) {
            (Layout::NhwcU8, _) => {
                let (w, h) = img.dimensions();
                match s.max_input_side {
                    Some(side) if w.max(h) > side => {
                        let scale = f64::from(side) / f64::from(w.max(h));
                        let nw = ((f64::from(w) * scale).round() as u32).max(1);
                        let nh = ((f64::from(h) * scale).round() as u32).max(1);
                        let small = resize_bilinear(img, nw, nh);
                        (Pixels::U8(small.into_raw(), nw, nh), None)
                    }
                    _ => (Pixels::U8(img.as_raw().clone(), w, h), None),
                }
            }
            (Layout::NhwcI32, Some([w, h])) => {
                let side = w.max(h);
                let lb = Letterbox::fit(img.width(), img.height(), side);
                let square = letterbox(img, side, lb, 0);
                let data = square.as_raw().iter().map(|&v| i32::from(v)).collect();
                (Pixels::I32(data, side), Some(lb))
            }
            (layout, Some([w, h])) => {
                // YOLOv8 exports expect a letterboxed square; the TF models a stretched image.
                let (resized, lb) = if s.decoder == Decoder::Yolov8 {
                    let lb = Letterbox::fit(img.width(), img.height(), w.max(h));
                    (letterbox(img, w.max(h), lb, 114), Some(lb))
                } else {
                    (resize_bilinear(img, w, h), None)
                };
                let f = |v: u8| f32::from(v) * s.scale + s.offset;
                let data = if layout == Layout::NchwF32 {
                    let n = (w * h) as usize;
                    let mut out = vec![0f32; 3 * n];
                    for (i, p) in resized.pixels().enumerate() {
                        for c in 0..3 {
                            out[c * n + i] = f(p.0[c]);
                        }
                    }
                    out
                } else {
                    resized.as_raw().iter().map(|&v| f(v)).collect()
                };
                (Pixels::F32(data), lb)
            }
            (_, None) => (Pixels::F32(Vec::new()), None),
        }
    }
}

/// A detector's input for one image, ready for [`Detector::run`].
pub struct Prepared {
    pixels: Pixels,
    letterbox: Option<Letterbox>,
    original: (u32, u32),
}

enum Pixels {
    U8(Vec<u8>, u32, u32),
    F32(Vec<f32>),
    /// A `side`×`side` square.
    I32(Vec<i32>, u32),
}

/// `img` scaled by `lb` onto a `side`×`side` square of grey level `fill`.
fn letterbox(img: &RgbImage, side: u32, lb: Letterbox, fill: u8) -> RgbImage {
    let nw = ((img.width() as f32 * lb.scale).round() as u32).clamp(1, side);
    let nh = ((img.height() as f32 * lb.scale).round() as u32).clamp(1, side);
    let scaled = resize_bilinear(img, nw, nh);
    let mut out = RgbImage::from_pixel(side, side, image::Rgb([fill; 3]));
    image::imageops::replace(
        &mut out,
        &scaled,
        i64::from(lb.pad_x as u32),
        i64::from(lb.pad_y as u32),
    );
    out
}

#[cfg(test)]
mod tests;

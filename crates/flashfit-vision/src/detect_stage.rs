//! The detect stage: every configured detector on the whole photo, every confident detection
//! recorded, and the garment chosen — the largest confident garment detection; else, for a worn
//! garment, the largest person; else the foreground region of the photo (a flat-lay or hanger
//! shot), else the whole photo. `detection.source` says which.

use flashfit_schema::GarmentRecord;
pub use flashfit_schema::record::DetectionSource as Source;
use flashfit_schema::record::{DetectedObject, Detection as Record};
use image::RgbImage;

use crate::colour::foreground_box;
use crate::detect::Detection;
use crate::detector::{Detector, Prepared, Role};
use crate::enrich::{EnrichStage, Enricher, scaled_box};

pub type DetectStage = EnrichStage<Detect>;

pub struct Detect {
    pub detectors: Vec<Detector>,
    pub confidence: f32,
    pub iou: f32,
    /// Lab distance from the border colour that counts as foreground (fallback box).
    pub background_delta_e: f32,
    /// Long side (pixels) the foreground fallback samples photos down to (0: every pixel).
    pub foreground_side: u32,
    /// Detection jobs run at once (`[detect] jobs`; each detector has that many sessions).
    pub jobs: usize,
}

/// One detection with the model that made it and what it means.
#[derive(Debug, Clone)]
pub struct Found {
    pub model: String,
    pub role: Role,
    pub det: Detection,
}

/// The detect stage's verdict for one photo.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub all: Vec<Found>,
    /// Index into `all` of the primary detection, if one was used.
    pub primary: Option<usize>,
    pub source: Source,
    pub bbox: [f32; 4],
}

fn area(b: [f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Chooses the garment among `all` detections of a `w`×`h` photo (pure: tested without models).
pub fn choose(
    all: Vec<Found>,
    img: &RgbImage,
    background_delta_e: f32,
    foreground_side: u32,
) -> Verdict {
    let largest = |role: Role| {
        all.iter()
            .enumerate()
            .filter(|(_, f)| f.role == role)
            .max_by(|a, b| area(a.1.det.bbox).total_cmp(&area(b.1.det.bbox)))
            .map(|(i, f)| (i, f.det.bbox))
    };
    if let Some((i, bbox)) = largest(Role::Garment) {
        return Verdict {
            primary: Some(i),
            source: Source::Detector,
            bbox,
            all,
        };
    }
    if let Some((i, bbox)) = largest(Role::Person) {
        return Verdict {
            primary: Some(i),
            source: Source::Person,
            bbox,
            all,
        };
    }
    let (source, bbox) = match foreground_box(img, background_delta_e, foreground_side) {
        Some(b) => (Source::Foreground, b),
        None => (
            Source::FullImage,
            [0.0, 0.0, img.width() as f32, img.height() as f32],
        ),
    };
    Verdict {
        all,
        primary: None,
        source,
        bbox,
    }
}

fn rounded(b: [f32; 4]) -> [f32; 4] {
    b.map(f32::round)
}

impl Verdict {
    /// Every box scaled by `s`: from the pixels of a photo decoded smaller to the photo's.
    fn scaled(mut self, s: (f32, f32)) -> Self {
        if s != (1.0, 1.0) {
            self.bbox = scaled_box(self.bbox, s);
            for f in &mut self.all {
                f.det.bbox = scaled_box(f.det.bbox, s);
            }
        }
        self
    }
}

impl Enricher for Detect {
    const STAGE: &'static str = "detect";
    /// The photo (for the foreground fallback), each detector's prepared input, and the scale
    /// from the photo as decoded to the photo as uploaded.
    type Prepared = (RgbImage, Vec<Prepared>, (f32, f32));
    type Output = Verdict;

    fn prepare(&self, _record: &GarmentRecord, img: RgbImage) -> Self::Prepared {
        let inputs = self.detectors.iter().map(|d| d.prepare(&img)).collect();
        (img, inputs, (1.0, 1.0))
    }

    /// Twice the largest input side of its detectors and of the foreground fallback's sample:
    /// every resize still halves the pixels. Never smaller with a detector that takes the
    /// photo as it is, or with the fallback box on every pixel (`foreground_side` 0: exact).
    fn min_photo_side(&self) -> u32 {
        if self.foreground_side == 0 {
            return u32::MAX;
        }
        let mut side = self.foreground_side;
        for d in &self.detectors {
            match d.input_side() {
                Some(s) => side = side.max(s),
                None => return u32::MAX,
            }
        }
        side.saturating_mul(2)
    }

    /// The boxes are found in the decoded photo's pixels and written in the uploaded photo's.
    fn prepare_at(
        &self,
        record: &GarmentRecord,
        img: RgbImage,
        full: (u32, u32),
    ) -> Self::Prepared {
        let scale = crate::enrich::scale(img.dimensions(), full);
        let (img, inputs, _) = self.prepare(record, img);
        (img, inputs, scale)
    }

    fn infer(&self, batch: Vec<Self::Prepared>) -> Result<Vec<Self::Output>, String> {
        // The TF detectors take one image per call (fixed batch 1). Every (image, detector)
        // pair is one job; up to `jobs` run at once (each detector has that many sessions), so
        // one photo's detectors run side by side and a batch's photos spread over the cores.
        let pairs: Vec<(usize, usize)> = (0..batch.len())
            .flat_map(|i| (0..self.detectors.len()).map(move |d| (i, d)))
            .collect();
        let found = flashfit_models::par_map(pairs, self.jobs, |(i, d)| {
            let det = &self.detectors[d];
            det.run(&batch[i].1[d], self.confidence, self.iou)
                .map_err(|e| format!("{}: {e}", det.name))
        });
        let mut found = found.into_iter();
        let mut out = Vec::with_capacity(batch.len());
        for (img, _, scale) in &batch {
            let mut all = Vec::new();
            for d in &self.detectors {
                let dets = found.next().ok_or("a detection job went missing")??;
                all.extend(dets.into_iter().map(|det| Found {
                    model: d.name.clone(),
                    role: d.role(&det.class),
                    det,
                }));
            }
            out.push(
                choose(all, img, self.background_delta_e, self.foreground_side).scaled(*scale),
            );
        }
        Ok(out)
    }

    fn finish(&self, record: &mut GarmentRecord, v: Verdict) {
        let primary = v.primary.and_then(|i| v.all.get(i));
        record.detection = Some(Record {
            class: primary
                .map_or(v.source.as_str(), |f| f.det.class.as_str())
                .to_owned(),
            confidence: primary.map(|f| f.det.confidence),
            bbox: rounded(v.bbox),
            source: v.source,
            model: primary.map(|f| f.model.clone()),
            all: v
                .all
                .iter()
                .map(|f| DetectedObject {
                    class: f.det.class.clone(),
                    confidence: f.det.confidence,
                    bbox: rounded(f.det.bbox),
                    model: f.model.clone(),
                    role: f.role,
                })
                .collect(),
            extra: Default::default(),
        });
    }

    fn models(&self) -> Vec<(String, String)> {
        self.detectors
            .iter()
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(role: Role, bbox: [f32; 4]) -> Found {
        Found {
            model: "m".into(),
            role,
            det: Detection {
                class_id: 0,
                class: format!("{role:?}"),
                confidence: 0.9,
                bbox,
            },
        }
    }

    #[test]
    fn the_largest_garment_wins_then_a_person_then_the_foreground() {
        let img = RgbImage::from_fn(100, 80, |x, y| {
            if (30..60).contains(&x) && (20..50).contains(&y) {
                image::Rgb([200, 20, 20])
            } else {
                image::Rgb([240, 240, 240])
            }
        });
        let v = choose(
            vec![
                found(Role::Person, [0.0, 0.0, 100.0, 80.0]),
                found(Role::Garment, [0.0, 0.0, 10.0, 10.0]),
                found(Role::Garment, [0.0, 0.0, 20.0, 20.0]),
                found(Role::Other, [0.0, 0.0, 90.0, 80.0]),
            ],
            &img,
            12.0,
            512,
        );
        assert_eq!(
            (v.source, v.primary, v.bbox),
            (Source::Detector, Some(2), [0.0, 0.0, 20.0, 20.0])
        );
        let v = choose(
            vec![found(Role::Person, [1.0, 2.0, 50.0, 60.0])],
            &img,
            12.0,
            512,
        );
        assert_eq!((v.source, v.primary), (Source::Person, Some(0)));
        let v = choose(
            vec![found(Role::Other, [0.0, 0.0, 90.0, 80.0])],
            &img,
            12.0,
            512,
        );
        assert_eq!(v.source, Source::Foreground);
        assert_eq!(v.bbox, [30.0, 20.0, 60.0, 50.0]);
        let blank = RgbImage::from_pixel(50, 50, image::Rgb([9, 9, 9]));
        let v = choose(Vec::new(), &blank, 12.0, 512);
        assert_eq!(
            (v.source, v.bbox),
            (Source::FullImage, [0.0, 0.0, 50.0, 50.0])
        );
    }
}

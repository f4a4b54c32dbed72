//! The detect stage: every configured detector on the whole photo, every confident detection
//! recorded, and the garment chosen — the largest confident garment detection or body region
//! the pose model found (top, bottom, footwear: the garment is worn); else the largest person;
//! else the foreground region of the photo (a flat-lay or hanger shot), else
//! the whole photo. `detection.source` says which. An outfit upload (`kind` = `outfit`) with
//! a person becomes one garment per item found ([`outfit_items`]).

pub use flashfit_schema::record::DetectionSource as Source;
use flashfit_schema::record::{DetectedObject, Detection as Record, OutfitItem};
use flashfit_schema::{GarmentRecord, UploadKind};
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
    let largest = |roles: &[Role]| {
        all.iter()
            .enumerate()
            .filter(|(_, f)| roles.contains(&f.role))
            .max_by(|a, b| area(a.1.det.bbox).total_cmp(&area(b.1.det.bbox)))
            .map(|(i, f)| (i, f.det.bbox))
    };
    // A garment box and a body region compete by size: on a person, the coat's region beats
    // the shoe box; on a product shot there is no region.
    if let Some((i, bbox)) = largest(&[Role::Garment, Role::Region]) {
        return Verdict {
            primary: Some(i),
            source: source_of(all[i].role),
            bbox,
            all,
        };
    }
    if let Some((i, bbox)) = largest(&[Role::Person]) {
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

/// Where a garment detected with `role` came from: a body region or a garment box.
fn source_of(role: Role) -> Source {
    match role {
        Role::Region => Source::Pose,
        _ => Source::Detector,
    }
}

/// Classes of a box detector that refine a pose footwear region (the Open Images SSD's).
const FOOTWEAR: [&str; 3] = ["Footwear", "Boot", "High heels"];
/// Classes of a box detector that are outfit items of their own (COCO's).
const CARRIED: [&str; 3] = ["tie", "handbag", "backpack"];

/// The items of an outfit photo, from the detect stage's detections: `(item, detection)` with
/// item names `<class>-<n>` (n counts per class in detection order: people left to right).
/// Every body region the pose model found is one (a footwear region reaches down to the soles
/// of the shoe boxes centred in it, when a box detector found any), and so is every tie, handbag and
/// backpack. Nothing when no body region was found: without a person there is no outfit.
pub fn outfit_items(all: &[DetectedObject]) -> Vec<(String, DetectedObject)> {
    if !all.iter().any(|o| o.role == Role::Region) {
        return Vec::new();
    }
    let centre_in = |b: [f32; 4], r: [f32; 4]| {
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        cx >= r[0] && cx <= r[2] && cy >= r[1] && cy <= r[3]
    };
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for o in all {
        let mut item = o.clone();
        match o.role {
            Role::Region if o.class == "footwear" => {
                // The ankles say where the feet are; the shoe boxes say where the soles end.
                let soles = all
                    .iter()
                    .filter(|s| FOOTWEAR.contains(&s.class.as_str()) && centre_in(s.bbox, o.bbox))
                    .map(|s| s.bbox[3])
                    .reduce(f32::max);
                if let Some(bottom) = soles {
                    item.bbox[3] = item.bbox[3].max(bottom);
                }
            }
            Role::Region => {}
            Role::Garment if CARRIED.contains(&o.class.as_str()) => {}
            _ => continue,
        }
        let n = counts.entry(o.class.clone()).or_default();
        *n += 1;
        out.push((format!("{}-{n}", o.class), item));
        if out.len() == flashfit_schema::MAX_GARMENTS_PER_EVENT {
            break;
        }
    }
    out
}

/// The garment records an outfit upload becomes: one per item, ids derived from the upload's.
pub fn split_outfit(record: &GarmentRecord) -> Vec<GarmentRecord> {
    let Some(detection) = record.detection.as_ref() else {
        return Vec::new();
    };
    if record.upload.kind() != UploadKind::Outfit || record.outfit.is_some() {
        return Vec::new();
    }
    let items = outfit_items(&detection.all);
    let upload = &record.upload;
    let ids: Vec<String> = items
        .iter()
        .map(|(item, _)| format!("{}/{item}", upload.garment_id))
        .collect();
    items
        .into_iter()
        .zip(&ids)
        .map(|((item, o), garment_id)| {
            let mut r = record.clone();
            r.upload.event_id = format!("{}/{item}", upload.event_id);
            r.upload.garment_id = garment_id.clone();
            r.detection = Some(Record {
                class: o.class.clone(),
                confidence: Some(o.confidence),
                bbox: o.bbox,
                source: source_of(o.role),
                model: Some(o.model.clone()),
                all: detection.all.clone(),
                extra: detection.extra.clone(),
            });
            r.outfit = Some(OutfitItem {
                event_id: upload.event_id.clone(),
                garment_id: upload.garment_id.clone(),
                item,
                garment_ids: ids.clone(),
            });
            r
        })
        .collect()
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
    /// The photo (for the foreground fallback), each detector's prepared input, the scale from
    /// the photo as decoded to the photo as uploaded, and whether the upload is an outfit (the
    /// pose model then always runs).
    type Prepared = (RgbImage, Vec<Prepared>, (f32, f32), bool);
    type Output = Verdict;

    fn prepare(&self, record: &GarmentRecord, img: RgbImage) -> Self::Prepared {
        let inputs = self.detectors.iter().map(|d| d.prepare(&img)).collect();
        let outfit = record.upload.kind() == UploadKind::Outfit;
        (img, inputs, (1.0, 1.0), outfit)
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
        let (img, inputs, _, outfit) = self.prepare(record, img);
        (img, inputs, scale, outfit)
    }

    fn infer(&self, batch: Vec<Self::Prepared>) -> Result<Vec<Self::Output>, String> {
        // The TF detectors take one image per call (fixed batch 1). Every (image, detector)
        // pair is one job; up to `jobs` run at once (each detector has that many sessions), so
        // one photo's detectors run side by side and a batch's photos spread over the cores.
        // A pose model (the costliest, ~40 ms) runs second, only on outfit uploads and on the
        // photos where a box detector found a person: a product shot never pays for it.
        let mut all: Vec<Vec<Found>> = vec![Vec::new(); batch.len()];
        let collect = |all: &mut Vec<Vec<Found>>, pairs: Vec<(usize, usize)>| {
            let found = flashfit_models::par_map(pairs.clone(), self.jobs, |(i, d)| {
                let det = &self.detectors[d];
                det.run(&batch[i].1[d], self.confidence, self.iou)
                    .map_err(|e| format!("{}: {e}", det.name))
            });
            for ((i, d), dets) in pairs.into_iter().zip(found) {
                let det = &self.detectors[d];
                all[i].extend(dets?.into_iter().map(|x| Found {
                    model: det.name.clone(),
                    role: det.role(&x.class),
                    det: x,
                }));
            }
            Ok::<(), String>(())
        };
        let boxes: Vec<(usize, usize)> = (0..batch.len())
            .flat_map(|i| {
                (0..self.detectors.len())
                    .filter(|&d| !self.detectors[d].is_pose())
                    .map(move |d| (i, d))
            })
            .collect();
        collect(&mut all, boxes)?;
        let people: Vec<bool> = all
            .iter()
            .map(|f| f.iter().any(|f| f.role == Role::Person))
            .collect();
        let only_pose = self.detectors.iter().all(Detector::is_pose);
        let poses: Vec<(usize, usize)> = (0..batch.len())
            .filter(|&i| people[i] || batch[i].3 || only_pose)
            .flat_map(|i| {
                (0..self.detectors.len())
                    .filter(|&d| self.detectors[d].is_pose())
                    .map(move |d| (i, d))
            })
            .collect();
        collect(&mut all, poses)?;
        Ok(batch
            .iter()
            .zip(all)
            .map(|((img, _, scale, _), all)| {
                choose(all, img, self.background_delta_e, self.foreground_side).scaled(*scale)
            })
            .collect())
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

    fn split(&self, record: &GarmentRecord) -> Vec<GarmentRecord> {
        split_outfit(record)
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

    fn object(class: &str, role: Role, bbox: [f32; 4]) -> DetectedObject {
        DetectedObject {
            class: class.into(),
            confidence: 0.8,
            bbox,
            model: "m".into(),
            role,
        }
    }

    #[test]
    fn a_body_region_beats_a_smaller_shoe_box_and_a_person() {
        let img = RgbImage::from_pixel(100, 200, image::Rgb([240, 240, 240]));
        let v = choose(
            vec![
                found(Role::Person, [0.0, 0.0, 100.0, 200.0]),
                found(Role::Garment, [10.0, 180.0, 30.0, 200.0]),
                found(Role::Region, [10.0, 40.0, 90.0, 110.0]),
            ],
            &img,
            12.0,
            512,
        );
        assert_eq!((v.source, v.primary), (Source::Pose, Some(2)));
    }

    #[test]
    fn outfit_items_are_the_regions_shoes_and_carried_things_named_in_order() {
        let all = vec![
            object("person", Role::Person, [0.0, 0.0, 300.0, 600.0]),
            object("top", Role::Region, [10.0, 50.0, 120.0, 250.0]),
            object("bottom", Role::Region, [10.0, 240.0, 120.0, 500.0]),
            object("footwear", Role::Region, [0.0, 480.0, 130.0, 560.0]),
            object("top", Role::Region, [150.0, 50.0, 280.0, 250.0]),
            // Two shoes centred in the first footwear region, one elsewhere.
            object("Footwear", Role::Garment, [20.0, 500.0, 50.0, 530.0]),
            object("Footwear", Role::Garment, [70.0, 505.0, 110.0, 540.0]),
            object("Footwear", Role::Garment, [200.0, 10.0, 220.0, 20.0]),
            object("tie", Role::Garment, [60.0, 60.0, 70.0, 150.0]),
            object("umbrella", Role::Other, [0.0, 0.0, 10.0, 10.0]),
        ];
        let items = outfit_items(&all);
        let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["top-1", "bottom-1", "footwear-1", "top-2", "tie-1"]);
        // The footwear region reaches down to the soles of the shoes in it.
        assert_eq!(items[2].1.bbox, [0.0, 480.0, 130.0, 560.0]);
        let mut low = all.clone();
        low[6].bbox = [70.0, 505.0, 110.0, 575.0];
        assert_eq!(outfit_items(&low)[2].1.bbox, [0.0, 480.0, 130.0, 575.0]);
        // Without a body region there is no outfit, whatever else was found.
        assert!(outfit_items(&all[5..]).is_empty());
    }

    #[test]
    fn an_outfit_record_splits_into_garments_with_derived_ids_once() {
        let v = serde_json::json!({
            "event_id": "e1", "user_id": "u1", "garment_id": "g1", "image_uri": "file:///x.jpg",
            "uploaded_at": "2026-12-04T10:00:00Z", "kind": "outfit",
            "detection": {"class": "top", "confidence": 0.8, "bbox": [10, 50, 120, 250],
                "source": "pose", "model": "m", "all": [
                {"class": "top", "confidence": 0.8, "bbox": [10, 50, 120, 250], "model": "m", "role": "region"},
                {"class": "bottom", "confidence": 0.8, "bbox": [10, 240, 120, 500], "model": "m", "role": "region"}]},
        });
        let r = GarmentRecord::from_json(&serde_json::to_vec(&v).expect("json")).expect("record");
        let items = split_outfit(&r);
        let ids: Vec<&str> = items.iter().map(|i| i.upload.garment_id.as_str()).collect();
        assert_eq!(ids, ["g1/top-1", "g1/bottom-1"]);
        assert_eq!(items[1].upload.event_id, "e1/bottom-1");
        let d = items[1].detection.as_ref().expect("detection");
        assert_eq!(
            (d.class.as_str(), d.source, d.bbox),
            ("bottom", Source::Pose, [10.0, 240.0, 120.0, 500.0])
        );
        // An item is never split again, and a garment upload never is.
        assert!(split_outfit(&items[0]).is_empty());
        let mut garment = r.clone();
        garment.upload.kind = None;
        assert!(split_outfit(&garment).is_empty());
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

//! [`EnrichStage`]: the one Kafka-facing shape every model stage shares. It reads the previous
//! stage's record, fetches and decodes the photo (same caps and DLQ reasons as the quality
//! stage), lets an [`Enricher`] prepare each image, runs one batched inference off the reactor,
//! adds the enricher's object and `models` entries to the record, and emits it (plus the
//! `processed` status when the stage is the pipeline's last).

use std::sync::Arc;

use async_trait::async_trait;
use flashfit_config::QualityConfig;
use flashfit_quality::Limits;
use flashfit_quality::intake::{decode_outcome, decode_rgb_oriented_reduced, read_upload};
use flashfit_runtime::{Emit, Message, Outcome, Stage, run_blocking};
use flashfit_schema::record::ModelRef;
use flashfit_schema::{GarmentRecord, Reason, Status, StatusEvent, UploadEvent};
use flashfit_storage::Location;
use futures::StreamExt;
use image::RgbImage;

/// The model-specific half of a stage.
pub trait Enricher: Send + Sync + 'static {
    /// Stage name (`detect`, `classify`, …): metrics, logs, the `models` entry's `stage`.
    const STAGE: &'static str;
    type Prepared: Send + 'static;
    type Output: Send + 'static;

    /// Blocking, per message: the model input from the record and the decoded, oriented photo.
    fn prepare(&self, record: &GarmentRecord, img: RgbImage) -> Self::Prepared;
    /// The model input from the record alone, when the record already carries what the photo
    /// would give (the embed stage and a shared image vector): the photo is then neither
    /// fetched nor decoded.
    fn prepare_without_image(&self, _record: &GarmentRecord) -> Option<Self::Prepared> {
        None
    }
    /// The fewest pixels, on the short side of the garment's box (the whole photo without
    /// one), this stage's pixels need: a JPEG is then decoded at 1/2, 1/4 or 1/8 of its size
    /// (libjpeg-turbo's DCT scaling) as long as the box keeps that many. 0: no need of its own
    /// (with [`Enricher::min_photo_side`] also 0, the full size). `prepare` then gets the
    /// smaller photo and a record whose box is in its pixels ([`Enricher::prepare_at`]).
    fn min_region_side(&self) -> u32 {
        0
    }
    /// As [`Enricher::min_region_side`], for the short side of the whole photo (the detect
    /// stage, which reads all of it); `u32::MAX`: never smaller.
    fn min_photo_side(&self) -> u32 {
        0
    }
    /// `prepare` for the photo decoded at `img`'s size out of `full` (both as displayed): by
    /// default the record's box is mapped onto `img` first. A stage whose output is in the
    /// photo's pixels (detect) maps its own output back instead.
    fn prepare_at(
        &self,
        record: &GarmentRecord,
        img: RgbImage,
        full: (u32, u32),
    ) -> Self::Prepared {
        if img.dimensions() == full {
            self.prepare(record, img)
        } else {
            let decoded = img.dimensions();
            self.prepare(&for_decoded(record, full, decoded), img)
        }
    }
    /// Blocking, per batch: one output per input, in order.
    fn infer(&self, batch: Vec<Self::Prepared>) -> Result<Vec<Self::Output>, String>;
    /// Adds the stage's object to the record.
    fn finish(&self, record: &mut GarmentRecord, out: Self::Output);
    /// After `finish`: a reason to end the upload here as `rejected` (the classify stage's
    /// `not_clothing`); the record then goes no further.
    fn rejection(&self, _record: &GarmentRecord) -> Option<(Reason, String)> {
        None
    }
    /// `(name, version)` of every model whose output the record now carries.
    fn models(&self) -> Vec<(String, String)>;
    /// After `finish`: the garments an outfit upload becomes (the detect stage), each record
    /// with its own ids; empty (the default) when the record goes on as it is.
    fn split(&self, _record: &GarmentRecord) -> Vec<GarmentRecord> {
        Vec::new()
    }
}

/// Where a stage reads and writes, and the caps it applies to photos.
#[derive(Debug, Clone)]
pub struct StageIo {
    pub uploads: Location,
    pub caps: QualityConfig,
    /// Photos fetched and decoded at once.
    pub concurrency: usize,
    pub input: String,
    pub output: String,
    pub status: String,
    /// Last stage of the pipeline: also emits `processed`.
    pub terminal: bool,
    /// Where an outfit upload's `wear` feedback event goes (`flashfit.feedback`).
    pub feedback: String,
}

pub struct EnrichStage<E: Enricher> {
    pub io: StageIo,
    pub enricher: Arc<E>,
}

impl<E: Enricher> EnrichStage<E> {
    pub fn new(io: StageIo, enricher: E) -> Self {
        EnrichStage {
            io,
            enricher: Arc::new(enricher),
        }
    }
}

enum Item<P> {
    Done(Outcome),
    Ready(Box<(GarmentRecord, UploadEvent, P)>),
}

/// The record's `detection.bbox` as `[x1, y1, x2, y2]`, if it has one. (In `prepare`, pixels
/// of the photo as decoded: see [`Enricher::min_region_side`].)
pub fn record_bbox(record: &GarmentRecord) -> Option<[f64; 4]> {
    record.bbox().map(|b| b.map(f64::from))
}

/// The record as `prepare` sees it when the photo was decoded at `decoded` instead of its full
/// size `full` (both as displayed): its box in the decoded photo's pixels. The record that is
/// emitted keeps the box as it was.
fn for_decoded(record: &GarmentRecord, full: (u32, u32), decoded: (u32, u32)) -> GarmentRecord {
    let mut seen = record.clone();
    if let Some(d) = seen.detection.as_mut() {
        d.bbox = scaled_box(d.bbox, scale(full, decoded));
    }
    seen
}

/// `b` (`[x1, y1, x2, y2]`) with its x coordinates times `sx` and its y coordinates times `sy`.
pub(crate) fn scaled_box(b: [f32; 4], (sx, sy): (f32, f32)) -> [f32; 4] {
    [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]
}

/// The factors (x, y) from pixels of an image of size `from` to pixels of the same image at
/// size `to`.
pub fn scale(from: (u32, u32), to: (u32, u32)) -> (f32, f32) {
    (
        to.0 as f32 / from.0.max(1) as f32,
        to.1 as f32 / from.1.max(1) as f32,
    )
}

/// How much smaller (1, 2, 4 or 8) the photo of `record` may be decoded while the short side
/// of its garment box keeps `min_region` pixels and the short side of the whole photo
/// `min_photo`. 1 without the photo's size (a record the quality stage did not describe) or
/// when neither minimum is set.
pub fn reduction(record: &GarmentRecord, min_region: u32, min_photo: u32) -> u32 {
    let Some(q) = record.quality.as_ref() else {
        return 1;
    };
    if min_region == 0 && min_photo == 0 {
        return 1;
    }
    let (w, h) = (f64::from(q.width), f64::from(q.height));
    let b = record_bbox(record).unwrap_or([0.0, 0.0, w, h]);
    let short_box =
        (b[2].clamp(0.0, w) - b[0].clamp(0.0, w)).min(b[3].clamp(0.0, h) - b[1].clamp(0.0, h));
    [8, 4, 2]
        .into_iter()
        .find(|&d| {
            let d = f64::from(d);
            short_box / d >= f64::from(min_region) && w.min(h) / d >= f64::from(min_photo)
        })
        .unwrap_or(1)
}

/// The region of `img` inside `[x1, y1, x2, y2]` (pixels), clamped; the whole image if empty.
pub fn region(img: &RgbImage, b: [f64; 4]) -> flashfit_models::Region {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let x1 = b[0].clamp(0.0, w) as u32;
    let y1 = b[1].clamp(0.0, h) as u32;
    let x2 = b[2].clamp(0.0, w) as u32;
    let y2 = b[3].clamp(0.0, h) as u32;
    if x2 <= x1 + 1 || y2 <= y1 + 1 {
        return flashfit_models::whole(img);
    }
    (x1, y1, x2 - x1, y2 - y1)
}

/// The part of `img` inside `[x1, y1, x2, y2]` (pixels), clamped; the whole image if empty.
pub fn crop(img: &RgbImage, b: [f64; 4]) -> RgbImage {
    let (x, y, w, h) = region(img, b);
    if (x, y, w, h) == flashfit_models::whole(img) {
        return img.clone();
    }
    image::imageops::crop_imm(img, x, y, w, h).to_image()
}

/// The garment's region of the photo: the record's detection box (the whole photo without one).
pub fn garment_region(record: &GarmentRecord, img: &RgbImage) -> flashfit_models::Region {
    record_bbox(record).map_or_else(
        || flashfit_models::whole(img),
        |b| region(img, square_context(b, img)),
    )
}

/// The square around a garment box that the image models see: the box's long side plus a
/// tenth, centred on the box and shifted (then clipped) to stay inside the photo. The
/// classifier's resize-and-centre-crop would otherwise cut the ends off a long box (a
/// shoe's toe and heel), and its head was trained on whole product shots, not tight crops.
pub fn square_context(b: [f64; 4], img: &RgbImage) -> [f64; 4] {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let side = ((b[2] - b[0]).max(b[3] - b[1]) * 1.1).max(1.0);
    let place = |lo: f64, hi: f64, limit: f64| {
        let start = ((lo + hi) / 2.0 - side / 2.0).min(limit - side).max(0.0);
        [start, (start + side).min(limit)]
    };
    let [x1, x2] = place(b[0], b[2], w);
    let [y1, y2] = place(b[1], b[3], h);
    [x1, y1, x2, y2]
}

/// The garment as the image models see it: the photo cropped to the [`square_context`] of the
/// record's detection box (the whole photo without one).
pub fn garment_crop(record: &GarmentRecord, img: RgbImage) -> RgbImage {
    match record_bbox(record) {
        Some(b) => crop(&img, square_context(b, &img)),
        None => img,
    }
}

impl<E: Enricher> EnrichStage<E> {
    async fn prepare(&self, msg: Message) -> Item<E::Prepared> {
        let invalid = |message: String| {
            Item::Done(Outcome::BadInput {
                reason: Reason::InvalidEvent,
                message,
            })
        };
        // Parsed once: the record may carry what the photo would give (no fetch, no decode).
        let parsed = GarmentRecord::from_json(msg.payload());
        if let Ok(record) = &parsed
            && let Some(p) = self.enricher.prepare_without_image(record)
        {
            return match UploadEvent::from_json(msg.payload()) {
                Ok(upload) => Item::Ready(Box::new((record.clone(), upload, p))),
                Err(e) => invalid(e.0),
            };
        }
        let (upload, bytes) = match read_upload(
            &self.io.uploads,
            msg.payload(),
            &self.io.caps,
            flashfit_quality::intake::MAX_RECORD_BYTES,
            msg.waited(),
        )
        .await
        {
            Ok(x) => x,
            Err(o) => return Item::Done(o),
        };
        let record = match parsed {
            Ok(r) => r,
            Err(e) => return invalid(e.to_string()),
        };
        let limits = Limits {
            max_pixels: self.io.caps.max_pixels,
            max_side: self.io.caps.max_side,
        };
        let enricher = self.enricher.clone();
        let reduce = reduction(
            &record,
            enricher.min_region_side(),
            enricher.min_photo_side(),
        );
        let permit = flashfit_quality::intake::reserve_decode(&bytes, &self.io.caps).await;
        let prepared = run_blocking(move || {
            decode_rgb_oriented_reduced(&bytes, limits, reduce).map(|(img, full)| {
                let p = enricher.prepare_at(&record, img, full);
                (record, p)
            })
        })
        .await;
        // The full-size pixels are gone once prepared (the model input is small).
        drop(permit);
        match prepared {
            Ok(Ok((record, p))) => Item::Ready(Box::new((record, upload, p))),
            Ok(Err(e)) => Item::Done(decode_outcome(e)),
            Err(m) => Item::Done(Outcome::BadInput {
                reason: Reason::Undecodable,
                message: format!("decoder failed: {m}"),
            }),
        }
    }

    fn emit(&self, mut record: GarmentRecord, upload: &UploadEvent, out: E::Output) -> Outcome {
        self.enricher.finish(&mut record, out);
        if self.io.terminal {
            // When the garment was done: the sinks' `processed_at` (and `dt=` partition) come
            // from the record, so re-sinking the same record writes the same row.
            record.processed_at = Some(chrono::Utc::now());
        }
        for (name, version) in self.enricher.models() {
            record.models.push(ModelRef {
                stage: E::STAGE.to_owned(),
                name,
                version,
            });
        }
        let items = self.enricher.split(&record);
        if !items.is_empty() {
            return self.emit_split(upload, items);
        }
        let key = Some(upload.garment_id.clone().into_bytes());
        // A rejected upload ends here: its status, no record.
        let rejection = self.enricher.rejection(&record);
        let mut out = Vec::with_capacity(2);
        if rejection.is_none() {
            out.push(Emit {
                topic: self.io.output.clone(),
                key: key.clone(),
                value: record.to_json(),
            });
        }
        if self.io.terminal || rejection.is_some() {
            let mut s = match rejection {
                Some((reason, message)) => StatusEvent::rejected(upload, E::STAGE, reason, message),
                None => StatusEvent::for_upload(upload, Status::Processed, E::STAGE),
            };
            if let Some(q) = &record.quality {
                s.warnings = q.warnings.clone();
            }
            out.push(Emit {
                topic: self.io.status.clone(),
                key,
                value: s.to_json(),
            });
        }
        Outcome::Emit(out)
    }

    /// An outfit upload's garments, each on the output topic under its own garment id (and
    /// `processed` when this stage is the last), the upload's `split` status listing them, and
    /// the outfit's `wear` feedback event (event_id `<event_id>/wear`: idempotent).
    fn emit_split(&self, upload: &UploadEvent, items: Vec<GarmentRecord>) -> Outcome {
        let ids: Vec<String> = items.iter().map(|r| r.upload.garment_id.clone()).collect();
        let mut out = Vec::with_capacity(2 * items.len() + 2);
        for item in items {
            let key = Some(item.upload.garment_id.clone().into_bytes());
            out.push(Emit {
                topic: self.io.output.clone(),
                key: key.clone(),
                value: item.to_json(),
            });
            if self.io.terminal {
                out.push(Emit {
                    topic: self.io.status.clone(),
                    key,
                    value: StatusEvent::for_upload(&item.upload, Status::Processed, E::STAGE)
                        .to_json(),
                });
            }
        }
        let wear = flashfit_schema::FeedbackEvent {
            event_id: format!("{}/wear", upload.event_id),
            user_id: upload.user_id.clone(),
            signal: flashfit_schema::Signal::Wear,
            garment_ids: ids.clone(),
            outfit_id: Some(upload.garment_id.clone()),
            ts: upload.uploaded_at,
        };
        out.push(Emit {
            topic: self.io.feedback.clone(),
            key: Some(upload.user_id.clone().into_bytes()),
            value: serde_json::to_vec(&wear).unwrap_or_default(),
        });
        out.push(Emit {
            topic: self.io.status.clone(),
            key: Some(upload.garment_id.clone().into_bytes()),
            value: StatusEvent::split(upload, E::STAGE, ids).to_json(),
        });
        Outcome::Emit(out)
    }
}

#[async_trait]
impl<E: Enricher> Stage for EnrichStage<E> {
    fn name(&self) -> &str {
        E::STAGE
    }

    fn input_topic(&self) -> &str {
        &self.io.input
    }

    fn output_topics(&self) -> Vec<String> {
        vec![self.io.output.clone(), self.io.status.clone()]
    }

    fn status_topic(&self) -> Option<&str> {
        Some(&self.io.status)
    }

    fn on_dead_letter(&self, msg: &Message, reason: Reason, message: &str) -> Vec<Emit> {
        flashfit_runtime::failed_upload_status(&self.io.status, E::STAGE, msg, reason, message)
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        let items: Vec<Item<E::Prepared>> = futures::stream::iter(batch)
            .map(|m| self.prepare(m))
            .buffered(self.io.concurrency.max(1))
            .collect()
            .await;
        let mut slots = Vec::with_capacity(items.len());
        let mut inputs = Vec::new();
        let mut fault = None;
        for item in items {
            match item {
                Item::Done(o) => slots.push(Err(o)),
                Item::Ready(b) => {
                    let (record, upload, p) = *b;
                    if flashfit_runtime::faults::armed("infer", &upload.event_id) {
                        fault = Some(upload.event_id.clone());
                    }
                    inputs.push(p);
                    slots.push(Ok((record, upload)));
                }
            }
        }
        // One inference call for every decodable image of the batch, off the reactor.
        let enricher = self.enricher.clone();
        let results = match run_blocking(move || match fault {
            Some(id) => Err(format!("injected fault for {id}")),
            None => enricher.infer(inputs),
        })
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) | Err(e) => Err(format!("inference failed: {e}")),
        };
        let mut results = match results {
            Ok(r) => r.into_iter(),
            Err(why) => {
                return slots
                    .into_iter()
                    .map(|s| s.err().unwrap_or_else(|| Outcome::Internal(why.clone())))
                    .collect();
            }
        };
        slots
            .into_iter()
            .map(|slot| match slot {
                Err(o) => o,
                Ok((record, upload)) => match results.next() {
                    Some(out) => self.emit(record, &upload, out),
                    None => Outcome::Internal("model returned fewer outputs than inputs".into()),
                },
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use flashfit_config::QualityConfig;
use flashfit_models::head::LinearHead;
use flashfit_models::taxonomy::{Classification, ImageNetMap};
use flashfit_models::{ImageNetModel, preprocess_imagenet};
use flashfit_quality::Limits;
use flashfit_quality::intake::{decode_outcome, decode_rgb_oriented, read_upload};
use flashfit_runtime::{Emit, Message, Outcome, Stage, run_blocking};
use flashfit_schema::{Status, StatusEvent, UploadEvent, taxonomy};
use flashfit_storage::Location;
use futures::StreamExt;
use serde_json::{Value, json};

/// How ImageNet outputs become taxonomy categories.
pub enum Scorer {
    /// The shipped ImageNet label map.
    ImageNet(ImageNetMap),
    /// A trained taxonomy head on the embedding (`flashfit train head`); the label map still
    /// gives `is_clothing`.
    Head(Box<LinearHead>, ImageNetMap),
}

/// Reads the previous stage's records, adds `classification` and a `models` entry.
pub struct ClassifyStage {
    pub uploads: Location,
    pub model: Arc<ImageNetModel>,
    pub scorer: Scorer,
    pub caps: QualityConfig,
    pub concurrency: usize,
    pub top_k: usize,
    pub input: String,
    pub output: String,
    pub status: String,
    /// Last stage of the pipeline: emits `processed`.
    pub terminal: bool,
}

/// One message on its way through the batch.
enum Item {
    Done(Outcome),
    Ready(Box<(Value, UploadEvent, Vec<f32>)>),
}

impl ClassifyStage {
    async fn prepare(&self, msg: Message) -> Item {
        let (upload, bytes) =
            match read_upload(&self.uploads, msg.payload(), self.caps.max_bytes).await {
                Ok(x) => x,
                Err(o) => return Item::Done(o),
            };
        let Ok(record) = serde_json::from_slice::<Value>(msg.payload()) else {
            return Item::Done(Outcome::BadInput {
                reason: flashfit_schema::Reason::InvalidEvent,
                message: "record is not a JSON object".into(),
            });
        };
        let bbox = record["detection"]["bbox"].as_array().and_then(|b| {
            let v: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            (v.len() == 4).then(|| [v[0], v[1], v[2], v[3]])
        });
        let limits = Limits {
            max_pixels: self.caps.max_pixels,
            max_side: self.caps.max_side,
        };
        let input = run_blocking(move || {
            decode_rgb_oriented(&bytes, limits).map(|img| {
                let img = match bbox {
                    Some(b) => crop(&img, b),
                    None => img,
                };
                preprocess_imagenet(&img)
            })
        })
        .await;
        match input {
            Ok(Ok(x)) => Item::Ready(Box::new((record, upload, x))),
            Ok(Err(e)) => Item::Done(decode_outcome(e)),
            Err(m) => Item::Done(Outcome::BadInput {
                reason: flashfit_schema::Reason::Undecodable,
                message: format!("decoder failed: {m}"),
            }),
        }
    }

    fn classify(&self, out: &flashfit_models::ImageNetOutput) -> Classification {
        match &self.scorer {
            Scorer::ImageNet(map) => map.classify(out, self.top_k),
            Scorer::Head(head, map) => {
                let is_clothing = map.classify(out, 1).is_clothing;
                let mut scores = vec![0f32; taxonomy::CATEGORIES.len()];
                if let Ok(p) = head.predict(&out.embedding) {
                    for (class, prob) in head.classes.iter().zip(p) {
                        if let Some(i) = taxonomy::index(class) {
                            scores[i] += prob;
                        }
                    }
                }
                Classification::from_scores(&scores, is_clothing, self.top_k)
            }
        }
    }

    fn finish(&self, mut record: Value, upload: &UploadEvent, c: Classification) -> Outcome {
        let (name, version) = match &self.scorer {
            Scorer::ImageNet(_) => (
                format!("{}+imagenet-taxonomy-map", ImageNetModel::NAME),
                ImageNetModel::VERSION.to_owned(),
            ),
            Scorer::Head(h, _) => (
                format!("{}+{}", ImageNetModel::NAME, h.name),
                h.version.clone(),
            ),
        };
        record["classification"] = json!({
            "category": c.category,
            "group": taxonomy::group(&c.category),
            "confidence": c.confidence,
            "topk": c.topk.iter().map(|(k, p)| json!({"category": k, "confidence": p})).collect::<Vec<_>>(),
            "is_clothing": c.is_clothing,
            "flagged": c.is_clothing < 0.7,
        });
        let entry = json!({"stage": "classify", "name": name, "version": version});
        match record.get_mut("models").and_then(Value::as_array_mut) {
            Some(models) => models.push(entry),
            None => record["models"] = json!([entry]),
        }
        let key = Some(upload.garment_id.clone().into_bytes());
        let mut out = vec![Emit {
            topic: self.output.clone(),
            key: key.clone(),
            value: serde_json::to_vec(&record).unwrap_or_default(),
        }];
        if self.terminal {
            let mut s = StatusEvent::for_upload(upload, Status::Processed, "classify");
            if let Some(w) = record["quality"]["warnings"].as_array() {
                s.warnings = w
                    .iter()
                    .filter_map(|v| serde_json::from_value(v.clone()).ok())
                    .collect();
            }
            out.push(Emit {
                topic: self.status.clone(),
                key,
                value: s.to_json(),
            });
        }
        Outcome::Emit(out)
    }
}

/// The part of `img` inside `[x1, y1, x2, y2]` (pixels), clamped; the whole image if empty.
fn crop(img: &image::RgbImage, b: [f64; 4]) -> image::RgbImage {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let x1 = b[0].clamp(0.0, w) as u32;
    let y1 = b[1].clamp(0.0, h) as u32;
    let x2 = b[2].clamp(0.0, w) as u32;
    let y2 = b[3].clamp(0.0, h) as u32;
    if x2 <= x1 + 1 || y2 <= y1 + 1 {
        return img.clone();
    }
    image::imageops::crop_imm(img, x1, y1, x2 - x1, y2 - y1).to_image()
}

#[async_trait]
impl Stage for ClassifyStage {
    fn name(&self) -> &str {
        "classify"
    }

    fn input_topic(&self) -> &str {
        &self.input
    }

    fn output_topics(&self) -> Vec<String> {
        vec![self.output.clone(), self.status.clone()]
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        let items: Vec<Item> = futures::stream::iter(batch)
            .map(|m| self.prepare(m))
            .buffered(self.concurrency.max(1))
            .collect()
            .await;
        // One inference call for every decodable image of the batch, off the reactor.
        let inputs: Vec<Vec<f32>> = items
            .iter()
            .filter_map(|i| match i {
                Item::Ready(r) => Some(r.2.clone()),
                Item::Done(_) => None,
            })
            .collect();
        let model = self.model.clone();
        let results = match run_blocking(move || model.infer(&inputs)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return retry_all(items.len(), &e.to_string()),
            Err(e) => return retry_all(items.len(), &e),
        };
        let mut results = results.into_iter();
        items
            .into_iter()
            .map(|item| match item {
                Item::Done(o) => o,
                Item::Ready(r) => {
                    let (record, upload, _) = *r;
                    match results.next() {
                        Some(out) => self.finish(record, &upload, self.classify(&out)),
                        None => Outcome::Retry("model returned fewer outputs than inputs".into()),
                    }
                }
            })
            .collect()
    }
}

fn retry_all(n: usize, why: &str) -> Vec<Outcome> {
    vec![Outcome::Retry(format!("inference failed: {why}")); n]
}

#[cfg(test)]
mod tests;

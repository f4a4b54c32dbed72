use std::sync::Arc;

use flashfit_models::embed::{compact, l2_normalise};
use flashfit_models::head::LinearHead;
use flashfit_models::taxonomy::{Classification, ImageNetMap};
use flashfit_models::{ImageNetModel, softmax};
use flashfit_schema::GarmentRecord;
use flashfit_schema::record::{CategoryScore, Classification as Record, ModelVector};
use flashfit_schema::taxonomy;
use image::RgbImage;

use crate::clothing::{self, Calibration};
use crate::enrich::{EnrichStage, Enricher, garment_region};
use crate::pose::BodyRegion;
use flashfit_config::NotClothing;
use flashfit_schema::Reason;
use flashfit_schema::record::DetectionSource;

/// How ImageNet outputs become taxonomy categories.
pub enum Scorer {
    /// The shipped ImageNet label map.
    ImageNet(ImageNetMap),
    /// A trained taxonomy head on the embedding (`flashfit train head`). A head with a
    /// `not_clothing` class (the shipped one) gives `is_clothing` itself; otherwise the
    /// ImageNet label map, when the model has ImageNet labels, does.
    Head(Box<LinearHead>, Option<ImageNetMap>),
    /// The model's own labels are taxonomy categories (the seed's EfficientNet-B0 on 47
    /// categories): softmax over them. Such a model cannot say "not clothing": its top
    /// confidence stands in for `is_clothing`.
    Direct,
}

/// The classify stage: EfficientNet-Lite0 on the garment crop, scored onto the taxonomy.
pub type ClassifyStage = EnrichStage<Classifier>;

/// Adds `classification` (category, group, confidence, top-k, is_clothing, flagged).
pub struct Classifier {
    pub model: Arc<ImageNetModel>,
    pub scorer: Scorer,
    pub top_k: usize,
    /// Also write the model's image vector (`classification.image_vector`) for the embed
    /// stage: set when the model is the embed stage's image model.
    pub share_embedding: bool,
    /// How `is_clothing` comes from the evidence ([`clothing::CALIBRATION`]).
    pub calibration: Calibration,
    /// Below `clothing_threshold`: reject or flag (`[classify] not_clothing`).
    pub not_clothing: NotClothing,
    pub clothing_threshold: f32,
    /// The category is said at or above this confidence, the group at or above
    /// `group_threshold`; else `unknown`.
    pub category_threshold: f32,
    pub group_threshold: f32,
}

impl Classifier {
    /// A classifier with `[classify]`'s default top-k, calibration and thresholds.
    pub fn new(model: Arc<ImageNetModel>, scorer: Scorer, share_embedding: bool) -> Self {
        let c = flashfit_config::ClassifyConfig::default();
        Classifier {
            model,
            scorer,
            top_k: c.top_k,
            share_embedding,
            calibration: clothing::CALIBRATION,
            not_clothing: c.not_clothing,
            clothing_threshold: c.clothing_threshold,
            category_threshold: c.category_threshold,
            group_threshold: c.group_threshold,
        }
    }

    /// Keeps photos below the clothing threshold, flagged (`not_clothing = "flag"`).
    pub fn flagging(mut self) -> Self {
        self.not_clothing = NotClothing::Flag;
        self
    }

    /// The classification of one crop; within `region`'s groups when the garment is a body
    /// region (a top region is never jeans). `is_clothing` is the model's, before that.
    fn classify(
        &self,
        out: &flashfit_models::ImageNetOutput,
        region: Option<BodyRegion>,
    ) -> Classification {
        let c = self.classify_any(out);
        match region {
            Some(r) => within(c, r.groups(), self.top_k),
            None => c,
        }
    }

    fn classify_any(&self, out: &flashfit_models::ImageNetOutput) -> Classification {
        match &self.scorer {
            Scorer::ImageNet(map) => map.classify(out, self.top_k),
            Scorer::Head(head, map) => {
                let mut scores = vec![0f32; taxonomy::CATEGORIES.len()];
                let mut not_clothing = None;
                if let Ok(p) = head.predict(&out.embedding) {
                    for (class, prob) in head.classes.iter().zip(p) {
                        if let Some(i) = taxonomy::index(class) {
                            scores[i] += prob;
                        } else if class == taxonomy::NOT_CLOTHING {
                            not_clothing = Some(prob);
                        }
                    }
                }
                // A head that knows `not_clothing` says how much is clothing; else the
                // ImageNet map's clothing mass, else the best category's probability.
                let imagenet = map.as_ref().map(|m| m.classify(out, 1).is_clothing);
                let is_clothing = match (not_clothing, imagenet) {
                    (Some(p), _) => 1.0 - p,
                    (None, Some(m)) => m,
                    (None, None) => scores.iter().copied().fold(0f32, f32::max),
                };
                let mut c = Classification::from_scores(&scores, is_clothing, self.top_k);
                c.imagenet_mass = imagenet;
                c
            }
            Scorer::Direct => {
                let mut scores = vec![0f32; taxonomy::CATEGORIES.len()];
                for (label, p) in self.model.labels().iter().zip(softmax(&out.logits)) {
                    if let Some(i) = taxonomy::index(label) {
                        scores[i] += p;
                    }
                }
                let top = scores.iter().copied().fold(0f32, f32::max);
                Classification::from_scores(&scores, top, self.top_k)
            }
        }
    }
}

/// `c` with every category outside `groups` given no probability, the rest renormalised.
fn within(c: Classification, groups: &[&str], k: usize) -> Classification {
    let scores: Vec<f32> = taxonomy::CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, (g, _))| {
            if groups.contains(g) {
                c.scores.get(i).copied().unwrap_or(0.0)
            } else {
                0.0
            }
        })
        .collect();
    let mut out = Classification::from_scores(&scores, c.is_clothing, k);
    out.imagenet_mass = c.imagenet_mass;
    out
}

impl Enricher for Classifier {
    const STAGE: &'static str = "classify";
    /// The model input and the body region the garment is worn in, if known.
    type Prepared = (Vec<f32>, Option<BodyRegion>);
    /// The classification and, when shared, the image vector.
    type Output = (Classification, Option<Vec<f32>>);

    /// Twice the side the crop is resized to: the resize still halves the pixels, so a photo
    /// decoded smaller gives the model the same view of the garment.
    fn min_region_side(&self) -> u32 {
        2 * self.model.source_side()
    }

    fn prepare(&self, record: &GarmentRecord, img: RgbImage) -> Self::Prepared {
        let region = record
            .detection
            .as_ref()
            .filter(|d| d.source == DetectionSource::Pose)
            .and_then(|d| BodyRegion::of_class(&d.class));
        let input = self
            .model
            .preprocess_region(&img, garment_region(record, &img));
        (input, region)
    }

    fn infer(&self, batch: Vec<Self::Prepared>) -> Result<Vec<Self::Output>, String> {
        let (inputs, regions): (Vec<Vec<f32>>, Vec<Option<BodyRegion>>) = batch.into_iter().unzip();
        let outs = self.model.infer(&inputs).map_err(|e| e.to_string())?;
        Ok(outs
            .into_iter()
            .zip(regions)
            .map(|(o, region)| {
                let c = self.classify(&o, region);
                let shared = (self.share_embedding && !o.embedding.is_empty())
                    .then(|| compact(l2_normalise(o.embedding)));
                (c, shared)
            })
            .collect())
    }

    fn finish(&self, record: &mut GarmentRecord, (c, shared): Self::Output) {
        let evidence =
            clothing::evidence(c.is_clothing, c.imagenet_mass, record.detection.as_ref());
        let is_clothing = self.calibration.is_clothing(&evidence);
        let answer = clothing::answer(
            &c.category,
            c.confidence,
            c.best_group(),
            self.category_threshold,
            self.group_threshold,
        );
        record.classification = Some(Record {
            image_vector: shared.map(|vector| ModelVector {
                model: self.model.name().to_owned(),
                version: self.model.version().to_owned(),
                vector,
            }),
            group: answer.group.map(str::to_owned),
            confidence: c.confidence,
            level: answer.level,
            topk: c
                .topk
                .into_iter()
                .map(|(category, confidence)| CategoryScore {
                    category,
                    confidence,
                })
                .collect(),
            is_clothing,
            flagged: is_clothing < self.clothing_threshold,
            evidence: Some(evidence),
            category: answer.label,
            extra: Default::default(),
        });
    }

    /// Not clothing, when `[classify] not_clothing = "reject"`. Never for an outfit's garment:
    /// the pose model found it on a person, so it is kept, `flagged` when unsure.
    fn rejection(&self, record: &GarmentRecord) -> Option<(Reason, String)> {
        if record.outfit.is_some() {
            return None;
        }
        let c = record.classification.as_ref()?;
        (self.not_clothing == NotClothing::Reject && c.flagged).then(|| {
            (
                Reason::NotClothing,
                format!(
                    "is_clothing {:.3} is below {:.2}: the photo does not look like clothing",
                    c.is_clothing, self.clothing_threshold
                ),
            )
        })
    }

    fn models(&self) -> Vec<(String, String)> {
        let (name, version) = (self.model.name(), self.model.version().to_owned());
        vec![match &self.scorer {
            Scorer::ImageNet(_) => (format!("{name}+imagenet-taxonomy-map"), version),
            Scorer::Head(h, _) => (format!("{name}+{}", h.name), h.version.clone()),
            Scorer::Direct => (name.to_owned(), version),
        }]
    }
}

#[cfg(test)]
mod tests;

//! The embed stage: the garment crop's image vector and its caption's text vector, from one
//! [`Embedder`] (today EfficientNet-Lite0 + all-MiniLM-L6-v2; a CLIP export drops in).

use std::sync::Arc;

use flashfit_models::embed::{Embedder, compact};
use flashfit_schema::GarmentRecord;
use flashfit_schema::record::Embedding;
use image::RgbImage;

use crate::enrich::{EnrichStage, Enricher, garment_crop};

pub type EmbedStage = EnrichStage<Embed>;

pub struct Embed {
    pub embedder: Arc<dyn Embedder>,
}

/// A caption from the record's attributes and category, e.g. "navy solid formal dress shirt,
/// slim fit, classic". Words a query would use; underscores become spaces.
pub fn caption(record: &GarmentRecord) -> String {
    let words = |v: &str| v.replace('_', " ");
    let a = record.attributes.as_ref();
    let mut head: Vec<String> = Vec::new();
    head.extend(a.and_then(|a| a.color_primary.as_deref()).map(words));
    if let Some(p) = a
        .map(|a| words(&a.pattern))
        .filter(|p| p != "solid" && !p.is_empty())
    {
        head.push(p);
    }
    if let Some(f) = a.map(|a| a.formality) {
        if f >= 0.7 {
            head.push("formal".into());
        } else if f <= 0.3 {
            head.push("casual".into());
        }
    }
    head.extend(
        record
            .category()
            .or_else(|| record.detection.as_ref().map(|d| d.class.as_str()))
            .map(words),
    );
    let mut parts = vec![head.join(" ")];
    if let Some(c2) = a.and_then(|a| a.color_secondary.as_deref()) {
        parts.push(format!("with {}", words(c2)));
    }
    if let Some(f) = a
        .map(|a| words(&a.fit))
        .filter(|f| f != "regular" && !f.is_empty())
    {
        parts.push(format!("{f} fit"));
    }
    let tags: Vec<String> = a
        .map(|a| a.style_tags.iter().map(|t| words(t)).collect())
        .unwrap_or_default();
    if !tags.is_empty() {
        parts.push(tags.join(" "));
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        "garment".into()
    } else {
        parts.join(", ")
    }
}

/// One garment waiting for the embedder: its crop, or the image vector the classify stage
/// already made with the same model.
pub struct Pending {
    image: Image,
    caption: String,
}

/// Where a garment's image vector comes from.
enum Image {
    Crop(RgbImage),
    Shared(Vec<f32>),
}

impl Embed {
    /// The record's `classification.image_vector` when the embedder's own image model made it.
    fn shared_vector(&self, record: &GarmentRecord) -> Option<Vec<f32>> {
        let v = record.classification.as_ref()?.image_vector.as_ref()?;
        let (name, version) = self.embedder.image_model();
        (v.model == name && v.version == version && v.vector.len() == self.embedder.image_dim())
            .then(|| v.vector.clone())
    }
}

impl Enricher for Embed {
    const STAGE: &'static str = "embed";
    type Prepared = Pending;
    type Output = (String, Vec<f32>, Vec<f32>);

    fn prepare(&self, record: &GarmentRecord, img: RgbImage) -> Pending {
        Pending {
            image: Image::Crop(garment_crop(record, img)),
            caption: caption(record),
        }
    }

    fn prepare_without_image(&self, record: &GarmentRecord) -> Option<Pending> {
        self.shared_vector(record).map(|v| Pending {
            image: Image::Shared(v),
            caption: caption(record),
        })
    }

    fn infer(&self, batch: Vec<Pending>) -> Result<Vec<Self::Output>, String> {
        let mut crops = Vec::new();
        let mut captions = Vec::with_capacity(batch.len());
        let mut shared = Vec::with_capacity(batch.len());
        for p in batch {
            captions.push(p.caption);
            shared.push(match p.image {
                Image::Crop(c) => {
                    crops.push(c);
                    None
                }
                Image::Shared(v) => Some(v),
            });
        }
        let mut computed = self
            .embedder
            .embed_images(&crops)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(compact);
        let texts = self
            .embedder
            .embed_texts(&captions)
            .map_err(|e| e.to_string())?;
        if texts.len() != captions.len() {
            return Err("embedder returned a different number of vectors".into());
        }
        let mut out = Vec::with_capacity(captions.len());
        for ((caption, shared), text) in captions.into_iter().zip(shared).zip(texts) {
            let image = match shared {
                Some(v) => v,
                None => computed
                    .next()
                    .ok_or("embedder returned fewer image vectors than crops")?,
            };
            out.push((caption, image, compact(text)));
        }
        Ok(out)
    }

    fn finish(&self, record: &mut GarmentRecord, (caption, image, text): Self::Output) {
        record.embedding = Some(Embedding {
            image_vector: image,
            caption,
            text_vector: text,
            extra: Default::default(),
        });
        // The shared vector now lives in `embedding`; the record carries it once.
        if let Some(c) = record.classification.as_mut() {
            c.image_vector = None;
        }
    }

    fn models(&self) -> Vec<(String, String)> {
        vec![(self.embedder.name(), self.embedder.version())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: serde_json::Value) -> GarmentRecord {
        let mut base = serde_json::json!({"event_id": "e", "user_id": "u", "garment_id": "g",
            "image_uri": "s3://b/k.jpg", "uploaded_at": "2026-11-22T00:00:00Z"});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            b.extend(extra.clone());
        }
        serde_json::from_value(base).expect("record")
    }

    fn attrs(v: serde_json::Value) -> serde_json::Value {
        let mut a = serde_json::json!({"color_primary": null, "color_secondary": null,
            "colors": [], "pattern": "solid", "fit": "regular", "formality": 0.5, "seasons": [],
            "style_tags": [], "background_mask": "border"});
        if let (Some(x), Some(extra)) = (a.as_object_mut(), v.as_object()) {
            x.extend(extra.clone());
        }
        a
    }

    fn classification(category: &str) -> serde_json::Value {
        serde_json::json!({"category": category, "group": null, "confidence": 0.9, "topk": [],
            "is_clothing": 0.9, "flagged": false})
    }

    #[test]
    fn captions_use_the_words_a_query_would() {
        let r = record(serde_json::json!({
            "classification": classification("dress_shirt"),
            "attributes": attrs(serde_json::json!({"color_primary": "navy", "color_secondary": "white",
                "pattern": "striped", "fit": "slim", "formality": 0.9, "style_tags": ["formal", "classic"]}))
        }));
        assert_eq!(
            caption(&r),
            "navy striped formal dress shirt, with white, slim fit, formal classic"
        );
        assert_eq!(caption(&record(serde_json::json!({}))), "garment");
        let r = record(
            serde_json::json!({"classification": classification("jeans"),
            "attributes": attrs(serde_json::json!({"color_primary": "blue"}))}),
        );
        assert_eq!(caption(&r), "blue jeans");
    }
}

//! The embed stage: the garment crop's image vector and its caption's text vector, from one
//! [`Embedder`] (today EfficientNet-Lite0 + all-MiniLM-L6-v2; a CLIP export drops in).

use std::sync::Arc;

use flashfit_models::embed::Embedder;
use image::RgbImage;
use serde_json::{Value, json};

use crate::enrich::{EnrichStage, Enricher, garment_crop};

pub type EmbedStage = EnrichStage<Embed>;

pub struct Embed {
    pub embedder: Arc<dyn Embedder>,
}

/// A caption from the record's attributes and category, e.g. "navy solid formal dress shirt,
/// slim fit, classic". Words a query would use; underscores become spaces.
pub fn caption(record: &Value) -> String {
    let a = &record["attributes"];
    let s = |v: &Value| v.as_str().map(|x| x.replace('_', " "));
    let mut head: Vec<String> = Vec::new();
    head.extend(s(&a["color_primary"]));
    if let Some(p) = s(&a["pattern"]).filter(|p| p != "solid") {
        head.push(p);
    }
    if let Some(f) = a["formality"].as_f64() {
        head.push(if f >= 0.7 {
            "formal".into()
        } else if f <= 0.3 {
            "casual".into()
        } else {
            String::new()
        });
    }
    head.extend(
        s(&record["classification"]["category"]).or_else(|| s(&record["detection"]["class"])),
    );
    let mut parts = vec![
        head.into_iter()
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    ];
    if let Some(c2) = s(&a["color_secondary"]) {
        parts.push(format!("with {c2}"));
    }
    if let Some(f) = s(&a["fit"]).filter(|f| f != "regular") {
        parts.push(format!("{f} fit"));
    }
    let tags: Vec<String> = a["style_tags"]
        .as_array()
        .map(|t| t.iter().filter_map(s).collect())
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

/// One garment waiting for the embedder.
pub struct Pending {
    crop: RgbImage,
    caption: String,
}

/// Vectors rounded to 6 decimals keep records compact without moving cosine scores.
fn compact(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| (x * 1e6).round() / 1e6).collect()
}

impl Enricher for Embed {
    const STAGE: &'static str = "embed";
    type Prepared = Pending;
    type Output = (String, Vec<f32>, Vec<f32>);

    fn prepare(&self, record: &Value, img: RgbImage) -> Pending {
        Pending {
            crop: garment_crop(record, img),
            caption: caption(record),
        }
    }

    fn infer(&self, batch: Vec<Pending>) -> Result<Vec<Self::Output>, String> {
        let (crops, captions): (Vec<RgbImage>, Vec<String>) =
            batch.into_iter().map(|p| (p.crop, p.caption)).unzip();
        let images = self
            .embedder
            .embed_images(&crops)
            .map_err(|e| e.to_string())?;
        let texts = self
            .embedder
            .embed_texts(&captions)
            .map_err(|e| e.to_string())?;
        if images.len() != captions.len() || texts.len() != captions.len() {
            return Err("embedder returned a different number of vectors".into());
        }
        Ok(captions
            .into_iter()
            .zip(images)
            .zip(texts)
            .map(|((c, i), t)| (c, i, t))
            .collect())
    }

    fn finish(&self, record: &mut Value, (caption, image, text): Self::Output) {
        record["embedding"] = json!({
            "image_vector": compact(image),
            "caption": caption,
            "text_vector": compact(text),
        });
    }

    fn models(&self) -> Vec<(String, String)> {
        vec![(self.embedder.name(), self.embedder.version())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_use_the_words_a_query_would() {
        let r = json!({
            "classification": {"category": "dress_shirt"},
            "attributes": {"color_primary": "navy", "color_secondary": "white", "pattern": "striped",
                           "fit": "slim", "formality": 0.9, "style_tags": ["formal", "classic"]}
        });
        assert_eq!(
            caption(&r),
            "navy striped formal dress shirt, with white, slim fit, formal classic"
        );
        assert_eq!(caption(&json!({})), "garment");
        let r = json!({"classification": {"category": "jeans"}, "attributes": {"color_primary": "blue", "pattern": "solid", "fit": "regular", "formality": 0.5}});
        assert_eq!(caption(&r), "blue jeans");
    }
}

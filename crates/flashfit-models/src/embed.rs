//! The embedding model behind one trait, so a CLIP-style export (one space for images and
//! text) drops in where today two models share the job.

use std::sync::Arc;

use image::RgbImage;

use crate::text::MiniLm;
use crate::{ImageNetModel, Result, preprocess_imagenet};

/// Image and text vectors for search. Both are L2-normalised.
pub trait Embedder: Send + Sync + 'static {
    /// Model name and version recorded on the garment (`models` entry).
    fn name(&self) -> String;
    fn version(&self) -> String;
    fn image_dim(&self) -> usize;
    fn text_dim(&self) -> usize;
    /// The image model (manifest name, version) whose vectors `embed_images` returns: an
    /// image vector another stage made with this model stands in for running it again.
    fn image_model(&self) -> (String, String);
    /// Blocking: call it off the async reactor.
    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>>;
    /// Blocking: call it off the async reactor.
    fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}

/// Scales `v` to unit length (left as is when it is all zeros).
pub fn l2_normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Vectors rounded to 6 decimals keep records compact without moving cosine scores.
pub fn compact(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| (x * 1e6).round() / 1e6).collect()
}

/// Today's default: EfficientNet-Lite0's pooled 1280-d features for images, all-MiniLM-L6-v2
/// (384-d) for captions and queries. The two spaces are separate: image search compares image
/// vectors, text search compares text vectors.
pub struct LiteMiniLm {
    image: Arc<ImageNetModel>,
    text: MiniLm,
    image_dim: usize,
}

impl LiteMiniLm {
    /// The embedder of the manifest's `[embedder]`, its vector sizes checked against the
    /// models' outputs (an error names both).
    pub fn new(
        image: Arc<ImageNetModel>,
        text: MiniLm,
        spec: &crate::manifest::EmbedderSpec,
    ) -> Result<Self> {
        let mismatch = |what: &str, made: usize, want: usize| {
            crate::Error::BadInput(format!(
                "the {what} model makes vectors of {made} values; the manifest's [embedder] \
                 says {want}"
            ))
        };
        if image.name() != spec.image_model || !image.has_embedding() {
            return Err(crate::Error::BadInput(format!(
                "the embed stage's image model is {} (with an embedding output); the \
                 manifest's [embedder] names {}",
                image.name(),
                spec.image_model
            )));
        }
        if spec.text_model != MiniLm::NAME {
            return Err(crate::Error::BadInput(format!(
                "the manifest's [embedder] names text model {}; this build embeds text with {}",
                spec.text_model,
                MiniLm::NAME
            )));
        }
        // One probe through the image model: its embedding's size.
        let probe = image.infer(&[preprocess_imagenet(&RgbImage::new(8, 8))])?;
        let made = probe.first().map_or(0, |o| o.embedding.len());
        if made != spec.image_dim {
            return Err(mismatch(&spec.image_model, made, spec.image_dim));
        }
        if MiniLm::DIM != spec.text_dim {
            return Err(mismatch(MiniLm::NAME, MiniLm::DIM, spec.text_dim));
        }
        Ok(LiteMiniLm {
            image,
            text,
            image_dim: made,
        })
    }
}

impl Embedder for LiteMiniLm {
    fn name(&self) -> String {
        format!("{}+{}", self.image.name(), MiniLm::NAME)
    }

    fn version(&self) -> String {
        format!("{}+{}", self.image.version(), MiniLm::VERSION)
    }

    fn image_dim(&self) -> usize {
        self.image_dim
    }

    fn text_dim(&self) -> usize {
        MiniLm::DIM
    }

    fn image_model(&self) -> (String, String) {
        (
            self.image.name().to_owned(),
            self.image.version().to_owned(),
        )
    }

    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let batch: Vec<Vec<f32>> = images.iter().map(|i| self.image.preprocess(i)).collect();
        Ok(self
            .image
            .infer(&batch)?
            .into_iter()
            .map(|o| l2_normalise(o.embedding))
            .collect())
    }

    fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.text.embed(texts)
    }
}

//! The model manifest: `models/manifest.toml`, compiled into the binary (so it always matches
//! the code), plus local entries from `$FLASHFIT_MODELS_DIR/manifest.local.toml` (same format;
//! an entry with the name of a shipped one replaces it). A detector's `[model.detector]` or a
//! classifier's `[model.classifier]` table says how to run it, so a new model drops in as a
//! local entry, its labels file and its ONNX file, without code changes.

use serde::Deserialize;

use crate::{Error, ModelDir, Result};

/// The manifest shipped with this build.
pub const BUILTIN: &str = include_str!("../../../models/manifest.toml");

/// Local additions in the model directory.
pub const LOCAL: &str = "manifest.local.toml";

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub model: Vec<ModelEntry>,
    /// The embed stage's models and vector sizes.
    pub embedder: Option<EmbedderSpec>,
}

/// `[embedder]`: which models make the embed stage's vectors, and their sizes (what LanceDB
/// tables are created with).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EmbedderSpec {
    /// An image model with an `embedding` output.
    pub image_model: String,
    pub image_dim: usize,
    pub text_model: String,
    pub text_dim: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub version: String,
    /// Labels file under `labels/` (without `.txt`).
    pub labels: Option<String>,
    pub detector: Option<DetectorSpec>,
    pub classifier: Option<ClassifierSpec>,
    pub tagger: Option<TaggerSpec>,
    pub compatibility: Option<CompatibilitySpec>,
}

/// A learned outfit compatibility model (seed: transformer over item embeddings): input
/// `items` `[batch, n, dim]` (the garments' image vectors) and `mask` `[batch, n]` (1 for a
/// garment, 0 for padding), output `score` `[batch]` (higher: goes better together).
#[derive(Debug, Clone, Deserialize)]
pub struct CompatibilitySpec {
    pub items: String,
    pub mask: String,
    pub score: String,
    pub dim: usize,
}

/// How pixels become an image model's input: `[b, 3, side, side]` float RGB,
/// `(x - mean) / std` per channel on 0..255.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageInput {
    pub input_name: String,
    /// Square input side (224 for the EfficientNets).
    pub side: u32,
    /// Resize the short side to this (bilinear), then centre-crop `side`; absent: stretch.
    pub resize_short_side: Option<u32>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ImageInput {
    /// The input tensor data for one image.
    pub fn prepare(&self, img: &image::RgbImage) -> Vec<f32> {
        self.prepare_region(img, crate::whole(img))
    }

    /// The input tensor data for the `region` of an image (a garment's box), without copying
    /// the region out first.
    pub fn prepare_region(&self, img: &image::RgbImage, region: crate::Region) -> Vec<f32> {
        crate::to_chw(
            &crate::fit_square_region(img, region, self.resize_short_side, self.side),
            self.mean,
            self.std,
        )
    }

    pub fn len(&self) -> usize {
        3 * (self.side * self.side) as usize
    }

    /// The side the model resizes an image's short side to (`side` when it stretches).
    pub fn source_side(&self) -> u32 {
        self.resize_short_side.unwrap_or(self.side)
    }

    pub fn is_empty(&self) -> bool {
        self.side == 0
    }
}

/// An attribute tagger (the seed's multi-head model on garment crops): which outputs carry
/// which attribute. `pattern` and `fit` are logits over their labels (argmax); `formality` is
/// a probability 0..1; `seasons` and `style` are per-label probabilities (kept ≥ `threshold`).
/// Absent outputs leave that attribute to the rule tables. Labels default to the seed's order.
#[derive(Debug, Clone, Deserialize)]
pub struct TaggerSpec {
    #[serde(flatten)]
    pub input: ImageInput,
    pub pattern: Option<String>,
    pub fit: Option<String>,
    pub formality: Option<String>,
    pub seasons: Option<String>,
    pub style: Option<String>,
    #[serde(default = "seed_patterns")]
    pub pattern_labels: Vec<String>,
    #[serde(default = "seed_fits")]
    pub fit_labels: Vec<String>,
    #[serde(default = "seed_seasons")]
    pub season_labels: Vec<String>,
    #[serde(default = "seed_styles")]
    pub style_labels: Vec<String>,
    #[serde(default = "half")]
    pub threshold: f32,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}
fn seed_patterns() -> Vec<String> {
    strings(&[
        "solid",
        "striped",
        "plaid",
        "checkered",
        "floral",
        "graphic",
        "polka_dot",
        "abstract",
    ])
}
fn seed_fits() -> Vec<String> {
    strings(&["slim", "regular", "relaxed", "oversized"])
}
fn seed_seasons() -> Vec<String> {
    strings(&["spring", "summer", "fall", "winter"])
}
fn seed_styles() -> Vec<String> {
    strings(&[
        "casual",
        "formal",
        "preppy",
        "streetwear",
        "minimalist",
        "bohemian",
        "athletic",
        "classic",
        "trendy",
        "vintage",
    ])
}
fn half() -> f32 {
    0.5
}

/// An image classifier / embedder: its input and outputs.
#[derive(Debug, Clone, Deserialize)]
pub struct ClassifierSpec {
    #[serde(flatten)]
    pub input: ImageInput,
    /// Output with one score per label.
    pub logits: String,
    /// Output with a pooled feature vector (image embedding, trained heads), if any.
    pub embedding: Option<String>,
}

/// Which output format a detector produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// YOLOv8 export: `[1, 4 + classes, anchors]`, letterboxed square input.
    Yolov8,
    /// TF Object Detection SSD raw outputs: box encodings + class logits per standard anchor.
    SsdRaw,
    /// TF Object Detection SSD with NMS in the graph: boxes, scores, classes, count.
    SsdNms,
    /// CenterNet export with top-k in the graph: `[1, 100, 6]` = x1, y1, x2, y2, score, class.
    Centernet,
    /// CenterNet's raw heads (`scores`: `[1, classes, h, w]` after the sigmoid; `boxes`:
    /// `[1, 4, h, w]` distances to the box sides in input px): peaks and top-k in Rust, the
    /// same rows as the export's own graph ([`Decoder::Centernet`]) without its passes over
    /// every score (`models/optimise_onnx.py --centernet-heads`).
    CenternetHeads,
    /// MoveNet multipose: `boxes` is `[1, 6, 56]`, six people × 17 `(y, x, score)` keypoints
    /// then `ymin, xmin, ymax, xmax, score`, normalised to the letterboxed square input. The
    /// detector reports each person's worn-garment regions (labels: the regions, in
    /// `flashfit_vision::pose::BodyRegion` order).
    Movenet,
}

/// How pixels become the model's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `[1, h, w, 3]` float, `x * scale + offset`.
    NhwcF32,
    /// `[1, h, w, 3]` uint8 at the image's own size (the graph resizes).
    NhwcU8,
    /// `[1, 3, h, w]` float, `x * scale + offset`.
    NchwF32,
    /// `[1, h, w, 3]` int32 pixel values 0..255, the photo letterboxed onto the square `size`.
    NhwcI32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DetectorSpec {
    pub decoder: Decoder,
    /// The graph file the detector runs, in the model's version directory (default
    /// `model.onnx`, the verified conversion; a serving graph `models/fetch.sh` derives from it
    /// and checks against it).
    pub graph: Option<String>,
    pub input_name: String,
    /// Model input `[width, height]`; absent for graphs that take any size.
    pub size: Option<[u32; 2]>,
    /// For graphs that take any size (`nhwc_u8`) and resize inside: photos larger than this
    /// long side are scaled down first (the graph would throw the pixels away anyway).
    pub max_input_side: Option<u32>,
    pub layout: Layout,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub offset: f32,
    /// Output names (which ones a decoder needs depends on the decoder).
    pub boxes: String,
    pub scores: Option<String>,
    pub classes: Option<String>,
    pub count: Option<String>,
    /// Added to a model's class id to index the labels file.
    #[serde(default)]
    pub class_offset: i64,
    /// Labels that are garments (candidates for the primary detection).
    #[serde(default)]
    pub garments: Vec<String>,
    /// Labels that are people (a worn garment: the person box when no garment is found).
    #[serde(default)]
    pub people: Vec<String>,
    /// This detector's own minimum confidence, instead of `[detect] confidence` (a pose
    /// model's person scores are not a box detector's).
    pub confidence: Option<f32>,
    /// Minimum keypoint score a pose decoder uses.
    pub keypoint_confidence: Option<f32>,
}

fn one() -> f32 {
    1.0
}

impl ModelEntry {
    /// The entry's labels (one per line of `<dir>/labels/<labels>.txt`, index = class).
    pub fn load_labels(&self, dir: &ModelDir) -> Result<Vec<String>> {
        let name = self.labels.as_deref().ok_or_else(|| {
            Error::BadInput(format!(
                "model {} names no labels file in the manifest",
                self.name
            ))
        })?;
        let path = dir.file(&format!("labels/{name}.txt"))?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::ModelMissing {
            path: format!("{}: {e}", path.display()),
        })?;
        Ok(text.lines().map(str::to_owned).collect())
    }
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::BadInput(format!("model manifest: {e}")))
    }

    /// The built-in manifest with `dir/manifest.local.toml`'s entries on top.
    pub fn load(dir: &ModelDir) -> Result<Self> {
        let mut m = Self::parse(BUILTIN)?;
        let path = dir.path().join(LOCAL);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let local = Self::parse(&text)
                .map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))?;
            for entry in local.model {
                m.model.retain(|e| e.name != entry.name);
                m.model.push(entry);
            }
            if local.embedder.is_some() {
                m.embedder = local.embedder;
            }
        }
        Ok(m)
    }

    /// The `[embedder]` table.
    pub fn embedder(&self) -> Result<&EmbedderSpec> {
        self.embedder
            .as_ref()
            .ok_or_else(|| Error::BadInput("the model manifest has no [embedder] table".into()))
    }

    pub fn get(&self, name: &str) -> Result<&ModelEntry> {
        self.model
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::ModelMissing {
                path: format!("no model named {name:?} in the manifest"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_manifest_parses_and_names_every_detector_decoder() {
        let m = Manifest::parse(BUILTIN).expect("parse");
        let decoders: Vec<Decoder> = m
            .model
            .iter()
            .filter_map(|e| e.detector.as_ref().map(|d| d.decoder))
            .collect();
        assert!(decoders.contains(&Decoder::SsdRaw));
        assert!(decoders.contains(&Decoder::SsdNms));
        assert!(decoders.contains(&Decoder::CenternetHeads));
        assert!(m.get("efficientnet-lite0").is_ok());
        assert!(m.get("nope").is_err());
    }
}

//! The garment record: what the enrichment stages pass along `flashfit.quality` →
//! `flashfit.detected` → `flashfit.classified` → `flashfit.tagged` → `flashfit.embedded`, and
//! what the sinks read. One type: the upload's fields, then one object per stage, each stage
//! filling its own. Fields this version does not know (a newer producer's) are kept and
//! written on unchanged, at the top level and inside each stage's object.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{InvalidEvent, QualityReport, UploadEvent};

/// Fields a newer producer added that this version does not know: kept as they are.
pub type Extra = Map<String, Value>;

/// An upload on its way through the enrichment stages (topics `flashfit.quality` …
/// `flashfit.embedded`, keyed by garment_id): every field of the upload event, then one object
/// per stage that has run. Unknown fields are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GarmentRecord {
    #[serde(flatten)]
    pub upload: UploadEvent,
    /// When the upload was done (RFC 3339, UTC, milliseconds), stamped by the pipeline's last
    /// stage only: the sinks' processed_at and dt partition, so re-sinking a record writes the
    /// same row.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::rfc3339_opt"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub processed_at: Option<DateTime<Utc>>,
    /// Added by the quality stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityReport>,
    /// Added by the detect stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// Added by the classify stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Added by the attributes stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Attributes>,
    /// Added by the embed stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Embedding>,
    /// Set by the detect stage on each garment an outfit upload (`kind` = `outfit`) became:
    /// which upload it came from and its siblings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outfit: Option<OutfitItem>,
    /// Every model whose output the record carries, in the order the stages ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelRef>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl GarmentRecord {
    /// A record holding only the upload (the quality stage adds its object next).
    pub fn new(upload: UploadEvent) -> Self {
        GarmentRecord {
            upload,
            processed_at: None,
            quality: None,
            detection: None,
            classification: None,
            attributes: None,
            embedding: None,
            outfit: None,
            models: Vec::new(),
            extra: Extra::new(),
        }
    }

    /// Parses a record from its JSON bytes and validates the upload's fields.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        let r: GarmentRecord = serde_json::from_slice(bytes)
            .map_err(|e| InvalidEvent(format!("invalid garment record: {e}")))?;
        r.upload.validate()?;
        Ok(r)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The garment's box `[x1, y1, x2, y2]` in the photo's pixels, once detect has run.
    pub fn bbox(&self) -> Option<[f32; 4]> {
        self.detection.as_ref().map(|d| d.bbox)
    }

    /// The taxonomy category, once classify has run.
    pub fn category(&self) -> Option<&str> {
        self.classification.as_ref().map(|c| c.category.as_str())
    }

    /// The `models` entries as one string, `stage:name@version` joined by commas.
    pub fn model_versions(&self) -> String {
        self.models
            .iter()
            .map(|m| format!("{}:{}@{}", m.stage, m.name, m.version))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One garment of an outfit upload. Its record's `event_id` is `<upload event_id>/<item>` and
/// its `garment_id` `<upload garment_id>/<item>`, where `<item>` is the region and its ordinal
/// (`top-1`, `bottom-1`, `footwear-1`, `tie-1`, …; people left to right): the same photo and
/// models give the same ids, so a replay or a redelivery adds no item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutfitItem {
    /// The upload's own event_id and garment_id.
    pub event_id: String,
    pub garment_id: String,
    /// `top-1`, `bottom-1`, …
    pub item: String,
    /// Every garment id the upload became, this one included.
    pub garment_ids: Vec<String>,
}

/// One model that contributed to the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelRef {
    /// The stage that ran it (detect, classify, attributes, embed).
    pub stage: String,
    pub name: String,
    pub version: String,
}

/// Where the garment box came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetectionSource {
    /// A garment class of a detector.
    Detector,
    /// No garment class, but a person: the garment is worn.
    Person,
    /// Nothing detected: the region that differs from the border colour (flat-lay, hanger).
    Foreground,
    /// Nothing detected and no foreground: the whole photo.
    FullImage,
    /// A body region from pose keypoints (`class`: top, bottom or footwear): the garment is
    /// worn there.
    Pose,
}

impl DetectionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectionSource::Detector => "detector",
            DetectionSource::Person => "person",
            DetectionSource::Foreground => "foreground",
            DetectionSource::FullImage => "full_image",
            DetectionSource::Pose => "pose",
        }
    }
}

/// What a detected class means for a wardrobe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Garment,
    Person,
    Other,
    /// A body region a pose model found (top, bottom, footwear): where a garment is worn.
    Region,
}

/// The detect stage's object: the garment's box and every confident detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Detection {
    /// The primary detection's class, or the source's name for a fallback box.
    pub class: String,
    /// The primary detection's confidence; null for a fallback box.
    pub confidence: Option<f32>,
    /// The garment box [x1, y1, x2, y2] in the photo's pixels (after EXIF orientation).
    pub bbox: [f32; 4],
    pub source: DetectionSource,
    /// The detector that found the primary detection; null for a fallback box.
    pub model: Option<String>,
    /// Every detection at or above the confidence threshold, of every detector.
    pub all: Vec<DetectedObject>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One detection of one detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DetectedObject {
    pub class: String,
    pub confidence: f32,
    /// [x1, y1, x2, y2] in the photo's pixels.
    pub bbox: [f32; 4],
    pub model: String,
    pub role: Role,
}

/// How specific a classification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// `category` is one of the 47 taxonomy categories, confident enough to be said.
    #[default]
    Category,
    /// Unsure of the category, sure of the group: `category` is the group's name (`tops`, …).
    Group,
    /// Unsure even of the group: `category` is `unknown`, `group` null.
    Unknown,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Category => "category",
            Level::Group => "group",
            Level::Unknown => "unknown",
        }
    }
}

/// The classify stage's object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Classification {
    /// What the garment is, as specifically as the classifier is sure: one of the 47 taxonomy
    /// categories (`level` = `category`), a group name when only the group is sure (`level` =
    /// `group`), or `unknown`. The model's best category is `topk[0]` either way.
    pub category: String,
    /// The group (tops, bottoms, outerwear, dresses, footwear, accessories); null when unknown.
    pub group: Option<String>,
    /// Probability of the model's best category among clothing categories (kept when the
    /// answer falls back to the group or to unknown).
    pub confidence: f32,
    /// How specific `category` is; records written before it existed are `category`.
    #[serde(default)]
    pub level: Level,
    /// The best categories with their probabilities.
    pub topk: Vec<CategoryScore>,
    /// Probability that the photo shows clothing at all, calibrated on the labelled set
    /// (`flashfit eval`); below `[classify] clothing_threshold` the upload is rejected
    /// `not_clothing` (or flagged, with `[classify] not_clothing = "flag"`).
    pub is_clothing: f32,
    /// Below the clothing threshold and kept (`not_clothing = "flag"`): worth a look.
    pub flagged: bool,
    /// What `is_clothing` was calibrated from; absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<ClothingEvidence>,
    /// The classifier's pooled image features (L2-normalised), present when its model is the
    /// embed stage's image model (`[classify] share_embedding`): the embed stage takes them
    /// as the garment's `embedding.image_vector` instead of running the same model on the same
    /// crop again, and removes them from the record it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_vector: Option<ModelVector>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The signals `is_clothing` is calibrated from (each 0..1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClothingEvidence {
    /// The classifier's clothing probability on the garment's crop (the shipped head: one
    /// minus its `not_clothing` probability).
    pub mass: f32,
    /// The ImageNet label map's clothing mass on the same crop (0 for a classifier without
    /// ImageNet classes).
    #[serde(default)]
    pub imagenet: f32,
    /// The most confident person detection (0: none).
    pub person: f32,
    /// The most confident garment detection (footwear, tie, handbag, …; 0: none).
    pub garment: f32,
    /// The most confident detection of anything else (an animal, a vehicle, a cup; 0: none).
    pub other: f32,
}

/// A vector and the model that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelVector {
    /// Manifest name of the model.
    pub model: String,
    pub version: String,
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CategoryScore {
    pub category: String,
    pub confidence: f32,
}

/// The attributes stage's object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attributes {
    /// The largest colour's name (one of 14); null when no colour was measured.
    pub color_primary: Option<String>,
    pub color_secondary: Option<String>,
    /// Dominant colours, largest share first.
    pub colors: Vec<ColorShare>,
    pub pattern: String,
    pub fit: String,
    /// 0 (casual) … 1 (formal), two decimals.
    pub formality: f32,
    pub seasons: Vec<String>,
    pub style_tags: Vec<String>,
    /// Which pixels were the garment: person (segmentation model) or border (flat-lay).
    pub background_mask: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ColorShare {
    pub name: String,
    pub rgb: [u8; 3],
    /// Share of the garment's pixels, 0..1, three decimals.
    pub share: f32,
}

/// The embed stage's object. Vector sizes are the embedder's (the model manifest's
/// `[embedder]`), 1280 and 384 with the shipped models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Embedding {
    /// The garment crop's image vector (L2-normalised, six decimals).
    pub image_vector: Vec<f32>,
    /// The words the text vector was made from.
    pub caption: String,
    /// The caption's text vector (L2-normalised, six decimals).
    pub text_vector: Vec<f32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Complete records for other crates' tests: every stage's object filled, vectors of the
/// given sizes; tests change the fields they are about.
pub mod testing {
    use serde_json::{Value, json};

    /// A record as the pipeline's last topic carries it (processed at `processed_at`).
    pub fn embedded(
        event_id: &str,
        garment_id: &str,
        user_id: &str,
        processed_at: &str,
        dims: (usize, usize),
    ) -> Value {
        json!({
            "event_id": event_id, "user_id": user_id, "garment_id": garment_id,
            "image_uri": format!("s3://flashfit/uploads/{event_id}.jpg"),
            "uploaded_at": "2026-11-22T10:00:00Z",
            "quality": {"width": 800, "height": 600, "blur_score": 350.5, "brightness": 120.25,
                "warnings": []},
            "detection": {"class": "Footwear", "confidence": 0.71, "bbox": [10.0, 20.0, 300.0, 400.0],
                "source": "detector", "model": "ssd-mobilenetv2-oidv4",
                "all": [{"class": "Footwear", "confidence": 0.71, "bbox": [10.0, 20.0, 300.0, 400.0],
                    "model": "ssd-mobilenetv2-oidv4", "role": "garment"}]},
            "classification": {"category": "boots", "group": "footwear", "confidence": 0.8,
                "topk": [{"category": "boots", "confidence": 0.8}], "is_clothing": 0.9,
                "flagged": false},
            "attributes": {"color_primary": "navy", "color_secondary": null,
                "colors": [{"name": "navy", "rgb": [20, 30, 80], "share": 1.0}],
                "pattern": "solid", "fit": "regular", "formality": 0.5, "seasons": [],
                "style_tags": ["classic"], "background_mask": "border"},
            "embedding": {"image_vector": vec![0.0f32; dims.0], "caption": "navy boots, classic",
                "text_vector": vec![0.0f32; dims.1]},
            "models": [{"stage": "embed", "name": "m", "version": "1"}],
            "processed_at": processed_at,
        })
    }
}

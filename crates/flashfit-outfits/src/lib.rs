//! Outfit recommendations, pure logic (seed: "Recommendation pipeline", "Compatibility
//! Scoring", "Personalization", Phase 2 "A/B Testing Framework"): filter a user's wardrobe by
//! occasion and season, generate candidate outfits (top + bottom + footwear, or dress +
//! footwear, each optionally with outerwear) by beam search, score compatibility
//! ([`Scorer`]: the seed's rules by default, or a learned model behind the same trait),
//! apply the user's learned preferences ([`Preferences`]), rank, return the top K with each
//! score's breakdown. [`experiments`] assigns users to A/B variants. No I/O: the wardrobe,
//! the preferences and the scorer are handed in.

pub mod experiments;
mod generate;
mod prefs;
mod rules;

pub use generate::{Request, recommend, recommend_reranked};
pub use prefs::{FEEDBACK_STEP, Preferences, signal_weight};
pub use rules::RuleScorer;

use serde::Serialize;

/// One garment of a wardrobe, with what scoring needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Item {
    pub garment_id: String,
    pub category: String,
    pub color_primary: Option<String>,
    /// 0 (casual) … 1 (formal).
    pub formality: Option<f32>,
    /// Empty: any season.
    pub seasons: Vec<String>,
    pub style_tags: Vec<String>,
    /// The image vector, for learned scorers.
    pub embedding: Option<Vec<f32>>,
    /// The models that made this garment's data (`stage:name@version`), when known.
    pub model_versions: Vec<String>,
}

/// The parts of an outfit's score.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Breakdown {
    pub color_harmony: f64,
    pub formality_match: f64,
    pub category_combo: f64,
    /// What the scorer made of them (rules: the weighted sum; learned: the model's output).
    pub compatibility: f64,
    /// The user's preference adjustment (0 below the feedback threshold), clamped.
    pub personalization: f64,
}

/// One recommended outfit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outfit {
    pub garment_ids: Vec<String>,
    /// compatibility + personalization.
    pub score: f64,
    pub breakdown: Breakdown,
    /// The outfit's garments the classifier was unsure of: only their group is known
    /// (`category` is `footwear`, …), which is all an outfit needs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsure: Vec<String>,
}

/// Scores how well garments go together. Implementations must be deterministic.
///
/// Candidate generation scores tens of thousands of garment combinations per request, so a
/// scorer first prepares the wardrobe once ([`Scorer::prepare`]: intern names, look up
/// tables) and then scores combinations by index.
pub trait Scorer: Send + Sync {
    /// Name reported in logs and responses.
    fn name(&self) -> &str;
    /// A scorer for combinations of `items`.
    fn prepare<'a>(&'a self, items: &'a [Item]) -> Box<dyn Prepared + 'a>;
}

/// A [`Scorer`] ready for one wardrobe.
pub trait Prepared {
    /// The breakdown of the garments at `idx` (one or more) in the prepared wardrobe,
    /// `personalization` left at 0.
    fn score(&self, idx: &[usize]) -> Breakdown;
}

/// A learned compatibility model (seed: transformer over item embeddings) that re-orders the
/// final candidates in one batch.
pub trait Reranker: Send + Sync {
    fn name(&self) -> &str;
    /// The compatibility of each candidate (indices into `items`), one score per candidate.
    fn rerank(&self, items: &[Item], candidates: &[Vec<usize>]) -> Result<Vec<f64>, String>;
}

/// The wardrobe group of a classification label (the taxonomy's six groups): a category's
/// group, or the group itself for an item the classifier was unsure of (`footwear`); `None`
/// for `unknown` and anything else (such an item is left out of outfits).
pub fn group(category: &str) -> Option<&'static str> {
    flashfit_schema::taxonomy::group_of(category)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The request cannot be served as asked (a 400 for HTTP callers).
    #[error("{0}")]
    BadRequest(String),
    /// The learned model failed (a 503 for HTTP callers).
    #[error("compatibility model: {0}")]
    Model(String),
}

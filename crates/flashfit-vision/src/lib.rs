//! The model stages (issue 3), each an [`Enricher`] run by the shared [`EnrichStage`]:
//! detect ([`detect_stage`]: every manifest detector, primary garment, foreground fallback),
//! classify ([`Classifier`]: EfficientNet-Lite0 onto the 47-category taxonomy), attributes
//! ([`attributes`]: colours, pattern, fit, formality, seasons, style tags) and embed ([`embed`]:
//! image and caption vectors).

pub mod attributes;
mod classify;
pub mod clothing;
pub mod colour;
pub mod detect;
pub mod detect_stage;
pub mod detector;
pub mod embed;
pub mod enrich;
pub mod pose;

pub use classify::{Classifier, ClassifyStage, Scorer};
pub use enrich::{EnrichStage, Enricher, StageIo};

//! The quality stage (seed: "Image Quality Check"): fetch the photo, decode it safely, and
//! measure size, sharpness and exposure before any model sees it.
//!
//! Main items: [`analyze`] (pure: bytes → [`Analysis`], OpenCV-compatible blur score and
//! brightness), [`QualityStage`] (the [`flashfit_runtime::Stage`]).

mod analysis;
pub mod intake;
mod stage;
pub mod testkit;

pub use analysis::{Analysis, AnalyzeError, Limits, analyze, gray_stats};
pub use intake::MAX_EVENT_BYTES;
pub use stage::QualityStage;

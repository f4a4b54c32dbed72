//! The model stages (issue 3). Today: [`ClassifyStage`] — EfficientNet-Lite0 on the garment
//! (the detection's box when the record has one, else the whole photo), scored onto the
//! 47-category taxonomy by the ImageNet label map or a trained head. Detection, attributes and
//! embedding stages are not built yet.

mod classify;
pub mod colour;
pub mod detect;
pub mod detector;

pub use classify::{ClassifyStage, Scorer};

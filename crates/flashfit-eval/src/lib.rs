//! `flashfit eval --set DIR`: the pipeline's real stages, in-process (no broker: the runtime's
//! harness, the same `Processor` the workers run), on a labelled set (`eval/labels.toml`, built
//! by `eval/build_set.py`), and what they said scored against the labels ([`score`]).

pub mod labels;
pub mod run;
pub mod score;

pub use run::{Predicted, Prediction, evaluate};
pub use score::Report;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The set's labels are missing or wrong: the caller's to fix.
    #[error("labels: {0}")]
    Labels(String),
    /// The stages could not be built (models, configuration).
    #[error(transparent)]
    Pipeline(#[from] flashfit_pipeline::Error),
    #[error("eval: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

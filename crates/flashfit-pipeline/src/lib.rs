//! Assembles FlashFit workers from the library crates: the pipeline definition
//! (`pipelines/*.toml`), the stage registry, running stages under one cancellation tree with
//! the admin server, the embedded broker, publishing upload events (`flashfit ingest`),
//! watching statuses, wardrobe search and the feedback worker's garment lookup. Above it:
//! `flashfit-serve` (HTTP API, recommender), `flashfit-local` (`flashfit run`),
//! `flashfit-bench`, `flashfit-train`, and the `flashfit` binary.
//!
//! Main items: [`Pipeline`], [`build_stage`], [`build_worker`], [`run_stages`],
//! [`EmbeddedBroker`], [`ingest::ingest_files`], [`watch::StatusWatcher`],
//! [`search::Searcher`], [`vector_dims`].

pub mod acls;
pub mod dlq;
mod embedded;
pub mod ingest;
pub mod lag;
pub mod lookup;
pub mod offsets;
mod pipeline;
pub mod progress;
pub mod replay;
pub mod reprocess;
pub mod search;
mod supervise;
pub mod vision;
pub mod watch;

pub use embedded::EmbeddedBroker;
pub use pipeline::{
    Pipeline, SearchQuery, StageName, Worker, ab_report, build_stage, build_worker, build_workers,
    compact, consumer_groups, deletes_table, dlq_topics, experiment_windows, fold_markers,
    garments_table, kpi_daily, kpi_table, lance_upkeep, search, worker_config,
};
pub use supervise::{run_stages, run_workers, shutdown_on_signals};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The models directory the configuration names (`models_dir`, from `FLASHFIT_MODELS_DIR`).
pub fn model_dir(config: &flashfit_config::Config) -> flashfit_models::ModelDir {
    flashfit_models::ModelDir::configured(config.models_dir.as_deref())
}

/// The vector sizes of the LanceDB garments table: the model manifest's `[embedder]` (the
/// built-in manifest, or a local one in the models directory).
pub fn vector_dims(config: &flashfit_config::Config) -> Result<flashfit_lance::rows::VectorDims> {
    let manifest = flashfit_models::manifest::Manifest::load(&model_dir(config))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let e = manifest
        .embedder()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(flashfit_lance::rows::VectorDims {
        image: e.image_dim,
        text: e.text_dim,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] flashfit_runtime::Error),
    #[error(transparent)]
    Storage(#[from] flashfit_storage::Error),
    #[error(transparent)]
    Config(#[from] flashfit_config::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Invalid(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

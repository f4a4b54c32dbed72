//! Building the model stages from configuration.

use std::sync::Arc;

use flashfit_config::Config;
use flashfit_models::head::LinearHead;
use flashfit_models::taxonomy::{DEFAULT_IMAGENET_MAP, ImageNetMap};
use flashfit_models::{ImageNetModel, ModelDir};
use flashfit_schema::Topics;
use flashfit_storage::Location;
use flashfit_vision::{ClassifyStage, Scorer};

use crate::{Error, Pipeline, Result};

fn models_err(e: flashfit_models::Error) -> Error {
    Error::Invalid(e.to_string())
}

pub(crate) fn classify_stage(
    config: &Config,
    pipeline: &Pipeline,
    topics: &Topics,
    uploads_uri: &str,
) -> Result<ClassifyStage> {
    let dir = ModelDir::from_env();
    let model = ImageNetModel::load(&dir, config.classify.threads).map_err(models_err)?;
    let map = ImageNetMap::parse(DEFAULT_IMAGENET_MAP, model.labels()).map_err(models_err)?;
    let scorer = match &config.classify.head {
        Some(path) => {
            let head = LinearHead::load(std::path::Path::new(path)).map_err(models_err)?;
            let want = format!("{}/{}", ImageNetModel::NAME, ImageNetModel::VERSION);
            if head.backbone != want {
                return Err(Error::Invalid(format!(
                    "head {path} was trained on {}, not {want}",
                    head.backbone
                )));
            }
            Scorer::Head(Box::new(head), map)
        }
        None => Scorer::ImageNet(map),
    };
    let input = pipeline
        .input_of("classify", topics)
        .ok_or_else(|| Error::Invalid("classify is not in the pipeline".into()))?;
    Ok(ClassifyStage {
        uploads: Location::open(uploads_uri, &config.s3)?,
        model: Arc::new(model),
        scorer,
        caps: config.quality.clone(),
        concurrency: config.runtime.concurrency,
        top_k: config.classify.top_k,
        input,
        output: topics.output_of("classify").unwrap_or_default(),
        status: topics.status(),
        terminal: pipeline.is_terminal("classify"),
    })
}

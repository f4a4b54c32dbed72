//! Building the model stages from configuration.

use std::sync::{Arc, Mutex};

use flashfit_config::Config;
use flashfit_models::embed::LiteMiniLm;
use flashfit_models::head::LinearHead;
use flashfit_models::manifest::Manifest;
use flashfit_models::mask::PersonMask;
use flashfit_models::taxonomy::{DEFAULT_IMAGENET_MAP, ImageNetMap};
use flashfit_models::text::MiniLm;
use flashfit_models::{ImageNetModel, ModelDir};
use flashfit_runtime::Stage;
use flashfit_schema::Topics;
use flashfit_storage::Location;
use flashfit_vision::attributes::Attributes;
use flashfit_vision::detect_stage::Detect;
use flashfit_vision::detector::Detector;
use flashfit_vision::embed::Embed;
use flashfit_vision::{Classifier, EnrichStage, Scorer, StageIo};

use crate::{Error, Pipeline, Result};

fn models_err(e: flashfit_models::Error) -> Error {
    Error::Invalid(e.to_string())
}

/// EfficientNet-Lite0 is used by classify and embed: one session per process.
fn imagenet(dir: &ModelDir, threads: usize) -> Result<Arc<ImageNetModel>> {
    static SHARED: Mutex<Option<Arc<ImageNetModel>>> = Mutex::new(None);
    let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = slot.as_ref() {
        return Ok(m.clone());
    }
    let m = Arc::new(ImageNetModel::load(dir, threads).map_err(models_err)?);
    *slot = Some(m.clone());
    Ok(m)
}

pub(crate) fn io(stage: &str, config: &Config, pipeline: &Pipeline) -> Result<StageIo> {
    let topics = Topics::new(config.kafka.topic_prefix.clone());
    let uri = config
        .uploads_uri
        .as_deref()
        .ok_or_else(|| Error::Invalid(format!("the {stage} stage needs FLASHFIT_UPLOADS_URI")))?;
    let input = pipeline
        .input_of(stage, &topics)
        .ok_or_else(|| Error::Invalid(format!("{stage} is not in the pipeline")))?;
    Ok(StageIo {
        uploads: Location::open(uri, &config.s3)?,
        caps: config.quality.clone(),
        concurrency: config.runtime.concurrency,
        input,
        output: topics.output_of(stage).unwrap_or_default(),
        status: topics.status(),
        terminal: pipeline.is_terminal(stage),
    })
}

/// Builds one of the model stages (`detect`, `classify`, `attributes`, `embed`).
pub(crate) fn model_stage(
    name: &str,
    config: &Config,
    pipeline: &Pipeline,
) -> Result<Arc<dyn Stage>> {
    let dir = ModelDir::from_env();
    let io = io(name, config, pipeline)?;
    Ok(match name {
        "detect" => Arc::new(EnrichStage::new(io, detector(config, &dir)?)),
        "classify" => Arc::new(EnrichStage::new(io, classifier(config, &dir)?)),
        "attributes" => Arc::new(EnrichStage::new(io, attributes(config, &dir)?)),
        "embed" => Arc::new(EnrichStage::new(io, embedder(config, &dir)?)),
        other => return Err(Error::Invalid(format!("`{other}` is not a model stage"))),
    })
}

pub(crate) fn detector(config: &Config, dir: &ModelDir) -> Result<Detect> {
    let manifest = Manifest::load(dir).map_err(models_err)?;
    let c = &config.detect;
    if c.detectors.is_empty() {
        return Err(Error::Invalid("detect.detectors is empty".into()));
    }
    let detectors = c
        .detectors
        .iter()
        .map(|n| Detector::load(dir, &manifest, n, c.threads))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(models_err)?;
    Ok(Detect {
        detectors,
        confidence: c.confidence,
        iou: c.iou,
        background_delta_e: c.background_delta_e,
    })
}

pub(crate) fn attributes(config: &Config, dir: &ModelDir) -> Result<Attributes> {
    let c = config.attributes.clone();
    let mask = if c.person_mask {
        Some(PersonMask::load(dir, c.threads).map_err(models_err)?)
    } else {
        None
    };
    Ok(Attributes { config: c, mask })
}

pub(crate) fn embedder(config: &Config, dir: &ModelDir) -> Result<Embed> {
    let t = config.embed.threads;
    let embedder = LiteMiniLm {
        image: imagenet(dir, t)?,
        text: MiniLm::load(dir, t).map_err(models_err)?,
    };
    Ok(Embed {
        embedder: Arc::new(embedder),
    })
}

pub(crate) fn classifier(config: &Config, dir: &ModelDir) -> Result<Classifier> {
    let model = imagenet(dir, config.classify.threads)?;
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
    Ok(Classifier {
        model,
        scorer,
        top_k: config.classify.top_k,
    })
}

//! `flashfit train head`: the seed's frozen-backbone fine-tuning. Embeds a labelled image set
//! with EfficientNet-Lite0, trains a linear taxonomy head, reports held-out accuracy, and
//! writes the head as a versioned JSON artefact.

use std::path::{Path, PathBuf};
use std::time::Instant;

use flashfit_models::fashion_mnist;
use flashfit_models::head::{LinearHead, TrainConfig};
use flashfit_models::{ImageNetModel, ModelDir, preprocess_imagenet};

use crate::{Error, Result};

/// Where the labelled examples come from.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// Debian's Fashion-MNIST: train on `train` (first `limit`), evaluate on the official
    /// `t10k` test split.
    FashionMnist { dir: PathBuf, limit: usize },
    /// A folder of class folders named after taxonomy categories; every fifth image (by sorted
    /// name) is held out for evaluation.
    Folders(PathBuf),
}

/// What a training run produced.
#[derive(Debug)]
pub struct TrainReport {
    pub head: LinearHead,
    pub train_examples: usize,
    pub test_examples: usize,
    pub accuracy: f64,
    pub seconds: f64,
}

fn backbone() -> String {
    format!("{}/{}", ImageNetModel::NAME, ImageNetModel::VERSION)
}

/// Trains a head and measures it on held-out data. Blocking (CPU-heavy).
pub fn train_head(data: &Dataset, threads: usize, cfg: &TrainConfig) -> Result<TrainReport> {
    let started = Instant::now();
    let model = ImageNetModel::load(&ModelDir::from_env(), threads).map_err(models_err)?;
    let (classes, xtr, ytr, xte, yte) = match data {
        Dataset::FashionMnist { dir, limit } => {
            let train = fashion_mnist::load(dir, "train", *limit).map_err(models_err)?;
            let test = fashion_mnist::load(dir, "t10k", usize::MAX).map_err(models_err)?;
            let xtr = fashion_mnist::embed(&model, &train, 64).map_err(models_err)?;
            let xte = fashion_mnist::embed(&model, &test, 64).map_err(models_err)?;
            let classes = fashion_mnist::CLASSES
                .iter()
                .map(|c| (*c).to_owned())
                .collect();
            (classes, xtr, train.labels, xte, test.labels)
        }
        Dataset::Folders(dir) => folders(&model, dir)?,
    };
    let mut head = LinearHead::train("taxonomy-head", &backbone(), classes, &xtr, &ytr, cfg)
        .map_err(models_err)?;
    head.version = format!(
        "{}-n{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        xtr.len()
    );
    let accuracy = head.accuracy(&xte, &yte).map_err(models_err)?;
    Ok(TrainReport {
        head,
        train_examples: xtr.len(),
        test_examples: xte.len(),
        accuracy,
        seconds: started.elapsed().as_secs_f64(),
    })
}

type Examples = (
    Vec<String>,
    Vec<Vec<f32>>,
    Vec<usize>,
    Vec<Vec<f32>>,
    Vec<usize>,
);

fn folders(model: &ImageNetModel, dir: &Path) -> Result<Examples> {
    let mut classes: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    for c in &classes {
        if flashfit_schema::taxonomy::index(c).is_none() {
            return Err(Error::Invalid(format!(
                "class folder `{c}` is not a taxonomy category"
            )));
        }
    }
    if classes.len() < 2 {
        return Err(Error::Invalid("need at least two class folders".into()));
    }
    let (mut xtr, mut ytr, mut xte, mut yte) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (ci, c) in classes.iter().enumerate() {
        let files = crate::ingest::list_images(&dir.join(c))?;
        for (i, f) in files.iter().enumerate() {
            let img = image_rgb(f)?;
            let emb = model
                .infer(&[preprocess_imagenet(&img)])
                .map_err(models_err)?
                .remove(0)
                .embedding;
            if i % 5 == 4 {
                xte.push(emb);
                yte.push(ci);
            } else {
                xtr.push(emb);
                ytr.push(ci);
            }
        }
    }
    Ok((classes, xtr, ytr, xte, yte))
}

fn image_rgb(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path)?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    Ok(img.to_rgb8())
}

fn models_err(e: flashfit_models::Error) -> Error {
    Error::Invalid(e.to_string())
}

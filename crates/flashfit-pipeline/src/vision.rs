//! Building the model stages from configuration (also used by the per-stage benchmark).

use std::sync::{Arc, Mutex};

use flashfit_config::Config;
use flashfit_models::embed::LiteMiniLm;
use flashfit_models::head::LinearHead;
use flashfit_models::manifest::Manifest;
use flashfit_models::mask::PersonMask;
use flashfit_models::tagger::Tagger;
use flashfit_models::taxonomy::{DEFAULT_IMAGENET_MAP, ImageNetMap};
use flashfit_models::text::MiniLm;
use flashfit_models::{ImageNetModel, ModelDir, Threads};
use flashfit_runtime::Stage;
use flashfit_schema::{StageName, Topics};
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

/// Image models by manifest name, one session per process (classify and embed both use
/// EfficientNet-Lite0 by default).
fn image_model(dir: &ModelDir, name: &str, threads: Threads) -> Result<Arc<ImageNetModel>> {
    static SHARED: Mutex<Vec<Arc<ImageNetModel>>> = Mutex::new(Vec::new());
    let mut loaded = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = loaded.iter().find(|m| m.name() == name) {
        return Ok(m.clone());
    }
    let m = Arc::new(ImageNetModel::load_named(dir, name, threads).map_err(models_err)?);
    loaded.push(m.clone());
    Ok(m)
}

/// A stage's ONNX Runtime threads: `intra` and `jobs` from its own table, spinning from
/// `[onnx]`.
fn threads(config: &Config, intra: usize, jobs: usize) -> Threads {
    Threads {
        intra,
        jobs: jobs.max(1),
        spinning: config.onnx.spinning,
    }
}

pub fn io(stage: StageName, config: &Config, pipeline: &Pipeline) -> Result<StageIo> {
    let topics = Topics::new(config.kafka.topic_prefix.clone());
    let uri = config
        .uploads_uri
        .as_deref()
        .ok_or_else(|| Error::Invalid(format!("the {stage} stage needs FLASHFIT_UPLOADS_URI")))?;
    let input = pipeline
        .input_of(stage, &topics)
        .ok_or_else(|| Error::Invalid(format!("{stage} is not in the pipeline")))?;
    let mut caps = config.quality.clone();
    if input != topics.uploads() {
        // The stage that reads the uploads topic checked the photo's owner; records come from
        // workers.
        caps.owner_prefix.clear();
    }
    Ok(StageIo {
        uploads: Location::open(uri, &config.s3)?,
        caps,
        concurrency: config.runtime.concurrency,
        input,
        output: topics.output_of(stage).unwrap_or_default(),
        status: topics.status(),
        terminal: pipeline.is_terminal(stage),
        feedback: topics.feedback(),
    })
}

/// Builds one of the model stages (`detect`, `classify`, `attributes`, `embed`).
pub fn model_stage(
    name: StageName,
    config: &Config,
    pipeline: &Pipeline,
) -> Result<Arc<dyn Stage>> {
    let dir = crate::model_dir(config);
    let io = io(name, config, pipeline)?;
    Ok(match name {
        StageName::Detect => Arc::new(EnrichStage::new(io, detector(config, &dir)?)),
        StageName::Classify => Arc::new(EnrichStage::new(io, classifier(config, &dir)?)),
        StageName::Attributes => Arc::new(EnrichStage::new(io, attributes(config, &dir)?)),
        StageName::Embed => Arc::new(EnrichStage::new(io, embedder(config, &dir)?)),
        other => return Err(Error::Invalid(format!("`{other}` is not a model stage"))),
    })
}

pub fn detector(config: &Config, dir: &ModelDir) -> Result<Detect> {
    let manifest = Manifest::load(dir).map_err(models_err)?;
    let c = &config.detect;
    if c.detectors.is_empty() {
        return Err(Error::Invalid("detect.detectors is empty".into()));
    }
    let detectors = c
        .detectors
        .iter()
        .map(|n| Detector::load(dir, &manifest, n, threads(config, c.threads, c.jobs)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(models_err)?;
    Ok(Detect {
        detectors,
        confidence: c.confidence,
        iou: c.iou,
        background_delta_e: c.background_delta_e,
        foreground_side: c.foreground_side,
        jobs: c.jobs.max(1),
    })
}

pub fn attributes(config: &Config, dir: &ModelDir) -> Result<Attributes> {
    let c = config.attributes.clone();
    let mask = if c.person_mask {
        Some(PersonMask::load(dir, threads(config, c.threads, c.jobs)).map_err(models_err)?)
    } else {
        None
    };
    let tagger = match &c.model {
        Some(name) => {
            Some(Tagger::load(dir, name, threads(config, c.threads, c.jobs)).map_err(models_err)?)
        }
        None => None,
    };
    Ok(Attributes {
        config: c,
        mask,
        tagger,
    })
}

pub fn embedder(config: &Config, dir: &ModelDir) -> Result<Embed> {
    let t = threads(config, config.embed.threads, config.embed.jobs);
    let manifest = Manifest::load(dir).map_err(models_err)?;
    let spec = manifest.embedder().map_err(models_err)?;
    let embedder = LiteMiniLm::new(
        image_model(dir, &spec.image_model, t)?,
        MiniLm::load(dir, t).map_err(models_err)?,
        spec,
    )
    .map_err(models_err)?;
    Ok(Embed {
        embedder: Arc::new(embedder),
    })
}

/// Where `models/train_head.sh` writes the shipped taxonomy head, under the models dir.
pub const SHIPPED_HEAD: &str = "heads/taxonomy-head.json";
/// `[classify] head` value for the ImageNet label map instead of a head.
pub const IMAGENET_MAP: &str = "imagenet-map";

pub fn classifier(config: &Config, dir: &ModelDir) -> Result<Classifier> {
    let c = &config.classify;
    let model = image_model(dir, &c.model, threads(config, c.threads, c.jobs))?;
    let shipped = dir.path().join(SHIPPED_HEAD);
    let head = match c.head.as_deref() {
        Some(IMAGENET_MAP) => None,
        Some(path) => Some(path.to_owned()),
        None if taxonomy_labels(&model) => None,
        None if shipped.is_file() => Some(shipped.to_string_lossy().into_owned()),
        None => {
            return Err(Error::Invalid(format!(
                "the shipped taxonomy head {} is missing: run `bash models/train_head.sh` \
                 (or set [classify] head = \"{IMAGENET_MAP}\")",
                shipped.display()
            )));
        }
    };
    let scorer = scorer(&model, head.as_deref())?;
    // The image vector is worth sending on only when the embed stage would make the same one.
    let manifest = Manifest::load(dir).map_err(models_err)?;
    let same_model = manifest
        .embedder()
        .is_ok_and(|e| e.image_model == model.name());
    Ok(Classifier {
        share_embedding: c.share_embedding && same_model && model.has_embedding(),
        model,
        scorer,
        top_k: c.top_k,
        calibration: flashfit_vision::clothing::CALIBRATION,
        not_clothing: c.not_clothing,
        clothing_threshold: c.clothing_threshold,
        category_threshold: c.category_threshold,
        group_threshold: c.group_threshold,
    })
}

/// Whether the classifier's own labels are taxonomy categories (it then scores directly).
fn taxonomy_labels(model: &ImageNetModel) -> bool {
    model
        .labels()
        .iter()
        .all(|l| flashfit_schema::taxonomy::index(l).is_some())
}

/// How the classifier's outputs become taxonomy categories: a trained head, the model's own
/// taxonomy labels, or the ImageNet label map.
pub fn scorer(model: &ImageNetModel, head: Option<&str>) -> Result<Scorer> {
    let taxonomy_labels = taxonomy_labels(model);
    let map = || {
        ImageNetMap::parse(DEFAULT_IMAGENET_MAP, model.labels()).map_err(|e| {
            Error::Invalid(format!(
                "classifier {}: its labels are neither taxonomy categories nor ImageNet classes ({e})",
                model.name()
            ))
        })
    };
    match head {
        Some(path) => {
            let head = LinearHead::load(std::path::Path::new(path)).map_err(models_err)?;
            let want = format!("{}/{}", model.name(), model.version());
            if head.backbone != want || !model.has_embedding() {
                return Err(Error::Invalid(format!(
                    "head {path} was trained on {}, not {want} (with an embedding output)",
                    head.backbone
                )));
            }
            Ok(Scorer::Head(
                Box::new(head),
                if taxonomy_labels { None } else { Some(map()?) },
            ))
        }
        None if taxonomy_labels => Ok(Scorer::Direct),
        None => Ok(Scorer::ImageNet(map()?)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flashfit_schema::StageName;

    use flashfit_config::{Config, RuntimeConfig};
    use flashfit_models::manifest::LOCAL;
    use flashfit_models::{ImageNetModel, ModelDir};
    use flashfit_runtime::harness;
    use flashfit_schema::taxonomy::CATEGORIES;
    use flashfit_vision::{Classifier, EnrichStage, Scorer};

    use super::{attributes, classifier, embedder, io, scorer};
    use crate::Pipeline;

    /// A classifier that is not EfficientNet-Lite0-with-ImageNet-labels drops in as a manifest
    /// entry, a labels file and an ONNX file: here the Lite0 weights under another name with 1000
    /// labels that are taxonomy categories (label i = category i mod 47), standing in for the
    /// seed's EfficientNet-B0 on 47 categories. Needs `bash models/fetch.sh`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_taxonomy_classifier_drops_in_through_the_manifest() {
        let real = ModelDir::from_env();
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = ModelDir::new(tmp.path());
        let manifest = "[[model]]\nname = \"fashion47-dropin\"\nversion = \"7\"\nlabels = \"fashion47\"\n\
             [model.classifier]\ninput_name = \"input\"\nside = 224\nresize_short_side = 256\n\
             mean = [127.0, 127.0, 127.0]\nstd = [128.0, 128.0, 128.0]\nlogits = \"logits\"\n";
        std::fs::write(tmp.path().join(LOCAL), manifest).expect("manifest");
        std::fs::create_dir_all(tmp.path().join("fashion47-dropin/7")).expect("mkdir");
        std::fs::copy(
            real.path().join("efficientnet-lite0/1/model.onnx"),
            tmp.path().join("fashion47-dropin/7/model.onnx"),
        )
        .expect("copy model");
        std::fs::create_dir_all(tmp.path().join("labels")).expect("mkdir");
        let labels: String = (0..1000)
            .map(|i| format!("{}\n", CATEGORIES[i % 47].1))
            .collect();
        std::fs::write(tmp.path().join("labels/fashion47.txt"), labels).expect("labels");

        let model = Arc::new(
            ImageNetModel::load_named(&dir, "fashion47-dropin", 1)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let s = scorer(&model, None).expect("scorer");
        assert!(matches!(s, Scorer::Direct));
        // Expected: the softmax mass of each label summed per category, on the same crop.
        let photos =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos");
        let img = image::open(photos.join("coffee.jpg"))
            .expect("photo")
            .to_rgb8();
        let out = model
            .infer(&[model.preprocess(&img)])
            .expect("infer")
            .remove(0);
        let mut mass = [0f32; 47];
        for (i, p) in flashfit_models::softmax(&out.logits).iter().enumerate() {
            mass[i % 47] += p;
        }
        let best = (0..47)
            .max_by(|a, b| mass[*a].total_cmp(&mass[*b]))
            .expect("best");

        let root = url::Url::from_directory_path(photos.canonicalize().expect("photos"))
            .expect("uri")
            .to_string();
        let config = Config {
            uploads_uri: Some(root.clone()),
            ..Config::default()
        };
        let pipeline = Pipeline::default_pipeline();
        let stage = Arc::new(EnrichStage::new(
            io(StageName::Classify, &config, &pipeline).expect("io"),
            Classifier::new(model, s, false).flagging(),
        ));
        let rec = serde_json::json!({"event_id": "e1", "user_id": "u", "garment_id": "g1",
            "image_uri": format!("{root}coffee.jpg"), "uploaded_at": "2026-11-22T00:00:00Z"});
        let run = harness::run(
            stage,
            vec![(None, serde_json::to_vec(&rec).expect("json"))],
            RuntimeConfig::default(),
        )
        .await;
        let outs = run.on("flashfit.classified");
        assert_eq!(outs.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&outs[0].value).expect("json");
        assert_eq!(v["classification"]["category"], CATEGORIES[best].1, "{v}");
        assert_eq!(v["models"][0]["name"], "fashion47-dropin");
        assert_eq!(v["models"][0]["version"], "7");
    }

    /// The seed's attribute tagger drops in the same way: a local manifest entry with a
    /// `[model.tagger]` table and its ONNX file (here a tiny stand-in with constant answers,
    /// `tests/fixtures/models/make_tiny_tagger.py`); its answers replace the rules'.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attribute_tagger_drops_in_through_the_manifest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        std::fs::write(
            tmp.path().join(LOCAL),
            "[[model]]\nname = \"tiny-tagger\"\nversion = \"1\"\n[model.tagger]\n\
             input_name = \"input\"\nside = 224\nresize_short_side = 256\n\
             mean = [123.675, 116.28, 103.53]\nstd = [58.395, 57.12, 57.375]\n\
             pattern = \"pattern\"\nfit = \"fit\"\nformality = \"formality\"\n\
             seasons = \"seasons\"\nstyle = \"style\"\n",
        )
        .expect("manifest");
        std::fs::create_dir_all(tmp.path().join("tiny-tagger/1")).expect("mkdir");
        std::fs::copy(
            fixtures.join("models/tiny-tagger.onnx"),
            tmp.path().join("tiny-tagger/1/model.onnx"),
        )
        .expect("copy");
        let mut config = Config::default();
        config.attributes.model = Some("tiny-tagger".into());
        config.attributes.person_mask = false;
        let a = attributes(&config, &ModelDir::new(tmp.path())).unwrap_or_else(|e| panic!("{e}"));
        let root =
            url::Url::from_directory_path(fixtures.join("photos").canonicalize().expect("photos"))
                .expect("uri")
                .to_string();
        config.uploads_uri = Some(root.clone());
        let stage = Arc::new(EnrichStage::new(
            io(
                StageName::Attributes,
                &config,
                &Pipeline::default_pipeline(),
            )
            .expect("io"),
            a,
        ));
        let rec = serde_json::json!({"event_id": "e1", "user_id": "u", "garment_id": "g1",
            "image_uri": format!("{root}coffee.jpg"), "uploaded_at": "2026-11-22T00:00:00Z",
            "classification": {"category": "t_shirt", "group": "tops", "confidence": 0.9,
                "topk": [], "is_clothing": 0.9, "flagged": false}});
        let run = harness::run(
            stage,
            vec![(None, serde_json::to_vec(&rec).expect("json"))],
            RuntimeConfig::default(),
        )
        .await;
        let outs = run.on("flashfit.tagged");
        assert_eq!(outs.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&outs[0].value).expect("json");
        let a = &v["attributes"];
        assert_eq!(a["pattern"], "floral", "{a}");
        assert_eq!(a["fit"], "relaxed");
        assert_eq!(a["formality"], 0.7);
        assert_eq!(a["seasons"], serde_json::json!(["summer", "winter"]));
        assert_eq!(a["style_tags"], serde_json::json!(["bohemian", "vintage"]));
        assert!(
            a["color_primary"].is_string(),
            "colours are still measured: {a}"
        );
        let models: Vec<&str> = v["models"]
            .as_array()
            .expect("models")
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert!(models.contains(&"tiny-tagger"), "{models:?}");
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (n(a) * n(b))
    }

    /// One backbone pass per crop: the classify stage writes EfficientNet-Lite0's image vector,
    /// the embed stage takes it (without fetching or decoding the photo) and drops it from the
    /// record; the vector equals the one the embed stage computes itself (cosine ≥ 0.99 on
    /// every fixture photo). Needs `bash models/fetch.sh`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn classify_shares_its_image_vector_with_embed() {
        let photos = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/photos")
            .canonicalize()
            .expect("photos");
        let root = url::Url::from_directory_path(&photos)
            .expect("uri")
            .to_string();
        let mut config = Config {
            uploads_uri: Some(root.clone()),
            ..Config::default()
        };
        // Every fixture photo, the cat and the coffee too: flagged, not rejected, so each
        // reaches embed.
        config.classify.not_clothing = flashfit_config::NotClothing::Flag;
        assert!(config.classify.share_embedding, "shared by default");
        let dir = crate::model_dir(&config);
        let pipeline = Pipeline::default_pipeline();
        let classify = Arc::new(EnrichStage::new(
            io(StageName::Classify, &config, &pipeline).expect("io"),
            classifier(&config, &dir).expect("classifier"),
        ));
        let embed = Arc::new(EnrichStage::new(
            io(StageName::Embed, &config, &pipeline).expect("io"),
            embedder(&config, &dir).expect("embedder"),
        ));
        let mut names: Vec<String> = std::fs::read_dir(&photos)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".jpg") || n.ends_with(".png"))
            .collect();
        names.sort();
        let input: Vec<(Option<Vec<u8>>, Vec<u8>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let rec = serde_json::json!({"event_id": format!("e{i}"), "user_id": "u",
                    "garment_id": format!("g{i}"), "image_uri": format!("{root}{n}"),
                    "uploaded_at": "2026-12-04T00:00:00Z",
                    "detection": {"class": "full_image", "confidence": null,
                        "bbox": [10.0, 5.0, 180.0, 150.0], "source": "full_image",
                        "model": null, "all": []}});
                (None, serde_json::to_vec(&rec).expect("json"))
            })
            .collect();
        let classified = harness::run(classify, input, RuntimeConfig::default()).await;
        let classified: Vec<serde_json::Value> = classified
            .on("flashfit.classified")
            .iter()
            .map(|r| serde_json::from_slice(&r.value).expect("json"))
            .collect();
        assert_eq!(classified.len(), names.len());
        let vector = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("num") as f32)
                .collect()
        };
        for c in &classified {
            let shared = &c["classification"]["image_vector"];
            assert_eq!(shared["model"], "efficientnet-lite0", "{shared}");
            assert_eq!(vector(&shared["vector"]).len(), 1280);
        }
        // Shared: the embed stage never reads the photo (its URI now points nowhere).
        let shared_in: Vec<(Option<Vec<u8>>, Vec<u8>)> = classified
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["image_uri"] = serde_json::json!(format!(
                    "{root}gone-{}",
                    c["event_id"].as_str().unwrap_or("")
                ));
                (None, serde_json::to_vec(&c).expect("json"))
            })
            .collect();
        // Recomputed: the same records without the shared vector.
        let own_in: Vec<(Option<Vec<u8>>, Vec<u8>)> = classified
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["classification"]
                    .as_object_mut()
                    .expect("classification")
                    .remove("image_vector");
                (None, serde_json::to_vec(&c).expect("json"))
            })
            .collect();
        let shared = harness::run(embed.clone(), shared_in, RuntimeConfig::default()).await;
        let own = harness::run(embed, own_in, RuntimeConfig::default()).await;
        let embedded = |run: &harness::HarnessRun| -> Vec<serde_json::Value> {
            run.on("flashfit.embedded")
                .iter()
                .map(|r| serde_json::from_slice(&r.value).expect("json"))
                .collect()
        };
        let (shared, own) = (embedded(&shared), embedded(&own));
        assert_eq!(
            shared.len(),
            names.len(),
            "every shared record embedded without its photo"
        );
        assert_eq!(own.len(), names.len());
        for (s, o) in shared.iter().zip(&own) {
            assert_eq!(s["event_id"], o["event_id"]);
            assert!(
                s["classification"].get("image_vector").is_none(),
                "the vector is written once, in embedding: {}",
                s["classification"]
            );
            let c = cosine(
                &vector(&s["embedding"]["image_vector"]),
                &vector(&o["embedding"]["image_vector"]),
            );
            assert!(c >= 0.99, "{}: cosine {c}", s["image_uri"]);
            assert_eq!(s["embedding"]["caption"], o["embedding"]["caption"]);
        }
    }
}

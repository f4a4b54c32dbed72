//! Runs the pipeline's enrichment stages on every photo of a set, stage after stage through the
//! runtime's harness (the workers' `Processor`: same decoding, caps, reasons, dead letters), and
//! collects what each upload ended as: its status and the garments it became.

use std::collections::BTreeMap;
use std::path::Path;

use flashfit_config::Config;
use flashfit_pipeline::Pipeline;
use flashfit_schema::record::{ClothingEvidence, Level};
use flashfit_schema::{GarmentRecord, Reason, Status, StatusEvent, Topics};
use serde::Serialize;

use crate::labels::{self, Photo};
use crate::{Error, Result};

/// One garment an upload became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Predicted {
    pub bbox: [f32; 4],
    /// `classification.category`: a category, a group name or `unknown`.
    pub label: String,
    pub group: Option<String>,
    pub level: Level,
    /// The model's best category and its confidence (`topk[0]`).
    pub best: Option<String>,
    pub confidence: f32,
    pub colour: Option<String>,
    /// The primary colour as measured (sRGB), before it was named.
    pub rgb: Option<[u8; 3]>,
}

/// What one upload of the set ended as.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// `processed`, `rejected` or `failed` (the first terminal status).
    pub status: Option<Status>,
    pub reasons: Vec<Reason>,
    pub message: Option<String>,
    /// The calibrated `is_clothing` and its evidence, when classify ran (also for a rejected
    /// upload: read from the classify stage's input and the model, see [`evaluate`]).
    pub is_clothing: Option<f32>,
    pub evidence: Option<ClothingEvidence>,
    /// What the detect stage found: `(class, confidence)` of every detection above its
    /// detector's threshold.
    pub detections: Vec<(String, f32)>,
    pub items: Vec<Predicted>,
}

fn predicted(r: &GarmentRecord) -> Option<Predicted> {
    let c = r.classification.as_ref()?;
    Some(Predicted {
        bbox: r.bbox().unwrap_or([0.0; 4]),
        label: c.category.clone(),
        group: c.group.clone(),
        level: c.level,
        best: c.topk.first().map(|t| t.category.clone()),
        confidence: c.confidence,
        colour: r.attributes.as_ref().and_then(|a| a.color_primary.clone()),
        rgb: r
            .attributes
            .as_ref()
            .and_then(|a| a.colors.first())
            .map(|c| c.rgb),
    })
}

/// Runs `pipeline`'s enrichment stages on the set in `dir` and returns each photo with what it
/// became. The classify stage runs with `not_clothing = "flag"` once more on the same input to
/// read the calibrated `is_clothing` of the uploads it rejects (the verdict itself comes from
/// the run with the configured setting).
pub async fn evaluate(
    config: &Config,
    pipeline: &Pipeline,
    dir: &Path,
) -> Result<Vec<(Photo, Prediction)>> {
    let photos = labels::load(dir)?;
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::Labels(format!("{}: {e}", dir.display())))?;
    let root = url::Url::from_directory_path(&dir)
        .map_err(|_| Error::Invalid(format!("{}: not an absolute path", dir.display())))?
        .to_string();
    let mut config = config.clone();
    config.uploads_uri = Some(root.clone());
    // A labelled set is a folder of photos, not users' folders: no owner to check.
    config.quality.owner_prefix.clear();
    let topics = Topics::new(config.kafka.topic_prefix.clone());
    let uploaded_at = "2026-01-01T00:00:00Z";
    let mut input: Vec<(Option<Vec<u8>>, Vec<u8>)> = photos
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let event = serde_json::json!({
                "event_id": format!("eval-{i}"), "user_id": "eval", "garment_id": format!("eval-{i}"),
                "image_uri": format!("{root}{}", p.file), "uploaded_at": uploaded_at,
                "kind": p.kind,
            });
            (None, serde_json::to_vec(&event).unwrap_or_default())
        })
        .collect();
    let mut statuses: BTreeMap<String, StatusEvent> = BTreeMap::new();
    let mut evidence: BTreeMap<String, (f32, Option<ClothingEvidence>)> = BTreeMap::new();
    let mut detections: BTreeMap<String, Vec<(String, f32)>> = BTreeMap::new();
    let mut runtime = config.runtime.clone();
    // Bad input is the point of some photos: no stop on the dead-letter rate.
    runtime.dlq_max_ratio = 1.0;
    for &stage in &pipeline.stages {
        let built = flashfit_pipeline::build_stage(stage, &config, pipeline)?;
        let output = topics.output_of(stage).unwrap_or_default();
        let run = flashfit_runtime::harness::run(built, input.clone(), runtime.clone()).await;
        for r in run.on(&topics.status()) {
            if let Ok(s) = serde_json::from_slice::<StatusEvent>(&r.value)
                && let Some(id) = s.event_id.clone()
            {
                statuses.entry(id).or_insert(s);
            }
        }
        if stage == flashfit_schema::StageName::Classify {
            let mut flag = config.clone();
            flag.classify.not_clothing = flashfit_config::NotClothing::Flag;
            let built = flashfit_pipeline::build_stage(stage, &flag, pipeline)?;
            let all = flashfit_runtime::harness::run(built, input.clone(), runtime.clone()).await;
            for r in all.on(&output) {
                if let Ok(g) = GarmentRecord::from_json(&r.value)
                    && let Some(c) = &g.classification
                    && g.outfit.is_none()
                {
                    evidence.insert(g.upload.event_id.clone(), (c.is_clothing, c.evidence));
                    let found = g.detection.as_ref().map(|d| {
                        d.all
                            .iter()
                            .map(|o| (o.class.clone(), o.confidence))
                            .collect()
                    });
                    detections.insert(g.upload.event_id.clone(), found.unwrap_or_default());
                }
            }
        }
        input = run
            .on(&output)
            .into_iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect();
    }
    let mut items: BTreeMap<String, Vec<Predicted>> = BTreeMap::new();
    for (_, value) in &input {
        if let Ok(g) = GarmentRecord::from_json(value)
            && let Some(p) = predicted(&g)
        {
            // An outfit's garments count for the upload they came from.
            let upload = g
                .outfit
                .as_ref()
                .map_or(&g.upload.event_id, |o| &o.event_id);
            items.entry(upload.clone()).or_default().push(p);
        }
    }
    Ok(photos
        .into_iter()
        .enumerate()
        .map(|(i, photo)| {
            let id = format!("eval-{i}");
            let status = statuses.get(&id);
            let (is_clothing, ev) = evidence.get(&id).copied().unzip();
            let prediction = Prediction {
                status: status.map(|s| s.status),
                reasons: status.map(|s| s.reasons.clone()).unwrap_or_default(),
                message: status.and_then(|s| s.message.clone()),
                is_clothing,
                evidence: ev.flatten(),
                detections: detections.remove(&id).unwrap_or_default(),
                items: items.remove(&id).unwrap_or_default(),
            };
            (photo, prediction)
        })
        .collect())
}

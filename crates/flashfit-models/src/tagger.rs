//! An attribute tagger from the manifest (`[model.tagger]`): the seed's multi-head model on the
//! garment crop, dropped in as an ONNX file. Its answers replace the attribute rules for the
//! attributes it has outputs for.

use crate::manifest::{Manifest, TaggerSpec};
use crate::session::{Input, OnnxSession, take};
use crate::{Error, ModelDir, Result};

pub struct Tagger {
    pub name: String,
    pub version: String,
    spec: TaggerSpec,
    session: OnnxSession,
}

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tagger({}/{})", self.name, self.version)
    }
}

/// What a tagger says about one garment (`None`: the model has no such output).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    pub pattern: Option<String>,
    pub fit: Option<String>,
    pub formality: Option<f32>,
    pub seasons: Option<Vec<String>>,
    pub style: Option<Vec<String>>,
}

impl Tagger {
    pub fn load(dir: &ModelDir, name: &str, threads: impl Into<crate::Threads>) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let entry = manifest.get(name)?;
        let spec = entry.tagger.clone().ok_or_else(|| {
            Error::BadInput(format!(
                "model {name} has no [model.tagger] table in the manifest"
            ))
        })?;
        let session = OnnxSession::load(dir, &entry.name, &entry.version, threads)?;
        Ok(Tagger {
            name: entry.name.clone(),
            version: entry.version.clone(),
            spec,
            session,
        })
    }

    /// The model input for one crop.
    pub fn prepare(&self, img: &image::RgbImage) -> Vec<f32> {
        self.spec.input.prepare(img)
    }

    /// [`Tagger::prepare`] of the `region` of `img` (a garment's box), read in place.
    pub fn prepare_region(&self, img: &image::RgbImage, region: crate::Region) -> Vec<f32> {
        self.spec.input.prepare_region(img, region)
    }

    /// The side the preprocessing resizes a region's short side to.
    pub fn source_side(&self) -> u32 {
        self.spec.input.source_side()
    }

    /// Runs a batch of prepared crops. Blocking.
    pub fn infer(&self, batch: &[Vec<f32>]) -> Result<Vec<Tags>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.spec.input.side as usize;
        let data: Vec<f32> = batch.concat();
        if data.len() != batch.len() * self.spec.input.len() {
            return Err(Error::BadInput("tagger input of the wrong size".into()));
        }
        let mut out = self.session.run(&[Input::F32(
            &self.spec.input.input_name,
            vec![batch.len(), 3, side, side],
            &data,
        )])?;
        let s = &self.spec;
        let mut rows = |name: &Option<String>, width: usize| -> Result<Option<Vec<Vec<f32>>>> {
            let Some(n) = name else { return Ok(None) };
            let t = take(&mut out, n)?;
            if t.data.len() != width * batch.len() {
                return Err(Error::Inference(format!(
                    "tagger output {n} has {} values; expected {width} per image",
                    t.data.len()
                )));
            }
            Ok(Some(t.data.chunks(width).map(<[f32]>::to_vec).collect()))
        };
        let pattern = rows(&s.pattern, s.pattern_labels.len())?;
        let fit = rows(&s.fit, s.fit_labels.len())?;
        let formality = rows(&s.formality, 1)?;
        let seasons = rows(&s.seasons, s.season_labels.len())?;
        let style = rows(&s.style, s.style_labels.len())?;
        let argmax = |v: &[f32], labels: &[String]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| labels[i].clone())
        };
        let above = |v: &[f32], labels: &[String]| {
            v.iter()
                .zip(labels)
                .filter(|(p, _)| **p >= s.threshold)
                .map(|(_, l)| l.clone())
                .collect::<Vec<_>>()
        };
        Ok((0..batch.len())
            .map(|i| Tags {
                pattern: pattern
                    .as_ref()
                    .and_then(|r| argmax(&r[i], &s.pattern_labels)),
                fit: fit.as_ref().and_then(|r| argmax(&r[i], &s.fit_labels)),
                formality: formality.as_ref().map(|r| r[i][0].clamp(0.0, 1.0)),
                seasons: seasons.as_ref().map(|r| above(&r[i], &s.season_labels)),
                style: style.as_ref().map(|r| above(&r[i], &s.style_labels)),
            })
            .collect())
    }
}

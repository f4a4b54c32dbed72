//! A learned compatibility model from the manifest (`[model.compatibility]`), dropped in as
//! an ONNX file: scores whole outfits from their garments' image vectors in one batch.

use crate::manifest::{CompatibilitySpec, Manifest};
use crate::session::{Input, OnnxSession, take};
use crate::{Error, ModelDir, Result};

pub struct CompatModel {
    pub name: String,
    pub version: String,
    spec: CompatibilitySpec,
    session: OnnxSession,
}

impl std::fmt::Debug for CompatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompatModel({}/{})", self.name, self.version)
    }
}

impl CompatModel {
    pub fn load(dir: &ModelDir, name: &str, threads: impl Into<crate::Threads>) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let entry = manifest.get(name)?;
        let spec = entry.compatibility.clone().ok_or_else(|| {
            Error::BadInput(format!(
                "model {name} has no [model.compatibility] table in the manifest"
            ))
        })?;
        let session = OnnxSession::load(dir, &entry.name, &entry.version, threads)?;
        Ok(CompatModel {
            name: entry.name.clone(),
            version: entry.version.clone(),
            spec,
            session,
        })
    }

    /// The embedding width the model takes.
    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    /// One score per outfit; each outfit is its garments' vectors (`dim` floats each).
    /// Outfits are padded to the longest. Blocking.
    pub fn score(&self, outfits: &[Vec<&[f32]>]) -> Result<Vec<f32>> {
        if outfits.is_empty() {
            return Ok(Vec::new());
        }
        let (b, d) = (outfits.len(), self.spec.dim);
        let n = outfits.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut items = vec![0f32; b * n * d];
        let mut mask = vec![0f32; b * n];
        for (i, o) in outfits.iter().enumerate() {
            for (j, v) in o.iter().enumerate() {
                if v.len() != d {
                    return Err(Error::BadInput(format!(
                        "a garment vector has {} values; the model takes {d}",
                        v.len()
                    )));
                }
                items[(i * n + j) * d..(i * n + j + 1) * d].copy_from_slice(v);
                mask[i * n + j] = 1.0;
            }
        }
        let mut out = self.session.run(&[
            Input::F32(&self.spec.items, vec![b, n, d], &items),
            Input::F32(&self.spec.mask, vec![b, n], &mask),
        ])?;
        let s = take(&mut out, &self.spec.score)?;
        if s.data.len() != b {
            return Err(Error::Inference(format!(
                "compatibility output has {} values for {b} outfits",
                s.data.len()
            )));
        }
        Ok(s.data)
    }
}

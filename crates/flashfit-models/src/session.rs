//! A model-agnostic ONNX Runtime session: named tensors in, named f32 tensors out. The typed
//! wrappers (detectors, the text embedder, the person mask) sit on it.

use ort::value::TensorRef;
use std::collections::HashMap;

use crate::{Error, ModelDir, Pool, Result, Threads};

/// One input tensor: name, shape, data.
pub enum Input<'a> {
    F32(&'a str, Vec<usize>, &'a [f32]),
    U8(&'a str, Vec<usize>, &'a [u8]),
    I64(&'a str, Vec<usize>, &'a [i64]),
    I32(&'a str, Vec<usize>, &'a [i32]),
}

/// One output tensor, converted to f32.
#[derive(Debug, Clone)]
pub struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded model file (`<dir>/<name>/<version>/model.onnx`): `Threads::jobs` sessions, so
/// that many calls run at once; blocking, so call it off the async reactor.
pub struct OnnxSession {
    pub name: String,
    pub version: String,
    pool: Pool,
}

impl std::fmt::Debug for OnnxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnnxSession({}/{})", self.name, self.version)
    }
}

impl OnnxSession {
    pub fn load(
        dir: &ModelDir,
        name: &str,
        version: &str,
        threads: impl Into<Threads>,
    ) -> Result<Self> {
        Self::load_file(dir, name, version, "model.onnx", threads)
    }

    /// Like [`OnnxSession::load`], for another graph file in the model's version directory
    /// (a serving graph `models/fetch.sh` derives from the verified `model.onnx`).
    pub fn load_file(
        dir: &ModelDir,
        name: &str,
        version: &str,
        file: &str,
        threads: impl Into<Threads>,
    ) -> Result<Self> {
        let path = dir.file(&format!("{name}/{version}/{file}"))?;
        let pool = Pool::load(dir, &path, threads.into())?;
        Ok(OnnxSession {
            name: name.to_owned(),
            version: version.to_owned(),
            pool,
        })
    }

    /// Runs the model; returns every output as f32 (integer outputs are converted).
    pub fn run(&self, inputs: &[Input<'_>]) -> Result<HashMap<String, Output>> {
        self.run_some(inputs, None)
    }

    /// Runs the model; returns the outputs named in `only` (all when `None`) as f32. The
    /// others are still computed but not copied out (CenterNet's 1.3 M-float heat map, which
    /// its detection list is made from, cost the detect stage a 5 MB copy per photo).
    pub fn run_some(
        &self,
        inputs: &[Input<'_>],
        only: Option<&[&str]>,
    ) -> Result<HashMap<String, Output>> {
        let values = input_values(inputs)?;
        self.pool
            .with(|session| -> Result<HashMap<String, Output>> {
                let outputs = session.run(values)?;
                let mut out = HashMap::new();
                // Copied as contiguous slices (CenterNet's heat map alone is 1.3 M floats:
                // an element-by-element ndarray walk cost the detect stage ~3% of its CPU).
                let dims = |s: &ort::value::Shape| s.iter().map(|&d| d.max(0) as usize).collect();
                for (name, value) in outputs.iter() {
                    if only.is_some_and(|o| !o.contains(&name)) {
                        continue;
                    }
                    let (shape, data) = if let Ok((s, d)) = value.try_extract_tensor::<f32>() {
                        (dims(s), d.to_vec())
                    } else if let Ok((s, d)) = value.try_extract_tensor::<i64>() {
                        (dims(s), d.iter().map(|&v| v as f32).collect())
                    } else if let Ok((s, d)) = value.try_extract_tensor::<i32>() {
                        (dims(s), d.iter().map(|&v| v as f32).collect())
                    } else {
                        continue;
                    };
                    out.insert(name.to_owned(), Output { shape, data });
                }
                Ok(out)
            })
    }

    /// Runs the model and hands `read` the f32 outputs named in `names`, in that order, as
    /// (shape, data) borrowed from the session: nothing is copied (a detector's raw heads are
    /// millions of floats per photo). An output that is missing or not f32 is an error.
    pub fn run_view<R>(
        &self,
        inputs: &[Input<'_>],
        names: &[&str],
        read: impl FnOnce(&[(Vec<usize>, &[f32])]) -> Result<R>,
    ) -> Result<R> {
        let values = input_values(inputs)?;
        self.pool.with(|session| -> Result<R> {
            let outputs = session.run(values)?;
            let mut views = Vec::with_capacity(names.len());
            for name in names {
                let value = outputs
                    .get(name)
                    .ok_or_else(|| Error::Inference(format!("model has no output {name:?}")))?;
                let (shape, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| Error::Inference(format!("output {name:?} is not f32: {e}")))?;
                views.push((shape.iter().map(|&d| d.max(0) as usize).collect(), data));
            }
            read(&views)
        })
    }

    /// Sessions of this model (calls that may run at once).
    pub fn jobs(&self) -> usize {
        self.pool.jobs()
    }
}

/// The session inputs, borrowing the callers' buffers.
fn input_values<'a>(
    inputs: &'a [Input<'_>],
) -> Result<Vec<(String, ort::session::SessionInputValue<'a>)>> {
    inputs
        .iter()
        .map(|input| match input {
            Input::F32(n, s, d) => input_value(n, s, d),
            Input::U8(n, s, d) => input_value(n, s, d),
            Input::I64(n, s, d) => input_value(n, s, d),
            Input::I32(n, s, d) => input_value(n, s, d),
        })
        .collect()
}

/// One input tensor as a view of `data` in `shape`.
fn input_value<'a, T>(
    name: &str,
    shape: &[usize],
    data: &'a [T],
) -> Result<(String, ort::session::SessionInputValue<'a>)>
where
    T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
{
    let view = ndarray::ArrayViewD::from_shape(shape.to_vec(), data)
        .map_err(|e| Error::BadInput(e.to_string()))?;
    Ok((name.to_owned(), TensorRef::from_array_view(view)?.into()))
}

/// Takes a named output or says which is missing.
pub fn take(outputs: &mut HashMap<String, Output>, name: &str) -> Result<Output> {
    outputs
        .remove(name)
        .ok_or_else(|| Error::Inference(format!("model has no output {name:?}")))
}

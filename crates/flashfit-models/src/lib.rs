//! ONNX Runtime sessions for the models in `models/manifest.toml`, behind small typed wrappers.
//! `bash models/fetch.sh` provides the files; this crate finds them, loads ONNX Runtime once per
//! process (`ort`, load-dynamic) and fails with an error that names the fix when something is
//! missing.
//!
//! Main items: [`ModelDir`], [`runtime`], [`ImageNetModel`] (EfficientNet-Lite0: ImageNet logits
//! + 1280-d embedding), [`preprocess_imagenet`].

pub mod compat;
pub mod embed;
pub mod fashion_mnist;
pub mod head;
pub mod manifest;
pub mod mask;
pub mod session;
pub mod tagger;
pub mod taxonomy;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use image::RgbImage;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ONNX Runtime shared library could not be loaded: an operator must act.
    #[error(
        "ONNX Runtime not loaded from {path}: {message}. Run `bash models/fetch.sh` or set ORT_DYLIB_PATH to libonnxruntime.so (1.31)"
    )]
    Runtime { path: String, message: String },
    /// A model file is missing: an operator must act.
    #[error(
        "model file {path} is missing: run `bash models/fetch.sh` (or set FLASHFIT_MODELS_DIR)"
    )]
    ModelMissing { path: String },
    /// Inference failed.
    #[error("inference: {0}")]
    Inference(String),
    /// The caller passed something the model cannot take.
    #[error("bad model input: {0}")]
    BadInput(String),
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Inference(e.to_string())
    }
}

/// Where `models/fetch.sh` put the files: the configured `models_dir` (`FLASHFIT_MODELS_DIR`),
/// else `/var/lib/flashfit/models` (root) or `~/.cache/flashfit/models`.
#[derive(Debug, Clone)]
pub struct ModelDir(PathBuf);

impl ModelDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelDir(path.into())
    }

    /// The configured directory (`Config::models_dir`), else the default location. Library
    /// code takes the location from the configuration, never from the environment.
    pub fn configured(dir: Option<&str>) -> Self {
        match dir {
            Some(d) if !d.is_empty() => ModelDir(d.into()),
            _ => Self::default_location(),
        }
    }

    /// For tests and tools that have no configuration: `FLASHFIT_MODELS_DIR`, else the
    /// default location.
    pub fn from_env() -> Self {
        Self::configured(std::env::var("FLASHFIT_MODELS_DIR").ok().as_deref())
    }

    /// Where `models/fetch.sh` puts the models when nothing is configured.
    pub fn default_location() -> Self {
        let root = Path::new("/var/lib/flashfit/models");
        if root.exists() {
            return ModelDir(root.into());
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        ModelDir(home.join(".cache/flashfit/models"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, rel: &str) -> Result<PathBuf> {
        let p = self.0.join(rel);
        if p.exists() {
            Ok(p)
        } else {
            Err(Error::ModelMissing {
                path: p.display().to_string(),
            })
        }
    }

    fn ort_library(&self) -> PathBuf {
        std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.0.join("onnxruntime/libonnxruntime.so.1.31.1"))
    }
}

static RUNTIME: OnceLock<std::result::Result<Environment, (String, String)>> = OnceLock::new();

/// The process's ONNX Runtime environment, loaded on first use from `ORT_DYLIB_PATH` or the
/// model directory.
pub fn runtime(dir: &ModelDir) -> Result<Environment> {
    let result = RUNTIME.get_or_init(|| {
        let lib = dir.ort_library();
        let shown = lib.display().to_string();
        if !lib.exists() {
            return Err((shown, "file not found".into()));
        }
        ort::init_from(&lib)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("flashfit").build().map_err(|e| e.to_string()))
            .map_err(|m| (shown, m))
    });
    result
        .clone()
        .map_err(|(path, message)| Error::Runtime { path, message })
}

/// How a model uses the CPU: `jobs` ONNX Runtime sessions (inferences that may run at once,
/// each on its own thread), each with `intra` intra-op threads, whose idle threads spin-wait
/// for work when `spinning`. Spinning lowers one inference's latency but burns the cores other
/// stages on the same machine need; `flashfit bench chain` measured one thread per session and
/// two sessions as the cheapest way to use two cores (README, Benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    pub intra: usize,
    pub jobs: usize,
    pub spinning: bool,
}

impl From<usize> for Threads {
    /// One session with `intra` threads, no spinning.
    fn from(intra: usize) -> Self {
        Threads {
            intra,
            jobs: 1,
            spinning: false,
        }
    }
}

/// The sessions of one model (`Threads::jobs` of them): a call takes a free one, or waits for
/// one in turn. Safe to share.
pub(crate) struct Pool {
    sessions: Vec<Mutex<Session>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Pool {
    /// `threads.jobs` sessions on `path`.
    pub(crate) fn load(dir: &ModelDir, path: &Path, threads: Threads) -> Result<Self> {
        fn err(e: impl std::fmt::Display) -> Error {
            Error::Inference(e.to_string())
        }
        let env = runtime(dir)?;
        let mut sessions = Vec::new();
        for _ in 0..threads.jobs.max(1) {
            let mut builder = Session::builder(&env)?
                .with_intra_threads(threads.intra.max(1))
                .map_err(err)?
                .with_intra_op_spinning(threads.spinning && threads.intra > 1)
                .map_err(err)?
                .with_inter_op_spinning(threads.spinning)
                .map_err(err)?;
            sessions.push(Mutex::new(builder.commit_from_file(path)?));
        }
        Ok(Pool {
            sessions,
            next: Default::default(),
        })
    }

    pub(crate) fn jobs(&self) -> usize {
        self.sessions.len()
    }

    /// Runs `f` on a free session (blocking until one is).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        for s in &self.sessions {
            if let Ok(mut g) = s.try_lock() {
                return f(&mut g);
            }
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.sessions.len();
        let mut g = self.sessions[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

/// Keeps freed memory in the process for the next photo. glibc's malloc gives a large freed
/// block back to the kernel at once (its thresholds adapt, and a freed block at the top of the
/// heap is trimmed), so every photo's buffers — a decoded 1024 px photo is 2.4 MB, CenterNet's
/// input 3 MB — were fresh pages the kernel faulted in and zeroed: about 800 page faults per
/// photo in the detect stage (`perf stat -e page-faults` during `flashfit bench chain`), about
/// 225 with these fixed thresholds. Blocks under 32 MiB come from the heap and up to 128 MiB of
/// free heap is kept. Call once, at process start; nothing on other C libraries.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets two of glibc's malloc parameters under malloc's own lock; it
    // touches no Rust-visible memory, and any value is valid for both.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// The process's inference helper threads (one per core), alive for the process: a batch's
/// other jobs run on a warm thread instead of one spawned per batch (whose stack ONNX Runtime's
/// kernels fault in page by page: glibc hands an exited thread's stack back to the kernel).
fn helpers() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores.max(2))
            .thread_name(|i| format!("flashfit-infer-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("cannot start the inference threads: {e}"))
    })
}

/// `f` over `items` on up to `jobs` threads (the calling one and `jobs - 1` of the process's
/// helper threads), results in order. Threads take the next item as they finish one, so uneven
/// items balance; the calling thread works too, so every item is done even when the helpers
/// are busy with another stage's batch.
pub fn par_map<T: Send, R: Send>(items: Vec<T>, jobs: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(slot) = slots.get(i) else {
                return done;
            };
            let item = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(item) = item {
                done.push((i, f(item)));
            }
        }
    };
    let done = Mutex::new(Vec::with_capacity(slots.len()));
    let share = || {
        let part = work();
        done.lock().unwrap_or_else(|p| p.into_inner()).extend(part);
    };
    helpers().in_place_scope(|s| {
        for _ in 1..jobs {
            s.spawn(|_| share());
        }
        share();
    });
    // A helper's panic was re-raised by the scope; here every job has returned.
    let mut all: Vec<(usize, R)> = done.into_inner().unwrap_or_else(|p| p.into_inner());
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// The most images an image model runs in one ONNX Runtime call; a larger batch is split.
/// EfficientNet-Lite0 on one thread: 8.3 ms per image at 2–4 images per call, 8.9 at 16 and
/// 10.0 at 32 (the activations outgrow the caches), and each session's memory arena grows to
/// its largest call (a burst of 64 crops took the classify stage from 230 MB to 1 GB and
/// faulted those pages in on the way).
pub const MAX_RUN_BATCH: usize = 4;

/// Input side of EfficientNet-Lite0.
pub const IMAGENET_SIDE: u32 = 224;

/// ImageNet preprocessing for EfficientNet-Lite0: resize the short side to 256 (bilinear,
/// without antialiasing, as OpenCV's `INTER_LINEAR` and TensorFlow's default resize, which the
/// model was trained with), centre-crop 224×224, scale to (x − 127) / 128, lay out as CHW.
pub fn preprocess_imagenet(img: &RgbImage) -> Vec<f32> {
    chw_normalised(&fit_square(img, Some(256), IMAGENET_SIDE))
}

/// A rectangle of an image in pixels: `(x, y, width, height)`, inside the image.
pub type Region = (u32, u32, u32, u32);

/// The whole of `img` as a [`Region`].
pub fn whole(img: &RgbImage) -> Region {
    (0, 0, img.width(), img.height())
}

/// Resizes the short side to `short` then centre-crops `side`×`side` (bilinear, no
/// antialiasing); without `short`, stretches to `side`×`side`.
pub fn fit_square(img: &RgbImage, short: Option<u32>, side: u32) -> RgbImage {
    fit_square_region(img, whole(img), short, side)
}

/// [`fit_square`] of the `region` of `img`, without copying the region out first and computing
/// only the output pixels the centre crop keeps (the same pixels as cropping, resizing and
/// cropping again).
pub fn fit_square_region(
    img: &RgbImage,
    region: Region,
    short: Option<u32>,
    side: u32,
) -> RgbImage {
    let side = side.max(1);
    let Some(short) = short else {
        return resize_window(img, region, side, side, (0, 0, side, side));
    };
    let (w, h) = (region.2, region.3);
    let scale = f64::from(short) / f64::from(w.min(h).max(1));
    let nw = ((f64::from(w) * scale).round() as u32).max(side);
    let nh = ((f64::from(h) * scale).round() as u32).max(side);
    let (x0, y0) = ((nw - side) / 2, (nh - side) / 2);
    resize_window(img, region, nw, nh, (x0, y0, side, side))
}

/// Bilinear resize (no antialiasing, pixel centres aligned as OpenCV's `INTER_LINEAR`).
pub fn resize_bilinear(img: &RgbImage, nw: u32, nh: u32) -> RgbImage {
    resize_window(img, whole(img), nw, nh, (0, 0, nw, nh))
}

/// The `window` (in output pixels) of `img`'s `region` resized to `nw`×`nh` by
/// [`resize_bilinear`]: each output pixel is computed alone, so a window is exactly those
/// pixels of the whole resize.
pub fn resize_window(img: &RgbImage, region: Region, nw: u32, nh: u32, window: Region) -> RgbImage {
    let (rx, ry, w, h) = region;
    let (w, h) = (w.max(1), h.max(1));
    let (ox, oy, ow, oh) = window;
    if ow == 0 || oh == 0 {
        return RgbImage::new(ow, oh);
    }
    let src = img.as_raw();
    // Per output column / row: the two source columns (as byte offsets) / rows and the weight.
    let axis = |from: u32, count: u32, out: u32, inp: u32, offset: u32, bytes: usize| {
        let scale = f64::from(inp) / f64::from(out.max(1));
        (from..from + count)
            .map(|o| {
                let f = ((f64::from(o) + 0.5) * scale - 0.5).max(0.0);
                let i0 = (f.floor() as u32).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (
                    (offset + i0) as usize * bytes,
                    (offset + i1) as usize * bytes,
                    (f - f64::from(i0)).clamp(0.0, 1.0) as f32,
                )
            })
            .collect::<Vec<(usize, usize, f32)>>()
    };
    let xs = axis(ox, ow, nw, w, rx, 3);
    let ys = axis(oy, oh, nh, h, ry, 1);
    let stride = img.width() as usize * 3;
    let row_len = ow as usize * 3;
    // One source row interpolated across: each value is exactly the old loop's `top` (or
    // `bottom`). Output rows share source rows (a 768 -> 512 resize reads 768 rows, not 1024),
    // so the last two are kept.
    let across = |y: usize, dst: &mut [f32]| {
        let r = &src[y * stride..][..stride];
        for (d, &(x0, x1, fx)) in dst.chunks_exact_mut(3).zip(&xs) {
            let (a0, a1) = (&r[x0..x0 + 3], &r[x1..x1 + 3]);
            for c in 0..3 {
                let p0 = f32::from(a0[c]);
                d[c] = p0 + (f32::from(a1[c]) - p0) * fx;
            }
        }
    };
    let mut cached: [(usize, Vec<f32>); 2] = [
        (usize::MAX, vec![0.0; row_len]),
        (usize::MAX, vec![0.0; row_len]),
    ];
    let mut out = vec![0u8; row_len * oh as usize];
    for (row, &(y0, y1, fy)) in out.chunks_exact_mut(row_len).zip(&ys) {
        let slot = |cached: &[(usize, Vec<f32>); 2], y: usize| cached.iter().position(|c| c.0 == y);
        let s0 = match slot(&cached, y0) {
            Some(i) => i,
            None => {
                // Not the slot holding y1, if it is there.
                let i = usize::from(cached[0].0 == y1);
                across(y0, &mut cached[i].1);
                cached[i].0 = y0;
                i
            }
        };
        let s1 = match slot(&cached, y1) {
            Some(i) => i,
            None => {
                let i = 1 - s0;
                across(y1, &mut cached[i].1);
                cached[i].0 = y1;
                i
            }
        };
        let (top, bottom) = (&cached[s0].1, &cached[s1].1);
        for ((px, &t), &b) in row.iter_mut().zip(top).zip(bottom) {
            *px = round_u8(t + (b - t) * fy);
        }
    }
    RgbImage::from_raw(ow, oh, out).unwrap_or_else(|| RgbImage::new(ow, oh))
}

/// `v.round().clamp(0.0, 255.0) as u8`, without the libm call `round` compiles to on
/// x86-64's baseline (no SSE4.1): the fractional part of a value in [0, 255] is exact.
#[inline]
fn round_u8(v: f32) -> u8 {
    // v + 0.5 is exact or rounds onto the integer it reaches (0.5 is a multiple of the
    // spacing of floats below 2^23, and crossing a power of two only happens at an integer),
    // so truncating it rounds half away from zero, as `round` does: a conversion that
    // vectorises (tested against the `round` loop on every rounding case).
    (v.clamp(0.0, 255.0) + 0.5) as i32 as u8
}

/// A 224×224 RGB image as EfficientNet-Lite0's CHW tensor data, (x − 127) / 128.
pub fn chw_normalised(img: &RgbImage) -> Vec<f32> {
    to_chw(img, [127.0; 3], [128.0; 3])
}

/// Probabilities from logits (numerically stable).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// What EfficientNet-Lite0 says about one image.
#[derive(Debug, Clone)]
pub struct ImageNetOutput {
    /// 1000 ImageNet logits.
    pub logits: Vec<f32>,
    /// The 1280-d global-average-pooled features (not normalised).
    pub embedding: Vec<f32>,
}

impl ImageNetOutput {
    /// The `k` most likely classes as (index, softmax probability).
    pub fn top_k(&self, k: usize) -> Vec<(usize, f32)> {
        let p = softmax(&self.logits);
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
        idx.into_iter().take(k).map(|i| (i, p[i])).collect()
    }
}

/// An image classifier from the manifest (`[model.classifier]`): by default EfficientNet-Lite0
/// (manifest `efficientnet-lite0`, version 1: ImageNet classifier and image embedder). Safe to
/// share; calls are serialised on one session.
pub struct ImageNetModel {
    name: String,
    version: String,
    spec: manifest::ClassifierSpec,
    pool: Pool,
    labels: Vec<String>,
}

impl std::fmt::Debug for ImageNetModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageNetModel({}/{})", self.name, self.version)
    }
}

impl ImageNetModel {
    /// The default model's manifest name and version.
    pub const NAME: &'static str = "efficientnet-lite0";
    pub const VERSION: &'static str = "1";

    /// Loads EfficientNet-Lite0 with `threads` intra-op threads.
    pub fn load(dir: &ModelDir, threads: impl Into<Threads>) -> Result<Self> {
        Self::load_named(dir, Self::NAME, threads)
    }

    /// Loads the manifest's classifier `name` (it needs a `[model.classifier]` table).
    pub fn load_named(dir: &ModelDir, name: &str, threads: impl Into<Threads>) -> Result<Self> {
        let manifest = manifest::Manifest::load(dir)?;
        let entry = manifest.get(name)?;
        let spec = entry.classifier.clone().ok_or_else(|| {
            Error::BadInput(format!(
                "model {name} has no [model.classifier] table in the manifest"
            ))
        })?;
        let path = dir.file(&format!("{}/{}/model.onnx", entry.name, entry.version))?;
        let labels = entry.load_labels(dir)?;
        let pool = Pool::load(dir, &path, threads.into())?;
        Ok(ImageNetModel {
            name: entry.name.clone(),
            version: entry.version.clone(),
            spec,
            pool,
            labels,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// True when the model has an embedding output (trained heads and image vectors need it).
    pub fn has_embedding(&self) -> bool {
        self.spec.embedding.is_some()
    }

    /// The model's labels, index = class (one per line of its labels file).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn label(&self, index: usize) -> &str {
        self.labels.get(index).map(String::as_str).unwrap_or("?")
    }

    /// The model input for one image, as the manifest describes it (for EfficientNet-Lite0
    /// this is [`preprocess_imagenet`]).
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        self.spec.input.prepare(img)
    }

    /// [`ImageNetModel::preprocess`] of the `region` of `img` (a garment's box).
    pub fn preprocess_region(&self, img: &RgbImage, region: Region) -> Vec<f32> {
        self.spec.input.prepare_region(img, region)
    }

    /// The side the preprocessing resizes a region's short side to.
    pub fn source_side(&self) -> u32 {
        self.spec.input.source_side()
    }

    /// Runs a batch of preprocessed images (each `3·side·side` floats from
    /// [`ImageNetModel::preprocess`]). Blocking: call it off the async reactor.
    pub fn infer(&self, batch: &[Vec<f32>]) -> Result<Vec<ImageNetOutput>> {
        let side = self.spec.input.side as usize;
        let per = 3 * side * side;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = batch.iter().find(|v| v.len() != per) {
            return Err(Error::BadInput(format!(
                "expected {per} floats per image, got {}",
                bad.len()
            )));
        }
        // Sub-batches of at most MAX_RUN_BATCH images, spread over the sessions.
        let chunk = batch
            .len()
            .div_ceil(self.pool.jobs())
            .clamp(1, MAX_RUN_BATCH);
        let chunks: Vec<&[Vec<f32>]> = batch.chunks(chunk).collect();
        let mut out = Vec::with_capacity(batch.len());
        for part in par_map(chunks, self.pool.jobs(), |c| self.infer_on_one(c)) {
            out.extend(part?);
        }
        Ok(out)
    }

    fn infer_on_one(&self, batch: &[Vec<f32>]) -> Result<Vec<ImageNetOutput>> {
        let side = self.spec.input.side as usize;
        let per = 3 * side * side;
        let mut data = Vec::with_capacity(per * batch.len());
        for v in batch {
            data.extend_from_slice(v);
        }
        let view = ndarray::ArrayView4::from_shape((batch.len(), 3, side, side), &data)
            .map_err(|e| Error::BadInput(e.to_string()))?;
        let (logits, embeddings) = self.pool.with(|session| -> Result<_> {
            let outputs = session.run(ort::inputs![
                self.spec.input.input_name.as_str() => TensorRef::from_array_view(view)?
            ])?;
            let rows = |name: &str| -> Result<Vec<Vec<f32>>> {
                let a = outputs[name].try_extract_array::<f32>()?;
                Ok((0..batch.len())
                    .map(|i| a.index_axis(ndarray::Axis(0), i).iter().copied().collect())
                    .collect())
            };
            let logits = rows(&self.spec.logits)?;
            let embeddings = match &self.spec.embedding {
                Some(e) => rows(e)?,
                None => vec![Vec::new(); batch.len()],
            };
            Ok((logits, embeddings))
        })?;
        Ok(logits
            .into_iter()
            .zip(embeddings)
            .map(|(logits, embedding)| ImageNetOutput { logits, embedding })
            .collect())
    }
}

/// An RGB image as CHW floats, `(x - mean) / std` per channel.
pub fn to_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (f32::from(p.0[c]) - mean[c]) / std[c];
        }
    }
    out
}

#[cfg(test)]
mod tests;

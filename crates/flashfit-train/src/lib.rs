//! `flashfit train head`: the seed's frozen-backbone fine-tuning. Embeds a labelled image set
//! with EfficientNet-Lite0, trains a linear taxonomy head, reports held-out accuracy, and
//! writes the head as a versioned JSON artefact.

use std::path::{Path, PathBuf};
use std::time::Instant;

use flashfit_models::fashion_mnist;
use flashfit_models::head::{LinearHead, TrainConfig};
use flashfit_models::{ImageNetModel, ModelDir, preprocess_imagenet};

use flashfit_pipeline::{Error, Result};

/// Where the labelled examples come from.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// Debian's Fashion-MNIST: train on `train` (first `limit`), evaluate on the official
    /// `t10k` test split.
    FashionMnist { dir: PathBuf, limit: usize },
    /// A folder of class folders named after taxonomy categories; every fifth image (by sorted
    /// name) is held out for evaluation.
    Folders(PathBuf),
    /// A CSV manifest with a header row naming `path` and `label` columns (and optionally
    /// `split`: `train` or `test`; without it every fifth row of a label is held out). Paths
    /// are relative to the CSV's folder; labels are taxonomy categories.
    Csv(PathBuf),
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
pub fn train_head(
    models: &ModelDir,
    data: &Dataset,
    threads: usize,
    cfg: &TrainConfig,
) -> Result<TrainReport> {
    let started = Instant::now();
    let model = ImageNetModel::load(models, threads).map_err(models_err)?;
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
        Dataset::Folders(dir) => embed_examples(&model, folder_examples(dir)?)?,
        Dataset::Csv(path) => embed_examples(&model, csv_examples(path)?)?,
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

/// One labelled image: path, class, held out for evaluation.
type Labelled = (PathBuf, String, bool);

fn folder_examples(dir: &Path) -> Result<Vec<Labelled>> {
    let mut classes: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let mut out = Vec::new();
    for c in &classes {
        let files = flashfit_pipeline::ingest::list_images(&dir.join(c))?;
        for (i, f) in files.into_iter().enumerate() {
            out.push((f, c.clone(), i % 5 == 4));
        }
    }
    Ok(out)
}

/// Parses a CSV manifest (see [`Dataset::Csv`]) with the `csv` crate: RFC 4180 quoting,
/// a header row naming `path` and `label` (any case, any order) and optionally `split`.
pub fn csv_examples(path: &Path) -> Result<Vec<Labelled>> {
    let bad = |what: String| Error::Invalid(format!("{}: {what}", path.display()));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .map_err(|e| bad(e.to_string()))?;
    let header = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(pi), Some(li)) = (col("path"), col("label")) else {
        return Err(bad("the header must name `path` and `label` columns".into()));
    };
    let si = col("split");
    let base = path.parent().unwrap_or(Path::new("."));
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| bad(e.to_string()))?;
        let line = row.position().map_or(0, csv::Position::line);
        if row.iter().all(str::is_empty) {
            continue;
        }
        let (Some(p), Some(label)) = (row.get(pi), row.get(li)) else {
            return Err(bad(format!("row {line} is short")));
        };
        let held_out = match si.and_then(|i| row.get(i)).map(str::to_ascii_lowercase) {
            Some(s) if s == "test" => true,
            Some(s) if s == "train" => false,
            Some(s) if !s.is_empty() => {
                return Err(bad(format!("row {line}: split `{s}` is not train or test")));
            }
            _ => {
                let k = seen.entry(label.to_owned()).or_default();
                *k += 1;
                k.is_multiple_of(5)
            }
        };
        out.push((base.join(p), label.to_owned(), held_out));
    }
    Ok(out)
}

fn embed_examples(model: &ImageNetModel, examples: Vec<Labelled>) -> Result<Examples> {
    let mut classes: Vec<String> = examples.iter().map(|e| e.1.clone()).collect();
    classes.sort();
    classes.dedup();
    for c in &classes {
        if flashfit_schema::taxonomy::index(c).is_none()
            && c != flashfit_schema::taxonomy::NOT_CLOTHING
        {
            return Err(Error::Invalid(format!(
                "label `{c}` is neither a taxonomy category nor `not_clothing`"
            )));
        }
    }
    if classes.len() < 2 {
        return Err(Error::Invalid("need at least two classes".into()));
    }
    let (mut xtr, mut ytr, mut xte, mut yte) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (path, class, held_out) in &examples {
        let ci = classes.iter().position(|c| c == class).unwrap_or_default();
        let img = image_rgb(path)?;
        let emb = model
            .infer(&[preprocess_imagenet(&img)])
            .map_err(models_err)?
            .remove(0)
            .embedding;
        if *held_out {
            xte.push(emb);
            yte.push(ci);
        } else {
            xtr.push(emb);
            ytr.push(ci);
        }
    }
    if xte.is_empty() || xtr.is_empty() {
        return Err(Error::Invalid(
            "need both training and held-out images".into(),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_manifests_parse_with_and_without_a_split_column() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("m.csv");
        std::fs::write(
            &p,
            "label,path,split\njeans,\"a,b.jpg\",test\ntie,t.jpg,train\n",
        )
        .expect("write");
        let e = csv_examples(&p).expect("parse");
        assert_eq!(e[0], (dir.path().join("a,b.jpg"), "jeans".into(), true));
        assert_eq!(e[1], (dir.path().join("t.jpg"), "tie".into(), false));
        std::fs::write(
            &p,
            "path,label\n1.jpg,tie\n2.jpg,tie\n3.jpg,tie\n4.jpg,tie\n5.jpg,tie\n",
        )
        .expect("write");
        let held: Vec<bool> = csv_examples(&p)
            .expect("parse")
            .iter()
            .map(|e| e.2)
            .collect();
        assert_eq!(held, vec![false, false, false, false, true]);
        std::fs::write(&p, "file,label\n1.jpg,tie\n").expect("write");
        assert!(csv_examples(&p).is_err());
        std::fs::write(&p, "path,label,split\n1.jpg,tie,validate\n").expect("write");
        assert!(csv_examples(&p).is_err());
        // RFC 4180 as spreadsheets write it: CRLF, doubled quotes, a quoted line break,
        // blank lines; a short row is an error naming its line.
        std::fs::write(
            &p,
            "Path,Label\r\n\"say \"\"hi\"\".jpg\",tie\r\n\r\n\"two\nlines.jpg\",jeans\r\n",
        )
        .expect("write");
        let e = csv_examples(&p).expect("parse");
        assert_eq!(e[0].0, dir.path().join("say \"hi\".jpg"));
        assert_eq!(
            (e[1].0.clone(), e[1].1.as_str()),
            (dir.path().join("two\nlines.jpg"), "jeans")
        );
        std::fs::write(&p, "path,label\n1.jpg,tie\n2.jpg\n").expect("write");
        let err = csv_examples(&p).expect_err("short row").to_string();
        assert!(err.contains("row 3 is short"), "{err}");
    }

    /// `train head` from a CSV manifest on real images (needs `bash models/fetch.sh`): each
    /// fixture garment once in train and once in test, so the held-out score must be perfect.
    #[test]
    fn a_head_trains_from_a_csv_manifest() {
        let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos");
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("m.csv");
        let mut csv = String::from("path,label,split\n");
        for (f, label) in [
            ("fmnist_tshirt.png", "t_shirt"),
            ("fmnist_bag.png", "bag"),
            ("fmnist_sneaker.png", "sneakers"),
            ("fmnist_ankle_boot.png", "boots"),
        ] {
            let abs = photos.join(f).canonicalize().expect("photo");
            for split in ["train", "test"] {
                csv.push_str(&format!("{},{label},{split}\n", abs.display()));
            }
        }
        std::fs::write(&p, csv).expect("write");
        let r = train_head(
            &ModelDir::from_env(),
            &Dataset::Csv(p),
            1,
            &TrainConfig::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.train_examples, r.test_examples), (4, 4));
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(r.head.classes, vec!["bag", "boots", "sneakers", "t_shirt"]);
    }
}

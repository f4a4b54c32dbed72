//! Fashion-MNIST (Debian `dataset-fashion-mnist`, IDX format) as a labelled set for training and
//! evaluating taxonomy heads. Its ten classes map onto taxonomy categories.

use std::io::Read;
use std::path::Path;

use image::RgbImage;

use crate::{Error, ImageNetModel, Result, preprocess_imagenet, resize_bilinear};

/// Where Debian installs the data set.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST class index → taxonomy category.
pub const CLASSES: [&str; 10] = [
    "t_shirt",      // T-shirt/top
    "dress_pants",  // Trouser
    "sweater",      // Pullover
    "casual_dress", // Dress
    "coat",         // Coat
    "sandals",      // Sandal
    "dress_shirt",  // Shirt
    "sneakers",     // Sneaker
    "bag",          // Bag
    "boots",        // Ankle boot
];

/// One split: 28×28 grey images and labels.
#[derive(Debug)]
pub struct Split {
    pub images: Vec<Vec<u8>>,
    pub labels: Vec<usize>,
}

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| Error::ModelMissing {
        path: format!(
            "{} ({e}; install Debian package dataset-fashion-mnist)",
            path.display()
        ),
    })?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))?;
    Ok(out)
}

/// Loads `train` or `t10k`, at most `limit` examples.
pub fn load(dir: &Path, split: &str, limit: usize) -> Result<Split> {
    let imgs = read_gz(&dir.join(format!("{split}-images-idx3-ubyte.gz")))?;
    let labs = read_gz(&dir.join(format!("{split}-labels-idx1-ubyte.gz")))?;
    let be = |b: &[u8], at: usize| -> usize {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
            .unwrap_or(0)
    };
    if be(&imgs, 0) != 2051 || be(&labs, 0) != 2049 {
        return Err(Error::BadInput("not IDX image/label files".into()));
    }
    let (n, rows, cols) = (be(&imgs, 4), be(&imgs, 8), be(&imgs, 12));
    let n = n.min(be(&labs, 4)).min(limit);
    let px = rows * cols;
    if imgs.len() < 16 + n * px || labs.len() < 8 + n || px != 28 * 28 {
        return Err(Error::BadInput("truncated IDX files".into()));
    }
    Ok(Split {
        images: (0..n)
            .map(|i| imgs[16 + i * px..16 + (i + 1) * px].to_vec())
            .collect(),
        labels: labs[8..8 + n].iter().map(|&l| usize::from(l)).collect(),
    })
}

/// A Fashion-MNIST thumbnail as a photo: inverted (garment dark on light, like a product
/// shot), grey replicated to RGB, upscaled to 224 px.
pub fn to_photo(gray28: &[u8]) -> RgbImage {
    let rgb: Vec<u8> = gray28.iter().flat_map(|&g| [255 - g; 3]).collect();
    let img = RgbImage::from_raw(28, 28, rgb).unwrap_or_else(|| RgbImage::new(28, 28));
    resize_bilinear(&img, 224, 224)
}

/// The model input for a thumbnail: the photo through the same preprocessing the classify
/// stage applies at serving time, so a head never sees a train/serve skew.
pub fn to_input(gray28: &[u8]) -> Vec<f32> {
    preprocess_imagenet(&to_photo(gray28))
}

/// Embeddings of a split, in batches of `batch`.
pub fn embed(model: &ImageNetModel, split: &Split, batch: usize) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(split.images.len());
    for chunk in split.images.chunks(batch.max(1)) {
        let inputs: Vec<Vec<f32>> = chunk.iter().map(|g| to_input(g)).collect();
        out.extend(model.infer(&inputs)?.into_iter().map(|o| o.embedding));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{LinearHead, TrainConfig};

    /// A small real run: a head trained on 600 Fashion-MNIST training images scores well above
    /// chance (10%) on 300 test images. The full-size figure comes from `flashfit eval`.
    #[test]
    fn a_head_on_embeddings_learns_fashion_mnist() {
        let dir = Path::new(DEBIAN_DIR);
        let train = load(dir, "train", 600).expect("train split (dataset-fashion-mnist)");
        let test = load(dir, "t10k", 300).expect("test split");
        assert_eq!(train.images.len(), 600);
        let model = ImageNetModel::load(&crate::ModelDir::from_env(), 2).expect("model");
        let xtr = embed(&model, &train, 32).expect("embed");
        let xte = embed(&model, &test, 32).expect("embed");
        let classes = CLASSES.iter().map(|c| (*c).to_owned()).collect();
        let head = LinearHead::train(
            "fmnist",
            "efficientnet-lite0/1",
            classes,
            &xtr,
            &train.labels,
            &TrainConfig::default(),
        )
        .expect("train");
        let acc = head.accuracy(&xte, &test.labels).expect("acc");
        assert!(acc > 0.7, "accuracy {acc}");
    }
}

//! From model outputs to the 47-category taxonomy: either the ImageNet label map
//! (`models/imagenet-taxonomy.toml`) over EfficientNet-Lite0's ImageNet probabilities, or a
//! trained [`LinearHead`](crate::head::LinearHead) whose classes are taxonomy names.

use std::collections::BTreeMap;

use flashfit_schema::taxonomy::{self, CATEGORIES};
use serde::{Deserialize, Serialize};

use crate::{Error, ImageNetOutput, Result};

/// The shipped ImageNet → taxonomy map.
pub const DEFAULT_IMAGENET_MAP: &str = include_str!("../../../models/imagenet-taxonomy.toml");

/// Which taxonomy category each ImageNet class index stands for.
#[derive(Debug, Clone)]
pub struct ImageNetMap {
    to_category: BTreeMap<usize, usize>,
}

#[derive(Deserialize)]
struct MapFile {
    map: BTreeMap<String, String>,
}

impl ImageNetMap {
    /// Parses a map keyed by exact ImageNet label lines; every label and category must exist.
    pub fn parse(toml_text: &str, labels: &[String]) -> Result<Self> {
        let file: MapFile =
            toml::from_str(toml_text).map_err(|e| Error::BadInput(format!("imagenet map: {e}")))?;
        let mut to_category = BTreeMap::new();
        for (label, category) in file.map {
            let li = labels.iter().position(|l| *l == label).ok_or_else(|| {
                Error::BadInput(format!("imagenet map: no ImageNet label `{label}`"))
            })?;
            let ci = taxonomy::index(&category).ok_or_else(|| {
                Error::BadInput(format!(
                    "imagenet map: `{category}` is not a taxonomy category"
                ))
            })?;
            to_category.insert(li, ci);
        }
        Ok(ImageNetMap { to_category })
    }

    pub fn len(&self) -> usize {
        self.to_category.len()
    }

    pub fn is_empty(&self) -> bool {
        self.to_category.is_empty()
    }

    /// Taxonomy probabilities from ImageNet logits: each category gets the softmax mass of
    /// its ImageNet classes; `is_clothing` is the total mapped mass.
    pub fn classify(&self, out: &ImageNetOutput, k: usize) -> Classification {
        let p = crate::softmax(&out.logits);
        let mut mass = vec![0f32; CATEGORIES.len()];
        for (&li, &ci) in &self.to_category {
            if let Some(e) = p.get(li) {
                mass[ci] += e;
            }
        }
        let is_clothing: f32 = mass.iter().sum();
        let mut c = Classification::from_scores(&mass, is_clothing, k);
        c.imagenet_mass = Some(c.is_clothing);
        c
    }
}

/// The classify stage's answer for one garment (the `classification` object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub category: String,
    /// Probability of `category` among clothing categories.
    pub confidence: f32,
    /// Best `k` categories with their probabilities.
    pub topk: Vec<(String, f32)>,
    /// The raw clothing evidence of the model: the probability mass on clothing classes (the
    /// classify stage calibrates `is_clothing` from it and the detections).
    pub is_clothing: f32,
    /// The ImageNet label map's clothing mass, when the model has ImageNet classes (a second
    /// opinion beside a head's `not_clothing`).
    pub imagenet_mass: Option<f32>,
    /// Probability of each group among clothing categories (taxonomy group order).
    pub groups: [f32; 6],
    /// The unnormalised score of every category (taxonomy order) it was made from.
    #[serde(skip)]
    pub scores: Vec<f32>,
}

impl Classification {
    /// The most probable group and its probability.
    pub fn best_group(&self) -> (&'static str, f32) {
        let (i, p) = self
            .groups
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or((0, 0.0), |(i, p)| (i, *p));
        (taxonomy::GROUPS[i], p)
    }
}

impl Classification {
    /// From unnormalised per-category scores (index = taxonomy order).
    pub fn from_scores(scores: &[f32], is_clothing: f32, k: usize) -> Self {
        let total: f32 = scores.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
        let topk: Vec<(String, f32)> = idx
            .iter()
            .take(k.max(1))
            .map(|&i| (CATEGORIES[i].1.to_owned(), scores[i] / total))
            .collect();
        let (category, confidence) = topk[0].clone();
        let mut groups = [0f32; 6];
        for (i, s) in scores.iter().enumerate() {
            if let Some(g) = taxonomy::GROUPS.iter().position(|g| *g == CATEGORIES[i].0) {
                groups[g] += s / total;
            }
        }
        Classification {
            category,
            confidence,
            topk,
            is_clothing: is_clothing.clamp(0.0, 1.0),
            imagenet_mass: None,
            groups,
            scores: scores.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        let dir = crate::ModelDir::from_env();
        std::fs::read_to_string(dir.path().join("labels/imagenet.txt"))
            .unwrap_or_else(|e| panic!("labels (run models/fetch.sh): {e}"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_shipped_map_resolves_every_label_and_category() {
        let m = ImageNetMap::parse(DEFAULT_IMAGENET_MAP, &labels()).expect("map");
        assert!(m.len() >= 40);
        let bad = ImageNetMap::parse(
            "[map]\n\"jersey, T-shirt, tee shirt\" = \"cape\"",
            &labels(),
        );
        assert!(bad.expect_err("bad category").to_string().contains("cape"));
        let bad = ImageNetMap::parse("[map]\n\"not a label\" = \"hat\"", &labels());
        assert!(
            bad.expect_err("bad label")
                .to_string()
                .contains("not a label")
        );
    }

    #[test]
    fn mass_of_mapped_classes_becomes_categories() {
        let labels = labels();
        let m = ImageNetMap::parse(DEFAULT_IMAGENET_MAP, &labels).expect("map");
        let at = |l: &str| labels.iter().position(|x| x == l).expect(l);
        let mut logits = vec![0f32; 1000];
        logits[at("jersey, T-shirt, tee shirt")] = 10.0;
        logits[at("sweatshirt")] = 9.0;
        let c = m.classify(
            &ImageNetOutput {
                logits,
                embedding: vec![],
            },
            3,
        );
        assert_eq!(c.category, "t_shirt");
        assert_eq!(c.topk[1].0, "sweatshirt");
        assert_eq!(c.best_group().0, "tops");
        assert!((c.groups.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{c:?}");
        assert!(c.is_clothing > 0.9, "{c:?}");
        // A cat is not clothing.
        let mut logits = vec![0f32; 1000];
        logits[at("tabby, tabby cat")] = 12.0;
        let c = m.classify(
            &ImageNetOutput {
                logits,
                embedding: vec![],
            },
            3,
        );
        assert!(c.is_clothing < 0.01, "{c:?}");
    }
}

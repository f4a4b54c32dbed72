//! Linear heads on frozen embeddings (the seed's "frozen backbone + heads" fine-tuning):
//! standardise the embedding, one softmax layer, trained with mini-batch SGD. A head is a
//! versioned JSON artefact that names its classes.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A trained linear classifier over embeddings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearHead {
    pub name: String,
    pub version: String,
    /// Which embedding it was trained on (model name/version), so it is never applied to
    /// another backbone's vectors.
    pub backbone: String,
    pub classes: Vec<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// `classes.len()` rows of `dim` weights.
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f32,
    pub l2: f32,
    /// Seed for the shuffle, so runs are reproducible.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch: 128,
            learning_rate: 0.05,
            l2: 1e-4,
            seed: 7,
        }
    }
}

impl LinearHead {
    /// Trains on `(embedding, class index)` pairs.
    pub fn train(
        name: &str,
        backbone: &str,
        classes: Vec<String>,
        x: &[Vec<f32>],
        y: &[usize],
        cfg: &TrainConfig,
    ) -> Result<Self> {
        let k = classes.len();
        if x.is_empty() || x.len() != y.len() || k < 2 {
            return Err(Error::BadInput(
                "need at least one example and two classes".into(),
            ));
        }
        let dim = x[0].len();
        if x.iter().any(|v| v.len() != dim) || y.iter().any(|&c| c >= k) {
            return Err(Error::BadInput(
                "ragged embeddings or label out of range".into(),
            ));
        }
        let n = x.len() as f32;
        let mut mean = vec![0f32; dim];
        for v in x {
            for (m, a) in mean.iter_mut().zip(v) {
                *m += a / n;
            }
        }
        let mut std = vec![0f32; dim];
        for v in x {
            for ((s, a), m) in std.iter_mut().zip(v).zip(&mean) {
                *s += (a - m) * (a - m) / n;
            }
        }
        for s in &mut std {
            *s = s.sqrt() + 1e-6;
        }
        let xs: Vec<Vec<f32>> = x
            .iter()
            .map(|v| {
                v.iter()
                    .zip(&mean)
                    .zip(&std)
                    .map(|((a, m), s)| (a - m) / s)
                    .collect()
            })
            .collect();
        let mut head = LinearHead {
            name: name.to_owned(),
            version: String::new(),
            backbone: backbone.to_owned(),
            classes,
            mean,
            std,
            weights: vec![vec![0f32; dim]; k],
            bias: vec![0f32; k],
        };
        let mut order: Vec<usize> = (0..xs.len()).collect();
        let mut rng = cfg.seed.max(1);
        let mut probs = vec![0f32; k];
        for epoch in 0..cfg.epochs {
            // Fisher-Yates with xorshift: deterministic for a seed.
            for i in (1..order.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let lr = cfg.learning_rate / (1.0 + epoch as f32 * 0.1);
            for chunk in order.chunks(cfg.batch.max(1)) {
                let mut gw = vec![vec![0f32; dim]; k];
                let mut gb = vec![0f32; k];
                for &i in chunk {
                    head.logits_into(&xs[i], &mut probs);
                    softmax(&mut probs);
                    probs[y[i]] -= 1.0;
                    for c in 0..k {
                        let g = probs[c];
                        gb[c] += g;
                        for (w, a) in gw[c].iter_mut().zip(&xs[i]) {
                            *w += g * a;
                        }
                    }
                }
                let scale = lr / chunk.len() as f32;
                for c in 0..k {
                    for (w, g) in head.weights[c].iter_mut().zip(&gw[c]) {
                        *w -= scale * g + lr * cfg.l2 * *w;
                    }
                    head.bias[c] -= scale * gb[c];
                }
            }
        }
        Ok(head)
    }

    fn logits_into(&self, standardised: &[f32], out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.bias[c]
                + self.weights[c]
                    .iter()
                    .zip(standardised)
                    .map(|(w, a)| w * a)
                    .sum::<f32>();
        }
    }

    /// Class probabilities for one raw (unstandardised) embedding.
    pub fn predict(&self, embedding: &[f32]) -> Result<Vec<f32>> {
        if embedding.len() != self.mean.len() {
            return Err(Error::BadInput(format!(
                "head expects {}-d embeddings, got {}",
                self.mean.len(),
                embedding.len()
            )));
        }
        let xs: Vec<f32> = embedding
            .iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((a, m), s)| (a - m) / s)
            .collect();
        let mut p = vec![0f32; self.classes.len()];
        self.logits_into(&xs, &mut p);
        softmax(&mut p);
        Ok(p)
    }

    /// Fraction of `(embedding, class)` pairs predicted right.
    pub fn accuracy(&self, x: &[Vec<f32>], y: &[usize]) -> Result<f64> {
        let mut right = 0usize;
        for (v, &c) in x.iter().zip(y) {
            let p = self.predict(v)?;
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i);
            right += usize::from(best == Some(c));
        }
        Ok(right as f64 / x.len().max(1) as f64)
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string(self).map_err(|e| Error::BadInput(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|_| Error::ModelMissing {
            path: path.display().to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))
    }
}

fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian blobs in 8-d are separated, and the artefact round-trips through JSON.
    #[test]
    fn learns_a_separable_problem_and_round_trips() {
        let mut rng = 12345u64;
        let mut noise = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 1000) as f32 / 1000.0 - 0.5
        };
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..400 {
            let c = i % 2;
            let centre = if c == 0 { -1.0 } else { 1.0 };
            x.push(
                (0..8)
                    .map(|d| {
                        if d < 2 {
                            centre + noise()
                        } else {
                            noise() * 3.0
                        }
                    })
                    .collect(),
            );
            y.push(c);
        }
        let head = LinearHead::train(
            "t",
            "b",
            vec!["a".into(), "b".into()],
            &x,
            &y,
            &TrainConfig::default(),
        )
        .expect("train");
        assert!(head.accuracy(&x, &y).expect("acc") > 0.98);
        let dir = std::env::temp_dir().join(format!("head-{}.json", std::process::id()));
        head.save(&dir).expect("save");
        let back = LinearHead::load(&dir).expect("load");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(
            back.predict(&x[0]).expect("p"),
            head.predict(&x[0]).expect("p")
        );
        assert!(head.predict(&[0.0; 3]).is_err());
        assert!(
            LinearHead::train("t", "b", vec!["a".into()], &x, &y, &TrainConfig::default()).is_err()
        );
    }
}

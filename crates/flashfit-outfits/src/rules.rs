//! The seed's rule-based compatibility scorer, with its tables from config (`[outfits]`):
//! colour harmony (neutrals, complementary accents), formality match (1 − 5 × variance of the
//! garments' formality), category combinations (the best listed pair, else a base score),
//! combined with configurable weights (0.35 / 0.35 / 0.3).

use std::collections::HashMap;

use flashfit_config::{OutfitsConfig, ScoreWeights};

use crate::{Breakdown, Item, Prepared, Scorer};

/// The seed's `RuleBasedScorer`.
#[derive(Debug, Clone)]
pub struct RuleScorer {
    weights: ScoreWeights,
    neutrals: Vec<String>,
    /// colour → colours that complement it.
    complementary: HashMap<String, Vec<String>>,
    /// (category, category) in either order → score.
    combos: HashMap<(String, String), f64>,
    combo_base: f64,
}

impl RuleScorer {
    pub fn new(cfg: &OutfitsConfig) -> Self {
        Self::with_weights(cfg, cfg.weights)
    }

    /// The same tables with other weights (an A/B variant's).
    pub fn with_weights(cfg: &OutfitsConfig, weights: ScoreWeights) -> Self {
        let mut combos = HashMap::new();
        for (a, b, s) in &cfg.combos.pairs {
            combos.insert((a.clone(), b.clone()), *s);
            combos.insert((b.clone(), a.clone()), *s);
        }
        RuleScorer {
            weights,
            neutrals: cfg.colors.neutrals.clone(),
            complementary: cfg
                .colors
                .complementary
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            combos,
            combo_base: cfg.combos.base,
        }
    }
}

/// A wardrobe interned for scoring: colours and categories as small integers, pair tables as
/// matrices.
struct PreparedRules {
    weights: ScoreWeights,
    /// Per item: colour id (`None`: no colour), neutral flag, category id, formality.
    color: Vec<Option<usize>>,
    neutral: Vec<bool>,
    category: Vec<usize>,
    formality: Vec<f64>,
    /// complements[a * n_colours + b]: b complements a.
    complements: Vec<bool>,
    n_colours: usize,
    /// combo[a * n_categories + b]: the listed score of the pair, if any.
    combo: Vec<Option<f64>>,
    n_categories: usize,
    combo_base: f64,
}

fn intern(names: &mut Vec<String>, name: &str) -> usize {
    match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_owned());
            names.len() - 1
        }
    }
}

impl Scorer for RuleScorer {
    fn name(&self) -> &str {
        "rules"
    }

    fn prepare<'a>(&'a self, items: &'a [Item]) -> Box<dyn Prepared + 'a> {
        let mut colours: Vec<String> = Vec::new();
        let mut categories: Vec<String> = Vec::new();
        let color: Vec<Option<usize>> = items
            .iter()
            .map(|i| i.color_primary.as_deref().map(|c| intern(&mut colours, c)))
            .collect();
        let category: Vec<usize> = items
            .iter()
            .map(|i| intern(&mut categories, &i.category))
            .collect();
        let neutral = items
            .iter()
            .map(|i| {
                i.color_primary
                    .as_deref()
                    .is_some_and(|c| self.neutrals.iter().any(|n| n == c))
            })
            .collect();
        let n_colours = colours.len();
        let mut complements = vec![false; n_colours * n_colours];
        for (a, ca) in colours.iter().enumerate() {
            if let Some(list) = self.complementary.get(ca) {
                for (b, cb) in colours.iter().enumerate() {
                    complements[a * n_colours + b] = list.iter().any(|x| x == cb);
                }
            }
        }
        let n_categories = categories.len();
        let mut combo = vec![None; n_categories * n_categories];
        for (a, ca) in categories.iter().enumerate() {
            for (b, cb) in categories.iter().enumerate() {
                combo[a * n_categories + b] = self.combos.get(&(ca.clone(), cb.clone())).copied();
            }
        }
        Box::new(PreparedRules {
            weights: self.weights,
            color,
            neutral,
            category,
            formality: items
                .iter()
                .map(|i| f64::from(i.formality.unwrap_or(0.5)))
                .collect(),
            complements,
            n_colours,
            combo,
            n_categories,
            combo_base: self.combo_base,
        })
    }
}

impl PreparedRules {
    fn colours(&self, idx: &[usize]) -> f64 {
        let coloured = idx.iter().filter(|&&i| self.color[i].is_some()).count();
        if coloured < 2 {
            return 0.8;
        }
        let mut accents = idx
            .iter()
            .filter(|&&i| !self.neutral[i])
            .filter_map(|&i| self.color[i]);
        match (accents.next(), accents.next()) {
            // All neutrals: safe.
            (None, _) => 0.75,
            // One accent with neutrals: good.
            (Some(_), None) => 0.9,
            // Two accents: complementary (either way round) or potentially clashing.
            (Some(a), Some(b)) => {
                let n = self.n_colours;
                if self.complements[a * n + b] || self.complements[b * n + a] {
                    1.0
                } else {
                    0.5
                }
            }
        }
    }

    fn formality(&self, idx: &[usize]) -> f64 {
        if idx.len() < 2 {
            return 1.0;
        }
        let n = idx.len() as f64;
        let mean = idx.iter().map(|&i| self.formality[i]).sum::<f64>() / n;
        let var = idx
            .iter()
            .map(|&i| (self.formality[i] - mean).powi(2))
            .sum::<f64>()
            / n;
        (1.0 - var * 5.0).max(0.0)
    }

    fn combos(&self, idx: &[usize]) -> f64 {
        let mut score = self.combo_base;
        for (k, &a) in idx.iter().enumerate() {
            for &b in &idx[k + 1..] {
                let pair = self.combo[self.category[a] * self.n_categories + self.category[b]];
                if let Some(s) = pair {
                    score = score.max(s);
                }
            }
        }
        score
    }
}

impl Prepared for PreparedRules {
    fn score(&self, idx: &[usize]) -> Breakdown {
        let color_harmony = self.colours(idx);
        let formality_match = self.formality(idx);
        let category_combo = self.combos(idx);
        let w = self.weights;
        Breakdown {
            color_harmony,
            formality_match,
            category_combo,
            compatibility: w.color_harmony * color_harmony
                + w.formality_match * formality_match
                + w.category_combo * category_combo,
            personalization: 0.0,
        }
    }
}

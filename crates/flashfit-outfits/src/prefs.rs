//! A user's learned preferences (seed: "Personalization", `PreferenceLearner`): weights per
//! category, primary colour and style tag, moved by each feedback signal's weight × 0.1, and
//! the number of feedback events behind them.

use std::collections::HashMap;

use flashfit_schema::Signal;

use crate::Item;

/// Each signal moves a weight by its signal weight × this.
pub const FEEDBACK_STEP: f64 = 0.1;

/// The seed's signal weights: like +1.0, dislike −1.0, wear +2.0, skip −0.3, click +0.2.
pub fn signal_weight(s: Signal) -> f64 {
    match s {
        Signal::Like => 1.0,
        Signal::Dislike => -1.0,
        Signal::Wear => 2.0,
        Signal::Skip => -0.3,
        Signal::Click => 0.2,
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preferences {
    pub category: HashMap<String, f64>,
    pub color: HashMap<String, f64>,
    pub style: HashMap<String, f64>,
    pub feedback_count: u64,
}

impl Preferences {
    /// Applies one feedback event about `items` (what the SQL store does in one transaction).
    pub fn apply(&mut self, signal: Signal, items: &[Item]) {
        let delta = signal_weight(signal) * FEEDBACK_STEP;
        for g in items {
            *self.category.entry(g.category.clone()).or_default() += delta;
            if let Some(c) = &g.color_primary {
                *self.color.entry(c.clone()).or_default() += delta;
            }
            for t in &g.style_tags {
                *self.style.entry(t.clone()).or_default() += delta;
            }
        }
        self.feedback_count += 1;
    }

    /// One garment's share of an outfit's adjustment: its category, colour and tag weights.
    pub fn item_adjustment(&self, g: &Item) -> f64 {
        let mut a = self.category.get(&g.category).copied().unwrap_or(0.0);
        if let Some(c) = &g.color_primary {
            a += self.color.get(c).copied().unwrap_or(0.0);
        }
        for t in &g.style_tags {
            a += self.style.get(t).copied().unwrap_or(0.0);
        }
        a
    }
}

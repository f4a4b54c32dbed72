//! Sample-ratio mismatch (SRM) check.

use crate::dist::chi2_sf;

/// Result of a sample-ratio-mismatch test: Pearson's chi-square statistic, its degrees of
/// freedom (number of groups with a positive weight, minus one) and the p-value.
///
/// A tiny p-value (conventionally `< 0.001`) means the observed split of users between
/// variants is not what the assignment weights promise, so the experiment's readout is
/// suspect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Srm {
    /// Pearson's chi-square statistic `Σ (observed - expected)² / expected`.
    pub chi2: f64,
    /// Degrees of freedom.
    pub df: usize,
    /// `P(χ²_df >= chi2)`.
    pub p_value: f64,
}

/// Sample-ratio mismatch: Pearson chi-square of the `observed` user counts per variant
/// against the expected shares `weights[i] / Σ weights` (weights need not sum to 1).
///
/// Edge cases (no panic): mismatched lengths, a negative or non-finite weight, all weights
/// zero, no users at all, or fewer than two groups with a positive weight give
/// `chi2 = NaN, df = 0, p_value = NaN`. A group with weight 0 is expected to be empty: if
/// it is, it is left out (and not counted in `df`); if it has users, `chi2 = ∞` and
/// `p_value = 0`.
pub fn srm(observed: &[u64], weights: &[f64]) -> Srm {
    let invalid = Srm {
        chi2: f64::NAN,
        df: 0,
        p_value: f64::NAN,
    };
    if observed.len() != weights.len() || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
        return invalid;
    }
    let total_w: f64 = weights.iter().sum();
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if !total_w.is_finite() || total_w <= 0.0 || total == 0.0 {
        return invalid;
    }
    let mut chi2 = 0.0;
    let mut groups = 0usize;
    for (&o, &w) in observed.iter().zip(weights) {
        if w == 0.0 {
            if o > 0 {
                chi2 = f64::INFINITY;
            }
            continue;
        }
        groups += 1;
        let expected = total * (w / total_w);
        let d = o as f64 - expected;
        chi2 += d * d / expected;
    }
    if groups < 2 {
        return invalid;
    }
    let df = groups - 1;
    Srm {
        chi2,
        df,
        p_value: chi2_sf(chi2, df as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_groups() {
        // (520 - 500)² / 500 * 2 = 1.6, df 1.
        let r = srm(&[520, 480], &[1.0, 1.0]);
        assert!((r.chi2 - 1.6).abs() < 1e-12);
        assert_eq!(r.df, 1);
        assert!((r.p_value - chi2_sf(1.6, 1.0)).abs() < 1e-15);
        // Weights are normalised.
        assert_eq!(srm(&[520, 480], &[0.5, 0.5]), r);
        assert!(srm(&[500, 500], &[0.5, 0.5]).chi2 == 0.0);
        assert_eq!(srm(&[500, 500], &[0.5, 0.5]).p_value, 1.0);
    }

    #[test]
    fn edge_cases() {
        for r in [
            srm(&[1, 2], &[1.0]),
            srm(&[], &[]),
            srm(&[0, 0], &[1.0, 1.0]),
            srm(&[1, 2], &[0.0, 0.0]),
            srm(&[1, 2], &[-1.0, 2.0]),
            srm(&[1, 2], &[f64::NAN, 2.0]),
            srm(&[10], &[1.0]),
            srm(&[10, 0], &[1.0, 0.0]),
        ] {
            assert!(r.chi2.is_nan() && r.p_value.is_nan() && r.df == 0, "{r:?}");
        }
        // Empty zero-weight arm: ignored.
        let r = srm(&[520, 480, 0], &[0.5, 0.5, 0.0]);
        assert_eq!(r, srm(&[520, 480], &[0.5, 0.5]));
        // Users in a zero-weight arm: certain mismatch.
        let r = srm(&[520, 480, 3], &[0.5, 0.5, 0.0]);
        assert_eq!(r.chi2, f64::INFINITY);
        assert_eq!(r.p_value, 0.0);
    }
}

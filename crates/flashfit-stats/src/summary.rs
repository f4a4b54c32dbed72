//! Per-group sample summaries: [`Summary`] for a per-user value, [`RatioSummary`] for a
//! per-user ratio metric.

/// Clips rounding noise below zero; keeps NaN (unlike `f64::max`).
fn non_negative(v: f64) -> f64 {
    if v < 0.0 { 0.0 } else { v }
}

/// Sample summary of per-user values (sample variance with `n - 1`).
///
/// "Not enough users": with `n < 2` the variance is NaN (and with `n == 0` the mean too),
/// never a silent 0, so every standard error, interval and p-value built on it is NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of users.
    pub n: usize,
    /// Sample mean.
    pub mean: f64,
    /// Sample variance (denominator `n - 1`); NaN when `n < 2`.
    pub var: f64,
}

impl Summary {
    /// Summarises per-user values (corrected two-pass algorithm, accurate even when the
    /// mean is large compared with the spread). Non-finite inputs propagate as NaN/∞.
    pub fn of(xs: &[f64]) -> Summary {
        let n = xs.len();
        if n == 0 {
            return Summary {
                n,
                mean: f64::NAN,
                var: f64::NAN,
            };
        }
        let nf = n as f64;
        let first = xs.iter().sum::<f64>() / nf;
        let (mut d, mut ss) = (0.0, 0.0);
        for &x in xs {
            let e = x - first;
            d += e;
            ss += e * e;
        }
        let mean = first + d / nf;
        let var = if n < 2 {
            f64::NAN
        } else {
            non_negative((ss - d * d / nf) / (nf - 1.0))
        };
        Summary { n, mean, var }
    }

    /// Standard error of the mean, `sqrt(var / n)` (NaN when `n < 2`).
    pub fn se(&self) -> f64 {
        (self.var / self.n as f64).sqrt()
    }
}

/// Per-user ratio metric (e.g. clicks / impressions per user): the means, variances
/// (denominator `n - 1`) and covariance over users of the numerator and the denominator.
///
/// The metric is the ratio of sums `Σ num / Σ den` (= `num_mean / den_mean`); its variance
/// comes from the delta method, which accounts for the correlation of a user's
/// numerator and denominator (the user, not the impression, is the randomisation unit).
///
/// "Not enough users" (`n < 2`): variances and covariance are NaN. `den_mean == 0`: the
/// ratio is undefined and [`RatioSummary::value`] / [`RatioSummary::var`] are NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioSummary {
    /// Number of users.
    pub n: usize,
    /// Mean per-user numerator.
    pub num_mean: f64,
    /// Mean per-user denominator.
    pub den_mean: f64,
    /// Sample variance of the per-user numerator (NaN when `n < 2`).
    pub num_var: f64,
    /// Sample variance of the per-user denominator (NaN when `n < 2`).
    pub den_var: f64,
    /// Sample covariance of per-user numerator and denominator (NaN when `n < 2`).
    pub cov: f64,
}

impl RatioSummary {
    /// Summarises per-user numerators and denominators (`num[i]`, `den[i]` belong to user
    /// `i`).
    ///
    /// # Panics
    ///
    /// If `num` and `den` have different lengths (a programming error).
    pub fn of(num: &[f64], den: &[f64]) -> RatioSummary {
        assert_eq!(
            num.len(),
            den.len(),
            "RatioSummary::of: numerator and denominator must have one value per user"
        );
        let n = num.len();
        if n == 0 {
            return RatioSummary {
                n,
                num_mean: f64::NAN,
                den_mean: f64::NAN,
                num_var: f64::NAN,
                den_var: f64::NAN,
                cov: f64::NAN,
            };
        }
        let nf = n as f64;
        let m0 = num.iter().sum::<f64>() / nf;
        let d0 = den.iter().sum::<f64>() / nf;
        let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&x, &y) in num.iter().zip(den) {
            let ex = x - m0;
            let ey = y - d0;
            sx += ex;
            sy += ey;
            sxx += ex * ex;
            syy += ey * ey;
            sxy += ex * ey;
        }
        let (num_var, den_var, cov) = if n < 2 {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            let k = nf - 1.0;
            (
                non_negative((sxx - sx * sx / nf) / k),
                non_negative((syy - sy * sy / nf) / k),
                (sxy - sx * sy / nf) / k,
            )
        };
        RatioSummary {
            n,
            num_mean: m0 + sx / nf,
            den_mean: d0 + sy / nf,
            num_var,
            den_var,
            cov,
        }
    }

    /// The ratio `num_mean / den_mean` (= `Σ num / Σ den`); NaN when `den_mean == 0` or
    /// there are no users.
    pub fn value(&self) -> f64 {
        if self.den_mean == 0.0 {
            return f64::NAN;
        }
        self.num_mean / self.den_mean
    }

    /// Delta-method variance of [`RatioSummary::value`]:
    /// `(1/n) (num_var/d² - 2 m cov/d³ + m² den_var/d⁴)` with `m = num_mean`,
    /// `d = den_mean`. NaN when `n < 2` ("not enough users") or `den_mean == 0`.
    pub fn var(&self) -> f64 {
        if self.n < 2 || self.den_mean == 0.0 {
            return f64::NAN;
        }
        let m = self.num_mean;
        let d = self.den_mean;
        let r = m / d;
        // Same as the formula above, factored: var(num - r den) / (n d²).
        let v =
            (self.num_var - 2.0 * r * self.cov + r * r * self.den_var) / (d * d) / self.n as f64;
        // The quadratic form is positive semi-definite; clip rounding noise below zero.
        non_negative(v)
    }

    /// Delta-method standard error of [`RatioSummary::value`], `sqrt(var())`.
    pub fn se(&self) -> f64 {
        self.var().sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_basic() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-15);
        assert!((s.var - 5.0 / 3.0).abs() < 1e-15);
        assert!((s.se() - (5.0 / 12.0_f64).sqrt()).abs() < 1e-15);
        // Large offset: the two-pass algorithm keeps the variance.
        let s = Summary::of(&[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0, 1e9 + 4.0]);
        assert!((s.var - 5.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn summary_not_enough_users() {
        let s = Summary::of(&[]);
        assert_eq!(s.n, 0);
        assert!(s.mean.is_nan() && s.var.is_nan() && s.se().is_nan());
        let s = Summary::of(&[3.0]);
        assert_eq!(s.mean, 3.0);
        assert!(s.var.is_nan() && s.se().is_nan());
    }

    #[test]
    fn ratio_basic() {
        let num = [1.0, 0.0, 2.0, 1.0, 0.0];
        let den = [5.0, 3.0, 6.0, 4.0, 2.0];
        let r = RatioSummary::of(&num, &den);
        assert_eq!(r.n, 5);
        assert!((r.value() - 4.0 / 20.0).abs() < 1e-15);
        // Direct formula.
        let (m, d, n) = (r.num_mean, r.den_mean, r.n as f64);
        let v = (r.num_var / (d * d) - 2.0 * m * r.cov / (d * d * d)
            + m * m * r.den_var / (d * d * d * d))
            / n;
        assert!((r.var() - v).abs() <= 1e-15 * v);
        assert!((r.se() - v.sqrt()).abs() <= 1e-15);
    }

    #[test]
    fn ratio_degenerate() {
        let r = RatioSummary::of(&[1.0], &[2.0]);
        assert_eq!(r.value(), 0.5);
        assert!(r.var().is_nan() && r.se().is_nan());
        let r = RatioSummary::of(&[0.0, 0.0], &[0.0, 0.0]);
        assert!(r.value().is_nan() && r.var().is_nan());
        let r = RatioSummary::of(&[1.0, 2.0], &[0.0, 0.0]);
        assert!(r.value().is_nan() && r.var().is_nan());
        let r = RatioSummary::of(&[], &[]);
        assert!(r.value().is_nan() && r.var().is_nan());
        let r = RatioSummary::of(&[1.0, f64::NAN], &[1.0, 1.0]);
        assert!(r.value().is_nan() && r.var().is_nan());
        assert!(Summary::of(&[1.0, f64::NAN]).var.is_nan());
    }

    #[test]
    #[should_panic(expected = "one value per user")]
    fn ratio_length_mismatch_panics() {
        let _ = RatioSummary::of(&[1.0, 2.0], &[1.0]);
    }
}

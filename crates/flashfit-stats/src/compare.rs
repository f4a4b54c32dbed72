//! Estimates with confidence intervals, and treatment-versus-control comparisons.

use crate::dist::{normal_quantile, student_t_quantile, student_t_two_sided};
use crate::summary::{RatioSummary, Summary};

/// A closed interval `[lo, hi]` (a confidence interval). NaN bounds mean "not available".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// The interval with both bounds NaN ("not available").
    const NAN: Interval = Interval {
        lo: f64::NAN,
        hi: f64::NAN,
    };

    /// `lo <= x <= hi`; false whenever a bound or `x` is NaN.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    fn around(center: f64, half_width: f64) -> Interval {
        if !half_width.is_finite() {
            return Interval::NAN;
        }
        Interval {
            lo: center - half_width,
            hi: center + half_width,
        }
    }
}

/// A variant's estimate with its confidence interval.
///
/// `se` and `ci` are NaN when the uncertainty cannot be estimated: "not enough users"
/// (`n < 2`), a zero mean denominator for a ratio, no variation at all (zero variance, which
/// would give a zero-width interval), or a `level` outside `(0, 1)` (`ci` only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Point estimate (mean, or ratio of sums).
    pub value: f64,
    /// Its standard error.
    pub se: f64,
    /// Two-sided confidence interval at the requested level.
    pub ci: Interval,
}

/// Treatment against control.
///
/// The difference is `treatment - control`. When the standard error cannot be estimated
/// ("not enough users": `n < 2` in a group; zero variance in both groups; a ratio with a zero
/// mean denominator) `se`, `diff_ci`, `rel_ci`, `p_value` and `mde` are NaN (and `df` too for
/// Welch) rather than misleading numbers; the point estimates `diff` and `rel` are kept.
/// A `level` outside `(0, 1)` makes the intervals and `mde` NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Control estimate (mean, or ratio of sums).
    pub control: f64,
    /// Treatment estimate.
    pub treatment: f64,
    /// Absolute lift `treatment - control`.
    pub diff: f64,
    /// Confidence interval of `diff` (Student t with `df` for Welch, normal for ratios).
    pub diff_ci: Interval,
    /// Relative lift `diff / control`; NaN when `control == 0`.
    pub rel: f64,
    /// Confidence interval of `rel` by the delta method with independent groups,
    /// `var(rel) ≈ se_t²/c² + t² se_c²/c⁴` (`c`, `t` the control and treatment estimates,
    /// `se_c`, `se_t` their standard errors) and the normal quantile; NaN when
    /// `control == 0`.
    pub rel_ci: Interval,
    /// Standard error of `diff`, `sqrt(se_c² + se_t²)`.
    pub se: f64,
    /// Degrees of freedom of the test: Welch–Satterthwaite for [`welch`], `f64::INFINITY`
    /// for the z test of [`ratio_compare`].
    pub df: f64,
    /// Two-sided p-value of `diff == 0`.
    pub p_value: f64,
    /// Minimum detectable absolute effect at `alpha = 1 - level` (two-sided) and power 0.8
    /// with this standard error: `(z_{1-alpha/2} + z_{0.8}) * se`, normal quantiles `z`.
    pub mde: f64,
}

/// Critical value `z_{(1+level)/2}` of the standard normal (NaN for `level` outside
/// `(0, 1)`). Computed from the lower tail, where `(1 - level) / 2` is exact.
fn z_critical(level: f64) -> f64 {
    if !(level > 0.0 && level < 1.0) {
        return f64::NAN;
    }
    -normal_quantile(0.5 * (1.0 - level))
}

/// Critical value `t_{(1+level)/2, df}` (NaN for `level` outside `(0, 1)`).
fn t_critical(level: f64, df: f64) -> f64 {
    if !(level > 0.0 && level < 1.0) {
        return f64::NAN;
    }
    -student_t_quantile(0.5 * (1.0 - level), df)
}

/// A standard error that supports inference: finite and positive.
fn usable(se: f64) -> bool {
    se.is_finite() && se > 0.0
}

/// Estimate of a mean with a Student t confidence interval (`n - 1` degrees of freedom) at
/// `level` (e.g. `0.95`). `se`/`ci` are NaN with fewer than 2 users or zero variance.
pub fn mean_estimate(s: &Summary, level: f64) -> Estimate {
    let se = s.se();
    if s.n < 2 || !usable(se) {
        return Estimate {
            value: s.mean,
            se: f64::NAN,
            ci: Interval::NAN,
        };
    }
    let q = t_critical(level, (s.n - 1) as f64);
    Estimate {
        value: s.mean,
        se,
        ci: Interval::around(s.mean, q * se),
    }
}

/// Estimate of a ratio metric with a normal (delta-method) confidence interval at `level`.
/// `se`/`ci` are NaN with fewer than 2 users, `den_mean == 0` (then `value` is NaN too) or
/// zero delta-method variance.
pub fn ratio_estimate(r: &RatioSummary, level: f64) -> Estimate {
    let value = r.value();
    let se = r.se();
    if !usable(se) || !value.is_finite() {
        return Estimate {
            value,
            se: f64::NAN,
            ci: Interval::NAN,
        };
    }
    Estimate {
        value,
        se,
        ci: Interval::around(value, z_critical(level) * se),
    }
}

/// Builds a comparison from the two estimates, their squared standard errors and the
/// degrees of freedom of the test (`INFINITY`: z test).
fn compare(
    control: f64,
    treatment: f64,
    var_c: f64,
    var_t: f64,
    df: f64,
    level: f64,
) -> Comparison {
    let diff = treatment - control;
    let rel = if control == 0.0 || !control.is_finite() {
        f64::NAN
    } else {
        diff / control
    };
    let se = (var_c + var_t).sqrt();
    if !(var_c >= 0.0 && var_t >= 0.0 && usable(se) && df > 0.0 && diff.is_finite()) {
        return Comparison {
            control,
            treatment,
            diff,
            diff_ci: Interval::NAN,
            rel,
            rel_ci: Interval::NAN,
            se: f64::NAN,
            df: if df.is_infinite() { df } else { f64::NAN },
            p_value: f64::NAN,
            mde: f64::NAN,
        };
    }
    let z = z_critical(level);
    let q = if df.is_infinite() {
        z
    } else {
        t_critical(level, df)
    };
    let rel_ci = if rel.is_nan() {
        Interval::NAN
    } else {
        let c2 = control * control;
        let var_rel = var_t / c2 + treatment * treatment * var_c / (c2 * c2);
        Interval::around(rel, z * var_rel.sqrt())
    };
    Comparison {
        control,
        treatment,
        diff,
        diff_ci: Interval::around(diff, q * se),
        rel,
        rel_ci,
        se,
        df,
        p_value: student_t_two_sided(diff / se, df),
        mde: (z + normal_quantile(0.8)) * se,
    }
}

/// Welch's unequal-variances t test of `treatment - control` on per-user means: standard
/// error `sqrt(var_c/n_c + var_t/n_t)`, Welch–Satterthwaite degrees of freedom, Student t
/// confidence interval on the difference and two-sided p-value from Student t.
///
/// NaN `se`/`df`/intervals/p/`mde` with fewer than 2 users in a group or zero variance in
/// both groups (see [`Comparison`]).
pub fn welch(control: &Summary, treatment: &Summary, level: f64) -> Comparison {
    let vc = control.var / control.n as f64;
    let vt = treatment.var / treatment.n as f64;
    let df = if control.n < 2 || treatment.n < 2 {
        f64::NAN
    } else {
        let nc1 = (control.n - 1) as f64;
        let nt1 = (treatment.n - 1) as f64;
        (vc + vt) * (vc + vt) / (vc * vc / nc1 + vt * vt / nt1)
    };
    compare(control.mean, treatment.mean, vc, vt, df, level)
}

/// z test of the difference of two ratio metrics (`treatment - control`), each with its
/// delta-method variance ([`RatioSummary::var`]); normal confidence interval; `df` is
/// `f64::INFINITY`.
///
/// NaN `se`/intervals/p/`mde` with fewer than 2 users in a group, a zero mean denominator or
/// zero variance in both groups (see [`Comparison`]).
pub fn ratio_compare(control: &RatioSummary, treatment: &RatioSummary, level: f64) -> Comparison {
    compare(
        control.value(),
        treatment.value(),
        control.var(),
        treatment.var(),
        f64::INFINITY,
        level,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * a.abs().max(b.abs())
    }

    #[test]
    fn interval_contains() {
        let i = Interval { lo: -1.0, hi: 2.0 };
        assert!(i.contains(-1.0) && i.contains(0.0) && i.contains(2.0));
        assert!(!i.contains(2.5) && !i.contains(f64::NAN));
        assert!(!Interval::NAN.contains(0.0));
    }

    #[test]
    fn mean_estimate_t_interval() {
        let s = Summary {
            n: 11,
            mean: 5.0,
            var: 4.4,
        };
        let e = mean_estimate(&s, 0.95);
        let se = (0.4_f64).sqrt();
        assert!(close(e.se, se, 1e-15));
        // t_{0.975, 10}
        let q = 2.228_138_851_986_274_4;
        assert!(close(e.ci.hi, 5.0 + q * se, 1e-13));
        assert!(close(e.ci.lo, 5.0 - q * se, 1e-13));
    }

    #[test]
    fn welch_textbook() {
        // Hand-computed: vc = 1/10, vt = 4/20, se = sqrt(0.3), df = 0.09 / (0.01/9 + 0.04/19).
        let c = Summary {
            n: 10,
            mean: 1.0,
            var: 1.0,
        };
        let t = Summary {
            n: 20,
            mean: 2.0,
            var: 4.0,
        };
        let r = welch(&c, &t, 0.95);
        assert!(close(r.se, 0.3_f64.sqrt(), 1e-15));
        assert!(close(r.df, 0.09 / (0.01 / 9.0 + 0.04 / 19.0), 1e-14));
        assert_eq!(r.diff, 1.0);
        assert_eq!(r.rel, 1.0);
        assert!(r.p_value > 0.0 && r.p_value < 0.1);
        let z = normal_quantile(0.975);
        assert!(close(r.mde, (z + normal_quantile(0.8)) * r.se, 1e-15));
        let var_rel: f64 = 0.2 / 1.0 + 4.0 * 0.1;
        assert!(close(r.rel_ci.hi, 1.0 + z * var_rel.sqrt(), 1e-14));
    }

    #[test]
    fn welch_not_enough_users() {
        let c = Summary::of(&[1.0]);
        let t = Summary::of(&[1.0, 2.0, 3.0]);
        for r in [welch(&c, &t, 0.95), welch(&t, &c, 0.95)] {
            assert!(r.se.is_nan() && r.p_value.is_nan() && r.df.is_nan() && r.mde.is_nan());
            assert!(r.diff_ci.lo.is_nan() && r.rel_ci.hi.is_nan());
            assert!(r.diff.is_finite());
        }
        let e = mean_estimate(&c, 0.95);
        assert_eq!(e.value, 1.0);
        assert!(e.se.is_nan() && e.ci.lo.is_nan());
        let empty = Summary::of(&[]);
        let r = welch(&empty, &empty, 0.95);
        assert!(r.se.is_nan() && r.p_value.is_nan() && r.diff.is_nan());
        // Manually built summaries with n < 2 are refused too, even with var = 0.
        let one = Summary {
            n: 1,
            mean: 1.0,
            var: 0.0,
        };
        assert!(welch(&one, &t, 0.95).p_value.is_nan());
        assert!(mean_estimate(&one, 0.95).se.is_nan());
    }

    #[test]
    fn welch_zero_variance() {
        let c = Summary::of(&[2.0; 10]);
        let t = Summary::of(&[3.0; 10]);
        let r = welch(&c, &t, 0.95);
        assert_eq!(r.diff, 1.0);
        assert!(r.se.is_nan() && r.p_value.is_nan() && r.diff_ci.hi.is_nan());
        // One group without variance is fine (df = n_t - 1).
        let t = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let r = welch(&c, &t, 0.95);
        assert!(close(r.df, 4.0, 1e-15));
        assert!(r.p_value.is_finite());
        assert!(mean_estimate(&c, 0.95).se.is_nan());
    }

    #[test]
    fn zero_control_gives_nan_relative() {
        let c = Summary::of(&[-1.0, 1.0, 0.0]);
        let t = Summary::of(&[1.0, 2.0, 3.0]);
        let r = welch(&c, &t, 0.95);
        assert_eq!(r.control, 0.0);
        assert!(r.rel.is_nan() && r.rel_ci.lo.is_nan() && r.rel_ci.hi.is_nan());
        assert!(r.p_value.is_finite() && r.diff_ci.lo.is_finite());
    }

    #[test]
    fn bad_level() {
        let c = Summary::of(&[1.0, 2.0, 4.0]);
        let t = Summary::of(&[2.0, 3.0, 7.0]);
        for level in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
            let r = welch(&c, &t, level);
            assert!(r.diff_ci.lo.is_nan() && r.rel_ci.lo.is_nan() && r.mde.is_nan());
            assert!(r.p_value.is_finite());
            assert!(mean_estimate(&c, level).ci.lo.is_nan());
        }
    }

    #[test]
    fn ratio_degenerate() {
        let ok = RatioSummary::of(&[1.0, 0.0, 2.0], &[3.0, 4.0, 5.0]);
        let zero_den = RatioSummary::of(&[0.0, 0.0], &[0.0, 0.0]);
        let one = RatioSummary::of(&[1.0], &[2.0]);
        for bad in [zero_den, one] {
            for r in [
                ratio_compare(&bad, &ok, 0.95),
                ratio_compare(&ok, &bad, 0.95),
            ] {
                assert!(r.se.is_nan() && r.p_value.is_nan() && r.diff_ci.lo.is_nan());
                assert_eq!(r.df, f64::INFINITY);
            }
            let e = ratio_estimate(&bad, 0.95);
            assert!(e.se.is_nan() && e.ci.lo.is_nan());
        }
        // No clicks at all in control: ratio 0 with zero variance; comparison still valid,
        // the relative lift is not.
        let no_clicks = RatioSummary::of(&[0.0, 0.0, 0.0], &[3.0, 4.0, 5.0]);
        let r = ratio_compare(&no_clicks, &ok, 0.95);
        assert_eq!(r.control, 0.0);
        assert!(r.se > 0.0 && r.p_value.is_finite() && r.rel.is_nan());
        let r = ratio_compare(&no_clicks, &no_clicks, 0.95);
        assert!(r.se.is_nan() && r.p_value.is_nan());
    }

    #[test]
    fn ratio_estimate_normal_interval() {
        let r = RatioSummary::of(&[1.0, 0.0, 2.0, 1.0], &[3.0, 4.0, 5.0, 2.0]);
        let e = ratio_estimate(&r, 0.9);
        assert_eq!(e.value, r.value());
        assert!(close(e.se, r.se(), 1e-15));
        let z = normal_quantile(0.95);
        assert!(close(e.ci.hi - e.ci.lo, 2.0 * z * r.se(), 1e-13));
    }
}

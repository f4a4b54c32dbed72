//! Simulation tests: calibration of the tests (A/A false-positive rate, uniform p-values),
//! coverage of the confidence intervals under a known effect, and the SRM check. Everything
//! is seeded, so the numbers are the same on every run.
//!
//! The acceptance bands are statistical: with 400 experiments the standard deviation of an
//! observed rate near 0.05 is about 0.011, so `[0.03, 0.07]` is roughly ±1.8 standard
//! deviations, `[0.92, 0.98]` around 0.95 roughly ±2.75, `[0.43, 0.57]` around 0.5 roughly
//! ±2.8. The seeds are fixed, not tuned.

use flashfit_stats::{Comparison, RatioSummary, Rng, Summary, ratio_compare, srm, welch};

const EXPERIMENTS: usize = 400;
const USERS_PER_GROUP: usize = 500;
const LEVEL: f64 = 0.95;

/// Session seconds of one user: exponential with the given mean (`-ln(U) * mean`).
fn session_seconds(rng: &mut Rng, mean: f64) -> f64 {
    -(1.0 - rng.uniform()).ln() * mean
}

fn continuous_group(rng: &mut Rng, mean: f64) -> Summary {
    let xs: Vec<f64> = (0..USERS_PER_GROUP)
        .map(|_| session_seconds(rng, mean))
        .collect();
    Summary::of(&xs)
}

/// Per-user impressions `1 + Poisson(4)`, clicks `Binomial(impressions, ctr)`.
fn ratio_group(rng: &mut Rng, ctr: f64) -> RatioSummary {
    let mut clicks = Vec::with_capacity(USERS_PER_GROUP);
    let mut impressions = Vec::with_capacity(USERS_PER_GROUP);
    for _ in 0..USERS_PER_GROUP {
        let n = 1 + rng.poisson(4.0);
        let c = (0..n).filter(|_| rng.bernoulli(ctr)).count();
        impressions.push(n as f64);
        clicks.push(c as f64);
    }
    RatioSummary::of(&clicks, &impressions)
}

/// Runs `EXPERIMENTS` simulated experiments.
fn simulate(seed: u64, mut experiment: impl FnMut(&mut Rng) -> Comparison) -> Vec<Comparison> {
    let mut rng = Rng::new(seed);
    (0..EXPERIMENTS).map(|_| experiment(&mut rng)).collect()
}

fn fraction(results: &[Comparison], pred: impl Fn(&Comparison) -> bool) -> f64 {
    results.iter().filter(|c| pred(c)).count() as f64 / results.len() as f64
}

fn assert_within(what: &str, value: f64, lo: f64, hi: f64) {
    eprintln!("{what}: {value:.4} (accepted [{lo}, {hi}])");
    assert!(
        (lo..=hi).contains(&value),
        "{what} = {value} outside [{lo}, {hi}]"
    );
}

fn check_aa(name: &str, results: &[Comparison]) {
    assert!(results.iter().all(|c| c.p_value.is_finite()));
    assert_within(
        &format!("{name} A/A false positive rate (p < 0.05)"),
        fraction(results, |c| c.p_value < 0.05),
        0.03,
        0.07,
    );
    assert_within(
        &format!("{name} A/A fraction of p < 0.5"),
        fraction(results, |c| c.p_value < 0.5),
        0.43,
        0.57,
    );
    // A coarser look at uniformity: each decile of p holds about 10% of the experiments
    // (binomial sd 1.5%, band ±3.3 sd).
    for d in 0..10 {
        let lo = d as f64 / 10.0;
        let share = fraction(results, |c| c.p_value >= lo && c.p_value < lo + 0.1);
        assert!(
            (0.05..=0.15).contains(&share),
            "{name}: p-value decile {d} holds {share}"
        );
    }
    // Under A/A the true difference is 0: the interval should cover it about as often.
    assert_within(
        &format!("{name} A/A coverage of 0"),
        fraction(results, |c| c.diff_ci.contains(0.0)),
        0.92,
        0.98,
    );
}

#[test]
fn aa_continuous_welch() {
    let results = simulate(0xAA001, |rng| {
        let c = continuous_group(rng, 60.0);
        let t = continuous_group(rng, 60.0);
        welch(&c, &t, LEVEL)
    });
    check_aa("welch", &results);
}

#[test]
fn aa_ratio_delta_method() {
    let results = simulate(0xAA002, |rng| {
        let c = ratio_group(rng, 0.10);
        let t = ratio_group(rng, 0.10);
        ratio_compare(&c, &t, LEVEL)
    });
    assert!(results.iter().all(|c| c.df == f64::INFINITY));
    check_aa("ratio", &results);
}

#[test]
fn known_effect_coverage_welch() {
    // Treatment +5% on mean session seconds: true difference 3 s.
    let true_diff = 60.0 * 0.05;
    let results = simulate(0xEFF001, |rng| {
        let c = continuous_group(rng, 60.0);
        let t = continuous_group(rng, 63.0);
        welch(&c, &t, LEVEL)
    });
    assert_within(
        "welch 95% diff_ci coverage of the true +5% lift",
        fraction(&results, |c| c.diff_ci.contains(true_diff)),
        0.92,
        0.98,
    );
    assert_within(
        "welch 95% rel_ci coverage of the true +5% lift",
        fraction(&results, |c| c.rel_ci.contains(0.05)),
        0.92,
        0.98,
    );
    // The effect is about 0.77 standard errors (se ≈ sqrt((60² + 63²) / 500) ≈ 3.9 s), so
    // the expected power is about 0.12: a loose sanity check of the p-values.
    let power = fraction(&results, |c| c.p_value < 0.05);
    eprintln!("welch power for +5% with 500 users/group: {power:.4}");
    assert!((0.06..=0.25).contains(&power), "power {power}");
    // The mde is larger than the effect here (underpowered design), as the low power says.
    assert!(results.iter().all(|c| c.mde > true_diff));
}

#[test]
fn known_effect_coverage_ratio() {
    // CTR 0.10 -> 0.11: the ratio of sums has expectation exactly the CTR.
    let true_diff = 0.01;
    let results = simulate(0xEFF002, |rng| {
        let c = ratio_group(rng, 0.10);
        let t = ratio_group(rng, 0.11);
        ratio_compare(&c, &t, LEVEL)
    });
    assert_within(
        "ratio 95% diff_ci coverage of the true CTR lift",
        fraction(&results, |c| c.diff_ci.contains(true_diff)),
        0.92,
        0.98,
    );
    assert_within(
        "ratio 95% rel_ci coverage of the true +10% relative lift",
        fraction(&results, |c| c.rel_ci.contains(0.1)),
        0.92,
        0.98,
    );
    let power = fraction(&results, |c| c.p_value < 0.05);
    eprintln!("ratio power for CTR 0.10 -> 0.11 with 500 users/group: {power:.4}");
}

#[test]
fn srm_detects_mismatch() {
    let r = srm(&[52_000, 48_000], &[0.5, 0.5]);
    eprintln!("SRM 52,000/48,000 vs 50/50: {r:?}");
    assert_eq!(r.df, 1);
    assert!((r.chi2 - 160.0).abs() < 1e-9, "{r:?}");
    assert!(r.p_value < 0.001, "{r:?}");
}

#[test]
fn srm_accepts_matching_splits() {
    let r = srm(&[50_100, 49_900], &[0.5, 0.5]);
    eprintln!("SRM 50,100/49,900 vs 50/50: {r:?}");
    assert!(r.p_value > 0.05, "{r:?}");

    let r = srm(&[50_000, 30_000, 20_000], &[0.5, 0.3, 0.2]);
    assert_eq!(r.df, 2);
    assert_eq!(r.chi2, 0.0);
    assert_eq!(r.p_value, 1.0);

    // 100,000 users assigned at random with the weights 0.5/0.3/0.2.
    let mut rng = Rng::new(0x52A3);
    let mut counts = [0u64; 3];
    for _ in 0..100_000 {
        let u = rng.uniform();
        counts[if u < 0.5 {
            0
        } else if u < 0.8 {
            1
        } else {
            2
        }] += 1;
    }
    let r = srm(&counts, &[0.5, 0.3, 0.2]);
    eprintln!("SRM random 3-way split {counts:?} vs 0.5/0.3/0.2: {r:?}");
    assert!(r.p_value > 0.01, "{r:?}");
    // The same split against the wrong weights is flagged.
    assert!(srm(&counts, &[0.4, 0.4, 0.2]).p_value < 1e-6);
}

#[test]
fn srm_is_calibrated() {
    // Under correct random assignment about 5% of SRM p-values fall below 0.05.
    let mut rng = Rng::new(0x52A4);
    let runs = 400;
    let mut below = 0;
    for _ in 0..runs {
        let mut counts = [0u64; 2];
        for _ in 0..2_000 {
            counts[usize::from(rng.bernoulli(0.5))] += 1;
        }
        if srm(&counts, &[1.0, 1.0]).p_value < 0.05 {
            below += 1;
        }
    }
    assert_within(
        "SRM A/A false positive rate (p < 0.05)",
        below as f64 / runs as f64,
        0.03,
        0.07,
    );
}

//! Agreement with scipy / statsmodels on the same synthetic data.
//!
//! The datasets are generated here with the crate's seeded [`Rng`], sent as JSON to
//! `tests/reference.py` (run with `${FLASHFIT_VENV:-/var/lib/flashfit/venv}/bin/python`),
//! and every statistic is compared with what scipy (`ttest_ind(equal_var=False)` and its
//! confidence interval, `chisquare`, `norm`/`t`/`chi2`), statsmodels (`CompareMeans`,
//! `DescrStatsW`) and an independent numpy transcription of the delta method return.
//!
//! Tolerances: `1e-8` relative for everything computed directly (means, variances, standard
//! errors, statistics, degrees of freedom, p-values, cdfs); `1e-6` for what goes through an
//! iterative quantile (intervals, MDE, quantiles). Interval bounds are compared relative to
//! the larger of the bound and the interval's half-width, so a bound that happens to be near
//! zero is not judged on cancellation noise.
//!
//! A missing interpreter, scipy or statsmodels makes the test FAIL with a message (CI has
//! them); it never skips.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flashfit_stats::{
    RatioSummary, Rng, Summary, chi2_sf, mean_estimate, normal_cdf, normal_quantile, ratio_compare,
    ratio_estimate, srm, student_t_cdf, student_t_quantile, welch,
};
use serde_json::{Value, json};

const LEVEL: f64 = 0.95;
const TOL: f64 = 1e-8;
const TOL_QUANTILE: f64 = 1e-6;

// ---------------------------------------------------------------- data generation

fn normal(rng: &mut Rng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
    (0..n).map(|_| mean + sd * rng.normal()).collect()
}

fn exponential(rng: &mut Rng, n: usize, mean: f64) -> Vec<f64> {
    (0..n).map(|_| -(1.0 - rng.uniform()).ln() * mean).collect()
}

fn lognormal(rng: &mut Rng, n: usize, mu: f64, sigma: f64) -> Vec<f64> {
    (0..n).map(|_| (mu + sigma * rng.normal()).exp()).collect()
}

/// Clicks / impressions per user: impressions `1 + Poisson(imp)`, each user with their own
/// click-through rate `ctr * exp(spread * N(0, 1))` (capped at 1).
fn clicks(rng: &mut Rng, n: usize, imp: f64, ctr: f64, spread: f64) -> (Vec<f64>, Vec<f64>) {
    let mut num = Vec::with_capacity(n);
    let mut den = Vec::with_capacity(n);
    for _ in 0..n {
        let shows = 1 + rng.poisson(imp);
        let p = (ctr * (spread * rng.normal()).exp()).min(1.0);
        num.push((0..shows).filter(|_| rng.bernoulli(p)).count() as f64);
        den.push(shows as f64);
    }
    (num, den)
}

/// Revenue / sessions per user: sessions `1 + Poisson(2)`, each converting with probability
/// `conv` for an exponential amount with mean `basket`.
fn revenue(rng: &mut Rng, n: usize, conv: f64, basket: f64) -> (Vec<f64>, Vec<f64>) {
    let mut num = Vec::with_capacity(n);
    let mut den = Vec::with_capacity(n);
    for _ in 0..n {
        let sessions = 1 + rng.poisson(2.0);
        let mut total = 0.0;
        for _ in 0..sessions {
            if rng.bernoulli(conv) {
                total += -(1.0 - rng.uniform()).ln() * basket;
            }
        }
        num.push(total);
        den.push(sessions as f64);
    }
    (num, den)
}

struct RatioCase {
    control: (Vec<f64>, Vec<f64>),
    treatment: (Vec<f64>, Vec<f64>),
}

fn welch_cases(rng: &mut Rng) -> Vec<(Vec<f64>, Vec<f64>)> {
    vec![
        // Smallest groups, unequal variances.
        (normal(rng, 5, 10.0, 2.0), normal(rng, 5, 11.0, 3.0)),
        (exponential(rng, 5, 60.0), exponential(rng, 12, 66.0)),
        (normal(rng, 40, 0.0, 1.0), normal(rng, 37, 0.5, 4.0)),
        (
            lognormal(rng, 500, 3.0, 1.0),
            lognormal(rng, 650, 3.05, 1.2),
        ),
        (exponential(rng, 300, 60.0), exponential(rng, 300, 55.0)),
        (exponential(rng, 5000, 60.0), exponential(rng, 5000, 61.0)),
        // Very different groups: a tiny p-value, far in the t tail.
        (normal(rng, 3000, 0.0, 1.0), normal(rng, 200, 1.0, 1.0)),
        // Large offset, small spread.
        (normal(rng, 100, 1e6, 1.0), normal(rng, 120, 1e6 + 0.3, 1.0)),
    ]
}

fn ratio_cases(rng: &mut Rng) -> Vec<RatioCase> {
    vec![
        RatioCase {
            control: clicks(rng, 5, 4.0, 0.3, 0.0),
            treatment: clicks(rng, 7, 4.0, 0.3, 0.0),
        },
        RatioCase {
            control: clicks(rng, 20, 4.0, 0.10, 0.0),
            treatment: clicks(rng, 20, 4.0, 0.12, 0.0),
        },
        RatioCase {
            control: clicks(rng, 200, 4.0, 0.10, 0.3),
            treatment: clicks(rng, 250, 4.0, 0.10, 0.3),
        },
        RatioCase {
            control: clicks(rng, 5000, 20.0, 0.05, 0.5),
            treatment: clicks(rng, 5000, 20.0, 0.06, 0.5),
        },
        RatioCase {
            control: revenue(rng, 1000, 0.05, 30.0),
            treatment: revenue(rng, 1000, 0.06, 30.0),
        },
    ]
}

fn srm_cases() -> Vec<(Vec<u64>, Vec<f64>)> {
    vec![
        (vec![52_000, 48_000], vec![0.5, 0.5]),
        (vec![50_100, 49_900], vec![0.5, 0.5]),
        (vec![50_050, 29_980, 19_970], vec![0.5, 0.3, 0.2]),
        (vec![10, 20, 30, 40], vec![1.0, 1.0, 1.0, 1.0]),
        (vec![1_000, 1_100], vec![1.0, 1.2]),
        (vec![12, 7], vec![0.5, 0.5]),
        (vec![333_334, 333_333, 333_333], vec![1.0, 1.0, 1.0]),
    ]
}

const DFS: [f64; 9] = [1.0, 2.5, 5.0, 10.0, 29.3, 100.0, 1_000.0, 1e5, 1e7];

fn normal_cdf_grid() -> Vec<f64> {
    vec![
        -37.0,
        -20.0,
        -8.0,
        -3.0,
        -1.96,
        -1.0,
        -0.3,
        0.0,
        0.25,
        1.0,
        1.644_853_626_951_472_2,
        1.96,
        3.5,
        6.0,
        8.0,
    ]
}

fn normal_quantile_grid() -> Vec<f64> {
    vec![
        1e-300, 1e-12, 1e-5, 0.01, 0.025, 0.05, 0.3, 0.5, 0.7, 0.8, 0.95, 0.975, 0.999_999,
    ]
}

fn t_cdf_grid() -> Vec<[f64; 2]> {
    let ts = [-40.0, -5.0, -2.0, -0.5, 0.0, 0.7, 1.96, 3.0, 8.0];
    DFS.iter()
        .flat_map(|&df| ts.iter().map(move |&t| [t, df]))
        .collect()
}

fn t_quantile_grid() -> Vec<[f64; 2]> {
    let ps = [1e-10, 1e-4, 0.025, 0.1, 0.5, 0.9, 0.975, 0.9999];
    DFS.iter()
        .flat_map(|&df| ps.iter().map(move |&p| [p, df]))
        .collect()
}

fn chi2_grid() -> Vec<[f64; 2]> {
    let xs = [0.001, 0.5, 1.0, 3.84, 10.0, 50.0, 200.0, 800.0];
    let ks = [1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0];
    ks.iter()
        .flat_map(|&k| xs.iter().map(move |&x| [x, k]))
        .collect()
}

// ---------------------------------------------------------------- running the reference

fn python() -> PathBuf {
    let venv = std::env::var_os("FLASHFIT_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/flashfit/venv"));
    venv.join("bin").join("python")
}

fn run_reference(input: &Value) -> Value {
    let py = python();
    assert!(
        py.is_file(),
        "Python interpreter not found at {}: this test compares against scipy/statsmodels and \
         needs ${{FLASHFIT_VENV:-/var/lib/flashfit/venv}}/bin/python with scipy and \
         statsmodels installed (set FLASHFIT_VENV to such a virtualenv). It does not skip.",
        py.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference.py");
    let mut child = Command::new(&py)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} {}: {e}", py.display(), script.display()));
    let body = serde_json::to_vec(input).expect("serialise datasets");
    let mut stdin = child.stdin.take().expect("child stdin");
    // Write from another thread so a large input cannot deadlock against the child's output.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", py.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} failed ({}); is scipy/statsmodels installed in that interpreter?\n{stderr}",
        py.display(),
        script.display(),
        output.status
    );
    writer
        .join()
        .expect("stdin writer thread")
        .expect("writing datasets to reference.py");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "reference.py printed invalid JSON: {e}\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

// ---------------------------------------------------------------- comparison

#[derive(Default)]
struct Checker {
    failures: Vec<String>,
    checks: usize,
    /// Largest relative error seen per category.
    worst: BTreeMap<&'static str, f64>,
}

impl Checker {
    /// `got` against the reference `want` (null: NaN), relative to
    /// `max(|got|, |want|, scale)`.
    fn check(
        &mut self,
        category: &'static str,
        what: &str,
        got: f64,
        want: &Value,
        tol: f64,
        scale: f64,
    ) {
        self.checks += 1;
        let want = want.as_f64().unwrap_or(f64::NAN);
        if want.is_nan() || !got.is_finite() {
            if want.is_nan() != got.is_nan() || !(got.is_nan() || got == want) {
                self.failures.push(format!(
                    "{category} {what}: got {got:e}, reference {want:e}"
                ));
            }
            return;
        }
        let denom = got.abs().max(want.abs()).max(scale.abs());
        let err = if denom == 0.0 {
            0.0
        } else {
            (got - want).abs() / denom
        };
        let worst = self.worst.entry(category).or_insert(0.0);
        *worst = worst.max(err);
        if err > tol {
            self.failures.push(format!(
                "{category} {what}: got {got:e}, reference {want:e}, relative error {err:e} > {tol:e}"
            ));
        }
    }
}

#[test]
fn agrees_with_scipy_and_statsmodels() {
    let mut rng = Rng::new(0x5C14D);
    let welch_data = welch_cases(&mut rng);
    let ratio_data = ratio_cases(&mut rng);
    let srm_data = srm_cases();
    let input = json!({
        "level": LEVEL,
        "welch": welch_data.iter().map(|(c, t)| json!({"control": c, "treatment": t})).collect::<Vec<_>>(),
        "ratio": ratio_data.iter().map(|r| json!({
            "control_num": r.control.0, "control_den": r.control.1,
            "treatment_num": r.treatment.0, "treatment_den": r.treatment.1,
        })).collect::<Vec<_>>(),
        "srm": srm_data.iter().map(|(o, w)| json!({"observed": o, "weights": w})).collect::<Vec<_>>(),
        "normal_cdf": normal_cdf_grid(),
        "normal_quantile": normal_quantile_grid(),
        "t_cdf": t_cdf_grid(),
        "t_quantile": t_quantile_grid(),
        "chi2_sf": chi2_grid(),
    });
    let reference = run_reference(&input);
    let mut ck = Checker::default();

    for (i, (c, t)) in welch_data.iter().enumerate() {
        let r = &reference["welch"][i];
        let sc = Summary::of(c);
        let st = Summary::of(t);
        let cmp = welch(&sc, &st, LEVEL);
        let what = format!("case {i} (n {} vs {})", c.len(), t.len());
        ck.check("welch mean", &what, sc.mean, &r["control_mean"], TOL, 0.0);
        ck.check("welch mean", &what, st.mean, &r["treatment_mean"], TOL, 0.0);
        ck.check("welch var", &what, sc.var, &r["control_var"], TOL, 0.0);
        ck.check("welch var", &what, st.var, &r["treatment_var"], TOL, 0.0);
        ck.check("welch diff", &what, cmp.diff, &r["diff"], TOL, cmp.se);
        ck.check("welch se", &what, cmp.se, &r["se"], TOL, 0.0);
        ck.check("welch t", &what, cmp.diff / cmp.se, &r["t"], TOL, 0.0);
        ck.check("welch t", &what, cmp.diff / cmp.se, &r["sm_t"], TOL, 0.0);
        ck.check("welch df", &what, cmp.df, &r["df"], TOL, 0.0);
        ck.check("welch df", &what, cmp.df, &r["sm_df"], TOL, 0.0);
        ck.check("welch p", &what, cmp.p_value, &r["p_value"], TOL, 0.0);
        ck.check("welch p", &what, cmp.p_value, &r["sm_p_value"], TOL, 0.0);
        let half = 0.5 * (cmp.diff_ci.hi - cmp.diff_ci.lo);
        ck.check(
            "welch ci",
            &what,
            cmp.diff_ci.lo,
            &r["ci_lo"],
            TOL_QUANTILE,
            half,
        );
        ck.check(
            "welch ci",
            &what,
            cmp.diff_ci.hi,
            &r["ci_hi"],
            TOL_QUANTILE,
            half,
        );
        ck.check(
            "welch ci",
            &what,
            cmp.diff_ci.lo,
            &r["sm_ci_lo"],
            TOL_QUANTILE,
            half,
        );
        ck.check(
            "welch ci",
            &what,
            cmp.diff_ci.hi,
            &r["sm_ci_hi"],
            TOL_QUANTILE,
            half,
        );
        let rel_half = 0.5 * (cmp.rel_ci.hi - cmp.rel_ci.lo);
        ck.check("welch rel", &what, cmp.rel, &r["rel"], TOL, rel_half);
        ck.check(
            "welch rel ci",
            &what,
            cmp.rel_ci.lo,
            &r["rel_lo"],
            TOL_QUANTILE,
            rel_half,
        );
        ck.check(
            "welch rel ci",
            &what,
            cmp.rel_ci.hi,
            &r["rel_hi"],
            TOL_QUANTILE,
            rel_half,
        );
        ck.check("welch mde", &what, cmp.mde, &r["mde"], TOL_QUANTILE, 0.0);
        for (s, key) in [(&sc, "control_ci"), (&st, "treatment_ci")] {
            let e = mean_estimate(s, LEVEL);
            let half = 0.5 * (e.ci.hi - e.ci.lo);
            ck.check("mean ci", &what, e.ci.lo, &r[key][0], TOL_QUANTILE, half);
            ck.check("mean ci", &what, e.ci.hi, &r[key][1], TOL_QUANTILE, half);
        }
    }

    for (i, case) in ratio_data.iter().enumerate() {
        let r = &reference["ratio"][i];
        let rc = RatioSummary::of(&case.control.0, &case.control.1);
        let rt = RatioSummary::of(&case.treatment.0, &case.treatment.1);
        let cmp = ratio_compare(&rc, &rt, LEVEL);
        let what = format!("case {i} (n {} vs {})", rc.n, rt.n);
        ck.check("ratio value", &what, cmp.control, &r["control"], TOL, 0.0);
        ck.check(
            "ratio value",
            &what,
            cmp.treatment,
            &r["treatment"],
            TOL,
            0.0,
        );
        ck.check("ratio se", &what, rc.se(), &r["control_se"], TOL, 0.0);
        ck.check("ratio se", &what, rt.se(), &r["treatment_se"], TOL, 0.0);
        ck.check("ratio diff", &what, cmp.diff, &r["diff"], TOL, cmp.se);
        ck.check("ratio se", &what, cmp.se, &r["se"], TOL, 0.0);
        ck.check("ratio z", &what, cmp.diff / cmp.se, &r["z"], TOL, 0.0);
        ck.check("ratio p", &what, cmp.p_value, &r["p_value"], TOL, 0.0);
        let half = 0.5 * (cmp.diff_ci.hi - cmp.diff_ci.lo);
        ck.check(
            "ratio ci",
            &what,
            cmp.diff_ci.lo,
            &r["ci_lo"],
            TOL_QUANTILE,
            half,
        );
        ck.check(
            "ratio ci",
            &what,
            cmp.diff_ci.hi,
            &r["ci_hi"],
            TOL_QUANTILE,
            half,
        );
        let rel_half = 0.5 * (cmp.rel_ci.hi - cmp.rel_ci.lo);
        ck.check("ratio rel", &what, cmp.rel, &r["rel"], TOL, rel_half);
        ck.check(
            "ratio rel ci",
            &what,
            cmp.rel_ci.lo,
            &r["rel_lo"],
            TOL_QUANTILE,
            rel_half,
        );
        ck.check(
            "ratio rel ci",
            &what,
            cmp.rel_ci.hi,
            &r["rel_hi"],
            TOL_QUANTILE,
            rel_half,
        );
        ck.check("ratio mde", &what, cmp.mde, &r["mde"], TOL_QUANTILE, 0.0);
        assert_eq!(cmp.df, f64::INFINITY);
        for (s, key) in [(&rc, "control_ci"), (&rt, "treatment_ci")] {
            let e = ratio_estimate(s, LEVEL);
            let half = 0.5 * (e.ci.hi - e.ci.lo);
            ck.check(
                "ratio estimate ci",
                &what,
                e.ci.lo,
                &r[key][0],
                TOL_QUANTILE,
                half,
            );
            ck.check(
                "ratio estimate ci",
                &what,
                e.ci.hi,
                &r[key][1],
                TOL_QUANTILE,
                half,
            );
        }
    }

    for (i, (observed, weights)) in srm_data.iter().enumerate() {
        let r = &reference["srm"][i];
        let s = srm(observed, weights);
        let what = format!("{observed:?} vs {weights:?}");
        ck.check("srm chi2", &what, s.chi2, &r["chi2"], TOL, 0.0);
        ck.check("srm p", &what, s.p_value, &r["p_value"], TOL, 0.0);
        assert_eq!(Some(s.df as u64), r["df"].as_u64(), "srm df {what}");
    }

    for (i, x) in normal_cdf_grid().into_iter().enumerate() {
        let got = normal_cdf(x);
        ck.check(
            "normal_cdf",
            &format!("x={x}"),
            got,
            &reference["normal_cdf"][i],
            TOL,
            0.0,
        );
    }
    for (i, p) in normal_quantile_grid().into_iter().enumerate() {
        let got = normal_quantile(p);
        let want = &reference["normal_quantile"][i];
        ck.check(
            "normal_quantile",
            &format!("p={p}"),
            got,
            want,
            TOL_QUANTILE,
            0.0,
        );
    }
    for (i, [t, df]) in t_cdf_grid().into_iter().enumerate() {
        let got = student_t_cdf(t, df);
        let what = format!("t={t} df={df}");
        ck.check(
            "student_t_cdf",
            &what,
            got,
            &reference["t_cdf"][i],
            TOL,
            0.0,
        );
    }
    for (i, [p, df]) in t_quantile_grid().into_iter().enumerate() {
        let got = student_t_quantile(p, df);
        let want = &reference["t_quantile"][i];
        let what = format!("p={p} df={df}");
        ck.check("student_t_quantile", &what, got, want, TOL_QUANTILE, 0.0);
    }
    for (i, [x, k]) in chi2_grid().into_iter().enumerate() {
        let got = chi2_sf(x, k);
        let what = format!("x={x} k={k}");
        ck.check("chi2_sf", &what, got, &reference["chi2_sf"][i], TOL, 0.0);
    }

    eprintln!("reference versions: {}", reference["versions"]);
    eprintln!(
        "{} comparisons; largest relative error per category:",
        ck.checks
    );
    for (category, err) in &ck.worst {
        eprintln!("  {category:<20} {err:.2e}");
    }
    assert!(
        ck.failures.is_empty(),
        "{} of {} comparisons with scipy/statsmodels disagree:\n{}",
        ck.failures.len(),
        ck.checks,
        ck.failures.join("\n")
    );
}

//! An experiment's readout from its per-variant accumulators: each metric's value with a 95%
//! interval per variant, every non-control variant against control (absolute and relative
//! lift with intervals, two-sided p-value, minimum detectable effect, verdict), guardrails, and
//! the sample-ratio-mismatch check against the configured weights.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flashfit_config::Experiment;
use flashfit_stats::{Comparison, Estimate};
use serde::Serialize;

use crate::Result;
use crate::guardrail::{Guardrail, GuardrailResult};
use crate::metrics::{Metric, MetricSummary, VariantAcc};

/// The confidence level of every interval and the significance level `1 - LEVEL`.
pub const LEVEL: f64 = 0.95;
/// Below this SRM p-value the readout is flagged as untrustworthy.
pub const SRM_ALPHA: f64 = 0.001;

/// A number with its 95% interval (NaN: not available).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Valued {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl From<Estimate> for Valued {
    fn from(e: Estimate) -> Self {
        Valued {
            value: e.value,
            ci_low: e.ci.lo,
            ci_high: e.ci.hi,
        }
    }
}

/// One variant's users and metric values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantReport {
    pub variant: String,
    /// The configured weight (None: a variant seen in the events but not configured).
    pub weight: Option<f64>,
    pub users: u64,
    /// Users seen in this and another variant (left out of every metric).
    pub mixed_users: u64,
    /// Users each metric is computed over (e.g. only users with a session for session
    /// duration), and the value.
    pub metrics: BTreeMap<Metric, (usize, Valued)>,
}

/// The verdict on one metric of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    SignificantWin,
    SignificantLoss,
    Inconclusive,
    /// Too few users (or no variation) to test at all.
    NotEnoughData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::SignificantWin => "significant win",
            Verdict::SignificantLoss => "significant loss",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// A non-control variant against control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricComparison {
    pub variant: String,
    pub metric: Metric,
    pub control: f64,
    pub treatment: f64,
    pub abs_lift: Valued,
    pub rel_lift: Valued,
    pub p_value: f64,
    /// Minimum detectable absolute effect at this sample size (alpha 0.05, power 0.8).
    pub mde: f64,
    /// `welch` or `delta`.
    pub test: &'static str,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<GuardrailResult>,
}

/// The sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SrmReport {
    pub chi2: f64,
    pub df: usize,
    pub p_value: f64,
    /// p < [`SRM_ALPHA`]: the split is not what the weights promise; do not trust the readout.
    pub mismatch: bool,
    /// Variant → (observed users, expected users).
    pub counts: BTreeMap<String, (u64, f64)>,
}

/// An experiment's readout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub experiment: String,
    pub control: String,
    /// The events counted: `[from, to)` (the experiment's window narrowed by `--from/--to`).
    pub from: Option<String>,
    pub to: Option<String>,
    pub computed_at: String,
    pub experiments_hash: String,
    pub variants: Vec<VariantReport>,
    pub comparisons: Vec<MetricComparison>,
    pub srm: SrmReport,
    pub warnings: Vec<String>,
}

fn estimate(s: &MetricSummary) -> (usize, Estimate) {
    match s {
        MetricSummary::Mean(m) => (m.n, flashfit_stats::mean_estimate(m, LEVEL)),
        MetricSummary::Ratio(r) => (r.n, flashfit_stats::ratio_estimate(r, LEVEL)),
    }
}

fn compare(c: &MetricSummary, t: &MetricSummary) -> (Comparison, &'static str) {
    match (c, t) {
        (MetricSummary::Mean(c), MetricSummary::Mean(t)) => {
            (flashfit_stats::welch(c, t, LEVEL), "welch")
        }
        (MetricSummary::Ratio(c), MetricSummary::Ratio(t)) => {
            (flashfit_stats::ratio_compare(c, t, LEVEL), "delta")
        }
        _ => unreachable!("a metric has one kind"),
    }
}

/// What the readout is over.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub name: &'a str,
    pub experiment: &'a Experiment,
    pub experiments_hash: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub computed_at: chrono::DateTime<chrono::Utc>,
}

/// Builds the readout from the variants' accumulators.
pub fn build(scope: &Scope<'_>, accs: &BTreeMap<String, VariantAcc>) -> Result<Report> {
    let exp = scope.experiment;
    let control = exp.control_name().unwrap_or_default().to_owned();
    let guardrails = exp
        .guardrails
        .iter()
        .map(|g| Guardrail::parse(g))
        .collect::<Result<Vec<_>>>()?;
    let mut warnings = Vec::new();
    // Configured variants first, in config order; then any the events name but the config
    // does not.
    let mut names: Vec<String> = exp.variants.iter().map(|v| v.name.clone()).collect();
    for n in accs.keys() {
        if !names.contains(n) {
            warnings.push(format!(
                "variant `{n}` is in the events but not in the experiment's config"
            ));
            names.push(n.clone());
        }
    }
    let empty = VariantAcc::default();
    let acc = |n: &str| accs.get(n).unwrap_or(&empty);
    let mut variants = Vec::new();
    for n in &names {
        let a = acc(n);
        let metrics = Metric::ALL
            .into_iter()
            .map(|m| {
                let (k, e) = estimate(&a.summary(m));
                (m, (k, Valued::from(e)))
            })
            .collect();
        if a.mixed > 0 {
            warnings.push(format!(
                "{} users of `{n}` were also attributed to another variant: left out",
                a.mixed
            ));
        }
        variants.push(VariantReport {
            variant: n.clone(),
            weight: exp.variants.iter().find(|v| &v.name == n).map(|v| v.weight),
            users: a.users,
            mixed_users: a.mixed,
            metrics,
        });
    }
    let mut comparisons = Vec::new();
    let c = acc(&control);
    for n in names.iter().filter(|n| **n != control) {
        let t = acc(n);
        for m in Metric::ALL {
            let (cmp, test) = compare(&c.summary(m), &t.summary(m));
            let verdict = if cmp.p_value.is_nan() {
                Verdict::NotEnoughData
            } else if cmp.p_value < 1.0 - LEVEL {
                if cmp.diff > 0.0 {
                    Verdict::SignificantWin
                } else {
                    Verdict::SignificantLoss
                }
            } else {
                Verdict::Inconclusive
            };
            let abs_lift = Valued {
                value: cmp.diff,
                ci_low: cmp.diff_ci.lo,
                ci_high: cmp.diff_ci.hi,
            };
            let rel_lift = Valued {
                value: cmp.rel,
                ci_low: cmp.rel_ci.lo,
                ci_high: cmp.rel_ci.hi,
            };
            let guardrails = guardrails
                .iter()
                .filter(|g| g.metric == m)
                .map(|g| {
                    let l = if g.relative { rel_lift } else { abs_lift };
                    g.judge(l.value, l.ci_low, l.ci_high)
                })
                .collect();
            comparisons.push(MetricComparison {
                variant: n.clone(),
                metric: m,
                control: cmp.control,
                treatment: cmp.treatment,
                abs_lift,
                rel_lift,
                p_value: cmp.p_value,
                mde: cmp.mde,
                test,
                verdict,
                guardrails,
            });
        }
    }
    // SRM over the configured variants with a positive weight.
    let configured: Vec<&flashfit_config::Variant> = exp.variants.iter().collect();
    let observed: Vec<u64> = configured.iter().map(|v| acc(&v.name).users).collect();
    let weights: Vec<f64> = configured.iter().map(|v| v.weight).collect();
    let s = flashfit_stats::srm(&observed, &weights);
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let wsum: f64 = weights.iter().sum();
    let counts = configured
        .iter()
        .zip(&observed)
        .map(|(v, o)| (v.name.clone(), (*o, total * v.weight / wsum)))
        .collect();
    let srm = SrmReport {
        chi2: s.chi2,
        df: s.df,
        p_value: s.p_value,
        mismatch: s.p_value < SRM_ALPHA,
        counts,
    };
    if total == 0.0 {
        warnings.push("no users in this experiment's window yet".into());
    }
    Ok(Report {
        experiment: scope.name.to_owned(),
        control,
        from: scope.from.clone(),
        to: scope.to.clone(),
        computed_at: scope
            .computed_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        experiments_hash: scope.experiments_hash.clone(),
        variants,
        comparisons,
        srm,
        warnings,
    })
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else {
        format!("{:+.1}%", x * 100.0)
    }
}

/// An absolute lift in the metric's unit, with its sign.
fn signed(m: Metric, v: f64) -> String {
    if v > 0.0 {
        format!("+{}", m.format(v))
    } else {
        m.format(v)
    }
}

fn p_text(p: f64) -> String {
    if p.is_nan() {
        "n/a".into()
    } else if p < 0.0001 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

impl Report {
    /// The verdict of `variant` on `metric`.
    pub fn comparison(&self, variant: &str, metric: Metric) -> Option<&MetricComparison> {
        self.comparisons
            .iter()
            .find(|c| c.variant == variant && c.metric == metric)
    }

    /// Every guardrail passed (point estimates).
    pub fn guardrails_pass(&self) -> bool {
        self.comparisons
            .iter()
            .flat_map(|c| &c.guardrails)
            .all(|g| g.pass)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = format!(
            "{} .. {}",
            self.from.as_deref().unwrap_or("start"),
            self.to.as_deref().unwrap_or("now")
        );
        writeln!(
            f,
            "experiment {} (control: {}; events {window}; config {}; computed {})",
            self.experiment, self.control, self.experiments_hash, self.computed_at
        )?;
        if self.srm.mismatch {
            writeln!(f, "{}", "!".repeat(78))?;
            writeln!(
                f,
                "!! SAMPLE RATIO MISMATCH (chi-square p = {}): the users' split is not what the",
                p_text(self.srm.p_value)
            )?;
            writeln!(
                f,
                "!! weights promise. Assignment or logging is broken: DO NOT TRUST THIS READOUT."
            )?;
            writeln!(f, "{}", "!".repeat(78))?;
        }
        let split: Vec<String> = self
            .srm
            .counts
            .iter()
            .map(|(v, (o, e))| format!("{v} {o} (expected {e:.0})"))
            .collect();
        writeln!(
            f,
            "users: {}; sample ratio check: chi2 {:.2}, p = {} ({})",
            split.join(", "),
            self.srm.chi2,
            p_text(self.srm.p_value),
            if self.srm.mismatch {
                "MISMATCH"
            } else {
                "pass"
            }
        )?;
        for m in Metric::ALL {
            writeln!(f)?;
            writeln!(f, "{}", m.as_str())?;
            for v in &self.variants {
                let (n, val) = v.metrics[&m];
                writeln!(
                    f,
                    "  {:<14} {:>10}  95% CI [{}, {}]  (n={n})",
                    v.variant,
                    m.format(val.value),
                    m.format(val.ci_low),
                    m.format(val.ci_high)
                )?;
            }
            for c in self.comparisons.iter().filter(|c| c.metric == m) {
                let mut line = String::new();
                let _ = write!(
                    line,
                    "  {} vs {}: {} (95% CI [{}, {}]), abs {}, p = {} ({}): {}",
                    c.variant,
                    self.control,
                    pct(c.rel_lift.value),
                    pct(c.rel_lift.ci_low),
                    pct(c.rel_lift.ci_high),
                    signed(m, c.abs_lift.value),
                    p_text(c.p_value),
                    c.test,
                    c.verdict.as_str().to_uppercase()
                );
                if c.verdict == Verdict::Inconclusive {
                    let _ = write!(
                        line,
                        " (minimum detectable effect now: {} absolute)",
                        m.format(c.mde)
                    );
                }
                writeln!(f, "{line}")?;
                for g in &c.guardrails {
                    writeln!(
                        f,
                        "    guardrail `{}`: {}{}",
                        g.guardrail,
                        if g.pass { "pass" } else { "FAIL" },
                        if g.certain {
                            ""
                        } else {
                            " (the interval crosses the threshold)"
                        }
                    )?;
                }
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

//! Guardrails from the experiments config: `"<metric> <op> <threshold>[%]"`, e.g.
//! `"mean_session_duration_s >= -5%"` (the treatment's relative lift against control must be
//! at least -5%) or `"return_rate_7d >= -0.02"` (absolute lift).

use serde::Serialize;

use crate::metrics::Metric;
use crate::{Error, Result};

/// A parsed guardrail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guardrail {
    pub text: String,
    pub metric: Metric,
    /// `>=` or `<=`.
    pub at_least: bool,
    pub threshold: f64,
    /// The threshold is a relative lift (`%`), not an absolute one.
    pub relative: bool,
}

/// How a guardrail came out for one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardrailResult {
    pub guardrail: String,
    /// The point estimate of the lift is on the allowed side.
    pub pass: bool,
    /// The whole 95% interval is on the same side as the point estimate (the outcome will not
    /// flip with more users at this effect).
    pub certain: bool,
}

impl Guardrail {
    pub fn parse(text: &str) -> Result<Guardrail> {
        let bad = |why: &str| Error::Config(format!("guardrail `{text}`: {why}"));
        let (metric, rest, at_least) = if let Some((m, r)) = text.split_once(">=") {
            (m, r, true)
        } else if let Some((m, r)) = text.split_once("<=") {
            (m, r, false)
        } else {
            return Err(bad("expected `<metric> >= <threshold>` or `<=`"));
        };
        let metric = Metric::parse(metric.trim()).ok_or_else(|| {
            bad(&format!(
                "unknown metric; one of {}",
                Metric::ALL.map(Metric::as_str).join(", ")
            ))
        })?;
        let rest = rest.trim();
        let (number, relative) = match rest.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (rest, false),
        };
        let mut threshold: f64 = number
            .parse()
            .map_err(|_| bad("the threshold is not a number"))?;
        if relative {
            threshold /= 100.0;
        }
        if !threshold.is_finite() {
            return Err(bad("the threshold is not finite"));
        }
        Ok(Guardrail {
            text: text.trim().to_owned(),
            metric,
            at_least,
            threshold,
            relative,
        })
    }

    /// Judges a lift (`value` with interval `lo..hi`, relative or absolute as the guardrail
    /// says).
    pub fn judge(&self, value: f64, lo: f64, hi: f64) -> GuardrailResult {
        let ok = |x: f64| {
            if self.at_least {
                x >= self.threshold
            } else {
                x <= self.threshold
            }
        };
        let pass = !value.is_nan() && ok(value);
        let certain = !lo.is_nan() && !hi.is_nan() && ok(lo) == pass && ok(hi) == pass;
        GuardrailResult {
            guardrail: self.text.clone(),
            pass,
            certain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guardrails_parse_and_judge() {
        let g = Guardrail::parse("mean_session_duration_s >= -5%").expect("parse");
        assert_eq!(g.metric, Metric::MeanSessionDurationS);
        assert!(g.at_least && g.relative);
        assert!((g.threshold + 0.05).abs() < 1e-12);
        assert_eq!(
            g.judge(-0.01, -0.03, 0.01),
            GuardrailResult {
                guardrail: g.text.clone(),
                pass: true,
                certain: true
            }
        );
        let r = g.judge(-0.02, -0.08, 0.04);
        assert!(r.pass && !r.certain);
        let r = g.judge(-0.09, -0.12, -0.06);
        assert!(!r.pass && r.certain);
        let a = Guardrail::parse("return_rate_7d<=0.5").expect("parse");
        assert!(!a.at_least && !a.relative);
        for bad in ["ctr > 1", "nope >= 1", "ctr >= x%"] {
            assert!(Guardrail::parse(bad).is_err(), "{bad}");
        }
    }
}

//! The readout's metrics and their per-variant accumulators over `kpi_users` rows (one row per
//! experiment, variant and user, see `schemas/kpi_users.sql`): streamed, so a readout holds a
//! few numbers per variant, not the users.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use flashfit_stats::{RatioSummary, Summary};
use serde::Serialize;

use crate::{Error, Result};

/// A metric of the readout. The user is the unit of randomisation, so every metric is either a
/// mean of per-user values (Welch's t test) or a ratio of per-user sums (the delta method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Clicks per impression (ratio over users).
    Ctr,
    /// Conversions per impression (ratio over users).
    ConversionRate,
    /// Mean session seconds of a user (users with a session).
    MeanSessionDurationS,
    /// Mean rating a user gave (users who rated).
    MeanRating,
    /// Share of users active on a later day within 7 days of their first exposure.
    #[serde(rename = "return_rate_7d")]
    ReturnRate7d,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Ctr,
        Metric::ConversionRate,
        Metric::MeanSessionDurationS,
        Metric::MeanRating,
        Metric::ReturnRate7d,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Ctr => "ctr",
            Metric::ConversionRate => "conversion_rate",
            Metric::MeanSessionDurationS => "mean_session_duration_s",
            Metric::MeanRating => "mean_rating",
            Metric::ReturnRate7d => "return_rate_7d",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the metric is a ratio of per-user sums (delta method).
    pub fn is_ratio(self) -> bool {
        matches!(self, Metric::Ctr | Metric::ConversionRate)
    }

    /// How the value is shown: percentages for rates.
    pub fn format(self, v: f64) -> String {
        if v.is_nan() {
            return "n/a".into();
        }
        match self {
            Metric::Ctr | Metric::ConversionRate | Metric::ReturnRate7d => {
                format!("{:.2}%", v * 100.0)
            }
            Metric::MeanSessionDurationS => format!("{v:.1} s"),
            Metric::MeanRating => format!("{v:.3}"),
        }
    }
}

/// Welford's running mean and variance of per-user values.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeanAcc {
    n: usize,
    mean: f64,
    m2: f64,
}

impl MeanAcc {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// The sample summary; the variance is NaN below 2 users.
    pub fn summary(&self) -> Summary {
        Summary {
            n: self.n,
            mean: if self.n == 0 { f64::NAN } else { self.mean },
            var: if self.n < 2 {
                f64::NAN
            } else {
                self.m2 / (self.n - 1) as f64
            },
        }
    }
}

/// Running moments of per-user numerator and denominator sums (co-moment by Welford too).
#[derive(Debug, Clone, Copy, Default)]
pub struct RatioAcc {
    n: usize,
    mx: f64,
    my: f64,
    mxx: f64,
    myy: f64,
    mxy: f64,
}

impl RatioAcc {
    pub fn add(&mut self, num: f64, den: f64) {
        self.n += 1;
        let n = self.n as f64;
        let dx = num - self.mx;
        let dy = den - self.my;
        self.mx += dx / n;
        self.my += dy / n;
        self.mxx += dx * (num - self.mx);
        self.myy += dy * (den - self.my);
        self.mxy += dx * (den - self.my);
    }

    pub fn summary(&self) -> RatioSummary {
        let d = if self.n < 2 {
            f64::NAN
        } else {
            (self.n - 1) as f64
        };
        RatioSummary {
            n: self.n,
            num_mean: self.mx,
            den_mean: self.my,
            num_var: self.mxx / d,
            den_var: self.myy / d,
            cov: self.mxy / d,
        }
    }
}

/// What one variant's users add up to.
#[derive(Debug, Clone, Default)]
pub struct VariantAcc {
    /// Users counted (attributed to this variant only).
    pub users: u64,
    /// Users attributed to this and another variant of the experiment: left out.
    pub mixed: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub ctr: RatioAcc,
    pub conversion: RatioAcc,
    pub session: MeanAcc,
    pub rating: MeanAcc,
    pub returned: MeanAcc,
}

/// One metric's summary for a variant.
#[derive(Debug, Clone, Copy)]
pub enum MetricSummary {
    Mean(Summary),
    Ratio(RatioSummary),
}

impl VariantAcc {
    pub fn summary(&self, m: Metric) -> MetricSummary {
        match m {
            Metric::Ctr => MetricSummary::Ratio(self.ctr.summary()),
            Metric::ConversionRate => MetricSummary::Ratio(self.conversion.summary()),
            Metric::MeanSessionDurationS => MetricSummary::Mean(self.session.summary()),
            Metric::MeanRating => MetricSummary::Mean(self.rating.summary()),
            Metric::ReturnRate7d => MetricSummary::Mean(self.returned.summary()),
        }
    }
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    b.column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Data(format!("kpi_users has no `{name}`")))
}

/// Adds the rows of a `kpi_users` batch to the variants they belong to (the batch may hold
/// one experiment only: the caller filters).
pub fn accumulate(b: &RecordBatch, into: &mut BTreeMap<String, VariantAcc>) -> Result<()> {
    let b = cast_all(b)?;
    let variant = col(&b, "variant")?.as_string::<i32>();
    let int = |n: &str| -> Result<arrow::array::Int64Array> {
        Ok(col(&b, n)?.as_primitive::<Int64Type>().clone())
    };
    let float = |n: &str| -> Result<arrow::array::Float64Array> {
        Ok(col(&b, n)?.as_primitive::<Float64Type>().clone())
    };
    let (impressions, clicks, conversions, sessions, ratings, seen) = (
        int("impressions")?,
        int("clicks")?,
        int("conversions")?,
        int("sessions")?,
        int("ratings")?,
        int("variants_seen")?,
    );
    let (session_s, rating_sum) = (float("session_seconds")?, float("rating_sum")?);
    let returned = col(&b, "returned_7d")?.as_boolean().clone();
    for i in 0..b.num_rows() {
        let acc = into.entry(variant.value(i).to_owned()).or_default();
        if seen.value(i) > 1 {
            acc.mixed += 1;
            continue;
        }
        acc.users += 1;
        let imp = impressions.value(i) as f64;
        acc.impressions += impressions.value(i).max(0) as u64;
        acc.clicks += clicks.value(i).max(0) as u64;
        acc.ctr.add(clicks.value(i) as f64, imp);
        acc.conversion.add(conversions.value(i) as f64, imp);
        if sessions.value(i) > 0 {
            acc.session
                .add(session_s.value(i) / sessions.value(i) as f64);
        }
        if ratings.value(i) > 0 {
            acc.rating
                .add(rating_sum.value(i) / ratings.value(i) as f64);
        }
        acc.returned
            .add(if returned.is_valid(i) && returned.value(i) {
                1.0
            } else {
                0.0
            });
    }
    Ok(())
}

/// The batch with its count columns as Int64 and sums as Float64 (DuckDB and DataFusion may
/// type aggregates differently).
fn cast_all(b: &RecordBatch) -> Result<RecordBatch> {
    use arrow::datatypes::DataType;
    let schema = b.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(b.columns()) {
        let to = match f.name().as_str() {
            "impressions" | "clicks" | "saves" | "wears" | "likes" | "conversions" | "sessions"
            | "ratings" | "active_days" | "variants_seen" => Some(DataType::Int64),
            "session_seconds" | "rating_sum" => Some(DataType::Float64),
            "variant" | "experiment" | "user_id" => Some(DataType::Utf8),
            _ => None,
        };
        match to {
            Some(t) if c.data_type() != &t => {
                columns.push(arrow::compute::cast(c, &t).map_err(|e| Error::Data(e.to_string()))?);
                fields.push(arrow::datatypes::Field::new(f.name(), t, true));
            }
            _ => {
                columns.push(c.clone());
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
    }
    RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
    .map_err(|e| Error::Data(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_moments_equal_the_batch_formulas() {
        let mut rng = flashfit_stats::Rng::new(7);
        let xs: Vec<f64> = (0..1000).map(|_| rng.normal() * 3.0 + 10.0).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x * 2.0 + rng.normal()).collect();
        let mut m = MeanAcc::default();
        let mut r = RatioAcc::default();
        for (x, y) in xs.iter().zip(&ys) {
            m.add(*x);
            r.add(*x, *y);
        }
        let want = Summary::of(&xs);
        let got = m.summary();
        assert_eq!(got.n, want.n);
        assert!((got.mean - want.mean).abs() < 1e-9);
        assert!((got.var - want.var).abs() / want.var < 1e-9);
        let want = RatioSummary::of(&xs, &ys);
        let got = r.summary();
        for (a, b) in [
            (got.num_mean, want.num_mean),
            (got.den_mean, want.den_mean),
            (got.num_var, want.num_var),
            (got.den_var, want.den_var),
            (got.cov, want.cov),
        ] {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert!(MeanAcc::default().summary().var.is_nan());
    }
}

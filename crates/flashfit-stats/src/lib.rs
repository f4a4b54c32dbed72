//! Pure statistics for A/B test readouts: per-variant summaries and estimates, Welch's t test
//! for per-user means, a delta-method z test for ratio metrics (e.g. clicks / impressions
//! with the user as the randomisation unit), relative lifts, minimum detectable effects, the
//! sample-ratio-mismatch check, and the distribution functions underneath (normal, Student t,
//! chi-square), all implemented with `std` only.
//!
//! Nothing here silently turns missing information into numbers: with fewer than 2 users in
//! a group ("not enough users"), no variation at all, or a ratio whose mean denominator is 0,
//! standard errors, intervals and p-values are NaN (see [`Comparison`]).
//!
//! ```
//! use flashfit_stats::{Summary, welch};
//!
//! let control = Summary::of(&[12.0, 30.0, 41.0, 8.0, 25.0, 19.0]);
//! let treatment = Summary::of(&[22.0, 35.0, 48.0, 15.0, 29.0, 31.0]);
//! let c = welch(&control, &treatment, 0.95);
//! assert!(c.diff_ci.contains(c.diff));
//! assert!(c.p_value > 0.0 && c.p_value < 1.0);
//! ```
#![deny(missing_docs)]

mod compare;
pub mod dist;
mod rng;
mod srm;
mod summary;

pub use compare::{
    Comparison, Estimate, Interval, mean_estimate, ratio_compare, ratio_estimate, welch,
};
pub use dist::{chi2_sf, normal_cdf, normal_quantile, student_t_cdf, student_t_quantile};
pub use rng::Rng;
pub use srm::{Srm, srm};
pub use summary::{RatioSummary, Summary};

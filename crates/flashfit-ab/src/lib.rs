//! A/B readouts a product owner can decide on (`flashfit ab report`): per-user metrics from
//! the `kpi_users` rollup ([`metrics`]), per variant each metric with a 95% interval, every
//! variant against control with absolute and relative lift, p-value, minimum detectable effect
//! and a verdict ([`report`]), guardrails from the config ([`guardrail`]), the
//! sample-ratio-mismatch check, a self-contained HTML page ([`html`]) and the `ab_results`
//! table ([`results`]). The statistics are `flashfit-stats`.

pub mod guardrail;
pub mod html;
pub mod metrics;
pub mod report;
pub mod results;

use std::collections::BTreeMap;

use flashfit_config::Experiment;
use flashfit_sinks::kpi::Window;
use flashfit_sinks::sql::Limits;
use flashfit_sinks::table::Table;

pub use report::{Report, Scope};

/// What can go wrong in a readout; none of it is helped by retrying in-process except
/// `Storage` (the warehouse was unreachable).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("reading the KPI tables: {0}")]
    Data(String),
    #[error("writing ab_results: {0}")]
    Storage(String),
    #[error("drawing a chart: {0}")]
    Render(String),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Storage(_))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The window a readout counts: the experiment's, narrowed by `from`/`to`.
pub fn window(
    name: &str,
    exp: &Experiment,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Window {
    let (start, end) = exp.window();
    let later = |a: Option<_>, b: Option<_>| match (a, b) {
        (Some(a), Some(b)) => Some(std::cmp::max(a, b)),
        (a, b) => a.or(b),
    };
    let earlier = |a: Option<_>, b: Option<_>| match (a, b) {
        (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
        (a, b) => a.or(b),
    };
    Window {
        experiment: name.to_owned(),
        start: later(start, from),
        end: earlier(end, to),
    }
}

/// Reads `experiment`'s users from `kpi_events` (within `window`) and builds the readout.
pub async fn readout(
    events: &Table,
    experiments: &BTreeMap<String, Experiment>,
    experiment: &str,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    limits: &Limits,
) -> Result<Report> {
    let exp = experiments.get(experiment).ok_or_else(|| {
        Error::Config(format!(
            "no experiment `{experiment}` in the config (known: {})",
            experiments.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let w = window(experiment, exp, from, to);
    let mut accs = BTreeMap::new();
    flashfit_sinks::kpi::users_of(
        events,
        std::slice::from_ref(&w),
        Some(experiment),
        limits,
        async |b| {
            metrics::accumulate(&b, &mut accs)
                .map_err(|e| flashfit_sinks::Error::Query(e.to_string()))
        },
    )
    .await
    .map_err(|e| Error::Data(e.to_string()))?;
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    report::build(
        &Scope {
            name: experiment,
            experiment: exp,
            experiments_hash: experiments_hash(experiments),
            from: fmt(w.start),
            to: fmt(w.end),
            computed_at: chrono::Utc::now(),
        },
        &accs,
    )
}

/// The hash naming the experiments config (the same as assignment records).
pub fn experiments_hash(experiments: &BTreeMap<String, Experiment>) -> String {
    flashfit_outfits::experiments::config_hash(experiments)
}

#[cfg(test)]
mod tests;

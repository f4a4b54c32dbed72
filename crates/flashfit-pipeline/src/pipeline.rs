use std::sync::Arc;

use flashfit_config::Config;
use flashfit_runtime::Stage;
use flashfit_storage::Location;
use serde::Deserialize;

use crate::{Error, Result};

/// The stages that exist, in pipeline order.
pub const KNOWN_STAGES: &[&str] = &["quality", "detect", "classify", "attributes", "embed"];

/// A pipeline definition: the ordered list of stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub stages: Vec<String>,
}

impl Pipeline {
    /// The definition shipped in `pipelines/default.toml`.
    pub fn default_pipeline() -> Self {
        Self::parse(include_str!("../../../pipelines/default.toml")).unwrap_or(Pipeline {
            stages: vec!["quality".into()],
        })
    }

    pub fn parse(text: &str) -> Result<Self> {
        let p: Pipeline =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("pipeline: {e}")))?;
        if p.stages.is_empty() {
            return Err(Error::Invalid("pipeline: no stages".into()));
        }
        if p.stages.iter().skip(1).any(|s| s == "quality") {
            return Err(Error::Invalid(
                "pipeline: `quality` reads the uploads and must come first".into(),
            ));
        }
        if p.stages.first().is_some_and(|s| s != "quality") {
            return Err(Error::Invalid(
                "pipeline: the first stage must be `quality`".into(),
            ));
        }
        for s in &p.stages {
            if !KNOWN_STAGES.contains(&s.as_str()) {
                return Err(Error::Invalid(format!(
                    "pipeline: unknown stage `{s}` (known: {})",
                    KNOWN_STAGES.join(", ")
                )));
            }
        }
        Ok(p)
    }

    pub fn load(path: Option<&std::path::Path>) -> Result<Self> {
        match path {
            Some(p) => Self::parse(&std::fs::read_to_string(p)?),
            None => Ok(Self::default_pipeline()),
        }
    }

    /// The topic `stage` reads: the previous stage's output (the uploads for the first).
    pub fn input_of(&self, stage: &str, topics: &flashfit_schema::Topics) -> Option<String> {
        let i = self.stages.iter().position(|s| s == stage)?;
        match i {
            0 => Some(topics.uploads()),
            _ => topics.output_of(&self.stages[i - 1]),
        }
    }

    /// True when `stage` is the last one, which emits the `processed` status.
    pub fn is_terminal(&self, stage: &str) -> bool {
        self.stages.last().is_some_and(|s| s == stage)
    }
}

/// Sinks: workers that read the pipeline's last topic and write tables.
pub const SINKS: &[&str] = &["parquet", "lance"];

/// Every worker outside the enrichment chain: the sinks, `feedback` (flashfit.feedback →
/// preference weights) and `kpi` (flashfit.kpi → the kpi_events table).
pub const WORKERS: &[&str] = &["parquet", "lance", "feedback", "kpi"];

/// A stage with the configuration its worker runs with.
#[derive(Clone)]
pub struct Worker {
    pub config: Config,
    pub stage: Arc<dyn Stage>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("stage", &self.stage.name())
            .finish()
    }
}

/// The worker `flashfit worker <name>` runs: [`worker_config`] + [`build_stage`]. `flashfit
/// run` builds every worker of the system through the same function.
pub fn build_worker(name: &str, config: &Config, pipeline: &Pipeline) -> Result<Worker> {
    let config = worker_config(name, config);
    let stage = build_stage(name, &config, pipeline)?;
    Ok(Worker { config, stage })
}

/// The configuration a worker for `name` runs with: a sink's runtime batch is its file roll
/// (rows, time), with room in flight for a whole file.
pub fn worker_config(name: &str, config: &Config) -> Config {
    let mut c = config.clone();
    if name == "parquet" {
        c.runtime.batch_size = c.parquet.max_rows.max(1);
        c.runtime.linger_ms = c.parquet.roll_ms;
        c.runtime.max_in_flight_messages =
            c.runtime.max_in_flight_messages.max(2 * c.parquet.max_rows);
    }
    if name == "lance" {
        c.runtime.batch_size = c.lance.batch_rows.max(1);
        c.runtime.linger_ms = c.lance.linger_ms;
    }
    if name == "kpi" {
        c.runtime.batch_size = c.kpi.max_rows.max(1);
        c.runtime.linger_ms = c.kpi.roll_ms;
        c.runtime.max_in_flight_messages = c.runtime.max_in_flight_messages.max(2 * c.kpi.max_rows);
    }
    c
}

fn warehouse_table(
    config: &Config,
    name: &str,
    layout: flashfit_sinks::table::Layout,
) -> Result<flashfit_sinks::table::Table> {
    let warehouse = Location::open(&config.warehouse_uri, &config.s3)?;
    Ok(flashfit_sinks::table::Table::new(
        warehouse.store().clone(),
        warehouse.prefix().clone().join(name),
        layout,
    ))
}

/// The `garments` table under the configured warehouse.
pub fn garments_table(config: &Config) -> Result<flashfit_sinks::table::Table> {
    warehouse_table(
        config,
        &config.parquet.table,
        flashfit_sinks::table::GARMENTS,
    )
}

/// The `garment_deletes` tombstone table under the configured warehouse.
pub fn deletes_table(config: &Config) -> Result<flashfit_sinks::table::Table> {
    warehouse_table(
        config,
        &config.parquet.deletes_table,
        flashfit_sinks::table::GARMENT_DELETES,
    )
}

/// The `kpi_events` table under the configured warehouse.
pub fn kpi_table(config: &Config) -> Result<flashfit_sinks::table::Table> {
    warehouse_table(config, &config.kpi.table, flashfit_sinks::table::KPI_EVENTS)
}

/// `flashfit kpi-daily`: rebuilds the `kpi_daily` rollup from `kpi_events`.
pub async fn kpi_daily(config: &Config) -> Result<flashfit_sinks::kpi::Rollup> {
    let warehouse = Location::open(&config.warehouse_uri, &config.s3)?;
    let out = warehouse
        .prefix()
        .clone()
        .join(config.kpi.daily_table.as_str());
    flashfit_sinks::kpi::rollup_daily(&kpi_table(config)?, &out)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// `flashfit compact`: rebuilds `<table>_current` next to the `garments` table.
pub async fn compact(config: &Config) -> Result<flashfit_sinks::compact::Compacted> {
    let table = garments_table(config)?;
    let warehouse = Location::open(&config.warehouse_uri, &config.s3)?;
    let out = warehouse
        .prefix()
        .clone()
        .join(format!("{}_current", config.parquet.table).as_str());
    flashfit_sinks::compact::compact_current(&table, &deletes_table(config)?, &out)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// LanceDB upkeep on the garments and tombstone tables (what `flashfit worker lance` runs in
/// the background), for `flashfit compact`.
pub async fn lance_upkeep(config: &Config) -> Result<Vec<flashfit_lance::upkeep::Report>> {
    let lance = |e: flashfit_lance::Error| Error::Invalid(e.to_string());
    let db = flashfit_lance::connect(&config.lancedb_uri, &config.s3, &config.lance)
        .await
        .map_err(lance)?;
    let tables = [
        flashfit_lance::garments(&db, &config.lance.table)
            .await
            .map_err(lance)?,
        flashfit_lance::tombstones(&db, &config.lance.deletes_table)
            .await
            .map_err(lance)?,
    ];
    let mut out = Vec::new();
    for t in &tables {
        out.push(
            flashfit_lance::upkeep::run(t, &config.lance)
                .await
                .map_err(lance)?,
        );
    }
    Ok(out)
}

/// What `flashfit search` looks for.
#[derive(Debug, Clone)]
pub enum SearchQuery {
    /// Garments like this one of the user's (image vectors).
    Like(String),
    /// Captions near this text (all-MiniLM-L6-v2 text vectors).
    Text(String),
}

/// `flashfit search`: the user's garments nearest to a garment or a text, best first.
pub async fn search(
    config: &Config,
    user_id: &str,
    query: &SearchQuery,
    k: usize,
    filters: &flashfit_lance::search::Filters,
) -> Result<Vec<flashfit_lance::search::Hit>> {
    let searcher = crate::serve::Searcher::open(config).await?;
    let lance = |e: flashfit_lance::Error| Error::Invalid(e.to_string());
    match query {
        SearchQuery::Like(g) => {
            flashfit_lance::search::like(searcher.table(), user_id, g, k, filters)
                .await
                .map_err(lance)
        }
        SearchQuery::Text(t) => {
            let v = searcher.text_vector(t).await.map_err(Error::Invalid)?;
            flashfit_lance::search::text(searcher.table(), user_id, v, k, filters)
                .await
                .map_err(lance)
        }
    }
}

/// Builds a stage by name from the configuration.
pub fn build_stage(name: &str, config: &Config, pipeline: &Pipeline) -> Result<Arc<dyn Stage>> {
    let topics = flashfit_schema::Topics::new(config.kafka.topic_prefix.clone());
    if name == "feedback" {
        return Ok(Arc::new(
            flashfit_prefs::stage::FeedbackStage::new(
                config.database_url.expose(),
                crate::personal::LanceLookup::new(config),
                topics.feedback(),
            )
            .with_grace(std::time::Duration::from_millis(
                config.feedback.unknown_garment_grace_ms,
            )),
        ));
    }
    if name == "kpi" {
        return Ok(Arc::new(
            flashfit_sinks::stage::ParquetSink::new(
                kpi_table(config)?,
                topics.kpi(),
                config.parquet.max_bytes,
            )
            .named("kpi"),
        ));
    }
    if SINKS.contains(&name) {
        let last = pipeline
            .stages
            .last()
            .map(String::as_str)
            .unwrap_or("quality");
        let input = topics
            .output_of(last)
            .ok_or_else(|| Error::Invalid(format!("stage `{last}` has no output topic")))?;
        if name == "lance" {
            return Ok(Arc::new(flashfit_lance::stage::LanceSink::new(
                &config.lancedb_uri,
                &config.s3,
                &config.lance,
                input,
                topics.deletes(),
            )));
        }
        return Ok(Arc::new(
            flashfit_sinks::stage::ParquetSink::new(
                garments_table(config)?,
                input,
                config.parquet.max_bytes,
            )
            .with_route(topics.deletes(), deletes_table(config)?),
        ));
    }
    if !pipeline.stages.iter().any(|s| s == name) {
        return Err(Error::Invalid(format!(
            "stage `{name}` is not in the pipeline ({})",
            pipeline.stages.join(", ")
        )));
    }
    match name {
        "quality" => {
            let uri = config.uploads_uri.as_deref().ok_or_else(|| {
                Error::Invalid("the quality stage needs FLASHFIT_UPLOADS_URI (s3://bucket/prefix or file:///dir)".into())
            })?;
            let uploads = Location::open(uri, &config.s3)?;
            Ok(Arc::new(flashfit_quality::QualityStage::new(
                uploads,
                config.quality.clone(),
                config.runtime.concurrency,
                pipeline.is_terminal(name),
                &flashfit_schema::Topics::new(config.kafka.topic_prefix.clone()),
            )))
        }
        "detect" | "classify" | "attributes" | "embed" => {
            crate::vision::model_stage(name, config, pipeline)
        }
        other => Err(Error::Invalid(format!("unknown stage `{other}`"))),
    }
}

#[cfg(test)]
mod worker_tests {
    use super::*;

    #[test]
    fn every_worker_builds_with_its_own_name_and_input() {
        let config = Config::default();
        let p = Pipeline::default_pipeline();
        for (name, input) in [
            ("parquet", "flashfit.embedded"),
            ("lance", "flashfit.embedded"),
            ("feedback", "flashfit.feedback"),
            ("kpi", "flashfit.kpi"),
        ] {
            let s = build_stage(name, &config, &p).expect(name);
            assert_eq!((s.name(), s.input_topic()), (name, input));
        }
    }
}

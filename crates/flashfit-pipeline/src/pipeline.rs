use std::sync::Arc;

use flashfit_config::Config;
use flashfit_runtime::Stage;
use flashfit_storage::Location;
use serde::Deserialize;

use crate::{Error, Result};

pub use flashfit_schema::StageName;

/// A pipeline definition: the ordered list of enrichment stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub stages: Vec<StageName>,
}

impl Pipeline {
    /// The definition shipped in `pipelines/default.toml`.
    pub fn default_pipeline() -> Self {
        Self::parse(include_str!("../../../pipelines/default.toml")).unwrap_or(Pipeline {
            stages: vec![StageName::Quality],
        })
    }

    pub fn parse(text: &str) -> Result<Self> {
        let p: Pipeline =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("pipeline: {e}")))?;
        if p.stages.is_empty() {
            return Err(Error::Invalid("pipeline: no stages".into()));
        }
        if let Some(s) = p.stages.iter().find(|s| !s.is_enrichment()) {
            return Err(Error::Invalid(format!(
                "pipeline: `{s}` is a worker, not a pipeline stage (stages: {})",
                StageName::chain()
                    .map(StageName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if p.stages.first() != Some(&StageName::Quality) {
            return Err(Error::Invalid(
                "pipeline: the first stage must be `quality`".into(),
            ));
        }
        if p.stages.iter().skip(1).any(|s| *s == StageName::Quality) {
            return Err(Error::Invalid(
                "pipeline: `quality` reads the uploads and must come first".into(),
            ));
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
    pub fn input_of(&self, stage: StageName, topics: &flashfit_schema::Topics) -> Option<String> {
        let i = self.stages.iter().position(|s| *s == stage)?;
        match i {
            0 => Some(topics.uploads()),
            _ => topics.output_of(self.stages[i - 1]),
        }
    }

    /// True when `stage` is the last one, which emits the `processed` status.
    pub fn is_terminal(&self, stage: StageName) -> bool {
        self.stages.last() == Some(&stage)
    }

    /// The pipeline's last stage (whose topic the sinks read).
    pub fn last(&self) -> StageName {
        self.stages.last().copied().unwrap_or(StageName::Quality)
    }
}

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
pub fn build_worker(name: StageName, config: &Config, pipeline: &Pipeline) -> Result<Worker> {
    let config = worker_config(name, config);
    let stage = build_stage(name, &config, pipeline)?;
    Ok(Worker { config, stage })
}

/// The workers a `flashfit worker <name>` process runs: the stage's own and, for `parquet`,
/// the funnel tables' sinks too (`statuses`, `dead_letters`, `feedback_events`: issue 14), each
/// with its own consumer group (`<group_prefix>-<table>`) and dead-letter topic.
pub fn build_workers(name: StageName, config: &Config, pipeline: &Pipeline) -> Result<Vec<Worker>> {
    let mut out = vec![build_worker(name, config, pipeline)?];
    if name == StageName::Parquet {
        let c = worker_config(StageName::Parquet, config);
        for stage in funnel_sinks(&c)? {
            out.push(Worker {
                config: c.clone(),
                stage,
            });
        }
    }
    Ok(out)
}

/// Every consumer group the system runs and the topics it reads, without building a stage
/// (no models loaded): each pipeline stage (`<group_prefix>-<stage>`), the sinks, the feedback
/// and kpi workers and the funnel sinks. `flashfit lag` reports these.
pub fn consumer_groups(config: &Config, pipeline: &Pipeline) -> Vec<(String, Vec<String>)> {
    use flashfit_sinks::layout::{DEAD_LETTERS, FEEDBACK_EVENTS, STATUSES};
    let topics = flashfit_schema::Topics::new(config.kafka.topic_prefix.clone());
    let group = |name: &str| format!("{}-{name}", config.kafka.group_prefix);
    let mut out: Vec<(String, Vec<String>)> = pipeline
        .stages
        .iter()
        .filter_map(|s| Some((group(s.as_str()), vec![pipeline.input_of(*s, &topics)?])))
        .collect();
    let sunk: Vec<String> = topics
        .output_of(pipeline.last())
        .into_iter()
        .chain([topics.deletes()])
        .collect();
    out.push((group(StageName::Parquet.as_str()), sunk.clone()));
    out.push((group(StageName::Lance.as_str()), sunk));
    out.push((group(StageName::Feedback.as_str()), vec![topics.feedback()]));
    out.push((group(StageName::Kpi.as_str()), vec![topics.kpi()]));
    out.push((group(STATUSES.name), vec![topics.status()]));
    let own = topics.dlq(DEAD_LETTERS.name);
    out.push((
        group(DEAD_LETTERS.name),
        dlq_topics(&topics)
            .into_iter()
            .filter(|t| *t != own)
            .collect(),
    ));
    out.push((group(FEEDBACK_EVENTS.name), vec![topics.feedback()]));
    out
}

/// Every dead-letter topic the system writes: each stage's and each funnel sink's.
pub fn dlq_topics(topics: &flashfit_schema::Topics) -> Vec<String> {
    use flashfit_sinks::layout::{DEAD_LETTERS, FEEDBACK_EVENTS, STATUSES};
    StageName::ALL
        .iter()
        .map(|s| s.as_str())
        .chain([STATUSES.name, DEAD_LETTERS.name, FEEDBACK_EVENTS.name])
        .map(|s| topics.dlq(s))
        .collect()
}

/// The sinks of the funnel tables: `flashfit.status` → `statuses`, every stage's dead-letter
/// topic → `dead_letters`, `flashfit.feedback` → `feedback_events`.
fn funnel_sinks(config: &Config) -> Result<Vec<Arc<dyn Stage>>> {
    use flashfit_sinks::layout::{DEAD_LETTERS, FEEDBACK_EVENTS, STATUSES};
    use flashfit_sinks::stage::ParquetSink;
    let topics = flashfit_schema::Topics::new(config.kafka.topic_prefix.clone());
    let max = config.parquet.max_bytes;
    let sink = |layout: flashfit_sinks::layout::Layout, input: String| {
        Ok::<_, Error>(
            ParquetSink::new(warehouse_table(config, layout.name, layout)?, input, max)
                .named(layout.name),
        )
    };
    let dead_letters = warehouse_table(config, DEAD_LETTERS.name, DEAD_LETTERS)?;
    // Every stage's dead letters, and those of the other funnel sinks (not its own: a dead
    // letter that cannot become a row must not come back to it).
    let own = topics.dlq(DEAD_LETTERS.name);
    let mut dlq = dlq_topics(&topics).into_iter().filter(|t| *t != own);
    let first = dlq
        .next()
        .ok_or_else(|| Error::Invalid("no stages".into()))?;
    let mut dl = ParquetSink::new(dead_letters.clone(), first, max).named(DEAD_LETTERS.name);
    for t in dlq {
        dl = dl.with_route(t, dead_letters.clone());
    }
    Ok(vec![
        Arc::new(sink(STATUSES, topics.status())?),
        Arc::new(dl),
        Arc::new(sink(FEEDBACK_EVENTS, topics.feedback())?),
    ])
}

/// The configuration a worker for `name` runs with: a sink's runtime batch is its file roll
/// (rows, time), with room in flight for a whole file.
pub fn worker_config(name: StageName, config: &Config) -> Config {
    let mut c = config.clone();
    if name == StageName::Parquet {
        c.runtime.batch_size = c.parquet.max_rows.max(1);
        c.runtime.linger_ms = c.parquet.roll_ms;
        c.runtime.max_in_flight_messages =
            c.runtime.max_in_flight_messages.max(2 * c.parquet.max_rows);
    }
    if name == StageName::Lance {
        c.runtime.batch_size = c.lance.batch_rows.max(1);
        c.runtime.linger_ms = c.lance.linger_ms;
    }
    if name == StageName::Kpi {
        c.runtime.batch_size = c.kpi.max_rows.max(1);
        c.runtime.linger_ms = c.kpi.roll_ms;
        c.runtime.max_in_flight_messages = c.runtime.max_in_flight_messages.max(2 * c.kpi.max_rows);
    }
    c
}

fn warehouse_table(
    config: &Config,
    name: &str,
    layout: flashfit_sinks::layout::Layout,
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
        flashfit_sinks::layout::GARMENTS,
    )
}

/// The `garment_deletes` tombstone table under the configured warehouse.
pub fn deletes_table(config: &Config) -> Result<flashfit_sinks::table::Table> {
    warehouse_table(
        config,
        &config.parquet.deletes_table,
        flashfit_sinks::layout::GARMENT_DELETES,
    )
}

/// The `kpi_events` table under the configured warehouse.
pub fn kpi_table(config: &Config) -> Result<flashfit_sinks::table::Table> {
    warehouse_table(
        config,
        &config.kpi.table,
        flashfit_sinks::layout::KPI_EVENTS,
    )
}

/// The configured experiments' attribution windows.
pub fn experiment_windows(config: &Config) -> Vec<flashfit_sinks::kpi::Window> {
    config
        .experiments
        .iter()
        .map(|(name, e)| {
            let (start, end) = e.window();
            flashfit_sinks::kpi::Window {
                experiment: name.clone(),
                start,
                end,
            }
        })
        .collect()
}

/// `flashfit kpi-daily`: rebuilds the `kpi_daily` and `kpi_users` rollups from `kpi_events`.
pub async fn kpi_daily(config: &Config) -> Result<flashfit_sinks::kpi::Rollup> {
    let warehouse = Location::open(&config.warehouse_uri, &config.s3)?;
    let out = warehouse
        .prefix()
        .clone()
        .join(config.kpi.daily_table.as_str());
    let events = kpi_table(config)?;
    let mut r = flashfit_sinks::kpi::rollup_daily(&events, &out)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let users_out = warehouse
        .prefix()
        .clone()
        .join(config.kpi.users_table.as_str());
    r.users = Some(
        flashfit_sinks::kpi::rollup_users(
            &events,
            &experiment_windows(config),
            &users_out,
            &flashfit_sinks::sql::Limits::default(),
        )
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?,
    );
    Ok(r)
}

/// `flashfit ab report`: the readout of `experiment` from `kpi_events` (its window narrowed
/// by `from`/`to`), written to the `ab_results` table; returns it and the file written.
pub async fn ab_report(
    config: &Config,
    experiment: &str,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(flashfit_ab::Report, String)> {
    let events = kpi_table(config)?;
    let report = flashfit_ab::readout(
        &events,
        &config.experiments,
        experiment,
        from,
        to,
        &flashfit_sinks::sql::Limits::default(),
    )
    .await
    .map_err(|e| Error::Invalid(e.to_string()))?;
    let warehouse = Location::open(&config.warehouse_uri, &config.s3)?;
    let table = warehouse
        .prefix()
        .clone()
        .join(config.kpi.results_table.as_str());
    let path = flashfit_ab::results::write(&*events.store, &table, &report)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((report, path.to_string()))
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

/// `flashfit compact`, second part: in every table the workers write (`garments`, its
/// tombstones, `kpi_events` and the funnel tables), range markers older than
/// `parquet.fold_markers_after_ms` are folded into one summary per input partition. Returns
/// (table, markers folded).
pub async fn fold_markers(config: &Config) -> Result<Vec<(String, usize)>> {
    use flashfit_sinks::layout::{DEAD_LETTERS, FEEDBACK_EVENTS, STATUSES};
    let cutoff = chrono::Utc::now()
        - chrono::Duration::milliseconds(
            i64::try_from(config.parquet.fold_markers_after_ms).unwrap_or(i64::MAX / 2),
        );
    let mut tables = vec![
        garments_table(config)?,
        deletes_table(config)?,
        kpi_table(config)?,
    ];
    for layout in [STATUSES, DEAD_LETTERS, FEEDBACK_EVENTS] {
        tables.push(warehouse_table(config, layout.name, layout)?);
    }
    let mut out = Vec::new();
    for t in tables {
        let n = t
            .fold_markers(cutoff)
            .await
            .map_err(|e| Error::Invalid(format!("{}: {e}", t.root)))?;
        out.push((t.root.to_string(), n));
    }
    Ok(out)
}

/// LanceDB upkeep on the garments and tombstone tables (what `flashfit worker lance` runs in
/// the background), for `flashfit compact`.
pub async fn lance_upkeep(config: &Config) -> Result<Vec<flashfit_lance::upkeep::Report>> {
    let lance = |e: flashfit_lance::Error| Error::Invalid(e.to_string());
    let db = flashfit_lance::connect(&config.lancedb_uri, &config.s3, &config.lance)
        .await
        .map_err(lance)?;
    let tables = [
        flashfit_lance::garments(&db, &config.lance.table, crate::vector_dims(config)?)
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
    let searcher = crate::search::Searcher::open(config).await?;
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
pub fn build_stage(
    name: StageName,
    config: &Config,
    pipeline: &Pipeline,
) -> Result<Arc<dyn Stage>> {
    let topics = flashfit_schema::Topics::new(config.kafka.topic_prefix.clone());
    let sink_input = || {
        let last = pipeline.last();
        topics
            .output_of(last)
            .ok_or_else(|| Error::Invalid(format!("stage `{last}` has no output topic")))
    };
    if name.is_enrichment() && !pipeline.stages.contains(&name) {
        return Err(Error::Invalid(format!(
            "stage `{name}` is not in the pipeline ({})",
            pipeline
                .stages
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    match name {
        StageName::Feedback => Ok(Arc::new(
            flashfit_prefs::stage::FeedbackStage::new(
                config.database_url.expose(),
                crate::lookup::LanceLookup::new(config)?,
                topics.feedback(),
            )
            .with_grace(std::time::Duration::from_millis(
                config.feedback.unknown_garment_grace_ms,
            ))
            .with_kpi(topics.kpi(), config.experiments.clone()),
        )),
        StageName::Kpi => Ok(Arc::new(
            flashfit_sinks::stage::ParquetSink::new(
                kpi_table(config)?,
                topics.kpi(),
                config.parquet.max_bytes,
            )
            .named(StageName::Kpi.as_str())
            .with_row_hook({
                let experiments = config.experiments.clone();
                let hash = flashfit_outfits::experiments::config_hash(&experiments);
                Arc::new(move |row: &mut serde_json::Value| {
                    flashfit_sinks::kpi_events::attribute(row, &experiments, &hash);
                })
            }),
        )),
        StageName::Lance => Ok(Arc::new(flashfit_lance::stage::LanceSink::new(
            &config.lancedb_uri,
            &config.s3,
            &config.lance,
            sink_input()?,
            topics.deletes(),
            crate::vector_dims(config)?,
        ))),
        StageName::Parquet => Ok(Arc::new(
            flashfit_sinks::stage::ParquetSink::new(
                garments_table(config)?,
                sink_input()?,
                config.parquet.max_bytes,
            )
            .with_route(topics.deletes(), deletes_table(config)?),
        )),
        StageName::Quality => {
            let uri = config.uploads_uri.as_deref().ok_or_else(|| {
                Error::Invalid("the quality stage needs FLASHFIT_UPLOADS_URI (s3://bucket/prefix or file:///dir)".into())
            })?;
            let uploads = Location::open(uri, &config.s3)?;
            Ok(Arc::new(flashfit_quality::QualityStage::new(
                uploads,
                config.quality.clone(),
                config.runtime.concurrency,
                pipeline.is_terminal(name),
                &topics,
            )))
        }
        StageName::Detect | StageName::Classify | StageName::Attributes | StageName::Embed => {
            crate::vision::model_stage(name, config, pipeline)
        }
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
            (StageName::Parquet, "flashfit.embedded"),
            (StageName::Lance, "flashfit.embedded"),
            (StageName::Feedback, "flashfit.feedback"),
            (StageName::Kpi, "flashfit.kpi"),
        ] {
            let s = build_stage(name, &config, &p).expect("builds");
            assert_eq!((s.name(), s.input_topic()), (name.as_str(), input));
        }
        // `flashfit lag` names the same groups and topics as the workers it reports on.
        let groups = consumer_groups(&config, &p);
        let mut workers: Vec<Worker> = Vec::new();
        for name in [
            StageName::Parquet,
            StageName::Lance,
            StageName::Feedback,
            StageName::Kpi,
        ] {
            workers.extend(build_workers(name, &config, &p).expect("builds"));
        }
        for w in &workers {
            let group = format!("flashfit-{}", w.stage.name());
            let (_, topics) = groups
                .iter()
                .find(|(g, _)| *g == group)
                .unwrap_or_else(|| panic!("lag knows {group}"));
            let mut want = w.stage.input_topics();
            want.sort();
            let mut got = topics.clone();
            got.sort();
            assert_eq!(got, want, "{group}");
        }
        assert_eq!(groups.len(), workers.len() + p.stages.len());
    }
}

#[cfg(test)]
mod pipeline_tests {
    use super::*;

    #[test]
    fn pipelines_name_enrichment_stages_quality_first() {
        let p = Pipeline::default_pipeline();
        assert_eq!(p.stages, StageName::chain().collect::<Vec<_>>());
        assert_eq!(p.last(), StageName::Embed);
        let err = |text: &str| Pipeline::parse(text).expect_err(text).to_string();
        let e = err("stages = [\"quality\", \"detekt\"]");
        assert!(e.contains("detekt") && e.contains("classify"), "{e}");
        let e = err("stages = [\"quality\", \"parquet\"]");
        assert!(e.contains("`parquet` is a worker"), "{e}");
        assert!(err("stages = [\"detect\"]").contains("first stage must be `quality`"));
        assert!(err("stages = [\"quality\", \"quality\"]").contains("must come first"));
        assert!(err("stages = []").contains("no stages"));
    }
}

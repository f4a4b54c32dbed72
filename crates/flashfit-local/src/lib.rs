//! `flashfit run`: the whole system in one process — the enrichment stages, both sinks
//! (Parquet under `warehouse_uri`, LanceDB under `lancedb_uri`), the feedback and kpi workers,
//! and `serve` when asked — each built by [`build_workers`], the function `flashfit worker`
//! uses, so one process runs exactly what the separate workers run.
//!
//! With no broker configured, an embedded one (librdkafka's mock cluster) carries the topics.
//! It starts empty every time, so its topics get a per-run prefix: the Parquet sink's offset
//! range markers from an earlier run can never be mistaken for this run's offsets.
//!
//! With `--ingest DIR` the run publishes an upload event per photo (garment id derived from
//! the user and the photo's bytes, see [`flashfit_pipeline::ingest::content_garment_id`]; photos already
//! in the tables are reported, not published again, so ingesting a folder twice adds
//! nothing), waits for every status, for each processed photo's record, and for both sinks to
//! commit it, then reports what each photo became.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use flashfit_config::Config;
use flashfit_runtime::Metrics;
use flashfit_schema::{StageName, StatusEvent, Topics};
use rdkafka::Message as _;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use flashfit_pipeline::ingest::{content_garment_id, ingest_as, list_images};
use flashfit_pipeline::watch::{StatusWatcher, TopicTail, wait_caught_up};
use flashfit_pipeline::{EmbeddedBroker, Error, Pipeline, Result, build_workers, run_workers};

/// What `flashfit run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Publish an upload event for each photo in this folder.
    pub ingest: Option<PathBuf>,
    /// The `user_id` of ingested photos.
    pub user: String,
    /// Stop once every ingested photo is reported (and in the tables).
    pub exit_when_done: bool,
    /// How long the whole ingest may take: statuses, records and both sinks share this one
    /// deadline (the records and the sinks get at least [`MIN_FINISH`] after it).
    pub timeout: Duration,
    /// Also serve the HTTP API here.
    pub serve: Option<SocketAddr>,
}

/// What one photo became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhotoResult {
    pub file: String,
    pub garment_id: String,
    pub user_id: String,
    /// `processed`, `rejected`, `failed`, `stored` (already in the tables from an earlier
    /// run: not published again) or `no_status` (none within the timeout).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub category: Option<String>,
    pub category_confidence: Option<f64>,
    pub color_primary: Option<String>,
    pub pattern: Option<String>,
    pub caption: Option<String>,
    pub warnings: Vec<String>,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where the run's results are and what to do next.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub user_id: String,
    pub photos: Vec<PhotoResult>,
    /// The user's garments in LanceDB after the run (`None` when the pipeline makes no
    /// vectors and the LanceDB sink does not run).
    pub lance_garments: Option<usize>,
    /// The user's rows in the Parquet `garments` table after the run.
    pub parquet_rows: usize,
    /// Commands to try next on what the run wrote.
    pub next: Vec<String>,
}

impl RunReport {
    /// How many photos ended with `status`.
    pub fn count(&self, status: &str) -> usize {
        self.photos.iter().filter(|p| p.status == status).count()
    }

    /// One line of counts, e.g. `18 photos: 16 processed, 1 rejected, 0 failed, 1 stored`.
    pub fn counts_line(&self) -> String {
        format!(
            "{} photos: {} processed, {} rejected, {} failed, {} already stored",
            self.photos.len(),
            self.count("processed"),
            self.count("rejected"),
            self.count("failed"),
            self.count("stored")
        )
    }

    /// The photos as an aligned text table.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .photos
            .iter()
            .map(|p| {
                // An unsure answer (a group, or `unknown`) says so.
                let unsure = |c: &str| {
                    if flashfit_schema::taxonomy::index(c).is_some() {
                        c.to_owned()
                    } else {
                        format!("{c}, unsure")
                    }
                };
                let category = match (&p.category, p.category_confidence) {
                    (Some(c), Some(conf)) => format!("{} ({conf:.2})", unsure(c)),
                    (Some(c), None) => unsure(c),
                    _ => "-".into(),
                };
                let mut notes: Vec<String> = Vec::new();
                if !p.reasons.is_empty() {
                    notes.push(p.reasons.join(", "));
                }
                if let Some(m) = &p.message {
                    notes.push(m.clone());
                }
                if !p.warnings.is_empty() {
                    notes.push(format!("warnings: {}", p.warnings.join(", ")));
                }
                [
                    p.file.clone(),
                    p.status.clone(),
                    category,
                    p.color_primary.clone().unwrap_or_else(|| "-".into()),
                    notes.join("; "),
                ]
            })
            .collect();
        let head = ["photo", "status", "category", "colour", "notes"].map(String::from);
        let mut width = [0usize; 4];
        for r in std::iter::once(&head).chain(&rows) {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&head).chain(&rows) {
            for (i, c) in r.iter().enumerate() {
                if i < 4 {
                    out.push_str(&format!("{c:<w$}  ", w = width[i]));
                } else {
                    out.push_str(c);
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out
    }

    /// The summary printed after the table: where the results are, and the next commands.
    pub fn summary(&self, config: &Config) -> String {
        let mut out = format!("{}\n", self.counts_line());
        let lance = match self.lance_garments {
            Some(n) => format!("{n} garments searchable in {}", config.lancedb_uri),
            None => "no vectors (this pipeline has no embed stage)".into(),
        };
        out.push_str(&format!(
            "wardrobe of {}: {lance}; {} rows in {}/{}\n",
            self.user_id, self.parquet_rows, config.warehouse_uri, config.parquet.table
        ));
        if !self.next.is_empty() {
            let here = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".into());
            out.push_str(&format!("next, from {here}:\n"));
            for n in &self.next {
                out.push_str(&format!("  {n}\n"));
            }
        }
        out
    }
}

/// What reading the records and waiting for the sinks get even when the statuses used the
/// whole `--timeout`: the photos that were processed in time are still reported.
pub const MIN_FINISH: Duration = Duration::from_secs(15);

/// The workers of the whole system for `pipeline`: its stages, the Parquet sink, the LanceDB
/// sink when the pipeline makes vectors (ends with `embed`), the feedback and kpi workers.
pub fn system_workers(pipeline: &Pipeline) -> Vec<StageName> {
    let mut names = pipeline.stages.clone();
    names.push(StageName::Parquet);
    if makes_vectors(pipeline) {
        names.push(StageName::Lance);
    }
    names.extend([StageName::Feedback, StageName::Kpi]);
    names
}

fn makes_vectors(pipeline: &Pipeline) -> bool {
    pipeline.last() == StageName::Embed
}

/// Runs the whole system until `shutdown` fires (or, with `exit_when_done`, until every
/// ingested photo is reported and in the tables). Returns the report of the ingested folder.
pub async fn run(
    mut config: Config,
    pipeline: &Pipeline,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<Option<RunReport>> {
    if config.uploads_uri.is_none() {
        let base = match &opts.ingest {
            Some(d) => d
                .canonicalize()
                .map_err(|e| Error::Invalid(format!("reading {}: {e}", d.display())))?,
            None => std::env::current_dir()?.join("uploads"),
        };
        std::fs::create_dir_all(&base)?;
        config.uploads_uri = Some(format!("file://{}", base.display()));
    }
    let embedded = config.kafka.brokers.is_none();
    if embedded {
        let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ");
        config.kafka.topic_prefix = format!("{}run-{run_id}.", config.kafka.topic_prefix);
    }
    if embedded || opts.exit_when_done {
        // Small files are the price of seeing results at once on a local run.
        config.parquet.roll_ms = config.parquet.roll_ms.min(1_000);
        config.kpi.roll_ms = config.kpi.roll_ms.min(1_000);
        config.lance.linger_ms = config.lance.linger_ms.min(1_000);
    }
    let names = system_workers(pipeline);
    let mut workers = Vec::new();
    for n in &names {
        workers.extend(build_workers(*n, &config, pipeline)?);
    }
    let _broker = if embedded {
        let topics = Topics::new(config.kafka.topic_prefix.clone());
        let mut all: Vec<String> = vec![topics.status()];
        for w in &workers {
            all.extend(w.stage.input_topics());
            all.extend(w.stage.output_topics());
            all.push(topics.dlq(w.stage.name()));
        }
        let b = EmbeddedBroker::start(&all, config.kafka.partitions)?;
        tracing::info!(bootstrap = b.bootstrap_servers(), prefix = %config.kafka.topic_prefix, "started embedded broker");
        for c in std::iter::once(&mut config).chain(workers.iter_mut().map(|w| &mut w.config)) {
            c.kafka.brokers = Some(b.bootstrap_servers().to_owned());
            c.kafka.create_topics = false;
        }
        Some(b)
    } else {
        None
    };
    let served = match opts.serve {
        Some(addr) => {
            let (addr, task) = flashfit_serve::serve(&config, addr, shutdown.clone()).await?;
            eprintln!("flashfit: serving http://{addr}/v1/users/{{user_id}}/search and /outfits");
            Some(task)
        }
        None => None,
    };
    let feeder = opts.ingest.clone().map(|dir| {
        let (config, pipeline, opts, token) = (
            config.clone(),
            pipeline.clone(),
            opts.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            // Stopped with the workers (a signal, a worker's error): waiting on for statuses
            // nobody will produce would only delay the exit.
            let res = tokio::select! {
                res = feed(&config, &pipeline, &opts, &dir) => res,
                _ = token.cancelled() => Err(Error::Invalid(
                    "stopped before every ingested photo was reported".into(),
                )),
            };
            if opts.exit_when_done || res.is_err() {
                token.cancel();
            }
            res
        })
    });
    // run_workers bounds its own drain by shutdown_timeout_ms once shutdown is seen.
    let ran = run_workers(&config, workers, Metrics::new(), shutdown.clone()).await;
    shutdown.cancel();
    let grace = Duration::from_millis(config.runtime.shutdown_timeout_ms);
    if let Some(task) = served
        && tokio::time::timeout(grace, task).await.is_err()
    {
        tracing::warn!(?grace, "the HTTP server did not stop in time; leaving it");
    }
    let report = match feeder {
        Some(f) => Some(
            tokio::time::timeout(grace, f)
                .await
                .map_err(|_| Error::Invalid(format!("the ingest did not stop within {grace:?}")))?
                .map_err(|e| Error::Invalid(format!("ingest task: {e}")))??,
        ),
        None => None,
    };
    ran?;
    Ok(report)
}

/// One photo about to be published (or found already stored).
struct Planned {
    file: PathBuf,
    garment_id: String,
}

async fn feed(
    config: &Config,
    pipeline: &Pipeline,
    opts: &RunOptions,
    dir: &Path,
) -> Result<RunReport> {
    let files = list_images(dir).map_err(|e| match e {
        Error::Io(e) => Error::Invalid(format!("reading {}: {e}", dir.display())),
        e => e,
    })?;
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "no .jpg/.jpeg/.png files in {}",
            dir.display()
        )));
    }
    let user = opts.user.as_str();
    let mut planned = Vec::with_capacity(files.len());
    for file in files {
        let bytes = tokio::fs::read(&file).await?;
        let garment_id = content_garment_id(user, &bytes);
        planned.push(Planned { file, garment_id });
    }
    let vectors = makes_vectors(pipeline);
    // Photos already in the tables (an earlier run): reported from the table, not published.
    let stored_rows = parquet_rows(config, user).await?;
    let in_lance: HashSet<String> = if vectors {
        lance_garments(config, user).await?.into_iter().collect()
    } else {
        HashSet::new()
    };
    let is_stored = |g: &str| stored_rows.contains_key(g) && (!vectors || in_lance.contains(g));
    let topics = Topics::new(config.kafka.topic_prefix.clone());
    let output = pipeline
        .stages
        .last()
        .and_then(|s| topics.output_of(*s))
        .ok_or_else(|| Error::Invalid("the pipeline's last stage has no output topic".into()))?;
    let watcher = StatusWatcher::new(&config.kafka)?;
    let records = TopicTail::new(&config.kafka, &output)?;
    let publish: Vec<(PathBuf, String)> = planned
        .iter()
        .filter(|p| !is_stored(&p.garment_id))
        .map(|p| (p.file.clone(), p.garment_id.clone()))
        .collect();
    let events = if publish.is_empty() {
        Vec::new()
    } else {
        ingest_as(config, &publish, user).await?
    };
    eprintln!(
        "flashfit: published {} upload events ({} photos already stored)",
        events.len(),
        planned.len() - publish.len()
    );
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let total = ids.len();
    let mut n = 0;
    let file_of: HashMap<&str, String> = events
        .iter()
        .zip(&publish)
        .map(|(e, (f, _))| (e.event_id.as_str(), display_name(f)))
        .collect();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let statuses = watcher
        .wait_for(&ids, left(), |s| {
            n += 1;
            let id = s.event_id.as_deref().unwrap_or_default();
            eprintln!(
                "[{n}/{total}] {} {}",
                file_of.get(id).map(String::as_str).unwrap_or(id),
                s.status.as_str()
            );
        })
        .await;
    // The enriched record of every processed photo, from the last stage's topic.
    let processed: HashSet<&str> = statuses
        .values()
        .filter(|s| s.status.as_str() == "processed")
        .filter_map(|s| s.event_id.as_deref())
        .collect();
    let mut record_of: HashMap<String, Value> = HashMap::new();
    let messages = records
        .collect_until(left().max(MIN_FINISH), |got| {
            got.iter()
                .filter_map(|m| event_id_of(m.payload()))
                .filter(|id| processed.contains(id.as_str()))
                .collect::<HashSet<_>>()
                .len()
                >= processed.len()
        })
        .await;
    for m in messages {
        if let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p).ok())
            && let Some(id) = v["event_id"].as_str()
        {
            record_of.insert(id.to_owned(), v);
        }
    }
    // Both sinks have committed everything the pipeline produced.
    let mut sinks = vec![StageName::Parquet];
    if vectors {
        sinks.push(StageName::Lance);
    }
    let mut sink_topics = vec![output.clone()];
    sink_topics.push(topics.deletes());
    for s in sinks {
        let group = format!("{}-{s}", config.kafka.group_prefix);
        let wait = left().max(MIN_FINISH);
        let lag = wait_caught_up(&config.kafka, &group, &sink_topics, wait).await?;
        if lag > 0 {
            return Err(Error::Invalid(format!(
                "the {s} sink still has {lag} records to write at the deadline (--timeout {:?})",
                opts.timeout
            )));
        }
    }
    let rows = parquet_rows(config, user).await?;
    let lance = if vectors {
        Some(lance_garments(config, user).await?)
    } else {
        None
    };
    let mut photos = Vec::with_capacity(planned.len());
    let event_of: HashMap<&str, &flashfit_schema::UploadEvent> =
        events.iter().map(|e| (e.garment_id.as_str(), e)).collect();
    for p in &planned {
        let file = display_name(&p.file);
        let Some(e) = event_of.get(p.garment_id.as_str()) else {
            let mut r = stored_rows
                .get(&p.garment_id)
                .cloned()
                .unwrap_or_else(|| blank(&file, &p.garment_id, user, "stored"));
            r.file = file;
            photos.push(r);
            continue;
        };
        let mut r = blank(&file, &p.garment_id, user, "no_status");
        r.event_id = Some(e.event_id.clone());
        r.image_uri = Some(e.image_uri.clone());
        if let Some(s) = statuses.get(&e.event_id) {
            apply_status(&mut r, s);
        }
        if let Some(rec) = record_of.get(&e.event_id) {
            apply_record(&mut r, rec);
        }
        photos.push(r);
    }
    // Every processed photo must be in both tables.
    let missing: Vec<&str> = photos
        .iter()
        .filter(|p| p.status == "processed")
        .filter(|p| {
            !rows.contains_key(&p.garment_id)
                || lance.as_ref().is_some_and(|l| !l.contains(&p.garment_id))
        })
        .map(|p| p.file.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "processed but not in both tables: {}",
            missing.join(", ")
        )));
    }
    let mut report = RunReport {
        user_id: user.to_owned(),
        lance_garments: lance.as_ref().map(Vec::len),
        parquet_rows: rows.values().count(),
        next: Vec::new(),
        photos,
    };
    report.next = next_commands(config, &report, opts.serve);
    Ok(report)
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn event_id_of(payload: Option<&[u8]>) -> Option<String> {
    let v: Value = serde_json::from_slice(payload?).ok()?;
    v["event_id"].as_str().map(str::to_owned)
}

fn blank(file: &str, garment_id: &str, user: &str, status: &str) -> PhotoResult {
    PhotoResult {
        file: file.to_owned(),
        garment_id: garment_id.to_owned(),
        user_id: user.to_owned(),
        status: status.to_owned(),
        event_id: None,
        image_uri: None,
        stage: None,
        category: None,
        category_confidence: None,
        color_primary: None,
        pattern: None,
        caption: None,
        warnings: Vec::new(),
        reasons: Vec::new(),
        message: None,
    }
}

fn names<T: Serialize>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .filter_map(|x| serde_json::to_value(x).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn apply_status(r: &mut PhotoResult, s: &StatusEvent) {
    r.status = s.status.as_str().to_owned();
    r.stage = Some(s.stage.clone());
    r.reasons = names(&s.reasons);
    r.warnings = names(&s.warnings);
    r.message = s.message.clone();
}

fn apply_record(r: &mut PhotoResult, rec: &Value) {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    r.category = text(&rec["classification"]["category"]);
    r.category_confidence = rec["classification"]["confidence"].as_f64();
    r.color_primary = text(&rec["attributes"]["color_primary"]);
    r.pattern = text(&rec["attributes"]["pattern"]);
    r.caption = text(&rec["embedding"]["caption"]);
    if r.warnings.is_empty()
        && let Some(w) = rec["quality"]["warnings"].as_array()
    {
        r.warnings = w.iter().filter_map(text).collect();
    }
}

/// The user's rows in the Parquet `garments` table, by garment id (the latest processing).
async fn parquet_rows(config: &Config, user: &str) -> Result<HashMap<String, PhotoResult>> {
    let table = flashfit_pipeline::garments_table(config)?;
    let (_, batches) = flashfit_sinks::compact::read_log(&table)
        .await
        .map_err(|e| Error::Invalid(format!("reading the garments table: {e}")))?;
    let mut out: HashMap<String, (String, PhotoResult)> = HashMap::new();
    for b in &batches {
        for (at, r) in rows_of(b, user) {
            match out.get(&r.garment_id) {
                Some((seen, _)) if *seen >= at => {}
                _ => {
                    out.insert(r.garment_id.clone(), (at, r));
                }
            }
        }
    }
    Ok(out.into_iter().map(|(k, (_, r))| (k, r)).collect())
}

/// The rows of one batch of the garments table that belong to `user`, with their
/// `processed_at` (as a sortable number string).
fn rows_of(b: &RecordBatch, user: &str) -> Vec<(String, PhotoResult)> {
    let s = |n: &str| b.column_by_name(n).map(|c| c.as_string::<i32>().clone());
    let (Some(ids), Some(users)) = (s("garment_id"), s("user_id")) else {
        return Vec::new();
    };
    let opt = |a: &Option<arrow::array::StringArray>, i: usize| {
        a.as_ref()
            .filter(|a| !a.is_null(i))
            .map(|a| a.value(i).to_owned())
    };
    let (cat, col, pat, cap, ev, uri) = (
        s("category"),
        s("color_primary"),
        s("pattern"),
        s("caption"),
        s("event_id"),
        s("image_uri"),
    );
    let conf = b
        .column_by_name("category_confidence")
        .map(|c| c.as_primitive::<Float32Type>().clone());
    let warnings = b
        .column_by_name("quality_warnings")
        .map(|c| c.as_list::<i32>().clone());
    let at = b.column_by_name("processed_at").map(|c| {
        c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone()
    });
    let mut out = Vec::new();
    for i in 0..b.num_rows() {
        if users.value(i) != user {
            continue;
        }
        let mut r = blank("", ids.value(i), user, "stored");
        r.event_id = opt(&ev, i);
        r.image_uri = opt(&uri, i);
        r.category = opt(&cat, i);
        r.category_confidence = conf
            .as_ref()
            .filter(|c| !c.is_null(i))
            .map(|c| f64::from(c.value(i)));
        r.color_primary = opt(&col, i);
        r.pattern = opt(&pat, i);
        r.caption = opt(&cap, i);
        if let Some(w) = &warnings
            && !w.is_null(i)
        {
            let v = w.value(i);
            let v = v.as_string::<i32>();
            r.warnings = (0..v.len()).map(|k| v.value(k).to_owned()).collect();
        }
        let when = at.as_ref().map(|a| a.value(i)).unwrap_or_default();
        out.push((format!("{when:020}"), r));
    }
    out
}

/// The user's garment ids in LanceDB (a fresh connection: what is committed now).
async fn lance_garments(config: &Config, user: &str) -> Result<Vec<String>> {
    let searcher = flashfit_pipeline::search::Searcher::open(config).await?;
    Ok(flashfit_lance::search::garments_of(searcher.table(), user)
        .await
        .map_err(|e| Error::Invalid(format!("LanceDB: {e}")))?
        .into_iter()
        .map(|h| h.garment_id)
        .collect())
}

/// A local path for a `file://` URI (`file://./warehouse` → `./warehouse`), else the URI.
fn local_path(uri: &str) -> String {
    uri.strip_prefix("file://").unwrap_or(uri).to_owned()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Commands that work on what this run wrote: a text search for the most common category,
/// the outfits endpoint, and DuckDB over the Parquet table.
fn next_commands(config: &Config, report: &RunReport, serving: Option<SocketAddr>) -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "flashfit".into());
    let exe = shell_quote(&exe);
    let user = shell_quote(&report.user_id);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in &report.photos {
        if let Some(c) = &p.category {
            *counts.entry(c.as_str()).or_default() += 1;
        }
    }
    let mut next = Vec::new();
    if report.lance_garments.is_some_and(|n| n > 0) {
        let query = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(c, _)| c.replace('_', " "))
            .unwrap_or_else(|| "clothing".into());
        next.push(format!(
            "{exe} search --user {user} --text {}",
            shell_quote(&query)
        ));
        let url = |addr: SocketAddr| {
            format!(
                "curl -s 'http://{addr}/v1/users/{}/outfits?k=3'",
                report.user_id
            )
        };
        match serving {
            Some(addr) => next.push(url(addr)),
            None => next.push(format!(
                "{exe} serve &  {}",
                url(config.http_addr).replacen("curl", "then: curl", 1)
            )),
        }
    }
    let glob = format!(
        "{}/{}/*/*.parquet",
        local_path(&config.warehouse_uri).trim_end_matches('/'),
        config.parquet.table
    );
    next.push(format!(
        "duckdb -c \"SELECT category, round(category_confidence, 2) AS conf, color_primary, caption FROM read_parquet('{glob}') WHERE user_id = '{}'\"",
        report.user_id.replace('\'', "''")
    ));
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(file: &str, status: &str, category: Option<&str>) -> PhotoResult {
        let mut p = blank(file, "g", "u", status);
        p.category = category.map(str::to_owned);
        p.category_confidence = category.map(|_| 0.5);
        p
    }

    #[test]
    fn the_table_aligns_columns_and_the_summary_names_runnable_next_steps() {
        let report = RunReport {
            user_id: "u".into(),
            photos: vec![
                photo("a.jpg", "processed", Some("shirt")),
                photo("long_name.png", "rejected", None),
                photo("b.jpg", "processed", Some("t_shirt")),
                {
                    let mut cat = photo("cat.jpg", "rejected", None);
                    cat.reasons = vec!["not_clothing".into()];
                    cat
                },
            ],
            lance_garments: Some(1),
            parquet_rows: 1,
            next: Vec::new(),
        };
        let t = report.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        let col = lines[0].find("status").expect("status column");
        assert_eq!(lines[1].find("processed"), Some(col), "{t}");
        assert_eq!(lines[2].find("rejected"), Some(col), "{t}");
        // Not a taxonomy category (a group, `unknown`): said to be unsure.
        assert!(lines[1].contains("shirt, unsure (0.50)"), "{t}");
        assert!(lines[3].contains("t_shirt (0.50)"), "{t}");
        assert!(lines[4].contains("not_clothing"), "{t}");
        let next = next_commands(&Config::default(), &report, None);
        assert!(next[0].contains("search --user u --text shirt"), "{next:?}");
        assert!(next[1].contains("/v1/users/u/outfits"), "{next:?}");
        assert!(
            next[2].contains("read_parquet('./warehouse/garments/*/*.parquet')"),
            "{next:?}"
        );
        assert_eq!(report.count("processed"), 2);
    }

    #[test]
    fn the_whole_system_runs_the_sinks_and_workers_after_the_stages() {
        let full = Pipeline::default_pipeline();
        assert_eq!(system_workers(&full), StageName::ALL);
        let quality = Pipeline::parse("stages = [\"quality\"]").expect("pipeline");
        assert_eq!(
            system_workers(&quality),
            [
                StageName::Quality,
                StageName::Parquet,
                StageName::Feedback,
                StageName::Kpi
            ]
        );
    }
}

//! The command line: every subcommand, its flags and their help. `main` dispatches each to
//! the library crate that does the work.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flashfit",
    version,
    about = "Turns clothing photos into searchable wardrobe data"
)]
pub struct Cli {
    /// TOML config file (also FLASHFIT_CONFIG); environment variables override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Pipeline definition (default: the built-in pipelines/default.toml).
    #[arg(long, global = true)]
    pub pipeline: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run one stage as its own process: a pipeline stage (quality, detect, classify,
    /// attributes, embed) or a worker (parquet, lance, feedback, kpi).
    Worker {
        #[arg(value_enum)]
        stage: flashfit_pipeline::StageName,
    },
    /// Rebuild the kpi_daily rollup (per experiment, variant and day) from kpi_events under
    /// FLASHFIT_WAREHOUSE_URI.
    KpiDaily,
    /// Print a user's A/B variant in every experiment running now, as JSON.
    Variants {
        #[arg(long)]
        user: String,
    },
    /// A/B readouts: `flashfit ab report --experiment E`.
    Ab {
        #[command(subcommand)]
        which: AbCommand,
    },
    /// Experiment configuration: `flashfit experiments check --running FILE`.
    Experiments {
        #[command(subcommand)]
        which: ExperimentsCommand,
    },
    /// Run the whole system in one process: every stage of the pipeline, both sinks (Parquet
    /// under FLASHFIT_WAREHOUSE_URI, LanceDB under FLASHFIT_LANCEDB_URI), the feedback and kpi
    /// workers, and the HTTP API with --serve. Without FLASHFIT_KAFKA_BROKERS an embedded broker
    /// is started; without FLASHFIT_UPLOADS_URI the --ingest folder (or ./uploads) is the
    /// uploads location.
    Run {
        /// Publish an upload event for each photo in this folder (photos already in the tables
        /// are reported, not published again) and report what each became.
        #[arg(long)]
        ingest: Option<PathBuf>,
        /// user_id for ingested photos.
        #[arg(long, default_value = "local-user")]
        user: String,
        /// Exit once every ingested photo is reported and in both tables (exit 0), or the
        /// timeout passes (1).
        #[arg(long)]
        exit_when_done: bool,
        /// Seconds the ingest may take, statuses and sinks together (the records and the sinks
        /// get 15 s more when the statuses used it all). SIGTERM/Ctrl-C stops the run at once.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Also serve the HTTP API (search, outfits) on this address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        serve: Option<std::net::SocketAddr>,
        /// One JSON object per photo on stdout (the summary goes to stderr) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Publish an upload event for each photo in a folder (copying photos into the uploads
    /// location when they are outside it).
    Ingest {
        dir: PathBuf,
        #[arg(long, default_value = "local-user")]
        user: String,
        /// Wait for and print each photo's status.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Print the effective configuration (secrets masked).
    Config,
    /// Print who may read and write which Kafka topic and consumer group (each service's
    /// principal), as `kafka-acls` commands or Strimzi `KafkaUser` resources.
    Acls {
        #[arg(long, value_enum, default_value = "kafka-acls")]
        format: AclFormat,
        /// The Strimzi Kafka cluster the users belong to (`strimzi.io/cluster`).
        #[arg(long, default_value = "flashfit")]
        cluster: String,
    },
    /// The app-facing HTTP API on FLASHFIT_HTTP_ADDR (`GET /v1/users/{user_id}/search`).
    Serve,
    /// A development bearer token for serve, signed with `[auth] hs256_secret`
    /// (FLASHFIT_AUTH__HS256_SECRET): `sub` = the user, the configured issuer and audience.
    Token {
        #[arg(long)]
        user: String,
        /// Also grant the operator scope (any user's routes).
        #[arg(long)]
        operator: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// A user's garments like one of theirs (`--like GARMENT_ID`) or near a text (`--text`),
    /// from LanceDB; one JSON line per result, best first.
    Search {
        #[arg(long)]
        user: String,
        #[arg(long, conflicts_with = "text", required_unless_present = "text")]
        like: Option<String>,
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        color: Option<String>,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
    },
    /// Rebuild `garments_current` (one row per garment, latest processing wins, deleted
    /// garments left out) from the tables under FLASHFIT_WAREHOUSE_URI, then run LanceDB upkeep
    /// (compaction, old versions, indices) at FLASHFIT_LANCEDB_URI.
    Compact,
    /// Run the pipeline's stages in-process (no broker) on a labelled set and score what they
    /// say: is-clothing confusion, group and category precision/recall/abstention, colour
    /// accuracy, garments per person photo. The set: `eval/build_set.py DIR`.
    Eval {
        /// The set's directory (photos and labels.toml).
        #[arg(long)]
        set: PathBuf,
        /// The figures (and every photo's prediction) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train models on labelled data.
    Train {
        #[command(subcommand)]
        which: TrainCommand,
    },
    /// Dead letters: count them, or republish them to their source topics.
    Dlq {
        #[command(subcommand)]
        which: DlqCommand,
    },
    /// Replay a range of a topic, by offset or time, into a consumer group (its committed
    /// offsets set to the range's start; refused while the group has live members) or into
    /// another topic (keys, values, headers and timestamps copied).
    Replay {
        #[arg(long)]
        topic: String,
        /// One partition (default: all).
        #[arg(long)]
        partition: Option<i32>,
        /// earliest, an offset, or an RFC 3339 time (resolved per partition).
        #[arg(long)]
        from: String,
        /// End of the range, exclusive: latest, an offset, or an RFC 3339 time (--into only).
        #[arg(long, default_value = "latest")]
        to: String,
        /// Set this group's committed offsets to the start of the range.
        #[arg(long, conflicts_with = "into", required_unless_present = "into")]
        group: Option<String>,
        /// Copy the range into this topic.
        #[arg(long)]
        into: Option<String>,
        /// Resolve times by searching message timestamps only (do not ask the broker).
        #[arg(long)]
        search_times: bool,
        /// Resolve and print the ranges; commit and copy nothing.
        #[arg(long)]
        dry_run: bool,
        /// The summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Publish a new upload event (new event_id; same garment_id, user_id, image_uri) for each
    /// garment of garments_current matching a SQL predicate, so the chain processes it again.
    /// Columns: those of garments_current, plus model_versions (list of name@version).
    Reprocess {
        /// e.g. "list_contains(model_versions, 'efficientnet-lite0@1')" or
        /// "category = 'shirt' and processed_at < '2026-12-01'".
        #[arg(long = "where")]
        predicate: String,
        /// Count and show the selection; publish nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Per stage and sink group and partition: committed offset, end offset, lag and the age
    /// of the oldest unprocessed message.
    Lag {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// How `flashfit ab report` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
}

#[derive(Subcommand)]
pub enum AbCommand {
    /// An experiment's readout from kpi_events: per variant each metric with a 95% interval,
    /// every variant against control (lift, interval, p-value, verdict, minimum detectable
    /// effect), guardrails and the sample-ratio-mismatch check. Also written to the ab_results
    /// table (one file per experiment and day). Exit 0 whatever the verdict; 3 when the
    /// sample ratio check fails.
    Report {
        #[arg(long)]
        experiment: String,
        /// Count events at or after this RFC 3339 time (within the experiment's window).
        #[arg(long)]
        from: Option<String>,
        /// Count events before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Where `--format html` writes the page (default: `ab-EXPERIMENT.html`).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ExperimentsCommand {
    /// Checks this configuration's experiments against the running configuration's: no user
    /// may move between variants of a running experiment (ramp with `exposure`). Exit 1 when
    /// refused.
    Check {
        /// The configuration file the workers and serve run with now.
        #[arg(long)]
        running: std::path::PathBuf,
        /// Judge as of this RFC 3339 time (default: now).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Counts by stage and reason, and the last dead letters with their headers (one JSON
    /// object on stdout).
    List {
        /// A stage (or funnel sink) name; every stage's dead letters when absent.
        #[arg(long)]
        stage: Option<String>,
        /// A reason name, e.g. not_found.
        #[arg(long)]
        reason: Option<String>,
        /// Only dead letters written at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// How many of the last matching dead letters to show.
        #[arg(long, default_value_t = 10)]
        last: usize,
    },
    /// Republish each matching dead letter's key and value to the topic in its
    /// flashfit.source.topic header (with a flashfit.redrive header). The redrive keeps its own
    /// position: running it again republishes nothing.
    Redrive {
        #[arg(long)]
        stage: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        since: Option<String>,
        /// Count what would be republished; publish and commit nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train a linear taxonomy head on EfficientNet-Lite0 embeddings; prints held-out accuracy
    /// and writes the head as JSON.
    Head {
        /// Train on Debian's Fashion-MNIST train split, evaluate on its test split.
        #[arg(long, conflicts_with_all = ["data", "manifest"])]
        fashion_mnist: bool,
        /// Fashion-MNIST directory.
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        fashion_mnist_dir: PathBuf,
        /// Use at most this many training images.
        #[arg(long, default_value_t = 60_000)]
        limit: usize,
        /// A folder of class folders named after taxonomy categories (every fifth image held out).
        #[arg(long, conflicts_with = "manifest")]
        data: Option<PathBuf>,
        /// A CSV manifest: header naming `path`, `label` and optionally `split` (train|test).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Where to write the head.
        #[arg(long, default_value = "taxonomy-head.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// ONNX Runtime intra-op threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Quality-stage images/s vs the seed's Python/OpenCV checker on the same ~1024 px JPEGs.
    Quality {
        #[arg(long, default_value_t = 24)]
        images: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Python with opencv-python-headless (default: $FLASHFIT_VENV/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Repository root (for tests/fixtures and benches/).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// Pass-through stage on the runtime vs a bare rdkafka loop, same broker.
    Runtime {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long, default_value_t = 2_000)]
        latency_messages: usize,
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 256)]
        payload_bytes: usize,
        /// Alternating rounds of both loops (medians reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The garments Parquet sink on synthetic embedded records: rows/s, MB/s, bytes per row.
    Parquet {
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        file_rows: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// LanceDB: upsert rows/s (insert, update), the upkeep pass that builds the indices, and
    /// query latency p50/p99 (per-user exact search; whole-table IVF-PQ with its recall) on
    /// synthetic garments.
    Lance {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value_t = 200)]
        users: usize,
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value_t = 20)]
        nprobes: usize,
        #[arg(long, default_value_t = 4)]
        refine: u32,
        /// LanceDB URI (default: a fresh temporary directory).
        #[arg(long)]
        uri: Option<String>,
    },
    /// `compact` and `kpi-daily` out of core on generated tables: time and peak RSS of each.
    Rollups {
        #[arg(long, default_value_t = 1_000_000)]
        garments: usize,
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// DataFusion's memory limit (sorts and aggregations spill beyond it).
        #[arg(long, default_value_t = 256)]
        memory_mb: usize,
        /// Where the generated tables go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Each model stage (detect, classify, attributes, embed): images/s through the runtime vs
    /// bare (decode + the same model calls, no runtime), same photos and batches.
    Stages {
        #[arg(long, default_value_t = 48)]
        images: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Repository root (for tests/fixtures).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
    /// The whole enrichment chain as deployed: a `flashfit worker` process per stage on the
    /// local stack (FLASHFIT_KAFKA_BROKERS, FLASHFIT_UPLOADS_URI), fed ~1024 px photos:
    /// images/s end to end, upload→processed p50/p99 (in the burst and at a paced load), CPU
    /// per image and peak RSS per stage; per profile (`baseline` = the first wave's settings,
    /// `default` = today's, `NAME=DIR` = another build, e.g. the first wave's from
    /// infra/first_wave.sh), with their ratio.
    Chain {
        #[arg(long, default_value_t = 200)]
        images: usize,
        /// Profiles, in order (`default`, `baseline`, `NAME=DIR` running `DIR/flashfit` with
        /// `DIR/models`); the last is compared with the first.
        #[arg(long, value_delimiter = ',', default_value = "baseline,default")]
        profiles: Vec<String>,
        /// Also measure each profile as one embedded `flashfit run` process.
        #[arg(long)]
        embedded: bool,
        /// The paced phase's load as a fraction of the measured throughput (0 skips it).
        #[arg(long, default_value_t = 0.5)]
        pace: f64,
        /// Seconds each phase may take.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Rounds of every profile, alternating; medians are reported.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Repository root (for tests/fixtures).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
}

/// How `flashfit acls` renders the permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AclFormat {
    /// `kafka-acls.sh --add …` commands.
    KafkaAcls,
    /// Strimzi `KafkaUser` resources (SCRAM-SHA-512, simple authorization).
    Strimzi,
    /// Patches giving each Deployment its SCRAM user, password Secret and the cluster CA.
    K8sPatches,
}

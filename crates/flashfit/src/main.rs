//! `flashfit`: the command-line entry point. Thin by design: parse arguments, load config,
//! start telemetry and signal handling, call into `flashfit-pipeline`, map the result to an exit
//! code (0 ok, 1 failed, 2 bad configuration or usage).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use flashfit_config::{Config, LogFormat};
use flashfit_pipeline::{
    Pipeline, bench, build_worker, ingest, local, run_workers, shutdown_on_signals, watch,
};
use flashfit_runtime::Metrics;
use flashfit_schema::Topics;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "flashfit",
    version,
    about = "Turns clothing photos into searchable wardrobe data"
)]
struct Cli {
    /// TOML config file (also FLASHFIT_CONFIG); environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Pipeline definition (default: the built-in pipelines/default.toml).
    #[arg(long, global = true)]
    pipeline: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one stage as its own process: a pipeline stage (quality, detect, classify,
    /// attributes, embed) or a worker (parquet, lance, feedback, kpi).
    Worker {
        #[arg(value_enum)]
        stage: flashfit_pipeline::StageName,
    },
    /// Rebuild the kpi_daily rollup (per experiment, variant and day) from kpi_events under
    /// FLASHFIT_WAREHOUSE_URI.
    KpiDaily,
    /// Print a user's A/B variant in every configured experiment, as JSON.
    Variants {
        #[arg(long)]
        user: String,
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
        /// Seconds to wait for statuses and the sinks.
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
    /// The app-facing HTTP API on FLASHFIT_HTTP_ADDR (`GET /v1/users/{user_id}/search`).
    Serve,
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
    /// Train models on labelled data.
    Train {
        #[command(subcommand)]
        which: TrainCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
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
enum BenchCommand {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashfit: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flashfit: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "flashfit failed");
            eprintln!("flashfit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(cli.pipeline.as_deref())?;
    match cli.command {
        Command::Train {
            which:
                TrainCommand::Head {
                    fashion_mnist,
                    fashion_mnist_dir,
                    limit,
                    data,
                    manifest,
                    out,
                    epochs,
                    threads,
                },
        } => {
            use flashfit_pipeline::train::{Dataset, train_head};
            let dataset = match (fashion_mnist, data, manifest) {
                (true, _, _) => Dataset::FashionMnist {
                    dir: fashion_mnist_dir,
                    limit,
                },
                (false, Some(d), _) => Dataset::Folders(d),
                (false, None, Some(m)) => Dataset::Csv(m),
                (false, None, None) => {
                    bail!("give --fashion-mnist, --data DIR or --manifest FILE.csv")
                }
            };
            let cfg = flashfit_models::head::TrainConfig {
                epochs,
                ..Default::default()
            };
            let models = flashfit_pipeline::model_dir(&config);
            let report =
                tokio::task::spawn_blocking(move || train_head(&models, &dataset, threads, &cfg))
                    .await??;
            report.head.save(&out)?;
            println!(
                "trained {} on {} examples in {:.0}s; held-out accuracy {:.4} on {} examples; wrote {} (version {})",
                report.head.name,
                report.train_examples,
                report.seconds,
                report.accuracy,
                report.test_examples,
                out.display(),
                report.head.version
            );
            Ok(())
        }
        Command::Serve => {
            let shutdown = CancellationToken::new();
            shutdown_on_signals(shutdown.clone());
            let (addr, task) =
                flashfit_pipeline::serve::serve(&config, config.http_addr, shutdown).await?;
            eprintln!("flashfit: serving http://{addr}/v1/users/{{user_id}}/search");
            task.await?;
            Ok(())
        }
        Command::Search {
            user,
            like,
            text,
            category,
            color,
            k,
        } => {
            let query = match (like, text) {
                (Some(g), _) => flashfit_pipeline::SearchQuery::Like(g),
                (None, Some(t)) => flashfit_pipeline::SearchQuery::Text(t),
                (None, None) => bail!("give --like GARMENT_ID or --text TEXT"),
            };
            let filters = flashfit_lance::search::Filters { category, color };
            for hit in flashfit_pipeline::search(&config, &user, &query, k.max(1), &filters).await?
            {
                println!("{}", serde_json::to_string(&hit)?);
            }
            Ok(())
        }
        Command::Compact => {
            let c = flashfit_pipeline::compact(&config).await?;
            println!(
                "garments_current: {} rows from {} rows in {} files ({} deleted garments left out); wrote {}",
                c.rows_written, c.rows_read, c.files_read, c.deleted, c.path
            );
            for r in flashfit_pipeline::lance_upkeep(&config).await? {
                println!("lancedb: {}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Config => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::KpiDaily => {
            let r = flashfit_pipeline::kpi_daily(&config).await?;
            println!(
                "kpi_daily: {} rows from {} events ({} duplicate event ids counted once); wrote {}",
                r.rows, r.events, r.duplicates, r.path
            );
            Ok(())
        }
        Command::Variants { user } => {
            let v = flashfit_outfits::experiments::variants(&config.experiments, &user);
            println!("{}", serde_json::to_string(&v)?);
            Ok(())
        }
        Command::Worker { stage } => {
            let worker = build_worker(stage, &config, &pipeline)?;
            let shutdown = CancellationToken::new();
            shutdown_on_signals(shutdown.clone());
            run_workers(&config, vec![worker], Metrics::new(), shutdown).await?;
            Ok(())
        }
        Command::Ingest {
            dir,
            user,
            wait,
            timeout,
        } => {
            let files =
                ingest::list_images(&dir).with_context(|| format!("reading {}", dir.display()))?;
            if files.is_empty() {
                bail!("no .jpg/.jpeg/.png files in {}", dir.display());
            }
            let watcher = if wait {
                Some(watch::StatusWatcher::new(&config.kafka)?)
            } else {
                None
            };
            let events = ingest::ingest_files(&config, &files, &user).await?;
            for e in &events {
                println!("{}", serde_json::to_string(e)?);
            }
            eprintln!(
                "published {} upload events to {}",
                events.len(),
                Topics::new(config.kafka.topic_prefix.clone()).uploads()
            );
            if let Some(w) = watcher {
                print_statuses(&w, &events, timeout).await?;
            }
            Ok(())
        }
        Command::Run {
            ingest,
            user,
            exit_when_done,
            timeout,
            serve,
            json,
        } => {
            let shutdown = CancellationToken::new();
            shutdown_on_signals(shutdown.clone());
            let opts = local::RunOptions {
                ingest,
                user,
                exit_when_done,
                timeout: Duration::from_secs(timeout),
                serve,
            };
            let shown = config.clone();
            let Some(report) = local::run(config, &pipeline, opts, shutdown).await? else {
                return Ok(());
            };
            if json {
                for p in &report.photos {
                    println!("{}", serde_json::to_string(p)?);
                }
                eprint!("{}", report.summary(&shown));
            } else {
                print!("{}\n{}", report.table(), report.summary(&shown));
            }
            let unfinished = report.count("no_status");
            if unfinished > 0 {
                bail!("{unfinished} uploads got no status within {timeout}s");
            }
            Ok(())
        }
        Command::Bench {
            which:
                BenchCommand::Quality {
                    images,
                    seconds,
                    python,
                    repo,
                },
        } => {
            let python = python.unwrap_or_else(|| {
                let venv = std::env::var("FLASHFIT_VENV")
                    .unwrap_or_else(|_| "/var/lib/flashfit/venv".into());
                PathBuf::from(venv).join("bin/python")
            });
            let opts = bench::QualityBench {
                fixtures: repo.join("tests/fixtures/photos"),
                script: repo.join("benches/opencv_quality.py"),
                python,
                images,
                seconds,
            };
            bench::quality(&opts).await.map_err(Into::into)
        }
        Command::Bench {
            which:
                BenchCommand::Runtime {
                    messages,
                    latency_messages,
                    rate,
                    payload_bytes,
                    rounds,
                },
        } => {
            let opts = bench::RuntimeBench {
                rounds: rounds.max(1),
                messages,
                latency_messages,
                rate,
                payload_bytes,
            };
            bench::runtime(&config, &opts).await.map_err(Into::into)
        }
        Command::Bench {
            which:
                BenchCommand::Parquet {
                    records,
                    file_rows,
                    rounds,
                },
        } => {
            let opts = bench::ParquetBench {
                records: records.max(1),
                file_rows,
                rounds,
            };
            bench::parquet(&opts).await.map_err(Into::into)
        }
        Command::Bench {
            which:
                BenchCommand::Lance {
                    rows,
                    users,
                    batch,
                    queries,
                    k,
                    nprobes,
                    refine,
                    uri,
                },
        } => {
            let opts = bench::LanceBench {
                rows: rows.max(1),
                users: users.max(1),
                batch,
                queries: queries.max(1),
                k,
                nprobes: nprobes.max(1),
                refine: refine.max(1),
                uri,
                dims: flashfit_pipeline::vector_dims(&config)?,
            };
            bench::lance_bench(&opts).await.map_err(Into::into)
        }
        Command::Bench {
            which:
                BenchCommand::Stages {
                    images,
                    batch,
                    rounds,
                    repo,
                },
        } => {
            let opts = bench::StagesBench {
                fixtures: repo.join("tests/fixtures/photos"),
                images: images.max(1),
                batch: batch.max(1),
                rounds: rounds.max(1),
            };
            bench::stages(&config, &opts).await.map_err(Into::into)
        }
    }
}

async fn print_statuses(
    w: &watch::StatusWatcher,
    events: &[flashfit_schema::UploadEvent],
    timeout: u64,
) -> anyhow::Result<()> {
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let uri_of = |id: &str| {
        events
            .iter()
            .find(|e| e.event_id == id)
            .map(|e| e.image_uri.clone())
            .unwrap_or_default()
    };
    let seen = w
        .wait_for(&ids, Duration::from_secs(timeout), |s| {
            let id = s.event_id.clone().unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({"image_uri": uri_of(&id), "status": s})
            );
        })
        .await;
    let count = |st: &str| seen.values().filter(|s| s.status.as_str() == st).count();
    eprintln!(
        "statuses: {} of {} ({} processed, {} rejected, {} failed)",
        seen.len(),
        ids.len(),
        count("processed"),
        count("rejected"),
        count("failed")
    );
    if seen.len() < ids.len() {
        bail!(
            "{} uploads got no status within {timeout}s",
            ids.len() - seen.len()
        );
    }
    Ok(())
}

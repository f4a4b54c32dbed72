//! `flashfit`: the command-line entry point. Thin by design: parse arguments, load config,
//! start telemetry and signal handling, call into `flashfit-pipeline`, map the result to an exit
//! code (0 ok, 1 failed, 2 bad configuration or usage).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use flashfit_bench as bench;
use flashfit_config::{Config, LogFormat};
use flashfit_pipeline::progress::Progress;
use flashfit_pipeline::{Pipeline, build_workers, ingest, run_workers, shutdown_on_signals, watch};
use flashfit_runtime::Metrics;
use flashfit_schema::Topics;
use tokio_util::sync::CancellationToken;

mod cli;
use cli::{
    AbCommand, BenchCommand, Cli, Command, DlqCommand, ExperimentsCommand, ReportFormat,
    TrainCommand,
};

fn main() -> ExitCode {
    flashfit_models::keep_freed_memory();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashfit: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    flashfit_schema::set_max_clock_skew(config.runtime.max_clock_skew_ms);
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
        Command::Eval { set, json } => {
            let results = flashfit_eval::evaluate(&config, &pipeline, &set).await?;
            let report = flashfit_eval::score::score(&results);
            if json {
                let photos: Vec<_> = results
                    .iter()
                    .map(|(p, pred)| serde_json::json!({"file": p.file, "labels": p, "prediction": pred}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"report": report, "photos": photos})
                    )?
                );
            } else {
                print!("{report}");
            }
            Ok(())
        }
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
            use flashfit_train::{Dataset, train_head};
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
            let (addr, task) = flashfit_serve::serve(&config, config.http_addr, shutdown).await?;
            eprintln!("flashfit: serving http://{addr}/v1/users/{{user_id}}/search");
            task.await?;
            Ok(())
        }
        Command::Token {
            user,
            operator,
            ttl,
        } => {
            let token = flashfit_serve::auth::mint_dev_token(
                &config.auth,
                &user,
                operator,
                std::time::Duration::from_secs(ttl),
            )?;
            println!("{token}");
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
            for (table, n) in flashfit_pipeline::fold_markers(&config).await? {
                if n > 0 {
                    println!("{table}: {n} range markers folded into their partitions' summaries");
                }
            }
            for r in flashfit_pipeline::lance_upkeep(&config).await? {
                println!("lancedb: {}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Config => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Acls { format, cluster } => {
            use flashfit_pipeline::acls;
            let perms = acls::permissions(&config, &pipeline);
            match format {
                cli::AclFormat::KafkaAcls => print!("{}", acls::kafka_acls(&perms)),
                cli::AclFormat::Strimzi => print!("{}", acls::strimzi_users(&perms, &cluster)),
                cli::AclFormat::K8sPatches => {
                    print!("{}", acls::deployment_patches(&perms, &cluster))
                }
            }
            Ok(())
        }
        Command::KpiDaily => {
            let r = flashfit_pipeline::kpi_daily(&config).await?;
            println!(
                "kpi_daily: {} rows from {} events ({} duplicate event ids counted once); wrote {}",
                r.rows, r.events, r.duplicates, r.path
            );
            if let Some((rows, path)) = &r.users {
                println!("kpi_users: {rows} rows (experiment, variant, user); wrote {path}");
            }
            Ok(())
        }
        Command::Variants { user } => {
            let v = flashfit_outfits::experiments::variants_at(
                &config.experiments,
                &user,
                chrono::Utc::now(),
            );
            println!("{}", serde_json::to_string(&v)?);
            Ok(())
        }
        Command::Ab {
            which:
                AbCommand::Report {
                    experiment,
                    from,
                    to,
                    format,
                    out,
                },
        } => {
            let time = |f: &str, t: Option<String>| -> anyhow::Result<_> {
                Ok(match t {
                    Some(t) => Some(flashfit_config::parse_time(f, &t)?),
                    None => None,
                })
            };
            let (report, written) = flashfit_pipeline::ab_report(
                &config,
                &experiment,
                time("--from", from)?,
                time("--to", to)?,
            )
            .await?;
            match format {
                ReportFormat::Text => print!("{report}"),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                ReportFormat::Html => {
                    let path = out.unwrap_or_else(|| format!("ab-{experiment}.html").into());
                    std::fs::write(&path, flashfit_ab::html::page(&report)?)?;
                    eprintln!("wrote {}", path.display());
                }
            }
            eprintln!("ab_results: wrote {written}");
            if report.srm.mismatch {
                eprintln!("flashfit: sample ratio mismatch: do not trust this readout");
                std::process::exit(3);
            }
            Ok(())
        }
        Command::Experiments {
            which: ExperimentsCommand::Check { running, at },
        } => {
            let old = Config::load(Some(&running))?;
            let now = match at {
                Some(t) => flashfit_config::parse_time("--at", &t)?,
                None => chrono::Utc::now(),
            };
            let check = flashfit_outfits::experiments::check_change(
                &old.experiments,
                &config.experiments,
                now,
            );
            print!("{check}");
            if !check.ok() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Dlq {
            which:
                DlqCommand::List {
                    stage,
                    reason,
                    since,
                    last,
                },
        } => {
            let filter = flashfit_pipeline::dlq::DlqFilter::new(stage, reason, since.as_deref())?;
            let l = flashfit_pipeline::dlq::list(&config.kafka, &filter, last).await?;
            println!("{}", serde_json::to_string_pretty(&l)?);
            Ok(())
        }
        Command::Dlq {
            which:
                DlqCommand::Redrive {
                    stage,
                    reason,
                    since,
                    dry_run,
                    json,
                },
        } => {
            let filter =
                flashfit_pipeline::dlq::DlqFilter::new(Some(stage), reason, since.as_deref())?;
            let mut progress = Progress::new("redrive", None);
            let r = flashfit_pipeline::dlq::redrive(&config.kafka, &filter, dry_run, &mut progress)
                .await?;
            summary(&r, json)
        }
        Command::Replay {
            topic,
            partition,
            from,
            to,
            group,
            into,
            search_times,
            dry_run,
            json,
        } => {
            use flashfit_pipeline::replay::{ReplayOptions, Target};
            let target = match (group, into) {
                (Some(g), _) => Target::Group(g),
                (None, Some(t)) => Target::Topic(t),
                (None, None) => bail!("--group or --into"),
            };
            let options = ReplayOptions {
                topic,
                partition,
                from: from.parse()?,
                to: to.parse()?,
                target,
                dry_run,
                lookup: if search_times {
                    flashfit_pipeline::offsets::Lookup::Search
                } else {
                    flashfit_pipeline::offsets::Lookup::Auto
                },
            };
            let mut progress = Progress::new("replay", None);
            let r =
                flashfit_pipeline::replay::replay(&config.kafka, &options, &mut progress).await?;
            summary(&r, json)
        }
        Command::Reprocess {
            predicate,
            dry_run,
            json,
        } => {
            let mut progress = Progress::new("reprocess", None);
            let r = flashfit_pipeline::reprocess::reprocess(
                &config,
                &predicate,
                dry_run,
                &mut progress,
            )
            .await?;
            summary(&r, json)
        }
        Command::Lag { group, json } => {
            let mut groups = flashfit_pipeline::consumer_groups(&config, &pipeline);
            if let Some(g) = &group {
                groups.retain(|(name, _)| name == g);
                if groups.is_empty() {
                    bail!("no worker group is named {g}");
                }
            }
            let l = flashfit_pipeline::lag::lag(&config.kafka, &groups).await?;
            summary(&l, json)
        }
        Command::Worker { stage } => {
            let workers = build_workers(stage, &config, &pipeline)?;
            let shutdown = CancellationToken::new();
            shutdown_on_signals(shutdown.clone());
            run_workers(&config, workers, Metrics::new(), shutdown).await?;
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
                watch::print_statuses(&w, &events, timeout).await?;
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
            let opts = flashfit_local::RunOptions {
                ingest,
                user,
                exit_when_done,
                timeout: Duration::from_secs(timeout),
                serve,
            };
            let shown = config.clone();
            let Some(report) = flashfit_local::run(config, &pipeline, opts, shutdown).await? else {
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
                BenchCommand::Rollups {
                    garments,
                    events,
                    memory_mb,
                    dir,
                },
        } => {
            let opts = bench::RollupsBench {
                garments: garments.max(1),
                events: events.max(1),
                memory_mb: memory_mb.max(16),
                dir,
            };
            bench::rollups(&opts).await.map_err(Into::into)
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
        Command::Bench {
            which:
                BenchCommand::Chain {
                    images,
                    profiles,
                    embedded,
                    pace,
                    timeout,
                    rounds,
                    repo,
                },
        } => {
            let opts = bench::ChainBench {
                images: images.max(1),
                fixtures: repo.join("tests/fixtures/photos"),
                exe: std::env::current_exe()?,
                profiles: profiles
                    .iter()
                    .map(|p| bench::chain::Profile::parse(p))
                    .collect::<Result<_, _>>()?,
                embedded,
                pace,
                timeout: std::time::Duration::from_secs(timeout),
                rounds: rounds.max(1),
            };
            bench::chain(&config, &opts).await?;
            Ok(())
        }
    }
}

/// A command's final summary on stdout: text, or one JSON object with `--json`.
fn summary<T: std::fmt::Display + serde::Serialize>(r: &T, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

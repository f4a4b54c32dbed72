//! Benchmarks that print figures (run by `flashfit bench …`; never by the test suite).
//!
//! - [`quality`]: quality-stage throughput on ~1024 px JPEGs, one thread, next to the seed's
//!   Python/OpenCV `ImageQualityChecker` on the same files (one OpenCV thread).
//! - [`runtime`]: a pass-through stage on the worker runtime next to a bare rdkafka
//!   consume→produce loop against the same broker: messages/s and end-to-end latency.
//! - [`stages`]: each model stage through the runtime vs bare model calls.
//! - [`parquet`]: the Parquet sink's rows/s and MB/s.
//! - [`lance_bench`]: LanceDB upsert rows/s, upkeep, and query latency p50/p99.
//! - [`rollups`]: `compact` and `kpi-daily` out of core: time and peak RSS.
//! - [`chain()`]: the whole enrichment chain as deployed (a worker process per stage) and
//!   embedded: images/s, latency, CPU per image per stage, peak RSS.

pub mod chain;
mod lance;
mod rollups;
pub use chain::{ChainBench, chain};
pub use lance::{LanceBench, lance_bench};
pub use rollups::{RollupsBench, rollups};

/// Latencies recorded in an HDR histogram (microseconds, 3 significant digits, up to an
/// hour): quantiles without keeping or sorting the samples.
pub struct Latencies(hdrhistogram::Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // 1 µs .. 1 h at 3 significant figures: constant, valid bounds.
        Latencies(
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    /// Records one latency (saturating at the histogram's bounds).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(us);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency at quantile `q` (0..=1) in milliseconds; NaN with no samples.
    pub fn ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
}

use flashfit_schema::StageName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use flashfit_config::{Config, QualityConfig};
use flashfit_quality::{Limits, analyze};
use flashfit_runtime::{Emit, Message, Metrics, Outcome, Stage, kafka, worker};
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use flashfit_pipeline::watch::TopicTail;
use flashfit_pipeline::{EmbeddedBroker, Error, Result};

/// Options of `flashfit bench quality`.
#[derive(Debug, Clone)]
pub struct QualityBench {
    /// Folder of fixture photos the bench images are made from.
    pub fixtures: PathBuf,
    /// Python with opencv-python-headless (the venv infra/up.sh creates).
    pub python: PathBuf,
    /// The reference script (benches/opencv_quality.py).
    pub script: PathBuf,
    pub images: usize,
    pub seconds: f64,
}

/// Runs both sides on the same files and prints a comparison.
pub async fn quality(opts: &QualityBench) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("flashfit-bench-{}", uuid::Uuid::new_v4()));
    let out = std::process::Command::new(&opts.python)
        .arg(&opts.script)
        .arg("make")
        .arg(&opts.fixtures)
        .arg(&dir)
        .arg(opts.images.to_string())
        .output()?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "making bench images failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let files = flashfit_pipeline::ingest::list_images(&dir)?;
    let (w, h) = dims(&files[0])?;
    println!(
        "quality bench: {} JPEGs, first is {w}x{h}, one thread each side",
        files.len()
    );

    let cfg = QualityConfig::default();
    let seconds = opts.seconds;
    let files2 = files.clone();
    let rust = tokio::task::spawn_blocking(move || rust_quality_loop(&files2, &cfg, seconds))
        .await
        .map_err(|e| Error::Invalid(e.to_string()))??;

    let out = std::process::Command::new(&opts.python)
        .arg(&opts.script)
        .arg("run")
        .arg(&dir)
        .arg(opts.seconds.to_string())
        .env("OMP_NUM_THREADS", "1")
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "OpenCV reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let py: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Invalid(format!("reference output: {e}")))?;
    let py_rate = py["images_per_s"].as_f64().unwrap_or(0.0);
    println!("{:<44} {:>10}", "implementation", "images/s");
    println!(
        "{:<44} {:>10.1}",
        "flashfit quality (libjpeg-turbo + fused stats)", rust
    );
    println!(
        "{:<44} {:>10.1}",
        format!(
            "seed ImageQualityChecker (OpenCV {})",
            py["opencv"].as_str().unwrap_or("?")
        ),
        py_rate
    );
    println!(
        "ratio flashfit / opencv: {:.2}x (floor 1.5x)",
        rust / py_rate.max(1e-9)
    );
    Ok(())
}

fn dims(p: &Path) -> Result<(u32, u32)> {
    let a = analyze(
        &std::fs::read(p)?,
        Limits {
            max_pixels: u64::MAX,
            max_side: u32::MAX,
        },
    )
    .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((a.width, a.height))
}

/// What the stage does per image after the fetch: read, decode, measure, threshold.
fn rust_quality_loop(files: &[PathBuf], cfg: &QualityConfig, seconds: f64) -> Result<f64> {
    let limits = Limits {
        max_pixels: cfg.max_pixels,
        max_side: cfg.max_side,
    };
    let one = |f: &PathBuf| -> Result<bool> {
        let bytes = std::fs::read(f)?;
        let a = analyze(&bytes, limits).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(a.width.min(a.height) >= cfg.min_side
            && a.blur_score >= cfg.blur_threshold
            && (cfg.dark_threshold..=cfg.bright_threshold).contains(&a.brightness))
    };
    for f in files {
        one(f)?; // warm up
    }
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        for f in files {
            std::hint::black_box(one(f)?);
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Options of `flashfit bench runtime`.
#[derive(Debug, Clone)]
pub struct RuntimeBench {
    /// Messages preloaded for the throughput phase.
    pub messages: usize,
    /// Messages sent at `rate` per second for the latency phase.
    pub latency_messages: usize,
    pub rate: u32,
    pub payload_bytes: usize,
    /// Alternating rounds of both loops; medians are reported.
    pub rounds: usize,
}

struct PassThrough {
    input: String,
    output: String,
}

#[async_trait]
impl Stage for PassThrough {
    fn name(&self) -> &str {
        "bench-pass"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn output_topics(&self) -> Vec<String> {
        vec![self.output.clone()]
    }
    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|m| {
                Outcome::Emit(vec![Emit {
                    topic: self.output.clone(),
                    key: m.key.map(|k| k.to_vec()),
                    value: m.value.map(|v| v.to_vec()).unwrap_or_default(),
                }])
            })
            .collect()
    }
}

#[derive(Debug)]
struct Figures {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs the bare loop, then the runtime, each on fresh topics of the same broker.
pub async fn runtime(config: &Config, opts: &RuntimeBench) -> Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let names = |mode: &str, round: usize| {
        (
            format!("flashfit.bench.{run}.{mode}{round}.in"),
            format!("flashfit.bench.{run}.{mode}{round}.out"),
        )
    };
    let mut config = config.clone();
    let mut all_topics = Vec::new();
    for round in 0..opts.rounds {
        for mode in MODES {
            let (i, o) = names(mode, round);
            all_topics.extend([i, o]);
        }
    }
    all_topics.push("flashfit.dlq.bench-pass".into());
    let _broker = if config.kafka.brokers.is_none() {
        let b = EmbeddedBroker::start(&all_topics, config.kafka.partitions)?;
        config.kafka.brokers = Some(b.bootstrap_servers().to_owned());
        config.kafka.create_topics = false;
        println!(
            "broker: embedded (librdkafka mock) at {}",
            b.bootstrap_servers()
        );
        Some(b)
    } else {
        kafka::ensure_topics(&config.kafka, &all_topics).await?;
        println!(
            "broker: {}",
            config.kafka.brokers.as_deref().unwrap_or_default()
        );
        None
    };
    let rt = &config.runtime;
    println!(
        "runtime bench: {} preloaded messages of {} bytes, then {} at {}/s for latency; {} partitions; \
         {} rounds alternating, medians shown; runtime batch_size {}, linger_ms {}, max_in_flight_messages {}",
        opts.messages,
        opts.payload_bytes,
        opts.latency_messages,
        opts.rate,
        config.kafka.partitions,
        opts.rounds,
        rt.batch_size,
        rt.linger_ms,
        rt.max_in_flight_messages
    );
    let mut per_mode: Vec<Vec<Figures>> = vec![Vec::new(), Vec::new()];
    for round in 0..opts.rounds {
        for (i, mode) in MODES.iter().enumerate() {
            let (input, output) = names(mode, round);
            let f = measure(&config, opts, mode, &input, &output).await?;
            println!(
                "  round {}: {mode:<8} {:>9.0} msg/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                round + 1,
                f.throughput,
                f.p50_ms,
                f.p99_ms
            );
            per_mode[i].push(f);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{:<40} {:>12} {:>10} {:>10}",
        "loop (median)", "messages/s", "p50 ms", "p99 ms"
    );
    let mut thr = Vec::new();
    for (i, label) in [
        "bare rdkafka consume->produce",
        "flashfit runtime, pass-through stage",
    ]
    .iter()
    .enumerate()
    {
        let t = median(&mut per_mode[i].iter().map(|f| f.throughput).collect());
        let p50 = median(&mut per_mode[i].iter().map(|f| f.p50_ms).collect());
        let p99 = median(&mut per_mode[i].iter().map(|f| f.p99_ms).collect());
        println!("{label:<40} {t:>12.0} {p50:>10.2} {p99:>10.2}");
        thr.push(t);
    }
    println!(
        "runtime / bare throughput: {:.0}% (floor 70%)",
        thr[1] / thr[0].max(1e-9) * 100.0
    );
    Ok(())
}

const MODES: [&str; 2] = ["bare", "runtime"];

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn payload(seq: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{seq:010}:{:020}:", now_us()).into_bytes();
    v.resize(size.max(v.len()), b'x');
    v
}

fn parse_payload(p: &[u8]) -> Option<(usize, u64)> {
    let s = std::str::from_utf8(p.get(..32)?).ok()?;
    Some((s.get(..10)?.parse().ok()?, s.get(11..31)?.parse().ok()?))
}

async fn measure(
    config: &Config,
    opts: &RuntimeBench,
    mode: &str,
    input: &str,
    output: &str,
) -> Result<Figures> {
    let producer = kafka::producer(&config.kafka)?;
    send_all(
        &producer,
        input,
        (0..opts.messages).map(|i| payload(i, opts.payload_bytes)),
    )
    .await?;
    let tail = TopicTail::new(&config.kafka, output)?;
    let token = CancellationToken::new();
    let task = {
        let config = config.clone();
        let token = token.clone();
        let (input, output, mode) = (input.to_owned(), output.to_owned(), mode.to_owned());
        tokio::spawn(async move {
            if mode == "bare" {
                bare_loop(&config, &input, &output, token).await
            } else {
                let stage: Arc<dyn Stage> = Arc::new(PassThrough { input, output });
                worker::run_worker(&config, stage, &Metrics::new(), token)
                    .await
                    .map_err(Error::from)
            }
        })
    };
    // Throughput: from the first output record readable downstream to the last one, both
    // seen by the same consumer, so consumer-group join time is excluded and a loop gets no
    // credit for records it enqueued but the broker has not yet taken.
    let first = tail.recv(Duration::from_secs(120)).await;
    let t0 = Instant::now();
    let mut got = usize::from(first.is_some());
    while got < opts.messages {
        if tail.recv(Duration::from_secs(30)).await.is_none() {
            break;
        }
        got += 1;
    }
    let throughput = got.saturating_sub(1) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    if got < opts.messages {
        return Err(Error::Invalid(format!(
            "{mode}: only {got} of {} messages came through",
            opts.messages
        )));
    }
    // Latency: paced sends while the loop is running and assigned.
    let base = opts.messages;
    let sender = {
        let producer = producer.clone();
        let input = input.to_owned();
        let (n, rate, size) = (opts.latency_messages, opts.rate.max(1), opts.payload_bytes);
        tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
            let mut next = tokio::time::Instant::now();
            let mut pending = Vec::with_capacity(n);
            for i in 0..n {
                tokio::time::sleep_until(next).await;
                next += gap;
                let p = payload(base + i, size);
                let key = format!("{}", i % 64);
                pending.push(enqueue(&producer, &input, &key, &p).await);
            }
            for p in pending {
                let _ = p.await;
            }
        })
    };
    let mut lat = Latencies::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while lat.len() < opts.latency_messages as u64 && Instant::now() < deadline {
        let Some(m) = tail.recv(Duration::from_secs(10)).await else {
            continue;
        };
        if let Some((seq, sent)) = m.payload().and_then(parse_payload)
            && seq >= base
        {
            lat.record(Duration::from_micros(now_us().saturating_sub(sent)));
        }
    }
    let _ = sender.await;
    token.cancel();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(Error::Invalid(e.to_string())),
    }
    Ok(Figures {
        throughput,
        p50_ms: lat.ms(0.5),
        p99_ms: lat.ms(0.99),
    })
}

async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    payloads: impl Iterator<Item = Vec<u8>>,
) -> Result<()> {
    let mut futs = Vec::new();
    for (i, p) in payloads.enumerate() {
        let key = format!("{}", i % 64);
        futs.push(enqueue(producer, topic, &key, &p).await);
        if futs.len() >= 5000 {
            for r in futures::future::join_all(futs.drain(..)).await {
                check_delivery(r)?;
            }
        }
    }
    for r in futures::future::join_all(futs).await {
        check_delivery(r)?;
    }
    Ok(())
}

fn check_delivery(
    r: std::result::Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<()> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(Error::Kafka(e)),
        Err(_) => Err(Error::Invalid("delivery future cancelled".into())),
    }
}

/// Enqueues a record (waiting while librdkafka's queue is full) and returns its delivery future.
async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> rdkafka::producer::DeliveryFuture {
    let mut rec = FutureRecord::to(topic).key(key.as_bytes()).payload(payload);
    loop {
        match producer.send_result(rec) {
            Ok(f) => return f,
            Err((_, r)) => {
                rec = r;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// The baseline: consume, enqueue the produce without waiting for its ack, commit
/// asynchronously every 1,000 messages. The least a consume→produce loop can do.
async fn bare_loop(
    config: &Config,
    input: &str,
    output: &str,
    token: CancellationToken,
) -> Result<()> {
    let group = format!("flashfit-bench-bare-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer =
        kafka::consumer_config(&config.kafka, &group, 60_000)?.create()?;
    consumer.subscribe(&[input])?;
    let producer = kafka::producer(&config.kafka)?;
    let mut since_commit = 0;
    loop {
        let m = tokio::select! {
            _ = token.cancelled() => break,
            m = consumer.recv() => m?,
        };
        let mut rec =
            FutureRecord::<[u8], [u8]>::to(output).payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        loop {
            match producer.send_result(rec) {
                Ok(_delivery) => break,
                Err((_, r)) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        since_commit += 1;
        if since_commit >= 1000 {
            consumer.commit_message(&m, CommitMode::Async)?;
            since_commit = 0;
        }
    }
    Ok(())
}

/// `flashfit bench stages`: each model stage on real photos, through the runtime (the in-memory
/// harness: the same Processor as the Kafka worker, minus the broker) and bare (decode + the
/// same model calls in a loop, no runtime), same batches. Each stage gets its real input: the
/// previous stage's output records.
#[derive(Debug, Clone)]
pub struct StagesBench {
    pub fixtures: PathBuf,
    pub images: usize,
    pub batch: usize,
    pub rounds: usize,
}

async fn bench_stage<E: flashfit_vision::Enricher>(
    io: flashfit_vision::StageIo,
    enricher: E,
    input: &[(Option<Vec<u8>>, Vec<u8>)],
    files: &std::collections::HashMap<String, Vec<u8>>,
    opts: &StagesBench,
) -> Result<(f64, f64, Vec<(Option<Vec<u8>>, Vec<u8>)>)> {
    use flashfit_runtime::Stage as _;
    let stage = Arc::new(flashfit_vision::EnrichStage {
        io,
        enricher: Arc::new(enricher),
    });
    let enricher = stage.enricher.clone();
    let out_topic = stage.output_topics()[0].clone();
    let records: Vec<flashfit_schema::GarmentRecord> = input
        .iter()
        .map(|(_, v)| serde_json::from_slice(v))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let limits = flashfit_quality::Limits {
        max_pixels: 50_000_000,
        max_side: 16_384,
    };
    let cfg = flashfit_config::RuntimeConfig {
        batch_size: opts.batch,
        ..Default::default()
    };
    let (mut bare, mut staged) = (Vec::new(), Vec::new());
    let mut output = Vec::new();
    for _ in 0..opts.rounds {
        // Bare: decode, prepare, infer; batch by batch on one blocking thread.
        let e = enricher.clone();
        let recs = records.clone();
        let bytes: Vec<Vec<u8>> = recs
            .iter()
            .map(|r| {
                files
                    .get(r.upload.image_uri.as_str())
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let batch = opts.batch;
        let t = Instant::now();
        let n = tokio::task::spawn_blocking(move || -> std::result::Result<usize, String> {
            let mut n = 0;
            for (rs, bs) in recs.chunks(batch).zip(bytes.chunks(batch)) {
                let prepared: Vec<E::Prepared> = rs
                    .iter()
                    .zip(bs)
                    .filter_map(|(r, b)| {
                        flashfit_quality::intake::decode_rgb_oriented(b, limits)
                            .ok()
                            .map(|img| e.prepare(r, img))
                    })
                    .collect();
                n += e.infer(prepared)?.len();
            }
            Ok(n)
        })
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?
        .map_err(Error::Invalid)?;
        bare.push(n as f64 / t.elapsed().as_secs_f64());
        // Through the runtime.
        let t = Instant::now();
        let run = flashfit_runtime::harness::run(stage.clone(), input.to_vec(), cfg.clone()).await;
        let out = run.on(&out_topic);
        staged.push(out.len() as f64 / t.elapsed().as_secs_f64());
        output = out
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect();
    }
    Ok((median(bare), median(staged), output))
}

/// The median of `v` (the lower middle for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// A process's peak resident set size (VmHWM), in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Fixture photos the model benches cycle through (a person, objects, an animal).
pub const PHOTOS: [&str; 5] = [
    "person_suit.jpg",
    "coffee.jpg",
    "motorcycle.jpg",
    "cat.jpg",
    "rocket.jpg",
];

pub async fn stages(config: &Config, opts: &StagesBench) -> Result<()> {
    let names: Vec<&str> = PHOTOS
        .iter()
        .copied()
        .chain(["fmnist_ankle_boot.png"])
        .collect();
    let root = url::Url::from_directory_path(
        opts.fixtures
            .canonicalize()
            .map_err(|e| Error::Invalid(format!("{}: {e}", opts.fixtures.display())))?,
    )
    .map_err(|_| Error::Invalid("fixtures path".into()))?
    .to_string();
    let mut files = std::collections::HashMap::new();
    let mut input = Vec::new();
    for i in 0..opts.images {
        let name = names[i % names.len()];
        let uri = format!("{root}{name}");
        files.insert(uri.clone(), std::fs::read(opts.fixtures.join(name))?);
        let rec = serde_json::json!({
            "event_id": format!("bench-{i}"), "user_id": "bench", "garment_id": format!("g-{i}"),
            "image_uri": uri, "uploaded_at": "2026-11-22T00:00:00Z",
            "quality": {"width": 0, "height": 0, "blur_score": 0.0, "brightness": 0.0, "warnings": []}
        });
        input.push((None, serde_json::to_vec(&rec).unwrap_or_default()));
    }
    let mut config = config.clone();
    config.uploads_uri = Some(root);
    // The fixtures are one folder, not users' folders: no owner to check.
    config.quality.owner_prefix.clear();
    // Four of the six photos are not clothing: flagged rather than rejected, so every photo
    // reaches every stage and "img/s" counts the same images in both columns (a rejection is
    // decided after the same inference, and costs nothing more).
    config.classify.not_clothing = flashfit_config::NotClothing::Flag;
    let pipeline = flashfit_pipeline::Pipeline::default_pipeline();
    let dir = flashfit_pipeline::model_dir(&config);
    println!(
        "stage       bare img/s  stage img/s  overhead  ({} images, batch {}, median of {} rounds)",
        opts.images, opts.batch, opts.rounds
    );
    let report = |name: &str, (bare, staged): (f64, f64)| {
        println!(
            "{name:<10} {bare:>11.1} {staged:>12.1} {:>8.1}%",
            (1.0 - staged / bare) * 100.0
        );
    };
    let io = |s: StageName| flashfit_pipeline::vision::io(s, &config, &pipeline);
    let (b, s, next) = bench_stage(
        io(StageName::Detect)?,
        flashfit_pipeline::vision::detector(&config, &dir)?,
        &input,
        &files,
        opts,
    )
    .await?;
    report("detect", (b, s));
    let (b, s, next) = bench_stage(
        io(StageName::Classify)?,
        flashfit_pipeline::vision::classifier(&config, &dir)?,
        &next,
        &files,
        opts,
    )
    .await?;
    report("classify", (b, s));
    let (b, s, next) = bench_stage(
        io(StageName::Attributes)?,
        flashfit_pipeline::vision::attributes(&config, &dir)?,
        &next,
        &files,
        opts,
    )
    .await?;
    report("attributes", (b, s));
    let (b, s, _) = bench_stage(
        io(StageName::Embed)?,
        flashfit_pipeline::vision::embedder(&config, &dir)?,
        &next,
        &files,
        opts,
    )
    .await?;
    report("embed", (b, s));
    Ok(())
}

/// `flashfit bench parquet`: the garments sink on synthetic `flashfit.embedded` records (with
/// their 1280 + 384 float vectors, as the embed stage writes them), to a local directory.
#[derive(Debug, Clone)]
pub struct ParquetBench {
    pub records: usize,
    pub file_rows: usize,
    pub rounds: usize,
}

pub(crate) fn synthetic_embedded(i: usize) -> serde_json::Value {
    let v = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|k| ((k * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let cats = ["jeans", "t_shirt", "sneakers", "blazer", "midi_dress"];
    let colours = ["navy", "black", "white", "red", "beige"];
    serde_json::json!({
        "event_id": format!("bench-{i:08}"), "garment_id": format!("g-{:06}", i % 50_000),
        "user_id": format!("u-{}", i % 500), "image_uri": format!("s3://flashfit/uploads/{i}.jpg"),
        "uploaded_at": "2026-11-22T10:00:00Z",
        "quality": {"width": 1024, "height": 768, "blur_score": 312.5, "brightness": 121.0, "warnings": []},
        "detection": {"class": "foreground", "confidence": null, "bbox": [12.0, 30.0, 980.0, 700.0],
            "source": "foreground", "model": null, "all": [
                {"class": "person", "confidence": 0.61, "bbox": [0.0, 0.0, 1024.0, 768.0], "model": "centernet-coco", "role": "person"}]},
        "classification": {"category": cats[i % 5], "group": "tops", "confidence": 0.62,
            "topk": [{"category": cats[i % 5], "confidence": 0.62}, {"category": cats[(i + 1) % 5], "confidence": 0.2}, {"category": cats[(i + 2) % 5], "confidence": 0.1}],
            "is_clothing": 0.91, "flagged": false},
        "attributes": {"color_primary": colours[i % 5], "color_secondary": colours[(i + 2) % 5],
            "colors": [{"name": colours[i % 5], "rgb": [20, 30, 110], "share": 0.7}, {"name": colours[(i + 2) % 5], "rgb": [240, 240, 240], "share": 0.3}],
            "pattern": "solid", "fit": "regular", "formality": 0.55, "seasons": ["spring", "fall"],
            "style_tags": ["classic", "minimalist"], "background_mask": "border"},
        "embedding": {"image_vector": v(1280, i), "caption": "navy solid dress shirt, classic", "text_vector": v(384, i + 1)},
        "models": [{"stage": "detect", "name": "ssd-mobilenetv2-oidv4", "version": "1"},
                   {"stage": "classify", "name": "efficientnet-lite0+imagenet-taxonomy-map", "version": "1"},
                   {"stage": "attributes", "name": "flashfit-attribute-rules", "version": "1"},
                   {"stage": "embed", "name": "efficientnet-lite0+all-minilm-l6-v2", "version": "1+1"}],
        "processed_at": "2026-11-22T10:00:01.000Z",
    })
}

pub async fn parquet(opts: &ParquetBench) -> Result<()> {
    let input: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..opts.records)
        .map(|i| {
            (
                None,
                serde_json::to_vec(&synthetic_embedded(i)).unwrap_or_default(),
            )
        })
        .collect();
    let in_bytes: usize = input.iter().map(|(_, v)| v.len()).sum();
    let cfg = flashfit_config::RuntimeConfig {
        batch_size: opts.file_rows.max(1),
        ..Default::default()
    };
    let mut rates = Vec::new();
    let mut out_bytes = 0u64;
    let mut files = 0usize;
    for _ in 0..opts.rounds.max(1) {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path())
                .map_err(|e| Error::Invalid(e.to_string()))?,
        );
        let table = flashfit_sinks::table::Table::new(
            store,
            object_store::path::Path::from("garments"),
            flashfit_sinks::layout::GARMENTS,
        );
        let sink = Arc::new(flashfit_sinks::stage::ParquetSink::new(
            table,
            "flashfit.embedded".into(),
            usize::MAX,
        ));
        let t = Instant::now();
        let run = flashfit_runtime::harness::run(sink, input.clone(), cfg.clone()).await;
        let secs = t.elapsed().as_secs_f64();
        if !run.result.unfinished.is_empty() || run.records.iter().any(|r| r.topic.contains("dlq"))
        {
            return Err(Error::Invalid("the sink did not write every record".into()));
        }
        rates.push(opts.records as f64 / secs);
        (out_bytes, files) = (0, 0);
        for e in walk(dir.path())? {
            if e.extension().is_some_and(|x| x == "parquet") {
                out_bytes += std::fs::metadata(&e)?.len();
                files += 1;
            }
        }
    }
    let rate = median(rates);
    let mb = in_bytes as f64 / opts.records as f64 * rate / 1e6;
    println!(
        "parquet sink: {} records ({:.1} MB of JSON input, vectors included), files of {} rows, median of {} rounds",
        opts.records,
        in_bytes as f64 / 1e6,
        opts.file_rows,
        opts.rounds.max(1)
    );
    println!(
        "  {rate:.0} rows/s, {mb:.1} MB/s of input; wrote {files} files, {:.2} MB of Parquet ({:.0} bytes/row)",
        out_bytes as f64 / 1e6,
        out_bytes as f64 / opts.records as f64
    );
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Latencies;

    /// Quantiles within the histogram's 3 significant figures of the exact order statistics.
    #[test]
    fn latency_quantiles_match_the_samples() {
        let mut l = Latencies::new();
        assert!(l.ms(0.5).is_nan());
        for us in 1..=10_000u64 {
            l.record(Duration::from_micros(us * 10));
        }
        assert_eq!(l.len(), 10_000);
        for (q, exact_ms) in [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0)] {
            let got = l.ms(q);
            assert!(
                (got - exact_ms).abs() <= exact_ms * 1e-3,
                "q {q}: {got} vs {exact_ms}"
            );
        }
        assert!((l.max_ms() - 100.0).abs() <= 0.1);
    }
}

//! `flashfit bench chain`: the whole enrichment chain as it is deployed — one `flashfit worker`
//! process per stage (quality → detect → classify → attributes → embed) on the local stack —
//! and the same chain inside one embedded `flashfit run`, fed N uploads of ~1024 px photos.
//!
//! Per deployment it prints: images/s end to end (N uploads published at once, first publish to
//! last `processed` status), upload→`processed` latency p50/p99 in that burst and at a paced
//! load of half the measured throughput, CPU-seconds per image per process (utime + stime from
//! `/proc/<pid>/stat`, over the burst), and peak RSS per process (VmHWM).
//!
//! Each *profile* says what runs: `default` is today's binary as it ships; `baseline` is
//! today's binary with environment overrides pinning the settings the first wave shipped with
//! (two spinning intra-op threads per model, the embed stage running EfficientNet again), which
//! cannot switch off code-level changes; `NAME=DIR` runs another build's `DIR/flashfit` with
//! its own defaults and, if `DIR/models` exists, its own models (`infra/first_wave.sh` builds
//! the first wave's code and models so: `first-wave=/var/cache/flashfit/first-wave`). All run
//! in the same invocation, so the ratio is measured on the same machine in the same run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use flashfit_config::Config;
use flashfit_pipeline::{Error, Result};
use flashfit_schema::{Status, StatusEvent, Topics, UploadEvent};
use rdkafka::Message as _;

use crate::{Latencies, median, peak_rss_mib};

/// The stages of the chain, in order, as `flashfit worker` names them.
pub const CHAIN: [&str; 5] = ["quality", "detect", "classify", "attributes", "embed"];

/// The first wave's settings, as environment overrides on today's configuration: two
/// spinning intra-op threads and one session per model, one garment tagged at a time, the
/// foreground fallback on every pixel, the embed stage running EfficientNet-Lite0 again.
pub const BASELINE: &[(&str, &str)] = &[
    ("FLASHFIT_ONNX__SPINNING", "true"),
    ("FLASHFIT_DETECT__THREADS", "2"),
    ("FLASHFIT_DETECT__JOBS", "1"),
    ("FLASHFIT_DETECT__FOREGROUND_SIDE", "0"),
    ("FLASHFIT_CLASSIFY__THREADS", "2"),
    ("FLASHFIT_CLASSIFY__JOBS", "1"),
    ("FLASHFIT_CLASSIFY__SHARE_EMBEDDING", "false"),
    ("FLASHFIT_ATTRIBUTES__THREADS", "1"),
    ("FLASHFIT_ATTRIBUTES__JOBS", "1"),
    ("FLASHFIT_EMBED__THREADS", "2"),
    ("FLASHFIT_EMBED__JOBS", "1"),
];

/// What to run.
#[derive(Debug, Clone)]
pub struct ChainBench {
    /// Uploads in the throughput burst.
    pub images: usize,
    /// Fixture photos (scaled to ~1024 px and re-encoded as JPEG).
    pub fixtures: PathBuf,
    /// The `flashfit` binary to start workers from.
    pub exe: PathBuf,
    /// Profiles to run, in order.
    pub profiles: Vec<Profile>,
    /// Also run each profile as one embedded `flashfit run` process.
    pub embedded: bool,
    /// The paced phase's load, as a fraction of the burst's throughput (0: skip it).
    pub pace: f64,
    /// How long to wait for every status of a phase.
    pub timeout: Duration,
    /// Rounds of every profile, alternating (the machine's noise is ±10%): medians reported.
    pub rounds: usize,
}

/// The figures of one deployment of one profile.
#[derive(Debug, Clone)]
pub struct Figures {
    pub profile: String,
    pub deployment: &'static str,
    pub images: usize,
    pub images_per_s: f64,
    pub burst_p50_ms: f64,
    pub burst_p99_ms: f64,
    pub paced_rate: f64,
    pub paced_p50_ms: f64,
    pub paced_p99_ms: f64,
    /// Statuses other than `processed` in the burst (rejected or failed uploads).
    pub not_processed: usize,
    /// Per process: name, CPU-seconds per image, peak RSS (MiB).
    pub processes: Vec<(String, f64, f64)>,
    /// The whole machine's busy CPU-seconds per image over the burst (FlashFit's processes,
    /// the broker, the object store, this bench).
    pub machine_cpu_per_image: f64,
    /// Cores the whole machine kept busy during the burst, on average.
    pub machine_cores_busy: f64,
}

impl Figures {
    pub fn cpu_per_image(&self) -> f64 {
        self.processes.iter().map(|p| p.1).sum()
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} / {}: {:.2} images/s ({} images), burst p50 {:.0} ms p99 {:.0} ms; \
             paced at {:.2}/s p50 {:.0} ms p99 {:.0} ms; CPU {:.3} s/image{}",
            self.profile,
            self.deployment,
            self.images_per_s,
            self.images,
            self.burst_p50_ms,
            self.burst_p99_ms,
            self.paced_rate,
            self.paced_p50_ms,
            self.paced_p99_ms,
            self.cpu_per_image(),
            if self.not_processed > 0 {
                format!("; {} NOT processed", self.not_processed)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "    whole machine {:.3} CPU-s/image, {:.2} cores busy (FlashFit + broker + object store + bench)",
            self.machine_cpu_per_image, self.machine_cores_busy
        )?;
        for (name, cpu, rss) in &self.processes {
            writeln!(
                f,
                "    {name:<11} {:>7.1} ms CPU/image  peak RSS {rss:>6.0} MiB",
                cpu * 1000.0
            )?;
        }
        Ok(())
    }
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

/// What one profile runs: a `flashfit` binary and environment overrides for its workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// Another build's binary (`NAME=DIR`); `None`: this one.
    pub exe: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl Profile {
    /// `default`, `baseline`, or `NAME=DIR` (`DIR/flashfit`, with `DIR/models` as its models
    /// directory when there is one).
    pub fn parse(spec: &str) -> Result<Self> {
        let (name, exe, env) = match spec.split_once('=') {
            Some((name, dir)) => {
                let dir = PathBuf::from(dir);
                let exe = dir.join("flashfit");
                if !exe.is_file() {
                    return Err(Error::Invalid(format!(
                        "profile {name}: {} is not a file (build it with infra/first_wave.sh)",
                        exe.display()
                    )));
                }
                let models = dir.join("models");
                let env = if models.is_dir() {
                    vec![(
                        "FLASHFIT_MODELS_DIR".to_owned(),
                        models.display().to_string(),
                    )]
                } else {
                    Vec::new()
                };
                (name, Some(exe), env)
            }
            None if spec == "baseline" => (
                spec,
                None,
                BASELINE
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            None if spec == "default" => (spec, None, Vec::new()),
            None => {
                return Err(Error::Invalid(format!(
                    "unknown profile {spec:?}: baseline, default or NAME=DIR"
                )));
            }
        };
        Ok(Profile {
            name: name.to_owned(),
            exe,
            env,
        })
    }
}

/// ~1024 px JPEGs made from the fixture photos (long side scaled to 1024, quality 90).
pub fn photos(fixtures: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let names = crate::PHOTOS.iter().copied().chain(["hubble.jpg"]);
    let mut out = Vec::new();
    for name in names {
        let img = image::open(fixtures.join(name))
            .map_err(|e| Error::Invalid(format!("{name}: {e}")))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        let scale = 1024.0 / f64::from(w.max(h));
        let (nw, nh) = (
            (f64::from(w) * scale).round() as u32,
            (f64::from(h) * scale).round() as u32,
        );
        let big = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&big)
            .map_err(invalid)?;
        out.push((name.replace(".jpg", "-1024.jpg"), bytes));
    }
    Ok(out)
}

/// A process's CPU time (user + system) so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // In USER_HZ, which Linux fixes at 100 for what /proc exports.
    Some(ticks / 100.0)
}

/// CPU-seconds the whole machine spent busy so far (every process: the broker and object
/// store of the local stack too), from `/proc/stat`.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: busy = all but idle and iowait.
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
    Some((total - idle) / 100.0)
}

/// The bench's processes and how to reach the chain they run.
struct Deployment {
    children: Vec<(String, tokio::process::Child)>,
    producer: rdkafka::producer::FutureProducer,
    tail: flashfit_pipeline::watch::TopicTail,
    topics: Topics,
    uris: Vec<String>,
    seq: usize,
    run: String,
    logs: PathBuf,
}

impl Deployment {
    fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter_map(|(n, c)| c.id().map(|p| (n.clone(), p)))
            .collect()
    }

    fn cpu(&self) -> HashMap<String, f64> {
        self.pids()
            .into_iter()
            .map(|(n, p)| (n, cpu_seconds(p).unwrap_or(0.0)))
            .collect()
    }

    fn check_alive(&mut self) -> Result<()> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Invalid(format!(
                    "{name} exited ({status}) during the bench; its log: {}",
                    self.logs.join(format!("{name}.log")).display()
                )));
            }
        }
        Ok(())
    }

    fn next_events(&mut self, n: usize) -> Vec<UploadEvent> {
        (0..n)
            .map(|_| {
                self.seq += 1;
                let i = self.seq;
                UploadEvent {
                    event_id: format!("{}-{i}", self.run),
                    user_id: bench_user(i % self.uris.len()),
                    garment_id: format!("{}-g{i}", self.run),
                    image_uri: self.uris[i % self.uris.len()].clone(),
                    uploaded_at: Utc::now(),
                    kind: None,
                }
            })
            .collect()
    }

    /// Publishes `events` (all at once, or one every `1 / rate` s) and waits for each one's
    /// status: (send instants, status per event id with the time it was decided).
    async fn run_phase(
        &mut self,
        events: Vec<UploadEvent>,
        rate: Option<f64>,
        timeout: Duration,
    ) -> Result<Phase> {
        let topic = self.topics.uploads();
        let mut sent: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
        let started = Instant::now();
        let first = Utc::now();
        let mut seen: HashMap<String, StatusEvent> = HashMap::new();
        let ids: std::collections::HashSet<String> =
            events.iter().map(|e| e.event_id.clone()).collect();
        match rate {
            None => {
                for e in &events {
                    sent.insert(e.event_id.clone(), Utc::now());
                }
                flashfit_pipeline::ingest::publish(&self.producer, &topic, &events).await?;
            }
            Some(r) => {
                let gap = Duration::from_secs_f64(1.0 / r.max(0.01));
                let mut tick = tokio::time::interval(gap);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for e in &events {
                    tick.tick().await;
                    sent.insert(e.event_id.clone(), Utc::now());
                    flashfit_pipeline::ingest::publish(
                        &self.producer,
                        &topic,
                        std::slice::from_ref(e),
                    )
                    .await?;
                    self.drain_statuses(&ids, &mut seen, Duration::ZERO).await;
                }
            }
        }
        let deadline = started + timeout;
        while seen.len() < ids.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Invalid(format!(
                    "{} of {} uploads had no status within {timeout:?}; logs in {}",
                    ids.len() - seen.len(),
                    ids.len(),
                    self.logs.display()
                )));
            }
            self.check_alive()?;
            self.drain_statuses(&ids, &mut seen, left.min(Duration::from_secs(2)))
                .await;
        }
        let mut lat = Latencies::new();
        let mut last = first;
        let mut not_processed = 0;
        for (id, s) in &seen {
            if s.status != Status::Processed {
                not_processed += 1;
            }
            last = last.max(s.ts);
            if let Some(t) = sent.get(id) {
                lat.record((s.ts - *t).to_std().unwrap_or_default());
            }
        }
        let span = (last - first).to_std().unwrap_or_default().as_secs_f64();
        Ok(Phase {
            images_per_s: ids.len() as f64 / span.max(1e-3),
            p50: lat.ms(0.5),
            p99: lat.ms(0.99),
            not_processed,
        })
    }

    /// Reads statuses (first `processed`/`rejected`/`failed` per id of `ids`) for up to `wait`.
    async fn drain_statuses(
        &self,
        ids: &std::collections::HashSet<String>,
        seen: &mut HashMap<String, StatusEvent>,
        wait: Duration,
    ) {
        let mut wait = wait;
        while let Some(m) = self.tail.recv(wait).await {
            wait = Duration::ZERO;
            let Some(s) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<StatusEvent>(p).ok())
            else {
                continue;
            };
            let done = matches!(
                s.status,
                Status::Processed | Status::Rejected | Status::Failed
            );
            if let Some(id) = s.event_id.clone().filter(|i| done && ids.contains(i)) {
                seen.entry(id).or_insert(s);
            }
        }
    }
}

struct Phase {
    images_per_s: f64,
    p50: f64,
    p99: f64,
    not_processed: usize,
}

/// Starts `deployment` ("chain": a worker per stage; "embedded": one `flashfit run`) for a
/// profile and measures it.
async fn measure(
    config: &Config,
    opts: &ChainBench,
    profile: &Profile,
    deployment: &'static str,
    photos: &[(String, Vec<u8>)],
) -> Result<Figures> {
    let run = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let prefix = format!("{run}.");
    let logs = std::env::temp_dir().join(format!("flashfit-{run}"));
    std::fs::create_dir_all(&logs)?;
    let mut env = vec![
        ("FLASHFIT_KAFKA__TOPIC_PREFIX".to_owned(), prefix.clone()),
        (
            "FLASHFIT_KAFKA__GROUP_PREFIX".to_owned(),
            format!("{prefix}flashfit"),
        ),
        ("FLASHFIT_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("FLASHFIT_LOG_FORMAT".to_owned(), "json".to_owned()),
    ];
    env.extend(profile.env.iter().cloned());
    let mut kafka = config.kafka.clone();
    kafka.topic_prefix = prefix.clone();
    let topics = Topics::new(prefix.clone());
    // Topics first, so the status tail and the workers see every partition from the start.
    let mut names = vec![topics.uploads(), topics.status()];
    for s in flashfit_schema::StageName::ALL {
        names.extend(topics.output_of(s));
        names.push(topics.dlq(s.as_str()));
    }
    flashfit_runtime::kafka::ensure_topics(&kafka, &names).await?;
    // The photos, under this run's prefix in the uploads location.
    let uploads = flashfit_storage::Location::open(
        config.uploads_uri.as_deref().ok_or_else(|| {
            Error::Invalid("FLASHFIT_UPLOADS_URI is not set: source the stack's env.sh".into())
        })?,
        &config.s3,
    )
    .map_err(invalid)?;
    let mut uris = Vec::new();
    for (j, (name, bytes)) in photos.iter().enumerate() {
        use flashfit_storage::object_store::ObjectStoreExt as _;
        // Photo j is user j's (the folder the quality stage checks the owner by).
        let path = uploads
            .child(&format!("{}/{run}/{name}", bench_user(j)))
            .map_err(invalid)?;
        uploads
            .store()
            .put(&path, bytes.clone().into())
            .await
            .map_err(invalid)?;
        uris.push(uploads.uri_of(&path));
    }
    let mut children = Vec::new();
    let spawn = |name: &str, args: &[&str], extra: &[(String, String)]| -> Result<_> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let mut cmd = tokio::process::Command::new(profile.exe.as_ref().unwrap_or(&opts.exe));
        // Most bench photos are not clothing: flagged rather than rejected, so every photo
        // reaches every stage and the figures are per photo through the whole chain.
        cmd.args(args)
            .env("FLASHFIT_CLASSIFY__NOT_CLOTHING", "flag")
            .envs(env.iter().cloned())
            .envs(extra.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        Ok((name.to_owned(), cmd.spawn()?))
    };
    match deployment {
        "chain" => {
            for stage in CHAIN {
                children.push(spawn(stage, &["worker", stage], &[])?);
            }
        }
        _ => {
            let warehouse = logs.join("warehouse");
            let lance = logs.join("lance");
            children.push(spawn(
                "flashfit-run",
                &["run"],
                &[
                    (
                        "FLASHFIT_WAREHOUSE_URI".into(),
                        url::Url::from_directory_path(&warehouse)
                            .map_err(|_| invalid("warehouse path"))?
                            .to_string(),
                    ),
                    ("FLASHFIT_LANCEDB_URI".into(), lance.display().to_string()),
                ],
            )?);
        }
    }
    let producer = flashfit_runtime::kafka::producer(&kafka)?;
    let tail = flashfit_pipeline::watch::TopicTail::new(&kafka, &topics.status())?;
    let mut d = Deployment {
        children,
        producer,
        tail,
        topics,
        uris,
        seq: 0,
        run,
        logs,
    };
    // Warm-up: every photo once (models loaded, first inferences done, consumers assigned).
    let warm = d.next_events(photos.len());
    d.run_phase(warm, None, opts.timeout.max(Duration::from_secs(180)))
        .await?;
    let before = d.cpu();
    let machine_before = machine_busy_seconds().unwrap_or(0.0);
    let started = Instant::now();
    let events = d.next_events(opts.images);
    let burst = d.run_phase(events, None, opts.timeout).await?;
    let after = d.cpu();
    let machine = machine_busy_seconds().unwrap_or(0.0) - machine_before;
    let wall = started.elapsed().as_secs_f64();
    let mut processes = Vec::new();
    for (name, pid) in d.pids() {
        let cpu =
            after.get(&name).copied().unwrap_or(0.0) - before.get(&name).copied().unwrap_or(0.0);
        processes.push((
            name,
            cpu / opts.images.max(1) as f64,
            peak_rss_mib(pid).unwrap_or(0.0),
        ));
    }
    let (mut paced_rate, mut paced) = (0.0, None);
    if opts.pace > 0.0 {
        paced_rate = burst.images_per_s * opts.pace;
        let n = (opts.images / 2).max(10);
        let events = d.next_events(n);
        paced = Some(d.run_phase(events, Some(paced_rate), opts.timeout).await?);
    }
    let logs = d.logs.clone();
    drop(d);
    let _ = std::fs::remove_dir_all(&logs);
    Ok(Figures {
        profile: profile.name.clone(),
        deployment,
        images: opts.images,
        images_per_s: burst.images_per_s,
        burst_p50_ms: burst.p50,
        burst_p99_ms: burst.p99,
        paced_rate,
        paced_p50_ms: paced.as_ref().map_or(0.0, |p| p.p50),
        paced_p99_ms: paced.as_ref().map_or(0.0, |p| p.p99),
        not_processed: burst.not_processed,
        processes,
        machine_cpu_per_image: machine / opts.images.max(1) as f64,
        machine_cores_busy: machine / wall.max(1e-3),
    })
}

/// Runs every profile (and deployment) `rounds` times, alternating, printing each run's
/// figures, then per deployment the median images/s, CPU per image and paced p99 of each
/// profile and the ratio of the last profile to the first.
pub async fn chain(config: &Config, opts: &ChainBench) -> Result<Vec<Figures>> {
    let photos = photos(&opts.fixtures)?;
    let mut all = Vec::new();
    let deployments: &[&'static str] = if opts.embedded {
        &["chain", "embedded"]
    } else {
        &["chain"]
    };
    for round in 1..=opts.rounds.max(1) {
        for profile in &opts.profiles {
            for deployment in deployments {
                eprintln!(
                    "bench chain: round {round}, {} / {deployment} ...",
                    profile.name
                );
                let f = measure(config, opts, profile, deployment, &photos).await?;
                print!("{f}");
                all.push(f);
            }
        }
    }
    for deployment in deployments {
        let of = |p: &str| -> Option<(f64, f64, f64)> {
            let runs: Vec<&Figures> = all
                .iter()
                .filter(|f| f.profile == p && f.deployment == *deployment)
                .collect();
            (!runs.is_empty()).then(|| {
                (
                    median(runs.iter().map(|f| f.images_per_s).collect()),
                    median(runs.iter().map(|f| f.cpu_per_image()).collect()),
                    median(runs.iter().map(|f| f.paced_p99_ms).collect()),
                )
            })
        };
        for p in opts.profiles.iter().map(|p| &p.name) {
            if let Some((ips, cpu, p99)) = of(p) {
                println!(
                    "{deployment} {p}: median of {} rounds: {ips:.2} images/s, CPU {cpu:.3} s/image, paced p99 {p99:.0} ms",
                    opts.rounds.max(1)
                );
            }
        }
        if let (Some(first), Some(last)) = (
            opts.profiles.first().map(|p| &p.name),
            opts.profiles.last().map(|p| &p.name),
        ) && first != last
            && let (Some(a), Some(b)) = (of(first), of(last))
        {
            println!(
                "{deployment}: {last} / {first} = {:.2}x images/s (medians)",
                b.0 / a.0.max(1e-9)
            );
        }
    }
    Ok(all)
}

/// The user of the benchmark's `j`th photo.
fn bench_user(j: usize) -> String {
    format!("bench-user-{j}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_peak_rss() {
        let pid = std::process::id();
        let t0 = cpu_seconds(pid).expect("stat");
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let t1 = cpu_seconds(pid).expect("stat");
        assert!(
            t1 - t0 >= 0.1,
            "200 ms of spinning counted as {} s",
            t1 - t0
        );
        assert!(peak_rss_mib(pid).expect("status") > 1.0);
        assert!(x > 0);
    }

    /// Every baseline override names a configuration field and parses (a typo would make
    /// the workers refuse to start mid-bench).
    #[test]
    fn the_baseline_overrides_are_valid_configuration() {
        let env = Profile::parse("baseline").expect("baseline").env;
        assert!(!env.is_empty());
        let c = Config::from_sources(None, env).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.onnx.spinning);
        assert!(!c.classify.share_embedding);
        assert_eq!(
            (c.detect.threads, c.detect.jobs, c.detect.foreground_side),
            (2, 1, 0)
        );
    }

    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn profiles_are_known_by_name_or_given_a_build() {
        let default = Profile::parse("default").expect("default");
        assert!(default.env.is_empty() && default.exe.is_none());
        assert!(Profile::parse("baseline").is_ok());
        assert!(Profile::parse("fast").is_err());
        // NAME=DIR: that build's binary, with its models directory when it has one.
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = format!("old={}", dir.path().display());
        let e = Profile::parse(&missing).expect_err("no binary there");
        assert!(e.to_string().contains("first_wave.sh"), "{e}");
        std::fs::write(dir.path().join("flashfit"), b"").expect("write");
        let p = Profile::parse(&missing).expect("a binary");
        assert_eq!(
            (p.name.as_str(), p.exe, p.env.len()),
            ("old", Some(dir.path().join("flashfit")), 0)
        );
        std::fs::create_dir(dir.path().join("models")).expect("mkdir");
        let p = Profile::parse(&missing).expect("a binary and models");
        assert_eq!(
            p.env,
            vec![(
                "FLASHFIT_MODELS_DIR".to_owned(),
                dir.path().join("models").display().to_string()
            )]
        );
    }
}

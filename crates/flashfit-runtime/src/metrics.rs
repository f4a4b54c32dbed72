use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The metric set every stage exports, with fixed low-cardinality labels. One per process,
/// served on `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    received: IntCounterVec,
    produced: IntCounterVec,
    dead_lettered: IntCounterVec,
    errors: IntCounterVec,
    statuses: IntCounterVec,
    batch_seconds: HistogramVec,
    blocked_seconds: CounterVec,
    lag: IntGaugeVec,
    stuck: prometheus::GaugeVec,
    age: prometheus::GaugeVec,
    health_state: prometheus::IntGauge,
    health: Arc<Health>,
    /// Stages currently degraded (a stuck partition, a paused dead-letter breaker), with why.
    degraded: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Values of the `kind` label of `flashfit_errors_total`.
pub const ERROR_KINDS: &[&str] = &[
    "bad_input",
    "transient",
    "produce",
    "commit",
    "consume",
    "internal",
];

/// Process health for `/health`.
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

impl Health {
    pub const STARTING: u8 = 0;
    pub const RUNNING: u8 = 1;
    pub const STOPPING: u8 = 2;
    pub const FAILED: u8 = 3;

    pub fn set(&self, v: u8) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn label(&self) -> &'static str {
        match self.get() {
            Self::STARTING => "starting",
            Self::RUNNING => "ok",
            Self::STOPPING => "stopping",
            _ => "failed",
        }
    }
}

/// Registers a metric built from constant definitions: failure is a programming error caught
/// by every test that creates [`Metrics`].
fn register<M: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    m: prometheus::Result<M>,
) -> M {
    let m = m.expect("valid metric definition");
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let received = counter(
            &r,
            "flashfit_messages_received_total",
            "Messages consumed.",
            &["stage"],
        );
        let produced = counter(
            &r,
            "flashfit_messages_produced_total",
            "Records acknowledged by the broker, by destination topic.",
            &["stage", "topic"],
        );
        let dead_lettered = counter(
            &r,
            "flashfit_messages_dead_lettered_total",
            "Messages sent to the stage's dead-letter topic, by reason.",
            &["stage", "reason"],
        );
        let errors = counter(
            &r,
            "flashfit_errors_total",
            "Errors by kind: bad_input (dead-lettered), transient (retried), produce (retried), commit.",
            &["stage", "kind"],
        );
        let statuses = counter(
            &r,
            "flashfit_status_events_total",
            "Terminal status events published, by status.",
            &["stage", "status"],
        );
        let batch_seconds = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "flashfit_batch_duration_seconds",
                    "Time from a batch closing to all its records being acknowledged.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["stage"],
            ),
        );
        let blocked_seconds = register(
            &r,
            CounterVec::new(
                Opts::new(
                    "flashfit_downstream_blocked_seconds_total",
                    "Time spent waiting for the broker: in-flight queue full, acknowledgements, commits.",
                ),
                &["stage"],
            ),
        );
        let lag = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "flashfit_consumer_lag_messages",
                    "Messages between the stage's position and the high watermark, summed over assigned partitions.",
                ),
                &["stage"],
            ),
        );
        let stuck = register(
            &r,
            prometheus::GaugeVec::new(
                Opts::new(
                    "flashfit_oldest_stuck_message_seconds",
                    "How long the oldest message still being retried has kept its partition from advancing (0: none).",
                ),
                &["stage"],
            ),
        );
        let age = register(
            &r,
            prometheus::GaugeVec::new(
                Opts::new(
                    "flashfit_oldest_message_age_seconds",
                    "Age (now minus record timestamp) of the oldest message of the batch being processed; 0 when caught up.",
                ),
                &["stage"],
            ),
        );
        let health_state = register(
            &r,
            prometheus::IntGauge::new(
                "flashfit_health_state",
                "Process health as /health reports it: 0 starting, 1 ok, 2 stopping, 3 failed.",
            ),
        );
        Metrics {
            registry: r,
            stuck,
            age,
            health_state,
            degraded: Default::default(),
            received,
            produced,
            dead_lettered,
            errors,
            statuses,
            batch_seconds,
            blocked_seconds,
            lag,
            health: Arc::new(Health::default()),
        }
    }

    /// The handles one stage uses.
    pub fn stage(&self, stage: &str) -> StageMetrics {
        // Export every series at zero from the start, so dashboards and alerts see them.
        for kind in ERROR_KINDS {
            self.errors.with_label_values(&[stage, kind]);
        }
        for reason in flashfit_schema::Reason::ALL {
            self.dead_lettered
                .with_label_values(&[stage, reason.as_str()]);
        }
        for status in ["processed", "rejected", "failed"] {
            self.statuses.with_label_values(&[stage, status]);
        }
        self.lag.with_label_values(&[stage]);
        self.stuck.with_label_values(&[stage]);
        self.age.with_label_values(&[stage]);
        self.batch_seconds.with_label_values(&[stage]);
        self.blocked_seconds.with_label_values(&[stage]);
        StageMetrics {
            stage: stage.to_owned(),
            metrics: self.clone(),
            received: self.received.with_label_values(&[stage]),
        }
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Why the process is degraded (stage → reason); empty when it is not.
    pub fn degraded(&self) -> std::collections::BTreeMap<String, String> {
        self.degraded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Prometheus text exposition (this process's stage metrics and the sinks' writes).
    pub fn encode(&self) -> String {
        self.health_state.set(i64::from(self.health.get()));
        let mut families = self.registry.gather();
        families.extend(SINK_REGISTRY.gather());
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The sinks' write counters: one per process, whatever `Metrics` the workers were given
/// (sinks write from inside their stage, which has no handle on it).
static SINK_REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::new);

struct SinkCounters {
    rows: IntCounterVec,
    files: IntCounterVec,
}

static SINK_COUNTERS: std::sync::LazyLock<SinkCounters> =
    std::sync::LazyLock::new(|| SinkCounters {
        rows: counter(
            &SINK_REGISTRY,
            "flashfit_sink_rows_written_total",
            "Rows a sink wrote durably (Parquet files created, LanceDB rows merged), by table.",
            &["stage", "table"],
        ),
        files: counter(
            &SINK_REGISTRY,
            "flashfit_sink_files_written_total",
            "Files (Parquet) or commits (LanceDB) a sink wrote, by table.",
            &["stage", "table"],
        ),
    });

static KPI_VARIANT_MISMATCHES: std::sync::LazyLock<IntCounterVec> =
    std::sync::LazyLock::new(|| {
        counter(
            &SINK_REGISTRY,
            "flashfit_kpi_variant_mismatches_total",
            "KPI events whose claimed variant differed from FlashFit's assignment (replaced), by \
             experiment (`unknown`: not in the experiments config).",
            &["experiment"],
        )
    });

/// Counts a KPI event whose claimed variant in `experiment` was not the assigned one.
pub fn kpi_variant_mismatch(experiment: &str) {
    KPI_VARIANT_MISMATCHES
        .with_label_values(&[experiment])
        .inc();
}

/// Records a sink's durable write of `rows` rows in `files` files (or commits) to `table`.
pub fn sink_written(stage: &str, table: &str, rows: u64, files: u64) {
    let c = &*SINK_COUNTERS;
    c.rows.with_label_values(&[stage, table]).inc_by(rows);
    c.files.with_label_values(&[stage, table]).inc_by(files);
}

/// Exports a sink's write counters at zero before its first write.
pub fn sink_declare(stage: &str, table: &str) {
    sink_written(stage, table, 0, 0);
}

/// One stage's view of [`Metrics`].
#[derive(Clone, Debug)]
pub struct StageMetrics {
    stage: String,
    metrics: Metrics,
    received: IntCounter,
}

impl StageMetrics {
    pub fn received(&self, n: u64) {
        self.received.inc_by(n);
    }
    pub fn produced(&self, topic: &str) {
        self.produced_n(topic, 1);
    }
    pub fn produced_n(&self, topic: &str, n: u64) {
        self.metrics
            .produced
            .with_label_values(&[self.stage.as_str(), topic])
            .inc_by(n);
    }
    pub fn dead_lettered(&self, reason: &str) {
        self.metrics
            .dead_lettered
            .with_label_values(&[self.stage.as_str(), reason])
            .inc();
    }
    pub fn error(&self, kind: &str) {
        self.metrics
            .errors
            .with_label_values(&[self.stage.as_str(), kind])
            .inc();
    }
    pub fn status(&self, status: &str) {
        self.metrics
            .statuses
            .with_label_values(&[self.stage.as_str(), status])
            .inc();
    }
    pub fn batch_duration(&self, seconds: f64) {
        self.metrics
            .batch_seconds
            .with_label_values(&[self.stage.as_str()])
            .observe(seconds);
    }
    pub fn blocked(&self, seconds: f64) {
        self.metrics
            .blocked_seconds
            .with_label_values(&[self.stage.as_str()])
            .inc_by(seconds);
    }
    /// Age of the oldest message still being retried (0 once it is through).
    pub fn stuck(&self, seconds: f64) {
        self.metrics
            .stuck
            .with_label_values(&[self.stage.as_str()])
            .set(seconds);
    }

    /// Marks this stage degraded (`Some(why)`) or not (`None`) for `/health`.
    pub fn degraded(&self, why: Option<String>) {
        let mut d = self
            .metrics
            .degraded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match why {
            Some(w) => {
                d.insert(self.stage.clone(), w);
            }
            None => {
                d.remove(&self.stage);
            }
        }
    }

    pub fn lag(&self, messages: i64) {
        self.metrics
            .lag
            .with_label_values(&[self.stage.as_str()])
            .set(messages);
        if messages == 0 {
            self.oldest_age(0.0);
        }
    }

    /// Age of the oldest message of the batch being processed (0: caught up).
    pub fn oldest_age(&self, seconds: f64) {
        self.metrics
            .age
            .with_label_values(&[self.stage.as_str()])
            .set(seconds.max(0.0));
    }

    /// Current value of a counter, for tests and the harness.
    pub fn count(&self, metric: &str, extra_label: Option<&str>) -> u64 {
        let stage = self.stage.as_str();
        let get = |v: &IntCounterVec| {
            let labels: Vec<&str> = std::iter::once(stage).chain(extra_label).collect();
            v.get_metric_with_label_values(&labels)
                .map(|c| c.get())
                .unwrap_or(0)
        };
        match metric {
            "received" => self.received.get(),
            "produced" => get(&self.metrics.produced),
            "dead_lettered" => get(&self.metrics.dead_lettered),
            "errors" => get(&self.metrics.errors),
            "status" => get(&self.metrics.statuses),
            _ => 0,
        }
    }
}

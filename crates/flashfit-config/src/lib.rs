//! Typed configuration for every FlashFit process: embedded defaults, overridden by a TOML file,
//! overridden by the environment (environment wins).
//!
//! Main types: [`Config`] (load with [`Config::load`]), [`KafkaConfig`], [`S3Config`],
//! [`RuntimeConfig`], [`QualityConfig`], [`Secret`].
//!
//! Environment contract: `FLASHFIT_KAFKA_BROKERS`, `FLASHFIT_UPLOADS_URI`,
//! `FLASHFIT_WAREHOUSE_URI`, `FLASHFIT_LANCEDB_URI`, `FLASHFIT_DATABASE_URL`,
//! `FLASHFIT_ADMIN_ADDR`, `FLASHFIT_LOG_FORMAT`, `FLASHFIT_CONFIG` (file path), the standard
//! `AWS_*` S3 variables, `FLASHFIT_KAFKA__<PROPERTY>` for any librdkafka property
//! (`FLASHFIT_KAFKA__SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`), and
//! `FLASHFIT_<SECTION>__<KEY>` for any other field (`FLASHFIT_RUNTIME__BATCH_SIZE=64`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A value that is never printed in full (keys, passwords).
#[derive(Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Everything a FlashFit process can be told.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// Where images may be read from: `s3://bucket/prefix` or `file:///abs/dir`. Nothing outside
    /// it is ever fetched. Unset means "no uploads location" and workers that read images refuse
    /// to start.
    pub uploads_uri: Option<String>,
    /// Where Parquet tables go (`s3://bucket/prefix` or `file:///abs/dir`).
    pub warehouse_uri: String,
    /// Where LanceDB keeps vectors.
    pub lancedb_uri: String,
    /// `sqlite://path` (default) or `postgres://…`.
    pub database_url: Secret,
    /// Where `models/fetch.sh` put the models (`FLASHFIT_MODELS_DIR`); unset:
    /// `/var/lib/flashfit/models` when it exists, else `~/.cache/flashfit/models`.
    pub models_dir: Option<String>,
    /// Bind address of this process's `/metrics` and `/health`.
    pub admin_addr: SocketAddr,
    /// Bind address of `flashfit serve` (the app-facing HTTP API).
    pub http_addr: SocketAddr,
    pub s3: S3Config,
    pub runtime: RuntimeConfig,
    pub quality: QualityConfig,
    pub classify: ClassifyConfig,
    pub detect: DetectConfig,
    pub attributes: AttributesConfig,
    pub embed: EmbedConfig,
    pub onnx: OnnxConfig,
    pub parquet: ParquetConfig,
    pub lance: LanceConfig,
    pub outfits: OutfitsConfig,
    /// A/B experiments by name (`[experiments.<name>]`).
    pub experiments: BTreeMap<String, Experiment>,
    pub kpi: KpiConfig,
    pub feedback: FeedbackConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
}

/// Who may call `flashfit serve`: bearer tokens (JWT). With neither `jwks_uri` nor
/// `hs256_secret` set there is no authentication, which serve accepts only on a loopback
/// address (or with `allow_unauthenticated`, loudly logged).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The identity provider's JSON Web Key Set: `https://…/jwks.json` (or `http://` on a
    /// loopback host) or `file:///…`; RS256 and ES256 keys, chosen by the token's `kid`.
    pub jwks_uri: Option<String>,
    /// Seconds between reloads of the key set (also reloaded, at most every 10 s, when a
    /// token names a `kid` it does not hold: key rotation).
    pub jwks_refresh_s: u64,
    /// A shared HS256 secret, for local development only (`flashfit token` mints with it).
    pub hs256_secret: Option<Secret>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    /// The claim that names the user; it must equal `{user_id}` on the user routes.
    pub user_claim: String,
    /// A scope (in `scope` or `scp`) or role (in `roles`) that grants operator access: any
    /// user's routes, for support.
    pub operator_scope: String,
    /// When set, `/metrics` needs a token with this scope (else it is open, like `/health`;
    /// it can also stay behind a separate admin address).
    pub metrics_scope: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// Serve without authentication on a non-loopback address (logged as a warning at start).
    pub allow_unauthenticated: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwks_uri: None,
            jwks_refresh_s: 300,
            hs256_secret: None,
            issuer: "flashfit-local".into(),
            audience: "flashfit".into(),
            user_claim: "sub".into(),
            operator_scope: "flashfit:operator".into(),
            metrics_scope: None,
            leeway_s: 30,
            allow_unauthenticated: false,
        }
    }
}

impl AuthConfig {
    /// Whether tokens are checked at all.
    pub fn enabled(&self) -> bool {
        self.jwks_uri.is_some() || self.hs256_secret.is_some()
    }
}

/// The feedback worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// An event naming garments not (yet) in the user's wardrobe is retried until this long
    /// after its `ts` (its garment may still be on its way to LanceDB), then applied with the
    /// garments found.
    pub unknown_garment_grace_ms: u64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            unknown_garment_grace_ms: 600_000,
        }
    }
}

/// Limits of `flashfit serve` (the app-facing API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request still running after this is answered 503 (and its work dropped).
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 `overloaded` at once.
    pub max_concurrent_requests: usize,
    /// Longest accepted path and query string, in bytes (longer: 414).
    pub max_uri_bytes: usize,
    /// Requests per second one client may make on the API routes, sustained: the token's
    /// subject when it has one, else its address. Over it: 429 with `Retry-After`. 0: no limit.
    pub rate_per_s: u32,
    /// Requests one client may make at once above `rate_per_s` (the bucket's size).
    pub rate_burst: u32,
    /// A request's headers must arrive within this of the connection opening or of the
    /// previous response on it, or the connection is closed: a slowloris client cannot hold a
    /// connection, nor an idle keep-alive one for longer than this.
    pub header_read_timeout_ms: u64,
    /// A connection that neither sends nor receives a byte for this long is closed (a client
    /// that stops reading its response).
    pub idle_timeout_ms: u64,
    /// Connections open at once; more are closed on accept (and counted).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            request_timeout_ms: 10_000,
            max_concurrent_requests: 64,
            max_uri_bytes: 2_048,
            rate_per_s: 20,
            rate_burst: 40,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1_024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::default(),
            uploads_uri: None,
            warehouse_uri: "file://./warehouse".into(),
            lancedb_uri: "file://./lancedb".into(),
            database_url: Secret::new("sqlite://flashfit.db"),
            models_dir: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            s3: S3Config::default(),
            runtime: RuntimeConfig::default(),
            quality: QualityConfig::default(),
            classify: ClassifyConfig::default(),
            detect: DetectConfig::default(),
            attributes: AttributesConfig::default(),
            embed: EmbedConfig::default(),
            onnx: OnnxConfig::default(),
            parquet: ParquetConfig::default(),
            lance: LanceConfig::default(),
            outfits: OutfitsConfig::default(),
            experiments: default_experiments(),
            kpi: KpiConfig::default(),
            feedback: FeedbackConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The shipped outfit rule tables.
pub const DEFAULT_OUTFIT_RULES: &str = include_str!("outfits.toml");

/// Outfit recommendations (defaults: `crates/flashfit-config/src/outfits.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OutfitsConfig {
    pub k: usize,
    pub max_k: usize,
    pub beam: usize,
    pub outerwear: bool,
    pub scorer: String,
    /// The experiment whose variant picks the scorer or weights (`[experiments.<name>]`).
    pub experiment: String,
    pub weights: ScoreWeights,
    pub personalization: PersonalizationConfig,
    pub colors: ColorRules,
    pub combos: ComboRules,
    pub occasions: BTreeMap<String, [f32; 2]>,
}

impl Default for OutfitsConfig {
    fn default() -> Self {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rules {
            k: usize,
            max_k: usize,
            beam: usize,
            outerwear: bool,
            scorer: String,
            weights: ScoreWeights,
            personalization: PersonalizationConfig,
            colors: ColorRules,
            combos: ComboRules,
            occasions: BTreeMap<String, [f32; 2]>,
        }
        // A unit test parses the shipped file; a broken edit fails the build's tests.
        let r: Rules = toml::from_str(DEFAULT_OUTFIT_RULES).unwrap_or_else(|e| {
            panic!("crates/flashfit-config/src/outfits.toml does not parse: {e}")
        });
        OutfitsConfig {
            k: r.k,
            max_k: r.max_k,
            beam: r.beam,
            outerwear: r.outerwear,
            scorer: r.scorer,
            experiment: "outfit_scorer".into(),
            weights: r.weights,
            personalization: r.personalization,
            colors: r.colors,
            combos: r.combos,
            occasions: r.occasions,
        }
    }
}

/// How the three rule scores combine (seed: 0.35 / 0.35 / 0.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreWeights {
    pub color_harmony: f64,
    pub formality_match: f64,
    pub category_combo: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalizationConfig {
    pub min_feedback: u64,
    pub clamp: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColorRules {
    pub neutrals: Vec<String>,
    pub complementary: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComboRules {
    pub base: f64,
    /// `[category, category, score]`.
    pub pairs: Vec<(String, String, f64)>,
}

/// One A/B experiment: a user's variant is a pure function of (salt, experiment name, user id)
/// and the variants' weights; whether the user is in it at all, of `exposure`.
///
/// Ramping rule: once an experiment has started, its salt, variants (names, order, weights)
/// and control are frozen and only `exposure` may change (growing it adds users, each to the
/// variant the frozen weights give them; nobody moves between variants). `flashfit experiments
/// check` enforces this against the running configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub salt: String,
    pub variants: Vec<Variant>,
    /// The variant the others are compared against (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// When the experiment starts (RFC 3339, quoted; default: it always ran). Events before it
    /// are not attributed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// When it ends (RFC 3339, quoted; default: open). Events at or after it are not attributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The share of users in the experiment, 0..=1 (default 1): the ramp.
    #[serde(default = "full_exposure")]
    pub exposure: f64,
    /// Guardrail metrics the readout checks against control, e.g.
    /// `"mean_session_duration_s >= -5%"` (relative) or `"return_rate_7d >= -0.02"` (absolute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<String>,
}

fn full_exposure() -> f64 {
    1.0
}

/// An RFC 3339 time of the experiments config.
pub fn parse_time(field: &str, t: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| Error::Invalid(format!("{field} `{t}` is not an RFC 3339 time: {e}")))
}

impl Experiment {
    /// An experiment always running, everyone exposed, with variants of these names and
    /// weights (the shipped scorer and weights).
    pub fn weighted(salt: &str, weights: &[(&str, f64)]) -> Self {
        Experiment {
            salt: salt.into(),
            variants: weights
                .iter()
                .map(|(n, w)| Variant {
                    name: (*n).into(),
                    weight: *w,
                    scorer: None,
                    weights: None,
                })
                .collect(),
            control: None,
            start: None,
            end: None,
            exposure: 1.0,
            guardrails: Vec::new(),
        }
    }

    /// The control variant's name.
    pub fn control_name(&self) -> Option<&str> {
        self.control
            .as_deref()
            .or_else(|| self.variants.first().map(|v| v.name.as_str()))
    }

    /// The window `[start, end)`; `None` ends are open.
    pub fn window(
        &self,
    ) -> (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let at = |t: &Option<String>| t.as_deref().and_then(|t| parse_time("", t).ok());
        (at(&self.start), at(&self.end))
    }

    /// Whether an event at `ts` falls in the experiment's window.
    pub fn covers(&self, ts: chrono::DateTime<chrono::Utc>) -> bool {
        let (start, end) = self.window();
        start.is_none_or(|s| ts >= s) && end.is_none_or(|e| ts < e)
    }

    /// Checks one experiment's definition (`name` for messages).
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("experiments.{name}: {m}")));
        if self.variants.is_empty() {
            return bad("needs at least one variant".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for v in &self.variants {
            if !names.insert(v.name.as_str()) {
                return bad(format!("variant `{}` is listed twice", v.name));
            }
            if !(v.weight.is_finite() && v.weight >= 0.0) {
                return bad(format!("variant `{}` has weight {}", v.name, v.weight));
            }
        }
        if let Some(c) = &self.control
            && !names.contains(c.as_str())
        {
            return bad(format!("control `{c}` is not one of its variants"));
        }
        if !(0.0..=1.0).contains(&self.exposure) {
            return bad(format!("exposure {} is not within 0..=1", self.exposure));
        }
        let start = match &self.start {
            Some(t) => Some(parse_time(&format!("experiments.{name}.start"), t)?),
            None => None,
        };
        let end = match &self.end {
            Some(t) => Some(parse_time(&format!("experiments.{name}.end"), t)?),
            None => None,
        };
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return bad("end is not after start".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Relative share of users (need not sum to 1).
    pub weight: f64,
    /// For the outfit experiment: the scorer this variant uses (default: `[outfits] scorer`).
    #[serde(default)]
    pub scorer: Option<String>,
    /// For the outfit experiment: rule weights this variant uses (default: `[outfits.weights]`).
    #[serde(default)]
    pub weights: Option<ScoreWeights>,
}

/// One experiment, `outfit_scorer`, with one variant (`control`: the shipped scorer and
/// weights). Configure more variants to run a test.
pub fn default_experiments() -> BTreeMap<String, Experiment> {
    BTreeMap::from([(
        "outfit_scorer".to_owned(),
        Experiment::weighted("outfit_scorer-1", &[("control", 1.0)]),
    )])
}

/// `flashfit worker kpi` and `flashfit kpi-daily`: the `kpi_events` table (files roll like the
/// garments table's) and its `kpi_daily` rollup, under `warehouse_uri`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KpiConfig {
    pub table: String,
    pub daily_table: String,
    /// The per-user rollup (`flashfit kpi-daily` writes it with `kpi_daily`).
    pub users_table: String,
    /// The readouts of `flashfit ab report`.
    pub results_table: String,
    pub max_rows: usize,
    pub roll_ms: u64,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            table: "kpi_events".into(),
            daily_table: "kpi_daily".into(),
            users_table: "kpi_users".into(),
            results_table: "ab_results".into(),
            max_rows: 10_000,
            roll_ms: 60_000,
        }
    }
}

/// Kafka connection. Keys other than the named fields are librdkafka properties, passed through
/// unchanged (`"security.protocol" = "SASL_SSL"`), so SASL/TLS needs no code change.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct KafkaConfig {
    /// Bootstrap list, `host:port,…`. Unset: `flashfit run` starts an embedded broker; workers
    /// refuse to start.
    pub brokers: Option<String>,
    /// Partitions of topics the project creates when they are missing.
    pub partitions: i32,
    /// Replication factor of topics the project creates.
    pub replication_factor: i32,
    /// Prefix of consumer group ids: a stage's group is `<group_prefix>-<stage>`.
    pub group_prefix: String,
    /// Create missing topics through the admin API at start-up.
    pub create_topics: bool,
    /// Prepended to every topic name (empty: the contract names such as `flashfit.uploads`).
    pub topic_prefix: String,
    /// Extra librdkafka properties.
    #[serde(flatten)]
    pub properties: BTreeMap<String, Secret>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            partitions: 4,
            replication_factor: 1,
            group_prefix: "flashfit".into(),
            create_topics: true,
            topic_prefix: String::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// S3 credentials and endpoint (the standard `AWS_*` variables).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub region: Option<String>,
    /// Custom endpoint (MinIO, moto, …); path-style requests are used when set.
    pub endpoint_url: Option<String>,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
}

/// How the worker runtime batches, retries, dead-letters and shuts down.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// A batch closes when it holds this many messages…
    pub batch_size: usize,
    /// …or this long after its first message arrived.
    pub linger_ms: u64,
    /// Messages of one batch processed concurrently (fetches, inference jobs).
    pub concurrency: usize,
    /// Consumed messages whose output may await broker acknowledgement while later batches
    /// are processed (backpressure bound; must cover the broker's ack latency).
    pub max_in_flight_messages: usize,
    /// Acknowledged offsets are committed at most this often (and always when draining). A
    /// crash redelivers at most this much work; a shorter interval loads the broker more.
    pub commit_interval_ms: u64,
    /// First retry delay for transient failures; doubles up to `retry_max_backoff_ms`.
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    /// A message still failing transiently this long after the worker first received it is
    /// dead-lettered (`internal`, with the last error): no message holds a partition for
    /// ever. Counted from receipt, never from a time the event claims.
    pub max_retry_ms: u64,
    /// Events whose own time (`uploaded_at`, `ts`, `deleted_at`) is more than this far ahead
    /// of the worker's clock are refused (`invalid_event`): a clock-skewed producer cannot
    /// make an event wait for ever or sort first.
    pub max_clock_skew_ms: u64,
    /// The dead-letter rate is measured over the last this many messages…
    pub dlq_window: usize,
    /// …once at least this many were seen…
    pub dlq_min_messages: usize,
    /// …and the worker pauses consumption for `dlq_pause_ms` (health `degraded`) when it
    /// exceeds this fraction: an outage upstream (a missing bucket, say) should not turn a
    /// whole topic into dead letters, nor an exit into a restart loop.
    pub dlq_max_ratio: f64,
    pub dlq_pause_ms: u64,
    /// Attempts for a message whose failure is not transient (`internal`) before it is
    /// dead-lettered with the error.
    pub max_attempts: u32,
    /// A partition that has not advanced for this long (a message retried transiently) makes
    /// `/health` answer 503 `degraded`; `flashfit_oldest_stuck_message_seconds` shows the age.
    pub stuck_after_ms: u64,
    /// Records larger than this are not produced: the message that made one is dead-lettered
    /// (`too_large`). Keep it at or below the broker's and producer's `message.max.bytes`.
    pub max_record_bytes: usize,
    /// On SIGTERM/SIGINT, in-flight work gets this long to finish and commit.
    pub shutdown_timeout_ms: u64,
    /// How often consumer lag is refreshed.
    pub stats_interval_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            batch_size: 64,
            linger_ms: 50,
            concurrency: 8,
            max_in_flight_messages: 20_000,
            commit_interval_ms: 1_000,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 10_000,
            max_retry_ms: 3_600_000,
            max_clock_skew_ms: 300_000,
            dlq_window: 500,
            dlq_min_messages: 50,
            dlq_max_ratio: 0.5,
            dlq_pause_ms: 60_000,
            max_attempts: 5,
            stuck_after_ms: 60_000,
            max_record_bytes: 4 * 1024 * 1024,
            shutdown_timeout_ms: 30_000,
            stats_interval_ms: 5_000,
        }
    }
}

/// Quality-stage thresholds (seed: "Image Quality Check") and hostile-input caps.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Shorter side below this → `rejected` / `too_small`.
    pub min_side: u32,
    /// Laplacian variance below this → warning `blurry`.
    pub blur_threshold: f64,
    /// Mean brightness below this → `too_dark`.
    pub dark_threshold: f64,
    /// Mean brightness above this → `too_bright`.
    pub bright_threshold: f64,
    /// Files larger than this are not fetched (`too_large`).
    pub max_bytes: u64,
    /// Images with more pixels than this are not decoded (`too_large`).
    pub max_pixels: u64,
    /// Images with a side longer than this are not decoded (`too_large`).
    pub max_side: u32,
    /// An image that is not (yet) in storage is retried until this long after the event's
    /// `uploaded_at` before it is final (`not_found`): an event published before its object
    /// is visible, a bucket briefly missing or a volume not mounted must not dead-letter good
    /// uploads.
    pub not_found_grace_ms: u64,
    /// Pixels being decoded at once in one process, over every stage and concurrent message
    /// (a 50 MP photo holds ~200 MB while it is decoded and measured): decodes wait for room,
    /// which bounds a stage's memory whatever its concurrency. An image over the whole budget
    /// waits until it can decode alone.
    pub decode_budget_pixels: u64,
    /// Where an upload's photo must be, relative to FLASHFIT_UPLOADS_URI: its key starts with
    /// this, `{user_id}` replaced by the event's user id, or the upload is refused (status
    /// `failed`, reason `not_owner`, dead-lettered): user A's upload naming user B's photo. The default is the layout
    /// `flashfit ingest` writes. An empty string turns the check off, for an upload service
    /// that keys photos otherwise and checks ownership itself.
    pub owner_prefix: String,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            min_side: 224,
            blur_threshold: 100.0,
            dark_threshold: 40.0,
            bright_threshold: 220.0,
            max_bytes: 25 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_side: 16_384,
            not_found_grace_ms: 120_000,
            decode_budget_pixels: 100_000_000,
            owner_prefix: "{user_id}/".into(),
        }
    }
}

/// The detect stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Manifest names of the detectors to run on every photo (each needs a
    /// `[model.detector]` table). The seed's YOLOv8 DeepFashion2 export drops in here.
    pub detectors: Vec<String>,
    /// Minimum detection confidence.
    pub confidence: f32,
    /// Per-class NMS IoU threshold.
    pub iou: f32,
    /// Lab distance from the border colour that counts as foreground (fallback box).
    pub background_delta_e: f32,
    /// The fallback box looks at photos sampled down to this long side (0: every pixel; the
    /// box is then exact, and costs a tenth of the stage's CPU on a 1024 px photo).
    pub foreground_side: u32,
    /// ONNX Runtime intra-op threads per detector session.
    pub threads: usize,
    /// Inferences that run at once, one ONNX Runtime session each (memory: one copy of the
    /// weights per session). With `threads = 1` and no spinning, two jobs use two cores at
    /// the lowest CPU per image (`flashfit bench chain`).
    pub jobs: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            detectors: vec![
                "ssd-mobilenetv2-oidv4".into(),
                "centernet-coco".into(),
                "movenet-multipose".into(),
            ],
            confidence: 0.5,
            iou: 0.45,
            background_delta_e: 12.0,
            foreground_side: 256,
            threads: 1,
            jobs: 2,
        }
    }
}

/// Texture thresholds that pick a pattern.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternRules {
    pub edge_magnitude: f32,
    pub solid_max_edge_density: f32,
    pub striped_min_orientation: f32,
    pub grid_min_axis_aligned: f32,
    pub checkered_max_colours: usize,
    pub graphic_min_centre_share: f32,
    pub floral_min_colours: usize,
    pub busy_min_edge_density: f32,
}

/// Formality table: by group, by category (wins), nudged by primary colour.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FormalityRules {
    pub group: BTreeMap<String, f32>,
    pub category: BTreeMap<String, f32>,
    pub colour: BTreeMap<String, f32>,
}

/// A style tag applies when every condition it sets holds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StyleRule {
    pub tag: String,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub colours: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
    pub min_formality: Option<f32>,
    pub max_formality: Option<f32>,
}

/// The attributes stage: colour extraction settings and the rule tables
/// (defaults: `crates/flashfit-config/src/attributes.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesConfig {
    /// Manifest name of a trained attribute tagger (`[model.tagger]`); its outputs replace
    /// the rule tables for the attributes it covers. Unset: rules only.
    pub model: Option<String>,
    pub k: usize,
    pub background_delta_e: f32,
    pub max_side: u32,
    pub person_mask: bool,
    pub mask_threshold: f32,
    pub pattern: PatternRules,
    pub formality: FormalityRules,
    pub fit: BTreeMap<String, String>,
    pub seasons: BTreeMap<String, Vec<String>>,
    pub style: Vec<StyleRule>,
    /// ONNX Runtime intra-op threads per model session (person mask, tagger).
    pub threads: usize,
    /// Garments tagged at once (colours, texture, mask), each model with as many sessions.
    pub jobs: usize,
}

/// The shipped rule tables.
pub const DEFAULT_ATTRIBUTE_RULES: &str = include_str!("attributes.toml");

impl Default for AttributesConfig {
    fn default() -> Self {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rules {
            k: usize,
            background_delta_e: f32,
            max_side: u32,
            person_mask: bool,
            mask_threshold: f32,
            pattern: PatternRules,
            formality: FormalityRules,
            fit: BTreeMap<String, String>,
            seasons: BTreeMap<String, Vec<String>>,
            style: Vec<StyleRule>,
        }
        // A unit test parses the shipped file; a broken edit fails the build's tests.
        let r: Rules = toml::from_str(DEFAULT_ATTRIBUTE_RULES).unwrap_or_else(|e| {
            panic!("crates/flashfit-config/src/attributes.toml does not parse: {e}")
        });
        AttributesConfig {
            model: None,
            k: r.k,
            background_delta_e: r.background_delta_e,
            max_side: r.max_side,
            person_mask: r.person_mask,
            mask_threshold: r.mask_threshold,
            pattern: r.pattern,
            formality: r.formality,
            fit: r.fit,
            seasons: r.seasons,
            style: r.style,
            threads: 1,
            jobs: 2,
        }
    }
}

/// `flashfit worker parquet`: the `garments` table (and its `garment_deletes` tombstones)
/// under `warehouse_uri`. A file (one per input partition and `dt=` day) rolls at `max_rows`
/// records, about `max_bytes` of input, or `roll_ms` after its first record, whichever comes
/// first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    pub table: String,
    /// The tombstone table written from `flashfit.deletes`.
    pub deletes_table: String,
    pub max_rows: usize,
    pub max_bytes: usize,
    pub roll_ms: u64,
    /// `flashfit compact` folds range markers older than this into one summary per input
    /// partition (set it to the input topics' retention: older offsets cannot be replayed).
    pub fold_markers_after_ms: u64,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            table: "garments".into(),
            deletes_table: "garment_deletes".into(),
            max_rows: 10_000,
            max_bytes: 64 * 1024 * 1024,
            roll_ms: 60_000,
            fold_markers_after_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// `flashfit worker lance`: the LanceDB `garments` table under `lancedb_uri`, upserted in
/// batches of up to `batch_rows` records or every `linger_ms`, and its upkeep.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LanceConfig {
    pub table: String,
    /// Garment ids deleted by their owners (from `flashfit.deletes`): never upserted again.
    pub deletes_table: String,
    pub batch_rows: usize,
    pub linger_ms: u64,
    /// Upkeep (compact small files, prune old versions, update indices, create missing ones)
    /// runs in the background at most this often; 0 turns it off.
    pub optimize_interval_ms: u64,
    /// Table versions older than this are pruned by upkeep.
    pub keep_versions_s: u64,
    /// Upkeep builds the vector indices (IVF-PQ, cosine, on `image_vector` and `text_vector`)
    /// once the table holds this many rows; below it, exact search is fast enough.
    pub index_min_rows: usize,
    /// Readers (search, outfits, the feedback worker's garment lookup, the tombstone check)
    /// see writes committed by any process at most this long after they were committed: a
    /// read checks the table's latest version when this much time has passed since the last
    /// check. 0 checks on every read.
    pub read_consistency_ms: u64,
}

impl Default for LanceConfig {
    fn default() -> Self {
        LanceConfig {
            table: "garments".into(),
            deletes_table: "garment_deletes".into(),
            batch_rows: 1_000,
            linger_ms: 1_000,
            optimize_interval_ms: 300_000,
            keep_versions_s: 3_600,
            index_min_rows: 50_000,
            read_consistency_ms: 1_000,
        }
    }
}

/// The embed stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// ONNX Runtime intra-op threads per model session.
    pub threads: usize,
    /// Inferences that run at once, one ONNX Runtime session each (memory: one copy of the
    /// weights per session). With `threads = 1` and no spinning, two jobs use two cores at
    /// the lowest CPU per image (`flashfit bench chain`).
    pub jobs: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            threads: 1,
            jobs: 2,
        }
    }
}

/// ONNX Runtime, for every model stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OnnxConfig {
    /// Let idle intra-op threads spin-wait for work (ONNX Runtime's default). Off: a stage's
    /// threads sleep between kernels, so the other stages on the same cores get the CPU;
    /// `flashfit bench chain` measured spinning at nearly twice the CPU per image.
    pub spinning: bool,
}

/// The classify stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// Manifest name of the classifier (a `[model.classifier]` entry): EfficientNet-Lite0 by
    /// default; a model whose labels are taxonomy categories scores directly.
    pub model: String,
    /// A taxonomy head from `flashfit train head` (JSON). Unset: the shipped head
    /// (`<models dir>/heads/taxonomy-head.json`, built by `models/train_head.sh`) for ImageNet
    /// classifiers, the model's own labels for taxonomy classifiers. `imagenet-map`: the
    /// ImageNet label map (`models/imagenet-taxonomy.toml`), which cannot tell clothing well.
    pub head: Option<String>,
    /// Categories reported in `topk`.
    pub top_k: usize,
    /// When the classifier is the embed stage's image model (the manifest's `[embedder]
    /// image_model`), also write its image vector (`classification.image_vector`): the embed
    /// stage then takes it instead of running the model on the same crop again.
    pub share_embedding: bool,
    /// ONNX Runtime intra-op threads per session.
    pub threads: usize,
    /// Inferences that run at once, one ONNX Runtime session each (memory: one copy of the
    /// weights per session). With `threads = 1` and no spinning, two jobs use two cores at
    /// the lowest CPU per image (`flashfit bench chain`).
    pub jobs: usize,
    /// What happens to an upload whose calibrated `is_clothing` is below `clothing_threshold`:
    /// `reject` (status `rejected`, reason `not_clothing`; nothing reaches the tables) or
    /// `flag` (kept, `classification.flagged` true).
    pub not_clothing: NotClothing,
    /// Calibrated `is_clothing` below this is "not clothing" (0.6 by default: the operating
    /// point chosen on the labelled set, where it leaves a margin on both sides; `flashfit
    /// eval` shows what it gives).
    pub clothing_threshold: f32,
    /// The model's best category is said only at or above this confidence; below it the
    /// answer falls back to the group (`level = "group"`).
    pub category_threshold: f32,
    /// The group is said only at or above this probability; below it the answer is
    /// `unknown`.
    pub group_threshold: f32,
}

/// `[classify] not_clothing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotClothing {
    Reject,
    Flag,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            model: "efficientnet-lite0".into(),
            head: None,
            top_k: 3,
            share_embedding: true,
            threads: 1,
            jobs: 2,
            not_clothing: NotClothing::Reject,
            clothing_threshold: 0.6,
            category_threshold: 0.6,
            group_threshold: 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` wins when set. The default keeps LanceDB's
    /// per-query INFO lines (query plans) out.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info,lance=warn,lance_index=warn,lance_io=warn,lancedb=warn".into(),
        }
    }
}

/// Environment variables with a fixed meaning (the contract) and the field each one sets.
const NAMED_ENV: &[(&str, &[&str])] = &[
    ("FLASHFIT_KAFKA_BROKERS", &["kafka", "brokers"]),
    ("FLASHFIT_UPLOADS_URI", &["uploads_uri"]),
    ("FLASHFIT_WAREHOUSE_URI", &["warehouse_uri"]),
    ("FLASHFIT_LANCEDB_URI", &["lancedb_uri"]),
    ("FLASHFIT_DATABASE_URL", &["database_url"]),
    ("FLASHFIT_MODELS_DIR", &["models_dir"]),
    ("FLASHFIT_ADMIN_ADDR", &["admin_addr"]),
    ("FLASHFIT_HTTP_ADDR", &["http_addr"]),
    ("FLASHFIT_LOG_FORMAT", &["log", "format"]),
    ("FLASHFIT_LOG_LEVEL", &["log", "level"]),
    ("AWS_ACCESS_KEY_ID", &["s3", "access_key_id"]),
    ("AWS_SECRET_ACCESS_KEY", &["s3", "secret_access_key"]),
    ("AWS_REGION", &["s3", "region"]),
    ("AWS_DEFAULT_REGION", &["s3", "region"]),
    ("AWS_ENDPOINT_URL", &["s3", "endpoint_url"]),
    ("AWS_ENDPOINT", &["s3", "endpoint_url"]),
    ("AWS_ALLOW_HTTP", &["s3", "allow_http"]),
];

impl Config {
    /// Defaults ← `file` (or `FLASHFIT_CONFIG`) ← the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let from_env = env
            .iter()
            .find(|(k, _)| k == "FLASHFIT_CONFIG")
            .map(|(_, v)| std::path::PathBuf::from(v));
        let path = file.map(Path::to_path_buf).or(from_env);
        let text = match &path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|source| Error::Read {
                path: p.display().to_string(),
                source,
            })?),
            None => None,
        };
        Self::from_sources(text.as_deref(), env)
    }

    /// Builds a config from TOML text and environment pairs (testable without touching the
    /// process environment).
    pub fn from_sources(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table: toml::Table = match toml_text {
            Some(t) => toml::from_str(t).map_err(|e| Error::Invalid(e.to_string()))?,
            None => toml::Table::new(),
        };
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        // Deterministic precedence when two names map to one field (AWS_REGION beats
        // AWS_DEFAULT_REGION): apply in NAMED_ENV order, later entries only fill gaps.
        env.sort();
        let mut set_by_env = std::collections::HashSet::new();
        for (name, path) in NAMED_ENV {
            let Some((_, value)) = env.iter().find(|(k, _)| k == name) else {
                continue;
            };
            let key = path.join(".");
            if set_by_env.insert(key) {
                set_path(&mut table, path, env_value(path, value))?;
            }
        }
        for (name, value) in &env {
            if let Some(prop) = name.strip_prefix("FLASHFIT_KAFKA__") {
                // A named field of `[kafka]`, else a librdkafka property (`_` → `.`).
                let lower = prop.to_ascii_lowercase();
                let named = fields::is_named(&["kafka", lower.as_str()]);
                let key = if named {
                    lower
                } else {
                    lower.replace('_', ".")
                };
                let path = ["kafka", key.as_str()];
                let v = if named {
                    env_value(&path, value)
                } else {
                    toml::Value::String(value.clone())
                };
                set_path(&mut table, &path, v)?;
            } else if let Some(rest) = name.strip_prefix("FLASHFIT_") {
                if !rest.contains("__") {
                    continue;
                }
                let lower = rest.to_ascii_lowercase();
                let path: Vec<&str> = lower.split("__").collect();
                set_path(&mut table, &path, env_value(&path, value))?;
            }
        }
        let config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| Error::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let r = &self.runtime;
        if r.batch_size == 0 || r.concurrency == 0 {
            return Err(Error::Invalid(
                "runtime.batch_size and runtime.concurrency must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&r.dlq_max_ratio) {
            return Err(Error::Invalid(
                "runtime.dlq_max_ratio must be within 0..=1".into(),
            ));
        }
        if self.kafka.partitions < 1 {
            return Err(Error::Invalid("kafka.partitions must be at least 1".into()));
        }
        let c = &self.classify;
        for (key, v) in [
            ("clothing_threshold", c.clothing_threshold),
            ("category_threshold", c.category_threshold),
            ("group_threshold", c.group_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Invalid(format!(
                    "classify.{key} must be within 0..=1 (got {v})"
                )));
            }
        }
        let owner = &self.quality.owner_prefix;
        if !owner.is_empty() && (!owner.contains("{user_id}") || !owner.ends_with('/')) {
            return Err(Error::Invalid(format!(
                "quality.owner_prefix must name `{{user_id}}` and end with `/` (got `{owner}`; \
                 \"\" turns the ownership check off)"
            )));
        }
        for (name, e) in &self.experiments {
            e.validate(name)?;
        }
        Ok(())
    }

    /// The effective configuration as TOML with secrets masked (for `flashfit config`).
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// Environment values are strings: each becomes the type of the field it sets, read from the
/// config types themselves ([`fields`]), so `FLASHFIT_RUNTIME__BATCH_SIZE=64` is an integer and
/// `FLASHFIT_LANCE__TABLE=2026` stays text. A value that does not parse as its field's type is
/// passed on as text, and deserialisation names the field.
fn env_value(path: &[&str], raw: &str) -> toml::Value {
    let text = || toml::Value::String(raw.to_owned());
    let types = fields::types(path);
    let has = |t: &str| types.iter().any(|x| x == t);
    if types.is_empty() || has("string") {
        return text();
    }
    if has("integer")
        && let Ok(i) = raw.trim().parse::<i64>()
    {
        return toml::Value::Integer(i);
    }
    if has("number")
        && let Ok(f) = raw.trim().parse::<f64>()
    {
        return toml::Value::Float(f);
    }
    if has("boolean") {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => return toml::Value::Boolean(true),
            "false" | "0" | "no" => return toml::Value::Boolean(false),
            _ => {}
        }
    }
    // A TOML inline value: `["a", "b"]`, `{ k = 1 }`.
    if (has("array") || has("object"))
        && let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && let Some(v) = t.remove("v")
    {
        return v;
    }
    text()
}

/// What each config path holds, from the JSON Schema `schemars` derives for [`Config`]: the
/// environment layer asks it instead of keeping its own list of text fields.
mod fields {
    use std::sync::LazyLock;

    use serde_json::Value;

    static SCHEMA: LazyLock<Value> =
        LazyLock::new(|| schemars::schema_for!(super::Config).to_value());

    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/$defs/")
                .and_then(|name| root.get("$defs")?.get(name))
                .unwrap_or(node),
            None => node,
        }
    }

    /// The alternatives of an `anyOf` / `oneOf` (an `Option<Struct>`), or the node itself.
    fn variants<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
        let node = resolve(root, node);
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(a) = node.get(key).and_then(Value::as_array) {
                return a.iter().flat_map(|v| variants(root, v)).collect();
            }
        }
        vec![node]
    }

    fn node<'a>(root: &'a Value, path: &[&str]) -> Option<Vec<&'a Value>> {
        let mut cur = vec![root];
        for seg in path {
            let next: Vec<&Value> = cur
                .iter()
                .flat_map(|n| variants(root, n))
                .filter_map(|n| {
                    n.get("properties")
                        .and_then(|p| p.get(*seg))
                        .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
                })
                .collect();
            if next.is_empty() {
                return None;
            }
            cur = next;
        }
        Some(cur)
    }

    /// The JSON types the field at `path` accepts (`string`, `integer`, `number`, `boolean`,
    /// `array`, `object`, `null`); empty when no field is there.
    pub fn types(path: &[&str]) -> Vec<String> {
        let root = &*SCHEMA;
        let Some(nodes) = node(root, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for n in nodes.iter().flat_map(|n| variants(root, n)) {
            match n.get("type") {
                Some(Value::String(t)) => out.push(t.clone()),
                Some(Value::Array(ts)) => {
                    out.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ if n.get("enum").is_some() || n.get("const").is_some() => {
                    out.push("string".into())
                }
                _ if n.get("properties").is_some() => out.push("object".into()),
                _ => {}
            }
        }
        out
    }

    /// True when `path` names a declared field (not an entry of a map such as `[kafka]`'s
    /// librdkafka properties).
    pub fn is_named(path: &[&str]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let root = &*SCHEMA;
        node(root, parent).is_some_and(|nodes| {
            nodes
                .iter()
                .flat_map(|n| variants(root, n))
                .any(|n| n.get("properties").and_then(|p| p.get(*last)).is_some())
        })
    }
}

fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<()> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| Error::Invalid("empty config path".into()))?;
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| Error::Invalid(format!("`{p}` is not a table")))?;
    }
    cur.insert((*last).to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn embedded_defaults_need_nothing() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.kafka.brokers, None);
        assert_eq!(c.quality.min_side, 224);
        assert_eq!(c.quality.blur_threshold, 100.0);
        assert_eq!(c.database_url.expose(), "sqlite://flashfit.db");
    }

    #[test]
    fn shipped_attribute_rules_parse_and_a_file_overrides_one_table() {
        let d = AttributesConfig::default();
        assert_eq!(d.k, 3);
        assert_eq!(d.formality.category["suit_jacket"], 0.95);
        assert!(d.style.iter().any(|s| s.tag == "formal"));
        let file = r#"
            [attributes]
            k = 2
            [attributes.fit]
            jeans = "slim"
            [detect]
            detectors = ["my-yolov8-deepfashion2"]
        "#;
        let c = Config::from_sources(Some(file), env(&[("FLASHFIT_DETECT__CONFIDENCE", "0.6")]))
            .expect("config");
        assert_eq!(c.attributes.k, 2);
        assert_eq!(c.attributes.fit.len(), 1);
        // Tables the file does not name keep their defaults.
        assert_eq!(c.attributes.seasons, d.seasons);
        assert_eq!(
            c.detect.detectors,
            vec!["my-yolov8-deepfashion2".to_string()]
        );
        assert_eq!(c.detect.confidence, 0.6);
    }

    #[test]
    fn environment_wins_over_file() {
        let file = r#"
            uploads_uri = "file:///data/in"
            [kafka]
            brokers = "file-host:9092"
            "security.protocol" = "SSL"
            [runtime]
            batch_size = 10
        "#;
        let c = Config::from_sources(
            Some(file),
            env(&[
                ("FLASHFIT_KAFKA_BROKERS", "env-host:9092"),
                ("FLASHFIT_KAFKA__SASL_MECHANISMS", "PLAIN"),
                ("FLASHFIT_RUNTIME__BATCH_SIZE", "99"),
                ("FLASHFIT_QUALITY__BLUR_THRESHOLD", "55.5"),
                ("FLASHFIT_FEEDBACK__UNKNOWN_GARMENT_GRACE_MS", "30000"),
                ("FLASHFIT_MODELS_DIR", "/srv/models"),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_SECRET_ACCESS_KEY", "hunter2"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "us-east-1"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("config");
        assert_eq!(c.kafka.brokers.as_deref(), Some("env-host:9092"));
        assert_eq!(c.uploads_uri.as_deref(), Some("file:///data/in"));
        assert_eq!(c.kafka.properties["security.protocol"].expose(), "SSL");
        assert_eq!(c.kafka.properties["sasl.mechanisms"].expose(), "PLAIN");
        assert_eq!(c.runtime.batch_size, 99);
        assert_eq!(c.quality.blur_threshold, 55.5);
        assert_eq!(c.feedback.unknown_garment_grace_ms, 30_000);
        assert_eq!(c.models_dir.as_deref(), Some("/srv/models"));
        assert!(c.s3.allow_http);
        assert_eq!(c.s3.region.as_deref(), Some("us-east-1"));
        let shown = c.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// Issue 13: an environment value takes the type of the field it sets, read from the
    /// config types (no list of text fields to keep): digits stay text in text fields and
    /// secrets, numbers and booleans parse where the field is one, lists parse as TOML.
    #[test]
    fn environment_values_take_their_fields_types() {
        let c = Config::from_sources(
            None,
            env(&[
                ("AWS_ACCESS_KEY_ID", "12345"),
                ("AWS_SECRET_ACCESS_KEY", "007"),
                ("FLASHFIT_LANCE__TABLE", "2026"),
                ("FLASHFIT_KAFKA__GROUP_PREFIX", "42"),
                ("FLASHFIT_KAFKA__PARTITIONS", "8"),
                ("FLASHFIT_KAFKA__CREATE_TOPICS", "no"),
                ("FLASHFIT_KAFKA__MESSAGE_MAX_BYTES", "1000000"),
                ("FLASHFIT_CLASSIFY__HEAD", "123"),
                ("FLASHFIT_LOG__FORMAT", "json"),
                ("FLASHFIT_DETECT__DETECTORS", r#"["ssd-mobilenetv2-oidv4"]"#),
            ]),
        )
        .expect("config");
        assert_eq!(
            c.s3.access_key_id.as_ref().map(Secret::expose),
            Some("12345")
        );
        assert_eq!(
            c.s3.secret_access_key.as_ref().map(Secret::expose),
            Some("007")
        );
        assert_eq!(c.lance.table, "2026");
        assert_eq!(c.kafka.group_prefix, "42");
        assert_eq!(c.kafka.partitions, 8);
        assert!(!c.kafka.create_topics);
        // Not a named field: a librdkafka property, passed as text.
        assert_eq!(c.kafka.properties["message.max.bytes"].expose(), "1000000");
        assert_eq!(c.classify.head.as_deref(), Some("123"));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.detect.detectors, vec!["ssd-mobilenetv2-oidv4".to_owned()]);
        // A value that is not its field's type is an error naming the field.
        let err = Config::from_sources(None, env(&[("FLASHFIT_RUNTIME__BATCH_SIZE", "many")]))
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("batch_size"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let err = Config::from_sources(Some("[runtime]\nbatch_sise = 3"), env(&[]))
            .expect_err("typo must fail");
        assert!(err.to_string().contains("batch_sise"), "{err}");
        let err = Config::from_sources(None, env(&[("FLASHFIT_ADMIN_ADDR", "not-an-addr")]))
            .expect_err("bad addr");
        assert!(err.to_string().contains("invalid"), "{err}");
        let err = Config::from_sources(None, env(&[("FLASHFIT_RUNTIME__BATCH_SIZE", "0")]))
            .expect_err("zero batch");
        assert!(err.to_string().contains("batch_size"), "{err}");
    }
}

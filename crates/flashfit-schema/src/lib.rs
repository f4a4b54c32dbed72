//! The event contract between FlashFit and the services around it: topic names, the upload
//! event, the records each stage passes on, the terminal status event, and the stable names of
//! rejection reasons and warnings. Pure data and validation, no I/O.
//!
//! Main types: [`UploadEvent`], [`GarmentRecord`], [`StatusEvent`], [`DeleteEvent`],
//! [`FeedbackEvent`], [`KpiEvent`], [`Reason`], [`Warning`].
//! The JSON Schemas in `schemas/` are derived from these types ([`json_schema`]); a test keeps
//! the files equal to them.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod json_schema;
pub mod record;
pub use record::GarmentRecord;

pub mod topics {
    //! Topic names are part of the contract: other teams produce and consume them.

    /// Upload events published by upload services (key: `garment_id`).
    pub const UPLOADS: &str = "flashfit.uploads";
    /// Terminal status per upload (key: `garment_id`).
    pub const STATUS: &str = "flashfit.status";
    /// Uploads that passed the quality stage, with the `quality` object added.
    pub const QUALITY: &str = "flashfit.quality";
    /// Garments removed by their owners (key: `garment_id`), see `DeleteEvent`.
    pub const DELETES: &str = "flashfit.deletes";
    /// User feedback on garments and outfits (key: `user_id`), see `FeedbackEvent`.
    pub const FEEDBACK: &str = "flashfit.feedback";
    /// A/B KPI events (key: `user_id`), see `KpiEvent`.
    pub const KPI: &str = "flashfit.kpi";

    /// Output topic of each enrichment stage, in pipeline order.
    pub const STAGE_OUTPUTS: [(super::StageName, &str); 5] = [
        (super::StageName::Quality, QUALITY),
        (super::StageName::Detect, "flashfit.detected"),
        (super::StageName::Classify, "flashfit.classified"),
        (super::StageName::Attributes, "flashfit.tagged"),
        (super::StageName::Embed, "flashfit.embedded"),
    ];

    /// The topic a stage writes its records to (enrichment stages only).
    pub fn output_of(stage: super::StageName) -> Option<&'static str> {
        STAGE_OUTPUTS
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, t)| *t)
    }

    /// The dead-letter topic of one stage: `flashfit.dlq.<stage>`.
    pub fn dlq(stage: &str) -> String {
        format!("flashfit.dlq.{stage}")
    }
}

/// Topic names under an optional prefix (`kafka.topic_prefix`; empty by default, giving the
/// contract names). A prefix lets several environments or test runs share one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Topics {
            prefix: prefix.into(),
        }
    }
    pub fn uploads(&self) -> String {
        format!("{}{}", self.prefix, topics::UPLOADS)
    }
    pub fn status(&self) -> String {
        format!("{}{}", self.prefix, topics::STATUS)
    }
    pub fn quality(&self) -> String {
        format!("{}{}", self.prefix, topics::QUALITY)
    }
    pub fn deletes(&self) -> String {
        format!("{}{}", self.prefix, topics::DELETES)
    }
    pub fn feedback(&self) -> String {
        format!("{}{}", self.prefix, topics::FEEDBACK)
    }
    pub fn kpi(&self) -> String {
        format!("{}{}", self.prefix, topics::KPI)
    }
    pub fn dlq(&self, stage: &str) -> String {
        format!("{}{}", self.prefix, topics::dlq(stage))
    }
    /// The topic a stage writes its records to (the next stage's input).
    pub fn output_of(&self, stage: StageName) -> Option<String> {
        topics::output_of(stage).map(|t| format!("{}{t}", self.prefix))
    }
}

/// Every kind of worker FlashFit runs, by its stable name: the CLI's `flashfit worker <name>`,
/// the pipeline file, the consumer group, metrics and `flashfit.dlq.<name>`. Adding a stage is
/// adding a variant here (and its builder in `flashfit-pipeline`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum StageName {
    /// Decode, size, blur and exposure checks (reads `flashfit.uploads`).
    Quality,
    /// Garment boxes.
    Detect,
    /// The 47-category taxonomy.
    Classify,
    /// Colours, pattern, fit, formality, seasons, style tags.
    Attributes,
    /// Image and text vectors.
    Embed,
    /// The Parquet sink: the pipeline's last topic and `flashfit.deletes` → tables.
    Parquet,
    /// The LanceDB sink: the pipeline's last topic and `flashfit.deletes` → vectors.
    Lance,
    /// `flashfit.feedback` → preference weights.
    Feedback,
    /// `flashfit.kpi` → the `kpi_events` table.
    Kpi,
}

impl StageName {
    /// Every worker kind: the enrichment chain in order, then the others.
    pub const ALL: [StageName; 9] = [
        StageName::Quality,
        StageName::Detect,
        StageName::Classify,
        StageName::Attributes,
        StageName::Embed,
        StageName::Parquet,
        StageName::Lance,
        StageName::Feedback,
        StageName::Kpi,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Quality => "quality",
            StageName::Detect => "detect",
            StageName::Classify => "classify",
            StageName::Attributes => "attributes",
            StageName::Embed => "embed",
            StageName::Parquet => "parquet",
            StageName::Lance => "lance",
            StageName::Feedback => "feedback",
            StageName::Kpi => "kpi",
        }
    }

    /// An enrichment stage: it processes uploads, passes a record on and answers statuses.
    pub fn is_enrichment(self) -> bool {
        topics::output_of(self).is_some()
    }

    /// A sink: it reads the pipeline's last topic.
    pub fn is_sink(self) -> bool {
        matches!(self, StageName::Parquet | StageName::Lance)
    }

    /// The enrichment stages, in pipeline order.
    pub fn chain() -> impl Iterator<Item = StageName> {
        Self::ALL.into_iter().filter(|s| s.is_enrichment())
    }
}

impl std::fmt::Display for StageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|n| n.as_str()).collect();
                format!("unknown stage `{s}` (known: {})", known.join(", "))
            })
    }
}

pub mod taxonomy {
    //! The garment taxonomy (seed: "Classification"): six groups, 47 categories. These names
    //! are the classify stage's output vocabulary and the `category` column analysts query.
    //! (The seed lists `cardigan` under both tops and outerwear; it is one category, in tops.)

    /// `(group, category)` in the seed's order.
    pub const CATEGORIES: [(&str, &str); 47] = [
        ("tops", "t_shirt"),
        ("tops", "polo"),
        ("tops", "tank_top"),
        ("tops", "henley"),
        ("tops", "dress_shirt"),
        ("tops", "oxford"),
        ("tops", "flannel"),
        ("tops", "blouse"),
        ("tops", "sweater"),
        ("tops", "cardigan"),
        ("tops", "hoodie"),
        ("tops", "sweatshirt"),
        ("bottoms", "jeans"),
        ("bottoms", "chinos"),
        ("bottoms", "dress_pants"),
        ("bottoms", "shorts"),
        ("bottoms", "sweatpants"),
        ("bottoms", "joggers"),
        ("bottoms", "skirt"),
        ("bottoms", "leggings"),
        ("outerwear", "blazer"),
        ("outerwear", "suit_jacket"),
        ("outerwear", "bomber"),
        ("outerwear", "denim_jacket"),
        ("outerwear", "leather_jacket"),
        ("outerwear", "coat"),
        ("outerwear", "parka"),
        ("outerwear", "vest"),
        ("dresses", "casual_dress"),
        ("dresses", "formal_dress"),
        ("dresses", "maxi_dress"),
        ("dresses", "midi_dress"),
        ("dresses", "mini_dress"),
        ("dresses", "sundress"),
        ("footwear", "sneakers"),
        ("footwear", "dress_shoes"),
        ("footwear", "loafers"),
        ("footwear", "boots"),
        ("footwear", "sandals"),
        ("footwear", "heels"),
        ("footwear", "flats"),
        ("accessories", "belt"),
        ("accessories", "tie"),
        ("accessories", "scarf"),
        ("accessories", "hat"),
        ("accessories", "watch"),
        ("accessories", "bag"),
    ];

    /// The six groups, in taxonomy order.
    pub const GROUPS: [&str; 6] = [
        "tops",
        "bottoms",
        "outerwear",
        "dresses",
        "footwear",
        "accessories",
    ];

    /// What the classify stage says when it cannot tell even the group (`category` =
    /// `unknown`, `level` = `unknown`).
    pub const UNKNOWN: &str = "unknown";

    /// The class a taxonomy head may have besides the categories: the photo is not clothing
    /// (its probability gives `is_clothing`).
    pub const NOT_CLOTHING: &str = "not_clothing";

    /// The group a classification label stands for: a category's group, or the label itself
    /// when it is a group (an unsure answer); `None` for `unknown` and anything else.
    pub fn group_of(label: &str) -> Option<&'static str> {
        group(label).or_else(|| GROUPS.iter().copied().find(|g| *g == label))
    }

    /// Index of a category in [`CATEGORIES`].
    pub fn index(category: &str) -> Option<usize> {
        CATEGORIES.iter().position(|(_, c)| *c == category)
    }

    /// The group of a category.
    pub fn group(category: &str) -> Option<&'static str> {
        CATEGORIES
            .iter()
            .find(|(_, c)| *c == category)
            .map(|(g, _)| *g)
    }
}

pub mod headers {
    //! Header names on dead-letter records (values are UTF-8).

    pub const ERROR_KIND: &str = "flashfit.error.kind";
    pub const ERROR_MESSAGE: &str = "flashfit.error.message";
    pub const SOURCE_TOPIC: &str = "flashfit.source.topic";
    pub const SOURCE_PARTITION: &str = "flashfit.source.partition";
    pub const SOURCE_OFFSET: &str = "flashfit.source.offset";
    pub const STAGE: &str = "flashfit.stage";
    pub const WORKER_VERSION: &str = "flashfit.worker.version";
}

/// Why an upload was rejected or failed. The serialised names are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Shorter side below the configured minimum (224 px by default).
    TooSmall,
    /// Not an image, truncated, or an unsupported format.
    Undecodable,
    /// More bytes or pixels than the configured caps allow.
    TooLarge,
    /// `image_uri` points outside the configured uploads location.
    UriNotAllowed,
    /// `image_uri` names an object that does not exist.
    NotFound,
    /// The event itself is not valid (bad JSON, missing or malformed field).
    InvalidEvent,
    /// The event names a garment that belongs to another user (an upload or a delete of
    /// someone else's garment id).
    NotOwner,
    /// The photo does not show clothing: its calibrated `is_clothing` is below `[classify]
    /// clothing_threshold` (a cat, a chart, a plate of food). Decided by the classify stage;
    /// a replay decides the same.
    NotClothing,
    /// Processing failed in a way retrying did not fix (a model error, an encoding error, a
    /// value the database refuses): dead-lettered after `runtime.max_attempts`, with the error.
    Internal,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::TooSmall,
        Reason::Undecodable,
        Reason::TooLarge,
        Reason::UriNotAllowed,
        Reason::NotFound,
        Reason::InvalidEvent,
        Reason::NotOwner,
        Reason::NotClothing,
        Reason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooSmall => "too_small",
            Reason::Undecodable => "undecodable",
            Reason::TooLarge => "too_large",
            Reason::UriNotAllowed => "uri_not_allowed",
            Reason::NotFound => "not_found",
            Reason::InvalidEvent => "invalid_event",
            Reason::NotOwner => "not_owner",
            Reason::NotClothing => "not_clothing",
            Reason::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Non-fatal findings. The serialised names are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Warning {
    Blurry,
    TooDark,
    TooBright,
}

/// The terminal state of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Processed,
    Rejected,
    Failed,
    /// An outfit upload became the garments in `garment_ids`; each goes on as its own upload
    /// (event_id `<event_id>/<item>`) and ends with its own status.
    Split,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "processed",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Split => "split",
        }
    }
}

/// An invalid event, with a message that names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

/// One clothing photo, published by an upload service on topic flashfit.uploads. Message key:
/// garment_id (UTF-8). Value: this object as UTF-8 JSON. Unknown fields are kept and passed
/// along the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Upload event")]
pub struct UploadEvent {
    /// Unique per upload; the idempotency key of every sink. Re-publishing the same event_id
    /// never creates a second garment.
    #[schemars(length(min = 1, max = 2048))]
    pub event_id: String,
    /// 1–255 bytes; no `/`, `\\`, `%` or control character, and not `.` or `..` (it names the
    /// user's folder in the uploads location).
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^/\\%\x00-\x1f\x7f]+$")
    )]
    pub user_id: String,
    #[schemars(length(min = 1, max = 2048))]
    pub garment_id: String,
    /// s3://BUCKET/KEY or file:///ABSOLUTE/PATH, inside FLASHFIT_UPLOADS_URI; anything
    /// else is rejected with reason uri_not_allowed.
    #[schemars(length(min = 1, max = 2048))]
    pub image_uri: String,
    /// RFC 3339 time of the upload.
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub uploaded_at: DateTime<Utc>,
    /// What the photo is: `garment` (absent: the default) — one garment, the photo's main
    /// garment or, on a person, the garment worn in the largest body region; `outfit` — a
    /// person wearing several: one garment per item found (top, bottom, footwear, tie, bag),
    /// each with its own garment id (`<garment_id>/<item>`), a terminal status `split` for the
    /// upload listing them, and a `wear` feedback event for the outfit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<UploadKind>,
}

/// What an upload's photo is (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadKind {
    #[default]
    Garment,
    Outfit,
}

impl UploadEvent {
    /// `kind`, absent meaning `garment`.
    pub fn kind(&self) -> UploadKind {
        self.kind.unwrap_or_default()
    }

    /// Parses and validates an upload event from its JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| InvalidEvent(format!("value is not UTF-8: {e}")))?;
        let event: UploadEvent = serde_json::from_str(text)
            .map_err(|e| InvalidEvent(format!("invalid upload event: {e}")))?;
        event.validate()?;
        Ok(event)
    }

    /// Checks the constraints serde cannot express: identifiers are non-empty and bounded.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        check_ids(&[
            ("event_id", &self.event_id),
            ("garment_id", &self.garment_id),
            ("image_uri", &self.image_uri),
        ])?;
        check_user_id(&self.user_id)?;
        check_time("uploaded_at", self.uploaded_at)
    }
}

/// A garment removed by its owner, published on topic flashfit.deletes. Message key:
/// garment_id (UTF-8). Value: this object as UTF-8 JSON. Deletion is final: flashfit worker
/// lance removes the garment's row (and ignores any later processing of that garment), flashfit
/// worker parquet records a tombstone row in the garment_deletes table, and garments_current
/// leaves the garment out. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Delete event")]
pub struct DeleteEvent {
    /// Unique per delete request.
    #[schemars(length(min = 1, max = 2048))]
    pub event_id: String,
    /// The garment's owner.
    /// 1–255 bytes; no `/`, `\\`, `%` or control character, and not `.` or `..` (it names the
    /// user's folder in the uploads location).
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^/\\%\x00-\x1f\x7f]+$")
    )]
    pub user_id: String,
    #[schemars(length(min = 1, max = 2048))]
    pub garment_id: String,
    /// RFC 3339 time of the deletion.
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub deleted_at: DateTime<Utc>,
}

impl DeleteEvent {
    /// Parses and validates a delete event from its JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        check_size("delete", bytes)?;
        let event: DeleteEvent = serde_json::from_slice(bytes)
            .map_err(|e| InvalidEvent(format!("invalid delete event: {e}")))?;
        check_ids(&[
            ("event_id", &event.event_id),
            ("garment_id", &event.garment_id),
        ])?;
        check_user_id(&event.user_id)?;
        check_time("deleted_at", event.deleted_at)?;
        Ok(event)
    }
}

/// What a user did with garments or an outfit (seed: "Personalization").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Like,
    Dislike,
    Wear,
    Skip,
    Click,
}

impl Signal {
    pub const ALL: [Signal; 5] = [
        Signal::Like,
        Signal::Dislike,
        Signal::Wear,
        Signal::Skip,
        Signal::Click,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Like => "like",
            Signal::Dislike => "dislike",
            Signal::Wear => "wear",
            Signal::Skip => "skip",
            Signal::Click => "click",
        }
    }
}

/// Most garments one feedback or KPI event may name.
pub const MAX_GARMENTS_PER_EVENT: usize = 64;

/// One interaction of a user with garments or an outfit, published by the app on topic
/// flashfit.feedback. Message key: user_id (UTF-8). Value: this object as UTF-8 JSON. flashfit
/// worker feedback applies the signal's weight (like +1.0, dislike -1.0, wear +2.0, skip -0.3,
/// click +0.2) x 0.1 to the user's weight for each garment's category, primary colour and
/// style tags. Idempotent by event_id. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Feedback event")]
pub struct FeedbackEvent {
    /// Unique per interaction; a redelivered or replayed event_id changes nothing.
    #[schemars(length(min = 1, max = 2048))]
    pub event_id: String,
    /// 1–255 bytes; no `/`, `\\`, `%` or control character, and not `.` or `..` (it names the
    /// user's folder in the uploads location).
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^/\\%\x00-\x1f\x7f]+$")
    )]
    pub user_id: String,
    pub signal: Signal,
    /// The garments the signal is about: one garment, or an outfit's garments.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 2048)))]
    pub garment_ids: Vec<String>,
    /// The outfit the garments were shown in, when the feedback is about an outfit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub outfit_id: Option<String>,
    /// RFC 3339 time of the interaction.
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

impl FeedbackEvent {
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        check_size("feedback", bytes)?;
        let e: FeedbackEvent = serde_json::from_slice(bytes)
            .map_err(|e| InvalidEvent(format!("invalid feedback event: {e}")))?;
        check_ids(&[("event_id", &e.event_id)])?;
        check_user_id(&e.user_id)?;
        check_time("ts", e.ts)?;
        check_garments(&e.garment_ids)?;
        if let Some(o) = &e.outfit_id {
            check_ids(&[("outfit_id", o)])?;
        }
        Ok(e)
    }
}

fn check_garments(ids: &[String]) -> Result<(), InvalidEvent> {
    if ids.is_empty() {
        return Err(InvalidEvent("field `garment_ids` is empty".into()));
    }
    if ids.len() > MAX_GARMENTS_PER_EVENT {
        return Err(InvalidEvent(format!(
            "field `garment_ids` has more than {MAX_GARMENTS_PER_EVENT} ids"
        )));
    }
    for g in ids {
        check_ids(&[("garment_ids[]", g)])?;
    }
    Ok(())
}

/// What a KPI event counts (seed: Phase 2 KPIs).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KpiType {
    Impression,
    Click,
    Save,
    Wear,
    Conversion,
    SessionStart,
    SessionEnd,
    Rating,
    /// Logged by the feedback worker for each `like` feedback event it applies.
    Like,
    /// Logged by the feedback worker for each `dislike`.
    Dislike,
    /// Logged by the feedback worker for each `skip`.
    Skip,
}

impl KpiType {
    pub fn as_str(self) -> &'static str {
        match self {
            KpiType::Impression => "impression",
            KpiType::Click => "click",
            KpiType::Save => "save",
            KpiType::Wear => "wear",
            KpiType::Conversion => "conversion",
            KpiType::SessionStart => "session_start",
            KpiType::SessionEnd => "session_end",
            KpiType::Rating => "rating",
            KpiType::Like => "like",
            KpiType::Dislike => "dislike",
            KpiType::Skip => "skip",
        }
    }
}

/// One A/B KPI event on topic flashfit.kpi (published by the app, and by flashfit serve for
/// the impressions of every outfit response). Message key: user_id (UTF-8). Value: this object
/// as UTF-8 JSON. flashfit worker kpi writes each event once to the kpi_events Parquet table.
/// Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "KPI event")]
pub struct KpiEvent {
    /// Unique per event: the sink writes each once.
    #[schemars(length(min = 1, max = 2048))]
    pub event_id: String,
    /// 1–255 bytes; no `/`, `\\`, `%` or control character, and not `.` or `..` (it names the
    /// user's folder in the uploads location).
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^/\\%\x00-\x1f\x7f]+$")
    )]
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: KpiType,
    /// RFC 3339.
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
    /// Experiment name -> the user's variant (as assigned by FlashFit's experiments config).
    /// At most 32 entries. Informative only: the kpi worker writes the variants it recomputes
    /// from the config, and counts a claim that differs.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32))]
    pub variants: std::collections::BTreeMap<String, String>,
    /// Session length in seconds (at most a day); required for session_end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub duration_s: Option<f64>,
    /// The rating (-1000 to 1000); required for rating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub value: Option<f64>,
    /// The outfit shown or acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub outfit_id: Option<String>,
    /// The garments shown or acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub garment_ids: Vec<String>,
    /// Impressions: the outfit's position in the response, 1 = first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub rank: Option<u32>,
    /// Impressions: the outfit's score as ranked (-1000 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub score: Option<f64>,
    /// Impressions: the scorer that ranked it (`rules` or a compatibility model's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub scorer: Option<String>,
    /// Impressions: the models that made the outfit's garment data
    /// (`stage:name@version`, sorted, each once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub model_versions: Vec<String>,
    /// The hash of the experiments config that assigned `variants` (serve, the feedback
    /// worker; the kpi worker always sets its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub experiments_hash: Option<String>,
}

impl KpiEvent {
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        check_size("KPI", bytes)?;
        let e: KpiEvent = serde_json::from_slice(bytes)
            .map_err(|e| InvalidEvent(format!("invalid KPI event: {e}")))?;
        e.validate()?;
        Ok(e)
    }

    pub fn validate(&self) -> Result<(), InvalidEvent> {
        check_ids(&[("event_id", &self.event_id)])?;
        check_user_id(&self.user_id)?;
        check_time("ts", self.ts)?;
        if self.variants.len() > MAX_VARIANTS {
            return Err(InvalidEvent(format!(
                "field `variants` has {} entries, more than {MAX_VARIANTS}",
                self.variants.len()
            )));
        }
        for (x, v) in &self.variants {
            check_ids(&[("variants key", x), ("variants value", v)])?;
        }
        let bounded = |name: &str, v: Option<f64>, lo: f64, hi: f64| match v {
            Some(x) if !x.is_finite() => Err(InvalidEvent(format!("field `{name}` is not finite"))),
            Some(x) if !(lo..=hi).contains(&x) => Err(InvalidEvent(format!(
                "field `{name}` ({x}) is outside {lo}..={hi}"
            ))),
            _ => Ok(()),
        };
        bounded("duration_s", self.duration_s, 0.0, MAX_SESSION_S)?;
        bounded("value", self.value, -MAX_KPI_VALUE, MAX_KPI_VALUE)?;
        bounded("score", self.score, -MAX_KPI_VALUE, MAX_KPI_VALUE)?;
        if self.rank.is_some_and(|r| r == 0 || r > MAX_RANK) {
            return Err(InvalidEvent(format!(
                "field `rank` is outside 1..={MAX_RANK}"
            )));
        }
        for (name, v) in [("outfit_id", &self.outfit_id), ("scorer", &self.scorer)] {
            if let Some(v) = v {
                check_ids(&[(name, v)])?;
            }
        }
        if self.model_versions.len() > MAX_GARMENTS_PER_EVENT {
            return Err(InvalidEvent(format!(
                "field `model_versions` has more than {MAX_GARMENTS_PER_EVENT} entries"
            )));
        }
        for m in self.model_versions.iter().chain(&self.garment_ids) {
            check_ids(&[("model_versions[] / garment_ids[]", m)])?;
        }
        match self.kind {
            KpiType::SessionEnd if self.duration_s.is_none_or(|d| d < 0.0) => Err(InvalidEvent(
                "a session_end event needs `duration_s` ≥ 0".into(),
            )),
            KpiType::Rating if self.value.is_none() => {
                Err(InvalidEvent("a rating event needs `value`".into()))
            }
            _ => Ok(()),
        }?;
        if self.garment_ids.len() > MAX_GARMENTS_PER_EVENT {
            return Err(InvalidEvent(format!(
                "field `garment_ids` has more than {MAX_GARMENTS_PER_EVENT} ids"
            )));
        }
        Ok(())
    }
}

/// How far ahead of this machine's clock an event's own time may be, in milliseconds
/// (`[runtime] max_clock_skew_ms`; the process sets it once at start with
/// [`set_max_clock_skew`]).
static MAX_CLOCK_SKEW_MS: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(DEFAULT_MAX_CLOCK_SKEW_MS);

/// The default of [`set_max_clock_skew`]: five minutes.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: i64 = 300_000;

/// Sets how far in the future an event's time may be before parsing refuses the event.
pub fn set_max_clock_skew(ms: u64) {
    MAX_CLOCK_SKEW_MS.store(
        i64::try_from(ms).unwrap_or(i64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// An event's own time may not be further ahead of now than the allowed clock skew: a
/// producer with a wrong clock (or a hostile one) would otherwise keep an event "too new to
/// give up on" for ever, or sort it before everything else.
fn check_time(name: &str, t: DateTime<Utc>) -> Result<(), InvalidEvent> {
    let skew = MAX_CLOCK_SKEW_MS.load(std::sync::atomic::Ordering::Relaxed);
    let ahead = t - Utc::now();
    if ahead > chrono::Duration::milliseconds(skew) {
        return Err(InvalidEvent(format!(
            "field `{name}` ({}) is {}s ahead of this worker's clock (at most {}s allowed: \
             [runtime] max_clock_skew_ms)",
            t.to_rfc3339(),
            ahead.num_seconds(),
            skew / 1000
        )));
    }
    if t < earliest_event_time() {
        return Err(InvalidEvent(format!(
            "field `{name}` ({}) is before 2000-01-01",
            t.to_rfc3339()
        )));
    }
    Ok(())
}

/// No event is older than this: an earlier time is a client's bug (a zero or a unit mistake).
fn earliest_event_time() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

/// Feedback, KPI and delete events larger than this are not parsed (`invalid_event`); upload
/// events have the same cap (the quality stage's intake).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Most experiments one KPI event may name in `variants`.
pub const MAX_VARIANTS: usize = 32;

/// Longest session a `session_end` event may report: one day, in seconds.
pub const MAX_SESSION_S: f64 = 86_400.0;

/// Bound of a KPI event's `value` (a rating) and `score`, either sign.
pub const MAX_KPI_VALUE: f64 = 1_000.0;

/// Deepest position an impression may report.
pub const MAX_RANK: u32 = 1_000;

/// Longest accepted user id, in bytes (OpenID Connect's `sub` is at most 255 ASCII characters).
pub const MAX_USER_ID_LEN: usize = 255;

fn check_size(kind: &str, bytes: &[u8]) -> Result<(), InvalidEvent> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(InvalidEvent(format!(
            "{kind} event is {} bytes, over the {MAX_EVENT_BYTES}-byte cap",
            bytes.len()
        )));
    }
    Ok(())
}

/// A user id names the user's folder in the uploads location and is compared with a token's
/// subject: 1 to [`MAX_USER_ID_LEN`] bytes, no `/`, `\`, `%` or control character (NUL
/// included), and not `.` or `..`.
pub fn check_user_id(id: &str) -> Result<(), InvalidEvent> {
    let bad = |why: &str| Err(InvalidEvent(format!("field `user_id` {why}")));
    if id.trim().is_empty() {
        return bad("is empty");
    }
    if id.len() > MAX_USER_ID_LEN {
        return bad(&format!("is longer than {MAX_USER_ID_LEN} bytes"));
    }
    if id == "." || id == ".." {
        return bad("is `.` or `..`");
    }
    if let Some(c) = id
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '%') || c.is_control())
    {
        return bad(&format!("contains {c:?}"));
    }
    Ok(())
}

/// Non-empty and at most [`MAX_FIELD_LEN`] bytes each.
fn check_ids(fields: &[(&str, &String)]) -> Result<(), InvalidEvent> {
    for (name, value) in fields {
        if value.trim().is_empty() {
            return Err(InvalidEvent(format!("field `{name}` is empty")));
        }
        if value.len() > MAX_FIELD_LEN {
            return Err(InvalidEvent(format!(
                "field `{name}` is longer than {MAX_FIELD_LEN} bytes"
            )));
        }
    }
    Ok(())
}

/// Longest accepted identifier or URI, in bytes.
pub const MAX_FIELD_LEN: usize = 2048;

/// The quality stage's object: what it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityReport {
    /// Width after EXIF orientation, in pixels.
    #[schemars(range(min = 1))]
    pub width: u32,
    /// Height after EXIF orientation, in pixels.
    #[schemars(range(min = 1))]
    pub height: u32,
    /// Variance of the 3x3 Laplacian of the greyscale image (as cv2.Laplacian(gray,
    /// CV_64F).var()).
    pub blur_score: f64,
    /// Mean greyscale value, 0..255.
    pub brightness: f64,
    pub warnings: Vec<Warning>,
    #[serde(flatten)]
    pub extra: record::Extra,
}

/// The terminal status of one upload, on topic flashfit.status keyed by garment_id. Every
/// upload gets at least one (at-least-once delivery: deduplicate on event_id). Identifiers are
/// null only when the input was too broken to contain them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Status event")]
pub struct StatusEvent {
    /// Null only when the input was not a JSON object holding it.
    pub event_id: Option<String>,
    pub garment_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Status,
    /// The stage that decided the status (quality, detect, classify, attributes, embed).
    pub stage: String,
    pub reasons: Vec<Reason>,
    pub warnings: Vec<Warning>,
    /// Human-readable detail for rejected or failed uploads; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `split`: the garments the upload became (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garment_ids: Vec<String>,
    /// When the status was decided (RFC 3339, UTC).
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

impl StatusEvent {
    /// A status for a well-formed upload.
    pub fn for_upload(upload: &UploadEvent, status: Status, stage: &str) -> Self {
        StatusEvent {
            event_id: Some(upload.event_id.clone()),
            garment_id: Some(upload.garment_id.clone()),
            user_id: Some(upload.user_id.clone()),
            status,
            stage: stage.to_owned(),
            reasons: Vec::new(),
            warnings: Vec::new(),
            message: None,
            garment_ids: Vec::new(),
            ts: Utc::now(),
        }
    }

    /// A `split` status: the outfit upload became `garment_ids`.
    pub fn split(upload: &UploadEvent, stage: &str, garment_ids: Vec<String>) -> Self {
        StatusEvent {
            garment_ids,
            ..StatusEvent::for_upload(upload, Status::Split, stage)
        }
    }

    /// A `rejected` status for a well-formed upload: the reason and a message saying why.
    pub fn rejected(upload: &UploadEvent, stage: &str, reason: Reason, message: String) -> Self {
        StatusEvent {
            reasons: vec![reason],
            message: Some(message),
            ..StatusEvent::for_upload(upload, Status::Rejected, stage)
        }
    }

    /// A `failed` status for input that may not parse: takes whatever identifiers the raw
    /// value holds, so the upload service can still match it to an upload.
    pub fn failed_from_raw(raw: &[u8], stage: &str, reason: Reason, message: &str) -> Self {
        let ids = RawIds::from_json(raw);
        StatusEvent {
            event_id: ids.event_id,
            garment_id: ids.garment_id,
            user_id: ids.user_id,
            status: Status::Failed,
            stage: stage.to_owned(),
            reasons: vec![reason],
            warnings: Vec::new(),
            message: Some(message.to_owned()),
            garment_ids: Vec::new(),
            ts: Utc::now(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Identifiers recovered from a value that may not be a valid event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawIds {
    pub event_id: Option<String>,
    pub garment_id: Option<String>,
    pub user_id: Option<String>,
}

impl RawIds {
    pub fn from_json(raw: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(raw)
        else {
            return RawIds::default();
        };
        let get = |k: &str| {
            map.get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD_LEN)
                .map(str::to_owned)
        };
        RawIds {
            event_id: get("event_id"),
            garment_id: get("garment_id"),
            user_id: get("user_id"),
        }
    }
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// Formats a time the way every FlashFit event does (RFC 3339, UTC, milliseconds).
pub fn format_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use bytes::Bytes;
use flashfit_schema::Reason;

/// One consumed message, detached from the Kafka client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Shared: every message of a partition names the same topic, and messages are cloned for
    /// retries.
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Headers in order, `(name, value)` (a dead letter's reason travels here).
    pub headers: Vec<(String, Bytes)>,
    /// The record's timestamp (milliseconds since the epoch), when the broker gave one.
    pub timestamp_ms: Option<i64>,
    /// When this process first received the message (kept by the clones a retry makes):
    /// retries are bounded by the time since, never by a time the event claims. `None` for a
    /// message made by hand (a test, a converter): it has waited no time.
    pub first_seen: Option<std::time::Instant>,
}

impl Message {
    /// How long this process has had the message.
    pub fn waited(&self) -> std::time::Duration {
        self.first_seen.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// The value bytes, or empty for a tombstone.
    pub fn payload(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }

    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A record a stage wants published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handled: publish these records (the next topic and/or a status), then commit.
    Emit(Vec<Emit>),
    /// The input is bad and always will be: the runtime dead-letters the original bytes with
    /// this reason and publishes a `failed` status.
    BadInput { reason: Reason, message: String },
    /// A dependency failed (storage, network, timeout): transient. The runtime retries with
    /// capped exponential backoff with jitter and never dead-letters or drops the message.
    Retry(String),
    /// A failure retrying is unlikely to fix (a bug, a model or encoding error, a value a
    /// database refuses). The runtime splits the batch to isolate the message, tries it at
    /// most `runtime.max_attempts` times, then dead-letters it with reason `internal` and the
    /// error, so one poison message never blocks its partition.
    Internal(String),
}

/// A pipeline stage: an async function from a batch of messages to one outcome per message,
/// in the same order. Everything else (Kafka, retries, dead letters, commits) is the runtime's.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    /// Stable name, used in metrics, the consumer group and `flashfit.dlq.<name>`.
    fn name(&self) -> &str;
    /// The topic this stage consumes (its main input; DLQ and error messages name it).
    fn input_topic(&self) -> &str;
    /// Every topic this stage consumes: by default only [`Stage::input_topic`]. A batch may mix
    /// messages of several topics; [`Message::topic`] says which is which.
    fn input_topics(&self) -> Vec<String> {
        vec![self.input_topic().to_owned()]
    }
    /// Topics this stage may write (created at start-up if missing).
    fn output_topics(&self) -> Vec<String>;
    /// Processes a batch. Must return exactly one outcome per message, in order; CPU-heavy
    /// work belongs in [`run_blocking`].
    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome>;
    /// The status topic this stage answers on, if it has one: records it emits there are
    /// counted in the `statuses` metric. Only the stages that process uploads have one (the
    /// runtime itself knows no status contract).
    fn status_topic(&self) -> Option<&str> {
        None
    }
    /// Records to publish with the dead letter when `msg` is dead-lettered for `reason`: the
    /// stages that process uploads answer the upload's `failed` status here. None by default
    /// (a bad feedback, KPI or delete event is not a failed upload).
    fn on_dead_letter(&self, msg: &Message, reason: Reason, message: &str) -> Vec<Emit> {
        let _ = (msg, reason, message);
        Vec::new()
    }
}

/// The upload's `failed` status for a dead-lettered message, on `status_topic`: what
/// [`Stage::on_dead_letter`] returns in the stages that process uploads.
pub fn failed_upload_status(
    status_topic: &str,
    stage: &str,
    msg: &Message,
    reason: Reason,
    message: &str,
) -> Vec<Emit> {
    let status =
        flashfit_schema::StatusEvent::failed_from_raw(msg.payload(), stage, reason, message);
    vec![Emit {
        topic: status_topic.to_owned(),
        key: msg.key.as_ref().map(|k| k.to_vec()),
        value: status.to_json(),
    }]
}

/// Runs CPU-heavy work off the async reactor. A panic inside becomes an error for the caller
/// to map (to [`Outcome::Internal`]), never a crashed worker.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("blocking task failed: {e}"))
}

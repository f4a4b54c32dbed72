use rdkafka::error::KafkaError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a worker stopped. Bad input never shows up here: it is dead-lettered and counted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker or client failed in a way retries inside librdkafka did not fix.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The process was started with settings it cannot work with: an operator must act.
    #[error("configuration: {0}")]
    Config(String),
    /// Too much input is bad: stop rather than drain a topic into the dead-letter topic.
    #[error(
        "dead-letter rate {ratio:.2} over the last {window} messages exceeds the limit {limit:.2}; \
         stopping so a bad producer or a broken dependency does not drain {input} into {dlq}"
    )]
    DeadLetterRate {
        ratio: f64,
        window: usize,
        limit: f64,
        input: String,
        dlq: String,
    },
    /// In-flight work did not finish within the shutdown deadline; it will be redelivered.
    #[error("shutdown deadline of {0:?} exceeded; uncommitted messages will be redelivered")]
    ShutdownTimeout(std::time::Duration),
    /// The stage could not start (model missing, storage misconfigured, …).
    #[error("stage {stage} failed to start: {message}")]
    StageStart { stage: String, message: String },
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
}

impl Error {
    /// True when restarting the process unchanged may help (the broker came back).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Kafka(_) | Error::ShutdownTimeout(_))
    }
}

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use flashfit_config::RuntimeConfig;
use flashfit_schema::{StatusEvent, Topics, headers};
use tokio_util::sync::CancellationToken;

use crate::{Emit, Error, Message, Outcome, Stage, StageMetrics, WORKER_VERSION};

/// A record ready to publish, with headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl From<Emit> for Record {
    fn from(e: Emit) -> Self {
        Record {
            topic: e.topic,
            key: e.key,
            value: e.value,
            headers: Vec::new(),
        }
    }
}

/// The result of running a stage over one batch.
#[derive(Debug, Default)]
pub struct BatchResult {
    /// Handled messages, each with the records that must be acknowledged before its offset
    /// may be committed.
    pub done: Vec<(Message, Vec<Record>)>,
    /// Messages still failing transiently when shutdown came: neither produced nor committed.
    pub unfinished: Vec<Message>,
}

impl BatchResult {
    /// The offset to commit per (topic, partition): everything below it is done. A partition's
    /// commit stops at its first unfinished message, so nothing is skipped.
    pub fn commit_offsets(&self) -> BTreeMap<(String, i32), i64> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (m, _) in &self.done {
            let e = next
                .entry((m.topic.to_string(), m.partition))
                .or_insert(m.offset + 1);
            *e = (*e).max(m.offset + 1);
        }
        for m in &self.unfinished {
            let e = next
                .entry((m.topic.to_string(), m.partition))
                .or_insert(m.offset);
            *e = (*e).min(m.offset);
        }
        next
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.done.iter().flat_map(|(_, r)| r.iter())
    }
}

/// Counts dead-lettered messages over a sliding window of recent outcomes and trips when their
/// share passes the configured limit.
#[derive(Debug)]
pub struct DlqGuard {
    window: VecDeque<bool>,
    size: usize,
    min: usize,
    limit: f64,
    bad: usize,
}

impl DlqGuard {
    pub fn new(cfg: &RuntimeConfig) -> Self {
        DlqGuard {
            window: VecDeque::with_capacity(cfg.dlq_window),
            size: cfg.dlq_window.max(1),
            min: cfg.dlq_min_messages,
            limit: cfg.dlq_max_ratio,
            bad: 0,
        }
    }

    pub fn record(&mut self, dead_lettered: bool) {
        if self.window.len() == self.size && self.window.pop_front() == Some(true) {
            self.bad -= 1;
        }
        self.window.push_back(dead_lettered);
        if dead_lettered {
            self.bad += 1;
        }
    }

    /// `Some(ratio)` when the limit is exceeded.
    pub fn tripped(&self) -> Option<f64> {
        if self.window.len() < self.min.max(1) {
            return None;
        }
        let ratio = self.bad as f64 / self.window.len() as f64;
        (ratio > self.limit).then_some(ratio)
    }
}

/// The Kafka-free half of the runtime: runs a stage over a batch, retries transient outcomes
/// with backoff, and turns outcomes into records (downstream, status, dead letter). The worker
/// and the test harness both use it, so they cannot drift apart.
pub struct Processor {
    stage: Arc<dyn Stage>,
    metrics: StageMetrics,
    cfg: RuntimeConfig,
    dlq_topic: String,
    status_topic: String,
    guard: std::sync::Mutex<DlqGuard>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("stage", &self.stage.name())
            .finish()
    }
}

impl Processor {
    pub fn new(
        stage: Arc<dyn Stage>,
        metrics: StageMetrics,
        cfg: RuntimeConfig,
        topics: &Topics,
    ) -> Self {
        let dlq_topic = topics.dlq(stage.name());
        let status_topic = topics.status();
        let guard = std::sync::Mutex::new(DlqGuard::new(&cfg));
        Processor {
            stage,
            metrics,
            cfg,
            dlq_topic,
            status_topic,
            guard,
        }
    }

    pub fn stage(&self) -> &Arc<dyn Stage> {
        &self.stage
    }

    pub fn metrics(&self) -> &StageMetrics {
        &self.metrics
    }

    pub fn dlq_topic(&self) -> &str {
        &self.dlq_topic
    }

    /// Runs the stage until every message is handled or `shutdown` fires while some still fail
    /// transiently (those come back as `unfinished`).
    pub async fn run_batch(
        &self,
        batch: Vec<Message>,
        shutdown: &CancellationToken,
    ) -> BatchResult {
        self.metrics.received(batch.len() as u64);
        let mut result = BatchResult::default();
        let mut pending = batch;
        let mut backoff = Duration::from_millis(self.cfg.retry_initial_backoff_ms);
        let max_backoff = Duration::from_millis(self.cfg.retry_max_backoff_ms);
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let mut outcomes = self.stage.process(pending.clone()).await;
            if outcomes.len() != pending.len() {
                // A stage bug; retrying is the only choice that loses nothing.
                self.metrics.error("internal");
                tracing::error!(
                    stage = self.stage.name(),
                    expected = pending.len(),
                    got = outcomes.len(),
                    "stage returned the wrong number of outcomes; retrying the batch"
                );
                outcomes = vec![
                    Outcome::Retry("stage returned wrong outcome count".into());
                    pending.len()
                ];
            }
            let mut retry = Vec::new();
            let mut verdicts = Vec::with_capacity(outcomes.len());
            for (msg, outcome) in pending.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Emit(emits) => {
                        for e in &emits {
                            if e.topic == self.status_topic {
                                self.count_status(&e.value);
                            }
                        }
                        verdicts.push(false);
                        result
                            .done
                            .push((msg, emits.into_iter().map(Record::from).collect()));
                    }
                    Outcome::BadInput { reason, message } => {
                        self.metrics.error("bad_input");
                        self.metrics.dead_lettered(reason.as_str());
                        self.metrics.status("failed");
                        verdicts.push(true);
                        tracing::warn!(
                            stage = self.stage.name(),
                            topic = %msg.topic,
                            partition = msg.partition,
                            offset = msg.offset,
                            reason = reason.as_str(),
                            error = %message,
                            "dead-lettering bad input"
                        );
                        let records = self.dead_letter(&msg, reason, &message);
                        result.done.push((msg, records));
                    }
                    Outcome::Retry(why) => {
                        self.metrics.error("transient");
                        tracing::warn!(
                            stage = self.stage.name(),
                            partition = msg.partition,
                            offset = msg.offset,
                            attempt,
                            backoff_ms = backoff.as_millis() as u64,
                            error = %why,
                            "transient failure; will retry"
                        );
                        retry.push(msg);
                    }
                }
            }
            self.guard_record(&verdicts);
            if retry.is_empty() {
                break;
            }
            let stopped = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(backoff) => false,
            };
            if stopped {
                result.unfinished = retry;
                break;
            }
            backoff = (backoff * 2).min(max_backoff);
            pending = retry;
        }
        result
    }

    /// Errors when the dead-letter rate over the window passes the limit.
    pub fn check_dead_letter_rate(&self) -> crate::Result<()> {
        let guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        match guard.tripped() {
            Some(ratio) => Err(Error::DeadLetterRate {
                ratio,
                window: guard.window.len(),
                limit: guard.limit,
                input: self.stage.input_topic().to_owned(),
                dlq: self.dlq_topic.clone(),
            }),
            None => Ok(()),
        }
    }

    fn guard_record(&self, verdicts: &[bool]) {
        let mut g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        for &bad in verdicts {
            g.record(bad);
        }
    }

    fn count_status(&self, value: &[u8]) {
        #[derive(serde::Deserialize)]
        struct S {
            status: String,
        }
        if let Ok(s) = serde_json::from_slice::<S>(value) {
            self.metrics.status(&s.status);
        }
    }

    /// The original bytes to `flashfit.dlq.<stage>` with the reason in headers, plus a `failed`
    /// status so the upload service hears about it.
    fn dead_letter(
        &self,
        msg: &Message,
        reason: flashfit_schema::Reason,
        message: &str,
    ) -> Vec<Record> {
        let stage = self.stage.name();
        let status = StatusEvent::failed_from_raw(msg.payload(), stage, reason, message);
        vec![
            Record {
                topic: self.dlq_topic.clone(),
                key: msg.key.as_ref().map(|k| k.to_vec()),
                value: msg.payload().to_vec(),
                headers: vec![
                    (headers::ERROR_KIND, reason.as_str().to_owned()),
                    (headers::ERROR_MESSAGE, message.to_owned()),
                    (headers::SOURCE_TOPIC, msg.topic.to_string()),
                    (headers::SOURCE_PARTITION, msg.partition.to_string()),
                    (headers::SOURCE_OFFSET, msg.offset.to_string()),
                    (headers::STAGE, stage.to_owned()),
                    (headers::WORKER_VERSION, WORKER_VERSION.to_owned()),
                ],
            },
            Record {
                topic: self.status_topic.clone(),
                key: msg.key.as_ref().map(|k| k.to_vec()),
                value: status.to_json(),
                headers: Vec::new(),
            },
        ]
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use flashfit_config::RuntimeConfig;
use flashfit_schema::{Topics, headers};
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

/// Capped exponential backoff with jitter, the one retry policy of the runtime: the n-th wait
/// is uniform in [½, 1] × min(initial × 2ⁿ, max), so replicas retrying the same dependency do
/// not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(cfg: &RuntimeConfig) -> Self {
        Backoff {
            next: Duration::from_millis(cfg.retry_initial_backoff_ms.max(1)),
            max: Duration::from_millis(cfg.retry_max_backoff_ms.max(1)),
        }
    }

    /// The cap of the next wait.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The next wait (jittered), doubling the cap after it.
    pub fn wait(&mut self) -> Duration {
        let cap = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        cap.mul_f64(0.5 + fastrand::f64() / 2.0)
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
        let guard = std::sync::Mutex::new(DlqGuard::new(&cfg));
        Processor {
            stage,
            metrics,
            cfg,
            dlq_topic,
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
    /// (those come back as `unfinished`).
    ///
    /// Transient failures ([`Outcome::Retry`]) are retried with capped exponential backoff with
    /// jitter until the message has waited `max_retry_ms` since this process received it
    /// ([`Message::waited`]); then it is dead-lettered (`internal`, with the last error). Other failures ([`Outcome::Internal`], a wrong outcome
    /// count) get at most `max_attempts`: the failing messages are split in halves until each
    /// is alone, so one poison message is isolated while the rest of the batch proceeds, and a
    /// message that still fails alone is dead-lettered with reason `internal`.
    pub async fn run_batch(
        &self,
        batch: Vec<Message>,
        shutdown: &CancellationToken,
    ) -> BatchResult {
        self.metrics.received(batch.len() as u64);
        if let Some(oldest) = batch.iter().filter_map(|m| m.timestamp_ms).min() {
            let now = chrono::Utc::now().timestamp_millis();
            self.metrics.oldest_age((now - oldest) as f64 / 1000.0);
        }
        let mut result = BatchResult::default();
        let mut backoff = Backoff::new(&self.cfg);
        let max_attempts = self.cfg.max_attempts.max(1);
        let mut attempts: std::collections::HashMap<(std::sync::Arc<str>, i32, i64), u32> =
            Default::default();
        let mut groups: VecDeque<Vec<Message>> = VecDeque::from([batch]);
        let mut stuck_since: Option<std::time::Instant> = None;
        while let Some(group) = groups.pop_front() {
            if group.is_empty() {
                continue;
            }
            let mut outcomes = self.stage.process(group.clone()).await;
            if outcomes.len() != group.len() {
                // A stage bug: no outcome can be trusted; isolate and bound like any other.
                self.metrics.error("internal");
                tracing::error!(
                    stage = self.stage.name(),
                    expected = group.len(),
                    got = outcomes.len(),
                    "stage returned the wrong number of outcomes"
                );
                let why = format!(
                    "stage returned {} outcomes for {} messages",
                    outcomes.len(),
                    group.len()
                );
                outcomes = vec![Outcome::Internal(why); group.len()];
            }
            let mut transient = Vec::new();
            let mut internal: Vec<(Message, String)> = Vec::new();
            let mut verdicts = Vec::with_capacity(outcomes.len());
            for (msg, outcome) in group.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Emit(emits) => match self.oversize(&emits) {
                        Some(why) => {
                            verdicts.push(true);
                            let records =
                                self.reject(&msg, flashfit_schema::Reason::TooLarge, &why);
                            result.done.push((msg, records));
                        }
                        None => {
                            self.count_statuses(&emits);
                            verdicts.push(false);
                            result
                                .done
                                .push((msg, emits.into_iter().map(Record::from).collect()));
                        }
                    },
                    Outcome::BadInput { reason, message } => {
                        verdicts.push(true);
                        let records = self.reject(&msg, reason, &message);
                        result.done.push((msg, records));
                    }
                    Outcome::Retry(why)
                        if msg.waited() >= Duration::from_millis(self.cfg.max_retry_ms) =>
                    {
                        self.metrics.error("transient");
                        verdicts.push(true);
                        let message = format!(
                            "still failing after {}s of retries: {why}",
                            msg.waited().as_secs()
                        );
                        let records =
                            self.reject(&msg, flashfit_schema::Reason::Internal, &message);
                        result.done.push((msg, records));
                    }
                    Outcome::Retry(why) => {
                        self.metrics.error("transient");
                        tracing::warn!(
                            stage = self.stage.name(),
                            partition = msg.partition,
                            offset = msg.offset,
                            backoff_ms = backoff.peek().as_millis() as u64,
                            error = %why,
                            "transient failure; will retry"
                        );
                        transient.push(msg);
                    }
                    Outcome::Internal(why) => internal.push((msg, why)),
                }
            }
            // Poison isolation: several failing together are split; one alone is counted.
            let mut wait = !transient.is_empty();
            if internal.len() > 1 {
                let msgs: Vec<Message> = internal.into_iter().map(|(m, _)| m).collect();
                let (a, b) = msgs.split_at(msgs.len() / 2);
                groups.push_front(b.to_vec());
                groups.push_front(a.to_vec());
            } else if let Some((msg, why)) = internal.pop() {
                self.metrics.error("internal");
                let key = (msg.topic.clone(), msg.partition, msg.offset);
                let n = attempts.entry(key).or_insert(0);
                *n += 1;
                if *n >= max_attempts {
                    verdicts.push(true);
                    let message = format!("{why} (failed {n} attempts)");
                    let records = self.reject(&msg, flashfit_schema::Reason::Internal, &message);
                    result.done.push((msg, records));
                } else {
                    tracing::warn!(
                        stage = self.stage.name(),
                        partition = msg.partition,
                        offset = msg.offset,
                        attempt = *n,
                        max_attempts,
                        error = %why,
                        "processing failed; will try again"
                    );
                    groups.push_front(vec![msg]);
                    wait = true;
                }
            }
            self.guard_record(&verdicts);
            if !transient.is_empty() {
                groups.push_back(transient);
            }
            if !wait {
                continue;
            }
            let since = *stuck_since.get_or_insert_with(std::time::Instant::now);
            let age = since.elapsed();
            self.metrics.stuck(age.as_secs_f64());
            if age >= Duration::from_millis(self.cfg.stuck_after_ms) {
                self.metrics.degraded(Some(format!(
                    "a message has been retried for {}s",
                    age.as_secs()
                )));
            }
            let stopped = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(backoff.wait()) => false,
            };
            if stopped {
                result.unfinished = groups.into_iter().flatten().collect();
                break;
            }
        }
        if stuck_since.is_some() {
            self.metrics.stuck(0.0);
            self.metrics.degraded(None);
        }
        result
    }

    /// Why one of `emits` cannot be produced (over `max_record_bytes`), if so.
    fn oversize(&self, emits: &[Emit]) -> Option<String> {
        let limit = self.cfg.max_record_bytes;
        emits
            .iter()
            .map(|e| (e, e.value.len() + e.key.as_ref().map_or(0, Vec::len)))
            .find(|(_, n)| *n > limit)
            .map(|(e, n)| {
                format!(
                    "output record for {} is {n} bytes, over runtime.max_record_bytes ({limit})",
                    e.topic
                )
            })
    }

    /// Dead-letters `msg` with the reason (metrics, log, records).
    fn reject(&self, msg: &Message, reason: flashfit_schema::Reason, message: &str) -> Vec<Record> {
        self.metrics
            .error(if reason == flashfit_schema::Reason::Internal {
                "internal"
            } else {
                "bad_input"
            });
        self.metrics.dead_lettered(reason.as_str());
        tracing::warn!(
            stage = self.stage.name(),
            topic = %msg.topic,
            partition = msg.partition,
            offset = msg.offset,
            reason = reason.as_str(),
            error = %message,
            "dead-lettering"
        );
        self.dead_letter(msg, reason, message)
    }

    /// Resets the dead-letter window (after a pause).
    pub fn reset_dead_letter_rate(&self) {
        let mut g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        *g = DlqGuard::new(&self.cfg);
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

    /// Counts the records of `emits` on the stage's status topic by their `status` field.
    fn count_statuses(&self, emits: &[Emit]) {
        #[derive(serde::Deserialize)]
        struct S {
            status: String,
        }
        let Some(topic) = self.stage.status_topic() else {
            return;
        };
        for e in emits.iter().filter(|e| e.topic == topic) {
            if let Ok(s) = serde_json::from_slice::<S>(&e.value) {
                self.metrics.status(&s.status);
            }
        }
    }

    /// The original bytes to `flashfit.dlq.<stage>` with the reason in headers, plus what the
    /// stage publishes for a dead letter ([`Stage::on_dead_letter`]: an upload's `failed`
    /// status).
    fn dead_letter(
        &self,
        msg: &Message,
        reason: flashfit_schema::Reason,
        message: &str,
    ) -> Vec<Record> {
        let stage = self.stage.name();
        let extra = self.stage.on_dead_letter(msg, reason, message);
        self.count_statuses(&extra);
        // A dead letter must itself fit: an input near the limit plus headers might not.
        let headroom = 64 * 1024;
        let (value, message) = if msg.payload().len() + headroom > self.cfg.max_record_bytes {
            (
                Vec::new(),
                format!(
                    "{message} [original value of {} bytes not kept: over runtime.max_record_bytes; see {} partition {} offset {}]",
                    msg.payload().len(),
                    msg.topic,
                    msg.partition,
                    msg.offset
                ),
            )
        } else {
            (msg.payload().to_vec(), message.to_owned())
        };
        let message = message.as_str();
        let mut records = vec![Record {
            topic: self.dlq_topic.clone(),
            key: msg.key.as_ref().map(|k| k.to_vec()),
            value,
            headers: vec![
                (headers::ERROR_KIND, reason.as_str().to_owned()),
                (headers::ERROR_MESSAGE, message.to_owned()),
                (headers::SOURCE_TOPIC, msg.topic.to_string()),
                (headers::SOURCE_PARTITION, msg.partition.to_string()),
                (headers::SOURCE_OFFSET, msg.offset.to_string()),
                (headers::STAGE, stage.to_owned()),
                (headers::WORKER_VERSION, WORKER_VERSION.to_owned()),
            ],
        }];
        records.extend(extra.into_iter().map(Record::from));
        records
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;

//! The Kafka driver: consume → batch → [`Processor`] → produce and await acks → commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashfit_config::Config;
use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Error, Health, Message, Metrics, Processor, Record, Result, Stage, StageMetrics, kafka,
};

/// Client context: turns librdkafka statistics into the lag gauge and logs rebalances.
struct WorkerContext {
    metrics: StageMetrics,
    stage: String,
}

impl ClientContext for WorkerContext {
    fn stats(&self, stats: Statistics) {
        let lag: i64 = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.metrics.lag(lag);
    }
}

impl ConsumerContext for WorkerContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            self.metrics.error("commit");
            tracing::warn!(stage = %self.stage, error = %e, "offset commit failed; messages may be redelivered");
        }
    }

    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                tracing::info!(stage = %self.stage, partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(stage = %self.stage, partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => {
                tracing::warn!(stage = %self.stage, error = %e, "rebalance error")
            }
        }
    }
}

type WorkerConsumer = StreamConsumer<WorkerContext>;

/// Runs one stage against Kafka until `shutdown` fires (then drains, commits and returns
/// `Ok`) or something an operator must see happens (then returns the error).
pub async fn run_worker(
    config: &Config,
    stage: Arc<dyn Stage>,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> Result<()> {
    let name = stage.name().to_owned();
    let span = tracing::info_span!("worker", stage = %name);
    async move {
        let sm = metrics.stage(&name);
        let topic_names = flashfit_schema::Topics::new(config.kafka.topic_prefix.clone());
        let processor = Processor::new(
            stage.clone(),
            sm.clone(),
            config.runtime.clone(),
            &topic_names,
        );
        let inputs = stage.input_topics();
        let mut topics = inputs.clone();
        topics.extend([processor.dlq_topic().to_owned(), topic_names.status()]);
        topics.extend(stage.output_topics());
        kafka::ensure_topics(&config.kafka, &topics).await?;

        let group = format!("{}-{}", config.kafka.group_prefix, name);
        let consumer: Arc<WorkerConsumer> = Arc::new(
            kafka::consumer_config(&config.kafka, &group, config.runtime.stats_interval_ms)?
                .create_with_context(WorkerContext {
                    metrics: sm.clone(),
                    stage: name.clone(),
                })?,
        );
        let subscribe: Vec<&str> = inputs.iter().map(String::as_str).collect();
        consumer.subscribe(&subscribe)?;
        let producer = kafka::producer(&config.kafka)?;
        tracing::info!(group, inputs = ?inputs, "worker started");
        metrics.health().set(Health::RUNNING);

        let result = drive(config, &processor, &consumer, &producer, &shutdown).await;
        match &result {
            Ok(()) => tracing::info!("worker stopped cleanly"),
            Err(e) => {
                metrics.health().set(Health::FAILED);
                tracing::error!(error = %e, "worker stopped with an error");
            }
        }
        result
    }
    .instrument(span)
    .await
}

/// A batch whose records are being produced; its offsets are committed once they are acked.
struct InFlight {
    produced: tokio::task::JoinHandle<()>,
    offsets: BTreeMap<(String, i32), i64>,
}

/// The consume loop. Batches are pipelined: while batch N's records wait for broker acks (in
/// their own task), batch N+1 is already being processed. A single committer awaits batches in
/// order and commits each one's offsets only after all its records were acknowledged, so
/// commits stay ordered and nothing is committed before it is durable. At most
/// `max_in_flight_messages` consumed messages await acknowledgement at once (backpressure):
/// throughput needs enough in flight to cover the broker's acknowledgement latency, whatever
/// the batch size.
async fn drive(
    config: &Config,
    processor: &Processor,
    consumer: &Arc<WorkerConsumer>,
    producer: &FutureProducer,
    shutdown: &CancellationToken,
) -> Result<()> {
    let rt = &config.runtime;
    let linger = Duration::from_millis(rt.linger_ms);
    let sm = processor.metrics().clone();
    // Each queued entry holds at least one permit, so the queue is bounded by the permits.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<InFlight>();
    let max_in_flight = rt.max_in_flight_messages.max(rt.batch_size).max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let committer = tokio::spawn(commit_loop(
        consumer.clone(),
        rx,
        sm.clone(),
        Duration::from_millis(rt.commit_interval_ms),
    ));
    let mut batch_no: u64 = 0;
    let mut outcome = Ok(());
    loop {
        let batch = next_batch(consumer, rt.batch_size, linger, shutdown, &sm).await;
        if batch.is_empty() {
            break; // only on shutdown
        }
        batch_no += 1;
        let started = Instant::now();
        let span = tracing::debug_span!("batch", n = batch_no, size = batch.len());
        let result = processor.run_batch(batch, shutdown).instrument(span).await;
        let interrupted = !result.unfinished.is_empty();
        let offsets = result.commit_offsets();
        let n = u32::try_from(result.done.len().clamp(1, max_in_flight)).unwrap_or(u32::MAX);
        let records: Vec<Record> = result.done.into_iter().flat_map(|(_, r)| r).collect();
        let blocked = Instant::now();
        let Ok(permit) = permits.clone().acquire_many_owned(n).await else {
            outcome = Err(Error::Config("in-flight limiter closed".into()));
            break;
        };
        sm.blocked(blocked.elapsed().as_secs_f64());
        let (producer, sm2, rt2) = (producer.clone(), sm.clone(), rt.clone());
        let produced = tokio::spawn(async move {
            produce_all(producer, records, sm2, rt2, started).await;
            drop(permit);
        });
        if tx.send(InFlight { produced, offsets }).is_err() {
            outcome = Err(Error::Config("committer stopped unexpectedly".into()));
            break;
        }
        if let Err(e) = processor.check_dead_letter_rate() {
            outcome = Err(e);
            break;
        }
        if interrupted || shutdown.is_cancelled() {
            break;
        }
    }
    drop(tx);
    // Drain: every batch already handed over is produced and committed before we return.
    committer
        .await
        .map_err(|e| Error::Config(format!("committer task failed: {e}")))?;
    outcome
}

async fn commit_loop(
    consumer: Arc<WorkerConsumer>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<InFlight>,
    sm: StageMetrics,
    interval: Duration,
) {
    // Everything acknowledged so far; committed synchronously once more when draining.
    let mut all: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut last_commit = Instant::now() - interval;
    while let Some(first) = rx.recv().await {
        let mut offsets = first.offsets;
        let waited = Instant::now();
        let _ = first.produced.await;
        // Coalesce batches that are already waiting: one commit covers them all.
        while let Ok(next) = rx.try_recv() {
            let _ = next.produced.await;
            merge(&mut offsets, next.offsets);
        }
        sm.blocked(waited.elapsed().as_secs_f64());
        merge(&mut all, offsets);
        // Asynchronous and at most once per interval while running: librdkafka keeps commits
        // in order, failures reach `commit_callback`, and a lost commit only means
        // redelivery (at-least-once). Offset commits are writes on the broker: batching them
        // keeps its load independent of our batch size.
        if last_commit.elapsed() >= interval
            && let Some(tpl) = commit_list(&all)
        {
            last_commit = Instant::now();
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                sm.error("commit");
                tracing::warn!(error = %e, "commit request failed; the next one covers it");
            }
        }
    }
    commit(&consumer, all, &sm).await;
}

fn merge(into: &mut BTreeMap<(String, i32), i64>, from: BTreeMap<(String, i32), i64>) {
    for (tp, o) in from {
        let e = into.entry(tp).or_insert(o);
        *e = (*e).max(o);
    }
}

fn commit_list(offsets: &BTreeMap<(String, i32), i64>) -> Option<TopicPartitionList> {
    if offsets.is_empty() {
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::error!(error = %e, "cannot build commit list");
            return None;
        }
    }
    Some(tpl)
}

/// Waits for a first message (or shutdown), then fills the batch until it is full or the
/// linger time since the first message has passed.
async fn next_batch(
    consumer: &WorkerConsumer,
    max: usize,
    linger: Duration,
    shutdown: &CancellationToken,
    sm: &StageMetrics,
) -> Vec<Message> {
    let mut batch = Vec::with_capacity(max);
    let mut topic: Option<Arc<str>> = None;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return batch,
            m = consumer.recv() => m,
        };
        match first {
            Ok(m) => {
                batch.push(detach(&m, &mut topic));
                break;
            }
            Err(e) => {
                sm.error("consume");
                tracing::warn!(error = %e, "consume error; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return batch,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    // One timer per batch, not per message.
    let linger_done = tokio::time::sleep(linger);
    tokio::pin!(linger_done);
    while batch.len() < max {
        tokio::select! {
            biased;
            m = consumer.recv() => match m {
                Ok(m) => batch.push(detach(&m, &mut topic)),
                Err(e) => {
                    sm.error("consume");
                    tracing::warn!(error = %e, "consume error");
                    break;
                }
            },
            _ = &mut linger_done => break,
        }
    }
    batch
}

/// Copies a message out of the client's buffer; the topic name is shared between messages.
fn detach(m: &rdkafka::message::BorrowedMessage<'_>, topic: &mut Option<Arc<str>>) -> Message {
    let t = match topic {
        Some(t) if &**t == m.topic() => t.clone(),
        _ => {
            let t: Arc<str> = m.topic().into();
            *topic = Some(t.clone());
            t
        }
    };
    Message {
        topic: t,
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(bytes::Bytes::copy_from_slice),
        value: m.payload().map(bytes::Bytes::copy_from_slice),
    }
}

/// Publishes every record and waits for each acknowledgement, re-sending failed ones with
/// backoff until they are acknowledged: a record is never dropped.
async fn produce_all(
    producer: FutureProducer,
    records: Vec<Record>,
    sm: StageMetrics,
    rt: flashfit_config::RuntimeConfig,
    batch_started: Instant,
) {
    let mut pending: Vec<&Record> = records.iter().collect();
    let mut backoff = Duration::from_millis(rt.retry_initial_backoff_ms);
    let producer = &producer;
    while !pending.is_empty() {
        let sends = pending.iter().map(|r| async move {
            let mut rec = FutureRecord::<[u8], [u8]>::to(&r.topic).payload(&r.value);
            // Most records carry no headers: skip the native header list for them.
            if !r.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                rec = rec.headers(headers);
            }
            if let Some(k) = &r.key {
                rec = rec.key(k);
            }
            (*r, producer.send(rec, Timeout::Never).await)
        });
        let mut failed = Vec::new();
        // Count per topic, then touch each labelled counter once per batch.
        let mut acked: Vec<(&str, u64)> = Vec::new();
        for (r, res) in join_all(sends).await {
            match res {
                Ok(_) => match acked.iter_mut().find(|(t, _)| *t == r.topic) {
                    Some((_, n)) => *n += 1,
                    None => acked.push((&r.topic, 1)),
                },
                Err((e, _)) => {
                    sm.error("produce");
                    tracing::warn!(topic = %r.topic, error = %e, "produce failed; will resend");
                    failed.push(r);
                }
            }
        }
        for (topic, n) in acked {
            sm.produced_n(topic, n);
        }
        if failed.is_empty() {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(rt.retry_max_backoff_ms));
        pending = failed;
    }
    sm.batch_duration(batch_started.elapsed().as_secs_f64());
}

/// Commits offsets synchronously (off the reactor), used when draining. A commit refused
/// because the partitions moved to another member is not fatal: they will be redelivered
/// there (at-least-once).
async fn commit(
    consumer: &Arc<WorkerConsumer>,
    offsets: BTreeMap<(String, i32), i64>,
    sm: &StageMetrics,
) {
    let Some(tpl) = commit_list(&offsets) else {
        return;
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let c = consumer.clone();
        let tpl2 = tpl.clone();
        let res = tokio::task::spawn_blocking(move || c.commit(&tpl2, CommitMode::Sync)).await;
        match res {
            Ok(Ok(())) => {
                tracing::debug!(?offsets, "committed");
                return;
            }
            Ok(Err(e)) if attempt < 5 => {
                sm.error("commit");
                tracing::warn!(error = %e, attempt, "commit failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Ok(Err(e)) => {
                sm.error("commit");
                tracing::warn!(error = %e, "commit failed; these messages will be redelivered (at-least-once)");
                return;
            }
            Err(e) => {
                sm.error("commit");
                tracing::error!(error = %e, "commit task failed");
                return;
            }
        }
    }
}

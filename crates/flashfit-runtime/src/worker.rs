//! The Kafka driver: consume → batch → [`Processor`] → produce and await acks → commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

type Tp = (String, i32);

/// The partitions this worker owns and what is acknowledged for them, shared by the consume
/// loop, the committer and the rebalance callbacks.
///
/// Every assignment of a partition gets a new epoch. A batch remembers the epochs of its
/// partitions when it was consumed; its offsets are merged into `acked` only if the partition
/// is still owned in that epoch. So results that finish after their partition was revoked
/// (even if it came back since) are never committed over the new owner's offsets, and the
/// committer only ever commits partitions this worker owns.
#[derive(Debug, Default)]
struct Ownership {
    next_epoch: u64,
    owned: HashMap<Tp, u64>,
    /// Per owned partition, the next offset to commit: everything below it is acknowledged.
    acked: BTreeMap<Tp, i64>,
}

type Shared = Arc<std::sync::Mutex<Ownership>>;

fn lock(o: &Shared) -> std::sync::MutexGuard<'_, Ownership> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

/// An epoch no assignment has: offsets tagged with it are never committed.
const STALE: u64 = u64::MAX;

/// Client context: turns librdkafka statistics into the lag gauge, tracks partition ownership
/// through rebalances, and commits what is acknowledged for revoked partitions before the
/// revocation completes.
struct WorkerContext {
    metrics: StageMetrics,
    stage: String,
    ownership: Shared,
    /// Bumped on every rebalance: a batch filled across one cannot trust its epochs.
    rebalances: Arc<AtomicU64>,
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

    fn pre_rebalance(&self, c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        let Rebalance::Revoke(tpl) = r else {
            return;
        };
        // Stop taking results for these partitions, commit what is acknowledged for them while
        // they are still ours, and forget them. The lock is held through the commit, so the
        // committer cannot slip a commit for them in between.
        let mut own = lock(&self.ownership);
        let mut last = BTreeMap::new();
        for e in tpl.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            own.owned.remove(&tp);
            if let Some(o) = own.acked.remove(&tp) {
                last.insert(tp, o);
            }
        }
        if let Some(list) = commit_list(&last) {
            match c.commit(&list, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(stage = %self.stage, offsets = ?last, "committed revoked partitions")
                }
                Err(e) => {
                    self.metrics.error("commit");
                    tracing::warn!(stage = %self.stage, error = %e, "commit of revoked partitions failed; the new owner redelivers from the last commit");
                }
            }
        }
    }

    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match r {
            Rebalance::Assign(tpl) => {
                let mut own = lock(&self.ownership);
                for e in tpl.elements() {
                    own.next_epoch += 1;
                    let epoch = own.next_epoch;
                    own.owned
                        .insert((e.topic().to_owned(), e.partition()), epoch);
                }
                drop(own);
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
        // Every destination exported at zero from the start (dashboards, alerts).
        for t in stage.output_topics() {
            sm.produced_n(&t, 0);
        }
        sm.produced_n(&topic_names.dlq(&name), 0);
        let processor = Processor::new(
            stage.clone(),
            sm.clone(),
            config.runtime.clone(),
            &topic_names,
        );
        let inputs = stage.input_topics();
        let mut topics = inputs.clone();
        topics.push(processor.dlq_topic().to_owned());
        topics.extend(stage.output_topics());
        kafka::ensure_topics(&config.kafka, &topics).await?;

        let group = format!("{}-{}", config.kafka.group_prefix, name);
        let ownership = Shared::default();
        let rebalances = Arc::new(AtomicU64::new(0));
        let consumer: Arc<WorkerConsumer> = Arc::new(
            kafka::consumer_config(&config.kafka, &group, config.runtime.stats_interval_ms)?
                .create_with_context(WorkerContext {
                    metrics: sm.clone(),
                    stage: name.clone(),
                    ownership: ownership.clone(),
                    rebalances: rebalances.clone(),
                })?,
        );
        let subscribe: Vec<&str> = inputs.iter().map(String::as_str).collect();
        consumer.subscribe(&subscribe)?;
        let producer = kafka::producer(&config.kafka)?;
        tracing::info!(group, inputs = ?inputs, "worker started");
        metrics.health().set(Health::RUNNING);

        let owners = Owners {
            ownership,
            rebalances,
        };
        let result = drive(config, &processor, &consumer, &producer, &owners, &shutdown).await;
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
    /// `true` once every record is acknowledged; `false` when producing was abandoned at the
    /// end of a drain.
    produced: tokio::task::JoinHandle<bool>,
    offsets: BTreeMap<Tp, i64>,
    /// The assignment epoch of each partition when the batch was consumed.
    epochs: HashMap<Tp, u64>,
}

/// What the consume loop and the committer share with the rebalance callbacks.
struct Owners {
    ownership: Shared,
    rebalances: Arc<AtomicU64>,
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
    owners: &Owners,
    shutdown: &CancellationToken,
) -> Result<()> {
    let rt = &config.runtime;
    let linger = Duration::from_millis(rt.linger_ms);
    let sm = processor.metrics().clone();
    // One deadline for the drain: shutdown + shutdown_timeout_ms. Producing stops being
    // awaited at 80% of it (unacknowledged batches are not committed: redelivered later), the
    // rest is for the final commit.
    let budget = Duration::from_millis(rt.shutdown_timeout_ms);
    let abandon = CancellationToken::new();
    let drain_deadline = Arc::new(std::sync::OnceLock::<Instant>::new());
    let timer = {
        let (shutdown, abandon, deadline) =
            (shutdown.clone(), abandon.clone(), drain_deadline.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = deadline.set(Instant::now() + budget);
            tokio::time::sleep(budget.mul_f64(0.8)).await;
            abandon.cancel();
        })
    };
    // Each queued entry holds at least one permit, so the queue is bounded by the permits.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<InFlight>();
    let max_in_flight = rt.max_in_flight_messages.max(rt.batch_size).max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let committer = tokio::spawn(commit_loop(
        consumer.clone(),
        rx,
        sm.clone(),
        Duration::from_millis(rt.commit_interval_ms),
        owners.ownership.clone(),
        drain_deadline.clone(),
    ));
    let mut batch_no: u64 = 0;
    let mut outcome = Ok(());
    loop {
        let (batch, epochs) =
            next_batch(consumer, rt.batch_size, linger, shutdown, &sm, owners).await;
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
        // Waiting for room must not outlast the drain: once producing is abandoned, this
        // batch is dropped unproduced and uncommitted (redelivered later).
        let permit = tokio::select! {
            p = permits.clone().acquire_many_owned(n) => p,
            _ = abandon.cancelled() => break,
        };
        let Ok(permit) = permit else {
            outcome = Err(Error::Config("in-flight limiter closed".into()));
            break;
        };
        sm.blocked(blocked.elapsed().as_secs_f64());
        let (producer, sm2, rt2, abandon2) =
            (producer.clone(), sm.clone(), rt.clone(), abandon.clone());
        let produced = tokio::spawn(async move {
            let all = produce_all(producer, records, sm2, rt2, started, abandon2).await;
            drop(permit);
            all
        });
        if tx
            .send(InFlight {
                produced,
                offsets,
                epochs,
            })
            .is_err()
        {
            outcome = Err(Error::Config("committer stopped unexpectedly".into()));
            break;
        }
        if let Err(e) = processor.check_dead_letter_rate() {
            // Pause instead of exiting (an orchestrator's restart would only dead-letter the
            // next batch): stop fetching, keep serving the group, report degraded, resume.
            pause(consumer, processor, rt, shutdown, &e).await;
        }
        if interrupted || shutdown.is_cancelled() {
            break;
        }
    }
    drop(tx);
    // Drain: every batch already handed over is produced and committed before we return
    // (or, past 80% of the deadline, left uncommitted for redelivery).
    let committed = committer
        .await
        .map_err(|e| Error::Config(format!("committer task failed: {e}")));
    timer.abort();
    committed??;
    outcome
}

/// The dead-letter breaker: pauses every assigned partition for `dlq_pause_ms` while still
/// polling (rebalances keep being served), with `/health` degraded, then resumes with a fresh
/// window. Messages already fetched are not lost: pausing discards the fetch queue and
/// resuming fetches from the position again.
async fn pause(
    consumer: &Arc<WorkerConsumer>,
    processor: &Processor,
    rt: &flashfit_config::RuntimeConfig,
    shutdown: &CancellationToken,
    why: &Error,
) {
    let sm = processor.metrics();
    sm.degraded(Some(why.to_string()));
    tracing::error!(error = %why, pause_ms = rt.dlq_pause_ms, "dead-letter rate too high; pausing consumption");
    let assigned = consumer.assignment().unwrap_or_default();
    if let Err(e) = consumer.pause(&assigned) {
        tracing::warn!(error = %e, "pause failed");
    }
    let until = tokio::time::sleep(Duration::from_millis(rt.dlq_pause_ms));
    tokio::pin!(until);
    let mut held: Vec<(String, i32, i64)> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => {
                // Fetched before the pause took hold: remember where to resume.
                if let Ok(m) = m {
                    let tp = (m.topic().to_owned(), m.partition(), m.offset());
                    if !held.iter().any(|h| h.0 == tp.0 && h.1 == tp.1) {
                        held.push(tp);
                    }
                }
            }
        }
    }
    for (topic, partition, offset) in held {
        if let Err(e) = consumer.seek(
            &topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            tracing::warn!(error = %e, topic, partition, "seek after pause failed");
        }
    }
    let assigned = consumer.assignment().unwrap_or_default();
    if let Err(e) = consumer.resume(&assigned) {
        tracing::warn!(error = %e, "resume failed");
    }
    processor.reset_dead_letter_rate();
    sm.degraded(None);
    tracing::info!("resuming consumption");
}

async fn commit_loop(
    consumer: Arc<WorkerConsumer>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<InFlight>,
    sm: StageMetrics,
    interval: Duration,
    ownership: Shared,
    drain_deadline: Arc<std::sync::OnceLock<Instant>>,
) -> Result<()> {
    let mut last_commit = Instant::now() - interval;
    // Once a batch is not fully acknowledged, no later offset may be committed: it would skip
    // that batch's records.
    let mut broken: Option<Error> = None;
    let mut abandoned = false;
    while let Some(first) = rx.recv().await {
        let waited = Instant::now();
        let mut batches = vec![first];
        // Coalesce batches that are already waiting: one commit covers them all.
        while let Ok(next) = rx.try_recv() {
            batches.push(next);
        }
        for b in batches {
            let produced = b.produced.await;
            if broken.is_some() || abandoned {
                continue;
            }
            match produced {
                Ok(true) => accept(&ownership, b.offsets, &b.epochs),
                Ok(false) => abandoned = true,
                Err(e) => {
                    // A produce task that panicked or was cancelled acknowledged nothing we
                    // can rely on: stop committing; the worker fails and restarts from the
                    // last commit.
                    sm.error("internal");
                    tracing::error!(error = %e, "produce task failed; committing nothing after it");
                    broken = Some(Error::Config(format!("produce task failed: {e}")));
                }
            }
        }
        sm.blocked(waited.elapsed().as_secs_f64());
        // Asynchronous and at most once per interval while running: librdkafka keeps commits
        // in order, failures reach `commit_callback`, and a lost commit only means
        // redelivery (at-least-once). Offset commits are writes on the broker: batching them
        // keeps its load independent of our batch size. The lock is held while the commit is
        // queued so a revocation cannot interleave.
        if last_commit.elapsed() >= interval {
            let own = lock(&ownership);
            if let Some(tpl) = commit_list(&own.acked) {
                last_commit = Instant::now();
                if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    sm.error("commit");
                    tracing::warn!(error = %e, "commit request failed; the next one covers it");
                }
            }
        }
    }
    let acked = lock(&ownership).acked.clone();
    let deadline = drain_deadline
        .get()
        .copied()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(10));
    commit(&consumer, acked, &sm, deadline).await;
    match broken {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Merges a fully acknowledged batch's offsets for the partitions still owned in the epoch
/// the batch was consumed in. Offsets only move forward.
fn accept(ownership: &Shared, offsets: BTreeMap<Tp, i64>, epochs: &HashMap<Tp, u64>) {
    let mut own = lock(ownership);
    for (tp, o) in offsets {
        let current = own.owned.get(&tp).copied();
        if current.is_none() || current != epochs.get(&tp).copied() {
            tracing::debug!(topic = %tp.0, partition = tp.1, offset = o, "result of a revoked assignment; not committed");
            continue;
        }
        let e = own.acked.entry(tp).or_insert(o);
        *e = (*e).max(o);
    }
}

fn commit_list(offsets: &BTreeMap<Tp, i64>) -> Option<TopicPartitionList> {
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

/// Waits for a first message (or shutdown), then fills the batch until it is full, the linger
/// time since the first message has passed, or shutdown comes (a partial batch is still
/// processed and committed). Returns the batch and the assignment epoch of each of its
/// partitions ([`STALE`] when a rebalance happened while it was being filled).
async fn next_batch(
    consumer: &WorkerConsumer,
    max: usize,
    linger: Duration,
    shutdown: &CancellationToken,
    sm: &StageMetrics,
    owners: &Owners,
) -> (Vec<Message>, HashMap<Tp, u64>) {
    let mut batch = Vec::with_capacity(max);
    let mut topic: Option<Arc<str>> = None;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return (batch, HashMap::new()),
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
                    _ = shutdown.cancelled() => return (batch, HashMap::new()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    let generation = owners.rebalances.load(Ordering::SeqCst);
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
            _ = shutdown.cancelled() => break,
        }
    }
    let moved = owners.rebalances.load(Ordering::SeqCst) != generation;
    let own = lock(&owners.ownership);
    let mut epochs = HashMap::new();
    for m in &batch {
        let tp = (m.topic.to_string(), m.partition);
        if epochs.contains_key(&tp) {
            continue;
        }
        let e = match own.owned.get(&tp) {
            Some(&e) if !moved => e,
            _ => STALE,
        };
        epochs.insert(tp, e);
    }
    drop(own);
    (batch, epochs)
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
    use rdkafka::message::Headers as _;
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| {
                    (
                        x.key.to_owned(),
                        bytes::Bytes::copy_from_slice(x.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        first_seen: Some(std::time::Instant::now()),
        topic: t,
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(bytes::Bytes::copy_from_slice),
        value: m.payload().map(bytes::Bytes::copy_from_slice),
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Publishes every record and waits for each acknowledgement, re-sending failed ones with
/// backoff until they are acknowledged: a record is never dropped. Returns `false` only when
/// `abandon` fires first (the end of a drain): then the batch must not be committed.
async fn produce_all(
    producer: FutureProducer,
    records: Vec<Record>,
    sm: StageMetrics,
    rt: flashfit_config::RuntimeConfig,
    batch_started: Instant,
    abandon: CancellationToken,
) -> bool {
    let mut pending: Vec<&Record> = records.iter().collect();
    let mut backoff = crate::Backoff::new(&rt);
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
        let results = tokio::select! {
            r = join_all(sends) => r,
            _ = abandon.cancelled() => {
                tracing::warn!(records = pending.len(), "shutdown deadline: batch not acknowledged; it will be redelivered");
                return false;
            }
        };
        for (r, res) in results {
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
        tokio::select! {
            _ = tokio::time::sleep(backoff.wait()) => {}
            _ = abandon.cancelled() => return false,
        }
        pending = failed;
    }
    sm.batch_duration(batch_started.elapsed().as_secs_f64());
    true
}

/// Commits offsets synchronously (off the reactor), used when draining. A commit refused
/// because the partitions moved to another member is not fatal: they will be redelivered
/// there (at-least-once).
async fn commit(
    consumer: &Arc<WorkerConsumer>,
    offsets: BTreeMap<Tp, i64>,
    sm: &StageMetrics,
    deadline: Instant,
) {
    let Some(tpl) = commit_list(&offsets) else {
        return;
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let c = consumer.clone();
        let tpl2 = tpl.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let res = match tokio::time::timeout(
            left.max(Duration::from_millis(100)),
            tokio::task::spawn_blocking(move || c.commit(&tpl2, CommitMode::Sync)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                sm.error("commit");
                tracing::warn!(
                    "final commit did not finish before the shutdown deadline; these messages will be redelivered"
                );
                return;
            }
        };
        match res {
            Ok(Ok(())) => {
                tracing::debug!(?offsets, "committed");
                return;
            }
            Ok(Err(e)) if attempt < 5 && Instant::now() < deadline => {
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

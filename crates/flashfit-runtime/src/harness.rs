//! Runs a stage with in-memory input and output: no broker. Uses the same [`Processor`] as
//! the Kafka worker, so outcomes, dead letters, statuses and counters are the real ones.

use std::sync::Arc;

use bytes::Bytes;
use flashfit_config::RuntimeConfig;
use tokio_util::sync::CancellationToken;

use crate::{BatchResult, Message, Metrics, Processor, Record, Stage, StageMetrics};

/// What a harness run produced.
#[derive(Debug)]
pub struct HarnessRun {
    pub records: Vec<Record>,
    pub result: BatchResult,
    pub metrics: StageMetrics,
    pub processor: Processor,
}

impl HarnessRun {
    /// Records published to `topic`, in order.
    pub fn on(&self, topic: &str) -> Vec<&Record> {
        self.records.iter().filter(|r| r.topic == topic).collect()
    }
}

/// Feeds `(key, value)` pairs to `stage` as one partition of its input topic, in batches of
/// `cfg.batch_size`.
pub async fn run(
    stage: Arc<dyn Stage>,
    input: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    cfg: RuntimeConfig,
) -> HarnessRun {
    let topic: std::sync::Arc<str> = stage.input_topic().into();
    run_messages(stage, messages(&topic, 0, input), cfg).await
}

/// `(key, value)` pairs as messages of `topic`/`partition` at offsets 0, 1, 2, …
pub fn messages(
    topic: &str,
    partition: i32,
    input: Vec<(Option<Vec<u8>>, Vec<u8>)>,
) -> Vec<Message> {
    let topic: std::sync::Arc<str> = topic.into();
    input
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| Message {
            first_seen: Some(std::time::Instant::now()),
            topic: topic.clone(),
            partition,
            offset: i as i64,
            key: k.map(Bytes::from),
            value: Some(Bytes::from(v)),
            ..Default::default()
        })
        .collect()
}

/// Feeds `messages` (of any topics and partitions, in this order) to `stage` in batches of
/// `cfg.batch_size`.
pub async fn run_messages(
    stage: Arc<dyn Stage>,
    messages: Vec<Message>,
    cfg: RuntimeConfig,
) -> HarnessRun {
    let metrics = Metrics::new().stage(stage.name());
    let processor = Processor::new(
        stage,
        metrics.clone(),
        cfg.clone(),
        &flashfit_schema::Topics::default(),
    );
    let shutdown = CancellationToken::new();
    let mut all = BatchResult::default();
    for chunk in messages.chunks(cfg.batch_size.max(1)) {
        let r = processor.run_batch(chunk.to_vec(), &shutdown).await;
        all.done.extend(r.done);
        all.unfinished.extend(r.unfinished);
    }
    let records = all.records().cloned().collect();
    HarnessRun {
        records,
        result: all,
        metrics,
        processor,
    }
}

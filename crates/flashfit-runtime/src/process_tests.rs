use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use flashfit_schema::Reason;

use super::*;
use crate::Metrics;

/// Fails transiently the first `fail_times` calls for values starting with "flaky", dead-letters
/// values starting with "bad", passes everything else through.
struct Scripted {
    calls: AtomicUsize,
    fail_times: usize,
}

#[async_trait]
impl Stage for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn input_topic(&self) -> &str {
        "in"
    }
    fn output_topics(&self) -> Vec<String> {
        vec!["out".into()]
    }
    fn status_topic(&self) -> Option<&str> {
        Some(flashfit_schema::topics::STATUS)
    }
    fn on_dead_letter(&self, msg: &Message, reason: Reason, message: &str) -> Vec<Emit> {
        crate::failed_upload_status(
            flashfit_schema::topics::STATUS,
            self.name(),
            msg,
            reason,
            message,
        )
    }
    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        batch
            .iter()
            .map(|m| {
                let v = m.payload();
                if v.starts_with(b"flaky") && call < self.fail_times {
                    Outcome::Retry("dependency down".into())
                } else if v.starts_with(b"bad") {
                    Outcome::BadInput {
                        reason: Reason::InvalidEvent,
                        message: "bad".into(),
                    }
                } else {
                    Outcome::Emit(vec![Emit {
                        topic: "out".into(),
                        key: None,
                        value: v.to_vec(),
                    }])
                }
            })
            .collect()
    }
}

fn msgs(values: &[&str]) -> Vec<Message> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Message {
            topic: "in".into(),
            partition: (i % 2) as i32,
            offset: 100 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            ..Default::default()
        })
        .collect()
}

fn fast_cfg() -> RuntimeConfig {
    RuntimeConfig {
        retry_initial_backoff_ms: 1,
        retry_max_backoff_ms: 4,
        ..RuntimeConfig::default()
    }
}

fn processor(fail_times: usize) -> Processor {
    let stage = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        fail_times,
    });
    Processor::new(
        stage,
        Metrics::new().stage("scripted"),
        fast_cfg(),
        &Topics::default(),
    )
}

#[tokio::test]
async fn transient_failures_are_retried_until_they_succeed_never_dead_lettered() {
    let p = processor(3);
    let r = p
        .run_batch(msgs(&["a", "flaky-b", "c"]), &CancellationToken::new())
        .await;
    assert!(r.unfinished.is_empty());
    let outs: Vec<&[u8]> = r.records().map(|r| r.value.as_slice()).collect();
    assert_eq!(outs.len(), 3);
    assert!(outs.contains(&b"flaky-b".as_slice()));
    assert_eq!(p.metrics().count("errors", Some("transient")), 3);
    assert_eq!(p.metrics().count("dead_lettered", Some("invalid_event")), 0);
    // Partition 0 had offsets 100, 102; partition 1 had 101.
    let c = r.commit_offsets();
    assert_eq!(c[&("in".to_owned(), 0)], 103);
    assert_eq!(c[&("in".to_owned(), 1)], 102);
}

#[tokio::test]
async fn shutdown_during_retries_commits_only_below_the_unfinished_message() {
    let p = processor(usize::MAX);
    let token = CancellationToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        t2.cancel();
    });
    // Partition 0: offsets 100 (ok), 102 (flaky), 104 (ok). Partition 1: 101, 103 (ok).
    let r = p
        .run_batch(msgs(&["a", "b", "flaky", "d", "e"]), &token)
        .await;
    assert_eq!(r.unfinished.len(), 1);
    let c = r.commit_offsets();
    assert_eq!(
        c[&("in".to_owned(), 0)],
        102,
        "must not skip the unfinished offset 102"
    );
    assert_eq!(c[&("in".to_owned(), 1)], 104);
}

#[tokio::test]
async fn bad_input_becomes_a_dead_letter_and_a_failed_status() {
    let p = processor(0);
    let r = p
        .run_batch(msgs(&["bad json"]), &CancellationToken::new())
        .await;
    let recs: Vec<&Record> = r.records().collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].topic, "flashfit.dlq.scripted");
    assert_eq!(recs[0].value, b"bad json");
    assert_eq!(recs[0].key.as_deref(), Some(b"k0".as_slice()));
    assert_eq!(recs[1].topic, flashfit_schema::topics::STATUS);
    let s: flashfit_schema::StatusEvent = serde_json::from_slice(&recs[1].value).expect("status");
    assert_eq!(s.status, flashfit_schema::Status::Failed);
    assert_eq!(s.stage, "scripted");
}

/// Issue 13: the runtime knows no status contract. A stage that does not process uploads
/// (feedback, KPI, deletes) dead-letters bad input without a `failed` upload status.
#[tokio::test]
async fn a_stage_without_a_status_topic_dead_letters_without_a_status() {
    struct Events;
    #[async_trait]
    impl Stage for Events {
        fn name(&self) -> &str {
            "events"
        }
        fn input_topic(&self) -> &str {
            "in"
        }
        fn output_topics(&self) -> Vec<String> {
            Vec::new()
        }
        async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
            batch
                .iter()
                .map(|_| Outcome::BadInput {
                    reason: Reason::InvalidEvent,
                    message: "not an event".into(),
                })
                .collect()
        }
    }
    let metrics = Metrics::new();
    let p = Processor::new(
        std::sync::Arc::new(Events),
        metrics.stage("events"),
        RuntimeConfig::default(),
        &flashfit_schema::Topics::default(),
    );
    let r = p
        .run_batch(msgs(&["x", "y"]), &CancellationToken::new())
        .await;
    let topics: Vec<&str> = r.records().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, vec!["flashfit.dlq.events", "flashfit.dlq.events"]);
    assert!(
        metrics
            .encode()
            .contains(r#"flashfit_status_events_total{stage="events",status="failed"} 0"#),
        "{}",
        metrics.encode()
    );
}

#[test]
fn the_dead_letter_guard_slides_over_its_window() {
    let cfg = RuntimeConfig {
        dlq_window: 10,
        dlq_min_messages: 5,
        dlq_max_ratio: 0.5,
        ..RuntimeConfig::default()
    };
    let mut g = DlqGuard::new(&cfg);
    for _ in 0..4 {
        g.record(true);
    }
    assert_eq!(g.tripped(), None, "below the minimum sample");
    g.record(true);
    assert_eq!(g.tripped(), Some(1.0));
    for _ in 0..10 {
        g.record(false);
    }
    assert_eq!(g.tripped(), None, "old failures slid out of the window");
    for _ in 0..5 {
        g.record(true);
    }
    assert_eq!(g.tripped(), None, "exactly at the limit is allowed");
    g.record(true);
    assert!(g.tripped().is_some());
}

/// A batch model: one "poison" message fails the whole call it is in (as a model error does
/// for its batch); a stage bug returns one outcome too few for any batch holding "short".
struct BatchModel {
    calls: AtomicUsize,
}

#[async_trait]
impl Stage for BatchModel {
    fn name(&self) -> &str {
        "model"
    }
    fn input_topic(&self) -> &str {
        "in"
    }
    fn output_topics(&self) -> Vec<String> {
        vec!["out".into()]
    }
    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if batch.iter().any(|m| m.payload() == b"poison") {
            return vec![Outcome::Internal("inference failed".into()); batch.len()];
        }
        let n = if batch.iter().any(|m| m.payload() == b"short") {
            batch.len() - 1
        } else {
            batch.len()
        };
        (0..n)
            .map(|_| {
                Outcome::Emit(vec![Emit {
                    topic: "out".into(),
                    key: None,
                    value: b"ok".to_vec(),
                }])
            })
            .collect()
    }
}

fn model_processor(cfg: RuntimeConfig) -> (Processor, Arc<BatchModel>, crate::StageMetrics) {
    let stage = Arc::new(BatchModel {
        calls: AtomicUsize::new(0),
    });
    let m = Metrics::new().stage("model");
    (
        Processor::new(stage.clone(), m.clone(), cfg, &Topics::default()),
        stage,
        m,
    )
}

/// Issue 12, defect 4: one poison message in a batch of 16 is isolated by splitting, tried
/// `max_attempts` times, dead-lettered `internal` with the error; the other 15 are emitted.
#[tokio::test]
async fn a_poison_message_is_isolated_bounded_and_dead_lettered_while_the_rest_proceed() {
    let cfg = RuntimeConfig {
        max_attempts: 3,
        ..fast_cfg()
    };
    let (p, stage, metrics) = model_processor(cfg);
    let mut values = vec!["good"; 16];
    values[11] = "poison";
    let r = p.run_batch(msgs(&values), &CancellationToken::new()).await;
    assert!(r.unfinished.is_empty());
    assert_eq!(r.done.len(), 16);
    let poison = r
        .done
        .iter()
        .find(|(m, _)| m.offset == 111)
        .expect("poison");
    let dlq = &poison.1[0];
    assert_eq!(dlq.topic, "flashfit.dlq.model");
    let kind = dlq.headers.iter().find(|(k, _)| *k == headers::ERROR_KIND);
    assert_eq!(kind.map(|(_, v)| v.as_str()), Some("internal"));
    let msg = dlq
        .headers
        .iter()
        .find(|(k, _)| *k == headers::ERROR_MESSAGE);
    assert!(msg.is_some_and(|(_, v)| v.contains("inference failed") && v.contains("3 attempts")));
    let emitted = r
        .done
        .iter()
        .filter(|(_, recs)| recs.iter().any(|x| x.topic == "out"))
        .count();
    assert_eq!(emitted, 15);
    assert_eq!(metrics.count("dead_lettered", Some("internal")), 1);
    // log2(16) splits to isolate it, then the bounded attempts: far from retrying forever.
    let calls = stage.calls.load(Ordering::SeqCst);
    assert!(calls <= 2 * 4 + 3 + 1, "{calls} calls");
    assert_eq!(r.commit_offsets()[&("in".to_string(), 1)], 116);
}

/// A stage returning the wrong number of outcomes is a bug: bounded like any internal failure,
/// never a partition blocked forever.
#[tokio::test]
async fn a_wrong_outcome_count_is_bounded_too() {
    let (p, _, metrics) = model_processor(RuntimeConfig {
        max_attempts: 2,
        ..fast_cfg()
    });
    let r = p
        .run_batch(msgs(&["good", "short", "good"]), &CancellationToken::new())
        .await;
    assert!(r.unfinished.is_empty());
    assert_eq!(r.done.len(), 3);
    assert!(metrics.count("dead_lettered", Some("internal")) >= 1);
}

/// A message retried past `stuck_after_ms` marks the stage degraded (for `/health`) and shows
/// its age; both clear once it is through.
#[tokio::test]
async fn a_stuck_partition_is_reported_degraded_until_it_moves() {
    let stage = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        fail_times: 40,
    });
    let metrics = Metrics::new();
    let cfg = RuntimeConfig {
        stuck_after_ms: 20,
        retry_initial_backoff_ms: 5,
        retry_max_backoff_ms: 5,
        ..RuntimeConfig::default()
    };
    let p = Arc::new(Processor::new(
        stage,
        metrics.stage("scripted"),
        cfg,
        &Topics::default(),
    ));
    let p2 = p.clone();
    let run = tokio::spawn(async move {
        p2.run_batch(msgs(&["flaky"]), &CancellationToken::new())
            .await
    });
    let mut seen = false;
    for _ in 0..200 {
        if !metrics.degraded().is_empty() {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(seen, "never reported degraded");
    assert!(
        metrics
            .encode()
            .contains("flashfit_oldest_stuck_message_seconds")
    );
    let r = run.await.expect("join");
    assert_eq!(r.done.len(), 1);
    assert!(metrics.degraded().is_empty(), "degraded after it moved");
}

/// No message holds a partition for ever: a transient failure that outlasts `max_retry_ms`
/// (counted from when the worker received the message) is dead-lettered with its last error,
/// and the rest of the batch is not held back by it.
#[tokio::test]
async fn a_transient_failure_is_dead_lettered_once_it_outlasts_max_retry_ms() {
    let stage = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        fail_times: usize::MAX,
    });
    let cfg = RuntimeConfig {
        max_retry_ms: 200,
        ..fast_cfg()
    };
    let p = Processor::new(
        stage,
        Metrics::new().stage("scripted"),
        cfg,
        &Topics::default(),
    );
    let mut batch = msgs(&["a", "flaky", "c"]);
    for m in &mut batch {
        m.first_seen = Some(std::time::Instant::now());
    }
    let r = p.run_batch(batch, &CancellationToken::new()).await;
    assert!(r.unfinished.is_empty());
    assert_eq!(p.metrics().count("dead_lettered", Some("internal")), 1);
    let dlq: Vec<_> = r
        .records()
        .filter(|r| r.topic == Topics::default().dlq("scripted"))
        .collect();
    assert_eq!(dlq.len(), 1, "{:?}", r.records().collect::<Vec<_>>());
    let why = dlq[0]
        .headers
        .iter()
        .find(|(k, _)| *k == flashfit_schema::headers::ERROR_MESSAGE)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(why.contains("dependency down"), "{why}");
    let c = r.commit_offsets();
    assert_eq!(
        c[&("in".to_owned(), 1)],
        102,
        "the dead letter is committed past"
    );
}

//! Reading topics from the outside, as an upload service or a test does: a tail on a topic
//! from the beginning (fresh consumer group), and a status watcher built on it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use flashfit_config::KafkaConfig;
use flashfit_runtime::kafka;
use flashfit_schema::{StatusEvent, Topics};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};

use crate::Result;

/// Reads a topic from its beginning with a fresh consumer group.
pub struct TopicTail {
    consumer: StreamConsumer,
}

impl std::fmt::Debug for TopicTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicTail")
    }
}

impl TopicTail {
    pub fn new(k: &KafkaConfig, topic: &str) -> Result<Self> {
        let group = format!("flashfit-tail-{}", uuid::Uuid::new_v4());
        let consumer: StreamConsumer = kafka::consumer_config(k, &group, 60_000)?.create()?;
        consumer.subscribe(&[topic])?;
        Ok(TopicTail { consumer })
    }

    /// The next message, or `None` after `timeout`.
    pub async fn recv(&self, timeout: Duration) -> Option<OwnedMessage> {
        match tokio::time::timeout(timeout, self.consumer.recv()).await {
            Ok(Ok(m)) => Some(m.detach()),
            _ => None,
        }
    }

    /// Messages until `done` says stop or `timeout` passes.
    pub async fn collect_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[OwnedMessage]) -> bool,
    ) -> Vec<OwnedMessage> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while !done(&out) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(m) = self.recv(left).await {
                out.push(m);
            }
        }
        out
    }
}

/// A header's value as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Waits for the terminal status of given uploads.
#[derive(Debug)]
pub struct StatusWatcher {
    tail: TopicTail,
}

impl StatusWatcher {
    pub fn new(k: &KafkaConfig) -> Result<Self> {
        Ok(StatusWatcher {
            tail: TopicTail::new(k, &Topics::new(k.topic_prefix.clone()).status())?,
        })
    }

    /// Collects the first status of each id in `event_ids` (calling `on_status` for each new
    /// one) until all have one or `timeout` passes. Duplicates (at-least-once) are ignored.
    pub async fn wait_for(
        &self,
        event_ids: &HashSet<String>,
        timeout: Duration,
        mut on_status: impl FnMut(&StatusEvent),
    ) -> HashMap<String, StatusEvent> {
        let deadline = Instant::now() + timeout;
        let mut seen: HashMap<String, StatusEvent> = HashMap::new();
        while seen.len() < event_ids.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(m) = self.tail.recv(left).await else {
                break;
            };
            let Some(Ok(s)) = m.payload().map(serde_json::from_slice::<StatusEvent>) else {
                continue;
            };
            if let Some(id) = &s.event_id
                && event_ids.contains(id)
                && !seen.contains_key(id)
            {
                on_status(&s);
                seen.insert(id.clone(), s);
            }
        }
        seen
    }
}

/// Waits until `group` has committed everything in `topics` (lag 0, against ends checked by
/// reading: see [`crate::offsets::ends`]) or `timeout` passes; returns the last lag seen.
pub async fn wait_caught_up(
    k: &KafkaConfig,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let lag = crate::lag::total(k, group, topics).await?;
        if lag == 0 || Instant::now() >= deadline {
            return Ok(lag);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints each upload's status as one JSON line (with its `image_uri`) as it arrives, then a
/// summary on stderr; an error names how many got none within `timeout` seconds.
pub async fn print_statuses(
    w: &StatusWatcher,
    events: &[flashfit_schema::UploadEvent],
    timeout: u64,
) -> Result<()> {
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let uri_of = |id: &str| {
        events
            .iter()
            .find(|e| e.event_id == id)
            .map(|e| e.image_uri.clone())
            .unwrap_or_default()
    };
    let seen = w
        .wait_for(&ids, Duration::from_secs(timeout), |s| {
            let id = s.event_id.clone().unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({"image_uri": uri_of(&id), "status": s})
            );
        })
        .await;
    let count = |st: &str| seen.values().filter(|s| s.status.as_str() == st).count();
    eprintln!(
        "statuses: {} of {} ({} processed, {} rejected, {} failed)",
        seen.len(),
        ids.len(),
        count("processed"),
        count("rejected"),
        count("failed")
    );
    if seen.len() < ids.len() {
        return Err(crate::Error::Invalid(format!(
            "{} uploads got no status within {timeout}s",
            ids.len() - seen.len()
        )));
    }
    Ok(())
}

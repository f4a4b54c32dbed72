//! Data engineers' dead-letter tools (issue 14): `flashfit dlq list` (counts by stage and
//! reason, and the last dead letters with their headers) and `flashfit dlq redrive` (republish
//! each dead letter's key and value to its `flashfit.source.topic`, with a header naming the
//! redrive). A redrive keeps its own committed position on the dead-letter topic (consumer
//! group `<group_prefix>-redrive-<stage>[-<reason>]`), so running the same redrive again
//! republishes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flashfit_config::KafkaConfig;
use flashfit_runtime::kafka;
use flashfit_schema::{StageName, Topics, headers};
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Serialize;

use crate::{Error, Result};

/// Header a redriven record carries: which redrive sent it (`<group>@<RFC 3339 time>`).
pub const REDRIVE_HEADER: &str = "flashfit.redrive";
/// Header a redriven record carries: where its dead letter was (`<topic>/<partition>/<offset>`).
pub const REDRIVE_FROM_HEADER: &str = "flashfit.redrive.from";

/// Which dead letters a command is about.
#[derive(Debug, Clone, Default)]
pub struct DlqFilter {
    /// A stage (or funnel sink) name; every stage's topic when `None`.
    pub stage: Option<String>,
    /// A reason name (`not_found`, `invalid_event`, …).
    pub reason: Option<String>,
    /// Dead letters written at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// One dead letter, as `dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub time: Option<String>,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// What `dlq list` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    /// Dead letters read (before the filter).
    pub read: u64,
    /// `(stage, reason)` → count, of those matching the filter.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// The last matching dead letters, newest last.
    pub last: Vec<DeadLetter>,
}

/// What `dlq redrive` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Redrive {
    pub group: String,
    pub read: u64,
    pub republished: u64,
    /// Read but not matching the filter (or without a source topic): passed over.
    pub skipped: u64,
    /// Target topic → records republished there.
    pub targets: BTreeMap<String, u64>,
    pub dry_run: bool,
}

fn header_map(m: &rdkafka::message::BorrowedMessage<'_>) -> BTreeMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|x| {
                    (
                        x.key.to_owned(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn time_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<DateTime<Utc>> {
    m.timestamp()
        .to_millis()
        .and_then(DateTime::from_timestamp_millis)
}

impl DlqFilter {
    /// A filter from the command line (`since` in RFC 3339).
    pub fn new(stage: Option<String>, reason: Option<String>, since: Option<&str>) -> Result<Self> {
        let since = since
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        Error::Invalid(format!(
                            "--since `{s}`: {e} (RFC 3339, e.g. 2026-12-03T10:00:00Z)"
                        ))
                    })
            })
            .transpose()?;
        Ok(DlqFilter {
            stage,
            reason,
            since,
        })
    }

    fn matches(&self, headers_: &BTreeMap<String, String>, at: Option<DateTime<Utc>>) -> bool {
        let is = |name: &str, want: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| headers_.get(name).is_some_and(|v| v == w))
        };
        is(headers::STAGE, &self.stage)
            && is(headers::ERROR_KIND, &self.reason)
            && self.since.is_none_or(|s| at.is_some_and(|t| t >= s))
    }

    /// The dead-letter topics the filter reads: the stage's, or every stage's and funnel
    /// sink's.
    fn topics(&self, k: &KafkaConfig) -> Vec<String> {
        let topics = Topics::new(k.topic_prefix.clone());
        match &self.stage {
            Some(s) => vec![topics.dlq(s)],
            None => StageName::ALL
                .iter()
                .map(|s| s.as_str())
                .chain(["statuses", "dead_letters", "feedback_events"])
                .map(|s| topics.dlq(s))
                .collect(),
        }
    }
}

/// The topics among `wanted` that exist (reading never creates one).
fn existing(k: &KafkaConfig, wanted: Vec<String>) -> Result<Vec<String>> {
    use rdkafka::consumer::BaseConsumer;
    let c: BaseConsumer = kafka::consumer_config(k, "flashfit-dlq-metadata", 0)?.create()?;
    let md = c.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(wanted
        .into_iter()
        .filter(|t| {
            md.topics()
                .iter()
                .any(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty())
        })
        .collect())
}

/// Assigns every partition of `topics` to `consumer` without joining its group (no rebalance
/// wait): from the group's committed offsets when `resume`, else from the beginning.
fn assign(consumer: &StreamConsumer, topics: &[String], resume: bool) -> Result<()> {
    use rdkafka::{Offset, TopicPartitionList};
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(None, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in md
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|x| x == t.name()))
    {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
        }
    }
    if resume {
        let committed = consumer.committed_offsets(tpl.clone(), timeout)?;
        for e in committed.elements() {
            if let Offset::Offset(n) = e.offset() {
                tpl.set_partition_offset(e.topic(), e.partition(), Offset::Offset(n))?;
            }
        }
    }
    consumer.assign(&tpl)?;
    Ok(())
}

/// Reads the assigned partitions until nothing more arrives: 5 s for the first message, then
/// 2 s of silence.
async fn drain(
    consumer: &StreamConsumer,
    mut on: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<()>,
) -> Result<()> {
    let mut wait = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => {
                on(&m)?;
                wait = Duration::from_secs(2);
            }
        }
    }
}

/// Counts dead letters by stage and reason and keeps the last `last_n` that match `filter`.
pub async fn list(k: &KafkaConfig, filter: &DlqFilter, last_n: usize) -> Result<Listing> {
    let topics = existing(k, filter.topics(k))?;
    let mut out = Listing::default();
    if topics.is_empty() {
        return Ok(out);
    }
    let group = format!("flashfit-dlq-list-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = kafka::consumer_config(k, &group, 0)?.create()?;
    assign(&consumer, &topics, false)?;
    drain(&consumer, |m| {
        out.read += 1;
        let h = header_map(m);
        let at = time_of(m);
        if filter.matches(&h, at) {
            let get = |n: &str| h.get(n).cloned().unwrap_or_else(|| "?".into());
            *out.counts
                .entry(get(headers::STAGE))
                .or_default()
                .entry(get(headers::ERROR_KIND))
                .or_default() += 1;
            out.last.push(DeadLetter {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                time: at.map(flashfit_schema::format_ts),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers: h,
            });
            if out.last.len() > last_n {
                out.last.remove(0);
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Republishes the dead letters of `filter.stage` that match the filter to their source
/// topics, committing its position after each acknowledged record (a crash mid-redrive
/// republishes at most the record in flight again). `dry_run` reads and counts without
/// publishing or committing.
pub async fn redrive(k: &KafkaConfig, filter: &DlqFilter, dry_run: bool) -> Result<Redrive> {
    let stage = filter
        .stage
        .as_deref()
        .ok_or_else(|| Error::Invalid("a redrive needs --stage".into()))?;
    let group = format!(
        "{}-redrive-{stage}{}",
        k.group_prefix,
        filter
            .reason
            .as_deref()
            .map(|r| format!("-{r}"))
            .unwrap_or_default()
    );
    let mut out = Redrive {
        group: group.clone(),
        dry_run,
        ..Redrive::default()
    };
    let topics = existing(k, filter.topics(k))?;
    if topics.is_empty() {
        return Ok(out);
    }
    let consumer: StreamConsumer = kafka::consumer_config(k, &group, 0)?.create()?;
    assign(&consumer, &topics, true)?;
    let producer = kafka::producer(k)?;
    let id = format!("{group}@{}", flashfit_schema::format_ts(Utc::now()));
    let mut wait = Duration::from_secs(5);
    let started = Instant::now();
    loop {
        let m = match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        wait = Duration::from_secs(2);
        out.read += 1;
        let h = header_map(&m);
        let target = h.get(headers::SOURCE_TOPIC).cloned();
        match target.filter(|_| filter.matches(&h, time_of(&m))) {
            Some(target) if !dry_run => {
                let from = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
                let hs = OwnedHeaders::new()
                    .insert(Header {
                        key: REDRIVE_HEADER,
                        value: Some(id.as_str()),
                    })
                    .insert(Header {
                        key: REDRIVE_FROM_HEADER,
                        value: Some(from.as_str()),
                    });
                let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target).headers(hs);
                if let Some(key) = m.key() {
                    rec = rec.key(key);
                }
                if let Some(value) = m.payload() {
                    rec = rec.payload(value);
                }
                producer
                    .send(rec, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| Error::Kafka(e))?;
                *out.targets.entry(target).or_default() += 1;
                out.republished += 1;
            }
            Some(target) => {
                *out.targets.entry(target).or_default() += 1;
                out.republished += 1;
            }
            None => out.skipped += 1,
        }
        if !dry_run {
            consumer.commit_message(&m, CommitMode::Sync)?;
        }
        if out.read.is_multiple_of(1000) {
            tracing::info!(
                read = out.read,
                republished = out.republished,
                seconds = started.elapsed().as_secs(),
                "redriving"
            );
        }
    }
    Ok(out)
}

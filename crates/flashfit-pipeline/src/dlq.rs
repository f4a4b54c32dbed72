//! Data engineers' dead-letter tools (issue 14): `flashfit dlq list` (counts by stage and
//! reason, and the last dead letters with their headers) and `flashfit dlq redrive` (republish
//! each dead letter's key and value to its `flashfit.source.topic`, with a header naming the
//! redrive). A redrive keeps its own committed position on the dead-letter topic, one
//! consumer group per stage and reason (`<group_prefix>-redrive-<stage>-<reason>`), so running
//! a redrive again republishes nothing and no dead letter is republished twice, whatever mix
//! of `--reason` filters is used.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashfit_config::KafkaConfig;
use flashfit_runtime::kafka;
use flashfit_schema::{Topics, headers};
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Serialize;

use crate::progress::Progress;
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
    /// Of the filter's reason(s) but not matching it otherwise (before `--since`, no source
    /// topic): passed over for good by that reason's group.
    pub skipped: u64,
    /// Matching, but the original value was not kept (over `runtime.max_record_bytes`): see
    /// the dead letter's message for where the original is.
    pub unredrivable: u64,
    /// Target topic → records republished there.
    pub targets: BTreeMap<String, u64>,
    pub dry_run: bool,
}

impl std::fmt::Display for Redrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {} of {} dead letters read (groups {}-<reason>; {} passed over, {} without \
             their original value)",
            if self.dry_run {
                "would republish"
            } else {
                "republished"
            },
            self.republished,
            self.read,
            self.group,
            self.skipped,
            self.unredrivable,
        )?;
        for (topic, n) in &self.targets {
            writeln!(f, "  {n} to {topic}")?;
        }
        Ok(())
    }
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
            None => crate::dlq_topics(&topics),
        }
    }
}

/// The topics among `wanted` that exist (reading never creates one).
fn existing(k: &KafkaConfig, wanted: Vec<String>) -> Result<Vec<String>> {
    let (tps, _) = crate::offsets::existing_partitions(k, &wanted)?;
    let mut topics: Vec<String> = tps.into_iter().map(|(t, _)| t).collect();
    topics.dedup();
    Ok(topics)
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
/// topics. Each reason has its own consumer group (`<group_prefix>-redrive-<stage>-<reason>`;
/// without `--reason`, every reason's group in turn), so whatever mix of redrives runs, each
/// dead letter is republished at most once. A pass reads only up to the end offsets it found
/// at start: a redriven record that fails again and comes back is left for the next redrive,
/// never looped on. Dead letters whose original value was not kept (over
/// `runtime.max_record_bytes`) are reported, not republished. The position is committed after
/// each acknowledged record (a crash republishes at most the record in flight again);
/// `dry_run` reads and counts without publishing or committing.
pub async fn redrive(
    k: &KafkaConfig,
    filter: &DlqFilter,
    dry_run: bool,
    progress: &mut Progress,
) -> Result<Redrive> {
    let stage = filter
        .stage
        .as_deref()
        .ok_or_else(|| Error::Invalid("a redrive needs --stage".into()))?;
    let reasons: Vec<String> = match &filter.reason {
        Some(r) => vec![r.clone()],
        None => flashfit_schema::Reason::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
    };
    let mut out = Redrive {
        group: format!("{}-redrive-{stage}", k.group_prefix),
        dry_run,
        ..Redrive::default()
    };
    let (tps, _) = crate::offsets::existing_partitions(k, &filter.topics(k))?;
    if tps.is_empty() {
        return Ok(out);
    }
    let mut topics: Vec<String> = tps.iter().map(|(t, _)| t.clone()).collect();
    topics.dedup();
    let producer = kafka::producer(k)?;
    let id = format!("{}@{}", out.group, flashfit_schema::format_ts(Utc::now()));
    // Where each partition ends now, checked against the messages (the broker's high
    // watermark can be wrong: Tansu after a produce batch).
    let ends = crate::offsets::ends(k, &tps).await?;
    for reason in reasons {
        let group = format!("{}-{reason}", out.group);
        let only = DlqFilter {
            reason: Some(reason),
            ..filter.clone()
        };
        pass(
            k, &group, &topics, &ends, &only, dry_run, &producer, &id, &mut out, progress,
        )
        .await?;
    }
    progress.finish();
    Ok(out)
}

/// One reason's redrive: from its group's committed offsets to the end offsets at start.
#[allow(clippy::too_many_arguments)]
async fn pass(
    k: &KafkaConfig,
    group: &str,
    topics: &[String],
    ends: &BTreeMap<crate::offsets::Tp, crate::offsets::End>,
    filter: &DlqFilter,
    dry_run: bool,
    producer: &rdkafka::producer::FutureProducer,
    id: &str,
    out: &mut Redrive,
    progress: &mut Progress,
) -> Result<()> {
    let consumer: StreamConsumer = kafka::consumer_config(k, group, 0)?.create()?;
    assign(&consumer, topics, true)?;
    // Where this group starts, and where each partition ended when the redrive started.
    let mut left: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for e in consumer.assignment()?.elements() {
        let high = ends
            .get(&(e.topic().to_owned(), e.partition()))
            .map_or(0, |end| end.offset);
        let start = match e.offset() {
            rdkafka::Offset::Offset(n) => n,
            _ => 0,
        };
        if high > start {
            left.insert((e.topic().to_owned(), e.partition()), high);
        }
    }
    while !left.is_empty() {
        let m = match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            // Nothing more although the watermark said so (Tansu can report a wrong one).
            Err(_) => break,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        let key = (m.topic().to_owned(), m.partition());
        let Some(&end) = left.get(&key) else {
            continue;
        };
        if m.offset() >= end {
            left.remove(&key);
            continue;
        }
        if m.offset() + 1 >= end {
            left.remove(&key);
        }
        let h = header_map(&m);
        if h.get(headers::ERROR_KIND).map(String::as_str) != filter.reason.as_deref() {
            // Another reason's: its own group redrives it. Passed over with an asynchronous
            // commit (a crash before it lands only means reading it again).
            if !dry_run {
                consumer.commit_message(&m, CommitMode::Async)?;
            }
            continue;
        }
        out.read += 1;
        let target = h.get(headers::SOURCE_TOPIC).cloned();
        let kept = m.payload().is_some_and(|v| !v.is_empty());
        match target.filter(|_| filter.matches(&h, time_of(&m))) {
            Some(_) if !kept => out.unredrivable += 1,
            Some(target) if !dry_run => {
                let from = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
                let hs = OwnedHeaders::new()
                    .insert(Header {
                        key: REDRIVE_HEADER,
                        value: Some(id),
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
            // After the acknowledgement, before the next: a crash republishes at most this one
            // again.
            consumer.commit_message(&m, CommitMode::Sync)?;
        }
        progress.inc(1);
    }
    if !dry_run && out.read + out.skipped > 0 {
        // The asynchronous commits of passed-over dead letters, made durable.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final redrive commit");
        }
    }
    Ok(())
}

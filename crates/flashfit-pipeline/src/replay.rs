//! `flashfit replay`: a range of a topic, by offset or time, either into a consumer group
//! (its committed offsets set to the start of the range, as `kafka-consumer-groups
//! --reset-offsets` does; refused while the group has live members) or copied into another
//! topic (keys, values, headers and timestamps). Ends and times are checked against the
//! messages ([`crate::offsets`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashfit_config::KafkaConfig;
use flashfit_runtime::kafka;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::offsets::{self, End, Lookup, Method, Tp};
use crate::progress::Progress;
use crate::{Error, Result};

/// A position in a partition, as `--from` and `--to` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Earliest,
    Latest,
    Offset(i64),
    Time(DateTime<Utc>),
}

impl FromStr for Position {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "earliest" => Ok(Position::Earliest),
            "latest" => Ok(Position::Latest),
            _ => {
                if let Ok(o) = s.parse::<i64>() {
                    return if o >= 0 {
                        Ok(Position::Offset(o))
                    } else {
                        Err(Error::Invalid(format!("offset {o} is negative")))
                    };
                }
                DateTime::parse_from_rfc3339(s)
                    .map(|t| Position::Time(t.with_timezone(&Utc)))
                    .map_err(|_| {
                        Error::Invalid(format!(
                            "`{s}` is not earliest, latest, an offset or an RFC 3339 time \
                             (e.g. 2026-12-03T10:00:00Z)"
                        ))
                    })
            }
        }
    }
}

/// Where the range goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Set this consumer group's committed offsets to the start of the range.
    Group(String),
    /// Copy the range into this topic.
    Topic(String),
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub topic: String,
    pub partition: Option<i32>,
    pub from: Position,
    pub to: Position,
    pub target: Target,
    pub dry_run: bool,
    pub lookup: Lookup,
}

/// One partition's range: `start..stop` (stop exclusive).
#[derive(Debug, Clone, Serialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub stop: i64,
    pub start_by: Method,
    pub stop_by: Method,
    /// The group's committed offset before (group replays).
    pub previous: Option<i64>,
    /// The end as checked; `end.reported` differs when the broker's watermark was wrong.
    pub end: End,
    /// Records copied (topic replays).
    pub copied: u64,
}

/// What a replay did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub topic: String,
    pub target: Target,
    pub partitions: Vec<PartitionRange>,
    pub records: u64,
    pub dry_run: bool,
}

impl fmt::Display for Replayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        let total: i64 = self.partitions.iter().map(|p| p.stop - p.start).sum();
        match &self.target {
            Target::Group(g) => writeln!(
                f,
                "{verb} {total} records of {} to group {g} (committed offsets set to the range start)",
                self.topic
            )?,
            Target::Topic(t) => writeln!(
                f,
                "{verb} {} records of {} into {t}",
                if self.dry_run {
                    total as u64
                } else {
                    self.records
                },
                self.topic
            )?,
        }
        for p in &self.partitions {
            write!(
                f,
                "  partition {}: {}..{} (start {}, stop {})",
                p.partition,
                p.start,
                p.stop,
                p.start_by.describe(),
                p.stop_by.describe()
            )?;
            if let Some(prev) = p.previous {
                write!(f, ", was at {prev}")?;
            }
            if !p.end.trusted() {
                write!(
                    f,
                    ", broker reported end {} but messages run to {}: its watermark is wrong",
                    p.end.reported, p.end.offset
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn resolve_error(e: Error, what: &str) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

/// Resolves `pos` in one partition to an offset in `low..=end`.
async fn resolve(
    k: &KafkaConfig,
    tp: &Tp,
    pos: &Position,
    low: i64,
    end: i64,
    lookup: Lookup,
) -> Result<(i64, Method)> {
    Ok(match pos {
        Position::Earliest => (low, Method::Given),
        Position::Latest => (end, Method::Given),
        Position::Offset(o) => ((*o).clamp(low, end), Method::Given),
        Position::Time(t) => {
            offsets::offset_for_time(k, tp, low, end, t.timestamp_millis(), lookup).await?
        }
    })
}

/// Runs a replay (see the module documentation).
pub async fn replay(
    k: &KafkaConfig,
    o: &ReplayOptions,
    progress: &mut Progress,
) -> Result<Replayed> {
    let all = offsets::partitions(k, &o.topic)?;
    let parts: Vec<i32> = match o.partition {
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => {
            return Err(Error::Invalid(format!(
                "topic `{}` has no partition {p} (it has {})",
                o.topic,
                all.len()
            )));
        }
        None => all,
    };
    if let Target::Group(g) = &o.target {
        if o.to != Position::Latest {
            return Err(Error::Invalid(
                "--to is for --into: a group replays from --from to the end".into(),
            ));
        }
        refuse_live_group(k, g)?;
    }
    if let Target::Topic(t) = &o.target
        && *t == o.topic
    {
        return Err(Error::Invalid(
            "--into names the topic being replayed".into(),
        ));
    }
    let tps: Vec<Tp> = parts.iter().map(|p| (o.topic.clone(), *p)).collect();
    let marks = offsets::watermarks(k, &tps)?;
    let ends = offsets::ends(k, &tps).await?;
    // Partitions resolve concurrently (a time search reads a few messages per partition).
    let ranges = futures::future::try_join_all(tps.iter().map(|tp| {
        let low = marks.get(tp).map(|m| m.0).unwrap_or(0);
        let end = ends.get(tp).copied().unwrap_or(End {
            reported: low,
            offset: low,
        });
        async move {
            let (start, start_by) = resolve(k, tp, &o.from, low, end.offset, o.lookup)
                .await
                .map_err(|e| resolve_error(e, "--from"))?;
            let (stop, stop_by) = resolve(k, tp, &o.to, low, end.offset, o.lookup)
                .await
                .map_err(|e| resolve_error(e, "--to"))?;
            Ok::<_, Error>(PartitionRange {
                partition: tp.1,
                start,
                stop: stop.max(start),
                start_by,
                stop_by,
                previous: None,
                end,
                copied: 0,
            })
        }
    }))
    .await?;
    let mut out = Replayed {
        topic: o.topic.clone(),
        target: o.target.clone(),
        partitions: ranges,
        records: 0,
        dry_run: o.dry_run,
    };
    progress.set_total(
        out.partitions
            .iter()
            .map(|p| (p.stop - p.start) as u64)
            .sum(),
    );
    match &o.target {
        Target::Group(g) => reset_group(k, g, &o.topic, &mut out)?,
        Target::Topic(t) if !o.dry_run => copy(k, &o.topic, t, &mut out, progress).await?,
        Target::Topic(_) => {}
    }
    progress.finish();
    Ok(out)
}

/// Refuses a group that has live members (their commits would undo the reset).
fn refuse_live_group(k: &KafkaConfig, group: &str) -> Result<()> {
    let c = offsets::reader(k, "groups")?;
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot tell whether group {group} has live members ({e}); refusing to move it"
            ))
        })?;
    if let Some(g) = list
        .groups()
        .iter()
        .find(|g| g.name() == group && !g.members().is_empty())
    {
        return Err(Error::Invalid(format!(
            "group {group} has {} live member(s) ({}; state {}): stop its workers first, or \
             replay --into a topic",
            g.members().len(),
            g.members()
                .iter()
                .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
                .collect::<Vec<_>>()
                .join(", "),
            g.state()
        )));
    }
    Ok(())
}

fn reset_group(k: &KafkaConfig, group: &str, topic: &str, out: &mut Replayed) -> Result<()> {
    let c: StreamConsumer = kafka::consumer_config(k, group, 0)?.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in &out.partitions {
        tpl.add_partition(topic, p.partition);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
    for p in out.partitions.iter_mut() {
        p.previous = committed
            .find_partition(topic, p.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            });
    }
    if out.dry_run {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for p in &out.partitions {
        tpl.add_partition_offset(topic, p.partition, Offset::Offset(p.start))?;
    }
    c.commit(&tpl, CommitMode::Sync)?;
    out.records = out
        .partitions
        .iter()
        .map(|p| (p.stop - p.start) as u64)
        .sum();
    Ok(())
}

/// Copies each partition's range into `into`, waiting for every acknowledgement.
async fn copy(
    k: &KafkaConfig,
    topic: &str,
    into: &str,
    out: &mut Replayed,
    progress: &mut Progress,
) -> Result<()> {
    kafka::ensure_topics(k, &[into.to_owned()]).await?;
    let producer = kafka::producer(k)?;
    let c = offsets::reader(k, "replay")?;
    let mut tpl = TopicPartitionList::new();
    let mut left: BTreeMap<i32, i64> = BTreeMap::new();
    for p in out.partitions.iter().filter(|p| p.stop > p.start) {
        tpl.add_partition_offset(topic, p.partition, Offset::Offset(p.start))?;
        left.insert(p.partition, p.stop);
    }
    if left.is_empty() {
        return Ok(());
    }
    c.assign(&tpl)?;
    let mut pending = Vec::new();
    let mut copied: BTreeMap<i32, u64> = BTreeMap::new();
    while !left.is_empty() {
        let m = match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Err(_) => {
                tracing::warn!(
                    ?left,
                    "no message for 10 s before the range's end; stopping"
                );
                break;
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        let Some(&stop) = left.get(&m.partition()) else {
            continue;
        };
        if m.offset() >= stop {
            left.remove(&m.partition());
            continue;
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(into);
        if let Some(key) = m.key() {
            rec = rec.key(key);
        }
        if let Some(v) = m.payload() {
            rec = rec.payload(v);
        }
        if let Some(h) = m.headers() {
            rec = rec.headers(h.detach());
        }
        if let Some(ts) = m.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((e, r)) => {
                    if pending.is_empty() {
                        return Err(e.into());
                    }
                    // The producer's queue is full: wait for what is in flight.
                    acknowledge(&mut pending).await?;
                    rec = r;
                }
            }
        }
        *copied.entry(m.partition()).or_default() += 1;
        progress.inc(1);
        if pending.len() >= 1000 {
            acknowledge(&mut pending).await?;
        }
        if m.offset() + 1 >= stop {
            left.remove(&m.partition());
        }
    }
    acknowledge(&mut pending).await?;
    for p in out.partitions.iter_mut() {
        p.copied = copied.get(&p.partition).copied().unwrap_or(0);
    }
    out.records = copied.values().sum();
    Ok(())
}

async fn acknowledge(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) -> Result<()> {
    for r in futures::future::join_all(pending.drain(..)).await {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(Error::Invalid("a delivery was cancelled".into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_or_say_what_is_accepted() {
        assert_eq!(
            "earliest".parse::<Position>().ok(),
            Some(Position::Earliest)
        );
        assert_eq!("latest".parse::<Position>().ok(), Some(Position::Latest));
        assert_eq!("42".parse::<Position>().ok(), Some(Position::Offset(42)));
        assert!(matches!(
            "2026-12-03T10:00:00+01:00".parse::<Position>(),
            Ok(Position::Time(t)) if t.to_rfc3339() == "2026-12-03T09:00:00+00:00"
        ));
        let e = "yesterday".parse::<Position>().expect_err("bad");
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        assert!("-3".parse::<Position>().is_err());
    }
}

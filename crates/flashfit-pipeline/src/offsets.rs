//! Positions in topic partitions for the data engineers' tools (`replay`, `lag`), checked
//! against the messages instead of trusted blindly: a partition's end is the broker's high
//! watermark only if nothing is found at it (the Tansu build in the test stack reports a
//! wrong one after a produce batch of large records), and a time resolves to the broker's
//! offsets-for-times answer only if the messages around it agree (Tansu's is unreliable);
//! otherwise by a binary search over message timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

use flashfit_config::KafkaConfig;
use flashfit_runtime::kafka;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::Serialize;

use crate::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A topic partition.
pub type Tp = (String, i32);

/// A message found at a position: its offset and broker/create time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub ts_ms: Option<i64>,
}

/// A partition's end offset (one past the last message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct End {
    /// The broker's high watermark.
    pub reported: i64,
    /// The end found by reading at the watermark: equal to `reported` when it can be trusted.
    pub offset: i64,
}

impl End {
    pub fn trusted(&self) -> bool {
        self.offset == self.reported
    }
}

/// How a time was resolved to an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The position was given as an offset, `earliest` or `latest`.
    Given,
    /// The broker's offsets-for-times answer, checked against the messages around it.
    Broker,
    /// A binary search over message timestamps (the broker's answer was wrong or not asked).
    Search,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::Given => "as given",
            Method::Broker => "by the broker's offsets-for-times",
            Method::Search => "by searching message times",
        }
    }
}

/// How to resolve times: ask the broker and check (`Auto`), or search the messages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lookup {
    #[default]
    Auto,
    Search,
}

/// A consumer that never joins or commits (a throwaway group id), for reading positions.
/// Out-of-range positions go to the end, not the start.
pub(crate) fn reader(k: &KafkaConfig, what: &str) -> Result<StreamConsumer> {
    let group = format!("flashfit-{what}-{}", uuid::Uuid::new_v4());
    let mut c = kafka::consumer_config(k, &group, 0)?;
    c.set("auto.offset.reset", "latest");
    Ok(c.create()?)
}

/// The partitions of `topic`; an error naming the topic when it does not exist.
pub fn partitions(k: &KafkaConfig, topic: &str) -> Result<Vec<i32>> {
    let c = reader(k, "metadata")?;
    let md = c.fetch_metadata(Some(topic), TIMEOUT)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| Error::Invalid(format!("topic `{topic}` does not exist")))?;
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort();
    Ok(ps)
}

/// The partitions of those `topics` that exist, from one metadata request, and the topics
/// that do not (reading never creates a topic).
pub fn existing_partitions(k: &KafkaConfig, topics: &[String]) -> Result<(Vec<Tp>, Vec<String>)> {
    let c = reader(k, "metadata")?;
    let md = c.fetch_metadata(None, TIMEOUT)?;
    let mut tps = Vec::new();
    let mut missing = Vec::new();
    for t in topics {
        match md
            .topics()
            .iter()
            .find(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty())
        {
            Some(m) => tps.extend(m.partitions().iter().map(|p| (t.clone(), p.id()))),
            None => missing.push(t.clone()),
        }
    }
    tps.sort();
    tps.dedup();
    missing.sort();
    missing.dedup();
    Ok((tps, missing))
}

/// The first message at or after each start position, read within `wait`: partitions with
/// nothing there are absent from the answer.
pub async fn first_at(
    k: &KafkaConfig,
    starts: &[(Tp, i64)],
    wait: Duration,
) -> Result<BTreeMap<Tp, Seen>> {
    let mut out = BTreeMap::new();
    if starts.is_empty() {
        return Ok(out);
    }
    let c = reader(k, "probe")?;
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in starts {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    c.assign(&tpl)?;
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < starts.len() {
        let m = match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        let tp = (m.topic().to_owned(), m.partition());
        let from = starts.iter().find(|(x, _)| *x == tp).map(|(_, o)| *o);
        if from.is_some_and(|o| m.offset() >= o) && !out.contains_key(&tp) {
            out.insert(
                tp,
                Seen {
                    offset: m.offset(),
                    ts_ms: m.timestamp().to_millis(),
                },
            );
        }
    }
    Ok(out)
}

/// The (low, high) watermarks the broker reports.
pub fn watermarks(k: &KafkaConfig, tps: &[Tp]) -> Result<BTreeMap<Tp, (i64, i64)>> {
    let c = reader(k, "watermarks")?;
    tps.iter()
        .map(|(t, p)| Ok(((t.clone(), *p), c.fetch_watermarks(t, *p, TIMEOUT)?)))
        .collect()
}

/// Each partition's end, checked: the consumer reads at the reported high watermark; a
/// message there means the watermark was wrong (unless a fresh watermark covers it: live
/// traffic), and the end is found by reading on until the partition is idle.
pub async fn ends(k: &KafkaConfig, tps: &[Tp]) -> Result<BTreeMap<Tp, End>> {
    let marks = watermarks(k, tps)?;
    let mut out: BTreeMap<Tp, End> = marks
        .iter()
        .map(|(tp, (_, high))| {
            (
                tp.clone(),
                End {
                    reported: *high,
                    offset: *high,
                },
            )
        })
        .collect();
    if tps.is_empty() {
        return Ok(out);
    }
    let c = reader(k, "ends")?;
    let mut tpl = TopicPartitionList::new();
    for ((t, p), (_, high)) in &marks {
        tpl.add_partition_offset(t, *p, Offset::Offset(*high))?;
    }
    c.assign(&tpl)?;
    // 1.5 s for anything at the watermarks, then until 1 s without a message.
    let mut wait = Duration::from_millis(1500);
    let mut beyond: BTreeMap<Tp, i64> = BTreeMap::new();
    loop {
        let m = match tokio::time::timeout(wait, c.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        wait = Duration::from_secs(1);
        let tp = (m.topic().to_owned(), m.partition());
        if marks.get(&tp).is_some_and(|(_, high)| m.offset() >= *high) {
            let e = beyond.entry(tp).or_insert(m.offset());
            *e = (*e).max(m.offset());
        }
    }
    for (tp, last) in beyond {
        let (_, fresh) = c.fetch_watermarks(&tp.0, tp.1, TIMEOUT)?;
        if let Some(e) = out.get_mut(&tp) {
            if fresh > last {
                // New messages arrived while we looked: the broker's answer holds.
                *e = End {
                    reported: fresh,
                    offset: fresh,
                };
            } else {
                e.offset = last + 1;
            }
        }
    }
    Ok(out)
}

/// Reads "the first message at or after an offset" of one partition.
pub trait Probe {
    fn at(&mut self, offset: i64) -> impl std::future::Future<Output = Result<Option<Seen>>>;
}

/// [`Probe`] on the broker.
pub struct KafkaProbe<'a> {
    pub k: &'a KafkaConfig,
    pub tp: Tp,
}

impl Probe for KafkaProbe<'_> {
    async fn at(&mut self, offset: i64) -> Result<Option<Seen>> {
        let found = first_at(self.k, &[(self.tp.clone(), offset)], Duration::from_secs(3)).await?;
        Ok(found.get(&self.tp).copied())
    }
}

fn at_least(seen: &Seen, t_ms: i64) -> bool {
    seen.ts_ms.is_some_and(|ts| ts >= t_ms)
}

/// The first offset in `low..end` whose message time is at or after `t_ms` (`end` when
/// none), by binary search over the messages: assumes times do not decrease along the
/// partition (broker append times, or producers' create times of a well-behaved producer).
pub async fn search_time(probe: &mut impl Probe, low: i64, end: i64, t_ms: i64) -> Result<i64> {
    let (mut lo, mut hi) = (low, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match probe.at(mid).await? {
            None => hi = mid,
            Some(s) if s.offset >= hi => hi = mid,
            Some(s) if at_least(&s, t_ms) => hi = mid,
            Some(s) => lo = s.offset + 1,
        }
    }
    // The offset of the message there (the same position when offsets have gaps).
    if lo < end {
        return Ok(probe.at(lo).await?.map_or(end, |s| s.offset.min(end)));
    }
    Ok(lo)
}

/// Whether `answer` (a broker's offsets-for-times) is the first offset at or after `t_ms`:
/// the message there is at or after it, the one before is earlier.
pub async fn check_answer(
    probe: &mut impl Probe,
    low: i64,
    end: i64,
    t_ms: i64,
    answer: i64,
) -> Result<bool> {
    if answer < low || answer > end {
        return Ok(false);
    }
    if answer < end {
        match probe.at(answer).await? {
            Some(s) if s.offset == answer && at_least(&s, t_ms) => {}
            _ => return Ok(false),
        }
    }
    if answer > low {
        // The message before: the nearest one at or after answer - 1 must be earlier.
        match probe.at(answer - 1).await? {
            Some(s) if s.offset == answer - 1 => return Ok(!at_least(&s, t_ms)),
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// The first offset of `tp` in `low..end` at or after `t_ms`, and how it was found.
pub async fn offset_for_time(
    k: &KafkaConfig,
    tp: &Tp,
    low: i64,
    end: i64,
    t_ms: i64,
    lookup: Lookup,
) -> Result<(i64, Method)> {
    let mut probe = KafkaProbe { k, tp: tp.clone() };
    if lookup == Lookup::Auto {
        let c = reader(k, "times")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(t_ms))?;
        let answer = c
            .offsets_for_times(tpl, TIMEOUT)
            .ok()
            .and_then(|r| r.find_partition(&tp.0, tp.1).map(|e| e.offset()));
        let answer = match answer {
            Some(Offset::Offset(o)) => Some(o),
            Some(Offset::End) => Some(end),
            _ => None,
        };
        if let Some(o) = answer {
            if check_answer(&mut probe, low, end, t_ms, o).await? {
                return Ok((o, Method::Broker));
            }
            tracing::warn!(
                topic = tp.0,
                partition = tp.1,
                answer = o,
                "the broker's offset for the time does not match the messages; searching"
            );
        }
    }
    Ok((
        search_time(&mut probe, low, end, t_ms).await?,
        Method::Search,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition in memory: offsets with times (gaps allowed).
    struct Fake(Vec<Seen>, usize);

    impl Probe for Fake {
        async fn at(&mut self, offset: i64) -> Result<Option<Seen>> {
            self.1 += 1;
            Ok(self.0.iter().find(|s| s.offset >= offset).copied())
        }
    }

    fn fake(times: &[(i64, i64)]) -> Fake {
        Fake(
            times
                .iter()
                .map(|&(offset, ts)| Seen {
                    offset,
                    ts_ms: Some(ts),
                })
                .collect(),
            0,
        )
    }

    #[tokio::test]
    async fn the_search_finds_the_first_offset_at_or_after_a_time() {
        // Offsets 0..1000 at times 10·offset, with a gap 500..510 (compacted away).
        let mut p = fake(
            &(0..1000)
                .filter(|o| !(500..510).contains(o))
                .map(|o| (o, 10 * o))
                .collect::<Vec<_>>(),
        );
        for (t, want) in [
            (0, 0),
            (5, 1),
            (10, 1),
            (4990, 499),
            (5000, 510),
            (5095, 510),
            (5105, 511),
            (9990, 999),
            (9991, 1000),
        ] {
            assert_eq!(
                search_time(&mut p, 0, 1000, t).await.expect("ok"),
                want,
                "{t}"
            );
        }
        // Logarithmic: about 10 probes per search for 1000 offsets, not 1000.
        p.1 = 0;
        search_time(&mut p, 0, 1000, 7777).await.expect("ok");
        assert!(p.1 <= 13, "{} probes", p.1);
        // Same times on several offsets: the first of them.
        let mut same = fake(&[(0, 1), (1, 5), (2, 5), (3, 5), (4, 9)]);
        assert_eq!(search_time(&mut same, 0, 5, 5).await.expect("ok"), 1);
        let mut empty = fake(&[]);
        assert_eq!(search_time(&mut empty, 7, 7, 5).await.expect("ok"), 7);
    }

    #[tokio::test]
    async fn a_broker_answer_is_checked_against_the_messages() {
        let mut p = fake(&(0..100).map(|o| (o, 10 * o)).collect::<Vec<_>>());
        // Right answers, including "after the last message" and "the very first".
        assert!(check_answer(&mut p, 0, 100, 505, 51).await.expect("ok"));
        assert!(check_answer(&mut p, 0, 100, 5000, 100).await.expect("ok"));
        assert!(check_answer(&mut p, 0, 100, 0, 0).await.expect("ok"));
        // Wrong ones: too late (the one before is already at the time), too early, out of
        // the partition, the end although messages are at the time.
        assert!(!check_answer(&mut p, 0, 100, 505, 60).await.expect("ok"));
        assert!(!check_answer(&mut p, 0, 100, 505, 10).await.expect("ok"));
        assert!(!check_answer(&mut p, 0, 100, 505, 200).await.expect("ok"));
        assert!(!check_answer(&mut p, 0, 100, 505, 100).await.expect("ok"));
        assert!(!check_answer(&mut p, 0, 100, 505, -1).await.expect("ok"));
    }
}

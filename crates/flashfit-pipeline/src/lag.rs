//! `flashfit lag`: for every stage's and sink's consumer group, per partition of what it
//! reads: the committed offset, the end offset, the lag and the age of the oldest message
//! not yet processed. Ends are checked by reading at the broker's high watermark
//! ([`crate::offsets::ends`]); where the watermark was wrong the row says so.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use flashfit_config::KafkaConfig;
use flashfit_runtime::kafka;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::offsets::{self, Tp};
use crate::{Error, Result};

/// One group's position in one partition.
#[derive(Debug, Clone, Serialize)]
pub struct LagRow {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (none: it starts at the earliest message).
    pub committed: Option<i64>,
    pub end: i64,
    /// The broker's high watermark, when it differs from the end the messages show.
    pub reported_end: Option<i64>,
    pub lag: i64,
    /// Seconds since the oldest message the group has not processed was written.
    pub oldest_age_s: Option<f64>,
}

/// Every row, and warnings (untrusted watermarks, topics not there yet).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lag {
    pub rows: Vec<LagRow>,
    pub warnings: Vec<String>,
}

impl Lag {
    /// Total lag of `group`.
    pub fn of(&self, group: &str) -> i64 {
        self.rows
            .iter()
            .filter(|r| r.group == group)
            .map(|r| r.lag)
            .sum()
    }
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:<34} {:>4} {:>10} {:>10} {:>8} {:>10}",
            "group", "topic", "part", "committed", "end", "lag", "oldest"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<28} {:<34} {:>4} {:>10} {:>10} {:>8} {:>10}{}",
                r.group,
                r.topic,
                r.partition,
                r.committed.map_or("-".into(), |c| c.to_string()),
                r.end,
                r.lag,
                r.oldest_age_s.map_or("-".into(), |s| format!("{s:.0} s")),
                r.reported_end.map_or(String::new(), |w| format!(
                    "  (broker reported end {w}: wrong, not trusted)"
                )),
            )?;
        }
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for r in &self.rows {
            *totals.entry(&r.group).or_default() += r.lag;
        }
        let lagging: Vec<String> = totals
            .iter()
            .filter(|(_, l)| **l > 0)
            .map(|(g, l)| format!("{g} {l}"))
            .collect();
        writeln!(
            f,
            "{} groups, {} partitions; lagging: {}",
            totals.len(),
            self.rows.len(),
            if lagging.is_empty() {
                "none".into()
            } else {
                lagging.join(", ")
            }
        )?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// The lag of each `(group, topics it reads)`; topics that do not exist yet are skipped
/// with a warning.
pub async fn lag(k: &KafkaConfig, groups: &[(String, Vec<String>)]) -> Result<Lag> {
    measure(k, groups, true).await
}

/// The total lag of one group over `topics`, from checked ends (no message ages: cheap
/// enough to poll).
pub async fn total(k: &KafkaConfig, group: &str, topics: &[String]) -> Result<i64> {
    let l = measure(k, &[(group.to_owned(), topics.to_vec())], false).await?;
    Ok(l.rows.iter().map(|r| r.lag).sum())
}

async fn measure(k: &KafkaConfig, groups: &[(String, Vec<String>)], ages: bool) -> Result<Lag> {
    let mut out = Lag::default();
    let wanted: Vec<String> = groups.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
    let (tps, missing) = offsets::existing_partitions(k, &wanted)?;
    if !missing.is_empty() {
        out.warnings.push(format!(
            "not created yet (nothing written to them): {}",
            missing.join(", ")
        ));
    }
    let marks = offsets::watermarks(k, &tps)?;
    let ends = offsets::ends(k, &tps).await?;
    for (group, topics) in groups {
        let mine: Vec<&Tp> = tps.iter().filter(|(t, _)| topics.contains(t)).collect();
        if mine.is_empty() {
            continue;
        }
        let c: StreamConsumer = kafka::consumer_config(k, group, 0)?.create()?;
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &mine {
            tpl.add_partition(t, *p);
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
        let mut rows = Vec::new();
        for tp in mine {
            let low = marks.get(tp).map(|m| m.0).unwrap_or(0);
            let end = ends
                .get(tp)
                .ok_or_else(|| Error::Invalid(format!("no end for {tp:?}")))?;
            let at = committed
                .find_partition(&tp.0, tp.1)
                .and_then(|e| match e.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                });
            let position = at.unwrap_or(low).max(low);
            rows.push(LagRow {
                group: group.clone(),
                topic: tp.0.clone(),
                partition: tp.1,
                committed: at,
                end: end.offset,
                reported_end: (!end.trusted()).then_some(end.reported),
                lag: (end.offset - position).max(0),
                oldest_age_s: None,
            });
        }
        if !ages {
            out.rows.extend(rows);
            continue;
        }
        // The oldest unprocessed message of each lagging partition: the one at the position.
        let starts: Vec<(Tp, i64)> = rows
            .iter()
            .filter(|r| r.lag > 0)
            .map(|r| {
                let low = marks.get(&(r.topic.clone(), r.partition)).map(|m| m.0);
                (
                    (r.topic.clone(), r.partition),
                    r.committed.unwrap_or(0).max(low.unwrap_or(0)),
                )
            })
            .collect();
        let seen = offsets::first_at(k, &starts, Duration::from_secs(3)).await?;
        let now = chrono::Utc::now().timestamp_millis();
        for r in rows.iter_mut() {
            if let Some(ts) = seen
                .get(&(r.topic.clone(), r.partition))
                .and_then(|s| s.ts_ms)
            {
                r.oldest_age_s = Some(((now - ts).max(0)) as f64 / 1000.0);
            }
        }
        out.rows.extend(rows);
    }
    if out.rows.iter().any(|r| r.reported_end.is_some()) {
        out.warnings.push(
            "the broker's high watermark was wrong on some partitions (Tansu after a produce \
             batch of large records): their end and lag come from reading the messages"
                .into(),
        );
    }
    Ok(out)
}

//! `flashfit worker parquet`: the `garments` table as a stage on the shared runtime. The
//! runtime's batch is the file roll (`[parquet] max_rows` messages or `roll_ms`), split further
//! by `max_bytes`; the stage writes each partition's offset range with [`Table::write_range`]
//! and only then reports the messages done, so their offsets are committed after the objects
//! exist. Ranges already in the table (known from its range markers) are skipped, which makes
//! retries, crashes before the commit and replays from any offset write nothing twice.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use flashfit_runtime::{Message, Outcome, Stage};
use flashfit_schema::Reason;
use serde_json::Value;

use crate::garments;
use crate::table::{Range, Table, Written};

pub struct ParquetSink {
    pub table: Table,
    pub input: String,
    /// A range's files stop growing at about this many bytes of input records.
    pub max_bytes: usize,
    /// Ranges known per partition (loaded from the markers on first sight of a partition).
    known: tokio::sync::Mutex<HashMap<i32, BTreeMap<i64, i64>>>,
}

impl ParquetSink {
    pub fn new(table: Table, input: String, max_bytes: usize) -> Self {
        ParquetSink {
            table,
            input,
            max_bytes,
            known: Default::default(),
        }
    }
}

/// True when `offset` lies in one of the `ranges` (first → last).
fn covered(ranges: &BTreeMap<i64, i64>, offset: i64) -> bool {
    ranges
        .range(..=offset)
        .next_back()
        .is_some_and(|(_, last)| *last >= offset)
}

/// A known range starting in `(a, b]`: a new range from `a` must stop before it.
fn starts_between(ranges: &BTreeMap<i64, i64>, a: i64, b: i64) -> bool {
    a < b && ranges.range(a + 1..=b).next().is_some()
}

/// The row of one message, or why it cannot have one.
fn convert(msg: &Message) -> Result<Value, String> {
    let record: Value =
        serde_json::from_slice(msg.payload()).map_err(|e| format!("not JSON: {e}"))?;
    let row = garments::row(&record).map_err(|e| e.to_string())?;
    // Each row must encode on its own, so one bad record cannot fail a whole file.
    garments::batch(std::slice::from_ref(&row)).map_err(|e| e.to_string())?;
    Ok(row)
}

#[async_trait]
impl Stage for ParquetSink {
    fn name(&self) -> &str {
        "parquet"
    }

    fn input_topic(&self) -> &str {
        &self.input
    }

    fn output_topics(&self) -> Vec<String> {
        Vec::new()
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        // One batch at a time: ranges of a partition are written in offset order.
        let mut known = self.known.lock().await;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            by_partition.entry(m.partition).or_default().push(i);
        }
        for (partition, mut idx) in by_partition {
            idx.sort_by_key(|i| batch[*i].offset);
            let ranges = match known.entry(partition) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match self.table.ranges(&self.input, partition).await {
                        Ok(r) => v.insert(r),
                        Err(e) => {
                            for i in idx {
                                outcomes[i] =
                                    Some(Outcome::Retry(format!("reading range markers: {e}")));
                            }
                            continue;
                        }
                    }
                }
            };
            // Already in the table: done.
            let mut todo = Vec::new();
            for i in idx {
                if covered(ranges, batch[i].offset) {
                    outcomes[i] = Some(Outcome::Emit(Vec::new()));
                } else {
                    todo.push(i);
                }
            }
            // Split the rest into ranges that neither cross a known range nor exceed max_bytes.
            let mut segments: Vec<Vec<usize>> = Vec::new();
            let mut bytes = 0usize;
            for i in todo {
                let size = batch[i].payload().len();
                let split = match segments.last().and_then(|s| s.last()) {
                    None => true,
                    Some(&prev) => {
                        starts_between(ranges, batch[prev].offset, batch[i].offset)
                            || bytes + size > self.max_bytes
                    }
                };
                if split {
                    segments.push(Vec::new());
                    bytes = 0;
                }
                bytes += size;
                if let Some(s) = segments.last_mut() {
                    s.push(i);
                }
            }
            for seg in segments {
                let (first, last) = (batch[seg[0]].offset, batch[seg[seg.len() - 1]].offset);
                let mut rows = Vec::new();
                let mut bad = Vec::new();
                for &i in &seg {
                    match convert(&batch[i]) {
                        Ok(r) => rows.push(r),
                        Err(e) => bad.push((i, e)),
                    }
                }
                let range = Range {
                    topic: self.input.clone(),
                    partition,
                    first,
                    last,
                };
                let result = self.table.write_range(&range, &rows).await;
                let ok = match result {
                    Ok(Written::Files(files)) => {
                        tracing::info!(
                            partition,
                            first,
                            last,
                            rows = rows.len(),
                            files = files.len(),
                            "wrote range"
                        );
                        ranges.insert(first, last);
                        None
                    }
                    Ok(Written::AlreadyThere { last: there }) => {
                        ranges.insert(first, there);
                        (there < last).then(|| {
                            format!("range from {first} already written only up to {there}")
                        })
                    }
                    Err(e) => Some(e.to_string()),
                };
                for &i in &seg {
                    outcomes[i] = Some(match &ok {
                        Some(why) => Outcome::Retry(why.clone()),
                        None => match bad.iter().find(|(b, _)| *b == i) {
                            Some((_, e)) => Outcome::BadInput {
                                reason: Reason::InvalidEvent,
                                message: e.clone(),
                            },
                            None => Outcome::Emit(Vec::new()),
                        },
                    });
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("not handled".into())))
            .collect()
    }
}

#[cfg(test)]
mod tests;

//! `flashfit worker parquet`: Parquet tables as a stage on the shared runtime, one table per
//! input topic (`flashfit.embedded` → `garments`, `flashfit.deletes` → `garment_deletes`). The
//! runtime's batch is the file roll (`[parquet] max_rows` messages or `roll_ms`), split further
//! by `max_bytes`; the stage writes each partition's offset range with [`Table::write_range`]
//! and only then reports the messages done, so their offsets are committed after the objects
//! exist. Ranges already in the table (known from its range markers) are skipped, which makes
//! retries, crashes before the commit and replays from any offset write nothing twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use flashfit_runtime::{Message, Outcome, Stage};
use flashfit_schema::Reason;
use serde_json::Value;

use crate::table::{Range, Table, Written};

pub struct ParquetSink {
    /// The worker's name: metrics, consumer group, dead-letter topic.
    name: String,
    /// Input topic → the table its records go to; the first is the main input.
    routes: Vec<(String, Table)>,
    /// A range's files stop growing at about this many bytes of input records.
    pub max_bytes: usize,
    /// Ranges known per topic and partition (loaded from the markers on first sight).
    known: tokio::sync::Mutex<HashMap<(String, i32), BTreeMap<i64, i64>>>,
    /// Ranges met again (replays, restarts) and checked complete by this process.
    completed: tokio::sync::Mutex<std::collections::HashSet<(String, i32, i64)>>,
    /// Applied to every row before it is written (the kpi worker's attribution).
    hook: Option<RowHook>,
}

/// A change to each row before it is written; it must keep the row valid for the layout and
/// be a pure function of the row (a replay writes the same row).
pub type RowHook = Arc<dyn Fn(&mut Value) + Send + Sync>;

impl ParquetSink {
    /// A sink writing `input`'s records to `table`.
    pub fn new(table: Table, input: String, max_bytes: usize) -> Self {
        ParquetSink {
            name: "parquet".into(),
            routes: vec![(input, table)],
            max_bytes,
            known: Default::default(),
            completed: Default::default(),
            hook: None,
        }
    }

    /// Applies `hook` to every row before it is written.
    pub fn with_row_hook(mut self, hook: RowHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Another worker name than `parquet` (each name has its own consumer group).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Also consume `input`, writing its records to `table`.
    pub fn with_route(mut self, input: String, table: Table) -> Self {
        self.routes.push((input, table));
        self
    }

    fn table_for(&self, topic: &str) -> Option<&Table> {
        self.routes.iter().find(|(t, _)| t == topic).map(|(_, t)| t)
    }
}

/// The first offset of the range among `ranges` (first → last) that holds `offset`.
fn covering(ranges: &BTreeMap<i64, i64>, offset: i64) -> Option<i64> {
    ranges
        .range(..=offset)
        .next_back()
        .filter(|(_, last)| **last >= offset)
        .map(|(first, _)| *first)
}

/// A known range starting in `(a, b]`: a new range from `a` must stop before it.
fn starts_between(ranges: &BTreeMap<i64, i64>, a: i64, b: i64) -> bool {
    a < b && ranges.range(a + 1..=b).next().is_some()
}

/// The outcome of a table failure: transient when retrying may help, else `internal`.
fn failed(why: String, e: &crate::Error) -> Outcome {
    if e.is_retryable() {
        Outcome::Retry(why)
    } else {
        Outcome::Internal(why)
    }
}

/// The row of one message (after `hook`), or why it cannot have one.
fn convert(table: &Table, msg: &Message, hook: Option<&RowHook>) -> Result<Value, String> {
    let mut row = table.layout.convert(msg).map_err(|e| e.to_string())?;
    if let Some(h) = hook {
        h(&mut row);
        table
            .layout
            .batch(std::slice::from_ref(&row))
            .map_err(|e| e.to_string())?;
    }
    Ok(row)
}

#[async_trait]
impl Stage for ParquetSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn input_topic(&self) -> &str {
        self.routes
            .first()
            .map(|(t, _)| t.as_str())
            .unwrap_or_default()
    }

    fn input_topics(&self) -> Vec<String> {
        // Asked once at start-up: the write counters exist (at zero) from then on.
        for (_, t) in &self.routes {
            flashfit_runtime::sink_declare(&self.name, t.layout.name);
        }
        self.routes.iter().map(|(t, _)| t.clone()).collect()
    }

    fn output_topics(&self) -> Vec<String> {
        Vec::new()
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        // One batch at a time: ranges of a partition are written in offset order.
        let mut known = self.known.lock().await;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut by_partition: BTreeMap<(&str, i32), Vec<usize>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            by_partition
                .entry((&m.topic, m.partition))
                .or_default()
                .push(i);
        }
        for ((topic, partition), mut idx) in by_partition {
            idx.sort_by_key(|i| batch[*i].offset);
            let Some(table) = self.table_for(topic) else {
                for i in idx {
                    outcomes[i] = Some(Outcome::BadInput {
                        reason: Reason::InvalidEvent,
                        message: format!("no table for topic {topic}"),
                    });
                }
                continue;
            };
            let ranges = match known.entry((topic.to_owned(), partition)) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match table.ranges(topic, partition).await {
                        Ok(r) => v.insert(r),
                        Err(e) => {
                            for i in idx {
                                outcomes[i] =
                                    Some(failed(format!("reading range markers: {e}"), &e));
                            }
                            continue;
                        }
                    }
                }
            };
            // Already in the table: done, once the covering range is known to be complete (a
            // writer may have crashed between its commit and its files).
            let mut todo = Vec::new();
            let mut completed = self.completed.lock().await;
            for i in idx {
                let Some(first) = covering(ranges, batch[i].offset) else {
                    todo.push(i);
                    continue;
                };
                let key = (topic.to_owned(), partition, first);
                if !completed.contains(&key) {
                    if let Err(e) = table.complete(topic, partition, first).await {
                        outcomes[i] = Some(failed(
                            format!("completing the range from {first}: {e}"),
                            &e,
                        ));
                        continue;
                    }
                    completed.insert(key);
                }
                outcomes[i] = Some(Outcome::Emit(Vec::new()));
            }
            drop(completed);
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
                    match convert(table, &batch[i], self.hook.as_ref()) {
                        Ok(r) => rows.push(r),
                        Err(e) => bad.push((i, e)),
                    }
                }
                let range = Range {
                    topic: topic.to_owned(),
                    partition,
                    first,
                    last,
                };
                let result = table.write_range(&range, &rows).await;
                let ok: Option<Outcome> = match result {
                    Ok(Written::Files(files)) => {
                        tracing::info!(
                            table = table.layout.name,
                            partition,
                            first,
                            last,
                            rows = rows.len(),
                            files = files.len(),
                            "wrote range"
                        );
                        flashfit_runtime::sink_written(
                            &self.name,
                            table.layout.name,
                            rows.len() as u64,
                            files.len() as u64,
                        );
                        ranges.insert(first, last);
                        None
                    }
                    Ok(Written::AlreadyThere { last: there }) => {
                        ranges.insert(first, there);
                        (there < last).then(|| {
                            Outcome::Retry(format!(
                                "range from {first} already written only up to {there}"
                            ))
                        })
                    }
                    Err(e) => Some(failed(e.to_string(), &e)),
                };
                for &i in &seg {
                    outcomes[i] = Some(match &ok {
                        Some(o) => o.clone(),
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

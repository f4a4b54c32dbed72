//! `flashfit worker lance`: upserts each batch of `flashfit.embedded` records into the LanceDB
//! `garments` table by `garment_id` (`merge_insert`), newest processing wins, so replays and
//! redeliveries leave the table as it was. Delete events from `flashfit.deletes` become
//! tombstones (the `garment_deletes` table) and delete the row; a garment with a tombstone is
//! never upserted again, whatever order the two topics arrive in (checked before the upsert
//! and, for a delete racing it from another worker, after). Offsets are committed after the
//! writes return. Table upkeep ([`crate::upkeep`]) runs in the background between batches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch, RecordBatchIterator};
use async_trait::async_trait;
use flashfit_config::LanceConfig;
use flashfit_runtime::{Message, Outcome, Stage};
use flashfit_schema::{DeleteEvent, GarmentRecord, Reason};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::id_list;
use crate::rows::{Garment, VectorDims, batch, tombstones};

pub struct LanceSink {
    uri: String,
    s3: flashfit_config::S3Config,
    cfg: LanceConfig,
    pub input: String,
    pub deletes: String,
    /// The vector sizes of the table (the model manifest's `[embedder]`).
    dims: VectorDims,
    /// Opened (or created) on first use: building a worker does no I/O.
    tables: tokio::sync::OnceCell<(lancedb::Table, lancedb::Table)>,
    upkeep: Arc<UpkeepState>,
}

struct UpkeepState {
    running: AtomicBool,
    last: std::sync::Mutex<Option<Instant>>,
}

/// What one batch asks of the tables.
#[derive(Default)]
struct Plan {
    /// The latest record per garment (merge_insert needs unique keys).
    /// Keyed by (garment id, user id) until ownership is settled.
    upserts: BTreeMap<(String, String), Garment>,
    deletes: BTreeMap<String, DeleteEvent>,
    /// Which garment and user each message names (index in the batch).
    claims: Vec<(usize, String, String)>,
}

impl LanceSink {
    pub fn new(
        uri: &str,
        s3: &flashfit_config::S3Config,
        cfg: &LanceConfig,
        input: String,
        deletes: String,
        dims: VectorDims,
    ) -> Self {
        LanceSink {
            uri: uri.to_owned(),
            s3: s3.clone(),
            cfg: cfg.clone(),
            input,
            deletes,
            dims,
            tables: tokio::sync::OnceCell::new(),
            upkeep: Arc::new(UpkeepState {
                running: AtomicBool::new(false),
                last: std::sync::Mutex::new(None),
            }),
        }
    }

    async fn tables(&self) -> crate::Result<&(lancedb::Table, lancedb::Table)> {
        self.tables
            .get_or_try_init(|| async {
                let db = crate::connect(&self.uri, &self.s3, &self.cfg).await?;
                let garments = crate::garments(&db, &self.cfg.table, self.dims).await?;
                let tombstones = crate::tombstones(&db, &self.cfg.deletes_table).await?;
                Ok((garments, tombstones))
            })
            .await
    }

    /// The garments table, opened or created on first call.
    pub async fn table(&self) -> crate::Result<&lancedb::Table> {
        Ok(&self.tables().await?.0)
    }

    /// The tombstone table, opened or created on first call.
    pub async fn tombstone_table(&self) -> crate::Result<&lancedb::Table> {
        Ok(&self.tables().await?.1)
    }

    /// Which of `ids` have a tombstone from their owner: (garment id, user id) pairs.
    async fn deleted_among(
        &self,
        ids: &BTreeSet<String>,
    ) -> crate::Result<BTreeSet<(String, String)>> {
        self.pairs(self.tombstone_table().await?, ids).await
    }

    /// The (garment id, user id) pairs of `table`'s rows for `ids`.
    async fn pairs(
        &self,
        table: &lancedb::Table,
        ids: &BTreeSet<String>,
    ) -> crate::Result<BTreeSet<(String, String)>> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let batches: Vec<RecordBatch> = table
            .query()
            .only_if(format!("garment_id IN ({})", id_list(ids)))
            .select(Select::columns(&["garment_id", "user_id"]))
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut out = BTreeSet::new();
        for b in batches {
            if let (Some(g), Some(u)) =
                (b.column_by_name("garment_id"), b.column_by_name("user_id"))
            {
                let (g, u) = (g.as_string::<i32>(), u.as_string::<i32>());
                out.extend(
                    (0..b.num_rows()).map(|i| (g.value(i).to_owned(), u.value(i).to_owned())),
                );
            }
        }
        Ok(out)
    }

    /// The owner of each of `ids` that has a row.
    async fn owners(&self, ids: &BTreeSet<String>) -> crate::Result<BTreeMap<String, String>> {
        Ok(self
            .pairs(self.table().await?, ids)
            .await?
            .into_iter()
            .collect())
    }

    /// Removes garments for good: tombstones first (so no upsert can bring them back), then
    /// the rows. Repeating it changes nothing.
    pub async fn delete(&self, deletes: &[DeleteEvent]) -> crate::Result<()> {
        if deletes.is_empty() {
            return Ok(());
        }
        let b = tombstones(deletes)?;
        let schema = b.schema();
        let reader = RecordBatchIterator::new(vec![Ok(b)], schema);
        let mut m = self
            .tombstone_table()
            .await?
            .merge_insert(&["garment_id", "user_id"]);
        m.when_not_matched_insert_all();
        m.execute(Box::new(reader)).await?;
        // Only the owner's row goes (the caller checked ownership; a garment that had no row
        // keeps the tombstone for when its upload arrives).
        let filter = deletes
            .iter()
            .map(|d| {
                format!(
                    "(garment_id = {} AND user_id = {})",
                    crate::quote(&d.garment_id),
                    crate::quote(&d.user_id)
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        self.table().await?.delete(filter.as_str()).await?;
        Ok(())
    }

    /// Upserts `garments` (one per garment id): a row is replaced only by a processing at
    /// least as recent as its own, and deleted garments are left out.
    pub async fn upsert(&self, garments: &[Garment]) -> crate::Result<()> {
        let ids: BTreeSet<String> = garments.iter().map(|g| g.garment_id.clone()).collect();
        let deleted = self.deleted_among(&ids).await?;
        let gone = |g: &Garment| deleted.contains(&(g.garment_id.clone(), g.user_id.clone()));
        let live: Vec<Garment> = garments.iter().filter(|g| !gone(g)).cloned().collect();
        if live.is_empty() {
            return Ok(());
        }
        let b = batch(&live, self.dims)?;
        let schema = b.schema();
        let reader = RecordBatchIterator::new(vec![Ok(b)], schema);
        let table = self.table().await?;
        let mut m = table.merge_insert(&["garment_id"]);
        // Never over another user's row (ownership was checked; this closes the race with a
        // concurrent first upload by someone else).
        m.when_matched_update_all(Some(
            "target.processed_at <= source.processed_at AND target.user_id = source.user_id".into(),
        ))
        .when_not_matched_insert_all();
        m.execute(Box::new(reader)).await?;
        // A delete committed by another worker since the check above: undo our insert.
        let raced = self.deleted_among(&ids).await?;
        let fresh: Vec<&(String, String)> = raced.difference(&deleted).collect();
        if !fresh.is_empty() {
            let filter = fresh
                .iter()
                .map(|(g, u)| {
                    format!(
                        "(garment_id = {} AND user_id = {})",
                        crate::quote(g),
                        crate::quote(u)
                    )
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            table.delete(filter.as_str()).await?;
        }
        Ok(())
    }

    /// Starts an upkeep pass in the background when one is due and none is running.
    fn maybe_upkeep(&self) {
        if self.cfg.optimize_interval_ms == 0 {
            return;
        }
        let interval = Duration::from_millis(self.cfg.optimize_interval_ms);
        {
            let mut last = self.upkeep.last.lock().unwrap_or_else(|p| p.into_inner());
            match *last {
                None => {
                    // The first pass waits one interval after start-up.
                    *last = Some(Instant::now());
                    return;
                }
                Some(t) if t.elapsed() < interval => return,
                Some(_) => {}
            }
            if self.upkeep.running.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Some((garments, tombstones)) = self.tables.get().cloned() else {
            self.upkeep.running.store(false, Ordering::Release);
            return;
        };
        let (state, cfg) = (self.upkeep.clone(), self.cfg.clone());
        tokio::spawn(async move {
            for t in [&garments, &tombstones] {
                let started = Instant::now();
                match crate::upkeep::run(t, &cfg).await {
                    Ok(r) => tracing::info!(
                        table = r.table,
                        rows = r.rows,
                        fragments_removed = r.fragments_removed,
                        fragments_added = r.fragments_added,
                        indexed = ?r.indexed,
                        versions_pruned = r.versions_pruned,
                        seconds = started.elapsed().as_secs_f64(),
                        "lancedb upkeep"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "lancedb upkeep failed; next interval retries")
                    }
                }
            }
            state.running.store(false, Ordering::Release);
        });
    }

    fn plan(&self, batch: &[Message]) -> (Plan, Vec<Option<Outcome>>) {
        let mut plan = Plan::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            if *m.topic == *self.deletes {
                match DeleteEvent::from_json(m.payload()) {
                    Ok(d) => {
                        plan.claims
                            .push((outcomes.len(), d.garment_id.clone(), d.user_id.clone()));
                        plan.deletes.insert(d.garment_id.clone(), d);
                        outcomes.push(None);
                    }
                    Err(e) => outcomes.push(Some(Outcome::BadInput {
                        reason: Reason::InvalidEvent,
                        message: e.0,
                    })),
                }
                continue;
            }
            let parsed = GarmentRecord::from_json(m.payload())
                .map_err(|e| e.0)
                .and_then(|r| Garment::from_record(&r, self.dims).map_err(|e| e.to_string()));
            match parsed {
                Ok(g) => {
                    plan.claims
                        .push((outcomes.len(), g.garment_id.clone(), g.user_id.clone()));
                    let newer = plan
                        .upserts
                        .get(&(g.garment_id.clone(), g.user_id.clone()))
                        .is_none_or(|old| old.processed_at <= g.processed_at);
                    if newer {
                        plan.upserts
                            .insert((g.garment_id.clone(), g.user_id.clone()), g);
                    }
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Outcome::BadInput {
                    reason: Reason::InvalidEvent,
                    message: e,
                })),
            }
        }
        (plan, outcomes)
    }

    /// Applies the plan; returns the batch indices of messages naming a garment that belongs
    /// to another user (left out, to be dead-lettered `not_owner`).
    async fn apply(&self, mut plan: Plan) -> crate::Result<BTreeSet<usize>> {
        // Owners: the stored row's user, else the first user in this batch to name it.
        let ids: BTreeSet<String> = plan.claims.iter().map(|c| c.1.clone()).collect();
        let mut owner = self.owners(&ids).await?;
        for (_, g, u) in &plan.claims {
            owner.entry(g.clone()).or_insert_with(|| u.clone());
        }
        let mut refused = BTreeSet::new();
        for (i, g, u) in &plan.claims {
            if owner.get(g).is_some_and(|o| o != u) {
                refused.insert(*i);
            }
        }
        plan.deletes
            .retain(|g, d| owner.get(g).is_none_or(|o| *o == d.user_id));
        plan.upserts
            .retain(|(g, u), _| owner.get(g).is_none_or(|o| o == u));
        // A garment its owner deleted in this batch is not upserted, whichever came first.
        plan.upserts
            .retain(|(g, _), _| !plan.deletes.contains_key(g));
        let deletes: Vec<DeleteEvent> = plan.deletes.into_values().collect();
        self.delete(&deletes).await?;
        let garments: Vec<Garment> = plan.upserts.into_values().collect();
        self.upsert(&garments).await?;
        flashfit_runtime::sink_written(
            "lance",
            &self.cfg.table,
            garments.len() as u64,
            u64::from(!garments.is_empty()),
        );
        Ok(refused)
    }
}

#[async_trait]
impl Stage for LanceSink {
    fn name(&self) -> &str {
        "lance"
    }

    fn input_topic(&self) -> &str {
        &self.input
    }

    fn input_topics(&self) -> Vec<String> {
        flashfit_runtime::sink_declare("lance", &self.cfg.table);
        vec![self.input.clone(), self.deletes.clone()]
    }

    fn output_topics(&self) -> Vec<String> {
        Vec::new()
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        let (plan, outcomes) = self.plan(&batch);
        let result = self.apply(plan).await;
        if result.is_ok() {
            self.maybe_upkeep();
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| match (o, &result) {
                (Some(bad), _) => bad,
                (None, Ok(refused)) if refused.contains(&i) => Outcome::BadInput {
                    reason: Reason::NotOwner,
                    message: "the garment id belongs to another user".into(),
                },
                (None, Ok(_)) => Outcome::Emit(Vec::new()),
                (None, Err(e)) if e.is_retryable() => Outcome::Retry(format!("lancedb write: {e}")),
                (None, Err(e)) => Outcome::Internal(format!("lancedb write: {e}")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

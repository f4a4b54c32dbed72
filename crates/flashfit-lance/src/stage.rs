//! `flashfit worker lance`: upserts each batch of `flashfit.embedded` records into the LanceDB
//! `garments` table by `garment_id` (`merge_insert`), newest processing wins, so replays and
//! redeliveries leave the table as it was. Offsets are committed after the write returns.

use std::collections::BTreeMap;

use arrow::array::RecordBatchIterator;
use async_trait::async_trait;
use flashfit_runtime::{Message, Outcome, Stage};
use flashfit_schema::Reason;

use crate::rows::{Garment, batch};

pub struct LanceSink {
    uri: String,
    s3: flashfit_config::S3Config,
    name: String,
    pub input: String,
    /// Opened (or created) on first use: building a worker does no I/O.
    table: tokio::sync::OnceCell<lancedb::Table>,
}

impl LanceSink {
    pub fn new(uri: &str, s3: &flashfit_config::S3Config, name: &str, input: String) -> Self {
        LanceSink {
            uri: uri.to_owned(),
            s3: s3.clone(),
            name: name.to_owned(),
            input,
            table: tokio::sync::OnceCell::new(),
        }
    }

    /// The table, opened or created on first call.
    pub async fn table(&self) -> crate::Result<&lancedb::Table> {
        self.table
            .get_or_try_init(|| async {
                let db = crate::connect(&self.uri, &self.s3).await?;
                crate::garments(&db, &self.name).await
            })
            .await
    }

    /// Upserts `garments` (one per garment id): a row is replaced only by a processing at
    /// least as recent as its own.
    pub async fn upsert(&self, garments: &[Garment]) -> crate::Result<()> {
        if garments.is_empty() {
            return Ok(());
        }
        let b = batch(garments)?;
        let schema = b.schema();
        let reader = RecordBatchIterator::new(vec![Ok(b)], schema);
        let mut m = self.table().await?.merge_insert(&["garment_id"]);
        m.when_matched_update_all(Some("target.processed_at <= source.processed_at".into()))
            .when_not_matched_insert_all();
        m.execute(Box::new(reader)).await?;
        Ok(())
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

    fn output_topics(&self) -> Vec<String> {
        Vec::new()
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        // The latest record per garment in this batch (merge_insert needs unique keys).
        let mut latest: BTreeMap<String, Garment> = BTreeMap::new();
        for m in &batch {
            let parsed = serde_json::from_slice(m.payload())
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| Garment::from_record(&v).map_err(|e| e.to_string()));
            match parsed {
                Ok(g) => {
                    let newer = latest
                        .get(&g.garment_id)
                        .is_none_or(|old| old.processed_at <= g.processed_at);
                    if newer {
                        latest.insert(g.garment_id.clone(), g);
                    }
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Outcome::BadInput {
                    reason: Reason::InvalidEvent,
                    message: e,
                })),
            }
        }
        let garments: Vec<Garment> = latest.into_values().collect();
        let result = self.upsert(&garments).await;
        outcomes
            .into_iter()
            .map(|o| match (o, &result) {
                (Some(bad), _) => bad,
                (None, Ok(())) => Outcome::Emit(Vec::new()),
                (None, Err(e)) => Outcome::Retry(format!("lancedb upsert: {e}")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

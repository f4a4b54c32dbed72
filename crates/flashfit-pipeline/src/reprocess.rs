//! `flashfit reprocess --where '<SQL predicate over garments_current>'`: selects garments
//! from the current view (computed from the `garments` log and the tombstones as they are
//! now, so deleted garments are never selected) and publishes a new upload event for each —
//! a new `event_id`, the same `garment_id`, `user_id` and `image_uri` — so the chain
//! processes them again with today's models and the sinks keep the newest (the seed's
//! "reprocess where model version < X").

use std::fmt;

use chrono::Utc;
use flashfit_config::Config;
use flashfit_runtime::kafka;
use flashfit_schema::{Topics, UploadEvent};
use serde::Serialize;

use crate::progress::Progress;
use crate::{Error, Result};

/// Header each republished upload carries: the reprocess run's id.
pub const REPROCESS_HEADER: &str = "flashfit.reprocess";

/// What a reprocess did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Reprocessed {
    pub run: String,
    pub predicate: String,
    pub selected: u64,
    pub published: u64,
    /// Up to 10 selected garments, as `user_id/garment_id`.
    pub sample: Vec<String>,
    pub topic: String,
    pub dry_run: bool,
}

impl fmt::Display for Reprocessed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} garments of garments_current match `{}`; {} {} upload events to {} (run {})",
            self.selected,
            self.predicate,
            if self.dry_run {
                "would publish"
            } else {
                "published"
            },
            if self.dry_run {
                self.selected
            } else {
                self.published
            },
            self.topic,
            self.run
        )?;
        if !self.sample.is_empty() {
            writeln!(f, "  e.g. {}", self.sample.join(", "))?;
        }
        Ok(())
    }
}

/// The garments `predicate` selects: `(garment_id, user_id, image_uri)`, by user and garment.
pub async fn select(config: &Config, predicate: &str) -> Result<Vec<(String, String, String)>> {
    let garments = crate::garments_table(config)?;
    let deletes = crate::deletes_table(config)?;
    let sink = |e: flashfit_sinks::Error| Error::Invalid(e.to_string());
    let ctx = flashfit_sinks::sql::garments_session(
        &garments,
        &deletes,
        &flashfit_sinks::sql::Limits::default(),
    )
    .await
    .map_err(sink)?;
    let query = format!(
        "select garment_id, user_id, image_uri from garments_current where ({predicate}) \
         order by user_id, garment_id"
    );
    let rows = flashfit_sinks::sql::strings(&ctx, &query, &["garment_id", "user_id", "image_uri"])
        .await
        .map_err(|e| Error::Invalid(format!("--where `{predicate}`: {e}")))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match <[String; 3]>::try_from(r) {
            Ok([g, u, i]) => Some((g, u, i)),
            Err(_) => None,
        })
        .collect())
}

/// Runs a reprocess (see the module documentation).
pub async fn reprocess(
    config: &Config,
    predicate: &str,
    dry_run: bool,
    progress: &mut Progress,
) -> Result<Reprocessed> {
    let selected = select(config, predicate).await?;
    let topic = Topics::new(config.kafka.topic_prefix.clone()).uploads();
    let run = format!("reprocess-{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut out = Reprocessed {
        run: run.clone(),
        predicate: predicate.to_owned(),
        selected: selected.len() as u64,
        published: 0,
        sample: selected
            .iter()
            .take(10)
            .map(|(g, u, _)| format!("{u}/{g}"))
            .collect(),
        topic: topic.clone(),
        dry_run,
    };
    if dry_run || selected.is_empty() {
        return Ok(out);
    }
    progress.set_total(selected.len() as u64);
    kafka::ensure_topics(&config.kafka, std::slice::from_ref(&topic)).await?;
    let producer = kafka::producer(&config.kafka)?;
    for chunk in selected.chunks(500) {
        let events: Vec<UploadEvent> = chunk
            .iter()
            .map(|(g, u, i)| UploadEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                user_id: u.clone(),
                garment_id: g.clone(),
                image_uri: i.clone(),
                uploaded_at: Utc::now(),
                kind: None,
            })
            .collect();
        crate::ingest::publish_with(&producer, &topic, &events, &[(REPROCESS_HEADER, &run)])
            .await?;
        out.published += events.len() as u64;
        progress.inc(events.len() as u64);
    }
    progress.finish();
    Ok(out)
}

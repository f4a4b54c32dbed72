//! `flashfit reprocess --where '<SQL predicate over garments_current>'`: selects garments
//! from the current view (computed from the `garments` log and the tombstones as they are
//! now, so deleted garments are never selected) and publishes a new upload event for each —
//! a new `event_id`, the same `garment_id`, `user_id` and `image_uri` — so the chain
//! processes them again with today's models and the sinks keep the newest (the seed's
//! "reprocess where model version < X"). A garment of a split outfit (`outfit_id` set) is
//! reprocessed as its outfit: one `kind = "outfit"` upload per outfit, under the outfit's
//! garment id, which derives the same item ids again (an item alone would be re-cut as a
//! garment upload of the whole photo).

use std::fmt;

use chrono::Utc;
use flashfit_config::Config;
use flashfit_runtime::kafka;
use flashfit_schema::{Topics, UploadEvent, UploadKind};
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
    /// Upload events that reprocess them (an outfit's garments are one upload).
    pub uploads: u64,
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
                self.uploads
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

/// One garment `predicate` selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub garment_id: String,
    pub user_id: String,
    pub image_uri: String,
    /// The outfit upload's garment id, for a garment of a split outfit.
    pub outfit_id: Option<String>,
}

/// The garments `predicate` selects, by user and garment.
pub async fn select(config: &Config, predicate: &str) -> Result<Vec<Selected>> {
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
        "select garment_id, user_id, image_uri, outfit_id from garments_current \
         where ({predicate}) order by user_id, garment_id"
    );
    let rows = flashfit_sinks::sql::strings(
        &ctx,
        &query,
        &["garment_id", "user_id", "image_uri", "outfit_id"],
    )
    .await
    .map_err(|e| Error::Invalid(format!("--where `{predicate}`: {e}")))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match <[String; 4]>::try_from(r) {
            Ok([garment_id, user_id, image_uri, outfit]) => Some(Selected {
                garment_id,
                user_id,
                image_uri,
                outfit_id: (!outfit.is_empty()).then_some(outfit),
            }),
            Err(_) => None,
        })
        .collect())
}

/// The upload events that reprocess `selected`: one per garment, one per outfit for the
/// garments of split outfits (the first selected item's photo; every item of an outfit has
/// the outfit's photo).
pub fn uploads(selected: &[Selected]) -> Vec<UploadEvent> {
    let mut seen = std::collections::HashSet::new();
    selected
        .iter()
        .filter(|s| {
            seen.insert((
                s.user_id.as_str(),
                s.outfit_id.as_deref().unwrap_or(&s.garment_id),
            ))
        })
        .map(|s| UploadEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            user_id: s.user_id.clone(),
            garment_id: s.outfit_id.clone().unwrap_or_else(|| s.garment_id.clone()),
            image_uri: s.image_uri.clone(),
            uploaded_at: Utc::now(),
            kind: s.outfit_id.as_ref().map(|_| UploadKind::Outfit),
        })
        .collect()
}

/// Runs a reprocess (see the module documentation).
pub async fn reprocess(
    config: &Config,
    predicate: &str,
    dry_run: bool,
    progress: &mut Progress,
) -> Result<Reprocessed> {
    let selected = select(config, predicate).await?;
    let events = uploads(&selected);
    let topic = Topics::new(config.kafka.topic_prefix.clone()).uploads();
    let run = format!("reprocess-{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut out = Reprocessed {
        run: run.clone(),
        predicate: predicate.to_owned(),
        selected: selected.len() as u64,
        uploads: events.len() as u64,
        published: 0,
        sample: selected
            .iter()
            .take(10)
            .map(|s| format!("{}/{}", s.user_id, s.garment_id))
            .collect(),
        topic: topic.clone(),
        dry_run,
    };
    if dry_run || events.is_empty() {
        return Ok(out);
    }
    progress.set_total(events.len() as u64);
    kafka::ensure_topics(&config.kafka, std::slice::from_ref(&topic)).await?;
    let producer = kafka::producer(&config.kafka)?;
    for chunk in events.chunks(500) {
        crate::ingest::publish_with(&producer, &topic, chunk, &[(REPROCESS_HEADER, &run)]).await?;
        out.published += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn garment(id: &str, user: &str, outfit: Option<&str>) -> Selected {
        Selected {
            garment_id: id.into(),
            user_id: user.into(),
            image_uri: format!("file:///uploads/{user}/{}.jpg", outfit.unwrap_or(id)),
            outfit_id: outfit.map(str::to_owned),
        }
    }

    #[test]
    fn an_outfit_s_garments_are_reprocessed_as_one_outfit_upload() {
        let selected = [
            garment("g1", "u1", None),
            garment("o1/bottom-1", "u1", Some("o1")),
            garment("o1/top-1", "u1", Some("o1")),
            garment("o1/top-1", "u2", Some("o1")),
        ];
        let events = uploads(&selected);
        let got: Vec<(&str, &str, Option<UploadKind>)> = events
            .iter()
            .map(|e| (e.user_id.as_str(), e.garment_id.as_str(), e.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("u1", "g1", None),
                ("u1", "o1", Some(UploadKind::Outfit)),
                ("u2", "o1", Some(UploadKind::Outfit)),
            ]
        );
        assert_eq!(events[1].image_uri, "file:///uploads/u1/o1.jpg");
        let ids: std::collections::HashSet<&str> =
            events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), 3, "each upload has a new event id");
    }
}

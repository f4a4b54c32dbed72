use async_trait::async_trait;
use flashfit_config::QualityConfig;
use flashfit_runtime::{Emit, Message, Outcome, Stage, run_blocking};
use flashfit_schema::{GarmentRecord, QualityReport, Reason, Status, StatusEvent, Topics, Warning};
use flashfit_storage::Location;
use futures::StreamExt;

use crate::intake::{decode_outcome, read_upload};
use crate::{Limits, analyze};

/// Reads `flashfit.uploads`, writes passing uploads to `flashfit.quality`, and publishes
/// `rejected` statuses (and `processed` ones while it is the last stage of the pipeline).
pub struct QualityStage {
    uploads: Location,
    cfg: QualityConfig,
    concurrency: usize,
    terminal: bool,
    input: String,
    output: String,
    status: String,
}

impl QualityStage {
    /// `terminal`: this is the pipeline's last stage, so passing uploads end as `processed`.
    pub fn new(
        uploads: Location,
        cfg: QualityConfig,
        concurrency: usize,
        terminal: bool,
        topics: &Topics,
    ) -> Self {
        QualityStage {
            uploads,
            cfg,
            concurrency: concurrency.max(1),
            terminal,
            input: topics.uploads(),
            output: topics.quality(),
            status: topics.status(),
        }
    }

    async fn one(&self, msg: Message) -> Outcome {
        let (upload, bytes) = match read_upload(
            &self.uploads,
            msg.payload(),
            &self.cfg,
            crate::intake::MAX_EVENT_BYTES,
            msg.waited(),
        )
        .await
        {
            Ok(x) => x,
            Err(outcome) => return outcome,
        };
        let limits = Limits {
            max_pixels: self.cfg.max_pixels,
            max_side: self.cfg.max_side,
        };
        let permit = crate::intake::reserve_decode(&bytes, &self.cfg).await;
        let analysis = match run_blocking(move || analyze(&bytes, limits)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return decode_outcome(e),
            // A decoder panic is deterministic for these bytes: retrying would wedge the
            // partition, so the input is dead-lettered.
            Err(m) => {
                return Outcome::BadInput {
                    reason: Reason::Undecodable,
                    message: format!("decoder failed: {m}"),
                };
            }
        };
        drop(permit);
        let mut warnings = Vec::new();
        if analysis.blur_score < self.cfg.blur_threshold {
            warnings.push(Warning::Blurry);
        }
        if analysis.brightness < self.cfg.dark_threshold {
            warnings.push(Warning::TooDark);
        } else if analysis.brightness > self.cfg.bright_threshold {
            warnings.push(Warning::TooBright);
        }
        let key = Some(upload.garment_id.clone().into_bytes());
        if analysis.width.min(analysis.height) < self.cfg.min_side {
            let mut s = StatusEvent::rejected(
                &upload,
                self.name(),
                Reason::TooSmall,
                format!(
                    "image is {}x{}; the shorter side must be at least {} px",
                    analysis.width, analysis.height, self.cfg.min_side
                ),
            );
            s.warnings = warnings;
            return Outcome::Emit(vec![self.status_emit(key, &s)]);
        }
        let mut out = Vec::with_capacity(2);
        if self.terminal {
            let mut s = StatusEvent::for_upload(&upload, Status::Processed, self.name());
            s.warnings = warnings.clone();
            out.push(self.status_emit(key.clone(), &s));
        }
        // The upload as a record, with any fields a newer upload service added (kept).
        let mut record =
            GarmentRecord::from_json(msg.payload()).unwrap_or_else(|_| GarmentRecord::new(upload));
        record.quality = Some(QualityReport {
            width: analysis.width,
            height: analysis.height,
            blur_score: analysis.blur_score,
            brightness: analysis.brightness,
            warnings,
            extra: Default::default(),
        });
        if self.terminal {
            // Last stage of the pipeline: when the garment was done, which the sinks read
            // (as after the model stages; see flashfit-vision's enrich).
            record.processed_at = Some(chrono::Utc::now());
        }
        let value = serde_json::to_vec(&record);
        match value {
            Ok(value) => out.insert(
                0,
                Emit {
                    topic: self.output.clone(),
                    key,
                    value,
                },
            ),
            Err(e) => return Outcome::Internal(format!("cannot serialise record: {e}")),
        }
        Outcome::Emit(out)
    }

    fn status_emit(&self, key: Option<Vec<u8>>, s: &StatusEvent) -> Emit {
        Emit {
            topic: self.status.clone(),
            key,
            value: s.to_json(),
        }
    }
}

#[async_trait]
impl Stage for QualityStage {
    fn name(&self) -> &str {
        "quality"
    }

    fn input_topic(&self) -> &str {
        &self.input
    }

    fn output_topics(&self) -> Vec<String> {
        vec![self.output.clone(), self.status.clone()]
    }

    fn status_topic(&self) -> Option<&str> {
        Some(&self.status)
    }

    fn on_dead_letter(&self, msg: &Message, reason: Reason, message: &str) -> Vec<Emit> {
        flashfit_runtime::failed_upload_status(&self.status, self.name(), msg, reason, message)
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        let this = self;
        futures::stream::iter(batch)
            .map(|m| this.one(m))
            .buffered(self.concurrency)
            .collect()
            .await
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;

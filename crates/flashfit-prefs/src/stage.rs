//! `flashfit worker feedback`: consumes `flashfit.feedback`, looks up the garments each event
//! names (the user's garment records: category, primary colour, style tags) and applies it
//! to the user's weights ([`Store::apply`], idempotent by `event_id`). Invalid events are
//! dead-lettered; database or lookup failures are retried, never dropped.

use async_trait::async_trait;
use flashfit_outfits::Item;
use flashfit_runtime::{Message, Outcome, Stage};
use flashfit_schema::{FeedbackEvent, Reason};

use crate::{Applied, Store};

/// Where garment records come from (LanceDB in production).
#[async_trait]
pub trait GarmentLookup: Send + Sync + 'static {
    /// The user's garments among `ids` (unknown ids are left out). An error is retried.
    async fn garments(&self, user_id: &str, ids: &[String]) -> Result<Vec<Item>, String>;
}

/// How long after its `ts` an event naming garments the lookup does not know yet is retried
/// rather than applied without them, unless configured (`[feedback]
/// unknown_garment_grace_ms`): feedback can arrive before its garment reached LanceDB (the
/// lance sink commits in batches), and applying it early would lose the weight change for good
/// (a replay is a duplicate). After this, the unknown ids are taken to be wrong (another
/// user's garment, a deleted one, a typo) and the event is applied with the garments found.
pub const UNKNOWN_GARMENT_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

pub struct FeedbackStage<L> {
    url: String,
    store: tokio::sync::OnceCell<Store>,
    lookup: L,
    pub input: String,
    grace: chrono::Duration,
}

impl<L: GarmentLookup> FeedbackStage<L> {
    /// `database_url`: `sqlite://…` or `postgres://…`; connected (and migrated) on first use.
    pub fn new(database_url: &str, lookup: L, input: String) -> Self {
        FeedbackStage {
            url: database_url.to_owned(),
            store: tokio::sync::OnceCell::new(),
            lookup,
            input,
            grace: chrono::Duration::from_std(UNKNOWN_GARMENT_GRACE).unwrap_or_default(),
        }
    }

    /// Sets how long events naming unknown garments wait for them ([`UNKNOWN_GARMENT_GRACE`]).
    pub fn with_grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = chrono::Duration::from_std(grace).unwrap_or_default();
        self
    }

    pub async fn store(&self) -> crate::Result<&Store> {
        self.store
            .get_or_try_init(|| Store::connect(&self.url))
            .await
    }

    async fn handle(&self, m: &Message) -> Outcome {
        let event = match FeedbackEvent::from_json(m.payload()) {
            Ok(e) => e,
            Err(e) => {
                return Outcome::BadInput {
                    reason: Reason::InvalidEvent,
                    message: e.0,
                };
            }
        };
        let found = match self
            .lookup
            .garments(&event.user_id, &event.garment_ids)
            .await
        {
            Ok(g) => g,
            Err(e) => return Outcome::Retry(format!("garment lookup: {e}")),
        };
        if found.len() < event.garment_ids.len() {
            if chrono::Utc::now() - event.ts < self.grace {
                return Outcome::Retry(format!(
                    "feedback {} names {} garments not (yet) in the user's wardrobe",
                    event.event_id,
                    event.garment_ids.len() - found.len()
                ));
            }
            tracing::debug!(
                event_id = event.event_id,
                asked = event.garment_ids.len(),
                found = found.len(),
                "feedback names garments the user does not have"
            );
        }
        let store = match self.store().await {
            Ok(s) => s,
            // Unreachable or misconfigured: both need time or an operator, not a dead letter.
            Err(e) => return Outcome::Retry(format!("preference store: {e}")),
        };
        match store.apply(&event, &found).await {
            Ok(Applied::New { .. }) | Ok(Applied::Duplicate) => Outcome::Emit(Vec::new()),
            Err(e) if e.is_retryable() => Outcome::Retry(format!("preference store: {e}")),
            Err(e) => Outcome::Internal(format!("preference store refused the event: {e}")),
        }
    }
}

#[async_trait]
impl<L: GarmentLookup> Stage for FeedbackStage<L> {
    fn name(&self) -> &str {
        "feedback"
    }

    fn input_topic(&self) -> &str {
        &self.input
    }

    fn output_topics(&self) -> Vec<String> {
        Vec::new()
    }

    async fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        // In order: weights are sums, but a user's events land in the order they happened.
        let mut out = Vec::with_capacity(batch.len());
        for m in &batch {
            out.push(self.handle(m).await);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use flashfit_config::RuntimeConfig;
    use flashfit_runtime::harness;

    use super::*;

    /// `user`'s weights as the stage's store has them.
    async fn prefs<L: GarmentLookup>(
        stage: &FeedbackStage<L>,
        user: &str,
    ) -> flashfit_outfits::Preferences {
        stage
            .store()
            .await
            .expect("store")
            .preferences(user)
            .await
            .expect("prefs")
    }

    struct Wardrobe {
        items: HashMap<String, Item>,
        fail_first: AtomicUsize,
    }

    #[async_trait]
    impl GarmentLookup for Wardrobe {
        async fn garments(&self, user_id: &str, ids: &[String]) -> Result<Vec<Item>, String> {
            if self.fail_first.load(Ordering::SeqCst) > 0 {
                self.fail_first.fetch_sub(1, Ordering::SeqCst);
                return Err("lancedb unreachable".into());
            }
            assert_eq!(user_id, "u1");
            Ok(ids
                .iter()
                .filter_map(|i| self.items.get(i).cloned())
                .collect())
        }
    }

    fn event(id: &str, signal: &str, garments: &[&str]) -> (Option<Vec<u8>>, Vec<u8>) {
        let v = serde_json::json!({"event_id": id, "user_id": "u1", "signal": signal,
            "garment_ids": garments, "ts": "2026-11-22T10:00:00Z"});
        (Some(b"u1".to_vec()), serde_json::to_vec(&v).expect("json"))
    }

    #[tokio::test]
    async fn events_move_weights_once_bad_ones_are_dead_lettered_and_lookups_retried() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let item = Item {
            garment_id: "g1".into(),
            category: "jeans".into(),
            color_primary: Some("blue".into()),
            style_tags: vec!["casual".into()],
            ..Item::default()
        };
        let lookup = Wardrobe {
            items: HashMap::from([("g1".to_string(), item)]),
            fail_first: AtomicUsize::new(1),
        };
        let stage = Arc::new(FeedbackStage::new(&url, lookup, "flashfit.feedback".into()));
        let input = vec![
            event("f1", "wear", &["g1", "nope"]),
            event("f2", "like", &["g1"]),
            (None, b"{not json".to_vec()),
            event("f1", "wear", &["g1"]), // redelivered
            event("f3", "shrug", &["g1"]),
        ];
        let cfg = RuntimeConfig {
            retry_initial_backoff_ms: 1,
            ..RuntimeConfig::default()
        };
        let run = harness::run(stage.clone(), input, cfg).await;
        assert!(run.result.unfinished.is_empty());
        assert_eq!(
            run.on("flashfit.dlq.feedback").len(),
            2,
            "bad JSON and unknown signal"
        );
        let p = prefs(&stage, "u1").await;
        assert_eq!(p.feedback_count, 2);
        assert!((p.category["jeans"] - 0.3).abs() < 1e-9, "{p:?}");
        assert!((p.style["casual"] - 0.3).abs() < 1e-9, "{p:?}");
    }

    /// Feedback that arrives before its garment reached the wardrobe waits for it instead of
    /// being applied without it (and lost: a replay would be a duplicate).
    #[tokio::test]
    async fn feedback_for_a_garment_not_yet_stored_waits_for_it() {
        struct Late(AtomicUsize);
        #[async_trait]
        impl GarmentLookup for Late {
            async fn garments(&self, _: &str, ids: &[String]) -> Result<Vec<Item>, String> {
                // The garment appears on the third lookup.
                if self.0.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Ok(Vec::new());
                }
                Ok(ids
                    .iter()
                    .map(|i| Item {
                        garment_id: i.clone(),
                        category: "jeans".into(),
                        ..Item::default()
                    })
                    .collect())
            }
        }
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let stage = Arc::new(FeedbackStage::new(
            &url,
            Late(AtomicUsize::new(0)),
            "flashfit.feedback".into(),
        ));
        let v = serde_json::json!({"event_id": "now", "user_id": "u1", "signal": "like",
            "garment_ids": ["g9"], "ts": chrono::Utc::now().to_rfc3339()});
        let cfg = RuntimeConfig {
            retry_initial_backoff_ms: 1,
            ..RuntimeConfig::default()
        };
        let run = harness::run(
            stage.clone(),
            vec![(None, serde_json::to_vec(&v).expect("json"))],
            cfg,
        )
        .await;
        assert!(run.result.unfinished.is_empty());
        let p = prefs(&stage, "u1").await;
        assert_eq!(p.feedback_count, 1);
        assert!((p.category["jeans"] - 0.1).abs() < 1e-9, "{p:?}");
    }
}

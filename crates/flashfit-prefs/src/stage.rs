//! `flashfit worker feedback`: consumes `flashfit.feedback`, looks up the garments each event
//! names (the user's garment records: category, primary colour, style tags) and applies it
//! to the user's weights ([`Store::apply`], idempotent by `event_id`), and logs one KPI event
//! per feedback event to `flashfit.kpi` ([`kpi_event`]: id `feedback:<event_id>`, so a
//! redelivery or replay logs the same event again and every rollup counts it once). Invalid
//! events are dead-lettered; database or lookup failures are retried, never dropped.

use std::collections::BTreeMap;

use async_trait::async_trait;
use flashfit_config::Experiment;
use flashfit_outfits::{Item, experiments};
use flashfit_runtime::{Emit, Message, Outcome, Stage};
use flashfit_schema::{FeedbackEvent, KpiEvent, KpiType, Reason, Signal};

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
    kpi: Option<KpiLog>,
}

/// Where and with which experiments the stage logs KPI events.
struct KpiLog {
    topic: String,
    experiments: BTreeMap<String, Experiment>,
    hash: String,
}

/// The KPI event logged for an applied feedback event: the same type (`like`, `dislike`,
/// `wear`, `skip`, `click`), user, time, outfit and garments; id `feedback:<event_id>`; the
/// user's variants in the experiments whose window holds the event's time.
pub fn kpi_event(e: &FeedbackEvent, experiments: &BTreeMap<String, Experiment>) -> KpiEvent {
    let kind = match e.signal {
        Signal::Like => KpiType::Like,
        Signal::Dislike => KpiType::Dislike,
        Signal::Wear => KpiType::Wear,
        Signal::Skip => KpiType::Skip,
        Signal::Click => KpiType::Click,
    };
    KpiEvent {
        event_id: format!("feedback:{}", e.event_id),
        user_id: e.user_id.clone(),
        kind,
        ts: e.ts,
        variants: experiments::variants_at(experiments, &e.user_id, e.ts),
        duration_s: None,
        value: None,
        outfit_id: e.outfit_id.clone(),
        garment_ids: e.garment_ids.clone(),
        rank: None,
        score: None,
        scorer: None,
        model_versions: Vec::new(),
        experiments_hash: Some(experiments::config_hash(experiments)),
    }
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
            kpi: None,
        }
    }

    /// Also log a KPI event per feedback event to `topic`, with the user's variants in
    /// `experiments`.
    pub fn with_kpi(mut self, topic: String, experiments: BTreeMap<String, Experiment>) -> Self {
        self.kpi = Some(KpiLog {
            topic,
            hash: experiments::config_hash(&experiments),
            experiments,
        });
        self
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
            // Bounded by the time this worker has held the message as well as the event's
            // age, so a clock-skewed `ts` cannot hold the partition.
            let waited = chrono::Duration::from_std(m.waited()).unwrap_or(self.grace);
            if chrono::Utc::now() - event.ts < self.grace && waited < self.grace {
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
            // A duplicate logs its KPI event again: the first run may have stopped between
            // the database commit and the publish; rollups count the id once.
            Ok(Applied::New { .. }) | Ok(Applied::Duplicate) => Outcome::Emit(self.log(&event)),
            Err(e) if e.is_retryable() => Outcome::Retry(format!("preference store: {e}")),
            Err(e) => Outcome::Internal(format!("preference store refused the event: {e}")),
        }
    }
}

impl<L> FeedbackStage<L> {
    fn log(&self, event: &FeedbackEvent) -> Vec<Emit> {
        let Some(k) = &self.kpi else {
            return Vec::new();
        };
        let mut e = kpi_event(event, &k.experiments);
        e.experiments_hash = Some(k.hash.clone());
        match serde_json::to_vec(&e) {
            Ok(value) => vec![Emit {
                topic: k.topic.clone(),
                key: Some(e.user_id.into_bytes()),
                value,
            }],
            Err(err) => {
                tracing::error!(error = %err, "KPI event not encodable");
                Vec::new()
            }
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
        self.kpi.iter().map(|k| k.topic.clone()).collect()
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

    /// A wardrobe of one pair of jeans, `g1`, whose lookups never fail.
    fn jeans_wardrobe() -> Wardrobe {
        let item = Item {
            garment_id: "g1".into(),
            category: "jeans".into(),
            ..Item::default()
        };
        Wardrobe {
            items: HashMap::from([("g1".to_string(), item)]),
            fail_first: AtomicUsize::new(0),
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

    /// With a KPI topic, every applied feedback event is logged once more as a KPI event of
    /// the same type with the user's variants; a redelivery logs the same id again (rollups
    /// count an id once), invalid events log nothing.
    #[tokio::test]
    async fn applied_feedback_is_logged_as_kpi_events_with_the_users_variants() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let lookup = jeans_wardrobe();
        let mut experiments = flashfit_config::default_experiments();
        experiments
            .get_mut("outfit_scorer")
            .expect("default experiment")
            .start = Some("2026-11-22T10:30:00Z".into());
        let stage = Arc::new(
            FeedbackStage::new(&url, lookup, "flashfit.feedback".into())
                .with_kpi("flashfit.kpi".into(), experiments.clone()),
        );
        let mut late = event("f2", "skip", &["g1"]);
        late.1 = String::from_utf8(late.1)
            .expect("utf8")
            .replace("10:00:00Z", "11:00:00Z")
            .into_bytes();
        let input = vec![
            event("f1", "like", &["g1"]),
            late,
            event("f1", "like", &["g1"]), // redelivered
            (None, b"{not json".to_vec()),
        ];
        let run = harness::run(stage.clone(), input, RuntimeConfig::default()).await;
        assert!(run.result.unfinished.is_empty());
        let logged: Vec<KpiEvent> = run
            .on("flashfit.kpi")
            .iter()
            .map(|r| serde_json::from_slice(&r.value).expect("kpi event"))
            .collect();
        let ids: Vec<&str> = logged.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["feedback:f1", "feedback:f2", "feedback:f1"]);
        assert_eq!(logged[0].kind, KpiType::Like);
        assert_eq!(logged[1].kind, KpiType::Skip);
        // f1 (10:00) is before the experiment's start, f2 (11:00) inside its window.
        assert!(logged[0].variants.is_empty(), "{:?}", logged[0]);
        assert_eq!(logged[1].variants["outfit_scorer"], "control");
        assert_eq!(
            logged[1].experiments_hash.as_deref(),
            Some(experiments::config_hash(&experiments).as_str())
        );
        assert_eq!(logged[0], logged[2], "the redelivery logs the same event");
        assert_eq!(prefs(&stage, "u1").await.feedback_count, 2);
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

    /// One feedback event stalls nothing. One dated far in the future is invalid at
    /// once; one naming a garment that never appears, dated now, is applied without it once the
    /// worker has held it for the grace (counted from receipt); the ordinary events behind them
    /// are applied.
    #[tokio::test]
    async fn poisoned_feedback_stalls_nothing_behind_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let lookup = jeans_wardrobe();
        let stage = Arc::new(
            FeedbackStage::new(&url, lookup, "flashfit.feedback".into())
                .with_grace(std::time::Duration::from_millis(300)),
        );
        let at = |id: &str, garment: &str, ts: String| {
            let v = serde_json::json!({"event_id": id, "user_id": "u1", "signal": "like",
                "garment_ids": [garment], "ts": ts});
            (Some(b"u1".to_vec()), serde_json::to_vec(&v).expect("json"))
        };
        let now = || chrono::Utc::now().to_rfc3339();
        let mut input = vec![
            at("future", "missing", "9999-01-01T00:00:00Z".into()),
            at("never", "missing", now()),
        ];
        for i in 0..5 {
            input.push(at(&format!("ok{i}"), "g1", now()));
        }
        let cfg = RuntimeConfig {
            retry_initial_backoff_ms: 20,
            retry_max_backoff_ms: 100,
            ..RuntimeConfig::default()
        };
        let run = harness::run(stage.clone(), input, cfg).await;
        assert!(run.result.unfinished.is_empty());
        let dlq = run.on("flashfit.dlq.feedback");
        assert_eq!(dlq.len(), 1, "only the future-dated event is dead-lettered");
        let p = prefs(&stage, "u1").await;
        assert_eq!(
            p.feedback_count, 6,
            "five ordinary events and the one given up on"
        );
    }
}

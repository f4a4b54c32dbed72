//! The recommendation service behind `GET /v1/users/{user_id}/outfits` (wardrobe from LanceDB,
//! preferences from the SQL store, the A/B variant's scorer, impressions to `flashfit.kpi`).

use std::collections::BTreeMap;
use std::sync::Arc;

use flashfit_config::{Config, ScoreWeights};
use flashfit_outfits::{Item, Outfit, Request, RuleScorer, Scorer, experiments};
use flashfit_schema::{KpiEvent, KpiType};
use tokio_util::sync::CancellationToken;

use flashfit_pipeline::{Error, Result};

/// The recommendation's internal timings, by phase (`wardrobe`: LanceDB read, `preferences`:
/// SQL read, `score`: candidates and ranking, `impressions`: queueing the KPI events), served
/// on `serve`'s `/metrics`.
pub static PHASES: std::sync::LazyLock<prometheus::HistogramVec> = std::sync::LazyLock::new(|| {
    prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(
            "flashfit_recommend_phase_seconds",
            "Time spent in each phase of an outfit recommendation.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
        &["phase"],
    )
    .expect("valid metric definition")
});

fn timed(phase: &str, since: std::time::Instant) -> std::time::Instant {
    PHASES
        .with_label_values(&[phase])
        .observe(since.elapsed().as_secs_f64());
    std::time::Instant::now()
}

/// A learned compatibility model (`[model.compatibility]` in the manifest) as a re-ranker.
pub struct OnnxReranker {
    pub model: Arc<flashfit_models::compat::CompatModel>,
    /// Fires when the request that asked is gone (timed out): scoring stops between batches.
    pub cancel: CancellationToken,
}

/// Candidates the re-ranker scores between two looks at its request's cancellation.
const RERANK_BATCH: usize = 64;

impl flashfit_outfits::Reranker for OnnxReranker {
    fn name(&self) -> &str {
        &self.model.name
    }

    fn rerank(
        &self,
        items: &[Item],
        candidates: &[Vec<usize>],
    ) -> std::result::Result<Vec<f64>, String> {
        let mut outfits = Vec::with_capacity(candidates.len());
        for c in candidates {
            let mut vectors = Vec::with_capacity(c.len());
            for &i in c {
                let v = items[i].embedding.as_deref().ok_or_else(|| {
                    format!("garment {} has no image vector", items[i].garment_id)
                })?;
                vectors.push(v);
            }
            outfits.push(vectors);
        }
        let mut scores = Vec::with_capacity(outfits.len());
        for batch in outfits.chunks(RERANK_BATCH) {
            if self.cancel.is_cancelled() {
                return Err("cancelled: the request timed out".into());
            }
            let s = self.model.score(batch).map_err(|e| e.to_string())?;
            scores.extend(s.into_iter().map(f64::from));
        }
        Ok(scores)
    }
}

/// The user's variant name, the rule scorer, and the variant's learned re-ranker (if any).
type Scoring = (Option<String>, Box<dyn Scorer>, Option<OnnxReranker>);

/// A user's assignments, as `GET /v1/users/{user_id}/variants` returns them: the app sends
/// `variants` (and may send `experiments_hash`) with its KPI events.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Assignments {
    pub user_id: String,
    /// Experiment → variant, for the experiments running now that the user is in.
    pub variants: BTreeMap<String, String>,
    /// Which experiments config assigned them ([`experiments::config_hash`]).
    pub experiments_hash: String,
}

/// A recommendation answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outfits {
    pub outfits: Vec<Outfit>,
    pub variant: Option<String>,
}

/// Everything `GET /v1/users/{user_id}/outfits` needs, built once per process.
pub struct Recommender {
    config: Config,
    /// Learned models by manifest name, loaded on first use.
    models: std::sync::Mutex<
        std::collections::HashMap<String, Arc<flashfit_models::compat::CompatModel>>,
    >,
    store: tokio::sync::OnceCell<flashfit_prefs::Store>,
    kpi: Option<(rdkafka::producer::FutureProducer, String)>,
}

impl Recommender {
    /// Waits (at most `timeout`) for impressions still queued in the producer: called when
    /// `serve` stops, so a shutdown loses none that were acknowledged to the app.
    pub async fn flush(&self, timeout: std::time::Duration) {
        use rdkafka::producer::Producer;
        let Some((producer, _)) = &self.kpi else {
            return;
        };
        let p = producer.clone();
        match tokio::task::spawn_blocking(move || p.flush(timeout)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "impressions not all flushed at shutdown"),
            Err(e) => tracing::warn!(error = %e, "impression flush task failed"),
        }
    }

    /// Impressions go to `flashfit.kpi` when a broker is configured.
    pub fn new(config: &Config) -> Result<Self> {
        let kpi = match config.kafka.brokers {
            Some(_) => Some((
                flashfit_runtime::kafka::producer(&config.kafka)?,
                flashfit_schema::Topics::new(config.kafka.topic_prefix.clone()).kpi(),
            )),
            None => {
                tracing::warn!("no Kafka brokers configured: impressions are not logged");
                None
            }
        };
        Ok(Recommender {
            config: config.clone(),
            models: Default::default(),
            store: tokio::sync::OnceCell::new(),
            kpi,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn store(&self) -> flashfit_prefs::Result<&flashfit_prefs::Store> {
        self.store
            .get_or_try_init(|| flashfit_prefs::Store::connect(self.config.database_url.expose()))
            .await
    }

    fn reranker(&self, name: &str) -> Result<OnnxReranker> {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = models.get(name) {
            return Ok(OnnxReranker {
                model: m.clone(),
                cancel: CancellationToken::new(),
            });
        }
        let m = Arc::new(
            flashfit_models::compat::CompatModel::load(
                &flashfit_pipeline::model_dir(&self.config),
                name,
                1,
            )
            .map_err(|e| Error::Invalid(format!("compatibility model {name}: {e}")))?,
        );
        models.insert(name.to_owned(), m.clone());
        Ok(OnnxReranker {
            model: m,
            cancel: CancellationToken::new(),
        })
    }

    /// The user's variants in the experiments running now.
    pub fn assignments(&self, user_id: &str) -> Assignments {
        Assignments {
            user_id: user_id.to_owned(),
            variants: experiments::variants_at(
                &self.config.experiments,
                user_id,
                chrono::Utc::now(),
            ),
            experiments_hash: experiments::config_hash(&self.config.experiments),
        }
    }

    /// The user's A/B variant of the outfit experiment (while it runs), the rule scorer
    /// (candidate generation) and, when the variant's scorer is a learned model, its re-ranker.
    fn scorer_for(&self, user_id: &str) -> Result<Scoring> {
        let cfg = &self.config.outfits;
        let name = &cfg.experiment;
        let variant = self
            .config
            .experiments
            .get(name)
            .filter(|e| e.covers(chrono::Utc::now()))
            .and_then(|e| experiments::assign(name, e, user_id));
        let weights: ScoreWeights = variant.and_then(|v| v.weights).unwrap_or(cfg.weights);
        let scorer = variant
            .and_then(|v| v.scorer.clone())
            .unwrap_or_else(|| cfg.scorer.clone());
        let reranker = match scorer.as_str() {
            "rules" => None,
            model => Some(self.reranker(model)?),
        };
        Ok((
            variant.map(|v| v.name.clone()),
            Box::new(RuleScorer::with_weights(cfg, weights)),
            reranker,
        ))
    }

    /// The user's top outfits; logs one impression KPI event per returned outfit.
    pub async fn recommend(
        &self,
        table: &lancedb::Table,
        user_id: &str,
        req: &Request,
    ) -> std::result::Result<Outfits, RecommendError> {
        self.recommend_unless(table, user_id, req, &CancellationToken::new())
            .await
    }

    /// [`Recommender::recommend`] for a request that may go away: scoring runs on a blocking
    /// thread (not a runtime worker), the re-ranker stops between batches once `cancel`
    /// fires, and a cancelled request logs no impression — impressions are written once, for a
    /// list that is answered.
    pub async fn recommend_unless(
        &self,
        table: &lancedb::Table,
        user_id: &str,
        req: &Request,
        cancel: &CancellationToken,
    ) -> std::result::Result<Outfits, RecommendError> {
        let (variant, scorer, mut reranker) = self
            .scorer_for(user_id)
            .map_err(RecommendError::Unavailable)?;
        if let Some(r) = reranker.as_mut() {
            r.cancel = cancel.clone();
        }
        let t = std::time::Instant::now();
        let wardrobe = flashfit_lance::wardrobe::items(table, user_id, None, reranker.is_some())
            .await
            .map_err(|e| RecommendError::Unavailable(Error::Invalid(e.to_string())))?;
        let t = timed("wardrobe", t);
        // Malformed requests are a 400 even for an empty wardrobe.
        let prefs = if wardrobe.is_empty() {
            None
        } else {
            match self.store().await {
                Ok(s) => match s.preferences(user_id).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "preferences unavailable; not personalising");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "preference store unavailable; not personalising");
                    None
                }
            }
        };
        let t = timed("preferences", t);
        let scorer_name = reranker
            .as_ref()
            .map(|r| r.model.name.clone())
            .unwrap_or_else(|| "rules".into());
        let (req, cfg) = (req.clone(), self.config.outfits.clone());
        let scored = tokio::task::spawn_blocking(move || {
            let outfits = flashfit_outfits::recommend_reranked(
                &wardrobe,
                &req,
                scorer.as_ref(),
                reranker
                    .as_ref()
                    .map(|r| r as &dyn flashfit_outfits::Reranker),
                prefs.as_ref(),
                &cfg,
            );
            (outfits, wardrobe)
        })
        .await
        .map_err(|e| RecommendError::Unavailable(Error::Invalid(format!("scoring task: {e}"))))?;
        let (outfits, wardrobe) = scored;
        let outfits = outfits.map_err(|e| match e {
            flashfit_outfits::Error::BadRequest(m) => RecommendError::BadRequest(m),
            flashfit_outfits::Error::Model(m) => RecommendError::Unavailable(Error::Invalid(m)),
        })?;
        let t = timed("score", t);
        if cancel.is_cancelled() {
            return Err(RecommendError::Unavailable(Error::Invalid(
                "cancelled: the request timed out".into(),
            )));
        }
        self.log_impressions(user_id, &outfits, &wardrobe, &scorer_name);
        timed("impressions", t);
        Ok(Outfits { outfits, variant })
    }

    /// One impression per returned outfit: its rank, score and scorer, and the models that
    /// made its garments' data.
    fn log_impressions(&self, user_id: &str, outfits: &[Outfit], wardrobe: &[Item], scorer: &str) {
        let Some((producer, topic)) = &self.kpi else {
            return;
        };
        let a = self.assignments(user_id);
        let now = chrono::Utc::now();
        let models_of: std::collections::HashMap<&str, &[String]> = wardrobe
            .iter()
            .map(|i| (i.garment_id.as_str(), i.model_versions.as_slice()))
            .collect();
        for (rank, o) in outfits.iter().enumerate() {
            let models: std::collections::BTreeSet<String> = o
                .garment_ids
                .iter()
                .filter_map(|g| models_of.get(g.as_str()))
                .flat_map(|m| m.iter().cloned())
                .collect();
            let event = KpiEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                user_id: user_id.to_owned(),
                kind: KpiType::Impression,
                ts: now,
                variants: a.variants.clone(),
                duration_s: None,
                value: None,
                outfit_id: Some(outfit_id(&o.garment_ids)),
                garment_ids: o.garment_ids.clone(),
                rank: Some(rank as u32 + 1),
                score: Some(o.score),
                scorer: Some(scorer.to_owned()),
                model_versions: models.into_iter().collect(),
                experiments_hash: Some(a.experiments_hash.clone()),
            };
            let Ok(value) = serde_json::to_vec(&event) else {
                continue;
            };
            let (producer, topic, key) = (producer.clone(), topic.clone(), user_id.to_owned());
            // Off the request path; the idempotent producer retries, failures are logged.
            tokio::spawn(async move {
                let record = rdkafka::producer::FutureRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(&value);
                if let Err((e, _)) = producer
                    .send(record, std::time::Duration::from_secs(30))
                    .await
                {
                    tracing::warn!(error = %e, "impression not logged");
                }
            });
        }
    }
}

/// A stable id for an outfit: its garment ids, joined.
pub fn outfit_id(garment_ids: &[String]) -> String {
    garment_ids.join("+")
}

#[derive(Debug)]
pub enum RecommendError {
    BadRequest(String),
    Unavailable(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_variant_picks_the_rule_weights() {
        let mut config = Config::default();
        config.kafka.brokers = None;
        let heavy = ScoreWeights {
            color_harmony: 1.0,
            formality_match: 0.0,
            category_combo: 0.0,
        };
        config.experiments.insert(
            "outfit_scorer".into(),
            flashfit_config::Experiment {
                salt: "t".into(),
                variants: vec![
                    flashfit_config::Variant {
                        name: "control".into(),
                        weight: 1.0,
                        scorer: None,
                        weights: None,
                    },
                    flashfit_config::Variant {
                        name: "colour_only".into(),
                        weight: 1.0,
                        scorer: None,
                        weights: Some(heavy),
                    },
                ],
                control: None,
                start: None,
                end: None,
                exposure: 1.0,
                guardrails: Vec::new(),
            },
        );
        let r = Recommender::new(&config).expect("recommender");
        let items = vec![Item {
            garment_id: "g".into(),
            category: "jeans".into(),
            color_primary: Some("blue".into()),
            ..Item::default()
        }];
        let mut seen = std::collections::BTreeMap::new();
        for u in 0..40 {
            let user = format!("user-{u}");
            let (variant, scorer, reranker) = r.scorer_for(&user).expect("scorer");
            assert!(reranker.is_none());
            // One garment: colour 0.8, formality 1.0, combo 0.7.
            let c = scorer.prepare(&items).score(&[0]).compatibility;
            let want = match variant.as_deref() {
                Some("control") => 0.35 * 0.8 + 0.35 + 0.3 * 0.7,
                Some("colour_only") => 0.8,
                other => panic!("{other:?}"),
            };
            assert!((c - want).abs() < 1e-9, "{variant:?}: {c}");
            *seen.entry(variant.unwrap_or_default()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 2, "both variants among 40 users: {seen:?}");
    }

    #[test]
    fn a_learned_compatibility_model_drops_in_through_the_manifest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        std::fs::write(
            tmp.path().join("manifest.local.toml"),
            "[[model]]\nname = \"tiny-compat\"\nversion = \"1\"\n[model.compatibility]\n\
             items = \"items\"\nmask = \"mask\"\nscore = \"score\"\ndim = 1280\n",
        )
        .expect("manifest");
        std::fs::create_dir_all(tmp.path().join("tiny-compat/1")).expect("mkdir");
        std::fs::copy(
            fixtures.join("models/tiny-compat.onnx"),
            tmp.path().join("tiny-compat/1/model.onnx"),
        )
        .expect("copy");
        let model = flashfit_models::compat::CompatModel::load(
            &flashfit_models::ModelDir::new(tmp.path()),
            "tiny-compat",
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let reranker = OnnxReranker {
            model: Arc::new(model),
            cancel: CancellationToken::new(),
        };
        // The model likes embedding[0]: the boots and the jeans have it.
        let item = |id: &str, category: &str, liked: bool| {
            let mut v = vec![0f32; 1280];
            if liked {
                v[0] = 1.0;
            }
            Item {
                garment_id: id.into(),
                category: category.into(),
                color_primary: Some("black".into()),
                formality: Some(0.5),
                embedding: Some(v),
                model_versions: Vec::new(),
                ..Item::default()
            }
        };
        let wardrobe = vec![
            item("tee", "t_shirt", false),
            item("jeans", "jeans", true),
            item("chinos", "chinos", false),
            item("boots", "boots", true),
            item("sneakers", "sneakers", false),
        ];
        let cfg = flashfit_config::OutfitsConfig {
            outerwear: false,
            ..Default::default()
        };
        let rules = RuleScorer::new(&cfg);
        let req = Request {
            k: 4,
            ..Request::default()
        };
        let out = flashfit_outfits::recommend_reranked(
            &wardrobe,
            &req,
            &rules,
            Some(&reranker),
            None,
            &cfg,
        )
        .expect("reranked");
        assert_eq!(out[0].garment_ids, ["tee", "jeans", "boots"], "{out:?}");
        let want = 1.0 / (1.0 + (-4.0f64 * 2.0 / 3.0).exp());
        assert!(
            (out[0].breakdown.compatibility - want).abs() < 1e-5,
            "{out:?}"
        );
        // Without the model the rules rank differently (t_shirt + jeans is a listed pair
        // either way; the scores differ).
        let plain =
            flashfit_outfits::recommend(&wardrobe, &req, &rules, None, &cfg).expect("rules");
        assert_ne!(plain[0].score, out[0].score);
        // A garment without a vector is an error, not a silent skip.
        let mut no_vec = wardrobe.clone();
        no_vec[1].embedding = None;
        let err = flashfit_outfits::recommend_reranked(
            &no_vec,
            &req,
            &rules,
            Some(&reranker),
            None,
            &cfg,
        )
        .expect_err("missing vector");
        assert!(err.to_string().contains("no image vector"), "{err}");
        // The request went away: the re-ranker stops instead of scoring on.
        reranker.cancel.cancel();
        let err = flashfit_outfits::recommend_reranked(
            &wardrobe,
            &req,
            &rules,
            Some(&reranker),
            None,
            &cfg,
        )
        .expect_err("cancelled");
        assert!(err.to_string().contains("cancelled"), "{err}");
    }
}

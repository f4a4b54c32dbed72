//! Wiring for personalisation: the feedback worker's garment lookup (LanceDB), and the
//! recommendation service behind `GET /v1/users/{user_id}/outfits` (wardrobe from LanceDB,
//! preferences from the SQL store, the A/B variant's scorer, impressions to `flashfit.kpi`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use flashfit_config::{Config, ScoreWeights};
use flashfit_outfits::{Item, Outfit, Request, RuleScorer, Scorer, experiments};
use flashfit_prefs::stage::GarmentLookup;
use flashfit_schema::{KpiEvent, KpiType};

use crate::{Error, Result};

/// Garment records from the LanceDB garments table (opened on first use).
pub struct LanceLookup {
    uri: String,
    s3: flashfit_config::S3Config,
    table_name: String,
    table: tokio::sync::OnceCell<lancedb::Table>,
}

impl LanceLookup {
    pub fn new(config: &Config) -> Self {
        LanceLookup {
            uri: config.lancedb_uri.clone(),
            s3: config.s3.clone(),
            table_name: config.lance.table.clone(),
            table: tokio::sync::OnceCell::new(),
        }
    }

    async fn table(&self) -> flashfit_lance::Result<&lancedb::Table> {
        self.table
            .get_or_try_init(|| async {
                let db = flashfit_lance::connect(&self.uri, &self.s3).await?;
                flashfit_lance::garments(&db, &self.table_name).await
            })
            .await
    }
}

#[async_trait]
impl GarmentLookup for LanceLookup {
    async fn garments(
        &self,
        user_id: &str,
        ids: &[String],
    ) -> std::result::Result<Vec<Item>, String> {
        let t = self.table().await.map_err(|e| e.to_string())?;
        flashfit_lance::wardrobe::items(t, user_id, Some(ids), false)
            .await
            .map_err(|e| e.to_string())
    }
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
    store: tokio::sync::OnceCell<flashfit_prefs::Store>,
    kpi: Option<(rdkafka::producer::FutureProducer, String)>,
}

impl Recommender {
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
            store: tokio::sync::OnceCell::new(),
            kpi,
        })
    }

    async fn store(&self) -> flashfit_prefs::Result<&flashfit_prefs::Store> {
        self.store
            .get_or_try_init(|| flashfit_prefs::Store::connect(self.config.database_url.expose()))
            .await
    }

    /// The user's A/B variant of the outfit experiment and the scorer it selects.
    fn scorer_for(&self, user_id: &str) -> Result<(Option<String>, Box<dyn Scorer>)> {
        let cfg = &self.config.outfits;
        let name = &cfg.experiment;
        let variant = self
            .config
            .experiments
            .get(name)
            .and_then(|e| experiments::assign(name, e, user_id));
        let weights: ScoreWeights = variant.and_then(|v| v.weights).unwrap_or(cfg.weights);
        let scorer = variant
            .and_then(|v| v.scorer.clone())
            .unwrap_or_else(|| cfg.scorer.clone());
        if scorer != "rules" {
            return Err(Error::Invalid(format!(
                "scorer `{scorer}` is not available (only `rules` in this build)"
            )));
        }
        Ok((
            variant.map(|v| v.name.clone()),
            Box::new(RuleScorer::with_weights(cfg, weights)),
        ))
    }

    /// The user's top outfits; logs one impression KPI event per returned outfit.
    pub async fn recommend(
        &self,
        table: &lancedb::Table,
        user_id: &str,
        req: &Request,
    ) -> std::result::Result<Outfits, RecommendError> {
        let (variant, scorer) = self
            .scorer_for(user_id)
            .map_err(RecommendError::Unavailable)?;
        let wardrobe = flashfit_lance::wardrobe::items(table, user_id, None, false)
            .await
            .map_err(|e| RecommendError::Unavailable(Error::Invalid(e.to_string())))?;
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
        let outfits = flashfit_outfits::recommend(
            &wardrobe,
            req,
            scorer.as_ref(),
            prefs.as_ref(),
            &self.config.outfits,
        )
        .map_err(|e| match e {
            flashfit_outfits::Error::BadRequest(m) => RecommendError::BadRequest(m),
            flashfit_outfits::Error::Model(m) => RecommendError::Unavailable(Error::Invalid(m)),
        })?;
        self.log_impressions(user_id, &outfits);
        Ok(Outfits { outfits, variant })
    }

    fn log_impressions(&self, user_id: &str, outfits: &[Outfit]) {
        let Some((producer, topic)) = &self.kpi else {
            return;
        };
        let variants: BTreeMap<String, String> =
            experiments::variants(&self.config.experiments, user_id);
        let now = chrono::Utc::now();
        for o in outfits {
            let event = KpiEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                user_id: user_id.to_owned(),
                kind: KpiType::Impression,
                ts: now,
                variants: variants.clone(),
                duration_s: None,
                value: None,
                outfit_id: Some(outfit_id(&o.garment_ids)),
                garment_ids: o.garment_ids.clone(),
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
